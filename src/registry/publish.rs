//! Publishing: validate and normalize, compile against the proposed tree,
//! check ownership, store blobs and versions, and stage every changed
//! schema of the batch in one commit, on top of the state it was checked
//! against.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use super::compile::{COMPILER_VERSION, Compiled, Origin, Sources};
use super::hierarchy::Freshness;
use super::limits::is_well_known;
use super::normalize::normalize;
use super::view::{Reads, Tree, View, version_in};
use super::{PublishOptions, Published, Registry, SourceFile, Step, imports, ownership};
use crate::error::{Error, Result};
use crate::ids::{BUILTINS, validate_file_path, validate_namespace_id, validate_schema_id};
use crate::model::{ProtoBlob, Schema, SchemaVersion, VersionDep, VersionFile};
use crate::objstore::log::NsPointers;
use crate::objstore::log::proposed_moves;
use crate::objstore::nsset::SetFiles;
use crate::objstore::protocol::Plan as CommitPlan;
use crate::objstore::{Mutation, NsAttempt, NsState};
use crate::store::{ClaimKind, StageChange};

/// One schema of a batch publish.
#[derive(Debug, Clone)]
pub struct BatchMember {
    pub schema_id: String,
    pub files: Vec<SourceFile>,
}

/// A member after validation: normalized sources and their hashes.
pub(super) struct Prepared {
    schema_id: String,
    /// (path, normalized source, sha256), sorted by path. The text is
    /// shared by the compile's copy and the blob written, not copied: a
    /// corpus load holds its sources once.
    files: Vec<(String, Arc<str>, String)>,
    fingerprint: String,
    /// Stored again even when the files equal the proposed version (a
    /// rebase: same files, new pins).
    pub(super) repin: bool,
}

impl Prepared {
    fn version_files(&self) -> Vec<VersionFile> {
        self.files
            .iter()
            .map(|(path, text, sha)| VersionFile {
                path: path.clone(),
                sha256: sha.clone(),
                size: Some(text.len() as u64),
            })
            .collect()
    }
}

/// What [`Registry::plan`] decided.
struct Plan {
    state: Arc<NsState>,
    results: Vec<Option<Published>>,
    changed: Vec<usize>,
    view: View,
    /// The ancestors (parent chain, builtins) and the seq of each state
    /// the plan checked against.
    ancestor_seqs: Vec<(String, u64)>,
    /// The gathered sources, the compiled pool and the creation order;
    /// None when nothing changed.
    compiled: Option<(Arc<Sources>, Compiled, Vec<Vec<usize>>)>,
    /// A member stops defining a file ([`Registry::check_dropped`]).
    drops: bool,
}

/// A checked plan whose versions are stored: what to stage, and what the
/// checks read (to tell whether they still hold after a lost race).
struct Staging {
    /// The state the checks passed on (or were last re-based onto).
    state: Arc<NsState>,
    reads: Reads,
    ancestor_seqs: Vec<(String, u64)>,
    changes: Vec<StageChange>,
    results: Vec<Published>,
    /// The plan drops files: whether they are imported depends on every
    /// schema of the tree, so any schema moving since calls for a new plan.
    drops: bool,
}

/// Where a publish's plan leaves its result.
#[derive(Default)]
struct Outcome {
    /// The plan of the last attempt: checked, its versions stored.
    staging: Option<Staging>,
    /// Set when every member was unchanged: nothing to commit.
    unchanged: Option<Vec<Published>>,
}

/// A publish, planned inside the commit loop on the state the commit lands
/// on. After a lost race, a plan the winner could not have affected is
/// re-based (only the pointers are recomputed); any other is redone.
struct PublishPlan<'a> {
    registry: &'a Registry,
    namespace: &'a str,
    prepared: &'a [Prepared],
    opts: &'a PublishOptions,
    /// Versions created by an earlier attempt, reused when a later one
    /// computes exactly the same content and dependencies.
    created: HashMap<String, Created>,
    outcome: &'a mut Outcome,
    /// How fresh the ancestor states the plan resolves must be.
    fresh: Freshness,
    /// The namespace is to be created once a plan has passed its checks,
    /// before the plan's first write ([`PublishOptions::create`]).
    create: bool,
}

