//! The `protoshelf` command line: parses, calls the library, prints.
//! One module per command; exit codes 0 ok, 1 user error, 2 internal or
//! storage failure, 3 nothing committed under contention (safe to retry).

/// `println!` for the command's output, through [`stdout_write`].
macro_rules! outln {
    ($($t:tt)*) => { $crate::cli::stdout_write(format!("{}\n", format_args!($($t)*)).as_bytes()) };
}

mod author;
mod complete;
mod diff;
mod history;
mod init;
mod maintenance;
mod mount;
mod namespace;
mod progress;
mod publish;
mod rebase;
mod schema;
mod serve;
mod staging;
mod status;

#[cfg(test)]
mod manual_tests;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use protoshelf::objstore::metrics::RequestCounts;
use protoshelf::objstore::url::{self, Backend, RequestBudget};
use protoshelf::objstore::{DEFAULT_CACHE_BYTES, ProtocolStats};
use protoshelf::registry::{Registry, RegistryStats};
use protoshelf::{Error, Result};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "protoshelf",
    version,
    about = "A protobuf schema registry whose only database is object storage",
    after_help = "The namespace of commands that take [NAMESPACE] comes from -n/--namespace or PROTOSHELF_NAMESPACE when set (then it is never an argument), else from their first argument."
)]
pub struct Cli {
    /// Store URL: a directory, file:///dir, s3://bucket/prefix, gs://bucket/prefix,
    /// az://container/prefix [default: $PROTOSHELF_STORE, else the per-user local store]
    #[arg(long, global = true, env = "PROTOSHELF_STORE", value_name = "URL")]
    store: Option<String>,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// The namespace of commands that take [NAMESPACE], which then take no
    /// namespace argument; for mount, repeatable: the namespaces shown.
    #[arg(
        short,
        long,
        global = true,
        env = "PROTOSHELF_NAMESPACE",
        value_name = "NS",
        add = complete::namespaces()
    )]
    namespace: Vec<String>,
    /// More logging (-v, -vv); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Print to stderr, when the command ends, the storage requests by kind
    /// and the bytes written (S3 bills per request), and the commits made,
    /// the races they lost to concurrent writers and how the retries were
    /// validated (one JSON object with -o json).
    #[arg(long, global = true)]
    stats: bool,
    /// How long a commit keeps losing races to concurrent writers before
    /// the command gives up with exit code 3 (nothing committed: safe to
    /// run again), e.g. 30s, 2m [default: 10m]
    #[arg(long, global = true, env = "PROTOSHELF_COMMIT_GIVE_UP", value_name = "DURATION",
        value_parser = mount::parse_duration)]
    commit_give_up: Option<std::time::Duration>,
    /// Time one storage request may take, retries included, before the
    /// command fails with exit 2 (cloud stores; e.g. 10s, 2m)
    /// [default: 30s, 10s for mount]
    #[arg(long, global = true, env = "PROTOSHELF_STORAGE_TIMEOUT", value_name = "DURATION",
          value_parser = mount::parse_duration)]
    storage_timeout: Option<std::time::Duration>,
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
    /// Create, list and inspect namespaces.
    #[command(subcommand)]
    Namespace(namespace::Cmd),
    /// List and inspect schemas, their sources and descriptors.
    #[command(subcommand)]
    Schema(schema::Cmd),
    /// Publish a schema's .proto files (files and directories) and stage it.
    #[command(override_usage = "protoshelf push [OPTIONS] [NAMESPACE] <SCHEMA> <PATH>...")]
    Push(publish::PushArgs),
    /// Publish a whole tree as one batch staged in one commit.
    #[command(allow_missing_positional = true)]
    Load(publish::LoadArgs),
    /// Compile and report compatibility against current; writes nothing.
    #[command(override_usage = "protoshelf check [OPTIONS] [NAMESPACE] <SCHEMA> <PATH>...")]
    Check(publish::CheckArgs),
    /// Make every staged version current, after the compatibility check.
    Promote(staging::PromoteArgs),
    /// What is staged, by whom and when, and what promote would do.
    Status(status::Args),
    /// Drop every staged version of a namespace.
    Discard(staging::DiscardArgs),
    /// Stage an earlier version of a schema.
    #[command(override_usage = "protoshelf rollback [OPTIONS] [NAMESPACE] <SCHEMA> <VERSION>")]
    Rollback(staging::RollbackArgs),
    /// The namespace's commit history.
    Log(history::Args),
    /// What changed between two versions of a schema: files (unified diff)
    /// and definitions (messages, fields, enums, services).
    #[command(override_usage = "protoshelf diff [OPTIONS] [NAMESPACE] <SCHEMA> <FROM> [TO]")]
    Diff(diff::Args),
    /// Re-pin a namespace's schemas to its ancestors' current versions
    /// (recompiled, checked under its policy, staged in one commit), or
    /// list the pins that are behind (--status).
    #[command(override_usage = "protoshelf rebase [OPTIONS] [NAMESPACE]")]
    Rebase(rebase::Args),
    /// Check every object of the store (or of one namespace): exit 0 when
    /// clean, 1 when damaged, each problem named by its key.
    Verify(maintenance::VerifyArgs),
    /// Delete what nothing references and is older than the grace period.
    Gc(maintenance::GcArgs),
    /// Move a format-2 store to format 3 in place (move markers, descriptor
    /// hashes, namespace sets for readers); safe beside running writers,
    /// resumable, a no-op when done.
    Upgrade(maintenance::UpgradeArgs),
    /// Mount the registry read-only (FUSE) until unmounted or interrupted.
    Mount(mount::Args),
    /// Serve the registry: Confluent Schema Registry REST API and gRPC on one port.
    Serve(serve::Args),
    /// Print a shell's completion script.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// What `--stats` reports (with -o json, this object on one line).
