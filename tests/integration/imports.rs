//! Imported files stay defined (docs/registry.md, "Imported files stay
//! defined"): a new version that stops defining a file another schema's
//! version in the staged-or-current tree imports is refused, unless its
//! importers change in the same batch; a rollback likewise. Otherwise the
//! importer no longer compiles against the tree, and a moved file leaves
//! both copies in the namespace set, whose names conflict in one pool.

use bytes::Bytes;
use protoshelf::Error;
use protoshelf::compat::Policy;
use protoshelf::registry::{BatchMember, PublishOptions, Registry, SourceFile};

use crate::common::{TestStore, snapshot};

on_every_backend!(
    moving_an_imported_file_is_refused_under_none,
    moving_an_imported_file_is_refused_under_wire,
    moving_a_file_with_its_importer_in_one_batch_succeeds,
    staged_versions_cannot_combine_into_a_dangling_import,
    rollbacks_keep_imports_defined,
    a_child_pins_what_its_parent_moves,
    deleting_a_schema_a_staged_version_imports_is_refused,
    an_undelete_keeps_imports_defined,
    a_namespace_without_sets_reads_the_importers_dependencies,
);

const MONEY: &str =
    "syntax = \"proto3\";\npackage shop.common;\nmessage Money { int64 units = 1; }\n";
const OLD: &str = "shop/common/money.proto";
const NEW: &str = "proto/shop/common/money.proto";

fn order(import: Option<&str>) -> String {
    match import {
        Some(path) => format!(
            "syntax = \"proto3\";\npackage shop.orders;\nimport \"{path}\";\nmessage Order {{ shop.common.Money total = 1; }}\n"
        ),
        None => "syntax = \"proto3\";\npackage shop.orders;\nmessage Amount { int64 units = 1; }\nmessage Order { Amount total = 1; }\n"
            .to_string(),
    }
}

const ORDER_PATH: &str = "shop/orders/order.proto";

fn opts() -> PublishOptions {
    PublishOptions {
        created_by: Some("tests".into()),
        ..Default::default()
    }
}

async fn push(r: &Registry, schema: &str, path: &str, text: &str) -> Result<u64, Error> {
    r.publish("pw", schema, vec![SourceFile::new(path, text)], opts())
        .await
        .map(|p| p.version)
}

/// common v1 defines `OLD`, orders v1 imports it, both current.
async fn setup(t: &TestStore, policy: Policy) -> Registry {
    let r = Registry::new(t.store.clone());
    r.create_namespace("pw", policy, Default::default())
        .await
        .unwrap();
    push(&r, "common", OLD, MONEY).await.unwrap();
    push(&r, "orders", ORDER_PATH, &order(Some(OLD)))
        .await
        .unwrap();
    r.promote("pw", false).await.unwrap();
    r
}

/// common's file to `NEW` and orders importing it there, in one batch.
async fn move_both(r: &Registry) -> Vec<protoshelf::registry::Published> {
    let batch = vec![
        BatchMember {
            schema_id: "common".into(),
            files: vec![SourceFile::new(NEW, MONEY)],
        },
        BatchMember {
            schema_id: "orders".into(),
            files: vec![SourceFile::new(ORDER_PATH, order(Some(NEW)))],
        },
    ];
    r.publish_many("pw", batch, opts()).await.unwrap()
}

fn refusal(e: Error) -> String {
    match e {
        Error::InvalidInput(msg) => msg,
        e => panic!("expected a refusal, got {e:?}"),
    }
}

/// The namespace set of a tree, as a reader loads it: one pool.
async fn set_pool(t: &TestStore, staged: bool) -> (Bytes, prost_reflect::DescriptorPool) {
    let set = t
        .reopen()
        .await
        .namespace_set("pw", staged)
        .await
        .unwrap()
        .expect("a set");
    let pool = prost_reflect::DescriptorPool::decode(set.as_ref()).expect("loads into one pool");
    (set, pool)
}

