//! The Confluent Schema Registry REST API: each handler authorizes, turns
//! the request into one [`ConfluentRegistry`] call and the answer (or the
//! error, as Confluent's `{"error_code", "message"}`) into JSON.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{Caller, Denied, Role};
use crate::confluent::{ConfluentError, Format, Level, SchemaRequest, VersionRef};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// A REST error in Confluent's shape.
pub struct ApiError {
    status: StatusCode,
    code: u32,
    message: String,
}

impl From<ConfluentError> for ApiError {
    fn from(e: ConfluentError) -> Self {
        let (status, code) = e.codes();
        if status >= 500 {
            tracing::error!(error = %e, "request failed");
        }
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: e.to_string(),
        }
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        ConfluentError::from(e).into()
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        let (status, code) = match &d {
            Denied::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, 40101),
            Denied::Forbidden(m) if m.contains("read-only") => {
                (StatusCode::UNPROCESSABLE_ENTITY, 42205)
            }
            Denied::Forbidden(_) => (StatusCode::FORBIDDEN, 40301),
        };
        ApiError {
            status,
            code,
            message: d.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error_code": self.code, "message": self.message});
        with_type(self.status, body)
    }
}

fn with_type(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp
}

fn ok(body: impl serde::Serialize) -> Result<Response, ApiError> {
    Ok(with_type(
        StatusCode::OK,
        serde_json::to_value(body).expect("serializable"),
    ))
}

type Answer = Result<Response, ApiError>;

fn caller(state: &AppState, headers: &HeaderMap, need: Role) -> Result<Caller, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = state.auth.caller(value)?;
    state.auth.require(&caller, need)?;
    Ok(caller)
}

/// `Cache-Control: no-cache` asks for the store's latest state instead of
/// what this replica read within the refresh interval.
fn fresh(headers: &HeaderMap) -> bool {
    headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("no-cache") || v.contains("max-age=0"))
}

fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: 422,
        message: format!("Unrecognized request body: {e}"),
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Params {
    #[serde(default, deserialize_with = "flag")]
    deleted: bool,
    #[serde(default, deserialize_with = "flag")]
    permanent: bool,
    #[serde(default, deserialize_with = "flag")]
    normalize: bool,
    #[serde(default, deserialize_with = "flag")]
    verbose: bool,
    #[serde(default, deserialize_with = "flag")]
    default_to_global: bool,
    format: Option<String>,
    subject: Option<String>,
}

/// Query flags as the clients send them: `true`, `True`, `1`, ...
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let s = String::deserialize(d)?;
    Ok(matches!(
        s.to_ascii_lowercase().as_str(),
        "true" | "1" | "yes"
    ))
}

impl Params {
    fn format(&self) -> Format {
        match self.format.as_deref() {
            Some("serialized") => Format::Serialized,
            _ => Format::Source,
        }
    }
}

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { ok(json!({})) }))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route(
            "/subjects/{subject}/versions/{version}",
            get(version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(version_schema),
        )
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(schema_by_id_raw))
        .route("/schemas/ids/{id}/versions", get(id_versions))
        .route("/schemas/types", get(|| async { ok(json!(["PROTOBUF"])) }))
        .route("/config", get(get_global_config).put(put_global_config))
        .route(
            "/config/{subject}",
            get(get_config).put(put_config).delete(delete_config),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compatibility_version),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(compatibility_all),
        )
        // Topic associations (newer clients ask before choosing a
        // subject): protoshelf has none, so they use their fallback.
        .route(
            "/associations/resources/{namespace}/{name}",
            get(|| async { ok(json!([])) }),
        )
        .route("/mode", get(mode).put(put_mode))
        .route("/mode/{subject}", get(mode).put(put_mode))
}

async fn subjects(State(s): State<Arc<AppState>>, h: HeaderMap, Query(q): Query<Params>) -> Answer {
    caller(&s, &h, Role::Reader)?;
    ok(s.confluent.subjects(q.deleted, fresh(&h)).await?)
}

async fn versions(
    State(s): State<Arc<AppState>>,
    h: HeaderMap,
    Path(subject): Path<String>,
    Query(q): Query<Params>,
) -> Answer {
    caller(&s, &h, Role::Reader)?;
    ok(s.confluent.versions(&subject, q.deleted, fresh(&h)).await?)
}

