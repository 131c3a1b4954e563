//! The commit protocol as a unit, over a toy state type and codec, on every
//! backend: racing writers lose nothing and each plan sees the exact state
//! it lands on; a lost race costs one read-back; ambiguous writes settle
//! by read-back; stale, damaged or missing hints only slow a cold reader;
//! a commit that keeps losing gives up after its time bound, having
//! committed nothing. Then the registry on it: a publish that loses to a
//! commit it did not depend on is re-based without compiling again, and
//! one that loses to a commit it depended on is compiled and checked again
//! on the new state.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::TestStore;
use common::interpose::Interposer;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use protoshelf::compat::Policy;
use protoshelf::objstore::faults::{Fault, FaultyStore};
use protoshelf::objstore::io::Io;
use protoshelf::objstore::metrics::{Instrumented, RequestCounts};
use protoshelf::objstore::protocol::{
    Attempt, CHAIN_MAX, Entry, Layout, ObjectCodec, Protocol, Sequenced,
};
use protoshelf::objstore::{Backend, url};
use protoshelf::registry::{Registry, RegistryStats, SourceFile};
use protoshelf::{Error, ObjStore};
use serde::{Deserialize, Serialize};

on_every_backend!(
    racing_commits_lose_nothing_and_plan_on_the_state_they_land_on,
    a_lost_race_costs_one_read_back,
    a_lost_race_whose_winner_reads_late_is_still_a_lost_race,
    ambiguous_writes_are_settled_by_reading_back,
    stale_damaged_or_missing_hints_only_slow_a_cold_reader,
    a_commit_that_keeps_losing_gives_up_and_commits_nothing,
    a_damaged_entry_is_damage_never_an_older_state_and_repair_keeps_every_commit,
    publish_losing_to_an_unrelated_commit_is_rebased_without_recompiling,
    publish_losing_to_a_commit_it_depends_on_is_checked_again,
    a_publish_dropping_a_file_is_checked_again_after_any_commit,
);

/// The toy state: a total, and what each writer added.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Tally {
    total: u64,
    by: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Add {
    who: String,
    n: u64,
    /// The total after this change, as its plan computed it from the state
    /// it was given: replay checks that state was the one it landed on.
    after: u64,
}

impl Sequenced for Tally {
    type Change = Add;

    fn apply(&mut self, c: &Add) {
        self.total += c.n;
        *self.by.entry(c.who.clone()).or_default() += c.n;
    }

    /// Small with up to two writers: a third turns entries into changes
    /// with periodic checkpoints.
    fn small(&self) -> bool {
        self.by.len() <= 2
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    seq: u64,
    commit_id: String,
    base: u64,
    change: Add,
    checkpoint: Option<Tally>,
}

struct Json;

impl ObjectCodec<Entry<Tally>> for Json {
    fn encode(&self, e: &Entry<Tally>) -> Bytes {
        let stored = Stored {
            seq: e.seq,
            commit_id: e.commit_id.clone(),
            base: e.base,
            change: e.change.clone(),
            checkpoint: e.checkpoint.clone(),
        };
        serde_json::to_vec(&stored).unwrap().into()
    }

    fn decode(&self, key: &str, bytes: &[u8]) -> protoshelf::Result<Entry<Tally>> {
        let s: Stored = serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Entry {
            seq: s.seq,
            commit_id: s.commit_id,
            base: s.base,
            change: s.change,
            checkpoint: s.checkpoint,
        })
    }
}

fn entry_key(stream: &str, seq: u64) -> Path {
    Path::from(format!("toy/{stream}/log/{seq:020}.json"))
}

fn hint_key(stream: &str) -> Path {
    Path::from(format!("toy/{stream}/hint.json"))
}

fn entries_dir(stream: &str) -> Path {
    Path::from(format!("toy/{stream}/log"))
}

const LAYOUT: Layout = Layout {
    entry: entry_key,
    entries: entries_dir,
    hint: hint_key,
};
const STREAM: &str = "s";

/// One writer's handle on the toy log: its own caches and counters, over
/// a fault injector.
struct Toy {
    protocol: Protocol<Tally, Json>,
    io: Arc<Io>,
    counts: Instrumented,
    faults: FaultyStore,
}