fn has_file(pool: &prost_reflect::DescriptorPool, path: &str) -> bool {
    pool.get_file_by_name(path).is_some()
}

/// The user trial: common's file moves to another path while orders still
/// imports the old one. Under policy none and wire the compatibility
/// checks see nothing wrong; the publish itself must refuse, naming the
/// file, the importer and its version, and write nothing.
async fn refused_under(t: TestStore, policy: Policy) {
    let r = setup(&t, policy).await;
    let raw = t.raw();
    let before = snapshot(&raw).await;
    let msg = refusal(push(&r, "common", NEW, MONEY).await.unwrap_err());
    assert!(msg.contains(OLD), "names the file: {msg}");
    assert!(
        msg.contains("\"orders\" (version 1)"),
        "names the importer and its version: {msg}"
    );
    assert!(msg.contains("one batch"), "says what to do: {msg}");
    assert_eq!(snapshot(&raw).await, before, "nothing written");
    let state = t.store.namespace_state("pw").await.unwrap();
    assert_eq!(state.staged_schemas().count(), 0, "nothing staged");

    // Adding a file and keeping the imported one is fine.
    const OTHER: &str = "shop/common/other.proto";
    let other = "syntax = \"proto3\";\npackage shop.common;\nmessage Other {}\n";
    let kept = r
        .publish(
            "pw",
            "common",
            vec![SourceFile::new(OLD, MONEY), SourceFile::new(OTHER, other)],
            opts(),
        )
        .await
        .unwrap();
    assert_eq!(kept.version, 2);
    // Dropping it from there is refused too: orders still imports it.
    let msg = refusal(push(&r, "common", OTHER, other).await.unwrap_err());
    assert!(msg.contains(OLD), "{msg}");
    // Once orders no longer imports it, common may move it.
    push(&r, "orders", ORDER_PATH, &order(None)).await.unwrap();
    push(&r, "common", NEW, MONEY).await.unwrap();
    // (Staged: orders' new message type is no wire-compatible change.)
    let (_, pool) = set_pool(&t, true).await;
    assert!(has_file(&pool, NEW) && !has_file(&pool, OLD));
}

async fn moving_an_imported_file_is_refused_under_none(t: TestStore) {
    refused_under(t, Policy::None).await
}

async fn moving_an_imported_file_is_refused_under_wire(t: TestStore) {
    refused_under(t, Policy::Wire).await
}

/// Moving the file and its importer together in one batch is a move, not
/// a drop: accepted, and the tree (its namespace set) loads into one pool
/// holding the file once, at its new path.
async fn moving_a_file_with_its_importer_in_one_batch_succeeds(t: TestStore) {
    let r = setup(&t, Policy::None).await;
    let published = move_both(&r).await;
    assert_eq!(
        published.iter().map(|p| p.version).collect::<Vec<_>>(),
        [2, 2]
    );
    for staged in [true, false] {
        if !staged {
            r.promote("pw", false).await.unwrap();
        }
        let (_, pool) = set_pool(&t, staged).await;
        assert!(has_file(&pool, NEW), "staged={staged}");
        assert!(
            !has_file(&pool, OLD),
            "staged={staged}: the old path is gone"
        );
        let order = pool.get_message_by_name("shop.orders.Order").unwrap();
        let total = order.get_field_by_name("total").unwrap();
        assert_eq!(total.kind().as_message().unwrap().parent_file().name(), NEW);
    }
}

