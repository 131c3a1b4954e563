//! `protoshelf diff` end to end: table and JSON, pointers, and bad input.

use crate::cli::{Cli, example};
use crate::common::Backend;

async fn diff_command(backend: Backend) {
    let Some(c) = Cli::new(backend).await else {
        return;
    };
    c.setup_shop();
    c.ok(&[
        "push",
        "shop",
        "shop.orders",
        &example("changes/compatible"),
    ]);
    let table = c.ok(&["diff", "shop", "shop.orders", "1", "2"]);
    assert!(
        table.starts_with("shop/shop.orders: version 1 -> 2\n"),
        "{table}"
    );
    assert!(
        table.contains("+ field shop.orders.Order.note: string note = 5"),
        "{table}"
    );
    assert!(
        table.contains("--- a/shop/orders/order.proto\n+++ b/shop/orders/order.proto\n"),
        "{table}"
    );
    let json = c.json(&[
        "diff",
        "shop",
        "shop.orders",
        "staged",
        "--against",
        "current",
    ]);
    assert_eq!(
        (json["from"].as_u64(), json["to"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(json["files"][0]["change"], "changed");
    let elements: Vec<_> = json["definitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["element"].as_str().unwrap(),
                d["change"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(elements, [("field", "added"), ("enum_value", "added")]);
    // An incompatible change reads as a removed field.
    c.ok(&[
        "push",
        "shop",
        "shop.orders",
        &example("changes/incompatible"),
    ]);
    let table = c.ok(&["diff", "shop", "shop.orders", "1", "3"]);
    assert!(
        table.contains("- field shop.orders.Order.customer_id: string customer_id = 2"),
        "{table}"
    );
    let same = c.ok(&["diff", "shop", "shop.orders", "3", "staged"]);
    assert_eq!(same, "shop/shop.orders: versions 3 and 3 are the same\n");

    let before = c.content().await;
    c.fails(&["diff", "shop", "shop.orders", "1", "9"], "version 9");
    c.fails(
        &["diff", "shop", "shop.orders", "one", "2"],
        "give a version number",
    );
    c.fails(&["diff", "shop", "nope", "1", "2"], "not found");
    c.fails(
        &["diff", "shop", "shop.orders", "1", "--against", "latest"],
        "current",
    );
    assert_eq!(c.content().await, before, "diff writes nothing");
}

#[tokio::test]
async fn diff_command_local() {
    diff_command(Backend::Local).await;
}

#[tokio::test]
async fn diff_command_s3() {
    diff_command(Backend::S3).await;
}
