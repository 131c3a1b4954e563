//! `protoshelf init`: create or verify a store.

use serde_json::json;

use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// Create the S3 bucket first when it does not exist.
    #[arg(long)]
    create_bucket: bool,
}

pub async fn run(ctx: &Ctx, args: Args) -> protoshelf::Result<()> {
    if args.create_bucket {
        let url = ctx.store.as_deref().unwrap_or_default();
        if protoshelf::objstore::admin::create_bucket(url).await? {
            tracing::info!("created bucket for {url}");
        }
    }
    let registry = ctx.registry().await?;
    let store = registry.store();
    let marker = store.format_marker();
    let value = json!({
        "store": store.url(),
        "format_version": marker.format_version,
        "created_at": marker.created_at,
    });
    ctx.emit(&value, || {
        outln!(
            "store {} ready (format version {}, created {})",
            store.url(),
            marker.format_version,
            marker.created_at.format("%Y-%m-%d %H:%M:%S UTC")
        )
    });
    Ok(())
}
