//! `diff`: what changed between two versions of a schema, as the log
//! names them (a number, or whatever is current or staged now).

use std::str::FromStr;

use serde::Serialize;

use super::Registry;
use super::compile::stored_pool;
use crate::diff::{self, DefinitionDiff, FileDiff};
use crate::error::{Error, Result};

/// A version as a user names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionRef {
    Number(u64),
    Current,
    Staged,
}

impl FromStr for VersionRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "current" => Ok(VersionRef::Current),
            "staged" => Ok(VersionRef::Staged),
            n => n.parse().map(VersionRef::Number).map_err(|_| {
                Error::InvalidInput(format!(
                    "{n:?} is not a version: give a version number, `current` or `staged`"
                ))
            }),
        }
    }
}

/// The differences between versions `from` and `to` of a schema.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaDiff {
    pub namespace_id: String,
    pub schema_id: String,
    pub from: u64,
    pub to: u64,
    pub files: Vec<FileDiff>,
    pub definitions: Vec<DefinitionDiff>,
}

impl Registry {
    /// Resolves `v` to a version number the log has named.
    pub async fn resolve_version(
        &self,
        namespace: &str,
        schema: &str,
        v: VersionRef,
    ) -> Result<u64> {
        let pointer = |which: &str, found: Option<u64>| {
            found.ok_or_else(|| {
                Error::NotFound(format!(
                    "a {which} version of schema {schema:?} in namespace {namespace:?}"
                ))
            })
        };
        match v {
            VersionRef::Number(n) => self.readable_version(namespace, schema, Some(n)).await,
            VersionRef::Current => {
                let s = self.store.get_schema(namespace, schema).await?;
                pointer("current", s.current_version)
            }
            VersionRef::Staged => {
                let s = self.store.get_schema(namespace, schema).await?;
                pointer("staged", s.staged_version)
            }
        }
    }

    /// What changed from `from` to `to`: the schema's own files and the
    /// definitions they declare.
    pub async fn diff(
        &self,
        namespace: &str,
        schema: &str,
        from: VersionRef,
        to: VersionRef,
    ) -> Result<SchemaDiff> {
        let from = self.resolve_version(namespace, schema, from).await?;
        let to = self.resolve_version(namespace, schema, to).await?;
        let (a, b) = futures::try_join!(
            self.version_side(namespace, schema, from),
            self.version_side(namespace, schema, to)
        )?;
        Ok(SchemaDiff {
            namespace_id: namespace.to_string(),
            schema_id: schema.to_string(),
            from,
            to,
            files: diff::files(&a.borrowed(), &b.borrowed()),
            definitions: diff::definitions(&a.pool, &a.paths(), &b.pool, &b.paths()),
        })
    }

    async fn version_side(&self, namespace: &str, schema: &str, version: u64) -> Result<Side> {
        let sources = self
            .store
            .get_version_sources(namespace, schema, version)
            .await?
            .into_iter()
            .map(|(f, b)| (f.path, b))
            .collect();
        let compiled = self
            .store
            .get_version(namespace, schema, version)
            .await?
            .compiled;
        let what = format!("descriptor of version {version} of schema {schema:?}");
        Ok(Side {
            sources,
            pool: stored_pool(&what, compiled)?,
        })
    }
}

struct Side {
    sources: Vec<(String, bytes::Bytes)>,
    pool: prost_reflect::DescriptorPool,
}

impl Side {
    fn borrowed(&self) -> Vec<(&str, &[u8])> {
        self.sources
            .iter()
            .map(|(p, b)| (p.as_str(), b.as_ref()))
            .collect()
    }

    fn paths(&self) -> Vec<String> {
        self.sources.iter().map(|(p, _)| p.clone()).collect()
    }
}