#[derive(Serialize)]
struct Stats {
    requests: RequestCounts,
    bytes_written: u64,
    /// Commits landed and races lost, over every store opened.
    protocol: ProtocolStats,
    /// Publish validations from scratch vs re-based after a lost race.
    registry: RegistryStats,
    /// The process's peak resident memory, in bytes (Linux: `VmHWM`);
    /// what `--max-memory`'s estimate bounds.
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_memory: Option<u64>,
}

/// This process's peak resident set size so far, where the system says
/// (Linux's /proc): none elsewhere.
fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Global options every command gets.
pub struct Ctx {
    pub store: Option<String>,
    pub output: Output,
    pub namespace: Option<String>,
    /// Where `namespace` came from, for messages.
    namespace_source: &'static str,
    /// Every `-n` given (mount shows only these).
    pub namespaces: Vec<String>,
    /// How long a commit may keep losing races (`--commit-give-up`).
    commit_give_up: Option<std::time::Duration>,
    /// `--storage-timeout`, when given.
    pub storage_timeout: Option<std::time::Duration>,
    /// Stores this command opened, for `--stats`.
    opened: std::sync::Mutex<Vec<protoshelf::ObjStore>>,
    /// Registries this command made, for `--stats` (plans and re-bases).
    registries: std::sync::Mutex<Vec<Registry>>,
    /// An exit code a command that succeeded chose (verify: 1 = damaged).
    exit: std::sync::Mutex<Option<u8>>,
    /// What to do about the error the command failed with, printed after
    /// it (`hint:` on stderr, `"hint"` in a JSON error).
    hint: std::sync::Mutex<Option<String>>,
    /// Whether this command created the store (it says so).
    created: std::sync::atomic::AtomicBool,
    /// Who the command's commits are made for (`--created-by`), applied to
    /// every store it opens from then on.
    author: std::sync::Mutex<Option<String>>,
}

impl Ctx {
    /// The registry of a store that must exist: reads, and writes that
    /// change what exists, never create a store (see [`Ctx::open_store`]).
    pub async fn registry(&self) -> Result<Registry> {
        self.registry_of(self.open_store(None, false, DEFAULT_CACHE_BYTES).await?)
    }

    /// The registry, creating the store first when there is none (`init`,
    /// and commands that create a namespace).
    pub async fn registry_creating(&self) -> Result<Registry> {
        let store = self.open_store(None, true, DEFAULT_CACHE_BYTES).await?;
        if self.created_store() {
            let _ = writeln!(
                std::io::stderr(),
                "note: created a new protoshelf store at {}",
                store.url()
            );
        }
        self.registry_of(store)
    }

