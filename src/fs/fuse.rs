//! The thin adapter between fuser's kernel callbacks and [`FsCore`]: inode
//! numbers, file handles, attributes and TTLs, errnos, and the kernel cache
//! invalidations a refresh asks for. Every write-type call answers EROFS.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, Request,
};

use super::core::{Entry, FsCore, FsError, Validity};
use super::snapshot::{Changes, Kind};

/// Kernel cache lifetime of what only changes when a refresh says so
/// ([`Validity::UntilChanged`]): immutable paths, and everything below a
/// namespace, which [`Invalidator`] drops when it changes.
const LONG_TTL: Duration = Duration::from_secs(24 * 3600);

fn errno(e: FsError) -> Errno {
    match e {
        FsError::NotFound => Errno::ENOENT,
        FsError::NotDir => Errno::ENOTDIR,
        FsError::Io(msg) => {
            super::warnings::storage_unreachable(format_args!("a read failed: {msg}"));
            Errno::EIO
        }
    }
}

/// Inode numbers, stable for the life of the mount. A file whose bytes
/// can change under the same path (`current/x.proto`) gets one inode per
/// content, so the kernel never serves one version's cached pages for
/// another; such an inode remembers its attributes for handles still open.
#[derive(Default)]
struct Inodes {
    by_key: HashMap<String, u64>,
    nodes: Vec<Node>,
}

struct Node {
    path: String,
    content_id: Option<String>,
    attr: Option<FileAttr>,
}

pub struct ProtoshelfFs {
    core: Arc<FsCore>,
    inodes: Arc<Mutex<Inodes>>,
    handles: Mutex<HashMap<u64, Bytes>>,
    /// The kernel skips OPEN/RELEASE once we answer ENOSYS (saving two round
    /// trips per file opened); reads then come by inode.
    no_open: std::sync::atomic::AtomicBool,
    /// The same for OPENDIR/RELEASEDIR; the kernel then also caches
    /// listings, until the directory's mtime changes or it is invalidated.
    no_opendir: std::sync::atomic::AtomicBool,
    next_fh: AtomicU64,
    /// Kernel cache lifetime of entries that change (current/, staged/, ...).
    mutable_ttl: Duration,
    uid: u32,
    gid: u32,
}

// Nanoseconds: the stats file's mtime is "now", and two reads within one
// millisecond must not look unchanged (its cached page would be served).
fn to_system(t: chrono::DateTime<chrono::Utc>) -> SystemTime {
    SystemTime::UNIX_EPOCH
        + Duration::from_nanos(t.timestamp_nanos_opt().unwrap_or(0).max(0) as u64)
}

impl ProtoshelfFs {
    pub fn new(core: Arc<FsCore>, mutable_ttl: Duration) -> Self {
        let root = Node {
            path: String::new(),
            content_id: None,
            attr: None,
        };
        let inodes = Inodes {
            by_key: HashMap::from([(String::new(), 1)]),
            nodes: vec![root],
        };
        ProtoshelfFs {
            core,
            inodes: Arc::new(Mutex::new(inodes)),
            handles: Mutex::default(),
            no_open: std::sync::atomic::AtomicBool::new(false),
            no_opendir: std::sync::atomic::AtomicBool::new(false),
            next_fh: AtomicU64::new(1),
            mutable_ttl,
            uid: owner_uid(),
            gid: owner_gid(),
        }
    }

    fn ino_for(&self, path: &str, content_id: Option<&str>) -> u64 {
        let key = match content_id {
            Some(id) => format!("{path}\0{id}"),
            None => path.to_string(),
        };
        let mut t = self.inodes.lock().unwrap();
        if let Some(i) = t.by_key.get(&key) {
            return *i;
        }
        t.nodes.push(Node {
            path: path.to_string(),
            content_id: content_id.map(str::to_string),
            attr: None,
        });
        let ino = t.nodes.len() as u64;
        t.by_key.insert(key, ino);
        ino
    }

