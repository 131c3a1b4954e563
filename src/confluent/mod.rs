//! The Confluent Schema Registry model over protoshelf, for `protoshelf
//! serve`'s REST API (PROTOBUF schemas). The server's handlers only
//! translate HTTP into these calls; docs/server.md describes the mapping.
//!
//! - A subject is a namespace with one schema, [`subject::SCHEMA`]; the
//!   subject's versions are that schema's versions that were ever current
//!   (read from the namespace's log), so a registered schema is an
//!   ordinary protoshelf schema: listed, mounted, checked and promoted.
//! - Registering compiles the schema with its references (each reference's
//!   file is copied into the namespace at its import path, so the tree
//!   compiles on its own), checks it against the subject's compatibility
//!   level, takes a global ID ([`crate::objstore::schema_ids`]), then
//!   publishes and promotes it: a registered version is current at once.
//! - Soft and permanent deletes are namespace settings; protoshelf keeps
//!   every version.

pub mod error;
pub mod level;
pub mod schema;
pub mod subject;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost_reflect::DescriptorPool;
use serde::{Deserialize, Serialize};

use crate::compat::{self, Policy, Violation};
use crate::model::Metadata;
use crate::objstore::records::{Operation, SchemaIdRecord, SchemaReference};
use crate::objstore::schema_ids::{NewSchema, SchemaIds};
use crate::registry::{PublishOptions, Registry, SourceFile};
pub use error::{ConfluentError, Result};
pub use level::Level;
use schema::{Input, PROTOBUF};
use subject::{DELETED_PREFIX, ID_KEY, LEVEL_KEY, MAIN_KEY, SCHEMA, SUBJECT_KEY};

/// Attempts of a registration whose version lost a race to another one
/// (each publish retries conflicts itself too).
const REGISTER_ATTEMPTS: u32 = 16;
/// How deep references may nest.
const MAX_REFERENCE_DEPTH: usize = 32;

/// A registration or lookup request body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRequest {
    pub schema: String,
    #[serde(default)]
    pub schema_type: Option<String>,
    #[serde(default)]
    pub references: Vec<SchemaReference>,
    #[serde(default)]
    pub normalize: bool,
}

/// A subject's version as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectVersion {
    pub subject: String,
    pub id: u64,
    pub version: u64,
    pub schema_type: String,
    pub schema: String,
    pub references: Vec<SchemaReference>,
}

/// `GET /schemas/ids/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaById {
    pub schema_type: String,
    pub schema: String,
    pub references: Vec<SchemaReference>,
}

/// What a registration returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Registered {
    pub id: u64,
    pub version: u64,
}

/// `{version}` in a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionRef {
    Latest,
    Number(u64),
}

impl std::str::FromStr for VersionRef {
    type Err = ConfluentError;
    fn from_str(s: &str) -> Result<Self> {
        if s == "latest" || s == "-1" {
            return Ok(VersionRef::Latest);
        }
        match s.parse::<u64>() {
            Ok(n) if (1..=i32::MAX as u64).contains(&n) => Ok(VersionRef::Number(n)),
            _ => Err(ConfluentError::InvalidVersion(s.to_string())),
        }
    }
}

/// The text form of a schema in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `.proto` source.
    #[default]
    Source,
    /// Base64 `FileDescriptorProto` (`format=serialized`).
    Serialized,
}

/// Whether a version was deleted through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    Live,
    Soft,
    Hard,
}

/// One version of a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub version: u64,
    pub id: u64,
    pub main: String,
    pub deletion: Deletion,
}

/// A subject as of one commit of its namespace.
#[derive(Debug, Clone)]
pub struct SubjectView {
    pub subject: String,
    pub namespace: String,
    pub seq: u64,
    /// Registered versions, ascending.
    pub versions: Vec<VersionInfo>,
    pub policy: Policy,
    /// The subject-level compatibility, when one is set.
    pub level: Option<Level>,
}

impl SubjectView {
    pub fn live(&self) -> impl DoubleEndedIterator<Item = &VersionInfo> {
        self.versions
            .iter()
            .filter(|v| v.deletion == Deletion::Live)
    }

