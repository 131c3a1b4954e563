//! The claims index: which schemas ever defined a directory (or, in format-1
//! stores, a path) or a package, so an import's owner is found without
//! reading every schema.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;

use super::records::*;
use super::{ObjStore, keys};
use crate::error::{Error, Result};
use crate::store::ClaimKind;

/// Claim PUTs in flight at once (a large load writes hundreds).
pub(super) const CLAIM_WRITE_CONCURRENCY: usize = 32;

pub(super) fn claim_key(ns: &str, kind: ClaimKind, name: &str, schema: &str) -> Path {
    match kind {
        ClaimKind::Dir => keys::dir_claim(ns, name, schema),
        _ => keys::claim(ns, kind.as_str(), name, schema),
    }
}

/// Claim names are file paths or packages; a directory may also be the
/// root (`""`), and a package the root package of files without one.
pub(super) fn validate_claim_name(kind: ClaimKind, name: &str) -> Result<()> {
    if kind != ClaimKind::Path && name.is_empty() {
        return Ok(());
    }
    crate::ids::validate_name("claim", name)
}

impl ObjStore {
    /// Whether this store claims directories (format 2) or paths (format 1).
    pub fn claims_dirs(&self) -> bool {
        self.inner.marker.format_version >= FORMAT_DIR_CLAIMS
    }

    /// Each store has one layout of path claims: refuse the other one.
    pub(super) fn check_claim_kind(&self, kind: ClaimKind) -> Result<()> {
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

    /// Records that `schema_id` defines each of `names` (idempotent).
    pub async fn add_claims(
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

    /// Which claim stands for the file `path` in this store: its directory
    /// (format 2), or the path itself (format 1).
    pub fn path_claim(&self, path: &str) -> (ClaimKind, String) {
        if self.claims_dirs() {
            (ClaimKind::Dir, crate::store::dir_of(path).to_string())
        } else {
            (ClaimKind::Path, path.to_string())
        }
    }

    /// The schemas that ever claimed `name`, sorted.
    pub async fn claimants(
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
            let dir = keys::claimants(namespace_id, kind.as_str(), name);
            self.list_ids(&dir, "", None).await?
        };
        self.learn_claims(namespace_id, kind, name, &found);
        Ok(found)
    }

    /// Every claim in the namespace, by kind: name → claimants (one LIST
    /// sweep, instead of a LIST per name, for batches and small namespaces).
    pub async fn all_claims(
        &self,
        namespace_id: &str,
    ) -> Result<BTreeMap<ClaimKind, BTreeMap<String, Vec<String>>>> {
        self.require_namespace(namespace_id).await?;
        self.all_claims_of_known(namespace_id).await
    }

    /// [`Self::all_claims`] of a namespace the caller knows exists (it
    /// holds a state of its log): the LIST alone, no GET of its record.
    pub async fn all_claims_of_known(
        &self,
        namespace_id: &str,
    ) -> Result<BTreeMap<ClaimKind, BTreeMap<String, Vec<String>>>> {
        crate::ids::validate_namespace_id(namespace_id)?;
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
                    Some((keys::claim_name(name), schema.clone()))
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
}
