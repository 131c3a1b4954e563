//! Namespace hierarchy: a namespace may name one parent (the `parent`
//! setting, changed through its log), forming a chain that ends at
//! `__builtins__`. Imports resolve through the namespace, then each
//! ancestor's current tree, nearest first; what a version imported from an
//! ancestor is pinned in its recorded deps, so a promote in an ancestor
//! changes no child until `rebase` re-pins it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::view::{Tree, View, version_in};
use super::{BatchMember, CheckReport, Registry, SchemaViolation};
use crate::compat::Policy;
use crate::error::{Error, Result};
use crate::ids::{BUILTINS, validate_namespace_id};
use crate::model::Metadata;
use crate::objstore::NsState;

/// The namespace setting that names its parent (`__builtins__`: none).
pub const PARENT_KEY: &str = "parent";

/// The most ancestors a namespace may have, `__builtins__` not counted:
/// every publish reads each ancestor's state, so the chain stays short.
pub const MAX_DEPTH: usize = 8;

/// The parent a namespace's settings name, if any.
pub fn parent_of(config: &BTreeMap<String, String>) -> Option<&str> {
    config
        .get(PARENT_KEY)
        .map(String::as_str)
        .filter(|p| !p.is_empty() && *p != BUILTINS)
}

/// How long a publish reuses an ancestor view this handle made, without a
/// request ([`Registry::with_ancestor_window`]).
pub const DEFAULT_ANCESTOR_WINDOW: Duration = Duration::from_secs(5);

/// The ancestors' current trees, nearest first, builtins last.
#[derive(Default)]
pub struct Ancestors {
    pub views: Vec<Arc<View>>,
    /// Some view is at a state no request confirmed is the latest (from a
    /// hint, or kept within the window).
    pub unconfirmed: bool,
}

/// How fresh the ancestor states a read resolves must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// A publish: a recent state is enough (the hint's, or a view this
    /// handle made within its window), never older than one this handle
    /// has seen. Pins record what was used; `rebase status` shows it.
    Recent,
    /// The latest state, confirmed by the log (`check`, `rebase`,
    /// `rebase status`, undelete).
    Confirmed,
}

/// An ancestor view a handle keeps.
#[derive(Debug, Clone)]
struct Kept {
    view: Arc<View>,
    /// When a read last showed `view`'s state (hinted or confirmed).
    read_at: Instant,
}

/// Ancestor views a handle keeps, by namespace: reused while the
/// ancestor's seq is unchanged, and by a publish within the window without
/// a request. Sound because every claim of a version is written before
/// the commit that stages it, and claims are never removed: a sweep made
/// at or after seq S answers every lookup of the state at S.
#[derive(Debug, Default)]
pub(super) struct AncestorCache(std::sync::Mutex<HashMap<String, Kept>>);

impl AncestorCache {
    fn get(&self, ns: &str) -> Option<Kept> {
        self.0.lock().unwrap().get(ns).cloned()
    }

    fn put(&self, ns: &str, kept: Kept) {
        self.0.lock().unwrap().insert(ns.to_string(), kept);
    }
}

/// An ancestor's state as a read resolved it.
enum Resolved {
    /// A view kept within the window, used as it is.
    Kept(Arc<View>),
    /// A state just read; `confirmed`: from the log, not the hint.
    Read {
        state: Arc<NsState>,
        confirmed: bool,
    },
}

impl Resolved {
    fn state(&self) -> &NsState {
        match self {
            Resolved::Kept(v) => &v.state,
            Resolved::Read { state, .. } => state,
        }
    }
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "View({} at {})", self.namespace, self.state.seq)
    }
}

/// A pin behind its ancestor: `schema`'s proposed version imports `import`
/// from `namespace`'s `pinned_schema` at `pinned_version`, and the ancestor's
/// current version of it is `current_version` (None: the schema is gone
/// from the ancestor, or the namespace left the chain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BehindPin {
    pub schema_id: String,
    pub version: u64,
    pub import: String,
    pub namespace_id: String,
    pub pinned_schema: String,
    pub pinned_version: u64,
    pub current_version: Option<u64>,
}

