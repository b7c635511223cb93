//! Failures: a killed ingest, a lost nats-server, a lost memory stream,
//! a stream made by an older build.

use super::*;

/// SIGKILL the ingest: its status stops, and after `stale_after_ms` both
/// edges mark its symbols stale (clients told, `/v1/feeds` says so).
/// Started again with the same config, it reads its seqs back from the
/// stream: the symbols go live, and the next quote's seq goes on past the
/// stored one by its lag (`Tg-Lag`), so past every seq clients saw though
/// the last quotes before the kill were not stored yet (stored every 3
/// seqs here, and by time only every 10 s), not from 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn killed_ingest_goes_stale_and_its_restart_goes_on_numbering() {
    const SYMS: [&str; 2] = ["AAPL", "MSFT"];
    let dir = Scratch::new("ingest-kill");
    let nats = NatsServer::start(&dir.0).await;
    let toml = with_cluster(
        ingest_toml(&nats, "t2", &SYMS),
        "last_value_interval_ms = 10000\nlast_value_max_lag = 3\n",
    );
    let mut ingest = Node::start(&dir.0, "ingest", &toml).await;
    let edge_a = Node::start(&dir.0, "edge-a", &edge_toml(&nats, "t2", 1000, "")).await;
    let edge_b = Node::start(&dir.0, "edge-b", &edge_toml(&nats, "t2", 1000, "")).await;
    let mut clients = Vec::new();
    for e in [&edge_a, &edge_b] {
        wait_learned(e.addr, None, &SYMS).await;
        wait_feed_state(e.addr, None, "live").await;
        let (mut c, _) = Client::connect_welcomed(e.addr).await;
        c.subscribe(1, &SYMS).await;
        clients.push(c);
    }
    let mut p = Pusher::new(ingest.addr);
    let mut seen_max = 0;
    // Seq 1 is stored (a symbol's first), 4 (3 on), 5 not before a tick.
    for _ in 0..5 {
        let want = p.push(&SYMS).await;
        for c in &mut clients {
            let got = read_quotes(c, &want).await;
            seen_max = seen_max.max(got.iter().map(|q| q.1).max().unwrap());
        }
    }
    assert_eq!(seen_max, 5);

    ingest.kill();
    let (last, lag) = stored(&nats, "T2_LAST", "t2.lv.AAPL")
        .await
        .expect("AAPL's last value is stored");
    assert_eq!(lag, 3, "the lag it was stored with: {last}");
    let stored_seq = last["seq"].as_u64().unwrap();
    assert!(
        (4..=5).contains(&stored_seq),
        "stored at most 3 seqs behind: {last}"
    );
    for c in &mut clients {
        read_status(c, "stale", &SYMS).await;
    }
    for e in [&edge_a, &edge_b] {
        wait_feed_state(e.addr, None, "stale").await;
        let (st, r) = readyz(e.addr).await;
        assert_eq!(st, 503, "a stale feed is not ready: {r}");
        assert_eq!(r["nats"], true, "{r}");
    }

    ingest.restart().await;
    for c in &mut clients {
        read_status(c, "live", &SYMS).await;
    }
    for e in [&edge_a, &edge_b] {
        wait_feed_state(e.addr, None, "live").await;
    }
    // The restarted ingest numbers on past the stored seq by its lag.
    p.addr = ingest.addr;
    p.renumber("AAPL", stored_seq + lag);
    let want = p.push(&["AAPL"]).await;
    // An ingest node answers REST: the seq it gave (numbering from 1
    // again would be refused as old by every edge).
    let (_, body) = http_get(ingest.addr, "/v1/quotes?symbols=AAPL").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v[0]["seq"], want[0].1,
        "the restarted ingest numbers on: {body}"
    );
    for c in &mut clients {
        let got = read_quotes(c, &want).await;
        assert!(
            got[0].1 > seen_max,
            "seq {} goes on past {seen_max}: {got:?}",
            got[0].1
        );
        assert_eq!(got, want, "exactly that seq, and nothing sent again");
    }
    let (_, m) = http_get(edge_a.addr, "/metrics").await;
    assert!(
        m.contains("tickergate_cluster_refused_total{reason=\"old\"} 0"),
        "no seq of the restarted ingest is refused as one seen before"
    );
    let log = std::fs::read_to_string(&ingest.log).unwrap();
    assert!(
        log.contains("resumed=2"),
        "the restart resumed both symbols:\n{log}"
    );
}