/// Promote makes the whole staged tree current, so it can only reach a
/// dangling import through staged versions: every way to stage one is
/// refused, whatever the order, and the promote then loads as one pool.
async fn staged_versions_cannot_combine_into_a_dangling_import(t: TestStore) {
    let r = setup(&t, Policy::None).await;
    // The importer staged against the old path (a new field), the file
    // mover later: the mover sees the staged importer.
    push(
        &r,
        "orders",
        ORDER_PATH,
        &order(Some(OLD)).replace("total = 1;", "total = 1; string note = 2;"),
    )
    .await
    .unwrap();
    let msg = refusal(push(&r, "common", NEW, MONEY).await.unwrap_err());
    assert!(msg.contains("\"orders\" (version 2)"), "{msg}");
    // The importer changed first (staged), then the mover: fine.
    push(&r, "orders", ORDER_PATH, &order(None)).await.unwrap();
    push(&r, "common", NEW, MONEY).await.unwrap();
    // An importer staged later cannot name the old path: it is gone from
    // the staged tree.
    let e = push(&r, "orders", ORDER_PATH, &order(Some(OLD)))
        .await
        .unwrap_err();
    assert!(e.to_string().contains(OLD), "{e}");
    // Nor can a rollback stage a version of it that imports the old path.
    let raw = t.raw();
    let before = snapshot(&raw).await;
    let msg = refusal(
        r.rollback("pw", "orders", 2, false, false)
            .await
            .unwrap_err(),
    );
    assert!(msg.contains(OLD) && msg.contains("defines now"), "{msg}");
    assert_eq!(snapshot(&raw).await, before, "nothing written");
    r.promote("pw", false).await.unwrap();
    let (_, pool) = set_pool(&t, false).await;
    assert!(has_file(&pool, NEW) && !has_file(&pool, OLD));
}

/// A rollback is a new staged version too: one that stops defining an
/// imported file, or imports a file no schema defines now, is refused,
/// forced or not (a force skips compatibility checks, not the tree's
/// integrity), with nothing written.
async fn rollbacks_keep_imports_defined(t: TestStore) {
    let r = setup(&t, Policy::None).await;
    move_both(&r).await;
    r.promote("pw", false).await.unwrap();
    let raw = t.raw();
    let before = snapshot(&raw).await;
    for force in [false, true] {
        // common v1 lacks NEW, which orders v2 imports.
        let msg = refusal(
            r.rollback("pw", "common", 1, force, false)
                .await
                .unwrap_err(),
        );
        assert!(
            msg.contains(NEW) && msg.contains("\"orders\" (version 2)"),
            "force={force}: {msg}"
        );
        // orders v1 imports OLD, which no schema defines now.
        let msg = refusal(
            r.rollback("pw", "orders", 1, force, true)
                .await
                .unwrap_err(),
        );
        assert!(msg.contains(OLD), "force={force}: {msg}");
        assert_eq!(
            snapshot(&raw).await,
            before,
            "force={force}: nothing written"
        );
    }
    // Both back in the other order works step by step once orders no
    // longer imports the moved file.
    push(&r, "orders", ORDER_PATH, &order(None)).await.unwrap();
    r.rollback("pw", "common", 1, false, false).await.unwrap();
    r.rollback("pw", "orders", 1, false, true).await.unwrap();
    let (_, pool) = set_pool(&t, false).await;
    assert!(has_file(&pool, OLD) && !has_file(&pool, NEW));
}

/// A child's imports from its parent are pinned to the versions they were
/// compiled against: the parent may move a file a child imports (the
/// child's tree keeps its copy; its rebase then asks for a change).
async fn a_child_pins_what_its_parent_moves(t: TestStore) {
    let r = Registry::new(t.store.clone());
    r.create_namespace("base", Policy::None, Default::default())
        .await
        .unwrap();
    r.create_namespace_with_parent("pw", Policy::None, Default::default(), Some("base"))
        .await
        .unwrap();
    r.publish("base", "common", vec![SourceFile::new(OLD, MONEY)], opts())
        .await
        .unwrap();
    r.promote("base", false).await.unwrap();
    push(&r, "orders", ORDER_PATH, &order(Some(OLD)))
        .await
        .unwrap();
    r.promote("pw", false).await.unwrap();
    r.publish("base", "common", vec![SourceFile::new(NEW, MONEY)], opts())
        .await
        .unwrap();
    r.promote("base", false).await.unwrap();
    let (_, pool) = set_pool(&t, false).await;
    assert!(has_file(&pool, OLD), "the child keeps its pinned copy");
}

