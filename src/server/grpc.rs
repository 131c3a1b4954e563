//! The reference registry's gRPC API (`protoregistry.v1.RegistryService`):
//! each method authorizes, makes one [`Registry`] call and converts the
//! result; errors become gRPC statuses.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use prost::Message;
use tonic::{Request, Response, Status};

use super::auth::{Auth, Caller, Denied, Role};
use crate::ids::BUILTINS;
use crate::registry::{PublishOptions, Registry, SourceFile};

pub mod pb {
    tonic::include_proto!("protoregistry.v1");
    /// The service's descriptors, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/registry_descriptor.binpb"));
}

use pb::registry_service_server::RegistryService;

pub struct Service {
    pub registry: Registry,
    pub auth: Arc<Auth>,
}

/// A registry error as a gRPC status.
pub fn status(e: crate::Error) -> Status {
    use crate::Error::*;
    let msg = e.to_string();
    match e {
        InvalidId { .. } | InvalidInput(_) | Compile(_) | InvalidUrl { .. } => {
            Status::invalid_argument(msg)
        }
        NotFound(_) => Status::not_found(msg),
        AlreadyExists(_) => Status::already_exists(msg),
        // Lost every race (for the give-up bound): nothing was committed,
        // retrying is safe.
        Contended { .. } => Status::aborted(msg),
        CompileTimeout { .. } => Status::deadline_exceeded(msg),
        MemoryLimit { .. } => Status::resource_exhausted(msg),
        Incompatible(_) => Status::failed_precondition(msg),
        Unsupported(_) | NoStore { .. } => Status::failed_precondition(msg),
        Corrupt { .. } => Status::data_loss(msg),
        Storage(_) => Status::unavailable(msg),
        Mount { .. } => Status::internal(msg),
    }
}

fn denied(d: Denied) -> Status {
    match d {
        Denied::Unauthenticated(m) => Status::unauthenticated(m),
        Denied::Forbidden(m) => Status::permission_denied(m),
    }
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// Page tokens are the last ID of the page, opaque to clients.
fn after(token: &str) -> Result<String, Status> {
    if token.is_empty() {
        return Ok(String::new());
    }
    B64.decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            Status::invalid_argument("malformed page_token: pass a next_page_token back unchanged")
        })
}

fn next_token(last: Option<&str>, got: usize, size: usize) -> String {
    match last {
        Some(id) if got == size => B64.encode(id),
        _ => String::new(),
    }
}

fn page_size(n: u32) -> usize {
    match n as usize {
        0 => crate::store::DEFAULT_PAGE,
        n => n.min(crate::store::MAX_PAGE),
    }
}

impl Service {
    fn caller<T>(&self, req: &Request<T>, need: Role) -> Result<Caller, Status> {
        let value = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let caller = self.auth.caller(value).map_err(denied)?;
        self.auth.require(&caller, need).map_err(denied)?;
        Ok(caller)
    }

    /// Writes to `__builtins__` and forced operations need admin.
    fn writer<T>(&self, req: &Request<T>, namespace: &str, force: bool) -> Result<Caller, Status> {
        let need = if namespace == BUILTINS || force {
            Role::Admin
        } else {
            Role::Writer
        };
        self.caller(req, need)
    }

    async fn version_or_current(&self, ns: &str, schema: &str, v: u64) -> Result<u64, Status> {
        if v != 0 {
            return Ok(v);
        }
        self.registry
            .store()
            .get_schema(ns, schema)
            .await
            .map_err(status)?
            .current_version
            .ok_or_else(|| {
                Status::not_found(format!("schema {ns}/{schema} has no current version"))
            })
    }

    async fn schema_info(&self, s: crate::model::Schema) -> Result<pb::SchemaInfo, Status> {
        let versions = self
            .registry
            .store()
            .list_versions(&s.namespace_id, &s.schema_id)
            .await
            .map_err(status)?;
        Ok(pb::SchemaInfo {
            namespace_id: s.namespace_id,
            schema_id: s.schema_id,
            current_version: s.current_version,
            staged_version: s.staged_version,
            created_at: Some(timestamp(s.created_at)),
            metadata: s.metadata.into_iter().collect(),
            versions,
        })
    }
}

