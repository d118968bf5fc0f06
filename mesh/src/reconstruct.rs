//! The one reconstruction routine: from the shares any `>= t + 1` parties sent, reconstruct
//! every element and check that **all** of them lie on one degree-t polynomial, so a single
//! wrong share (a bug, a fault, a tampering party) is caught wherever it sits.
//!
//! The polynomial is interpolated from the first `t + 1` parties given and evaluated at every
//! other party's point; any share off it fails the reconstruction with the element and the
//! party named (when the wrong share can be pinpointed, the one whose removal leaves the
//! others consistent).

use crate::error::{MeshError, check_len};
use crate::field::{Fp, lagrange_at};
use crate::ids::PartyId;
use crate::shamir::{Share, Threshold};

/// A party's Shamir evaluation point (its 1-based number).
fn point(p: PartyId) -> Fp {
    Fp::from(u64::from(p.number()))
}

/// The polynomial through the shares of `base` (positions into the received list), ready to
/// be evaluated at zero and at the other parties' points.
struct Interpolation {
    base: Vec<usize>,
    at_zero: Vec<Fp>,
    /// `(position, coefficients at that party's point)` of every party not in `base`.
    checks: Vec<(usize, Vec<Fp>)>,
}

impl Interpolation {
    fn new(parties: &[PartyId], base: Vec<usize>) -> Interpolation {
        let pts: Vec<Fp> = base.iter().map(|&i| point(parties[i])).collect();
        let checks = (0..parties.len())
            .filter(|i| !base.contains(i))
            .map(|i| (i, lagrange_at(&pts, point(parties[i]))))
            .collect();
        Interpolation {
            at_zero: lagrange_at(&pts, Fp::ZERO),
            base,
            checks,
        }
    }

    fn eval(&self, coeffs: &[Fp], received: &[(PartyId, &[Share])], e: usize) -> Fp {
        self.base
            .iter()
            .zip(coeffs)
            .fold(Fp::ZERO, |acc, (&i, &c)| acc + c * received[i].1[e].0)
    }

    /// The first party (position) whose share of element `e` is off the polynomial.
    fn first_off(&self, received: &[(PartyId, &[Share])], e: usize) -> Option<usize> {
        self.checks
            .iter()
            .find(|(k, c)| self.eval(c, received, e) != received[*k].1[e].0)
            .map(|(k, _)| *k)
    }
}

/// Validate the received set: at least `t + 1` distinct parties of the quorum, every vector
/// as long as the first.
fn check_received(th: &Threshold, received: &[(PartyId, &[Share])]) -> Result<usize, MeshError> {
    let need = th.t() + 1;
    if received.len() < need {
        return Err(MeshError::TooFewShares {
            got: received.len(),
            need,
        });
    }
    let indices: Vec<usize> = received.iter().map(|(p, _)| p.index()).collect();
    th.check_set(&indices, indices.len())?;
    let len = received[0].1.len();
    for (_, v) in received {
        check_len("shares received from one party", len, v.len())?;
    }
    Ok(len)
}

/// Which party's share of element `e` is wrong: the one whose removal leaves the others on
/// one degree-t polynomial, when exactly one such party exists and the others still overdetermine
/// the polynomial (at least `t + 2` of them); otherwise `fallback`.
fn culprit(
    parties: &[PartyId],
    received: &[(PartyId, &[Share])],
    t: usize,
    e: usize,
    fallback: usize,
) -> usize {
    if received.len() < t + 3 {
        return fallback;
    }
    let mut found = (0..received.len()).filter(|&p| {
        let base: Vec<usize> = (0..received.len())
            .filter(|&i| i != p)
            .take(t + 1)
            .collect();
        let mut rest = Interpolation::new(parties, base);
        rest.checks.retain(|(k, _)| *k != p);
        rest.first_off(received, e).is_none()
    });
    match (found.next(), found.next()) {
        (Some(p), None) => p,
        _ => fallback,
    }
}

