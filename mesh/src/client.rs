//! The client (data owner): not a party. It shares its inputs to the parties and reconstructs
//! the outputs they send it; nobody else ever holds enough shares to reconstruct them.

use crate::error::{MeshError, Origin};
use crate::field::Fp;
use crate::frame::{Reader, check_frame, frame, push};
use crate::ids::PartyId;
use crate::reconstruct::reconstruct_all;
use crate::shamir::{Share, Threshold, eval_poly};
use crate::transport::ClientLink;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng;
use zeroize::{Zeroize, Zeroizing};

/// The client's endpoint.
pub struct Client<L: ClientLink> {
    th: Threshold,
    link: L,
    rng: ChaCha12Rng,
    round: u32,
}

impl<L: ClientLink> core::fmt::Debug for Client<L> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("threshold", &self.th)
            .field("round", &self.round)
            .finish_non_exhaustive()
    }
}

impl<L: ClientLink> Client<L> {
    /// A client for the quorum `th` over `link`, with sharing randomness seeded by `seed`.
    pub fn new(th: Threshold, link: L, seed: [u8; 32]) -> Result<Self, MeshError> {
        if link.parties() != th.n() {
            return Err(MeshError::LengthMismatch {
                what: "client link parties",
                expected: th.n(),
                got: link.parties(),
            });
        }
        Ok(Client {
            th,
            link,
            rng: ChaCha12Rng::from_seed(seed),
            round: 0,
        })
    }

    /// Like [`Client::new`], seeded from the operating system.
    pub fn with_os_rng(th: Threshold, link: L) -> Result<Self, MeshError> {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let c = Client::new(th, link, seed);
        seed.zeroize();
        c
    }

    /// Share fixed-point values (raw integers) with fresh degree-t polynomials: one message per
    /// party. The parties receive them with [`crate::Party::input_from_client`].
    pub fn share_input(&mut self, values: &[i64]) -> Result<(), MeshError> {
        let v: Vec<Fp> = values.iter().map(|&x| Fp::from_i64(x)).collect();
        self.share_field(&v)
    }

    /// Share field elements.
    pub fn share_field(&mut self, values: &[Fp]) -> Result<(), MeshError> {
        let (n, t) = (self.th.n(), self.th.t());
        let round = self.next_round();
        let mut bufs: Vec<Vec<u8>> = (0..n).map(|_| frame(round, values.len())).collect();
        let mut coeffs = Zeroizing::new(vec![Fp::ZERO; t]);
        for &v in values {
            for c in coeffs.iter_mut() {
                *c = Fp::random(&mut self.rng);
            }
            for (j, buf) in bufs.iter_mut().enumerate() {
                push(buf, eval_poly(v, &coeffs, j as u64 + 1));
            }
        }
        for (j, buf) in bufs.into_iter().enumerate() {
            self.link.send_to_party(j, buf)?;
        }
        Ok(())
    }

    /// Receive `count` output shares from every party and reconstruct them as field elements.
    /// Every party's share is checked to lie on one degree-t polynomial
    /// ([`crate::reconstruct_all`]).
    pub fn reconstruct_field(&mut self, count: usize) -> Result<Vec<Fp>, MeshError> {
        let round = self.next_round();
        let mut received: Vec<(PartyId, Vec<Share>)> = Vec::with_capacity(self.th.n());
        for party in PartyId::all(self.th.n()) {
            let from = Origin::Party(party.index());
            let mut msg = self.link.recv_from_party(party.index())?;
            let payload = check_frame(&msg, round, count, from)?;
            let mut rd = Reader::new(payload, from);
            let v = (0..count)
                .map(|_| rd.next().map(Share))
                .collect::<Result<Vec<_>, _>>();
            msg.zeroize();
            received.push((party, v?));
        }
        let views: Vec<(PartyId, &[Share])> =
            received.iter().map(|(p, v)| (*p, v.as_slice())).collect();
        reconstruct_all(&self.th, &views)
    }

    /// Receive and reconstruct `count` outputs as signed 64-bit integers (fixed-point raw
    /// values or indices).
    pub fn reconstruct(&mut self, count: usize) -> Result<Vec<i64>, MeshError> {
        self.reconstruct_field(count)?
            .iter()
            .enumerate()
            .map(|(i, v)| i64::try_from(v.to_i128()).map_err(|_| MeshError::Overflow(i)))
            .collect()
    }

    fn next_round(&mut self) -> u32 {
        let r = self.round;
        self.round = self.round.wrapping_add(1);
        r
    }
}
