//! The filesystem as the kernel sees it, over [`FsCore`]'s paths: inode
//! numbers, open-file handles, attributes and their cache lifetimes, and
//! which inodes a refresh's changes name. No fuser types: `fuse.rs` only
//! translates kernel callbacks to these calls and their answers back, and
//! tests drive this directly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::core::{Entry, FsCore, FsError, FsResult, Validity};
use super::snapshot::{Changes, Kind};

/// Kernel cache lifetime of what only changes when a refresh says so
/// ([`Validity::UntilChanged`]): immutable paths, and everything below a
/// namespace, which a refresh's [`Changes`] drop when they change.
pub const LONG_TTL: Duration = Duration::from_secs(24 * 3600);

/// The inode of the mount's root.
pub const ROOT: u64 = 1;

/// What kind of object an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    File,
    Symlink,
}

/// An inode's attributes, as the adapter reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: FileKind,
    /// Bytes of a file; a symlink's target length; 0 for a directory.
    pub size: u64,
    pub mtime: DateTime<Utc>,
}

impl Attr {
    fn of(ino: u64, entry: &Entry) -> Attr {
        let (kind, size, mtime) = match entry {
            Entry::Dir { mtime, .. } => (FileKind::Dir, 0, *mtime),
            Entry::File { size, mtime, .. } => (FileKind::File, *size, *mtime),
            Entry::Symlink { target, mtime } => (FileKind::Symlink, target.len() as u64, *mtime),
        };
        Attr {
            ino,
            kind,
            size,
            mtime,
        }
    }
}

/// A LOOKUP's answer: the child's attributes, or `None` for a name that
/// does not exist (a negative entry the kernel may keep for `ttl`: protoc
/// probes every include path for every import).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup {
    pub ttl: Duration,
    pub attr: Option<Attr>,
}

/// An OPEN's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// The kernel does not need OPEN (it said so at init): reads come by
    /// inode. The adapter answers ENOSYS, which tells the kernel that.
    NotNeeded,
    /// A handle holding the whole content; `keep_cache`: the kernel may
    /// keep the file's pages across opens (the content cannot change).
    Handle { fh: u64, keep_cache: bool },
}

/// Inode numbers, stable for the life of the mount. A file whose bytes
/// can change under the same path (`current/x.proto`) gets one inode per
/// content, so the kernel never serves one version's cached pages for
/// another; such an inode remembers its attributes for handles still open.
#[derive(Default)]
struct Inodes {
    by_key: HashMap<String, u64>,
    nodes: Vec<Inode>,
}

struct Inode {
    path: String,
    content_id: Option<String>,
    attr: Option<Attr>,
}

impl Inodes {
    fn get(&self, ino: u64) -> FsResult<&Inode> {
        self.nodes
            .get((ino as usize).wrapping_sub(1))
            .ok_or(FsError::NotFound)
    }
}

pub struct Vfs {
    core: Arc<FsCore>,
    inodes: Mutex<Inodes>,
    handles: Mutex<HashMap<u64, Bytes>>,
    next_fh: AtomicU64,
    /// Kernel cache lifetime of entries that change (current/, staged/, ...).
    mutable_ttl: Duration,
}

impl Vfs {
    pub fn new(core: Arc<FsCore>, mutable_ttl: Duration) -> Self {
        let root = Inode {
            path: String::new(),
            content_id: None,
            attr: None,
        };
        Vfs {
            core,
            inodes: Mutex::new(Inodes {
                by_key: HashMap::from([(String::new(), ROOT)]),
                nodes: vec![root],
            }),
            handles: Mutex::default(),
            next_fh: AtomicU64::new(1),
            mutable_ttl,
        }
    }

    pub fn core(&self) -> &FsCore {
        &self.core
    }

    /// To be held by the adapter from before a LOOKUP, GETATTR or READDIR
    /// until its reply is sent: a refresh waits for it before the kernel
    /// is told to forget what changed, so no answer from a replaced
    /// snapshot arrives after that (see [`FsCore::serving`]).
    pub fn serving(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.core.serving()
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
        t.nodes.push(Inode {
            path: path.to_string(),
            content_id: content_id.map(str::to_string),
            attr: None,
        });
        let ino = t.nodes.len() as u64;
        t.by_key.insert(key, ino);
        ino
    }

    fn ino(&self, path: &str, entry: &Entry) -> u64 {
        let id = match entry {
            Entry::File { content_id, .. } => content_id.as_deref(),
            _ => None,
        };
        self.ino_for(path, id)
    }

    /// The path an inode stands for.
    pub fn path(&self, ino: u64) -> FsResult<String> {
        Ok(self.inodes.lock().unwrap().get(ino)?.path.clone())
    }

