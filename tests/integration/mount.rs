//! The FUSE view mounted for real (fuse3 is on the test machines;
//! scripts/test.sh installs it), on a local directory and on S3: protoc
//! through the mount equals protoc on a local copy, changes appear without
//! remounting, history is immutable, every write fails with EROFS, unknown
//! paths give ENOENT, and an idle mount costs one GET per namespace per
//! refresh interval.

use crate::common;

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::Backend;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
const BIN: &str = env!("CARGO_BIN_EXE_protoshelf");
const EROFS: i32 = 30;

/// Whether FUSE can be used here; under CI=true its absence fails.
pub(crate) fn fuse_available() -> bool {
    let ok =
        Path::new("/dev/fuse").exists() && Command::new("fusermount3").arg("-V").output().is_ok();
    if !ok && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true but FUSE is unavailable (/dev/fuse, fusermount3): scripts/test.sh installs fuse3"
        );
    }
    if !ok {
        eprintln!("SKIPPED: mount test (no /dev/fuse or fusermount3)");
    }
    ok
}

/// buf, as scripts/test.sh installs it (skipped when absent outside CI).
fn buf_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PROTOSHELF_BUF")
        .map(PathBuf::from)
        .or_else(|| {
            let cache = std::env::var_os("PROTOSHELF_CACHE")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/protoshelf"))
                })?;
            Some(cache.join("buf/node_modules/.bin/buf"))
        })?;
    if path.exists() {
        return Some(path);
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "CI=true but buf is missing"
    );
    eprintln!("SKIPPED: buf build through the mount (no buf)");
    None
}

