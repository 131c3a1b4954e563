//! The persistence contract's shared types. Its operations are
//! [`crate::objstore::ObjStore`]'s methods: the semantics of the reference
//! registry's `store.Store` (DESIGN §2). There is one implementation, so
//! there is no trait: backends vary below it, behind `object_store`.
//!
//! Pointer changes (`set_staged`, `stage`, `promote`,
//! `discard_staging`, `set_config`) are commits to the namespace's log: each
//! is atomic, and `expect_seq` lets a caller that validated against one state
//! refuse to commit on top of another.

/// One pointer change in a staging commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageChange {
    pub schema_id: String,
    /// The version to stage; `None` clears the schema's staging.
    pub version: Option<u64>,
}

/// What a schema can claim in its namespace's index: the directories (or,
/// in format-1 stores, the file paths) and the proto packages its versions
/// define files in. Claims are never withdrawn; a claimant owns a file or
/// name only while its proposed (or current) version still defines it,
/// which the caller checks. They let the registry find who defines an
/// import or a package without reading every schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClaimKind {
    /// A file path (format 1 stores only).
    Path,
    Package,
    /// A directory of file paths (`""` is the root): one claim per
    /// (directory, schema) instead of one per file (format 2).
    Dir,
}

impl ClaimKind {
    pub const ALL: [ClaimKind; 3] = [ClaimKind::Path, ClaimKind::Package, ClaimKind::Dir];

    pub fn as_str(self) -> &'static str {
        match self {
            ClaimKind::Path => "path",
            ClaimKind::Package => "package",
            ClaimKind::Dir => "dir",
        }
    }
}

/// The directory of a file path (`""` for a file at the root).
pub fn dir_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// A keyset page: at most `limit` items whose ID is strictly greater than
/// `after` (empty = from the start), in ID order.
pub const DEFAULT_PAGE: usize = 100;
/// The largest page a caller may ask for.
pub const MAX_PAGE: usize = 1000;
