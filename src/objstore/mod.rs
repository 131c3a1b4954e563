//! The persistence contract (DESIGN §2, the reference registry's
//! `store.Store` in Rust naming) over object storage.
//!
//! Layers, outermost first: [`ObjStore`] (the contract) → [`log`] (the
//! commit protocol) and [`io`] (cached reads, settled creates) →
//! [`metrics::Instrumented`] (request counts) → the backend opened by
//! [`url::open`] (memory, local directory, S3, GCS, Azure).

pub mod admin;
pub mod aws;
mod blobs;
mod claims;
#[cfg(any(test, feature = "fault-injection"))]
pub mod faults;
pub mod format;
pub mod gc;
pub mod heads;
pub mod inventory;
pub mod io;
pub mod keys;
mod listing;
pub mod log;
pub mod metrics;
mod namespaces;
pub mod nsset;
pub mod packs;
mod pointers;
pub mod protocol;
pub mod published;
pub mod records;
pub mod repair;
pub mod schema_ids;
pub mod upgrade;
pub mod url;
pub mod verify;
mod versions;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

use crate::error::Result;
pub use blobs::sha256_hex;
pub use log::{Mutation, NsAttempt, NsState};
use metrics::{Instrumented, RequestCounts};
use records::{FormatMarker, LogEntry};
pub use url::{Backend, BackendKind};

/// Default bound of the immutable-object cache.
pub const DEFAULT_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// How many independent objects are fetched at once.
const FETCH_CONCURRENCY: usize = 16;

/// Counts of the commit protocol's events in this handle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolStats {
    pub commits: u64,
    /// Commit races lost and retried.
    pub conflicts: u64,
    /// Writes whose outcome was unclear and was settled by reading back.
    pub ambiguous_settled: u64,
    /// Writes tried again after an error.
    pub write_retries: u64,
    pub checkpoints: u64,
    pub cache_hits: u64,
    /// The most races one commit lost before it landed.
    pub most_lost: u64,
}

/// A handle on a protoshelf store. Clones share caches and counters; handles
/// opened separately share nothing but the storage.
#[derive(Clone)]
pub struct ObjStore {
    inner: Arc<Inner>,
}

struct Inner {
    kind: BackendKind,
    url: String,
    metrics: Instrumented,
    io: Arc<io::Io>,
    log: log::Log,
    marker: FormatMarker,
    /// Schemas whose record this handle created and which have no version
    /// from it yet: no version can predate its schema record, so the first
    /// `create_version` tries number 1 without listing (see versions.rs).
    fresh_schemas: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    /// Claims this handle has seen in a LIST or written: claims are never
    /// removed, so they are never written again, and a lookup may try
    /// them before listing (see `known_claimants`).
    known_claims: std::sync::Mutex<ClaimIndex>,
    /// The descriptor sets of versions being staged, by (namespace,
    /// schema, version), while their callers hold them (see
    /// `hold_staging_set`).
    staging_sets: std::sync::Mutex<
        std::collections::HashMap<(String, String, u64), std::sync::Weak<nsset::SetFiles>>,
    >,
    /// Per namespace, the versions its log named (see published.rs).
    published: std::sync::Mutex<std::collections::HashMap<String, Arc<published::Published>>>,
}

/// (namespace, kind, name) → claimants.
type ClaimIndex = std::collections::HashMap<
    (String, crate::store::ClaimKind, String),
    std::collections::BTreeSet<String>,
>;

impl std::fmt::Debug for ObjStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjStore")
            .field("url", &self.inner.url)
            .finish()
    }
}

/// Who is writing: recorded in log entries for people reading the log.
fn writer_name() -> String {
    format!("{}/{}", host_name(), std::process::id())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}

/// The author recorded when none is given: `$USER@host`.
pub fn default_author() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{}", host_name())
}

impl ObjStore {
    /// Opens the store at `url` (see [`url::open`]), checking its format
    /// marker and creating it, after the create-if-absent probe, on first use.
    pub async fn open(url: &str) -> Result<Self> {
        Self::from_backend(url::open(url)?).await
    }

    /// Opens `url`, else `$PROTOSHELF_STORE`, else the embedded local store.
    pub async fn open_or_default(url: Option<&str>) -> Result<Self> {
        Self::open(&url::resolve(url)).await
    }

    /// Opens an already-built backend (tests wrap one in a fault injector).
    pub async fn from_backend(backend: Backend) -> Result<Self> {
        Self::with_cache(backend, DEFAULT_CACHE_BYTES).await
    }

    pub async fn with_cache(backend: Backend, cache_bytes: u64) -> Result<Self> {
        let (metrics, io) = Self::layers(&backend, cache_bytes);
        let marker = format::ensure(&io).await?;
        Ok(Self::assemble(backend, metrics, io, marker))
    }

