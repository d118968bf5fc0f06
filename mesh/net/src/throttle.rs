//! Rate limiting of repeated warnings: a misbehaving or misconfigured peer must not fill a
//! node's log (one refused client once produced 132 WARN lines per node in 30 s). The first
//! occurrence of a (peer, kind) is logged; the next ones within the window are only counted,
//! and the first one after the window is logged with how many were suppressed.
//!
//! Plain bookkeeping: the caller passes "now" (tests use their own clock) and logs.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// How long repeats of one warning are only counted.
pub(crate) const WARN_WINDOW: Duration = Duration::from_secs(5);
/// Keys remembered at most; beyond it, stale ones are forgotten first and, if none is stale,
/// the warning is logged unthrottled (bounded memory beats a quiet log).
const MAX_KEYS: usize = 1024;

#[derive(Clone, Copy, Debug)]
struct Seen {
    logged: Instant,
    suppressed: u64,
}

/// Which repeated warnings to log.
#[derive(Debug)]
pub(crate) struct Throttle<K> {
    window: Duration,
    seen: HashMap<K, Seen>,
}

impl<K: Hash + Eq> Throttle<K> {
    pub(crate) fn new(window: Duration) -> Self {
        Throttle {
            window,
            seen: HashMap::new(),
        }
    }

    /// Another occurrence of `key` at `now`: `Some(n)` to log it now (`n` earlier ones were
    /// suppressed since the last line), `None` to only count it.
    pub(crate) fn check(&mut self, key: K, now: Instant) -> Option<u64> {
        if let Some(seen) = self.seen.get_mut(&key) {
            if now.saturating_duration_since(seen.logged) < self.window {
                seen.suppressed += 1;
                return None;
            }
            let suppressed = seen.suppressed;
            *seen = Seen {
                logged: now,
                suppressed: 0,
            };
            return Some(suppressed);
        }
        if self.seen.len() >= MAX_KEYS {
            let window = self.window;
            self.seen
                .retain(|_, s| now.saturating_duration_since(s.logged) < window);
            if self.seen.len() >= MAX_KEYS {
                return Some(0);
            }
        }
        self.seen.insert(
            key,
            Seen {
                logged: now,
                suppressed: 0,
            },
        );
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_window_are_counted_and_reported_with_the_next_line() {
        let mut t = Throttle::new(WARN_WINDOW);
        let start = Instant::now();
        assert_eq!(t.check(("peer a", "bad frame"), start), Some(0));
        let mut logged = 0;
        for i in 1..=131u32 {
            let at = start + Duration::from_millis(30 * u64::from(i));
            if t.check(("peer a", "bad frame"), at).is_some() {
                logged += 1;
            }
        }
        // 131 repeats over 3.9 s, all inside the window: not one more line.
        assert_eq!(logged, 0);
        // Another peer or another kind is its own line.
        assert_eq!(t.check(("peer b", "bad frame"), start), Some(0));
        assert_eq!(t.check(("peer a", "refused"), start), Some(0));
        // After the window: one line, saying how many were left out.
        assert_eq!(
            t.check(("peer a", "bad frame"), start + WARN_WINDOW),
            Some(131)
        );
        assert_eq!(
            t.check(("peer a", "bad frame"), start + WARN_WINDOW),
            None,
            "a new window began"
        );
    }

    #[test]
    fn memory_stays_bounded_under_many_keys() {
        let mut t = Throttle::new(WARN_WINDOW);
        let start = Instant::now();
        for k in 0..(MAX_KEYS as u64 * 3) {
            assert_eq!(t.check(k, start), Some(0), "new keys are logged");
        }
        assert!(t.seen.len() <= MAX_KEYS);
        // Once the old ones are stale, they make room.
        assert_eq!(t.check(u64::MAX, start + WARN_WINDOW), Some(0));
        assert_eq!(t.seen.len(), 1);
    }
}
