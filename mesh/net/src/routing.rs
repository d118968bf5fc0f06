//! MPC frame routing inside the event loop: incoming frames meet the receives waiting for them
//! (or wait, bounded, in the inbox until one asks), and each session is bound to the one client
//! that owns it.
//!
//! The inbox is the one place a peer can make this node hold memory for it, so it is bounded
//! three ways: a client's frames are only taken for sessions this node admitted for that
//! client ([`Routing::bind_client`]), every peer has its own quota (an equal share of the
//! totals, so one peer filling its share never leaves another without room), and a frame
//! nobody asked for within the time-to-live is dropped. A peer's frames go when it
//! disconnects, a session's when it ends.
//!
//! Plain bookkeeping, no I/O and no clock of its own: the event loop decides who a frame is
//! from and when "now" is, and hands both here.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

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

/// How much the inbox may hold, in all and per peer, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InboxLimits {
    pub(crate) max_frames: usize,
    pub(crate) max_bytes: usize,
    pub(crate) peer_frames: usize,
    pub(crate) peer_bytes: usize,
    /// A frame of a session not bound to a client is dropped once it waited this long.
    pub(crate) ttl: Duration,
}

impl InboxLimits {
    /// The totals, shared equally by the `peers` other peers that may ever connect: their
    /// quotas add up to no more than the totals, so no peer can take another's room.
    pub(crate) fn shared(max_frames: usize, max_bytes: usize, peers: usize, ttl: Duration) -> Self {
        let peers = peers.max(1);
        InboxLimits {
            max_frames,
            max_bytes,
            peer_frames: (max_frames / peers).max(1),
            peer_bytes: (max_bytes / peers).max(1),
            ttl,
        }
    }
}

/// Frames and bytes held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Usage {
    frames: usize,
    bytes: usize,
}

/// A frame that arrived before anyone asked for it.
struct Buffered {
    payload: Vec<u8>,
    peer: PeerId,
    arrived: Instant,
}

/// What the inbox dropped without delivering, since the start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Dropped {
    /// Nobody asked for them within the time-to-live.
    pub(crate) expired: u64,
    /// Their sender disconnected.
    pub(crate) purged: u64,
}

/// Frames that arrived before anyone asked for them.
struct Inbox {
    frames: HashMap<Key, Buffered>,
    total: Usage,
    per_peer: HashMap<PeerId, Usage>,
    limits: InboxLimits,
    dropped: Dropped,
}

impl Inbox {
    fn take(&mut self, key: &Key) -> Option<Buffered> {
        let frame = self.frames.remove(key)?;
        let bytes = frame.payload.len();
        self.total.frames -= 1;
        self.total.bytes -= bytes;
        if let Entry::Occupied(mut usage) = self.per_peer.entry(frame.peer) {
            usage.get_mut().frames -= 1;
            usage.get_mut().bytes -= bytes;
            if usage.get().frames == 0 {
                usage.remove();
            }
        }
        Some(frame)
    }

    fn insert(
        &mut self,
        key: Key,
        peer: PeerId,
        payload: Vec<u8>,
        now: Instant,
    ) -> Result<(), Rejection> {
        if self.frames.contains_key(&key) {
            return Err(Rejection::Duplicate);
        }
        let bytes = payload.len();
        let limits = &self.limits;
        let mine = self.per_peer.get(&peer).copied().unwrap_or_default();
        if mine.frames >= limits.peer_frames || mine.bytes + bytes > limits.peer_bytes {
            return Err(Rejection::PeerQuotaFull);
        }
        if self.total.frames >= limits.max_frames || self.total.bytes + bytes > limits.max_bytes {
            return Err(Rejection::BufferFull);
        }
        let usage = self.per_peer.entry(peer).or_default();
        usage.frames += 1;
        usage.bytes += bytes;
        self.total.frames += 1;
        self.total.bytes += bytes;
        let arrived = now;
        self.frames.insert(
            key,
            Buffered {
                payload,
                peer,
                arrived,
            },
        );
        Ok(())
    }

    /// Drops every frame `doomed` picks; returns how many.
    fn drop_where(&mut self, doomed: impl Fn(&Key, &Buffered) -> bool) -> u64 {
        let keys: Vec<Key> = self
            .frames
            .iter()
            .filter(|(k, f)| doomed(k, f))
            .map(|(k, _)| *k)
            .collect();
        for key in &keys {
            self.take(key);
        }
        keys.len() as u64
    }
}

/// The inbox, the waiting receives and the owner of each client session.
pub(crate) struct Routing {
    inbox: Inbox,
    waiters: HashMap<Key, Waiter>,
    /// Which client a session belongs to: set only when this node admits the session for it
    /// ([`Routing::bind_client`]), so replies go back to it and no client can make this node
    /// hold frames for a session it never admitted.
    session_clients: HashMap<SessionId, PeerId>,
}

impl Routing {
    /// Buffers early frames within `limits`.
    pub(crate) fn new(limits: InboxLimits) -> Routing {
        Routing {
            inbox: Inbox {
                frames: HashMap::new(),
                total: Usage::default(),
                per_peer: HashMap::new(),
                limits,
                dropped: Dropped::default(),
            },
            waiters: HashMap::new(),
            session_clients: HashMap::new(),
        }
    }