pub(crate) fn cli(url: &str, args: &[&str]) {
    let out = Command::new(BIN)
        .args(args)
        .env("PROTOSHELF_STORE", url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "protoshelf {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) struct Mounted {
    pub(crate) dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Mounted {
    fn start(url: &str, extra: &[&str]) -> Mounted {
        Self::start_in(tempfile::tempdir().unwrap(), url, extra)
    }

    /// Mounts on `dir` (which may hold files, with `--allow-non-empty`).
    pub(crate) fn start_in(dir: tempfile::TempDir, url: &str, extra: &[&str]) -> Mounted {
        // 200 ms unless the caller sets its own.
        let refresh: &[&str] = if extra.contains(&"--refresh") {
            &[]
        } else {
            &["--refresh", "200ms"]
        };
        let child = Command::new(BIN)
            .args(["mount", dir.path().to_str().unwrap()])
            .args(refresh)
            .args(extra)
            .env("PROTOSHELF_STORE", url)
            .spawn()
            .unwrap();
        let m = Mounted {
            dir,
            child: Some(child),
        };
        wait_for(
            || m.path(".protoshelf/stats").exists(),
            "the mount to come up",
        );
        m
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Stops with SIGTERM, as a service manager would: the mount must
    /// unmount itself and exit 0.
    fn terminate(mut self) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let exit = child.wait().unwrap();
        assert!(exit.success(), "mount exited with {exit} on SIGTERM");
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        assert!(
            !mounts.contains(self.dir.path().to_str().unwrap()),
            "still mounted after SIGTERM"
        );
    }

    /// Unmounts like a user would and requires a clean exit 0.
    pub(crate) fn stop(mut self) {
        self.unmount();
    }

    /// [`Mounted::stop`], giving the directory back (its own files show
    /// again).
    pub(crate) fn stop_keeping_dir(mut self) -> tempfile::TempDir {
        self.unmount();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    fn unmount(&mut self) {
        let out = Command::new("fusermount3")
            .arg("-u")
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fusermount3 -u: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status = self.child.take().unwrap().wait().unwrap();
        assert!(status.success(), "mount exited with {status}");
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // A failing test must not leave a mount or a process behind.
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(self.dir.path())
                .output();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_for(mut cond: impl FnMut() -> bool, what: &str) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

pub(crate) fn protoc(include: &Path, out: &Path, files: &[String]) -> Vec<u8> {
    let status = Command::new("protoc")
        .arg("-I")
        .arg(include)
        .arg("--include_imports")
        .arg(format!("--descriptor_set_out={}", out.display()))
        .args(files)
        .status()
        .expect("protoc is installed by scripts/test.sh");
    assert!(status.success(), "protoc failed in {}", include.display());
    std::fs::read(out).unwrap()
}

pub(crate) fn proto_files(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "proto"))
        .map(|e| {
            e.path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    out.sort();
    out
}

fn copy_tree(from: &Path, to: &Path) {
    for rel in proto_files(from) {
        let target = to.join(&rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&rel), target).unwrap();
    }
}

pub(crate) fn setup(url: &str) {
    cli(url, &["namespace", "create", "shop"]);
    cli(
        url,
        &[
            "load",
            "__builtins__",
            &format!("{EXAMPLES}/builtins"),
            "--promote",
        ],
    );
    cli(
        url,
        &["load", "shop", &format!("{EXAMPLES}/shop"), "--promote"],
    );
}

pub(crate) fn stats(m: &Mounted) -> std::collections::HashMap<String, u64> {
    std::fs::read_to_string(m.path(".protoshelf/stats"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        })
        .collect()
}

/// The examples loaded on a fresh store of `backend`, mounted (None when
/// FUSE or S3 is unavailable outside CI).
async fn mounted_example(
    backend: Backend,
) -> Option<(Mounted, String, Option<std::sync::Arc<tempfile::TempDir>>)> {
    if !fuse_available() {
        return None;
    }
    let (url, dir) = common::fresh_url(backend).await?;
    setup(&url);
    let m = Mounted::start(&url, &[]);
    Some((m, url, dir))
}

async fn protoc_through_the_mount(backend: Backend) {
    let Some((m, url, _dir)) = mounted_example(backend).await else {
        return;
    };
    let current = m.path("shop/current");
    let files = proto_files(&current);
    assert!(
        files.contains(&"common/money.proto".to_string()),
        "builtins are in the include root: {files:?}"
    );
    let local = tempfile::tempdir().unwrap();
    copy_tree(&current, local.path());
    let out = tempfile::tempdir().unwrap();
    let mounted = protoc(&current, &out.path().join("m.pb"), &files);
    let copied = protoc(local.path(), &out.path().join("l.pb"), &files);
    assert_eq!(
        mounted, copied,
        "protoc through the mount differs from a local copy"
    );
    // What is below a namespace stays in the kernel's caches past the
    // refresh interval (a refresh invalidates what changed): compiling and
    // walking the tree again costs no lookups and no listings.
    let walk = || {
        for f in &files {
            std::fs::read(current.join(f)).unwrap();
        }
        proto_files(&current).len()
    };
    walk();
    std::thread::sleep(Duration::from_millis(700)); // > 3 refresh intervals
    // Reading the stats file costs requests of its own (it is never cached).
    let (s0, s1) = (stats(&m), stats(&m));
    let protoc_and_walk = || {
        protoc(&current, &out.path().join("again.pb"), &files);
        assert_eq!(walk(), files.len());
    };
    protoc_and_walk();
    let s2 = stats(&m);
    for op in ["fuse_lookup", "fuse_getattr", "fuse_readdir", "fuse_read"] {
        let (own, total) = (s1[op] - s0[op], s2[op] - s1[op]);
        assert_eq!(
            total - own,
            0,
            "{op}: a warm compile and walk of {} files reached the filesystem",
            files.len()
        );
    }
    // The mount's own descriptor set decodes and covers the tree.
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(
        std::fs::read(m.path("shop/current.binpb"))
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    assert!(
        set.file
            .iter()
            .any(|f| f.name() == "shop/orders/order.proto")
    );
    // It is the bucket's namespace set, byte for byte.
    let bucket = protoshelf::ObjStore::open(&url)
        .await
        .unwrap()
        .namespace_set("shop", false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(std::fs::read(m.path("shop/current.binpb")).unwrap(), bucket);
    // buf builds the mounted tree exactly as a local copy.
    if let Some(buf) = buf_binary() {
        let image = |dir: &Path, out: &str| {
            let target = local.path().parent().unwrap().join(out);
            let status = Command::new(&buf)
                .arg("build")
                .arg(dir)
                .arg("-o")
                .arg(&target)
                .status()
                .unwrap();
            assert!(status.success(), "buf build {}", dir.display());
            std::fs::read(target).unwrap()
        };
        let (a, b) = (
            image(&current, "mount.binpb"),
            image(local.path(), "local.binpb"),
        );
        assert_eq!(
            a, b,
            "buf build through the mount differs from a local copy"
        );
    }
    // ls -R and find behave.
    for cmd in [vec!["ls", "-R"], vec!["find", "."]] {
        let status = Command::new(cmd[0])
            .args(&cmd[1..])
            .current_dir(m.dir.path())
            .output()
            .unwrap()
            .status;
        assert!(status.success(), "{cmd:?}");
    }
    m.terminate();
}

async fn live_changes_history_and_read_only(backend: Backend) {
    let Some((m, url, _dir)) = mounted_example(backend).await else {
        return;
    };
    let order = "shop/orders/order.proto";
    let current_order = m.path(&format!("shop/current/{order}"));
    let before = std::fs::read_to_string(&current_order).unwrap();
    // Attributes: size is right, mtime is the version's creation time.
    let meta = std::fs::metadata(&current_order).unwrap();
    assert_eq!(meta.len(), before.len() as u64);
    assert!(meta.modified().unwrap().elapsed().unwrap() < Duration::from_secs(600));
    // An open file keeps its version across a promote.
    let mut held = std::fs::File::open(&current_order).unwrap();

    cli(
        &url,
        &[
            "push",
            "shop",
            "shop.orders",
            &format!("{EXAMPLES}/changes/compatible"),
        ],
    );
    let staged = m.path(&format!("shop/staged/{order}"));
    wait_for(
        || std::fs::read_to_string(&staged).is_ok_and(|s| s.contains("note")),
        "the staged change",
    );
    assert_eq!(
        std::fs::read_to_string(&current_order).unwrap(),
        before,
        "current is untouched by staging"
    );
    assert_eq!(
        std::fs::read_link(m.path("shop/schemas/shop.orders/staged")).unwrap(),
        Path::new("versions/2")
    );

    let promoted_at = Instant::now();
    cli(&url, &["promote", "shop"]);
    let visible = wait_for(
        || std::fs::read_to_string(&current_order).is_ok_and(|s| s.contains("note")),
        "the promote",
    );
    eprintln!(
        "{backend:?}: a promote became visible in the mount after {:?} (refresh 200ms; {:?} including the CLI)",
        visible,
        promoted_at.elapsed()
    );
    let mut old = String::new();
    std::io::Read::read_to_string(&mut held, &mut old).unwrap();
    assert_eq!(old, before, "an open file mixed versions");
    drop(held);

    // History: the tree after commit 2 (the first load) is still the old one.
    assert_eq!(
        std::fs::read_to_string(m.path(&format!("shop/history/2/{order}"))).unwrap(),
        before
    );
    let newest = std::fs::read_dir(m.path("shop/history")).unwrap().count();
    assert!(
        std::fs::read_to_string(m.path(&format!("shop/history/{newest}/{order}")))
            .unwrap()
            .contains("note")
    );
    let v1 =
        std::fs::read_to_string(m.path(&format!("shop/schemas/shop.orders/versions/1/{order}")))
            .unwrap();
    assert_eq!(v1, before);

    // A namespace created after mounting appears, in lookups and in the
    // (kernel-cached) listing of the root.
    let root_has = |name: &str| {
        std::fs::read_dir(m.dir.path())
            .unwrap()
            .any(|e| e.unwrap().file_name() == name)
    };
    assert!(!root_has("late"));
    cli(&url, &["namespace", "create", "late"]);
    wait_for(|| m.path("late").exists(), "a new namespace");
    wait_for(|| root_has("late"), "a new namespace in the root's listing");

    // Read-only: every write call fails with EROFS.
    let erofs = |r: std::io::Result<()>, what: &str| {
        let e = r
            .err()
            .unwrap_or_else(|| panic!("{what} succeeded on a read-only mount"));
        assert_eq!(e.raw_os_error(), Some(EROFS), "{what}: {e}");
    };
    let existing = m.path("shop/current/common/money.proto");
    erofs(
        std::fs::write(m.path("shop/current/new.proto"), "x"),
        "create",
    );
    erofs(
        std::fs::OpenOptions::new()
            .write(true)
            .open(&existing)
            .map(|_| ()),
        "open for writing",
    );
    erofs(
        std::fs::OpenOptions::new()
            .append(true)
            .open(&existing)
            .map(|_| ()),
        "open for appending",
    );
    erofs(std::fs::create_dir(m.path("shop/current/dir")), "mkdir");
    erofs(std::fs::remove_file(&existing), "unlink");
    erofs(std::fs::remove_dir(m.path("shop/current/common")), "rmdir");
    erofs(
        std::fs::rename(&existing, m.path("shop/current/common/moved.proto")),
        "rename",
    );
    erofs(
        std::os::unix::fs::symlink("x", m.path("shop/current/link")),
        "symlink",
    );
    erofs(
        std::fs::hard_link(&existing, m.path("shop/current/hard.proto")),
        "link",
    );
    use std::os::unix::fs::PermissionsExt;
    erofs(
        std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o777)),
        "chmod",
    );
    // truncate(2) by path reaches setattr (ftruncate on a read-only fd
    // would be refused by the kernel before the filesystem sees it).
    let out = Command::new("truncate")
        .arg("-s0")
        .arg(&existing)
        .output()
        .unwrap();
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
        "truncate"
    );
    let out = Command::new("touch").arg(&existing).output().unwrap();
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
        "touch"
    );

    // Unknown paths: ENOENT, at every level.
    for p in [
        "nope",
        "shop/nope",
        "shop/current/nope.proto",
        "shop/schemas/nope",
        "shop/schemas/shop.orders/versions/99",
        "shop/history/999",
        "shop/history/x",
    ] {
        let e = std::fs::metadata(m.path(p)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{p}: {e}");
    }

    // Misses are cached by the kernel until a refresh says otherwise: a
    // second probe of the same missing path does not reach the filesystem.
    let before = stats(&m)["fuse_lookup"];
    for _ in 0..5 {
        assert!(std::fs::metadata(m.path("shop/current/probe/missing.proto")).is_err());
    }
    // One for the miss; reading the stats file may look its path up again.
    let lookups = stats(&m)["fuse_lookup"] - before;
    assert!(
        lookups <= 3,
        "{lookups} lookups for 5 probes of one missing path"
    );
    // A file published at that path appears after the promote (the refresh
    // drops the cached miss), and so does its directory in the cached
    // listing of current/.
    let current_has = |name: &str| {
        std::fs::read_dir(m.path("shop/current"))
            .unwrap()
            .any(|e| e.unwrap().file_name() == name)
    };
    assert!(!current_has("probe"));
    let probe = tempfile::tempdir().unwrap();
    std::fs::create_dir(probe.path().join("probe")).unwrap();
    std::fs::write(
        probe.path().join("probe/missing.proto"),
        "syntax = \"proto3\";\npackage probe;\nmessage Missing {}\n",
    )
    .unwrap();
    cli(
        &url,
        &[
            "push",
            "shop",
            "probe",
            probe.path().to_str().unwrap(),
            "--promote",
        ],
    );
    wait_for(
        || m.path("shop/current/probe/missing.proto").exists(),
        "a file at a path cached as missing",
    );
    assert!(
        current_has("probe"),
        "current/ listing misses the new directory"
    );

    // Idle: at most one GET per loaded namespace per refresh interval.
    std::thread::sleep(Duration::from_millis(500));
    let a = stats(&m);
    std::thread::sleep(Duration::from_secs(2));
    let b = stats(&m);
    let rounds = b["refreshes"] - a["refreshes"];
    let requests = b["requests_total"] - a["requests_total"];
    let namespaces = 3; // shop, late (through the stats file and lookups: loaded), __builtins__ read once per round
    eprintln!(
        "{backend:?}: idle mount, {rounds} refresh rounds: {requests} requests ({} GET, {} LIST, {} PUT)",
        b["requests_get"] - a["requests_get"],
        b["requests_list"] - a["requests_list"],
        b["requests_put"] - a["requests_put"]
    );
    assert!(rounds >= 5, "{rounds} refresh rounds in 2 s");
    assert!(
        requests <= namespaces * (rounds + 1),
        "{requests} requests in {rounds} idle rounds"
    );
    assert_eq!(b["requests_put"], a["requests_put"]);
    m.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protoc_through_the_mount_local() {
    protoc_through_the_mount(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protoc_through_the_mount_s3() {
    protoc_through_the_mount(Backend::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_changes_history_and_read_only_local() {
    live_changes_history_and_read_only(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_changes_history_and_read_only_s3() {
    live_changes_history_and_read_only(Backend::S3).await;
}

/// A TCP proxy in front of the S3 endpoint that the test can cut and
/// restore, on the same port: storage becoming unreachable for real.
struct Proxy {
    port: u16,
    upstream: String,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: &str) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = Proxy {
            port,
            upstream: upstream.to_string(),
            tasks: Default::default(),
        };
        p.serve(listener);
        p
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (tasks, upstream) = (self.tasks.clone(), self.upstream.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let upstream = upstream.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Closes the listener and every open connection.
    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Answers like a hung endpoint from now on: accepts connections on
    /// the same port, reads what comes, never writes (open connections
    /// are closed first, so the client has to reconnect).
    async fn hang(&self) {
        self.cut();
        let listener = self.rebind().await;
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let conn = tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut buf = [0u8; 4096];
                    while matches!(inbound.read(&mut buf).await, Ok(n) if n > 0) {}
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    async fn restore(&self) {
        self.cut();
        let listener = self.rebind().await;
        self.serve(listener);
    }

    /// The port again, once the aborted listener has let it go.
    async fn rebind(&self) -> tokio::net::TcpListener {
        let mut tries = 0;
        loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => return l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebinding port {}: {e}", self.port),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_outage_serves_cache_and_recovers_s3() {
    if !fuse_available() {
        return;
    }
    let Some((url, _dir)) = common::fresh_url(Backend::S3).await else {
        return;
    };
    setup(&url);
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let proxy = Proxy::start(endpoint.trim_start_matches("http://").trim_end_matches('/')).await;
    let dir = tempfile::tempdir().unwrap();
    // Its log, a file as a service manager would keep: checked at the end.
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("mount.log");
    // A short request budget: refresh rounds fail within seconds.
    let child = Command::new(BIN)
        .args(["mount", dir.path().to_str().unwrap(), "--refresh", "200ms"])
        .args(["--storage-timeout", "3s"])
        .env("PROTOSHELF_STORE", &url)
        .env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", proxy.port),
        )
        .env_remove("RUST_LOG")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let m = Mounted {
        dir,
        child: Some(child),
    };
    let path = |rel: &str| m.path(rel);
    let blocking = |f: Box<dyn FnOnce() + Send>| tokio::task::spawn_blocking(f);
    let order = path("shop/current/shop/orders/order.proto");
    let order2 = order.clone();
    let stats_path = path(".protoshelf/stats");
    blocking(Box::new(move || {
        wait_for(|| stats_path.exists(), "the mount");
        assert!(
            std::fs::read_to_string(&order2)
                .unwrap()
                .contains("message Order")
        );
    }))
    .await
    .unwrap();

    proxy.cut();
    let (o, d) = (
        order.clone(),
        path("shop/schemas/shop.catalog/versions/1/descriptor.binpb"),
    );
    blocking(Box::new(move || {
        // Cached content keeps being served.
        assert!(
            std::fs::read_to_string(&o)
                .unwrap()
                .contains("message Order")
        );
        // Content never read before: EIO, quickly, and the mount stays up.
        let started = Instant::now();
        let e = std::fs::read(&d).unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(5),
            "uncached read during the outage: {e}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "EIO took {:?}",
            started.elapsed()
        );
    }))
    .await
    .unwrap();
    // Meanwhile someone promotes a change (straight to S3), and the mount's
    // refresh rounds fail for a while.
    cli(
        &url,
        &[
            "push",
            "shop",
            "shop.orders",
            &format!("{EXAMPLES}/changes/compatible"),
            "--promote",
        ],
    );
    // A round fails only once its requests have used up the mount's
    // budget, which on a loaded machine may be after the push returns:
    // wait for the failure instead of guessing how long it takes.
    // Three failed rounds (and the failed read above): one warning each
    // before warnings were rate-limited.
    let stats_of = |m: &Mounted| stats(m)["refresh_errors"];
    let deadline = Instant::now() + Duration::from_secs(120);
    while stats_of(&m) < 3 {
        assert!(
            Instant::now() < deadline,
            "refresh rounds during the outage did not fail"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    proxy.restore().await;
    let (o, d) = (
        order.clone(),
        path("shop/schemas/shop.catalog/versions/1/descriptor.binpb"),
    );
    blocking(Box::new(move || {
        wait_for(
            || std::fs::read_to_string(&o).is_ok_and(|s| s.contains("note")),
            "recovery after the outage",
        );
        assert!(std::fs::read(&d).unwrap().len() > 100);
    }))
    .await
    .unwrap();
    // Extended attributes, which `ls -la` and buf ask for and the mount
    // does not implement: ENOSYS/ENODATA to the caller, nothing in the log.
    let probe = order.clone();
    let xattr = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", "import os, sys\nfor f in (os.listxattr, lambda p: os.getxattr(p, 'user.x')):\n    try: f(sys.argv[1])\n    except OSError: pass"])
            .arg(&probe)
            .status()
    })
    .await
    .unwrap();
    tokio::task::spawn_blocking(move || m.stop()).await.unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains('\x1b'), "ANSI escapes in a log file:\n{log}");
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert!(
        !warnings.is_empty() && warnings.iter().all(|l| l.contains("storage unreachable")),
        "{log}"
    );
    // Rate-limited: at most one per 30 s window, and the outage here
    // failed at least four times (three rounds, one read).
    assert!(warnings.len() <= 2, "one warning per failure:\n{log}");
    assert!(
        !log.contains("Path {") && !log.contains("Generic {"),
        "Debug internals:\n{log}"
    );
    if xattr.is_ok() {
        assert!(
            !log.contains("xattr"),
            "fuser's unimplemented-request warnings:\n{log}"
        );
    }
}

/// Soft deletes in the mount: a deleted schema leaves `current/` and its
/// `current` link goes, its versions stay readable; a deleted namespace
/// leaves the root's listing and every path below it is ENOENT, as
/// `namespace list` hides it; undelete brings both back.
async fn soft_deletes_in_the_mount(backend: Backend) {
    let Some((m, url, _dir)) = mounted_example(backend).await else {
        return;
    };
    let order = m.path("shop/current/shop/orders/order.proto");
    let pinned = m.path("shop/schemas/shop.orders/versions/1/shop/orders/order.proto");
    let link = m.path("shop/schemas/shop.orders/current");
    let text = std::fs::read_to_string(&order).unwrap();

    cli(&url, &["schema", "delete", "shop", "shop.orders"]);
    wait_for(|| !order.exists(), "the deleted schema to leave current/");
    assert!(!m.path("shop/staged/shop/orders/order.proto").exists());
    assert!(std::fs::symlink_metadata(&link).is_err(), "no current link");
    assert_eq!(std::fs::read_to_string(&pinned).unwrap(), text);
    assert!(m.path("shop/current/shop/types/price.proto").exists());

    cli(&url, &["schema", "undelete", "shop", "shop.orders"]);
    wait_for(|| order.exists(), "the restored schema in current/");
    assert_eq!(std::fs::read_to_string(&order).unwrap(), text);

    cli(&url, &["namespace", "delete", "shop"]);
    let listed = |name: &str| {
        std::fs::read_dir(m.path(""))
            .unwrap()
            .any(|e| e.unwrap().file_name() == name)
    };
    wait_for(
        || !listed("shop"),
        "the deleted namespace to leave the root",
    );
    for path in [&m.path("shop"), &order, &pinned] {
        let err = std::fs::metadata(path).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{path:?}");
    }
    assert!(listed("__builtins__"));
    cli(&url, &["namespace", "undelete", "shop"]);
    wait_for(|| order.exists(), "the restored namespace");
    assert!(listed("shop"));
    assert_eq!(std::fs::read_to_string(&pinned).unwrap(), text);
    tokio::task::spawn_blocking(move || m.stop()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_deletes_in_the_mount_local() {
    soft_deletes_in_the_mount(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_deletes_in_the_mount_s3() {
    soft_deletes_in_the_mount(Backend::S3).await;
}

/// Objects the tree names but storage lost (a blob deleted after the mount
/// listed its file, a version's descriptor): EIO, never ENOENT, so a file
/// never silently vanishes; a name that is not there is still ENOENT.
async fn lost_objects_are_eio_never_enoent(backend: Backend) {
    if !fuse_available() {
        return;
    }
    let Some((url, _dir)) = common::fresh_url(backend).await else {
        return;
    };
    setup(&url);
    let store = protoshelf::ObjStore::open(&url).await.unwrap();
    let orders = store.manifest("shop", "shop.orders", 1).await.unwrap();
    let blob = format!("ns/shop/blobs/{}", orders.files[0].sha256);
    let catalog = store.manifest("shop", "shop.catalog", 1).await.unwrap();
    // Nothing fetched ahead: the blob is read only when the file is.
    let m = Mounted::start(&url, &["--no-prefetch"]);
    let listed: Vec<String> = std::fs::read_dir(m.path("shop/current/shop/orders"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, ["order.proto"]);
    let raw = protoshelf::objstore::url::open(&url).unwrap().store;
    for key in [&blob, &catalog.descriptor.key] {
        object_store::ObjectStoreExt::delete(&raw, &object_store::path::Path::from(key.as_str()))
            .await
            .unwrap();
    }
    for (what, rel) in [
        (
            "read of a listed file",
            "shop/current/shop/orders/order.proto",
        ),
        (
            "read of a version's descriptor",
            "shop/schemas/shop.catalog/versions/1/descriptor.binpb",
        ),
    ] {
        let e = std::fs::read(m.path(rel)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(5), "{what}: {e}");
    }
    // A file whose manifest is there but whose content is not: the lookup
    // answers from the manifest's size (no content needed), the read is EIO.
    let lost = m.path("shop/schemas/shop.orders/versions/1/shop/orders/order.proto");
    assert_eq!(
        std::fs::metadata(&lost).unwrap().len(),
        orders.files[0].size.unwrap()
    );
    let e = std::fs::read(&lost).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(5), "read: {e}");
    let e = std::fs::metadata(m.path("shop/current/shop/orders/nope.proto")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(2), "an absent name: {e}");
    // The rest of the tree is unharmed.
    assert!(
        std::fs::read_to_string(m.path("shop/current/shop/catalog/item.proto"))
            .unwrap()
            .contains("message")
    );
    m.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_objects_are_eio_never_enoent_local() {
    lost_objects_are_eio_never_enoent(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_objects_are_eio_never_enoent_s3() {
    lost_objects_are_eio_never_enoent(Backend::S3).await;
}

/// S3 behind an endpoint that accepts connections and never answers: an
/// uncached read fails with EIO within the mount's budget (here
/// `--storage-timeout 4s`; the bound asserted is a generous 3x, only to
/// document the budget), however many requests it needed; the mount stays
/// responsive (cached files, stats, a second uncached read) and its refresh
/// rounds keep ending.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hanging_endpoint_gives_eio_within_the_budget_s3() {
    if !fuse_available() {
        return;
    }
    let Some((url, _dir)) = common::fresh_url(Backend::S3).await else {
        return;
    };
    setup(&url);
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let proxy = Proxy::start(endpoint.trim_start_matches("http://").trim_end_matches('/')).await;
    let dir = tempfile::tempdir().unwrap();
    let budget = Duration::from_secs(4);
    let child = Command::new(BIN)
        .args(["mount", dir.path().to_str().unwrap(), "--refresh", "200ms"])
        .args(["--storage-timeout", "4s"])
        .env("PROTOSHELF_STORE", &url)
        .env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", proxy.port),
        )
        .spawn()
        .unwrap();
    let m = std::sync::Arc::new(Mounted {
        dir,
        child: Some(child),
    });
    let order = m.path("shop/current/shop/orders/order.proto");
    {
        let (m, order) = (m.clone(), order.clone());
        tokio::task::spawn_blocking(move || {
            wait_for(|| m.path(".protoshelf/stats").exists(), "the mount");
            assert!(
                std::fs::read_to_string(&order)
                    .unwrap()
                    .contains("message Order")
            );
        })
        .await
        .unwrap();
    }

    proxy.hang().await;
    let m2 = m.clone();
    let refreshes_before = tokio::task::spawn_blocking(move || stats(&m2)["refreshes"])
        .await
        .unwrap();
    let m2 = m.clone();
    tokio::task::spawn_blocking(move || {
        for rel in [
            "shop/schemas/shop.catalog/versions/1/descriptor.binpb",
            "shop/schemas/shop.types/versions/1/descriptor.binpb",
        ] {
            let started = Instant::now();
            let e = std::fs::read(m2.path(rel)).unwrap_err();
            let took = started.elapsed();
            eprintln!("HANGING read of {rel}: {e} after {took:?} (budget {budget:?})");
            assert_eq!(e.raw_os_error(), Some(5), "{rel}: {e}");
            assert!(took < budget * 3, "EIO took {took:?}, budget {budget:?}");
            // Still responsive: cached content and the stats file.
            assert!(
                std::fs::read_to_string(&order)
                    .unwrap()
                    .contains("message Order")
            );
            assert!(std::fs::read_to_string(m2.path(".protoshelf/stats")).is_ok());
        }
    })
    .await
    .unwrap();
    // Refresh rounds against the hung endpoint fail and end: more rounds
    // keep starting.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m2 = m.clone();
        let s = tokio::task::spawn_blocking(move || stats(&m2))
            .await
            .unwrap();
        if s["refreshes"] >= refreshes_before + 2 && s["refresh_errors"] > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "refresh rounds stopped under the hung endpoint: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    proxy.restore().await;
    let m = std::sync::Arc::try_unwrap(m).ok().unwrap();
    tokio::task::spawn_blocking(move || m.stop()).await.unwrap();
}
