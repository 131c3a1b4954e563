//! The registry: publish (compile, check ownership, store, stage), promote
//! (compatibility-checked, atomic), discard and rollback, over an
//! [`ObjStore`]. Usable embedded in any Rust program:
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use protoshelf::registry::{Registry, SourceFile};
//!
//! let registry = Registry::open("memory://").await?;
//! registry.create_namespace("shop", Default::default(), Default::default()).await?;
//! let files = vec![SourceFile::new("shop/order.proto", "syntax = \"proto3\";\npackage shop;\nmessage Order { string id = 1; }\n")];
//! let published = registry.publish("shop", "orders", files, Default::default()).await?;
//! assert_eq!(published.version, 1);
//! let promoted = registry.promote("shop", false).await?;
//! assert_eq!(promoted.promoted[0].current_version, 1);
//! # Ok::<(), protoshelf::Error>(())
//! # }).unwrap();
//! ```

pub mod catalog;
pub mod compile;
pub mod delete;
pub mod diff;
pub mod guard;
pub mod hierarchy;
mod imports;
pub mod limits;
pub mod normalize;
mod ownership;
pub mod promote;
pub mod publish;
mod restore;
pub mod view;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::compat::Policy;
use crate::error::Result;
use crate::model::{Metadata, Namespace, PromotedSchema};
use crate::objstore::ObjStore;

pub use crate::compat::SchemaViolation;
pub use catalog::{SchemaInfo, StagedInfo, VersionInfo};
pub use hierarchy::{BehindPin, MAX_DEPTH, RebaseReport, Rebased};
pub use limits::Limits;
pub use publish::{BatchMember, CheckReport};

/// The namespace setting that holds its compatibility policy.
pub const POLICY_KEY: &str = "policy";

/// The namespace setting that holds its [`CompatScope`].
pub const COMPAT_SCOPE_KEY: &str = "compat_scope";

/// Which earlier versions a new version is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompatScope {
    /// Only the current version.
    #[default]
    Latest,
    /// Every version that has ever been current (transitive).
    All,
}

impl std::fmt::Display for CompatScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CompatScope::Latest => "latest",
            CompatScope::All => "all",
        })
    }
}

impl std::str::FromStr for CompatScope {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "latest" => Ok(CompatScope::Latest),
            "all" => Ok(CompatScope::All),
            other => Err(crate::Error::InvalidInput(format!(
                "unknown compatibility scope {other:?}: use latest or all"
            ))),
        }
    }
}

/// One `.proto` file to publish: its import path and raw content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: String,
    pub content: Vec<u8>,
}

impl SourceFile {
    pub fn new(path: impl Into<String>, content: impl Into<Vec<u8>>) -> Self {
        SourceFile {
            path: path.into(),
            content: content.into(),
        }
    }
}

/// Options of a publish.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// Allow files at well-known-type paths (`google/protobuf/...`).
    pub force: bool,
    pub created_by: Option<String>,
    pub metadata: Metadata,
    /// Told (versions stored, versions to store) as a batch is stored.
    pub progress: Option<Progress>,
    /// Create the namespace (policy `strict`, no metadata) when it does not
    /// exist: once the files have compiled and passed every check, just
    /// before the first write, so a publish refused for its input creates
    /// nothing. `__builtins__` is always created so.
    pub create: bool,
}

/// A progress callback for long publishes (`load` reports with it).
#[derive(Clone)]
pub struct Progress(pub std::sync::Arc<dyn Fn(Step) + Send + Sync>);

/// How far a publish is, as told to [`Progress`]. Each phase is told once
/// with `done: 0` when it starts. A publish that loses a commit race to a
/// concurrent writer may plan again, and tell its phases again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Schemas whose files are all compiled, of the schemas that changed.
    Compiling { done: usize, total: usize },
    /// Versions stored, of the versions to store.
    Storing { done: usize, total: usize },
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

/// What a publish did for one schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub schema_id: String,
    pub version: u64,
    /// SHA-256 over the sorted `path NUL blob-sha256 LF` lines: identifies the
    /// files' content.
    pub fingerprint: String,
    /// True when the files equal the staged-or-current version: nothing written.
    pub no_change: bool,
}

