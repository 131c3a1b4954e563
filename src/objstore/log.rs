//! A namespace's log: the commit protocol ([`super::protocol`]) over the
//! namespace's pointer state, stored as JSON [`LogEntry`]s at
//! `ns/<ns>/log/<seq>.json` with the hint at `ns/<ns>/head.json`.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::keys;
use super::protocol::{self, Attempt, Entry, Layout, ObjectCodec, Protocol, Sequenced, Versioned};
use super::records::*;
use crate::error::Result;
use crate::model::{CommitInfo, PromotedSchema, Promotion};
use crate::store::StageChange;

pub use super::protocol::CHAIN_MAX;

/// A state at most this large (estimated) is written whole in every entry,
/// so small namespaces are always read in one entry.
pub const SMALL_STATE_BYTES: usize = 16 * 1024;

/// Where namespace logs are.
pub const LAYOUT: Layout = Layout {
    entry: keys::log_entry,
    entries: keys::log_dir,
    hint: keys::head,
};

/// A namespace's pointers and settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NsPointers {
    pub snapshot: StateSnapshot,
    /// The schemas with a staged version, kept beside the snapshot so
    /// promote and discard need not walk every schema of the namespace.
    staged: imbl::OrdSet<String>,
}

/// A namespace's state as of one commit.
pub type NsState = Versioned<NsPointers>;
/// One decoded entry of a namespace's log.
pub type NsEntry = Entry<NsPointers>;
/// One run of a namespace commit's plan.
pub type NsAttempt = Attempt<NsPointers>;
/// The protocol over namespace logs.
pub type Log = Protocol<NsPointers, JsonLog>;
/// A successful namespace commit.
pub type Committed = protocol::Committed<NsPointers>;

impl NsPointers {
    fn from_snapshot(snapshot: &StateSnapshot) -> Self {
        NsPointers {
            snapshot: snapshot.clone(),
            staged: snapshot
                .schemas
                .iter()
                .filter(|(_, p)| p.staged.is_some())
                .map(|(s, _)| s.clone())
                .collect(),
        }
    }

    /// The schemas with a staged version, in ID order.
    pub fn staged_schemas(&self) -> impl Iterator<Item = (&String, Pointers)> {
        self.staged.iter().map(|s| (s, self.pointers(s)))
    }

    pub fn pointers(&self, schema: &str) -> Pointers {
        self.snapshot
            .schemas
            .get(schema)
            .copied()
            .unwrap_or_default()
    }

    /// The version a publish compiles against: staged where staged,
    /// current otherwise.
    pub fn proposed(&self, schema: &str) -> Option<u64> {
        let p = self.pointers(schema);
        p.staged.or(p.current)
    }

    /// Sets pointers and keeps the staged index in step.
    fn set(
        &mut self,
        changes: &BTreeMap<String, Pointers>,
        config: &BTreeMap<String, String>,
        sets: &Option<NsSets>,
    ) {
        if sets.is_some() {
            self.snapshot.sets = sets.clone();
        }
        for (schema, p) in changes {
            if p.staged.is_some() {
                self.staged.insert(schema.clone());
            } else {
                self.staged.remove(schema);
            }
            self.snapshot.schemas.insert(schema.clone(), *p);
        }
        self.snapshot.config.extend(config.clone());
    }
}

/// What one namespace commit changes, and who made it when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsChange {
    pub format_version: u32,
    pub writer: String,
    /// Who the commit was made for (`--created-by`), when named.
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub operation: Operation,
    /// The full new pointers of every schema the commit touched.
    pub changes: BTreeMap<String, Pointers>,
    /// Settings the commit set.
    pub config: BTreeMap<String, String>,
    /// Format 3: the descriptors of every changed schema's current and
    /// staged versions (filled in by the store before the commit).
    pub descriptors: BTreeMap<String, Descriptors>,
    /// Format 3: the namespace sets after the commit (filled in by the
    /// store before the commit, for every commit that changes pointers).
    pub sets: Option<NsSets>,
    /// Set in the entries `verify --repair` wrote in place of damaged ones.
    pub repair: Option<RepairNote>,
}

impl Sequenced for NsPointers {
    type Change = NsChange;

    fn apply(&mut self, change: &NsChange) {
        self.set(&change.changes, &change.config, &change.sets);
    }

    fn small(&self) -> bool {
        // An estimate is enough to decide; serializing a large state per
        // commit only to measure it would cost more than it saves. Every
        // schema counts at least 48 bytes, so a long map is large without
        // walking it (keeping the commit's cost flat in namespace size).
        let snapshot = &self.snapshot;
        snapshot.schemas.len() * 48 <= SMALL_STATE_BYTES
            && snapshot
                .schemas
                .keys()
                .map(|k| k.len() + 48)
                .chain(snapshot.config.iter().map(|(k, v)| k.len() + v.len() + 8))
                .sum::<usize>()
                <= SMALL_STATE_BYTES
    }

