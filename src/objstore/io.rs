//! Object reads and writes with the two rules the protocol relies on:
//! immutable objects are cached forever once read, and a create-if-absent
//! whose outcome is unclear is settled by reading the object back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::de::DeserializeOwned;

use super::keys;
use super::records::from_json;
use crate::error::{Error, Result};

/// An object's bytes and when it was written.
#[derive(Debug, Clone)]
pub struct Object {
    pub bytes: Bytes,
    pub last_modified: DateTime<Utc>,
}

/// The outcome of a create-if-absent.
#[derive(Debug)]
pub enum Created<T> {
    /// This writer's object is at the key (possibly after a read-back).
    Mine,
    /// Another writer's object is at the key; here it is.
    Theirs(T),
}

/// Counters of the protocol's notable events.
#[derive(Debug, Default)]
pub struct ProtocolCounters {
    pub commits: AtomicU64,
    pub conflicts: AtomicU64,
    pub ambiguous_settled: AtomicU64,
    pub write_retries: AtomicU64,
    pub checkpoints: AtomicU64,
    pub cache_hits: AtomicU64,
}

/// How many times a create whose outcome stayed unknown is tried again.
const WRITE_ATTEMPTS: u32 = 5;

/// How many times a key a create found taken is read before writing again
/// (with backoff: under 7 s in all).
const SETTLE_READS: u32 = 10;

/// Objects this process writes are kept in the cache up to this size;
/// larger ones (big descriptors) only as "known to exist", so a load of a
/// whole tree does not hold every descriptor it wrote in memory.
const REMEMBER_BYTES: usize = 256 * 1024;

/// How long this process trusts that an object it wrote or read still
/// exists, to skip writing or checking it again. gc may delete an object
/// nothing references once it is older than gc's grace period, so this
/// must stay well below the shortest grace the CLI accepts
/// (`gc::MIN_GRACE`).
pub const KNOWN_FOR: Duration = Duration::from_secs(10 * 60);

/// A content-addressed object that already exists and is older than this
/// is rewritten (same bytes) when a writer is about to refer to it: it may
/// be an unreferenced leftover that gc is about to collect, and a fresh
/// `last_modified` puts it back under gc's grace period.
pub const REFRESH_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

pub struct Io {
    pub os: Arc<dyn ObjectStore>,
    cache: moka::future::Cache<String, Object>,
    /// Keys known to exist, for `KNOWN_FOR` (the cache above keeps
    /// immutable bytes longer: reading them stays right, but skipping a
    /// write on old knowledge could race with gc).
    known: moka::sync::Cache<String, ()>,
    pub counters: ProtocolCounters,
    /// The format marker's bytes as opened, for the per-handle check that
    /// conditional creates are still honoured ([`Self::check_conditional`]).
    marker: std::sync::OnceLock<Bytes>,
    conditional_checked: tokio::sync::OnceCell<()>,
}

fn storage(e: object_store::Error) -> Error {
    Error::Storage(e)
}

impl Io {
    /// `cache_bytes` bounds the immutable-object cache.
    pub fn new(os: Arc<dyn ObjectStore>, cache_bytes: u64) -> Self {
        let cache = moka::future::Cache::builder()
            .weigher(|k: &String, v: &Object| {
                u32::try_from(k.len() + v.bytes.len() + 64).unwrap_or(u32::MAX)
            })
            .max_capacity(cache_bytes)
            .build();
        let known = moka::sync::Cache::builder()
            .max_capacity(1 << 20)
            .time_to_live(KNOWN_FOR)
            .build();
        Io {
            os,
            cache,
            known,
            counters: ProtocolCounters::default(),
            marker: Default::default(),
            conditional_checked: Default::default(),
        }
    }

    /// Records the marker's bytes as read when the store was opened.
    pub fn set_marker(&self, bytes: Bytes) {
        let _ = self.marker.set(bytes);
    }

