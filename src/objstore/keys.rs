//! Every key protoshelf writes, relative to the store's prefix. The layout
//! is documented in docs/storage-format.md; keep the two in step.
//!
//! IDs are validated before they reach here ([`crate::ids`]), so they are
//! safe single path segments.

use object_store::path::Path;

/// The format marker at the root of a store.
pub fn marker() -> Path {
    Path::from("protoshelf.json")
}

/// Scratch objects of the create-if-absent probe.
pub fn probe(id: &str) -> Path {
    Path::from(format!("_probe/{id}"))
}

/// The directory of namespace records; one object per namespace, named by
/// its ID, so a LIST in key order is a list in ID order.
pub fn namespaces_dir() -> Path {
    Path::from("namespaces")
}

pub fn namespace(ns: &str) -> Path {
    Path::from(format!("namespaces/{ns}"))
}

pub fn schemas_dir(ns: &str) -> Path {
    Path::from(format!("ns/{ns}/schemas"))
}

pub fn schema(ns: &str, schema: &str) -> Path {
    Path::from(format!("ns/{ns}/schemas/{schema}"))
}

pub fn versions_dir(ns: &str, schema: &str) -> Path {
    Path::from(format!("ns/{ns}/versions/{schema}"))
}

/// Version numbers are zero-padded to 20 digits so key order is numeric order.
pub fn version(ns: &str, schema: &str, version: u64) -> Path {
    Path::from(format!("ns/{ns}/versions/{schema}/{version:020}.json"))
}

pub fn blob(ns: &str, sha256: &str) -> Path {
    Path::from(format!("ns/{ns}/blobs/{sha256}"))
}

pub fn descriptor(ns: &str, sha256: &str) -> Path {
    Path::from(format!("ns/{ns}/descriptors/{sha256}.binpb"))
}

/// The directory of a namespace's log entries.
pub fn log_dir(ns: &str) -> Path {
    Path::from(format!("ns/{ns}/log"))
}

pub fn log_entry(ns: &str, seq: u64) -> Path {
    Path::from(format!("ns/{ns}/log/{seq:020}.json"))
}

/// The directory of a namespace's claims of one kind. A claim is
/// `<dir>/<name>/<schema>`: names (file paths, packages) are nested as is,
/// and schema IDs have no `/`, so the last segment is always the claimant.
pub fn claims_root(ns: &str) -> Path {
    Path::from(format!("ns/{ns}/claims"))
}

pub fn claims_dir(ns: &str, kind: &str) -> Path {
    Path::from(format!("ns/{ns}/claims/{kind}"))
}

pub fn claim(ns: &str, kind: &str, name: &str, schema: &str) -> Path {
    Path::from(format!("{}/{schema}", claimants(ns, kind, name)))
}

/// Where the claimants of one path or package are listed.
pub fn claimants(ns: &str, kind: &str, name: &str) -> Path {
    let name = claim_segment(name);
    Path::from(format!("ns/{ns}/claims/{kind}/{name}"))
}

/// The root package (files without a `package`) is claimed as `!`: an
/// empty segment would vanish from the key, and `!` starts no package name.
pub const ROOT_PACKAGE_MARK: &str = "!";

fn claim_segment(name: &str) -> &str {
    if name.is_empty() {
        ROOT_PACKAGE_MARK
    } else {
        name
    }
}

/// The claim name a key's name segments stand for (`!` is the root package).
pub fn claim_name(segments: &[impl AsRef<str>]) -> String {
    match segments {
        [one] if one.as_ref() == ROOT_PACKAGE_MARK => String::new(),
        _ => segments
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join("/"),
    }
}

/// A directory claim, `claims/dir/<dir>/!<schema>` (`claims/dir/!<schema>`
/// for the root). `!` cannot start a path segment or a schema ID, so a
/// claim never shares a name with a subdirectory's prefix (a local
/// directory cannot hold a file and a directory of one name).
pub fn dir_claim(ns: &str, dir: &str, schema: &str) -> Path {
    Path::from(format!("{}/{DIR_CLAIM_MARK}{schema}", dir_claims(ns, dir)))
}

/// Where the claims of one directory are: a delimited LIST of it returns
/// them (and the subdirectories' prefixes, which are skipped).
pub fn dir_claims(ns: &str, dir: &str) -> Path {
    if dir.is_empty() {
        Path::from(format!("ns/{ns}/claims/dir"))
    } else {
        Path::from(format!("ns/{ns}/claims/dir/{dir}"))
    }
}

pub const DIR_CLAIM_MARK: char = '!';

/// The directory of a schema's move markers (format 3).
pub fn moves_dir(ns: &str, schema: &str) -> Path {
    Path::from(format!("ns/{ns}/moves/{schema}"))
}

/// What a move marker's name starts with for commit `seq`: 10^20 - 1 - seq,
/// 20 digits, so the newest commit sorts first and a LIST's first page
/// holds the newest moves whatever the history's length.
pub const MOVE_REV_BASE: u128 = 99_999_999_999_999_999_999;

