//! The Confluent model over protoshelf, driven directly (no server), on
//! every backend: subjects as namespaces, registration checked against
//! the compatibility level, global IDs, references, deletes.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::TestStore;
use protoshelf::compat::Policy;
use protoshelf::confluent::{
    ConfluentError, ConfluentRegistry, Format, Level, Options, SchemaRequest, VersionRef,
};
use protoshelf::objstore::records::SchemaReference;
use protoshelf::objstore::schema_ids::{NewSchema, SchemaIds};
use protoshelf::registry::Registry;

on_every_backend!(
    registered_schemas_are_ordinary_protoshelf_schemas,
    references_and_descriptor_input,
    an_incompatible_schema_changes_nothing,
    levels_map_to_policies_and_transitivity,
    soft_and_permanent_deletes,
    deletes_made_with_the_cli_hide_the_subject,
    identical_content_gets_one_id_from_every_handle,
    an_id_is_read_with_one_get,
    an_expired_subject_is_read_again_once_by_concurrent_requests,
    other_namespaces_are_never_taken_over,
);

fn confluent(store: protoshelf::ObjStore) -> ConfluentRegistry {
    ConfluentRegistry::new(
        Registry::new(store),
        Options {
            refresh: std::time::Duration::ZERO,
            ..Default::default()
        },
    )
}

fn req(schema: &str) -> SchemaRequest {
    SchemaRequest {
        schema: schema.to_string(),
        schema_type: Some("PROTOBUF".into()),
        ..Default::default()
    }
}

const V1: &str = "syntax = \"proto3\";\npackage shop;\nmessage Order {\n  string id = 1;\n  string note = 2;\n}\n";
const V2: &str = "syntax = \"proto3\";\npackage shop;\nmessage Order {\n  string id = 1;\n  string note = 2;\n  int32 qty = 3;\n}\n";
/// `id` becomes an integer: breaks every level but NONE.
const BAD: &str = "syntax = \"proto3\";\npackage shop;\nmessage Order {\n  int64 id = 1;\n  string note = 2;\n}\n";

async fn registered_schemas_are_ordinary_protoshelf_schemas(t: TestStore) {
    let c = confluent(t.store.clone());
    let r1 = c.register("orders-value", &req(V1), "test").await.unwrap();
    assert_eq!(r1.version, 1);
    let again = c.register("orders-value", &req(V1), "test").await.unwrap();
    assert_eq!(again, r1, "registering the same content is idempotent");
    let r2 = c.register("orders-value", &req(V2), "test").await.unwrap();
    assert_eq!(r2.version, 2);
    assert_ne!(r2.id, r1.id);
    // The same content under another subject keeps its ID.
    let other = c.register("audit-value", &req(V1), "test").await.unwrap();
    assert_eq!(other.id, r1.id);

    let latest = c
        .version(
            "orders-value",
            VersionRef::Latest,
            false,
            Format::Source,
            false,
        )
        .await
        .unwrap();
    assert_eq!((latest.id, latest.version), (r2.id, 2));
    assert_eq!(latest.schema, V2);
    assert_eq!(
        c.versions("orders-value", false, false).await.unwrap(),
        vec![1, 2]
    );
    assert_eq!(
        c.subjects(false, false).await.unwrap(),
        vec!["audit-value".to_string(), "orders-value".to_string()]
    );
    let found = c.lookup("orders-value", &req(V1), false).await.unwrap();
    assert_eq!((found.id, found.version), (r1.id, 1));
    assert_eq!(
        c.id_versions(r1.id).await.unwrap(),
        vec![
            ("audit-value".to_string(), 1),
            ("orders-value".to_string(), 1)
        ]
    );

    // What the CLI and the mount see: namespace `orders-value`, schema
    // `subject`, current = the latest registered version, staged nothing.
    let schemas = t.store.list_schemas("orders-value").await.unwrap();
    assert_eq!(schemas.len(), 1);
    assert_eq!(schemas[0].schema_id, "subject");
    assert_eq!(schemas[0].current_version, Some(2));
    assert_eq!(schemas[0].staged_version, None);
    let files = t
        .store
        .get_version_files("orders-value", "subject", 2)
        .await
        .unwrap();
    assert_eq!(files[0].path, "orders-value.proto");
    let v = t
        .store
        .get_version("orders-value", "subject", 2)
        .await
        .unwrap();
    assert_eq!(v.metadata["confluent.schema_id"], r2.id.to_string());
    assert_eq!(v.created_by, "test");

    // Another replica (own handle, own caches) sees it all.
    let c2 = confluent(t.reopen().await);
    let seen = c2
        .version(
            "orders-value",
            VersionRef::Number(1),
            false,
            Format::Source,
            false,
        )
        .await
        .unwrap();
    assert_eq!(seen.id, r1.id);
    assert!(matches!(
        c2.version(
            "orders-value",
            VersionRef::Number(3),
            false,
            Format::Source,
            false
        )
        .await,
        Err(ConfluentError::VersionNotFound { .. })
    ));
    assert!(matches!(
        c2.versions("nope", false, false).await,
        Err(ConfluentError::SubjectNotFound(_))
    ));
}

