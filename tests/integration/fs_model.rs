//! Property test of the mount's core (`Vfs` over `FsCore`, no kernel)
//! against a small reference model of a namespace's trees: random
//! publishes, promotes and discards, and after each one the mount, walked
//! by inode as the kernel would (LOOKUP, READDIR, GETATTR, OPEN, READ,
//! RELEASE), shows exactly the model's `current/` and `staged/` files
//! with their bytes, the schemas' pointer links, and a refresh reports
//! every path whose answer changed.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use common::Backend;
use proptest::prelude::*;
use protoshelf::compat::Policy;
use protoshelf::fs::vfs::{FileKind, Opened, ROOT, Vfs};
use protoshelf::fs::{FsCore, Options};
use protoshelf::registry::{Registry, SourceFile};

const NS: &str = "m";
const SCHEMAS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    /// Schema, content variant, whether it has a second file.
    Publish(usize, u8, bool),
    Promote,
    Discard,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..SCHEMAS.len(), 0u8..3, any::<bool>()).prop_map(|(s, v, two)| Op::Publish(s, v, two)),
        2 => Just(Op::Promote),
        1 => Just(Op::Discard),
    ]
}

type Files = BTreeMap<String, String>;

/// Each schema's files at its pointers, as the registry was told.
#[derive(Debug, Default, Clone)]
struct Model {
    current: BTreeMap<&'static str, Files>,
    staged: BTreeMap<&'static str, Files>,
}

impl Model {
    fn current_tree(&self) -> Files {
        self.current
            .values()
            .flatten()
            .map(|(p, c)| (p.clone(), c.clone()))
            .collect()
    }

    /// What `staged/` shows: each schema's staged files, else its current.
    fn staged_tree(&self) -> Files {
        let mut out = Files::new();
        for s in SCHEMAS {
            if let Some(f) = self.staged.get(s).or(self.current.get(s)) {
                out.extend(f.iter().map(|(p, c)| (p.clone(), c.clone())));
            }
        }
        out
    }
}

/// A schema's files: its own package directory, so schemas never collide.
fn files(schema: &str, variant: u8, two: bool) -> Files {
    let mut out = Files::new();
    out.insert(
        format!("{schema}/x.proto"),
        format!(
            "syntax = \"proto3\";\npackage {schema};\nmessage X {{\n  int32 f{variant} = 1;\n}}\n"
        ),
    );
    if two {
        out.insert(
            format!("{schema}/y/z.proto"),
            format!("syntax = \"proto3\";\npackage {schema}.y;\nmessage Z {{\n  string g{variant} = 2;\n}}\n"),
        );
    }
    out
}

/// The inode of `path`, found by LOOKUPs from the root as the kernel does.
fn resolve(vfs: &Vfs, path: &str) -> Option<u64> {
    let mut ino = ROOT;
    for name in path.split('/') {
        ino = vfs.lookup(ino, name).unwrap().attr?.ino;
    }
    Some(ino)
}

