//! One owner per path and per name: within a namespace's proposed tree (and
//! against builtins) a file path belongs to one schema, and a
//! fully-qualified name is defined by one file. Checked before anything is
//! written, so the merged tree always compiles as one.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt};
use prost_reflect::DescriptorPool;

use super::compile::symbols;
use super::view::View;
use crate::error::{Error, Result};
use crate::ids::BUILTINS;

/// Files being published: (schema, path).
pub async fn check_paths(
    view: &View,
    builtins: Option<&View>,
    files: &[(String, String)],
) -> Result<()> {
    // Futures collected before streaming them: a stream of a closure over
    // references is not provably `Send` (rustc's higher-ranked lifetimes),
    // and a commit's plan must be.
    let checks: Vec<_> = files
        .iter()
        .map(|(schema, path)| async move {
            if let Some(o) = view.owner_of_path(path).await? {
                return Ok::<_, Error>(Some(format!(
                    "file {path} of schema {schema:?} is already defined by schema {:?} (version {}) in namespace {:?}",
                    o.schema_id, o.version, view.namespace
                )));
            }
            if let Some(b) = builtins
                && let Some(o) = b.owner_of_path(path).await? {
                    return Ok(Some(format!(
                        "file {path} of schema {schema:?} is already defined by builtin schema {:?} (version {}) in {BUILTINS}",
                        o.schema_id, o.version
                    )));
                }
            Ok(None)
        })
        .collect();
    let clashes: Vec<Option<String>> = futures::stream::iter(checks)
        .buffered(16)
        .try_collect()
        .await?;
    match clashes.into_iter().flatten().next() {
        Some(msg) => Err(Error::InvalidInput(msg)),
        None => Ok(()),
    }
}

/// The names defined by the files being published, checked against every
/// other schema that claims the same packages.
pub async fn check_symbols(
    view: &View,
    builtins: Option<&View>,
    pool: &DescriptorPool,
    files: &[(String, String)],
) -> Result<()> {
    // package → name → (schema, file) of ours.
    let mut ours: BTreeMap<String, BTreeMap<String, (String, String)>> = BTreeMap::new();
    for (schema, path) in files {
        let Some(file) = pool.get_file_by_name(path) else {
            continue;
        };
        let names = ours.entry(file.package_name().to_string()).or_default();
        for name in symbols(&file) {
            names.insert(name, (schema.clone(), path.clone()));
        }
    }
    for (package, names) in &ours {
        for v in std::iter::once(view).chain(builtins) {
            for (other, version) in v.package_claimants(package).await? {
                let theirs = defined_in(v, &other, version, package).await?;
                if let Some((name, (schema, path))) =
                    names.iter().find(|(n, _)| theirs.contains_key(*n))
                {
                    let where_ = if v.namespace == BUILTINS {
                        format!("builtin schema {other:?}")
                    } else {
                        format!("schema {other:?} (version {version})")
                    };
                    return Err(Error::InvalidInput(format!(
                        "{name}, defined in {path} of schema {schema:?}, is already defined in {} of {where_}",
                        theirs[name]
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Names a schema version's own files define in `package` → defining file.
async fn defined_in(
    view: &View,
    schema: &str,
    version: u64,
    package: &str,
) -> Result<BTreeMap<String, String>> {
    let own: BTreeSet<String> = view
        .files(schema, version)
        .await?
        .into_iter()
        .map(|f| f.path)
        .collect();
    let compiled = view
        .store
        .get_version(&view.namespace, schema, version)
        .await?
        .compiled;
    let pool = DescriptorPool::decode(compiled).map_err(|e| Error::Corrupt {
        key: format!("descriptor of {schema} version {version}"),
        reason: e.to_string(),
    })?;
    let mut out = BTreeMap::new();
    for f in pool
        .files()
        .filter(|f| own.contains(f.name()) && f.package_name() == package)
    {
        for name in symbols(&f) {
            out.insert(name, f.name().to_string());
        }
    }
    Ok(out)
}