    fn find(&self, v: VersionRef, deleted: bool) -> Result<&VersionInfo> {
        let not_found = || ConfluentError::VersionNotFound {
            subject: self.subject.clone(),
            version: match v {
                VersionRef::Latest => "latest".into(),
                VersionRef::Number(n) => n.to_string(),
            },
        };
        match v {
            VersionRef::Latest => self.live().next_back().ok_or_else(not_found),
            VersionRef::Number(n) => self
                .versions
                .iter()
                .find(|i| {
                    i.version == n
                        && match i.deletion {
                            Deletion::Live => true,
                            Deletion::Soft => deleted,
                            Deletion::Hard => false,
                        }
                })
                .ok_or_else(not_found),
        }
    }
}

/// Versions of one namespace's schema that were ever current, up to `seq`.
#[derive(Default)]
struct Index {
    seq: u64,
    ever_current: BTreeSet<u64>,
}

/// A schema prepared for registration or lookup.
struct Candidate {
    text: String,
    references: Vec<SchemaReference>,
    hash: String,
    main: String,
    /// Import path → source: the main file and every referenced file.
    files: BTreeMap<String, String>,
    pool: Option<DescriptorPool>,
}

/// Options of [`ConfluentRegistry`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Put in front of every subject's namespace ID.
    pub namespace_prefix: String,
    /// How long a subject or the global settings read from storage are
    /// served before they are read again: the freshness bound for changes
    /// made through other replicas (this replica's own are seen at once).
    pub refresh: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace_prefix: String::new(),
            refresh: Duration::from_secs(1),
        }
    }
}

/// The Confluent Schema Registry model over a [`Registry`].
pub struct ConfluentRegistry {
    registry: Registry,
    ids: SchemaIds,
    opts: Options,
    views: Mutex<HashMap<String, (Instant, Arc<SubjectView>)>>,
    /// One refresh per subject at a time: when a view expires under load,
    /// the requests that find it expired wait for one re-read instead of
    /// each reading the namespace again.
    refreshing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    indexes: tokio::sync::Mutex<HashMap<String, Index>>,
    global: Mutex<Option<(Instant, Level)>>,
}

impl std::fmt::Debug for ConfluentRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfluentRegistry")
            .field("opts", &self.opts)
            .finish()
    }
}

fn invalid_ref(r: &SchemaReference, why: &str) -> ConfluentError {
    ConfluentError::InvalidSchema(format!(
        "reference {:?} (subject {:?}, version {}): {why}",
        r.name, r.subject, r.version
    ))
}

