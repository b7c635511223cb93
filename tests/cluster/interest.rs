//! What an edge follows on NATS (per symbol, or every round), and that
//! entitlements hold for what comes over it (quotes and trades).

use super::*;

/// Interest-based following, as NATS itself shows it (`/connz`: the
/// edge's own connection): no quote subscription before a client holds a
/// symbol; `<prefix>.q.<token>` while one does (the encoded token for
/// `BRK.B`), one per edge however many clients; gone `linger_ms` after the
/// last one leaves. With `wildcard_share`, once that share of the symbols
/// is wanted, one subscription to every quote instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn edge_subscribes_on_nats_only_while_clients_hold_a_symbol() {
    const SYMS: [&str; 3] = ["AAPL", "MSFT", "BRK.B"];
    let dir = Scratch::new("interest");
    let nats = NatsServer::start(&dir.0).await;
    let ingest = Node::start(&dir.0, "ingest", &ingest_toml(&nats, "t4", &SYMS)).await;
    // One subscription per symbol, however many are wanted.
    let per_symbol = "node = \"edge-t4\"\nwildcard_share = 2.0\n";
    let edge = Node::start(&dir.0, "edge", &edge_toml(&nats, "t4", 50, per_symbol)).await;
    wait_learned(edge.addr, None, &SYMS).await;
    let mut p = Pusher::new(ingest.addr);
    let first = p.push(&SYMS).await;
    let n = &nats;
    let quote_subs = move || async move { n.subjects_of("edge-t4", "t4.q.").await };
    let (mut c1, _) = Client::connect_welcomed(edge.addr).await;
    // Learned, connected, but nobody holds a symbol: no subscription. A
    // status round trip later (the edge has run its batches since).
    wait_feed_state(edge.addr, None, "live").await;
    assert_eq!(
        nats.subjects_of("edge-t4", "t4.").await,
        ["t4.status.>"],
        "the edge follows the feed status, and no quote"
    );

    c1.subscribe(1, &["AAPL", "BRK.B"]).await;
    eventually("t4.q.AAPL and t4.q.BRK~2EB subscribed", || async move {
        (quote_subs().await == ["t4.q.AAPL", "t4.q.BRK~2EB"]).then_some(())
    })
    .await;
    // Followed means served: the values arrive, BRK.B's from its encoded
    // subject.
    let got = read_quotes(&mut c1, &[first[0].clone(), first[2].clone()]).await;
    assert!(got.contains(&first[2]), "{got:?}");
    let want = p.push(&["BRK.B"]).await;
    assert_eq!(read_quotes(&mut c1, &want).await, want);

    // A second client on AAPL: still one subscription for the edge.
    let (mut c2, _) = Client::connect_welcomed(edge.addr).await;
    c2.subscribe(1, &["AAPL"]).await;
    assert_eq!(
        read_quotes(&mut c2, &first[..1]).await,
        &first[..1],
        "snapshot"
    );
    assert_eq!(quote_subs().await, ["t4.q.AAPL", "t4.q.BRK~2EB"]);
    c1.send(json!({"op":"unsubscribe","id":2,"symbols":["AAPL","BRK.B"]}))
        .await;
    c1.recv_until(|m| m["type"] == "unsubscribed" && m["id"] == 2)
        .await;
    // BRK.B had only c1: dropped after the linger. AAPL has c2: kept (the
    // same pass that dropped BRK.B saw AAPL still wanted).
    eventually("t4.q.BRK~2EB unsubscribed", || async move {
        (!quote_subs().await.contains(&"t4.q.BRK~2EB".to_string())).then_some(())
    })
    .await;
    assert_eq!(quote_subs().await, ["t4.q.AAPL"]);
    let want = p.push(&["AAPL"]).await;
    assert_eq!(read_quotes(&mut c2, &want).await, want);

    // The last holder disconnects: AAPL's subscription goes too.
    drop(c2);
    eventually("t4.q.AAPL unsubscribed", || async move {
        quote_subs().await.is_empty().then_some(())
    })
    .await;
    let (_, m) = http_get(edge.addr, "/metrics").await;
    assert_eq!(metric(&m, "tickergate_cluster_subscriptions"), 0.0);
    drop(c1);

    // wildcard_share = 0.5: one symbol of three wanted is one subscription
    // of its own; two of three, one to every quote instead; none, none.
    let wild = "node = \"edge-t4-wild\"\nwildcard_share = 0.5\n";
    let edge = Node::start(&dir.0, "edge-wild", &edge_toml(&nats, "t4", 50, wild)).await;
    wait_learned(edge.addr, None, &SYMS).await;
    wait_feed_state(edge.addr, None, "live").await;
    let wild_subs = move || async move { n.quotes_followed_by("edge-t4-wild", "t4").await };
    let (mut c, _) = Client::connect_welcomed(edge.addr).await;
    c.subscribe(1, &["AAPL"]).await;
    eventually("t4.q.AAPL subscribed", || async move {
        (wild_subs().await == ["t4.q.AAPL"]).then_some(())
    })
    .await;
    c.subscribe(2, &["BRK.B"]).await;
    eventually("t4.r.> subscribed in place of t4.q.AAPL", || async move {
        (wild_subs().await == ["t4.r.>"]).then_some(())
    })
    .await;
    // Served as before, and an unwanted symbol's quotes stay on the edge.
    let want = p.push(&["MSFT", "BRK.B", "AAPL"]).await;
    let got = read_quotes(&mut c, &want[1..]).await;
    assert!(got.iter().all(|q| q.0 != "MSFT"), "{got:?}");
    for q in &want[1..] {
        assert!(got.contains(q), "{q:?} with the ingest's seq: {got:?}");
    }
    drop(c);
    eventually("no quote subscription", || async move {
        wild_subs().await.is_empty().then_some(())
    })
    .await;
}

