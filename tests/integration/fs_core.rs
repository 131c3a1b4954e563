//! The filesystem core without a kernel, on every backend: the tree, the
//! attributes, contents, refresh, history and the negative cache.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::Backend;
use protoshelf::fs::{Entry, FsCore, FsError, Options, Validity};
use protoshelf::registry::{Registry, SourceFile};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

fn files(dir: &str) -> Vec<SourceFile> {
    let root = std::path::Path::new(EXAMPLES).join(dir);
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(&root).sort_by_file_name() {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let rel = e
                .path()
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push(SourceFile::new(rel, std::fs::read(e.path()).unwrap()));
        }
    }
    out
}

fn check(backend: Backend) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some((url, _dir)) = rt.block_on(common::fresh_url(backend)) else {
        return;
    };
    let registry = rt.block_on(Registry::open(&url)).unwrap();
    rt.block_on(async {
        registry
            .create_namespace("shop", Default::default(), Default::default())
            .await
            .unwrap();
        registry
            .publish(
                "__builtins__",
                "common",
                files("builtins"),
                Default::default(),
            )
            .await
            .unwrap();
        registry.promote("__builtins__", false).await.unwrap();
        let shop: Vec<SourceFile> = files("shop")
            .into_iter()
            .filter(|f| !f.path.contains("orders"))
            .collect();
        registry
            .publish("shop", "shop.base", shop, Default::default())
            .await
            .unwrap();
        registry.promote("shop", false).await.unwrap();
    });
    let store = rt.block_on(protoshelf::ObjStore::open(&url)).unwrap();
    let core = Arc::new(FsCore::new(
        store,
        rt.handle().clone(),
        Options {
            namespaces: vec![],
            refresh: Duration::from_millis(50),
        },
    ));

    // The root and a namespace.
    let root = core.list("").unwrap();
    assert!(
        root.contains_key("shop")
            && root.contains_key("__builtins__")
            && root.contains_key(".protoshelf")
    );
    let ns: Vec<String> = core.list("shop").unwrap().into_keys().collect();
    assert_eq!(
        ns,
        [
            "current",
            "current.binpb",
            "history",
            "schemas",
            "staged",
            "staged.binpb"
        ]
    );
    // current/ merges builtins under the namespace's files.
    let top: Vec<String> = core.list("shop/current").unwrap().into_keys().collect();
    assert_eq!(top, ["common", "google", "shop"]);
    // The well-known types are part of the include root.
    let ts = core
        .content("shop/current/google/protobuf/timestamp.proto")
        .unwrap();
    assert!(String::from_utf8_lossy(&ts).contains("message Timestamp"));
    assert!(
        core.entry("shop/staged/google/protobuf/descriptor.proto")
            .is_ok()
    );
    let price = core.content("shop/current/shop/types/price.proto").unwrap();
    assert_eq!(
        price,
        std::fs::read(format!("{EXAMPLES}/shop/shop/types/price.proto")).unwrap()
    );
    match core.entry("shop/current/shop/types/price.proto").unwrap() {
        Entry::File {
            size, immutable, ..
        } => assert_eq!((size, immutable), (price.len() as u64, false)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        core.entry("shop/current/shop").unwrap(),
        Entry::Dir { .. }
    ));
    assert_eq!(
        core.entry("shop/current/nope.proto"),
        Err(FsError::NotFound)
    );
    assert_eq!(
        core.list("shop/current/common/money.proto"),
        Err(FsError::NotDir)
    );
    assert_eq!(core.entry("nope"), Err(FsError::NotFound));
    assert_eq!(core.entry("shop/schemas/x"), Err(FsError::NotFound));
    assert_eq!(core.entry("shop/history/99"), Err(FsError::NotFound));

    // Listings come from cached state: no request per entry, kinds included.
    let before = core.store().requests();
    let types = core.list("shop/current/shop/types").unwrap();
    assert!(matches!(
        types["price.proto"],
        protoshelf::fs::Kind::File(Some(_))
    ));
    assert_eq!(
        (core.store().requests() - before).total(),
        0,
        "a listing made requests"
    );
    assert_eq!(
        core.list("shop/schemas/shop.base").unwrap()["current"],
        protoshelf::fs::Kind::Symlink
    );

    // Schemas: symlinks, versions, descriptor and version.json.
    assert_eq!(
        core.readlink("shop/schemas/shop.base/current").unwrap(),
        "versions/1"
    );
    assert_eq!(
        core.entry("shop/schemas/shop.base/staged"),
        Err(FsError::NotFound)
    );
    let v1: Vec<String> = core
        .list("shop/schemas/shop.base/versions/1")
        .unwrap()
        .into_keys()
        .collect();
    assert_eq!(v1, ["descriptor.binpb", "shop", "version.json"]);
    assert!(
        core.entry("shop/schemas/shop.base/versions/1/descriptor.binpb")
            .unwrap()
            .immutable()
    );
    let json: serde_json::Value = serde_json::from_slice(
        &core
            .content("shop/schemas/shop.base/versions/1/version.json")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["version"], 1);
    assert!(json.get("writer_id").is_none());
    // The tree's descriptor set holds every file of current/, dependencies first.
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(core.content("shop/current.binpb").unwrap())
        .unwrap();
    let names: Vec<&str> = set.file.iter().map(|f| f.name()).collect();
    for f in [
        "common/money.proto",
        "shop/types/price.proto",
        "shop/catalog/item.proto",
        "google/protobuf/timestamp.proto",
    ] {
        assert!(names.contains(&f), "{f} missing from {names:?}");
    }
    assert!(
        names.iter().position(|n| *n == "common/money.proto")
            < names.iter().position(|n| *n == "shop/types/price.proto")
    );

    // A change appears after a refresh; history keeps the old tree; an open
    // file's bytes (held by its handle) do not change.
    let held = core.content("shop/current/shop/types/price.proto").unwrap();
    let seq_before = core.list("shop/history").unwrap().len() as u64;
    rt.block_on(async {
        let mut shop = files("shop");
        for f in shop.iter_mut().filter(|f| f.path.ends_with("price.proto")) {
            f.content.extend_from_slice(b"\n// revised\n");
        }
        registry
            .publish("shop", "shop.base", shop, Default::default())
            .await
            .unwrap();
    });
    // A refresh reports what changed (for the kernel to forget), and only that.
    let changes = core.refresh();
    for p in [
        "shop/staged/shop/orders",
        "shop/staged/shop/orders/order.proto",
        "shop/staged/shop/types/price.proto",
        "shop/staged.binpb",
        "shop/schemas/shop.base/staged",
        "shop/schemas/shop.base/versions/2",
        &format!("shop/history/{}", seq_before + 1),
    ] {
        assert!(changes.entries.contains(p), "{p} not in {changes:?}");
    }
    for dir in [
        "shop",
        "shop/staged/shop",
        "shop/staged/shop/types",
        "shop/history",
    ] {
        assert!(changes.inodes.contains(dir), "{dir} not in {changes:?}");
    }
    assert!(
        !changes
            .entries
            .iter()
            .any(|p| p.starts_with("shop/current/")),
        "staging reported changes in current/: {changes:?}"
    );
    assert!(!changes.entries.contains("shop/staged/common/money.proto"));
    assert!(
        core.refresh().is_empty(),
        "an idle refresh reported changes"
    );
    assert!(
        core.content("shop/staged/shop/orders/order.proto").is_ok(),
        "staged shows the proposed tree"
    );
    assert_eq!(
        core.entry("shop/current/shop/orders/order.proto"),
        Err(FsError::NotFound)
    );
    rt.block_on(registry.promote("shop", false)).unwrap();
    let changes = core.refresh();
    for p in [
        "shop/current/shop/types/price.proto",
        "shop/current/shop/orders",
        "shop/current/shop/orders/order.proto",
        "shop/schemas/shop.base/current",
        "shop/current.binpb",
    ] {
        assert!(changes.entries.contains(p), "{p} not in {changes:?}");
    }
    assert!(changes.inodes.contains("shop/schemas/shop.base/current"));
    assert!(!changes.entries.contains("shop/current/common/money.proto"));
    assert!(
        String::from_utf8_lossy(&core.content("shop/current/shop/types/price.proto").unwrap())
            .contains("revised")
    );
    assert!(!String::from_utf8_lossy(&held).contains("revised"));
    let old = core
        .content(&format!("shop/history/{seq_before}/shop/types/price.proto"))
        .unwrap();
    assert_eq!(
        old, held,
        "history shows the tree as it was after that commit"
    );
    assert!(
        core.entry(&format!("shop/history/{seq_before}"))
            .unwrap()
            .immutable()
    );

    // What the kernel may cache until told: everything below a namespace
    // (misses included); misses at the root and the root for one interval.
    assert_eq!(
        core.validity("shop/current/nope.proto", false),
        Validity::UntilChanged
    );
    assert_eq!(core.validity("shop/current", true), Validity::UntilChanged);
    assert_eq!(core.validity("late", false), Validity::Refresh);
    assert_eq!(core.validity("", true), Validity::Refresh);
    assert_eq!(core.validity(".protoshelf/stats", true), Validity::Live);
    assert_eq!(core.validity(".protoshelf", true), Validity::UntilChanged);

    // A namespace created later appears; misses are cached until the next
    // refresh; the root's mtime moves, so the kernel re-reads its listing.
    let root_mtime = |core: &FsCore| match core.entry("").unwrap() {
        Entry::Dir { mtime, .. } => mtime,
        other => panic!("{other:?}"),
    };
    let root_before = root_mtime(&core);
    assert_eq!(core.entry("late"), Err(FsError::NotFound));
    let before = core.store().requests();
    assert_eq!(core.entry("late"), Err(FsError::NotFound));
    assert_eq!(
        (core.store().requests() - before).total(),
        0,
        "a repeated miss costs no request"
    );
    rt.block_on(registry.create_namespace("late", Default::default(), Default::default()))
        .unwrap();
    std::thread::sleep(Duration::from_millis(60));
    core.refresh();
    assert!(matches!(core.entry("late"), Ok(Entry::Dir { .. })));
    assert!(
        root_mtime(&core) > root_before,
        "the root's mtime did not move"
    );

    // A namespace file at a well-known path (a forced publish) shadows it.
    let custom = "syntax = \"proto3\";\npackage google.protobuf;\nmessage Timestamp { int64 seconds = 1; }\n";
    rt.block_on(async {
        let opts = protoshelf::registry::PublishOptions {
            force: true,
            ..Default::default()
        };
        let file = SourceFile::new("google/protobuf/timestamp.proto", custom);
        registry
            .publish("late", "wkt", vec![file], opts)
            .await
            .unwrap();
        registry.promote("late", false).await.unwrap();
    });
    core.refresh();
    assert_eq!(
        core.content("late/current/google/protobuf/timestamp.proto")
            .unwrap(),
        custom.as_bytes()
    );
    assert!(
        String::from_utf8_lossy(
            &core
                .content("late/current/google/protobuf/duration.proto")
                .unwrap()
        )
        .contains("message Duration")
    );

    // An idle refresh round costs one GET per loaded namespace.
    core.refresh();
    let before = core.store().requests();
    core.refresh();
    let cost = core.store().requests() - before;
    let loaded = 3; // shop, late, __builtins__
    assert_eq!((cost.get, cost.put, cost.list), (loaded, 0, 0), "{cost}");
    assert!(core.stats().contains("refreshes"));
    drop(core);

    // Prefetch: once a namespace is shown, its current/ is fetched in the
    // background; reading all of it then costs no request.
    let store = rt.block_on(protoshelf::ObjStore::open(&url)).unwrap();
    let core = FsCore::new(
        store,
        rt.handle().clone(),
        Options {
            namespaces: vec![],
            refresh: Duration::from_secs(60),
        },
    )
    .with_prefetch(true);
    let files = tree_files(&core, "shop/current");
    assert!(files.len() > 5, "{files:?}");
    let quiet = || {
        let before = core.store().requests().total();
        std::thread::sleep(Duration::from_millis(200));
        core.store().requests().total() == before
    };
    let started = std::time::Instant::now();
    while !quiet() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "prefetch never ended"
        );
    }
    let before = core.store().requests();
    for f in &files {
        core.content(f).unwrap();
    }
    let cost = core.store().requests() - before;
    assert_eq!(cost.total(), 0, "reading a prefetched tree: {cost}");
    drop(core);
    drop(rt);
}

