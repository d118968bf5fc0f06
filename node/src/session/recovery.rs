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
}
