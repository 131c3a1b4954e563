//! `gc`: deletes what nothing references and is older than a grace period.
//!
//! **Referenced** means, per namespace:
//! - a version (manifest) is kept when its log ever staged it or made it
//!   current (any entry, not only the latest state: history/ and rollback
//!   need old versions), when it is the newest version of its schema (its
//!   number must never be handed out again, and a rerun publish may reuse
//!   it), when it is younger than the grace period (a slow publish may be
//!   about to stage it), or when a kept version names it as a dependency;
//! - a blob or a descriptor is kept when a kept manifest names it, or when
//!   it is younger than the grace period (a publish writes them before the
//!   manifest naming them);
//! - a namespace set is kept when a log entry names it that is the newest
//!   entry recording sets or was superseded less than the grace period ago
//!   (the next entry recording sets is younger than it), or when the set is
//!   younger than the grace period (a commit writes its sets before its
//!   entry);
//! - a tree index is kept when it is the newest, is younger than the grace
//!   period, or was superseded less than the grace period ago (no index of
//!   a later commit is older than it); a pack is kept when a kept index
//!   names it or it is younger than the grace period (a writer writes
//!   packs before their index).
//!
//! "Superseded less than the grace period ago" is what makes sets and
//! packs safe: a reader or writer that read an entry or index as the
//! newest uses its sets or packs within a grace period (a writer reuses
//! the packs of the newest index it read; a commit builds on its state's
//! sets), and each was the newest at most that long ago. Longer-lived
//! readers cope with what is gone: the mount reads a missing pack's files
//! from their blobs (kept with their versions), and builds a missing set
//! (an old commit's, in `history/`) from the tree's versions.
//!
//! Besides those, gc collects only probe objects (`_probe/...`) older than
//! the grace period. It never deletes records, claims, log entries, the
//! hint, the marker, set markers, or any key it does not recognise, and it
//! skips a namespace whose log, kept manifests or kept tree indexes it
//! cannot read in full.
//!
//! Safety with concurrent writers rests on the grace period covering the
//! time between a publish's first write and its commit, and on three rules:
//! a writer whose create of a blob, descriptor, set or pack finds one
//! older than `io::REFRESH_AFTER` rewrites it (a fresh age; the packs it
//! reuses from the newest index are covered above); gc re-reads an
//! object's age right before deleting it; and gc re-reads the log's new
//! commits before deleting manifests and sets. Manifests go first, then
//! what only they referred to, and indexes before the packs only they
//! named, so an interrupted gc never leaves a manifest without its objects
//! or an index without its packs.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::Serialize;

use super::inventory::{Inventory, ObjectKind};
use super::records::*;
use super::{FETCH_CONCURRENCY, ObjStore, keys};
use crate::error::{Error, Result};

/// The shortest grace period the CLI accepts: well above
/// `io::KNOWN_FOR` and `io::REFRESH_AFTER` (10 minutes), and above any
/// publish's duration.
pub const MIN_GRACE: TimeDelta = TimeDelta::hours(1);

/// The default grace period.
pub const DEFAULT_GRACE: TimeDelta = TimeDelta::days(7);

#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    /// Only objects older than this are collected.
    pub grace: TimeDelta,
    /// Report, delete nothing.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: DEFAULT_GRACE,
            dry_run: false,
        }
    }
}

/// What gc collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Collectable {
    /// A manifest no log entry names.
    UnstagedVersion,
    Blob,
    Descriptor,
    /// A namespace set (format 3) no recent log entry names.
    NamespaceSet,
    /// A tree index superseded longer than the grace period ago.
    TreeIndex,
    /// A pack no kept tree index names.
    Pack,
    Probe,
}

/// One object gc deleted (or would delete).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Collected {
    pub key: String,
    pub kind: Collectable,
    pub bytes: u64,
    pub last_modified: DateTime<Utc>,
}

/// A namespace gc left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub namespace: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub grace_seconds: i64,
    /// Deleted, or to be deleted on a dry run.
    pub collected: Vec<Collected>,
    pub bytes: u64,
    /// Unreferenced, but younger than the grace period (kept).
    pub young: u64,
    /// Candidates kept because they changed since they were listed (a
    /// writer refreshed or referred to them).
    pub spared: u64,
    pub skipped: Vec<Skipped>,
}

