//! What `push`, `load` and `check` read from disk and what `schema source
//! --out` writes, end to end through the binary on a local directory and
//! on S3 (LocalStack): symbolic links never lead outside the tree given,
//! and refused input changes nothing in the store.

use crate::common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::Backend;

const PROTO: &str = "syntax = \"proto3\";\npackage p;\nmessage M {}\n";

/// The binary against one fresh store, run from a scratch directory.
struct Bin {
    url: String,
    _store_dir: Option<std::sync::Arc<tempfile::TempDir>>,
    work: tempfile::TempDir,
}

impl Bin {
    async fn new(backend: Backend) -> Option<Bin> {
        let (url, dir) = common::fresh_url(backend).await?;
        let b = Bin {
            url,
            _store_dir: dir,
            work: tempfile::tempdir().unwrap(),
        };
        b.ok(&["init"]);
        b.ok(&["namespace", "create", "ns"]);
        Some(b)
    }

    fn run(&self, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_protoshelf"))
            .args(args)
            .current_dir(self.work.path())
            .env("PROTOSHELF_STORE", &self.url)
            .env_remove("PROTOSHELF_NAMESPACE")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Requires exit 1 with every needle in stderr; returns stderr.
    fn refused(&self, args: &[&str], needles: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        for n in needles {
            assert!(stderr.contains(n), "{args:?}: {n:?} not in {stderr}");
        }
        stderr
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.work.path().join(rel)
    }

    fn write(&self, rel: &str, content: &str) -> String {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p.display().to_string()
    }

    async fn content(&self) -> Vec<(String, String)> {
        let raw = protoshelf::objstore::url::open(&self.url).unwrap().store;
        common::content_snapshot(&raw).await
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

async fn links_stay_inside_the_tree(backend: Backend) {
    let Some(b) = Bin::new(backend).await else {
        return;
    };
    b.write("tree/a/x.proto", PROTO);
    b.write(
        "outside/s.proto",
        "syntax = \"proto3\";\npackage ext;\nmessage S {}\n",
    );
    b.write("outside/secret.txt", "TOPSECRET-TOKEN");
    let tree = b.path("tree");
    let before = b.content().await;

    // A directory link out of the tree.
    symlink(b.path("outside"), tree.join("ext")).unwrap();
    for cmd in [
        vec!["push", "ns", "s", s(&tree)],
        vec!["load", "ns", s(&tree)],
        vec!["check", "ns", "s", s(&tree)],
    ] {
        b.refused(&cmd, &["ext", "outside", "--follow-symlinks"]);
    }
    assert_eq!(b.content().await, before, "a refused push wrote");
    // Followed on request.
    b.ok(&["push", "ns", "s", s(&tree), "--follow-symlinks"]);
    assert!(b.ok(&["schema", "source", "ns", "s"]).contains("message S"));
    std::fs::remove_file(tree.join("ext")).unwrap();

    // A file link out of the tree, to a file that is not .proto: refused
    // even when links are followed, and its content is never shown.
    symlink(b.path("outside/secret.txt"), tree.join("a/y.proto")).unwrap();
    let before = b.content().await;
    for follow in [false, true] {
        let mut cmd = vec!["load", "ns", s(&tree)];
        if follow {
            cmd.push("--follow-symlinks");
        }
        let err = b.refused(&cmd, &["y.proto", "secret.txt"]);
        assert!(!err.contains("TOPSECRET"), "content echoed: {err}");
    }
    let arg = tree.join("a/y.proto");
    let err = b.refused(&["push", "ns", "t", s(&arg)], &["y.proto"]);
    assert!(!err.contains("TOPSECRET"), "content echoed: {err}");
    assert_eq!(b.content().await, before, "a refused load wrote");
    std::fs::remove_file(tree.join("a/y.proto")).unwrap();

    // A link inside the tree is read like the file it points to (a tree
    // with two names for one file would define everything twice, so the
    // link alone is pushed; walks through links are unit-tested).
    symlink("a/x.proto", tree.join("z.proto")).unwrap();
    b.ok(&["push", "ns", "s", s(&tree.join("z.proto"))]);
    let source = b.ok(&["schema", "source", "ns", "s"]);
    assert_eq!(source, PROTO);
}

async fn out_never_writes_through_a_link(backend: Backend) {
    let Some(b) = Bin::new(backend).await else {
        return;
    };
    b.write("tree/google/type/t.proto", PROTO);
    b.write(
        "tree/q.proto",
        "syntax = \"proto3\";\npackage q;\nmessage Q {}\n",
    );
    b.ok(&["push", "ns", "s", s(&b.path("tree"))]);
    let elsewhere = b.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    b.write("victim.txt", "KEEP");

    // DIR/google is a link: nothing is written, there or anywhere in DIR.
    let out = b.path("out");
    std::fs::create_dir_all(&out).unwrap();
    symlink(&elsewhere, out.join("google")).unwrap();
    b.refused(
        &["schema", "source", "ns", "s", "--out", s(&out)],
        &["google", "symbolic link"],
    );
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    assert!(!out.join("q.proto").exists(), "half-written");
    std::fs::remove_file(out.join("google")).unwrap();

    // DIR/q.proto is a link to a file outside DIR: left alone.
    symlink(b.path("victim.txt"), out.join("q.proto")).unwrap();
    b.refused(
        &["schema", "source", "ns", "s", "--out", s(&out)],
        &["q.proto", "symbolic link"],
    );
    assert_eq!(
        std::fs::read_to_string(b.path("victim.txt")).unwrap(),
        "KEEP"
    );
    std::fs::remove_file(out.join("q.proto")).unwrap();

    // Without links, every file is written (and rewritten).
    for _ in 0..2 {
        b.ok(&["schema", "source", "ns", "s", "--out", s(&out)]);
    }
    assert_eq!(
        std::fs::read_to_string(out.join("google/type/t.proto")).unwrap(),
        PROTO
    );
}

/// The paths of the schema's staged (else current) version.
fn stored_paths(b: &Bin, schema: &str) -> Vec<String> {
    let files: serde_json::Value =
        serde_json::from_str(&b.ok(&["schema", "source", "ns", schema, "-o", "json"])).unwrap();
    let mut paths: Vec<String> = files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    paths.sort();
    paths
}

/// `push`/`check` name files as protoc does: by their path relative to an
/// import root (`-I`, else the current directory), never by their file
/// name alone; a directory without `-I` is its own root; an argument
/// outside every root is refused and nothing is written.
async fn import_roots(backend: Backend) {
    let Some(b) = Bin::new(backend).await else {
        return;
    };
    let order = "syntax = \"proto3\";\npackage shop.orders;\nmessage Order {}\n";
    let item = "syntax = \"proto3\";\npackage shop.orders;\nimport \"shop/orders/order.proto\";\nmessage Item { Order order = 1; }\n";
    b.write("proto/shop/orders/order.proto", order);
    b.write("proto/shop/orders/item.proto", item);
    b.write(
        "elsewhere/e.proto",
        "syntax = \"proto3\";\npackage e;\nmessage E {}\n",
    );
    let both = [
        "proto/shop/orders/item.proto",
        "proto/shop/orders/order.proto",
    ];

    // A file relative to the current directory (the default root): its
    // whole relative path, so the import of its sibling resolves.
    b.ok(&["push", "ns", "a", both[1]]);
    assert_eq!(stored_paths(&b, "a"), ["proto/shop/orders/order.proto"]);
    // Named so, item.proto's import of shop/orders/order.proto is missing.
    b.refused(
        &["check", "ns", "a", both[0], both[1]],
        &["import 'shop/orders/order.proto' not found"],
    );
    b.ok(&["discard", "ns"]);
    // With -I: relative to the root, given as a path from here, as an
    // absolute path, or as the import path under the root; -I may follow.
    let abs = b.path("proto/shop/orders/order.proto");
    for args in [
        vec!["push", "ns", "s", "-I", "proto", both[0], both[1]],
        vec![
            "push",
            "ns",
            "s",
            "--root",
            "proto",
            "shop/orders/item.proto",
            s(&abs),
        ],
        vec!["push", "ns", "s", "proto/shop", "-I", "proto"],
    ] {
        b.ok(&args);
        assert_eq!(
            stored_paths(&b, "s"),
            ["shop/orders/item.proto", "shop/orders/order.proto"],
            "{args:?}"
        );
        b.ok(&["discard", "ns"]);
    }
    // check reads the same way: compiles only with the right import paths.
    b.ok(&["check", "ns", "s", "-I", "proto", both[0], both[1]]);
    // A directory without -I is its own root, as before.
    b.ok(&["push", "ns", "d", "proto"]);
    assert_eq!(
        stored_paths(&b, "d"),
        ["shop/orders/item.proto", "shop/orders/order.proto"]
    );
    b.ok(&["discard", "ns"]);
    // The first root holding a file names it.
    b.ok(&[
        "push",
        "ns",
        "r",
        "-I",
        "proto/shop",
        "-I",
        "proto",
        both[1],
    ]);
    assert_eq!(stored_paths(&b, "r"), ["orders/order.proto"]);
    b.ok(&["discard", "ns"]);

    // Outside every root: refused, naming -I, and nothing is written.
    let before = b.content().await;
    let outside = b.path("elsewhere/e.proto");
    let scratch = tempfile::tempdir().unwrap();
    let far = scratch.path().join("far.proto");
    std::fs::write(&far, "syntax = \"proto3\";\npackage far;\nmessage F {}\n").unwrap();
    for cmd in ["push", "check"] {
        b.refused(
            &[cmd, "ns", "x", s(&far)],
            &["far.proto", "outside the current directory", "-I/--root"],
        );
        b.refused(
            &[cmd, "ns", "x", "-I", "proto", s(&outside)],
            &["e.proto", "outside the import root proto", "-I/--root"],
        );
        b.refused(
            &[cmd, "ns", "x", "-I", "proto", "elsewhere"],
            &["elsewhere: outside the import root proto"],
        );
        b.refused(
            &[cmd, "ns", "x", "-I", "nope", both[0]],
            &["-I/--root nope: not a directory"],
        );
    }
    assert_eq!(b.content().await, before, "a refused push wrote");
}

/// `load` of a googleapis-style tree: the vendored well-known types under
/// google/protobuf/ are skipped with a note (imports of them resolve),
/// `--include`/`--exclude` pick files by path relative to the tree, and
/// `--metadata` is recorded on every version.
async fn load_filters(backend: Backend) {
    let Some(b) = Bin::new(backend).await else {
        return;
    };
    b.write(
        "apis/google/protobuf/duration.proto",
        "syntax = \"proto3\";\npackage google.protobuf;\nmessage Duration { int64 seconds = 1; int32 nanos = 2; }\n",
    );
    b.write(
        "apis/google/protobuf/timestamp.proto",
        "syntax = \"proto3\";\npackage google.protobuf;\nmessage Timestamp { int64 seconds = 1; int32 nanos = 2; }\n",
    );
    b.write(
        "apis/google/type/interval.proto",
        "syntax = \"proto3\";\npackage google.type;\nimport \"google/protobuf/timestamp.proto\";\nmessage Interval { google.protobuf.Timestamp start_time = 1; }\n",
    );
    b.write(
        "apis/google/api/http.proto",
        "syntax = \"proto3\";\npackage google.api;\nmessage Http {}\n",
    );
    b.write(
        "apis/google/api/http_test.proto",
        "syntax = \"proto3\";\npackage google.api.test;\nmessage T {}\n",
    );
    b.write(
        "apis/vendor/v.proto",
        "syntax = \"proto3\";\npackage vendor;\nmessage V {}\n",
    );
    let schemas = |b: &Bin| -> Vec<String> {
        let list: serde_json::Value =
            serde_json::from_str(&b.ok(&["schema", "list", "ns", "-o", "json"])).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|s| s["schema_id"].as_str().unwrap().to_string())
            .collect()
    };

    // Filters: included trees, less the excluded files and directories.
    let out = b.run(&[
        "load",
        "ns",
        "apis",
        "--include",
        "google/api/**",
        "--include",
        "vendor",
        "--exclude",
        "**/*_test.proto",
        "--metadata",
        "commit=abc123",
        "--metadata",
        "by=ci",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("google/protobuf"),
        "nothing under google/protobuf/ was considered"
    );
    assert_eq!(schemas(&b), ["google.api", "vendor"]);
    assert_eq!(stored_paths(&b, "google.api"), ["google/api/http.proto"]);
    let store = protoshelf::ObjStore::open(&b.url).await.unwrap();
    for schema in ["google.api", "vendor"] {
        let v = store.get_version("ns", schema, 1).await.unwrap();
        assert_eq!(v.metadata["commit"], "abc123", "{schema}");
        assert_eq!(v.metadata["by"], "ci", "{schema}");
    }
    b.ok(&["discard", "ns"]);

    // The whole tree: google/protobuf/ is skipped with a note, and the
    // file importing google/protobuf/timestamp.proto compiles against the
    // types protoshelf provides.
    let out = b.run(&[
        "load",
        "ns",
        "apis",
        "--exclude",
        "google/api/http_test.proto",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("note: skipped 2 files under google/protobuf/")
            && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(schemas(&b), ["google.api", "google.type", "vendor"]);
    b.ok(&["discard", "ns"]);

    // Nothing left to publish, and bad globs: exit 1, nothing written.
    let before = b.content().await;
    b.refused(
        &["load", "ns", "apis", "--include", "nothing/**"],
        &["no .proto files under apis match the --include/--exclude given"],
    );
    b.refused(
        &["load", "ns", "apis", "--include", "google/protobuf/**"],
        &[
            "note: skipped 2 files",
            "no .proto files under apis match the --include/--exclude given outside google/protobuf/",
        ],
    );
    b.refused(
        &["load", "ns", "apis", "--exclude", "a[b"],
        &["--exclude \"a[b\""],
    );
    assert_eq!(b.content().await, before, "a refused load wrote");
}

/// `schema descriptor --out` says what it wrote: path, bytes and files on
/// stderr, or as JSON on stdout with -o json.
async fn descriptor_out_reports(backend: Backend) {
    let Some(b) = Bin::new(backend).await else {
        return;
    };
    b.write("p/a/a.proto", "syntax = \"proto3\";\npackage a;\nimport \"google/protobuf/timestamp.proto\";\nmessage A { google.protobuf.Timestamp t = 1; }\n");
    b.ok(&["push", "ns", "s", "p"]);
    let out = b.run(&["schema", "descriptor", "ns", "s", "--out", "d.pb"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty());
    let bytes = std::fs::metadata(b.path("d.pb")).unwrap().len();
    assert!(
        stderr.contains(&format!(
            "wrote d.pb: {bytes} bytes, a FileDescriptorSet of 2 files (ns/s version 1"
        )),
        "{stderr}"
    );
    let json: serde_json::Value = serde_json::from_str(&b.ok(&[
        "-o",
        "json",
        "schema",
        "descriptor",
        "ns",
        "s",
        "--out",
        "e.pb",
    ]))
    .unwrap();
    assert_eq!(json["out"], "e.pb");
    assert_eq!(json["bytes"], bytes);
    assert_eq!(json["version"], 1);
    assert_eq!(
        json["files"],
        serde_json::json!(["google/protobuf/timestamp.proto", "a/a.proto"])
    );
}

/// Without a terminal (stderr is a pipe here), `load` prints one plain line
/// per phase: reading (files, bytes), compiling (schemas), storing
/// (versions); `--quiet` prints none.
async fn load_progress_without_a_terminal(backend: Backend) {
    let Some(b) = Bin::new(backend).await else {
        return;
    };
    b.write(
        "t/a/a.proto",
        "syntax = \"proto3\";\npackage a;\nmessage A {}\n",
    );
    b.write(
        "t/b/b.proto",
        "syntax = \"proto3\";\npackage b;\nimport \"a/a.proto\";\nmessage B { a.A a = 1; }\n",
    );
    let bytes: u64 = ["t/a/a.proto", "t/b/b.proto"]
        .iter()
        .map(|p| std::fs::metadata(b.path(p)).unwrap().len())
        .sum();
    let out = b.run(&["load", "ns", "t"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "load: reading 0/2 files, 0 B".to_string(),
            format!("load: reading 2/2 files, {bytes} B"),
            "load: compiling 0/2 schemas".into(),
            "load: compiling 2/2 schemas".into(),
            "load: storing 0/2 versions".into(),
            "load: storing 2/2 versions".into(),
        ]
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\x1b'),
        "no escapes without a terminal: {stderr}"
    );
    b.ok(&["discard", "ns"]);
    let out = b.run(&["load", "ns", "t", "--quiet"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "--quiet");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ns/b: staged version"));
}

/// `push` reports the phases `load` does (reading told once, as its files
/// are read in one go), and `-q/--quiet` silences it the same way.
async fn push_progress_without_a_terminal(backend: Backend) {
    let Some(b) = Bin::new(backend).await else {
        return;
    };
    let a = b.write(
        "a/a.proto",
        "syntax = \"proto3\";\npackage a;\nmessage A {}\n",
    );
    let bytes = std::fs::metadata(&a).unwrap().len();
    let out = b.run(&["push", "ns", "a", "a/a.proto"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            format!("push: reading 1/1 files, {bytes} B").as_str(),
            "push: compiling 0/1 schemas",
            "push: compiling 1/1 schemas",
            "push: storing 0/1 versions",
            "push: storing 1/1 versions",
        ],
        "{stderr}"
    );
    for (quiet, text) in [
        ("-q", "message A { string x = 1; }"),
        ("--quiet", "message A {}"),
    ] {
        b.write(
            "a/a.proto",
            &format!("syntax = \"proto3\";\npackage a;\n{text}\n"),
        );
        let out = b.run(&["push", "ns", "a", "a/a.proto", quiet]);
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{quiet}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("ns/a: staged version"));
    }
}

/// `-vv` into a pipe: plain text (no ANSI colours), and requests named by
/// their key, not by Rust's Debug form (`Some(Path { raw: .. })`).
async fn verbose_logs_are_plain(backend: Backend) {
    let Some(b) = Bin::new(backend).await else {
        return;
    };
    let out = b.run(&["-vv", "schema", "list", "ns"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("LIST ") && stderr.contains("ns/ns/schemas"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\x1b'),
        "ANSI escapes into a pipe: {stderr}"
    );
    assert!(!stderr.contains("Path {"), "Debug internals: {stderr}");
}

macro_rules! local_and_s3 {
    ($($name:ident),* $(,)?) => {
        mod local { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() {
            super::$name(super::Backend::Local).await
        } )* }
        mod s3 { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() {
            super::$name(super::Backend::S3).await
        } )* }
    };
}

local_and_s3!(
    links_stay_inside_the_tree,
    out_never_writes_through_a_link,
    import_roots,
    load_filters,
    descriptor_out_reports,
    load_progress_without_a_terminal,
    push_progress_without_a_terminal,
    verbose_logs_are_plain,
);

/// IDs, paths and packages at the longest every backend stores, and one
/// byte more, through the library on memory, local directory and S3.
mod limits {
    use crate::common::{self, TestStore};
    use protoshelf::Registry;
    use protoshelf::compat::Policy;
    use protoshelf::ids::{MAX_NAMESPACE_ID_LEN, MAX_SCHEMA_ID_LEN};
    use protoshelf::objstore::keys::MAX_KEY_BYTES;
    use protoshelf::registry::{PublishOptions, SourceFile};

    on_every_backend!(
        id_limits_are_checked_before_anything_is_written,
        paths_and_packages_fit_local_file_names,
        keys_fit_s3_with_the_store_prefix,
    );

    fn proto(package: &str) -> String {
        format!("syntax = \"proto3\";\npackage {package};\nmessage M {{}}\n")
    }

    async fn publish(
        r: &Registry,
        ns: &str,
        schema: &str,
        path: &str,
        package: &str,
    ) -> protoshelf::Result<u64> {
        r.publish(
            ns,
            schema,
            vec![SourceFile::new(path, proto(package))],
            PublishOptions::default(),
        )
        .await
        .map(|p| p.version)
    }

    /// Requires `result` to be refused as a user error mentioning `needle`,
    /// with the store unchanged.
    async fn refused<T: std::fmt::Debug>(
        t: &TestStore,
        before: &[(String, u64)],
        result: protoshelf::Result<T>,
        needle: &str,
    ) {
        let err = result.unwrap_err();
        assert!(err.is_user_error(), "{err}");
        assert!(err.to_string().contains(needle), "{needle:?} not in {err}");
        assert_eq!(
            common::snapshot(&t.raw()).await,
            before,
            "refused, but wrote: {err}"
        );
    }

    async fn id_limits_are_checked_before_anything_is_written(t: TestStore) {
        let r = Registry::new(t.store.clone());
        let ns = "n".repeat(MAX_NAMESPACE_ID_LEN);
        r.create_namespace(&ns, Policy::Strict, Default::default())
            .await
            .unwrap();
        let before = common::snapshot(&t.raw()).await;
        let too_long = "n".repeat(MAX_NAMESPACE_ID_LEN + 1);
        refused(
            &t,
            &before,
            r.create_namespace(&too_long, Policy::Strict, Default::default())
                .await,
            "longer than 249 bytes",
        )
        .await;

        let schema = "s".repeat(MAX_SCHEMA_ID_LEN);
        assert_eq!(publish(&r, &ns, &schema, "a.proto", "a").await.unwrap(), 1);
        let before = common::snapshot(&t.raw()).await;
        let too_long = "s".repeat(MAX_SCHEMA_ID_LEN + 1);
        refused(
            &t,
            &before,
            publish(&r, &ns, &too_long, "b.proto", "b").await,
            "longer than 248 bytes",
        )
        .await;
        // The sizes the issue found failing half-way: refused up front.
        refused(
            &t,
            &before,
            publish(&r, &ns, &"s".repeat(253), "b.proto", "b").await,
            "longer than 248",
        )
        .await;
        let listed = r.list_schemas(&ns).await.unwrap();
        assert_eq!(listed.len(), 1, "only the schema at the limit exists");
    }

    async fn paths_and_packages_fit_local_file_names(t: TestStore) {
        let r = Registry::new(t.store.clone());
        r.create_namespace("ns", Policy::Strict, Default::default())
            .await
            .unwrap();
        let dir = |n: usize| "d".repeat(n);
        publish(&r, "ns", "s", &format!("{}/x.proto", dir(255)), "a")
            .await
            .unwrap();
        let package = "p".repeat(255);
        publish(&r, "ns", "t", "t.proto", &package).await.unwrap();
        let before = common::snapshot(&t.raw()).await;
        refused(
            &t,
            &before,
            publish(&r, "ns", "u", &format!("{}/x.proto", dir(256)), "u").await,
            "at most 255",
        )
        .await;
        // A package is known only after the compile: still refused before
        // the first write.
        refused(
            &t,
            &before,
            publish(&r, "ns", "v", "v.proto", &"q".repeat(256)).await,
            "at most 255",
        )
        .await;
    }

    async fn keys_fit_s3_with_the_store_prefix(t: TestStore) {
        let r = Registry::new(t.store.clone());
        let (ns, schema) = (
            "n".repeat(MAX_NAMESPACE_ID_LEN),
            "s".repeat(MAX_SCHEMA_ID_LEN),
        );
        r.create_namespace(&ns, Policy::Strict, Default::default())
            .await
            .unwrap();
        let prefix = t.store.key_prefix();
        let prefix_len = if prefix.is_empty() {
            0
        } else {
            prefix.len() + 1
        };
        // The longest key of a file is its directory's claim,
        // ns/<ns>/claims/dir/<dir>/!<schema>: 17 bytes besides the names.
        let widest_dir = MAX_KEY_BYTES - prefix_len - 17 - ns.len() - schema.len();
        let path = |dir_len: usize| {
            let rest = "f".repeat(dir_len - 402);
            format!("{}/{}/{rest}/x.proto", "d".repeat(200), "e".repeat(200))
        };
        if widest_dir + "/x.proto".len() > protoshelf::ids::MAX_PATH_LEN {
            // No prefix: the ID and path limits keep every key below 1,024
            // bytes; the widest path there is stores.
            let widest = format!("{}/{}/x.proto", "d".repeat(255), "e".repeat(248));
            publish(&r, &ns, &schema, &widest, "p").await.unwrap();
            return;
        }
        publish(&r, &ns, &schema, &path(widest_dir), "p")
            .await
            .unwrap();
        let before = common::snapshot(&t.raw()).await;
        let other = "o".repeat(MAX_SCHEMA_ID_LEN);
        refused(
            &t,
            &before,
            publish(&r, &ns, &other, &path(widest_dir + 1), "o").await,
            "S3 keys are at most 1024 bytes",
        )
        .await;
    }
}
