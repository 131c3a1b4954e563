//! Property test: random sequences of publish / promote / discard /
//! rollback / delete / undelete / set-parent / set-compat-scope / rebase
//! against a small reference model of the registry (strict policy), on
//! memory and the local directory, and a shorter run on S3. The parent
//! namespace, `top`, defines schema `a`'s file and names: while it is
//! `ns`'s parent, a new version of `a` (and restoring a current one) is
//! refused as a duplicate. `ns`'s schemas import nothing from `top`, so a
//! rebase never has a pin to move.

use crate::common;

use common::Backend;
use proptest::prelude::*;
use protoshelf::Error;
use protoshelf::compat::Policy;
use protoshelf::registry::{CompatScope, Registry, SourceFile};

const SCHEMAS: [&str; 2] = ["a", "b"];
const CONTENTS: u8 = 4;

#[derive(Debug, Clone)]
enum Op {
    /// Publish content `k` (fields 1..=k+1): a higher k only adds fields.
    Publish(usize, u8),
    Promote,
    Discard,
    /// Roll back to the n-th stored version (may not exist), forced or not.
    Rollback(usize, u64, bool),
    /// Soft-delete a schema, or restore it.
    Delete(usize),
    Undelete(usize),
    /// Set `ns`'s parent to `top` (true) or clear it.
    SetParent(bool),
    /// Set `ns`'s compatibility scope to `all` (true) or `latest`.
    SetScope(bool),
    /// Rebase `ns` onto its ancestors' current versions.
    Rebase,
}

/// Sequences of a scope and up to `chunks` steps, a step being one op or a publish
/// or rollback followed by a promote: pairs make checked promotes common,
/// and a promoted rollback followed by a publish is what lets scope `all`
/// refuse what `latest` accepts (a current version below the best ever).
fn ops(chunks: usize) -> impl Strategy<Value = Vec<Op>> {
    let publish = (0..SCHEMAS.len(), 0..CONTENTS).prop_map(|(s, k)| Op::Publish(s, k));
    let rollback =
        (0..SCHEMAS.len(), 1..4u64, any::<bool>()).prop_map(|(s, v, f)| Op::Rollback(s, v, f));
    let step = prop_oneof![
        3 => op().prop_map(|o| vec![o]),
        2 => publish.prop_map(|o| vec![o, Op::Promote]),
        1 => rollback.prop_map(|o| vec![o, Op::Promote]),
    ];
    // Half the sequences start under scope `all`, so both scopes see long runs.
    (any::<bool>(), prop::collection::vec(step, 1..chunks))
        .prop_map(|(all, v)| [vec![Op::SetScope(all)], v.concat()].concat())
}

/// The parent namespace and the file it defines (`a`'s path and names).
const TOP: &str = "top";

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..SCHEMAS.len(), 0..CONTENTS).prop_map(|(s, k)| Op::Publish(s, k)),
        4 => Just(Op::Promote),
        1 => Just(Op::Discard),
        3 => (0..SCHEMAS.len(), 1..4u64, any::<bool>()).prop_map(|(s, v, f)| Op::Rollback(s, v, f)),
        1 => (0..SCHEMAS.len()).prop_map(Op::Delete),
        1 => (0..SCHEMAS.len()).prop_map(Op::Undelete),
        1 => any::<bool>().prop_map(Op::SetParent),
        2 => any::<bool>().prop_map(Op::SetScope),
        1 => Just(Op::Rebase),
    ]
}

fn source(schema: &str, k: u8) -> Vec<SourceFile> {
    let fields: String = (1..=k + 1)
        .map(|i| format!("  string f{i} = {i};\n"))
        .collect();
    let text = format!("syntax = \"proto3\";\npackage {schema};\nmessage M {{\n{fields}}}\n");
    vec![SourceFile::new(format!("{schema}/m.proto"), text)]
}

#[derive(Debug, Default, Clone)]
struct SchemaModel {
    /// Content of version i+1.
    versions: Vec<u8>,
    current: Option<u64>,
    staged: Option<u64>,
    /// The staged version was staged by a forced rollback: promote does not
    /// check it.
    forced: bool,
    /// Soft-deleted, with the version that was current.
    deleted: Option<Option<u64>>,
    /// Every version a promote made current. Nothing removes one: a
    /// rollback or delete moves the pointer, the log still named it
    /// current (the real set is read from the log).
    ever_current: Vec<u64>,
}

