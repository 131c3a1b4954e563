//! The commit protocol: a per-namespace log of numbered, immutable entries.
//!
//! Creating entry N+1 with create-if-absent *is* the commit, so the only
//! primitive needed is one every backend has (LocalFileSystem included).
//! A writer that loses the race re-reads, lets its caller re-validate, and
//! retries with backoff. An entry is a delta, or a checkpoint carrying the
//! whole state; `head.json` is a hint (plain overwrite, never trusted) that
//! lets a cold reader start near the end. Every `CHAIN_MAX`-th entry is a
//! checkpoint and only those move the hint, so most commits are one PUT.
//! Costs (requests):
//! - warm reader, nothing new: 1 GET (the next entry, not found);
//! - cold reader: hint + the checkpoint it names + the entries after it (at
//!   most `CHAIN_MAX - 1`) + 1 probe;
//! - commit: the reads above + 1 conditional PUT (+ 1 hint PUT on every
//!   `CHAIN_MAX`-th entry).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use futures::{StreamExt, TryStreamExt};

use super::io::{Created, Io, backoff};
use super::keys;
use super::records::*;
use crate::error::{Error, Result};
use crate::model::CommitInfo;

/// Every entry whose seq is a multiple of this is a checkpoint, and only
/// those update the hint: a cold reader starts at the hinted checkpoint and
/// walks fewer than this many entries forward. (Also the longest delta
/// chain behind any entry.)
pub const CHAIN_MAX: u64 = 8;
/// ... or when the state is this small (estimated), so small namespaces
/// are always read in one entry.
pub const SMALL_STATE_BYTES: usize = 16 * 1024;
/// Commit attempts before giving up with `Conflict`.
const COMMIT_ATTEMPTS: u32 = 64;

/// A namespace's pointer state after entry `seq`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NsState {
    pub seq: u64,
    /// The newest checkpoint at or before `seq`.
    pub base: u64,
    pub snapshot: StateSnapshot,
    /// The schemas with a staged version, kept beside the snapshot so
    /// promote and discard need not walk every schema of the namespace.
    staged: imbl::OrdSet<String>,
}

impl NsState {
    /// The schemas with a staged version, in ID order.
    pub fn staged_schemas(&self) -> impl Iterator<Item = (&String, Pointers)> {
        self.staged.iter().map(|s| (s, self.pointers(s)))
    }

    /// Sets pointers and keeps the staged index in step.
    fn set(&mut self, changes: &BTreeMap<String, Pointers>, config: &BTreeMap<String, String>) {
        for (schema, p) in changes {
            if p.staged.is_some() {
                self.staged.insert(schema.clone());
            } else {
                self.staged.remove(schema);
            }
            self.snapshot.schemas.insert(schema.clone(), *p);
        }
        self.snapshot.config.extend(config.clone());
    }

    /// Replaces the whole state (a checkpoint), rebuilding the index.
    fn reset(&mut self, snapshot: &StateSnapshot) {
        self.snapshot = snapshot.clone();
        self.staged = snapshot
            .schemas
            .iter()
            .filter(|(_, p)| p.staged.is_some())
            .map(|(s, _)| s.clone())
            .collect();
    }

    pub fn pointers(&self, schema: &str) -> Pointers {
        self.snapshot
            .schemas
            .get(schema)
            .copied()
            .unwrap_or_default()
    }

    fn apply(&mut self, entry: &LogEntry, key: &str) -> Result<()> {
        if entry.seq != self.seq + 1 {
            return Err(Error::Corrupt {
                key: key.to_string(),
                reason: format!("entry seq {} follows state seq {}", entry.seq, self.seq),
            });
        }
        match &entry.state {
            Some(state) => self.reset(state),
            None => self.set(&entry.changes, &entry.config),
        }
        self.seq = entry.seq;
        self.base = entry.base;
        Ok(())
    }
}

/// What a commit changes: the state is driven by `changes` and `config`;
/// `operation` records the intent for readers of the log.
#[derive(Debug, Clone)]
pub struct Mutation {
    pub operation: Operation,
    pub changes: BTreeMap<String, Pointers>,
    pub config: BTreeMap<String, String>,
}

