//! No half state at any crash point: each registry operation the CLI runs
//! (`push`, `load` of a multi-schema batch, `promote`, `rollback --promote`,
//! `discard`, `namespace create --policy`; `rollback --force --promote`) is driven over EVERY request
//! number k, on memory and on a local directory, in two ways:
//!
//! - *stop*: every request after the k-th fails and the operation is
//!   dropped, as if the process died there;
//! - *lost response*: the k-th request takes effect, then reports an error.
//!
//! After each trial, on a fresh handle (a new process): `verify` finds no
//! damage; the state is the one before, the one after, or a documented
//! intermediate (never a partial commit); every listed schema has a staged
//! or current version and every version shown was staged; reads, the
//! mount core and a new publish work; and running the operation again
//! converges to the state a clean run produces. The matrix is printed
//! (`cargo test --test crash -- --nocapture`).

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::ObjectStore;
use protoshelf::compat::Policy;
use protoshelf::objstore::faults::FaultyStore;
use protoshelf::objstore::url;
use protoshelf::registry::{BatchMember, Registry, SourceFile};
use protoshelf::{ObjStore, Result};

use common::Backend;
use common::state::{Outcome, copy_all, outcome, readers_work, unnamed_records};

const NS: &str = "shop";

fn file(path: &str, text: &str) -> SourceFile {
    SourceFile::new(path, text)
}

const MONEY_V1: &str =
    "syntax = \"proto3\";\npackage common;\nmessage Money { int64 cents = 1; }\n";
const MONEY_V2: &str = "syntax = \"proto3\";\npackage common;\nmessage Money { int64 cents = 1; string currency = 2; }\n";
const ORDER_V1: &str = "syntax = \"proto3\";\npackage shop;\nimport \"common/money.proto\";\nmessage Order { string id = 1; common.Money total = 2; }\n";
const ORDER_V2: &str = "syntax = \"proto3\";\npackage shop;\nimport \"common/money.proto\";\nmessage Order { string id = 1; common.Money total = 2; string note = 3; }\n";
const PAYMENT: &str = "syntax = \"proto3\";\npackage shop.pay;\nimport \"common/money.proto\";\nmessage Payment { string order_id = 1; common.Money amount = 2; }\n";
const SHIPPING: &str = "syntax = \"proto3\";\npackage shop.ship;\nmessage Parcel { string id = 1; int32 grams = 2; }\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Push,
    Load,
    Promote,
    Rollback,
    Discard,
    NamespaceCreate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Stop,
    LostResponse,
}

async fn base(r: &Registry, op: Op) {
    if op == Op::NamespaceCreate {
        return;
    }
    r.create_namespace(NS, Policy::default(), Default::default())
        .await
        .unwrap();
    r.publish(
        NS,
        "common",
        vec![file("common/money.proto", MONEY_V1)],
        Default::default(),
    )
    .await
    .unwrap();
    r.publish(
        NS,
        "orders",
        vec![file("shop/order.proto", ORDER_V1)],
        Default::default(),
    )
    .await
    .unwrap();
    r.promote(NS, false).await.unwrap();
    match op {
        Op::Promote | Op::Discard => {
            r.publish_many(
                NS,
                vec![
                    member("orders", "shop/order.proto", ORDER_V2),
                    member("payments", "shop/pay/payment.proto", PAYMENT),
                ],
                Default::default(),
            )
            .await
            .unwrap();
        }
        Op::Rollback => {
            r.publish(
                NS,
                "orders",
                vec![file("shop/order.proto", ORDER_V2)],
                Default::default(),
            )
            .await
            .unwrap();
            r.promote(NS, false).await.unwrap();
        }
        _ => {}
    }
}

fn member(schema: &str, path: &str, text: &str) -> BatchMember {
    BatchMember {
        schema_id: schema.into(),
        files: vec![file(path, text)],
    }
}

