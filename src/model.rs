//! The entities of the persistence contract (the reference registry's
//! `store` package, in Rust naming).

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Free-form string metadata attached to namespaces, schemas and versions.
pub type Metadata = BTreeMap<String, String>;

/// An isolation boundary for schemas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub id: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub metadata: Metadata,
    /// Who created it (`--created-by`), when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// A named collection of proto files within a namespace, with its pointers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub namespace_id: String,
    pub schema_id: String,
    pub current_version: Option<u64>,
    pub staged_version: Option<u64>,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub metadata: Metadata,
    /// Soft-deleted (hidden from lists and the mount's trees).
    #[serde(default)]
    pub deleted: bool,
}

/// A content-addressed proto source file: `sha256` is the SHA-256 of `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoBlob {
    pub namespace_id: String,
    pub sha256: String,
    pub source: Bytes,
    /// When the blob was first stored (None before it is stored).
    pub created_at: Option<DateTime<Utc>>,
}

/// One immutable version of a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaVersion {
    pub namespace_id: String,
    pub schema_id: String,
    pub version: u64,
    /// Serialized, self-contained `FileDescriptorSet`.
    pub compiled: Bytes,
    pub compiler_version: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub metadata: Metadata,
}

/// A file of a version: its import path and the blob holding its source.
/// Equality and order are by path and hash only: the size follows from the
/// content, and a manifest written before sizes existed names the same file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionFile {
    pub path: String,
    pub sha256: String,
    /// The source's length in bytes (format 3 manifests; absent in older
    /// ones), so a reader learns a file's size without its blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

impl PartialEq for VersionFile {
    fn eq(&self, other: &Self) -> bool {
        (&self.path, &self.sha256) == (&other.path, &other.sha256)
    }
}

impl Eq for VersionFile {}

impl PartialOrd for VersionFile {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for VersionFile {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.path, &self.sha256).cmp(&(&other.path, &other.sha256))
    }
}

/// An import a version resolved from another schema (or from builtins).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VersionDep {
    /// The imported file's path.
    pub path: String,
    pub namespace_id: String,
    pub schema_id: String,
    pub version: u64,
}

/// A schema whose staged version became current in a promote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotedSchema {
    pub schema_id: String,
    pub prior_version: Option<u64>,
    pub current_version: u64,
}

/// The full state of one schema version as loaded for a namespace tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentSchema {
    pub namespace_id: String,
    pub schema_id: String,
    pub version: u64,
    pub compiled: Bytes,
    pub compiler_version: String,
    pub files: Vec<VersionFile>,
}

/// What a commit to a namespace's log returned: its sequence number and the
/// unique ID written into the entry (how an ambiguous write is settled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitInfo {
    pub seq: u64,
    pub commit_id: String,
}

/// The result of a promote: what moved, and the commit that moved it (None
/// when nothing was staged and nothing was written).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Promotion {
    pub promoted: Vec<PromotedSchema>,
    pub commit: Option<CommitInfo>,
}
