//! What a client asks for: the ops of protocol v1 (subscribe,
//! unsubscribe, auth, ping, flow, ack), each checked against the session's
//! limits and entitlement, answered in the next frame.

use super::rate::OpVerdict;
use super::{clamp_u32, Exit, Session};
use crate::auth::{AuthError, Entitlement, KeyAtLimit};
use crate::flow::Acked;
use crate::model::{now_ns, Status, SymbolId};
use crate::outbox::Sub;
use crate::protocol::{parse_op, Control, Disconnect, ErrorCode, Op, OpError, OpId};
use crate::trades::Cursor;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// `max_hz` as [`Sub::interval_us`]. Never panics: a tiny rate saturates
/// (a float-to-int `as` cast does), which also keeps `now + interval` far
/// from overflowing.
pub(super) fn interval_us(hz: Option<f64>) -> u32 {
    hz.map_or(0, |h| (1e6 / h) as u32)
}

impl Session {
    /// A token from the upgrade request. `Some` closes the session.
    pub(super) fn admit_token(
        &mut self,
        token: Option<Result<Arc<Entitlement>, AuthError>>,
    ) -> Option<Exit> {
        if !self.ctx.auth.enabled() {
            return None;
        }
        match token? {
            Ok(ent) => self.authenticate(None, ent).err(),
            Err(e) => Some(self.refuse_token(None, e)),
        }
    }

    fn refuse_token(&mut self, id: Option<OpId>, e: AuthError) -> Exit {
        self.ctx.metrics.auth_failure(e.metric_reason());
        let d = e.disconnect();
        self.error(id, ErrorCode::Unauthorized, d.reason, None);
        Exit::Close(d)
    }

    /// Adopts a valid token's entitlement, taking one of its key's
    /// connections; a key at its `max_connections` closes the session.
    fn authenticate(&mut self, id: Option<OpId>, ent: Arc<Entitlement>) -> Result<(), Exit> {
        match self.ctx.auth.acquire(&ent) {
            Ok(guard) => self.key_conn = guard.map(Box::new),
            Err(KeyAtLimit) => {
                let d = &Disconnect::KEY_AT_LIMIT;
                tracing::debug!(key = %ent.name, "{}", d.reason);
                self.ctx.metrics.auth_failure("key_connection_limit");
                self.error(id, ErrorCode::Unauthorized, d.reason, None);
                return Err(Exit::Close(d));
            }
        }
        let cap = self.ctx.config.max_symbols;
        self.max_symbols = clamp_u32(crate::auth::symbol_cap(Some(&ent), cap));
        self.entitlement = Some(ent);
        self.authed = true;
        Ok(())
    }

    fn op_error(&mut self, e: OpError) {
        self.error(e.id, e.code, &e.message, None);
    }

