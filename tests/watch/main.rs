//! `tickergate watch` against the real gateway binary: JSON lines when
//! stdout is a pipe, the live table under a pseudo-terminal (`script`),
//! reconnecting across a gateway restart, and the exit codes of an
//! unknown symbol, a refused token and an unreachable gateway.
//!
//! Every process is started here and killed (by its own handle) when its
//! test ends, also on a panic. Waits are for output, bounded by
//! `EVENT_DEADLINE`; nothing asserts on how long anything took.

#[path = "../common/mod.rs"]
mod common;
mod harness;

use common::EVENT_DEADLINE;
use harness::*;
use serde_json::Value;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

/// `--trades`: the trades of the symbols come as JSON lines, in order.
#[test]
fn trades_as_json_lines() {
    let (_gw, addr) = gateway(&["--sim-rate", "1000"]);
    let url = format!("ws://{addr}/v1/ws");
    let mut w = Watch::spawn(&["--url", &url, "--trades", "AAPL", "BTC-USD"]);
    let lines = w.wait_lines("ten trades of each", |l| {
        ["AAPL", "BTC-USD"].iter().all(|s| {
            l.iter()
                .filter(|v| kind(v) == "trade" && v["symbol"] == *s)
                .count()
                >= 10
        })
    });
    assert_eq!(lines[1]["trades"], true, "{:?}", lines[1]);
    for sym in ["AAPL", "BTC-USD"] {
        let seqs: Vec<u64> = lines
            .iter()
            .filter(|v| kind(v) == "trade" && v["symbol"] == sym)
            .map(|t| {
                assert!(t["price"].is_string() && t["size"].is_string(), "{t}");
                t["seq"].as_u64().expect("a seq")
            })
            .collect();
        assert!(seqs.windows(2).all(|p| p[1] == p[0] + 1), "{sym}: {seqs:?}");
    }
    w.signal(libc::SIGINT);
    assert!(w.wait_exit().success(), "{}", w.err.text());
}

#[test]
fn json_lines_for_the_symbols_asked_then_sigint_exits_0() {
    let (_gw, addr) = gateway(&["--sim-rate", "1000"]);
    wait_values(addr, &["AAPL", "MSFT"]);
    let url = format!("ws://{addr}/v1/ws");
    let mut w = Watch::spawn(&["--url", &url, "--max-hz", "50", "AAPL", "MSFT"]);
    let lines = w.wait_lines("snapshots and updates of AAPL and MSFT", |l| {
        ["AAPL", "MSFT"]
            .iter()
            .all(|s| has_snapshot(l, s) && has_update(l, s))
    });
    assert_eq!(kind(&lines[0]), "welcome", "{:?}", lines[0]);
    assert!(lines[0]["epoch"].is_string());
    assert_eq!(kind(&lines[1]), "subscribed", "{:?}", lines[1]);
    assert_eq!(lines[1]["symbols"], serde_json::json!(["AAPL", "MSFT"]));
    assert_eq!(lines[1]["max_hz"], 50.0);
    for q in lines.iter().filter(|v| kind(v) == "quote") {
        let sym = q["symbol"].as_str().expect("a symbol");
        assert!(sym == "AAPL" || sym == "MSFT", "a quote not asked for: {q}");
        assert!(
            q["bid"].is_string() && q["ask"].is_string(),
            "decimal strings: {q}"
        );
    }
    for sym in ["AAPL", "MSFT"] {
        let seqs: Vec<u64> = quotes(&lines, sym)
            .map(|q| q["seq"].as_u64().expect("a seq"))
            .collect();
        assert!(seqs.windows(2).all(|p| p[0] < p[1]), "{sym}: {seqs:?}");
    }
    w.signal(libc::SIGINT);
    let st = w.wait_exit();
    assert!(st.success(), "exit {st}; stderr: {}", w.err.text());
    // Everything printed up to the end is still one JSON object a line.
    json_lines(&w.out.lines());
}

#[test]
fn sigterm_exits_0_too() {
    let (_gw, addr) = gateway(&["--sim-rate", "200"]);
    let mut w = Watch::spawn(&["--url", &addr.to_string(), "BTC-USD"]);
    w.wait_lines("a quote", |l| has_quote(l, "BTC-USD"));
    w.signal(libc::SIGTERM);
    let st = w.wait_exit();
    assert!(st.success(), "exit {st}; stderr: {}", w.err.text());
}

