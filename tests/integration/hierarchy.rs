//! Namespace hierarchy on every backend: parents through the log, imports
//! resolved through the chain and pinned, rebase, refusals that change
//! nothing, and what a deep chain costs a publish in requests.

use crate::common;

use common::TestStore;
use protoshelf::compat::Policy;
use protoshelf::ids::BUILTINS;
use protoshelf::registry::{MAX_DEPTH, PublishOptions, Registry, SourceFile};

on_every_backend!(
    imports_resolve_through_the_chain_pinned_until_rebase,
    bad_parents_and_duplicates_across_the_chain_change_nothing,
    a_deep_chain_costs_two_cold_requests_per_level_and_none_warm,
    a_publish_resolves_ancestors_no_older_than_seen_and_falls_back_on_a_miss,
    verify_reports_a_hint_whose_state_disagrees_with_the_log,
);

const MONEY_V1: &str = "syntax = \"proto3\";\npackage base;\nmessage Money { int64 units = 1; }\n";
const MONEY_V2: &str =
    "syntax = \"proto3\";\npackage base;\nmessage Money { int64 units = 1; int32 nanos = 2; }\n";
const ADDRESS: &str = "syntax = \"proto3\";\npackage mid;\nmessage Address { string city = 1; }\n";
const ORDER: &str = "syntax = \"proto3\";\npackage shop;\nimport \"base/money.proto\";\nimport \"mid/address.proto\";\nmessage Order { base.Money total = 1; mid.Address to = 2; }\n";

async fn push(r: &Registry, ns: &str, schema: &str, path: &str, text: &str) -> u64 {
    r.publish(ns, schema, vec![SourceFile::new(path, text)], opts())
        .await
        .unwrap()
        .version
}

fn opts() -> PublishOptions {
    PublishOptions {
        created_by: Some("tests".into()),
        ..Default::default()
    }
}

/// base <- mid <- shop, base/money and mid/address promoted.
async fn chain(t: &TestStore) -> Registry {
    let r = Registry::new(t.store.clone());
    r.create_namespace("base", Policy::Strict, Default::default())
        .await
        .unwrap();
    r.create_namespace_with_parent("mid", Policy::Strict, Default::default(), Some("base"))
        .await
        .unwrap();
    r.create_namespace_with_parent("shop", Policy::Strict, Default::default(), Some("mid"))
        .await
        .unwrap();
    push(&r, "base", "money", "base/money.proto", MONEY_V1).await;
    r.promote("base", false).await.unwrap();
    push(&r, "mid", "address", "mid/address.proto", ADDRESS).await;
    r.promote("mid", false).await.unwrap();
    r
}

