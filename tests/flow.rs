//! Read-window flow control against a real gateway, with a client on a
//! bare socket that decides itself whether to answer the gateway's probe
//! Pings (every WebSocket library answers them on its own).

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;
use tickergate::Gateway;

const SYM: &str = "AAPL";
const HOLDS: &str = "tickergate_read_window_holds_total";

/// A raw client subscribed to [`SYM`] (welcome and ack consumed), not
/// answering anything; returns the wire bytes of those two frames and the
/// probe Pings' payloads (the welcome carries the first).
async fn subscribed(gw: &Gateway) -> (RawClient, usize, Vec<Vec<u8>>) {
    let mut c = RawClient::connect(gw.local_addr).await;
    c.send(0x1, br#"{"op":"subscribe","id":1,"symbols":["AAPL"]}"#)
        .await;
    let (mut wire, mut probes) = (0, Vec::new());
    loop {
        let (payload, n) = next_text(&mut c, &mut probes).await;
        wire += n;
        if String::from_utf8_lossy(&payload).contains(r#""type":"subscribed""#) {
            return (c, wire, probes);
        }
    }
}

/// The next text frame (payload, bytes on the wire), unanswered Pings on
/// the way noted in `probes`; anything else fails the test.
async fn next_text(c: &mut RawClient, probes: &mut Vec<Vec<u8>>) -> (Vec<u8>, usize) {
    loop {
        let (op, payload, n) = c.next_frame().await;
        if op == 0x9 {
            probes.push(payload);
            continue;
        }
        assert_eq!(op, 0x1, "text frames and pings");
        return (payload, n);
    }
}

/// A window fixed at 8 KiB.
fn window_8k(c: &mut tickergate::config::Config) {
    c.session.read_window_min_bytes = 8192;
    c.session.read_window_max_bytes = 8192;
    c.session.read_lag_ms = 20;
}

/// The quotes of a data frame's payload: (seq, bid).
fn quotes(payload: &[u8]) -> Vec<(u64, String)> {
    let msgs: Vec<Value> = serde_json::from_slice(payload).expect("a JSON array");
    msgs.iter()
        .filter(|m| m["type"] == "quote")
        .map(|m| {
            let seq = m["seq"].as_u64().expect("seq");
            (seq, m["bid"].as_str().expect("bid").to_string())
        })
        .collect()
}

/// Publishes a new [`SYM`] quote every 10 ms until a session holds its
/// data for its read window.
async fn publish_until_held(gw: &Gateway) {
    let mut n = 0u64;
    wait_for("a read-window hold", || {
        n += 1;
        publish(gw, SYM, quote(&bid(n), "1", "999", "1"));
        metric(&metrics_text(gw), HOLDS) >= 1.0
    })
    .await;
}

/// Reads on, answering every probe as a library would, until a data frame
/// with a quote; returns its first quote.
async fn first_quote_answering_probes(c: &mut RawClient) -> (u64, String) {
    loop {
        let (op, payload, _) = c.next_frame().await;
        if op == 0x9 {
            c.send(0xA, &payload).await;
        } else if op == 0x1 {
            if let Some(q) = quotes(&payload).first().cloned() {
                return q;
            }
        }
    }
}

fn bid(n: u64) -> String {
    format!("{}.{:02}", 100 + n / 100, n % 100)
}

/// A client that reads everything but never answers the probe: once a
/// read window of bytes is unread by the gateway's count, no more data
/// goes (though TCP would take far more), control replies still do, and
/// the probe's Pong brings the newest value at once, not the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_waits_for_the_probe_pong_then_the_newest_value_goes() {
    let gw = start(window_8k).await;
    let (mut c, mut wire, mut probes) = subscribed(&gw).await;
    publish_until_held(&gw).await;
    // Held now: these only move the slot.
    let first_held = publish(&gw, SYM, quote("1.01", "1", "999", "1"));
    let mut last = first_held;
    for i in 2..=50 {
        last = publish(&gw, SYM, quote(&format!("1.{i:02}"), "1", "999", "1"));
    }
    // A control reply is never held, and comes after every frame written
    // before it.
    c.send(0x1, br#"{"op":"ping","id":77}"#).await;
    let (mut largest, mut seen) = (0, Vec::new());
    loop {
        let (payload, n) = next_text(&mut c, &mut probes).await;
        if String::from_utf8_lossy(&payload).contains(r#""type":"pong""#) {
            break;
        }
        wire += n;
        largest = largest.max(n);
        seen.extend(quotes(&payload));
    }
    assert!(
        (8192..8192 + largest).contains(&wire),
        "{wire} bytes written without a Pong (window 8192, frames up to {largest})"
    );
    // One probe in flight (asked again after a second without an answer).
    assert!(
        probes.iter().all(|p| p == &probes[0]),
        "one probe in flight: {probes:?}"
    );
    assert_eq!(probes[0].len(), 4);
    let welcome_len = u32::from_be_bytes(probes[0][..].try_into().unwrap());
    assert!(
        welcome_len > 0 && (welcome_len as usize) < wire,
        "{welcome_len}"
    );
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|(seq, _)| *seq < first_held),
        "a quote published during the hold went out: {seen:?}"
    );
    // The Pong (and, from now on, every Pong as the probes come): the
    // newest value goes, the 49 before it never do.
    c.send(0xA, &probes[0]).await;
    let first = first_quote_answering_probes(&mut c).await;
    assert_eq!(first, (last, "1.50".to_string()));
}

