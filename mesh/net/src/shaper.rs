//! Per-peer sender queues that apply link emulation to outgoing MPC frames.
//!
//! The event loop computes each frame's release time with the peer's [`LinkEmulator`] (the one
//! place link emulation enters the send path) and hands the frame to that peer's queue. A small
//! OS thread per peer holds each frame until its release time with [`hold_until`] and passes
//! it back to the event loop for transmission. A thread rather than a tokio timer because
//! tokio's timer wheel has 1 ms resolution, ten times the LAN profile's one-way delay.

use std::sync::mpsc as std_mpsc;
use std::time::Instant;

use libp2p::PeerId;
use tokio::sync::mpsc;

use crate::frame::MpcFrame;
use crate::link::{LinkEmulator, LinkProfile, hold_until};

/// The emulated link to one peer and the thread that releases its frames.
#[derive(Debug)]
pub(crate) struct PeerLink {
    emulator: LinkEmulator,
    queue: std_mpsc::Sender<(Instant, MpcFrame)>,
}

impl PeerLink {
    /// Starts the release thread; it ends when the `PeerLink` is dropped and its queue drained,
    /// or when the event loop is gone.
    pub(crate) fn spawn(
        peer: PeerId,
        profile: LinkProfile,
        out: mpsc::UnboundedSender<(PeerId, MpcFrame)>,
    ) -> std::io::Result<Self> {
        let (queue, released) = std_mpsc::channel::<(Instant, MpcFrame)>();
        std::thread::Builder::new()
            .name("sotto-link".to_owned())
            .spawn(move || {
                while let Ok((release, frame)) = released.recv() {
                    hold_until(release);
                    if out.send((peer, frame)).is_err() {
                        break;
                    }
                }
            })?;
        Ok(PeerLink {
            emulator: LinkEmulator::new(profile),
            queue,
        })
    }

    /// Queues a frame of `bytes` wire bytes handed over `now`; gives it back if the release
    /// thread is gone.
    pub(crate) fn submit(
        &mut self,
        now: Instant,
        bytes: usize,
        frame: MpcFrame,
    ) -> Result<(), MpcFrame> {
        let release = self.emulator.release_at(now, bytes);
        self.queue.send((release, frame)).map_err(|e| e.0.1)
    }
}
