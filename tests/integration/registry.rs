//! The registry on every backend: compile, normalize, no-change, limits,
//! ownership, dependencies, batches, promote with compatibility policies,
//! discard, rollback, builtins and restore.

use crate::common;

use common::TestStore;
use prost::Message;
use protoshelf::Error;
use protoshelf::compat::Policy;
use protoshelf::ids::BUILTINS;
use protoshelf::registry::diff::VersionRef;
use protoshelf::registry::view::Tree;
use protoshelf::registry::{
    BatchMember, CompatScope, Limits, PublishOptions, Published, Registry, SourceFile,
};

on_every_backend!(
    publish_stage_promote_and_no_change,
    normalization_decides_what_is_a_change,
    imports_resolve_across_schemas_builtins_and_well_known_types,
    compile_errors_name_file_line_column_and_write_nothing,
    bad_input_is_refused_before_anything_is_written,
    one_owner_per_path_and_per_name,
    files_without_a_package_publish_and_keep_one_owner_per_name,
    batches_compile_together_and_stage_in_one_commit,
    promote_checks_compatibility_all_or_nothing,
    rollback_and_discard,
    stale_descriptors_are_recompiled_on_restore,
    diff_compares_versions_by_number_or_pointer_and_writes_nothing,
    scope_all_checks_every_version_ever_current,
    soft_deletes_hide_keep_versions_and_restore,
    a_publish_creates_its_namespace_only_once_the_files_pass,
);

fn file(path: &str, text: &str) -> SourceFile {
    SourceFile::new(path, text)
}

/// Publishes one file as `schema`, with the test options.
async fn try_push(
    r: &Registry,
    ns: &str,
    schema: &str,
    path: &str,
    text: &str,
) -> protoshelf::Result<Published> {
    r.publish(ns, schema, vec![file(path, text)], opts()).await
}

async fn push(r: &Registry, ns: &str, schema: &str, path: &str, text: &str) -> Published {
    try_push(r, ns, schema, path, text).await.unwrap()
}

fn opts() -> PublishOptions {
    PublishOptions {
        created_by: Some("tests".into()),
        ..Default::default()
    }
}

/// The current version of `schema`, as stored.
async fn current(t: &TestStore, ns: &str, schema: &str) -> Option<u64> {
    t.store
        .get_schema(ns, schema)
        .await
        .unwrap()
        .current_version
}

async fn registry(t: &TestStore, namespaces: &[&str]) -> Registry {
    let r = Registry::new(t.store.clone());
    for ns in namespaces {
        r.create_namespace(ns, Policy::Strict, Default::default())
            .await
            .unwrap();
    }
    r
}

const ORDER_V1: &str = "syntax = \"proto3\";\npackage shop;\n\n// An order.\nmessage Order {\n  string id = 1;\n  int64 cents = 2;\n}\n";
const ORDER_V2: &str = "syntax = \"proto3\";\npackage shop;\n\n// An order.\nmessage Order {\n  string id = 1;\n  int64 cents = 2;\n  string note = 3;\n}\n";
const ORDER_BROKEN: &str =
    "syntax = \"proto3\";\npackage shop;\n\n// An order.\nmessage Order {\n  string id = 1;\n}\n";

async fn publish_stage_promote_and_no_change(t: TestStore) {
    let r = registry(&t, &["shop"]).await;
    let p = push(&r, "shop", "orders", "shop/order.proto", ORDER_V1).await;
    assert_eq!((p.version, p.no_change), (1, false));
    assert_eq!(p.fingerprint.len(), 64);
    let s = t.store.get_schema("shop", "orders").await.unwrap();
    assert_eq!((s.current_version, s.staged_version), (None, Some(1)));
    let v = t.store.get_version("shop", "orders", 1).await.unwrap();
    assert_eq!(
        v.compiler_version,
        protoshelf::registry::compile::COMPILER_VERSION
    );
    assert_eq!(v.created_by, "tests");

    // Same files again: no change, nothing written.
    let before = common::snapshot(&t.raw()).await;
    let again = push(&r, "shop", "orders", "shop/order.proto", ORDER_V1).await;
    assert_eq!(
        (again.version, again.no_change, &again.fingerprint),
        (1, true, &p.fingerprint)
    );
    assert_eq!(common::snapshot(&t.raw()).await, before);

    let promoted = r.promote("shop", false).await.unwrap();
    assert_eq!(promoted.promoted.len(), 1);
    assert_eq!(promoted.promoted[0].current_version, 1);
    // Still no change against current.
    assert!(
        push(&r, "shop", "orders", "shop/order.proto", ORDER_V1)
            .await
            .no_change
    );
    let p2 = push(&r, "shop", "orders", "shop/order.proto", ORDER_V2).await;
    assert_eq!((p2.version, p2.no_change), (2, false));
    assert!(matches!(
        r.publish("nope", "x", vec![file("x.proto", ORDER_V1)], opts())
            .await,
        Err(Error::NotFound(_))
    ));
}

