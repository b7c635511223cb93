//! Edges serve what the ingest publishes: the same quotes and seqs on
//! every edge, symbols and the epoch learned from the feeds' status,
//! consolidated quotes, last values read from the stream.

use super::*;

/// An ingest and two edges, one started after the other with quotes in
/// between: both edges serve each symbol's quotes with the ingest's seqs,
/// byte-exact values and the cluster's epoch, and a new subscriber first
/// gets the last value from the stream, with its seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn two_edges_deliver_the_ingests_quotes_and_seqs() {
    const SYMS: [&str; 3] = ["AAPL", "MSFT", "BRK.B"];
    let dir = Scratch::new("identical");
    let nats = NatsServer::start(&dir.0).await;
    let ingest = Node::start(&dir.0, "ingest", &ingest_toml(&nats, "t1", &SYMS)).await;
    // An ingest node serves no clients.
    for path in ["/v1/ws", "/v1/sse?symbols=AAPL"] {
        let (st, body) = http_get(ingest.addr, path).await;
        assert_eq!(st, 404, "{path}: {body}");
    }
    let ingest_addr = ingest.addr;
    eventually("the ingest ready, with NATS", || async move {
        let (st, r) = readyz(ingest_addr).await;
        (st == 200 && r["nats"] == true).then_some(())
    })
    .await;
    let mut p = Pusher::new(ingest.addr);
    // Values before any edge exists: AAPL seq 3, MSFT 2, BRK.B 1.
    for syms in [&SYMS[..], &["AAPL", "MSFT"], &["AAPL"]] {
        p.push(syms).await;
    }
    assert_eq!((p.seq("AAPL"), p.seq("MSFT"), p.seq("BRK.B")), (3, 2, 1));

    let edge_a = Node::start(&dir.0, "edge-a", &edge_toml(&nats, "t1", 1000, "")).await;
    wait_learned(edge_a.addr, None, &SYMS).await;
    wait_feed_state(edge_a.addr, None, "live").await;
    let (mut a, wa) = Client::connect_welcomed(edge_a.addr).await;
    // The edge reads each symbol's last value from the stream: value and
    // seq as the ingest numbered them, once each (once they are stored).
    let want = p.last(&SYMS);
    wait_stored(&nats, "t1", &want).await;
    a.subscribe(1, &SYMS).await;
    let mut first_a = read_quotes(&mut a, &want).await;
    first_a.sort();
    assert_eq!(first_a, want, "the last values from the stream");
    // Quotes only edge A sees: AAPL is at seq 5 when edge B comes.
    for _ in 0..2 {
        let want = p.push(&["AAPL"]).await;
        assert_eq!(read_quotes(&mut a, &want).await, want);
    }

    let edge_b = Node::start(&dir.0, "edge-b", &edge_toml(&nats, "t1", 1000, "")).await;
    wait_learned(edge_b.addr, None, &SYMS).await;
    wait_feed_state(edge_b.addr, None, "live").await;
    let (mut b, wb) = Client::connect_welcomed(edge_b.addr).await;
    let want = p.last(&SYMS);
    assert_eq!(want[0].1, 5, "AAPL: {want:?}");
    wait_stored(&nats, "t1", &want).await;
    b.subscribe(1, &SYMS).await;
    let mut first_b = read_quotes(&mut b, &want).await;
    first_b.sort();
    assert_eq!(first_b, want, "edge B starts from the ingest's seqs");

    // Every node serves the cluster's epoch, the one in the stream.
    let epoch = wa["epoch"].as_str().unwrap().to_string();
    assert_eq!(wb["epoch"], epoch.as_str(), "both edges serve one epoch");
    let nc = async_nats::connect(nats.url())
        .await
        .expect("connect to NATS");
    let js = async_nats::jetstream::new(nc);
    let stream = js
        .get_stream("T1_LAST")
        .await
        .expect("the ingest made the stream");
    let info = &stream.cached_info().config;
    assert_eq!(info.max_messages_per_subject, 1, "a last-value stream");
    for s in ["t1.lv.>", "t1.status.>", "t1.epoch"] {
        assert!(info.subjects.iter().any(|x| x == s), "{:?}", info.subjects);
    }
    assert!(
        !info.subjects.iter().any(|x| x.starts_with("t1.q")),
        "live quotes are not stored: {:?}",
        info.subjects
    );
    let stored = stream
        .direct_get_last_for_subject("t1.epoch")
        .await
        .expect("the epoch is stored");
    let stored: Value = serde_json::from_slice(&stored.payload).unwrap();
    assert_eq!(stored["epoch"], epoch.as_str(), "{stored}");
    // The stream holds BRK.B's last value under its encoded subject.
    let brk = stream
        .direct_get_last_for_subject("t1.lv.BRK~2EB")
        .await
        .expect("BRK.B's last value");
    let brk: Value = serde_json::from_slice(&brk.payload).unwrap();
    assert_eq!((&brk["symbol"], &brk["seq"]), (&json!("BRK.B"), &json!(1)));

    // Both edges now: every quote, in lockstep (each round is read by both
    // clients before the next is pushed, so nothing is coalesced and the
    // lists are exact).
    let (mut got_a, mut got_b, mut want) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..30 {
        let syms: &[&str] = if i % 3 == 0 { &SYMS } else { &SYMS[..2] };
        let round = p.push(syms).await;
        got_a.extend(read_quotes(&mut a, &round).await);
        got_b.extend(read_quotes(&mut b, &round).await);
        want.extend(round);
    }
    let (pa, pb) = (per_symbol(&got_a), per_symbol(&got_b));
    assert_eq!(
        pa, pb,
        "both edges deliver the same (symbol, seq, bid, ask) per symbol"
    );
    assert_eq!(
        pa,
        per_symbol(&want),
        "and exactly what the ingest numbered"
    );
    assert_eq!(pa["AAPL"].last().unwrap().1, p.seq("AAPL"));

    for e in [&edge_a, &edge_b] {
        let (st, r) = readyz(e.addr).await;
        assert_eq!(st, 200, "{r}");
        assert_eq!(
            (&r["ready"], &r["nats"]),
            (&json!(true), &json!(true)),
            "{r}"
        );
        let (_, body) = http_get(e.addr, "/v1/quotes?symbols=AAPL").await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v[0]["seq"], p.seq("AAPL"), "REST on an edge: {body}");
    }
}

