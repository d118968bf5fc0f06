//! `sotto run`, `sotto ask` and `sotto status`: arguments to library calls, runtimes, and
//! what each prints.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use models::Tokenizer;
use node::client::{Connected, PartyStatus, Reach, ReachSpec, connect};
use node::config::NodeConfig;
use node::server::startup;
use node::session::Generated;
use node::session::wire::NodeStatus;

use crate::args::{AskArgs, RunArgs, StatusArgs};
use crate::text::TextOut;

pub(crate) fn run(args: &RunArgs) -> Result<()> {
    if args.print_peer_id {
        let path = match &args.identity {
            Some(p) => p.clone(),
            None => NodeConfig::load(&args.config)?.identity,
        };
        println!("{}", startup::peer_id_of(&path)?);
        return Ok(());
    }
    let mut config = NodeConfig::load(&args.config)?;
    if let Some(spec) = &args.profile {
        config.profile =
            firmware_profiles::Profile::find(spec).with_context(|| format!("--profile {spec}"))?;
    }
    startup::run(config)
}

/// Loads what the client flags name and says which identity it is (a refusal names the peer
/// ID the devices must admit).
fn resolve(spec: &ReachSpec) -> Result<Reach> {
    let (reach, identity) = Reach::resolve_with_identity(spec)?;
    eprintln!("sotto: {identity}");
    Ok(reach)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `sotto ask`; `tokenizer` is the tokenizer file (the client never needs the weights).
pub(crate) fn ask(args: &AskArgs, tokenizer: &Path) -> Result<()> {
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    let rt = runtime()?;
    let reach = resolve(&args.client.spec())?;
    let conn = rt.block_on(connect(reach))?;
    let result = ask_connected(&rt, &conn, args, tokenizer);
    rt.block_on(conn.shutdown());
    result
}

fn ask_connected(
    rt: &tokio::runtime::Runtime,
    conn: &Connected,
    args: &AskArgs,
    tok_path: &Path,
) -> Result<()> {
    let info = rt.block_on(conn.model_info())?;
    let tokenizer = Tokenizer::load(tok_path, info.vocab_size as usize).with_context(|| {
        format!(
            "loading the tokenizer {} (the mesh's model has a vocabulary of {}); pass --tokenizer",
            tok_path.display(),
            info.vocab_size
        )
    })?;
    let prompt = tokenizer.encode(&args.prompt, true, false);
    let positions = prompt.len() + args.steps - 1;
    if positions > info.seq_len as usize {
        bail!(
            "prompt ({} tokens) + steps ({}) needs {positions} positions, the model has {}; use fewer --steps",
            prompt.len(),
            args.steps,
            info.seq_len
        );
    }
    let generation = args.sampling.generation(prompt.len(), args.steps, false);
    let mut sampler = args.sampling.sampler()?;
    let quorum = conn.quorum_info(&info)?;
    let io = conn.io(rt.handle().clone());
    let stall = Duration::from_secs(args.stall_timeout.max(1));
    let mut out = TextOut::start(&tokenizer, &args.prompt, &prompt)?;
    let g = node::session::generate(
        &io,
        &quorum,
        generation,
        &prompt,
        stall,
        &mut sampler,
        |t| out.token(t),
    );
    out.finish()?;
    let g = g?;
    if args.print_ids {
        let ids: Vec<String> = g.ids.iter().map(u32::to_string).collect();
        eprintln!("token ids: {}", ids.join(" "));
    }
    print_ask_summary(conn, &g);
    Ok(())
}

fn print_ask_summary(conn: &Connected, g: &Generated) {
    let steps = g.ids.len() as f64;
    let s = g.stats.first().map(|(_, s)| *s).unwrap_or_default();
    let (n, t) = (conn.view().summary.n, conn.view().summary.t);
    eprintln!(
        "summary (n={n}, t={t}, parties {:?}, {} at the end, {} epoch(s)):",
        g.participants,
        g.final_live.len(),
        g.epochs
    );
    eprintln!(
        "  tokens/s             {:.2} ({} tokens in {:.2} s, first after {:.2} s)",
        steps / g.wall.as_secs_f64().max(1e-9),
        g.ids.len(),
        g.wall.as_secs_f64(),
        g.first_token.as_secs_f64()
    );
    eprintln!(
        "  rounds/token         {:.1} online + {:.1} preprocessing",
        s.online_rounds as f64 / steps,
        s.offline_rounds as f64 / steps
    );
    eprintln!(
        "  bytes/party/token    {:.3} MB online + {:.3} MB preprocessing",
        s.online_bytes as f64 / steps / 1e6,
        s.offline_bytes as f64 / steps / 1e6
    );
}

pub(crate) fn status(args: &StatusArgs) -> Result<()> {
    let rt = runtime()?;
    let reach = resolve(&args.client.spec())?;
    rt.block_on(async {
        let conn = connect(reach).await?;
        print_quorum(&conn);
        for p in conn.status().await {
            print_party(&p);
        }
        conn.shutdown().await;
        Ok(())
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn print_quorum(conn: &Connected) {
    let v = conn.view();
    let s = v.summary;
    println!(
        "quorum: (n={}, t={}) model sha256 {} provisioning {}",
        s.n,
        s.t,
        hex(&s.model_sha256),
        hex(&s.provisioning_id)
    );
    println!(
        "parties connected to this client: {:?} ({} needed: {})",
        v.parties(),
        s.required(),
        if v.formed { "formed" } else { "NOT formed" }
    );
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn print_party(p: &PartyStatus) {
    let rtt = p.rtt.map(ms).unwrap_or_else(|| "-".into());
    match &p.status {
        Ok(st) => print_status(p, st, &rtt),
        Err(e) => println!("party {}: {e}", p.party),
    }
}

fn print_status(p: &PartyStatus, st: &NodeStatus, rtt: &str) {
    println!(
        "party {}: peer {} profile {} up {} s, {} session(s), rtt from client {rtt}",
        p.party, st.peer, st.profile, st.uptime_s, st.sessions
    );
    println!(
        "  sees parties {:?} ({}), model {}.. {} layers, dim {}, vocab {}",
        st.quorum,
        if st.formed {
            "quorum formed"
        } else {
            "no quorum"
        },
        &hex(&st.info.model_sha256)[..12],
        st.info.n_layers,
        st.info.dim,
        st.info.vocab_size
    );
    for l in &st.links {
        let who = l
            .party
            .map(|p| format!("party {p}"))
            .unwrap_or_else(|| "client".into());
        let rtt = l
            .rtt_us
            .map(|us| ms(Duration::from_micros(us)))
            .unwrap_or_else(|| "-".into());
        println!("  link to {who} ({}): rtt {rtt}", l.peer);
        if l.instances.len() > 1 {
            let at: Vec<String> = l
                .instances
                .iter()
                .map(|addrs| format!("[{}]", addrs.join(", ")))
                .collect();
            println!(
                "  WARNING: {who} ({}) runs {} times, listening at {}: one identity is started twice (a second `sotto run`, or a copied key file), and frames reach either process at random; stop the extra one",
                l.peer,
                l.instances.len(),
                at.join(" and ")
            );
        }
    }
}