/// The empty object a commit attempt creates before creating its log entry
/// `seq`, once per schema it changes (format 3): `<rev seq>-<commit_id>`.
pub fn move_marker(ns: &str, schema: &str, seq: u64, commit_id: &str) -> Path {
    let rev = MOVE_REV_BASE - seq as u128;
    Path::from(format!("ns/{ns}/moves/{schema}/{rev:020}-{commit_id}"))
}

/// The (seq, commit id) a move marker's file name stands for.
pub fn parse_move_marker(name: &str) -> Option<(u64, &str)> {
    let (rev, commit_id) = name.split_once('-')?;
    if rev.len() != 20 || !rev.bytes().all(|b| b.is_ascii_digit()) || commit_id.is_empty() {
        return None;
    }
    let seq = MOVE_REV_BASE.checked_sub(rev.parse::<u128>().ok()?)?;
    Some((u64::try_from(seq).ok()?, commit_id))
}

/// A namespace set (format 3): a `FileDescriptorSet` of a whole tree of
/// the namespace, content-addressed.
pub fn namespace_set(ns: &str, sha256: &str) -> Path {
    Path::from(format!("ns/{ns}/sets/{sha256}.binpb"))
}

/// The directory of a namespace's set markers (format 3).
pub fn set_moves_dir(ns: &str) -> Path {
    Path::from(format!("ns/{ns}/set-moves"))
}

/// The empty object a commit attempt that records namespace sets creates
/// before its log entry `seq`, named like a move marker.
pub fn set_marker(ns: &str, seq: u64, commit_id: &str) -> Path {
    let rev = MOVE_REV_BASE - seq as u128;
    Path::from(format!("ns/{ns}/set-moves/{rev:020}-{commit_id}"))
}

/// The directory of a namespace's tree indexes (packed trees, format 3).
pub fn trees_dir(ns: &str) -> Path {
    Path::from(format!("ns/{ns}/trees"))
}

/// The tree index written after commit `seq`: `<rev seq>.json`, newest first.
pub fn tree(ns: &str, seq: u64) -> Path {
    let rev = MOVE_REV_BASE - seq as u128;
    Path::from(format!("ns/{ns}/trees/{rev:020}.json"))
}

/// The commit a tree index's file name stands for.
pub fn parse_tree(name: &str) -> Option<u64> {
    let rev = name.strip_suffix(".json")?;
    if rev.len() != 20 || !rev.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    u64::try_from(MOVE_REV_BASE.checked_sub(rev.parse::<u128>().ok()?)?).ok()
}

/// A pack of tree files' sources (content-addressed).
pub fn pack(ns: &str, sha256: &str) -> Path {
    Path::from(format!("ns/{ns}/packs/{sha256}"))
}

/// The best-effort "latest entry" hint of a namespace's log.
pub fn head(ns: &str) -> Path {
    Path::from(format!("ns/{ns}/head.json"))
}

/// The Confluent-compatible API's global schema IDs (`protoshelf serve`):
/// one immutable record per ID, 20 digits so key order is numeric order.
pub fn schema_id(id: u64) -> Path {
    Path::from(format!("confluent/ids/{id:020}.json"))
}

/// Which ID a schema content (by SHA-256) got: created once, never moved.
pub fn schema_content(sha256: &str) -> Path {
    Path::from(format!("confluent/content/{sha256}.json"))
}

/// Best-effort hint of the highest allocated schema ID (plain overwrite).
pub fn schema_ids_head() -> Path {
    Path::from("confluent/ids-head.json")
}

/// The Confluent API's global settings, one numbered immutable entry per
/// change; the highest is in force.
pub fn confluent_config_dir() -> Path {
    Path::from("confluent/config")
}

pub fn confluent_config(seq: u64) -> Path {
    Path::from(format!("confluent/config/{seq:020}.json"))
}

