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

local_and_s3!(links_stay_inside_the_tree, out_never_writes_through_a_link);
