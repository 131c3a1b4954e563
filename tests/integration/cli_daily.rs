//! The CLI in daily use (issue 13), on a local directory and on S3
//! (LocalStack): a closed stdout, reads of a missing store, mounts on the
//! wrong directory, errors that say what to do (also as JSON), help text,
//! consistent output and who did what.

use crate::cli::Cli;
use crate::common::Backend;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

/// A schema of `messages` messages: a large `schema source` output.
fn big_proto(messages: usize) -> String {
    (0..messages)
        .map(|k| format!("message M{k} {{ string a = 1; int64 b = 2; }}\n"))
        .fold(
            "syntax = \"proto3\";\npackage big;\n".to_string(),
            |s, m| s + &m,
        )
}

/// Like `protoshelf ARGS | head -1`: reads the first line, then closes the
/// pipe while the command still has much more to write.
fn head_1(c: &Cli, args: &[&str]) -> (String, std::process::Output) {
    let mut child = c
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is dropped here: later writes get EPIPE.
    (first, child.wait_with_output().unwrap())
}

/// Runs `args` with a stdout whose reader is already gone.
fn closed_before_start(c: &Cli, args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    c.cmd(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn assert_quiet_success(args: &[&str], out: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(!stderr.contains("error"), "{args:?}: {stderr}");
}

async fn closed_stdout_is_quiet(backend: Backend) {
    let Some(c) = Cli::new(backend).await else {
        return;
    };
    c.setup_shop();
    // 40 schemas for `schema list`, and one source far larger than a pipe's
    // buffer (64 KiB) so the writer is still writing when head exits.
    let tree = c.dir("many");
    for k in 0..40 {
        c.file(
            &format!("many/m{k:02}.proto"),
            format!("syntax = \"proto3\";\npackage many.m{k};\nmessage A {{}}\n").as_bytes(),
        );
    }
    c.ok(&["load", "shop", &tree, "--group-by", "file"]);
    let big = c.file("big/big.proto", big_proto(6000).as_bytes());
    c.ok(&["push", "shop", "big", &big, "--compile-timeout", "5m"]);

    for args in [
        &["schema", "source", "shop", "big"][..],
        &["-o", "json", "schema", "source", "shop", "big"],
    ] {
        let (first, out) = head_1(&c, args);
        assert!(!first.is_empty(), "{args:?}: no first line");
        assert_quiet_success(args, &out);
    }
    let list: &[&str] = &["schema", "list", "shop"];
    let (first, out) = head_1(&c, list);
    assert!(first.starts_with("SCHEMA"), "{first}");
    assert_quiet_success(list, &out);

    for args in [
        list,
        &["-o", "json", "schema", "source", "shop", "shop.orders"],
        &["log", "shop"],
        &["namespace", "info", "shop"],
        &["schema", "descriptor", "shop", "shop.orders"],
        &["completions", "bash"],
        &["--stats", "-o", "json", "namespace", "list"],
    ] {
        assert_quiet_success(args, &closed_before_start(&c, args));
    }
    // Any other write failure is exit 2, named.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = c.cmd(list).stdout(Stdio::from(full)).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot write to stdout"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_stdout_is_quiet_local() {
    closed_stdout_is_quiet(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_stdout_is_quiet_s3() {
    closed_stdout_is_quiet(Backend::S3).await;
}

/// Runs the binary with `--store url` and no other store configured.
fn at_store(url: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_protoshelf"))
        .arg("--store")
        .arg(url)
        .args(args)
        .env_remove("PROTOSHELF_STORE")
        .env_remove("PROTOSHELF_NAMESPACE")
        .output()
        .unwrap()
}

fn assert_fails(out: &std::process::Output, code: i32, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "expected {n:?} in: {stderr}");
    }
    stderr
}

/// Every command that only reads, or changes what must exist, refuses a
/// store that is not there and writes nothing; `init` and the
/// namespace-creating commands create it and say so.
async fn missing_store_is_refused(backend: Backend) {
    let Some(c) = Cli::new(backend).await else {
        return;
    };
    // The URL of a store nobody created: a directory that does not exist,
    // an existing empty one, or an empty S3 prefix.
    let empty_dir = c.dir("empty-store");
    let missing_dir = c.scratch.path().join("no-such-dir").display().to_string();
    let urls: Vec<String> = match backend {
        Backend::S3 => vec![c.url.clone()],
        _ => vec![empty_dir.clone(), missing_dir.clone()],
    };
    c.file(
        "p/a.proto",
        b"syntax = \"proto3\";\npackage a;\nmessage A {}\n",
    );
    let proto = c.dir("p");
    let reads: [&[&str]; 13] = [
        &["namespace", "list"],
        &["namespace", "info", "shop"],
        &["namespace", "set-policy", "shop", "wire"],
        &["schema", "list", "shop"],
        &["schema", "info", "shop", "x"],
        &["log", "shop"],
        &["promote", "shop"],
        &["discard", "shop"],
        &["rollback", "shop", "x", "1"],
        &["push", "shop", "a", &proto],
        &["check", "shop", "a", &proto],
        &["verify"],
        &["gc", "--dry-run"],
    ];
    for url in &urls {
        for args in reads {
            let out = at_store(url, args);
            assert_fails(
                &out,
                1,
                &[
                    "no protoshelf store at",
                    &format!("protoshelf --store {url} init"),
                ],
            );
        }
    }
    assert!(
        std::fs::read_dir(&empty_dir).unwrap().next().is_none(),
        "a refused command wrote into the directory"
    );
    assert!(
        !std::path::Path::new(&missing_dir).exists(),
        "a refused command created the directory"
    );
    assert!(c.content().await.is_empty(), "a refused command wrote");

    // A file is not a store directory, whatever the command.
    if backend == Backend::Local {
        let file = c.file("a-file", b"x");
        for args in [&["namespace", "list"][..], &["init"]] {
            assert_fails(
                &at_store(&file, args),
                1,
                &["is a file, not a store directory"],
            );
        }
    }

    // The creating commands: init says so on stdout, the others on stderr.
    let url = &urls[0];
    let out = at_store(url, &["init"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(" created (format version"));
    let out = at_store(url, &["init"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(" ready (format version"));
    if let Some(missing) = urls.get(1) {
        let out = at_store(missing, &["namespace", "create", "shop"]);
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("note: created a new protoshelf store"),
            "{out:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_store_is_refused_local() {
    missing_store_is_refused(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_store_is_refused_s3() {
    missing_store_is_refused(Backend::S3).await;
}

/// `push`/`load` into a namespace that does not exist name `--create`;
/// with it they create the namespace (and the store) and publish.
async fn push_and_load_create(backend: Backend) {
    let Some(c) = Cli::new(backend).await else {
        return;
    };
    let proto = c.file(
        "p/a/a.proto",
        b"syntax = \"proto3\";\npackage a;\nmessage A {}\n",
    );
    let tree = c.dir("p");
    // No store yet: --create creates it.
    let out = c.run(&["push", "fresh", "a", &proto, "--create"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("note: created a new protoshelf store"));
    assert_eq!(c.json(&["namespace", "info", "fresh"])["policy"], "strict");
    let before = c.content().await;
    for args in [&["push", "nope", "a", &proto][..], &["load", "nope", &tree]] {
        c.fails(args, "namespace \"nope\" not found");
        let err = c.fails(
            args,
            "hint: create it with `protoshelf namespace create nope`, or give --create",
        );
        assert!(!err.contains("note: created"), "{err}");
    }
    c.fails(
        &["check", "nope", "a", &proto],
        "hint: create it with `protoshelf namespace create nope`",
    );
    assert_eq!(c.content().await, before, "a refused push wrote");
    let loaded = c.json(&["load", "other", &tree, "--create", "--promote"]);
    assert_eq!(
        (loaded["schema_id"].as_str(), loaded["version"].as_u64()),
        (Some("a"), Some(1))
    );
    // --create on a namespace that exists publishes into it.
    let b = c.file(
        "q/b.proto",
        b"syntax = \"proto3\";\npackage b;\nmessage B {}\n",
    );
    let pushed = c.json(&["push", "fresh", "b", &b, "--create"]);
    assert_eq!(pushed["version"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_load_create_local() {
    push_and_load_create(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_load_create_s3() {
    push_and_load_create(Backend::S3).await;
}

/// `mount` refuses a directory that is missing, not a directory, not empty
/// (unless `--allow-non-empty`) or a mount point already (two mounts used
/// to stack), each exit 1 with what to do; mounted for real.
async fn mountpoints_are_checked(backend: Backend) {
    use crate::mount::{Mounted, fuse_available, setup};
    if !fuse_available() {
        return;
    }
    let Some((url, _keep)) = crate::common::fresh_url(backend).await else {
        return;
    };
    setup(&url);
    let mount = |dir: &str| at_store(&url, &["mount", dir, "--refresh", "200ms"]);
    let scratch = tempfile::tempdir().unwrap();
    let missing = scratch.path().join("nope").display().to_string();
    assert_fails(&mount(&missing), 1, &["does not exist", "mkdir -p"]);
    assert!(!std::path::Path::new(&missing).exists());

    let full = tempfile::tempdir().unwrap();
    std::fs::write(full.path().join("keep.txt"), b"mine").unwrap();
    assert_fails(
        &mount(full.path().to_str().unwrap()),
        1,
        &["is not empty (1 entry)", "--allow-non-empty"],
    );
    // With the option it mounts over the file, and gives it back after.
    let m = Mounted::start_in(full, &url, &["--allow-non-empty"]);
    assert!(m.path("shop/current").is_dir());
    assert!(!m.path("keep.txt").exists(), "the mount shows the registry");
    // A second mount on a mounted directory is refused, the first intact.
    let again = mount(m.dir.path().to_str().unwrap());
    let err = assert_fails(
        &again,
        1,
        &["already a mount point (fuse", "fusermount3 -u"],
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(m.path("shop/current").is_dir());
    let dir = m.stop_keeping_dir();
    assert_eq!(std::fs::read(dir.path().join("keep.txt")).unwrap(), b"mine");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(dir.path().to_str().unwrap()),
        "a mount was left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mountpoints_are_checked_local() {
    mountpoints_are_checked(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mountpoints_are_checked_s3() {
    mountpoints_are_checked(Backend::S3).await;
}

/// S3 errors the user can fix say what to do instead of passing on the raw
/// answer: a missing bucket names `--create-bucket`, missing credentials
/// name the variables, not the metadata endpoint; both exit 1, also as
/// JSON errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_errors_say_what_to_do() {
    if !crate::common::s3_enabled() {
        return;
    }
    let bucket = format!("protoshelf-missing-{}", uuid::Uuid::new_v4().simple());
    let url = format!("s3://{bucket}/prefix");
    for args in [&["init"][..], &["namespace", "list"]] {
        let err = assert_fails(
            &at_store(&url, args),
            1,
            &[
                &format!("error: the bucket of {url} does not exist"),
                &format!("hint: create it with `protoshelf --store {url} init --create-bucket`"),
            ],
        );
        assert!(!err.contains("<Error>"), "{err}");
    }
    let out = at_store(&url, &["-o", "json", "init"]);
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["error"]["kind"], "no_such_bucket");
    assert_eq!(body["error"]["exit_code"], 1);
    // No credentials anywhere: the instance metadata service (here a port
    // that refuses, so the test does not depend on the machine) is the last
    // provider object_store tries.
    let test_bucket = crate::common::TEST_BUCKET;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_protoshelf"))
        .args([
            "--store",
            &format!("s3://{test_bucket}/x"),
            "namespace",
            "list",
        ])
        .args(["--storage-timeout", "5s"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_METADATA_ENDPOINT", "http://127.0.0.1:1")
        .output()
        .unwrap();
    let err = assert_fails(
        &out,
        1,
        &[
            "no AWS credentials for",
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            "AWS_PROFILE",
        ],
    );
    assert!(!err.contains("latest/api/token"), "{err}");
}

/// With `-o json` every failure is `{"error": {"kind", "message",
/// "exit_code"}}` on stdout, with the same exit code as in table mode.
async fn json_errors(backend: Backend) {
    let Some(c) = Cli::new(backend).await else {
        return;
    };
    c.setup_shop();
    let incompatible = crate::cli::example("changes/incompatible");
    let cases: [(&[&str], &str, i32); 6] = [
        (&["namespace", "info", "nope"], "not_found", 1),
        (&["namespace", "create", "shop"], "already_exists", 1),
        (&["schema", "info", "shop", "bad id"], "invalid_id", 1),
        (&["schema", "info"], "usage", 1),
        (
            &["check", "shop", "shop.orders", &incompatible],
            "incompatible",
            1,
        ),
        (&["push", "nope", "x", &incompatible], "not_found", 1),
    ];
    for (args, kind, code) in cases {
        let table = c.run(args);
        assert_eq!(table.status.code(), Some(code), "{args:?}");
        let mut json_args = vec!["-o", "json"];
        json_args.extend(args);
        let out = c.run(&json_args);
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let body: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}): {out:?}"));
        let error = &body["error"];
        assert_eq!(error["kind"], kind, "{args:?}: {body}");
        assert_eq!(error["exit_code"], code, "{args:?}");
        assert!(!error["message"].as_str().unwrap().is_empty());
        // The readable line stays on stderr.
        assert!(String::from_utf8_lossy(&out.stderr).contains("error: "));
        if kind == "incompatible" {
            assert_eq!(body["violations"][0]["rule"], "FIELD_NO_DELETE");
        }
        if args[0] == "push" {
            assert!(
                error["hint"].as_str().unwrap().contains("--create"),
                "{body}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_errors_local() {
    json_errors(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_errors_s3() {
    json_errors(Backend::S3).await;
}

/// Policies are listed in help, and a wrong one is refused naming them,
/// with exit 1 and nothing written.
#[test]
fn policy_values_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().display().to_string();
    let help = at_store(&url, &["namespace", "create", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("[possible values: strict, wire, wire_json, none]"),
        "{text}"
    );
    let out = at_store(&url, &["namespace", "create", "x", "--policy", "loose"]);
    assert_fails(&out, 1, &["loose", "strict, wire, wire_json, none"]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// The storage PUTs a command made (`--stats`), and its JSON output.
fn with_puts(c: &Cli, args: &[&str]) -> (serde_json::Value, u64) {
    let mut all = vec!["--stats", "-o", "json"];
    all.extend(args);
    let out = c.run(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    let stats: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        stats["requests"]["put"].as_u64().unwrap(),
    )
}

fn log_seqs(c: &Cli) -> Vec<u64> {
    let log = c.json(&["log", "shop"]);
    let seqs = log.as_array().unwrap().iter();
    seqs.map(|e| e["seq"].as_u64().unwrap()).collect()
}

/// `namespace info` prints `-` for no version like every table; `log` is
/// newest first as a table and as JSON; commands that change nothing say
/// so and write nothing.
async fn output_is_consistent(backend: Backend) {
    let Some(c) = Cli::new(backend).await else {
        return;
    };
    let v1 = c.file(
        "v1/a/a.proto",
        b"syntax = \"proto3\";\npackage a;\nmessage A {}\n",
    );
    let v2 = c.file(
        "v2/a/a.proto",
        b"syntax = \"proto3\";\npackage a;\nmessage A {}\nmessage B {}\n",
    );
    // Each file at its path under its own root: `a/a.proto` both times.
    let (r1, r2) = (c.dir("v1"), c.dir("v2"));
    c.ok(&["init"]);
    c.ok(&["namespace", "create", "shop"]);
    c.ok(&["push", "shop", "a", "-I", &r1, &v1]);
    let info = c.ok(&["namespace", "info", "shop"]);
    assert!(info.contains("  staged    a v1 (current -)"), "{info}");
    assert!(!info.contains("null"), "{info}");
    c.ok(&["promote", "shop"]);
    c.ok(&["push", "shop", "a", "-I", &r2, &v2, "--promote"]);

    let table: Vec<u64> = c
        .ok(&["log", "shop"])
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(table, [4, 3, 2, 1]);
    assert_eq!(log_seqs(&c), table);
    let limited = c.json(&["log", "shop", "--limit", "2"]);
    assert_eq!(limited[0]["seq"], 4);

    // No-ops: 0 PUTs, no commit, said so.
    // The tree that holds `a/a.proto`: one schema, `a`, named by its directory.
    let v2_dir = r2.clone();
    let noops: [(&[&str], &str); 6] = [
        (&["rollback", "shop", "a", "2"], "no_change"),
        (&["namespace", "set-policy", "shop", "strict"], "no_change"),
        (&["push", "shop", "a", "-I", &r2, &v2], "no_change"),
        (&["load", "shop", &v2_dir], "no_change"),
        (&["promote", "shop"], "promoted"),
        (&["discard", "shop"], "discarded"),
    ];
    for (args, field) in noops {
        let (value, puts) = with_puts(&c, args);
        assert_eq!(puts, 0, "{args:?} wrote: {value}");
        match field {
            "no_change" => assert_eq!(value[field], true, "{args:?}: {value}"),
            "promoted" => assert_eq!(value[field], serde_json::json!([]), "{value}"),
            _ => assert_eq!(value[field], false, "{args:?}: {value}"),
        }
        assert_eq!(log_seqs(&c).len(), 4, "{args:?} committed");
    }
    for args in [
        &["rollback", "shop", "a", "2"][..],
        &["namespace", "set-policy", "shop", "strict"],
    ] {
        assert!(c.ok(args).contains("nothing to do"), "{args:?}");
    }
    // Staging the current version while another is staged is a change.
    let v3 = c.file(
        "v3/a/a.proto",
        b"syntax = \"proto3\";\npackage a;\nmessage A {}\nmessage B {}\nmessage C {}\n",
    );
    c.ok(&["push", "shop", "a", "-I", &c.dir("v3"), &v3]);
    let (value, puts) = with_puts(&c, &["rollback", "shop", "a", "2"]);
    assert!(puts > 0);
    assert_eq!(value["no_change"], false);
    assert_eq!(
        c.json(&["schema", "info", "shop", "a"])["staged_version"],
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_consistent_local() {
    output_is_consistent(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_consistent_s3() {
    output_is_consistent(Backend::S3).await;
}

/// One rule for every command: with -n or PROTOSHELF_NAMESPACE set, the
/// namespace is never an argument (giving it too is refused, exit 1);
/// without them, it is the first argument.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_rule_is_the_same_everywhere() {
    let Some(c) = Cli::new(Backend::Local).await else {
        return;
    };
    c.setup_shop();
    // A compatible change (check reports a staged version that breaks
    // current, and push stages it).
    let orders = crate::cli::example("changes/compatible");
    let tree = crate::cli::example("shop");
    // Each command's arguments after the namespace.
    let commands: [&[&str]; 11] = [
        &["schema", "list"],
        &["schema", "info", "shop.orders"],
        &["schema", "source", "shop.orders"],
        &["log"],
        &["promote", "--dry-run"],
        &["discard"],
        &["rollback", "shop.orders", "1"],
        &["push", "shop.orders", &orders],
        &["check", "shop.orders", &orders],
        &["load", &tree],
        &["verify"],
    ];
    for rest in commands {
        let (cmd, tail) = rest.split_at(if rest[0] == "schema" { 2 } else { 1 });
        let with_ns: Vec<&str> = cmd.iter().chain(&["shop"]).chain(tail).copied().collect();
        // Without -n: the first argument is the namespace.
        c.ok(&with_ns);
        // With either: the same command without it works ...
        let from_env = c
            .cmd(rest)
            .env("PROTOSHELF_NAMESPACE", "shop")
            .output()
            .unwrap();
        assert!(from_env.status.success(), "{rest:?}: {from_env:?}");
        let mut flag = vec!["-n", "shop"];
        flag.extend(rest);
        c.ok(&flag);
        // ... and with it too is refused, naming where each came from.
        let twice = c
            .cmd(&with_ns)
            .env("PROTOSHELF_NAMESPACE", "shop")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&twice.stderr);
        assert_eq!(twice.status.code(), Some(1), "{with_ns:?}: {err}");
        if !matches!(cmd[0], "push" | "check") {
            // push and check read `shop` as the schema: the lists are open.
            assert!(
                err.contains("given twice") && err.contains("PROTOSHELF_NAMESPACE"),
                "{err}"
            );
        }
        let mut flag = vec!["-n", "shop"];
        flag.extend(&with_ns);
        let out = c.run(&flag);
        assert_eq!(out.status.code(), Some(1), "{flag:?}");
    }
}

/// `--created-by` on every command that commits lands in its log entry
/// (table and JSON), and in the namespaces and versions it creates; the
/// default is `$USER@host`.
async fn authors_are_recorded(backend: Backend) {
    let Some(c) = Cli::new(backend).await else {
        return;
    };
    let v1 = c.file(
        "v1/a/a.proto",
        b"syntax = \"proto3\";\npackage a;\nmessage A {}\n",
    );
    let v2 = c.file(
        "v2/a/a.proto",
        b"syntax = \"proto3\";\npackage a;\nmessage A {}\nmessage B {}\n",
    );
    let dir = |f: &str| {
        std::path::Path::new(f)
            .parent()
            .unwrap()
            .display()
            .to_string()
    };
    c.ok(&["init"]);
    let steps: [&[&str]; 8] = [
        &[
            "namespace",
            "create",
            "shop",
            "--policy",
            "wire",
            "--created-by",
            "creator",
        ],
        &[
            "push",
            "shop",
            "a",
            "-I",
            &dir(&v1),
            &v1,
            "--created-by",
            "pusher",
        ],
        &["promote", "shop", "--created-by", "promoter"],
        &["load", "shop", &dir(&v2), "--created-by", "loader"],
        &["discard", "shop", "--created-by", "discarder"],
        &["rollback", "shop", "a", "2", "--created-by", "roller"],
        &[
            "namespace",
            "set-policy",
            "shop",
            "strict",
            "--created-by",
            "setter",
        ],
        &["promote", "shop"],
    ];
    for args in steps {
        let out = c.cmd(args).env("USER", "tester").output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let default = format!("tester@{}", host.trim());
    let log = c.json(&["log", "shop"]);
    let authors: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["created_by"].as_str().unwrap())
        .collect();
    assert_eq!(
        authors,
        [
            &default,
            "setter",
            "roller",
            "discarder",
            "loader",
            "promoter",
            "pusher",
            "creator"
        ]
    );
    let table = c.ok(&["log", "shop"]);
    let first: Vec<&str> = table
        .lines()
        .map(|l| l.split_whitespace().nth(3).unwrap())
        .collect();
    assert_eq!(first, authors, "{table}");
    let info = c.json(&["namespace", "info", "shop"]);
    assert_eq!(info["created_by"], "creator");
    assert!(
        c.ok(&["namespace", "info", "shop"])
            .contains("  by        creator")
    );
    assert_eq!(c.json(&["namespace", "list"])[0]["created_by"], "creator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authors_are_recorded_local() {
    authors_are_recorded(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authors_are_recorded_s3() {
    authors_are_recorded(Backend::S3).await;
}

/// `status` shows what is staged, by whom, in which commit, and what a
/// promote would do; `schema versions` every version with its author,
/// metadata, fingerprint and history.
async fn status_and_versions(backend: Backend) {
    let Some(c) = Cli::new(backend).await else {
        return;
    };
    c.setup_shop();
    let incompatible = crate::cli::example("changes/incompatible");
    let compatible = crate::cli::example("changes/compatible");
    let s = c.json(&["status", "shop"]);
    assert_eq!(s["staged"], serde_json::json!([]));
    assert!(
        c.ok(&["status", "shop"])
            .contains("shop: nothing staged (policy strict)")
    );

    let pushed = c.json(&[
        "push",
        "shop",
        "shop.orders",
        &incompatible,
        "--created-by",
        "bob",
        "--metadata",
        "commit=abc",
    ]);
    let head = c.json(&["log", "shop", "--limit", "1"])[0]["seq"].clone();
    let s = c.json(&["status", "shop"]);
    let row = &s["staged"][0];
    assert_eq!(
        (
            &row["schema_id"],
            &row["staged_version"],
            &row["current_version"]
        ),
        (&"shop.orders".into(), &2.into(), &1.into())
    );
    assert_eq!(
        (&row["staged_by"], &row["staged_in"]),
        (&"bob".into(), &head)
    );
    assert_eq!(row["promote"], "incompatible");
    assert_eq!(row["violations"][0]["rule"], "FIELD_NO_DELETE");
    assert_eq!(s["promote_would_succeed"], false);
    let table = c.ok(&["status", "shop"]);
    assert!(table.contains("FIELD_NO_DELETE"), "{table}");
    assert!(table.contains("promote would be refused"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("shop.orders"))
        .unwrap();
    assert!(
        row.contains(" bob ") && row.ends_with("incompatible"),
        "{row}"
    );

    let versions = c.json(&["schema", "versions", "shop", "shop.orders"]);
    let v2 = &versions[1];
    assert_eq!(
        (&v2["version"], &v2["created_by"]),
        (&2.into(), &"bob".into())
    );
    assert_eq!(v2["metadata"]["commit"], "abc");
    assert_eq!(v2["fingerprint"], pushed["fingerprint"]);
    assert_eq!(
        (&v2["staged"], &v2["ever_current"]),
        (&true.into(), &false.into())
    );
    assert_eq!(
        (&versions[0]["current"], &versions[0]["ever_current"]),
        (&true.into(), &true.into())
    );

    // Replaced by a compatible version, promoted: v1 was current, v2 was
    // only staged.
    c.ok(&["discard", "shop"]);
    c.ok(&[
        "push",
        "shop",
        "shop.orders",
        &compatible,
        "--created-by",
        "carol",
    ]);
    let s = c.json(&["status", "shop"]);
    assert_eq!(s["staged"][0]["promote"], "compatible");
    assert_eq!(s["staged"][0]["staged_by"], "carol");
    assert_eq!(s["promote_would_succeed"], true);
    assert!(
        c.ok(&["status", "shop"])
            .contains("promote would make 1 version current")
    );
    c.ok(&["promote", "shop"]);
    let states: Vec<(bool, bool, bool, bool)> = c
        .json(&["schema", "versions", "shop", "shop.orders"])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let b = |k: &str| v[k].as_bool().unwrap();
            (
                b("current"),
                b("staged"),
                b("ever_current"),
                b("ever_staged"),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            (false, false, true, true),
            (false, false, false, true),
            (true, false, true, true)
        ]
    );
    let table = c.ok(&["schema", "versions", "shop", "shop.orders"]);
    let cols: Vec<String> = table
        .lines()
        .skip(1)
        .map(|l| l[56..68].trim().to_string())
        .collect();
    assert_eq!(cols, ["was current", "was staged", "current"], "{table}");
    // A rollback is staged by whoever rolled back; a forced one is not
    // checked by promote.
    c.ok(&[
        "rollback",
        "shop",
        "shop.orders",
        "1",
        "--force",
        "--created-by",
        "dave",
    ]);
    let s = c.json(&["status", "shop"]);
    assert_eq!(
        (&s["staged"][0]["promote"], &s["staged"][0]["staged_by"]),
        (&"forced".into(), &"dave".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_versions_local() {
    status_and_versions(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_versions_s3() {
    status_and_versions(Backend::S3).await;
}

/// What the shell gets for completing word `index` of `words` (clap's
/// bash protocol: `COMPLETE=bash protoshelf -- <words>`).
fn complete(c: &Cli, index: usize, words: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_protoshelf"));
    cmd.arg("--")
        .args(words)
        .env("PROTOSHELF_STORE", &c.url)
        .env_remove("PROTOSHELF_NAMESPACE")
        .env("COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", index.to_string())
        .env("_CLAP_IFS", "\n");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "{words:?}: {stderr}"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // Flags are offered beside values; only the names matter here.
    text.lines()
        .filter(|l| !l.starts_with('-'))
        .map(str::to_string)
        .collect()
}

/// Completion of namespace, schema and version names comes from the store
/// the line names, follows the namespace rule, and writes nothing.
async fn completion_names_come_from_the_store(backend: Backend) {
    let Some(c) = Cli::new(backend).await else {
        return;
    };
    c.setup_shop();
    c.ok(&["namespace", "create", "shipping"]);
    c.ok(&["namespace", "create", "other"]);
    c.ok(&[
        "push",
        "shop",
        "shop.orders",
        &crate::cli::example("changes/compatible"),
    ]);
    let before = c.content().await;
    let p = "protoshelf";
    assert_eq!(
        complete(&c, 3, &[p, "schema", "list", "sh"], &[]),
        ["shipping", "shop"]
    );
    assert_eq!(
        complete(&c, 2, &[p, "log", ""], &[]),
        ["__builtins__", "other", "shipping", "shop"]
    );
    assert_eq!(
        complete(&c, 3, &[p, "namespace", "info", "o"], &[]),
        ["other"]
    );
    assert_eq!(complete(&c, 2, &[p, "-n", "s"], &[]), ["shipping", "shop"]);
    assert_eq!(
        complete(&c, 2, &[p, "push", "sh"], &[]),
        ["shipping", "shop"]
    );
    // Schemas of the namespace typed, or of -n / the variable.
    let schemas = ["shop.catalog", "shop.orders", "shop.types"];
    assert_eq!(
        complete(&c, 4, &[p, "schema", "info", "shop", "shop."], &[]),
        schemas
    );
    assert_eq!(
        complete(&c, 5, &[p, "-n", "shop", "schema", "info", "shop.o"], &[]),
        ["shop.orders"]
    );
    let env = [("PROTOSHELF_NAMESPACE", "shop")];
    assert_eq!(
        complete(&c, 3, &[p, "schema", "versions", "shop.c"], &env),
        ["shop.catalog"]
    );
    assert_eq!(
        complete(&c, 2, &[p, "check", "shop.t"], &env),
        ["shop.types"]
    );
    // Versions, newest first.
    assert_eq!(
        complete(&c, 4, &[p, "rollback", "shop", "shop.orders", ""], &[]),
        ["2", "1"]
    );
    assert_eq!(
        complete(&c, 3, &[p, "rollback", "shop.orders", ""], &env),
        ["2", "1"]
    );
    // --store on the line wins over the variable; a missing store offers
    // nothing and creates nothing.
    let elsewhere = c.scratch.path().join("no-store").display().to_string();
    let env = [("PROTOSHELF_STORE", elsewhere.as_str())];
    assert!(complete(&c, 3, &[p, "schema", "list", ""], &env).is_empty());
    assert!(!std::path::Path::new(&elsewhere).exists());
    let url = c.url.clone();
    assert_eq!(
        complete(&c, 5, &[p, "--store", &url, "schema", "list", "o"], &env),
        ["other"]
    );
    assert_eq!(c.content().await, before, "completion wrote to the store");
    // The script a shell sources to register it.
    let script = std::process::Command::new(env!("CARGO_BIN_EXE_protoshelf"))
        .env("COMPLETE", "bash")
        .output()
        .unwrap();
    let script = String::from_utf8(script.stdout).unwrap();
    assert!(
        script.contains("-F _clap_complete_protoshelf protoshelf"),
        "{script}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_names_come_from_the_store_local() {
    completion_names_come_from_the_store(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_names_come_from_the_store_s3() {
    completion_names_come_from_the_store(Backend::S3).await;
}
