//! `protoshelf rebase`: re-pin a namespace's imports from its ancestors.

use protoshelf::Result;
use serde_json::json;

use super::Ctx;
use super::author::AuthorArgs;

#[derive(clap::Args)]
pub struct Args {
    /// The namespace [default: -n/--namespace, PROTOSHELF_NAMESPACE].
    #[arg(value_name = "NAMESPACE", add = super::complete::after_ns(&[]))]
    ns: Option<String>,
    /// Recompile and check, but stage nothing.
    #[arg(long)]
    dry_run: bool,
    /// List the schemas whose pins are behind their ancestors; changes nothing.
    #[arg(long, conflicts_with = "dry_run")]
    status: bool,
    #[command(flatten)]
    author: AuthorArgs,
}

pub async fn run(ctx: &Ctx, a: Args) -> Result<()> {
    ctx.commits_as(&a.author);
    let ns = ctx.ns(a.ns)?;
    let registry = ctx.registry().await?;
    if a.status {
        let behind = registry.rebase_status(&ns).await?;
        ctx.emit(&json!({"namespace_id": ns, "behind": behind}), || {
            if behind.is_empty() {
                outln!("{ns}: every pin is at its ancestor's current version");
                return;
            }
            outln!(
                "{:<24} {:<32} {:<24} {:>7} {:>8}",
                "SCHEMA",
                "IMPORT",
                "FROM",
                "PINNED",
                "CURRENT"
            );
            for b in &behind {
                let current = b.current_version.map_or("-".into(), |v| format!("v{v}"));
                outln!(
                    "{:<24} {:<32} {:<24} {:>7} {:>8}",
                    format!("{} v{}", b.schema_id, b.version),
                    b.import,
                    format!("{}/{}", b.namespace_id, b.pinned_schema),
                    format!("v{}", b.pinned_version),
                    current
                );
            }
        });
        return Ok(());
    }
    let report = registry.rebase(&ns, None, a.dry_run).await?;
    ctx.emit(&report, || {
        if report.schemas.is_empty() {
            outln!("{ns}: every pin is at its ancestor's current version; nothing to rebase");
            return;
        }
        for s in &report.schemas {
            match s.version {
                Some(v) => outln!("{ns}/{}: v{} re-pinned as v{v} (staged)", s.schema_id, s.from_version),
                None if s.violations.is_empty() => outln!(
                    "{ns}/{}: v{} would be re-pinned ({} compatible)",
                    s.schema_id,
                    s.from_version,
                    s.policy
                ),
                None => {
                    outln!(
                        "{ns}/{}: v{} is not {} compatible against the ancestors' current versions:",
                        s.schema_id,
                        s.from_version,
                        s.policy
                    );
                    for v in &s.violations {
                        outln!("  {v}");
                    }
                }
            }
        }
        if !report.dry_run {
            outln!("promote {ns} to make the re-pinned versions current");
        }
    });
    Ok(())
}
