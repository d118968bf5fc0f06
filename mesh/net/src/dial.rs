//! Whom to dial, when, and at which addresses: static peers and allowed peers found by mDNS,
//! redialed while disconnected, with a tie-break so two nodes that know each other do not dial
//! each other at the same moment.
//!
//! Plain bookkeeping, no I/O: the event loop asks [`DialPolicy::dial_now`] and dials.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};

use crate::config::{ConfigError, static_peer_id};

/// The dial policy of one node.
pub(crate) struct DialPolicy {
    local: PeerId,
    allowed: HashSet<PeerId>,
    /// How long the node with the larger peer ID leaves the first dial to the other one.
    grace: Duration,
    static_peers: HashMap<PeerId, Vec<Multiaddr>>,
    /// Allowed peers found by mDNS (until their records expire): redialed like static peers,
    /// since a dial that lost a race is otherwise never retried.
    discovered: HashSet<PeerId>,
    /// Since when each not-yet-connected peer has been wanted.
    wanted: HashMap<PeerId, Instant>,
}

impl DialPolicy {
    /// A policy for `local`, dialing only peers in `allowed`, redialing every `redial_interval`.
    pub(crate) fn new(
        local: PeerId,
        allowed: HashSet<PeerId>,
        redial_interval: Duration,
    ) -> DialPolicy {
        DialPolicy {
            local,
            allowed,
            grace: 2 * redial_interval,
            static_peers: HashMap::new(),
            discovered: HashSet::new(),
            wanted: HashMap::new(),
        }
    }

    /// Adds a static peer address (`.../p2p/<peer id>`); the peer must be on the allow-list.
    pub(crate) fn add_static(&mut self, addr: Multiaddr) -> Result<PeerId, ConfigError> {
        let peer = static_peer_id(&addr)?;
        if !self.allowed.contains(&peer) {
            return Err(ConfigError::StaticPeerNotAllowed { addr, peer });
        }
        let addrs = self.static_peers.entry(peer).or_default();
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
        Ok(peer)
    }

    /// mDNS found `peer`; `false` (and nothing remembered) when it is not on the allow-list.
    pub(crate) fn discovered(&mut self, peer: PeerId) -> bool {
        if !self.allowed.contains(&peer) {
            return false;
        }
        self.discovered.insert(peer);
        true
    }

    /// mDNS records of `peer` expired: no more redials unless it is a static peer.
    pub(crate) fn expired(&mut self, peer: PeerId) {
        self.discovered.remove(&peer);
    }

    /// A connection to `peer` is up: it is no longer wanted.
    pub(crate) fn connected(&mut self, peer: PeerId) {
        self.wanted.remove(&peer);
    }

    /// Whether to dial `peer` now (`connected`: whether a connection is already up), and the
    /// static addresses to try (the swarm adds those it learnt from mDNS and identify).
    ///
    /// Two nodes that know each other (mDNS answers reach both at once; static peers start
    /// together) would dial each other at the same moment and end up with two connections,
    /// whose MPC streams can land on different connections. Only the node with the smaller
    /// peer ID dials at once; the other waits a grace period, in case the first never does (it
    /// may not know our address).
    pub(crate) fn dial_now(
        &mut self,
        peer: PeerId,
        connected: bool,
        now: Instant,
    ) -> Option<Vec<Multiaddr>> {
        if connected {
            self.wanted.remove(&peer);
            return None;
        }
        let wanted = *self.wanted.entry(peer).or_insert(now);
        if self.local > peer && now.saturating_duration_since(wanted) < self.grace {
            return None;
        }
        Some(self.static_peers.get(&peer).cloned().unwrap_or_default())
    }

    /// The peers to try again on every redial tick: static and discovered ones.
    pub(crate) fn redial_targets(&self) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = self
            .static_peers
            .keys()
            .chain(
                self.discovered
                    .iter()
                    .filter(|p| !self.static_peers.contains_key(p)),
            )
            .copied()
            .collect();
        peers.sort();
        peers
    }
}

#[cfg(test)]
mod tests {
    use libp2p::multiaddr::Protocol;

    use super::*;

    const INTERVAL: Duration = Duration::from_secs(1);

    /// Two peer IDs, smaller first.
    fn ordered() -> (PeerId, PeerId) {
        let (a, b) = (PeerId::random(), PeerId::random());
        if a < b { (a, b) } else { (b, a) }
    }

    fn addr_of(peer: PeerId, port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}")
            .parse::<Multiaddr>()
            .unwrap()
            .with(Protocol::P2p(peer))
    }

    #[test]
    fn the_smaller_peer_id_dials_at_once_the_larger_after_the_grace_period() {
        let (small, large) = ordered();
        let t0 = Instant::now();

        let mut at_small = DialPolicy::new(small, HashSet::from([large]), INTERVAL);
        at_small.add_static(addr_of(large, 4001)).unwrap();
        assert_eq!(
            at_small.dial_now(large, false, t0),
            Some(vec![addr_of(large, 4001)])
        );

        let mut at_large = DialPolicy::new(large, HashSet::from([small]), INTERVAL);
        at_large.add_static(addr_of(small, 4002)).unwrap();
        assert_eq!(at_large.dial_now(small, false, t0), None);
        assert_eq!(at_large.dial_now(small, false, t0 + INTERVAL), None);
        assert_eq!(
            at_large.dial_now(small, false, t0 + 2 * INTERVAL),
            Some(vec![addr_of(small, 4002)]),
            "the other side never dialed: dial ourselves"
        );
    }

    #[test]
    fn a_connection_resets_the_grace_period() {
        let (small, large) = ordered();
        let t0 = Instant::now();
        let mut p = DialPolicy::new(large, HashSet::from([small]), INTERVAL);
        assert_eq!(p.dial_now(small, false, t0), None);
        assert_eq!(
            p.dial_now(small, true, t0 + 3 * INTERVAL),
            None,
            "connected"
        );
        // Disconnected again later: a fresh grace period starts.
        assert_eq!(p.dial_now(small, false, t0 + 4 * INTERVAL), None);
        assert_eq!(
            p.dial_now(small, false, t0 + 6 * INTERVAL),
            Some(vec![]),
            "no static address: the swarm's learnt ones"
        );
        p.dial_now(small, false, t0 + 7 * INTERVAL);
        p.connected(small);
        assert_eq!(p.dial_now(small, false, t0 + 8 * INTERVAL), None);
    }

    #[test]
    fn only_allowed_peers_are_remembered_and_redialed() {
        let (me, friend) = ordered();
        let stranger = PeerId::random();
        let mut p = DialPolicy::new(me, HashSet::from([friend]), INTERVAL);
        assert!(matches!(
            p.add_static(addr_of(stranger, 4003)),
            Err(ConfigError::StaticPeerNotAllowed { .. })
        ));
        assert!(!p.discovered(stranger));
        assert!(p.redial_targets().is_empty());

        assert!(p.discovered(friend));
        assert_eq!(p.redial_targets(), vec![friend]);
        p.expired(friend);
        assert!(p.redial_targets().is_empty());

        assert_eq!(p.add_static(addr_of(friend, 4004)).unwrap(), friend);
        assert_eq!(p.add_static(addr_of(friend, 4004)).unwrap(), friend);
        p.discovered(friend);
        assert_eq!(p.redial_targets(), vec![friend], "once, not per source");
        p.expired(friend);
        assert_eq!(p.redial_targets(), vec![friend], "static peers stay");
        assert_eq!(
            p.dial_now(friend, false, Instant::now()),
            Some(vec![addr_of(friend, 4004)]),
            "each address once"
        );
    }
}
