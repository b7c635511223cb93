//! `[cluster]`: whether this gateway is one node of several, and how it
//! reaches NATS.

use crate::invalid::Invalid;
use serde::Deserialize;
use std::path::PathBuf;

/// What this node does (see docs/scaling.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// One gateway, no NATS: today's behaviour.
    #[default]
    Standalone,
    /// Runs the feeds and publishes every accepted quote to NATS; serves
    /// no WebSocket or SSE clients.
    Ingest,
    /// No feeds: serves clients from what ingest nodes publish.
    Edge,
    /// An ingest node that also serves clients itself.
    Both,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Ingest => "ingest",
            Role::Edge => "edge",
            Role::Both => "both",
        }
    }

    /// Runs feeds and publishes them.
    pub fn publishes(self) -> bool {
        matches!(self, Role::Ingest | Role::Both)
    }

    /// Serves WebSocket and SSE clients.
    pub fn serves_clients(self) -> bool {
        self != Role::Ingest
    }
}

/// Where the last values live in JetStream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// On the NATS server's disk: survives a NATS restart.
    #[default]
    File,
    /// In the NATS server's memory: lost when it restarts (ingest nodes
    /// write their values again when they reconnect).
    Memory,
}

/// `[cluster.tls]`: TLS to NATS (required when the table is present).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NatsTls {
    /// PEM roots to verify the NATS server with (default: the system's
    /// webpki roots).
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for servers that verify clients.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    pub role: Role,
    /// NATS server(s): `nats://host:port`, `tls://host:port`, several
    /// separated by commas.
    pub nats_url: String,
    /// First tokens of every subject this cluster uses.
    pub subject_prefix: String,
    /// JetStream stream holding the last value of every symbol; default:
    /// the prefix in upper case with `_LAST` (`TICKERGATE_LAST`).
    pub stream: String,
    pub storage: Storage,
    /// Stream replicas (a clustered NATS); 1 for a single server.
    pub replicas: usize,
    /// This node's name in NATS (`/connz`) and in the status it publishes;
    /// default: host name and process id.
    pub node: String,
    /// Ingest: how often each feed's status goes out.
    pub status_interval_ms: u64,
    /// Edge: a feed whose status has not been heard for this long is
    /// stale (its ingest died or cannot reach NATS).
    pub stale_after_ms: u64,
    /// Edge: how many symbols it can learn from ingest nodes (room is
    /// reserved at start, ~0.5 KiB each).
    pub max_symbols: usize,
    /// Edge: subscribe and unsubscribe are gathered for this long.
    pub subscribe_batch_ms: u64,
    /// Edge: a symbol's subscription is kept this long after its last
    /// local subscriber left (a client that reconnects does not churn it).
    pub linger_ms: u64,
    /// Edge: messages NATS may buffer per subscription before it drops
    /// (counted in `tickergate_cluster_overflow_total`; the value is
    /// fetched again from the stream). A round message holds up to ~300
    /// quotes (at most `wire::ROUND_CHUNK_BYTES`).
    pub subscription_capacity: usize,
    /// Edge: once this share of the known symbols has local subscribers,
    /// one subscription to every ingest's whole rounds replaces one per
    /// symbol (a few messages per round, not one per quote; only while
    /// every feed's ingest publishes them); back below four fifths of it,
    /// one per symbol again. 0: always the one; above 1: never.
    pub wildcard_share: f64,
    /// Edge, following whole rounds: how long its fan-out may wait for
    /// the rest of an ingest's publishing round (a feed's burst) cut in
    /// several messages after the first, so clients get the burst in one
    /// frame as on a standalone gateway; the round's last message ends
    /// the wait at once. 0: never wait.
    pub round_hold_ms: u64,
    /// Ingest: a symbol's last value goes to the stream at most this
    /// long after it changed (live quotes are not stored; the server's
    /// store work follows symbols, not ticks). Edge: a symbol it starts to
    /// follow has its last value read twice, at once and this long after
    /// (a value published just before it subscribed may be stored only
    /// then). Keep it the same on every node.
    pub last_value_interval_ms: u64,
    /// Ingest: ... and at least every this many seqs of a busy symbol. An
    /// ingest that restarts numbers on this many seqs past the stored one
    /// (its last live quotes may have gone past it).
    pub last_value_max_lag: u64,
    /// Ingest: publish every trade too (`<prefix>.t.<symbol>`); each
    /// symbol that trades then keeps a ring of `session.max_pending_trades`
    /// trades on the ingest.
    pub trades: bool,
    /// Auth: a token, ...
    pub token: Option<String>,
    /// ... or a user and password, ...
    pub user: Option<String>,
    pub password: Option<String>,
    /// ... or a `.creds` file (JWT and nkey seed), ...
    pub creds_file: Option<PathBuf>,
    /// ... or a file holding an nkey seed (`SU...`).
    pub nkey_file: Option<PathBuf>,
    pub tls: Option<NatsTls>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            role: Role::Standalone,
            nats_url: "nats://127.0.0.1:4222".into(),
            subject_prefix: "tickergate".into(),
            stream: String::new(),
            storage: Storage::File,
            replicas: 1,
            node: String::new(),
            status_interval_ms: 500,
            stale_after_ms: 2000,
            max_symbols: 10_000,
            subscribe_batch_ms: 20,
            linger_ms: 1000,
            round_hold_ms: 20,
            last_value_interval_ms: 100,
            last_value_max_lag: 1000,
            subscription_capacity: 4096,
            trades: true,
            wildcard_share: 0.5,
            token: None,
            user: None,
            password: None,
            creds_file: None,
            nkey_file: None,
            tls: None,
        }
    }
}

