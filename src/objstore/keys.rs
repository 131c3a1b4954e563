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

#[cfg(test)]
mod tests {
    use super::*;

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
