//! Namespace and schema records: immutable objects created once.

use super::io::Created;
use super::log::NsState;
use super::records::*;
use super::{ObjStore, keys};
use crate::error::{Error, Result};
use crate::ids::{validate_namespace_id, validate_schema_id};
use crate::model::*;

pub(super) fn to_schema(r: SchemaRecord, state: &NsState) -> Schema {
    let p = state.pointers(&r.schema_id);
    Schema {
        namespace_id: r.namespace_id,
        schema_id: r.schema_id,
        current_version: p.current,
        staged_version: p.staged,
        created_at: r.created_at,
        metadata: r.metadata,
        deleted: p.deleted,
    }
}

impl ObjStore {
    pub(super) async fn require_namespace(&self, ns: &str) -> Result<NamespaceRecord> {
        validate_namespace_id(ns)?;
        let key = keys::namespace(ns);
        if let Some(record) = self.read_record(&key).await? {
            return Ok(record);
        }
        // Absent: a mistyped name, or a deleted record (damage) when the
        // namespace's objects are there. Only this error path pays the LIST,
        // and not for builtins, whose absence every publish probes (verify
        // still reports a builtins namespace without its record).
        if ns == crate::ids::BUILTINS {
            return Err(Error::NotFound(format!("namespace {ns:?}")));
        }
        let log = object_store::path::Path::from(format!("ns/{ns}/log"));
        let listed = self
            .io()
            .os
            .list_with_delimiter(Some(&log))
            .await
            .map_err(Error::Storage)?;
        if !listed.objects.is_empty() {
            return Err(Error::Corrupt {
                key: key.to_string(),
                reason: format!("missing, but ns/{ns}/ holds the namespace's commits"),
            });
        }
        Err(Error::NotFound(format!("namespace {ns:?}")))
    }

    pub(super) async fn require_schema(&self, ns: &str, schema: &str) -> Result<SchemaRecord> {
        self.require_namespace(ns).await?;
        validate_schema_id(schema)?;
        let key = keys::schema(ns, schema);
        if let Some(record) = self.read_record(&key).await? {
            return Ok(record);
        }
        // A schema the log stages versions of cannot lack its record.
        if self.inner.log.latest(ns).await?.pointers(schema).latest > 0 {
            return Err(Error::Corrupt {
                key: key.to_string(),
                reason: "missing, but the log stages versions of the schema".into(),
            });
        }
        Err(Error::NotFound(format!(
            "schema {schema:?} in namespace {ns:?}"
        )))
    }

    pub async fn create_namespace(&self, ns: &Namespace) -> Result<()> {
        validate_namespace_id(&ns.id)?;
        // A namespace must leave room for a schema in its keys.
        self.check_key_lengths(&ns.id, "s", ["a.proto"], [])?;
        let record = NamespaceRecord {
            namespace_id: ns.id.clone(),
            created_at: ns.created_at,
            metadata: ns.metadata.clone(),
            writer_id: uuid::Uuid::new_v4().to_string(),
            created_by: ns.created_by.clone().or_else(|| self.author()),
        };
        let mine = record.writer_id.clone();
        match self
            .io()
            .create_record::<NamespaceRecord>(&keys::namespace(&ns.id), to_json(&record), |r| {
                r.writer_id == mine
            })
            .await?
        {
            Created::Mine => Ok(()),
            Created::Theirs(_) => Err(Error::AlreadyExists(format!("namespace {:?}", ns.id))),
        }
    }

    pub async fn get_namespace(&self, id: &str) -> Result<Namespace> {
        let r = self.require_namespace(id).await?;
        Ok(Namespace {
            id: r.namespace_id,
            created_at: r.created_at,
            metadata: r.metadata,
            created_by: r.created_by,
        })
    }

    /// Creates a schema (its pointers start empty).
    pub async fn create_schema(&self, schema: &Schema) -> Result<()> {
        let ns = &schema.namespace_id;
        self.require_namespace(ns).await?;
        validate_schema_id(&schema.schema_id)?;
        let record = SchemaRecord {
            namespace_id: ns.clone(),
            schema_id: schema.schema_id.clone(),
            created_at: schema.created_at,
            metadata: schema.metadata.clone(),
            writer_id: uuid::Uuid::new_v4().to_string(),
        };
        let mine = record.writer_id.clone();
        let key = keys::schema(ns, &schema.schema_id);
        match self
            .io()
            .create_record::<SchemaRecord>(&key, to_json(&record), |r| r.writer_id == mine)
            .await?
        {
            Created::Mine => {
                self.inner
                    .fresh_schemas
                    .lock()
                    .unwrap()
                    .insert((ns.clone(), schema.schema_id.clone()));
                Ok(())
            }
            Created::Theirs(_) => Err(Error::AlreadyExists(format!(
                "schema {:?} in namespace {ns:?}",
                schema.schema_id
            ))),
        }
    }

    pub async fn get_schema(&self, namespace_id: &str, schema_id: &str) -> Result<Schema> {
        let record = self.require_schema(namespace_id, schema_id).await?;
        let state = self.inner.log.latest(namespace_id).await?;
        Ok(to_schema(record, &state))
    }
}
