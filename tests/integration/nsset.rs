//! Namespace sets (docs/storage-format.md, "The reader contract"): one
//! `FileDescriptorSet` per tree of a namespace, each file at its owner's
//! current (or staged) version, which loads into one descriptor pool where
//! two schemas' per-version descriptors cannot.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use prost::Message;
use protoshelf::compat::Policy;
use protoshelf::fs::{FsCore, Options};
use protoshelf::registry::{PublishOptions, Registry, SourceFile};

use crate::common::{self, TestStore};

on_every_backend!(
    two_schemas_load_into_one_pool_from_the_set,
    a_commit_reads_no_other_schema,
    a_load_reads_back_nothing_it_wrote,
);

fn orders(fields: usize) -> String {
    let mut s = String::from("syntax = \"proto3\";\npackage shop;\nmessage Order {\n");
    for i in 1..=fields {
        s.push_str(&format!("  string f{i} = {i};\n"));
    }
    s.push_str("}\n");
    s
}

const PAYMENTS: &str = "syntax = \"proto3\";\npackage shop;\nimport \"shop/orders.proto\";\nimport \"google/protobuf/timestamp.proto\";\nmessage Payment { Order order = 1; google.protobuf.Timestamp at = 2; }\n";

fn opts() -> PublishOptions {
    PublishOptions {
        created_by: Some("tests".into()),
        ..Default::default()
    }
}

async fn push(r: &Registry, schema: &str, path: &str, text: &str) -> u64 {
    r.publish("shop", schema, vec![SourceFile::new(path, text)], opts())
        .await
        .unwrap()
        .version
}

/// The fields of `message` in a pool built from `set`.
fn fields(set: &Bytes, message: &str) -> usize {
    let pool = prost_reflect::DescriptorPool::decode(set.as_ref()).unwrap();
    pool.get_message_by_name(message)
        .unwrap_or_else(|| panic!("{message} missing"))
        .fields()
        .len()
}

/// What the independent reader counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub get: u32,
    pub list: u32,
}

/// The reader contract's namespace set, followed with plain object-store
/// calls (no protoshelf code), counting its own requests: LIST the set
/// markers, GET the entry the newest names (its `commit_id` must be the
/// marker's), GET the set and check its hash.
pub async fn contract_namespace_set(
    raw: &Arc<dyn ObjectStore>,
    ns: &str,
    staged: bool,
) -> (Bytes, Counted) {
    let mut n = Counted::default();
    n.list += 1;
    let mut markers: Vec<(u128, String)> = raw
        .list(Some(&Path::from(format!("ns/{ns}/set-moves"))))
        .map(|m| {
            let name = m.unwrap().location.filename().unwrap().to_string();
            let (rev, id) = name.split_once('-').unwrap();
            (rev.parse().unwrap(), id.to_string())
        })
        .collect()
        .await;
    markers.sort();
    for (rev, id) in markers {
        let seq = 99_999_999_999_999_999_999u128 - rev;
        n.get += 1;
        let Ok(got) = raw
            .get(&Path::from(format!("ns/{ns}/log/{seq:020}.json")))
            .await
        else {
            continue; // an attempt in flight or that died
        };
        let entry: serde_json::Value = serde_json::from_slice(&got.bytes().await.unwrap()).unwrap();
        if entry["commit_id"] != id.as_str() {
            continue; // an attempt that lost
        }
        let sha = entry["sets"][if staged { "staged" } else { "current" }]
            .as_str()
            .unwrap()
            .to_string();
        n.get += 1;
        let bytes = raw
            .get(&Path::from(format!("ns/{ns}/sets/{sha}.binpb")))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(common::data::sha(&bytes), sha, "the set's hash");
        return (bytes, n);
    }
    panic!("no namespace set in {ns}");
}