/// An edge with API keys: the key `desk` may see `BTC-*` and `AAPL`.
/// Subscribing MSFT by name is `forbidden_symbol`; `*` holds only the
/// entitled symbols, and nothing else arrives from NATS; SSE refuses a
/// forbidden symbol with 403 and streams the entitled ones with the
/// ingest's seqs. Both ways an edge follows: one subscription per symbol
/// (it never follows a forbidden one), and one to every quote (the
/// forbidden quotes reach the edge and stop there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn entitlements_hold_on_an_edge() {
    const SYMS: [&str; 4] = ["AAPL", "MSFT", "BTC-USD", "ETH-USD"];
    let dir = Scratch::new("entitlements");
    let nats = NatsServer::start(&dir.0).await;
    let ingest = Node::start(&dir.0, "ingest", &ingest_toml(&nats, "t5", &SYMS)).await;
    let keys = format!(
        r#"
[[auth.keys]]
name = "desk"
sha256 = "{}"
symbols = ["BTC-*", "AAPL"]

[[auth.keys]]
name = "all"
sha256 = "{}"
"#,
        token_hash_hex("desk-key"),
        token_hash_hex("all-key")
    );
    let mut p = Pusher::new(ingest.addr);
    p.push(&SYMS).await;
    for (node, share, followed) in [
        ("edge-t5", "2.0", &["t5.q.AAPL", "t5.q.BTC-USD"][..]),
        ("edge-t5-wild", "0.0", &["t5.r.>"][..]),
    ] {
        let extra = format!("node = \"{node}\"\nwildcard_share = {share}\n{keys}");
        let edge = Node::start(&dir.0, node, &edge_toml(&nats, "t5", 50, &extra)).await;
        wait_learned(edge.addr, Some("all-key"), &SYMS).await;
        wait_feed_state(edge.addr, Some("all-key"), "live").await;
        entitled_only(&edge, &mut p).await;
        assert_eq!(
            nats.quotes_followed_by(node, "t5").await,
            followed,
            "{node}"
        );
    }
}