async fn normalization_decides_what_is_a_change(t: TestStore) {
    let r = registry(&t, &["shop"]).await;
    push(&r, "shop", "orders", "shop/order.proto", ORDER_V1).await;
    let noisy = format!("\u{feff}{}\n\n", ORDER_V1.replace('\n', "  \r\n"));
    let p = push(&r, "shop", "orders", "shop/order.proto", &noisy).await;
    assert!(
        p.no_change,
        "BOM, CRLF and trailing whitespace are not a change"
    );
    let comment = ORDER_V1.replace("// An order.", "// An order placed by a customer.");
    let p = push(&r, "shop", "orders", "shop/order.proto", &comment).await;
    assert!(!p.no_change, "a comment is content");
    // The stored blob is the normalized text, verifiable by hashing.
    let files = t
        .store
        .get_version_files("shop", "orders", p.version)
        .await
        .unwrap();
    let blob = t.store.get_blob("shop", &files[0].sha256).await.unwrap();
    assert_eq!(std::str::from_utf8(&blob.source).unwrap(), comment);
}

async fn imports_resolve_across_schemas_builtins_and_well_known_types(t: TestStore) {
    let r = registry(&t, &["shop"]).await;
    let money = "syntax = \"proto3\";\npackage common;\nmessage Money { int64 cents = 1; string currency = 2; }\n";
    push(&r, BUILTINS, "money", "common/money.proto", money).await;
    r.promote(BUILTINS, false).await.unwrap();
    let types = "syntax = \"proto3\";\npackage shop;\nimport \"google/protobuf/timestamp.proto\";\nimport \"common/money.proto\";\nmessage Price { common.Money amount = 1; google.protobuf.Timestamp at = 2; }\n";
    push(&r, "shop", "types", "shop/types.proto", types).await;
    // Not promoted: the orders schema compiles against the proposed tree.
    let orders = "syntax = \"proto3\";\npackage shop;\nimport \"shop/types.proto\";\nmessage Order { string id = 1; Price price = 2; }\n";
    let before = t.store.requests();
    let p = push(&r, "shop", "orders", "shop/order.proto", orders).await;
    eprintln!(
        "{:?}: publish with 2 cross-schema imports: {}",
        t.backend,
        t.store.requests() - before
    );

    let v = t
        .store
        .get_version("shop", "orders", p.version)
        .await
        .unwrap();
    let set = prost_types::FileDescriptorSet::decode(v.compiled.as_ref()).unwrap();
    let names: Vec<&str> = set.file.iter().map(|f| f.name()).collect();
    // Self-contained, dependencies first.
    assert_eq!(names.last(), Some(&"shop/order.proto"));
    for dep in [
        "google/protobuf/timestamp.proto",
        "common/money.proto",
        "shop/types.proto",
    ] {
        let at = names
            .iter()
            .position(|n| *n == dep)
            .unwrap_or_else(|| panic!("{dep} missing from {names:?}"));
        assert!(at < names.len() - 1);
    }
    assert!(
        names.iter().position(|n| *n == "common/money.proto")
            < names.iter().position(|n| *n == "shop/types.proto")
    );
    let deps = t
        .store
        .get_version_deps("shop", "orders", p.version)
        .await
        .unwrap();
    let got: Vec<(String, String, String, u64)> = deps
        .iter()
        .map(|d| {
            (
                d.path.clone(),
                d.namespace_id.clone(),
                d.schema_id.clone(),
                d.version,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "common/money.proto".to_string(),
                BUILTINS.to_string(),
                "money".to_string(),
                1
            ),
            (
                "shop/types.proto".to_string(),
                "shop".to_string(),
                "types".to_string(),
                1
            ),
        ]
    );
}

async fn compile_errors_name_file_line_column_and_write_nothing(t: TestStore) {
    let r = registry(&t, &["shop"]).await;
    let before = common::snapshot(&t.raw()).await;
    let syntax = "syntax = \"proto3\";\npackage shop;\nmessage Order {\n  string id = ;\n}\n";
    let err = try_push(&r, "shop", "orders", "shop/order.proto", syntax)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Compile(_)), "{err}");
    assert!(err.to_string().contains("shop/order.proto:4:"), "{err}");
    let missing = "syntax = \"proto3\";\npackage shop;\nimport \"shop/nowhere.proto\";\nmessage Order { string id = 1; }\n";
    let err = try_push(&r, "shop", "orders", "shop/order.proto", missing)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("shop/order.proto:3:")
            && err.to_string().contains("shop/nowhere.proto"),
        "{err}"
    );
    let undefined = "syntax = \"proto3\";\npackage shop;\nmessage Order { Missing m = 1; }\n";
    let err = try_push(&r, "shop", "orders", "shop/order.proto", undefined)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("shop/order.proto:3:") && err.to_string().contains("Missing"),
        "{err}"
    );
    assert_eq!(common::snapshot(&t.raw()).await, before);
}

