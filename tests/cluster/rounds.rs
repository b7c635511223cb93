//! Publishing rounds: whole on `<prefix>.r.<node>`, held on an edge until
//! their last message.

use super::*;

/// A publishing round goes out whole on `<prefix>.r.<node>` (issue 18's
/// board-burst figure), besides each quote on its symbol's subject: one
/// push to the ingest is one round message of its quotes. A round cut in
/// several messages is marked (`Tg-Round: open` on the first, `end` on
/// the last), and an edge following every quote wakes its clients once
/// the round is in, so it reaches a client in one frame however far apart
/// NATS delivers its messages (here the test publishes one slowly
/// itself); a round whose end never comes goes out after `round_hold_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn a_publishing_round_reaches_edge_clients_in_one_frame() {
    use futures_util::StreamExt;
    const SYMS: [&str; 3] = ["R1", "R2", "R3"];
    let dir = Scratch::new("rounds");
    let nats = NatsServer::start(&dir.0).await;
    let ingest = Node::start(&dir.0, "ingest", &ingest_toml(&nats, "t11", &SYMS)).await;
    let edge = Node::start(
        &dir.0,
        "edge-t11",
        &edge_toml(
            &nats,
            "t11",
            50,
            "node = \"edge-t11\"\nwildcard_share = 0.0\nround_hold_ms = 1000\n",
        ),
    )
    .await;
    wait_learned(edge.addr, None, &SYMS).await;
    wait_feed_state(edge.addr, None, "live").await;
    let nc = async_nats::connect(nats.url())
        .await
        .expect("test's NATS client");
    let mut rounds = nc.subscribe("t11.r.>").await.unwrap();
    let mut quotes = nc.subscribe("t11.q.>").await.unwrap();
    nc.flush().await.unwrap();
    let (mut c, _) = Client::connect_welcomed(edge.addr).await;
    c.subscribe(1, &SYMS).await;

    // The ingest: one push is one round, published whole as one message
    // of its quotes, one per line in the push's order (a round in one
    // message carries no mark), and each quote on its own subject.
    let mut p = Pusher::new(ingest.addr);
    let want = p.push(&SYMS).await;
    async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
        tokio::time::timeout(DEADLINE, sub.next())
            .await
            .expect("the ingest publishes")
            .expect("subscription open")
    }
    let mark_of = |m: &async_nats::Message| {
        m.headers
            .as_ref()
            .and_then(|h| h.get("Tg-Round"))
            .map(|v| v.as_str().to_string())
    };
    let m = next(&mut rounds).await;
    let lines: Vec<Q> = tickergate::cluster::wire::round_quotes(&m.payload)
        .map(|l| q_of(&serde_json::from_slice::<Value>(l).expect("a quote per line")))
        .collect();
    assert_eq!(lines, want, "the round's quotes in one message, in order");
    assert_eq!(mark_of(&m), None);
    for w in &want {
        let m = next(&mut quotes).await;
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(q_of(&v), *w, "each quote on its symbol's subject");
        assert_eq!(mark_of(&m), None);
    }
    assert_eq!(read_quotes(&mut c, &want).await, want);

    // A round cut in three messages that come 100 ms apart: one frame,
    // all three quotes.
    let quote = |sym: &str, seq: u64| {
        format!(
            r#"{{"type":"quote","symbol":"{sym}","seq":{seq},"bid":"2{seq}.25","bid_size":"1","ask":"2{seq}.75","ask_size":"2","ts":1700000000000000000,"gw_ts":1700000000000000001}}"#
        )
    };
    let mark = |m: &str| {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Tg-Round", m);
        h
    };
    let seq = 10;
    nc.publish_with_headers("t11.r.test", mark("open"), quote("R1", seq).into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    nc.publish("t11.r.test", quote("R2", seq).into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    nc.publish_with_headers("t11.r.test", mark("end"), quote("R3", seq).into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let frame = loop {
        match c.next_event().await {
            Event::Msgs(ms) if ms.iter().any(|m| m["type"] == "quote") => break ms,
            Event::Msgs(_) => continue,
            other => panic!("expected quotes, got {other:?}"),
        }
    };
    let mut got: Vec<Q> = frame
        .iter()
        .filter(|m| m["type"] == "quote")
        .map(q_of)
        .collect();
    got.sort();
    let round: Vec<Q> = SYMS
        .iter()
        .map(|s| {
            (
                s.to_string(),
                seq,
                format!("2{seq}.25"),
                format!("2{seq}.75"),
            )
        })
        .collect();
    assert_eq!(got, round, "the round's three quotes in its first frame");

    // A round that never ends: what came goes out after the hold.
    nc.publish_with_headers("t11.r.test", mark("open"), quote("R1", seq + 1).into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let (m, _) = c.recv_until(|m| m["type"] == "quote").await;
    assert_eq!(
        q_of(&m),
        ("R1".into(), seq + 1, "211.25".into(), "211.75".into())
    );
    let (_, text) = http_get(edge.addr, "/metrics").await;
    assert_eq!(
        metric(
            &text,
            "tickergate_cluster_rounds_held_total{ended=\"timeout\"}"
        ),
        1.0,
        "{text}"
    );
    assert!(metric(&text, "tickergate_cluster_rounds_held_total{ended=\"end\"}") >= 1.0);
}