/// SIGKILL nats-server: the edges lose it, their symbols go stale and
/// `/readyz` says not ready with `"nats": false`. A quote the ingest
/// accepts meanwhile is kept. nats-server started again on the same port
/// and store: the symbols go live, the kept quote arrives, and the next
/// one's seq is higher still.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn nats_outage_goes_stale_and_recovers_on_restart() {
    const SYMS: [&str; 2] = ["AAPL", "MSFT"];
    let dir = Scratch::new("nats-kill");
    let mut nats = NatsServer::start(&dir.0).await;
    let ingest = Node::start(&dir.0, "ingest", &ingest_toml(&nats, "t3", &SYMS)).await;
    let edge = Node::start(&dir.0, "edge", &edge_toml(&nats, "t3", 1000, "")).await;
    wait_learned(edge.addr, None, &SYMS).await;
    wait_feed_state(edge.addr, None, "live").await;
    let (mut c, _) = Client::connect_welcomed(edge.addr).await;
    c.subscribe(1, &SYMS).await;
    let mut p = Pusher::new(ingest.addr);
    for _ in 0..3 {
        let want = p.push(&SYMS).await;
        assert_same(
            &read_quotes(&mut c, &want).await,
            &want,
            "before the outage",
        );
    }

    nats.kill();
    read_status(&mut c, "stale", &SYMS).await;
    let (edge_addr, ingest_addr) = (edge.addr, ingest.addr);
    eventually("edge /readyz: not ready, nats false", || async move {
        let (st, r) = readyz(edge_addr).await;
        (st == 503 && r["ready"] == false && r["nats"] == false).then_some(())
    })
    .await;
    eventually("ingest /readyz: nats false", || async move {
        let (st, r) = readyz(ingest_addr).await;
        (st == 503 && r["nats"] == false).then_some(())
    })
    .await;
    // The ingest's HTTP feed still takes quotes; they wait in its slots.
    let during = p.push(&["AAPL"]).await;

    nats.restart().await;
    // Live again, and the quote from the outage arrives (in either order:
    // the edge may read it from the stream before the first status).
    let mut quotes = read_status(&mut c, "live", &SYMS).await;
    if !quotes.iter().any(|q| *q == during[0]) {
        quotes.extend(read_quotes(&mut c, &during).await);
    }
    assert_eq!(
        quotes, during,
        "the quote accepted during the outage, once, and nothing sent again"
    );
    let after = p.push(&SYMS).await;
    assert_same(
        &read_quotes(&mut c, &after).await,
        &after,
        "after the outage",
    );
    assert!(after[0].1 > during[0].1);
    eventually("edge /readyz ready again", || async move {
        let (st, r) = readyz(edge_addr).await;
        (st == 200 && r["ready"] == true && r["nats"] == true).then_some(())
    })
    .await;
}

