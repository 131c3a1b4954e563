//! Confluent compatibility levels and how they map onto protoshelf
//! policies (docs/server.md has the table).
//!
//! Every level but `NONE` is enforced with the subject namespace's policy,
//! `wire` by default (buf's `WIRE`: only changes that keep encoded data
//! readable by the old and the new schema alike, so it serves BACKWARD,
//! FORWARD and FULL at once). `NONE` is policy `none`. The `_TRANSITIVE`
//! levels check against every live version instead of the latest.

use std::fmt;
use std::str::FromStr;

use crate::compat::Policy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Level {
    None,
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl Level {
    pub const ALL: [Level; 7] = [
        Level::None,
        Level::Backward,
        Level::BackwardTransitive,
        Level::Forward,
        Level::ForwardTransitive,
        Level::Full,
        Level::FullTransitive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "NONE",
            Level::Backward => "BACKWARD",
            Level::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Level::Forward => "FORWARD",
            Level::ForwardTransitive => "FORWARD_TRANSITIVE",
            Level::Full => "FULL",
            Level::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// The protoshelf policy a subject namespace gets for this level.
    pub fn policy(self) -> Policy {
        match self {
            Level::None => Policy::None,
            _ => Policy::Wire,
        }
    }

    /// Whether a new version is checked against every live version (else
    /// only the latest).
    pub fn transitive(self) -> bool {
        matches!(
            self,
            Level::BackwardTransitive | Level::ForwardTransitive | Level::FullTransitive
        )
    }

    /// The level to report for a namespace whose policy is `policy` and
    /// whose recorded level is `recorded`: the recorded one while the
    /// policy is still the one it maps to, else the policy's own (a CLI
    /// user changed it: `none` reads as NONE, any checking policy as the
    /// recorded level or BACKWARD, checked with that stricter policy).
    pub fn reported(policy: Policy, recorded: Option<Level>) -> Level {
        match (policy, recorded) {
            (Policy::None, _) => Level::None,
            (_, Some(Level::None)) | (_, None) => Level::Backward,
            (_, Some(l)) => l,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = super::ConfluentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Level::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| super::ConfluentError::InvalidCompatibility(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_print_and_map() {
        for l in Level::ALL {
            assert_eq!(l.as_str().parse::<Level>().unwrap(), l);
        }
        assert_eq!("backward".parse::<Level>().unwrap(), Level::Backward);
        assert!("SIDEWAYS".parse::<Level>().is_err());
        assert_eq!(Level::None.policy(), Policy::None);
        assert_eq!(Level::FullTransitive.policy(), Policy::Wire);
        assert!(Level::ForwardTransitive.transitive() && !Level::Full.transitive());
        assert_eq!(
            Level::reported(Policy::None, Some(Level::Full)),
            Level::None
        );
        assert_eq!(
            Level::reported(Policy::Wire, Some(Level::Full)),
            Level::Full
        );
        assert_eq!(Level::reported(Policy::Strict, None), Level::Backward);
    }
}
