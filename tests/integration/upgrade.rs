//! `protoshelf upgrade` (docs/storage-format.md, "Upgrading a store"):
//! a format-2 store moved to format 3 in place, readable by the reader
//! contract afterwards, idempotent, resumable after a crash at any request,
//! and what a format-2 process still running afterwards does.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path;
use protoshelf::compat::Policy;
use protoshelf::objstore::faults::FaultyStore;
use protoshelf::objstore::url;
use protoshelf::registry::{PublishOptions, Registry, SourceFile};
use protoshelf::{Error, ObjStore};

use crate::common::state::{Outcome, copy_all, outcome};
use crate::common::{self, Backend};

const ORDERS_V1: &str = "syntax = \"proto3\";\npackage shop;\nmessage Order { string id = 1; }\n";
const ORDERS_V2: &str =
    "syntax = \"proto3\";\npackage shop;\nmessage Order { string id = 1; string note = 2; }\n";
const ORDERS_V3: &str = "syntax = \"proto3\";\npackage shop;\nmessage Order { string id = 1; string note = 2; int64 cents = 3; }\n";
const PAYMENTS: &str = "syntax = \"proto3\";\npackage shop;\nimport \"shop/orders.proto\";\nmessage Payment { Order order = 1; }\n";

async fn push(r: &Registry, schema: &str, path: &str, text: &str) {
    let opts = PublishOptions {
        created_by: Some("tests".into()),
        ..Default::default()
    };
    r.publish("shop", schema, vec![SourceFile::new(path, text)], opts)
        .await
        .unwrap();
}

/// A format-2 store as a format-2 build leaves it: orders promoted twice
/// with payments importing it, orders v3 staged.
async fn format2_store(backend: Backend) -> Option<common::TestStore> {
    let t = common::fresh_format(backend, 2).await?;
    let r = Registry::new(t.store.clone());
    r.create_namespace("shop", Policy::Strict, Default::default())
        .await
        .unwrap();
    push(&r, "orders", "shop/orders.proto", ORDERS_V1).await;
    push(&r, "payments", "shop/payments.proto", PAYMENTS).await;
    r.promote("shop", false).await.unwrap();
    push(&r, "orders", "shop/orders.proto", ORDERS_V2).await;
    r.promote("shop", false).await.unwrap();
    push(&r, "orders", "shop/orders.proto", ORDERS_V3).await;
    Some(t)
}

