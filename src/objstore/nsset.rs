//! Namespace sets (format 3): one `FileDescriptorSet` per tree of a
//! namespace (current, and staged = current with staged versions
//! overlaid), each file at its owner's version in that tree, the builtins
//! and well-known types they import, each file once, dependencies first.
//! Content-addressed at `ns/<ns>/sets/<sha256>.binpb`, named by the log
//! entry of every commit that changes them (docs/storage-format.md).
//!
//! A commit builds its sets from the previous ones and the schemas it
//! moves, never from every schema of the namespace: the previous set (one
//! GET, or none when this handle wrote it), plus the manifest of the
//! version each moved schema leaves and the manifest and descriptor of
//! the one it gets (normally cached by the checks before the commit).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use prost::Message;

use super::log::{NsChange, NsPointers};
use super::records::{NsSets, Pointers};
use super::{FETCH_CONCURRENCY, ObjStore, keys, sha256_hex};
use crate::error::{Error, Result};

/// `FileDescriptorSet` read at the wire level, so each file's bytes
/// (custom options included) pass through untouched.
#[derive(Clone, PartialEq, prost::Message)]
struct RawSet {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    file: Vec<Bytes>,
}

/// Only what ordering needs of a `FileDescriptorProto`: its name and imports.
#[derive(Clone, PartialEq, prost::Message)]
struct RawFile {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, repeated, tag = "3")]
    dependency: Vec<String>,
}

#[derive(Debug, Clone)]
struct SetFile {
    bytes: Bytes,
    deps: Vec<String>,
}

/// The files of a descriptor set by name.
#[derive(Debug, Clone, Default)]
pub struct SetFiles {
    files: BTreeMap<String, SetFile>,
}

impl SetFiles {
    /// Decodes a set; `key` names it in errors.
    pub fn decode(key: &str, bytes: &Bytes) -> Result<SetFiles> {
        let corrupt = |e: prost::DecodeError| Error::Corrupt {
            key: key.to_string(),
            reason: format!("not a FileDescriptorSet: {e}"),
        };
        let raw = RawSet::decode(bytes.clone()).map_err(corrupt)?;
        let mut files = BTreeMap::new();
        for bytes in raw.file {
            let f = RawFile::decode(bytes.clone()).map_err(corrupt)?;
            let name = f.name.unwrap_or_default();
            files.entry(name).or_insert(SetFile {
                bytes,
                deps: f.dependency,
            });
        }
        Ok(SetFiles { files })
    }

    /// The set's bytes: every file once, each after the files it imports,
    /// otherwise in name order (so equal contents hash equal).
    pub fn encode(&self) -> Bytes {
        fn visit(
            n: &str,
            files: &BTreeMap<String, SetFile>,
            done: &mut BTreeSet<String>,
            out: &mut Vec<Bytes>,
        ) {
            if !done.insert(n.to_string()) {
                return;
            }
            if let Some(f) = files.get(n) {
                for d in &f.deps {
                    visit(d, files, done, out);
                }
                out.push(f.bytes.clone());
            }
        }
        let (mut done, mut out) = (BTreeSet::new(), Vec::new());
        for n in self.files.keys() {
            visit(n, &self.files, &mut done, &mut out);
        }
        RawSet { file: out }.encode_to_vec().into()
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.files.keys()
    }

    /// The files of a descriptor set this process is about to store, from
    /// the encoded files it is made of: (name, bytes, imports), as
    /// [`SetFiles::decode`] of the set would give them.
    pub fn from_files(files: impl IntoIterator<Item = (String, Bytes, Vec<String>)>) -> SetFiles {
        let mut out = BTreeMap::new();
        for (name, bytes, deps) in files {
            out.entry(name).or_insert(SetFile { bytes, deps });
        }
        SetFiles { files: out }
    }
}

/// A version a schema gets in a tree.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// The files the version defines.
    pub own: BTreeSet<String>,
    /// Imported files of the same namespace (owned by other schemas).
    pub local_deps: BTreeSet<String>,
    /// The files of the version's descriptor set (its files and every
    /// file they import, as compiled).
    pub files: Arc<SetFiles>,
}

