//! Profiles as a user meets them: the built-in set, files in `testdata/`, and the messages
//! they get when something is wrong.

use std::path::PathBuf;

use firmware_profiles::{DEFAULT_PROFILE, NetworkClass, Profile, ProfileError, SUPPORTED_TARGETS};

const MIB: u64 = 1 << 20;

fn testdata(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(file)
}

/// A valid profile; tests break one line of it at a time.
const VALID: &str = r#"
name = "test-board"
board = "Test board"
target = "aarch64-unknown-linux-gnu"
cpu = "cortex-a72"
cores = 4
ram_mib = 4096
memory_budget_mib = 2048
worker_threads = 4
network = "ethernet"
target_cpu = "cortex-a72"

[qemu]
cpu = "cortex-a72"
memory_mib = 4096
smp = 4
"#;

fn with(line: &str, replacement: &str) -> String {
    assert!(VALID.contains(line), "test bug: {line:?} is not in VALID");
    VALID.replacen(line, replacement, 1)
}

fn parse_err(text: &str) -> ProfileError {
    match Profile::parse(text, "test.toml") {
        Ok(p) => panic!("expected an error, got {p:?}"),
        Err(e) => e,
    }
}

// ---- the built-in set ----

#[test]
fn every_builtin_profile_parses_and_validates() {
    let names: Vec<&str> = Profile::builtin_names().collect();
    assert_eq!(
        names,
        [
            "rpi4",
            "rpi5",
            "jetson-nano",
            "jetson-orin-nano",
            "qemu-virt",
            "x86_64-dev"
        ]
    );
    assert_eq!(Profile::all_builtin().len(), names.len());
    for name in names {
        let p = Profile::builtin(name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.name(), name, "table name and file `name` differ");
        assert!(SUPPORTED_TARGETS.contains(&p.target()));
        assert!(p.cores() >= 1 && p.worker_threads() >= 1);
        assert!(p.worker_threads() <= 2 * p.cores());
        assert!(
            p.memory_budget_mib() < p.ram_mib(),
            "{name}: budget leaves no room for the OS"
        );
        if let Some(q) = p.qemu() {
            assert!(q.memory_mib() >= p.memory_budget_mib());
            assert_eq!(q.smp(), p.cores(), "{name}: QEMU should emulate every core");
        }
    }
}

#[test]
fn builtin_files_on_disk_match_the_embedded_copies() {
    for p in Profile::all_builtin() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("profiles")
            .join(format!("{}.toml", p.name()));
        assert_eq!(&Profile::load(&path).unwrap(), p, "{}", path.display());
    }
}

#[test]
fn builtin_values_match_the_hardware() {
    let expect = [
        ("rpi4", "cortex-a72", 4, 4096, "aarch64"),
        ("rpi5", "cortex-a76", 4, 8192, "aarch64"),
        ("jetson-nano", "cortex-a57", 4, 4096, "aarch64"),
        ("jetson-orin-nano", "cortex-a78ae", 6, 8192, "aarch64"),
        ("qemu-virt", "cortex-a72", 1, 512, "aarch64"),
        ("x86_64-dev", "x86-64", 2, 8192, "x86_64"),
    ];
    for (name, cpu, cores, ram, arch) in expect {
        let p = Profile::builtin(name).unwrap();
        assert_eq!(
            (p.cpu(), p.cores(), p.ram_mib()),
            (cpu, cores, ram),
            "{name}"
        );
        assert!(p.target().starts_with(arch), "{name}");
    }
    let virt = Profile::builtin("qemu-virt").unwrap();
    assert_eq!(
        virt.qemu().unwrap().args(),
        ["-cpu", "cortex-a72", "-m", "512", "-smp", "1"]
    );
    let dev = Profile::builtin(DEFAULT_PROFILE).unwrap();
    assert_eq!(dev.network(), NetworkClass::Loopback);
    assert_eq!(dev.network().link_profile(), "loopback");
    assert!(dev.qemu().is_none());
    assert_eq!(
        Profile::builtin("rpi4").unwrap().network().link_profile(),
        "lan"
    );
}

#[test]
fn unknown_name_lists_the_known_ones() {
    let err = Profile::builtin("rpi3").unwrap_err();
    let ProfileError::UnknownProfile { name, known } = &err else {
        panic!("wrong error: {err:?}");
    };
    assert_eq!(name, "rpi3");
    assert_eq!(known.len(), Profile::all_builtin().len());
    let msg = err.to_string();
    assert!(msg.contains("`rpi3`"), "{msg}");
    for name in Profile::builtin_names() {
        assert!(msg.contains(name), "{msg} does not list {name}");
    }
}

// ---- malformed files ----

