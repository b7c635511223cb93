#!/usr/bin/env bash
# The Python slow reader (benches/slow_reader.py) against a gateway of its
# own: sim feed of 50 symbols in burst mode at 1,000 Hz (the freshness
# issue's case), gateway pinned to core 0 and the reader to core 1. The
# gateway is stopped by its PID when the reader is done.
#
# usage: benches/slow_reader.sh BIN LAG [slow_reader.py options]
#   BIN: a gateway binary (e.g. target/release/tickergate); LAG: its
#   session.read_lag_ms (0: flow control off). Example, 60 s after a 5 s
#   warm-up, default flow control, then ack mode with a window of 1:
#   benches/slow_reader.sh target/release/tickergate 50 --warmup 5 --secs 60
#   benches/slow_reader.sh target/release/tickergate 50 --warmup 5 --secs 60 --ack 1
set -euo pipefail
BIN=$1; LAG=$2; shift 2
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
gw=
cleanup() {
    if [ -n "$gw" ]; then kill "$gw" 2>/dev/null || true; wait "$gw" 2>/dev/null || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT
cat > "$dir/slow.toml" <<TOML
[server]
listen = "127.0.0.1:0"

[session]
read_lag_ms = $LAG

[[feeds]]
kind = "sim"
symbols = 50
rate = 0
burst_hz = 1000
TOML
pin0=(); pin1=()
if command -v taskset >/dev/null; then pin0=(taskset -c 0); pin1=(taskset -c 1); fi
"${pin0[@]}" "$BIN" --config "$dir/slow.toml" > "$dir/gw.out" 2> "$dir/gw.err" &
gw=$!
url=
for _ in $(seq 100); do
    url=$(grep -o 'ws://[^ ]*' "$dir/gw.out" 2>/dev/null | head -1 || true)
    [ -n "$url" ] && break
    kill -0 "$gw" 2>/dev/null || { cat "$dir/gw.err" >&2; exit 1; }
    sleep 0.1
done
[ -n "$url" ] || { echo "the gateway printed no WebSocket address" >&2; exit 1; }
"${pin1[@]}" python3 "$here/slow_reader.py" "$url" "$@"
