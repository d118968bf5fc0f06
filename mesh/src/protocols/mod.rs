//! The round-by-round protocols as jobs ([`crate::round::Job`]): each job says what it needs
//! in the next round (values to reshare, values to open) and takes the results, so the round
//! engine can run several independent jobs in the same rounds.
//!
//! - [`mul::MulJob`]: degree reduction by resharing (1 round).
//! - [`trunc::TruncJob`]: fused degree reduction + probabilistic truncation (1 round).
//! - [`ltz::LtzJob`]: less-than-zero, Catrina–de Hoogh with a log-depth prefix-OR
//!   (1 + ceil(log2(CMP_BITS - 1)) rounds).
//! - [`powers::PowersJob`]: `s = trunc(x*x, shift)` then `s^1..s^N` by [`crate::fx::powers`]'s
//!   schedule.
//!
//! Jobs take their preprocessing material from the pool when they are created; the caller
//! makes sure the pool holds it (see [`crate::Demand`]).

pub(crate) mod ltz;
pub(crate) mod mul;
pub(crate) mod powers;
pub(crate) mod trunc;