async fn register(
    State(s): State<Arc<AppState>>,
    h: HeaderMap,
    Path(subject): Path<String>,
    Query(q): Query<Params>,
    bytes: Bytes,
) -> Answer {
    let who = caller(&s, &h, Role::Writer)?;
    let mut req: SchemaRequest = body(&bytes)?;
    req.normalize |= q.normalize;
    let c = s.confluent.clone();
    let r =
        super::detached(move || async move { c.register(&subject, &req, &who.name).await }).await?;
    ok(json!({"id": r.id, "version": r.version}))
}

async fn lookup(
    State(s): State<Arc<AppState>>,
    h: HeaderMap,
    Path(subject): Path<String>,
    Query(q): Query<Params>,
    bytes: Bytes,
) -> Answer {
    caller(&s, &h, Role::Reader)?;
    let mut req: SchemaRequest = body(&bytes)?;
    req.normalize |= q.normalize;
    ok(s.confluent.lookup(&subject, &req, q.deleted).await?)
}

async fn version(
    State(s): State<Arc<AppState>>,
    h: HeaderMap,
    Path((subject, v)): Path<(String, String)>,
    Query(q): Query<Params>,
) -> Answer {
    caller(&s, &h, Role::Reader)?;
    let v: VersionRef = v.parse()?;
    ok(s.confluent
        .version(&subject, v, q.deleted, q.format(), fresh(&h))
        .await?)
}

async fn version_schema(
    State(s): State<Arc<AppState>>,
    h: HeaderMap,
    Path((subject, v)): Path<(String, String)>,
    Query(q): Query<Params>,
) -> Answer {
    caller(&s, &h, Role::Reader)?;
    let v: VersionRef = v.parse()?;
    let found = s
        .confluent
        .version(&subject, v, q.deleted, q.format(), fresh(&h))
        .await?;
    Ok(found.schema.into_response())
}

fn parse_id(id: &str) -> Result<u64, ApiError> {
    id.parse()
        .map_err(|_| ConfluentError::SchemaNotFound(id.to_string()).into())
}

async fn schema_by_id(
    State(s): State<Arc<AppState>>,
    h: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Params>,
) -> Answer {
    caller(&s, &h, Role::Reader)?;
    let id = parse_id(&id)?;
    ok(s.confluent
        .schema_by_id(id, q.subject.as_deref(), q.format())
        .await?)
}

async fn schema_by_id_raw(
    State(s): State<Arc<AppState>>,
    h: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Params>,
) -> Answer {
    caller(&s, &h, Role::Reader)?;
    let id = parse_id(&id)?;
    let found = s
        .confluent
        .schema_by_id(id, q.subject.as_deref(), q.format())
        .await?;
    Ok(found.schema.into_response())
}

async fn id_versions(
    State(s): State<Arc<AppState>>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    caller(&s, &h, Role::Reader)?;
    let pairs = s.confluent.id_versions(parse_id(&id)?).await?;
    ok(pairs
        .into_iter()
        .map(|(subject, version)| json!({"subject": subject, "version": version}))
        .collect::<Vec<_>>())
}

async fn delete_subject(
    State(s): State<Arc<AppState>>,
    h: HeaderMap,
    Path(subject): Path<String>,
    Query(q): Query<Params>,
) -> Answer {
    caller(&s, &h, Role::Writer)?;
    ok(s.confluent.delete_subject(&subject, q.permanent).await?)
}

async fn delete_version(
    State(s): State<Arc<AppState>>,
    h: HeaderMap,
    Path((subject, v)): Path<(String, String)>,
    Query(q): Query<Params>,
) -> Answer {
    caller(&s, &h, Role::Writer)?;
    let v: VersionRef = v.parse()?;
    ok(s.confluent.delete_version(&subject, v, q.permanent).await?)
}

#[derive(Deserialize)]
struct ConfigBody {
    compatibility: Option<String>,
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: Option<String>,
}

fn level_of(b: &ConfigBody) -> Result<Level, ApiError> {
    let given = b
        .compatibility
        .as_deref()
        .or(b.compatibility_level.as_deref())
        .ok_or_else(|| ConfluentError::InvalidCompatibility(String::new()))?;
    Ok(given.parse()?)
}

