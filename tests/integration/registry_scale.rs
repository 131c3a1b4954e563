//! Lazy resolution: publishing into a namespace of 1,000 schemas costs the
//! same requests as publishing into one of 10 (the registry reads only the
//! files imports reach, never every schema), and deep import chains load
//! and are imported at a cost that does not grow with their depth.

use crate::common;

use common::{Backend, TestStore};
use protoshelf::compat::Policy;
use protoshelf::objstore::log::CHAIN_MAX;
use protoshelf::objstore::metrics::RequestCounts;
use protoshelf::registry::{BatchMember, Registry, SourceFile};

on_every_backend!(
    publish_and_promote_cost_is_flat_in_namespace_size,
    deep_import_chains_load_and_cost_the_same_as_shallow_ones,
);

fn schema_file(i: usize) -> SourceFile {
    SourceFile::new(
        format!("s{i}/s{i}.proto"),
        format!("syntax = \"proto3\";\npackage p{i};\nmessage M{i} {{ string id = 1; }}\n"),
    )
}

/// The budget of one publish of a small schema (importing one file) and of
/// one promote, from a warm handle, at any position in the log (the move
/// marker of the schema it stages included, and the namespace set and set
/// marker of its stage commit).
const PUBLISH_BUDGET: u64 = 16;
const PROMOTE_BUDGET: u64 = 7;

/// What one warm or cold round costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Round {
    publish: RequestCounts,
    promote: Option<RequestCounts>,
}

/// Requests of publishes of one small schema importing one file (and of
/// promotes, every other round), from a warm handle over two hint cycles so
/// every log position is measured, then from a cold handle; in a namespace
/// of `n` schemas.
async fn measure(t: &TestStore, ns: &str, n: usize) -> (Vec<Round>, Round) {
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
    let mut warm = Vec::new();
    let rounds = 2 * CHAIN_MAX as usize;
    for round in 0..=rounds {
        let cold = round == rounds;
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
        // Promoting every other round puts publishes and promotes on every
        // position of the hint cycle.
        let promote = if round % 2 == 0 || cold {
            let before = store.requests();
            handle.promote(ns, false).await.unwrap();
            Some(store.requests() - before)
        } else {
            None
        };
        let m = Round { publish, promote };
        if cold {
            return (warm, m);
        }
        warm.push(m);
    }
    unreachable!()
}

fn counts(get: u64, get_not_found: u64, list: u64, put: u64) -> RequestCounts {
    RequestCounts {
        get,
        get_not_found,
        list,
        put,
        ..Default::default()
    }
}

async fn publish_and_promote_cost_is_flat_in_namespace_size(t: TestStore) {
    let large = match t.backend {
        Backend::Memory => 10_000,
        Backend::Local => 1000,
        Backend::S3 => 300,
    };
    let (small_warm, small_cold) = measure(&t, "small", 10).await;
    let (big_warm, big_cold) = measure(&t, "big", large).await;
    for (label, rounds) in [("10", &small_warm), (&*large.to_string(), &big_warm)] {
        for m in rounds.iter() {
            eprintln!(
                "{:?} warm, {label} schemas: publish {}",
                t.backend, m.publish
            );
            if let Some(p) = m.promote {
                eprintln!("{:?} warm, {label} schemas: promote {p}", t.backend);
            }
        }
    }
    eprintln!("{:?} cold, 10 schemas: {small_cold:?}", t.backend);
    eprintln!("{:?} cold, {large} schemas: {big_cold:?}", t.backend);
    // Warm: exactly the same requests whatever the namespace's size.
    assert_eq!(
        small_warm, big_warm,
        "warm publish/promote cost grew with the namespace"
    );
    // Exactly: the freshness check (GET of the next entry, not found), the
    // builtins check (not found), a LIST of the new file's directory claims
    // and of its package's claims (the import's owner is known), the blob,
    // schema record, directory and package claims, descriptor, manifest
    // (number 1 of a schema just created: no LIST), the LIST past the log's
    // end (no gap under the commit), the schema's move marker, the log
    // entry and the hint. A promote: the check, the LIST, the marker, the
    // entry and the hint.
    // The stage commit writes the staged namespace set and its marker.
    let publish = counts(2, 2, 3, 11);
    // One marker per schema promoted: round 0 promotes one, later rounds
    // the two published since; and the set marker (the current set is the
    // staged set the publish wrote).
    let promote = |schemas: u64| counts(1, 1, 1, 3 + schemas);
    let publishes: Vec<RequestCounts> = small_warm.iter().map(|m| m.publish).collect();
    let promotes: Vec<RequestCounts> = small_warm.iter().filter_map(|m| m.promote).collect();
    assert!(publishes.iter().all(|c| *c == publish), "{publishes:?}");
    assert!(
        promotes
            .iter()
            .enumerate()
            .all(|(i, c)| *c == promote(if i == 0 { 1 } else { 2 })),
        "{promotes:?}"
    );
    // Every position of the checkpoint cycle was measured.
    assert!(publishes.len() as u64 >= CHAIN_MAX, "{publishes:?}");
    assert_eq!(publish.total(), PUBLISH_BUDGET);
    assert!(promote(2).total() <= PROMOTE_BUDGET);
    // Cold: only opening the namespace may cost more (a walk from the
    // hinted checkpoint, bounded by CHAIN_MAX), never a read per schema.
    let pairs = [
        (small_cold.publish, big_cold.publish),
        (small_cold.promote.unwrap(), big_cold.promote.unwrap()),
    ];
    for (s, b) in pairs {
        assert!(
            b.total() <= s.total() + CHAIN_MAX,
            "cold cost grew with the namespace: {s} vs {b}"
        );
        assert_eq!((s.list, s.put), (b.list, b.put));
    }
}

