//! Fan-out behaviour against a real gateway: coalescing, `max_hz`, slow
//! consumers closed with 4008 while healthy clients keep flowing, control
//! replies never stuck behind data, and 1,000 concurrent clients each
//! getting exactly their own symbols.

mod common;

use common::*;
use futures_util::StreamExt;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn px(i: u64) -> String {
    format!("{}.{:02}", 100 + i / 100, i % 100)
}

/// Reads quotes until the one with seq `last`; returns how many came.
async fn count_until(c: &mut Client, last: u64) -> u64 {
    let mut n = 0u64;
    loop {
        let q = c.recv_type("quote").await;
        n += 1;
        if q["seq"].as_u64() == Some(last) {
            return n;
        }
    }
}

/// Publishes a new quote for every symbol of `syms` each millisecond
/// until `stop`.
fn spawn_publisher(
    gw: Arc<tickergate::Gateway>,
    syms: Vec<String>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for s in &syms {
                publish(&gw, s, nth_quote(i % 10_000));
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
}

fn nth_quote(i: u64) -> tickergate::Quote {
    let bid = px(i);
    let ask = px(i + 1);
    quote(&bid, "100", &ask, "100")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalescing_sends_the_newest_value_with_a_seq_jump() {
    let gw = start(|_| {}).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    // max_hz 1: after one update the subscription is held back for a
    // second, so the 50 writes below land inside one window.
    c.send(json!({"op":"subscribe","id":1,"symbols":["AAPL"],"max_hz":1}))
        .await;
    let ack = c.recv_type("subscribed").await;
    assert_eq!(ack["max_hz"], 1.0);
    let first = publish(&gw, "AAPL", nth_quote(0));
    let q = c.recv_type("quote").await;
    assert_eq!(q["seq"], first);
    let mut last = 0;
    for i in 1..=50 {
        last = publish(&gw, "AAPL", nth_quote(i));
    }
    let mut received = Vec::new();
    loop {
        let q = c.recv_type("quote").await;
        let seq = q["seq"].as_u64().unwrap();
        received.push(q.clone());
        if seq == last {
            assert_eq!(q["bid"], px(50), "the newest value arrives");
            break;
        }
    }
    assert!(
        received.len() < 50,
        "updates were coalesced: {} frames for 50 writes",
        received.len()
    );
    let seqs: Vec<u64> = received
        .iter()
        .map(|q| q["seq"].as_u64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq only grows: {seqs:?}"
    );
    assert!(
        seqs[0] > first + 1 || seqs.len() == 1,
        "a seq jump shows conflation: {seqs:?}"
    );
    let text = metrics_text(&gw);
    assert!(metric(&text, "tickergate_updates_conflated_total") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_hz_caps_the_update_rate_per_subscription() {
    let gw = Arc::new(start(|_| {}).await);
    let (mut capped, _) = Client::connect_welcomed(gw.local_addr).await;
    let (mut free, _) = Client::connect_welcomed(gw.local_addr).await;
    capped
        .send(json!({"op":"subscribe","id":1,"symbols":["MSFT"],"max_hz":4}))
        .await;
    capped.recv_type("subscribed").await;
    free.subscribe(1, &["MSFT"]).await;
    // Write MSFT every 2 ms for ~1.5 s from another task.
    let writer = {
        let gw = gw.clone();
        tokio::spawn(async move {
            let mut last = 0;
            for i in 0..750 {
                last = publish(&gw, "MSFT", nth_quote(i));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            last
        })
    };
    let started = Instant::now();
    let last = writer.await.unwrap();
    let n_capped = count_until(&mut capped, last).await;
    let window = started.elapsed().as_secs_f64();
    let n_free = count_until(&mut free, last).await;
    // At most one update per 1/4 s in the window (+1 for the first, which is
    // not held back). The bound follows from the server's rule; how long the
    // window was is only measured, never asserted.
    let bound = (window * 4.0).ceil() as u64 + 1;
    assert!(
        n_capped <= bound,
        "max_hz 4 sent {n_capped} in {window:.2}s (bound {bound})"
    );
    assert!(n_capped >= 2, "updates still flow under max_hz");
    assert!(
        n_free > n_capped,
        "an uncapped subscriber on the same symbol gets more ({n_free} vs {n_capped})"
    );
}

/// A client that stops reading is closed with 4008 while a reading client
/// on the same symbols keeps getting fresh data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_closed_with_4008_and_others_keep_flowing() {
    slow_consumer_case(0).await;
}

/// The same with read-window flow control on: the stalled client's window
/// fills (or its socket does) and it is closed 4008. When it reads again,
/// tungstenite answers the probe Pings it finds after the server's close,
/// and the close frame must still reach it. (This case failed once, before
/// the server read until the client's close instead of dropping a socket
/// with Pongs unread, which resets the connection; the reset needs the
/// close frame still in the server's send buffer, so the race does not
/// reproduce on every run.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_with_flow_control_still_reads_its_4008_close() {
    slow_consumer_case(20).await;
}

async fn slow_consumer_case(read_lag_ms: u64) {
    let gw = Arc::new(
        start(|c| {
            // Also the healthy reader's limit: a second is more than a
            // loaded machine keeps the test's reader from running.
            c.session.slow_consumer_ms = 1000;
            c.session.send_buffer_bytes = 4096;
            c.session.close_grace_ms = 60_000;
            c.session.read_lag_ms = read_lag_ms;
            // A window smaller than the socket's buffers: probes are
            // waiting in the stalled client's buffer when it is closed.
            c.session.read_window_min_bytes = 2048;
            c.session.read_window_max_bytes = 2048;
        })
        .await,
    );
    let syms: Vec<String> = (0..40)
        .map(|i| tickergate::feed::sim::symbol_names(40)[i].clone())
        .collect();
    let sym_refs: Vec<&str> = syms.iter().map(|s| s.as_str()).collect();

    // The slow client: a tiny receive buffer, and it stops reading after
    // its subscription is acknowledged.
    let mut slow = connect_tiny_rcvbuf(gw.local_addr).await;
    slow.subscribe(1, &sym_refs).await;

    let (mut healthy, _) = Client::connect_welcomed(gw.local_addr).await;
    healthy.subscribe(1, &sym_refs).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_publisher(gw.clone(), syms.clone(), stop.clone());
    // The healthy client reads all along until the slow one is closed.
    let closed = {
        let gw = gw.clone();
        move || {
            let t = metrics_text(&gw);
            metric(&t, r#"tickergate_disconnects_total{code="4008"}"#) >= 1.0
        }
    };
    healthy
        .read_until_done("the slow consumer closed", closed)
        .await;
    // Data still flows to the healthy client after the close.
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let marker = publish(&gw, &syms[0], quote("999.99", "1", "1000.00", "1"));
    let (q, _) = healthy
        .recv_until(|m| m["symbol"] == syms[0].as_str() && m["seq"].as_u64() == Some(marker))
        .await;
    assert_eq!(q["bid"], "999.99");
    // The slow client, reading again, drains and finds the 4008 close.
    assert_eq!(slow.recv_close().await, Some(4008));
    let text = metrics_text(&gw);
    assert_eq!(
        metric(&text, r#"tickergate_disconnects_total{code="4008"}"#),
        1.0
    );
}

/// Pongs are never lost or stuck behind a flood of data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_replies_are_not_dropped_behind_data() {
    let gw = Arc::new(start(|_| {}).await);
    let syms = tickergate::feed::sim::symbol_names(100);
    let refs: Vec<&str> = syms.iter().map(|s| s.as_str()).collect();
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &refs).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (gw, stop, syms) = (gw.clone(), stop.clone(), syms.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                for s in &syms {
                    publish(&gw, s, nth_quote(i % 10_000));
                }
                i += 1;
                tokio::task::yield_now().await;
            }
        })
    };
    let mut pongs = BTreeSet::new();
    let mut quotes = 0;
    for id in 0..10 {
        c.send(json!({"op":"ping","id":id})).await;
        let (p, skipped) = c.recv_until(|m| m["type"] == "pong").await;
        quotes += skipped.iter().filter(|m| m["type"] == "quote").count();
        assert!(pongs.insert(p["id"].as_i64().unwrap()), "each pong once");
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert_eq!(pongs, (0..10).collect());
    assert!(quotes > 0, "data was flowing around the pongs");
}

/// 1,000 concurrent clients, each with its own pair of symbols: every
/// client gets snapshots and live updates for exactly its symbols.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_each_get_their_own_symbols() {
    const CLIENTS: usize = 1000;
    // All 1,000 come from 127.0.0.1: lift the per-address connection rate.
    let gw = Arc::new(
        start(|c| {
            sim_cfg(c).symbols = 300;
            c.server.conn_rate_per_ip = 100_000;
            c.server.conn_burst_per_ip = 100_000;
        })
        .await,
    );
    let names = tickergate::feed::sim::symbol_names(300);
    for (i, n) in names.iter().enumerate() {
        publish(&gw, n, nth_quote(i as u64));
    }
    let mine = |i: usize| -> Vec<String> {
        let a = i % 300;
        let b = (i * 7 + 13) % 300;
        let b = if b == a { (b + 1) % 300 } else { b };
        vec![names[a].clone(), names[b].clone()]
    };
    // Connect and subscribe everyone, with bounded concurrency.
    let sem = Arc::new(tokio::sync::Semaphore::new(100));
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let (addr, sem, syms) = (gw.local_addr, sem.clone(), mine(i));
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.unwrap();
            let (mut c, _) = Client::connect_welcomed(addr).await;
            let refs: Vec<&str> = syms.iter().map(|s| s.as_str()).collect();
            c.subscribe(i as i64, &refs).await;
            let mut snap = HashMap::new();
            while snap.len() < 2 {
                let q = c.recv_type("quote").await;
                assert_eq!(q["snapshot"], true);
                snap.insert(
                    q["symbol"].as_str().unwrap().to_string(),
                    q["seq"].as_u64().unwrap(),
                );
            }
            drop(permit);
            (c, syms, snap)
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        let (c, syms, snap) = t.await.unwrap();
        let got: BTreeSet<&String> = snap.keys().collect();
        let want: BTreeSet<&String> = syms.iter().collect();
        assert_eq!(got, want, "snapshot holds exactly the client's symbols");
        clients.push((c, syms));
    }
    assert_eq!(gw.metrics().connections.get(), CLIENTS as i64);
    // One live update per symbol; each client must see its two, and only
    // its two.
    for (i, n) in names.iter().enumerate() {
        publish(&gw, n, nth_quote(1000 + i as u64));
    }
    let mut tasks = Vec::new();
    for (mut c, syms) in clients {
        tasks.push(tokio::spawn(async move {
            let mut seen = BTreeSet::new();
            while seen.len() < 2 {
                let q = c.recv_type("quote").await;
                let s = q["symbol"].as_str().unwrap().to_string();
                assert!(
                    syms.contains(&s),
                    "client got {s}, which it never asked for"
                );
                assert_eq!(q["seq"], 2, "the live update");
                assert!(q.get("snapshot").is_none());
                seen.insert(s);
            }
            c
        }));
    }
    let mut keep = Vec::new();
    for t in tasks {
        keep.push(t.await.unwrap());
    }
    let text = metrics_text(&gw);
    assert_eq!(
        metric(&text, "tickergate_subscriptions"),
        (CLIENTS * 2) as f64
    );
    drop(keep);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribed_and_closed_clients_leave_no_interest_behind() {
    let gw = start(|_| {}).await;
    {
        let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
        c.subscribe(1, &["AAPL", "MSFT"]).await;
        let _ = c.ws.close(None).await;
        while c.ws.next().await.is_some() {}
    }
    wait_for("session gone", || gw.metrics().connections.get() == 0).await;
    assert_eq!(gw.metrics().subscriptions.get(), 0);
    let sym = gw.symbols().get("AAPL").unwrap();
    // No shard is marked for a symbol nobody holds.
    gw.slots().publish(sym, &nth_quote(1));
    for s in 0..gw.slots().shard_count() {
        let mut dirty = Vec::new();
        gw.slots().shard(s).drain(|x| dirty.push(x));
        assert!(!dirty.contains(&sym), "shard {s} still interested in AAPL");
    }
}