/// One namespace's view: its inventory, what its log names, and which of
/// its manifests gc may delete.
struct NsPlan {
    ns: String,
    inv: Inventory,
    /// Seq up to which the log was read.
    seq: u64,
    named: BTreeSet<(String, u64)>,
    /// Manifests to delete, by (schema, version).
    doomed: BTreeSet<(String, u64)>,
    /// Manifests kept, parsed.
    kept: BTreeMap<(String, u64), VersionManifest>,
    /// Namespace sets to delete, unless a commit since the plan names them.
    sets: Vec<Collected>,
    /// Tree indexes to delete, then the packs only they named.
    trees: Vec<Collected>,
    packs: Vec<Collected>,
}

impl ObjStore {
    /// Collects unreferenced objects older than `opts.grace` (see the
    /// module docs for what "referenced" means).
    pub async fn gc(&self, opts: GcOptions) -> Result<GcReport> {
        let now = Utc::now();
        let old = |m: &DateTime<Utc>| now - *m > opts.grace;
        let mut report = GcReport {
            dry_run: opts.dry_run,
            grace_seconds: opts.grace.num_seconds(),
            ..Default::default()
        };
        let namespaces: Vec<String> = self.list_ids(&keys::namespaces_dir(), "", None).await?;
        let mut plans = Vec::new();
        for ns in namespaces {
            match self.plan_namespace(&ns, &old, &mut report).await? {
                Ok(plan) => plans.push(plan),
                Err(reason) => report.skipped.push(Skipped {
                    namespace: ns,
                    reason,
                }),
            }
        }
        // A kept version's dependencies stay, across namespaces, and theirs.
        let mut deps_kept: BTreeSet<(String, String, u64)> = BTreeSet::new();
        loop {
            let wanted: BTreeSet<(String, String, u64)> = plans
                .iter()
                .flat_map(|p| p.kept.values())
                .flat_map(|m| &m.deps)
                .map(|d| (d.namespace_id.clone(), d.schema_id.clone(), d.version))
                .filter(|d| !deps_kept.contains(d))
                .collect();
            let mut moved = false;
            for (ns, schema, version) in &wanted {
                if let Some(p) = plans.iter_mut().find(|p| p.ns == *ns)
                    && p.doomed.remove(&(schema.clone(), *version))
                {
                    let key = keys::version(ns, schema, *version);
                    // Unreadable: verify's business; kept regardless.
                    if let Ok(Some(m)) = self.read_record::<VersionManifest>(&key).await {
                        p.kept.insert((schema.clone(), *version), m);
                    }
                    moved = true;
                }
            }
            deps_kept.extend(wanted);
            if !moved {
                break;
            }
        }
        for plan in &plans {
            self.sweep_manifests(plan, opts, &mut report).await?;
        }
        for plan in &plans {
            self.sweep_content(plan, &old, opts, &mut report).await?;
            self.sweep_sets_and_trees(plan, &old, opts, &mut report)
                .await?;
        }
        let probes: Vec<(String, super::inventory::Meta)> = self
            .list_all("_probe")
            .await?
            .into_iter()
            .filter(|(_, m)| old(&m.last_modified))
            .collect();
        let probes = probes
            .into_iter()
            .map(|(key, m)| Collected {
                key,
                kind: Collectable::Probe,
                bytes: m.size,
                last_modified: m.last_modified,
            })
            .collect();
        self.delete_checked(probes, &old, opts, &mut report).await?;
        report.bytes = report.collected.iter().map(|c| c.bytes).sum();
        Ok(report)
    }

