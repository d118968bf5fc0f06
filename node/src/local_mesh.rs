//! A whole mesh in one process for `sotto demo`: every party is a real libp2p node on
//! 127.0.0.1 (TCP, PSK, Noise, Yamux, the allow-list, its own event loop) serving sessions with
//! the daemon's code ([`crate::daemon::Node`]), and the client is a libp2p observer running
//! `sotto ask`'s code ([`crate::ask::generate`]). Only process boundaries are missing: the
//! multi-process tests (`node/tests/net_*.rs`) and `scripts/bench-net.sh` have those.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mesh::{Counters, PhaseCounters, Threshold};
use mesh_net::{self as net, Keypair, LinkProfile, Multiaddr, NetConfig, PeerId};
use models::Sampler;
use models::secure::{ClientToken, PartyModel, Selection, SessionParams};

use crate::ask::{GenOptions, Reach, connect, generate};
use crate::config::{DEFAULT_RECOVERY_TIMEOUT, DEFAULT_ROUND_TIMEOUT};
use crate::daemon::{Node, NodeSettings, serve, summary_of};

/// What a generation on the local libp2p mesh reports, per party (in party order).
#[derive(Debug)]
pub(crate) struct LocalRun {
    /// The generated tokens.
    pub(crate) ids: Vec<u32>,
    /// Each party's traffic over the whole session (online and preprocessing rounds and
    /// bytes; the other counters are not collected over the network and stay zero).
    pub(crate) counters: Vec<Counters>,
    /// From the session's start to the last token.
    pub(crate) wall: Duration,
}

/// Runs one private generation on `parties.len()` libp2p nodes on 127.0.0.1 with link
/// emulation `link`, calling `on_token` as tokens arrive. `parties[i]` is party `i + 1`'s
/// model.
pub(crate) fn run_over_libp2p(
    parties: &[Arc<PartyModel>],
    th: Threshold,
    prompt: &[u32],
    params: SessionParams,
    sampler: &mut Sampler,
    link: LinkProfile,
    on_token: impl FnMut(&ClientToken),
) -> Result<LocalRun> {
    if parties.len() != th.n() {
        bail!("{} party models for n = {}", parties.len(), th.n());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run(
        parties, th, prompt, params, sampler, link, None, on_token,
    ))
}

/// A party to take down (as if it lost power) once the client has this many tokens.
#[derive(Clone, Copy, Debug)]
struct Fault {
    party: u8,
    after_tokens: usize,
}