async fn bad_input_is_refused_before_anything_is_written(t: TestStore) {
    let r = registry(&t, &["shop"]).await.with_limits(Limits {
        max_file_bytes: 1024,
        max_files: 3,
        ..Limits::default()
    });
    let raw = t.raw();
    let before = common::snapshot(&raw).await;
    let ok = file("shop/order.proto", ORDER_V1);
    let cases: Vec<(&str, Vec<SourceFile>, &str)> = vec![
        ("../x", vec![ok.clone()], "schema ID"),
        ("orders", vec![], "no .proto files"),
        (
            "orders",
            vec![file("../etc/passwd.proto", ORDER_V1)],
            "canonical",
        ),
        ("orders", vec![file("/abs.proto", ORDER_V1)], "relative"),
        ("orders", vec![file("shop/readme.txt", ORDER_V1)], ".proto"),
        (
            "orders",
            vec![file("google/protobuf/timestamp.proto", ORDER_V1)],
            "well-known",
        ),
        (
            "orders",
            vec![SourceFile::new(
                "shop/bin.proto",
                vec![0xff, 0xfe, 0x00, 0x12],
            )],
            "UTF-8",
        ),
        (
            "orders",
            vec![file("shop/big.proto", &"/".repeat(2000))],
            "limit per file",
        ),
        (
            "orders",
            vec![
                file("a.proto", "x"),
                file("b.proto", "x"),
                file("c.proto", "x"),
                file("d.proto", "x"),
            ],
            "limit is 3",
        ),
        ("orders", vec![ok.clone(), ok.clone()], "given twice"),
    ];
    for (schema, files, needle) in cases {
        let err = r.publish("shop", schema, files, opts()).await.unwrap_err();
        assert!(
            err.is_user_error() && err.to_string().contains(needle),
            "{needle}: {err}"
        );
    }
    assert_eq!(
        common::snapshot(&raw).await,
        before,
        "a refused publish wrote something"
    );
    // --force allows a well-known path.
    let forced = PublishOptions {
        force: true,
        ..opts()
    };
    let wkt = "syntax = \"proto3\";\npackage google.protobuf;\nmessage Timestamp { int64 seconds = 1; int32 nanos = 2; }\n";
    r.publish(
        "shop",
        "wkt",
        vec![file("google/protobuf/timestamp.proto", wkt)],
        forced,
    )
    .await
    .unwrap();
}

async fn one_owner_per_path_and_per_name(t: TestStore) {
    let r = registry(&t, &["shop"]).await;
    push(&r, "shop", "orders", "shop/order.proto", ORDER_V1).await;
    let before = common::snapshot(&t.raw()).await;
    // The same path from another schema.
    let err = try_push(&r, "shop", "other", "shop/order.proto", ORDER_V2)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("shop/order.proto") && err.to_string().contains("\"orders\""),
        "{err}"
    );
    // The same name from another file of another schema.
    let dup = "syntax = \"proto3\";\npackage shop;\nmessage Order { string x = 1; }\n";
    let err = try_push(&r, "shop", "other", "shop/dup.proto", dup)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("shop.Order")
            && text.contains("shop/order.proto")
            && text.contains("\"orders\""),
        "{text}"
    );
    assert_eq!(common::snapshot(&t.raw()).await, before);
    // Against builtins.
    let money = "syntax = \"proto3\";\npackage common;\nmessage Money { int64 cents = 1; }\n";
    push(&r, BUILTINS, "money", "common/money.proto", money).await;
    r.promote(BUILTINS, false).await.unwrap();
    let err = try_push(&r, "shop", "money", "common/money.proto", money)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("builtin"), "{err}");
    let err = try_push(&r, "shop", "money2", "shop/money.proto", money)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("common.Money") && err.to_string().contains("builtin"),
        "{err}"
    );
    // A schema may move its own file and keep its own names.
    push(&r, "shop", "orders", "shop/v2/order.proto", ORDER_V1).await;
    // Once moved, the old path is free.
    let free = "syntax = \"proto3\";\npackage shop.legacy;\nmessage Old { string id = 1; }\n";
    push(&r, "shop", "legacy", "shop/order.proto", free).await;
}