    /// Whether this command created the store.
    pub fn created_store(&self) -> bool {
        self.created.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn registry_of(&self, store: protoshelf::ObjStore) -> Result<Registry> {
        let registry = Registry::new(store);
        // Clones share the counters, so this one sees the command's work.
        self.registries.lock().unwrap().push(registry.clone());
        Ok(registry)
    }

    /// Opens the store with the request budget (`default` unless
    /// `--storage-timeout`) and a cache of `cache` bytes. Only `create`
    /// opens may create it ([`Ctx::created_store`] tells).
    pub async fn open_store(
        &self,
        default: Option<RequestBudget>,
        create: bool,
        cache: u64,
    ) -> Result<protoshelf::ObjStore> {
        let existing = match self.backend(default) {
            Ok(backend) => protoshelf::ObjStore::open_existing(backend, cache).await,
            Err(e) => Err(e),
        };
        let store = match existing {
            Err(Error::NoStore { .. }) if create => {
                let budget = Some(self.budget(default));
                let backend = url::open_with(&url::resolve(self.store.as_deref()), budget)?;
                let store = protoshelf::ObjStore::with_cache(backend, cache).await?;
                self.created
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                store
            }
            other => other.map_err(|e| self.as_given(e))?,
        };
        Ok(self.track(store))
    }

    /// A missing store named by the URL as the user gave it, so the
    /// hint's command works as typed.
    pub fn as_given(&self, e: Error) -> Error {
        match e {
            Error::NoStore { .. } => Error::NoStore {
                url: url::resolve(self.store.as_deref()),
            },
            e => e,
        }
    }

    /// The request budget: `--storage-timeout`, else `default`, else the
    /// CLI's default.
    pub fn budget(&self, default: Option<RequestBudget>) -> RequestBudget {
        self.storage_timeout
            .map(RequestBudget)
            .or(default)
            .unwrap_or(RequestBudget::CLI_DEFAULT)
    }

    /// The store's backend, opened with the request budget; a local
    /// directory that does not exist is not created.
    pub fn backend(&self, default: Option<RequestBudget>) -> Result<Backend> {
        url::open_existing(
            &url::resolve(self.store.as_deref()),
            Some(self.budget(default)),
        )
    }

    /// Passes `e` on, with a hint naming what to do when it says the
    /// namespace `ns` does not exist (`create` names the flag that would
    /// create it).
    pub fn namespace_hint(&self, e: Error, ns: &str, create: Option<&str>) -> Error {
        if matches!(&e, Error::NotFound(what) if *what == format!("namespace {ns:?}")) {
            let flag = create.map_or(String::new(), |c| format!(", or give {c}"));
            *self.hint.lock().unwrap() = Some(format!(
                "create it with `protoshelf namespace create {ns}`{flag}"
            ));
        }
        e
    }

    /// Records `--created-by` (or its default) in what this command
    /// commits, through every store it opened or opens. Returns the author.
    pub fn commits_as(&self, a: &author::AuthorArgs) -> String {
        let who = a.who();
        *self.author.lock().unwrap() = Some(who.clone());
        for store in self.opened.lock().unwrap().iter() {
            store.set_author(Some(who.clone()));
        }
        who
    }

    /// Makes the command exit with `code` once it has printed its output.
    pub fn exit_with(&self, code: u8) {
        *self.exit.lock().unwrap() = Some(code);
    }

    /// Applies the global options to a store and remembers it, so
    /// `--stats` can report its requests.
    pub fn track(&self, store: protoshelf::ObjStore) -> protoshelf::ObjStore {
        if let Some(bound) = self.commit_give_up {
            store.set_commit_give_up(bound);
        }
        store.set_author(self.author.lock().unwrap().clone());
        self.opened.lock().unwrap().push(store.clone());
        store
    }

    /// `--stats`, summed over every store and registry the command used.
    fn print_stats(&self) {
        let stats = self.stats();
        match self.output {
            Output::Json => eprintln!("{}", serde_json::to_string(&stats).expect("serializable")),
            Output::Table => {
                let (p, r) = (&stats.protocol, &stats.registry);
                eprintln!(
                    "requests: {}; bytes written {}",
                    stats.requests, stats.bytes_written
                );
                eprintln!(
                    "commits: {} landed, {} races lost (at most {} before one commit landed); publish plans {}, re-based {}",
                    p.commits, p.conflicts, p.most_lost, r.plans, r.rebases
                );
                if let Some(peak) = stats.peak_memory {
                    eprintln!("memory: peak {} MiB", peak.div_ceil(1 << 20));
                }
            }
        }
    }

    fn stats(&self) -> Stats {
        let opened = self.opened.lock().unwrap();
        let mut protocol = ProtocolStats::default();
        for s in opened.iter() {
            let p = s.protocol_stats();
            protocol.commits += p.commits;
            protocol.conflicts += p.conflicts;
            protocol.ambiguous_settled += p.ambiguous_settled;
            protocol.write_retries += p.write_retries;
            protocol.checkpoints += p.checkpoints;
            protocol.cache_hits += p.cache_hits;
            protocol.most_lost = protocol.most_lost.max(p.most_lost);
        }
        let mut registry = RegistryStats::default();
        for r in self.registries.lock().unwrap().iter() {
            let s = r.stats();
            registry.plans += s.plans;
            registry.rebases += s.rebases;
        }
        Stats {
            requests: opened
                .iter()
                .fold(RequestCounts::default(), |acc, s| acc + s.requests()),
            bytes_written: opened.iter().map(|s| s.bytes_written()).sum(),
            protocol,
            registry,
            peak_memory: peak_memory(),
        }
    }

    /// The namespace, by the one rule every command follows: with
    /// -n/--namespace or PROTOSHELF_NAMESPACE set, it never comes from an
    /// argument (push and check take open-ended lists, where a namespace
    /// argument could not be told from a schema); otherwise `arg` is it.
    /// Both together are refused rather than one silently winning.
    pub fn ns_opt(&self, arg: Option<String>) -> Result<Option<String>> {
        match (arg, &self.namespace) {
            (Some(arg), Some(ns)) => Err(Error::InvalidInput(format!(
                "the namespace is given twice: {arg:?} as an argument and {ns:?} by {source}; \
                 with {source} set, commands take no namespace argument: drop {arg:?}, \
                 or choose it with `-n {arg}`",
                source = self.namespace_source
            ))),
            (Some(arg), None) => Ok(Some(arg)),
            (None, ns) => Ok(ns.clone()),
        }
    }

    /// [`Ctx::ns_opt`] for commands that need a namespace.
    pub fn ns(&self, arg: Option<String>) -> Result<String> {
        self.ns_opt(arg)?.ok_or_else(|| {
            Error::InvalidInput(
                "no namespace: give it as the first argument, or with -n/--namespace or PROTOSHELF_NAMESPACE".into(),
            )
        })
    }

    /// `[ns] <rest...>` with exactly `rest` more arguments: the namespace is
    /// the extra first argument when present (see [`Ctx::ns_opt`]).
    pub fn ns_fixed(&self, mut args: Vec<String>, rest: usize) -> Result<(String, Vec<String>)> {
        if args.len() == rest + 1 {
            let ns = self.ns(Some(args.remove(0)))?;
            Ok((ns, args))
        } else if args.len() == rest {
            Ok((self.ns(None)?, args))
        } else {
            Err(Error::InvalidInput(format!(
                "expected {rest} argument{} after the optional namespace, got {}",
                if rest == 1 { "" } else { "s" },
                args.len()
            )))
        }
    }

    /// `[ns] <more...>` where the list is open-ended: the namespace is the
    /// -n/env default when set, else the first argument (see [`Ctx::ns_opt`]).
    pub fn ns_variadic(
        &self,
        mut args: Vec<String>,
        min_rest: usize,
    ) -> Result<(String, Vec<String>)> {
        let first = (self.namespace.is_none() && !args.is_empty()).then(|| args.remove(0));
        let ns = self.ns(first)?;
        if args.len() < min_rest {
            return Err(Error::InvalidInput(format!(
                "expected at least {min_rest} arguments after the namespace"
            )));
        }
        Ok((ns, args))
    }

    /// Prints what a delete or undelete of `what` did: `value` with
    /// `changed` in JSON; `<done> <what>`, or that nothing was to do.
    pub fn report_change(
        &self,
        mut value: serde_json::Value,
        what: &str,
        done: &str,
        changed: bool,
    ) {
        value["changed"] = changed.into();
        self.emit(&value, || {
            if changed {
                outln!("{done} {what}");
            } else {
                outln!("{what} is {done} already; nothing to do");
            }
        });
    }

    /// Prints `value` as JSON, or runs `table` for people.
    pub fn emit<T: Serialize>(&self, value: &T, table: impl FnOnce()) {
        match self.output {
            Output::Json => outln!(
                "{}",
                serde_json::to_string_pretty(value).expect("serializable")
            ),
            Output::Table => table(),
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    // fuser warns about every request protoshelf leaves unimplemented
    // (getxattr, poll: `ls -la` and buf send them; the kernel gets ENOSYS,
    // the right answer) and when it unmounts a mount already unmounted
    // from outside (fusermount3 -u, the normal way to stop `mount`): only
    // its errors are shown, unless RUST_LOG asks for more. aws-config logs
    // its credential providers' internals (Debug forms) at info.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{default},fuser=error,aws_config=warn"))
    });
    // Colours only on a terminal: log files and pipes get plain text.
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(ctx: &Ctx, command: Command) -> Result<()> {
    match command {
        Command::Init(a) => init::run(ctx, a).await,
        Command::Namespace(c) => namespace::run(ctx, c).await,
        Command::Schema(c) => schema::run(ctx, c).await,
        Command::Push(a) => publish::push(ctx, a).await,
        Command::Load(a) => publish::load(ctx, a).await,
        Command::Check(a) => publish::check(ctx, a).await,
        Command::Promote(a) => staging::promote(ctx, a).await,
        Command::Status(a) => status::status(ctx, a).await,
        Command::Discard(a) => staging::discard(ctx, a).await,
        Command::Rollback(a) => staging::rollback(ctx, a).await,
        Command::Log(a) => history::run(ctx, a).await,
        Command::Diff(a) => diff::run(ctx, a).await,
        Command::Rebase(a) => rebase::run(ctx, a).await,
        Command::Verify(a) => maintenance::verify(ctx, a).await,
        Command::Gc(a) => maintenance::gc(ctx, a).await,
        Command::Upgrade(a) => maintenance::upgrade(ctx, a).await,
        Command::Mount(a) => mount::run(ctx, a).await,
        Command::Serve(a) => serve::run(ctx, a).await,
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "protoshelf", &mut script);
            stdout_write(&script);
            Ok(())
        }
    }
}