/// An ingest restarted with one symbol swapped for another (as many
/// symbols as before): the edge learns the new one and serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn edge_learns_a_symbol_swapped_on_the_ingest() {
    let dir = Scratch::new("swap");
    let nats = NatsServer::start(&dir.0).await;
    let mut ingest = Node::start(
        &dir.0,
        "ingest",
        &ingest_toml(&nats, "t8", &["AAPL", "MSFT"]),
    )
    .await;
    let edge = Node::start(&dir.0, "edge", &edge_toml(&nats, "t8", 1000, "")).await;
    wait_learned(edge.addr, None, &["AAPL", "MSFT"]).await;
    ingest.kill();
    std::fs::write(&ingest.config, ingest_toml(&nats, "t8", &["AAPL", "TSLA"])).unwrap();
    ingest.restart().await;
    wait_learned(edge.addr, None, &["TSLA"]).await;
    wait_feed_state(edge.addr, None, "live").await;
    let (mut c, _) = Client::connect_welcomed(edge.addr).await;
    c.subscribe(1, &["TSLA"]).await;
    let mut p = Pusher::new(ingest.addr);
    let want = p.push(&["TSLA"]).await;
    assert_eq!(read_quotes(&mut c, &want).await, want);
    // MSFT, which the feed no longer lists, is stale there for good (not
    // live without updates), while the feed itself is live.
    let (mut m, _) = Client::connect_welcomed(edge.addr).await;
    m.subscribe(2, &["MSFT"]).await;
    read_status(&mut m, "stale", &["MSFT"]).await;
    let (_, feeds) = http_get(edge.addr, "/v1/feeds").await;
    let feeds: Value = serde_json::from_str(&feeds).unwrap();
    assert_eq!(feeds[0]["state"], "live", "{feeds}");
    assert_eq!(feeds[0]["symbols"], 2, "{feeds}");
}