/// Frames are cut at `max_frame_bytes`; the rest follows in later frames and
/// every symbol gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_are_split_across_frames_without_loss() {
    let gw = start(|c| c.session.max_frame_bytes = 1024).await;
    let names = tickergate::feed::sim::symbol_names(200);
    for (i, n) in names.iter().enumerate() {
        publish(&gw, n, nth_quote(i as u64));
    }
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.send(json!({"op":"subscribe","id":1,"symbols":refs}))
        .await;
    let mut got = BTreeSet::new();
    let mut frames = 0;
    while got.len() < names.len() {
        match c.next_event().await {
            Event::Msgs(ms) => {
                frames += 1;
                let bytes = serde_json::to_string(&ms).unwrap().len();
                // Cut at the limit: at most one message past it.
                assert!(bytes < 1024 + 400, "frame of {bytes} bytes");
                for m in ms {
                    if m["type"] == "quote" {
                        assert!(
                            got.insert(m["symbol"].as_str().unwrap().to_string()),
                            "no duplicates"
                        );
                    }
                }
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        frames > 10,
        "200 quotes need many 1 KiB frames, got {frames}"
    );
}

/// The simulator's burst mode ticks every symbol together: after each burst
/// all symbols have moved the same number of times (a random-walk feed with
/// Zipf popularity would leave the tail far behind the head), and a client
/// subscribed to the whole board sees every symbol move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_burst_mode_ticks_every_symbol_together() {
    const N: usize = 40;
    let gw = start(|c| {
        let s = sim_cfg(c);
        s.symbols = N;
        s.burst_hz = 50.0;
        s.zipf = 1.1;
    })
    .await;
    let names = tickergate::feed::sim::symbol_names(N);
    let ids: Vec<_> = names
        .iter()
        .map(|n| gw.symbols().get(n).expect("sim symbol interned"))
        .collect();
    let mut c = Client::connect(gw.local_addr).await;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    c.subscribe(1, &refs).await;
    wait_for("five bursts", || gw.slots().seq(ids[0]) >= 5).await;
    // A burst ticks symbols in order 0, 1, .., N-1, so at any instant
    // seq(0) - 1 <= seq(i) <= seq(0). Reading the head before and after
    // each symbol bounds it without depending on timing.
    for &id in &ids[1..] {
        let before = gw.slots().seq(ids[0]);
        let s = gw.slots().seq(id);
        let after = gw.slots().seq(ids[0]);
        assert!(
            before - 1 <= s && s <= after,
            "symbol {id:?}: seq {s}, head {before}..{after}"
        );
    }
    let mut seen = BTreeSet::new();
    while seen.len() < N {
        let q = c.recv_type("quote").await;
        seen.insert(q["symbol"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(seen.len(), N);
}

/// A session with nothing to write parks its subscriptions with the
/// fan-out, which then writes its frames itself: every update arrives, in
/// seq order, the direct frames are counted in `frames_direct_total`, and
/// the session's own task still answers ops between them (it takes the
/// subscriptions back first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_sessions_get_frames_written_by_the_fanout() {
    let gw = start(|_| {}).await;
    let (mut c, _) = Client::connect_welcomed(gw.local_addr).await;
    c.subscribe(1, &["AAPL", "MSFT"]).await;
    let mut seen = Vec::new();
    for i in 0..40u64 {
        let sym = if i % 2 == 0 { "AAPL" } else { "MSFT" };
        let seq = publish(&gw, sym, nth_quote(i));
        // One update at a time, each read before the next, so the session
        // is asleep (parked) when the next one is published.
        let (q, _) = c
            .recv_until(|m| m["type"] == "quote" && m["symbol"] == sym)
            .await;
        assert_eq!(q["seq"].as_u64(), Some(seq), "update {i}");
        assert_eq!(q["bid"], px(i).as_str());
        seen.push(seq);
        if i == 20 {
            // An op in between: answered by the task, and direct writes
            // resume after it.
            c.send(json!({"op":"subscribe","id":2,"symbols":["BTC-USD"]}))
                .await;
            let ack = c.recv_type("subscribed").await;
            assert_eq!(ack["id"], 2);
        }
    }
    let text = metrics_text(&gw);
    let direct = metric(&text, "tickergate_frames_direct_total");
    let frames = metric(&text, "tickergate_frames_out_total");
    assert!(direct >= 20.0, "only {direct} of 40 updates went direct");
    assert!(direct < frames, "direct {direct} out of {frames} frames");
    // A burst while parked: one direct frame per pass carries the newest.
    let mut last = 0;
    for i in 0..30u64 {
        last = publish(&gw, "BTC-USD", nth_quote(i));
    }
    let (q, _) = c
        .recv_until(|m| m["symbol"] == "BTC-USD" && m["seq"].as_u64() == Some(last))
        .await;
    assert_eq!(q["bid"], px(29).as_str());
}

/// A reader that stalls again and again behind tiny socket buffers: the
/// fan-out's direct writes fill the socket, the rest of a frame goes back
/// to the session's task, and the client still gets whole, valid frames
/// with every symbol's seq rising, then the newest value, and is not
/// closed (its stalls are shorter than `slow_consumer_ms`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalling_reader_gets_whole_frames_in_order() {
    let gw = Arc::new(
        start(|c| {
            c.session.send_buffer_bytes = 4096;
            c.session.slow_consumer_ms = 10_000;
        })
        .await,
    );
    let syms: Vec<String> = tickergate::feed::sim::symbol_names(40);
    let sym_refs: Vec<&str> = syms.iter().map(|s| s.as_str()).collect();
    let mut c = connect_tiny_rcvbuf(gw.local_addr).await;
    c.subscribe(1, &sym_refs).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_publisher(gw.clone(), syms.clone(), stop.clone());
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut check = |m: &serde_json::Value| {
        if m["type"] == "quote" {
            let sym = m["symbol"].as_str().unwrap().to_string();
            let seq = m["seq"].as_u64().unwrap();
            let prev = last.insert(sym.clone(), seq).unwrap_or(0);
            assert!(seq > prev, "{sym}: seq {seq} after {prev}");
        }
    };
    // Read in bursts with stalls in between, for about a second.
    for _ in 0..20 {
        for _ in 0..30 {
            let m = c.next_msg().await;
            check(&m);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let marker = publish(&gw, &syms[0], quote("999.99", "1", "1000.00", "1"));
    let (q, skipped) = c
        .recv_until(|m| m["symbol"] == syms[0].as_str() && m["seq"].as_u64() == Some(marker))
        .await;
    for m in &skipped {
        check(m);
    }
    assert_eq!(q["bid"], "999.99");
    let text = metrics_text(&gw);
    assert!(metric(&text, "tickergate_frames_direct_total") > 0.0);
    assert_eq!(
        metric(&text, r#"tickergate_disconnects_total{code="4008"}"#),
        0.0
    );
}
