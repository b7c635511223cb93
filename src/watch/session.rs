//! One connection: connect, read the `welcome` (its epoch, heartbeat and
//! whether a token is needed), send `auth` when it is and `subscribe`,
//! then show every frame until the connection ends, goes silent, a signal
//! comes, or the gateway refuses what was asked (a fatal error).
//!
//! Silence: no frame at all for 2 x `heartbeat_ms` (the gateway sends a
//! `heartbeat` after `heartbeat_ms` without other traffic) is a dead
//! connection, as is no `welcome` within [`CONNECT_TIMEOUT`].

use super::book::{Applied, Book, Msg};
use super::net::{Connector, Ws};
use super::screen::{Conn, Output};
use super::{exit, Options, TICK};
use crate::shutdown::Shutdown;
use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// From the first byte to the `welcome`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Until the `welcome` says otherwise.
const DEFAULT_HEARTBEAT_MS: u64 = 5_000;

/// `unauthorized` messages and 1008 close reasons that mean the token
/// itself was refused (docs/PROTOCOL.md, "Close reasons"). Any other
/// 1008 (e.g. "too many connections for this key") is retried.
const TOKEN_REFUSED: [&str; 3] = ["invalid token", "expired token", "token not yet valid"];

/// An error that ends watch, with its exit code.
#[derive(Debug)]
pub struct Fatal {
    pub code: u8,
    pub message: String,
}

impl Fatal {
    pub fn new(code: u8, message: impl Into<String>) -> Fatal {
        Fatal {
            code,
            message: message.into(),
        }
    }

    /// stdout cannot be written: a closed pipe (`watch ... | head`) is a
    /// normal end (exit 0, nothing to say), anything else an error.
    pub fn output(e: &std::io::Error) -> Fatal {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Fatal::new(exit::STOPPED, "")
        } else {
            Fatal::new(exit::ERROR, format!("cannot write to stdout: {e}"))
        }
    }
}

/// How a connection ended.
#[derive(Debug)]
pub enum Outcome {
    /// SIGINT or SIGTERM.
    Stopped,
    Fatal(Fatal),
    /// Try again; `welcomed`: the gateway was reached (the backoff starts
    /// over).
    Lost {
        reason: String,
        welcomed: bool,
    },
}

/// What one frame's messages asked for.
#[derive(Default)]
struct Verdict {
    unknown: Vec<String>,
    forbidden: Vec<String>,
    fatal: Option<Fatal>,
    send: Vec<String>,
}

struct Session<'a> {
    opts: &'a Options,
    book: &'a mut Book,
    out: &'a mut Output,
    url: String,
    welcomed: bool,
    /// The longest silence before the connection counts as dead.
    silence: Duration,
}

/// Runs one connection to its end.
pub async fn run(
    connector: &Connector,
    opts: &Options,
    book: &mut Book,
    out: &mut Output,
    stop: &mut Shutdown,
) -> Outcome {
    let connect = tokio::select! {
        _ = stop.wait() => return Outcome::Stopped,
        r = connector.connect(CONNECT_TIMEOUT) => r,
    };
    let mut ws = match connect {
        Ok(ws) => ws,
        Err(e) => {
            return Outcome::Lost {
                reason: e.to_string(),
                welcomed: false,
            }
        }
    };
    let mut s = Session {
        opts,
        book,
        out,
        url: connector.endpoint().display(),
        welcomed: false,
        silence: CONNECT_TIMEOUT,
    };
    s.serve(&mut ws, stop).await
}

