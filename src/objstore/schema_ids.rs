//! Global schema IDs for the Confluent-compatible API, allocated on the
//! bucket with create-if-absent only (so the local directory works too):
//!
//! - `confluent/content/<sha256>.json` says which ID a content has. It is
//!   created once: whoever creates it first decides, so identical content
//!   gets the same ID from every replica.
//! - `confluent/ids/<id:020>.json` holds the schema an ID names. IDs are
//!   taken in order by creating the first absent number, so they are dense
//!   and no number is ever handed out for two contents. Reading an ID is
//!   one GET (then cached forever: the record is immutable).
//! - A writer first takes a number, then claims the content for it. If it
//!   loses the content claim (another replica took a different number for
//!   the same content at the same time), it answers with the winner's ID;
//!   its own number stays a harmless alias of the same content, never
//!   returned by a registration.
//! - `confluent/ids-head.json` is a hint (plain overwrite) of the highest
//!   number, so a cold allocator starts near the end; it gallops forward
//!   from there with GETs, so a stale or missing hint costs O(log gap).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use chrono::Utc;

use super::io::Created;
use super::records::{
    ConfluentConfigRecord, SchemaContentRecord, SchemaIdRecord, SchemaIdsHint, from_json, to_json,
};
use super::{ObjStore, keys};
use crate::error::{Error, Result};

/// Attempts to take a number before giving up with `Contended`.
const ALLOCATE_ATTEMPTS: u32 = 64;

/// The schema-ID allocator and the Confluent global settings of one store.
pub struct SchemaIds {
    store: ObjStore,
    /// Every ID up to this one is known to exist.
    known_max: AtomicU64,
    /// The newest global settings entry seen.
    config: Mutex<Option<ConfluentConfigRecord>>,
    /// Decoded ID records (immutable): serving an ID from here skips the
    /// JSON decode and checksum that dominate a cached `GET /schemas/ids/N`.
    decoded: moka::sync::Cache<u64, std::sync::Arc<SchemaIdRecord>>,
}

/// Bytes of decoded ID records kept per handle: bounded by size, like the
/// byte cache below it, since one record may hold a large schema.
const DECODED_BYTES: u64 = 64 << 20;

impl std::fmt::Debug for SchemaIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaIds")
            .field("known_max", &self.known_max.load(Relaxed))
            .finish()
    }
}

/// What an allocation is for: the record fields besides the ID.
#[derive(Debug, Clone)]
pub struct NewSchema {
    pub sha256: String,
    pub schema_type: String,
    pub schema: String,
    pub references: Vec<super::records::SchemaReference>,
    pub serialized: String,
}

impl SchemaIds {
    pub fn new(store: ObjStore) -> Self {
        SchemaIds {
            store,
            known_max: AtomicU64::new(0),
            config: Mutex::new(None),
            decoded: moka::sync::Cache::builder()
                .weigher(|_, r: &std::sync::Arc<SchemaIdRecord>| {
                    u32::try_from(r.schema.len() + r.serialized.len() + 256).unwrap_or(u32::MAX)
                })
                .max_capacity(DECODED_BYTES)
                .build(),
        }
    }

    /// The schema an ID names; `None` when no such ID was allocated.
    pub async fn get(&self, id: u64) -> Result<Option<std::sync::Arc<SchemaIdRecord>>> {
        if id == 0 {
            return Ok(None);
        }
        if let Some(hit) = self.decoded.get(&id) {
            // Still a read answered from memory, as far as the metrics go.
            let hits = &self.store.io().counters.cache_hits;
            hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(Some(hit));
        }
        let found: Option<SchemaIdRecord> = self.store.read_record(&keys::schema_id(id)).await?;
        Ok(found.map(|r| {
            let r = std::sync::Arc::new(r);
            self.decoded.insert(id, r.clone());
            r
        }))
    }

    /// The ID a content got, if any (one GET, cached once found).
    pub async fn find(&self, sha256: &str) -> Result<Option<u64>> {
        let found: Option<SchemaContentRecord> = self
            .store
            .read_record(&keys::schema_content(sha256))
            .await?;
        Ok(found.map(|c| c.id))
    }

