//! Replay feeds (`kind = "replay"`) in a real gateway: determinism, bad
//! lines, looping, staleness at the end, path resolution, start-up errors.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tickergate::config::{Config, FeedConfig, ReplayConfig, ReplayPace};
use tickergate::{Gateway, Status};

const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/feeds/replay/binance-sample.jsonl"
);
/// Recorded frames in SAMPLE (lines that are `{"recv_ns":..,"frame":..}`).
const SAMPLE_FRAMES: f64 = 12.0;

fn replay_feed(path: &Path, pace: ReplayPace, looping: bool) -> ReplayConfig {
    ReplayConfig {
        name: "replay".into(),
        path: path.to_path_buf(),
        venue: "binance".into(),
        symbols: [
            ("BTCUSDT".to_string(), "BTC-USDT".to_string()),
            ("ETHUSDT".to_string(), "ETH-USDT".to_string()),
        ]
        .into(),
        pace,
        looping,
        ..ReplayConfig::default()
    }
}

async fn start_replay(feed: ReplayConfig) -> Gateway {
    start(|c| c.feeds = vec![FeedConfig::Replay(feed)]).await
}

fn series(name: &str, labels: &str) -> String {
    format!("tickergate_{name}{{{labels}}}")
}

async fn wait_metric_at_least(gw: &Gateway, s: &str, v: f64) {
    wait_for(&format!("{s} >= {v}"), || metric(&metrics_text(gw), s) >= v).await;
}

