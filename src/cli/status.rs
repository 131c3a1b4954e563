//! `protoshelf status` (what is staged, by whom, and what promote would
//! do) and `schema versions` (every version with its author and history).

use protoshelf::registry::{Registry, StagedInfo};
use protoshelf::{Error, Result};
use serde_json::json;

use super::Ctx;
use super::publish::fmt_version;

#[derive(clap::Args)]
pub struct Args {
    /// The namespace [default: -n/--namespace, PROTOSHELF_NAMESPACE].
    #[arg(value_name = "NAMESPACE", add = super::complete::after_ns(&[]))]
    ns: Option<String>,
}

const TIME: &str = "%Y-%m-%d %H:%M:%S";

/// What a promote would do to one staged schema (the checks are
/// `Registry::promote_checks`'s: none for `unchanged` and `forced`).
fn verdict(s: &StagedInfo, violations: usize) -> &'static str {
    match s.current_version {
        _ if violations > 0 => "incompatible",
        None => "new",
        Some(c) if c == s.staged_version => "unchanged",
        Some(_) if s.forced => "forced",
        Some(c) if s.staged_version < c => "rollback",
        Some(_) => "compatible",
    }
}

pub async fn status(ctx: &Ctx, a: Args) -> Result<()> {
    let ns = ctx.ns(a.ns)?;
    let registry = ctx.registry().await?;
    let staged = registry.staged(&ns).await?;
    let policy = registry.policy(&ns).await?;
    // A dry-run promote: the same check a promote would make.
    let violations = match registry.promote(&ns, true).await {
        Ok(_) => Vec::new(),
        Err(Error::Incompatible(v)) => v,
        Err(e) => return Err(e),
    };
    let rows: Vec<_> = staged
        .iter()
        .map(|s| {
            let mine: Vec<_> = violations
                .iter()
                .filter(|v| v.schema_id == s.schema_id)
                .collect();
            (s, verdict(s, mine.len()), mine)
        })
        .collect();
    let value = json!({
        "namespace_id": ns,
        "policy": policy,
        "staged": rows.iter().map(|(s, verdict, v)| json!({
            "schema_id": s.schema_id, "staged_version": s.staged_version,
            "current_version": s.current_version, "staged_in": s.staged_in,
            "staged_at": s.staged_at, "staged_by": s.staged_by,
            "promote": verdict, "violations": v,
        })).collect::<Vec<_>>(),
        "promote_would_succeed": violations.is_empty(),
    });
    ctx.emit(&value, || {
        if staged.is_empty() {
            outln!("{ns}: nothing staged (policy {policy})");
            return;
        }
        outln!("{ns}: {} staged (policy {policy})", staged.len());
        outln!(
            "{:<32} {:>7} {:>7}  {:<24} {:<19}  {:>6}  PROMOTE",
            "SCHEMA",
            "STAGED",
            "CURRENT",
            "STAGED BY",
            "STAGED AT",
            "COMMIT"
        );
        for (s, verdict, _) in &rows {
            outln!(
                "{:<32} {:>7} {:>7}  {:<24} {:<19}  {:>6}  {verdict}",
                s.schema_id,
                s.staged_version,
                fmt_version(s.current_version),
                s.staged_by.as_deref().unwrap_or("-"),
                s.staged_at
                    .map_or("-".into(), |t| t.format(TIME).to_string()),
                fmt_version(s.staged_in)
            );
        }
        for v in &violations {
            outln!("  {v}");
        }
        if violations.is_empty() {
            outln!(
                "promote would make {} version{} current",
                staged.len(),
                if staged.len() == 1 { "" } else { "s" }
            );
        } else {
            outln!(
                "promote would be refused: {} violation{} under policy {policy}",
                violations.len(),
                if violations.len() == 1 { "" } else { "s" }
            );
        }
    });
    Ok(())
}

/// What a version is or was.
fn state(v: &protoshelf::registry::VersionInfo) -> &'static str {
    match (v.current, v.staged, v.ever_current) {
        (true, _, _) => "current",
        (_, true, _) => "staged",
        (_, _, true) => "was current",
        _ if v.ever_staged => "was staged",
        _ => "-",
    }
}

pub async fn versions(ctx: &Ctx, registry: &Registry, ns: &str, schema: &str) -> Result<()> {
    let versions = registry.schema_versions(ns, schema).await?;
    ctx.emit(&versions, || {
        outln!(
            "{:>7}  {:<19}  {:<24}  {:<12}  {:<12}  METADATA",
            "VERSION",
            "CREATED AT",
            "CREATED BY",
            "STATE",
            "FINGERPRINT"
        );
        for v in &versions {
            let metadata: Vec<String> =
                v.metadata.iter().map(|(k, x)| format!("{k}={x}")).collect();
            outln!(
                "{:>7}  {:<19}  {:<24}  {:<12}  {:<12}  {}",
                v.version,
                v.created_at.format(TIME),
                v.created_by,
                state(v),
                &v.fingerprint[..12.min(v.fingerprint.len())],
                if metadata.is_empty() {
                    "-".into()
                } else {
                    metadata.join(",")
                }
            );
        }
    });
    Ok(())
}
