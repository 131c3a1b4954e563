//! `protoshelf serve`: a stateless server over the store. One port speaks
//! HTTP/1.1 and HTTP/2 (cleartext h2c, or TLS with ALPN): the Confluent
//! Schema Registry REST API ([`rest`]), the reference registry's gRPC API
//! with reflection and health ([`grpc`]), `/healthz`, `/readyz` and
//! `/metrics`. Handlers are thin: the work is in [`crate::confluent`] and
//! [`crate::registry`]. Any number of replicas can serve one store; the
//! bucket is the only state.

pub mod auth;
pub mod grpc;
pub mod metrics;
pub mod rest;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower_http::trace::TraceLayer;

use crate::confluent::{self, ConfluentRegistry};
use crate::error::{Error, Result};
use crate::registry::Registry;
use auth::Auth;

/// Requests larger than this are refused with 413 (REST) or
/// RESOURCE_EXHAUSTED (gRPC): the publish limit (32 MiB) plus room for
/// base64 and JSON.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 48 * 1024 * 1024;

/// How `protoshelf serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub auth: Auth,
    pub confluent: confluent::Options,
    pub max_request_bytes: usize,
    /// PEM certificate chain and private key: serve TLS (rustls).
    pub tls: Option<(PathBuf, PathBuf)>,
}

pub struct AppState {
    pub confluent: Arc<ConfluentRegistry>,
    pub registry: Registry,
    pub auth: Arc<Auth>,
    pub metrics: Arc<metrics::Metrics>,
}

async fn readyz(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    // One LIST of at most one namespace: the store answers, with our
    // credentials.
    match s.registry.store().list_namespaces_page("", 1).await {
        Ok(_) => (StatusCode::OK, "ready\n".to_string()),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {e}\n"),
        ),
    }
}

async fn metrics_text(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

/// Every route on one router: REST, gRPC (by path), operations.
pub fn app(registry: Registry, opts: &ServeOptions) -> Router {
    let confluent = Arc::new(ConfluentRegistry::new(
        registry.clone(),
        opts.confluent.clone(),
    ));
    let auth = Arc::new(opts.auth.clone());
    let metrics = Arc::new(metrics::Metrics::new(registry.store().clone()));
    let state = Arc::new(AppState {
        confluent,
        registry: registry.clone(),
        auth: auth.clone(),
        metrics: metrics.clone(),
    });

    let service = grpc::pb::registry_service_server::RegistryServiceServer::new(grpc::Service {
        registry,
        auth,
    })
    .max_decoding_message_size(opts.max_request_bytes);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(grpc::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the service descriptors are valid");
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(grpc::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the service descriptors are valid");
    let (health_reporter, health) = tonic_health::server::health_reporter();
    // Serving from the start: the store was opened (and checked) before.
    tokio::spawn(async move {
        health_reporter
            .set_serving::<grpc::pb::registry_service_server::RegistryServiceServer<grpc::Service>>(
            )
            .await;
    });
    let grpc = tonic::service::Routes::new(service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(health)
        .into_axum_router();

    rest::router()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
        .layer(DefaultBodyLimit::max(opts.max_request_bytes))
        .merge(grpc)
        .fallback(rest::fallback)
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track,
        ))
        .layer(TraceLayer::new_for_http())
}

/// Runs a registry write on a blocking-pool thread of the current runtime,
/// so its future need not be `Send` (publish, promote and rollback were
/// not when this was written; they are now, and this can go). Writes are
/// rare, so a thread per write is cheap.
pub async fn detached<F, T>(make: impl FnOnce() -> F + Send + 'static) -> T
where
    F: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let handle = tokio::runtime::Handle::current();
    match tokio::task::spawn_blocking(move || handle.block_on(make())).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing requests in flight");
}

/// Serves until `shutdown` resolves, then stops accepting and waits for
/// requests in flight (at most `drain`). `bound` is told the local address
/// once listening.
pub async fn serve(
    registry: Registry,
    opts: ServeOptions,
    bound: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let app = app(registry, &opts);
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| Error::InvalidInput(format!("cannot listen on {}: {e}", opts.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::InvalidInput(format!("no local address: {e}")))?;
    let tls = match &opts.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    bound(addr);
    accept_loop(listener, app, tls, shutdown, Duration::from_secs(30)).await;
    Ok(())
}

fn tls_acceptor(cert: &PathBuf, key: &PathBuf) -> Result<tokio_rustls::TlsAcceptor> {
    use tokio_rustls::rustls;
    let read = |p: &PathBuf| {
        std::fs::read(p)
            .map_err(|e| Error::InvalidInput(format!("cannot read {}: {e}", p.display())))
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut read(cert)?.as_slice())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| {
            Error::InvalidInput(format!(
                "{}: not a PEM certificate chain: {e}",
                cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{}: no certificate in it",
            cert.display()
        )));
    }
    let key_der = rustls_pemfile::private_key(&mut read(key)?.as_slice())
        .map_err(|e| Error::InvalidInput(format!("{}: not a PEM private key: {e}", key.display())))?
        .ok_or_else(|| Error::InvalidInput(format!("{}: no private key in it", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::InvalidInput(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| Error::InvalidInput(format!("TLS certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections (HTTP/1.1 or HTTP/2, detected per connection) until
/// `shutdown`, then drains.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    drain: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        match &tls {
            None => {
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream = match acceptor.accept(stream).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                    };
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(drain) => tracing::warn!("requests still running after {drain:?}; stopping anyway"),
    }
}
