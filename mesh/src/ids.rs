//! The two numbers every layer talks about: which party ([`PartyId`]) and which round
//! ([`Round`]).
//!
//! A party has a 0-based *index* (array positions, Lagrange tables) and a 1-based *number*
//! (its Shamir evaluation point, what share files, announcements, control messages and users
//! say). Converting by hand between the two was a source of off-by-one slips; `PartyId`
//! holds the index and says which form each caller gets.

use core::fmt;

use serde::{Deserialize, Serialize};

/// Most parties one quorum may have (the Shamir points 1..=64 of the engine's tables).
pub const MAX_PARTIES: usize = 64;

/// A party index or number that no [`PartyId`] holds. Its own type (converted into
/// [`crate::MeshError`]) so that this module depends on nothing else in the crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PartyIdError {
    /// An index at or above the limit.
    #[error("party index {index} out of range for {n} parties")]
    OutOfRange {
        /// The index.
        index: usize,
        /// The limit.
        n: usize,
    },
    /// Number 0, the secret's own point.
    #[error("party numbers start at 1")]
    Zero,
}

/// One party of a quorum. Serialized as its 1-based number (one byte on the wire).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct PartyId(u8);

impl PartyId {
    /// The party at 0-based `index`.
    pub fn from_index(index: usize) -> Result<PartyId, PartyIdError> {
        if index < MAX_PARTIES {
            Ok(PartyId(index as u8))
        } else {
            Err(PartyIdError::OutOfRange {
                index,
                n: MAX_PARTIES,
            })
        }
    }

    /// The party with 1-based `number` (as on the wire and in share files).
    pub fn from_number(number: u8) -> Result<PartyId, PartyIdError> {
        match number.checked_sub(1) {
            Some(index) => PartyId::from_index(usize::from(index)),
            None => Err(PartyIdError::Zero),
        }
    }

    /// Every party of an `n`-party quorum, in order.
    pub fn all(n: usize) -> impl Iterator<Item = PartyId> {
        (0..n.min(MAX_PARTIES)).map(|i| PartyId(i as u8))
    }

    /// 0-based index (array positions).
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// 1-based number: the Shamir evaluation point, and what the wire and users see.
    pub fn number(self) -> u8 {
        self.0 + 1
    }
}

impl TryFrom<u8> for PartyId {
    type Error = PartyIdError;
    fn try_from(number: u8) -> Result<Self, PartyIdError> {
        PartyId::from_number(number)
    }
}

impl From<PartyId> for u8 {
    fn from(p: PartyId) -> u8 {
        p.number()
    }
}

impl fmt::Display for PartyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// The bare number, so that lists of parties read `[1, 2, 4]` in messages and logs.
impl fmt::Debug for PartyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// The number of a communication round within one session or epoch (0, 1, 2, ...).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Round(pub u64);

impl Round {
    /// The round after this one.
    pub fn next(self) -> Round {
        Round(self.0 + 1)
    }
}

impl fmt::Display for Round {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_number_are_one_apart_and_checked() {
        let p = PartyId::from_number(4).unwrap();
        assert_eq!((p.index(), p.number()), (3, 4));
        assert_eq!(PartyId::from_index(3).unwrap(), p);
        assert!(PartyId::from_number(0).is_err());
        assert!(PartyId::from_index(MAX_PARTIES).is_err());
        assert_eq!(p.to_string(), "4");
        assert_eq!(
            PartyId::all(3).map(PartyId::number).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn serializes_as_its_wire_number() {
        let p = PartyId::from_number(7).unwrap();
        let bytes = postcard::to_allocvec(&p).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&7u8).unwrap());
        assert_eq!(postcard::from_bytes::<PartyId>(&bytes).unwrap(), p);
        assert!(postcard::from_bytes::<PartyId>(&[0]).is_err());
    }
}
