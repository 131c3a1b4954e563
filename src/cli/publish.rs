//! `protoshelf push`, `load` and `check`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use protoshelf::registry::CompatScope;
use protoshelf::registry::{BatchMember, Limits, PublishOptions, Published, Registry};
use protoshelf::{Error, Result};
use serde_json::json;

use super::Ctx;
use super::author::AuthorArgs;
use super::complete::Slot;
use super::namespace::parse_kv;

/// The options of commands that compile.
#[derive(clap::Args)]
pub struct CompileArgs {
    /// Compile time allowed for each schema (e.g. 30s, 2m), not for a batch
    /// as a whole. A schema that takes longer fails with exit code 2 (a
    /// limit a busy machine can hit, not an error in the files).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = super::mount::parse_duration)]
    compile_timeout: std::time::Duration,
    /// Peak memory a publish may need (e.g. 512MiB, 2G), estimated from the
    /// input before anything is compiled or written; over it the command
    /// is refused (exit 1) with the estimate. 0: no cap.
    #[arg(long, value_name = "SIZE", env = "PROTOSHELF_MAX_MEMORY", default_value = "2GiB", value_parser = super::mount::parse_size)]
    max_memory: u64,
}

impl CompileArgs {
    /// The registry with these limits; `create`: the command may create the
    /// store (it creates a namespace).
    async fn registry(&self, ctx: &Ctx, create: bool) -> Result<Registry> {
        let registry = if create {
            ctx.registry_creating().await?
        } else {
            ctx.registry().await?
        };
        Ok(registry.with_limits(self.limits()))
    }

    pub(super) fn limits(&self) -> Limits {
        Limits {
            compile_timeout: self.compile_timeout,
            max_memory: (self.max_memory > 0).then_some(self.max_memory),
            ..Limits::default()
        }
    }

    /// Refuses input over `--max-memory` before the store is opened, so
    /// nothing (not even a namespace `--create` would make) is written.
    /// `checked`: the command also checks compatibility (`check`, or
    /// `--promote`).
    fn check_memory(
        &self,
        members: &[(&str, &[protoshelf::registry::SourceFile])],
        checked: bool,
    ) -> Result<()> {
        protoshelf::registry::publish::check_memory(&self.limits(), members, checked)
    }
}

/// How the files to publish are read.
#[derive(clap::Args)]
pub struct InputArgs {
    /// Read symbolic links that resolve outside the directory given too
    /// (refused by default: a tree cannot publish files from elsewhere).
    #[arg(long)]
    follow_symlinks: bool,
}

impl InputArgs {
    fn options(&self) -> protoshelf::inputs::ReadOptions {
        protoshelf::inputs::ReadOptions {
            follow_symlinks: self.follow_symlinks,
            ..Default::default()
        }
    }
}

/// Import roots of `push` and `check`, as protoc's `-I`.
#[derive(clap::Args)]
pub struct RootArgs {
    /// Import root, repeatable (as protoc's -I/--proto_path): each file or
    /// directory argument is stored at its path relative to the first root
    /// holding it, and refused outside every root. Default: files relative
    /// to the current directory, a directory relative to itself.
    #[arg(short = 'I', long = "root", value_name = "DIR")]
    roots: Vec<std::path::PathBuf>,
}

impl RootArgs {
    fn options(&self, input: &InputArgs) -> protoshelf::inputs::ReadOptions {
        protoshelf::inputs::ReadOptions {
            roots: self.roots.clone(),
            ..input.options()
        }
    }
}

#[derive(clap::Args)]
pub struct PushArgs {
    /// [NAMESPACE] SCHEMA PATH...: the namespace (unless -n/--namespace or
    /// PROTOSHELF_NAMESPACE is set), the schema, then .proto files and
    /// directories.
    #[arg(required = true, num_args = 1.., value_name = "ARG",
        add = super::complete::after_ns(&[Slot::Schema, Slot::Paths]))]
    args: Vec<String>,
    /// Promote right after staging.
    #[arg(long)]
    promote: bool,
    /// Allow files at well-known-type paths (google/protobuf/...).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    author: AuthorArgs,
    /// Metadata of the version, repeatable; shown by `schema versions`.
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_kv)]
    metadata: Vec<(String, String)>,
    /// Create the namespace (policy strict) when it does not exist, and the
    /// store when there is none.
    #[arg(long)]
    create: bool,
    /// No progress on stderr (a bar on a terminal, else a line per phase).
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    roots: RootArgs,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    compile: CompileArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum GroupBy {
    /// One schema per directory.
    Dir,
    /// One schema per file.
    File,
}

