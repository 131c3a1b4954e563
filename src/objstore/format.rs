//! The format marker and the create-if-absent probe, run when a store is
//! opened: protoshelf refuses a store it could corrupt.

use bytes::Bytes;
use chrono::Utc;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::io::{Created, Io};
use super::keys;
use super::records::*;
use crate::error::{Error, Result};

const FORMAT_NAME: &str = "protoshelf";

/// Checks the marker, creating it (after the probe) on first use.
pub async fn ensure(io: &Io) -> Result<FormatMarker> {
    let key = keys::marker();
    if let Some(obj) = io.get(&key).await? {
        let marker = check(from_json(key.as_ref(), &obj.bytes)?)?;
        io.set_marker(obj.bytes.clone());
        return Ok(marker);
    }
    // First use, or a marker that was lost: initializing a store that
    // holds data could give it another format than its objects have.
    if holds_data(io).await? {
        return Err(missing_marker());
    }
    probe_create_if_absent(io).await?;
    let marker = FormatMarker {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        created_at: Utc::now(),
        writer_id: uuid::Uuid::new_v4().to_string(),
        reader_contract: Some(READER_CONTRACT_VERSION),
    };
    let mine = marker.writer_id.clone();
    match io
        .create_record::<FormatMarker>(&key, to_json(&marker), |m| m.writer_id == mine)
        .await?
    {
        Created::Mine => Ok(marker),
        // Another process initialized the store at the same moment.
        Created::Theirs(theirs) => check(theirs),
    }
}

/// Checks the marker of a store that must exist already: no marker is
/// [`Error::NoStore`] and nothing is written.
pub async fn require(io: &Io, url: &str) -> Result<FormatMarker> {
    let key = keys::marker();
    match io.get(&key).await? {
        Some(obj) => {
            let marker = check(from_json(key.as_ref(), &obj.bytes)?)?;
            io.set_marker(obj.bytes.clone());
            Ok(marker)
        }
        None if holds_data(io).await? => Err(missing_marker()),
        None => Err(Error::NoStore { url: url.into() }),
    }
}

/// Reads the marker without ever writing one (for `verify`): the marker,
/// or what is wrong with it.
pub async fn inspect(io: &Io) -> Result<std::result::Result<FormatMarker, Error>> {
    let key = keys::marker();
    Ok(match io.get(&key).await? {
        Some(obj) => from_json(key.as_ref(), &obj.bytes).and_then(check),
        None if holds_data(io).await? => Err(missing_marker()),
        None => Err(Error::NotFound(format!(
            "a protoshelf store (no {key}; `protoshelf init` creates one)"
        ))),
    })
}

/// Whether the store has protoshelf objects besides the marker (and the
/// probe's scratch objects): namespaces, their objects, or the schema IDs
/// `serve` allocates.
async fn holds_data(io: &Io) -> Result<bool> {
    let top = io
        .os
        .list_with_delimiter(None)
        .await
        .map_err(Error::Storage)?;
    Ok(top
        .common_prefixes
        .iter()
        .any(|p| matches!(p.as_ref(), "namespaces" | "ns" | "confluent")))
}

fn missing_marker() -> Error {
    Error::Corrupt {
        key: keys::marker().to_string(),
        reason: "missing, but the store holds protoshelf objects: it is not re-created (that could give the objects another format); restore the marker from a backup (or write one naming the store's format), then run `protoshelf verify`".into(),
    }
}

fn check(marker: FormatMarker) -> Result<FormatMarker> {
    if marker.format != FORMAT_NAME {
        return Err(Error::Unsupported(format!(
            "{} is not a protoshelf marker (format {:?})",
            keys::marker(),
            marker.format
        )));
    }
    if marker.format_version > FORMAT_VERSION {
        return Err(Error::Unsupported(format!(
            "the store uses storage format {}, newer than this protoshelf supports ({FORMAT_VERSION}); upgrade protoshelf",
            marker.format_version
        )));
    }
    Ok(marker)
}

/// Writes a scratch object twice with create-if-absent: the second write
/// must be refused. Some S3-compatible stores ignore `If-None-Match` and
/// overwrite; on those, commits could be lost, so they are refused.
async fn probe_create_if_absent(io: &Io) -> Result<()> {
    let key = keys::probe(&uuid::Uuid::new_v4().to_string());
    let create = || PutOptions::from(PutMode::Create);
    let first = io
        .os
        .put_opts(&key, PutPayload::from(Bytes::from_static(b"1")), create())
        .await;
    let second = match first {
        Ok(_) => Some(
            io.os
                .put_opts(&key, PutPayload::from(Bytes::from_static(b"2")), create())
                .await,
        ),
        Err(_) => None,
    };
    // Best effort: a leftover probe object is harmless.
    let _ = io.os.delete(&key).await;
    match (first, second) {
        (Err(object_store::Error::NotImplemented { .. }), _)
        | (Err(object_store::Error::NotSupported { .. }), _) => Err(Error::Unsupported(
            "the backend does not support create-if-absent writes, which protoshelf's commits need".into(),
        )),
        (Err(e), _) => Err(Error::Storage(e)),
        (Ok(_), Some(Err(object_store::Error::AlreadyExists { .. }))) => Ok(()),
        (Ok(_), Some(Ok(_))) => Err(Error::Unsupported(
            "the backend overwrote an existing object on a create-if-absent write (it ignores If-None-Match); concurrent commits would be lost".into(),
        )),
        (Ok(_), Some(Err(e))) => Err(Error::Storage(e)),
        (Ok(_), None) => unreachable!("second write runs after a successful first"),
    }
}