async fn references_and_descriptor_input(t: TestStore) {
    let c = confluent(t.store.clone());
    let money = "syntax = \"proto3\";\npackage common;\nmessage Money { string currency = 1; int64 units = 2; }\n";
    let m = c
        .register("common/money.proto", &req(money), "test")
        .await
        .unwrap();
    // The order as a base64 FileDescriptorProto (what confluent-kafka sends).
    let order = "syntax = \"proto3\";\npackage shop;\nimport \"common/money.proto\";\nimport \"google/protobuf/timestamp.proto\";\nmessage Order { common.Money total = 1; google.protobuf.Timestamp at = 2; }\n";
    let files = std::collections::BTreeMap::from([
        ("common/money.proto".to_string(), money.to_string()),
        ("shop/order.proto".to_string(), order.to_string()),
    ]);
    let pool = protoshelf::confluent::schema::compile("shop/order.proto", &files).unwrap();
    let b64 = protoshelf::confluent::schema::serialized(&pool, "shop/order.proto");
    let reference = SchemaReference {
        name: "common/money.proto".into(),
        subject: "common/money.proto".into(),
        version: 1,
    };
    let mut r = req(&b64);
    r.references = vec![reference.clone()];
    let o = c.register("orders-value", &r, "test").await.unwrap();
    assert_ne!(o.id, m.id);

    // The reference's file is copied into the subject's namespace at its
    // import path, so the namespace compiles on its own.
    let ns_files: Vec<String> = t
        .store
        .get_version_files("orders-value", "subject", 1)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert_eq!(ns_files, ["common/money.proto", "shop/order.proto"]);
    let by_id = c.schema_by_id(o.id, None, Format::Source).await.unwrap();
    assert!(by_id.schema.contains("message Order"), "{}", by_id.schema);
    assert_eq!(by_id.references, vec![reference]);
    let serialized = c
        .schema_by_id(o.id, None, Format::Serialized)
        .await
        .unwrap();
    assert!(!serialized.schema.contains(' '), "base64");
    // A reference to nothing is an invalid schema, and writes nothing.
    let raw = t.raw();
    let before = common::snapshot(&raw).await;
    let mut bad = req(&b64);
    bad.references = vec![SchemaReference {
        name: "common/money.proto".into(),
        subject: "no-such-subject".into(),
        version: 1,
    }];
    let e = c.register("x-value", &bad, "test").await.unwrap_err();
    assert_eq!(e.codes(), (422, 42201), "{e}");
    assert_eq!(common::snapshot(&raw).await, before);
    let e = c
        .register("x-value", &req("message {"), "test")
        .await
        .unwrap_err();
    assert_eq!(e.codes(), (422, 42201));
    assert!(e.to_string().contains("x-value.proto:1:"), "{e}");
    let mut avro = req("{\"type\": \"string\"}");
    avro.schema_type = Some("AVRO".into());
    assert_eq!(
        c.register("x-value", &avro, "t").await.unwrap_err().codes(),
        (422, 42201)
    );
}

