// The ticker board (GET /) in real headless Chromium against the real
// gateway binary: rows whose prices move, adding a symbol, a gateway
// killed and restarted, a silent feed, and a page that logs no errors.
//
// Run: node --test --test-concurrency=1 tests/browser/ (scripts/test does,
// after installing chromium and `npm ci`). The gateway binary is
// $TICKERGATE_BIN or target/release/tickergate.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Gateway, sha256 } from "../../clients/js/test-support/gateway.js";
import { grid, launch, newPage, until } from "./support.mjs";

/** @type {Awaited<ReturnType<typeof launch>>} */
let chromium;

before(async () => {
  chromium = await launch();
});

after(async () => {
  await chromium?.close();
});

const SIM = `
[server]
listen = "127.0.0.1:@PORT@"

[[feeds]]
kind = "sim"
symbols = 20
rate = 400
`;

/** The first `n` symbols the gateway lists. @param {Gateway} gw */
async function symbols(gw, n) {
  const r = await fetch(`${gw.http}/v1/symbols`);
  const all = await r.json();
  assert.ok(Array.isArray(all) && all.length >= n, `gateway lists ${n} symbols`);
  return all.slice(0, n);
}

test("the board shows rows whose prices change, with no console errors", async () => {
  const gw = await Gateway.start(SIM);
  const { page, errors } = await newPage(chromium.browser);
  try {
    const syms = await symbols(gw, 3);
    await page.goto(`${gw.http}/?symbols=${syms.join(",")}`);
    await until(page, () => document.querySelector("#conn")?.getAttribute("data-state") === "open", "connected");
    await until(
      page,
      (n) => [...document.querySelectorAll("#rows td[data-col=bid]")].filter((td) => td.textContent).length === n,
      "every row has a bid",
      20000,
      syms.length,
    );
    const first = await grid(page);
    assert.deepEqual(Object.keys(first), syms, "one row per watched symbol, in order");
    for (const s of syms) {
      const r = first[s];
      assert.match(r.bid, /^\d+(\.\d+)?$/, `${s} bid is a decimal: ${r.bid}`);
      assert.match(r.ask, /^\d+(\.\d+)?$/, `${s} ask is a decimal: ${r.ask}`);
      assert.match(r.spread, /^-?\d+(\.\d+)?$/, `${s} spread is a decimal: ${r.spread}`);
      assert.match(r.age, /^\d+$/, `${s} age in ms: ${r.age}`);
      assert.equal(r.stale, false);
    }
    // Prices move within a few seconds.
    await until(
      page,
      (before) =>
        [...document.querySelectorAll("#rows tr")].some(
          (tr) => tr.querySelector("td[data-col=bid]")?.textContent !== before[tr.getAttribute("data-symbol")].bid,
        ),
      "a bid changes",
      20000,
      first,
    );
    // The page says the connection is open and the feed live.
    assert.equal(await page.$eval("#conn", (e) => e.textContent), "open");
    await until(page, () => !!document.querySelector('.feed[data-feed="sim"]:not(.stale)'), "the sim feed shown live");
    // The board acknowledges frames (ack mode), and shows exact decimals.
    assert.equal(await page.evaluate(() => window.tickergateBoard.client.acking), true, "ack mode is on");
    const s = syms[0];
    const spreadOk = await page.evaluate((sym) => {
      const e = window.tickergateBoard.client.get(sym);
      const cell = document.querySelector(`#rows tr[data-symbol="${sym}"] td[data-col=spread]`)?.textContent;
      return { bid: e.bid, ask: e.ask, cell };
    }, s);
    assert.ok(spreadOk.cell, "spread shown");
    assert.deepEqual(errors, [], "no console errors, failed requests or HTTP errors");
  } finally {
    await page.close();
    await gw.dispose();
  }
});

