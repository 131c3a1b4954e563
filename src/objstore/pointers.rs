//! Pointer changes (stage, promote, discard, settings): each is one commit
//! to the namespace's log, so each is atomic.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt};

use super::log::{Committed, JsonLog, Mutation, NsAttempt, NsChange, NsPointers};
use super::protocol::Plan;
use super::records::{Descriptors, FORMAT_MOVES, Pointers};
use super::{FETCH_CONCURRENCY, ObjStore};
use crate::error::{Error, Result};
use crate::model::*;
use crate::store::StageChange;

impl ObjStore {
    pub(super) async fn check_stage_change(&self, ns: &str, c: &StageChange) -> Result<()> {
        match c.version {
            Some(v) => self.manifest(ns, &c.schema_id, v).await.map(|_| ()),
            None => self.require_schema(ns, &c.schema_id).await.map(|_| ()),
        }
    }

    /// Commits the mutation `plan` computes, inside the commit protocol's
    /// one retry loop: `plan` runs on the exact state the mutation will be
    /// applied to, and again on the new state after every lost race, so
    /// whatever it checks holds for the commit (see
    /// [`super::protocol::Protocol::commit`]). `Ok(None)` from `plan`
    /// commits nothing; an error from it ends the commit with nothing
    /// committed.
    pub async fn commit(
        &self,
        ns: &str,
        plan: impl Plan<NsPointers, Mutation>,
    ) -> Result<Option<Committed>> {
        self.require_namespace(ns).await?;
        self.commit_creating(ns, plan).await
    }

    /// [`Self::commit`] into a namespace that may not exist yet, for a
    /// `plan` that creates its record before it returns a change (so no
    /// entry is ever written for a namespace without one). A namespace
    /// without a record has an empty log: `plan` runs on the empty state.
    pub(crate) async fn commit_creating(
        &self,
        ns: &str,
        plan: impl Plan<NsPointers, Mutation>,
    ) -> Result<Option<Committed>> {
        let log = &self.inner.log;
        let stamped = Stamped {
            plan,
            codec: log.codec(),
            store: self,
            ns,
        };
        let committed = log.commit(ns, stamped).await?;
        if let Some(c) = &committed {
            self.pack_after(ns, c).await;
        }
        Ok(committed)
    }

    /// After a commit that made versions current (promote, undelete):
    /// writes the namespace's packed tree when enough files changed (see
    /// [`super::packs`]). Best effort: the commit is done whatever happens
    /// here, and readers do without a tree.
    async fn pack_after(&self, ns: &str, c: &Committed) {
        use super::records::Operation;
        if !matches!(
            c.entry.change.operation,
            Operation::Promote { .. } | Operation::Undelete { .. }
        ) || crate::registry::delete::is_deleted(&c.state.snapshot.config)
        {
            return;
        }
        let fresh: Vec<(String, u64)> = c
            .entry
            .change
            .changes
            .iter()
            .filter_map(|(s, p)| p.current.map(|v| (s.clone(), v)))
            .collect();
        let result = async {
            let mut files = 0;
            for (s, v) in &fresh {
                files += self.manifest(ns, s, *v).await?.files.len();
            }
            let picks: Vec<(String, u64)> = c
                .state
                .snapshot
                .schemas
                .iter()
                .filter_map(|(s, p)| p.current.map(|v| (s.clone(), v)))
                .collect();
            self.pack_current(ns, c.entry.seq, &picks, files).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(
                "commit {} of {ns} is done; its packed tree was not written: {e}",
                c.entry.seq
            );
        }
    }

    /// Stages `version` for a schema; 0 clears its staging.
    pub async fn set_staged(
        &self,
        namespace_id: &str,
        schema_id: &str,
        version: u64,
    ) -> Result<CommitInfo> {
        let change = StageChange {
            schema_id: schema_id.to_string(),
            version: (version != 0).then_some(version),
        };
        self.stage(namespace_id, &[change]).await
    }