/// The bytes of a file by OPEN, READ in small pieces, RELEASE.
fn read_all(vfs: &Vfs, ino: u64) -> Vec<u8> {
    let fh = match vfs.open(ino, true).unwrap() {
        Opened::Handle { fh, .. } => fh,
        Opened::NotNeeded => unreachable!("asked for a handle"),
    };
    let mut out = Vec::new();
    loop {
        let chunk = vfs.read(ino, fh, out.len() as u64, 100).unwrap();
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    vfs.release(fh);
    out
}

/// Every file below directory inode `dir` (at mount path `at`), by
/// READDIR, checking each entry's inode against a LOOKUP of its name and
/// each file's GETATTR size against its bytes. Well-known types (in every
/// tree) are left out.
fn walk(vfs: &Vfs, dir: u64, at: &str, out: &mut Files) {
    for (ino, kind, name) in vfs.readdir(dir).unwrap() {
        if name == "." || name == ".." {
            continue;
        }
        let looked = vfs
            .lookup(dir, &name)
            .unwrap()
            .attr
            .expect("a listed name exists");
        assert_eq!(looked.ino, ino, "READDIR and LOOKUP agree on {at}/{name}");
        let path = if at.is_empty() {
            name.clone()
        } else {
            format!("{at}/{name}")
        };
        match kind {
            FileKind::Dir => walk(vfs, ino, &path, out),
            FileKind::File => {
                if path.starts_with("google/protobuf/") {
                    continue;
                }
                let bytes = read_all(vfs, ino);
                assert_eq!(
                    vfs.getattr(ino).unwrap().1.size,
                    bytes.len() as u64,
                    "{path}"
                );
                out.insert(path, String::from_utf8(bytes).unwrap());
            }
            FileKind::Symlink => panic!("no symlinks in a tree: {path}"),
        }
    }
}

fn tree_of(vfs: &Vfs, tree: &str) -> Files {
    let ino = resolve(vfs, &format!("{NS}/{tree}")).expect("the tree exists");
    let mut out = Files::new();
    walk(vfs, ino, "", &mut out);
    out
}

/// Paths whose file differs between two trees (added, removed, changed).
fn differing(a: &Files, b: &Files) -> BTreeSet<String> {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

fn run(backend: Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some((url, _dir)) = rt.block_on(common::fresh_url(backend)) else {
        return Ok(());
    };
    let registry = rt.block_on(Registry::open(&url)).unwrap();
    rt.block_on(registry.create_namespace(NS, Policy::None, Default::default()))
        .unwrap();
    let store = rt.block_on(protoshelf::ObjStore::open(&url)).unwrap();
    let core = Arc::new(FsCore::new(
        store,
        rt.handle().clone(),
        Options {
            namespaces: vec![],
            refresh: Duration::from_millis(1),
        },
    ));
    let vfs = Vfs::new(core.clone(), Duration::from_secs(1));
    let mut model = Model::default();
    let mut before = (tree_of(&vfs, "current"), tree_of(&vfs, "staged"));
    for op in ops {
        match op {
            Op::Publish(s, variant, two) => {
                let schema = SCHEMAS[s];
                let files = files(schema, variant, two);
                let sources = files
                    .iter()
                    .map(|(p, c)| SourceFile::new(p.clone(), c.clone().into_bytes()))
                    .collect();
                let p = rt
                    .block_on(registry.publish(NS, schema, sources, Default::default()))
                    .unwrap();
                if !p.no_change {
                    model.staged.insert(schema, files);
                }
            }
            Op::Promote => {
                rt.block_on(registry.promote(NS, false)).unwrap();
                for (s, f) in std::mem::take(&mut model.staged) {
                    model.current.insert(s, f);
                }
            }
            Op::Discard => {
                rt.block_on(registry.discard(NS)).unwrap();
                model.staged.clear();
            }
        }
        let changes = core.refresh();
        let now = (tree_of(&vfs, "current"), tree_of(&vfs, "staged"));
        prop_assert_eq!(&now.0, &model.current_tree(), "current/ after {:?}", op);
        prop_assert_eq!(&now.1, &model.staged_tree(), "staged/ after {:?}", op);
        for (tree, old, new) in [
            ("current", &before.0, &now.0),
            ("staged", &before.1, &now.1),
        ] {
            for path in differing(old, new) {
                let changed = format!("{NS}/{tree}/{path}");
                prop_assert!(
                    changes.entries.contains(&changed),
                    "a refresh reports {} (after {:?})",
                    changed,
                    op
                );
            }
        }
        for schema in SCHEMAS {
            for (link, expected) in [
                ("current", model.current.contains_key(schema)),
                ("staged", model.staged.contains_key(schema)),
            ] {
                let path = format!("{NS}/schemas/{schema}/{link}");
                let ino = resolve(&vfs, &path);
                prop_assert_eq!(ino.is_some(), expected, "{}", path);
                if let Some(ino) = ino {
                    let target = vfs.readlink(ino).unwrap();
                    let version = format!("{NS}/schemas/{schema}/{target}");
                    prop_assert!(resolve(&vfs, &version).is_some(), "{} -> {}", path, target);
                }
            }
        }
        prop_assert_eq!(vfs.open_handles(), 0, "every OPEN was released");
        before = now;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn the_mount_shows_the_model_on_memory(ops in prop::collection::vec(op(), 1..10)) {
        run(Backend::Memory, ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]
    #[test]
    fn the_mount_shows_the_model_on_a_local_directory(ops in prop::collection::vec(op(), 1..8)) {
        run(Backend::Local, ops)?;
    }
}
