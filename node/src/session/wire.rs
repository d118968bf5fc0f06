//! What client and parties say to each other: the generation request, the control messages
//! and their replies, and the one codec of the shares the client sends and receives.
//!
//! Control bodies are postcard behind the mesh's control version byte
//! ([`mesh_net::frame::encode_control`]); share payloads are
//! `[version][count u32 LE][count x 16-byte shares]`. Decoders check versions and lengths
//! before allocating and return [`WireError`], never panic.

use mesh::{PartyId, Share};
use mesh_net::SessionId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Random identifier of one generation request.
pub type SessionKey = [u8; 16];

/// Version byte of input and output share payloads.
const PAYLOAD_VERSION: u8 = 1;

/// Short hex form of a session key for logs and messages.
pub fn key_hex(key: &SessionKey) -> String {
    key.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Which stream of a session a frame belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Client -> parties: input shares (stable across epochs).
    Input,
    /// Parties <-> parties: MPC rounds of one epoch.
    Rounds(u32),
    /// Parties -> client: output shares of one epoch.
    Output(u32),
}

/// The mesh session id of one stream of a generation.
pub fn frame_session(key: &SessionKey, stream: Stream) -> SessionId {
    let (kind, epoch) = match stream {
        Stream::Input => (1u8, 0u32),
        Stream::Rounds(e) => (2, e),
        Stream::Output(e) => (3, e),
    };
    let mut h = Sha256::new();
    h.update(b"sotto/session/1");
    h.update(key);
    h.update([kind]);
    h.update(epoch.to_le_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    SessionId(u64::from_le_bytes(b))
}

/// How the next token is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Selection {
    /// Argmax inside MPC; only the token's index is opened, to the client (the default).
    ArgmaxInMpc,
    /// The logits' shares go to the client, which samples and shares the chosen token back.
    SampleAtClient,
}

/// A generation's public parameters, known to the client and every party: the one domain type
/// a request is made of, from the command line to the wire. Its *units* are forward passes:
/// unit `i` runs the model at position `i`; the prompt's last unit and every later one end
/// with an output to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// Prompt tokens (BOS included).
    pub prompt_len: u32,
    /// Tokens to generate.
    pub steps: u32,
    /// How tokens are chosen.
    pub selection: Selection,
    /// Also open every step's logits to the client (for `--verify`).
    pub reveal_logits: bool,
}

/// A generation request the model cannot serve.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GenerationError {
    /// An empty prompt.
    #[error("the prompt must hold at least BOS")]
    NoPrompt,
    /// Zero steps.
    #[error("steps must be at least 1")]
    NoSteps,
    /// More positions than the model's context.
    #[error(
        "prompt ({prompt_len} tokens) + steps ({steps}) needs {positions} positions, the model has {seq_len}; use fewer steps"
    )]
    TooLong {
        /// Prompt tokens.
        prompt_len: u32,
        /// Steps asked for.
        steps: u32,
        /// Positions they need.
        positions: usize,
        /// The model's context.
        seq_len: usize,
    },
}

impl Generation {
    /// Checks the request against the model's context of `seq_len` positions.
    pub fn check(&self, seq_len: usize) -> Result<(), GenerationError> {
        if self.prompt_len == 0 {
            return Err(GenerationError::NoPrompt);
        }
        if self.steps == 0 {
            return Err(GenerationError::NoSteps);
        }
        let positions = self.units() as usize;
        if positions > seq_len {
            return Err(GenerationError::TooLong {
                prompt_len: self.prompt_len,
                steps: self.steps,
                positions,
                seq_len,
            });
        }
        Ok(())
    }

    /// Forward passes in all: the prompt, then one per generated token but the last.
    pub fn units(&self) -> u32 {
        (self.prompt_len + self.steps).saturating_sub(1)
    }

    /// Whether unit `u` starts from shares the client sends.
    pub fn client_input(&self, u: u32) -> bool {
        u < self.prompt_len || self.selection == Selection::SampleAtClient
    }

    /// The first unit that ends with an output to the client.
    pub fn first_output(&self) -> u32 {
        self.prompt_len.saturating_sub(1)
    }

