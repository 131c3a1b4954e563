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

use super::records::{Descriptors, FORMAT_MOVES, NsSets, Pointers};
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
        let Some(entry) = self.newest_marked(ns, &keys::moves_dir(ns, schema)).await? else {
            return Ok(None);
        };
        let seq = entry.seq;
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
        Ok(Some(SchemaHead {
            seq,
            pointers: *pointers,
            descriptors,
        }))
    }

    /// The namespace sets by the reader contract: one LIST of the
    /// namespace's set markers and one GET of the entry the newest names.
    /// `None` when there are none (format 2, no commit that changed
    /// pointers since format 3). Like [`Self::schema_head`], a handle that
    /// has read the namespace's log answers from it.
    pub async fn sets_head(&self, ns: &str) -> Result<Option<(u64, NsSets)>> {
        validate_namespace_id(ns)?;
        if self.inner.marker.format_version < FORMAT_MOVES {
            return Ok(None);
        }
        if let Some(state) = self.cached_namespace_state(ns) {
            return Ok(state.snapshot.sets.clone().map(|s| (state.seq, s)));
        }
        let Some(entry) = self.newest_marked(ns, &keys::set_moves_dir(ns)).await? else {
            return Ok(None);
        };
        match entry.change.sets {
            Some(sets) => Ok(Some((entry.seq, sets))),
            None => Err(Error::Corrupt {
                key: keys::log_entry(ns, entry.seq).to_string(),
                reason: "its set marker names it, but it records no namespace sets".into(),
            }),
        }
    }

    /// The namespace set of the current (or staged) tree: 1 LIST and 2
    /// GETs on a cold handle; `None` when the namespace has none.
    pub async fn namespace_set(&self, ns: &str, staged: bool) -> Result<Option<Bytes>> {
        let Some((_, sets)) = self.sets_head(ns).await? else {
            return Ok(None);
        };
        let sha = if staged { &sets.staged } else { &sets.current };
        self.namespace_set_by_hash(ns, sha).await.map(Some)
    }

    /// The entry of the newest commit marked in `dir` (move markers of a
    /// schema, or the namespace's set markers) that really landed.
    pub(super) async fn newest_marked(
        &self,
        ns: &str,
        dir: &object_store::path::Path,
    ) -> Result<Option<super::log::NsEntry>> {
        for (seq, ids) in self.newest_moves(dir).await? {
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
            if ids.contains(&entry.commit_id) {
                return Ok(Some(entry));
            }
            // An attempt that lost the race for `seq`.
        }
        Ok(None)
    }

    /// The newest marked commits of a schema, newest first, with the
    /// attempts marked at each (at most [`TRIES`] commits). Markers sort
    /// newest first, so an ordered backend needs only the LIST's first
    /// page; a local directory lists in no order and is read whole.
    async fn newest_moves(
        &self,
        dir: &object_store::path::Path,
    ) -> Result<Vec<(u64, Vec<String>)>> {
        let ordered = !matches!(self.inner.kind, BackendKind::Local);
        let mut listed = self.io().os.list(Some(dir));
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
