//! The commit protocol, generic over the state it sequences: a log of
//! numbered, immutable entries per stream (a namespace, for protoshelf).
//!
//! Creating entry N+1 with create-if-absent *is* the commit, so the only
//! primitive needed is one every backend has (LocalFileSystem included).
//! An entry is a change, or a checkpoint carrying the whole state; the hint
//! (plain overwrite, never trusted) lets a cold reader start near the end.
//! Every `CHAIN_MAX`-th entry is a checkpoint, which the hint names; the
//! hint also names the newest commit, and is rewritten after every commit:
//! it is what shows a log that lost its newest entry.
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
//! - commit: the reads above + 1 LIST past the end (no gap under the
//!   commit) + the codec's markers (a PUT each, before the entry) + 1
//!   conditional PUT + 1 hint PUT; a lost race adds the
//!   read-back of the winner
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
use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::io::{Created, Io};
use super::records::{HeadHint, from_json, to_json};
use crate::error::{Error, Result};

/// Every entry whose seq is a multiple of this is a checkpoint, and the
/// hint names the newest of them: a cold reader starts at the hinted checkpoint and
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

    /// What the hint carries of the state after its `latest` commit (for
    /// readers that accept an unconfirmed state); None: nothing.
    fn summary(&self) -> Option<super::records::StateSnapshot> {
        None
    }
}

/// Encodes values as stored bytes and back; `key` names the object in
/// errors.
pub trait ObjectCodec<T>: Send + Sync + 'static {
    fn encode(&self, value: &T) -> Bytes;
    fn decode(&self, key: &str, bytes: &[u8]) -> Result<T>;
    /// Empty objects a commit attempt creates before it creates the entry
    /// (an index readers may LIST; see `keys::move_marker`). Those of an
    /// attempt that lost are deleted (best effort); a reader checks a
    /// marker against the entry it names.
    fn markers(&self, _stream: &str, _value: &T) -> Vec<Path> {
        Vec::new()
    }
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
    /// The directory of a stream's entries, listed to find entries past a
    /// gap. Entries are its only objects, and each one's file name starts
    /// with its seq's digits.
    pub entries: fn(&str) -> Path,
    /// The stream's hint.
    pub hint: fn(&str) -> Path,
}

/// The seq an entry's file name starts with.
fn listed_seq(location: &Path) -> Option<u64> {
    let name = location.filename()?;
    let digits = name.split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

/// What a repair did about one entry it replaced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Replaced {
    pub seq: u64,
    pub key: String,
    /// `missing`, or why the stored bytes were not a valid entry.
    pub problem: String,
    /// A later checkpoint holds the whole state after it, so the latest
    /// state lost nothing; when false, the entry's change is lost.
    pub recovered: bool,
    /// The damaged bytes (lossy UTF-8, at most [`DAMAGED_SHOWN`] bytes), so
    /// people can see what the lost commit did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
}

/// How much of a damaged entry a repair report shows.
pub const DAMAGED_SHOWN: usize = 4096;

/// What [`Protocol::repair`] did.
#[derive(Debug, Clone)]
pub struct Repaired<S> {
    /// Entries replaced, oldest first (none: the log was intact).
    pub replaced: Vec<Replaced>,
    /// Whether the hint was rewritten (it was damaged, or missing).
    pub hint_rewritten: bool,
    /// The state at the end of the repaired log.
    pub state: Arc<Versioned<S>>,
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

    /// The hint, or `None` when it is missing or damaged (a damaged hint
    /// is only a slower read, never an error).
    pub(crate) async fn hint(&self, stream: &str) -> Result<Option<HeadHint>> {
        let key = (self.layout.hint)(stream);
        Ok(match self.io.get(&key).await? {
            Some(obj) => from_json::<HeadHint>(key.as_ref(), &obj.bytes).ok(),
            None => None,
        })
    }

    /// Whether entry `seq` must be a checkpoint that a hint may name: the
    /// multiples of `CHAIN_MAX`, so a hint names one of them or is stale.
    pub fn hints(seq: u64) -> bool {
        seq.is_multiple_of(CHAIN_MAX)
    }

