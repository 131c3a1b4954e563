//! `verify`: reads every object of a store (or of one namespace) from
//! storage, never from a cache, and reports each damaged, missing or
//! inconsistent one by key. What is checked:
//!
//! - the format marker;
//! - namespace and schema records: valid, and named by their own key;
//! - the log: entries 1..N all present and valid, each naming its own seq,
//!   bases pointing at checkpoints, every checkpoint equal to the replay of
//!   the entries before it, and the hint naming an existing checkpoint;
//! - manifests: valid, named by their own key, their schema record, their
//!   descriptor (key, size) and every blob present, their deps present
//!   and defining the file they were resolved for; every version the log
//!   ever named has a manifest;
//! - blobs and descriptors: their content hashes to their key;
//! - claims: well-formed, empty, their schema existing, and present for
//!   every directory (or path) and package of every version the log named.
//!
//! Versions the log never named are not damage: they are listed as
//! unstaged (gc collects them), as are leftover probe objects.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use prost::Message;
use serde::Serialize;

use super::inventory::{Inventory, ObjectKind};
use super::records::*;
use super::{FETCH_CONCURRENCY, ObjStore, keys, sha256_hex};
use crate::error::{Error, Result};
use crate::store::ClaimKind;

/// What is wrong with an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Damage {
    /// Referenced (or implied) but absent.
    Missing,
    /// Present, but its bytes are not what they must be.
    Corrupt,
    /// Valid on its own, but disagreeing with another object.
    Inconsistent,
    /// A key protoshelf never writes.
    Unexpected,
}

/// One problem, named by the key of the object it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub key: String,
    pub damage: Damage,
    pub detail: String,
}

/// How much `verify` read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Checked {
    pub namespaces: u64,
    pub objects: u64,
    pub bytes: u64,
    pub commits: u64,
    pub schemas: u64,
    pub versions: u64,
    pub blobs: u64,
    pub descriptors: u64,
    pub claims: u64,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub checked: Checked,
    pub problems: Vec<Problem>,
    /// Manifests no log entry names (left by interrupted or superseded
    /// publishes; gc removes them once older than its grace period).
    pub unstaged_versions: Vec<String>,
    /// Probe objects left by a process that died while opening the store.
    pub stale_probes: Vec<String>,
    /// Log entries `verify --repair` wrote in place of lost ones (not
    /// damage now; the commits they replaced are listed where repaired).
    pub repaired_entries: Vec<String>,
}

impl VerifyReport {
    /// No problem found.
    pub fn clean(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, key: impl ToString, damage: Damage, detail: impl Into<String>) {
        self.problems.push(Problem {
            key: key.to_string(),
            damage,
            detail: detail.into(),
        });
    }

    /// Records a failed read-and-parse as the problem it is.
    fn failed(&mut self, key: &str, e: Error) -> Result<()> {
        match e {
            Error::Corrupt { reason, .. } => {
                self.problem(key, Damage::Corrupt, reason);
                Ok(())
            }
            other => Err(other),
        }
    }
}

/// The objects of one namespace read from storage, by key.
type Fetched = HashMap<String, Bytes>;

/// Applies an entry's changes to a snapshot (replay, written here again
/// rather than shared with the log so the check is independent of it).
fn replay(state: &mut StateSnapshot, entry: &LogEntry) {
    for (schema, p) in &entry.changes {
        state.schemas.insert(schema.clone(), *p);
    }
    state.config.extend(entry.config.clone());
    if entry.sets.is_some() {
        state.sets = entry.sets.clone();
    }
}

/// The schemas whose pointers differ between two snapshots (for messages).
fn differing(a: &StateSnapshot, b: &StateSnapshot) -> Vec<String> {
    let names: BTreeSet<&String> = a.schemas.keys().chain(b.schemas.keys()).collect();
    let mut out: Vec<String> = names
        .into_iter()
        .filter(|s| a.schemas.get(*s) != b.schemas.get(*s))
        .cloned()
        .collect();
    if a.config != b.config {
        out.push("(settings)".into());
    }
    if a.sets != b.sets {
        out.push("(namespace sets)".into());
    }
    out
}

