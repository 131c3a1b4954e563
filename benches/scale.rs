//! Scale curves (issue 6): the requests, time and bytes of one publish, one
//! promote, a cold namespace open and a warm mount seeing a change, in
//! namespaces of 10 → 10,000 schemas; and the requests of an idle mount
//! watching 1 and 100 namespaces. Prints Markdown tables on stdout.
//!
//!   cargo bench --bench scale -- --store BASE [--sizes 10,100,1000,10000]
//!       [--reps 8] [--idle 1,100] [--rounds 10]
//!
//! BASE is a directory, `memory://` or `s3://NAME`; every experiment uses a
//! new store under it, on S3 a new bucket `NAME-<experiment>-<id>`: LocalStack
//! LISTs scan the whole bucket, so sharing one would charge each experiment
//! for the objects of the ones before it. Run by `cargo test` (no
//! `--bench`), it is a quick smoke run of every experiment in memory. Requests are counted by the handle doing the work (the
//! same counters as `--stats`), time is wall time of that one operation.

use std::time::{Duration, Instant};

use protoshelf::ObjStore;
use protoshelf::compat::Policy;
use protoshelf::fs::{FsCore, Options};
use protoshelf::objstore::metrics::RequestCounts;
use protoshelf::registry::{Registry, SourceFile};
use tokio::runtime::Runtime;

mod common;
use common::small_schema;

const NS: &str = "bench";

struct Args {
    base: String,
    sizes: Vec<usize>,
    reps: usize,
    idle: Vec<usize>,
    rounds: usize,
    /// Where to write the numbers as JSON too (for scripts/bench_report.py).
    json: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        base: String::new(),
        sizes: vec![10, 100, 1000, 10_000],
        reps: 8,
        idle: vec![1, 100],
        rounds: 10,
        json: None,
    };
    let list = |v: String| -> Vec<usize> {
        v.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("a number"))
            .collect()
    };
    let mut bench = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--store" => a.base = value(),
            "--sizes" => a.sizes = list(value()),
            "--reps" => a.reps = value().parse().expect("a number"),
            "--idle" => a.idle = list(value()),
            "--rounds" => a.rounds = value().parse().expect("a number"),
            "--json" => a.json = Some(value()),
            "--bench" => bench = true, // cargo bench passes it; cargo test does not
            // libtest's output flags, which `cargo test -- --nocapture`
            // (scripts/test.sh -- --nocapture) hands to every target.
            "--nocapture" | "--show-output" | "--quiet" | "-q" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    if a.base.is_empty() {
        assert!(!bench, "--store BASE is required");
        a = Args {
            base: "memory://".into(),
            sizes: vec![10],
            reps: 2,
            idle: vec![2],
            rounds: 2,
            json: None,
        };
    }
    a
}

/// A new, empty store under the base.
fn store_url(rt: &Runtime, base: &str, name: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let id = &id[..8];
    if base.starts_with("memory://") {
        format!("memory://{name}-{id}")
    } else if let Some(prefix) = base.strip_prefix("s3://") {
        let url = format!("s3://{}-{name}-{id}", prefix.trim_end_matches('/'));
        rt.block_on(protoshelf::objstore::admin::create_bucket(&url))
            .expect("create the bucket");
        url
    } else {
        format!("{}/{name}-{id}", base.trim_end_matches('/'))
    }
}

/// The cost of one operation, as seen by the handle that ran it.
#[derive(Clone, Copy)]
struct Cost {
    requests: RequestCounts,
    bytes: u64,
    time: Duration,
}

fn measure<T>(store: &ObjStore, f: impl FnOnce() -> T) -> (T, Cost) {
    let (r0, b0, t0) = (store.requests(), store.bytes_written(), Instant::now());
    let out = f();
    let cost = Cost {
        time: t0.elapsed(),
        requests: store.requests() - r0,
        bytes: store.bytes_written() - b0,
    };
    (out, cost)
}

/// Schema `name`: a small file importing one file of the namespace.
fn app(name: &str, import: usize) -> Vec<SourceFile> {
    vec![SourceFile::new(
        format!("{name}/app.proto"),
        format!(
            "syntax = \"proto3\";\npackage {name};\nimport \"s{import}/s{import}.proto\";\nmessage App {{ p{import}.M{import} m = 1; }}\n"
        ),
    )]
}

/// Median, and max/min ratio, of a series.
struct Series(Vec<f64>);

impl Series {
    fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    }
    fn range(&self) -> (f64, f64) {
        let min = self.0.iter().cloned().fold(f64::MAX, f64::min);
        let max = self.0.iter().cloned().fold(0.0, f64::max);
        (min, max)
    }
}

/// One operation's costs over the repetitions of one namespace size.
#[derive(Default)]
struct Samples(Vec<Cost>);

