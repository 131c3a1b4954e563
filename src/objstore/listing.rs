//! Keyset pages of namespaces and schemas, in ID order.

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;

use super::namespaces::*;
use super::{FETCH_CONCURRENCY, ObjStore, keys};
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::{DEFAULT_PAGE, MAX_PAGE};

pub(super) fn page_limit(limit: usize) -> usize {
    match limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

impl ObjStore {
    /// IDs of the objects directly in `dir`, greater than `after`, in order.
    pub(super) async fn list_ids(
        &self,
        dir: &Path,
        after: &str,
        limit: Option<usize>,
    ) -> Result<Vec<String>> {
        let os = &self.io().os;
        // Push the offset down to the store when it is a valid key segment.
        let stream = if !after.is_empty() && crate::ids::validate_schema_id(after).is_ok() {
            os.list_with_offset(Some(dir), &dir.clone().join(after))
        } else {
            os.list(Some(dir))
        };
        let depth = dir.parts().count() + 1;
        let mut ids = stream.map_err(Error::Storage).try_filter_map(|meta| {
            let parts: Vec<_> = meta.location.parts().collect();
            futures::future::ready(Ok((parts.len() == depth)
                .then(|| parts[depth - 1].as_ref().to_string())
                .filter(|id| id.as_str() > after)))
        });
        let mut out = Vec::new();
        let ordered = self.inner.kind.lists_in_order();
        while let Some(id) = ids.try_next().await? {
            out.push(id);
            if ordered && limit.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        out.sort();
        if let Some(l) = limit {
            out.truncate(l);
        }
        Ok(out)
    }

    pub(super) async fn namespace_page(
        &self,
        after: &str,
        limit: Option<usize>,
    ) -> Result<Vec<Namespace>> {
        let ids = self.list_ids(&keys::namespaces_dir(), after, limit).await?;
        futures::stream::iter(ids)
            .map(|id| async move {
                let r = self.require_namespace(&id).await?;
                Ok(Namespace {
                    id: r.namespace_id,
                    created_at: r.created_at,
                    metadata: r.metadata,
                    created_by: r.created_by,
                })
            })
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await
    }

    pub(super) async fn schema_page(
        &self,
        ns: &str,
        after: &str,
        limit: Option<usize>,
    ) -> Result<Vec<Schema>> {
        self.require_namespace(ns).await?;
        let ids = self.list_ids(&keys::schemas_dir(ns), after, limit).await?;
        let state = self.inner.log.latest(ns).await?;
        futures::stream::iter(ids)
            .map(|id| {
                let state = state.clone();
                async move {
                    let r = self.require_schema(ns, &id).await?;
                    Ok(to_schema(r, &state))
                }
            })
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await
    }

    pub async fn list_namespaces(&self) -> Result<Vec<Namespace>> {
        self.namespace_page("", None).await
    }

    pub async fn list_namespaces_page(&self, after: &str, limit: usize) -> Result<Vec<Namespace>> {
        self.namespace_page(after, Some(page_limit(limit))).await
    }

    pub async fn list_schemas(&self, namespace_id: &str) -> Result<Vec<Schema>> {
        self.schema_page(namespace_id, "", None).await
    }

    pub async fn list_schemas_page(
        &self,
        namespace_id: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Schema>> {
        self.schema_page(namespace_id, after, Some(page_limit(limit)))
            .await
    }
}
