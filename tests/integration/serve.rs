//! `protoshelf serve` as a process: the real Schema Registry clients
//! (confluent-kafka, kafkajs), a Rust gRPC client with reflection and
//! health, operations endpoints, auth, limits, shutdown, and three replicas
//! over one store with writers on every replica at once. On the local
//! directory and on S3 (LocalStack).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use common::server::{ADMIN, READER, Server, WRITER, agent, call, clients, tokens_file};
use common::{Backend, fresh_url};
use serde_json::{Value, json};

/// A fresh store URL (None: S3 not configured) and what keeps it alive.
fn store(backend: Backend) -> Option<(String, Option<std::sync::Arc<tempfile::TempDir>>)> {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(fresh_url(backend))
}

fn run_clients(backend: Backend) {
    let Some((py, node)) = clients() else { return };
    let Some((url, _keep)) = store(backend) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let mut server = Server::start(&url, &["--tokens", tokens.to_str().unwrap()]);
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(&py)
        .arg(format!("{root}/tests/clients/confluent_kafka_client.py"))
        .env("PROTOSHELF_URL", &server.url)
        .env("PROTOSHELF_WRITER_TOKEN", WRITER)
        .env("PROTOSHELF_ADMIN_TOKEN", ADMIN)
        .env(
            "PROTOSHELF_PROTO_DIR",
            format!("{root}/tests/clients/proto"),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "confluent-kafka client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(summary["passed"].as_u64().unwrap() >= 30, "{summary}");
    eprintln!("{backend:?}: {summary}");

    let out = Command::new("node")
        .arg(format!("{root}/tests/clients/kafkajs_client.js"))
        .env("NODE_PATH", &node)
        .env("PROTOSHELF_URL", &server.url)
        .env("PROTOSHELF_WRITER_TOKEN", WRITER)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kafkajs client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(summary["passed"].as_u64().unwrap() >= 8, "{summary}");
    eprintln!("{backend:?}: {summary}");

    // What the clients registered is ordinary protoshelf content.
    let cli = Command::new(env!("CARGO_BIN_EXE_protoshelf"))
        .args([
            "--store",
            &url,
            "-o",
            "json",
            "schema",
            "list",
            "kjs-order-value",
        ])
        .output()
        .unwrap();
    assert!(cli.status.success());
    let listed: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(listed[0]["schema_id"], "subject");
    assert_eq!(listed[0]["current_version"], 1);
    assert!(server.stop().success(), "SIGTERM stops the server cleanly");
}

#[test]
fn real_clients_local() {
    run_clients(Backend::Local);
}

#[test]
fn real_clients_s3() {
    run_clients(Backend::S3);
}

fn schema_with(field: &str) -> String {
    format!("syntax = \"proto3\";\npackage load;\nmessage Event {{\n  string id = 1;\n{field}}}\n")
}

/// Three replicas over one store, three writers on each at once.
fn replicas(backend: Backend) {
    let Some((url, _keep)) = store(backend) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let servers: Vec<Server> = (0..3)
        .map(|_| Server::start(&url, &["--tokens", tokens.to_str().unwrap()]))
        .collect();
    let a = agent();
    // Every writer adds fields of its own to one subject: checked against
    // whatever is latest, so the subject accepts anything.
    let (s, _) = call(
        &a,
        "PUT",
        &format!("{}/config/shared-value", servers[0].url),
        Some(WRITER),
        Some(&json!({"compatibility": "NONE"})),
    );
    assert_eq!(s, 200);
    let started = std::time::Instant::now();
    let per_writer = 3;
    let acks: Vec<(String, String, u64, u64)> = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for (r, server) in servers.iter().enumerate() {
            for w in 0..3 {
                let url = server.url.clone();
                handles.push(scope.spawn(move || {
                    let a = agent();
                    let mut out = Vec::new();
                    let mut register = |subject: &str, schema: String| {
                        let body = json!({"schema": schema, "schemaType": "PROTOBUF"});
                        let (status, v) = call(
                            &a,
                            "POST",
                            &format!("{url}/subjects/{subject}/versions"),
                            Some(WRITER),
                            Some(&body),
                        );
                        assert_eq!(status, 200, "replica {r} writer {w}: {v}");
                        out.push((
                            subject.to_string(),
                            schema,
                            v["id"].as_u64().unwrap(),
                            v["version"].as_u64().unwrap(),
                        ));
                    };
                    for i in 0..per_writer {
                        let n = 2 + r * 100 + w * 10 + i;
                        register(
                            "shared-value",
                            schema_with(&format!("  string f{n} = {n};\n")),
                        );
                    }
                    // The same content from every writer on every replica.
                    register("same-value", schema_with("  string same = 2;\n"));
                    register(
                        &format!("own-{r}-{w}-value"),
                        schema_with("  string same = 2;\n"),
                    );
                    out
                }));
            }
        }
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let elapsed = started.elapsed();

    // No lost registration: every acknowledged version is there, with its ID,
    // read from another replica than most writers used.
    let check = &servers[2].url;
    for (subject, _, id, version) in &acks {
        let (s, v) = call(
            &a,
            "GET",
            &format!("{check}/subjects/{subject}/versions/{version}"),
            None,
            None,
        );
        assert_eq!(s, 200, "{subject} v{version}: {v}");
        assert_eq!(v["id"].as_u64(), Some(*id), "{subject} v{version}");
    }
    // No ID for two contents, and one ID per content everywhere.
    let mut by_content: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for (_, schema, id, _) in &acks {
        by_content.entry(schema).or_default().insert(*id);
    }
    let mut owners: BTreeMap<u64, &str> = BTreeMap::new();
    for (schema, ids) in &by_content {
        assert_eq!(ids.len(), 1, "one content, several IDs: {ids:?}");
        let id = *ids.iter().next().unwrap();
        assert!(
            owners.insert(id, schema).is_none(),
            "ID {id} names two contents"
        );
        let (_, v) = call(&a, "GET", &format!("{check}/schemas/ids/{id}"), None, None);
        assert_eq!(v["schema"].as_str(), Some(*schema));
    }
    let (_, versions) = call(
        &a,
        "GET",
        &format!("{check}/subjects/shared-value/versions"),
        None,
        None,
    );
    let shared: BTreeSet<u64> = acks
        .iter()
        .filter(|a| a.0 == "shared-value")
        .map(|a| a.3)
        .collect();
    assert_eq!(
        shared.len(),
        9 * per_writer,
        "every shared registration is its own version"
    );
    let listed: BTreeSet<u64> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(
        shared.is_subset(&listed),
        "acked {shared:?}, listed {listed:?}"
    );
    let same: BTreeSet<u64> = acks
        .iter()
        .filter(|a| a.1.contains("same = 2"))
        .map(|a| a.2)
        .collect();
    assert_eq!(same.len(), 1, "identical content got IDs {same:?}");
    eprintln!(
        "{backend:?}: 3 replicas x 3 writers: {} registrations acknowledged in {:.1}s, {} distinct contents, {} IDs, {} shared-subject versions listed (acked {}), 0 lost, 0 IDs reused",
        acks.len(),
        elapsed.as_secs_f64(),
        by_content.len(),
        owners.len(),
        listed.len(),
        shared.len()
    );
}

#[test]
fn three_replicas_local() {
    replicas(Backend::Local);
}

#[test]
fn three_replicas_s3() {
    replicas(Backend::S3);
}

/// Operations endpoints, auth, limits, read-only, errors: on the local store.
#[test]
fn operations_auth_and_limits() {
    let (url, _keep) = store(Backend::Local).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let server = Server::start(
        &url,
        &[
            "--tokens",
            tokens.to_str().unwrap(),
            "--max-request-size",
            "4KiB",
        ],
    );
    let a = agent();
    let u = &server.url;
    assert_eq!(call(&a, "GET", &format!("{u}/healthz"), None, None).0, 200);
    assert_eq!(call(&a, "GET", &format!("{u}/readyz"), None, None).0, 200);
    let body = json!({"schema": schema_with("")});
    let (s, v) = call(
        &a,
        "POST",
        &format!("{u}/subjects/x/versions"),
        None,
        Some(&body),
    );
    assert_eq!((s, v["error_code"].as_u64()), (401, Some(40101)), "{v}");
    let (s, v) = call(
        &a,
        "POST",
        &format!("{u}/subjects/x/versions"),
        Some(READER),
        Some(&body),
    );
    assert_eq!((s, v["error_code"].as_u64()), (403, Some(40301)), "{v}");
    let (s, v) = call(
        &a,
        "POST",
        &format!("{u}/subjects/x/versions"),
        Some("wrong"),
        Some(&body),
    );
    assert_eq!(s, 401, "{v}");
    let (s, v) = call(
        &a,
        "POST",
        &format!("{u}/subjects/x/versions"),
        Some(WRITER),
        Some(&body),
    );
    assert_eq!(s, 200, "{v}");
    let (s, _) = call(
        &a,
        "PUT",
        &format!("{u}/config"),
        Some(WRITER),
        Some(&json!({"compatibility": "FULL"})),
    );
    assert_eq!(s, 403, "the global level needs admin");
    let (s, v) = call(
        &a,
        "PUT",
        &format!("{u}/config"),
        Some(ADMIN),
        Some(&json!({"compatibility": "SIDEWAYS"})),
    );
    assert_eq!((s, v["error_code"].as_u64()), (422, Some(42203)), "{v}");
    let big = json!({"schema": schema_with(&"  // padding\n".repeat(500))});
    let (s, _) = call(
        &a,
        "POST",
        &format!("{u}/subjects/x/versions"),
        Some(WRITER),
        Some(&big),
    );
    assert_eq!(s, 413, "bodies over --max-request-size are refused");
    let (s, v) = call(
        &a,
        "POST",
        &format!("{u}/subjects/x/versions"),
        Some(WRITER),
        Some(&json!({"nope": 1})),
    );
    assert_eq!(s, 422, "{v}");
    let (s, v) = call(
        &a,
        "GET",
        &format!("{u}/subjects/x/versions/zero"),
        None,
        None,
    );
    assert_eq!((s, v["error_code"].as_u64()), (422, Some(42202)), "{v}");
    let (s, v) = call(&a, "GET", &format!("{u}/no/such/endpoint"), None, None);
    assert_eq!((s, v["error_code"].as_u64()), (404, Some(404)), "{v}");
    let (s, v) = call(&a, "GET", &format!("{u}/schemas/types"), None, None);
    assert_eq!((s, v), (200, json!(["PROTOBUF"])));
    let (_, v) = call(&a, "GET", &format!("{u}/mode"), None, None);
    assert_eq!(v["mode"], "READWRITE");
    let (_, metrics) = call(&a, "GET", &format!("{u}/metrics"), None, None);
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics.contains("protoshelf_requests_total{api=\"rest\",method=\"POST\",route=\"/subjects/{subject}/versions\",status=\"200\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("protoshelf_request_duration_seconds_bucket"));
    assert!(metrics.contains("protoshelf_storage_requests_total{kind=\"put\"}"));
    assert!(metrics.contains("protoshelf_cache_hit_ratio"));
    drop(server);

    // --read-only: reads work, writes are refused whoever asks.
    let server = Server::start(&url, &["--tokens", tokens.to_str().unwrap(), "--read-only"]);
    let u = &server.url;
    let (s, v) = call(
        &a,
        "POST",
        &format!("{u}/subjects/y/versions"),
        Some(ADMIN),
        Some(&body),
    );
    assert_eq!((s, v["error_code"].as_u64()), (422, Some(42205)), "{v}");
    let (s, v) = call(&a, "GET", &format!("{u}/subjects"), None, None);
    assert_eq!((s, v), (200, json!(["x"])));
    let (_, v) = call(&a, "GET", &format!("{u}/mode"), None, None);
    assert_eq!(v["mode"], "READONLY");
    drop(server);

    // --max-memory: a registration whose estimate is over it is refused,
    // naming the flag, and nothing is registered.
    let server = Server::start(
        &url,
        &[
            "--tokens",
            tokens.to_str().unwrap(),
            "--max-memory",
            "32MiB",
        ],
    );
    let u = &server.url;
    let (s, v) = call(
        &a,
        "POST",
        &format!("{u}/subjects/capped/versions"),
        Some(WRITER),
        Some(&body),
    );
    assert_eq!(s / 100, 4, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("--max-memory"),
        "{v}"
    );
    let (_, v) = call(&a, "GET", &format!("{u}/subjects"), None, None);
    assert_eq!(v, json!(["x"]));
    drop(server);

    // --anonymous none: even reads need a token.
    let server = Server::start(
        &url,
        &["--tokens", tokens.to_str().unwrap(), "--anonymous", "none"],
    );
    assert_eq!(
        call(&a, "GET", &format!("{}/subjects", server.url), None, None).0,
        401
    );
    assert_eq!(
        call(
            &a,
            "GET",
            &format!("{}/subjects", server.url),
            Some(READER),
            None
        )
        .0,
        200
    );
}

/// A bad tokens file stops the server at start with a clear message.
#[test]
fn bad_tokens_file_is_refused_at_start() {
    let (url, _keep) = store(Backend::Local).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "tok someone superuser\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_protoshelf"))
        .args([
            "--store",
            &url,
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tokens",
            tokens.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tokens:1: unknown role \"superuser\""),
        "{err}"
    );
}

/// TLS (rustls): HTTP/1.1 and HTTP/2 (ALPN) with a self-signed certificate
/// made by openssl, checked by curl against it.
#[test]
fn tls_serves_http1_and_http2() {
    let (url, _keep) = store(Backend::Local).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (Debian's openssl package) is needed for this test");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let server = Server::start(
        &url,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);
    for (flag, want) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let out = Command::new("curl")
            .args(["-sS", flag, "--cacert"])
            .arg(&cert)
            .args(["-w", "\n%{http_version}"])
            .arg(format!("{}/subjects", server.url))
            .output()
            .expect("curl is needed for this test");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(text, format!("[]\n{want}"), "{flag}");
    }
    // A certificate that is not a certificate stops the start, exit 1.
    let out = Command::new(env!("CARGO_BIN_EXE_protoshelf"))
        .args([
            "--store",
            &url,
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
        ])
        .arg(&key)
        .arg("--tls-key")
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no certificate in it"));
}