#[test]
fn reconnects_to_a_restarted_gateway_and_starts_its_seqs_over() {
    // The first gateway runs fast and the second slowly, so the second's
    // seqs stay below the first's: only a client that starts over on the
    // new epoch shows them.
    let (mut gw, addr) = gateway(&["--sim-rate", "2000"]);
    let mut w = Watch::spawn(&["--url", &format!("http://{addr}"), "AAPL"]);
    let first = w.wait_lines("AAPL past seq 300", |l| {
        quotes(l, "AAPL").any(|q| q["seq"].as_u64() > Some(300))
    });
    let epoch = first[0]["epoch"].clone();
    // Stop it (1001 to its clients) and start another on the same port.
    let pid = libc::pid_t::try_from(gw.0.id()).expect("a pid");
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let _ = gw.0.wait();
    let deadline = Instant::now() + EVENT_DEADLINE;
    let _gw2 = loop {
        if let Some((p, _)) = try_gateway(&addr.to_string(), &["--sim-rate", "20"]) {
            break p;
        }
        assert!(Instant::now() < deadline, "port {addr} never free again");
        std::thread::sleep(Duration::from_millis(100));
    };
    let lines = w.wait_lines("quotes from the second gateway", |l| {
        let Some(i) = l
            .iter()
            .rposition(|v| kind(v) == "welcome" && v["epoch"] != epoch)
        else {
            return false;
        };
        has_update(&l[i..], "AAPL")
    });
    let i = lines
        .iter()
        .position(|v| kind(v) == "welcome" && v["epoch"] != epoch)
        .expect("the new epoch's welcome");
    let seq = |q: &Value| q["seq"].as_u64().expect("a seq");
    let last_before = quotes(&lines[..i], "AAPL").map(seq).max().expect("quotes");
    let first_after = quotes(&lines[i..], "AAPL").map(seq).next().expect("quotes");
    assert!(
        first_after < last_before,
        "the new gateway's seqs ({first_after}) start below the old one's ({last_before})"
    );
    let err = w.err.text();
    assert!(err.contains("retrying in"), "{err}");
    assert!(err.contains("new epoch"), "{err}");
    w.signal(libc::SIGINT);
    let st = w.wait_exit();
    assert!(st.success(), "exit {st}; stderr: {}", w.err.text());
}

#[test]
fn an_unknown_symbol_exits_2_naming_it() {
    let (_gw, addr) = gateway(&["--sim-rate", "100"]);
    let mut w = Watch::spawn(&["--url", &addr.to_string(), "AAPL", "NOPE-XYZ"]);
    let st = w.wait_exit();
    let err = w.err.text();
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(
        err.contains("unknown symbol") && err.contains("NOPE-XYZ"),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "one line: {err}"
    );
    // The gateway's own error was printed as received.
    let lines = json_lines(&w.out.lines());
    assert!(lines
        .iter()
        .any(|v| v["code"] == "unknown_symbol" && v["symbol"] == "NOPE-XYZ"));
}

#[test]
fn tokens_refused_and_missing_exit_3_and_the_right_one_gets_quotes() {
    let dir = TempDir::new("auth");
    let hash = tickergate::auth::token_hash_hex("right-token");
    let cfg = dir.write("gw.toml", &format!("[auth]\ntoken_sha256 = [\"{hash}\"]\n"));
    let (_gw, addr) = gateway(&["--config", &cfg, "--sim-rate", "500"]);
    let url = addr.to_string();

    let mut w = Watch::spawn(&["--url", &url, "--token", "wrong-token", "AAPL"]);
    let st = w.wait_exit();
    let err = w.err.text();
    assert_eq!(st.code(), Some(3), "{err}");
    assert!(err.contains("refused the token: invalid token"), "{err}");
    assert!(
        !err.contains("wrong-token"),
        "the token is not echoed: {err}"
    );

    let mut w = Watch::spawn(&["--url", &url, "AAPL"]);
    let st = w.wait_exit();
    let err = w.err.text();
    assert_eq!(st.code(), Some(3), "{err}");
    assert!(err.contains("requires a token"), "{err}");

    // A token on the URL is sent as typed, and refused the same way.
    let mut w = Watch::spawn(&["--url", &format!("{url}/?token=nope"), "AAPL"]);
    let st = w.wait_exit();
    assert_eq!(st.code(), Some(3), "{}", w.err.text());

    let mut w = Watch::spawn(&["--url", &url, "--token", "right-token", "AAPL"]);
    let lines = w.wait_lines("quotes", |l| has_update(l, "AAPL"));
    assert!(lines.iter().any(|v| kind(v) == "authenticated"));
    w.signal(libc::SIGINT);
    assert!(w.wait_exit().success(), "{}", w.err.text());

    // The same token from the environment.
    let mut cmd = Command::new(BIN);
    cmd.args(["watch", "--url", &url, "AAPL"])
        .env("TICKERGATE_TOKEN", "right-token");
    let mut w = Watch::spawn_cmd(cmd);
    w.wait_lines("quotes", |l| has_quote(l, "AAPL"));
    w.signal(libc::SIGINT);
    assert!(w.wait_exit().success(), "{}", w.err.text());
}

