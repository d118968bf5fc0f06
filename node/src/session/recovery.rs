//! The recovery decision, as pure functions: what the client noticed and what the parties
//! reported go in, a [`Directive`] comes out. No sockets, no clocks: the client session
//! ([`super::client`]) carries directives out, and the unit tests below cover every one.
//!
//! The rule (see `docs/session.md`): after a failure the client pauses every live party; the
//! parties that answer with a clean stop are the survivors; if at least `2t + 1` of them can
//! redo the earliest unit any of them is in, they resume together in the next epoch from that
//! unit; otherwise the generation fails with the reason.

use mesh::{PartyId, Threshold};

use super::io::Failure;
use super::wire::Report;

/// Recoveries one generation may go through before the client gives up.
pub const MAX_RECOVERIES: u32 = 8;

/// Where the client's session stands when something goes wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionState {
    /// The quorum's `(n, t)`.
    pub th: Threshold,
    /// The current epoch.
    pub epoch: u32,
    /// The unit whose output the client waits for.
    pub unit: u32,
    /// The parties of the current epoch.
    pub live: Vec<PartyId>,
    /// Recoveries so far (including the one being decided).
    pub recoveries: u32,
}

/// How a party answered a pause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PauseAnswer {
    /// Its report.
    Report(Report),
    /// No usable answer (timed out, unreachable, garbled), and why.
    Silent(String),
}

/// What the client does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Directive {
    /// Nothing to recover from: go on waiting.
    Continue,
    /// Pause every live party and collect their reports.
    Pause,
    /// Resume the survivors in `epoch` from unit `redo`.
    Resume {
        /// The next epoch.
        epoch: u32,
        /// The survivors, sorted; the first `2t + 1` are active.
        live: Vec<PartyId>,
        /// The unit every survivor rolls back to.
        redo: u32,
    },
    /// Give up, for this reason.
    Fail(String),
}

/// What to do about a failure the client noticed.
pub fn after_failure(state: &SessionState, failure: &Failure) -> Directive {
    let relevant = match failure {
        // A report from an earlier epoch was already dealt with by the recovery that ended it.
        Failure::Stalled { epoch, .. } => *epoch == state.epoch,
        // A party that is no longer live has no part in the session.
        Failure::Disconnected(p) => state.live.contains(p),
    };
    if !relevant {
        Directive::Continue
    } else if state.recoveries >= MAX_RECOVERIES {
        Directive::Fail(format!(
            "the generation stalled {MAX_RECOVERIES} times; giving up"
        ))
    } else {
        Directive::Pause
    }
}

/// What to do once the live parties have answered a pause.
pub fn after_pause(state: &SessionState, answers: &[(PartyId, PauseAnswer)]) -> Directive {
    let needed = 2 * state.th.t() + 1;
    let survivors: Vec<&Report> = answers
        .iter()
        .filter_map(|(_, a)| match a {
            PauseAnswer::Report(r) if r.stopped && r.fatal.is_none() => Some(r),
            _ => None,
        })
        .collect();
    let redo = survivors.iter().map(|r| r.at).min().unwrap_or(state.unit);
    let mut live: Vec<PartyId> = survivors
        .iter()
        .filter(|r| r.oldest <= redo)
        .map(|r| r.party)
        .collect();
    live.sort_unstable();
    live.dedup();
    if live.len() >= needed {
        return Directive::Resume {
            epoch: state.epoch + 1,
            live,
            redo,
        };
    }
    let mut msg = format!(
        "the quorum was lost at token position {}: only parties {live:?} can continue, a (n={}, t={}) mesh needs {needed}",
        state.unit,
        state.th.n(),
        state.th.t()
    );
    let fatal: Vec<String> = answers
        .iter()
        .filter_map(|(p, a)| match a {
            PauseAnswer::Report(Report { fatal: Some(f), .. }) => Some(format!("party {p}: {f}")),
            _ => None,
        })
        .collect();
    if !fatal.is_empty() {
        msg.push_str(&format!("; {}", fatal.join("; ")));
    }
    Directive::Fail(msg)
}

