//! Criterion micro-benchmarks of the hot paths, on the in-memory store so
//! they measure protoshelf's own CPU, not storage latency:
//! normalization and hashing, compiling a large schema, one commit, and a
//! FUSE-core lookup plus read.
//!
//!   cargo bench --bench micro

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use protoshelf::ObjStore;
use protoshelf::compat::Policy;
use protoshelf::fs::{FsCore, Options};
use protoshelf::registry::normalize::normalize;
use protoshelf::registry::{Registry, SourceFile};
use protoshelf::store::StageChange;
use sha2::{Digest, Sha256};
use tokio::runtime::Runtime;

mod common;
use common::small_schema;

/// A proto file of `messages` messages with 20 fields each.
fn large_proto(messages: usize) -> String {
    let mut s = String::from("syntax = \"proto3\";\npackage big;\n\n");
    for m in 0..messages {
        s.push_str(&format!(
            "// Message {m}, with a comment kept in source info.\nmessage M{m} {{\n"
        ));
        for f in 1..=20 {
            s.push_str(&format!("  string field_{f} = {f};\n"));
        }
        s.push_str("}\n\n");
    }
    s
}

/// A memory store with namespace `bench` holding `n` promoted schemas.
fn namespace(rt: &Runtime, name: &str, n: usize) -> Registry {
    let reg = Registry::new(
        rt.block_on(ObjStore::open(&format!("memory://{name}")))
            .unwrap(),
    );
    rt.block_on(async {
        reg.create_namespace("bench", Policy::Strict, Default::default())
            .await?;
        reg.publish_many(
            "bench",
            (0..n).map(small_schema).collect(),
            Default::default(),
        )
        .await?;
        reg.promote("bench", false).await?;
        Ok::<_, protoshelf::Error>(())
    })
    .unwrap();
    reg
}

fn normalize_and_hash(c: &mut Criterion) {
    let text = large_proto(2000);
    let mut g = c.benchmark_group("normalize");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("normalize+sha256 1 file", |b| {
        b.iter(|| {
            let n = normalize("big/big.proto", text.as_bytes()).unwrap();
            Sha256::digest(n.as_bytes())
        })
    });
    g.finish();
}

fn compile_large_schema(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let reg = namespace(&rt, "micro-compile", 10);
    let files = vec![SourceFile::new("big/big.proto", large_proto(500))];
    c.bench_function("compile: check of a 500-message schema", |b| {
        b.iter(|| {
            rt.block_on(reg.check("bench", "big", files.clone(), false))
                .unwrap()
        })
    });
}

fn commit(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let reg = namespace(&rt, "micro-commit", 10_000);
    let store = reg.store().clone();
    let change = [StageChange {
        schema_id: "s1".into(),
        version: Some(1),
    }];
    c.bench_function(
        "commit: stage + discard in a 10,000-schema namespace",
        |b| {
            b.iter(|| {
                rt.block_on(async {
                    store.stage("bench", &change).await?;
                    store.discard_staging("bench").await
                })
                .unwrap()
            })
        },
    );
}

fn fs_lookup_read(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let reg = namespace(&rt, "micro-fs", 100);
    let core = FsCore::new(
        reg.store().clone(),
        rt.handle().clone(),
        Options {
            namespaces: vec![],
            refresh: Duration::from_secs(3600),
        },
    );
    let path = "bench/current/s42/s42.proto";
    core.content(path).unwrap(); // load the snapshot and the blob
    c.bench_function("fs core: entry + content of a cached file", |b| {
        b.iter(|| {
            core.entry(path).unwrap();
            core.content(path).unwrap()
        })
    });
}

criterion_group!(
    benches,
    normalize_and_hash,
    compile_large_schema,
    commit,
    fs_lookup_read
);
criterion_main!(benches);