/// A successful commit.
#[derive(Debug, Clone)]
pub struct Committed {
    pub info: CommitInfo,
    pub entry: LogEntry,
    pub state: Arc<NsState>,
}

pub struct Log {
    io: Arc<Io>,
    /// The newest state seen per namespace; never moves backwards.
    heads: Mutex<HashMap<String, Arc<NsState>>>,
    writer: String,
    /// The store's format version, recorded in every entry.
    format_version: u32,
}

impl Log {
    pub fn new(io: Arc<Io>, writer: String, format_version: u32) -> Self {
        Log {
            io,
            heads: Mutex::default(),
            writer,
            format_version,
        }
    }

    /// The newest state this handle has seen, without any request.
    pub fn cached(&self, ns: &str) -> Option<Arc<NsState>> {
        self.heads.lock().unwrap().get(ns).cloned()
    }

    fn remember(&self, ns: &str, state: Arc<NsState>) -> Arc<NsState> {
        let mut heads = self.heads.lock().unwrap();
        let slot = heads.entry(ns.to_string()).or_insert_with(|| state.clone());
        if state.seq > slot.seq {
            *slot = state;
        }
        slot.clone()
    }

    /// Reads an entry (immutable, so cached); `None` past the end of the log.
    pub async fn entry(&self, ns: &str, seq: u64) -> Result<Option<LogEntry>> {
        let key = keys::log_entry(ns, seq);
        let Some(obj) = self.io.get_immutable(&key).await? else {
            return Ok(None);
        };
        let entry: LogEntry = from_json(key.as_ref(), &obj.bytes)?;
        if entry.seq != seq {
            return Err(Error::Corrupt {
                key: key.to_string(),
                reason: format!("holds seq {}", entry.seq),
            });
        }
        Ok(Some(entry))
    }

    async fn hint(&self, ns: &str) -> Result<u64> {
        let key = keys::head(ns);
        Ok(match self.io.get(&key).await? {
            // A damaged hint is only a slower read, never an error.
            Some(obj) => from_json::<HeadHint>(key.as_ref(), &obj.bytes).map_or(0, |h| h.seq),
            None => 0,
        })
    }

    /// Whether commit `seq` moves the hint: only checkpoints at multiples of
    /// `CHAIN_MAX` do, so a hint names one of them or is stale.
    pub fn hints(seq: u64) -> bool {
        seq.is_multiple_of(CHAIN_MAX)
    }

    async fn write_hint(&self, ns: &str, seq: u64) {
        let bytes = to_json(&HeadHint { seq });
        if let Err(e) = self.io.put_overwrite(&keys::head(ns), bytes).await {
            tracing::warn!(namespace = ns, "could not update the log hint: {e}");
        }
    }

    /// The namespace's latest state: one GET when this handle is up to date.
    pub async fn latest(&self, ns: &str) -> Result<Arc<NsState>> {
        let known = self.cached(ns);
        self.advance(ns, known).await
    }

    /// Brings `known` (or the empty state) up to the end of the log.
    async fn advance(&self, ns: &str, known: Option<Arc<NsState>>) -> Result<Arc<NsState>> {
        let warm = known.is_some();
        let mut state = known.as_deref().cloned().unwrap_or_default();
        let mut found = 0u32;
        // The hint read, once jumped: if the walk passes a hint position
        // beyond it, a writer died before updating it; repair it.
        let mut hint: Option<u64> = None;
        if !warm {
            hint = Some(self.jump(ns, &mut state).await?);
        }
        loop {
            let seq = state.seq + 1;
            let Some(entry) = self.entry(ns, seq).await? else {
                break;
            };
            state.apply(&entry, keys::log_entry(ns, seq).as_ref())?;
            found += 1;
            // Two new entries in a row: far behind, let the hint take us
            // near the end instead of walking entry by entry.
            if hint.is_none() && found == 2 {
                hint = Some(self.jump(ns, &mut state).await?);
            }
        }
        let due = state.seq - state.seq % CHAIN_MAX;
        if hint.is_some_and(|h| h < due) {
            self.write_hint(ns, due).await;
        }
        if warm && found == 0 {
            return Ok(known.expect("warm"));
        }
        Ok(self.remember(ns, Arc::new(state)))
    }

