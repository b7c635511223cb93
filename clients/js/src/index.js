// tickergate-client: a WebSocket client for the tickergate market-data
// gateway, wire protocol v1 (docs/PROTOCOL.md in the gateway's repository).
//
// One ES module, no dependencies, no build step: it runs as it is in
// browsers (<script type="module">, the gateway serves this file at
// /assets/tickergate-client.js) and in Node >= 20 (global WebSocket: Node 22+,
// or Node 20/21 with --experimental-websocket; or pass `WebSocket`).
//
// What it does, in short (README.md has the details):
// - connects, authenticates (the `auth` op by default, or ?token=),
//   subscribes, and keeps a store of the latest value per symbol, prices
//   and sizes kept as the exact decimal strings the gateway sends;
// - never applies a quote whose seq is not above the last one applied for
//   its symbol, across reconnects too, and counts what seq jumps say was
//   conflated;
// - reconnects with full-jitter exponential backoff and subscribes again;
//   stops for good on a refused token (close 1008);
// - detects dead connections (no frame for heartbeatTimeoutFactor x
//   heartbeat_ms);
// - paces delivery by acknowledging frames once the application has
//   handled them (ack mode, the protocol's `flow`/`ack` ops), so a busy
//   page gets the newest values instead of a backlog.

/** Wire protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;

/** Close codes of protocol v1 (docs/PROTOCOL.md, "Close codes"). */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  ABNORMAL: 1006,
  INVALID_DATA: 1007,
  POLICY: 1008,
  TOO_BIG: 1009,
  TRY_AGAIN_LATER: 1013,
  SLOW_CONSUMER: 4008,
});

/** Close reasons (with code 1008) that mean the token itself was refused. */
const TOKEN_REFUSED_REASONS = ["invalid token", "expired token", "token not yet valid"];

const DEFAULTS = Object.freeze({
  backoff: { minMs: 500, maxMs: 20000 },
  heartbeatTimeoutFactor: 2,
  heartbeatMs: 5000, // until the welcome says otherwise
  connectTimeoutMs: 10000, // socket creation to welcome
  ackWindow: 1,
});

// Internal bounds: every buffer the client keeps is bounded.
const MAX_SYMBOLS_PER_OP = 100; // ~3.4 KB per op, far below max_message_bytes
const MAX_INBOX_FRAMES = 1024; // frames waiting for async handlers (ack mode)
const MAX_TRACKED_OPS = 256; // ops awaiting a reply, per connection
const MAX_BACKOFF_EXPONENT = 30;
const ERROR_CLOSE_GRACE_MS = 250; // wait for the close event after an error

/** @param {unknown} x */
const isThenable = (x) =>
  x !== null && (typeof x === "object" || typeof x === "function") && typeof (/** @type {any} */ (x).then) === "function";

const monotonic = () =>
  globalThis.performance && typeof globalThis.performance.now === "function"
    ? globalThis.performance.now()
    : Date.now();

/**
 * A tiny event emitter: `on(event, fn)` (returns a function that removes
 * the listener), `once(event, fn)`, `off(event, fn)`. Listeners get one
 * argument, a plain object describing the event. A listener that throws
 * does not stop the others nor the client: the exception is reported as
 * an `error` event (code `listener_error`).
 */
class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
  }

  /**
   * @param {string} event
   * @param {Function} fn
   * @returns {() => void} removes the listener
   */
  on(event, fn) {
    if (typeof fn !== "function") throw new TypeError("listener must be a function");
    let set = this._listeners.get(event);
    if (!set) this._listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => this.off(event, fn);
  }

  /** @param {string} event @param {Function} fn */
  once(event, fn) {
    const wrapper = (/** @type {any} */ detail) => {
      this.off(event, wrapper);
      return fn(detail);
    };
    wrapper.listener = fn; // so that off(event, fn) removes it too
    return this.on(event, wrapper);
  }

  /** @param {string} event @param {Function} fn */
  off(event, fn) {
    const set = this._listeners.get(event);
    if (set) {
      if (!set.delete(fn)) {
        for (const w of set) if (/** @type {any} */ (w).listener === fn) set.delete(w);
      }
      if (set.size === 0) this._listeners.delete(event);
    }
  }

  /** @param {string} event */
  listenerCount(event) {
    return this._listeners.get(event)?.size ?? 0;
  }

  /**
   * Calls the listeners of `event`. Promises they return are pushed to
   * `waits` when given (the caller waits for them), otherwise only their
   * rejection is reported.
   * @param {string} event
   * @param {any} detail
   * @param {Promise<unknown>[]} [waits]
   */
  _emit(event, detail, waits) {
    const set = this._listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      let r;
      try {
        r = fn(detail);
      } catch (e) {
        this._listenerFailed(event, e);
        continue;
      }
      if (isThenable(r)) {
        const p = Promise.resolve(r);
        if (waits) waits.push(p);
        else p.catch((e) => this._listenerFailed(event, e));
      }
    }
  }

  /** @param {string} event @param {unknown} e */
  _listenerFailed(event, e) {
    if (event === "error" || this.listenerCount("error") === 0) {
      // Nowhere else to report it; never rethrow into the socket's callback.
      globalThis.console?.error?.(`tickergate-client: a "${event}" listener threw`, e);
      return;
    }
    this._emit("error", {
      code: "listener_error",
      message: `a "${event}" listener threw: ${e instanceof Error ? e.message : String(e)}`,
      error: e,
      event,
      fatal: false,
    });
  }
}

/**
 * The client's view of one symbol: its latest applied quote and counters.
 * Entries are updated in place, so a reference stays current.
 */