async fn imports_resolve_through_the_chain_pinned_until_rebase(t: TestStore) {
    let r = chain(&t).await;
    assert_eq!(r.ancestors("shop").await.unwrap(), ["mid", "base"]);
    let log = t.store.log_entries("shop", 1, 1).await.unwrap();
    assert_eq!(log.len(), 1, "the parent is one commit of the child's log");

    let v = push(&r, "shop", "orders", "shop/order.proto", ORDER).await;
    r.promote("shop", false).await.unwrap();
    let deps = t.store.get_version_deps("shop", "orders", v).await.unwrap();
    let pins: Vec<(&str, &str, u64)> = deps
        .iter()
        .map(|d| (d.namespace_id.as_str(), d.schema_id.as_str(), d.version))
        .collect();
    assert_eq!(pins, [("base", "money", 1), ("mid", "address", 1)]);
    let descriptor = t
        .store
        .get_version("shop", "orders", v)
        .await
        .unwrap()
        .compiled;

    // The grandparent moves on: the child keeps its pins.
    push(&r, "base", "money", "base/money.proto", MONEY_V2).await;
    r.promote("base", false).await.unwrap();
    let after = t
        .store
        .get_version("shop", "orders", v)
        .await
        .unwrap()
        .compiled;
    assert_eq!(
        after, descriptor,
        "a promote in an ancestor changes no child"
    );
    let behind = r.rebase_status("shop").await.unwrap();
    assert_eq!(behind.len(), 1, "{behind:?}");
    let b = &behind[0];
    assert_eq!(
        (
            b.schema_id.as_str(),
            b.import.as_str(),
            b.namespace_id.as_str(),
            b.pinned_version,
            b.current_version
        ),
        ("orders", "base/money.proto", "base", 1, Some(2))
    );

    // A dry run checks and writes nothing.
    let before = common::content_snapshot(&t.raw()).await;
    let dry = r.rebase("shop", None, true).await.unwrap();
    assert_eq!(dry.schemas.len(), 1);
    assert!(dry.schemas[0].violations.is_empty() && dry.schemas[0].version.is_none());
    assert_eq!(common::content_snapshot(&t.raw()).await, before);

    let seq = t.store.namespace_state("shop").await.unwrap().seq;
    let done = r.rebase("shop", None, false).await.unwrap();
    let new = done.schemas[0].version.unwrap();
    assert_eq!(new, v + 1);
    let state = t.store.namespace_state("shop").await.unwrap();
    assert_eq!(state.seq, seq + 1, "a rebase is one commit");
    assert_eq!(state.pointers("orders").staged, Some(new));
    let deps = t
        .store
        .get_version_deps("shop", "orders", new)
        .await
        .unwrap();
    assert!(
        deps.iter()
            .any(|d| d.namespace_id == "base" && d.version == 2),
        "{deps:?}"
    );
    assert!(r.rebase_status("shop").await.unwrap().is_empty());
    r.promote("shop", false).await.unwrap();
    // Nothing behind: nothing to do, nothing written.
    let before = common::content_snapshot(&t.raw()).await;
    assert!(
        r.rebase("shop", None, false)
            .await
            .unwrap()
            .schemas
            .is_empty()
    );
    assert_eq!(common::content_snapshot(&t.raw()).await, before);

    // An ancestor change the child no longer compiles against is refused,
    // naming the child's file; nothing is written.
    let money_v3 = "syntax = \"proto3\";\npackage base;\nmessage Cash { int64 units = 1; }\n";
    r.set_policy("base", Policy::None).await.unwrap();
    push(&r, "base", "money", "base/money.proto", money_v3).await;
    r.promote("base", false).await.unwrap();
    let before = common::content_snapshot(&t.raw()).await;
    for dry_run in [true, false] {
        let err = r.rebase("shop", None, dry_run).await.unwrap_err();
        assert!(
            err.is_user_error() && err.to_string().contains("shop/order.proto"),
            "{err}"
        );
    }
    assert_eq!(common::content_snapshot(&t.raw()).await, before);

    // Clearing the parent: the chain ends at builtins, and the pins are
    // now behind (their namespace left the chain).
    assert!(r.set_parent("shop", None).await.unwrap());
    assert!(
        !r.set_parent("shop", Some(BUILTINS)).await.unwrap(),
        "no-op"
    );
    assert!(r.ancestors("shop").await.unwrap().is_empty());
    let behind = r.rebase_status("shop").await.unwrap();
    assert!(
        behind.iter().all(|b| b.current_version.is_none()),
        "{behind:?}"
    );
}