/// Why a party refuses the live set of a resume order: each says what was wrong and what a
/// correct client sends instead. Checked on receipt, before the order reaches the session.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// A party number beyond the quorum (party 0 never decodes: see [`PartyId`]).
    #[error(
        "party {party} in the live set is outside the {n}-party quorum: name parties 1..={n} only"
    )]
    OutOfRange {
        /// The party named.
        party: PartyId,
        /// The quorum's size.
        n: usize,
    },
    /// A party that was never a participant of the session.
    #[error(
        "party {party} in the live set is not a participant of this session ({participants:?}): resume with participants only"
    )]
    NotParticipant {
        /// The party named.
        party: PartyId,
        /// The session's participants.
        participants: Vec<PartyId>,
    },
    /// A party named twice, or the set out of order.
    #[error(
        "the live set {live:?} repeats or misorders party {party}: send distinct parties in increasing order"
    )]
    NotSorted {
        /// The first party out of place.
        party: PartyId,
        /// The set as received.
        live: Vec<PartyId>,
    },
    /// Fewer parties than a quorum needs to go on.
    #[error(
        "the live set has {got} parties, a (n={n}, t={t}) quorum needs at least {need} to go on"
    )]
    TooFew {
        /// Parties named.
        got: usize,
        /// Parties needed (`2t + 1`).
        need: usize,
        /// The quorum's size.
        n: usize,
        /// Its threshold.
        t: usize,
    },
}

