//! The command line of the mesh commands (`provision`, `demo`, `run`, `ask`, `status`) and
//! how each maps onto the library's types.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use mesh_net::{LinkProfile, PeerId};
use models::Sampler;
use node::client::ReachSpec;
use node::session::{Generation, Selection};

/// `sotto provision`.
#[derive(Debug, Args)]
pub(crate) struct ProvisionArgs {
    /// Model folder (stories260K.bin + tok512.bin); defaults as for `generate`.
    #[arg(long, env = "SOTTO_MODEL_DIR")]
    pub(crate) model: Option<PathBuf>,
    /// The peer ID of each party's device, once per party in party order (the first is party
    /// 1): each share file binds its index to that device, and no other peer can take it. On
    /// each device, `sotto run --print-peer-id` (or `--print-peer-id --identity <key file>`)
    /// prints its peer ID.
    #[arg(long = "device", value_name = "PEER_ID", required = true)]
    pub(crate) devices: Vec<PeerId>,
    /// Number of parties (devices), n >= 2t + 1; defaults to the number of --device.
    #[arg(long)]
    pub(crate) parties: Option<usize>,
    /// Threshold t: how many colluding devices the sharing withstands.
    #[arg(long, default_value_t = 1)]
    pub(crate) threshold: usize,
    /// Output folder; receives party-1.share .. party-N.share.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Replace an existing provisioning in the output folder.
    #[arg(long)]
    pub(crate) force: bool,
}

/// `sotto demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Model folder; defaults as for `generate`.
    #[arg(long, env = "SOTTO_MODEL_DIR")]
    pub(crate) model: Option<PathBuf>,
    /// The prompt (tokenized by the client; the parties never see it).
    #[arg(long, default_value = "Once upon a time")]
    pub(crate) prompt: String,
    /// Tokens to generate.
    #[arg(long, default_value_t = 64)]
    pub(crate) steps: usize,
    /// Parties of the local mesh.
    #[arg(long, default_value_t = 3)]
    pub(crate) parties: usize,
    /// Threshold t (n >= 2t + 1).
    #[arg(long, default_value_t = 1)]
    pub(crate) threshold: usize,
    /// Where the share files live (provisioned there if missing or stale); default
    /// `<model>/shares-n<N>-t<T>/`.
    #[arg(long)]
    pub(crate) shares: Option<PathBuf>,
    /// Also open every step's logits to the client and report max |logit_private - logit_f32|.
    #[arg(long)]
    pub(crate) verify: bool,
    #[command(flatten)]
    pub(crate) sampling: SamplingArgs,
    /// Run the parties as threads over the in-memory transport instead of libp2p nodes on
    /// loopback (isolates the MPC cost from the network's).
    #[arg(long)]
    pub(crate) in_memory: bool,
    /// Link emulation between the libp2p nodes: loopback (none), lan or wifi (delay and
    /// bandwidth added in the transport; see docs/benchmarks.md).
    #[arg(long, default_value = "loopback", value_parser = parse_link)]
    pub(crate) link: LinkProfile,
}

/// Where and how the next token is chosen; shared by `demo` and `ask`.
#[derive(Debug, Args)]
pub(crate) struct SamplingArgs {
    /// Send the logits' shares to the client, which samples (temperature/top-p) itself,
    /// instead of the argmax inside MPC.
    #[arg(long)]
    pub(crate) sample_at_client: bool,
    /// Sampling temperature (with --sample-at-client); 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) temperature: f32,
    /// Top-p nucleus (with --sample-at-client).
    #[arg(long, default_value_t = 0.9)]
    pub(crate) top_p: f32,
    /// Sampling seed (with --sample-at-client).
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
}

impl SamplingArgs {
    /// Whether tokens are drawn at random (so they are not compared with greedy plaintext).
    pub(crate) fn sampled(&self) -> bool {
        self.sample_at_client && self.temperature > 0.0
    }

    /// The client's sampler: greedy unless sampling at the client with a temperature.
    pub(crate) fn sampler(&self) -> Result<Sampler> {
        Ok(if self.sampled() {
            Sampler::new(self.temperature, self.top_p, self.seed)?
        } else {
            Sampler::greedy()
        })
    }

