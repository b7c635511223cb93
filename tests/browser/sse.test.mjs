// GET /v1/sse in a real browser: Chromium's EventSource, same origin and
// cross origin (CORS), against the real gateway binary.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Gateway } from "../../clients/js/test-support/gateway.js";
import { launch, newPage } from "./support.mjs";

/** @type {Awaited<ReturnType<typeof launch>>} */
let chromium;
before(async () => {
  chromium = await launch();
});
after(async () => {
  await chromium?.close();
});

const config = (extra = "") => `
[server]
listen = "127.0.0.1:@PORT@"
${extra}

[[feeds]]
kind = "sim"
symbols = 20
rate = 200
`;

/** Runs an EventSource in the page until it has `n` frames or an error. */
async function collect(page, url, n) {
  return page.evaluate(
    (url, n) =>
      new Promise((resolve) => {
        const frames = [];
        const es = new EventSource(url);
        const done = (error) => {
          es.close();
          resolve({ frames, error });
        };
        es.onmessage = (ev) => {
          frames.push(JSON.parse(ev.data));
          if (frames.length >= n) done(null);
        };
        es.onerror = () => done(`error event, readyState ${es.readyState}`);
        setTimeout(() => done("timeout"), 15000);
      }),
    url,
    n,
  );
}

test("EventSource gets welcome, subscribed and snapshots, then conflated updates of its symbols only", async () => {
  const gw = await Gateway.start(config());
  const { page, errors } = await newPage(chromium.browser);
  try {
    await gw.waitForValues(["AAPL", "MSFT"]);
    await page.goto(`${gw.http}/healthz`);
    const r = await collect(page, "/v1/sse?symbols=AAPL,MSFT&max_hz=5", 4);
    assert.equal(r.error, null);
    const [first, ...rest] = r.frames;
    assert.equal(first[0].type, "welcome");
    assert.equal(first[1].type, "subscribed");
    assert.deepEqual(first[1].symbols, ["AAPL", "MSFT"]);
    const snaps = first.filter((m) => m.type === "quote");
    assert.deepEqual(snaps.map((m) => m.symbol).sort(), ["AAPL", "MSFT"]);
    assert.ok(snaps.every((m) => m.snapshot === true && typeof m.bid === "string"));
    for (const f of rest) {
      for (const m of f) {
        assert.ok(m.symbol === "AAPL" || m.symbol === "MSFT", JSON.stringify(m));
        if (m.type === "quote") assert.equal(typeof m.bid, "string");
      }
    }
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
    await gw.dispose();
  }
});

test("cross origin: an allowed origin reads the stream (CORS), another is refused", async () => {
  // The page is served as http://localhost:PORT, the stream asked of
  // http://127.0.0.1:PORT: two origins.
  const open = await Gateway.start(config());
  const { page, errors } = await newPage(chromium.browser);
  try {
    await page.goto(`http://localhost:${open.port}/healthz`);
    const r = await collect(page, `${open.http}/v1/sse?symbols=AAPL`, 1);
    assert.equal(r.error, null, "any origin is allowed with an empty allow-list");
    assert.equal(r.frames[0][0].type, "welcome");
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
    await open.dispose();
  }
  const strict = await Gateway.start(config('allowed_origins = ["https://good.example"]'));
  const other = await newPage(chromium.browser);
  try {
    await other.page.goto(`http://localhost:${strict.port}/healthz`);
    const r = await collect(other.page, `${strict.http}/v1/sse?symbols=AAPL`, 1);
    assert.deepEqual(r.frames, [], "nothing reaches a refused origin");
    assert.match(String(r.error), /error event/);
  } finally {
    await other.page.close();
    await strict.dispose();
  }
});
