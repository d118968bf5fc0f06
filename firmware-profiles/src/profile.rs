//! The profile itself: its TOML schema, parsing, and the checks every profile passes.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ProfileError;

/// The target triples Sotto builds nodes for.
pub const SUPPORTED_TARGETS: &[&str] = &["aarch64-unknown-linux-gnu", "x86_64-unknown-linux-gnu"];

const MIB: u64 = 1 << 20;

/// What one device class gives a Sotto node: CPU, memory budget, threads, network, and how to
/// build for it and emulate it.
///
/// A `Profile` only comes from [`Profile::parse`], [`Profile::load`] or the built-in set, and
/// all of them validate it, so every `Profile` value has at least one core and one worker
/// thread, a supported target, and a budget that fits in its RAM (and in its QEMU memory).
///
/// The TOML form has exactly these keys (unknown keys are an error):
///
/// ```toml
/// name = "rpi4"
/// board = "Raspberry Pi 4 Model B (4 GB)"
/// target = "aarch64-unknown-linux-gnu"
/// cpu = "cortex-a72"
/// cores = 4
/// ram_mib = 4096
/// memory_budget_mib = 2560
/// worker_threads = 4
/// network = "ethernet"          # ethernet | wifi | loopback
/// target_cpu = "cortex-a72"
///
/// [qemu]                        # optional
/// cpu = "cortex-a72"
/// memory_mib = 4096
/// smp = 4
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    name: String,
    board: String,
    target: String,
    cpu: String,
    cores: usize,
    ram_mib: u64,
    memory_budget_mib: u64,
    worker_threads: usize,
    network: NetworkClass,
    target_cpu: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    qemu: Option<QemuSettings>,
}

/// The kind of link a device class sits on; benchmarks emulate this link between parties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum NetworkClass {
    /// Wired gigabit Ethernet.
    Ethernet,
    /// 802.11 Wi-Fi.
    Wifi,
    /// All parties on one machine, talking over 127.0.0.1.
    Loopback,
}

/// The `qemu-system-aarch64 -M virt` settings that emulate a device class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuSettings {
    cpu: String,
    memory_mib: u64,
    smp: usize,
}

impl Profile {
    /// Parses and validates a profile from TOML text.
    ///
    /// `origin` says where the text came from (a path, or "built-in profile `rpi4`"); it is
    /// only used in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ProfileError> {
        let profile: Self = toml::from_str(text).map_err(|e| ProfileError::Malformed {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        profile.validate(origin)?;
        Ok(profile)
    }

    /// Reads, parses and validates a profile file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ProfileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|error| ProfileError::Io {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    fn validate(&self, origin: &str) -> Result<(), ProfileError> {
        let empty = |field| ProfileError::Empty {
            origin: origin.to_owned(),
            field,
        };
        let zero = |field| ProfileError::Zero {
            origin: origin.to_owned(),
            field,
        };

        // The name first: every later message is easier to act on once the profile has one.
        if self.name.trim().is_empty() {
            return Err(empty("name"));
        }
        for (field, value) in [
            ("board", &self.board),
            ("cpu", &self.cpu),
            ("target_cpu", &self.target_cpu),
        ] {
            if value.trim().is_empty() {
                return Err(empty(field));
            }
        }
        if !SUPPORTED_TARGETS.contains(&self.target.as_str()) {
            return Err(ProfileError::UnsupportedTarget {
                origin: origin.to_owned(),
                target: self.target.clone(),
                supported: SUPPORTED_TARGETS,
            });
        }
        if self.cores == 0 {
            return Err(zero("cores"));
        }
        if self.worker_threads == 0 {
            return Err(zero("worker_threads"));
        }
        if self.ram_mib == 0 {
            return Err(zero("ram_mib"));
        }
        if self.memory_budget_mib == 0 {
            return Err(zero("memory_budget_mib"));
        }
        // Up to two threads per core still pays off while some wait on the network; past that
        // they only fight over the caches of a small board.
        let max = self.cores.saturating_mul(2);
        if self.worker_threads > max {
            return Err(ProfileError::TooManyWorkerThreads {
                origin: origin.to_owned(),
                worker_threads: self.worker_threads,
                cores: self.cores,
                max,
            });
        }
        if self.memory_budget_mib > self.ram_mib {
            return Err(ProfileError::BudgetExceedsRam {
                origin: origin.to_owned(),
                budget_mib: self.memory_budget_mib,
                ram_mib: self.ram_mib,
            });
        }
        if let Some(qemu) = &self.qemu {
            if qemu.cpu.trim().is_empty() {
                return Err(empty("qemu.cpu"));
            }
            if qemu.smp == 0 {
                return Err(zero("qemu.smp"));
            }
            if qemu.memory_mib < self.memory_budget_mib {
                return Err(ProfileError::QemuMemoryBelowBudget {
                    origin: origin.to_owned(),
                    qemu_mib: qemu.memory_mib,
                    budget_mib: self.memory_budget_mib,
                });
            }
        }
        Ok(())
    }