/// What a promote did (or, on a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Promoted {
    pub promoted: Vec<PromotedSchema>,
    /// Schemas whose staged version is older than current: rollbacks,
    /// checked like any version a promote makes current unless forced.
    pub rollbacks: Vec<String>,
    /// Schemas whose staged version a forced rollback staged: promoted
    /// without the compatibility check.
    #[serde(default)]
    pub forced: Vec<String>,
    /// Schemas whose staged version is their current version (staged
    /// again by a rollback): nothing changes for them, nothing is checked.
    #[serde(default)]
    pub unchanged: Vec<String>,
    pub dry_run: bool,
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RolledBack {
    /// False when the version was already the proposed one (staged, else
    /// current): nothing was committed.
    pub staged: bool,
    /// The promote that followed, when asked for.
    pub promoted: Option<Promoted>,
}

/// How often this registry's commits validated from scratch and how often
/// a retry re-based the previous validation onto the winner's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryStats {
    /// Publish plans run in full (compile, ownership), first attempts
    /// included.
    pub plans: u64,
    /// Publish retries after a lost race that reused the previous plan:
    /// the winner changed nothing the plan had read.
    pub rebases: u64,
}

#[derive(Debug, Default)]
struct Counters {
    plans: AtomicU64,
    rebases: AtomicU64,
}

/// The registry over one store.
#[derive(Clone, Debug)]
pub struct Registry {
    store: ObjStore,
    limits: Limits,
    counters: Arc<Counters>,
    ancestor_cache: Arc<hierarchy::AncestorCache>,
    /// How long a publish reuses an ancestor view without a request.
    ancestor_window: std::time::Duration,
}

impl Registry {
    pub fn new(store: ObjStore) -> Self {
        Registry {
            store,
            limits: Limits::default(),
            counters: Arc::default(),
            ancestor_cache: Arc::default(),
            ancestor_window: hierarchy::DEFAULT_ANCESTOR_WINDOW,
        }
    }

    /// What this registry (and its clones) did on its commit retries.
    pub fn stats(&self) -> RegistryStats {
        RegistryStats {
            plans: self.counters.plans.load(Relaxed),
            rebases: self.counters.rebases.load(Relaxed),
        }
    }

