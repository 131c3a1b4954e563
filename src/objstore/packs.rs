//! Packed trees (format 3, additive): a namespace's current files in a few
//! content-addressed packs, and a tree index naming them, so a reader of a
//! whole tree (the mount) makes one GET per pack instead of one per
//! version manifest and one per file.
//!
//! - `ns/<ns>/packs/<sha256>`: the sources of a run of tree files, in path
//!   order, concatenated; SHA-256 of the bytes = key.
//! - `ns/<ns>/trees/<rev>.json`: a [`TreeIndex`], written after commit
//!   `seq` (`rev` = 99999999999999999999 − seq, so a LIST's first key is
//!   the newest). It lists versions with their files (path, blob hash,
//!   size) and where each file's bytes are in the packs.
//!
//! Files are cut into packs at content-defined boundaries (a file ends a
//! pack when the hash of its path says so, or the pack reached
//! [`PACK_MAX_BYTES`]), so a commit that changes a few files changes only
//! the packs holding them: the others keep their bytes, hence their keys,
//! and are not written again. Versions are immutable, so an index is right
//! about every version it lists forever; a reader uses it for the versions
//! it wants that it lists, and manifests and blobs for the others.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::{BackendKind, FETCH_CONCURRENCY, ObjStore, keys, records, sha256_hex};
use crate::error::{Error, Result};

/// A commit that makes at least this many files current anew writes a
/// tree index. Smaller commits write none (they stay as cheap as before);
/// a reader covers what the newest index lacks with manifests and blobs.
pub const PACK_MIN_FILES: usize = 64;

/// One file in 128 ends a pack (by the hash of its path): about 128 files
/// per pack.
const PACK_BOUNDARY_MODULUS: u16 = 128;

/// A pack also ends once it holds this many bytes, or files (path hashes
/// leave long runs now and then: this bounds what one change rewrites).
pub const PACK_MAX_BYTES: u64 = 4 * 1024 * 1024;
pub const PACK_MAX_FILES: usize = 256;

/// `ns/<ns>/trees/<rev>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeIndex {
    pub format_version: u32,
    pub namespace_id: String,
    /// The commit after which it was written (its current versions).
    pub seq: u64,
    pub created_at: DateTime<Utc>,
    pub versions: Vec<TreeVersion>,
    pub packs: Vec<PackRef>,
    /// Sorted by path.
    pub files: Vec<TreeFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeVersion {
    pub schema_id: String,
    pub version: u64,
    /// The manifest's `created_at`.
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackRef {
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeFile {
    pub path: String,
    pub sha256: String,
    pub size: u64,
    /// Index into `versions`.
    pub version: usize,
    /// Index into `packs`, and where the file starts in that pack.
    pub pack: usize,
    pub offset: u64,
}

impl TreeIndex {
    /// Checks what a decoder cannot: indexes in range, files inside their
    /// packs. A reader never uses an index that fails this.
    fn check(&self, key: &str) -> Result<()> {
        let bad = |reason: String| Error::Corrupt {
            key: key.to_string(),
            reason,
        };
        for f in &self.files {
            let pack = self.packs.get(f.pack).ok_or_else(|| {
                bad(format!(
                    "{} names pack {} of {}",
                    f.path,
                    f.pack,
                    self.packs.len()
                ))
            })?;
            if f.version >= self.versions.len() || f.offset.saturating_add(f.size) > pack.size {
                return Err(bad(format!(
                    "{} lies outside its pack or version list",
                    f.path
                )));
            }
        }
        Ok(())
    }
}

/// Where one file's bytes are: pack, offset, length, and the blob hash
/// they must have.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PackedFile {
    pub pack: String,
    pub offset: u64,
    pub size: u64,
}

fn ends_pack(path: &str) -> bool {
    let h = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
        path.as_bytes(),
    ));
    u16::from_be_bytes([h[0], h[1]]) % PACK_BOUNDARY_MODULUS == 0
}

/// Cuts files (sorted by path, with sizes) into packs: the index of the
/// first file of each pack.
fn cut(files: &[(String, String, u64)]) -> Vec<std::ops::Range<usize>> {
    let (mut out, mut start, mut bytes) = (Vec::new(), 0, 0u64);
    for (i, (path, _, size)) in files.iter().enumerate() {
        bytes += size;
        let full = bytes >= PACK_MAX_BYTES || i + 1 - start >= PACK_MAX_FILES;
        if ends_pack(path) || full || i + 1 == files.len() {
            out.push(start..i + 1);
            start = i + 1;
            bytes = 0;
        }
    }
    out
}

