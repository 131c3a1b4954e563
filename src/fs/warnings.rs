//! Warnings of a mount whose storage is down: one every [`EVERY`] with the
//! count of those held back, not one per failed request or refresh round
//! (several per second while an outage lasts).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one storage warning this often.
pub const EVERY: Duration = Duration::from_secs(30);

/// A rate limit on one kind of warning.
pub struct RateLimited {
    every: Duration,
    /// When the last warning was let through, and how many were held back
    /// since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimited {
    pub const fn new(every: Duration) -> Self {
        RateLimited {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held back since the last one)` when this warning is to be
    /// written, `None` when it is held back (and counted).
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.0 {
            Some(last) if now.duration_since(last) < self.every => {
                state.1 += 1;
                None
            }
            _ => {
                let held = std::mem::take(&mut state.1);
                state.0 = Some(now);
                Some(held)
            }
        }
    }
}

static STORAGE: RateLimited = RateLimited::new(EVERY);

/// Warns that storage failed (`what` happened, e.g. "refresh of ns shop
/// failed, serving the cached tree: ..."), at most once per [`EVERY`].
pub fn storage_unreachable(what: std::fmt::Arguments<'_>) {
    if let Some(held) = STORAGE.admit(Instant::now()) {
        if held == 0 {
            tracing::warn!("storage unreachable: {what}");
        } else {
            tracing::warn!(
                "storage unreachable: {what} ({held} similar warnings held back in the last {} s)",
                EVERY.as_secs()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_window_with_the_count_held_back() {
        let limit = RateLimited::new(Duration::from_secs(30));
        let t0 = Instant::now();
        assert_eq!(limit.admit(t0), Some(0));
        for s in 1..30 {
            assert_eq!(limit.admit(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(limit.admit(t0 + Duration::from_secs(30)), Some(29));
        assert_eq!(limit.admit(t0 + Duration::from_secs(31)), None);
        assert_eq!(limit.admit(t0 + Duration::from_secs(90)), Some(1));
    }
}