async fn batches_compile_together_and_stage_in_one_commit(t: TestStore) {
    let r = registry(&t, &["shop"]).await;
    let a = "syntax = \"proto3\";\npackage shop.a;\nmessage A { string id = 1; }\n";
    let b = "syntax = \"proto3\";\npackage shop.b;\nimport \"a/a.proto\";\nmessage B { shop.a.A a = 1; }\n";
    let c = "syntax = \"proto3\";\npackage shop.c;\nimport \"b/b.proto\";\nimport \"a/a.proto\";\nmessage C { shop.b.B b = 1; shop.a.A a = 2; }\n";
    // Members listed in an order that is not the dependency order.
    let members = vec![
        BatchMember {
            schema_id: "c".into(),
            files: vec![file("c/c.proto", c)],
        },
        BatchMember {
            schema_id: "b".into(),
            files: vec![file("b/b.proto", b)],
        },
        BatchMember {
            schema_id: "a".into(),
            files: vec![file("a/a.proto", a)],
        },
    ];
    let seq = t.store.namespace_state("shop").await.unwrap().seq;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let progress = {
        let seen = seen.clone();
        protoshelf::registry::Progress(std::sync::Arc::new(move |step| {
            seen.lock().unwrap().push(step)
        }))
    };
    let with_progress = PublishOptions {
        progress: Some(progress),
        ..opts()
    };
    let out = r
        .publish_many("shop", members.clone(), with_progress)
        .await
        .unwrap();
    use protoshelf::registry::Step::{Compiling, Storing};
    assert_eq!(
        *seen.lock().unwrap(),
        [
            Compiling { done: 0, total: 3 },
            Compiling { done: 1, total: 3 },
            Compiling { done: 2, total: 3 },
            Compiling { done: 3, total: 3 },
            Storing { done: 0, total: 3 },
            Storing { done: 1, total: 3 },
            Storing { done: 2, total: 3 },
            Storing { done: 3, total: 3 }
        ],
        "progress per compiled schema and per stored version"
    );
    assert_eq!(
        out.iter().map(|p| p.schema_id.as_str()).collect::<Vec<_>>(),
        ["c", "b", "a"]
    );
    assert_eq!(
        t.store.namespace_state("shop").await.unwrap().seq,
        seq + 1,
        "one commit"
    );
    let deps = t.store.get_version_deps("shop", "c", 1).await.unwrap();
    assert_eq!(
        deps.iter()
            .map(|d| (d.schema_id.as_str(), d.version))
            .collect::<Vec<_>>(),
        [("a", 1), ("b", 1)]
    );
    // Again: nothing changed.
    assert!(
        r.publish_many("shop", members, opts())
            .await
            .unwrap()
            .iter()
            .all(|p| p.no_change)
    );

    // Schemas importing each other's files are refused.
    let x =
        "syntax = \"proto3\";\npackage x;\nimport \"y/y1.proto\";\nmessage X1 { y.Y1 y = 1; }\n";
    let x2 = "syntax = \"proto3\";\npackage x;\nmessage X2 {}\n";
    let y1 = "syntax = \"proto3\";\npackage y;\nmessage Y1 {}\n";
    let y2 =
        "syntax = \"proto3\";\npackage y;\nimport \"x/x2.proto\";\nmessage Y2 { x.X2 x = 1; }\n";
    let cycle = vec![
        BatchMember {
            schema_id: "x".into(),
            files: vec![file("x/x1.proto", x), file("x/x2.proto", x2)],
        },
        BatchMember {
            schema_id: "y".into(),
            files: vec![file("y/y1.proto", y1), file("y/y2.proto", y2)],
        },
        // Waits on the cycle without being part of it: not named.
        BatchMember {
            schema_id: "z".into(),
            files: vec![file(
                "z/z.proto",
                "syntax = \"proto3\";\npackage z;\nimport \"x/x2.proto\";\nmessage Z { x.X2 x = 1; }\n",
            )],
        },
    ];
    let err = r
        .publish_many("shop", cycle, opts())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cycle") && err.contains("\"x\"") && err.contains("\"y\""),
        "{err}"
    );
    assert!(!err.contains("\"z\""), "{err}");
}

async fn promote_checks_compatibility_all_or_nothing(t: TestStore) {
    let r = registry(&t, &["shop"]).await;
    push(&r, "shop", "orders", "shop/order.proto", ORDER_V1).await;
    let other = "syntax = \"proto3\";\npackage stock;\nmessage Item { string sku = 1; }\n";
    push(&r, "shop", "stock", "stock/item.proto", other).await;
    r.promote("shop", false).await.unwrap();

    let other2 =
        "syntax = \"proto3\";\npackage stock;\nmessage Item { string sku = 1; int32 count = 2; }\n";
    push(&r, "shop", "stock", "stock/item.proto", other2).await;
    push(&r, "shop", "orders", "shop/order.proto", ORDER_BROKEN).await;
    let dry = r.promote("shop", true);
    assert!(matches!(dry.await, Err(Error::Incompatible(_))));
    let err = r.promote("shop", false).await.unwrap_err();
    let Error::Incompatible(v) = &err else {
        panic!("{err}")
    };
    assert_eq!(v.len(), 1);
    assert_eq!(
        (v[0].schema_id.as_str(), v[0].violation.rule),
        ("orders", "FIELD_NO_DELETE")
    );
    assert!(err.to_string().contains("shop/order.proto:5:"), "{err}");
    // All or nothing: the compatible schema was not promoted either.
    for (schema, version) in [("orders", 1), ("stock", 1)] {
        assert_eq!(current(&t, "shop", schema).await, Some(version));
    }
    // Under the `none` policy the same promote goes through.
    r.set_policy("shop", Policy::None).await.unwrap();
    assert_eq!(r.policy("shop").await.unwrap(), Policy::None);
    let dry = r.promote("shop", true).await.unwrap();
    assert!(dry.dry_run && dry.promoted.len() == 2);
    assert_eq!(current(&t, "shop", "orders").await, Some(1));
    assert_eq!(r.promote("shop", false).await.unwrap().promoted.len(), 2);
    assert_eq!(current(&t, "shop", "orders").await, Some(2));
}

