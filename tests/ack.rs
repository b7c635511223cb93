//! Client-paced delivery (ack mode: the `flow` and `ack` ops) against a
//! real gateway, with a real WebSocket client that counts the frames it
//! receives after the `flow` reply's frame, as PROTOCOL.md tells clients to.

mod common;

use common::*;
use serde_json::{json, Value};
use tickergate::Gateway;

const SYM: &str = "AAPL";
const ACK_HOLDS: &str = "tickergate_ack_window_holds_total";
const ACK_SESSIONS: &str = "tickergate_ack_mode_sessions";

/// A client in the middle of ack mode: the frames received since the
/// `flow` reply's frame, and how many of them carried quotes.
struct Acking {
    c: Client,
    frames: u64,
    data_frames: u64,
}

impl Acking {
    /// Welcomed, subscribed to [`SYM`], `flow` sent with `window`, and
    /// read up to the frame carrying its reply (not counted).
    async fn start(gw: &Gateway, window: u8) -> Acking {
        let (mut c, w) = Client::connect_welcomed(gw.local_addr).await;
        assert_eq!(w["limits"]["max_flow_window"], 64, "{w}");
        c.subscribe(1, &[SYM]).await;
        let mut a = Acking {
            c,
            frames: 0,
            data_frames: 0,
        };
        a.flow(window).await;
        a
    }

    /// Sends `flow` and reads up to its reply's frame; counting starts
    /// after it.
    async fn flow(&mut self, window: u8) {
        self.c
            .send(json!({"op":"flow","id":2,"window":window}))
            .await;
        loop {
            let msgs = self.frame_msgs().await;
            if let Some(r) = msgs.iter().find(|m| m["type"] == "flow") {
                assert_eq!(r["window"], window, "{r}");
                assert_eq!(r["id"], 2, "{r}");
                break;
            }
        }
        self.frames = 0;
        self.data_frames = 0;
    }

    /// The next frame's messages, counted.
    async fn frame_msgs(&mut self) -> Vec<Value> {
        match self.c.next_event().await {
            Event::Msgs(msgs) => {
                self.frames += 1;
                if msgs.iter().any(|m| m["type"] == "quote") {
                    self.data_frames += 1;
                }
                msgs
            }
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Reads frames until one has a message matching `pred`; returns it.
    async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            if let Some(m) = self.frame_msgs().await.into_iter().find(&pred) {
                return m;
            }
        }
    }

    async fn ack(&mut self, n: u64) {
        self.c.send(json!({"op":"ack","n":n})).await;
    }
}

