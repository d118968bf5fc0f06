//! The non-linear functions of [`crate::fx`], on shares, step for step: same constants, same
//! schedules, same truncation amounts. The only difference from `fx` is that each truncation
//! may round up by one unit (probabilistic truncation); comparisons are exact.
//!
//! Batched: every function takes a vector (or rows of equal length, row-major) and costs the
//! same number of rounds for any batch size.
//!
//! - `compare`: [`crate::Party::ltz`], step functions, the max/argmax comparison tree and
//!   [`crate::Party::argmax_onehot`];
//! - `approx`: exp, reciprocal, rsqrt, SiLU, softmax, rms_inv, rmsnorm;
//! - `rows`: the row-shape check they share.

mod approx;
mod compare;
mod rows;
