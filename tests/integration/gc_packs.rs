//! gc of namespace sets, tree indexes and packs, on every backend: after
//! several large commits, gc collects the sets of entries superseded longer
//! than the grace period ago, the tree indexes superseded as long, and the
//! packs only those named; it keeps the newest ones, those superseded
//! within the grace period and anything younger than it. Afterwards the
//! namespace serves as before: its sets load, the mount's core reads the
//! whole current tree (a core holding a collected index reads blobs
//! instead), history reads, verify is clean and the next promote works.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use common::TestStore;
use object_store::{ObjectStore, ObjectStoreExt};
use protoshelf::fs::{FsCore, Options};
use protoshelf::objstore::gc::{Collectable, GcOptions, GcReport};
use protoshelf::registry::{BatchMember, Registry, SourceFile};

const NS: &str = "g";
const SCHEMAS: usize = 3;
/// Two schemas' files make a commit that writes a tree index (64 or more).
const FILES: usize = 40;

/// Round `round` of schema `s`'s files: every file's content changes with
/// the round.
fn files(s: usize, round: usize) -> Vec<SourceFile> {
    (0..FILES)
        .map(|f| {
            SourceFile::new(
                format!("gen/d{s}/f{f:02}.proto"),
                format!(
                    "syntax = \"proto3\";\npackage gen.d{s};\n// round {round}\nmessage M{f} {{ int64 n = 1; }}\n"
                ),
            )
        })
        .collect()
}

/// Publishes new files for `schemas` (all at round `round`) and promotes.
async fn commit(r: &Registry, schemas: &[usize], round: usize, sources: &mut Sources) {
    let members = schemas
        .iter()
        .map(|&s| BatchMember {
            schema_id: format!("gen.d{s}"),
            files: files(s, round),
        })
        .collect();
    r.publish_many(NS, members, Default::default())
        .await
        .unwrap();
    r.promote(NS, false).await.unwrap();
    for &s in schemas {
        for f in files(s, round) {
            sources.insert(format!("{NS}/current/{}", f.path), f.content);
        }
    }
}

type Sources = BTreeMap<String, Vec<u8>>;

async fn keys_under(raw: &Arc<dyn ObjectStore>, dir: &str) -> BTreeSet<String> {
    use futures::TryStreamExt;
    let listed: Vec<object_store::ObjectMeta> = raw
        .list(Some(&object_store::path::Path::from(dir)))
        .try_collect()
        .await
        .unwrap();
    listed.into_iter().map(|m| m.location.to_string()).collect()
}