/// One schema's move in a tree: the files of the version it leaves (none
/// if it had none there) and the version it gets (none: it leaves the tree).
#[derive(Debug, Clone, Default)]
pub struct TreeMove {
    pub left: Vec<String>,
    pub arrives: Option<Arrival>,
}

/// The tree after `moves`: each moved schema's files replaced by its new
/// version's; files of other schemas of the namespace stay at their
/// owners' versions (a moved schema's descriptor only fills in one that is
/// missing); builtins and well-known types a new version imports are taken
/// as it was compiled against them (builtins only move forward, so the
/// newest commit's copy is the newest). A file a moved schema no longer
/// defines stays while another file of the set still imports it, so the
/// set always loads into one pool.
pub fn apply(prev: &SetFiles, moves: &[TreeMove]) -> Result<SetFiles> {
    let mut files = prev.files.clone();
    let mut removed: BTreeMap<String, SetFile> = BTreeMap::new();
    for m in moves {
        for path in &m.left {
            if let Some(f) = files.remove(path) {
                removed.insert(path.clone(), f);
            }
        }
    }
    let arrived: Vec<(&Arrival, &SetFiles)> = moves
        .iter()
        .filter_map(|m| m.arrives.as_ref())
        .map(|a| (a, &*a.files))
        .collect();
    // Every new version's own files first: they win over any copy another
    // descriptor holds of them.
    let mut owned = BTreeSet::new();
    for (a, set) in &arrived {
        // (A real version's descriptor holds every file it defines; one
        // stored through the library without it just adds nothing.)
        for path in &a.own {
            if let Some(f) = set.files.get(path) {
                files.insert(path.clone(), f.clone());
                owned.insert(path.clone());
            }
        }
    }
    for (a, set) in &arrived {
        for (path, f) in &set.files {
            if owned.contains(path) {
                continue;
            }
            if a.local_deps.contains(path) {
                // The owner's version in this tree wins over the copy this
                // version was compiled against.
                files.entry(path.clone()).or_insert_with(|| f.clone());
            } else {
                files.insert(path.clone(), f.clone());
            }
        }
    }
    // Imports left dangling by a file that moved away: keep its last copy.
    loop {
        let missing: BTreeSet<String> = files
            .values()
            .flat_map(|f| f.deps.iter())
            .filter(|d| !files.contains_key(*d))
            .cloned()
            .collect();
        let mut found = false;
        for d in missing {
            if let Some(f) = removed.remove(&d) {
                files.insert(d, f);
                found = true;
            }
        }
        if !found {
            break;
        }
    }
    Ok(SetFiles { files })
}

/// The version of a schema in a tree.
fn pick(p: &Pointers, staged: bool) -> Option<u64> {
    if staged {
        p.staged.or(p.current)
    } else {
        p.current
    }
}

impl ObjStore {
    /// Makes the files of the descriptor set of a version the caller has
    /// just stored available to this handle's next commits for as long as
    /// the caller holds `files`: a commit builds its namespace sets from
    /// them instead of reading back what was just written (a corpus load
    /// read back 112 large descriptors, 92 MB). A version never changes
    /// once stored, so any holder's files are the same.
    pub fn hold_staging_set(&self, ns: &str, schema: &str, version: u64, files: &Arc<SetFiles>) {
        let mut held = self.inner.staging_sets.lock().unwrap();
        held.retain(|_, w| w.strong_count() > 0);
        held.insert(
            (ns.to_string(), schema.to_string(), version),
            Arc::downgrade(files),
        );
    }

    fn staging_set(&self, ns: &str, schema: &str, version: u64) -> Option<Arc<SetFiles>> {
        let held = self.inner.staging_sets.lock().unwrap();
        held.get(&(ns.to_string(), schema.to_string(), version))
            .and_then(Weak::upgrade)
    }

