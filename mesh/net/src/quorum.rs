//! Quorum formation: who is connected with which party index, and whether that is enough.
//!
//! Each device announces its party index, a summary of its share-file header and the
//! provisioning's [`Roster`]. A [`Quorum`] counts a peer only if its summary equals ours (same
//! model, same provisioning run, same n and t, same roster), the index is the one the roster
//! gives that very peer, and the index is free; it is *formed* once at least `2t + 1` distinct
//! indices (ours included, when this node is a party) are present. Anything else is a
//! [`QuorumConflict`]: the first peer to claim an index keeps it, and the conflict is reported
//! rather than resolved by guessing, because two devices with the same index mean a
//! provisioning mistake an operator must fix. An observer (a client) has no share file: it
//! takes the roster from the first announcement whose roster hashes to the summary's
//! `roster_sha256`, and from then on checks peers like a party does.
//!
//! Pure bookkeeping: no I/O, driven by the event loop.

use std::collections::BTreeMap;
use std::fmt;

use libp2p::PeerId;
use mesh::PartyId;
use serde::{Deserialize, Serialize};

use crate::roster::Roster;

/// The part of a share-file header that every party of one quorum must agree on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShareSummary {
    /// sha256 of the plaintext checkpoint the shares were made from.
    pub model_sha256: [u8; 32],
    /// Random id of the provisioning run (shares of two runs never combine).
    pub provisioning_id: [u8; 16],
    /// Number of parties.
    pub n: u8,
    /// Threshold: up to `t` colluding parties learn nothing.
    pub t: u8,
    /// sha256 of the provisioning's roster ([`Roster::sha256`]): parties agreeing on a summary
    /// agree on which device holds which index.
    pub roster_sha256: [u8; 32],
}

impl ShareSummary {
    /// Distinct parties needed to compute: `2t + 1`.
    pub fn required(&self) -> usize {
        2 * usize::from(self.t) + 1
    }

    /// Checks `n >= 2t + 1` (and `n >= 1`) and that `n` is within the engine's limit.
    pub fn validate(&self) -> Result<(), QuorumConfigError> {
        if usize::from(self.n) > mesh::shamir::MAX_PARTIES {
            return Err(QuorumConfigError::TooManyParties {
                n: self.n,
                max: mesh::shamir::MAX_PARTIES,
            });
        }
        if usize::from(self.n) < self.required() {
            return Err(QuorumConfigError::Threshold {
                n: self.n,
                t: self.t,
            });
        }
        Ok(())
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

impl fmt::Display for ShareSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "model {}.. provisioning {}.. roster {}.. n={} t={}",
            hex_prefix(&self.model_sha256),
            hex_prefix(&self.provisioning_id),
            hex_prefix(&self.roster_sha256),
            self.n,
            self.t
        )
    }
}

/// What a party tells every peer it connects to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Announcement {
    /// Its party (on the wire its 1-based number, the Shamir evaluation point of its share
    /// file).
    pub party: PartyId,
    /// Its share-file header summary.
    pub summary: ShareSummary,
    /// The roster of its share file, so that an observer can learn which device holds which
    /// index (checked against `summary.roster_sha256`).
    pub roster: Roster,
}

/// A local configuration that can never form a quorum.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuorumConfigError {
    /// `n < 2t + 1`.
    #[error("n={n} parties cannot tolerate t={t}: Sotto needs n >= 2t+1; re-provision")]
    Threshold {
        /// Parties.
        n: u8,
        /// Threshold.
        t: u8,
    },
    /// More parties than the MPC engine supports.
    #[error("n={n} parties is more than the {max} Sotto supports; re-provision with fewer")]
    TooManyParties {
        /// Parties.
        n: u8,
        /// The engine's limit.
        max: usize,
    },
    /// This node's party index is not in `1..=n`.
    #[error("this node's party index {party} is outside 1..={n}; check the share file")]
    LocalParty {
        /// Configured index.
        party: PartyId,
        /// Parties.
        n: u8,
    },
    /// A party node without a roster, or with one that is not its summary's.
    #[error(
        "this node's roster ({len} devices) does not match its share summary (n={n}, roster {expected}..): pass the roster of the share file the summary was made from"
    )]
    Roster {
        /// Entries in the given roster (0: none given).
        len: usize,
        /// Parties.
        n: u8,
        /// Start of the summary's roster hash.
        expected: String,
    },
}

