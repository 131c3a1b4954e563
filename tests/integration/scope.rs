//! `--compat-scope` end to end: a transitive check catches what the
//! latest-only check lets through, and names the version it is against.

use crate::cli::Cli;
use crate::common::Backend;

const BASE: &str = "syntax = \"proto3\";\npackage shop;\nmessage Order { string id = 1; }\n";

async fn scope_command(backend: Backend) {
    let Some(c) = Cli::new(backend).await else {
        return;
    };
    c.ok(&["init"]);
    let created = c.ok(&[
        "namespace",
        "create",
        "shop",
        "--policy",
        "wire",
        "--compat-scope",
        "all",
    ]);
    assert!(created.contains("compatibility scope all"), "{created}");
    let info = c.json(&["namespace", "info", "shop"]);
    assert_eq!(info["compat_scope"], "all");
    let version = |n: &str, body: &str| {
        c.file(
            &format!("v{n}/shop/order.proto"),
            format!("{BASE}{body}").as_bytes(),
        );
        c.dir(&format!("v{n}"))
    };
    let v1 = version("1", "message Refund { string reason = 1; }\n");
    let v2 = version("2", "");
    let v3 = version("3", "message Refund { int64 reason = 1; }\n");
    c.ok(&["push", "shop", "orders", &v1, "--promote"]);
    c.ok(&["push", "shop", "orders", &v2, "--promote"]);

    let before = c.content().await;
    let err = c.fails(&["check", "shop", "orders", &v3], "(against version 1)");
    assert!(err.contains("FIELD_WIRE_COMPATIBLE_TYPE"), "{err}");
    let out = c.run(&["-o", "json", "check", "shop", "orders", &v3]);
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["violations"][0]["against_version"], 1, "{body}");
    assert_eq!(c.content().await, before, "check writes nothing");

    c.ok(&["push", "shop", "orders", &v3]);
    c.fails(&["promote", "shop", "--dry-run"], "(against version 1)");
    c.fails(&["promote", "shop"], "(against version 1)");

    c.fails(&["namespace", "set-compat-scope", "shop", "some"], "latest");
    c.ok(&["namespace", "set-compat-scope", "shop", "latest"]);
    let report = c.json(&["check", "shop", "orders", &v3]);
    assert_eq!(report["checked_against"], serde_json::json!([2]));
    c.ok(&["promote", "shop"]);
    let info = c.ok(&["namespace", "info", "shop"]);
    assert!(info.contains("scope     latest"), "{info}");
}

#[tokio::test]
async fn scope_command_local() {
    scope_command(Backend::Local).await;
}

#[tokio::test]
async fn scope_command_s3() {
    scope_command(Backend::S3).await;
}

/// A namespace `shop` with policy `policy` and scope `scope`, and the
/// directories of four versions of `orders`: v1 has `Refund.reason` a
/// string, v2 no `Refund`, v3 and v4 an int64 (which breaks v1 under
/// `wire`), v4 also a `Note`.
fn four_versions(c: &Cli, policy: &str, scope: &str) -> [String; 4] {
    c.ok(&["init"]);
    c.ok(&[
        "namespace",
        "create",
        "shop",
        "--policy",
        policy,
        "--compat-scope",
        scope,
    ]);
    let bodies = [
        "message Refund { string reason = 1; }\n",
        "",
        "message Refund { int64 reason = 1; }\n",
        "message Refund { int64 reason = 1; }\nmessage Note { string text = 1; }\n",
    ];
    std::array::from_fn(|i| {
        let n = i + 1;
        c.file(
            &format!("v{n}/shop/order.proto"),
            format!("{BASE}{}", bodies[i]).as_bytes(),
        );
        c.dir(&format!("v{n}"))
    })
}

/// (current, staged) of `orders`.
fn pointers(c: &Cli) -> (serde_json::Value, serde_json::Value) {
    let info = c.json(&["schema", "info", "shop", "orders"]);
    (
        info["current_version"].clone(),
        info["staged_version"].clone(),
    )
}

