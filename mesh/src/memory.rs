//! The in-memory transport: every party is a thread, every ordered pair of endpoints has its
//! own channel. Used by the tests and benchmarks; the networked transport implements the same
//! traits.
//!
//! [`run_parties`] and [`run_with_client`] spawn one thread per party (and run the client on
//! the calling thread) and return each party's result.

use crate::Party;
use crate::client::Client;
use crate::error::{MeshError, Origin};
use crate::shamir::Threshold;
use crate::transport::{ClientLink, Transport};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::Duration;

/// How long a party waits for a peer's message before failing with [`MeshError::Timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// One party's end of an in-memory mesh.
#[derive(Debug)]
pub struct MemTransport {
    index: usize,
    to_peers: Vec<Option<Sender<Vec<u8>>>>,
    from_peers: Vec<Option<Receiver<Vec<u8>>>>,
    to_client: Sender<Vec<u8>>,
    from_client: Receiver<Vec<u8>>,
    timeout: Duration,
}

/// The client's end of an in-memory mesh.
#[derive(Debug)]
pub struct MemClientLink {
    to_parties: Vec<Sender<Vec<u8>>>,
    from_parties: Vec<Receiver<Vec<u8>>>,
    timeout: Duration,
}

/// Build an in-memory mesh of `n` parties and a client.
pub fn mesh(n: usize) -> (Vec<MemTransport>, MemClientLink) {
    let mut to: Vec<Vec<Option<Sender<Vec<u8>>>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    let mut from: Vec<Vec<Option<Receiver<Vec<u8>>>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    for i in 0..n {
        for j in 0..n {
            if i != j {
                let (s, r) = channel();
                to[i][j] = Some(s);
                from[j][i] = Some(r);
            }
        }
    }
    let mut parties = Vec::with_capacity(n);
    let mut to_parties = Vec::with_capacity(n);
    let mut from_parties = Vec::with_capacity(n);
    for (i, (to_peers, from_peers)) in to.into_iter().zip(from).enumerate() {
        let (cs, pr) = channel();
        let (ps, cr) = channel();
        to_parties.push(cs);
        from_parties.push(cr);
        parties.push(MemTransport {
            index: i,
            to_peers,
            from_peers,
            to_client: ps,
            from_client: pr,
            timeout: DEFAULT_TIMEOUT,
        });
    }
    (
        parties,
        MemClientLink {
            to_parties,
            from_parties,
            timeout: DEFAULT_TIMEOUT,
        },
    )
}

fn recv(r: &Receiver<Vec<u8>>, timeout: Duration, who: Origin) -> Result<Vec<u8>, MeshError> {
    r.recv_timeout(timeout).map_err(|e| match e {
        RecvTimeoutError::Timeout => who.error(MeshError::Timeout),
        RecvTimeoutError::Disconnected => who.error(MeshError::Disconnected),
    })
}

impl MemTransport {
    /// Change how long to wait for a message.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Send raw bytes to a peer outside any protocol step (tests of malformed messages).
    pub fn send_raw(&mut self, peer: usize, msg: Vec<u8>) -> Result<(), MeshError> {
        let s =
            self.to_peers
                .get(peer)
                .and_then(Option::as_ref)
                .ok_or(MeshError::PartyOutOfRange {
                    index: peer,
                    n: self.to_peers.len(),
                })?;
        s.send(msg)
            .map_err(|_| Origin::Party(peer).error(MeshError::Disconnected))
    }
}

impl Transport for MemTransport {
    fn parties(&self) -> usize {
        self.to_peers.len()
    }

    fn index(&self) -> usize {
        self.index
    }

