//! A namespace's files as of one state: which schema's version defines an
//! import path, found lazily through the claims index (one LIST per
//! directory, or one sweep for large batches), never by reading every
//! schema.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};

use crate::error::Result;
use crate::model::{VersionDep, VersionFile};
use crate::objstore::log::NsPointers;
use crate::objstore::{NsState, ObjStore};
use crate::store::ClaimKind;

/// Claimants whose manifests are fetched at once when looking for the one
/// that defines a path.
const SCAN_CONCURRENCY: usize = 16;

/// What a view keeps of a version's manifest: its files, also by path.
/// Not its deps: a deep chain's manifests record Θ(n²) of them in total.
struct Version {
    files: HashMap<String, VersionFile>,
    listed: Vec<VersionFile>,
}

/// Which pointer a view follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    /// Staged where staged, current otherwise (what a publish compiles against).
    Proposed,
    Current,
}

/// Where a file of a view comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub schema_id: String,
    pub version: u64,
    pub sha256: String,
}

/// What a view was asked about its state: enough to tell whether a commit
/// that landed since then could change any answer it gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    /// Schemas whose version the view looked up, with the version it saw.
    pub versions: BTreeMap<String, Option<u64>>,
    /// Claim names the view looked up, with the claimants it found.
    pub claims: BTreeMap<(ClaimKind, String), Vec<String>>,
}

pub struct View {
    pub store: ObjStore,
    pub namespace: String,
    pub state: Arc<NsState>,
    pub tree: Tree,
    /// No schema has a version in this tree: every lookup answers nothing
    /// whatever is claimed (claimants are filtered by version), so claims
    /// are never read (a new or empty namespace, or one a publish creates
    /// once its checks pass: it has no record yet to read them by).
    versionless: bool,
    /// Preloaded claims (name → claimants) per kind, when swept at once.
    swept: HashMap<ClaimKind, BTreeMap<String, Vec<String>>>,
    /// Schemas whose files are being replaced by the caller: ignored here.
    excluded: HashSet<String>,
    lookups: Mutex<HashMap<(ClaimKind, String), Vec<String>>>,
    reads: Mutex<Reads>,
    /// Manifests read through this view, decoded once.
    versions: Mutex<HashMap<(String, u64), Arc<Version>>>,
}

/// The version of `schema` a view of `tree` sees in `state`.
pub fn version_in(state: &NsPointers, tree: Tree, schema: &str) -> Option<u64> {
    match tree {
        Tree::Proposed => state.proposed(schema),
        Tree::Current => state.pointers(schema).current,
    }
}

impl View {
    pub fn new(store: ObjStore, namespace: &str, state: Arc<NsState>, tree: Tree) -> Self {
        let versionless = !state
            .snapshot
            .schemas
            .keys()
            .any(|s| version_in(&state, tree, s).is_some());
        View {
            store,
            namespace: namespace.to_string(),
            state,
            tree,
            versionless,
            swept: HashMap::new(),
            excluded: HashSet::new(),
            lookups: Mutex::default(),
            reads: Mutex::default(),
            versions: Mutex::default(),
        }
    }

    /// Ignores these schemas (the ones a batch is replacing).
    pub fn excluding(mut self, schemas: impl IntoIterator<Item = String>) -> Self {
        self.excluded.extend(schemas);
        self
    }

    /// Loads every claim of both kinds with one LIST sweep each: cheaper
    /// than one LIST per name when a batch asks about many names.
    pub async fn sweep(mut self) -> Result<Self> {
        if self.versionless {
            return Ok(self);
        }
        self.swept = self
            .store
            // The view holds a state of the namespace: it exists.
            .all_claims_of_known(&self.namespace)
            .await?
            .into_iter()
            .collect();
        Ok(self)
    }

    /// The version of `schema` this view sees.
    pub fn version_of(&self, schema: &str) -> Option<u64> {
        let v = version_in(&self.state, self.tree, schema);
        let mut reads = self.reads.lock().unwrap();
        reads.versions.insert(schema.to_string(), v);
        v
    }

    /// Everything this view was asked so far.
    pub fn reads(&self) -> Reads {
        self.reads.lock().unwrap().clone()
    }

    async fn claimants(&self, kind: ClaimKind, name: &str) -> Result<Vec<String>> {
        let found = self.lookup_claimants(kind, name).await?;
        let mut reads = self.reads.lock().unwrap();
        reads.claims.insert((kind, name.to_string()), found.clone());
        Ok(found)
    }