async fn an_incompatible_schema_changes_nothing(t: TestStore) {
    let c = confluent(t.store.clone());
    c.set_config(Some("orders-value"), Level::Backward)
        .await
        .unwrap();
    c.register("orders-value", &req(V1), "test").await.unwrap();
    let raw = t.raw();
    let before = common::content_snapshot(&raw).await;
    let e = c
        .register("orders-value", &req(BAD), "test")
        .await
        .unwrap_err();
    assert_eq!(e.codes(), (409, 409));
    assert!(e.to_string().contains("FIELD_WIRE_COMPATIBLE_TYPE"), "{e}");
    assert_eq!(
        common::content_snapshot(&raw).await,
        before,
        "a refused registration writes nothing"
    );
    let v = c
        .test_compatibility("orders-value", Some(VersionRef::Latest), &req(BAD))
        .await
        .unwrap();
    assert!(!v.is_empty());
    assert!(
        c.test_compatibility("orders-value", None, &req(V2))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        common::content_snapshot(&raw).await,
        before,
        "a compatibility test writes nothing"
    );
}

async fn levels_map_to_policies_and_transitivity(t: TestStore) {
    let c = confluent(t.store.clone());
    let r = c.registry();
    assert_eq!(c.config(None, true).await.unwrap(), Level::Backward);
    assert!(matches!(
        c.config(Some("s"), false).await,
        Err(ConfluentError::NoSubjectConfig(_))
    ));
    c.register("s", &req(V1), "t").await.unwrap();
    assert_eq!(r.policy("s").await.unwrap(), Policy::Wire);
    c.set_config(Some("s"), Level::None).await.unwrap();
    assert_eq!(r.policy("s").await.unwrap(), Policy::None);
    assert_eq!(c.config(Some("s"), false).await.unwrap(), Level::None);
    // v2 drops `note` (allowed under NONE), v3 brings field 2 back as an
    // integer: fine against v2, not against v1.
    let drop_note = "syntax = \"proto3\";\npackage shop;\nmessage Order {\n  string id = 1;\n}\n";
    let back_as_int = "syntax = \"proto3\";\npackage shop;\nmessage Order {\n  string id = 1;\n  int64 note = 2;\n}\n";
    c.register("s", &req(drop_note), "t").await.unwrap();
    c.set_config(Some("s"), Level::BackwardTransitive)
        .await
        .unwrap();
    assert_eq!(r.policy("s").await.unwrap(), Policy::Wire);
    let e = c.register("s", &req(back_as_int), "t").await.unwrap_err();
    assert_eq!(e.codes().0, 409, "{e}");
    c.set_config(Some("s"), Level::Backward).await.unwrap();
    assert_eq!(
        c.register("s", &req(back_as_int), "t")
            .await
            .unwrap()
            .version,
        3
    );
    // The global level: subjects without their own follow it.
    c.register("g", &req(V1), "t").await.unwrap();
    c.set_config(None, Level::None).await.unwrap();
    assert_eq!(c.config(None, false).await.unwrap(), Level::None);
    assert_eq!(r.policy("g").await.unwrap(), Policy::None);
    assert_eq!(r.policy("s").await.unwrap(), Policy::Wire, "own level kept");
    assert_eq!(c.register("g", &req(BAD), "t").await.unwrap().version, 2);
    assert_eq!(c.delete_config("s").await.unwrap(), Level::Backward);
    assert_eq!(r.policy("s").await.unwrap(), Policy::None);
    // Another replica reads the global level from the bucket.
    assert_eq!(
        confluent(t.reopen().await)
            .config(None, true)
            .await
            .unwrap(),
        Level::None
    );
    assert!("SIDEWAYS".parse::<Level>().is_err());
}

