// Auth: a good token opens the session; a refused one stops the client
// (close 1008, state `closed`, one fatal `auth_failed` error), whether the
// token goes in the `auth` op or on the URL.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { connect } from "../src/index.js";
import { recordErrors, recordStates, sha256, sleep, waitFor, fileGateway } from "../test-support/gateway.js";

const GOOD = "good-token-for-the-js-client";

const CONFIG = `
[server]
listen = "127.0.0.1:@PORT@"
worker_threads = 1
shards = 1
shutdown_grace_ms = 500

[session]
heartbeat_ms = 1000

[auth]
token_sha256 = ["${sha256(GOOD)}"]

[[feeds]]
kind = "sim"
symbols = 3
rate = 100.0
zipf = 0.0
`;

const { gw, clients } = fileGateway(CONFIG, { before, after });

/** @param {any} opts */
function client(opts) {
  const c = connect(gw.url, { backoff: { minMs: 50, maxMs: 200 }, ...opts });
  clients.push(c);
  return c;
}

for (const tokenIn of ["op", "query"]) {
  test(`a valid token (tokenIn: ${tokenIn}) opens the session and data flows`, async () => {
    const c = client({ token: GOOD, tokenIn, symbols: ["AAPL"] });
    const errors = recordErrors(c);
    await waitFor(() => c.get("AAPL")?.updates >= 2, "AAPL quotes");
    assert.equal(c.state, "open");
    assert.deepEqual(errors, []);
    c.close();
  });

  test(`a refused token (tokenIn: ${tokenIn}) closes with 1008 and stops the client`, async () => {
    const c = client({ token: "wrong-token", tokenIn, symbols: ["AAPL"] });
    const { states, details } = recordStates(c);
    const errors = recordErrors(c);
    await waitFor(() => c.state === "closed", "state closed");
    assert.deepEqual(states, ["connecting", "closed"], "no reconnect attempt");
    const closed = details[details.length - 1];
    assert.equal(closed.code, 1008, "the gateway closes a refused token with 1008");
    assert.equal(closed.fatal, true);
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.equal(errors[0].code, "auth_failed");
    assert.equal(errors[0].fatal, true);
    assert.equal(errors[0].closeCode, 1008);
    assert.match(errors[0].message, /refused the token \(invalid token\)/);
    // It stays down: no new session, no data.
    await sleep(600);
    assert.equal(c.state, "closed");
    assert.equal(c.stats.opens, 0);
    assert.equal(c.stats.quotes, 0);
  });
}

test("auth required and no token: a fatal auth_required error, no retry", async () => {
  const c = client({ symbols: ["AAPL"] });
  const { states } = recordStates(c);
  const errors = recordErrors(c);
  await waitFor(() => c.state === "closed", "state closed");
  assert.deepEqual(states, ["connecting", "closed"]);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, "auth_required");
  assert.equal(errors[0].fatal, true);
  await sleep(300);
  assert.equal(c.state, "closed");
});

test("a token function is called for every connection attempt", async () => {
  let calls = 0;
  const c = client({
    token: async () => {
      calls++;
      return GOOD;
    },
    symbols: ["MSFT"],
  });
  await waitFor(() => c.get("MSFT")?.updates >= 1, "MSFT quotes");
  assert.equal(calls, 1);
  c.close();
});
