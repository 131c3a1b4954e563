//! Memory bounded by the input: a publish whose estimated peak memory is
//! over `--max-memory` (`Limits::max_memory`) is refused before anything is
//! compiled or written (exit 1, with the estimate and how to raise it); one
//! under a small cap that fits succeeds; and the compile in batches (each
//! batch's pool dropped once its files are encoded) stores the very bytes
//! one compile of everything would.

use crate::common;

use std::process::Command;

use object_store::ObjectStoreExt;
use object_store::path::Path;
use protoshelf::Error;
use protoshelf::registry::{Limits, Registry, SourceFile};

use common::{Backend, TestStore};

const BIN: &str = env!("CARGO_BIN_EXE_protoshelf");

/// A chain of `n` files: each imports the one before it and the first, in
/// a package per ten files.
fn chain(n: usize) -> Vec<SourceFile> {
    (0..n)
        .map(|k| {
            let imports = match k {
                0 => String::new(),
                1 => "import \"c/f0.proto\";\n".to_string(),
                _ => format!("import \"c/f{}.proto\";\nimport \"c/f0.proto\";\n", k - 1),
            };
            let fields = match k {
                0 => String::new(),
                _ => format!(
                    "  p{}.M{} prev = 1;\n  p0.M0 first = 2;\n",
                    (k - 1) / 10,
                    k - 1
                ),
            };
            let text = format!(
                "syntax = \"proto3\";\npackage p{};\n{imports}// message {k}\nmessage M{k} {{\n{fields}  string name = 3;\n}}\n",
                k / 10
            );
            SourceFile::new(format!("c/f{k}.proto"), text)
        })
        .collect()
}

on_every_backend!(
    a_batched_compile_stores_what_one_compile_would,
    a_publish_over_max_memory_is_refused_and_writes_nothing,
    a_load_under_a_small_cap_that_fits_succeeds,
    errors_found_without_source_info_still_name_file_line_column,
);

/// Pools are given files without their source info, and a failing file is
/// compiled again whole: its error still names file:line:column, in the
/// first batch and in a later one (its imports decoded from an earlier
/// batch), for an error the pool finds and for a missing import.
async fn errors_found_without_source_info_still_name_file_line_column(t: TestStore) {
    let r = Registry::new(t.store.clone());
    r.create_namespace("m", Default::default(), Default::default())
        .await
        .unwrap();
    let before = common::content_snapshot(&t.raw()).await;
    for (k, bad, expected) in [
        // protox points at the first use of the number.
        (
            3,
            "  int32 twice = 3;\n",
            "c/f3.proto:9:17: field number '3' is already used",
        ),
        (
            300,
            "  int32 twice = 3;\n",
            "c/f300.proto:9:17: field number '3' is already used",
        ),
        (300, "  c.Nowhere n = 9;\n", "c/f300.proto:10:"),
    ] {
        let mut files = chain(301);
        let text = String::from_utf8(files[k].content.clone()).unwrap();
        let text = text.replacen(
            "  string name = 3;\n",
            &format!("  string name = 3;\n{bad}"),
            1,
        );
        files[k] = SourceFile::new(files[k].path.clone(), text);
        let err = r
            .publish("m", "chain", files, Default::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Compile(_)), "{err:?}");
        assert!(err.to_string().contains(expected), "{k} {bad}: {err}");
    }
    let mut files = chain(301);
    let text = String::from_utf8(files[300].content.clone()).unwrap();
    let text = text.replacen("import", "import \"c/nowhere.proto\";\nimport", 1);
    files[300] = SourceFile::new(files[300].path.clone(), text);
    let err = r
        .publish("m", "chain", files, Default::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("c/f300.proto:3:") && err.to_string().contains("c/nowhere.proto"),
        "{err}"
    );
    assert_eq!(common::content_snapshot(&t.raw()).await, before);
}

/// 700 files in one schema: three compile batches, the later ones
/// importing files of the earlier ones (a chain, opened dependencies
/// first, so protox never recurses along it). The stored set equals the
/// set of one protox compile of every file, byte for byte.
async fn a_batched_compile_stores_what_one_compile_would(t: TestStore) {
    let n = 700;
    assert!(n > 2 * protoshelf::registry::guard::BATCH_FILES);
    let files = chain(n);
    let r = Registry::new(t.store.clone());
    r.create_namespace("m", Default::default(), Default::default())
        .await
        .unwrap();
    let published = r
        .publish("m", "chain", files.clone(), Default::default())
        .await
        .unwrap();
    let stored = t
        .store
        .get_version("m", "chain", published.version)
        .await
        .unwrap()
        .compiled;

    struct Map(std::collections::HashMap<String, String>);
    impl protox::file::FileResolver for Map {
        fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
            match self.0.get(name) {
                Some(text) => protox::file::File::from_source(name, text),
                None => Err(protox::Error::file_not_found(name)),
            }
        }
    }
    let map = files
        .iter()
        .map(|f| {
            (
                f.path.clone(),
                String::from_utf8(f.content.clone()).unwrap(),
            )
        })
        .collect();
    let mut compiler = protox::Compiler::with_file_resolver(Map(map));
    compiler.include_imports(true).include_source_info(true);
    let mut roots: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
    roots.sort();
    for root in &roots {
        compiler.open_file(root).unwrap();
    }
    let pool = compiler.descriptor_pool();
    let expected = protoshelf::registry::compile::encode_set(
        &protoshelf::registry::compile::closure(&pool, &roots),
    );
    assert_eq!(stored.len(), expected.len());
    assert!(
        stored == expected,
        "the batched set differs from one compile's"
    );
}