impl ObjStore {
    /// Checks every object of the store, or of `namespace` (see the module
    /// docs). Storage failures are errors; damage is reported, not raised.
    pub async fn verify(&self, namespace: Option<&str>) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        if let Err(e) = super::format::inspect(self.io()).await? {
            let key = keys::marker().to_string();
            match e {
                Error::Corrupt { reason, .. } => report.problem(&key, Damage::Corrupt, reason),
                other => report.problem(&key, Damage::Corrupt, other.to_string()),
            }
        }
        let namespaces = match namespace {
            Some(ns) => {
                self.require_namespace(ns).await.or_else(|e| match e {
                    // A damaged record is reported below; only absence
                    // is the caller's mistake.
                    Error::Corrupt { .. } => Ok(NamespaceRecord {
                        namespace_id: ns.into(),
                        created_at: chrono::Utc::now(),
                        metadata: Default::default(),
                        writer_id: String::new(),
                        created_by: None,
                    }),
                    other => Err(other),
                })?;
                vec![ns.to_string()]
            }
            None => self.verify_root(&mut report).await?,
        };
        for ns in &namespaces {
            self.verify_namespace_record(ns, &mut report).await?;
            self.verify_namespace(ns, &mut report).await?;
        }
        report.checked.namespaces = namespaces.len() as u64;
        Ok(report)
    }

    /// The store's top level: unexpected objects, namespaces with data but
    /// no record, leftover probes. Returns every namespace to check.
    async fn verify_root(&self, report: &mut VerifyReport) -> Result<Vec<String>> {
        let top = self
            .io()
            .os
            .list_with_delimiter(None)
            .await
            .map_err(Error::Storage)?;
        for o in &top.objects {
            if o.location.as_ref() != keys::marker().as_ref() {
                report.problem(&o.location, Damage::Unexpected, "not a protoshelf object");
            }
        }
        for p in &top.common_prefixes {
            if !matches!(p.as_ref(), "namespaces" | "ns" | "_probe") {
                report.problem(p, Damage::Unexpected, "not a protoshelf directory");
            }
        }
        for (key, _) in self.list_all("_probe").await? {
            report.stale_probes.push(key);
        }
        let mut records: BTreeSet<String> = BTreeSet::new();
        for (key, _) in self.list_all("namespaces").await? {
            match key.strip_prefix("namespaces/") {
                Some(id) if crate::ids::validate_namespace_id(id).is_ok() => {
                    records.insert(id.to_string());
                }
                _ => report.problem(&key, Damage::Unexpected, "not a namespace record key"),
            }
        }
        let data = self
            .io()
            .os
            .list_with_delimiter(Some(&Path::from("ns")))
            .await
            .map_err(Error::Storage)?;
        for p in &data.common_prefixes {
            let id = p.as_ref().trim_start_matches("ns/");
            if !records.contains(id) {
                report.problem(
                    keys::namespace(id),
                    Damage::Missing,
                    format!("missing, but {p}/ holds the namespace's objects"),
                );
            }
        }
        for o in &data.objects {
            report.problem(&o.location, Damage::Unexpected, "not a protoshelf object");
        }
        Ok(records.into_iter().collect())
    }

    async fn verify_namespace_record(&self, ns: &str, report: &mut VerifyReport) -> Result<()> {
        let key = keys::namespace(ns);
        match self.io().get(&key).await? {
            None => report.problem(&key, Damage::Missing, "missing"),
            Some(obj) => {
                report.checked.objects += 1;
                report.checked.bytes += obj.bytes.len() as u64;
                match from_json::<NamespaceRecord>(key.as_ref(), &obj.bytes) {
                    Ok(r) if r.namespace_id != ns => report.problem(
                        &key,
                        Damage::Inconsistent,
                        format!("names namespace {:?}", r.namespace_id),
                    ),
                    Ok(_) => {}
                    Err(e) => report.failed(key.as_ref(), e)?,
                }
            }
        }
        Ok(())
    }

    /// Reads the given keys from storage concurrently.
    async fn fetch_all(&self, keys: Vec<String>, report: &mut VerifyReport) -> Result<Fetched> {
        let got: Vec<(String, Option<Bytes>)> = futures::stream::iter(keys)
            .map(|key| async move {
                let obj = self.io().get(&Path::from(key.as_str())).await?;
                Ok::<_, Error>((key, obj.map(|o| o.bytes)))
            })
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        let mut out = Fetched::new();
        for (key, bytes) in got {
            match bytes {
                Some(b) => {
                    report.checked.objects += 1;
                    report.checked.bytes += b.len() as u64;
                    out.insert(key, b);
                }
                // Listed a moment ago: deleted since (by gc, or by hand).
                None => report.problem(&key, Damage::Missing, "listed, then gone when read"),
            }
        }
        Ok(out)
    }

    async fn verify_namespace(&self, ns: &str, report: &mut VerifyReport) -> Result<()> {
        let inv = self.inventory(ns).await?;
        for (key, kind, _) in inv.of_kind(|k| *k == ObjectKind::Unknown) {
            let _ = kind;
            report.problem(key, Damage::Unexpected, "not a key protoshelf writes");
        }
        let named = self.verify_log(ns, &inv, report).await?;
        let schemas = self.verify_schemas(ns, &inv, &named, report).await?;
        let manifests = self
            .verify_manifests(ns, &inv, &named, &schemas, report)
            .await?;
        let packages = self.verify_content(ns, &inv, report).await?;
        self.verify_trees(ns, &inv, report).await?;
        self.verify_claims(ns, &inv, &named, &manifests, &packages, &schemas, report);
        Ok(())
    }

    /// The log and its hint. Returns every (schema, version) the log names
    /// as staged or current, with the first commit naming it.
    async fn verify_log(
        &self,
        ns: &str,
        inv: &Inventory,
        report: &mut VerifyReport,
    ) -> Result<BTreeMap<(String, u64), u64>> {
        let seqs: BTreeSet<u64> = inv
            .of_kind(|k| matches!(k, ObjectKind::LogEntry(_)))
            .filter_map(|(_, k, _)| match k {
                ObjectKind::LogEntry(s) => Some(*s),
                _ => None,
            })
            .collect();
        let end = seqs.last().copied().unwrap_or(0);
        let fetched = self
            .fetch_all(
                seqs.iter()
                    .map(|s| keys::log_entry(ns, *s).to_string())
                    .collect(),
                report,
            )
            .await?;
        let mut named = BTreeMap::new();
        // The hint, read first so the replay can keep the state at its
        // `latest`, which its `state` must equal.
        let hint = keys::head(ns);
        let hint_bytes = if inv.contains(&hint) {
            let fetched = self.fetch_all(vec![hint.to_string()], report).await?;
            fetched.get(hint.as_ref()).cloned()
        } else {
            None
        };
        let hinted = hint_bytes
            .as_ref()
            .and_then(|b| from_json::<HeadHint>(hint.as_ref(), b).ok())
            .filter(|h| h.state.is_some())
            .and_then(|h| h.latest);
        let mut at_hinted: Option<StateSnapshot> = None;
        // None while the replay cannot be trusted (after a missing or
        // damaged entry, until the next checkpoint).
        let mut state: Option<StateSnapshot> = Some(StateSnapshot::default());
        let mut checkpoint = 0u64;
        // The newest checkpoint before a repair entry that became one: the
        // deltas after it were written on that base, and stay valid.
        let mut before_repair = 0u64;
        // False from a repair entry to the next checkpoint: a replay
        // through it lacks the lost change, which a later checkpoint has.
        let mut trusted = true;
        let mut checkpoints = BTreeSet::new();
        // A format-3 commit was seen: a later format-2 entry was written by
        // an old build the upgrade did not stop.
        let mut format3_seen = false;
        // The newest entry that records namespace sets, and them.
        let mut newest_sets: Option<(String, super::records::NsSets)> = None;
        for seq in 1..=end {
            let key = keys::log_entry(ns, seq).to_string();
            let Some(bytes) = fetched.get(&key) else {
                if !seqs.contains(&seq) {
                    report.problem(
                        &key,
                        Damage::Missing,
                        format!("missing, but the log goes on to commit {end}"),
                    );
                }
                state = None;
                continue;
            };
            report.checked.commits += 1;
            let entry: LogEntry = match from_json(&key, bytes) {
                Ok(e) => e,
                Err(e) => {
                    report.failed(&key, e)?;
                    state = None;
                    continue;
                }
            };
            if entry.seq != seq {
                report.problem(
                    &key,
                    Damage::Inconsistent,
                    format!("holds commit {}", entry.seq),
                );
                state = None;
                continue;
            }
            if entry.format_version > FORMAT_VERSION {
                report.problem(
                    &key,
                    Damage::Inconsistent,
                    format!(
                        "written in format {}, newer than the store's",
                        entry.format_version
                    ),
                );
            }
            if entry.format_version >= super::records::FORMAT_MOVES {
                format3_seen = true;
            } else if format3_seen && !entry.changes.is_empty() {
                report.problem(
                    &key,
                    Damage::Inconsistent,
                    "written by a format-2 build after a format-3 commit: readers of the reader contract do not see its changes; stop format-2 builds and run `protoshelf upgrade` again".to_string(),
                );
            }
            // Format 3: readers find a schema's state by its newest move
            // marker, so a commit that changed a schema without one would
            // be invisible to them.
            if entry.format_version >= super::records::FORMAT_MOVES {
                for schema in entry.changes.keys() {
                    let marker = keys::move_marker(ns, schema, seq, &entry.commit_id);
                    if !inv.contains(&marker) {
                        report.problem(
                            marker.as_ref(),
                            Damage::Missing,
                            format!("missing, but {key} changes schema {schema:?}"),
                        );
                    }
                }
                // Its namespace sets: found by their marker; those of the
                // newest such entry must be present (checked after the
                // loop: gc collects the sets of superseded entries).
                if let Some(sets) = &entry.sets {
                    let marker = keys::set_marker(ns, seq, &entry.commit_id);
                    if !inv.contains(&marker) {
                        report.problem(
                            marker.as_ref(),
                            Damage::Missing,
                            format!("missing, but {key} records namespace sets"),
                        );
                    }
                    newest_sets = Some((key.clone(), sets.clone()));
                }
            }
            match &entry.state {
                Some(_) if entry.base != seq => report.problem(
                    &key,
                    Damage::Inconsistent,
                    format!("a checkpoint whose base is {}, not itself", entry.base),
                ),
                None if entry.base >= seq => report.problem(
                    &key,
                    Damage::Inconsistent,
                    format!("its base {} is not an earlier checkpoint", entry.base),
                ),
                None if state.is_some()
                    && entry.base != checkpoint
                    && entry.base != before_repair =>
                {
                    report.problem(
                        &key,
                        Damage::Inconsistent,
                        format!(
                            "its base is {}, but the newest checkpoint before it is {checkpoint}",
                            entry.base
                        ),
                    )
                }
                _ => {}
            }
            if entry.repair.is_some() {
                report.repaired_entries.push(key.clone());
            }
            let mut replayed = state.take();
            if let Some(s) = &mut replayed {
                replay(s, &entry);
            }
            if let Some(cp) = &entry.state {
                if let Some(r) = &replayed
                    && r != cp
                    && trusted
                    && entry.repair.is_none()
                {
                    report.problem(
                        &key,
                        Damage::Inconsistent,
                        format!(
                            "checkpoint disagrees with the replay of the commits before it (for {})",
                            differing(r, cp).join(", ")
                        ),
                    );
                }
                state = Some(cp.clone());
                if entry.repair.is_none() {
                    before_repair = seq;
                }
                checkpoint = seq;
                checkpoints.insert(seq);
                trusted = entry.repair.is_none();
            } else {
                state = replayed;
                if entry.repair.is_some() {
                    trusted = false;
                }
            }
            if hinted == Some(seq) && trusted {
                at_hinted = state.clone();
            }
            let mut note = |schema: &String, p: &Pointers| {
                for v in [p.current, p.staged].into_iter().flatten() {
                    named.entry((schema.clone(), v)).or_insert(seq);
                }
            };
            for (schema, p) in &entry.changes {
                note(schema, p);
            }
            if let Some(cp) = &entry.state {
                for (schema, p) in &cp.schemas {
                    note(schema, p);
                }
            }
        }
        if let Some((key, sets)) = &newest_sets {
            for sha in [&sets.current, &sets.staged] {
                let set = keys::namespace_set(ns, sha);
                if !inv.contains(&set) {
                    report.problem(
                        set.as_ref(),
                        Damage::Missing,
                        format!(
                            "missing, but {key}, the newest entry with namespace sets, names it"
                        ),
                    );
                }
            }
        }
        if let Some(bytes) = &hint_bytes {
            match from_json::<HeadHint>(hint.as_ref(), bytes) {
                Ok(h) if h.seq.max(h.latest.unwrap_or(0)) > end => {
                    let named = h.seq.max(h.latest.unwrap_or(0));
                    report.problem(
                        keys::log_entry(ns, named),
                        Damage::Missing,
                        format!(
                            "missing: {hint} names commit {named}, but the log ends at {end} (commits were lost)"
                        ),
                    )
                }
                Ok(h) if h.seq > 0 && seqs.contains(&h.seq) && !checkpoints.contains(&h.seq) => {
                    report.problem(
                        hint.as_ref(),
                        Damage::Inconsistent,
                        format!("names commit {}, which is not a checkpoint", h.seq),
                    )
                }
                // Publishes read an ancestor's state from it.
                Ok(HeadHint {
                    latest: Some(latest),
                    state: Some(state),
                    ..
                }) if at_hinted.as_ref().is_some_and(|s| *s != state) => {
                    let log = at_hinted.as_ref().expect("checked");
                    let what = differing(log, &state);
                    report.problem(
                        hint.as_ref(),
                        Damage::Inconsistent,
                        format!(
                            "its state disagrees with the log's after commit {latest} (for {})",
                            what.join(", ")
                        ),
                    )
                }
                Ok(_) => {}
                Err(e) => report.failed(hint.as_ref(), e)?,
            }
        }
        Ok(named)
    }

    /// Schema records. Returns the schemas whose record is present.
    async fn verify_schemas(
        &self,
        ns: &str,
        inv: &Inventory,
        named: &BTreeMap<(String, u64), u64>,
        report: &mut VerifyReport,
    ) -> Result<BTreeSet<String>> {
        let keys: Vec<String> = inv
            .of_kind(|k| matches!(k, ObjectKind::Schema(_)))
            .map(|(key, _, _)| key.clone())
            .collect();
        let fetched = self.fetch_all(keys, report).await?;
        let mut present = BTreeSet::new();
        for (key, kind, _) in inv.of_kind(|k| matches!(k, ObjectKind::Schema(_))) {
            let ObjectKind::Schema(id) = kind else {
                continue;
            };
            present.insert(id.clone());
            let Some(bytes) = fetched.get(key) else {
                continue;
            };
            report.checked.schemas += 1;
            match from_json::<SchemaRecord>(key, bytes) {
                Ok(r) if r.schema_id != *id || r.namespace_id != ns => report.problem(
                    key,
                    Damage::Inconsistent,
                    format!(
                        "names schema {:?} of namespace {:?}",
                        r.schema_id, r.namespace_id
                    ),
                ),
                Ok(_) => {}
                Err(e) => report.failed(key, e)?,
            }
        }
        let in_log: BTreeSet<&String> = named.keys().map(|(s, _)| s).collect();
        for schema in in_log {
            if !present.contains(schema) {
                report.problem(
                    keys::schema(ns, schema),
                    Damage::Missing,
                    "missing, but the log stages versions of it",
                );
            }
        }
        Ok(present)
    }

    /// Manifests and what they refer to. Returns the parsed manifests.
    async fn verify_manifests(
        &self,
        ns: &str,
        inv: &Inventory,
        named: &BTreeMap<(String, u64), u64>,
        schemas: &BTreeSet<String>,
        report: &mut VerifyReport,
    ) -> Result<BTreeMap<(String, u64), VersionManifest>> {
        let keys: Vec<String> = inv
            .of_kind(|k| matches!(k, ObjectKind::Manifest { .. }))
            .map(|(key, _, _)| key.clone())
            .collect();
        let fetched = self.fetch_all(keys, report).await?;
        let mut manifests = BTreeMap::new();
        for (key, kind, _) in inv.of_kind(|k| matches!(k, ObjectKind::Manifest { .. })) {
            let ObjectKind::Manifest { schema, version } = kind else {
                continue;
            };
            let Some(bytes) = fetched.get(key) else {
                continue;
            };
            report.checked.versions += 1;
            let m: VersionManifest = match from_json(key, bytes) {
                Ok(m) => m,
                Err(e) => {
                    report.failed(key, e)?;
                    continue;
                }
            };
            if m.namespace_id != ns || m.schema_id != *schema || m.version != *version {
                report.problem(
                    key,
                    Damage::Inconsistent,
                    format!(
                        "names version {} of {}/{}",
                        m.version, m.namespace_id, m.schema_id
                    ),
                );
                continue;
            }
            if !schemas.contains(schema) {
                report.problem(
                    keys::schema(ns, schema),
                    Damage::Missing,
                    format!("missing, but {key} is a version of it"),
                );
            }
            let descriptor = keys::descriptor(ns, &m.descriptor.sha256);
            if m.descriptor.key != descriptor.as_ref() {
                report.problem(
                    key,
                    Damage::Inconsistent,
                    format!(
                        "its descriptor key {} does not match its hash {}",
                        m.descriptor.key, m.descriptor.sha256
                    ),
                );
            }
            match inv.get(&descriptor) {
                None => report.problem(
                    &descriptor,
                    Damage::Missing,
                    format!("missing, but {key} refers to it"),
                ),
                Some((_, meta)) if meta.size != m.descriptor.size => report.problem(
                    &descriptor,
                    Damage::Corrupt,
                    format!("{} bytes, but {key} says {}", meta.size, m.descriptor.size),
                ),
                Some(_) => {}
            }
            for f in &m.files {
                let blob = keys::blob(ns, &f.sha256);
                if !inv.contains(&blob) {
                    report.problem(
                        &blob,
                        Damage::Missing,
                        format!("missing, but {key} refers to it for {}", f.path),
                    );
                }
            }
            if !named.contains_key(&(schema.clone(), *version)) {
                report.unstaged_versions.push(key.clone());
            }
            manifests.insert((schema.clone(), *version), m);
        }
        for ((schema, version), seq) in named {
            let key = keys::version(ns, schema, *version);
            if !inv.contains(&key) {
                report.problem(
                    &key,
                    Damage::Missing,
                    format!("missing, but commit {seq} staged it"),
                );
            }
        }
        self.verify_deps(ns, &manifests, report).await?;
        Ok(manifests)
    }

    /// Every dep names a stored version that defines the imported file.
    async fn verify_deps(
        &self,
        ns: &str,
        manifests: &BTreeMap<(String, u64), VersionManifest>,
        report: &mut VerifyReport,
    ) -> Result<()> {
        let mut others: HashMap<String, Option<VersionManifest>> = HashMap::new();
        for ((schema, version), m) in manifests {
            let key = keys::version(ns, schema, *version);
            for dep in &m.deps {
                let dep_key = keys::version(&dep.namespace_id, &dep.schema_id, dep.version);
                let target = if dep.namespace_id == ns {
                    manifests
                        .get(&(dep.schema_id.clone(), dep.version))
                        .cloned()
                } else {
                    if !others.contains_key(dep_key.as_ref()) {
                        let got = match self.io().get(&dep_key).await? {
                            Some(obj) => {
                                from_json::<VersionManifest>(dep_key.as_ref(), &obj.bytes).ok()
                            }
                            None => None,
                        };
                        others.insert(dep_key.to_string(), got);
                    }
                    others[dep_key.as_ref()].clone()
                };
                match target {
                    None => report.problem(
                        &dep_key,
                        Damage::Missing,
                        format!(
                            "missing or unreadable, but {key} imports {} from it",
                            dep.path
                        ),
                    ),
                    Some(t) if !t.files.iter().any(|f| f.path == dep.path) => report.problem(
                        &key,
                        Damage::Inconsistent,
                        format!(
                            "imports {} from {dep_key}, which does not define it",
                            dep.path
                        ),
                    ),
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Blobs and descriptors hash to their keys. Returns, per descriptor,
    /// the proto package of each file it holds.
    async fn verify_content(
        &self,
        _ns: &str,
        inv: &Inventory,
        report: &mut VerifyReport,
    ) -> Result<HashMap<String, HashMap<String, String>>> {
        let wanted: Vec<(String, String, bool)> = inv
            .of_kind(|k| {
                matches!(
                    k,
                    ObjectKind::Blob(_)
                        | ObjectKind::Descriptor(_)
                        | ObjectKind::NamespaceSet(_)
                        | ObjectKind::Pack(_)
                )
            })
            .map(|(key, kind, _)| match kind {
                ObjectKind::Blob(sha) | ObjectKind::NamespaceSet(sha) | ObjectKind::Pack(sha) => {
                    (key.clone(), sha.clone(), false)
                }
                ObjectKind::Descriptor(sha) => (key.clone(), sha.clone(), true),
                _ => unreachable!("filtered"),
            })
            .collect();
        // One at a time per task, not all held at once: descriptors can be
        // large.
        type Checked = (
            String,
            String,
            bool,
            Option<(u64, String, Option<HashMap<String, String>>)>,
        );
        let results: Vec<Checked> = futures::stream::iter(wanted)
            .map(|(key, sha, descriptor)| async move {
                let obj = self.io().get(&Path::from(key.as_str())).await?;
                let summary = obj.map(|o| {
                    let actual = sha256_hex(&o.bytes);
                    let packages = (descriptor && actual == sha).then(|| {
                        prost_types::FileDescriptorSet::decode(o.bytes.as_ref())
                            .map(|set| {
                                set.file
                                    .into_iter()
                                    .map(|f| (f.name().to_string(), f.package().to_string()))
                                    .collect()
                            })
                            .unwrap_or_default()
                    });
                    (o.bytes.len() as u64, actual, packages)
                });
                Ok::<_, Error>((key, sha, descriptor, summary))
            })
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        let mut packages = HashMap::new();
        for (key, sha, descriptor, summary) in results {
            let Some((size, actual, pkgs)) = summary else {
                report.problem(&key, Damage::Missing, "listed, then gone when read");
                continue;
            };
            report.checked.objects += 1;
            report.checked.bytes += size;
            if descriptor {
                report.checked.descriptors += 1;
            } else if !key.contains("/packs/") {
                report.checked.blobs += 1;
            }
            if actual != sha {
                report.problem(
                    &key,
                    Damage::Corrupt,
                    format!("content hashes to {actual}, not to its key"),
                );
            }
            if let Some(p) = pkgs {
                packages.insert(sha, p);
            }
        }
        Ok(packages)
    }

    /// Tree indexes (packed trees): valid, naming their own namespace and
    /// commit, and every pack they name present (the packs' hashes are
    /// checked with the blobs).
    async fn verify_trees(
        &self,
        ns: &str,
        inv: &Inventory,
        report: &mut VerifyReport,
    ) -> Result<()> {
        let keys: Vec<String> = inv
            .of_kind(|k| matches!(k, ObjectKind::Tree(_)))
            .map(|(k, _, _)| k.clone())
            .collect();
        let fetched = self.fetch_all(keys, report).await?;
        for (key, bytes) in &fetched {
            let seq = key.rsplit('/').next().and_then(keys::parse_tree);
            match from_json::<super::packs::TreeIndex>(key, bytes) {
                Ok(t) if t.namespace_id != ns || Some(t.seq) != seq => report.problem(
                    key,
                    Damage::Inconsistent,
                    format!("names namespace {:?} commit {}", t.namespace_id, t.seq),
                ),
                Ok(t) => {
                    for p in &t.packs {
                        let pack = keys::pack(ns, &p.sha256);
                        match inv.get(&pack) {
                            None => report.problem(
                                &pack,
                                Damage::Missing,
                                format!("missing, but {key} names it"),
                            ),
                            Some((_, meta)) if meta.size != p.size => report.problem(
                                &pack,
                                Damage::Inconsistent,
                                format!("{} bytes, but {key} says {}", meta.size, p.size),
                            ),
                            Some(_) => {}
                        }
                    }
                }
                Err(e) => report.failed(key, e)?,
            }
        }
        Ok(())
    }

    /// Claims are empty and name existing schemas; every version the log
    /// named has the claims of its directories (or paths) and packages.
    #[allow(clippy::too_many_arguments)]
    fn verify_claims(
        &self,
        ns: &str,
        inv: &Inventory,
        named: &BTreeMap<(String, u64), u64>,
        manifests: &BTreeMap<(String, u64), VersionManifest>,
        packages: &HashMap<String, HashMap<String, String>>,
        schemas: &BTreeSet<String>,
        report: &mut VerifyReport,
    ) {
        for (key, kind, meta) in inv.of_kind(|k| matches!(k, ObjectKind::Claim { .. })) {
            let ObjectKind::Claim { kind, schema, .. } = kind else {
                continue;
            };
            report.checked.claims += 1;
            if meta.size != 0 {
                report.problem(
                    key,
                    Damage::Corrupt,
                    format!("a claim is empty; this one holds {} bytes", meta.size),
                );
            }
            let wrong_layout = match kind {
                ClaimKind::Dir => !self.claims_dirs(),
                ClaimKind::Path => self.claims_dirs(),
                ClaimKind::Package => false,
            };
            if wrong_layout {
                report.problem(
                    key,
                    Damage::Unexpected,
                    format!(
                        "a {} claim in a format-{} store",
                        kind.as_str(),
                        self.format_marker().format_version
                    ),
                );
            }
            if !schemas.contains(schema) {
                report.problem(
                    key,
                    Damage::Inconsistent,
                    format!("claims for schema {schema:?}, which has no record"),
                );
            }
        }
        for (schema, version) in named.keys() {
            let Some(m) = manifests.get(&(schema.clone(), *version)) else {
                continue; // reported as missing already
            };
            let own = packages.get(&m.descriptor.sha256);
            let mut wanted: BTreeSet<Path> = BTreeSet::new();
            for f in &m.files {
                let (kind, name) = self.path_claim(&f.path);
                wanted.insert(super::claims::claim_key(ns, kind, &name, schema));
                if let Some(pkg) = own.and_then(|p| p.get(&f.path)).filter(|p| !p.is_empty()) {
                    wanted.insert(super::claims::claim_key(
                        ns,
                        ClaimKind::Package,
                        pkg,
                        schema,
                    ));
                }
            }
            for claim in wanted {
                if !inv.contains(&claim) {
                    report.problem(
                        &claim,
                        Damage::Missing,
                        format!(
                            "missing, but version {version} of {schema:?} needs it (ownership checks would not see that schema)"
                        ),
                    );
                }
            }
        }
    }
}
