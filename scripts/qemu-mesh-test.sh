#!/usr/bin/env bash
# End-to-end test of the mesh on emulated ARM boards (issue #6).
#
#   sudo scripts/qemu-mesh-test.sh          (CI runs it as root)
#
# Builds the static aarch64 `sotto`, boots three `qemu-system-aarch64 -M virt` boards, each
# with the -cpu/-smp (and, capped, -m) of a different firmware profile, on one virtual LAN
# inside a network namespace of its own. Each board's busybox initramfs holds only its own
# share file, key and node.toml (mdns = true, no static peers). A fourth board runs
# `sotto ask --mdns --print-ids`; the test fails unless the three nodes form the quorum by
# mDNS in time, the private token ids equal the plaintext f32 engine's greedy ids for the same
# prompt, and every VM is gone at the end. It ends with a report (boot time per VM, time to
# quorum, tokens/s, ids).
#
# Settings (environment):
#   QEMU_MESH_STEPS=8                 tokens to generate (TCG emulation is slow: tens of s/token)
#   QEMU_MESH_PROMPT="Once"           the prompt (empty = BOS only); each prompt token costs one
#                                     more forward pass before the first output
#   QEMU_MESH_PROFILES="rpi4 rpi5 jetson-nano"   one firmware profile per node (3 nodes)
#   QEMU_MESH_CLIENT_PROFILE=qemu-virt
#   QEMU_MESH_MEM_CAP=                if set, caps each profile's -m (MiB); by default each VM
#                                     gets its profile's RAM (4-8 GiB: QEMU maps guest RAM
#                                     lazily, so the host needs only what the guests touch)
#   QEMU_MESH_SMP_CAP=                if set, caps each profile's -smp
#   QEMU_MESH_TCG_THREAD=single       -accel tcg,thread=...: `single` runs a VM's vCPUs (the
#                                     profile's -smp) round-robin on one host thread; `multi`
#                                     gives each vCPU a thread, which on 2 host cores shared by
#                                     4 VMs is ~3x slower per MPC round
#   QEMU_MESH_QUORUM_TIMEOUT=120      s from launching the nodes to quorum on every node
#   QEMU_MESH_BOOT_ATTEMPTS=1         boots of the node set before failing on a missing quorum
#   QEMU_MESH_ASK_TIMEOUT=600         s for the client VM (boot + discovery + generation)
#   QEMU_MESH_BUILD_TIMEOUT=1500      s for the aarch64 build
#   QEMU_MESH_SKIP_BUILD=1            use the existing target/aarch64-unknown-linux-gnu build
#   QEMU_MESH_BIN=PATH                test this static aarch64 sotto instead (no build)
#   QEMU_MESH_LOG=warn                RUST_LOG inside the VMs
#   QEMU_MESH_QUORUM_ONLY=1           stop after the discovery/quorum check (no generation)
#   QEMU_MESH_STAGGER=0               0 = launch the nodes all at once (the default: nodes that
#                                     find each other at the same moment dial each other at the
#                                     same moment, which once made crossed TCP dials fail Noise;
#                                     see `dial` in mesh/net/src/event_loop.rs); 1 = launch node
#                                     k+1 QEMU_MESH_STAGGER_GAP (2) s after node k listens
# Caches (reused across runs, git-ignored under target/): target/qemu-cache/ (Debian arm64
# kernel + busybox-static). The last run's files and serial logs: target/qemu-mesh/.
set -euo pipefail

T_START=$EPOCHREALTIME
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

STEPS=${QEMU_MESH_STEPS:-8}
PROMPT=${QEMU_MESH_PROMPT-Once}
read -r -a PROFILES <<<"${QEMU_MESH_PROFILES:-rpi4 rpi5 jetson-nano}"
CLIENT_PROFILE=${QEMU_MESH_CLIENT_PROFILE:-qemu-virt}
MEM_CAP=${QEMU_MESH_MEM_CAP:-}
SMP_CAP=${QEMU_MESH_SMP_CAP:-}
QUORUM_TIMEOUT=${QEMU_MESH_QUORUM_TIMEOUT:-120}
ASK_TIMEOUT=${QEMU_MESH_ASK_TIMEOUT:-600}
BUILD_TIMEOUT=${QEMU_MESH_BUILD_TIMEOUT:-1500}
VM_LOG=${QEMU_MESH_LOG:-warn}
STAGGER=${QEMU_MESH_STAGGER:-0}
TCG_THREAD=${QEMU_MESH_TCG_THREAD:-single}
BOOT_ATTEMPTS=${QEMU_MESH_BOOT_ATTEMPTS:-1}
STAGGER_GAP=${QEMU_MESH_STAGGER_GAP:-2}
# Backstop for every qemu process, should this script itself be killed.
VM_MAX_LIFE=$((QUORUM_TIMEOUT * ${QEMU_MESH_BOOT_ATTEMPTS:-1} + ASK_TIMEOUT + 120))