/// Under scope `all`, v3 became current under `latest` and breaks v1. A
/// promote that leaves v3 current (v3 staged again over a refused v4, by a
/// rollback forced or not) changes nothing for it: it is not checked, and
/// `status`, `promote --dry-run`, `check` and `promote` agree.
async fn promote_of_the_current_version(backend: Backend) {
    let Some(c) = Cli::new(backend).await else {
        return;
    };
    let [v1, v2, v3, v4] = four_versions(&c, "wire", "all");
    c.ok(&["push", "shop", "orders", &v1, "--promote"]);
    c.ok(&["push", "shop", "orders", &v2, "--promote"]);
    c.ok(&["namespace", "set-compat-scope", "shop", "latest"]);
    c.ok(&["push", "shop", "orders", &v3, "--promote"]);
    c.ok(&["namespace", "set-compat-scope", "shop", "all"]);
    // The files of current: nothing a push would change, nothing to check.
    let report = c.json(&["check", "shop", "orders", &v3]);
    assert_eq!(report["no_change"], true, "{report}");
    assert_eq!(report["checked_against"], serde_json::json!([]), "{report}");

    for force in [false, true] {
        c.ok(&["push", "shop", "orders", &v4]);
        c.fails(&["promote", "shop"], "(against version 1)");
        let mut rollback = vec!["rollback", "shop", "orders", "3"];
        if force {
            rollback.push("--force");
        }
        c.ok(&rollback);
        let status = c.json(&["status", "shop"]);
        assert_eq!(status["staged"][0]["promote"], "unchanged", "{status}");
        assert_eq!(status["promote_would_succeed"], true, "{status}");
        let dry = c.json(&["promote", "shop", "--dry-run"]);
        assert_eq!(dry["unchanged"], serde_json::json!(["orders"]), "{dry}");
        let report = c.json(&["check", "shop", "orders", &v3]);
        assert_eq!(report["violations"], serde_json::json!([]), "{report}");
        let out = c.ok(&["promote", "shop"]);
        assert!(out.contains("promoted 3 -> 3 (unchanged)"), "{out}");
        assert_eq!(pointers(&c), (3.into(), serde_json::Value::Null));
    }
}

#[tokio::test]
async fn promote_of_the_current_version_local() {
    promote_of_the_current_version(Backend::Local).await;
}

#[tokio::test]
async fn promote_of_the_current_version_s3() {
    promote_of_the_current_version(Backend::S3).await;
}

/// A staged version older than current (only `rollback` stages one) is
/// checked by promote like any version it makes current, on the settings
/// the promote lands on, under either scope. Only a forced rollback's
/// version is promoted unchecked: the force is recorded with it.
async fn older_staged_version(backend: Backend) {
    let Some(c) = Cli::new(backend).await else {
        return;
    };
    let [v1, v2, v3, _] = four_versions(&c, "none", "all");
    for v in [&v1, &v2, &v3] {
        c.ok(&["push", "shop", "orders", v, "--promote"]);
    }
    // Under policy `none` the rollback checks nothing; then `wire` applies.
    c.ok(&["rollback", "shop", "orders", "1"]);
    c.ok(&["namespace", "set-policy", "shop", "wire"]);
    let status = c.json(&["status", "shop"]);
    assert_eq!(status["staged"][0]["promote"], "incompatible", "{status}");
    assert_eq!(
        status["staged"][0]["violations"][0]["against_version"], 3,
        "{status}"
    );
    for scope in ["all", "latest"] {
        c.ok(&["namespace", "set-compat-scope", "shop", scope]);
        c.fails(&["promote", "shop", "--dry-run"], "(against version 3)");
        c.fails(&["promote", "shop"], "(against version 3)");
    }
    assert_eq!(pointers(&c), (3.into(), 1.into()));

    c.ok(&["namespace", "set-compat-scope", "shop", "all"]);
    c.ok(&["discard", "shop"]);
    c.fails(&["rollback", "shop", "orders", "1"], "(against version 3)");
    c.ok(&["rollback", "shop", "orders", "1", "--force"]);
    let status = c.json(&["status", "shop"]);
    assert_eq!(status["staged"][0]["promote"], "forced", "{status}");
    let promoted = c.json(&["promote", "shop"]);
    assert_eq!(promoted["rollbacks"], serde_json::json!(["orders"]));
    assert_eq!(promoted["forced"], serde_json::json!(["orders"]));
    assert_eq!(pointers(&c), (1.into(), serde_json::Value::Null));
}

