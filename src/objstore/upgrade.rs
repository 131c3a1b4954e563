//! `protoshelf upgrade`: moves a format-2 store to format 3 in place
//! (docs/storage-format.md, "Upgrading a store").
//!
//! Per namespace, one ordinary commit (create-if-absent, so it is safe
//! beside running writers) re-states the pointers of every schema the
//! reader contract does not see yet, with their move markers, descriptor
//! hashes and freshly built namespace sets. Then the format marker is
//! rewritten to name format 3, so format-2 builds refuse the store from
//! their next start. Each step is checked again on a rerun, so a crash
//! anywhere leaves a store a rerun finishes, and a rerun with nothing left
//! to do writes nothing.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

use super::log::{Mutation, NsAttempt};
use super::records::{FORMAT_DIR_CLAIMS, FORMAT_MOVES, FormatMarker, Operation, to_json};
use super::{ObjStore, keys};
use crate::error::{Error, Result};

/// The setting the upgrade commit records (shown by `protoshelf log`).
pub const UPGRADE_SETTING: &str = "storage_format";

/// What `upgrade` did, or would do (`dry_run`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UpgradeReport {
    pub dry_run: bool,
    /// The marker's format before.
    pub from_format: u32,
    pub to_format: u32,
    /// Namespaces that got (or would get) an upgrade commit, with the
    /// schemas it re-states.
    pub namespaces: Vec<NamespaceUpgrade>,
    /// Whether the marker was (or would be) rewritten.
    pub marker_rewritten: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamespaceUpgrade {
    pub namespace: String,
    /// Schemas whose newest move marker does not name their pointers now.
    pub schemas: Vec<String>,
    /// The namespace has no namespace sets (or they predate a commit of a
    /// format-2 build).
    pub sets: bool,
    /// The upgrade commit (none in a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

impl UpgradeReport {
    /// Nothing was (or would be) written.
    pub fn nothing(&self) -> bool {
        self.namespaces.is_empty() && !self.marker_rewritten
    }
}

impl ObjStore {
    /// Moves the store to format 3 (see the module docs). `dry_run`
    /// reports what would be written and writes nothing.
    pub async fn upgrade(&self, dry_run: bool) -> Result<UpgradeReport> {
        let marker = self.format_marker().clone();
        if marker.format_version < FORMAT_DIR_CLAIMS {
            return Err(Error::Unsupported(format!(
                "the store is format {} (path claims); `protoshelf upgrade` moves format-2 stores to format {FORMAT_MOVES} only",
                marker.format_version
            )));
        }
        let mut report = UpgradeReport {
            dry_run,
            from_format: marker.format_version,
            to_format: FORMAT_MOVES.max(marker.format_version),
            ..Default::default()
        };
        if !dry_run {
            // This handle's commits are format 3 from here on.
            self.inner
                .log
                .codec()
                .format_version
                .store(FORMAT_MOVES, Relaxed);
        }
        let namespaces = self.list_ids(&keys::namespaces_dir(), "", None).await?;
        for ns in namespaces {
            if let Some(mut up) = self.namespace_upgrade(&ns).await? {
                if !dry_run {
                    up.seq = Some(self.commit_upgrade(&ns, &up).await?);
                }
                report.namespaces.push(up);
            }
        }
        if marker.format_version < FORMAT_MOVES {
            report.marker_rewritten = true;
            if !dry_run {
                // The one write that is not a create: format-2 builds read
                // nothing else that could make them refuse the store.
                let upgraded = FormatMarker {
                    format_version: FORMAT_MOVES,
                    reader_contract: Some(super::records::READER_CONTRACT_VERSION),
                    ..marker
                };
                self.io()
                    .put_overwrite(&keys::marker(), to_json(&upgraded))
                    .await?;
            }
        }
        Ok(report)
    }

    /// What namespace `ns` lacks for the reader contract: schemas whose
    /// newest move marker does not name their pointers now (every schema of
    /// a format-2 namespace; in a format-3 one, those a format-2 build
    /// committed after the upgrade), and its namespace sets. `None`: nothing.
    async fn namespace_upgrade(&self, ns: &str) -> Result<Option<NamespaceUpgrade>> {
        let state = self.namespace_state(ns).await?;
        if state.seq == 0 {
            return Ok(None); // no commit: nothing for a reader to find
        }
        let mut schemas = Vec::new();
        for (schema, pointers) in state.snapshot.schemas.iter() {
            let head = self.newest_marked(ns, &keys::moves_dir(ns, schema)).await?;
            let seen = head.and_then(|e| e.change.changes.get(schema).copied());
            if seen != Some(*pointers) {
                schemas.push(schema.clone());
            }
        }
        // Sets named by the contract: those of the newest set marker, and
        // right only when no pointer moved without one since.
        let marked = self.newest_marked(ns, &keys::set_moves_dir(ns)).await?;
        let sets = !state.snapshot.schemas.is_empty()
            && (!schemas.is_empty()
                || marked.and_then(|e| e.change.sets) != state.snapshot.sets
                || state.snapshot.sets.is_none());
        if schemas.is_empty() && !sets {
            return Ok(None);
        }
        Ok(Some(NamespaceUpgrade {
            namespace: ns.to_string(),
            schemas,
            sets,
            seq: None,
        }))
    }

    /// The upgrade commit: the schemas' pointers as they are on the state
    /// it lands on (re-stated, so they get move markers and descriptor
    /// hashes), and namespace sets built from every schema.
    async fn commit_upgrade(&self, ns: &str, up: &NamespaceUpgrade) -> Result<u64> {
        let log = &self.inner.log;
        let committed = log
            .commit(ns, |a: NsAttempt| async move {
                let changes: BTreeMap<_, _> = up
                    .schemas
                    .iter()
                    .map(|s| (s.clone(), a.state.pointers(s)))
                    .collect();
                let m = Mutation {
                    operation: Operation::SetConfig {
                        key: UPGRADE_SETTING.into(),
                        value: FORMAT_MOVES.to_string(),
                    },
                    changes,
                    config: BTreeMap::from([(UPGRADE_SETTING.into(), FORMAT_MOVES.to_string())]),
                };
                let mut change = log.codec().stamp(m);
                change.descriptors = self.descriptors_of(ns, &change.changes).await?;
                change.sets = self.next_sets(ns, &a.state, &change, true).await?;
                Ok(Some(change))
            })
            .await?;
        Ok(committed.expect("an upgrade always commits").entry.seq)
    }
}