#[test]
fn wss_with_a_ca_file() {
    let dir = TempDir::new("tls");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let cert_pem = dir.write("cert.pem", &cert.pem());
    dir.write("key.pem", &key.serialize_pem());
    let cfg = dir.write(
        "gw.toml",
        "[server.tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n",
    );
    let (_gw, addr) = gateway(&["--config", &cfg, "--sim-rate", "200"]);
    let url = format!("wss://localhost:{}", addr.port());
    let mut w = Watch::spawn(&["--url", &url, "--ca", &cert_pem, "ETH-USD"]);
    w.wait_lines("a quote over TLS", |l| has_quote(l, "ETH-USD"));
    w.signal(libc::SIGINT);
    assert!(w.wait_exit().success(), "{}", w.err.text());

    // Without the CA the certificate is not trusted: retried, then given up.
    let mut cmd = Command::new(BIN);
    cmd.args(["watch", "--url", &url, "--retries", "0", "ETH-USD"])
        .env("SSL_CERT_FILE", dir.write("other.pem", &other_cert()));
    let mut w = Watch::spawn_cmd(cmd);
    let st = w.wait_exit();
    let err = w.err.text();
    assert_eq!(st.code(), Some(4), "{err}");
    assert!(
        err.contains("not reachable") && err.contains("TLS"),
        "{err}"
    );
}

fn other_cert() -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    rcgen::CertificateParams::new(vec!["elsewhere".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert")
        .pem()
}

#[test]
fn an_unreachable_gateway_is_retried_then_given_up_with_retries() {
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut w = Watch::spawn(&["--url", &format!("127.0.0.1:{port}"), "--retries", "2", "A"]);
    let st = w.wait_exit();
    let err = w.err.text();
    assert_eq!(st.code(), Some(4), "{err}");
    assert_eq!(err.matches("retrying in").count(), 2, "{err}");
    assert!(err.contains("not reachable after 3 attempts"), "{err}");

    let mut w = Watch::spawn(&["--url", "ftp://127.0.0.1", "A"]);
    assert_eq!(w.wait_exit().code(), Some(2));
    assert!(w.err.text().contains("ftp://"), "{}", w.err.text());
}

#[test]
fn a_live_table_on_a_terminal_and_ctrl_c_restores_it() {
    let (_gw, addr) = gateway(&["--sim-rate", "1000"]);
    let mut w = under_a_terminal(&format!("--url ws://{addr} AAPL MSFT BTC-USD"));
    // Drawn, and drawn again (the ages move), with prices in the rows.
    w.wait_text("two redraws of the table with prices", |t| {
        t.matches("SYMBOL").count() >= 2
            && t.contains("connected")
            && t.lines()
                .any(|l| l.starts_with("BTC-USD") && l.contains('.'))
    });
    let input = w.child().stdin.as_mut().expect("script's stdin");
    input.write_all(b"\x03").expect("write ^C");
    input.flush().expect("flush");
    let st = w.wait_exit();
    let t = w.out.text();
    assert!(st.success(), "exit {st}:\n{t:?}");
    for header in ["SYMBOL", "BID", "ASK", "LAST", "JUMPS", "AGE ms", "STALE"] {
        assert!(t.contains(header), "{header}");
    }
    for sym in ["AAPL", "MSFT", "BTC-USD"] {
        assert!(t.contains(sym), "{sym}");
    }
    assert!(t.contains("\x1b[H"), "cursor home");
    assert!(t.contains("\x1b[K"), "erase line");
    assert!(t.contains("\x1b[?25l"), "cursor hidden");
    assert!(!t.contains("{\"type\""), "no JSON on a terminal");
    // Restored last: cursor shown, normal screen.
    let restore = t.rfind("\x1b[?25h").expect("cursor shown again");
    assert!(restore > t.rfind("SYMBOL").unwrap_or(0));
    assert!(t.contains("\x1b[?1049l"));

    // A fatal error on a terminal: the terminal is given back, then one
    // line says why, and the exit code comes through.
    let mut w = under_a_terminal(&format!("--url ws://{addr} NOPE"));
    let st = w.wait_exit();
    let t = w.out.text();
    assert_eq!(st.code(), Some(2), "{t:?}");
    let restore = t.rfind("\x1b[?25h").expect("cursor shown again");
    let error = t.find("unknown symbol NOPE").expect("the error");
    assert!(restore < error, "{t:?}");
}
