//! Promote (compatibility-checked, all-or-nothing), discard and rollback.

use std::collections::HashMap;

use bytes::Bytes;
use prost_reflect::DescriptorPool;

use super::{CompatScope, Promoted, Registry, RolledBack, policy_of, scope_of};
use crate::compat::{self, SchemaViolation};
use crate::error::{Error, Result};
use crate::model::PromotedSchema;
use crate::objstore::log::NsPointers;
use crate::objstore::protocol::Plan;
use crate::objstore::{Mutation, NsAttempt, NsState};
use crate::store::StageChange;

/// A version's descriptors as the compatibility checks read them: a pool
/// without source info (a dense file's locations cost more memory than the
/// rest of its pool), and the set it came from, source info included,
/// where the locations of what is reported are looked up.
pub(super) struct Checkable {
    pool: DescriptorPool,
    set: Bytes,
}

impl Checkable {
    /// `what` names the set in errors.
    pub(super) fn new(what: &str, set: Bytes) -> Result<Checkable> {
        let pool =
            super::compile::stored_pool(what, super::compile::set_without_source_info(&set))?;
        Ok(Checkable { pool, set })
    }
}

impl Registry {
    async fn checkable(&self, namespace: &str, schema: &str, version: u64) -> Result<Checkable> {
        let compiled = self
            .store
            .get_version(namespace, schema, version)
            .await?
            .compiled;
        Checkable::new(
            &format!("descriptor of {namespace}/{schema} version {version}"),
            compiled,
        )
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
        self.violations(namespace, schema, old, new, policy, &mut Checked::new())
            .await
    }

    /// The violations of replacing version `old` of `schema` by `new`.
    pub(super) async fn violations_against(
        &self,
        namespace: &str,
        schema: &str,
        old: u64,
        new: &Checkable,
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
        let old_pool = self.checkable(namespace, schema, old).await?.pool;
        Ok(
            compat::check_located(policy, &old_pool, &new.pool, &files, Some(&new.set))
                .into_iter()
                .map(|violation| SchemaViolation {
                    schema_id: schema.to_string(),
                    against_version: Some(old),
                    violation,
                })
                .collect(),
        )
    }

    /// The versions a new version (`new`, when it has a number) of
    /// `schema` is checked against on `state`: its current version, and
    /// under scope `all` every version that was ever current; none when
    /// `new` is the current version (making it current changes nothing).
    /// Ascending.
    pub(super) async fn earlier_versions(
        &self,
        namespace: &str,
        state: &NsState,
        schema: &str,
        new: Option<u64>,
    ) -> Result<Vec<u64>> {
        let Some(current) = state.pointers(schema).current else {
            return Ok(Vec::new());
        };
        if new == Some(current) {
            return Ok(Vec::new());
        }
        let mut out = vec![current];
        if scope_of(&state.snapshot.config)? == CompatScope::All {
            let published = self.store.published_upto(namespace, state.seq).await?;
            out.extend(published.ever_current(schema));
        }
        out.sort_unstable();
        out.dedup();
        out.retain(|&v| Some(v) != new);
        Ok(out)
    }

