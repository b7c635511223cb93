//! The configuration: a TOML file (`--config PATH`) composed of each
//! component's own section, which that component defines and validates
//! next to its code. Every field has a default, so an empty file (or none)
//! runs the embedded default: one simulated feed, no external services.
//!
//! Unknown fields are errors (a typo must not silently fall back to a
//! default), and every validation error names the field it is about, with
//! its full path (`session.max_symbols: must be at least 1`).

use crate::invalid::Invalid;
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub use crate::auth::{AuthConfig, JwtConfig, KeyConfig, MIN_JWT_SECRET_BYTES};
pub use crate::cluster::{ClusterConfig, Role};
pub use crate::consolidated::ConsolidatedConfig;
pub use crate::edge::{ServerConfig, TlsConfig};
pub use crate::feed::ingest::IngestConfig;
pub use crate::feed::replay::{ReplayConfig, ReplayPace};
pub use crate::feed::sim::SimConfig;
pub use crate::feed::FeedConfig;
pub use crate::feed::{VenueConfig, VenueKind};
pub use crate::normalize::{CrossedPolicy, NormalizeConfig};
pub use crate::session::SessionConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {0}")]
    Invalid(#[from] Invalid),
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub session: SessionConfig,
    pub auth: AuthConfig,
    /// Upstream feeds. Default: one simulated feed named `sim`.
    pub feeds: Vec<FeedConfig>,
    /// Consolidated symbols: the best bid and ask across feeds' symbols.
    pub consolidated: Vec<ConsolidatedConfig>,
    /// Scale-out over NATS: this node's role.
    pub cluster: ClusterConfig,
    /// Whether the file had a `[[feeds]]` table (an edge node must not,
    /// and is not given the default one).
    #[serde(skip)]
    pub feeds_given: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            session: SessionConfig::default(),
            auth: AuthConfig::default(),
            feeds: vec![FeedConfig::Sim(SimConfig::default())],
            consolidated: Vec::new(),
            cluster: ClusterConfig::default(),
            feeds_given: false,
        }
    }
}

impl Config {
    /// Parses TOML text; `path` is only used in error messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        for f in &mut cfg.feeds {
            f.default_name();
        }
        cfg.feeds_given = toml::from_str::<toml::Table>(text)
            .map(|t| t.contains_key("feeds"))
            .unwrap_or(false);
        if cfg.cluster.role == Role::Edge && !cfg.feeds_given {
            cfg.feeds.clear();
        }
        Ok(cfg)
    }

    /// Reads a config file. A relative path in it (a replay recording, the
    /// TLS certificate and key, JWT public keys) is taken relative to the
    /// directory of this file, not the working directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        let mut cfg = Config::from_toml(&text, path)?;
        for f in &mut cfg.feeds {
            if let FeedConfig::Replay(r) = f {
                r.path = resolve_path(&r.path, path);
            }
        }
        if let Some(j) = &mut cfg.auth.jwt {
            for k in &mut j.public_keys {
                *k = resolve_path(k, path);
            }
        }
        if let Some(t) = &mut cfg.server.tls {
            t.cert = resolve_path(&t.cert, path);
            t.key = resolve_path(&t.key, path);
        }
        cfg.cluster.resolve_paths(|p| resolve_path(p, path));
        Ok(cfg)
    }

    /// Checks every section; the error names the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate().map_err(|e| e.under("server"))?;
        self.session.validate().map_err(|e| e.under("session"))?;
        self.auth.validate().map_err(|e| e.under("auth"))?;
        self.cluster.validate().map_err(|e| e.under("cluster"))?;
        if self.cluster.role == Role::Edge {
            if !self.feeds.is_empty() {
                return Err(Invalid::new(
                    "feeds",
                    "an edge node has no feeds ([cluster] role = \"edge\"): it serves what ingest nodes publish",
                )
                .into());
            }
            if !self.consolidated.is_empty() {
                return Err(Invalid::new(
                    "consolidated",
                    "an edge node has no consolidated symbols of its own: configure them on the ingest node",
                )
                .into());
            }
            return Ok(());
        }
        if self.feeds.is_empty() {
            return Err(Invalid::new("feeds", "at least one feed is required").into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, f) in self.feeds.iter().enumerate() {
            let at = format!("feeds[{i}]");
            let named = if f.name().is_empty() {
                Err(Invalid::new("name", "must not be empty"))
            } else if !names.insert(f.name()) {
                Err(Invalid::new(
                    "name",
                    format!("duplicate feed name {:?}", f.name()),
                ))
            } else {
                f.validate()
            };
            named.map_err(|e| e.under(&at))?;
        }
        crate::consolidated::resolve(&self.consolidated, &self.feed_symbols())?;
        Ok(())
    }

    /// Each feed's name and the gateway symbols it writes.
    pub fn feed_symbols(&self) -> Vec<(&str, Vec<String>)> {
        self.feeds
            .iter()
            .map(|f| (f.name(), f.symbol_names()))
            .collect()
    }
}