    /// Small states only: a large one would make every commit's hint PUT
    /// grow with the namespace.
    fn summary(&self) -> Option<StateSnapshot> {
        self.small().then(|| self.snapshot.clone())
    }
}

/// The state a hint records after its `latest` commit, unconfirmed: the
/// log may have moved on, or (writers race to overwrite the hint) hold a
/// later commit than it says. None when the hint carries no state.
pub fn hinted(hint: HeadHint) -> Option<NsState> {
    let (seq, snapshot) = (hint.latest?, hint.state?);
    Some(protocol::Versioned {
        seq,
        base: seq,
        value: NsPointers::from_snapshot(&snapshot),
    })
}

/// The namespace log's codec: entries as [`LogEntry`] JSON (format 2), each
/// stamped with this handle's writer name and the store's format version.
pub struct JsonLog {
    pub writer: String,
    /// The format this handle writes entries in: the store's, or 3 once
    /// `upgrade` moves a format-2 store.
    pub format_version: std::sync::atomic::AtomicU32,
    /// Recorded as `created_by` in every entry this handle writes.
    pub author: std::sync::RwLock<Option<String>>,
}

impl JsonLog {
    /// The format this handle writes entries in.
    pub fn format(&self) -> u32 {
        self.format_version
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The change a mutation makes, stamped for the log.
    pub fn stamp(&self, m: Mutation) -> NsChange {
        NsChange {
            format_version: self.format(),
            writer: self.writer.clone(),
            created_by: self.author.read().expect("not poisoned").clone(),
            created_at: Utc::now(),
            operation: m.operation,
            changes: m.changes,
            config: m.config,
            descriptors: BTreeMap::new(),
            sets: None,
            repair: None,
        }
    }

    /// What `verify --repair` writes in place of a damaged entry: a commit
    /// that changes nothing (an empty stage, which builds without repairs
    /// read as just that), saying what it replaced.
    pub fn filler(&self, replaced: &protocol::Replaced) -> NsChange {
        NsChange {
            repair: Some(RepairNote {
                replaced: replaced.problem.clone(),
            }),
            ..self.stamp(Mutation {
                operation: Operation::Stage { versions: vec![] },
                changes: BTreeMap::new(),
                config: BTreeMap::new(),
            })
        }
    }
}

impl ObjectCodec<NsEntry> for JsonLog {
    fn encode(&self, e: &NsEntry) -> Bytes {
        to_json(&LogEntry::from(e.clone()))
    }

    /// Format 3: one move marker per schema the entry changes, created
    /// before the entry, so every commit that moved a schema has one.
    fn markers(&self, stream: &str, e: &NsEntry) -> Vec<object_store::path::Path> {
        if self.format() < FORMAT_MOVES {
            return Vec::new();
        }
        e.change
            .changes
            .keys()
            .map(|schema| keys::move_marker(stream, schema, e.seq, &e.commit_id))
            .chain(
                e.change
                    .sets
                    .is_some()
                    .then(|| keys::set_marker(stream, e.seq, &e.commit_id)),
            )
            .collect()
    }

    fn decode(&self, key: &str, bytes: &[u8]) -> Result<NsEntry> {
        let e: LogEntry = from_json(key, bytes)?;
        // Every object names its format: an entry from a newer format may
        // mean something this build would misread.
        if e.format_version > FORMAT_VERSION {
            return Err(crate::Error::Corrupt {
                key: key.to_string(),
                reason: format!(
                    "written in storage format {}, newer than this protoshelf supports ({FORMAT_VERSION}); upgrade protoshelf",
                    e.format_version
                ),
            });
        }
        Ok(Entry {
            seq: e.seq,
            commit_id: e.commit_id,
            base: e.base,
            checkpoint: e.state.as_ref().map(NsPointers::from_snapshot),
            change: NsChange {
                format_version: e.format_version,
                writer: e.writer,
                created_by: e.created_by,
                created_at: e.created_at,
                operation: e.operation,
                changes: e.changes,
                config: e.config,
                descriptors: e.descriptors,
                sets: e.sets,
                repair: e.repair,
            },
        })
    }
}

impl From<NsEntry> for LogEntry {
    fn from(e: NsEntry) -> Self {
        let c = e.change;
        LogEntry {
            format_version: c.format_version,
            seq: e.seq,
            commit_id: e.commit_id,
            writer: c.writer,
            created_by: c.created_by,
            created_at: c.created_at,
            operation: c.operation,
            changes: c.changes,
            config: c.config,
            descriptors: c.descriptors,
            sets: c.sets,
            base: e.base,
            state: e.checkpoint.map(|s| s.snapshot),
            repair: c.repair,
        }
    }
}

impl Committed {
    /// The commit's number and id.
    pub fn info(&self) -> CommitInfo {
        CommitInfo {
            seq: self.entry.seq,
            commit_id: self.entry.commit_id.clone(),
        }
    }