    fn child(&self, parent: u64, name: &str) -> FsResult<String> {
        let parent = self.path(parent)?;
        Ok(if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}/{name}")
        })
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
    fn attr_of(&self, ino: u64, entry: &Entry) -> (Duration, Attr) {
        let mut t = self.inodes.lock().unwrap();
        let Some(node) = t.nodes.get_mut((ino as usize).wrapping_sub(1)) else {
            return (Duration::ZERO, Attr::of(ino, entry));
        };
        let fresh = (self.ttl(&node.path, true), Attr::of(ino, entry));
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

    /// The bytes an inode stands for: a content-addressed file by its own
    /// blob (so an older version stays readable after a promote), anything
    /// else by its path.
    fn read_inode(&self, ino: u64) -> FsResult<Bytes> {
        let (path, id) = {
            let t = self.inodes.lock().unwrap();
            let node = t.get(ino)?;
            (node.path.clone(), node.content_id.clone())
        };
        match id.as_deref().and_then(|id| id.split_once(':')) {
            Some((ns, sha)) => self.core.blob(ns, sha),
            None => self.core.content(&path),
        }
    }

    /// LOOKUP of `name` in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &str) -> FsResult<Lookup> {
        self.core.counters.fuse_lookup.fetch_add(1, Relaxed);
        let path = self.child(parent, name)?;
        match self.core.entry(&path) {
            Ok(e) => {
                let (ttl, attr) = self.attr_of(self.ino(&path, &e), &e);
                Ok(Lookup {
                    ttl,
                    attr: Some(attr),
                })
            }
            Err(FsError::NotFound) => Ok(Lookup {
                ttl: self.ttl(&path, false),
                attr: None,
            }),
            Err(e) => Err(e),
        }
    }

    /// GETATTR of `ino`.
    pub fn getattr(&self, ino: u64) -> FsResult<(Duration, Attr)> {
        self.core.counters.fuse_getattr.fetch_add(1, Relaxed);
        let e = self.core.entry(&self.path(ino)?)?;
        Ok(self.attr_of(ino, &e))
    }

    /// READLINK of `ino`.
    pub fn readlink(&self, ino: u64) -> FsResult<String> {
        self.core.readlink(&self.path(ino)?)
    }

    /// OPEN of `ino` for reading; `needed`: the kernel sends OPEN/RELEASE
    /// (it did not offer to skip them).
    pub fn open(&self, ino: u64, needed: bool) -> FsResult<Opened> {
        self.core.counters.fuse_open.fetch_add(1, Relaxed);
        let e = self.core.entry(&self.path(ino)?)?;
        if !needed {
            // Checked; reads will come by inode.
            return Ok(Opened::NotNeeded);
        }
        // The whole content, held by the handle: an open file never mixes
        // versions, whatever is promoted meanwhile.
        let bytes = self.read_inode(ino)?;
        // Immutable files, and files whose inode names one content, can
        // keep their pages across opens.
        let keep_cache = e.immutable()
            || matches!(
                &e,
                Entry::File {
                    content_id: Some(_),
                    ..
                }
            );
        let fh = self.next_fh.fetch_add(1, Relaxed);
        self.handles.lock().unwrap().insert(fh, bytes);
        Ok(Opened::Handle { fh, keep_cache })
    }

    /// READ of `size` bytes at `offset`: from the handle's content, or by
    /// inode when there is no handle (the kernel skips OPEN).
    pub fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        self.core.counters.fuse_read.fetch_add(1, Relaxed);
        let held = self.handles.lock().unwrap().get(&fh).cloned();
        let bytes = match held {
            Some(b) => b,
            None => self.read_inode(ino)?,
        };
        let start = (offset as usize).min(bytes.len());
        let end = start.saturating_add(size as usize).min(bytes.len());
        Ok(bytes.slice(start..end))
    }

    /// RELEASE of a handle.
    pub fn release(&self, fh: u64) {
        self.core.counters.fuse_release.fetch_add(1, Relaxed);
        self.handles.lock().unwrap().remove(&fh);
    }

    /// Open handles (for tests: every OPEN is matched by a RELEASE).
    pub fn open_handles(&self) -> usize {
        self.handles.lock().unwrap().len()
    }

    /// OPENDIR of `ino`: a directory, else `NotDir`.
    pub fn opendir(&self, ino: u64) -> FsResult<()> {
        match self.core.entry(&self.path(ino)?)? {
            Entry::Dir { .. } => Ok(()),
            _ => Err(FsError::NotDir),
        }
    }

    /// READDIR of `ino`: `.`, `..`, then every entry, with inode numbers.
    pub fn readdir(&self, ino: u64) -> FsResult<Vec<(u64, FileKind, String)>> {
        self.core.counters.fuse_readdir.fetch_add(1, Relaxed);
        let dir = self.path(ino)?;
        let listing = self.core.list(&dir)?;
        let parent = match dir.rsplit_once('/') {
            Some((p, _)) => self.ino_for(p, None),
            None => ROOT,
        };
        let mut entries = vec![
            (ino, FileKind::Dir, ".".to_string()),
            (parent, FileKind::Dir, "..".to_string()),
        ];
        for (name, kind) in listing {
            let child = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            let (kind, ino) = match kind {
                Kind::Dir => (FileKind::Dir, self.ino_for(&child, None)),
                Kind::Symlink => (FileKind::Symlink, self.ino_for(&child, None)),
                Kind::File(id) => (FileKind::File, self.ino_for(&child, id.as_deref())),
            };
            entries.push((ino, kind, name));
        }
        Ok(entries)
    }

    /// ACCESS of `ino` for reading (writes are the adapter's EROFS).
    pub fn access(&self, ino: u64) -> FsResult<()> {
        self.core.entry(&self.path(ino)?).map(|_| ())
    }

    /// What the kernel must forget after a refresh reported `changes`: the
    /// inodes whose attributes or listing changed, and the (directory
    /// inode, name) entries whose lookup answer changed. Paths the kernel
    /// never saw an inode for are skipped: nothing of them (or below
    /// them) can be cached.
    pub fn invalidations(&self, changes: &Changes) -> (Vec<u64>, Vec<(u64, String)>) {
        let t = self.inodes.lock().unwrap();
        let ino = |path: &str| t.by_key.get(path).copied();
        let entries = changes
            .entries
            .iter()
            .filter_map(|p| {
                let (dir, name) = p.rsplit_once('/').unwrap_or(("", p));
                Some((ino(dir)?, name.to_string()))
            })
            .collect();
        let inodes = changes.inodes.iter().filter_map(|p| ino(p)).collect();
        (inodes, entries)
    }
}