#[derive(clap::Args)]
pub struct LoadArgs {
    /// The namespace [default: -n/--namespace, PROTOSHELF_NAMESPACE].
    #[arg(value_name = "NAMESPACE", add = super::complete::after_ns(&[Slot::Dir]))]
    ns: Option<String>,
    /// The directory to publish: its files are named by their path under it.
    #[arg(value_name = "DIR", add = super::complete::after_ns(&[Slot::Dir]))]
    dir: String,
    /// Promote right after staging.
    #[arg(long)]
    promote: bool,
    /// Allow files at well-known-type paths (google/protobuf/...).
    #[arg(long)]
    force: bool,
    /// How files become schemas.
    #[arg(long, value_enum, default_value = "dir")]
    group_by: GroupBy,
    #[command(flatten)]
    author: AuthorArgs,
    /// Metadata of every version loaded, repeatable.
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_kv)]
    metadata: Vec<(String, String)>,
    /// Publish only files whose path relative to DIR matches, repeatable
    /// (`*` within a directory, `**` across; a matched directory includes
    /// its files), e.g. 'google/type/**'.
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Leave out files whose path relative to DIR matches, repeatable (as
    /// --include; wins over it), e.g. '**/*_test.proto' or 'vendor'.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Create the namespace (policy strict) when it does not exist, and the
    /// store when there is none.
    #[arg(long)]
    create: bool,
    /// No progress on stderr (a bar on a terminal, else a line per phase).
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    compile: CompileArgs,
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// [NAMESPACE] SCHEMA PATH...: the namespace (unless -n/--namespace or
    /// PROTOSHELF_NAMESPACE is set), the schema, then .proto files and
    /// directories.
    #[arg(required = true, num_args = 1.., value_name = "ARG",
        add = super::complete::after_ns(&[Slot::Schema, Slot::Paths]))]
    args: Vec<String>,
    /// Allow files at well-known-type paths (google/protobuf/...).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    roots: RootArgs,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    compile: CompileArgs,
}

fn print_published(
    ctx: &Ctx,
    ns: &str,
    published: &[Published],
    promoted: Option<&protoshelf::registry::Promoted>,
) {
    let value: Vec<_> = published
        .iter()
        .map(|p| {
            json!({"namespace_id": ns, "schema_id": p.schema_id, "version": p.version,
            "fingerprint": p.fingerprint, "no_change": p.no_change})
        })
        .collect();
    let value = match (value.len(), promoted) {
        (1, None) => value.into_iter().next().unwrap(),
        (1, Some(p)) => {
            let mut v = value.into_iter().next().unwrap();
            v["promoted"] = json!(p.promoted);
            v
        }
        (_, p) => json!({"published": value, "promoted": p.map(|p| &p.promoted)}),
    };
    ctx.emit(&value, || {
        for p in published {
            if p.no_change {
                outln!("{ns}/{}: no change (version {})", p.schema_id, p.version);
            } else {
                outln!("{ns}/{}: staged version {}", p.schema_id, p.version);
            }
        }
        if let Some(p) = promoted {
            for s in &p.promoted {
                outln!(
                    "{ns}/{}: current {} -> {}",
                    s.schema_id,
                    fmt_version(s.prior_version),
                    s.current_version
                );
            }
        }
    });
}

/// Whether a publish may create the store: with `--create`, or into
/// `__builtins__`, which the registry creates on first use.
fn creates(create: bool, ns: &str) -> bool {
    create || ns == protoshelf::ids::BUILTINS
}

pub fn fmt_version(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

pub async fn push(ctx: &Ctx, a: PushArgs) -> Result<()> {
    let (ns, rest) = ctx.ns_variadic(a.args, 2)?;
    let schema = rest[0].clone();
    let reporter = super::progress::Reporter::new("push", a.quiet);
    let files = protoshelf::inputs::collect(&rest[1..], &a.roots.options(&a.input))?;
    // Read in one go: the phase is told once, done.
    let bytes = files.iter().map(|f| f.content.len() as u64).sum();
    reporter.reading(files.len(), files.len(), bytes);
    a.compile.check_memory(&[(&schema, &files)], a.promote)?;
    let registry = a.compile.registry(ctx, creates(a.create, &ns)).await?;
    let opts = PublishOptions {
        force: a.force,
        created_by: Some(ctx.commits_as(&a.author)),
        metadata: a.metadata.into_iter().collect(),
        progress: reporter.publish_progress(),
        // Created once the files pass every check, so bad input leaves none.
        create: a.create,
    };
    let result = registry.publish(&ns, &schema, files, opts).await;
    reporter.finish();
    let published = result.map_err(|e| ctx.namespace_hint(e, &ns, Some("--create")))?;
    let promoted = if a.promote {
        Some(registry.promote(&ns, false).await?)
    } else {
        None
    };
    print_published(ctx, &ns, &[published], promoted.as_ref());
    Ok(())
}

/// A schema ID made from a directory or file path: `/` becomes `.`, other
/// characters outside the ID alphabet become `_`.
fn schema_id_for(rel: &str, fallback: &str) -> String {
    let raw = if rel.is_empty() { fallback } else { rel };
    let mut id: String = raw
        .chars()
        .map(|c| match c {
            '/' => '.',
            c if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') => c,
            _ => '_',
        })
        .collect();
    if !id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        id.insert(0, 's');
    }
    id
}

