#!/usr/bin/env bash
# Private-inference benchmark: stories260K, 64 greedy tokens from "Once upon a time".
# 1. Parties as threads over the in-memory transport (the MPC's own cost), for each (n, t)
#    given (default: 3,1 and 5,2): one markdown table row per configuration (median of RUNS
#    runs, default 3), with the exact command.
# 2. Then over libp2p: separate `sotto run` processes on 127.0.0.1 with the loopback, lan and
#    wifi link profiles, against each link's floor (scripts/bench-net.sh; LINKS to choose,
#    NET=0 to skip).
# Paste the tables into docs/benchmarks.md.
#
#   scripts/bench.sh                 # (3,1) and (5,2) in memory, (3,1) over loopback/lan/wifi
#   RUNS=5 scripts/bench.sh 3,1 4,1  # chosen configurations
#   NET=0 scripts/bench.sh           # in-memory table only
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
runs=${RUNS:-3}
steps=${STEPS:-64}
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(3,1 5,2)

"$root/scripts/fetch-model.sh" >/dev/null 2>&1 || "$root/scripts/fetch-model.sh"
cargo build --release --quiet --bin sotto
bin="$root/target/release/sotto"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "| (n,t) | private tok/s | plaintext tok/s | overhead | online rounds/token | prep rounds/token | online MB/party/token | prep MB/party/token | tokens = f32 | max logit err | command |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for cfg in "${configs[@]}"; do
  n=${cfg%,*}; t=${cfg#*,}
  cmd="sotto demo --in-memory --parties $n --threshold $t --steps $steps --verify"
  tps=(); ptps=()
  for _ in $(seq "$runs"); do
    out=$("$bin" demo --in-memory --parties "$n" --threshold "$t" --steps "$steps" --verify 2>&1 >/dev/null)
    tps+=("$(sed -n 's/.*tokens\/s *\([0-9.]*\) private.*/\1/p' <<<"$out")")
    ptps+=("$(sed -n 's/.*, \([0-9.]*\) plaintext f32.*/\1/p' <<<"$out")")
  done
  tp=$(printf '%s\n' "${tps[@]}" | median)
  pp=$(printf '%s\n' "${ptps[@]}" | median)
  onr=$(sed -n 's/.*rounds\/token *\([0-9.]*\) online + \([0-9.]*\) preprocessing.*/\1/p' <<<"$out")
  ofr=$(sed -n 's/.*rounds\/token *\([0-9.]*\) online + \([0-9.]*\) preprocessing.*/\2/p' <<<"$out")
  onb=$(sed -n 's/.*bytes\/party\/token *\([0-9.]*\) MB online + \([0-9.]*\) MB.*/\1/p' <<<"$out")
  ofb=$(sed -n 's/.*bytes\/party\/token *\([0-9.]*\) MB online + \([0-9.]*\) MB.*/\2/p' <<<"$out")
  same=$(sed -n 's/.*tokens vs plaintext *\([A-Za-z]*\) (\([0-9]*\/[0-9]*\).*/\1 \2/p' <<<"$out")
  err=$(sed -n 's/.*max |logit_private - logit_f32| = \([0-9.]*\).*/\1/p' <<<"$out")
  over=$(awk -v a="$pp" -v b="$tp" 'BEGIN { if (b > 0) printf "%.0fx", a / b; else print "-" }')
  echo "| ($n,$t) | $tp | $pp | $over | $onr | $ofr | $onb | $ofb | $same | $err | \`$cmd\` |"
done

if [ "${NET:-1}" != 0 ]; then
  echo
  read -r -a links <<<"${LINKS:-loopback lan wifi}"
  SOTTO_BIN="$bin" STEPS="$steps" "$root/scripts/bench-net.sh" "${links[@]}"
fi