impl SchemaModel {
    fn content(&self, v: u64) -> u8 {
        self.versions[v as usize - 1]
    }

    /// Whether a promote checks this schema's staged version: one that
    /// changes current, unless a forced rollback staged it.
    fn promote_checks(&self) -> bool {
        matches!((self.staged, self.current), (Some(s), Some(c)) if s != c) && !self.forced
    }

    /// Whether moving to version `new` breaks strict compatibility against
    /// the versions `scope` compares it with: current, or every version
    /// ever current. Content k has fields 1..=k+1, so it breaks an earlier
    /// content j iff k < j. No current version, or `new` is current (the
    /// move changes nothing): nothing to compare with.
    fn breaks(&self, new: u64, scope_all: bool) -> bool {
        let Some(c) = self.current.filter(|&c| c != new) else {
            return false;
        };
        let bound = if scope_all {
            self.ever_current.iter().map(|&v| self.content(v)).max()
        } else {
            Some(self.content(c))
        };
        bound.is_some_and(|b| self.content(new) < b)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Published {
        version: u64,
        no_change: bool,
    },
    Promoted(Vec<(String, u64)>),
    Done,
    /// A delete or undelete: whether it changed anything.
    Changed(bool),
    Incompatible,
    NotFound,
    /// Refused as bad input (a write to a deleted schema).
    Refused,
    /// A rebase: the schemas it staged, and how many commits it made.
    Rebased {
        schemas: Vec<(String, Option<u64>)>,
        commits: u64,
    },
}

/// The model's state: the schemas of `ns`, whether `top` is its parent,
/// and whether its compatibility scope is `all`.
#[derive(Debug, Default)]
struct Model {
    schemas: [SchemaModel; 2],
    parent: bool,
    scope_all: bool,
}

impl Model {
    /// Whether a promote is refused under scope `all` (true) or `latest`.
    /// Every staged version that changes current is checked under the
    /// scope, one older than current (a rollback) included, except one a
    /// forced rollback staged. The current version staged again changes
    /// nothing and is not checked.
    fn promote_breaks(&self, scope_all: bool) -> bool {
        self.schemas
            .iter()
            .any(|m| m.promote_checks() && m.breaks(m.staged.unwrap(), scope_all))
    }

