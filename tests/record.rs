//! Live → record → replay: `tickergate record` captures a (local, fake)
//! Binance upstream into a file, and a replay feed plays that file into a
//! real gateway whose subscriber sees the exact decimal strings.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;
use tickergate::config::{FeedConfig, ReplayConfig, ReplayPace};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_tickergate");

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("tg-record-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tiny Binance: accepts WebSocket connections, answers the SUBSCRIBE
/// with `{"result":null,"id":<id>}`, sends `frames`, then stays connected
/// (reading) until the client goes away.
async fn fake_binance(frames: Vec<String>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let frames = frames.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let sub = loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) => break t.to_string(),
                        Some(Ok(_)) => continue,
                        _ => return,
                    }
                };
                let sub: Value = serde_json::from_str(&sub).expect("SUBSCRIBE is JSON");
                assert_eq!(sub["method"], "SUBSCRIBE");
                let ack = format!(r#"{{"result":null,"id":{}}}"#, sub["id"]);
                if ws.send(Message::Text(ack.into())).await.is_err() {
                    return;
                }
                for f in frames {
                    if ws.send(Message::Text(f.into())).await.is_err() {
                        return;
                    }
                }
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    addr
}

fn book(sym: &str, u: u64, b: &str, bs: &str, a: &str, asz: &str) -> String {
    json!({"stream": format!("{}@bookTicker", sym.to_lowercase()),
           "data": {"u": u, "s": sym, "b": b, "B": bs, "a": a, "A": asz}})
    .to_string()
}

fn trade(sym: &str, t: u64, p: &str, q: &str, ms: u64) -> String {
    json!({"stream": format!("{}@trade", sym.to_lowercase()),
           "data": {"e": "trade", "E": ms, "s": sym, "t": t, "p": p, "q": q, "T": ms, "m": true, "M": true}})
    .to_string()
}

