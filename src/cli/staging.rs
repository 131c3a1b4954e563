//! `protoshelf promote`, `discard` and `rollback`.

use protoshelf::Result;
use protoshelf::registry::Promoted;
use serde_json::json;

use super::Ctx;
use super::author::AuthorArgs;
use super::complete::Slot;
use super::publish::fmt_version;

#[derive(clap::Args)]
pub struct PromoteArgs {
    /// The namespace [default: -n/--namespace, PROTOSHELF_NAMESPACE].
    #[arg(value_name = "NAMESPACE", add = super::complete::after_ns(&[]))]
    ns: Option<String>,
    /// Check and report, but change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    author: AuthorArgs,
}

#[derive(clap::Args)]
pub struct DiscardArgs {
    /// The namespace [default: -n/--namespace, PROTOSHELF_NAMESPACE].
    #[arg(value_name = "NAMESPACE", add = super::complete::after_ns(&[]))]
    ns: Option<String>,
    #[command(flatten)]
    author: AuthorArgs,
}

/// What `rollback`'s arguments after the namespace name.
const ROLLBACK: &[Slot] = &[Slot::Schema, Slot::Version];

#[derive(clap::Args)]
pub struct RollbackArgs {
    /// [NAMESPACE] SCHEMA: the namespace (unless -n/--namespace or
    /// PROTOSHELF_NAMESPACE is set), then the schema.
    #[arg(required = true, num_args = 1..=2, value_name = "ARG", add = super::complete::after_ns(ROLLBACK))]
    args: Vec<String>,
    /// The version to stage again (a number from 1); clap rejects others.
    #[arg(value_name = "VERSION", value_parser = clap::value_parser!(u64).range(1..),
        add = super::complete::after_ns(ROLLBACK))]
    version: u64,
    /// Skip the compatibility check, here and in the promote that makes
    /// this version current (recorded with the staged version).
    #[arg(long)]
    force: bool,
    /// Promote right away.
    #[arg(long)]
    promote: bool,
    #[command(flatten)]
    author: AuthorArgs,
}

fn print_promoted(ctx: &Ctx, ns: &str, p: &Promoted) {
    ctx.emit(p, || {
        if p.promoted.is_empty() {
            outln!("{ns}: nothing staged");
        }
        let verb = if p.dry_run {
            "would promote"
        } else {
            "promoted"
        };
        for s in &p.promoted {
            let id = &s.schema_id;
            let note = match (p.rollbacks.contains(id), p.forced.contains(id)) {
                _ if p.unchanged.contains(id) => " (unchanged)",
                (true, true) => " (rollback, forced: not checked)",
                (true, false) => " (rollback)",
                (false, true) => " (forced: not checked)",
                (false, false) => "",
            };
            outln!(
                "{ns}/{}: {verb} {} -> {}{note}",
                s.schema_id,
                fmt_version(s.prior_version),
                s.current_version
            );
        }
    });
}

pub async fn promote(ctx: &Ctx, a: PromoteArgs) -> Result<()> {
    let ns = ctx.ns(a.ns)?;
    ctx.commits_as(&a.author);
    let registry = ctx.registry().await?;
    let p = registry.promote(&ns, a.dry_run).await?;
    print_promoted(ctx, &ns, &p);
    Ok(())
}

pub async fn discard(ctx: &Ctx, a: DiscardArgs) -> Result<()> {
    let ns = ctx.ns(a.ns)?;
    ctx.commits_as(&a.author);
    let registry = ctx.registry().await?;
    let discarded = registry.discard(&ns).await?;
    ctx.emit(&json!({"namespace_id": ns, "discarded": discarded}), || {
        outln!(
            "{ns}: {}",
            if discarded {
                "staging discarded"
            } else {
                "nothing staged"
            }
        )
    });
    Ok(())
}

pub async fn rollback(ctx: &Ctx, a: RollbackArgs) -> Result<()> {
    let (ns, rest) = ctx.ns_fixed(a.args, 1)?;
    let (schema, version) = (&rest[0], a.version);
    ctx.commits_as(&a.author);
    let registry = ctx.registry().await?;
    let done = registry
        .rollback(&ns, schema, version, a.force, a.promote)
        .await?;
    if !done.staged && ctx.output == super::Output::Table {
        outln!(
            "{ns}/{schema}: version {version} is already the proposed version (staged, else current): nothing to do"
        );
    }
    match done.promoted {
        Some(p) => print_promoted(ctx, &ns, &p),
        None => ctx.emit(
            &json!({"namespace_id": ns, "schema_id": schema, "staged_version": version,
                "no_change": !done.staged}),
            || {
                if done.staged && a.force {
                    outln!(
                        "{ns}/{schema}: staged version {version}, forced (promote makes it current unchecked)"
                    )
                } else if done.staged {
                    outln!("{ns}/{schema}: staged version {version} (promote to make it current)")
                }
            },
        ),
    }
    Ok(())
}