/// An edge started before any ingest (no stream, no epoch yet: an
/// orchestrator starting everything at once) learns the feed when the
/// ingest comes, serves its values with its seqs, and tells its clients
/// the cluster's epoch, the same as an edge started after the ingest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn edge_started_before_the_ingest_serves_the_cluster_epoch() {
    const SYMS: [&str; 2] = ["AAPL", "MSFT"];
    let dir = Scratch::new("edge-first");
    let nats = NatsServer::start(&dir.0).await;
    let early = Node::start(&dir.0, "edge-early", &edge_toml(&nats, "t7", 1000, "")).await;
    let ingest = Node::start(&dir.0, "ingest", &ingest_toml(&nats, "t7", &SYMS)).await;
    let mut p = Pusher::new(ingest.addr);
    p.push(&SYMS).await;
    let late = Node::start(&dir.0, "edge-late", &edge_toml(&nats, "t7", 1000, "")).await;
    let mut epochs = Vec::new();
    for e in [&early, &late] {
        wait_learned(e.addr, None, &SYMS).await;
        wait_feed_state(e.addr, None, "live").await;
        let (mut c, w) = Client::connect_welcomed(e.addr).await;
        let last = p.last(&SYMS);
        wait_stored(&nats, "t7", &last).await;
        c.subscribe(1, &SYMS).await;
        assert_same(&read_quotes(&mut c, &last).await, &last, "last values");
        let next = p.push(&SYMS).await;
        assert_same(&read_quotes(&mut c, &next).await, &next, "live values");
        epochs.push(w["epoch"].as_str().unwrap().to_string());
    }
    let stored = stored_epoch(&nats, "T7_LAST", "t7.epoch").await.unwrap();
    assert_eq!(epochs[1], stored, "the late edge");
    assert_eq!(
        epochs[0], epochs[1],
        "an edge started before the ingest serves the cluster's epoch too"
    );
    for e in [&early, &late] {
        let (_, m) = http_get(e.addr, "/metrics").await;
        let refused = r#"tickergate_cluster_refused_total{reason="epoch"}"#;
        assert_eq!(
            metric(&m, refused),
            0.0,
            "{}: statuses of its own epoch",
            e.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn consolidated_quotes_name_their_venues_on_an_edge() {
    // Two venues (HTTP feeds with their own keys) quote one instrument;
    // the ingest consolidates them into X. An edge's client gets X with
    // the venue of each side named, as a standalone gateway's would.
    const KEY_B: &str = "cluster-test-push-key-b";
    let dir = Scratch::new("venues");
    let nats = NatsServer::start(&dir.0).await;
    let cfg = format!(
        r#"{}node = "ingest-t12"

[[feeds]]
kind = "http"
name = "venue-a"
key_sha256 = "{}"
symbols = ["A-X"]
stale_after_ms = 0

[[feeds]]
kind = "http"
name = "venue-b"
key_sha256 = "{}"
symbols = ["B-X"]
stale_after_ms = 0

[[consolidated]]
symbol = "X"
from = ["A-X", "B-X"]
"#,
        common_toml("ingest", &nats, "t12"),
        token_hash_hex(PUSH_KEY),
        token_hash_hex(KEY_B),
    );
    let ingest = Node::start(&dir.0, "ingest", &cfg).await;
    let edge = Node::start(&dir.0, "edge-t12", &edge_toml(&nats, "t12", 50, "")).await;
    wait_learned(edge.addr, None, &["X", "A-X", "B-X"]).await;
    let (mut on_edge, _) = Client::connect_welcomed(edge.addr).await;
    on_edge.subscribe(1, &["X"]).await;

    // venue-a has the better bid, venue-b the better ask (the edge may
    // take this one from the last-value stream, the next one is live).
    let post = |key, body: Value| async move {
        let (st, r) = ingest_post(ingest.addr, key, &format!("{body}\n")).await;
        assert_eq!((st, &r["accepted"]), (200, &json!(1)), "{r}");
    };
    post(PUSH_KEY, line("A-X", "100.25", "101.75")).await;
    post(KEY_B, line("B-X", "100.00", "100.50")).await;
    let both = |m: &Value| m["type"] == "quote" && m["symbol"] == "X" && m["ask"] == "100.50";
    let (e, _) = on_edge.recv_until(both).await;
    assert_eq!(
        (&e["bid"], &e["bid_venue"], &e["ask"], &e["ask_venue"]),
        (
            &json!("100.25"),
            &json!("venue-a"),
            &json!("100.50"),
            &json!("venue-b")
        ),
        "{e}"
    );

    // venue-b takes the bid too: the edge names it.
    post(KEY_B, line("B-X", "100.40", "100.50")).await;
    let (e, _) = on_edge
        .recv_until(|m| m["symbol"] == "X" && m["bid"] == "100.40")
        .await;
    assert_eq!(
        (&e["bid_venue"], &e["ask_venue"]),
        (&json!("venue-b"), &json!("venue-b")),
        "{e}"
    );
}

/// An ingest stores a symbol's last value up to `last_value_interval_ms`
/// after the value went out live (live quotes are not stored). A client
/// that subscribes on an edge in between gets the older stored value
/// first; the edge reads the symbol's value once more after that
/// interval, so the symbol, quiet from then on, does not stay behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn a_value_stored_after_an_edge_subscribed_still_reaches_it() {
    let dir = Scratch::new("store-window");
    let nats = NatsServer::start(&dir.0).await;
    let slow = "last_value_interval_ms = 2000\n";
    let toml = with_cluster(ingest_toml(&nats, "t13", &["AAPL"]), slow);
    let ingest = Node::start(&dir.0, "ingest", &toml).await;
    let edge = Node::start(&dir.0, "edge", &edge_toml(&nats, "t13", 1000, slow)).await;
    wait_learned(edge.addr, None, &["AAPL"]).await;
    wait_feed_state(edge.addr, None, "live").await;
    let mut p = Pusher::new(ingest.addr);
    // A symbol's first value is stored at once.
    let first = p.push(&["AAPL"]).await;
    let n = &nats;
    eventually("AAPL's first value stored", move || async move {
        let (v, _) = stored(n, "T13_LAST", "t13.lv.AAPL").await?;
        (v["seq"] == 1).then_some(())
    })
    .await;
    // The next one goes out live to nobody and is stored at a tick.
    let second = p.push(&["AAPL"]).await;
    let (mut c, _) = Client::connect_welcomed(edge.addr).await;
    c.subscribe(1, &["AAPL"]).await;
    let got = read_quotes(&mut c, &second).await;
    assert_eq!(got.last(), second.last(), "the newest value: {got:?}");
    assert!(
        got == second || got == [first[0].clone(), second[0].clone()],
        "the stored value, then the newer one, or the newer one at once: {got:?}"
    );
}
