//! Sizes in manifests and packed trees (issue 12 item 4), on every backend:
//! a promote of many files writes a tree index and packs; the mount's core
//! answers every lookup from it without a content GET, reads a whole tree
//! in at most one GET per 50 files, refuses a damaged pack (EIO), and a
//! small commit rewrites only the packs it changes. Stores without sizes
//! or packs still mount correctly. The real FUSE mount's cold compile is
//! counted in `cold_compile_*`.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::Backend;
use object_store::ObjectStoreExt;
use protoshelf::fs::{Entry, FsCore, FsError, Options};
use protoshelf::registry::{BatchMember, Registry, SourceFile};

const SCHEMAS: usize = 40;
const FILES_PER_SCHEMA: usize = 30;

/// A generated corpus: `SCHEMAS` directories of `FILES_PER_SCHEMA` files,
/// each importing a shared file, with sizes that vary.
pub(crate) fn corpus() -> BTreeMap<String, Vec<SourceFile>> {
    let mut out: BTreeMap<String, Vec<SourceFile>> = BTreeMap::new();
    out.insert(
        "gen.common".into(),
        vec![SourceFile::new(
            "gen/common/base.proto",
            "syntax = \"proto3\";\npackage gen.common;\nmessage Base { string id = 1; }\n",
        )],
    );
    for s in 0..SCHEMAS {
        let files = (0..FILES_PER_SCHEMA)
            .map(|f| {
                let pad = "// padding line\n".repeat((s * 7 + f * 3) % 40);
                SourceFile::new(
                    format!("gen/d{s:02}/f{f:02}.proto"),
                    format!(
                        "syntax = \"proto3\";\npackage gen.d{s:02};\nimport \"gen/common/base.proto\";\n{pad}message M{f} {{ gen.common.Base base = 1; int64 n = 2; }}\n"
                    ),
                )
            })
            .collect();
        out.insert(format!("gen.d{s:02}"), files);
    }
    out
}

pub(crate) fn corpus_files() -> usize {
    1 + SCHEMAS * FILES_PER_SCHEMA
}

async fn load(registry: &Registry, ns: &str, corpus: BTreeMap<String, Vec<SourceFile>>) {
    let members = corpus
        .into_iter()
        .map(|(schema_id, files)| BatchMember { schema_id, files })
        .collect();
    registry
        .publish_many(ns, members, Default::default())
        .await
        .unwrap();
    registry.promote(ns, false).await.unwrap();
}

fn core(url: &str, rt: &tokio::runtime::Runtime) -> FsCore {
    let store = rt.block_on(protoshelf::ObjStore::open(url)).unwrap();
    FsCore::new(
        store,
        rt.handle().clone(),
        Options {
            namespaces: vec!["g".into()],
            refresh: Duration::from_secs(60),
        },
    )
}

fn tree_files(core: &FsCore, dir: &str, out: &mut Vec<String>) {
    for (name, kind) in core.list(dir).unwrap() {
        let path = format!("{dir}/{name}");
        match kind {
            protoshelf::fs::Kind::Dir => tree_files(core, &path, out),
            _ => out.push(path),
        }
    }
}

fn keys_under(
    raw: &Arc<dyn object_store::ObjectStore>,
    prefix: &str,
    rt: &tokio::runtime::Runtime,
) -> Vec<String> {
    use futures::TryStreamExt;
    let prefix = object_store::path::Path::from(prefix);
    let listed: Vec<object_store::ObjectMeta> =
        rt.block_on(raw.list(Some(&prefix)).try_collect()).unwrap();
    let mut keys: Vec<String> = listed.into_iter().map(|m| m.location.to_string()).collect();
    keys.sort();
    keys
}