/// Publishes a new [`SYM`] quote every few ms until a session holds its
/// data for its ack window; returns the last seq published.
async fn publish_until_ack_held(gw: &Gateway) -> u64 {
    let mut n = 0u64;
    let mut seq = 0;
    wait_for("an ack-window hold", || {
        n += 1;
        seq = publish(gw, SYM, quote(&format!("100.{n:04}"), "1", "999", "1"));
        metric(&metrics_text(gw), ACK_HOLDS) >= 1.0
    })
    .await;
    seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_mode_holds_data_at_the_window_and_never_control() {
    let gw = start(|_| {}).await;
    let mut a = Acking::start(&gw, 2).await;
    assert_eq!(metric(&metrics_text(&gw), ACK_SESSIONS), 1.0);
    let last = publish_until_ack_held(&gw).await;
    // Control replies are never held: a ping is answered with the window
    // full. Every frame before the pong is counted: exactly the window's
    // two carried data.
    a.c.send(json!({"op":"ping","id":9})).await;
    a.until(|m| m["type"] == "pong" && m["id"] == 9).await;
    assert_eq!(a.data_frames, 2, "data frames sent unacknowledged");
    // So is a subscribe's reply.
    a.c.send(json!({"op":"subscribe","id":3,"symbols":["MSFT"]}))
        .await;
    a.until(|m| m["type"] == "subscribed" && m["id"] == 3).await;
    assert_eq!(a.data_frames, 2);
    // Every frame counts, control ones too: an ack of the data frames
    // alone leaves the window full (2 of 4 unacknowledged) ...
    assert_eq!(a.frames, 4);
    a.ack(2).await;
    a.c.send(json!({"op":"ping","id":10})).await;
    a.until(|m| m["type"] == "pong" && m["id"] == 10).await;
    assert_eq!(a.data_frames, 2, "still held");
    // ... an ack of all of them lets data go again, with the newest value
    // (the ones before it were conflated in the slot meanwhile).
    a.ack(a.frames).await;
    let q = a
        .until(|m| m["type"] == "quote" && m["symbol"] == SYM)
        .await;
    assert_eq!(q["seq"], last, "the newest value, not a backlog: {q}");
    assert_eq!(a.data_frames, 3);
    // An ack of more frames than were sent is refused.
    let too_many = a.frames + 5;
    a.ack(too_many).await;
    let e = a.until(|m| m["type"] == "error").await;
    assert_eq!(e["code"], "bad_request", "{e}");
    assert!(
        e["message"].as_str().unwrap_or("").contains("were sent"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_zero_returns_to_normal_delivery() {
    let gw = start(|_| {}).await;
    let mut a = Acking::start(&gw, 1).await;
    publish_until_ack_held(&gw).await;
    a.flow(0).await;
    assert_eq!(metric(&metrics_text(&gw), ACK_SESSIONS), 0.0);
    // Without a single ack, every new value arrives.
    for i in 0..5u32 {
        let seq = publish(&gw, SYM, quote(&format!("200.{i}"), "1", "999", "1"));
        a.until(|m| m["type"] == "quote" && m["seq"] == seq).await;
    }
    // And an ack is refused: there is no window to acknowledge.
    a.ack(1).await;
    let e = a.until(|m| m["type"] == "error").await;
    assert_eq!(e["code"], "bad_request", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_are_free_of_the_op_rate_limit_but_stale_ones_are_not() {
    let gw = start(|c| {
        c.session.max_msgs_per_sec = 2;
        c.session.msgs_burst = 3;
        c.session.max_rate_violations = 3;
    })
    .await;
    let mut a = Acking::start(&gw, 1).await;
    // Thirty acks, each for a frame just received: far above 2 ops/s, and
    // none refused.
    for i in 0..30u32 {
        let seq = publish(&gw, SYM, quote(&format!("300.{i:02}"), "1", "999", "1"));
        let m = a
            .until(|m| m["type"] == "error" || (m["type"] == "quote" && m["seq"] == seq))
            .await;
        assert_eq!(m["type"], "quote", "ack {i} refused: {m}");
        a.ack(a.frames).await;
    }
    // An ack that does not move the count on is an ordinary op: repeated,
    // it is rate limited and then closes the session.
    for _ in 0..20 {
        a.ack(a.frames).await;
    }
    a.until(|m| m["type"] == "error" && m["code"] == "rate_limited")
        .await;
    assert_eq!(a.c.recv_close().await, Some(1008));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_ops_are_refused_not_served() {
    let gw = start(|c| {
        c.session.max_msgs_per_sec = 1;
        c.session.msgs_burst = 2;
        c.session.max_rate_violations = 100;
    })
    .await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    for i in 0..10 {
        c.send(json!({"op":"ping","id":i})).await;
    }
    c.send(json!({"op":"ping","id":"last"})).await;
    // Read until the last op's answer, whichever it is.
    let mut pongs = 0;
    let mut limited = 0;
    loop {
        let m = c.next_msg().await;
        match m["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") if m["code"] == "rate_limited" => limited += 1,
            _ => {}
        }
        if pongs + limited == 11 {
            break;
        }
    }
    // Each op is answered once: a pong, or rate_limited without a pong.
    assert!(limited >= 1, "the flood was limited");
    assert!(pongs <= 3, "only the admitted pings were served: {pongs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_acking_is_a_slow_consumer() {
    let gw = start(|c| c.session.slow_consumer_ms = 300).await;
    let mut a = Acking::start(&gw, 1).await;
    publish_until_ack_held(&gw).await;
    // It reads (its library would), but its application never acks.
    assert_eq!(a.c.recv_close().await, Some(4008));
    assert_eq!(
        metric(
            &metrics_text(&gw),
            r#"tickergate_disconnects_total{code="4008"}"#
        ),
        1.0
    );
}

/// The freshness histograms count frames that carry live quotes, once
/// each: `write_age_seconds` when the socket has taken the whole frame;
/// frames of control replies only (pongs here) count in neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_age_counts_data_frames_when_written() {
    const WRITTEN: &str = "tickergate_write_age_seconds_count";
    const BUILT: &str = "tickergate_delivery_latency_seconds_count";
    let gw = start(|_| {}).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &[SYM]).await;
    for i in 1..=3u32 {
        let seq = publish(&gw, SYM, quote(&format!("400.{i}"), "1", "999", "1"));
        c.recv_until(|m| m["type"] == "quote" && m["seq"] == seq)
            .await;
        wait_for("the frame's write age", || {
            metric(&metrics_text(&gw), WRITTEN) >= f64::from(i)
        })
        .await;
    }
    let text = metrics_text(&gw);
    let (written, built) = (metric(&text, WRITTEN), metric(&text, BUILT));
    assert_eq!(written, 3.0, "one per data frame");
    for i in 0..5 {
        c.send(json!({"op":"ping","id":i})).await;
        c.recv_until(|m| m["type"] == "pong" && m["id"] == i).await;
    }
    let text = metrics_text(&gw);
    assert_eq!(
        metric(&text, WRITTEN),
        written,
        "pong frames carry no quote"
    );
    assert_eq!(metric(&text, BUILT), built, "pong frames carry no quote");
}
