//! TLS on the public listener (`[server.tls]`), for `wss://` and `https://`.
//!
//! rustls with the ring provider, chosen explicitly rather than through a
//! process-wide default (which panics when none or several are installed)
//! and because aws-lc costs minutes of build on a small machine. A bad
//! certificate or key file at start is a start error that names it.
//! The listener runs the handshake per connection, bounded by
//! `server.header_timeout_ms`, then serves HTTP over the TLS stream exactly
//! as over plain TCP.
//!
//! Renewal without a restart: the serving certificate lives in a
//! [`CertStore`] that each handshake asks, and [`CertStore::reload`] swaps
//! in the files' new contents (on SIGHUP), as does [`CertStore::check`]
//! every `server.tls.check_secs` once they changed and then stayed the
//! same for an interval. A restart would drop every subscriber; a reload
//! touches none, and a renewal that does not load (key not matching,
//! unparsable, expired) keeps the certificate being served.

use crate::invalid::Invalid;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::sync::{Mutex, MutexGuard, RwLock};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::Deserialize;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_rustls::TlsAcceptor;

/// `[server.tls]`: TLS (rustls) on the public listener. The handshake is
/// bounded by `server.header_timeout_ms`. The files are loaded again on
/// SIGHUP and when the check every `check_secs` sees them changed and then
/// settled: a renewed certificate is served from the next handshake on,
/// open sessions stay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first. Required. A relative path is
    /// taken relative to the config file's directory.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, RSA or SEC1). Required. A relative path is
    /// taken relative to the config file's directory.
    pub key: PathBuf,
    /// How often to read both files and compare them with the last load;
    /// files that changed and then stayed the same for one interval are
    /// loaded. 0: only on SIGHUP. Default 60.
    pub check_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            check_secs: 60,
        }
    }
}

impl TlsConfig {
    /// Checks the fields; names them relative to `[server.tls]`.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.cert.as_os_str().is_empty() {
            return Err(Invalid::new("cert", "required: a PEM certificate chain"));
        }
        if self.key.as_os_str().is_empty() {
            return Err(Invalid::new("key", "required: a PEM private key"));
        }
        if self.check_secs > 86_400 {
            return Err(Invalid::new(
                "check_secs",
                "at most 86400 (0: reload only on SIGHUP)",
            ));
        }
        Ok(())
    }
}

/// Why TLS could not be set up; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("server.tls.cert {}: {message}", path.display())]
    Cert { path: PathBuf, message: String },
    #[error("server.tls.key {}: {message}", path.display())]
    Key { path: PathBuf, message: String },
    #[error("server.tls: certificate {} with key {}: {message}", cert.display(), key.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

/// Parses a PEM certificate chain (leaf first) read from `path`.
fn parse_certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::Cert {
        path: path.to_path_buf(),
        message,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE found in the PEM file".into()));
    }
    Ok(certs)
}

/// Parses the first PEM private key (PKCS#8, RSA/PKCS#1 or SEC1) read from
/// `path`.
fn parse_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    let err = |message: String| TlsError::Key {
        path: path.to_path_buf(),
        message,
    };
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            err("no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY found in the PEM file".into())
        }
        e => err(format!("invalid PEM: {e}")),
    })
}

/// Both files' bytes, read once: what is parsed is what is fingerprinted.
struct Files {
    cert: std::io::Result<Vec<u8>>,
    key: std::io::Result<Vec<u8>>,
}

impl Files {
    fn read(cfg: &TlsConfig) -> Files {
        Files {
            cert: std::fs::read(&cfg.cert),
            key: std::fs::read(&cfg.key),
        }
    }

    /// A fingerprint of both contents (`None` for an unreadable file).
    /// Contents, not modification time and size: a renewal copied with
    /// `cp -p` or `rsync -a` keeps both, and the files are a few KB.
    fn print(&self) -> Print {
        let one = |r: &std::io::Result<Vec<u8>>| {
            r.as_ref().ok().map(|b| {
                let mut h = std::hash::DefaultHasher::new();
                b.hash(&mut h);
                h.finish()
            })
        };
        (one(&self.cert), one(&self.key))
    }
}

type Print = (Option<u64>, Option<u64>);

