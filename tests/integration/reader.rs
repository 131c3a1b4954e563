//! The reader contract (docs/storage-format.md, "The reader contract"):
//! readers never write, and the current descriptor costs a bounded number
//! of GETs whatever the namespace's size and history.

use crate::cli::{Cli, example};
use crate::common::{Backend, TestStore, data};

use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde_json::Value;

/// The hint states a reader may find: the one the last commit wrote, one
/// left behind by a writer that died (stale), and none.
#[derive(Debug, Clone, Copy)]
enum Hint {
    Fresh,
    Stale,
    Missing,
}

const HINTS: [Hint; 3] = [Hint::Fresh, Hint::Stale, Hint::Missing];

async fn plant_hint(raw: &std::sync::Arc<dyn object_store::ObjectStore>, ns: &str, hint: Hint) {
    let key = Path::from(format!("ns/{ns}/head.json"));
    match hint {
        Hint::Fresh => {}
        Hint::Stale => {
            raw.put(&key, br#"{"seq":0}"#.to_vec().into())
                .await
                .unwrap();
        }
        Hint::Missing => match raw.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => panic!("{e}"),
        },
    }
}

/// The requests a CLI command made, from `--stats -o json` (the counting
/// wrapper under every store the process opened).
fn cli_requests(c: &Cli, args: &[&str]) -> Value {
    let mut all = vec!["--stats", "-o", "json"];
    all.extend_from_slice(args);
    let out = c.run(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "protoshelf {args:?}: {stderr}");
    let last = stderr.lines().last().expect("stats line");
    let stats: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    stats["requests"].clone()
}

/// Every read command, run by the binary with a fresh, a stale and a
/// missing hint: none writes (no PUT, DELETE or COPY), so a job with
/// read-only credentials can run them. LocalStack does not enforce IAM
/// policies by default, so on S3 this is asserted by counting requests, not
/// by a read-only identity.
async fn read_commands_write_nothing(backend: Backend) {
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
    c.ok(&["promote", "shop"]);
    let out = c.scratch.path().join("d.binpb").display().to_string();
    let change = example("changes/compatible");
    let reads: Vec<Vec<&str>> = vec![
        vec!["namespace", "list"],
        vec!["namespace", "info", "shop"],
        vec!["schema", "list", "shop"],
        vec!["schema", "info", "shop", "shop.orders"],
        vec!["schema", "source", "shop", "shop.orders"],
        vec!["schema", "descriptor", "shop", "shop.orders", "--out", &out],
        vec![
            "schema",
            "descriptor",
            "shop",
            "shop.orders",
            "--version",
            "1",
            "--out",
            &out,
        ],
        vec!["log", "shop"],
        vec!["verify"],
        vec!["verify", "shop"],
        vec!["check", "shop", "shop.orders", &change],
    ];
    let raw = protoshelf::objstore::url::open(&c.url).unwrap().store;
    for hint in HINTS {
        plant_hint(&raw, "shop", hint).await;
        let before = c.content().await;
        for args in &reads {
            let r = cli_requests(&c, args);
            for kind in ["put", "delete", "copy"] {
                assert_eq!(r[kind], 0, "{args:?} with a {hint:?} hint wrote: {r}");
            }
        }
        assert_eq!(
            c.content().await,
            before,
            "{hint:?} hint: the store changed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_commands_write_nothing_local() {
    read_commands_write_nothing(Backend::Local).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_commands_write_nothing_s3() {
    read_commands_write_nothing(Backend::S3).await
}

/// The library's read paths on memory (a CLI process cannot share a memory
/// store): the same reads, 0 writes, with each hint state.
async fn library_reads_write_nothing(t: TestStore) {
    let s = &t.store;
    s.create_namespace(&data::namespace("shop")).await.unwrap();
    for (i, schema) in ["shop.orders", "shop.items"].iter().enumerate() {
        s.create_schema(&data::schema("shop", schema))
            .await
            .unwrap();
        for round in 0..3 {
            let v = data::publish(s, "shop", schema, &format!("{i}.{round}")).await;
            s.set_staged("shop", schema, v).await.unwrap();
            s.promote("shop").await.unwrap();
        }
    }
    let raw = t.raw();
    for hint in HINTS {
        plant_hint(&raw, "shop", hint).await;
        // A cold handle, as a new process would be.
        let s = t.reopen().await;
        let before = s.requests();
        s.list_namespaces().await.unwrap();
        s.get_namespace("shop").await.unwrap();
        s.list_schemas("shop").await.unwrap();
        let schema = s.get_schema("shop", "shop.orders").await.unwrap();
        let v = schema.current_version.unwrap();
        s.get_version("shop", "shop.orders", v).await.unwrap();
        s.get_version_sources("shop", "shop.orders", v)
            .await
            .unwrap();
        s.published("shop").await.unwrap();
        s.log_entries("shop", 1, s.namespace_state("shop").await.unwrap().seq)
            .await
            .unwrap();
        protoshelf::Registry::new(s.clone())
            .readable_version("shop", "shop.orders", Some(v))
            .await
            .unwrap();
        let r = s.requests() - before;
        assert_eq!(
            (r.put, r.delete, r.copy),
            (0, 0, 0),
            "{hint:?} hint: reads wrote: {r}"
        );
    }
}

on_every_backend!(library_reads_write_nothing);