fn toy(t: &TestStore) -> Toy {
    toy_at(&t.url)
}

fn toy_at(url: &str) -> Toy {
    let backend = url::open(url).unwrap();
    let faults = FaultyStore::new(backend.store);
    let counts = Instrumented::new(Arc::new(faults.clone()));
    let io = Arc::new(Io::new(Arc::new(counts.clone()), 64 << 20));
    Toy {
        protocol: Protocol::new(io.clone(), Json, LAYOUT),
        io,
        counts,
        faults,
    }
}

impl Toy {
    /// Adds `n` for `who`; the commit's seq, id and races lost.
    async fn add(&self, who: &str, n: u64) -> protoshelf::Result<(u64, String, u32)> {
        let c = self
            .protocol
            .commit(STREAM, |a: Attempt<Tally>| async move {
                let after = a.state.total + n;
                let who = who.to_string();
                Ok(Some(Add { who, n, after }))
            })
            .await?
            .expect("an add always commits");
        Ok((c.entry.seq, c.entry.commit_id, c.lost))
    }

    async fn cost<T>(&self, f: impl std::future::Future<Output = T>) -> (T, RequestCounts) {
        let before = self.counts.counts();
        let out = f.await;
        (out, self.counts.counts() - before)
    }
}

fn counts(get: u64, get_not_found: u64, put: u64, put_conflict: u64) -> RequestCounts {
    RequestCounts {
        get,
        get_not_found,
        put,
        put_conflict,
        ..Default::default()
    }
}

/// With the one LIST a commit makes past the log's end.
fn listed(c: RequestCounts) -> RequestCounts {
    RequestCounts { list: 1, ..c }
}

/// Replays the whole log from a fresh handle: every entry's plan saw the
/// state right before it, and the latest state is the replay's.
async fn audit(t: &TestStore) -> Vec<Entry<Tally>> {
    let reader = toy(t);
    let latest = reader.protocol.latest(STREAM).await.unwrap();
    let entries = reader
        .protocol
        .entries(STREAM, 1, latest.seq)
        .await
        .unwrap();
    let mut replay = Tally::default();
    let mut ids = BTreeSet::new();
    for e in &entries {
        replay.apply(&e.change);
        assert_eq!(
            e.change.after, replay.total,
            "entry {} was planned on another state",
            e.seq
        );
        if let Some(cp) = &e.checkpoint {
            assert_eq!(cp, &replay, "checkpoint {} disagrees with replay", e.seq);
        }
        assert!(ids.insert(e.commit_id.clone()), "commit id reused");
    }
    assert_eq!(latest.value, replay);
    entries
}

async fn racing_commits_lose_nothing_and_plan_on_the_state_they_land_on(t: TestStore) {
    let (writers, each) = match t.backend {
        common::Backend::S3 => (6, 6),
        _ => (6, 12),
    };
    let t = Arc::new(t);
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let t = t.clone();
            tokio::spawn(async move {
                let h = toy(&t);
                let mut acks = Vec::new();
                for _ in 0..each {
                    acks.push(h.add(&format!("w{w}"), 1).await.unwrap());
                }
                (
                    acks,
                    h.io.counters
                        .conflicts
                        .load(std::sync::atomic::Ordering::Relaxed),
                )
            })
        })
        .collect();
    let mut acks = Vec::new();
    let mut conflicts = 0;
    for task in tasks {
        let (a, c) = task.await.unwrap();
        acks.extend(a);
        conflicts += c;
    }
    let entries = audit(&t).await;
    assert_eq!(entries.len(), writers * each, "a commit was lost");
    for (seq, id, _) in &acks {
        assert_eq!(
            &entries[*seq as usize - 1].commit_id,
            id,
            "acked {seq} lost"
        );
    }
    let lost: u64 = acks.iter().map(|(.., l)| u64::from(*l)).sum();
    assert_eq!(lost, conflicts, "every lost race is counted once");
    let max = acks.iter().map(|(.., l)| *l).max().unwrap();
    eprintln!(
        "{:?}: {writers} writers × {each} commits: {conflicts} races lost ({:.2} per commit, at most {max})",
        t.backend,
        conflicts as f64 / entries.len() as f64
    );
}