fn cli(url: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("PROTOSHELF_STORE", url)
        .env_remove("PROTOSHELF_NAMESPACE")
        .env_remove("PROTOSHELF_MAX_MEMORY")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// A tree with one dense file, `wide/wide.proto`: `fields` fields (30,000:
/// about 600 KB, estimated at about 110 MiB).
fn dense_tree(fields: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("wide")).unwrap();
    let mut text = String::from("syntax = \"proto3\";\npackage wide;\nmessage Wide {\n");
    for i in 0..fields {
        let number = if i + 1 >= 19_000 { i + 1001 } else { i + 1 };
        text.push_str(&format!("bool f{i} = {number};\n"));
    }
    text.push_str("}\n");
    std::fs::write(dir.path().join("wide/wide.proto"), text).unwrap();
    dir
}

/// Over the cap: refused with exit 1 before anything is written, by the
/// library (`MemoryLimit`, a user error) and by `push`, `load` and `check`
/// (even with `--create`: no namespace, no store is made).
async fn a_publish_over_max_memory_is_refused_and_writes_nothing(t: TestStore) {
    let r = Registry::new(t.store.clone()).with_limits(Limits {
        max_memory: Some(100 << 20),
        ..Limits::default()
    });
    r.create_namespace("m", Default::default(), Default::default())
        .await
        .unwrap();
    let before = common::content_snapshot(&t.raw()).await;
    let tree = dense_tree(30_000);
    let text = std::fs::read(tree.path().join("wide/wide.proto")).unwrap();
    let needed = protoshelf::registry::limits::memory_estimate([text.as_slice()]);
    assert!(needed > 100 << 20, "{needed}");
    let err = r
        .publish(
            "m",
            "wide",
            vec![SourceFile::new("wide/wide.proto", text)],
            Default::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::MemoryLimit { limit, needed: n, .. } if limit == 100 << 20 && n == needed),
        "{err:?}"
    );
    assert_eq!(err.exit_code(), 1);
    assert_eq!(err.kind(), "memory_limit");
    assert_eq!(common::content_snapshot(&t.raw()).await, before);

    if t.backend == Backend::Memory {
        return; // the CLI runs in its own process
    }
    let root = tree.path().display().to_string();
    for args in [
        vec!["push", "m", "wide", &root, "--max-memory", "100MiB"],
        vec![
            "push",
            "other",
            "wide",
            &root,
            "--create",
            "--max-memory",
            "100M",
        ],
        vec!["load", "other", &root, "--create", "--max-memory", "100MiB"],
        vec!["check", "m", "wide", &root, "--max-memory", "100MiB"],
    ] {
        let (code, text) = cli(&t.url, &args);
        assert_eq!(code, Some(1), "{args:?}: {text}");
        assert!(
            text.contains("needs about")
                && text.contains("more than the limit of 100 MiB")
                && text.contains("nothing was written")
                && text.contains("raise the limit with --max-memory"),
            "{args:?}: {text}"
        );
    }
    // The environment variable sets it too.
    let out = Command::new(BIN)
        .args(["push", "m", "wide", &root])
        .env("PROTOSHELF_STORE", &t.url)
        .env("PROTOSHELF_MAX_MEMORY", "100MiB")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(common::content_snapshot(&t.raw()).await, before);
    assert!(
        t.raw().head(&Path::from("namespaces/other")).await.is_err(),
        "--create made the namespace of a refused publish"
    );
}

/// A small cap the input fits under: the load succeeds (and the dense
/// file, under the default cap, publishes).
async fn a_load_under_a_small_cap_that_fits_succeeds(t: TestStore) {
    if t.backend == Backend::Memory {
        let r = Registry::new(t.store.clone()).with_limits(Limits {
            max_memory: Some(80 << 20),
            ..Limits::default()
        });
        r.create_namespace("m", Default::default(), Default::default())
            .await
            .unwrap();
        r.publish("m", "chain", chain(20), Default::default())
            .await
            .unwrap();
        return;
    }
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    for (ns, dir) in [("__builtins__", "builtins"), ("m", "shop")] {
        let (code, text) = cli(
            &t.url,
            &[
                "load",
                ns,
                &format!("{examples}/{dir}"),
                "--create",
                "--promote",
                "--max-memory",
                "80MiB",
            ],
        );
        assert_eq!(code, Some(0), "{text}");
    }
    let tree = dense_tree(30_000);
    let root = tree.path().display().to_string();
    let (code, text) = cli(&t.url, &["push", "m", "wide", &root]);
    assert_eq!(code, Some(0), "{text}");
}

