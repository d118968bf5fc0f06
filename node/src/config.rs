//! `node.toml`: what `sotto run` needs to start a mesh node, and its validation.
//!
//! Every error names the file, the field and the fix; `docs/deployment.md` documents each
//! field. Relative paths are resolved against the folder holding the config file, so a node's
//! folder can be moved as a whole.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use firmware_profiles::{DEFAULT_PROFILE, Profile};
use mesh::PartyId;
use mesh_net::{LinkProfile, Multiaddr, PeerId};
use mesh_net::{NetConfig, PreSharedKey, ShareSummary};
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
    allowed_peers: Vec<String>,
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
    pub allowed_peers: Vec<PeerId>,
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
        let listen = f.listen(&raw.listen)?;
        let allowed_peers = f.allowed_peers(&raw.allowed_peers)?;
        let static_peers = f.static_peers(&raw.static_peers, &allowed_peers)?;
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
            allowed_peers,
            profile,
            mdns: raw.mdns,
            link,
            round_timeout: Duration::from_millis(raw.round_timeout_ms),
            recovery_timeout: Duration::from_millis(raw.recovery_timeout_ms),
            max_sessions: raw.max_sessions,
        })
    }

    /// The mesh configuration of this node as party `party` holding `summary`.
    pub fn net_config(
        &self,
        psk: PreSharedKey,
        summary: ShareSummary,
        party: PartyId,
    ) -> NetConfig {
        let mut net = NetConfig::new(psk, self.allowed_peers.clone(), summary, Some(party));
        net.listen = self.listen.clone();
        net.static_peers = self.static_peers.clone();
        net.mdns = self.mdns;
        net.link = self.link;
        // A daemon's links carry sessions minutes apart: keep them open; a dead peer shows up as
        // a closed connection or a failed ping.
        net.idle_connection_timeout = Duration::from_secs(24 * 3600);
        net
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

    fn allowed_peers(&self, raw: &[String]) -> Result<Vec<PeerId>, ConfigError> {
        let mut allowed = Vec::with_capacity(raw.len());
        for (i, p) in raw.iter().enumerate() {
            allowed.push(p.parse().map_err(|e| {
                self.invalid(
                    format!("allowed_peers[{i}]"),
                    p,
                    format!("not a peer ID ({e})"),
                    "copy the peer ID that `sotto run` prints at start (it begins with 12D3KooW)",
                )
            })?);
        }
        if allowed.is_empty() {
            return Err(self.invalid(
                "allowed_peers".into(),
                "[]",
                "the allow-list is empty, so no device or client could ever join".into(),
                "list the peer ID of every other device and of every client",
            ));
        }
        Ok(allowed)
    }

    fn static_peers(
        &self,
        raw: &[String],
        allowed: &[PeerId],
    ) -> Result<Vec<Multiaddr>, ConfigError> {
        let mut peers = Vec::with_capacity(raw.len());
        for (i, a) in raw.iter().enumerate() {
            let field = format!("static_peers[{i}]");
            let example = "/ip4/192.168.1.12/tcp/4100/p2p/12D3KooW...";
            let addr = self.multiaddr(field.clone(), a, example)?;
            let Some(mesh_net::Protocol::P2p(peer)) = addr.iter().last() else {
                return Err(self.invalid(
                    field,
                    a,
                    "the address does not end in /p2p/<peer id>".into(),
                    "append the device's peer ID (`sotto run` prints it at start)",
                ));
            };
            if !allowed.contains(&peer) {
                return Err(self.invalid(
                    field,
                    a,
                    format!(
                        "peer {peer} is not in allowed_peers, so its connection would be refused"
                    ),
                    "add its peer ID to allowed_peers or remove the address",
                ));
            }
            peers.push(addr);
        }
        Ok(peers)
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
            "identity = \"node.key\"\nshare_file = \"party-1.share\"\npsk_file = \"mesh.psk\"\nallowed_peers = [\"{PEER}\"]\n{extra}"
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
        let other = "12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5nHmRu8fVNcdS5dd2Kc";
        let e = parse(&minimal(&format!(
            "static_peers = [\"/ip4/10.0.0.2/tcp/4100/p2p/{other}\"]"
        )))
        .unwrap_err()
        .to_string();
        assert!(e.contains("allowed_peers"), "{e}");
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
        let e = parse(
            "identity = \"a\"\nshare_file = \"b\"\npsk_file = \"c\"\nallowed_peers = [\"x\"]",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("allowed_peers[0]"), "{e}");
    }
}
