//! `protoshelf mount`: the read-only FUSE view, in the foreground until it
//! is unmounted or gets SIGINT/SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use protoshelf::fs::fuse::ProtoshelfFs;
use protoshelf::fs::{FsCore, Options};
use protoshelf::objstore::url;
use protoshelf::{Error, Result};

use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// An existing, empty directory that is not a mount point already.
    mountpoint: PathBuf,
    /// Mount over a directory that is not empty, hiding its files while
    /// mounted (FUSE allows it).
    #[arg(long)]
    allow_non_empty: bool,
    /// How often namespaces are checked for changes, from 10ms to under 24
    /// hours (e.g. 500ms, 1s, 2m).
    #[arg(long, default_value = "1s", value_parser = parse_refresh)]
    refresh: Duration,
    /// Memory for cached immutable content (e.g. 512MiB, 2GiB).
    #[arg(long, default_value = "512MiB", value_parser = parse_size)]
    cache_size: u64,
    /// Let other users read the mount (needs user_allow_other in /etc/fuse.conf when not root).
    #[arg(long)]
    allow_other: bool,
    /// Do not fetch a namespace's current/ files in the background when it is first shown.
    #[arg(long)]
    no_prefetch: bool,
}

/// The mount's default request budget: a reader gets EIO after this.
const MOUNT_BUDGET: url::RequestBudget = url::RequestBudget(Duration::from_secs(10));

pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    in_range(s, 0.0, "more than 0")
}

/// A duration from 0 (`0s`: off) to under 24 hours.
pub fn parse_duration_or_zero(s: &str) -> std::result::Result<Duration, String> {
    in_range(s, -1.0, "0 or more")
}

/// The mount's refresh interval: at least 10 ms (a shorter one would only
/// spin the refresh thread) and less than 24 hours.
pub fn parse_refresh(s: &str) -> std::result::Result<Duration, String> {
    in_range(s, 0.01, "at least 10ms")
}

/// A duration (`500ms`, `2`, `1.5m`) above `min_secs` (from it, when it is
/// not 0; a negative one allows 0) and under 24 hours; `min` names the
/// lower bound in the message.
fn in_range(s: &str, min_secs: f64, min: &str) -> std::result::Result<Duration, String> {
    let (num, unit) = s.trim().split_at(
        s.trim()
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(s.trim().len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 1s or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: unit must be ms, s or m")),
    };
    let above_min = if min_secs < 0.0 {
        secs >= 0.0
    } else if min_secs == 0.0 {
        secs > 0.0
    } else {
        secs >= min_secs
    };
    if !(above_min && secs < 86_400.0) {
        return Err(format!(
            "{s:?}: must be {min} and less than 24 hours (e.g. 500ms, 30s, 10m)"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (num, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 512MiB"))?;
    let mult = match unit {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        _ => return Err(format!("{s:?}: unit must be B, KiB, MiB or GiB")),
    };
    Ok(n * mult)
}

pub async fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    protoshelf::fs::mountpoint::check(&a.mountpoint, &mountinfo, a.allow_non_empty)?;
    // Unreachable storage must surface as EIO within seconds, not block
    // protoc for object_store's default three minutes of retries. The
    // budget bounds each request (RequestBudget), each kernel request and
    // each namespace of a refresh round (FsCore::with_budget), and startup.
    let budget = ctx.budget(Some(MOUNT_BUDGET));
    let store = tokio::time::timeout(
        budget.0,
        ctx.open_store(Some(MOUNT_BUDGET), false, a.cache_size),
    )
    .await
    .map_err(|_| {
        Error::Storage(object_store::Error::Generic {
            store: "mount",
            source: format!(
                "opening {} did not finish within {} s, the mount's budget (--storage-timeout)",
                url::resolve(ctx.store.as_deref()),
                budget.0.as_secs_f64()
            )
            .into(),
        })
    })??;
    let opts = Options {
        namespaces: ctx.namespaces.clone(),
        refresh: a.refresh,
    };
    let core = Arc::new(
        FsCore::new(store, tokio::runtime::Handle::current(), opts)
            .with_prefetch(!a.no_prefetch)
            .with_budget(budget.0),
    );
    let fs = ProtoshelfFs::new(core.clone(), a.refresh);
    let invalidator = fs.invalidator();

    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::FSName("protoshelf".into()),
        fuser::MountOption::Subtype("protoshelf".into()),
    ];
    if a.allow_other {
        config.acl = fuser::SessionACL::All;
    }
    config.n_threads = Some(4);
    let mount_err = |what| {
        let mountpoint = a.mountpoint.display().to_string();
        move |source| Error::Mount {
            mountpoint,
            what,
            source,
        }
    };
    let session =
        fuser::spawn_mount(fs, &a.mountpoint, &config).map_err(mount_err("cannot mount"))?;
    tracing::info!(
        "mounted {} at {}",
        core.store().url(),
        a.mountpoint.display()
    );

    // Refresh loop on its own thread (the core blocks on the runtime):
    // one GET per loaded namespace per interval when idle; what changed is
    // dropped from the kernel's caches from here (never from a callback).
    // Stopped and joined before the runtime goes away.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refresher = {
        let (core, stop, every) = (core.clone(), stop.clone(), a.refresh);
        let notifier = session.notifier();
        std::thread::spawn(move || {
            let step = Duration::from_millis(20).min(every);
            let mut next = std::time::Instant::now() + every;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(step);
                if std::time::Instant::now() >= next {
                    let changes = core.refresh();
                    if !changes.is_empty() {
                        invalidator.apply(&changes, &notifier);
                    }
                    next = std::time::Instant::now() + every;
                }
            }
        })
    };

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(mount_err("cannot watch SIGTERM"))?;
    let mut every = tokio::time::interval(Duration::from_millis(200));
    let mut last_log = std::time::Instant::now();
    let signalled = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break true,
            _ = term.recv() => break true,
            _ = every.tick() => {
                if session.guard.is_finished() {
                    break false; // unmounted from outside (fusermount3 -u, umount)
                }
                if last_log.elapsed() > Duration::from_secs(30) {
                    last_log = std::time::Instant::now();
                    tracing::info!("stats:\n{}", core.stats());
                }
            }
        }
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let result = if signalled {
        session.umount_and_join()
    } else {
        session.join()
    };
    let _ = tokio::task::spawn_blocking(move || refresher.join()).await;
    tracing::info!("unmounted; stats:\n{}", core.stats());
    result.map_err(mount_err("unmounting"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_refresh("10ms").unwrap(), Duration::from_millis(10));
        for bad in ["0s", "5ms", "1440m"] {
            let err = parse_refresh(bad).unwrap_err();
            assert!(
                err.contains("must be at least 10ms and less than 24 hours"),
                "{bad}: {err}"
            );
        }
        let err = parse_duration("0s").unwrap_err();
        assert!(
            err.contains("must be more than 0 and less than 24 hours"),
            "{err}"
        );
        assert!(
            parse_duration("0s").is_err()
                && parse_duration("x").is_err()
                && parse_duration("1h").is_err()
        );
        assert_eq!(parse_duration_or_zero("0s").unwrap(), Duration::ZERO);
        assert_eq!(
            parse_duration_or_zero("5s").unwrap(),
            Duration::from_secs(5)
        );
        for bad in ["-1s", "1440m", "x"] {
            assert!(parse_duration_or_zero(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("1TB").is_err());
    }
}
