//! The JSON objects protoshelf stores, exactly as they appear in the bucket
//! (docs/storage-format.md describes each field).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::Digest;

use crate::error::{Error, Result};
use crate::model::{Metadata, VersionDep, VersionFile};

/// The storage format this build writes into new stores and the newest it
/// reads. 2: directory claims (`claims/dir/`) instead of path claims. 3:
/// move markers (`moves/`) and descriptor hashes in log entries, the
/// reader contract's current-descriptor path. A store keeps the format its
/// marker names when this build writes (format 1 keeps path claims, format
/// 2 gets no move markers).
pub const FORMAT_VERSION: u32 = 3;
/// The first format with directory claims.
pub const FORMAT_DIR_CLAIMS: u32 = 2;
/// The first format whose commits write move markers and descriptor hashes.
pub const FORMAT_MOVES: u32 = 3;

/// The version of the reader contract (docs/storage-format.md, "The reader
/// contract") this build's stores keep: only a bump of it may break a
/// reader that follows the contract.
pub const READER_CONTRACT_VERSION: u32 = 1;

/// `protoshelf.json`: identifies a protoshelf store and its format.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FormatMarker {
    pub format: String,
    pub format_version: u32,
    pub created_at: DateTime<Utc>,
    /// Settles an ambiguous create by read-back.
    pub writer_id: String,
    /// The reader-contract version the store keeps (absent in stores
    /// created before it: 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader_contract: Option<u32>,
}

/// `namespaces/<ns>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamespaceRecord {
    pub namespace_id: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub metadata: Metadata,
    pub writer_id: String,
    /// Who created it (`--created-by`); absent when not recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
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
    /// The staged version was staged by a forced rollback: promote makes it
    /// current without the compatibility check the force skipped. Cleared
    /// with the staged pointer, and by any other stage.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub staged_forced: bool,
    /// Highest version number this log has seen for the schema: where the
    /// next version-number allocation starts probing.
    #[serde(default)]
    pub latest: u64,
    /// Soft-deleted: no current or staged version while set; `restore` is
    /// the version that was current, which `undelete` makes current again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<u64>,
}

/// The descriptors (SHA-256 of `descriptors/<sha256>.binpb`) of a schema's
/// current and staged versions, as of the commit that recorded them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<String>,
}

/// The namespace sets (SHA-256 of `ns/<ns>/sets/<sha256>.binpb`) of a
/// namespace's current and staged trees: every file of every schema at its
/// owner's current (or staged) version, the builtins and well-known types
/// they import, each file once, dependencies first (format 3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsSets {
    pub current: String,
    pub staged: String,
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
    /// Format 3: the namespace sets as of the newest commit that recorded
    /// them, so a writer builds the next ones from these (absent before
    /// the namespace's first format-3 commit with changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sets: Option<NsSets>,
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
    /// Soft deletes: hidden, readable by version, restorable.
    Delete {
        schemas: Vec<String>,
    },
    Undelete {
        schemas: Vec<String>,
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
    /// The process that wrote it (`host/pid`).
    pub writer: String,
    /// The person or job it was made for (`--created-by`); absent when the
    /// writer named none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub operation: Operation,
    /// The full new pointers of every schema this commit touched.
    #[serde(default)]
    pub changes: BTreeMap<String, Pointers>,
    /// Settings this commit set.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Format 3: for every schema in `changes`, the descriptors of its
    /// current and staged versions, so a reader needs no manifest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub descriptors: BTreeMap<String, Descriptors>,
    /// Format 3: the namespace sets after this commit, in every entry that
    /// changes pointers (its namespace move marker is created before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sets: Option<NsSets>,
    /// The newest checkpoint at or before this entry (== seq when this entry
    /// is one; 0 = the empty state before the first entry).
    pub base: u64,
    /// The full state after this commit, present in checkpoint entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateSnapshot>,
    /// Present in an entry `verify --repair` wrote in place of a missing or
    /// damaged one (its operation is an empty stage, which changes nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair: Option<RepairNote>,
}