    async fn lookup_claimants(&self, kind: ClaimKind, name: &str) -> Result<Vec<String>> {
        if self.versionless {
            return Ok(Vec::new());
        }
        if let Some(all) = self.swept.get(&kind) {
            return Ok(all.get(name).cloned().unwrap_or_default());
        }
        let key = (kind, name.to_string());
        if let Some(hit) = self.lookups.lock().unwrap().get(&key) {
            return Ok(hit.clone());
        }
        let found = self.store.claimants(&self.namespace, kind, name).await?;
        self.lookups.lock().unwrap().insert(key, found.clone());
        Ok(found)
    }

    /// A version's files, decoded once per view (a manifest of a deep chain
    /// lists thousands of deps: decoding it per lookup was cubic).
    async fn version(&self, schema: &str, version: u64) -> Result<Arc<Version>> {
        let key = (schema.to_string(), version);
        if let Some(hit) = self.versions.lock().unwrap().get(&key) {
            return Ok(hit.clone());
        }
        let m = self
            .store
            .manifest(&self.namespace, schema, version)
            .await?;
        let v = Arc::new(Version {
            files: m
                .files
                .iter()
                .map(|f| (f.path.clone(), f.clone()))
                .collect(),
            listed: m.files,
        });
        self.versions.lock().unwrap().insert(key, v.clone());
        Ok(v)
    }

    /// The files of a schema's version in this view (cached manifests).
    pub async fn files(&self, schema: &str, version: u64) -> Result<Vec<VersionFile>> {
        Ok(self.version(schema, version).await?.listed.clone())
    }

    /// The dependencies a schema's version recorded.
    pub async fn deps(&self, schema: &str, version: u64) -> Result<Vec<VersionDep>> {
        self.store
            .get_version_deps(&self.namespace, schema, version)
            .await
    }

    /// Which schema of this view defines `path`, if any: every claimant is
    /// listed, so "none" is an answer (ownership checks need that).
    pub async fn owner_of_path(&self, path: &str) -> Result<Option<Owner>> {
        let (kind, name) = self.store.path_claim(path);
        let claimants = self.claimants(kind, &name).await?;
        self.first_defining(path, claimants).await
    }

    /// The schema that defines the imported `path`. A claimant this handle
    /// already knows of (claims are never removed) is tried first, without
    /// a LIST: if its version in this view defines the path, it is the
    /// owner, since a path has one owner in a proposed tree. Otherwise
    /// every claimant is listed.
    pub async fn owner_of_import(&self, path: &str) -> Result<Option<Owner>> {
        let (kind, name) = self.store.path_claim(path);
        let known = self.store.known_claimants(&self.namespace, kind, &name);
        if let Some(owner) = self.first_defining(path, known).await? {
            return Ok(Some(owner));
        }
        self.owner_of_path(path).await
    }

    /// `schema`, if its version in this view defines `path` (a schema a
    /// recorded dependency named): then it is the owner, as a path has one
    /// owner in a proposed tree.
    pub async fn owner_by_hint(&self, path: &str, schema: &str) -> Result<Option<Owner>> {
        self.first_defining(path, vec![schema.to_string()]).await
    }

    /// The first of `schemas` whose version in this view defines `path`.
    /// Manifests are fetched a few at a time, in order: a directory claimed
    /// by a thousand schemas costs tens of round trips, not a thousand.
    async fn first_defining(&self, path: &str, schemas: Vec<String>) -> Result<Option<Owner>> {
        let candidates: Vec<(String, u64)> = schemas
            .into_iter()
            .filter(|s| !self.excluded.contains(s))
            .filter_map(|s| self.version_of(&s).map(|v| (s, v)))
            .collect();
        let mut found = futures::stream::iter(candidates)
            .map(|(schema, version)| async move {
                let v = self.version(&schema, version).await?;
                Ok::<_, crate::Error>(v.files.get(path).map(|f| Owner {
                    schema_id: schema,
                    version,
                    sha256: f.sha256.clone(),
                }))
            })
            .buffered(SCAN_CONCURRENCY)
            .try_filter_map(|o| async move { Ok(o) })
            .boxed();
        found.try_next().await
    }

    /// Schemas of this view (other than excluded ones) that may define
    /// files in `package`, with the version this view sees.
    pub async fn package_claimants(&self, package: &str) -> Result<Vec<(String, u64)>> {
        Ok(self
            .claimants(ClaimKind::Package, package)
            .await?
            .into_iter()
            .filter(|s| !self.excluded.contains(s))
            .filter_map(|s| self.version_of(&s).map(|v| (s, v)))
            .collect())
    }

    /// The source of a file of this view.
    pub async fn source(&self, owner: &Owner) -> Result<String> {
        let blob = self.store.get_blob(&self.namespace, &owner.sha256).await?;
        String::from_utf8(blob.source.to_vec()).map_err(|_| crate::Error::Corrupt {
            key: format!("ns/{}/blobs/{}", self.namespace, owner.sha256),
            reason: "not UTF-8".into(),
        })
    }
}
