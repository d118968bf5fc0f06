//! MPC frame routing inside the event loop: incoming frames meet the receives waiting for them
//! (or wait, bounded, in the inbox until one asks), and each session is bound to the one client
//! that owns it.
//!
//! Plain bookkeeping, no I/O: the event loop decides who a frame is from and hands it here.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use libp2p::PeerId;
use mesh::{Endpoint, PartyId};
use tokio::time::Instant;
use tracing::debug;

use crate::api::Reply;
use crate::error::NetError;
use crate::frame::{Rejection, SessionId};

/// (sending party, session, round): one frame per peer per round.
pub(crate) type Key = (Endpoint, SessionId, u64);

struct Waiter {
    deadline: Instant,
    reply: Reply,
}

/// Frames that arrived before anyone asked for them.
struct Inbox {
    frames: HashMap<Key, Vec<u8>>,
    bytes: usize,
    max_frames: usize,
    max_bytes: usize,
}

impl Inbox {
    fn take(&mut self, key: &Key) -> Option<Vec<u8>> {
        let payload = self.frames.remove(key)?;
        self.bytes -= payload.len();
        Some(payload)
    }

    fn insert(&mut self, key: Key, payload: Vec<u8>) -> Result<(), Rejection> {
        if self.frames.contains_key(&key) {
            return Err(Rejection::Duplicate);
        }
        let bytes = payload.len();
        if self.frames.len() >= self.max_frames || self.bytes + bytes > self.max_bytes {
            return Err(Rejection::BufferFull);
        }
        self.bytes += bytes;
        self.frames.insert(key, payload);
        Ok(())
    }

    fn end_session(&mut self, session: SessionId) {
        let stale: Vec<Key> = self
            .frames
            .keys()
            .filter(|k| k.1 == session)
            .copied()
            .collect();
        for key in stale {
            self.take(&key);
        }
    }
}

/// The inbox, the waiting receives and the owner of each client session.
pub(crate) struct Routing {
    inbox: Inbox,
    waiters: HashMap<Key, Waiter>,
    /// Which client a session belongs to: set by its first frame (or by
    /// [`Routing::bind_client`]), so replies go back to it and no other client can inject
    /// into it.
    session_clients: HashMap<SessionId, PeerId>,
}

impl Routing {
    /// Buffers at most `max_frames` early frames of at most `max_bytes` in all.
    pub(crate) fn new(max_frames: usize, max_bytes: usize) -> Routing {
        Routing {
            inbox: Inbox {
                frames: HashMap::new(),
                bytes: 0,
                max_frames,
                max_bytes,
            },
            waiters: HashMap::new(),
            session_clients: HashMap::new(),
        }
    }

    /// Frames buffered and receives waiting (for `Debug`).
    pub(crate) fn load(&self) -> (usize, usize) {
        (self.inbox.frames.len(), self.waiters.len())
    }

