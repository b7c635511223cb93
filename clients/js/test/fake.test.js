// Client logic against a scripted in-memory WebSocket (no gateway): cases
// the real gateway cannot be made to produce on demand (a gateway without
// `flow`, close codes 1013 / 4008 / flooding 1008, a bad frame, seq going
// back within a session), the backoff schedule, and the browser `online`
// event. The behaviour against the real gateway is in the other files.
import assert from "node:assert/strict";
import { test } from "node:test";
import { connect } from "../src/index.js";

const tick = () => new Promise((r) => setTimeout(r, 0));

/** A scripted WebSocket: the test plays the server. */
class FakeWS {
  /** @type {FakeWS[]} */
  static all = [];
  /** @param {string} url */
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    /** @type {any[]} */
    this.sent = [];
    /** @type {any} */ this.onmessage = null;
    /** @type {any} */ this.onclose = null;
    /** @type {any} */ this.onerror = null;
    /** @type {{code?: number, reason?: string}|null} */
    this.closedBy = null;
    FakeWS.all.push(this);
  }
  /** @param {string} s */
  send(s) {
    this.sent.push(JSON.parse(s));
  }
  /** @param {number} [code] @param {string} [reason] */
  close(code, reason) {
    this.closedBy = { code, reason };
    this.readyState = 3;
  }
  // --- server side ---
  /** @param {any[]} msgs */
  frame(msgs) {
    this.readyState = 1;
    this.onmessage?.({ data: JSON.stringify(msgs) });
  }
  /** @param {unknown} data */
  rawFrame(data) {
    this.onmessage?.({ data });
  }
  /** @param {number} code @param {string} reason */
  serverClose(code, reason) {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  welcome(extra = {}) {
    this.frame([
      {
        type: "welcome",
        protocol: 1,
        session: "0000000000000001",
        heartbeat_ms: 60000,
        limits: { max_symbols: 500, max_msgs_per_sec: 20, max_message_bytes: 16384, max_flow_window: 64 },
        auth_required: false,
        ...extra,
      },
    ]);
  }
  ops(/** @type {string} */ op) {
    return this.sent.filter((m) => m.op === op);
  }
}

/** @param {string} sym @param {number} seq @param {Record<string, any>} [extra] */
const quote = (sym, seq, extra = {}) => ({
  type: "quote",
  symbol: sym,
  seq,
  bid: "1.10",
  ask: "1.20",
  gw_ts: Date.now() * 1e6,
  ...extra,
});

/** @param {any} opts */
function fakeClient(opts = {}) {
  FakeWS.all = [];
  const c = connect("ws://gateway.test/v1/ws", { WebSocket: FakeWS, ...opts });
  c.on("error", () => {}); // tests read errors where they care
  return c;
}

test("handshake: flow then subscribe (grouped by maxHz, snapshot on); acks count frames after the flow reply's", async () => {
  const c = fakeClient({ symbols: ["A", "B"], maxHz: 4, ack: { window: 3 } });
  c.subscribe("C");
  c.subscribe("D", { maxHz: 10 });
  await tick();
  const ws = FakeWS.all[0];
  assert.equal(ws.url, "ws://gateway.test/v1/ws");
  ws.welcome();
  assert.equal(c.state, "open");
  const [flow, ...subs] = ws.sent;
  assert.deepEqual(flow, { op: "flow", id: flow.id, window: 3 });
  assert.deepEqual(
    subs.map((s) => [s.op, s.symbols, s.max_hz, s.snapshot]),
    [
      ["subscribe", ["A", "B", "C"], 4, undefined],
      ["subscribe", ["D"], 10, undefined],
    ],
  );
  // The flow reply's frame is not counted, even with data in it.
  ws.frame([{ type: "flow", id: flow.id, window: 3 }, quote("A", 1, { snapshot: true })]);
  assert.equal(c.acking, true);
  assert.deepEqual(ws.ops("ack"), []);
  ws.frame([quote("A", 2)]);
  ws.frame([{ type: "heartbeat", ts: 1 }]);
  assert.deepEqual(ws.ops("ack"), [{ op: "ack", n: 1 }, { op: "ack", n: 2 }]);
  assert.equal(c.get("A").seq, 2);
  c.close();
  assert.equal(ws.closedBy?.code, 1000);
});

test("async handlers: the ack waits until the promise settles; frames are handled in order", async () => {
  const c = fakeClient({ symbols: ["A"] });
  await tick();
  const ws = FakeWS.all[0];
  ws.welcome();
  const flow = ws.ops("flow")[0];
  ws.frame([{ type: "flow", id: flow.id, window: 1 }]);
  /** @type {(() => void)[]} */
  const resolvers = [];
  /** @type {number[]} */
  const order = [];
  c.on("quote", (/** @type {any} */ e) => {
    order.push(e.quote.seq);
    return new Promise((r) => resolvers.push(() => r(undefined)));
  });
  ws.frame([quote("A", 5)]);
  ws.frame([quote("A", 6)]); // (a real gateway would not send it before the ack; the client copes)
  assert.deepEqual(order, [5], "the second frame waits for the first's handler");
  assert.deepEqual(ws.ops("ack"), []);
  resolvers[0]();
  await tick();
  assert.deepEqual(ws.ops("ack"), [{ op: "ack", n: 1 }]);
  assert.deepEqual(order, [5, 6]);
  resolvers[1]();
  await tick();
  assert.deepEqual(ws.ops("ack"), [{ op: "ack", n: 1 }, { op: "ack", n: 2 }]);
  c.close();
});