async fn rollback_and_discard(t: TestStore) {
    let r = registry(&t, &["shop"]).await;
    push(&r, "shop", "orders", "shop/order.proto", ORDER_V1).await;
    r.promote("shop", false).await.unwrap();
    push(&r, "shop", "orders", "shop/order.proto", ORDER_V2).await;
    r.promote("shop", false).await.unwrap();
    // Back to v1 removes a field: refused under strict unless forced.
    let err = r
        .rollback("shop", "orders", 1, false, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("FIELD_NO_DELETE"), "{err}");
    assert!(matches!(
        r.rollback("shop", "orders", 9, false, false).await,
        Err(Error::NotFound(_))
    ));
    let promoted = r
        .rollback("shop", "orders", 1, true, true)
        .await
        .unwrap()
        .promoted
        .unwrap();
    assert_eq!(promoted.rollbacks, ["orders"]);
    assert_eq!(current(&t, "shop", "orders").await, Some(1));

    push(&r, "shop", "orders", "shop/order.proto", ORDER_V2).await;
    assert!(r.discard("shop").await.unwrap());
    assert!(!r.discard("shop").await.unwrap());
    let s = t.store.get_schema("shop", "orders").await.unwrap();
    assert_eq!((s.current_version, s.staged_version), (Some(1), None));
}

async fn stale_descriptors_are_recompiled_on_restore(t: TestStore) {
    let r = registry(&t, &["shop"]).await;
    let types = "syntax = \"proto3\";\npackage shop;\nmessage Price { int64 cents = 1; }\n";
    push(&r, "shop", "types", "shop/types.proto", types).await;
    let orders = "syntax = \"proto3\";\npackage shop;\nimport \"shop/types.proto\";\nmessage Order { Price price = 1; }\n";
    push(&r, "shop", "orders", "shop/order.proto", orders).await;
    r.promote("shop", false).await.unwrap();
    let fresh = t
        .store
        .get_version("shop", "orders", 1)
        .await
        .unwrap()
        .compiled;

    // A version written by another compiler version, with a stale descriptor.
    let files = t
        .store
        .get_version_files("shop", "orders", 1)
        .await
        .unwrap();
    let deps = t.store.get_version_deps("shop", "orders", 1).await.unwrap();
    let mut old = t.store.get_version("shop", "orders", 1).await.unwrap();
    old.compiler_version = "protox 0.0.1".into();
    old.compiled = bytes::Bytes::from_static(b"stale");
    let v = t.store.create_version(&old, &files, &deps).await.unwrap();
    t.store.set_staged("shop", "orders", v).await.unwrap();
    r.set_policy("shop", Policy::None).await.unwrap();
    r.promote("shop", false).await.unwrap();

    let tree = r.load_tree("shop", Tree::Current).await.unwrap();
    let o = tree.iter().find(|s| s.schema_id == "orders").unwrap();
    assert_eq!(o.version, v);
    assert_eq!(
        o.compiled, fresh,
        "recompiled from sources and recorded deps"
    );
    let t2 = tree.iter().find(|s| s.schema_id == "types").unwrap();
    assert_eq!(
        t2.compiled,
        t.store
            .get_version("shop", "types", 1)
            .await
            .unwrap()
            .compiled,
        "reused as stored"
    );
}

/// protoc and buf accept files with no `package` (their names live in the
/// root package), and real trees hold them: they publish, import each
/// other across schemas and promote, and a second definition of a root
/// name is refused like any other.
async fn files_without_a_package_publish_and_keep_one_owner_per_name(t: TestStore) {
    let r = registry(&t, &["e"]).await;
    let q = "syntax = \"proto3\";\nmessage Q {}\n";
    push(&r, "e", "q", "q.proto", q).await;
    let uses = "syntax = \"proto3\";\nimport \"q.proto\";\nmessage R { Q q = 1; }\n";
    push(&r, "e", "r", "sub/r.proto", uses).await;
    let before = common::snapshot(&t.raw()).await;
    let dup = "syntax = \"proto3\";\nmessage Q { int32 a = 1; }\n";
    let err = try_push(&r, "e", "q2", "q2.proto", dup).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("Q, defined in q2.proto") && text.contains("\"q\""),
        "{text}"
    );
    assert_eq!(common::snapshot(&t.raw()).await, before, "nothing written");
    // The refusal holds after promote too, and for a root name defined in a
    // file that has a package elsewhere in the tree.
    r.promote("e", false).await.unwrap();
    let err = try_push(&r, "e", "q2", "other/q.proto", dup)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already defined"), "{err}");
    let info = r.schema_info("e", "r").await.unwrap();
    assert_eq!(info.schema.current_version, Some(1), "{info:?}");
}

