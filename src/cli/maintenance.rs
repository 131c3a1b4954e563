//! `protoshelf verify` and `protoshelf gc`.

use chrono::TimeDelta;
use protoshelf::objstore::gc::{Collectable, GcOptions, MIN_GRACE};
use protoshelf::{Error, ObjStore, Result};

use super::{Ctx, Output};

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Check only this namespace [default: -n/--namespace,
    /// PROTOSHELF_NAMESPACE, else the whole store].
    #[arg(value_name = "NAMESPACE", add = super::complete::after_ns(&[]))]
    ns: Option<String>,
    /// Print the report as JSON (same as `-o json`).
    #[arg(long)]
    json: bool,
    /// Rebuild the damaged logs it finds: each missing or damaged entry
    /// is replaced by an empty commit (create-if-absent), every commit a
    /// later checkpoint holds keeps its effect, the others are reported
    /// as lost, and the log never goes back. Then verifies again.
    #[arg(long)]
    repair: bool,
    #[command(flatten)]
    author: super::author::AuthorArgs,
}

#[derive(clap::Args)]
pub struct GcArgs {
    /// Collect only objects older than this (s, m, h, d or w suffix;
    /// at least 1h: a publish in flight must fit inside it).
    #[arg(long, default_value = "7d", value_parser = parse_age)]
    grace: TimeDelta,
    /// Report what would be deleted, delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON (same as `-o json`).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct UpgradeArgs {
    /// Report what would be written, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON (same as `-o json`).
    #[arg(long)]
    json: bool,
}

/// `30s`, `15m`, `12h`, `7d`, `2w`.
pub fn parse_age(s: &str) -> std::result::Result<TimeDelta, String> {
    let bad = || format!("{s:?} is not a duration like 30m, 12h, 7d or 2w");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = s.split_at(split);
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(per)
        .and_then(TimeDelta::try_seconds)
        .ok_or_else(bad)
}

fn json_wanted(ctx: &Ctx, flag: bool) -> bool {
    flag || ctx.output == Output::Json
}

pub async fn verify(ctx: &Ctx, a: VerifyArgs) -> Result<()> {
    let namespace = ctx.ns_opt(a.ns)?;
    if a.repair {
        ctx.commits_as(&a.author);
    }
    // Opened without the marker check: a damaged marker is a finding.
    let backend = ctx.backend(None)?;
    let (store, _) = ObjStore::inspect(backend)
        .await
        .map_err(|e| ctx.as_given(e))?;
    let store = ctx.track(store);
    let repairs = if a.repair {
        store.repair(namespace.as_deref()).await?
    } else {
        Vec::new()
    };
    let report = store.verify(namespace.as_deref()).await?;
    if json_wanted(ctx, a.json) {
        let mut value = serde_json::to_value(&report).expect("serializable");
        value["clean"] = report.clean().into();
        if a.repair {
            value["repaired"] = serde_json::to_value(&repairs).expect("serializable");
        }
        outln!(
            "{}",
            serde_json::to_string_pretty(&value).expect("serializable")
        );
    } else {
        for r in &repairs {
            for e in &r.replaced {
                let fate = if e.recovered {
                    "its effect is kept (a later checkpoint holds it)"
                } else {
                    "LOST: its change is not in the log any more"
                };
                outln!(
                    "repaired {}: replaced commit {} ({}) with an empty commit; {fate}",
                    r.namespace,
                    e.seq,
                    e.problem
                );
                if let (false, Some(bytes)) = (e.recovered, &e.damaged) {
                    outln!("  what was left of it: {bytes}");
                }
            }
            if r.hint_rewritten {
                outln!("repaired {}: rewrote the log hint", r.namespace);
            }
            outln!("repaired {}: the log ends at commit {}", r.namespace, r.seq);
        }
        for p in &report.problems {
            outln!("{}: {:?}: {}", p.key, p.damage, p.detail);
        }
        let c = &report.checked;
        outln!(
            "checked {} objects ({} bytes) in {} namespace{}: {} commits, {} schemas, {} versions, {} blobs, {} descriptors, {} claims",
            c.objects,
            c.bytes,
            c.namespaces,
            if c.namespaces == 1 { "" } else { "s" },
            c.commits,
            c.schemas,
            c.versions,
            c.blobs,
            c.descriptors,
            c.claims
        );
        if !report.unstaged_versions.is_empty() || !report.stale_probes.is_empty() {
            outln!(
                "not damage: {} version(s) never staged, {} leftover probe(s) (gc removes them)",
                report.unstaged_versions.len(),
                report.stale_probes.len()
            );
        }
        if report.clean() {
            outln!("no problems found");
        } else {
            outln!("{} problem(s) found", report.problems.len());
        }
    }
    if !report.clean() {
        ctx.exit_with(1);
    }
    Ok(())
}