/// What a repair entry replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairNote {
    /// `missing`, or why the entry that was there was damaged.
    pub replaced: String,
}

/// `ns/<ns>/head.json`: a hint, never trusted, overwritten after commits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadHint {
    /// The newest checkpoint at a multiple of `CHAIN_MAX`: where a cold
    /// reader starts.
    pub seq: u64,
    /// The newest commit its writer made (written after that entry
    /// existed). A log that ends before it lost entries. Absent in hints
    /// of format 2 writers before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<u64>,
    /// The state after commit `latest` (settings and pointers), when small:
    /// what a publish in a child namespace reads of an ancestor, in the one
    /// GET (docs/storage-format.md, "Reading an ancestor"). Unconfirmed like
    /// the rest of the hint; absent in hints of writers before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateSnapshot>,
}

/// The field every JSON object protoshelf writes ends with: the SHA-256 of
/// the object's bytes as they would be without it. JSON records are not
/// content-addressed, so this is what lets a reader (and `verify`) tell a
/// damaged record from an intact one, even when the damage leaves valid JSON.
pub const CHECKSUM_FIELD: &str = "checksum";

/// `,"checksum":"` + 64 hex digits + `"}`.
const CHECKSUM_SUFFIX_LEN: usize = 13 + 64 + 2;

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
    let mut bytes = serde_json::to_vec(value).expect("records serialize");
    if bytes.len() > 2 && bytes.last() == Some(&b'}') {
        let sum = hex::encode(sha2::Sha256::digest(&bytes));
        bytes.pop();
        bytes.extend_from_slice(format!(",\"{CHECKSUM_FIELD}\":\"{sum}\"}}").as_bytes());
    }
    bytes.into()
}

/// The bytes the checksum of `bytes` covers and the checksum, when `bytes`
/// ends with one (objects written before checksums existed do not).
fn split_checksum(bytes: &[u8]) -> Option<(Vec<u8>, &str)> {
    let n = bytes.len();
    if n < CHECKSUM_SUFFIX_LEN + 1 {
        return None;
    }
    let (body, suffix) = bytes.split_at(n - CHECKSUM_SUFFIX_LEN);
    let suffix = std::str::from_utf8(suffix).ok()?;
    let sum = suffix
        .strip_prefix(&format!(",\"{CHECKSUM_FIELD}\":\""))?
        .strip_suffix("\"}")?;
    let mut covered = body.to_vec();
    covered.push(b'}');
    Some((covered, sum))
}

/// Checks a JSON object's checksum (if it has one). `Corrupt` names the key.
pub fn check_checksum(key: &str, bytes: &[u8]) -> Result<()> {
    if let Some((covered, sum)) = split_checksum(bytes) {
        let actual = hex::encode(sha2::Sha256::digest(&covered));
        if actual != sum {
            return Err(Error::Corrupt {
                key: key.to_string(),
                reason: "damaged: its checksum does not match its content".into(),
            });
        }
    }
    Ok(())
}

pub fn from_json<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    check_checksum(key, bytes)?;
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        key: key.to_string(),
        reason: format!("not a valid record: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksummed_records_detect_any_changed_byte() {
        let hint = HeadHint {
            seq: 42,
            latest: Some(45),
            state: None,
        };
        let bytes = to_json(&hint);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(
            text.starts_with(r#"{"seq":42,"latest":45,"checksum":""#),
            "{text}"
        );
        assert_eq!(from_json::<HeadHint>("k", &bytes).unwrap().seq, 42);
        // Plain JSON readers see one more field.
        let plain: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(plain["seq"], 42);
        // `42` -> `43` is still valid JSON: only the checksum tells.
        let mut flipped = bytes.to_vec();
        flipped[8] ^= 1;
        let err = from_json::<HeadHint>("ns/a/head.json", &flipped).unwrap_err();
        assert!(err.to_string().contains("ns/a/head.json"), "{err}");
        // Objects written before checksums are read as before.
        assert_eq!(from_json::<HeadHint>("k", br#"{"seq":7}"#).unwrap().seq, 7);
    }
}
