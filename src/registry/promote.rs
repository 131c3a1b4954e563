//! Promote (compatibility-checked, all-or-nothing), discard and rollback.

use prost_reflect::DescriptorPool;
use serde::Serialize;

use super::{Promoted, Registry, policy_of, retrying};
use crate::compat::{self, Violation};
use crate::error::{Error, Result};
use crate::model::PromotedSchema;
use crate::store::StageChange;

/// A compatibility violation of one schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaViolation {
    pub schema_id: String,
    #[serde(flatten)]
    pub violation: Violation,
}

impl std::fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "schema {}: {}", self.schema_id, self.violation)
    }
}

impl Registry {
    async fn pool(&self, namespace: &str, schema: &str, version: u64) -> Result<DescriptorPool> {
        let compiled = self
            .store
            .get_version(namespace, schema, version)
            .await?
            .compiled;
        DescriptorPool::decode(compiled).map_err(|e| Error::Corrupt {
            key: format!("descriptor of {namespace}/{schema} version {version}"),
            reason: e.to_string(),
        })
    }

    /// The violations of moving `schema` from version `old` to `new` under
    /// the namespace's policy.
    pub async fn compatibility(
        &self,
        namespace: &str,
        schema: &str,
        old: u64,
        new: u64,
    ) -> Result<Vec<SchemaViolation>> {
        let policy = self.policy(namespace).await?;
        self.violations(namespace, schema, old, new, policy).await
    }

    async fn violations(
        &self,
        namespace: &str,
        schema: &str,
        old: u64,
        new: u64,
        policy: compat::Policy,
    ) -> Result<Vec<SchemaViolation>> {
        if policy == compat::Policy::None || old == new {
            return Ok(Vec::new());
        }
        let new_pool = self.pool(namespace, schema, new).await?;
        self.violations_against(namespace, schema, old, &new_pool, policy)
            .await
    }

    /// The violations of replacing version `old` of `schema` by `new`.
    pub(super) async fn violations_against(
        &self,
        namespace: &str,
        schema: &str,
        old: u64,
        new: &DescriptorPool,
        policy: compat::Policy,
    ) -> Result<Vec<SchemaViolation>> {
        if policy == compat::Policy::None {
            return Ok(Vec::new());
        }
        let files: Vec<String> = self
            .store
            .get_version_files(namespace, schema, old)
            .await?
            .into_iter()
            .map(|f| f.path)
            .collect();
        let old_pool = self.pool(namespace, schema, old).await?;
        Ok(compat::check(policy, &old_pool, new, &files)
            .into_iter()
            .map(|violation| SchemaViolation {
                schema_id: schema.to_string(),
                violation,
            })
            .collect())
    }

    /// Makes every staged version current, after checking each against its
    /// current version under the namespace's policy. Any violation refuses
    /// the whole promote. A staged version older than current is a rollback
    /// and is not checked. If the namespace moves between the check and the
    /// commit, the check runs again.
    pub async fn promote(&self, namespace: &str, dry_run: bool) -> Result<Promoted> {
        retrying(namespace, "promote", async || {
            self.try_promote(namespace, dry_run).await
        })
        .await
    }

    /// One check-and-commit; `Conflict` when the namespace moved meanwhile.
    async fn try_promote(&self, namespace: &str, dry_run: bool) -> Result<Promoted> {
        let state = self.store.namespace_state(namespace).await?;
        let policy = policy_of(&state.snapshot.config)?;
        let mut planned = Promoted {
            dry_run,
            ..Default::default()
        };
        let mut violations = Vec::new();
        for (schema, p) in state.staged_schemas() {
            let Some(staged) = p.staged else { continue };
            match p.current {
                Some(current) if staged < current => planned.rollbacks.push(schema.clone()),
                Some(current) => violations.extend(
                    self.violations(namespace, schema, current, staged, policy)
                        .await?,
                ),
                None => {}
            }
            planned.promoted.push(PromotedSchema {
                schema_id: schema.clone(),
                prior_version: p.current,
                current_version: staged,
            });
        }
        if !violations.is_empty() {
            return Err(Error::Incompatible(violations));
        }
        if dry_run || planned.promoted.is_empty() {
            return Ok(planned);
        }
        planned.promoted = self
            .store
            .promote(namespace, Some(state.seq))
            .await?
            .promoted;
        Ok(planned)
    }

    /// Drops every staged version of the namespace. Returns whether anything
    /// was staged.
    pub async fn discard(&self, namespace: &str) -> Result<bool> {
        Ok(self.store.discard_staging(namespace).await?.is_some())
    }

    /// Stages an earlier version of a schema, checked against current under
    /// the namespace's policy unless `force`. With `promote`, promotes it
    /// (with whatever else is staged) right away.
    pub async fn rollback(
        &self,
        namespace: &str,
        schema: &str,
        version: u64,
        force: bool,
        promote: bool,
    ) -> Result<Option<Promoted>> {
        // Only versions the log once staged: one it never named was left by
        // an interrupted or superseded publish, and gc may remove it.
        self.require_published(namespace, schema, version).await?;
        retrying(namespace, "rollback", async || {
            let state = self.store.namespace_state(namespace).await?;
            if !force && let Some(current) = state.pointers(schema).current {
                let policy = policy_of(&state.snapshot.config)?;
                let v = self
                    .violations(namespace, schema, current, version, policy)
                    .await?;
                if !v.is_empty() {
                    return Err(Error::Incompatible(v));
                }
            }
            let change = StageChange {
                schema_id: schema.to_string(),
                version: Some(version),
            };
            self.store
                .stage(namespace, &[change], Some(state.seq))
                .await
        })
        .await?;
        if promote {
            self.promote(namespace, false).await.map(Some)
        } else {
            Ok(None)
        }
    }
}
