//! Comparisons on shares: [`Party::ltz`], step functions, and the comparison tree of
//! [`fx::max_argmax`](crate::fx::max_argmax) ([`Party::max`], [`Party::argmax`], [`Party::max_argmax`]) with its
//! one-hot variant [`Party::argmax_onehot`].

use crate::Party;
use crate::error::MeshError;
use crate::field::Fp;
use crate::fx::StepGuess;
use crate::nonlinear::rows::rows_of;
use crate::prep::demand::Demand;
use crate::protocols::ltz::LtzJob;
use crate::protocols::mul::MulJob;
use crate::secret::{Secret, raw, secret, shares};
use crate::shamir::{Share, Wide};
use crate::transport::Transport;

/// The state of the comparison tree between levels: every row's remaining candidates (values,
/// and indices when wanted) and which of them are still unreduced (degree 2t).
struct MaxTree {
    rows: usize,
    /// Candidates per row at this level.
    len: usize,
    want_index: bool,
    vals: Secret,
    idx: Secret,
    /// Whether `vals` / `idx` are degree-2t (unreduced) and whether `idx` is still public.
    vals_wide: bool,
    idx_wide: bool,
    idx_secret: bool,
}

impl MaxTree {
    fn new(xs: &[Share], rows: usize, row_len: usize, want_index: bool) -> MaxTree {
        MaxTree {
            rows,
            len: row_len,
            want_index,
            vals: raw(xs),
            idx: secret(
                (0..rows)
                    .flat_map(|_| (0..row_len).map(|j| Fp::from(j as u64)))
                    .collect(),
            ),
            vals_wide: false,
            idx_wide: false,
            idx_secret: false,
        }
    }

    fn reduce_idx(&self) -> bool {
        self.want_index && self.idx_wide
    }

    /// The degree reduction of whatever is still wide (an empty job when nothing is).
    fn pending(&self) -> MulJob {
        let mut pending: Vec<Fp> = Vec::new();
        if self.vals_wide {
            pending.extend_from_slice(&self.vals);
        }
        if self.reduce_idx() {
            pending.extend_from_slice(&self.idx);
        }
        MulJob::new(secret(pending))
    }

    /// Take the reduced values and indices of [`MaxTree::pending`]'s job.
    fn take_reduced(&mut self, out: &[Fp]) {
        let mut at = 0;
        if self.vals_wide {
            self.vals = secret(out[..self.vals.len()].to_vec());
            at = self.vals.len();
        }
        if self.reduce_idx() {
            self.idx = secret(out[at..].to_vec());
        }
    }

    /// The differences this level compares: `v[2p] - v[2p+1]` of every pair of every row.
    fn diffs(&self) -> Secret {
        let (len, pairs) = (self.len, self.len / 2);
        secret(
            (0..self.rows)
                .flat_map(|r| {
                    let v = &self.vals[r * len..(r + 1) * len];
                    (0..pairs).map(move |p| v[2 * p] - v[2 * p + 1])
                })
                .collect(),
        )
    }

    /// Keep every pair's winner `a + c (b - a)` (`c = [a < b]`), at degree 2t; an odd last
    /// candidate moves up unchanged.
    fn select(&mut self, c: &[Fp]) {
        let (rows, len, pairs) = (self.rows, self.len, self.len / 2);
        let next = len.div_ceil(2);
        let want = self.want_index;
        let mut nv = Vec::with_capacity(rows * next);
        let mut ni = Vec::with_capacity(if want { rows * next } else { 0 });
        for r in 0..rows {
            let (v, ix) = (
                &self.vals[r * len..(r + 1) * len],
                &self.idx[r * len..(r + 1) * len],
            );
            for p in 0..pairs {
                let ci = c[r * pairs + p];
                nv.push(v[2 * p] + ci * (v[2 * p + 1] - v[2 * p]));
                if want {
                    ni.push(ix[2 * p] + ci * (ix[2 * p + 1] - ix[2 * p]));
                }
            }
            if len % 2 == 1 {
                nv.push(v[len - 1]);
                if want {
                    ni.push(ix[len - 1]);
                }
            }
        }
        self.vals = secret(nv);
        if want {
            self.idx = secret(ni);
        }
        self.vals_wide = true;
        // A product with a public index difference stays degree t; later ones are wide.
        self.idx_wide = self.idx_secret;
        self.idx_secret = true;
        self.len = next;
    }
}

