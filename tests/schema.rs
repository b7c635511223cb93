//! The machine-readable contract of protocol v1 (docs/schema, JSON Schema
//! 2020-12) against the real server and against PROTOCOL.md's examples:
//! one live gateway with auth that provokes every server message type and
//! every error code the WebSocket can produce, each frame received checked
//! against `server-frame.json` and each op sent against `client-op.json`;
//! invalid examples that the schemas must refuse (so they are not
//! vacuous); every example line of PROTOCOL.md's ``` blocks; and the
//! schemas' enums against the gateway's own constants.
//!
//! The schemas' `$ref`s are served from docs/schema by a local retriever:
//! nothing is fetched.

mod common;

use common::*;
use futures_util::SinkExt;
use jsonschema::{Retrieve, Uri, Validator};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use tickergate::auth::token_hash_hex;
use tickergate::config::KeyConfig;
use tickergate::protocol::{ErrorCode, MAX_FLOW_WINDOW, PROTOCOL_VERSION};
use tickergate::trades::{Side, TradeInfo};
use tokio_tungstenite::tungstenite::Message;

/// Every schema's `$id` is this plus its path under docs/schema, so a
/// relative `$ref` ("../common.json#/$defs/symbol") names the same file
/// whether it is resolved against the `$id` or against the file's path.
const BASE: &str = "https://tickergate.example/schema/v1/";
const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";

const OPS: [&str; 6] = ["subscribe", "unsubscribe", "ping", "auth", "flow", "ack"];
const MESSAGES: [&str; 12] = [
    "welcome",
    "subscribed",
    "unsubscribed",
    "quote",
    "status",
    "heartbeat",
    "pong",
    "authenticated",
    "error",
    "flow",
    "trade",
    "trades_dropped",
];

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Serves `$ref`s from the files of docs/schema, by `$id`.
struct Local(HashMap<String, Value>);

impl Retrieve for Local {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        self.0
            .get(uri.as_str())
            .cloned()
            .ok_or_else(|| format!("{uri} is not the $id of a file in docs/schema").into())
    }
}

/// Every file of docs/schema, compiled.
struct Schemas {
    docs: BTreeMap<String, Value>,
    compiled: BTreeMap<String, Validator>,
}

impl Schemas {
    fn load() -> Schemas {
        let root = repo_file("docs/schema");
        let mut files = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("docs/schema") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().and_then(|e| e.to_str()) == Some("json") {
                    files.push(path);
                }
            }
        }
        let mut docs = BTreeMap::new();
        for path in files {
            let name = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&path).unwrap();
            let doc: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
            assert_eq!(doc["$schema"], DRAFT, "{name}: JSON Schema 2020-12");
            assert_eq!(doc["$id"], format!("{BASE}{name}"), "{name}: $id");
            for k in ["title", "description"] {
                assert!(
                    doc[k].as_str().is_some_and(|s| !s.is_empty()),
                    "{name}: no {k}"
                );
            }
            docs.insert(name, doc);
        }
        let by_id: HashMap<String, Value> = docs
            .iter()
            .map(|(name, doc)| (format!("{BASE}{name}"), doc.clone()))
            .collect();
        let compiled = docs
            .iter()
            .map(|(name, doc)| {
                let v = jsonschema::options()
                    .with_retriever(Local(by_id.clone()))
                    .build(doc)
                    .unwrap_or_else(|e| panic!("{name} does not compile: {e}"));
                (name.clone(), v)
            })
            .collect();
        let s = Schemas { docs, compiled };
        for f in OPS
            .iter()
            .map(|n| format!("ops/{n}.json"))
            .chain(MESSAGES.iter().map(|n| format!("messages/{n}.json")))
            .chain(["client-op.json".into(), "server-frame.json".into()])
        {
            assert!(s.docs.contains_key(&f), "docs/schema/{f} is missing");
        }
        s
    }

    fn get(&self, file: &str) -> &Validator {
        self.compiled
            .get(file)
            .unwrap_or_else(|| panic!("no docs/schema/{file}"))
    }

    fn errors(&self, file: &str, v: &Value) -> Vec<String> {
        self.get(file)
            .iter_errors(v)
            .map(|e| format!("{e} (at {})", e.instance_path()))
            .collect()
    }

    fn is_valid(&self, file: &str, v: &Value) -> bool {
        self.get(file).is_valid(v)
    }

    /// `Err` says which message of the frame is wrong, and why, from the
    /// message's own schema (the frame's oneOf only says "none matched").
    fn check_frame(&self, frame: &Value) -> Result<(), String> {
        let errs = self.errors("server-frame.json", frame);
        if errs.is_empty() {
            return Ok(());
        }
        let mut why = errs;
        for (i, m) in frame.as_array().into_iter().flatten().enumerate() {
            let file = format!(
                "messages/{}.json",
                m["type"].as_str().unwrap_or("(no type)")
            );
            if self.compiled.contains_key(&file) {
                why.extend(
                    self.errors(&file, m)
                        .into_iter()
                        .map(|e| format!("[{i}] {file}: {e}")),
                );
            } else {
                why.push(format!("[{i}]: no schema for type {}", m["type"]));
            }
        }
        Err(format!("{frame}\n  {}", why.join("\n  ")))
    }

    fn check_op(&self, op: &Value) -> Result<(), String> {
        let errs = self.errors("client-op.json", op);
        if errs.is_empty() {
            return Ok(());
        }
        Err(format!("{op}\n  {}", errs.join("\n  ")))
    }
}

/// What one message is, for the tally of what was seen: its type, and
/// the variant for quotes (snapshot or update), status (state) and errors
/// (code).
fn kind(m: &Value) -> String {
    let ty = m["type"].as_str().unwrap_or("?");
    match ty {
        "quote" if m["snapshot"] == true => "quote (snapshot)".into(),
        "quote" => "quote (update)".into(),
        "status" => format!("status {}", m["state"].as_str().unwrap_or("?")),
        "error" => format!("error {}", m["code"].as_str().unwrap_or("?")),
        _ => ty.into(),
    }
}

