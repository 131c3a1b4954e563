//! What readers are shown of a namespace (the CLI's `schema list` and
//! `schema info`, reads by version): only schemas and versions its log has
//! named. A publish writes its schema record and version before the commit
//! that stages them, so a publish that dies in between (or loses a commit
//! race and stages a newer version instead) leaves a record or a manifest
//! that no commit names. Those stay invisible here, a rerun of the publish
//! reuses or supersedes them, and gc removes the unnamed manifests.
//! [`crate::ObjStore`]'s own listings are the raw contract and show every
//! stored record.

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::Registry;
use crate::error::{Error, Result};
use crate::model::{Metadata, Namespace, Schema};
use crate::objstore::records::Pointers;

/// One version of a schema as `schema versions` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub metadata: Metadata,
    /// As `push` printed it: SHA-256 over the files' paths and hashes.
    pub fingerprint: String,
    pub files: usize,
    /// Current, staged now.
    pub current: bool,
    pub staged: bool,
    /// Ever made current, ever staged, by the log.
    pub ever_current: bool,
    pub ever_staged: bool,
}

/// A staged version with the commit that staged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StagedInfo {
    pub schema_id: String,
    pub staged_version: u64,
    pub current_version: Option<u64>,
    /// A forced rollback staged it: promote makes it current unchecked.
    pub forced: bool,
    /// The commit that staged it: its number, time and author (the
    /// `--created-by` it named, else the writing process). None when no
    /// entry says (that commit was lost and the log repaired).
    pub staged_in: Option<u64>,
    pub staged_at: Option<DateTime<Utc>>,
    pub staged_by: Option<String>,
}

/// Log entries read at once while looking back for staging commits.
const LOOKBACK_PAGE: u64 = 32;

/// Manifests read at once by [`Registry::schema_versions`].
const MANIFEST_CONCURRENCY: usize = 16;

/// A schema as `schema info` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaInfo {
    #[serde(flatten)]
    pub schema: Schema,
    /// Every version the log ever staged or made current, ascending.
    pub versions: Vec<u64>,
}

/// Whether the log has named the schema: a record alone is an interrupted
/// publish.
fn named(p: &Pointers) -> bool {
    p.latest > 0 || p.current.is_some() || p.staged.is_some()
}

impl Registry {
    /// The namespace's schemas that have (or had) a staged or current
    /// version, in ID order.
    pub async fn list_schemas(&self, namespace: &str) -> Result<Vec<Schema>> {
        let state = self.store.namespace_state(namespace).await?;
        let all = self.store.list_schemas(namespace).await?;
        Ok(all
            .into_iter()
            .filter(|s| named(&state.pointers(&s.schema_id)) && !s.deleted)
            .collect())
    }

    /// The namespace's soft-deleted schemas, in ID order.
    pub async fn deleted_schemas(&self, namespace: &str) -> Result<Vec<Schema>> {
        let state = self.store.namespace_state(namespace).await?;
        let all = self.store.list_schemas(namespace).await?;
        Ok(all
            .into_iter()
            .filter(|s| state.pointers(&s.schema_id).deleted)
            .collect())
    }

    /// The store's namespaces that are not soft-deleted (one state read
    /// per namespace), or only the deleted ones.
    pub async fn list_namespaces(&self, deleted: bool) -> Result<Vec<Namespace>> {
        let all = self.store.list_namespaces().await?;
        self.filter_deleted(all, deleted).await
    }

    /// Of `namespaces`, the soft-deleted ones (`deleted`) or the others:
    /// one state read each, a few at a time.
    pub async fn filter_deleted(
        &self,
        namespaces: Vec<Namespace>,
        deleted: bool,
    ) -> Result<Vec<Namespace>> {
        let kept = self
            .filter_deleted_with_parents(namespaces, deleted)
            .await?;
        Ok(kept.into_iter().map(|(ns, _)| ns).collect())
    }

