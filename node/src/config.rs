//! `node.toml`: what `sotto run` needs to start a mesh node, and its validation.
//!
//! Every error names the file, the field and the fix; `docs/deployment.md` documents each
//! field. Relative paths are resolved against the folder holding the config file, so a node's
//! folder can be moved as a whole.
//!
//! Who may connect: the devices are the share file's roster (fixed at provisioning, one peer ID
//! per party index), the clients are listed in `clients`. A client can never hold a party index,
//! so a client that is also in the roster is a configuration error. The mesh's allow-list is
//! the roster (without this node) plus the clients.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use firmware_profiles::{DEFAULT_PROFILE, Profile};
use mesh::PartyId;
use mesh_net::{LinkProfile, Multiaddr, PeerId};
use mesh_net::{NetConfig, PreSharedKey, Roster, ShareSummary};
use serde::Deserialize;

/// The file as written (before validation).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    identity: PathBuf,
    share_file: PathBuf,
    psk_file: PathBuf,
    #[serde(default = "default_listen")]
    listen: Vec<String>,
    #[serde(default)]
    static_peers: Vec<String>,
    #[serde(default)]
    clients: Vec<String>,
    /// Replaced by the roster + `clients`; still parsed so its presence gets a clear error.
    #[serde(default)]
    allowed_peers: Option<toml::Value>,
    #[serde(default = "default_profile")]
    profile: String,
    #[serde(default)]
    mdns: bool,
    #[serde(default = "default_link")]
    link: String,
    #[serde(default = "default_round_timeout_ms")]
    round_timeout_ms: u64,
    #[serde(default = "default_recovery_timeout_ms")]
    recovery_timeout_ms: u64,
    #[serde(default = "default_max_sessions")]
    max_sessions: usize,
}

fn default_listen() -> Vec<String> {
    vec!["/ip4/0.0.0.0/tcp/4100".to_owned()]
}

fn default_profile() -> String {
    DEFAULT_PROFILE.to_owned()
}

fn default_link() -> String {
    "loopback".to_owned()
}

/// Default limit on waiting for one round's message from a peer.
pub const DEFAULT_ROUND_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit on waiting for the client's decision after a stall.
pub const DEFAULT_RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);

fn default_round_timeout_ms() -> u64 {
    DEFAULT_ROUND_TIMEOUT.as_millis() as u64
}

fn default_recovery_timeout_ms() -> u64 {
    DEFAULT_RECOVERY_TIMEOUT.as_millis() as u64
}

fn default_max_sessions() -> usize {
    2
}

/// A validated node configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where the file was read from.
    pub path: PathBuf,
    /// The node's ed25519 identity (created, 0600, on first start).
    pub identity: PathBuf,
    /// This node's share file.
    pub share_file: PathBuf,
    /// The mesh pre-shared key.
    pub psk_file: PathBuf,
    pub listen: Vec<Multiaddr>,
    pub static_peers: Vec<Multiaddr>,
    /// Peer IDs of the clients admitted to ask (never a party index).
    pub clients: Vec<PeerId>,
    pub profile: Profile,
    pub mdns: bool,
    pub link: LinkProfile,
    pub round_timeout: Duration,
    pub recovery_timeout: Duration,
    pub max_sessions: usize,
}

/// Why a config file cannot be used. Every variant says what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    // The I/O error is in the message, not a `#[source]`: a chain printer would say it twice.
    #[error("{path}: {error}; pass the node's config with `sotto run --config <file>`")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The TOML does not parse or does not match the schema.
    #[error("{path}: {message}{hint}")]
    Parse {
        path: PathBuf,
        message: String,
        hint: Hint,
    },
    /// The node's identity is not the device its share file is provisioned to.
    #[error(
        "{share_file} is the share file of party {party}, provisioned to device {device}, but this node's identity {identity} is {local}: run it on that device, or give this node the share file provisioned for {local} (`sotto provision --device`)"
    )]
    // Peer IDs as text: a `PeerId` is 80 bytes, and this enum travels in every `Result`.
    WrongDevice {
        share_file: PathBuf,
        party: PartyId,
        device: String,
        identity: PathBuf,
        local: String,
    },
    /// A field holds a value that cannot work.
    #[error("{path}: field `{field}` = {value:?}: {problem}; {fix}")]
    Invalid {
        path: PathBuf,
        field: String,
        value: String,
        problem: String,
        fix: String,
    },
}

