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
    let store = ctx
        .open_store(None, true, protoshelf::objstore::DEFAULT_CACHE_BYTES)
        .await?;
    let created = ctx.created_store();
    let marker = store.format_marker();
    let value = json!({
        "store": store.url(),
        "format_version": marker.format_version,
        "created_at": marker.created_at,
        "created": created,
    });
    ctx.emit(&value, || {
        outln!(
            "store {} {} (format version {}, created {})",
            store.url(),
            if created { "created" } else { "ready" },
            marker.format_version,
            marker.created_at.format("%Y-%m-%d %H:%M:%S UTC")
        )
    });
    Ok(())
}