fn packed_tree(backend: Backend) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some((url, _dir)) = rt.block_on(common::fresh_url(backend)) else {
        return;
    };
    let registry = rt.block_on(Registry::open(&url)).unwrap();
    rt.block_on(async {
        registry
            .create_namespace("g", Default::default(), Default::default())
            .await
            .unwrap();
        load(&registry, "g", corpus()).await;
    });
    let raw = protoshelf::objstore::url::open(&url).unwrap().store;
    let trees = keys_under(&raw, "ns/g/trees", &rt);
    let packs = keys_under(&raw, "ns/g/packs", &rt);
    assert_eq!(
        trees.len(),
        1,
        "one promote of {} files: one tree index",
        corpus_files()
    );
    assert!(
        packs.len() >= 2 && packs.len() <= corpus_files() / 50,
        "{} packs",
        packs.len()
    );

    // verify knows trees and packs: a packed store is clean.
    let report = rt.block_on(registry.store().verify(Some("g"))).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    // Manifests record sizes.
    let m = rt
        .block_on(registry.store().manifest("g", "gen.d03", 1))
        .unwrap();
    assert!(m.files.iter().all(|f| f.size.is_some()), "{:?}", m.files);

    // A cold mount: listing the tree reads the state and the index; every
    // lookup after that needs no request at all; reading every file costs
    // at most one GET per 50 files, all told.
    let core = core(&url, &rt);
    let mut files = Vec::new();
    tree_files(&core, "g/current", &mut files);
    let files: Vec<String> = files
        .into_iter()
        .filter(|f| f.starts_with("g/current/gen/"))
        .collect();
    assert_eq!(files.len(), corpus_files());
    let listed = core.store().requests();
    let mut sizes = BTreeMap::new();
    for f in &files {
        match core.entry(f).unwrap() {
            Entry::File { size, .. } => sizes.insert(f.clone(), size),
            other => panic!("{f}: {other:?}"),
        };
    }
    assert_eq!(
        core.store().requests().total(),
        listed.total(),
        "lookups made requests"
    );
    for f in &files {
        let bytes = core.content(f).unwrap();
        assert_eq!(bytes.len() as u64, sizes[f], "{f}: size from the index");
    }
    let r = core.store().requests();
    assert!(
        r.get as usize * 50 <= files.len(),
        "{} GETs for {} files (LIST {})",
        r.get,
        files.len(),
        r.list
    );
    // What is served is what was published.
    let src = &corpus()["gen.d07"][3];
    assert_eq!(
        &core.content("g/current/gen/d07/f03.proto").unwrap()[..],
        src.content.as_slice()
    );

    // One changed file: the next packed tree rewrites one pack and the index.
    rt.block_on(async {
        let mut files = corpus()["gen.d11"].clone();
        let mut text = files[5].content.clone();
        text.extend_from_slice(b"message Changed { int32 x = 1; }\n");
        files[5] = SourceFile::new("gen/d11/f05.proto", text);
        registry
            .publish("g", "gen.d11", files, Default::default())
            .await
            .unwrap();
        registry.promote("g", false).await.unwrap();
    });
    assert_eq!(
        keys_under(&raw, "ns/g/trees", &rt).len(),
        1,
        "a one-file promote writes no tree"
    );
    let writer = rt.block_on(protoshelf::ObjStore::open(&url)).unwrap();
    let state = rt.block_on(writer.namespace_state("g")).unwrap();
    let picks: Vec<(String, u64)> = state
        .snapshot
        .schemas
        .iter()
        .filter_map(|(s, p)| p.current.map(|v| (s.clone(), v)))
        .collect();
    let before = (writer.requests(), writer.bytes_written());
    rt.block_on(writer.write_tree("g", state.seq, &picks))
        .unwrap();
    let (after, written) = (writer.requests(), writer.bytes_written());
    assert_eq!(after.put - before.0.put, 2, "one pack and the index");
    let new_packs = keys_under(&raw, "ns/g/packs", &rt);
    assert_eq!(
        new_packs.len(),
        packs.len() + 1,
        "one new pack, the others reused"
    );
    // Bytes: that pack (a fraction of the tree) and the index.
    let size = |key: &str| {
        rt.block_on(raw.head(&object_store::path::Path::from(key)))
            .unwrap()
            .size
    };
    let pack = new_packs.iter().find(|k| !packs.contains(k)).unwrap();
    let index = keys_under(&raw, "ns/g/trees", &rt)[0].clone(); // newest first
    assert_eq!(written - before.1, size(pack) + size(&index));
    let corpus_bytes: u64 = sizes.values().sum();
    assert!(
        size(pack) * 3 < corpus_bytes,
        "{} of {corpus_bytes} bytes repacked",
        size(pack)
    );

    // A mount after the change: the changed file from the new index.
    let core2 = self::core(&url, &rt);
    let text = core2.content("g/current/gen/d11/f05.proto").unwrap();
    assert!(std::str::from_utf8(&text).unwrap().contains("Changed"));

    // A damaged pack: EIO naming it, never its bytes.
    let victim = object_store::path::Path::from(packs[0].as_str());
    let mut bytes = rt
        .block_on(async { raw.get(&victim).await.unwrap().bytes().await.unwrap() })
        .to_vec();
    bytes[0] ^= 1;
    rt.block_on(raw.put(&victim, bytes.into())).unwrap();
    let core3 = self::core(&url, &rt);
    let mut files3 = Vec::new();
    tree_files(&core3, "g/current", &mut files3);
    let errors: Vec<String> = files3
        .iter()
        .filter(|f| f.starts_with("g/current/gen/"))
        .filter_map(|f| match core3.content(f) {
            Err(FsError::Io(msg)) => Some(msg),
            Err(e) => panic!("{f}: {e}"),
            Ok(_) => None,
        })
        .collect();
    assert!(!errors.is_empty(), "a damaged pack was served");
    assert!(
        errors.iter().all(|e| e.contains(packs[0].as_str())),
        "{errors:?}"
    );
    // verify names it.
    let report = rt.block_on(core3.store().verify(Some("g"))).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| format!("{p:?}").contains(packs[0].as_str())),
        "{:?}",
        report.problems
    );
}