async fn a_lost_race_costs_one_read_back(t: TestStore) {
    let a = toy(&t);
    let b = toy(&t);
    a.add("a", 1).await.unwrap();
    // Warm, nothing new: the probe of the next entry, the LIST past it (no
    // gap), the create and the hint.
    let (r, c) = a.cost(a.add("a", 1)).await;
    assert_eq!(r.unwrap().0, 2);
    assert_eq!(c, listed(counts(1, 1, 2, 0)), "warm commit");
    // B wins the race while A's first attempt plans: A reads B's entry back,
    // probes past it, and plans again on the state with B's change.
    let seen = std::sync::Mutex::new(Vec::new());
    let plan = |at: Attempt<Tally>| {
        let (b, seen) = (&b, &seen);
        async move {
            let landed: Vec<String> = at.landed.iter().map(|e| e.change.who.clone()).collect();
            seen.lock().unwrap().push((at.number, at.state.seq, landed));
            if at.number == 0 {
                b.add("b", 10).await.unwrap();
            }
            let after = at.state.total + 1;
            Ok(Some(Add {
                who: "a".into(),
                n: 1,
                after,
            }))
        }
    };
    let (c, cost) = a.cost(a.protocol.commit(STREAM, plan)).await;
    let c = c.unwrap().unwrap();
    assert_eq!((c.entry.seq, c.lost), (4, 1));
    assert_eq!(
        seen.into_inner().unwrap(),
        [(0, 2, vec![]), (1, 3, vec!["b".to_string()])]
    );
    assert_eq!(c.state.total, 13);
    assert_eq!(
        cost,
        listed(counts(3, 2, 3, 1)),
        "probe, LIST, refused create, read-back, probe, create, hint"
    );
    // A cold handle before the first checkpoint a hint names: the hint
    // (latest 4: no LIST), the (small, so checkpoint) entries 1..=4, the
    // probe.
    let cold = toy(&t);
    let (s, c) = cold.cost(cold.protocol.latest(STREAM)).await;
    assert_eq!(s.unwrap().total, 13);
    assert_eq!(c, counts(6, 1, 0, 0), "cold read at seq 4");
    for seq in 5..=CHAIN_MAX {
        let (r, c) = a.cost(a.add("a", 1)).await;
        assert_eq!(r.unwrap().0, seq);
        assert_eq!(c, listed(counts(1, 1, 2, 0)), "commit {seq}");
    }
    audit(&t).await;
}

/// A loaded S3 may refuse a create (412) and then fail, or not yet answer,
/// the read of the winner's entry: the loser keeps reading (not writing)
/// until it sees the winner, then plans again on it. Before, five failed
/// reads turned the lost race into a storage error.
async fn a_lost_race_whose_winner_reads_late_is_still_a_lost_race(t: TestStore) {
    let a = toy(&t);
    let b = toy(&t);
    a.add("a", 1).await.unwrap();
    let plan = |at: Attempt<Tally>| {
        let (a, b) = (&a, &b);
        async move {
            if at.number == 0 {
                b.add("b", 10).await.unwrap();
                // Every read of the log fails for a while: the read-back of
                // the entry A's create finds taken comes first.
                a.faults.inject("toy/s/log/", Fault::FailReads, 6);
            }
            let after = at.state.total + 1;
            Ok(Some(Add {
                who: "a".into(),
                n: 1,
                after,
            }))
        }
    };
    let c = a.protocol.commit(STREAM, plan).await.unwrap().unwrap();
    assert_eq!((c.entry.seq, c.lost, c.state.total), (3, 1, 12));
    let reads_failed = a
        .faults
        .injected()
        .iter()
        .filter(|(f, _)| *f == Fault::FailReads)
        .count();
    assert_eq!(reads_failed, 6, "the read-back was refused six times");
    let entries = audit(&t).await;
    assert_eq!(entries.len(), 3);
}

