//! One namespace as the mount shows it at one commit: its current and
//! proposed trees (merged with builtins), its schemas' pointers, and the
//! descriptor sets of both trees (built on first read).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::node::{Node, Pointer, TreeName, VersionItem};
use crate::error::Result;
use crate::ids::BUILTINS;
use crate::objstore::records::Pointers;
use crate::objstore::{NsState, ObjStore};

/// What a directory entry is, as listings report it. A file's content ID
/// (see [`super::Entry::File`]) lets the adapter pick its inode without
/// fetching the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Option<String>),
    Symlink,
}

/// The `namespace` of a [`FileRef`] for a well-known type, served from
/// [`super::wkt`] rather than from a blob (not a valid namespace ID).
pub const WELL_KNOWN: &str = "(well-known)";

/// A file of a tree: where its bytes live and when its version was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    pub namespace: String,
    pub sha256: String,
    pub mtime: DateTime<Utc>,
}

/// A merged include root: import path → file, plus the versions it is made
/// of (for its descriptor set).
#[derive(Debug, Default)]
pub struct Tree {
    pub files: BTreeMap<String, FileRef>,
    /// (namespace, schema, version) of every version in the tree.
    pub versions: Vec<(String, String, u64)>,
    /// (namespace, hash) of the tree's namespace set in the bucket (format
    /// 3), served as the tree's descriptor set when there is one.
    pub bucket_set: Option<(String, String)>,
    descriptor_set: OnceLock<Bytes>,
}

impl FileRef {
    /// A well-known type: `sha256` holds its import path (its bytes are
    /// generated, not stored).
    fn well_known(path: &str) -> FileRef {
        FileRef {
            namespace: WELL_KNOWN.into(),
            sha256: path.to_string(),
            mtime: DateTime::UNIX_EPOCH,
        }
    }

    pub fn is_well_known(&self) -> bool {
        self.namespace == WELL_KNOWN
    }

    /// What names these exact bytes (`namespace:sha256`); None for a
    /// well-known type, whose bytes never change.
    pub fn content_id(&self) -> Option<String> {
        (!self.is_well_known()).then(|| format!("{}:{}", self.namespace, self.sha256))
    }
}

impl Tree {
    /// Adds the well-known types the tree does not shadow.
    fn add_well_known(&mut self) {
        for path in super::wkt::sources().keys() {
            self.files
                .entry(path.clone())
                .or_insert_with(|| FileRef::well_known(path));
        }
    }

    /// Whether `dir` ("" for the root) is a directory of this tree.
    pub fn is_dir(&self, dir: &str) -> bool {
        dir.is_empty()
            || self
                .files
                .range(format!("{dir}/")..)
                .next()
                .is_some_and(|(p, _)| p.starts_with(&format!("{dir}/")))
    }

    /// The entries directly in `dir`, with their kinds (files carry their
    /// content hash), without any request.
    pub fn list(&self, dir: &str) -> BTreeMap<String, Kind> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut out = BTreeMap::new();
        for (path, f) in self
            .files
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
        {
            let rest = &path[prefix.len()..];
            match rest.split_once('/') {
                Some((d, _)) => out.insert(d.to_string(), Kind::Dir),
                // The content ID the file's lookup gives: READDIR and
                // LOOKUP then name one inode (a well-known type has none).
                None => out.insert(rest.to_string(), Kind::File(f.content_id())),
            };
        }
        out
    }

    /// The tree's `FileDescriptorSet`: the union of its versions' sets,
    /// dependencies first, built once.
    pub fn descriptor_set(
        &self,
        store: &ObjStore,
        rt: &tokio::runtime::Handle,
        budget: Option<std::time::Duration>,
    ) -> Result<Bytes> {
        if let Some(done) = self.descriptor_set.get() {
            return Ok(done.clone());
        }
        if let Some((ns, sha)) = &self.bucket_set {
            let set = super::core::block_within(rt, budget, store.namespace_set_by_hash(ns, sha))?;
            return Ok(self.descriptor_set.get_or_init(|| set).clone());
        }
        // No set in the bucket (format 2): built from the versions the same
        // way, each file at its owner's version in the tree.
        let merged = super::core::block_within(rt, budget, store.versions_set(&self.versions))?;
        Ok(self.descriptor_set.get_or_init(|| merged).clone())
    }
}