    /// Opens a store that must exist already, for commands that read or
    /// change what is there: a store without a format marker is
    /// [`crate::Error::NoStore`] and nothing is written (a mistyped URL
    /// must not become a new, empty store).
    pub async fn open_existing(backend: Backend, cache_bytes: u64) -> Result<Self> {
        let (metrics, io) = Self::layers(&backend, cache_bytes);
        let marker = format::require(&io, &backend.url).await?;
        Ok(Self::assemble(backend, metrics, io, marker))
    }

    /// Opens a store to inspect it (`verify`): never writes, and opens even
    /// when the format marker is missing or damaged, returning that problem
    /// beside the handle (which then assumes this build's format). A store
    /// that is empty is [`crate::Error::NoStore`].
    pub async fn inspect(backend: Backend) -> Result<(Self, Option<crate::Error>)> {
        let (metrics, io) = Self::layers(&backend, DEFAULT_CACHE_BYTES);
        let (marker, problem) = match format::inspect(&io).await? {
            Ok(marker) => (marker, None),
            Err(crate::Error::NotFound(_)) => {
                return Err(crate::Error::NoStore { url: backend.url });
            }
            Err(e) => {
                let assumed = FormatMarker {
                    format: "protoshelf".into(),
                    format_version: records::FORMAT_VERSION,
                    created_at: chrono::Utc::now(),
                    writer_id: String::new(),
                    reader_contract: Some(records::READER_CONTRACT_VERSION),
                };
                (assumed, Some(e))
            }
        };
        Ok((Self::assemble(backend, metrics, io, marker), problem))
    }

    fn layers(backend: &Backend, cache_bytes: u64) -> (Instrumented, Arc<io::Io>) {
        let metrics = Instrumented::new(backend.store.clone());
        let os: Arc<dyn ObjectStore> = Arc::new(metrics.clone());
        (metrics, Arc::new(io::Io::new(os, cache_bytes)))
    }

    fn assemble(
        backend: Backend,
        metrics: Instrumented,
        io: Arc<io::Io>,
        marker: FormatMarker,
    ) -> Self {
        let codec = log::JsonLog {
            writer: writer_name(),
            format_version: marker.format_version.into(),
            author: Default::default(),
        };
        let log = log::Log::new(io.clone(), codec, log::LAYOUT);
        ObjStore {
            inner: Arc::new(Inner {
                kind: backend.kind,
                url: backend.url,
                metrics,
                io,
                log,
                marker,
                fresh_schemas: Default::default(),
                staging_sets: Default::default(),
                known_claims: Default::default(),
                published: Default::default(),
            }),
        }
    }

    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Names who this handle's changes are made for: recorded as
    /// `created_by` in every log entry it writes from now on and in the
    /// namespaces it creates (the CLI's `--created-by`). Clones share it.
    pub fn set_author(&self, who: Option<String>) {
        *self.inner.log.codec().author.write().expect("not poisoned") = who;
    }

    /// The author set by [`ObjStore::set_author`].
    pub fn author(&self) -> Option<String> {
        self.inner
            .log
            .codec()
            .author
            .read()
            .expect("not poisoned")
            .clone()
    }

    pub fn kind(&self) -> BackendKind {
        self.inner.kind
    }

    /// What the backend puts before every key: the path of a bucket URL
    /// (`s3://bucket/team/schemas` → `team/schemas`), nothing for a local
    /// directory or memory.
    pub fn key_prefix(&self) -> String {
        if matches!(self.inner.kind, BackendKind::Local | BackendKind::Memory) {
            return String::new();
        }
        ::url::Url::parse(&self.inner.url)
            .ok()
            .and_then(|u| object_store::ObjectStoreScheme::parse(&u).ok())
            .map(|(_, prefix)| prefix.to_string())
            .unwrap_or_default()
    }

