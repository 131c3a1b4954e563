//! The `protoshelf` binary end to end, on a local directory and on S3
//! (LocalStack): every command, exit codes, JSON output, and bad input that
//! must exit 1 with a clear message and leave the store byte-for-byte
//! unchanged.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::Backend;
use prost::Message;
use serde_json::Value;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

pub(crate) struct Cli {
    pub(crate) url: String,
    _dir: Option<std::sync::Arc<tempfile::TempDir>>,
    pub(crate) scratch: tempfile::TempDir,
}

impl Cli {
    pub(crate) async fn new(backend: Backend) -> Option<Cli> {
        let (url, dir) = common::fresh_url(backend).await?;
        Some(Cli {
            url,
            _dir: dir,
            scratch: tempfile::tempdir().unwrap(),
        })
    }

    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_protoshelf"));
        // Run from the scratch directory: file arguments there are named by
        // their path relative to it (the default import root).
        c.args(args)
            .current_dir(self.scratch.path())
            .env("PROTOSHELF_STORE", &self.url)
            .env_remove("PROTOSHELF_NAMESPACE")
            .env("NO_COLOR", "1");
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and requires exit 0; returns stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "protoshelf {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// Runs and requires exit 1 with `needle` in the error; returns stderr.
    pub(crate) fn fails(&self, args: &[&str], needle: &str) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "protoshelf {args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "protoshelf {args:?}: expected {needle:?} in: {stderr}"
        );
        stderr
    }

    pub(crate) fn file(&self, rel: &str, content: &[u8]) -> String {
        let p = self.scratch.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p.display().to_string()
    }

    pub(crate) fn dir(&self, rel: &str) -> String {
        let p = self.scratch.path().join(rel);
        std::fs::create_dir_all(&p).unwrap();
        p.display().to_string()
    }

    pub(crate) async fn content(&self) -> Vec<(String, String)> {
        let raw = protoshelf::objstore::url::open(&self.url).unwrap().store;
        common::content_snapshot(&raw).await
    }

    /// The example namespace, loaded and promoted.
    pub(crate) fn setup_shop(&self) {
        self.ok(&["init"]);
        self.ok(&["namespace", "create", "shop", "--metadata", "team=checkout"]);
        self.ok(&[
            "load",
            "__builtins__",
            &format!("{EXAMPLES}/builtins"),
            "--promote",
        ]);
        self.ok(&["load", "shop", &format!("{EXAMPLES}/shop"), "--promote"]);
    }
}

pub(crate) fn example(rel: &str) -> String {
    format!("{EXAMPLES}/{rel}")
}

