//! Shared by the load tools in `src/bin/` (`loadgen`, `idle_conns`,
//! `spray`): finding the gateway binary, pinning to a core, starting the
//! gateway as a child process, and reading /proc and /metrics.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

pub mod cluster;
pub mod trades;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The workspace root: the gateway crate, two levels above this one.
/// A TCP connection to `gw` from the loopback source address `src` (the
/// tools spread their clients over several, past one address's ports),
/// without Nagle.
pub async fn tcp_from(
    src: std::net::Ipv4Addr,
    gw: SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(SocketAddr::V4(std::net::SocketAddrV4::new(src, 0)))?;
    let tcp = sock.connect(gw).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Where the tools write their JSON and charts unless told otherwise:
/// `results/` in the workspace root.
pub fn results_dir() -> PathBuf {
    workspace_root().join("results")
}

/// The gateway binary the tools start unless `--bin PATH` says otherwise:
/// `release/tickergate` under `$CARGO_TARGET_DIR` when that is set (read
/// at run time), else under the workspace's `target/`, where
/// `cargo build --release` puts it.
pub fn default_gateway_bin() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("target"),
    };
    target.join("release").join("tickergate")
}

/// Checked once the options are parsed, so a missing gateway binary is a
/// usage error (exit 2) with what to do about it, before any work starts.
pub fn check_gateway_bin(bin: &Path) -> Result<(), String> {
    if bin.is_file() {
        return Ok(());
    }
    Err(format!(
        "gateway binary {} not found: build it first with `cargo build --release` \
         (in {}), or pass --bin PATH",
        bin.display(),
        workspace_root().display()
    ))
}

