// Browser test support: Debian's Chromium, headless, driven by
// puppeteer-core (the npm package in the repository's package.json), and a
// page on the board that records every error it logs.
//
// The browser is started by the tests and closed by them (its process,
// by PID through puppeteer); no process is ever stopped by name.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import puppeteer from "puppeteer-core";

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

/**
 * Headless Chromium with a fresh profile. The flags keep it off the
 * network beyond loopback (this machine has no route out; without them
 * Chromium tries Google's hosts at every start).
 */
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), "tickergate-chromium-"));
  let browser;
  try {
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        `--user-data-dir=${profile}`,
      ],
    });
  } catch (e) {
    rmSync(profile, { recursive: true, force: true });
    throw new Error(
      `could not start Chromium at ${CHROMIUM} (scripts/test installs Debian's chromium; ` +
        `set CHROMIUM to another binary): ${/** @type {Error} */ (e).message}`,
    );
  }
  return {
    browser,
    async close() {
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * A new page that records console errors, uncaught exceptions, failed
 * requests and HTTP errors (a missing favicon would be one).
 * @param {import('puppeteer-core').Browser} browser
 */
export async function newPage(browser) {
  const page = await browser.newPage();
  /** @type {string[]} */
  const errors = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`pageerror: ${/** @type {Error} */ (e).message}`));
  page.on("requestfailed", (r) => {
    // A navigation away aborts what was in flight: not the page's fault.
    if (r.failure()?.errorText !== "net::ERR_ABORTED") errors.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400) errors.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  return { page, errors };
}

/** The board's rows as the user sees them: symbol -> cell texts. */
export async function grid(page) {
  return page.$$eval("#rows tr", (trs) =>
    Object.fromEntries(
      trs.map((tr) => {
        const cells = Object.fromEntries(
          [...tr.querySelectorAll("td[data-col]")].map((td) => [td.getAttribute("data-col"), td.textContent]),
        );
        const badge = tr.querySelector(".badge");
        return [tr.getAttribute("data-symbol"), { ...cells, stale: !!badge && !badge.hidden }];
      }),
    ),
  );
}

/** Polls the page until `fn` (run in the page) is truthy. */
export async function until(page, fn, what, timeout = 20000, ...args) {
  try {
    return await page.waitForFunction(fn, { timeout, polling: 50 }, ...args);
  } catch (e) {
    throw new Error(`timed out after ${timeout} ms waiting for: ${what} (${/** @type {Error} */ (e).message})`);
  }
}
