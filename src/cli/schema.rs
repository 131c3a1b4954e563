//! `protoshelf schema ...`

use std::io::{IsTerminal, Write};
use std::path::Path;

use protoshelf::{Error, Result};
use serde_json::json;

use super::Ctx;
use super::complete::Slot;
use super::publish::fmt_version;

/// What the arguments after the namespace name.
const SCHEMA: &[Slot] = &[Slot::Schema];

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// List a namespace's schemas.
    List {
        /// The namespace [default: -n/--namespace, PROTOSHELF_NAMESPACE].
        #[arg(value_name = "NAMESPACE", add = super::complete::after_ns(&[]))]
        ns: Option<String>,
        /// List the soft-deleted schemas instead.
        #[arg(long)]
        deleted: bool,
    },
    /// Show a schema: current and staged versions, all versions.
    #[command(allow_missing_positional = true)]
    Info {
        /// The namespace [default: -n/--namespace, PROTOSHELF_NAMESPACE].
        #[arg(value_name = "NAMESPACE", add = super::complete::after_ns(SCHEMA))]
        ns: Option<String>,
        /// The schema.
        #[arg(value_name = "SCHEMA", add = super::complete::after_ns(SCHEMA))]
        schema: String,
    },
    /// Every version of a schema: author, time, metadata, fingerprint, and
    /// whether it is or was staged or current.
    #[command(allow_missing_positional = true)]
    Versions {
        /// The namespace [default: -n/--namespace, PROTOSHELF_NAMESPACE].
        #[arg(value_name = "NAMESPACE", add = super::complete::after_ns(SCHEMA))]
        ns: Option<String>,
        /// The schema.
        #[arg(value_name = "SCHEMA", add = super::complete::after_ns(SCHEMA))]
        schema: String,
    },
    /// Print a version's .proto files, or write them under --out.
    #[command(allow_missing_positional = true)]
    Source {
        /// The namespace [default: -n/--namespace, PROTOSHELF_NAMESPACE].
        #[arg(value_name = "NAMESPACE", add = super::complete::after_ns(SCHEMA))]
        ns: Option<String>,
        /// The schema.
        #[arg(value_name = "SCHEMA", add = super::complete::after_ns(SCHEMA))]
        schema: String,
        /// The version [default: current, else staged].
        #[arg(long)]
        version: Option<u64>,
        /// Write the files at their import paths under this directory.
        #[arg(long, value_name = "DIR")]
        out: Option<String>,
    },
    /// Write a version's FileDescriptorSet (binary) to --out or stdout.
    #[command(allow_missing_positional = true)]
    Descriptor {
        /// The namespace [default: -n/--namespace, PROTOSHELF_NAMESPACE].
        #[arg(value_name = "NAMESPACE", add = super::complete::after_ns(SCHEMA))]
        ns: Option<String>,
        /// The schema.
        #[arg(value_name = "SCHEMA", add = super::complete::after_ns(SCHEMA))]
        schema: String,
        /// The version [default: current, else staged].
        #[arg(long)]
        version: Option<u64>,
        /// Write the descriptor set to this file instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<String>,
    },
    /// Soft-delete a schema: hidden from lists, the mount's current/ and
    /// staged/ and from imports; its versions stay readable with --version.
    #[command(allow_missing_positional = true)]
    Delete {
        /// The namespace [default: -n/--namespace, PROTOSHELF_NAMESPACE].
        #[arg(value_name = "NAMESPACE", add = super::complete::after_ns(SCHEMA))]
        ns: Option<String>,
        /// The schema.
        #[arg(value_name = "SCHEMA", add = super::complete::after_ns(SCHEMA))]
        schema: String,
        /// Delete it even while other schemas' current versions import it.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        author: super::author::AuthorArgs,
    },
    /// Restore a soft-deleted schema's current version.
    #[command(allow_missing_positional = true)]
    Undelete {
        /// The namespace [default: -n/--namespace, PROTOSHELF_NAMESPACE].
        #[arg(value_name = "NAMESPACE", add = super::complete::after_ns(SCHEMA))]
        ns: Option<String>,
        /// The schema.
        #[arg(value_name = "SCHEMA", add = super::complete::after_ns(SCHEMA))]
        schema: String,
        #[command(flatten)]
        author: super::author::AuthorArgs,
    },
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::InvalidInput(format!("{}: {e}", path.display()))
}