pub fn main() -> ExitCode {
    // With COMPLETE=<shell> set, answers the shell's completion request
    // and exits; otherwise returns at once.
    clap_complete::CompleteEnv::with_factory(Cli::command).complete();
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            let _ = e.print();
            // Help and version are successes; a malformed command line is
            // the caller's error (exit 1, like any bad input).
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => {
                    if json_requested(std::env::args().skip(1)) {
                        let message = e.render().to_string();
                        let message = message.trim().trim_start_matches("error: ");
                        let body = serde_json::json!({"error": {
                            "kind": "usage", "message": message, "exit_code": 1}});
                        outln!(
                            "{}",
                            serde_json::to_string_pretty(&body).expect("serializable")
                        );
                    }
                    ExitCode::from(1)
                }
            };
        }
    };
    init_logging(cli.verbose);
    let ctx = Ctx {
        store: cli.store,
        output: cli.output,
        namespace: cli.namespace.last().cloned(),
        namespace_source: match matches.value_source("namespace") {
            Some(clap::parser::ValueSource::EnvVariable) => "PROTOSHELF_NAMESPACE",
            _ => "-n/--namespace",
        },
        namespaces: cli.namespace,
        commit_give_up: cli.commit_give_up,
        storage_timeout: cli.storage_timeout,
        opened: Default::default(),
        registries: Default::default(),
        exit: Default::default(),
        hint: Default::default(),
        created: Default::default(),
        author: Default::default(),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(run(&ctx, cli.command));
    if cli.stats {
        ctx.print_stats();
    }
    match result {
        Ok(()) => match *ctx.exit.lock().unwrap() {
            Some(code) => ExitCode::from(code),
            None => ExitCode::SUCCESS,
        },
        Err(e) => report_error(&ctx, e),
    }
}