    /// Once per handle, before its first conditional create: a
    /// create-if-absent of the existing format marker, with the bytes it
    /// already has, must be refused. The first-use probe only proved the
    /// endpoint honoured `If-None-Match` when the store was initialized; a
    /// proxy or gateway put in front later can drop the condition, and then
    /// concurrent commits overwrite each other. One refused PUT per
    /// process; an endpoint that ignores the condition rewrites the marker
    /// with identical bytes, so the check itself changes nothing.
    pub async fn check_conditional(&self) -> Result<()> {
        let Some(marker) = self.marker.get() else {
            // This handle created the store, after the first-use probe.
            return Ok(());
        };
        self.conditional_checked
            .get_or_try_init(|| async {
                let key = keys::marker();
                match self.create_once(&key, marker.clone()).await {
                    Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
                    Ok(()) => Err(Error::Unsupported(format!(
                        "the store's endpoint no longer honours create-if-absent writes (If-None-Match): a conditional create of the existing {key} was accepted. Commits through it could overwrite each other, so nothing was committed; remove the proxy or gateway that drops the condition, or point --store at the endpoint directly"
                    ))),
                    Err(e) => Err(storage(e)),
                }
            })
            .await
            .map(|_| ())
    }

    /// GETs an object; `None` when it does not exist.
    pub async fn get(&self, key: &Path) -> Result<Option<Object>> {
        match self.os.get(key).await {
            Ok(r) => {
                let last_modified = r.meta.last_modified;
                let bytes = r.bytes().await.map_err(storage)?;
                Ok(Some(Object {
                    bytes,
                    last_modified,
                }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage(e)),
        }
    }

    /// GETs an immutable object, from the cache when it was read before.
    /// Absence is not cached: an absent key may be created later.
    pub async fn get_immutable(&self, key: &Path) -> Result<Option<Object>> {
        self.get_checked(key, |_| Ok(())).await
    }

    /// [`Self::get_immutable`], running `check` on what storage returns
    /// before it is cached: only checked objects enter the cache, so a hit
    /// needs no check (content hashing once per object, not per read).
    pub async fn get_checked(
        &self,
        key: &Path,
        check: impl FnOnce(&Object) -> Result<()>,
    ) -> Result<Option<Object>> {
        if let Some(hit) = self.cache.get(key.as_ref()).await {
            self.counters.cache_hits.fetch_add(1, Relaxed);
            return Ok(Some(hit));
        }
        let found = self.get(key).await?;
        if let Some(obj) = &found {
            check(obj)?;
            self.cache.insert(key.to_string(), obj.clone()).await;
            self.known.insert(key.to_string(), ());
        }
        Ok(found)
    }

    /// What the cache holds for a key, without a request.
    pub async fn cached(&self, key: &Path) -> Option<Object> {
        self.cache.get(key.as_ref()).await
    }

    /// Drops a key from the caches (an object `verify --repair` replaced).
    pub async fn forget(&self, key: &Path) {
        self.cache.invalidate(key.as_ref()).await;
        self.known.invalidate(key.as_ref());
    }

    /// Remembers an immutable object this process just wrote.
    pub async fn remember(&self, key: &Path, bytes: Bytes) {
        let obj = Object {
            bytes,
            last_modified: Utc::now(),
        };
        self.cache.insert(key.to_string(), obj).await;
        self.known.insert(key.to_string(), ());
    }

    /// Puts bytes into the cache as the object at `key` without claiming
    /// the object exists (a blob read out of a pack: its own object may
    /// not be there, so writes must not be skipped on this).
    pub async fn cache_only(&self, key: &Path, bytes: Bytes) {
        let obj = Object {
            bytes,
            last_modified: Utc::now(),
        };
        self.cache.insert(key.to_string(), obj).await;
    }

    /// Whether an immutable object is known to exist without a request
    /// (written or read by this process in the last `KNOWN_FOR`).
    pub fn known(&self, key: &Path) -> bool {
        self.known.contains_key(key.as_ref())
    }

    /// Plain overwrite (only for hints, which readers never trust).
    pub async fn put_overwrite(&self, key: &Path, bytes: Bytes) -> Result<()> {
        self.os
            .put(key, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(storage)
    }

    /// Create-if-absent for content-addressed objects: any object already at
    /// the key has the same content by construction, so "exists" is success.
    pub async fn create_content(&self, key: &Path, bytes: Bytes) -> Result<()> {
        self.create_content_as(key, bytes, false).await
    }

    /// [`Self::create_content`] for objects gc may collect (blobs,
    /// descriptors): one that exists already and is older than
    /// `REFRESH_AFTER` is rewritten with the same bytes, so gc's grace
    /// period protects it until the caller's manifest refers to it.
    pub async fn create_collectable(&self, key: &Path, bytes: Bytes) -> Result<()> {
        self.create_content_as(key, bytes, true).await
    }

    async fn create_content_as(&self, key: &Path, bytes: Bytes, refresh: bool) -> Result<()> {
        let mut last = None;
        for attempt in 0..WRITE_ATTEMPTS {
            let outcome = match self.create_once(key, bytes.clone()).await {
                Err(object_store::Error::AlreadyExists { .. }) if refresh => {
                    self.refresh_if_old(key, &bytes).await
                }
                other => other,
            };
            match outcome {
                Ok(()) | Err(object_store::Error::AlreadyExists { .. }) => {
                    if bytes.len() <= REMEMBER_BYTES {
                        self.remember(key, bytes).await;
                    } else {
                        self.known.insert(key.to_string(), ());
                    }
                    return Ok(());
                }
                Err(e) => {
                    // Whether or not it landed, trying again is safe.
                    self.counters.write_retries.fetch_add(1, Relaxed);
                    last = Some(e);
                    backoff(attempt).await;
                }
            }
        }
        Err(storage(last.expect("at least one attempt")))
    }

    /// Create-if-absent for a record that names its writer. An
    /// `AlreadyExists` or an error is settled by reading the key back:
    /// `is_mine` recognises this writer's record. Never guesses.
    pub async fn create_record<T: DeserializeOwned>(
        &self,
        key: &Path,
        bytes: Bytes,
        is_mine: impl Fn(&T) -> bool,
    ) -> Result<Created<T>> {
        self.create_record_with(key, bytes, |found| {
            let record: T = from_json(key.as_ref(), found)?;
            Ok((is_mine(&record), record))
        })
        .await
    }

    /// [`Self::create_record`] with the caller's decoder: `read_back`
    /// decodes what is at the key and says whether it is this writer's.
    pub async fn create_record_with<T>(
        &self,
        key: &Path,
        bytes: Bytes,
        read_back: impl Fn(&[u8]) -> Result<(bool, T)>,
    ) -> Result<Created<T>> {
        self.check_conditional().await?;
        let mut last = None;
        for attempt in 0..WRITE_ATTEMPTS {
            let outcome = self.create_once(key, bytes.clone()).await;
            match outcome {
                Ok(()) => {
                    self.remember(key, bytes).await;
                    return Ok(Created::Mine);
                }
                Err(e) => {
                    // "Exists" means a record is there, or lands in a
                    // moment (S3 may refuse a create while another one is
                    // in flight), and a loaded store may fail the read: so
                    // read until it shows rather than writing again. After
                    // any other error one read tells whether ours landed.
                    let exists = matches!(e, object_store::Error::AlreadyExists { .. });
                    let reads = if exists { SETTLE_READS } else { 1 };
                    for read in 0..reads {
                        if read > 0 {
                            backoff(read).await;
                        }
                        if let Ok(Some(obj)) = self.get(key).await {
                            let (mine, record) = read_back(&obj.bytes)?;
                            self.cache.insert(key.to_string(), obj).await;
                            if mine {
                                // Our write landed although we were told otherwise.
                                self.counters.ambiguous_settled.fetch_add(1, Relaxed);
                                return Ok(Created::Mine);
                            }
                            return Ok(Created::Theirs(record));
                        }
                    }
                    // Nothing there (the write did not land), or the reads
                    // failed too: write again. A copy of ours that landed
                    // late is recognised by the next read-back.
                    self.counters.write_retries.fetch_add(1, Relaxed);
                    last = Some(e);
                    backoff(attempt).await;
                }
            }
        }
        Err(storage(last.expect("at least one attempt")))
    }

    /// An existing content-addressed object: rewritten (same bytes) when
    /// older than `REFRESH_AFTER`, written again if it vanished meanwhile.
    async fn refresh_if_old(&self, key: &Path, bytes: &Bytes) -> object_store::Result<()> {
        let old = match self.os.head(key).await {
            Ok(meta) => Utc::now() - meta.last_modified > REFRESH_AFTER,
            Err(object_store::Error::NotFound { .. }) => true,
            Err(e) => return Err(e),
        };
        if old {
            self.os.put(key, PutPayload::from(bytes.clone())).await?;
        }
        Ok(())
    }

    async fn create_once(&self, key: &Path, bytes: Bytes) -> object_store::Result<()> {
        let opts = PutOptions::from(PutMode::Create);
        self.os
            .put_opts(key, PutPayload::from(bytes), opts)
            .await
            .map(|_| ())
    }
}

/// Exponential backoff with full jitter: 0..min(2 s, 10 ms × 2^attempt).
pub async fn backoff(attempt: u32) {
    let cap = 10u64.saturating_mul(1 << attempt.min(8)).min(2_000);
    let ms = rand::random::<u64>() % (cap + 1);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