#[test]
fn packed_tree_memory() {
    packed_tree(Backend::Memory);
}

#[test]
fn packed_tree_local() {
    packed_tree(Backend::Local);
}

#[test]
fn packed_tree_s3() {
    packed_tree(Backend::S3);
}

/// A store without sizes or packs (versions written by an older build,
/// through the low-level API): the mount's sizes and contents are right.
fn old_store_mounts(backend: Backend) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(t) = rt.block_on(common::fresh(backend)) else {
        return;
    };
    rt.block_on(async {
        t.store
            .create_namespace(&common::data::namespace("g"))
            .await
            .unwrap();
        for i in 0..3 {
            let schema = format!("s{i}");
            t.store
                .create_schema(&common::data::schema("g", &schema))
                .await
                .unwrap();
            let v = common::data::publish(&t.store, "g", &schema, &format!("token{i}")).await;
            t.store.set_staged("g", &schema, v).await.unwrap();
        }
        t.store.promote("g").await.unwrap();
    });
    let raw = t.raw();
    assert!(keys_under(&raw, "ns/g/trees", &rt).is_empty());
    let m = rt.block_on(t.store.manifest("g", "s1", 1)).unwrap();
    assert!(m.files.iter().all(|f| f.size.is_none()), "an old manifest");
    let core = core(&t.url, &rt);
    for i in 0..3 {
        let path = format!("g/current/s{i}.proto");
        let Entry::File { size, .. } = core.entry(&path).unwrap() else {
            panic!("{path}");
        };
        let bytes = core.content(&path).unwrap();
        assert_eq!(size, bytes.len() as u64);
        assert!(
            std::str::from_utf8(&bytes)
                .unwrap()
                .contains(&format!("token{i}"))
        );
    }
}

