//! The Confluent API's errors, each with its HTTP status and Confluent
//! `error_code` (what the clients switch on).

use crate::compat::Violation;

#[derive(Debug, thiserror::Error)]
pub enum ConfluentError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {version} not found for subject '{subject}'.")]
    VersionNotFound { subject: String, version: String },
    #[error("Schema {0} not found")]
    SchemaNotFound(String),
    #[error("Subject '{0}' was soft deleted. Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    #[error(
        "Version {version} of subject '{subject}' was soft deleted. Set permanent=true to delete permanently"
    )]
    VersionSoftDeleted { subject: String, version: u64 },
    #[error(
        "Version {version} of subject '{subject}' was not deleted first before being permanently deleted"
    )]
    VersionNotSoftDeleted { subject: String, version: u64 },
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    NoSubjectConfig(String),
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    #[error(
        "Invalid compatibility level {0:?}. Valid values are NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE"
    )]
    InvalidCompatibility(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("Schema being registered is incompatible with an earlier schema for subject '{subject}', details: [{}]",
        .violations.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "))]
    Incompatible {
        subject: String,
        violations: Vec<Violation>,
    },
    #[error("{0}")]
    Registry(#[from] crate::Error),
}

impl ConfluentError {
    /// (HTTP status, Confluent error code).
    pub fn codes(&self) -> (u16, u32) {
        use ConfluentError::*;
        match self {
            SubjectNotFound(_) => (404, 40401),
            VersionNotFound { .. } => (404, 40402),
            SchemaNotFound(_) => (404, 40403),
            SubjectSoftDeleted(_) => (404, 40404),
            SubjectNotSoftDeleted(_) => (404, 40405),
            VersionSoftDeleted { .. } => (404, 40406),
            VersionNotSoftDeleted { .. } => (404, 40407),
            NoSubjectConfig(_) => (404, 40408),
            InvalidSchema(_) => (422, 42201),
            InvalidVersion(_) => (422, 42202),
            InvalidCompatibility(_) => (422, 42203),
            Unsupported(_) => (422, 42205),
            Incompatible { .. } => (409, 409),
            Registry(e) => match e {
                // A concurrent-writer conflict that retrying did not settle.
                crate::Error::Contended { .. } => (409, 40901),
                // Confluent's "operation timed out".
                crate::Error::CompileTimeout { .. } => (500, 50002),
                crate::Error::InvalidInput(_)
                | crate::Error::InvalidId { .. }
                | crate::Error::Compile(_)
                | crate::Error::MemoryLimit { .. } => (422, 42201),
                crate::Error::Incompatible(_) => (409, 409),
                crate::Error::NotFound(_) => (404, 40403),
                _ => (500, 50001),
            },
        }
    }
}

pub type Result<T, E = ConfluentError> = std::result::Result<T, E>;
