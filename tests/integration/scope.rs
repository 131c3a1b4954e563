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
