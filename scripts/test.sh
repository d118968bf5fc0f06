#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test of every crate (unit, property,
# integration and end-to-end, against the real stories260K model), the aarch64 unit tests under
# qemu-aarch64, and the QEMU mesh test of emulated ARM boards.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
"$root/scripts/setup.sh"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# aarch64: the engine's unit tests as the boards run them, under user-mode emulation
# (qemu-aarch64, the runner in .cargo/config.toml). Release: it shares its dependencies' build
# with the static binary the QEMU mesh test boots.
"$root/scripts/setup-cross.sh"
cargo test --release --locked --target aarch64-unknown-linux-gnu \
  -p firmware-profiles -p mesh -p models --lib
# Emulated boards on a virtual LAN: discovery, quorum, a private generation equal to plaintext.
"$root/scripts/qemu-mesh-test.sh"