    /// Checks, before anything is written, that every key a version of
    /// `schema` with these files (paths) and packages would need fits every
    /// backend (see [`keys::check_lengths`]).
    pub fn check_key_lengths<'a>(
        &self,
        ns: &str,
        schema: &str,
        paths: impl IntoIterator<Item = &'a str>,
        packages: impl IntoIterator<Item = &'a str>,
    ) -> Result<()> {
        let mut claims: Vec<(crate::store::ClaimKind, String)> =
            paths.into_iter().map(|p| self.path_claim(p)).collect();
        claims.extend(
            packages
                .into_iter()
                .map(|p| (crate::store::ClaimKind::Package, p.to_string())),
        );
        keys::check_lengths(
            &self.key_prefix(),
            ns,
            schema,
            claims.iter().map(|(k, n)| (*k, n.as_str())),
        )
    }

    pub fn format_marker(&self) -> &FormatMarker {
        &self.inner.marker
    }

    /// The schemas this handle knows to have claimed `name` (from LISTs and
    /// its own writes; no request). A subset of [`ObjStore::claimants`]: a
    /// caller that needs *every* claimant must list.
    ///
    pub fn known_claimants(
        &self,
        ns: &str,
        kind: crate::store::ClaimKind,
        name: &str,
    ) -> Vec<String> {
        let known = self.inner.known_claims.lock().unwrap();
        known
            .get(&(ns.to_string(), kind, name.to_string()))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn learn_claims<'a>(
        &self,
        ns: &str,
        kind: crate::store::ClaimKind,
        name: &str,
        schemas: impl IntoIterator<Item = &'a String>,
    ) {
        let mut known = self.inner.known_claims.lock().unwrap();
        known
            .entry((ns.to_string(), kind, name.to_string()))
            .or_default()
            .extend(schemas.into_iter().cloned());
    }

    fn claim_known(
        &self,
        ns: &str,
        kind: crate::store::ClaimKind,
        name: &str,
        schema: &str,
    ) -> bool {
        let known = self.inner.known_claims.lock().unwrap();
        known
            .get(&(ns.to_string(), kind, name.to_string()))
            .is_some_and(|s| s.contains(schema))
    }

    /// Requests made through this handle so far.
    pub fn requests(&self) -> RequestCounts {
        self.inner.metrics.counts()
    }

    /// Payload bytes this handle has written.
    pub fn bytes_written(&self) -> u64 {
        self.inner.metrics.bytes_written()
    }

    pub fn protocol_stats(&self) -> ProtocolStats {
        let c = &self.inner.io.counters;
        ProtocolStats {
            commits: c.commits.load(Relaxed),
            conflicts: c.conflicts.load(Relaxed),
            ambiguous_settled: c.ambiguous_settled.load(Relaxed),
            write_retries: c.write_retries.load(Relaxed),
            checkpoints: c.checkpoints.load(Relaxed),
            cache_hits: c.cache_hits.load(Relaxed),
            most_lost: self.inner.log.most_lost() as u64,
        }
    }

    /// The namespace's latest pointer state (one GET when this handle is
    /// up to date).
    pub async fn namespace_state(&self, ns: &str) -> Result<Arc<NsState>> {
        self.require_namespace(ns).await?;
        self.inner.log.latest(ns).await
    }

    /// The namespace's state as its hint records it: one GET, no request
    /// to confirm it (the log may have moved on). None when the hint is
    /// missing or damaged or carries no state (written by an older writer,
    /// or the state is large): callers then read [`Self::namespace_state`].
    /// A hint exists only once the namespace has a commit, so it also
    /// shows the namespace exists (its record is created first).
    pub async fn hinted_namespace_state(&self, ns: &str) -> Result<Option<Arc<NsState>>> {
        crate::ids::validate_namespace_id(ns)?;
        let hint = self.inner.log.hint(ns).await?;
        Ok(hint.and_then(log::hinted).map(Arc::new))
    }

    /// The namespace's state as last seen by this handle, without a request.
    pub fn cached_namespace_state(&self, ns: &str) -> Option<Arc<NsState>> {
        self.inner.log.cached(ns)
    }

    /// The namespace's state right after commit `seq` (for time travel).
    pub async fn namespace_state_at(&self, ns: &str, seq: u64) -> Result<NsState> {
        self.require_namespace(ns).await?;
        self.inner.log.state_at(ns, seq).await
    }

    /// The log entries `from..=to` of a namespace, oldest first.
    pub async fn log_entries(&self, ns: &str, from: u64, to: u64) -> Result<Vec<LogEntry>> {
        self.require_namespace(ns).await?;
        let entries = self.inner.log.entries(ns, from, to).await?;
        Ok(entries.into_iter().map(LogEntry::from).collect())
    }

    /// How long a commit of this handle (and its clones) keeps losing races
    /// to concurrent writers before it gives up with
    /// [`crate::Error::Contended`] ([`protocol::DEFAULT_GIVE_UP`] unless set).
    pub fn set_commit_give_up(&self, bound: std::time::Duration) {
        self.inner.log.set_give_up_after(bound);
    }

    pub fn commit_give_up(&self) -> std::time::Duration {
        self.inner.log.give_up_after()
    }
}

/// Shared by the contract's modules.
impl ObjStore {
    pub(super) fn io(&self) -> &io::Io {
        &self.inner.io
    }

    pub(super) async fn read_record<T: serde::de::DeserializeOwned>(
        &self,
        key: &object_store::path::Path,
    ) -> Result<Option<T>> {
        match self.io().get_immutable(key).await? {
            Some(obj) => records::from_json(key.as_ref(), &obj.bytes).map(Some),
            None => Ok(None),
        }
    }
}