/// What a rebase did (or, on a dry run, would do) for one schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rebased {
    pub schema_id: String,
    pub from_version: u64,
    /// The staged version with the new pins (None on a dry run).
    pub version: Option<u64>,
    /// The files' fingerprint (unchanged by a rebase: same files).
    pub fingerprint: String,
    pub policy: Policy,
    pub violations: Vec<SchemaViolation>,
}

/// What a rebase did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RebaseReport {
    pub namespace_id: String,
    pub schemas: Vec<Rebased>,
    pub dry_run: bool,
}

impl Registry {
    /// The chain `namespace` resolves through, nearest ancestor first
    /// (`__builtins__` not included). Refused when an ancestor is missing
    /// or deleted, or the chain loops or is deeper than [`MAX_DEPTH`]
    /// (concurrent set-parents can make one; reads refuse it).
    async fn chain(
        &self,
        namespace: &str,
        state: &NsState,
        fresh: Freshness,
    ) -> Result<Vec<(String, Resolved)>> {
        let mut out: Vec<(String, Resolved)> = Vec::new();
        let mut next = parent_of(&state.snapshot.config).map(str::to_string);
        while let Some(p) = next {
            if p == namespace || out.iter().any(|(n, _)| *n == p) {
                return Err(Error::InvalidInput(format!(
                    "the parent chain of namespace {namespace:?} loops at {p:?}: fix it with `protoshelf namespace set-parent {namespace} {BUILTINS}`"
                )));
            }
            if out.len() == MAX_DEPTH {
                return Err(Error::InvalidInput(format!(
                    "the parent chain of namespace {namespace:?} is deeper than {MAX_DEPTH} namespaces: set a nearer parent with `protoshelf namespace set-parent`"
                )));
            }
            let s = match self.ancestor_state(&p, fresh).await {
                Err(Error::NotFound(_)) => {
                    return Err(Error::InvalidInput(format!(
                        "namespace {namespace:?} has ancestor {p:?}, which does not exist: create it or set another parent with `protoshelf namespace set-parent`"
                    )));
                }
                s => s?,
            };
            if super::delete::is_deleted(&s.state().snapshot.config) {
                return Err(Error::InvalidInput(format!(
                    "namespace {namespace:?} has ancestor {p:?}, which is deleted: restore it with `protoshelf namespace undelete {p}` or set another parent"
                )));
            }
            next = parent_of(&s.state().snapshot.config).map(str::to_string);
            out.push((p, s));
        }
        Ok(out)
    }

    /// Whether a publish may use a kept view without a request: made
    /// within the window, and this handle has seen no later state of it
    /// (`seen`, its own commits included).
    fn still_usable(&self, kept: &Kept, seen: Option<&NsState>) -> bool {
        kept.read_at.elapsed() <= self.ancestor_window
            && seen.is_none_or(|s| s.seq <= kept.view.state.seq)
    }

    /// An ancestor's state, as fresh as `fresh` asks. Recent: a view kept
    /// within the window unless this handle has since seen a later state
    /// (its own commits included), else the hint's state (1 GET, which
    /// also shows the namespace exists), never older than what this handle
    /// has seen; without a usable hint, the log's latest.
    async fn ancestor_state(&self, ns: &str, fresh: Freshness) -> Result<Resolved> {
        if fresh == Freshness::Recent {
            let seen = self.store.cached_namespace_state(ns);
            let kept = self.ancestor_cache.get(ns);
            if let Some(k) = &kept
                && self.still_usable(k, seen.as_deref())
            {
                return Ok(Resolved::Kept(k.view.clone()));
            }
            if let Some(hinted) = self.store.hinted_namespace_state(ns).await? {
                let newest = [seen, kept.map(|k| k.view.state.clone())]
                    .into_iter()
                    .flatten()
                    .fold(hinted, |a, b| if b.seq > a.seq { b } else { a });
                return Ok(Resolved::Read {
                    state: newest,
                    confirmed: false,
                });
            }
        }
        Ok(Resolved::Read {
            state: self.store.namespace_state(ns).await?,
            confirmed: true,
        })
    }

