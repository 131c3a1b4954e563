//! `protoshelf serve`: the registry over HTTP (Confluent REST API) and
//! gRPC on one port, until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use protoshelf::Result;
use protoshelf::server::auth::{Auth, Role};
use protoshelf::server::{self, ServeOptions};

use super::Ctx;
use super::mount::{parse_duration, parse_duration_or_zero, parse_size};

#[derive(Clone, Copy, clap::ValueEnum)]
enum Anonymous {
    /// Requests without a token may read.
    Read,
    /// Every request needs a token.
    None,
}

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (HTTP/1.1 and HTTP/2, REST and gRPC); port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8081", env = "PROTOSHELF_LISTEN")]
    listen: SocketAddr,
    /// Tokens file: lines `<token> <subject> [reader|writer|admin]`. Without it nobody can write.
    #[arg(long, value_name = "FILE", env = "PROTOSHELF_TOKENS")]
    tokens: Option<PathBuf>,
    /// What requests without a token may do.
    #[arg(long, value_enum, default_value_t = Anonymous::Read)]
    anonymous: Anonymous,
    /// Refuse every write.
    #[arg(long)]
    read_only: bool,
    /// How long state read from the store is served before it is read again
    /// (changes through other replicas show within this; `Cache-Control: no-cache` skips it).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    refresh: Duration,
    /// How long a publish in a child namespace reuses what it read of the
    /// ancestors without asking the store again (its pins record what it
    /// compiled against; `rebase --status` reads the latest); 0s: always ask.
    #[arg(long, default_value = "5s", value_parser = parse_duration_or_zero)]
    ancestor_window: Duration,
    /// Prefix of the namespaces that hold Confluent subjects.
    #[arg(long, default_value = "")]
    subject_prefix: String,
    /// Largest request accepted (e.g. 48MiB).
    #[arg(long, default_value = "48MiB", value_parser = parse_size)]
    max_request_size: u64,
    /// PEM certificate chain: serve TLS (needs --tls-key).
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// The compile limits of each registration, as for `push`.
    #[command(flatten)]
    compile: super::publish::CompileArgs,
}

pub async fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let tokens = match &a.tokens {
        Some(p) => Auth::from_file(p)?,
        None => Default::default(),
    };
    let anonymous = match a.anonymous {
        Anonymous::Read => Some(Role::Reader),
        Anonymous::None => None,
    };
    let opts = ServeOptions {
        listen: a.listen,
        auth: Auth::new(tokens, anonymous, a.read_only),
        confluent: protoshelf::confluent::Options {
            namespace_prefix: a.subject_prefix,
            refresh: a.refresh,
        },
        max_request_bytes: usize::try_from(a.max_request_size).unwrap_or(usize::MAX),
        tls: a.tls_cert.zip(a.tls_key),
    };
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    // Its clients register schemas: a new deployment starts on an empty
    // bucket.
    let registry = ctx
        .registry_creating()
        .await?
        .with_limits(a.compile.limits())
        .with_ancestor_window(a.ancestor_window);
    server::serve(
        registry,
        opts,
        // Scripts and tests read this line to find the port.
        |addr| outln!("listening on {scheme}://{addr}"),
        server::shutdown_signal(),
    )
    .await
}
