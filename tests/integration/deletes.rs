//! `schema delete|undelete` and `namespace delete|undelete` end to end:
//! what is hidden, what stays readable, and refusals that change nothing.

use crate::cli::Cli;
use crate::common::Backend;

async fn delete_commands(backend: Backend) {
    let Some(c) = Cli::new(backend).await else {
        return;
    };
    c.setup_shop();
    // shop.orders imports shop.types.
    let before = c.content().await;
    let err = c.fails(&["schema", "delete", "shop", "shop.types"], "imported by");
    assert!(
        err.contains("shop/shop.orders v1") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(c.content().await, before, "a refused delete writes nothing");

    assert_eq!(
        c.ok(&["schema", "delete", "shop", "shop.orders"]),
        "deleted schema shop/shop.orders\n"
    );
    let again = c.json(&["schema", "delete", "shop", "shop.orders"]);
    assert_eq!(again["changed"], false);
    let list = c.ok(&["schema", "list", "shop"]);
    assert!(!list.contains("shop.orders"), "{list}");
    let deleted = c.ok(&["schema", "list", "shop", "--deleted"]);
    assert!(deleted.contains("shop.orders"), "{deleted}");
    let info = c.json(&["schema", "info", "shop", "shop.orders"]);
    assert_eq!(info["deleted"], true);
    c.fails(
        &["schema", "source", "shop", "shop.orders"],
        "schema undelete",
    );
    let old = c.ok(&["schema", "source", "shop", "shop.orders", "--version", "1"]);
    assert!(old.contains("message Order"), "{old}");
    let log = c.ok(&["log", "shop", "--limit", "1"]);
    assert!(log.contains("delete shop.orders"), "{log}");

    c.ok(&["schema", "undelete", "shop", "shop.orders"]);
    let info = c.json(&["schema", "info", "shop", "shop.orders"]);
    assert_eq!(
        (info["deleted"].as_bool(), info["current_version"].as_u64()),
        (Some(false), Some(1))
    );

    c.ok(&["namespace", "delete", "shop"]);
    let list = c.ok(&["namespace", "list"]);
    assert!(!list.contains("shop "), "{list}");
    assert!(c.ok(&["namespace", "list", "--deleted"]).contains("shop"));
    assert!(
        c.ok(&["namespace", "info", "shop"])
            .contains("deleted   yes")
    );
    c.fails(
        &[
            "push",
            "shop",
            "shop.orders",
            &crate::cli::example("changes/compatible"),
        ],
        "namespace undelete",
    );
    // Creating it again says it is there, deleted, and how to restore it.
    c.fails(&["namespace", "create", "shop"], "namespace undelete shop");
    c.fails(
        &["namespace", "delete", "__builtins__"],
        "cannot be deleted",
    );
    c.ok(&["namespace", "undelete", "shop"]);
    assert!(c.ok(&["namespace", "list"]).contains("shop"));
}

#[tokio::test]
async fn delete_commands_local() {
    delete_commands(Backend::Local).await;
}

#[tokio::test]
async fn delete_commands_s3() {
    delete_commands(Backend::S3).await;
}
