//! Device-class profiles for Sotto nodes.
//!
//! Thin for now: the profile files and their loader arrive with the edge-targets work. The crate
//! exists so the dependency chain `node -> models -> mesh -> firmware-profiles` is in place.

/// The profile a development machine uses when none is named.
pub const DEFAULT_PROFILE: &str = "x86_64-dev";
