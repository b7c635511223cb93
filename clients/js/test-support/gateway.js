// Test support: runs the real tickergate binary, and small waiting helpers.
//
// Kept outside test/ on purpose: `node --test test/` runs every .js file
// under test/ as a test file.
//
// Every gateway started here is killed by its PID (child.kill) by the test
// that started it; nothing is ever killed by name.

import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The gateway binary: $TICKERGATE_BIN, or the repository's release build. */
export const BIN =
  process.env.TICKERGATE_BIN || fileURLToPath(new URL("../../../target/release/tickergate", import.meta.url));

/** Fails with a clear message when the binary is missing (never skips). */
export function requireBinary() {
  try {
    accessSync(BIN, constants.X_OK);
  } catch {
    throw new Error(
      `tickergate binary not found or not executable: ${BIN}\n` +
        "Build it (cargo build --release, in the repository root) or set TICKERGATE_BIN to its path.",
    );
  }
}

/** A free TCP port on 127.0.0.1 (bind port 0, read it, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export const sha256 = (/** @type {string} */ s) => createHash("sha256").update(s).digest("hex");
export const sleep = (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `cond` until it returns a truthy value (returned), or fails after
 * `timeout` ms with `what` in the message. Generous deadlines: they only
 * turn a hang into a failure, nothing asserts on speed.
 * @template T
 * @param {() => T} cond
 * @param {string} what
 * @param {number} [timeout]
 * @returns {Promise<T>}
 */
export async function waitFor(cond, what, timeout = 15000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for: ${what}`);
    await sleep(20);
  }
}

/**
 * A gateway process with a config file of its own.
 */
export class Gateway {
  /**
   * @param {string} toml the config without [server] listen (added here)
   * @param {number} port
   */
  constructor(toml, port) {
    this.port = port;
    this.dir = mkdtempSync(join(tmpdir(), "tickergate-js-"));
    this.config = join(this.dir, "gateway.toml");
    writeFileSync(this.config, toml.replace("@PORT@", String(port)));
    /** @type {import('node:child_process').ChildProcess|null} */
    this.child = null;
    this.output = "";
    this.url = `ws://127.0.0.1:${port}/v1/ws`;
    this.http = `http://127.0.0.1:${port}`;
  }

  /**
   * Starts a gateway on a free port. `toml` must contain
   * `listen = "127.0.0.1:@PORT@"` in its [server] table.
   * @param {string} toml
   */
  static async start(toml) {
    requireBinary();
    const gw = new Gateway(toml, await freePort());
    await gw.spawn();
    return gw;
  }

  /**
   * Replaces the config (same port) for the next spawn().
   * @param {string} toml
   */
  rewriteConfig(toml) {
    writeFileSync(this.config, toml.replace("@PORT@", String(this.port)));
  }

  /** Starts the process (again, on the same port) and waits for its address. */
  async spawn() {
    // A port just freed by a killed gateway may take a moment to bind again.
    for (let attempt = 0; ; attempt++) {
      try {
        await this._spawnOnce();
        return;
      } catch (e) {
        if (attempt >= 20 || !/in use|AddrInUse/i.test(String(/** @type {Error} */ (e).message))) throw e;
        await sleep(250);
      }
    }
  }

  _spawnOnce() {
    return new Promise((resolve, reject) => {
      const child = spawn(BIN, ["--config", this.config], {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" },
      });
      this.child = child;
      let out = "";
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        reject(new Error(`gateway did not print its address within 20 s:\n${out}`));
      }, 20000);
      const onData = (/** @type {Buffer} */ chunk) => {
        out += chunk.toString();
        if (out.length > 65536) out = out.slice(-65536);
        this.output = out;
        if (!settled && /ws:\/\/\S+\/v1\/ws/.test(out)) {
          settled = true;
          clearTimeout(timer);
          resolve(undefined);
        }
      };
      child.stdout?.on("data", onData);
      child.stderr?.on("data", onData);
      child.on("error", (e) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(e);
      });
      child.on("exit", (code, signal) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(new Error(`gateway exited (code ${code}, signal ${signal}) before it was ready:\n${out}`));
      });
    });
  }

  /**
   * Stops the process this object started (by its PID) and waits for it.
   * @param {NodeJS.Signals} [signal]
   */
  async stop(signal = "SIGKILL") {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill(signal);
    if (signal === "SIGSTOP" || signal === "SIGCONT") return;
    const t = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(t);
  }

  /** Pauses / resumes the process (a dead-silent peer without a FIN). */
  pause() {
    this.child?.kill("SIGSTOP");
  }

  resume() {
    this.child?.kill("SIGCONT");
  }

  /** Kills the process if still running and removes the config. */
  async dispose() {
    try {
      this.child?.kill("SIGCONT");
    } catch {
      /* not running */
    }
    await this.stop("SIGKILL");
    rmSync(this.dir, { recursive: true, force: true });
  }

  /**
   * Waits until every symbol has a value (REST /v1/quotes), so that a
   * subscription gets snapshots for all of them.
   * @param {string[]} symbols
   */
  async waitForValues(symbols) {
    /** @type {any} */
    let got = [];
    const deadline = Date.now() + 15000;
    for (;;) {
      const res = await fetch(`${this.http}/v1/quotes?symbols=${symbols.join(",")}`);
      got = await res.json();
      if (res.status === 200 && Array.isArray(got) && got.length === symbols.length) return got;
      if (Date.now() > deadline) throw new Error(`no value for all of ${symbols.join(",")}: ${JSON.stringify(got)}`);
      await sleep(50);
    }
  }

  /**
   * POSTs NDJSON lines to /v1/ingest (an http feed).
   * @param {string} key
   * @param {string[]} lines
   */
  async ingest(key, lines) {
    const res = await fetch(`${this.http}/v1/ingest`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/x-ndjson" },
      body: lines.join("\n") + "\n",
    });
    const body = await res.json();
    if (res.status !== 200 || body.rejected !== 0) {
      throw new Error(`ingest failed: HTTP ${res.status} ${JSON.stringify(body)}`);
    }
    return body;
  }
}

