#!/bin/sh
# Seeds fuzz/corpus/<target>/ from the recorded samples in feeds/: one file
# per frame (venues, replay: one per recorded line), per NDJSON line
# (ingest), per config (config_toml), plus a few valid client ops.
# Idempotent; run from anywhere. Needs python3.
set -eu
cd "$(dirname "$0")/.."
python3 - <<'PY'
import glob, hashlib, json, os

def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = f"fuzz/corpus/{target}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/seed-{hashlib.sha1(data).hexdigest()[:16]}", "wb") as f:
        f.write(data)

def recorded(path):
    for line in open(path, encoding="utf-8"):
        if line.strip() and not line.startswith("#"):
            yield line.rstrip("\n")

for venue in ["binance", "coinbase", "kraken"]:
    for path in sorted(glob.glob(f"feeds/{venue}/*.jsonl")):
        for line in recorded(path):
            put("replay_line", line)
            try:
                put(f"venue_{venue}", json.loads(line)["frame"])
            except (ValueError, KeyError, TypeError):
                pass
for line in recorded("feeds/replay/binance-sample.jsonl"):
    put("replay_line", line)
body = open("feeds/ingest/sample.ndjson", encoding="utf-8").read()
put("ingest_line", body)
for line in body.splitlines():
    put("ingest_line", line)
for path in sorted(glob.glob("feeds/*.toml")):
    put("config_toml", open(path, encoding="utf-8").read())
for op in [
    {"op": "subscribe", "id": 1, "symbols": ["BTC-USD", "AAPL"]},
    {"op": "subscribe", "id": "a", "symbols": ["ETH-USD"], "max_hz": 2.5, "snapshot": False},
    {"op": "unsubscribe", "symbols": ["BTC-USD"]},
    {"op": "ping", "id": 18446744073709551615},
    {"op": "auth", "token": "eyJhbGciOiJIUzI1NiJ9.e30.x"},
]:
    put("client_op", json.dumps(op))
PY
for t in client_op venue_binance venue_coinbase venue_kraken ingest_line config_toml replay_line; do
    printf '%s: %s seeds\n' "$t" "$(ls fuzz/corpus/$t | wc -l)"
done