/// What `desk` (BTC-* and AAPL) gets on `edge`: see
/// [`entitlements_hold_on_an_edge`].
async fn entitled_only(edge: &Node, p: &mut Pusher) {
    // /v1/symbols lists only the key's.
    let (_, body) = http_get(edge.addr, "/v1/symbols?token=desk-key").await;
    let mut names: Vec<String> = serde_json::from_str(&body).unwrap();
    names.sort();
    assert_eq!(names, ["AAPL", "BTC-USD"]);

    let mut c = Client::connect_url(&format!("ws://{}/v1/ws?token=desk-key", edge.addr)).await;
    c.recv_type("welcome").await;
    c.send(json!({"op":"subscribe","id":1,"symbols":["AAPL","MSFT"]}))
        .await;
    let (sub, skipped) = c
        .recv_until(|m| m["type"] == "subscribed" && m["id"] == 1)
        .await;
    assert_eq!(sub["symbols"], json!(["AAPL"]));
    let errors: Vec<(&str, &str)> = skipped
        .iter()
        .filter(|m| m["type"] == "error")
        .map(|m| (m["code"].as_str().unwrap(), m["symbol"].as_str().unwrap()))
        .collect();
    assert_eq!(errors, [("forbidden_symbol", "MSFT")]);

    c.send(json!({"op":"subscribe","id":2,"symbols":["*"]}))
        .await;
    let (sub, _) = c
        .recv_until(|m| m["type"] == "subscribed" && m["id"] == 2)
        .await;
    let mut held: Vec<String> = serde_json::from_value(sub["symbols"].clone()).unwrap();
    held.sort();
    assert!(
        held.iter().all(|s| s == "AAPL" || s == "BTC-USD"),
        "only entitled symbols: {held:?}"
    );
    assert!(held.contains(&"BTC-USD".to_string()), "{held:?}");
    // Values of every symbol go out; the client gets only its own, up to
    // the last of them.
    let round = p.push(&["MSFT", "ETH-USD", "BTC-USD", "AAPL"]).await;
    let mut seen = Vec::new();
    let mut left = vec![round[2].clone(), round[3].clone()];
    while !left.is_empty() {
        let (m, skipped) = c.recv_until(|m| m["type"] == "quote").await;
        seen.extend(skipped);
        left.retain(|q| *q != q_of(&m));
        seen.push(m);
    }
    for m in &seen {
        if let Some(sym) = m["symbol"].as_str() {
            assert!(sym == "AAPL" || sym == "BTC-USD", "leaked: {m}");
        }
    }

    // SSE: a forbidden symbol refuses the whole request.
    let (st, body) = Sse::open(edge.addr, "symbols=AAPL,MSFT&token=desk-key", "")
        .await
        .err()
        .expect("refused");
    assert_eq!(st, 403, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&v["code"], &v["symbol"]),
        (&json!("forbidden_symbol"), &json!("MSFT"))
    );
    let (st, _) = Sse::open(edge.addr, "symbols=ETH-USD&token=desk-key", "")
        .await
        .err()
        .expect("refused");
    assert_eq!(st, 403);
    // Entitled: the stream, then a new value with the ingest's seq.
    let mut s = Sse::open(edge.addr, "symbols=AAPL,BTC-USD&token=desk-key", "")
        .await
        .expect("entitled symbols stream");
    let first = s.frame().await;
    assert_eq!(first[0]["type"], "welcome");
    assert_eq!(first[1]["symbols"], json!(["AAPL", "BTC-USD"]));
    let want = p.push(&["MSFT", "AAPL"]).await;
    loop {
        let f = s.frame().await;
        for m in &f {
            if let Some(sym) = m["symbol"].as_str() {
                assert!(sym == "AAPL" || sym == "BTC-USD", "leaked over SSE: {m}");
            }
        }
        if f.iter().any(|m| q_of(m) == want[1]) {
            break;
        }
    }
}

