// Reconnects: the gateway stopped (SIGTERM: close 1001; SIGKILL: no close
// frame) and started again on the same port, and a gateway that goes
// silent (SIGSTOP) without closing anything.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { connect } from "../src/index.js";
import { Gateway, freePort, recordStates, requireBinary, sleep, waitFor, fileGateway } from "../test-support/gateway.js";

// 3 symbols (AAPL, BTC-USD, MSFT), ~RATE/3 updates/s each.
const config = (/** @type {number} */ rate) => `
[server]
listen = "127.0.0.1:@PORT@"
worker_threads = 1
shards = 1
shutdown_grace_ms = 500

[session]
heartbeat_ms = 300

[[feeds]]
kind = "sim"
symbols = 3
rate = ${rate.toFixed(1)}
zipf = 0.0
`;
// The first gateway runs fast (~1000 updates/s per symbol), the restarted
// ones slower (~300/s): so the restarted gateway's seqs stay below the
// last ones the client applied for seconds, whatever the reconnect delay,
// and the regression is there to be seen.
const FAST = config(3000);
const SLOW = config(900);
const SYMBOLS = ["AAPL", "BTC-USD", "MSFT"];
const nowNs = () => Date.now() * 1e6;

const { gw, clients } = fileGateway(FAST, { before, after });

/**
 * Every applied quote's (epoch, seq) must be above the last applied for its
 * symbol: within an epoch the seq only grows, and a new epoch (a restarted
 * gateway, announced by the client's `epoch` event) starts every symbol over.
 * @param {any} c
 */
function seqChecker(c) {
  /** @type {Map<string, number>} */
  const last = new Map();
  /** @type {string[]} */
  const violations = [];
  /** @type {any[]} */
  const epochs = [];
  c.on("epoch", (/** @type {any} */ e) => {
    epochs.push(e);
    last.clear();
  });
  c.on("quote", (/** @type {any} */ e) => {
    const prev = last.get(e.symbol);
    if (prev !== undefined && e.quote.seq <= prev) violations.push(`${e.symbol}: applied ${e.quote.seq} after ${prev}`);
    last.set(e.symbol, e.quote.seq);
  });
  return { violations, epochs };
}

test("gateway restarted on the same port: reconnect, resubscribe, a new epoch, (epoch, seq) never goes back", async () => {
  const c = connect(gw.url, { symbols: SYMBOLS, backoff: { minMs: 100, maxMs: 1000 } });
  clients.push(c);
  const { states, details } = recordStates(c);
  const check = seqChecker(c);
  /** @type {any[]} */
  const regressions = [];
  c.on("seq_regression", (/** @type {any} */ e) => regressions.push(e));
  /** @type {{at: number, symbols: string[]}[]} */
  const subscribed = [];
  c.on("subscribed", (/** @type {any} */ e) => subscribed.push({ at: c.stats.opens, symbols: e.symbols }));

  await waitFor(() => SYMBOLS.every((s) => c.get(s)?.seq >= 1500), "seq 1500 on every symbol");
  assert.equal(c.stats.opens, 1);
  const epoch1 = c.epoch;
  assert.match(String(epoch1), /^[0-9a-f]{16}$/, "the welcome's epoch is kept");

  // 1. SIGTERM: the gateway closes every session with 1001.
  await gw.stop("SIGTERM");
  const before1 = new Map(SYMBOLS.map((s) => [s, c.get(s).seq]));
  await waitFor(() => c.state === "reconnecting", "state reconnecting");
  const lost = details.find((d) => d.state === "reconnecting");
  assert.equal(lost.code, 1001, "a stopping gateway closes with 1001");
  const restartNs = nowNs();
  gw.rewriteConfig(SLOW);
  await gw.spawn();
  await waitFor(() => c.state === "open" && c.stats.opens === 2, "open again after the restart");
  // Everything is subscribed again on the new connection.
  await waitFor(
    () => SYMBOLS.every((s) => subscribed.some((x) => x.at === 2 && x.symbols.includes(s))),
    "resubscribed to every symbol",
  );
  // The new gateway numbers its seqs from 1 under a new epoch: the client
  // starts every symbol over and applies the new values at once, although
  // their seqs are below the old ones.
  assert.equal(check.epochs.length, 1, "one epoch change");
  assert.equal(check.epochs[0].previous, epoch1);
  assert.notEqual(c.epoch, epoch1);
  await waitFor(
    () => SYMBOLS.every((s) => c.get(s).gw_ts > restartNs && c.get(s).seq < /** @type {number} */ (before1.get(s))),
    "the restarted gateway's values applied at once",
  );
  assert.deepEqual(regressions, [], "no quote refused as a regression");
  assert.deepEqual(check.violations, [], "no applied seq went backwards within an epoch");
  const i = states.indexOf("reconnecting");
  assert.ok(i > 0 && states.slice(0, i).includes("open") && states.slice(i).includes("open"), states.join(" -> "));
  assert.ok(!states.includes("closed"));

  // 2. SIGKILL (no close frame): the same again.
  await gw.stop("SIGKILL");
  await waitFor(() => c.state === "reconnecting", "state reconnecting after SIGKILL");
  const restart2Ns = nowNs();
  await gw.spawn();
  await waitFor(() => c.state === "open" && c.stats.opens === 3, "open again after the second restart");
  await waitFor(() => SYMBOLS.every((s) => c.get(s).gw_ts > restart2Ns), "the second restart's values applied");
  assert.equal(check.epochs.length, 2);
  assert.deepEqual(check.violations, []);
  c.close();
  assert.equal(c.state, "closed");
});