async fn bad_parents_and_duplicates_across_the_chain_change_nothing(t: TestStore) {
    let r = chain(&t).await;
    r.create_namespace("gone", Policy::Strict, Default::default())
        .await
        .unwrap();
    r.delete_namespace("gone").await.unwrap();
    let before = common::content_snapshot(&t.raw()).await;
    let refused = |e: protoshelf::Error, needle: &str| {
        assert!(
            e.is_user_error() && e.to_string().contains(needle),
            "{needle:?} not in {e}"
        );
    };
    refused(
        r.set_parent("shop", Some("nope")).await.unwrap_err(),
        "unknown parent namespace \"nope\"",
    );
    refused(
        r.set_parent("shop", Some("shop")).await.unwrap_err(),
        "its own parent",
    );
    refused(
        r.set_parent("base", Some("shop")).await.unwrap_err(),
        "cycle: base -> shop -> mid -> base",
    );
    refused(
        r.set_parent("shop", Some("gone")).await.unwrap_err(),
        "is deleted",
    );
    refused(
        r.create_namespace_with_parent("new", Policy::Strict, Default::default(), Some("nope"))
            .await
            .unwrap_err(),
        "unknown parent",
    );
    // A path or a name an ancestor defines is refused, naming both places.
    refused(
        r.publish(
            "shop",
            "copy",
            vec![SourceFile::new("base/money.proto", MONEY_V1)],
            opts(),
        )
        .await
        .unwrap_err(),
        "already defined by schema \"money\" (version 1) in ancestor namespace \"base\"",
    );
    refused(
        r.publish(
            "shop",
            "copy",
            vec![SourceFile::new("shop/money.proto", MONEY_V1)],
            opts(),
        )
        .await
        .unwrap_err(),
        "base.Money, defined in shop/money.proto of schema \"copy\", is already defined in base/money.proto of schema \"money\" (version 1) of ancestor namespace \"base\"",
    );
    assert_eq!(
        common::content_snapshot(&t.raw()).await,
        before,
        "refusals write nothing"
    );

    // Too deep: a chain of MAX_DEPTH ancestors takes no more.
    let mut above = "base".to_string();
    for i in 0..=MAX_DEPTH {
        let ns = format!("d{i}");
        let made = r
            .create_namespace_with_parent(&ns, Policy::Strict, Default::default(), Some(&above))
            .await;
        // d{i} has i + 1 ancestors.
        if i < MAX_DEPTH {
            made.unwrap();
        } else {
            refused(
                made.unwrap_err(),
                "makes a chain of 9 ancestors; the limit is 8",
            );
            assert!(t.store.get_namespace(&ns).await.is_err(), "nothing created");
        }
        above = ns;
    }
}

/// One self-contained file published in a flat namespace and in one with
/// three ancestors, each ancestor holding a promoted schema, on a cold
/// handle (fresh caches) and on a warm one. Both namespaces have one
/// commit before (deep: its parent; flat: its policy), so the difference
/// is what the ancestors cost.
async fn a_deep_chain_costs_two_cold_requests_per_level_and_none_warm(t: TestStore) {
    let r = Registry::new(t.store.clone());
    r.create_namespace("flat", Policy::Wire, Default::default())
        .await
        .unwrap();
    let mut above: Option<String> = None;
    for ns in ["l1", "l2", "l3", "deep"] {
        r.create_namespace_with_parent(ns, Policy::Strict, Default::default(), above.as_deref())
            .await
            .unwrap();
        if ns != "deep" {
            let text =
                format!("syntax = \"proto3\";\npackage {ns};\nmessage T {{ int64 a = 1; }}\n");
            push(&r, ns, "t", &format!("{ns}/t.proto"), &text).await;
            r.promote(ns, false).await.unwrap();
        }
        above = Some(ns.to_string());
    }
    for ns in ["flat", "deep"] {
        assert_eq!(t.store.namespace_state(ns).await.unwrap().seq, 1, "{ns}");
    }
    let text = |n: u32| {
        format!("syntax = \"proto3\";\npackage p;\nmessage M {{ int64 a = 1; int64 b{n} = 2; }}\n")
    };
    let publish = |r: Registry, ns: &'static str, n: u32| {
        let text = text(n);
        async move {
            let before = r.store().requests();
            r.publish(ns, "m", vec![SourceFile::new("p/m.proto", text)], opts())
                .await
                .unwrap();
            (r.store().requests() - before).total()
        }
    };
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for ns in ["flat", "deep"] {
        let r = Registry::new(t.reopen().await);
        cold.push(publish(r.clone(), ns, 1).await);
        warm.push(publish(r, ns, 2).await);
    }
    eprintln!(
        "{:?}: publish requests, flat vs 3 ancestors: cold {} vs {}, warm {} vs {}",
        t.backend, cold[0], cold[1], warm[0], warm[1]
    );
    // Per ancestor: cold, the GET of its hint (which carries its state)
    // and one LIST sweep of its claims; warm, nothing (its view is reused
    // within the window).
    assert!(cold[1] <= cold[0] + 2 * 3, "cold {cold:?}");
    assert_eq!(warm[1], warm[0], "warm {warm:?}");
}

