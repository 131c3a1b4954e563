//! Every object of a store, listed and classified by key: what `verify`
//! checks and `gc` sweeps. One recursive LIST per namespace.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;

use super::{ObjStore, keys};
use crate::error::{Error, Result};
use crate::store::ClaimKind;

/// What a key under `ns/<ns>/` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectKind {
    Schema(String),
    Manifest {
        schema: String,
        version: u64,
    },
    Blob(String),
    Descriptor(String),
    LogEntry(u64),
    Claim {
        kind: ClaimKind,
        name: String,
        schema: String,
    },
    Hint,
    /// A move marker (format 3): commit `seq` (attempt `commit_id`)
    /// changed `schema`'s pointers.
    Move {
        schema: String,
        seq: u64,
        commit_id: String,
    },
    /// A namespace set (format 3).
    NamespaceSet(String),
    /// A set marker (format 3): commit `seq` (attempt `commit_id`)
    /// recorded namespace sets.
    SetMove {
        seq: u64,
        commit_id: String,
    },
    /// A tree index written after commit `seq` (packed trees).
    Tree(u64),
    /// A pack of tree files' sources.
    Pack(String),
    /// Not a key protoshelf writes.
    Unknown,
}

/// An object's size and age, from the LIST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub size: u64,
    pub last_modified: DateTime<Utc>,
}

/// The objects of one namespace, by key.
#[derive(Debug, Default)]
pub struct Inventory {
    pub objects: BTreeMap<String, (ObjectKind, Meta)>,
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Classifies `rest`, a key below `ns/<ns>/`.
pub fn classify(rest: &str) -> ObjectKind {
    let valid_id = |id: &str| crate::ids::validate_schema_id(id).is_ok();
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["head.json"] => ObjectKind::Hint,
        ["schemas", id] if valid_id(id) => ObjectKind::Schema(id.to_string()),
        ["versions", schema, file] if valid_id(schema) => match keys::parse_version_file(file) {
            Some(version) => ObjectKind::Manifest {
                schema: schema.to_string(),
                version,
            },
            None => ObjectKind::Unknown,
        },
        ["blobs", sha] if is_sha256(sha) => ObjectKind::Blob(sha.to_string()),
        ["descriptors", file] => match file.strip_suffix(".binpb") {
            Some(sha) if is_sha256(sha) => ObjectKind::Descriptor(sha.to_string()),
            _ => ObjectKind::Unknown,
        },
        ["trees", file] => match keys::parse_tree(file) {
            Some(seq) => ObjectKind::Tree(seq),
            None => ObjectKind::Unknown,
        },
        ["packs", sha] if is_sha256(sha) => ObjectKind::Pack(sha.to_string()),
        ["log", file] => match keys::parse_version_file(file) {
            Some(seq) => ObjectKind::LogEntry(seq),
            None => ObjectKind::Unknown,
        },
        ["moves", schema, name] if valid_id(schema) => match keys::parse_move_marker(name) {
            Some((seq, commit_id)) => ObjectKind::Move {
                schema: schema.to_string(),
                seq,
                commit_id: commit_id.to_string(),
            },
            None => ObjectKind::Unknown,
        },
        ["sets", file] => match file.strip_suffix(".binpb") {
            Some(sha) if is_sha256(sha) => ObjectKind::NamespaceSet(sha.to_string()),
            _ => ObjectKind::Unknown,
        },
        ["set-moves", name] => match keys::parse_move_marker(name) {
            Some((seq, commit_id)) => ObjectKind::SetMove {
                seq,
                commit_id: commit_id.to_string(),
            },
            None => ObjectKind::Unknown,
        },
        ["claims", "dir", dir @ .., last] => match last.strip_prefix(keys::DIR_CLAIM_MARK) {
            Some(schema) if valid_id(schema) => ObjectKind::Claim {
                kind: ClaimKind::Dir,
                name: dir.join("/"),
                schema: schema.to_string(),
            },
            _ => ObjectKind::Unknown,
        },
        ["claims", kind @ ("path" | "package"), name @ .., schema]
            if !name.is_empty() && valid_id(schema) =>
        {
            ObjectKind::Claim {
                kind: if *kind == "path" {
                    ClaimKind::Path
                } else {
                    ClaimKind::Package
                },
                name: keys::claim_name(name),
                schema: schema.to_string(),
            }
        }
        _ => ObjectKind::Unknown,
    }
}