#[allow(clippy::too_many_arguments)]
async fn run(
    parties: &[Arc<PartyModel>],
    th: Threshold,
    prompt: &[u32],
    params: SessionParams,
    sampler: &mut Sampler,
    link: LinkProfile,
    fault: Option<Fault>,
    mut on_token: impl FnMut(&ClientToken),
) -> Result<LocalRun> {
    let psk = net::generate_psk();
    let keys: Vec<Keypair> = (0..=th.n()).map(|_| Keypair::generate_ed25519()).collect();
    let allowed: Vec<PeerId> = keys.iter().map(|k| k.public().to_peer_id()).collect();
    let client_key = keys[th.n()].clone();
    let mut nodes: Vec<Arc<Node>> = Vec::new();
    let mut addrs: Vec<Multiaddr> = Vec::new();
    let mut tasks = Vec::new();
    for (i, model) in parties.iter().enumerate() {
        let party = u8::try_from(i + 1).context("more than 255 parties")?;
        let mut config = NetConfig::new(psk, allowed.clone(), summary_of(model), Some(party));
        config.link = link;
        config.redial_interval = Duration::from_millis(250);
        let (handle, event_loop) =
            net::new(config, keys[i].clone()).context("starting a party's mesh node")?;
        let events = handle.subscribe();
        tasks.push(tokio::spawn(event_loop.run()));
        let addr = handle
            .listen("/ip4/127.0.0.1/tcp/0".parse()?)
            .await
            .context("listening on 127.0.0.1")?;
        let addr: Multiaddr = format!("{addr}/p2p/{}", handle.local_peer_id()).parse()?;
        // Each party dials the ones started before it: a full mesh.
        for earlier in &addrs {
            handle.add_static_peer(earlier.clone()).await?;
        }
        addrs.push(addr);
        let settings = NodeSettings {
            round_timeout: DEFAULT_ROUND_TIMEOUT,
            recovery_timeout: DEFAULT_RECOVERY_TIMEOUT,
            max_sessions: 1,
            profile: firmware_profiles::DEFAULT_PROFILE.to_owned(),
        };
        let node = Node::new(handle, Arc::clone(model), th, settings);
        serve(Arc::clone(&node), events)?;
        nodes.push(node);
    }
    for node in &nodes {
        node.net()
            .wait_for_quorum(Duration::from_secs(20))
            .await
            .context("the local parties did not connect")?;
    }
    let reach = Reach {
        psk,
        key: client_key,
        peers: addrs,
        allowed,
        mdns: false,
        connect_timeout: Duration::from_secs(20),
        gather: Duration::from_secs(5),
    };
    let conn = connect(reach).await?;
    let result = async {
        let info = conn.model_info().await?;
        let opts = GenOptions {
            steps: params.steps,
            sample_at_client: params.selection == Selection::SampleAtClient,
            reveal_logits: params.reveal_logits,
            stall_timeout: Duration::from_secs(60),
        };
        let started = Instant::now();
        let mut seen = 0;
        let g = generate(&conn, &opts, &info, prompt, sampler, |tok| {
            seen += 1;
            if let Some(f) = fault.filter(|f| f.after_tokens == seen)
                && let Some(victim) = nodes.get(usize::from(f.party) - 1)
            {
                victim.abort_all("taken down");
                let net = victim.net().clone();
                tokio::spawn(async move { net.shutdown().await });
            }
            on_token(tok);
        })
        .await?;
        let mut counters = vec![Counters::default(); th.n()];
        for (p, s) in &g.stats {
            if let Some(c) = counters.get_mut(usize::from(*p) - 1) {
                c.online = PhaseCounters {
                    rounds: s.online_rounds,
                    bytes: s.online_bytes,
                    ..PhaseCounters::default()
                };
                c.offline = PhaseCounters {
                    rounds: s.offline_rounds,
                    bytes: s.offline_bytes,
                    ..PhaseCounters::default()
                };
            }
        }
        Ok::<_, anyhow::Error>(LocalRun {
            ids: g.ids,
            counters,
            wall: started.elapsed(),
        })
    }
    .await;
    conn.shutdown().await;
    for node in &nodes {
        node.net().shutdown().await;
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use models::secure::{file_sha256, provision};
    use models::{Engine, F32Engine, FixedWeights, Model};

    use super::*;

    fn model_dir() -> PathBuf {
        let dir = std::env::var_os("SOTTO_MODEL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/stories260K")
            });
        assert!(
            Model::files(&dir).0.is_file(),
            "model files missing in {}: run scripts/fetch-model.sh (or set SOTTO_MODEL_DIR)",
            dir.display()
        );
        dir
    }

    fn plaintext(model: &Model, prompt: &[u32], steps: usize) -> Vec<u32> {
        let mut e = F32Engine::new(Arc::clone(&model.checkpoint));
        for (pos, &t) in prompt.iter().enumerate() {
            e.forward(t, pos).unwrap();
        }
        let mut ids = Vec::new();
        for step in 0..steps {
            ids.push(e.argmax());
            e.forward(ids[step], prompt.len() + step).unwrap();
        }
        ids
    }

    #[test]
    fn a_party_lost_mid_generation_is_replaced_and_the_answer_is_unchanged() {
        let dir = model_dir();
        let model = Model::load_dir(&dir).unwrap();
        let th = Threshold::new(4, 1).unwrap();
        let fw = FixedWeights::from_checkpoint(&model.checkpoint).unwrap();
        let sha = file_sha256(&Model::files(&dir).0).unwrap();
        let files = provision(&fw, sha, th, &mut rand::rngs::OsRng, |_, _| {}).unwrap();
        let parties: Vec<Arc<PartyModel>> = files
            .iter()
            .enumerate()
            .map(|(i, f)| Arc::new(PartyModel::from_share_file(f, th, i).unwrap()))
            .collect();
        let prompt = model.tokenizer.encode("Once upon a time", true, false);
        let steps = 8;
        let params = SessionParams {
            prompt_len: prompt.len(),
            steps,
            selection: Selection::ArgmaxInMpc,
            reveal_logits: false,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // Party 1 is active (1..=3 are); 4 stands by and takes its place.
        let fault = Fault {
            party: 1,
            after_tokens: 3,
        };
        let run = rt
            .block_on(run(
                &parties,
                th,
                &prompt,
                params,
                &mut Sampler::greedy(),
                LinkProfile::Loopback,
                Some(fault),
                |_| {},
            ))
            .unwrap();
        assert_eq!(run.ids, plaintext(&model, &prompt, steps));
        // Party 1 did not finish (the stats come from the parties that closed the session).
        assert_eq!(run.counters[0].online.rounds, 0);
        assert!(run.counters[1..].iter().all(|c| c.online.rounds > 0));
    }

    #[test]
    fn a_local_libp2p_mesh_answers_like_plaintext() {
        let dir = model_dir();
        let model = Model::load_dir(&dir).unwrap();
        let th = Threshold::new(3, 1).unwrap();
        let fw = FixedWeights::from_checkpoint(&model.checkpoint).unwrap();
        let sha = file_sha256(&Model::files(&dir).0).unwrap();
        let files = provision(&fw, sha, th, &mut rand::rngs::OsRng, |_, _| {}).unwrap();
        let parties: Vec<Arc<PartyModel>> = files
            .iter()
            .enumerate()
            .map(|(i, f)| Arc::new(PartyModel::from_share_file(f, th, i).unwrap()))
            .collect();
        let prompt = model.tokenizer.encode("Once upon a time", true, false);
        let steps = 4;
        let params = SessionParams {
            prompt_len: prompt.len(),
            steps,
            selection: Selection::ArgmaxInMpc,
            reveal_logits: true,
        };
        let mut seen = Vec::new();
        let run = run_over_libp2p(
            &parties,
            th,
            &prompt,
            params,
            &mut Sampler::greedy(),
            LinkProfile::Loopback,
            |t| seen.push(t.clone()),
        )
        .unwrap();
        let mut e = F32Engine::new(Arc::clone(&model.checkpoint));
        for (pos, &t) in prompt.iter().enumerate() {
            e.forward(t, pos).unwrap();
        }
        let mut plain = Vec::new();
        for step in 0..steps {
            plain.push(e.argmax());
            let l = e.logits();
            let err = seen[step]
                .logits
                .as_ref()
                .unwrap()
                .iter()
                .zip(l)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(err < 0.1, "step {step}: logit error {err}");
            e.forward(plain[step], prompt.len() + step).unwrap();
        }
        assert_eq!(run.ids, plain);
        assert!(run.wall > Duration::ZERO);
        assert!(run.counters.iter().all(|c| c.online.rounds > 0));
    }
}
