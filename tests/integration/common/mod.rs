//! Test harness shared by the integration tests: fresh stores on every
//! backend, and a second handle on the same storage.
#![allow(dead_code)]

use std::sync::Arc;

use object_store::ObjectStore;
use protoshelf::ObjStore;
use protoshelf::objstore::url;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Local,
    S3,
}

pub struct TestStore {
    pub store: ObjStore,
    pub url: String,
    pub backend: Backend,
    _dir: Option<Arc<tempfile::TempDir>>,
}

impl TestStore {
    /// Another independent handle on the same storage (own caches).
    pub async fn reopen(&self) -> ObjStore {
        ObjStore::open(&self.url).await.expect("reopen")
    }

    /// The raw backend, to plant or inspect objects behind protoshelf's back.
    pub fn raw(&self) -> Arc<dyn ObjectStore> {
        url::open(&self.url).expect("raw backend").store
    }
}

pub const TEST_BUCKET: &str = "protoshelf-tests";

/// Whether the S3 tests can run; under `CI=true` a missing endpoint fails.
pub fn s3_enabled() -> bool {
    let configured = std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.is_empty());
    if !configured && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true but no S3 endpoint: run the suite through scripts/test.sh, which starts LocalStack"
        );
    }
    if !configured {
        eprintln!("SKIPPED: S3 test (no AWS_ENDPOINT_URL; scripts/test.sh starts LocalStack)");
    }
    configured
}

/// An aws-sdk-s3 client configured from the same environment.
pub async fn s3_client() -> aws_sdk_s3::Client {
    let conf = aws_config::from_env().load().await;
    let s3 = aws_sdk_s3::config::Builder::from(&conf)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

pub async fn ensure_bucket() {
    static READY: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    READY
        .get_or_init(|| async {
            let client = s3_client().await;
            if client
                .head_bucket()
                .bucket(TEST_BUCKET)
                .send()
                .await
                .is_err()
            {
                // Another test process may create it at the same moment.
                let _ = client.create_bucket().bucket(TEST_BUCKET).send().await;
                client
                    .head_bucket()
                    .bucket(TEST_BUCKET)
                    .send()
                    .await
                    .expect("test bucket exists");
            }
        })
        .await;
}

/// The URL of a fresh, empty store on `backend` (None: S3 not configured).
pub async fn fresh_url(backend: Backend) -> Option<(String, Option<Arc<tempfile::TempDir>>)> {
    let id = uuid::Uuid::new_v4();
    Some(match backend {
        Backend::Memory => (format!("memory://{id}"), None),
        Backend::Local => {
            let dir = Arc::new(tempfile::tempdir().unwrap());
            (dir.path().join("store").display().to_string(), Some(dir))
        }
        Backend::S3 => {
            if !s3_enabled() {
                return None;
            }
            ensure_bucket().await;
            (format!("s3://{TEST_BUCKET}/{id}"), None)
        }
    })
}

pub async fn fresh(backend: Backend) -> Option<TestStore> {
    let (url, dir) = fresh_url(backend).await?;
    Some(open_at(url, dir, backend).await)
}

async fn open_at(url: String, dir: Option<Arc<tempfile::TempDir>>, backend: Backend) -> TestStore {
    let store = ObjStore::open(&url).await.expect("open store");
    TestStore {
        store,
        url,
        backend,
        _dir: dir,
    }
}

/// A fresh store created by a format-1 protoshelf (path claims): its marker
/// is planted before the first open.
pub async fn fresh_format1(backend: Backend) -> Option<TestStore> {
    fresh_format(backend, 1).await
}

/// A fresh store whose marker names an older `format`, planted before the
/// first open (as the protoshelf of that format would have created it).
pub async fn fresh_format(backend: Backend, format: u32) -> Option<TestStore> {
    use object_store::ObjectStoreExt;
    let (url, dir) = fresh_url(backend).await?;
    let marker = serde_json::json!({"format": "protoshelf", "format_version": format,
        "created_at": "2026-01-01T00:00:00Z", "writer_id": format!("format-{format}")});
    url::open(&url)
        .unwrap()
        .store
        .put(
            &object_store::path::Path::from("protoshelf.json"),
            serde_json::to_vec(&marker).unwrap().into(),
        )
        .await
        .unwrap();
    Some(open_at(url, dir, backend).await)
}

/// Every key in the store with its size and content hash: what "nothing
/// was written" is compared on.
/// The keys of what a gc run collected (or would) of one kind.
pub fn collected_keys(
    kind: protoshelf::objstore::gc::Collectable,
    report: &protoshelf::objstore::gc::GcReport,
) -> std::collections::BTreeSet<String> {
    report
        .collected
        .iter()
        .filter(|c| c.kind == kind)
        .map(|c| c.key.clone())
        .collect()
}

pub async fn snapshot(raw: &Arc<dyn ObjectStore>) -> Vec<(String, u64)> {
    use futures::TryStreamExt;
    let mut all: Vec<(String, u64)> = raw
        .list(None)
        .map_ok(|m| (m.location.to_string(), m.size))
        .try_collect()
        .await
        .unwrap();
    all.sort();
    all
}

/// Runs each listed `async fn(TestStore)` on memory, local directory and S3.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod memory { $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() {
            let t = $crate::common::fresh($crate::common::Backend::Memory).await.unwrap();
            super::$name(t).await
        } )* }
        mod local { $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() {
            let t = $crate::common::fresh($crate::common::Backend::Local).await.unwrap();
            super::$name(t).await
        } )* }
        mod s3 { $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() {
            if let Some(t) = $crate::common::fresh($crate::common::Backend::S3).await {
                super::$name(t).await
            }
        } )* }
    };
}
pub mod data;
pub mod interpose;
pub mod server;
pub mod state;

/// Every key with the SHA-256 of its content: "byte-for-byte unchanged"
/// is compared on this.
pub async fn content_snapshot(raw: &Arc<dyn ObjectStore>) -> Vec<(String, String)> {
    use object_store::ObjectStoreExt;
    use sha2::Digest;
    let mut out = Vec::new();
    for (key, _) in snapshot(raw).await {
        let bytes = raw
            .get(&object_store::path::Path::from(key.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        out.push((key, hex::encode(sha2::Sha256::digest(&bytes))));
    }
    out
}