/// One candidate of the one-hot argmax tree: its value and the one-hot row of the group it
/// won (`None` = the public row `[1]` of a single element).
type Candidate = (Share, Option<Vec<Share>>);

/// The products one level of the one-hot tree reduces, per pair `(a, b)` with `c = [a < b]`:
/// `c (b - a)`, then `c` times every entry of `a`'s row and of `b`'s row.
fn onehot_products(level: &[Candidate], c: &[Share]) -> Vec<Wide> {
    let mut prods: Vec<Wide> = Vec::new();
    for (i, pair) in level.chunks_exact(2).enumerate() {
        let ((a, ra), (b, rb)) = (&pair[0], &pair[1]);
        prods.push(c[i].mul_local(&b.sub(a)));
        for r in [ra, rb].into_iter().flatten() {
            prods.extend(r.iter().map(|s| c[i].mul_local(s)));
        }
    }
    prods
}

/// The winners of one level from the reduced products: value `a + c (b - a)` and row
/// `a's row * (1 - c)` followed by `b's row * c`; an odd last candidate moves up unchanged.
fn onehot_winners(mut level: Vec<Candidate>, c: &[Share], red: &[Share]) -> Vec<Candidate> {
    let odd = (level.len() % 2 == 1).then(|| level.pop()).flatten();
    let mut k = 0;
    let mut next = Vec::with_capacity(level.len() / 2 + 1);
    for (i, pair) in level.chunks_exact(2).enumerate() {
        let ((a, ra), (_, rb)) = (&pair[0], &pair[1]);
        let value = a.add(&red[k]);
        k += 1;
        let mut row = Vec::new();
        match ra {
            None => row.push(Share::public(1).sub(&c[i])),
            Some(r) => {
                for s in r {
                    row.push(s.sub(&red[k]));
                    k += 1;
                }
            }
        }
        match rb {
            None => row.push(c[i].clone()),
            Some(r) => {
                row.extend_from_slice(&red[k..k + r.len()]);
                k += r.len();
            }
        }
        next.push((value, Some(row)));
    }
    next.extend(odd);
    next
}

impl<T: Transport> Party<T> {
    /// `[x < 0]` (0 or 1) for every `|x| < 2^(fx::CMP_BITS - 1)`: exactly [`fx::ltz`](crate::fx::ltz).
    /// `1 + ceil(log2(CMP_BITS - 1))` = 6 rounds.
    pub fn ltz(&mut self, x: &[Share]) -> Result<Vec<Share>, MeshError> {
        self.ensure(&Demand::ltz(x.len()))?;
        let mut job = LtzJob::new(&mut self.pool, raw(x))?;
        self.drive(&mut [&mut job])?;
        Ok(shares(&job.out))
    }

    /// Evaluate a step function ([`fx::StepGuess`](crate::fx::StepGuess)) exactly: every `[x >= t_j]` is
    /// `1 - ltz(x - t_j)`, all in one batch of comparisons, then a local sum.
    pub fn step_guess(&mut self, x: &[Share], g: &StepGuess) -> Result<Vec<Share>, MeshError> {
        let s = g.steps.len();
        if s == 0 {
            return Ok(x
                .iter()
                .map(|_| Share::public(i128::from(g.base)))
                .collect());
        }
        let diffs: Vec<Share> = x
            .iter()
            .flat_map(|xi| {
                g.steps
                    .iter()
                    .map(move |&(t, _)| xi.add_public(-i128::from(t)))
            })
            .collect();
        let l = self.ltz(&diffs)?;
        let total: i128 = g.steps.iter().map(|&(_, inc)| i128::from(inc)).sum();
        Ok(l.chunks_exact(s)
            .map(|li| {
                let mut acc = Fp::from_i128(i128::from(g.base) + total);
                for (lij, &(_, inc)) in li.iter().zip(&g.steps) {
                    acc -= lij.0 * Fp::from_i64(inc);
                }
                Share(acc)
            })
            .collect())
    }