    /// Whether a promote checks anything.
    fn promote_checks(&self) -> bool {
        self.schemas.iter().any(SchemaModel::promote_checks)
    }
}

fn model(model: &mut Model, op: &Op) -> Outcome {
    // Schema `s` collides with what `top` defines while it is the parent.
    let parent = model.parent;
    let scope_all = model.scope_all;
    let shadowed = |s: usize| parent && SCHEMAS[s] == "a";
    match *op {
        Op::SetParent(on) => {
            let changed = model.parent != on;
            model.parent = on;
            Outcome::Changed(changed)
        }
        Op::SetScope(all) => {
            let changed = model.scope_all != all;
            model.scope_all = all;
            Outcome::Changed(changed)
        }
        // No schema of `ns` pins anything in `top`: nothing is behind.
        Op::Rebase => Outcome::Rebased {
            schemas: Vec::new(),
            commits: 0,
        },
        Op::Publish(s, k) => {
            let m = &mut model.schemas[s];
            if m.deleted.is_some() {
                return Outcome::Refused;
            }
            if let Some(v) = m.staged.or(m.current)
                && m.content(v) == k
            {
                return Outcome::Published {
                    version: v,
                    no_change: true,
                };
            }
            if shadowed(s) {
                return Outcome::Refused;
            }
            m.versions.push(k);
            let v = m.versions.len() as u64;
            m.staged = Some(v);
            m.forced = false;
            Outcome::Published {
                version: v,
                no_change: false,
            }
        }
        Op::Promote => {
            if model.promote_breaks(scope_all) {
                return Outcome::Incompatible;
            }
            let mut promoted = Vec::new();
            for (i, m) in model.schemas.iter_mut().enumerate() {
                if let Some(s) = m.staged.take() {
                    m.forced = false;
                    m.current = Some(s);
                    if !m.ever_current.contains(&s) {
                        m.ever_current.push(s);
                    }
                    promoted.push((SCHEMAS[i].to_string(), s));
                }
            }
            Outcome::Promoted(promoted)
        }
        Op::Discard => {
            model.schemas.iter_mut().for_each(|m| {
                m.staged = None;
                m.forced = false;
            });
            Outcome::Done
        }
        Op::Rollback(s, v, force) => {
            let m = &mut model.schemas[s];
            if v as usize > m.versions.len() {
                return Outcome::NotFound;
            }
            if m.deleted.is_some() {
                return Outcome::Refused;
            }
            // Forcing the version staged unforced records the force.
            let records_force = force && m.staged == Some(v) && !m.forced && m.current != Some(v);
            if m.staged.or(m.current) == Some(v) && !records_force {
                // Already proposed: nothing to do.
                return Outcome::Done;
            }
            if !force && m.breaks(v, scope_all) {
                return Outcome::Incompatible;
            }
            m.staged = Some(v);
            m.forced = force;
            Outcome::Done
        }
        Op::Delete(s) => {
            let m = &mut model.schemas[s];
            if m.versions.is_empty() {
                return Outcome::NotFound;
            }
            if m.deleted.is_some() {
                return Outcome::Changed(false);
            }
            m.deleted = Some(m.current.take());
            m.staged = None;
            m.forced = false;
            Outcome::Changed(true)
        }
        Op::Undelete(s) => {
            let m = &mut model.schemas[s];
            if m.versions.is_empty() {
                return Outcome::NotFound;
            }
            match m.deleted {
                // Restoring a current version checks its paths and names.
                Some(Some(_)) if shadowed(s) => Outcome::Refused,
                Some(restore) => {
                    m.deleted = None;
                    m.current = restore;
                    Outcome::Changed(true)
                }
                None => Outcome::Changed(false),
            }
        }
    }
}

async fn real(r: &Registry, op: &Op) -> Outcome {
    let result = match *op {
        Op::Publish(s, k) => r
            .publish("ns", SCHEMAS[s], source(SCHEMAS[s], k), Default::default())
            .await
            .map(|p| Outcome::Published {
                version: p.version,
                no_change: p.no_change,
            }),
        Op::Promote => r.promote("ns", false).await.map(|p| {
            Outcome::Promoted(
                p.promoted
                    .into_iter()
                    .map(|x| (x.schema_id, x.current_version))
                    .collect(),
            )
        }),
        Op::Discard => r.discard("ns").await.map(|_| Outcome::Done),
        Op::Rollback(s, v, force) => r
            .rollback("ns", SCHEMAS[s], v, force, false)
            .await
            .map(|_| Outcome::Done),
        Op::Delete(s) => r
            .delete_schema("ns", SCHEMAS[s], false)
            .await
            .map(Outcome::Changed),
        Op::Undelete(s) => r
            .undelete_schema("ns", SCHEMAS[s])
            .await
            .map(Outcome::Changed),
        Op::SetParent(on) => r
            .set_parent("ns", on.then_some(TOP))
            .await
            .map(Outcome::Changed),
        Op::SetScope(all) => {
            let scope = if all {
                CompatScope::All
            } else {
                CompatScope::Latest
            };
            r.set_compat_scope("ns", scope).await.map(Outcome::Changed)
        }
        Op::Rebase => {
            let seq = || async { r.store().namespace_state("ns").await.unwrap().seq };
            let before = seq().await;
            let report = r.rebase("ns", None, false).await;
            let after = seq().await;
            report.map(|rep| Outcome::Rebased {
                schemas: rep
                    .schemas
                    .into_iter()
                    .map(|x| (x.schema_id, x.version))
                    .collect(),
                commits: after - before,
            })
        }
    };
    match result {
        Ok(o) => o,
        Err(Error::Incompatible(_)) => Outcome::Incompatible,
        Err(Error::NotFound(_)) => Outcome::NotFound,
        Err(Error::InvalidInput(_)) => Outcome::Refused,
        Err(e) => panic!("{op:?}: unexpected error {e}"),
    }
}

fn check(backend: Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let Some((url, _dir)) = common::fresh_url(backend).await else {
            return Ok(());
        };
        let r = Registry::open(&url).await.unwrap();
        r.create_namespace("ns", Policy::Strict, Default::default())
            .await
            .unwrap();
        r.create_namespace(TOP, Policy::Strict, Default::default())
            .await
            .unwrap();
        r.publish(TOP, "t", source("a", 0), Default::default())
            .await
            .unwrap();
        r.promote(TOP, false).await.unwrap();
        let mut all = Model::default();
        for (i, op) in ops.iter().enumerate() {
            let expected = model(&mut all, op);
            let got = real(&r, op).await;
            prop_assert_eq!(&got, &expected, "step {} {:?} in {:?}", i, op, ops);
        }
        // The stored pointers and parent agree with the model at the end.
        prop_assert_eq!(r.parent("ns").await.unwrap().is_some(), all.parent);
        prop_assert_eq!(
            r.compat_scope("ns").await.unwrap() == CompatScope::All,
            all.scope_all
        );
        let m = &all.schemas;
        let state = r.store().namespace_state("ns").await.unwrap();
        for (i, s) in SCHEMAS.iter().enumerate() {
            prop_assert_eq!(state.pointers(s).staged_forced, m[i].forced, "{}", s);
            match r.store().get_schema("ns", s).await {
                Ok(x) => prop_assert_eq!(
                    (x.current_version, x.staged_version, x.deleted),
                    (m[i].current, m[i].staged, m[i].deleted.is_some())
                ),
                Err(Error::NotFound(_)) => prop_assert!(m[i].versions.is_empty()),
                Err(e) => panic!("{e}"),
            }
        }
        Ok(())
    })
}

