//! Validation of namespace and schema IDs (DESIGN §2 input limits).

use crate::error::{Error, Result};

/// The reserved namespace whose current files every other namespace's
/// compile can import.
pub const BUILTINS: &str = "__builtins__";

use crate::objstore::keys::{MAX_SEGMENT_BYTES, STAGING_SUFFIX_BYTES};

/// Longest namespace ID, in bytes: `namespaces/<ns>` is a file on a local
/// store, and a file name needs room for the staging suffix.
pub const MAX_NAMESPACE_ID_LEN: usize = MAX_SEGMENT_BYTES - STAGING_SUFFIX_BYTES;
/// Longest schema ID, in bytes: a directory claim's file is `!<schema>`.
pub const MAX_SCHEMA_ID_LEN: usize = MAX_NAMESPACE_ID_LEN - 1;

fn check(kind: &'static str, id: &str, max: usize) -> Result<()> {
    let fail = |reason: &str| {
        Err(Error::InvalidId {
            kind,
            value: id.chars().take(80).collect(),
            reason: reason.to_string(),
        })
    };
    if id.is_empty() {
        return fail("must not be empty");
    }
    if id.len() > max {
        return fail(&format!(
            "longer than {max} bytes ({}): storage keys and local file names are built from it",
            id.len()
        ));
    }
    let mut chars = id.chars();
    let first = chars.next().unwrap_or_default();
    if !first.is_ascii_alphanumeric() {
        return fail("must start with a letter or digit (pattern ^[A-Za-z0-9][A-Za-z0-9_.-]*$)");
    }
    if let Some(bad) = chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return fail(&format!(
            "character {bad:?} is not allowed (pattern ^[A-Za-z0-9][A-Za-z0-9_.-]*$)"
        ));
    }
    Ok(())
}

/// A namespace ID: the ID pattern, or the reserved `__builtins__`.
pub fn validate_namespace_id(id: &str) -> Result<()> {
    if id == BUILTINS {
        return Ok(());
    }
    check("namespace ID", id, MAX_NAMESPACE_ID_LEN)
}

/// A schema ID: the ID pattern.
pub fn validate_schema_id(id: &str) -> Result<()> {
    check("schema ID", id, MAX_SCHEMA_ID_LEN)
}

/// Longest source file path, in bytes.
pub const MAX_PATH_LEN: usize = 512;

/// A source file path: a canonical relative path ending in `.proto` (no
/// leading `/`, no `.`, `..` or empty segments, at most 512 bytes and 255
/// per segment, a local file name's limit), made of
/// letters, digits and `_ . - + @ = ,` between `/` separators. The same
/// rules keep the storage keys built from paths plain and unambiguous.
pub fn validate_file_path(path: &str) -> Result<()> {
    validate_name("file path", path)?;
    if !path.ends_with(".proto") {
        return Err(bad_name("file path", path, "must end in .proto"));
    }
    Ok(())
}

/// A `/`-separated name (file path, or proto package with `.` separators
/// as one segment) as used in claim keys.
pub fn validate_name(kind: &'static str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(bad_name(kind, name, "empty"));
    }
    if name.len() > MAX_PATH_LEN {
        return Err(bad_name(
            kind,
            name,
            &format!("longer than {MAX_PATH_LEN} bytes"),
        ));
    }
    if name.starts_with('/') {
        return Err(bad_name(kind, name, "must be relative (no leading /)"));
    }
    if let Some(seg) = name.split('/').find(|seg| seg.len() > MAX_SEGMENT_BYTES) {
        return Err(bad_name(
            kind,
            name,
            &format!(
                "the segment {:?}... is {} bytes; names between / are at most {MAX_SEGMENT_BYTES} (a local file name)",
                seg.chars().take(40).collect::<String>(),
                seg.len()
            ),
        ));
    }
    if name
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(bad_name(
            kind,
            name,
            "must be canonical (no empty, . or .. segments)",
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/_.-+@=,".contains(*c)))
    {
        return Err(bad_name(
            kind,
            name,
            &format!("character {c:?} is not allowed"),
        ));
    }
    Ok(())
}

fn bad_name(kind: &'static str, value: &str, reason: &str) -> Error {
    Error::InvalidId {
        kind,
        value: value.chars().take(120).collect(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_pattern_and_builtins() {
        for ok in ["a", "A9", "payments.v1", "x-y_z", "0"] {
            validate_namespace_id(ok).unwrap();
            validate_schema_id(ok).unwrap();
        }
        validate_namespace_id(BUILTINS).unwrap();
        validate_namespace_id(&"a".repeat(249)).unwrap();
        assert!(validate_namespace_id(&"a".repeat(250)).is_err());
        validate_schema_id(&"a".repeat(248)).unwrap();
        assert!(validate_schema_id(&"a".repeat(249)).is_err());
    }

    #[test]
    fn rejects_everything_else() {
        let long = "a".repeat(257);
        for bad in [
            "",
            ".",
            "..",
            "_x",
            "-x",
            "a/b",
            "a b",
            "é",
            "a\0",
            "../x",
            long.as_str(),
        ] {
            assert!(
                matches!(validate_schema_id(bad), Err(Error::InvalidId { .. })),
                "{bad:?} accepted"
            );
        }
        assert!(validate_schema_id(BUILTINS).is_err());
    }

    #[test]
    fn file_paths() {
        let widest = format!("{}/{}.proto", "d".repeat(255), "f".repeat(249));
        for ok in ["a.proto", "a/b/c.proto", "x-y_z.1/v+2@x.proto", &widest] {
            validate_file_path(ok).unwrap();
        }
        let wide = format!("{}/a.proto", "d".repeat(256));
        let long = format!("{}.proto", "a".repeat(600));
        for bad in [
            "",
            "/a.proto",
            "../a.proto",
            "a/../b.proto",
            "a//b.proto",
            "./a.proto",
            "a\\b.proto",
            "a.txt",
            "a\0.proto",
            "a b.proto",
            "a%2F.proto",
            long.as_str(),
            wide.as_str(),
        ] {
            assert!(validate_file_path(bad).is_err(), "{bad:?}");
        }
    }
}