    /// The comparison tree of [`fx::max_argmax`](crate::fx::max_argmax) over rows of `row_len`.
    ///
    /// A level's winners `a + c (b - a)` stay at degree 2t: the next level opens its
    /// comparison directly from them (with a zero sharing in the mask) and reduces them in
    /// that same round, so every level costs the 6 rounds of `ltz` and the tree one final
    /// reduction round: `6 ceil(log2 L) + 1` rounds.
    fn max_tree(
        &mut self,
        xs: &[Share],
        row_len: usize,
        want_index: bool,
    ) -> Result<(Vec<Share>, Vec<Share>), MeshError> {
        let rows = rows_of(xs.len(), row_len)?;
        self.ensure(&Demand::max(rows, row_len))?;
        let mut tree = MaxTree::new(xs, rows, row_len, want_index);
        while tree.len > 1 {
            let mut ltz = LtzJob::with_degree(&mut self.pool, tree.diffs(), tree.vals_wide)?;
            let mut red = tree.pending();
            self.drive(&mut [&mut ltz, &mut red])?;
            tree.take_reduced(&red.out);
            tree.select(&ltz.out);
        }
        if tree.vals_wide || tree.reduce_idx() {
            let mut red = tree.pending();
            self.drive(&mut [&mut red])?;
            tree.take_reduced(&red.out);
        }
        Ok((shares(&tree.vals), shares(&tree.idx)))
    }

    /// [`fx::max`](crate::fx::max) of each row (comparison tree, exact): `6 ceil(log2 len) + 1` rounds.
    pub fn max(&mut self, xs: &[Share], row_len: usize) -> Result<Vec<Share>, MeshError> {
        Ok(self.max_tree(xs, row_len, false)?.0)
    }

    /// [`fx::argmax`](crate::fx::argmax) of each row as a shared integer index (ties keep the lower index), exact.
    pub fn argmax(&mut self, xs: &[Share], row_len: usize) -> Result<Vec<Share>, MeshError> {
        Ok(self.max_tree(xs, row_len, true)?.1)
    }

    /// [`fx::max_argmax`](crate::fx::max_argmax) of each row: (maxima, indices).
    pub fn max_argmax(
        &mut self,
        xs: &[Share],
        row_len: usize,
    ) -> Result<(Vec<Share>, Vec<Share>), MeshError> {
        self.max_tree(xs, row_len, true)
    }

    /// [`fx::argmax`](crate::fx::argmax) of a vector of shared logits as a shared one-hot row (and its shared
    /// index): the comparison tree of [`fx::max_argmax`](crate::fx::max_argmax) (ties keep the lower index), carrying
    /// for each candidate the one-hot row of the group it won. One comparison (6 rounds) and
    /// one degree reduction per level: `7 ceil(log2 L)` rounds.
    pub fn argmax_onehot(&mut self, logits: &[Share]) -> Result<(Vec<Share>, Share), MeshError> {
        if logits.is_empty() {
            return Err(MeshError::InvalidArgument("argmax over an empty vector"));
        }
        let mut level: Vec<Candidate> = logits.iter().map(|v| (v.clone(), None)).collect();
        while level.len() > 1 {
            let diffs: Vec<Share> = level
                .chunks_exact(2)
                .map(|pair| pair[0].0.sub(&pair[1].0))
                .collect();
            let c = self.ltz(&diffs)?; // [a < b]: take b
            let red = self.reduce(&onehot_products(&level, &c))?;
            level = onehot_winners(level, &c, &red);
        }
        let row = level
            .pop()
            .and_then(|(_, row)| row)
            .unwrap_or_else(|| vec![Share::public(1)]);
        let index = row
            .iter()
            .enumerate()
            .fold(Share::public(0), |acc, (i, s)| acc.add(&s.scale(i as i128)));
        Ok((row, index))
    }
}
