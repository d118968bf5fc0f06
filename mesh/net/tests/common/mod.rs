//! Helpers shared by the mesh-net integration tests: parties by their 1-based number.

use mesh::{Endpoint, PartyId};
use mesh_net::QuorumView;

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