    /// What a promote commit moved.
    pub fn promotion(&self) -> Promotion {
        let Operation::Promote { promoted } = &self.entry.change.operation else {
            unreachable!("a promote commits a promote entry")
        };
        Promotion {
            promoted: promoted.clone(),
            commit: Some(self.info()),
        }
    }
}

/// What a commit changes: the state is driven by `changes` and `config`;
/// `operation` records the intent for readers of the log.
#[derive(Debug, Clone)]
pub struct Mutation {
    pub operation: Operation,
    pub changes: BTreeMap<String, Pointers>,
    pub config: BTreeMap<String, String>,
}

impl Mutation {
    /// Stages (or, with `None`, unstages) versions; a staged number raises
    /// the schema's `latest`.
    pub fn stage(state: &NsPointers, changes: &[StageChange]) -> Mutation {
        let mut m = Mutation {
            operation: Operation::Stage {
                versions: changes
                    .iter()
                    .map(|c| StagedVersion {
                        schema_id: c.schema_id.clone(),
                        version: c.version,
                    })
                    .collect(),
            },
            changes: BTreeMap::new(),
            config: BTreeMap::new(),
        };
        for c in changes {
            let mut p = state.pointers(&c.schema_id);
            p.staged = c.version;
            p.staged_forced = false;
            p.latest = p.latest.max(c.version.unwrap_or(0));
            m.changes.insert(c.schema_id.clone(), p);
        }
        m
    }

    /// Marks every version this stage stages as staged by a forced
    /// rollback (see [`Pointers::staged_forced`]).
    pub fn forced(mut self) -> Mutation {
        for p in self.changes.values_mut() {
            p.staged_forced = p.staged.is_some();
        }
        self
    }

    /// Makes every staged version current; None when nothing is staged.
    pub fn promote(state: &NsPointers) -> Option<Mutation> {
        let mut changes = BTreeMap::new();
        let mut promoted = Vec::new();
        for (schema, p) in state.staged_schemas() {
            let Some(staged) = p.staged else { continue };
            promoted.push(PromotedSchema {
                schema_id: schema.clone(),
                prior_version: p.current,
                current_version: staged,
            });
            changes.insert(
                schema.clone(),
                Pointers {
                    current: Some(staged),
                    staged: None,
                    staged_forced: false,
                    ..p
                },
            );
        }
        (!promoted.is_empty()).then(|| Mutation {
            operation: Operation::Promote { promoted },
            changes,
            config: BTreeMap::new(),
        })
    }

    /// Clears every staged pointer; None when nothing is staged.
    pub fn discard(state: &NsPointers) -> Option<Mutation> {
        let changes: BTreeMap<String, Pointers> = state
            .staged_schemas()
            .map(|(s, p)| {
                let p = Pointers {
                    staged: None,
                    staged_forced: false,
                    ..p
                };
                (s.clone(), p)
            })
            .collect();
        (!changes.is_empty()).then(|| Mutation {
            operation: Operation::Discard {
                schemas: changes.keys().cloned().collect(),
            },
            changes,
            config: BTreeMap::new(),
        })
    }

    /// Soft-deletes `schema`: its current version is kept to restore, its
    /// staging is dropped. None when it is deleted already.
    pub fn delete(state: &NsPointers, schema: &str) -> Option<Mutation> {
        let p = state.pointers(schema);
        if p.deleted {
            return None;
        }
        let deleted = Pointers {
            current: None,
            staged: None,
            staged_forced: false,
            deleted: true,
            restore: p.current,
            ..p
        };
        Some(Mutation {
            operation: Operation::Delete {
                schemas: vec![schema.to_string()],
            },
            changes: BTreeMap::from([(schema.to_string(), deleted)]),
            config: BTreeMap::new(),
        })
    }

    /// Restores a soft-deleted `schema`'s current version. None when it is
    /// not deleted.
    pub fn undelete(state: &NsPointers, schema: &str) -> Option<Mutation> {
        let p = state.pointers(schema);
        if !p.deleted {
            return None;
        }
        let restored = Pointers {
            current: p.restore,
            deleted: false,
            restore: None,
            ..p
        };
        Some(Mutation {
            operation: Operation::Undelete {
                schemas: vec![schema.to_string()],
            },
            changes: BTreeMap::from([(schema.to_string(), restored)]),
            config: BTreeMap::new(),
        })
    }

    pub fn set_config(key: &str, value: &str) -> Mutation {
        Mutation {
            operation: Operation::SetConfig {
                key: key.to_string(),
                value: value.to_string(),
            },
            changes: BTreeMap::new(),
            config: BTreeMap::from([(key.to_string(), value.to_string())]),
        }
    }
}

/// The schemas whose proposed version (staged, else current) differs
/// between two states, among those the entries touched: what a commit
/// that planned on `from` and now lands on `to` may have to re-check. A
/// promote moves pointers without changing any proposed version, so it
/// shows up only as a settings change, if any.
pub fn proposed_moves(from: &NsPointers, to: &NsPointers, landed: &[NsEntry]) -> BTreeSet<String> {
    landed
        .iter()
        .flat_map(|e| e.change.changes.keys())
        .filter(|s| from.proposed(s) != to.proposed(s))
        .cloned()
        .collect()
}