/// The money pin of the proposed version of `shop/orders`.
async fn money_pin(t: &TestStore, v: u64) -> u64 {
    let deps = t.store.get_version_deps("shop", "orders", v).await.unwrap();
    deps.iter()
        .find(|d| d.namespace_id == "base" && d.schema_id == "money")
        .unwrap_or_else(|| panic!("{deps:?}"))
        .version
}

/// `base/money` version `fields`: [`MONEY_V1`] and one more field each.
fn money(fields: u32) -> String {
    let body: String = (2..=fields)
        .map(|i| format!(" int64 f{i} = {i};"))
        .collect();
    let body = format!(" int64 units = 1;{body}");
    format!("syntax = \"proto3\";\npackage base;\nmessage Money {{{body} }}\n")
}

/// What a publish may resolve an ancestor at: within the window, the view
/// its handle kept (the pin says so, `rebase status` tells); never a state
/// older than one the handle has seen (its own commits, a confirmed read);
/// and a stale hint that misses an import falls back to the log.
async fn a_publish_resolves_ancestors_no_older_than_seen_and_falls_back_on_a_miss(t: TestStore) {
    let b = chain(&t).await;
    let order = |n: u32| {
        ORDER.replace(
            "mid.Address to = 2;",
            &format!("mid.Address to = 2; int32 n{n} = 3;"),
        )
    };
    let a =
        Registry::new(t.reopen().await).with_ancestor_window(std::time::Duration::from_secs(600));
    let publish = |r: &Registry, text: String| {
        let r = r.clone();
        async move { push(&r, "shop", "orders", "shop/order.proto", &text).await }
    };
    let v = publish(&a, order(1)).await;
    assert_eq!(money_pin(&t, v).await, 1);

    // Another handle promotes money v2: within its window `a` keeps its
    // view (a recent state, pinned as such) ...
    push(&b, "base", "money", "base/money.proto", &money(2)).await;
    b.promote("base", false).await.unwrap();
    let v = publish(&a, order(2)).await;
    assert_eq!(
        money_pin(&t, v).await,
        1,
        "the kept view, within the window"
    );
    // ... which `rebase status` (confirmed) reports behind; having seen
    // the later state, `a` never publishes against the older one again.
    let behind = a.rebase_status("shop").await.unwrap();
    assert_eq!(behind[0].current_version, Some(2), "{behind:?}");
    let v = publish(&a, order(3)).await;
    assert_eq!(money_pin(&t, v).await, 2, "no older than seen");

    // The handle's own commit to an ancestor ends its window at once.
    push(&a, "base", "money", "base/money.proto", &money(3)).await;
    a.promote("base", false).await.unwrap();
    let v = publish(&a, order(4)).await;
    assert_eq!(money_pin(&t, v).await, 3, "own commit");

    // Builtins too: the handle's own promote there shows at once.
    let common = |n: u32| {
        money(n)
            .replace("package base;", "package common;")
            .replace("Money", "Coin")
    };
    let pay = |n: u32| {
        format!(
            "syntax = \"proto3\";\npackage shop;\nimport \"common/coin.proto\";\nmessage Pay {{ common.Coin c = 1; int32 n{n} = 2; }}\n"
        )
    };
    for n in 1..=2 {
        push(&a, BUILTINS, "coin", "common/coin.proto", &common(n)).await;
        a.promote(BUILTINS, false).await.unwrap();
        let v = push(&a, "shop", "pay", "shop/pay.proto", &pay(n)).await;
        let deps = t.store.get_version_deps("shop", "pay", v).await.unwrap();
        let pin = deps.iter().find(|d| d.namespace_id == BUILTINS);
        assert_eq!(pin.map(|d| d.version), Some(u64::from(n)), "{deps:?}");
    }

    // Past the window the hint is read again; a zero window reads it
    // every time.
    let window = std::time::Duration::from_millis(200);
    let w = Registry::new(t.reopen().await).with_ancestor_window(window);
    publish(&w, order(5)).await;
    push(&b, "base", "money", "base/money.proto", &money(4)).await;
    b.promote("base", false).await.unwrap();
    tokio::time::sleep(window * 2).await;
    let v = publish(&w, order(6)).await;
    assert_eq!(money_pin(&t, v).await, 4, "past the window");
    let z = Registry::new(t.reopen().await).with_ancestor_window(std::time::Duration::ZERO);
    publish(&z, order(7)).await;
    push(&b, "base", "money", "base/money.proto", &money(5)).await;
    b.promote("base", false).await.unwrap();
    let v = publish(&z, order(8)).await;
    assert_eq!(money_pin(&t, v).await, 5, "zero window");

    // A stale hint (as a writer that died before rewriting it leaves it)
    // that lacks an imported file: the publish finds it in the log.
    use object_store::ObjectStoreExt;
    let raw = t.raw();
    let hint = object_store::path::Path::from("ns/base/head.json");
    let stale = raw.get(&hint).await.unwrap().bytes().await.unwrap();
    let extra = "syntax = \"proto3\";\npackage base;\nmessage Extra { int64 e = 1; }\n";
    push(&b, "base", "extra", "base/extra.proto", extra).await;
    b.promote("base", false).await.unwrap();
    raw.put(&hint, stale.into()).await.unwrap();
    let uses_extra = "syntax = \"proto3\";\npackage shop;\nimport \"base/extra.proto\";\nmessage Uses { base.Extra e = 1; }\n";
    let fresh = Registry::new(t.reopen().await);
    let v = fresh
        .publish(
            "shop",
            "uses",
            vec![SourceFile::new("shop/uses.proto", uses_extra)],
            opts(),
        )
        .await
        .unwrap()
        .version;
    let deps = t.store.get_version_deps("shop", "uses", v).await.unwrap();
    assert!(
        deps.iter()
            .any(|d| d.namespace_id == "base" && d.schema_id == "extra" && d.version == 1),
        "{deps:?}"
    );
}