/// `storage = "memory"`: a NATS restart loses the stream. The ingest
/// makes it again and stores its own epoch (the one its seqs go on in)
/// and its values, so an edge started afterwards serves the same epoch and
/// seqs as one that was there all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn memory_stream_lost_with_nats_comes_back_with_the_same_epoch() {
    let dir = Scratch::new("memory");
    let mut nats = NatsServer::start(&dir.0).await;
    let toml = with_cluster(
        ingest_toml(&nats, "t9", &["AAPL"]),
        "storage = \"memory\"\n",
    );
    let ingest = Node::start(&dir.0, "ingest", &toml).await;
    let early = Node::start(&dir.0, "edge-early", &edge_toml(&nats, "t9", 1000, "")).await;
    wait_learned(early.addr, None, &["AAPL"]).await;
    wait_feed_state(early.addr, None, "live").await;
    let mut p = Pusher::new(ingest.addr);
    let (mut a, wa) = Client::connect_welcomed(early.addr).await;
    a.subscribe(1, &["AAPL"]).await;
    for _ in 0..2 {
        let want = p.push(&["AAPL"]).await;
        assert_eq!(read_quotes(&mut a, &want).await, want);
    }
    let epoch = stored_epoch(&nats, "T9_LAST", "t9.epoch").await.unwrap();
    assert_eq!(wa["epoch"], epoch.as_str());

    nats.kill();
    nats.restart().await;
    let n = &nats;
    let again = eventually("the ingest to store an epoch again", move || async move {
        stored_epoch(n, "T9_LAST", "t9.epoch").await
    })
    .await;
    assert_eq!(
        again, epoch,
        "the ingest stores the epoch its seqs go on in"
    );
    let late = Node::start(&dir.0, "edge-late", &edge_toml(&nats, "t9", 1000, "")).await;
    wait_learned(late.addr, None, &["AAPL"]).await;
    wait_feed_state(late.addr, None, "live").await;
    let (mut b, wb) = Client::connect_welcomed(late.addr).await;
    assert_eq!(
        wb["epoch"],
        epoch.as_str(),
        "the late edge serves the same epoch"
    );
    b.subscribe(1, &["AAPL"]).await;
    // The ingest wrote its values again: the late edge starts from seq 2.
    let last = p.last(&["AAPL"]);
    assert_eq!(read_quotes(&mut b, &last).await, last);
    let want = p.push(&["AAPL"]).await;
    assert_eq!(read_quotes(&mut a, &want).await, want);
    assert_eq!(read_quotes(&mut b, &want).await, want);
}

/// A stream made by a build that stored every quote (`<prefix>.q.>`) is
/// not used as it is: the ingest refuses to start and says what to do,
/// instead of numbering on from values that are no longer written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn an_ingest_refuses_a_stream_that_stores_every_quote() {
    let dir = Scratch::new("old-layout");
    let nats = NatsServer::start(&dir.0).await;
    let nc = async_nats::connect(nats.url())
        .await
        .expect("connect to NATS");
    async_nats::jetstream::new(nc)
        .create_stream(async_nats::jetstream::stream::Config {
            name: "T14_LAST".into(),
            subjects: vec!["t14.q.>".into(), "t14.status.>".into(), "t14.epoch".into()],
            max_messages_per_subject: 1,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .expect("the old layout's stream");
    let config = dir.0.join("ingest.toml");
    std::fs::write(&config, ingest_toml(&nats, "t14", &["AAPL"])).unwrap();
    let log = dir.0.join("ingest.log");
    let (status, log_text) = tokio::task::spawn_blocking(move || {
        let mut child = Proc(
            Command::new(BIN)
                .arg("--config")
                .arg(&config)
                .args(["--listen", "127.0.0.1:0"])
                .stdout(Stdio::null())
                .stderr(append(&log))
                .spawn()
                .expect("spawn tickergate"),
        );
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(st) = child.0.try_wait().expect("wait") {
                break st;
            }
            assert!(Instant::now() < deadline, "the ingest did not stop");
            std::thread::sleep(POLL);
        };
        (status, std::fs::read_to_string(&log).unwrap_or_default())
    })
    .await
    .unwrap();
    assert!(!status.success(), "{status}; log:\n{log_text}");
    assert!(
        log_text.contains("stores every quote") && log_text.contains("nats stream rm T14_LAST"),
        "the error says what is wrong and what to do:\n{log_text}"
    );
}
