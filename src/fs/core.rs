//! The filesystem core: paths to entries and contents, served from cached
//! namespace snapshots. No kernel involved: `fuse.rs` adapts it to fuser
//! (through `vfs.rs`, which keeps inodes and handles), and tests drive it
//! directly. The paths it serves are [`super::node`]'s grammar.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::node::{Node, Pointer, STATS_DIR, TreeName, VersionItem, set_name};
use super::snapshot::{Changes, FileRef, Kind, PackSlot, SharedSnapshot, Snapshot, Tree};
use crate::error::Error;
use crate::ids::{BUILTINS, validate_namespace_id};
use crate::objstore::ObjStore;

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir {
        mtime: DateTime<Utc>,
        immutable: bool,
    },
    /// `content_id` names the exact bytes (a content hash) when they can
    /// change under the same path, so the adapter gives each its own inode.
    File {
        size: u64,
        mtime: DateTime<Utc>,
        immutable: bool,
        content_id: Option<String>,
    },
    Symlink {
        target: String,
        mtime: DateTime<Utc>,
    },
}

impl Entry {
    pub fn immutable(&self) -> bool {
        match self {
            Entry::Dir { immutable, .. } | Entry::File { immutable, .. } => *immutable,
            Entry::Symlink { .. } => false,
        }
    }
}

/// Why a path cannot be served; the adapter turns it into an errno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsError {
    NotFound,
    NotDir,
    /// Storage failed and nothing cached could answer.
    Io(String),
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsError::NotFound => f.write_str("not found"),
            FsError::NotDir => f.write_str("not a directory"),
            FsError::Io(msg) => f.write_str(msg),
        }
    }
}

impl From<Error> for FsError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound(_) | Error::InvalidId { .. } => FsError::NotFound,
            other => FsError::Io(other.to_string()),
        }
    }
}

pub type FsResult<T> = Result<T, FsError>;

/// `rt.block_on(fut)`, failing with a storage error once `budget` has
/// passed (the future is dropped, cancelling its requests).
pub(crate) fn block_within<T>(
    rt: &tokio::runtime::Handle,
    budget: Option<Duration>,
    fut: impl std::future::Future<Output = crate::Result<T>>,
) -> crate::Result<T> {
    let Some(budget) = budget else {
        return rt.block_on(fut);
    };
    rt.block_on(async {
        match tokio::time::timeout(budget, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::Storage(object_store::Error::Generic {
                store: "mount",
                source: format!(
                    "storage did not answer within {} s, the mount's budget per request (--storage-timeout)",
                    budget.as_secs_f64()
                )
                .into(),
            })),
        }
    })
}

/// How long the kernel may keep what a lookup or getattr answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// Ask again every time (live counters).
    Live,
    /// Keep it for one refresh interval: nothing announces its changes.
    Refresh,
    /// Keep it until [`FsCore::refresh`] reports it in its [`Changes`]
    /// (or forever: immutable paths never are).
    UntilChanged,
}

/// Mount options the core needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Show only these namespaces (all when empty).
    pub namespaces: Vec<String>,
    /// How often namespaces are checked for new commits.
    pub refresh: Duration,
}

/// Blobs fetched ahead of use at once: enough to hide one round trip per
/// file, few enough not to crowd out requests a reader waits for.
const PREFETCH_CONCURRENCY: usize = 16;

/// Namespace states read at once to tell which listed ones are deleted.
const STATE_READS: usize = 16;

/// Per-operation counters, shown in `.protoshelf/stats`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Kernel requests, counted by the adapter.
    pub fuse_lookup: AtomicU64,
    pub fuse_getattr: AtomicU64,
    pub fuse_open: AtomicU64,
    pub fuse_read: AtomicU64,
    pub fuse_readdir: AtomicU64,
    pub fuse_release: AtomicU64,
    /// Core work: paths resolved, directories listed, contents loaded.
    pub resolves: AtomicU64,
    pub listings: AtomicU64,
    pub content_loads: AtomicU64,
    pub refreshes: AtomicU64,
    /// Kernel cache entries and inodes dropped after refreshes.
    pub invalidated_entries: AtomicU64,
    pub invalidated_inodes: AtomicU64,
    pub refresh_errors: AtomicU64,
    pub snapshot_builds: AtomicU64,
    pub negative_hits: AtomicU64,
}

