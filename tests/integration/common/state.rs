//! What the crash, kill and integrity tests compare: store copies, and the
//! state readers see, by content.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use protoshelf::registry::Registry;

/// Copies every object of `from` into `to`.
pub async fn copy_all(from: &Arc<dyn ObjectStore>, to: &Arc<dyn ObjectStore>) {
    let keys: Vec<_> = from
        .list(None)
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .unwrap();
    for key in keys {
        let bytes = from.get(&key).await.unwrap().bytes().await.unwrap();
        to.put(&key, bytes.into()).await.unwrap();
    }
}

/// The state readers can see, by content: per namespace its policy and,
/// per schema the log names, the files of its current and staged versions
/// (version numbers may differ between runs that converge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome(pub BTreeMap<String, (String, Schemas)>);
/// Per schema, the files of its current and staged versions.
pub type Schemas = BTreeMap<String, (Files, Files)>;
pub type Files = Option<Vec<(String, String)>>;

pub async fn outcome(r: &Registry) -> Outcome {
    let store = r.store();
    let mut all = BTreeMap::new();
    for ns in store.list_namespaces().await.unwrap() {
        let state = store.namespace_state(&ns.id).await.unwrap();
        let policy = r.policy(&ns.id).await.unwrap().to_string();
        let mut schemas = BTreeMap::new();
        for (schema, p) in state.snapshot.schemas.iter() {
            let files = async |v: Option<u64>| match v {
                Some(v) => Some(
                    store
                        .get_version_files(&ns.id, schema, v)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|f| (f.path, f.sha256))
                        .collect(),
                ),
                None => None,
            };
            schemas.insert(
                schema.clone(),
                (files(p.current).await, files(p.staged).await),
            );
        }
        all.insert(ns.id, (policy, schemas));
    }
    Outcome(all)
}

/// Schema records no commit names (what the raw listing shows as a schema
/// without versions: a publish that died before staging).
pub async fn unnamed_records(r: &Registry) -> usize {
    let store = r.store();
    let mut n = 0;
    for ns in store.list_namespaces().await.unwrap() {
        let state = store.namespace_state(&ns.id).await.unwrap();
        n += store
            .list_schemas(&ns.id)
            .await
            .unwrap()
            .iter()
            .filter(|s| state.pointers(&s.schema_id).latest == 0)
            .count();
    }
    n
}

/// Every read the CLI and the mount core offer, over every schema shown:
/// an error names what failed.
pub async fn readers_work(r: &Registry, url: &str) -> protoshelf::Result<()> {
    use protoshelf::fs::{FsCore, Kind, Options};
    let store = r.store();
    for ns in store.list_namespaces().await? {
        for s in r.list_schemas(&ns.id).await? {
            let info = r.schema_info(&ns.id, &s.schema_id).await?;
            if info.versions.is_empty() {
                return Err(protoshelf::Error::InvalidInput(format!(
                    "schema {} is listed without versions",
                    s.schema_id
                )));
            }
            for v in info.versions {
                let v = r.readable_version(&ns.id, &s.schema_id, Some(v)).await?;
                store.get_version(&ns.id, &s.schema_id, v).await?;
                store.get_version_sources(&ns.id, &s.schema_id, v).await?;
            }
        }
        r.load_tree(&ns.id, protoshelf::registry::view::Tree::Current)
            .await?;
        r.load_tree(&ns.id, protoshelf::registry::view::Tree::Proposed)
            .await?;
    }
    // The mount core, on its own handle.
    let fresh = protoshelf::ObjStore::open(url).await?;
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let core = FsCore::new(
            fresh,
            handle,
            Options {
                namespaces: vec![],
                refresh: std::time::Duration::from_secs(60),
            },
        );
        fn walk(core: &FsCore, dir: &str) -> Result<(), String> {
            for (name, kind) in core.list(dir).map_err(|e| format!("ls {dir}: {e:?}"))? {
                let path = format!("{dir}/{name}");
                match kind {
                    Kind::Dir => walk(core, &path)?,
                    Kind::File(_) => {
                        core.content(&path)
                            .map_err(|e| format!("cat {path}: {e:?}"))?;
                    }
                    Kind::Symlink => {}
                }
            }
            Ok(())
        }
        let namespaces = core.namespaces().map_err(|e| format!("{e:?}"))?;
        for ns in namespaces {
            for top in ["current", "staged", "schemas"] {
                walk(&core, &format!("{ns}/{top}"))?;
            }
        }
        Ok::<_, String>(())
    })
    .await
    .unwrap()
    .map_err(|e| protoshelf::Error::InvalidInput(format!("mount: {e}")))
}
