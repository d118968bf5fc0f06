//! A whole mesh in one process on libp2p: every party is a real node on 127.0.0.1 (TCP, PSK,
//! Noise, Yamux, the allow-list, its own event loop) serving sessions with the daemon's
//! [`Server`], and the client is an observer node running `sotto ask`'s code. Only process
//! boundaries are missing: the multi-process tests (`node/tests/net_*.rs`) and
//! `scripts/bench-net.sh` have those.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mesh::{PartyId, Threshold};
use mesh_net::{self as net, Keypair, LinkProfile, Multiaddr, NetConfig, PeerId, PreSharedKey};
use models::Sampler;
use models::secure::PartyModel;

use crate::client::{Connected, Reach, connect};
use crate::config::{DEFAULT_RECOVERY_TIMEOUT, DEFAULT_ROUND_TIMEOUT};
use crate::server::net::{NetHost, serve, summary_of};
use crate::server::{Server, ServerSettings};
use crate::session::{ClientToken, Generated, Generation};

/// Deadlines of a local mesh (tests shorten them to seconds).
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// A party's limit on one round's message.
    pub round: Duration,
    /// A party's limit on the client's decision.
    pub recovery: Duration,
    /// The client's limit on silence before it recovers.
    pub stall: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            round: DEFAULT_ROUND_TIMEOUT,
            recovery: DEFAULT_RECOVERY_TIMEOUT,
            stall: Duration::from_secs(60),
        }
    }
}

/// The parties and the client of a local libp2p mesh, with the runtime they run on.
pub struct LocalMesh {
    rt: tokio::runtime::Runtime,
    servers: Vec<Arc<Server<NetHost>>>,
    conn: Option<Connected>,
    stall: Duration,
}

impl std::fmt::Debug for LocalMesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalMesh")
            .field("parties", &self.servers.len())
            .finish_non_exhaustive()
    }
}

struct Keys {
    psk: PreSharedKey,
    /// The devices of the share files' roster, in party order.
    parties: Vec<Keypair>,
    client: Keypair,
    /// The devices, then the client.
    allowed: Vec<PeerId>,
}

fn keys(parties: &[Keypair]) -> Keys {
    let client = Keypair::generate_ed25519();
    Keys {
        psk: net::generate_psk(),
        allowed: parties
            .iter()
            .chain([&client])
            .map(|k| k.public().to_peer_id())
            .collect(),
        client,
        parties: parties.to_vec(),
    }
}

impl LocalMesh {
    /// Starts one node per party model (party `i + 1`'s at `i`, with node identity `keys[i]`,
    /// the device its share file's roster names), connects them in a full mesh with link
    /// emulation `link`, and connects a client.
    pub fn start(
        parties: &[Arc<PartyModel>],
        keys: &[Keypair],
        th: Threshold,
        link: LinkProfile,
        deadlines: Deadlines,
    ) -> Result<LocalMesh> {
        if parties.len() != th.n() || keys.len() != th.n() {
            bail!(
                "{} party models and {} identities for n = {}",
                parties.len(),
                keys.len(),
                th.n()
            );
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let keys = self::keys(keys);
        let (servers, addrs) = rt.block_on(start_parties(parties, th, link, deadlines, &keys))?;
        let reach = Reach {
            psk: keys.psk,
            key: keys.client,
            peers: addrs,
            allowed: keys.allowed,
            mdns: false,
            connect_timeout: Duration::from_secs(20),
            gather: Duration::from_secs(5),
        };
        let conn = rt.block_on(connect(reach))?;
        Ok(LocalMesh {
            rt,
            servers,
            conn: Some(conn),
            stall: deadlines.stall,
        })
    }

    /// One private generation (see [`crate::session::generate`]); call from outside the
    /// mesh's runtime, e.g. the thread that started it.
    pub fn generate(
        &self,
        generation: Generation,
        prompt: &[u32],
        sampler: &mut Sampler,
        on_token: impl FnMut(&ClientToken),
    ) -> Result<Generated> {
        let conn = self.conn.as_ref().context("the mesh is shut down")?;
        let info = self.rt.block_on(conn.model_info())?;
        let quorum = conn.quorum_info(&info)?;
        let io = conn.io(self.rt.handle().clone());
        Ok(crate::session::generate(
            &io, &quorum, generation, prompt, self.stall, sampler, on_token,
        )?)
    }

    /// Takes party `party` down at once, as if it lost power.
    pub fn take_down(&self, party: PartyId) {
        if let Some(victim) = self.servers.get(party.index()) {
            victim.abort_all("taken down");
            let net = victim.host().net().clone();
            self.rt.spawn(async move { net.shutdown().await });
        }
    }

    /// How many sessions party `party` runs (0 for a party this mesh does not have).
    pub fn sessions_running(&self, party: PartyId) -> usize {
        self.servers.get(party.index()).map_or(0, |s| s.running())
    }

    /// Makes party `party` stop answering while staying connected: its sessions hang.
    pub fn freeze(&self, party: PartyId) {
        if let Some(victim) = self.servers.get(party.index()) {
            victim.freeze();
        }
    }

    /// Stops every node.
    pub fn shutdown(mut self) {
        let conn = self.conn.take();
        let servers = std::mem::take(&mut self.servers);
        for s in &servers {
            // Frozen sessions hang until aborted.
            s.abort_all("the local mesh is shutting down");
        }
        self.rt.block_on(async move {
            if let Some(c) = conn {
                c.shutdown().await;
            }
            for s in &servers {
                s.host().net().shutdown().await;
            }
        });
        self.rt.shutdown_timeout(Duration::from_secs(3));
    }
}

async fn start_parties(
    parties: &[Arc<PartyModel>],
    th: Threshold,
    link: LinkProfile,
    deadlines: Deadlines,
    keys: &Keys,
) -> Result<(Vec<Arc<Server<NetHost>>>, Vec<Multiaddr>)> {
    let mut servers = Vec::new();
    let mut addrs: Vec<Multiaddr> = Vec::new();
    for (i, model) in parties.iter().enumerate() {
        let party = PartyId::from_index(i)?;
        let (summary, roster) = summary_of(model).context("the share file's roster")?;
        let local = keys.parties[i].public().to_peer_id();
        if roster.peer_of(party) != Some(local) {
            bail!("party {party}'s share file is provisioned to another node identity");
        }
        let allowed = keys.allowed.iter().copied().filter(|p| *p != local);
        let mut config = NetConfig::new(keys.psk, allowed.collect(), summary, Some(party));
        config.roster = Some(roster);
        config.link = link;
        config.redial_interval = Duration::from_millis(250);
        let (handle, event_loop) =
            net::new(config, keys.parties[i].clone()).context("starting a party's mesh node")?;
        let events = handle.subscribe();
        tokio::spawn(event_loop.run());
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
        let settings = ServerSettings {
            round_timeout: deadlines.round,
            recovery_timeout: deadlines.recovery,
            max_sessions: 1,
            profile: firmware_profiles::DEFAULT_PROFILE.to_owned(),
        };
        let server = Server::new(NetHost::current(handle), Arc::clone(model), th, settings)?;
        serve(Arc::clone(&server), events)?;
        servers.push(server);
    }
    for s in &servers {
        s.host()
            .net()
            .wait_for_quorum(Duration::from_secs(20))
            .await
            .context("the local parties did not connect")?;
    }
    Ok((servers, addrs))
}