impl CommitPlan<NsPointers, Mutation> for PublishPlan<'_> {
    async fn plan(&mut self, attempt: NsAttempt) -> Result<Option<Mutation>> {
        let r = self.registry;
        let holds = match &self.outcome.staging {
            Some(s) => r.still_holds(self.namespace, s, &attempt).await?,
            None => false,
        };
        if holds {
            r.counters.rebases.fetch_add(1, Relaxed);
            let s = self.outcome.staging.as_mut().expect("checked above");
            s.state = attempt.state.clone();
        } else {
            self.outcome.staging = None;
            r.counters.plans.fetch_add(1, Relaxed);
            let plan = r
                .plan(
                    self.namespace,
                    attempt.state.clone(),
                    self.prepared,
                    self.opts.progress.as_ref(),
                    self.fresh,
                )
                .await?;
            if std::mem::take(&mut self.create) {
                r.create_if_absent(self.namespace, self.opts.created_by.clone())
                    .await?;
            }
            let stored = r
                .store_plan(
                    self.namespace,
                    self.prepared,
                    self.opts,
                    &mut self.created,
                    plan,
                )
                .await?;
            match stored {
                Stored::Unchanged(results) => {
                    self.outcome.unchanged = Some(results);
                    return Ok(None);
                }
                Stored::Staging(s) => self.outcome.staging = Some(s),
            }
        }
        let s = self.outcome.staging.as_ref().expect("planned above");
        Ok(Some(Mutation::stage(&attempt.state, &s.changes)))
    }
}

/// A version an attempt of a publish created.
struct Created {
    version: u64,
    fingerprint: String,
    deps: Vec<VersionDep>,
    /// Its descriptor set's files, held (slices of the compile's output)
    /// until the publish is over: its commits build the namespace sets
    /// from them ([`crate::ObjStore::hold_staging_set`]).
    _set: Arc<SetFiles>,
}

/// What [`Registry::store_plan`] did.
enum Stored {
    /// Every member equals its staged-or-current version.
    Unchanged(Vec<Published>),
    Staging(Staging),
}

