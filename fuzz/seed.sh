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
for payload in [
    '{"type":"quote","symbol":"BTC-USD","seq":42,"bid":"97000.10","bid_size":"0.5","ask":"97000.20","ask_size":"1.25000000","last":"97000.15","last_size":"0.001","ts":1796617697745332448,"gw_ts":1796617697745334059}',
    '{"type":"quote","symbol":"ES.Z26","seq":1,"ask":"6012.50","ask_size":"3","crossed":true,"gw_ts":5}',
    '{"type":"trade","symbol":"BTC-USD","seq":7,"price":"97000.10","size":"0.00100000","side":"buy","trade_id":123456789,"ts":1796617697745332448,"gw_ts":1796617697745334059}',
]:
    put("cluster_wire", payload)
PY
for t in client_op venue_binance venue_coinbase venue_kraken ingest_line config_toml replay_line cluster_wire; do
    printf '%s: %s seeds\n' "$t" "$(ls fuzz/corpus/$t | wc -l)"
done