export class SymbolState {
  /**
   * @param {string} symbol
   * @param {() => number} now
   */
  constructor(symbol, now) {
    /** @type {string} */
    this.symbol = symbol;
    /** seq of the last applied quote; 0: none applied yet. */
    this.seq = 0;
    /** @type {string|undefined} */ this.bid = undefined;
    /** @type {string|undefined} */ this.bid_size = undefined;
    /** @type {string|undefined} */ this.ask = undefined;
    /** @type {string|undefined} */ this.ask_size = undefined;
    /** @type {string|undefined} */ this.last = undefined;
    /** @type {string|undefined} */ this.last_size = undefined;
    /** Feed timestamp, ns since the epoch (a Number: exact to ~0.25 µs). @type {number|undefined} */
    this.ts = undefined;
    /** Gateway timestamp, ns since the epoch (a Number: exact to ~0.25 µs). @type {number|undefined} */
    this.gw_ts = undefined;
    /** The last applied quote message, as received. @type {Record<string, any>|null} */
    this.quote = null;
    /** Whether the gateway says the symbol's feed is silent. */
    this.stale = false;
    /** Updates the seq jumps say were coalesced: sum of (seq - lastSeq - 1). */
    this.conflated = 0;
    /** Quotes received but not applied (seq <= the last applied). */
    this.skipped = 0;
    /** Quotes applied. */
    this.updates = 0;
    /** Client clock (ms) when the last quote was applied. @type {number|undefined} */
    this.receivedAt = undefined;
    /** seq of the last trade passed on (with `trades: true`); 0: none yet. */
    this.tradeSeq = 0;
    /** Trades the gateway dropped for this client (it fell behind): the sum of `trades_dropped` counts. */
    this.tradesDropped = 0;
    Object.defineProperty(this, "_now", { value: now, enumerable: false });
  }

  /**
   * Milliseconds since the gateway stamped the latest value (now - gw_ts),
   * by the client's clock (`now` option); Infinity before any value. On
   * another machine this includes the clock offset between the two.
   * @param {number} [now]
   */
  age(now) {
    if (this.gw_ts === undefined) return Infinity;
    const t = now === undefined ? /** @type {any} */ (this)._now() : now;
    return t - this.gw_ts / 1e6;
  }

  /** Same as `age()`. */
  get ageMs() {
    return this.age();
  }
}

/**
 * @param {string|URL} url
 * @returns {URL}
 */
function gatewayUrl(url) {
  let u;
  try {
    const base = globalThis.location?.href;
    u = base ? new URL(String(url), base) : new URL(String(url));
  } catch {
    throw new TypeError(`tickergate-client: invalid gateway URL: ${String(url)}`);
  }
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  if (u.protocol !== "ws:" && u.protocol !== "wss:") {
    throw new TypeError(`tickergate-client: the URL must be ws://, wss://, http:// or https://: ${u.href}`);
  }
  if (u.pathname === "/" || u.pathname === "") u.pathname = "/v1/ws";
  return u;
}

/**
 * @param {unknown} ack
 * @returns {number} the window, 0 for off
 */
function ackWindow(ack) {
  if (ack === undefined || ack === true) return DEFAULTS.ackWindow;
  if (ack === false || ack === null || ack === 0) return 0;
  const w = typeof ack === "number" ? ack : /** @type {any} */ (ack).window ?? DEFAULTS.ackWindow;
  if (!Number.isInteger(w) || w < 0 || w > 64) {
    throw new RangeError("tickergate-client: ack window must be an integer from 0 to 64");
  }
  return w;
}

/** @param {string|string[]} symbols */
function symbolList(symbols) {
  const list = typeof symbols === "string" ? [symbols] : Array.from(symbols ?? []);
  for (const s of list) {
    if (typeof s !== "string" || s.length === 0) {
      throw new TypeError("tickergate-client: symbols must be non-empty strings");
    }
  }
  return list;
}

/** Whether `s` is a pattern (`BTC-*`, `*`): it stands for the symbols it matches. @param {string} s */
function isPattern(s) {
  return s.endsWith("*");
}

/** Whether pattern `p` matches symbol `s` (the gateway's rule: a prefix before `*`). @param {string} p @param {string} s */
function patternMatches(p, s) {
  return isPattern(p) && s.startsWith(p.slice(0, -1));
}

/** @param {number|undefined} hz */
function checkHz(hz) {
  if (hz !== undefined && hz !== null && !(typeof hz === "number" && Number.isFinite(hz) && hz > 0)) {
    throw new RangeError("tickergate-client: maxHz must be a positive number");
  }
  return hz ?? undefined;
}

/**
 * One WebSocket connection's state. Everything here dies with the socket;
 * what must survive a reconnect (subscriptions, store, seqs) lives on the
 * client.
 */
class Connection {
  /** @param {any} ws @param {number} id */
  constructor(ws, id) {
    this.ws = ws;
    this.id = id;
    this.openedAt = monotonic();
    this.lastFrameAt = this.openedAt;
    /** @type {number|null} heartbeat_ms from the welcome */
    this.heartbeatMs = null;
    /** @type {Record<string, any>} */
    this.limits = {};
    this.welcomed = false;
    /** Ops may go (welcomed, and the token sent if one was needed). */
    this.ready = false;
    /** The session is open: welcomed and authenticated. */
    this.open = false;
    /** The gateway refused the token: the reason, or null. @type {string|null} */
    this.tokenRefused = null;
    /** @type {ReturnType<typeof setInterval>|null} */
    this.watchdog = null;
    /** @type {ReturnType<typeof setTimeout>|null} */
    this.pacerTimer = null;
    /** @type {ReturnType<typeof setTimeout>|null} */
    this.resyncTimer = null;
    // Op pacing (token bucket), set from limits.max_msgs_per_sec.
    this.rate = 20;
    this.burst = 10;
    this.tokens = this.burst;
    this.refillAt = monotonic();
    this.nextId = 1;
    /** Ops awaiting their reply. @type {Map<number, {op: string, symbols: string[]}>} */
    this.ops = new Map();
    /** Symbols the server confirmed (subscribed) on this connection. @type {Set<string>} */
    this.confirmed = new Set();
    // Ack mode.
    /** @type {number|null} */
    this.flowId = null;
    this.flowRefused = false;
    this.window = 0;
    /** Counting frames: the flow reply's frame has been received. */
    this.counting = false;
    /** Counted frames received / handled / acknowledged. */
    this.received = 0;
    this.processed = 0;
    this.ackSent = 0;
    /** Frames waiting for the application's async handlers. @type {{msgs: any[], counted: boolean}[]} */
    this.inbox = [];
    this.busy = false;
    this.dead = false;
  }
}

/**
 * A tickergate client. Create it with `connect(url, opts)`; it connects at
 * once and reconnects by itself until `close()` or a refused token.
 */
