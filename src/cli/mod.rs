//! The `protoshelf` command line: parses, calls the library, prints.
//! One module per command; exit codes 0 ok, 1 user error, 2 internal.

mod init;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "protoshelf",
    version,
    about = "A protobuf schema registry whose only database is object storage"
)]
pub struct Cli {
    /// Store URL: a directory, file:///dir, s3://bucket/prefix, gs://..., az://..., memory://
    /// [default: $PROTOSHELF_STORE, else the per-user local store]
    #[arg(long, global = true, env = "PROTOSHELF_STORE")]
    store: Option<String>,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// More logging (-v, -vv); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Create or verify the store (format marker, create-if-absent probe).
    Init(init::Args),
}

/// Global options every command gets.
pub struct Ctx {
    pub store: Option<String>,
    pub output: Output,
}

impl Ctx {
    pub async fn open(&self) -> protoshelf::Result<protoshelf::ObjStore> {
        protoshelf::ObjStore::open_or_default(self.store.as_deref()).await
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let ctx = Ctx {
        store: cli.store,
        output: cli.output,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Init(args) => init::run(&ctx, args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.is_user_error() { 1 } else { 2 })
        }
    }
}