/// A temp file with `lines`, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, content: &str) -> TempFile {
        let p = std::env::temp_dir().join(format!(
            "tg-replay-{tag}-{}-{:?}.jsonl",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&p, content).unwrap();
        TempFile(p)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn frame_line(recv_ns: i64, frame: &Value) -> String {
    json!({"recv_ns": recv_ns, "frame": frame.to_string()}).to_string() + "\n"
}

fn book(sym: &str, u: u64, b: &str, a: &str) -> Value {
    json!({"stream": format!("{}@bookTicker", sym.to_lowercase()),
           "data": {"u": u, "s": sym, "b": b, "B": "1.00000000", "a": a, "A": "2.00000000"}})
}

/// Everything a replay run produces that does not depend on timing: the
/// final quote of each symbol with its seq (gw_ts removed: it is the wall
/// clock), the update count and every reject reason's count.
async fn outcome(gw: &Gateway) -> Value {
    let (st, body) = http_get(gw.local_addr, "/v1/quotes?symbols=BTC-USDT,ETH-USDT").await;
    assert_eq!(st, 200, "{body}");
    let mut quotes: Value = serde_json::from_str(&body).unwrap();
    for q in quotes.as_array_mut().unwrap() {
        let gw_ts = q.as_object_mut().unwrap().remove("gw_ts");
        assert!(gw_ts.is_some_and(|t| t.as_i64().unwrap() > 0));
    }
    let text = metrics_text(gw);
    let mut rejects = serde_json::Map::new();
    for reason in [
        "malformed",
        "unexpected",
        "bad_field",
        "unmapped_symbol",
        "out_of_order",
        "crossed",
        "non_positive_price",
        "negative_size",
        "scale",
        "empty",
    ] {
        let v = metric(
            &text,
            &series(
                "feed_rejects_total",
                &format!("feed=\"replay\",reason=\"{reason}\""),
            ),
        );
        rejects.insert(reason.into(), json!(v));
    }
    json!({
        "quotes": quotes,
        "updates_in": metric(&text, &series("updates_in_total", "feed=\"replay\"")),
        "frames": metric(&text, &series("feed_frames_total", "feed=\"replay\"")),
        "rejects": rejects,
    })
}

/// Replay determinism: the same file, played twice in two gateways, gives
/// the same output.
///
/// What is compared, and why: in `fast` pace the whole file is applied in
/// well under a millisecond, and subscribers get the *latest* value of a
/// symbol whenever their socket can take a frame, so how many intermediate
/// values a subscriber sees depends on scheduling (that is conflation doing
/// its job, and it is why a subscriber cannot be attached "before the
/// replay starts" without a race). What does not depend on timing is what
/// the replay wrote: every accepted update bumps the symbol's `seq` by one,
/// so the final quote *with its seq* fixes how many updates each symbol
/// took, and the metrics fix how many frames were read, how many quotes
/// were applied and every reject by reason. The per-frame order of
/// outcomes is checked race-free, without sockets, by the unit test
/// `feed::replay::tests::same_frames_same_outcomes`.
#[tokio::test]
async fn same_file_same_output_twice() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let gw = start_replay(replay_feed(Path::new(SAMPLE), ReplayPace::Fast, false)).await;
        // The frame counter moves after a frame is applied, and the last
        // line of the sample is a frame: at 12 everything has taken effect.
        let frames = series("feed_frames_total", "feed=\"replay\"");
        wait_metric_at_least(&gw, &frames, SAMPLE_FRAMES).await;
        let out = outcome(&gw).await;
        // A subscriber arriving now gets exactly that state as a snapshot.
        let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
        c.subscribe(1, &["BTC-USDT", "ETH-USDT"]).await;
        for q in out["quotes"].as_array().unwrap() {
            let (m, _) = c
                .recv_until(|m| m["type"] == "quote" && m["symbol"] == q["symbol"])
                .await;
            for k in [
                "seq",
                "bid",
                "bid_size",
                "ask",
                "ask_size",
                "last",
                "last_size",
                "ts",
            ] {
                assert_eq!(m[k], q[k], "{k} of {m}");
            }
            assert_eq!(m["snapshot"], true);
        }
        gw.shutdown();
        runs.push(out);
    }
    assert_eq!(runs[0], runs[1], "same file, same output");
    // And that output is the one the sample documents.
    let want = json!({
        "quotes": [
            {"type":"quote","symbol":"BTC-USDT","seq":3,
             "bid":"97000.03000000","bid_size":"0.25000000",
             "ask":"97000.04000000","ask_size":"0.75000000",
             "last":"97000.02000000","last_size":"0.00100000","ts":1763900000750000000i64},
            {"type":"quote","symbol":"ETH-USDT","seq":3,
             "bid":"3450.11000000","bid_size":"1.00000000",
             "ask":"3450.12000000","ask_size":"2.00000000",
             "last":"3450.13000000","last_size":"0.25000000","ts":1763900002750000000i64},
        ],
        "updates_in": 6.0,
        "frames": SAMPLE_FRAMES,
        "rejects": {"malformed": 3.0, "unexpected": 0.0, "bad_field": 1.0,
                    "unmapped_symbol": 1.0, "out_of_order": 1.0, "crossed": 1.0,
                    "non_positive_price": 0.0, "negative_size": 0.0, "scale": 0.0,
                    "empty": 0.0},
    });
    assert_eq!(runs[0], want);
}

/// A line longer than the 1 MiB limit is skipped (and never held whole);
/// the frames around it still play.
#[tokio::test]
async fn oversized_and_garbage_lines_are_skipped() {
    let mut text = String::new();
    text += &frame_line(1, &book("BTCUSDT", 1, "1.00", "1.01"));
    text += &format!("{{\"recv_ns\":2,\"frame\":\"{}\"}}\n", "x".repeat(1 << 20));
    text += "\u{0}\u{1}binary garbage\n";
    text += "{\"recv_ns\":3,\"frame\":\"unterminated\n";
    text += &frame_line(4, &book("BTCUSDT", 2, "1.10", "1.11"));
    let f = TempFile::new("big", &text);
    let gw = start_replay(replay_feed(&f.0, ReplayPace::Fast, false)).await;
    wait_metric_at_least(&gw, &series("feed_frames_total", "feed=\"replay\""), 2.0).await;
    let text = metrics_text(&gw);
    assert_eq!(
        metric(
            &text,
            &series("feed_rejects_total", "feed=\"replay\",reason=\"malformed\"")
        ),
        3.0
    );
    assert_eq!(
        metric(&text, &series("updates_in_total", "feed=\"replay\"")),
        2.0
    );
    let (_, body) = http_get(gw.local_addr, "/v1/quotes?symbols=BTC-USDT").await;
    let q: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&q[0]["bid"], &q[0]["ask"], &q[0]["seq"]),
        (&json!("1.10"), &json!("1.11"), &json!(2))
    );
}