/// `diff` between two versions named by number or by pointer: the source
/// diff and the definitions, and errors for versions the log never named.
async fn diff_compares_versions_by_number_or_pointer_and_writes_nothing(t: TestStore) {
    let r = registry(&t, &["shop"]).await;
    push(&r, "shop", "orders", "shop/order.proto", ORDER_V1).await;
    r.promote("shop", false).await.unwrap();
    push(&r, "shop", "orders", "shop/order.proto", ORDER_V2).await;
    let before = common::snapshot(&t.raw()).await;
    let d = r
        .diff("shop", "orders", VersionRef::Current, VersionRef::Staged)
        .await
        .unwrap();
    assert_eq!((d.from, d.to), (1, 2));
    let by_number = r
        .diff(
            "shop",
            "orders",
            VersionRef::Number(1),
            VersionRef::Number(2),
        )
        .await
        .unwrap();
    assert_eq!(by_number.files, d.files);
    assert_eq!(d.files.len(), 1);
    assert!(
        d.files[0].unified.contains("+  string note = 3;"),
        "{}",
        d.files[0].unified
    );
    let defs: Vec<_> = d
        .definitions
        .iter()
        .map(|d| (d.name.as_str(), d.after.as_deref()))
        .collect();
    assert_eq!(defs, [("shop.Order.note", Some("string note = 3"))]);
    // Backwards, the field is removed.
    let back = r
        .diff(
            "shop",
            "orders",
            VersionRef::Number(2),
            VersionRef::Number(1),
        )
        .await
        .unwrap();
    assert_eq!(
        back.definitions[0].change,
        protoshelf::diff::Change::Removed
    );
    let same = r
        .diff("shop", "orders", VersionRef::Number(2), VersionRef::Staged)
        .await
        .unwrap();
    assert!(same.files.is_empty() && same.definitions.is_empty());
    for (from, to) in [
        (VersionRef::Number(1), VersionRef::Number(3)),
        (VersionRef::Number(0), VersionRef::Current),
    ] {
        let err = r.diff("shop", "orders", from, to).await.unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err}");
    }
    r.promote("shop", false).await.unwrap();
    let err = r
        .diff("shop", "orders", VersionRef::Current, VersionRef::Staged)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("a staged version"), "{err}");
    let err = r
        .diff("shop", "nope", VersionRef::Current, VersionRef::Staged)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    let after_promote = common::snapshot(&t.raw()).await;
    r.diff("shop", "orders", VersionRef::Number(1), VersionRef::Current)
        .await
        .unwrap();
    assert_eq!(
        common::snapshot(&t.raw()).await,
        after_promote,
        "diff writes nothing"
    );
    assert_ne!(before, after_promote);
}

/// Under scope `all` a new version is checked against every version that
/// was ever current: a change that is compatible with the latest but not
/// with an earlier one is refused, naming that version. Under `wire` a
/// whole message may be deleted; adding it back with another field type is
/// new to the latest version, but not to the first.
async fn scope_all_checks_every_version_ever_current(t: TestStore) {
    let r = Registry::new(t.store.clone());
    r.create_namespace("shop", Policy::Wire, Default::default())
        .await
        .unwrap();
    assert_eq!(r.compat_scope("shop").await.unwrap(), CompatScope::Latest);
    let v1 = format!("{ORDER_V1}message Refund {{ string reason = 1; }}\n");
    let v3 = format!("{ORDER_V1}message Refund {{ int64 reason = 1; }}\n");
    push(&r, "shop", "orders", "shop/order.proto", &v1).await;
    r.promote("shop", false).await.unwrap();
    push(&r, "shop", "orders", "shop/order.proto", ORDER_V1).await;
    r.promote("shop", false).await.unwrap();
    let files = || vec![file("shop/order.proto", &v3)];
    // Latest only: v3 is checked against v2 alone and passes.
    let report = r.check("shop", "orders", files(), false).await.unwrap();
    assert_eq!(report.checked_against, [2]);
    assert!(report.violations.is_empty(), "{:?}", report.violations);

    r.set_compat_scope("shop", CompatScope::All).await.unwrap();
    let seq = t.store.namespace_state("shop").await.unwrap().seq;
    r.set_compat_scope("shop", CompatScope::All).await.unwrap();
    assert_eq!(
        t.store.namespace_state("shop").await.unwrap().seq,
        seq,
        "setting the same scope writes no commit"
    );
    let report = r.check("shop", "orders", files(), false).await.unwrap();
    assert_eq!(report.checked_against, [1, 2]);
    let against: Vec<_> = report
        .violations
        .iter()
        .map(|v| (v.against_version, v.violation.rule))
        .collect();
    assert_eq!(against, [(Some(1), "FIELD_WIRE_COMPATIBLE_TYPE")]);

    push(&r, "shop", "orders", "shop/order.proto", &v3).await;
    for dry_run in [true, false] {
        let err = r.promote("shop", dry_run).await.unwrap_err();
        let Error::Incompatible(v) = &err else {
            panic!("{err}")
        };
        assert_eq!(v[0].against_version, Some(1), "{err}");
        assert!(err.to_string().contains("(against version 1)"), "{err}");
    }
    assert_eq!(current(&t, "shop", "orders").await, Some(2));
    // Back to latest: the same promote goes through.
    r.set_compat_scope("shop", CompatScope::Latest)
        .await
        .unwrap();
    r.promote("shop", false).await.unwrap();
    assert_eq!(current(&t, "shop", "orders").await, Some(3));
}

