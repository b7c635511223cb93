//! What travels over NATS, and on which subjects.
//!
//! - `<prefix>.q.<symbol token>`: a quote, exactly the `quote` message a
//!   WebSocket client gets (decimal strings byte-exact, the ingest's
//!   `seq`, `ts`, `gw_ts`), so anything that reads NATS reads it like a
//!   client does. The symbol token is [`super::subject::encode`].
//! - `<prefix>.lv.<symbol token>`: the same quote again, a symbol's
//!   last value for the stream: at most every `last_value_interval_ms`
//!   per symbol and at least every `last_value_max_lag` seqs, with the
//!   header `Tg-Lag` ([`LAG_HEADER`]): how far the symbol's seq may have
//!   gone on past it before its ingest stopped (an ingest that restarts
//!   numbers on from the stored seq plus that). Live quotes are not
//!   stored: the server's store work follows symbols, not ticks.
//! - `<prefix>.t.<symbol token>`: a trade, exactly the `trade` message
//!   (its `seq` is the ingest's number of it); not stored.
//! - `<prefix>.status.<feed token>`: a feed's state ([`FeedStatus`]), at
//!   least every `status_interval_ms`, with the feed's symbols.
//! - `<prefix>.epoch`: the cluster's seq numbering ([`EpochMsg`]).
//!
//! The JetStream stream keeps the last message of each `lv`, `status`
//! and `epoch` subject.
//!
//! - `<prefix>.r.<node token>`: an ingest's publishing round (its pass
//!   over the symbols that changed: a feed's burst leaves in one), the
//!   same quotes again, one per line (`\n`), cut in messages of at most
//!   [`ROUND_CHUNK_BYTES`] ([`chunk_round`]). An edge that follows every
//!   quote subscribes to these (`<prefix>.r.>`) instead of `q.>`: one
//!   message per ~300 quotes, not one each, so NATS costs it little per
//!   quote. Not stored.
//!
//! A round cut in more than one message marks its first with the header
//! `Tg-Round: open` and its last with `Tg-Round: end` ([`Round`]). An
//! edge holds its fan-out's wake from the one to the other, so its
//! clients get a burst in as few frames as a standalone gateway's do,
//! however NATS cut it up on the way.

mod decode;

pub use decode::{
    decode_quote, decode_quote_fast, decode_quote_general, decode_trade, BadMessage, WireQuote,
    WireTrade,
};

use super::subject;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The subjects of one cluster (one `subject_prefix`).
#[derive(Debug, Clone)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    pub fn new(prefix: &str) -> Self {
        Subjects {
            prefix: prefix.to_string(),
        }
    }

    pub fn quote(&self, symbol: &str) -> String {
        format!("{}.q.{}", self.prefix, subject::encode(symbol))
    }

    pub fn trade(&self, symbol: &str) -> String {
        format!("{}.t.{}", self.prefix, subject::encode(symbol))
    }

    pub fn quotes(&self) -> String {
        format!("{}.q.>", self.prefix)
    }

    /// Where an ingest node publishes its rounds.
    pub fn round(&self, node: &str) -> String {
        format!("{}.r.{}", self.prefix, subject::encode(node))
    }

    /// Every ingest's rounds.
    pub fn rounds(&self) -> String {
        format!("{}.r.>", self.prefix)
    }

    /// Where a symbol's last value is stored.
    pub fn last_value(&self, symbol: &str) -> String {
        format!("{}.lv.{}", self.prefix, subject::encode(symbol))
    }

    pub fn last_values(&self) -> String {
        format!("{}.lv.>", self.prefix)
    }

    pub fn status(&self, feed: &str) -> String {
        format!("{}.status.{}", self.prefix, subject::encode(feed))
    }

    pub fn statuses(&self) -> String {
        format!("{}.status.>", self.prefix)
    }

    pub fn epoch(&self) -> String {
        format!("{}.epoch", self.prefix)
    }

    /// Every subject the stream holds.
    pub fn stored(&self) -> Vec<String> {
        vec![self.last_values(), self.statuses(), self.epoch()]
    }
}

/// The header of a stored last value: how many seqs past it its symbol
/// may have gone live (see the module doc).
pub const LAG_HEADER: &str = "Tg-Lag";

/// The headers of a stored last value whose symbol may go `lag` seqs on
/// before the next is stored.
pub fn lag_headers(lag: u64) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    h.insert(LAG_HEADER, lag.to_string().as_str());
    h
}

