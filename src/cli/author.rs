//! `--created-by`, on every command that commits.

/// Who a change is made for.
#[derive(clap::Args)]
pub struct AuthorArgs {
    /// Who this change is made for, recorded in the log entry it commits
    /// (and as the author of versions and namespaces it creates); shown by
    /// `log` [default: $USER@host].
    #[arg(long, value_name = "WHO")]
    created_by: Option<String>,
}

impl AuthorArgs {
    /// The author: the flag, else `$USER@host`.
    pub fn who(&self) -> String {
        self.created_by
            .clone()
            .unwrap_or_else(protoshelf::objstore::default_author)
    }
}
