//! Helpers shared by the mesh-net integration tests: parties by their 1-based number.

use mesh::{Endpoint, PartyId};
use mesh_net::{Keypair, QuorumView, Roster};

/// The node identity of party `number`'s device (fixed, so that a summary can carry the
/// roster's hash before any node starts).
pub(crate) fn device_key(number: u8) -> Keypair {
    Keypair::ed25519_from_bytes([number; 32]).unwrap()
}

/// The roster of an `n`-party test mesh: party `i` is [`device_key`]`(i)`.
pub(crate) fn roster(n: u8) -> Roster {
    Roster::new(
        (1..=n)
            .map(|i| device_key(i).public().to_peer_id())
            .collect(),
    )
    .unwrap()
}

/// Party `number` (1-based).
pub(crate) fn p(number: u8) -> PartyId {
    PartyId::from_number(number).unwrap()
}

/// Party `number` as a sender or receiver of rounds.
pub(crate) fn party(number: u8) -> Endpoint {
    Endpoint::Party(p(number))
}

/// The numbers of the parties a view counts.
pub(crate) fn numbers(view: &QuorumView) -> Vec<u8> {
    view.parties().into_iter().map(PartyId::number).collect()
}
