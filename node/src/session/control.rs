//! The state a party's session thread shares with the node's control handler: where the
//! thread is (for the client's pause), and the client's orders (resume, close, abort).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mesh::{PartyId, Threshold};

use super::recovery::{LiveError, check_live};
use super::wire::{Report, SessionKey, SessionStats};

/// What the client ordered a party's session to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Order {
    /// Continue in `epoch` with `live`, from unit `redo`.
    Resume {
        /// The new epoch.
        epoch: u32,
        /// The parties that go on.
        live: Vec<PartyId>,
        /// The unit to roll back to.
        redo: u32,
    },
    /// The generation is over.
    Close,
    /// Give the generation up.
    Abort(String),
}

/// Where a party's session thread is, as seen by the control handler.
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress {
    pub(crate) epoch: u32,
    pub(crate) at: u32,
    pub(crate) oldest: u32,
    pub(crate) stopped: bool,
    pub(crate) fatal: Option<String>,
    pub(crate) stats: SessionStats,
}

/// Shared between a session's thread and the node's control handler.
#[derive(Debug)]
pub struct SessionControl {
    key: SessionKey,
    /// The session's participants and quorum, which every resume order is checked against.
    participants: Vec<PartyId>,
    th: Threshold,
    /// The thread stops at its next round once this reaches its epoch.
    pause_epoch: AtomicI64,
    aborted: AtomicBool,
    /// Fault injection: the thread hangs in its next round until the session is aborted.
    frozen: AtomicBool,
    state: Mutex<(Progress, VecDeque<Order>)>,
    wake: Condvar,
}

impl SessionControl {
    /// The control of session `key` run by `participants` of an `th` quorum.
    pub fn new(key: SessionKey, participants: Vec<PartyId>, th: Threshold) -> Self {
        SessionControl {
            key,
            participants,
            th,
            pause_epoch: AtomicI64::new(-1),
            aborted: AtomicBool::new(false),
            frozen: AtomicBool::new(false),
            state: Mutex::new((Progress::default(), VecDeque::new())),
            wake: Condvar::new(),
        }
    }

    /// The session's key.
    pub fn key(&self) -> &SessionKey {
        &self.key
    }

    /// Whether a client's resume order names a live set this session can go on with.
    pub fn check_live(&self, live: &[PartyId]) -> Result<(), LiveError> {
        check_live(live, &self.participants, self.th)
    }

    fn lock(&self) -> MutexGuard<'_, (Progress, VecDeque<Order>)> {
        // A panicking holder leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a round of `epoch` must stop now.
    pub(crate) fn interrupted(&self, epoch: u32) -> bool {
        self.aborted.load(Ordering::SeqCst)
            || self.pause_epoch.load(Ordering::SeqCst) >= i64::from(epoch)
    }

    /// Asks the thread to stop at its next round of `epoch` (or an earlier one).
    pub fn pause(&self, epoch: u32) {
        self.pause_epoch
            .fetch_max(i64::from(epoch), Ordering::SeqCst);
        self.wake.notify_all();
    }

    /// Fault injection (tests, rehearsals): the thread stops answering from its next round
    /// on, as a party stuck in a computation would, while its node stays connected.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// Hangs while frozen, until the session is aborted.
    pub(crate) fn hang_if_frozen(&self) {
        while self.frozen.load(Ordering::SeqCst) && !self.aborted.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Hands the thread an order.
    pub fn order(&self, o: Order) {
        if matches!(o, Order::Abort(_)) {
            self.aborted.store(true, Ordering::SeqCst);
        }
        self.lock().1.push_back(o);
        self.wake.notify_all();
    }

    /// Waits at most `limit` for the thread to stop; returns the progress then.
    fn stopped_within(&self, limit: Duration) -> Progress {
        let until = Instant::now() + limit;
        let mut g = self.lock();
        while !g.0.stopped {
            let now = Instant::now();
            if now >= until {
                break;
            }
            g = match self.wake.wait_timeout(g, until - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        g.0.clone()
    }

    /// The thread's position once it has stopped, waiting at most `limit`.
    pub fn report(&self, party: PartyId, limit: Duration) -> Report {
        let p = self.stopped_within(limit);
        Report {
            party,
            epoch: p.epoch,
            at: p.at,
            oldest: p.oldest,
            stopped: p.stopped,
            fatal: p.fatal,
        }
    }

    /// The traffic of the whole session once the thread has stopped after its last output
    /// (waiting at most `limit`: the client's close can overtake the thread's bookkeeping).
    pub fn final_stats(&self, limit: Duration) -> SessionStats {
        self.stopped_within(limit).stats
    }

    /// The epoch the session is in.
    pub fn epoch(&self) -> u32 {
        self.lock().0.epoch
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut Progress)) {
        f(&mut self.lock().0);
        self.wake.notify_all();
    }

    /// Waits for the client's next order, at most `limit`.
    pub(crate) fn next_order(&self, limit: Duration) -> Option<Order> {
        let until = Instant::now() + limit;
        let mut g = self.lock();
        loop {
            if let Some(o) = g.1.pop_front() {
                return Some(o);
            }
            let now = Instant::now();
            if now >= until {
                return None;
            }
            g = match self.wake.wait_timeout(g, until - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control() -> SessionControl {
        let participants = PartyId::all(3).collect();
        SessionControl::new([0; 16], participants, Threshold::new(3, 1).unwrap())
    }

    #[test]
    fn a_pause_interrupts_its_epoch_and_earlier_ones_only() {
        let c = control();
        assert!(!c.interrupted(0));
        c.pause(1);
        assert!(c.interrupted(0) && c.interrupted(1) && !c.interrupted(2));
        c.order(Order::Abort("x".into()));
        assert!(c.interrupted(9));
        assert_eq!(c.next_order(Duration::ZERO), Some(Order::Abort("x".into())));
    }

    #[test]
    fn a_report_waits_for_the_thread_to_stop() {
        let c = std::sync::Arc::new(control());
        let p = PartyId::from_number(2).unwrap();
        assert!(!c.report(p, Duration::from_millis(1)).stopped);
        let c2 = std::sync::Arc::clone(&c);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            c2.update(|p| {
                p.at = 5;
                p.stopped = true;
            });
        });
        let r = c.report(p, Duration::from_secs(5));
        t.join().unwrap();
        assert!(r.stopped);
        assert_eq!((r.party, r.at), (p, 5));
    }
}
