//! Property test: random operation sequences against a small in-memory
//! model of the contract; the store must agree on every result and error
//! kind. Many cases on memory, fewer on the local directory and S3.

use crate::common;

use std::collections::BTreeMap;

use common::Backend;
use common::data::*;
use proptest::prelude::*;
use protoshelf::model::PromotedSchema;

use protoshelf::{Error, ObjStore};

const NAMESPACES: [&str; 2] = ["n1", "n2"];
const SCHEMAS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    CreateNamespace(usize),
    CreateSchema(usize, usize),
    PutVersion(usize, usize, u64),
    CreateVersion(usize, usize),
    SetStaged(usize, usize, u64),
    Promote(usize),
    Discard(usize),
    GetSchema(usize, usize),
    ListSchemasPage(usize, usize, usize),
    ListVersions(usize, usize),
    LoadCurrent(usize),
    LoadProposed(usize),
    /// Switch to a fresh handle (no caches) on the same storage.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let ns = 0..NAMESPACES.len();
    let s = 0..SCHEMAS.len();
    prop_oneof![
        ns.clone().prop_map(Op::CreateNamespace),
        (ns.clone(), s.clone()).prop_map(|(n, s)| Op::CreateSchema(n, s)),
        (ns.clone(), s.clone(), 1..5u64).prop_map(|(n, s, v)| Op::PutVersion(n, s, v)),
        (ns.clone(), s.clone()).prop_map(|(n, s)| Op::CreateVersion(n, s)),
        (ns.clone(), s.clone(), 0..5u64).prop_map(|(n, s, v)| Op::SetStaged(n, s, v)),
        ns.clone().prop_map(Op::Promote),
        ns.clone().prop_map(Op::Discard),
        (ns.clone(), s.clone()).prop_map(|(n, s)| Op::GetSchema(n, s)),
        (ns.clone(), 0..=SCHEMAS.len(), 1..3usize)
            .prop_map(|(n, a, l)| Op::ListSchemasPage(n, a, l)),
        (ns.clone(), s.clone()).prop_map(|(n, s)| Op::ListVersions(n, s)),
        ns.clone().prop_map(Op::LoadCurrent),
        ns.prop_map(Op::LoadProposed),
        Just(Op::Reopen),
    ]
}

#[derive(Debug, Default, Clone)]
struct SchemaModel {
    versions: Vec<u64>,
    current: Option<u64>,
    staged: Option<u64>,
}

#[derive(Debug, Default)]
struct Model {
    namespaces: BTreeMap<String, BTreeMap<String, SchemaModel>>,
}

/// What an operation returned, reduced to what the model can predict.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Value(String),
    NotFound,
    AlreadyExists,
}

