// Ack mode (client-paced delivery): the gateway never has more than W
// unacknowledged frames carrying data out to the client, a slow (async)
// application handler holds delivery back, and what comes after a hold is
// the newest value, not a backlog.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { connect } from "../src/index.js";
import { sleep, waitFor, fileGateway } from "../test-support/gateway.js";

// 20 symbols, ~100 updates/s each: there is always new data waiting.
const CONFIG = `
[server]
listen = "127.0.0.1:@PORT@"
worker_threads = 1
shards = 1
shutdown_grace_ms = 500

[session]
heartbeat_ms = 300

[[feeds]]
kind = "sim"
symbols = 20
rate = 2000.0
zipf = 0.0
`;

/** @type {string[]} */
let symbols = [];
const { gw, clients } = fileGateway(CONFIG, { before, after }, async (g) => {
  symbols = await (await fetch(`${g.http}/v1/symbols`)).json();
  assert.equal(symbols.length, 20);
});

/**
 * A plain WebSocket without flow control, counting frames with quotes.
 * @param {string[]} syms
 */
function rawCounter(syms) {
  const ws = new WebSocket(gw.url);
  const counter = { dataFrames: 0, ws };
  ws.onopen = () => ws.send(JSON.stringify({ op: "subscribe", id: 1, symbols: syms }));
  ws.onmessage = (ev) => {
    if (String(ev.data).includes('"type":"quote"')) counter.dataFrames++;
  };
  return counter;
}

test("window W: never more than W unacknowledged data frames; a plain reader gets many more frames", async () => {
  const W = 2;
  const c = connect(gw.url, { symbols, ack: { window: W } });
  clients.push(c);
  // A slow application: each frame takes ~80 ms to handle (async).
  c.on("quote", () => sleep(80));
  await waitFor(() => c.state === "open" && c.acking, "ack mode on");

  const raw = rawCounter(symbols);
  try {
    await waitFor(() => raw.ws.readyState === WebSocket.OPEN, "raw socket open");
    const start = c.stats.dataFrames;
    await waitFor(() => c.stats.acked >= 20, "20 frames handled and acknowledged");
    const paced = c.stats.dataFrames - start;
    assert.ok(c.stats.maxUnackedData <= W, `at most ${W} unacked data frames, saw ${c.stats.maxUnackedData}`);
    assert.equal(c.stats.maxUnackedData, W, "the window was used (the gateway sent ahead up to W)");
    // Same symbols, same time, nobody pacing: far more frames.
    assert.ok(raw.dataFrames > 3 * paced, `plain reader ${raw.dataFrames} frames vs paced ${paced}`);
    // Paced values are coalesced: the seq jumps say so.
    assert.ok(c.stats.conflated > 0);
    assert.equal(c.stats.skipped, 0);
  } finally {
    raw.ws.close();
  }
});

test("W = 1: while the handler holds a frame no data frame comes; after it, the newest values", async () => {
  const c = connect(gw.url, { symbols: symbols.slice(0, 5) });
  clients.push(c);
  /** @type {Promise<void>|null} */
  let hold = null;
  let release = () => {};
  let holding = false;
  /** @type {{dataFrames: number, frames: number, seq: Map<string, number>}|null} */
  let atHold = null;
  /** @type {{symbol: string, jump: number, ageMs: number}[]} */
  const afterHold = [];
  c.on("quote", (/** @type {any} */ e) => {
    if (holding && !hold) {
      hold = new Promise((r) => (release = r));
      atHold = {
        dataFrames: c.stats.dataFrames,
        frames: c.stats.frames,
        seq: new Map([...c.store].map(([s, x]) => [s, x.seq])),
      };
      return hold;
    }
    if (atHold && !holding && !afterHold.some((x) => x.symbol === e.symbol)) {
      afterHold.push({
        symbol: e.symbol,
        jump: e.quote.seq - /** @type {number} */ (atHold.seq.get(e.symbol)),
        ageMs: Date.now() - e.quote.gw_ts / 1e6,
      });
    }
    return undefined;
  });
  await waitFor(() => c.acking && c.stats.acked >= 5, "ack mode on, frames flowing");

  holding = true;
  await waitFor(() => atHold, "a frame held by the handler");
  await sleep(1500);
  const held = /** @type {any} */ (atHold);
  assert.equal(c.stats.dataFrames, held.dataFrames, "no data frame while the only window slot is unacknowledged");
  assert.ok(c.stats.frames > held.frames, "heartbeats still come (the session is alive)");
  assert.equal(c.state, "open");

  holding = false;
  release();
  await waitFor(() => afterHold.length >= 3, "quotes for 3 symbols after the hold");
  for (const q of afterHold) {
    // ~100 updates/s per symbol for 1.5 s were coalesced into one value...
    assert.ok(q.jump > 10, `${q.symbol}: seq jumped by ${q.jump}`);
    // ...which is fresh: stamped after the hold, not queued during it.
    assert.ok(q.ageMs < 1000, `${q.symbol}: delivered ${q.ageMs.toFixed(0)} ms after the gateway stamped it`);
  }
  assert.equal(c.stats.skipped, 0);
});