/// `c/f{k}.proto`, one schema each, importing `c/f{k-1}.proto` (all in
/// package `c`, so every publish checks its names against every claimant).
fn chain_member(k: usize) -> BatchMember {
    let (import, field) = if k == 0 {
        (String::new(), "int32 x = 1;".to_string())
    } else {
        (
            format!("import \"c/f{}.proto\";\n", k - 1),
            format!("M{} prev = 1;", k - 1),
        )
    };
    BatchMember {
        schema_id: format!("c.f{k}"),
        files: vec![SourceFile::new(
            format!("c/f{k}.proto"),
            format!("syntax = \"proto3\";\npackage c;\n{import}message M{k} {{ {field} }}\n"),
        )],
    }
}

/// The requests of what follows loading a `depth`-deep chain into a new
/// namespace in one batch: a push importing its top (warm, then from a cold
/// handle) and a 10-deep chain loaded on top of it.
async fn on_top_of_chain(t: &TestStore, ns: &str, depth: usize) -> [RequestCounts; 3] {
    let r = Registry::new(t.store.clone());
    r.create_namespace(ns, Policy::Strict, Default::default())
        .await
        .unwrap();
    // Listed top first: the registry orders the batch itself.
    let members: Vec<BatchMember> = (0..depth).rev().map(chain_member).collect();
    let out = r
        .publish_many(ns, members, Default::default())
        .await
        .unwrap();
    assert_eq!(out.len(), depth);
    assert!(out.iter().all(|p| p.version == 1 && !p.no_change));
    let top = |schema: &str| {
        vec![SourceFile::new(
            format!("{schema}/top.proto"),
            format!(
                "syntax = \"proto3\";\npackage {schema};\nimport \"c/f{}.proto\";\nmessage Top {{ c.M{} last = 1; }}\n",
                depth - 1,
                depth - 1
            ),
        )]
    };
    let before = t.store.requests();
    r.publish(ns, "warm", top("warm"), Default::default())
        .await
        .unwrap();
    let warm = t.store.requests() - before;
    let cold_store = t.reopen().await;
    let cold = Registry::new(cold_store.clone());
    cold.publish(ns, "cold", top("cold"), Default::default())
        .await
        .unwrap();
    let cold = cold_store.requests();
    let before = t.store.requests();
    let more: Vec<BatchMember> = (depth..depth + 10).map(chain_member).collect();
    let out = r.publish_many(ns, more, Default::default()).await.unwrap();
    assert_eq!(out.len(), 10);
    let load = t.store.requests() - before;
    // What was stored compiles: the top of the new chain imports it all.
    let stored = t
        .store
        .get_version(ns, &format!("c.f{}", depth + 9), 1)
        .await
        .unwrap();
    let pool = prost_reflect::DescriptorPool::decode(stored.compiled).unwrap();
    assert!(pool.get_message_by_name("c.M0").is_some());
    [warm, cold, load]
}

/// A 1,500-deep chain used to overflow the stack, a push importing the top
/// of a stored 1,200-deep one did not finish in ten minutes (every level
/// was looked up and walked recursively). Now a deep chain loads, and what
/// builds on it costs what it costs on a 3-deep chain, plus, from a cold
/// handle, the closure's manifests and blobs (one GET each, fetched in a few
/// parallel rounds from the top's recorded deps), never a LIST per level.
async fn deep_import_chains_load_and_cost_the_same_as_shallow_ones(t: TestStore) {
    let deep = match t.backend {
        Backend::Memory => 600,
        Backend::Local => 300,
        Backend::S3 => 150,
    };
    let [s_warm, s_cold, s_load] = on_top_of_chain(&t, "shallow", 3).await;
    let [d_warm, d_cold, d_load] = on_top_of_chain(&t, "deep", deep).await;
    eprintln!(
        "{:?}: push on top warm/cold, load of 10 on top: 3 deep {s_warm} / {s_cold} / {s_load}; \
         {deep} deep {d_warm} / {d_cold} / {d_load}",
        t.backend
    );
    assert_eq!(
        s_warm, d_warm,
        "a warm push cost grew with the chain's depth"
    );
    assert!(d_warm.total() <= PUBLISH_BUDGET, "{d_warm}");
    let levels = deep as u64 - 3;
    // Per level: its manifest and blob. Beyond that, a cold handle reads
    // the two namespaces' logs from their hinted checkpoints, and where
    // each log stands in its CHAIN_MAX-entry checkpoint cycle differs by up
    // to CHAIN_MAX entries (and the published-version index reads each).
    let slack = 2 * protoshelf::objstore::log::CHAIN_MAX;
    let per_level = s_cold.get + 2 * levels;
    assert!(
        (per_level..=per_level + slack).contains(&d_cold.get),
        "a cold push reads more than each level's manifest and blob: {d_cold} vs {s_cold}"
    );
    assert_eq!(
        (d_cold.get_not_found, d_cold.list, d_cold.put),
        (s_cold.get_not_found, s_cold.list, s_cold.put),
    );
    assert_eq!(
        (d_load.get, d_load.get_not_found, d_load.put),
        (s_load.get, s_load.get_not_found, s_load.put)
    );
    // Claims LISTs of the shared directory and package (which hold `deep`
    // claims) may page; never one per level.
    assert!(d_load.list <= s_load.list + 10, "{d_load}");
}