/// The hint's state is what a publish in a child reads of an ancestor:
/// `verify` checks it against the log's state at the hint's `latest`.
async fn verify_reports_a_hint_whose_state_disagrees_with_the_log(t: TestStore) {
    use object_store::ObjectStoreExt;
    use protoshelf::objstore::records::{HeadHint, from_json, to_json};
    chain(&t).await;
    let report = t.store.verify(None).await.unwrap();
    assert!(report.clean(), "{:?}", report.problems);
    let key = object_store::path::Path::from("ns/base/head.json");
    let raw = t.raw();
    let bytes = raw.get(&key).await.unwrap().bytes().await.unwrap();
    let mut hint: HeadHint = from_json(key.as_ref(), &bytes).unwrap();
    let state = hint
        .state
        .as_mut()
        .expect("a small namespace's hint has its state");
    assert_eq!(
        state.schemas.get("money").and_then(|p| p.current),
        Some(1),
        "the state after the hint's latest commit"
    );
    state.schemas.remove("money");
    raw.put(&key, to_json(&hint).into()).await.unwrap();
    let report = Registry::new(t.reopen().await)
        .store()
        .verify(None)
        .await
        .unwrap();
    assert!(
        report.problems.iter().any(|p| p.key == key.as_ref()
            && p.detail.contains("disagrees with the log's after commit")
            && p.detail.contains("money")),
        "{:?}",
        report.problems
    );
}

