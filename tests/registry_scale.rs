//! Lazy resolution: publishing into a namespace of 1,000 schemas costs the
//! same requests as publishing into one of 10 (the registry reads only the
//! files imports reach, never every schema).

mod common;

use common::{Backend, TestStore};
use protoshelf::compat::Policy;
use protoshelf::objstore::log::CHAIN_MAX;
use protoshelf::objstore::metrics::RequestCounts;
use protoshelf::registry::{BatchMember, Registry, SourceFile};

on_every_backend!(publish_and_promote_cost_is_flat_in_namespace_size);

fn schema_file(i: usize) -> SourceFile {
    SourceFile::new(
        format!("s{i}/s{i}.proto"),
        format!("syntax = \"proto3\";\npackage p{i};\nmessage M{i} {{ string id = 1; }}\n"),
    )
}

/// Requests of (publish, promote) of one small schema importing one file,
/// from a warm handle and from a cold one, in a namespace of `n` schemas.
async fn measure(t: &TestStore, ns: &str, n: usize) -> [(RequestCounts, RequestCounts); 2] {
    let r = Registry::new(t.store.clone());
    r.create_namespace(ns, Policy::Strict, Default::default())
        .await
        .unwrap();
    let members: Vec<BatchMember> = (0..n)
        .map(|i| BatchMember {
            schema_id: format!("s{i}"),
            files: vec![schema_file(i)],
        })
        .collect();
    r.publish_many(ns, members, Default::default())
        .await
        .unwrap();
    r.promote(ns, false).await.unwrap();
    let mut out = Vec::new();
    for (round, cold) in [false, true].into_iter().enumerate() {
        let handle = if cold {
            Registry::new(t.reopen().await)
        } else {
            r.clone()
        };
        let text = format!(
            "syntax = \"proto3\";\npackage app{round};\nimport \"s3/s3.proto\";\nmessage App{round} {{ p3.M3 m = 1; }}\n"
        );
        let file = SourceFile::new(format!("app{round}/app.proto"), text);
        let store = handle.store().clone();
        let before = store.requests();
        handle
            .publish(ns, &format!("app{round}"), vec![file], Default::default())
            .await
            .unwrap();
        let publish = store.requests() - before;
        let before = store.requests();
        handle.promote(ns, false).await.unwrap();
        out.push((publish, store.requests() - before));
    }
    [out[0], out[1]]
}

async fn publish_and_promote_cost_is_flat_in_namespace_size(t: TestStore) {
    let large = if t.backend == Backend::S3 { 300 } else { 1000 };
    let small = measure(&t, "small", 10).await;
    let big = measure(&t, "big", large).await;
    for (label, (s, b)) in ["warm", "cold"].iter().zip(small.iter().zip(big.iter())) {
        eprintln!("{:?} {label}: publish 10 schemas: {}", t.backend, s.0);
        eprintln!("{:?} {label}: publish {large} schemas: {}", t.backend, b.0);
        eprintln!("{:?} {label}: promote 10 schemas: {}", t.backend, s.1);
        eprintln!("{:?} {label}: promote {large} schemas: {}", t.backend, b.1);
    }
    // Warm: exactly the same requests whatever the namespace's size.
    assert_eq!(
        small[0], big[0],
        "warm publish/promote cost grew with the namespace"
    );
    // Cold: only opening the namespace may cost more (a checkpoint chain,
    // bounded by CHAIN_MAX), never a read per schema.
    for (s, b) in [(small[1].0, big[1].0), (small[1].1, big[1].1)] {
        assert!(
            b.total() <= s.total() + CHAIN_MAX,
            "cold cost grew with the namespace: {s} vs {b}"
        );
        assert_eq!((s.list, s.put), (b.list, b.put));
    }
}
