//! Degree reduction of a batch by resharing (1 round): every active party reshares its
//! degree-2t share with a fresh degree-t polynomial, everyone combines with Lagrange.

use crate::error::MeshError;
use crate::round::{Job, RoundBuilder, RoundResult};
use crate::secret::{Secret, secret};
use core::ops::Range;

/// Degree reduction of a batch.
pub(crate) struct MulJob {
    input: Secret,
    range: Range<usize>,
    pub(crate) out: Secret,
    done: bool,
}

impl MulJob {
    pub(crate) fn new(input: Secret) -> MulJob {
        let done = input.is_empty();
        MulJob {
            input,
            range: 0..0,
            out: secret(Vec::new()),
            done,
        }
    }
}

impl Job for MulJob {
    fn done(&self) -> bool {
        self.done
    }
    fn emit(&mut self, rb: &mut RoundBuilder) {
        self.range = rb.reshare(self.input.iter().copied());
    }
    fn absorb(&mut self, rr: &RoundResult) -> Result<(), MeshError> {
        self.out = secret(rr.reduced[self.range.clone()].to_vec());
        self.done = true;
        Ok(())
    }
}
