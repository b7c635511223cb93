//! The observability files in `grafana/` against the code and a real
//! Prometheus.
//!
//! * Every metric the dashboard and the alert rules name must be one the
//!   gateway exports (`dashboard_and_rules_name_only_exported_metrics`, needs
//!   nothing but the gateway).
//! * `promtool` accepts the rules and the example config, and the rules'
//!   unit tests pass (`promtool_accepts_rules_config_and_rule_tests`).
//! * A real Prometheus (Debian package `prometheus`) scrapes an in-process
//!   gateway, loads and evaluates the rules without error, and runs every
//!   dashboard query (`prometheus_scrapes_gateway_and_runs_rules_and_dashboard`);
//!   the Cluster row's queries must return the standalone gateway's series
//!   (its role, and zeros).
//!
//! The last two are ignored by default: `scripts/test` installs Prometheus
//! and runs them with `--include-ignored`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tickergate::config::{FeedConfig, SimConfig};
use tickergate::{Config, Gateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long to wait for Prometheus to reach a state. Only a bound: the
/// tests wait for events and never assert on how long they took.
const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);
/// The scrape job name; the alert rules match `job="tickergate"`.
const JOB: &str = "tickergate";

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn dashboard_path() -> PathBuf {
    repo_path("grafana/dashboards/tickergate.json")
}

fn rules_path() -> PathBuf {
    repo_path("grafana/alerts/tickergate.rules.yml")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

async fn start_gateway() -> Gateway {
    let mut cfg = Config::default();
    cfg.server.listen = "127.0.0.1:0".parse().expect("address");
    cfg.feeds = vec![FeedConfig::Sim(SimConfig {
        rate: 500.0,
        ..Default::default()
    })];
    Gateway::start(cfg).await.expect("gateway starts")
}

// ---------------------------------------------------------------- HTTP

/// A minimal HTTP/1.1 GET (`Connection: close`): status and body. Handles
/// `Content-Length` and chunked bodies, which is all Prometheus and the
/// gateway send when the request has no `Accept-Encoding`.
async fn http_get(addr: SocketAddr, target: &str) -> Result<(u16, String), String> {
    let exchange = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("send to {addr}: {e}"))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .await
            .map_err(|e| format!("read from {addr}: {e}"))?;
        parse_response(&raw)
    };
    match tokio::time::timeout(Duration::from_secs(10), exchange).await {
        Ok(r) => r.map_err(|e| format!("GET http://{addr}{target}: {e}")),
        Err(_) => Err(format!("GET http://{addr}{target}: no response within 10s")),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let end = find(raw, b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| format!("headers: {e}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k == "content-length" {
                length = Some(
                    v.parse::<usize>()
                        .map_err(|e| format!("content-length: {e}"))?,
                );
            }
        }
    }
    let body = &raw[end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else if let Some(n) = length {
        body.get(..n)
            .ok_or("body shorter than content-length")?
            .to_vec()
    } else {
        body.to_vec()
    };
    let body = String::from_utf8(body).map_err(|e| format!("body: {e}"))?;
    Ok((status, body))
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let nl = find(b, b"\r\n").ok_or("truncated chunk size")?;
        let line = std::str::from_utf8(&b[..nl]).map_err(|e| format!("chunk size: {e}"))?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let n = usize::from_str_radix(size, 16).map_err(|e| format!("chunk size {size:?}: {e}"))?;
        b = &b[nl + 2..];
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..n).ok_or("truncated chunk")?);
        b = b.get(n + 2..).ok_or("truncated chunk end")?;
    }
}

/// Percent-encodes a query-string value.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ------------------------------------------------------ metric names

/// Metric families in a text exposition, by name, with their type.
fn families(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect()
}

/// Every `tickergate_[a-z0-9_]+` token in `text`.
fn referenced_names(text: &str) -> BTreeSet<String> {
    const PREFIX: &str = "tickergate_";
    let b = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while let Some(off) = text[i..].find(PREFIX) {
        let start = i + off;
        let mut end = start + PREFIX.len();
        while end < b.len()
            && (b[end].is_ascii_lowercase() || b[end].is_ascii_digit() || b[end] == b'_')
        {
            end += 1;
        }
        let standalone = start == 0 || {
            let p = b[start - 1];
            !(p.is_ascii_alphanumeric() || p == b'_' || p == b':')
        };
        if standalone && end > start + PREFIX.len() {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    out
}

/// Whether `name` is an exported family, or a histogram's or summary's
/// `_bucket`/`_sum`/`_count` series.
fn is_exported(name: &str, fams: &BTreeMap<String, String>) -> bool {
    if fams.contains_key(name) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .and_then(|base| fams.get(base))
            .is_some_and(|kind| kind == "histogram" || kind == "summary")
    })
}

