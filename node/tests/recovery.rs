//! Recovery end to end on a local libp2p mesh (real nodes on 127.0.0.1, the daemon's server,
//! `sotto ask`'s client), with second-scale deadlines: every path the recovery planner
//! decides has one run here, and the answer must stay the plaintext engine's.

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{device_keys, load_model, max_logit_error, party_models, plaintext};
use mesh::{PartyId, Threshold};
use mesh_net::LinkProfile;
use models::Sampler;
use node::demo::local::{Deadlines, LocalMesh};
use node::session::{Generated, Generation, Selection};

/// One mesh at a time: the nodes of parallel tests would share two cores and miss deadlines.
static SERIAL: Mutex<()> = Mutex::new(());

const DEADLINES: Deadlines = Deadlines {
    round: Duration::from_secs(2),
    recovery: Duration::from_secs(10),
    stall: Duration::from_secs(10),
};

fn party(n: u8) -> PartyId {
    PartyId::from_number(n).unwrap()
}

/// What to do to the mesh while it answers.
#[derive(Clone, Copy)]
enum Fault {
    None,
    /// Take a party down once the client has this many tokens.
    DownAfter(u8, usize),
    /// Take a party down this long after the session starts, before any token.
    DownInPrompt(u8, Duration),
    /// A party stops answering (stays connected) once the client has this many tokens.
    FreezeAfter(u8, usize),
}

struct Run {
    generated: Generated,
    plain: Vec<u32>,
    logit_error: f32,
}

fn run(n: usize, prompt: &str, steps: usize, selection: Selection, fault: Fault) -> Run {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let model = load_model();
    let th = Threshold::new(n, 1).unwrap();
    let parties = party_models(&model, n, 1, 9);
    let prompt = model.tokenizer.encode(prompt, true, false);
    let keys = device_keys(n);
    let mesh =
        LocalMesh::start(&parties, &keys, th, LinkProfile::Loopback, DEADLINES).expect("mesh");
    let generation = Generation {
        prompt_len: prompt.len() as u32,
        steps: steps as u32,
        selection,
        reveal_logits: true,
    };
    let tokens = AtomicUsize::new(0);
    let mut logits = Vec::new();
    let generated = std::thread::scope(|s| {
        if let Fault::DownInPrompt(p, after) = fault {
            let (mesh, tokens) = (&mesh, &tokens);
            s.spawn(move || {
                // Counted from the moment the victim runs the session: a fault before that
                // refuses the request instead of testing recovery.
                let limit = Instant::now() + Duration::from_secs(60);
                while mesh.sessions_running(party(p)) == 0 {
                    assert!(Instant::now() < limit, "the session never started");
                    std::thread::sleep(Duration::from_millis(5));
                }
                std::thread::sleep(after);
                assert_eq!(
                    tokens.load(Ordering::SeqCst),
                    0,
                    "the fault must hit the prompt"
                );
                mesh.take_down(party(p));
            });
        }
        mesh.generate(generation, &prompt, &mut Sampler::greedy(), |tok| {
            let seen = tokens.fetch_add(1, Ordering::SeqCst) + 1;
            logits.push(tok.logits.clone().expect("logits are revealed"));
            match fault {
                Fault::DownAfter(p, k) if k == seen => mesh.take_down(party(p)),
                Fault::FreezeAfter(p, k) if k == seen => mesh.freeze(party(p)),
                _ => {}
            }
        })
        .expect("the generation recovers")
    });
    mesh.shutdown();
    let (plain, plain_logits) = plaintext(&model, &prompt, steps);
    Run {
        logit_error: max_logit_error(&logits, &plain_logits),
        generated,
        plain,
    }
}

fn assert_recovered_without(r: &Run, lost: u8) {
    assert_eq!(
        r.generated.ids, r.plain,
        "the answer is the plaintext engine's"
    );
    assert!(
        r.logit_error < common::LOGIT_BOUND,
        "logit error {}",
        r.logit_error
    );
    assert!(r.generated.epochs >= 2, "a recovery opened a new epoch");
    assert!(!r.generated.final_live.contains(&party(lost)));
    assert_eq!(r.generated.final_live.len(), 3);
    // The stats come from the parties that closed the session.
    assert!(
        r.generated
            .stats
            .iter()
            .all(|(p, s)| *p != party(lost) && s.online_rounds > 0)
    );
}

#[test]
fn a_local_libp2p_mesh_answers_like_plaintext() {
    let r = run(
        3,
        "Once upon a time",
        4,
        Selection::ArgmaxInMpc,
        Fault::None,
    );
    assert_eq!(r.generated.ids, r.plain);
    assert!(
        r.logit_error < common::LOGIT_BOUND,
        "logit error {}",
        r.logit_error
    );
    assert_eq!(r.generated.epochs, 1);
    assert_eq!(r.generated.stats.len(), 3);
    assert!(r.generated.wall > Duration::ZERO);
}

#[test]
fn an_active_party_lost_mid_answer_is_replaced_by_the_stand_by() {
    // Parties 1..=3 are active, 4 stands by and takes 1's place.
    let r = run(
        4,
        "Once upon a time",
        8,
        Selection::ArgmaxInMpc,
        Fault::DownAfter(1, 3),
    );
    assert_recovered_without(&r, 1);
}

#[test]
fn a_party_lost_during_the_prompt_is_replaced_and_the_prompt_redone() {
    let prompt = "Once upon a time, there was a little girl named Lily who loved to play";
    let r = run(
        4,
        prompt,
        4,
        Selection::ArgmaxInMpc,
        Fault::DownInPrompt(2, Duration::from_millis(400)),
    );
    assert_recovered_without(&r, 2);
}

#[test]
fn a_lost_stand_by_is_dropped_and_the_active_parties_go_on() {
    let r = run(
        4,
        "Once upon a time",
        6,
        Selection::ArgmaxInMpc,
        Fault::DownAfter(4, 2),
    );
    assert_recovered_without(&r, 4);
}

#[test]
fn a_connected_party_that_stops_answering_is_left_out() {
    let r = run(
        4,
        "Once upon a time",
        6,
        Selection::ArgmaxInMpc,
        Fault::FreezeAfter(2, 2),
    );
    assert_recovered_without(&r, 2);
}

#[test]
fn sampling_at_the_client_survives_a_lost_party() {
    let r = run(
        4,
        "Once upon a time",
        6,
        Selection::SampleAtClient,
        Fault::DownAfter(1, 3),
    );
    assert_recovered_without(&r, 1);
}

#[test]
fn a_party_lost_late_in_a_long_answer_is_replaced_from_a_checkpoint() {
    // Past the 16 checkpoints a party keeps, and with party 1 still active.
    let r = run(
        4,
        "Once upon a time",
        40,
        Selection::ArgmaxInMpc,
        Fault::DownAfter(2, 34),
    );
    assert_recovered_without(&r, 2);
}