    /// Reads the namespace's log and manifests; `Ok(Err(reason))` when it
    /// must be left alone.
    async fn plan_namespace(
        &self,
        ns: &str,
        old: &impl Fn(&DateTime<Utc>) -> bool,
        report: &mut GcReport,
    ) -> Result<std::result::Result<NsPlan, String>> {
        let inv = self.inventory(ns).await?;
        let seqs: Vec<u64> = inv
            .of_kind(|k| matches!(k, ObjectKind::LogEntry(_)))
            .filter_map(|(_, k, _)| match k {
                ObjectKind::LogEntry(s) => Some(*s),
                _ => None,
            })
            .collect();
        let end = seqs.iter().copied().max().unwrap_or(0);
        if seqs.len() as u64 != end {
            return Ok(Err(format!(
                "its log has gaps (commits 1..{end}, {} present); run `protoshelf verify`",
                seqs.len()
            )));
        }
        let mut named = BTreeSet::new();
        let mut with_sets = BTreeMap::new();
        match self
            .named_between(ns, 1, end, &mut named, &mut with_sets)
            .await
        {
            Ok(()) => {}
            Err(Error::Corrupt { key, reason }) => {
                return Ok(Err(format!("{key}: {reason}; run `protoshelf verify`")));
            }
            Err(e) => return Err(e),
        }
        // The newest stored version of each schema is never collected.
        let mut newest: HashMap<&str, u64> = HashMap::new();
        for (_, kind, _) in inv.of_kind(|k| matches!(k, ObjectKind::Manifest { .. })) {
            if let ObjectKind::Manifest { schema, version } = kind {
                let n = newest.entry(schema.as_str()).or_default();
                *n = (*n).max(*version);
            }
        }
        let mut doomed = BTreeSet::new();
        let mut keep_keys = Vec::new();
        for (key, kind, meta) in inv.of_kind(|k| matches!(k, ObjectKind::Manifest { .. })) {
            let ObjectKind::Manifest { schema, version } = kind else {
                continue;
            };
            let id = (schema.clone(), *version);
            if named.contains(&id) || newest[schema.as_str()] == *version {
                keep_keys.push((id, key.clone()));
            } else if !old(&meta.last_modified) {
                report.young += 1;
                keep_keys.push((id, key.clone()));
            } else {
                doomed.insert(id);
            }
        }
        let read = self.read_records::<_, VersionManifest>(keep_keys).await;
        let mut kept = BTreeMap::new();
        for r in read {
            match r {
                Ok((id, Some(m))) => {
                    kept.insert(id, m);
                }
                Ok((_, None)) => {} // listed, deleted since: nothing refers to it
                Err(Error::Corrupt { key, reason }) => {
                    return Ok(Err(format!(
                        "{key}: {reason}: what it refers to is unknown; run `protoshelf verify`"
                    )));
                }
                Err(e) => return Err(e),
            }
        }
        let sets = plan_sets(ns, &inv, &with_sets, old, report);
        let (trees, packs) = match self.plan_trees(&inv, old, report).await? {
            Ok(planned) => planned,
            Err(reason) => return Ok(Err(reason)),
        };
        Ok(Ok(NsPlan {
            ns: ns.to_string(),
            inv,
            seq: end,
            named,
            doomed,
            kept,
            sets,
            trees,
            packs,
        }))
    }