/// The lag a stored last value carries (0 without one: nothing went on
/// past it).
pub fn read_lag(headers: &async_nats::HeaderMap) -> u64 {
    headers
        .get(LAG_HEADER)
        .and_then(|v| v.as_str().parse().ok())
        .unwrap_or(0)
}

/// The most a round message holds (its quotes and their newlines): below
/// the NATS client's 64 KiB read buffer, so a message is read in one go.
pub const ROUND_CHUNK_BYTES: usize = 60 * 1024;

/// Room left for a round message's header under the server's
/// `max_payload` (which counts headers and payload together; the
/// `Tg-Round` header is 28 bytes).
pub const ROUND_HEADER_ROOM: usize = 128;

/// A round's quote messages (`bodies`, in order) as round messages of at
/// most `limit` bytes each, one quote per line (a quote longer than
/// `limit` goes alone), appended to `out`. Each message is allocated at
/// its size.
pub fn chunk_round<'a, I>(bodies: I, limit: usize, out: &mut Vec<bytes::Bytes>)
where
    I: Iterator<Item = &'a [u8]> + Clone,
{
    let mut rest = bodies;
    loop {
        // The next message: whole lines up to the limit, at least one.
        let (mut size, mut lines) = (0, 0);
        for body in rest.clone() {
            let add = body.len() + usize::from(lines > 0);
            if lines > 0 && size + add > limit {
                break;
            }
            (size, lines) = (size + add, lines + 1);
        }
        if lines == 0 {
            return;
        }
        let mut chunk = bytes::BytesMut::with_capacity(size);
        for (i, body) in rest.by_ref().take(lines).enumerate() {
            if i > 0 {
                chunk.extend_from_slice(b"\n");
            }
            chunk.extend_from_slice(body);
        }
        out.push(chunk.freeze());
    }
}

/// The quote messages of a round message (empty lines skipped).
pub fn round_quotes(payload: &[u8]) -> impl Iterator<Item = &[u8]> {
    payload.split(|&b| b == b'\n').filter(|l| !l.is_empty())
}

/// Where a message stands in its publishing round (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// The first of a round of more than one message.
    Open,
    /// The last of a round of more than one message.
    End,
}

impl Round {
    pub const HEADER: &'static str = "Tg-Round";

    pub fn as_str(self) -> &'static str {
        match self {
            Round::Open => "open",
            Round::End => "end",
        }
    }

    /// The mark of the `i`th message (from 0) of a round of `n`.
    pub fn of(i: usize, n: usize) -> Option<Round> {
        match i {
            _ if n < 2 => None,
            0 => Some(Round::Open),
            _ if i + 1 == n => Some(Round::End),
            _ => None,
        }
    }

    /// The mark a received message carries, if any (anything else in the
    /// header is no mark).
    pub fn read(headers: Option<&async_nats::HeaderMap>) -> Option<Round> {
        match headers?.get(Self::HEADER)?.as_str() {
            "open" => Some(Round::Open),
            "end" => Some(Round::End),
            _ => None,
        }
    }

    /// The headers that carry this mark.
    pub fn headers(self) -> async_nats::HeaderMap {
        let mut h = async_nats::HeaderMap::new();
        h.insert(Self::HEADER, self.as_str());
        h
    }
}

/// A feed's state as its ingest node publishes it. Read, it borrows from
/// the payload, its symbols kept as their JSON text: an edge reads a
/// status of thousands of symbols every `status_interval_ms`, and reads
/// the list ([`FeedStatus::symbol_list`]) only when the text changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeedStatus<'a> {
    #[serde(borrow)]
    pub feed: Cow<'a, str>,
    /// The ingest node that runs it.
    #[serde(borrow)]
    pub node: Cow<'a, str>,
    /// The numbering its seqs belong to.
    #[serde(borrow)]
    pub epoch: Cow<'a, str>,
    /// Fresh (connected and not silent) on the ingest.
    pub up: bool,
    /// A JSON array of the feed's symbols.
    #[serde(borrow)]
    pub symbols: &'a RawValue,
    /// When the next status comes at the latest, ms.
    pub interval_ms: u64,
    /// When it was sent, ns since the Unix epoch.
    pub ts: i64,
    /// Its ingest publishes whole rounds (`<prefix>.r.<node>`). A status
    /// without it comes from an ingest of a build before them, whose
    /// symbols an edge follows one subscription each.
    #[serde(default)]
    pub rounds: bool,
}

impl FeedStatus<'_> {
    /// The feed's symbols.
    pub fn symbol_list(&self) -> Result<Vec<String>, serde_json::Error> {
        serde_json::from_str(self.symbols.get())
    }
}

