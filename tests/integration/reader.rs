//! The reader contract (docs/storage-format.md, "The reader contract"):
//! readers never write, and the current descriptor costs a bounded number
//! of GETs whatever the namespace's size and history.

use crate::cli::{Cli, example};
use crate::common::{self, Backend, TestStore, data};

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

/// A namespace of `schemas` schemas (`s00000`...), each with version 1
/// current, then commits until the log holds `commits` entries: schema
/// `s00000` is staged and unstaged by each, so it has a move per commit
/// while the others last moved in the first two. Written through the
/// library (no compile), so 10,000 schemas take seconds.
pub(crate) async fn build_namespace(
    store: &protoshelf::ObjStore,
    ns: &str,
    schemas: usize,
    commits: u64,
) {
    use futures::StreamExt;
    store.create_namespace(&data::namespace(ns)).await.unwrap();
    let ids: Vec<String> = (0..schemas).map(|i| format!("s{i:05}")).collect();
    futures::stream::iter(ids.iter())
        .for_each_concurrent(32, |id| async move {
            store.create_schema(&data::schema(ns, id)).await.unwrap();
            data::publish(store, ns, id, id).await;
        })
        .await;
    let changes: Vec<protoshelf::store::StageChange> = ids
        .iter()
        .map(|id| protoshelf::store::StageChange {
            schema_id: id.clone(),
            version: Some(1),
        })
        .collect();
    store.stage(ns, &changes).await.unwrap();
    store.promote(ns).await.unwrap();
    for i in 2..commits {
        let v = if i % 2 == 0 { 1 } else { 0 };
        store.set_staged(ns, "s00000", v).await.unwrap();
    }
}

/// One cold read of a current descriptor the way `protoshelf schema
/// descriptor` does it (open + [`protoshelf::Registry::descriptor`]),
/// checked against the version's own descriptor; returns its requests.
async fn cold_descriptor_read(
    t: &TestStore,
    ns: &str,
    schema: &str,
) -> protoshelf::objstore::metrics::RequestCounts {
    let s = protoshelf::ObjStore::open(&t.url).await.unwrap();
    let (v, bytes) = protoshelf::Registry::new(s.clone())
        .descriptor(ns, schema, None)
        .await
        .unwrap();
    let r = s.requests();
    let expected = t.store.get_version(ns, schema, v).await.unwrap().compiled;
    assert_eq!(bytes, expected, "{schema}: the descriptor of version {v}");
    r
}

/// The current descriptor costs 3 GETs (the format marker at open, the log
/// entry the schema's newest move marker names, the descriptor) and 1 LIST
/// (the move markers), with a fresh, stale or missing hint, in a namespace
/// of 10 or 10,000 schemas with 2 or 1,000 commits; both for a schema
/// moved by the last commit and one last moved 998 commits ago.
async fn current_descriptor_in_three_gets(t: TestStore, schemas: usize, commits: u64) {
    build_namespace(&t.store, "big", schemas, commits).await;
    assert_eq!(
        t.store.namespace_state("big").await.unwrap().seq,
        commits.max(2)
    );
    let raw = t.raw();
    let last = format!("s{:05}", schemas - 1);
    for hint in HINTS {
        plant_hint(&raw, "big", hint).await;
        for schema in ["s00000", last.as_str()] {
            let r = cold_descriptor_read(&t, "big", schema).await;
            eprintln!(
                "{:?} {schemas} schemas, {commits} commits, {hint:?} hint, {schema}: {r}",
                t.backend
            );
            assert_eq!(
                (r.get, r.list, r.put, r.delete),
                (3, 1, 0, 0),
                "{schemas} schemas, {commits} commits, {hint:?} hint, {schema}: {r}"
            );
        }
        namespace_set_in_three_gets(&t, schemas, commits, hint).await;
    }
}