impl ConfluentRegistry {
    pub fn new(registry: Registry, opts: Options) -> Self {
        ConfluentRegistry {
            ids: SchemaIds::new(registry.store().clone()),
            registry,
            opts,
            views: Default::default(),
            refreshing: Default::default(),
            indexes: Default::default(),
            global: Default::default(),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn namespace_of(&self, subject: &str) -> String {
        subject::namespace_for(&self.opts.namespace_prefix, subject)
    }

    // --- reading subjects ------------------------------------------------

    /// The subject as last read, or read again when older than the refresh
    /// interval (always with `fresh`). `None`: no such subject.
    pub async fn subject(&self, subject: &str, fresh: bool) -> Result<Option<Arc<SubjectView>>> {
        let asked = Instant::now();
        let unexpired = |asked: Instant| {
            let views = self.views.lock().unwrap();
            let (at, view) = views.get(subject)?;
            // A view whose read began after the request arrived is fresh
            // enough even for `fresh`: it saw every commit acknowledged
            // before the request.
            (if fresh {
                *at >= asked
            } else {
                at.elapsed() < self.opts.refresh
            })
            .then(|| view.clone())
        };
        if !fresh && let Some(view) = unexpired(asked) {
            return Ok(Some(view));
        }
        let gate = self
            .refreshing
            .lock()
            .unwrap()
            .entry(subject.to_string())
            .or_default()
            .clone();
        let _one_refresh = gate.lock().await;
        if let Some(view) = unexpired(asked) {
            return Ok(Some(view));
        }
        // Stamped with when the read began: it has seen every commit
        // acknowledged before then.
        let read_at = Instant::now();
        let ns = self.namespace_of(subject);
        let store = self.registry.store();
        match store.get_namespace(&ns).await {
            Ok(n) if n.metadata.get(SUBJECT_KEY).map(String::as_str) == Some(subject) => {}
            Ok(_) | Err(crate::Error::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let state = store.namespace_state(&ns).await?;
        let cached = self.views.lock().unwrap().get(subject).cloned();
        let view = match cached {
            Some((_, v)) if v.seq == state.seq => v,
            _ => Arc::new(self.load_view(subject, &ns, &state).await?),
        };
        self.views
            .lock()
            .unwrap()
            .insert(subject.to_string(), (read_at, view.clone()));
        Ok(Some(view))
    }

    async fn load_view(
        &self,
        subject: &str,
        ns: &str,
        state: &crate::objstore::NsState,
    ) -> Result<SubjectView> {
        let store = self.registry.store();
        let ever = {
            let mut indexes = self.indexes.lock().await;
            let index = indexes.entry(ns.to_string()).or_default();
            if state.seq > index.seq {
                for entry in store.log_entries(ns, index.seq + 1, state.seq).await? {
                    if let Operation::Promote { promoted } = &entry.operation {
                        index.ever_current.extend(
                            promoted
                                .iter()
                                .filter(|p| p.schema_id == SCHEMA)
                                .map(|p| p.current_version),
                        );
                    }
                }
                index.seq = state.seq;
            }
            let mut ever = index.ever_current.clone();
            ever.extend(state.pointers(SCHEMA).current);
            ever
        };
        let config = &state.snapshot.config;
        // A namespace or schema soft-deleted with the CLI hides every
        // version, as a Confluent soft delete of the subject would.
        let hidden = crate::registry::delete::is_deleted(config) || state.pointers(SCHEMA).deleted;
        let mut versions = Vec::new();
        for v in ever {
            let m = store.manifest(ns, SCHEMA, v).await?;
            // Versions published without the API (e.g. `protoshelf push`)
            // have no schema ID and are not subject versions.
            let Some(id) = m.metadata.get(ID_KEY).and_then(|s| s.parse().ok()) else {
                continue;
            };
            let deletion = match config
                .get(&format!("{DELETED_PREFIX}{v}"))
                .map(String::as_str)
            {
                Some("soft") => Deletion::Soft,
                Some("hard") => Deletion::Hard,
                _ if hidden => Deletion::Soft,
                _ => Deletion::Live,
            };
            versions.push(VersionInfo {
                version: v,
                id,
                main: m.metadata.get(MAIN_KEY).cloned().unwrap_or_default(),
                deletion,
            });
        }
        let policy = match config.get(crate::registry::POLICY_KEY) {
            Some(p) => p.parse().unwrap_or_default(),
            None => Policy::default(),
        };
        let level = config
            .get(LEVEL_KEY)
            .filter(|l| !l.is_empty())
            .and_then(|l| l.parse().ok());
        Ok(SubjectView {
            subject: subject.to_string(),
            namespace: ns.to_string(),
            seq: state.seq,
            versions,
            policy,
            level,
        })
    }

    fn forget(&self, subject: &str) {
        self.views.lock().unwrap().remove(subject);
    }

    async fn require(&self, subject: &str, fresh: bool) -> Result<Arc<SubjectView>> {
        self.subject(subject, fresh)
            .await?
            .ok_or_else(|| ConfluentError::SubjectNotFound(subject.to_string()))
    }

    /// Every subject's name, sorted; with `deleted`, soft-deleted ones too.
    pub async fn subjects(&self, deleted: bool, fresh: bool) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for ns in self.registry.store().list_namespaces().await? {
            let Some(subject) = ns.metadata.get(SUBJECT_KEY) else {
                continue;
            };
            if self.namespace_of(subject) != ns.id {
                continue;
            }
            if let Some(view) = self.subject(subject, fresh).await?
                && view.versions.iter().any(|v| match v.deletion {
                    Deletion::Live => true,
                    Deletion::Soft => deleted,
                    Deletion::Hard => false,
                })
            {
                out.push(subject.clone());
            }
        }
        out.sort();
        Ok(out)
    }

    /// A subject's version numbers; with `deleted`, soft-deleted ones too.
    pub async fn versions(&self, subject: &str, deleted: bool, fresh: bool) -> Result<Vec<u64>> {
        let view = self.require(subject, fresh).await?;
        let out: Vec<u64> = view
            .versions
            .iter()
            .filter(|v| match v.deletion {
                Deletion::Live => true,
                Deletion::Soft => deleted,
                Deletion::Hard => false,
            })
            .map(|v| v.version)
            .collect();
        if out.is_empty() {
            return Err(ConfluentError::SubjectNotFound(subject.to_string()));
        }
        Ok(out)
    }

    async fn id_record(&self, id: u64) -> Result<Arc<SchemaIdRecord>> {
        self.ids
            .get(id)
            .await?
            .ok_or_else(|| ConfluentError::SchemaNotFound(id.to_string()))
    }

    fn text_of(record: &SchemaIdRecord, format: Format) -> String {
        match format {
            Format::Serialized if !record.serialized.is_empty() => record.serialized.clone(),
            _ => record.schema.clone(),
        }
    }

    /// One version of a subject.
    pub async fn version(
        &self,
        subject: &str,
        v: VersionRef,
        deleted: bool,
        format: Format,
        fresh: bool,
    ) -> Result<SubjectVersion> {
        let view = self.require(subject, fresh).await?;
        let info = view.find(v, deleted)?;
        let record = self.id_record(info.id).await?;
        Ok(SubjectVersion {
            subject: subject.to_string(),
            id: info.id,
            version: info.version,
            schema_type: record.schema_type.clone(),
            schema: Self::text_of(&record, format),
            references: record.references.clone(),
        })
    }

    /// The schema a global ID names; with `subject`, only if that subject
    /// has a version with it.
    pub async fn schema_by_id(
        &self,
        id: u64,
        subject: Option<&str>,
        format: Format,
    ) -> Result<SchemaById> {
        let record = self.id_record(id).await?;
        if let Some(s) = subject {
            let view = self.require(s, false).await?;
            if !view
                .versions
                .iter()
                .any(|v| v.id == id && v.deletion != Deletion::Hard)
            {
                return Err(ConfluentError::SchemaNotFound(format!(
                    "{id} in subject '{s}'"
                )));
            }
        }
        Ok(SchemaById {
            schema_type: record.schema_type.clone(),
            schema: Self::text_of(&record, format),
            references: record.references.clone(),
        })
    }

    /// The (subject, version) pairs that carry a global ID.
    pub async fn id_versions(&self, id: u64) -> Result<Vec<(String, u64)>> {
        self.id_record(id).await?;
        let mut out = Vec::new();
        for s in self.subjects(false, false).await? {
            if let Some(view) = self.subject(&s, false).await? {
                out.extend(
                    view.live()
                        .filter(|v| v.id == id)
                        .map(|v| (s.clone(), v.version)),
                );
            }
        }
        Ok(out)
    }

    // --- compatibility levels --------------------------------------------

    /// The global level (BACKWARD until set).
    pub async fn global_level(&self) -> Result<Level> {
        if let Some((at, l)) = *self.global.lock().unwrap()
            && at.elapsed() < self.opts.refresh
        {
            return Ok(l);
        }
        let level = match self.ids.config().await? {
            Some(c) => c.compatibility.parse().unwrap_or_default(),
            None => Level::default(),
        };
        *self.global.lock().unwrap() = Some((Instant::now(), level));
        Ok(level)
    }

    /// The level a subject's registrations are checked with.
    async fn effective_level(&self, view: &SubjectView) -> Result<Level> {
        Ok(match view.level {
            Some(l) => Level::reported(view.policy, Some(l)),
            None => self.global_level().await?,
        })
    }

    /// `GET /config[/{subject}]`.
    pub async fn config(&self, subject: Option<&str>, default_to_global: bool) -> Result<Level> {
        let Some(s) = subject else {
            return self.global_level().await;
        };
        match self.subject(s, false).await? {
            Some(v) if v.level.is_some() => Ok(Level::reported(v.policy, v.level)),
            _ if default_to_global => self.global_level().await,
            _ => Err(ConfluentError::NoSubjectConfig(s.to_string())),
        }
    }

    /// `PUT /config[/{subject}]`. A subject's level is set on its namespace
    /// (its policy follows); the global one applies to every subject
    /// without its own, whose namespace policies follow it.
    pub async fn set_config(&self, subject: Option<&str>, level: Level) -> Result<Level> {
        match subject {
            None => {
                self.ids.set_config(level.as_str()).await?;
                *self.global.lock().unwrap() = Some((Instant::now(), level));
                for s in self.subjects(true, true).await? {
                    if let Some(view) = self.subject(&s, true).await? {
                        self.sync_policy(&view, level).await?;
                    }
                }
            }
            Some(s) => {
                let ns = self.ensure_namespace(s).await?;
                let store = self.registry.store();
                store.set_config(&ns, LEVEL_KEY, level.as_str()).await?;
                let view = self.require(s, true).await?;
                if view.policy != level.policy() {
                    self.registry.set_policy(&ns, level.policy()).await?;
                }
                self.forget(s);
            }
        }
        Ok(level)
    }

    /// `DELETE /config/{subject}`: back to the global level.
    pub async fn delete_config(&self, subject: &str) -> Result<Level> {
        let view = self.require(subject, true).await?;
        let Some(old) = view.level else {
            return Err(ConfluentError::NoSubjectConfig(subject.to_string()));
        };
        self.registry
            .store()
            .set_config(&view.namespace, LEVEL_KEY, "")
            .await?;
        self.forget(subject);
        let view = self.require(subject, true).await?;
        self.sync_policy(&view, self.global_level().await?).await?;
        Ok(Level::reported(view.policy, Some(old)))
    }

    /// Makes a subject without its own level follow `global`: only the
    /// policies the levels map to are changed (a policy a CLI user chose,
    /// `strict` or `wire_json`, is kept).
    async fn sync_policy(&self, view: &SubjectView, global: Level) -> Result<()> {
        let mapped = matches!(view.policy, Policy::Wire | Policy::None);
        if view.level.is_none() && mapped && view.policy != global.policy() {
            self.registry
                .set_policy(&view.namespace, global.policy())
                .await?;
            self.forget(&view.subject);
        }
        Ok(())
    }

    // --- registering -----------------------------------------------------

    /// Resolves references into `files` (at their import names), depth
    /// first; returns them with concrete versions.
    async fn resolve(
        &self,
        refs: &[SchemaReference],
        files: &mut BTreeMap<String, String>,
        depth: usize,
    ) -> Result<Vec<SchemaReference>> {
        let mut out = Vec::new();
        for r in refs {
            if depth > MAX_REFERENCE_DEPTH {
                return Err(invalid_ref(r, "references nest too deep (a cycle?)"));
            }
            crate::ids::validate_file_path(&r.name).map_err(|e| invalid_ref(r, &e.to_string()))?;
            let view = self
                .subject(&r.subject, false)
                .await?
                .ok_or_else(|| invalid_ref(r, "no such subject"))?;
            let wanted = match r.version {
                -1 => VersionRef::Latest,
                n if n > 0 => VersionRef::Number(n as u64),
                _ => return Err(invalid_ref(r, "not a version number")),
            };
            let info = view
                .find(wanted, true)
                .map_err(|_| invalid_ref(r, "no such version"))?;
            let record = self.id_record(info.id).await?;
            out.push(SchemaReference {
                version: info.version as i64,
                ..r.clone()
            });
            // Well-known types come with the compiler.
            if crate::registry::limits::is_well_known(&r.name) {
                continue;
            }
            match files.get(&r.name) {
                Some(text) if *text != record.schema => {
                    return Err(invalid_ref(
                        r,
                        "another reference gives this import path a different content",
                    ));
                }
                Some(_) => continue,
                None => {
                    files.insert(r.name.clone(), record.schema.clone());
                }
            }
            Box::pin(self.resolve(&record.references, files, depth + 1)).await?;
        }
        Ok(out)
    }

    async fn candidate(
        &self,
        subject: &str,
        req: &SchemaRequest,
        compile: bool,
    ) -> Result<Candidate> {
        match req.schema_type.as_deref() {
            None => {}
            Some(t) if t.eq_ignore_ascii_case(PROTOBUF) => {}
            Some(t) => {
                return Err(ConfluentError::InvalidSchema(format!(
                    "schemaType {t} is not supported: protoshelf serves PROTOBUF schemas only"
                )));
            }
        }
        let input = Input::parse(&req.schema)?;
        let main = input
            .name()
            .map(str::to_string)
            .unwrap_or_else(|| subject::main_path_for(subject));
        let mut text = input.text();
        let mut files = BTreeMap::new();
        let references = self.resolve(&req.references, &mut files, 0).await?;
        if files.contains_key(&main) {
            return Err(ConfluentError::InvalidSchema(format!(
                "the schema's own path {main:?} is also the name of one of its references"
            )));
        }
        let mut pool = None;
        if compile || req.normalize {
            files.insert(main.clone(), text.clone());
            let p = schema::compile(&main, &files)?;
            if req.normalize
                && let Some(t) = schema::canonical_text(&p, &main)
            {
                text = t;
                files.insert(main.clone(), text.clone());
            }
            pool = Some(p);
        }
        files.insert(main.clone(), text.clone());
        Ok(Candidate {
            hash: schema::content_hash(PROTOBUF, &text, &references),
            text,
            references,
            main,
            files,
            pool,
        })
    }

    /// The violations of `pool` against the versions `level` names.
    async fn violations(
        &self,
        view: &SubjectView,
        level: Level,
        pool: &DescriptorPool,
        only: Option<u64>,
    ) -> Result<(Vec<Violation>, Vec<u64>)> {
        let policy = if level == Level::None {
            Policy::None
        } else if view.policy == Policy::None {
            level.policy()
        } else {
            view.policy
        };
        let mut targets: Vec<&VersionInfo> = match only {
            Some(n) => view.versions.iter().filter(|v| v.version == n).collect(),
            None => view.live().collect(),
        };
        if only.is_none() && !level.transitive() && targets.len() > 1 {
            targets.drain(..targets.len() - 1);
        }
        let checked = targets.iter().map(|v| v.version).collect();
        let mut out = Vec::new();
        if policy == Policy::None {
            return Ok((out, checked));
        }
        for v in targets {
            let old = self
                .registry
                .store()
                .get_version(&view.namespace, SCHEMA, v.version)
                .await?;
            let old_pool = crate::registry::compile::stored_pool(
                &format!("descriptor of {} version {}", view.namespace, v.version),
                old.compiled,
            )?;
            out.extend(compat::check(
                policy,
                &old_pool,
                pool,
                std::slice::from_ref(&v.main),
            ));
        }
        Ok((out, checked))
    }

    async fn ensure_namespace(&self, subject: &str) -> Result<String> {
        let ns = self.namespace_of(subject);
        let store = self.registry.store();
        let check = |n: crate::model::Namespace| {
            if n.metadata.get(SUBJECT_KEY).map(String::as_str) == Some(subject) {
                Ok(())
            } else {
                Err(ConfluentError::Unsupported(format!(
                    "namespace {ns:?} exists and is not the namespace of subject {subject:?}; \
                     use another subject name or start the server with another --subject-prefix"
                )))
            }
        };
        match store.get_namespace(&ns).await {
            Ok(n) => check(n)?,
            Err(crate::Error::NotFound(_)) => {
                let policy = self.global_level().await?.policy();
                let metadata = Metadata::from([(SUBJECT_KEY.to_string(), subject.to_string())]);
                match self.registry.create_namespace(&ns, policy, metadata).await {
                    Ok(()) => {}
                    Err(crate::Error::AlreadyExists(_)) => check(store.get_namespace(&ns).await?)?,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
        Ok(ns)
    }

    /// `POST /subjects/{subject}/versions`: registers a schema, or returns
    /// the live version that already has this content. Checked against the
    /// subject's level first: an incompatible schema changes nothing.
    pub async fn register(
        &self,
        subject: &str,
        req: &SchemaRequest,
        author: &str,
    ) -> Result<Registered> {
        let cand = self.candidate(subject, req, true).await?;
        let pool = cand.pool.as_ref().expect("compiled");
        let ns = self.ensure_namespace(subject).await?;
        let store = self.registry.store();
        let started = Instant::now();
        for round in 0..REGISTER_ATTEMPTS {
            if round > 0 {
                crate::objstore::io::backoff(round).await;
            }
            let view = self.require(subject, true).await?;
            let known = self.ids.find(&cand.hash).await?;
            if let Some(id) = known
                && let Some(v) = view.live().rev().find(|v| v.id == id)
            {
                return Ok(Registered {
                    id,
                    version: v.version,
                });
            }
            let level = self.effective_level(&view).await?;
            if view.level.is_none() {
                self.sync_policy(&view, level).await?;
            }
            let (violations, mut checked) = self.violations(&view, level, pool, None).await?;
            if !violations.is_empty() {
                return Err(ConfluentError::Incompatible {
                    subject: subject.to_string(),
                    violations,
                });
            }
            let id = match known {
                Some(id) => id,
                None => {
                    self.ids
                        .allocate(&NewSchema {
                            sha256: cand.hash.clone(),
                            schema_type: PROTOBUF.into(),
                            schema: cand.text.clone(),
                            references: cand.references.clone(),
                            serialized: schema::serialized(pool, &cand.main),
                        })
                        .await?
                }
            };
            let files: Vec<SourceFile> = cand
                .files
                .iter()
                .map(|(p, t)| SourceFile::new(p.clone(), t.clone()))
                .collect();
            let opts = PublishOptions {
                created_by: Some(author.to_string()),
                metadata: Metadata::from([
                    (ID_KEY.to_string(), id.to_string()),
                    (MAIN_KEY.to_string(), cand.main.clone()),
                ]),
                ..Default::default()
            };
            let v = self
                .registry
                .publish(&ns, SCHEMA, files, opts)
                .await?
                .version;
            // Make it current, unless another registration replaced it.
            let mut landed = false;
            for _ in 0..REGISTER_ATTEMPTS {
                let state = store.namespace_state(&ns).await?;
                let p = state.pointers(SCHEMA);
                if p.current == Some(v) {
                    landed = true;
                    break;
                }
                if p.staged != Some(v) {
                    break;
                }
                // A version registered since the check is checked too.
                self.forget(subject);
                let now = self.require(subject, true).await?;
                let newer: Vec<u64> = now
                    .live()
                    .map(|i| i.version)
                    .filter(|n| !checked.contains(n))
                    .collect();
                if !newer.is_empty() {
                    let (violations, also) = self.violations(&now, level, pool, None).await?;
                    checked.extend(also);
                    if !violations.is_empty() {
                        store.discard_staging(&ns).await?;
                        self.forget(subject);
                        return Err(ConfluentError::Incompatible {
                            subject: subject.to_string(),
                            violations,
                        });
                    }
                }
                // Promote only on the state just checked: our version
                // staged, current unchanged; otherwise look again.
                let current = p.current;
                let promoted = store
                    .commit(&ns, move |a: crate::objstore::log::NsAttempt| async move {
                        let now = a.state.pointers(SCHEMA);
                        Ok(if now.staged == Some(v) && now.current == current {
                            crate::objstore::log::Mutation::promote(&a.state)
                        } else {
                            None
                        })
                    })
                    .await?;
                if promoted.is_some() {
                    landed = true;
                    break;
                }
            }
            self.forget(subject);
            if !landed {
                continue;
            }
            // The files equal a version deleted through the API: it is live
            // again (protoshelf cannot make a second version of them).
            let view = self.require(subject, true).await?;
            if let Some(info) = view.versions.iter().find(|i| i.version == v) {
                if info.deletion != Deletion::Live {
                    store
                        .set_config(&ns, &format!("{DELETED_PREFIX}{v}"), "")
                        .await?;
                    self.forget(subject);
                }
                return Ok(Registered {
                    id: info.id,
                    version: v,
                });
            }
            return Ok(Registered { id, version: v });
        }
        Err(crate::Error::Contended {
            namespace: ns,
            attempts: REGISTER_ATTEMPTS,
            waited: started.elapsed(),
        }
        .into())
    }

    /// `POST /subjects/{subject}`: the version of this subject with this
    /// content.
    pub async fn lookup(
        &self,
        subject: &str,
        req: &SchemaRequest,
        deleted: bool,
    ) -> Result<SubjectVersion> {
        let view = self.require(subject, false).await?;
        let cand = self.candidate(subject, req, false).await?;
        let not_found =
            || ConfluentError::SchemaNotFound(format!("with this content in subject '{subject}'"));
        let id = self.ids.find(&cand.hash).await?.ok_or_else(not_found)?;
        let info = view
            .versions
            .iter()
            .rev()
            .find(|v| {
                v.id == id
                    && (v.deletion == Deletion::Live || (deleted && v.deletion == Deletion::Soft))
            })
            .ok_or_else(not_found)?;
        Ok(SubjectVersion {
            subject: subject.to_string(),
            id,
            version: info.version,
            schema_type: PROTOBUF.into(),
            schema: cand.text,
            references: cand.references,
        })
    }

    /// `POST /compatibility/subjects/{subject}/versions[/{version}]`: the
    /// violations registering this schema would meet (against one version,
    /// or the versions the level names). Writes nothing.
    pub async fn test_compatibility(
        &self,
        subject: &str,
        version: Option<VersionRef>,
        req: &SchemaRequest,
    ) -> Result<Vec<Violation>> {
        let cand = self.candidate(subject, req, true).await?;
        let Some(view) = self.subject(subject, true).await? else {
            return match version {
                None | Some(VersionRef::Latest) => Ok(Vec::new()),
                Some(_) => Err(ConfluentError::SubjectNotFound(subject.to_string())),
            };
        };
        let level = self.effective_level(&view).await?;
        let only = match version {
            None => None,
            Some(v) => match view.find(v, false) {
                Ok(i) => Some(i.version),
                Err(_) if v == VersionRef::Latest && view.live().next().is_none() => {
                    return Ok(Vec::new());
                }
                Err(e) => return Err(e),
            },
        };
        let pool = cand.pool.as_ref().expect("compiled");
        Ok(self.violations(&view, level, pool, only).await?.0)
    }

    // --- deleting --------------------------------------------------------

    async fn mark(&self, view: &SubjectView, versions: &[u64], how: &str) -> Result<()> {
        for v in versions {
            self.registry
                .store()
                .set_config(&view.namespace, &format!("{DELETED_PREFIX}{v}"), how)
                .await?;
        }
        self.forget(&view.subject);
        Ok(())
    }

    /// `DELETE /subjects/{subject}`: soft-deletes every live version, or
    /// with `permanent` hides the soft-deleted ones for good. Returns them.
    pub async fn delete_subject(&self, subject: &str, permanent: bool) -> Result<Vec<u64>> {
        let view = self.require(subject, true).await?;
        let of = |d: Deletion| -> Vec<u64> {
            view.versions
                .iter()
                .filter(|v| v.deletion == d)
                .map(|v| v.version)
                .collect()
        };
        let (live, soft) = (of(Deletion::Live), of(Deletion::Soft));
        if !permanent {
            if live.is_empty() {
                return Err(if soft.is_empty() {
                    ConfluentError::SubjectNotFound(subject.to_string())
                } else {
                    ConfluentError::SubjectSoftDeleted(subject.to_string())
                });
            }
            self.mark(&view, &live, "soft").await?;
            return Ok(live);
        }
        if !live.is_empty() {
            return Err(ConfluentError::SubjectNotSoftDeleted(subject.to_string()));
        }
        if soft.is_empty() {
            return Err(ConfluentError::SubjectNotFound(subject.to_string()));
        }
        self.mark(&view, &soft, "hard").await?;
        Ok(soft)
    }

    /// `DELETE /subjects/{subject}/versions/{version}`.
    pub async fn delete_version(
        &self,
        subject: &str,
        v: VersionRef,
        permanent: bool,
    ) -> Result<u64> {
        let view = self.require(subject, true).await?;
        let info = view.find(v, true)?.clone();
        let version = info.version;
        match (info.deletion, permanent) {
            (Deletion::Live, false) => self.mark(&view, &[version], "soft").await?,
            (Deletion::Soft, true) => self.mark(&view, &[version], "hard").await?,
            (Deletion::Soft, false) => {
                return Err(ConfluentError::VersionSoftDeleted {
                    subject: subject.to_string(),
                    version,
                });
            }
            (Deletion::Live, true) => {
                return Err(ConfluentError::VersionNotSoftDeleted {
                    subject: subject.to_string(),
                    version,
                });
            }
            (Deletion::Hard, _) => unreachable!("find never returns a permanently deleted version"),
        }
        Ok(version)
    }
}