pub async fn run(ctx: &Ctx, cmd: Cmd) -> Result<()> {
    let registry = ctx.registry().await?;
    let store = registry.store();
    match cmd {
        Cmd::List { ns, deleted } => {
            let ns = ctx.ns(ns)?;
            let schemas = if deleted {
                registry.deleted_schemas(&ns).await?
            } else {
                registry.list_schemas(&ns).await?
            };
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
        Cmd::Info { ns, schema } => {
            let ns = ctx.ns(ns)?;
            let info = registry.schema_info(&ns, &schema).await?;
            let (s, versions) = (info.schema, info.versions);
            let value = json!({
                "namespace_id": s.namespace_id, "schema_id": s.schema_id,
                "current_version": s.current_version, "staged_version": s.staged_version,
                "versions": versions, "created_at": s.created_at, "metadata": s.metadata,
                "deleted": s.deleted,
            });
            ctx.emit(&value, || {
                outln!("schema {}/{}", s.namespace_id, s.schema_id);
                if s.deleted {
                    outln!("  deleted   yes (schema undelete restores it)");
                }
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
        Cmd::Versions { ns, schema } => {
            let ns = ctx.ns(ns)?;
            super::status::versions(ctx, &registry, &ns, &schema).await?;
        }
        Cmd::Source {
            ns,
            schema,
            version,
            out,
        } => {
            let ns = ctx.ns(ns)?;
            let schema = &schema;
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
                        "wrote {} file{} of {ns}/{schema} version {v} under {dir}",
                        files.len(),
                        if files.len() == 1 { "" } else { "s" }
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
        Cmd::Delete {
            ns,
            schema,
            force,
            author,
        } => {
            let ns = ctx.ns(ns)?;
            ctx.commits_as(&author);
            let changed = registry.delete_schema(&ns, &schema, force).await?;
            ctx.report_change(
                json!({"namespace_id": ns, "schema_id": schema}),
                &format!("schema {ns}/{schema}"),
                "deleted",
                changed,
            );
        }
        Cmd::Undelete { ns, schema, author } => {
            let ns = ctx.ns(ns)?;
            ctx.commits_as(&author);
            let changed = registry.undelete_schema(&ns, &schema).await?;
            ctx.report_change(
                json!({"namespace_id": ns, "schema_id": schema}),
                &format!("schema {ns}/{schema}"),
                "restored",
                changed,
            );
        }
        Cmd::Descriptor {
            ns,
            schema,
            version,
            out,
        } => {
            let ns = ctx.ns(ns)?;
            let (v, compiled) = registry.descriptor(&ns, &schema, version).await?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &compiled).map_err(|e| io_error(Path::new(&path), e))?;
                    // Say what was written: stdout stays free for -o json,
                    // people read the line on stderr.
                    let set = <prost_types::FileDescriptorSet as prost::Message>::decode(
                        compiled.as_ref(),
                    )
                    .map_err(|e| Error::Corrupt {
                        key: format!("{ns}/{schema}/v{v} descriptor set"),
                        reason: e.to_string(),
                    })?;
                    let files: Vec<&str> = set.file.iter().map(|f| f.name()).collect();
                    let value = json!({"schema_id": schema, "version": v, "out": path,
                        "bytes": compiled.len(), "files": files});
                    ctx.emit(&value, || {
                        let _ = writeln!(
                            std::io::stderr(),
                            "wrote {path}: {} bytes, a FileDescriptorSet of {} file{} ({ns}/{schema} version {v}, imports included)",
                            compiled.len(),
                            files.len(),
                            if files.len() == 1 { "" } else { "s" }
                        );
                    });
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
