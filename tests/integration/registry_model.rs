//! Property test: random sequences of publish / promote / discard /
//! rollback / delete / undelete / set-parent against a small reference
//! model of the registry (strict policy), on memory and the local
//! directory, and a shorter run on S3. The parent namespace, `top`, defines
//! schema `a`'s file and names: while it is `ns`'s parent, a new version of
//! `a` (and restoring a current one) is refused as a duplicate.

use crate::common;

use common::Backend;
use proptest::prelude::*;
use protoshelf::Error;
use protoshelf::compat::Policy;
use protoshelf::registry::{Registry, SourceFile};

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
}

/// The parent namespace and the file it defines (`a`'s path and names).
const TOP: &str = "top";

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..SCHEMAS.len(), 0..CONTENTS).prop_map(|(s, k)| Op::Publish(s, k)),
        2 => Just(Op::Promote),
        1 => Just(Op::Discard),
        1 => (0..SCHEMAS.len(), 1..5u64, any::<bool>()).prop_map(|(s, v, f)| Op::Rollback(s, v, f)),
        1 => (0..SCHEMAS.len()).prop_map(Op::Delete),
        1 => (0..SCHEMAS.len()).prop_map(Op::Undelete),
        1 => any::<bool>().prop_map(Op::SetParent),
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
    /// Soft-deleted, with the version that was current.
    deleted: Option<Option<u64>>,
}

impl SchemaModel {
    fn content(&self, v: u64) -> u8 {
        self.versions[v as usize - 1]
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
}

/// The model's state: the schemas of `ns`, and whether `top` is its parent.
#[derive(Debug, Default)]
struct Model {
    schemas: [SchemaModel; 2],
    parent: bool,
}

fn model(model: &mut Model, op: &Op) -> Outcome {
    // Schema `s` collides with what `top` defines while it is the parent.
    let parent = model.parent;
    let shadowed = |s: usize| parent && SCHEMAS[s] == "a";
    let schemas = &mut model.schemas;
    match *op {
        Op::SetParent(on) => {
            let changed = model.parent != on;
            model.parent = on;
            Outcome::Changed(changed)
        }
        Op::Publish(s, k) => {
            let m = &mut schemas[s];
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
            Outcome::Published {
                version: v,
                no_change: false,
            }
        }
        Op::Promote => {
            // Strict: a staged version newer than current must keep every field.
            let broken = schemas.iter().any(|m| match (m.staged, m.current) {
                (Some(s), Some(c)) if s > c => m.content(s) < m.content(c),
                _ => false,
            });
            if broken {
                return Outcome::Incompatible;
            }
            let mut promoted = Vec::new();
            for (i, m) in schemas.iter_mut().enumerate() {
                if let Some(s) = m.staged.take() {
                    m.current = Some(s);
                    promoted.push((SCHEMAS[i].to_string(), s));
                }
            }
            Outcome::Promoted(promoted)
        }
        Op::Discard => {
            schemas.iter_mut().for_each(|m| m.staged = None);
            Outcome::Done
        }
        Op::Rollback(s, v, force) => {
            let m = &mut schemas[s];
            if v as usize > m.versions.len() {
                return Outcome::NotFound;
            }
            if m.deleted.is_some() {
                return Outcome::Refused;
            }
            if m.staged.or(m.current) == Some(v) {
                // Already proposed: nothing to do.
                return Outcome::Done;
            }
            if !force
                && let Some(c) = m.current
                && m.content(v) < m.content(c)
            {
                return Outcome::Incompatible;
            }
            m.staged = Some(v);
            Outcome::Done
        }
        Op::Delete(s) => {
            let m = &mut schemas[s];
            if m.versions.is_empty() {
                return Outcome::NotFound;
            }
            if m.deleted.is_some() {
                return Outcome::Changed(false);
            }
            m.deleted = Some(m.current.take());
            m.staged = None;
            Outcome::Changed(true)
        }
        Op::Undelete(s) => {
            let m = &mut schemas[s];
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
        let m = &all.schemas;
        for (i, s) in SCHEMAS.iter().enumerate() {
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]
    #[test]
    fn memory_registry_agrees_with_the_model(ops in prop::collection::vec(op(), 1..30)) {
        check(Backend::Memory, ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn local_registry_agrees_with_the_model(ops in prop::collection::vec(op(), 1..25)) {
        check(Backend::Local, ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]
    #[test]
    fn s3_registry_agrees_with_the_model(ops in prop::collection::vec(op(), 1..20)) {
        check(Backend::S3, ops)?;
    }
}