    /// The ID of this content, allocating one if it has none. Identical
    /// content gets the same ID from any number of concurrent callers.
    pub async fn allocate(&self, new: &NewSchema) -> Result<u64> {
        if let Some(id) = self.find(&new.sha256).await? {
            return Ok(id);
        }
        let io = self.store.io();
        let started = std::time::Instant::now();
        let mut from = self.start().await? + 1;
        let mut taken = None;
        for _ in 0..ALLOCATE_ATTEMPTS {
            let n = self.first_free(from).await?;
            let writer_id = uuid::Uuid::new_v4().to_string();
            let record = SchemaIdRecord {
                id: n,
                sha256: new.sha256.clone(),
                schema_type: new.schema_type.clone(),
                schema: new.schema.clone(),
                references: new.references.clone(),
                serialized: new.serialized.clone(),
                created_at: Utc::now(),
                writer_id: writer_id.clone(),
            };
            match io
                .create_record(
                    &keys::schema_id(n),
                    to_json(&record),
                    |r: &SchemaIdRecord| r.writer_id == writer_id,
                )
                .await?
            {
                Created::Mine => {
                    taken = Some(n);
                    break;
                }
                // Another replica took this number for the same content.
                Created::Theirs(r) if r.sha256 == new.sha256 => {
                    taken = Some(n);
                    break;
                }
                Created::Theirs(_) => {
                    self.known_max.fetch_max(n, Relaxed);
                    from = n + 1;
                }
            }
        }
        let n = taken.ok_or_else(|| Error::Contended {
            namespace: "confluent/ids".into(),
            attempts: ALLOCATE_ATTEMPTS,
            waited: started.elapsed(),
        })?;
        self.known_max.fetch_max(n, Relaxed);
        // The content claim decides which number this content has.
        let writer_id = uuid::Uuid::new_v4().to_string();
        let claim = SchemaContentRecord {
            sha256: new.sha256.clone(),
            id: n,
            writer_id: writer_id.clone(),
        };
        let id = match io
            .create_record(
                &keys::schema_content(&new.sha256),
                to_json(&claim),
                |c: &SchemaContentRecord| c.writer_id == writer_id,
            )
            .await?
        {
            Created::Mine => n,
            Created::Theirs(c) => c.id,
        };
        // Never trusted; only saves a cold allocator its gallop.
        let _ = io
            .put_overwrite(&keys::schema_ids_head(), to_json(&SchemaIdsHint { id: n }))
            .await;
        Ok(id)
    }

    /// A number at or below the highest existing ID: what this handle saw,
    /// else the hint.
    async fn start(&self) -> Result<u64> {
        let known = self.known_max.load(Relaxed);
        if known > 0 {
            return Ok(known);
        }
        let key = keys::schema_ids_head();
        Ok(match self.store.io().get(&key).await? {
            // A corrupt hint is ignored: it is only a hint.
            Some(obj) => from_json::<SchemaIdsHint>(key.as_ref(), &obj.bytes)
                .map(|h| h.id)
                .unwrap_or(0),
            None => 0,
        })
    }

    async fn exists(&self, id: u64) -> Result<bool> {
        Ok(self.get(id).await?.is_some())
    }

    /// The first absent ID at or after `from`, given that IDs are dense:
    /// gallop forward, then bisect (2·log₂(gap) GETs at most).
    async fn first_free(&self, from: u64) -> Result<u64> {
        if !self.exists(from).await? {
            return Ok(from);
        }
        // `lo` exists, `hi` does not.
        let (mut lo, mut step) = (from, 1u64);
        let mut hi = loop {
            let probe = lo + step;
            if !self.exists(probe).await? {
                break probe;
            }
            lo = probe;
            step *= 2;
        };
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.exists(mid).await? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        self.known_max.fetch_max(lo, Relaxed);
        Ok(hi)
    }

    /// The global settings in force (`None` before the first change), one
    /// GET when nothing changed since this handle last looked.
    pub async fn config(&self) -> Result<Option<ConfluentConfigRecord>> {
        let mut latest = self.config.lock().unwrap().clone();
        if latest.is_none() {
            // Cold: the entries are few (one per change of the setting).
            let dir = keys::confluent_config_dir();
            let mut seqs = Vec::new();
            let mut list = self.store.io().os.list(Some(&dir));
            use futures::TryStreamExt;
            while let Some(meta) = list.try_next().await.map_err(Error::Storage)? {
                if let Some(seq) = meta
                    .location
                    .filename()
                    .and_then(super::keys::parse_version_file)
                {
                    seqs.push(seq);
                }
            }
            if let Some(&max) = seqs.iter().max() {
                latest = self.store.read_record(&keys::confluent_config(max)).await?;
            }
        }
        // Entries created since.
        loop {
            let next = latest.as_ref().map_or(1, |c| c.seq + 1);
            match self.store.io().get(&keys::confluent_config(next)).await? {
                Some(obj) => {
                    let key = keys::confluent_config(next);
                    latest = Some(from_json(key.as_ref(), &obj.bytes)?);
                }
                None => break,
            }
        }
        let mut cached = self.config.lock().unwrap();
        if latest.as_ref().map(|c| c.seq) > cached.as_ref().map(|c| c.seq) {
            *cached = latest.clone();
        }
        Ok(cached.clone())
    }

    /// Sets the global compatibility level: one new entry.
    pub async fn set_config(&self, compatibility: &str) -> Result<()> {
        let started = std::time::Instant::now();
        for attempt in 0..ALLOCATE_ATTEMPTS {
            let seq = self.config().await?.map_or(1, |c| c.seq + 1);
            let writer_id = uuid::Uuid::new_v4().to_string();
            let record = ConfluentConfigRecord {
                seq,
                compatibility: compatibility.to_string(),
                created_at: Utc::now(),
                writer_id: writer_id.clone(),
            };
            match self
                .store
                .io()
                .create_record(
                    &keys::confluent_config(seq),
                    to_json(&record),
                    |r: &ConfluentConfigRecord| r.writer_id == writer_id,
                )
                .await?
            {
                Created::Mine => {
                    *self.config.lock().unwrap() = Some(record);
                    return Ok(());
                }
                // Someone else changed it meanwhile: ours comes after.
                Created::Theirs(_) => super::io::backoff(attempt).await,
            }
        }
        Err(Error::Contended {
            namespace: "confluent/config".into(),
            attempts: ALLOCATE_ATTEMPTS,
            waited: started.elapsed(),
        })
    }
}