    /// Moves `state` to the entry the hint names, reading only the entries
    /// since that entry's checkpoint (or since `state`, if newer). Returns
    /// the hint.
    async fn jump(&self, ns: &str, state: &mut NsState) -> Result<u64> {
        let target = self.hint(ns).await?;
        if target <= state.seq {
            return Ok(target);
        }
        let Some(last) = self.entry(ns, target).await? else {
            return Ok(0); // a hint ahead of the log: ignore it (and repair)
        };
        let key = |seq| keys::log_entry(ns, seq).to_string();
        if last.state.is_some() {
            let mut fresh = NsState {
                seq: target - 1,
                ..Default::default()
            };
            fresh.apply(&last, &key(target))?;
            *state = fresh;
            return Ok(target);
        }
        let start = if last.base > state.seq {
            last.base
        } else {
            state.seq + 1
        };
        let chain: Vec<LogEntry> = futures::stream::iter(start..target)
            .map(|seq| async move {
                self.entry(ns, seq).await?.ok_or_else(|| Error::Corrupt {
                    key: key(seq),
                    reason: format!("missing, but entry {target} exists"),
                })
            })
            .buffered(16)
            .try_collect()
            .await?;
        for entry in chain.iter().chain(std::iter::once(&last)) {
            if entry.seq == last.base && entry.seq > state.seq {
                // The checkpoint the chain starts from.
                *state = NsState {
                    seq: entry.seq - 1,
                    ..Default::default()
                };
            }
            state.apply(entry, &key(entry.seq))?;
        }
        Ok(target)
    }

    /// Commits the mutation `plan` computes from the latest state.
    ///
    /// `plan` runs again on the new state whenever another writer wins the
    /// race, so it must re-validate; returning `Ok(None)` means "nothing to
    /// do" and writes nothing. With `expect_seq`, the commit only happens on
    /// top of that log position (`Conflict` otherwise, without retrying).
    pub async fn commit<F>(
        &self,
        ns: &str,
        expect_seq: Option<u64>,
        mut plan: F,
    ) -> Result<Option<Committed>>
    where
        F: FnMut(&NsState) -> Result<Option<Mutation>>,
    {
        // A caller that validated against `expect_seq` and whose view is that
        // state needs no refresh: the create of the next entry fails if
        // anyone committed since.
        let mut state = match (expect_seq, self.cached(ns)) {
            (Some(seq), Some(cached)) if cached.seq == seq => cached,
            _ => self.latest(ns).await?,
        };
        for attempt in 0..COMMIT_ATTEMPTS {
            if let Some(expected) = expect_seq
                && state.seq != expected
            {
                return Err(Error::Conflict(format!(
                    "namespace {ns} moved from commit {expected} to {}",
                    state.seq
                )));
            }
            let Some(mutation) = plan(&state)? else {
                return Ok(None);
            };
            let (entry, next) = self.build(&state, mutation);
            let key = keys::log_entry(ns, entry.seq);
            let created = self
                .io
                .create_record::<LogEntry>(&key, to_json(&entry), |e| {
                    e.commit_id == entry.commit_id
                })
                .await?;
            match created {
                Created::Mine => {
                    let counters = &self.io.counters;
                    counters.commits.fetch_add(1, Relaxed);
                    if entry.state.is_some() {
                        counters.checkpoints.fetch_add(1, Relaxed);
                    }
                    let state = self.remember(ns, Arc::new(next));
                    if Self::hints(entry.seq) {
                        self.write_hint(ns, entry.seq).await;
                    }
                    let info = CommitInfo {
                        seq: entry.seq,
                        commit_id: entry.commit_id.clone(),
                    };
                    return Ok(Some(Committed { info, entry, state }));
                }
                Created::Theirs(winner) => {
                    self.io.counters.conflicts.fetch_add(1, Relaxed);
                    if expect_seq.is_some() {
                        // The caller validated against a state that is gone:
                        // the check at the top of the loop reports it.
                        let mut moved = (*state).clone();
                        moved.apply(&winner, key.as_ref())?;
                        state = self.remember(ns, Arc::new(moved));
                        continue;
                    }
                    tracing::debug!(
                        namespace = ns,
                        seq = entry.seq,
                        attempt,
                        "lost a commit race"
                    );
                    backoff(attempt).await;
                    // Start from the winner's entry we already hold.
                    let mut moved = (*state).clone();
                    moved.apply(&winner, key.as_ref())?;
                    state = self.advance(ns, Some(Arc::new(moved))).await?;
                }
            }
        }
        Err(Error::Conflict(format!(
            "namespace {ns}: gave up after {COMMIT_ATTEMPTS} attempts lost to concurrent writers"
        )))
    }

