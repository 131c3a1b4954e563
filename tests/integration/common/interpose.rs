//! An `ObjectStore` wrapper that runs a hook before chosen PUTs reach
//! storage: how a test makes another writer win a race at an exact point
//! (between a plan and its commit), deterministically.
#![allow(dead_code)]

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

/// Runs before a matching PUT; gets the key and the payload's bytes.
pub type Hook = Box<dyn FnMut(Path, bytes::Bytes) -> BoxFuture<'static, ()> + Send>;

struct Rule {
    key_contains: String,
    remaining: usize,
    hook: Hook,
}

#[derive(Clone)]
pub struct Interposer {
    inner: Arc<dyn ObjectStore>,
    rules: Arc<Mutex<Vec<Rule>>>,
}

impl Interposer {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Interposer {
            inner,
            rules: Arc::default(),
        }
    }

    /// Runs `hook` (and waits for it) before each of the next `times` PUTs
    /// whose key contains `key_contains`.
    pub fn before_put(&self, key_contains: &str, times: usize, hook: Hook) {
        self.rules.lock().unwrap().push(Rule {
            key_contains: key_contains.to_string(),
            remaining: times,
            hook,
        });
    }

    /// Drops every hook not yet used up.
    pub fn clear(&self) {
        self.rules.lock().unwrap().clear();
    }

    fn take(&self, location: &Path, bytes: bytes::Bytes) -> Option<BoxFuture<'static, ()>> {
        let mut rules = self.rules.lock().unwrap();
        let rule = rules
            .iter_mut()
            .find(|r| r.remaining > 0 && location.as_ref().contains(&r.key_contains))?;
        rule.remaining -= 1;
        Some((rule.hook)(location.clone(), bytes))
    }
}

impl fmt::Debug for Interposer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Interposer({})", self.inner)
    }
}

impl fmt::Display for Interposer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Interposer({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Interposer {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let bytes: bytes::Bytes = payload.clone().into();
        if let Some(hook) = self.take(location, bytes) {
            hook.await;
        }
        self.inner.put_opts(location, payload, opts).await
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