/// An announcement that was not counted, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuorumConflict {
    /// Two peers claim the same party index.
    #[error(
        "peer {peer} announced party {party}, already held by peer {holder}: two devices carry the same share file; give each device its own"
    )]
    DuplicateParty {
        /// The index.
        party: PartyId,
        /// Who announced it first (and keeps it).
        holder: PeerId,
        /// Who announced it second (not counted).
        peer: PeerId,
    },
    /// A peer claims this node's own party index.
    #[error(
        "peer {peer} announced party {party}, which is this node's own index: two devices carry the same share file; give each device its own"
    )]
    DuplicateLocalParty {
        /// The index.
        party: PartyId,
        /// The peer.
        peer: PeerId,
    },
    /// A peer holds shares of another model or another provisioning run.
    #[error(
        "peer {peer} (party {party}) holds shares of another provisioning ({announced}; expected {expected}): re-provision it or remove it from the allow-list"
    )]
    OtherProvisioning {
        /// The peer.
        peer: PeerId,
        /// Index it announced.
        party: PartyId,
        /// Our summary.
        expected: ShareSummary,
        /// Its summary.
        announced: ShareSummary,
    },
    /// A peer's index is outside `1..=n`.
    #[error("peer {peer} announced party {party}, outside 1..={n}")]
    PartyOutOfRange {
        /// The peer.
        peer: PeerId,
        /// Its index.
        party: PartyId,
        /// Parties.
        n: u8,
    },
    /// A peer claims an index the roster gives another device: a client or a stray device
    /// trying to take a party's place.
    #[error(
        "peer {peer} announced party {party}, which is provisioned to device {device}: refused (only the device named in the share files' roster may hold a party index)"
    )]
    NotRosterPeer {
        /// The claimant (not counted).
        peer: PeerId,
        /// The index it claimed.
        party: PartyId,
        /// The device the roster gives that index.
        device: PeerId,
    },
    /// A peer announced a roster that does not hash to the summary it announced.
    #[error(
        "peer {peer} (party {party}) announced a roster that does not match its share summary: refused; re-provision it from the same `sotto provision` run"
    )]
    RosterMismatch {
        /// The peer.
        peer: PeerId,
        /// Index it announced.
        party: PartyId,
    },
    /// A connected peer announced something different from its earlier announcement.
    #[error("peer {peer} changed its announcement from party {old} to party {new} while connected")]
    Reannounced {
        /// The peer.
        peer: PeerId,
        /// Index it held.
        old: PartyId,
        /// Index it now claims (not counted).
        new: PartyId,
    },
}

/// A copy of the quorum's state at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumView {
    /// The summary every member agrees on.
    pub summary: ShareSummary,
    /// This node's own index, if it is a party.
    pub local_party: Option<PartyId>,
    /// Connected peers by party index (this node is not in it).
    pub peers: BTreeMap<PartyId, PeerId>,
    /// Whether at least `2t + 1` distinct indices are present.
    pub formed: bool,
}

impl QuorumView {
    /// All party indices present, this node's included.
    pub fn parties(&self) -> Vec<PartyId> {
        let mut all: Vec<PartyId> = self.peers.keys().copied().chain(self.local_party).collect();
        all.sort_unstable();
        all
    }
}

/// The live quorum view of one node.
#[derive(Clone, Debug)]
pub struct Quorum {
    summary: ShareSummary,
    local_party: Option<PartyId>,
    /// Which device holds which index; `None` only for an observer that has not seen an
    /// announcement carrying the summary's roster yet.
    roster: Option<Roster>,
    by_party: BTreeMap<PartyId, PeerId>,
    by_peer: BTreeMap<PeerId, PartyId>,
}

impl Quorum {
    /// An empty view for a node holding `summary` as party `local_party` (`None`: an observer,
    /// such as the client, which counts only peers). A party must pass its share file's
    /// `roster`; an observer may pass `None` and learns it from the announcements.
    pub fn new(
        summary: ShareSummary,
        local_party: Option<PartyId>,
        roster: Option<Roster>,
    ) -> Result<Self, QuorumConfigError> {
        summary.validate()?;
        if let Some(party) = local_party {
            if party.number() > summary.n {
                return Err(QuorumConfigError::LocalParty {
                    party,
                    n: summary.n,
                });
            }
        }
        let fits =
            |r: &Roster| r.len() == usize::from(summary.n) && r.sha256() == summary.roster_sha256;
        if (local_party.is_some() || roster.is_some()) && !roster.as_ref().is_some_and(fits) {
            return Err(QuorumConfigError::Roster {
                len: roster.as_ref().map_or(0, Roster::len),
                n: summary.n,
                expected: hex_prefix(&summary.roster_sha256),
            });
        }
        Ok(Quorum {
            summary,
            local_party,
            roster,
            by_party: BTreeMap::new(),
            by_peer: BTreeMap::new(),
        })
    }

    /// This node's announcement (`None` for an observer).
    pub fn local_announcement(&self) -> Option<Announcement> {
        let roster = self.roster.clone()?;
        self.local_party.map(|party| Announcement {
            party,
            summary: self.summary,
            roster,
        })
    }

    /// The roster in force (`None`: an observer that has not learned it yet).
    pub fn roster(&self) -> Option<&Roster> {
        self.roster.as_ref()
    }