/// Soft deletes: a schema imported by another's current version is refused
/// unless forced; a deleted one is hidden from lists and the current read,
/// readable by version, closed to publishes, restored by undelete (unless
/// another schema took its place meanwhile); nothing-to-do writes nothing.
async fn soft_deletes_hide_keep_versions_and_restore(t: TestStore) {
    let r = registry(&t, &["shop"]).await;
    let money = "syntax = \"proto3\";\npackage shop.types;\nmessage Money { int64 cents = 1; }\n";
    let uses = "syntax = \"proto3\";\npackage shop;\nimport \"shop/types/money.proto\";\nmessage Order { shop.types.Money total = 1; }\n";
    push(&r, "shop", "types", "shop/types/money.proto", money).await;
    push(&r, "shop", "orders", "shop/order.proto", uses).await;
    r.promote("shop", false).await.unwrap();
    let seq = || async { t.store.namespace_state("shop").await.unwrap().seq };

    let before = common::snapshot(&t.raw()).await;
    let err = r.delete_schema("shop", "types", false).await.unwrap_err();
    assert!(
        err.is_user_error()
            && err
                .to_string()
                .contains("imported by the current version of shop/orders v1"),
        "{err}"
    );
    assert_eq!(
        common::snapshot(&t.raw()).await,
        before,
        "a refused delete writes nothing"
    );

    assert!(r.delete_schema("shop", "orders", false).await.unwrap());
    let at = seq().await;
    assert!(!r.delete_schema("shop", "orders", false).await.unwrap());
    assert_eq!(seq().await, at, "deleting it again commits nothing");
    let listed: Vec<_> = r
        .list_schemas("shop")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.schema_id)
        .collect();
    assert_eq!(listed, ["types"]);
    let deleted: Vec<_> = r
        .deleted_schemas("shop")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.schema_id)
        .collect();
    assert_eq!(deleted, ["orders"]);
    let err = r
        .readable_version("shop", "orders", None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is deleted"), "{err}");
    assert_eq!(
        r.readable_version("shop", "orders", Some(1)).await.unwrap(),
        1
    );
    let err = try_push(&r, "shop", "orders", "shop/order.proto", ORDER_V1)
        .await
        .unwrap_err();
    assert!(
        err.is_user_error() && err.to_string().contains("schema undelete"),
        "{err}"
    );

    // Its path is free while it is deleted; then it cannot come back.
    push(&r, "shop", "orders2", "shop/order.proto", ORDER_V1).await;
    let err = r.undelete_schema("shop", "orders").await.unwrap_err();
    assert!(
        err.to_string().contains("another schema took its place"),
        "{err}"
    );
    r.discard("shop").await.unwrap();
    assert!(r.undelete_schema("shop", "orders").await.unwrap());
    assert_eq!(current(&t, "shop", "orders").await, Some(1));
    let at = seq().await;
    assert!(!r.undelete_schema("shop", "orders").await.unwrap());
    assert_eq!(seq().await, at, "undeleting a live schema commits nothing");

    // Forced: the importer keeps its current version; new imports fail.
    assert!(r.delete_schema("shop", "types", true).await.unwrap());
    assert_eq!(current(&t, "shop", "orders").await, Some(1));
    let err = try_push(
        &r,
        "shop",
        "more",
        "shop/more.proto",
        &uses.replace("Order", "More"),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("shop/types/money.proto"), "{err}");

    // Namespaces.
    let err = r.delete_namespace(BUILTINS).await.unwrap_err();
    assert!(err.is_user_error(), "{err}");
    assert!(r.delete_namespace("shop").await.unwrap());
    assert!(!r.delete_namespace("shop").await.unwrap());
    let live: Vec<_> = r
        .list_namespaces(false)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert!(!live.contains(&"shop".to_string()), "{live:?}");
    let gone: Vec<_> = r
        .list_namespaces(true)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(gone, ["shop"]);
    let err = try_push(&r, "shop", "orders", "shop/order.proto", ORDER_V1)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("namespace undelete"), "{err}");
    assert_eq!(
        r.readable_version("shop", "orders", Some(1)).await.unwrap(),
        1
    );
    assert!(r.undelete_namespace("shop").await.unwrap());
    assert!(!r.undelete_namespace("shop").await.unwrap());
    assert!(!r.namespace_deleted("shop").await.unwrap());
}

