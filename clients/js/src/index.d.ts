// Type declarations for tickergate-client (src/index.js).

/** Wire protocol version this client speaks. */
export declare const PROTOCOL_VERSION: 1;

/** Close codes of protocol v1. */
export declare const CloseCode: Readonly<{
  NORMAL: 1000;
  GOING_AWAY: 1001;
  PROTOCOL_ERROR: 1002;
  ABNORMAL: 1006;
  INVALID_DATA: 1007;
  POLICY: 1008;
  TOO_BIG: 1009;
  TRY_AGAIN_LATER: 1013;
  SLOW_CONSUMER: 4008;
}>;

/** The subset of the WHATWG WebSocket the client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType?: string;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface ConnectOptions {
  /**
   * API key or JWT. A string, or a function returning one (or a promise of
   * one), called before every connection attempt (e.g. to refresh a JWT).
   */
  token?: string | (() => string | undefined | Promise<string | undefined>);
  /**
   * How the token is sent: `"op"` (default: an `auth` op after the welcome,
   * which keeps it out of URLs and access logs) or `"query"` (`?token=` on
   * the upgrade URL).
   */
  tokenIn?: "op" | "query";
  /** Symbols to subscribe at once. */
  symbols?: string[];
  /** Default cap on updates per second per symbol (the `max_hz` of subscribe). */
  maxHz?: number;
  /**
   * Ack mode (client-paced delivery, the `flow` and `ack` ops). Default on
   * with a window of 1 frame. `false` (or 0) turns it off; a number or
   * `{window}` sets the window (1-64).
   */
  ack?: boolean | number | { window?: number };
  /** WebSocket implementation; default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Reconnect backoff: delay = random(0, min(maxMs, minMs * 2^attempt)). Default 500 / 20000. */
  backoff?: { minMs?: number; maxMs?: number };
  /** A connection with no frame for this many times `heartbeat_ms` is given up. Default 2. */
  heartbeatTimeoutFactor?: number;
  /** Longest wait from opening a socket to the welcome, ms. Default 10000. */
  connectTimeoutMs?: number;
  /** Clock for `age()`, ms since the epoch. Default `Date.now`. */
  now?: () => number;
  /** Random source for the backoff jitter, in [0, 1). Default `Math.random`. */
  random?: () => number;
}

export type State = "connecting" | "open" | "reconnecting" | "closed";

/** A quote message as the gateway sends it. Prices and sizes are decimal strings. */
export interface QuoteMessage {
  type: "quote";
  symbol: string;
  seq: number;
  bid?: string;
  bid_size?: string;
  ask?: string;
  ask_size?: string;
  last?: string;
  last_size?: string;
  /** Consolidated symbols only: the feed whose leg gave the bid. */
  bid_venue?: string;
  /** Consolidated symbols only: the feed whose leg gave the ask. */
  ask_venue?: string;
  /** Consolidated symbols only, when the best bid is above the best ask. */
  crossed?: true;
  /** Feed timestamp, ns since the epoch (as a Number: about 0.25 µs precision). */
  ts?: number;
  /** Gateway timestamp, ns since the epoch (as a Number). */
  gw_ts: number;
  snapshot?: true;
  [key: string]: unknown;
}

/** A trade message (with `trades: true`). Price and size are decimal strings. */
export interface TradeMessage {
  type: "trade";
  symbol: string;
  /** The symbol's trade number: 1, 2, 3, ... (a `trades_dropped` accounts for any gap). */
  seq: number;
  price: string;
  size: string;
  /** The aggressor, when the venue says. */
  side?: "buy" | "sell";
  trade_id?: number;
  /** Venue time of the trade (the gateway's when the venue gave none), ns since the epoch. */
  ts: number;
  gw_ts: number;
  [key: string]: unknown;
}

export interface TradeEvent {
  symbol: string;
  trade: TradeMessage;
  entry: SymbolState;
}

export interface TradesDroppedEvent {
  symbol: string;
  /** Trades the gateway dropped for this client because it fell behind. */
  count: number;
  entry: SymbolState;
}

/** The client's view of one symbol. Updated in place. */
export declare class SymbolState {
  readonly symbol: string;
  /** seq of the last applied quote; 0 before the first. */
  seq: number;
  bid?: string;
  bid_size?: string;
  ask?: string;
  ask_size?: string;
  last?: string;
  last_size?: string;
  ts?: number;
  gw_ts?: number;
  /** The last applied quote, as received. */
  quote: QuoteMessage | null;
  /** The gateway says the symbol's feed is silent. */
  stale: boolean;
  /** Updates the seq jumps say were coalesced: sum of (seq - lastSeq - 1). */
  conflated: number;
  /** Quotes received and not applied because their seq was not above `seq`. */
  skipped: number;
  /** Quotes applied. */
  updates: number;
  /** Client clock (ms) when the last quote was applied. */
  receivedAt?: number;
  /** seq of the last trade passed on; 0 before the first. */
  tradeSeq: number;
  /** Trades the gateway dropped for this client (sum of `trades_dropped` counts). */
  tradesDropped: number;
  /** ms since the gateway stamped the value (now - gw_ts); Infinity before any value. */
  age(now?: number): number;
  /** Same as `age()`. */
  readonly ageMs: number;
}

export interface QuoteEvent {
  symbol: string;
  quote: QuoteMessage;
  entry: SymbolState;
  snapshot: boolean;
}