/// A subject token as NATS takes it: printable ASCII without `.`, `*`, `>`.
fn valid_token(t: &str) -> bool {
    !t.is_empty()
        && t.bytes()
            .all(|b| (33..=126).contains(&b) && !matches!(b, b'.' | b'*' | b'>'))
}

impl ClusterConfig {
    /// The stream's name (see [`ClusterConfig::stream`]).
    pub fn stream_name(&self) -> String {
        if !self.stream.is_empty() {
            return self.stream.clone();
        }
        let base: String = self
            .subject_prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("{base}_LAST")
    }

    /// This node's name (see [`ClusterConfig::node`]).
    pub fn node_name(&self) -> String {
        if !self.node.is_empty() {
            return self.node.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "tickergate".into());
        format!("{host}-{}", std::process::id())
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        if self.role == Role::Standalone {
            return Ok(());
        }
        if self.nats_url.trim().is_empty() {
            return Err(Invalid::new("nats_url", "must not be empty"));
        }
        for u in self.nats_url.split(',') {
            let u = u.trim();
            let rest = u
                .strip_prefix("nats://")
                .or_else(|| u.strip_prefix("tls://"))
                .unwrap_or(u);
            let host_port = rest.rsplit('@').next().unwrap_or(rest);
            if host_port.is_empty() || host_port.contains('/') || host_port.contains(' ') {
                return Err(Invalid::new(
                    "nats_url",
                    format!("{u:?} is not nats://host:port or tls://host:port"),
                ));
            }
        }
        if self.subject_prefix.starts_with('$') || !self.subject_prefix.split('.').all(valid_token)
        {
            return Err(Invalid::new(
                "subject_prefix",
                "must be dot-separated NATS tokens (printable ASCII, no `*`, `>` or spaces), not starting with `$`",
            ));
        }
        let stream = self.stream_name();
        if stream.is_empty()
            || stream.len() > 64
            || !stream
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(Invalid::new(
                "stream",
                "must be 1 to 64 letters, digits, `_` or `-`",
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(Invalid::new("replicas", "must be 1 to 5"));
        }
        if !(50..=60_000).contains(&self.status_interval_ms) {
            return Err(Invalid::new("status_interval_ms", "must be 50 to 60000"));
        }
        if self.stale_after_ms < 2 * self.status_interval_ms {
            return Err(Invalid::new(
                "stale_after_ms",
                format!(
                    "must be at least twice status_interval_ms ({}), or a healthy ingest would look silent",
                    self.status_interval_ms
                ),
            ));
        }
        if !(1..=1_000_000).contains(&self.max_symbols) {
            return Err(Invalid::new("max_symbols", "must be 1 to 1000000"));
        }
        if !(1..=1000).contains(&self.subscribe_batch_ms) {
            return Err(Invalid::new("subscribe_batch_ms", "must be 1 to 1000"));
        }
        if !(0.0..=2.0).contains(&self.wildcard_share) {
            return Err(Invalid::new(
                "wildcard_share",
                "must be 0 to 2 (above 1: never)",
            ));
        }
        if self.linger_ms > 600_000 {
            return Err(Invalid::new("linger_ms", "must be at most 600000"));
        }
        if !(10..=10_000).contains(&self.last_value_interval_ms) {
            return Err(Invalid::new(
                "last_value_interval_ms",
                "must be 10 to 10000",
            ));
        }
        if !(1..=1_000_000).contains(&self.last_value_max_lag) {
            return Err(Invalid::new("last_value_max_lag", "must be 1 to 1000000"));
        }
        if self.round_hold_ms > 1000 {
            return Err(Invalid::new("round_hold_ms", "must be at most 1000"));
        }
        if !(16..=1_048_576).contains(&self.subscription_capacity) {
            return Err(Invalid::new(
                "subscription_capacity",
                "must be 16 to 1048576",
            ));
        }
        let methods = [
            self.token.is_some(),
            self.user.is_some() || self.password.is_some(),
            self.creds_file.is_some(),
            self.nkey_file.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            return Err(Invalid::new(
                "token",
                "give one of token, user and password, creds_file, nkey_file",
            ));
        }
        if self.user.is_some() != self.password.is_some() {
            let f = if self.user.is_some() {
                "password"
            } else {
                "user"
            };
            return Err(Invalid::new(f, "user and password go together"));
        }
        if let Some(t) = &self.tls {
            if t.cert_file.is_some() != t.key_file.is_some() {
                return Err(
                    Invalid::new("cert_file", "cert_file and key_file go together").under("tls"),
                );
            }
        }
        Ok(())
    }

    /// Reads every file it names (`--check-config` and start): the first
    /// that cannot be read, with its field.
    pub fn check_files(&self) -> Result<(), Invalid> {
        if self.role == Role::Standalone {
            return Ok(());
        }
        let mut files: Vec<(&str, &PathBuf)> = Vec::new();
        for (f, p) in [
            ("creds_file", &self.creds_file),
            ("nkey_file", &self.nkey_file),
        ] {
            if let Some(p) = p {
                files.push((f, p));
            }
        }
        if let Some(t) = &self.tls {
            for (f, p) in [
                ("tls.ca_file", &t.ca_file),
                ("tls.cert_file", &t.cert_file),
                ("tls.key_file", &t.key_file),
            ] {
                if let Some(p) = p {
                    files.push((f, p));
                }
            }
        }
        for (f, p) in files {
            match std::fs::read_to_string(p) {
                Ok(t) if !t.trim().is_empty() => {}
                Ok(_) => return Err(Invalid::new(f, format!("{} is empty", p.display()))),
                Err(e) => return Err(Invalid::new(f, format!("cannot read {}: {e}", p.display()))),
            }
        }
        Ok(())
    }

    /// The files it names, made relative to the config file's directory
    /// by `resolve`.
    pub fn resolve_paths(&mut self, resolve: impl Fn(&std::path::Path) -> PathBuf) {
        let r = |p: &mut Option<PathBuf>| {
            if let Some(x) = p {
                *x = resolve(x);
            }
        };
        r(&mut self.creds_file);
        r(&mut self.nkey_file);
        if let Some(t) = &mut self.tls {
            r(&mut t.ca_file);
            r(&mut t.cert_file);
            r(&mut t.key_file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge() -> ClusterConfig {
        ClusterConfig {
            role: Role::Edge,
            ..Default::default()
        }
    }

    #[test]
    fn standalone_checks_nothing_else() {
        let c = ClusterConfig {
            nats_url: String::new(),
            ..Default::default()
        };
        assert!(c.validate().is_ok());
    }

    #[test]
    fn refusals_name_the_field() {
        let cases: Vec<(ClusterConfig, &str)> = vec![
            (
                ClusterConfig {
                    nats_url: " ".into(),
                    ..edge()
                },
                "nats_url",
            ),
            (
                ClusterConfig {
                    nats_url: "nats://".into(),
                    ..edge()
                },
                "nats_url",
            ),
            (
                ClusterConfig {
                    subject_prefix: "a.*".into(),
                    ..edge()
                },
                "subject_prefix",
            ),
            (
                ClusterConfig {
                    subject_prefix: "$JS".into(),
                    ..edge()
                },
                "subject_prefix",
            ),
            (
                ClusterConfig {
                    subject_prefix: "a..b".into(),
                    ..edge()
                },
                "subject_prefix",
            ),
            (
                ClusterConfig {
                    stream: "a.b".into(),
                    ..edge()
                },
                "stream",
            ),
            (
                ClusterConfig {
                    stale_after_ms: 600,
                    ..edge()
                },
                "stale_after_ms",
            ),
            (
                ClusterConfig {
                    last_value_interval_ms: 0,
                    ..edge()
                },
                "last_value_interval_ms",
            ),
            (
                ClusterConfig {
                    last_value_max_lag: 0,
                    ..edge()
                },
                "last_value_max_lag",
            ),
            (
                ClusterConfig {
                    token: Some("t".into()),
                    creds_file: Some("x.creds".into()),
                    ..edge()
                },
                "token",
            ),
            (
                ClusterConfig {
                    user: Some("u".into()),
                    ..edge()
                },
                "password",
            ),
            (
                ClusterConfig {
                    tls: Some(NatsTls {
                        cert_file: Some("c.pem".into()),
                        ..Default::default()
                    }),
                    ..edge()
                },
                "tls.cert_file",
            ),
        ];
        for (c, field) in cases {
            let e = c.validate().unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
        assert!(edge().validate().is_ok());
    }

    #[test]
    fn stream_name_follows_the_prefix() {
        let c = ClusterConfig {
            subject_prefix: "md.eu-1".into(),
            ..Default::default()
        };
        assert_eq!(c.stream_name(), "MD_EU_1_LAST");
        assert!(ClusterConfig { ..c }.validate().is_ok());
    }
}
