// Trades (`trades: true`): every trade of the symbols asked for comes as a
// `trade` event, in order (seq 1, 2, 3, ... per symbol), beside conflated
// quotes; a client that did not ask gets none, and asking again without
// trades turns them off.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { connect } from "../src/index.js";
import { waitFor, fileGateway } from "../test-support/gateway.js";

// 4 symbols, every update a trade, ~200 a second each.
const CONFIG = `
[server]
listen = "127.0.0.1:@PORT@"
worker_threads = 1
shards = 1
shutdown_grace_ms = 500

[[feeds]]
kind = "sim"
symbols = 4
rate = 800.0
zipf = 0.0
trade_ratio = 1.0
`;

/** @type {string[]} */
let symbols = [];
const { gw, clients } = fileGateway(CONFIG, { before, after }, async (g) => {
  symbols = await (await fetch(`${g.http}/v1/symbols`)).json();
  assert.equal(symbols.length, 4);
});

test("trade events in order with exact decimal strings; none without trades; off again", async () => {
  const [a, b] = symbols;
  const withTrades = connect(gw.url);
  const without = connect(gw.url, { symbols: [a, b] });
  clients.push(withTrades, without);
  withTrades.subscribe([a, b], { trades: true });
  /** @type {Map<string, number[]>} */
  const seqs = new Map([[a, []], [b, []]]);
  let bad = "";
  withTrades.on("trade", ({ symbol, trade, entry }) => {
    seqs.get(symbol)?.push(trade.seq);
    if (typeof trade.price !== "string" || !/^[0-9]+(\.[0-9]+)?$/.test(trade.price)) bad = `price ${trade.price}`;
    if (typeof trade.size !== "string") bad = `size ${trade.size}`;
    if (trade.side !== "buy" && trade.side !== "sell") bad = `side ${trade.side}`;
    if (entry.tradeSeq !== trade.seq) bad = "entry.tradeSeq not the trade's";
  });
  let dropped = 0;
  withTrades.on("trades_dropped", ({ count }) => (dropped += count));
  let unasked = 0;
  without.on("trade", () => unasked++);
  await waitFor(() => seqs.get(a).length >= 50 && seqs.get(b).length >= 50, "50 trades of each");
  assert.equal(bad, "");
  assert.equal(dropped, 0, "a client that keeps up loses none");
  for (const [s, list] of seqs) {
    for (let i = 1; i < list.length; i++) assert.equal(list[i], list[i - 1] + 1, `${s}: in order, no gap`);
  }
  // Quotes still come, conflated, with the last trade as last/last_size.
  await waitFor(() => withTrades.get(a)?.last !== undefined && without.get(a)?.last !== undefined, "quotes with last");
  assert.equal(unasked, 0, "no trade events without trades: true");
  assert.equal(without.stats.trades, 0);

  // Subscribing again without trades turns them off from its reply on:
  // the reply opens a frame, and data after it is built without trades.
  let off = false;
  let after = 0;
  withTrades.on("subscribed", () => (off = true));
  withTrades.on("trade", () => {
    if (off) after++;
  });
  withTrades.subscribe([a, b]);
  await waitFor(() => off, "the reply");
  const updates = withTrades.get(a)?.updates ?? 0;
  await waitFor(() => (withTrades.get(a)?.updates ?? 0) >= updates + 20, "20 more quotes");
  assert.equal(after, 0, "no trades once off");
});