/// Checks a resume order's live set against the session it is for: distinct parties in
/// increasing order, each in range and a participant, at least `2t + 1` of them. A party never
/// trusts a client's live set: an index outside the session would address a party that holds
/// none of its state, and a short set could not compute anything.
pub fn check_live(
    live: &[PartyId],
    participants: &[PartyId],
    th: Threshold,
) -> Result<(), LiveError> {
    let (n, t) = (th.n(), th.t());
    for (i, &party) in live.iter().enumerate() {
        if party.index() >= n {
            return Err(LiveError::OutOfRange { party, n });
        }
        if i > 0 && live[i - 1] >= party {
            return Err(LiveError::NotSorted {
                party,
                live: live.to_vec(),
            });
        }
        if !participants.contains(&party) {
            return Err(LiveError::NotParticipant {
                party,
                participants: participants.to_vec(),
            });
        }
    }
    let need = 2 * t + 1;
    if live.len() < need {
        return Err(LiveError::TooFew {
            got: live.len(),
            need,
            n,
            t,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u8) -> PartyId {
        PartyId::from_number(n).unwrap()
    }

    fn state(n: usize, t: usize, live: &[u8], unit: u32) -> SessionState {
        SessionState {
            th: Threshold::new(n, t).unwrap(),
            epoch: 0,
            unit,
            live: live.iter().map(|&i| p(i)).collect(),
            recoveries: 1,
        }
    }

    fn stopped(party: u8, at: u32, oldest: u32) -> (PartyId, PauseAnswer) {
        (
            p(party),
            PauseAnswer::Report(Report {
                party: p(party),
                epoch: 0,
                at,
                oldest,
                stopped: true,
                fatal: None,
            }),
        )
    }

    fn silent(party: u8) -> (PartyId, PauseAnswer) {
        (p(party), PauseAnswer::Silent("timed out".into()))
    }

    #[test]
    fn stale_or_foreign_failures_continue() {
        let mut s = state(4, 1, &[1, 2, 3, 4], 7);
        s.epoch = 2;
        let old = Failure::Stalled {
            party: p(1),
            epoch: 1,
            reason: "x".into(),
        };
        assert_eq!(after_failure(&s, &old), Directive::Continue);
        s.live.retain(|&q| q != p(4));
        assert_eq!(
            after_failure(&s, &Failure::Disconnected(p(4))),
            Directive::Continue
        );
        assert_eq!(
            after_failure(&s, &Failure::Disconnected(p(2))),
            Directive::Pause
        );
    }

    #[test]
    fn too_many_recoveries_fail() {
        let mut s = state(3, 1, &[1, 2, 3], 7);
        s.recoveries = MAX_RECOVERIES;
        let f = Failure::Disconnected(p(1));
        assert!(matches!(after_failure(&s, &f), Directive::Fail(m) if m.contains("stalled")));
    }

    #[test]
    fn an_active_party_lost_mid_answer_is_replaced_by_the_stand_by() {
        let s = state(4, 1, &[1, 2, 3, 4], 9);
        let answers = [
            silent(1),
            stopped(2, 9, 0),
            stopped(3, 9, 0),
            stopped(4, 9, 0),
        ];
        assert_eq!(
            after_pause(&s, &answers),
            Directive::Resume {
                epoch: 1,
                live: vec![p(2), p(3), p(4)],
                redo: 9
            }
        );
    }

    #[test]
    fn a_party_lost_during_the_prompt_resumes_from_the_earliest_prompt_unit() {
        // Prompt of 5 units: survivors are in units 2 and 3; every prompt unit is a client
        // input, so each can redo from its start (oldest 0).
        let s = state(4, 1, &[1, 2, 3, 4], 4);
        let answers = [
            stopped(1, 3, 0),
            silent(2),
            stopped(3, 2, 0),
            stopped(4, 3, 0),
        ];
        assert_eq!(
            after_pause(&s, &answers),
            Directive::Resume {
                epoch: 1,
                live: vec![p(1), p(3), p(4)],
                redo: 2
            }
        );
    }

    #[test]
    fn a_lost_stand_by_leaves_the_active_set_as_it_was() {
        let s = state(4, 1, &[1, 2, 3, 4], 12);
        let answers = [
            stopped(1, 12, 0),
            stopped(2, 12, 0),
            stopped(3, 12, 0),
            silent(4),
        ];
        assert_eq!(
            after_pause(&s, &answers),
            Directive::Resume {
                epoch: 1,
                live: vec![p(1), p(2), p(3)],
                redo: 12
            }
        );
    }

    #[test]
    fn a_connected_party_that_does_not_stop_is_left_out() {
        let s = state(4, 1, &[1, 2, 3, 4], 12);
        let mut hung = stopped(2, 12, 0);
        if let PauseAnswer::Report(r) = &mut hung.1 {
            r.stopped = false;
        }
        let answers = [
            stopped(1, 12, 0),
            hung,
            stopped(3, 12, 0),
            stopped(4, 12, 0),
        ];
        assert_eq!(
            after_pause(&s, &answers),
            Directive::Resume {
                epoch: 1,
                live: vec![p(1), p(3), p(4)],
                redo: 12
            }
        );
    }

    #[test]
    fn a_party_that_cannot_redo_the_unit_is_left_out() {
        // Sampling at the client: party 4 has already dropped the checkpoint of unit 20.
        let s = state(5, 1, &[1, 2, 3, 4, 5], 30);
        let answers = [
            stopped(1, 20, 14),
            stopped(2, 30, 14),
            stopped(3, 30, 14),
            stopped(4, 30, 21),
            stopped(5, 30, 14),
        ];
        assert_eq!(
            after_pause(&s, &answers),
            Directive::Resume {
                epoch: 1,
                live: vec![p(1), p(2), p(3), p(5)],
                redo: 20
            }
        );
    }

    #[test]
    fn below_two_t_plus_one_survivors_the_generation_fails_with_the_reasons() {
        let s = state(3, 1, &[1, 2, 3], 6);
        let mut broken = stopped(3, 6, 0);
        if let PauseAnswer::Report(r) = &mut broken.1 {
            r.fatal = Some("share file gone".into());
        }
        let answers = [silent(1), stopped(2, 6, 0), broken];
        match after_pause(&s, &answers) {
            Directive::Fail(m) => {
                assert!(m.contains("only parties [2]"), "{m}");
                assert!(m.contains("needs 3"), "{m}");
                assert!(m.contains("party 3: share file gone"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    fn parties(numbers: &[u8]) -> Vec<PartyId> {
        numbers.iter().map(|&i| p(i)).collect()
    }

    #[test]
    fn a_live_set_must_be_distinct_sorted_participants_enough_for_a_quorum() {
        let th = Threshold::new(5, 1).unwrap();
        let participants = parties(&[1, 2, 3, 4]);
        let check = |live: &[u8]| check_live(&parties(live), &participants, th);
        assert_eq!(check(&[1, 2, 3]), Ok(()));
        assert_eq!(check(&[2, 3, 4]), Ok(()));
        assert_eq!(
            check(&[1, 2, 9]),
            Err(LiveError::OutOfRange { party: p(9), n: 5 })
        );
        assert!(matches!(
            check(&[1, 2, 5]),
            Err(LiveError::NotParticipant { party, .. }) if party == p(5)
        ));
        assert!(matches!(
            check(&[1, 2, 2, 3]),
            Err(LiveError::NotSorted { party, .. }) if party == p(2)
        ));
        assert!(matches!(
            check(&[3, 2, 1]),
            Err(LiveError::NotSorted { party, .. }) if party == p(2)
        ));
        assert!(matches!(
            check(&[1, 2]),
            Err(LiveError::TooFew {
                got: 2,
                need: 3,
                ..
            })
        ));
        assert!(matches!(check(&[]), Err(LiveError::TooFew { got: 0, .. })));
    }
}
