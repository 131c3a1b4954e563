//! `protoshelf serve` as a child process for the server tests, and a small
//! blocking HTTP helper.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const WRITER: &str = "tok-writer";
pub const ADMIN: &str = "tok-admin";
pub const READER: &str = "tok-reader";

/// A tokens file with a writer, an admin and a reader.
pub fn tokens_file(dir: &Path) -> PathBuf {
    let path = dir.join("tokens");
    std::fs::write(
        &path,
        format!("{WRITER} ci writer\n{ADMIN} ops admin\n{READER} dash reader\n"),
    )
    .unwrap();
    path
}

pub struct Server {
    pub child: Child,
    pub url: String,
    pub addr: String,
}

impl Server {
    /// Starts `protoshelf --store <store> serve --listen 127.0.0.1:0 <args>`
    /// and waits for its "listening on" line.
    pub fn start(store: &str, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_protoshelf"))
            .args(["--store", store, "serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start protoshelf serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let addr = url.split("://").nth(1).unwrap().to_string();
        Server { child, url, addr }
    }

    /// SIGTERM, then the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// (status, body as JSON or as a string).
pub fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .header("Cache-Control", "no-cache");
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let req = req
        .body(body.map(|b| b.to_string()).unwrap_or_default())
        .unwrap();
    let mut resp = agent.run(req).expect("request sent");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, value)
}

/// The installed client tools (scripts/clients.sh), or None when they are
/// missing; under `CI=true` missing tools fail the test.
pub fn clients() -> Option<(PathBuf, PathBuf)> {
    let cache = std::env::var("PROTOSHELF_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| dirs::home_dir().unwrap().join(".cache/protoshelf"));
    let py = std::env::var("PROTOSHELF_CLIENTS_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|_| cache.join("clients-venv/bin/python"));
    let node = std::env::var("PROTOSHELF_CLIENTS_NODE_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|_| cache.join("clients-npm/node_modules"));
    let ok = py.exists() && node.join("@kafkajs/confluent-schema-registry").exists();
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "CI=true but the Schema Registry clients are missing: run scripts/test.sh (it runs scripts/clients.sh install)"
            );
        }
        eprintln!("SKIPPED: client test (run scripts/clients.sh install)");
        return None;
    }
    Some((py, node))
}