/// The dashboard's PromQL: every panel target's `expr`.
fn dashboard_exprs() -> Vec<(String, String)> {
    let path = dashboard_path();
    let json: serde_json::Value = serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    fn walk(v: &serde_json::Value, title: &str, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                let title = m.get("title").and_then(|t| t.as_str()).unwrap_or(title);
                if let Some(e) = m.get("expr").and_then(|e| e.as_str()) {
                    out.push((title.to_string(), e.to_string()));
                }
                for v in m.values() {
                    walk(v, title, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, title, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&json, "", &mut out);
    assert!(
        out.len() >= 10,
        "{}: expected the panels' `expr` fields, found {}",
        path.display(),
        out.len()
    );
    out
}

/// The dashboard's template variable queries (e.g. the instance picker).
fn dashboard_variable_queries() -> Vec<String> {
    let json: serde_json::Value = serde_json::from_str(&read(&dashboard_path())).expect("JSON");
    let mut out = Vec::new();
    for var in json["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = var["definition"].as_str().filter(|q| !q.is_empty()) {
            out.push(q.to_string());
        }
    }
    out
}

/// Grafana's variables replaced by values Prometheus accepts.
fn instantiate(expr: &str) -> String {
    let e = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "5m")
        .replace("$instance", ".*");
    assert!(
        !e.contains('$'),
        "dashboard expr uses a variable this test does not know: {expr}"
    );
    e
}

/// Group and alert names from the rules file (`- name:` / `- alert:`).
fn rules_file_names() -> (BTreeSet<String>, BTreeSet<String>) {
    let text = read(&rules_path());
    let mut groups = BTreeSet::new();
    let mut alerts = BTreeSet::new();
    for line in text.lines() {
        let l = line.trim();
        if let Some(n) = l.strip_prefix("- name:") {
            groups.insert(n.trim().trim_matches('"').to_string());
        } else if let Some(n) = l.strip_prefix("- alert:") {
            alerts.insert(n.trim().trim_matches('"').to_string());
        }
    }
    assert!(!groups.is_empty() && !alerts.is_empty(), "no rules found");
    (groups, alerts)
}

/// Asserts every `tickergate_*` metric named by the dashboard and the
/// alert rules is exported by the gateway at `addr`.
async fn assert_references_exported(addr: SocketAddr) -> BTreeMap<String, String> {
    let (status, text) = http_get(addr, "/metrics").await.expect("GET /metrics");
    assert_eq!(status, 200, "/metrics: {text}");
    let fams = families(&text);
    assert!(
        fams.contains_key("tickergate_updates_in_total"),
        "no tickergate families in /metrics:\n{text}"
    );

    let mut dash = BTreeSet::new();
    for (_, e) in dashboard_exprs() {
        dash.extend(referenced_names(&e));
    }
    for q in dashboard_variable_queries() {
        dash.extend(referenced_names(&q));
    }
    let rules = referenced_names(&read(&rules_path()));
    for (file, names) in [("dashboard", &dash), ("alert rules", &rules)] {
        let missing: Vec<_> = names.iter().filter(|n| !is_exported(n, &fams)).collect();
        assert!(
            missing.is_empty(),
            "the {file} name metrics the gateway does not export: {missing:?}\nexported: {:?}",
            fams.keys().collect::<Vec<_>>()
        );
    }
    let shown = |f: &String| {
        dash.iter().any(|n| {
            n == f
                || ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| *n == format!("{f}{s}"))
        })
    };
    let unshown: Vec<_> = fams.keys().filter(|f| !shown(f)).collect();
    if !unshown.is_empty() {
        eprintln!("note: exported but not on the dashboard: {unshown:?}");
    }
    fams
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_rules_name_only_exported_metrics() {
    let gw = start_gateway().await;
    assert_references_exported(gw.local_addr).await;
    gw.shutdown();
}

// ---------------------------------------------------------- binaries

