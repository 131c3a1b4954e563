//! Backward-compatibility checks between two versions of a schema.
//!
//! [`check`] compares the elements defined in a schema's files in the old
//! version with their counterparts in the new version and reports every
//! [`Violation`] of the chosen [`Policy`]:
//!
//! - [`Policy::Strict`]: the rule set of the reference registry
//!   (trendvidia/protoregistry): nothing may be deleted, and fields keep their
//!   name, type and cardinality.
//! - [`Policy::Wire`] and [`Policy::WireJson`]: buf's `WIRE` and `WIRE_JSON`
//!   breaking-change categories (buf v1.75, v2 configuration), with buf's rule
//!   IDs. They only forbid changes that break decoding of already-serialized
//!   data in the binary format (and, for `WireJson`, in the JSON format).
//! - [`Policy::None`]: no checks.
//!
//! Elements are matched by fully-qualified name, fields by number within their
//! message, enum values by number, methods by name within their service, and
//! extensions by extendee and number. [`rules`] has the rule IDs.

mod enum_values;
mod location;
mod pairs;
mod reserved;
pub mod rules;
mod strict;
mod wire;
mod wire_field;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use prost_reflect::DescriptorPool;
use serde::{Deserialize, Serialize};

pub use self::location::Location;

/// Which compatibility rules a schema must follow when it evolves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// The reference registry's rules: no deletions, no renames, no type or
    /// cardinality changes.
    #[default]
    Strict,
    /// buf's `WIRE` category: binary wire compatibility.
    Wire,
    /// buf's `WIRE_JSON` category: binary wire and JSON compatibility.
    WireJson,
    /// Anything goes.
    None,
}

impl Policy {
    /// The IDs of the rules this policy checks.
    pub fn rules(self) -> &'static [&'static str] {
        match self {
            Policy::Strict => rules::STRICT,
            Policy::Wire => rules::WIRE,
            Policy::WireJson => rules::WIRE_JSON,
            Policy::None => &[],
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Policy::Strict => "strict",
            Policy::Wire => "wire",
            Policy::WireJson => "wire_json",
            Policy::None => "none",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned when parsing an unknown policy name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compatibility policy {0:?} (expected strict, wire, wire_json or none)")]
pub struct ParsePolicyError(String);

impl FromStr for Policy {
    type Err = ParsePolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Policy::Strict, Policy::Wire, Policy::WireJson, Policy::None]
            .into_iter()
            .find(|policy| policy.as_str() == s)
            .ok_or_else(|| ParsePolicyError(s.to_owned()))
    }
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The rule ID, e.g. `FIELD_SAME_NAME`.
    pub rule: &'static str,
    /// The fully-qualified name of the element (`pkg.Message.field`; enum
    /// values are qualified by their enum, `pkg.Enum.VALUE`), or the file path
    /// for file-level rules.
    pub element: String,
    /// Where to look in the new version: the element itself or, when it was
    /// deleted, the closest enclosing element that still exists.
    pub location: Option<Location>,
    /// A human-readable explanation.
    pub message: String,
    /// What `location` is looked up from, once the check is done.
    #[serde(skip)]
    site: Option<location::Site>,
}

impl Violation {
    fn new(
        rule: &'static str,
        element: impl Into<String>,
        site: Option<location::Site>,
        message: String,
    ) -> Self {
        Violation {
            rule,
            element: element.into(),
            location: None,
            message,
            site,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = &self.location {
            write!(f, "{location}: ")?;
        }
        write!(f, "{}: {}: {}", self.rule, self.element, self.message)
    }
}

/// A [`Violation`] of one schema of a namespace (what promote, check and
/// [`crate::Error::Incompatible`] report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaViolation {
    pub schema_id: String,
    /// The earlier version the new one was checked against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub against_version: Option<u64>,
    #[serde(flatten)]
    pub violation: Violation,
}

impl fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "schema {}", self.schema_id)?;
        if let Some(v) = self.against_version {
            write!(f, " (against version {v})")?;
        }
        write!(f, ": {}", self.violation)
    }
}

/// Checks that `new` is a compatible evolution of `old` under `policy`.
///
/// `files` are the paths of the schema's files; only elements defined in
/// those files of `old` are checked (their counterparts may live anywhere in
/// `new`). Violations are sorted by location (file, line, column), then rule.
pub fn check(
    policy: Policy,
    old: &DescriptorPool,
    new: &DescriptorPool,
    files: &[String],
) -> Vec<Violation> {
    check_located(policy, old, new, files, None)
}

/// [`check`], with `new` given without its source info and `new_set` the
/// encoded `FileDescriptorSet` it was made from, source info included:
/// the locations of what is reported are read from `new_set`. Pools
/// without source info are much smaller for dense files, and only
/// violations are located.
pub fn check_located(
    policy: Policy,
    old: &DescriptorPool,
    new: &DescriptorPool,
    files: &[String],
    new_set: Option<&[u8]>,
) -> Vec<Violation> {
    let pairs = pairs::Pairs::new(old, new, files);
    let mut violations = match policy {
        Policy::Strict => strict::check(&pairs),
        Policy::Wire => wire::check(&pairs, false),
        Policy::WireJson => wire::check(&pairs, true),
        Policy::None => Vec::new(),
    };
    location::locate(&mut violations, new, new_set);
    violations.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    violations
}

fn sort_key(v: &Violation) -> (&str, u32, u32, &str, &str, &str) {
    // File-level violations without a location sort by their file path.
    let (file, line, column) = match &v.location {
        Some(l) => (l.file.as_str(), l.line, l.column),
        None => (v.element.as_str(), 0, 0),
    };
    (file, line, column, v.rule, &v.element, &v.message)
}
