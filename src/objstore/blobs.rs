//! Content-addressed source blobs, and the hash check of every content-addressed read.

use object_store::path::Path;
use sha2::{Digest, Sha256};

use super::{ObjStore, keys};
use crate::error::{Error, Result};
use crate::model::*;

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(super) fn validate_sha256(sha: &str) -> Result<()> {
    if sha.len() == 64 && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "{sha:?} is not a SHA-256 (64 lowercase hex digits)"
        )))
    }
}

impl ObjStore {
    /// Reads a content-addressed object; its hash is checked when it comes
    /// from storage (cached copies were checked, or written by this handle).
    pub(super) async fn verified(
        &self,
        key: &Path,
        sha: &str,
        what: &str,
    ) -> Result<super::io::Object> {
        let check = |obj: &super::io::Object| {
            let actual = sha256_hex(&obj.bytes);
            if actual == sha {
                Ok(())
            } else {
                Err(Error::Corrupt {
                    key: key.to_string(),
                    reason: format!("content hashes to {actual}, not to its key"),
                })
            }
        };
        self.io()
            .get_checked(key, check)
            .await?
            .ok_or_else(|| Error::NotFound(what.to_string()))
    }

    /// Stores a source blob; a no-op when the same blob is already stored.
    /// Fails with `InvalidInput` when `sha256` is not the hash of `source`.
    pub async fn put_blob(&self, blob: &ProtoBlob) -> Result<()> {
        self.require_namespace(&blob.namespace_id).await?;
        validate_sha256(&blob.sha256)?;
        let actual = sha256_hex(&blob.source);
        if actual != blob.sha256 {
            return Err(Error::InvalidInput(format!(
                "blob content hashes to {actual}, not to the given {}",
                blob.sha256
            )));
        }
        let key = keys::blob(&blob.namespace_id, &blob.sha256);
        if self.io().known(&key) {
            return Ok(());
        }
        self.io()
            .create_collectable(&key, blob.source.clone())
            .await
    }

    /// Reads a blob, verifying its hash (a mismatch is `Corrupt`).
    pub async fn get_blob(&self, namespace_id: &str, sha256: &str) -> Result<ProtoBlob> {
        self.require_namespace(namespace_id).await?;
        validate_sha256(sha256)?;
        let key = keys::blob(namespace_id, sha256);
        let what = format!("blob {sha256} in namespace {namespace_id:?}");
        let obj = self.verified(&key, sha256, &what).await?;
        Ok(ProtoBlob {
            namespace_id: namespace_id.to_string(),
            sha256: sha256.to_string(),
            source: obj.bytes,
            created_at: Some(obj.last_modified),
        })
    }
}
