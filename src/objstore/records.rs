//! The JSON objects protoshelf stores, exactly as they appear in the bucket
//! (docs/storage-format.md describes each field).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};
use crate::model::{Metadata, VersionDep, VersionFile};

/// The storage format this build writes into new stores and the newest it
/// reads. 2: directory claims (`claims/dir/`) instead of path claims. A
/// format-1 store keeps format 1 (and path claims) when this build writes.
pub const FORMAT_VERSION: u32 = 2;
/// The first format with directory claims.
pub const FORMAT_DIR_CLAIMS: u32 = 2;

/// `protoshelf.json`: identifies a protoshelf store and its format.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FormatMarker {
    pub format: String,
    pub format_version: u32,
    pub created_at: DateTime<Utc>,
    /// Settles an ambiguous create by read-back.
    pub writer_id: String,
}

/// `namespaces/<ns>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamespaceRecord {
    pub namespace_id: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub metadata: Metadata,
    pub writer_id: String,
}

/// `ns/<ns>/schemas/<schema>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchemaRecord {
    pub namespace_id: String,
    pub schema_id: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub metadata: Metadata,
    pub writer_id: String,
}

/// Where a version's compiled descriptor set lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescriptorRef {
    /// Key relative to the store root: `ns/<ns>/descriptors/<sha256>.binpb`.
    pub key: String,
    pub sha256: String,
    pub size: u64,
}

/// `ns/<ns>/versions/<schema>/<version:020>.json`: one immutable version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionManifest {
    pub format_version: u32,
    pub namespace_id: String,
    pub schema_id: String,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub compiler_version: String,
    pub descriptor: DescriptorRef,
    pub files: Vec<VersionFile>,
    #[serde(default)]
    pub deps: Vec<VersionDep>,
    #[serde(default)]
    pub metadata: Metadata,
    pub writer_id: String,
}

/// The pointers of one schema in a namespace's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<u64>,
    /// Highest version number this log has seen for the schema: where the
    /// next version-number allocation starts probing.
    #[serde(default)]
    pub latest: u64,
}

/// The full pointer state of a namespace (as stored in checkpoints).
/// `schemas` is a persistent map: every commit derives a new state from
/// the last, and cloning 10,000 entries per commit would make a commit's
/// CPU cost grow with the namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSnapshot {
    pub schemas: imbl::OrdMap<String, Pointers>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// What a commit did, for people reading the log (`protoshelf log`); the
/// state is driven by `changes`/`config` only, so replay needs no logic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Operation {
    Stage {
        versions: Vec<StagedVersion>,
    },
    Promote {
        promoted: Vec<crate::model::PromotedSchema>,
    },
    Discard {
        schemas: Vec<String>,
    },
    SetConfig {
        key: String,
        value: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedVersion {
    pub schema_id: String,
    /// None when the commit cleared the schema's staging.
    pub version: Option<u64>,
}

/// `ns/<ns>/log/<seq:020>.json`: one commit. Creating it is the commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogEntry {
    pub format_version: u32,
    pub seq: u64,
    /// Unique per commit attempt: an ambiguous create is settled by reading
    /// the entry back and comparing this.
    pub commit_id: String,
    pub writer: String,
    pub created_at: DateTime<Utc>,
    pub operation: Operation,
    /// The full new pointers of every schema this commit touched.
    #[serde(default)]
    pub changes: BTreeMap<String, Pointers>,
    /// Settings this commit set.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// The newest checkpoint at or before this entry (== seq when this entry
    /// is one; 0 = the empty state before the first entry).
    pub base: u64,
    /// The full state after this commit, present in checkpoint entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateSnapshot>,
}

/// `ns/<ns>/head.json`: a hint, never trusted, overwritten after commits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadHint {
    pub seq: u64,
}

/// `confluent/ids/<id:020>.json`: a global schema ID of the Confluent API
/// and the schema it names. Immutable; created with create-if-absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaIdRecord {
    pub id: u64,
    /// SHA-256 of the content this ID names (see `SchemaContent`).
    pub sha256: String,
    pub schema_type: String,
    /// The schema text as served (`.proto` source).
    pub schema: String,
    #[serde(default)]
    pub references: Vec<SchemaReference>,
    /// Base64 of the main file's `FileDescriptorProto` (`format=serialized`).
    #[serde(default)]
    pub serialized: String,
    pub created_at: DateTime<Utc>,
    pub writer_id: String,
}

/// A Confluent schema reference: `import "<name>"` resolved to version
/// `version` of `subject`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SchemaReference {
    pub name: String,
    pub subject: String,
    pub version: i64,
}

/// `confluent/content/<sha256>.json`: the ID a content got. The first
/// creator wins, so identical content gets one ID from every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaContentRecord {
    pub sha256: String,
    pub id: u64,
    pub writer_id: String,
}

/// `confluent/ids-head.json`: hint of the highest allocated ID.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchemaIdsHint {
    pub id: u64,
}

/// `confluent/config/<seq:020>.json`: the Confluent API's global settings
/// after change `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfluentConfigRecord {
    pub seq: u64,
    /// A Confluent compatibility level (`BACKWARD`, ...).
    pub compatibility: String,
    pub created_at: DateTime<Utc>,
    pub writer_id: String,
}

pub fn to_json<T: Serialize>(value: &T) -> bytes::Bytes {
    // Compact: log entries and checkpoints are read on every cold open.
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(value).expect("records serialize").into()
}

pub fn from_json<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        key: key.to_string(),
        reason: format!("not a valid record: {e}"),
    })
}