/// What the generator reaches, counted on the model alone.
#[derive(Debug, Default)]
struct Reach {
    /// Promotes that check something, by [scope all][refused].
    promotes: [[usize; 2]; 2],
    /// Promotes refused under `all` that `latest` would accept.
    promotes_only_all: usize,
    /// Unforced rollbacks that check something, by [scope all][refused].
    rollbacks: [[usize; 2]; 2],
    /// Promotes that check a version older than current, by [refused].
    older: [usize; 2],
}

fn reach(n: usize, chunks: usize) -> Reach {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let ops = ops(chunks);
    let mut r = Reach::default();
    for _ in 0..n {
        let mut m = Model::default();
        for op in ops.new_tree(&mut runner).unwrap().current() {
            let all = m.scope_all;
            match op {
                Op::Promote if m.promote_checks() => {
                    let refused = m.promote_breaks(all);
                    r.promotes[all as usize][refused as usize] += 1;
                    r.promotes_only_all += (all && refused && !m.promote_breaks(false)) as usize;
                    let older = m.schemas.iter().any(|x| {
                        x.promote_checks()
                            && x.staged < x.current
                            && x.breaks(x.staged.unwrap(), all)
                    });
                    let checks_older = m
                        .schemas
                        .iter()
                        .any(|x| x.promote_checks() && x.staged < x.current);
                    if checks_older {
                        r.older[older as usize] += 1;
                    }
                }
                Op::Rollback(s, v, false) => {
                    let x = &m.schemas[s];
                    let checks = v as usize <= x.versions.len()
                        && x.deleted.is_none()
                        && x.staged.or(x.current) != Some(v)
                        && x.current.is_some_and(|c| c != v);
                    if checks {
                        let refused = x.breaks(v, all);
                        r.rollbacks[all as usize][refused as usize] += 1;
                    }
                }
                _ => {}
            }
            model(&mut m, &op);
        }
    }
    r
}

/// Cases of the memory run below.
const MEMORY_CASES: u32 = 160;

/// The generator reaches every promote and rollback outcome under both
/// scopes, a promote only the transitive check refuses, and promotes that
/// check a version older than current, in as many sequences as the memory
/// run uses. An unforced rollback accepted under `latest` is rarer (most
/// roll back to less content than current), an unforced rollback only
/// `all` refuses and an older version refused by the promote (the scope
/// changed after the rollback) rarer still: the fixed cases below pin them.
#[test]
fn generator_reaches_each_scope_outcome() {
    let r = reach(MEMORY_CASES as usize, 20);
    eprintln!("{r:?}");
    for (counts, least) in [(r.promotes, 20), (r.rollbacks, 2)] {
        for (scope, by) in counts.iter().enumerate() {
            for (refused, &n) in by.iter().enumerate() {
                assert!(
                    n >= least,
                    "scope all={scope} refused={refused}: {n} in {r:?}"
                );
            }
        }
    }
    assert!(r.promotes_only_all >= 2, "{r:?}");
    assert!(r.older[0] >= 2, "{r:?}");
}

/// Runs `ops` through the model and the registry on every backend, after
/// checking the model's answer at each `(step, expected)`.
fn pinned_case(ops: Vec<Op>, expected: &[(usize, Outcome)]) {
    let mut m = Model::default();
    let got: Vec<Outcome> = ops.iter().map(|op| model(&mut m, op)).collect();
    for (step, outcome) in expected {
        assert_eq!(&got[*step], outcome, "step {step} of {ops:?}");
    }
    for backend in [Backend::Memory, Backend::Local, Backend::S3] {
        check(backend, ops.clone()).unwrap();
    }
}

