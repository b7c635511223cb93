//! Prometheus metrics. Label children are resolved once and kept, because
//! `with_label_values` hashes on every call and the hot path must not.

mod cluster;

use crate::protocol::{Disconnect, ErrorCode};
pub use cluster::ClusterMetrics;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    /// Without the `tickergate_` prefix: the standard `process_*` metrics
    /// (CPU seconds, resident memory, open and max file descriptors, from
    /// /proc) under the names every dashboard knows.
    process: Registry,
    pub connections: IntGauge,
    pub connections_opened: IntCounter,
    pub connections_max: IntGauge,
    pub connections_rejected: IntCounter,
    pub subscriptions: IntGauge,
    pub updates_in: IntCounterVec,
    pub feed_rejects: IntCounterVec,
    pub feed_flagged: IntCounterVec,
    pub feed_connects: IntCounterVec,
    /// Pairs a venue refused while taking the rest of the subscription.
    pub feed_symbols_refused: IntCounterVec,
    pub feed_frames: IntCounterVec,
    pub messages_out: IntCounter,
    pub control_out: IntCounter,
    pub frames_out: IntCounter,
    pub frames_direct: IntCounter,
    /// Times a session's data was held because its client had a full read
    /// window unread (see `flow.rs`).
    pub read_window_holds: IntCounter,
    /// Data frames that waited for their time because the session is paced
    /// at the rate its client was measured to read (see `flow.rs`): once
    /// per wait, on the shard's path or the task's.
    pub read_window_paced: IntCounter,
    /// Times a session held its data because its client (in ack mode) had
    /// a full window of frames unacknowledged.
    pub ack_window_holds: IntCounter,
    /// Sessions in ack mode (client-paced delivery).
    pub ack_mode_sessions: IntGauge,
    /// Server-Sent Events sessions open (`GET /v1/sse`).
    pub sse_sessions: IntGauge,
    pub bytes_out: IntCounter,
    pub conflated: IntCounter,
    /// Trades accepted from each feed.
    pub trades_in: IntCounterVec,
    /// Trade messages sent to clients.
    pub trades_out: IntCounter,
    /// Trades a client was owed and lost (it fell more than
    /// `session.max_pending_trades` behind); each loss is announced to it
    /// in a `trades_dropped` message.
    pub trades_dropped: IntCounter,
    pub latency: Histogram,
    /// Per frame: the age of its oldest live quote when the socket has
    /// taken the whole frame.
    pub write_age: Histogram,
    pub shard_passes: IntCounter,
    pub ops_in: IntCounter,
    pub conn_rate_limited: IntCounter,
    /// Upgrades closed with 1013 because their address already held
    /// `server.max_connections_per_ip` sessions.
    pub ip_sessions_full: IntCounter,
    pub limiter_keys: IntGauge,
    pub origin_rejected: IntCounter,
    errors: IntCounterVec,
    closes: IntCounterVec,
    pub feed_up: prometheus::IntGaugeVec,
    /// TLS handshakes that failed or timed out (`[server.tls]` only).
    pub tls_handshake_failures: IntCounter,
    /// Loads of the TLS certificate and key after start (SIGHUP or a
    /// change seen by `server.tls.check_secs`), by result.
    tls_cert_reloads: IntCounterVec,
    /// Loads of `[auth.jwt] public_keys` on SIGHUP, by result.
    jwt_key_reloads: IntCounterVec,
    /// The served leaf certificate's notAfter (Unix seconds); 0 without TLS.
    pub tls_cert_not_after: IntGauge,
    /// 1 while the last load after start failed.
    pub tls_cert_reload_failing: IntGauge,
    /// Refused tokens and entitlement denials, by reason.
    auth_failures: IntCounterVec,
    /// Scale-out over NATS (`tickergate_cluster_*`).
    pub cluster: ClusterMetrics,
}

/// The `reason` labels of `tickergate_auth_failures_total`.
pub const AUTH_FAILURE_REASONS: [&str; 4] = [
    "invalid",
    "expired",
    "forbidden_symbol",
    "key_connection_limit",
];

fn must<T>(r: prometheus::Result<T>) -> T {
    // Only fails on an invalid metric definition, which is a programming
    // error caught by the unit test below, never by input.
    match r {
        Ok(v) => v,
        Err(e) => panic!("metric definition: {e}"),
    }
}

/// `m`, registered with `registry`.
fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    m: prometheus::Result<M>,
) -> M {
    let m = must(m);
    must(registry.register(Box::new(m.clone())));
    m
}

