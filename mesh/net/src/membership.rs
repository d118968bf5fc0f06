//! Who is in the mesh: every connected peer's announcement, the [`Quorum`] view built from
//! them, and the observers (clients, which announce no party). Turns announcements and
//! departures into the [`NetEvent`]s to broadcast.
//!
//! Plain bookkeeping, no I/O: the event loop feeds it what the swarm reports.

use std::collections::{HashMap, HashSet};

use libp2p::PeerId;
use mesh::PartyId;
use tracing::{debug, info, warn};

use crate::api::NetEvent;
use crate::config::ConfigError;
use crate::error::NetError;
use crate::quorum::{Announcement, Quorum, QuorumConflict, QuorumView, ShareSummary};

/// What a peer's departure changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Departure {
    /// The party it held in the quorum view.
    pub(crate) party: Option<PartyId>,
    /// Whether it was an observer (a client).
    pub(crate) observer: bool,
    /// The view, when the quorum fell below 2t+1 with it.
    pub(crate) quorum_lost: Option<QuorumView>,
}

/// The announcements and the quorum view of one node.
pub(crate) struct Membership {
    quorum: Quorum,
    /// Connected peers that announced no party index (clients).
    observers: HashSet<PeerId>,
    /// Every connected peer's last announcement, accepted or not (an observer may adopt
    /// another summary later).
    announced: HashMap<PeerId, Announcement>,
    /// An observer that will adopt the summary most parties announce.
    learning: bool,
}

impl Membership {
    pub(crate) fn new(quorum: Quorum, learning: bool) -> Membership {
        Membership {
            quorum,
            observers: HashSet::new(),
            announced: HashMap::new(),
            learning,
        }
    }

    pub(crate) fn view(&self) -> QuorumView {
        self.quorum.view()
    }

    /// What this node announces (`None` for an observer).
    pub(crate) fn local_announcement(&self) -> Option<Announcement> {
        self.quorum.local_announcement()
    }

    pub(crate) fn party_of(&self, peer: &PeerId) -> Option<PartyId> {
        self.quorum.party_of(peer)
    }

    pub(crate) fn peer_of(&self, party: PartyId) -> Option<PeerId> {
        self.quorum.peer_of(party)
    }

    pub(crate) fn is_observer(&self, peer: &PeerId) -> bool {
        self.observers.contains(peer)
    }

    /// Every connected peer's announcement, by party then peer.
    pub(crate) fn announcements(&self) -> Vec<(PeerId, Announcement)> {
        let mut all: Vec<(PeerId, Announcement)> = self
            .announced
            .iter()
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        all.sort_by_key(|(p, a)| (a.party, *p));
        all
    }

    /// A connected peer's announcement (`None`: it is an observer); returns the events to
    /// broadcast.
    pub(crate) fn record(
        &mut self,
        peer: PeerId,
        announcement: Option<Announcement>,
    ) -> Vec<NetEvent> {
        let Some(announcement) = announcement else {
            if self.observers.insert(peer) {
                debug!(%peer, "peer is an observer (a client)");
            }
            return Vec::new();
        };
        self.announced.insert(peer, announcement.clone());
        let was_formed = self.quorum.is_formed();
        match self.quorum.observe(peer, &announcement) {
            Ok(true) => {
                info!(%peer, party = %announcement.party, "peer joined the quorum view");
                let mut events = vec![NetEvent::Announced { peer, announcement }];
                if !was_formed && self.quorum.is_formed() {
                    let view = self.quorum.view();
                    info!(parties = ?view.parties(), "quorum formed");
                    events.push(NetEvent::QuorumFormed(view));
                }
                events
            }
            Ok(false) => Vec::new(),
            // An observer that has not adopted the quorum's summary yet expects these.
            Err(conflict @ QuorumConflict::OtherProvisioning { .. }) if self.learning => {
                debug!(%conflict, "announcement not counted (summary not adopted yet)");
                vec![NetEvent::Conflict(conflict)]
            }
            Err(conflict) => {
                warn!(%conflict, "announcement not accepted");
                vec![NetEvent::Conflict(conflict)]
            }
        }
    }

    /// The last connection to `peer` closed.
    pub(crate) fn gone(&mut self, peer: PeerId) -> Departure {
        self.announced.remove(&peer);
        let observer = self.observers.remove(&peer);
        let was_formed = self.quorum.is_formed();
        let party = self.quorum.remove(&peer);
        if let Some(party) = party {
            info!(%peer, %party, "party left the quorum view");
        }
        let quorum_lost = (was_formed && !self.quorum.is_formed()).then(|| {
            let view = self.quorum.view();
            warn!(parties = ?view.parties(), "quorum lost");
            view
        });
        Departure {
            party,
            observer,
            quorum_lost,
        }
    }

