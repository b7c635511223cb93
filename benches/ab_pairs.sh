#!/bin/bash
# Paired A/B runs of the load generator: every round runs each BIN:LAG
# once, alternating, so that each pair sees the same machine (this VM's
# speed moves by up to 2x within an hour). Prints the lines that matter.
#
# usage: benches/ab_pairs.sh WORKLOAD ROUNDS BIN:LAG [BIN:LAG ...]
#   BIN: a gateway binary (e.g. a copy of target/release/tickergate built
#        at the commit to compare); LAG: session.read_lag_ms for it.
#   Extra load generator options in $EXTRA (e.g. EXTRA="--duration 20");
#   RAW=1 also runs the raw loopback writer (the one-core floor).
# Builds the load generator (crate tickergate-loadgen in tools/loadgen)
# first. Example:
#   benches/ab_pairs.sh hot 4 /tmp/tg-old:0 /tmp/tg-new:0 | tee ab.txt
set -euo pipefail
W=$1; R=$2; shift 2
cd "$(dirname "$0")/.."
cargo build --release -q -p tickergate-loadgen
L=${CARGO_TARGET_DIR:-target}/release/loadgen
NORAW=--no-raw
[ "${RAW:-0}" = 1 ] && NORAW=
for r in $(seq "$R"); do
  for spec in "$@"; do
    B=${spec%%:*}; lag=${spec##*:}
    out=$("$L" --workload "$W" --runs 1 --bin "$B" $NORAW --duration 15 \
      --out-dir "${TMPDIR:-/tmp}/ab-pairs" --no-progress \
      --session "read_lag_ms=$lag" ${EXTRA:-} 2>&1) || true
    echo "== $(basename "$B") lag $lag round $r"
    echo "$out" | grep -E "gateway CPU|age at|delivered|clients|took|closed \[[^]]|error|frame built|floor|raw loopback" | sed 's/^ */  /'
  done
done
