//! Soft deletes. Deleting a schema is one commit that hides it (no current
//! or staged version: gone from lists, the mount's `current/` and
//! `staged/`, and from what other schemas can import) while every version
//! stays readable by number and in history; undelete restores the version
//! that was current. Deleting a namespace is a setting: hidden from
//! `namespace list` and the mount, closed to writes. Nothing is removed
//! from storage (that is gc's job, for what nothing references).

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt};

use super::compile::{Compiled, Sources, stored_pool};
use super::view::{Tree, View};
use super::{Registry, imports, ownership};
use crate::error::{Error, Result};
use crate::ids::BUILTINS;
use crate::objstore::log::NsPointers;
use crate::objstore::{Mutation, NsAttempt};

/// Manifests (or namespace states) read at once.
pub(super) const READ_CONCURRENCY: usize = 16;

/// The namespace setting that marks a namespace deleted.
pub const DELETED_KEY: &str = "deleted";

/// A schema whose current or staged version imports another's files.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Importer {
    pub namespace_id: String,
    pub schema_id: String,
    pub version: u64,
    /// The version is staged, not current.
    pub staged: bool,
}

impl Registry {
    /// Soft-deletes `schema`. Refused while another schema's current or
    /// staged version imports it (a staged one would be promoted with a
    /// dangling import), unless `force`. Returns false (and commits
    /// nothing) when it is deleted already.
    pub async fn delete_schema(&self, namespace: &str, schema: &str, force: bool) -> Result<bool> {
        // Only a schema the log has named (exists, not interrupted).
        self.require_named(namespace, schema).await?;
        let committed = self
            .store
            .commit(namespace, |attempt: NsAttempt| async move {
                let state = &attempt.state;
                if state.pointers(schema).deleted {
                    return Ok(None);
                }
                if !force {
                    let importers = self.importers(namespace, state, schema).await?;
                    if !importers.is_empty() {
                        return Err(imported(namespace, schema, &importers));
                    }
                }
                Ok(Mutation::delete(state, schema))
            })
            .await?;
        Ok(committed.is_some())
    }

    /// Restores a soft-deleted schema's current version, unless another
    /// schema has since taken one of its paths or names. Returns false
    /// (and commits nothing) when it is not deleted.
    pub async fn undelete_schema(&self, namespace: &str, schema: &str) -> Result<bool> {
        self.store.get_schema(namespace, schema).await?;
        let ancestors = &self.ancestor_views(namespace).await?.views;
        let committed = self
            .store
            .commit(namespace, |attempt: NsAttempt| async move {
                let state = attempt.state.clone();
                let p = state.pointers(schema);
                if !p.deleted {
                    return Ok(None);
                }
                if let Some(v) = p.restore {
                    self.check_restorable(namespace, state, schema, v, ancestors)
                        .await?;
                }
                Ok(Mutation::undelete(&attempt.state, schema))
            })
            .await?;
        Ok(committed.is_some())
    }

    /// Refuses restoring version `v` of `schema` when its paths or names
    /// now belong to another schema (published while it was deleted), or
    /// when it imports a file of the namespace that no schema defines now
    /// in the current or the staged tree (moved while it was deleted).
    async fn check_restorable(
        &self,
        namespace: &str,
        state: std::sync::Arc<crate::objstore::NsState>,
        schema: &str,
        v: u64,
        ancestors: &[std::sync::Arc<View>],
    ) -> Result<()> {
        let view = View::new(self.store.clone(), namespace, state, Tree::Proposed)
            .excluding([schema.to_string()]);
        let ours: Vec<(String, String)> = self
            .store
            .get_version_files(namespace, schema, v)
            .await?
            .into_iter()
            .map(|f| (schema.to_string(), f.path))
            .collect();
        let refused = |e: Error| match e {
            Error::InvalidInput(why) => Error::InvalidInput(format!(
                "schema {schema:?} cannot be restored: while it was deleted, another schema took its place: {why}"
            )),
            e => e,
        };
        ownership::check_paths(&view, ancestors, &ours)
            .await
            .map_err(refused)?;
        let deps = self.store.get_version_deps(namespace, schema, v).await?;
        for tree in [Tree::Current, Tree::Proposed] {
            let view = View::new(self.store.clone(), namespace, view.state.clone(), tree)
                .excluding([schema.to_string()]);
            if let Some(missing) = imports::missing_imports(&view, &deps).await? {
                return Err(Error::InvalidInput(format!(
                    "schema {schema:?} cannot be restored: version {v} imports {missing}, which no schema of namespace {namespace:?} defines now; publish that file at that path again first"
                )));
            }
        }
        let compiled = self.store.get_version(namespace, schema, v).await?.compiled;
        let what = format!("descriptor of {namespace}/{schema} version {v}");
        let pool = stored_pool(&what, compiled)?;
        let mut stored = Compiled::default();
        for f in pool.files() {
            stored.insert_from(&f);
        }
        let sources = Sources {
            files: HashMap::new(),
        };
        ownership::check_symbols(&view, ancestors, &stored, &sources, &ours)
            .await
            .map_err(refused)
    }