/** Records a client's state transitions. @param {any} client */
export function recordStates(client) {
  /** @type {string[]} */
  const states = [client.state];
  /** @type {any[]} */
  const details = [];
  client.on("state", (/** @type {any} */ e) => {
    states.push(e.state);
    details.push(e);
  });
  return { states, details };
}

/** Records a client's error events. @param {any} client */
export function recordErrors(client) {
  /** @type {any[]} */
  const errors = [];
  client.on("error", (/** @type {any} */ e) => errors.push(e));
  return errors;
}

/**
 * One gateway for a whole test file: started before the file's tests and
 * stopped after them, with every client pushed on `clients` closed first.
 * `gw` stands for the started Gateway (a proxy, so it can be named before
 * the `before` hook has run).
 * @param {string} toml
 * @param {{before: (fn: () => Promise<void>) => void, after: (fn: () => Promise<void>) => void}} hooks node:test's
 * @param {(gw: Gateway) => Promise<void>} [onStart] runs in the same hook, once it is up
 * @returns {{gw: Gateway, clients: any[]}}
 */
export function fileGateway(toml, { before, after }, onStart) {
  /** @type {Gateway|null} */
  let started = null;
  /** @type {any[]} */
  const clients = [];
  before(async () => {
    started = await Gateway.start(toml);
    if (onStart) await onStart(started);
  });
  after(async () => {
    for (const c of clients) c.close();
    await started?.dispose();
  });
  const gw = /** @type {Gateway} */ (
    new Proxy(/** @type {any} */ ({}), {
      get(_, key) {
        // Not a thenable, and inspectable before the start.
        if (key === "then" || typeof key === "symbol") return started ? /** @type {any} */ (started)[key] : undefined;
        if (!started) throw new Error(`the file's gateway is not started yet (gw.${String(key)} outside a test or hook)`);
        const v = /** @type {any} */ (started)[key];
        return typeof v === "function" ? v.bind(started) : v;
      },
    })
  );
  return { gw, clients };
}
