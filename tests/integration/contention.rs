//! Liveness under contention, as a team uses it: 16 CI jobs pushing into
//! one namespace through the real `protoshelf` binary while another job
//! promotes in a loop, on the local directory and on S3 (LocalStack). Every
//! push is its own OS process, as in CI. Asserted: no push fails, no
//! acknowledged write is lost, no version number is handed out twice, and
//! every promote was all-or-nothing (the log replayed). Reported (see it
//! with --nocapture): races lost per commit, re-bases vs recompiles after a
//! lost race, and p50/p99 push latency as the jobs saw it.
//!
//! Also: a commit that truly cannot land (its every attempt loses, for the
//! whole `--commit-give-up`) exits 3 with a message saying it is safe to
//! retry, has committed nothing, and running it again converges.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::{Backend, fresh_url};
use protoshelf::ObjStore;
use protoshelf::model::PromotedSchema;
use protoshelf::objstore::ProtocolStats;
use protoshelf::objstore::records::Operation;
use protoshelf::registry::{Promoted, Registry, RegistryStats};
use serde::Deserialize;

use crate::concurrency::replay;

const NS: &str = "conc";
const WRITERS: usize = 16;
/// The last this-many writers push one schema together (their commits
/// really overlap: a loser must recompile); the others push one schema
/// each (a loser only re-bases).
const SHARING: usize = 4;
const SHARED: &str = "shared";

/// What every pushed schema imports: published and promoted before the race.
const BASE: &str = "syntax = \"proto3\";\npackage base;\nmessage Base { string id = 1; }\n";

fn cli(url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_protoshelf"));
    c.env("PROTOSHELF_STORE", url)
        .env_remove("PROTOSHELF_NAMESPACE")
        .env_remove("PROTOSHELF_COMMIT_GIVE_UP")
        .env("NO_COLOR", "1");
    c
}

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The `--stats` object `-o json` prints as stderr's last line.
#[derive(Deserialize)]
struct CliStats {
    protocol: ProtocolStats,
    registry: RegistryStats,
}

fn stats_of(out: &Output) -> CliStats {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no --stats line in {stderr}"));
    serde_json::from_str(line).unwrap()
}

#[derive(Deserialize)]
struct PushOut {
    schema_id: String,
    version: u64,
    no_change: bool,
}

/// One acknowledged push, as its job saw it.
struct Push {
    shared: bool,
    schema: String,
    version: u64,
    token: String,
    latency: Duration,
    /// Races its commit lost before landing.
    lost: u64,
    /// Full validations (compile, ownership): 1 + recompiles after losses.
    plans: u64,
    /// Lost races after which the validation was re-based, not redone.
    rebases: u64,
}

/// A command that did not succeed: what its job would have reported.
struct Failure {
    what: String,
    status: std::process::ExitStatus,
    stderr: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.what, self.status, self.stderr.trim())
    }
}

fn list(failures: &[Failure]) -> String {
    failures.iter().map(|f| format!("\n  {f}")).collect()
}