/// `payments` imports `orders`; `orders` is promoted 20 times after it.
/// payments' current descriptor still embeds orders v1, so loading both
/// schemas' current descriptors into one pool fails; the namespace set
/// holds orders at its current version once and loads, on every read
/// path (the contract, the library, the mount's `current.binpb`), and the
/// staged set has the staged version.
async fn two_schemas_load_into_one_pool_from_the_set(t: TestStore) {
    let r = Registry::new(t.store.clone());
    r.create_namespace("shop", Policy::Strict, Default::default())
        .await
        .unwrap();
    push(&r, "orders", "shop/orders.proto", &orders(1)).await;
    push(&r, "payments", "shop/payments.proto", PAYMENTS).await;
    r.promote("shop", false).await.unwrap();
    for n in 2..=21 {
        push(&r, "orders", "shop/orders.proto", &orders(n)).await;
        r.promote("shop", false).await.unwrap();
    }
    let reader = t.reopen().await;
    let payments = Registry::new(reader.clone())
        .descriptor("shop", "payments", None)
        .await
        .unwrap()
        .1;
    let current_orders = Registry::new(reader.clone())
        .descriptor("shop", "orders", None)
        .await
        .unwrap()
        .1;
    assert_eq!(fields(&payments, "shop.Order"), 1, "frozen at v1");
    // Two per-version descriptors in one pool: refused, or the first copy
    // of orders.proto wins and the pool holds the wrong Order.
    let mut pool = prost_reflect::DescriptorPool::new();
    pool.decode_file_descriptor_set(payments.as_ref()).unwrap();
    if pool
        .decode_file_descriptor_set(current_orders.as_ref())
        .is_ok()
    {
        let order = pool.get_message_by_name("shop.Order").unwrap();
        assert_eq!(order.fields().len(), 1, "the frozen copy won");
    }

    let raw = t.raw();
    let (set, counted) = contract_namespace_set(&raw, "shop", false).await;
    assert_eq!(counted, Counted { get: 2, list: 1 });
    assert_eq!(
        fields(&set, "shop.Order"),
        21,
        "orders at its current version"
    );
    let pool = prost_reflect::DescriptorPool::decode(set.as_ref()).unwrap();
    assert!(pool.get_message_by_name("shop.Payment").is_some());
    let names: Vec<String> = prost_types::FileDescriptorSet::decode(set.as_ref())
        .unwrap()
        .file
        .into_iter()
        .map(|f| f.name().to_string())
        .collect();
    let at = |n: &str| names.iter().position(|x| x == n).unwrap();
    assert_eq!(names.len(), 3, "each file once: {names:?}");
    assert!(at("shop/orders.proto") < at("shop/payments.proto"));
    assert!(at("google/protobuf/timestamp.proto") < at("shop/payments.proto"));
    // The file is its owner's current version's, byte for byte.
    let owned = prost_types::FileDescriptorSet::decode(current_orders.as_ref())
        .unwrap()
        .file
        .into_iter()
        .find(|f| f.name() == "shop/orders.proto")
        .unwrap();
    let in_set = prost_types::FileDescriptorSet::decode(set.as_ref())
        .unwrap()
        .file
        .into_iter()
        .find(|f| f.name() == "shop/orders.proto")
        .unwrap();
    assert_eq!(owned, in_set);

    // The library's path: 1 LIST and 2 GETs on a cold handle, plus the
    // format marker at open; no write.
    let cold = t.reopen().await;
    let got = cold.namespace_set("shop", false).await.unwrap().unwrap();
    let req = cold.requests();
    assert_eq!(got, set);
    assert_eq!((req.get, req.list, req.put), (3, 1, 0), "{req}");
    // Nothing staged: the staged set is the current one.
    assert_eq!(
        cold.namespace_set("shop", true).await.unwrap().unwrap(),
        set
    );

    // Staged: current with the staged version overlaid.
    push(&r, "orders", "shop/orders.proto", &orders(22)).await;
    let (staged, _) = contract_namespace_set(&raw, "shop", true).await;
    let (current, _) = contract_namespace_set(&raw, "shop", false).await;
    assert_eq!(fields(&staged, "shop.Order"), 22);
    assert_eq!(current, set, "staging leaves the current set");

    // The mount serves the bucket's sets.
    let store = t.reopen().await;
    let rt = tokio::runtime::Handle::current();
    let (mounted_current, mounted_staged) = tokio::task::spawn_blocking(move || {
        let core = FsCore::new(
            store,
            rt,
            Options {
                namespaces: vec![],
                refresh: Duration::from_secs(60),
            },
        );
        (
            core.content("shop/current.binpb").unwrap(),
            core.content("shop/staged.binpb").unwrap(),
        )
    })
    .await
    .unwrap();
    assert_eq!(mounted_current, set);
    assert_eq!(mounted_staged, staged);
}