/// Runs the binary to completion (killed after the deadline).
async fn run_bin(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(BIN)
            .args(&args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > EVENT_DEADLINE {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "tickergate record did not finish: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

/// (recv_ns, frame) of every recorded line.
fn recorded(path: &Path) -> Vec<(i64, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            (
                v["recv_ns"].as_i64().expect("recv_ns is an integer"),
                v["frame"].as_str().expect("frame is a string").to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn live_record_replay_roundtrip() {
    let data = vec![
        book(
            "BTCUSDT",
            1,
            "97000.01000000",
            "0.51230000",
            "97000.02000000",
            "1.00000000",
        ),
        book(
            "ETHUSDT",
            7,
            "3450.12000000",
            "12.50000000",
            "3450.13000000",
            "3.10000000",
        ),
        trade("BTCUSDT", 42, "97000.02000000", "0.00100000", 1763900000001),
        book(
            "BTCUSDT",
            2,
            "97000.00000000",
            "2.00000000",
            "97000.01000000",
            "0.10000000",
        ),
        // Past --max-frames (ack + 4): must not be in the file.
        book(
            "BTCUSDT",
            3,
            "1.00000000",
            "1.00000000",
            "2.00000000",
            "1.00000000",
        ),
        book(
            "BTCUSDT",
            4,
            "1.00000000",
            "1.00000000",
            "2.00000000",
            "1.00000000",
        ),
    ];
    let up = fake_binance(data.clone()).await;
    let dir = Scratch::new("roundtrip");
    // The public listener's port is taken: the recorder must not need it.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = dir.0.join("live.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"{}\"\n\n[[feeds]]\nkind = \"binance\"\nname = \"bn\"\nurl = \"ws://{up}/stream\"\nsymbols = {{ BTCUSDT = \"BTC-USDT\", ETHUSDT = \"ETH-USDT\" }}\n",
            busy.local_addr().unwrap()
        ),
    )
    .unwrap();
    let out = dir.0.join("session.jsonl");
    let args = [
        "record",
        "--config",
        cfg.to_str().unwrap(),
        "--feed",
        "bn",
        "--out",
        out.to_str().unwrap(),
        "--max-frames",
        "5",
    ]
    .map(String::from)
    .to_vec();
    let o = run_bin(args).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("recorded 5 frames"), "{stdout}");

    // Exactly the first five frames, byte for byte, in order.
    let rec = recorded(&out);
    let frames: Vec<&str> = rec.iter().map(|(_, f)| f.as_str()).collect();
    let mut want = vec![r#"{"result":null,"id":1}"#.to_string()];
    want.extend(data[..4].iter().cloned());
    assert_eq!(frames, want);
    assert!(
        rec[0].0 > 1_600_000_000_000_000_000,
        "recv_ns is wall-clock ns"
    );
    assert!(
        rec.windows(2).all(|w| w[0].0 <= w[1].0),
        "recv_ns never goes backwards: {rec:?}"
    );

    // Replay the recording into a real gateway.
    let gw = start(|c| {
        c.feeds = vec![FeedConfig::Replay(ReplayConfig {
            name: "replay".into(),
            path: out.clone(),
            venue: "binance".into(),
            symbols: [
                ("BTCUSDT".to_string(), "BTC-USDT".to_string()),
                ("ETHUSDT".to_string(), "ETH-USDT".to_string()),
            ]
            .into(),
            pace: ReplayPace::Recorded,
            ..ReplayConfig::default()
        })]
    })
    .await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["BTC-USDT", "ETH-USDT"]).await;
    // Final values (as updates, or a snapshot if the replay was quicker
    // than the subscribe), exact text.
    let (btc, _) = c
        .recv_until(|m| m["type"] == "quote" && m["symbol"] == "BTC-USDT" && m["seq"] == 3)
        .await;
    assert_eq!(
        (&btc["bid"], &btc["bid_size"], &btc["ask"], &btc["ask_size"]),
        (
            &json!("97000.00000000"),
            &json!("2.00000000"),
            &json!("97000.01000000"),
            &json!("0.10000000")
        )
    );
    assert_eq!(
        (&btc["last"], &btc["last_size"], &btc["ts"]),
        (
            &json!("97000.02000000"),
            &json!("0.00100000"),
            &json!(1763900000001000000i64)
        )
    );
    let (_, body) = http_get(gw.local_addr, "/v1/quotes?symbols=ETH-USDT").await;
    let eth: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            &eth[0]["bid"],
            &eth[0]["bid_size"],
            &eth[0]["ask"],
            &eth[0]["ask_size"],
            &eth[0]["seq"]
        ),
        (
            &json!("3450.12000000"),
            &json!("12.50000000"),
            &json!("3450.13000000"),
            &json!("3.10000000"),
            &json!(1)
        )
    );
    let text = metrics_text(&gw);
    assert_eq!(
        metric(&text, "tickergate_updates_in_total{feed=\"replay\"}"),
        4.0
    );
    drop(busy);
}

#[tokio::test]
async fn record_stops_after_duration_and_refuses_bad_feeds() {
    let up = fake_binance(vec![]).await;
    let dir = Scratch::new("duration");
    let cfg = dir.0.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[feeds]]\nkind = \"binance\"\nname = \"bn\"\nurl = \"ws://{up}/stream\"\nsymbols = {{ BTCUSDT = \"BTC-USDT\" }}\n\n[[feeds]]\nkind = \"sim\"\nname = \"s\"\n"
        ),
    )
    .unwrap();
    let out = dir.0.join("d.jsonl");
    let base = |extra: &[&str]| {
        let mut v: Vec<String> = ["record", "--config", cfg.to_str().unwrap(), "--out"]
            .map(String::from)
            .to_vec();
        v.push(out.to_str().unwrap().to_string());
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    // No --feed: the only venue feed. Stops on its own after the duration.
    let o = run_bin(base(&["--duration", "0.3"])).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.starts_with("# recorded by tickergate record"),
        "{text}"
    );
    for (_, f) in recorded(&out) {
        assert_eq!(f, r#"{"result":null,"id":1}"#);
    }

    for (extra, needle) in [
        (&["--feed", "nope"][..], "no feed named \"nope\""),
        (&["--feed", "s"][..], "only venue feeds"),
        (&["--max-frames", "0"][..], "--max-frames"),
    ] {
        let o = run_bin(base(extra)).await;
        assert_eq!(o.status.code(), Some(2), "{extra:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{extra:?}: {err}");
    }
    let o = run_bin(["record", "--help"].map(String::from).to_vec()).await;
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("--max-frames"));
}