    /// Which tree indexes and packs to collect: an index is kept while it
    /// is the newest, is younger than the grace period, or was superseded
    /// less than the grace period ago (no index of a later commit is older
    /// than the grace period: a writer or a reader may have read it as the
    /// newest and be about to reuse or read its packs). A pack is kept when
    /// a kept index names it or it is younger than the grace period (a
    /// writer writes packs before the index naming them).
    async fn plan_trees(
        &self,
        inv: &Inventory,
        old: &impl Fn(&DateTime<Utc>) -> bool,
        report: &mut GcReport,
    ) -> Result<std::result::Result<(Vec<Collected>, Vec<Collected>), String>> {
        let mut trees: Vec<(u64, &String, &super::inventory::Meta)> = inv
            .of_kind(|k| matches!(k, ObjectKind::Tree(_)))
            .filter_map(|(key, k, m)| match k {
                ObjectKind::Tree(seq) => Some((*seq, key, m)),
                _ => None,
            })
            .collect();
        trees.sort_by_key(|t| std::cmp::Reverse(t.0));
        let (mut doomed, mut kept) = (Vec::new(), Vec::new());
        // Newest first: once an old index is passed, every earlier one was
        // superseded longer than the grace period ago.
        let mut superseded_long_ago = false;
        for (_, key, meta) in trees {
            let is_old = old(&meta.last_modified);
            if is_old && superseded_long_ago {
                doomed.push(collected(key, Collectable::TreeIndex, meta));
            } else {
                if !is_old && superseded_long_ago {
                    report.young += 1;
                }
                kept.push(key.clone());
            }
            superseded_long_ago |= is_old;
        }
        let kept = kept.into_iter().map(|k| ((), k)).collect();
        let read = self.read_records::<_, super::packs::TreeIndex>(kept).await;
        let mut named = BTreeSet::new();
        for r in read {
            match r {
                Ok(((), Some(tree))) => named.extend(tree.packs.into_iter().map(|p| p.sha256)),
                Ok(((), None)) => {} // listed, collected since by another gc
                Err(Error::Corrupt { key, reason }) => {
                    return Ok(Err(format!(
                        "{key}: {reason}: the packs it names are unknown; run `protoshelf verify`"
                    )));
                }
                Err(e) => return Err(e),
            }
        }
        let mut packs = Vec::new();
        for (key, kind, meta) in inv.of_kind(|k| matches!(k, ObjectKind::Pack(_))) {
            let ObjectKind::Pack(sha) = kind else {
                continue;
            };
            if named.contains(sha) {
                continue;
            }
            if !old(&meta.last_modified) {
                report.young += 1;
                continue;
            }
            packs.push(collected(key, Collectable::Pack, meta));
        }
        Ok(Ok((doomed, packs)))
    }

    /// Reads records concurrently, each with its tag; `None`: deleted since
    /// it was listed.
    async fn read_records<I, T: serde::de::DeserializeOwned>(
        &self,
        keys: Vec<(I, String)>,
    ) -> Vec<Result<(I, Option<T>)>> {
        futures::stream::iter(keys)
            .map(|(id, key)| async move {
                let r = self.read_record::<T>(&Path::from(key)).await?;
                Ok((id, r))
            })
            .buffer_unordered(FETCH_CONCURRENCY)
            .collect()
            .await
    }

    /// Adds the versions entries `from..=to` stage or make current, and the
    /// namespace sets of those that record them.
    async fn named_between(
        &self,
        ns: &str,
        from: u64,
        to: u64,
        named: &mut BTreeSet<(String, u64)>,
        with_sets: &mut BTreeMap<u64, NsSets>,
    ) -> Result<()> {
        if from > to {
            return Ok(());
        }
        let mut published = super::published::Published::default();
        for entry in self.inner.log.entries(ns, from, to).await? {
            published.apply(&entry);
            if let Some(sets) = &entry.change.sets {
                with_sets.insert(entry.seq, sets.clone());
            }
        }
        for (schema, versions) in published.versions {
            for v in versions {
                named.insert((schema.clone(), v));
            }
        }
        Ok(())
    }

    /// Deletes the namespace's doomed manifests, after reading the commits
    /// made since the plan (a version staged meanwhile is spared).
    async fn sweep_manifests(
        &self,
        plan: &NsPlan,
        opts: GcOptions,
        report: &mut GcReport,
    ) -> Result<()> {
        if plan.doomed.is_empty() {
            return Ok(());
        }
        let (named, _) = self.named_since(plan).await?;
        let mut doomed = Vec::new();
        for id in &plan.doomed {
            if named.contains(id) {
                report.spared += 1;
                continue;
            }
            let key = keys::version(&plan.ns, &id.0, id.1);
            let (_, meta) = plan.inv.get(&key).expect("planned from the inventory");
            doomed.push(Collected {
                key: key.to_string(),
                kind: Collectable::UnstagedVersion,
                bytes: meta.size,
                last_modified: meta.last_modified,
            });
        }
        // Manifests are immutable once written: no age re-check needed.
        self.delete_checked(doomed, &|_| true, opts, report).await
    }

    /// The versions and the namespace sets named by the log, with the
    /// commits made since the plan.
    async fn named_since(
        &self,
        plan: &NsPlan,
    ) -> Result<(BTreeSet<(String, u64)>, BTreeMap<u64, NsSets>)> {
        let (mut named, mut with_sets) = (plan.named.clone(), BTreeMap::new());
        let end = self.namespace_state(&plan.ns).await?.seq;
        self.named_between(&plan.ns, plan.seq + 1, end, &mut named, &mut with_sets)
            .await?;
        Ok((named, with_sets))
    }