    fn exchange(
        &mut self,
        outgoing: Vec<Option<Vec<u8>>>,
        expect: &[bool],
    ) -> Result<Vec<Option<Vec<u8>>>, MeshError> {
        let n = self.to_peers.len();
        if outgoing.len() != n || expect.len() != n {
            return Err(MeshError::LengthMismatch {
                what: "exchange arguments (one entry per party)",
                expected: n,
                got: outgoing.len().min(expect.len()),
            });
        }
        for (j, msg) in outgoing.into_iter().enumerate() {
            if let Some(m) = msg {
                let s = self.to_peers[j]
                    .as_ref()
                    .ok_or(MeshError::PartyOutOfRange { index: j, n })?;
                s.send(m)
                    .map_err(|_| Origin::Party(j).error(MeshError::Disconnected))?;
            }
        }
        let mut out = Vec::with_capacity(n);
        for (j, &e) in expect.iter().enumerate() {
            if e {
                let r = self.from_peers[j]
                    .as_ref()
                    .ok_or(MeshError::PartyOutOfRange { index: j, n })?;
                out.push(Some(recv(r, self.timeout, Origin::Party(j))?));
            } else {
                out.push(None);
            }
        }
        Ok(out)
    }

    fn send_to_client(&mut self, msg: Vec<u8>) -> Result<(), MeshError> {
        self.to_client
            .send(msg)
            .map_err(|_| Origin::Client.error(MeshError::Disconnected))
    }

    fn recv_from_client(&mut self) -> Result<Vec<u8>, MeshError> {
        recv(&self.from_client, self.timeout, Origin::Client)
    }
}

impl MemClientLink {
    /// Change how long to wait for a message.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }
}

impl ClientLink for MemClientLink {
    fn parties(&self) -> usize {
        self.to_parties.len()
    }

    fn send_to_party(&mut self, party: usize, msg: Vec<u8>) -> Result<(), MeshError> {
        let n = self.to_parties.len();
        self.to_parties
            .get(party)
            .ok_or(MeshError::PartyOutOfRange { index: party, n })?
            .send(msg)
            .map_err(|_| Origin::Party(party).error(MeshError::Disconnected))
    }

    fn recv_from_party(&mut self, party: usize) -> Result<Vec<u8>, MeshError> {
        let n = self.from_parties.len();
        let r = self
            .from_parties
            .get(party)
            .ok_or(MeshError::PartyOutOfRange { index: party, n })?;
        recv(r, self.timeout, Origin::Party(party))
    }
}

/// A 32-byte seed for endpoint `who` derived from a test seed (not for production use).
pub fn derive_seed(seed: u64, who: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut x = seed ^ who.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for chunk in out.chunks_mut(8) {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

/// Run `f` on each of `n` parties of an `(n, t)` in-memory mesh, one thread per party, and
/// return their results in party order. Party randomness derives from `seed`.
pub fn run_parties<R, F>(n: usize, t: usize, seed: u64, f: F) -> Result<Vec<R>, MeshError>
where
    R: Send,
    F: Fn(&mut Party<MemTransport>) -> R + Sync,
{
    run_with_client(n, t, seed, |_| (), f).map(|(_, r)| r)
}

/// Like [`run_parties`], with a client: `client` runs on the calling thread while the parties
/// run on theirs.
pub fn run_with_client<C, R, FC, F>(
    n: usize,
    t: usize,
    seed: u64,
    client: FC,
    f: F,
) -> Result<(C, Vec<R>), MeshError>
where
    R: Send,
    FC: FnOnce(&mut Client<MemClientLink>) -> C,
    F: Fn(&mut Party<MemTransport>) -> R + Sync,
{
    let th = Threshold::new(n, t)?;
    let (transports, link) = mesh(n);
    let mut parties = Vec::with_capacity(n);
    for (i, tr) in transports.into_iter().enumerate() {
        parties.push(Party::new(th, i, tr, derive_seed(seed, i as u64 + 1))?);
    }
    let mut cl = Client::new(th, link, derive_seed(seed, 0))?;
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = parties
            .into_iter()
            .map(|mut p| s.spawn(move || f(&mut p)))
            .collect();
        let c = client(&mut cl);
        drop(cl);
        let mut out = Vec::with_capacity(n);
        for h in handles {
            match h.join() {
                Ok(r) => out.push(r),
                Err(e) => std::panic::resume_unwind(e),
            }
        }
        Ok((c, out))
    })
}
