//! The commit protocol's promises, on every backend: request counts per
//! operation, costs that do not grow with history, ambiguous writes settled
//! by read-back, and the format marker with its create-if-absent probe.

use crate::common;

use std::sync::Arc;

use common::TestStore;
use common::data::*;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use protoshelf::objstore::faults::{Fault, FaultyStore};
use protoshelf::objstore::log::CHAIN_MAX;
use protoshelf::objstore::metrics::RequestCounts;
use protoshelf::objstore::{Backend, url};

use protoshelf::{Error, ObjStore};

on_every_backend!(
    request_counts_per_operation,
    read_cost_and_commit_size_do_not_grow_with_history,
    ambiguous_writes_are_settled_by_reading_back,
    format_marker_and_create_if_absent_probe,
    a_writer_notices_an_endpoint_that_stopped_honouring_if_none_match,
);

/// Runs `f` and returns what it cost in requests.
async fn cost<T>(s: &ObjStore, f: impl std::future::Future<Output = T>) -> (T, RequestCounts) {
    let before = s.requests();
    let out = f.await;
    (out, s.requests() - before)
}

fn counts(get: u64, get_not_found: u64, put: u64) -> RequestCounts {
    RequestCounts {
        get,
        get_not_found,
        put,
        ..Default::default()
    }
}

async fn request_counts_per_operation(t: TestStore) {
    let s = &t.store;
    s.create_namespace(&namespace("ns")).await.unwrap();
    s.create_schema(&schema("ns", "a")).await.unwrap();
    let v1 = publish(s, "ns", "a", "one").await;
    s.set_staged("ns", "a", v1).await.unwrap();
    let mut table = Vec::new();

    // Warm reader, nothing changed: one GET that finds nothing.
    let (_, c) = cost(s, s.namespace_state("ns")).await;
    assert_eq!(c, counts(1, 1, 0), "warm unchanged check");
    table.push(("warm check, unchanged", c));

    let b = blob("ns", "message B {}");
    let (_, c) = cost(s, s.put_blob(&b)).await;
    assert_eq!(c, counts(0, 0, 1), "new blob");
    table.push(("put_blob (new)", c));
    let (_, c) = cost(s, s.put_blob(&b)).await;
    assert_eq!(c.total(), 0, "blob this handle stored");
    table.push(("put_blob (known)", c));

    let files = [protoshelf::model::VersionFile {
        path: "a.proto".into(),
        sha256: b.sha256.clone(),
        size: None,
    }];
    let (v2, c) = cost(
        s,
        s.create_version(&version("ns", "a", 0, "two"), &files, &[]),
    )
    .await;
    let v2 = v2.unwrap();
    assert_eq!(
        c,
        RequestCounts {
            list: 1,
            ..counts(0, 0, 2)
        },
        "create_version: LIST of newer versions + descriptor + manifest"
    );
    table.push(("create_version", c));

    let (_, c) = cost(s, s.set_staged("ns", "a", v2)).await;
    assert_eq!(
        c,
        RequestCounts {
            list: 1,
            ..counts(1, 1, 5)
        },
        "set_staged: state check + LIST past the end + staged namespace set + move marker + set marker + entry + hint"
    );
    table.push(("set_staged", c));

    let (_, c) = cost(s, s.promote("ns")).await;
    assert_eq!(
        c,
        RequestCounts {
            list: 1,
            ..counts(1, 1, 4)
        },
        "promote: state check + LIST past the end + move marker + set marker (the current set is the staged one this handle wrote) + entry + hint"
    );
    table.push(("promote", c));

    // A schema this handle just created has no version: number 1 needs no
    // LIST. If another writer made one meanwhile, the create falls back to
    // listing and takes the next number.
    s.create_schema(&schema("ns", "fresh")).await.unwrap();
    let (v, c) = cost(
        s,
        s.create_version(&version("ns", "fresh", 0, "f"), &files, &[]),
    )
    .await;
    assert_eq!(v.unwrap(), 1);
    assert_eq!(
        c,
        counts(0, 0, 2),
        "create_version of a new schema: descriptor + manifest"
    );
    table.push(("create_version (new schema)", c));
    s.create_schema(&schema("ns", "raced")).await.unwrap();
    let other = t.reopen().await;
    other
        .put_version(&version("ns", "raced", 1, "theirs"), &files, &[])
        .await
        .unwrap();
    let mine = version("ns", "raced", 0, "mine");
    let v = s.create_version(&mine, &files, &[]).await.unwrap();
    assert_eq!(v, 2, "a taken number 1 is listed past");

    let (_, c) = cost(s, s.get_schema("ns", "a")).await;
    assert_eq!(c, counts(1, 1, 0));
    table.push(("get_schema (warm)", c));

    let (_, c) = cost(s, s.get_version("ns", "a", v2)).await;
    assert_eq!(c.total(), 0, "immutable objects come from the cache");
    table.push(("get_version (cached)", c));

    // A cold handle before the first checkpoint a hint names: namespace
    // record, the hint (latest 3, so no LIST), entries 1..=3, the probe.
    let cold = t.reopen().await;
    let (_, c) = cost(&cold, cold.namespace_state("ns")).await;
    assert_eq!(c, counts(6, 1, 0), "cold open of a small namespace, seq 3");
    table.push(("cold namespace open (seq 3)", c));
    let (_, c) = cost(&cold, cold.get_version("ns", "a", v2)).await;
    assert_eq!(c, counts(2, 0, 0), "manifest + descriptor");
    table.push(("get_version (cold)", c));

    // Another writer commits: the warm reader sees it, then checks the
    // hint says no more: three GETs.
    t.reopen().await.set_staged("ns", "a", v1).await.unwrap();
    let (st, c) = cost(s, s.namespace_state("ns")).await;
    assert_eq!(st.unwrap().pointers("a").staged, Some(v1));
    assert_eq!(c, counts(3, 1, 0), "one new entry + probe + hint");
    table.push(("warm check, one new commit", c));

    // Every commit writes the hint; it names the newest CHAIN_MAX-th entry,
    // a checkpoint: a cold reader reads hint, checkpoint, the entries
    // since, probe.
    let mut seq = s.namespace_state("ns").await.unwrap().seq;
    while seq < CHAIN_MAX + 2 {
        let (info, c) = cost(
            s,
            s.set_staged("ns", "a", if seq % 2 == 0 { v1 } else { v2 }),
        )
        .await;
        seq = info.unwrap().seq;
        // Staging v1 (current) leaves the staged set as it was; staging v2
        // changes it (a set marker), and its set is a PUT only the first
        // time it is made.
        assert!(
            matches!(c.put, 3..=5),
            "commit {seq}: move marker, entry, hint (+ set marker, + a new staged set): {c}"
        );
    }
    let raw = t.raw();
    let hint = raw
        .get(&Path::from("ns/ns/head.json"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&hint).unwrap()["seq"],
        CHAIN_MAX
    );
    let cold = t.reopen().await;
    let (st, c) = cost(&cold, cold.namespace_state("ns")).await;
    assert_eq!(st.unwrap().seq, CHAIN_MAX + 2);
    assert_eq!(c, counts(6, 1, 0), "cold open 2 past the hint");
    table.push(("cold namespace open (hint + 2)", c));

    eprintln!("request counts on {:?}:", t.backend);
    for (op, c) in table {
        eprintln!("  {op:<28} {c}");
    }
}