    /// The versions promote checks `schema`'s staged version against on
    /// `state`: [`Self::earlier_versions`], older than current or not,
    /// except for a version a forced rollback staged (the force is the
    /// decision to skip the check). None when nothing is staged.
    pub(super) async fn promote_checks(
        &self,
        namespace: &str,
        state: &NsState,
        schema: &str,
    ) -> Result<Vec<u64>> {
        let p = state.pointers(schema);
        match p.staged {
            Some(staged) if !p.staged_forced => {
                self.earlier_versions(namespace, state, schema, Some(staged))
                    .await
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Makes every staged version current, after checking each against its
    /// current version (every version ever current, under scope `all`)
    /// under the namespace's policy ([`Self::promote_checks`]). Any
    /// violation refuses the whole promote. A staged version older than
    /// current (a rollback) is checked too; one a forced rollback staged,
    /// or the current version staged again, is not. The check runs inside
    /// the commit loop, on the state the promote lands on; after a lost
    /// race only the pairs not checked yet (a newly staged schema, a
    /// changed policy) are checked.
    pub async fn promote(&self, namespace: &str, dry_run: bool) -> Result<Promoted> {
        let mut checked = Checked::new();
        if dry_run {
            let state = self.store.namespace_state(namespace).await?;
            let mut planned = self.check_promote(namespace, &state, &mut checked).await?;
            planned.dry_run = true;
            return Ok(planned);
        }
        let mut planned = Promoted::default();
        let plan = PromotePlan {
            registry: self,
            namespace,
            checked,
            planned: &mut planned,
        };
        if let Some(c) = self.store.commit(namespace, plan).await? {
            planned.promoted = c.promotion().promoted;
        }
        Ok(planned)
    }

    /// What promoting `state` would do; `Incompatible` on any violation.
    async fn check_promote(
        &self,
        namespace: &str,
        state: &NsState,
        checked: &mut Checked,
    ) -> Result<Promoted> {
        let policy = policy_of(&state.snapshot.config)?;
        let mut planned = Promoted::default();
        let mut violations = Vec::new();
        for (schema, p) in state.staged_schemas() {
            let Some(staged) = p.staged else { continue };
            match p.current {
                Some(current) if staged == current => planned.unchanged.push(schema.clone()),
                Some(current) if staged < current => planned.rollbacks.push(schema.clone()),
                _ => {}
            }
            if p.staged_forced && p.current != Some(staged) {
                planned.forced.push(schema.clone());
            }
            for old in self.promote_checks(namespace, state, schema).await? {
                violations.extend(
                    self.violations(namespace, schema, old, staged, policy, checked)
                        .await?,
                );
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
        Ok(planned)
    }

    /// The violations of moving `schema` from `old` to `new` under
    /// `policy`, remembered in `checked`: versions are immutable, so a pair
    /// checked under one policy needs no second check on a retry.
    pub(super) async fn violations(
        &self,
        namespace: &str,
        schema: &str,
        old: u64,
        new: u64,
        policy: compat::Policy,
        checked: &mut Checked,
    ) -> Result<Vec<SchemaViolation>> {
        let key = (schema.to_string(), old, new, policy);
        if let Some(v) = checked.get(&key) {
            return Ok(v.clone());
        }
        let v = if policy == compat::Policy::None || old == new {
            Vec::new()
        } else {
            let new = self.checkable(namespace, schema, new).await?;
            self.violations_against(namespace, schema, old, &new, policy)
                .await?
        };
        checked.insert(key, v.clone());
        Ok(v)
    }

    /// Drops every staged version of the namespace. Returns whether anything
    /// was staged.
    pub async fn discard(&self, namespace: &str) -> Result<bool> {
        Ok(self.store.discard_staging(namespace).await?.is_some())
    }

    /// Stages an earlier version of a schema, checked as promote would
    /// check it unless `force` (inside the commit loop, on the state the
    /// rollback lands on); a forced one is recorded as such, and promote
    /// makes it current unchecked. With `promote`, promotes it (with
    /// whatever else is staged) right away. A version that is already the
    /// proposed one (staged, else current) commits nothing, unless forced
    /// while staged unforced (the force is recorded).
    pub async fn rollback(
        &self,
        namespace: &str,
        schema: &str,
        version: u64,
        force: bool,
        promote: bool,
    ) -> Result<RolledBack> {
        let change = [StageChange {
            schema_id: schema.to_string(),
            version: Some(version),
        }];
        // Only versions the log once staged: one it never named was left by
        // an interrupted or superseded publish, and gc may remove it.
        self.require_published(namespace, schema, version).await?;
        let plan = RollbackPlan {
            registry: self,
            namespace,
            change,
            force,
            checked: Checked::new(),
        };
        let staged = self.store.commit(namespace, plan).await?.is_some();
        let promoted = if promote {
            Some(self.promote(namespace, false).await?)
        } else {
            None
        };
        Ok(RolledBack { staged, promoted })
    }
}

/// Compatibility results by (schema, old, new, policy).
pub(super) type Checked = HashMap<(String, u64, u64, compat::Policy), Vec<SchemaViolation>>;

/// A promote, checked on the state it lands on.
struct PromotePlan<'a> {
    registry: &'a Registry,
    namespace: &'a str,
    checked: Checked,
    planned: &'a mut Promoted,
}

impl Plan<NsPointers, Mutation> for PromotePlan<'_> {
    async fn plan(&mut self, attempt: NsAttempt) -> Result<Option<Mutation>> {
        *self.planned = self
            .registry
            .check_promote(self.namespace, &attempt.state, &mut self.checked)
            .await?;
        Ok(Mutation::promote(&attempt.state))
    }
}

/// A rollback, checked against the current version it lands on.
struct RollbackPlan<'a> {
    registry: &'a Registry,
    namespace: &'a str,
    change: [StageChange; 1],
    force: bool,
    checked: Checked,
}

impl Plan<NsPointers, Mutation> for RollbackPlan<'_> {
    async fn plan(&mut self, attempt: NsAttempt) -> Result<Option<Mutation>> {
        let state = &attempt.state;
        let StageChange { schema_id, version } = &self.change[0];
        let version = version.expect("a rollback stages a version");
        if state.pointers(schema_id).deleted {
            return Err(super::deleted_schema(self.namespace, schema_id));
        }
        let p = state.pointers(schema_id);
        // Forcing the version staged unforced records the force (unless it
        // is current: its promote checks nothing anyway); otherwise a
        // version already proposed leaves nothing to do.
        let records_force = self.force
            && p.staged == Some(version)
            && !p.staged_forced
            && p.current != Some(version);
        if state.proposed(schema_id) == Some(version) && !records_force {
            return Ok(None);
        }
        // Not skipped by a force, which is about compatibility: a tree
        // whose imports dangle compiles as no one.
        if state.proposed(schema_id) != Some(version) {
            self.registry
                .check_rollback_imports(self.namespace, state.clone(), schema_id, version)
                .await?;
        }
        if !self.force {
            let policy = policy_of(&state.snapshot.config)?;
            let mut v = Vec::new();
            for old in self
                .registry
                .earlier_versions(self.namespace, state, schema_id, Some(version))
                .await?
            {
                v.extend(
                    self.registry
                        .violations(
                            self.namespace,
                            schema_id,
                            old,
                            version,
                            policy,
                            &mut self.checked,
                        )
                        .await?,
                );
            }
            if !v.is_empty() {
                return Err(Error::Incompatible(v));
            }
        }
        let stage = Mutation::stage(state, &self.change);
        Ok(Some(if self.force { stage.forced() } else { stage }))
    }
}
