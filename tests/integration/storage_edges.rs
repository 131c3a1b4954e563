//! Storage that misbehaves at the edges: an S3 endpoint that hangs or
//! trickles its answers (the CLI's request budget), run against real TCP
//! listeners in the test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// An endpoint that accepts connections and then never answers.
fn hanging_endpoint() -> String {
    serve(|stream| {
        // Holds the connection open, reading whatever comes, never writing.
        let mut stream = stream;
        let mut buf = [0u8; 4096];
        while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
    })
}

/// An endpoint that answers every request, one byte every 200 ms: each try
/// makes progress but never finishes within its share of the budget.
fn trickling_endpoint() -> String {
    serve(|mut stream| {
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf);
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
        for byte in answer.iter().chain(std::iter::repeat(&b'x')) {
            if stream.write_all(&[*byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

/// Listens on a free local port, handling each connection on its own
/// thread for the rest of the test process; returns `host:port`.
fn serve(handle: fn(TcpStream)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || handle(stream));
        }
    });
    addr
}

/// `protoshelf` against the S3 endpoint at `addr`, bucket `edge-bucket`.
fn cli(addr: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_protoshelf"));
    c.args(args)
        .env("PROTOSHELF_STORE", "s3://edge-bucket/prefix")
        .env("AWS_ENDPOINT", format!("http://{addr}"))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("PROTOSHELF_STORAGE_TIMEOUT")
        .env_remove("PROTOSHELF_NAMESPACE")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_SESSION_TOKEN");
    c
}

/// Runs `cmd`, killing it after `outer` (far beyond any budget under
/// test, so only a command that ignores its budget reaches it).
fn run_bounded(mut cmd: Command, outer: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            eprintln!("finished in {:?}", start.elapsed());
            return out;
        }
        if start.elapsed() > outer {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "protoshelf still running after {outer:?}, budget ignored; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_unreachable(out: &Output, addr: &str, budget: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{err}");
    // The request (operation, endpoint, bucket, key), the store and the
    // budget that ran out, and what to do.
    for needle in [
        "storage error",
        "GET",
        &format!("http://{addr}/edge-bucket/prefix/"),
        "s3://edge-bucket/prefix did not answer",
        &format!("within the budget of {budget} per request"),
        "--storage-timeout",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_hanging_endpoint_fails_within_the_flag_budget() {
    let addr = hanging_endpoint();
    let mut cmd = cli(&addr, &["--storage-timeout", "2s", "namespace", "list"]);
    cmd.env("PROTOSHELF_STORAGE_TIMEOUT", "5m"); // the flag wins
    let out = run_bounded(cmd, Duration::from_secs(120));
    assert_unreachable(&out, &addr, "2 s");
}

#[test]
fn a_trickling_endpoint_fails_within_the_env_budget() {
    let addr = trickling_endpoint();
    let mut cmd = cli(&addr, &["schema", "list", "ns"]);
    cmd.env("PROTOSHELF_STORAGE_TIMEOUT", "2s");
    let out = run_bounded(cmd, Duration::from_secs(120));
    assert_unreachable(&out, &addr, "2 s");
}

#[test]
fn the_default_budget_bounds_a_hanging_endpoint() {
    // object_store alone would retry for three minutes, each try up to 30 s.
    let addr = hanging_endpoint();
    let out = run_bounded(cli(&addr, &["namespace", "list"]), Duration::from_secs(150));
    assert_unreachable(&out, &addr, "30 s");
}

#[test]
fn a_bad_storage_timeout_is_a_usage_error() {
    let out = cli(
        "127.0.0.1:1",
        &["--storage-timeout", "soon", "namespace", "list"],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--storage-timeout") && err.contains("not a duration"),
        "{err}"
    );
}