async fn read_cost_and_commit_size_do_not_grow_with_history(t: TestStore) {
    let s = &t.store;
    s.create_namespace(&namespace("big")).await.unwrap();
    // Enough schemas that the state is past the small-state threshold, so
    // entries are deltas with periodic checkpoints.
    let n = 300;
    let ids: Vec<String> = (0..n).map(|i| format!("schema-{i:04}")).collect();
    let mut changes = Vec::new();
    for id in &ids {
        s.create_schema(&schema("big", id)).await.unwrap();
    }
    let v = {
        // One version per schema; the blob is shared.
        let mut out = Vec::new();
        for id in &ids {
            out.push(publish(s, "big", id, "same").await);
        }
        out
    };
    for (id, v) in ids.iter().zip(&v) {
        changes.push(protoshelf::store::StageChange {
            schema_id: id.clone(),
            version: Some(*v),
        });
    }
    s.stage("big", &changes).await.unwrap();
    s.promote("big").await.unwrap();

    let raw = t.raw();
    let mut delta_sizes = Vec::new();
    let mut checkpoint_sizes = Vec::new();
    let mut cold_gets = Vec::new();
    let commits = 3 * CHAIN_MAX as usize + 2;
    for i in 0..commits {
        // Same state size every time: re-stage one of two schemas.
        let info = s.set_staged("big", &ids[i % 2], v[i % 2]).await.unwrap();
        let key = Path::from(format!("ns/big/log/{:020}.json", info.seq));
        let bytes = raw.get(&key).await.unwrap().bytes().await.unwrap();
        let entry: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        if entry.get("state").is_some() {
            checkpoint_sizes.push(bytes.len());
        } else {
            delta_sizes.push(bytes.len());
        }
        let cold = t.reopen().await;
        let (st, c) = cost(&cold, cold.namespace_state("big")).await;
        assert_eq!(st.unwrap().seq, info.seq);
        cold_gets.push(c.get);
    }
    assert!(!checkpoint_sizes.is_empty() && !delta_sizes.is_empty());
    let spread = |v: &[usize]| v.iter().max().unwrap() - v.iter().min().unwrap();
    // Sizes vary only by the digits of numbers, never with history length.
    assert!(
        spread(&delta_sizes) < 16,
        "delta entries grew: {delta_sizes:?}"
    );
    assert!(
        spread(&checkpoint_sizes) < 16,
        "checkpoints grew: {checkpoint_sizes:?}"
    );
    let bound = CHAIN_MAX + 3; // namespace record + hint + chain + probe
    assert!(
        cold_gets.iter().all(|&g| g <= bound),
        "cold reads: {cold_gets:?}"
    );
    // The cost depends only on the position in the checkpoint cycle, not on
    // how long the history is. (The first cycle is cheaper by one: its chain
    // starts from the empty state, which needs no checkpoint read.)
    let k = CHAIN_MAX as usize;
    for i in k..cold_gets.len() - k {
        assert_eq!(
            cold_gets[i],
            cold_gets[i + k],
            "cold read cost grew with history: {cold_gets:?}"
        );
    }

    // A warm reader far behind catches up through the hint, not entry by entry.
    let behind = t.reopen().await;
    behind.namespace_state("big").await.unwrap();
    for i in 0..3 * CHAIN_MAX as usize {
        s.set_staged("big", &ids[i], v[i]).await.unwrap();
    }
    let (_, c) = cost(&behind, behind.namespace_state("big")).await;
    assert!(c.get <= CHAIN_MAX + 4, "catching up 24 commits took {c}");
    eprintln!(
        "{:?}: delta entry {}..{} B, checkpoint {}..{} B, cold reads {:?} GETs, catch-up over {} commits: {c}",
        t.backend,
        delta_sizes.iter().min().unwrap(),
        delta_sizes.iter().max().unwrap(),
        checkpoint_sizes.iter().min().unwrap(),
        checkpoint_sizes.iter().max().unwrap(),
        cold_gets,
        3 * CHAIN_MAX
    );
}