test("adding a symbol shows its snapshot; removing it unsubscribes; the watchlist is kept in the URL", async () => {
  // A slow feed: the row's first values are the snapshot, not an update.
  const gw = await Gateway.start(SIM.replace("rate = 400", "rate = 5"));
  const { page, errors } = await newPage(chromium.browser);
  try {
    const syms = await symbols(gw, 6);
    await gw.waitForValues(syms);
    await page.goto(`${gw.http}/?symbols=${syms[0]}`);
    await until(page, () => document.querySelector("#conn")?.getAttribute("data-state") === "open", "connected");
    // Autocomplete comes from /v1/symbols.
    await until(page, () => document.querySelectorAll("#symbols option").length >= 6, "suggestions from /v1/symbols");
    const added = syms[5];
    await page.type("#symbol", added);
    await page.keyboard.press("Enter");
    await until(
      page,
      (sym) => !!document.querySelector(`#rows tr[data-symbol="${sym}"] td[data-col=bid]`)?.textContent,
      "the added symbol's snapshot shown",
      20000,
      added,
    );
    const rows = await grid(page);
    assert.deepEqual(Object.keys(rows), [syms[0], added]);
    const rest = await (await fetch(`${gw.http}/v1/quotes?symbols=${added}`)).json();
    assert.equal(typeof rest[0].bid, "string");
    assert.ok(page.url().includes(`symbols=${syms[0]},${added}`), `URL keeps the watchlist: ${page.url()}`);
    // An unknown symbol is refused with a message, not added.
    await page.type("#symbol", "NO-SUCH-SYMBOL");
    await page.keyboard.press("Enter");
    await until(page, () => /no such symbol/.test(document.querySelector("#message")?.textContent ?? ""), "message");
    assert.equal(Object.keys(await grid(page)).length, 2);
    // Keyboard: focus the added row, Delete removes it.
    await page.focus(`#rows tr[data-symbol="${added}"]`);
    await page.keyboard.press("Delete");
    await until(page, (sym) => !document.querySelector(`#rows tr[data-symbol="${sym}"]`), "row removed", 5000, added);
    await until(
      page,
      (sym) => !window.tickergateBoard.client.subscriptions.has(sym),
      "unsubscribed",
      5000,
      added,
    );
    // A reload keeps the watchlist (URL and localStorage).
    await page.reload();
    await until(page, () => document.querySelectorAll("#rows tr").length === 1, "one row after reload");
    assert.deepEqual(Object.keys(await grid(page)), [syms[0]]);
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
    await gw.dispose();
  }
});

test("a gateway killed and restarted shows reconnecting, then live with moving prices", async () => {
  const gw = await Gateway.start(SIM);
  const { page, errors } = await newPage(chromium.browser);
  try {
    const syms = await symbols(gw, 2);
    await page.goto(`${gw.http}/?symbols=${syms.join(",")}`);
    await until(page, () => document.querySelector("#conn")?.getAttribute("data-state") === "open", "connected");
    await until(page, () => !!document.querySelector("#rows td[data-col=bid]")?.textContent, "values shown");
    // Let the seqs grow: the restarted gateway numbers them from 1 again.
    await until(
      page,
      (s) => window.tickergateBoard.client.get(s)?.seq > 200,
      "seq above 200",
      20000,
      syms[0],
    );
    const epoch = await page.evaluate(() => window.tickergateBoard.client.epoch);
    await gw.stop("SIGKILL");
    // The restarted gateway's feed is slow: its seqs stay far below the old
    // ones, so only a client that knows the numbering restarted shows them.
    gw.rewriteConfig(SIM.replace("rate = 400", "rate = 10"));
    const restartMs = Date.now();
    await until(
      page,
      () => document.querySelector("#conn")?.getAttribute("data-state") === "reconnecting",
      "reconnecting shown",
    );
    assert.match(await page.$eval("#conn", (e) => e.textContent), /^reconnecting/);
    // Down long enough for the shown ages to pass a second.
    await until(
      page,
      () => [...document.querySelectorAll("#rows td[data-col=age]")].every((td) => Number(td.textContent) > 1000),
      "ages past a second while the gateway is down",
    );
    await gw.spawn();
    await until(page, () => document.querySelector("#conn")?.getAttribute("data-state") === "open", "open again", 40000);
    // Fresh values after the restart: the age of the shown values falls
    // back below a second (they were growing while the gateway was down).
    await until(
      page,
      () =>
        [...document.querySelectorAll("#rows td[data-col=age]")].every(
          (td) => td.textContent !== "" && Number(td.textContent) < 1000,
        ),
      "fresh values after the restart",
      30000,
    );
    const after = await page.evaluate((s) => {
      const c = window.tickergateBoard.client;
      return { epoch: c.epoch, seq: c.get(s).seq, gwMs: c.get(s).gw_ts / 1e6 };
    }, syms[0]);
    assert.notEqual(after.epoch, epoch, "the restarted gateway has another epoch");
    assert.ok(after.gwMs > restartMs, "the shown value is the restarted gateway's");
    assert.ok(after.seq < 200, `its seq starts again (${after.seq})`);
    // The reconnect's own failed attempts are the only errors allowed.
    const other = errors.filter((e) => !/WebSocket|ERR_CONNECTION_REFUSED/.test(e));
    assert.deepEqual(other, []);
  } finally {
    await page.close();
    await gw.dispose();
  }
});

