//! A party checks the live set of every resume order against the session it is for: a
//! client may not name parties outside the quorum, parties that never took part, the same
//! party twice, or too few parties to compute (party 0 never even decodes: see the wire tests).

mod common;

use std::time::Duration;

use common::{load_model, party_models};
use mesh::{PartyId, Threshold};
use node::memory::MemMesh;
use node::server::ServerSettings;
use node::session::ClientIo;
use node::session::wire::{Control, Reply};
use node::session::{Generation, Selection, SessionRequest};

fn p(number: u8) -> PartyId {
    PartyId::from_number(number).unwrap()
}

#[test]
fn a_resume_naming_parties_outside_the_session_is_refused() {
    let model = load_model();
    // Four parties, three of them in the session: party 4 is a valid index but no participant.
    let parties = party_models(&model, 4, 1, 11);
    let th = Threshold::new(4, 1).unwrap();
    let settings = ServerSettings {
        round_timeout: Duration::from_secs(30),
        recovery_timeout: Duration::from_secs(30),
        max_sessions: 1,
        profile: "test".into(),
    };
    let mesh = MemMesh::new(&parties, th, &settings).expect("mesh");
    let h = parties[0].header();
    let key = [0x42; 16];
    let request = SessionRequest {
        key,
        generation: Generation {
            prompt_len: 1,
            steps: 1,
            selection: Selection::ArgmaxInMpc,
            reveal_logits: false,
        },
        participants: vec![p(1), p(2), p(3)],
        model_sha256: h.model_sha256,
        provisioning_id: h.provisioning_id,
    };
    let opened = mesh.client.control(p(1), &Control::Open(request)).unwrap();
    assert!(matches!(opened, Reply::Accepted), "{opened:?}");
    for (live, expected) in [
        (vec![1, 2, 9], "outside the 4-party quorum"),
        (vec![1, 2, 4], "not a participant"),
        (vec![1, 1, 2, 3], "repeats or misorders party 1"),
        (vec![3, 2, 1], "repeats or misorders party 2"),
        (vec![1, 2], "needs at least 3"),
    ] {
        let resume = Control::Resume {
            key,
            epoch: 1,
            live: live.iter().map(|&n| p(n)).collect(),
            redo: 0,
        };
        match mesh.client.control(p(1), &resume).unwrap() {
            Reply::Rejected(why) => assert!(why.contains(expected), "{live:?}: {why}"),
            other => panic!("live set {live:?} accepted: {other:?}"),
        }
    }
    let abort = Control::Abort {
        key,
        reason: "test over".into(),
    };
    assert!(matches!(
        mesh.client.control(p(1), &abort).unwrap(),
        Reply::Ok
    ));
}