    fn ino(&self, path: &str, entry: Option<&Entry>) -> u64 {
        let id = match entry {
            Some(Entry::File { content_id, .. }) => content_id.as_deref(),
            _ => None,
        };
        self.ino_for(path, id)
    }

    fn path(&self, ino: INodeNo) -> Result<String, Errno> {
        let t = self.inodes.lock().unwrap();
        t.nodes
            .get((u64::from(ino) as usize).wrapping_sub(1))
            .map(|n| n.path.clone())
            .ok_or(Errno::ENOENT)
    }

    /// The bytes an inode stands for: a content-addressed file by its own
    /// blob (so an older version stays readable after a promote), anything
    /// else by its path.
    fn read_inode(&self, ino: u64) -> Result<Bytes, FsError> {
        let (path, id) = {
            let t = self.inodes.lock().unwrap();
            let node = t
                .nodes
                .get((ino as usize).wrapping_sub(1))
                .ok_or(FsError::NotFound)?;
            (node.path.clone(), node.content_id.clone())
        };
        match id.as_deref().and_then(|id| id.split_once(':')) {
            Some((ns, sha)) => self.core.blob(ns, sha),
            None => self.core.content(&path),
        }
    }

    /// How long the kernel may keep the answer for `path`.
    fn ttl(&self, path: &str, found: bool) -> Duration {
        match self.core.validity(path, found) {
            // Live counters: a new mtime each time drops cached pages.
            Validity::Live => Duration::ZERO,
            Validity::Refresh => self.mutable_ttl,
            Validity::UntilChanged => LONG_TTL,
        }
    }

    /// The attributes of `ino`: fresh when its path still shows the same
    /// content, else the ones it had (an older version held open).
    fn attr_of(&self, ino: u64, entry: &Entry) -> (Duration, FileAttr) {
        let mut t = self.inodes.lock().unwrap();
        let Some(node) = t.nodes.get_mut(ino as usize - 1) else {
            return (Duration::ZERO, self.attr(ino, entry));
        };
        let fresh = (self.ttl(&node.path, true), self.attr(ino, entry));
        let current_id = match entry {
            Entry::File { content_id, .. } => content_id.as_deref(),
            _ => None,
        };
        match (&node.content_id, &node.attr) {
            (Some(id), Some(old)) if Some(id.as_str()) != current_id => (self.mutable_ttl, *old),
            _ => {
                if node.content_id.is_some() {
                    node.attr = Some(fresh.1);
                }
                fresh
            }
        }
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<String, Errno> {
        let parent = self.path(parent)?;
        let name = name.to_str().ok_or(Errno::ENOENT)?;
        Ok(if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}/{name}")
        })
    }

    fn attr(&self, ino: u64, entry: &Entry) -> FileAttr {
        let (kind, size, mtime, perm, nlink) = match entry {
            Entry::Dir { mtime, .. } => (FileType::Directory, 0, *mtime, 0o555, 2),
            Entry::File { size, mtime, .. } => (FileType::RegularFile, *size, *mtime, 0o444, 1),
            Entry::Symlink { target, mtime } => {
                (FileType::Symlink, target.len() as u64, *mtime, 0o777, 1)
            }
        };
        let t = to_system(mtime);
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        }
    }

    /// A handle for the refresh thread to drop what changed from the
    /// kernel's caches (invalidating from a callback would deadlock).
    pub fn invalidator(&self) -> Invalidator {
        Invalidator {
            core: self.core.clone(),
            inodes: self.inodes.clone(),
        }
    }
}

// The mount shows files as owned by the user who mounted it.
fn owner_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(0)
}

fn owner_gid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::gid(&m))
        .unwrap_or(0)
}