/// Trades travel too: every trade pushed to the ingest reaches a client
/// of an edge that asked for trades, in order, byte-exact, with the
/// trade's own fields; a key sees the trades of its symbols only (`*`
/// with `"trades": true`), and an edge follows a symbol's trades on NATS
/// only while someone takes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn trades_reach_edge_clients_in_order_and_only_entitled() {
    const SYMS: [&str; 3] = ["AAPL", "BTC-USD", "ETH-USD"];
    let dir = Scratch::new("trades");
    let nats = NatsServer::start(&dir.0).await;
    let ingest = Node::start(&dir.0, "ingest", &ingest_toml(&nats, "t9", &SYMS)).await;
    let keys = format!(
        "node = \"edge-t9\"\nwildcard_share = 2.0\n\n[[auth.keys]]\nname = \"desk\"\nsha256 = \"{}\"\nsymbols = [\"BTC-*\"]\n",
        token_hash_hex("desk-key")
    );
    let edge = Node::start(&dir.0, "edge-t9", &edge_toml(&nats, "t9", 50, &keys)).await;
    let mut p = Pusher::new(ingest.addr);
    p.push(&SYMS).await;
    wait_learned(edge.addr, Some("desk-key"), &["BTC-USD"]).await;
    wait_feed_state(edge.addr, Some("desk-key"), "live").await;
    assert!(
        nats.subjects_of("edge-t9", "t9.t.").await.is_empty(),
        "no trade subscription before anyone takes trades"
    );
    let mut c = Client::connect_url(&format!("ws://{}/v1/ws?token=desk-key", edge.addr)).await;
    c.recv_type("welcome").await;
    c.send(json!({"op":"subscribe","id":1,"symbols":["*"],"trades":true}))
        .await;
    let (sub, _) = c
        .recv_until(|m| m["type"] == "subscribed" && m["id"] == 1)
        .await;
    assert_eq!(sub["symbols"], json!(["BTC-USD"]));
    eventually("the edge follows BTC-USD's trades", || async {
        (nats.subjects_of("edge-t9", "t9.t.").await == ["t9.t.BTC-USD"]).then_some(())
    })
    .await;
    // 30 trades of each symbol, interleaved, in three pushes.
    let mut n = 0;
    for _ in 0..3 {
        let mut body = String::new();
        for _ in 0..10 {
            for sym in SYMS {
                n += 1;
                body.push_str(&format!(
                    "{{\"type\":\"trade\",\"symbol\":\"{sym}\",\"price\":\"{}.{:03}0\",\"size\":\"0.00{n:03}\",\"side\":\"{}\",\"trade_id\":{n},\"ts\":{}}}\n",
                    100 + n,
                    n,
                    if n % 2 == 0 { "buy" } else { "sell" },
                    1_700_000_000_000_000_000u64 + n as u64
                ));
            }
        }
        let (st, r) = ingest_post(ingest.addr, PUSH_KEY, &body).await;
        assert_eq!(st, 200, "{r}");
        assert_eq!(r["accepted"], 30, "{r}");
    }
    let want: Vec<(u64, String, String)> = (1..=90u64)
        .filter(|n| (n - 1) % 3 == 1)
        .map(|n| (n, format!("{}.{n:03}0", 100 + n), format!("0.00{n:03}")))
        .collect();
    let mut got = Vec::new();
    while got.len() < want.len() {
        let (m, skipped) = c.recv_until(|m| m["type"] == "trade").await;
        for x in skipped.iter().chain(std::iter::once(&m)) {
            if let Some(sym) = x["symbol"].as_str() {
                assert_eq!(sym, "BTC-USD", "leaked: {x}");
            }
            assert_ne!(x["type"], "trades_dropped", "{x}");
        }
        got.push((
            m["trade_id"].as_u64().unwrap(),
            m["price"].as_str().unwrap().to_string(),
            m["size"].as_str().unwrap().to_string(),
        ));
        // Numbered by the edge, gapless from 1.
        assert_eq!(m["seq"], got.len(), "{m}");
    }
    assert_eq!(got, want, "every BTC-USD trade, in order, exact text");
    drop(c);
    eventually("the edge lets the trades go", || async {
        nats.subjects_of("edge-t9", "t9.t.")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
}

/// An ingest of a build before whole rounds (its feed status says nothing
/// of `rounds`; here the test publishes one as such an ingest does) keeps
/// an edge on one subscription per symbol, which every build publishes,
/// though it would follow every round by its share (`wildcard_share = 0`):
/// following `r.>` would leave that ingest's symbols frozen. Once the
/// feed's status says `rounds`, the edge takes the rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server: run scripts/test"]
async fn an_ingest_without_whole_rounds_keeps_edges_on_per_symbol_subscriptions() {
    const SYMS: [&str; 2] = ["AAPL", "MSFT"];
    let dir = Scratch::new("no-rounds");
    let nats = NatsServer::start(&dir.0).await;
    let ingest = Node::start(&dir.0, "ingest", &ingest_toml(&nats, "t15", &SYMS)).await;
    let wild = "node = \"edge-t15\"\nwildcard_share = 0.0\n";
    let edge = Node::start(&dir.0, "edge", &edge_toml(&nats, "t15", 50, wild)).await;
    wait_learned(edge.addr, None, &SYMS).await;
    wait_feed_state(edge.addr, None, "live").await;
    let (mut c, welcome) = Client::connect_welcomed(edge.addr).await;
    let epoch = welcome["epoch"].as_str().unwrap().to_string();
    let nc = async_nats::connect(nats.url())
        .await
        .expect("test's NATS client");
    let old_status = |rounds: Option<bool>| {
        let mut st = json!({
            "feed": "old-feed", "node": "old-ingest", "epoch": epoch, "up": true,
            "symbols": ["OLD1"], "interval_ms": 100,
            "ts": tickergate::model::now_ns(),
        });
        if let Some(r) = rounds {
            st["rounds"] = json!(r);
        }
        serde_json::to_vec(&st).unwrap()
    };
    nc.publish("t15.status.old-feed", old_status(None).into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    wait_learned(edge.addr, None, &["OLD1"]).await;

    // Every symbol of the ingest wanted: one subscription each all the same.
    c.subscribe(1, &SYMS).await;
    let n = &nats;
    let followed = move || async move { n.quotes_followed_by("edge-t15", "t15").await };
    eventually("t15.q.AAPL and t15.q.MSFT subscribed", || async move {
        (followed().await == ["t15.q.AAPL", "t15.q.MSFT"]).then_some(())
    })
    .await;
    let mut p = Pusher::new(ingest.addr);
    let want = p.push(&SYMS).await;
    assert_eq!(read_quotes(&mut c, &want).await, want);

    // The feed's ingest now publishes whole rounds: the edge takes them.
    nc.publish("t15.status.old-feed", old_status(Some(true)).into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    eventually(
        "t15.r.> subscribed in place of one per symbol",
        || async move { (followed().await == ["t15.r.>"]).then_some(()) },
    )
    .await;
    let want = p.push(&SYMS).await;
    assert_eq!(read_quotes(&mut c, &want).await, want);
}