/// Reconstruct every element from the shares of `received` (one vector per party, all the
/// same length, at least `t + 1` distinct parties of `th`'s quorum) and check that all the
/// shares of each element lie on one degree-t polynomial.
///
/// Errors: [`MeshError::TooFewShares`], [`MeshError::PartyOutOfRange`] /
/// [`MeshError::DuplicateParty`] for a bad party set, [`MeshError::LengthMismatch`] for vectors
/// of different lengths, and [`MeshError::Inconsistent`] naming the element and the party
/// whose share disagrees.
pub fn reconstruct_all(
    th: &Threshold,
    received: &[(PartyId, &[Share])],
) -> Result<Vec<Fp>, MeshError> {
    let len = check_received(th, received)?;
    let t = th.t();
    let parties: Vec<PartyId> = received.iter().map(|(p, _)| *p).collect();
    let poly = Interpolation::new(&parties, (0..=t).collect());
    (0..len)
        .map(|e| {
            if let Some(off) = poly.first_off(received, e) {
                let party = culprit(&parties, received, t, e, off);
                return Err(MeshError::Inconsistent {
                    element: e,
                    party: parties[party].index(),
                });
            }
            Ok(poly.eval(&poly.at_zero, received, e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shamir::deal;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha12Rng;

    /// Shares of `secrets` for all `n` parties, as one vector per party.
    fn dealt(secrets: &[Fp], t: usize, n: usize, seed: u64) -> Vec<Vec<Share>> {
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        let mut per_party = vec![Vec::new(); n];
        for &s in secrets {
            for (p, sh) in deal(s, t, n, &mut rng).into_iter().enumerate() {
                per_party[p].push(sh);
            }
        }
        per_party
    }

    fn view(shares: &[Vec<Share>], parties: &[usize]) -> Vec<(PartyId, Vec<Share>)> {
        parties
            .iter()
            .map(|&p| (PartyId::from_index(p).unwrap(), shares[p].clone()))
            .collect()
    }

    fn run(th: &Threshold, got: &[(PartyId, Vec<Share>)]) -> Result<Vec<Fp>, MeshError> {
        let refs: Vec<(PartyId, &[Share])> = got.iter().map(|(p, v)| (*p, &v[..])).collect();
        reconstruct_all(th, &refs)
    }

    #[test]
    fn any_single_corrupted_share_among_seven_is_caught_and_named() {
        let th = Threshold::new(7, 2).unwrap();
        let secrets: Vec<Fp> = (0..4u64).map(|v| Fp::from(1000 + v)).collect();
        let shares = dealt(&secrets, 2, 7, 1);
        let all: Vec<usize> = (0..7).collect();
        assert_eq!(run(&th, &view(&shares, &all)).unwrap(), secrets);
        for bad in 0..7 {
            for element in 0..secrets.len() {
                let mut got = view(&shares, &all);
                got[bad].1[element] = got[bad].1[element].add_public(1);
                assert_eq!(
                    run(&th, &got),
                    Err(MeshError::Inconsistent {
                        element,
                        party: bad
                    }),
                    "party index {bad}, element {element}"
                );
            }
        }
    }

    #[test]
    fn a_wrong_share_among_t_plus_two_is_caught() {
        // With only t + 2 shares the wrong one cannot be pinpointed, but it is still caught.
        let th = Threshold::new(7, 2).unwrap();
        let shares = dealt(&[Fp::from(9u64)], 2, 7, 2);
        let mut got = view(&shares, &[6, 3, 0, 5]);
        got[1].1[0] = got[1].1[0].add_public(-1);
        assert!(matches!(
            run(&th, &got),
            Err(MeshError::Inconsistent { element: 0, .. })
        ));
    }

    #[test]
    fn bad_sets_are_typed_errors() {
        let th = Threshold::new(5, 2).unwrap();
        let shares = dealt(&[Fp::from(3u64), Fp::from(4u64)], 2, 5, 3);
        assert_eq!(
            run(&th, &view(&shares, &[0, 1])),
            Err(MeshError::TooFewShares { got: 2, need: 3 })
        );
        assert_eq!(
            run(&th, &view(&shares, &[0, 1, 1])),
            Err(MeshError::DuplicateParty(1))
        );
        let mut short = view(&shares, &[0, 1, 2]);
        short[2].1.pop();
        assert!(matches!(
            run(&th, &short),
            Err(MeshError::LengthMismatch { .. })
        ));
        let far = vec![(PartyId::from_index(5).unwrap(), shares[0].clone())];
        let mut far_set = view(&shares, &[0, 1]);
        far_set.extend(far);
        assert_eq!(
            run(&th, &far_set),
            Err(MeshError::PartyOutOfRange { index: 5, n: 5 })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn honest_shares_always_reconstruct(
            (n, t) in (1usize..=4).prop_flat_map(|t| (2 * t + 1..=2 * t + 4, Just(t))),
            secrets in proptest::collection::vec(any::<u64>(), 1..6),
            seed in any::<u64>(),
            order in any::<u64>(),
            extra in 0usize..4,
        ) {
            let th = Threshold::new(n, t).unwrap();
            let secrets: Vec<Fp> = secrets.into_iter().map(Fp::from).collect();
            let shares = dealt(&secrets, t, n, seed);
            // Any set of at least t + 1 parties, in any order.
            let mut parties: Vec<usize> = (0..n).collect();
            let mut rng = ChaCha12Rng::seed_from_u64(order);
            rand::seq::SliceRandom::shuffle(&mut parties[..], &mut rng);
            parties.truncate((t + 1 + extra).min(n));
            prop_assert_eq!(run(&th, &view(&shares, &parties)).unwrap(), secrets);
        }
    }
}
