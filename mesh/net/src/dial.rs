//! Whom to dial, when, and at which addresses: static peers and allowed peers found by mDNS,
//! redialed while disconnected, with a tie-break so two nodes that know each other do not dial
//! each other at the same moment.
//!
//! Plain bookkeeping, no I/O: the event loop asks [`DialPolicy::dial_now`] and dials, and tells
//! it how each attempt ended, so that a client can say why a device is unreachable
//! ([`classify`], [`DialFailure`]) instead of waiting out its timeout with no reason.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::swarm::DialError;
use libp2p::{Multiaddr, PeerId};

use crate::config::{ConfigError, static_peer_id};
use crate::error::{DialFailure, describe};

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
    /// How the last attempt to reach each peer failed, until it announces itself.
    failures: HashMap<PeerId, DialFailure>,
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
            failures: HashMap::new(),
        }
    }

    /// A dial of `peer` failed.
    pub(crate) fn failed(&mut self, peer: PeerId, failure: DialFailure) {
        self.failures.insert(peer, failure);
    }

    /// The last connection to `peer` closed before it announced itself: it did not admit us.
    pub(crate) fn closed_unannounced(&mut self, peer: PeerId) {
        self.failures.insert(peer, DialFailure::NotAdmitted);
    }

    /// `peer` announced itself: reached.
    pub(crate) fn reached(&mut self, peer: PeerId) {
        self.failures.remove(&peer);
    }

    /// The last failure of each peer not reached since, by peer ID.
    pub(crate) fn failures(&self) -> Vec<(PeerId, DialFailure)> {
        let mut all: Vec<(PeerId, DialFailure)> =
            self.failures.iter().map(|(p, f)| (*p, f.clone())).collect();
        all.sort_by_key(|(p, _)| *p);
        all
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

/// What a failed dial means for the user; `None` for attempts that were not failures of the
/// peer (a dial skipped because one was under way, or aborted by us).
pub(crate) fn classify(error: &DialError) -> Option<DialFailure> {
    match error {
        DialError::DialPeerConditionFalse(_) | DialError::Aborted => None,
        DialError::WrongPeerId { obtained, .. } => Some(DialFailure::WrongPeer {
            obtained: *obtained,
        }),
        DialError::Denied { cause } => Some(DialFailure::Other {
            detail: format!("refused by this node: {cause}"),
        }),
        DialError::Transport(attempts) => {
            let failures: Vec<DialFailure> = attempts
                .iter()
                .map(|(_, e)| classify_transport(e))
                .collect();
            // One address that answered says more than others that did not.
            failures
                .iter()
                .find(|f| !matches!(f, DialFailure::Refused | DialFailure::NoAnswer))
                .or_else(|| failures.iter().find(|f| **f == DialFailure::NoAnswer))
                .or(failures.first())
                .cloned()
        }
        other => Some(DialFailure::Other {
            detail: other.to_string(),
        }),
    }
}

/// One address's transport error: refused and timed out are told by the I/O errors in the
/// chain; whatever else failed happened after TCP connected, in the handshake.
fn classify_transport(error: &(dyn std::error::Error + 'static)) -> DialFailure {
    let mut next = Some(error);
    let mut timed_out = false;
    while let Some(e) = next {
        // libp2p's transport timeout (`TransportTimeoutError::Timeout`) is generic over the
        // inner error and cannot be downcast: its text is all there is.
        let text = e.to_string();
        timed_out |= text == "Timeout has been reached";
        // Some layers print the TCP error without handing it out as a source; the
        // operating system's text is then all there is.
        if text.contains("Connection refused") {
            return DialFailure::Refused;
        }
        next = e.source();
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return DialFailure::Refused,
                std::io::ErrorKind::TimedOut => timed_out = true,
                _ => {}
            }
            // An `io::Error` wrapping another error reports that error's source, not the
            // error itself: look inside.
            if let Some(inner) = io.get_ref() {
                next = Some(inner);
            }
        }
    }
    if timed_out {
        DialFailure::NoAnswer
    } else {
        DialFailure::HandshakeFailed {
            detail: describe(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use libp2p::TransportError;
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

    fn transport(error: std::io::Error) -> DialError {
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        DialError::Transport(vec![(addr, TransportError::Other(error))])
    }

    /// An I/O error wrapping `cause`, as libp2p's boxed transport hands them over.
    fn wrapped(cause: std::io::Error) -> std::io::Error {
        std::io::Error::other(cause)
    }

    #[test]
    fn each_dial_failure_is_told_apart() {
        use std::io::{Error, ErrorKind};
        let refused = Error::new(ErrorKind::ConnectionRefused, "connection refused");
        assert_eq!(
            classify(&transport(wrapped(refused))),
            Some(DialFailure::Refused)
        );
        let timeout = Error::new(ErrorKind::TimedOut, "timed out");
        assert_eq!(
            classify(&transport(wrapped(timeout))),
            Some(DialFailure::NoAnswer)
        );
        let garbage = Error::new(ErrorKind::InvalidData, "multistream-select: bad message");
        assert!(matches!(
            classify(&transport(wrapped(garbage))),
            Some(DialFailure::HandshakeFailed { detail }) if detail.contains("multistream")
        ));
        let obtained = PeerId::random();
        let wrong = DialError::WrongPeerId {
            obtained,
            address: "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
        };
        assert_eq!(classify(&wrong), Some(DialFailure::WrongPeer { obtained }));
        assert_eq!(classify(&DialError::Aborted), None);
    }

    #[test]
    fn a_failure_is_kept_until_the_peer_announces_itself() {
        let (me, friend) = ordered();
        let mut p = DialPolicy::new(me, HashSet::from([friend]), INTERVAL);
        p.failed(friend, DialFailure::Refused);
        assert_eq!(p.failures(), vec![(friend, DialFailure::Refused)]);
        p.closed_unannounced(friend);
        assert_eq!(p.failures(), vec![(friend, DialFailure::NotAdmitted)]);
        p.reached(friend);
        assert!(p.failures().is_empty());
    }
}