    /// The request these arguments make for a prompt of `prompt_len` tokens.
    pub(crate) fn generation(&self, prompt_len: usize, steps: usize, verify: bool) -> Generation {
        Generation {
            prompt_len: u32::try_from(prompt_len).unwrap_or(u32::MAX),
            steps: u32::try_from(steps).unwrap_or(u32::MAX),
            selection: if self.sample_at_client {
                Selection::SampleAtClient
            } else {
                Selection::ArgmaxInMpc
            },
            reveal_logits: verify,
        }
    }
}

fn parse_link(s: &str) -> Result<LinkProfile, String> {
    s.parse()
        .map_err(|_| format!("unknown link profile `{s}`: use loopback, lan or wifi"))
}

/// `sotto run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The node's config file (see docs/deployment.md).
    #[arg(long, default_value = "node.toml")]
    pub(crate) config: PathBuf,
    /// Use this device profile instead of the config's `profile`: a built-in name (e.g. rpi4,
    /// see `sotto profiles`) or a path to a profile .toml.
    #[arg(long)]
    pub(crate) profile: Option<String>,
    /// Print the peer ID of the identity file (creating it, 0600, if missing) and exit: a
    /// device's goes to `sotto provision --device`, a client's into the devices' `clients`.
    /// Uses --identity, else the config's.
    #[arg(long)]
    pub(crate) print_peer_id: bool,
    /// The identity file for --print-peer-id.
    #[arg(long, requires = "print_peer_id")]
    pub(crate) identity: Option<PathBuf>,
}

/// How the client reaches the mesh (shared by `ask` and `status`).
#[derive(Debug, Args, Clone)]
pub(crate) struct ClientArgs {
    /// A party's address ending in /p2p/<peer id>; repeat for each device.
    #[arg(long = "peer", value_name = "MULTIADDR")]
    pub(crate) peers: Vec<String>,
    /// Also find parties by mDNS on the local network (only peers given with --allow or
    /// --peer are dialed).
    #[arg(long)]
    pub(crate) mdns: bool,
    /// A party's peer ID to admit when found by mDNS; repeat for each device.
    #[arg(long = "allow", value_name = "PEER_ID")]
    pub(crate) allow: Vec<String>,
    /// The mesh pre-shared key file (the same as the devices').
    #[arg(long)]
    pub(crate) psk: PathBuf,
    /// The client's identity file (created 0600 on first use); its peer ID must be in every
    /// device's `clients`. Default: $HOME/.config/sotto/client.key.
    #[arg(long)]
    pub(crate) identity: Option<PathBuf>,
    /// Seconds to wait for 2t+1 parties to be connected.
    #[arg(long, default_value_t = 30)]
    pub(crate) connect_timeout: u64,
    /// Milliseconds to wait, once 2t+1 parties are there, for the rest of the n (more
    /// parties = a generation that survives losing some).
    #[arg(long, default_value_t = 2000)]
    pub(crate) gather_ms: u64,
}

impl ClientArgs {
    pub(crate) fn spec(&self) -> ReachSpec {
        ReachSpec {
            peers: self.peers.clone(),
            mdns: self.mdns,
            allow: self.allow.clone(),
            psk: self.psk.clone(),
            identity: self.identity.clone(),
            connect_timeout: Duration::from_secs(self.connect_timeout),
            gather: Duration::from_millis(self.gather_ms),
        }
    }
}

/// `sotto ask`.
#[derive(Debug, Args)]
pub(crate) struct AskArgs {
    /// The prompt (tokenized here; the devices never see it).
    #[arg(long)]
    pub(crate) prompt: String,
    /// Tokens to generate.
    #[arg(long, default_value_t = 64)]
    pub(crate) steps: usize,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    /// Model folder whose tokenizer to use (the weights are not needed); defaults as for
    /// `generate`.
    #[arg(long, env = "SOTTO_MODEL_DIR")]
    pub(crate) model: Option<PathBuf>,
    /// Tokenizer file; default: the model folder's tok512.bin.
    #[arg(long)]
    pub(crate) tokenizer: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) sampling: SamplingArgs,
    /// Seconds without progress on a token before the client pauses the quorum and recovers.
    #[arg(long, default_value_t = 60)]
    pub(crate) stall_timeout: u64,
    /// Also print the generated token ids on stderr (`token ids: ...`).
    #[arg(long)]
    pub(crate) print_ids: bool,
}

/// `sotto status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) client: ClientArgs,
}