impl Samples {
    fn ms(&self) -> Series {
        Series(self.0.iter().map(|c| c.time.as_secs_f64() * 1e3).collect())
    }
    fn requests(&self) -> Series {
        Series(self.0.iter().map(|c| c.requests.total() as f64).collect())
    }
    fn bytes(&self) -> Series {
        Series(self.0.iter().map(|c| c.bytes as f64).collect())
    }
    /// The request mix of the median-cost sample, e.g. `GET 2 LIST 3 PUT 6`.
    fn mix(&self) -> String {
        let mut v = self.0.clone();
        v.sort_by_key(|c| c.requests.total());
        let r = v[v.len() / 2].requests;
        [
            ("GET", r.get),
            ("HEAD", r.head),
            ("LIST", r.list),
            ("PUT", r.put),
            ("DEL", r.delete),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(" ")
    }
}

struct SizeResult {
    size: usize,
    setup: Duration,
    /// A new schema importing a file this handle has read before.
    publish: Samples,
    /// The same, importing a file this handle has never read.
    publish_unseen: Samples,
    promote: Samples,
    cold_open: Samples,
    mount_sees: Samples,
    /// Milliseconds of one LIST of an empty prefix on the raw backend: what
    /// the storage itself charges for a LIST at this namespace size.
    empty_list_ms: Series,
}

fn run_size(rt: &Runtime, base: &str, size: usize, reps: usize) -> SizeResult {
    let url = store_url(rt, base, &format!("scale-{size}"));
    let t0 = Instant::now();
    let builder = Registry::new(rt.block_on(ObjStore::open(&url)).expect("open store"));
    rt.block_on(async {
        builder
            .create_namespace(NS, Policy::Strict, Default::default())
            .await?;
        builder
            .publish_many(
                NS,
                (0..size).map(small_schema).collect(),
                Default::default(),
            )
            .await?;
        builder.promote(NS, false).await
    })
    .expect("build the namespace");
    let setup = t0.elapsed();
    let empty_list_ms = rt.block_on(empty_list_ms(&url));

    // The publisher and the mount are handles of their own, warmed by one
    // namespace read: what a long-lived publisher or mount holds.
    let publisher = Registry::new(rt.block_on(ObjStore::open(&url)).unwrap());
    rt.block_on(publisher.store().namespace_state(NS)).unwrap();
    let mount_store = rt.block_on(ObjStore::open(&url)).unwrap();
    let core = FsCore::new(
        mount_store.clone(),
        rt.handle().clone(),
        Options {
            namespaces: vec![NS.into()],
            refresh: Duration::from_secs(1),
        },
    );
    core.list(&format!("{NS}/current"))
        .expect("mount lists current");

    let mut r = SizeResult {
        size,
        setup,
        publish: Samples::default(),
        publish_unseen: Samples::default(),
        promote: Samples::default(),
        cold_open: Samples::default(),
        mount_sees: Samples::default(),
        empty_list_ms,
    };
    // One more rep than asked: the first warms the process up and is dropped.
    for i in 0..=reps {
        // A different import each rep: the first publish reads it, the
        // second imports it again from the publisher's cache.
        let import = (i * 7919 + 3) % size;
        for (name, samples) in [
            (format!("app{i}"), &mut r.publish_unseen),
            (format!("app{i}b"), &mut r.publish),
        ] {
            let (res, cost) = measure(publisher.store(), || {
                rt.block_on(publisher.publish(NS, &name, app(&name, import), Default::default()))
            });
            res.expect("publish");
            samples.0.push(cost);
            let (res, cost) = measure(publisher.store(), || {
                rt.block_on(publisher.promote(NS, false))
            });
            res.expect("promote");
            r.promote.0.push(cost);
        }

        let path = format!("{NS}/current/app{i}/app.proto");
        let (res, cost) = measure(&mount_store, || {
            core.refresh();
            core.content(&path)
        });
        let text = res.unwrap_or_else(|e| panic!("the mount does not show {path}: {e:?}"));
        assert!(String::from_utf8_lossy(&text).contains(&format!("package app{i};")));
        r.mount_sees.0.push(cost);

        let cold = rt.block_on(ObjStore::open(&url)).unwrap();
        let (res, cost) = measure(&cold, || rt.block_on(cold.namespace_state(NS)));
        res.expect("cold open");
        r.cold_open.0.push(cost);
        if i == 0 {
            for samples in [
                &mut r.publish,
                &mut r.publish_unseen,
                &mut r.promote,
                &mut r.cold_open,
                &mut r.mount_sees,
            ] {
                samples.0.clear();
            }
        }
    }
    r
}

/// Median time of a LIST that finds nothing, on the raw backend (no
/// protoshelf code): LocalStack scans the whole bucket, real S3 does not.
async fn empty_list_ms(url: &str) -> Series {
    use futures::TryStreamExt;
    let raw = protoshelf::objstore::url::open(url)
        .expect("raw backend")
        .store;
    let prefix = object_store::path::Path::from("ns/bench/claims/dir/nothing-here");
    let mut times = Vec::new();
    for _ in 0..8 {
        let t0 = Instant::now();
        let found: Vec<_> = raw.list(Some(&prefix)).try_collect().await.expect("LIST");
        assert!(found.is_empty());
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Series(times)
}

/// Requests per refresh round of a mount that has loaded `count` namespaces
/// and sees no change.
fn run_idle(rt: &Runtime, base: &str, count: usize, rounds: usize) -> (f64, RequestCounts) {
    let url = store_url(rt, base, &format!("idle-{count}"));
    let reg = Registry::new(rt.block_on(ObjStore::open(&url)).unwrap());
    let names: Vec<String> = (0..count).map(|i| format!("n{i}")).collect();
    rt.block_on(async {
        for ns in &names {
            reg.create_namespace(ns, Policy::Strict, Default::default())
                .await?;
            reg.publish_many(ns, vec![small_schema(0)], Default::default())
                .await?;
            reg.promote(ns, false).await?;
        }
        Ok::<_, protoshelf::Error>(())
    })
    .expect("build namespaces");
    let store = rt.block_on(ObjStore::open(&url)).unwrap();
    let core = FsCore::new(
        store.clone(),
        rt.handle().clone(),
        Options {
            namespaces: Vec::new(),
            refresh: Duration::from_secs(1),
        },
    );
    for ns in &names {
        core.content(&format!("{ns}/current/s0/s0.proto"))
            .expect("mount reads a file");
    }
    core.refresh(); // settle: the first round may still fill caches
    let before = store.requests();
    for _ in 0..rounds {
        core.refresh();
    }
    let r = store.requests() - before;
    (r.total() as f64 / rounds as f64, r)
}

fn fmt_ms(s: &Series) -> String {
    format!("{:.1}", s.median())
}

fn fmt_range(s: &Series) -> String {
    let (lo, hi) = s.range();
    if lo == hi {
        format!("{lo:.0}")
    } else {
        format!("{lo:.0}–{hi:.0}")
    }
}

fn main() {
    let args = parse_args();
    // RUST_LOG=protoshelf::requests=debug shows every request, timestamped.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let rt = Runtime::new().unwrap();
    let mut results = Vec::new();
    for &size in &args.sizes {
        eprintln!("scale: {size} schemas ...");
        results.push(run_size(&rt, &args.base, size, args.reps));
    }
    let mut summary = serde_json::json!({ "sizes": [], "idle": [] });
    for r in &results {
        summary["sizes"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "size": r.size,
                "publish_requests_max": r.publish.requests().range().1,
                "publish_unseen_requests_max": r.publish_unseen.requests().range().1,
                "promote_requests_max": r.promote.requests().range().1,
                "publish_ms": r.publish.ms().median(),
                "promote_ms": r.promote.ms().median(),
                "promote_bytes_max": r.promote.bytes().range().1,
            }));
    }
    if let Some(first) = results.first() {
        println!(
            "| schemas | build (s) | publish: requests | publish: mix | publish ms | × smallest | publish, unseen import: requests | mix | promote: requests | promote ms | × smallest | bytes per promote commit | cold open: requests | cold open ms | mount sees change: requests | ms | backend: empty LIST ms |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let (p0, q0) = (first.publish.ms().median(), first.promote.ms().median());
        for r in &results {
            println!(
                "| {} | {:.1} | {} | {} | {} | {:.2} | {} | {} | {} | {} | {:.2} | {} | {} | {} | {} | {} | {} |",
                r.size,
                r.setup.as_secs_f64(),
                fmt_range(&r.publish.requests()),
                r.publish.mix(),
                fmt_ms(&r.publish.ms()),
                r.publish.ms().median() / p0,
                fmt_range(&r.publish_unseen.requests()),
                r.publish_unseen.mix(),
                fmt_range(&r.promote.requests()),
                fmt_ms(&r.promote.ms()),
                r.promote.ms().median() / q0,
                fmt_range(&r.promote.bytes()),
                fmt_range(&r.cold_open.requests()),
                fmt_ms(&r.cold_open.ms()),
                fmt_range(&r.mount_sees.requests()),
                fmt_ms(&r.mount_sees.ms()),
                fmt_ms(&r.empty_list_ms),
            );
        }
        println!();
        println!(
            "Medians of {} repetitions; requests as min–max. Publish: a new one-file schema importing a file of another schema, from a warm handle that has read that file before (e.g. a long-lived publisher); unseen import: the same with a file it never read (2 more GETs: the import's manifest and source). Bytes per promote commit: the log entry plus the head hint when written. Backend empty LIST: one LIST finding nothing, timed on the raw backend without protoshelf (on LocalStack it grows with the objects in the bucket).",
            args.reps
        );
        println!();
    }
    if !args.idle.is_empty() {
        println!(
            "| namespaces watched | requests per refresh round | per namespace | mix over {} rounds | per minute at --refresh 1s |",
            args.rounds
        );
        println!("|---|---|---|---|---|");
        for &count in &args.idle {
            eprintln!("idle: {count} namespaces ...");
            let (per_round, r) = run_idle(&rt, &args.base, count, args.rounds);
            summary["idle"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({
                    "namespaces": count,
                    "per_namespace_per_round": per_round / count as f64,
                }));
            println!(
                "| {count} | {per_round:.1} | {:.2} | {r} | {:.0} |",
                per_round / count as f64,
                per_round * 60.0
            );
        }
        println!();
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&summary).unwrap())
            .expect("write --json");
    }
}