test("a silent gateway (SIGSTOP) is detected by the heartbeat timeout; the client reconnects when it is back", async () => {
  const c = connect(gw.url, {
    symbols: ["AAPL"],
    backoff: { minMs: 100, maxMs: 500 },
    connectTimeoutMs: 1000,
  });
  clients.push(c);
  const { details } = recordStates(c);
  const check = seqChecker(c);
  await waitFor(() => c.state === "open" && c.get("AAPL")?.updates >= 3, "open with quotes");
  const epoch = c.epoch;
  gw.pause();
  try {
    await waitFor(() => c.state === "reconnecting", "state reconnecting after the silence");
    assert.equal(c.stats.deadConnections, 1);
    assert.match(details.find((d) => d.state === "reconnecting").reason, /no frame for/);
    // While the gateway is stopped the attempts time out (no welcome).
    await waitFor(() => c.stats.deadConnections >= 2, "a connection attempt timed out");
    await sleep(200);
  } finally {
    gw.resume();
  }
  const n = c.get("AAPL").updates;
  await waitFor(() => c.state === "open" && c.get("AAPL").updates > n + 3, "open again with fresh quotes");
  assert.equal(c.stats.opens, 2);
  // The same process: the same epoch, and seq went on from where it was.
  assert.equal(c.epoch, epoch);
  assert.deepEqual(check.epochs, []);
  assert.deepEqual(check.violations, [], "seq never went back across the reconnect");
  c.close();
});

test("no gateway yet: refused connections are retried until it starts", async () => {
  requireBinary();
  const late = new Gateway(FAST, await freePort());
  // A connect timeout longer than the wait below: only retrying after the
  // refusal itself can open this client in time.
  const c = connect(late.url, { symbols: ["AAPL"], backoff: { minMs: 50, maxMs: 300 }, connectTimeoutMs: 60000 });
  clients.push(c);
  /** @type {any[]} */
  const attempts = [];
  c.on("reconnect", (/** @type {any} */ e) => attempts.push(e));
  try {
    await waitFor(() => attempts.length >= 3, "3 refused attempts");
    assert.equal(c.state, "reconnecting");
    assert.ok(attempts.every((a) => a.code === 1006));
    await late.spawn();
    await waitFor(() => c.state === "open" && c.get("AAPL")?.updates >= 1, "open with quotes once the gateway is up");
    assert.equal(c.stats.deadConnections, 0, "not through the connect timeout");
  } finally {
    c.close();
    await late.dispose();
  }
});