async fn marker_format(raw: &Arc<dyn ObjectStore>) -> u64 {
    use object_store::ObjectStoreExt;
    let bytes = raw
        .get(&Path::from("protoshelf.json"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    m["format_version"].as_u64().unwrap()
}

/// Every schema of `shop` is readable by the reader contract on a cold
/// handle (its newest move marker names its pointers now), and the
/// namespace sets hold orders at its current and staged versions.
async fn contract_sees_everything(url: &str) {
    let state = ObjStore::open(url)
        .await
        .unwrap()
        .namespace_state("shop")
        .await
        .unwrap();
    for (schema, pointers) in state.snapshot.schemas.iter() {
        let cold = ObjStore::open(url).await.unwrap();
        let head = cold.schema_head("shop", schema).await.unwrap();
        assert_eq!(head.map(|h| h.pointers), Some(*pointers), "{schema}");
    }
    let cold = ObjStore::open(url).await.unwrap();
    for (staged, fields) in [(false, 2), (true, 3)] {
        let set = cold.namespace_set("shop", staged).await.unwrap().unwrap();
        let pool = prost_reflect::DescriptorPool::decode(set.as_ref()).unwrap();
        assert_eq!(
            pool.get_message_by_name("shop.Order")
                .unwrap()
                .fields()
                .len(),
            fields,
            "staged: {staged}"
        );
        assert!(pool.get_message_by_name("shop.Payment").is_some());
    }
}

async fn upgrade_moves_a_format2_store_in_place(backend: Backend) {
    let Some(t) = format2_store(backend).await else {
        return;
    };
    let raw = t.raw();
    let before = outcome(&Registry::new(t.reopen().await)).await;
    assert!(
        t.reopen()
            .await
            .schema_head("shop", "orders")
            .await
            .unwrap()
            .is_none()
    );

    // --dry-run says what it would do and writes nothing.
    let pristine = common::content_snapshot(&raw).await;
    let planned = t.reopen().await.upgrade(true).await.unwrap();
    assert!(planned.marker_rewritten && planned.dry_run);
    let names: Vec<&str> = planned
        .namespaces
        .iter()
        .map(|n| n.namespace.as_str())
        .collect();
    assert_eq!(names, ["shop"], "{planned:?}");
    assert_eq!(planned.namespaces[0].schemas, ["orders", "payments"]);
    assert_eq!(
        common::content_snapshot(&raw).await,
        pristine,
        "a dry run wrote"
    );

    let s = t.reopen().await;
    let before_requests = s.requests();
    let done = s.upgrade(false).await.unwrap();
    let r = s.requests() - before_requests;
    eprintln!("{backend:?}: upgrade of a 2-schema namespace: {r}");
    assert_eq!(done.namespaces.len(), 1);
    assert!(done.namespaces[0].seq.is_some() && done.marker_rewritten);
    assert_eq!(marker_format(&raw).await, 3);
    // Only the marker is overwritten; nothing existing is deleted.
    assert_eq!(r.delete, 0);
    let after = common::content_snapshot(&raw).await;
    for (key, sha) in &pristine {
        if key != "protoshelf.json" && key != "ns/shop/head.json" {
            assert!(after.contains(&(key.clone(), sha.clone())), "{key} changed");
        }
    }
    contract_sees_everything(&t.url).await;
    assert_eq!(outcome(&Registry::new(t.reopen().await)).await, before);
    let report = t.reopen().await.verify(None).await.unwrap();
    assert!(report.clean(), "{:?}", report.problems);

    // Idempotent: a rerun finds nothing to do and writes nothing.
    let pristine = common::content_snapshot(&raw).await;
    let again = t.reopen().await.upgrade(false).await.unwrap();
    assert!(again.nothing(), "{again:?}");
    assert_eq!(common::content_snapshot(&raw).await, pristine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_moves_a_format2_store_in_place_memory() {
    upgrade_moves_a_format2_store_in_place(Backend::Memory).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_moves_a_format2_store_in_place_local() {
    upgrade_moves_a_format2_store_in_place(Backend::Local).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_moves_a_format2_store_in_place_s3() {
    upgrade_moves_a_format2_store_in_place(Backend::S3).await
}

/// The trade-off: a format-2 process that opened the store before the
/// upgrade keeps committing format-2 entries (it never reads the marker
/// again). Contract readers do not see its change, `verify` names the
/// entry, and running `upgrade` again re-states what it changed. A process
/// started after the upgrade is refused by the marker's format check.
async fn a_format2_writer_running_through_the_upgrade(backend: Backend) {
    let Some(t) = format2_store(backend).await else {
        return;
    };
    let old = Registry::new(t.reopen().await); // a format-2 build, running
    old.store().namespace_state("shop").await.unwrap();
    t.reopen().await.upgrade(false).await.unwrap();
    old.promote("shop", false).await.unwrap(); // orders v3 current, format 2
    let stale = t
        .reopen()
        .await
        .schema_head("shop", "orders")
        .await
        .unwrap();
    assert_eq!(
        stale.unwrap().pointers.current,
        Some(2),
        "the contract misses it"
    );
    let report = t.reopen().await.verify(None).await.unwrap();
    let seq = t.reopen().await.namespace_state("shop").await.unwrap().seq;
    let entry = protoshelf::objstore::keys::log_entry("shop", seq);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.key == entry.as_ref() && p.detail.contains("format-2 build")),
        "{:?}",
        report.problems
    );
    let again = t.reopen().await.upgrade(false).await.unwrap();
    assert_eq!(again.namespaces[0].schemas, ["orders"]);
    assert!(!again.marker_rewritten);
    let head = t
        .reopen()
        .await
        .schema_head("shop", "orders")
        .await
        .unwrap();
    assert_eq!(head.unwrap().pointers.current, Some(3));
    let set = t
        .reopen()
        .await
        .namespace_set("shop", false)
        .await
        .unwrap()
        .unwrap();
    let pool = prost_reflect::DescriptorPool::decode(set.as_ref()).unwrap();
    assert_eq!(
        pool.get_message_by_name("shop.Order")
            .unwrap()
            .fields()
            .len(),
        3
    );
    // The old entry stays what it is; only a commit after it is checked.
    let report = t.reopen().await.verify(None).await.unwrap();
    assert!(
        report.problems.iter().all(|p| p.key == entry.as_ref()),
        "{:?}",
        report.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_format2_writer_running_through_the_upgrade_memory() {
    a_format2_writer_running_through_the_upgrade(Backend::Memory).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_format2_writer_running_through_the_upgrade_local() {
    a_format2_writer_running_through_the_upgrade(Backend::Local).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_format2_writer_running_through_the_upgrade_s3() {
    a_format2_writer_running_through_the_upgrade(Backend::S3).await
}

/// What a build refuses when the marker names a newer format than it
/// knows: the check format-2 builds run at every open (unchanged since
/// format 1), here with a format this build does not know.
async fn newer_formats_are_refused_clearly(backend: Backend) {
    let Some(t) = common::fresh_format(backend, 2).await else {
        return;
    };
    use object_store::ObjectStoreExt;
    let marker = serde_json::json!({"format": "protoshelf", "format_version": 4,
        "created_at": "2026-01-01T00:00:00Z", "writer_id": "format-4"});
    t.raw()
        .put(
            &Path::from("protoshelf.json"),
            serde_json::to_vec(&marker).unwrap().into(),
        )
        .await
        .unwrap();
    match ObjStore::open(&t.url).await {
        Err(Error::Unsupported(msg)) => assert!(
            msg.contains(
                "storage format 4, newer than this protoshelf supports (3); upgrade protoshelf"
            ),
            "{msg}"
        ),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a format-4 store was opened"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_formats_are_refused_clearly_memory() {
    newer_formats_are_refused_clearly(Backend::Memory).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_formats_are_refused_clearly_local() {
    newer_formats_are_refused_clearly(Backend::Local).await
}

async fn faulty(url: &str) -> (ObjStore, FaultyStore) {
    let backend = url::open(url).unwrap();
    let faults = FaultyStore::new(backend.store.clone());
    let store = ObjStore::from_backend(protoshelf::objstore::Backend {
        store: Arc::new(faults.clone()),
        ..backend
    })
    .await
    .unwrap();
    (store, faults)
}

async fn copy_of(
    backend: Backend,
    raw: &Arc<dyn ObjectStore>,
) -> (String, Option<Arc<tempfile::TempDir>>) {
    let (url, dir) = common::fresh_url(backend).await.unwrap();
    copy_all(raw, &url::open(&url).unwrap().store).await;
    (url, dir)
}

/// An upgrade that stops after its k-th request, for every k of a clean
/// run: readers see the same state meanwhile, and a rerun converges (the
/// marker names format 3, every schema and the sets are readable by the
/// contract, verify is clean, a third run has nothing to do).
async fn a_crashed_upgrade_is_finished_by_a_rerun(backend: Backend) {
    let t = format2_store(backend).await.unwrap();
    let raw = t.raw();
    let before: Outcome = outcome(&Registry::new(t.reopen().await)).await;
    let (url, _dir) = copy_of(backend, &raw).await;
    let (s, faults) = faulty(&url).await;
    let start = faults.requests();
    s.upgrade(false).await.unwrap();
    let requests = faults.requests() - start;
    eprintln!("{backend:?}: a clean upgrade makes {requests} requests");
    assert!(requests > 5);
    for k in 1..requests {
        let (url, _dir) = copy_of(backend, &raw).await;
        let (s, faults) = faulty(&url).await;
        faults.stop_after(k);
        tokio::select! {
            _ = s.upgrade(false) => {}
            _ = faults.stopped() => {}
        }
        drop(s);
        let seen = outcome(&Registry::open(&url).await.unwrap()).await;
        assert_eq!(seen, before, "k={k}: readers saw another state");
        let done = ObjStore::open(&url).await.unwrap().upgrade(false).await;
        assert!(done.is_ok(), "k={k}: rerun: {done:?}");
        let copy = url::open(&url).unwrap().store;
        assert_eq!(marker_format(&copy).await, 3, "k={k}");
        contract_sees_everything(&url).await;
        let report = ObjStore::open(&url)
            .await
            .unwrap()
            .verify(None)
            .await
            .unwrap();
        assert!(report.clean(), "k={k}: {:?}", report.problems);
        let third = ObjStore::open(&url)
            .await
            .unwrap()
            .upgrade(false)
            .await
            .unwrap();
        assert!(third.nothing(), "k={k}: {third:?}");
        assert_eq!(outcome(&Registry::open(&url).await.unwrap()).await, before);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_upgrade_is_finished_by_a_rerun_memory() {
    a_crashed_upgrade_is_finished_by_a_rerun(Backend::Memory).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_upgrade_is_finished_by_a_rerun_local() {
    a_crashed_upgrade_is_finished_by_a_rerun(Backend::Local).await
}

/// The command: `--dry-run` says what it would do, the run does it, a
/// rerun has nothing to do; a store of a newer format is exit 2 naming
/// both formats.
async fn upgrade_command(backend: Backend) {
    use object_store::ObjectStoreExt;
    let Some(c) = crate::cli::Cli::new(backend).await else {
        return;
    };
    let raw = url::open(&c.url).unwrap().store;
    let marker = |v: u32| {
        serde_json::to_vec(
            &serde_json::json!({"format": "protoshelf", "format_version": v,
            "created_at": "2026-01-01T00:00:00Z", "writer_id": "old"}),
        )
        .unwrap()
    };
    raw.put(&Path::from("protoshelf.json"), marker(2).into())
        .await
        .unwrap();
    let r = Registry::open(&c.url).await.unwrap();
    r.create_namespace("shop", Policy::Strict, Default::default())
        .await
        .unwrap();
    push(&r, "orders", "shop/orders.proto", ORDERS_V1).await;
    let planned = c.ok(&["upgrade", "--dry-run"]);
    assert!(
        planned.contains(
            "namespace shop: would commit an upgrade: 1 schemas re-stated, namespace sets built"
        ) && planned.contains("would rewrite protoshelf.json: format 2 -> 3"),
        "{planned}"
    );
    assert_eq!(marker_format(&raw).await, 2);
    let done = c.ok(&["upgrade"]);
    assert!(done.contains("committed an upgrade (commit 2)"), "{done}");
    assert_eq!(marker_format(&raw).await, 3);
    let again = c.ok(&["upgrade"]);
    assert!(again.contains("nothing to do"), "{again}");
    let log = c.ok(&["log", "shop"]);
    assert!(log.contains("storage_format"), "{log}");

    raw.put(&Path::from("protoshelf.json"), marker(4).into())
        .await
        .unwrap();
    let out = c.run(&["schema", "list", "shop"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("storage format 4, newer than this protoshelf supports (3)"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_command_local() {
    upgrade_command(Backend::Local).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_command_s3() {
    upgrade_command(Backend::S3).await
}