impl ObjStore {
    /// The namespace's newest tree index, if any: one LIST of `trees/` (its
    /// first page on an ordered backend) and one GET. A damaged index is
    /// `Corrupt` naming its key.
    pub async fn newest_tree(&self, ns: &str) -> Result<Option<TreeIndex>> {
        let ordered = !matches!(self.inner.kind, BackendKind::Local);
        let mut listed = self.io().os.list(Some(&keys::trees_dir(ns)));
        let mut newest: Option<u64> = None;
        while let Some(meta) = listed.next().await {
            let meta = meta.map_err(Error::Storage)?;
            let Some(seq) = meta.location.filename().and_then(keys::parse_tree) else {
                continue;
            };
            newest = Some(newest.map_or(seq, |n| n.max(seq)));
            if ordered {
                break; // newest first
            }
        }
        let Some(seq) = newest else {
            return Ok(None);
        };
        let key = keys::tree(ns, seq);
        let Some(tree) = self.read_record::<TreeIndex>(&key).await? else {
            return Ok(None); // listed, then collected
        };
        if tree.namespace_id != ns || tree.seq != seq {
            return Err(Error::Corrupt {
                key: key.to_string(),
                reason: "names another namespace or commit".into(),
            });
        }
        tree.check(key.as_ref())?;
        Ok(Some(tree))
    }

    /// Reads a pack (one GET, never cached as a whole), checks its hash
    /// against its key and each file's bytes against its blob hash, and
    /// puts the files into the object cache as their blobs, so
    /// [`ObjStore::get_blob`] finds them without a request. `files` are
    /// (blob sha256, offset, size). Any mismatch is `Corrupt` naming the
    /// pack: nothing of it is used. A missing pack is `NotFound`: gc
    /// collects the packs of indexes superseded long ago, which a reader
    /// may still hold; it reads the files' blobs instead.
    pub async fn load_pack(
        &self,
        ns: &str,
        pack: &str,
        files: &[(String, u64, u64)],
    ) -> Result<()> {
        let bytes = self.verified_pack(ns, pack).await?;
        let key = keys::pack(ns, pack);
        let mut blobs = Vec::with_capacity(files.len());
        for (sha, offset, size) in files {
            let range = usize::try_from(*offset)
                .ok()
                .zip(usize::try_from(offset + size).ok());
            let slice = match range {
                Some((a, b)) if b <= bytes.len() => bytes.slice(a..b),
                _ => {
                    return Err(Error::Corrupt {
                        key: key.to_string(),
                        reason: format!("shorter than the file {sha} the tree places in it"),
                    });
                }
            };
            if sha256_hex(&slice) != *sha {
                return Err(Error::Corrupt {
                    key: key.to_string(),
                    reason: format!("the bytes the tree names as blob {sha} hash otherwise"),
                });
            }
            blobs.push((keys::blob(ns, sha), slice));
        }
        for (k, b) in blobs {
            self.io().cache_only(&k, b).await;
        }
        Ok(())
    }

    async fn verified_pack(&self, ns: &str, pack: &str) -> Result<Bytes> {
        super::blobs::validate_sha256(pack)?;
        let key = keys::pack(ns, pack);
        let Some(obj) = self.io().get(&key).await? else {
            return Err(Error::NotFound(format!(
                "{key}: collected since the tree index naming it was read"
            )));
        };
        let actual = sha256_hex(&obj.bytes);
        if actual != pack {
            return Err(Error::Corrupt {
                key: key.to_string(),
                reason: format!("content hashes to {actual}, not to its key"),
            });
        }
        Ok(obj.bytes)
    }

    /// After commit `seq`, which made `fresh_files` files current anew:
    /// writes the tree index of the namespace's current versions `picks`
    /// when that is at least [`PACK_MIN_FILES`], reusing the packs of the
    /// newest index whose files did not change. Returns whether it wrote.
    pub async fn pack_current(
        &self,
        ns: &str,
        seq: u64,
        picks: &[(String, u64)],
        fresh_files: usize,
    ) -> Result<bool> {
        if fresh_files < PACK_MIN_FILES
            || self.format_marker().format_version < records::FORMAT_MOVES
        {
            return Ok(false);
        }
        self.write_tree(ns, seq, picks).await?;
        Ok(true)
    }

