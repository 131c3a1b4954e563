//! Opening an object store from a URL: the one place that knows backends.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use object_store::ClientConfigKey;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreScheme};

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

fn local(dir: &FsPath, url: &str, create: bool) -> Result<Backend> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err(invalid(
                url,
                format!("{} is a file, not a store directory", dir.display()),
            ));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => {
            return Err(Error::NoStore {
                url: url.to_string(),
            });
        }
        Err(_) => std::fs::create_dir_all(dir).map_err(|e| {
            invalid(
                url,
                format!("cannot create directory {}: {e}", dir.display()),
            )
        })?,
    }
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
/// `s3://bucket[/prefix]`, `gs://bucket[/prefix]`, `az://container[/prefix]`
/// (and the https forms object_store recognizes for S3 and Azure).
/// Cloud backends take their credentials and endpoint from the standard
/// environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`) and object_store's default
/// retry budget (about three minutes per request).
pub fn open(url: &str) -> Result<Backend> {
    open_with(url, None)
}

/// How long one storage request may take, retries included, on the cloud
/// backends. object_store's defaults let one request of a hung endpoint
/// block for three minutes of retries, each try up to 30 s; a budget splits
/// its time so the last try ends within it: each try (connect included) gets
/// a quarter, no new try starts after half, and no backoff sleeps more than
/// a quarter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestBudget(pub Duration);

impl RequestBudget {
    /// The CLI's default: long enough for a slow link to move a large
    /// descriptor set, short enough that a hung endpoint fails a command
    /// in well under a minute.
    pub const CLI_DEFAULT: RequestBudget = RequestBudget(Duration::from_secs(30));

    fn per_try(self) -> Duration {
        self.0 / 4
    }

    pub fn retry(self) -> object_store::RetryConfig {
        object_store::RetryConfig {
            backoff: object_store::BackoffConfig {
                init_backoff: Duration::from_millis(100).min(self.per_try()),
                max_backoff: self.per_try(),
                base: 2.0,
            },
            max_retries: 10,
            retry_timeout: self.0 / 2,
        }
    }

    /// The client options the budget sets, as config keys: set one by one
    /// so the builders keep the options they read from the environment
    /// (`AWS_ALLOW_HTTP`, proxies, ...).
    pub fn client(self) -> [(ClientConfigKey, String); 2] {
        let per_try = format!("{}ms", self.per_try().as_millis().max(1));
        [
            (ClientConfigKey::Timeout, per_try.clone()),
            (ClientConfigKey::ConnectTimeout, per_try),
        ]
    }
}

/// The cloud schemes, for the error of one given without its bucket.
const CLOUD_SCHEMES: &[&str] = &["s3", "s3a", "gs", "az", "adl", "azure", "abfs", "abfss"];

fn unsupported(url: &str, scheme: &str) -> Error {
    invalid(
        url,
        format!(
            "unsupported scheme {scheme:?}; use a directory path, file://, memory://, s3://, gs:// or az://"
        ),
    )
}

/// [`open`] with the cloud backends' time per request bounded by `budget`
/// (see [`RequestBudget`]): the CLI and the mount fail with a storage error
/// naming the request instead of blocking for minutes.
pub fn open_with(url: &str, budget: Option<RequestBudget>) -> Result<Backend> {
    open_backend(url, budget, true)
}

/// [`open_with`] for commands that must not create a store: a local
/// directory that does not exist is [`Error::NoStore`] instead of being
/// created (a mistyped path must not become a new store).
pub fn open_existing(url: &str, budget: Option<RequestBudget>) -> Result<Backend> {
    open_backend(url, budget, false)
}

fn open_backend(url: &str, budget: Option<RequestBudget>, create: bool) -> Result<Backend> {
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
        return local(&abs, url, create);
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(url, format!("malformed URL: {e}")))?;
    if scheme == "memory" {
        // `memory://name` names a store shared in this process, a form
        // object_store's parser does not take (it wants no host).
        return Ok(Backend {
            kind: BackendKind::Memory,
            store: memory_store(parsed.host_str().unwrap_or_default()),
            url: url.to_string(),
        });
    }
    let (scheme_kind, prefix) = match ObjectStoreScheme::parse(&parsed) {
        Ok(parsed) => parsed,
        Err(_) if scheme == "file" => {
            return Err(invalid(
                url,
                "file URLs take an absolute path: file:///abs/dir",
            ));
        }
        Err(_) if CLOUD_SCHEMES.contains(&scheme) => {
            return Err(invalid(
                url,
                format!("missing bucket: {scheme}://bucket/prefix"),
            ));
        }
        Err(_) => return Err(unsupported(url, scheme)),
    };
    let build_err = |e: object_store::Error| invalid(url, e.to_string());
    // Each builder takes the URL (bucket, and account or endpoint from the
    // https forms) and the budget when one is given.
    macro_rules! cloud {
        ($builder:expr, $key:path) => {{
            let mut b = $builder.with_url(url);
            if let Some(budget) = budget {
                b = b.with_retry(budget.retry());
                for (key, value) in budget.client() {
                    b = b.with_config($key(key), value);
                }
            }
            Arc::new(b.build().map_err(build_err)?) as Arc<dyn ObjectStore>
        }};
    }
    let (kind, store) = match scheme_kind {
        ObjectStoreScheme::Local => {
            let path = parsed
                .to_file_path()
                .map_err(|_| invalid(url, "not an absolute file path"))?;
            return local(&path, url, create);
        }
        ObjectStoreScheme::AmazonS3 => (BackendKind::S3, {
            let mut b = AmazonS3Builder::from_env();
            // Without keys in the environment, aws-config's standard chain
            // (profiles, SSO, web identity, instance metadata) finds them,
            // and the profile its region (see objstore::aws).
            if !super::aws::keys_in_env() {
                let region = super::aws::profile_region();
                if let Some(r) = &region {
                    tracing::info!(
                        "S3 region {r} from the AWS profile {:?}",
                        super::aws::profile_name().unwrap_or_else(|| "default".into())
                    );
                    b = b.with_region(r);
                }
                b = b.with_credentials(Arc::new(super::aws::ChainProvider::new(region)));
            }
            cloud!(b, AmazonS3ConfigKey::Client)
        }),
        ObjectStoreScheme::GoogleCloudStorage => (
            BackendKind::Gcs,
            cloud!(
                GoogleCloudStorageBuilder::from_env(),
                GoogleConfigKey::Client
            ),
        ),
        ObjectStoreScheme::MicrosoftAzure => (
            BackendKind::Azure,
            cloud!(MicrosoftAzureBuilder::from_env(), AzureConfigKey::Client),
        ),
        // Plain HTTP(S) stores have no create-if-absent, so they cannot
        // hold a registry (memory:// was handled above; the enum is
        // non-exhaustive).
        _ => return Err(unsupported(url, scheme)),
    };
    Ok(Backend {
        kind,
        store: scoped(store, prefix.as_ref()),
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
            ("https://example.com/x", "unsupported scheme"),
            ("gs://", "missing bucket"),
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

    #[test]
    fn missing_and_file_paths_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = open_existing(missing.to_str().unwrap(), None).unwrap_err();
        assert!(matches!(err, Error::NoStore { .. }), "{err}");
        assert!(!missing.exists(), "a refused open created the directory");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        for err in [
            open(file.to_str().unwrap()).unwrap_err(),
            open_existing(file.to_str().unwrap(), None).unwrap_err(),
        ] {
            assert!(
                err.to_string().contains("is a file, not a store directory"),
                "{err}"
            );
        }
    }
}