pub struct FsCore {
    store: ObjStore,
    rt: tokio::runtime::Handle,
    opts: Options,
    snapshots: Mutex<HashMap<String, SharedSnapshot>>,
    /// Immutable history snapshots, by (namespace, seq).
    history: moka::sync::Cache<(String, u64), SharedSnapshot>,
    /// Names under the root known not to be namespaces, until this instant.
    negative: Mutex<HashMap<String, Instant>>,
    /// The namespace list, and when it was read.
    listing: Mutex<Option<(Instant, Vec<String>)>>,
    /// When the namespace list last changed (the root's mtime: a changed
    /// mtime makes the kernel drop its cached listing of the root).
    listing_changed: Mutex<DateTime<Utc>>,
    /// Held shared by every kernel request that can be cached, and taken
    /// exclusively once by a refresh after it swapped snapshots: so no
    /// answer computed from an old snapshot reaches the kernel after the
    /// invalidations meant to replace it.
    gate: RwLock<()>,
    /// The builtins' seq each namespace snapshot was built with.
    builtins_seen: Mutex<HashMap<String, u64>>,
    /// Until when the builtins namespace is taken to be absent.
    builtins_absent_until: Mutex<Option<Instant>>,
    pub counters: Counters,
    started: DateTime<Utc>,
    /// See [`FsCore::with_prefetch`].
    prefetch: bool,
    /// See [`FsCore::with_budget`].
    budget: Option<Duration>,
    /// Packs loaded (or being loaded) into the store's cache.
    packs: PackLoads,
}

/// One load per pack, shared by every reader waiting for it (a failed
/// load is tried again by the next reader).
type PackLoads = Arc<Mutex<HashMap<(String, String), Arc<tokio::sync::OnceCell<()>>>>>;

/// Loads a pack's files into the store's cache, once: see
/// [`ObjStore::load_pack`] (damage is `Corrupt`, so EIO). A missing pack
/// (gc collected it: the snapshot's tree index was superseded long ago)
/// loads nothing, so its files are read from their blobs, which gc keeps
/// while a version names them.
async fn load_pack(store: &ObjStore, loads: &PackLoads, slot: Arc<PackSlot>) -> crate::Result<()> {
    let cell = loads
        .lock()
        .unwrap()
        .entry((slot.namespace.clone(), slot.sha256.clone()))
        .or_default()
        .clone();
    cell.get_or_try_init(|| async {
        match store
            .load_pack(&slot.namespace, &slot.sha256, &slot.files)
            .await
        {
            Err(Error::NotFound(what)) => {
                tracing::debug!("reading blobs instead of a pack: {what}");
                Ok(())
            }
            other => other,
        }
    })
    .await
    .map(|_| ())
}

impl FsCore {
    pub fn new(store: ObjStore, rt: tokio::runtime::Handle, opts: Options) -> Self {
        FsCore {
            store,
            rt,
            opts,
            snapshots: Mutex::default(),
            history: moka::sync::Cache::new(64),
            negative: Mutex::default(),
            listing: Mutex::default(),
            listing_changed: Mutex::new(Utc::now()),
            gate: RwLock::default(),
            builtins_seen: Mutex::default(),
            builtins_absent_until: Mutex::default(),
            counters: Counters::default(),
            started: Utc::now(),
            prefetch: false,
            budget: None,
            packs: Default::default(),
        }
    }

    /// Bounds the storage work of each kernel request and of each
    /// namespace in a refresh round: past `budget` it fails (EIO) however
    /// many requests it made. The store's own per-request budget bounds one
    /// request; this bounds their sum, so a hung endpoint costs a reader
    /// one budget, not one per request (unbounded by default).
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Runs `fut` on the runtime within the budget.
    fn wait<T>(
        &self,
        fut: impl std::future::Future<Output = crate::Result<T>>,
    ) -> crate::Result<T> {
        block_within(&self.rt, self.budget, fut)
    }

    /// Fetch the files of a namespace's `current/` into the content cache,
    /// in the background, when the namespace is first shown (off by default).
    pub fn with_prefetch(mut self, on: bool) -> Self {
        self.prefetch = on;
        self
    }

    pub fn store(&self) -> &ObjStore {
        &self.store
    }