export class TickergateClient extends Emitter {
  /**
   * @param {string|URL} url
   * @param {import('./index.js').ConnectOptions} [opts]
   */
  constructor(url, opts = {}) {
    super();
    this._url = gatewayUrl(url);
    const WS = opts.WebSocket ?? globalThis.WebSocket;
    if (typeof WS !== "function") {
      throw new TypeError(
        "tickergate-client: no WebSocket implementation: pass opts.WebSocket, or run Node 20/21 with --experimental-websocket",
      );
    }
    this._WS = WS;
    this._token = opts.token;
    this._tokenIn = opts.tokenIn ?? "op";
    if (this._tokenIn !== "op" && this._tokenIn !== "query") {
      throw new TypeError('tickergate-client: tokenIn must be "op" or "query"');
    }
    this._maxHz = checkHz(opts.maxHz);
    this._window = ackWindow(opts.ack);
    const b = opts.backoff ?? {};
    this._backoffMin = Math.max(1, b.minMs ?? DEFAULTS.backoff.minMs);
    this._backoffMax = Math.max(this._backoffMin, b.maxMs ?? DEFAULTS.backoff.maxMs);
    this._hbFactor = opts.heartbeatTimeoutFactor ?? DEFAULTS.heartbeatTimeoutFactor;
    if (!(this._hbFactor > 1)) throw new RangeError("tickergate-client: heartbeatTimeoutFactor must be > 1");
    this._connectTimeoutMs = opts.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs;
    this._now = opts.now ?? Date.now;
    this._random = opts.random ?? Math.random;

    /** Latest value per subscribed symbol. @type {Map<string, SymbolState>} */
    this.store = new Map();
    /** Every symbol ever subscribed (keeps each one's last seq). @type {Map<string, SymbolState>} */
    this._entries = new Map();
    /** What the application asked for: symbol -> maxHz. @type {Map<string, number|undefined>} */
    this._desired = new Map();
    /** Subscribes to send: symbol -> {hz, snapshot}. @type {Map<string, {hz: number|undefined, snapshot: boolean}>} */
    this._pendingSub = new Map();
    /** Symbols held because a pattern asked for (`BTC-*`) matched them. @type {Set<string>} */
    this._matched = new Set();
    /** Symbols whose trades were asked for (`trades: true`). @type {Set<string>} */
    this._trades = new Set();
    /** Unsubscribes to send. @type {Set<string>} */
    this._pendingUnsub = new Set();
    /** Symbols whose next applied quote starts a new run (its seq jump is not conflation). @type {Set<string>} */
    this._noJump = new Set();
    this._flushQueued = false;

    /** @type {'connecting'|'open'|'reconnecting'|'closed'} */
    this.state = "connecting";
    this._closed = false;
    /** @type {Connection|null} */
    this._conn = null;
    this._connSeq = 0;
    this._attempt = 0;
    this._everOpen = false;
    /** @type {ReturnType<typeof setTimeout>|null} */
    this._retryTimer = null;
    this._awaitingToken = false;
    /** @type {string|undefined} the token of the current attempt */
    this._tokenNow = undefined;
    /** Session id from the latest welcome. @type {string|null} */
    this.session = null;
    /** The gateway's seq numbering (`welcome.epoch`), once known. */
    this.epoch = null;

    /** Counters, for monitoring and tests. */
    this.stats = {
      /** Frames received (all connections), and those carrying quotes or status. */
      frames: 0,
      dataFrames: 0,
      /** Messages received. */
      messages: 0,
      /** Quote messages received / applied / not applied (seq not above the last). */
      quotes: 0,
      applied: 0,
      skipped: 0,
      /** Quotes whose seq was below the last applied (the gateway's seq restarted). */
      regressed: 0,
      /** Quotes (and trades) for symbols no longer subscribed (in flight when unsubscribed). */
      ignored: 0,
      /** Trade messages passed on (`trade` events). */
      trades: 0,
      /** Sum of every entry's conflated count. */
      conflated: 0,
      /** Ack mode: frames acknowledged on the current connection (the last `n` sent). */
      acked: 0,
      /** Ack mode: the most counted frames seen unacknowledged when a data frame arrived (never above the window). */
      maxUnackedData: 0,
      /** Sessions opened / connections given up for silence. */
      opens: 0,
      deadConnections: 0,
    };

    // Browsers: retry at once when the network comes back.
    this._onOnline = () => {
      if (this._retryTimer !== null && !this._closed) {
        clearTimeout(this._retryTimer);
        this._retryTimer = null;
        this._connect();
      }
    };
    this._onlineHooked = false;
    if (typeof globalThis.addEventListener === "function" && typeof globalThis.navigator?.onLine === "boolean") {
      globalThis.addEventListener("online", this._onOnline);
      this._onlineHooked = true;
    }

    if (opts.symbols) this.subscribe(opts.symbols);
    // Start after the caller could attach listeners.
    queueMicrotask(() => this._connect());
  }

  // ------------------------------------------------------------------
  // Public API
  // ------------------------------------------------------------------

  /**
   * Subscribes to `symbols` (adds to what is held). `maxHz` caps updates per
   * second per symbol (default: the `maxHz` option). Calling it again for a
   * held symbol changes its maxHz. Sent at once when connected, otherwise
   * when the session opens; every held symbol is subscribed again after a
   * reconnect. With `trades: true` every trade of the symbols comes too, in
   * order, as `trade` events (a gateway that has no trades ignores it);
   * subscribing again without it turns them off.
   * @param {string|string[]} symbols
   * @param {{maxHz?: number, snapshot?: boolean, trades?: boolean}} [opts]
   */
  subscribe(symbols, opts = {}) {
    const list = symbolList(symbols);
    const hz = opts.maxHz === undefined ? this._maxHz : checkHz(opts.maxHz);
    for (const s of list) {
      const held = this._desired.has(s);
      this._desired.set(s, hz);
      if (opts.trades) this._trades.add(s);
      else this._trades.delete(s);
      if (isPattern(s)) {
        // Its matches come in the gateway's replies (and later, as the
        // gateway adds symbols): entries are made for them then.
        this._pendingUnsub.delete(s);
        this._pendingSub.set(s, this._want(s, opts.snapshot ?? true));
        continue;
      }
      let e = this._entries.get(s);
      if (!e) this._entries.set(s, (e = new SymbolState(s, this._now)));
      if (!held) this._noJump.add(s);
      this.store.set(s, e);
      this._pendingUnsub.delete(s);
      // A held symbol whose server side is confirmed only changes maxHz: no
      // snapshot unless asked for.
      const confirmed = held && !!this._conn?.confirmed.has(s);
      this._pendingSub.set(s, this._want(s, opts.snapshot ?? !confirmed));
    }
    this._scheduleFlush();
  }