#[tonic::async_trait]
impl RegistryService for Service {
    async fn publish(
        &self,
        req: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        let who = self.writer(&req, &req.get_ref().namespace_id, req.get_ref().force)?;
        let r = req.into_inner();
        let files: Vec<SourceFile> = r
            .sources
            .into_iter()
            .map(|(path, content)| SourceFile::new(path, content))
            .collect();
        let opts = PublishOptions {
            force: r.force,
            created_by: Some(if r.created_by.is_empty() {
                who.name
            } else {
                r.created_by
            }),
            metadata: r.metadata.into_iter().collect(),
            progress: None,
            create: false,
        };
        let registry = self.registry.clone();
        let p = super::detached(move || async move {
            registry
                .publish(&r.namespace_id, &r.schema_id, files, opts)
                .await
        })
        .await
        .map_err(status)?;
        Ok(Response::new(pb::PublishResponse {
            version: p.version,
            fingerprint: p.fingerprint,
            no_change: p.no_change,
        }))
    }

    async fn promote(
        &self,
        req: Request<pb::PromoteRequest>,
    ) -> Result<Response<pb::PromoteResponse>, Status> {
        self.writer(&req, &req.get_ref().namespace_id, false)?;
        let (registry, ns) = (self.registry.clone(), req.into_inner().namespace_id);
        let p = super::detached(move || async move { registry.promote(&ns, false).await })
            .await
            .map_err(status)?;
        Ok(Response::new(pb::PromoteResponse {
            promoted: p
                .promoted
                .into_iter()
                .map(|s| pb::PromotedSchema {
                    schema_id: s.schema_id,
                    current_version: s.current_version,
                })
                .collect(),
        }))
    }