    /// Deletes the namespace's doomed sets (sparing any a commit since the
    /// plan names), then its doomed tree indexes, then the packs only those
    /// named: an interrupted gc never leaves an index naming a missing pack.
    async fn sweep_sets_and_trees(
        &self,
        plan: &NsPlan,
        old: &impl Fn(&DateTime<Utc>) -> bool,
        opts: GcOptions,
        report: &mut GcReport,
    ) -> Result<()> {
        if !plan.sets.is_empty() {
            let (_, since) = self.named_since(plan).await?;
            let named: BTreeSet<String> = since
                .values()
                .flat_map(|s| [&s.current, &s.staged])
                .map(|sha| keys::namespace_set(&plan.ns, sha).to_string())
                .collect();
            let (spared, doomed): (Vec<Collected>, Vec<Collected>) = plan
                .sets
                .iter()
                .cloned()
                .partition(|c| named.contains(&c.key));
            report.spared += spared.len() as u64;
            self.delete_checked(doomed, old, opts, report).await?;
        }
        self.delete_checked(plan.trees.clone(), old, opts, report)
            .await?;
        self.delete_checked(plan.packs.clone(), old, opts, report)
            .await
    }

    /// Deletes blobs and descriptors no kept manifest names.
    async fn sweep_content(
        &self,
        plan: &NsPlan,
        old: &impl Fn(&DateTime<Utc>) -> bool,
        opts: GcOptions,
        report: &mut GcReport,
    ) -> Result<()> {
        let mut blobs = BTreeSet::new();
        let mut descriptors = BTreeSet::new();
        for m in plan.kept.values() {
            descriptors.insert(m.descriptor.sha256.as_str());
            for f in &m.files {
                blobs.insert(f.sha256.as_str());
            }
        }
        let mut candidates = Vec::new();
        for (key, kind, meta) in plan
            .inv
            .of_kind(|k| matches!(k, ObjectKind::Blob(_) | ObjectKind::Descriptor(_)))
        {
            let (referenced, kind) = match kind {
                ObjectKind::Blob(sha) => (blobs.contains(sha.as_str()), Collectable::Blob),
                ObjectKind::Descriptor(sha) => {
                    (descriptors.contains(sha.as_str()), Collectable::Descriptor)
                }
                _ => continue,
            };
            if referenced {
                continue;
            }
            if !old(&meta.last_modified) {
                report.young += 1;
                continue;
            }
            candidates.push(Collected {
                key: key.clone(),
                kind,
                bytes: meta.size,
                last_modified: meta.last_modified,
            });
        }
        self.delete_checked(candidates, old, opts, report).await
    }

    /// Deletes each candidate whose age, read again right before, still
    /// passes `old` (a writer may have refreshed it since the LIST).
    async fn delete_checked(
        &self,
        candidates: Vec<Collected>,
        old: &impl Fn(&DateTime<Utc>) -> bool,
        opts: GcOptions,
        report: &mut GcReport,
    ) -> Result<()> {
        if opts.dry_run {
            report.collected.extend(candidates);
            return Ok(());
        }
        let os = &self.io().os;
        let outcomes: Vec<(Collected, bool)> = futures::stream::iter(candidates)
            .map(|c| async move {
                let key = Path::from(c.key.as_str());
                match os.head(&key).await {
                    Ok(meta) if old(&meta.last_modified) => {}
                    Ok(_) => return Ok((c, false)),
                    Err(object_store::Error::NotFound { .. }) => return Ok((c, false)),
                    Err(e) => return Err(Error::Storage(e)),
                }
                match os.delete(&key).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok((c, true)),
                    Err(e) => Err(Error::Storage(e)),
                }
            })
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        for (c, deleted) in outcomes {
            if deleted {
                report.collected.push(c);
            } else {
                report.spared += 1;
            }
        }
        Ok(())
    }
}

fn collected(key: &str, kind: Collectable, meta: &super::inventory::Meta) -> Collected {
    Collected {
        key: key.to_string(),
        kind,
        bytes: meta.size,
        last_modified: meta.last_modified,
    }
}

