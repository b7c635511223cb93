// The ticker board under load, in real headless Chromium: main-thread busy
// time from a Chromium performance trace, the age of the values the page
// puts on screen, and how responsive the page stays (event-loop lag, the
// interval between animation frames).
//
// Feed: the sim in burst mode, 200 symbols ticking together 1,000 times a
// second (200,000 updates/s); the board watches all 200. The gateway runs
// on core 0, Chromium (and this script) on core 1 when taskset exists.
// Each setting runs its own gateway, one after the other.
//
// usage: node benches/board_perf.mjs [--secs 10] [--warmup 3] [--symbols 200]
//          [--hz 1000] [--ack 1,0] [--bin target/release/tickergate]
//   --ack: the board's ack windows to measure, comma separated (0: ack
//   mode off, the gateway's read window paces the page).
// Needs chromium (CHROMIUM=/usr/bin/chromium) and `npm ci` at the
// repository root (puppeteer-core). Prints one line per setting and a
// Markdown table.

import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, sleep } from "../clients/js/test-support/gateway.js";
import { launch } from "../tests/browser/support.mjs";

function args() {
  const o = { secs: 10, warmup: 3, symbols: 200, hz: 1000, ack: [1, 0], bin: "" };
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    const v = a[i + 1];
    switch (a[i]) {
      case "--secs": o.secs = Number(v); i++; break;
      case "--warmup": o.warmup = Number(v); i++; break;
      case "--symbols": o.symbols = Number(v); i++; break;
      case "--hz": o.hz = Number(v); i++; break;
      case "--ack": o.ack = v.split(",").map(Number); i++; break;
      case "--bin": o.bin = v; i++; break;
      default:
        console.error(`unknown option ${a[i]} (see the header of ${fileURLToPath(import.meta.url)})`);
        process.exit(2);
    }
  }
  o.bin ||= process.env.TICKERGATE_BIN || fileURLToPath(new URL("../target/release/tickergate", import.meta.url));
  return o;
}

const hasTaskset = spawnSync("taskset", ["-c", "0", "true"]).status === 0;

/** A gateway of its own, pinned to core 0; stopped by its PID. */
async function startGateway(o) {
  const dir = mkdtempSync(join(tmpdir(), "tickergate-board-perf-"));
  const port = await freePort();
  const config = join(dir, "gw.toml");
  writeFileSync(
    config,
    `[server]\nlisten = "127.0.0.1:${port}"\n\n[[feeds]]\nkind = "sim"\nsymbols = ${o.symbols}\nrate = 0\nburst_hz = ${o.hz}\n`,
  );
  const cmd = hasTaskset ? "taskset" : o.bin;
  const argv = hasTaskset ? ["-c", "0", o.bin, "--config", config] : ["--config", config];
  const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`gateway not ready:\n${out}`)), 20000);
    const on = (b) => {
      out += b;
      if (/ws:\/\/\S+\/v1\/ws/.test(out)) {
        clearTimeout(t);
        resolve(undefined);
      }
    };
    child.stdout.on("data", on);
    child.stderr.on("data", on);
    child.on("exit", (c) => reject(new Error(`gateway exited ${c}:\n${out}`)));
  });
  return {
    http: `http://127.0.0.1:${port}`,
    async stop() {
      const done = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await done;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const pct = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN);

/**
 * Main-thread busy ms in the trace window: the top-level tasks ("RunTask",
 * as DevTools' performance panel counts them) on the main thread of the
 * renderer that shows the page (from TracingStartedInBrowser's frames).
 * @param {Uint8Array} trace @param {string} origin
 */
function busyMs(trace, origin) {
  const events = JSON.parse(Buffer.from(trace).toString("utf8")).traceEvents ?? [];
  let pid;
  for (const e of events) {
    if (e.name === "TracingStartedInBrowser") {
      const f = (e.args?.data?.frames ?? []).find((x) => typeof x.url === "string" && x.url.startsWith(origin));
      if (f) pid = f.processId;
    }
  }
  const main = new Set();
  for (const e of events) {
    if (e.ph === "M" && e.name === "thread_name" && e.args?.name === "CrRendererMain" && (pid === undefined || e.pid === pid)) {
      main.add(`${e.pid}:${e.tid}`);
    }
  }
  let busy = 0;
  let cpu = 0;
  let t0 = Infinity;
  let t1 = -Infinity;
  for (const e of events) {
    if (e.ph !== "X" || typeof e.ts !== "number") continue;
    t0 = Math.min(t0, e.ts);
    t1 = Math.max(t1, e.ts + (e.dur ?? 0));
    if (e.name === "RunTask" && String(e.cat).includes("devtools.timeline") && main.has(`${e.pid}:${e.tid}`)) {
      busy += e.dur ?? 0;
      cpu += e.tdur ?? 0;
    }
  }
  // Where it goes: inclusive time of the main thread's events by name
  // (nested events overlap: an indication, not a partition).
  const by = new Map();
  for (const e of events) {
    if (e.ph === "X" && main.has(`${e.pid}:${e.tid}`) && e.name !== "RunTask" && !String(e.name).startsWith("ThreadController")) {
      by.set(e.name, (by.get(e.name) ?? 0) + (e.dur ?? 0) / 1000);
    }
  }
  const top = [...by].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([n, ms]) => `${n} ${ms.toFixed(0)}`);
  return { busy: busy / 1000, cpu: cpu / 1000, window: (t1 - t0) / 1000, threads: main.size, pid, top };
}