    /// Held while answering a kernel request whose answer it may cache
    /// (see the `gate` field). Not reentrant: take it once per request.
    pub fn serving(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|e| e.into_inner())
    }

    /// How long the kernel may cache the answer for `path` (`found`: it
    /// exists). Refreshes report every change below a namespace, so those
    /// answers, misses included, stay until invalidated; namespaces
    /// themselves appear unannounced (a refresh does not LIST the store),
    /// so the root and misses at the root last one refresh interval.
    pub fn validity(&self, path: &str, found: bool) -> Validity {
        match Node::parse(path) {
            Ok(Node::Stats) if found => Validity::Live,
            Ok(Node::Root) => Validity::Refresh,
            Ok(Node::Namespace(_)) if !found => Validity::Refresh,
            _ => Validity::UntilChanged,
        }
    }

    fn visible(&self, ns: &str) -> bool {
        self.opts.namespaces.is_empty() || self.opts.namespaces.iter().any(|n| n == ns)
    }

    /// The namespaces under the root, soft-deleted ones left out (as
    /// `namespace list` does): the `--namespace` list, or a LIST of the
    /// store, checked at most once per refresh interval.
    pub fn namespaces(&self) -> FsResult<Vec<String>> {
        let mut listing = self.listing.lock().unwrap();
        if let Some((at, names)) = &*listing
            && at.elapsed() < self.opts.refresh
        {
            return Ok(names.clone());
        }
        let given = &self.opts.namespaces;
        let listed = self.wait(async {
            let names = match given.is_empty() {
                true => self
                    .store
                    .list_namespaces()
                    .await?
                    .into_iter()
                    .map(|n| n.id)
                    .collect(),
                false => given.clone(),
            };
            self.shown(names).await
        });
        match listed {
            Ok(names) => {
                if listing.as_ref().is_some_and(|(_, old)| *old != names) {
                    *self.listing_changed.lock().unwrap() = Utc::now();
                }
                *listing = Some((Instant::now(), names.clone()));
                Ok(names)
            }
            // Storage trouble: the last listing keeps being served (or the
            // list as given; lookups still hide a deleted namespace whose
            // snapshot is loaded).
            Err(e) => match &*listing {
                Some((_, names)) => Ok(names.clone()),
                None if !given.is_empty() => Ok(given.clone()),
                None => Err(FsError::from(e)),
            },
        }
    }

    /// Of `names`, the namespaces that are not soft-deleted: told by the
    /// loaded snapshot (refresh rounds keep it fresh), else by the state
    /// read now (so at most once per listing). A name without a namespace
    /// stays (a `--namespace` given that does not exist yet).
    async fn shown(&self, names: Vec<String>) -> crate::Result<Vec<String>> {
        use futures::{StreamExt, TryStreamExt};
        let loaded: HashMap<String, bool> = {
            let snapshots = self.snapshots.lock().unwrap();
            names
                .iter()
                .filter_map(|n| snapshots.get(n).map(|s| (n.clone(), s.deleted)))
                .collect()
        };
        let checks = names.into_iter().map(|ns| {
            let known = loaded.get(&ns).copied();
            async move {
                let deleted = match known {
                    Some(deleted) => deleted,
                    None => match self.store.namespace_state(&ns).await {
                        Ok(state) => crate::registry::delete::is_deleted(&state.snapshot.config),
                        Err(Error::NotFound(_)) => false,
                        Err(e) => return Err(e),
                    },
                };
                Ok((!deleted).then_some(ns))
            }
        });
        futures::stream::iter(checks)
            .buffered(STATE_READS)
            .try_filter_map(|ns| async move { Ok(ns) })
            .try_collect()
            .await
    }

    /// The namespace's snapshot: cached, loaded on first use. A
    /// soft-deleted namespace's stays loaded (refreshes notice an
    /// undelete) but is not found.
    fn snapshot(&self, ns: &str) -> FsResult<SharedSnapshot> {
        if !self.visible(ns) || validate_namespace_id(ns).is_err() {
            return Err(FsError::NotFound);
        }
        if let Some(s) = self.snapshots.lock().unwrap().get(ns) {
            return match s.deleted {
                true => Err(FsError::NotFound),
                false => Ok(s.clone()),
            };
        }
        if let Some(until) = self.negative.lock().unwrap().get(ns)
            && Instant::now() < *until
        {
            self.counters.negative_hits.fetch_add(1, Relaxed);
            return Err(FsError::NotFound);
        }
        match self.load(ns) {
            Ok(s) if s.deleted => Err(FsError::NotFound),
            Ok(s) => {
                if self.prefetch {
                    self.prefetch(&s);
                }
                Ok(s)
            }
            Err(FsError::NotFound) => {
                // protoc and shells probe names: remember misses briefly.
                let until = Instant::now() + self.opts.refresh;
                self.negative.lock().unwrap().insert(ns.to_string(), until);
                Err(FsError::NotFound)
            }
            Err(e) => Err(e),
        }
    }

    /// Fetches the blobs of `snap`'s current tree into the content cache in
    /// the background, a few at a time, in path order: a cold compile then
    /// finds most files already fetched instead of waiting for one GET per
    /// file in turn. Failures are ignored (a read fetches again).
    fn prefetch(&self, snap: &Snapshot) {
        use futures::StreamExt;
        // Packs first, in the path order of their first file (what a
        // compile of the tree reads first), then blobs no pack holds.
        let mut packs: Vec<Arc<PackSlot>> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut blobs = std::collections::BTreeSet::new();
        for f in snap.current.files.values().filter(|f| !f.is_well_known()) {
            match &f.pack {
                Some(slot) => {
                    if seen.insert((slot.namespace.clone(), slot.sha256.clone())) {
                        packs.push(slot.clone());
                    }
                }
                None => {
                    blobs.insert((f.namespace.clone(), f.sha256.clone()));
                }
            }
        }
        let (store, loaded) = (self.store.clone(), self.packs.clone());
        self.rt.spawn(async move {
            let (s2, l2) = (store.clone(), loaded.clone());
            futures::stream::iter(packs)
                .map(|slot| {
                    let (store, loaded) = (s2.clone(), l2.clone());
                    async move { load_pack(&store, &loaded, slot).await.ok() }
                })
                .buffer_unordered(PREFETCH_CONCURRENCY)
                .for_each(|_| async {})
                .await;
            futures::stream::iter(blobs)
                .map(|(ns, sha)| {
                    let store = store.clone();
                    async move { store.get_blob(&ns, &sha).await.ok() }
                })
                .buffer_unordered(PREFETCH_CONCURRENCY)
                .for_each(|_| async {})
                .await
        });
    }

    /// The builtins' current state, for merging under `ns` (None for the
    /// builtins namespace itself, or when there are no builtins).
    fn builtins_state(&self, ns: &str) -> FsResult<Option<crate::objstore::NsState>> {
        if ns == BUILTINS {
            return Ok(None);
        }
        self.read_builtins()
    }

    /// The builtins' current state, or None when there is no builtins
    /// namespace. Its absence is remembered for 30 refresh intervals, so an
    /// idle mount without builtins costs one GET per namespace per interval;
    /// builtins created later appear within that time.
    fn read_builtins(&self) -> FsResult<Option<crate::objstore::NsState>> {
        if self
            .builtins_absent_until
            .lock()
            .unwrap()
            .is_some_and(|t| Instant::now() < t)
        {
            return Ok(None);
        }
        match self.wait(self.store.namespace_state(BUILTINS)) {
            Ok(s) => Ok(Some((*s).clone())),
            Err(Error::NotFound(_)) => {
                *self.builtins_absent_until.lock().unwrap() =
                    Some(Instant::now() + self.opts.refresh * 30);
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the namespace's latest state and rebuilds its snapshot if it moved.
    fn load(&self, ns: &str) -> FsResult<SharedSnapshot> {
        let builtins = self.builtins_state(ns)?;
        self.load_with(ns, builtins.as_ref())
    }

    /// [`Self::load`] with the builtins' state already read (a refresh round
    /// reads it once for every namespace).
    fn load_with(
        &self,
        ns: &str,
        builtins: Option<&crate::objstore::NsState>,
    ) -> FsResult<SharedSnapshot> {
        let state = if ns == BUILTINS {
            match builtins {
                Some(b) => Arc::new(b.clone()),
                None => self.wait(self.store.namespace_state(ns))?,
            }
        } else {
            self.wait(self.store.namespace_state(ns))?
        };
        let builtins = builtins.filter(|_| ns != BUILTINS);
        let builtins_seq = builtins.map_or(0, |b| b.seq);
        let cached = self.snapshots.lock().unwrap().get(ns).cloned();
        if let Some(old) = cached.clone()
            && old.seq == state.seq
            && self.builtins_seq(ns) == builtins_seq
        {
            return Ok(old);
        }
        self.counters.snapshot_builds.fetch_add(1, Relaxed);
        let snap = Arc::new(self.wait(Snapshot::build(
            &self.store,
            ns,
            &state,
            builtins,
            cached.as_deref(),
        ))?);
        self.snapshots
            .lock()
            .unwrap()
            .insert(ns.to_string(), snap.clone());
        self.builtins_seen
            .lock()
            .unwrap()
            .insert(ns.to_string(), builtins_seq);
        Ok(snap)
    }

    fn builtins_seq(&self, ns: &str) -> u64 {
        self.builtins_seen
            .lock()
            .unwrap()
            .get(ns)
            .copied()
            .unwrap_or(0)
    }

    /// One refresh round: every loaded namespace checks for new commits (one
    /// GET each when nothing changed; builtins once). Errors keep the old
    /// snapshot; the next round tries again. Returns what changed, for the
    /// kernel to forget; by then no request still works from a replaced
    /// snapshot.
    pub fn refresh(&self) -> Changes {
        let mut changes = Changes::default();
        self.refresh_into(&mut changes);
        if !changes.is_empty() {
            // Wait for requests that may have read a replaced snapshot.
            drop(self.gate.write().unwrap_or_else(|e| e.into_inner()));
        }
        changes
    }

    fn refresh_into(&self, changes: &mut Changes) {
        self.counters.refreshes.fetch_add(1, Relaxed);
        let errors_before = self.counters.refresh_errors.load(Relaxed);
        let loaded: Vec<String> = self.snapshots.lock().unwrap().keys().cloned().collect();
        self.negative.lock().unwrap().clear();
        // Builtins are read once per round, whatever the number of namespaces.
        let builtins = match self.read_builtins() {
            Ok(b) => b,
            Err(e) => {
                self.counters.refresh_errors.fetch_add(1, Relaxed);
                super::warnings::storage_unreachable(format_args!(
                    "refresh of {BUILTINS} failed, serving cached trees: {e}"
                ));
                return;
            }
        };
        let started = Instant::now();
        for ns in loaded {
            // Storage failing slowly: the round ends after one budget (the
            // rest keep their trees until the next round), so a round is
            // bounded whatever the number of namespaces.
            if self.budget.is_some_and(|b| started.elapsed() >= b)
                && self.counters.refresh_errors.load(Relaxed) > errors_before
            {
                tracing::warn!(
                    "refresh round stopped after the mount's budget; next round retries"
                );
                break;
            }
            let old = self.snapshots.lock().unwrap().get(&ns).cloned();
            match self.load_with(&ns, builtins.as_ref()) {
                Ok(new) => {
                    if let Some(old) = old.filter(|old| !Arc::ptr_eq(old, &new)) {
                        old.diff(&new, changes);
                        if old.deleted != new.deleted {
                            // Deleted or undeleted: the root lists it
                            // or not from the next listing on.
                            *self.listing.lock().unwrap() = None;
                            *self.listing_changed.lock().unwrap() = Utc::now();
                        }
                    }
                }
                Err(e) => {
                    self.counters.refresh_errors.fetch_add(1, Relaxed);
                    super::warnings::storage_unreachable(format_args!(
                        "refresh of namespace {ns} failed, serving the cached tree: {e}"
                    ));
                }
            }
        }
    }

    /// `history/<seq>` of a namespace: commits 1 to the latest exist.
    fn history_at(&self, snap: &Snapshot, seq: u64) -> FsResult<SharedSnapshot> {
        if seq == 0 || seq > snap.seq {
            return Err(FsError::NotFound);
        }
        self.history_snapshot(&snap.namespace, seq)
    }

    fn history_snapshot(&self, ns: &str, seq: u64) -> FsResult<SharedSnapshot> {
        let key = (ns.to_string(), seq);
        if let Some(s) = self.history.get(&key) {
            return Ok(s);
        }
        let state = self.wait(self.store.namespace_state_at(ns, seq))?;
        // Builtins as they are now: history is about this namespace's commits.
        let builtins = self.builtins_state(ns)?;
        // The namespace's tree indexes cover its older versions too.
        let now = self.snapshots.lock().unwrap().get(ns).cloned();
        let snap = Arc::new(self.wait(Snapshot::build(
            &self.store,
            ns,
            &state,
            builtins.as_ref(),
            now.as_deref(),
        ))?);
        self.history.insert(key, snap.clone());
        Ok(snap)
    }

    /// Runs `f` on one of the namespace's trees, with the mtime of its
    /// directories and whether it is immutable (history).
    fn with_tree<T>(
        &self,
        snap: &Snapshot,
        which: TreeName,
        f: impl FnOnce(&Tree, DateTime<Utc>, bool) -> FsResult<T>,
    ) -> FsResult<T> {
        match which {
            TreeName::Current => f(&snap.current, snap.mtime, false),
            TreeName::Staged => f(&snap.staged, snap.mtime, false),
            TreeName::History(seq) => {
                let old = self.history_at(snap, seq)?;
                f(&old.current, old.mtime, true)
            }
        }
    }

    fn blob_size(&self, ns: &str, sha: &str) -> FsResult<u64> {
        Ok(self.referenced_blob(ns, sha)?.len() as u64)
    }

    /// A blob a version names: a missing one is damage (EIO naming its
    /// key), not an absent file.
    fn referenced_blob(&self, ns: &str, sha: &str) -> FsResult<Bytes> {
        match self.wait(self.store.get_blob(ns, sha)) {
            Ok(b) => Ok(b.source),
            Err(Error::NotFound(_)) => Err(FsError::Io(format!(
                "corrupt object ns/{ns}/blobs/{sha}: missing, but a version refers to it"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    fn tree_entry(
        &self,
        tree: &Tree,
        path: &str,
        dir_mtime: DateTime<Utc>,
        immutable: bool,
    ) -> FsResult<Entry> {
        if let Some(f) = tree.files.get(path) {
            let size = match f.size {
                Some(size) => size,
                None => self.file_bytes(f)?.len() as u64,
            };
            return Ok(Entry::File {
                size,
                mtime: f.mtime,
                immutable,
                content_id: f.content_id(),
            });
        }
        if tree.is_dir(path) {
            return Ok(Entry::Dir {
                mtime: dir_mtime,
                immutable,
            });
        }
        Err(FsError::NotFound)
    }

    /// What `path` is.
    pub fn entry(&self, path: &str) -> FsResult<Entry> {
        self.counters.resolves.fetch_add(1, Relaxed);
        let node = Node::parse(path)?;
        let dir = |mtime, immutable| Ok(Entry::Dir { mtime, immutable });
        match &node {
            Node::Root if self.opts.namespaces.is_empty() => {
                // Re-list (at most once per interval), so a new namespace
                // changes the root's mtime. Storage trouble: the last mtime.
                let _ = self.namespaces();
                dir(*self.listing_changed.lock().unwrap(), false)
            }
            Node::Root | Node::StatsDir => dir(self.started, false),
            Node::Stats => Ok(Entry::File {
                size: self.stats().len() as u64,
                mtime: Utc::now(),
                immutable: false,
                content_id: None,
            }),
            _ => self.ns_entry(&*self.snapshot_of(&node)?, &node),
        }
    }

    /// The snapshot of the namespace `node` is in.
    fn snapshot_of(&self, node: &Node) -> FsResult<SharedSnapshot> {
        self.snapshot(node.namespace().ok_or(FsError::NotFound)?)
    }

    /// What a node below a namespace is, in `snap`.
    fn ns_entry(&self, snap: &Snapshot, node: &Node) -> FsResult<Entry> {
        let mutable_dir = Ok(Entry::Dir {
            mtime: snap.mtime,
            immutable: false,
        });
        let pointers = |schema: &str| snap.schemas.get(schema).ok_or(FsError::NotFound);
        match node {
            Node::Namespace(_) | Node::Schemas(_) | Node::History(_) => mutable_dir,
            Node::Tree { tree, path, .. } => self.with_tree(snap, *tree, |t, mtime, immutable| {
                self.tree_entry(t, path, mtime, immutable)
            }),
            Node::Set { staged, .. } => Ok(Entry::File {
                size: self.set_bytes(snap, *staged)?.len() as u64,
                mtime: snap.mtime,
                immutable: false,
                content_id: Some(set_content_id(snap, *staged)),
            }),
            Node::Schema { schema, .. } | Node::Versions { schema, .. } => {
                pointers(schema)?;
                mutable_dir
            }
            Node::Link {
                schema, pointer, ..
            } => {
                let p = pointers(schema)?;
                let v = match pointer {
                    Pointer::Current => p.current,
                    Pointer::Staged => p.staged,
                };
                Ok(Entry::Symlink {
                    target: format!("versions/{}", v.ok_or(FsError::NotFound)?),
                    mtime: snap.mtime,
                })
            }
            Node::Version {
                schema,
                version,
                item,
                ..
            } => self.version_entry(snap, schema, *version, item),
            Node::Root | Node::StatsDir | Node::Stats => Err(FsError::NotFound),
        }
    }

    /// `current.binpb` or `staged.binpb` of `snap`.
    fn set_bytes(&self, snap: &Snapshot, staged: bool) -> FsResult<Bytes> {
        let tree = if staged { &snap.staged } else { &snap.current };
        Ok(tree.descriptor_set(&self.store, &self.rt, self.budget)?)
    }

    fn version_entry(
        &self,
        snap: &Snapshot,
        schema: &str,
        v: u64,
        item: &VersionItem,
    ) -> FsResult<Entry> {
        let ns = snap.namespace.as_str();
        let v = self.published_number(snap, schema, v)?;
        let m = self.wait(self.store.manifest(ns, schema, v))?;
        let file = |size| {
            Ok(Entry::File {
                size,
                mtime: m.created_at,
                immutable: true,
                content_id: None,
            })
        };
        match item {
            VersionItem::Dir => Ok(Entry::Dir {
                mtime: m.created_at,
                immutable: true,
            }),
            VersionItem::Descriptor => file(m.descriptor.size),
            VersionItem::Json => file(version_json(&m).len() as u64),
            VersionItem::Path(path) => {
                if let Some(f) = m.files.iter().find(|f| f.path == *path) {
                    // Manifests older than sizes: the blob tells.
                    return match f.size {
                        Some(size) => file(size),
                        None => file(self.blob_size(ns, &f.sha256)?),
                    };
                }
                let prefix = format!("{path}/");
                if m.files.iter().any(|f| f.path.starts_with(&prefix)) {
                    return Ok(Entry::Dir {
                        mtime: m.created_at,
                        immutable: true,
                    });
                }
                Err(FsError::NotFound)
            }
        }
    }

    /// The entries of directory `path` with their kinds, from cached state
    /// (no request per entry).
    pub fn list(&self, path: &str) -> FsResult<BTreeMap<String, Kind>> {
        self.counters.listings.fetch_add(1, Relaxed);
        let node = Node::parse(path)?;
        let names = |v: &[&str], k: Kind| {
            v.iter()
                .map(|n| (n.to_string(), k.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        let dirs = |v: Vec<String>| {
            v.into_iter()
                .map(|n| (n, Kind::Dir))
                .collect::<BTreeMap<_, _>>()
        };
        match &node {
            Node::Root => {
                let mut out = dirs(self.namespaces()?);
                out.insert(STATS_DIR.into(), Kind::Dir);
                return Ok(out);
            }
            Node::StatsDir => return Ok(names(&["stats"], Kind::File(None))),
            Node::Stats => return Err(FsError::NotDir),
            _ => {}
        }
        let snap = self.snapshot_of(&node)?;
        let ns = snap.namespace.as_str();
        match &node {
            Node::Namespace(_) => {
                let mut out = names(&["current", "staged", "schemas", "history"], Kind::Dir);
                for staged in [false, true] {
                    let id = set_content_id(&snap, staged);
                    out.insert(set_name(staged).into(), Kind::File(Some(id)));
                }
                Ok(out)
            }
            Node::Tree { tree, path, .. } => {
                self.with_tree(&snap, *tree, |t, _, _| tree_list(t, path))
            }
            Node::Schemas(_) => Ok(dirs(snap.schemas.keys().cloned().collect())),
            Node::Schema { schema, .. } => {
                let p = snap.schemas.get(schema).ok_or(FsError::NotFound)?;
                let mut out = names(&["versions"], Kind::Dir);
                if p.current.is_some() {
                    out.insert("current".into(), Kind::Symlink);
                }
                if p.staged.is_some() {
                    out.insert("staged".into(), Kind::Symlink);
                }
                Ok(out)
            }
            Node::Versions { schema, .. } => {
                snap.schemas.get(schema).ok_or(FsError::NotFound)?;
                // The versions the log named: a manifest it never named is
                // an interrupted or superseded publish's.
                let published = self.wait(self.store.published_upto(ns, snap.seq))?;
                Ok(dirs(
                    published.of(schema).iter().map(u64::to_string).collect(),
                ))
            }
            Node::Version {
                schema,
                version,
                item: item @ (VersionItem::Dir | VersionItem::Path(_)),
                ..
            } => {
                let v = self.published_number(&snap, schema, *version)?;
                let m = self.wait(self.store.manifest(ns, schema, v))?;
                let mut tree = Tree::default();
                for f in &m.files {
                    let r = FileRef {
                        namespace: ns.to_string(),
                        sha256: f.sha256.clone(),
                        mtime: m.created_at,
                        size: f.size,
                        pack: None,
                    };
                    tree.files.insert(f.path.clone(), r);
                }
                let tail = match item {
                    VersionItem::Path(p) => p.as_str(),
                    _ => "",
                };
                // Version files are immutable: one inode per path is enough.
                let mut out: BTreeMap<String, Kind> = tree_list(&tree, tail)?
                    .into_iter()
                    .map(|(n, k)| (n, if k == Kind::Dir { k } else { Kind::File(None) }))
                    .collect();
                if tail.is_empty() {
                    out.extend(names(
                        &["descriptor.binpb", "version.json"],
                        Kind::File(None),
                    ));
                }
                Ok(out)
            }
            Node::History(_) => Ok(dirs((1..=snap.seq).map(|s| s.to_string()).collect())),
            _ => match self.ns_entry(&snap, &node)? {
                Entry::Dir { .. } => Err(FsError::NotFound),
                _ => Err(FsError::NotDir),
            },
        }
    }

    /// The bytes of file `path`. Callers keep them for the life of an open
    /// file, so a file never mixes versions.
    pub fn content(&self, path: &str) -> FsResult<Bytes> {
        self.counters.content_loads.fetch_add(1, Relaxed);
        let node = Node::parse(path)?;
        match &node {
            Node::Stats => return Ok(Bytes::from(self.stats())),
            Node::Tree { .. } | Node::Set { .. } | Node::Version { .. } => {}
            _ => return Err(FsError::NotFound),
        }
        let snap = self.snapshot_of(&node)?;
        let ns = snap.namespace.as_str();
        match &node {
            Node::Tree { tree, path, .. } => self.with_tree(&snap, *tree, |t, _, _| {
                self.file_bytes(t.files.get(path).ok_or(FsError::NotFound)?)
            }),
            Node::Set { staged, .. } => self.set_bytes(&snap, *staged),
            Node::Version {
                schema,
                version,
                item,
                ..
            } => {
                let v = self.published_number(&snap, schema, *version)?;
                match item {
                    VersionItem::Descriptor => {
                        Ok(self.wait(self.store.get_version(ns, schema, v))?.compiled)
                    }
                    VersionItem::Json => {
                        let m = self.wait(self.store.manifest(ns, schema, v))?;
                        Ok(Bytes::from(version_json(&m)))
                    }
                    VersionItem::Path(path) => {
                        let m = self.wait(self.store.manifest(ns, schema, v))?;
                        let f = m
                            .files
                            .iter()
                            .find(|f| f.path == *path)
                            .ok_or(FsError::NotFound)?;
                        self.referenced_blob(ns, &f.sha256)
                    }
                    VersionItem::Dir => Err(FsError::NotFound),
                }
            }
            _ => Err(FsError::NotFound),
        }
    }

    /// A `versions/<N>` segment naming a version the log staged or made
    /// current; any other stored manifest is not shown.
    fn published_number(&self, snap: &Snapshot, schema: &str, v: u64) -> FsResult<u64> {
        let p = snap.schemas.get(schema).ok_or(FsError::NotFound)?;
        if p.current == Some(v) || p.staged == Some(v) {
            return Ok(v);
        }
        let published = self.wait(self.store.published_upto(&snap.namespace, snap.seq))?;
        if v <= p.latest && published.contains(schema, v) {
            Ok(v)
        } else {
            Err(FsError::NotFound)
        }
    }

    /// The bytes of a tree file: its blob, or a well-known type's source.
    fn file_bytes(&self, f: &FileRef) -> FsResult<Bytes> {
        if f.is_well_known() {
            let src = super::wkt::sources()
                .get(&f.sha256)
                .ok_or(FsError::NotFound)?;
            return Ok(Bytes::from_static(src.as_bytes()));
        }
        if let Some(slot) = &f.pack {
            self.wait(load_pack(&self.store, &self.packs, slot.clone()))
                .map_err(FsError::from)?;
        }
        self.referenced_blob(&f.namespace, &f.sha256)
    }

    /// The pack a loaded snapshot's tree index places blob `sha` of `ns` in.
    fn pack_of(&self, ns: &str, sha: &str) -> Option<Arc<PackSlot>> {
        let snaps = self.snapshots.lock().unwrap();
        snaps.values().find_map(|s| {
            s.packed
                .pack_of(ns, sha)
                .or_else(|| s.builtins_packed.pack_of(ns, sha))
                .cloned()
        })
    }

    /// A blob's bytes (what a content ID `namespace:sha256` names).
    pub fn blob(&self, ns: &str, sha: &str) -> FsResult<Bytes> {
        self.counters.content_loads.fetch_add(1, Relaxed);
        if let Some(slot) = self.pack_of(ns, sha) {
            self.wait(load_pack(&self.store, &self.packs, slot))
                .map_err(FsError::from)?;
        }
        self.referenced_blob(ns, sha)
    }

    /// The target of symlink `path`.
    pub fn readlink(&self, path: &str) -> FsResult<String> {
        match self.entry(path)? {
            Entry::Symlink { target, .. } => Ok(target),
            _ => Err(FsError::NotFound),
        }
    }

    /// `.protoshelf/stats`: operation counters, cache hits, storage requests.
    pub fn stats(&self) -> String {
        let c = &self.counters;
        let p = self.store.protocol_stats();
        let r = self.store.requests();
        let rows: [(&str, u64); 23] = [
            ("fuse_lookup", c.fuse_lookup.load(Relaxed)),
            ("fuse_getattr", c.fuse_getattr.load(Relaxed)),
            ("fuse_open", c.fuse_open.load(Relaxed)),
            ("fuse_read", c.fuse_read.load(Relaxed)),
            ("fuse_readdir", c.fuse_readdir.load(Relaxed)),
            ("fuse_release", c.fuse_release.load(Relaxed)),
            ("resolves", c.resolves.load(Relaxed)),
            ("listings", c.listings.load(Relaxed)),
            ("content_loads", c.content_loads.load(Relaxed)),
            ("refreshes", c.refreshes.load(Relaxed)),
            ("refresh_errors", c.refresh_errors.load(Relaxed)),
            ("invalidated_entries", c.invalidated_entries.load(Relaxed)),
            ("invalidated_inodes", c.invalidated_inodes.load(Relaxed)),
            ("snapshot_builds", c.snapshot_builds.load(Relaxed)),
            ("negative_cache_hits", c.negative_hits.load(Relaxed)),
            ("cache_hits", p.cache_hits),
            ("requests_total", r.total()),
            ("requests_get", r.get),
            ("requests_get_not_found", r.get_not_found),
            ("requests_head", r.head),
            ("requests_put", r.put),
            ("requests_list", r.list),
            ("requests_delete", r.delete),
        ];
        rows.iter().map(|(k, v)| format!("{k} {v}\n")).collect()
    }
}

fn tree_list(tree: &Tree, path: &str) -> FsResult<BTreeMap<String, Kind>> {
    if tree.files.contains_key(path) {
        return Err(FsError::NotDir);
    }
    if !tree.is_dir(path) {
        return Err(FsError::NotFound);
    }
    Ok(tree.list(path))
}

/// The content ID of a descriptor set file: it changes with every commit.
fn set_content_id(snap: &Snapshot, staged: bool) -> String {
    format!("{}@{}", set_name(staged), snap.seq)
}

/// `version.json`: the manifest without protoshelf's internal writer ID.
fn version_json(m: &crate::objstore::records::VersionManifest) -> String {
    let mut v = serde_json::to_value(m).expect("manifest serializes");
    if let Some(o) = v.as_object_mut() {
        o.remove("writer_id");
    }
    serde_json::to_string_pretty(&v).expect("json") + "\n"
}