    /// The schemas whose current or staged version imports a file of
    /// `schema`: in its namespace, and for a builtin schema in every
    /// namespace.
    pub async fn importers(
        &self,
        namespace: &str,
        state: &NsPointers,
        schema: &str,
    ) -> Result<Vec<Importer>> {
        let mut out = self
            .importers_in(namespace, state, namespace, schema)
            .await?;
        if namespace == BUILTINS {
            for ns in self.store.list_namespaces().await? {
                if ns.id == BUILTINS {
                    continue;
                }
                let other = self.store.namespace_state(&ns.id).await?;
                out.extend(self.importers_in(&ns.id, &other, namespace, schema).await?);
            }
        }
        Ok(out)
    }

    async fn importers_in(
        &self,
        ns: &str,
        state: &NsPointers,
        target_ns: &str,
        target: &str,
    ) -> Result<Vec<Importer>> {
        let versions: Vec<(String, u64, bool)> = state
            .snapshot
            .schemas
            .iter()
            .filter(|(other, _)| !(ns == target_ns && *other == target))
            .flat_map(|(other, p)| {
                let staged = p.staged.filter(|s| Some(*s) != p.current);
                let current = p.current.map(|v| (other.clone(), v, false));
                current
                    .into_iter()
                    .chain(staged.map(|v| (other.clone(), v, true)))
            })
            .collect();
        // One manifest per version: read a few at a time.
        let found: Vec<Option<Importer>> = futures::stream::iter(versions)
            .map(|(other, v, staged)| async move {
                let deps = self.store.get_version_deps(ns, &other, v).await?;
                let imports = deps
                    .iter()
                    .any(|d| d.namespace_id == target_ns && d.schema_id == target);
                Ok::<_, Error>(imports.then(|| Importer {
                    namespace_id: ns.to_string(),
                    schema_id: other,
                    version: v,
                    staged,
                }))
            })
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Soft-deletes a namespace: hidden from lists and the mount, closed to
    /// writes, every version still readable. `__builtins__` cannot be
    /// deleted (every namespace imports through it). Returns false when it
    /// is deleted already.
    pub async fn delete_namespace(&self, namespace: &str) -> Result<bool> {
        if namespace == BUILTINS {
            return Err(Error::InvalidInput(format!(
                "{BUILTINS} cannot be deleted: every namespace imports through it; delete its schemas instead"
            )));
        }
        self.set_deleted(namespace, true).await
    }

    /// Restores a soft-deleted namespace. Returns false when it is not
    /// deleted.
    pub async fn undelete_namespace(&self, namespace: &str) -> Result<bool> {
        self.set_deleted(namespace, false).await
    }

    async fn set_deleted(&self, namespace: &str, deleted: bool) -> Result<bool> {
        self.set_setting(namespace, DELETED_KEY, &deleted.to_string(), |c| {
            Ok(is_deleted(c) == deleted)
        })
        .await
    }

    /// Whether the namespace is soft-deleted.
    pub async fn namespace_deleted(&self, namespace: &str) -> Result<bool> {
        let state = self.store.namespace_state(namespace).await?;
        Ok(is_deleted(&state.snapshot.config))
    }
}

/// Whether a namespace's settings mark it deleted.
pub fn is_deleted(config: &std::collections::BTreeMap<String, String>) -> bool {
    config.get(DELETED_KEY).is_some_and(|v| v == "true")
}

fn imported(namespace: &str, schema: &str, importers: &[Importer]) -> Error {
    let names = |staged: bool| -> Option<String> {
        let of: Vec<String> = importers
            .iter()
            .filter(|i| i.staged == staged)
            .map(|i| format!("{}/{} v{}", i.namespace_id, i.schema_id, i.version))
            .collect();
        let which = if staged { "staged" } else { "current" };
        (!of.is_empty()).then(|| format!("the {which} version of {}", of.join(", ")))
    };
    let by: Vec<String> = [names(false), names(true)].into_iter().flatten().collect();
    Error::InvalidInput(format!(
        "schema {schema:?} in namespace {namespace:?} is imported by {}: delete or change those first, or give --force (their files stay, but nothing can import it until it is restored)",
        by.join(" and ")
    ))
}