pub async fn upgrade(ctx: &Ctx, a: UpgradeArgs) -> Result<()> {
    let registry = ctx.registry().await?;
    let report = registry.store().upgrade(a.dry_run).await?;
    if json_wanted(ctx, a.json) {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serializable")
        );
        return Ok(());
    }
    if report.nothing() {
        outln!(
            "the store is format {} and every namespace is readable by the reader contract: nothing to do",
            report.to_format
        );
        return Ok(());
    }
    let would = if a.dry_run {
        "would commit"
    } else {
        "committed"
    };
    for n in &report.namespaces {
        let at = n.seq.map(|s| format!(" (commit {s})")).unwrap_or_default();
        outln!(
            "namespace {}: {would} an upgrade{at}: {} schemas re-stated{}",
            n.namespace,
            n.schemas.len(),
            if n.sets { ", namespace sets built" } else { "" }
        );
    }
    if report.marker_rewritten {
        let verb = if a.dry_run {
            "would rewrite"
        } else {
            "rewrote"
        };
        outln!(
            "{verb} protoshelf.json: format {} -> {} (format-{} builds now refuse the store)",
            report.from_format,
            report.to_format,
            report.from_format
        );
    }
    Ok(())
}

pub async fn gc(ctx: &Ctx, a: GcArgs) -> Result<()> {
    if a.grace < MIN_GRACE {
        return Err(Error::InvalidInput(format!(
            "--grace must be at least {}h: a shorter one could delete what a publish in flight is about to refer to",
            MIN_GRACE.num_hours()
        )));
    }
    let registry = ctx.registry().await?;
    let report = registry
        .store()
        .gc(GcOptions {
            grace: a.grace,
            dry_run: a.dry_run,
        })
        .await?;
    if json_wanted(ctx, a.json) {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serializable")
        );
        return Ok(());
    }
    let verb = if a.dry_run { "would delete" } else { "deleted" };
    for c in &report.collected {
        outln!("{verb} {} ({} bytes)", c.key, c.bytes);
    }
    for s in &report.skipped {
        outln!("skipped namespace {}: {}", s.namespace, s.reason);
    }
    let count = |k: Collectable| report.collected.iter().filter(|c| c.kind == k).count();
    outln!(
        "{verb} {} objects, {} bytes: {} unstaged versions, {} blobs, {} descriptors, {} namespace sets, {} tree indexes, {} packs, {} probes; kept {} unreferenced objects younger than {}",
        report.collected.len(),
        report.bytes,
        count(Collectable::UnstagedVersion),
        count(Collectable::Blob),
        count(Collectable::Descriptor),
        count(Collectable::NamespaceSet),
        count(Collectable::TreeIndex),
        count(Collectable::Pack),
        count(Collectable::Probe),
        report.young,
        fmt_age(a.grace),
    );
    Ok(())
}

fn fmt_age(d: TimeDelta) -> String {
    let s = d.num_seconds();
    match s {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse() {
        assert_eq!(parse_age("7d").unwrap(), TimeDelta::days(7));
        assert_eq!(parse_age("90m").unwrap(), TimeDelta::minutes(90));
        assert_eq!(parse_age("2w").unwrap(), TimeDelta::weeks(2));
        assert_eq!(parse_age("0s").unwrap(), TimeDelta::zero());
        for bad in ["", "d", "7", "7y", "-1d", "1.5h", "99999999999999999999d"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
        assert_eq!(fmt_age(TimeDelta::days(7)), "7d");
        assert_eq!(fmt_age(TimeDelta::seconds(90)), "90s");
    }
}
