//! An `ObjectStore` wrapper that counts requests by kind: S3 bills per
//! request, so every cost claim in docs/ and in tests is read off these.

use std::fmt;
use std::ops::{Add, Sub};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use serde::Serialize;

/// Request counts; subtract two snapshots to get the cost of what ran between.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    /// GETs, including those that found nothing.
    pub get: u64,
    /// Of `get`, those that answered not-found.
    pub get_not_found: u64,
    pub head: u64,
    /// PUTs of every mode.
    pub put: u64,
    /// Of `put`, conditional creates refused because the key existed.
    pub put_conflict: u64,
    /// LIST calls (one per call; a LIST past 1,000 keys pages internally).
    pub list: u64,
    pub delete: u64,
    pub copy: u64,
}

impl RequestCounts {
    pub fn total(&self) -> u64 {
        self.get + self.head + self.put + self.list + self.delete + self.copy
    }
}

impl RequestCounts {
    /// Combines two counts field by field.
    fn zip(self, o: Self, f: impl Fn(u64, u64) -> u64) -> Self {
        RequestCounts {
            get: f(self.get, o.get),
            get_not_found: f(self.get_not_found, o.get_not_found),
            head: f(self.head, o.head),
            put: f(self.put, o.put),
            put_conflict: f(self.put_conflict, o.put_conflict),
            list: f(self.list, o.list),
            delete: f(self.delete, o.delete),
            copy: f(self.copy, o.copy),
        }
    }
}

impl Sub for RequestCounts {
    type Output = RequestCounts;
    fn sub(self, o: Self) -> Self {
        self.zip(o, |a, b| a - b)
    }
}

impl Add for RequestCounts {
    type Output = RequestCounts;
    fn add(self, o: Self) -> Self {
        self.zip(o, |a, b| a + b)
    }
}

impl fmt::Display for RequestCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests (GET {} [{} not found], HEAD {}, PUT {} [{} refused], LIST {}, DELETE {}, COPY {})",
            self.total(),
            self.get,
            self.get_not_found,
            self.head,
            self.put,
            self.put_conflict,
            self.list,
            self.delete,
            self.copy
        )
    }
}

#[derive(Debug, Default)]
struct Counters {
    get: AtomicU64,
    get_not_found: AtomicU64,
    head: AtomicU64,
    put: AtomicU64,
    put_conflict: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
    copy: AtomicU64,
    /// Payload bytes of every PUT (kept out of `RequestCounts`, whose
    /// equality tests compare request shapes, not sizes).
    put_bytes: AtomicU64,
}

/// The counting wrapper. Cloning shares the counters.
#[derive(Debug, Clone)]
pub struct Instrumented {
    inner: Arc<dyn ObjectStore>,
    counters: Arc<Counters>,
}

impl Instrumented {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Instrumented {
            inner,
            counters: Arc::default(),
        }
    }

    pub fn counts(&self) -> RequestCounts {
        let c = &self.counters;
        RequestCounts {
            get: c.get.load(Relaxed),
            get_not_found: c.get_not_found.load(Relaxed),
            head: c.head.load(Relaxed),
            put: c.put.load(Relaxed),
            put_conflict: c.put_conflict.load(Relaxed),
            list: c.list.load(Relaxed),
            delete: c.delete.load(Relaxed),
            copy: c.copy.load(Relaxed),
        }
    }

    /// Payload bytes written by PUTs so far.
    pub fn bytes_written(&self) -> u64 {
        self.counters.put_bytes.load(Relaxed)
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

impl fmt::Display for Instrumented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instrumented({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Instrumented {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        bump(&self.counters.put);
        self.counters
            .put_bytes
            .fetch_add(payload.content_length() as u64, Relaxed);
        tracing::debug!(target: "protoshelf::requests", "PUT {location}");
        let create = matches!(opts.mode, PutMode::Create);
        let result = self.inner.put_opts(location, payload, opts).await;
        if create && matches!(result, Err(object_store::Error::AlreadyExists { .. })) {
            bump(&self.counters.put_conflict);
        }
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        // Counted as one PUT: protoshelf's objects are small and never use it.
        bump(&self.counters.put);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if options.head {
            bump(&self.counters.head);
        } else {
            bump(&self.counters.get);
        }
        tracing::debug!(target: "protoshelf::requests", "GET {location}");
        let result = self.inner.get_opts(location, options).await;
        if matches!(result, Err(object_store::Error::NotFound { .. })) {
            bump(&self.counters.get_not_found);
        }
        result
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.counters.get.fetch_add(ranges.len() as u64, Relaxed);
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let counters = self.counters.clone();
        let counted = locations
            .map(move |l| {
                bump(&counters.delete);
                l
            })
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        bump(&self.counters.list);
        tracing::debug!(target: "protoshelf::requests", "LIST {}", shown(prefix));
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        bump(&self.counters.list);
        tracing::debug!(target: "protoshelf::requests", "LIST {} after {offset}", shown(prefix));
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        bump(&self.counters.list);
        tracing::debug!(target: "protoshelf::requests", "LIST {} /", shown(prefix));
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        bump(&self.counters.copy);
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        bump(&self.counters.copy);
        self.inner.rename_opts(from, to, options).await
    }
}

/// A LIST prefix as people read it (`ns/shop/log/`, or `(the whole store)`)
/// rather than `Some(Path { raw: .. })`.
fn shown(prefix: Option<&Path>) -> &str {
    prefix.map_or("(the whole store)", |p| p.as_ref())
}