    /// The ancestors' current trees of `namespace` at its `state`. A
    /// recent read that a chain refuses (a missing, deleted or looping
    /// ancestor) is decided again on confirmed states before it fails.
    pub(super) async fn ancestor_views_of(
        &self,
        namespace: &str,
        state: &NsState,
        fresh: Freshness,
    ) -> Result<Ancestors> {
        if namespace == BUILTINS {
            return Ok(Ancestors::default());
        }
        let mut states = match self.chain(namespace, state, fresh).await {
            Err(e) if e.is_user_error() && fresh == Freshness::Recent => {
                self.chain(namespace, state, Freshness::Confirmed).await?
            }
            c => c?,
        };
        // Builtins usually do not exist, which only a GET of the record
        // tells (a hint would cost a second GET to say so): kept within
        // the window as the others, else read confirmed.
        let seen = self.store.cached_namespace_state(BUILTINS);
        let kept = self
            .ancestor_cache
            .get(BUILTINS)
            .filter(|k| fresh == Freshness::Recent && self.still_usable(k, seen.as_deref()));
        match kept {
            Some(k) => states.push((BUILTINS.to_string(), Resolved::Kept(k.view))),
            None => match self.store.namespace_state(BUILTINS).await {
                Ok(s) => states.push((
                    BUILTINS.to_string(),
                    Resolved::Read {
                        state: s,
                        confirmed: true,
                    },
                )),
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            },
        }
        let mut views = Vec::new();
        let mut unconfirmed = false;
        for (ns, resolved) in states {
            let (s, confirmed) = match resolved {
                Resolved::Kept(v) => {
                    unconfirmed = true;
                    views.push(v);
                    continue;
                }
                Resolved::Read { state, confirmed } => (state, confirmed),
            };
            unconfirmed |= !confirmed;
            let view = match self.ancestor_cache.get(&ns) {
                Some(k) if k.view.state.seq == s.seq => k.view,
                _ => {
                    // One LIST sweep answers every lookup of a publish (and
                    // of the next ones on this handle, while the seq holds).
                    Arc::new(
                        View::new(self.store.clone(), &ns, s, Tree::Current)
                            .sweep()
                            .await?,
                    )
                }
            };
            self.ancestor_cache.put(
                &ns,
                Kept {
                    view: view.clone(),
                    read_at: Instant::now(),
                },
            );
            views.push(view);
        }
        Ok(Ancestors { views, unconfirmed })
    }

    /// [`Self::ancestor_views_of`] at the namespace's latest state.
    pub(super) async fn ancestor_views(&self, namespace: &str) -> Result<Ancestors> {
        if namespace == BUILTINS {
            return Ok(Ancestors::default());
        }
        let state = self.store.namespace_state(namespace).await?;
        self.ancestor_views_of(namespace, &state, Freshness::Confirmed)
            .await
    }

    /// The namespace's parent (None: the chain ends at builtins).
    pub async fn parent(&self, namespace: &str) -> Result<Option<String>> {
        let config = self.store.get_config(namespace).await?;
        Ok(parent_of(&config).map(str::to_string))
    }