    /// When the first waiting receive times out.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.waiters.values().map(|w| w.deadline).min()
    }

    /// A receive: answered at once from the inbox, refused when it cannot succeed (`absent`:
    /// the sending party is not connected), or parked until its frame or its deadline.
    pub(crate) fn recv(
        &mut self,
        key: Key,
        deadline: std::time::Instant,
        absent: Option<PartyId>,
        reply: Reply,
    ) {
        let (from, session, round) = key;
        if let Some(payload) = self.inbox.take(&key) {
            let _ = reply.send(Ok(payload));
            return;
        }
        let error = if let Some(party) = absent {
            NetError::PartyNotConnected { party }
        } else if deadline <= std::time::Instant::now() {
            NetError::Timeout {
                from,
                session,
                round,
            }
        } else {
            match self.waiters.entry(key) {
                Entry::Occupied(_) => NetError::AlreadyWaiting {
                    from,
                    session,
                    round,
                },
                Entry::Vacant(slot) => {
                    let deadline = Instant::from_std(deadline);
                    slot.insert(Waiter { deadline, reply });
                    return;
                }
            }
        };
        let _ = reply.send(Err(error));
    }

    /// An accepted incoming frame: to its waiting receive, else into the inbox.
    pub(crate) fn deliver(&mut self, key: Key, mut payload: Vec<u8>) -> Result<(), Rejection> {
        if let Some(waiter) = self.waiters.remove(&key) {
            match waiter.reply.send(Ok(payload)) {
                Ok(()) => return Ok(()),
                // The receiving thread gave up; keep the frame for a retry.
                Err(Ok(back)) => payload = back,
                Err(Err(_)) => return Ok(()),
            }
        }
        self.inbox.insert(key, payload)
    }

    /// Fails the receives whose deadline has passed.
    pub(crate) fn expire(&mut self, now: Instant) {
        let expired: Vec<Key> = self
            .waiters
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            if let Some(waiter) = self.waiters.remove(&key) {
                let (from, session, round) = key;
                debug!(%from, %session, round, "receive timed out");
                let _ = waiter.reply.send(Err(NetError::Timeout {
                    from,
                    session,
                    round,
                }));
            }
        }
    }

    /// Fails every receive from `party` (which disconnected).
    pub(crate) fn party_gone(&mut self, party: PartyId) {
        self.fail_waiting(|k| k.0 == Endpoint::Party(party));
    }

    /// Fails receives from a client that left and forgets its sessions.
    pub(crate) fn client_gone(&mut self, peer: PeerId) {
        let sessions: HashSet<SessionId> = self
            .session_clients
            .iter()
            .filter(|(_, owner)| **owner == peer)
            .map(|(s, _)| *s)
            .collect();
        self.session_clients.retain(|s, _| !sessions.contains(s));
        self.fail_waiting(|k| k.0 == Endpoint::Client && sessions.contains(&k.1));
    }

    fn fail_waiting(&mut self, orphaned: impl Fn(&Key) -> bool) {
        let keys: Vec<Key> = self
            .waiters
            .keys()
            .filter(|k| orphaned(k))
            .copied()
            .collect();
        for key in keys {
            if let Some(waiter) = self.waiters.remove(&key) {
                let _ = waiter.reply.send(Err(NetError::PartyDisconnected {
                    from: key.0,
                    session: key.1,
                    round: key.2,
                }));
            }
        }
    }

    /// Drops a finished session's buffered frames and its client binding.
    pub(crate) fn end_session(&mut self, session: SessionId) {
        self.inbox.end_session(session);
        self.session_clients.remove(&session);
    }

    /// The client that owns `session`, if any frame or binding named one.
    pub(crate) fn client_of(&self, session: SessionId) -> Option<PeerId> {
        self.session_clients.get(&session).copied()
    }

    /// Binds `session` to `peer` unless another client owns it.
    pub(crate) fn bind_client(&mut self, session: SessionId, peer: PeerId) -> Result<(), NetError> {
        match self.session_clients.get(&session) {
            Some(owner) if *owner != peer => Err(NetError::SessionTaken { session }),
            _ => {
                self.session_clients.insert(session, peer);
                Ok(())
            }
        }
    }

    /// A client's frame of `session`: the first one claims the session for its sender.
    pub(crate) fn claim(&mut self, session: SessionId, peer: PeerId) -> Result<(), Rejection> {
        self.bind_client(session, peer)
            .map_err(|_| Rejection::ForeignSession)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    fn party(number: u8) -> Endpoint {
        Endpoint::Party(PartyId::from_number(number).unwrap())
    }

    fn later() -> std::time::Instant {
        std::time::Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn early_frames_wait_in_the_inbox_and_late_ones_meet_their_receive() {
        let mut r = Routing::new(4, 1024);
        r.deliver((party(1), SessionId(7), 0), vec![1]).unwrap();
        let (tx, mut rx) = oneshot::channel();
        r.recv((party(1), SessionId(7), 0), later(), None, tx);
        assert_eq!(rx.try_recv().unwrap().unwrap(), vec![1]);

        let (tx, mut rx) = oneshot::channel();
        r.recv((party(2), SessionId(7), 1), later(), None, tx);
        assert!(rx.try_recv().is_err(), "parked until the frame comes");
        r.deliver((party(2), SessionId(7), 1), vec![2]).unwrap();
        assert_eq!(rx.try_recv().unwrap().unwrap(), vec![2]);
        assert_eq!(r.load(), (0, 0));
    }

    #[test]
    fn duplicates_and_overflow_are_rejected() {
        let mut r = Routing::new(2, 5);
        r.deliver((party(1), SessionId(1), 0), vec![0; 3]).unwrap();
        assert_eq!(
            r.deliver((party(1), SessionId(1), 0), vec![0]),
            Err(Rejection::Duplicate)
        );
        assert_eq!(
            r.deliver((party(1), SessionId(1), 1), vec![0; 3]),
            Err(Rejection::BufferFull),
            "byte limit"
        );
        r.deliver((party(1), SessionId(1), 1), vec![0; 2]).unwrap();
        assert_eq!(
            r.deliver((party(1), SessionId(1), 2), vec![]),
            Err(Rejection::BufferFull),
            "frame limit"
        );
        r.end_session(SessionId(1));
        assert_eq!(r.load(), (0, 0));
        r.deliver((party(1), SessionId(1), 2), vec![0; 5]).unwrap();
    }

    #[test]
    fn a_receive_from_an_absent_party_or_past_its_deadline_fails_at_once() {
        let mut r = Routing::new(4, 1024);
        let (tx, mut rx) = oneshot::channel();
        r.recv(
            (party(3), SessionId(1), 0),
            later(),
            PartyId::from_number(3).ok(),
            tx,
        );
        assert!(matches!(
            rx.try_recv().unwrap(),
            Err(NetError::PartyNotConnected { party }) if party.number() == 3
        ));
        let (tx, mut rx) = oneshot::channel();
        r.recv(
            (party(3), SessionId(1), 0),
            std::time::Instant::now(),
            None,
            tx,
        );
        assert!(matches!(
            rx.try_recv().unwrap(),
            Err(NetError::Timeout { from, .. }) if from == party(3)
        ));
        let (tx, _keep) = oneshot::channel();
        r.recv((party(3), SessionId(1), 1), later(), None, tx);
        let (tx, mut rx) = oneshot::channel();
        r.recv((party(3), SessionId(1), 1), later(), None, tx);
        assert!(matches!(
            rx.try_recv().unwrap(),
            Err(NetError::AlreadyWaiting { from, .. }) if from == party(3)
        ));
    }

    #[test]
    fn waiters_expire_and_fail_when_their_sender_leaves() {
        let mut r = Routing::new(4, 1024);
        let (soon_tx, mut soon) = oneshot::channel();
        let deadline = std::time::Instant::now() + Duration::from_millis(1);
        r.recv((party(1), SessionId(1), 0), deadline, None, soon_tx);
        let (party_tx, mut from_party) = oneshot::channel();
        r.recv((party(2), SessionId(1), 0), later(), None, party_tx);
        let (client_tx, mut client) = oneshot::channel();
        r.recv(
            (Endpoint::Client, SessionId(2), 0),
            later(),
            None,
            client_tx,
        );
        let owner = PeerId::random();
        r.bind_client(SessionId(2), owner).unwrap();

        r.expire(Instant::from_std(deadline));
        assert!(matches!(
            soon.try_recv().unwrap(),
            Err(NetError::Timeout { .. })
        ));
        r.party_gone(PartyId::from_number(2).unwrap());
        assert!(matches!(
            from_party.try_recv().unwrap(),
            Err(NetError::PartyDisconnected { from, .. }) if from == party(2)
        ));
        r.client_gone(owner);
        assert!(matches!(
            client.try_recv().unwrap(),
            Err(NetError::PartyDisconnected {
                from: Endpoint::Client,
                ..
            })
        ));
        assert_eq!(r.client_of(SessionId(2)), None);
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn a_session_belongs_to_its_first_client() {
        let mut r = Routing::new(4, 1024);
        let (a, b) = (PeerId::random(), PeerId::random());
        r.claim(SessionId(5), a).unwrap();
        r.claim(SessionId(5), a).unwrap();
        assert_eq!(r.claim(SessionId(5), b), Err(Rejection::ForeignSession));
        assert!(matches!(
            r.bind_client(SessionId(5), b),
            Err(NetError::SessionTaken { .. })
        ));
        assert_eq!(r.client_of(SessionId(5)), Some(a));
        r.end_session(SessionId(5));
        r.claim(SessionId(5), b).unwrap();
    }
}