/// A commit builds its sets from the previous ones and the schemas it
/// moves: staging one schema reads no other schema's manifest or
/// descriptor, and costs the same requests in a namespace of 2 schemas as
/// in one of 40 (the sizes of the large case are in `reader::large`).
async fn a_commit_reads_no_other_schema(t: TestStore) {
    let mut costs = Vec::new();
    for (ns, schemas) in [("small", 2usize), ("wide", 40)] {
        crate::reader::build_namespace(&t.store, ns, schemas, 2).await;
        let v = common::data::publish(&t.store, ns, "s00001", "next").await;
        let cold = t.reopen().await;
        cold.namespace_state(ns).await.unwrap();
        let before = cold.requests();
        cold.set_staged(ns, "s00001", v).await.unwrap();
        let r = cold.requests() - before;
        eprintln!("{:?} {schemas} schemas: staging one schema: {r}", t.backend);
        costs.push((r.get, r.list, r.put, r.head));
        // The staged set has the new version; the current one is unchanged.
        let (staged, _) = contract_namespace_set(&t.raw(), ns, true).await;
        let names: Vec<String> = prost_types::FileDescriptorSet::decode(staged.as_ref())
            .unwrap()
            .file
            .into_iter()
            .map(|f| format!("{}:{}", f.name(), f.package()))
            .collect();
        assert_eq!(names.len(), schemas, "{names:?}");
        assert!(
            names.contains(&"s00001.proto:pkg.tnext".to_string()),
            "{names:?}"
        );
    }
    assert_eq!(
        costs[0], costs[1],
        "a commit's cost grows with the namespace"
    );
}

/// A load of many schemas, then its promote, on one handle: the commits
/// build the namespace sets from the files the publish compiled (its
/// large descriptors, over what the cache keeps of a write, included) and
/// the promote takes the staged set as the current one, so neither reads
/// back a descriptor or a blob it wrote. Counted as the GETs of the whole
/// load and promote, the same with descriptors of 2 KB as of about 1 MB.
async fn a_load_reads_back_nothing_it_wrote(t: TestStore) {
    use protoshelf::registry::BatchMember;
    let mut gets = Vec::new();
    for (ns, shared_fields) in [("small", 10usize), ("large", 18_000)] {
        let r = Registry::new(t.store.clone());
        r.create_namespace(ns, Default::default(), Default::default())
            .await
            .unwrap();
        let mut shared = format!("syntax = \"proto3\";\npackage {ns}.common;\nmessage Shared {{\n");
        for i in 1..=shared_fields {
            shared.push_str(&format!("  int64 field_number_{i} = {i};\n"));
        }
        shared.push_str("}\n");
        let mut members = vec![BatchMember {
            schema_id: "common".into(),
            files: vec![SourceFile::new(format!("{ns}/common.proto"), shared)],
        }];
        for s in 0..12 {
            members.push(BatchMember {
                schema_id: format!("s{s:02}"),
                files: vec![SourceFile::new(
                    format!("{ns}/s{s:02}.proto"),
                    format!(
                        "syntax = \"proto3\";\npackage {ns}.s{s:02};\nimport \"{ns}/common.proto\";\nmessage M {{ {ns}.common.Shared shared = 1; }}\n"
                    ),
                )],
            });
        }
        let before = t.store.requests();
        r.publish_many(ns, members, PublishOptions::default())
            .await
            .unwrap();
        r.promote(ns, false).await.unwrap();
        let cost = t.store.requests() - before;
        eprintln!("{:?} {ns}: load and promote: {cost}", t.backend);
        gets.push(cost.get);
        // What the sets hold is what a reader gets.
        let (current, _) = contract_namespace_set(&t.raw(), ns, false).await;
        let names = prost_types::FileDescriptorSet::decode(current.as_ref())
            .unwrap()
            .file
            .len();
        assert_eq!(names, 13, "{ns}: every file in the current set once");
    }
    let descriptor = t
        .raw()
        .list(Some(&Path::from("ns/large/descriptors")))
        .next()
        .await
        .unwrap()
        .unwrap();
    assert!(
        descriptor.size > 256 * 1024,
        "the large case's descriptors are over what a write leaves cached ({} bytes)",
        descriptor.size
    );
    assert_eq!(
        gets[0], gets[1],
        "a load with large descriptors read some back (GETs: small, large)"
    );
}