fn find_bin(name: &str, env: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn prometheus_bin() -> PathBuf {
    find_bin("prometheus", "PROMETHEUS_BIN").unwrap_or_else(|| {
        panic!(
            "prometheus not found (Debian package `prometheus`, binary /usr/bin/prometheus). \
             Run scripts/test, which installs it, or set PROMETHEUS_BIN"
        )
    })
}

fn run(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{text}",
        out.status
    );
    text
}

#[test]
#[ignore = "needs prometheus: run scripts/test"]
fn promtool_accepts_rules_config_and_rule_tests() {
    // promtool ships in the same Debian package as prometheus.
    prometheus_bin();
    let Some(promtool) = find_bin("promtool", "PROMTOOL_BIN") else {
        eprintln!(
            "promtool not found: skipping its checks (Prometheus itself still loads the rules)"
        );
        return;
    };
    let alerts = repo_path("grafana/alerts");
    run(Command::new(&promtool)
        .arg("check")
        .arg("rules")
        .arg(rules_path()));
    // The rules' unit tests (paths inside are relative to the test file).
    run(Command::new(&promtool).current_dir(&alerts).args([
        "test",
        "rules",
        "tickergate.rules.test.yml",
    ]));
    // The example config, including its rule_files path.
    run(Command::new(&promtool)
        .arg("check")
        .arg("config")
        .arg(repo_path("grafana/prometheus.yml")));
}

// -------------------------------------------------------- Prometheus

/// A Prometheus child process that is stopped whatever happens to the test.
///
/// It runs under a small `sh` watchdog holding the read end of a pipe whose
/// only writer is this process: when the guard is dropped, or the test
/// process dies in any way (even SIGKILL), the pipe closes and the watchdog
/// sends Prometheus SIGTERM. Drop then waits for it and falls back to
/// SIGKILL.
struct Prometheus {
    shell: Child,
    keepalive: Option<ChildStdin>,
    pid: u32,
    addr: SocketAddr,
    dir: PathBuf,
    log: PathBuf,
}

const WATCHDOG: &str = r#"exec 3<&0
"$@" </dev/null 3<&- 1>&2 &
p=$!
echo "$p"
{ read -r _ <&3; kill "$p" 2>/dev/null; } &
wait "$p"
"#;

