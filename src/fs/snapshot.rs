//! One namespace as the mount shows it at one commit: its current and
//! proposed trees (merged with builtins), its schemas' pointers, and the
//! descriptor sets of both trees (built on first read).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::node::{Node, Pointer, TreeName, VersionItem};
use crate::error::Result;
use crate::ids::BUILTINS;
use crate::objstore::packs::TreeIndex;
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
#[derive(Debug, Clone)]
pub struct FileRef {
    pub namespace: String,
    pub sha256: String,
    pub mtime: DateTime<Utc>,
    /// Its length, when a manifest or tree index recorded it (else the
    /// blob must be read to learn it).
    pub size: Option<u64>,
    /// The pack holding its bytes, when a tree index names one.
    pub pack: Option<Arc<PackSlot>>,
}

/// Equal when they name the same bytes at the same time: where the bytes
/// can be fetched from changes nothing a reader sees.
impl PartialEq for FileRef {
    fn eq(&self, other: &Self) -> bool {
        (&self.namespace, &self.sha256, self.mtime)
            == (&other.namespace, &other.sha256, other.mtime)
    }
}

impl Eq for FileRef {}

/// One pack of a tree index, and every file in it as (blob sha256,
/// offset, size): loading it checks and caches them all.
#[derive(Debug, PartialEq, Eq)]
pub struct PackSlot {
    pub namespace: String,
    pub sha256: String,
    pub files: Vec<(String, u64, u64)>,
}

/// The versions a namespace's newest tree index covers, as tree files.
#[derive(Debug, Default)]
pub struct Packed {
    /// The commit the index was written after (0: no index).
    pub seq: u64,
    versions: HashMap<(String, u64), Vec<(String, FileRef)>>,
    /// Blob sha256 → the pack holding it.
    by_blob: HashMap<String, Arc<PackSlot>>,
}

impl Packed {
    fn from_index(t: TreeIndex) -> Packed {
        let slots: Vec<Arc<PackSlot>> = (0..t.packs.len())
            .map(|i| {
                Arc::new(PackSlot {
                    namespace: t.namespace_id.clone(),
                    sha256: t.packs[i].sha256.clone(),
                    files: t
                        .files
                        .iter()
                        .filter(|f| f.pack == i)
                        .map(|f| (f.sha256.clone(), f.offset, f.size))
                        .collect(),
                })
            })
            .collect();
        let mut versions: HashMap<(String, u64), Vec<(String, FileRef)>> = HashMap::new();
        let mut by_blob = HashMap::new();
        for f in t.files {
            by_blob.insert(f.sha256.clone(), slots[f.pack].clone());
            let v = &t.versions[f.version];
            let r = FileRef {
                namespace: t.namespace_id.clone(),
                sha256: f.sha256,
                mtime: v.created_at,
                size: Some(f.size),
                pack: Some(slots[f.pack].clone()),
            };
            versions
                .entry((v.schema_id.clone(), v.version))
                .or_default()
                .push((f.path, r));
        }
        for v in &t.versions {
            versions
                .entry((v.schema_id.clone(), v.version))
                .or_default();
        }
        Packed {
            seq: t.seq,
            versions,
            by_blob,
        }
    }

    /// The pack holding blob `sha` of namespace `ns`, if this index has one.
    pub fn pack_of(&self, ns: &str, sha: &str) -> Option<&Arc<PackSlot>> {
        self.by_blob.get(sha).filter(|s| s.namespace == ns)
    }

    fn covers(&self, schema: &str, v: u64) -> bool {
        self.versions.contains_key(&(schema.to_string(), v))
    }
}

/// A rebuild LISTs for a newer tree index only when at least this many of
/// the versions it shows are neither in the index it has nor in the
/// snapshot it replaces (whose manifests are cached): a small change costs
/// no LIST, a large promote does. A first build always LISTs.
const RELIST_AFTER: usize = 8;

/// The tree index to build `ns`'s trees from: `prev` unless enough of
/// `picks` are new to it, else the newest in the store (a damaged or
/// unreadable one is ignored: manifests and blobs answer instead).
async fn packed_for(
    store: &ObjStore,
    ns: &str,
    picks: &[(String, u64)],
    prev: Option<&Arc<Packed>>,
    seen: &std::collections::HashSet<(String, u64)>,
) -> Arc<Packed> {
    let new = picks
        .iter()
        .filter(|(s, v)| !prev.is_some_and(|p| p.covers(s, *v)) && !seen.contains(&(s.clone(), *v)))
        .count();
    let keep = || prev.cloned().unwrap_or_default();
    if prev.is_some() && new < RELIST_AFTER {
        return keep();
    }
    match store.newest_tree(ns).await {
        Ok(Some(t)) if prev.is_none_or(|p| t.seq > p.seq) => Arc::new(Packed::from_index(t)),
        Ok(_) => keep(),
        Err(e) => {
            tracing::warn!("not using the tree index of {ns}: {e}");
            keep()
        }
    }
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
            size: super::wkt::sources().get(path).map(|s| s.len() as u64),
            pack: None,
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
            let set =
                super::core::block_within(rt, budget, store.namespace_set_if_present(ns, sha))?;
            if let Some(set) = set {
                return Ok(self.descriptor_set.get_or_init(|| set).clone());
            }
            // Collected by gc (the tree of a commit superseded long ago, as
            // `history/` shows): built from the versions like format 2's.
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
    /// Soft-deleted: the mount hides the namespace (its root entry and
    /// every path below it are ENOENT) until it is undeleted.
    pub deleted: bool,
    /// The tree indexes its trees were built from (its own, the builtins').
    pub packed: Arc<Packed>,
    pub builtins_packed: Arc<Packed>,
}