/// A delete hides the schema from the staged tree too: refused while only
/// a staged version imports it (a promote would then make that version
/// current with its import dangling), unless forced.
async fn deleting_a_schema_a_staged_version_imports_is_refused(t: TestStore) {
    let r = Registry::new(t.store.clone());
    r.create_namespace("pw", Policy::None, Default::default())
        .await
        .unwrap();
    push(&r, "common", OLD, MONEY).await.unwrap();
    r.promote("pw", false).await.unwrap();
    push(&r, "orders", ORDER_PATH, &order(Some(OLD)))
        .await
        .unwrap();
    let raw = t.raw();
    let before = snapshot(&raw).await;
    let msg = refusal(r.delete_schema("pw", "common", false).await.unwrap_err());
    assert!(
        msg.contains("imported by the staged version of pw/orders v1"),
        "{msg}"
    );
    assert_eq!(snapshot(&raw).await, before, "nothing written");
    r.promote("pw", false).await.unwrap();
    let msg = refusal(r.delete_schema("pw", "common", false).await.unwrap_err());
    assert!(
        msg.contains("imported by the current version of pw/orders v1"),
        "{msg}"
    );
    assert!(
        r.delete_schema("pw", "common", true).await.unwrap(),
        "forced"
    );
}

/// An undelete restores a version as it was: refused when a file it
/// imports moved while it was deleted, until that file is there again.
async fn an_undelete_keeps_imports_defined(t: TestStore) {
    let r = setup(&t, Policy::None).await;
    assert!(r.delete_schema("pw", "orders", false).await.unwrap());
    // orders is out of the tree: nothing imports OLD any more.
    push(&r, "common", NEW, MONEY).await.unwrap();
    r.promote("pw", false).await.unwrap();
    let raw = t.raw();
    let before = snapshot(&raw).await;
    let msg = refusal(r.undelete_schema("pw", "orders").await.unwrap_err());
    assert!(
        msg.contains(OLD) && msg.contains("cannot be restored"),
        "{msg}"
    );
    assert_eq!(snapshot(&raw).await, before, "nothing written");
    // Staged back at the old path: the current tree still lacks it.
    push(&r, "common", OLD, MONEY).await.unwrap();
    let msg = refusal(r.undelete_schema("pw", "orders").await.unwrap_err());
    assert!(msg.contains(OLD), "{msg}");
    r.promote("pw", false).await.unwrap();
    assert!(r.undelete_schema("pw", "orders").await.unwrap());
    let (_, pool) = set_pool(&t, false).await;
    assert!(has_file(&pool, OLD) && !has_file(&pool, NEW));
}

/// A format-2 store's namespaces have no namespace set to ask: the
/// importers are found from every schema's recorded dependencies instead,
/// with the same refusal, and a batch move still passes.
async fn a_namespace_without_sets_reads_the_importers_dependencies(t: TestStore) {
    let Some(t) = crate::common::fresh_format(t.backend, 2).await else {
        return;
    };
    let r = setup(&t, Policy::None).await;
    let state = t.store.namespace_state("pw").await.unwrap();
    assert!(
        state.snapshot.sets.is_none(),
        "a format-2 namespace has no set"
    );
    let raw = t.raw();
    let before = snapshot(&raw).await;
    let msg = refusal(push(&r, "common", NEW, MONEY).await.unwrap_err());
    assert!(
        msg.contains(OLD) && msg.contains("\"orders\" (version 1)"),
        "{msg}"
    );
    assert_eq!(snapshot(&raw).await, before, "nothing written");
    assert_eq!(move_both(&r).await.len(), 2);
}