/// Asserts that the peak `--stats` reported in `text` (Linux) is within
/// `estimate` bytes.
fn assert_bounded(what: &str, text: &str, estimate: u64) {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("memory: peak "))
        .unwrap_or_else(|| panic!("no peak memory in --stats: {text}"));
    let peak: u64 = line.trim_end_matches(" MiB").parse::<u64>().unwrap() << 20;
    eprintln!(
        "{what}: peak {} MiB, estimate {} MiB",
        peak >> 20,
        estimate >> 20
    );
    assert!(
        peak <= estimate,
        "{what}: peak {peak} over the estimate {estimate}"
    );
}

/// The estimate `--max-memory` is checked against is an upper bound of
/// what the publish then uses: measured (`--stats`, the process's peak
/// resident memory) for a load of a tree of 1,201 files, a push of one
/// dense file, its `check` (incompatible) and a `push --promote` of a
/// compatible change, against `memory_estimate` (`memory_estimate_checked`
/// when checked) of the same sources.
#[test]
fn the_estimate_bounds_the_measured_peak() {
    use protoshelf::registry::limits::memory_estimate;
    let store = tempfile::tempdir().unwrap();
    let url = store.path().join("s").display().to_string();
    let (code, text) = cli(&url, &["init"]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = cli(&url, &["namespace", "create", "m"]);
    assert_eq!(code, Some(0), "{text}");

    // A tree: 40 schemas of 30 files of 40 fields, each importing a shared file.
    let tree = tempfile::tempdir().unwrap();
    let mut sources = Vec::new();
    let mut write = |path: String, text: String| {
        let at = tree.path().join(&path);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::write(at, &text).unwrap();
        sources.push(text.into_bytes());
    };
    write(
        "gen/common/base.proto".into(),
        "syntax = \"proto3\";\npackage gen.common;\nmessage Base { string id = 1; }\n".into(),
    );
    for s in 0..40 {
        for f in 0..30 {
            let fields: String = (2..42)
                .map(|n| format!("  // field {n} of message {f}\n  int64 value_{n} = {n};\n"))
                .collect();
            write(
                format!("gen/d{s:02}/f{f:02}.proto"),
                format!(
                    "syntax = \"proto3\";\npackage gen.d{s:02};\nimport \"gen/common/base.proto\";\nmessage M{f} {{\n  gen.common.Base base = 1;\n{fields}}}\n"
                ),
            );
        }
    }
    let root = tree.path().display().to_string();
    let (code, text) = cli(&url, &["--stats", "load", "m", &root, "--promote", "-q"]);
    assert_eq!(code, Some(0), "{text}");
    let estimate = memory_estimate(sources.iter().map(Vec::as_slice));
    assert_bounded("a load of 1,201 files", &text, estimate);

    // One dense file: 100,000 fields (about 2 MB).
    let dense = dense_tree(100_000);
    let text = std::fs::read(dense.path().join("wide/wide.proto")).unwrap();
    let estimate = memory_estimate([text.as_slice()]);
    let root = dense.path().display().to_string();
    let (code, text) = cli(&url, &["--stats", "push", "m", "wide", &root]);
    assert_eq!(code, Some(0), "{text}");
    assert_bounded("a dense file", &text, estimate);

    // Checked against the stored version (`check`, `push --promote`): two
    // pools, the estimate that counts them. The change is incompatible, so
    // the violation's location is looked up too (from the encoded set).
    let (code, text) = cli(&url, &["promote", "m"]);
    assert_eq!(code, Some(0), "{text}");
    let path = dense.path().join("wide/wide.proto");
    let source = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
    let changed = source.replacen("bool f7 = 8;", "int64 f7 = 8;", 1);
    std::fs::write(&path, &changed).unwrap();
    let estimate = protoshelf::registry::limits::memory_estimate_checked([changed.as_bytes()]);
    let (code, text) = cli(&url, &["--stats", "check", "m", "wide", &root]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("wide/wide.proto:11:1: FIELD_SAME_TYPE"),
        "{text}"
    );
    assert_bounded("checking a dense file", &text, estimate);
    let compatible = source.replacen("bool f7 = 8;", "bool f7 = 8;\nbool extra = 200000;", 1);
    std::fs::write(&path, &compatible).unwrap();
    let estimate = protoshelf::registry::limits::memory_estimate_checked([compatible.as_bytes()]);
    let (code, text) = cli(
        &url,
        &["--stats", "push", "m", "wide", &root, "--promote", "-q"],
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("current 1 -> 2"), "{text}");
    assert_bounded("push --promote of a dense file", &text, estimate);
}
