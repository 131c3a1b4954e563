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
