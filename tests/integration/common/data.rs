//! Test data: blobs, versions and descriptor sets.
#![allow(dead_code)]

use bytes::Bytes;
use chrono::Utc;
use prost::Message;
use protoshelf::ObjStore;
use protoshelf::model::*;

pub fn sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

pub fn blob(ns: &str, text: &str) -> ProtoBlob {
    ProtoBlob {
        namespace_id: ns.into(),
        sha256: sha(text.as_bytes()),
        source: Bytes::from(text.to_string()),
        created_at: None,
    }
}

/// A real, minimal FileDescriptorSet naming `file`, so readers can decode it.
pub fn descriptor(file: &str, token: &str) -> Bytes {
    let set = prost_types::FileDescriptorSet {
        file: vec![prost_types::FileDescriptorProto {
            name: Some(file.into()),
            package: Some(format!("pkg.t{}", token.replace('-', "_"))),
            syntax: Some("proto3".into()),
            ..Default::default()
        }],
    };
    set.encode_to_vec().into()
}

pub fn version(ns: &str, schema: &str, v: u64, token: &str) -> SchemaVersion {
    SchemaVersion {
        namespace_id: ns.into(),
        schema_id: schema.into(),
        version: v,
        compiled: descriptor(&format!("{schema}.proto"), token),
        compiler_version: "test".into(),
        created_at: Utc::now(),
        created_by: "tests".into(),
        metadata: [("token".to_string(), token.to_string())].into(),
    }
}

pub fn namespace(id: &str) -> Namespace {
    Namespace {
        id: id.into(),
        created_at: Utc::now(),
        metadata: Default::default(),
        created_by: None,
    }
}

pub fn schema(ns: &str, id: &str) -> Schema {
    Schema {
        namespace_id: ns.into(),
        schema_id: id.into(),
        current_version: None,
        staged_version: None,
        created_at: Utc::now(),
        metadata: Default::default(),
        deleted: false,
    }
}

/// Stores one file and a new version holding it; returns the version.
pub async fn publish(store: &ObjStore, ns: &str, schema: &str, token: &str) -> u64 {
    let b = blob(ns, &format!("syntax = \"proto3\"; // {token}\n"));
    store.put_blob(&b).await.unwrap();
    let files = [VersionFile {
        path: format!("{schema}.proto"),
        sha256: b.sha256.clone(),
        size: None,
    }];
    store
        .create_version(&version(ns, schema, 0, token), &files, &[])
        .await
        .unwrap()
}
