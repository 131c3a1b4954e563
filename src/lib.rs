//! protoshelf: a protobuf schema registry whose only database is object
//! storage.
//!
//! - [`objstore::ObjStore`] is the persistence contract (types in
//!   [`store`]), over any `object_store` backend
//!   (local directory, memory, S3, GCS, Azure) with a commit protocol built
//!   on create-if-absent writes.

pub mod compat;
pub mod confluent;
pub mod diff;
pub mod error;
pub mod fs;
pub mod ids;
pub mod inputs;
pub mod model;
pub mod objstore;
pub mod registry;
pub mod server;
pub mod store;
#[cfg(test)]
mod test_support;

pub use error::{Error, Result};
pub use objstore::ObjStore;
pub use registry::Registry;