    /// The checkpoint a hint names when the log ends at `end`.
    fn due(end: u64) -> u64 {
        end - end % CHAIN_MAX
    }

    async fn write_hint(&self, stream: &str, state: &Versioned<S>) {
        let latest = state.seq;
        let hint = HeadHint {
            seq: Self::due(latest),
            latest: Some(latest),
            state: state.value.summary(),
        };
        if let Err(e) = self
            .io
            .put_overwrite(&(self.layout.hint)(stream), to_json(&hint))
            .await
        {
            tracing::warn!(stream, "could not update the log hint: {e}");
        }
    }

    /// The stream's latest state: one GET when this handle is up to date.
    /// A handle never goes back: once it has seen entry N, it answers N or
    /// later, or an error.
    pub async fn latest(&self, stream: &str) -> Result<Arc<Versioned<S>>> {
        let known = self.cached(stream);
        self.advance(stream, known, false).await
    }

    /// The first entry after `seq` that a LIST of the stream's entries
    /// finds. Normally there is none (one LIST that returns nothing).
    async fn listed_after(&self, stream: &str, seq: u64) -> Result<Option<u64>> {
        let dir = (self.layout.entries)(stream);
        let offset = (self.layout.entry)(stream, seq);
        // Not every backend lists in key order (a local directory does
        // not), so take the lowest of all; past the end there are none.
        let mut listed = self.io.os.list_with_offset(Some(&dir), &offset);
        let mut first: Option<u64> = None;
        while let Some(meta) = listed.next().await {
            let meta = meta.map_err(Error::Storage)?;
            if let Some(n) = listed_seq(&meta.location).filter(|n| *n > seq) {
                first = Some(first.map_or(n, |f| f.min(n)));
            }
        }
        Ok(first)
    }

    /// Brings `known` (or the empty state) up to the end of the log.
    ///
    /// The end of a walk is checked against what says the log goes on:
    /// the hint's `latest` (read anyway by a cold walk, and read by a warm
    /// walk that moved), and, before a commit (`check_end`) or when the
    /// hint is missing or damaged, a LIST past the end. A log that stops
    /// before either is missing an entry: that is damage naming the
    /// missing key, never served as the state before it. A warm check that
    /// finds nothing new keeps its state (1 GET).
    async fn advance(
        &self,
        stream: &str,
        known: Option<Arc<Versioned<S>>>,
        check_end: bool,
    ) -> Result<Arc<Versioned<S>>> {
        let warm = known.is_some();
        let mut state = known.as_deref().cloned().unwrap_or_default();
        let mut found = 0u32;
        // The hint, once read (`Some(None)`: missing or damaged).
        let mut hint: Option<Option<HeadHint>> = None;
        if !warm {
            hint = Some(self.jump(stream, &mut state).await?);
        }
        loop {
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
            if warm && found == 0 && !check_end {
                break;
            }
            // A commit LISTs anyway, which tells more than the hint.
            if hint.is_none() && !check_end {
                hint = Some(self.hint(stream).await?);
            }
            let hint_lost = hint.as_ref().is_some_and(|h| h.is_none());
            let named = hint
                .as_ref()
                .and_then(|h| h.as_ref())
                .and_then(|h| h.latest)
                .filter(|l| *l > state.seq);
            let beyond = match named {
                Some(latest) => Some((latest, (self.layout.hint)(stream).to_string())),
                None if check_end || hint_lost => self
                    .listed_after(stream, state.seq)
                    .await?
                    .map(|n| (n, (self.layout.entry)(stream, n).to_string())),
                None => None,
            };
            let Some((next, witness)) = beyond else {
                break;
            };
            // Something says commit `next` exists: a commit that landed
            // since the GET (walk on), or a lost entry. A commit is only
            // created after the one before it exists, and the hint after
            // its entry, so reading the missing one again tells them apart.
            let missing = state.seq + 1;
            if self.entry(stream, missing).await?.is_none() {
                return Err(Error::Corrupt {
                    key: (self.layout.entry)(stream, missing).to_string(),
                    reason: format!(
                        "missing from the log, but {witness} shows commit {next} exists: commits were lost or damaged; `protoshelf verify --repair` rebuilds the log (docs/storage-format.md, Repair)"
                    ),
                });
            }
        }
        // A stale or missing hint is left as it is: readers never write
        // (a job with read-only credentials must be able to read), and the
        // next commit rewrites it.
        if warm && found == 0 {
            return Ok(known.expect("warm"));
        }
        Ok(self.remember(stream, Arc::new(state)))
    }