async fn get_global_config(State(s): State<Arc<AppState>>, h: HeaderMap) -> Answer {
    caller(&s, &h, Role::Reader)?;
    let l = s.confluent.config(None, true).await?;
    ok(json!({"compatibilityLevel": l.as_str()}))
}

async fn put_global_config(State(s): State<Arc<AppState>>, h: HeaderMap, bytes: Bytes) -> Answer {
    caller(&s, &h, Role::Admin)?;
    let l = level_of(&body(&bytes)?)?;
    let l = s.confluent.set_config(None, l).await?;
    ok(json!({"compatibility": l.as_str()}))
}

async fn get_config(
    State(s): State<Arc<AppState>>,
    h: HeaderMap,
    Path(subject): Path<String>,
    Query(q): Query<Params>,
) -> Answer {
    caller(&s, &h, Role::Reader)?;
    let l = s
        .confluent
        .config(Some(&subject), q.default_to_global)
        .await?;
    ok(json!({"compatibilityLevel": l.as_str()}))
}

async fn put_config(
    State(s): State<Arc<AppState>>,
    h: HeaderMap,
    Path(subject): Path<String>,
    bytes: Bytes,
) -> Answer {
    caller(&s, &h, Role::Writer)?;
    let l = level_of(&body(&bytes)?)?;
    let l = s.confluent.set_config(Some(&subject), l).await?;
    ok(json!({"compatibility": l.as_str()}))
}

async fn delete_config(
    State(s): State<Arc<AppState>>,
    h: HeaderMap,
    Path(subject): Path<String>,
) -> Answer {
    caller(&s, &h, Role::Writer)?;
    let l = s.confluent.delete_config(&subject).await?;
    ok(json!({"compatibilityLevel": l.as_str()}))
}

async fn compatibility(
    s: &AppState,
    h: &HeaderMap,
    subject: &str,
    v: Option<VersionRef>,
    q: &Params,
    bytes: &Bytes,
) -> Answer {
    caller(s, h, Role::Reader)?;
    let mut req: SchemaRequest = body(bytes)?;
    req.normalize |= q.normalize;
    let violations = s.confluent.test_compatibility(subject, v, &req).await?;
    let mut out = json!({"is_compatible": violations.is_empty()});
    if q.verbose {
        out["messages"] = json!(violations.iter().map(|v| v.to_string()).collect::<Vec<_>>());
    }
    ok(out)
}

async fn compatibility_version(
    State(s): State<Arc<AppState>>,
    h: HeaderMap,
    Path((subject, v)): Path<(String, String)>,
    Query(q): Query<Params>,
    bytes: Bytes,
) -> Answer {
    let v: VersionRef = v.parse()?;
    compatibility(&s, &h, &subject, Some(v), &q, &bytes).await
}

async fn compatibility_all(
    State(s): State<Arc<AppState>>,
    h: HeaderMap,
    Path(subject): Path<String>,
    Query(q): Query<Params>,
    bytes: Bytes,
) -> Answer {
    compatibility(&s, &h, &subject, None, &q, &bytes).await
}

async fn mode(State(s): State<Arc<AppState>>, h: HeaderMap) -> Answer {
    caller(&s, &h, Role::Reader)?;
    ok(json!({"mode": if s.auth.read_only { "READONLY" } else { "READWRITE" }}))
}

async fn put_mode(State(s): State<Arc<AppState>>, h: HeaderMap) -> Answer {
    caller(&s, &h, Role::Admin)?;
    Err(ConfluentError::Unsupported(
        "the mode is not changed through the API: start the server with or without --read-only"
            .into(),
    )
    .into())
}

/// Unknown paths: Confluent's 404 body (gRPC calls to unknown methods get
/// UNIMPLEMENTED).
pub async fn fallback(req: axum::extract::Request) -> Response {
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        return tonic::Status::unimplemented(format!("no such method {}", req.uri().path()))
            .into_http();
    }
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: 404,
        message: format!(
            "HTTP 404 Not Found: no such endpoint {} {}",
            req.method(),
            req.uri().path()
        ),
    }
    .into_response()
}
