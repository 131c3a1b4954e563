//! Imported files stay defined. A new version of a schema (a publish, a
//! rollback) that no longer defines a file which another schema's version
//! in the tree it joins imports is refused: the importer would no longer
//! compile against the tree, and moving the file to another path would
//! leave both copies in the namespace set, whose names then conflict in
//! one pool. Child namespaces are not asked: their imports from here are
//! pinned to the versions they were compiled against.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use super::delete::READ_CONCURRENCY;
use super::view::{Tree, View, version_in};
use crate::error::{Error, Result};
use crate::objstore::NsState;

/// A file a change stops defining that another schema's version imports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenImport {
    pub path: String,
    /// The schema whose new version no longer defines it.
    pub dropped_by: String,
    pub importer: String,
    pub version: u64,
}

/// The schemas of `view`'s tree, other than `changing` (the ones whose
/// versions are being replaced: the caller checks what their new versions
/// import), whose version imports one of `dropped` (path → the changing
/// schema that stops defining it). `replaced`: every file of the changing
/// schemas, old and new.
///
/// The tree's namespace set says which files import which (one read, the
/// one the commit builds on); only a file importing a dropped one is then
/// looked up, to name its owner (a copy the set keeps of a file nobody
/// defines any more has none). A namespace without a set (its history
/// predates them) reads each schema's dependencies instead.
pub(super) async fn importers_of(
    view: &View,
    dropped: &BTreeMap<String, String>,
    changing: &BTreeSet<String>,
    replaced: &BTreeSet<String>,
) -> Result<Vec<BrokenImport>> {
    if dropped.is_empty() {
        return Ok(Vec::new());
    }
    let broken = |path: &str, importer: String, version: u64| BrokenImport {
        path: path.to_string(),
        dropped_by: dropped[path].clone(),
        importer,
        version,
    };
    let mut out = Vec::new();
    if let Some(sets) = &view.state.snapshot.sets {
        let sha = match view.tree {
            Tree::Proposed => &sets.staged,
            Tree::Current => &sets.current,
        };
        let imports = view
            .store
            .namespace_set_imports(&view.namespace, sha)
            .await?;
        for (file, deps) in imports.iter().filter(|(f, _)| !replaced.contains(*f)) {
            let hits: Vec<&String> = deps.iter().filter(|d| dropped.contains_key(*d)).collect();
            if hits.is_empty() {
                continue;
            }
            if let Some(owner) = view.owner_of_path(file).await?
                && !changing.contains(&owner.schema_id)
            {
                for d in hits {
                    out.push(broken(d, owner.schema_id.clone(), owner.version));
                }
            }
        }
    } else {
        let others: Vec<(String, u64)> = view
            .state
            .snapshot
            .schemas
            .keys()
            .filter(|s| !changing.contains(*s))
            .filter_map(|s| version_in(&view.state, view.tree, s).map(|v| (s.clone(), v)))
            .collect();
        let found: Vec<Vec<BrokenImport>> = futures::stream::iter(others)
            .map(|(schema, v)| async move {
                let deps = view.deps(&schema, v).await?;
                Ok::<_, Error>(
                    deps.iter()
                        .filter(|d| d.namespace_id == view.namespace)
                        .filter(|d| dropped.contains_key(&d.path))
                        .map(|d| broken(&d.path, schema.clone(), v))
                        .collect(),
                )
            })
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        out.extend(found.into_iter().flatten());
    }
    out.sort_by(|a, b| (&a.path, &a.importer).cmp(&(&b.path, &b.importer)));
    out.dedup();
    Ok(out)
}

/// The refusal of a change that drops imported files; `what` says what the
/// change is ("publish", "rollback").
pub(super) fn refused(what: &str, broken: &[BrokenImport]) -> Error {
    let mut by_file: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for b in broken {
        by_file
            .entry((&b.path, &b.dropped_by))
            .or_default()
            .push(format!("{:?} (version {})", b.importer, b.version));
    }
    let lines: Vec<String> = by_file
        .iter()
        .map(|((path, by), importers)| {
            format!(
                "file {path} would no longer be defined by schema {by:?}, but schema {} imports it",
                importers.join(", schema ")
            )
        })
        .collect();
    Error::InvalidInput(format!(
        "{what} refused: {}; keep the file (same path) in the new version, or first publish importers that no longer import it, or publish the importers together with the file's new place in one batch (`protoshelf load`)",
        lines.join("; ")
    ))
}

impl super::Registry {
    /// Refuses staging version `version` of `schema` (a rollback) on
    /// `state` when the tree it joins would break: it no longer defines a
    /// file another schema's staged-or-current version imports, or it
    /// imports a file of the namespace that no schema defines now.
    pub(super) async fn check_rollback_imports(
        &self,
        namespace: &str,
        state: Arc<NsState>,
        schema: &str,
        version: u64,
    ) -> Result<()> {
        let store = &self.store;
        let view = View::new(store.clone(), namespace, state.clone(), Tree::Proposed)
            .excluding([schema.to_string()]);
        let target = store.manifest(namespace, schema, version).await?;
        let ours: BTreeSet<String> = target.files.iter().map(|f| f.path.clone()).collect();
        let proposed: Vec<String> = match state.proposed(schema) {
            Some(v) => store
                .get_version_files(namespace, schema, v)
                .await?
                .into_iter()
                .map(|f| f.path)
                .collect(),
            None => Vec::new(),
        };
        let dropped: BTreeMap<String, String> = proposed
            .iter()
            .filter(|p| !ours.contains(*p))
            .map(|p| (p.clone(), schema.to_string()))
            .collect();
        let replaced: BTreeSet<String> = ours.iter().chain(&proposed).cloned().collect();
        let changing = BTreeSet::from([schema.to_string()]);
        let broken = importers_of(&view, &dropped, &changing, &replaced).await?;
        if !broken.is_empty() {
            return Err(refused("rollback", &broken));
        }
        missing_imports(&view, &target.deps)
            .await?
            .map_or(Ok(()), |missing| {
                Err(Error::InvalidInput(format!(
                    "rollback refused: version {version} of schema {schema:?} imports {missing}, which no schema of namespace {namespace:?} defines now; publish a version that does not import it instead"
                )))
            })
    }
}

/// The files of `view`'s namespace among `deps` (a version's recorded
/// imports) that no schema of the view defines now, listed for a message;
/// None when every one is defined. Imports from ancestors are pinned: they
/// stay.
pub(super) async fn missing_imports(
    view: &View,
    deps: &[crate::model::VersionDep],
) -> Result<Option<String>> {
    let mut missing = Vec::new();
    for d in deps.iter().filter(|d| d.namespace_id == view.namespace) {
        // The schema it was compiled against is tried first, without a LIST.
        let owner = match view.owner_by_hint(&d.path, &d.schema_id).await? {
            Some(o) => Some(o),
            None => view.owner_of_path(&d.path).await?,
        };
        if owner.is_none() {
            missing.push(format!("{} (of schema {:?})", d.path, d.schema_id));
        }
    }
    Ok((!missing.is_empty()).then(|| missing.join(", ")))
}