async fn every_command(backend: Backend) {
    let Some(c) = Cli::new(backend).await else {
        return;
    };
    c.setup_shop();
    let init = c.json(&["init"]);
    assert_eq!(init["format_version"], 3);

    // Namespaces.
    let list = c.json(&["namespace", "list"]);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["namespace_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["__builtins__", "shop"]);
    let info = c.json(&["namespace", "info", "shop"]);
    assert_eq!(
        (info["policy"].as_str(), info["schemas"].as_u64()),
        (Some("strict"), Some(3))
    );
    assert_eq!(info["metadata"]["team"], "checkout");
    c.ok(&["namespace", "set-policy", "shop", "wire"]);
    assert_eq!(c.json(&["namespace", "info", "shop"])["policy"], "wire");
    c.ok(&["namespace", "set-policy", "shop", "strict"]);

    // Schemas.
    let schemas = c.json(&["schema", "list", "shop"]);
    assert_eq!(schemas.as_array().unwrap().len(), 3);
    let info = c.json(&["schema", "info", "shop", "shop.orders"]);
    let mut keys: Vec<&str> = info
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "created_at",
            "current_version",
            "deleted",
            "metadata",
            "namespace_id",
            "schema_id",
            "staged_version",
            "versions"
        ]
    );
    assert_eq!(
        (
            info["current_version"].as_u64(),
            info["staged_version"].as_u64()
        ),
        (Some(1), None)
    );
    // The namespace from -n and from the environment.
    assert_eq!(
        c.json(&["-n", "shop", "schema", "info", "shop.orders"])["schema_id"],
        "shop.orders"
    );
    let out = c
        .cmd(&["schema", "info", "shop.orders", "-o", "json"])
        .env("PROTOSHELF_NAMESPACE", "shop")
        .output()
        .unwrap();
    assert!(out.status.success());

    let out_dir = c.scratch.path().join("src");
    c.ok(&[
        "schema",
        "source",
        "shop",
        "shop.orders",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let written = std::fs::read_to_string(out_dir.join("shop/orders/order.proto")).unwrap();
    assert_eq!(
        written,
        std::fs::read_to_string(example("shop/shop/orders/order.proto")).unwrap()
    );
    assert!(
        c.ok(&["schema", "source", "shop", "shop.orders"])
            .contains("message Order")
    );

    let desc = c.scratch.path().join("orders.binpb");
    c.ok(&[
        "schema",
        "descriptor",
        "shop",
        "shop.orders",
        "--out",
        desc.to_str().unwrap(),
    ]);
    let set =
        prost_types::FileDescriptorSet::decode(std::fs::read(&desc).unwrap().as_slice()).unwrap();
    let names: Vec<&str> = set.file.iter().map(|f| f.name()).collect();
    assert_eq!(names.last(), Some(&"shop/orders/order.proto"));
    assert!(
        names.contains(&"common/money.proto") && names.contains(&"google/protobuf/timestamp.proto")
    );
    let piped = c.run(&["schema", "descriptor", "shop", "shop.orders"]);
    assert_eq!(
        piped.stdout,
        std::fs::read(&desc).unwrap(),
        "stdout is not a terminal: bytes go there"
    );

    // Publishing: push, no change, check, promote.
    let pushed = c.json(&[
        "push",
        "shop",
        "shop.orders",
        &example("changes/compatible"),
        "--created-by",
        "ci",
    ]);
    assert_eq!(
        (pushed["version"].as_u64(), pushed["no_change"].as_bool()),
        (Some(2), Some(false))
    );
    assert_eq!(pushed["fingerprint"].as_str().unwrap().len(), 64);
    let again = c.json(&[
        "push",
        "shop",
        "shop.orders",
        &example("changes/compatible"),
    ]);
    assert_eq!(
        (again["version"].as_u64(), again["no_change"].as_bool()),
        (Some(2), Some(true))
    );
    let report = c.json(&[
        "check",
        "shop",
        "shop.orders",
        &example("changes/compatible"),
    ]);
    assert_eq!(report["violations"].as_array().unwrap().len(), 0);
    let dry = c.json(&["promote", "shop", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        c.json(&["schema", "info", "shop", "shop.orders"])["current_version"],
        1
    );
    let promoted = c.json(&["promote", "shop"]);
    assert_eq!(
        promoted["promoted"][0],
        serde_json::json!({"schema_id": "shop.orders", "prior_version": 1, "current_version": 2})
    );

    // An incompatible change: check and promote both refuse, exit 1, rule IDs listed.
    let stderr = c.fails(
        &[
            "check",
            "shop",
            "shop.orders",
            &example("changes/incompatible"),
        ],
        "FIELD_NO_DELETE",
    );
    assert!(
        stderr.contains("FIELD_SAME_TYPE") && stderr.contains("shop/orders/order.proto:"),
        "{stderr}"
    );
    let out = c.run(&[
        "check",
        "shop",
        "shop.orders",
        &example("changes/incompatible"),
        "-o",
        "json",
    ]);
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["violations"][0]["rule"], "FIELD_NO_DELETE");
    c.ok(&[
        "push",
        "shop",
        "shop.orders",
        &example("changes/incompatible"),
    ]);
    let before = c.content().await;
    c.fails(&["promote", "shop"], "FIELD_NO_DELETE");
    c.fails(&["promote", "shop", "--dry-run"], "FIELD_SAME_TYPE");
    assert_eq!(
        c.content().await,
        before,
        "a refused promote changed the store"
    );
    assert_eq!(
        c.json(&["schema", "info", "shop", "shop.orders"])["current_version"],
        2
    );

    // Discard, rollback, log, completions.
    assert_eq!(c.json(&["discard", "shop"])["discarded"], true);
    assert_eq!(c.json(&["discard", "shop"])["discarded"], false);
    c.fails(&["rollback", "shop", "shop.orders", "1"], "FIELD_NO_DELETE");
    let staged = c.json(&["rollback", "shop", "shop.orders", "1", "--force"]);
    assert_eq!(staged["staged_version"], 1);
    let rolled = c.json(&["promote", "shop"]);
    assert_eq!(rolled["rollbacks"][0], "shop.orders");
    let log = c.json(&["log", "shop"]);
    let kinds: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"]["kind"].as_str().unwrap())
        .collect();
    // Newest first.
    assert_eq!(kinds.first(), Some(&"promote"));
    assert_eq!(kinds.last(), Some(&"stage"));
    assert_eq!(
        c.json(&["log", "shop", "--limit", "2"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(c.ok(&["completions", "bash"]).contains("protoshelf"));
    assert!(c.ok(&["--help"]).contains("push"));
}

async fn bad_input_changes_nothing(backend: Backend) {
    let Some(c) = Cli::new(backend).await else {
        return;
    };
    c.setup_shop();
    let long = "x".repeat(300);
    let empty = c.dir("empty");
    let txt = c.file("notes.txt", b"hello");
    let syntax = c.file(
        "syntax/bad.proto",
        b"syntax = \"proto3\";\nmessage A {\n  int32 x = ;\n}\n",
    );
    let missing = c.file(
        "missing/m.proto",
        b"syntax = \"proto3\";\nimport \"nowhere/x.proto\";\nmessage M {}\n",
    );
    c.file(
        "wkt/google/protobuf/timestamp.proto",
        b"syntax = \"proto3\";\npackage google.protobuf;\nmessage Timestamp {}\n",
    );
    let junk = c.file(
        "junk/junk.proto",
        &[0x00, 0xff, 0xfe, 0x13, 0x37, 0x9c, 0x80],
    );
    let big = c.file("big/big.proto", &vec![b'/'; 9 << 20]);
    let space = c.file("space/sp ace.proto", b"syntax = \"proto3\";\n");
    let dup_path = c.file(
        "dup/shop/types/price.proto",
        b"syntax = \"proto3\";\npackage other;\nmessage P {}\n",
    );
    let dup_symbol = c.file(
        "sym/shop/x.proto",
        b"syntax = \"proto3\";\npackage shop.orders;\nmessage Order {}\n",
    );
    let dup_path_dir = Path::new(&dup_path)
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .display()
        .to_string();
    let dup_symbol_dir = PathBuf::from(&dup_symbol)
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .display()
        .to_string();
    let wkt_dir = c.scratch.path().join("wkt").display().to_string();

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["namespace", "create", "_bad"], "invalid namespace ID"),
        (vec!["namespace", "create", &long], "longer than"),
        (vec!["namespace", "create", "shop"], "already exists"),
        (vec!["push", "shop", "bad id", &syntax], "invalid schema ID"),
        (vec!["push", "shop", &long, &syntax], "longer than"),
        (
            vec!["schema", "info", "shop", "../../etc"],
            "invalid schema ID",
        ),
        (vec!["push", "shop", "x", &space], "not allowed"),
        (vec!["push", "shop", "x", &empty], "no .proto files"),
        (vec!["load", "shop", &empty], "no .proto files"),
        (vec!["push", "shop", "x", &txt], "not a .proto file"),
        (
            vec!["push", "shop", "x", "/nonexistent/a.proto"],
            "no such file",
        ),
        (vec!["push", "shop", "x", &syntax], "bad.proto:3:"),
        (vec!["push", "shop", "x", &missing], "nowhere/x.proto"),
        (vec!["push", "shop", "x", &wkt_dir], "well-known"),
        (vec!["push", "shop", "x", &junk], "UTF-8"),
        (vec!["push", "shop", "x", &big], "limit per file"),
        (
            vec!["push", "shop", "x", &dup_path_dir],
            "already defined by schema \"shop.types\"",
        ),
        (
            vec!["push", "shop", "x", &dup_symbol_dir],
            "shop.orders.Order",
        ),
        (
            vec!["push", "nope", "x", &syntax],
            "namespace \"nope\" not found",
        ),
        (vec!["schema", "info", "shop", "nope"], "not found"),
        (vec!["schema", "info", "nope", "x"], "not found"),
        (
            vec!["schema", "source", "shop", "shop.orders", "--version", "99"],
            "version 99",
        ),
        (vec!["rollback", "shop", "shop.orders", "99"], "version 99"),
        (
            vec!["rollback", "shop", "shop.orders", "one"],
            "invalid value 'one' for '<VERSION>'",
        ),
        (
            vec!["rollback", "shop", "shop.orders", "0"],
            "invalid value '0' for '<VERSION>'",
        ),
        (
            vec!["rollback", "shop.orders", "one"],
            "invalid value 'one'",
        ),
        (
            vec!["--storage-timeout", "0s", "namespace", "list"],
            "more than 0 and less than 24 hours",
        ),
        (
            vec!["--store", "ftp://host/x", "namespace", "list"],
            "unsupported scheme",
        ),
        (
            vec!["--store", "s3://", "namespace", "list"],
            "missing bucket",
        ),
        (vec!["schema", "info"], "required"),
        (vec!["schema", "info", "shop.orders"], "no namespace"),
        (vec!["promote", "--no-such-flag"], "unexpected argument"),
        (
            vec!["mount", "/nonexistent/mnt"],
            "does not exist: create it first",
        ),
        (vec!["mount", &txt], "is not a directory"),
        (
            vec!["mount", &empty, "--refresh", "0s"],
            "at least 10ms and less than 24 hours",
        ),
        (vec!["mount", &empty, "--cache-size", "1TB"], "unit must be"),
    ];
    let before = c.content().await;
    for (args, needle) in &cases {
        c.fails(args, needle);
    }
    assert_eq!(c.content().await, before, "bad input changed the store");
    eprintln!(
        "{backend:?}: {} bad inputs, each exit 1 with a clear message, store unchanged",
        cases.len()
    );
}

/// `push`/`load --create` into a namespace that does not exist: input the
/// publish refuses (a syntax error, a missing import, a path the builtins
/// own, a file over the limit, schemas importing each other in a cycle)
/// exits 1 and creates nothing, not even the namespace: `namespace list`
/// does not show it and the store is byte-for-byte unchanged. A failed
/// first publish into `__builtins__` (created by its first publish) leaves
/// none either. The files fixed create the namespace, made by the author
/// `--created-by` names.
async fn a_failed_publish_with_create_leaves_no_namespace(backend: Backend) {
    let Some(c) = Cli::new(backend).await else {
        return;
    };
    c.ok(&["init"]);
    let syntax = c.file(
        "syntax/bad.proto",
        b"syntax = \"proto3\";\nmessage A {\n  int32 x = ;\n}\n",
    );
    let syntax_dir = c.scratch.path().join("syntax").display().to_string();
    // The builtins' own first publish, refused: no __builtins__ either.
    let before = c.content().await;
    c.fails(&["push", "__builtins__", "common", &syntax], "bad.proto:3:");
    assert_eq!(
        c.content().await,
        before,
        "a failed publish made __builtins__"
    );
    c.ok(&["load", "__builtins__", &example("builtins"), "--promote"]);

    let missing = c.file(
        "missing/m.proto",
        b"syntax = \"proto3\";\nimport \"nowhere/x.proto\";\nmessage M {}\n",
    );
    c.file(
        "owned/common/money.proto",
        b"syntax = \"proto3\";\npackage other;\nmessage Money {}\n",
    );
    let owned = c.scratch.path().join("owned").display().to_string();
    let big = c.file("big/big.proto", &vec![b'/'; 9 << 20]);
    c.file(
        "cycle/a/a.proto",
        b"syntax = \"proto3\";\npackage a;\nimport \"b/b.proto\";\nmessage A { b.B b = 1; }\nmessage A2 {}\n",
    );
    c.file(
        "cycle/b/b.proto",
        b"syntax = \"proto3\";\npackage b;\nimport \"a/a.proto\";\nmessage B {}\nmessage B2 { a.A2 a = 1; }\n",
    );
    let cycle = c.scratch.path().join("cycle").display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["push", "fresh", "x", &syntax, "--create"],
            "bad.proto:3:",
        ),
        (
            vec!["push", "fresh", "x", &missing, "--create"],
            "nowhere/x.proto",
        ),
        (
            vec!["push", "fresh", "x", &owned, "--create"],
            "already defined",
        ),
        (
            vec!["push", "fresh", "x", &big, "--create"],
            "limit per file",
        ),
        (
            vec!["load", "fresh", &syntax_dir, "--create"],
            "bad.proto:3:",
        ),
        (vec!["load", "fresh", &cycle, "--create", "-q"], "cycle"),
    ];
    let before = c.content().await;
    for (args, needle) in &cases {
        c.fails(args, needle);
        for list in [
            &["namespace", "list"][..],
            &["namespace", "list", "--deleted"],
        ] {
            let listed = c.ok(list);
            assert!(
                !listed.contains("fresh"),
                "{args:?} made the namespace: {listed}"
            );
        }
        assert_eq!(c.content().await, before, "{args:?} changed the store");
    }
    c.ok(&[
        "load",
        "fresh",
        &example("shop"),
        "--create",
        "--created-by",
        "ci",
    ]);
    let info = c.json(&["namespace", "info", "fresh"]);
    assert_eq!(info["created_by"], "ci", "{info}");
    assert!(c.ok(&["namespace", "list"]).contains("fresh"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_publish_with_create_leaves_no_namespace_local() {
    a_failed_publish_with_create_leaves_no_namespace(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_publish_with_create_leaves_no_namespace_s3() {
    a_failed_publish_with_create_leaves_no_namespace(Backend::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_local() {
    every_command(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_s3() {
    every_command(Backend::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_changes_nothing_local() {
    bad_input_changes_nothing(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_changes_nothing_s3() {
    bad_input_changes_nothing(Backend::S3).await;
}

/// The compile guards from the command line: a message option whose
/// aggregate value nests 1,000 deep is refused as bad input (exit 1, it used
/// to overflow the stack and abort), a schema exceeding `--compile-timeout`
/// fails as a limit (exit 2, saying how to raise it) on every command that
/// compiles, and neither writes anything.
async fn compile_guards(backend: Backend) {
    let Some(c) = Cli::new(backend).await else {
        return;
    };
    c.setup_shop();
    let depth = 1000;
    let deep = c.file(
        "deep/deep.proto",
        format!(
            "syntax = \"proto2\";\npackage deep;\nimport \"google/protobuf/descriptor.proto\";\n\
             message Node {{ optional Node a = 1; }}\n\
             extend google.protobuf.MessageOptions {{ optional Node node = 50000; }}\n\
             message M {{ option (node) = {}{}; }}\n",
            "{ a ".repeat(depth),
            "}".repeat(depth)
        )
        .as_bytes(),
    );
    let big = c.file(
        "big/big.proto",
        (0..2000)
            .map(|k| format!("message M{k} {{ string a = 1; int64 b = 2; }}\n"))
            .fold(
                "syntax = \"proto3\";\npackage big;\n".to_string(),
                |s, m| s + &m,
            )
            .as_bytes(),
    );
    let before = c.content().await;
    let err = c.fails(
        &["push", "shop", "deep", &deep],
        "nested more than 64 levels",
    );
    assert!(err.contains("deep.proto:6:"), "{err}");
    c.fails(
        &["load", "shop", &c.dir("deep")],
        "nested more than 64 levels",
    );
    let limited: [&[&str]; 3] = [
        &["push", "shop", "big", &big],
        &["load", "shop", &c.dir("big")],
        &["check", "shop", "big", &big],
    ];
    for args in limited {
        let mut args = args.to_vec();
        args.extend(["--compile-timeout", "0.001ms"]);
        let out = c.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("compile time limit exceeded")
                && stderr.contains("schema \"big\"")
                && stderr.contains("--compile-timeout"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(
        c.content().await,
        before,
        "a refused compile wrote something"
    );
    // The same file within a generous limit.
    c.ok(&["push", "shop", "big", &big, "--compile-timeout", "5m"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_guards_local() {
    compile_guards(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_guards_s3() {
    compile_guards(Backend::S3).await;
}
