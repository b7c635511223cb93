//! What watch knows of its symbols: per symbol the last quote applied (the
//! server's decimal strings as they came, never parsed), its seq within
//! the gateway's current epoch, the updates conflated away (seq gaps) and
//! the `status` (stale or live).
//!
//! Seqs only grow within an epoch: a quote at or below the last seq
//! applied is older (a snapshot after a reconnect to the same gateway) and
//! is dropped. A `welcome` with another epoch is a restarted gateway that
//! numbers every symbol from 1 again: the seqs start over.

use serde::Deserialize;
use std::collections::HashMap;

/// The fields of a server message that watch uses; the others are
/// ignored. A message whose fields have unexpected types parses as the
/// default (`kind` empty), which nothing acts on.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Msg {
    #[serde(rename = "type")]
    pub kind: String,
    pub symbol: Option<String>,
    pub seq: Option<u64>,
    pub bid: Option<String>,
    pub ask: Option<String>,
    pub last: Option<String>,
    pub gw_ts: Option<i64>,
    pub state: Option<String>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub epoch: Option<String>,
    pub heartbeat_ms: Option<u64>,
    pub auth_required: bool,
}

impl Msg {
    pub fn parse(raw: &str) -> Msg {
        serde_json::from_str(raw).unwrap_or_default()
    }
}

/// One watched symbol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    pub symbol: String,
    /// Seq of the last quote applied, in the current epoch.
    pub seq: Option<u64>,
    pub bid: Option<String>,
    pub ask: Option<String>,
    pub last: Option<String>,
    /// When the gateway stamped the last quote, ns since the Unix epoch.
    pub gw_ts: Option<i64>,
    /// Updates conflated away: the sum of the seq gaps seen.
    pub jumps: u64,
    /// The last `status` said `stale`.
    pub stale: bool,
}

/// What became of a quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Yes,
    /// At or below the last seq applied in this epoch: dropped.
    Older,
    /// Not a symbol watch asked for (or no symbol or seq): dropped.
    NotAsked,
}

#[derive(Debug, Default)]
pub struct Book {
    epoch: Option<String>,
    rows: Vec<Row>,
    index: HashMap<String, usize>,
}

impl Book {
    /// The symbols in the order given, each once.
    pub fn new(symbols: &[String]) -> Book {
        let mut b = Book::default();
        for s in symbols {
            if !b.index.contains_key(s) {
                b.index.insert(s.clone(), b.rows.len());
                b.rows.push(Row {
                    symbol: s.clone(),
                    ..Row::default()
                });
            }
        }
        b
    }

