#!/usr/bin/env bash
# Two sotto binaries side by side on the same private work: `demo --in-memory` (3,1), 64 greedy
# tokens from "Once upon a time", RUNS alternating runs of each (default 5). Prints each run,
# then the median tokens/s of both, their ratio (new / old), and whether the rounds and bytes
# per token are the same. For refactorings that must not change what a user gets.
# LIBP2P=1 runs the demo over libp2p nodes on 127.0.0.1 instead of in memory.
#
#   scripts/bench-compare.sh /path/to/old/sotto target/release/sotto
#   LIBP2P=1 STEPS=16 scripts/bench-compare.sh /path/to/old/sotto target/release/sotto
set -euo pipefail
old=${1:?usage: bench-compare.sh OLD_BINARY NEW_BINARY}
new=${2:?usage: bench-compare.sh OLD_BINARY NEW_BINARY}
runs=${RUNS:-5}
steps=${STEPS:-64}
args=(demo --parties 3 --threshold 1 --steps "$steps")
[ "${LIBP2P:-0}" = 1 ] || args+=(--in-memory)
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
tps() { sed -n 's/.*tokens\/s *\([0-9.]*\) private.*/\1/p'; }
cost() { grep -E 'rounds/token|bytes/party/token|tokens vs plaintext' | sed 's/^ *//'; }
old_tps=(); new_tps=()
for i in $(seq "$runs"); do
  for which in old new; do
    bin=$old; [ "$which" = new ] && bin=$new
    out=$("$bin" "${args[@]}" 2>&1 >/dev/null)
    t=$(tps <<<"$out")
    echo "run $i $which: $t tok/s"
    if [ "$which" = old ]; then old_tps+=("$t"); old_cost=$(cost <<<"$out"); else new_tps+=("$t"); new_cost=$(cost <<<"$out"); fi
  done
done
mo=$(printf '%s\n' "${old_tps[@]}" | median)
mn=$(printf '%s\n' "${new_tps[@]}" | median)
echo "median tok/s: old $mo, new $mn, ratio new/old $(awk -v a="$mn" -v b="$mo" 'BEGIN { printf "%.3f", a / b }')"
echo "old: $old_cost" | tr '\n' ' '; echo
echo "new: $new_cost" | tr '\n' ' '; echo
if [ "$old_cost" = "$new_cost" ]; then echo "rounds, bytes and tokens: identical"; else echo "rounds, bytes or tokens DIFFER"; exit 1; fi
