//! The gRPC API of `protoshelf serve` through a Rust tonic client: the
//! reference registry's RegistryService, reflection and health, with
//! auth. On the local directory and on S3.

use crate::common;

use std::collections::HashMap;

use common::server::{ADMIN, READER, Server, WRITER, tokens_file};
use common::{Backend, fresh_url};
use pb::registry_service_client::RegistryServiceClient;
use protoshelf::server::grpc::pb;
use tonic::Code;
use tonic::transport::Channel;

fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// One ListNamespaces page of the default size (every namespace here).
async fn all_namespaces(c: &mut RegistryServiceClient<Channel>) -> Vec<pb::NamespaceInfo> {
    c.list_namespaces(pb::ListNamespacesRequest {
        page_size: 0,
        page_token: String::new(),
    })
    .await
    .unwrap()
    .into_inner()
    .namespaces
}

const ORDER: &str = "syntax = \"proto3\";\npackage shop;\nmessage Order { string id = 1; }\n";

async fn grpc_api(backend: Backend) {
    let Some((url, _keep)) = fresh_url(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let server = Server::start(&url, &["--tokens", tokens.to_str().unwrap()]);
    let channel = Channel::from_shared(server.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = RegistryServiceClient::new(channel.clone());

    let create = pb::CreateNamespaceRequest {
        id: "shop".into(),
        metadata: HashMap::from([("team".into(), "orders".into())]),
        parent_namespace_id: None,
    };
    let e = c.create_namespace(create.clone()).await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::Unauthenticated,
        "anonymous callers only read"
    );
    let e = c
        .create_namespace(authed(create.clone(), READER))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    c.create_namespace(authed(create.clone(), WRITER))
        .await
        .unwrap();
    // The same create again converges (a client retrying a create whose
    // answer it lost succeeds) while the namespace has no commit; one that
    // asks for something else is refused.
    c.create_namespace(authed(create.clone(), WRITER))
        .await
        .unwrap();
    let other = pb::CreateNamespaceRequest {
        metadata: HashMap::from([("team".into(), "billing".into())]),
        ..create
    };
    let e = c.create_namespace(authed(other, WRITER)).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);

    let publish = |ns: &str, text: &str, force: bool| pb::PublishRequest {
        namespace_id: ns.into(),
        schema_id: "orders".into(),
        sources: HashMap::from([("shop/order.proto".into(), text.as_bytes().to_vec())]),
        created_by: String::new(),
        metadata: HashMap::new(),
        force,
    };
    let p = c
        .publish(authed(publish("shop", ORDER, false), WRITER))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((p.version, p.no_change), (1, false));
    let again = c
        .publish(authed(publish("shop", ORDER, false), WRITER))
        .await
        .unwrap()
        .into_inner();
    assert!(again.no_change);
    let e = c
        .publish(authed(
            publish("shop", "syntax = \"proto3\";\nmessage {", false),
            WRITER,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("shop/order.proto:2:"),
        "{}",
        e.message()
    );
    // __builtins__ and force need admin.
    let e = c
        .publish(authed(publish("__builtins__", ORDER, false), WRITER))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = c
        .publish(authed(publish("shop", ORDER, true), WRITER))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    let promoted = c
        .promote(authed(
            pb::PromoteRequest {
                namespace_id: "shop".into(),
            },
            WRITER,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(promoted.promoted[0].current_version, 1);
    let info = c
        .get_schema(pb::GetSchemaRequest {
            namespace_id: "shop".into(),
            schema_id: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .schema
        .unwrap();
    assert_eq!(
        (info.current_version, info.staged_version, info.versions),
        (Some(1), None, vec![1])
    );
    let d = c
        .get_descriptor(pb::GetDescriptorRequest {
            namespace_id: "shop".into(),
            schema_id: "orders".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.version, 1);
    assert_eq!(
        d.file_descriptor_set.unwrap().file[0].name(),
        "shop/order.proto"
    );
    let s = c
        .get_source(pb::GetSourceRequest {
            namespace_id: "shop".into(),
            schema_id: "orders".into(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.sources["shop/order.proto"], ORDER.as_bytes());
    let e = c
        .get_schema(pb::GetSchemaRequest {
            namespace_id: "shop".into(),
            schema_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // An incompatible change is refused at promote; discard drops it.
    let renamed = ORDER.replace("string id = 1", "string key = 1");
    c.publish(authed(publish("shop", &renamed, false), WRITER))
        .await
        .unwrap();
    let e = c
        .promote(authed(
            pb::PromoteRequest {
                namespace_id: "shop".into(),
            },
            WRITER,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("FIELD_SAME_NAME"), "{}", e.message());
    c.discard_staging(authed(
        pb::DiscardStagingRequest {
            namespace_id: "shop".into(),
        },
        WRITER,
    ))
    .await
    .unwrap();
    c.rollback(authed(
        pb::RollbackRequest {
            namespace_id: "shop".into(),
            schema_id: "orders".into(),
            version: 1,
            force: false,
        },
        WRITER,
    ))
    .await
    .unwrap();
    let e = c
        .rollback(authed(
            pb::RollbackRequest {
                namespace_id: "shop".into(),
                schema_id: "orders".into(),
                version: 1,
                force: true,
            },
            WRITER,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "force needs admin");
    c.rollback(authed(
        pb::RollbackRequest {
            namespace_id: "shop".into(),
            schema_id: "orders".into(),
            version: 1,
            force: true,
        },
        ADMIN,
    ))
    .await
    .unwrap();

    // Pages of one namespace at a time.
    for ns in ["a1", "a2", "a3"] {
        c.create_namespace(authed(
            pb::CreateNamespaceRequest {
                id: ns.into(),
                ..Default::default()
            },
            WRITER,
        ))
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_namespaces(pb::ListNamespacesRequest {
                page_size: 1,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.namespaces.into_iter().map(|n| n.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ["a1", "a2", "a3", "shop"]);
    // A namespace soft-deleted (here by another process, as with the CLI)
    // is hidden from the list.
    let registry = protoshelf::registry::Registry::open(&url).await.unwrap();
    assert!(registry.delete_namespace("a2").await.unwrap());
    let ids: Vec<String> = all_namespaces(&mut c)
        .await
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(ids, ["a1", "a3", "shop"]);
    let schemas = c
        .list_schemas(pb::ListSchemasRequest {
            namespace_id: "shop".into(),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(schemas.schemas.len(), 1);
    let e = c
        .list_schemas(pb::ListSchemasRequest {
            namespace_id: "shop".into(),
            page_size: 0,
            page_token: "%%".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    hierarchy(&mut c).await;

    // Health and reflection.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let h = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "protoregistry.v1.RegistryService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        h.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream_once(req))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"protoregistry.v1.RegistryService".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );

    // buf curl, knowing nothing but what reflection tells it.
    if let Some(buf) = find_buf() {
        let base = &server.url;
        let out = std::process::Command::new(&buf)
            .args([
                "curl",
                "--protocol",
                "grpc",
                "--http2-prior-knowledge",
                "--list-methods",
                base,
            ])
            .output()
            .unwrap();
        let methods = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{methods}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            methods.contains("protoregistry.v1.RegistryService/Publish"),
            "{methods}"
        );
        let out = std::process::Command::new(&buf)
            .args([
                "curl",
                "--protocol",
                "grpc",
                "--http2-prior-knowledge",
                "-d",
                r#"{"namespace_id": "shop", "schema_id": "orders"}"#,
            ])
            .arg(format!("{base}/protoregistry.v1.RegistryService/GetSchema"))
            .output()
            .unwrap();
        let answer = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{answer}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(v["schema"]["currentVersion"], "1", "{v}");
        eprintln!("{backend:?}: buf curl through reflection: list-methods and GetSchema ok");
    }
}

/// buf from `$PROTOSHELF_BUF` or scripts/buf-compare.sh's cache; missing
/// fails under `CI=true`.
fn find_buf() -> Option<std::path::PathBuf> {
    let cached = std::env::var("PROTOSHELF_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dirs::home_dir().unwrap().join(".cache/protoshelf"))
        .join("buf/node_modules/.bin/buf");
    let buf = std::env::var("PROTOSHELF_BUF")
        .map(std::path::PathBuf::from)
        .unwrap_or(cached);
    if buf.exists() {
        return Some(buf);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true but buf is missing: run scripts/test.sh (scripts/buf-compare.sh installs it)"
        );
    }
    eprintln!("SKIPPED: buf curl (run scripts/buf-compare.sh)");
    None
}

/// SetNamespaceParent, GetRebaseStatus and Rebase over the registry:
/// `kid` (parent `base`) pins base/money; base promotes v2; a rebase re-pins.
async fn hierarchy(c: &mut RegistryServiceClient<Channel>) {
    let money = |field: &str| {
        format!(
            "syntax = \"proto3\";\npackage base;\nmessage Money {{ int64 units = 1; {field} }}\n"
        )
    };
    let publish = |ns: &str, schema: &str, path: &str, text: String| pb::PublishRequest {
        namespace_id: ns.into(),
        schema_id: schema.into(),
        sources: HashMap::from([(path.into(), text.into_bytes())]),
        created_by: String::new(),
        metadata: HashMap::new(),
        force: false,
    };
    let promote = |ns: &str| {
        authed(
            pb::PromoteRequest {
                namespace_id: ns.into(),
            },
            WRITER,
        )
    };
    for (id, parent) in [("base", None), ("kid", None)] {
        let r = pb::CreateNamespaceRequest {
            id: id.into(),
            metadata: HashMap::new(),
            parent_namespace_id: parent,
        };
        c.create_namespace(authed(r, WRITER)).await.unwrap();
    }
    let set = |parent: &str| {
        authed(
            pb::SetNamespaceParentRequest {
                namespace_id: "kid".into(),
                parent_namespace_id: Some(parent.into()),
            },
            WRITER,
        )
    };
    let e = c.set_namespace_parent(set("nope")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("unknown parent"), "{}", e.message());
    c.set_namespace_parent(set("base")).await.unwrap();
    // Each listed namespace carries its parent (none: the chain ends at
    // builtins).
    let parents: Vec<(String, Option<String>)> = all_namespaces(c)
        .await
        .into_iter()
        .filter(|n| n.id == "base" || n.id == "kid")
        .map(|n| (n.id, n.parent_namespace_id))
        .collect();
    assert_eq!(
        parents,
        [("base".into(), None), ("kid".into(), Some("base".into()))]
    );
    let e = c
        .set_namespace_parent(authed(
            pb::SetNamespaceParentRequest {
                namespace_id: "base".into(),
                parent_namespace_id: Some("kid".into()),
            },
            WRITER,
        ))
        .await
        .unwrap_err();
    assert!(e.message().contains("cycle"), "{}", e.message());

    c.publish(authed(
        publish("base", "money", "base/money.proto", money("")),
        WRITER,
    ))
    .await
    .unwrap();
    c.promote(promote("base")).await.unwrap();
    let order = "syntax = \"proto3\";\npackage kid;\nimport \"base/money.proto\";\nmessage Order { base.Money total = 1; }\n";
    c.publish(authed(
        publish("kid", "orders", "kid/order.proto", order.into()),
        WRITER,
    ))
    .await
    .unwrap();
    c.promote(promote("kid")).await.unwrap();
    c.publish(authed(
        publish(
            "base",
            "money",
            "base/money.proto",
            money("int32 nanos = 2;"),
        ),
        WRITER,
    ))
    .await
    .unwrap();
    c.promote(promote("base")).await.unwrap();

    let status = c
        .get_rebase_status(pb::GetRebaseStatusRequest {
            namespace_id: "kid".into(),
            schema_id: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(status.rebase_available);
    let pin = &status.pin_statuses[0];
    assert_eq!(
        (
            pin.parent_namespace_id.as_str(),
            pin.dep_schema_id.as_str(),
            pin.dep_filename.as_str(),
            pin.pinned_version,
            pin.current_version
        ),
        ("base", "money", "base/money.proto", 1, 2)
    );
    let rebase = || {
        authed(
            pb::RebaseRequest {
                namespace_id: "kid".into(),
                schema_id: "orders".into(),
            },
            WRITER,
        )
    };
    let r = c.rebase(rebase()).await.unwrap().into_inner();
    assert_eq!((r.version, r.no_change), (2, false));
    let again = c.rebase(rebase()).await.unwrap().into_inner();
    assert_eq!((again.version, again.no_change), (2, true));
}

fn tokio_stream_once<T: Send + 'static>(
    item: T,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::iter(vec![item])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_api_local() {
    grpc_api(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_api_s3() {
    grpc_api(Backend::S3).await;
}
