//! The profiles compiled into the binary, so a board needs no profile files at runtime.

use std::sync::LazyLock;

use crate::{Profile, ProfileError};

/// Name and text of each built-in profile. A test checks that every name matches the file's
/// `name` field.
const SOURCES: &[(&str, &str)] = &[
    ("rpi4", include_str!("../profiles/rpi4.toml")),
    ("rpi5", include_str!("../profiles/rpi5.toml")),
    ("jetson-nano", include_str!("../profiles/jetson-nano.toml")),
    (
        "jetson-orin-nano",
        include_str!("../profiles/jetson-orin-nano.toml"),
    ),
    ("qemu-virt", include_str!("../profiles/qemu-virt.toml")),
    ("x86_64-dev", include_str!("../profiles/x86_64-dev.toml")),
];

static PROFILES: LazyLock<Vec<Profile>> = LazyLock::new(|| {
    SOURCES
        .iter()
        .map(|(name, text)| {
            // Cannot fail in a tested build: the test suite parses every built-in profile.
            Profile::parse(text, &builtin_origin(name))
                .unwrap_or_else(|e| panic!("built-in profile is invalid: {e}"))
        })
        .collect()
});

fn builtin_origin(name: &str) -> String {
    format!("built-in profile `{name}` (firmware-profiles/profiles/{name}.toml)")
}

impl Profile {
    /// The built-in profile called `name`.
    ///
    /// The error for an unknown name lists the known ones.
    pub fn builtin(name: &str) -> Result<Self, ProfileError> {
        Self::all_builtin()
            .iter()
            .find(|p| p.name() == name)
            .cloned()
            .ok_or_else(|| ProfileError::UnknownProfile {
                name: name.to_owned(),
                known: Self::builtin_names().map(str::to_owned).collect(),
            })
    }

    /// A profile named on a command line or in a config: a path to a profile file when `spec`
    /// ends in `.toml` or contains a `/`, else the built-in profile of that name.
    pub fn find(spec: &str) -> Result<Self, ProfileError> {
        if spec.ends_with(".toml") || spec.contains('/') {
            Self::load(spec)
        } else {
            Self::builtin(spec)
        }
    }

    /// Every built-in profile, in a fixed order (the real boards first).
    pub fn all_builtin() -> &'static [Profile] {
        &PROFILES
    }

    /// The names of the built-in profiles, in the order of [`Profile::all_builtin`].
    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        SOURCES.iter().map(|(name, _)| *name)
    }
}