/// A WebSocket client whose every frame received is checked against
/// `server-frame.json`, and whose every op sent is checked against
/// `client-op.json` (valid, or deliberately invalid).
struct Checked<'s> {
    c: Client,
    s: &'s Schemas,
    backlog: VecDeque<Value>,
    /// Frames received so far.
    frames: u64,
    seen: BTreeSet<String>,
    ops_sent: BTreeSet<String>,
    /// The first message of each kind, as received.
    samples: BTreeMap<String, Value>,
}

impl<'s> Checked<'s> {
    async fn connect(s: &'s Schemas, url: &str) -> Checked<'s> {
        Checked {
            c: Client::connect_url(url).await,
            s,
            backlog: VecDeque::new(),
            frames: 0,
            seen: BTreeSet::new(),
            ops_sent: BTreeSet::new(),
            samples: BTreeMap::new(),
        }
    }

    /// The next frame, checked; `Err` with the close code (or `None` for
    /// a connection that ended without one).
    async fn next_frame(&mut self) -> Result<Vec<Value>, Option<u16>> {
        match self.c.next_event().await {
            Event::Msgs(msgs) => {
                let frame = Value::Array(msgs);
                if let Err(e) = self.s.check_frame(&frame) {
                    panic!("the server sent a frame that server-frame.json refuses: {e}");
                }
                self.frames += 1;
                let Value::Array(msgs) = frame else {
                    unreachable!()
                };
                for m in &msgs {
                    let k = kind(m);
                    self.samples.entry(k.clone()).or_insert_with(|| m.clone());
                    self.seen.insert(k);
                }
                Ok(msgs)
            }
            Event::Close(code) => Err(code),
            Event::Eof => Err(None),
        }
    }

    async fn next_msg(&mut self) -> Value {
        loop {
            if let Some(m) = self.backlog.pop_front() {
                return m;
            }
            match self.next_frame().await {
                Ok(msgs) => self.backlog.extend(msgs),
                Err(code) => panic!("expected a message, got the close {code:?}"),
            }
        }
    }

    /// Reads until a message matches; returns it and those before it.
    async fn until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
        let mut skipped = Vec::new();
        let wait = async {
            loop {
                let m = self.next_msg().await;
                if pred(&m) {
                    return m;
                }
                skipped.push(m);
            }
        };
        match tokio::time::timeout(EVENT_DEADLINE, wait).await {
            Ok(m) => (m, skipped),
            Err(_) => panic!("never got {what}; last skipped: {skipped:?}"),
        }
    }

    /// The reply of `type` with `id`, skipping only heartbeats.
    async fn reply(&mut self, ty: &str, id: Value) -> Value {
        loop {
            let m = self.next_msg().await;
            if m["type"] == "heartbeat" {
                continue;
            }
            assert_eq!((&m["type"], &m["id"]), (&json!(ty), &id), "{m}");
            return m;
        }
    }

    /// The close code, reading (and checking) whatever comes before it.
    async fn close_code(&mut self) -> Option<u16> {
        self.backlog.clear();
        loop {
            if let Err(code) = self.next_frame().await {
                return code;
            }
        }
    }

    /// Sends an op that `client-op.json` must accept.
    async fn send(&mut self, op: Value) {
        if let Err(e) = self.s.check_op(&op) {
            panic!("the test sends an op that client-op.json refuses: {e}");
        }
        self.ops_sent
            .insert(op["op"].as_str().unwrap_or("?").to_string());
        self.c.send(op).await;
    }

    /// Sends a message that `client-op.json` must refuse (when it is JSON
    /// at all).
    async fn send_invalid(&mut self, text: &str) {
        if let Ok(v) = serde_json::from_str::<Value>(text) {
            assert!(
                !self.s.is_valid("client-op.json", &v),
                "client-op.json accepts an op the server refuses: {text}"
            );
        }
        self.c.send_text(text).await;
    }

    /// A ping answered: the session still works.
    async fn alive(&mut self, id: &str) {
        self.send(json!({"op":"ping","id":id})).await;
        let (pong, _) = self
            .until("pong", |m| m["type"] == "pong" && m["id"] == id)
            .await;
        assert!(pong["ts"].as_i64().is_some_and(|t| t > 0), "{pong}");
    }
}

fn key(name: &str, token: &str, symbols: &[&str], max_symbols: Option<usize>) -> KeyConfig {
    KeyConfig {
        name: name.into(),
        sha256: token_hash_hex(token),
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        max_connections: None,
        max_symbols,
    }
}

