//! Input limits and file-path rules (DESIGN §2), checked before anything is
//! written.

/// Limits of one publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_files: usize,
    pub max_file_bytes: usize,
    pub max_publish_bytes: usize,
    pub max_path_bytes: usize,
    /// Compile time allowed for each schema of a publish (its own files,
    /// and the imported files charged to the schema they come from), not
    /// for the batch as a whole: a tree of hundreds of schemas takes as
    /// long as it takes, while one pathological schema is still stopped.
    /// Exceeding it fails with [`crate::Error::CompileTimeout`]. Parsing is
    /// not counted: it is linear and bounded by the size limits. See
    /// [`super::guard`] for the other compile guards (nesting, stack).
    pub compile_timeout: std::time::Duration,
    /// Peak memory a publish or check may need, in bytes, estimated from
    /// its input before anything is compiled or written (see
    /// [`memory_estimate`]); over it, the publish is refused with
    /// [`crate::Error::MemoryLimit`]. `None`: no cap.
    pub max_memory: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_files: 1000,
            max_file_bytes: 8 << 20,
            max_publish_bytes: 32 << 20,
            max_path_bytes: 512,
            compile_timeout: std::time::Duration::from_secs(30),
            max_memory: Some(DEFAULT_MAX_MEMORY),
        }
    }
}

/// The default of [`Limits::max_memory`] (and of `--max-memory`).
pub const DEFAULT_MAX_MEMORY: u64 = 2 << 30;

/// What a publish costs beyond its input: the process, the compiler, the
/// well-known types, caches that do not grow with the input.
pub const MEMORY_BASE: u64 = 64 << 20;
/// Bytes of peak memory per byte of source: the sources, their blobs and
/// every file's encoded descriptor (comments included), held until stored.
pub const MEMORY_PER_BYTE: u64 = 4;
/// Bytes of peak memory per statement (`;`) of the largest compile batch:
/// protox's parser holds about 1.3 KB per declaration (its syntax tree and
/// the descriptor with source locations), a descriptor pool about 1.2 KB
/// (given no source locations: see [`super::guard`]). Files are compiled
/// [`BATCH_FILES`](super::guard::BATCH_FILES) at a time, so the bound takes
/// the files with the most statements.
pub const MEMORY_PER_STATEMENT: u64 = 1536;

/// The peak memory a publish of `sources` may need, an upper estimate:
/// `MEMORY_BASE + MEMORY_PER_BYTE × bytes + MEMORY_PER_STATEMENT ×
/// statements of the 256 files with the most`. Measured (README,
/// "Memory"): the googleapis load (70 MB, 388,125 statements) peaks at
/// about 450 MiB against an estimate of 502 MiB; one file of 330,000
/// fields (7.4 MB) at about 493 MiB against 576 MiB.
pub fn memory_estimate<'a>(sources: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let (bytes, batch) = measure(sources);
    MEMORY_BASE + MEMORY_PER_BYTE * bytes + MEMORY_PER_STATEMENT * batch
}

/// Bytes of peak memory per statement of the largest batch when the
/// publish is also checked for compatibility: the check holds the pool of
/// the version it compares against beside the new one's (each without
/// source info, about 1.4 KB per statement), in memory the compile left
/// fragmented. Measured: 3.4 KB per statement checking a changed
/// 100,000-field file, 2.8 KB for 330,000.
pub const MEMORY_PER_CHECKED_STATEMENT: u64 = 4096;

/// [`memory_estimate`] of a publish that is also checked for compatibility
/// (`check`, `push`/`load --promote`), with
/// [`MEMORY_PER_CHECKED_STATEMENT`]. Measured: checking a changed
/// 330,000-field file (7.4 MB) peaks at about 923 MiB against 1,383 MiB.
pub fn memory_estimate_checked<'a>(sources: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let (bytes, batch) = measure(sources);
    MEMORY_BASE + MEMORY_PER_BYTE * bytes + MEMORY_PER_CHECKED_STATEMENT * batch
}

/// The bytes of `sources`, and the statements of the 256 files with the most.
fn measure<'a>(sources: impl IntoIterator<Item = &'a [u8]>) -> (u64, u64) {
    let mut bytes = 0u64;
    let mut statements: Vec<u64> = Vec::new();
    for s in sources {
        bytes += s.len() as u64;
        statements.push(self::statements(s));
    }
    statements.sort_unstable_by(|a, b| b.cmp(a));
    (
        bytes,
        statements.iter().take(super::guard::BATCH_FILES).sum(),
    )
}

/// The statements of a source, as the estimate counts them: its `;`s.
pub fn statements(source: &[u8]) -> u64 {
    source.iter().filter(|&&b| b == b';').count() as u64
}

/// Refuses a publish of `sources` (`what`: how to name it) whose estimate
/// is over `limits.max_memory`, before anything is compiled or written;
/// `checked`: it is also checked for compatibility
/// ([`memory_estimate_checked`]).
pub fn check_memory<'a>(
    limits: &Limits,
    what: &str,
    sources: impl IntoIterator<Item = &'a [u8]> + Clone,
    checked: bool,
) -> crate::Result<()> {
    let Some(limit) = limits.max_memory else {
        return Ok(());
    };
    let needed = if checked {
        memory_estimate_checked(sources.clone())
    } else {
        memory_estimate(sources.clone())
    };
    if needed <= limit {
        return Ok(());
    }
    let input = sources.into_iter().map(|s| s.len() as u64).sum();
    Err(crate::Error::MemoryLimit {
        what: what.to_string(),
        input,
        needed,
        limit,
    })
}

/// Import paths of the Google well-known types that protoshelf serves itself.
pub fn is_well_known(path: &str) -> bool {
    path.starts_with("google/protobuf/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known() {
        assert!(is_well_known("google/protobuf/timestamp.proto"));
        assert!(!is_well_known("google/type/date.proto"));
    }
}