/// Parses the number out of a version key's file name.
pub fn parse_version_file(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Longest key S3 accepts, in bytes, the store's prefix included.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest file or directory name on local filesystems (ext4, XFS, btrfs,
/// APFS: 255 bytes).
pub const MAX_SEGMENT_BYTES: usize = 255;
/// object_store's local store writes `<file>#<n>` and renames it into
/// place: a key's last segment needs room for `#` and a few digits (n
/// counts up past leftovers of interrupted writes).
pub const STAGING_SUFFIX_BYTES: usize = 6;

/// Every key a version of `schema` in `ns` writes or makes its namespace
/// write, with the longest names: the namespace's own keys, the schema's,
/// its version manifest, blobs and descriptor, and one claim per
/// `(kind, name)` in `claims`.
fn version_keys<'a>(
    ns: &'a str,
    schema: &'a str,
    claims: impl IntoIterator<Item = (crate::store::ClaimKind, &'a str)> + 'a,
) -> impl Iterator<Item = (Path, &'static str)> + 'a {
    use crate::store::ClaimKind;
    let hash = "0".repeat(64);
    [
        (namespace(ns), "namespace record"),
        (head(ns), "log hint"),
        (log_entry(ns, u64::MAX), "log entry"),
        (self::schema(ns, schema), "schema record"),
        (version(ns, schema, u64::MAX), "version manifest"),
        (blob(ns, &hash), "blob"),
        (descriptor(ns, &hash), "descriptor set"),
    ]
    .into_iter()
    .chain(claims.into_iter().map(move |(kind, name)| match kind {
        ClaimKind::Dir => (dir_claim(ns, name, schema), "directory claim"),
        ClaimKind::Path => (claim(ns, kind.as_str(), name, schema), "path claim"),
        ClaimKind::Package => (claim(ns, kind.as_str(), name, schema), "package claim"),
    }))
}

/// Checks that every key of a version (see [`version_keys`]) fits every
/// backend: at most [`MAX_KEY_BYTES`] with the store's `prefix`, no segment
/// over [`MAX_SEGMENT_BYTES`], the last one with room for the local store's
/// staging suffix. Run before anything is written, so a publish never
/// fails half-way on a key a backend refuses.
pub fn check_lengths<'a>(
    prefix: &str,
    ns: &'a str,
    schema: &'a str,
    claims: impl IntoIterator<Item = (crate::store::ClaimKind, &'a str)> + 'a,
) -> crate::Result<()> {
    let prefix_len = if prefix.is_empty() {
        0
    } else {
        prefix.len() + 1
    };
    for (key, what) in version_keys(ns, schema, claims) {
        let key = key.as_ref();
        let total = prefix_len + key.len();
        let shown = || {
            let mut k: String = key.chars().take(100).collect();
            if k.len() < key.len() {
                k.push_str("...");
            }
            k
        };
        if total > MAX_KEY_BYTES {
            return Err(crate::Error::InvalidInput(format!(
                "too long for storage: the {what} key {} would be {total} bytes{}, and S3 keys are at most {MAX_KEY_BYTES} bytes; shorten the namespace ID ({} bytes), the schema ID ({} bytes) or the file path or package",
                shown(),
                if prefix_len > 0 {
                    " with the store prefix"
                } else {
                    ""
                },
                ns.len(),
                schema.len()
            )));
        }
        let segments: Vec<&str> = key.split('/').collect();
        for (i, seg) in segments.iter().enumerate() {
            let (limit, why) = if i + 1 == segments.len() {
                (
                    MAX_SEGMENT_BYTES - STAGING_SUFFIX_BYTES,
                    " for a file name (255 less the local store's staging suffix)",
                )
            } else {
                (MAX_SEGMENT_BYTES, " for a name")
            };
            if seg.len() > limit {
                return Err(crate::Error::InvalidInput(format!(
                    "too long for storage: {:?}... in the {what} key is {} bytes, and local filesystems take at most {limit}{why}",
                    seg.chars().take(40).collect::<String>(),
                    seg.len()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_at_the_limits() {
        use crate::store::ClaimKind;
        let (ns, schema) = ("n".repeat(249), "s".repeat(248));
        // The longest names the ID rules allow fit every key shape...
        check_lengths("", &ns, &schema, [(ClaimKind::Package, "p")]).unwrap();
        // ...until a prefix and a long directory add up past 1,024 bytes:
        // ns/<ns>/claims/dir/<dir>/!<schema> is 17 bytes of fixed text.
        let prefix = "p".repeat(99);
        let fits = 1024 - 100 - 17 - 249 - 248;
        let dir = |n: usize| format!("{}/{}", "d".repeat(200), "e".repeat(n - 201));
        check_lengths(
            &prefix,
            &ns,
            &schema,
            [(ClaimKind::Dir, dir(fits).as_str())],
        )
        .unwrap();
        let err = check_lengths(
            &prefix,
            &ns,
            &schema,
            [(ClaimKind::Dir, dir(fits + 1).as_str())],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("1025 bytes") && err.contains("1024"), "{err}");
        // A package is one segment of a claim key.
        let long = "p".repeat(256);
        let err = check_lengths("", "n", "s", [(ClaimKind::Package, long.as_str())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("256 bytes") && err.contains("255"), "{err}");
        check_lengths("", "n", "s", [(ClaimKind::Package, &long[1..])]).unwrap();
        // The last segment keeps room for the staging suffix.
        let err = check_lengths("", &"n".repeat(250), "s", [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("249"), "{err}");
    }

    #[test]
    fn numbered_keys_sort_numerically() {
        assert!(log_entry("a", 9).as_ref() < log_entry("a", 10).as_ref());
        assert_eq!(
            version("ns", "s", 42).as_ref(),
            "ns/ns/versions/s/00000000000000000042.json"
        );
        assert_eq!(parse_version_file("00000000000000000042.json"), Some(42));
        assert_eq!(parse_version_file("42.json"), None);
        assert_eq!(parse_version_file("0000000000000000004x.json"), None);
        assert_eq!(
            dir_claim("n", "a/b", "s").as_ref(),
            "ns/n/claims/dir/a/b/!s"
        );
        assert_eq!(dir_claim("n", "", "s").as_ref(), "ns/n/claims/dir/!s");
    }
}