/// The packs the tree index at `key` names.
async fn packs_of(raw: &Arc<dyn ObjectStore>, key: &str) -> BTreeSet<String> {
    let bytes = raw
        .get(&object_store::path::Path::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let tree: protoshelf::objstore::packs::TreeIndex = serde_json::from_slice(&bytes).unwrap();
    tree.packs
        .into_iter()
        .map(|p| format!("ns/{NS}/packs/{}", p.sha256))
        .collect()
}

/// The keys of the sets the namespace's sets head names.
async fn head_sets(t: &TestStore) -> BTreeSet<String> {
    let (_, sets) = t.reopen().await.sets_head(NS).await.unwrap().unwrap();
    [sets.current, sets.staged]
        .into_iter()
        .map(|sha| format!("ns/{NS}/sets/{sha}.binpb"))
        .collect()
}

fn core(url: &str, rt: tokio::runtime::Handle) -> FsCore {
    let store =
        tokio::task::block_in_place(|| rt.block_on(protoshelf::ObjStore::open(url))).unwrap();
    FsCore::new(
        store,
        rt,
        Options {
            namespaces: vec![NS.into()],
            refresh: Duration::from_secs(3600),
        },
    )
}

/// Every file of `sources` reads through `core` as published.
fn reads_all(core: &FsCore, sources: &Sources, prefix: &str) {
    tokio::task::block_in_place(|| {
        for (path, want) in sources {
            let path = path.replacen(&format!("{NS}/current"), prefix, 1);
            let got = core
                .content(&path)
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(&got[..], want.as_slice(), "{path}");
        }
    })
}

/// gc through a fresh handle.
async fn gc(t: &TestStore, grace: TimeDelta, dry_run: bool) -> GcReport {
    let opts = GcOptions { grace, dry_run };
    t.reopen().await.gc(opts).await.unwrap()
}

fn kinds(report: &GcReport, kind: Collectable) -> BTreeSet<String> {
    common::collected_keys(kind, report)
}

pub(crate) async fn gc_collects_superseded_sets_trees_and_packs(t: TestStore) {
    let r = Registry::new(t.store.clone());
    r.create_namespace(NS, Default::default(), Default::default())
        .await
        .unwrap();
    let raw = t.raw();
    let rt = tokio::runtime::Handle::current();
    let mut sources = Sources::new();
    // Round 1: every schema (a tree index and its packs).
    let all: Vec<usize> = (0..SCHEMAS).collect();
    commit(&r, &all, 1, &mut sources).await;
    let round1 = sources.clone();
    let seq1 = t.reopen().await.namespace_state(NS).await.unwrap().seq;
    // A mount that read the round-1 tree (and its index), not its files.
    let stale = core(&t.url, rt.clone());
    tokio::task::block_in_place(|| stale.list(&format!("{NS}/current/gen/d0")).unwrap());
    // Rounds 2 and 3: two schemas each, a new index each.
    commit(&r, &[0, 1], 2, &mut sources).await;
    commit(&r, &[1, 2], 3, &mut sources).await;
    let trees_old = keys_under(&raw, &format!("ns/{NS}/trees")).await;
    assert_eq!(trees_old.len(), 3, "{trees_old:?}");
    let sets_old = keys_under(&raw, &format!("ns/{NS}/sets")).await;
    let packs_old = keys_under(&raw, &format!("ns/{NS}/packs")).await;
    let head3 = head_sets(&t).await;
    // The newest index of round 3 (the first key: newest first).
    let tree3 = trees_old.iter().next().unwrap().clone();
    let packs3 = packs_of(&raw, &tree3).await;

    // Past a short grace period, round 4 supersedes round 3's index and
    // sets: both were the newest within the grace period, so they stay.
    // The grace period is set when each gc starts, 2.5 s past round 4's
    // commit, so the listing between them cannot make round 3 old on a
    // loaded machine; rounds 1 and 2 were superseded 6 s before round 4.
    tokio::time::sleep(Duration::from_secs(6)).await;
    commit(&r, &[0, 2], 4, &mut sources).await;
    let round4 = std::time::Instant::now();
    let grace = || TimeDelta::from_std(round4.elapsed()).unwrap() + TimeDelta::milliseconds(2500);
    let tree4 = keys_under(&raw, &format!("ns/{NS}/trees"))
        .await
        .into_iter()
        .find(|k| !trees_old.contains(k))
        .expect("round 4 wrote an index");
    let packs4 = packs_of(&raw, &tree4).await;
    let sets4 = head_sets(&t).await;
    let sets_young: BTreeSet<String> = keys_under(&raw, &format!("ns/{NS}/sets"))
        .await
        .difference(&sets_old)
        .cloned()
        .collect();
    let packs_young: BTreeSet<String> = keys_under(&raw, &format!("ns/{NS}/packs"))
        .await
        .difference(&packs_old)
        .cloned()
        .collect();

    let expected_trees: BTreeSet<String> = trees_old.iter().skip(1).cloned().collect();
    let expected_packs: BTreeSet<String> = packs_old
        .iter()
        .filter(|p| !packs3.contains(*p) && !packs4.contains(*p))
        .cloned()
        .collect();
    let expected_sets: BTreeSet<String> = sets_old
        .iter()
        .filter(|s| !head3.contains(*s) && !sets4.contains(*s))
        .cloned()
        .collect();
    assert!(!expected_packs.is_empty(), "rounds 1 and 2 left packs");
    assert!(
        expected_sets.len() >= 3,
        "rounds 1 to 3 left sets: {sets_old:?}"
    );

    // A dry run reports them and deletes nothing.
    let before = common::snapshot(&raw).await;
    let dry = gc(&t, grace(), true).await;
    assert_eq!(common::snapshot(&raw).await, before, "a dry run deletes");
    assert_eq!(kinds(&dry, Collectable::TreeIndex), expected_trees);
    assert_eq!(kinds(&dry, Collectable::Pack), expected_packs);
    assert_eq!(kinds(&dry, Collectable::NamespaceSet), expected_sets);
    assert!(dry.skipped.is_empty(), "{:?}", dry.skipped);
    // As `gc --json` prints them.
    let json = serde_json::to_value(&dry).unwrap();
    let kinds_json: BTreeSet<&str> = json["collected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds_json,
        BTreeSet::from(["namespace_set", "tree_index", "pack"])
    );

    let collector = t.reopen().await;
    let done = collector
        .gc(GcOptions {
            grace: grace(),
            dry_run: false,
        })
        .await
        .unwrap();
    let cost = collector.requests();
    assert_eq!(kinds(&done, Collectable::TreeIndex), expected_trees);
    assert_eq!(kinds(&done, Collectable::Pack), expected_packs);
    assert_eq!(kinds(&done, Collectable::NamespaceSet), expected_sets);
    let after: BTreeSet<String> = common::snapshot(&raw)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for c in &done.collected {
        assert!(!after.contains(&c.key), "{} still there", c.key);
    }
    // Kept: round 3's index and packs (superseded within the grace
    // period), everything younger than the grace period, both heads' sets.
    let kept: BTreeSet<&String> = [&tree3, &tree4]
        .into_iter()
        .chain(&packs3)
        .chain(&packs4)
        .chain(&packs_young)
        .chain(&head3)
        .chain(&sets4)
        .chain(&sets_young)
        .collect();
    for k in kept {
        assert!(after.contains(k), "{k} was collected");
    }
    eprintln!(
        "{:?}: gc collected {} sets, {} indexes, {} packs ({} bytes in all; {} objects kept); requests: {cost}",
        t.backend,
        expected_sets.len(),
        expected_trees.len(),
        expected_packs.len(),
        done.bytes,
        after.len()
    );

    // The namespace serves as before.
    let fresh = t.reopen().await;
    for staged in [false, true] {
        let set = fresh.namespace_set(NS, staged).await.unwrap().unwrap();
        assert!(!set.is_empty());
    }
    let report = fresh.verify(Some(NS)).await.unwrap();
    assert!(report.clean(), "{:?}", report.problems);
    let mount = core(&t.url, rt.clone());
    reads_all(&mount, &sources, &format!("{NS}/current"));
    tokio::task::block_in_place(|| {
        let set = mount.content(&format!("{NS}/current.binpb")).unwrap();
        assert!(!set.is_empty());
    });
    // History of round 1, whose index and set were collected.
    reads_all(&mount, &round1, &format!("{NS}/history/{seq1}"));
    // The mount that holds round 1's collected index reads the blobs.
    reads_all(&stale, &round1, &format!("{NS}/current"));

    // The next large promote works on what is left, and so does gc again.
    commit(&r, &[1, 2], 5, &mut sources).await;
    let report = t.reopen().await.verify(Some(NS)).await.unwrap();
    assert!(report.clean(), "{:?}", report.problems);
    reads_all(
        &core(&t.url, rt.clone()),
        &sources,
        &format!("{NS}/current"),
    );
    // Round 4's index and sets were superseded only now: with a grace
    // period longer than this test has run, they are kept whatever the
    // machine's load (round 3's may go only if superseded longer ago).
    let again = gc(&t, TimeDelta::minutes(10), false).await;
    let trees = kinds(&again, Collectable::TreeIndex);
    assert!(trees.iter().all(|k| *k == tree3), "{trees:?}");
    let sets = kinds(&again, Collectable::NamespaceSet);
    assert!(sets.is_disjoint(&sets4), "{sets:?}");
    assert!(kinds(&again, Collectable::Pack).is_disjoint(&packs4));
    reads_all(
        &core(&t.url, rt.clone()),
        &sources,
        &format!("{NS}/current"),
    );
    let report = t.reopen().await.verify(Some(NS)).await.unwrap();
    assert!(report.clean(), "{:?}", report.problems);
}

on_every_backend!(gc_collects_superseded_sets_trees_and_packs);
