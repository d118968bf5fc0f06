//! Sotto's models.
pub mod sharefile;