async fn soft_and_permanent_deletes(t: TestStore) {
    let c = confluent(t.store.clone());
    let r1 = c.register("s", &req(V1), "t").await.unwrap();
    let r2 = c.register("s", &req(V2), "t").await.unwrap();
    assert!(matches!(
        c.delete_version("s", VersionRef::Number(2), true).await,
        Err(ConfluentError::VersionNotSoftDeleted { .. })
    ));
    assert_eq!(
        c.delete_version("s", VersionRef::Latest, false)
            .await
            .unwrap(),
        2
    );
    assert_eq!(c.versions("s", false, false).await.unwrap(), vec![1]);
    assert_eq!(c.versions("s", true, false).await.unwrap(), vec![1, 2]);
    let latest = c
        .version("s", VersionRef::Latest, false, Format::Source, false)
        .await
        .unwrap();
    assert_eq!(latest.version, 1);
    assert!(
        c.version("s", VersionRef::Number(2), true, Format::Source, false)
            .await
            .is_ok()
    );
    assert_eq!(
        c.delete_version("s", VersionRef::Number(2), false)
            .await
            .unwrap_err()
            .codes(),
        (404, 40406)
    );
    // The ID stays readable (consumers decode old records).
    assert!(c.schema_by_id(r2.id, None, Format::Source).await.is_ok());
    assert_eq!(
        c.delete_subject("s", true).await.unwrap_err().codes(),
        (404, 40405)
    );
    assert_eq!(c.delete_subject("s", false).await.unwrap(), vec![1]);
    assert!(c.subjects(false, false).await.unwrap().is_empty());
    assert_eq!(
        c.subjects(true, false).await.unwrap(),
        vec!["s".to_string()]
    );
    assert_eq!(
        c.delete_subject("s", false).await.unwrap_err().codes(),
        (404, 40404)
    );
    assert_eq!(c.delete_subject("s", true).await.unwrap(), vec![1, 2]);
    assert!(c.subjects(true, false).await.unwrap().is_empty());
    // protoshelf keeps everything: the versions and the current pointer.
    assert_eq!(
        t.store.list_versions("s", "subject").await.unwrap(),
        vec![1, 2]
    );
    // Registering again continues the numbering with the same ID.
    let back = c.register("s", &req(V1), "t").await.unwrap();
    assert_eq!((back.id, back.version), (r1.id, 3));
}

/// `protoshelf namespace delete` (or `schema delete`) of a subject's
/// namespace hides the subject as a Confluent soft delete would, and
/// `undelete` shows it again.
async fn deletes_made_with_the_cli_hide_the_subject(t: TestStore) {
    let c = confluent(t.store.clone());
    let r = c.register("orders-value", &req(V1), "t").await.unwrap();
    let ns = c.namespace_of("orders-value");
    let registry = Registry::new(t.store.clone());
    let c = &c;
    let shown = |deleted| async move { c.subjects(deleted, false).await.unwrap() };
    assert_eq!(shown(false).await, vec!["orders-value".to_string()]);
    for schema_too in [false, true] {
        if schema_too {
            assert!(registry.delete_schema(&ns, "subject", true).await.unwrap());
        } else {
            assert!(registry.delete_namespace(&ns).await.unwrap());
        }
        assert!(shown(false).await.is_empty(), "hidden from the list");
        assert_eq!(shown(true).await, vec!["orders-value".to_string()]);
        assert_eq!(
            c.versions("orders-value", false, false)
                .await
                .unwrap_err()
                .codes(),
            (404, 40401)
        );
        assert_eq!(
            c.versions("orders-value", true, false).await.unwrap(),
            vec![1]
        );
        // The ID stays readable (consumers decode old records).
        assert!(c.schema_by_id(r.id, None, Format::Source).await.is_ok());
        if schema_too {
            assert!(registry.undelete_schema(&ns, "subject").await.unwrap());
        } else {
            assert!(registry.undelete_namespace(&ns).await.unwrap());
        }
        assert_eq!(shown(false).await, vec!["orders-value".to_string()]);
    }
}