/// With `loop`, each pass continues the session: the file's venue
/// sequence numbers and timestamps start over, but are shifted past the
/// previous pass, so nothing is refused as out of order and `ts` keeps
/// moving forward.
#[tokio::test]
async fn looping_continues_the_session() {
    let trade = |t: u64, p: &str, ms: u64| {
        json!({"stream": "btcusdt@trade",
               "data": {"e": "trade", "E": ms, "s": "BTCUSDT", "t": t, "p": p, "q": "0.5", "T": ms, "m": true, "M": true}})
    };
    let text = String::from("# two book updates and a trade\n")
        + &frame_line(10, &book("BTCUSDT", 500, "10.00", "10.01"))
        + &frame_line(15, &trade(77, "10.01", 1_763_900_000_000))
        + &frame_line(20, &book("BTCUSDT", 501, "10.02", "10.03"));
    let f = TempFile::new("loop", &text);
    let gw = start_replay(replay_feed(&f.0, ReplayPace::Fast, true)).await;
    // Were each pass refused as old, updates would stop at 3.
    wait_metric_at_least(&gw, &series("updates_in_total", "feed=\"replay\""), 12.0).await;
    let text = metrics_text(&gw);
    assert_eq!(
        metric(
            &text,
            &series(
                "feed_rejects_total",
                "feed=\"replay\",reason=\"out_of_order\""
            )
        ),
        0.0
    );
    let (_, body) = http_get(gw.local_addr, "/v1/quotes?symbols=BTC-USDT").await;
    let q: Value = serde_json::from_str(&body).unwrap();
    assert!(
        q[0]["seq"].as_u64().unwrap() >= 12,
        "the gateway's seq keeps growing: {q}"
    );
    assert!(
        q[0]["ts"].as_i64().unwrap() > 1_763_900_000_000_000_000,
        "later passes are later in time: {q}"
    );
    assert_eq!(q[0]["last"], "10.01", "prices are never touched");
}

/// Recorded pace plays the frames, and a replay without `loop` that has
/// reached its end goes stale like a finished upstream.
#[tokio::test]
async fn recorded_pace_then_stale_at_the_end() {
    let text = frame_line(1_000_000_000, &json!({"result": null, "id": 1}))
        + &frame_line(1_020_000_000, &book("BTCUSDT", 1, "5.00", "5.01"))
        + &frame_line(1_040_000_000, &book("BTCUSDT", 2, "5.02", "5.03"));
    let f = TempFile::new("paced", &text);
    let mut feed = replay_feed(&f.0, ReplayPace::Recorded, false);
    feed.speed = 2.0;
    feed.stale_after_ms = 200;
    let gw = start_replay(feed).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["BTC-USDT"]).await;
    // The last quote (as an update or, on a slow machine, a snapshot) and
    // then the end of the replay going stale, in whichever order they come.
    let (mut last, mut stale) = (None, false);
    while last.is_none() || !stale {
        let m = c.next_msg().await;
        if m["type"] == "quote" && m["bid"] == "5.02" {
            last = Some(m);
        } else if m["type"] == "status" && m["state"] == "stale" {
            stale = true;
        }
    }
    let q = last.unwrap();
    assert_eq!((&q["ask"], &q["seq"]), (&json!("5.03"), &json!(2)));
    assert_eq!(gw.status("BTC-USDT"), Some(Status::Stale));
    let (st, body) = http_get(gw.local_addr, "/readyz").await;
    assert_eq!(st, 503, "{body}");
    assert!(body.contains("\"replay\":false"), "{body}");
}