    /// The namespace sets after `change` lands on `state`, written (create-
    /// if-absent) before the commit; `None` when they are the ones `state`
    /// names already (or the commit changes no pointer). `rebuild` builds
    /// them from every schema instead of the previous sets (`upgrade`,
    /// after commits of format-2 builds left those behind).
    pub(super) async fn next_sets(
        &self,
        ns: &str,
        state: &NsPointers,
        change: &NsChange,
        rebuild: bool,
    ) -> Result<Option<NsSets>> {
        if change.changes.is_empty() && !rebuild {
            return Ok(None);
        }
        let prev = state.snapshot.sets.clone().filter(|_| !rebuild);
        let old = state.snapshot.sets.clone();
        let mut next = state.clone();
        <NsPointers as super::protocol::Sequenced>::apply(&mut next, change);
        // A promote that makes the staged tree current (every schema's
        // current version after it is its staged-or-current one before)
        // has that tree's set already: no version is read to build it.
        let staged_becomes_current = state
            .staged_schemas()
            .map(|(s, _)| s)
            .chain(change.changes.keys())
            .all(|s| pick(&next.pointers(s), false) == pick(&state.pointers(s), true));
        let current = match &prev {
            Some(p) if staged_becomes_current => p.staged.clone(),
            _ => {
                self.next_tree(
                    ns,
                    state,
                    &next,
                    change,
                    prev.as_ref().map(|p| &p.current),
                    false,
                )
                .await?
            }
        };
        let staged = if next.staged_schemas().next().is_none() {
            current.clone()
        } else {
            self.next_tree(
                ns,
                state,
                &next,
                change,
                prev.as_ref().map(|p| &p.staged),
                true,
            )
            .await?
        };
        let sets = NsSets { current, staged };
        Ok((rebuild || old.as_ref() != Some(&sets)).then_some(sets))
    }

    /// One tree's set after the change: from the previous set and the moved
    /// schemas, or, in a namespace with no set yet (its history predates
    /// format 3), from every schema once.
    async fn next_tree(
        &self,
        ns: &str,
        state: &NsPointers,
        next: &NsPointers,
        change: &NsChange,
        prev: Option<&String>,
        staged: bool,
    ) -> Result<String> {
        let moved: Vec<(String, Option<u64>, Option<u64>)> = match prev {
            Some(_) => change
                .changes
                .keys()
                .map(|s| {
                    let (was, is) = (&state.pointers(s), &next.pointers(s));
                    (s.clone(), pick(was, staged), pick(is, staged))
                })
                .filter(|(_, was, is)| was != is)
                .collect(),
            None => next
                .snapshot
                .schemas
                .iter()
                .filter_map(|(s, p)| pick(p, staged).map(|v| (s.clone(), None, Some(v))))
                .collect(),
        };
        if let Some(prev) = prev
            && moved.is_empty()
        {
            return Ok(prev.clone());
        }
        let base = match prev {
            Some(sha) => {
                let bytes = self.namespace_set_by_hash(ns, sha).await?;
                SetFiles::decode(keys::namespace_set(ns, sha).as_ref(), &bytes)?
            }
            None => SetFiles::default(),
        };
        let moves: Vec<TreeMove> = futures::stream::iter(moved)
            .map(|(schema, was, is)| async move { self.tree_move(ns, &schema, was, is).await })
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        let bytes = apply(&base, &moves)?.encode();
        let sha = sha256_hex(&bytes);
        let key = keys::namespace_set(ns, &sha);
        // A set this handle wrote in the last minutes needs no create. One
        // it only read may be old and superseded, hence collectable by gc:
        // the create refreshes its age before this commit names it.
        let fresh = match self.io().cached(&key).await {
            Some(o) => chrono::Utc::now() - o.last_modified <= super::io::REFRESH_AFTER,
            // Too large for the cache: normally one this handle wrote. One
            // it read was its state's set minutes ago, and gc keeps the sets
            // of entries superseded less than the grace period ago.
            None => true,
        };
        if !(self.io().known(&key) && fresh) {
            self.io().create_collectable(&key, bytes.clone()).await?;
        }
        // Kept whatever its size: the next commit of this handle builds on
        // it, so a warm commit's cost stays flat in the namespace's size.
        self.io().remember(&key, bytes).await;
        Ok(sha)
    }