/// Resolves a relative `path` against the directory of the config file it
/// came from (what users expect: a config next to its recording works from
/// any working directory).
pub fn resolve_path(path: &Path, config_file: &Path) -> PathBuf {
    if path.is_absolute() || path.as_os_str().is_empty() {
        return path.to_path_buf();
    }
    match config_file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Config, ConfigError> {
        let c = Config::from_toml(t, Path::new("test.toml"))?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn empty_file_is_the_embedded_default() {
        let c = parse("").unwrap();
        assert_eq!(c.server.listen.port(), 8080);
        assert_eq!(c.feeds.len(), 1);
        assert_eq!(c.feeds[0].name(), "sim");
    }

    #[test]
    fn unknown_field_is_named() {
        let e = parse("[session]\nmax_symbolz = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_symbolz"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = parse("[session]\nmax_symbols = \"many\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_symbols"), "{e}");
    }

    #[test]
    fn bad_value_is_named() {
        let e = parse("[session]\nmax_symbols = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("session.max_symbols"), "{e}");
        let e = parse("[[feeds]]\nkind = \"sim\"\nrate = -1.0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("feeds[0].rate"), "{e}");
        let e = parse("[auth]\ntoken_sha256 = [\"abc\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("auth.token_sha256[0]"), "{e}");
    }

    #[test]
    fn auth_keys_and_jwt_validate() {
        let h = "a".repeat(64);
        let c = parse(&format!(
            "[[auth.keys]]\nname = \"desk\"\nsha256 = \"{h}\"\n\n[auth.jwt]\nsecret = \"{}\"\n",
            "s".repeat(32)
        ))
        .unwrap();
        assert!(c.auth.enabled());
        assert_eq!(c.auth.keys[0].symbols, vec!["*"]);
        assert_eq!(c.auth.jwt.as_ref().unwrap().leeway_s, 30);
        assert!(
            !format!("{c:?}").contains(&"s".repeat(32)),
            "secret leaks in Debug"
        );
        for (toml, field) in [
            (format!("[[auth.keys]]\nsha256 = \"{h}\"\n"), "name"),
            (format!("[[auth.keys]]\nname = \"\"\nsha256 = \"{h}\"\n"), "auth.keys[0].name"),
            ("[[auth.keys]]\nname = \"a\"\nsha256 = \"xyz\"\n".to_string(), "auth.keys[0].sha256"),
            (format!("[[auth.keys]]\nname = \"a\"\nsha256 = \"{h}\"\n[[auth.keys]]\nname = \"a\"\nsha256 = \"{}\"\n", "b".repeat(64)), "auth.keys[1].name"),
            (format!("[[auth.keys]]\nname = \"a\"\nsha256 = \"{h}\"\n[[auth.keys]]\nname = \"b\"\nsha256 = \"{h}\"\n"), "auth.keys[1].sha256"),
            (format!("[[auth.keys]]\nname = \"a\"\nsha256 = \"{h}\"\nsymbols = [\"B*C\"]\n"), "auth.keys[0].symbols[0]"),
            (format!("[[auth.keys]]\nname = \"a\"\nsha256 = \"{h}\"\nmax_connections = 0\n"), "auth.keys[0].max_connections"),
            (format!("[[auth.keys]]\nname = \"a\"\nsha256 = \"{h}\"\nmax_symbols = 0\n"), "auth.keys[0].max_symbols"),
            (format!("[[auth.keys]]\nname = \"jwt:x\"\nsha256 = \"{h}\"\n"), "auth.keys[0].name"),
            ("[auth.jwt]\nsecret = \"short\"\n".to_string(), "auth.jwt.secret"),
            ("[auth.jwt]\nleeway_s = 5\n".to_string(), "auth.jwt.secret"),
            ("[auth.jwt]\nsecret_env = \"TICKERGATE_TEST_UNSET_VAR_X\"\n".to_string(), "auth.jwt.secret_env"),
            ("[auth.jwt]\nsecrett = \"x\"\n".to_string(), "secrett"),
            (format!("[auth.jwt]\nsecret = \"{}\"\npublic_keys = [\"k.pem\"]\n", "s".repeat(32)), "auth.jwt.public_keys"),
            ("[auth.jwt]\npublic_keys = [\"\"]\naudience = \"a\"\nissuer = \"i\"\n".to_string(), "auth.jwt.public_keys[0]"),
            ("[auth.jwt]\npublic_keys = [\"k.pem\"]\nissuer = \"i\"\n".to_string(), "auth.jwt.audience"),
            ("[auth.jwt]\npublic_keys = [\"k.pem\"]\naudience = \"a\"\n".to_string(), "auth.jwt.issuer"),
        ] {
            let e = parse(&toml).unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn unknown_feed_kind_is_an_error() {
        let e = parse("[[feeds]]\nkind = \"carrier-pigeon\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("carrier-pigeon"), "{e}");
    }

    #[test]
    fn venue_feeds_validate_and_default_their_name() {
        let c = parse(
            "[[feeds]]\nkind = \"binance\"\nsymbols = { BTCUSDT = \"BTC-USDT\" }\ncrossed = \"flag\"\n",
        )
        .unwrap();
        assert_eq!(c.feeds[0].name(), "binance");
        let FeedConfig::Venue(VenueKind::Binance, v) = &c.feeds[0] else {
            panic!()
        };
        assert_eq!(v.normalize.crossed, CrossedPolicy::Flag);
        assert_eq!(v.symbols["BTCUSDT"], "BTC-USDT");
        let e = parse("[[feeds]]\nkind = \"kraken\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("feeds[0].symbols"), "{e}");
        let e = parse("[[feeds]]\nkind = \"coinbase\"\nsymbols = { \"BTC-USD\" = \"BAD SYM\" }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("feeds[0].symbols.BTC-USD"), "{e}");
        let e =
            parse("[[feeds]]\nkind = \"coinbase\"\nurl = \"http://x\"\nsymbols = { A = \"A\" }\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("feeds[0].url"), "{e}");
        let e = parse("[[feeds]]\nkind = \"http\"\nsymbols = [\"A\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("feeds[0].key_sha256"), "{e}");
        let e = parse("[[feeds]]\nkind = \"replay\"\npath = \"x\"\nvenue = \"nyse\"\nsymbols = { A = \"A\" }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("feeds[0].venue"), "{e}");
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let p = resolve_path(Path::new("replay/x.jsonl"), Path::new("/etc/tg/feeds.toml"));
        assert_eq!(p, Path::new("/etc/tg/replay/x.jsonl"));
        let p = resolve_path(Path::new("/abs/x.jsonl"), Path::new("/etc/tg/feeds.toml"));
        assert_eq!(p, Path::new("/abs/x.jsonl"));
        let p = resolve_path(Path::new("x.jsonl"), Path::new("feeds.toml"));
        assert_eq!(p, Path::new("x.jsonl"));
    }
}