test("a gateway that refuses flow: no acks, and no error event for it", async () => {
  const c = fakeClient({ symbols: ["A"] });
  const errors = /** @type {any[]} */ ([]);
  c.on("error", (/** @type {any} */ e) => errors.push(e));
  await tick();
  const ws = FakeWS.all[0];
  ws.welcome();
  const flow = ws.ops("flow")[0];
  ws.frame([{ type: "error", id: flow.id, code: "unknown_op", message: "unknown op: flow" }]);
  ws.frame([quote("A", 1)]);
  ws.frame([quote("A", 2)]);
  assert.equal(c.acking, false);
  assert.deepEqual(ws.ops("ack"), []);
  assert.equal(c.get("A").seq, 2);
  assert.deepEqual(errors, []);
  c.close();
});

test("a gateway without max_flow_window in its welcome gets no flow op", async () => {
  const c = fakeClient({ symbols: ["A"] });
  await tick();
  const ws = FakeWS.all[0];
  ws.welcome({ limits: { max_symbols: 500, max_msgs_per_sec: 20 } });
  assert.deepEqual(ws.ops("flow"), []);
  assert.equal(ws.ops("subscribe").length, 1);
  c.close();
});

test("a gateway that takes fewer names per op (limits.max_symbols_per_op) gets ops of at most that many", async () => {
  const syms = ["A", "B", "C", "D", "E", "F", "G"];
  const c = fakeClient({ symbols: syms, ack: false });
  await tick();
  const ws = FakeWS.all[0];
  ws.welcome({ limits: { max_symbols: 500, max_msgs_per_sec: 1000, max_message_bytes: 16384, max_symbols_per_op: 3 } });
  await waitOps(ws, syms.length);
  const subs = ws.ops("subscribe");
  assert.ok(subs.every((op) => op.symbols.length <= 3), JSON.stringify(subs));
  assert.deepEqual(subs.flatMap((op) => op.symbols).sort(), syms);
  c.close();
});