    /// Whether the client receives the logits' shares.
    pub fn opens_logits(&self) -> bool {
        self.reveal_logits || self.selection == Selection::SampleAtClient
    }

    /// Shares in one unit's output: the logits when they are opened, then the token's index
    /// when the argmax runs inside MPC.
    pub fn output_len(&self, vocab: usize) -> usize {
        (if self.opens_logits() { vocab } else { 0 })
            + usize::from(self.selection == Selection::ArgmaxInMpc)
    }
}

/// A client's request for one generation (public parameters only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRequest {
    /// The session's random key.
    pub key: SessionKey,
    /// What to generate.
    pub generation: Generation,
    /// The parties taking part (sorted); the first `2t + 1` are active.
    pub participants: Vec<PartyId>,
    /// The share summary the client expects (the party refuses another).
    pub model_sha256: [u8; 32],
    /// The provisioning the client expects.
    pub provisioning_id: [u8; 16],
}

/// A control message (client <-> party).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Control {
    /// Client -> party: the public facts of the model this party serves.
    Info,
    /// Client -> party: start a generation.
    Open(SessionRequest),
    /// Client -> party: stop where you are and report (answered with [`Reply::Report`]).
    Pause {
        /// The session.
        key: SessionKey,
        /// The epoch to stop.
        epoch: u32,
    },
    /// Client -> party: continue in `epoch` with `live`, from unit `redo`.
    Resume {
        /// The session.
        key: SessionKey,
        /// The new epoch.
        epoch: u32,
        /// The parties that go on (sorted).
        live: Vec<PartyId>,
        /// The unit every live party rolls back to.
        redo: u32,
    },
    /// Client -> party: the generation is over (answered with [`Reply::Closed`]).
    Close {
        /// The session.
        key: SessionKey,
    },
    /// Client -> party: give up the generation.
    Abort {
        /// The session.
        key: SessionKey,
        /// Why, for the party's log.
        reason: String,
    },
    /// Party -> client: a round of this party failed; please recover.
    Stalled {
        /// The session.
        key: SessionKey,
        /// The reporting party.
        party: PartyId,
        /// The epoch the round belonged to.
        epoch: u32,
        /// What failed.
        reason: String,
    },
    /// Anyone -> party: who is connected, with which link quality.
    Status,
}

/// A party's position in a session, for recovery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The reporting party.
    pub party: PartyId,
    /// Its epoch.
    pub epoch: u32,
    /// The unit the party is in (every earlier unit is complete and its output sent).
    pub at: u32,
    /// The earliest unit the party can redo.
    pub oldest: u32,
    /// Whether the party has stopped (false: it did not stop in time).
    pub stopped: bool,
    /// Set when the party cannot continue at all.
    pub fatal: Option<String>,
}

/// Public facts about the model a party serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The answering party.
    pub party: PartyId,
    /// Parties of the provisioning.
    pub n: u8,
    /// Threshold of the provisioning.
    pub t: u8,
    /// sha256 of the model file.
    pub model_sha256: [u8; 32],
    /// The provisioning run.
    pub provisioning_id: [u8; 16],
    /// Vocabulary size.
    pub vocab_size: u32,
    /// Context length.
    pub seq_len: u32,
    /// Model width.
    pub dim: u32,
    /// Transformer layers.
    pub n_layers: u32,
}

/// One link as a node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// The party at the other end (None: a client).
    pub party: Option<PartyId>,
    /// Its peer ID.
    pub peer: String,
    /// Last measured round-trip time.
    pub rtt_us: Option<u64>,
    /// The listen addresses of each process this node is connected to under that peer ID
    /// (more than one entry: the peer ID runs twice).
    pub instances: Vec<Vec<String>>,
}

/// A node's answer to [`Control::Status`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The model it serves.
    pub info: ModelInfo,
    /// Its peer ID.
    pub peer: String,
    /// The parties it sees.
    pub quorum: Vec<PartyId>,
    /// Whether 2t+1 of them are connected.
    pub formed: bool,
    /// Its links.
    pub links: Vec<LinkStatus>,
    /// Sessions running.
    pub sessions: u32,
    /// Its device profile.
    pub profile: String,
    /// Seconds since it started.
    pub uptime_s: u64,
}