    /// The roster check: the announced roster must be the summary's, and the index must be
    /// the one it gives `peer`. An observer adopts the first roster that matches its summary.
    #[allow(clippy::result_large_err)]
    fn check_roster(&mut self, peer: PeerId, ann: &Announcement) -> Result<(), QuorumConflict> {
        let party = ann.party;
        if ann.roster.len() != usize::from(self.summary.n)
            || ann.roster.sha256() != self.summary.roster_sha256
        {
            return Err(QuorumConflict::RosterMismatch { peer, party });
        }
        let roster = self.roster.get_or_insert_with(|| ann.roster.clone());
        match roster.peer_of(party) {
            Some(device) if device == peer => Ok(()),
            Some(device) => Err(QuorumConflict::NotRosterPeer {
                peer,
                party,
                device,
            }),
            None => Err(QuorumConflict::PartyOutOfRange {
                peer,
                party,
                n: self.summary.n,
            }),
        }
    }

    /// Records a connected peer's announcement. `Ok(true)` if it joined, `Ok(false)` if it
    /// repeated what it had already announced.
    // Conflicts are rare and off the hot path; boxing them would only make matching clumsier.
    #[allow(clippy::result_large_err)]
    pub fn observe(&mut self, peer: PeerId, ann: &Announcement) -> Result<bool, QuorumConflict> {
        let party = ann.party;
        if ann.summary != self.summary {
            return Err(QuorumConflict::OtherProvisioning {
                peer,
                party,
                expected: self.summary,
                announced: ann.summary,
            });
        }
        if party.number() > self.summary.n {
            return Err(QuorumConflict::PartyOutOfRange {
                peer,
                party,
                n: self.summary.n,
            });
        }
        if let Some(&old) = self.by_peer.get(&peer) {
            if old == party {
                return Ok(false);
            }
            return Err(QuorumConflict::Reannounced {
                peer,
                old,
                new: party,
            });
        }
        self.check_roster(peer, ann)?;
        if self.local_party == Some(party) {
            return Err(QuorumConflict::DuplicateLocalParty { party, peer });
        }
        if let Some(&holder) = self.by_party.get(&party) {
            return Err(QuorumConflict::DuplicateParty {
                party,
                holder,
                peer,
            });
        }
        self.by_party.insert(party, peer);
        self.by_peer.insert(peer, party);
        Ok(true)
    }

    /// Forgets a disconnected peer; returns the index it held.
    pub fn remove(&mut self, peer: &PeerId) -> Option<PartyId> {
        let party = self.by_peer.remove(peer)?;
        self.by_party.remove(&party);
        Some(party)
    }

    /// Whether at least `2t + 1` distinct indices are present.
    pub fn is_formed(&self) -> bool {
        self.by_party.len() + usize::from(self.local_party.is_some()) >= self.summary.required()
    }

    /// The index a peer holds.
    pub fn party_of(&self, peer: &PeerId) -> Option<PartyId> {
        self.by_peer.get(peer).copied()
    }

    /// The peer holding an index.
    pub fn peer_of(&self, party: PartyId) -> Option<PeerId> {
        self.by_party.get(&party).copied()
    }

    /// The summary this node holds.
    pub fn summary(&self) -> ShareSummary {
        self.summary
    }

