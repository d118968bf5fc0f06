#!/usr/bin/env bash
# The whole test suite: the scripts' unit tests and the source checks (module cycles, repeated
# blocks), formatting, lints, every test of every crate (unit, property, integration and
# end-to-end, against the real stories260K model), the aarch64 unit tests under qemu-aarch64,
# and the QEMU mesh test of emulated ARM boards. Each step is a stage that prints its time.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

suite_start=$(date +%s.%N)
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
# stage NAME cmd...: runs cmd in this shell, then prints `== NAME: <seconds> s`; a failing cmd
# prints the stage's time and ends the script with cmd's status.
stage() {
  local name=$1 start rc=0
  shift
  start=$(date +%s.%N)
  "$@" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "== $name: FAILED (status $rc) after $(elapsed "$start") s" >&2
    exit "$rc"
  fi
  echo "== $name: $(elapsed "$start") s"
}
cargo_env() { if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi; }

stage setup "$root/scripts/setup.sh"
stage cargo-env cargo_env
# Source checks, seconds each: the scripts' own tests, then no module cycles in any crate and no
# block of 10+ lines repeated in the non-test code.
stage script-tests python3 -m unittest discover -s scripts/tests
stage check-modules python3 scripts/check-modules.py
stage check-duplicates python3 scripts/check-duplicates.py
stage fmt cargo fmt --all --check
stage clippy cargo clippy --workspace --all-targets --locked -- -D warnings
stage test cargo test --workspace --locked
# aarch64: the engine's unit tests as the boards run them, under user-mode emulation
# (qemu-aarch64, the runner in .cargo/config.toml). Release: it shares its dependencies' build
# with the static binary the QEMU mesh test boots.
stage setup-cross "$root/scripts/setup-cross.sh"
stage test-aarch64 cargo test --release --locked --target aarch64-unknown-linux-gnu \
  -p firmware-profiles -p mesh -p mesh-net -p models --lib
# Emulated boards on a virtual LAN: discovery, quorum, a private generation equal to plaintext.
stage qemu-mesh "$root/scripts/qemu-mesh-test.sh"
echo "== total: $(elapsed "$suite_start") s"
