//! The crate's error type: every failure on bad input, bad configuration or a peer's
//! malformed message is one of these, never a panic.

use thiserror::Error;

use crate::ids::{PartyId, PartyIdError};

/// Who sent or should have sent a message.
/// Complete by nature (a message comes from a party or from the client), so not
/// `non_exhaustive`: other crates match it exhaustively.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A party. Errors name it by its 1-based number ("party 1" is index 0).
    Party(PartyId),
    /// The client (data owner), which is not a party.
    Client,
}

impl core::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Endpoint::Party(p) => write!(f, "party {p}"),
            Endpoint::Client => write!(f, "the client"),
        }
    }
}

/// Who a message comes from, as the engine's loops know it (a party's 0-based index). It
/// becomes an [`Endpoint`] only when an error names it, so the fast path converts nothing.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Origin {
    /// The party at this 0-based index.
    Party(usize),
    /// The client.
    Client,
}

impl Origin {
    /// The error `make` builds for this sender. The engine's indices are below
    /// `n <= MAX_PARTIES`, so the conversion to a [`PartyId`] holds; an index that does not fit
    /// is still reported (as [`MeshError::PartyOutOfRange`]) rather than a panic.
    #[cold]
    pub(crate) fn error(self, make: impl FnOnce(Endpoint) -> MeshError) -> MeshError {
        match self {
            Origin::Client => make(Endpoint::Client),
            Origin::Party(index) => match PartyId::from_index(index) {
                Ok(p) => make(Endpoint::Party(p)),
                Err(e) => e.into(),
            },
        }
    }
}

/// What is wrong with a received message.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Shorter than the frame header.
    #[error("message of {0} bytes is shorter than the header")]
    Short(usize),
    /// Unknown wire-format version.
    #[error("unknown wire version {0}")]
    Version(u8),
    /// The message belongs to another round (a peer is out of step).
    #[error("message for round {got}, expected round {expected}")]
    Sequence {
        /// Round this party is in.
        expected: u32,
        /// Round the message claims.
        got: u32,
    },
    /// The message carries a different number of elements than the protocol step needs.
    #[error("message carries {got} elements, expected {expected}")]
    Count {
        /// Elements this step needs.
        expected: usize,
        /// Elements the header announces.
        got: usize,
    },
    /// The byte length does not match the announced element count.
    #[error("message is {got} bytes, its header announces {expected}")]
    Length {
        /// Length implied by the header.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// An element is not a canonical field element (`>= p`).
    #[error("element {0} is not a canonical field element")]
    NonCanonical(usize),
}

/// Errors of the MPC engine.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MeshError {
    /// `(n, t)` is not a usable threshold configuration.
    #[error("invalid threshold n={n}, t={t}: need t >= 1 and n >= 2t+1 (honest majority)")]
    InvalidThreshold {
        /// Parties.
        n: usize,
        /// Corruption threshold (polynomial degree).
        t: usize,
    },
    /// More parties than the engine supports.
    #[error("{n} parties requested, at most {max} supported")]
    TooManyParties {
        /// Parties requested.
        n: usize,
        /// Supported maximum.
        max: usize,
    },
    /// A party index is not in `0..n`.
    #[error("party index {index} out of range for {n} parties")]
    PartyOutOfRange {
        /// The offending index.
        index: usize,
        /// Parties.
        n: usize,
    },
    /// A party index appears twice in a set that must hold distinct parties.
    #[error("party index {0} appears twice")]
    DuplicateParty(usize),
    /// A set of parties has the wrong size.
    #[error("party set of size {got}, need {need}")]
    PartySetSize {
        /// Given size.
        got: usize,
        /// Required size.
        need: usize,
    },
    /// Input vectors whose lengths must agree do not.
    #[error("length mismatch in {what}: expected {expected}, got {got}")]
    LengthMismatch {
        /// Which argument.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// An argument outside what the protocol supports (a shift amount, a row length, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A message from a peer or the client could not be decoded.
    #[error("malformed message from {from}: {error}")]
    Malformed {
        /// Sender.
        from: Endpoint,
        /// What is wrong.
        error: MessageError,
    },
    /// No message arrived in time.
    #[error("timed out waiting for {0}")]
    Timeout(Endpoint),
    /// The peer's end of the link is gone.
    #[error("link to {0} is closed")]
    Disconnected(Endpoint),
    /// A round could not complete because of the link to a peer: the transport says why (a
    /// peer that left, a send that failed, a deadline that passed). Recovery acts on it.
    #[error("round failed at {peer}: {reason}")]
    Link {
        /// The peer whose link failed.
        peer: Endpoint,
        /// What the transport saw.
        reason: String,
    },
    /// The round was stopped on purpose before it completed (the session was paused).
    #[error("the round was interrupted: the session is pausing")]
    Interrupted,
    /// Shares received for reconstruction do not lie on one polynomial of degree t: the share
    /// of party `party` (0-based index) for element `element` is off the polynomial through the
    /// others (or, when one wrong share cannot be told apart, through the first t+1 received).
    #[error(
        "inconsistent shares for output element {element}: the share of party index {party} is not on the degree-t polynomial of the others"
    )]
    Inconsistent {
        /// The element (position in the output vector).
        element: usize,
        /// 0-based index of the party whose share disagrees.
        party: usize,
    },
    /// Fewer parties' shares than a reconstruction needs.
    #[error("shares from {got} parties, need at least {need} (t + 1) to reconstruct")]
    TooFewShares {
        /// Parties whose shares were given.
        got: usize,
        /// Parties needed.
        need: usize,
    },
    /// A reconstructed value does not fit the requested integer type.
    #[error("reconstructed value does not fit in 64 bits (element {0})")]
    Overflow(usize),
}

/// `Ok` when two lengths that must agree do; otherwise the [`MeshError::LengthMismatch`]
/// naming `what`.
pub(crate) fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), MeshError> {
    if expected == got {
        Ok(())
    } else {
        Err(MeshError::LengthMismatch {
            what,
            expected,
            got,
        })
    }
}

impl From<PartyIdError> for MeshError {
    fn from(e: PartyIdError) -> Self {
        match e {
            PartyIdError::OutOfRange { index, n } => MeshError::PartyOutOfRange { index, n },
            PartyIdError::Zero => MeshError::InvalidArgument("party numbers start at 1"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shamir::MAX_PARTIES;

    #[test]
    fn endpoints_name_parties_by_their_number() {
        let first = Endpoint::Party(PartyId::from_index(0).unwrap());
        assert_eq!(first.to_string(), "party 1");
        assert_eq!(Endpoint::Client.to_string(), "the client");
        assert_eq!(
            MeshError::Disconnected(first).to_string(),
            "link to party 1 is closed"
        );
        assert_eq!(
            Origin::Party(2).error(MeshError::Timeout).to_string(),
            "timed out waiting for party 3"
        );
    }

    #[test]
    fn an_origin_no_party_id_can_hold_is_out_of_range_not_a_panic() {
        assert_eq!(
            Origin::Party(MAX_PARTIES).error(MeshError::Disconnected),
            MeshError::PartyOutOfRange {
                index: MAX_PARTIES,
                n: MAX_PARTIES
            }
        );
        assert_eq!(
            Origin::Client.error(MeshError::Disconnected),
            MeshError::Disconnected(Endpoint::Client)
        );
    }
}