/// A handle whose backend injects faults.
async fn faulty(t: &TestStore) -> (ObjStore, FaultyStore) {
    let backend = url::open(&t.url).unwrap();
    let faults = FaultyStore::new(backend.store.clone());
    let store = ObjStore::from_backend(Backend {
        store: Arc::new(faults.clone()),
        ..backend
    })
    .await
    .unwrap();
    (store, faults)
}

async fn ambiguous_writes_are_settled_by_reading_back(t: TestStore) {
    let (s, faults) = faulty(&t).await;
    faults.inject("namespaces/ns", Fault::LandThenError, 1);
    s.create_namespace(&namespace("ns"))
        .await
        .expect("landed create is ours");
    s.create_schema(&schema("ns", "a")).await.unwrap();
    let v1 = publish(&s, "ns", "a", "one").await;

    let mut expected_seq = 0;
    for fault in [
        Fault::LandThenError,
        Fault::LandThenAlreadyExists,
        Fault::FailBeforeWrite,
    ] {
        faults.inject("/log/", fault, 1);
        let info = s
            .set_staged("ns", "a", v1)
            .await
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        expected_seq += 1;
        assert_eq!(info.seq, expected_seq, "{fault:?} must commit exactly once");
        // A fresh reader finds our entry, once, with our commit id.
        let reader = t.reopen().await;
        let entries = reader.log_entries("ns", 1, expected_seq).await.unwrap();
        assert_eq!(entries.last().unwrap().commit_id, info.commit_id);
        assert_eq!(
            reader.namespace_state("ns").await.unwrap().seq,
            expected_seq
        );
    }
    assert_eq!(faults.injected().len(), 4);
    let stats = s.protocol_stats();
    assert_eq!(stats.ambiguous_settled, 3, "{stats:?}");
    assert_eq!(
        stats.write_retries, 1,
        "only the write that never landed is retried: {stats:?}"
    );

    // A manifest that landed while the caller saw an error keeps its number.
    faults.inject("/versions/", Fault::LandThenAlreadyExists, 1);
    let v2 = publish(&s, "ns", "a", "two").await;
    assert_eq!(v2, v1 + 1);
    faults.inject("/versions/", Fault::LandThenError, 1);
    let v3 = publish(&s, "ns", "a", "three").await;
    assert_eq!(v3, v2 + 1);
    assert_eq!(s.list_versions("ns", "a").await.unwrap(), [v1, v2, v3]);
    assert_eq!(
        s.get_version("ns", "a", v3).await.unwrap().metadata["token"],
        "three"
    );

    // Nothing landed and the store keeps failing: a clear storage error.
    faults.inject("/log/", Fault::FailBeforeWrite, 100);
    let err = s.set_staged("ns", "a", v2).await.unwrap_err();
    assert!(matches!(err, Error::Storage(_)), "{err}");
    assert_eq!(
        t.reopen().await.namespace_state("ns").await.unwrap().seq,
        expected_seq
    );
}