    /// [`Self::filter_deleted`], each with its parent (from the same state
    /// read: no request more).
    pub async fn filter_deleted_with_parents(
        &self,
        namespaces: Vec<Namespace>,
        deleted: bool,
    ) -> Result<Vec<(Namespace, Option<String>)>> {
        let keep: Vec<Option<(Namespace, Option<String>)>> = futures::stream::iter(namespaces)
            .map(|ns| async move {
                let state = self.store.namespace_state(&ns.id).await?;
                let config = &state.snapshot.config;
                let shown = super::delete::is_deleted(config) == deleted;
                let parent = super::hierarchy::parent_of(config).map(str::to_string);
                Ok::<_, Error>(shown.then_some((ns, parent)))
            })
            .buffered(super::delete::READ_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(keep.into_iter().flatten().collect())
    }

    /// A schema with its pointers and every version the log ever named.
    pub async fn schema_info(&self, namespace: &str, schema: &str) -> Result<SchemaInfo> {
        let s = self.require_named(namespace, schema).await?;
        let versions = self.store.published(namespace).await?.of(schema);
        Ok(SchemaInfo {
            schema: s,
            versions,
        })
    }

    /// Every version of a schema the log ever named, ascending, with its
    /// author, time, metadata, fingerprint and history (one GET per
    /// manifest not cached, and the log once per handle).
    pub async fn schema_versions(&self, namespace: &str, schema: &str) -> Result<Vec<VersionInfo>> {
        let info = self.schema_info(namespace, schema).await?;
        let published = self.store.published(namespace).await?;
        let s = &info.schema;
        futures::stream::iter(info.versions.iter().copied())
            .map(|v| async move { self.store.manifest(namespace, schema, v).await })
            .buffered(MANIFEST_CONCURRENCY)
            .map_ok(|m| VersionInfo {
                version: m.version,
                created_at: m.created_at,
                created_by: m.created_by,
                metadata: m.metadata,
                fingerprint: super::publish::fingerprint(&m.files),
                files: m.files.len(),
                current: s.current_version == Some(m.version),
                staged: s.staged_version == Some(m.version),
                ever_current: published.was_current(schema, m.version),
                ever_staged: published.was_staged(schema, m.version),
            })
            .try_collect()
            .await
    }

    /// What is staged in the namespace, each with the commit that staged
    /// it: the log is read back from its head until every one is found.
    pub async fn staged(&self, namespace: &str) -> Result<Vec<StagedInfo>> {
        let state = self.store.namespace_state(namespace).await?;
        let mut wanted: std::collections::BTreeMap<String, Pointers> = state
            .staged_schemas()
            .map(|(s, p)| (s.clone(), p))
            .collect();
        let mut found = Vec::new();
        let mut to = state.seq;
        while !wanted.is_empty() && to > 0 {
            let from = to.saturating_sub(LOOKBACK_PAGE - 1).max(1);
            let entries = self.store.log_entries(namespace, from, to).await?;
            for e in entries.iter().rev() {
                // The newest entry that set a schema's staged pointer to
                // what it is now staged it.
                let hits: Vec<String> = wanted
                    .iter()
                    .filter(|(s, p)| e.changes.get(*s).is_some_and(|c| c.staged == p.staged))
                    .map(|(s, _)| s.clone())
                    .collect();
                for s in hits {
                    let p = wanted.remove(&s).expect("wanted");
                    found.push(StagedInfo {
                        schema_id: s,
                        staged_version: p.staged.expect("staged"),
                        current_version: p.current,
                        forced: p.staged_forced,
                        staged_in: Some(e.seq),
                        staged_at: Some(e.created_at),
                        staged_by: Some(e.created_by.clone().unwrap_or_else(|| e.writer.clone())),
                    });
                }
            }
            to = from - 1;
        }
        // Only a repaired log (a lost staging commit) leaves any.
        found.extend(wanted.into_iter().map(|(s, p)| StagedInfo {
            schema_id: s,
            staged_version: p.staged.expect("staged"),
            current_version: p.current,
            forced: p.staged_forced,
            staged_in: None,
            staged_at: None,
            staged_by: None,
        }));
        found.sort_by(|a, b| a.schema_id.cmp(&b.schema_id));
        Ok(found)
    }

    /// The schema, unless it does not exist or the log never named it.
    pub(super) async fn require_named(&self, namespace: &str, schema: &str) -> Result<Schema> {
        let s = self.store.get_schema(namespace, schema).await?;
        let state = self.store.namespace_state(namespace).await?;
        if !named(&state.pointers(schema)) {
            return Err(unnamed(namespace, schema));
        }
        Ok(s)
    }

    /// The version a read means: `version` when given (it must be one the
    /// log named), else current, else staged.
    pub async fn readable_version(
        &self,
        namespace: &str,
        schema: &str,
        version: Option<u64>,
    ) -> Result<u64> {
        let s = self.store.get_schema(namespace, schema).await?;
        if s.deleted && version.is_none() {
            return Err(super::deleted_schema(namespace, schema));
        }
        let Some(v) = version else {
            return s.current_version.or(s.staged_version).ok_or_else(|| {
                Error::NotFound(format!("a current or staged version of schema {schema:?}"))
            });
        };
        self.require_published(namespace, schema, v).await?;
        Ok(v)
    }

    /// The descriptor set a read means (see [`Self::readable_version`]),
    /// with its version. By the reader contract when the store allows it
    /// (a cold read of the current descriptor: one LIST of the schema's
    /// move markers and two GETs, whatever the namespace's size or
    /// history); else through the log.
    pub async fn descriptor(
        &self,
        namespace: &str,
        schema: &str,
        version: Option<u64>,
    ) -> Result<(u64, bytes::Bytes)> {
        if let Some(head) = self.store.schema_head(namespace, schema).await? {
            let p = head.pointers;
            let d = head.descriptors;
            let pick = match version {
                None => p
                    .current
                    .map(|v| (v, d.current))
                    .or(p.staged.map(|v| (v, d.staged))),
                Some(v) if Some(v) == p.current => Some((v, d.current)),
                Some(v) if Some(v) == p.staged => Some((v, d.staged)),
                Some(v) if v > p.latest => {
                    // `latest` is the highest number the log has named.
                    self.store.manifest(namespace, schema, v).await?;
                    return Err(never_staged(namespace, schema, v));
                }
                Some(_) => None,
            };
            match pick {
                Some((v, Some(sha))) => {
                    return Ok((v, self.store.descriptor_by_hash(namespace, &sha).await?));
                }
                // An entry older than descriptor hashes: the manifest names it.
                Some((v, None)) => {
                    return Ok((
                        v,
                        self.store.get_version(namespace, schema, v).await?.compiled,
                    ));
                }
                None => {}
            }
        }
        let v = self.readable_version(namespace, schema, version).await?;
        Ok((
            v,
            self.store.get_version(namespace, schema, v).await?.compiled,
        ))
    }

    /// `NotFound` unless the log ever staged `version` (or made it current).
    pub(super) async fn require_published(
        &self,
        namespace: &str,
        schema: &str,
        version: u64,
    ) -> Result<()> {
        if self.store.is_published(namespace, schema, version).await? {
            return Ok(());
        }
        // Say which of the two is missing: the version, or its staging.
        self.store.manifest(namespace, schema, version).await?;
        Err(never_staged(namespace, schema, version))
    }
}

fn never_staged(namespace: &str, schema: &str, version: u64) -> Error {
    Error::NotFound(format!(
        "version {version} of schema {schema:?} in namespace {namespace:?} (it was stored by a publish that never staged it: interrupted, or superseded by a newer version; gc removes it)"
    ))
}

fn unnamed(namespace: &str, schema: &str) -> Error {
    Error::NotFound(format!(
        "schema {schema:?} in namespace {namespace:?} (a publish created it but never staged a version: it was interrupted; publishing it again finishes it)"
    ))
}
