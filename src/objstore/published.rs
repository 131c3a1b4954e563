//! Which versions a namespace's log ever staged or made current: the
//! versions that exist for readers. A manifest the log never named was left
//! by a publish that died before staging it, or that lost a commit race and
//! staged a newer version instead; readers never show it, and gc removes it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::ObjStore;
use super::records::Pointers;
use crate::error::Result;

/// Every version the log named as staged or current, per schema, up to
/// commit `seq`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    pub seq: u64,
    pub versions: BTreeMap<String, BTreeSet<u64>>,
    /// Of `versions`, those the log ever made current.
    pub current: BTreeMap<String, BTreeSet<u64>>,
    /// Of `versions`, those the log ever staged.
    pub staged: BTreeMap<String, BTreeSet<u64>>,
}

impl Published {
    /// Whether the log ever staged (or made current) `version` of `schema`.
    pub fn contains(&self, schema: &str, version: u64) -> bool {
        self.versions
            .get(schema)
            .is_some_and(|v| v.contains(&version))
    }

    /// The versions of `schema` the log ever named, ascending.
    pub fn of(&self, schema: &str) -> Vec<u64> {
        self.versions
            .get(schema)
            .map(|v| v.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The versions of `schema` that were ever current, ascending.
    pub fn ever_current(&self, schema: &str) -> Vec<u64> {
        self.current
            .get(schema)
            .map(|v| v.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Whether the log ever made `version` of `schema` current.
    pub fn was_current(&self, schema: &str, version: u64) -> bool {
        self.current
            .get(schema)
            .is_some_and(|v| v.contains(&version))
    }

    /// Whether the log ever staged `version` of `schema`.
    pub fn was_staged(&self, schema: &str, version: u64) -> bool {
        self.staged
            .get(schema)
            .is_some_and(|v| v.contains(&version))
    }

    fn note(&mut self, schema: &str, p: &Pointers) {
        for (v, kind) in [(p.current, &mut self.current), (p.staged, &mut self.staged)] {
            if let Some(v) = v {
                kind.entry(schema.to_string()).or_default().insert(v);
                self.versions
                    .entry(schema.to_string())
                    .or_default()
                    .insert(v);
            }
        }
    }

    /// Adds what one entry names (its changes and, in a checkpoint, the
    /// whole state).
    pub fn apply(&mut self, entry: &super::log::NsEntry) {
        for (schema, p) in &entry.change.changes {
            self.note(schema, p);
        }
        if let Some(state) = &entry.checkpoint {
            for (schema, p) in &state.snapshot.schemas {
                self.note(schema, p);
            }
        }
        self.seq = self.seq.max(entry.seq);
    }
}

impl ObjStore {
    /// The versions the namespace's log ever staged or made current, as of
    /// its latest commit. Reads each log entry once per handle (entries are
    /// immutable and cached): the first call costs one GET per commit not
    /// yet read, later calls only the new commits.
    pub async fn published(&self, ns: &str) -> Result<Arc<Published>> {
        let state = self.namespace_state(ns).await?;
        self.published_upto(ns, state.seq).await
    }

    /// [`Self::published`] as of commit `seq` or later (no request when
    /// this handle has read that far).
    pub async fn published_upto(&self, ns: &str, seq: u64) -> Result<Arc<Published>> {
        let known = self.inner.published.lock().unwrap().get(ns).cloned();
        let known = known.unwrap_or_default();
        if known.seq >= seq {
            return Ok(known);
        }
        let mut next = (*known).clone();
        for entry in self.inner.log.entries(ns, known.seq + 1, seq).await? {
            next.apply(&entry);
        }
        let next = Arc::new(next);
        let mut all = self.inner.published.lock().unwrap();
        let slot = all.entry(ns.to_string()).or_default();
        if next.seq > slot.seq {
            *slot = next.clone();
        }
        Ok(slot.clone())
    }

    /// Whether `version` of `schema` was ever staged or current: without a
    /// request when it is staged or current now, else from [`Self::published`].
    pub async fn is_published(&self, ns: &str, schema: &str, version: u64) -> Result<bool> {
        let p = self.namespace_state(ns).await?.pointers(schema);
        if p.current == Some(version) || p.staged == Some(version) {
            return Ok(true);
        }
        if version > p.latest {
            // `latest` is the highest number the log has named.
            return Ok(false);
        }
        Ok(self.published(ns).await?.contains(schema, version))
    }
}