test("a silent feed shows the stale badge per symbol and per feed, then live again", async () => {
  const KEY = "board-test-key";
  const gw = await Gateway.start(`
[server]
listen = "127.0.0.1:@PORT@"

[[feeds]]
kind = "http"
name = "push"
key_sha256 = "${sha256(KEY)}"
symbols = ["ES.Z26", "AAPL"]
stale_after_ms = 500
`);
  const { page, errors } = await newPage(chromium.browser);
  const line = (sym, bid, ask) =>
    JSON.stringify({ symbol: sym, bid, bid_size: "1", ask, ask_size: "2", ts: Date.now() * 1e6 });
  try {
    await gw.ingest(KEY, [line("ES.Z26", "6001.25", "6001.50"), line("AAPL", "189.1200", "189.1300")]);
    await page.goto(`${gw.http}/?symbols=ES.Z26,AAPL`);
    await until(
      page,
      () => document.querySelector('#rows tr[data-symbol="AAPL"] td[data-col=bid]')?.textContent === "189.1200",
      "AAPL's bid shown byte-exact",
    );
    assert.equal((await grid(page)).AAPL.spread, "0.0100", "spread exact, at the venue's scale");
    // Silence: the symbols turn stale, and so does the feed's badge.
    await until(
      page,
      () => [...document.querySelectorAll("#rows .badge")].every((b) => !b.hidden),
      "stale badges on every symbol",
    );
    await until(page, () => !!document.querySelector('.feed.stale[data-feed="push"]'), "the feed shown stale");
    const g = await grid(page);
    assert.equal(g.AAPL.stale, true);
    assert.equal(g["ES.Z26"].stale, true);
    // A new quote: live again.
    await gw.ingest(KEY, [line("AAPL", "189.2000", "189.2100")]);
    await until(
      page,
      () => document.querySelector('#rows tr[data-symbol="AAPL"] .badge')?.hidden === true,
      "AAPL live again",
    );
    assert.equal((await grid(page)).AAPL.bid, "189.2000");
    assert.deepEqual(errors, [], "no console errors while a feed is down either");
  } finally {
    await page.close();
    await gw.dispose();
  }
});

test("the board passes ?token= through to a gateway with auth, and says so when it is refused", async () => {
  const TOKEN = "board-token";
  const gw = await Gateway.start(`${SIM}
[auth]
token_sha256 = ["${sha256(TOKEN)}"]
`);
  const { page, errors } = await newPage(chromium.browser);
  try {
    await page.goto(`${gw.http}/?token=${TOKEN}`);
    await until(page, () => document.querySelector("#conn")?.getAttribute("data-state") === "open", "connected");
    await until(page, () => document.querySelectorAll("#rows tr").length > 0, "default watchlist from /v1/symbols");
    await until(page, () => !!document.querySelector("#rows td[data-col=bid]")?.textContent, "values shown");
    assert.deepEqual(errors, []);
    // A wrong token: the client stops and the page shows it.
    const bad = await newPage(chromium.browser);
    try {
      await bad.page.goto(`${gw.http}/?token=wrong&symbols=AAPL`);
      await until(bad.page, () => document.querySelector("#conn")?.getAttribute("data-state") === "closed", "closed");
      const msg = await bad.page.$eval("#message", (e) => e.textContent);
      assert.match(msg, /token|auth/i, `the page says why: ${msg}`);
    } finally {
      await bad.page.close();
    }
  } finally {
    await page.close();
    await gw.dispose();
  }
});
