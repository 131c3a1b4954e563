//! The commit protocol, generic over the state it sequences: a log of
//! numbered, immutable entries per stream (a namespace, for protoshelf).
//!
//! Creating entry N+1 with create-if-absent *is* the commit, so the only
//! primitive needed is one every backend has (LocalFileSystem included).
//! An entry is a change, or a checkpoint carrying the whole state; the hint
//! (plain overwrite, never trusted) lets a cold reader start near the end.
//! Every `CHAIN_MAX`-th entry is a checkpoint and only those move the hint,
//! so most commits are one PUT.
//!
//! The unit is a state type ([`Sequenced`]: how a change applies, when a
//! state is small enough to write whole) and a codec ([`ObjectCodec`]: an
//! entry's bytes), after slatedb's `SequencedStorageProtocol<T>` and
//! `ObjectCodec<T>`. What a commit does is an async *plan* run inside the
//! protocol's one retry loop: it sees the exact state its change will be
//! applied to, so whatever it validates (ownership, compile results,
//! compatibility) holds for the commit; after a lost race it runs again on
//! the winner's state, and it is told what landed meanwhile
//! ([`Attempt::landed`]) so it can re-base instead of redoing its work.
//!
//! Costs (requests):
//! - warm reader, nothing new: 1 GET (the next entry, not found);
//! - cold reader: hint + the checkpoint it names + the entries after it (at
//!   most `CHAIN_MAX - 1`) + 1 probe;
//! - commit: the reads above + 1 conditional PUT (+ 1 hint PUT on every
//!   `CHAIN_MAX`-th entry); a lost race adds the read-back of the winner
//!   (1 GET) and the walk to the end of the log.

use std::collections::HashMap;
use std::fmt::Debug;
use std::ops::Deref;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;

use super::io::{Created, Io};
use super::records::{HeadHint, from_json, to_json};
use crate::error::{Error, Result};

/// Every entry whose seq is a multiple of this is a checkpoint, and only
/// those update the hint: a cold reader starts at the hinted checkpoint and
/// walks fewer than this many entries forward. (Also the longest chain of
/// changes behind any entry.)
pub const CHAIN_MAX: u64 = 8;

/// How long a commit keeps retrying lost races before it gives up with
/// [`Error::Contended`]: long enough that only a writer starved for real
/// (not a burst of contention) gives up.
pub const DEFAULT_GIVE_UP: Duration = Duration::from_secs(600);

/// A state the protocol sequences. Cloned once per commit and per entry
/// applied, so it should be cheap to clone (persistent maps).
pub trait Sequenced: Clone + Default + Debug + Send + Sync + 'static {
    /// What one entry changes.
    type Change: Clone + Debug + Send + Sync + 'static;

    fn apply(&mut self, change: &Self::Change);

    /// Whether the state is small enough to be written in every entry, so
    /// a cold reader needs one entry (an estimate is fine).
    fn small(&self) -> bool;
}

/// Encodes values as stored bytes and back; `key` names the object in
/// errors.
pub trait ObjectCodec<T>: Send + Sync + 'static {
    fn encode(&self, value: &T) -> Bytes;
    fn decode(&self, key: &str, bytes: &[u8]) -> Result<T>;
}

/// One entry of the log.
#[derive(Debug, Clone)]
pub struct Entry<S: Sequenced> {
    pub seq: u64,
    /// Unique per commit attempt: an ambiguous create is settled by reading
    /// the entry back and comparing this.
    pub commit_id: String,
    /// The newest checkpoint at or before this entry (== seq when this entry
    /// is one; 0 = the empty state before the first entry).
    pub base: u64,
    pub change: S::Change,
    /// The whole state after this entry, in checkpoints.
    pub checkpoint: Option<S>,
}

/// A state as of entry `seq` of its log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Versioned<S> {
    pub seq: u64,
    /// The newest checkpoint at or before `seq`.
    pub base: u64,
    pub value: S,
}

impl<S> Deref for Versioned<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.value
    }
}

impl<S: Sequenced> Versioned<S> {
    fn apply(&mut self, entry: &Entry<S>, key: &str) -> Result<()> {
        if entry.seq != self.seq + 1 {
            return Err(Error::Corrupt {
                key: key.to_string(),
                reason: format!("entry seq {} follows state seq {}", entry.seq, self.seq),
            });
        }
        match &entry.checkpoint {
            Some(state) => self.value = state.clone(),
            None => self.value.apply(&entry.change),
        }
        self.seq = entry.seq;
        self.base = entry.base;
        Ok(())
    }
}