/// With `read_lag_ms = 0` nothing is held and no probe is sent: the same
/// client that never answers gets every update, well past a window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_lag_zero_turns_flow_control_off() {
    let gw = start(|c| {
        c.session.read_window_min_bytes = 8192;
        c.session.read_lag_ms = 0;
    })
    .await;
    let (mut c, mut wire, probes) = subscribed(&gw).await;
    assert!(probes.is_empty());
    for n in 1..=200 {
        let seq = publish(&gw, SYM, quote(&bid(n), "1", "999", "1"));
        loop {
            let (op, payload, len) = c.next_frame().await;
            assert_eq!(op, 0x1, "no ping, no probe");
            wire += len;
            if quotes(&payload).iter().any(|(s, _)| *s == seq) {
                break;
            }
        }
    }
    assert!(wire > 2 * 8192, "{wire} bytes");
    assert_eq!(metric(&metrics_text(&gw), HOLDS), 0.0);
}

/// A client that reads but never answers keeps its window full: after
/// `slow_consumer_ms` it is a slow consumer (4008), as one whose socket
/// took nothing would be, and the close frame reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_full_for_slow_consumer_ms_is_4008() {
    let gw = start(|c| {
        window_8k(c);
        c.session.slow_consumer_ms = 300;
    })
    .await;
    let (mut c, _, _) = subscribed(&gw).await;
    publish_until_held(&gw).await;
    let close = loop {
        let (op, payload, _) = c.next_frame().await;
        if op == 0x8 {
            break payload;
        }
    };
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 4008);
    assert_eq!(&close[2..], b"slow consumer: data not read");
    let t = metrics_text(&gw);
    assert_eq!(
        metric(&t, r#"tickergate_disconnects_total{code="4008"}"#),
        1.0
    );
}

/// A client that missed a probe (RFC 6455 lets a client answer only its
/// latest Ping) is asked again, with the same payload, while its window
/// is full; answering the repeat lets the newest value go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_probe_is_asked_again_and_the_answer_opens_the_window() {
    let gw = start(window_8k).await;
    let (mut c, _, probes) = subscribed(&gw).await;
    publish_until_held(&gw).await;
    let last = publish(&gw, SYM, quote("7.77", "1", "999", "1"));
    // Read on (ignoring the first probe) until the probe comes again.
    let again = loop {
        let (op, payload, _) = c.next_frame().await;
        if op == 0x9 && probes.contains(&payload) {
            break payload;
        }
        assert!(op == 0x1 || op == 0x9, "opcode {op}");
    };
    c.send(0xA, &again).await;
    let first = first_quote_answering_probes(&mut c).await;
    assert_eq!(first, (last, "7.77".to_string()));
}