/// The namespace set by the contract, with the same bound: 2 GETs and 1
/// LIST counted by an independent reader (plain object-store calls), 3
/// GETs and 1 LIST through the library (the marker at open), whatever the
/// hint; it holds every schema's file once.
async fn namespace_set_in_three_gets(t: &TestStore, schemas: usize, commits: u64, hint: Hint) {
    let what = format!("{schemas} schemas, {commits} commits, {hint:?} hint");
    let (set, counted) = crate::nsset::contract_namespace_set(&t.raw(), "big", false).await;
    assert_eq!(counted, crate::nsset::Counted { get: 2, list: 1 }, "{what}");
    let s = protoshelf::ObjStore::open(&t.url).await.unwrap();
    let got = s.namespace_set("big", false).await.unwrap().unwrap();
    let r = s.requests();
    eprintln!("{:?} {what}: namespace set: {r}", t.backend);
    assert_eq!(
        (r.get, r.list, r.put, r.delete),
        (3, 1, 0, 0),
        "{what}: {r}"
    );
    assert_eq!(got, set);
    use prost::Message;
    let files = prost_types::FileDescriptorSet::decode(set.as_ref())
        .unwrap()
        .file;
    assert_eq!(files.len(), schemas, "{what}");
}

async fn current_descriptor_10_schemas_2_commits(t: TestStore) {
    current_descriptor_in_three_gets(t, 10, 2).await
}

async fn current_descriptor_10_schemas_1000_commits(t: TestStore) {
    current_descriptor_in_three_gets(t, 10, 1000).await
}

/// 10,000 schemas: memory and local directory (building the namespace on
/// LocalStack would take minutes of the suite).
mod large {
    use super::*;

    async fn current_descriptor_10000_schemas_2_commits(t: TestStore) {
        current_descriptor_in_three_gets(t, 10_000, 2).await
    }

