//! Opening an object store from a URL: the one place that knows backends.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;

use crate::error::{Error, Result};

/// Which kind of backend a URL opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Memory,
    Local,
    S3,
    Gcs,
    Azure,
}

impl BackendKind {
    /// Whether LIST returns keys in lexicographic order. Object stores do;
    /// a local directory walk does not, so pages there are sorted by us.
    pub fn lists_in_order(self) -> bool {
        self != BackendKind::Local
    }
}

/// An opened backend: the raw store (already scoped to the URL's prefix).
#[derive(Debug, Clone)]
pub struct Backend {
    pub kind: BackendKind,
    pub store: Arc<dyn ObjectStore>,
    /// The URL, normalized, for messages.
    pub url: String,
}

/// The environment variable naming the default store, and the one naming the
/// embedded store's directory.
pub const STORE_ENV: &str = "PROTOSHELF_STORE";
pub const HOME_ENV: &str = "PROTOSHELF_HOME";

/// The embedded store used when no store is given: `$PROTOSHELF_HOME`, else
/// the per-user data directory (`$XDG_DATA_HOME/protoshelf`, usually
/// `~/.local/share/protoshelf`).
pub fn default_store_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(HOME_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    dirs::data_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".local/share")))
        .unwrap_or_else(std::env::temp_dir)
        .join("protoshelf")
}

/// The store to use: `url` when given, else `$PROTOSHELF_STORE`, else the
/// embedded local store.
pub fn resolve(url: Option<&str>) -> String {
    url.map(str::to_string)
        .or_else(|| std::env::var(STORE_ENV).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| default_store_dir().to_string_lossy().into_owned())
}

/// Named in-memory stores of this process: `memory://name` opened twice is
/// the same store, so several handles can share one (`memory://` alone is a
/// fresh, private store each time).
fn memory_store(name: &str) -> Arc<dyn ObjectStore> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    if name.is_empty() {
        return Arc::new(InMemory::new());
    }
    let mut stores = STORES.get_or_init(Default::default).lock().unwrap();
    stores
        .entry(name.to_string())
        .or_insert_with(|| Arc::new(InMemory::new()))
        .clone()
}

fn invalid(url: &str, reason: impl Into<String>) -> Error {
    Error::InvalidUrl {
        url: url.to_string(),
        reason: reason.into(),
    }
}

fn local(dir: &FsPath, url: &str) -> Result<Backend> {
    std::fs::create_dir_all(dir).map_err(|e| {
        invalid(
            url,
            format!("cannot create directory {}: {e}", dir.display()),
        )
    })?;
    let store = LocalFileSystem::new_with_prefix(dir)
        .map_err(|e| invalid(url, e.to_string()))?
        // Remove emptied directories on delete so probes leave nothing behind.
        .with_automatic_cleanup(true);
    Ok(Backend {
        kind: BackendKind::Local,
        store: Arc::new(store),
        url: format!("file://{}", dir.display()),
    })
}

fn scoped(store: Arc<dyn ObjectStore>, prefix: &str) -> Arc<dyn ObjectStore> {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        store
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    }
}

/// Opens `url`: `file:///abs/dir` or a plain directory path, `memory://[name]`,
/// `s3://bucket[/prefix]`, `gs://bucket[/prefix]`, `az://container[/prefix]`.
/// Cloud backends take their credentials and endpoint from the standard
/// environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
pub fn open(url: &str) -> Result<Backend> {
    open_with(url, None)
}

/// [`open`] with the cloud backends' retry budget replaced: a mount answers
/// EIO after a few seconds of unreachable storage instead of blocking a
/// reader for object_store's default three minutes.
pub fn open_with(url: &str, retry: Option<object_store::RetryConfig>) -> Result<Backend> {
    let url = url.trim();
    if url.is_empty() {
        return Err(invalid(url, "empty store URL"));
    }
    let Some((scheme, _)) = url.split_once("://") else {
        // A plain path, relative to the working directory.
        let path = FsPath::new(url);
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| invalid(url, e.to_string()))?
                .join(path)
        };
        return local(&abs, url);
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(url, format!("malformed URL: {e}")))?;
    let bucket = parsed.host_str().unwrap_or_default();
    let build_err = |e: object_store::Error| invalid(url, e.to_string());
    let (kind, store): (BackendKind, Arc<dyn ObjectStore>) = match scheme {
        "file" => {
            if !bucket.is_empty() && bucket != "localhost" {
                return Err(invalid(
                    url,
                    "file URLs take an absolute path: file:///abs/dir",
                ));
            }
            let path = parsed
                .to_file_path()
                .map_err(|_| invalid(url, "not an absolute file path"))?;
            return local(&path, url);
        }
        "memory" => {
            return Ok(Backend {
                kind: BackendKind::Memory,
                store: memory_store(bucket),
                url: url.to_string(),
            });
        }
        "s3" | "s3a" => {
            if bucket.is_empty() {
                return Err(invalid(url, "missing bucket: s3://bucket/prefix"));
            }
            let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(r) = retry.clone() {
                b = b.with_retry(r);
            }
            let s3 = b.build().map_err(build_err)?;
            (BackendKind::S3, Arc::new(s3))
        }
        "gs" => {
            if bucket.is_empty() {
                return Err(invalid(url, "missing bucket: gs://bucket/prefix"));
            }
            let mut b = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
            if let Some(r) = retry.clone() {
                b = b.with_retry(r);
            }
            let gcs = b.build().map_err(build_err)?;
            (BackendKind::Gcs, Arc::new(gcs))
        }
        "az" | "azure" | "abfs" => {
            if bucket.is_empty() {
                return Err(invalid(url, "missing container: az://container/prefix"));
            }
            let mut b = MicrosoftAzureBuilder::from_env().with_container_name(bucket);
            if let Some(r) = retry.clone() {
                b = b.with_retry(r);
            }
            let az = b.build().map_err(build_err)?;
            (BackendKind::Azure, Arc::new(az))
        }
        other => {
            return Err(invalid(
                url,
                format!(
                    "unsupported scheme {other:?}; use a directory path, file://, memory://, s3://, gs:// or az://"
                ),
            ));
        }
    };
    Ok(Backend {
        kind,
        store: scoped(store, parsed.path()),
        url: url.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_urls_clearly() {
        for (url, needle) in [
            ("ftp://x/y", "unsupported scheme"),
            ("s3://", "missing bucket"),
            ("", "empty"),
            ("file://host/x", "absolute path"),
        ] {
            let err = open(url).unwrap_err().to_string();
            assert!(err.contains(needle), "{url}: {err}");
        }
    }

    #[test]
    fn named_memory_stores_are_shared_and_anonymous_ones_are_not() {
        let a = open("memory://shared-test").unwrap();
        let b = open("memory://shared-test").unwrap();
        assert!(Arc::ptr_eq(&a.store, &b.store));
        let c = open("memory://").unwrap();
        let d = open("memory://").unwrap();
        assert!(!Arc::ptr_eq(&c.store, &d.store));
    }

    #[test]
    fn plain_paths_open_a_local_directory() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path().join("store").to_str().unwrap()).unwrap();
        assert_eq!(b.kind, BackendKind::Local);
        assert!(dir.path().join("store").is_dir());
    }
}
