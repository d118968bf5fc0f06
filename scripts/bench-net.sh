#!/usr/bin/env bash
# Private inference over libp2p: stories260K, greedy generation from "Once upon a time". Every
# party is its own `sotto run` process listening on 127.0.0.1 (TCP + PSK + Noise + Yamux), the
# client is `sotto ask`; the link profile (loopback, lan, wifi) is the nodes' user-space link
# emulation (`link` in node.toml). For each (link, (n,t)) it prints one markdown table row
# (median of RUNS runs) with the link floor per token: rounds x RTT + bytes / bandwidth, where
# rounds are one party's (online + preprocessing) rounds per token and bytes are what one party
# sends per token on one link (its bytes / (n - 1): each directed link is emulated on its own,
# so a party's messages to its n - 1 peers serialize in parallel).
#
#   scripts/bench-net.sh                       # loopback lan wifi, (3,1), 64 tokens
#   CONFIGS="3,1 5,2" RUNS=3 scripts/bench-net.sh loopback
#   STEPS=16 scripts/bench-net.sh wifi         # wifi is slow: ~3 ms per round
#   SOTTO_BIN=path/to/sotto scripts/bench-net.sh   # an already-built binary
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
runs=${RUNS:-1}
steps=${STEPS:-64}
read -r -a configs <<<"${CONFIGS:-3,1}"
links=("$@")
[ ${#links[@]} -gt 0 ] || links=(loopback lan wifi)
prompt="Once upon a time"

"$root/scripts/fetch-model.sh" >/dev/null 2>&1 || "$root/scripts/fetch-model.sh"
export SOTTO_MODEL_DIR=${SOTTO_MODEL_DIR:-$root/models/stories260K}
bin=${SOTTO_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --quiet --bin sotto
  bin="$root/target/release/sotto"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sotto-bench-net.XXXXXX")
pids=()
stop_nodes() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
cleanup() { stop_nodes; rm -rf "$work"; }
trap cleanup EXIT INT TERM

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# A free TCP port on 127.0.0.1 (bound, then released for the node to take).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The mesh key, in libp2p's swarm.key format, owner-only.
(umask 077; printf '/key/swarm/psk/1.0.0/\n/base16/\n%s\n' \
  "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$work/mesh.psk")
client_peer=$("$bin" run --print-peer-id --identity "$work/client.key")
# `generate --steps` counts the prompt's positions too (run.c): ask a little more and compare
# prefixes.
plain=$("$bin" generate --prompt "$prompt" --steps "$((steps + 32))" 2>/dev/null)

echo "| link | (n,t) | tok/s | s/token | link floor s/token | floor / actual | online rounds/token | prep rounds/token | online MB/party/token | prep MB/party/token | text = plaintext | command |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for cfg in "${configs[@]}"; do
  n=${cfg%,*}; t=${cfg#*,}
  dir="$work/n$n-t$t"
  mkdir -p "$dir"
  peers=(); ports=(); devices=()
  for i in $(seq "$n"); do
    peers+=("$("$bin" run --print-peer-id --identity "$dir/node-$i.key")")
    ports+=("$(free_port)")
    devices+=(--device "${peers[$((i-1))]}")
  done
  # The share files bind party i to node-i.key's peer ID (the roster).
  "$bin" provision "${devices[@]}" --threshold "$t" --out "$dir" --force >/dev/null 2>&1
  for link in "${links[@]}"; do
    case $link in
      loopback) rtt=0; bps=0 ;;
      lan) rtt=0.0002; bps=1000000000 ;;
      wifi) rtt=0.003; bps=100000000 ;;
      *) echo "unknown link profile $link (loopback, lan, wifi)" >&2; exit 2 ;;
    esac
    peer_args=()
    for i in $(seq "$n"); do
      statics=""
      for j in $(seq "$n"); do
        [ "$j" = "$i" ] || statics+="\"/ip4/127.0.0.1/tcp/${ports[$((j-1))]}/p2p/${peers[$((j-1))]}\", "
      done
      cat >"$dir/node-$i.toml" <<TOML
identity = "node-$i.key"
share_file = "party-$i.share"
psk_file = "../mesh.psk"
listen = ["/ip4/127.0.0.1/tcp/${ports[$((i-1))]}"]
static_peers = [${statics%, }]
clients = ["$client_peer"]
link = "$link"
TOML
      "$bin" run --config "$dir/node-$i.toml" 2>"$dir/node-$i.$link.log" &
      pids+=($!)
      peer_args+=(--peer "/ip4/127.0.0.1/tcp/${ports[$((i-1))]}/p2p/${peers[$((i-1))]}")
    done
    cmd="sotto ask --prompt \"$prompt\" --steps $steps (n=$n t=$t, link = \"$link\" on every node)"
    tps=(); out=""
    for _ in $(seq "$runs"); do
      text=$("$bin" ask --prompt "$prompt" --steps "$steps" --psk "$work/mesh.psk" \
        --identity "$work/client.key" "${peer_args[@]}" 2>"$dir/ask.err")
      out=$(cat "$dir/ask.err")
      tps+=("$(sed -n 's/.*tokens\/s *\([0-9.]*\) (.*/\1/p' <<<"$out")")
    done
    stop_nodes
    tp=$(printf '%s\n' "${tps[@]}" | median)
    onr=$(sed -n 's/.*rounds\/token *\([0-9.]*\) online + \([0-9.]*\) preprocessing.*/\1/p' <<<"$out")
    ofr=$(sed -n 's/.*rounds\/token *\([0-9.]*\) online + \([0-9.]*\) preprocessing.*/\2/p' <<<"$out")
    onb=$(sed -n 's/.*bytes\/party\/token *\([0-9.]*\) MB online + \([0-9.]*\) MB.*/\1/p' <<<"$out")
    ofb=$(sed -n 's/.*bytes\/party\/token *\([0-9.]*\) MB online + \([0-9.]*\) MB.*/\2/p' <<<"$out")
    if [ -z "$tp" ] || [ -z "$onr" ]; then
      echo "ask failed on link $link, (n,t) = ($n,$t):" >&2; echo "$out" >&2; exit 1
    fi
    same=no; trimmed=$(echo "$text" | sed 's/[[:space:]]*$//'); [[ "$plain" == "$trimmed"* ]] && same=yes
    row=$(awk -v tp="$tp" -v onr="$onr" -v ofr="$ofr" -v onb="$onb" -v ofb="$ofb" -v rtt="$rtt" -v bps="$bps" -v n="$n" 'BEGIN {
      spt = 1 / tp
      if (bps > 0) { floor = (onr + ofr) * rtt + (onb + ofb) * 1e6 * 8 / (n - 1) / bps; f = sprintf("%.3f", floor); r = sprintf("%.0f%%", 100 * floor / spt) }
      else { f = "-"; r = "-" }
      printf "%.2f | %.3f | %s | %s", tp, spt, f, r }')
    echo "| $link | ($n,$t) | $row | $onr | $ofr | $onb | $ofb | $same | \`$cmd\` |"
  done
done