/// The fix appended to a schema error (toml's message names the field; this says what to do).
#[derive(Debug)]
pub struct Hint(&'static str);

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

fn hint_for(message: &str) -> Hint {
    if message.contains("unknown field") {
        Hint("; remove the field or fix its spelling (docs/deployment.md lists every field)")
    } else if message.contains("missing field") {
        Hint("; add the field (docs/deployment.md has a complete example)")
    } else {
        Hint("; see docs/deployment.md for the format of node.toml")
    }
}

impl NodeConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(&text, path)
    }

    /// Validates `text`, read from `path` (relative paths are resolved against its folder).
    pub fn parse(text: &str, path: &Path) -> Result<NodeConfig, ConfigError> {
        let raw = parse_toml(text, path)?;
        let f = Fields {
            path,
            dir: path.parent().unwrap_or(Path::new(".")),
        };
        if raw.allowed_peers.is_some() {
            return Err(f.invalid(
                "allowed_peers".into(),
                "[...]",
                "this field was replaced: the devices are now the roster in the share file (set by `sotto provision --device`), which binds each party index to its device".into(),
                "delete `allowed_peers`, and list only the clients' peer IDs in `clients = [\"12D3KooW...\"]`",
            ));
        }
        let listen = f.listen(&raw.listen)?;
        let clients = f.clients(&raw.clients)?;
        let static_peers = f.static_peers(&raw.static_peers)?;
        let profile = f.profile(&raw.profile)?;
        let link = f.link(&raw.link, &profile)?;
        f.limits(&raw)?;
        Ok(NodeConfig {
            path: path.to_owned(),
            identity: f.resolve(&raw.identity),
            share_file: f.resolve(&raw.share_file),
            psk_file: f.resolve(&raw.psk_file),
            listen,
            static_peers,
            clients,
            profile,
            mdns: raw.mdns,
            link,
            round_timeout: Duration::from_millis(raw.round_timeout_ms),
            recovery_timeout: Duration::from_millis(raw.recovery_timeout_ms),
            max_sessions: raw.max_sessions,
        })
    }

    /// The mesh configuration of this node (peer ID `local`) as party `party` holding
    /// `summary` with its share file's `roster`. Checks that this node is the roster's device
    /// for `party`, that no client is a device, and that every static peer is admitted; the
    /// allow-list is the other devices plus the clients.
    pub fn net_config(
        &self,
        psk: PreSharedKey,
        summary: ShareSummary,
        party: PartyId,
        roster: Roster,
        local: PeerId,
    ) -> Result<NetConfig, ConfigError> {
        let f = Fields {
            path: &self.path,
            dir: self.path.parent().unwrap_or(Path::new(".")),
        };
        match roster.peer_of(party) {
            Some(device) if device == local => {}
            device => {
                return Err(ConfigError::WrongDevice {
                    share_file: self.share_file.clone(),
                    party,
                    // Out of the roster's range cannot pass the share file's checks.
                    device: device.map_or_else(|| "(none)".to_owned(), |d| d.to_string()),
                    identity: self.identity.clone(),
                    local: local.to_string(),
                });
            }
        }
        f.clients_not_devices(&self.clients, &roster)?;
        let mut allowed: Vec<PeerId> = roster
            .peers()
            .iter()
            .copied()
            .filter(|p| *p != local)
            .collect();
        for c in &self.clients {
            if !allowed.contains(c) {
                allowed.push(*c);
            }
        }
        f.static_peers_admitted(&self.static_peers, &allowed)?;
        let mut net = NetConfig::new(psk, allowed, summary, Some(party));
        net.roster = Some(roster);
        net.listen = self.listen.clone();
        net.static_peers = self.static_peers.clone();
        net.mdns = self.mdns;
        net.link = self.link;
        // A daemon's links carry sessions minutes apart: keep them open; a dead peer shows up as
        // a closed connection or a failed ping.
        net.idle_connection_timeout = Duration::from_secs(24 * 3600);
        Ok(net)
    }
}