/// Which namespace sets to collect: a set is kept while a log entry names
/// it that is the namespace's newest entry with sets, or was superseded
/// less than the grace period ago (the next entry with sets is younger
/// than the grace period: a reader or a writer may have read that entry as
/// the newest and be about to read its sets), and while it is younger than
/// the grace period (a writer writes its sets before the entry naming
/// them). `with_sets` holds every entry that records sets, by seq.
fn plan_sets(
    ns: &str,
    inv: &Inventory,
    with_sets: &BTreeMap<u64, NsSets>,
    old: &impl Fn(&DateTime<Utc>) -> bool,
    report: &mut GcReport,
) -> Vec<Collected> {
    let mut named = BTreeSet::new();
    let mut later_is_old = false;
    for (seq, sets) in with_sets.iter().rev() {
        if !later_is_old {
            named.insert(sets.current.as_str());
            named.insert(sets.staged.as_str());
        }
        // An entry the inventory lacks cannot be: the plan read it.
        later_is_old |= inv
            .get(&keys::log_entry(ns, *seq))
            .is_some_and(|(_, m)| old(&m.last_modified));
    }
    let mut doomed = Vec::new();
    for (key, kind, meta) in inv.of_kind(|k| matches!(k, ObjectKind::NamespaceSet(_))) {
        let ObjectKind::NamespaceSet(sha) = kind else {
            continue;
        };
        if named.contains(sha.as_str()) {
            continue;
        }
        if !old(&meta.last_modified) {
            report.young += 1;
            continue;
        }
        doomed.push(collected(key, Collectable::NamespaceSet, meta));
    }
    doomed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objstore::inventory::{Meta, classify};

    fn inventory(objects: &[(String, i64)], now: DateTime<Utc>) -> Inventory {
        let mut inv = Inventory::default();
        for (key, age_secs) in objects {
            let rest = key.strip_prefix("ns/n/").unwrap();
            let meta = Meta {
                size: 1,
                last_modified: now - TimeDelta::seconds(*age_secs),
            };
            inv.objects.insert(key.clone(), (classify(rest), meta));
        }
        inv
    }

    fn sha(c: char) -> String {
        c.to_string().repeat(64)
    }

    /// Entry 1 names sets a/b, 2 names b/c (superseded long ago by 3), 3
    /// names c/d (superseded only a minute ago by 4), 4 names e/e. Set 0 is
    /// named by nothing and young; set f by nothing and old.
    #[test]
    fn sets_go_once_superseded_longer_than_the_grace_period_ago() {
        let now = Utc::now();
        let grace = TimeDelta::hours(1);
        let old = |m: &DateTime<Utc>| now - *m > grace;
        let day = 86_400;
        let mut objects: Vec<(String, i64)> = [(1, 4 * day), (2, 3 * day), (3, 2 * day), (4, 60)]
            .iter()
            .map(|(seq, age)| (keys::log_entry("n", *seq).to_string(), *age))
            .collect();
        for c in ['a', 'b', 'c', 'd', 'e', 'f'] {
            objects.push((keys::namespace_set("n", &sha(c)).to_string(), 5 * day));
        }
        objects.push((keys::namespace_set("n", &sha('0')).to_string(), 60));
        let inv = inventory(&objects, now);
        let sets = |cur: char, stg: char| NsSets {
            current: sha(cur),
            staged: sha(stg),
        };
        let with_sets = BTreeMap::from([
            (1, sets('a', 'b')),
            (2, sets('b', 'c')),
            (3, sets('c', 'd')),
            (4, sets('e', 'e')),
        ]);
        let mut report = GcReport::default();
        let doomed: BTreeSet<String> = plan_sets("n", &inv, &with_sets, &old, &mut report)
            .into_iter()
            .map(|c| c.key)
            .collect();
        let want: BTreeSet<String> = ['a', 'b', 'f']
            .iter()
            .map(|c| keys::namespace_set("n", &sha(*c)).to_string())
            .collect();
        assert_eq!(doomed, want);
        assert_eq!(report.young, 1, "set 0");
    }
}
