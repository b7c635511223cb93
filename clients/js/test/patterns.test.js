// Patterns (`NEW-*`): the client holds what a pattern matches, in the
// reply and as the gateway adds symbols later (an HTTP ingest feed whose
// symbols hold a pattern adds one at its first line), with the pattern's
// options; unsubscribing the pattern lets them go.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, test } from "node:test";
import { connect } from "../src/index.js";
import { waitFor, fileGateway } from "../test-support/gateway.js";

const KEY = "js-ingest-key";
const CONFIG = `
[server]
listen = "127.0.0.1:@PORT@"
worker_threads = 1
shards = 1
shutdown_grace_ms = 500

[[feeds]]
kind = "http"
name = "pusher"
key_sha256 = "${createHash("sha256").update(KEY).digest("hex")}"
symbols = ["NEW-*"]
max_new_symbols = 10
`;

const { gw, clients } = fileGateway(CONFIG, { before, after });

/** @param {object[]} lines */
async function push(lines) {
  const res = await fetch(`${gw.http}/v1/ingest`, {
    method: "POST",
    headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/x-ndjson" },
    body: lines.map((l) => JSON.stringify(l) + "\n").join(""),
  });
  const r = await res.json();
  assert.equal(r.rejected, 0, JSON.stringify(r));
}

test("a pattern holds its matches, also symbols added later, with its trades option", async () => {
  await push([{ symbol: "NEW-A", bid: "1.00", ask: "1.01" }]);
  const c = connect(gw.url);
  clients.push(c);
  /** @type {string[]} */
  const announced = [];
  c.on("subscribed", (ev) => {
    if (ev.pattern) announced.push(`${ev.pattern}:${ev.symbols.join(",")}`);
  });
  /** @type {string[]} */
  const trades = [];
  c.on("trade", ({ symbol, trade }) => trades.push(`${symbol}:${trade.price}`));
  c.subscribe("NEW-*", { trades: true });
  await waitFor(() => c.get("NEW-A")?.bid === "1.00", "NEW-A's snapshot in the store");
  assert.equal(c.get("NEW-*"), undefined, "no entry for the pattern itself");

  await push([{ symbol: "NEW-B", bid: "2.00", ask: "2.01" }]);
  await waitFor(() => c.get("NEW-B")?.bid === "2.00", "NEW-B, added later");
  assert.deepEqual(announced, ["NEW-*:NEW-B"]);
  await push([{ type: "trade", symbol: "NEW-B", price: "2.005", size: "1" }]);
  await waitFor(() => trades.length === 1, "NEW-B's trade");
  assert.deepEqual(trades, ["NEW-B:2.005"]);

  let unsubscribed = false;
  c.on("unsubscribed", () => (unsubscribed = true));
  c.unsubscribe("NEW-*");
  assert.equal(c.store.size, 0, "its matches leave the store");
  await waitFor(() => unsubscribed, "the unsubscribe reply");
  // No longer watched: NEW-C, added now, is not announced (the gateway
  // answers in order, so it would come before the reply to NEW-A below).
  await push([{ symbol: "NEW-C", bid: "3.00", ask: "3.01" }, { symbol: "NEW-A", bid: "1.10", ask: "1.11" }]);
  c.subscribe("NEW-A");
  await waitFor(() => c.get("NEW-A")?.bid === "1.10", "NEW-A by name");
  assert.equal(c.get("NEW-C"), undefined, "not held: the pattern is gone");
  assert.deepEqual(announced, ["NEW-*:NEW-B"]);
});