/// Under scope `all` (or `latest`), `b` with content `first` promoted,
/// then `best`, then a forced rollback to the first promoted (not checked,
/// though it breaks `best`): current is now below the best version ever
/// current.
fn below_best(all: bool, first: u8, best: u8) -> Vec<Op> {
    vec![
        Op::SetScope(all),
        Op::Publish(1, first),
        Op::Promote,
        Op::Publish(1, best),
        Op::Promote,
        Op::Rollback(1, 1, true),
        Op::Promote,
    ]
}

/// The forced rollback's promote in [`below_best`].
const FORCED_PROMOTE: usize = 6;

/// The cases only the transitive check catches, from a current version
/// below the best one ever current: a version between the two promoted, or
/// rolled back to unforced. Under `all` each is refused, under `latest`
/// each goes through. The model and the registry must agree on each step
/// (a rebase included).
#[test]
fn transitive_check_refuses_what_latest_accepts() {
    for all in [true, false] {
        let refused = |accepted: Outcome| if all { Outcome::Incompatible } else { accepted };
        let cases = [
            (
                vec![Op::Publish(1, 1), Op::Promote, Op::Rebase],
                1,
                refused(Outcome::Promoted(vec![("b".into(), 3)])),
            ),
            (
                vec![Op::Publish(1, 2), Op::Discard, Op::Rollback(1, 3, false)],
                2,
                refused(Outcome::Done),
            ),
        ];
        for (then, step, expected) in cases {
            let start = below_best(all, 0, 3);
            let forced = (FORCED_PROMOTE, Outcome::Promoted(vec![("b".into(), 1)]));
            let step = start.len() + step;
            pinned_case([start, then].concat(), &[forced, (step, expected)]);
        }
    }
}

/// The current version staged again over a refused version, by a rollback
/// forced or not, then promoted: nothing changes for it, so neither the
/// rollback nor the promote checks it, under either scope (under `all`,
/// v1 breaks v2, which was current).
#[test]
fn the_current_version_staged_again_is_not_checked() {
    for all in [true, false] {
        for force in [true, false] {
            let then = vec![
                Op::Publish(1, 0),
                Op::Promote,
                Op::Rollback(1, 1, force),
                Op::Promote,
            ];
            let start = below_best(all, 1, 2);
            let at = start.len();
            let expected = [
                (at + 1, Outcome::Incompatible),
                (at + 2, Outcome::Done),
                (at + 3, Outcome::Promoted(vec![("b".into(), 1)])),
            ];
            pinned_case([start, then].concat(), &expected);
        }
    }
}

/// A version older than current rolled back to unforced is checked again
/// by the promote, on the scope it lands on: v1 (content 1) passes
/// against current v3 (content 0, made current by a forced rollback) under
/// `latest`, and breaks v2 (content 3, once current) once the scope is
/// `all`. The forced rollback's own promote (to v3, newer than current and
/// breaking it) is not checked.
#[test]
fn an_older_staged_version_is_checked_by_the_promote() {
    for all in [true, false] {
        let ops = vec![
            Op::SetScope(false),
            Op::Publish(1, 1),
            Op::Promote,
            Op::Publish(1, 3),
            Op::Promote,
            Op::Publish(1, 0),
            Op::Discard,
            Op::Rollback(1, 3, true),
            Op::Promote,
            Op::Rollback(1, 1, false),
            Op::SetScope(all),
            Op::Promote,
        ];
        let last = if all {
            Outcome::Incompatible
        } else {
            Outcome::Promoted(vec![("b".into(), 1)])
        };
        let expected = [
            (8, Outcome::Promoted(vec![("b".into(), 3)])),
            (9, Outcome::Done),
            (11, last),
        ];
        pinned_case(ops, &expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: MEMORY_CASES, ..ProptestConfig::default() })]
    #[test]
    fn memory_registry_agrees_with_the_model(ops in ops(20)) {
        check(Backend::Memory, ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn local_registry_agrees_with_the_model(ops in ops(16)) {
        check(Backend::Local, ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]
    #[test]
    fn s3_registry_agrees_with_the_model(ops in ops(12)) {
        check(Backend::S3, ops)?;
    }
}
