//! Typed errors of the library. The CLI maps them to exit codes: user errors
//! (bad input, not found) exit 1; storage, corruption and limits a busy
//! machine can exceed (the compile time limit) exit 2; a commit that lost
//! every race for its whole give-up bound exits 3.

/// Everything a store or registry operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An ID (namespace, schema) that does not match the allowed form.
    #[error("invalid {kind} {value:?}: {reason}")]
    InvalidId {
        kind: &'static str,
        value: String,
        reason: String,
    },
    /// Any other input the caller must fix.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The named thing exists already and cannot be created again.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// Every commit attempt lost the race to concurrent writers for the
    /// whole give-up bound: nothing was committed, so retrying is safe.
    #[error(
        "namespace {namespace:?} is too busy: every commit attempt for {}s ({attempts} attempts) lost the race to concurrent writers; nothing was committed, so it is safe to run the command again",
        waited.as_secs()
    )]
    Contended {
        namespace: String,
        attempts: u32,
        waited: std::time::Duration,
    },
    /// An object whose content does not match its key or its schema.
    #[error("corrupt object {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// A store URL that cannot be opened.
    #[error("cannot open store {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// No protoshelf store at the URL (no format marker, or a local
    /// directory that does not exist), opened by a command that does not
    /// create one.
    #[error(
        "no protoshelf store at {url}: create one with `protoshelf --store {url} init`, or check the --store URL (or PROTOSHELF_STORE)"
    )]
    NoStore { url: String },
    /// A store that cannot be used safely (newer format, no create-if-absent).
    #[error("unsupported store: {0}")]
    Unsupported(String),
    /// A `.proto` source that does not compile: `file:line:column: message`.
    #[error("compile error: {0}")]
    Compile(String),
    /// Compiling one schema took longer than `Limits::compile_timeout`: a
    /// resource limit (a busy machine compiles slower), not bad input.
    #[error("compile time limit exceeded: compiling {what} took longer than {}, the limit per schema; this is not an error in the files (a busy machine compiles slower): retry, or raise the limit with --compile-timeout (Limits::compile_timeout in the library)", fmt_duration(*.limit))]
    CompileTimeout {
        what: String,
        limit: std::time::Duration,
    },
    /// A publish whose estimated peak memory is over the cap
    /// ([`crate::registry::Limits::max_memory`]): refused before anything
    /// was compiled or written. The caller's to fix (raise the cap, or
    /// publish less at once).
    #[error("{what}, {} of .proto sources, needs about {} of memory to compile and store, more than the limit of {}; nothing was written: raise the limit with --max-memory {} (or PROTOSHELF_MAX_MEMORY; Limits::max_memory in the library), or publish fewer files at once", fmt_bytes(*.input), fmt_bytes(*.needed), fmt_bytes(*.limit), suggest_cap(*.needed))]
    MemoryLimit {
        what: String,
        input: u64,
        needed: u64,
        limit: u64,
    },
    /// A change that breaks the namespace's compatibility policy.
    #[error("incompatible change ({} violation{}):\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" },
        .0.iter().map(|v| format!("  {v}")).collect::<Vec<_>>().join("\n"))]
    Incompatible(Vec<crate::compat::SchemaViolation>),
    /// The FUSE mount could not start or stop (no FUSE, no permission,
    /// already mounted): the system's failure, not the caller's input. A
    /// mountpoint that is not a directory is `InvalidInput` instead.
    #[error("mount {mountpoint}: {what}: {source}")]
    Mount {
        mountpoint: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The object store failed (network, permissions, ...).
    #[error("storage error: {0}")]
    Storage(#[source] object_store::Error),
}

/// A storage failure the user can fix, recognized in the backend's answer
/// (object_store reports both as generic errors with the raw response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageProblem {
    /// The bucket does not exist (S3 `NoSuchBucket`).
    NoSuchBucket,
    /// No credentials are configured: the last provider of the chain, the
    /// instance metadata service (`169.254.169.254/latest/...`), failed.
    NoCredentials,
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The CLI's exit code for a contended commit: distinct from user errors
/// (1) and failures (2), because the right reaction is to run it again.
pub const EXIT_CONTENDED: u8 = 3;

impl Error {
    /// True when the caller can fix the problem by changing its input: the
    /// CLI exits 1 for these.
    /// A missing bucket or missing credentials are the caller's to fix
    /// too: their configuration, not the storage, is wrong.
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Storage(_) => self.storage_problem().is_some(),
            Error::Corrupt { .. }
            | Error::Unsupported(_)
            | Error::Contended { .. }
            | Error::CompileTimeout { .. }
            | Error::Mount { .. } => false,
            _ => true,
        }
    }

    /// What a storage error means, when the backend's answer says it is a
    /// missing bucket or missing credentials.
    pub fn storage_problem(&self) -> Option<StorageProblem> {
        let Error::Storage(e) = self else {
            return None;
        };
        let mut text = String::new();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cause {
            text.push_str(&c.to_string());
            cause = c.source();
        }
        if text.contains("/latest/api/token")
            || text.contains("/latest/meta-data/iam")
            || text.contains(crate::objstore::aws::AWS_CHAIN_FAILED)
        {
            Some(StorageProblem::NoCredentials)
        } else if text.contains("<Code>NoSuchBucket</Code>") {
            Some(StorageProblem::NoSuchBucket)
        } else {
            None
        }
    }

    /// A stable snake_case name of the error's kind (the CLI's JSON
    /// errors carry it).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidId { .. } => "invalid_id",
            Error::InvalidInput(_) => "invalid_input",
            Error::NotFound(_) => "not_found",
            Error::AlreadyExists(_) => "already_exists",
            Error::Contended { .. } => "contended",
            Error::Corrupt { .. } => "corrupt",
            Error::InvalidUrl { .. } => "invalid_url",
            Error::NoStore { .. } => "no_store",
            Error::Unsupported(_) => "unsupported",
            Error::Compile(_) => "compile",
            Error::CompileTimeout { .. } => "compile_timeout",
            Error::Incompatible(_) => "incompatible",
            Error::MemoryLimit { .. } => "memory_limit",
            Error::Mount { .. } => "mount",
            Error::Storage(_) => match self.storage_problem() {
                Some(StorageProblem::NoSuchBucket) => "no_such_bucket",
                Some(StorageProblem::NoCredentials) => "no_credentials",
                None if self.is_unreachable() => "storage_unreachable",
                None => "storage",
            },
        }
    }

    /// True when the storage did not answer (timeout, refused or broken
    /// connection) rather than answering with an error.
    pub fn is_unreachable(&self) -> bool {
        use object_store::client::{HttpError, HttpErrorKind};
        let Error::Storage(e) = self else {
            return false;
        };
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cause {
            if let Some(h) = c.downcast_ref::<HttpError>() {
                return matches!(
                    h.kind(),
                    HttpErrorKind::Timeout
                        | HttpErrorKind::Connect
                        | HttpErrorKind::Request
                        | HttpErrorKind::Interrupted
                );
            }
            cause = c.source();
        }
        false
    }

    /// The CLI's exit code: 1 user error, 2 internal or storage failure,
    /// 3 ([`EXIT_CONTENDED`]) nothing committed under contention.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Contended { .. } => EXIT_CONTENDED,
            e if e.is_user_error() => 1,
            _ => 2,
        }
    }
}