#[test]
fn old_store_mounts_memory() {
    old_store_mounts(Backend::Memory);
}

#[test]
fn old_store_mounts_local() {
    old_store_mounts(Backend::Local);
}

#[test]
fn old_store_mounts_s3() {
    old_store_mounts(Backend::S3);
}

/// The real FUSE mount's cold compile of a packed tree: after the first
/// listing, a LOOKUP and getattr of every file cost no request at all;
/// protoc over every file costs at most one GET per 50 files, mount start
/// included, with and without prefetch; output equals protoc on local
/// disk. The same store with its tree indexes removed (as an older build
/// leaves it) compiles the same.
async fn cold_compile(backend: Backend) {
    use crate::mount::{Mounted, cli, proto_files, protoc, stats};
    if !crate::mount::fuse_available() {
        return;
    }
    let Some((url, _dir)) = common::fresh_url(backend).await else {
        return;
    };
    let src = tempfile::tempdir().unwrap();
    for f in corpus().into_values().flatten() {
        let p = src.path().join(&f.path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, &f.content).unwrap();
    }
    let src_dir = src.path().to_str().unwrap().to_string();
    tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            cli(&url, &["namespace", "create", "g"]);
            cli(&url, &["load", "g", &src_dir, "--promote"]);
        }
    })
    .await
    .unwrap();
    let files = proto_files(src.path());
    assert_eq!(files.len(), corpus_files());
    let out = tempfile::tempdir().unwrap();
    let local = protoc(src.path(), &out.path().join("local.pb"), &files);

    let url2 = url.clone();
    let (files, out, local) = tokio::task::spawn_blocking(move || {
        for prefetch in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            // No refresh round during the compile: its probes are not the
            // compile's cost.
            let extra: &[&str] = if prefetch {
                &["-n", "g", "--refresh", "60m"]
            } else {
                &["-n", "g", "--refresh", "60m", "--no-prefetch"]
            };
            let m = Mounted::start_in(dir, &url2, extra);
            let root = m.path("g/current");
            if !prefetch {
                std::fs::read_dir(&root).unwrap().count(); // loads the namespace
                let before = stats(&m);
                for f in &files {
                    assert!(std::fs::metadata(root.join(f)).unwrap().len() > 0);
                }
                let after = stats(&m);
                assert!(after["fuse_lookup"] > before["fuse_lookup"]);
                assert_eq!(
                    after["requests_total"],
                    before["requests_total"],
                    "LOOKUP/getattr of {} files made requests",
                    files.len()
                );
            }
            let mounted = protoc(&root, &out.path().join("m.pb"), &files);
            assert_eq!(
                mounted, local,
                "protoc through the mount differs from local disk"
            );
            let s = stats(&m);
            assert!(
                s["requests_get"] as usize * 50 <= files.len(),
                "prefetch {prefetch}: {} GETs for a cold compile of {} files",
                s["requests_get"],
                files.len()
            );
            m.stop();
        }
        (files, out, local)
    })
    .await
    .unwrap();

    // Without tree indexes (an older build's store): the same output.
    let raw = protoshelf::objstore::url::open(&url).unwrap().store;
    {
        use futures::TryStreamExt;
        let prefix = object_store::path::Path::from("ns/g/trees");
        let listed: Vec<object_store::ObjectMeta> =
            raw.list(Some(&prefix)).try_collect().await.unwrap();
        assert!(!listed.is_empty());
        for o in listed {
            raw.delete(&o.location).await.unwrap();
        }
    }
    tokio::task::spawn_blocking(move || {
        let m = Mounted::start_in(tempfile::tempdir().unwrap(), &url, &["-n", "g"]);
        let mounted = protoc(&m.path("g/current"), &out.path().join("old.pb"), &files);
        assert_eq!(mounted, local, "an unpacked store through the mount");
        m.stop();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_compile_local() {
    cold_compile(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_compile_s3() {
    cold_compile(Backend::S3).await;
}