pub async fn load(ctx: &Ctx, a: LoadArgs) -> Result<()> {
    let ns = ctx.ns(a.ns)?;
    let dir = Path::new(&a.dir);
    if !dir.is_dir() {
        return Err(Error::InvalidInput(format!(
            "{}: not a directory",
            dir.display()
        )));
    }
    let root_name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()));
    let root_name = root_name.unwrap_or_else(|| "root".into());
    let filter = protoshelf::inputs::PathFilter::new(&a.include, &a.exclude)?;
    // The well-known types are served by protoshelf itself: a vendored
    // copy (googleapis-style trees carry one) is skipped before it is
    // read, unless --force publishes it on purpose.
    let mut skipped_wkt = 0usize;
    let listed: Vec<_> = protoshelf::inputs::list_dir(dir, &a.input.options())?
        .into_iter()
        .filter(|f| filter.keeps(&f.import))
        .filter(|f| {
            let wkt = !a.force && protoshelf::registry::limits::is_well_known(&f.import);
            skipped_wkt += usize::from(wkt);
            !wkt
        })
        .collect();
    if skipped_wkt > 0 {
        let n = skipped_wkt;
        let _ = writeln!(
            std::io::stderr(),
            "note: skipped {n} file{} under google/protobuf/ (the well-known types, which protoshelf provides; imports of them resolve); give --force to publish them anyway",
            if n == 1 { "" } else { "s" }
        );
    }
    if listed.is_empty() {
        let why = match (filter.is_set(), skipped_wkt > 0) {
            (true, true) => " match the --include/--exclude given outside google/protobuf/",
            (true, false) => " match the --include/--exclude given",
            _ => " outside google/protobuf/",
        };
        return Err(Error::InvalidInput(format!(
            "no .proto files under {}{why}",
            dir.display()
        )));
    }
    let reporter = super::progress::Reporter::new("load", a.quiet);
    let mut files = Vec::with_capacity(listed.len());
    let mut bytes = 0u64;
    reporter.reading(0, listed.len(), 0);
    for l in &listed {
        let f = l.read()?;
        bytes += f.content.len() as u64;
        files.push(f);
        reporter.reading(files.len(), listed.len(), bytes);
    }
    let mut groups: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for f in files {
        let key = match a.group_by {
            GroupBy::Dir => {
                schema_id_for(f.path.rsplit_once('/').map_or("", |(d, _)| d), &root_name)
            }
            GroupBy::File => schema_id_for(f.path.trim_end_matches(".proto"), &root_name),
        };
        groups.entry(key).or_default().push(f);
    }
    let members: Vec<BatchMember> = groups
        .into_iter()
        .map(|(schema_id, files)| BatchMember { schema_id, files })
        .collect();
    let sizes: Vec<(&str, &[protoshelf::registry::SourceFile])> = members
        .iter()
        .map(|m| (m.schema_id.as_str(), m.files.as_slice()))
        .collect();
    a.compile.check_memory(&sizes, a.promote)?;
    drop(sizes);
    let registry = a.compile.registry(ctx, creates(a.create, &ns)).await?;
    let progress = reporter.publish_progress();
    let opts = PublishOptions {
        force: a.force,
        created_by: Some(ctx.commits_as(&a.author)),
        metadata: a.metadata.into_iter().collect(),
        progress,
        create: a.create,
    };
    let result = registry.publish_many(&ns, members, opts).await;
    reporter.finish();
    let published = result.map_err(|e| ctx.namespace_hint(e, &ns, Some("--create")))?;
    let promoted = if a.promote {
        Some(registry.promote(&ns, false).await?)
    } else {
        None
    };
    print_published(ctx, &ns, &published, promoted.as_ref());
    Ok(())
}

pub async fn check(ctx: &Ctx, a: CheckArgs) -> Result<()> {
    let (ns, rest) = ctx.ns_variadic(a.args, 2)?;
    let files = protoshelf::inputs::collect(&rest[1..], &a.roots.options(&a.input))?;
    a.compile.check_memory(&[(&rest[0], &files)], true)?;
    let registry = a.compile.registry(ctx, false).await?;
    let report = registry
        .check(&ns, &rest[0], files, a.force)
        .await
        .map_err(|e| ctx.namespace_hint(e, &ns, None))?;
    if !report.violations.is_empty() {
        // Reported (as text on stderr, and as JSON on stdout with -o json)
        // by the error path, with exit code 1.
        return Err(Error::Incompatible(report.violations));
    }
    ctx.emit(&report, || {
        let against = match report.compat_scope {
            CompatScope::All if report.checked_against.len() > 1 => format!(
                "compatible with versions {}",
                report
                    .checked_against
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => String::new(),
        };
        outln!(
            "{ns}/{}: compiles; {} against current {} (policy {}{}{against})",
            report.schema_id,
            if report.no_change {
                "no change"
            } else {
                "changed"
            },
            fmt_version(report.current_version),
            report.policy,
            if against.is_empty() { "" } else { "; " },
        );
    });
    Ok(())
}