fn parse_toml(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().to_owned();
        let at = e
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].lines().count().max(1);
                format!(" (line {line})")
            })
            .unwrap_or_default();
        ConfigError::Parse {
            path: path.to_owned(),
            hint: hint_for(&message),
            message: format!("{message}{at}"),
        }
    })
}

/// Checks one field at a time, naming the file and the field in every error.
struct Fields<'a> {
    path: &'a Path,
    dir: &'a Path,
}

impl Fields<'_> {
    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.dir.join(p)
        }
    }

    fn invalid(&self, field: String, value: &str, problem: String, fix: &str) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            field,
            value: value.to_owned(),
            problem,
            fix: fix.to_owned(),
        }
    }

    fn multiaddr(&self, field: String, a: &str, example: &str) -> Result<Multiaddr, ConfigError> {
        a.parse().map_err(|e| {
            self.invalid(
                field,
                a,
                format!("not a multiaddr ({e})"),
                &format!("write an address like \"{example}\""),
            )
        })
    }

    fn listen(&self, raw: &[String]) -> Result<Vec<Multiaddr>, ConfigError> {
        let listen = raw
            .iter()
            .enumerate()
            .map(|(i, a)| self.multiaddr(format!("listen[{i}]"), a, "/ip4/0.0.0.0/tcp/4100"))
            .collect::<Result<Vec<_>, _>>()?;
        if listen.is_empty() {
            return Err(self.invalid(
                "listen".into(),
                "[]",
                "no address to listen on, so no peer could reach this node".into(),
                "add one, e.g. listen = [\"/ip4/0.0.0.0/tcp/4100\"]",
            ));
        }
        Ok(listen)
    }

    fn clients(&self, raw: &[String]) -> Result<Vec<PeerId>, ConfigError> {
        raw.iter()
            .enumerate()
            .map(|(i, p)| {
                p.parse().map_err(|e| {
                    self.invalid(
                        format!("clients[{i}]"),
                        p,
                        format!("not a peer ID ({e})"),
                        "copy the peer ID the client prints (`sotto run --print-peer-id --identity <client key>`; it begins with 12D3KooW)",
                    )
                })
            })
            .collect()
    }

    fn clients_not_devices(&self, clients: &[PeerId], roster: &Roster) -> Result<(), ConfigError> {
        for (i, c) in clients.iter().enumerate() {
            if let Some(party) = roster.party_of(c) {
                return Err(self.invalid(
                    format!("clients[{i}]"),
                    &c.to_string(),
                    format!(
                        "this peer is the device of party {party} in the share file's roster, and a client can never hold a party index"
                    ),
                    "remove it from `clients` (devices are admitted through the roster), or give the client its own identity",
                ));
            }
        }
        Ok(())
    }

    fn static_peers(&self, raw: &[String]) -> Result<Vec<Multiaddr>, ConfigError> {
        let mut peers = Vec::with_capacity(raw.len());
        for (i, a) in raw.iter().enumerate() {
            let field = format!("static_peers[{i}]");
            let example = "/ip4/192.168.1.12/tcp/4100/p2p/12D3KooW...";
            let addr = self.multiaddr(field.clone(), a, example)?;
            if !matches!(addr.iter().last(), Some(mesh_net::Protocol::P2p(_))) {
                return Err(self.invalid(
                    field,
                    a,
                    "the address does not end in /p2p/<peer id>".into(),
                    "append the device's peer ID (`sotto run` prints it at start)",
                ));
            }
            peers.push(addr);
        }
        Ok(peers)
    }

    /// Every static peer must be admitted (a device of the roster or a client).
    fn static_peers_admitted(
        &self,
        peers: &[Multiaddr],
        allowed: &[PeerId],
    ) -> Result<(), ConfigError> {
        for (i, addr) in peers.iter().enumerate() {
            let Some(mesh_net::Protocol::P2p(peer)) = addr.iter().last() else {
                continue;
            };
            if !allowed.contains(&peer) {
                return Err(self.invalid(
                    format!("static_peers[{i}]"),
                    &addr.to_string(),
                    format!(
                        "peer {peer} is neither another device of the share file's roster nor in `clients`, so its connection would be refused"
                    ),
                    "remove the address, or re-provision with that device in the roster",
                ));
            }
        }
        Ok(())
    }

    fn profile(&self, raw: &str) -> Result<Profile, ConfigError> {
        // A profile file is relative to node.toml, like the other paths.
        let spec = if raw.ends_with(".toml") || raw.contains('/') {
            self.resolve(Path::new(raw)).display().to_string()
        } else {
            raw.to_owned()
        };
        Profile::find(&spec).map_err(|e| {
            self.invalid(
                "profile".into(),
                raw,
                e.to_string(),
                &format!(
                    "use a built-in profile ({}) or a path to a profile .toml",
                    Profile::builtin_names().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    fn link(&self, raw: &str, profile: &Profile) -> Result<LinkProfile, ConfigError> {
        // "profile": emulate the link of the device class's network (ethernet -> lan, wifi ->
        // wifi), e.g. to rehearse a wifi deployment on a wired test bench.
        let name = if raw == "profile" {
            profile.network().link_profile()
        } else {
            raw
        };
        name.parse().map_err(|_| {
            self.invalid(
                "link".into(),
                raw,
                "unknown link profile".into(),
                "use \"loopback\" (no emulation), \"lan\", \"wifi\" or \"profile\" (the device profile's network class)",
            )
        })
    }

    fn limits(&self, raw: &RawConfig) -> Result<(), ConfigError> {
        for (field, value) in [
            ("round_timeout_ms", raw.round_timeout_ms),
            ("recovery_timeout_ms", raw.recovery_timeout_ms),
        ] {
            if value == 0 {
                return Err(self.invalid(
                    field.into(),
                    "0",
                    "a zero timeout fails every session".into(),
                    "leave it out for the default or give milliseconds, e.g. 10000",
                ));
            }
        }
        if raw.max_sessions == 0 {
            return Err(self.invalid(
                "max_sessions".into(),
                "0",
                "the node would refuse every request".into(),
                "leave it out (default 2) or give a positive number",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

    fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
        NodeConfig::parse(text, Path::new("/etc/sotto/node.toml"))
    }

    fn minimal(extra: &str) -> String {
        format!(
            "identity = \"node.key\"\nshare_file = \"party-1.share\"\npsk_file = \"mesh.psk\"\nclients = [\"{PEER}\"]\n{extra}"
        )
    }

    #[test]
    fn minimal_config_gets_defaults_and_resolved_paths() {
        let c = parse(&minimal("")).unwrap();
        assert_eq!(c.identity, Path::new("/etc/sotto/node.key"));
        assert_eq!(c.listen[0].to_string(), "/ip4/0.0.0.0/tcp/4100");
        assert_eq!(c.profile.name(), DEFAULT_PROFILE);
        assert!(!c.mdns);
        assert_eq!(c.link, LinkProfile::Loopback);
        assert_eq!(c.round_timeout, DEFAULT_ROUND_TIMEOUT);
    }

    #[test]
    fn unknown_and_missing_fields_name_the_field_and_the_fix() {
        let e = parse(&minimal("mdsn = true")).unwrap_err().to_string();
        assert!(e.contains("mdsn") && e.contains("spelling"), "{e}");
        let e = parse("identity = \"a\"\npsk_file = \"b\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("share_file") && e.contains("add the field"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_the_field() {
        let e = parse(&minimal("listen = [\"0.0.0.0:4100\"]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen[0]") && e.contains("/ip4/"), "{e}");
        let e = parse(&minimal("static_peers = [\"/ip4/10.0.0.2/tcp/4100\"]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("static_peers[0]") && e.contains("/p2p/"), "{e}");
        let e = parse(&minimal("profile = \"rpi9\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`profile`") && e.contains("rpi4"), "{e}");
        let e = parse(&minimal("link = \"5g\"")).unwrap_err().to_string();
        assert!(e.contains("`link`") && e.contains("wifi"), "{e}");
        let e = parse(&minimal("round_timeout_ms = 0"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("round_timeout_ms"), "{e}");
        let e = parse("identity = \"a\"\nshare_file = \"b\"\npsk_file = \"c\"\nclients = [\"x\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("clients[0]"), "{e}");
    }

    fn device(i: u8) -> PeerId {
        mesh_net::Keypair::ed25519_from_bytes([i; 32])
            .unwrap()
            .public()
            .to_peer_id()
    }

    /// The mesh config of party `party` run by `local`, with devices 1..=3 in the roster.
    fn net_config(text: &str, party: u8, local: PeerId) -> Result<NetConfig, ConfigError> {
        let roster = Roster::new((1..=3).map(device).collect()).unwrap();
        let summary = ShareSummary {
            model_sha256: [1; 32],
            provisioning_id: [2; 16],
            n: 3,
            t: 1,
            roster_sha256: roster.sha256(),
        };
        let party = PartyId::from_number(party).unwrap();
        parse(text)?.net_config(PreSharedKey::new([7; 32]), summary, party, roster, local)
    }

    #[test]
    fn the_allow_list_is_the_other_devices_and_the_clients() {
        let net = net_config(&minimal(""), 1, device(1)).unwrap();
        let client: PeerId = PEER.parse().unwrap();
        assert_eq!(net.allowed_peers, [device(2), device(3), client]);
        assert_eq!(net.roster.as_ref().map(Roster::len), Some(3));
        net.validate().unwrap();
    }

    #[test]
    fn a_client_that_is_a_device_of_the_roster_is_refused() {
        let text = format!(
            "identity = \"a\"\nshare_file = \"b\"\npsk_file = \"c\"\nclients = [\"{PEER}\", \"{}\"]",
            device(3)
        );
        let e = net_config(&text, 1, device(1)).unwrap_err().to_string();
        assert!(
            e.contains("clients[1]")
                && e.contains("device of party 3")
                && e.contains("never hold a party index"),
            "{e}"
        );
    }

    #[test]
    fn the_old_allowed_peers_field_says_what_to_do_instead() {
        let text = format!(
            "identity = \"a\"\nshare_file = \"b\"\npsk_file = \"c\"\nallowed_peers = [\"{PEER}\"]"
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("allowed_peers")
                && e.contains("sotto provision --device")
                && e.contains("clients = ["),
            "{e}"
        );
    }

    #[test]
    fn a_share_file_of_another_device_is_refused() {
        let e = net_config(&minimal(""), 2, device(1)).unwrap_err();
        assert!(matches!(
            &e,
            ConfigError::WrongDevice { device: d, local, .. }
                if *d == device(2).to_string() && *local == device(1).to_string()
        ));
        assert!(
            e.to_string()
                .contains(&format!("provisioned to device {}", device(2))),
            "{e}"
        );
    }

    #[test]
    fn a_static_peer_that_is_not_admitted_is_refused() {
        let other = "12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5nHmRu8fVNcdS5dd2Kc";
        let text = minimal(&format!(
            "static_peers = [\"/ip4/10.0.0.2/tcp/4100/p2p/{}\", \"/ip4/10.0.0.3/tcp/4100/p2p/{other}\"]",
            device(2)
        ));
        let e = net_config(&text, 1, device(1)).unwrap_err().to_string();
        assert!(e.contains("static_peers[1]") && e.contains("roster"), "{e}");
    }
}