    /// Moves `state` to the checkpoint the hint names, reading only the
    /// entries since that entry's checkpoint (or since `state`, if newer).
    /// Returns the hint.
    async fn jump(&self, stream: &str, state: &mut Versioned<S>) -> Result<Option<HeadHint>> {
        let read = self.hint(stream).await?;
        let target = read.as_ref().map_or(0, |h| h.seq);
        if target <= state.seq {
            return Ok(read);
        }
        let Some(last) = self.entry(stream, target).await? else {
            // The hint is written only after the entry it names exists,
            // and entries are never deleted: the log lost its end.
            return Err(Error::Corrupt {
                key: (self.layout.entry)(stream, target).to_string(),
                reason: format!(
                    "missing, but {} names it: commits were lost; `protoshelf verify --repair` rebuilds the log (docs/storage-format.md, Repair)",
                    (self.layout.hint)(stream)
                ),
            });
        };
        let key = |seq| (self.layout.entry)(stream, seq).to_string();
        if last.checkpoint.is_some() {
            let mut fresh: Versioned<S> = Versioned {
                seq: target - 1,
                ..Default::default()
            };
            fresh.apply(&last, &key(target))?;
            *state = fresh;
            return Ok(read);
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
        Ok(read)
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
        // Never on top of a gap: the walk ends with a LIST past its end.
        let known = self.cached(stream);
        let mut state = self.advance(stream, known, true).await?;
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
            let markers = self.codec.markers(stream, &entry);
            self.create_markers(&markers).await?;
            let created = self
                .create_entry(&key, self.codec.encode(&entry), &entry.commit_id)
                .await?;
            match created {
                Created::Mine => {
                    let counters = &self.io.counters;
                    counters.commits.fetch_add(1, Relaxed);
                    if entry.checkpoint.is_some() {
                        counters.checkpoints.fetch_add(1, Relaxed);
                    }
                    self.most_lost.fetch_max(number as usize, Relaxed);
                    // After every commit: its `latest` is what tells a
                    // reader that the log's newest entry was lost.
                    self.write_hint(stream, &next).await;
                    let state = self.remember(stream, Arc::new(next));
                    return Ok(Some(Committed {
                        entry,
                        state,
                        lost: number,
                    }));
                }
                Created::Theirs(winner) => {
                    self.io.counters.conflicts.fetch_add(1, Relaxed);
                    self.delete_markers(&markers).await;
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
                    // The LIST at the start found no gap; entries are never
                    // deleted, so walking on is enough.
                    state = self.advance(stream, Some(Arc::new(moved)), false).await?;
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

    /// Rebuilds a damaged log in place: every entry that is missing, or
    /// whose bytes are not a valid entry of its seq, is replaced by the
    /// entry a commit of `filler`'s change would have written there on the
    /// state before it (the change should change nothing and say why).
    /// Entries are read from storage, not from this handle's cache.
    ///
    /// The log's end is the highest entry listed or the hint, whichever is
    /// later (a hint names a commit that existed), so the seq of a repaired
    /// log never goes back. Replacements are created with create-if-absent
    /// (a damaged entry is deleted first): a commit that lands on a slot
    /// first is kept as the entry there. A replaced entry is `recovered`
    /// when a later checkpoint holds the whole state after it; otherwise
    /// its change is lost, and the report says so (with what was left of
    /// its bytes). A damaged or missing hint is rewritten.
    pub async fn repair(
        &self,
        stream: &str,
        filler: impl Fn(&Versioned<S>, &Replaced) -> S::Change,
    ) -> Result<Repaired<S>> {
        let dir = (self.layout.entries)(stream);
        let listed: std::collections::BTreeSet<u64> = self
            .io
            .os
            .list(Some(&dir))
            .map_ok(|m| listed_seq(&m.location))
            .try_collect::<Vec<_>>()
            .await
            .map_err(Error::Storage)?
            .into_iter()
            .flatten()
            .collect();
        let hint_key = (self.layout.hint)(stream);
        let hint = match self.io.get(&hint_key).await? {
            None => None,
            Some(obj) => Some(from_json::<HeadHint>(hint_key.as_ref(), &obj.bytes)),
        };
        // A hint names commits that existed.
        let hint_named = match &hint {
            Some(Ok(h)) => h.seq.max(h.latest.unwrap_or(0)),
            _ => 0,
        };
        // Never below what this handle has seen either.
        let seen = self.cached(stream).map_or(0, |s| s.seq);
        let end = listed
            .last()
            .copied()
            .unwrap_or(0)
            .max(hint_named)
            .max(seen);
        // In order, a few reads ahead; nothing but the state is kept.
        let mut read = futures::stream::iter(1..=end)
            .map(|seq| {
                let listed = listed.contains(&seq);
                async move {
                    let key = (self.layout.entry)(stream, seq);
                    let obj = if listed {
                        self.io.get(&key).await?
                    } else {
                        None
                    };
                    Ok::<_, Error>((seq, key, obj))
                }
            })
            .buffered(16);
        let mut state: Versioned<S> = Versioned::default();
        let mut replaced: Vec<Replaced> = Vec::new();
        // Replaced entries no checkpoint has covered yet.
        let mut uncovered: Vec<usize> = Vec::new();
        while let Some(next) = read.next().await {
            let (seq, key, obj) = next?;
            let decoded = obj.as_ref().map(|o| {
                self.codec.decode(key.as_ref(), &o.bytes).and_then(|e| {
                    if e.seq == seq {
                        Ok(e)
                    } else {
                        Err(Error::Corrupt {
                            key: key.to_string(),
                            reason: format!("holds seq {}", e.seq),
                        })
                    }
                })
            });
            let problem = match decoded {
                Some(Ok(entry)) => {
                    if entry.checkpoint.is_some() {
                        for i in uncovered.drain(..) {
                            replaced[i].recovered = true;
                        }
                    }
                    state.apply(&entry, key.as_ref())?;
                    continue;
                }
                Some(Err(e)) => match e {
                    Error::Corrupt { reason, .. } => reason,
                    other => other.to_string(),
                },
                None => "missing".to_string(),
            };
            let damaged = obj.map(|o| {
                let shown = &o.bytes[..o.bytes.len().min(DAMAGED_SHOWN)];
                String::from_utf8_lossy(shown).into_owned()
            });
            let what = Replaced {
                seq,
                key: key.to_string(),
                problem,
                recovered: false,
                damaged,
            };
            // A copy this handle read before the damage is the entry
            // itself: put it back as it was.
            if let Some(good) = self.io.cached(&key).await
                && let Ok(entry) = self.codec.decode(key.as_ref(), &good.bytes)
                && entry.seq == seq
            {
                self.delete_entry(&key).await?;
                let created = self
                    .create_entry(&key, good.bytes, &entry.commit_id)
                    .await?;
                let entry = match created {
                    Created::Mine => entry,
                    Created::Theirs(winner) => winner,
                };
                if entry.checkpoint.is_some() {
                    for i in uncovered.drain(..) {
                        replaced[i].recovered = true;
                    }
                }
                state.apply(&entry, key.as_ref())?;
                replaced.push(Replaced {
                    recovered: true,
                    ..what
                });
                continue;
            }
            let (entry, after) = self.build(&state, filler(&state, &what));
            if what.damaged.is_some() {
                self.delete_entry(&key).await?;
            }
            let created = self
                .create_entry(&key, self.codec.encode(&entry), &entry.commit_id)
                .await?;
            match created {
                Created::Mine => {
                    tracing::warn!(stream, seq, problem = %what.problem, "replaced a damaged log entry");
                    // Even as a checkpoint, a filler covers nothing: its
                    // state lacks the lost change.
                    state = after;
                    uncovered.push(replaced.len());
                    replaced.push(what);
                }
                // A commit landed on the freed slot first (only at the end
                // of the log): it is the entry there.
                Created::Theirs(winner) => state.apply(&winner, key.as_ref())?,
            }
        }
        let hint_rewritten = !matches!(&hint, Some(Ok(h))
            if h.seq == Self::due(state.seq) && h.latest == Some(state.seq))
            && state.seq > 0;
        if hint_rewritten {
            self.write_hint(stream, &state).await;
        }
        // The rebuilt state replaces what this handle knew (its seq is no
        // lower: the end includes what this handle saw).
        let state = Arc::new(state);
        self.heads
            .lock()
            .unwrap()
            .insert(stream.to_string(), state.clone());
        Ok(Repaired {
            replaced,
            hint_rewritten,
            state,
        })
    }

    /// Creates entry `key` with create-if-absent; an ambiguous write is
    /// settled by reading it back and comparing `commit_id`.
    async fn create_entry(
        &self,
        key: &Path,
        bytes: Bytes,
        commit_id: &str,
    ) -> Result<Created<Entry<S>>> {
        self.io
            .create_record_with(key, bytes, |bytes| {
                self.codec
                    .decode(key.as_ref(), bytes)
                    .map(|e| (e.commit_id == commit_id, e))
            })
            .await
    }

    /// Creates an attempt's markers (unique keys: a plain PUT each). A
    /// failure fails the commit before its entry: nothing is committed, and
    /// markers without their entry are ignored by readers.
    async fn create_markers(&self, markers: &[Path]) -> Result<()> {
        // Futures collected first: a closure in the stream combinator
        // would not be `Send` for every caller's lifetime.
        let puts: Vec<_> = markers
            .iter()
            .map(|key| self.io.put_overwrite(key, Bytes::new()))
            .collect();
        futures::stream::iter(puts)
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Removes the markers of an attempt that lost (best effort: readers
    /// skip a marker whose entry holds another commit).
    async fn delete_markers(&self, markers: &[Path]) {
        let deletes: Vec<_> = markers.iter().map(|key| self.io.os.delete(key)).collect();
        let deleted: Vec<_> = futures::stream::iter(deletes)
            .buffer_unordered(16)
            .collect()
            .await;
        if let Some(e) = deleted.into_iter().find_map(|r| r.err()) {
            tracing::debug!("could not remove a lost attempt's marker: {e}");
        }
    }

    /// Deletes a damaged entry (already gone is fine) and what this
    /// handle cached of it.
    async fn delete_entry(&self, key: &Path) -> Result<()> {
        match self.io.os.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::Storage(e)),
        }
        self.io.forget(key).await;
        Ok(())
    }

    /// The state right after entry `seq` (immutable, so the entries come
    /// from the cache after the first read): its checkpoint plus the chain.
    pub async fn state_at(&self, stream: &str, seq: u64) -> Result<Versioned<S>> {
        let mut state = Versioned::default();
        if seq == 0 {
            return Ok(state);
        }
        let key = |s| (self.layout.entry)(stream, s).to_string();
        let Some(last) = self.entry(stream, seq).await? else {
            // Past the end is a caller's mistake; inside the log, damage.
            let latest = self.latest(stream).await?;
            return Err(if seq <= latest.seq {
                Error::Corrupt {
                    key: key(seq),
                    reason: format!(
                        "missing from the log, which goes on to commit {}",
                        latest.seq
                    ),
                }
            } else {
                Error::NotFound(format!("commit {seq} of {stream:?}"))
            });
        };
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