    /// Opens the store at `url` (see [`ObjStore::open`]).
    pub async fn open(url: &str) -> Result<Self> {
        Ok(Self::new(ObjStore::open(url).await?))
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How long a publish in a child namespace reuses an ancestor's view
    /// this handle made, without asking whether the ancestor moved
    /// ([`hierarchy::DEFAULT_ANCESTOR_WINDOW`] unless set; zero: never).
    /// This handle's own commits to the ancestor end it at once; `check`,
    /// `rebase` and `rebase status` always read the ancestors' latest.
    pub fn with_ancestor_window(mut self, window: std::time::Duration) -> Self {
        self.ancestor_window = window;
        self
    }

    pub fn store(&self) -> &ObjStore {
        &self.store
    }

    /// Creates a namespace with its compatibility policy.
    ///
    /// The record and the policy are two writes: a create interrupted
    /// between them leaves a namespace with no commit. Creating it again
    /// with the same metadata finishes the job instead of failing, while the
    /// namespace has no commit (nothing can tell that create from this one).
    pub async fn create_namespace(
        &self,
        id: &str,
        policy: Policy,
        metadata: Metadata,
    ) -> Result<()> {
        let created = self
            .store
            .create_namespace(&Namespace {
                id: id.to_string(),
                created_at: Utc::now(),
                metadata: metadata.clone(),
                created_by: None,
            })
            .await;
        if let Err(crate::Error::AlreadyExists(what)) = created {
            let existing = self.store.get_namespace(id).await?;
            let state = self.store.namespace_state(id).await?;
            if delete::is_deleted(&state.snapshot.config) {
                return Err(crate::Error::AlreadyExists(format!(
                    "{what} (soft-deleted: `protoshelf namespace undelete {id}` restores it)"
                )));
            }
            if state.seq > 0 || existing.metadata != metadata {
                return Err(crate::Error::AlreadyExists(what));
            }
        } else {
            created?;
        }
        if policy != Policy::default() {
            self.set_policy(id, policy).await?;
        }
        Ok(())
    }

    /// Sets the namespace's policy; false, committing nothing, when it is
    /// that policy already.
    pub async fn set_policy(&self, namespace: &str, policy: Policy) -> Result<bool> {
        self.set_setting(namespace, POLICY_KEY, &policy.to_string(), |c| {
            Ok(policy_of(c)? == policy)
        })
        .await
    }

    /// Sets which earlier versions promote, check and rollback compare a
    /// new version with. Setting the scope it already has writes nothing.
    pub async fn set_compat_scope(&self, namespace: &str, scope: CompatScope) -> Result<bool> {
        self.set_setting(namespace, COMPAT_SCOPE_KEY, &scope.to_string(), |c| {
            Ok(scope_of(c)? == scope)
        })
        .await
    }

    /// Sets setting `key` to `value` in one commit, unless `holds` says the
    /// settings the commit would land on already mean it (then nothing is
    /// written). Returns whether it committed.
    pub(crate) async fn set_setting(
        &self,
        namespace: &str,
        key: &str,
        value: &str,
        holds: impl Fn(&BTreeMap<String, String>) -> Result<bool> + Send + Sync,
    ) -> Result<bool> {
        let holds = &holds;
        let committed = self
            .store
            .commit(namespace, |a: crate::objstore::NsAttempt| async move {
                Ok((!holds(&a.state.snapshot.config)?)
                    .then(|| crate::objstore::Mutation::set_config(key, value)))
            })
            .await?;
        Ok(committed.is_some())
    }

    /// The namespace's compatibility scope (`latest` unless set).
    pub async fn compat_scope(&self, namespace: &str) -> Result<CompatScope> {
        let config = self.store.get_config(namespace).await?;
        scope_of(&config)
    }

    /// The namespace's compatibility policy (`strict` unless set).
    pub async fn policy(&self, namespace: &str) -> Result<Policy> {
        let config = self.store.get_config(namespace).await?;
        policy_of(&config)
    }

    /// Creates namespace `id` (policy `strict`, no metadata) unless it
    /// exists: a publish's `create`, just before its first write. Created
    /// meanwhile by another writer is fine: the publish goes into it, and
    /// its commit plans again if that writer committed first.
    pub(super) async fn create_if_absent(
        &self,
        id: &str,
        created_by: Option<String>,
    ) -> Result<()> {
        let ns = Namespace {
            id: id.into(),
            created_at: Utc::now(),
            metadata: BTreeMap::new(),
            created_by,
        };
        match self.store.create_namespace(&ns).await {
            Ok(()) => {
                tracing::info!("created namespace {id}");
                Ok(())
            }
            Err(crate::Error::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn scope_of(config: &BTreeMap<String, String>) -> Result<CompatScope> {
    match config.get(COMPAT_SCOPE_KEY) {
        None => Ok(CompatScope::default()),
        Some(s) => s.parse().map_err(|_| crate::Error::Corrupt {
            key: "namespace settings".into(),
            reason: format!("unknown compatibility scope {s:?}"),
        }),
    }
}

fn policy_of(config: &BTreeMap<String, String>) -> Result<Policy> {
    match config.get(POLICY_KEY) {
        None => Ok(Policy::default()),
        Some(p) => p.parse().map_err(|_| crate::Error::Corrupt {
            key: "namespace settings".into(),
            reason: format!("unknown policy {p:?}"),
        }),
    }
}

/// The error of writing to (or reading the current version of) a
/// soft-deleted schema.
pub(crate) fn deleted_schema(namespace: &str, schema: &str) -> crate::Error {
    crate::Error::InvalidInput(format!(
        "schema {schema:?} in namespace {namespace:?} is deleted: restore it with `protoshelf schema undelete {namespace} {schema}`, or read an earlier version with --version N"
    ))
}
