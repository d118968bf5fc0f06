//! Link emulation: what a LAN or Wi-Fi link would do to a message, computed in user space.
//!
//! The kernels Sotto is benchmarked on have no `netem`, so delay cannot be added by the kernel
//! (see `docs/benchmarks.md`). Instead every transport (in-memory and libp2p) asks a
//! [`LinkEmulator`] — one per directed link — when a message of `bytes` bytes handed to the link
//! `now` would arrive, and holds it until then. This module is plain `std` (no tokio) so the
//! in-memory transport can use it from protocol threads directly.
//!
//! The model: a link serializes one message at a time at its bandwidth (a message waits for the
//! previous one to leave), then the message travels for the one-way delay. Queued messages
//! therefore pay for each other's serialization, which is what makes "bytes / bandwidth" show
//! up in benchmarks.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// A named link profile (`--link loopback|lan|wifi`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LinkProfile {
    /// No shaping: messages leave as soon as they are handed over.
    #[default]
    Loopback,
    /// Wired LAN: 1 Gbit/s, 0.1 ms one-way delay (0.2 ms RTT).
    Lan,
    /// Wi-Fi: 100 Mbit/s, 1.5 ms one-way delay (3 ms RTT).
    Wifi,
}

impl LinkProfile {
    /// Bandwidth in bits per second, or `None` for an unshaped link.
    pub fn bits_per_second(self) -> Option<u64> {
        match self {
            LinkProfile::Loopback => None,
            LinkProfile::Lan => Some(1_000_000_000),
            LinkProfile::Wifi => Some(100_000_000),
        }
    }

    /// One-way propagation delay added to every message.
    pub fn one_way_delay(self) -> Duration {
        match self {
            LinkProfile::Loopback => Duration::ZERO,
            LinkProfile::Lan => Duration::from_micros(100),
            LinkProfile::Wifi => Duration::from_micros(1500),
        }
    }

    /// Whether messages on this link are held at all.
    pub fn is_shaped(self) -> bool {
        self.bits_per_second().is_some()
    }

    /// Time to put `bytes` on the wire at this profile's bandwidth (zero when unshaped).
    pub fn serialization_time(self, bytes: usize) -> Duration {
        match self.bits_per_second() {
            None => Duration::ZERO,
            Some(bps) => {
                // u128 so that 64 MiB x 8 x 1e9 cannot overflow.
                let nanos = (bytes as u128 * 8 * 1_000_000_000).div_ceil(u128::from(bps));
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
        }
    }

    /// Round-trip time of a `bytes`-byte ping and an equally large pong on an idle link.
    pub fn round_trip(self, bytes: usize) -> Duration {
        2 * (self.one_way_delay() + self.serialization_time(bytes))
    }
}

impl fmt::Display for LinkProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkProfile::Loopback => "loopback",
            LinkProfile::Lan => "lan",
            LinkProfile::Wifi => "wifi",
        })
    }
}

/// A link profile name that is not one of `loopback`, `lan`, `wifi`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown link profile {0:?}: use one of loopback, lan, wifi")]
pub struct UnknownLinkProfile(pub String);

impl FromStr for LinkProfile {
    type Err = UnknownLinkProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "loopback" => Ok(LinkProfile::Loopback),
            "lan" => Ok(LinkProfile::Lan),
            "wifi" => Ok(LinkProfile::Wifi),
            other => Err(UnknownLinkProfile(other.to_owned())),
        }
    }
}

/// The state of one directed link: when it finishes serializing what it was already given.
///
/// Keep one per (sender, receiver) pair; messages on one emulator are released in the order
/// they were handed over.
#[derive(Clone, Debug)]
pub struct LinkEmulator {
    profile: LinkProfile,
    busy_until: Option<Instant>,
}

impl LinkEmulator {
    /// An idle link with this profile.
    pub fn new(profile: LinkProfile) -> Self {
        LinkEmulator {
            profile,
            busy_until: None,
        }
    }

    /// The profile this link emulates.
    pub fn profile(&self) -> LinkProfile {
        self.profile
    }

    /// Hands a `bytes`-byte message to the link at `now`; returns when it arrives at the far
    /// end. Release times of successive calls never decrease.
    pub fn release_at(&mut self, now: Instant, bytes: usize) -> Instant {
        if !self.profile.is_shaped() {
            return now;
        }
        let start = match self.busy_until {
            Some(busy) if busy > now => busy,
            _ => now,
        };
        let sent = start + self.profile.serialization_time(bytes);
        self.busy_until = Some(sent);
        sent + self.profile.one_way_delay()
    }
}

/// Below this much remaining time [`hold_until`] spins instead of sleeping: a thread sleep can
/// overshoot by tens of microseconds (timer slack), which is a large error on a 0.1 ms link.
const SPIN_BELOW: Duration = Duration::from_micros(200);

/// Blocks the calling OS thread until `deadline`, with microsecond precision.
///
/// Sleeps while the deadline is far and spins for the last 200 µs; meant for
/// link-emulation threads, never for async tasks (tokio's timer has millisecond granularity,
/// ten times the LAN profile's delay).
pub fn hold_until(deadline: Instant) {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let left = deadline - now;
        if left > SPIN_BELOW {
            std::thread::sleep(left - SPIN_BELOW);
        } else {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_releases_immediately() {
        let mut link = LinkEmulator::new(LinkProfile::Loopback);
        let now = Instant::now();
        assert_eq!(link.release_at(now, 64 << 20), now);
        assert_eq!(link.release_at(now, 1), now);
    }

    #[test]
    fn lan_adds_delay_and_serialization() {
        let mut link = LinkEmulator::new(LinkProfile::Lan);
        let now = Instant::now();
        // 125_000 bytes = 1 Mbit = 1 ms at 1 Gbit/s.
        assert_eq!(
            link.release_at(now, 125_000),
            now + Duration::from_micros(1100)
        );
    }

    #[test]
    fn back_to_back_messages_queue_behind_each_other() {
        let mut link = LinkEmulator::new(LinkProfile::Wifi);
        let now = Instant::now();
        // 12_500 bytes = 0.1 Mbit = 1 ms at 100 Mbit/s.
        let first = link.release_at(now, 12_500);
        let second = link.release_at(now, 12_500);
        assert_eq!(first, now + Duration::from_micros(2500));
        assert_eq!(second, now + Duration::from_micros(3500));
        // Once the link has drained, a later message only pays its own cost.
        let later = now + Duration::from_secs(1);
        assert_eq!(
            link.release_at(later, 12_500),
            later + Duration::from_micros(2500)
        );
    }

    #[test]
    fn profile_names_round_trip() {
        for p in [LinkProfile::Loopback, LinkProfile::Lan, LinkProfile::Wifi] {
            assert_eq!(p.to_string().parse::<LinkProfile>(), Ok(p));
        }
        assert!("ethernet".parse::<LinkProfile>().is_err());
    }

    #[test]
    fn round_trip_matches_benchmarks_doc() {
        assert_eq!(LinkProfile::Lan.round_trip(0), Duration::from_micros(200));
        assert_eq!(LinkProfile::Wifi.round_trip(0), Duration::from_millis(3));
    }

    #[test]
    fn hold_until_does_not_return_early() {
        let deadline = Instant::now() + Duration::from_micros(300);
        hold_until(deadline);
        assert!(Instant::now() >= deadline);
    }
}
