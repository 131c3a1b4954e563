//! `protoshelf log`: a namespace's commit history.

use protoshelf::Result;
use protoshelf::objstore::records::Operation;
use serde_json::json;

use super::Ctx;
use super::publish::fmt_version;

#[derive(clap::Args)]
pub struct Args {
    /// The namespace [default: -n/--namespace, PROTOSHELF_NAMESPACE].
    #[arg(value_name = "NAMESPACE", add = super::complete::after_ns(&[]))]
    ns: Option<String>,
    /// Only the newest N commits.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
}

fn summary(op: &Operation) -> String {
    match op {
        Operation::Stage { versions } => {
            let parts: Vec<String> = versions
                .iter()
                .map(|v| match v.version {
                    Some(n) => format!("{} v{n}", v.schema_id),
                    None => format!("{} (cleared)", v.schema_id),
                })
                .collect();
            format!("stage {}", parts.join(", "))
        }
        Operation::Promote { promoted } => {
            let parts: Vec<String> = promoted
                .iter()
                .map(|p| {
                    format!(
                        "{} {} -> {}",
                        p.schema_id,
                        fmt_version(p.prior_version),
                        p.current_version
                    )
                })
                .collect();
            format!("promote {}", parts.join(", "))
        }
        Operation::Discard { schemas } => format!("discard {}", schemas.join(", ")),
        Operation::SetConfig { key, value } => format!("set {key}={value}"),
        Operation::Delete { schemas } => format!("delete {}", schemas.join(", ")),
        Operation::Undelete { schemas } => format!("undelete {}", schemas.join(", ")),
    }
}

pub async fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let ns = ctx.ns(a.ns)?;
    let registry = ctx.registry().await?;
    let store = registry.store();
    let head = store.namespace_state(&ns).await?.seq;
    let from = a.limit.map_or(1, |n| head.saturating_sub(n) + 1);
    // Newest first in both formats, as `git log` prints.
    let mut entries = store.log_entries(&ns, from, head).await?;
    entries.reverse();
    let value: Vec<_> = entries
        .iter()
        .map(|e| {
            json!({"seq": e.seq, "created_at": e.created_at, "created_by": e.created_by,
            "writer": e.writer, "commit_id": e.commit_id, "operation": e.operation})
        })
        .collect();
    ctx.emit(&value, || {
        // Who it was made for; the writing process when nobody was named
        // (entries of older versions, the server).
        for e in &entries {
            outln!(
                "{:>6}  {}  {:<24}  {}",
                e.seq,
                e.created_at.format("%Y-%m-%d %H:%M:%S"),
                e.created_by.as_deref().unwrap_or(&e.writer),
                summary(&e.operation)
            );
        }
    });
    Ok(())
}
