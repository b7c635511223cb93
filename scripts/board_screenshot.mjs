// Takes docs/board.png: the ticker board on a gateway with the default
// simulated feed, in headless Chromium, after a minute of chart history.
//
// usage: node scripts/board_screenshot.mjs [--theme dark|light] [--secs 60] [--out docs/board.png]
// Needs chromium and `npm ci` (puppeteer-core), and target/release/tickergate.

import { fileURLToPath } from "node:url";
import { Gateway, sleep } from "../clients/js/test-support/gateway.js";
import { launch } from "../tests/browser/support.mjs";

const a = process.argv.slice(2);
const opt = (name, def) => (a.includes(name) ? a[a.indexOf(name) + 1] : def);
const out = opt("--out", fileURLToPath(new URL("../docs/board.png", import.meta.url)));
const secs = Number(opt("--secs", "60"));
const theme = opt("--theme", "dark");

const gw = await Gateway.start(`[server]\nlisten = "127.0.0.1:@PORT@"\n\n[[feeds]]\nkind = "sim"\nrate = 2000\n`);
const chromium = await launch();
try {
  const page = await chromium.browser.newPage();
  await page.setViewport({ width: 1280, height: 860, deviceScaleFactor: 1 });
  await page.emulateMediaFeatures([{ name: "prefers-color-scheme", value: theme }]);
  const syms = (await (await fetch(`${gw.http}/v1/symbols`)).json()).slice(0, 12);
  await page.goto(`${gw.http}/?symbols=${syms.join(",")}&max_hz=10&chart=${syms[0]}`);
  await page.waitForFunction(() => document.querySelector("#conn")?.getAttribute("data-state") === "open");
  await sleep(secs * 1000);
  await page.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await chromium.close();
  await gw.dispose();
}