  /**
   * Unsubscribes from `symbols`: their entries leave `store` (the client
   * still remembers each one's last seq) and quotes still in flight for
   * them are ignored.
   * @param {string|string[]} symbols
   */
  unsubscribe(symbols) {
    for (const s of symbolList(symbols)) {
      this._desired.delete(s);
      this._trades.delete(s);
      this.store.delete(s);
      this._noJump.delete(s);
      this._pendingSub.delete(s);
      this._pendingUnsub.add(s);
      if (isPattern(s)) {
        // The gateway drops what the pattern holds; so does the store,
        // except what is still asked for by name or by another pattern.
        for (const m of [...this._matched]) {
          if (this._desired.has(m) || [...this._desired.keys()].some((p) => patternMatches(p, m))) continue;
          this._matched.delete(m);
          this.store.delete(m);
          this._noJump.delete(m);
        }
      }
    }
    this._scheduleFlush();
  }

  /**
   * The latest state of a subscribed symbol, or undefined.
   * @param {string} symbol
   */
  get(symbol) {
    return this.store.get(symbol);
  }

  /** The symbols subscribed (asked for), with their maxHz. */
  get subscriptions() {
    return new Map(this._desired);
  }

  /** Whether ack mode is on for the current connection (the gateway answered `flow`). */
  get acking() {
    return !!this._conn?.counting;
  }

  /**
   * Forgets the last applied seq of `symbols` (all when omitted) so that
   * the next quote is applied whatever its seq, and asks for fresh
   * snapshots. For an application that knows the gateway restarted (its
   * seqs start again from 1; see the README, "Sequence numbers").
   * @param {string|string[]} [symbols]
   */
  resetSeq(symbols) {
    const list = symbols === undefined ? [...this._desired.keys()] : symbolList(symbols);
    for (const s of list) {
      const e = this._entries.get(s);
      if (e) {
        e.seq = 0;
        this._noJump.add(s);
      }
      if (this._desired.has(s)) this._pendingSub.set(s, this._want(s, true));
    }
    this._scheduleFlush();
  }

  /**
   * Closes the connection for good (close code 1000); no reconnect.
   * Subscriptions and the store stay readable.
   */
  close() {
    if (this._closed) return;
    this._shutdown();
    this._setState("closed", { code: CloseCode.NORMAL, reason: "closed by the client" });
  }

  // ------------------------------------------------------------------
  // Connection lifecycle
  // ------------------------------------------------------------------

  /** @param {'connecting'|'open'|'reconnecting'|'closed'} state @param {Record<string, any>} [info] */
  _setState(state, info = {}) {
    if (this.state === state) return;
    const prev = this.state;
    this.state = state;
    this._emit("state", { state, prev, ...info });
  }

  _shutdown() {
    this._closed = true;
    if (this._retryTimer !== null) clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (this._onlineHooked) {
      globalThis.removeEventListener?.("online", this._onOnline);
      this._onlineHooked = false;
    }
    if (this._conn) this._drop(this._conn, CloseCode.NORMAL, "client closing");
  }

  /** Starts a connection attempt (never rejects: failures are retried). */
  _connect() {
    this._connectAsync().catch((e) => {
      this._emit("error", {
        code: "internal",
        message: `connection attempt failed: ${e instanceof Error ? e.message : String(e)}`,
        error: e,
        fatal: false,
      });
      if (this._conn) this._drop(this._conn, 4000, "client error");
      this._retry({ reason: "client error" });
    });
  }

  async _connectAsync() {
    if (this._closed || this._conn || this._awaitingToken) return;
    this._retryTimer = null;
    let token = this._token;
    if (typeof token === "function") {
      this._awaitingToken = true;
      try {
        token = await token();
      } catch (e) {
        this._awaitingToken = false;
        this._emit("error", {
          code: "token_provider",
          message: `the token function failed: ${e instanceof Error ? e.message : String(e)}`,
          error: e,
          fatal: false,
        });
        this._retry({ reason: "token function failed" });
        return;
      }
      this._awaitingToken = false;
      if (this._closed || this._conn) return;
    }
    this._tokenNow = typeof token === "string" && token !== "" ? token : undefined;
    const url = new URL(this._url.href);
    if (this._tokenNow !== undefined && this._tokenIn === "query") url.searchParams.set("token", this._tokenNow);
    let ws;
    try {
      ws = new this._WS(url.href);
    } catch (e) {
      this._emit("error", {
        code: "connect_failed",
        message: `cannot create the WebSocket: ${e instanceof Error ? e.message : String(e)}`,
        error: e,
        fatal: false,
      });
      this._retry({ reason: "connect failed" });
      return;
    }
    const conn = new Connection(ws, ++this._connSeq);
    this._conn = conn;
    try {
      ws.binaryType = "arraybuffer";
    } catch {
      /* not every implementation has it */
    }
    ws.onmessage = (/** @type {any} */ ev) => {
      if (conn === this._conn) this._onFrame(conn, ev.data);
    };
    ws.onclose = (/** @type {any} */ ev) => {
      if (conn === this._conn) this._onClose(conn, ev.code ?? CloseCode.ABNORMAL, ev.reason ?? "");
    };
    // An error is followed by a close event, which decides what happens;
    // but some implementations (Node 20's undici, on a refused connection)
    // fire only the error and stay CONNECTING: then it counts as a close.
    ws.onerror = () => {
      setTimeout(() => {
        if (conn === this._conn && !conn.dead) this._onClose(conn, CloseCode.ABNORMAL, "connection error");
      }, ERROR_CLOSE_GRACE_MS);
    };
    this._startWatchdog(conn);
  }