    async fn current_descriptor_10000_schemas_1000_commits(t: TestStore) {
        current_descriptor_in_three_gets(t, 10_000, 1000).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn memory_10000_schemas_2_commits() {
        let t = common::fresh(Backend::Memory).await.unwrap();
        current_descriptor_10000_schemas_2_commits(t).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn memory_10000_schemas_1000_commits() {
        let t = common::fresh(Backend::Memory).await.unwrap();
        current_descriptor_10000_schemas_1000_commits(t).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn local_10000_schemas_2_commits() {
        let t = common::fresh(Backend::Local).await.unwrap();
        current_descriptor_10000_schemas_2_commits(t).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn local_10000_schemas_1000_commits() {
        let t = common::fresh(Backend::Local).await.unwrap();
        current_descriptor_10000_schemas_1000_commits(t).await
    }
}

/// Markers are never trusted alone: a marker left by an attempt that lost
/// its race (its entry holds another commit) and one of an attempt in
/// flight (no entry yet) are skipped, at one GET each (three for the one
/// in flight: the next entry is checked for a gap, and the hint for a lost
/// newest entry), and the answer is the log's.
async fn markers_without_their_commit_are_skipped(t: TestStore) {
    build_namespace(&t.store, "ns", 3, 4).await;
    let raw = t.raw();
    let end = t.store.namespace_state("ns").await.unwrap().seq;
    // s00001 last moved at 2; plant a lost attempt at `end` and one in
    // flight at `end + 1`.
    for seq in [end, end + 1] {
        let key = protoshelf::objstore::keys::move_marker("ns", "s00001", seq, "not-a-commit");
        raw.put(&key, bytes::Bytes::new().into()).await.unwrap();
    }
    let r = cold_descriptor_read(&t, "ns", "s00001").await;
    assert_eq!((r.get, r.list, r.put), (3 + 4, 1, 0), "{r}");
    // Versus an entry lost from the log: that is damage, never the state
    // before it. s00000 moved at `end`; a later commit (moving no schema)
    // lands, then entry `end` is lost.
    t.store.set_config("ns", "k", "v").await.unwrap();
    let lost = protoshelf::objstore::keys::log_entry("ns", end);
    raw.delete(&lost).await.unwrap();
    let s = protoshelf::ObjStore::open(&t.url).await.unwrap();
    let err = protoshelf::Registry::new(s)
        .descriptor("ns", "s00000", None)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(lost.as_ref()),
        "a lost entry must be named: {err}"
    );
}

on_every_backend!(
    library_reads_write_nothing,
    current_descriptor_10_schemas_2_commits,
    current_descriptor_10_schemas_1000_commits,
    markers_without_their_commit_are_skipped,
    verify_names_a_missing_move_marker,
);

const PYTHON_READER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/python");

/// The interpreter with boto3 (scripts/clients.sh), else a plain python3 for
/// the on-disk fixtures.
fn python(needs_boto3: bool) -> Option<String> {
    match std::env::var("PROTOSHELF_CLIENTS_PY") {
        Ok(py) if !py.is_empty() => Some(py),
        _ if !needs_boto3 => Some("python3".into()),
        _ => {
            eprintln!("SKIPPED: no PROTOSHELF_CLIENTS_PY (scripts/clients.sh installs boto3)");
            None
        }
    }
}

fn run_check_reader(py: &str, args: &[&str]) -> Value {
    let out = std::process::Command::new(py)
        .current_dir(PYTHON_READER)
        .arg("check_reader.py")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{py}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "check_reader.py {args:?} failed:\n{stdout}\n{stderr}"
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

/// The conformance fixtures: protoshelf itself gives the expected answers
/// on the on-disk store (so old stores stay readable), and so does the
/// Python reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let copy = std::process::Command::new("cp")
        .args(["-r", &format!("{PYTHON_READER}/fixtures/store")])
        .arg(&store)
        .status()
        .unwrap();
    assert!(copy.success());
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{PYTHON_READER}/fixtures/expected.json")).unwrap(),
    )
    .unwrap();
    let s = protoshelf::ObjStore::open(&store.display().to_string())
        .await
        .unwrap();
    let registry = protoshelf::Registry::new(s);
    for case in expected["cases"].as_array().unwrap() {
        let (ns, schema) = (
            case["namespace"].as_str().unwrap(),
            case["schema"].as_str().unwrap_or_default(),
        );
        let answer = &case["answer"];
        let read = case["read"].as_str().unwrap();
        if let Some(tree) = read.strip_suffix("_set") {
            match registry.store().namespace_set(ns, tree == "staged").await {
                Ok(Some(bytes)) => assert_eq!(answer["sha256"], data::sha(&bytes), "{case}"),
                Ok(None) => assert!(answer.get("not_found").is_some(), "{case}: none"),
                Err(e) => assert!(answer.get("not_found").is_some(), "{case}: {e}"),
            }
            continue;
        }
        let got = match read {
            "pinned" => {
                registry
                    .descriptor(ns, schema, case["version"].as_u64())
                    .await
            }
            "current" => registry.descriptor(ns, schema, None).await,
            "staged" => {
                let info = registry.store().get_schema(ns, schema).await;
                match info.map(|i| i.staged_version) {
                    Ok(Some(v)) => registry.descriptor(ns, schema, Some(v)).await,
                    Ok(None) => Err(protoshelf::Error::NotFound("a staged version".into())),
                    Err(e) => Err(e),
                }
            }
            other => panic!("unknown read {other}"),
        };
        match got {
            Ok((v, bytes)) => {
                assert_eq!(answer["version"], v, "{case}");
                assert_eq!(answer["sha256"], data::sha(&bytes), "{case}");
            }
            Err(e) => assert!(answer.get("not_found").is_some(), "{case}: {e}"),
        }
    }
    let py = python(false).unwrap();
    let report = run_check_reader(
        &py,
        &[
            "--dir",
            &store.display().to_string(),
            "fixtures/expected.json",
        ],
    );
    assert_eq!(report["failures"], serde_json::json!([]), "{report}");
}

/// The Python reader on LocalStack, through boto3: the answers protoshelf
/// gives, with its GETs and LISTs counted by botocore's event hooks (the
/// script fails past 1 LIST + 2 GETs for current and staged, 2 GETs pinned,
/// or on any write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_reader_on_s3() {
    let Some(py) = python(true) else { return };
    let Some(c) = Cli::new(Backend::S3).await else {
        return;
    };
    c.setup_shop();
    c.ok(&[
        "push",
        "shop",
        "shop.orders",
        &example("changes/compatible"),
    ]);
    let s = protoshelf::ObjStore::open(&c.url).await.unwrap();
    let registry = protoshelf::Registry::new(s.clone());
    let mut cases = Vec::new();
    for schema in ["shop.orders", "shop.catalog", "shop.types"] {
        let info = s.get_schema("shop", schema).await.unwrap();
        let (v, bytes) = registry.descriptor("shop", schema, None).await.unwrap();
        let answer = serde_json::json!({"version": v, "sha256": data::sha(&bytes)});
        cases.push(serde_json::json!({"namespace": "shop", "schema": schema, "read": "current", "answer": answer}));
        cases.push(serde_json::json!({"namespace": "shop", "schema": schema, "read": "pinned", "version": v, "answer": answer}));
        if let Some(st) = info.staged_version {
            let (_, bytes) = registry.descriptor("shop", schema, Some(st)).await.unwrap();
            let answer = serde_json::json!({"version": st, "sha256": data::sha(&bytes)});
            cases.push(serde_json::json!({"namespace": "shop", "schema": schema, "read": "staged", "answer": answer}));
        }
    }
    assert!(cases.len() > 6, "shop.orders has a staged version");
    for tree in ["current", "staged"] {
        let set = s
            .namespace_set("shop", tree == "staged")
            .await
            .unwrap()
            .unwrap();
        cases.push(serde_json::json!({"namespace": "shop", "read": format!("{tree}_set"), "answer": {"sha256": data::sha(&set)}}));
    }
    cases.push(serde_json::json!({"namespace": "nosuch", "schema": "x", "read": "current", "answer": {"not_found": "namespace 'nosuch'"}}));
    let expected = c.file(
        "expected.json",
        serde_json::to_string(&serde_json::json!({ "cases": cases }))
            .unwrap()
            .as_bytes(),
    );
    let url = url::Url::parse(&c.url).unwrap();
    let bucket = url.host_str().unwrap().to_string();
    let prefix = url.path().trim_start_matches('/').to_string();
    let before = c.content().await;
    let report = run_check_reader(&py, &["--bucket", &bucket, "--prefix", &prefix, &expected]);
    eprintln!("python reader on S3: {report}");
    assert_eq!(report["failures"], serde_json::json!([]), "{report}");
    let current = &report["costs"][0];
    assert_eq!(
        (
            current["GetObject"].as_u64(),
            current["ListObjectsV2"].as_u64()
        ),
        (Some(2), Some(1)),
        "{report}"
    );
    assert_eq!(c.content().await, before, "the reader wrote");
}

/// A format-2 store keeps working: its commits write no move markers and
/// stay format 2 (so format-2 builds sharing it read every entry), and
/// reads go through its log with the same answers.
async fn format2_stores_keep_working(backend: Backend) {
    let Some(t) = common::fresh_format(backend, 2).await else {
        return;
    };
    build_namespace(&t.store, "ns", 3, 5).await;
    let raw = t.raw();
    let keys = common::snapshot(&raw).await;
    assert!(
        keys.iter().all(|(k, _)| !k.contains("/moves/")),
        "a format-2 store got move markers"
    );
    let entry: Value = serde_json::from_slice(
        &raw.get(&protoshelf::objstore::keys::log_entry("ns", 5))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(entry["format_version"], 2);
    assert!(entry.get("descriptors").is_none(), "{entry}");
    for schema in ["s00000", "s00002"] {
        let s = protoshelf::ObjStore::open(&t.url).await.unwrap();
        assert!(s.schema_head("ns", schema).await.unwrap().is_none());
        let (v, bytes) = protoshelf::Registry::new(s)
            .descriptor("ns", schema, None)
            .await
            .unwrap();
        assert_eq!(v, 1);
        assert_eq!(
            bytes,
            t.store.get_version("ns", schema, 1).await.unwrap().compiled
        );
    }
    let report = t.reopen().await.verify(None).await.unwrap();
    assert_eq!(unclaimed_problems(&report), Vec::<&str>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format2_stores_keep_working_memory() {
    format2_stores_keep_working(Backend::Memory).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format2_stores_keep_working_local() {
    format2_stores_keep_working(Backend::Local).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format2_stores_keep_working_s3() {
    format2_stores_keep_working(Backend::S3).await
}

/// `verify` reports a commit whose move marker is missing (readers would
/// not see that commit) by the marker's key.
async fn verify_names_a_missing_move_marker(t: TestStore) {
    build_namespace(&t.store, "ns", 2, 3).await;
    let report = t.reopen().await.verify(None).await.unwrap();
    assert_eq!(unclaimed_problems(&report), Vec::<&str>::new());
    let entry = t.store.log_entries("ns", 3, 3).await.unwrap().remove(0);
    let marker = protoshelf::objstore::keys::move_marker("ns", "s00000", 3, &entry.commit_id);
    t.raw().delete(&marker).await.unwrap();
    let report = t.reopen().await.verify(None).await.unwrap();
    assert!(
        report.problems.iter().any(|p| p.key == marker.as_ref()),
        "{:?}",
        report.problems
    );
}

/// The problems `verify` found, but for claims: `build_namespace` stores
/// versions through the library, which leaves claiming to the registry.
fn unclaimed_problems(report: &protoshelf::objstore::verify::VerifyReport) -> Vec<&str> {
    report
        .problems
        .iter()
        .map(|p| p.key.as_str())
        .filter(|k| !k.contains("/claims/"))
        .collect()
}
