//! Subjects ↔ namespaces. Each subject is a namespace holding one schema,
//! [`SCHEMA`], whose versions are the subject's versions. The namespace is
//! named after the subject when the subject is a valid namespace ID, else
//! after a readable form of it plus a hash, and it records the exact
//! subject in its metadata ([`SUBJECT_KEY`]), which is what makes it a
//! subject (a namespace created otherwise is never taken over).

use sha2::{Digest, Sha256};

use crate::ids::{BUILTINS, MAX_NAMESPACE_ID_LEN, validate_namespace_id};

/// The one schema of a subject namespace.
pub const SCHEMA: &str = "subject";
/// Namespace metadata: the subject it holds.
pub const SUBJECT_KEY: &str = "confluent.subject";
/// Namespace setting: the subject-level compatibility level, if set.
pub const LEVEL_KEY: &str = "confluent.compatibility";
/// Version metadata: the global schema ID and the main file's path.
pub const ID_KEY: &str = "confluent.schema_id";
pub const MAIN_KEY: &str = "confluent.main";
/// Namespace setting prefix: `confluent.deleted.<version>` = `soft`,
/// `hard` or empty (live again).
pub const DELETED_PREFIX: &str = "confluent.deleted.";

/// The namespace of `subject`, with `prefix` (possibly empty) in front.
pub fn namespace_for(prefix: &str, subject: &str) -> String {
    let plain = format!("{prefix}{subject}");
    if plain != BUILTINS && validate_namespace_id(&plain).is_ok() {
        return plain;
    }
    let mut readable: String = plain
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !readable.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        readable.insert(0, 's');
    }
    let hash = hex::encode(&Sha256::digest(subject.as_bytes())[..6]);
    let keep = MAX_NAMESPACE_ID_LEN - hash.len() - 2;
    if readable.len() > keep {
        readable.truncate(keep);
    }
    format!("{readable}--{hash}")
}

/// The path a schema received as source text gets in its namespace: the
/// subject itself when it is a `.proto` path (references' subjects are
/// their import paths by default), else `<readable subject>.proto`.
pub fn main_path_for(subject: &str) -> String {
    if subject.ends_with(".proto") && crate::ids::validate_file_path(subject).is_ok() {
        return subject.to_string();
    }
    let readable: String = subject
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = format!("{readable}.proto");
    if crate::ids::validate_file_path(&path).is_ok() {
        path
    } else {
        format!(
            "subject-{}.proto",
            hex::encode(&Sha256::digest(subject.as_bytes())[..6])
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_map_to_valid_distinct_namespaces() {
        assert_eq!(namespace_for("", "orders-value"), "orders-value");
        assert_eq!(
            namespace_for("kafka.", "orders-value"),
            "kafka.orders-value"
        );
        let a = namespace_for("", "common/money.proto");
        assert!(a.starts_with("common_money.proto--"), "{a}");
        assert_ne!(a, namespace_for("", "common_money.proto"));
        assert_ne!(namespace_for("", "a/b"), namespace_for("", "a_b"));
        for s in [
            "__builtins__",
            "_confluent",
            ":.ctx:x",
            &"x/".repeat(300),
            "ü",
        ] {
            let ns = namespace_for("", s);
            validate_namespace_id(&ns).unwrap();
            assert_ne!(ns, BUILTINS);
        }
        assert_eq!(main_path_for("common/money.proto"), "common/money.proto");
        assert_eq!(main_path_for("orders-value"), "orders-value.proto");
        crate::ids::validate_file_path(&main_path_for(":.weird/../x")).unwrap();
    }
}