/// The sample config: its relative `path` is resolved against the config
/// file's directory, so it works from any working directory.
#[tokio::test]
async fn sample_config_resolves_its_path() {
    let cfg_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("feeds/replay.toml");
    let mut c = Config::load(&cfg_path).unwrap();
    c.validate().unwrap();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    let FeedConfig::Replay(r) = &mut c.feeds[0] else {
        panic!("feeds/replay.toml holds a replay feed")
    };
    assert_eq!(r.path, Path::new(SAMPLE).to_path_buf());
    r.pace = ReplayPace::Fast;
    r.looping = false;
    let gw = Gateway::start(c).await.unwrap();
    wait_metric_at_least(
        &gw,
        &series("feed_frames_total", "feed=\"replay\""),
        SAMPLE_FRAMES,
    )
    .await;
    let (_, body) = http_get(gw.local_addr, "/v1/quotes?symbols=BTC-USDT").await;
    let q: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(q[0]["bid"], "97000.03000000");
}

#[tokio::test]
async fn missing_file_or_venue_fails_at_start() {
    let mut c = test_config();
    c.feeds = vec![FeedConfig::Replay(replay_feed(
        Path::new("/nonexistent/session.jsonl"),
        ReplayPace::Fast,
        false,
    ))];
    c.validate().unwrap();
    let e = Gateway::start(c)
        .await
        .err()
        .expect("start fails")
        .to_string();
    assert!(
        e.contains("/nonexistent/session.jsonl") && e.contains("replay"),
        "{e}"
    );

    let mut c = test_config();
    c.feeds = vec![FeedConfig::Replay(replay_feed(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        ReplayPace::Fast,
        false,
    ))];
    let e = Gateway::start(c)
        .await
        .err()
        .expect("start fails")
        .to_string();
    assert!(e.contains("directory"), "{e}");
}

/// A recorded Kraken trade frame replays as a trade: a `"trades":true`
/// subscriber gets it as a trade message with the number's exact text.
/// The file loops at the recorded pace, so the subscriber meets a trade
/// whenever it arrives (no race with the replay's start).
#[tokio::test]
async fn recorded_trades_replay_as_trades_with_exact_text() {
    let trade = r#"{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":97000.10,"qty":0.00100000,"ord_type":"market","trade_id":4665906,"timestamp":"2025-11-23T12:13:20.001000Z"}]}"#;
    let text = String::from("# a Kraken trade, then a heartbeat 100 ms later\n")
        + &json!({"recv_ns": 1_000_000_000i64, "frame": trade}).to_string()
        + "\n"
        + &frame_line(1_100_000_000, &json!({"channel": "heartbeat"}));
    let f = TempFile::new("trades", &text);
    let mut feed = replay_feed(&f.0, ReplayPace::Recorded, true);
    feed.venue = "kraken".into();
    feed.symbols = [("BTC/USD".to_string(), "BTC-USD".to_string())].into();
    let gw = start_replay(feed).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.send(json!({"op": "subscribe", "id": 1, "symbols": ["BTC-USD"], "trades": true}))
        .await;
    c.recv_until(|m| m["type"] == "subscribed").await;
    let (m, _) = c.recv_until(|m| m["type"] == "trade").await;
    assert_eq!(m["symbol"], "BTC-USD");
    assert_eq!(m["price"], "97000.10", "the recorded number's text: {m}");
    assert_eq!(m["size"], "0.00100000", "{m}");
    assert_eq!(m["side"], "buy");
    assert_eq!(m["trade_id"], 4665906, "the venue's id, as recorded");
    // The next pass's trade: the symbol's next trade seq (how many passes
    // played before the subscriber came depends on the machine).
    let (m2, _) = c.recv_until(|m| m["type"] == "trade").await;
    let seq = m["seq"].as_u64().expect("a seq");
    assert_eq!(
        (&m2["seq"], &m2["price"]),
        (&json!(seq + 1), &json!("97000.10"))
    );
    assert!(
        m2["ts"].as_i64() > m["ts"].as_i64(),
        "a later pass is later: {m} {m2}"
    );
}
