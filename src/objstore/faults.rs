//! A fault-injecting `ObjectStore` wrapper, for testing the commit protocol
//! against the failures real object stores produce: a write that landed but
//! whose response was lost, a retried create that reports `AlreadyExists`
//! for its own first attempt, and a write that never landed; and, for the
//! crash tests, a process that stops after its k-th request
//! ([`FaultyStore::stop_after`]), a k-th request whose response is lost
//! after it took effect ([`FaultyStore::error_after`]), and objects that
//! look older than they are ([`FaultyStore::age`], for gc's grace period).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

/// What an injected fault does to a PUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The object is written, then the caller gets a generic error (a lost
    /// response or a client-side timeout).
    LandThenError,
    /// The object is written, then the caller gets `AlreadyExists` (what a
    /// retried conditional create reports when its first attempt landed).
    LandThenAlreadyExists,
    /// The caller gets an error and nothing is written.
    FailBeforeWrite,
    /// GETs of matching keys fail (storage unreachable).
    FailReads,
    /// A create-if-absent silently overwrites (an S3-compatible store that
    /// ignores `If-None-Match`).
    OverwriteOnCreate,
}

#[derive(Debug)]
struct Rule {
    fault: Fault,
    key_contains: String,
    remaining: usize,
}

/// What happens to requests by number (every request counts: GET, HEAD,
/// PUT, LIST, DELETE, COPY), numbered from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Numbered {
    None,
    /// Requests after the k-th fail without effect: the process died.
    StopAfter(u64),
    /// The k-th request takes effect, then reports an error.
    ErrorAfter(u64),
}

/// The wrapper: PUTs (or GETs, for [`Fault::FailReads`]) whose key contains
/// a rule's substring suffer its fault, `times` times; requests by number
/// suffer what [`FaultyStore::stop_after`] or [`FaultyStore::error_after`]
/// armed.
#[derive(Debug, Clone)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    rules: Arc<Mutex<Vec<Rule>>>,
    injected: Arc<Mutex<Vec<(Fault, String)>>>,
    requests: Arc<AtomicU64>,
    numbered: Arc<Mutex<Numbered>>,
    /// Fires when the first request is refused after a stop.
    stopped: Arc<tokio::sync::Notify>,
    has_stopped: Arc<std::sync::atomic::AtomicBool>,
    /// (key substring, age): listed and read objects whose key contains
    /// the substring report a `last_modified` that much older.
    ages: Arc<Mutex<Vec<(String, chrono::Duration)>>>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        FaultyStore {
            inner,
            rules: Arc::default(),
            injected: Arc::default(),
            requests: Arc::default(),
            numbered: Arc::new(Mutex::new(Numbered::None)),
            stopped: Arc::default(),
            has_stopped: Arc::default(),
            ages: Arc::default(),
        }
    }

    /// Requests made through this wrapper so far (refused ones included).
    pub fn requests(&self) -> u64 {
        self.requests.load(SeqCst)
    }

    /// Every request after the next `k` fails without taking effect, as if
    /// the process had died right after its k-th request (counted from now).
    pub fn stop_after(&self, k: u64) {
        *self.numbered.lock().unwrap() = Numbered::StopAfter(self.requests() + k);
    }

    /// The k-th request from now takes effect, then reports an error (a lost
    /// response); every other request behaves.
    pub fn error_after(&self, k: u64) {
        *self.numbered.lock().unwrap() = Numbered::ErrorAfter(self.requests() + k);
    }

    /// Lifts [`Self::stop_after`] / [`Self::error_after`].
    pub fn heal(&self) {
        *self.numbered.lock().unwrap() = Numbered::None;
        self.has_stopped.store(false, SeqCst);
    }

    /// Resolves once a request was refused because of [`Self::stop_after`]:
    /// a driver drops the operation then, as the process would be gone.
    pub async fn stopped(&self) {
        loop {
            let notified = self.stopped.notified();
            if self.has_stopped.load(SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// Objects whose key contains `key_contains` report a `last_modified`
    /// `by` older than storage says (LIST, GET and HEAD).
    pub fn age(&self, key_contains: &str, by: chrono::Duration) {
        self.ages
            .lock()
            .unwrap()
            .push((key_contains.to_string(), by));
    }

    fn aged(&self, mut meta: ObjectMeta) -> ObjectMeta {
        let ages = self.ages.lock().unwrap();
        for (part, by) in ages.iter() {
            if meta.location.as_ref().contains(part.as_str()) {
                meta.last_modified -= *by;
            }
        }
        meta
    }

    /// Counts a request and says what happens to it: `Err` refuses it (the
    /// process is gone), `Ok(true)` performs it and then reports an error.
    fn number(&self, location: &str) -> object_store::Result<bool> {
        let n = self.requests.fetch_add(1, SeqCst) + 1;
        match *self.numbered.lock().unwrap() {
            Numbered::StopAfter(k) if n > k => {
                self.has_stopped.store(true, SeqCst);
                self.stopped.notify_waiters();
                Err(object_store::Error::Generic {
                    store: "FaultyStore",
                    source: format!("injected stop: request {n} ({location}) after the process died at request {k}").into(),
                })
            }
            Numbered::ErrorAfter(k) => Ok(n == k),
            _ => Ok(false),
        }
    }

    /// Arms a fault for the next `times` matching requests.
    pub fn inject(&self, key_contains: &str, fault: Fault, times: usize) {
        self.rules.lock().unwrap().push(Rule {
            fault,
            key_contains: key_contains.to_string(),
            remaining: times,
        });
    }

    /// The faults that fired so far, with the keys they hit.
    pub fn injected(&self) -> Vec<(Fault, String)> {
        self.injected.lock().unwrap().clone()
    }

    fn take(&self, location: &Path, reads: bool) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap();
        let rule = rules.iter_mut().find(|r| {
            r.remaining > 0
                && (r.fault == Fault::FailReads) == reads
                && location.as_ref().contains(&r.key_contains)
        })?;
        rule.remaining -= 1;
        self.injected
            .lock()
            .unwrap()
            .push((rule.fault, location.to_string()));
        Some(rule.fault)
    }
}

fn injected_error(location: &Path, what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultyStore",
        source: format!("injected fault ({what}) at {location}").into(),
    }
}