/// A certificate and key as loaded: what handshakes present, and the
/// leaf certificate's validity.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    key: Arc<CertifiedKey>,
    /// The leaf's notBefore and notAfter, seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
}

/// Parses and checks the pair: both files parse, the key is one the
/// provider can sign with, it belongs to the leaf certificate, and the
/// leaf's validity can be read.
fn load(cfg: &TlsConfig, files: &Files, provider: &CryptoProvider) -> Result<Loaded, TlsError> {
    let cert_pem = files.cert.as_ref().map_err(|e| TlsError::Cert {
        path: cfg.cert.clone(),
        message: format!("cannot read: {e}"),
    })?;
    let key_pem = files.key.as_ref().map_err(|e| TlsError::Key {
        path: cfg.key.clone(),
        message: format!("cannot read: {e}"),
    })?;
    let certs = parse_certs(&cfg.cert, cert_pem)?;
    let key = parse_key(&cfg.key, key_pem)?;
    let (not_before, not_after) = validity(&cfg.cert, &certs[0])?;
    let key = CertifiedKey::from_der(certs, key, provider).map_err(|e| TlsError::Pair {
        cert: cfg.cert.clone(),
        key: cfg.key.clone(),
        message: e.to_string(),
    })?;
    Ok(Loaded {
        key: Arc::new(key),
        not_before,
        not_after,
    })
}

/// notBefore and notAfter of a DER certificate, Unix seconds.
fn validity(path: &Path, der: &CertificateDer<'_>) -> Result<(i64, i64), TlsError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| TlsError::Cert {
            path: path.to_path_buf(),
            message: format!("the first certificate does not parse: {e}"),
        })?;
    let v = cert.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Fingerprints of the files, under one lock that also serializes loads.
struct Watch {
    /// At the last load attempt, good or bad: a bad renewal is reported
    /// once and tried again only when the files change again.
    tried: Print,
    /// At the last check.
    seen: Print,
}

/// The certificate every handshake presents, swapped by
/// [`CertStore::reload`] and [`CertStore::check`]. Sessions already open
/// keep theirs: TLS needs the certificate only during the handshake.
pub(crate) struct CertStore {
    cfg: TlsConfig,
    provider: Arc<CryptoProvider>,
    current: RwLock<Loaded>,
    /// Held through each load, so two (SIGHUP and the file check) cannot
    /// swap in the opposite order of their reads.
    watch: Mutex<Watch>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("cert", &self.cfg.cert)
            .field("key", &self.cfg.key)
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// Loads the configured pair; an error names the file at fault. (An
    /// expired certificate is loaded here, with a warning: refusing to
    /// start would not bring a valid one.)
    pub(crate) fn open(cfg: &TlsConfig) -> Result<Arc<CertStore>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let files = Files::read(cfg);
        let loaded = load(cfg, &files, &provider)?;
        let now = unix_now();
        if loaded.not_after <= now || loaded.not_before > now {
            tracing::warn!(
                cert = %cfg.cert.display(),
                not_before = loaded.not_before,
                not_after = loaded.not_after,
                "the TLS certificate is not valid now: clients will refuse it"
            );
        }
        let print = files.print();
        Ok(Arc::new(CertStore {
            cfg: cfg.clone(),
            provider,
            current: RwLock::new(loaded),
            watch: Mutex::new(Watch {
                tried: print,
                seen: print,
            }),
        }))
    }

    fn watch(&self) -> MutexGuard<'_, Watch> {
        self.watch.lock()
    }

    /// Reads the files again and serves the new pair from the next
    /// handshake on (what SIGHUP does). A pair that does not load, or whose
    /// certificate is expired or not yet valid, is an error and the pair
    /// being served stays. `done` sees the result while no other load can
    /// run (for metrics that must follow the loads' order). Blocks on file
    /// reads: call it off the async workers.
    pub(crate) fn reload(
        &self,
        done: impl FnOnce(&Result<Loaded, TlsError>),
    ) -> Result<Loaded, TlsError> {
        let mut w = self.watch();
        let files = Files::read(&self.cfg);
        let print = files.print();
        w.tried = print;
        w.seen = print;
        let r = self.swap_in(&files);
        done(&r);
        r
    }

    /// The periodic check: loads the files once they changed and then
    /// stayed the same since the previous check, so a renewal caught
    /// halfway (a new certificate with the old key, half a chain) is
    /// neither loaded nor reported. `done` sees the result of a load.
    pub(crate) fn check(&self, done: impl FnOnce(&Result<Loaded, TlsError>)) {
        let mut w = self.watch();
        let files = Files::read(&self.cfg);
        let print = files.print();
        let changed = print != w.tried;
        let settled = print == w.seen;
        w.seen = print;
        if changed && settled {
            w.tried = print;
            done(&self.swap_in(&files));
        }
    }

    fn swap_in(&self, files: &Files) -> Result<Loaded, TlsError> {
        let loaded = load(&self.cfg, files, &self.provider)?;
        let now = unix_now();
        let bad = if loaded.not_after <= now {
            Some(format!(
                "expired (notAfter {} in Unix seconds)",
                loaded.not_after
            ))
        } else if loaded.not_before > now {
            Some(format!(
                "not valid yet (notBefore {} in Unix seconds)",
                loaded.not_before
            ))
        } else {
            None
        };
        if let Some(message) = bad {
            return Err(TlsError::Cert {
                path: self.cfg.cert.clone(),
                message: format!("{message}; still serving the certificate loaded before"),
            });
        }
        *self.current.write() = loaded.clone();
        Ok(loaded)
    }

    /// The leaf notAfter of the pair being served (Unix seconds).
    pub(crate) fn not_after(&self) -> i64 {
        self.current.read().not_after
    }

    pub(crate) fn config(&self) -> &TlsConfig {
        &self.cfg
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().key.clone())
    }
}