async fn identical_content_gets_one_id_from_every_handle(t: TestStore) {
    let handles: Vec<Arc<SchemaIds>> = futures::future::join_all((0..4).map(|_| t.reopen()))
        .await
        .into_iter()
        .map(|s| Arc::new(SchemaIds::new(s)))
        .collect();
    let new = |n: usize| NewSchema {
        sha256: format!("{n:064x}"),
        schema_type: "PROTOBUF".into(),
        schema: format!("content {n}"),
        references: vec![],
        serialized: String::new(),
    };
    // Every handle allocates contents 0..8 at once; 0 and 1 by everyone.
    let mut tasks = Vec::new();
    for (h, ids) in handles.iter().enumerate() {
        for n in [0, 1, 2 + h, 6 + h % 2] {
            let ids = ids.clone();
            let content = new(n);
            tasks.push(tokio::spawn(async move {
                (n, ids.allocate(&content).await.unwrap())
            }));
        }
    }
    let mut by_content: std::collections::BTreeMap<usize, BTreeSet<u64>> = Default::default();
    for task in tasks {
        let (n, id) = task.await.unwrap();
        by_content.entry(n).or_default().insert(id);
    }
    let mut seen = BTreeSet::new();
    for (n, ids) in &by_content {
        assert_eq!(ids.len(), 1, "content {n} got several IDs: {ids:?}");
        let id = *ids.iter().next().unwrap();
        assert!(seen.insert(id), "ID {id} handed out for two contents");
        let record = handles[0].get(id).await.unwrap().unwrap();
        assert_eq!(record.sha256, new(*n).sha256);
    }
    assert_eq!(seen.len(), 8);
}

async fn an_id_is_read_with_one_get(t: TestStore) {
    let c = confluent(t.store.clone());
    let r = c.register("s", &req(V1), "t").await.unwrap();
    let fresh = t.reopen().await;
    let ids = SchemaIds::new(fresh.clone());
    let before = fresh.requests();
    assert!(ids.get(r.id).await.unwrap().is_some());
    let cold = fresh.requests().total() - before.total();
    assert_eq!(cold, 1, "a cold read of an ID is one GET");
    let before = fresh.requests();
    assert!(ids.get(r.id).await.unwrap().is_some());
    assert_eq!(
        fresh.requests().total(),
        before.total(),
        "a warm read makes no request"
    );
    assert!(ids.get(r.id + 1000).await.unwrap().is_none());
}

async fn an_expired_subject_is_read_again_once_by_concurrent_requests(t: TestStore) {
    // Long enough that the view cannot expire again during the test, even
    // on a busy machine.
    let refresh = std::time::Duration::from_secs(3);
    let c = ConfluentRegistry::new(
        Registry::new(t.store.clone()),
        Options {
            refresh,
            ..Default::default()
        },
    );
    c.register("s", &req(V1), "t").await.unwrap();
    // What one re-read of the subject costs (`fresh` always re-reads).
    let before = t.store.requests().total();
    c.subject("s", true).await.unwrap().unwrap();
    let one_read = t.store.requests().total() - before;
    assert!(one_read > 0);
    tokio::time::sleep(refresh + std::time::Duration::from_millis(100)).await;
    let before = t.store.requests().total();
    let views = futures::future::join_all((0..16).map(|_| c.subject("s", false))).await;
    for v in views {
        assert_eq!(
            v.unwrap().unwrap().live().last().map(|v| v.version),
            Some(1)
        );
    }
    assert_eq!(
        t.store.requests().total() - before,
        one_read,
        "16 requests that find the view expired read the subject once"
    );
}

async fn other_namespaces_are_never_taken_over(t: TestStore) {
    let c = confluent(t.store.clone());
    c.registry()
        .create_namespace("shop", Policy::Strict, Default::default())
        .await
        .unwrap();
    let e = c.register("shop", &req(V1), "t").await.unwrap_err();
    assert_eq!(e.codes(), (422, 42205), "{e}");
    assert!(c.subjects(false, false).await.unwrap().is_empty());
    // Subjects that are not namespace IDs map to readable, distinct ones.
    c.register("a/b.proto", &req(V1), "t").await.unwrap();
    c.register("a_b.proto", &req(V1), "t").await.unwrap();
    let subjects = c.subjects(false, false).await.unwrap();
    assert_eq!(
        subjects,
        vec!["a/b.proto".to_string(), "a_b.proto".to_string()]
    );
    assert_ne!(c.namespace_of("a/b.proto"), "a_b.proto");
}