/// A soft-deleted namespace, as `namespace list` shows it: gone from the
/// root's listing (with or without `--namespace`) and ENOENT by every path
/// below it, its name and the root reported changed by the refresh that
/// sees the delete (so the kernel forgets them); undelete brings it back.
/// One never shown (not loaded) is left out of the listing too.
fn deleted_namespaces_are_hidden(backend: Backend) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some((url, _dir)) = rt.block_on(common::fresh_url(backend)) else {
        return;
    };
    let registry = rt.block_on(Registry::open(&url)).unwrap();
    let text = "syntax = \"proto3\";\npackage g;\nmessage G {}\n";
    rt.block_on(async {
        for ns in ["gone", "unseen", "kept"] {
            registry
                .create_namespace(ns, Default::default(), Default::default())
                .await
                .unwrap();
        }
        let file = SourceFile::new("g/g.proto", text);
        registry
            .publish("gone", "g", vec![file], Default::default())
            .await
            .unwrap();
        registry.promote("gone", false).await.unwrap();
    });
    let core_with = |namespaces: Vec<String>| {
        let store = rt.block_on(protoshelf::ObjStore::open(&url)).unwrap();
        FsCore::new(
            store,
            rt.handle().clone(),
            Options {
                namespaces,
                refresh: Duration::from_millis(50),
            },
        )
    };
    let core = core_with(vec![]);
    let given = core_with(vec!["gone".into(), "kept".into()]);
    let file = "gone/current/g/g.proto";
    let pinned = "gone/schemas/g/versions/1/g/g.proto";
    assert_eq!(core.content(file).unwrap(), text.as_bytes());
    assert_eq!(given.content(file).unwrap(), text.as_bytes());
    let root = |core: &FsCore| core.list("").unwrap().into_keys().collect::<Vec<_>>();
    assert_eq!(root(&core), [".protoshelf", "gone", "kept", "unseen"]);
    assert_eq!(root(&given), [".protoshelf", "gone", "kept"]);

    rt.block_on(async {
        registry.delete_namespace("gone").await.unwrap();
        registry.delete_namespace("unseen").await.unwrap();
    });
    std::thread::sleep(Duration::from_millis(60));
    for core in [&core, &given] {
        let changes = core.refresh();
        assert!(
            changes.entries.contains("gone") && changes.inodes.contains(""),
            "{changes:?}"
        );
        for path in ["gone", "gone/current", file, "gone/schemas/g", pinned] {
            assert_eq!(core.entry(path), Err(FsError::NotFound), "{path}");
        }
        assert_eq!(core.list("gone"), Err(FsError::NotFound));
        assert_eq!(core.content(file), Err(FsError::NotFound));
    }
    assert_eq!(root(&core), [".protoshelf", "kept"]);
    assert_eq!(root(&given), [".protoshelf", "kept"]);
    assert_eq!(core.entry("unseen"), Err(FsError::NotFound));

    rt.block_on(async {
        registry.undelete_namespace("gone").await.unwrap();
    });
    std::thread::sleep(Duration::from_millis(60));
    for core in [&core, &given] {
        let changes = core.refresh();
        assert!(changes.entries.contains("gone"), "{changes:?}");
        assert_eq!(core.content(file).unwrap(), text.as_bytes());
        assert_eq!(core.content(pinned).unwrap(), text.as_bytes());
    }
    assert_eq!(root(&core), [".protoshelf", "gone", "kept"]);
    assert_eq!(root(&given), [".protoshelf", "gone", "kept"]);
    drop((core, given));
    drop(rt);
}

/// Every file below `dir`, recursively, as mount paths.
fn tree_files(core: &FsCore, dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (name, kind) in core.list(dir).unwrap() {
        let path = format!("{dir}/{name}");
        match kind {
            protoshelf::fs::Kind::Dir => out.extend(tree_files(core, &path)),
            _ => out.push(path),
        }
    }
    out
}

/// One `#[test]` per backend for `check` (which makes its own runtime).
macro_rules! per_backend {
    ($check:ident: $memory:ident, $local:ident, $s3:ident) => {
        #[test]
        fn $memory() {
            $check(Backend::Memory);
        }

        #[test]
        fn $local() {
            $check(Backend::Local);
        }

        #[test]
        fn $s3() {
            $check(Backend::S3);
        }
    };
}

per_backend!(check: core_on_memory, core_on_local_directory, core_on_s3);
per_backend!(
    deleted_namespaces_are_hidden: deleted_namespaces_are_hidden_on_memory,
    deleted_namespaces_are_hidden_on_local_directory,
    deleted_namespaces_are_hidden_on_s3
);