/// A client that answers its probes late while data keeps coming gets its
/// frames spaced (a minimum gap between them). A spaced frame is the
/// fan-out's to write when its time comes: if the feed then goes quiet,
/// no later update brings a pass, and the value that waited must still go
/// (the shard's pace timer). Every round ends with that value arriving;
/// the rounds go on until one of them was spaced by the metric, as the
/// round trip decides whether the value fell inside a gap and whether the
/// fan-out or the session's task (awake, reading a Pong) wrote it; they
/// end once the shard wrote a spaced value. Heartbeats and
/// keepalive Pings are off the test's time scale: a value left waiting
/// for one of them (a lost wake) fails it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spaced_frame_still_goes_when_the_feed_goes_quiet() {
    const PACED: &str = "tickergate_read_window_paced_total";
    const DIRECT: &str = "tickergate_frames_direct_total";
    let gw = start(|c| {
        c.session.read_lag_ms = 1;
        c.session.read_window_min_bytes = 4096;
        c.session.read_window_max_bytes = 4096;
        c.session.heartbeat_ms = 600_000;
        c.session.ping_interval_ms = 600_000;
        c.session.idle_timeout_ms = 1_200_000;
    })
    .await;
    let (mut c, _, probes) = subscribed(&gw).await;
    // The welcome's probe, answered at once: the fastest round trip.
    c.send(0xA, &probes[0]).await;
    // Late answers (40 ms, with an update every 5 ms meanwhile) until the
    // gap has doubled a few times.
    let late_answers = async {
        let mut n = 0u64;
        let mut late = 0;
        while late < 6 {
            n += 1;
            publish(&gw, SYM, quote(&bid(n), "1", "999", "1"));
            let Ok((op, payload, _)) =
                tokio::time::timeout(Duration::from_millis(5), c.next_frame()).await
            else {
                continue;
            };
            if op == 0x9 {
                for _ in 0..8 {
                    n += 1;
                    publish(&gw, SYM, quote(&bid(n), "1", "999", "1"));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                c.send(0xA, &payload).await;
                late += 1;
            }
        }
    };
    tokio::time::timeout(EVENT_DEADLINE, late_answers)
        .await
        .expect("probes with the frames");
    assert!(
        metric(&metrics_text(&gw), PACED) >= 1.0,
        "frames were spaced"
    );
    // Quiet feed: one update, and once it is read (its frame just went,
    // so the next one must wait for the gap) one more, then nothing.
    let mut round = 0u64;
    loop {
        round += 1;
        assert!(
            round < 200,
            "no value was ever spaced and sent by the shard"
        );
        let first = publish(&gw, SYM, quote(&format!("{round}.1"), "1", "999", "1"));
        read_quote_answering_late(&mut c, first).await;
        let before = metrics_text(&gw);
        let last = publish(&gw, SYM, quote(&format!("{round}.2"), "1", "999", "1"));
        let got = read_quote_answering_late(&mut c, last).await;
        assert_eq!(got, (last, format!("{round}.2")));
        // Spaced, and its frame (the only data frame since) written by the
        // fan-out, not by the session's task.
        let after = metrics_text(&gw);
        if metric(&after, PACED) > metric(&before, PACED)
            && metric(&after, DIRECT) > metric(&before, DIRECT)
        {
            break;
        }
    }
}

/// Reads until the quote with `seq`, answering probes 40 ms late; fails
/// after [`EVENT_DEADLINE`] (keepalive Pings would keep it reading).
async fn read_quote_answering_late(c: &mut RawClient, seq: u64) -> (u64, String) {
    let read = async {
        loop {
            let (op, payload, _) = c.next_frame().await;
            if op == 0x9 {
                tokio::time::sleep(Duration::from_millis(40)).await;
                c.send(0xA, &payload).await;
            } else if let Some(q) = quotes(&payload).into_iter().find(|q| q.0 == seq) {
                return q;
            }
        }
    };
    tokio::time::timeout(EVENT_DEADLINE, read)
        .await
        .unwrap_or_else(|_| panic!("quote {seq} never came"))
}