    /// The namespace's ancestors, nearest first (builtins not included).
    pub async fn ancestors(&self, namespace: &str) -> Result<Vec<String>> {
        let state = self.store.namespace_state(namespace).await?;
        Ok(self
            .chain(namespace, &state, Freshness::Confirmed)
            .await?
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }

    /// Refuses `parent` for `namespace` unless it exists, is not deleted,
    /// is not `namespace` or one of its descendants through `parent`'s
    /// chain (a cycle), and leaves a chain of at most [`MAX_DEPTH`].
    async fn check_parent(&self, namespace: &str, parent: &str) -> Result<()> {
        validate_namespace_id(parent)?;
        if parent == namespace {
            return Err(Error::InvalidInput(format!(
                "namespace {namespace:?} cannot be its own parent"
            )));
        }
        let state = match self.store.namespace_state(parent).await {
            Err(Error::NotFound(_)) => {
                return Err(Error::InvalidInput(format!(
                    "unknown parent namespace {parent:?}: create it first with `protoshelf namespace create {parent}`"
                )));
            }
            s => s?,
        };
        if super::delete::is_deleted(&state.snapshot.config) {
            return Err(Error::InvalidInput(format!(
                "parent namespace {parent:?} is deleted: restore it with `protoshelf namespace undelete {parent}` first"
            )));
        }
        let above = self
            .chain(parent, &state, Freshness::Confirmed)
            .await
            .map_err(|e| match e {
                Error::InvalidInput(why) => {
                    Error::InvalidInput(format!("{parent:?} cannot be a parent: {why}"))
                }
                e => e,
            })?;
        if let Some(at) = above.iter().position(|(n, _)| n == namespace) {
            let mut cycle: Vec<&str> = vec![namespace, parent];
            cycle.extend(above[..=at].iter().map(|(n, _)| n.as_str()));
            return Err(Error::InvalidInput(format!(
                "setting {parent:?} as the parent of {namespace:?} would make a cycle: {}",
                cycle.join(" -> ")
            )));
        }
        if above.len() + 1 > MAX_DEPTH {
            return Err(Error::InvalidInput(format!(
                "setting {parent:?} as the parent of {namespace:?} makes a chain of {} ancestors; the limit is {MAX_DEPTH}",
                above.len() + 1
            )));
        }
        Ok(())
    }

    /// Sets (or, with None or `__builtins__`, clears) the namespace's
    /// parent in one commit; false, committing nothing, when it is that
    /// parent already. Bad parents are refused before anything is written.
    pub async fn set_parent(&self, namespace: &str, parent: Option<&str>) -> Result<bool> {
        validate_namespace_id(namespace)?;
        if namespace == BUILTINS {
            return Err(Error::InvalidInput(format!(
                "{BUILTINS} is the root of every chain: it has no parent"
            )));
        }
        let parent = parent.filter(|p| *p != BUILTINS);
        self.store.get_namespace(namespace).await?;
        if let Some(p) = parent {
            self.check_parent(namespace, p).await?;
        }
        let value = parent.unwrap_or(BUILTINS);
        self.set_setting(namespace, PARENT_KEY, value, |c| Ok(parent_of(c) == parent))
            .await
    }

    /// Creates a namespace whose parent is `parent`, refusing a bad parent
    /// before creating anything.
    pub async fn create_namespace_with_parent(
        &self,
        id: &str,
        policy: Policy,
        metadata: Metadata,
        parent: Option<&str>,
    ) -> Result<()> {
        let parent = parent.filter(|p| *p != BUILTINS);
        if let Some(p) = parent {
            validate_namespace_id(id)?;
            self.check_parent(id, p).await?;
        }
        self.create_namespace(id, policy, metadata).await?;
        if parent.is_some() {
            self.set_parent(id, parent).await?;
        }
        Ok(())
    }

    /// The schemas whose proposed (staged, else current) version pins an
    /// import to an ancestor version that is no longer the ancestor's
    /// current one, in schema order.
    pub async fn rebase_status(&self, namespace: &str) -> Result<Vec<BehindPin>> {
        validate_namespace_id(namespace)?;
        let state = self.store.namespace_state(namespace).await?;
        self.behind(namespace, &state).await
    }

    async fn behind(&self, namespace: &str, state: &NsState) -> Result<Vec<BehindPin>> {
        let ancestors = self
            .ancestor_views_of(namespace, state, Freshness::Confirmed)
            .await?
            .views;
        let current_in = |ns: &str, schema: &str| {
            ancestors
                .iter()
                .find(|a| a.namespace == ns)
                .and_then(|a| version_in(&a.state, Tree::Current, schema))
        };
        let schemas: Vec<(String, u64)> = state
            .snapshot
            .schemas
            .iter()
            .filter(|(_, p)| !p.deleted)
            .filter_map(|(s, p)| p.staged.or(p.current).map(|v| (s.clone(), v)))
            .collect();
        let store = &self.store;
        let deps: Vec<_> = schemas
            .iter()
            .map(|(s, v)| store.get_version_deps(namespace, s, *v))
            .collect();
        let deps: Vec<Vec<crate::model::VersionDep>> = futures::stream::iter(deps)
            .buffered(16)
            .try_collect()
            .await?;
        let mut out = Vec::new();
        for ((schema, version), deps) in schemas.into_iter().zip(deps) {
            for d in deps.into_iter().filter(|d| d.namespace_id != namespace) {
                let current = current_in(&d.namespace_id, &d.schema_id);
                if current != Some(d.version) {
                    out.push(BehindPin {
                        schema_id: schema.clone(),
                        version,
                        import: d.path,
                        namespace_id: d.namespace_id,
                        pinned_schema: d.schema_id,
                        pinned_version: d.version,
                        current_version: current,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Re-pins the schemas whose pins are behind: recompiles each one's
    /// proposed files against the ancestors' current versions, checks it
    /// under the namespace's policy (refused on any violation, nothing
    /// written) and stages them all in one commit. A dry run only checks.
    /// `only`: rebase that one schema.
    pub async fn rebase(
        &self,
        namespace: &str,
        only: Option<&str>,
        dry_run: bool,
    ) -> Result<RebaseReport> {
        validate_namespace_id(namespace)?;
        let state = self.store.namespace_state(namespace).await?;
        if let Some(s) = only {
            self.store.get_schema(namespace, s).await?;
        }
        let mut behind = self.behind(namespace, &state).await?;
        behind.retain(|b| only.is_none_or(|s| b.schema_id == s));
        let mut members: BTreeMap<String, u64> = BTreeMap::new();
        for b in &behind {
            members.insert(b.schema_id.clone(), b.version);
        }
        let mut prepared_all = Vec::new();
        let mut schemas = Vec::new();
        for (schema, version) in &members {
            let files = self.version_sources(namespace, schema, *version).await?;
            let member = BatchMember {
                schema_id: schema.clone(),
                files,
            };
            // Files once accepted stay accepted (well-known paths included).
            let mut prepared = self.prepare(&[member], true, false)?;
            prepared[0].repin = true;
            let report: CheckReport = self.check_prepared(namespace, schema, &prepared).await?;
            schemas.push(Rebased {
                schema_id: schema.clone(),
                from_version: *version,
                version: None,
                fingerprint: report.fingerprint,
                policy: report.policy,
                violations: report.violations,
            });
            prepared_all.extend(prepared);
        }
        if let Some(bad) = schemas.iter().find(|s| !s.violations.is_empty()) {
            if dry_run {
                return Ok(RebaseReport {
                    namespace_id: namespace.to_string(),
                    schemas,
                    dry_run,
                });
            }
            return Err(Error::InvalidInput(format!(
                "rebase of {namespace:?} refused: schema {:?} is not {} compatible against the ancestors' current versions ({} violations; see `protoshelf rebase {namespace} --dry-run`); nothing was staged",
                bad.schema_id,
                bad.policy,
                bad.violations.len()
            )));
        }
        if !dry_run && !prepared_all.is_empty() {
            let published = self
                // Pins from the confirmed states `behind` just read.
                .publish_prepared(
                    namespace,
                    prepared_all,
                    Default::default(),
                    Freshness::Confirmed,
                )
                .await?;
            for (s, p) in schemas.iter_mut().zip(published) {
                s.version = Some(p.version);
            }
        }
        Ok(RebaseReport {
            namespace_id: namespace.to_string(),
            schemas,
            dry_run,
        })
    }

    /// A stored version's files with their sources.
    async fn version_sources(
        &self,
        namespace: &str,
        schema: &str,
        version: u64,
    ) -> Result<Vec<super::SourceFile>> {
        let files = self
            .store
            .get_version_files(namespace, schema, version)
            .await?;
        let store = &self.store;
        let reads: Vec<_> = files
            .iter()
            .map(|f| async move {
                let blob = store.get_blob(namespace, &f.sha256).await?;
                Ok::<_, Error>(super::SourceFile::new(f.path.clone(), blob.source.to_vec()))
            })
            .collect();
        futures::stream::iter(reads)
            .buffered(16)
            .try_collect()
            .await
    }
}
