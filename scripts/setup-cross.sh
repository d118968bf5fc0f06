#!/usr/bin/env bash
# Installs what an aarch64 cross-build and its emulated tests need on Debian/Ubuntu:
# the aarch64 linker and C library, qemu-user (runs aarch64 test binaries), and the Rust target.
set -euo pipefail
die() { echo "setup-cross: $*" >&2; exit 1; }
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
pkgs=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  $sudo apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "could not install ${missing[*]} (are the Debian repositories reachable?)"
fi
command -v rustup >/dev/null || die "rustup is needed to add the aarch64 Rust target (install Rust with rustup first)"
if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  rustup target add aarch64-unknown-linux-gnu \
    || die "rustup could not download the aarch64-unknown-linux-gnu standard library"
fi
command -v aarch64-linux-gnu-gcc >/dev/null || die "aarch64-linux-gnu-gcc missing after install"
command -v qemu-aarch64 >/dev/null || die "qemu-aarch64 missing after install"
echo "aarch64 cross toolchain ready" >&2
