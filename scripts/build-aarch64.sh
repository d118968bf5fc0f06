#!/usr/bin/env bash
# A static release `sotto` for aarch64 boards (and the QEMU mesh test's initramfs):
#   scripts/build-aarch64.sh   ->  target/aarch64-unknown-linux-gnu/release/sotto
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
"$root/scripts/setup-cross.sh"
# Static (+crt-static, set for the aarch64 target in .cargo/config.toml): the binary must run
# in a bare busybox initramfs with no shared C library.
cargo build --release --locked --target aarch64-unknown-linux-gnu --bin sotto
bin=target/aarch64-unknown-linux-gnu/release/sotto
file "$bin" 2>/dev/null || true
echo "built $bin ($(du -h "$bin" | cut -f1))" >&2