impl Session<'_> {
    fn lost(&self, reason: String) -> Outcome {
        Outcome::Lost {
            reason,
            welcomed: self.welcomed,
        }
    }

    async fn serve(&mut self, ws: &mut Ws, stop: &mut Shutdown) -> Outcome {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let silent = tokio::time::sleep(self.silence);
        tokio::pin!(silent);
        loop {
            let msg = tokio::select! {
                _ = stop.wait() => {
                    bye(ws).await;
                    return Outcome::Stopped;
                }
                _ = tick.tick() => {
                    if let Err(e) = self.out.tick(self.book) {
                        return Outcome::Fatal(Fatal::output(&e));
                    }
                    continue;
                }
                _ = &mut silent => {
                    let reason = if self.welcomed {
                        format!("no frame for {} ms (2 x heartbeat_ms): connection dead", self.silence.as_millis())
                    } else {
                        format!("no welcome within {} s", CONNECT_TIMEOUT.as_secs())
                    };
                    return self.lost(reason);
                }
                msg = ws.next() => msg,
            };
            // Any frame (a Ping too) shows the connection alive.
            silent.as_mut().reset(Instant::now() + self.silence);
            let text = match msg {
                None => return self.lost("the connection closed".into()),
                Some(Err(e)) => return self.lost(format!("connection lost: {e}")),
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(frame))) => {
                    // Read on so that tungstenite sends the closing reply.
                    let drain = async { while let Some(Ok(_)) = ws.next().await {} };
                    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
                    return self.closed(frame);
                }
                // Pings are answered by tungstenite; binary frames are not
                // part of the protocol.
                Some(Ok(_)) => continue,
            };
            let verdict = match self.frame(text.as_str()) {
                Ok(v) => v,
                Err(e) => return Outcome::Fatal(Fatal::output(&e)),
            };
            let fatal = verdict
                .fatal
                .or_else(|| symbol_errors(&verdict.forbidden, &verdict.unknown));
            if let Some(f) = fatal {
                bye(ws).await;
                return Outcome::Fatal(f);
            }
            for op in verdict.send {
                if let Err(e) = ws.send(Message::Text(op.into())).await {
                    return self.lost(format!("cannot send: {e}"));
                }
            }
            // The welcome may have set another silence.
            silent.as_mut().reset(Instant::now() + self.silence);
        }
    }

    /// Shows one frame's messages and decides what follows from them.
    fn frame(&mut self, text: &str) -> std::io::Result<Verdict> {
        let mut v = Verdict::default();
        let Ok(messages) = serde_json::from_str::<Vec<&RawValue>>(text) else {
            let head: String = text.chars().take(80).collect();
            self.out
                .notice(format!("ignored a frame that is not a JSON array: {head}"));
            return Ok(v);
        };
        for raw in messages {
            let m = Msg::parse(raw.get());
            let shown = match m.kind.as_str() {
                "welcome" => {
                    self.welcome(&m, &mut v);
                    true
                }
                "quote" => self.book.quote(&m) == Applied::Yes,
                "status" => {
                    self.book.status(&m);
                    true
                }
                "error" => {
                    self.error(&m, &mut v);
                    true
                }
                _ => true,
            };
            if shown {
                self.out.message(raw.get())?;
            }
        }
        self.out.end_frame()?;
        Ok(v)
    }

    fn welcome(&mut self, m: &Msg, v: &mut Verdict) {
        if self.book.welcome(m.epoch.as_deref()) {
            self.out
                .notice("the gateway restarted (new epoch): seqs start over".into());
        }
        self.welcomed = true;
        let hb = m.heartbeat_ms.filter(|ms| *ms > 0);
        self.silence = Duration::from_millis(hb.unwrap_or(DEFAULT_HEARTBEAT_MS).saturating_mul(2));
        let epoch = self.book.epoch().map(str::to_string);
        self.out.conn(&self.url, Conn::Connected { epoch });
        if m.auth_required {
            match &self.opts.token {
                // The gateway handles ops in order: the subscribe can follow
                // at once; a refused token gets `unauthorized` and a close.
                Some(token) => v
                    .send
                    .push(serde_json::json!({"op": "auth", "id": 1, "token": token}).to_string()),
                None => {
                    v.fatal = Some(Fatal::new(
                        exit::AUTH,
                        format!(
                            "{} requires a token: pass --token (or set TICKERGATE_TOKEN)",
                            self.url
                        ),
                    ));
                    return;
                }
            }
        }
        let mut sub =
            serde_json::json!({"op": "subscribe", "id": 2, "symbols": self.book.symbols()});
        if self.opts.trades {
            sub["trades"] = true.into();
        }
        if let Some(hz) = self.opts.max_hz {
            sub["max_hz"] = hz.into();
        }
        v.send.push(sub.to_string());
    }

    fn error(&mut self, m: &Msg, v: &mut Verdict) {
        let code = m.code.as_deref().unwrap_or("?");
        let message = m.message.as_deref().unwrap_or("");
        let named = || m.symbol.clone().unwrap_or_else(|| message.to_string());
        match code {
            "unknown_symbol" => v.unknown.push(named()),
            "forbidden_symbol" => v.forbidden.push(named()),
            "too_many_symbols" => {
                v.fatal = Some(Fatal::new(
                    exit::USAGE,
                    format!("the gateway refused the subscription (too_many_symbols): {message}"),
                ));
            }
            "unauthorized" if TOKEN_REFUSED.contains(&message) || self.opts.token.is_none() => {
                v.fatal = Some(token_refused(message));
            }
            // E.g. "too many connections for this key": the close follows,
            // and a later attempt may be let in.
            _ => self
                .out
                .notice(format!("the gateway says {code}: {message}")),
        }
    }

    fn closed(&self, frame: Option<CloseFrame>) -> Outcome {
        let Some(f) = frame else {
            return self.lost("the gateway closed the connection".into());
        };
        let reason = f.reason.as_str();
        if f.code == CloseCode::Policy && TOKEN_REFUSED.contains(&reason) {
            return Outcome::Fatal(token_refused(reason));
        }
        self.lost(format!(
            "the gateway closed the connection: {} {reason}",
            u16::from(f.code)
        ))
    }
}

/// Closes the connection (1000), waiting a second at most.
async fn bye(ws: &mut Ws) {
    let bye = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(Some(bye))).await;
}

fn token_refused(why: &str) -> Fatal {
    let why = if why.is_empty() { "unauthorized" } else { why };
    Fatal::new(exit::AUTH, format!("the gateway refused the token: {why}"))
}

/// Symbols the gateway would not serve: one line naming them all.
fn symbol_errors(forbidden: &[String], unknown: &[String]) -> Option<Fatal> {
    let s = |v: &[String]| if v.len() == 1 { "" } else { "s" };
    if !forbidden.is_empty() {
        return Some(Fatal::new(
            exit::AUTH,
            format!(
                "the token may not see symbol{} {}",
                s(forbidden),
                forbidden.join(", ")
            ),
        ));
    }
    if !unknown.is_empty() {
        return Some(Fatal::new(
            exit::USAGE,
            format!(
                "unknown symbol{} {} (symbols are case-sensitive; GET /v1/symbols lists them)",
                s(unknown),
                unknown.join(", ")
            ),
        ));
    }
    None
}
