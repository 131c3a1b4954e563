//! What readers are shown of a namespace (the CLI's `schema list` and
//! `schema info`, reads by version): only schemas and versions its log has
//! named. A publish writes its schema record and version before the commit
//! that stages them, so a publish that dies in between (or loses a commit
//! race and stages a newer version instead) leaves a record or a manifest
//! that no commit names. Those stay invisible here, a rerun of the publish
//! reuses or supersedes them, and gc removes the unnamed manifests.
//! [`crate::ObjStore`]'s own listings are the raw contract and show every
//! stored record.

use serde::Serialize;

use super::Registry;
use crate::error::{Error, Result};
use crate::model::Schema;
use crate::objstore::records::Pointers;

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
            .filter(|s| named(&state.pointers(&s.schema_id)))
            .collect())
    }

    /// A schema with its pointers and every version the log ever named.
    pub async fn schema_info(&self, namespace: &str, schema: &str) -> Result<SchemaInfo> {
        let s = self.store.get_schema(namespace, schema).await?;
        let state = self.store.namespace_state(namespace).await?;
        if !named(&state.pointers(schema)) {
            return Err(unnamed(namespace, schema));
        }
        let versions = self.store.published(namespace).await?.of(schema);
        Ok(SchemaInfo {
            schema: s,
            versions,
        })
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
