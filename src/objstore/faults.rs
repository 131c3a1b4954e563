//! A fault-injecting `ObjectStore` wrapper, for testing the commit protocol
//! against the failures real object stores produce: a write that landed but
//! whose response was lost, a retried create that reports `AlreadyExists`
//! for its own first attempt, and a write that never landed.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::BoxStream;
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

/// The wrapper: PUTs (or GETs, for [`Fault::FailReads`]) whose key contains
/// a rule's substring suffer its fault, `times` times.
#[derive(Debug, Clone)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    rules: Arc<Mutex<Vec<Rule>>>,
    injected: Arc<Mutex<Vec<(Fault, String)>>>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        FaultyStore {
            inner,
            rules: Arc::default(),
            injected: Arc::default(),
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
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if self.take(location, true).is_some() {
            return Err(injected_error(location, "storage unreachable"));
        }
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}
