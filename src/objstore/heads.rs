//! The reader contract's current-descriptor path (docs/storage-format.md,
//! "The reader contract"): a schema's pointers from its newest move marker
//! and the log entry it names, whatever the namespace's size or history.
//!
//! Every format-3 commit attempt creates `moves/<schema>/<rev seq>-<commit
//! id>` for each schema it changes *before* it creates its log entry, so
//! every commit that moved a schema has a marker, and the newest real one
//! is the schema's state now. Markers are never trusted alone: a marker
//! counts only when log entry `seq` exists and holds its commit ID (a
//! writer that lost the race, or died before its entry, left it).

use bytes::Bytes;
use futures::StreamExt;

use super::records::{Descriptors, FORMAT_MOVES, Pointers};
use super::{BackendKind, ObjStore, keys};
use crate::error::{Error, Result};
use crate::ids::{validate_namespace_id, validate_schema_id};

/// How many of the newest marked commits a reader tries before it falls
/// back to the log walk (each try past the first is a marker left by an
/// attempt that lost or is in flight).
const TRIES: usize = 4;

/// A schema's pointers as of the commit that last changed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaHead {
    /// The log entry that last changed the schema.
    pub seq: u64,
    pub pointers: Pointers,
    /// The descriptors of `pointers` (empty in entries of format 2).
    pub descriptors: Descriptors,
}

impl ObjStore {
    /// The schema's pointers by the reader contract: one LIST of its move
    /// markers and one GET of the entry the newest names. `None` when the
    /// store has no markers for it (format 2, a schema never committed, an
    /// unknown namespace): callers then read the log.
    ///
    /// A handle that has already read the namespace's log answers from it
    /// instead (it never goes back below what it has seen).
    pub async fn schema_head(&self, ns: &str, schema: &str) -> Result<Option<SchemaHead>> {
        validate_namespace_id(ns)?;
        validate_schema_id(schema)?;
        if self.inner.marker.format_version < FORMAT_MOVES
            || self.cached_namespace_state(ns).is_some()
        {
            return Ok(None);
        }
        for (seq, ids) in self.newest_moves(ns, schema).await? {
            let Some(entry) = self.inner.log.entry(ns, seq).await? else {
                // Not created yet (an attempt in flight, or one that died
                // before its entry) unless a later entry exists: entries
                // are created in order, so then `seq` was lost.
                if self.inner.log.entry(ns, seq + 1).await?.is_some() {
                    return Err(Error::Corrupt {
                        key: keys::log_entry(ns, seq).to_string(),
                        reason: format!(
                            "missing from the log, but entry {} exists: commits were lost; `protoshelf verify --repair` rebuilds the log",
                            seq + 1
                        ),
                    });
                }
                // The newest entry lost (deleted, not yet superseded) looks
                // like a died attempt, but the hint, written after a commit
                // landed, says it was made: checked only on this rare path.
                if let Some(hint) = self.inner.log.hint(ns).await?
                    && hint.latest.is_some_and(|latest| latest >= seq)
                {
                    return Err(Error::Corrupt {
                        key: keys::log_entry(ns, seq).to_string(),
                        reason: format!(
                            "missing from the log, but the hint says commit {seq} was made: commits were lost; `protoshelf verify --repair` rebuilds the log"
                        ),
                    });
                }
                continue;
            };
            if !ids.contains(&entry.commit_id) {
                continue; // an attempt that lost the race for `seq`
            }
            let Some(pointers) = entry.change.changes.get(schema) else {
                return Err(Error::Corrupt {
                    key: keys::log_entry(ns, seq).to_string(),
                    reason: format!(
                        "its move marker names schema {schema:?}, which it does not change"
                    ),
                });
            };
            let descriptors = entry
                .change
                .descriptors
                .get(schema)
                .cloned()
                .unwrap_or_default();
            return Ok(Some(SchemaHead {
                seq,
                pointers: *pointers,
                descriptors,
            }));
        }
        Ok(None)
    }

    /// The newest marked commits of a schema, newest first, with the
    /// attempts marked at each (at most [`TRIES`] commits). Markers sort
    /// newest first, so an ordered backend needs only the LIST's first
    /// page; a local directory lists in no order and is read whole.
    async fn newest_moves(&self, ns: &str, schema: &str) -> Result<Vec<(u64, Vec<String>)>> {
        let ordered = !matches!(self.inner.kind, BackendKind::Local);
        let mut listed = self.io().os.list(Some(&keys::moves_dir(ns, schema)));
        let mut found: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
        while let Some(meta) = listed.next().await {
            let meta = meta.map_err(Error::Storage)?;
            let Some((seq, id)) = meta.location.filename().and_then(keys::parse_move_marker) else {
                continue;
            };
            if ordered && found.len() == TRIES && !found.contains_key(&seq) {
                break; // older than every commit kept: the rest are too
            }
            found.entry(seq).or_default().push(id.to_string());
            if found.len() > TRIES {
                found.pop_first();
            }
        }
        Ok(found.into_iter().rev().collect())
    }

    /// The descriptor set with this hash (verified against it).
    pub async fn descriptor_by_hash(&self, ns: &str, sha256: &str) -> Result<Bytes> {
        let key = keys::descriptor(ns, sha256);
        match self.verified(&key, sha256, "descriptor").await {
            Ok(obj) => Ok(obj.bytes),
            Err(Error::NotFound(_)) => Err(Error::Corrupt {
                key: key.to_string(),
                reason: "missing, but the log names it".into(),
            }),
            Err(e) => Err(e),
        }
    }
}
