//! Versions: the manifest (the one atomic object of a version) and its
//! descriptor; numbers allocated by create-if-absent, never handed out twice.

use std::collections::BTreeSet;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;

use super::blobs::*;
use super::io::Created;
use super::records::*;
use super::{FETCH_CONCURRENCY, ObjStore, keys};
use crate::error::{Error, Result};
use crate::ids::{validate_namespace_id, validate_schema_id};
use crate::model::*;

/// The error for an object a manifest names that storage does not have.
pub(super) fn referenced_but_missing(key: &object_store::path::Path, m: &VersionManifest) -> Error {
    Error::Corrupt {
        key: key.to_string(),
        reason: format!(
            "missing, but {} refers to it",
            keys::version(&m.namespace_id, &m.schema_id, m.version)
        ),
    }
}

impl ObjStore {
    /// A version's manifest (cached): files, deps, descriptor key, author, time.
    pub async fn manifest(&self, ns: &str, schema: &str, version: u64) -> Result<VersionManifest> {
        validate_namespace_id(ns)?;
        validate_schema_id(schema)?;
        let key = keys::version(ns, schema, version);
        // The manifest alone proves the schema exists; the schema record is
        // read only to say which of the two is missing.
        let Some(manifest) = self.read_record::<VersionManifest>(&key).await? else {
            self.require_schema(ns, schema).await?;
            // A version the log staged cannot be missing: that is damage.
            if self.is_published(ns, schema, version).await? {
                return Err(Error::Corrupt {
                    key: key.to_string(),
                    reason: "missing, but the log stages this version".into(),
                });
            }
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

    pub(super) async fn descriptor(&self, m: &VersionManifest) -> Result<Bytes> {
        let key = keys::descriptor(&m.namespace_id, &m.descriptor.sha256);
        let what = format!(
            "descriptor of version {} of schema {:?}",
            m.version, m.schema_id
        );
        match self.verified(&key, &m.descriptor.sha256, &what).await {
            Ok(obj) => Ok(obj.bytes),
            Err(Error::NotFound(_)) => Err(referenced_but_missing(&key, m)),
            Err(e) => Err(e),
        }
    }

    /// A version's files with their sources, each verified against its
    /// hash. A blob the manifest names but storage lacks is damage
    /// (`Corrupt`, naming the blob's key), not a caller's mistake.
    pub async fn get_version_sources(
        &self,
        namespace_id: &str,
        schema_id: &str,
        version: u64,
    ) -> Result<Vec<(VersionFile, Bytes)>> {
        let m = self.manifest(namespace_id, schema_id, version).await?;
        let mut out = Vec::new();
        for f in &m.files {
            let key = keys::blob(namespace_id, &f.sha256);
            match self.get_blob(namespace_id, &f.sha256).await {
                Ok(b) => out.push((f.clone(), b.source)),
                Err(Error::NotFound(_)) => return Err(referenced_but_missing(&key, &m)),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    pub(super) async fn load_versions(
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

    pub(super) fn validate_version_input(
        &self,
        ver: &SchemaVersion,
        files: &[VersionFile],
    ) -> Result<()> {
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
    pub(super) async fn prepare_version(
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
        self.io()
            .create_collectable(&key, ver.compiled.clone())
            .await?;
        Ok(DescriptorRef {
            key: key.to_string(),
            sha256: sha,
            size: ver.compiled.len() as u64,
        })
    }

    /// Creates the manifest of `version`; `Ok(false)` when the number is taken.
    pub(super) async fn create_manifest(
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
    pub(super) async fn versions_after(
        &self,
        ns: &str,
        schema: &str,
        after: u64,
    ) -> Result<Vec<u64>> {
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

    /// Stores version `ver.version` with its files and deps, atomically.
    /// `AlreadyExists` when that number is taken.
    pub async fn put_version(
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

    /// Stores a new version under the next free number and returns it
    /// (`ver.version` is ignored). Numbers are never handed out twice.
    pub async fn create_version(
        &self,
        ver: &SchemaVersion,
        files: &[VersionFile],
        deps: &[VersionDep],
    ) -> Result<u64> {
        self.allocate_version(ver, files, deps, false).await
    }

    /// [`Self::create_version`], except that when the newest stored version
    /// is one the log has not named yet and has exactly this content (files,
    /// deps, descriptor, author, metadata), that version is returned instead
    /// of a new one: a publish run again after dying between storing and
    /// staging its version picks up where it stopped rather than leaving
    /// the first attempt's manifest behind. Only the newest is reused, and
    /// gc never removes the newest version of a schema, so a reused version
    /// cannot be collected under the publish.
    pub async fn create_or_reuse_version(
        &self,
        ver: &SchemaVersion,
        files: &[VersionFile],
        deps: &[VersionDep],
    ) -> Result<u64> {
        self.allocate_version(ver, files, deps, true).await
    }

    async fn allocate_version(
        &self,
        ver: &SchemaVersion,
        files: &[VersionFile],
        deps: &[VersionDep],
        reuse: bool,
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
        let mut reuse = reuse;
        loop {
            let next = if listed {
                let newest = self
                    .versions_after(ns, schema, floor)
                    .await?
                    .last()
                    .copied();
                if let Some(newest) = newest.filter(|_| reuse) {
                    reuse = false; // once: a version made since is someone else's
                    let m = self.manifest(ns, schema, newest).await?;
                    if m.descriptor == descriptor
                        && m.files == files
                        && m.deps == deps
                        && m.compiler_version == ver.compiler_version
                        && m.created_by == ver.created_by
                        && m.metadata == ver.metadata
                    {
                        return Ok(newest);
                    }
                }
                newest.unwrap_or(floor) + 1
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

    pub async fn get_version(
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

    pub async fn get_version_files(
        &self,
        namespace_id: &str,
        schema_id: &str,
        version: u64,
    ) -> Result<Vec<VersionFile>> {
        Ok(self.manifest(namespace_id, schema_id, version).await?.files)
    }

    pub async fn get_version_deps(
        &self,
        namespace_id: &str,
        schema_id: &str,
        version: u64,
    ) -> Result<Vec<VersionDep>> {
        Ok(self.manifest(namespace_id, schema_id, version).await?.deps)
    }

    /// Every stored version number of a schema, ascending.
    pub async fn list_versions(&self, namespace_id: &str, schema_id: &str) -> Result<Vec<u64>> {
        self.require_schema(namespace_id, schema_id).await?;
        self.versions_after(namespace_id, schema_id, 0).await
    }

    pub async fn load_all_current(&self) -> Result<Vec<CurrentSchema>> {
        let mut all = Vec::new();
        for ns in self.list_namespaces().await? {
            all.extend(self.load_namespace_current(&ns.id).await?);
        }
        Ok(all)
    }

    pub async fn load_namespace_current(&self, namespace_id: &str) -> Result<Vec<CurrentSchema>> {
        self.load_versions(namespace_id, |p| p.current).await
    }

    /// Staged versions where staged, current otherwise.
    pub async fn load_namespace_proposed(&self, namespace_id: &str) -> Result<Vec<CurrentSchema>> {
        self.load_versions(namespace_id, |p| p.staged.or(p.current))
            .await
    }
}
