//! The read-only FUSE view: `core` maps paths to entries and contents from
//! cached namespace snapshots; `fuse` adapts it to the kernel through fuser.

pub mod core;
pub mod fuse;
pub mod mountpoint;
pub mod node;
pub mod snapshot;
pub mod warnings;
pub mod wkt;

pub use self::core::{Entry, FsCore, FsError, Options, Validity};
pub use self::snapshot::{Changes, Kind};