    /// Checks that a workload needing `required_bytes` fits the memory budget.
    ///
    /// `what` names the workload in the error, e.g. "stories260K shares + KV cache". On
    /// failure the error says how much is needed, how much the profile allows, and which
    /// built-in device classes for the same target would have room.
    pub fn check_fits(&self, required_bytes: u64, what: &str) -> Result<(), ProfileError> {
        let budget_bytes = self.budget_bytes();
        if required_bytes <= budget_bytes {
            return Ok(());
        }
        // Only boards of the same target: the binary and the mesh were built for it.
        let mut larger: Vec<&Profile> = Profile::all_builtin()
            .iter()
            .filter(|p| {
                p.target == self.target && p.name != self.name && p.budget_bytes() >= required_bytes
            })
            .collect();
        larger.sort_by_key(|p| p.budget_bytes());
        Err(ProfileError::DoesNotFit {
            profile: self.name.clone(),
            what: what.to_owned(),
            required_bytes,
            budget_bytes,
            larger: larger.into_iter().map(|p| p.name.clone()).collect(),
        })
    }

    /// The profile's name, e.g. `rpi4`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A human description of the board, e.g. "Raspberry Pi 4 Model B (4 GB)".
    pub fn board(&self) -> &str {
        &self.board
    }

    /// The Rust target triple to build for; one of [`SUPPORTED_TARGETS`].
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The CPU model, e.g. `cortex-a72` or `x86-64`.
    pub fn cpu(&self) -> &str {
        &self.cpu
    }

    /// CPU cores on the board (at least 1).
    pub fn cores(&self) -> usize {
        self.cores
    }

    /// The board's RAM in MiB.
    pub fn ram_mib(&self) -> u64 {
        self.ram_mib
    }

    /// The memory the node may use for shares, KV cache and buffers, in MiB.
    pub fn memory_budget_mib(&self) -> u64 {
        self.memory_budget_mib
    }

    /// The memory budget in bytes.
    pub fn budget_bytes(&self) -> u64 {
        self.memory_budget_mib.saturating_mul(MIB)
    }

    /// Threads for the node's compute pool (at least 1, at most twice the cores).
    pub fn worker_threads(&self) -> usize {
        self.worker_threads
    }

    /// The link the board sits on.
    pub fn network(&self) -> NetworkClass {
        self.network
    }

    /// The `-C target-cpu` value for a native build, e.g. `cortex-a72` or `native`.
    pub fn target_cpu(&self) -> &str {
        &self.target_cpu
    }

    /// `RUSTFLAGS` for a build tuned to this board, e.g. `-C target-cpu=cortex-a72`.
    pub fn rustflags(&self) -> String {
        format!("-C target-cpu={}", self.target_cpu)
    }

    /// How to emulate the board in QEMU, if it can be emulated.
    pub fn qemu(&self) -> Option<&QemuSettings> {
        self.qemu.as_ref()
    }
}

impl fmt::Display for Profile {
    /// One line, for listings: `rpi4: Raspberry Pi 4 Model B (4 GB); 4x cortex-a72, ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}; {}x {}, {} MiB RAM, {} MiB budget, {} worker thread{}, {}",
            self.name,
            self.board,
            self.cores,
            self.cpu,
            self.ram_mib,
            self.memory_budget_mib,
            self.worker_threads,
            if self.worker_threads == 1 { "" } else { "s" },
            self.network
        )
    }
}

impl NetworkClass {
    /// The name used in profile files: `ethernet`, `wifi` or `loopback`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ethernet => "ethernet",
            Self::Wifi => "wifi",
            Self::Loopback => "loopback",
        }
    }

    /// The benchmarks' link-emulation profile for this class (`lan`, `wifi` or `loopback`; see
    /// `design/benchmarks.md`).
    pub fn link_profile(self) -> &'static str {
        match self {
            Self::Ethernet => "lan",
            Self::Wifi => "wifi",
            Self::Loopback => "loopback",
        }
    }
}

impl fmt::Display for NetworkClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl QemuSettings {
    /// The QEMU `-cpu` model, e.g. `cortex-a72`.
    pub fn cpu(&self) -> &str {
        &self.cpu
    }

    /// The QEMU `-m` value, in MiB.
    pub fn memory_mib(&self) -> u64 {
        self.memory_mib
    }

    /// The QEMU `-smp` value (at least 1).
    pub fn smp(&self) -> usize {
        self.smp
    }

    /// `-cpu <cpu> -m <memory_mib> -smp <smp>`, ready to append to a
    /// `qemu-system-aarch64 -M virt` command line.
    pub fn args(&self) -> Vec<String> {
        vec![
            "-cpu".to_owned(),
            self.cpu.clone(),
            "-m".to_owned(),
            self.memory_mib.to_string(),
            "-smp".to_owned(),
            self.smp.to_string(),
        ]
    }
}
