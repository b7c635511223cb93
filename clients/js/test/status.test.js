// stale / live statuses from an HTTP-push feed that goes silent, and exact
// decimal strings from feed to store.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { connect } from "../src/index.js";
import { recordErrors, sha256, waitFor, fileGateway } from "../test-support/gateway.js";

const KEY = "ingest-key-for-the-js-client";

const CONFIG = `
[server]
listen = "127.0.0.1:@PORT@"
worker_threads = 1
shards = 1
shutdown_grace_ms = 500

[session]
heartbeat_ms = 1000

[[feeds]]
kind = "http"
name = "push"
key_sha256 = "${sha256(KEY)}"
symbols = ["ES.Z26", "AAPL"]
stale_after_ms = 400
`;

const { gw, clients } = fileGateway(CONFIG, { before, after });

/** One NDJSON line; ts in ns as a JSON integer. @param {Record<string, string>} fields */
function line(symbol, fields) {
  const ts = (BigInt(Date.now()) * 1000000n).toString();
  return `{"symbol":${JSON.stringify(symbol)},${Object.entries(fields)
    .map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`)
    .join(",")},"ts":${ts}}`;
}

test("a silent feed turns its symbols stale, fresh data turns them live again", async () => {
  const c = connect(gw.url, { symbols: ["ES.Z26"] });
  clients.push(c);
  const errors = recordErrors(c);
  let subscribed = false;
  c.on("subscribed", () => {
    subscribed = true;
  });
  /** @type {{kind: string, state?: string, seq?: number, stale?: boolean}[]} */
  const events = [];
  c.on("status", (/** @type {any} */ e) => events.push({ kind: "status", state: e.state, assumed: e.assumed }));
  c.on("quote", (/** @type {any} */ e) => events.push({ kind: "quote", seq: e.quote.seq, stale: e.entry.stale }));

  // Nothing pushed yet: subscribed, no value. (The gateway starts every
  // symbol `live`, even of a feed that never sent anything.)
  await waitFor(() => c.state === "open" && subscribed, "open and subscribed");
  assert.equal(c.get("ES.Z26").seq, 0);
  assert.equal(c.get("ES.Z26").bid, undefined);
  assert.equal(c.get("ES.Z26").age(), Infinity);

  await gw.ingest(KEY, [line("ES.Z26", { bid: "5012.2500", bid_size: "3", ask: "5012.5000", ask_size: "12" })]);
  await waitFor(() => c.get("ES.Z26").updates === 1, "the pushed quote");
  const e = c.get("ES.Z26");
  assert.equal(e.stale, false, "live again");
  // Exactly the text the feed sent: trailing zeros kept, never a Number.
  assert.equal(e.bid, "5012.2500");
  assert.equal(e.ask, "5012.5000");
  assert.equal(e.bid_size, "3");
  assert.equal(e.ask_size, "12");
  assert.equal(e.last, undefined, "fields the feed never sent are absent");
  const firstSeq = e.seq;

  // Silence past stale_after_ms.
  await waitFor(() => c.get("ES.Z26").stale === true, "stale after the feed went silent");
  const staleAt = events.length;

  await gw.ingest(KEY, [line("ES.Z26", { bid: "5012.7500", ask: "5013.0000" })]);
  await waitFor(() => c.get("ES.Z26").updates === 2, "the second pushed quote");
  assert.equal(e.stale, false);
  assert.equal(e.seq, firstSeq + 1);
  assert.equal(e.bid, "5012.7500");
  assert.equal(e.bid_size, "3", "a push merges into the symbol's last value");
  assert.equal(e.conflated, 0);

  const kinds = events.map((x) => (x.kind === "status" ? `status:${x.state}` : "quote"));
  assert.deepEqual(kinds, ["quote", "status:stale", "status:live", "quote"]);
  assert.ok(events.slice(staleAt).every((x) => x.kind !== "status" || !x.assumed), "sent by the gateway");
  // The quote after a silence comes after `live` (the entry is live when it is applied).
  assert.equal(events[events.length - 1].stale, false);
  assert.deepEqual(errors, []);
});