#[test]
fn bad_toml_names_the_file_and_the_parser_message() {
    let path = testdata("bad-toml.toml");
    let err = Profile::load(&path).unwrap_err();
    let ProfileError::Malformed { origin, message } = &err else {
        panic!("wrong error: {err:?}");
    };
    assert_eq!(origin, &path.display().to_string());
    assert!(message.contains("line 3"), "{message}");
    let msg = err.to_string();
    assert!(
        msg.contains("bad-toml.toml") && msg.contains("not a valid profile"),
        "{msg}"
    );
}

#[test]
fn missing_field_is_named() {
    let err = Profile::load(testdata("missing-field.toml")).unwrap_err();
    assert!(matches!(err, ProfileError::Malformed { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("missing field `cores`"), "{msg}");
    assert!(msg.contains("missing-field.toml"), "{msg}");
}

#[test]
fn unknown_field_is_named() {
    let err = Profile::load(testdata("unknown-field.toml")).unwrap_err();
    assert!(matches!(err, ProfileError::Malformed { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("unknown field `ram_gb`"), "{msg}");
    // serde lists the keys that are allowed, which is the fix.
    assert!(msg.contains("ram_mib"), "{msg}");
}

#[test]
fn unknown_qemu_field_is_rejected() {
    let err = parse_err(&with("smp = 4", "smp = 4\nmachine = \"virt\""));
    assert!(err.to_string().contains("unknown field `machine`"), "{err}");
}

#[test]
fn bad_network_class_lists_the_choices() {
    let err = parse_err(&with("network = \"ethernet\"", "network = \"lte\""));
    let msg = err.to_string();
    assert!(matches!(err, ProfileError::Malformed { .. }), "{err:?}");
    assert!(
        msg.contains("ethernet") && msg.contains("wifi") && msg.contains("loopback"),
        "{msg}"
    );
}

#[test]
fn negative_count_is_malformed() {
    let err = parse_err(&with("cores = 4", "cores = -1"));
    assert!(matches!(err, ProfileError::Malformed { .. }), "{err:?}");
}

#[test]
fn zero_cores() {
    let path = testdata("zero-cores.toml");
    let err = Profile::load(&path).unwrap_err();
    assert!(
        matches!(&err, ProfileError::Zero { field: "cores", origin } if origin.ends_with("zero-cores.toml")),
        "{err:?}"
    );
    assert!(err.to_string().contains("`cores` is 0"), "{err}");
}

#[test]
fn zero_threads_and_sizes() {
    for (line, bad, field) in [
        ("worker_threads = 4", "worker_threads = 0", "worker_threads"),
        ("ram_mib = 4096", "ram_mib = 0", "ram_mib"),
        (
            "memory_budget_mib = 2048",
            "memory_budget_mib = 0",
            "memory_budget_mib",
        ),
        ("smp = 4", "smp = 0", "qemu.smp"),
    ] {
        let err = parse_err(&with(line, bad));
        assert!(
            matches!(&err, ProfileError::Zero { field: f, .. } if *f == field),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn too_many_worker_threads() {
    // 2 * cores is still fine...
    Profile::parse(&with("worker_threads = 4", "worker_threads = 8"), "t").unwrap();
    // ...one more is not.
    let err = parse_err(&with("worker_threads = 4", "worker_threads = 9"));
    assert!(
        matches!(
            err,
            ProfileError::TooManyWorkerThreads {
                worker_threads: 9,
                cores: 4,
                max: 8,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("at most 8"), "{err}");
}

#[test]
fn budget_over_ram() {
    let err = Profile::load(testdata("budget-over-ram.toml")).unwrap_err();
    assert!(
        matches!(
            err,
            ProfileError::BudgetExceedsRam {
                budget_mib: 6144,
                ram_mib: 4096,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("memory_budget_mib = 6144") && msg.contains("ram_mib = 4096"),
        "{msg}"
    );
    // The whole RAM as budget is allowed (custom profiles may choose it).
    Profile::parse(
        &with("memory_budget_mib = 2048", "memory_budget_mib = 4096"),
        "t",
    )
    .unwrap();
}

#[test]
fn qemu_memory_below_budget() {
    let err = parse_err(&with("memory_mib = 4096", "memory_mib = 1024"));
    assert!(
        matches!(
            err,
            ProfileError::QemuMemoryBelowBudget {
                qemu_mib: 1024,
                budget_mib: 2048,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("raise qemu.memory_mib"), "{err}");
}

#[test]
fn empty_name_and_fields() {
    let err = parse_err(&with("name = \"test-board\"", "name = \"  \""));
    assert!(
        matches!(&err, ProfileError::Empty { field: "name", origin } if origin == "test.toml"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("`name` must not be empty"),
        "{err}"
    );
    let err = parse_err(&with("target_cpu = \"cortex-a72\"", "target_cpu = \"\""));
    assert!(
        matches!(
            err,
            ProfileError::Empty {
                field: "target_cpu",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn unsupported_target() {
    for target in [
        "aarch64-unknown-linux-musl",
        "armv7-unknown-linux-gnueabihf",
        "x86_64-pc-windows-msvc",
    ] {
        let err = parse_err(&with(
            "target = \"aarch64-unknown-linux-gnu\"",
            &format!("target = \"{target}\""),
        ));
        assert!(
            matches!(&err, ProfileError::UnsupportedTarget { target: t, .. } if t == target),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("aarch64-unknown-linux-gnu") && msg.contains("x86_64-unknown-linux-gnu"),
            "{msg}"
        );
    }
}

#[test]
fn missing_file_is_an_io_error() {
    let path = testdata("does-not-exist.toml");
    let err = Profile::load(&path).unwrap_err();
    assert!(
        matches!(&err, ProfileError::Io { path: p, .. } if *p == path),
        "{err:?}"
    );
    assert!(err.to_string().contains("does-not-exist.toml"), "{err}");
}

#[test]
fn custom_profile_file_loads() {
    let p = Profile::load(testdata("custom-wifi.toml")).unwrap();
    assert_eq!(p.name(), "rpi5-wifi");
    assert_eq!(p.network(), NetworkClass::Wifi);
    assert_eq!(p.network().link_profile(), "wifi");
    assert_eq!(p.budget_bytes(), 6144 * MIB);
    assert!(
        p.to_string().starts_with(
            "rpi5-wifi: Raspberry Pi 5 (8 GB) on 802.11ac; 4x cortex-a76, 8192 MiB RAM"
        ),
        "{p}"
    );
    // A profile survives a round trip through TOML, so tools can print one.
    let text = toml::to_string(&p).unwrap();
    assert_eq!(Profile::parse(&text, "round trip").unwrap(), p);
}

// ---- check_fits ----

#[test]
fn check_fits_passes_up_to_the_budget() {
    let p = Profile::builtin("qemu-virt").unwrap();
    p.check_fits(0, "nothing").unwrap();
    p.check_fits(MIB, "stories260K shares").unwrap();
    p.check_fits(256 * MIB, "exactly the budget").unwrap();
}

#[test]
fn check_fits_fails_with_sizes_and_a_larger_device_class() {
    let p = Profile::builtin("qemu-virt").unwrap();
    let err = p.check_fits(256 * MIB + 1, "model shares").unwrap_err();
    assert!(
        matches!(&err, ProfileError::DoesNotFit { budget_bytes, .. } if *budget_bytes == 256 * MIB),
        "{err:?}"
    );

    let p = Profile::builtin("rpi4").unwrap();
    let err = p
        .check_fits(3 * 1024 * MIB, "stories15M shares + KV cache")
        .unwrap_err();
    let ProfileError::DoesNotFit {
        profile,
        required_bytes,
        larger,
        ..
    } = &err
    else {
        panic!("wrong error: {err:?}");
    };
    assert_eq!(profile, "rpi4");
    assert_eq!(*required_bytes, 3 * 1024 * MIB);
    // Same-target boards with room, smallest budget first; never the x86 dev machine.
    assert_eq!(larger, &["jetson-orin-nano", "rpi5"]);
    let msg = err.to_string();
    for part in [
        "not enough memory for stories15M shares + KV cache: it needs 3.00 GiB",
        "`rpi4` allows only 2.50 GiB",
        "memory_budget_mib = 2560",
        "jetson-orin-nano, rpi5",
        "smaller model",
    ] {
        assert!(msg.contains(part), "{msg:?} lacks {part:?}");
    }
}

#[test]
fn check_fits_suggests_only_a_smaller_model_when_nothing_is_big_enough() {
    let p = Profile::builtin("rpi5").unwrap();
    let err = p
        .check_fits(40 * 1024 * MIB, "a 7B model's shares")
        .unwrap_err();
    assert!(
        matches!(&err, ProfileError::DoesNotFit { larger, .. } if larger.is_empty()),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("use a smaller model"), "{msg}");
    assert!(msg.contains("needs 40.00 GiB"), "{msg}");
}

#[test]
fn find_takes_a_builtin_name_or_a_profile_file() {
    assert_eq!(Profile::find("rpi4").unwrap().name(), "rpi4");
    let path = testdata("custom-wifi.toml");
    assert_eq!(
        Profile::find(path.to_str().unwrap()).unwrap().name(),
        "rpi5-wifi"
    );
    assert!(matches!(
        Profile::find("rpi9"),
        Err(ProfileError::UnknownProfile { .. })
    ));
    // A path-like spec is never mistaken for a name, so a missing file says so.
    assert!(matches!(
        Profile::find("boards/missing.toml"),
        Err(ProfileError::Io { .. })
    ));
}
