//! `protoshelf schema ...`

use std::io::IsTerminal;
use std::path::Path;

use protoshelf::{Error, Result};
use serde_json::json;

use super::Ctx;
use super::publish::fmt_version;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// List a namespace's schemas.
    List {
        /// [NAMESPACE]
        #[arg(num_args = 0..=1, value_name = "NAMESPACE")]
        args: Vec<String>,
    },
    /// Show a schema: current and staged versions, all versions.
    Info {
        /// [NAMESPACE] SCHEMA
        #[arg(required = true, num_args = 1..=2, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Print a version's .proto files, or write them under --out.
    Source {
        /// [NAMESPACE] SCHEMA
        #[arg(required = true, num_args = 1..=2, value_name = "ARGS")]
        args: Vec<String>,
        /// The version [default: current, else staged].
        #[arg(long)]
        version: Option<u64>,
        /// Write the files at their import paths under this directory.
        #[arg(long, value_name = "DIR")]
        out: Option<String>,
    },
    /// Write a version's FileDescriptorSet (binary) to --out or stdout.
    Descriptor {
        /// [NAMESPACE] SCHEMA
        #[arg(required = true, num_args = 1..=2, value_name = "ARGS")]
        args: Vec<String>,
        /// The version [default: current, else staged].
        #[arg(long)]
        version: Option<u64>,
        /// Write the descriptor set to this file instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<String>,
    },
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::InvalidInput(format!("{}: {e}", path.display()))
}

pub async fn run(ctx: &Ctx, cmd: Cmd) -> Result<()> {
    let registry = ctx.registry().await?;
    let store = registry.store();
    match cmd {
        Cmd::List { args } => {
            let (ns, _) = ctx.ns_fixed(args, 0)?;
            let schemas = registry.list_schemas(&ns).await?;
            let value: Vec<_> = schemas
                .iter()
                .map(|s| {
                    json!({"schema_id": s.schema_id, "current_version": s.current_version,
                    "staged_version": s.staged_version, "created_at": s.created_at})
                })
                .collect();
            ctx.emit(&value, || {
                outln!("{:<40} {:>8} {:>8}", "SCHEMA", "CURRENT", "STAGED");
                for s in &schemas {
                    outln!(
                        "{:<40} {:>8} {:>8}",
                        s.schema_id,
                        fmt_version(s.current_version),
                        fmt_version(s.staged_version)
                    );
                }
            });
        }
        Cmd::Info { args } => {
            let (ns, rest) = ctx.ns_fixed(args, 1)?;
            let info = registry.schema_info(&ns, &rest[0]).await?;
            let (s, versions) = (info.schema, info.versions);
            let value = json!({
                "namespace_id": s.namespace_id, "schema_id": s.schema_id,
                "current_version": s.current_version, "staged_version": s.staged_version,
                "versions": versions, "created_at": s.created_at, "metadata": s.metadata,
            });
            ctx.emit(&value, || {
                outln!("schema {}/{}", s.namespace_id, s.schema_id);
                outln!("  current   {}", fmt_version(s.current_version));
                outln!("  staged    {}", fmt_version(s.staged_version));
                outln!(
                    "  versions  {}",
                    versions
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                outln!(
                    "  created   {}",
                    s.created_at.format("%Y-%m-%d %H:%M:%S UTC")
                );
            });
        }
        Cmd::Source { args, version, out } => {
            let (ns, rest) = ctx.ns_fixed(args, 1)?;
            let schema = &rest[0];
            let v = registry.readable_version(&ns, schema, version).await?;
            let sources = store.get_version_sources(&ns, schema, v).await?;
            let files: Vec<_> = sources.iter().map(|(f, _)| f.clone()).collect();
            if let Some(dir) = out {
                let tree: Vec<(&str, &[u8])> = sources
                    .iter()
                    .map(|(f, b)| (f.path.as_str(), b.as_ref()))
                    .collect();
                protoshelf::inputs::write_tree(Path::new(&dir), &tree)?;
                let value = json!({"schema_id": schema, "version": v, "out": dir,
                    "files": files.iter().map(|f| &f.path).collect::<Vec<_>>()});
                ctx.emit(&value, || {
                    outln!(
                        "wrote {} files of {ns}/{schema} version {v} under {dir}",
                        files.len()
                    )
                });
            } else {
                let value: Vec<_> = sources
                    .iter()
                    .map(|(f, b)| json!({"path": f.path, "sha256": f.sha256, "content": String::from_utf8_lossy(b)}))
                    .collect();
                ctx.emit(&value, || {
                    for (f, bytes) in &sources {
                        if sources.len() > 1 {
                            outln!("// ==> {} <==", f.path);
                        }
                        super::stdout_write(bytes);
                    }
                });
            }
        }
        Cmd::Descriptor { args, version, out } => {
            let (ns, rest) = ctx.ns_fixed(args, 1)?;
            let (_, compiled) = registry.descriptor(&ns, &rest[0], version).await?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &compiled).map_err(|e| io_error(Path::new(&path), e))?;
                    tracing::info!("wrote {} bytes to {path}", compiled.len());
                }
                None if std::io::stdout().is_terminal() => {
                    return Err(Error::InvalidInput(
                        "the descriptor set is binary: give --out FILE or redirect stdout".into(),
                    ));
                }
                None => super::stdout_write(&compiled),
            }
        }
    }
    Ok(())
}