    fn build(&self, state: &NsState, m: Mutation) -> (LogEntry, NsState) {
        let seq = state.seq + 1;
        let mut next = state.clone(); // persistent maps: no copy of the entries
        next.set(&m.changes, &m.config);
        let snapshot = &next.snapshot;
        // An estimate is enough to decide; serializing a large state per
        // commit only to measure it would cost more than it saves. Every
        // schema counts at least 48 bytes, so a long map is large without
        // walking it (keeping the commit's cost flat in namespace size).
        let small = snapshot.schemas.len() * 48 <= SMALL_STATE_BYTES
            && snapshot
                .schemas
                .keys()
                .map(|k| k.len() + 48)
                .chain(snapshot.config.iter().map(|(k, v)| k.len() + v.len() + 8))
                .sum::<usize>()
                <= SMALL_STATE_BYTES;
        // Hinted entries must be checkpoints, so a cold reader needs no chain
        // behind the hint.
        let checkpoint = small || Self::hints(seq) || seq - state.base >= CHAIN_MAX;
        let base = if checkpoint { seq } else { state.base };
        let entry = LogEntry {
            format_version: self.format_version,
            seq,
            commit_id: uuid::Uuid::new_v4().to_string(),
            writer: self.writer.clone(),
            created_at: Utc::now(),
            operation: m.operation,
            changes: m.changes,
            config: m.config,
            base,
            state: checkpoint.then(|| snapshot.clone()),
        };
        next.seq = seq;
        next.base = base;
        (entry, next)
    }

    /// The state right after entry `seq` (immutable, so the entries come
    /// from the cache after the first read): its checkpoint plus the chain.
    pub async fn state_at(&self, ns: &str, seq: u64) -> Result<NsState> {
        let mut state = NsState::default();
        if seq == 0 {
            return Ok(state);
        }
        let key = |s| keys::log_entry(ns, s).to_string();
        let last = self
            .entry(ns, seq)
            .await?
            .ok_or_else(|| Error::NotFound(format!("commit {seq} of namespace {ns:?}")))?;
        let start = if last.state.is_some() {
            seq
        } else {
            last.base.max(1)
        };
        let chain = self.entries(ns, start, seq).await?;
        state.seq = start - 1;
        for entry in &chain {
            if entry.seq == start && entry.state.is_none() && start > 1 {
                return Err(Error::Corrupt {
                    key: key(start),
                    reason: "base entry is not a checkpoint".into(),
                });
            }
            state.apply(entry, &key(entry.seq))?;
        }
        Ok(state)
    }

    /// Entries `from..=to` (for `protoshelf log` and audits), in order.
    pub async fn entries(&self, ns: &str, from: u64, to: u64) -> Result<Vec<LogEntry>> {
        futures::stream::iter(from.max(1)..=to)
            .map(|seq| async move {
                self.entry(ns, seq).await?.ok_or_else(|| Error::Corrupt {
                    key: keys::log_entry(ns, seq).to_string(),
                    reason: "missing from the log".into(),
                })
            })
            .buffered(16)
            .try_collect()
            .await
    }
}