async fn run(r: &Registry, op: Op) -> Result<()> {
    match op {
        Op::Push => r
            .publish(
                NS,
                "orders",
                vec![file("shop/order.proto", ORDER_V2)],
                Default::default(),
            )
            .await
            .map(|_| ()),
        Op::Load => r
            .publish_many(
                NS,
                vec![
                    member("common", "common/money.proto", MONEY_V2),
                    member("orders", "shop/order.proto", ORDER_V2),
                    member("payments", "shop/pay/payment.proto", PAYMENT),
                    member("shipping", "shop/ship/parcel.proto", SHIPPING),
                ],
                Default::default(),
            )
            .await
            .map(|_| ()),
        Op::Promote => r.promote(NS, false).await.map(|_| ()),
        Op::Rollback => r.rollback(NS, "orders", 1, true, true).await.map(|_| ()),
        Op::Discard => r.discard(NS).await.map(|_| ()),
        Op::NamespaceCreate => {
            let meta = BTreeMap::from([("team".to_string(), "core".to_string())]);
            r.create_namespace("team", Policy::Wire, meta).await
        }
    }
}

/// What a documented intermediate looks like: the first of the operation's
/// two writes done (`None` for one-commit operations).
async fn intermediate(r: &Registry, op: Op) -> Option<()> {
    match op {
        Op::Rollback => {
            r.rollback(NS, "orders", 1, true, false).await.unwrap();
        }
        Op::NamespaceCreate => {
            let meta = BTreeMap::from([("team".to_string(), "core".to_string())]);
            r.create_namespace("team", Policy::default(), meta)
                .await
                .unwrap();
        }
        _ => return None,
    }
    Some(())
}

struct Template {
    raw: Arc<dyn ObjectStore>,
    _dir: Option<Arc<tempfile::TempDir>>,
    before: Outcome,
    after: Outcome,
    between: Option<Outcome>,
    requests: u64,
}

async fn fresh_copy(
    backend: Backend,
    from: &Arc<dyn ObjectStore>,
) -> (String, Arc<dyn ObjectStore>, Option<Arc<tempfile::TempDir>>) {
    let (url, dir) = common::fresh_url(backend).await.unwrap();
    let raw = url::open(&url).unwrap().store;
    copy_all(from, &raw).await;
    (url, raw, dir)
}

async fn faulty(url: &str) -> (Registry, FaultyStore) {
    let backend = url::open(url).unwrap();
    let faults = FaultyStore::new(backend.store.clone());
    let store = ObjStore::from_backend(protoshelf::objstore::Backend {
        store: Arc::new(faults.clone()),
        ..backend
    })
    .await
    .unwrap();
    (Registry::new(store), faults)
}

async fn template(backend: Backend, op: Op) -> Template {
    let (url, dir) = common::fresh_url(backend).await.unwrap();
    let r = Registry::open(&url).await.unwrap();
    base(&r, op).await;
    let raw = url::open(&url).unwrap().store;
    let before = outcome(&Registry::open(&url).await.unwrap()).await;
    // A clean run, counted: its request count is the number of crash points.
    let (copy, _, _d1) = fresh_copy(backend, &raw).await;
    let (r, faults) = faulty(&copy).await;
    let start = faults.requests();
    run(&r, op).await.unwrap();
    let requests = faults.requests() - start;
    let after = outcome(&Registry::open(&copy).await.unwrap()).await;
    let (copy, _, _d2) = fresh_copy(backend, &raw).await;
    let between = match intermediate(&Registry::open(&copy).await.unwrap(), op).await {
        Some(()) => Some(outcome(&Registry::open(&copy).await.unwrap()).await),
        None => None,
    };
    Template {
        raw,
        _dir: dir,
        before,
        after,
        between,
        requests,
    }
}

/// What one trial found wrong (empty: nothing).
#[derive(Default)]
struct Trial {
    failures: Vec<String>,
    /// Schema records no commit names, which the raw listing (the CLI's
    /// `schema list` before this fix) showed as schemas without versions.
    unnamed_records: usize,
    /// Manifests no commit names right after the crash (before this fix,
    /// `schema info` listed them and "the latest manifest" was one).
    unstaged_after_crash: usize,
    /// Manifests no commit names, left after the rerun.
    unstaged_after_rerun: usize,
}

