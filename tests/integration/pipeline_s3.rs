//! A data pipeline that knows only bucket, prefix, namespace and schema
//! finds and reads the current descriptor with plain GETs, using aws-sdk-s3
//! and JSON alone (no protoshelf code): the recipe in
//! docs/storage-format.md, "Reading the current descriptor without protoshelf".

use crate::common;

use std::collections::BTreeMap;

use aws_sdk_s3::Client;
use common::data::*;
use prost::Message;
use protoshelf::ObjStore;
use protoshelf::store::StageChange;
use serde_json::Value;

struct Reader {
    client: Client,
    bucket: String,
    prefix: String,
    gets: usize,
}

impl Reader {
    /// GET an object; None for NoSuchKey.
    async fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        self.gets += 1;
        let key = format!("{}/{key}", self.prefix);
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(o) => Some(o.body.collect().await.unwrap().into_bytes().to_vec()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => None,
            Err(e) => panic!("GET {key}: {e:?}"),
        }
    }

    async fn json(&mut self, key: &str) -> Option<Value> {
        self.get(key)
            .await
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    /// Steps 1–3: the namespace's current pointers.
    async fn pointers(&mut self, ns: &str) -> BTreeMap<String, Value> {
        let log = |seq: u64| format!("ns/{ns}/log/{seq:020}.json");
        // 1. The hint names a recent entry (0 when absent).
        let hint = self
            .json(&format!("ns/{ns}/head.json"))
            .await
            .map_or(0, |h| h["seq"].as_u64().unwrap());
        let mut schemas: BTreeMap<String, Value> = BTreeMap::new();
        let mut seq = 0;
        if hint > 0 {
            // 2. That entry, and if it is a delta, the chain from its checkpoint.
            let last = self.json(&log(hint)).await.expect("hinted entry exists");
            let base = last["base"].as_u64().unwrap();
            let mut chain = Vec::new();
            if last.get("state").is_none() {
                for s in base.max(1)..hint {
                    chain.push(self.json(&log(s)).await.unwrap());
                }
            }
            chain.push(last);
            for entry in chain {
                apply(&mut schemas, &entry);
            }
            seq = hint;
        }
        // 3. Probe past it until an entry is missing.
        while let Some(entry) = self.json(&log(seq + 1)).await {
            apply(&mut schemas, &entry);
            seq += 1;
        }
        schemas
    }

    /// Steps 4–5: the schema's current manifest, then its descriptor.
    async fn current_descriptor(&mut self, ns: &str, schema: &str) -> Vec<u8> {
        let pointers = self.pointers(ns).await;
        let v = pointers[schema]["current"]
            .as_u64()
            .expect("schema has a current version");
        let manifest = self
            .json(&format!("ns/{ns}/versions/{schema}/{v:020}.json"))
            .await
            .unwrap();
        let key = manifest["descriptor"]["key"].as_str().unwrap().to_string();
        let bytes = self.get(&key).await.unwrap();
        assert_eq!(
            sha(&bytes),
            manifest["descriptor"]["sha256"].as_str().unwrap()
        );
        bytes
    }
}

/// A checkpoint replaces the state; a delta replaces the pointers it names.
fn apply(schemas: &mut BTreeMap<String, Value>, entry: &Value) {
    if let Some(state) = entry.get("state") {
        *schemas = serde_json::from_value(state["schemas"].clone()).unwrap();
    } else {
        for (k, v) in entry["changes"].as_object().unwrap() {
            schemas.insert(k.clone(), v.clone());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipeline_reads_current_descriptor_with_plain_gets() {
    let Some((url, _)) = common::fresh_url(common::Backend::S3).await else {
        return;
    };
    let s = ObjStore::open(&url).await.unwrap();
    s.create_namespace(&namespace("events")).await.unwrap();
    // Enough schemas that entries are deltas over checkpoints.
    let ids: Vec<String> = (0..300).map(|i| format!("schema-{i:04}")).collect();
    let mut changes = Vec::new();
    for id in &ids {
        s.create_schema(&schema("events", id)).await.unwrap();
        let v = publish(&s, "events", id, &format!("{id}-v1")).await;
        changes.push(StageChange {
            schema_id: id.clone(),
            version: Some(v),
        });
    }
    s.stage("events", &changes).await.unwrap();
    s.promote("events").await.unwrap();
    let target = &ids[7];
    let mut expected = Vec::new();
    for round in 2..=5 {
        let v = publish(&s, "events", target, &format!("round{round}")).await;
        s.set_staged("events", target, v).await.unwrap();
        s.promote("events").await.unwrap();
        expected = s
            .get_version("events", target, v)
            .await
            .unwrap()
            .compiled
            .to_vec();
    }
    // Something staged but not promoted must not be what the pipeline reads.
    let staged = publish(&s, "events", target, "staged-only").await;
    s.set_staged("events", target, staged).await.unwrap();

    let (bucket, prefix) = url.trim_start_matches("s3://").split_once('/').unwrap();
    let mut reader = Reader {
        client: common::s3_client().await,
        bucket: bucket.into(),
        prefix: prefix.into(),
        gets: 0,
    };
    let bytes = reader.current_descriptor("events", target).await;
    assert_eq!(bytes, expected);
    let set = prost_types::FileDescriptorSet::decode(bytes.as_slice()).unwrap();
    assert_eq!(set.file[0].name(), format!("{target}.proto"));
    eprintln!(
        "pipeline read the current descriptor with {} plain GETs",
        reader.gets
    );
    assert!(reader.gets <= 12, "{} GETs", reader.gets);

    // A stale hint only costs probes; the answer is the same.
    reader
        .client
        .put_object()
        .bucket(bucket)
        .key(format!("{prefix}/ns/events/head.json"))
        .body(br#"{"seq":1}"#.to_vec().into())
        .send()
        .await
        .unwrap();
    assert_eq!(reader.current_descriptor("events", target).await, expected);
}