fn outcome<T>(r: Result<T, Error>, show: impl Fn(T) -> String) -> Outcome {
    match r {
        Ok(v) => Outcome::Value(show(v)),
        Err(Error::NotFound(_)) => Outcome::NotFound,
        Err(Error::AlreadyExists(_)) => Outcome::AlreadyExists,
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn unit<T>(r: Result<T, Error>) -> Outcome {
    match outcome(r, |_| String::new()) {
        Outcome::Value(_) => Outcome::Ok,
        o => o,
    }
}

impl Model {
    fn schema(&mut self, n: &str, s: &str) -> Option<&mut SchemaModel> {
        self.namespaces.get_mut(n)?.get_mut(s)
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        use Outcome::*;
        let name = |n: usize| NAMESPACES[n].to_string();
        match *op {
            Op::Reopen => Ok,
            Op::CreateNamespace(n) => {
                if self.namespaces.contains_key(NAMESPACES[n]) {
                    return AlreadyExists;
                }
                self.namespaces.insert(name(n), BTreeMap::new());
                Ok
            }
            Op::CreateSchema(n, s) => match self.namespaces.get_mut(NAMESPACES[n]) {
                None => NotFound,
                Some(m) if m.contains_key(SCHEMAS[s]) => AlreadyExists,
                Some(m) => {
                    m.insert(SCHEMAS[s].into(), SchemaModel::default());
                    Ok
                }
            },
            Op::PutVersion(n, s, v) => match self.schema(NAMESPACES[n], SCHEMAS[s]) {
                None => NotFound,
                Some(m) if m.versions.contains(&v) => AlreadyExists,
                Some(m) => {
                    m.versions.push(v);
                    m.versions.sort();
                    Ok
                }
            },
            Op::CreateVersion(n, s) => match self.schema(NAMESPACES[n], SCHEMAS[s]) {
                None => NotFound,
                Some(m) => {
                    // The next number after every stored one.
                    let v = m.versions.last().copied().unwrap_or(0) + 1;
                    m.versions.push(v);
                    Value(v.to_string())
                }
            },
            Op::SetStaged(n, s, v) => match self.schema(NAMESPACES[n], SCHEMAS[s]) {
                None => NotFound,
                Some(m) if v != 0 && !m.versions.contains(&v) => NotFound,
                Some(m) => {
                    m.staged = (v != 0).then_some(v);
                    Ok
                }
            },
            Op::Promote(n) => match self.namespaces.get_mut(NAMESPACES[n]) {
                None => NotFound,
                Some(m) => {
                    let mut promoted = Vec::new();
                    for (id, s) in m.iter_mut() {
                        if let Some(v) = s.staged.take() {
                            promoted.push(PromotedSchema {
                                schema_id: id.clone(),
                                prior_version: s.current,
                                current_version: v,
                            });
                            s.current = Some(v);
                        }
                    }
                    Value(format!("{promoted:?}"))
                }
            },
            Op::Discard(n) => match self.namespaces.get_mut(NAMESPACES[n]) {
                None => NotFound,
                Some(m) => {
                    m.values_mut().for_each(|s| s.staged = None);
                    Ok
                }
            },
            Op::GetSchema(n, s) => match self.schema(NAMESPACES[n], SCHEMAS[s]) {
                None => NotFound,
                Some(m) => Value(format!("{:?}/{:?}", m.current, m.staged)),
            },
            Op::ListSchemasPage(n, after, limit) => match self.namespaces.get(NAMESPACES[n]) {
                None => NotFound,
                Some(m) => {
                    let after = if after == SCHEMAS.len() {
                        ""
                    } else {
                        SCHEMAS[after]
                    };
                    let ids: Vec<&String> = m
                        .keys()
                        .filter(|k| k.as_str() > after)
                        .take(limit)
                        .collect();
                    Value(format!("{ids:?}"))
                }
            },
            Op::ListVersions(n, s) => match self.schema(NAMESPACES[n], SCHEMAS[s]) {
                None => NotFound,
                Some(m) => Value(format!("{:?}", m.versions)),
            },
            Op::LoadCurrent(n) | Op::LoadProposed(n) => match self.namespaces.get(NAMESPACES[n]) {
                None => NotFound,
                Some(m) => {
                    let proposed = matches!(op, Op::LoadProposed(_));
                    let v: Vec<(&String, u64)> = m
                        .iter()
                        .filter_map(|(id, s)| {
                            let v = if proposed {
                                s.staged.or(s.current)
                            } else {
                                s.current
                            };
                            v.map(|v| (id, v))
                        })
                        .collect();
                    Value(format!("{v:?}"))
                }
            },
        }
    }
}

/// Stores a blob and returns it as a version's file list; None when the
/// namespace does not exist.
async fn stored_file(
    s: &ObjStore,
    ns: &str,
    id: &str,
    text: &str,
) -> Option<Vec<protoshelf::model::VersionFile>> {
    let b = blob(ns, text);
    match s.put_blob(&b).await {
        Ok(()) => Some(vec![protoshelf::model::VersionFile {
            path: format!("{id}.proto"),
            sha256: b.sha256,
            size: None,
        }]),
        Err(Error::NotFound(_)) => None,
        Err(e) => panic!("{e}"),
    }
}

async fn run(store: &mut ObjStore, url: &str, op: &Op) -> Outcome {
    let s = &*store;
    match *op {
        Op::Reopen => {
            *store = ObjStore::open(url).await.unwrap();
            Outcome::Ok
        }
        Op::CreateNamespace(n) => unit(s.create_namespace(&namespace(NAMESPACES[n])).await),
        Op::CreateSchema(n, sc) => unit(s.create_schema(&schema(NAMESPACES[n], SCHEMAS[sc])).await),
        Op::PutVersion(n, sc, v) => {
            let (ns, id) = (NAMESPACES[n], SCHEMAS[sc]);
            let Some(files) = stored_file(s, ns, id, &format!("// {id} {v}")).await else {
                return Outcome::NotFound;
            };
            unit(s.put_version(&version(ns, id, v, "p"), &files, &[]).await)
        }
        Op::CreateVersion(n, sc) => {
            let (ns, id) = (NAMESPACES[n], SCHEMAS[sc]);
            let Some(files) = stored_file(s, ns, id, &format!("// {id} created")).await else {
                return Outcome::NotFound;
            };
            outcome(
                s.create_version(&version(ns, id, 0, "c"), &files, &[])
                    .await,
                |v| v.to_string(),
            )
        }
        Op::SetStaged(n, sc, v) => unit(s.set_staged(NAMESPACES[n], SCHEMAS[sc], v).await),
        Op::Promote(n) => outcome(s.promote(NAMESPACES[n]).await, |p| {
            format!("{:?}", p.promoted)
        }),
        Op::Discard(n) => unit(s.discard_staging(NAMESPACES[n]).await),
        Op::GetSchema(n, sc) => outcome(s.get_schema(NAMESPACES[n], SCHEMAS[sc]).await, |x| {
            format!("{:?}/{:?}", x.current_version, x.staged_version)
        }),
        Op::ListSchemasPage(n, after, limit) => {
            let after = if after == SCHEMAS.len() {
                ""
            } else {
                SCHEMAS[after]
            };
            outcome(
                s.list_schemas_page(NAMESPACES[n], after, limit).await,
                |v| format!("{:?}", v.iter().map(|x| &x.schema_id).collect::<Vec<_>>()),
            )
        }
        Op::ListVersions(n, sc) => {
            outcome(s.list_versions(NAMESPACES[n], SCHEMAS[sc]).await, |v| {
                format!("{v:?}")
            })
        }
        Op::LoadCurrent(n) | Op::LoadProposed(n) => {
            let r = if matches!(op, Op::LoadProposed(_)) {
                s.load_namespace_proposed(NAMESPACES[n]).await
            } else {
                s.load_namespace_current(NAMESPACES[n]).await
            };
            outcome(r, |v| {
                format!(
                    "{:?}",
                    v.iter()
                        .map(|c| (&c.schema_id, c.version))
                        .collect::<Vec<_>>()
                )
            })
        }
    }
}

fn check(backend: Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let Some((url, _dir)) = common::fresh_url(backend).await else {
            return Ok(());
        };
        let mut store = ObjStore::open(&url).await.unwrap();
        let mut model = Model::default();
        for (i, op) in ops.iter().enumerate() {
            let expected = model.apply(op);
            let got = run(&mut store, &url, op).await;
            prop_assert_eq!(got, expected, "step {} {:?} in {:?}", i, op, ops);
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn memory_agrees_with_the_model(ops in prop::collection::vec(op(), 1..60)) {
        check(Backend::Memory, ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    #[test]
    fn local_directory_agrees_with_the_model(ops in prop::collection::vec(op(), 1..40)) {
        check(Backend::Local, ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]
    #[test]
    fn s3_agrees_with_the_model(ops in prop::collection::vec(op(), 1..30)) {
        check(Backend::S3, ops)?;
    }
}