    async fn discard_staging(
        &self,
        req: Request<pb::DiscardStagingRequest>,
    ) -> Result<Response<pb::DiscardStagingResponse>, Status> {
        self.writer(&req, &req.get_ref().namespace_id, false)?;
        self.registry
            .discard(&req.get_ref().namespace_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DiscardStagingResponse {}))
    }

    async fn rollback(
        &self,
        req: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::RollbackResponse>, Status> {
        self.writer(&req, &req.get_ref().namespace_id, req.get_ref().force)?;
        let r = req.into_inner();
        let registry = self.registry.clone();
        super::detached(move || async move {
            registry
                .rollback(&r.namespace_id, &r.schema_id, r.version, r.force, false)
                .await
        })
        .await
        .map_err(status)?;
        Ok(Response::new(pb::RollbackResponse {}))
    }

    async fn get_schema(
        &self,
        req: Request<pb::GetSchemaRequest>,
    ) -> Result<Response<pb::GetSchemaResponse>, Status> {
        self.caller(&req, Role::Reader)?;
        let r = req.into_inner();
        let s = self
            .registry
            .store()
            .get_schema(&r.namespace_id, &r.schema_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetSchemaResponse {
            schema: Some(self.schema_info(s).await?),
        }))
    }

    async fn list_schemas(
        &self,
        req: Request<pb::ListSchemasRequest>,
    ) -> Result<Response<pb::ListSchemasResponse>, Status> {
        self.caller(&req, Role::Reader)?;
        let r = req.into_inner();
        let size = page_size(r.page_size);
        let page = self
            .registry
            .store()
            .list_schemas_page(&r.namespace_id, &after(&r.page_token)?, size)
            .await
            .map_err(status)?;
        let next = next_token(page.last().map(|s| s.schema_id.as_str()), page.len(), size);
        let mut schemas = Vec::with_capacity(page.len());
        for s in page {
            schemas.push(self.schema_info(s).await?);
        }
        Ok(Response::new(pb::ListSchemasResponse {
            schemas,
            next_page_token: next,
        }))
    }

    async fn get_descriptor(
        &self,
        req: Request<pb::GetDescriptorRequest>,
    ) -> Result<Response<pb::GetDescriptorResponse>, Status> {
        self.caller(&req, Role::Reader)?;
        let r = req.into_inner();
        let v = self
            .version_or_current(&r.namespace_id, &r.schema_id, r.version)
            .await?;
        let version = self
            .registry
            .store()
            .get_version(&r.namespace_id, &r.schema_id, v)
            .await
            .map_err(status)?;
        let set = prost_types::FileDescriptorSet::decode(version.compiled)
            .map_err(|e| Status::data_loss(format!("stored descriptor does not decode: {e}")))?;
        Ok(Response::new(pb::GetDescriptorResponse {
            version: v,
            file_descriptor_set: Some(set),
        }))
    }

    async fn get_source(
        &self,
        req: Request<pb::GetSourceRequest>,
    ) -> Result<Response<pb::GetSourceResponse>, Status> {
        self.caller(&req, Role::Reader)?;
        let r = req.into_inner();
        let store = self.registry.store();
        let v = self
            .version_or_current(&r.namespace_id, &r.schema_id, r.version)
            .await?;
        let files = store
            .get_version_files(&r.namespace_id, &r.schema_id, v)
            .await
            .map_err(status)?;
        let mut sources = BTreeMap::new();
        for f in files {
            let blob = store
                .get_blob(&r.namespace_id, &f.sha256)
                .await
                .map_err(status)?;
            sources.insert(f.path, blob.source.to_vec());
        }
        Ok(Response::new(pb::GetSourceResponse {
            version: v,
            sources: sources.into_iter().collect(),
        }))
    }

    async fn list_namespaces(
        &self,
        req: Request<pb::ListNamespacesRequest>,
    ) -> Result<Response<pb::ListNamespacesResponse>, Status> {
        self.caller(&req, Role::Reader)?;
        let r = req.into_inner();
        let size = page_size(r.page_size);
        let page = self
            .registry
            .store()
            .list_namespaces_page(&after(&r.page_token)?, size)
            .await
            .map_err(status)?;
        let next = next_token(page.last().map(|n| n.id.as_str()), page.len(), size);
        // Soft-deleted namespaces are hidden, as from every list; the page
        // token still follows the store's listing.
        let page = self
            .registry
            .filter_deleted_with_parents(page, false)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListNamespacesResponse {
            namespaces: page
                .into_iter()
                .map(|(n, parent)| pb::NamespaceInfo {
                    id: n.id,
                    created_at: Some(timestamp(n.created_at)),
                    metadata: n.metadata.into_iter().collect(),
                    parent_namespace_id: parent,
                })
                .collect(),
            next_page_token: next,
        }))
    }

    async fn create_namespace(
        &self,
        req: Request<pb::CreateNamespaceRequest>,
    ) -> Result<Response<pb::CreateNamespaceResponse>, Status> {
        self.writer(&req, &req.get_ref().id, false)?;
        let r = req.into_inner();
        self.registry
            .create_namespace_with_parent(
                &r.id,
                Default::default(),
                r.metadata.into_iter().collect(),
                r.parent_namespace_id.as_deref(),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreateNamespaceResponse {}))
    }

    async fn set_namespace_parent(
        &self,
        req: Request<pb::SetNamespaceParentRequest>,
    ) -> Result<Response<pb::SetNamespaceParentResponse>, Status> {
        self.writer(&req, &req.get_ref().namespace_id, false)?;
        let r = req.into_inner();
        self.registry
            .set_parent(&r.namespace_id, r.parent_namespace_id.as_deref())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SetNamespaceParentResponse {}))
    }

    async fn get_rebase_status(
        &self,
        req: Request<pb::GetRebaseStatusRequest>,
    ) -> Result<Response<pb::GetRebaseStatusResponse>, Status> {
        self.caller(&req, Role::Reader)?;
        let r = req.into_inner();
        let behind = self
            .registry
            .rebase_status(&r.namespace_id)
            .await
            .map_err(status)?;
        let pin_statuses: Vec<pb::ParentPinStatus> = behind
            .into_iter()
            .filter(|b| r.schema_id.is_empty() || b.schema_id == r.schema_id)
            .map(|b| pb::ParentPinStatus {
                parent_namespace_id: b.namespace_id,
                dep_schema_id: b.pinned_schema,
                dep_filename: b.import,
                pinned_version: b.pinned_version,
                current_version: b.current_version.unwrap_or(0),
            })
            .collect();
        Ok(Response::new(pb::GetRebaseStatusResponse {
            rebase_available: !pin_statuses.is_empty(),
            pin_statuses,
        }))
    }

    async fn rebase(
        &self,
        req: Request<pb::RebaseRequest>,
    ) -> Result<Response<pb::RebaseResponse>, Status> {
        self.writer(&req, &req.get_ref().namespace_id, false)?;
        let r = req.into_inner();
        if r.schema_id.is_empty() {
            return Err(Status::invalid_argument("schema_id is required"));
        }
        let (registry, ns, schema) = (self.registry.clone(), r.namespace_id, r.schema_id);
        let report = {
            let (ns, schema) = (ns.clone(), schema.clone());
            super::detached(move || async move { registry.rebase(&ns, Some(&schema), false).await })
                .await
                .map_err(status)?
        };
        Ok(Response::new(match report.schemas.into_iter().next() {
            Some(s) => pb::RebaseResponse {
                version: s.version.unwrap_or(s.from_version),
                fingerprint: s.fingerprint,
                no_change: false,
            },
            // Nothing behind: the proposed version stays.
            None => {
                let state = self
                    .registry
                    .store()
                    .namespace_state(&ns)
                    .await
                    .map_err(status)?;
                let p = state.pointers(&schema);
                pb::RebaseResponse {
                    version: p.staged.or(p.current).unwrap_or(0),
                    fingerprint: String::new(),
                    no_change: true,
                }
            }
        }))
    }
}