/// The seq of a namespace's latest state; None when it does not exist.
async fn store_seq(store: &crate::objstore::ObjStore, ns: &str) -> Result<Option<u64>> {
    match store.namespace_state(ns).await {
        Ok(s) => Ok(Some(s.seq)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The result of [`Registry::check`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckReport {
    pub schema_id: String,
    pub current_version: Option<u64>,
    /// The files equal the staged-or-current version.
    pub no_change: bool,
    pub fingerprint: String,
    pub policy: crate::compat::Policy,
    pub compat_scope: super::CompatScope,
    /// The versions the files were checked against: current, or under
    /// scope `all` every version ever current.
    pub checked_against: Vec<u64>,
    pub violations: Vec<super::SchemaViolation>,
}

/// Writes of one publish in flight at once (blobs; versions of one wave).
const WRITE_CONCURRENCY: usize = 32;

/// Batches above this many files sweep the claims index with one LIST per
/// kind instead of one LIST per name.
const SWEEP_ABOVE: usize = 32;

/// A version's identity for people: SHA-256 over its files' paths and
/// content hashes (what `push` prints and `schema versions` shows).
pub(crate) fn fingerprint(files: &[VersionFile]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.path.as_bytes());
        h.update([0]);
        h.update(f.sha256.as_bytes());
        h.update([b'\n']);
    }
    hex::encode(h.finalize())
}

/// Refuses a publish of `members` whose estimated peak memory is over
/// `limits.max_memory` ([`super::limits::memory_estimate`]), from the input
/// alone: before anything is compiled or written. `checked`: the files are
/// also checked for compatibility (`check`, or a promote right after).
pub fn check_memory(
    limits: &super::Limits,
    members: &[(&str, &[SourceFile])],
    checked: bool,
) -> Result<()> {
    let files: usize = members.iter().map(|(_, f)| f.len()).sum();
    let what = match members {
        [(one, _)] => format!(
            "schema {one:?}: {files} file{}",
            if files == 1 { "" } else { "s" }
        ),
        _ => format!("{} schemas: {files} files", members.len()),
    };
    super::limits::check_memory(
        limits,
        &what,
        members
            .iter()
            .flat_map(|(_, f)| f.iter().map(|f| f.content.as_slice())),
        checked,
    )
}

impl Registry {
    /// Publishes one schema's files and stages the new version. Files equal
    /// to the staged-or-current version give `no_change` and write nothing.
    pub async fn publish(
        &self,
        namespace: &str,
        schema_id: &str,
        files: Vec<SourceFile>,
        opts: PublishOptions,
    ) -> Result<Published> {
        let member = BatchMember {
            schema_id: schema_id.to_string(),
            files,
        };
        Ok(self
            .publish_many(namespace, vec![member], opts)
            .await?
            .remove(0))
    }

    /// Publishes many schemas at once: compiled together (members may import
    /// each other's files), versions created in dependency order, all staged
    /// in one commit. Results are in the order of `members`.
    pub async fn publish_many(
        &self,
        namespace: &str,
        members: Vec<BatchMember>,
        opts: PublishOptions,
    ) -> Result<Vec<Published>> {
        validate_namespace_id(namespace)?;
        let prepared = self.prepare(&members, opts.force, false)?;
        // The normalized copies are all that is needed from here on.
        drop(members);
        self.publish_prepared(namespace, prepared, opts, Freshness::Recent)
            .await
    }

    /// Publishes members already validated and normalized.
    pub(super) async fn publish_prepared(
        &self,
        namespace: &str,
        prepared: Vec<Prepared>,
        opts: PublishOptions,
        fresh: Freshness,
    ) -> Result<Vec<Published>> {
        // A namespace to create is created by the plan, after its checks:
        // input that fails them leaves nothing behind.
        let create = match self.store.get_namespace(namespace).await {
            Ok(_) => false,
            Err(Error::NotFound(_)) if opts.create || namespace == BUILTINS => true,
            Err(e) => return Err(e),
        };
        let mut outcome = Outcome::default();
        let plan = PublishPlan {
            registry: self,
            namespace,
            prepared: &prepared,
            opts: &opts,
            created: HashMap::new(),
            outcome: &mut outcome,
            fresh,
            create,
        };
        self.store.commit_creating(namespace, plan).await?;
        Ok(match outcome {
            Outcome {
                staging: Some(s), ..
            } => s.results,
            Outcome {
                unchanged: Some(results),
                ..
            } => results,
            _ => unreachable!("a publish either stages or changes nothing"),
        })
    }

    /// Whether the checks of `staging` still hold on the attempt's state,
    /// so its versions can be staged without compiling or checking again.
    /// Sound by construction: the plan is a function of the versions it
    /// looked up, the claimants of the names it looked up, the namespace's
    /// settings and the builtins; if none of those moved, neither did its
    /// outcome. When in doubt (a schema moved that claims one of those
    /// names), the answer is no and the caller plans again.
    async fn still_holds(
        &self,
        namespace: &str,
        staging: &Staging,
        attempt: &NsAttempt,
    ) -> Result<bool> {
        let (from, to) = (&staging.state, &attempt.state);
        if from.snapshot.config != to.snapshot.config {
            return Ok(false);
        }
        let reads = &staging.reads;
        if reads
            .versions
            .iter()
            .any(|(schema, seen)| version_in(to, Tree::Proposed, schema) != *seen)
        {
            return Ok(false);
        }
        // Schemas whose files changed since: the entries say which.
        if attempt.previous.as_ref().map(|p| p.seq) != Some(from.seq) {
            return Ok(false); // not the state the last attempt planned on
        }
        let moved: BTreeSet<String> = proposed_moves(from, to, &attempt.landed);
        if staging.drops && !moved.is_empty() {
            return Ok(false);
        }
        if !moved.is_empty() {
            // A moved schema matters if it claims a directory or package
            // the plan asked about: it may now define one of our paths or
            // names. Claims are written before the version that needs them
            // is committed, so a LIST made now sees every claim of every
            // moved schema.
            let claimed_by_moved =
                |claimants: &[String]| claimants.iter().any(|c| moved.contains(c));
            if reads.claims.values().any(|c| claimed_by_moved(c)) {
                return Ok(false);
            }
            let store = &self.store;
            if reads.claims.len() > SWEEP_ABOVE {
                let all = store.all_claims(namespace).await?;
                let hit = reads.claims.keys().any(|(kind, name)| {
                    all.get(kind)
                        .and_then(|names| names.get(name))
                        .is_some_and(|c| claimed_by_moved(c))
                });
                if hit {
                    return Ok(false);
                }
            } else {
                let lists: Vec<_> = reads
                    .claims
                    .keys()
                    .map(|(kind, name)| store.claimants(namespace, *kind, name))
                    .collect();
                let now: Vec<Vec<String>> = futures::stream::iter(lists)
                    .buffered(16)
                    .try_collect()
                    .await?;
                if now.iter().any(|c| claimed_by_moved(c)) {
                    return Ok(false);
                }
            }
        }
        // Ancestors are other namespaces' logs: re-read like a new plan
        // would (the parent setting is in `config`, compared above).
        for (ns, seen) in &staging.ancestor_seqs {
            if store_seq(&self.store, ns).await? != Some(*seen) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Input checks and normalization: everything before the first request.
    /// `checked`: the members are also checked for compatibility (their
    /// memory estimate counts the pool they are checked against).
    pub(super) fn prepare(
        &self,
        members: &[BatchMember],
        force: bool,
        checked: bool,
    ) -> Result<Vec<Prepared>> {
        if members.is_empty() {
            return Err(Error::InvalidInput("nothing to publish".into()));
        }
        let limits = &self.limits;
        // Memory first: refused from the input alone, before any copy.
        let sizes: Vec<(&str, &[SourceFile])> = members
            .iter()
            .map(|m| (m.schema_id.as_str(), m.files.as_slice()))
            .collect();
        check_memory(limits, &sizes, checked)?;
        let mut schemas = BTreeSet::new();
        let mut paths: BTreeMap<&str, &str> = BTreeMap::new();
        let mut out = Vec::new();
        for m in members {
            validate_schema_id(&m.schema_id)?;
            if !schemas.insert(m.schema_id.as_str()) {
                return Err(Error::InvalidInput(format!(
                    "schema {:?} appears twice in one publish",
                    m.schema_id
                )));
            }
            if m.files.is_empty() {
                return Err(Error::InvalidInput(format!(
                    "schema {:?} has no .proto files",
                    m.schema_id
                )));
            }
            if m.files.len() > limits.max_files {
                return Err(Error::InvalidInput(format!(
                    "schema {:?} has {} files; the limit is {}",
                    m.schema_id,
                    m.files.len(),
                    limits.max_files
                )));
            }
            let total: usize = m.files.iter().map(|f| f.content.len()).sum();
            if total > limits.max_publish_bytes {
                return Err(Error::InvalidInput(format!(
                    "schema {:?} is {total} bytes; the limit per publish is {} bytes",
                    m.schema_id, limits.max_publish_bytes
                )));
            }
            let mut files = Vec::new();
            for f in &m.files {
                validate_file_path(&f.path)?;
                if f.content.len() > limits.max_file_bytes {
                    return Err(Error::InvalidInput(format!(
                        "{}: {} bytes; the limit per file is {} bytes",
                        f.path,
                        f.content.len(),
                        limits.max_file_bytes
                    )));
                }
                if is_well_known(&f.path) && !force {
                    return Err(Error::InvalidInput(format!(
                        "{} is a well-known type path (google/protobuf/...); publishing it would shadow the standard file (use --force to do it anyway)",
                        f.path
                    )));
                }
                if let Some(other) = paths.insert(&f.path, &m.schema_id) {
                    return Err(Error::InvalidInput(format!(
                        "file {} is given twice (schemas {other:?} and {:?})",
                        f.path, m.schema_id
                    )));
                }
                let text = normalize(&f.path, &f.content)?;
                let sha = hex::encode(Sha256::digest(text.as_bytes()));
                files.push((f.path.clone(), Arc::from(text), sha));
            }
            files.sort();
            let mut p = Prepared {
                schema_id: m.schema_id.clone(),
                files,
                fingerprint: String::new(),
                repin: false,
            };
            p.fingerprint = fingerprint(&p.version_files());
            out.push(p);
        }
        Ok(out)
    }

    /// Everything a publish decides before writing: no-change, ownership,
    /// the compile and the order versions must be created in.
    async fn plan(
        &self,
        namespace: &str,
        state: Arc<NsState>,
        prepared: &[Prepared],
        progress: Option<&super::Progress>,
        fresh: Freshness,
    ) -> Result<Plan> {
        let store = &self.store;
        if super::delete::is_deleted(&state.snapshot.config) {
            return Err(Error::InvalidInput(format!(
                "namespace {namespace:?} is deleted: restore it with `protoshelf namespace undelete {namespace}`"
            )));
        }
        if let Some(p) = prepared
            .iter()
            .find(|p| state.pointers(&p.schema_id).deleted)
        {
            return Err(super::deleted_schema(namespace, &p.schema_id));
        }
        let view_tree = View::new(store.clone(), namespace, state.clone(), Tree::Proposed);

        // No change: files equal to the staged-or-current version.
        let mut results: Vec<Option<Published>> = Vec::new();
        // The files each member's staged-or-current version defines (a
        // rebase's are its new version's: not read).
        let mut previous: Vec<Vec<String>> = Vec::new();
        for p in prepared {
            let files = match view_tree.version_of(&p.schema_id) {
                Some(v) if !p.repin => Some((
                    v,
                    store.get_version_files(namespace, &p.schema_id, v).await?,
                )),
                _ => None,
            };
            let same = match &files {
                Some((v, files)) if *files == p.version_files() => Some(*v),
                _ => None,
            };
            previous.push(
                files
                    .into_iter()
                    .flat_map(|(_, f)| f.into_iter().map(|f| f.path))
                    .collect(),
            );
            results.push(same.map(|version| Published {
                schema_id: p.schema_id.clone(),
                version,
                fingerprint: p.fingerprint.clone(),
                no_change: true,
            }));
        }
        let changed: Vec<usize> = (0..prepared.len())
            .filter(|&i| results[i].is_none())
            .collect();
        if changed.is_empty() {
            return Ok(Plan {
                state,
                results,
                changed,
                view: view_tree,
                ancestor_seqs: Vec::new(),
                compiled: None,
                drops: false,
            });
        }

        let file_count: usize = changed.iter().map(|&i| prepared[i].files.len()).sum();
        let mut view = view_tree.excluding(changed.iter().map(|&i| prepared[i].schema_id.clone()));
        let drops = self
            .check_dropped(&view, prepared, &changed, &previous)
            .await?;
        let mut ancestors = self.ancestor_views_of(namespace, &state, fresh).await?;
        if file_count > SWEEP_ABOVE {
            view = view.sweep().await?;
        }
        let compiled = match self
            .compile_against(&view, &ancestors.views, prepared, &changed, progress)
            .await
        {
            // A miss against an unconfirmed ancestor state (an import not
            // found, a name taken by a version since replaced) may be
            // staleness: confirmed states decide before the publish fails.
            Err(e) if e.is_user_error() && ancestors.unconfirmed => {
                ancestors = self
                    .ancestor_views_of(namespace, &state, Freshness::Confirmed)
                    .await?;
                self.compile_against(&view, &ancestors.views, prepared, &changed, progress)
                    .await?
            }
            c => c?,
        };
        let ancestor_seqs = ancestors
            .views
            .iter()
            .map(|a| (a.namespace.clone(), a.state.seq))
            .collect();
        Ok(Plan {
            state,
            results,
            changed,
            view,
            ancestor_seqs,
            compiled: Some(compiled),
            drops,
        })
    }

    /// Refuses a plan whose changed members stop defining a file that
    /// another schema's version in the proposed tree imports
    /// ([`imports::importers_of`]); the batch's own new versions count, so
    /// a file may move along with its importers. Returns whether any member
    /// drops a file (then the outcome depends on every schema of the tree).
    async fn check_dropped(
        &self,
        view: &View,
        prepared: &[Prepared],
        changed: &[usize],
        previous: &[Vec<String>],
    ) -> Result<bool> {
        let defined: BTreeSet<&str> = prepared
            .iter()
            .flat_map(|p| p.files.iter().map(|(path, ..)| path.as_str()))
            .collect();
        let dropped: BTreeMap<String, String> = changed
            .iter()
            .flat_map(|&i| previous[i].iter().map(move |path| (path, i)))
            .filter(|(path, _)| !defined.contains(path.as_str()))
            .map(|(path, i)| (path.clone(), prepared[i].schema_id.clone()))
            .collect();
        if dropped.is_empty() {
            return Ok(false);
        }
        let changing: BTreeSet<String> = changed
            .iter()
            .map(|&i| prepared[i].schema_id.clone())
            .collect();
        let replaced: BTreeSet<String> = changed
            .iter()
            .flat_map(|&i| previous[i].iter().cloned())
            .chain(defined.iter().map(|p| p.to_string()))
            .collect();
        let broken = imports::importers_of(view, &dropped, &changing, &replaced).await?;
        if broken.is_empty() {
            Ok(true)
        } else {
            Err(imports::refused("publish", &broken))
        }
    }

    /// The ownership checks and the compile of a plan's changed members
    /// against the namespace's `view` and its `ancestors`.
    async fn compile_against(
        &self,
        view: &View,
        ancestors: &[Arc<View>],
        prepared: &[Prepared],
        changed: &[usize],
        progress: Option<&super::Progress>,
    ) -> Result<(Arc<Sources>, Compiled, Vec<Vec<usize>>)> {
        let ours: Vec<(String, String)> = changed
            .iter()
            .flat_map(|&i| {
                prepared[i]
                    .files
                    .iter()
                    .map(move |(path, ..)| (prepared[i].schema_id.clone(), path.clone()))
            })
            .collect();
        ownership::check_paths(view, ancestors, &ours).await?;

        let own: Vec<(usize, String, Arc<str>)> = changed
            .iter()
            .flat_map(|&i| {
                prepared[i]
                    .files
                    .iter()
                    .map(move |(path, text, _)| (i, path.clone(), Arc::clone(text)))
            })
            .collect();
        let roots: Vec<String> = own.iter().map(|(_, p, _)| p.clone()).collect();
        let mut sources = Sources::new(own)?;
        sources.gather(view, ancestors).await?;
        let members: Vec<&str> = prepared.iter().map(|p| p.schema_id.as_str()).collect();
        let pool = sources
            .compile(roots, &members, self.limits.compile_timeout, progress)
            .await?;
        let sources = Arc::new(sources);
        ownership::check_symbols(view, ancestors, &pool, &sources, &ours).await?;
        // Member-level dependencies, to create versions dependencies first.
        let order = dependency_order(changed, prepared, &sources, &pool)?;
        Ok((sources, pool, order))
    }

    /// Compiles `files` as the next version of `schema` would be, and
    /// reports its compatibility with the current version under the
    /// namespace's policy. Writes nothing.
    pub async fn check(
        &self,
        namespace: &str,
        schema: &str,
        files: Vec<SourceFile>,
        force: bool,
    ) -> Result<CheckReport> {
        validate_namespace_id(namespace)?;
        let member = BatchMember {
            schema_id: schema.to_string(),
            files,
        };
        let prepared = self.prepare(&[member], force, true)?;
        self.check_prepared(namespace, schema, &prepared).await
    }

    /// [`Registry::check`] of a member already validated and normalized.
    pub(super) async fn check_prepared(
        &self,
        namespace: &str,
        schema: &str,
        prepared: &[Prepared],
    ) -> Result<CheckReport> {
        let state = self.store.namespace_state(namespace).await?;
        // A check reports on the ancestors as they are (confirmed).
        let plan = self
            .plan(namespace, state, prepared, None, Freshness::Confirmed)
            .await?;
        let current = plan.state.pointers(schema).current;
        let mut report = CheckReport {
            schema_id: schema.to_string(),
            current_version: current,
            no_change: plan.changed.is_empty(),
            fingerprint: prepared[0].fingerprint.clone(),
            policy: super::policy_of(&plan.state.snapshot.config)?,
            compat_scope: super::scope_of(&plan.state.snapshot.config)?,
            checked_against: Vec::new(),
            violations: Vec::new(),
        };
        let Some((_, pool, _)) = &plan.compiled else {
            // The files are a stored version (staged, else current): check
            // that version as promote would (nothing, for current).
            let p = plan.state.pointers(schema);
            if let Some(v) = p.staged {
                report.checked_against =
                    self.promote_checks(namespace, &plan.state, schema).await?;
                let checked = &mut super::promote::Checked::new();
                for &old in &report.checked_against {
                    report.violations.extend(
                        self.violations(namespace, schema, old, v, report.policy, checked)
                            .await?,
                    );
                }
            }
            return Ok(report);
        };
        report.checked_against = self
            .earlier_versions(namespace, &plan.state, schema, None)
            .await?;
        let roots: Vec<String> = prepared[0].files.iter().map(|(p, ..)| p.clone()).collect();
        let new = super::promote::Checkable::new(
            "the compiled files",
            pool.encode_set(&pool.closure(&roots)),
        )?;
        for &old in &report.checked_against {
            report.violations.extend(
                self.violations_against(namespace, schema, old, &new, report.policy)
                    .await?,
            );
        }
        Ok(report)
    }

    /// Stores what a plan needs (blobs, schema records, claims, versions)
    /// and says what to stage.
    async fn store_plan(
        &self,
        namespace: &str,
        prepared: &[Prepared],
        opts: &PublishOptions,
        created: &mut HashMap<String, Created>,
        plan: Plan,
    ) -> Result<Stored> {
        let store = &self.store;
        let Plan {
            state,
            mut results,
            changed,
            view,
            ancestor_seqs,
            compiled,
            drops,
        } = plan;
        let Some((sources, pool, order)) = compiled else {
            return Ok(Stored::Unchanged(
                results.into_iter().map(Option::unwrap).collect(),
            ));
        };

        // Every key this plan writes must fit every backend: checked before
        // the first write, so a publish never stops half-way on one.
        for &i in &changed {
            let p = &prepared[i];
            let paths: Vec<&str> = p.files.iter().map(|(path, ..)| path.as_str()).collect();
            let packages: Vec<String> = paths
                .iter()
                .filter_map(|path| pool.get(path))
                .map(|f| f.package.clone())
                .collect();
            store.check_key_lengths(
                namespace,
                &p.schema_id,
                paths.iter().copied(),
                packages.iter().map(String::as_str),
            )?;
        }
        // Blobs are independent: write them concurrently.
        let blobs: Vec<ProtoBlob> = changed
            .iter()
            .flat_map(|&i| &prepared[i].files)
            .map(|(_, text, sha)| ProtoBlob {
                namespace_id: namespace.to_string(),
                sha256: sha.clone(),
                source: Bytes::from_owner(SharedText(Arc::clone(text))),
                created_at: None,
            })
            .collect();
        // (Futures collected first: see ownership::check_paths.)
        let writes: Vec<_> = blobs.iter().map(|b| store.put_blob(b)).collect();
        futures::stream::iter(writes)
            .buffer_unordered(WRITE_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        drop(blobs);
        // Versions wave by wave: a member's version names the versions of
        // the members it imports, made in an earlier wave.
        let mut versions: HashMap<usize, u64> = HashMap::new();
        if let Some(progress) = &opts.progress {
            (progress.0)(Step::Storing {
                done: 0,
                total: changed.len(),
            });
        }
        for wave in &order {
            let makes: Vec<_> = wave
                .iter()
                .map(|&i| {
                    let (versions, created) = (&versions, &*created);
                    let (sources, pool, view) = (&sources, &pool, &view);
                    async move {
                        let p = &prepared[i];
                        let roots: Vec<String> =
                            p.files.iter().map(|(path, ..)| path.clone()).collect();
                        let files = pool.closure(&roots);
                        let deps = version_deps(namespace, i, prepared, sources, versions, &files);
                        if let Some(c) = created.get(&p.schema_id)
                            && c.fingerprint == p.fingerprint
                            && c.deps == deps
                        {
                            return Ok::<_, Error>((i, c.version, deps, None));
                        }
                        let previous = match view.version_of(&p.schema_id) {
                            Some(v) => {
                                Some(store.get_version_files(namespace, &p.schema_id, v).await?)
                            }
                            None => None,
                        };
                        let compiled = pool.encode_set(&files);
                        let set = Arc::new(SetFiles::from_files(files.iter().filter_map(|n| {
                            let f = pool.get(n)?;
                            Some((n.clone(), f.encoded.clone(), f.dependencies.clone()))
                        })));
                        // Files without a package claim the root package ("").
                        let packages: BTreeSet<String> = roots
                            .iter()
                            .filter_map(|f| pool.get(f).map(|f| f.package.clone()))
                            .collect();
                        let v = self
                            .store_version(
                                namespace,
                                p,
                                (packages, compiled),
                                &deps,
                                opts,
                                previous,
                            )
                            .await?;
                        store.hold_staging_set(namespace, &p.schema_id, v, &set);
                        Ok((i, v, deps, Some(set)))
                    }
                })
                .collect();
            // (member, version, its deps, its set's files when made now)
            type Made = (usize, u64, Vec<VersionDep>, Option<Arc<SetFiles>>);
            let made: Vec<Made> = futures::stream::iter(makes)
                .buffer_unordered(WRITE_CONCURRENCY)
                .try_collect()
                .await?;
            for (i, v, deps, new) in made {
                if let Some(set) = new {
                    let p = &prepared[i];
                    created.insert(
                        p.schema_id.clone(),
                        Created {
                            version: v,
                            fingerprint: p.fingerprint.clone(),
                            deps,
                            _set: set,
                        },
                    );
                }
                versions.insert(i, v);
            }
            if let Some(progress) = &opts.progress {
                (progress.0)(Step::Storing {
                    done: versions.len(),
                    total: changed.len(),
                });
            }
        }

        let changes: Vec<StageChange> = changed
            .iter()
            .map(|&i| StageChange {
                schema_id: prepared[i].schema_id.clone(),
                version: Some(versions[&i]),
            })
            .collect();
        for &i in &changed {
            results[i] = Some(Published {
                schema_id: prepared[i].schema_id.clone(),
                version: versions[&i],
                fingerprint: prepared[i].fingerprint.clone(),
                no_change: false,
            });
        }
        Ok(Stored::Staging(Staging {
            state,
            reads: view.reads(),
            ancestor_seqs,
            changes,
            results: results.into_iter().map(Option::unwrap).collect(),
            drops,
        }))
    }

    /// Creates the schema if needed, the version, and its claims.
    async fn store_version(
        &self,
        namespace: &str,
        p: &Prepared,
        // The packages of its files, and its self-contained set.
        (packages, compiled): (BTreeSet<String>, Bytes),
        deps: &[VersionDep],
        opts: &PublishOptions,
        previous: Option<Vec<VersionFile>>,
    ) -> Result<u64> {
        let store = &self.store;
        // A schema with a staged or current version exists already.
        let schema = Schema {
            namespace_id: namespace.to_string(),
            schema_id: p.schema_id.clone(),
            current_version: None,
            staged_version: None,
            created_at: Utc::now(),
            metadata: Default::default(),
            deleted: false,
        };
        if previous.is_none() {
            match store.create_schema(&schema).await {
                Ok(()) | Err(Error::AlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let ver = SchemaVersion {
            namespace_id: namespace.to_string(),
            schema_id: p.schema_id.clone(),
            version: 0,
            compiled,
            compiler_version: COMPILER_VERSION.to_string(),
            created_at: Utc::now(),
            created_by: opts
                .created_by
                .clone()
                .unwrap_or_else(|| default_author(store)),
            metadata: opts.metadata.clone(),
        };
        let paths: Vec<String> = p.files.iter().map(|(path, ..)| path.clone()).collect();
        // Claims first: a version is findable once its number exists. What
        // the previous version's files claimed is claimed already.
        let (kind, _) = store.path_claim(&paths[0]);
        let claimed: BTreeSet<String> = previous
            .iter()
            .flatten()
            .map(|f| store.path_claim(&f.path).1)
            .collect();
        let new_claims: BTreeSet<String> = paths
            .iter()
            .map(|path| store.path_claim(path).1)
            .filter(|name| !claimed.contains(name))
            .collect();
        store
            .add_claims(
                namespace,
                &p.schema_id,
                kind,
                &new_claims.into_iter().collect::<Vec<_>>(),
            )
            .await?;
        store
            .add_claims(
                namespace,
                &p.schema_id,
                ClaimKind::Package,
                &packages.into_iter().collect::<Vec<_>>(),
            )
            .await?;
        store
            .create_or_reuse_version(&ver, &p.version_files(), deps)
            .await
    }
}

/// What member `i`'s version was compiled against: for every file of its
/// closure from another member, the namespace or an ancestor, that schema's
/// version (members' from `versions`, made in earlier waves).
fn version_deps(
    namespace: &str,
    i: usize,
    prepared: &[Prepared],
    sources: &Sources,
    versions: &HashMap<usize, u64>,
    files: &[String],
) -> Vec<VersionDep> {
    let dep = |path: &str, ns: &str, schema: &str, version: u64| VersionDep {
        path: path.to_string(),
        namespace_id: ns.to_string(),
        schema_id: schema.to_string(),
        version,
    };
    files
        .iter()
        .filter_map(|f| match sources.files.get(f).map(|(_, o)| o) {
            Some(Origin::Own(j)) if *j != i => {
                Some(dep(f, namespace, &prepared[*j].schema_id, versions[j]))
            }
            Some(Origin::Namespace(o)) => Some(dep(f, namespace, &o.schema_id, o.version)),
            Some(Origin::Ancestor(ns, o)) => Some(dep(f, ns, &o.schema_id, o.version)),
            _ => None,
        })
        .collect()
}

/// A version's author when none is given: the handle's author, else
/// `$USER@host`.
/// A normalized source as a blob's bytes, without a copy.
struct SharedText(Arc<str>);

impl AsRef<[u8]> for SharedText {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

fn default_author(store: &crate::ObjStore) -> String {
    store
        .author()
        .unwrap_or_else(crate::objstore::default_author)
}

/// Orders changed members in waves: every member comes in a wave after the
/// members whose files it imports, and a wave's members are independent
/// (levels of a topological sort, linear in the batch and its imports).
/// Schemas importing each other's files are refused: their versions could
/// not name each other.
fn dependency_order(
    changed: &[usize],
    prepared: &[Prepared],
    sources: &Sources,
    pool: &Compiled,
) -> Result<Vec<Vec<usize>>> {
    let mut needs: BTreeMap<usize, BTreeSet<usize>> =
        changed.iter().map(|&i| (i, BTreeSet::new())).collect();
    for &i in changed {
        for (path, ..) in &prepared[i].files {
            let Some(file) = pool.get(path) else {
                continue;
            };
            for dep in &file.dependencies {
                if let Some((_, Origin::Own(j))) = sources.files.get(dep)
                    && *j != i
                {
                    needs.get_mut(&i).unwrap().insert(*j);
                }
            }
        }
    }
    let mut waiting: HashMap<usize, usize> = needs.iter().map(|(i, d)| (*i, d.len())).collect();
    let mut needed_by: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, deps) in &needs {
        for d in deps {
            needed_by.entry(*d).or_default().push(*i);
        }
    }
    let mut order: Vec<Vec<usize>> = Vec::new();
    let mut done = BTreeSet::new();
    let mut ready: Vec<usize> = needs
        .iter()
        .filter(|(_, d)| d.is_empty())
        .map(|(i, _)| *i)
        .collect();
    while !ready.is_empty() {
        let mut next = Vec::new();
        for i in &ready {
            for j in needed_by.get(i).into_iter().flatten() {
                let w = waiting.get_mut(j).unwrap();
                *w -= 1;
                if *w == 0 {
                    next.push(*j);
                }
            }
        }
        done.extend(ready.iter().copied());
        next.sort_unstable();
        order.push(std::mem::replace(&mut ready, next));
    }
    if done.len() < changed.len() {
        // Every member left waits on another one left: walking those
        // edges must come back to a member already seen, and the walk
        // from there is the cycle to report (not every waiting member).
        let mut walk: Vec<usize> = vec![
            *needs
                .keys()
                .find(|i| !done.contains(*i))
                .expect("members left"),
        ];
        let mut on_walk: HashMap<usize, usize> = HashMap::from([(walk[0], 0)]);
        let start = loop {
            let last = *walk.last().unwrap();
            let next = *needs[&last]
                .iter()
                .find(|d| !done.contains(*d))
                .expect("waits on someone");
            if let Some(&at) = on_walk.get(&next) {
                break at;
            }
            on_walk.insert(next, walk.len());
            walk.push(next);
        };
        let stuck: Vec<&str> = walk[start..]
            .iter()
            .map(|&i| prepared[i].schema_id.as_str())
            .collect();
        return Err(Error::InvalidInput(format!(
            "schemas {stuck:?} import each other's files in a cycle; put those files in one schema"
        )));
    }
    Ok(order)
}