    /// Frames buffered and receives waiting (for `Debug`).
    pub(crate) fn load(&self) -> (usize, usize) {
        (self.inbox.frames.len(), self.waiters.len())
    }

    /// What the inbox dropped undelivered so far.
    pub(crate) fn dropped(&self) -> Dropped {
        self.inbox.dropped
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
        if let Some(frame) = self.inbox.take(&key) {
            let _ = reply.send(Ok(frame.payload));
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

    /// An accepted incoming frame from `peer`, at `now`: to its waiting receive, else into the
    /// inbox (within the peer's quota).
    pub(crate) fn deliver(
        &mut self,
        key: Key,
        peer: PeerId,
        mut payload: Vec<u8>,
        now: Instant,
    ) -> Result<(), Rejection> {
        if let Some(waiter) = self.waiters.remove(&key) {
            match waiter.reply.send(Ok(payload)) {
                Ok(()) => return Ok(()),
                // The receiving thread gave up; keep the frame for a retry.
                Err(Ok(back)) => payload = back,
                Err(Err(_)) => return Ok(()),
            }
        }
        self.inbox.insert(key, peer, payload, now)
    }

    /// Drops the buffered frames that waited `ttl` or longer by `now`, except those of a
    /// session bound to its client (admitted here: a client sends a whole prompt's inputs at
    /// once, and they wait until the party reaches them; they go when the session ends or
    /// the client leaves). Returns how many were dropped.
    pub(crate) fn expire_buffered(&mut self, now: Instant) -> u64 {
        let ttl = self.inbox.limits.ttl;
        let bound = &self.session_clients;
        let expired = self.inbox.drop_where(|k, f| {
            !bound.contains_key(&k.1) && now.saturating_duration_since(f.arrived) >= ttl
        });
        self.inbox.dropped.expired += expired;
        expired
    }

    /// Drops every frame `peer` sent that nobody took yet (it disconnected: a party's frames
    /// belong to an epoch that recovery replaces, a client's sessions end with it). Returns how
    /// many were dropped.
    pub(crate) fn purge_peer(&mut self, peer: PeerId) -> u64 {
        let purged = self.inbox.drop_where(|_, f| f.peer == peer);
        self.inbox.dropped.purged += purged;
        purged
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
        self.inbox.drop_where(|k, _| k.1 == session);
        self.session_clients.remove(&session);
    }

    /// The client that owns `session`, if this node admitted it for one.
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

    /// Whether `peer` (a client) may send frames of `session`: only once this node admitted
    /// the session for it. A frame of any other session is refused, never buffered.
    pub(crate) fn check_client(&self, session: SessionId, peer: PeerId) -> Result<(), Rejection> {
        match self.session_clients.get(&session) {
            Some(owner) if *owner == peer => Ok(()),
            Some(_) => Err(Rejection::ForeignSession),
            None => Err(Rejection::NotAdmitted),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    const TTL: Duration = Duration::from_secs(30);

    fn party(number: u8) -> Endpoint {
        Endpoint::Party(PartyId::from_number(number).unwrap())
    }

    fn later() -> std::time::Instant {
        std::time::Instant::now() + Duration::from_secs(60)
    }

    /// Totals of `frames` and `bytes`, each peer held to its own quota of the same.
    fn limits(frames: usize, bytes: usize) -> InboxLimits {
        InboxLimits {
            max_frames: frames * 4,
            max_bytes: bytes * 4,
            peer_frames: frames,
            peer_bytes: bytes,
            ttl: TTL,
        }
    }

    fn routing() -> Routing {
        Routing::new(limits(4, 1024))
    }

    #[test]
    fn early_frames_wait_in_the_inbox_and_late_ones_meet_their_receive() {
        let mut r = routing();
        let (peer, now) = (PeerId::random(), Instant::now());
        r.deliver((party(1), SessionId(7), 0), peer, vec![1], now)
            .unwrap();
        let (tx, mut rx) = oneshot::channel();
        r.recv((party(1), SessionId(7), 0), later(), None, tx);
        assert_eq!(rx.try_recv().unwrap().unwrap(), vec![1]);

        let (tx, mut rx) = oneshot::channel();
        r.recv((party(2), SessionId(7), 1), later(), None, tx);
        assert!(rx.try_recv().is_err(), "parked until the frame comes");
        r.deliver((party(2), SessionId(7), 1), peer, vec![2], now)
            .unwrap();
        assert_eq!(rx.try_recv().unwrap().unwrap(), vec![2]);
        assert_eq!(r.load(), (0, 0));
    }

    #[test]
    fn duplicates_and_overflow_are_rejected() {
        let mut r = Routing::new(limits(2, 5));
        let (peer, now) = (PeerId::random(), Instant::now());
        let key = |round| (party(1), SessionId(1), round);
        r.deliver(key(0), peer, vec![0; 3], now).unwrap();
        assert_eq!(
            r.deliver(key(0), peer, vec![0], now),
            Err(Rejection::Duplicate)
        );
        assert_eq!(
            r.deliver(key(1), peer, vec![0; 3], now),
            Err(Rejection::PeerQuotaFull),
            "byte quota"
        );
        r.deliver(key(1), peer, vec![0; 2], now).unwrap();
        assert_eq!(
            r.deliver(key(2), peer, vec![], now),
            Err(Rejection::PeerQuotaFull),
            "frame quota"
        );
        r.end_session(SessionId(1));
        assert_eq!(r.load(), (0, 0));
        r.deliver(key(2), peer, vec![0; 5], now).unwrap();
    }

    #[test]
    fn a_peer_filling_its_quota_leaves_room_for_every_other_peer() {
        // Three peers may connect: each gets a third of the 4,096 frames.
        let mut r = Routing::new(InboxLimits::shared(4096, 1 << 20, 3, TTL));
        let (flooder, honest, now) = (PeerId::random(), PeerId::random(), Instant::now());
        let mut refused = 0;
        for session in 0..4096u64 {
            let key = (party(2), SessionId(session.wrapping_mul(0x9E37_79B9)), 0);
            if r.deliver(key, flooder, vec![1], now).is_err() {
                refused += 1;
            }
        }
        assert_eq!(refused, 4096 - 4096 / 3);
        for round in 0..100 {
            r.deliver((party(3), SessionId(1), round), honest, vec![2; 64], now)
                .expect("the other peer's own share is untouched");
        }
    }

    #[test]
    fn a_client_frame_needs_a_session_admitted_for_that_client() {
        let mut r = routing();
        let (a, b) = (PeerId::random(), PeerId::random());
        assert_eq!(
            r.check_client(SessionId(5), a),
            Err(Rejection::NotAdmitted),
            "a frame never binds a session"
        );
        assert_eq!(r.client_of(SessionId(5)), None);
        r.bind_client(SessionId(5), a).unwrap();
        r.check_client(SessionId(5), a).unwrap();
        assert_eq!(
            r.check_client(SessionId(5), b),
            Err(Rejection::ForeignSession)
        );
        assert!(matches!(
            r.bind_client(SessionId(5), b),
            Err(NetError::SessionTaken { .. })
        ));
        assert_eq!(r.client_of(SessionId(5)), Some(a));
        r.end_session(SessionId(5));
        assert_eq!(r.check_client(SessionId(5), a), Err(Rejection::NotAdmitted));
    }

    #[test]
    fn frames_nobody_asked_for_expire_unless_their_session_is_admitted() {
        let mut r = routing();
        let (party_peer, client) = (PeerId::random(), PeerId::random());
        let start = Instant::now();
        r.bind_client(SessionId(9), client).unwrap();
        r.deliver((party(2), SessionId(1), 0), party_peer, vec![1], start)
            .unwrap();
        r.deliver((Endpoint::Client, SessionId(9), 0), client, vec![2], start)
            .unwrap();
        r.deliver(
            (party(2), SessionId(1), 1),
            party_peer,
            vec![3],
            start + TTL / 2,
        )
        .unwrap();

        assert_eq!(r.expire_buffered(start + TTL - Duration::from_millis(1)), 0);
        assert_eq!(
            r.expire_buffered(start + TTL),
            1,
            "the first frame's time is up"
        );
        assert_eq!(r.load().0, 2);
        assert_eq!(r.expire_buffered(start + TTL * 10), 1);
        assert_eq!(r.dropped().expired, 2);
        // The admitted session's input is still there for its receive.
        let (tx, mut rx) = oneshot::channel();
        r.recv((Endpoint::Client, SessionId(9), 0), later(), None, tx);
        assert_eq!(rx.try_recv().unwrap().unwrap(), vec![2]);
        // Its room is free again: a late frame of an ended session does not stay either.
        r.end_session(SessionId(9));
        r.deliver((party(2), SessionId(9), 5), party_peer, vec![4], start)
            .unwrap();
        assert_eq!(r.expire_buffered(start + TTL), 1);
        assert_eq!(r.load(), (0, 0));
    }

    #[test]
    fn a_disconnected_peers_frames_are_purged_and_its_quota_freed() {
        let mut r = Routing::new(limits(2, 1024));
        let (gone, stays, now) = (PeerId::random(), PeerId::random(), Instant::now());
        for round in 0..2 {
            r.deliver((party(1), SessionId(1), round), gone, vec![1], now)
                .unwrap();
        }
        r.deliver((party(2), SessionId(1), 0), stays, vec![2], now)
            .unwrap();
        assert_eq!(
            r.deliver((party(1), SessionId(1), 2), gone, vec![1], now),
            Err(Rejection::PeerQuotaFull)
        );
        assert_eq!(r.purge_peer(gone), 2);
        assert_eq!(r.load().0, 1, "only the other peer's frame is left");
        assert_eq!(r.dropped().purged, 2);
        r.deliver((party(1), SessionId(1), 2), gone, vec![1], now)
            .expect("after a reconnect the peer has its whole quota again");
    }

    #[test]
    fn a_receive_from_an_absent_party_or_past_its_deadline_fails_at_once() {
        let mut r = routing();
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
        let mut r = routing();
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
}