    /// The symbols, each once, in the order given.
    pub fn symbols(&self) -> Vec<&str> {
        self.rows.iter().map(|r| r.symbol.as_str()).collect()
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn epoch(&self) -> Option<&str> {
        self.epoch.as_deref()
    }

    /// A `welcome`: true when it names another epoch than the last one
    /// (the seqs start over; the values shown stay until replaced).
    pub fn welcome(&mut self, epoch: Option<&str>) -> bool {
        let Some(epoch) = epoch else {
            return false;
        };
        let new = self.epoch.as_deref().is_some_and(|e| e != epoch);
        if new {
            for r in &mut self.rows {
                r.seq = None;
            }
        }
        self.epoch = Some(epoch.to_string());
        new
    }

    /// A `quote`: applied when it is newer than the last one of its symbol.
    pub fn quote(&mut self, m: &Msg) -> Applied {
        let (Some(sym), Some(seq)) = (m.symbol.as_deref(), m.seq) else {
            return Applied::NotAsked;
        };
        let Some(row) = self.index.get(sym).and_then(|&i| self.rows.get_mut(i)) else {
            return Applied::NotAsked;
        };
        if let Some(prev) = row.seq {
            if seq <= prev {
                return Applied::Older;
            }
            row.jumps += seq - prev - 1;
        }
        row.seq = Some(seq);
        // A quote carries the symbol's whole latest value: a field it
        // omits is one its feed does not provide.
        row.bid.clone_from(&m.bid);
        row.ask.clone_from(&m.ask);
        row.last.clone_from(&m.last);
        row.gw_ts = m.gw_ts;
        Applied::Yes
    }

    /// A `status`: true when it is about a watched symbol.
    pub fn status(&mut self, m: &Msg) -> bool {
        let Some(row) = m
            .symbol
            .as_deref()
            .and_then(|s| self.index.get(s))
            .and_then(|&i| self.rows.get_mut(i))
        else {
            return false;
        };
        row.stale = m.state.as_deref() == Some("stale");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(sym: &str, seq: u64, bid: &str) -> Msg {
        Msg::parse(&format!(
            r#"{{"type":"quote","symbol":"{sym}","seq":{seq},"bid":"{bid}","ask":"1.10","gw_ts":5}}"#
        ))
    }

    fn book() -> Book {
        Book::new(&["AAPL".into(), "MSFT".into(), "AAPL".into()])
    }

    #[test]
    fn seqs_only_grow_within_an_epoch_and_gaps_count() {
        let mut b = book();
        assert_eq!(b.symbols(), ["AAPL", "MSFT"]);
        assert!(!b.welcome(Some("e1")));
        assert_eq!(b.quote(&q("AAPL", 10, "1.0100")), Applied::Yes);
        assert_eq!(b.quote(&q("AAPL", 14, "1.0200")), Applied::Yes);
        assert_eq!(b.quote(&q("AAPL", 14, "9")), Applied::Older);
        assert_eq!(b.quote(&q("AAPL", 3, "9")), Applied::Older);
        assert_eq!(b.quote(&q("TSLA", 1, "9")), Applied::NotAsked);
        let r = &b.rows()[0];
        assert_eq!((r.seq, r.jumps), (Some(14), 3));
        assert_eq!(r.bid.as_deref(), Some("1.0200"), "the string as sent");
        assert_eq!(r.last, None);
        // Same gateway again: the snapshot of what was seen is dropped.
        assert!(!b.welcome(Some("e1")));
        assert_eq!(b.quote(&q("AAPL", 14, "9")), Applied::Older);
        // A restarted gateway: seqs start over, values stay until replaced.
        assert!(b.welcome(Some("e2")));
        assert_eq!(b.rows()[0].bid.as_deref(), Some("1.0200"));
        assert_eq!(b.quote(&q("AAPL", 1, "2.00")), Applied::Yes);
        assert_eq!(b.rows()[0].jumps, 3, "no gap across epochs");
        assert_eq!(b.epoch(), Some("e2"));
    }

    #[test]
    fn status_and_odd_messages() {
        let mut b = book();
        let stale = Msg::parse(r#"{"type":"status","symbol":"MSFT","state":"stale","ts":1}"#);
        assert!(b.status(&stale));
        assert!(b.rows()[1].stale);
        let live = Msg::parse(r#"{"type":"status","symbol":"MSFT","state":"live"}"#);
        assert!(b.status(&live));
        assert!(!b.rows()[1].stale);
        assert!(!b.status(&Msg::parse(r#"{"type":"status","symbol":"X"}"#)));
        // Wrong types or not an object: nothing to act on.
        for odd in [r#"{"type":"quote","seq":"1"}"#, "[1]", "7", r#"{"type":3}"#] {
            let m = Msg::parse(odd);
            assert_eq!(m.kind, "");
            assert_eq!(b.quote(&m), Applied::NotAsked);
        }
        let w = Msg::parse(r#"{"type":"welcome","epoch":"ab","heartbeat_ms":5000,"x":[1]}"#);
        assert_eq!(
            (w.epoch.as_deref(), w.heartbeat_ms),
            (Some("ab"), Some(5000))
        );
        assert!(!w.auth_required);
    }
}
