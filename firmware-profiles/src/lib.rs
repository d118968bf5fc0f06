//! Device-class profiles for Sotto nodes.
//!
//! A Sotto mesh runs on small ARM boards, and each kind of board (a *device class*) is
//! described by a profile: its CPU and cores, its RAM, how much of it the node may use for
//! shares, KV cache and buffers, how many worker threads to run, what network it sits on, how
//! to build for it (`target`, `-C target-cpu`), and how QEMU emulates it.
//!
//! A quick tour:
//!
//! - [`Profile`] is one validated profile. It comes from TOML text ([`Profile::parse`]), a file
//!   ([`Profile::load`]), or the built-in set ([`Profile::builtin`], [`Profile::all_builtin`]),
//!   which is compiled in from `profiles/*.toml` so a board needs no profile files at runtime:
//!   `rpi4`, `rpi5`, `jetson-nano`, `jetson-orin-nano`, `qemu-virt` and `x86_64-dev`
//!   ([`DEFAULT_PROFILE`]).
//! - [`NetworkClass`] is the link a board sits on; [`QemuSettings`] is the `-cpu`, `-m` and
//!   `-smp` that emulate it.
//! - [`Profile::check_fits`] asks whether a workload fits the memory budget, and otherwise says
//!   by how much it does not and which device class would do.
//! - [`ProfileError`] is the one error type: every variant names the profile or file and says
//!   what to change.
//!
//! ```
//! use firmware_profiles::{DEFAULT_PROFILE, Profile};
//!
//! let dev = Profile::builtin(DEFAULT_PROFILE)?;
//! assert_eq!(dev.target(), "x86_64-unknown-linux-gnu");
//!
//! let pi = Profile::builtin("rpi4")?;
//! assert_eq!(pi.rustflags(), "-C target-cpu=cortex-a72");
//! pi.check_fits(64 << 20, "stories260K shares + KV cache")?;
//! assert!(pi.check_fits(8 << 30, "a 7B model's shares").is_err());
//! # Ok::<(), firmware_profiles::ProfileError>(())
//! ```

#![forbid(unsafe_code)]

mod builtin;
mod error;
mod profile;

pub use error::ProfileError;
pub use profile::{NetworkClass, Profile, QemuSettings, SUPPORTED_TARGETS};

/// The profile a development machine uses when none is named.
pub const DEFAULT_PROFILE: &str = "x86_64-dev";