/// The rustls server settings over `store`: ring provider, TLS 1.2 and
/// 1.3, no client certificates, ALPN `http/1.1`.
pub(crate) fn server_config(store: &Arc<CertStore>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cfg = &store.cfg;
    let mut sc = rustls::ServerConfig::builder_with_provider(store.provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Pair {
            cert: cfg.cert.clone(),
            key: cfg.key.clone(),
            message: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(store.clone());
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(sc))
}

/// The acceptor the listener wraps each accepted TCP stream with, and the
/// store behind it.
pub(crate) fn acceptor(cfg: &TlsConfig) -> Result<(TlsAcceptor, Arc<CertStore>), TlsError> {
    let store = CertStore::open(cfg)?;
    Ok((TlsAcceptor::from(server_config(&store)?), store))
}

/// Metrics and log of one load after start (under the store's lock, so
/// they follow the loads' order).
pub(crate) fn record_load(m: &Metrics, r: &Result<Loaded, TlsError>) {
    match r {
        Ok(l) => {
            m.tls_cert_not_after.set(l.not_after);
            m.tls_cert_reload_failing.set(0);
            tracing::info!(
                not_after = l.not_after,
                "TLS certificate reloaded; new handshakes present it"
            );
        }
        Err(e) => {
            m.tls_cert_reload_failing.set(1);
            tracing::error!("TLS certificate reload failed, still serving the one before: {e}");
        }
    }
    m.tls_cert_reload(r.is_ok());
}

/// Reloads the certificate and key (what SIGHUP does), logs and counts
/// the result; returns the new leaf's notAfter (Unix seconds). Blocks on
/// file reads: off the async workers, call it through `spawn_blocking`.
pub(crate) fn reload(store: &CertStore, m: &Metrics) -> Result<i64, TlsError> {
    store.reload(|r| record_load(m, r)).map(|l| l.not_after)
}

/// Every `every`, looks at the files and loads them once they changed and
/// then stayed the same for an interval (a renewal by certbot,
/// cert-manager or a deploy job needs no signal, and one caught halfway is
/// not loaded).
pub(crate) async fn watch(
    store: Arc<CertStore>,
    metrics: Arc<Metrics>,
    every: Duration,
    mut shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        let (store, metrics) = (store.clone(), metrics.clone());
        let check = tokio::task::spawn_blocking(move || {
            store.check(|r| record_load(&metrics, r));
        });
        if let Err(e) = check.await {
            tracing::error!("TLS file check failed: {e}");
        }
    }
}