/// `1.5 GiB`, `300 MiB` or `12 KiB`.
fn fmt_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", n / (1u64 << 30) as f64)
    } else if n >= (1u64 << 20) as f64 {
        format!("{:.0} MiB", n / (1u64 << 20) as f64)
    } else if n >= 1024.0 {
        format!("{:.0} KiB", n / 1024.0)
    } else {
        format!("{n} bytes")
    }
}

/// A `--max-memory` value that fits `needed`: whole MiB, rounded up.
fn suggest_cap(needed: u64) -> String {
    format!("{}MiB", needed.div_ceil(1 << 20))
}

/// `30 s`, `1.5 s` or `250 ms`.
fn fmt_duration(d: std::time::Duration) -> String {
    if d < std::time::Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        let contended = Error::Contended {
            namespace: "ns".into(),
            attempts: 7,
            waited: std::time::Duration::from_secs(600),
        };
        assert_eq!(contended.exit_code(), 3);
        let msg = contended.to_string();
        assert!(
            msg.contains("nothing was committed") && msg.contains("safe to run the command again"),
            "{msg}"
        );
        assert_eq!(Error::InvalidInput("x".into()).exit_code(), 1);
        assert_eq!(Error::Unsupported("x".into()).exit_code(), 2);
        let mount = Error::Mount {
            mountpoint: "/mnt".into(),
            what: "cannot mount",
            source: std::io::Error::other("fusermount3 not found"),
        };
        assert_eq!(mount.exit_code(), 2);
    }
}
