#!/bin/sh
# Runs every fuzz target for SECS seconds (default 60), two at a time (one
# per core on the 2-vCPU box), on stable Rust (`-s none`: coverage-guided,
# no sanitizer). Logs to fuzz/logs/<target>.log; prints executions, final
# coverage and crashes per target. Crashing inputs land in
# fuzz/artifacts/<target>/.
set -u
cd "$(dirname "$0")/.."
SECS=${1:-60}
TARGETS="client_op venue_binance venue_coinbase venue_kraken ingest_line config_toml replay_line cluster_wire"
mkdir -p fuzz/logs
./fuzz/seed.sh >/dev/null
cargo fuzz build -s none || exit 1
run() {
    cargo fuzz run -s none "$1" -- -max_total_time="$SECS" -timeout=10 \
        -print_final_stats=1 >"fuzz/logs/$1.log" 2>&1
    echo "$1 exit=$?"
}
set -- $TARGETS
while [ $# -gt 0 ]; do
    run "$1" &
    if [ $# -gt 1 ]; then run "$2" & shift; fi
    shift
    wait
done
for t in $TARGETS; do
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "fuzz/logs/$t.log" | grep -o '[0-9]*$')
    cov=$(grep -o 'cov: [0-9]*' "fuzz/logs/$t.log" | tail -1)
    crashes=$(ls "fuzz/artifacts/$t" 2>/dev/null | wc -l)
    echo "$t: execs=${execs:-?} $cov crash_artifacts=$crashes"
done