impl Filesystem for ProtoshelfFs {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        // Changed sizes and times invalidate cached pages (a file read by
        // inode without OPEN still sees a new version of a dynamic file).
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_AUTO_INVAL_DATA);
        let caps = config.capabilities();
        self.no_open.store(
            caps.contains(fuser::InitFlags::FUSE_NO_OPEN_SUPPORT),
            Relaxed,
        );
        self.no_opendir.store(
            caps.contains(fuser::InitFlags::FUSE_NO_OPENDIR_SUPPORT),
            Relaxed,
        );
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.core.counters.fuse_lookup.fetch_add(1, Relaxed);
        let _serving = self.core.serving();
        let path = match self.child(parent, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        match self.core.entry(&path).map_err(errno) {
            Ok(e) => {
                let (ttl, attr) = self.attr_of(self.ino(&path, Some(&e)), &e);
                reply.entry(&ttl, &attr, Generation(0))
            }
            // A negative entry (inode 0) the kernel keeps like a positive
            // one: protoc probes every include path for every import.
            Err(e) if e == Errno::ENOENT => {
                let missing = Entry::File {
                    size: 0,
                    mtime: chrono::DateTime::UNIX_EPOCH,
                    immutable: false,
                    content_id: None,
                };
                let attr = self.attr(0, &missing);
                reply.entry(&self.ttl(&path, false), &attr, Generation(0))
            }
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.core.counters.fuse_getattr.fetch_add(1, Relaxed);
        let _serving = self.core.serving();
        let result = self
            .path(ino)
            .and_then(|p| self.core.entry(&p).map_err(errno));
        match result {
            Ok(e) => {
                let (ttl, attr) = self.attr_of(u64::from(ino), &e);
                reply.attr(&ttl, &attr)
            }
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self
            .path(ino)
            .and_then(|p| self.core.readlink(&p).map_err(errno))
        {
            Ok(target) => reply.data(target.as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.core.counters.fuse_open.fetch_add(1, Relaxed);
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        let result = self.path(ino).and_then(|p| {
            let e = self.core.entry(&p).map_err(errno)?;
            if self.no_open.load(Relaxed) {
                // Checked; reads will come by inode.
                return Ok(None);
            }
            // The whole content, held by the handle: an open file never
            // mixes versions, whatever is promoted meanwhile.
            let bytes = self.read_inode(u64::from(ino)).map_err(errno)?;
            // Immutable files, and files whose inode names one content, can
            // keep their pages across opens.
            let keep = e.immutable()
                || matches!(
                    &e,
                    Entry::File {
                        content_id: Some(_),
                        ..
                    }
                );
            Ok(Some((keep, bytes)))
        });
        match result {
            // The kernel treats ENOSYS as "open not needed" from now on.
            Ok(None) => reply.error(Errno::ENOSYS),
            Ok(Some((keep, bytes))) => {
                let fh = self.next_fh.fetch_add(1, Relaxed);
                self.handles.lock().unwrap().insert(fh, bytes);
                let flags = if keep {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                reply.opened(FileHandle(fh), flags)
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.core.counters.fuse_read.fetch_add(1, Relaxed);
        let held = self.handles.lock().unwrap().get(&u64::from(fh)).cloned();
        let bytes = match held {
            Some(b) => b,
            None => match self.read_inode(u64::from(ino)) {
                Ok(b) => b,
                Err(e) => return reply.error(errno(e)),
            },
        };
        let start = (offset as usize).min(bytes.len());
        let end = start.saturating_add(size as usize).min(bytes.len());
        reply.data(&bytes[start..end])
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.core.counters.fuse_release.fetch_add(1, Relaxed);
        self.handles.lock().unwrap().remove(&u64::from(fh));
        reply.ok()
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing to flush on a read-only filesystem: ENOSYS once makes the
        // kernel stop sending FLUSH on every close().
        reply.error(Errno::ENOSYS)
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.no_opendir.load(Relaxed) {
            // The kernel stops sending OPENDIR/RELEASEDIR and caches
            // listings; errors then come from READDIR.
            return reply.error(Errno::ENOSYS);
        }
        match self
            .path(ino)
            .and_then(|p| self.core.entry(&p).map_err(errno))
        {
            Ok(Entry::Dir { .. }) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.core.counters.fuse_readdir.fetch_add(1, Relaxed);
        let _serving = self.core.serving();
        let result = self
            .path(ino)
            .and_then(|p| Ok((self.core.list(&p).map_err(errno)?, p)));
        let (listing, dir) = match result {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let parent = match dir.rsplit_once('/') {
            Some((p, _)) => self.ino(p, None),
            None => 1,
        };
        let mut entries = vec![
            (u64::from(ino), FileType::Directory, ".".to_string()),
            (parent, FileType::Directory, "..".to_string()),
        ];
        for (name, kind) in listing {
            let child = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            let (file_type, ino) = match kind {
                Kind::Dir => (FileType::Directory, self.ino_for(&child, None)),
                Kind::Symlink => (FileType::Symlink, self.ino_for(&child, None)),
                Kind::File(id) => (FileType::RegularFile, self.ino_for(&child, id.as_deref())),
            };
            entries.push((ino, file_type, name));
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok()
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        if mask.contains(AccessFlags::W_OK) {
            return reply.error(Errno::EROFS);
        }
        match self
            .path(ino)
            .and_then(|p| self.core.entry(&p).map_err(errno))
        {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    // Read-only: everything that would change something.

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS)
    }

    fn mknod(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _r: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS)
    }

    fn mkdir(&self, _req: &Request, _p: INodeNo, _n: &OsStr, _m: u32, _u: u32, reply: ReplyEntry) {
        reply.error(Errno::EROFS)
    }

    fn unlink(&self, _req: &Request, _p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS)
    }

    fn rmdir(&self, _req: &Request, _p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS)
    }

    fn symlink(&self, _req: &Request, _p: INodeNo, _n: &OsStr, _t: &Path, reply: ReplyEntry) {
        reply.error(Errno::EROFS)
    }

    fn rename(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _np: INodeNo,
        _nn: &OsStr,
        _f: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS)
    }

    fn link(&self, _req: &Request, _i: INodeNo, _np: INodeNo, _nn: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::EROFS)
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: fuser::ReplyWrite,
    ) {
        reply.error(Errno::EROFS)
    }

    fn create(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _f: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS)
    }

    fn setxattr(
        &self,
        _req: &Request,
        _i: INodeNo,
        _n: &OsStr,
        _v: &[u8],
        _f: i32,
        _p: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS)
    }

    fn removexattr(&self, _req: &Request, _i: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS)
    }

    fn fallocate(
        &self,
        _req: &Request,
        _i: INodeNo,
        _fh: FileHandle,
        _o: u64,
        _l: u64,
        _m: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS)
    }
}

