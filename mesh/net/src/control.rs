//! Bookkeeping of control messages (`/sotto/control/1`) in flight: requests from peers that
//! the node has not answered yet, and this node's requests waiting for an answer.
//!
//! Generic over the swarm's channel and request-id types so it is tested without a swarm.

use std::collections::HashMap;
use std::hash::Hash;

use libp2p::PeerId;

/// Control requests in flight, both ways.
pub(crate) struct ControlBook<Channel, OutId, Reply> {
    next_id: u64,
    /// Requests handed to the node, by the id its answer comes back with.
    inbound: HashMap<u64, (PeerId, Channel)>,
    /// Requests this node sent, by the swarm's id for them.
    outbound: HashMap<OutId, Reply>,
}

impl<Channel, OutId: Eq + Hash, Reply> ControlBook<Channel, OutId, Reply> {
    pub(crate) fn new() -> Self {
        ControlBook {
            next_id: 0,
            inbound: HashMap::new(),
            outbound: HashMap::new(),
        }
    }

    /// Holds `peer`'s request's answer channel; returns the id the answer must name.
    pub(crate) fn hold(&mut self, peer: PeerId, channel: Channel) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.inbound.insert(id, (peer, channel));
        id
    }

    /// The answer channel of request `id`, once.
    pub(crate) fn answer(&mut self, id: u64) -> Option<(PeerId, Channel)> {
        self.inbound.remove(&id)
    }

    /// `peer` disconnected: its unanswered requests can no longer be answered.
    pub(crate) fn peer_gone(&mut self, peer: PeerId) {
        self.inbound.retain(|_, (p, _)| *p != peer);
    }

    /// Remembers who waits for the answer to this node's request `id`.
    pub(crate) fn sent(&mut self, id: OutId, reply: Reply) {
        self.outbound.insert(id, reply);
    }

    /// Who waits for the answer (or failure) of request `id`, once.
    pub(crate) fn settled(&mut self, id: &OutId) -> Option<Reply> {
        self.outbound.remove(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_requests_are_answered_once_and_dropped_with_their_peer() {
        let mut book: ControlBook<&str, u32, ()> = ControlBook::new();
        let (a, b) = (PeerId::random(), PeerId::random());
        let first = book.hold(a, "a1");
        let second = book.hold(a, "a2");
        let third = book.hold(b, "b1");
        assert!(first != second && second != third && first != third);
        assert_eq!(book.answer(first), Some((a, "a1")));
        assert_eq!(book.answer(first), None, "answered once");
        book.peer_gone(a);
        assert_eq!(book.answer(second), None, "its peer left");
        assert_eq!(book.answer(third), Some((b, "b1")));
    }

    #[test]
    fn outbound_requests_settle_once() {
        let mut book: ControlBook<(), u32, &str> = ControlBook::new();
        book.sent(7, "waiting for 7");
        assert_eq!(book.settled(&8), None);
        assert_eq!(book.settled(&7), Some("waiting for 7"));
        assert_eq!(book.settled(&7), None);
    }
}
