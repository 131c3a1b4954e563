//! Pointer changes (stage, promote, discard, settings): each is one commit
//! to the namespace's log, so each is atomic.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt};

use super::log::{Mutation, NsState};
use super::records::*;
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

    pub(super) async fn commit(
        &self,
        ns: &str,
        expect_seq: Option<u64>,
        plan: impl FnMut(&NsState) -> Result<Option<Mutation>>,
    ) -> Result<Option<super::log::Committed>> {
        self.require_namespace(ns).await?;
        self.inner.log.commit(ns, expect_seq, plan).await
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
        self.stage(namespace_id, &[change], None).await
    }

    /// Applies many staging changes in one commit (a whole tree is one
    /// commit, not thousands). With `expect_seq`, commits only on top of that
    /// log position and fails with `Conflict` otherwise.
    pub async fn stage(
        &self,
        namespace_id: &str,
        changes: &[StageChange],
        expect_seq: Option<u64>,
    ) -> Result<CommitInfo> {
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
        // Versions are immutable: checking them once, before the commit
        // loop, is as good as checking them on every retry.
        let checks: Vec<_> = changes
            .iter()
            .map(|c| self.check_stage_change(namespace_id, c))
            .collect();
        futures::stream::iter(checks)
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        let committed = self
            .commit(namespace_id, expect_seq, |state| {
                let mut m = Mutation {
                    operation: Operation::Stage {
                        versions: changes
                            .iter()
                            .map(|c| StagedVersion {
                                schema_id: c.schema_id.clone(),
                                version: c.version,
                            })
                            .collect(),
                    },
                    changes: BTreeMap::new(),
                    config: BTreeMap::new(),
                };
                for c in changes {
                    let mut p = state.pointers(&c.schema_id);
                    p.staged = c.version;
                    p.latest = p.latest.max(c.version.unwrap_or(0));
                    m.changes.insert(c.schema_id.clone(), p);
                }
                Ok(Some(m))
            })
            .await?;
        Ok(committed.expect("staging always commits").info)
    }

    /// Makes every staged version of the namespace current, atomically.
    pub async fn promote(&self, namespace_id: &str, expect_seq: Option<u64>) -> Result<Promotion> {
        let committed = self
            .commit(namespace_id, expect_seq, |state| {
                let mut changes = BTreeMap::new();
                let mut promoted = Vec::new();
                for (schema, p) in state.staged_schemas() {
                    let Some(staged) = p.staged else { continue };
                    promoted.push(PromotedSchema {
                        schema_id: schema.clone(),
                        prior_version: p.current,
                        current_version: staged,
                    });
                    changes.insert(
                        schema.clone(),
                        Pointers {
                            current: Some(staged),
                            staged: None,
                            latest: p.latest,
                        },
                    );
                }
                Ok((!promoted.is_empty()).then(|| Mutation {
                    operation: Operation::Promote { promoted },
                    changes,
                    config: BTreeMap::new(),
                }))
            })
            .await?;
        Ok(match committed {
            None => Promotion::default(),
            Some(c) => {
                let Operation::Promote { promoted } = c.entry.operation else {
                    unreachable!("a promote commits a promote entry")
                };
                Promotion {
                    promoted,
                    commit: Some(c.info),
                }
            }
        })
    }

    /// Clears every staged pointer of the namespace, atomically. Returns the
    /// commit, or None when nothing was staged.
    pub async fn discard_staging(&self, namespace_id: &str) -> Result<Option<CommitInfo>> {
        let committed = self
            .commit(namespace_id, None, |state| {
                let changes: BTreeMap<String, Pointers> = state
                    .staged_schemas()
                    .map(|(s, p)| (s.clone(), Pointers { staged: None, ..p }))
                    .collect();
                Ok((!changes.is_empty()).then(|| Mutation {
                    operation: Operation::Discard {
                        schemas: changes.keys().cloned().collect(),
                    },
                    changes,
                    config: BTreeMap::new(),
                }))
            })
            .await?;
        Ok(committed.map(|c| c.info))
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
            .commit(namespace_id, None, |_| {
                Ok(Some(Mutation {
                    operation: Operation::SetConfig {
                        key: key.to_string(),
                        value: value.to_string(),
                    },
                    changes: BTreeMap::new(),
                    config: BTreeMap::from([(key.to_string(), value.to_string())]),
                }))
            })
            .await?;
        Ok(committed.expect("setting always commits").info)
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