/// Adds the files of `picks` (versions of `ns`) to `tree`; returns the
/// versions of ancestor namespaces (not builtins) they pinned in their deps.
async fn add_versions(
    store: &ObjStore,
    tree: &mut Tree,
    ns: &str,
    picks: Vec<(String, u64)>,
    skip_existing: bool,
    packed: &Packed,
    pins: bool,
) -> Result<BTreeSet<(String, String, u64)>> {
    let mut pinned = BTreeSet::new();
    for (schema, v) in picks {
        let indexed = packed.versions.get(&(schema.clone(), v));
        // The manifest, unless a tree index lists the files and no pins
        // are wanted (only a namespace with a parent has them).
        let m = match (indexed, pins) {
            (Some(_), false) => None,
            _ => Some(store.manifest(ns, &schema, v).await?),
        };
        if let Some(m) = m.as_ref().filter(|_| pins) {
            pinned.extend(
                m.deps
                    .iter()
                    .filter(|d| d.namespace_id != ns && d.namespace_id != BUILTINS)
                    .map(|d| (d.namespace_id.clone(), d.schema_id.clone(), d.version)),
            );
        }
        let files: Vec<(String, FileRef)> = match (indexed, m) {
            (Some(files), _) => files.clone(),
            (None, Some(m)) => m
                .files
                .into_iter()
                .map(|f| {
                    let r = FileRef {
                        namespace: ns.to_string(),
                        sha256: f.sha256,
                        mtime: m.created_at,
                        size: f.size,
                        pack: None,
                    };
                    (f.path, r)
                })
                .collect(),
            (None, None) => unreachable!("read above"),
        };
        for (path, r) in files {
            if skip_existing && tree.files.contains_key(&path) {
                continue; // the namespace shadows the builtin
            }
            tree.files.insert(path, r);
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
    let unpacked = Packed::default();
    for (ns, schema, v) in pinned {
        add_versions(store, tree, &ns, vec![(schema, v)], true, &unpacked, false).await?;
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
    /// builtins' current state) under it. `prev` is the snapshot it
    /// replaces, if any: its tree indexes are reused unless enough changed.
    pub async fn build(
        store: &ObjStore,
        ns: &str,
        state: &NsState,
        builtins: Option<&NsState>,
        prev: Option<&Snapshot>,
    ) -> Result<Snapshot> {
        let mut current = Tree::default();
        let mut staged = Tree::default();
        let mut packed = prev.map(|p| p.packed.clone()).unwrap_or_default();
        let mut builtins_packed = prev.map(|p| p.builtins_packed.clone()).unwrap_or_default();
        // A soft-deleted namespace is hidden: its trees are not built.
        let deleted = crate::registry::delete::is_deleted(&state.snapshot.config);
        if !deleted {
            let seen = |ns: &str| -> std::collections::HashSet<(String, u64)> {
                prev.into_iter()
                    .flat_map(|p| p.current.versions.iter().chain(&p.staged.versions))
                    .filter(|(n, _, _)| n == ns)
                    .map(|(_, s, v)| (s.clone(), *v))
                    .collect()
            };
            let (cur, stg) = (picks(state, false), picks(state, true));
            let mut all = cur.clone();
            all.extend(stg.iter().filter(|p| !cur.contains(p)).cloned());
            packed = packed_for(store, ns, &all, prev.map(|p| &p.packed), &seen(ns)).await;
            let pins = crate::registry::hierarchy::parent_of(&state.snapshot.config).is_some();
            let pinned = add_versions(store, &mut current, ns, cur, false, &packed, pins).await?;
            add_pinned(store, &mut current, pinned).await?;
            let pinned = add_versions(store, &mut staged, ns, stg, false, &packed, pins).await?;
            add_pinned(store, &mut staged, pinned).await?;
            if let Some(b) = builtins.filter(|_| ns != BUILTINS) {
                let bp = picks(b, false);
                let prev_bp = prev.map(|p| &p.builtins_packed);
                builtins_packed = packed_for(store, BUILTINS, &bp, prev_bp, &seen(BUILTINS)).await;
                let b = &builtins_packed;
                add_versions(store, &mut current, BUILTINS, bp.clone(), true, b, false).await?;
                add_versions(store, &mut staged, BUILTINS, bp, true, b, false).await?;
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
            deleted,
            packed,
            builtins_packed,
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
        if self.deleted != new.deleted {
            // The namespace itself went or came back: the root's entry
            // for it and the root's listing.
            out.entries.insert(Node::Namespace(own()).path());
            out.inodes.insert(Node::Root.path());
        }
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
