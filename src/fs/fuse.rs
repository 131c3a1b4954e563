//! The thin adapter between fuser's kernel callbacks and [`Vfs`]: each
//! callback translates its arguments, calls the matching `Vfs` method and
//! turns the answer into fuser's reply (attributes, errnos). Inodes,
//! handles, attributes and TTLs are `Vfs`'s; every write-type call answers
//! EROFS.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, Request,
};

use super::core::{FsCore, FsError};
use super::snapshot::Changes;
use super::vfs::{Attr, FileKind, Opened, Vfs};

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

/// A write-type call on a read-only filesystem.
macro_rules! read_only {
    ($reply:expr) => {
        $reply.error(Errno::EROFS)
    };
}

pub struct ProtoshelfFs {
    vfs: Arc<Vfs>,
    /// The kernel skips OPEN/RELEASE once we answer ENOSYS (saving two round
    /// trips per file opened); reads then come by inode.
    no_open: AtomicBool,
    /// The same for OPENDIR/RELEASEDIR; the kernel then also caches
    /// listings, until the directory's mtime changes or it is invalidated.
    no_opendir: AtomicBool,
    uid: u32,
    gid: u32,
}

// Nanoseconds: the stats file's mtime is "now", and two reads within one
// millisecond must not look unchanged (its cached page would be served).
fn to_system(t: chrono::DateTime<chrono::Utc>) -> SystemTime {
    SystemTime::UNIX_EPOCH
        + Duration::from_nanos(t.timestamp_nanos_opt().unwrap_or(0).max(0) as u64)
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::Dir => FileType::Directory,
        FileKind::File => FileType::RegularFile,
        FileKind::Symlink => FileType::Symlink,
    }
}

impl ProtoshelfFs {
    pub fn new(core: Arc<FsCore>, mutable_ttl: Duration) -> Self {
        ProtoshelfFs {
            vfs: Arc::new(Vfs::new(core, mutable_ttl)),
            no_open: AtomicBool::new(false),
            no_opendir: AtomicBool::new(false),
            uid: owner_uid(),
            gid: owner_gid(),
        }
    }

    fn attr(&self, a: &Attr) -> FileAttr {
        let (perm, nlink) = match a.kind {
            FileKind::Dir => (0o555, 2),
            FileKind::File => (0o444, 1),
            FileKind::Symlink => (0o777, 1),
        };
        let t = to_system(a.mtime);
        FileAttr {
            ino: INodeNo(a.ino),
            size: a.size,
            blocks: a.size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind: file_type(a.kind),
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
            vfs: self.vfs.clone(),
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
        let Some(name) = name.to_str() else {
            return reply.error(Errno::ENOENT);
        };
        // Held until the reply is sent.
        let _serving = self.vfs.serving();
        match self.vfs.lookup(u64::from(parent), name) {
            Ok(l) => {
                // A missing name: a negative entry (inode 0), which the
                // kernel keeps like a positive one.
                let attr = l.attr.unwrap_or(Attr {
                    ino: 0,
                    kind: FileKind::File,
                    size: 0,
                    mtime: chrono::DateTime::UNIX_EPOCH,
                });
                reply.entry(&l.ttl, &self.attr(&attr), Generation(0))
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        // Held until the reply is sent.
        let _serving = self.vfs.serving();
        match self.vfs.getattr(u64::from(ino)) {
            Ok((ttl, attr)) => reply.attr(&ttl, &self.attr(&attr)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.vfs.readlink(u64::from(ino)) {
            Ok(target) => reply.data(target.as_bytes()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self.vfs.open(u64::from(ino), !self.no_open.load(Relaxed)) {
            // The kernel treats ENOSYS as "open not needed" from now on.
            Ok(Opened::NotNeeded) => reply.error(Errno::ENOSYS),
            Ok(Opened::Handle { fh, keep_cache }) => {
                let flags = if keep_cache {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                reply.opened(FileHandle(fh), flags)
            }
            Err(e) => reply.error(errno(e)),
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
        match self.vfs.read(u64::from(ino), u64::from(fh), offset, size) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(errno(e)),
        }
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
        self.vfs.release(u64::from(fh));
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
        match self.vfs.opendir(u64::from(ino)) {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
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
        // Held until the reply is sent.
        let _serving = self.vfs.serving();
        let entries = match self.vfs.readdir(u64::from(ino)) {
            Ok(entries) => entries,
            Err(e) => return reply.error(errno(e)),
        };
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, file_type(kind), name) {
                break;
            }
        }
        reply.ok()
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        if mask.contains(AccessFlags::W_OK) {
            return reply.error(Errno::EROFS);
        }
        match self.vfs.access(u64::from(ino)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
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
        read_only!(reply)
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
        read_only!(reply)
    }

    fn mkdir(&self, _req: &Request, _p: INodeNo, _n: &OsStr, _m: u32, _u: u32, reply: ReplyEntry) {
        read_only!(reply)
    }

    fn unlink(&self, _req: &Request, _p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        read_only!(reply)
    }

    fn rmdir(&self, _req: &Request, _p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        read_only!(reply)
    }

    fn symlink(&self, _req: &Request, _p: INodeNo, _n: &OsStr, _t: &Path, reply: ReplyEntry) {
        read_only!(reply)
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
        read_only!(reply)
    }

    fn link(&self, _req: &Request, _i: INodeNo, _np: INodeNo, _nn: &OsStr, reply: ReplyEntry) {
        read_only!(reply)
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
        read_only!(reply)
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
        read_only!(reply)
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
        read_only!(reply)
    }

    fn removexattr(&self, _req: &Request, _i: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        read_only!(reply)
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
        read_only!(reply)
    }
}

/// Drops from the kernel's caches what a refresh reports as changed. Runs
/// on the refresh thread, never inside a callback: the kernel handles an
/// invalidation only after in-flight requests on that directory finish.
pub struct Invalidator {
    vfs: Arc<Vfs>,
}

impl Invalidator {
    pub fn apply(&self, changes: &Changes, notifier: &fuser::Notifier) {
        let counters = &self.vfs.core().counters;
        let (inodes, entries) = self.vfs.invalidations(changes);
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
