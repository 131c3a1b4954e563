//! Loading a namespace's tree with its compiled descriptors: stored
//! descriptors are reused when they were made by this compiler version, and
//! recompiled from the stored sources (at the exact dependency versions the
//! version recorded) when they were not.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::Registry;
use super::compile::{COMPILER_VERSION, Origin, Sources};
use super::view::{Owner, Tree};
use crate::error::{Error, Result};
use crate::model::CurrentSchema;

/// Objects of one recompile fetched at once.
const FETCH_CONCURRENCY: usize = 16;

impl Registry {
    /// Every schema of the namespace's current (or proposed) tree with its
    /// descriptor set, recompiled where the stored one came from another
    /// compiler version.
    pub async fn load_tree(&self, namespace: &str, tree: Tree) -> Result<Vec<CurrentSchema>> {
        let loaded = match tree {
            Tree::Current => self.store.load_namespace_current(namespace).await?,
            Tree::Proposed => self.store.load_namespace_proposed(namespace).await?,
        };
        futures::stream::iter(loaded)
            .map(|mut schema| async move {
                if schema.compiler_version != COMPILER_VERSION {
                    schema.compiled = self
                        .recompile(namespace, &schema.schema_id, schema.version)
                        .await?;
                    schema.compiler_version = COMPILER_VERSION.to_string();
                }
                Ok::<_, Error>(schema)
            })
            .buffered(8)
            .try_collect()
            .await
    }

    /// Compiles a stored version again from its sources and recorded deps
    /// (the whole closure, so every file is fetched at once, a few at a
    /// time, never one import level after another).
    pub async fn recompile(&self, namespace: &str, schema: &str, version: u64) -> Result<Bytes> {
        let store = &self.store;
        let files = store.get_version_files(namespace, schema, version).await?;
        let own: Vec<(usize, String, std::sync::Arc<str>)> = futures::stream::iter(&files)
            .map(|f| async move {
                let text = self.blob_text(namespace, &f.sha256).await?;
                Ok::<_, Error>((0, f.path.clone(), text.into()))
            })
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        let mut sources = Sources::new(own)?;
        let deps = store.get_version_deps(namespace, schema, version).await?;
        let fetched: Vec<(String, String, Owner)> = futures::stream::iter(deps)
            .map(|dep| async move {
                let dep_files = store
                    .get_version_files(&dep.namespace_id, &dep.schema_id, dep.version)
                    .await?;
                let Some(f) = dep_files.into_iter().find(|f| f.path == dep.path) else {
                    return Err(Error::Corrupt {
                        key: format!("ns/{namespace}/versions/{schema}/{version:020}.json"),
                        reason: format!(
                            "dependency {} is not in {} version {}",
                            dep.path, dep.schema_id, dep.version
                        ),
                    });
                };
                let text = self.blob_text(&dep.namespace_id, &f.sha256).await?;
                let owner = Owner {
                    schema_id: dep.schema_id,
                    version: dep.version,
                    sha256: f.sha256,
                };
                Ok((dep.path, text, owner))
            })
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        for (path, text, owner) in fetched {
            sources.add(&path, &text, Origin::Namespace(owner))?;
        }
        let roots: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        let compiled = sources
            .compile(roots.clone(), &[schema], self.limits.compile_timeout, None)
            .await?;
        Ok(compiled.encode_set(&compiled.closure(&roots)))
    }

    async fn blob_text(&self, namespace: &str, sha: &str) -> Result<String> {
        let blob = self.store.get_blob(namespace, sha).await?;
        String::from_utf8(blob.source.to_vec()).map_err(|_| Error::Corrupt {
            key: format!("ns/{namespace}/blobs/{sha}"),
            reason: "not UTF-8".into(),
        })
    }
}