/// Traffic and time of one party over a whole session (all epochs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStats {
    /// Online rounds.
    pub online_rounds: u64,
    /// Online bytes sent.
    pub online_bytes: u64,
    /// Preprocessing rounds.
    pub offline_rounds: u64,
    /// Preprocessing bytes sent.
    pub offline_bytes: u64,
    /// Epochs the session went through.
    pub epochs: u32,
    /// Microseconds the session's thread worked, from its start to its last output.
    pub busy_us: u64,
    /// Of which generating preprocessing material.
    pub prep_us: u64,
}

impl SessionStats {
    pub(crate) fn add(&mut self, c: &mesh::Counters) {
        self.online_rounds += c.online.rounds;
        self.online_bytes += c.online.bytes;
        self.offline_rounds += c.offline.rounds;
        self.offline_bytes += c.offline.bytes;
    }
}

/// A party's answer to a control message.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Reply {
    /// To [`Control::Info`].
    Info(ModelInfo),
    /// To [`Control::Open`]: the session runs.
    Accepted,
    /// Refused, with the reason.
    Rejected(String),
    /// Done.
    Ok,
    /// To [`Control::Pause`].
    Report(Report),
    /// To [`Control::Close`].
    Closed(SessionStats),
    /// To [`Control::Status`].
    Status(Box<NodeStatus>),
    /// To [`Control::Open`]: refused for now, the party runs its `max_sessions` already; the
    /// client tries again later (with backoff), the request is not queued.
    Busy(String),
}

/// A message or payload that could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A control message that is not one of ours.
    #[error("malformed control message: {0}")]
    Control(String),
    /// A share payload that is not what the step expects.
    #[error("malformed shares from {from}: {why}")]
    Shares {
        /// Who sent it.
        from: String,
        /// What is wrong.
        why: String,
    },
}

/// Encodes a control message or reply.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Encoding our own enums into a Vec cannot fail; an empty body would be refused by the
    // receiver's decoder anyway.
    mesh_net::frame::encode_control(msg)
        .map(|mut b| b.split_off(1))
        .unwrap_or_default()
}

/// Decodes a control message or reply.
pub fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    let mut framed = Vec::with_capacity(body.len() + 1);
    framed.push(mesh_net::frame::WIRE_VERSION);
    framed.extend_from_slice(body);
    mesh_net::frame::decode_control(&framed).map_err(|e| WireError::Control(e.to_string()))
}