/// One gateway with auth; every server message type and every error code
/// the WebSocket can produce, every frame checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_session_speaks_exactly_the_schemas() {
    let s = Schemas::load();
    let gw = start(|c| {
        c.session.heartbeat_ms = 400;
        c.session.max_message_bytes = 1024;
        // The main session stays well under it; the flooder below does not.
        c.session.max_msgs_per_sec = 100;
        c.session.msgs_burst = 100;
        c.session.max_rate_violations = 1_000_000;
        c.session.max_pending_control = 4096;
        c.session.max_pending_trades = 4;
        // Not stale before the pause, even on a loaded machine.
        sim_cfg(c).stale_after_ms = 1000;
        c.auth.keys = vec![
            key("desk", "desk-key", &["AAPL", "MSFT", "BTC-*"], Some(2)),
            key("wide", "wide-key", &["*"], None),
        ];
    })
    .await;
    let url = ws_url(gw.local_addr);
    let feed = gw.feed("sim").expect("the sim feed");
    publish(
        &gw,
        "AAPL",
        quote("189.1200", "300", "189.14", "200")
            .with_last(d("189.13"), d("100"))
            .with_ts(1_763_900_000_123_456_789),
    );

    // Without a token: welcome says auth is required; ping works, the rest
    // waits for `auth`.
    let mut m = Checked::connect(&s, &url).await;
    let welcome = m.next_msg().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["auth_required"], true, "{welcome}");
    m.alive("before-auth").await;
    m.send(json!({"op":"subscribe","id":1,"symbols":["AAPL"]}))
        .await;
    assert_eq!(m.reply("error", json!(1)).await["code"], "unauthorized");
    m.send(json!({"op":"auth","id":2,"token":"desk-key"})).await;
    let authed = m.reply("authenticated", json!(2)).await;
    assert_eq!(authed["limits"]["max_symbols"], 2, "the key's limit");
    m.send(json!({"op":"auth","id":3,"token":"desk-key"})).await;
    assert_eq!(m.reply("error", json!(3)).await["code"], "bad_request");

    // Subscribe: errors per refused name, then the rest subscribed (max_hz
    // clamped), then the snapshot.
    // ETH-USD exists but is not the key's; BTC-NOPE is the key's (BTC-*)
    // but does not exist; the pattern ETH-* matches no symbol the key may
    // see.
    m.send(json!({"op":"subscribe","id":4,
        "symbols":["AAPL","MSFT","ETH-USD","BTC-NOPE","ETH-*"],"max_hz":5000}))
        .await;
    let (sub, before) = m
        .until("subscribed 4", |x| {
            x["type"] == "subscribed" && x["id"] == 4
        })
        .await;
    assert_eq!(sub["symbols"], json!(["AAPL", "MSFT"]), "{sub}");
    assert_eq!(sub["max_hz"], 1000.0, "{sub}");
    let refused: Vec<(&str, &str)> = before
        .iter()
        .filter(|x| x["type"] == "error")
        .map(|x| (x["code"].as_str().unwrap(), x["symbol"].as_str().unwrap()))
        .collect();
    assert_eq!(
        refused,
        [
            ("forbidden_symbol", "ETH-USD"),
            ("unknown_symbol", "BTC-NOPE"),
            ("unknown_symbol", "ETH-*")
        ]
    );
    let (snap, _) = m
        .until("AAPL's snapshot", |x| {
            x["type"] == "quote" && x["symbol"] == "AAPL"
        })
        .await;
    assert_eq!(snap["snapshot"], true, "{snap}");
    assert_eq!(snap["bid"], "189.1200", "{snap}");

    // A live update of a symbol that had no value: no snapshot flag, and
    // only the fields the feed gave.
    let seq = publish(
        &gw,
        "MSFT",
        tickergate::Quote::default().with_last(d("420.01"), d("5")),
    );
    let (upd, _) = m
        .until("MSFT's update", |x| {
            x["type"] == "quote" && x["symbol"] == "MSFT"
        })
        .await;
    assert_eq!(upd["seq"], seq, "{upd}");
    assert!(
        upd.get("snapshot").is_none() && upd.get("bid").is_none(),
        "{upd}"
    );

    // Past the key's max_symbols.
    m.send(json!({"op":"subscribe","id":5,"symbols":["BTC-USD"]}))
        .await;
    assert_eq!(m.reply("error", json!(5)).await["code"], "too_many_symbols");
    m.send(json!({"op":"unsubscribe","id":6,"symbols":["MSFT"]}))
        .await;
    let unsub = m.reply("unsubscribed", json!(6)).await;
    assert_eq!(unsub["symbols"], json!(["MSFT"]));

    // Ops the server refuses, which client-op.json must refuse too; each
    // leaves the session working.
    let pad = "x".repeat(2000);
    let refused_ops: Vec<(String, &str, Value)> = vec![
        ("{not json".into(), "bad_request", Value::Null),
        ("[1,2,3]".into(), "bad_request", Value::Null),
        (r#"{"op":"teleport","id":7}"#.into(), "unknown_op", json!(7)),
        (
            r#"{"op":"subscribe","id":8,"symbols":"AAPL"}"#.into(),
            "bad_request",
            json!(8),
        ),
        (
            r#"{"op":"subscribe","id":9,"symbols":[]}"#.into(),
            "bad_request",
            json!(9),
        ),
        (
            r#"{"op":"subscribe","id":10,"symbols":["AAPL"],"max_hz":0}"#.into(),
            "bad_request",
            json!(10),
        ),
        (
            r#"{"op":"subscribe","id":11,"symbols":["AAPL"],"snapshot":"yes"}"#.into(),
            "bad_request",
            json!(11),
        ),
        (r#"{"id":12}"#.into(), "bad_request", json!(12)),
        (
            r#"{"op":"ping","id":1.5}"#.into(),
            "bad_request",
            Value::Null,
        ),
        (
            r#"{"op":"flow","id":13,"window":65}"#.into(),
            "bad_request",
            json!(13),
        ),
        (
            r#"{"op":"ack","id":14,"n":"3"}"#.into(),
            "bad_request",
            json!(14),
        ),
        (r#"{"op":"auth","id":15}"#.into(), "bad_request", json!(15)),
        (
            format!(r#"{{"op":"ping","id":16,"pad":"{pad}"}}"#),
            "payload_too_large",
            Value::Null,
        ),
    ];
    for (i, (text, code, id)) in refused_ops.iter().enumerate() {
        m.send_invalid(text).await;
        let (e, _) = m.until("an error", |x| x["type"] == "error").await;
        assert_eq!(e["code"], *code, "{text}: {e}");
        assert_eq!(e.get("id").unwrap_or(&Value::Null), id, "{text}: {e}");
        m.alive(&format!("after-{i}")).await;
    }
    // Well-formed, and still refused: an ack without a flow window.
    m.send(json!({"op":"ack","id":17,"n":1})).await;
    assert_eq!(m.reply("error", json!(17)).await["code"], "bad_request");
    // Not even text.
    m.c.ws
        .send(Message::Binary(vec![0u8, 159, 146, 150].into()))
        .await
        .unwrap();
    let (e, _) = m.until("an error", |x| x["type"] == "error").await;
    assert_eq!(e["code"], "bad_request", "{e}");

    // Client-paced delivery: flow on, a quote, its ack, an ack of too
    // many, flow off.
    m.send(json!({"op":"flow","id":18,"window":1})).await;
    let flow = m.reply("flow", json!(18)).await;
    assert_eq!(flow["window"], 1);
    let reply_frame = m.frames;
    let seq = publish(&gw, "AAPL", quote("189.15", "100", "189.16", "100"));
    m.until("AAPL's update", |x| {
        x["type"] == "quote" && x["symbol"] == "AAPL" && x["seq"] == seq
    })
    .await;
    m.send(json!({"op":"ack","n":m.frames - reply_frame})).await;
    m.send(json!({"op":"ack","id":19,"n":m.frames - reply_frame + 10}))
        .await;
    let (e, _) = m.until("an error", |x| x["type"] == "error").await;
    assert_eq!((&e["code"], &e["id"]), (&json!("bad_request"), &json!(19)));
    m.send(json!({"op":"flow","id":20,"window":0})).await;
    assert_eq!(m.reply("flow", json!(20)).await["window"], 0);

    // A silent feed: stale, then live again.
    wait_for("feed up", || feed.is_up()).await;
    feed.set_paused(true);
    let (st, _) = m
        .until("stale", |x| x["type"] == "status" && x["state"] == "stale")
        .await;
    assert_eq!(st["symbol"], "AAPL");
    feed.set_paused(false);
    m.until("live", |x| x["type"] == "status" && x["state"] == "live")
        .await;
    m.until("a heartbeat", |x| x["type"] == "heartbeat").await;

    // A refused token: unauthorized, then close 1008.
    let mut refused_token = Checked::connect(&s, &format!("{url}?token=nope")).await;
    let (e, _) = refused_token
        .until("unauthorized", |x| x["type"] == "error")
        .await;
    assert_eq!(e["code"], "unauthorized", "{e}");
    assert_eq!(refused_token.close_code().await, Some(1008));

    // A flood: rate_limited. Every reply is read (and checked).
    let mut flood = Checked::connect(&s, &format!("{url}?token=wide-key")).await;
    let w = flood.next_msg().await;
    assert_eq!(
        (&w["type"], &w["auth_required"]),
        (&json!("welcome"), &json!(false))
    );
    // Rounds of 400 pings at once against 100 a second (burst 100); a
    // second round only if a very slow machine admitted a whole one.
    const FLOOD: u64 = 400;
    let (mut pongs, mut limited) = (0, 0);
    for round in 0..3 {
        for i in 0..FLOOD {
            let op = json!({"op":"ping","id":format!("flood-{round}-{i}")});
            if let Err(e) = s.check_op(&op) {
                panic!("{e}");
            }
            flood
                .c
                .ws
                .feed(Message::Text(op.to_string().into()))
                .await
                .unwrap();
        }
        flood.c.ws.flush().await.unwrap();
        let mut answered = 0;
        while answered < FLOOD {
            let x = flood.next_msg().await;
            match (x["type"].as_str(), x["code"].as_str()) {
                (Some("pong"), _) => pongs += 1,
                (Some("error"), Some("rate_limited")) => limited += 1,
                _ => continue,
            }
            answered += 1;
        }
        if limited > 0 {
            break;
        }
    }
    assert!(limited > 0, "{pongs} pongs, none limited");

    // Trades, and a client in ack mode that falls behind them: a drop.
    let mut t = Checked::connect(&s, &format!("{url}?token=wide-key")).await;
    t.next_msg().await;
    t.send(json!({"op":"subscribe","id":1,"symbols":["MSFT"],"trades":true,"snapshot":false}))
        .await;
    assert_eq!(t.reply("subscribed", json!(1)).await["trades"], true);
    t.send(json!({"op":"flow","id":2,"window":1})).await;
    t.reply("flow", json!(2)).await;
    let reply_frame = t.frames;
    let trade = |n: i64| {
        let q = quote("410.10", "5", "410.20", "7")
            .with_last(d(&format!("410.1{n}")), d("0.5"))
            .with_ts(1_763_900_000_000_000_000 + n);
        let info = TradeInfo {
            side: Some(Side::Buy),
            trade_id: Some(n as u64),
        };
        gw.publish_trade("sim", "MSFT", q, info).expect("trade");
    };
    trade(1);
    t.until("the first trade", |x| x["type"] == "trade").await;
    for n in 2..=9 {
        trade(n);
    }
    t.send(json!({"op":"ack","n":t.frames - reply_frame})).await;
    let (drop, _) = t.until("the drop", |x| x["type"] == "trades_dropped").await;
    assert_eq!(drop["count"], 4, "{drop}");
    t.until("the newest trade", |x| {
        x["type"] == "trade" && x["seq"] == 9
    })
    .await;

    // Everything was exercised.
    let mut seen = m.seen.clone();
    seen.extend(t.seen.iter().cloned());
    seen.extend(refused_token.seen.iter().cloned());
    seen.extend(flood.seen.iter().cloned());
    let mut expected: BTreeSet<String> = MESSAGES
        .iter()
        .filter(|t| !matches!(**t, "quote" | "status" | "error"))
        .map(|t| t.to_string())
        .collect();
    expected.extend(["quote (snapshot)", "quote (update)"].map(String::from));
    expected.extend(["status stale", "status live"].map(String::from));
    // `internal` is reserved for server bugs: no client can provoke it;
    // `not_found` is HTTP only (see the SSE test).
    expected.extend(
        ErrorCode::ALL
            .iter()
            .filter(|c| !matches!(c, ErrorCode::Internal | ErrorCode::NotFound))
            .map(|c| format!("error {}", c.as_str())),
    );
    let missing: Vec<_> = expected.difference(&seen).collect();
    assert!(missing.is_empty(), "never seen: {missing:?}; seen {seen:?}");
    let ops: BTreeSet<String> = OPS.iter().map(|o| o.to_string()).collect();
    assert_eq!(m.ops_sent, ops, "every op sent (and checked)");

    // The schemas are not vacuous: what the server sent, changed in one
    // undocumented way, is refused.
    let frame = |m: &Value| json!([m]);
    let mut extra = m.samples["welcome"].clone();
    extra["extra"] = json!(1);
    let mut number_price = m.samples["quote (snapshot)"].clone();
    number_price["bid"] = json!(189.12);
    let mut not_snapshot = m.samples["quote (snapshot)"].clone();
    not_snapshot["snapshot"] = json!(false);
    let mut null_field = m.samples["quote (update)"].clone();
    null_field["bid"] = Value::Null;
    let mut upper_epoch = m.samples["welcome"].clone();
    let epoch = welcome["epoch"].as_str().expect("epoch").to_uppercase();
    upper_epoch["epoch"] = json!(epoch);
    let mut no_symbol = m.samples["error unknown_symbol"].clone();
    no_symbol.as_object_mut().unwrap().remove("symbol");
    for (what, v) in [
        ("a welcome with an extra field", extra),
        ("a quote with a number price", number_price),
        ("a quote with snapshot false", not_snapshot),
        ("a quote with a null field", null_field),
        ("an unknown_symbol error without symbol", no_symbol),
    ] {
        assert!(
            !s.is_valid("server-frame.json", &frame(&v)),
            "server-frame.json accepts {what}: {v}"
        );
    }
    if epoch.bytes().any(|b| b.is_ascii_alphabetic()) {
        assert!(
            !s.is_valid("server-frame.json", &frame(&upper_epoch)),
            "server-frame.json accepts an uppercase epoch"
        );
    }
    // Each sample (first of its kind) is valid on its own too.
    for (k, v) in &m.samples {
        assert!(s.is_valid("server-frame.json", &frame(v)), "{k}: {v}");
    }
}

/// A raw `GET /v1/sse` and its event stream (HTTP/1.1, chunked).
struct SseStream {
    tcp: tokio::net::TcpStream,
    raw: Vec<u8>,
    /// Decoded body not yet returned as events.
    text: String,
}

impl SseStream {
    /// The response head and the stream, or the status and body of a
    /// refusal.
    async fn open(
        addr: std::net::SocketAddr,
        query: &str,
    ) -> Result<(String, SseStream), (u16, String)> {
        use tokio::io::AsyncWriteExt;
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET /v1/sse?{query} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.expect("send");
        let mut c = SseStream {
            tcp,
            raw: Vec::new(),
            text: String::new(),
        };
        let end = c.until(b"\r\n\r\n").await;
        let head = String::from_utf8_lossy(&c.raw[..end]).into_owned();
        c.raw.drain(..end + 4);
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad response head: {head:?}"));
        if status == 200 {
            return Ok((head, c));
        }
        let len: usize = header(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("a refusal has a Content-Length: {head:?}"));
        while c.raw.len() < len {
            c.fill().await;
        }
        Err((status, String::from_utf8_lossy(&c.raw[..len]).into_owned()))
    }

    async fn fill(&mut self) {
        use tokio::io::AsyncReadExt;
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(EVENT_DEADLINE, self.tcp.read(&mut chunk))
            .await
            .expect("data in time")
            .expect("read");
        assert!(n > 0, "the stream ended");
        self.raw.extend_from_slice(&chunk[..n]);
    }

    async fn until(&mut self, pat: &[u8]) -> usize {
        loop {
            if let Some(i) = self.raw.windows(pat.len()).position(|w| w == pat) {
                return i;
            }
            self.fill().await;
        }
    }

    /// The next event or comment: its lines, without the blank line that
    /// ends it.
    async fn event(&mut self) -> String {
        loop {
            if let Some(i) = self.text.find("\n\n") {
                let e = self.text[..i].to_string();
                self.text.drain(..i + 2);
                return e;
            }
            let end = self.until(b"\r\n").await;
            let size = std::str::from_utf8(&self.raw[..end])
                .ok()
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .expect("a chunk size");
            assert!(size > 0, "the stream ended");
            self.raw.drain(..end + 2);
            while self.raw.len() < size + 2 {
                self.fill().await;
            }
            self.text
                .push_str(std::str::from_utf8(&self.raw[..size]).expect("UTF-8"));
            self.raw.drain(..size + 2);
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The next SSE event's frame, checked against `server-frame.json`;
/// comments (`: hb`) on the way are counted.
async fn sse_frame(sse: &mut SseStream, s: &Schemas, comments: &mut u32) -> Value {
    loop {
        let e = sse.event().await;
        if e.starts_with(':') {
            assert_eq!(e, ": hb");
            *comments += 1;
            continue;
        }
        let data = e
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("an event that is not data: {e:?}"));
        assert!(!data.contains('\n'), "one data line per event: {e:?}");
        let frame: Value = serde_json::from_str(data).expect("data is JSON");
        if let Err(e) = s.check_frame(&frame) {
            panic!("an SSE event's data that server-frame.json refuses: {e}");
        }
        return frame;
    }
}

/// `GET /v1/sse`: every event's `data:` is a frame `server-frame.json`
/// accepts (the first: welcome, subscribed, snapshots), and every refusal
/// (400, 401, 403, and the 404 of an unknown path) has a body
/// `messages/error.json` accepts, with the documented status and code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_events_and_http_errors_speak_the_schemas() {
    let s = Schemas::load();
    let gw = start(|c| {
        c.session.heartbeat_ms = 300;
        c.auth.keys = vec![
            key("desk", "desk-key", &["AAPL", "MSFT", "BTC-*"], Some(2)),
            key("wide", "wide-key", &["*"], None),
        ];
    })
    .await;
    let addr = gw.local_addr;
    publish(&gw, "AAPL", quote("189.1200", "300", "189.14", "200"));
    let (head, mut sse) = SseStream::open(addr, "symbols=AAPL,BTC-USD&max_hz=5&token=wide-key")
        .await
        .unwrap_or_else(|(code, body)| panic!("{code}: {body}"));
    assert!(
        header(&head, "content-type").is_some_and(|t| t.starts_with("text/event-stream")),
        "{head}"
    );
    assert_eq!(sse.event().await, "retry: 2000");
    let mut comments = 0;
    let first = sse_frame(&mut sse, &s, &mut comments).await;
    let kinds: Vec<String> = first.as_array().unwrap().iter().map(kind).collect();
    assert_eq!(
        kinds,
        ["welcome", "subscribed", "quote (snapshot)"],
        "{first}"
    );
    // BTC-USD had no value: its first one is an update. Then a quiet
    // stream gets `: hb` comments, never a JSON heartbeat.
    let seq = publish(&gw, "BTC-USD", quote("97000.01", "0.5", "97000.02", "1"));
    loop {
        let frame = sse_frame(&mut sse, &s, &mut comments).await;
        let msgs = frame.as_array().unwrap();
        assert!(msgs.iter().all(|m| m["type"] != "heartbeat"), "{frame}");
        if msgs
            .iter()
            .any(|m| m["symbol"] == "BTC-USD" && m["seq"] == seq && m.get("snapshot").is_none())
        {
            break;
        }
    }
    while comments == 0 {
        let e = sse.event().await;
        assert_eq!(e, ": hb", "a quiet stream");
        comments += 1;
    }
    drop(sse);

    // Refusals: no stream, a JSON error.
    let refusals = [
        ("token=wide-key", 400, "bad_request"),
        ("symbols=&token=wide-key", 400, "bad_request"),
        ("symbols=AAPL&max_hz=0&token=wide-key", 400, "bad_request"),
        ("symbols=NOPE&token=wide-key", 400, "unknown_symbol"),
        (
            "symbols=AAPL,MSFT,BTC-USD&token=desk-key",
            400,
            "too_many_symbols",
        ),
        ("symbols=AAPL", 401, "unauthorized"),
        ("symbols=AAPL&token=nope", 401, "unauthorized"),
        ("symbols=ETH-USD&token=desk-key", 403, "forbidden_symbol"),
    ];
    for (query, status, code) in refusals {
        let (got, body) = match SseStream::open(addr, query).await {
            Ok((head, _)) => panic!("{query}: streamed: {head}"),
            Err(r) => r,
        };
        let err: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{query}: {e}: {body}"));
        assert_eq!(
            (got, err["code"].as_str()),
            (status, Some(code)),
            "{query}: {body}"
        );
        let errs = s.errors("messages/error.json", &err);
        assert!(errs.is_empty(), "{query}: {body}: {errs:?}");
    }
    let (status, body) = http_get(addr, "/v1/no-such-thing").await;
    let err: Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(
        (status, err["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let errs = s.errors("messages/error.json", &err);
    assert!(errs.is_empty(), "{body}: {errs:?}");
}

/// Hand-written examples each schema must refuse, and a few it must take
/// (among them the one error code no client can provoke).
#[test]
fn invalid_examples_are_refused() {
    let s = Schemas::load();
    let quote = json!({"type":"quote","symbol":"AAPL","seq":1,"bid":"189.12","gw_ts":1});
    let with = |base: &Value, k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let without = |base: &Value, k: &str| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let welcome = json!({"type":"welcome","protocol":1,"session":"0000000000000001",
        "epoch":"9f3c2a61d07be415","heartbeat_ms":5000,"auth_required":false,
        "limits":{"max_symbols":500,"max_msgs_per_sec":20,"max_message_bytes":16384,"max_flow_window":64}});
    let valid_frames = [
        json!([quote]),
        json!([with(&quote, "snapshot", json!(true))]),
        json!([with(&quote, "bid", json!("-0.5"))]),
        json!([welcome]),
        json!([{"type":"error","code":"internal","message":"encoding failed"}]),
        json!([{"type":"error","id":"x","code":"unknown_symbol","message":"no such symbol: ","symbol":""}]),
        json!([{"type":"subscribed","id":18446744073709551615u64,"symbols":["BRK.B"],"max_hz":2.5}]),
        json!([{"type":"pong","id":-9223372036854775808i64,"ts":1}]),
        json!([{"type":"flow","window":0},{"type":"heartbeat","ts":2}]),
        json!([with(&quote, "bid_venue", json!("kraken"))]),
        json!([with(
            &with(
                &with(
                    &with(&quote, "bid_venue", json!("kraken")),
                    "ask",
                    json!("189.11")
                ),
                "ask_venue",
                json!("coinbase")
            ),
            "crossed",
            json!(true)
        )]),
    ];
    for f in &valid_frames {
        if let Err(e) = s.check_frame(f) {
            panic!("a valid frame is refused: {e}");
        }
    }
    let invalid_frames = [
        json!([]),
        json!({"type":"heartbeat","ts":1}),
        json!([{"type":"trade","symbol":"AAPL"}]),
        json!([with(&quote, "bid", json!(189.12))]),
        json!([with(&quote, "bid", json!("1e5"))]),
        json!([with(&quote, "bid", json!("1."))]),
        json!([with(&quote, "bid", json!(".5"))]),
        json!([with(&quote, "bid", json!(" 1"))]),
        json!([with(&quote, "bid", json!("+1"))]),
        json!([with(&quote, "bid", Value::Null)]),
        json!([with(&quote, "seq", json!(0))]),
        json!([with(&quote, "seq", json!("1"))]),
        json!([with(&quote, "ts", json!("1"))]),
        json!([with(&quote, "gw_ts", json!(1.5))]),
        json!([with(&quote, "snapshot", json!(false))]),
        json!([with(&quote, "symbol", json!("A B"))]),
        json!([with(&quote, "symbol", json!("X".repeat(33)))]),
        json!([without(&quote, "gw_ts")]),
        json!([without(&quote, "bid")]),
        json!([with(&quote, "extra", json!(1))]),
        json!([with(&quote, "ask_venue", json!("coinbase"))]),
        json!([with(&quote, "bid_venue", json!(""))]),
        json!([with(&quote, "bid_venue", json!(1))]),
        json!([with(&quote, "crossed", json!(false))]),
        json!([with(&quote, "crossed", json!(true))]),
        json!([with(&welcome, "extra", json!(1))]),
        json!([with(&welcome, "epoch", json!("9F3C2A61D07BE415"))]),
        json!([with(&welcome, "epoch", json!("9f3c2a61d07be41"))]),
        json!([with(&welcome, "protocol", json!(2))]),
        json!([without(&welcome, "auth_required")]),
        json!([with(
            &welcome,
            "limits",
            json!({"max_symbols":500,"max_msgs_per_sec":20,"max_message_bytes":16384})
        )]),
        json!([{"type":"status","symbol":"AAPL","state":"dead","ts":1}]),
        json!([{"type":"status","symbol":"AAPL","state":"stale"}]),
        json!([{"type":"heartbeat","id":1,"ts":1}]),
        json!([{"type":"pong","id":1}]),
        json!([{"type":"pong","id":1.5,"ts":1}]),
        json!([{"type":"pong","id":"x".repeat(65),"ts":1}]),
        json!([{"type":"subscribed","symbols":[]}]),
        json!([{"type":"subscribed","symbols":["AAPL","AAPL"]}]),
        json!([{"type":"subscribed","symbols":["AAPL"],"max_hz":0}]),
        json!([{"type":"unsubscribed","id":1}]),
        json!([{"type":"authenticated","id":1}]),
        json!([{"type":"flow","id":1,"window":65}]),
        json!([{"type":"error","code":"nope","message":"m"}]),
        json!([{"type":"error","code":"bad_request"}]),
        json!([{"type":"error","code":"bad_request","message":""}]),
        json!([{"type":"error","code":"forbidden_symbol","message":"m"}]),
        json!([{"type":"error","code":"bad_request","message":"m","symbol":"AAPL"}]),
        json!([{"type":"error","code":"bad_request","message":"m","id":null}]),
    ];
    for f in &invalid_frames {
        assert!(
            !s.is_valid("server-frame.json", f),
            "server-frame.json accepts {f}"
        );
    }
    let valid_ops = [
        json!({"op":"subscribe","symbols":["AAPL"]}),
        json!({"op":"subscribe","id":"s","symbols":["aapl","BTC-*"],"max_hz":0.5,"snapshot":false}),
        json!({"op":"unsubscribe","id":1,"symbols":["AAPL"]}),
        json!({"op":"ping"}),
        json!({"op":"auth","token":"t"}),
        json!({"op":"flow","window":0}),
        json!({"op":"flow","id":2,"window":64}),
        json!({"op":"ack","n":0}),
    ];
    for op in &valid_ops {
        if let Err(e) = s.check_op(op) {
            panic!("a valid op is refused: {e}");
        }
    }
    let invalid_ops = [
        json!([{"op":"ping"}]),
        json!({}),
        json!({"op":"teleport"}),
        json!({"op":5}),
        json!({"op":"ping","extra":1}),
        json!({"op":"ping","id":1.5}),
        json!({"op":"ping","id":[1]}),
        json!({"op":"ping","id":"x".repeat(65)}),
        json!({"op":"subscribe"}),
        json!({"op":"subscribe","symbols":"AAPL"}),
        json!({"op":"subscribe","symbols":[]}),
        json!({"op":"subscribe","symbols":[1]}),
        json!({"op":"subscribe","symbols":["A"],"max_hz":0}),
        json!({"op":"subscribe","symbols":["A"],"max_hz":"5"}),
        json!({"op":"subscribe","symbols":["A"],"snapshot":1}),
        json!({"op":"unsubscribe"}),
        json!({"op":"auth"}),
        json!({"op":"auth","token":7}),
        json!({"op":"flow"}),
        json!({"op":"flow","window":65}),
        json!({"op":"flow","window":-1}),
        json!({"op":"flow","window":1.5}),
        json!({"op":"ack"}),
        json!({"op":"ack","n":-1}),
        json!({"op":"ack","n":"3"}),
    ];
    for op in &invalid_ops {
        assert!(
            !s.is_valid("client-op.json", op),
            "client-op.json accepts {op}"
        );
    }
}

/// The schemas' enums and constants are the gateway's own, and
/// PROTOCOL.md lists the same error codes.
#[test]
fn schemas_match_the_gateways_constants() {
    let s = Schemas::load();
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let schema_codes: Vec<&str> = s.docs["messages/error.json"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(schema_codes, codes, "error.json's code enum");
    let doc = std::fs::read_to_string(repo_file("docs/PROTOCOL.md")).unwrap();
    // The section's first sentence is the list.
    let list = doc
        .split("## Error codes")
        .nth(1)
        .and_then(|r| r.split(".\n").next())
        .and_then(|r| r.split(". ").next())
        .expect("PROTOCOL.md has an Error codes section");
    let documented: BTreeSet<&str> = list.split('`').skip(1).step_by(2).collect();
    assert_eq!(
        documented,
        codes.iter().copied().collect::<BTreeSet<_>>(),
        "PROTOCOL.md's error codes"
    );
    let common = &s.docs["common.json"]["$defs"];
    assert_eq!(
        common["limits"]["properties"]["max_flow_window"]["const"],
        MAX_FLOW_WINDOW
    );
    assert_eq!(common["flowWindow"]["maximum"], MAX_FLOW_WINDOW);
    assert_eq!(
        s.docs["messages/welcome.json"]["properties"]["protocol"]["const"],
        PROTOCOL_VERSION
    );
    // client-op.json and server-frame.json name every op and message.
    let refs = |file: &str, at: &Value| -> BTreeSet<String> {
        at.as_array()
            .unwrap_or_else(|| panic!("{file}: no oneOf"))
            .iter()
            .map(|r| r["$ref"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        refs("client-op.json", &s.docs["client-op.json"]["oneOf"]),
        OPS.iter().map(|o| format!("ops/{o}.json")).collect()
    );
    let frame = refs(
        "server-frame.json",
        &s.docs["server-frame.json"]["items"]["oneOf"],
    );
    assert_eq!(
        frame,
        MESSAGES
            .iter()
            .map(|m| format!("messages/{m}.json"))
            .collect()
    );
}

/// One example of PROTOCOL.md: the line it starts on, and its JSON.
#[derive(Debug)]
struct Example {
    line: usize,
    json: Value,
}

/// The JSON of every example line in PROTOCOL.md's ``` blocks: a line
/// that starts with `[` (a server frame) or `{` (a client op), after an
/// optional `client:`, `server:` or `data:` (an SSE event's data, a server
/// frame). An example may go on over the next lines, and may be followed
/// by a `# comment`; one that is not valid JSON fails. The other lines of
/// the blocks are returned apart, with the line number: they are not
/// JSON examples (an HTTP request line, an SSE `retry:` field, an SSE
/// comment), and the test prints them.
fn protocol_examples() -> (Vec<Example>, Vec<(usize, String)>) {
    let text = std::fs::read_to_string(repo_file("docs/PROTOCOL.md")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (mut out, mut other) = (Vec::new(), Vec::new());
    let mut in_block = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        let trimmed = line.trim();
        let body = ["client:", "server:", "data:"]
            .iter()
            .find_map(|p| trimmed.strip_prefix(p))
            .unwrap_or(trimmed)
            .trim_start();
        if !(body.starts_with('[') || body.starts_with('{')) {
            if !trimmed.is_empty() {
                other.push((i, trimmed.to_string()));
            }
            continue;
        }
        let start = i;
        let mut acc = body.to_string();
        let json = loop {
            let mut stream = serde_json::Deserializer::from_str(&acc).into_iter::<Value>();
            match stream.next() {
                Some(Ok(v)) => {
                    let rest = acc[stream.byte_offset()..].trim();
                    assert!(
                        rest.is_empty() || rest.starts_with('#'),
                        "PROTOCOL.md:{start}: after the example's JSON: {rest:?}"
                    );
                    break v;
                }
                Some(Err(e)) if e.is_eof() && i < lines.len() && !lines[i].contains("```") => {
                    acc.push('\n');
                    acc.push_str(lines[i]);
                    i += 1;
                }
                other => {
                    panic!("PROTOCOL.md:{start}: an example that is not JSON ({other:?}): {acc}")
                }
            }
        };
        out.push(Example { line: start, json });
    }
    (out, other)
}

#[test]
fn every_protocol_md_example_is_valid() {
    let s = Schemas::load();
    let (examples, other) = protocol_examples();
    let (mut frames, mut ops) = (0, 0);
    let mut types = BTreeSet::new();
    for ex in &examples {
        let result = if ex.json.is_array() {
            frames += 1;
            for m in ex.json.as_array().unwrap() {
                types.insert(kind(m));
            }
            s.check_frame(&ex.json)
        } else {
            ops += 1;
            s.check_op(&ex.json)
        };
        if let Err(e) = result {
            panic!("PROTOCOL.md:{}: {e}", ex.line);
        }
    }
    assert!(frames > 0 && ops > 0, "no examples found: {examples:?}");
    println!(
        "{} examples of PROTOCOL.md valid ({frames} server frames, {ops} client ops; {types:?})",
        examples.len()
    );
    for (line, text) in &other {
        println!("PROTOCOL.md:{line}: not a JSON example, not checked: {text}");
    }
}

/// A consolidated symbol's quotes (its snapshot, an update, a cross)
/// from a live gateway: the legs are the sim feed's AAPL and an HTTP feed's
/// X-AAPL, published through each feed's normalizer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consolidated_quotes_speak_the_schema() {
    use tickergate::config::{ConsolidatedConfig, FeedConfig, IngestConfig};
    let s = Schemas::load();
    let gw = start(|c| {
        c.feeds.push(FeedConfig::Http(IngestConfig {
            name: "push".into(),
            key_sha256: token_hash_hex("push-key"),
            symbols: vec!["X-AAPL".into()],
            ..IngestConfig::default()
        }));
        c.consolidated = vec![ConsolidatedConfig {
            symbol: "AAPL-BBO".into(),
            from: vec!["AAPL".into(), "X-AAPL".into()],
        }];
    })
    .await;
    publish(&gw, "AAPL", quote("189.1200", "300", "189.14", "200"));
    gw.publish("push", "X-AAPL", quote("189.13", "100", "189.15", "50"))
        .expect("publish");
    let mut m = Checked::connect(&s, &ws_url(gw.local_addr)).await;
    m.until("welcome", |m| m["type"] == "welcome").await;
    m.c.send(json!({"op": "subscribe", "id": 1, "symbols": ["AAPL-BBO"]}))
        .await;
    let (snap, _) = m
        .until("the snapshot", |m| {
            m["type"] == "quote" && m["snapshot"] == true
        })
        .await;
    assert_eq!(
        (
            &snap["bid"],
            &snap["bid_venue"],
            &snap["ask"],
            &snap["ask_venue"]
        ),
        (
            &json!("189.13"),
            &json!("push"),
            &json!("189.14"),
            &json!("sim")
        )
    );
    gw.publish("push", "X-AAPL", quote("189.16", "100", "189.17", "50"))
        .expect("publish");
    let (cross, _) = m
        .until("the cross", |m| {
            m["type"] == "quote" && m["crossed"] == true
        })
        .await;
    assert_eq!(cross["bid"], "189.16");
    assert_eq!(
        (&cross["ask"], &cross["ask_venue"]),
        (&json!("189.14"), &json!("sim"))
    );
}
