//! The `tickergate` binary itself: it prints where to connect, validates
//! config, and on SIGTERM closes every client with 1001 and exits 0.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tickergate");

/// Starts the binary on port 0 and reads the address it prints.
fn spawn(args: &[&str]) -> (Proc, std::net::SocketAddr) {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tickergate");
    let stdout = child.stdout.take().unwrap();
    let proc = Proc(child);
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("binary printed its address").unwrap();
        if let Some(rest) = line.trim().strip_prefix("WebSocket : ws://") {
            let a = rest.split('/').next().unwrap();
            break a.parse().expect("a socket address");
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (proc, addr)
}

fn wait_exit(p: &mut Proc) -> std::process::ExitStatus {
    let deadline = Instant::now() + EVENT_DEADLINE;
    loop {
        if let Some(st) = p.0.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_clients_with_1001_and_exits_0() {
    let (mut p, addr) = spawn(&["--sim-rate", "2000"]);
    let (mut a, _) = Client::connect_welcomed(addr).await;
    let (mut b, _) = Client::connect_welcomed(addr).await;
    a.subscribe(1, &["AAPL", "BTC-USD"]).await;
    // Live data is flowing from the simulator.
    a.recv_type("quote").await;
    let st = Command::new("kill")
        .args(["-TERM", &p.0.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(a.recv_close().await, Some(1001));
    assert_eq!(b.recv_close().await, Some(1001));
    let status = tokio::task::spawn_blocking(move || wait_exit(&mut p))
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_also_stops_cleanly() {
    let (mut p, addr) = spawn(&[]);
    let (mut a, _) = Client::connect_welcomed(addr).await;
    Command::new("kill")
        .args(["-INT", &p.0.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(a.recv_close().await, Some(1001));
    let status = tokio::task::spawn_blocking(move || wait_exit(&mut p))
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

/// A stop that comes the instant the address is printed (a supervisor
/// stopping it at once, a script that only needed it started) is a clean
/// stop with exit 0, never the signal's default action, which ends the
/// process without closing a session. The signal is sent without spawning
/// `kill`, so it lands inside the few microseconds after the print.
#[test]
fn a_stop_sent_as_the_address_is_printed_is_clean() {
    for (round, sig) in [libc::SIGINT, libc::SIGTERM]
        .into_iter()
        .cycle()
        .take(40)
        .enumerate()
    {
        let (mut p, _) = spawn(&[]);
        let pid = libc::pid_t::try_from(p.0.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
        let status = wait_exit(&mut p);
        assert!(
            status.success(),
            "round {round}: signal {sig} ended the process: {status:?}"
        );
    }
}

#[test]
fn check_config_validates_and_names_the_bad_field() {
    let dir = std::env::temp_dir().join(format!("tg-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[server]\nlisten = \"127.0.0.1:0\"\n[[feeds]]\nkind = \"sim\"\nname = \"s\"\nrate = 10.0\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--config", good.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[session]\nheartbeat_ms = 0\n").unwrap();
    let out = Command::new(BIN)
        .args(["--config", bad.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("session.heartbeat_ms"), "{err}");

    std::fs::write(&bad, "[sesion]\n").unwrap();
    let out = Command::new(BIN)
        .args(["--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sesion"));

    let out = Command::new(BIN)
        .args(["--config", "/nonexistent/x.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.toml"));

    let out = Command::new(BIN)
        .args(["--listen", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--check-config` reads every file a start would read, so a bad path or
/// file is found before the restart, not by it. Each case below used to
/// pass the check and then fail the start.
#[test]
fn check_config_reads_every_file_a_start_reads() {
    let dir = std::env::temp_dir().join(format!("tg-cfg-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::copy(jwt_fixture("rs256-public.pem"), dir.join("idp.pem")).unwrap();
    let feed = "[[feeds]]\nkind = \"sim\"\nname = \"s\"\n";
    let tls = |cert: &str| format!("[server.tls]\ncert = \"{cert}\"\nkey = \"key.pem\"\n");
    let jwt = |file: &str| {
        format!("[auth.jwt]\npublic_keys = [\"{file}\"]\nissuer = \"idp\"\naudience = \"tg\"\n")
    };
    let replay = |file: &str| {
        format!(
            "[[feeds]]\nkind = \"replay\"\nname = \"r\"\npath = \"{file}\"\nvenue = \"binance\"\nsymbols = {{ BTCUSDT = \"BTC-USDT\" }}\n"
        )
    };
    let check = |name: &str, toml: String| {
        let path = dir.join(name);
        std::fs::write(&path, toml).unwrap();
        Command::new(BIN)
            .args(["--config", path.to_str().unwrap(), "--check-config"])
            .output()
            .unwrap()
    };
    let good = check(
        "good.toml",
        format!("{}{}{feed}", tls("cert.pem"), jwt("idp.pem")),
    );
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    for (name, toml, named) in [
        ("no-cert.toml", tls("gone-cert.pem") + feed, "gone-cert.pem"),
        // A private key where the certificate should be: not a certificate.
        ("key-as-cert.toml", tls("key.pem") + feed, "key.pem"),
        (
            "no-jwt-key.toml",
            jwt("gone-idp.pem") + feed,
            "gone-idp.pem",
        ),
        ("no-recording.toml", replay("gone.jsonl"), "gone.jsonl"),
    ] {
        let out = check(name, toml);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains(named),
            "{name}: the error names {named}: {err}"
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("configuration OK"),
            "{name}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn busy_port_is_a_clear_error() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["--listen", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot listen on") && err.contains(&addr),
        "{err}"
    );
}

#[test]
fn sample_configs_in_feeds_are_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/feeds");
    let mut checked = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let out = Command::new(BIN)
                .args(["--config", p.to_str().unwrap(), "--check-config"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 1, "feeds/ holds at least one sample config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_jwt_public_keys() {
    let dir = std::env::temp_dir().join(format!("tg-bin-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("idp.pem");
    std::fs::copy(jwt_fixture("rs256-public.pem"), &key).unwrap();
    let path = dir.join("gw.toml");
    std::fs::write(
        &path,
        "[auth.jwt]\npublic_keys = [\"idp.pem\"]\nissuer = \"idp\"\naudience = \"tickergate\"\n",
    )
    .unwrap();
    let (mut p, addr) = spawn(&["--config", path.to_str().unwrap()]);
    let claims = serde_json::json!({"sub": "bot", "iss": "idp", "aud": "tickergate",
        "exp": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() + 3600,
        "symbols": ["*"]});
    let old = rs256_jwt("rs256-private.pem", &claims);
    let new = rs256_jwt("rs256-other-private.pem", &claims);
    let status = |token: &str| {
        let path = format!("/v1/symbols?token={token}");
        async move { http_get(addr, &path).await.0 }
    };
    assert_eq!(status(&old).await, 200);
    assert_eq!(status(&new).await, 401, "the new key is not configured yet");
    // The provider rotated: the file now holds its new key.
    std::fs::copy(jwt_fixture("rs256-other-public.pem"), &key).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &p.0.id().to_string()])
        .status();
    assert!(hup.is_ok_and(|s| s.success()), "kill -HUP ran");
    let deadline = Instant::now() + EVENT_DEADLINE;
    while status(&new).await != 200 {
        assert!(Instant::now() < deadline, "SIGHUP did not load the new key");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status(&old).await, 401, "the old key is gone");
    assert!(
        matches!(p.0.try_wait(), Ok(None)),
        "SIGHUP does not end the process"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts the binary with `args` and `RUST_LOG`, stderr (the log) read
/// line by line into a shared buffer.
fn spawn_logged(
    args: &[&str],
    rust_log: &str,
) -> (
    Proc,
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", rust_log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tickergate");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let proc = Proc(child);
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(l);
        }
    });
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("binary printed its address").unwrap();
        if let Some(rest) = line.trim().strip_prefix("WebSocket : ws://") {
            break rest.split('/').next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (proc, addr, log)
}

async fn wait_log(
    log: &std::sync::Mutex<Vec<String>>,
    what: &str,
    f: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + EVENT_DEADLINE;
    loop {
        if let Some(l) = log.lock().unwrap().iter().find(|l| f(l)) {
            return l.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no log line {what}: {:?}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An operator's log: session open and close lines at debug (peer,
/// session id, key, close code and reason, duration, frames), a periodic
/// summary at info, and no colour codes when stderr is not a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_sessions_and_summaries_in_plain_text() {
    let dir = std::env::temp_dir().join(format!("tg-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("log.toml");
    std::fs::write(
        &cfg,
        "[server]\nlog_summary_secs = 1\n\n[[feeds]]\nkind = \"sim\"\nrate = 500\n",
    )
    .unwrap();
    let (_p, addr, log) = spawn_logged(
        &["--config", cfg.to_str().unwrap()],
        "info,tickergate::session=debug",
    );
    let (mut c, w) = Client::connect_welcomed(addr).await;
    let id = w["session"].as_str().unwrap().to_string();
    c.subscribe(1, &["AAPL"]).await;
    c.recv_type("quote").await;
    let open = wait_log(&log, "session open", |l| l.contains("session open")).await;
    assert!(open.contains(&format!("session={id}")), "{open}");
    assert!(open.contains("peer=127.0.0.1:"), "{open}");
    assert!(open.contains("key=-"), "{open}");
    let summary = wait_log(&log, "summary", |l| l.contains("sessions: 1 open")).await;
    assert!(summary.contains("feeds: sim live"), "{summary}");
    assert!(summary.contains(" INFO "), "{summary}");
    drop(c);
    let closed = wait_log(&log, "session closed", |l| l.contains("session closed")).await;
    assert!(closed.contains(&format!("session={id}")), "{closed}");
    assert!(closed.contains("duration_ms="), "{closed}");
    let frames: u64 = closed
        .split("frames=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        frames >= 2,
        "welcome and at least one quote frame: {closed}"
    );
    assert!(
        closed.contains("closed by the client") || closed.contains("connection lost"),
        "{closed}"
    );
    wait_log(&log, "summary counting the close", |l| {
        l.contains("0 open") && l.contains("1 closed")
    })
    .await;
    assert!(
        log.lock().unwrap().iter().all(|l| !l.contains('\x1b')),
        "no ANSI codes when stderr is not a terminal"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--log-format json`: every log line is one JSON object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_format() {
    let (_p, addr, log) = spawn_logged(&["--log-format", "json"], "info,tickergate::session=debug");
    let (c, _) = Client::connect_welcomed(addr).await;
    drop(c);
    let closed = wait_log(&log, "session closed", |l| l.contains("session closed")).await;
    let v: serde_json::Value = serde_json::from_str(&closed).expect("a JSON log line");
    assert_eq!(v["level"], "DEBUG");
    assert_eq!(v["fields"]["message"], "session closed");
    assert!(v["fields"]["frames"].as_u64().is_some(), "{v}");
    for l in log.lock().unwrap().iter() {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{l}: {e}"));
    }
}