  /** @param {Connection} conn */
  _startWatchdog(conn) {
    if (conn.watchdog !== null) clearInterval(conn.watchdog);
    const limit = conn.heartbeatMs === null ? this._connectTimeoutMs : this._hbFactor * conn.heartbeatMs;
    const tick = Math.min(1000, Math.max(25, limit / 4));
    let lastTick = monotonic();
    let skipped = false;
    conn.watchdog = setInterval(() => {
      if (conn !== this._conn) return;
      const now = monotonic();
      const late = now - lastTick > 2 * tick;
      lastTick = now;
      // A late tick means this thread was busy (a long synchronous
      // handler, a suspended tab): frames may be waiting behind this
      // timer, so judge at the next tick, after they are read. Only once
      // in a row: a throttled background tab's ticks are all late.
      if (late && !skipped) {
        skipped = true;
        return;
      }
      skipped = false;
      const silent = now - (conn.welcomed ? conn.lastFrameAt : conn.openedAt);
      if (silent > limit) {
        this.stats.deadConnections++;
        const reason = conn.welcomed
          ? `no frame for ${Math.round(silent)} ms (heartbeat_ms ${conn.heartbeatMs})`
          : `no welcome within ${this._connectTimeoutMs} ms`;
        this._drop(conn, 4000, "heartbeat timeout");
        this._retry({ reason });
      }
    }, tick);
  }

  /**
   * Forgets a connection: detaches its handlers, closes its socket, stops
   * its timers. Its close event is no longer listened to.
   * @param {Connection} conn @param {number} code @param {string} reason
   */
  _drop(conn, code, reason) {
    conn.dead = true;
    if (conn.watchdog !== null) clearInterval(conn.watchdog);
    if (conn.pacerTimer !== null) clearTimeout(conn.pacerTimer);
    if (conn.resyncTimer !== null) clearTimeout(conn.resyncTimer);
    conn.watchdog = conn.pacerTimer = conn.resyncTimer = null;
    conn.inbox.length = 0;
    const ws = conn.ws;
    ws.onmessage = ws.onclose = null;
    ws.onerror = () => {};
    try {
      ws.close(code, reason);
    } catch {
      try {
        ws.close();
      } catch {
        /* already closed */
      }
    }
    if (this._conn === conn) this._conn = null;
  }

  /**
   * The socket closed. A refused token stops the client; anything else is
   * retried with backoff.
   * @param {Connection} conn @param {number} code @param {string} reason
   */
  _onClose(conn, code, reason) {
    this._drop(conn, CloseCode.NORMAL, "");
    if (this._closed) return;
    const tokenRefused =
      conn.tokenRefused !== null || (code === CloseCode.POLICY && TOKEN_REFUSED_REASONS.includes(reason));
    if (tokenRefused) {
      const why = reason || conn.tokenRefused || "token refused";
      this._fatal({
        code: "auth_failed",
        message: `tickergate refused the token (${why}): not reconnecting; connect again with a valid token`,
        closeCode: code,
        reason: why,
      });
      return;
    }
    this._retry({ code, reason });
  }

  /** @param {{code: string, message: string} & Record<string, any>} err */
  _fatal(err) {
    this._shutdown();
    this._setState("closed", { code: err.closeCode, reason: err.reason ?? err.message, fatal: true });
    const detail = { ...err, fatal: true };
    if (this.listenerCount("error") === 0) globalThis.console?.error?.(`tickergate-client: ${err.message}`);
    else this._emit("error", detail);
  }