    /// An observer switches to another share summary and counts the connected peers that
    /// announced it; returns the new view and, if that formed the quorum, the event.
    pub(crate) fn adopt_summary(
        &mut self,
        summary: ShareSummary,
    ) -> Result<(QuorumView, Option<NetEvent>), NetError> {
        if self.quorum.local_announcement().is_some() {
            return Err(NetError::NotAnObserver);
        }
        if summary == self.quorum.summary() {
            return Ok((self.quorum.view(), None));
        }
        let was_formed = self.quorum.is_formed();
        // The roster comes with the announcements: the first that hashes to the adopted
        // summary's `roster_sha256` sets it.
        self.quorum = Quorum::new(summary, None, None).map_err(ConfigError::from)?;
        self.learning = false;
        for (peer, ann) in self.announcements() {
            if let Err(conflict) = self.quorum.observe(peer, &ann) {
                debug!(%conflict, "announcement not counted under the adopted summary");
            }
        }
        let view = self.quorum.view();
        info!(%summary, parties = ?view.parties(), "adopted share summary");
        let formed = (view.formed && !was_formed).then(|| NetEvent::QuorumFormed(view.clone()));
        Ok((view, formed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roster::Roster;

    /// The device of party `number`; 0 is a client.
    fn device(number: u8) -> PeerId {
        libp2p::identity::Keypair::ed25519_from_bytes([number + 1; 32])
            .unwrap()
            .public()
            .to_peer_id()
    }

    fn roster() -> Roster {
        Roster::new((1..=3).map(device).collect()).unwrap()
    }

    fn summary(provisioning: u8) -> ShareSummary {
        ShareSummary {
            model_sha256: [1; 32],
            provisioning_id: [provisioning; 16],
            n: 3,
            t: 1,
            roster_sha256: roster().sha256(),
        }
    }

    fn ann(party: u8, provisioning: u8) -> Option<Announcement> {
        Some(Announcement {
            party: PartyId::from_number(party).unwrap(),
            summary: summary(provisioning),
            roster: roster(),
        })
    }

    fn party_one(provisioning: u8) -> Membership {
        Membership::new(
            Quorum::new(
                summary(provisioning),
                PartyId::from_number(1).ok(),
                Some(roster()),
            )
            .unwrap(),
            false,
        )
    }

    fn numbers(view: &QuorumView) -> Vec<u8> {
        view.parties().into_iter().map(PartyId::number).collect()
    }

    fn names(events: &[NetEvent]) -> Vec<&'static str> {
        events
            .iter()
            .map(|e| match e {
                NetEvent::Announced { .. } => "announced",
                NetEvent::QuorumFormed(_) => "formed",
                NetEvent::Conflict(_) => "conflict",
                _ => "other",
            })
            .collect()
    }

    #[test]
    fn the_quorum_forms_and_is_lost_with_its_parties() {
        let mut m = party_one(2);
        let (a, b, client) = (device(2), device(3), device(0));
        assert_eq!(names(&m.record(a, ann(2, 2))), ["announced"]);
        assert!(m.record(a, ann(2, 2)).is_empty(), "a repeat says nothing");
        assert_eq!(names(&m.record(b, ann(3, 2))), ["announced", "formed"]);
        assert!(m.record(client, None).is_empty());
        assert!(m.is_observer(&client));
        let third = PartyId::from_number(3).unwrap();
        assert_eq!((m.party_of(&b), m.peer_of(third)), (Some(third), Some(b)));

        assert_eq!(
            m.gone(client),
            Departure {
                observer: true,
                ..Departure::default()
            }
        );
        let lost = m.gone(b);
        assert_eq!(lost.party, Some(third));
        assert_eq!(lost.quorum_lost.map(|v| numbers(&v)), Some(vec![1, 2]));
        assert_eq!(m.gone(a).quorum_lost, None, "lost once");
        assert!(m.announcements().is_empty());
    }

    #[test]
    fn conflicts_are_reported_and_not_counted() {
        let mut m = party_one(2);
        let (a, b) = (device(2), device(3));
        m.record(a, ann(2, 2));
        assert_eq!(names(&m.record(b, ann(2, 2))), ["conflict"]);
        assert_eq!(names(&m.record(b, ann(3, 9))), ["conflict"]);
        assert_eq!(numbers(&m.view()), vec![1, 2]);
        assert_eq!(m.announcements().len(), 2, "kept, though not counted");
    }

    #[test]
    fn an_observer_adopts_the_summary_its_peers_announced() {
        let mut m = Membership::new(Quorum::new(summary(0), None, None).unwrap(), true);
        let peers: Vec<PeerId> = (1..=3).map(device).collect();
        for (party, peer) in (1..=3).zip(&peers) {
            assert_eq!(names(&m.record(*peer, ann(party, 5))), ["conflict"]);
        }
        assert!(!m.view().formed);
        let (view, event) = m.adopt_summary(summary(5)).unwrap();
        assert_eq!(numbers(&view), vec![1, 2, 3]);
        assert!(matches!(event, Some(NetEvent::QuorumFormed(_))));
        let (_, again) = m.adopt_summary(summary(5)).unwrap();
        assert!(again.is_none());

        let mut party = party_one(5);
        assert!(matches!(
            party.adopt_summary(summary(6)),
            Err(NetError::NotAnObserver)
        ));
    }
}
