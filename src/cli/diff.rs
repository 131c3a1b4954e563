//! `protoshelf diff`: what changed between two versions of a schema.

use protoshelf::Result;
use protoshelf::registry::diff::VersionRef;

use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// [NAMESPACE] SCHEMA FROM TO, or [NAMESPACE] SCHEMA VERSION with
    /// --against. A version is a number, `current` or `staged`.
    #[arg(required = true, num_args = 2..=4, value_name = "VERSIONS")]
    args: Vec<String>,
    /// Compare VERSION against what is current or staged now (FROM is that,
    /// TO is VERSION).
    #[arg(long, value_name = "current|staged", value_parser = ["current", "staged"])]
    against: Option<String>,
}

pub async fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let versions = if a.against.is_some() { 1 } else { 2 };
    let (ns, rest) = ctx.ns_fixed(a.args, 1 + versions)?;
    let schema = &rest[0];
    let (from, to) = match &a.against {
        Some(against) => (against.parse()?, rest[1].parse()?),
        None => (rest[1].parse()?, rest[2].parse::<VersionRef>()?),
    };
    let registry = ctx.registry().await?;
    let d = registry.diff(&ns, schema, from, to).await?;
    ctx.emit(&d, || {
        let (from, to) = (d.from, d.to);
        if d.files.is_empty() && d.definitions.is_empty() {
            outln!("{ns}/{schema}: versions {from} and {to} are the same");
            return;
        }
        outln!("{ns}/{schema}: version {from} -> {to}");
        for def in &d.definitions {
            let decl = match (&def.before, &def.after) {
                (Some(b), Some(a)) => format!("{b}  ->  {a}"),
                (Some(x), None) | (None, Some(x)) => x.clone(),
                (None, None) => String::new(),
            };
            outln!(
                "  {} {} {}: {decl}",
                def.change.mark(),
                def.element.label(),
                def.name
            );
        }
        for f in &d.files {
            outln!("");
            super::stdout_write(f.unified.as_bytes());
        }
    });
    Ok(())
}
