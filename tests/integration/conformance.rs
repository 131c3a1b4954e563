//! The persistence contract, run on memory, a local directory and S3
//! (LocalStack): the same tests on every backend.

use crate::common;

use common::TestStore;
use common::data::*;
use object_store::ObjectStoreExt;
use protoshelf::Error;
use protoshelf::model::*;
use protoshelf::objstore::{Mutation, NsAttempt};
use protoshelf::store::{ClaimKind, StageChange};

on_every_backend!(
    namespaces_create_get_list_and_pages,
    bad_ids_are_typed_errors_and_write_nothing,
    schemas_create_get_list_and_pages,
    blobs_are_idempotent_and_verified,
    versions_are_atomic_and_numbers_never_reused,
    staging_promote_discard_and_loads,
    many_schemas_stage_in_one_commit,
    a_commit_plans_on_the_state_it_lands_on,
    a_second_handle_sees_every_commit,
    claims_index_dirs_and_packages,
    format1_store_keeps_path_claims,
);

async fn namespaces_create_get_list_and_pages(t: TestStore) {
    let s = &t.store;
    let ids = ["b", "a.b", "a", "c-1", "c_0", "Z", "a0"];
    for id in ids {
        s.create_namespace(&namespace(id)).await.unwrap();
    }
    assert!(matches!(
        s.create_namespace(&namespace("a")).await,
        Err(Error::AlreadyExists(_))
    ));
    assert_eq!(s.get_namespace("a.b").await.unwrap().id, "a.b");
    assert!(matches!(
        s.get_namespace("nope").await,
        Err(Error::NotFound(_))
    ));

    let mut sorted: Vec<&str> = ids.to_vec();
    sorted.sort();
    let all: Vec<String> = s
        .list_namespaces()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(all, sorted);

    // Keyset pages: strictly after the cursor, in order, and complete.
    let mut paged = Vec::new();
    let mut after = String::new();
    loop {
        let page = s.list_namespaces_page(&after, 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().unwrap().id.clone();
        paged.extend(page.into_iter().map(|n| n.id));
    }
    assert_eq!(paged, sorted);
    let tail: Vec<String> = s
        .list_namespaces_page("a0", 100)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(tail, ["b", "c-1", "c_0"]);
    // A cursor that is not an ID still pages correctly.
    let odd: Vec<String> = s
        .list_namespaces_page("a/", 2)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(odd, ["a0", "b"]);
}

async fn bad_ids_are_typed_errors_and_write_nothing(t: TestStore) {
    let s = &t.store;
    s.create_namespace(&namespace("ok")).await.unwrap();
    let raw = t.raw();
    let before = common::snapshot(&raw).await;
    let long = "x".repeat(257);
    for bad in ["", "_x", "../etc", "a/b", "a b", "ü", long.as_str()] {
        assert!(
            matches!(
                s.create_namespace(&namespace(bad)).await,
                Err(Error::InvalidId { .. })
            ),
            "{bad:?}"
        );
        assert!(
            matches!(
                s.create_schema(&schema("ok", bad)).await,
                Err(Error::InvalidId { .. })
            ),
            "{bad:?}"
        );
        assert!(matches!(
            s.get_namespace(bad).await,
            Err(Error::InvalidId { .. })
        ));
        assert!(matches!(
            s.set_staged("ok", bad, 1).await,
            Err(Error::InvalidId { .. })
        ));
    }
    // Hash that does not match the content, and a malformed hash.
    let mut b = blob("ok", "syntax = \"proto3\";");
    b.sha256 = sha(b"something else");
    assert!(matches!(s.put_blob(&b).await, Err(Error::InvalidInput(_))));
    assert!(matches!(
        s.get_blob("ok", "../../x").await,
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(
        common::snapshot(&raw).await,
        before,
        "a rejected call wrote something"
    );
    // The reserved namespace is the one exception to the pattern.
    s.create_namespace(&namespace(protoshelf::ids::BUILTINS))
        .await
        .unwrap();
}

async fn schemas_create_get_list_and_pages(t: TestStore) {
    let s = &t.store;
    assert!(matches!(
        s.create_schema(&schema("missing", "x")).await,
        Err(Error::NotFound(_))
    ));
    s.create_namespace(&namespace("ns")).await.unwrap();
    s.create_namespace(&namespace("other")).await.unwrap();
    for id in ["s3", "s1", "s2", "s10"] {
        s.create_schema(&schema("ns", id)).await.unwrap();
    }
    s.create_schema(&schema("other", "s1")).await.unwrap();
    assert!(matches!(
        s.create_schema(&schema("ns", "s1")).await,
        Err(Error::AlreadyExists(_))
    ));
    let got = s.get_schema("ns", "s2").await.unwrap();
    assert_eq!((got.current_version, got.staged_version), (None, None));
    assert!(matches!(
        s.get_schema("ns", "nope").await,
        Err(Error::NotFound(_))
    ));
    let ids: Vec<String> = s
        .list_schemas("ns")
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.schema_id)
        .collect();
    assert_eq!(ids, ["s1", "s10", "s2", "s3"]);
    let page: Vec<String> = s
        .list_schemas_page("ns", "s1", 2)
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.schema_id)
        .collect();
    assert_eq!(page, ["s10", "s2"]);
    assert!(s.list_schemas_page("ns", "s3", 2).await.unwrap().is_empty());
}

async fn blobs_are_idempotent_and_verified(t: TestStore) {
    let s = &t.store;
    s.create_namespace(&namespace("ns")).await.unwrap();
    let b = blob("ns", "syntax = \"proto3\";\nmessage A {}");
    s.put_blob(&b).await.unwrap();
    s.put_blob(&b).await.unwrap();
    // A fresh handle (no cache) writing it again is fine too.
    t.reopen().await.put_blob(&b).await.unwrap();
    let got = s.get_blob("ns", &b.sha256).await.unwrap();
    assert_eq!(got.source, b.source);
    assert!(got.created_at.is_some());
    assert!(matches!(
        s.get_blob("ns", &sha(b"absent")).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        s.get_blob("nope", &b.sha256).await,
        Err(Error::NotFound(_))
    ));

    // Bytes that do not hash to their key are corruption, never served.
    let planted = blob("ns", "message Original {}");
    let key = object_store::path::Path::from(format!("ns/ns/blobs/{}", planted.sha256));
    t.raw()
        .put(
            &key,
            bytes::Bytes::from_static(b"message Tampered {}").into(),
        )
        .await
        .unwrap();
    let fresh = t.reopen().await;
    assert!(matches!(
        fresh.get_blob("ns", &planted.sha256).await,
        Err(Error::Corrupt { .. })
    ));
}

async fn versions_are_atomic_and_numbers_never_reused(t: TestStore) {
    let s = &t.store;
    s.create_namespace(&namespace("ns")).await.unwrap();
    s.create_schema(&schema("ns", "a")).await.unwrap();
    s.create_schema(&schema("ns", "b")).await.unwrap();
    let b = blob("ns", "message A {}");
    s.put_blob(&b).await.unwrap();
    let files = vec![VersionFile {
        path: "a.proto".into(),
        sha256: b.sha256.clone(),
        size: None,
    }];
    let deps = vec![VersionDep {
        path: "b.proto".into(),
        namespace_id: "ns".into(),
        schema_id: "b".into(),
        version: 1,
    }];
    let v1 = version("ns", "a", 1, "one");
    s.put_version(&v1, &files, &deps).await.unwrap();
    assert!(matches!(
        s.put_version(&version("ns", "a", 1, "dup"), &files, &[])
            .await,
        Err(Error::AlreadyExists(_))
    ));

    let got = s.get_version("ns", "a", 1).await.unwrap();
    assert_eq!(got.compiled, v1.compiled);
    assert_eq!(got.metadata["token"], "one");
    assert_eq!(s.get_version_files("ns", "a", 1).await.unwrap(), files);
    assert_eq!(s.get_version_deps("ns", "a", 1).await.unwrap(), deps);
    // Which one is missing, the version or the schema, is named.
    match s.get_version("ns", "a", 2).await {
        Err(Error::NotFound(m)) => assert!(m.starts_with("version 2 of schema"), "{m}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    match s.get_version("ns", "zz", 1).await {
        Err(Error::NotFound(m)) => assert!(m.starts_with("schema \"zz\""), "{m}"),
        other => panic!("expected NotFound, got {other:?}"),
    }

    // Allocation skips taken numbers, including versions never staged.
    assert_eq!(
        s.create_version(&version("ns", "a", 0, "two"), &files, &[])
            .await
            .unwrap(),
        2
    );
    s.put_version(&version("ns", "a", 5, "five"), &files, &[])
        .await
        .unwrap();
    let other = t.reopen().await;
    assert_eq!(
        other
            .create_version(&version("ns", "a", 0, "six"), &files, &[])
            .await
            .unwrap(),
        6
    );
    assert_eq!(s.list_versions("ns", "a").await.unwrap(), [1, 2, 5, 6]);
    assert!(s.list_versions("ns", "b").await.unwrap().is_empty());

    // A file whose blob is not stored is refused before anything is written.
    let raw = t.raw();
    let before = common::snapshot(&raw).await;
    let dangling = vec![VersionFile {
        path: "x.proto".into(),
        sha256: sha(b"never stored"),
        size: None,
    }];
    assert!(matches!(
        s.put_version(&version("ns", "a", 9, "x"), &dangling, &[])
            .await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        s.put_version(&version("ns", "zz", 9, "x"), &files, &[])
            .await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(common::snapshot(&raw).await, before);
}

async fn staging_promote_discard_and_loads(t: TestStore) {
    let s = &t.store;
    s.create_namespace(&namespace("ns")).await.unwrap();
    for id in ["a", "b", "c"] {
        s.create_schema(&schema("ns", id)).await.unwrap();
    }
    let a1 = publish(s, "ns", "a", "a1").await;
    let b1 = publish(s, "ns", "b", "b1").await;
    assert!(matches!(
        s.set_staged("ns", "a", 7).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        s.set_staged("ns", "zz", 1).await,
        Err(Error::NotFound(_))
    ));
    s.set_staged("ns", "a", a1).await.unwrap();
    s.set_staged("ns", "b", b1).await.unwrap();
    assert_eq!(
        s.get_schema("ns", "a").await.unwrap().staged_version,
        Some(a1)
    );
    assert!(s.load_namespace_current("ns").await.unwrap().is_empty());
    assert_eq!(s.load_namespace_proposed("ns").await.unwrap().len(), 2);

    let p = s.promote("ns").await.unwrap();
    assert_eq!(
        p.promoted,
        vec![
            PromotedSchema {
                schema_id: "a".into(),
                prior_version: None,
                current_version: a1
            },
            PromotedSchema {
                schema_id: "b".into(),
                prior_version: None,
                current_version: b1
            },
        ]
    );
    // Nothing staged: nothing promoted, nothing written.
    let seq = s.namespace_state("ns").await.unwrap().seq;
    assert_eq!(s.promote("ns").await.unwrap(), Promotion::default());
    assert_eq!(s.discard_staging("ns").await.unwrap(), None);
    assert_eq!(s.namespace_state("ns").await.unwrap().seq, seq);

    let a2 = publish(s, "ns", "a", "a2").await;
    s.set_staged("ns", "a", a2).await.unwrap();
    let c1 = publish(s, "ns", "c", "c1").await;
    s.set_staged("ns", "c", c1).await.unwrap();
    let proposed = s.load_namespace_proposed("ns").await.unwrap();
    let versions: Vec<(String, u64)> = proposed
        .iter()
        .map(|c| (c.schema_id.clone(), c.version))
        .collect();
    assert_eq!(
        versions,
        [("a".into(), a2), ("b".into(), b1), ("c".into(), c1)]
    );
    assert_eq!(proposed[0].files[0].path, "a.proto");

    // Clearing one, then discarding the rest, atomically.
    s.set_staged("ns", "c", 0).await.unwrap();
    assert_eq!(s.get_schema("ns", "c").await.unwrap().staged_version, None);
    s.set_staged("ns", "c", c1).await.unwrap();
    assert!(s.discard_staging("ns").await.unwrap().is_some());
    for id in ["a", "b", "c"] {
        assert_eq!(s.get_schema("ns", id).await.unwrap().staged_version, None);
    }
    let current = s.load_namespace_current("ns").await.unwrap();
    assert_eq!(
        current.iter().map(|c| c.version).collect::<Vec<_>>(),
        [a1, b1]
    );
    assert_eq!(
        current[0].compiled,
        s.get_version("ns", "a", a1).await.unwrap().compiled
    );

    // A rollback is staging an older version, then promoting it.
    s.set_staged("ns", "a", a2).await.unwrap();
    s.promote("ns").await.unwrap();
    s.set_staged("ns", "a", a1).await.unwrap();
    let p = s.promote("ns").await.unwrap();
    assert_eq!(
        p.promoted[0],
        PromotedSchema {
            schema_id: "a".into(),
            prior_version: Some(a2),
            current_version: a1
        }
    );

    s.create_namespace(&namespace("second")).await.unwrap();
    s.create_schema(&schema("second", "x")).await.unwrap();
    let x1 = publish(s, "second", "x", "x1").await;
    s.set_staged("second", "x", x1).await.unwrap();
    s.promote("second").await.unwrap();
    let all = s.load_all_current().await.unwrap();
    let names: Vec<(String, String)> = all
        .iter()
        .map(|c| (c.namespace_id.clone(), c.schema_id.clone()))
        .collect();
    assert_eq!(
        names,
        [
            ("ns".into(), "a".into()),
            ("ns".into(), "b".into()),
            ("second".into(), "x".into())
        ]
    );

    s.set_config("ns", "policy", "wire").await.unwrap();
    assert_eq!(
        t.reopen().await.get_config("ns").await.unwrap()["policy"],
        "wire"
    );
}

async fn many_schemas_stage_in_one_commit(t: TestStore) {
    let s = &t.store;
    s.create_namespace(&namespace("ns")).await.unwrap();
    let mut changes = Vec::new();
    for i in 0..40 {
        let id = format!("s{i:03}");
        s.create_schema(&schema("ns", &id)).await.unwrap();
        let v = publish(s, "ns", &id, &id).await;
        changes.push(StageChange {
            schema_id: id,
            version: Some(v),
        });
    }
    let before = s.namespace_state("ns").await.unwrap().seq;
    let info = s.stage("ns", &changes).await.unwrap();
    assert_eq!(info.seq, before + 1);
    let p = s.promote("ns").await.unwrap();
    assert_eq!(p.promoted.len(), 40);
    assert_eq!(p.commit.unwrap().seq, before + 2);
    // Duplicates in one commit are refused.
    let dup = vec![changes[0].clone(), changes[0].clone()];
    assert!(matches!(
        s.stage("ns", &dup).await,
        Err(Error::InvalidInput(_))
    ));
}

async fn a_commit_plans_on_the_state_it_lands_on(t: TestStore) {
    let s = &t.store;
    s.create_namespace(&namespace("ns")).await.unwrap();
    s.create_schema(&schema("ns", "a")).await.unwrap();
    s.create_schema(&schema("ns", "b")).await.unwrap();
    let va = publish(s, "ns", "a", "a").await;
    let vb = publish(s, "ns", "b", "b").await;
    s.set_staged("ns", "a", va).await.unwrap();
    let other = t.reopen().await;
    // While the first attempt plans, another writer stages b: the attempt
    // loses, and the plan runs again on the state with b staged.
    let seen = std::sync::Mutex::new(Vec::new());
    let before = s.requests();
    let committed = s
        .commit("ns", |a: NsAttempt| {
            let (seen, other) = (&seen, &other);
            async move {
                let b = a.state.pointers("b").staged;
                seen.lock().unwrap().push((a.number, a.state.seq, b));
                if a.number == 0 {
                    other.set_staged("ns", "b", vb).await.unwrap();
                } else {
                    assert_eq!(a.landed.len(), 1, "the other writer's commit");
                    assert!(a.landed[0].change.changes.contains_key("b"));
                }
                Ok(Mutation::promote(&a.state))
            }
        })
        .await
        .unwrap()
        .expect("committed");
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen, [(0, 1, None), (1, 2, Some(vb))]);
    assert_eq!(committed.lost, 1);
    assert_eq!(committed.entry.seq, 3);
    // The promote carries both: it was computed on the winner's state.
    let p = committed.promotion();
    let ids: Vec<&str> = p.promoted.iter().map(|p| p.schema_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    let cost = s.requests() - before;
    // One refused create: the lost log entry. The promote makes the
    // winner's staged tree current, so it names the winner's staged set
    // as current, without building or writing it again.
    assert_eq!(cost.put_conflict, 1, "{cost}");
    assert_eq!(s.protocol_stats().conflicts, 1, "one race lost");
    // A plan's error ends the commit with nothing written.
    let seq = s.namespace_state("ns").await.unwrap().seq;
    let err = s
        .commit("ns", |_: NsAttempt| async {
            Err::<Option<Mutation>, _>(Error::InvalidInput("refused".into()))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    // Nothing to do writes nothing either.
    let nothing = s.commit("ns", |_: NsAttempt| async { Ok(None::<Mutation>) });
    assert!(nothing.await.unwrap().is_none());
    let fresh = t.reopen().await;
    assert_eq!(fresh.namespace_state("ns").await.unwrap().seq, seq);
    assert_eq!(
        fresh.get_schema("ns", "b").await.unwrap().current_version,
        Some(vb)
    );
}

async fn a_second_handle_sees_every_commit(t: TestStore) {
    let s = &t.store;
    s.create_namespace(&namespace("ns")).await.unwrap();
    s.create_schema(&schema("ns", "a")).await.unwrap();
    let reader = t.reopen().await;
    assert_eq!(reader.namespace_state("ns").await.unwrap().seq, 0);
    for i in 1..=12 {
        let v = publish(s, "ns", "a", &format!("v{i}")).await;
        s.set_staged("ns", "a", v).await.unwrap();
        if i % 3 == 0 {
            // The reader catches up over several commits at once.
            let got = reader.get_schema("ns", "a").await.unwrap();
            assert_eq!(got.staged_version, Some(v));
        }
    }
    s.promote("ns").await.unwrap();
    assert_eq!(
        reader.get_schema("ns", "a").await.unwrap().current_version,
        Some(12)
    );
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

async fn claims_index_dirs_and_packages(t: TestStore) {
    let s = &t.store;
    assert!(s.claims_dirs(), "new stores claim directories");
    s.create_namespace(&namespace("ns")).await.unwrap();
    // "b" is also the name of a subdirectory of "a": a claim and a
    // directory prefix must not collide (a local directory cannot hold a
    // file and a directory of one name).
    for id in ["s1", "s2", "b"] {
        s.create_schema(&schema("ns", id)).await.unwrap();
    }
    for (schema, kind, claimed) in [
        ("s1", ClaimKind::Dir, &["a", ""][..]),
        ("s1", ClaimKind::Dir, &["a"]),
        ("b", ClaimKind::Dir, &["a"]),
        ("s2", ClaimKind::Dir, &["a/b", "a/b/c"]),
        ("s2", ClaimKind::Package, &["acme.v1"]),
    ] {
        s.add_claims("ns", schema, kind, &names(claimed))
            .await
            .unwrap();
    }
    // A fresh handle lists; a directory's claims exclude its subdirectories'.
    let r = t.reopen().await;
    for (dir, want) in [
        ("a", &["b", "s1"][..]),
        ("a/b", &["s2"]),
        ("a/b/c", &["s2"]),
        ("", &["s1"]),
        ("zz", &[]),
    ] {
        assert_eq!(
            r.claimants("ns", ClaimKind::Dir, dir).await.unwrap(),
            want,
            "{dir:?}"
        );
    }
    assert_eq!(
        r.claimants("ns", ClaimKind::Package, "acme.v1")
            .await
            .unwrap(),
        ["s2"]
    );
    assert_eq!(r.path_claim("a/b/x.proto"), (ClaimKind::Dir, "a/b".into()));
    assert_eq!(r.path_claim("x.proto"), (ClaimKind::Dir, String::new()));
    let all = t.reopen().await.all_claims("ns").await.unwrap();
    let dirs = &all[&ClaimKind::Dir];
    assert_eq!(dirs.len(), 4, "{dirs:?}");
    assert_eq!(dirs["a"], ["b", "s1"]);
    assert_eq!(dirs[""], ["s1"]);
    assert_eq!(dirs["a/b/c"], ["s2"]);
    assert_eq!(all[&ClaimKind::Package]["acme.v1"], ["s2"]);
    assert!(all[&ClaimKind::Path].is_empty());

    // A claim seen in a LIST or written is never written again.
    let before = r.requests();
    r.add_claims("ns", "s1", ClaimKind::Dir, &names(&["a"]))
        .await
        .unwrap();
    r.add_claims("ns", "s2", ClaimKind::Package, &names(&["acme.v1"]))
        .await
        .unwrap();
    assert_eq!((r.requests() - before).put, 0);
    assert_eq!(r.known_claimants("ns", ClaimKind::Dir, "a"), ["b", "s1"]);

    // Bad names, the other layout and unknown schemas change nothing.
    let raw = t.raw();
    let before = common::snapshot(&raw).await;
    for bad in ["../x", "/abs", "a//b", "sp ace"] {
        assert!(
            matches!(
                s.add_claims("ns", "s1", ClaimKind::Dir, &names(&[bad]))
                    .await,
                Err(Error::InvalidId { .. })
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        s.add_claims("ns", "s1", ClaimKind::Path, &names(&["x.proto"]))
            .await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        s.add_claims("ns", "nope", ClaimKind::Dir, &names(&["x"]))
            .await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(common::snapshot(&raw).await, before);
}

/// A store created by a format-1 build keeps format 1: path claims, read
/// and written as before.
async fn format1_store_keeps_path_claims(t: TestStore) {
    let Some(t) = common::fresh_format1(t.backend).await else {
        return;
    };
    let s = &t.store;
    assert_eq!(s.format_marker().format_version, 1);
    assert!(!s.claims_dirs());
    s.create_namespace(&namespace("ns")).await.unwrap();
    for id in ["s1", "s2"] {
        s.create_schema(&schema("ns", id)).await.unwrap();
    }
    s.add_claims(
        "ns",
        "s1",
        ClaimKind::Path,
        &names(&["a/b.proto", "c.proto"]),
    )
    .await
    .unwrap();
    // A path nested under another path's "directory" stays separate.
    s.add_claims(
        "ns",
        "s2",
        ClaimKind::Path,
        &names(&["a/b.proto", "a/b.proto/d.proto"]),
    )
    .await
    .unwrap();
    let r = t.reopen().await;
    assert_eq!(
        r.path_claim("a/b.proto"),
        (ClaimKind::Path, "a/b.proto".into())
    );
    assert_eq!(
        r.claimants("ns", ClaimKind::Path, "a/b.proto")
            .await
            .unwrap(),
        ["s1", "s2"]
    );
    assert_eq!(
        r.claimants("ns", ClaimKind::Path, "a/b.proto/d.proto")
            .await
            .unwrap(),
        ["s2"]
    );
    assert!(
        r.claimants("ns", ClaimKind::Path, "zz.proto")
            .await
            .unwrap()
            .is_empty()
    );
    let all = r
        .all_claims("ns")
        .await
        .unwrap()
        .remove(&ClaimKind::Path)
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all["a/b.proto"], ["s1", "s2"]);
    assert!(matches!(
        s.add_claims("ns", "s1", ClaimKind::Dir, &names(&["a"]))
            .await,
        Err(Error::InvalidInput(_))
    ));
    // Records written into it say format 1.
    let v = publish(s, "ns", "s1", "one").await;
    let info = s.set_staged("ns", "s1", v).await.unwrap();
    assert_eq!(
        r.log_entries("ns", info.seq, info.seq).await.unwrap()[0].format_version,
        1
    );
}
