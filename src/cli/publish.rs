//! `protoshelf push`, `load` and `check`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;

use protoshelf::registry::{BatchMember, Limits, PublishOptions, Published, Registry};
use protoshelf::{Error, Result};
use serde_json::json;

use super::Ctx;
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

    fn limits(&self) -> Limits {
        Limits {
            compile_timeout: self.compile_timeout,
            max_memory: (self.max_memory > 0).then_some(self.max_memory),
            ..Limits::default()
        }
    }

    /// Refuses input over `--max-memory` before the store is opened, so
    /// nothing (not even a namespace `--create` would make) is written.
    fn check_memory(&self, members: &[(&str, &[protoshelf::registry::SourceFile])]) -> Result<()> {
        protoshelf::registry::publish::check_memory(&self.limits(), members)
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
        }
    }
}

#[derive(clap::Args)]
pub struct PushArgs {
    /// [NAMESPACE] SCHEMA PATH...: .proto files and directories.
    #[arg(required = true, num_args = 2.., value_name = "ARGS")]
    args: Vec<String>,
    /// Promote right after staging.
    #[arg(long)]
    promote: bool,
    /// Allow files at well-known-type paths (google/protobuf/...).
    #[arg(long)]
    force: bool,
    /// Recorded as the version's author [default: $USER].
    #[arg(long, value_name = "WHO")]
    created_by: Option<String>,
    /// Metadata of the version, repeatable; shown by `schema versions`.
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_kv)]
    metadata: Vec<(String, String)>,
    /// Create the namespace (policy strict) when it does not exist, and the
    /// store when there is none.
    #[arg(long)]
    create: bool,
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
    /// [NAMESPACE] DIR
    #[arg(required = true, num_args = 1..=2, value_name = "ARGS")]
    args: Vec<String>,
    /// Promote right after staging.
    #[arg(long)]
    promote: bool,
    /// Allow files at well-known-type paths (google/protobuf/...).
    #[arg(long)]
    force: bool,
    /// How files become schemas.
    #[arg(long, value_enum, default_value = "dir")]
    group_by: GroupBy,
    /// Recorded as the versions' author [default: $USER].
    #[arg(long, value_name = "WHO")]
    created_by: Option<String>,
    /// Create the namespace (policy strict) when it does not exist, and the
    /// store when there is none.
    #[arg(long)]
    create: bool,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    compile: CompileArgs,
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// [NAMESPACE] SCHEMA PATH...
    #[arg(required = true, num_args = 2.., value_name = "ARGS")]
    args: Vec<String>,
    /// Allow files at well-known-type paths (google/protobuf/...).
    #[arg(long)]
    force: bool,
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

/// `--create`: the namespace, with the default policy, unless it exists.
async fn create_namespace(registry: &Registry, ns: &str) -> Result<()> {
    match registry
        .create_namespace(ns, Default::default(), Default::default())
        .await
    {
        Ok(()) => {
            tracing::info!("created namespace {ns}");
            Ok(())
        }
        Err(Error::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

pub fn fmt_version(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

pub async fn push(ctx: &Ctx, a: PushArgs) -> Result<()> {
    let (ns, rest) = ctx.ns_variadic(a.args, 2)?;
    let schema = rest[0].clone();
    let files = protoshelf::inputs::collect(&rest[1..], &a.input.options())?;
    a.compile.check_memory(&[(&schema, &files)])?;
    let registry = a.compile.registry(ctx, creates(a.create, &ns)).await?;
    if a.create {
        create_namespace(&registry, &ns).await?;
    }
    let opts = PublishOptions {
        force: a.force,
        created_by: a.created_by,
        metadata: a.metadata.into_iter().collect(),
        ..Default::default()
    };
    let published = registry
        .publish(&ns, &schema, files, opts)
        .await
        .map_err(|e| ctx.namespace_hint(e, &ns, Some("--create")))?;
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
    let (ns, rest) = ctx.ns_fixed(a.args, 1)?;
    let dir = Path::new(&rest[0]);
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
    let mut groups: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for f in protoshelf::inputs::read_dir(dir, &a.input.options())? {
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
    let count: usize = members.iter().map(|m| m.files.len()).sum();
    let sizes: Vec<(&str, &[protoshelf::registry::SourceFile])> = members
        .iter()
        .map(|m| (m.schema_id.as_str(), m.files.as_slice()))
        .collect();
    a.compile.check_memory(&sizes)?;
    drop(sizes);
    // A bar on a terminal: versions stored out of versions to store.
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(members.len() as u64);
        let style = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} schemas ({elapsed})",
        )
        .expect("valid template")
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(format!("compiling {count} files into {ns}"));
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    });
    let registry = a.compile.registry(ctx, creates(a.create, &ns)).await?;
    if a.create {
        create_namespace(&registry, &ns).await?;
    }
    let progress = bar.clone().map(|bar| {
        protoshelf::registry::Progress(std::sync::Arc::new(move |done, total| {
            bar.set_message("storing versions".to_string());
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }))
    });
    let opts = PublishOptions {
        force: a.force,
        created_by: a.created_by,
        progress,
        ..Default::default()
    };
    let result = registry.publish_many(&ns, members, opts).await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
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
    let files = protoshelf::inputs::collect(&rest[1..], &a.input.options())?;
    a.compile.check_memory(&[(&rest[0], &files)])?;
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
        outln!(
            "{ns}/{}: compiles; {} against current {} (policy {})",
            report.schema_id,
            if report.no_change {
                "no change"
            } else {
                "changed"
            },
            fmt_version(report.current_version),
            report.policy
        );
    });
    Ok(())
}
