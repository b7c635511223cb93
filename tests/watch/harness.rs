//! The harness of the `watch` tests: the gateway binary started on a free
//! port, `tickergate watch` with its output captured as it comes, and
//! `script` for a pseudo-terminal.

use crate::common::{Proc, EVENT_DEADLINE};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tickergate");

/// Starts the gateway (simulated feed at `sim_rate` updates/s) on `listen`
/// and reads the address it prints; `None` when it exits first (its port
/// still taken, after a restart).
pub fn try_gateway(listen: &str, args: &[&str]) -> Option<(Proc, SocketAddr)> {
    let mut child = Command::new(BIN)
        .args(["--listen", listen])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the gateway");
    let stdout = child.stdout.take().expect("piped stdout");
    let proc = Proc(child);
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next()?.ok()?;
        let line = line.trim();
        let rest = line
            .strip_prefix("WebSocket : ws://")
            .or_else(|| line.strip_prefix("WebSocket : wss://"));
        if let Some(rest) = rest {
            break rest.split('/').next()?.parse().expect("a socket address");
        }
    };
    // Keep draining stdout so the gateway never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Some((proc, addr))
}

pub fn gateway(args: &[&str]) -> (Proc, SocketAddr) {
    try_gateway("127.0.0.1:0", args).expect("the gateway printed its address")
}

/// Waits until the gateway (plain HTTP) has a value for every symbol, so
/// that a subscription gets a snapshot of each.
pub fn wait_values(addr: SocketAddr, symbols: &[&str]) {
    let deadline = Instant::now() + EVENT_DEADLINE;
    let path = format!("/v1/quotes?symbols={}", symbols.join(","));
    loop {
        let mut body = String::new();
        if let Ok(mut tcp) = std::net::TcpStream::connect(addr) {
            let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            if tcp.write_all(req.as_bytes()).is_ok() {
                let _ = tcp.read_to_string(&mut body);
            }
        }
        if symbols
            .iter()
            .all(|s| body.contains(&format!("\"symbol\":\"{s}\"")))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no values for {symbols:?}: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a child wrote, collected by a thread as it comes.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn start(mut from: impl Read + Send + 'static) -> Capture {
        let c = Capture::default();
        let buf = c.0.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = from.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        c
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Complete lines so far.
    pub fn lines(&self) -> Vec<String> {
        let t = self.text();
        let complete = t.rfind('\n').map_or("", |i| &t[..i]);
        complete
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// `tickergate watch ARGS` (or any command) with stdout and stderr
/// captured.
pub struct Watch {
    pub proc: Proc,
    pub out: Capture,
    pub err: Capture,
}

impl Watch {
    pub fn spawn(args: &[&str]) -> Watch {
        let mut cmd = Command::new(BIN);
        cmd.arg("watch").args(args);
        Watch::spawn_cmd(cmd)
    }

    pub fn spawn_cmd(mut cmd: Command) -> Watch {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let out = Capture::start(child.stdout.take().expect("stdout"));
        let err = Capture::start(child.stderr.take().expect("stderr"));
        Watch {
            proc: Proc(child),
            out,
            err,
        }
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.proc.0
    }

    /// Waits until `cond` holds for stdout's complete lines (parsed);
    /// returns them.
    pub fn wait_lines(&mut self, what: &str, cond: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + EVENT_DEADLINE;
        loop {
            let lines = json_lines(&self.out.lines());
            if cond(&lines) {
                return lines;
            }
            if let Ok(Some(st)) = self.child().try_wait() {
                panic!(
                    "watch exited ({st}) before {what}\nstdout:\n{}\nstderr:\n{}",
                    self.out.text(),
                    self.err.text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what}\nstdout:\n{}\nstderr:\n{}",
                self.out.text(),
                self.err.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `cond` holds for stdout's bytes (as text).
    pub fn wait_text(&mut self, what: &str, cond: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + EVENT_DEADLINE;
        while !cond(&self.out.text()) {
            assert!(
                Instant::now() < deadline,
                "no {what} in:\n{:?}",
                self.out.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&mut self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child().id()).expect("a pid");
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + EVENT_DEADLINE;
        loop {
            if let Some(st) = self.child().try_wait().expect("try_wait") {
                // Let the capture threads read what is left in the pipes.
                std::thread::sleep(Duration::from_millis(50));
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "still running\nstderr:\n{}",
                self.err.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Every line is one JSON object.
pub fn json_lines(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
            assert!(v.is_object(), "not a JSON object: {l}");
            v
        })
        .collect()
}

pub fn kind(v: &Value) -> &str {
    v["type"].as_str().unwrap_or("")
}

pub fn quotes<'a>(lines: &'a [Value], sym: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    lines
        .iter()
        .filter(move |v| kind(v) == "quote" && v["symbol"] == sym)
}

pub fn has_snapshot(lines: &[Value], sym: &str) -> bool {
    quotes(lines, sym).any(|q| q["snapshot"] == true)
}

pub fn has_quote(lines: &[Value], sym: &str) -> bool {
    quotes(lines, sym).next().is_some()
}

pub fn has_update(lines: &[Value], sym: &str) -> bool {
    quotes(lines, sym).any(|q| q.get("snapshot").is_none())
}

/// A directory of files for one test, removed at the end.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("tg-watch-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        TempDir(d)
    }

    pub fn write(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write");
        p.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `script` gives watch a pseudo-terminal for stdout; what it draws comes
/// out of script's stdout. Ctrl-C is a 0x03 written to script's stdin:
/// the terminal turns it into SIGINT for watch, as a user's Ctrl-C.
pub fn under_a_terminal(watch_args: &str) -> Watch {
    let mut cmd = Command::new("script");
    // `exec`, and a known shell: script runs `$SHELL -c`, and a shell that
    // stayed as the parent would get the ^C too and die of it (exit 130)
    // whatever the watch does.
    cmd.args([
        "-qfec",
        &format!("exec {BIN} watch {watch_args}"),
        "/dev/null",
    ])
    .env("SHELL", "/bin/sh")
    .env("TERM", "xterm")
    .env_remove("NO_COLOR")
    // Its own process group: nothing reaches the test's.
    .process_group(0);
    Watch::spawn_cmd(cmd)
}