/// The process collector (Linux /proc), in a registry of its own. Several
/// gateways in one process (the tests) each get one: the collector reads
/// the process, not the gateway.
fn process_registry() -> Registry {
    let r = Registry::new();
    #[cfg(target_os = "linux")]
    {
        let pc = prometheus::process_collector::ProcessCollector::for_self();
        must(r.register(Box::new(pc)));
    }
    r
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = must(Registry::new_custom(Some("tickergate".into()), None));
        let counter = |name: &str, help: &str| registered(&registry, IntCounter::new(name, help));
        let gauge = |name: &str, help: &str| registered(&registry, IntGauge::new(name, help));
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            registered(&registry, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let latency = must(Histogram::with_opts(
            HistogramOpts::new(
                "delivery_latency_seconds",
                "Per frame: age of its oldest live quote (since gw_ts, when it entered the gateway) when the frame is built for a writable socket; snapshots are not counted, max_hz hold-back is",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                0.5, 1.0, 2.5, 5.0,
            ]),
        ));
        must(registry.register(Box::new(latency.clone())));
        let write_age = must(Histogram::with_opts(
            HistogramOpts::new(
                "write_age_seconds",
                "Per frame carrying live quotes: age of its oldest quote (since gw_ts, when it entered the gateway) when the socket has taken the whole frame; snapshots are not counted",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                0.5, 1.0, 2.5, 5.0,
            ]),
        ));
        must(registry.register(Box::new(write_age.clone())));
        let feed_up = must(prometheus::IntGaugeVec::new(
            Opts::new("feed_up", "1 when the feed is connected and fresh"),
            &["feed"],
        ));
        must(registry.register(Box::new(feed_up.clone())));
        let m = Metrics {
            connections: gauge("connections", "Open WebSocket sessions"),
            connections_opened: counter(
                "connections_opened_total",
                "WebSocket sessions admitted (not counting those closed at once with 1013)",
            ),
            connections_max: gauge(
                "connections_max",
                "Configured limit of concurrent WebSocket sessions (server.max_connections)",
            ),
            connections_rejected: counter(
                "connections_rejected_total",
                "WebSocket sessions closed at once with 1013 because the server was full or their address at server.max_connections_per_ip",
            ),
            subscriptions: gauge("subscriptions", "Symbol subscriptions held by all sessions"),
            updates_in: counter_vec("updates_in_total", "Quotes written into slots", &["feed"]),
            feed_rejects: counter_vec(
                "feed_rejects_total",
                "Upstream quotes rejected by the normalizer",
                &["feed", "reason"],
            ),
            feed_flagged: counter_vec(
                "feed_flagged_total",
                "Upstream quotes published despite a problem the feed is configured to flag",
                &["feed", "reason"],
            ),
            feed_connects: counter_vec(
                "feed_connects_total",
                "Upstream connections established (the first, then every reconnect)",
                &["feed"],
            ),
            feed_symbols_refused: counter_vec(
                "feed_symbols_refused_total",
                "Pairs the venue refused while taking the rest of the subscription (each refusal, every connection); the refused pair's symbol gets no quotes",
                &["feed"],
            ),
            feed_frames: counter_vec(
                "feed_frames_total",
                "Raw upstream frames received",
                &["feed"],
            ),
            messages_out: counter("messages_out_total", "Quote and status messages sent"),
            control_out: counter(
                "control_out_total",
                "Control messages sent (welcome, acks, errors, pongs, heartbeats)",
            ),
            frames_out: counter("frames_out_total", "WebSocket frames sent"),
            frames_direct: counter(
                "frames_direct_total",
                "WebSocket frames a fan-out pass wrote straight to the socket of a sleeping session (part of frames_out_total)",
            ),
            read_window_holds: counter(
                "read_window_holds_total",
                "Times a session held its data because the client had a full read window unread (slow reader; the values coalesce meanwhile)",
            ),
            read_window_paced: counter(
                "read_window_paced_total",
                "Data frames that waited for their time because the session is paced at the rate its client was measured to read (late reader; the values coalesce meanwhile)",
            ),
            ack_window_holds: counter(
                "ack_window_holds_total",
                "Times a session held its data because its client, in ack mode, had its whole window of frames unacknowledged (the values coalesce meanwhile)",
            ),
            ack_mode_sessions: gauge(
                "ack_mode_sessions",
                "Sessions in ack mode: the client paces delivery with flow and ack ops",
            ),
            sse_sessions: gauge(
                "sse_sessions",
                "Server-Sent Events sessions open (GET /v1/sse); also counted in connections_opened_total",
            ),
            bytes_out: counter("bytes_out_total", "Payload bytes of WebSocket frames sent"),
            conflated: counter(
                "updates_conflated_total",
                "Updates a subscriber never saw because a newer value replaced them (seq gaps)",
            ),
            trades_in: counter_vec(
                "trades_in_total",
                "Trades accepted from a feed (each also updates its symbol's last/last_size)",
                &["feed"],
            ),
            trades_out: counter(
                "trades_out_total",
                "Trade messages sent to clients that subscribed with trades (part of messages_out_total)",
            ),
            trades_dropped: counter(
                "trades_dropped_total",
                "Trades a client was owed and never got because it fell more than session.max_pending_trades behind; each client is told in a trades_dropped message",
            ),
            latency,
            write_age,
            shard_passes: counter("shard_passes_total", "Fan-out shard flush passes"),
            ops_in: counter("ops_in_total", "Client ops received"),
            conn_rate_limited: counter(
                "conn_rate_limited_total",
                "TCP connections refused at accept: the client address exceeded server.conn_rate_per_ip",
            ),
            ip_sessions_full: counter(
                "ip_sessions_full_total",
                "WebSocket upgrades closed with 1013: the client address already held server.max_connections_per_ip sessions (also in connections_rejected_total)",
            ),
            limiter_keys: gauge(
                "limiter_keys",
                "Client addresses held by the per-address connection limiter (after the last prune)",
            ),
            origin_rejected: counter(
                "origin_rejected_total",
                "WebSocket upgrades refused with 403: Origin not in server.allowed_origins",
            ),
            errors: counter_vec("errors_total", "Error messages sent, by code", &["code"]),
            closes: counter_vec(
                "disconnects_total",
                "Sessions closed by the server, by close code",
                &["code"],
            ),
            feed_up,
            tls_handshake_failures: counter(
                "tls_handshake_failures_total",
                "Connections dropped because the TLS handshake failed or did not finish within server.header_timeout_ms",
            ),
            tls_cert_reloads: counter_vec(
                "tls_cert_reloads_total",
                "Loads of server.tls.cert and key after start (SIGHUP, or files changed and then unchanged for server.tls.check_secs): ok, or error (the certificate being served stays)",
                &["result"],
            ),
            jwt_key_reloads: counter_vec(
                "jwt_key_reloads_total",
                "Loads of [auth.jwt] public_keys on SIGHUP: ok, or error (a file that cannot be used; the keys in use stay)",
                &["result"],
            ),
            tls_cert_not_after: gauge(
                "tls_cert_not_after_seconds",
                "notAfter of the TLS certificate being served, Unix seconds (0 without server.tls)",
            ),
            tls_cert_reload_failing: gauge(
                "tls_cert_reload_failing",
                "1 while the last load of server.tls.cert and key after start failed (the certificate loaded before is served), 0 otherwise",
            ),
            auth_failures: counter_vec(
                "auth_failures_total",
                "Auth refusals: invalid or expired tokens, un-entitled symbols asked for (one per symbol), sessions over a key's max_connections",
                &["reason"],
            ),
            cluster: ClusterMetrics::register(&registry),
            registry,
            process: process_registry(),
        };
        let build = must(prometheus::IntGaugeVec::new(
            Opts::new("build_info", "Always 1; the running version in its label"),
            &["version"],
        ));
        must(m.registry.register(Box::new(build.clone())));
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        for r in AUTH_FAILURE_REASONS {
            m.auth_failures.with_label_values(&[r]);
        }
        for c in ErrorCode::ALL {
            m.errors.with_label_values(&[c.as_str()]);
        }
        for label in Disconnect::labels() {
            m.closes.with_label_values(&[label]);
        }
        for r in ["ok", "error"] {
            m.tls_cert_reloads.with_label_values(&[r]);
            m.jwt_key_reloads.with_label_values(&[r]);
        }
        m
    }

    /// Counts one reload of the JWT public keys.
    pub fn jwt_key_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.jwt_key_reloads.with_label_values(&[result]).inc();
    }

    /// Counts one certificate reload after start.
    pub fn tls_cert_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.tls_cert_reloads.with_label_values(&[result]).inc();
    }

    pub fn error(&self, code: ErrorCode) {
        self.errors.with_label_values(&[code.as_str()]).inc();
    }

    /// Server closes so far, by close code label (the log summary).
    pub fn closes_by_code(&self) -> Vec<(&'static str, u64)> {
        Disconnect::labels()
            .map(|l| (l, self.closes.with_label_values(&[l]).get()))
            .collect()
    }

    /// Counts a session the server closed.
    pub fn closed(&self, d: &Disconnect) {
        self.closes.with_label_values(&[d.label]).inc();
    }

    /// Counts one auth refusal; `reason` is one of [`AUTH_FAILURE_REASONS`].
    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures.with_label_values(&[reason]).inc();
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(8192);
        let mut families = self.registry.gather();
        families.extend(self.process.gather());
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::warn!("metrics encoding failed: {e}");
        }
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_all_families() {
        let m = super::Metrics::new();
        m.updates_in.with_label_values(&["sim"]).inc();
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("tickergate_updates_in_total{feed=\"sim\"} 1"));
        assert!(text.contains("tickergate_errors_total{code=\"unknown_op\"} 0"));
        assert!(text.contains("tickergate_disconnects_total{code=\"4008\"} 0"));
        assert!(text.contains("tickergate_delivery_latency_seconds_bucket"));
    }
}