    /// Writes the tree index of `picks` after commit `seq`: new packs
    /// first (create-if-absent, content-addressed), the index last, so an
    /// index never names a missing pack. Costs one LIST and one GET (the
    /// newest index), a GET per manifest or blob not cached and per old
    /// pack whose files it must repack, a PUT per changed pack and one for
    /// the index.
    pub async fn write_tree(
        &self,
        ns: &str,
        seq: u64,
        picks: &[(String, u64)],
    ) -> Result<TreeIndex> {
        let old = match self.newest_tree(ns).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("ignoring the newest tree index of {ns}: {e}");
                None
            }
        };
        let old = old.unwrap_or_else(|| TreeIndex {
            format_version: 0,
            namespace_id: ns.to_string(),
            seq: 0,
            created_at: Utc::now(),
            versions: vec![],
            packs: vec![],
            files: vec![],
        });
        let covered: HashMap<(&str, u64), usize> = old
            .versions
            .iter()
            .enumerate()
            .map(|(i, v)| ((v.schema_id.as_str(), v.version), i))
            .collect();
        // (path, sha, size if known, version index)
        let mut versions = Vec::new();
        let mut listed: Vec<(String, String, Option<u64>, usize)> = Vec::new();
        let manifests: Vec<_> = picks
            .iter()
            .filter(|(s, v)| !covered.contains_key(&(s.as_str(), *v)))
            .map(|(s, v)| self.manifest(ns, s, *v))
            .collect();
        let manifests: HashMap<(String, u64), records::VersionManifest> =
            futures::stream::iter(manifests)
                .buffer_unordered(FETCH_CONCURRENCY)
                .map_ok(|m| ((m.schema_id.clone(), m.version), m))
                .try_collect()
                .await?;
        for (schema, v) in picks {
            let vi = versions.len();
            if let Some(&oi) = covered.get(&(schema.as_str(), *v)) {
                versions.push(old.versions[oi].clone());
                for f in old.files.iter().filter(|f| f.version == oi) {
                    listed.push((f.path.clone(), f.sha256.clone(), Some(f.size), vi));
                }
            } else {
                let m = &manifests[&(schema.clone(), *v)];
                versions.push(TreeVersion {
                    schema_id: schema.clone(),
                    version: *v,
                    created_at: m.created_at,
                });
                for f in &m.files {
                    listed.push((f.path.clone(), f.sha256.clone(), f.size, vi));
                }
            }
        }
        listed.sort();
        listed.dedup_by(|a, b| a.0 == b.0); // one owner per path; keep the first

        // Bytes of files whose size is unknown (manifests older than sizes).
        let mut bytes: HashMap<String, Bytes> = HashMap::new();
        let unknown: HashSet<&String> = listed
            .iter()
            .filter(|f| f.2.is_none())
            .map(|f| &f.1)
            .collect();
        self.fetch_blobs(ns, unknown, &mut bytes).await?;
        let sized: Vec<(String, String, u64)> = listed
            .iter()
            .map(|(p, s, size, _)| {
                (
                    p.clone(),
                    s.clone(),
                    size.unwrap_or_else(|| bytes[s].len() as u64),
                )
            })
            .collect();

        // The old packs by their exact file runs: an unchanged run keeps its pack.
        let mut old_runs: HashMap<Vec<(&str, &str)>, usize> = HashMap::new();
        {
            let mut by_pack: BTreeMap<usize, Vec<&super::packs::TreeFile>> = BTreeMap::new();
            for f in &old.files {
                by_pack.entry(f.pack).or_default().push(f);
            }
            for (p, mut fs) in by_pack {
                fs.sort_by_key(|f| f.offset);
                old_runs.insert(
                    fs.iter()
                        .map(|f| (f.path.as_str(), f.sha256.as_str()))
                        .collect(),
                    p,
                );
            }
        }
        let runs = cut(&sized);
        let mut packs: Vec<PackRef> = Vec::new();
        let mut placed: Vec<(usize, u64)> = vec![(0, 0); sized.len()];
        let mut to_build = Vec::new();
        for run in runs {
            let sig: Vec<(&str, &str)> = sized[run.clone()]
                .iter()
                .map(|(p, s, _)| (p.as_str(), s.as_str()))
                .collect();
            let pi = packs.len();
            let mut offset = 0;
            for i in run.clone() {
                placed[i] = (pi, offset);
                offset += sized[i].2;
            }
            match old_runs.get(&sig) {
                Some(&op) => packs.push(old.packs[op].clone()),
                None => {
                    packs.push(PackRef {
                        sha256: String::new(),
                        size: offset,
                    });
                    to_build.push((pi, run));
                }
            }
        }
        // Bytes of the files of new packs: cached, else from an old pack
        // holding them (one GET for many), else their blobs.
        let mut needed: HashSet<&String> = to_build
            .iter()
            .flat_map(|(_, r)| sized[r.clone()].iter().map(|f| &f.1))
            .filter(|s| !bytes.contains_key(*s))
            .collect();
        let mut from_cache = Vec::new();
        for sha in &needed {
            if let Some(o) = self.io().cached(&keys::blob(ns, sha)).await {
                from_cache.push(((*sha).clone(), o.bytes));
            }
        }
        for (sha, b) in from_cache {
            needed.remove(&sha);
            bytes.insert(sha, b);
        }
        let mut old_packs: BTreeMap<usize, Vec<(String, u64, u64)>> = BTreeMap::new();
        for f in &old.files {
            if needed.contains(&f.sha256) {
                old_packs
                    .entry(f.pack)
                    .or_default()
                    .push((f.sha256.clone(), f.offset, f.size));
            }
        }
        for (p, files) in &old_packs {
            let sha = &old.packs[*p].sha256;
            match self.verified_pack(ns, sha).await {
                Ok(pack) => {
                    for (s, off, size) in files {
                        let slice = pack.slice(*off as usize..(*off + *size) as usize);
                        if sha256_hex(&slice) == *s {
                            needed.remove(s);
                            bytes.insert(s.clone(), slice);
                        }
                    }
                }
                Err(e) => tracing::warn!("not reusing pack {sha} of {ns}: {e}"),
            }
        }
        let rest: HashSet<&String> = needed;
        let mut fetched = HashMap::new();
        self.fetch_blobs(ns, rest, &mut fetched).await?;
        bytes.extend(fetched);

        // Built and written a few at a time: each is built only when its
        // PUT is about to start, so few are held at once.
        let (bytes, sized_ref) = (&bytes, &sized);
        let writes: Vec<_> = to_build
            .into_iter()
            .map(|(pi, run)| async move {
                let mut buf = BytesMut::new();
                for (_, sha, _) in &sized_ref[run] {
                    buf.extend_from_slice(&bytes[sha]);
                }
                let buf = buf.freeze();
                let sha = sha256_hex(&buf);
                self.io()
                    .create_collectable(&keys::pack(ns, &sha), buf)
                    .await?;
                Ok::<_, Error>((pi, sha))
            })
            .collect();
        let written: Vec<(usize, String)> = futures::stream::iter(writes)
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        for (pi, sha) in written {
            packs[pi].sha256 = sha;
        }
        let files = sized
            .into_iter()
            .zip(listed)
            .zip(placed)
            .map(
                |(((path, sha256, size), (_, _, _, version)), (pack, offset))| TreeFile {
                    path,
                    sha256,
                    size,
                    version,
                    pack,
                    offset,
                },
            )
            .collect();
        let tree = TreeIndex {
            format_version: self.format_marker().format_version,
            namespace_id: ns.to_string(),
            seq,
            created_at: Utc::now(),
            versions,
            packs,
            files,
        };
        // Only the committer of `seq` writes this key; exists is success.
        self.io()
            .create_content(&keys::tree(ns, seq), records::to_json(&tree))
            .await?;
        Ok(tree)
    }

    /// GETs blobs concurrently (verified) into `out`.
    async fn fetch_blobs(
        &self,
        ns: &str,
        shas: HashSet<&String>,
        out: &mut HashMap<String, Bytes>,
    ) -> Result<()> {
        let gets: Vec<_> = shas
            .into_iter()
            .map(|s| async move { self.get_blob(ns, s).await.map(|b| (b.sha256, b.source)) })
            .collect();
        let got: Vec<(String, Bytes)> = futures::stream::iter(gets)
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        out.extend(got);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_moves_only_the_boundaries_of_its_own_pack() {
        let files: Vec<(String, String, u64)> = (0..2000)
            .map(|i| (format!("d/f{i:05}.proto"), format!("{i}"), 100))
            .collect();
        let before = cut(&files);
        assert!(
            before.len() > 4 && before.len() < 60,
            "{} packs",
            before.len()
        );
        // Insert a file in the middle: every other pack keeps its files.
        let mut more = files.clone();
        more.insert(1000, ("d/f00999x.proto".into(), "new".into(), 100));
        let after = cut(&more);
        let runs = |fs: &[(String, String, u64)],
                    cuts: &[std::ops::Range<usize>]|
         -> HashSet<Vec<String>> {
            cuts.iter()
                .map(|r| fs[r.clone()].iter().map(|f| f.0.clone()).collect())
                .collect()
        };
        let (a, b) = (runs(&files, &before), runs(&more, &after));
        // The run between the content-defined cuts around the new file
        // changes; when that run is longer than PACK_MAX_FILES it was split
        // by count, so it is two packs. Every other pack keeps its files.
        let changed = a.difference(&b).count();
        assert!((1..=2).contains(&changed), "{changed} packs changed");
        // A pack also ends at its byte bound.
        let big: Vec<(String, String, u64)> = (0..10)
            .map(|i| (format!("b{i}"), String::new(), PACK_MAX_BYTES / 2))
            .collect();
        assert!(cut(&big).iter().all(|r| r.len() <= 2));
        assert!(cut(&files).iter().all(|r| r.len() <= PACK_MAX_FILES));
    }
}
