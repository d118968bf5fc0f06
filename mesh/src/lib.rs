//! Sotto's MPC mesh.
//!
//! - [`fx`]: the fixed-point number format and the plaintext definition of every approximation
//!   (exp, reciprocal, inverse square root, SiLU, max/argmax). The secure protocols compute the
//!   same functions on shares; `models`' fixed-point twin calls these directly.

pub mod fx;