async function measure(browser, o, ack) {
  const gw = await startGateway(o);
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  try {
    const syms = (await (await fetch(`${gw.http}/v1/symbols`)).json()).slice(0, o.symbols);
    await page.goto(`${gw.http}/?ack=${ack}&symbols=${syms.join(",")}`);
    await page.waitForFunction(
      (n) => {
        const b = /** @type {any} */ (window).tickergateBoard;
        return !!b && b.rows().length === n && b.rows().every((s) => b.client.get(s)?.bid !== undefined);
      },
      { timeout: 30000 },
      syms.length,
    );
    await sleep(o.warmup * 1000);
    // Responsiveness probes in the page: timer lag and animation frame gaps.
    await page.evaluate(() => {
      const w = /** @type {any} */ (window);
      w.__lag = [];
      w.__gaps = [];
      let due = performance.now() + 20;
      const t = () => {
        const now = performance.now();
        w.__lag.push(now - due);
        due = now + 20;
        w.__lagTimer = setTimeout(t, 20);
      };
      w.__lagTimer = setTimeout(t, 20);
      let last = performance.now();
      const f = (ts) => {
        w.__gaps.push(ts - last);
        last = ts;
        w.__raf = requestAnimationFrame(f);
      };
      w.__raf = requestAnimationFrame(f);
      // Input to next paint of every click (the Event Timing API, as INP).
      w.__inp = [];
      w.__po = new PerformanceObserver((list) => {
        for (const e of list.getEntries()) if (e.name === "click") w.__inp.push(e.duration);
      });
      w.__po.observe({ type: "event", durationThreshold: 16, buffered: false });
      w.__clicks = 0;
      document.addEventListener("click", () => w.__clicks++, true);
      w.tickergateBoard.resetAges();
      w.__stats0 = { ...w.tickergateBoard.client.stats };
    });
    await page.tracing.start({ categories: ["toplevel", "disabled-by-default-devtools.timeline", "devtools.timeline"] });
    // Clicks on rows (select for the chart) spread over the window.
    const clicks = Math.max(1, Math.floor(o.secs * 2));
    for (let i = 0; i < clicks; i++) {
      await sleep(500);
      await page.click(`#rows tr:nth-child(${1 + (i % 10)}) td:first-child`);
    }
    const trace = await page.tracing.stop();
    const r = await page.evaluate(() => {
      const w = /** @type {any} */ (window);
      clearTimeout(w.__lagTimer);
      cancelAnimationFrame(w.__raf);
      w.__po.disconnect();
      const s = w.tickergateBoard.client.stats;
      return {
        ages: w.tickergateBoard.ages(),
        shown: w.tickergateBoard.shown(),
        lag: [...w.__lag].sort((a, b) => a - b),
        gaps: [...w.__gaps].sort((a, b) => a - b),
        quotes: s.quotes - w.__stats0.quotes,
        inp: [...w.__inp].sort((a, b) => a - b),
        clicks: w.__clicks,
        acking: w.tickergateBoard.client.acking,
      };
    });
    const b = busyMs(trace, gw.http);
    if (b.threads !== 1) console.error(`warning: ${b.threads} renderer main threads counted (page pid ${b.pid})`);
    return {
      ack,
      acking: r.acking,
      busyPct: (100 * b.busy) / b.window,
      top: b.top.join(", "),
      busyMs: b.busy,
      cpuPct: (100 * b.cpu) / b.window,
      windowMs: b.window,
      ageP50: pct(r.ages, 50),
      ageP99: pct(r.ages, 99),
      ageMax: r.ages[r.ages.length - 1],
      shown: r.shown,
      lagP99: pct(r.lag, 99),
      gapP50: pct(r.gaps, 50),
      gapP99: pct(r.gaps, 99),
      quotesPerSec: r.quotes / o.secs,
      clicks: r.clicks,
      // Clicks whose input-to-paint took >= 16 ms are reported; the rest were faster.
      inpMax: r.inp.length ? r.inp[r.inp.length - 1] : 0,
      inpSlow: r.inp.length,
    };
  } finally {
    await page.close();
    await gw.stop();
  }
}

const o = args();
if (hasTaskset) {
  // This script and the browser it starts go to core 1.
  spawnSync("taskset", ["-p", "-c", "1", String(process.pid)]);
}
const chromium = await launch();
const rows = [];
try {
  for (const ack of o.ack) {
    const r = await measure(chromium.browser, o, ack);
    rows.push(r);
    console.log(JSON.stringify(r));
  }
} finally {
  await chromium.close();
}
const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : "–");
console.log(
  `\nboard: ${o.symbols} symbols watched, sim burst ${o.hz} Hz (${o.symbols * o.hz} updates/s), ${o.secs} s traced after ${o.warmup} s, ${new Date().toISOString()}`,
);
console.log("| ack window | main thread busy (wall) | main thread CPU | age shown p50 | p99 | max | values shown/s | quotes received/s | timer lag p99 | frame gap p50 / p99 | click to paint, worst (clicks ≥ 16 ms) |");
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const r of rows) {
  console.log(
    `| ${r.ack === 0 ? "off" : r.ack}${r.ack !== 0 && !r.acking ? " (refused)" : ""} | ${f(r.busyPct)} % (${f(r.busyMs, 0)} of ${f(r.windowMs, 0)} ms) | ${f(r.cpuPct)} % | ${f(r.ageP50)} ms | ${f(r.ageP99)} ms | ${f(r.ageMax)} ms | ${f(r.shown / o.secs, 0)} | ${f(r.quotesPerSec, 0)} | ${f(r.lagP99)} ms | ${f(r.gapP50)} / ${f(r.gapP99)} ms | ${r.inpMax ? f(r.inpMax, 0) + " ms" : "< 16 ms"} (${r.inpSlow} of ${r.clicks}) |`,
  );
}