MODEL_DIR=$root/models/stories260K
CACHE=$root/target/qemu-cache
WORK=$root/target/qemu-mesh
BIN=${QEMU_MESH_BIN:-$root/target/aarch64-unknown-linux-gnu/release/sotto}
NS=sotto-qemu-$$
MCAST_PORT=$((20000 + $$ % 20000))
SUBNET=10.77.0

say() { echo "qemu-mesh-test: $*" >&2; }
die() {
  echo "qemu-mesh-test: FAIL: $*" >&2
  exit 1
}
now() { echo "$EPOCHREALTIME"; }
# elapsed A B: B - A in seconds with one decimal
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

[ "$(id -u)" -eq 0 ] || die "run as root (it creates a network namespace; CI runs as root)"
[[ "$STEPS" =~ ^[1-9][0-9]*$ ]] || die "QEMU_MESH_STEPS must be a positive integer (got '$STEPS')"
[ "${#PROFILES[@]}" -eq 3 ] || die "QEMU_MESH_PROFILES must name 3 profiles, one per node (got ${#PROFILES[@]})"

# ---------------------------------------------------------------- cleanup (any exit)
QEMU_PIDFILES=()
LAUNCHER_PIDS=()
NS_CREATED=0
cleanup() {
  local rc=$? pid f
  trap - EXIT INT TERM
  for f in "${QEMU_PIDFILES[@]}"; do
    pid=$(cat "$f" 2>/dev/null || true)
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${LAUNCHER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  if [ "$NS_CREATED" -eq 1 ]; then
    sleep 0.5
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${LAUNCHER_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${LAUNCHER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || say "could not delete network namespace $NS"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- host packages
need_pkgs=()
command -v qemu-system-aarch64 >/dev/null || need_pkgs+=(qemu-system-arm)
command -v cpio >/dev/null || need_pkgs+=(cpio)
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v python3 >/dev/null || need_pkgs+=(python3)
command -v timeout >/dev/null || need_pkgs+=(coreutils)
command -v dpkg-deb >/dev/null || need_pkgs+=(dpkg)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  say "installing ${need_pkgs[*]}"
  timeout 300 apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends \
    "${need_pkgs[@]}" >/dev/null || die "could not install ${need_pkgs[*]}"
fi
[ -f "$MODEL_DIR/stories260K.bin" ] && [ -f "$MODEL_DIR/tok512.bin" ] ||
  die "the model is missing from $MODEL_DIR: run scripts/fetch-model.sh"

# ---------------------------------------------------------------- aarch64 build
T_BUILD=$(now)
if [ -n "${QEMU_MESH_BIN:-}" ] || { [ "${QEMU_MESH_SKIP_BUILD:-0}" = 1 ] && [ -x "$BIN" ]; }; then
  say "using the existing $BIN (no build)"
else
  timeout 600 "$root/scripts/setup-cross.sh" || die "scripts/setup-cross.sh failed"
  say "building the static aarch64 sotto (scripts/build-aarch64.sh)"
  timeout "$BUILD_TIMEOUT" "$root/scripts/build-aarch64.sh" >&2 ||
    die "scripts/build-aarch64.sh failed (or took more than $BUILD_TIMEOUT s)"
fi
[ -x "$BIN" ] || die "$BIN was not built"
file "$BIN" 2>/dev/null | grep -Eq 'statically linked|static-pie linked' || {
  command -v file >/dev/null && die "$BIN is not statically linked"
}
T_BUILT=$(now)
# Host-side uses of the same binary (provision, keys, plaintext generate) run under qemu-user.
HOST_SOTTO=(qemu-aarch64 "$BIN")

# ---------------------------------------------------------------- Debian arm64 kernel + busybox
mkdir -p "$CACHE"
kroot=$CACHE/root
if [ ! -f "$CACHE/ready" ]; then
  say "fetching the Debian arm64 kernel and busybox-static into $CACHE"
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
  fi
  timeout 300 apt-get update -qq || die "apt-get update failed"
  kpkg=$(apt-cache depends linux-image-arm64:arm64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-arm64\)\(:arm64\)\{0,1\}$/\1/p' | head -1)
  [ -n "$kpkg" ] || die "cannot tell which kernel linux-image-arm64:arm64 names (apt-cache depends)"
  rm -rf "$CACHE/debs" "$kroot"
  mkdir -p "$CACHE/debs" "$kroot"
  (cd "$CACHE/debs" && timeout 600 apt-get download "$kpkg:arm64" busybox-static:arm64) ||
    die "apt-get download $kpkg:arm64 busybox-static:arm64 failed"
  for deb in "$CACHE"/debs/*.deb; do dpkg -x "$deb" "$kroot"; done
  touch "$CACHE/ready"
fi
KERNEL=$(ls "$kroot"/boot/vmlinuz-* 2>/dev/null | head -1)
[ -n "$KERNEL" ] || die "no kernel in $kroot/boot (remove $CACHE and retry)"
kver=${KERNEL##*/vmlinuz-}
MODS=(virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net)
declare -A MODPATH
for m in "${MODS[@]}"; do
  MODPATH[$m]=$(find "$kroot/lib/modules/$kver" -name "$m.ko" | head -1)
  [ -n "${MODPATH[$m]}" ] || die "module $m.ko not found under $kroot/lib/modules/$kver"
done
BUSYBOX=$kroot/bin/busybox
[ -x "$BUSYBOX" ] || die "no busybox in $kroot/bin"

# ---------------------------------------------------------------- profiles
# profile_qemu NAME -> "cpu memory_mib smp" from firmware-profiles/profiles/NAME.toml [qemu]
profile_qemu() {
  python3 - "$root/firmware-profiles/profiles/$1.toml" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    q = tomllib.load(f).get("qemu")
if not q:
    sys.exit(f"{sys.argv[1]} has no [qemu] section: it cannot be emulated")
print(q["cpu"], q["memory_mib"], q["smp"])
EOF
}

# ---------------------------------------------------------------- keys, shares, configs
rm -rf "$WORK"
mkdir -p "$WORK"
umask 077
printf '/key/swarm/psk/1.0.0/\n/base16/\n%s\n' \
  "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$WORK/mesh.psk"
NAMES=(node1 node2 node3 client)
declare -A PEER IP MAC PROF
for i in 0 1 2 3; do
  n=${NAMES[$i]}
  mkdir -p "$WORK/$n/sotto"
  PEER[$n]=$(timeout 60 "${HOST_SOTTO[@]}" run --print-peer-id --identity "$WORK/$n/sotto/node.key") ||
    die "sotto run --print-peer-id failed"
  IP[$n]=$SUBNET.$((11 + i))
  MAC[$n]=$(printf '52:54:00:77:00:%02x' $((11 + i)))
done
# The share files bind each party index to its device's peer ID (the roster).
say "provisioning a (3,1) mesh for the devices' keys in $WORK"
timeout 300 "${HOST_SOTTO[@]}" provision --threshold 1 --out "$WORK/shares" \
  --device "${PEER[node1]}" --device "${PEER[node2]}" --device "${PEER[node3]}" \
  --model "$MODEL_DIR" >"$WORK/provision.log" 2>&1 || {
  cat "$WORK/provision.log" >&2
  die "sotto provision failed"
}
PROF[node1]=${PROFILES[0]} PROF[node2]=${PROFILES[1]} PROF[node3]=${PROFILES[2]}
PROF[client]=$CLIENT_PROFILE
for n in node1 node2 node3; do
  party=${n#node}
  d=$WORK/$n/sotto
  cp "$WORK/shares/party-$party.share" "$d/"
  cp "$WORK/mesh.psk" "$d/"
  # mDNS only: no static_peers. The other devices are admitted through the share file's
  # roster; only the client is listed.
  cat >"$d/node.toml" <<EOF
identity = "node.key"
share_file = "party-$party.share"
psk_file = "mesh.psk"
listen = ["/ip4/0.0.0.0/tcp/4100"]
clients = ["${PEER[client]}"]
profile = "${PROF[$n]}"
mdns = true
EOF
done
d=$WORK/client/sotto
mv "$d/node.key" "$d/client.key"
cp "$WORK/mesh.psk" "$d/"
# The client needs only the tokenizer, never the weights.
cp "$MODEL_DIR/tok512.bin" "$d/"
printf '%s' "$PROMPT" >"$d/prompt.txt"
printf '%s\n' "${PEER[node1]}" "${PEER[node2]}" "${PEER[node3]}" >"$d/allow"
printf '%s\n' "${IP[node1]}" "${IP[node2]}" "${IP[node3]}" >"$d/node_ips"
umask 022

# ---------------------------------------------------------------- initramfs
# base.cpio (busybox, virtio modules, sotto, /init) + one small cpio per VM, concatenated:
# the kernel unpacks every archive of the initrd in turn.
base=$WORK/base
mkdir -p "$base"/{bin,dev,proc,sys,tmp,root,lib/modules/sotto}
cp "$BUSYBOX" "$base/bin/busybox"
# The release build carries debug info (~80 MB); the initramfs lives in the VM's RAM.
aarch64-linux-gnu-strip -o "$base/bin/sotto" "$BIN" 2>/dev/null || cp "$BIN" "$base/bin/sotto"
for m in "${MODS[@]}"; do cp "${MODPATH[$m]}" "$base/lib/modules/sotto/"; done
install -m 755 "$root/scripts/qemu/init" "$base/init"
mknod -m 600 "$base/dev/console" c 5 1
mknod -m 666 "$base/dev/null" c 1 3
(cd "$base" && find . | cpio -o -H newc -R 0:0 --quiet >"$WORK/base.cpio")
for n in "${NAMES[@]}"; do
  (cd "$WORK/$n" && find sotto | cpio -o -H newc -R 0:0 --quiet >"$WORK/$n.cpio")
  cat "$WORK/base.cpio" "$WORK/$n.cpio" >"$WORK/$n.initrd"
done

# ---------------------------------------------------------------- plaintext reference (host)
say "plaintext reference: sotto generate --engine f32 --print-ids, \"$PROMPT\" + $STEPS tokens"
# generate counts positions (prompt included, as llama2.c) and stops at BOS: give it a margin
# (a prompt never has more tokens than bytes + BOS) and keep the first STEPS sampled ids.
GEN_POSITIONS=$(($(printf '%s' "$PROMPT" | wc -c) + STEPS + 1))
timeout 300 "${HOST_SOTTO[@]}" generate --engine f32 --prompt "$PROMPT" --steps "$GEN_POSITIONS" \
  --print-ids --model "$MODEL_DIR" >"$WORK/generate.out" 2>"$WORK/generate.err" ||
  die "sotto generate failed: $(cat "$WORK/generate.err")"
PLAIN_IDS=$(sed -n 's/^token ids: //p' "$WORK/generate.err" | tr ' ' '\n' | head -n "$STEPS" | paste -sd' ')
[ "$(wc -w <<<"$PLAIN_IDS")" -eq "$STEPS" ] ||
  die "the plaintext generation ended (BOS) before $STEPS tokens: choose another QEMU_MESH_PROMPT or fewer QEMU_MESH_STEPS"
PROMPT_POSITIONS=$(sed -n 's/.*(\([0-9]*\) from the prompt.*/\1/p' "$WORK/generate.err")

# ---------------------------------------------------------------- network namespace + VMs
ip netns add "$NS" || die "cannot create network namespace $NS"
NS_CREATED=1
ip -n "$NS" link set lo up
ip -n "$NS" link set lo multicast on
ip -n "$NS" route add 224.0.0.0/4 dev lo
declare -A T_LAUNCH QCPU QMEM QSMP

launch() { # launch NAME ROLE
  local n=$1 role=$2 cpu mem smp
  read -r cpu mem smp < <(profile_qemu "${PROF[$n]}") || die "profile ${PROF[$n]}: no QEMU settings"
  [ -n "$MEM_CAP" ] && [ "$mem" -gt "$MEM_CAP" ] && mem=$MEM_CAP
  [ -n "$SMP_CAP" ] && [ "$smp" -gt "$SMP_CAP" ] && smp=$SMP_CAP
  QCPU[$n]=$cpu QMEM[$n]=$mem QSMP[$n]=$smp
  : >"$WORK/$n.log"
  T_LAUNCH[$n]=$(now)
  timeout -k 5 "$VM_MAX_LIFE" ip netns exec "$NS" qemu-system-aarch64 \
    -M virt -cpu "$cpu" -m "$mem" -smp "$smp" -accel "tcg,thread=$TCG_THREAD" \
    -display none -monitor none -no-reboot \
    -serial "file:$WORK/$n.log" -pidfile "$WORK/$n.pid" \
    -kernel "$KERNEL" -initrd "$WORK/$n.initrd" \
    -append "console=ttyAMA0 quiet panic=-1 sotto.role=$role sotto.name=$n sotto.ip=${IP[$n]} sotto.profile=${PROF[$n]} sotto.steps=$STEPS sotto.log=$VM_LOG" \
    -netdev "socket,id=n0,mcast=230.0.0.1:$MCAST_PORT,localaddr=127.0.0.1" \
    -device "virtio-net-pci,netdev=n0,mac=${MAC[$n]},romfile=" \
    >"$WORK/$n.qemu.log" 2>&1 &
  LAUNCHER_PIDS+=($!)
  QEMU_PIDFILES+=("$WORK/$n.pid")
  eval "LAUNCHER_$n=$!"
}
alive() { local v="LAUNCHER_$1"; kill -0 "${!v}" 2>/dev/null; }
has() { grep -aq -- "$2" "$WORK/$1.log" 2>/dev/null; }
vm_failed() { # prints why NAME failed, if it did
  local n=$1
  if has "$n" SOTTO-QEMU-FATAL; then
    grep -a SOTTO-QEMU-FATAL "$WORK/$n.log" | head -1 | tr -d '\r'
  elif ! alive "$n"; then
    echo "$n's qemu exited: $(tr -d '\r' <"$WORK/$n.qemu.log" | tail -3)"
  fi
}
show_tail() { say "--- last lines of $1's serial console ($WORK/$1.log):"; tr -d '\r' <"$WORK/$1.log" | tail -n "${2:-15}" >&2; }

declare -A T_NET T_UP T_QUORUM
QUORUM_MISSING=""
note_times() { # records when each marker first shows in a log
  local n t
  t=$(now)
  for n in "$@"; do
    [ -z "${T_NET[$n]:-}" ] && has "$n" ": net up" && T_NET[$n]=$t
    [ -z "${T_UP[$n]:-}" ] && has "$n" "sotto node: listening on" && T_UP[$n]=$t
    [ -z "${T_QUORUM[$n]:-}" ] && has "$n" "quorum formed with parties \[1, 2, 3\]" && T_QUORUM[$n]=$t
  done
  return 0
}

stop_vm() { # stop_vm NAME: SIGTERM its qemu, wait for it
  local n=$1 pid v="LAUNCHER_$1"
  pid=$(cat "$WORK/$n.pid" 2>/dev/null || true)
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  [ -n "${!v:-}" ] && { wait "${!v}" 2>/dev/null || true; }
  return 0
}
# boot_nodes: launches node1..3 and waits for every node to print `quorum formed with parties
# [1, 2, 3]`; returns 1 when the quorum does not form within QUORUM_TIMEOUT.
boot_nodes() {
  local n why
  T_NET=() T_UP=() T_QUORUM=()
  T_NODES=$(now)
  deadline=$(($(date +%s) + QUORUM_TIMEOUT))
  if [ "$STAGGER" = 1 ]; then
    # Devices power up one after another: each node is launched once the previous one listens
    # (see QEMU_MESH_STAGGER above).
    for n in node1 node2 node3; do
      launch "$n" node
      until has "$n" "sotto node: listening on"; do
        note_times node1 node2 node3
        why=$(vm_failed "$n")
        [ -n "$why" ] && { show_tail "$n" 30; die "$why"; }
        [ "$(date +%s)" -ge "$deadline" ] && { show_tail "$n" 30; die "$n did not start its node within $QUORUM_TIMEOUT s"; }
        sleep 0.2
      done
      note_times "$n"
      sleep "$STAGGER_GAP"
    done
  else
    for n in node1 node2 node3; do launch "$n" node; done
  fi
  while :; do
    note_times node1 node2 node3
    [ -n "${T_QUORUM[node1]:-}" ] && [ -n "${T_QUORUM[node2]:-}" ] && [ -n "${T_QUORUM[node3]:-}" ] && return 0
    for n in node1 node2 node3; do
      why=$(vm_failed "$n")
      [ -n "$why" ] && { show_tail "$n" 30; die "$why"; }
    done
    if [ "$(date +%s)" -ge "$deadline" ]; then
      for n in node1 node2 node3; do show_tail "$n"; done
      QUORUM_MISSING="no quorum by mDNS within $QUORUM_TIMEOUT s (nodes that printed 'quorum formed with parties [1, 2, 3]': $(for n in node1 node2 node3; do [ -n "${T_QUORUM[$n]:-}" ] && printf '%s ' "$n"; done))"
      return 1
    fi
    sleep 0.2
  done
}

say "booting node1..3 (profiles ${PROFILES[*]}) in namespace $NS, LAN 230.0.0.1:$MCAST_PORT"
ATTEMPT=1
until boot_nodes; do
  if [ "$ATTEMPT" -ge "$BOOT_ATTEMPTS" ]; then
    die "$QUORUM_MISSING"
  fi
  say "ATTEMPT $ATTEMPT FAILED: $QUORUM_MISSING; stopping the nodes and booting them again (QEMU_MESH_BOOT_ATTEMPTS=$BOOT_ATTEMPTS)"
  for n in node1 node2 node3; do
    mv "$WORK/$n.log" "$WORK/$n.attempt$ATTEMPT.log" 2>/dev/null || true
    stop_vm "$n"
  done
  ATTEMPT=$((ATTEMPT + 1))
done
T_ALL_QUORUM=$(now)
last_up=$(printf '%s\n' "${T_UP[node1]}" "${T_UP[node2]}" "${T_UP[node3]}" | sort -n | tail -1)
say "quorum formed on all nodes $(elapsed "$T_NODES" "$T_ALL_QUORUM") s after launch"
if [ "${QEMU_MESH_QUORUM_ONLY:-0}" = 1 ]; then
  say "QEMU_MESH_QUORUM_ONLY=1: stopping after the quorum check (PASS so far)"
  exit 0
fi

say "booting the client VM (profile $CLIENT_PROFILE): sotto ask --mdns --steps $STEPS"
launch client client
deadline=$(($(date +%s) + ASK_TIMEOUT))
while ! has client "SOTTO-QEMU-ASK-RC:"; do
  note_times client
  why=$(vm_failed client)
  [ -n "$why" ] && { show_tail client 30; die "client: $why"; }
  for n in node1 node2 node3; do
    why=$(vm_failed "$n")
    [ -n "$why" ] && { show_tail "$n" 30; die "$why"; }
  done
  if [ "$(date +%s)" -ge "$deadline" ]; then
    show_tail client 30
    die "the private generation did not finish within $ASK_TIMEOUT s"
  fi
  sleep 0.5
done
T_ASK_DONE=$(now)
field() { grep -a "^$1" "$WORK/client.log" | tail -1 | tr -d '\r' | sed "s/^$1 *//"; }
ASK_RC=$(field "SOTTO-QEMU-ASK-RC:")
PRIVATE_IDS=$(field "SOTTO-QEMU-IDS:")
PRIVATE_TPS=$(field "SOTTO-QEMU-TPS:")
PRIVATE_TEXT=$(field "SOTTO-QEMU-TEXT:" | base64 -d 2>/dev/null || true)

# ---------------------------------------------------------------- stop every VM
# The client powers itself off; the nodes are stopped (SIGTERM to qemu); none may remain.
for _ in $(seq 1 100); do alive client || break; sleep 0.2; done
CLIENT_EXITED=1
alive client && CLIENT_EXITED=0
for n in node1 node2 node3 client; do
  pid=$(cat "$WORK/$n.pid" 2>/dev/null || true)
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
done
for _ in $(seq 1 50); do
  left=$(ip netns pids "$NS" 2>/dev/null | wc -l)
  [ "$left" -eq 0 ] && break
  sleep 0.2
done
left_running=$(ip netns pids "$NS" 2>/dev/null | tr '\n' ' ')
for n in node1 node2 node3 client; do
  v="LAUNCHER_$n"
  wait "${!v}" 2>/dev/null || true
done
T_END=$(now)

# ---------------------------------------------------------------- report
n_ids() { wc -w <<<"$1"; }
{
  echo
  echo "== QEMU mesh test report: (3,1) mesh, mDNS discovery, \"$PROMPT\" + $STEPS tokens =="
  printf '%-7s %-12s %-11s %4s %6s  %10s  %10s  %9s\n' VM profile "-cpu" "-smp" "-m" "boot→net" "sotto up" quorum
  for n in node1 node2 node3 client; do
    tq="-" tu="-" tn="-"
    [ -n "${T_NET[$n]:-}" ] && tn="$(elapsed "${T_LAUNCH[$n]}" "${T_NET[$n]}") s"
    [ -n "${T_UP[$n]:-}" ] && tu="$(elapsed "${T_LAUNCH[$n]}" "${T_UP[$n]}") s"
    [ -n "${T_QUORUM[$n]:-}" ] && tq="$(elapsed "${T_LAUNCH[$n]}" "${T_QUORUM[$n]}") s"
    printf '%-7s %-12s %-11s %4s %6s  %10s  %10s  %9s\n' "$n" "${PROF[$n]}" "${QCPU[$n]:--}" \
      "${QSMP[$n]:--}" "${QMEM[$n]:--}" "$tn" "$tu" "$tq"
  done
  echo "(times from each VM's qemu launch; 'sotto up' = the node listens; the client's 'boot→net' is its network)"
  echo "time to quorum:   $(elapsed "$T_NODES" "$T_ALL_QUORUM") s from launching the nodes, $(elapsed "$last_up" "$T_ALL_QUORUM") s after the last node started listening"
  echo "private ask:      client VM launch to ids $(elapsed "${T_LAUNCH[client]}" "$T_ASK_DONE") s; sotto ask rc=$ASK_RC"
  echo "tokens/s:         ${PRIVATE_TPS:-?}  (nodes ${PROFILES[*]}, TCG thread=$TCG_THREAD, on this host)"
  echo "LAN RTT (client): $(grep -a '^SOTTO-QEMU-RTT:' "$WORK/client.log" | tr -d '\r' | sed 's/^SOTTO-QEMU-RTT: //' | paste -sd ';' -) (min/avg/max)"
  echo "node boots:       $ATTEMPT attempt(s) to form the quorum"
  echo "prompt:           \"$PROMPT\" ($((PROMPT_POSITIONS + 1)) tokens with BOS)"
  echo "private ids:      ${PRIVATE_IDS:-<none>}"
  echo "plaintext ids:    $PLAIN_IDS  (f32 greedy; text = sotto generate --engine f32)"
  echo "private text:     $(tr '\n' ' ' <<<"$PRIVATE_TEXT")"
  echo "plaintext text:   $(tr '\n' ' ' <"$WORK/generate.out")"
  echo "build:            $(elapsed "$T_BUILD" "$T_BUILT") s;  total runtime $(elapsed "$T_START" "$T_END") s"
  echo "logs:             $WORK/{node1,node2,node3,client}.log"
} >&2

fail=()
[ "$ASK_RC" = 0 ] || fail+=("sotto ask exited with $ASK_RC")
[ -n "$PRIVATE_IDS" ] || fail+=("the client printed no token ids")
[ "$PRIVATE_IDS" = "$PLAIN_IDS" ] || fail+=("private ids ($PRIVATE_IDS) != plaintext ids ($PLAIN_IDS)")
[ "$(n_ids "$PRIVATE_IDS")" -eq "$STEPS" ] || fail+=("$(n_ids "$PRIVATE_IDS") private ids, expected $STEPS")
# generate ran past STEPS (see above): the client's text must be the start of its text.
[ -n "$PRIVATE_TEXT" ] && [[ "$(cat "$WORK/generate.out")" == "$PRIVATE_TEXT"* ]] ||
  fail+=("the client's text ($PRIVATE_TEXT) is not the start of sotto generate's ($(cat "$WORK/generate.out"))")
[ "$CLIENT_EXITED" = 1 ] || fail+=("the client VM did not power off by itself")
[ -z "$left_running" ] || fail+=("processes still running in $NS after stopping the VMs: $left_running")
if [ ${#fail[@]} -gt 0 ]; then
  for f in "${fail[@]}"; do echo "qemu-mesh-test: FAIL: $f" >&2; done
  exit 1
fi
echo "qemu-mesh-test: PASS (private ids == plaintext ids, quorum by mDNS, no VM left running)" >&2
