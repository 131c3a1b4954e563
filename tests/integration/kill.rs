//! Real `kill -9` of the CLI: `push`, `load` (a tree of several schemas,
//! new and changed), `promote` and `rollback --force --promote`, killed
//! after a random delay within a clean run's duration, on the local
//! directory and on S3 (LocalStack). After each kill, in a new process:
//! `verify` finds no damage, the state is the one before, after, or the
//! documented intermediate, every listed schema has versions, every read
//! works; then the same command runs again to exit 0 and the state a clean
//! run gives. Trials per operation: `PROTOSHELF_KILL_TRIALS` (default 6 on
//! the local directory, 3 on S3). Printed as `KILL-TRIALS ...` lines.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use protoshelf::registry::{Registry, SourceFile};

use common::Backend;
use common::state::{Outcome, copy_all, outcome, readers_work, unnamed_records};

const NS: &str = "shop";

const MONEY_V1: &str =
    "syntax = \"proto3\";\npackage common;\nmessage Money { int64 cents = 1; }\n";
const ORDER_V1: &str = "syntax = \"proto3\";\npackage shop;\nimport \"common/money.proto\";\nmessage Order { string id = 1; common.Money total = 2; }\n";
const ORDER_V2: &str = "syntax = \"proto3\";\npackage shop;\nimport \"common/money.proto\";\nmessage Order { string id = 1; common.Money total = 2; string note = 3; }\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Push,
    Load,
    Promote,
    Rollback,
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The inputs: one changed file for push, and a tree for load (one schema
/// per directory, as `load` groups them: two changed, four new,
/// importing each other).
fn inputs(dir: &Path) {
    write(dir, "push/shop/order.proto", ORDER_V2);
    let tree = dir.join("tree");
    write(
        &tree,
        "common/money.proto",
        "syntax = \"proto3\";\npackage common;\nmessage Money { int64 cents = 1; string currency = 2; }\n",
    );
    write(&tree, "shop/order.proto", ORDER_V2);
    for (i, name) in ["pay", "ship", "stock", "tax"].iter().enumerate() {
        write(
            &tree,
            &format!("{name}/{name}.proto"),
            &format!(
                "syntax = \"proto3\";\npackage {name};\nimport \"common/money.proto\";\nimport \"shop/order.proto\";\nmessage M{i} {{ shop.Order order = 1; common.Money m = 2; }}\n"
            ),
        );
    }
}

fn args(op: Op, dir: &Path) -> Vec<String> {
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect();
    match op {
        Op::Push => s(&["push", NS, "shop", &dir.join("push").display().to_string()]),
        Op::Load => s(&["load", NS, &dir.join("tree").display().to_string()]),
        Op::Promote => s(&["promote", NS]),
        Op::Rollback => s(&["rollback", NS, "shop", "1", "--force", "--promote"]),
    }
}

fn cli(url: &str, args: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_protoshelf"));
    c.args(args)
        .env("PROTOSHELF_STORE", url)
        .env_remove("PROTOSHELF_NAMESPACE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

async fn base(r: &Registry, op: Op) {
    let f = |p: &str, t: &str| vec![SourceFile::new(p, t)];
    r.create_namespace(NS, Default::default(), Default::default())
        .await
        .unwrap();
    r.publish(
        NS,
        "common",
        f("common/money.proto", MONEY_V1),
        Default::default(),
    )
    .await
    .unwrap();
    r.publish(
        NS,
        "shop",
        f("shop/order.proto", ORDER_V1),
        Default::default(),
    )
    .await
    .unwrap();
    r.promote(NS, false).await.unwrap();
    match op {
        Op::Promote | Op::Rollback => {
            r.publish(
                NS,
                "shop",
                f("shop/order.proto", ORDER_V2),
                Default::default(),
            )
            .await
            .unwrap();
            if op == Op::Rollback {
                r.promote(NS, false).await.unwrap();
            }
        }
        _ => {}
    }
}

async fn copy_of(
    backend: Backend,
    from: &str,
) -> (String, Option<std::sync::Arc<tempfile::TempDir>>) {
    let (url, dir) = common::fresh_url(backend).await.unwrap();
    let src = protoshelf::objstore::url::open(from).unwrap().store;
    let dst = protoshelf::objstore::url::open(&url).unwrap().store;
    copy_all(&src, &dst).await;
    (url, dir)
}

async fn trials(backend: Backend, op: Op, n: usize) {
    let Some((template, _tdir)) = common::fresh_url(backend).await else {
        return;
    };
    base(&Registry::open(&template).await.unwrap(), op).await;
    let scratch = tempfile::tempdir().unwrap();
    inputs(scratch.path());
    let argv = args(op, scratch.path());
    let before = outcome(&Registry::open(&template).await.unwrap()).await;

    // Clean runs: the state after, and how long a run takes (the faster
    // of two: the first may pay for warming caches).
    let mut took = Duration::MAX;
    let mut after = None;
    for _ in 0..2 {
        let (clean, _d) = copy_of(backend, &template).await;
        let started = Instant::now();
        let run = cli(&clean, &argv).output().unwrap();
        took = took.min(started.elapsed());
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        after = Some(outcome(&Registry::open(&clean).await.unwrap()).await);
    }
    let after = after.unwrap();
    let between: Option<Outcome> = if op == Op::Rollback {
        let (mid, _d) = copy_of(backend, &template).await;
        let a: Vec<String> = argv.iter().filter(|a| *a != "--promote").cloned().collect();
        assert!(cli(&mid, &a).status().unwrap().success());
        Some(outcome(&Registry::open(&mid).await.unwrap()).await)
    } else {
        None
    };

    let (mut killed, mut unnamed, mut failures) = (0, 0, Vec::new());
    for trial in 0..n {
        let (url, _d) = copy_of(backend, &template).await;
        // Spread the kills over a run: from the process start (no request
        // yet) to its end.
        let delay = took.mul_f64(rand::random::<f64>());
        let mut child = cli(&url, &argv).spawn().unwrap();
        std::thread::sleep(delay);
        let was_running = child.try_wait().unwrap().is_none();
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        if was_running {
            killed += 1;
        } else {
            assert!(status.success(), "trial {trial}: the run failed on its own");
        }
        let r = Registry::open(&url).await.unwrap();
        let mut fail = |what: String| failures.push(format!("trial {trial} ({delay:?}): {what}"));
        let report = r.store().verify(None).await.unwrap();
        if !report.clean() {
            fail(format!("verify: {:?}", report.problems));
        }
        let seen = outcome(&r).await;
        if seen != before && seen != after && Some(&seen) != between.as_ref() {
            fail(format!("half state: {seen:?}"));
        }
        if let Err(e) = readers_work(&r, &url).await {
            fail(format!("read after the kill: {e}"));
        }
        unnamed += usize::from(unnamed_records(&r).await > 0);
        let again = cli(&url, &argv).output().unwrap();
        if !again.status.success() {
            fail(format!("rerun: {}", String::from_utf8_lossy(&again.stderr)));
        }
        let converged = outcome(&Registry::open(&url).await.unwrap()).await;
        if converged != after {
            fail(format!("rerun left {converged:?}"));
        }
    }
    eprintln!(
        "KILL-TRIALS {backend:?} {op:?}: {n} trials, {killed} killed mid-run, {} failed; {unnamed} left an unnamed schema record (hidden); a clean run took {took:?}",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn count(backend: Backend) -> usize {
    std::env::var("PROTOSHELF_KILL_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if backend == Backend::S3 { 3 } else { 6 })
}

macro_rules! kill_trials {
    ($($name:ident: $op:expr),* $(,)?) => {
        mod local { $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() {
            super::trials(super::Backend::Local, $op, super::count(super::Backend::Local)).await
        } )* }
        mod s3 { $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() {
            super::trials(super::Backend::S3, $op, super::count(super::Backend::S3)).await
        } )* }
    };
}

kill_trials! {
    push: super::Op::Push,
    load: super::Op::Load,
    promote: super::Op::Promote,
    rollback: super::Op::Rollback,
}
