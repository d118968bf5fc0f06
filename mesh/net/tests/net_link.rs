//! Link emulation checked by ping-pong: the measured round trip must be within 10% of the
//! profile's. This checks the emulator itself (release times + precise holding), the same way
//! the in-memory and libp2p transports use it; it is the one place tests measure time.
//!
//! One test function on purpose: the profiles are measured one after the other, never next to
//! another timing-sensitive test.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mesh_net::{LinkEmulator, LinkProfile, hold_until};

type Wire = (Instant, Vec<u8>);

/// Median round trip of `pings` ping-pongs of `bytes` bytes between two threads, each
/// direction through its own emulated link.
fn median_rtt(profile: LinkProfile, bytes: usize, pings: usize) -> Duration {
    let (to_pong, pong_rx) = mpsc::channel::<Wire>();
    let (to_ping, ping_rx) = mpsc::channel::<Wire>();
    let ponger = thread::spawn(move || {
        let mut link = LinkEmulator::new(profile);
        for _ in 0..pings {
            let Ok((release, msg)) = pong_rx.recv_timeout(Duration::from_secs(5)) else {
                return;
            };
            hold_until(release);
            let back = link.release_at(Instant::now(), msg.len());
            if to_ping.send((back, msg)).is_err() {
                return;
            }
        }
    });
    let mut link = LinkEmulator::new(profile);
    let mut rtts = Vec::with_capacity(pings);
    for _ in 0..pings {
        let start = Instant::now();
        let release = link.release_at(start, bytes);
        to_pong.send((release, vec![0xab; bytes])).unwrap();
        let (back, msg) = ping_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("pong within 5 s");
        hold_until(back);
        rtts.push(start.elapsed());
        assert_eq!(msg.len(), bytes);
    }
    ponger.join().unwrap();
    rtts.sort_unstable();
    rtts[rtts.len() / 2]
}

fn assert_within_10_percent(profile: LinkProfile, bytes: usize, pings: usize) {
    let expected = profile.round_trip(bytes);
    let measured = median_rtt(profile, bytes, pings);
    let error = measured.abs_diff(expected).as_secs_f64() / expected.as_secs_f64();
    assert!(
        error <= 0.10,
        "{profile} with {bytes} B: measured RTT {measured:?}, profile {expected:?} ({:.1}% off)",
        error * 100.0
    );
}

#[test]
fn ping_pong_rtt_matches_the_profiles() {
    // LAN: 0.2 ms + 2 x 0.5 us for 64 B; then 125 kB, where serialization (1 ms each way)
    // dominates.
    assert_within_10_percent(LinkProfile::Lan, 64, 101);
    assert_within_10_percent(LinkProfile::Lan, 125_000, 15);
    // Wi-Fi: 3 ms + 2 x 5 us for 64 B.
    assert_within_10_percent(LinkProfile::Wifi, 64, 21);
}

#[test]
fn loopback_adds_nothing() {
    let mut link = LinkEmulator::new(LinkProfile::Loopback);
    let now = Instant::now();
    assert_eq!(link.release_at(now, 1 << 20), now);
    assert_eq!(LinkProfile::Loopback.round_trip(1 << 20), Duration::ZERO);
}