impl Inventory {
    pub fn get(&self, key: &Path) -> Option<&(ObjectKind, Meta)> {
        self.objects.get(key.as_ref())
    }

    pub fn contains(&self, key: &Path) -> bool {
        self.objects.contains_key(key.as_ref())
    }

    pub fn of_kind<'a>(
        &'a self,
        pick: impl Fn(&ObjectKind) -> bool + 'a,
    ) -> impl Iterator<Item = (&'a String, &'a ObjectKind, &'a Meta)> + 'a {
        self.objects
            .iter()
            .filter(move |(_, (k, _))| pick(k))
            .map(|(key, (k, m))| (key, k, m))
    }
}

impl ObjStore {
    /// Lists every object of namespace `ns` (one recursive LIST).
    pub(super) async fn inventory(&self, ns: &str) -> Result<Inventory> {
        let prefix = Path::from(format!("ns/{ns}"));
        let strip = format!("ns/{ns}/");
        let listed: Vec<object_store::ObjectMeta> = self
            .io()
            .os
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(Error::Storage)?;
        let mut inv = Inventory::default();
        for m in listed {
            let key = m.location.to_string();
            let Some(rest) = key.strip_prefix(&strip) else {
                continue;
            };
            let meta = Meta {
                size: m.size,
                last_modified: m.last_modified,
            };
            inv.objects.insert(key.clone(), (classify(rest), meta));
        }
        Ok(inv)
    }

    /// Every object directly under `dir` with its metadata (recursive).
    pub(super) async fn list_all(&self, dir: &str) -> Result<Vec<(String, Meta)>> {
        let listed: Vec<object_store::ObjectMeta> = self
            .io()
            .os
            .list(Some(&Path::from(dir)))
            .try_collect()
            .await
            .map_err(Error::Storage)?;
        Ok(listed
            .into_iter()
            .map(|m| {
                (
                    m.location.to_string(),
                    Meta {
                        size: m.size,
                        last_modified: m.last_modified,
                    },
                )
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_classified() {
        assert_eq!(classify("schemas/a"), ObjectKind::Schema("a".into()));
        assert_eq!(
            classify("versions/a/00000000000000000003.json"),
            ObjectKind::Manifest {
                schema: "a".into(),
                version: 3
            }
        );
        let sha = "ab".repeat(32);
        assert_eq!(
            classify(&format!("blobs/{sha}")),
            ObjectKind::Blob(sha.clone())
        );
        assert_eq!(
            classify(&format!("descriptors/{sha}.binpb")),
            ObjectKind::Descriptor(sha.clone())
        );
        assert_eq!(
            classify("log/00000000000000000012.json"),
            ObjectKind::LogEntry(12)
        );
        assert_eq!(
            classify("claims/dir/a/b/!s"),
            ObjectKind::Claim {
                kind: ClaimKind::Dir,
                name: "a/b".into(),
                schema: "s".into()
            }
        );
        assert_eq!(
            classify("claims/dir/!s"),
            ObjectKind::Claim {
                kind: ClaimKind::Dir,
                name: "".into(),
                schema: "s".into()
            }
        );
        assert_eq!(
            classify("claims/package/a.b/s"),
            ObjectKind::Claim {
                kind: ClaimKind::Package,
                name: "a.b".into(),
                schema: "s".into()
            }
        );
        assert_eq!(
            classify("claims/package/!/s"),
            ObjectKind::Claim {
                kind: ClaimKind::Package,
                name: "".into(),
                schema: "s".into()
            }
        );
        assert_eq!(classify("head.json"), ObjectKind::Hint);
        for junk in [
            "blobs/xyz",
            "log/1.json",
            "versions/a/1.json",
            "foo",
            "claims/dir/a/b",
        ] {
            assert_eq!(classify(junk), ObjectKind::Unknown, "{junk}");
        }
    }
}