async fn trial(backend: Backend, op: Op, t: &Template, mode: Mode, k: u64) -> Trial {
    let mut out = Trial::default();
    let (url, raw, _dir) = fresh_copy(backend, &t.raw).await;
    let (r, faults) = faulty(&url).await;
    match mode {
        Mode::Stop => faults.stop_after(k),
        Mode::LostResponse => faults.error_after(k),
    }
    let result = tokio::select! {
        r = run(&r, op) => Some(r),
        _ = faults.stopped() => None,
    };
    drop(r);
    let fail = |out: &mut Trial, what: String| out.failures.push(format!("k={k}: {what}"));

    // A new process looks at what is left.
    let r = Registry::open(&url).await.unwrap();
    let store = r.store().clone();
    let report = store.verify(None).await.unwrap();
    if !report.clean() {
        fail(&mut out, format!("verify: {:?}", report.problems));
    }
    out.unstaged_after_crash = report.unstaged_versions.len();
    let seen = outcome(&r).await;
    let allowed = seen == t.before || seen == t.after || Some(&seen) == t.between.as_ref();
    if !allowed {
        fail(&mut out, format!("half state visible: {seen:?}"));
    }
    if matches!(result, Some(Ok(()))) && seen != t.after {
        fail(
            &mut out,
            format!("reported success, but the state is {seen:?}"),
        );
    }
    if let Err(e) = readers_work(&r, &url).await {
        fail(&mut out, format!("a read failed after the crash: {e}"));
    }
    out.unnamed_records = unnamed_records(&r).await;

    // Running it again converges.
    let again = Registry::open(&url).await.unwrap();
    match run(&again, op).await {
        Ok(()) => {}
        // Creating again what the first run created in full is refused.
        Err(protoshelf::Error::AlreadyExists(_))
            if op == Op::NamespaceCreate && seen == t.after => {}
        Err(e) => fail(&mut out, format!("rerun failed: {e}")),
    }
    let converged = outcome(&Registry::open(&url).await.unwrap()).await;
    if converged != t.after {
        fail(&mut out, format!("rerun left {converged:?}"));
    }
    let report = Registry::open(&url)
        .await
        .unwrap()
        .store()
        .verify(None)
        .await
        .unwrap();
    if !report.clean() {
        fail(
            &mut out,
            format!("verify after the rerun: {:?}", report.problems),
        );
    }
    out.unstaged_after_rerun = report.unstaged_versions.len();
    // And the store takes new work.
    let ns = if op == Op::NamespaceCreate {
        "team"
    } else {
        NS
    };
    let extra = vec![file(
        "extra/extra.proto",
        "syntax = \"proto3\";\npackage extra;\nmessage E { int32 x = 1; }\n",
    )];
    if let Err(e) = again.publish(ns, "extra", extra, Default::default()).await {
        fail(&mut out, format!("a new publish failed: {e}"));
    } else if let Err(e) = again.promote(ns, false).await {
        fail(&mut out, format!("a promote failed: {e}"));
    }
    drop(raw);
    out
}

async fn matrix(backend: Backend, op: Op) {
    let t = template(backend, op).await;
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    for mode in [Mode::Stop, Mode::LostResponse] {
        let points: Vec<u64> = match mode {
            Mode::Stop => (0..t.requests).collect(),
            Mode::LostResponse => (1..=t.requests).collect(),
        };
        let (mut failed, mut unnamed, mut orphaned, mut unstaged) = (0, 0, 0, 0);
        for &k in &points {
            let trial = trial(backend, op, &t, mode, k).await;
            if !trial.failures.is_empty() {
                failed += 1;
                failures.extend(trial.failures.iter().map(|f| format!("{mode:?} {f}")));
            }
            unnamed += usize::from(trial.unnamed_records > 0);
            orphaned += usize::from(trial.unstaged_after_crash > 0);
            unstaged += usize::from(trial.unstaged_after_rerun > 0);
        }
        lines.push(format!(
            "CRASH-MATRIX {backend:?} {op:?} {mode:?}: {} crash points, {failed} failed; {unnamed} left an unnamed schema record, {orphaned} an unstaged version (both hidden); {unstaged} left an unstaged version after the rerun (gc's)",
            points.len()
        ));
    }
    for l in &lines {
        eprintln!("{l}");
    }
    assert!(t.requests > 0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

macro_rules! crash_matrix {
    ($($name:ident: $op:expr),* $(,)?) => {
        mod memory { $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() {
            super::matrix(super::Backend::Memory, $op).await
        } )* }
        mod local { $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() {
            super::matrix(super::Backend::Local, $op).await
        } )* }
    };
}

crash_matrix! {
    push: super::Op::Push,
    load: super::Op::Load,
    promote: super::Op::Promote,
    rollback: super::Op::Rollback,
    discard: super::Op::Discard,
    namespace_create: super::Op::NamespaceCreate,
}