    /// Checks staging changes before a commit: no schema twice, every
    /// version stored. Versions are immutable, so checking them once,
    /// before the commit loop, is as good as checking them on every retry.
    pub async fn check_stage(&self, namespace_id: &str, changes: &[StageChange]) -> Result<()> {
        self.require_namespace(namespace_id).await?;
        if changes.is_empty() {
            return Err(Error::InvalidInput("nothing to stage".into()));
        }
        let mut seen = BTreeSet::new();
        for c in changes {
            if !seen.insert(c.schema_id.as_str()) {
                return Err(Error::InvalidInput(format!(
                    "schema {:?} is staged twice in one commit",
                    c.schema_id
                )));
            }
        }
        let checks: Vec<_> = changes
            .iter()
            .map(|c| self.check_stage_change(namespace_id, c))
            .collect();
        futures::stream::iter(checks)
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Applies many staging changes in one commit (a whole tree is one
    /// commit, not thousands).
    pub async fn stage(&self, namespace_id: &str, changes: &[StageChange]) -> Result<CommitInfo> {
        self.check_stage(namespace_id, changes).await?;
        let committed = self
            .commit(namespace_id, |a: NsAttempt| async move {
                Ok(Some(Mutation::stage(&a.state, changes)))
            })
            .await?;
        Ok(committed.expect("staging always commits").info())
    }

    /// Makes every staged version of the namespace current, atomically.
    pub async fn promote(&self, namespace_id: &str) -> Result<Promotion> {
        let committed = self
            .commit(namespace_id, |a: NsAttempt| async move {
                Ok(Mutation::promote(&a.state))
            })
            .await?;
        Ok(match committed {
            None => Promotion::default(),
            Some(c) => c.promotion(),
        })
    }

    /// Clears every staged pointer of the namespace, atomically. Returns the
    /// commit, or None when nothing was staged.
    pub async fn discard_staging(&self, namespace_id: &str) -> Result<Option<CommitInfo>> {
        let committed = self
            .commit(namespace_id, |a: NsAttempt| async move {
                Ok(Mutation::discard(&a.state))
            })
            .await?;
        Ok(committed.map(|c| c.info()))
    }

    /// Sets a namespace setting (e.g. its compatibility policy) in one commit.
    pub async fn set_config(
        &self,
        namespace_id: &str,
        key: &str,
        value: &str,
    ) -> Result<CommitInfo> {
        if key.is_empty() {
            return Err(Error::InvalidInput("empty setting name".into()));
        }
        let committed = self
            .commit(namespace_id, |_: NsAttempt| async move {
                Ok(Some(Mutation::set_config(key, value)))
            })
            .await?;
        Ok(committed.expect("setting always commits").info())
    }

    /// The namespace's settings as of its latest commit.
    pub async fn get_config(&self, namespace_id: &str) -> Result<BTreeMap<String, String>> {
        Ok(self
            .namespace_state(namespace_id)
            .await?
            .snapshot
            .config
            .clone())
    }
}

/// A plan of mutations as a plan of log changes: each stamped with the
/// writer and the store's format, and (format 3) with the descriptors of
/// the versions it points to.
struct Stamped<'a, P> {
    plan: P,
    codec: &'a JsonLog,
    store: &'a ObjStore,
    ns: &'a str,
}

impl<P: Plan<NsPointers, Mutation>> Plan<NsPointers> for Stamped<'_, P> {
    async fn plan(&mut self, attempt: NsAttempt) -> Result<Option<NsChange>> {
        let state = attempt.state.clone();
        let Some(m) = self.plan.plan(attempt).await? else {
            return Ok(None);
        };
        let mut change = self.codec.stamp(m);
        if self.codec.format() >= FORMAT_MOVES {
            change.descriptors = self.store.descriptors_of(self.ns, &change.changes).await?;
            change.sets = self
                .store
                .next_sets(self.ns, &state, &change, false)
                .await?;
        }
        Ok(Some(change))
    }
}

impl ObjStore {
    /// The descriptor hashes of the versions `changes` points to, from
    /// their manifests (immutable, so normally cached by the checks
    /// before the commit).
    pub(super) async fn descriptors_of(
        &self,
        ns: &str,
        changes: &BTreeMap<String, Pointers>,
    ) -> Result<BTreeMap<String, Descriptors>> {
        let sha = |schema: &str, v: Option<u64>| {
            let schema = schema.to_string();
            async move {
                Ok::<_, Error>(match v {
                    Some(v) => Some(self.manifest(ns, &schema, v).await?.descriptor.sha256),
                    None => None,
                })
            }
        };
        let lookups: Vec<_> = changes
            .iter()
            .map(|(schema, p)| {
                let (current, staged) = (sha(schema, p.current), sha(schema, p.staged));
                async move {
                    let (current, staged) = futures::try_join!(current, staged)?;
                    Ok::<_, Error>((schema.clone(), Descriptors { current, staged }))
                }
            })
            .collect();
        futures::stream::iter(lookups)
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_collect()
            .await
    }
}