/// Encodes shares for the client's inputs and the parties' outputs.
pub fn encode_shares(xs: &[Share]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + 16 * xs.len());
    v.push(PAYLOAD_VERSION);
    v.extend_from_slice(&(xs.len() as u32).to_le_bytes());
    for x in xs {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

/// Parses a payload of exactly `count` shares; anything else is an error naming `from`.
pub fn decode_shares(bytes: &[u8], count: usize, from: &str) -> Result<Vec<Share>, WireError> {
    let bad = |why: String| WireError::Shares {
        from: from.to_owned(),
        why,
    };
    let (&version, rest) = bytes.split_first().ok_or_else(|| bad("empty".into()))?;
    if version != PAYLOAD_VERSION {
        return Err(bad(format!("version {version}")));
    }
    let (head, body) = rest
        .split_at_checked(4)
        .ok_or_else(|| bad("short header".into()))?;
    let mut h = [0u8; 4];
    h.copy_from_slice(head);
    let got = u32::from_le_bytes(h) as usize;
    if got != count || body.len() != 16 * count {
        return Err(bad(format!(
            "{got} shares in {} bytes, expected {count}",
            body.len()
        )));
    }
    body.chunks_exact(16)
        .enumerate()
        .map(|(i, c)| {
            let mut b = [0u8; 16];
            b.copy_from_slice(c);
            Share::from_le_bytes(b).ok_or_else(|| bad(format!("element {i} is not canonical")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party(n: u8) -> PartyId {
        PartyId::from_number(n).unwrap()
    }

    #[test]
    fn a_resume_naming_party_0_does_not_decode() {
        let resume = Control::Resume {
            key: [0; 16],
            epoch: 1,
            live: vec![party(1), party(2), party(3)],
            redo: 0,
        };
        let mut body = encode(&resume);
        // The live set is the only place the bytes [3, 1, 2, 3] occur (length, then numbers).
        let at = body
            .windows(4)
            .position(|w| w == [3, 1, 2, 3])
            .expect("the encoded live set");
        body[at + 1] = 0;
        assert!(matches!(
            decode::<Control>(&body),
            Err(WireError::Control(_))
        ));
    }

    #[test]
    fn frame_sessions_differ_per_stream_and_epoch() {
        let k = [7u8; 16];
        let ids = [
            frame_session(&k, Stream::Input),
            frame_session(&k, Stream::Rounds(0)),
            frame_session(&k, Stream::Rounds(1)),
            frame_session(&k, Stream::Output(0)),
            frame_session(&k, Stream::Output(1)),
        ];
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(ids[0], frame_session(&k, Stream::Input));
    }

    #[test]
    fn control_messages_round_trip_and_garbage_is_an_error() {
        let req = SessionRequest {
            key: [1; 16],
            generation: Generation {
                prompt_len: 5,
                steps: 64,
                selection: Selection::ArgmaxInMpc,
                reveal_logits: false,
            },
            participants: vec![party(1), party(2), party(3), party(4)],
            model_sha256: [2; 32],
            provisioning_id: [3; 16],
        };
        let body = encode(&Control::Open(req.clone()));
        match decode::<Control>(&body).unwrap() {
            Control::Open(r) => assert_eq!(r, req),
            other => panic!("{other:?}"),
        }
        assert!(decode::<Control>(&[0xff, 0xff, 0xff]).is_err());
        assert!(decode::<Reply>(&[]).is_err());
        // Party number 0 does not exist: a request naming it does not decode.
        let mut bad = body.clone();
        let at = bad.len() - 32 - 16 - 4;
        bad[at] = 0;
        assert!(decode::<Control>(&bad).is_err());
    }

    #[test]
    fn share_payloads_are_checked() {
        let xs = vec![Share::public(3), Share::public(-1)];
        let b = encode_shares(&xs);
        assert_eq!(decode_shares(&b, 2, "p").unwrap(), xs);
        assert!(decode_shares(&b, 3, "p").is_err());
        assert!(decode_shares(&b[..b.len() - 1], 2, "p").is_err());
        assert!(decode_shares(&[], 0, "p").is_err());
        let mut bad = b.clone();
        bad[5..21].copy_from_slice(&[0xff; 16]);
        assert!(
            decode_shares(&bad, 2, "p")
                .unwrap_err()
                .to_string()
                .contains("canonical")
        );
    }

    #[test]
    fn a_generation_counts_units_and_outputs() {
        let p = Generation {
            prompt_len: 5,
            steps: 64,
            selection: Selection::ArgmaxInMpc,
            reveal_logits: false,
        };
        assert_eq!(p.units(), 68);
        assert_eq!(p.first_output(), 4);
        assert!(p.client_input(4) && !p.client_input(5));
        assert_eq!(p.output_len(512), 1);
        let s = Generation {
            selection: Selection::SampleAtClient,
            ..p
        };
        assert!(s.client_input(40));
        assert_eq!(s.output_len(512), 512);
        assert!(p.check(68).is_ok());
        assert!(matches!(
            Generation { steps: 65, ..p }.check(68),
            Err(GenerationError::TooLong {
                positions: 69,
                seq_len: 68,
                ..
            })
        ));
        assert_eq!(
            Generation { steps: 0, ..p }.check(68),
            Err(GenerationError::NoSteps)
        );
        assert_eq!(
            Generation { prompt_len: 0, ..p }.check(68),
            Err(GenerationError::NoPrompt)
        );
    }
}
