//! Wildcard subscriptions that follow the symbol table: a pattern a
//! session subscribed with (`BTC-*`, `*`) also takes the symbols added to
//! the gateway later (an HTTP ingest feed whose `symbols` hold a pattern
//! adds a symbol at its first line), within the key's entitlement and the
//! session's `max_symbols`, with the options of that subscribe. Each new
//! match is announced with a `subscribed` message that names the pattern
//! (and no `id`), followed by its value as usual.

use super::ops::interval_us;
use super::Session;
use crate::model::{Pattern, SymbolId};
use crate::outbox::{Watch, Watched};
use crate::protocol::{Control, ErrorCode};

impl Session {
    /// Watches `text` (a pattern that matched in a subscribe) for symbols
    /// added later, with that subscribe's options (a pattern subscribed
    /// again takes the new ones). `known`: the symbols there were when the
    /// subscribe matched it; those added since are looked at too.
    pub(super) fn watch_pattern(
        &mut self,
        text: &str,
        max_hz: Option<f64>,
        trades: bool,
        known: usize,
    ) {
        let Some(pattern) = Pattern::parse(text) else {
            return;
        };
        let mut direct = self.handle.direct.lock();
        let first = direct.watch.is_none();
        let w = direct.watch.get_or_insert_with(|| {
            Box::new(Watch {
                seen: known,
                patterns: Vec::new(),
            })
        });
        w.seen = w.seen.min(known);
        w.patterns.retain(|p| &*p.text != text);
        w.patterns.push(Watched {
            text: text.into(),
            pattern,
            max_hz,
            trades,
        });
        drop(direct);
        if first {
            self.ctx.fanout.watch_symbols(&self.handle);
        }
    }

    /// Stops watching `text` (unsubscribed by that pattern).
    pub(super) fn unwatch_pattern(&mut self, text: &str) {
        let mut direct = self.handle.direct.lock();
        if let Some(w) = direct.watch.as_mut() {
            w.patterns.retain(|p| &*p.text != text);
            if w.patterns.is_empty() {
                direct.watch = None;
            }
        }
    }

    /// Symbols were added to the gateway: subscribes the session to those
    /// its watched patterns match and its key may see, each announced with
    /// a `subscribed` naming the pattern (a snapshot follows when it has a
    /// value), or refused with `too_many_symbols` when the session holds
    /// its `max_symbols` already.
    pub(super) fn adopt_new_symbols(&mut self) {
        let Some(mut w) = self.handle.direct.lock().watch.take() else {
            return;
        };
        let symbols = self.ctx.symbols.clone();
        let len = symbols.len();
        let ent = self.entitlement.clone();
        for i in w.seen..len {
            let sym = SymbolId(i as u32);
            let name = symbols.name(sym);
            if self.find(sym).is_ok() || !crate::auth::allowed(ent.as_deref(), name) {
                continue;
            }
            let Some(p) = w.patterns.iter().find(|p| p.pattern.matches(name)) else {
                continue;
            };
            let max = self.max_symbols as usize;
            if self.subs.len() >= max {
                let msg = format!(
                    "{name} matches {} but the session holds {max} symbols, its limit",
                    p.text
                );
                self.error(None, ErrorCode::TooManySymbols, &msg, Some(name));
                continue;
            }
            let hz = p.max_hz.map(|h| h.min(self.ctx.config.max_hz_limit));
            self.subs.reserve_exact(1);
            self.hold(sym, interval_us(hz), true, p.trades);
            self.ctx.fanout.subscribe(&self.handle, &[sym]);
            self.ctx.metrics.subscriptions.inc();
            let msg = Control::Subscribed {
                id: None,
                symbols: vec![name],
                max_hz: hz,
                trades: p.trades,
                pattern: Some(&p.text),
            }
            .to_json();
            self.control.push_back(msg);
            self.dirty = true;
        }
        w.seen = len;
        let mut direct = self.handle.direct.lock();
        if direct.watch.is_none() {
            direct.watch = Some(w);
        }
    }
}