/// Drops from the kernel's caches what a refresh reports as changed. Runs
/// on the refresh thread, never inside a callback: the kernel handles an
/// invalidation only after in-flight requests on that directory finish.
pub struct Invalidator {
    core: Arc<FsCore>,
    inodes: Arc<Mutex<Inodes>>,
}

impl Invalidator {
    /// Paths the kernel never saw an inode for are skipped: nothing of
    /// them (or below them) can be cached.
    pub fn apply(&self, changes: &Changes, notifier: &fuser::Notifier) {
        let counters = &self.core.counters;
        let (entries, inodes) = {
            let t = self.inodes.lock().unwrap();
            let ino = |path: &str| t.by_key.get(path).copied();
            let entries: Vec<(u64, String)> = changes
                .entries
                .iter()
                .filter_map(|p| {
                    let (dir, name) = p.rsplit_once('/').unwrap_or(("", p));
                    Some((ino(dir)?, name.to_string()))
                })
                .collect();
            let inodes: Vec<u64> = changes.inodes.iter().filter_map(|p| ino(p)).collect();
            (entries, inodes)
        };
        for ino in inodes {
            // Attributes and cached listing (offset 0, length 0: all).
            match notifier.inval_inode(INodeNo(ino), 0, 0) {
                Ok(()) => counters.invalidated_inodes.fetch_add(1, Relaxed),
                Err(e) => return tracing::warn!("kernel refused an invalidation: {e}"),
            };
        }
        for (parent, name) in entries {
            match notifier.inval_entry(INodeNo(parent), OsStr::new(&name)) {
                Ok(()) => counters.invalidated_entries.fetch_add(1, Relaxed),
                Err(e) => return tracing::warn!("kernel refused an invalidation: {e}"),
            };
        }
    }
}
