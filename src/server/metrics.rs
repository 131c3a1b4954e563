//! Prometheus metrics: requests and latencies per API and route (from a
//! middleware), plus the store handle's storage requests by kind and its
//! cache, read at scrape time.

use std::fmt::Write;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as Prom;

use crate::objstore::ObjStore;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    api: String,
    method: String,
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    api: String,
    route: String,
}

pub struct Metrics {
    prom: Prom,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    store: ObjStore,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~3 s
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.00005, 2.0, 16,
    ))
}

impl Metrics {
    pub fn new(store: ObjStore) -> Self {
        let mut prom = Prom::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency =
            Family::<RouteLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        prom.register(
            "protoshelf_requests",
            "Requests served, by API, method, route and status",
            requests.clone(),
        );
        prom.register(
            "protoshelf_request_duration_seconds",
            "Time to answer a request, by API and route",
            latency.clone(),
        );
        Metrics {
            prom,
            requests,
            latency,
            store,
        }
    }

    fn observe(&self, api: &str, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                api: api.into(),
                method: method.into(),
                route: route.into(),
                status: status.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                api: api.into(),
                route: route.into(),
            })
            .observe(seconds);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.prom);
        let r = self.store.requests();
        let p = self.store.protocol_stats();
        let _ = writeln!(
            out,
            "# HELP protoshelf_storage_requests Storage requests made, by kind.\n# TYPE protoshelf_storage_requests counter"
        );
        for (kind, n) in [
            ("get", r.get),
            ("head", r.head),
            ("put", r.put),
            ("list", r.list),
            ("delete", r.delete),
            ("copy", r.copy),
        ] {
            let _ = writeln!(
                out,
                "protoshelf_storage_requests_total{{kind=\"{kind}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP protoshelf_cache_hits Immutable-object reads answered from memory.\n# TYPE protoshelf_cache_hits counter\nprotoshelf_cache_hits_total {}",
            p.cache_hits
        );
        let reads = p.cache_hits + r.get;
        let ratio = if reads == 0 {
            0.0
        } else {
            p.cache_hits as f64 / reads as f64
        };
        let _ = writeln!(
            out,
            "# HELP protoshelf_cache_hit_ratio Cache hits over cache hits plus storage GETs.\n# TYPE protoshelf_cache_hit_ratio gauge\nprotoshelf_cache_hit_ratio {ratio}"
        );
        let _ = writeln!(
            out,
            "# HELP protoshelf_commit_conflicts Commit races lost and retried.\n# TYPE protoshelf_commit_conflicts counter\nprotoshelf_commit_conflicts_total {}",
            p.conflicts
        );
        out.push_str("# EOF\n");
        out
    }
}

/// Middleware: counts and times every request (gRPC by method path).
pub async fn track(
    State(metrics): State<std::sync::Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let grpc = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    let route = match req.extensions().get::<MatchedPath>() {
        Some(p) => p.as_str().to_string(),
        None if grpc => req.uri().path().to_string(),
        None => "unmatched".into(),
    };
    let method = req.method().to_string();
    let resp = next.run(req).await;
    let status = if grpc {
        // gRPC reports errors in the grpc-status header (trailers-only
        // responses); a streamed status is counted as 0.
        resp.headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    } else {
        resp.status().as_u16()
    };
    metrics.observe(
        if grpc { "grpc" } else { "rest" },
        &method,
        &route,
        status,
        start.elapsed().as_secs_f64(),
    );
    resp
}