/** Waits (bounded) until the subscribe ops sent carry `n` names in all. @param {FakeWS} ws @param {number} n */
async function waitOps(ws, n) {
  for (let i = 0; i < 200 && ws.ops("subscribe").flatMap((op) => op.symbols).length < n; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
}

test("seq: a quote not above the last applied is skipped and counted; jumps count as conflated", async () => {
  const c = fakeClient({ symbols: ["A"], ack: false });
  await tick();
  const ws = FakeWS.all[0];
  ws.welcome();
  ws.frame([quote("A", 10, { snapshot: true }), quote("A", 14), quote("A", 14), quote("A", 12), quote("A", 15)]);
  const e = c.get("A");
  assert.equal(e.seq, 15);
  assert.equal(e.updates, 3);
  assert.equal(e.conflated, 3, "10 -> 14 skipped 3, 14 -> 15 none");
  assert.equal(e.skipped, 2);
  assert.equal(c.stats.regressed, 1);
  assert.equal(e.bid, "1.10");
  c.close();
});

test("bad frames are reported and ignored; the client keeps working", async () => {
  const c = fakeClient({ symbols: ["A"], ack: false });
  const errors = /** @type {any[]} */ ([]);
  c.on("error", (/** @type {any} */ e) => errors.push(e.code));
  await tick();
  const ws = FakeWS.all[0];
  ws.welcome();
  ws.rawFrame("[{not json");
  ws.rawFrame(new ArrayBuffer(4));
  ws.frame([{ type: "from_the_future" }, quote("A", 1)]);
  ws.frame([{ type: "error", code: "unknown_symbol", message: "no such symbol: A", symbol: "ZZ" }]);
  assert.deepEqual(errors, ["bad_frame", "bad_frame", "unknown_symbol"]);
  assert.equal(c.get("A").seq, 1);
  assert.equal(c.state, "open");
  c.close();
});

test("a listener that throws is reported as an error event; the others still run", async () => {
  const c = fakeClient({ symbols: ["A"], ack: false });
  const errors = /** @type {any[]} */ ([]);
  c.on("error", (/** @type {any} */ e) => errors.push(e));
  let second = 0;
  c.on("quote", () => {
    throw new Error("boom");
  });
  c.on("quote", () => second++);
  await tick();
  const ws = FakeWS.all[0];
  ws.welcome();
  ws.frame([quote("A", 1)]);
  assert.equal(second, 1);
  assert.equal(errors[0].code, "listener_error");
  assert.match(errors[0].message, /boom/);
  c.close();
});

test("close codes: 1013, 4008, 1001, 1006 and a flooding 1008 are retried; backoff is full jitter, capped, reset on open", async () => {
  const c = fakeClient({ symbols: ["A"], backoff: { minMs: 1, maxMs: 4 }, random: () => 0.999 });
  /** @type {number[]} */
  const delays = [];
  c.on("reconnect", (/** @type {any} */ e) => delays.push(e.delayMs));
  await tick();
  const closes = [
    [1013, "server full, try again later"],
    [4008, "slow consumer: data not read"],
    [1001, "server shutting down"],
    [1006, ""],
    [1008, "kept flooding after rate_limited"],
  ];
  for (const [code, reason] of closes) {
    const ws = FakeWS.all[FakeWS.all.length - 1];
    ws.serverClose(/** @type {number} */ (code), /** @type {string} */ (reason));
    assert.equal(c.state, "reconnecting", `after ${code}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  // min·2^attempt capped at max: 1, 2, 4, 4, 4 (times random 0.999, floored).
  assert.deepEqual(delays, [0, 1, 3, 3, 3]);
  assert.equal(FakeWS.all.length, 6);
  // A successful open resets the attempt count.
  FakeWS.all[5].welcome();
  assert.equal(c.state, "open");
  FakeWS.all[5].serverClose(1006, "");
  assert.equal(delays[delays.length - 1], 0);
  // Every new connection subscribed again.
  await new Promise((r) => setTimeout(r, 20));
  FakeWS.all[6].welcome();
  assert.deepEqual(FakeWS.all[6].ops("subscribe")[0].symbols, ["A"]);
  c.close();
  assert.equal(c.state, "closed");
});

test("close() stops retries; a token refused on 1008 is fatal", async () => {
  const c = fakeClient({ symbols: ["A"], backoff: { minMs: 1, maxMs: 2 }, token: "t" });
  const states = /** @type {string[]} */ ([]);
  c.on("state", (/** @type {any} */ e) => states.push(e.state));
  await tick();
  const ws = FakeWS.all[0];
  ws.welcome({ auth_required: true });
  assert.deepEqual(ws.sent[0], { op: "auth", id: ws.sent[0].id, token: "t" });
  assert.equal(c.state, "connecting", "open only once authenticated");
  ws.frame([{ type: "error", id: ws.sent[0].id, code: "unauthorized", message: "expired token" }]);
  ws.serverClose(1008, "expired token");
  assert.deepEqual(states, ["closed"]);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(FakeWS.all.length, 1, "no new attempt");
});

test("browsers: the online event retries at once instead of waiting for the backoff", async () => {
  const target = new EventTarget();
  const g = /** @type {any} */ (globalThis);
  const saved = { add: g.addEventListener, remove: g.removeEventListener, nav: Object.getOwnPropertyDescriptor(g, "navigator") };
  g.addEventListener = target.addEventListener.bind(target);
  g.removeEventListener = target.removeEventListener.bind(target);
  Object.defineProperty(g, "navigator", { value: { onLine: false }, configurable: true, writable: true });
  try {
    const c = fakeClient({ symbols: ["A"], backoff: { minMs: 60000, maxMs: 60000 }, random: () => 0.99 });
    await tick();
    FakeWS.all[0].serverClose(1006, "");
    assert.equal(c.state, "reconnecting");
    assert.equal(FakeWS.all.length, 1);
    target.dispatchEvent(new Event("online"));
    await tick();
    assert.equal(FakeWS.all.length, 2, "a new attempt at once");
    c.close();
    target.dispatchEvent(new Event("online"));
    await tick();
    assert.equal(FakeWS.all.length, 2, "closed: the listener is gone");
  } finally {
    g.addEventListener = saved.add;
    g.removeEventListener = saved.remove;
    if (saved.nav) Object.defineProperty(g, "navigator", saved.nav);
    else delete g.navigator;
  }
});

test("subscribe / unsubscribe coalesce; too_many_symbols drops what the refused op asked for", async () => {
  const c = fakeClient({ ack: false });
  await tick();
  const ws = FakeWS.all[0];
  ws.welcome();
  c.subscribe(["A", "B"]);
  c.unsubscribe("B");
  c.subscribe("C");
  await tick();
  const subs = ws.ops("subscribe");
  assert.deepEqual(subs.map((s) => s.symbols), [["A", "C"]]);
  assert.deepEqual(ws.ops("unsubscribe").map((s) => s.symbols), [["B"]]);
  ws.frame([{ type: "error", id: subs[0].id, code: "too_many_symbols", message: "too many" }]);
  assert.equal(c.get("A"), undefined);
  assert.deepEqual([...c.subscriptions.keys()], []);
  c.close();
});