async fn ambiguous_writes_are_settled_by_reading_back(t: TestStore) {
    let a = toy(&t);
    let mut expected = 0;
    for fault in [
        Fault::LandThenError,
        Fault::LandThenAlreadyExists,
        Fault::FailBeforeWrite,
    ] {
        a.faults.inject("toy/s/log/", fault, 1);
        let (seq, id, lost) = a
            .add("a", 1)
            .await
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        expected += 1;
        assert_eq!((seq, lost), (expected, 0), "{fault:?} commits exactly once");
        let entries = audit(&t).await;
        assert_eq!(entries.len() as u64, expected);
        assert_eq!(entries.last().unwrap().commit_id, id);
    }
    let c = &a.io.counters;
    let get = |v: &std::sync::atomic::AtomicU64| v.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(get(&c.ambiguous_settled), 2, "both landed writes are ours");
    assert_eq!(get(&c.write_retries), 1, "the write that never landed");
    assert_eq!(get(&c.conflicts), 0, "no race was lost to ourselves");
    // Storage keeps failing: a storage error, nothing committed.
    a.faults.inject("toy/s/log/", Fault::FailBeforeWrite, 100);
    assert!(matches!(a.add("a", 1).await, Err(Error::Storage(_))));
    assert_eq!(audit(&t).await.len() as u64, expected);
}

/// The seq the stored hint names (None: no hint, or not a hint).
async fn read_hint(raw: &Arc<dyn object_store::ObjectStore>) -> Option<u64> {
    let bytes = raw.get(&hint_key(STREAM)).await.ok()?.bytes().await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["seq"].as_u64()
}

