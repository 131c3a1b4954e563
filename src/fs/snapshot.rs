//! One namespace as the mount shows it at one commit: its current and
//! proposed trees (merged with builtins), its schemas' pointers, and the
//! descriptor sets of both trees (built on first read).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use prost::Message;

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
                None => out.insert(
                    rest.to_string(),
                    Kind::File(Some(format!("{}:{}", f.namespace, f.sha256))),
                ),
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
        let mut sets = Vec::new();
        for (ns, schema, v) in &self.versions {
            sets.push(
                super::core::block_within(rt, budget, store.get_version(ns, schema, *v))?.compiled,
            );
        }
        // The well-known types last: a shadowing file of the tree wins.
        let wkt: Vec<Bytes> = prost_reflect::DescriptorPool::global()
            .files()
            .filter(|f| f.name().starts_with("google/protobuf/"))
            .map(|f| f.encode_to_vec().into())
            .collect();
        sets.push(RawSet { file: wkt }.encode_to_vec().into());
        let merged = merge_sets(&sets);
        Ok(self.descriptor_set.get_or_init(|| merged).clone())
    }
}

/// `FileDescriptorSet` read at the wire level, so each file's bytes (custom
/// options included) pass through untouched.
#[derive(Clone, PartialEq, prost::Message)]
struct RawSet {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    file: Vec<Bytes>,
}

/// The union of several self-contained sets, each file once, dependencies first.
pub fn merge_sets(sets: &[Bytes]) -> Bytes {
    let mut files: HashMap<String, (Bytes, Vec<String>)> = HashMap::new();
    let mut order = Vec::new();
    for set in sets {
        let Ok(raw) = RawSet::decode(set.clone()) else {
            continue;
        };
        for f in raw.file {
            let Ok(proto) = prost_types::FileDescriptorProto::decode(f.clone()) else {
                continue;
            };
            let name = proto.name().to_string();
            if let std::collections::hash_map::Entry::Vacant(slot) = files.entry(name.clone()) {
                order.push(name);
                slot.insert((f, proto.dependency));
            }
        }
    }
    // Depth-first: every file after its dependencies.
    fn visit(
        n: &str,
        files: &HashMap<String, (Bytes, Vec<String>)>,
        done: &mut BTreeSet<String>,
        out: &mut Vec<Bytes>,
    ) {
        if !done.insert(n.to_string()) {
            return;
        }
        if let Some((bytes, deps)) = files.get(n) {
            for d in deps {
                visit(d, files, done, out);
            }
            out.push(bytes.clone());
        }
    }
    let (mut done, mut out) = (BTreeSet::new(), Vec::new());
    for n in &order {
        visit(n, &files, &mut done, &mut out);
    }
    RawSet { file: out }.encode_to_vec().into()
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
    /// The tree indexes its trees were built from (its own, the builtins').
    pub packed: Arc<Packed>,
    pub builtins_packed: Arc<Packed>,
}

async fn add_versions(
    store: &ObjStore,
    tree: &mut Tree,
    ns: &str,
    picks: Vec<(String, u64)>,
    skip_existing: bool,
    packed: &Packed,
) -> Result<()> {
    for (schema, v) in picks {
        let files: Vec<(String, FileRef)> = match packed.versions.get(&(schema.clone(), v)) {
            Some(files) => files.clone(),
            None => {
                let m = store.manifest(ns, &schema, v).await?;
                m.files
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
                    .collect()
            }
        };
        for (path, r) in files {
            if skip_existing && tree.files.contains_key(&path) {
                continue; // the namespace shadows the builtin
            }
            tree.files.insert(path, r);
        }
        tree.versions.push((ns.to_string(), schema, v));
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
        // A soft-deleted namespace shows empty trees; its versions and
        // history stay readable.
        if !crate::registry::delete::is_deleted(&state.snapshot.config) {
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
            add_versions(store, &mut current, ns, cur, false, &packed).await?;
            add_versions(store, &mut staged, ns, stg, false, &packed).await?;
            if let Some(b) = builtins.filter(|_| ns != BUILTINS) {
                let bp = picks(b, false);
                let prev_bp = prev.map(|p| &p.builtins_packed);
                builtins_packed = packed_for(store, BUILTINS, &bp, prev_bp, &seen(BUILTINS)).await;
                add_versions(
                    store,
                    &mut current,
                    BUILTINS,
                    bp.clone(),
                    true,
                    &builtins_packed,
                )
                .await?;
                add_versions(store, &mut staged, BUILTINS, bp, true, &builtins_packed).await?;
            }
            current.add_well_known();
            staged.add_well_known();
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

fn join(prefix: &str, path: &str) -> String {
    if path.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix}/{path}")
    }
}

impl Tree {
    /// Records into `out` (paths under `prefix`) every file that differs
    /// between `self` and `new`, and every directory that appeared or
    /// disappeared with them.
    fn diff(&self, new: &Tree, prefix: &str, out: &mut Changes) {
        let mut changed: Vec<&str> = Vec::new();
        let (mut a, mut b) = (self.files.iter().peekable(), new.files.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some((pa, fa)), Some((pb, fb))) if pa == pb => {
                    if fa != fb {
                        out.entry(join(prefix, pa));
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
            out.entry(join(prefix, path));
            // Ancestors that exist on one side only, up to the first shared one.
            let mut dir = parent(path);
            while !dir.is_empty() && self.is_dir(dir) != new.is_dir(dir) {
                out.entry(join(prefix, dir));
                dir = parent(dir);
            }
        }
    }
}

impl Snapshot {
    /// What differs, as the mount shows it, between this snapshot of a
    /// namespace and `new` (a later one of the same namespace).
    pub fn diff(&self, new: &Snapshot, out: &mut Changes) {
        let ns = &new.namespace;
        out.inodes.insert(ns.clone());
        for set in ["current.binpb", "staged.binpb"] {
            out.entry(format!("{ns}/{set}"));
        }
        self.current
            .diff(&new.current, &format!("{ns}/current"), out);
        self.staged.diff(&new.staged, &format!("{ns}/staged"), out);
        for seq in self.seq + 1..=new.seq {
            out.entry(format!("{ns}/history/{seq}"));
        }
        let schemas: BTreeSet<&String> = self.schemas.keys().chain(new.schemas.keys()).collect();
        for s in schemas {
            let (old, now) = (self.schemas.get(s), new.schemas.get(s));
            if old == now {
                continue;
            }
            let dir = format!("{ns}/schemas/{s}");
            if old.is_none() || now.is_none() {
                out.entry(dir.clone());
            }
            let (old, now) = (
                old.copied().unwrap_or_default(),
                now.copied().unwrap_or_default(),
            );
            for (link, was, is) in [
                ("current", old.current, now.current),
                ("staged", old.staged, now.staged),
            ] {
                if was != is {
                    out.entry(format!("{dir}/{link}"));
                    out.inodes.insert(format!("{dir}/{link}"));
                }
            }
            for v in old.latest + 1..=now.latest {
                out.entry(format!("{dir}/versions/{v}"));
            }
        }
    }
}