/// Where a stream's objects are.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Entry `seq` of a stream (zero-padded, so key order is seq order).
    pub entry: fn(&str, u64) -> Path,
    /// The stream's hint.
    pub hint: fn(&str) -> Path,
}

/// One run of a commit's plan. Owned (no borrow of the protocol), so a
/// plan's future can be `Send` without higher-ranked lifetimes.
#[derive(Debug, Clone)]
pub struct Attempt<S: Sequenced> {
    /// The state the change will be applied to if this attempt wins.
    pub state: Arc<Versioned<S>>,
    /// 0 for the first attempt; n after n lost races.
    pub number: u32,
    /// The state the previous attempt planned on (None on the first).
    pub previous: Option<Arc<Versioned<S>>>,
    /// The entries that landed between `previous` and `state`, oldest
    /// first (none on the first attempt): what the winners changed. The
    /// walk to the end of the log read them, so they cost no request.
    pub landed: Vec<Entry<S>>,
}

/// What a commit does: computes the change to commit from the state it
/// will land on (`Ok(None)`: nothing to do). Runs once per attempt; it may
/// keep what it learnt in `self` for the next one. The future is declared
/// `Send` here, so a commit can run on any runtime thread.
///
/// Closures `|attempt| async move { ... }` are plans; a plan that keeps
/// state between attempts is a struct.
pub trait Plan<S: Sequenced, T = <S as Sequenced>::Change>: Send {
    fn plan(&mut self, attempt: Attempt<S>) -> impl Future<Output = Result<Option<T>>> + Send;
}

impl<S, T, F, Fut> Plan<S, T> for F
where
    S: Sequenced,
    F: FnMut(Attempt<S>) -> Fut + Send,
    Fut: Future<Output = Result<Option<T>>> + Send,
{
    fn plan(&mut self, attempt: Attempt<S>) -> impl Future<Output = Result<Option<T>>> + Send {
        self(attempt)
    }
}

/// A successful commit.
#[derive(Debug, Clone)]
pub struct Committed<S: Sequenced> {
    pub entry: Entry<S>,
    /// The state right after the entry.
    pub state: Arc<Versioned<S>>,
    /// Races lost before this commit landed.
    pub lost: u32,
}

/// The protocol over one store, for any number of streams. It remembers
/// the newest state it has seen of each stream.
pub struct Protocol<S: Sequenced, C> {
    io: Arc<Io>,
    codec: C,
    layout: Layout,
    heads: Mutex<HashMap<String, Arc<Versioned<S>>>>,
    /// Milliseconds of continuous losing after which a commit gives up.
    give_up_ms: AtomicU64,
    /// The most races any commit of this handle lost before landing.
    most_lost: AtomicUsize,
}

impl<S: Sequenced, C: ObjectCodec<Entry<S>>> Protocol<S, C> {
    pub fn new(io: Arc<Io>, codec: C, layout: Layout) -> Self {
        Protocol {
            io,
            codec,
            layout,
            heads: Mutex::default(),
            give_up_ms: AtomicU64::new(DEFAULT_GIVE_UP.as_millis() as u64),
            most_lost: AtomicUsize::new(0),
        }
    }

    pub fn codec(&self) -> &C {
        &self.codec
    }

    /// Sets how long a commit keeps losing races before it gives up.
    pub fn set_give_up_after(&self, bound: Duration) {
        let ms = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
        self.give_up_ms.store(ms, Relaxed);
    }

    pub fn give_up_after(&self) -> Duration {
        Duration::from_millis(self.give_up_ms.load(Relaxed))
    }

    /// The most races one commit of this handle lost before landing.
    pub fn most_lost(&self) -> usize {
        self.most_lost.load(Relaxed)
    }

    /// The newest state this handle has seen, without any request.
    pub fn cached(&self, stream: &str) -> Option<Arc<Versioned<S>>> {
        self.heads.lock().unwrap().get(stream).cloned()
    }

    fn remember(&self, stream: &str, state: Arc<Versioned<S>>) -> Arc<Versioned<S>> {
        let mut heads = self.heads.lock().unwrap();
        let slot = heads
            .entry(stream.to_string())
            .or_insert_with(|| state.clone());
        if state.seq > slot.seq {
            *slot = state;
        }
        slot.clone()
    }

