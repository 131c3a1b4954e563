//! The persistence contract: what the registry needs from storage.
//!
//! The semantics are those of the reference registry's `store.Store`
//! (DESIGN §2); [`crate::objstore::ObjStore`] implements it over object
//! storage. Pointer changes (`set_staged`, `stage`, `promote`,
//! `discard_staging`, `set_config`) are commits to the namespace's log: each
//! is atomic, and `expect_seq` lets a caller that validated against one state
//! refuse to commit on top of another.

use async_trait::async_trait;

use crate::error::Result;
use crate::model::*;

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

#[async_trait]
pub trait Store: Send + Sync {
    /// Stores a source blob; a no-op when the same blob is already stored.
    /// Fails with `InvalidInput` when `sha256` is not the hash of `source`.
    async fn put_blob(&self, blob: &ProtoBlob) -> Result<()>;
    /// Reads a blob, verifying its hash (a mismatch is `Corrupt`).
    async fn get_blob(&self, namespace_id: &str, sha256: &str) -> Result<ProtoBlob>;

    async fn create_namespace(&self, ns: &Namespace) -> Result<()>;
    async fn get_namespace(&self, id: &str) -> Result<Namespace>;
    async fn list_namespaces(&self) -> Result<Vec<Namespace>>;
    async fn list_namespaces_page(&self, after: &str, limit: usize) -> Result<Vec<Namespace>>;

    /// Creates a schema (its pointers start empty).
    async fn create_schema(&self, schema: &Schema) -> Result<()>;
    async fn get_schema(&self, namespace_id: &str, schema_id: &str) -> Result<Schema>;
    async fn list_schemas(&self, namespace_id: &str) -> Result<Vec<Schema>>;
    async fn list_schemas_page(
        &self,
        namespace_id: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Schema>>;

    /// Stores version `ver.version` with its files and deps, atomically.
    /// `AlreadyExists` when that number is taken.
    async fn put_version(
        &self,
        ver: &SchemaVersion,
        files: &[VersionFile],
        deps: &[VersionDep],
    ) -> Result<()>;
    /// Stores a new version under the next free number and returns it
    /// (`ver.version` is ignored). Numbers are never handed out twice.
    async fn create_version(
        &self,
        ver: &SchemaVersion,
        files: &[VersionFile],
        deps: &[VersionDep],
    ) -> Result<u64>;
    async fn get_version(
        &self,
        namespace_id: &str,
        schema_id: &str,
        version: u64,
    ) -> Result<SchemaVersion>;
    async fn get_version_files(
        &self,
        namespace_id: &str,
        schema_id: &str,
        version: u64,
    ) -> Result<Vec<VersionFile>>;
    async fn get_version_deps(
        &self,
        namespace_id: &str,
        schema_id: &str,
        version: u64,
    ) -> Result<Vec<VersionDep>>;
    /// Every stored version number of a schema, ascending.
    async fn list_versions(&self, namespace_id: &str, schema_id: &str) -> Result<Vec<u64>>;

    /// Stages `version` for a schema; 0 clears its staging.
    async fn set_staged(
        &self,
        namespace_id: &str,
        schema_id: &str,
        version: u64,
    ) -> Result<CommitInfo>;
    /// Applies many staging changes in one commit (a whole tree is one
    /// commit, not thousands). With `expect_seq`, commits only on top of that
    /// log position and fails with `Conflict` otherwise.
    async fn stage(
        &self,
        namespace_id: &str,
        changes: &[StageChange],
        expect_seq: Option<u64>,
    ) -> Result<CommitInfo>;
    /// Makes every staged version of the namespace current, atomically.
    async fn promote(&self, namespace_id: &str, expect_seq: Option<u64>) -> Result<Promotion>;
    /// Clears every staged pointer of the namespace, atomically. Returns the
    /// commit, or None when nothing was staged.
    async fn discard_staging(&self, namespace_id: &str) -> Result<Option<CommitInfo>>;
    /// Sets a namespace setting (e.g. its compatibility policy) in one commit.
    async fn set_config(&self, namespace_id: &str, key: &str, value: &str) -> Result<CommitInfo>;
    /// The namespace's settings as of its latest commit.
    async fn get_config(
        &self,
        namespace_id: &str,
    ) -> Result<std::collections::BTreeMap<String, String>>;

    /// Records that `schema_id` defines each of `names` (idempotent).
    async fn add_claims(
        &self,
        namespace_id: &str,
        schema_id: &str,
        kind: ClaimKind,
        names: &[String],
    ) -> Result<()>;
    /// Which claim stands for the file `path` in this store: its directory
    /// (format 2), or the path itself (format 1).
    fn path_claim(&self, path: &str) -> (ClaimKind, String);
    /// The schemas that ever claimed `name`, sorted.
    async fn claimants(
        &self,
        namespace_id: &str,
        kind: ClaimKind,
        name: &str,
    ) -> Result<Vec<String>>;
    /// Every claim in the namespace, by kind: name → claimants (one LIST
    /// sweep, instead of a LIST per name, for batches and small namespaces).
    async fn all_claims(
        &self,
        namespace_id: &str,
    ) -> Result<
        std::collections::BTreeMap<ClaimKind, std::collections::BTreeMap<String, Vec<String>>>,
    >;

    async fn load_all_current(&self) -> Result<Vec<CurrentSchema>>;
    async fn load_namespace_current(&self, namespace_id: &str) -> Result<Vec<CurrentSchema>>;
    /// Staged versions where staged, current otherwise.
    async fn load_namespace_proposed(&self, namespace_id: &str) -> Result<Vec<CurrentSchema>>;
}