/// One failure as people and programs read it: `error:` and `hint:` lines
/// on stderr; with `-o json` also `{"error": {...}}` on stdout.
fn report_error(ctx: &Ctx, e: Error) -> ExitCode {
    use protoshelf::error::StorageProblem;
    let store = url::resolve(ctx.store.as_deref());
    let mut hint = ctx.hint.lock().unwrap().take();
    // The backend's raw answer (XML, the metadata endpoint) explains
    // nothing to a person: say what is wrong, keep the raw text for -v.
    let message = match e.storage_problem() {
        Some(StorageProblem::NoSuchBucket) => {
            tracing::info!("{e}");
            hint = Some(format!(
                "create it with `protoshelf --store {store} init --create-bucket`, or check the bucket name, AWS_REGION and AWS_ENDPOINT_URL"
            ));
            format!("the bucket of {store} does not exist")
        }
        Some(StorageProblem::NoCredentials) => {
            tracing::info!("{e}");
            match protoshelf::objstore::aws::profile_failure(&e) {
                Some((profile, said)) => {
                    hint = Some(format!(
                        "define the profile in ~/.aws/config or ~/.aws/credentials (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE), e.g. with `aws configure --profile {profile}` or `aws sso login --profile {profile}`, or name another with AWS_PROFILE"
                    ));
                    format!(
                        "no AWS credentials for {store} from the profile {profile:?} (AWS_PROFILE): {said}"
                    )
                }
                None => {
                    hint = Some(
                        "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary credentials), or AWS_PROFILE naming a profile of ~/.aws/config (aws configure, aws sso login), or AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN".into(),
                    );
                    format!(
                        "no AWS credentials for {store}: none in the environment or the AWS profile files, and no instance or container role answered"
                    )
                }
            }
        }
        None => e.to_string(),
    };
    if e.is_unreachable() && e.storage_problem().is_none() {
        hint = Some(format!(
            "the store {store} did not answer within the budget of {} per request (retries included); check its endpoint and network, or allow more with --storage-timeout / PROTOSHELF_STORAGE_TIMEOUT",
            humantime_secs(ctx.budget(None).0),
        ));
    }
    let code = e.exit_code();
    if ctx.output == Output::Json {
        let mut error =
            serde_json::json!({"kind": e.kind(), "message": message, "exit_code": code});
        if let Some(h) = &hint {
            error["hint"] = h.as_str().into();
        }
        let mut body = serde_json::json!({ "error": error });
        if let Error::Incompatible(v) = &e {
            // CI jobs reading JSON get the violations as data too.
            body["violations"] = serde_json::json!(v);
        }
        outln!(
            "{}",
            serde_json::to_string_pretty(&body).expect("serializable")
        );
    }
    let _ = writeln!(std::io::stderr(), "error: {message}");
    if let Some(hint) = hint {
        let _ = writeln!(std::io::stderr(), "hint: {hint}");
    }
    ExitCode::from(code)
}

/// Whether a command line clap refused asked for `-o json`.
fn json_requested(args: impl Iterator<Item = String>) -> bool {
    let args: Vec<String> = args.collect();
    args.iter().enumerate().any(|(i, a)| {
        matches!(a.as_str(), "-ojson" | "--output=json" | "-o=json")
            || (matches!(a.as_str(), "-o" | "--output")
                && args.get(i + 1).is_some_and(|v| v == "json"))
    })
}

/// `30 s`, `2.5 s`.
fn humantime_secs(d: std::time::Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// Writes to stdout. A reader that went away (`| head -1`) ends the process
/// quietly with 0, as ripgrep does, where `println!` would panic (exit 101):
/// only output is lost, and every write command prints after it committed.
/// Any other write failure is exit 2.
pub(crate) fn stdout_write(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = out.write_all(bytes).and_then(|()| out.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(2);
    }
}