    async fn tree_move(
        &self,
        ns: &str,
        schema: &str,
        was: Option<u64>,
        is: Option<u64>,
    ) -> Result<TreeMove> {
        let left = match was {
            Some(v) => {
                let m = self.manifest(ns, schema, v).await?;
                m.files.into_iter().map(|f| f.path).collect()
            }
            None => Vec::new(),
        };
        let arrives = match is {
            Some(v) => {
                let m = self.manifest(ns, schema, v).await?;
                let files = match self.staging_set(ns, schema, v) {
                    Some(files) => files,
                    None => {
                        let bytes = self.descriptor(&m).await?;
                        // A descriptor that does not decode (one stored by
                        // an old compiler, which the registry recompiles on
                        // restore) adds nothing rather than failing the
                        // commit.
                        Arc::new(
                            SetFiles::decode(&m.descriptor.key, &bytes).unwrap_or_else(|e| {
                                tracing::warn!("namespace set: {e}; its files are left out");
                                SetFiles::default()
                            }),
                        )
                    }
                };
                Some(Arrival {
                    own: m.files.iter().map(|f| f.path.clone()).collect(),
                    local_deps: m
                        .deps
                        .iter()
                        .filter(|d| d.namespace_id == ns)
                        .map(|d| d.path.clone())
                        .collect(),
                    files,
                })
            }
            None => None,
        };
        Ok(TreeMove { left, arrives })
    }

    /// The set of a tree made of these versions (namespace, schema,
    /// version), built the way a namespace set is: what the mount serves
    /// for a namespace whose history has no set yet (format 2).
    pub async fn versions_set(&self, versions: &[(String, String, u64)]) -> Result<Bytes> {
        let moves: Vec<TreeMove> = futures::stream::iter(versions)
            .map(|(ns, schema, v)| self.tree_move(ns, schema, None, Some(*v)))
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(apply(&SetFiles::default(), &moves)?.encode())
    }

    /// The imports of every file of the namespace set with this hash (file
    /// → the files it imports): who imports what in a tree, in one read
    /// (cached: a commit on the same state builds on the same set).
    pub async fn namespace_set_imports(
        &self,
        ns: &str,
        sha256: &str,
    ) -> Result<BTreeMap<String, Vec<String>>> {
        let bytes = self.namespace_set_by_hash(ns, sha256).await?;
        let set = SetFiles::decode(keys::namespace_set(ns, sha256).as_ref(), &bytes)?;
        Ok(set.files.into_iter().map(|(n, f)| (n, f.deps)).collect())
    }

    /// The namespace set with this hash (verified against it).
    pub async fn namespace_set_by_hash(&self, ns: &str, sha256: &str) -> Result<Bytes> {
        match self.namespace_set_if_present(ns, sha256).await? {
            Some(bytes) => Ok(bytes),
            None => Err(Error::Corrupt {
                key: keys::namespace_set(ns, sha256).to_string(),
                reason: "missing, but the log names it".into(),
            }),
        }
    }