#[tokio::test]
async fn older_staged_version_local() {
    older_staged_version(Backend::Local).await;
}

#[tokio::test]
async fn older_staged_version_s3() {
    older_staged_version(Backend::S3).await;
}

on_every_backend!(forced_rollback_is_recorded_with_the_staged_version);

/// The force of a rollback is stored with the staged pointer, so another
/// handle's promote honours it; forcing a version staged unforced records
/// it; a publish that stages over it, or a promote, clears it.
async fn forced_rollback_is_recorded_with_the_staged_version(t: crate::common::TestStore) {
    use protoshelf::compat::Policy;
    use protoshelf::registry::{CompatScope, Registry, SourceFile};
    let r = Registry::new(t.store.clone());
    r.create_namespace("shop", Policy::Strict, Default::default())
        .await
        .unwrap();
    r.set_compat_scope("shop", CompatScope::All).await.unwrap();
    let push = |body: &str| {
        let files = vec![SourceFile::new("shop/order.proto", format!("{BASE}{body}"))];
        let r = r.clone();
        async move { r.publish("shop", "orders", files, Default::default()).await }
    };
    push("").await.unwrap();
    r.promote("shop", false).await.unwrap();
    push("message Refund { string reason = 1; }\n")
        .await
        .unwrap();
    r.promote("shop", false).await.unwrap();
    // (current, staged, staged_forced) of `orders`, as stored.
    let pointers = || async {
        let p = t
            .store
            .namespace_state("shop")
            .await
            .unwrap()
            .pointers("orders");
        (p.current, p.staged, p.staged_forced)
    };

    // Back to v1 deletes Refund: refused unless forced.
    let refused = r.rollback("shop", "orders", 1, false, false).await;
    assert!(matches!(refused, Err(protoshelf::Error::Incompatible(_))));
    // v3 (a new field) staged, then forced back to v1, then a new push.
    push("message Refund { string reason = 1; }\nmessage Note { string t = 1; }\n")
        .await
        .unwrap();
    assert!(
        r.rollback("shop", "orders", 1, true, false)
            .await
            .unwrap()
            .staged
    );
    assert_eq!(pointers().await, (Some(2), Some(1), true));
    push("message Refund { string reason = 1; string more = 2; }\n")
        .await
        .unwrap();
    let over = pointers().await;
    assert_eq!(
        over,
        (Some(2), Some(4), false),
        "a publish stages over the force"
    );

    // Staged unforced (policy none checks nothing), then forced: recorded.
    r.set_policy("shop", Policy::None).await.unwrap();
    r.rollback("shop", "orders", 1, false, false).await.unwrap();
    r.set_policy("shop", Policy::Strict).await.unwrap();
    assert!(matches!(
        r.promote("shop", false).await,
        Err(protoshelf::Error::Incompatible(_))
    ));
    assert!(
        r.rollback("shop", "orders", 1, true, false)
            .await
            .unwrap()
            .staged
    );
    assert!(
        !r.rollback("shop", "orders", 1, true, false)
            .await
            .unwrap()
            .staged
    );

    // Another handle, with nothing cached, promotes it unchecked.
    let other = Registry::new(t.reopen().await);
    let p = other.promote("shop", false).await.unwrap();
    assert_eq!(
        (p.rollbacks, p.forced),
        (vec!["orders".to_string()], vec!["orders".to_string()])
    );
    assert_eq!(pointers().await, (Some(1), None, false));
}