/// The commands end to end: set-parent refusals exit 1 and write nothing,
/// `rebase --status` and `rebase` with JSON output, `log` shows the parent.
async fn hierarchy_commands(backend: common::Backend) {
    use crate::cli::Cli;
    let Some(c) = Cli::new(backend).await else {
        return;
    };
    c.ok(&["init"]);
    c.ok(&["namespace", "create", "base"]);
    c.ok(&["namespace", "create", "shop", "--parent", "base"]);
    c.file("base/money.proto", MONEY_V1.as_bytes());
    let order = "syntax = \"proto3\";\npackage shop;\nimport \"base/money.proto\";\nmessage Order { base.Money total = 1; }\n";
    c.file("shop/order.proto", order.as_bytes());
    c.ok(&["push", "base", "money", "base/money.proto", "--promote"]);
    c.ok(&["push", "shop", "orders", "shop/order.proto", "--promote"]);
    assert!(c.ok(&["log", "shop"]).contains("set parent=base"));
    assert!(
        c.ok(&["namespace", "info", "shop"])
            .contains("parent    base")
    );

    let before = c.content().await;
    c.fails(
        &["namespace", "set-parent", "shop", "nope"],
        "unknown parent namespace",
    );
    c.fails(
        &["namespace", "set-parent", "base", "shop"],
        "cycle: base -> shop -> base",
    );
    c.fails(
        &["namespace", "create", "x", "--parent", "nope"],
        "unknown parent",
    );
    assert_eq!(c.content().await, before, "refusals write nothing");

    c.file("base/money.proto", MONEY_V2.as_bytes());
    c.ok(&["push", "base", "money", "base/money.proto", "--promote"]);
    let status = c.json(&["rebase", "shop", "--status"]);
    assert_eq!(status["behind"][0]["pinned_version"], 1);
    assert_eq!(status["behind"][0]["current_version"], 2);
    let table = c.ok(&["rebase", "shop", "--status"]);
    assert!(
        table.contains("base/money") && table.contains("v1") && table.contains("v2"),
        "{table}"
    );
    let done = c.json(&["rebase", "shop"]);
    assert_eq!(done["schemas"][0]["version"], 2);
    let status = c.json(&["rebase", "shop", "--status"]);
    assert_eq!(status["behind"].as_array().unwrap().len(), 0);
    let cleared = c.json(&["namespace", "set-parent", "shop", "--none"]);
    assert_eq!(
        (cleared["changed"].as_bool(), cleared["parent"].is_null()),
        (Some(true), true)
    );
}

#[tokio::test]
async fn hierarchy_commands_local() {
    hierarchy_commands(common::Backend::Local).await;
}

#[tokio::test]
async fn hierarchy_commands_s3() {
    hierarchy_commands(common::Backend::S3).await;
}

/// The mount shows a child's tree with the ancestor files it pins: an
/// ancestor's promote changes nothing there until the child is rebased.
fn mount_shows_pinned_ancestor_files(backend: common::Backend) {
    use protoshelf::fs::{FsCore, Options};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(t) = rt.block_on(common::fresh(backend)) else {
        return;
    };
    let r = rt.block_on(async {
        let r = chain(&t).await;
        push(&r, "shop", "orders", "shop/order.proto", ORDER).await;
        r.promote("shop", false).await.unwrap();
        push(&r, "base", "money", "base/money.proto", MONEY_V2).await;
        r.promote("base", false).await.unwrap();
        r
    });
    let core = FsCore::new(
        t.store.clone(),
        rt.handle().clone(),
        Options {
            namespaces: vec![],
            refresh: std::time::Duration::from_secs(60),
        },
    );
    let text = |path: &str| String::from_utf8(core.content(path).unwrap().to_vec()).unwrap();
    assert_eq!(text("shop/current/base/money.proto"), MONEY_V1, "pinned");
    assert_eq!(text("shop/current/mid/address.proto"), ADDRESS);
    assert_eq!(text("base/current/base/money.proto"), MONEY_V2);
    rt.block_on(async {
        r.rebase("shop", None, false).await.unwrap();
        r.promote("shop", false).await.unwrap();
    });
    core.refresh();
    assert_eq!(text("shop/current/base/money.proto"), MONEY_V2, "re-pinned");
    drop(core);
    drop(rt);
}

#[test]
fn mount_shows_pinned_ancestor_files_memory() {
    mount_shows_pinned_ancestor_files(common::Backend::Memory);
}

#[test]
fn mount_shows_pinned_ancestor_files_local() {
    mount_shows_pinned_ancestor_files(common::Backend::Local);
}

#[test]
fn mount_shows_pinned_ancestor_files_s3() {
    mount_shows_pinned_ancestor_files(common::Backend::S3);
}