/// `PublishOptions::create` (`push`/`load --create`, and every publish into
/// `__builtins__`): the namespace is created only once the files have
/// compiled and passed the ownership checks, so a refused publish leaves no
/// namespace (nor any other object); concurrent creating publishes into
/// the same new namespace both land.
async fn a_publish_creates_its_namespace_only_once_the_files_pass(t: TestStore) {
    let r = Registry::new(t.store.clone()).with_limits(Limits {
        max_file_bytes: 1024,
        ..Limits::default()
    });
    let creating = PublishOptions {
        create: true,
        ..opts()
    };
    let raw = t.raw();
    let missing_ns = |ns: &'static str| {
        let store = t.store.clone();
        async move { matches!(store.get_namespace(ns).await, Err(Error::NotFound(_))) }
    };
    let syntax = "syntax = \"proto3\";\npackage shop;\nmessage Order {\n  string id = ;\n}\n";
    let money = "syntax = \"proto3\";\npackage common;\nmessage Money { int64 cents = 1; }\n";

    // __builtins__, created by its first publish: not by a failed one.
    let before = common::content_snapshot(&raw).await;
    let err = try_push(&r, BUILTINS, "common", "common/money.proto", syntax)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Compile(_)), "{err}");
    assert!(
        missing_ns(BUILTINS).await,
        "a failed publish created __builtins__"
    );
    assert_eq!(common::content_snapshot(&raw).await, before);
    push(&r, BUILTINS, "common", "common/money.proto", money).await;
    r.promote(BUILTINS, false).await.unwrap();

    let before = common::content_snapshot(&raw).await;
    let big = format!("{ORDER_V1}// {}\n", "x".repeat(1024));
    let cases: Vec<(Vec<SourceFile>, &str)> = vec![
        (
            vec![file("shop/order.proto", syntax)],
            "shop/order.proto:4:",
        ),
        (
            vec![file(
                "shop/order.proto",
                "syntax = \"proto3\";\nimport \"shop/nowhere.proto\";\nmessage O {}\n",
            )],
            "shop/nowhere.proto",
        ),
        // A path an ancestor (the builtins) owns.
        (vec![file("common/money.proto", money)], "already defined"),
        (vec![file("shop/order.proto", &big)], "limit per file"),
        (
            vec![file("google/protobuf/x.proto", ORDER_V1)],
            "well-known",
        ),
    ];
    for (files, needle) in cases {
        let err = r
            .publish("fresh", "orders", files, creating.clone())
            .await
            .unwrap_err();
        assert!(err.to_string().contains(needle), "{needle}: {err}");
        assert!(
            missing_ns("fresh").await,
            "{needle}: the namespace was created"
        );
        assert_eq!(common::content_snapshot(&raw).await, before, "{needle}");
    }
    // Without `create`, a missing namespace is an error, as before.
    let err = try_push(&r, "fresh", "orders", "shop/order.proto", ORDER_V1)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    assert_eq!(common::content_snapshot(&raw).await, before);

    // Two creating publishes at once: one creates, the other finds it
    // created (or loses the commit race and plans again); both land.
    let other = Registry::new(t.reopen().await);
    let (a, b) = tokio::join!(
        r.publish(
            "fresh",
            "orders",
            vec![file("shop/order.proto", ORDER_V1)],
            creating.clone()
        ),
        other.publish(
            "fresh",
            "money",
            vec![file(
                "pay/money.proto",
                "syntax = \"proto3\";\npackage pay;\nimport \"common/money.proto\";\nmessage Paid { common.Money m = 1; }\n",
            )],
            creating.clone()
        ),
    );
    assert_eq!((a.unwrap().version, b.unwrap().version), (1, 1));
    let state = t.store.namespace_state("fresh").await.unwrap();
    let staged: Vec<&String> = state.staged_schemas().map(|(s, _)| s).collect();
    assert_eq!(staged, ["money", "orders"]);
    let ns = t.store.get_namespace("fresh").await.unwrap();
    assert_eq!(ns.created_by.as_deref(), Some("tests"));
    assert_eq!(r.policy("fresh").await.unwrap(), Policy::Strict);
}