    /// A copy of the current state.
    pub fn view(&self) -> QuorumView {
        QuorumView {
            summary: self.summary,
            local_party: self.local_party,
            peers: self.by_party.clone(),
            formed: self.is_formed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The device of party `number` (1-based); index 0 is the "client".
    fn device(number: u8) -> PeerId {
        libp2p::identity::Keypair::ed25519_from_bytes([number + 1; 32])
            .unwrap()
            .public()
            .to_peer_id()
    }

    fn client() -> PeerId {
        device(0)
    }

    fn roster() -> Roster {
        Roster::new((1..=3).map(device).collect()).unwrap()
    }

    fn summary() -> ShareSummary {
        ShareSummary {
            model_sha256: [1; 32],
            provisioning_id: [2; 16],
            n: 3,
            t: 1,
            roster_sha256: roster().sha256(),
        }
    }

    fn p(number: u8) -> PartyId {
        PartyId::from_number(number).unwrap()
    }

    fn ann(party: u8) -> Announcement {
        Announcement {
            party: p(party),
            summary: summary(),
            roster: roster(),
        }
    }

    fn party_quorum() -> Quorum {
        Quorum::new(summary(), Some(p(1)), Some(roster())).unwrap()
    }

    #[test]
    fn forms_with_two_t_plus_one_distinct_indices() {
        let mut q = party_quorum();
        let (a, b) = (device(2), device(3));
        assert!(!q.is_formed());
        assert_eq!(q.observe(a, &ann(2)), Ok(true));
        assert!(!q.is_formed());
        assert_eq!(q.observe(a, &ann(2)), Ok(false));
        assert_eq!(q.observe(b, &ann(3)), Ok(true));
        assert!(q.is_formed());
        assert_eq!(q.view().parties(), [p(1), p(2), p(3)]);
        assert_eq!(q.peer_of(p(3)), Some(b));
        assert_eq!(q.remove(&b), Some(p(3)));
        assert!(!q.is_formed());
    }

    #[test]
    fn observer_learns_the_roster_and_needs_all_from_peers() {
        let mut q = Quorum::new(summary(), None, None).unwrap();
        assert_eq!(q.roster(), None);
        for p in 1..=3 {
            q.observe(device(p), &ann(p)).unwrap();
        }
        assert!(q.is_formed());
        assert_eq!(q.roster(), Some(&roster()));
        assert_eq!(q.local_announcement(), None);
    }

    #[test]
    fn a_peer_outside_the_roster_never_takes_a_free_index() {
        // Party 3 is rebooting: its index is free, and an allow-listed client claims it.
        let mut q = party_quorum();
        q.observe(device(2), &ann(2)).unwrap();
        let err = q.observe(client(), &ann(3)).unwrap_err();
        assert_eq!(
            err,
            QuorumConflict::NotRosterPeer {
                peer: client(),
                party: p(3),
                device: device(3),
            }
        );
        let text = err.to_string();
        assert!(
            text.contains(&device(3).to_string()) && text.contains("refused"),
            "{text}"
        );
        // A device of the roster cannot take another device's index either.
        let mut fresh = party_quorum();
        assert!(matches!(
            fresh.observe(device(3), &ann(2)),
            Err(QuorumConflict::NotRosterPeer { .. })
        ));
        assert_eq!(q.peer_of(p(3)), None);
        assert!(!q.is_formed());
        // The real device still gets its index back.
        assert_eq!(q.observe(device(3), &ann(3)), Ok(true));
    }

    #[test]
    fn an_observer_refuses_a_client_on_any_index() {
        let mut q = Quorum::new(summary(), None, None).unwrap();
        for party in 1..=3 {
            assert!(matches!(
                q.observe(client(), &ann(party)),
                Err(QuorumConflict::NotRosterPeer { .. })
            ));
        }
        assert!(q.view().peers.is_empty());
    }

    #[test]
    fn a_roster_that_does_not_match_the_summary_is_refused() {
        let mut forged = ann(3);
        forged.roster = Roster::new(vec![device(1), device(2), client()]).unwrap();
        for mut q in [party_quorum(), Quorum::new(summary(), None, None).unwrap()] {
            assert!(matches!(
                q.observe(client(), &forged),
                Err(QuorumConflict::RosterMismatch { .. })
            ));
            assert!(q.view().peers.is_empty());
        }
        assert!(matches!(
            Quorum::new(summary(), Some(p(1)), None),
            Err(QuorumConfigError::Roster { len: 0, n: 3, .. })
        ));
        assert!(matches!(
            Quorum::new(summary(), Some(p(1)), Some(forged.roster)),
            Err(QuorumConfigError::Roster { len: 3, .. })
        ));
    }

    #[test]
    fn conflicts_are_typed_and_not_counted() {
        let mut q = party_quorum();
        let (a, c) = (device(2), device(3));
        q.observe(a, &ann(2)).unwrap();
        assert!(matches!(
            q.observe(c, &ann(4)),
            Err(QuorumConflict::PartyOutOfRange { party, n: 3, .. }) if party == p(4)
        ));
        assert!(matches!(
            q.observe(a, &ann(3)),
            Err(QuorumConflict::Reannounced { old, new, .. }) if (old, new) == (p(2), p(3))
        ));
        let mut other = ann(3);
        other.summary.model_sha256 = [9; 32];
        let err = q.observe(c, &other).unwrap_err();
        assert!(matches!(err, QuorumConflict::OtherProvisioning { .. }));
        assert!(err.to_string().contains("re-provision"));
        assert_eq!(q.view().peers.len(), 1);
        assert!(!q.is_formed());
    }

    #[test]
    fn impossible_configurations_are_refused() {
        let mut s = summary();
        s.n = 2;
        assert!(matches!(
            Quorum::new(s, Some(p(1)), Some(roster())),
            Err(QuorumConfigError::Threshold { n: 2, t: 1 })
        ));
        assert!(matches!(
            Quorum::new(summary(), Some(p(4)), Some(roster())),
            Err(QuorumConfigError::LocalParty { party, n: 3 }) if party == p(4)
        ));
        let mut big = summary();
        big.n = 65;
        assert!(matches!(
            Quorum::new(big, None, None),
            Err(QuorumConfigError::TooManyParties { n: 65, max: 64 })
        ));
    }
}