  /** Schedules the next attempt: full jitter, min·2^attempt capped at max. @param {Record<string, any>} info */
  _retry(info) {
    if (this._closed) return;
    const ceiling = Math.min(this._backoffMax, this._backoffMin * 2 ** Math.min(this._attempt, MAX_BACKOFF_EXPONENT));
    const delayMs = Math.floor(this._random() * ceiling);
    this._attempt++;
    this._setState("reconnecting", info);
    this._emit("reconnect", { attempt: this._attempt, delayMs, ...info });
    if (this._retryTimer !== null) clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      this._connect();
    }, delayMs);
  }

  /** The session is usable: welcomed and authenticated. @param {Connection} conn */
  _opened(conn) {
    if (conn.open) return;
    conn.open = true;
    this._attempt = 0; // backoff starts over after a successful open
    this.stats.opens++;
    const reconnected = this._everOpen;
    this._everOpen = true;
    this._setState("open", { session: this.session, reconnected });
  }

  // ------------------------------------------------------------------
  // Inbound frames
  // ------------------------------------------------------------------

  /** @param {Connection} conn @param {unknown} data */
  _onFrame(conn, data) {
    conn.lastFrameAt = monotonic();
    this.stats.frames++;
    // Ack mode counts every frame after the flow reply's, whatever it is.
    const counted = conn.counting;
    if (counted) conn.received++;
    let msgs;
    if (typeof data !== "string") {
      msgs = [];
      this._emit("error", { code: "bad_frame", message: "binary frame from the gateway (not expected): ignored", fatal: false });
    } else {
      try {
        msgs = JSON.parse(data);
      } catch {
        msgs = [];
        this._emit("error", { code: "bad_frame", message: "a frame that is not JSON: ignored", fatal: false });
      }
      if (!Array.isArray(msgs)) msgs = msgs !== null && typeof msgs === "object" ? [msgs] : [];
    }
    let data_ = false;
    for (const m of msgs) {
      if (m === null || typeof m !== "object") continue;
      if (m.type === "quote" || m.type === "status" || m.type === "trade" || m.type === "trades_dropped") data_ = true;
      if (conn.flowId !== null && m.id === conn.flowId) {
        if (m.type === "flow" && !conn.counting && m.window > 0) {
          // Counting starts after this frame.
          conn.counting = true;
          conn.window = m.window;
        } else if (m.type === "error") {
          conn.flowRefused = true; // older gateway: carry on without acks
        }
      }
    }
    if (data_) this.stats.dataFrames++;
    if (counted && data_) {
      const unacked = conn.received - conn.ackSent;
      if (unacked > this.stats.maxUnackedData) this.stats.maxUnackedData = unacked;
    }
    const frame = { msgs, counted };
    if (conn.busy || conn.inbox.length > 0) {
      conn.inbox.push(frame);
      if (conn.inbox.length > MAX_INBOX_FRAMES) {
        this._emit("error", {
          code: "inbox_overflow",
          message: `more than ${MAX_INBOX_FRAMES} frames wait for async handlers: reconnecting`,
          fatal: false,
        });
        this._drop(conn, 4000, "client overloaded");
        this._retry({ reason: "inbox overflow" });
      }
      return;
    }
    this._process(conn, frame);
    this._pump(conn);
  }

  /** Handles queued frames while no async handler is pending. @param {Connection} conn */
  _pump(conn) {
    while (!conn.busy && conn.inbox.length > 0 && conn === this._conn) {
      this._process(conn, /** @type {any} */ (conn.inbox.shift()));
    }
  }

  /**
   * Handles one frame's messages; in ack mode waits for the promises its
   * listeners returned, then acknowledges it.
   * @param {Connection} conn @param {{msgs: any[], counted: boolean}} frame
   */
  _process(conn, frame) {
    /** @type {Promise<unknown>[]} */
    const waits = [];
    for (const m of frame.msgs) {
      if (conn !== this._conn) return;
      if (m === null || typeof m !== "object") continue;
      this.stats.messages++;
      this._handle(conn, m, waits);
    }
    if (conn !== this._conn) return;
    if (waits.length === 0) {
      this._done(conn, frame);
      return;
    }
    if (!conn.counting) {
      for (const p of waits) p.catch((e) => this._listenerFailed("async", e));
      this._done(conn, frame);
      return;
    }
    conn.busy = true;
    Promise.allSettled(waits).then((results) => {
      for (const r of results) if (r.status === "rejected") this._listenerFailed("async", r.reason);
      conn.busy = false;
      if (conn !== this._conn) return;
      this._done(conn, frame);
      this._pump(conn);
    });
  }

  /** @param {Connection} conn @param {{counted: boolean}} frame */
  _done(conn, frame) {
    if (!frame.counted) return;
    conn.processed++;
    if (conn.counting && conn.processed > conn.ackSent) {
      conn.ackSent = conn.processed;
      this.stats.acked = conn.ackSent;
      this._send(conn, { op: "ack", n: conn.ackSent });
    }
  }

  /** @param {Connection} conn @param {Record<string, any>} m @param {Promise<unknown>[]} waits */
  _handle(conn, m, waits) {
    this._emit("message", m, waits);
    switch (m.type) {
      case "quote":
        this._onQuote(m, waits);
        break;
      case "status":
        this._onStatus(m, waits);
        break;
      case "trade":
      case "trades_dropped":
        this._onTrade(m, waits);
        break;
      case "heartbeat":
      case "pong":
      case "flow":
        break;
      case "welcome":
        this._onWelcome(conn, m);
        break;
      case "authenticated":
        if (m.limits) this._setLimits(conn, m.limits);
        this._opened(conn);
        break;
      case "subscribed":
        this._onSubscribed(conn, m, waits);
        break;
      case "unsubscribed":
        if (m.id !== undefined) conn.ops.delete(m.id);
        for (const s of m.symbols ?? []) if (!this._wants(s)) conn.confirmed.delete(s);
        this._emit("unsubscribed", { id: m.id, symbols: m.symbols ?? [] }, waits);
        break;
      case "error":
        this._onServerError(conn, m, waits);
        break;
      default:
        // Unknown message types are ignored: newer gateways may add some.
        break;
    }
  }

  /** @param {Connection} conn @param {Record<string, any>} m */
  _onWelcome(conn, m) {
    conn.welcomed = true;
    conn.lastFrameAt = monotonic();
    this.session = typeof m.session === "string" ? m.session : null;
    // A new epoch: the gateway restarted and numbers every seq from 1
    // again. The seqs applied so far belong to the old numbering, so each
    // symbol starts over (its next quote, the snapshot, is applied).
    const epoch = typeof m.epoch === "string" ? m.epoch : null;
    if (epoch !== null && this.epoch !== null && epoch !== this.epoch) {
      const previous = this.epoch;
      for (const e of this._entries.values()) {
        e.seq = 0;
        e._gap = true;
      }
      this.epoch = epoch;
      this._emit("epoch", { epoch, previous });
    } else if (epoch !== null) {
      this.epoch = epoch;
    }
    if (m.protocol !== PROTOCOL_VERSION) {
      this._emit("error", {
        code: "protocol_version",
        message: `the gateway speaks protocol ${m.protocol}; this client speaks ${PROTOCOL_VERSION}`,
        fatal: false,
      });
    }
    if (Number.isFinite(m.heartbeat_ms) && m.heartbeat_ms > 0) conn.heartbeatMs = m.heartbeat_ms;
    else conn.heartbeatMs = DEFAULTS.heartbeatMs;
    this._startWatchdog(conn);
    this._setLimits(conn, m.limits ?? {});
    this._emit("welcome", { ...m });
    if (conn !== this._conn) return;
    if (m.auth_required) {
      if (this._tokenNow === undefined) {
        this._fatal({
          code: "auth_required",
          message: "tickergate requires a token and none was given (option `token`): not reconnecting",
        });
        return;
      }
      // The gateway handles ops in order: auth, flow and the subscribes can
      // go together; the `authenticated` reply opens the session.
      this._send(conn, { op: "auth", id: conn.nextId++, token: this._tokenNow });
      conn.tokens--;
    }
    conn.ready = true;
    const maxWindow = conn.limits.max_flow_window;
    if (this._window > 0 && Number.isInteger(maxWindow) && maxWindow > 0) {
      conn.flowId = conn.nextId++;
      this._send(conn, { op: "flow", id: conn.flowId, window: Math.min(this._window, maxWindow) });
      conn.tokens--;
    }
    this._resubscribeAll(conn);
    if (!m.auth_required) this._opened(conn);
  }

  /**
   * Names per op: MAX_SYMBOLS_PER_OP, or fewer when the gateway says it
   * takes fewer (`limits.max_symbols_per_op`, since 2026-12-07).
   * @param {Connection} conn
   */
  _perOp(conn) {
    const n = Number(conn.limits.max_symbols_per_op);
    return Number.isInteger(n) && n > 0 ? Math.min(MAX_SYMBOLS_PER_OP, n) : MAX_SYMBOLS_PER_OP;
  }

  /** @param {Connection} conn @param {Record<string, any>} limits */
  _setLimits(conn, limits) {
    conn.limits = { ...conn.limits, ...limits };
    const r = Number(conn.limits.max_msgs_per_sec);
    if (Number.isFinite(r) && r > 0) {
      // Stay below the gateway's rate: an op past it is refused, not served.
      conn.rate = Math.max(0.5, r * 0.9);
      conn.burst = Math.max(1, Math.min(10, Math.floor(r / 2)));
      conn.tokens = Math.min(conn.tokens, conn.burst);
    }
  }

  /**
   * What a subscribe of `s` asks for: its maxHz and trades, and whether a
   * snapshot.
   * @param {string} s @param {boolean} snapshot
   */
  _want(s, snapshot) {
    return { hz: this._desired.get(s), snapshot, trades: this._trades.has(s) };
  }

  /**
   * Whether quotes of `s` are wanted: asked for by name, or matched by a
   * pattern asked for.
   * @param {string} s
   */
  _wants(s) {
    return (this._desired.has(s) && !isPattern(s)) || this._matched.has(s);
  }

  /** Whether trades of `s` are wanted (by name, or by a pattern with trades). @param {string} s */
  _tradesOf(s) {
    if (this._trades.has(s)) return true;
    if (!this._matched.has(s)) return false;
    for (const p of this._trades) if (patternMatches(p, s)) return true;
    return false;
  }

  /** Everything asked for goes again, with its maxHz and a snapshot. @param {Connection} conn */
  _resubscribeAll(conn) {
    this._pendingUnsub.clear();
    this._pendingSub.clear();
    for (const s of this._desired.keys()) this._pendingSub.set(s, this._want(s, true));
    this._flush();
  }

  /**
   * A trade (or a drop of trades) of a symbol whose trades are asked for:
   * passed on as it came, in order. Within an epoch a trade's seq only
   * grows by one; a `trades_dropped` accounts for any gap, and
   * `entry.tradesDropped` counts them.
   * @param {Record<string, any>} m @param {Promise<unknown>[]} waits
   */
  _onTrade(m, waits) {
    const sym = m.symbol;
    const e = typeof sym === "string" && this._tradesOf(sym) ? this._entries.get(sym) : undefined;
    if (!e) {
      this.stats.ignored++;
      return;
    }
    if (m.type === "trades_dropped") {
      const n = Number(m.count);
      if (Number.isFinite(n)) e.tradesDropped += n;
      this._emit("trades_dropped", { symbol: sym, count: n, entry: e }, waits);
      return;
    }
    this.stats.trades++;
    if (typeof m.seq === "number") e.tradeSeq = m.seq;
    this._emit("trade", { symbol: sym, trade: m, entry: e }, waits);
  }

  /** @param {Record<string, any>} m @param {Promise<unknown>[]} waits */
  _onQuote(m, waits) {
    this.stats.quotes++;
    const sym = m.symbol;
    if (typeof sym !== "string" || !this._wants(sym)) {
      this.stats.ignored++;
      return;
    }
    const e = /** @type {SymbolState} */ (this._entries.get(sym));
    const seq = m.seq;
    if (!(typeof seq === "number" && Number.isFinite(seq))) {
      this._emit("error", { code: "bad_message", message: `quote for ${sym} without a numeric seq: ignored`, fatal: false });
      return;
    }
    if (seq <= e.seq) {
      e.skipped++;
      this.stats.skipped++;
      if (seq < e.seq) {
        this.stats.regressed++;
        this._emit("seq_regression", { symbol: sym, seq, lastSeq: e.seq, snapshot: m.snapshot === true, entry: e }, waits);
      }
      return;
    }
    if (this._noJump.size > 0 && this._noJump.delete(sym)) {
      // First value since the subscription (or resetSeq): the jump from
      // the last seq is not conflation.
    } else if (e.seq > 0) {
      const jump = seq - e.seq - 1;
      e.conflated += jump;
      this.stats.conflated += jump;
    }
    e.seq = seq;
    e.bid = m.bid;
    e.bid_size = m.bid_size;
    e.ask = m.ask;
    e.ask_size = m.ask_size;
    e.last = m.last;
    e.last_size = m.last_size;
    e.ts = m.ts;
    e.gw_ts = m.gw_ts;
    e.quote = m;
    e.updates++;
    e.receivedAt = this._now();
    this.stats.applied++;
    this._emit("quote", { symbol: sym, quote: m, entry: e, snapshot: m.snapshot === true }, waits);
  }

  /** @param {Record<string, any>} m @param {Promise<unknown>[]} waits */
  _onStatus(m, waits) {
    const sym = m.symbol;
    if (typeof sym !== "string" || !this._wants(sym)) return;
    const e = /** @type {SymbolState} */ (this._entries.get(sym));
    e.stale = m.state === "stale";
    this._emit("status", { symbol: sym, state: m.state, stale: e.stale, ts: m.ts, entry: e, assumed: false }, waits);
  }

  /** @param {Connection} conn @param {Record<string, any>} m @param {Promise<unknown>[]} waits */
  _onSubscribed(conn, m, waits) {
    if (m.id !== undefined) conn.ops.delete(m.id);
    const symbols = Array.isArray(m.symbols) ? m.symbols : [];
    for (const s of symbols) {
      if (typeof s !== "string") continue;
      // A symbol a pattern of ours stands for (in the reply to it, or
      // added to the gateway later: `pattern` says which) is held as if
      // asked for by name, under the pattern's options.
      if (!this._desired.has(s) && [...this._desired.keys()].some((p) => patternMatches(p, s))) {
        if (!this._matched.has(s)) {
          this._matched.add(s);
          this._noJump.add(s);
        }
        let e = this._entries.get(s);
        if (!e) this._entries.set(s, (e = new SymbolState(s, this._now)));
        this.store.set(s, e);
      }
      const fresh = !conn.confirmed.has(s);
      conn.confirmed.add(s);
      const e = this._entries.get(s);
      // A new subscription starts live on the gateway, which sends `stale`
      // right after this reply if the symbol is stale: so a symbol marked
      // stale on an earlier connection is live until told otherwise.
      if (fresh && e && e.stale && this._wants(s)) {
        e.stale = false;
        this._emit("status", { symbol: s, state: "live", stale: false, ts: undefined, entry: e, assumed: true }, waits);
      }
    }
    this._emit("subscribed", { id: m.id, symbols, maxHz: m.max_hz, pattern: m.pattern }, waits);
  }

  /** @param {Connection} conn @param {Record<string, any>} m @param {Promise<unknown>[]} waits */
  _onServerError(conn, m, waits) {
    const code = String(m.code ?? "unknown");
    const message = String(m.message ?? "");
    // A gateway without client-paced delivery refuses `flow`: carry on
    // without acks (`acking` stays false), nothing to report.
    if (conn.flowRefused && m.id !== undefined && m.id === conn.flowId) return;
    if (code === "unauthorized" && TOKEN_REFUSED_REASONS.includes(message)) {
      // The close (1008) follows; it reports the refusal once, as fatal.
      conn.tokenRefused = message;
      return;
    }
    const op = m.id !== undefined ? conn.ops.get(m.id) : undefined;
    /** @type {string[]|undefined} */
    let dropped;
    if ((code === "unknown_symbol" || code === "forbidden_symbol") && typeof m.symbol === "string") {
      // The gateway will not serve it: stop asking for it.
      if (!conn.confirmed.has(m.symbol) && this._desired.has(m.symbol)) {
        this._forget(m.symbol);
        dropped = [m.symbol];
      }
    } else if (code === "too_many_symbols" && op && op.op === "subscribe") {
      // The op was refused whole: what it asked for (and was not already
      // held) is not subscribed.
      dropped = op.symbols.filter((s) => !conn.confirmed.has(s) && this._desired.has(s));
      for (const s of dropped) this._forget(s);
      conn.ops.delete(/** @type {number} */ (m.id));
    } else if (code === "rate_limited") {
      // A refused op is not served (its id is echoed since 2026-12-07;
      // older gateways do not say which): slow down, then send again what
      // the gateway does not hold yet.
      conn.tokens = -conn.burst;
      this._scheduleResync(conn);
    }
    this._emit("error", { code, message, symbol: m.symbol, id: m.id, symbols: dropped, fatal: false, server: true }, waits);
  }

  /** @param {string} s */
  _forget(s) {
    this._desired.delete(s);
    this._noJump.delete(s);
    this.store.delete(s);
    this._pendingSub.delete(s);
    // Nothing to remember for a symbol that never had a value (keeps
    // `_entries` bounded by the symbols that exist).
    if (this._entries.get(s)?.seq === 0) this._entries.delete(s);
  }

  /** @param {Connection} conn */
  _scheduleResync(conn) {
    if (conn.resyncTimer !== null) return;
    conn.resyncTimer = setTimeout(() => {
      conn.resyncTimer = null;
      if (conn !== this._conn) return;
      for (const s of this._desired.keys()) {
        if (!conn.confirmed.has(s) && !this._pendingSub.has(s)) this._pendingSub.set(s, this._want(s, true));
      }
      for (const s of conn.confirmed) if (!this._wants(s)) this._pendingUnsub.add(s);
      this._flush();
    }, 1000);
  }

  // ------------------------------------------------------------------
  // Outbound ops
  // ------------------------------------------------------------------

  /** @param {Connection} conn @param {Record<string, any>} op */
  _send(conn, op) {
    const ws = conn.ws;
    if (conn.dead || ws.readyState !== 1) return false;
    try {
      ws.send(JSON.stringify(op));
      return true;
    } catch {
      return false; // closing: the close event follows
    }
  }

  _scheduleFlush() {
    if (this._flushQueued) return;
    this._flushQueued = true;
    queueMicrotask(() => {
      this._flushQueued = false;
      this._flush();
    });
  }

  /**
   * Sends pending unsubscribes, then subscribes, at most
   * MAX_SYMBOLS_PER_OP symbols per op, paced below the gateway's op rate.
   * Pending changes are kept as sets, so however often the application
   * calls subscribe, what waits is bounded by the symbols named.
   */
  _flush() {
    const conn = this._conn;
    if (!conn || !conn.ready || conn.dead) return; // the open sends everything
    if (conn.pacerTimer !== null) return; // the pacer's timer will come back
    while (this._pendingUnsub.size > 0 || this._pendingSub.size > 0) {
      const now = monotonic();
      conn.tokens = Math.min(conn.burst, conn.tokens + ((now - conn.refillAt) * conn.rate) / 1000);
      conn.refillAt = now;
      if (conn.tokens < 1) {
        const waitMs = Math.ceil(((1 - conn.tokens) * 1000) / conn.rate);
        conn.pacerTimer = setTimeout(() => {
          conn.pacerTimer = null;
          if (conn === this._conn) this._flush();
        }, waitMs);
        return;
      }
      conn.tokens -= 1;
      const id = conn.nextId++;
      /** @type {string[]} */
      const symbols = [];
      if (this._pendingUnsub.size > 0) {
        for (const s of this._pendingUnsub) {
          symbols.push(s);
          this._pendingUnsub.delete(s);
          if (symbols.length >= this._perOp(conn)) break;
        }
        this._track(conn, id, "unsubscribe", symbols);
        this._send(conn, { op: "unsubscribe", id, symbols });
        continue;
      }
      const first = /** @type {[string, {hz: number|undefined, snapshot: boolean, trades: boolean}]} */ (
        this._pendingSub.entries().next().value
      );
      const { hz, snapshot, trades } = first[1];
      for (const [s, p] of this._pendingSub) {
        if (p.hz !== hz || p.snapshot !== snapshot || p.trades !== trades) continue;
        symbols.push(s);
        this._pendingSub.delete(s);
        if (symbols.length >= this._perOp(conn)) break;
      }
      /** @type {Record<string, any>} */
      const op = { op: "subscribe", id, symbols };
      if (hz !== undefined) op.max_hz = hz;
      if (!snapshot) op.snapshot = false;
      if (trades) op.trades = true;
      this._track(conn, id, "subscribe", symbols);
      this._send(conn, op);
    }
  }

  /** @param {Connection} conn @param {number} id @param {string} op @param {string[]} symbols */
  _track(conn, id, op, symbols) {
    conn.ops.set(id, { op, symbols });
    if (conn.ops.size > MAX_TRACKED_OPS) {
      const oldest = conn.ops.keys().next().value;
      if (oldest !== undefined) conn.ops.delete(oldest);
    }
  }
}

/**
 * Connects to a tickergate gateway. Returns the client at once; it connects
 * in the background and keeps reconnecting until `close()` (or a refused
 * token).
 * @param {string|URL} url `ws://host:port/v1/ws` (http(s) URLs, relative URLs
 *   in a browser, and a bare `ws://host:port` are accepted too)
 * @param {import('./index.js').ConnectOptions} [opts]
 * @returns {TickergateClient}
 */
export function connect(url, opts) {
  return new TickergateClient(url, opts);
}

export default connect;
