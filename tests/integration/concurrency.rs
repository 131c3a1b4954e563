//! Racing writers on one namespace: independent handles (in-process on every
//! backend, separate OS processes on the local directory and S3) publish,
//! stage and promote at once. Afterwards no version number is used twice,
//! every acknowledged write is present with its content, and every promote
//! was all-or-nothing.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use common::data::*;
use common::{Backend, fresh_url};
use protoshelf::ObjStore;
use protoshelf::model::PromotedSchema;
use protoshelf::objstore::NsState;
use protoshelf::objstore::ProtocolStats;
use protoshelf::objstore::records::{LogEntry, Operation};

use serde::{Deserialize, Serialize};

const NS: &str = "race";
const SCHEMAS: [&str; 4] = ["s0", "s1", "s2", "s3"];
const WRITERS: usize = 4;

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Ack {
    Version {
        schema: String,
        version: u64,
        token: String,
    },
    Commit {
        seq: u64,
        commit_id: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct WorkerReport {
    acks: Vec<Ack>,
    stats: ProtocolStats,
}

async fn setup(url: &str) {
    let s = ObjStore::open(url).await.unwrap();
    s.create_namespace(&namespace(NS)).await.unwrap();
    for id in SCHEMAS {
        s.create_schema(&schema(NS, id)).await.unwrap();
    }
}

/// One writer: its own handle, a deterministic mix of publish+stage and promote.
async fn worker(url: String, id: usize, ops: usize) -> WorkerReport {
    let s = ObjStore::open(&url).await.unwrap();
    let mut acks = Vec::new();
    let mut x = id as u64 * 7919 + 1;
    for i in 0..ops {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let schema = SCHEMAS[(x >> 33) as usize % SCHEMAS.len()];
        if (x >> 40).is_multiple_of(4) {
            let p = s.promote(NS).await.unwrap();
            if let Some(c) = p.commit {
                acks.push(Ack::Commit {
                    seq: c.seq,
                    commit_id: c.commit_id,
                });
            }
        } else {
            let token = format!("w{id}-{i}");
            let version = publish(&s, NS, schema, &token).await;
            acks.push(Ack::Version {
                schema: schema.into(),
                version,
                token,
            });
            let c = s.set_staged(NS, schema, version).await.unwrap();
            acks.push(Ack::Commit {
                seq: c.seq,
                commit_id: c.commit_id,
            });
        }
    }
    WorkerReport {
        acks,
        stats: s.protocol_stats(),
    }
}

/// Audits the store against every writer's acknowledgements.
async fn verify(url: &str, reports: &[WorkerReport]) -> String {
    let s = ObjStore::open(url).await.unwrap();
    let acks: Vec<&Ack> = reports.iter().flat_map(|r| &r.acks).collect();

    // Versions: each number acknowledged once, present with its content.
    let mut versions = BTreeMap::new();
    for a in &acks {
        if let Ack::Version {
            schema,
            version,
            token,
        } = a
        {
            let dup = versions.insert((schema.clone(), *version), token.clone());
            assert!(dup.is_none(), "version {schema}/{version} handed out twice");
        }
    }
    for ((schema, version), token) in &versions {
        let got = s.get_version(NS, schema, *version).await.unwrap();
        assert_eq!(
            &got.metadata["token"], token,
            "{schema}/{version} holds another writer's content"
        );
    }
    let mut stored = 0;
    for schema in SCHEMAS {
        let listed = s.list_versions(NS, schema).await.unwrap();
        stored += listed.len();
        assert!(
            listed
                .iter()
                .all(|v| versions.contains_key(&(schema.to_string(), *v))),
            "unacknowledged version"
        );
    }
    assert_eq!(stored, versions.len());

    // Commits: every acknowledged commit is in the log at its number with
    // its id, and every log entry was acknowledged by exactly one writer.
    let state = s.namespace_state(NS).await.unwrap();
    let log = s.log_entries(NS, 1, state.seq).await.unwrap();
    let mut acked = BTreeSet::new();
    for a in &acks {
        if let Ack::Commit { seq, commit_id } = a {
            let entry = &log[*seq as usize - 1];
            assert_eq!(
                &entry.commit_id, commit_id,
                "acknowledged commit {seq} lost"
            );
            assert!(acked.insert(*seq), "commit {seq} acknowledged twice");
        }
    }
    assert_eq!(
        acked.len(),
        log.len(),
        "the log holds commits nobody acknowledged"
    );

    let promotes = replay(&log, &state);

    let conflicts: u64 = reports.iter().map(|r| r.stats.conflicts).sum();
    let ambiguous: u64 = reports.iter().map(|r| r.stats.ambiguous_settled).sum();
    format!(
        "{} writers, {} versions, {} commits ({} promotes), {} conflicts retried, {} ambiguous settled, lost 0, duplicated 0",
        reports.len(),
        versions.len(),
        log.len(),
        promotes,
        conflicts,
        ambiguous
    )
}

/// Replays a namespace's log: every promote moved exactly the versions
/// staged before it (all-or-nothing), every entry's pointers agree with the
/// replay, and so does the final state. Returns the number of promotes.
pub(crate) fn replay(log: &[LogEntry], state: &NsState) -> usize {
    let mut pointers: BTreeMap<String, (Option<u64>, Option<u64>)> = BTreeMap::new();
    let mut promotes = 0;
    for entry in log {
        match &entry.operation {
            Operation::Promote { promoted } => {
                promotes += 1;
                let expected: Vec<PromotedSchema> = pointers
                    .iter()
                    .filter_map(|(id, (cur, st))| {
                        st.map(|v| PromotedSchema {
                            schema_id: id.clone(),
                            prior_version: *cur,
                            current_version: v,
                        })
                    })
                    .collect();
                assert_eq!(
                    promoted, &expected,
                    "promote {} was not all-or-nothing",
                    entry.seq
                );
                for (_, (cur, st)) in pointers.iter_mut() {
                    if let Some(v) = st.take() {
                        *cur = Some(v);
                    }
                }
            }
            Operation::Stage { versions } => {
                for v in versions {
                    pointers.entry(v.schema_id.clone()).or_default().1 = v.version;
                }
            }
            // Settings move no pointer (a namespace's policy, say).
            Operation::SetConfig { .. } => {}
            other => panic!("unexpected operation {other:?}"),
        }
        for (id, p) in &entry.changes {
            assert_eq!(
                pointers.get(id).copied().unwrap_or_default(),
                (p.current, p.staged),
                "entry {}",
                entry.seq
            );
        }
    }
    for (id, (cur, st)) in &pointers {
        let p = state.pointers(id);
        assert_eq!((p.current, p.staged), (*cur, *st));
    }

    promotes
}

async fn race_in_process(backend: Backend, ops: usize) {
    let Some((url, _dir)) = fresh_url(backend).await else {
        return;
    };
    setup(&url).await;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|id| tokio::spawn(worker(url.clone(), id, ops)))
        .collect();
    let mut reports = Vec::new();
    for t in tasks {
        reports.push(t.await.unwrap());
    }
    eprintln!(
        "in-process race on {backend:?}: {}",
        verify(&url, &reports).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_in_process_memory() {
    race_in_process(Backend::Memory, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_in_process_local() {
    race_in_process(Backend::Local, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_in_process_s3() {
    race_in_process(Backend::S3, 25).await;
}

/// Separate OS processes: this test binary re-runs itself as workers.
async fn race_processes(backend: Backend, ops: usize) {
    // `_dir` keeps a local store alive until the audit is done.
    let Some((url, _dir)) = fresh_url(backend).await else {
        return;
    };
    setup(&url).await;
    let out_dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..WRITERS)
        .map(|id| {
            let out = out_dir.path().join(format!("w{id}.json"));
            let child = std::process::Command::new(&exe)
                .args([
                    "concurrency::worker_process",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("PROTOSHELF_RACE_URL", &url)
                .env("PROTOSHELF_RACE_WORKER", id.to_string())
                .env("PROTOSHELF_RACE_OPS", ops.to_string())
                .env("PROTOSHELF_RACE_OUT", &out)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            (child, out)
        })
        .collect();
    let mut reports = Vec::new();
    for (mut child, out) in children {
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "worker process failed: {status}");
        reports.push(serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap());
    }
    eprintln!(
        "{WRITERS} processes on {backend:?}: {}",
        verify(&url, &reports).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_processes_local() {
    race_processes(Backend::Local, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_processes_s3() {
    race_processes(Backend::S3, 25).await;
}

/// The worker side of `race_processes` (run only by it, through `--ignored`).
#[tokio::test]
#[ignore = "a worker process started by race_processes_*"]
async fn worker_process() {
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| panic!("{k} not set: run by race_processes_*"))
    };
    let report = worker(
        var("PROTOSHELF_RACE_URL"),
        var("PROTOSHELF_RACE_WORKER").parse().unwrap(),
        var("PROTOSHELF_RACE_OPS").parse().unwrap(),
    )
    .await;
    std::fs::write(
        var("PROTOSHELF_RACE_OUT"),
        serde_json::to_vec(&report).unwrap(),
    )
    .unwrap();
}
