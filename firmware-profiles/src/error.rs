//! The one error type of this crate: everything that can be wrong with a profile, or with a
//! workload that asks more of a profile than it gives.

use std::path::PathBuf;

/// Why a profile could not be loaded, or why a workload does not fit the profile.
///
/// Every message names the profile (or the file it came from) and says what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// The profile file could not be read.
    #[error("cannot read profile file {}: {error}", .path.display())]
    Io {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },

    /// The text is not a profile: invalid TOML, a missing or unknown field, or a value of the
    /// wrong type.
    #[error("{origin} is not a valid profile: {message}")]
    Malformed {
        /// Where the text came from (a file path, or the built-in profile's name).
        origin: String,
        /// The TOML parser's message, with the line and column it points at.
        message: String,
    },

    /// No built-in profile has this name.
    #[error("unknown profile `{name}` (known profiles: {})", .known.join(", "))]
    UnknownProfile {
        /// The name that was asked for.
        name: String,
        /// The names of the built-in profiles.
        known: Vec<String>,
    },

    /// A required text field (`name`, `board`, `cpu`, `target_cpu` or `qemu.cpu`) is empty or
    /// only whitespace.
    #[error("{origin}: `{field}` must not be empty")]
    Empty {
        /// Where the profile came from.
        origin: String,
        /// The empty field.
        field: &'static str,
    },

    /// The target triple is not one Sotto builds for.
    #[error(
        "{origin}: target `{target}` is not supported; use one of: {}",
        .supported.join(", ")
    )]
    UnsupportedTarget {
        /// Where the profile came from.
        origin: String,
        /// The triple the profile names.
        target: String,
        /// The triples Sotto builds for.
        supported: &'static [&'static str],
    },

    /// A count or size that must be at least 1 (`cores`, `worker_threads`, `ram_mib`,
    /// `memory_budget_mib`, `qemu.smp`) is zero.
    #[error("{origin}: `{field}` is 0; it must be at least 1")]
    Zero {
        /// Where the profile came from.
        origin: String,
        /// The field that is zero.
        field: &'static str,
    },

    /// More worker threads than twice the cores: beyond that, threads only contend.
    #[error(
        "{origin}: worker_threads = {worker_threads} is more than twice cores = {cores}; \
         use at most {max}"
    )]
    TooManyWorkerThreads {
        /// Where the profile came from.
        origin: String,
        /// The requested worker threads.
        worker_threads: usize,
        /// The board's cores.
        cores: usize,
        /// The largest accepted value, `2 * cores`.
        max: usize,
    },

    /// The memory budget is larger than the board's RAM.
    #[error(
        "{origin}: memory_budget_mib = {budget_mib} exceeds ram_mib = {ram_mib}; lower the budget, \
         leaving room for the operating system"
    )]
    BudgetExceedsRam {
        /// Where the profile came from.
        origin: String,
        /// The budget the profile promises, in MiB.
        budget_mib: u64,
        /// The board's RAM, in MiB.
        ram_mib: u64,
    },

    /// The emulated board has less memory than the budget the profile promises.
    #[error(
        "{origin}: qemu.memory_mib = {qemu_mib} is less than memory_budget_mib = {budget_mib}; \
         raise qemu.memory_mib (usually to ram_mib) or lower the budget"
    )]
    QemuMemoryBelowBudget {
        /// Where the profile came from.
        origin: String,
        /// The memory given to the emulated board, in MiB.
        qemu_mib: u64,
        /// The budget the profile promises, in MiB.
        budget_mib: u64,
    },

    /// A workload needs more memory than the profile's budget allows.
    #[error(
        "not enough memory for {what}: it needs {} but profile `{profile}` allows only {} \
         (memory_budget_mib = {}); {}",
        human_bytes(*.required_bytes),
        human_bytes(*.budget_bytes),
        .budget_bytes >> 20,
        fits_advice(.larger)
    )]
    DoesNotFit {
        /// The profile that was checked.
        profile: String,
        /// What was being fitted (for example "model shares + KV cache").
        what: String,
        /// The memory the workload needs, in bytes.
        required_bytes: u64,
        /// The profile's memory budget, in bytes.
        budget_bytes: u64,
        /// Built-in profiles for the same target whose budget is large enough, smallest first.
        larger: Vec<String>,
    },
}

/// Bytes in the unit a person would use, e.g. `300.0 MiB` or `2.50 GiB`.
fn human_bytes(bytes: u64) -> String {
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    let b = bytes as f64;
    if bytes >= GIB {
        format!("{:.2} GiB", b / GIB as f64)
    } else if bytes >= MIB {
        format!("{:.1} MiB", b / MIB as f64)
    } else if bytes >= KIB {
        format!("{:.1} KiB", b / KIB as f64)
    } else {
        format!("{bytes} bytes")
    }
}

fn fits_advice(larger: &[String]) -> String {
    if larger.is_empty() {
        "use a smaller model (no built-in device class for this target has room for it)".to_owned()
    } else {
        format!(
            "use a device class with a larger budget ({}) or a smaller model",
            larger.join(", ")
        )
    }
}