async fn stale_damaged_or_missing_hints_only_slow_a_cold_reader(t: TestStore) {
    let w = toy(&t);
    // Three writers' worth of state: entries become changes, with
    // checkpoints at every CHAIN_MAX-th.
    let last = 2 * CHAIN_MAX + 5;
    for i in 0..last {
        w.add(["x", "y", "z"][i as usize % 3], i).await.unwrap();
    }
    let expected = w.protocol.latest(STREAM).await.unwrap();
    assert_eq!(expected.seq, last);
    let entries = audit(&t).await;
    let checkpoints: Vec<u64> = entries
        .iter()
        .filter(|e| e.checkpoint.is_some())
        .map(|e| e.seq)
        .collect();
    assert!(checkpoints.contains(&(2 * CHAIN_MAX)), "{checkpoints:?}");
    assert!(
        entries[(2 * CHAIN_MAX) as usize].checkpoint.is_none(),
        "the entry after a hinted checkpoint is a change"
    );
    let raw = t.raw();
    let due = 2 * CHAIN_MAX;
    assert_eq!(read_hint(&raw).await, Some(due));
    // The right hint: hint, checkpoint, the changes after it, the probe.
    let cold = toy(&t);
    let (s, c) = cold.cost(cold.protocol.latest(STREAM)).await;
    assert_eq!(*s.unwrap(), *expected);
    assert_eq!(c, counts(3 + last - due, 1, 0, 0), "cold read, good hint");
    // A hint is written after the entries it names exist, and entries are
    // never deleted: one naming entries past the log's end is damage.
    let ahead: [(&[u8], u64); 2] = [
        (br#"{"seq":99}"#, 99),
        (br#"{"seq":16,"latest":99}"#, last + 1),
    ];
    for (bytes, missing) in ahead {
        raw.put(&hint_key(STREAM), bytes.to_vec().into())
            .await
            .unwrap();
        match toy(&t).protocol.latest(STREAM).await {
            Err(Error::Corrupt { key, .. }) => {
                assert_eq!(key, entry_key(STREAM, missing).to_string())
            }
            other => panic!("a hint ahead of the log was believed or ignored: {other:?}"),
        }
    }
    let planted: [(&str, Option<&[u8]>); 4] = [
        ("behind", Some(br#"{"seq":8}"#)),
        ("on a change entry", Some(br#"{"seq":19}"#)),
        ("damaged", Some(b"{not json")),
        ("missing", None),
    ];
    for (what, hint) in planted {
        match hint {
            Some(bytes) => raw
                .put(&hint_key(STREAM), bytes.to_vec().into())
                .await
                .map(|_| ())
                .unwrap(),
            None => raw.delete(&hint_key(STREAM)).await.unwrap(),
        }
        let cold = toy(&t);
        let (s, c) = cold.cost(cold.protocol.latest(STREAM)).await;
        assert_eq!(*s.unwrap(), *expected, "hint {what}");
        // Never more than walking the whole log; a hint that names an
        // entry still saves the walk up to its checkpoint.
        assert!(c.get <= last + 3, "hint {what}: {c}");
        // Readers never write: the hint is left for the next commit.
        assert_eq!(c.put + c.delete, 0, "hint {what}: the reader wrote: {c}");
        // And the state at any earlier commit is still exact.
        let at = cold.protocol.state_at(STREAM, 11).await.unwrap();
        assert_eq!(at.total, (0..11).sum::<u64>(), "state_at after hint {what}");
    }
}

async fn a_commit_that_keeps_losing_gives_up_and_commits_nothing(t: TestStore) {
    let a = toy(&t);
    let b = toy(&t);
    a.add("a", 1).await.unwrap();
    a.protocol.set_give_up_after(Duration::from_secs(1));
    // Every attempt of A loses: B commits while A plans.
    let plan = |at: Attempt<Tally>| {
        let b = &b;
        async move {
            b.add("b", 1).await.unwrap();
            let after = at.state.total + 1;
            Ok(Some(Add {
                who: "late".into(),
                n: 1,
                after,
            }))
        }
    };
    let err = a.protocol.commit(STREAM, plan).await.unwrap_err();
    let Error::Contended {
        attempts, waited, ..
    } = &err
    else {
        panic!("expected Contended, got {err}");
    };
    assert!(*attempts >= 2 && *waited >= Duration::from_secs(1), "{err}");
    assert_eq!(err.exit_code(), 3);
    let msg = err.to_string();
    assert!(
        msg.contains("nothing was committed") && msg.contains("safe to"),
        "{msg}"
    );
    let entries = audit(&t).await;
    assert!(
        entries.iter().all(|e| e.change.who != "late"),
        "a lost attempt landed"
    );
    assert_eq!(entries.len() as u32, 1 + attempts);
    // Once the other writer is quiet, the same commit goes through.
    let (seq, _, lost) = a.add("late", 1).await.unwrap();
    assert_eq!((seq, lost), (entries.len() as u64 + 1, 0));
}

// --- The registry on the protocol -------------------------------------

fn file(path: &str, text: &str) -> Vec<SourceFile> {
    vec![SourceFile::new(path, text)]
}

const BASE_V1: &str = "syntax = \"proto3\";\npackage base;\nmessage Money { int64 units = 1; }\n";
const BASE_V2: &str = "syntax = \"proto3\";\npackage base;\nmessage Money { int64 units = 1; string currency = 2; }\n";
const BASE_GONE: &str = "syntax = \"proto3\";\npackage base;\nmessage Coin { int64 units = 1; }\n";

fn app(package: &str, message: &str) -> String {
    format!(
        "syntax = \"proto3\";\npackage {package};\nimport \"base/base.proto\";\nmessage {message} {{ base.Money price = 1; }}\n"
    )
}

/// A registry whose log PUTs can be preceded by another writer's work, and
/// a second, independent registry on the same store.
async fn racing_registries(t: &TestStore) -> (Registry, Interposer, Registry) {
    let backend = url::open(&t.url).unwrap();
    let interposer = Interposer::new(backend.store.clone());
    let store = ObjStore::from_backend(Backend {
        store: Arc::new(interposer.clone()),
        ..backend
    })
    .await
    .unwrap();
    let a = Registry::new(store);
    let b = Registry::new(t.reopen().await);
    a.create_namespace("shop", Policy::Strict, Default::default())
        .await
        .unwrap();
    a.publish(
        "shop",
        "base",
        file("base/base.proto", BASE_V1),
        Default::default(),
    )
    .await
    .unwrap();
    a.promote("shop", false).await.unwrap();
    (a, interposer, b)
}

/// Makes `other` run `work` right before `a`'s next commit reaches storage.
fn before_next_commit<F>(interposer: &Interposer, other: &Registry, work: F)
where
    F: Fn(Registry) -> futures::future::BoxFuture<'static, ()> + Send + 'static,
{
    let other = other.clone();
    interposer.before_put("ns/shop/log/", 1, Box::new(move |_, _| work(other.clone())));
}

/// Makes `other` publish one file as `schema` right before `a`'s next
/// commit reaches storage.
fn publish_before_next_commit(
    interposer: &Interposer,
    other: &Registry,
    schema: &'static str,
    path: &'static str,
    text: String,
) {
    before_next_commit(interposer, other, move |b| {
        let text = text.clone();
        Box::pin(async move {
            b.publish("shop", schema, file(path, &text), Default::default())
                .await
                .unwrap();
        })
    });
}

fn delta(before: RegistryStats, after: RegistryStats) -> (u64, u64) {
    (after.plans - before.plans, after.rebases - before.rebases)
}

async fn publish_losing_to_an_unrelated_commit_is_rebased_without_recompiling(t: TestStore) {
    let (a, interposer, b) = racing_registries(&t).await;
    // B publishes another schema (its own directory and package) in the
    // middle of A's publish: A's checks read nothing B changed.
    publish_before_next_commit(
        &interposer,
        &b,
        "other",
        "other/o.proto",
        app("other", "O").to_string(),
    );
    let before = a.stats();
    let (published, cost) = {
        let s = a.store();
        let r0 = s.requests();
        let p = a
            .publish(
                "shop",
                "orders",
                file("orders/o.proto", &app("orders", "Order")),
                Default::default(),
            )
            .await
            .unwrap();
        (p, s.requests() - r0)
    };
    assert_eq!(delta(before, a.stats()), (1, 1), "one plan, one re-base");
    assert_eq!(a.store().protocol_stats().conflicts, 1);
    let state = b.store().namespace_state("shop").await.unwrap();
    assert_eq!(state.pointers("orders").staged, Some(published.version));
    assert_eq!(
        state.pointers("other").staged,
        Some(1),
        "the winner's stage kept"
    );
    eprintln!(
        "{:?}: publish that lost one race and re-based: {cost}",
        t.backend
    );

    // A promote landing first moves no proposed version: re-based too.
    before_next_commit(&interposer, &b, |b| {
        Box::pin(async move {
            b.promote("shop", false).await.unwrap();
        })
    });
    let before = a.stats();
    a.publish(
        "shop",
        "billing",
        file("billing/b.proto", &app("billing", "Bill")),
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(delta(before, a.stats()), (1, 1), "re-based onto a promote");
    let state = b.store().namespace_state("shop").await.unwrap();
    assert_eq!(state.pointers("orders").current, Some(1), "promoted by B");
    assert_eq!(state.pointers("billing").staged, Some(1));
    // What A staged was checked: the merged tree compiles and promotes.
    a.promote("shop", false).await.unwrap();
    let tree = a
        .load_tree("shop", protoshelf::registry::view::Tree::Current)
        .await
        .unwrap();
    assert_eq!(tree.len(), 4);
}

async fn publish_losing_to_a_commit_it_depends_on_is_checked_again(t: TestStore) {
    let (a, interposer, b) = racing_registries(&t).await;
    // B stages a new version of the schema A imports: A compiles again and
    // its version records the new dependency.
    publish_before_next_commit(
        &interposer,
        &b,
        "base",
        "base/base.proto",
        BASE_V2.to_string(),
    );
    let before = a.stats();
    let p = a
        .publish(
            "shop",
            "orders",
            file("orders/o.proto", &app("orders", "Order")),
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(delta(before, a.stats()), (2, 0), "planned again");
    let deps = a
        .store()
        .get_version_deps("shop", "orders", p.version)
        .await
        .unwrap();
    let on: Vec<(&str, u64)> = deps
        .iter()
        .map(|d| (d.schema_id.as_str(), d.version))
        .collect();
    assert_eq!(on, [("base", 2)], "compiled against the winner's base");

    // B stages a base without the message A uses: A's retry compiles
    // against it and fails, staging nothing.
    publish_before_next_commit(
        &interposer,
        &b,
        "base",
        "base/base.proto",
        BASE_GONE.to_string(),
    );
    let seq = b.store().namespace_state("shop").await.unwrap().seq;
    let err = a
        .publish(
            "shop",
            "invoices",
            file("invoices/i.proto", &app("invoices", "Invoice")),
            Default::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Compile(_)), "{err}");
    let state = b.store().namespace_state("shop").await.unwrap();
    assert_eq!(state.seq, seq + 1, "only B's commit landed");
    assert_eq!(state.pointers("invoices").staged, None);

    // B claims A's package and defines the same name (in a directory of
    // its own): A's ownership check runs again and refuses.
    b.publish(
        "shop",
        "base",
        file("base/base.proto", BASE_V1),
        Default::default(),
    )
    .await
    .unwrap();
    before_next_commit(&interposer, &b, |b| {
        Box::pin(async move {
            let text = app("payments", "Payment");
            b.publish(
                "shop",
                "rival",
                file("rival/p.proto", &text),
                Default::default(),
            )
            .await
            .unwrap();
        })
    });
    let before = a.stats();
    let err = a
        .publish(
            "shop",
            "payments",
            file("payments/p.proto", &app("payments", "Payment")),
            Default::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput(m) if m.contains("payments.Payment")),
        "{err}"
    );
    assert_eq!(delta(before, a.stats()), (2, 0));

    // A settings change (the policy) is something every check may read:
    // planned again.
    before_next_commit(&interposer, &b, |b| {
        Box::pin(async move {
            b.set_policy("shop", Policy::None).await.unwrap();
        })
    });
    let before = a.stats();
    a.publish(
        "shop",
        "ledger",
        file("ledger/l.proto", &app("ledger", "Entry")),
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        delta(before, a.stats()),
        (2, 0),
        "planned again after a policy change"
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Harm {
    Delete,
    Truncate,
    /// Another entry's bytes (valid JSON, the wrong seq).
    Swap,
}

/// Each kind of entry (a change before the hinted checkpoint, that
/// checkpoint, a change after it, the newest entry) deleted, truncated or
/// replaced, with the hint and without it, in a copy of one log:
/// - a cold reader gets the exact state or an error naming the damaged
///   or missing entry's key, never an older state (the one exception: the
///   newest entry and the hint both deleted leave no trace at all);
/// - a handle that saw the end never answers less;
/// - a commit never lands on top of a gap;
/// - `repair` brings the log back: the seq does not go back, every commit
///   a later checkpoint covers keeps its effect, a commit nothing covers
///   is reported lost, and the next commit lands after the end.
async fn a_damaged_entry_is_damage_never_an_older_state_and_repair_keeps_every_commit(
    t: TestStore,
) {
    let w = toy(&t);
    let last = 2 * CHAIN_MAX + 5;
    for i in 0..last {
        w.add(["x", "y", "z"][i as usize % 3], i).await.unwrap();
    }
    let expected = w.protocol.latest(STREAM).await.unwrap();
    let entries = audit(&t).await;
    let template = t.raw();
    let hinted = 2 * CHAIN_MAX;
    let kinds = [
        ("change before the hint", 5),
        ("hinted checkpoint", hinted),
        ("change after the hint", hinted + 2),
        ("newest", last),
    ];
    assert!(entries[4].checkpoint.is_none() && entries[hinted as usize + 1].checkpoint.is_none());
    assert!(entries[hinted as usize - 1].checkpoint.is_some());
    let mut table = Vec::new();
    for (kind, seq) in kinds {
        for harm in [Harm::Delete, Harm::Truncate, Harm::Swap] {
            for with_hint in [true, false] {
                let case = format!(
                    "{kind} {harm:?}{}",
                    if with_hint { "" } else { ", no hint" }
                );
                let (url, _dir) = common::fresh_url(t.backend).await.unwrap();
                let raw = url::open(&url).unwrap().store;
                common::state::copy_all(&template, &raw).await;
                let seen = toy_at(&url);
                assert_eq!(seen.protocol.latest(STREAM).await.unwrap().seq, last);
                let key = entry_key(STREAM, seq);
                match harm {
                    Harm::Delete => raw.delete(&key).await.unwrap(),
                    Harm::Truncate | Harm::Swap => {
                        let bytes = if harm == Harm::Swap {
                            raw.get(&entry_key(STREAM, seq - 1))
                                .await
                                .unwrap()
                                .bytes()
                                .await
                                .unwrap()
                        } else {
                            let b = raw.get(&key).await.unwrap().bytes().await.unwrap();
                            b.slice(..b.len() / 2)
                        };
                        raw.put(&key, bytes.into()).await.unwrap();
                    }
                }
                if !with_hint {
                    raw.delete(&hint_key(STREAM)).await.unwrap();
                }
                let traceless = harm == Harm::Delete && seq == last && !with_hint;
                // A cold reader.
                let cold = match toy_at(&url).protocol.latest(STREAM).await {
                    Ok(s) if *s == *expected => "exact state",
                    Ok(s) if traceless && s.seq == last - 1 => "the state before (no trace)",
                    Ok(s) => panic!(
                        "{case}: a cold reader got seq {} total {}",
                        s.seq, s.value.total
                    ),
                    Err(Error::Corrupt { key: k, .. }) => {
                        assert_eq!(k, key.to_string(), "{case}: the error names another key");
                        "damage naming the key"
                    }
                    Err(e) => panic!("{case}: {e}"),
                };
                // The handle that saw the end.
                match seen.protocol.latest(STREAM).await {
                    Ok(s) => assert_eq!(*s, *expected, "{case}: a handle went back"),
                    Err(e) => assert!(matches!(e, Error::Corrupt { .. }), "{case}: {e}"),
                }
                // A fresh writer: lands after the end, or refuses.
                let writer = toy_at(&url);
                let commit = match writer.add("w", 1).await {
                    Ok((s, _, _)) if s == last + 1 => "lands after the end",
                    Ok((s, _, _)) if traceless && s == last => "lands on the untraceable slot",
                    Ok((s, _, _)) => panic!("{case}: a commit landed at {s}, inside the log"),
                    Err(Error::Corrupt { .. }) => "refused: damage",
                    Err(e) => panic!("{case}: {e}"),
                };
                // Repair, then a fresh reader.
                let repaired = toy_at(&url)
                    .protocol
                    .repair(STREAM, |s, _| Add {
                        who: "repair".into(),
                        n: 0,
                        after: s.value.total,
                    })
                    .await
                    .unwrap();
                let lost: Vec<u64> = repaired
                    .replaced
                    .iter()
                    .filter(|r| !r.recovered)
                    .map(|r| r.seq)
                    .collect();
                let after = toy_at(&url).protocol.latest(STREAM).await.unwrap();
                assert!(
                    after.seq >= last,
                    "{case}: repair went back to {}",
                    after.seq
                );
                if lost.is_empty() && !traceless {
                    let mine = u64::from(commit == "lands after the end");
                    assert_eq!(
                        after.value.total,
                        expected.value.total + mine,
                        "{case}: repair lost a commit"
                    );
                } else {
                    assert!(lost.iter().all(|l| *l == seq), "{case}: lost {lost:?}");
                }
                let (next, _, _) = toy_at(&url).add("after", 1).await.unwrap();
                assert_eq!(next, after.seq + 1, "{case}");
                table.push(format!(
                    "{case}: cold reader {cold}; commit {commit}; repair replaced {:?}, lost {lost:?}",
                    repaired.replaced.iter().map(|r| r.seq).collect::<Vec<_>>()
                ));
            }
        }
    }
    eprintln!("damaged log on {:?}:\n  {}", t.backend, table.join("\n  "));
}

/// A publish that stops defining a file asks the whole tree whether it is
/// imported: a winner that staged an importer of that file in between
/// claims nothing the plan read, yet must make it plan again (and refuse)
/// rather than re-base onto a tree whose import it would leave dangling.
async fn a_publish_dropping_a_file_is_checked_again_after_any_commit(t: TestStore) {
    let (a, interposer, b) = racing_registries(&t).await;
    publish_before_next_commit(
        &interposer,
        &b,
        "orders",
        "orders/o.proto",
        app("orders", "Order").to_string(),
    );
    let before = a.stats();
    // base's file moves to another path (nothing imports it when planned).
    let e = a
        .publish(
            "shop",
            "base",
            file("moved/base.proto", BASE_V1),
            Default::default(),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("base/base.proto") && e.to_string().contains("\"orders\""),
        "{e}"
    );
    assert_eq!(
        delta(before, a.stats()),
        (2, 0),
        "planned again, not re-based"
    );
    let state = b.store().namespace_state("shop").await.unwrap();
    assert_eq!(state.pointers("base").staged, None, "nothing staged");
    assert_eq!(state.pointers("orders").staged, Some(1));
}