/// The cluster's seq numbering: every node serves it as its `welcome`
/// epoch, so a client that moves from edge to edge keeps checking seqs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochMsg {
    pub epoch: String,
    /// The ingest node that started it.
    pub node: String,
    pub ts: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{field, Quote, Symbols};
    use crate::protocol::messages::encode_quote;
    use crate::trades::{Side, Trade};
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn a_quote_comes_back_byte_exact() {
        let mut syms = Symbols::new();
        let id = syms.intern("ES.Z26").unwrap();
        let q = Quote::default()
            .with_bid(d("6012.250"), d("3"))
            .with_ask(d("6012.50"), d("0.00000001"))
            .with_last(d("6012.25"), d("1"))
            .with_ts(1_700_000_000_123_456_789);
        let q = Quote {
            gw_ts: 1_700_000_000_200_000_000,
            ..q
        };
        let mut out = String::new();
        encode_quote(&mut out, &syms, id, 42, &q, false);
        let w = decode_quote(out.as_bytes()).unwrap();
        assert_eq!(w.symbol, "ES.Z26");
        assert_eq!(w.seq, 42);
        assert_eq!(w.quote, q);
        // Scale kept: what is written again is what came in.
        let mut again = String::new();
        encode_quote(&mut again, &syms, id, 42, &w.quote, false);
        assert_eq!(again, out);
        assert!(again.contains(r#""bid":"6012.250""#), "{again}");
    }

    #[test]
    fn a_status_reads_back_its_symbols_from_their_text() {
        let names = ["AAPL", "BRK.B", "Q\"UOTE"];
        let list = serde_json::value::to_raw_value(&names).unwrap();
        let st = FeedStatus {
            feed: "sim".into(),
            node: "n1".into(),
            epoch: "e1".into(),
            up: true,
            symbols: &list,
            interval_ms: 500,
            ts: 7,
            rounds: true,
        };
        let body = serde_json::to_vec(&st).unwrap();
        let back: FeedStatus = serde_json::from_slice(&body).unwrap();
        assert_eq!(back.symbols.get(), r#"["AAPL","BRK.B","Q\"UOTE"]"#);
        assert_eq!(back.symbol_list().unwrap(), names);
        assert!(matches!(back.feed, Cow::Borrowed("sim")));
        assert_eq!((back.up, back.interval_ms, back.ts), (true, 500, 7));
        assert!(back.rounds);
        // An ingest before whole rounds says nothing of them.
        let bad: FeedStatus = serde_json::from_str(
            r#"{"feed":"f","node":"n","epoch":"e","up":true,"symbols":[1],"interval_ms":1,"ts":1}"#,
        )
        .unwrap();
        assert!(!bad.rounds);
        assert!(bad.symbol_list().is_err(), "symbols are strings");
    }

    #[test]
    fn a_round_marks_its_first_and_last_message_only() {
        let marks = |n| (0..n).map(|i| Round::of(i, n)).collect::<Vec<_>>();
        assert_eq!(marks(1), [None]);
        assert_eq!(marks(2), [Some(Round::Open), Some(Round::End)]);
        assert_eq!(marks(4), [Some(Round::Open), None, None, Some(Round::End)]);
        for r in [Round::Open, Round::End] {
            assert_eq!(Round::read(Some(&r.headers())), Some(r));
        }
        let mut other = async_nats::HeaderMap::new();
        other.insert(Round::HEADER, "later");
        assert_eq!(Round::read(Some(&other)), None);
        assert_eq!(Round::read(None), None);
    }

    #[test]
    fn a_round_is_cut_in_messages_of_whole_lines() {
        let bodies: Vec<Vec<u8>> = (0..10)
            .map(|i| format!("q{i}-xxxxx").into_bytes())
            .collect();
        let mut out = Vec::new();
        // Three lines (8 bytes each and two newlines) fit in 26.
        chunk_round(bodies.iter().map(Vec::as_slice), 26, &mut out);
        let lens: Vec<usize> = out.iter().map(|c| round_quotes(c).count()).collect();
        assert_eq!(lens, [3, 3, 3, 1]);
        assert!(out.iter().all(|c| c.len() <= 26));
        let back: Vec<&[u8]> = out.iter().flat_map(|c| round_quotes(c)).collect();
        assert_eq!(back, bodies.iter().map(Vec::as_slice).collect::<Vec<_>>());
        // A quote longer than the limit goes alone, whole.
        let (mut out, long) = (Vec::new(), vec![b'x'; 40]);
        chunk_round([&b"a"[..], &long, b"b"].into_iter(), 26, &mut out);
        assert_eq!(out, [&b"a"[..], &long[..], b"b"]);
        let mut out = Vec::new();
        chunk_round(std::iter::empty(), 26, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn partial_quotes_keep_what_is_present() {
        let w = decode_quote(br#"{"type":"quote","symbol":"A","seq":7,"ask":"1.10","ask_size":"2","gw_ts":5,"snapshot":true}"#).unwrap();
        assert_eq!(w.quote.present, field::ASK | field::ASK_SIZE);
        assert_eq!(w.quote.ask.to_string(), "1.10");
        assert_eq!(w.quote.gw_ts, 5);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            &b""[..],
            b"[]",
            b"{",
            br#"{"type":"trade","symbol":"A","seq":1,"gw_ts":1}"#,
            br#"{"type":"quote","symbol":"A","seq":0,"gw_ts":1}"#,
            br#"{"type":"quote","symbol":"A","gw_ts":1}"#,
            br#"{"type":"quote","seq":1,"gw_ts":1}"#,
            br#"{"type":"quote","symbol":"A","seq":1}"#,
            br#"{"type":"quote","symbol":"A","seq":1,"gw_ts":1,"bid":1.5}"#,
            br#"{"type":"quote","symbol":"A","seq":1,"gw_ts":1,"bid":"x"}"#,
            br#"{"type":"quote","symbol":"A","seq":"1","gw_ts":1}"#,
            br#"{"type":"quote","symbol":"A\"","seq":1,"gw_ts":1}"#,
            br#"{"type":"quote","symbol":"A","seq":1,"gw_ts":1} x"#,
            br#"{"type":"quote","symbol":"A","seq":1,"gw_ts":1,}"#,
            b"\xff\xfe",
        ] {
            assert!(
                decode_quote(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_trade_comes_back_byte_exact() {
        use crate::protocol::messages::encode_trade;
        for t in [
            Trade {
                price: d("97000.10"),
                size: d("0.00100000"),
                side: Some(Side::Sell),
                trade_id: Some(123_456_789),
                ts: 1_700_000_000_000_000_001,
                gw_ts: 1_700_000_000_000_000_002,
            },
            Trade {
                price: d("1"),
                size: d("2.5"),
                side: None,
                trade_id: None,
                ts: 5,
                gw_ts: 6,
            },
        ] {
            let mut out = String::new();
            encode_trade(&mut out, "BTC-USD", 77, &t);
            let w = decode_trade(out.as_bytes()).unwrap();
            assert_eq!((w.symbol, w.seq, w.trade), ("BTC-USD", 77, t));
            let mut again = String::new();
            encode_trade(&mut again, "BTC-USD", 77, &w.trade);
            assert_eq!(again, out);
        }
        for bad in [
            &br#"{"type":"trade","symbol":"A","seq":1,"price":"1","size":"1","ts":1}"#[..],
            br#"{"type":"trade","symbol":"A","seq":1,"price":"1","size":"1","ts":1,"gw_ts":1,"side":"up"}"#,
            br#"{"type":"quote","symbol":"A","seq":1,"price":"1","size":"1","ts":1,"gw_ts":1}"#,
            br#"{"type":"trade","symbol":"A","seq":1,"price":1,"size":"1","ts":1,"gw_ts":1}"#,
        ] {
            assert!(decode_trade(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_stored_value_carries_its_lag() {
        assert_eq!(read_lag(&lag_headers(1000)), 1000);
        let none = async_nats::HeaderMap::new();
        assert_eq!(read_lag(&none), 0, "no header: nothing went on past it");
        for bad in ["-1", "x", ""] {
            let mut h = async_nats::HeaderMap::new();
            h.insert(LAG_HEADER, bad);
            assert_eq!(read_lag(&h), 0, "{bad:?}");
        }
    }

    #[test]
    fn subjects_use_the_prefix_and_tokens() {
        let s = Subjects::new("md.eu");
        assert_eq!(s.quote("ES.Z26"), "md.eu.q.ES~2EZ26");
        assert_eq!(s.status("sim"), "md.eu.status.sim");
        assert_eq!(s.trade("BTC-USD"), "md.eu.t.BTC-USD");
        assert_eq!(s.epoch(), "md.eu.epoch");
        assert_eq!(s.last_value("ES.Z26"), "md.eu.lv.ES~2EZ26");
        assert_eq!(s.round("ingest.a"), "md.eu.r.ingest~2Ea");
        assert_eq!(s.rounds(), "md.eu.r.>");
        assert_eq!(s.stored(), ["md.eu.lv.>", "md.eu.status.>", "md.eu.epoch"]);
    }
}