/// A namespace at one commit.
#[derive(Debug)]
pub struct Snapshot {
    pub namespace: String,
    pub seq: u64,
    pub schemas: BTreeMap<String, Pointers>,
    pub current: Tree,
    pub staged: Tree,
    /// When the namespace last changed (directories of mutable trees).
    pub mtime: DateTime<Utc>,
}

/// Adds the files of `picks` (versions of `ns`) to `tree`; returns the
/// versions of ancestor namespaces (not builtins) they pinned in their deps.
async fn add_versions(
    store: &ObjStore,
    tree: &mut Tree,
    ns: &str,
    picks: Vec<(String, u64)>,
    skip_existing: bool,
) -> Result<BTreeSet<(String, String, u64)>> {
    let mut pinned = BTreeSet::new();
    for (schema, v) in picks {
        let m = store.manifest(ns, &schema, v).await?;
        pinned.extend(
            m.deps
                .iter()
                .filter(|d| d.namespace_id != ns && d.namespace_id != BUILTINS)
                .map(|d| (d.namespace_id.clone(), d.schema_id.clone(), d.version)),
        );
        for f in m.files {
            if skip_existing && tree.files.contains_key(&f.path) {
                continue; // the namespace shadows the builtin
            }
            let r = FileRef {
                namespace: ns.to_string(),
                sha256: f.sha256,
                mtime: m.created_at,
            };
            tree.files.insert(f.path, r);
        }
        tree.versions.push((ns.to_string(), schema, v));
    }
    Ok(pinned)
}

/// Adds the ancestors' versions `pinned` names, under the namespace's own
/// files (which shadow them, as they shadow builtins).
async fn add_pinned(
    store: &ObjStore,
    tree: &mut Tree,
    pinned: BTreeSet<(String, String, u64)>,
) -> Result<()> {
    for (ns, schema, v) in pinned {
        add_versions(store, tree, &ns, vec![(schema, v)], true).await?;
    }
    Ok(())
}

fn picks(state: &NsState, staged: bool) -> Vec<(String, u64)> {
    state
        .snapshot
        .schemas
        .iter()
        .filter_map(|(s, p)| {
            if staged {
                p.staged.or(p.current)
            } else {
                p.current
            }
            .map(|v| (s.clone(), v))
        })
        .collect()
}

impl Snapshot {
    /// Builds the snapshot of `ns` at `state`, merging `builtins` (the
    /// builtins' current state) under it.
    pub async fn build(
        store: &ObjStore,
        ns: &str,
        state: &NsState,
        builtins: Option<&NsState>,
    ) -> Result<Snapshot> {
        let mut current = Tree::default();
        let mut staged = Tree::default();
        // A soft-deleted namespace shows empty trees; its versions and
        // history stay readable.
        if !crate::registry::delete::is_deleted(&state.snapshot.config) {
            let pins = add_versions(store, &mut current, ns, picks(state, false), false).await?;
            add_pinned(store, &mut current, pins).await?;
            let pins = add_versions(store, &mut staged, ns, picks(state, true), false).await?;
            add_pinned(store, &mut staged, pins).await?;
            if let Some(b) = builtins.filter(|_| ns != BUILTINS) {
                add_versions(store, &mut current, BUILTINS, picks(b, false), true).await?;
                add_versions(store, &mut staged, BUILTINS, picks(b, false), true).await?;
            }
            current.add_well_known();
            staged.add_well_known();
            if let Some(sets) = &state.snapshot.sets {
                current.bucket_set = Some((ns.to_string(), sets.current.clone()));
                staged.bucket_set = Some((ns.to_string(), sets.staged.clone()));
            }
        }
        let mtime = match state.seq {
            0 => store.get_namespace(ns).await?.created_at,
            seq => store.log_entries(ns, seq, seq).await?.remove(0).created_at,
        };
        Ok(Snapshot {
            namespace: ns.to_string(),
            seq: state.seq,
            schemas: state.snapshot.schemas.clone().into_iter().collect(),
            current,
            staged,
            mtime,
        })
    }
}

