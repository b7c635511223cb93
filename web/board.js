// The ticker board served at `/`: a watchlist grid fed by the tickergate
// JavaScript client (the same file as the npm package, served from the
// binary), in ack mode so a busy page always gets the newest values: each
// frame is acknowledged once the page has painted it.

import { connect } from "/assets/tickergate-client.js";
import * as dec from "/assets/decimal.js";

const STORE_KEY = "tickergate.board.v1";
const HISTORY_MS = 5 * 60 * 1000; // the chart's span
const HISTORY_STEP_MS = 250; // at most one chart point per symbol this often
const AGE_SAMPLES = 8192; // ages of shown values kept for the stats hook
const DEFAULT_COUNT = 10; // symbols on a first visit
const MAX_SUGGESTIONS = 5000;

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const el = {
  conn: $("conn"),
  feeds: $("feeds"),
  theme: $("theme"),
  form: /** @type {HTMLFormElement} */ ($("add")),
  input: /** @type {HTMLInputElement} */ ($("symbol")),
  list: $("symbols"),
  maxhz: /** @type {HTMLSelectElement} */ ($("maxhz")),
  message: $("message"),
  rows: $("rows"),
  empty: $("empty"),
  chartTitle: $("chart-symbol"),
  canvas: /** @type {HTMLCanvasElement} */ ($("chart")),
};

// ---------------------------------------------------------------- settings

const params = new URLSearchParams(location.search);
const token = params.get("token") || undefined;
const saved = loadSaved();

/** @param {string|null} s */
function parseList(s) {
  if (s === null) return null;
  return [...new Set(s.split(",").map((x) => x.trim()).filter(Boolean))];
}

/** @param {string|null|undefined} s */
function parseHz(s) {
  if (s === null || s === undefined || s === "") return null;
  const n = Number(s);
  return Number.isInteger(n) && n >= 0 && n <= 1000 ? n : null;
}

function loadSaved() {
  try {
    const v = JSON.parse(localStorage.getItem(STORE_KEY) ?? "{}");
    return v && typeof v === "object" ? v : {};
  } catch {
    return {};
  }
}

/** @type {string[]|null} */
let watch = parseList(params.get("symbols")) ?? (Array.isArray(saved.symbols) ? saved.symbols : null);
let maxHz = parseHz(params.get("max_hz")) ?? parseHz(String(saved.maxHz ?? "")) ?? 0;
/** @type {string|null} */
let selected = params.get("chart") || (typeof saved.selected === "string" ? saved.selected : null);
let theme = typeof saved.theme === "string" ? saved.theme : null;
// Ack window (frames in flight): 1 unless the URL says otherwise; `ack=0`
// turns client-paced delivery off (for comparison: the gateway's read
// window then paces the page, as for any client).
const ackParam = parseHz(params.get("ack"));
const ackWindow = ackParam !== null && ackParam <= 64 ? ackParam : 1;

/** The watchlist, rate and chart go in the address bar and localStorage. */
function persist() {
  const p = new URLSearchParams(location.search);
  p.set("symbols", (watch ?? []).join(","));
  if (maxHz > 0) p.set("max_hz", String(maxHz));
  else p.delete("max_hz");
  if (selected) p.set("chart", selected);
  else p.delete("chart");
  history.replaceState(null, "", `${location.pathname}?${p.toString().replace(/%2C/g, ",")}`);
  try {
    localStorage.setItem(STORE_KEY, JSON.stringify({ symbols: watch, maxHz, selected, theme }));
  } catch {
    // Private mode or a full store: the URL still holds it.
  }
}

function applyTheme() {
  if (theme === "dark" || theme === "light") document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}

// ---------------------------------------------------------------- REST

