//! One owner per path and per name: within a namespace's proposed tree (and
//! against its ancestors: parent chain, then builtins) a file path belongs
//! to one schema, and a
//! fully-qualified name is defined by one file. Checked before anything is
//! written, so the merged tree always compiles as one.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt};
use prost::Message;

use super::compile::{Compiled, Origin, Sources, symbols};
use super::view::View;
use crate::error::{Error, Result};
use crate::ids::BUILTINS;

/// Files being published: (schema, path).
pub async fn check_paths(
    view: &View,
    ancestors: &[std::sync::Arc<View>],
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
            for a in ancestors {
                if let Some(o) = a.owner_of_path(path).await? {
                    let what = if a.namespace == BUILTINS { "builtin schema" } else { "schema" };
                    return Ok(Some(format!(
                        "file {path} of schema {schema:?} is already defined by {what} {:?} (version {}) in ancestor namespace {:?}",
                        o.schema_id, o.version, a.namespace
                    )));
                }
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
/// other schema that claims the same packages. `sources` tells which of
/// those schemas' files the compile already holds (imported): their names
/// are read from `pool`, without a request.
pub async fn check_symbols(
    view: &View,
    ancestors: &[std::sync::Arc<View>],
    pool: &Compiled,
    sources: &Sources,
    files: &[(String, String)],
) -> Result<()> {
    // package → name → (schema, file) of ours.
    let mut ours: BTreeMap<String, BTreeMap<String, (String, String)>> = BTreeMap::new();
    for (schema, path) in files {
        let Some(file) = pool.proto(path) else {
            continue;
        };
        let names = ours.entry(file.package().to_string()).or_default();
        for name in symbols(&file) {
            names.insert(name, (schema.clone(), path.clone()));
        }
    }
    for (package, names) in &ours {
        for v in std::iter::once(view).chain(ancestors.iter().map(|a| &**a)) {
            let claimants = v.package_claimants(package).await?;
            let theirs: Vec<BTreeMap<String, String>> = // Owned items: a closure over borrowed ones is not general
            // enough for the Send future a commit plan must be.
            futures::stream::iter(claimants.iter().cloned())
                .map(|(other, version)| async move {
                    defined_in(v, &other, version, package, pool, sources).await
                })
                .buffered(16)
                .try_collect()
                .await?;
            for ((other, version), theirs) in claimants.iter().zip(theirs) {
                if let Some((name, (schema, path))) =
                    names.iter().find(|(n, _)| theirs.contains_key(*n))
                {
                    let where_ = if v.namespace == BUILTINS {
                        format!("builtin schema {other:?}")
                    } else if v.namespace != view.namespace {
                        format!(
                            "schema {other:?} (version {version}) of ancestor namespace {:?}",
                            v.namespace
                        )
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

/// Names a schema version's own files define in `package` → defining file:
/// from the compile's pool when it imported every one of those files
/// (same content), else from the version's stored descriptor set, decoded
/// without linking (only the version's own files are read from it).
async fn defined_in(
    view: &View,
    schema: &str,
    version: u64,
    package: &str,
    pool: &Compiled,
    sources: &Sources,
) -> Result<BTreeMap<String, String>> {
    let own = view.files(schema, version).await?;
    let imported = own.iter().all(|f| {
        matches!(sources.files.get(&f.path),
            Some((_, Origin::Namespace(o) | Origin::Ancestor(_, o))) if o.sha256 == f.sha256)
            && pool.get(&f.path).is_some()
    });
    let protos: Vec<prost_types::FileDescriptorProto> = if imported {
        own.iter().filter_map(|f| pool.proto(&f.path)).collect()
    } else {
        let compiled = view
            .store
            .get_version(&view.namespace, schema, version)
            .await?
            .compiled;
        let set = prost_types::FileDescriptorSet::decode(compiled).map_err(|e| Error::Corrupt {
            key: format!("descriptor of {schema} version {version}"),
            reason: e.to_string(),
        })?;
        let paths: BTreeSet<&str> = own.iter().map(|f| f.path.as_str()).collect();
        set.file
            .into_iter()
            .filter(|f| paths.contains(f.name()))
            .collect()
    };
    let mut out = BTreeMap::new();
    for f in protos.iter().filter(|f| f.package() == package) {
        for name in symbols(f) {
            out.insert(name, f.name().to_string());
        }
    }
    Ok(out)
}
