// Snapshot then updates, unsubscribe, server errors: against the real
// gateway with a simulated feed.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { connect } from "../src/index.js";
import { recordErrors, recordStates, sleep, waitFor, fileGateway } from "../test-support/gateway.js";

// 5 symbols (AAPL, BTC-USD, MSFT, NVDA, AMZN), ~40 updates/s each.
const CONFIG = `
[server]
listen = "127.0.0.1:@PORT@"
worker_threads = 1
shards = 1
shutdown_grace_ms = 500

[session]
heartbeat_ms = 1000

[[feeds]]
kind = "sim"
symbols = 5
rate = 200.0
zipf = 0.0
`;

const DECIMAL = /^-?\d+(\.\d+)?$/;

const { gw, clients } = fileGateway(CONFIG, { before, after });

/** @param {any} opts */
function client(opts) {
  const c = connect(gw.url, opts);
  clients.push(c);
  return c;
}

test("snapshot first, then updates with growing seq; decimals stay strings", async () => {
  // A symbol without a value yet gets its first one as an update, not a
  // snapshot: wait until both have one.
  await gw.waitForValues(["AAPL", "MSFT"]);
  const c = client({ symbols: ["AAPL", "MSFT"] });
  const { states } = recordStates(c);
  const errors = recordErrors(c);
  /** @type {Map<string, any[]>} */
  const seen = new Map();
  c.on("quote", (/** @type {any} */ e) => {
    if (!seen.has(e.symbol)) seen.set(e.symbol, []);
    seen.get(e.symbol)?.push({ seq: e.quote.seq, snapshot: e.snapshot, bid: e.entry.bid, quote: e.quote });
  });

  await waitFor(
    () => ["AAPL", "MSFT"].every((s) => (seen.get(s)?.length ?? 0) >= 5),
    "5 quotes for each of AAPL and MSFT",
  );
  assert.deepEqual(states.slice(0, 2), ["connecting", "open"]);
  assert.equal(c.state, "open");
  assert.equal(c.acking, true, "ack mode is on by default against this gateway");
  for (const [sym, list] of seen) {
    assert.equal(list[0].snapshot, true, `${sym}: the first quote is the snapshot`);
    assert.ok(list.slice(1).every((q) => !q.snapshot), `${sym}: then updates`);
    for (let i = 1; i < list.length; i++) {
      assert.ok(list[i].seq > list[i - 1].seq, `${sym}: seq grows (${list[i - 1].seq} -> ${list[i].seq})`);
    }
    const e = c.get(sym);
    assert.ok(e, `${sym} is in the store`);
    for (const f of ["bid", "bid_size", "ask", "ask_size"]) {
      assert.equal(typeof e[f], "string", `${sym}.${f} is a string`);
      assert.match(e[f], DECIMAL);
    }
    // The store holds exactly what the last quote carried.
    const last = list[list.length - 1].quote;
    assert.equal(e.seq, last.seq);
    assert.equal(e.bid, last.bid);
    assert.equal(e.ask, last.ask);
    assert.equal(typeof e.gw_ts, "number");
    assert.ok(Number.isFinite(e.age()), "age() is a number once there is a value");
    assert.ok(Math.abs(e.age(e.gw_ts / 1e6 + 250) - 250) < 0.01, "age(now) = now - gw_ts in ms");
    assert.equal(e.stale, false);
    assert.ok(e.conflated >= 0 && e.updates >= 5);
  }
  assert.equal(c.stats.skipped, 0);
  assert.deepEqual(errors, []);
});

test("unsubscribe stops that symbol's quotes, the others go on", async () => {
  const c = client({ symbols: ["NVDA", "AMZN"], ack: false });
  /** @type {{type: string, symbol?: string}[]} */
  const raw = [];
  c.on("message", (/** @type {any} */ m) => raw.push(m));
  await waitFor(() => c.get("NVDA")?.updates >= 3 && c.get("AMZN")?.updates >= 3, "quotes for NVDA and AMZN");
  assert.equal(c.acking, false, "ack: false sends no flow");

  let unsubscribed = false;
  c.on("unsubscribed", (/** @type {any} */ e) => {
    if (e.symbols.includes("AMZN")) unsubscribed = true;
  });
  c.unsubscribe("AMZN");
  assert.equal(c.get("AMZN"), undefined, "an unsubscribed symbol leaves the store at once");
  await waitFor(() => unsubscribed, "the unsubscribed reply");
  const mark = raw.findIndex((m) => m.type === "unsubscribed");
  const nvdaBefore = c.get("NVDA").updates;
  await waitFor(() => c.get("NVDA").updates >= nvdaBefore + 20, "20 more NVDA updates");
  const amznAfter = raw.slice(mark + 1).filter((m) => m.type === "quote" && m.symbol === "AMZN");
  assert.equal(amznAfter.length, 0, "no AMZN quote after the unsubscribed reply");
  assert.equal(c.get("AMZN"), undefined);
  assert.ok(!c.subscriptions.has("AMZN"));
});

test("server errors are events: unknown symbols are reported and dropped, the client keeps working", async () => {
  const c = client({ symbols: ["BTC-USD"] });
  const errors = recordErrors(c);
  await waitFor(() => c.get("BTC-USD")?.updates >= 1, "a BTC-USD quote");
  c.subscribe(["NOPE", "AAPL"], { maxHz: 5 });
  await waitFor(() => errors.some((e) => e.code === "unknown_symbol"), "the unknown_symbol error");
  const err = errors.find((e) => e.code === "unknown_symbol");
  assert.equal(err.symbol, "NOPE");
  assert.equal(err.fatal, false);
  assert.equal(err.server, true);
  assert.deepEqual(err.symbols, ["NOPE"], "the client stops asking for it");
  assert.equal(c.get("NOPE"), undefined);
  // The known name of the same op is subscribed, and quotes keep coming.
  await waitFor(() => c.get("AAPL")?.updates >= 2, "AAPL quotes after the error");
  const n = c.get("BTC-USD").updates;
  await waitFor(() => c.get("BTC-USD").updates > n + 3, "more BTC-USD quotes");
  assert.equal(c.state, "open");
  assert.equal(c.subscriptions.get("AAPL"), 5, "maxHz kept per symbol");
  await sleep(50);
});