export interface StatusEvent {
  symbol: string;
  state: "stale" | "live";
  stale: boolean;
  /** ns since the epoch; undefined when `assumed`. */
  ts?: number;
  entry: SymbolState;
  /**
   * true: not sent by the gateway but inferred (a symbol stale on an earlier
   * connection is live again when subscribed anew, unless the gateway says
   * `stale` right after).
   */
  assumed: boolean;
}

export interface StateEvent {
  state: State;
  prev: State;
  /** Close code of the connection that ended, when one did. */
  code?: number;
  reason?: string;
  /** `closed` because of a fatal error (refused token). */
  fatal?: boolean;
  /** `open`: the gateway's session id; whether this is a reconnect. */
  session?: string | null;
  reconnected?: boolean;
}

export interface ReconnectEvent {
  attempt: number;
  delayMs: number;
  code?: number;
  reason?: string;
}

export interface ErrorEvent {
  /**
   * A gateway error code (`unknown_symbol`, `forbidden_symbol`,
   * `too_many_symbols`, `rate_limited`, `unauthorized`, `bad_request`, ...;
   * then `server` is true), or one of the client's: `auth_failed` and
   * `auth_required` (fatal), `bad_frame`, `bad_message`, `protocol_version`,
   * `listener_error`, `inbox_overflow`, `connect_failed`, `token_provider`,
   * `internal`.
   */
  code: string;
  message: string;
  fatal: boolean;
  server?: boolean;
  symbol?: string;
  /** Symbols the client stopped asking for because of this error. */
  symbols?: string[];
  id?: number | string;
  closeCode?: number;
  reason?: string;
  error?: unknown;
  event?: string;
}

export interface SeqRegressionEvent {
  symbol: string;
  seq: number;
  lastSeq: number;
  snapshot: boolean;
  entry: SymbolState;
}

export interface SubscribedEvent {
  id?: number | string;
  symbols: string[];
  maxHz?: number;
  /** A symbol the gateway added later that this subscribed pattern matches (no `id`). */
  pattern?: string;
}

export interface UnsubscribedEvent {
  id?: number | string;
  symbols: string[];
}

export interface WelcomeMessage {
  type: "welcome";
  protocol: number;
  session: string;
  /** The gateway's seq numbering: another value means its seqs started again. */
  epoch?: string;
  heartbeat_ms: number;
  limits: Record<string, number>;
  auth_required?: boolean;
  [key: string]: unknown;
}

export interface EpochEvent {
  epoch: string;
  previous: string;
}

/** A listener may return a promise: in ack mode the frame is acknowledged after it settles. */
type Listener<T> = (event: T) => void | Promise<unknown>;

export interface EventMap {
  quote: QuoteEvent;
  /** Every trade of a symbol subscribed with `trades: true`, in order. */
  trade: TradeEvent;
  /** The gateway dropped trades for this client (it fell behind); before the next trade. */
  trades_dropped: TradesDroppedEvent;
  status: StatusEvent;
  state: StateEvent;
  error: ErrorEvent;
  reconnect: ReconnectEvent;
  seq_regression: SeqRegressionEvent;
  /** The gateway reconnected to numbers its seqs anew (it restarted): every symbol's seq starts over. */
  epoch: EpochEvent;
  subscribed: SubscribedEvent;
  unsubscribed: UnsubscribedEvent;
  welcome: WelcomeMessage;
  /** Every message received, as parsed, before the client handles it. */
  message: Record<string, unknown>;
}

export interface ClientStats {
  frames: number;
  dataFrames: number;
  messages: number;
  quotes: number;
  applied: number;
  skipped: number;
  regressed: number;
  ignored: number;
  trades: number;
  conflated: number;
  acked: number;
  maxUnackedData: number;
  opens: number;
  deadConnections: number;
}

export declare class TickergateClient {
  constructor(url: string | URL, opts?: ConnectOptions);
  /** Current state. */
  readonly state: State;
  /** Latest value per subscribed symbol. */
  readonly store: Map<string, SymbolState>;
  /** Session id from the latest welcome. */
  readonly session: string | null;
  /** `welcome.epoch` of the current (or last) connection. */
  readonly epoch: string | null;
  /** Counters. */
  readonly stats: ClientStats;
  /** Whether ack mode is on for the current connection. */
  readonly acking: boolean;
  /** The symbols asked for, with their maxHz. */
  readonly subscriptions: Map<string, number | undefined>;

  /** Names, or patterns (`BTC-*`, `*`) that stand for every symbol they match, also those added later. */
  subscribe(symbols: string | string[], opts?: { maxHz?: number; snapshot?: boolean; trades?: boolean }): void;
  unsubscribe(symbols: string | string[]): void;
  get(symbol: string): SymbolState | undefined;
  /** Forget the last applied seq (all symbols when omitted) and ask for fresh snapshots. */
  resetSeq(symbols?: string | string[]): void;
  /** Close for good (no reconnect). */
  close(): void;

  on<K extends keyof EventMap>(event: K, fn: Listener<EventMap[K]>): () => void;
  once<K extends keyof EventMap>(event: K, fn: Listener<EventMap[K]>): () => void;
  off<K extends keyof EventMap>(event: K, fn: Listener<EventMap[K]>): void;
  listenerCount(event: keyof EventMap): number;
}

/** Connects to a gateway; the client reconnects by itself until `close()`. */
export declare function connect(url: string | URL, opts?: ConnectOptions): TickergateClient;
export default connect;
