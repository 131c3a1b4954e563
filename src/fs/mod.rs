//! The read-only FUSE view: `node` is the path grammar, `core` maps paths
//! to entries and contents from cached namespace snapshots, `vfs` keeps
//! inodes, handles and attributes over it, and `fuse` adapts `vfs` to the
//! kernel through fuser.

pub mod core;
pub mod fuse;
pub mod mountpoint;
pub mod node;
pub mod snapshot;
pub mod vfs;
pub mod warnings;
pub mod wkt;

pub use self::core::{Entry, FsCore, FsError, Options, Validity};
pub use self::snapshot::{Changes, Kind};