    /// Handles one inbound WebSocket event; `Some` ends the session.
    pub(super) fn on_message(&mut self, msg: Option<Result<Message, WsError>>) -> Option<Exit> {
        use tokio_tungstenite::tungstenite::error::CapacityError;
        let msg = match msg {
            None => return Some(Exit::Gone),
            Some(Ok(m)) => m,
            Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                return Some(Exit::Close(&Disconnect::TOO_BIG))
            }
            Some(Err(WsError::Capacity(_))) => return Some(Exit::Close(&Disconnect::TOO_BIG)),
            Some(Err(WsError::Utf8(_))) => return Some(Exit::Close(&Disconnect::INVALID_UTF8)),
            Some(Err(WsError::Protocol(_))) => {
                return Some(Exit::Close(&Disconnect::PROTOCOL_ERROR))
            }
            Some(Err(_)) => return Some(Exit::Gone),
        };
        match msg {
            Message::Text(t) => self.on_op(t.as_bytes()),
            Message::Binary(_) => {
                if let Err(exit) = self.admit_op(None) {
                    return exit;
                }
                self.error(
                    None,
                    ErrorCode::BadRequest,
                    "binary frames are not supported: send JSON ops as text frames",
                    None,
                );
                None
            }
            // tungstenite answers pings itself; a close is answered too and
            // the stream then ends.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => None,
            Message::Close(_) => Some(Exit::PeerClosed),
        }
    }

    /// Counts an inbound op against the rate limit: `Err` when it is
    /// refused (answered `rate_limited` with the op's `id`, or the session
    /// closes).
    fn admit_op(&mut self, id: Option<OpId>) -> Result<(), Option<Exit>> {
        self.ctx.metrics.ops_in.inc();
        match self.limiter.check() {
            OpVerdict::Admit => Ok(()),
            OpVerdict::Flooding => Err(Some(Exit::Close(&Disconnect::FLOODING))),
            OpVerdict::RateLimited => {
                self.error(
                    id,
                    ErrorCode::RateLimited,
                    "too many ops: slow down (see limits.max_msgs_per_sec in welcome)",
                    None,
                );
                Err(None)
            }
        }
    }

    fn on_op(&mut self, text: &[u8]) -> Option<Exit> {
        let cfg = &self.ctx.config;
        let parsed = if text.len() > cfg.max_message_bytes {
            Err(OpError {
                id: None,
                code: ErrorCode::PayloadTooLarge,
                message: format!(
                    "message of {} bytes; the limit is {}",
                    text.len(),
                    cfg.max_message_bytes
                ),
            })
        } else {
            // simd-json parses in place. A copy per op, not a buffer kept
            // per session: ops are rare, sessions many.
            let mut buf = text.to_vec();
            parse_op(&mut buf, cfg.max_symbols_per_op)
        };
        // An ack that moves the count on is free: acks are bounded by the
        // frames sent, and a client acking every frame must not run into
        // its op rate. Every other op counts against it.
        if let Ok((id, Op::Ack { n })) = &parsed {
            if self.ack(id, *n) {
                self.ctx.metrics.ops_in.inc();
                return None;
            }
        }
        let op_id = match &parsed {
            Ok((id, _)) => id.clone(),
            Err(e) => e.id.clone(),
        };
        if let Err(exit) = self.admit_op(op_id) {
            return exit;
        }
        let (id, op) = match parsed {
            Ok(v) => v,
            Err(e) => {
                self.op_error(e);
                return None;
            }
        };
        match op {
            Op::Ping => self.push(Control::Pong { id, ts: now_ns() }),
            Op::Auth { token } => {
                if !self.ctx.auth.enabled() {
                    let limits = self.limits();
                    self.push(Control::Authenticated { id, limits });
                } else if self.entitlement.is_some() {
                    // Switching keys mid-session would leave subscriptions
                    // the new key may not see.
                    self.error(
                        id,
                        ErrorCode::BadRequest,
                        "already authenticated: a session keeps its first token",
                        None,
                    );
                } else {
                    match self.ctx.auth.authenticate(&token) {
                        Ok(ent) => {
                            if let Err(exit) = self.authenticate(id.clone(), ent) {
                                return Some(exit);
                            }
                            let limits = self.limits();
                            self.push(Control::Authenticated { id, limits });
                        }
                        Err(e) => return Some(self.refuse_token(id, e)),
                    }
                }
            }
            _ if !self.authed => {
                self.error(
                    id,
                    ErrorCode::Unauthorized,
                    "authenticate first: send {\"op\":\"auth\",\"token\":...}",
                    None,
                );
            }
            Op::Subscribe {
                symbols,
                max_hz,
                snapshot,
                trades,
            } => self.subscribe(id, symbols, max_hz, snapshot, trades),
            Op::Unsubscribe { symbols } => self.unsubscribe(id, symbols),
            Op::Flow { window } => self.flow(id, window),
            // An ack that did not move the count on (refused above when it
            // claimed more frames than were sent).
            Op::Ack { .. } => {}
        }
        None
    }

    /// The `flow` op: its reply goes in the next frame, and the window
    /// counts from the frame after that one (see `Session::build_frame`).
    fn flow(&mut self, id: Option<OpId>, window: u8) {
        self.push(Control::Flow { id, window });
        let queued = u16::try_from(self.control.len()).unwrap_or(u16::MAX);
        self.flow_reply = (queued, window);
    }

    /// An `ack`: `true` when it moved the count on (then it is free of the
    /// op rate limit). One that claims more frames than were sent is
    /// refused with `bad_request`.
    fn ack(&mut self, id: &Option<OpId>, n: u64) -> bool {
        let (acked, sent) = {
            let mut d = self.handle.direct.lock();
            (d.ack.ack(n), d.ack.sent())
        };
        match acked {
            Acked::Progress { opened } => {
                // Whatever waited goes now, newest values.
                self.dirty |= opened;
                true
            }
            Acked::Stale => false,
            Acked::TooMany => {
                let msg = if self.acking {
                    format!("ack of {n} frames: {sent} were sent since the flow reply")
                } else {
                    "ack without flow: send {\"op\":\"flow\",\"window\":W} first".to_string()
                };
                self.error(id.clone(), ErrorCode::BadRequest, &msg, None);
                false
            }
        }
    }

    /// Resolves names; unknown ones get an `unknown_symbol` error each,
    /// valid names the key may not see a `forbidden_symbol` each. The
    /// entitlement is checked before existence, so the errors do not tell
    /// which un-entitled symbols exist. A pattern (`BTC-*`, or `*`: the
    /// syntax of auth's entitlements) stands for every symbol it matches
    /// that the key may see, silently leaving out the others; one matching
    /// none of those is `unknown_symbol`. Also returns each pattern with
    /// the number of symbols it matched.
    fn resolve(
        &mut self,
        id: &Option<OpId>,
        names: &[String],
    ) -> (Vec<SymbolId>, Vec<(String, usize)>) {
        let symbols = self.ctx.symbols.clone();
        let ent = self.entitlement.clone();
        let mut out: Vec<SymbolId> = Vec::with_capacity(names.len());
        let mut seen = std::collections::HashSet::new();
        let mut patterns = Vec::new();
        for n in names {
            if n.ends_with('*') {
                let matched = match crate::auth::Pattern::parse(n) {
                    Some(p) => {
                        let mut k = 0;
                        for (sym, name) in symbols.iter() {
                            if p.matches(name) && crate::auth::allowed(ent.as_deref(), name) {
                                k += 1;
                                if seen.insert(sym) {
                                    out.push(sym);
                                }
                            }
                        }
                        k
                    }
                    None => 0,
                };
                if matched == 0 {
                    let shown: String = n.chars().take(64).collect();
                    let msg = format!("no symbol matches {shown}");
                    self.error(id.clone(), ErrorCode::UnknownSymbol, &msg, Some(&shown));
                } else {
                    patterns.push((n.clone(), matched));
                }
                continue;
            }
            if let Some(ent) = &ent {
                if crate::model::valid_symbol(n) && !ent.allows(n) {
                    self.ctx.metrics.auth_failure("forbidden_symbol");
                    let msg = format!("not entitled to symbol: {n}");
                    self.error(id.clone(), ErrorCode::ForbiddenSymbol, &msg, Some(n));
                    continue;
                }
            }
            match symbols.get(n) {
                Some(s) => {
                    if seen.insert(s) {
                        out.push(s)
                    }
                }
                None => {
                    let shown: String = n.chars().take(64).collect();
                    let msg = format!("no such symbol: {shown}");
                    self.error(id.clone(), ErrorCode::UnknownSymbol, &msg, Some(&shown));
                }
            }
        }
        (out, patterns)
    }

    pub(super) fn find(&self, sym: SymbolId) -> Result<usize, usize> {
        self.subs.binary_search_by_key(&sym, |s| s.sym)
    }

    fn subscribe(
        &mut self,
        id: Option<OpId>,
        names: Vec<String>,
        max_hz: Option<f64>,
        snapshot: bool,
        trades: bool,
    ) {
        // The symbols there are before the patterns are matched: any added
        // meanwhile is looked at by the watch below.
        let known = self.ctx.symbols.len();
        let (syms, patterns) = self.resolve(&id, &names);
        if syms.is_empty() {
            return;
        }
        let max = self.max_symbols as usize;
        let new = syms.iter().filter(|s| self.find(**s).is_err()).count();
        if self.subs.len() + new > max {
            let matched: Vec<String> = patterns
                .iter()
                .map(|(p, k)| format!("{p} matches {k}"))
                .collect();
            let msg = format!(
                "subscribing {new} more symbols would hold {}; the limit is {max}{}",
                self.subs.len() + new,
                if matched.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", matched.join(", "))
                }
            );
            self.error(id, ErrorCode::TooManySymbols, &msg, None);
            return;
        }
        let hz = max_hz.map(|h| h.min(self.ctx.config.max_hz_limit));
        let interval = interval_us(hz);
        // Exactly what is held, not the next power of two: the list stays
        // at this size for the session's life.
        self.subs.reserve_exact(new);
        let mut added = Vec::with_capacity(new);
        for &sym in &syms {
            if self.hold(sym, interval, snapshot, trades) {
                added.push(sym);
            }
        }
        // Register before the first scan: a write either sees our interest
        // bit or is seen by the scan (see `SlotTable::notify`).
        self.ctx.fanout.subscribe(&self.handle, &added);
        self.ctx.metrics.subscriptions.add(added.len() as i64);
        let names: Vec<&str> = syms.iter().map(|s| self.ctx.symbols.name(*s)).collect();
        let msg = Control::Subscribed {
            id,
            symbols: names,
            max_hz: hz,
            trades,
            pattern: None,
        }
        .to_json();
        self.control.push_back(msg);
        self.dirty = true;
        // Patterns that matched stay watched: symbols added later that they
        // match are subscribed too, with the same options.
        for (p, _) in &patterns {
            self.watch_pattern(p, hz, trades, known);
        }
        if !patterns.is_empty() && self.ctx.symbols.len() > known {
            self.adopt_new_symbols();
        }
    }

    /// Holds `sym` (a new subscription, or new options for a held one)
    /// with `interval` (`max_hz`), a snapshot owed if asked for and it has a
    /// value, and trades from the next one on if asked for. Returns whether
    /// it is new.
    pub(super) fn hold(
        &mut self,
        sym: SymbolId,
        interval: u32,
        snapshot: bool,
        trades: bool,
    ) -> bool {
        let slots = self.ctx.slots.clone();
        let (pos, new) = match self.find(sym) {
            Ok(p) => (p, false),
            Err(p) => {
                self.subs.insert(
                    p,
                    Sub {
                        sym,
                        interval_us: interval,
                        last_seq: 0,
                        next_at: None,
                        snapshot: false,
                        status: Status::Live,
                        trades: Cursor::OFF,
                    },
                );
                (p, true)
            }
        };
        let sub = &mut self.subs[pos];
        sub.interval_us = interval;
        sub.next_at = None;
        // Trades from the next one on; a symbol that had them keeps its
        // place (nothing owed is lost by subscribing again).
        sub.trades = match (trades, sub.trades.get()) {
            (false, Some(_)) => {
                slots.trades().listen(sym, false);
                Cursor::OFF
            }
            (false, None) => Cursor::OFF,
            (true, Some(_)) => sub.trades,
            (true, None) => {
                slots.trades().listen(sym, true);
                Cursor::at(slots.trades().head(sym))
            }
        };
        let seq = slots.seq(sym);
        if snapshot && seq > 0 {
            // A symbol with no value yet gets no snapshot: its first value
            // arrives as a live update.
            sub.snapshot = true;
            sub.last_seq = 0;
        } else if snapshot {
            sub.snapshot = false;
            sub.last_seq = 0;
        } else {
            sub.snapshot = false;
            sub.last_seq = sub.last_seq.max(seq);
        }
        new
    }

    fn unsubscribe(&mut self, id: Option<OpId>, names: Vec<String>) {
        for n in names.iter().filter(|n| n.ends_with('*')) {
            self.unwatch_pattern(n);
        }
        let (syms, _) = self.resolve(&id, &names);
        if syms.is_empty() {
            return;
        }
        let mut removed = Vec::new();
        for &sym in &syms {
            if let Ok(p) = self.find(sym) {
                let sub = self.subs.remove(p);
                release_trades(&self.ctx.slots, std::slice::from_ref(&sub));
                removed.push(sym);
            }
        }
        if self.subs.len() <= self.subs.capacity() / 2 {
            self.subs.shrink_to_fit();
        }
        self.ctx.fanout.unsubscribe(&self.handle, &removed);
        self.ctx.metrics.subscriptions.sub(removed.len() as i64);
        let names: Vec<&str> = syms.iter().map(|s| self.ctx.symbols.name(*s)).collect();
        let msg = Control::Unsubscribed { id, symbols: names }.to_json();
        self.control.push_back(msg);
    }
}

/// The subscriptions in `subs` that took trades stop taking them.
pub(super) fn release_trades(slots: &crate::slots::SlotTable, subs: &[Sub]) {
    for s in subs.iter().filter(|s| s.trades != Cursor::OFF) {
        slots.trades().listen(s.sym, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_hz_interval_never_panics() {
        assert_eq!(interval_us(None), 0);
        assert_eq!(interval_us(Some(1000.0)), 1000);
        assert_eq!(interval_us(Some(4.0)), 250_000);
        // A client's `"max_hz":1e-300` must not panic: it saturates at ~71
        // minutes.
        assert_eq!(interval_us(Some(1e-300)), u32::MAX);
        assert_eq!(interval_us(Some(1e12)), 0);
    }
}
