//! [`Store`] over object storage: records, versions and blobs are immutable
//! objects; pointers live in the namespace's commit log.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use sha2::{Digest, Sha256};

use super::io::Created;
use super::log::{Mutation, NsState};
use super::records::*;
use super::{ObjStore, keys};
use crate::error::{Error, Result};
use crate::ids::{validate_namespace_id, validate_schema_id};
use crate::model::*;
use crate::store::{ClaimKind, DEFAULT_PAGE, MAX_PAGE, StageChange, Store};

/// How many independent objects are fetched at once.
const FETCH_CONCURRENCY: usize = 16;

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn validate_sha256(sha: &str) -> Result<()> {
    if sha.len() == 64 && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "{sha:?} is not a SHA-256 (64 lowercase hex digits)"
        )))
    }
}

fn page_limit(limit: usize) -> usize {
    match limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

impl ObjStore {
    fn io(&self) -> &super::io::Io {
        &self.inner.io
    }

    async fn read_record<T: serde::de::DeserializeOwned>(&self, key: &Path) -> Result<Option<T>> {
        match self.io().get_immutable(key).await? {
            Some(obj) => from_json(key.as_ref(), &obj.bytes).map(Some),
            None => Ok(None),
        }
    }

    pub(super) async fn require_namespace(&self, ns: &str) -> Result<NamespaceRecord> {
        validate_namespace_id(ns)?;
        self.read_record(&keys::namespace(ns))
            .await?
            .ok_or_else(|| Error::NotFound(format!("namespace {ns:?}")))
    }

    async fn require_schema(&self, ns: &str, schema: &str) -> Result<SchemaRecord> {
        self.require_namespace(ns).await?;
        validate_schema_id(schema)?;
        self.read_record(&keys::schema(ns, schema))
            .await?
            .ok_or_else(|| Error::NotFound(format!("schema {schema:?} in namespace {ns:?}")))
    }

    /// A version's manifest (cached): files, deps, descriptor key, author, time.
    pub async fn manifest(&self, ns: &str, schema: &str, version: u64) -> Result<VersionManifest> {
        validate_namespace_id(ns)?;
        validate_schema_id(schema)?;
        let key = keys::version(ns, schema, version);
        // The manifest alone proves the schema exists; the schema record is
        // read only to say which of the two is missing.
        let Some(manifest) = self.read_record::<VersionManifest>(&key).await? else {
            self.require_schema(ns, schema).await?;
            return Err(Error::NotFound(format!(
                "version {version} of schema {schema:?} in namespace {ns:?}"
            )));
        };
        if manifest.version != version
            || manifest.schema_id != schema
            || manifest.namespace_id != ns
        {
            return Err(Error::Corrupt {
                key: key.to_string(),
                reason: "names another version".into(),
            });
        }
        Ok(manifest)
    }

    /// Reads a content-addressed object; its hash is checked when it comes
    /// from storage (cached copies were checked, or written by this handle).
    async fn verified(&self, key: &Path, sha: &str, what: &str) -> Result<super::io::Object> {
        let check = |obj: &super::io::Object| {
            let actual = sha256_hex(&obj.bytes);
            if actual == sha {
                Ok(())
            } else {
                Err(Error::Corrupt {
                    key: key.to_string(),
                    reason: format!("content hashes to {actual}, not to its key"),
                })
            }
        };
        self.io()
            .get_checked(key, check)
            .await?
            .ok_or_else(|| Error::NotFound(what.to_string()))
    }

    async fn descriptor(&self, m: &VersionManifest) -> Result<Bytes> {
        let key = keys::descriptor(&m.namespace_id, &m.descriptor.sha256);
        let what = format!(
            "descriptor of version {} of schema {:?}",
            m.version, m.schema_id
        );
        Ok(self
            .verified(&key, &m.descriptor.sha256, &what)
            .await?
            .bytes)
    }

    /// IDs of the objects directly in `dir`, greater than `after`, in order.
    async fn list_ids(&self, dir: &Path, after: &str, limit: Option<usize>) -> Result<Vec<String>> {
        let os = &self.io().os;
        // Push the offset down to the store when it is a valid key segment.
        let stream = if !after.is_empty() && crate::ids::validate_schema_id(after).is_ok() {
            os.list_with_offset(Some(dir), &dir.clone().join(after))
        } else {
            os.list(Some(dir))
        };
        let depth = dir.parts().count() + 1;
        let mut ids = stream.map_err(Error::Storage).try_filter_map(|meta| {
            let parts: Vec<_> = meta.location.parts().collect();
            futures::future::ready(Ok((parts.len() == depth)
                .then(|| parts[depth - 1].as_ref().to_string())
                .filter(|id| id.as_str() > after)))
        });
        let mut out = Vec::new();
        let ordered = self.inner.kind.lists_in_order();
        while let Some(id) = ids.try_next().await? {
            out.push(id);
            if ordered && limit.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        out.sort();
        if let Some(l) = limit {
            out.truncate(l);
        }
        Ok(out)
    }

    async fn namespace_page(&self, after: &str, limit: Option<usize>) -> Result<Vec<Namespace>> {
        let ids = self.list_ids(&keys::namespaces_dir(), after, limit).await?;
        futures::stream::iter(ids)
            .map(|id| async move {
                let r = self.require_namespace(&id).await?;
                Ok(Namespace {
                    id: r.namespace_id,
                    created_at: r.created_at,
                    metadata: r.metadata,
                })
            })
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn schema_page(
        &self,
        ns: &str,
        after: &str,
        limit: Option<usize>,
    ) -> Result<Vec<Schema>> {
        self.require_namespace(ns).await?;
        let ids = self.list_ids(&keys::schemas_dir(ns), after, limit).await?;
        let state = self.inner.log.latest(ns).await?;
        futures::stream::iter(ids)
            .map(|id| {
                let state = state.clone();
                async move {
                    let r = self.require_schema(ns, &id).await?;
                    Ok(to_schema(r, &state))
                }
            })
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn load_versions(
        &self,
        ns: &str,
        pick: impl Fn(&Pointers) -> Option<u64>,
    ) -> Result<Vec<CurrentSchema>> {
        let state = self.namespace_state(ns).await?;
        let wanted: Vec<(String, u64)> = state
            .snapshot
            .schemas
            .iter()
            .filter_map(|(s, p)| pick(p).map(|v| (s.clone(), v)))
            .collect();
        futures::stream::iter(wanted)
            .map(|(schema, version)| async move {
                let m = self.manifest(ns, &schema, version).await?;
                let compiled = self.descriptor(&m).await?;
                Ok(CurrentSchema {
                    namespace_id: ns.to_string(),
                    schema_id: schema,
                    version,
                    compiled,
                    compiler_version: m.compiler_version,
                    files: m.files,
                })
            })
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await
    }

    fn validate_version_input(&self, ver: &SchemaVersion, files: &[VersionFile]) -> Result<()> {
        validate_namespace_id(&ver.namespace_id)?;
        validate_schema_id(&ver.schema_id)?;
        if files.is_empty() {
            return Err(Error::InvalidInput(
                "a version needs at least one file".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        for f in files {
            crate::ids::validate_file_path(&f.path)?;
            validate_sha256(&f.sha256)?;
            if f.path.is_empty() || !seen.insert(f.path.as_str()) {
                return Err(Error::InvalidInput(format!(
                    "file path {:?} is empty or listed twice",
                    f.path
                )));
            }
        }
        Ok(())
    }

    /// Checks every file's blob exists (no request for blobs this handle
    /// wrote or read), and writes the descriptor. Returns its reference.
    async fn prepare_version(
        &self,
        ver: &SchemaVersion,
        files: &[VersionFile],
    ) -> Result<DescriptorRef> {
        let ns = &ver.namespace_id;
        self.require_schema(ns, &ver.schema_id).await?;
        for f in files {
            let key = keys::blob(ns, &f.sha256);
            if !self.io().known(&key) {
                match self.io().os.head(&key).await {
                    Ok(_) => {}
                    Err(object_store::Error::NotFound { .. }) => {
                        return Err(Error::InvalidInput(format!(
                            "file {:?} refers to blob {} which is not stored in namespace {ns:?}",
                            f.path, f.sha256
                        )));
                    }
                    Err(e) => return Err(Error::Storage(e)),
                }
            }
        }
        let sha = sha256_hex(&ver.compiled);
        let key = keys::descriptor(ns, &sha);
        self.io().create_content(&key, ver.compiled.clone()).await?;
        Ok(DescriptorRef {
            key: key.to_string(),
            sha256: sha,
            size: ver.compiled.len() as u64,
        })
    }

    /// Creates the manifest of `version`; `Ok(false)` when the number is taken.
    async fn create_manifest(
        &self,
        ver: &SchemaVersion,
        version: u64,
        descriptor: &DescriptorRef,
        files: &[VersionFile],
        deps: &[VersionDep],
    ) -> Result<bool> {
        let manifest = VersionManifest {
            format_version: self.inner.marker.format_version,
            namespace_id: ver.namespace_id.clone(),
            schema_id: ver.schema_id.clone(),
            version,
            created_at: ver.created_at,
            created_by: ver.created_by.clone(),
            compiler_version: ver.compiler_version.clone(),
            descriptor: descriptor.clone(),
            files: files.to_vec(),
            deps: deps.to_vec(),
            metadata: ver.metadata.clone(),
            writer_id: uuid::Uuid::new_v4().to_string(),
        };
        let key = keys::version(&ver.namespace_id, &ver.schema_id, version);
        let mine = manifest.writer_id.clone();
        let created = self
            .io()
            .create_record::<VersionManifest>(&key, to_json(&manifest), |m| m.writer_id == mine)
            .await?;
        Ok(matches!(created, Created::Mine))
    }

    /// Stored version numbers above `after`, ascending (one LIST, starting
    /// after that version's key).
    async fn versions_after(&self, ns: &str, schema: &str, after: u64) -> Result<Vec<u64>> {
        let dir = keys::versions_dir(ns, schema);
        let offset = if after == 0 {
            String::new()
        } else {
            format!("{after:020}.json")
        };
        let mut versions: Vec<u64> = self
            .list_ids(&dir, &offset, None)
            .await?
            .iter()
            .filter_map(|name| keys::parse_version_file(name))
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    /// Whether this store claims directories (format 2) or paths (format 1).
    pub fn claims_dirs(&self) -> bool {
        self.inner.marker.format_version >= FORMAT_DIR_CLAIMS
    }

    /// Each store has one layout of path claims: refuse the other one.
    fn check_claim_kind(&self, kind: ClaimKind) -> Result<()> {
        let wrong = match kind {
            ClaimKind::Dir => !self.claims_dirs(),
            ClaimKind::Path => self.claims_dirs(),
            ClaimKind::Package => false,
        };
        if wrong {
            return Err(Error::InvalidInput(format!(
                "{} claims do not exist in a format-{} store",
                kind.as_str(),
                self.inner.marker.format_version
            )));
        }
        Ok(())
    }

    async fn check_stage_change(&self, ns: &str, c: &StageChange) -> Result<()> {
        match c.version {
            Some(v) => self.manifest(ns, &c.schema_id, v).await.map(|_| ()),
            None => self.require_schema(ns, &c.schema_id).await.map(|_| ()),
        }
    }

    async fn commit(
        &self,
        ns: &str,
        expect_seq: Option<u64>,
        plan: impl FnMut(&NsState) -> Result<Option<Mutation>>,
    ) -> Result<Option<super::log::Committed>> {
        self.require_namespace(ns).await?;
        self.inner.log.commit(ns, expect_seq, plan).await
    }
}

/// Claim PUTs in flight at once (a large load writes hundreds).
const CLAIM_WRITE_CONCURRENCY: usize = 32;

fn claim_key(ns: &str, kind: ClaimKind, name: &str, schema: &str) -> Path {
    match kind {
        ClaimKind::Dir => keys::dir_claim(ns, name, schema),
        _ => keys::claim(ns, kind.as_str(), name, schema),
    }
}

/// Claim names are file paths or packages; a directory may also be the
/// root (`""`).
fn validate_claim_name(kind: ClaimKind, name: &str) -> Result<()> {
    if kind == ClaimKind::Dir && name.is_empty() {
        return Ok(());
    }
    crate::ids::validate_name("claim", name)
}

fn to_schema(r: SchemaRecord, state: &NsState) -> Schema {
    let p = state.pointers(&r.schema_id);
    Schema {
        namespace_id: r.namespace_id,
        schema_id: r.schema_id,
        current_version: p.current,
        staged_version: p.staged,
        created_at: r.created_at,
        metadata: r.metadata,
    }
}

#[async_trait]
impl Store for ObjStore {
    async fn put_blob(&self, blob: &ProtoBlob) -> Result<()> {
        self.require_namespace(&blob.namespace_id).await?;
        validate_sha256(&blob.sha256)?;
        let actual = sha256_hex(&blob.source);
        if actual != blob.sha256 {
            return Err(Error::InvalidInput(format!(
                "blob content hashes to {actual}, not to the given {}",
                blob.sha256
            )));
        }
        let key = keys::blob(&blob.namespace_id, &blob.sha256);
        if self.io().known(&key) {
            return Ok(());
        }
        self.io().create_content(&key, blob.source.clone()).await
    }

    async fn get_blob(&self, namespace_id: &str, sha256: &str) -> Result<ProtoBlob> {
        self.require_namespace(namespace_id).await?;
        validate_sha256(sha256)?;
        let key = keys::blob(namespace_id, sha256);
        let what = format!("blob {sha256} in namespace {namespace_id:?}");
        let obj = self.verified(&key, sha256, &what).await?;
        Ok(ProtoBlob {
            namespace_id: namespace_id.to_string(),
            sha256: sha256.to_string(),
            source: obj.bytes,
            created_at: Some(obj.last_modified),
        })
    }

    async fn create_namespace(&self, ns: &Namespace) -> Result<()> {
        validate_namespace_id(&ns.id)?;
        let record = NamespaceRecord {
            namespace_id: ns.id.clone(),
            created_at: ns.created_at,
            metadata: ns.metadata.clone(),
            writer_id: uuid::Uuid::new_v4().to_string(),
        };
        let mine = record.writer_id.clone();
        match self
            .io()
            .create_record::<NamespaceRecord>(&keys::namespace(&ns.id), to_json(&record), |r| {
                r.writer_id == mine
            })
            .await?
        {
            Created::Mine => Ok(()),
            Created::Theirs(_) => Err(Error::AlreadyExists(format!("namespace {:?}", ns.id))),
        }
    }

    async fn get_namespace(&self, id: &str) -> Result<Namespace> {
        let r = self.require_namespace(id).await?;
        Ok(Namespace {
            id: r.namespace_id,
            created_at: r.created_at,
            metadata: r.metadata,
        })
    }

    async fn list_namespaces(&self) -> Result<Vec<Namespace>> {
        self.namespace_page("", None).await
    }

    async fn list_namespaces_page(&self, after: &str, limit: usize) -> Result<Vec<Namespace>> {
        self.namespace_page(after, Some(page_limit(limit))).await
    }

    async fn create_schema(&self, schema: &Schema) -> Result<()> {
        let ns = &schema.namespace_id;
        self.require_namespace(ns).await?;
        validate_schema_id(&schema.schema_id)?;
        let record = SchemaRecord {
            namespace_id: ns.clone(),
            schema_id: schema.schema_id.clone(),
            created_at: schema.created_at,
            metadata: schema.metadata.clone(),
            writer_id: uuid::Uuid::new_v4().to_string(),
        };
        let mine = record.writer_id.clone();
        let key = keys::schema(ns, &schema.schema_id);
        match self
            .io()
            .create_record::<SchemaRecord>(&key, to_json(&record), |r| r.writer_id == mine)
            .await?
        {
            Created::Mine => {
                self.inner
                    .fresh_schemas
                    .lock()
                    .unwrap()
                    .insert((ns.clone(), schema.schema_id.clone()));
                Ok(())
            }
            Created::Theirs(_) => Err(Error::AlreadyExists(format!(
                "schema {:?} in namespace {ns:?}",
                schema.schema_id
            ))),
        }
    }

    async fn get_schema(&self, namespace_id: &str, schema_id: &str) -> Result<Schema> {
        let record = self.require_schema(namespace_id, schema_id).await?;
        let state = self.inner.log.latest(namespace_id).await?;
        Ok(to_schema(record, &state))
    }

    async fn list_schemas(&self, namespace_id: &str) -> Result<Vec<Schema>> {
        self.schema_page(namespace_id, "", None).await
    }

    async fn list_schemas_page(
        &self,
        namespace_id: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<Schema>> {
        self.schema_page(namespace_id, after, Some(page_limit(limit)))
            .await
    }

    async fn put_version(
        &self,
        ver: &SchemaVersion,
        files: &[VersionFile],
        deps: &[VersionDep],
    ) -> Result<()> {
        self.validate_version_input(ver, files)?;
        if ver.version == 0 {
            return Err(Error::InvalidInput("version numbers start at 1".into()));
        }
        let descriptor = self.prepare_version(ver, files).await?;
        // An explicit number ends the "no version yet" knowledge, whatever
        // the outcome: `create_version` must list from now on.
        self.inner
            .fresh_schemas
            .lock()
            .unwrap()
            .remove(&(ver.namespace_id.clone(), ver.schema_id.clone()));
        if self
            .create_manifest(ver, ver.version, &descriptor, files, deps)
            .await?
        {
            Ok(())
        } else {
            Err(Error::AlreadyExists(format!(
                "version {} of schema {:?} in namespace {:?}",
                ver.version, ver.schema_id, ver.namespace_id
            )))
        }
    }

    async fn create_version(
        &self,
        ver: &SchemaVersion,
        files: &[VersionFile],
        deps: &[VersionDep],
    ) -> Result<u64> {
        self.validate_version_input(ver, files)?;
        let descriptor = self.prepare_version(ver, files).await?;
        let (ns, schema) = (&ver.namespace_id, &ver.schema_id);
        // The state this handle last saw is enough as a starting point: the
        // LIST below finds every newer version anyway.
        let state = match self.inner.log.cached(ns) {
            Some(state) => state,
            None => self.inner.log.latest(ns).await?,
        };
        let p = state.pointers(schema);
        // Numbers follow creation order (a staged number below current is how
        // a rollback is recognised), so the new one must exceed every stored
        // version, including ones the log never saw (explicit `put_version`,
        // or a publisher that died before staging). One LIST starting after
        // the highest number the log knows finds those.
        let mut floor = p
            .latest
            .max(p.current.unwrap_or(0))
            .max(p.staged.unwrap_or(0));
        // A schema this handle just created had no version when its record
        // appeared (`put_version` needs the record): the first number to try
        // is the log's floor + 1, with no LIST. A version another writer
        // made since then makes that create fail, and the loop lists.
        let fresh = self
            .inner
            .fresh_schemas
            .lock()
            .unwrap()
            .remove(&(ns.clone(), schema.clone()));
        let mut listed = !fresh;
        loop {
            let next = if listed {
                self.versions_after(ns, schema, floor)
                    .await?
                    .last()
                    .copied()
                    .unwrap_or(floor)
                    + 1
            } else {
                floor + 1
            };
            listed = true;
            if self
                .create_manifest(ver, next, &descriptor, files, deps)
                .await?
            {
                return Ok(next);
            }
            // A concurrent writer took it: look again past it.
            floor = next;
        }
    }

    async fn get_version(
        &self,
        namespace_id: &str,
        schema_id: &str,
        version: u64,
    ) -> Result<SchemaVersion> {
        let m = self.manifest(namespace_id, schema_id, version).await?;
        let compiled = self.descriptor(&m).await?;
        Ok(SchemaVersion {
            namespace_id: m.namespace_id,
            schema_id: m.schema_id,
            version: m.version,
            compiled,
            compiler_version: m.compiler_version,
            created_at: m.created_at,
            created_by: m.created_by,
            metadata: m.metadata,
        })
    }

    async fn get_version_files(
        &self,
        namespace_id: &str,
        schema_id: &str,
        version: u64,
    ) -> Result<Vec<VersionFile>> {
        Ok(self.manifest(namespace_id, schema_id, version).await?.files)
    }

    async fn get_version_deps(
        &self,
        namespace_id: &str,
        schema_id: &str,
        version: u64,
    ) -> Result<Vec<VersionDep>> {
        Ok(self.manifest(namespace_id, schema_id, version).await?.deps)
    }

    async fn list_versions(&self, namespace_id: &str, schema_id: &str) -> Result<Vec<u64>> {
        self.require_schema(namespace_id, schema_id).await?;
        self.versions_after(namespace_id, schema_id, 0).await
    }

    async fn set_staged(
        &self,
        namespace_id: &str,
        schema_id: &str,
        version: u64,
    ) -> Result<CommitInfo> {
        let change = StageChange {
            schema_id: schema_id.to_string(),
            version: (version != 0).then_some(version),
        };
        self.stage(namespace_id, &[change], None).await
    }

    async fn stage(
        &self,
        namespace_id: &str,
        changes: &[StageChange],
        expect_seq: Option<u64>,
    ) -> Result<CommitInfo> {
        self.require_namespace(namespace_id).await?;
        if changes.is_empty() {
            return Err(Error::InvalidInput("nothing to stage".into()));
        }
        let mut seen = BTreeSet::new();
        for c in changes {
            if !seen.insert(c.schema_id.as_str()) {
                return Err(Error::InvalidInput(format!(
                    "schema {:?} is staged twice in one commit",
                    c.schema_id
                )));
            }
        }
        // Versions are immutable: checking them once, before the commit
        // loop, is as good as checking them on every retry.
        let checks: Vec<_> = changes
            .iter()
            .map(|c| self.check_stage_change(namespace_id, c))
            .collect();
        futures::stream::iter(checks)
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        let committed = self
            .commit(namespace_id, expect_seq, |state| {
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
                    p.latest = p.latest.max(c.version.unwrap_or(0));
                    m.changes.insert(c.schema_id.clone(), p);
                }
                Ok(Some(m))
            })
            .await?;
        Ok(committed.expect("staging always commits").info)
    }

    async fn promote(&self, namespace_id: &str, expect_seq: Option<u64>) -> Result<Promotion> {
        let committed = self
            .commit(namespace_id, expect_seq, |state| {
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
                            latest: p.latest,
                        },
                    );
                }
                Ok((!promoted.is_empty()).then(|| Mutation {
                    operation: Operation::Promote { promoted },
                    changes,
                    config: BTreeMap::new(),
                }))
            })
            .await?;
        Ok(match committed {
            None => Promotion::default(),
            Some(c) => {
                let Operation::Promote { promoted } = c.entry.operation else {
                    unreachable!("a promote commits a promote entry")
                };
                Promotion {
                    promoted,
                    commit: Some(c.info),
                }
            }
        })
    }

    async fn discard_staging(&self, namespace_id: &str) -> Result<Option<CommitInfo>> {
        let committed = self
            .commit(namespace_id, None, |state| {
                let changes: BTreeMap<String, Pointers> = state
                    .staged_schemas()
                    .map(|(s, p)| (s.clone(), Pointers { staged: None, ..p }))
                    .collect();
                Ok((!changes.is_empty()).then(|| Mutation {
                    operation: Operation::Discard {
                        schemas: changes.keys().cloned().collect(),
                    },
                    changes,
                    config: BTreeMap::new(),
                }))
            })
            .await?;
        Ok(committed.map(|c| c.info))
    }

    async fn set_config(&self, namespace_id: &str, key: &str, value: &str) -> Result<CommitInfo> {
        if key.is_empty() {
            return Err(Error::InvalidInput("empty setting name".into()));
        }
        let committed = self
            .commit(namespace_id, None, |_| {
                Ok(Some(Mutation {
                    operation: Operation::SetConfig {
                        key: key.to_string(),
                        value: value.to_string(),
                    },
                    changes: BTreeMap::new(),
                    config: BTreeMap::from([(key.to_string(), value.to_string())]),
                }))
            })
            .await?;
        Ok(committed.expect("setting always commits").info)
    }

    async fn get_config(&self, namespace_id: &str) -> Result<BTreeMap<String, String>> {
        Ok(self
            .namespace_state(namespace_id)
            .await?
            .snapshot
            .config
            .clone())
    }

    async fn add_claims(
        &self,
        namespace_id: &str,
        schema_id: &str,
        kind: ClaimKind,
        names: &[String],
    ) -> Result<()> {
        self.require_schema(namespace_id, schema_id).await?;
        self.check_claim_kind(kind)?;
        for name in names {
            validate_claim_name(kind, name)?;
        }
        let names: BTreeSet<&String> = names
            .iter()
            .filter(|name| !self.claim_known(namespace_id, kind, name, schema_id))
            .collect();
        let writes: Vec<_> = names
            .into_iter()
            .map(|name| {
                let key = claim_key(namespace_id, kind, name, schema_id);
                async move {
                    self.io().create_content(&key, Bytes::new()).await?;
                    let me = schema_id.to_string();
                    self.learn_claims(namespace_id, kind, name, [&me]);
                    Ok::<_, Error>(())
                }
            })
            .collect();
        futures::stream::iter(writes)
            .buffer_unordered(CLAIM_WRITE_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    fn path_claim(&self, path: &str) -> (ClaimKind, String) {
        if self.claims_dirs() {
            (ClaimKind::Dir, crate::store::dir_of(path).to_string())
        } else {
            (ClaimKind::Path, path.to_string())
        }
    }

    async fn claimants(
        &self,
        namespace_id: &str,
        kind: ClaimKind,
        name: &str,
    ) -> Result<Vec<String>> {
        self.require_namespace(namespace_id).await?;
        validate_claim_name(kind, name)?;
        let found = if kind == ClaimKind::Dir {
            // Only this directory's claims, not its subdirectories'.
            let listed = self
                .io()
                .os
                .list_with_delimiter(Some(&keys::dir_claims(namespace_id, name)))
                .await
                .map_err(Error::Storage)?;
            let mut ids: Vec<String> = listed
                .objects
                .iter()
                .filter_map(|m| m.location.filename())
                .filter_map(|f| f.strip_prefix(keys::DIR_CLAIM_MARK))
                .map(str::to_string)
                .collect();
            ids.sort();
            ids
        } else {
            let dir = object_store::path::Path::from(format!(
                "{}/{name}",
                keys::claims_dir(namespace_id, kind.as_str())
            ));
            self.list_ids(&dir, "", None).await?
        };
        self.learn_claims(namespace_id, kind, name, &found);
        Ok(found)
    }

    async fn all_claims(
        &self,
        namespace_id: &str,
    ) -> Result<BTreeMap<ClaimKind, BTreeMap<String, Vec<String>>>> {
        self.require_namespace(namespace_id).await?;
        let dir = keys::claims_root(namespace_id);
        let skip = dir.parts().count();
        let metas: Vec<object_store::ObjectMeta> = self
            .io()
            .os
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(Error::Storage)?;
        let mut claims: BTreeMap<ClaimKind, BTreeMap<String, Vec<String>>> = ClaimKind::ALL
            .into_iter()
            .map(|k| (k, BTreeMap::new()))
            .collect();
        for meta in metas {
            let parts: Vec<String> = meta
                .location
                .parts()
                .skip(skip)
                .map(|p| p.as_ref().to_string())
                .collect();
            // <kind>/<name...>/<schema>
            let Some((kind, rest)) = parts.split_first() else {
                continue;
            };
            let Some(kind) = ClaimKind::ALL.into_iter().find(|k| k.as_str() == kind) else {
                continue;
            };
            // Directory claims: <dir...>/!<schema>, the root directory being
            // empty. Others: <name...>/<schema>.
            let parsed = match rest.split_last() {
                Some((last, dir)) if kind == ClaimKind::Dir => last
                    .strip_prefix(keys::DIR_CLAIM_MARK)
                    .map(|schema| (dir.join("/"), schema.to_string())),
                Some((schema, name)) if !name.is_empty() && kind != ClaimKind::Dir => {
                    Some((name.join("/"), schema.clone()))
                }
                _ => None,
            };
            if let Some((name, schema)) = parsed {
                claims
                    .get_mut(&kind)
                    .unwrap()
                    .entry(name)
                    .or_default()
                    .push(schema);
            }
        }
        for (kind, names) in claims.iter_mut() {
            for (name, schemas) in names.iter_mut() {
                schemas.sort();
                self.learn_claims(namespace_id, *kind, name, schemas.iter());
            }
        }
        Ok(claims)
    }

    async fn load_all_current(&self) -> Result<Vec<CurrentSchema>> {
        let mut all = Vec::new();
        for ns in self.list_namespaces().await? {
            all.extend(self.load_namespace_current(&ns.id).await?);
        }
        Ok(all)
    }

    async fn load_namespace_current(&self, namespace_id: &str) -> Result<Vec<CurrentSchema>> {
        self.load_versions(namespace_id, |p| p.current).await
    }

    async fn load_namespace_proposed(&self, namespace_id: &str) -> Result<Vec<CurrentSchema>> {
        self.load_versions(namespace_id, |p| p.staged.or(p.current))
            .await
    }
}