fn unique_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "tickergate-prometheus-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    dir
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn yaml_str(s: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar.
    serde_json::to_string(s).expect("string")
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second with the project's
    /// alert rules, and waits until it is ready.
    async fn start(target: SocketAddr) -> Prometheus {
        let bin = prometheus_bin();
        // The free port may be taken between probing and Prometheus binding
        // it: retry with another.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let dir = unique_dir();
            let config = dir.join("prometheus.yml");
            std::fs::write(
                &config,
                format!(
                    "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                     rule_files:\n  - {}\n\
                     scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: [{}]\n",
                    yaml_str(&rules_path().to_string_lossy()),
                    yaml_str(&target.to_string()),
                ),
            )
            .expect("write prometheus.yml");
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let mut p = Prometheus::spawn(&bin, &dir, &config, addr);
            match p.wait_ready().await {
                Ok(()) => return p,
                Err(log) if attempt < 3 && log.contains("address already in use") => drop(p),
                Err(log) => {
                    drop(p);
                    panic!("prometheus did not start; its log:\n{log}");
                }
            }
        }
    }

    fn spawn(bin: &Path, dir: &Path, config: &Path, addr: SocketAddr) -> Prometheus {
        let log = dir.join("prometheus.log");
        let log_file = std::fs::File::create(&log).expect("create prometheus.log");
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start sh for {}: {e}", bin.display()));
        let keepalive = shell.stdin.take();
        let mut first = String::new();
        if let Some(out) = shell.stdout.take() {
            // One short line, written right after the fork.
            let _ = BufReader::new(out).read_line(&mut first);
        }
        let pid = first.trim().parse().unwrap_or_else(|_| {
            let _ = shell.kill();
            let _ = shell.wait();
            panic!("watchdog did not report a pid: {first:?}")
        });
        Prometheus {
            shell,
            keepalive,
            pid,
            addr,
            dir: dir.to_path_buf(),
            log,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log if Prometheus has exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.shell.try_wait() {
            panic!(
                "prometheus exited ({status}); its log:\n{}",
                self.log_text()
            );
        }
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.shell.try_wait() {
                return Err(format!("exited ({status})\n{}", self.log_text()));
            }
            if let Ok((200, _)) = http_get(self.addr, "/-/ready").await {
                return Ok(());
            }
            if start.elapsed() > DEADLINE {
                return Err(format!(
                    "not ready within {DEADLINE:?}\n{}",
                    self.log_text()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops Prometheus and its watchdog; returns whether it stopped.
    fn stop(&mut self) -> bool {
        // Closing the pipe makes the watchdog send SIGTERM.
        drop(self.keepalive.take());
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.shell.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status();
        let _ = self.shell.kill();
        let _ = self.shell.wait();
        false
    }

    /// GET an API path; `data` of a `success` answer.
    async fn api(addr: SocketAddr, target: &str) -> Result<serde_json::Value, String> {
        let (status, body) = http_get(addr, target).await?;
        let v: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| format!("GET {target}: HTTP {status}, not JSON ({e}): {body}"))?;
        if status != 200 || v["status"] != "success" {
            return Err(format!("GET {target}: HTTP {status}: {body}"));
        }
        Ok(v["data"].clone())
    }

    /// Instant query; the result vector.
    async fn query(addr: SocketAddr, promql: &str) -> Result<Vec<serde_json::Value>, String> {
        let data = Self::api(addr, &format!("/api/v1/query?query={}", enc(promql))).await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// Polls `f` until it returns `Ok`, within [`DEADLINE`].
    async fn eventually<T, F, Fut>(&mut self, what: &str, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let start = Instant::now();
        loop {
            self.assert_running();
            let last = match f().await {
                Ok(v) => return v,
                Err(e) => e,
            };
            if start.elapsed() > DEADLINE {
                panic!("{what}: not within {DEADLINE:?}; last: {last}");
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let stopped = self.stop();
        if std::thread::panicking() || !stopped {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "prometheus (pid {}, stopped: {stopped}) files kept in {}; log tail:",
                self.pid,
                self.dir.display()
            );
            for l in tail.iter().rev() {
                eprintln!("  {l}");
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn sample_value(sample: &serde_json::Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus: run scripts/test"]
async fn prometheus_scrapes_gateway_and_runs_rules_and_dashboard() {
    let gw = start_gateway().await;
    let target = gw.local_addr;
    let fams = assert_references_exported(target).await;
    let mut prom = Prometheus::start(target).await;
    let addr = prom.addr;

    // Quotes flow into Prometheus.
    let samples = prom
        .eventually(
            "tickergate_updates_in_total > 0 in Prometheus",
            move || async move {
                let r = Prometheus::query(addr, "tickergate_updates_in_total").await?;
                if r.iter().any(|s| sample_value(s) > 0.0) {
                    Ok(r)
                } else {
                    Err(format!("result {r:?}"))
                }
            },
        )
        .await;
    let sim = samples
        .iter()
        .find(|s| s["metric"]["feed"] == "sim")
        .unwrap_or_else(|| panic!("no feed=\"sim\" series: {samples:?}"));
    assert!(sample_value(sim) > 0.0, "{sim}");
    assert_eq!(sim["metric"]["job"], JOB);
    assert_eq!(sim["metric"]["instance"], target.to_string());

    // The target is up.
    let up = Prometheus::query(addr, &format!("up{{job=\"{JOB}\"}}"))
        .await
        .expect("query up");
    assert_eq!(up.len(), 1, "one target: {up:?}");
    assert_eq!(up[0]["metric"]["instance"], target.to_string(), "{up:?}");
    assert_eq!(sample_value(&up[0]), 1.0, "up: {up:?}");

    // The feed reports up once the simulator has published.
    prom.eventually(
        "tickergate_feed_up{feed=\"sim\"} == 1",
        move || async move {
            let r = Prometheus::query(addr, "tickergate_feed_up{feed=\"sim\"}").await?;
            match r.first() {
                Some(s) if sample_value(s) == 1.0 => Ok(()),
                _ => Err(format!("result {r:?}")),
            }
        },
    )
    .await;

    // Prometheus parsed every series the dashboard and the rules name.
    let wanted: BTreeSet<String> = dashboard_exprs()
        .iter()
        .flat_map(|(_, e)| referenced_names(e))
        .chain(referenced_names(&read(&rules_path())))
        .collect();
    assert!(wanted.iter().all(|n| is_exported(n, &fams)));
    prom.eventually("Prometheus has every referenced series", move || {
        let wanted = wanted.clone();
        async move {
            let names = Prometheus::api(addr, "/api/v1/label/__name__/values").await?;
            let have: BTreeSet<String> = names
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect();
            let missing: Vec<_> = wanted.difference(&have).collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("missing {missing:?}"))
            }
        }
    })
    .await;

    // The instance picker finds the gateway.
    for q in dashboard_variable_queries() {
        let Some(args) = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
        else {
            panic!("unexpected variable query {q:?}");
        };
        let (metric, label) = args.rsplit_once(',').expect("label_values(metric, label)");
        let vals = Prometheus::api(
            addr,
            &format!(
                "/api/v1/label/{}/values?match[]={}",
                label.trim(),
                enc(metric.trim())
            ),
        )
        .await
        .expect("label values");
        assert!(
            vals.as_array().is_some_and(|a| a
                .iter()
                .any(|v| v == &serde_json::json!(target.to_string()))),
            "{q} does not list {target}: {vals}"
        );
    }

    // Every dashboard query is valid PromQL.
    for (title, expr) in dashboard_exprs() {
        let e = instantiate(&expr);
        if let Err(err) = Prometheus::query(addr, &e).await {
            panic!("dashboard panel {title:?}: query {e:?} failed: {err}");
        }
    }

    // The Cluster row on a standalone gateway, which exports the
    // tickergate_cluster_* metrics with role="standalone" and zeros: every
    // query naming one returns this gateway's series; the role panel shows
    // the one role, NATS connected shows "standalone" (-1), the rest are 0.
    let cluster: Vec<(String, String)> = dashboard_exprs()
        .into_iter()
        .filter(|(_, e)| e.contains("tickergate_cluster_"))
        .collect();
    assert!(
        cluster.len() >= 10,
        "the dashboard's Cluster row queries: {cluster:?}"
    );
    for (title, expr) in cluster {
        let e = instantiate(&expr);
        let what = format!("dashboard panel {title:?}: {e:?} returns series");
        let r = prom
            .eventually(&what, || {
                let e = e.clone();
                async move {
                    let r = Prometheus::query(addr, &e).await?;
                    if r.is_empty() {
                        Err("no series".to_string())
                    } else {
                        Ok(r)
                    }
                }
            })
            .await;
        for s in &r {
            assert_eq!(s["metric"]["instance"], target.to_string(), "{what}: {s}");
        }
        match title.as_str() {
            "Node role" => {
                assert_eq!(r.len(), 1, "{what}: one role: {r:?}");
                assert_eq!(r[0]["metric"]["role"], "standalone", "{what}: {r:?}");
                assert_eq!(sample_value(&r[0]), 1.0, "{what}: {r:?}");
            }
            "NATS connected" => {
                assert_eq!(r.len(), 1, "{what}: {r:?}");
                assert_eq!(sample_value(&r[0]), -1.0, "{what}: standalone: {r:?}");
            }
            _ => assert!(
                r.iter().all(|s| sample_value(s) == 0.0),
                "{what}: 0 on a standalone gateway: {r:?}"
            ),
        }
    }

    // The rules loaded, and every rule has been evaluated without error.
    let (want_groups, want_alerts) = rules_file_names();
    let groups = prom
        .eventually("every rule evaluated", move || async move {
            let data = Prometheus::api(addr, "/api/v1/rules").await?;
            let groups = data["groups"].as_array().cloned().unwrap_or_default();
            let pending: Vec<String> = groups
                .iter()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .filter(|r| r["health"] == "unknown")
                .map(|r| r["name"].to_string())
                .collect();
            if groups.is_empty() || !pending.is_empty() {
                Err(format!(
                    "not evaluated yet: {pending:?} ({} groups)",
                    groups.len()
                ))
            } else {
                Ok(groups)
            }
        })
        .await;
    let got_groups: BTreeSet<String> = groups
        .iter()
        .filter_map(|g| g["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(got_groups, want_groups, "rule groups loaded by Prometheus");
    let rules: Vec<serde_json::Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    let got_alerts: BTreeSet<String> = rules
        .iter()
        .filter(|r| r["type"] == "alerting")
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        got_alerts, want_alerts,
        "alerting rules loaded by Prometheus"
    );
    for r in &rules {
        assert_eq!(
            r["health"], "ok",
            "rule {} does not evaluate: {}",
            r["name"], r["lastError"]
        );
    }

    drop(prom);
    gw.shutdown();
}