fn failure(what: String, out: &Output) -> Failure {
    Failure {
        what,
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The `.proto` a writer pushes: its token in a comment, so every push is a
/// new version, and structurally the same, so every promote is compatible.
fn source(schema: &str, token: &str) -> String {
    format!(
        "syntax = \"proto3\";\npackage {schema};\nimport \"base/base.proto\";\n// push {token}\nmessage M {{ base.Base base = 1; string a = 2; }}\n"
    )
}

/// One CI job's loop: `pushes` pushes of its schema, each its own process.
fn writer(url: &str, root: &Path, id: usize, pushes: usize) -> Vec<Result<Push, Failure>> {
    let shared = id >= WRITERS - SHARING;
    let schema = if shared {
        SHARED.to_string()
    } else {
        format!("own{id}")
    };
    let dir = root.join(format!("w{id}"));
    std::fs::create_dir_all(dir.join(&schema)).unwrap();
    (0..pushes)
        .map(|k| {
            let token = format!("w{id}-{k}");
            let file = dir.join(&schema).join(format!("{schema}.proto"));
            std::fs::write(&file, source(&schema, &token)).unwrap();
            let started = Instant::now();
            let out = cli(url)
                .args(["--stats", "-o", "json", "push", NS, &schema])
                .arg(&dir)
                .args(["--metadata", &format!("token={token}")])
                .output()
                .unwrap();
            let latency = started.elapsed();
            if !out.status.success() {
                return Err(failure(format!("push {token}"), &out));
            }
            let got: PushOut = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(got.schema_id, schema);
            assert!(!got.no_change, "push {token} is new content");
            let stats = stats_of(&out);
            let (p, r) = (stats.protocol, stats.registry);
            assert_eq!(p.commits, 1, "push {token}: one commit");
            // Every attempt after the first either re-based or planned again.
            assert_eq!(
                p.conflicts + 1,
                r.plans + r.rebases,
                "push {token}: attempts and validations disagree"
            );
            Ok(Push {
                shared,
                schema: schema.clone(),
                version: got.version,
                token,
                latency,
                lost: p.conflicts,
                plans: r.plans,
                rebases: r.rebases,
            })
        })
        .collect()
}

/// The promoting job: `promote` in a loop until the writers are done.
struct PromoterReport {
    /// Promotes that moved something, in the order they returned.
    acks: Vec<Vec<PromotedSchema>>,
    runs: usize,
    lost: Vec<u64>,
    failures: Vec<Failure>,
}

fn promoter(url: &str, done: &AtomicBool) -> PromoterReport {
    let mut report = PromoterReport {
        acks: Vec::new(),
        runs: 0,
        lost: Vec::new(),
        failures: Vec::new(),
    };
    while !done.load(SeqCst) {
        report.runs += 1;
        let out = cli(url)
            .args(["--stats", "-o", "json", "promote", NS])
            .output()
            .unwrap();
        if !out.status.success() {
            report
                .failures
                .push(failure(format!("promote {}", report.runs), &out));
            continue;
        }
        let p: Promoted = serde_json::from_slice(&out.stdout).unwrap();
        let stats = stats_of(&out);
        if !p.promoted.is_empty() {
            assert_eq!(stats.protocol.commits, 1);
            report.lost.push(stats.protocol.conflicts);
            report.acks.push(p.promoted);
        }
    }
    report
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn mean_max(values: impl Iterator<Item = u64>) -> (f64, u64) {
    let v: Vec<u64> = values.collect();
    let mean = v.iter().sum::<u64>() as f64 / v.len().max(1) as f64;
    (mean, v.into_iter().max().unwrap_or(0))
}

async fn race(backend: Backend, pushes: usize) {
    let Some((url, _dir)) = fresh_url(backend).await else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let base = scratch.path().join("base-src");
    std::fs::create_dir_all(base.join("base")).unwrap();
    std::fs::write(base.join("base/base.proto"), BASE).unwrap();
    ok(
        cli(&url)
            .args(["namespace", "create", NS])
            .output()
            .unwrap(),
        "namespace create",
    );
    ok(
        cli(&url)
            .args(["push", NS, "base"])
            .arg(&base)
            .args(["--promote"])
            .output()
            .unwrap(),
        "push base",
    );
    let setup_seq = ObjStore::open(&url)
        .await
        .unwrap()
        .namespace_state(NS)
        .await
        .unwrap()
        .seq;

    let started = Instant::now();
    let (results, promoted) = {
        let (url, root) = (url.clone(), scratch.path().to_path_buf());
        tokio::task::spawn_blocking(move || {
            let done = AtomicBool::new(false);
            std::thread::scope(|s| {
                let writers: Vec<_> = (0..WRITERS)
                    .map(|id| {
                        let (url, root) = (&url, &root);
                        s.spawn(move || writer(url, root, id, pushes))
                    })
                    .collect();
                let promoting = s.spawn(|| promoter(&url, &done));
                let results: Vec<_> = writers
                    .into_iter()
                    .flat_map(|w| w.join().unwrap())
                    .collect();
                done.store(true, SeqCst);
                (results, promoting.join().unwrap())
            })
        })
        .await
        .unwrap()
    };
    let elapsed = started.elapsed();
    let mut acked: Vec<Push> = Vec::new();
    let mut failed: Vec<Failure> = Vec::new();
    for r in results {
        match r {
            Ok(p) => acked.push(p),
            Err(f) => failed.push(f),
        }
    }

    // The figures first, so a failing run still shows them.
    let mut latencies: Vec<Duration> = acked.iter().map(|p| p.latency).collect();
    latencies.sort();
    let (lost_mean, lost_max) = mean_max(acked.iter().map(|p| p.lost));
    let recompiles = |shared: bool| -> u64 {
        acked
            .iter()
            .filter(|p| p.shared == shared)
            .map(|p| p.plans - 1)
            .sum()
    };
    let rebases = |shared: bool| -> u64 {
        acked
            .iter()
            .filter(|p| p.shared == shared)
            .map(|p| p.rebases)
            .sum()
    };
    let (promote_mean, promote_max) = mean_max(promoted.lost.iter().copied());
    eprintln!(
        "contention on {backend:?}: {WRITERS} writer jobs ({} with a schema each, {SHARING} sharing one) x {pushes} pushes + 1 promoter, {:.1} s\n  \
         pushes: {} acknowledged, {} failed; races lost per commit: mean {lost_mean:.2}, max {lost_max}; \
         push latency p50 {}, p99 {}, max {}\n  \
         after a lost race: re-based {} (own schemas {}, shared {}), recompiled {} (own schemas {}, shared {})\n  \
         promoter: {} runs, {} promotes, {} failed; races lost per promote: mean {promote_mean:.2}, max {promote_max}",
        WRITERS - SHARING,
        elapsed.as_secs_f64(),
        acked.len(),
        failed.len(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap()),
        rebases(false) + rebases(true),
        rebases(false),
        rebases(true),
        recompiles(false) + recompiles(true),
        recompiles(false),
        recompiles(true),
        promoted.runs,
        promoted.acks.len(),
        promoted.failures.len(),
    );
    assert!(failed.is_empty(), "failed pushes:{}", list(&failed));
    assert!(
        promoted.failures.is_empty(),
        "failed promotes:{}",
        list(&promoted.failures)
    );
    // A writer alone on its schema is never invalidated by the others: the
    // winners touched other schemas, so a loser re-bases and never compiles
    // again.
    assert_eq!(recompiles(false), 0, "a push of its own schema recompiled");

    eprintln!(
        "  audit: {}",
        audit(&url, setup_seq, &acked, &promoted.acks).await
    );
}

/// Checks the store against every acknowledgement.
async fn audit(
    url: &str,
    setup_seq: u64,
    acked: &[Push],
    promotes: &[Vec<PromotedSchema>],
) -> String {
    let s = ObjStore::open(url).await.unwrap();
    // Versions: each number acknowledged once, holding its push's content.
    let mut versions = BTreeMap::new();
    for p in acked {
        let dup = versions.insert((p.schema.clone(), p.version), p.token.clone());
        assert!(
            dup.is_none(),
            "version {}/{} handed out twice",
            p.schema,
            p.version
        );
    }
    for ((schema, version), token) in &versions {
        let got = s.get_version(NS, schema, *version).await.unwrap();
        assert_eq!(
            &got.metadata["token"], token,
            "{schema}/{version} holds another push's content"
        );
    }
    // No version the log never staged was left behind (a retry reuses the
    // version its first attempt stored).
    let schemas: BTreeSet<&str> = acked.iter().map(|p| p.schema.as_str()).collect();
    for schema in &schemas {
        for v in s.list_versions(NS, schema).await.unwrap() {
            assert!(
                versions.contains_key(&(schema.to_string(), v)),
                "{schema}/{v}: stored, never acknowledged"
            );
        }
    }

    // Commits: the race's log holds exactly one stage per acknowledged push
    // and the promoter's promotes, in the order it got them.
    let state = s.namespace_state(NS).await.unwrap();
    let log = s.log_entries(NS, 1, state.seq).await.unwrap();
    let mut staged = BTreeSet::new();
    let mut logged_promotes = Vec::new();
    for entry in &log[setup_seq as usize..] {
        match &entry.operation {
            Operation::Stage { versions: v } => {
                for v in v {
                    let key = (v.schema_id.clone(), v.version.expect("a push stages"));
                    assert!(
                        versions.contains_key(&key),
                        "commit {} staged {key:?}, which no push acknowledged",
                        entry.seq
                    );
                    assert!(staged.insert(key.clone()), "{key:?} staged twice");
                }
            }
            Operation::Promote { promoted } => logged_promotes.push(promoted.clone()),
            other => panic!("commit {}: unexpected {other:?}", entry.seq),
        }
    }
    assert_eq!(
        staged.len(),
        versions.len(),
        "an acknowledged push is not in the log"
    );
    assert_eq!(
        logged_promotes, promotes,
        "the log's promotes differ from the acknowledged ones"
    );
    let replayed = replay(&log, &state);
    format!(
        "{} versions, {} commits ({} promotes, all-or-nothing), lost 0, duplicated 0",
        versions.len(),
        log.len() - setup_seq as usize,
        replayed - 1
    )
}

// Pushes per writer: the 16-process runs (320 operations on the
// local directory, 160 on LocalStack), well within a minute on 2 cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_writers_and_a_promoter_local() {
    race(Backend::Local, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_writers_and_a_promoter_s3() {
    race(Backend::S3, 10).await;
}

/// A schema of `n` messages: compiling it takes long enough (about a
/// second in a debug build) that a writer committing every few
/// milliseconds always wins before the push's attempt ends.
fn big_source(n: usize) -> String {
    let mut s = String::from("syntax = \"proto3\";\npackage hot;\n");
    for i in 0..n {
        s.push_str(&format!("message M{i} {{"));
        for j in 1..=10 {
            s.push_str(&format!(" string f{j} = {j};"));
        }
        s.push_str(" }\n");
    }
    s
}

/// Every attempt of a push loses: another writer keeps staging new versions
/// of the pushed schema, so each attempt finds the version its plan read
/// moved, must compile again (about a second), and the log moves on during
/// every compile. After `--commit-give-up` the push exits 3, says it is safe
/// to retry, and has committed nothing; run again alone, it lands.
async fn contended_push(backend: Backend) {
    let Some((url, _dir)) = fresh_url(backend).await else {
        return;
    };
    let ns = "busy";
    let registry = Registry::open(&url).await.unwrap();
    registry
        .create_namespace(ns, Default::default(), Default::default())
        .await
        .unwrap();
    let store = registry.store().clone();
    store
        .create_schema(&common::data::schema(ns, "hot"))
        .await
        .unwrap();
    let before = store.namespace_state(ns).await.unwrap().seq;

    // The competitor: stores and stages a new version of `hot`, again and
    // again, as fast as it can.
    let stop = Arc::new(AtomicBool::new(false));
    let moves = Arc::new(AtomicU64::new(0));
    let competitor = {
        let (stop, moves, store) = (stop.clone(), moves.clone(), store.clone());
        tokio::spawn(async move {
            while !stop.load(SeqCst) {
                let n = moves.load(SeqCst);
                let v = common::data::publish(&store, ns, "hot", &format!("c{n}")).await;
                store.set_staged(ns, "hot", v).await.unwrap();
                moves.fetch_add(1, SeqCst);
            }
        })
    };
    while moves.load(SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("hot")).unwrap();
    std::fs::write(src.path().join("hot/hot.proto"), big_source(2000)).unwrap();
    let push = |give_up: Option<&str>| {
        let mut c = cli(&url);
        if let Some(g) = give_up {
            c.args(["--commit-give-up", g]);
        }
        c.args(["--stats", "push", ns, "hot"]).arg(src.path());
        async move {
            tokio::task::spawn_blocking(move || c.output().unwrap())
                .await
                .unwrap()
        }
    };
    let started = Instant::now();
    let out = push(Some("3s")).await;
    let took = started.elapsed();
    stop.store(true, SeqCst);
    competitor.await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "contended push on {backend:?}: exit {:?} after {:.1} s, the competitor committed {} times\n{stderr}",
        out.status.code(),
        took.as_secs_f64(),
        moves.load(SeqCst)
    );
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("\"busy\" is too busy")
            && stderr.contains("nothing was committed, so it is safe to run the command again"),
        "{stderr}"
    );
    // Every attempt lost (how many fit in the bound depends on the
    // machine's speed; `--stats` still prints on failure).
    let line = stderr.lines().find(|l| l.starts_with("commits:")).unwrap();
    let lost: u64 = line
        .strip_prefix("commits: 0 landed, ")
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(lost >= 1, "{line}");

    // Nothing committed: every entry since is one of the competitor's.
    let state = store.namespace_state(ns).await.unwrap();
    let log = store.log_entries(ns, before + 1, state.seq).await.unwrap();
    assert_eq!(log.len() as u64, moves.load(SeqCst));
    let staged: BTreeSet<u64> = log
        .iter()
        .flat_map(|e| match &e.operation {
            Operation::Stage { versions } => versions
                .iter()
                .map(|v| v.version.unwrap())
                .collect::<Vec<_>>(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    for v in &staged {
        let m = store.get_version(ns, "hot", *v).await.unwrap();
        assert!(m.metadata.contains_key("token"), "v{v} is the competitor's");
    }

    // Run again, alone: it lands. What the failed run stored and never
    // staged is at most its one version (gc's to collect).
    let out = push(None).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: u64 = stdout
        .trim()
        .strip_prefix("busy/hot: staged version ")
        .unwrap_or_else(|| panic!("{stdout}"))
        .parse()
        .unwrap();
    assert_eq!(
        store
            .namespace_state(ns)
            .await
            .unwrap()
            .pointers("hot")
            .staged,
        Some(v)
    );
    let unstaged = store
        .list_versions(ns, "hot")
        .await
        .unwrap()
        .into_iter()
        .filter(|n| *n != v && !staged.contains(n))
        .count();
    assert!(unstaged <= 1, "{unstaged} versions never staged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contended_push_exits_3_local() {
    contended_push(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contended_push_exits_3_s3() {
    contended_push(Backend::S3).await;
}