async fn format_marker_and_create_if_absent_probe(t: TestStore) {
    let raw = t.raw();
    let marker: serde_json::Value = serde_json::from_slice(
        &raw.get(&Path::from("protoshelf.json"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(marker["format"], "protoshelf");
    assert_eq!(marker["format_version"], 3);
    assert_eq!(marker["reader_contract"], 1);
    assert!(t.reopen().await.format_marker().format_version == 3);
    // The probe leaves nothing behind.
    let leftovers = common::snapshot(&raw).await;
    assert!(
        leftovers.iter().all(|(k, _)| !k.starts_with("_probe")),
        "{leftovers:?}"
    );

    // A store written by a newer protoshelf is refused, clearly.
    let (newer, _dir) = common::fresh_url(t.backend).await.unwrap();
    let newer_raw = url::open(&newer).unwrap().store;
    let body = serde_json::json!({"format": "protoshelf", "format_version": 99,
        "created_at": "2030-01-01T00:00:00Z", "writer_id": "future"});
    newer_raw
        .put(
            &Path::from("protoshelf.json"),
            serde_json::to_vec(&body).unwrap().into(),
        )
        .await
        .unwrap();
    let err = ObjStore::open(&newer).await.unwrap_err();
    assert!(
        matches!(err, Error::Unsupported(_)) && err.to_string().contains("newer"),
        "{err}"
    );
    newer_raw
        .put(&Path::from("protoshelf.json"), b"{not json".to_vec().into())
        .await
        .unwrap();
    assert!(matches!(
        ObjStore::open(&newer).await,
        Err(Error::Corrupt { .. })
    ));

    // A backend that silently overwrites on create-if-absent is refused,
    // and no marker is written to it.
    let (fresh, _dir2) = common::fresh_url(t.backend).await.unwrap();
    let backend = url::open(&fresh).unwrap();
    let faults = FaultyStore::new(backend.store.clone());
    faults.inject("_probe/", Fault::OverwriteOnCreate, 2);
    let err = ObjStore::from_backend(Backend {
        store: Arc::new(faults),
        ..backend
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::Unsupported(_)) && err.to_string().contains("If-None-Match"),
        "{err}"
    );
    let raw = url::open(&fresh).unwrap().store;
    assert!(common::snapshot(&raw).await.is_empty());
}

/// The store was initialized through an endpoint that honoured
/// `If-None-Match`; later something in front of it drops the condition.
/// The first-use probe cannot see that; each handle's check before its
/// first conditional create does, for one refused PUT, and the writer
/// refuses to commit instead of overwriting another's commit.
async fn a_writer_notices_an_endpoint_that_stopped_honouring_if_none_match(t: TestStore) {
    t.store.create_namespace(&namespace("ns")).await.unwrap();
    let before = common::snapshot(&t.raw()).await;
    let faults = FaultyStore::new(t.raw());
    faults.inject("", Fault::OverwriteOnCreate, usize::MAX);
    let backend = url::open(&t.url).unwrap();
    let s = ObjStore::from_backend(Backend {
        store: Arc::new(faults),
        ..backend
    })
    .await
    .unwrap();
    let (err, spent) = cost(&s, s.create_namespace(&namespace("other"))).await;
    let err = err.unwrap_err();
    assert!(
        matches!(err, Error::Unsupported(_))
            && err.to_string().contains("If-None-Match")
            && err.to_string().contains("nothing was committed"),
        "{err}"
    );
    assert_eq!(spent.put, 1, "the check is one PUT: {spent:?}");
    // Refused every time, not only once.
    let err = s.create_namespace(&namespace("other")).await.unwrap_err();
    assert!(err.to_string().contains("If-None-Match"), "{err}");
    // The marker was rewritten with its own bytes: nothing changed.
    assert_eq!(common::snapshot(&t.raw()).await, before);

    // Through an honest endpoint the check costs one refused PUT per
    // handle, once.
    let honest = ObjStore::open(&t.url).await.unwrap();
    let (r, first) = cost(&honest, honest.create_namespace(&namespace("a"))).await;
    r.unwrap();
    let (r, second) = cost(&honest, honest.create_namespace(&namespace("b"))).await;
    r.unwrap();
    assert_eq!(first.put, second.put + 1, "{first:?} vs {second:?}");
}
