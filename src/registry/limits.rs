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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_files: 1000,
            max_file_bytes: 8 << 20,
            max_publish_bytes: 32 << 20,
            max_path_bytes: 512,
            compile_timeout: std::time::Duration::from_secs(30),
        }
    }
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
