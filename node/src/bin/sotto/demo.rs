//! `sotto provision` and `sotto demo`: arguments to library calls, and the demo's summary.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use mesh::Threshold;
use mesh_net::Roster;
use models::Model;
use node::demo::{self, Plaintext, Where};
use node::session::Generated;

use crate::args::{DemoArgs, ProvisionArgs};
use crate::text::TextOut;

pub(crate) fn provision(args: &ProvisionArgs, model_dir: &Path) -> Result<()> {
    let n = args.devices.len();
    if let Some(parties) = args.parties.filter(|&p| p != n) {
        bail!(
            "--parties {parties} but {n} --device given: give one --device <peer id> per party, in party order"
        );
    }
    let th = Threshold::new(n, args.threshold)?;
    let roster = Roster::new(args.devices.clone())?;
    let started = Instant::now();
    demo::provision_into(model_dir, th, &roster, &args.out, args.force, false)?;
    eprintln!(
        "provisioned ({}, {}) in {:.1} s: {}/party-1.share .. party-{}.share — give each device only its own file",
        th.n(),
        th.t(),
        started.elapsed().as_secs_f64(),
        args.out.display(),
        th.n()
    );
    for (i, device) in roster.peers().iter().enumerate() {
        eprintln!("  party-{}.share: device {device}", i + 1);
    }
    Ok(())
}

pub(crate) fn run(args: &DemoArgs, model_dir: &Path) -> Result<()> {
    let th = Threshold::new(args.parties, args.threshold)?;
    let model = Model::load_dir(model_dir)?;
    let dir = args
        .shares
        .clone()
        .unwrap_or_else(|| demo::default_share_dir(model_dir, th));
    let parties = demo::load_or_provision(model_dir, th, &dir)?;
    let prompt = model.tokenizer.encode(&args.prompt, true, false);
    let generation = args
        .sampling
        .generation(prompt.len(), args.steps, args.verify);
    generation.check(model.checkpoint.config().seq_len)?;
    let mut sampler = args.sampling.sampler()?;
    let at = if args.in_memory {
        Where::InMemory
    } else {
        Where::Libp2p(args.link)
    };
    eprintln!(
        "private generation on a local ({}, {}) mesh ({}): {} prompt tokens, {} steps",
        th.n(),
        th.t(),
        match at {
            Where::InMemory => "in-memory transport".to_string(),
            Where::Libp2p(link) => format!("libp2p nodes on 127.0.0.1, link {link}"),
        },
        prompt.len(),
        args.steps
    );
    let started = Instant::now();
    let mut out = TextOut::start(&model.tokenizer, &args.prompt, &prompt)?;
    let g = demo::run_private(&parties, th, at, generation, &prompt, &mut sampler, |t| {
        out.token(t)
    });
    let total = started.elapsed();
    let seen_logits = out.finish()?;
    let g = g?;
    // In memory the whole run is the session; over libp2p, without starting the nodes.
    let wall = if args.in_memory { total } else { g.wall };
    let plain = demo::follow_in_plaintext(&model, &prompt, &g.ids)?;
    summary(args, th, &g, wall, &plain, &seen_logits);
    Ok(())
}

fn summary(
    args: &DemoArgs,
    th: Threshold,
    g: &Generated,
    wall: Duration,
    plain: &Plaintext,
    seen_logits: &[Vec<f32>],
) {
    let steps = args.steps as f64;
    let s = g.stats.first().map(|(_, s)| *s).unwrap_or_default();
    let tps = steps / wall.as_secs_f64();
    let plain_tps = steps / plain.wall.as_secs_f64().max(1e-9);
    eprintln!();
    eprintln!("summary ({} parties, threshold {}):", th.n(), th.t());
    eprintln!(
        "  tokens/s             {tps:.2} private ({} tokens in {:.2} s), {plain_tps:.0} plaintext f32 — overhead {:.0}x",
        args.steps,
        wall.as_secs_f64(),
        plain_tps / tps
    );
    eprintln!(
        "  rounds/token         {:.1} online + {:.1} preprocessing (prompt positions included)",
        s.online_rounds as f64 / steps,
        s.offline_rounds as f64 / steps
    );
    eprintln!(
        "  bytes/party/token    {:.2} MB online + {:.2} MB preprocessing",
        s.online_bytes as f64 / steps / 1e6,
        s.offline_bytes as f64 / steps / 1e6
    );
    time_line(args, g);
    comparison(args, g, plain, seen_logits);
}

fn time_line(args: &DemoArgs, g: &Generated) {
    if args.in_memory {
        let busy = g.stats.iter().map(|(_, s)| s.busy_us).max().unwrap_or(0);
        let prep = g.stats.iter().map(|(_, s)| s.prep_us).max().unwrap_or(0);
        eprintln!(
            "  time                 {:.2} s preprocessing + {:.2} s online (slowest party; preprocessing runs on demand, in batches)",
            prep as f64 / 1e6,
            busy.saturating_sub(prep) as f64 / 1e6
        );
    } else {
        eprintln!(
            "  network              libp2p on 127.0.0.1 (TCP + PSK + Noise + Yamux), link {}; --in-memory splits preprocessing from online time",
            args.link
        );
    }
}

fn comparison(args: &DemoArgs, g: &Generated, plain: &Plaintext, seen_logits: &[Vec<f32>]) {
    if args.sampling.sampled() {
        eprintln!(
            "  tokens vs plaintext  not compared (sampled at the client with temperature {})",
            args.sampling.temperature
        );
    } else {
        let same = g
            .ids
            .iter()
            .zip(&plain.ids)
            .take_while(|(a, b)| a == b)
            .count();
        eprintln!(
            "  tokens vs plaintext  {} ({same}/{} identical to the f32 engine's greedy tokens)",
            if same == g.ids.len() {
                "match"
            } else {
                "DIFFER"
            },
            g.ids.len()
        );
    }
    if args.verify {
        let err = seen_logits
            .iter()
            .zip(&plain.logits)
            .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
            .fold(0f32, f32::max);
        eprintln!(
            "  max |logit_private - logit_f32| = {err:.5} over {} steps",
            seen_logits.len()
        );
    }
}