/** @param {string} path */
function withToken(path) {
  if (!token) return path;
  return `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
}

/** The symbols the gateway serves to this token, or [] when it cannot say. */
async function fetchSymbols() {
  try {
    const r = await fetch(withToken("/v1/symbols"));
    if (!r.ok) return [];
    const v = await r.json();
    return Array.isArray(v) ? v.filter((s) => typeof s === "string") : [];
  } catch {
    return [];
  }
}

let known = /** @type {string[]} */ ([]);

function fillSuggestions() {
  const frag = document.createDocumentFragment();
  for (const s of known.slice(0, MAX_SUGGESTIONS)) {
    const o = document.createElement("option");
    o.value = s;
    frag.appendChild(o);
  }
  el.list.replaceChildren(frag);
}

/** Feed health from /v1/feeds: one badge per feed, stale while it is silent. */
async function pollFeeds() {
  try {
    const r = await fetch(withToken("/v1/feeds"), { cache: "no-store" });
    if (!r.ok) return;
    const v = await r.json();
    if (!Array.isArray(v)) return;
    const frag = document.createDocumentFragment();
    for (const f of v) {
      if (!f || typeof f.name !== "string") continue;
      const up = f.state === "live";
      const b = document.createElement("span");
      b.className = up ? "feed" : "feed stale";
      b.dataset.feed = f.name;
      b.textContent = `${f.name}: ${up ? "live" : "stale"}`;
      b.title = up
        ? `feed ${f.name}: ${f.symbols} symbols, delivering`
        : `feed ${f.name} is silent or disconnected${typeof f.silent_ms === "number" ? ` (for ${(f.silent_ms / 1000).toFixed(1)} s)` : ""}: its symbols are stale`;
      frag.appendChild(b);
    }
    el.feeds.replaceChildren(frag);
  } catch {
    // The connection indicator already says the gateway is unreachable.
  }
}

// ---------------------------------------------------------------- rows

/**
 * @typedef {object} Row
 * @property {string} sym
 * @property {HTMLTableRowElement} tr
 * @property {HTMLElement} badge
 * @property {Record<string, HTMLTableCellElement>} cells
 * @property {Record<string, string|undefined>} shown  values on screen
 * @property {Record<string, number>} flashUntil  when each flashing cell's highlight ends (ms)
 * @property {boolean} visible  in or near the viewport (off-screen rows are painted when they come back)
 * @property {string|undefined} base  the first last (or mid) seen: change is against it
 * @property {boolean} dirty
 * @property {number} updates  quotes applied
 * @property {number} counted  `updates` at the last rate tick
 * @property {number} hz  updates/s over the last tick
 * @property {Array<[number, number]>} hist  chart points: [ms, mid]
 */

/** @type {Map<string, Row>} */
const rows = new Map();

const COLUMNS = ["bid", "ask", "spread", "last", "chg", "ups", "age"];

/** @param {string} sym @returns {Row} */
function makeRow(sym) {
  const tr = document.createElement("tr");
  tr.tabIndex = 0;
  tr.dataset.symbol = sym;
  tr.setAttribute("aria-selected", "false");
  const first = document.createElement("td");
  const name = document.createElement("span");
  name.className = "sym";
  name.textContent = sym;
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.textContent = "stale";
  badge.hidden = true;
  first.append(name, badge);
  tr.appendChild(first);
  /** @type {Record<string, HTMLTableCellElement>} */
  const cells = {};
  for (const c of COLUMNS) {
    const td = document.createElement("td");
    td.className = "num";
    td.dataset.col = c;
    cells[c] = td;
    tr.appendChild(td);
  }
  const last = document.createElement("td");
  const rm = document.createElement("button");
  rm.type = "button";
  rm.className = "remove";
  rm.textContent = "×";
  rm.setAttribute("aria-label", `Remove ${sym}`);
  rm.title = `Remove ${sym}`;
  last.appendChild(rm);
  tr.appendChild(last);
  return { sym, tr, badge, cells, shown: {}, flashUntil: {}, visible: true, base: undefined, dirty: false, updates: 0, counted: 0, hz: 0, hist: [] };
}

function showEmpty() {
  el.empty.hidden = rows.size > 0;
}

/**
 * Rows scrolled out of view are not painted (at 200 symbols most of them):
 * a row coming back into view is painted with the newest values at once.
 */
const visibility =
  typeof IntersectionObserver === "function"
    ? new IntersectionObserver(
        (entries) => {
          for (const en of entries) {
            const sym = /** @type {HTMLElement} */ (en.target).dataset.symbol;
            const r = sym ? rows.get(sym) : undefined;
            if (!r) continue;
            r.visible = en.isIntersecting;
            if (r.visible) {
              r.dirty = true;
              scheduleRender();
            }
          }
        },
        { rootMargin: "200px 0px" },
      )
    : null;

/** @param {string} sym */
function addRow(sym) {
  if (rows.has(sym)) return;
  const r = makeRow(sym);
  rows.set(sym, r);
  el.rows.appendChild(r.tr);
  visibility?.observe(r.tr);
  if (sym === selected) r.tr.setAttribute("aria-selected", "true");
  showEmpty();
}

/** @param {string} sym */
function removeRow(sym) {
  const r = rows.get(sym);
  if (!r) return;
  visibility?.unobserve(r.tr);
  r.tr.remove();
  rows.delete(sym);
  if (selected === sym) select(null);
  showEmpty();
}

/** @param {string|null} sym */
function select(sym) {
  for (const r of rows.values()) r.tr.setAttribute("aria-selected", String(r.sym === sym));
  selected = sym;
  el.chartTitle.textContent = sym ?? "select a row";
  chartDirty = true;
  scheduleRender();
  persist();
}

// ---------------------------------------------------------------- rendering

/** Ages (ms) of values at the moment they were put on screen. */
const ages = new Float64Array(AGE_SAMPLES);
let ageCount = 0;

let renderQueued = false;
let chartDirty = true;
let lastChartDraw = 0;
/** @type {(() => void)|null} */
let painted = null;
/** @type {Promise<void>|null} */
let paintPromise = null;

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(render);
}

/**
 * A promise settled once the page has painted what it has: the client
 * acknowledges a frame only after its listeners' promises settle, so the
 * gateway sends the next frame, with the newest values, when the page can
 * show it. A hidden tab gets no animation frames; the timer keeps it
 * acknowledging (browsers slow such timers to about once a second), so the
 * gateway never takes it for a stuck client.
 */
function nextPaint() {
  if (!paintPromise) {
    paintPromise = new Promise((resolve) => {
      painted = resolve;
    });
    setTimeout(settlePaint, 100);
  }
  return paintPromise;
}

function settlePaint() {
  const p = painted;
  painted = null;
  paintPromise = null;
  if (p) p();
}

const FLASH_MS = 400;

/**
 * Shows `value` in a cell; a price that moved highlights the cell green or
 * red for FLASH_MS. A cell already highlighted keeps its highlight (at a
 * kHz feed it would otherwise restyle every frame) and takes the new
 * direction only once it has cleared. No CSS animation: a background
 * animation restyles and repaints on the main thread every frame.
 * @param {HTMLTableCellElement} td
 * @param {Row} r
 * @param {string} key
 * @param {string|undefined} value
 * @param {boolean} flash
 * @param {number} now
 */
function setCell(td, r, key, value, flash, now) {
  const old = r.shown[key];
  if (value === old) return;
  r.shown[key] = value;
  td.textContent = value ?? "";
  if (!flash || old === undefined || value === undefined || r.flashUntil[key]) return;
  const c = dec.cmp(value, old);
  if (c === null || c === 0) return;
  td.dataset.flash = c > 0 ? "up" : "down";
  r.flashUntil[key] = now + FLASH_MS;
}

/** Clears the highlights whose time is up. @param {Row} r @param {number} now */
function clearFlashes(r, now) {
  for (const key in r.flashUntil) {
    if (r.flashUntil[key] <= now) {
      delete r.cells[key].dataset.flash;
      delete r.flashUntil[key];
    }
  }
}

/** @param {Row} r @param {number} now */
function paintRow(r, now) {
  r.dirty = false;
  const e = client.get(r.sym);
  if (!e) return;
  clearFlashes(r, now);
  setCell(r.cells.bid, r, "bid", e.bid, true, now);
  setCell(r.cells.ask, r, "ask", e.ask, true, now);
  // A quote without a trade keeps the last trade's price on screen.
  if (e.last !== undefined) setCell(r.cells.last, r, "last", e.last, true, now);
  const spread = e.bid !== undefined && e.ask !== undefined ? dec.sub(e.ask, e.bid) ?? undefined : undefined;
  setCell(r.cells.spread, r, "spread", spread, false, now);
  // Change since the page opened, of the mid price (the last trade when
  // the symbol has no two-sided quote).
  const cur = e.bid !== undefined && e.ask !== undefined ? dec.mid(e.bid, e.ask) ?? undefined : e.last;
  if (r.base === undefined) r.base = cur;
  if (cur !== undefined && r.base !== undefined) {
    const d = dec.sub(cur, r.base);
    const pct = dec.percent(cur, r.base);
    const sign = d !== null && !d.startsWith("-") && dec.cmp(d, "0") !== 0 ? "+" : "";
    const text = d === null ? undefined : `${sign}${d} (${pct ?? "–"})`;
    if (text !== r.shown.chg) {
      setCell(r.cells.chg, r, "chg", text, false, now);
      const c = d === null ? 0 : dec.cmp(d, "0");
      r.cells.chg.className = c === 1 ? "num pos" : c === -1 ? "num neg" : "num";
    }
  }
  if (e.gw_ts !== undefined) {
    const age = now - e.gw_ts / 1e6;
    ages[ageCount % AGE_SAMPLES] = age;
    ageCount++;
    r.cells.age.textContent = String(Math.max(0, Math.round(age)));
  }
  const stale = !!e.stale;
  if (r.badge.hidden === stale) {
    r.badge.hidden = !stale;
    r.tr.classList.toggle("stale", stale);
  }
}

function render() {
  renderQueued = false;
  const now = Date.now();
  for (const r of rows.values()) if (r.dirty && r.visible) paintRow(r, now);
  if (chartDirty && performance.now() - lastChartDraw >= 200) drawChart();
  else if (chartDirty) scheduleRender();
  settlePaint();
}

/** Every 250 ms: ages move on even when values do not; rates once a second. */
let ticks = 0;
function tick() {
  ticks++;
  const now = Date.now();
  const rates = ticks % 4 === 0;
  for (const r of rows.values()) {
    if (!r.visible) continue;
    clearFlashes(r, now);
    const e = client.get(r.sym);
    if (e && e.gw_ts !== undefined) r.cells.age.textContent = String(Math.max(0, Math.round(now - e.gw_ts / 1e6)));
    if (rates) {
      r.hz = r.updates - r.counted;
      r.counted = r.updates;
      r.cells.ups.textContent = String(r.hz);
    }
  }
  if (rates) pollFeeds();
}

// ---------------------------------------------------------------- chart

function drawChart() {
  chartDirty = false;
  lastChartDraw = performance.now();
  const c = el.canvas;
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(c.clientWidth * dpr));
  const h = Math.max(1, Math.round(c.clientHeight * dpr));
  if (c.width !== w || c.height !== h) {
    c.width = w;
    c.height = h;
  }
  const ctx = c.getContext("2d");
  if (!ctx) return;
  ctx.clearRect(0, 0, w, h);
  const r = selected ? rows.get(selected) : undefined;
  // Resolved colours (the palette's light-dark() values are resolved on
  // elements, not in the variables themselves).
  const fg = getComputedStyle(el.chartTitle).color || "#888";
  const line = getComputedStyle(c).color || "#0f766e";
  ctx.font = `${12 * dpr}px system-ui, sans-serif`;
  ctx.fillStyle = fg;
  if (!r || r.hist.length === 0) {
    ctx.fillText(r ? "waiting for quotes…" : "select a row to chart its mid price", 12 * dpr, 24 * dpr);
    return;
  }
  const now = Date.now();
  const t0 = now - HISTORY_MS;
  let lo = Infinity;
  let hi = -Infinity;
  for (const [, v] of r.hist) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (hi === lo) {
    hi += Math.abs(hi) * 1e-4 || 1;
    lo -= Math.abs(lo) * 1e-4 || 1;
  }
  const padL = 8 * dpr;
  const padR = 90 * dpr;
  const padY = 12 * dpr;
  const x = (t) => padL + ((t - t0) / HISTORY_MS) * (w - padL - padR);
  const y = (v) => h - padY - ((v - lo) / (hi - lo)) * (h - 2 * padY);
  ctx.strokeStyle = line;
  ctx.lineWidth = 1.5 * dpr;
  ctx.beginPath();
  r.hist.forEach(([t, v], i) => (i === 0 ? ctx.moveTo(x(t), y(v)) : ctx.lineTo(x(t), y(v))));
  ctx.stroke();
  // Labels: the range and the latest mid as the gateway's decimals show them.
  const e = client.get(r.sym);
  const latest = e && e.bid !== undefined && e.ask !== undefined ? dec.mid(e.bid, e.ask) : null;
  const scale = latest && latest.includes(".") ? latest.length - latest.indexOf(".") - 1 : 0;
  ctx.fillStyle = fg;
  ctx.fillText(hi.toFixed(scale), w - padR + 6 * dpr, padY + 4 * dpr);
  ctx.fillText(lo.toFixed(scale), w - padR + 6 * dpr, h - padY);
  if (latest) {
    ctx.fillStyle = line;
    ctx.fillText(latest, w - padR + 6 * dpr, Math.min(h - padY, Math.max(padY + 16 * dpr, y(Number(latest)))));
  }
  ctx.fillStyle = fg;
  ctx.fillText("−5 min", padL, h - 2 * dpr);
}

// ---------------------------------------------------------------- client

/** @type {ReturnType<typeof connect>} */
let client;

/** @param {string} text */
function say(text) {
  el.message.textContent = text;
}

/** @param {string} input */
function resolveSymbol(input) {
  const s = input.trim();
  if (!s) return null;
  if (known.length === 0 || known.includes(s)) return s;
  const lower = s.toLowerCase();
  return known.find((k) => k.toLowerCase() === lower) ?? null;
}

/** @param {string} input */
function addSymbol(input) {
  const sym = resolveSymbol(input);
  if (!sym) {
    say(`${input.trim() || "(empty)"}: no such symbol on this gateway`);
    return false;
  }
  if (rows.has(sym)) {
    say(`${sym} is already on the watchlist`);
    return false;
  }
  say("");
  watch = [...(watch ?? []), sym];
  addRow(sym);
  client.subscribe([sym], { maxHz: maxHz > 0 ? maxHz : null });
  persist();
  return true;
}

/** @param {string} sym */
function removeSymbol(sym) {
  watch = (watch ?? []).filter((s) => s !== sym);
  removeRow(sym);
  client.unsubscribe([sym]);
  persist();
}

function wire() {
  client.on("quote", ({ symbol, entry }) => {
    const r = rows.get(symbol);
    if (!r) return undefined;
    r.dirty = true;
    r.updates++;
    if (entry.bid !== undefined && entry.ask !== undefined) {
      const now = Date.now();
      const last = r.hist.length ? r.hist[r.hist.length - 1][0] : 0;
      if (now - last >= HISTORY_STEP_MS) {
        const m = dec.mid(entry.bid, entry.ask);
        if (m !== null) r.hist.push([now, dec.toNumber(m)]);
        while (r.hist.length && r.hist[0][0] < now - HISTORY_MS) r.hist.shift();
        if (symbol === selected) chartDirty = true;
      }
    }
    scheduleRender();
    return nextPaint();
  });
  client.on("status", ({ symbol }) => {
    const r = rows.get(symbol);
    if (r) {
      r.dirty = true;
      scheduleRender();
    }
  });
  client.on("state", ({ state, attempt, delayMs }) => {
    el.conn.dataset.state = state;
    el.conn.textContent =
      state === "reconnecting" && typeof delayMs === "number"
        ? `reconnecting (retry in ${(delayMs / 1000).toFixed(1)} s)`
        : state;
    if (state === "open") pollFeeds();
    void attempt;
  });
  client.on("reconnect", ({ delayMs }) => {
    el.conn.dataset.state = "reconnecting";
    el.conn.textContent = `reconnecting (retry in ${(delayMs / 1000).toFixed(1)} s)`;
  });
  client.on("error", (e) => {
    if (e.code === "unknown_symbol" && typeof e.symbol === "string" && rows.has(e.symbol)) {
      removeSymbol(e.symbol);
      say(`${e.symbol}: ${e.message}`);
    } else if (e.fatal || e.server) {
      say(e.message);
    }
  });
}

function wireControls() {
  el.form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (addSymbol(el.input.value)) el.input.value = "";
  });
  el.maxhz.value = String(maxHz);
  if (el.maxhz.value !== String(maxHz)) {
    const o = document.createElement("option");
    o.value = String(maxHz);
    o.textContent = String(maxHz);
    el.maxhz.appendChild(o);
    el.maxhz.value = String(maxHz);
  }
  el.maxhz.addEventListener("change", () => {
    maxHz = parseHz(el.maxhz.value) ?? 0;
    // Subscribing again to held symbols changes their rate (0: none).
    if (watch && watch.length) client.subscribe(watch, { maxHz: maxHz > 0 ? maxHz : null });
    persist();
  });
  el.rows.addEventListener("click", (ev) => {
    const t = /** @type {HTMLElement} */ (ev.target);
    const tr = t.closest("tr");
    if (!tr || !tr.dataset.symbol) return;
    if (t.closest(".remove")) removeSymbol(tr.dataset.symbol);
    else select(tr.dataset.symbol);
  });
  el.rows.addEventListener("keydown", (ev) => {
    const t = /** @type {HTMLElement} */ (ev.target);
    if (t.tagName !== "TR" || !t.dataset.symbol) return;
    const sym = t.dataset.symbol;
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      select(sym);
    } else if (ev.key === "Delete" || ev.key === "Backspace") {
      ev.preventDefault();
      const next = /** @type {HTMLElement|null} */ (t.nextElementSibling ?? t.previousElementSibling);
      removeSymbol(sym);
      (next ?? el.input).focus();
    } else if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      const n = /** @type {HTMLElement|null} */ (ev.key === "ArrowDown" ? t.nextElementSibling : t.previousElementSibling);
      n?.focus();
    }
  });
  el.theme.addEventListener("click", () => {
    const dark = theme === "dark" || (theme === null && matchMedia("(prefers-color-scheme: dark)").matches);
    theme = dark ? "light" : "dark";
    applyTheme();
    chartDirty = true;
    scheduleRender();
    persist();
  });
  window.addEventListener("resize", () => {
    chartDirty = true;
    scheduleRender();
  });
}

async function main() {
  applyTheme();
  known = await fetchSymbols();
  fillSuggestions();
  if (watch === null) watch = known.slice(0, DEFAULT_COUNT);
  for (const s of watch) addRow(s);
  showEmpty();
  const url = new URL("/v1/ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  client = connect(url.href, {
    token,
    symbols: watch,
    maxHz: maxHz > 0 ? maxHz : undefined,
    ack: ackWindow > 0 ? { window: ackWindow } : false,
  });
  wire();
  wireControls();
  if (selected && !rows.has(selected)) selected = null;
  select(selected);
  pollFeeds();
  setInterval(tick, 250);
  // For tests and benchmarks: the client, and the ages of values shown.
  Object.defineProperty(window, "tickergateBoard", {
    value: {
      client,
      rows: () => [...rows.keys()],
      /** Ages (ms) of the values put on screen since the last reset, sorted. */
      ages: () => Array.from(ages.subarray(0, Math.min(ageCount, AGE_SAMPLES))).sort((a, b) => a - b),
      /** Values put on screen since the last reset. */
      shown: () => ageCount,
      resetAges: () => {
        ageCount = 0;
      },
    },
  });
}

main();
