"""One slow WebSocket reader on a real client library: the reference for the
load generator's `slow-reader` workload (tools/loadgen/src/bin/loadgen.rs).

It subscribes to the first `--symbols` symbols of `GET /v1/symbols`, then
takes one message every `--every-ms` (`await ws.recv()`) and records the age
of every non-snapshot quote in it when it takes it (now minus `gw_ts`).
Python `websockets` (14+, the asyncio implementation) reads the socket in
the background and answers Pings as it reads, whatever the application
does; it queues up to `--max-queue` messages (16 by default), stops reading
the socket when it holds that many and resumes when the application has
taken it down to a quarter. So the age includes what waits in that queue,
in the socket buffers and in the gateway.

With `--ack W` (1..64) it asks for client-paced delivery right after
subscribing: it sends `{"op":"flow","id":2,"window":W}`, waits for
`{"type":"flow","id":2,"window":W}` (inside a frame, a JSON array of
messages), counts every frame received after the one that carried that
reply, and after taking each one sends `{"op":"ack","n":N}`, N the frames
taken so far. A gateway that answers `flow` with an error is reported on
stderr and the run goes on without acks.

Prints one line: quotes and frames taken in the measured window, and the
age at take, p50/p90/p99/max in ms.

Needs `pip install websockets`. Usage, against a gateway started with a
simulated feed of 50 symbols in burst mode at 1,000 Hz (`symbols = 50`,
`rate = 0`, `burst_hz = 1000` in its `[[feeds]]` table, and e.g.
`[session] read_lag_ms = 20`), pinned away from this reader:

    taskset -c 0 target/release/tickergate --config slow.toml &
    taskset -c 1 python3 benches/slow_reader.py ws://127.0.0.1:8080/v1/ws --secs 20
    taskset -c 1 python3 benches/slow_reader.py ws://127.0.0.1:8080/v1/ws --warmup 5 --secs 10 --ack 8
"""

import argparse
import asyncio
import json
import sys
import time
import urllib.request

from websockets.asyncio.client import connect


def parse_args():
    p = argparse.ArgumentParser(
        description="One slow reader: the age of the quotes it takes (see the docstring)."
    )
    p.add_argument("url", help="the gateway's WebSocket URL, e.g. ws://127.0.0.1:8080/v1/ws")
    p.add_argument("--symbols", type=int, default=50,
                   help="subscribe to the first N symbols of /v1/symbols [50]")
    p.add_argument("--every-ms", type=float, default=20,
                   help="take one message every this many ms [20]")
    p.add_argument("--secs", type=float, default=20, help="measured window, s [20]")
    p.add_argument("--warmup", type=float, default=0,
                   help="before the window, s (messages taken, not measured) [0]")
    p.add_argument("--ack", type=int, default=0,
                   help="ack mode with a window of W frames (1..64); 0 = off [0]")
    p.add_argument("--max-queue", type=int, default=16,
                   help="websockets' receive queue in messages (its default: 16)")
    a = p.parse_args()
    if not 0 <= a.ack <= 64:
        p.error("--ack must be in 0..64")
    if a.symbols < 1 or a.every_ms <= 0 or a.secs <= 0 or a.warmup < 0:
        p.error("--symbols, --every-ms and --secs must be positive, --warmup >= 0")
    return a


def symbols(url, n):
    base = url.replace("wss://", "https://").replace("ws://", "http://").split("/v1/ws")[0]
    with urllib.request.urlopen(base + "/v1/symbols", timeout=10) as r:
        return json.loads(r.read())[:n]


async def reply(ws, ty, op_id):
    """Reads frames until the reply of type `ty` to op `op_id` (returns it)
    or an error reply (raises); data before it is dropped."""
    while True:
        for m in json.loads(await asyncio.wait_for(ws.recv(), 20)):
            if m.get("type") == "error":
                raise RuntimeError(json.dumps(m))
            if m.get("type") == ty and m.get("id") == op_id:
                return m


def pct(ages, q):
    return ages[min(len(ages) - 1, int(q * len(ages)))]


async def main():
    a = parse_args()
    names = symbols(a.url, a.symbols)
    async with connect(a.url, max_size=2**24, max_queue=a.max_queue) as ws:
        await ws.send(json.dumps({"op": "subscribe", "id": 1, "symbols": names}))
        await reply(ws, "subscribed", 1)
        ack = False
        if a.ack:
            await ws.send(json.dumps({"op": "flow", "id": 2, "window": a.ack}))
            try:
                r = await reply(ws, "flow", 2)
                ack = r.get("window") == a.ack
                if not ack:
                    print(f"flow answered with another window: {json.dumps(r)}; no acks",
                          file=sys.stderr)
            except RuntimeError as e:
                print(f"the gateway refused flow (running without acks): {e}", file=sys.stderr)
        ages = []
        taken = 0  # frames taken since the one that carried the flow reply
        frames = 0  # frames taken in the measured window
        every = a.every_ms / 1000
        t0 = time.monotonic()
        start, end = t0 + a.warmup, t0 + a.warmup + a.secs
        tick = t0
        while True:
            # One message every `every` (later when none is queued).
            tick = max(tick + every, time.monotonic())
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
            if time.monotonic() >= end:
                break
            frame = await ws.recv()
            now = time.time_ns()
            taken += 1
            if time.monotonic() >= start:
                frames += 1
                for m in json.loads(frame):
                    if m.get("type") == "quote" and not m.get("snapshot"):
                        ages.append((now - m["gw_ts"]) / 1e6)
            if ack:
                await ws.send(json.dumps({"op": "ack", "n": taken}))
    if not ages:
        print(f"quotes 0 frames {frames}: no quote taken in the window")
        return 1
    ages.sort()
    print(
        f"quotes {len(ages)} frames {frames} age ms p50 {pct(ages, 0.5):.1f} "
        f"p90 {pct(ages, 0.9):.1f} p99 {pct(ages, 0.99):.1f} max {ages[-1]:.1f}"
        f" (every {a.every_ms:g} ms, queue {a.max_queue}, ack {'W=%d' % a.ack if ack else 'off'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