    /// Reads an entry (immutable, so cached); `None` past the end of the log.
    pub async fn entry(&self, stream: &str, seq: u64) -> Result<Option<Entry<S>>> {
        let key = (self.layout.entry)(stream, seq);
        let Some(obj) = self.io.get_immutable(&key).await? else {
            return Ok(None);
        };
        let entry = self.codec.decode(key.as_ref(), &obj.bytes)?;
        if entry.seq != seq {
            return Err(Error::Corrupt {
                key: key.to_string(),
                reason: format!("holds seq {}", entry.seq),
            });
        }
        Ok(Some(entry))
    }

    /// Entries `from..=to`, in order; a missing one is corruption.
    pub async fn entries(&self, stream: &str, from: u64, to: u64) -> Result<Vec<Entry<S>>> {
        futures::stream::iter(from.max(1)..=to)
            .map(|seq| async move {
                self.entry(stream, seq)
                    .await?
                    .ok_or_else(|| Error::Corrupt {
                        key: (self.layout.entry)(stream, seq).to_string(),
                        reason: "missing from the log".into(),
                    })
            })
            .buffered(16)
            .try_collect()
            .await
    }

    async fn hint(&self, stream: &str) -> Result<u64> {
        let key = (self.layout.hint)(stream);
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

    async fn write_hint(&self, stream: &str, seq: u64) {
        let bytes = to_json(&HeadHint { seq });
        if let Err(e) = self
            .io
            .put_overwrite(&(self.layout.hint)(stream), bytes)
            .await
        {
            tracing::warn!(stream, "could not update the log hint: {e}");
        }
    }

    /// The stream's latest state: one GET when this handle is up to date.
    pub async fn latest(&self, stream: &str) -> Result<Arc<Versioned<S>>> {
        let known = self.cached(stream);
        self.advance(stream, known).await
    }

    /// Brings `known` (or the empty state) up to the end of the log.
    async fn advance(
        &self,
        stream: &str,
        known: Option<Arc<Versioned<S>>>,
    ) -> Result<Arc<Versioned<S>>> {
        let warm = known.is_some();
        let mut state = known.as_deref().cloned().unwrap_or_default();
        let mut found = 0u32;
        // The hint read, once jumped: if the walk passes a hint position
        // beyond it, a writer died before updating it; repair it.
        let mut hint: Option<u64> = None;
        if !warm {
            hint = Some(self.jump(stream, &mut state).await?);
        }
        loop {
            let seq = state.seq + 1;
            let Some(entry) = self.entry(stream, seq).await? else {
                break;
            };
            state.apply(&entry, (self.layout.entry)(stream, seq).as_ref())?;
            found += 1;
            // Two new entries in a row: far behind, let the hint take us
            // near the end instead of walking entry by entry.
            if hint.is_none() && found == 2 {
                hint = Some(self.jump(stream, &mut state).await?);
            }
        }
        // A hint behind the last checkpoint, ahead of the log or not on a
        // checkpoint (only checkpoints are hinted) is repaired.
        let due = state.seq - state.seq % CHAIN_MAX;
        if hint.is_some_and(|h| h != due) {
            self.write_hint(stream, due).await;
        }
        if warm && found == 0 {
            return Ok(known.expect("warm"));
        }
        Ok(self.remember(stream, Arc::new(state)))
    }

    /// Moves `state` to the entry the hint names, reading only the entries
    /// since that entry's checkpoint (or since `state`, if newer). Returns
    /// the hint.
    async fn jump(&self, stream: &str, state: &mut Versioned<S>) -> Result<u64> {
        let target = self.hint(stream).await?;
        if target <= state.seq {
            return Ok(target);
        }
        let Some(last) = self.entry(stream, target).await? else {
            return Ok(target); // ahead of the log: ignored (and repaired)
        };
        let key = |seq| (self.layout.entry)(stream, seq).to_string();
        if last.checkpoint.is_some() {
            let mut fresh: Versioned<S> = Versioned {
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
        let base = last.base;
        let mut chain = self.entries(stream, start, target - 1).await?;
        chain.push(last);
        for entry in &chain {
            if entry.seq == base && entry.seq > state.seq {
                // The checkpoint the chain starts from.
                *state = Versioned {
                    seq: entry.seq - 1,
                    ..Default::default()
                };
            }
            state.apply(entry, &key(entry.seq))?;
        }
        Ok(target)
    }

    /// Commits the change `plan` computes from the latest state.
    ///
    /// `plan` runs inside the one retry loop: on the state the change will
    /// be applied to, and again on the new state whenever another writer
    /// wins the race, after a backoff with jitter. Returning `Ok(None)`
    /// means "nothing to do" and writes nothing; an error ends the commit
    /// with nothing committed. After [`Self::give_up_after`] of continuous
    /// losing the commit fails with [`Error::Contended`].
    pub async fn commit(
        &self,
        stream: &str,
        mut plan: impl Plan<S>,
    ) -> Result<Option<Committed<S>>> {
        let started = Instant::now();
        let mut state = self.latest(stream).await?;
        let mut previous: Option<Arc<Versioned<S>>> = None;
        for number in 0u32.. {
            let landed = match &previous {
                Some(p) => self.entries(stream, p.seq + 1, state.seq).await?,
                None => Vec::new(),
            };
            let attempt = Attempt {
                state: state.clone(),
                number,
                previous: previous.take(),
                landed,
            };
            let Some(change) = plan.plan(attempt).await? else {
                return Ok(None);
            };
            let (entry, next) = self.build(&state, change);
            let key = (self.layout.entry)(stream, entry.seq);
            let created = self
                .io
                .create_record_with(&key, self.codec.encode(&entry), |bytes| {
                    self.codec
                        .decode(key.as_ref(), bytes)
                        .map(|e| (e.commit_id == entry.commit_id, e))
                })
                .await?;
            match created {
                Created::Mine => {
                    let counters = &self.io.counters;
                    counters.commits.fetch_add(1, Relaxed);
                    if entry.checkpoint.is_some() {
                        counters.checkpoints.fetch_add(1, Relaxed);
                    }
                    self.most_lost.fetch_max(number as usize, Relaxed);
                    let state = self.remember(stream, Arc::new(next));
                    if Self::hints(entry.seq) {
                        self.write_hint(stream, entry.seq).await;
                    }
                    return Ok(Some(Committed {
                        entry,
                        state,
                        lost: number,
                    }));
                }
                Created::Theirs(winner) => {
                    self.io.counters.conflicts.fetch_add(1, Relaxed);
                    let waited = started.elapsed();
                    if waited >= self.give_up_after() {
                        return Err(Error::Contended {
                            namespace: stream.to_string(),
                            attempts: number + 1,
                            waited,
                        });
                    }
                    tracing::debug!(stream, seq = entry.seq, number, "lost a commit race");
                    super::io::backoff(number).await;
                    // Start from the winner's entry we already hold.
                    let mut moved = (*state).clone();
                    moved.apply(&winner, key.as_ref())?;
                    previous = Some(state);
                    state = self.advance(stream, Some(Arc::new(moved))).await?;
                }
            }
        }
        unreachable!("the attempt counter does not run out before the time bound")
    }

    fn build(&self, state: &Versioned<S>, change: S::Change) -> (Entry<S>, Versioned<S>) {
        let seq = state.seq + 1;
        let mut next = state.clone(); // persistent maps: no copy of the entries
        next.value.apply(&change);
        // Hinted entries must be checkpoints, so a cold reader needs no chain
        // behind the hint.
        let checkpoint = next.value.small() || Self::hints(seq) || seq - state.base >= CHAIN_MAX;
        let base = if checkpoint { seq } else { state.base };
        let entry = Entry {
            seq,
            commit_id: uuid::Uuid::new_v4().to_string(),
            base,
            change,
            checkpoint: checkpoint.then(|| next.value.clone()),
        };
        next.seq = seq;
        next.base = base;
        (entry, next)
    }

    /// The state right after entry `seq` (immutable, so the entries come
    /// from the cache after the first read): its checkpoint plus the chain.
    pub async fn state_at(&self, stream: &str, seq: u64) -> Result<Versioned<S>> {
        let mut state = Versioned::default();
        if seq == 0 {
            return Ok(state);
        }
        let key = |s| (self.layout.entry)(stream, s).to_string();
        let last = self
            .entry(stream, seq)
            .await?
            .ok_or_else(|| Error::NotFound(format!("commit {seq} of {stream:?}")))?;
        let start = if last.checkpoint.is_some() {
            seq
        } else {
            last.base.max(1)
        };
        let chain = self.entries(stream, start, seq).await?;
        state.seq = start - 1;
        for entry in &chain {
            if entry.seq == start && entry.checkpoint.is_none() && start > 1 {
                return Err(Error::Corrupt {
                    key: key(start),
                    reason: "base entry is not a checkpoint".into(),
                });
            }
            state.apply(entry, &key(entry.seq))?;
        }
        Ok(state)
    }
}