/// Whether `taskset` is available to pin processes to cores.
pub fn have_taskset() -> bool {
    Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Re-executes this tool under `taskset -c 1` once (the gateway gets core
/// 0), marking the child with `pinned_env`. Returns the child's exit code
/// if it did; `None` means carry on in this process.
pub fn pin_self(pin: bool, pinned_env: &str) -> Option<ExitCode> {
    if !pin || std::env::var_os(pinned_env).is_some() || !have_taskset() {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let status = Command::new("taskset")
        .arg("-c")
        .arg("1")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(pinned_env, "1")
        .status()
        .ok()?;
    Some(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}

/// The shared `main` of a load tool: parse options (exit 2 on a usage
/// error), pin itself to core 1, run `body` on a current-thread runtime
/// (the clients share one core), report errors under `name`.
pub fn run_tool<O, F>(
    name: &str,
    parse: impl FnOnce() -> Result<O, String>,
    pin: impl Fn(&O) -> bool,
    pinned_env: &str,
    body: impl FnOnce(O) -> F,
) -> ExitCode
where
    F: std::future::Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
{
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(code) = pin_self(pin(&o), pinned_env) {
        return code;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(body(o)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a results document as pretty JSON, creating its folder.
pub fn write_json(
    path: &std::path::Path,
    doc: &serde_json::Value,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(doc)? + "\n")?;
    println!("\nwrote {}", path.display());
    Ok(())
}

/// A gateway child process, started by a load tool; killed on drop (also
/// on error or panic), and its temporary config file removed.
pub struct GatewayProc {
    pub child: Child,
    pub pid: u32,
    /// The WebSocket listener, read from the startup banner.
    pub addr: SocketAddr,
    config: Option<PathBuf>,
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(p) = &self.config {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl GatewayProc {
    /// Starts `bin` (under `taskset -c 0` when `pin` and taskset exists)
    /// with `--listen 127.0.0.1:0`, then `--config FILE` holding
    /// `config_toml` if given, then `args`; waits up to 20 s for the banner
    /// line that names the WebSocket address. `RUST_LOG` defaults to `warn`.
    pub fn spawn(
        bin: &Path,
        pin: bool,
        config_toml: Option<&str>,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<GatewayProc, BoxError> {
        Self::spawn_on(bin, pin.then_some(0), config_toml, args, env)
    }

    /// [`GatewayProc::spawn`] on core `core` (`taskset -c CORE` when given
    /// and taskset exists; else unpinned, so a child of a pinned tool
    /// shares the tool's core).
    pub fn spawn_on(
        bin: &Path,
        core: Option<usize>,
        config_toml: Option<&str>,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<GatewayProc, BoxError> {
        if !bin.exists() {
            return Err(format!(
                "gateway binary {} not found: run `cargo build --release` first or pass --bin PATH",
                bin.display()
            )
            .into());
        }
        let config = match config_toml {
            Some(text) => {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static N: AtomicUsize = AtomicUsize::new(0);
                let p = std::env::temp_dir().join(format!(
                    "tickergate-bench-{}-{}.toml",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::write(&p, text)?;
                Some(p)
            }
            None => None,
        };
        let mut cmd = if let Some(core) = core.filter(|_| have_taskset()) {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(core.to_string()).arg(bin);
            c
        } else {
            Command::new(bin)
        };
        if let Some(p) = &config {
            cmd.arg("--config").arg(p);
        }
        cmd.args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                if let Some(p) = &config {
                    let _ = std::fs::remove_file(p);
                }
                return Err(e.into());
            }
        };
        // Guard first, so an error below still kills the child.
        let mut gw = GatewayProc {
            pid: child.id(),
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            config,
        };
        let stdout = gw.child.stdout.take().ok_or("no stdout")?;
        // The banner line: `  WebSocket : ws://127.0.0.1:PORT/v1/ws ...`.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    // An ingest-only node serves no WebSocket: its metrics
                    // line names the address.
                    let t = line.trim_start();
                    let rest = t
                        .strip_prefix("WebSocket : ws://")
                        .or_else(|| t.strip_prefix("metrics   : http://"));
                    if let Some(rest) = rest {
                        let _ = tx.send(rest.split('/').next().unwrap_or("").to_string());
                        sent = true;
                    }
                }
                // Keep draining so the child never blocks on a full pipe.
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a,
            Err(_) => {
                let st = gw.child.try_wait().ok().flatten();
                return Err(format!(
                    "gateway did not print its WebSocket address within 20 s (exit: {st:?})"
                )
                .into());
            }
        };
        gw.addr = addr
            .parse()
            .map_err(|e| format!("bad address {addr:?} in banner: {e}"))?;
        Ok(gw)
    }
}

/// A field of /proc/PID/status in KiB (`VmRSS:`, `RssAnon:`, ...); 0 if
/// absent.
pub fn proc_status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident set of a process, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS:")
}

/// CPU time (user + system, all threads) a process has used, in seconds,
/// from /proc/PID/stat (clock ticks of 10 ms).
pub fn cpu_secs(pid: u32) -> Result<f64, BoxError> {
    let (user, system) = cpu_split(pid)?;
    Ok(user + system)
}

/// CPU time a process has used in user space and in the kernel, seconds
/// (same source as [`cpu_secs`]).
pub fn cpu_split(pid: u32) -> Result<(f64, f64), BoxError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; fields after its `)`.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("malformed /proc/PID/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime is field 14, stime 15.
    let tick = |i: usize| -> Result<f64, BoxError> {
        Ok(f.get(i).ok_or("short /proc/PID/stat")?.parse::<u64>()? as f64)
    };
    Ok((tick(11)? / 100.0, tick(12)? / 100.0))
}

/// Plain HTTP/1.1 GET with `Connection: close`; the body of a 200.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String, BoxError> {
    http_request(addr, "GET", path, &[], &[])
}

/// Plain HTTP/1.1 POST of `body` with `Connection: close` and the extra
/// `headers`; the body of a 200.
pub fn http_post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<String, BoxError> {
    http_request(addr, "POST", path, headers, body)
}

fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<String, BoxError> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let resp = String::from_utf8(resp)?;
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        let status = head.lines().next().unwrap_or("no status");
        let body: String = body.chars().take(300).collect();
        return Err(format!("{method} {path}: {status}: {body}").into());
    }
    Ok(body.to_string())
}

/// The gateway's whole `/metrics` text.
pub fn metric_text(addr: SocketAddr) -> Result<String, BoxError> {
    http_get(addr, "/metrics")
}

/// One unlabelled series from the gateway's `/metrics`.
pub fn metric(addr: SocketAddr, series: &str) -> Result<f64, BoxError> {
    let body = metric_text(addr)?;
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no {series} in /metrics").into())
}

/// Source address `i` of a load tool: 127.0.1.2, 127.0.1.3, ... (250 per
/// /24), so source ports never run out.
pub fn src_ip(i: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(127, 0, (1 + i / 250) as u8, (2 + i % 250) as u8)
}

/// The value after `flag` on the command line; `usage` is shown when it is
/// missing.
pub fn arg_value(
    flag: &str,
    it: &mut impl Iterator<Item = String>,
    usage: &str,
) -> Result<String, String> {
    it.next()
        .ok_or_else(|| format!("{flag} needs a value\n{usage}"))
}

/// `v` parsed as a number for `flag`.
pub fn arg_num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag}: not a valid number: {v:?}"))
}

/// The leading digits of `b` (1 to 19) as a number, and how many there
/// were: 8 at a time while a whole word is digits (a `gw_ts` is 19 digits,
/// read for every quote), then one by one.
pub fn parse_u64(b: &[u8]) -> Option<(u64, usize)> {
    const ZEROS: u64 = u64::from_le_bytes([b'0'; 8]);
    const HIGH: u64 = u64::from_le_bytes([0xf0; 8]);
    const SIXES: u64 = u64::from_le_bytes([0x06; 8]);
    let mut v = 0u64;
    let mut n = 0;
    while let Some(chunk) = b.get(n..n + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let x = u64::from_le_bytes(w);
        // Every byte is 0x30..=0x39 (fast_float's test).
        if x & HIGH != ZEROS || (x.wrapping_add(SIXES) & HIGH) != ZEROS || n + 8 > 19 {
            break;
        }
        v = v.wrapping_mul(100_000_000).wrapping_add(eight_digits(x));
        n += 8;
    }
    while let Some(&c) = b.get(n) {
        if !c.is_ascii_digit() {
            break;
        }
        v = v.wrapping_mul(10).wrapping_add((c - b'0') as u64);
        n += 1;
    }
    if n == 0 || n > 19 {
        return None;
    }
    Some((v, n))
}

/// Eight ASCII digits (the first in the lowest byte) as a number: pairs,
/// then fours, then eight, in three multiplications.
fn eight_digits(x: u64) -> u64 {
    const MASK: u64 = 0x0000_00FF_0000_00FF;
    const MUL1: u64 = 100 + (1_000_000 << 32);
    const MUL2: u64 = 1 + (10_000 << 32);
    let mut v = x.wrapping_sub(u64::from_le_bytes([b'0'; 8]));
    v = v.wrapping_mul(10).wrapping_add(v >> 8);
    (v & MASK)
        .wrapping_mul(MUL1)
        .wrapping_add(((v >> 16) & MASK).wrapping_mul(MUL2))
        >> 32
}

/// Percentiles of an age histogram (µs), in ms.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct LatencyMs {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

pub fn latency_of(h: &hdrhistogram::Histogram<u64>) -> LatencyMs {
    let ms = |us: u64| us as f64 / 1000.0;
    LatencyMs {
        count: h.len(),
        p50: ms(h.value_at_quantile(0.5)),
        p90: ms(h.value_at_quantile(0.9)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    }
}

pub fn latency_curve(h: &hdrhistogram::Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    curve_quantiles()
        .map(|q| (q * 100.0, h.value_at_quantile(q) as f64 / 1000.0))
        .collect()
}

/// 0..99.999th percentile, denser towards the tail.
pub fn curve_quantiles() -> impl Iterator<Item = f64> {
    (0..=50).map(|i| 1.0 - 10f64.powf(-(i as f64 / 10.0)))
}
