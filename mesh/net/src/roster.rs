//! The roster: which device holds which party index, fixed at provisioning.
//!
//! Every share file of one provisioning carries the device peer ID of every party, in party
//! order, covered by its checksum. A node admits an announcement for party `i` only from the
//! roster's peer `i`, so a client or any other allow-listed peer can never take a free index
//! (and receive the reshares, masks and openings meant for it). The share summary carries
//! [`Roster::sha256`], so parties that agree on a summary agree on the roster, and a client,
//! which has no share file, can check the roster the parties announce against it.

use std::fmt;

use libp2p::PeerId;
use mesh::PartyId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Upper bound on one encoded peer ID (an ed25519 peer ID is 38 bytes).
pub const MAX_PEER_ID_BYTES: usize = 64;

/// The device peer ID of every party of one provisioning: entry `i` is party `i + 1`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Roster(Vec<PeerId>);

/// A roster that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RosterError {
    /// More entries than the MPC engine has parties.
    #[error(
        "the roster lists {len} devices, more than the {max} parties Sotto supports; re-provision with fewer devices"
    )]
    TooLong {
        /// Entries.
        len: usize,
        /// The engine's limit.
        max: usize,
    },
    /// An entry is not a peer ID.
    #[error(
        "roster entry {party} is not a valid peer ID ({reason}); re-provision with the peer IDs `sotto run --print-peer-id` prints"
    )]
    BadPeerId {
        /// The party whose entry it is (1-based).
        party: usize,
        /// Why it does not decode.
        reason: String,
    },
    /// One device listed for two parties.
    #[error(
        "device {peer} is listed for parties {first} and {second}: every party needs its own device; re-provision with distinct peer IDs"
    )]
    Duplicate {
        /// The device.
        peer: PeerId,
        /// Its first party (1-based).
        first: usize,
        /// Its second party (1-based).
        second: usize,
    },
}

impl Roster {
    /// A roster from the devices' peer IDs in party order; refuses duplicates and more
    /// entries than [`mesh::shamir::MAX_PARTIES`].
    pub fn new(peers: Vec<PeerId>) -> Result<Self, RosterError> {
        if peers.len() > mesh::shamir::MAX_PARTIES {
            return Err(RosterError::TooLong {
                len: peers.len(),
                max: mesh::shamir::MAX_PARTIES,
            });
        }
        for (i, peer) in peers.iter().enumerate() {
            if let Some(j) = peers[..i].iter().position(|p| p == peer) {
                return Err(RosterError::Duplicate {
                    peer: *peer,
                    first: j + 1,
                    second: i + 1,
                });
            }
        }
        Ok(Roster(peers))
    }

    /// A roster from its stored form (each peer ID's bytes, as in a share file's header).
    pub fn from_bytes(entries: &[Vec<u8>]) -> Result<Self, RosterError> {
        if entries.len() > mesh::shamir::MAX_PARTIES {
            return Err(RosterError::TooLong {
                len: entries.len(),
                max: mesh::shamir::MAX_PARTIES,
            });
        }
        let peers = entries
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                if bytes.len() > MAX_PEER_ID_BYTES {
                    return Err(RosterError::BadPeerId {
                        party: i + 1,
                        reason: format!("{} bytes, at most {MAX_PEER_ID_BYTES}", bytes.len()),
                    });
                }
                PeerId::from_bytes(bytes).map_err(|e| RosterError::BadPeerId {
                    party: i + 1,
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(peers)
    }

    /// The stored form: each peer ID's bytes, in party order.
    pub fn to_bytes(&self) -> Vec<Vec<u8>> {
        self.0.iter().map(|p| p.to_bytes()).collect()
    }

    /// sha256 of the canonical encoding (each entry as a length byte and the peer ID's bytes,
    /// in party order): what [`crate::ShareSummary::roster_sha256`] holds.
    pub fn sha256(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for peer in &self.0 {
            let bytes = peer.to_bytes();
            // Entries are bounded by MAX_PEER_ID_BYTES (checked on decode; a PeerId's
            // multihash never exceeds it), so one length byte is enough.
            h.update([bytes.len() as u8]);
            h.update(&bytes);
        }
        h.finalize().into()
    }

    /// Number of parties listed.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no party is listed (only an observer's not-yet-learned roster is).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The devices, in party order.
    pub fn peers(&self) -> &[PeerId] {
        &self.0
    }

    /// The device provisioned for `party`.
    pub fn peer_of(&self, party: PartyId) -> Option<PeerId> {
        self.0.get(party.index()).copied()
    }

    /// The party `peer` is provisioned for, if it is a device of this roster.
    pub fn party_of(&self, peer: &PeerId) -> Option<PartyId> {
        let i = self.0.iter().position(|p| p == peer)?;
        PartyId::from_index(i).ok()
    }
}

impl fmt::Debug for Roster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|p| p.to_string()))
            .finish()
    }
}

// On the wire a roster is its stored form; decoding validates it like a share file's, and the
// announcement's length limit ([`crate::frame::MAX_CONTROL_BYTES`]) bounds it before that.
impl Serialize for Roster {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_bytes().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Roster {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = Vec::<Vec<u8>>::deserialize(d)?;
        Roster::from_bytes(&entries).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_round_trips_and_is_checked() {
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        let r = Roster::new(peers.clone()).unwrap();
        let back = Roster::from_bytes(&r.to_bytes()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.sha256(), r.sha256());
        assert_eq!(r.peer_of(PartyId::from_number(2).unwrap()), Some(peers[1]));
        assert_eq!(r.party_of(&peers[2]), PartyId::from_number(3).ok());
        assert_eq!(r.party_of(&PeerId::random()), None);

        let mut swapped = peers.clone();
        swapped.swap(0, 1);
        assert_ne!(Roster::new(swapped).unwrap().sha256(), r.sha256());
        assert!(matches!(
            Roster::new(vec![peers[0], peers[1], peers[0]]),
            Err(RosterError::Duplicate {
                first: 1,
                second: 3,
                ..
            })
        ));
        let mut bad = r.to_bytes();
        bad[1] = vec![0xff; 3];
        assert!(matches!(
            Roster::from_bytes(&bad),
            Err(RosterError::BadPeerId { party: 2, .. })
        ));
        bad[1] = vec![0; MAX_PEER_ID_BYTES + 1];
        assert!(matches!(
            Roster::from_bytes(&bad),
            Err(RosterError::BadPeerId { party: 2, .. })
        ));
    }
}