    /// [`Self::namespace_set_by_hash`], `None` when it is missing: gc
    /// collects the sets of entries superseded long ago, which only a
    /// reader of an old commit (the mount's `history/`) still asks for.
    pub async fn namespace_set_if_present(&self, ns: &str, sha256: &str) -> Result<Option<Bytes>> {
        let key = keys::namespace_set(ns, sha256);
        match self.verified(&key, sha256, "namespace set").await {
            Ok(obj) => Ok(Some(obj.bytes)),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, deps: &[&str], token: &str) -> Bytes {
        let f = prost_types::FileDescriptorProto {
            name: Some(name.into()),
            dependency: deps.iter().map(|d| d.to_string()).collect(),
            package: Some(token.into()),
            ..Default::default()
        };
        f.encode_to_vec().into()
    }

    fn set(files: &[Bytes]) -> Bytes {
        RawSet {
            file: files.to_vec(),
        }
        .encode_to_vec()
        .into()
    }

    fn package_of(s: &SetFiles, name: &str) -> String {
        let f = prost_types::FileDescriptorProto::decode(s.files[name].bytes.clone()).unwrap();
        f.package().to_string()
    }

    fn arrival(own: &[&str], local: &[&str], files: &[Bytes]) -> Arrival {
        Arrival {
            own: own.iter().map(|s| s.to_string()).collect(),
            local_deps: local.iter().map(|s| s.to_string()).collect(),
            files: Arc::new(SetFiles::decode("d", &set(files)).unwrap()),
        }
    }

    /// The frozen copy of a dependency never replaces its owner's current
    /// file, in either order of arrival.
    #[test]
    fn owners_win_over_frozen_copies() {
        let orders_v2 = file("orders.proto", &[], "v2");
        let orders_v1 = file("orders.proto", &[], "v1");
        let payments = file("payments.proto", &["orders.proto"], "p");
        let start = apply(
            &SetFiles::default(),
            &[TreeMove {
                left: vec![],
                arrives: Some(arrival(
                    &["orders.proto"],
                    &[],
                    std::slice::from_ref(&orders_v2),
                )),
            }],
        )
        .unwrap();
        let after = apply(
            &start,
            &[TreeMove {
                left: vec![],
                arrives: Some(arrival(
                    &["payments.proto"],
                    &["orders.proto"],
                    &[orders_v1.clone(), payments.clone()],
                )),
            }],
        )
        .unwrap();
        assert_eq!(package_of(&after, "orders.proto"), "v2");
        // Both in one commit: still the owner's.
        let both = apply(
            &SetFiles::default(),
            &[
                TreeMove {
                    left: vec![],
                    arrives: Some(arrival(
                        &["payments.proto"],
                        &["orders.proto"],
                        &[orders_v1, payments],
                    )),
                },
                TreeMove {
                    left: vec![],
                    arrives: Some(arrival(&["orders.proto"], &[], &[orders_v2])),
                },
            ],
        )
        .unwrap();
        assert_eq!(package_of(&both, "orders.proto"), "v2");
        // Dependencies first.
        let encoded = SetFiles::decode("s", &both.encode()).unwrap();
        assert_eq!(
            encoded.names().collect::<Vec<_>>(),
            ["orders.proto", "payments.proto"]
        );
        let raw = RawSet::decode(both.encode()).unwrap();
        let first = RawFile::decode(raw.file[0].clone()).unwrap();
        assert_eq!(first.name.as_deref(), Some("orders.proto"));
    }

    /// A file its owner dropped stays while something imports it, and goes
    /// when nothing does.
    #[test]
    fn dropped_files_stay_while_imported() {
        let a = file("a.proto", &[], "a1");
        let b = file("b.proto", &["a.proto"], "b");
        let s = apply(
            &SetFiles::default(),
            &[
                TreeMove {
                    left: vec![],
                    arrives: Some(arrival(&["a.proto"], &[], std::slice::from_ref(&a))),
                },
                TreeMove {
                    left: vec![],
                    arrives: Some(arrival(&["b.proto"], &["a.proto"], &[a.clone(), b])),
                },
            ],
        )
        .unwrap();
        let gone_a = TreeMove {
            left: vec!["a.proto".into()],
            arrives: None,
        };
        let kept = apply(&s, std::slice::from_ref(&gone_a)).unwrap();
        assert_eq!(kept.names().count(), 2, "b still imports a");
        let gone_b = TreeMove {
            left: vec!["b.proto".into()],
            arrives: None,
        };
        let empty = apply(&s, &[gone_a, gone_b]).unwrap();
        assert_eq!(empty.names().count(), 0);
    }
}