impl FaultyStore {
    /// A LIST is one numbered request (however many pages it would take).
    fn numbered_list(
        &self,
        where_: &str,
        inner: BoxStream<'static, object_store::Result<ObjectMeta>>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let lose = match self.number(where_) {
            Ok(lose) => lose,
            Err(e) => return futures::stream::once(futures::future::ready(Err(e))).boxed(),
        };
        if lose {
            // It was listed; the caller never hears the answer.
            let gone = object_store::Error::Generic {
                store: "FaultyStore",
                source: format!("injected fault (response lost) at a LIST of {where_}").into(),
            };
            return futures::stream::once(futures::future::ready(Err(gone))).boxed();
        }
        let this = self.clone();
        inner.map_ok(move |m| this.aged(m)).boxed()
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if self.number(location.as_ref())? {
            self.inner.put_opts(location, payload, opts).await?;
            return Err(injected_error(
                location,
                "response lost after the request took effect",
            ));
        }
        match self.take(location, false) {
            None | Some(Fault::FailReads) => self.inner.put_opts(location, payload, opts).await,
            Some(Fault::OverwriteOnCreate) => {
                let opts = PutOptions {
                    mode: object_store::PutMode::Overwrite,
                    ..opts
                };
                self.inner.put_opts(location, payload, opts).await
            }
            Some(Fault::FailBeforeWrite) => Err(injected_error(location, "write never landed")),
            Some(Fault::LandThenError) => {
                self.inner.put_opts(location, payload, opts).await?;
                Err(injected_error(
                    location,
                    "response lost after the write landed",
                ))
            }
            Some(Fault::LandThenAlreadyExists) => {
                self.inner.put_opts(location, payload, opts).await?;
                Err(object_store::Error::AlreadyExists {
                    path: location.to_string(),
                    source: "injected: retried create after the first attempt landed".into(),
                })
            }
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        if self.number(location.as_ref())? {
            return Err(injected_error(location, "multipart upload refused"));
        }
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let lose = self.number(location.as_ref())?;
        if self.take(location, true).is_some() {
            return Err(injected_error(location, "storage unreachable"));
        }
        let mut got = self.inner.get_opts(location, options).await?;
        if lose {
            return Err(injected_error(location, "response lost"));
        }
        got.meta = self.aged(got.meta);
        Ok(got)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        // Each location is one request: numbered one by one, so a stop can
        // fall between two deletes of one stream.
        let this = self.clone();
        let inner = self.inner.clone();
        locations
            .then(move |location| {
                let (this, inner) = (this.clone(), inner.clone());
                async move {
                    let location = location?;
                    let lose = this.number(location.as_ref())?;
                    let one = futures::stream::once(futures::future::ready(Ok(location.clone())));
                    let done = inner.delete_stream(one.boxed()).next().await;
                    let done = done.unwrap_or(Ok(location.clone()))?;
                    if lose {
                        return Err(injected_error(&location, "response lost after the delete"));
                    }
                    Ok(done)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let where_ = prefix.map_or(String::new(), |p| p.to_string());
        let inner = self.inner.list(prefix);
        self.numbered_list(&where_, inner)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let where_ = prefix.map_or(String::new(), |p| p.to_string());
        let inner = self.inner.list_with_offset(prefix, offset);
        self.numbered_list(&where_, inner)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let lose = self.number(prefix.map_or("", |p| p.as_ref()))?;
        let mut listed = self.inner.list_with_delimiter(prefix).await?;
        if lose {
            return Err(object_store::Error::Generic {
                store: "FaultyStore",
                source: "injected fault (response lost) at a LIST".into(),
            });
        }
        listed.objects = listed.objects.into_iter().map(|m| self.aged(m)).collect();
        Ok(listed)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let lose = self.number(to.as_ref())?;
        self.inner.copy_opts(from, to, options).await?;
        if lose {
            return Err(injected_error(to, "response lost after the copy"));
        }
        Ok(())
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let lose = self.number(to.as_ref())?;
        self.inner.rename_opts(from, to, options).await?;
        if lose {
            return Err(injected_error(to, "response lost after the rename"));
        }
        Ok(())
    }
}
