//! Input limits and file-path rules (DESIGN §2), checked before anything is
//! written.

/// Limits of one publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_files: usize,
    pub max_file_bytes: usize,
    pub max_publish_bytes: usize,
    pub max_path_bytes: usize,
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