/// Shared, cheaply cloned.
pub type SharedSnapshot = Arc<Snapshot>;

/// What a refresh changed, as mount paths: the adapter has the kernel
/// forget exactly these, so everything else can stay cached for long.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Paths whose lookup answer changed: added, removed, or now another
    /// file (content, time), kind or target. Missing paths included, so a
    /// cached "does not exist" is dropped too.
    pub entries: BTreeSet<String>,
    /// Directories and symlinks (one inode per path) whose attributes,
    /// listing or target changed.
    pub inodes: BTreeSet<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.inodes.is_empty()
    }

    /// `path` answers differently now, and so does its directory's listing.
    fn entry(&mut self, path: String) {
        if let Some((dir, _)) = path.rsplit_once('/') {
            self.inodes.insert(dir.to_string());
        }
        self.entries.insert(path);
    }
}

/// The directory part of a tree path ("" for the tree's root).
fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

impl Tree {
    /// Records into `out` (as the paths `at` gives the tree's paths) every
    /// file that differs between `self` and `new`, and every directory
    /// that appeared or disappeared with them.
    fn diff(&self, new: &Tree, at: impl Fn(&str) -> Node, out: &mut Changes) {
        let mut changed: Vec<&str> = Vec::new();
        let (mut a, mut b) = (self.files.iter().peekable(), new.files.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some((pa, fa)), Some((pb, fb))) if pa == pb => {
                    if fa != fb {
                        out.entry(at(pa).path());
                    }
                    a.next();
                    b.next();
                }
                (Some((pa, _)), Some((pb, _))) if pa < pb => changed.push(a.next().unwrap().0),
                (Some(_), None) => changed.push(a.next().unwrap().0),
                _ => changed.push(b.next().unwrap().0),
            }
        }
        for path in changed {
            out.entry(at(path).path());
            // Ancestors that exist on one side only, up to the first shared one.
            let mut dir = parent(path);
            while !dir.is_empty() && self.is_dir(dir) != new.is_dir(dir) {
                out.entry(at(dir).path());
                dir = parent(dir);
            }
        }
    }
}

impl Snapshot {
    /// What differs, as the mount shows it, between this snapshot of a
    /// namespace and `new` (a later one of the same namespace).
    pub fn diff(&self, new: &Snapshot, out: &mut Changes) {
        let ns = new.namespace.as_str();
        let own = || ns.to_string();
        out.inodes.insert(Node::Namespace(own()).path());
        for staged in [false, true] {
            out.entry(Node::Set { ns: own(), staged }.path());
        }
        for (old, now, which) in [
            (&self.current, &new.current, TreeName::Current),
            (&self.staged, &new.staged, TreeName::Staged),
        ] {
            old.diff(now, |p| Node::tree(ns, which, p), out);
        }
        for seq in self.seq + 1..=new.seq {
            out.entry(Node::tree(ns, TreeName::History(seq), "").path());
        }
        let schemas: BTreeSet<&String> = self.schemas.keys().chain(new.schemas.keys()).collect();
        for s in schemas {
            let (old, now) = (self.schemas.get(s), new.schemas.get(s));
            if old == now {
                continue;
            }
            let schema = || s.clone();
            if old.is_none() || now.is_none() {
                out.entry(
                    Node::Schema {
                        ns: own(),
                        schema: schema(),
                    }
                    .path(),
                );
            }
            let (old, now) = (
                old.copied().unwrap_or_default(),
                now.copied().unwrap_or_default(),
            );
            for (pointer, was, is) in [
                (Pointer::Current, old.current, now.current),
                (Pointer::Staged, old.staged, now.staged),
            ] {
                if was != is {
                    let link = Node::Link {
                        ns: own(),
                        schema: schema(),
                        pointer,
                    }
                    .path();
                    out.entry(link.clone());
                    out.inodes.insert(link);
                }
            }
            for version in old.latest + 1..=now.latest {
                let dir = Node::Version {
                    ns: own(),
                    schema: schema(),
                    version,
                    item: VersionItem::Dir,
                };
                out.entry(dir.path());
            }
        }
    }
}
