//! Feed adapters and their health.
//!
//! Every feed registers a [`FeedState`]: the symbols it provides and when it
//! last showed signs of life (data or a heartbeat). A watchdog turns a
//! silence longer than the feed's `stale_after` into `status: stale` for its
//! symbols and back to `live` when the feed recovers; `/readyz` is ready
//! only while every feed is fresh.

pub mod binance;
pub mod coinbase;
pub mod ingest;
pub mod kraken;
pub mod record;
pub mod replay;
pub mod sim;
pub mod supervisor;

use crate::metrics::Metrics;
use crate::model::{now_ns, Quote, Status, SymbolId, Symbols};
use crate::shutdown::Shutdown;
use crate::slots::SlotTable;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct FeedState {
    pub name: String,
    pub symbols: Vec<SymbolId>,
    last_alive_ns: AtomicI64,
    up: AtomicBool,
    stale_after_ns: i64,
    /// Operator/test control: a paused feed sends nothing, not even
    /// heartbeats, exactly like a silent upstream.
    paused: AtomicBool,
    revive: std::sync::OnceLock<Revive>,
}

struct Revive {
    slots: Arc<SlotTable>,
    up_gauge: prometheus::IntGauge,
}

impl FeedState {
    /// `stale_after: None` is a feed that is never stale (a push feed whose
    /// silence means nothing).
    pub fn new(name: &str, symbols: Vec<SymbolId>, stale_after: Option<Duration>) -> Self {
        FeedState {
            name: name.to_string(),
            symbols,
            last_alive_ns: AtomicI64::new(0),
            up: AtomicBool::new(false),
            stale_after_ns: stale_after.map_or(-1, |d| d.as_nanos().min(i64::MAX as u128) as i64),
            paused: AtomicBool::new(false),
            revive: std::sync::OnceLock::new(),
        }
    }

    /// The upstream showed signs of life (data or heartbeat). A feed that
    /// was down turns live here, at once, so subscribers see `live` before
    /// the fresh data that follows (the watchdog only notices silence).
    pub fn alive(&self) {
        self.last_alive_ns.store(now_ns(), Ordering::Relaxed);
        if !self.up.load(Ordering::Acquire) {
            if let Some(r) = self.revive.get() {
                if !self.up.swap(true, Ordering::AcqRel) {
                    tracing::info!(feed = %self.name, "feed is live");
                    for s in &self.symbols {
                        r.slots.set_status(*s, Status::Live);
                    }
                    r.up_gauge.set(1);
                }
            }
        }
    }

    /// Lets [`FeedState::alive`] turn the feed live itself. Without it only
    /// the watchdog does (within its 100 ms tick).
    pub fn attach(&self, slots: Arc<SlotTable>, up_gauge: prometheus::IntGauge) {
        let _ = self.revive.set(Revive { slots, up_gauge });
    }

    /// The upstream connection is gone: its symbols go stale at the
    /// watchdog's next pass instead of after `stale_after`.
    pub fn down(&self) {
        self.last_alive_ns.store(0, Ordering::Relaxed);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn set_paused(&self, p: bool) {
        self.paused.store(p, Ordering::Release);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }
}

#[derive(Default)]
pub struct Feeds {
    pub feeds: Vec<Arc<FeedState>>,
}

impl Feeds {
    pub fn get(&self, name: &str) -> Option<&Arc<FeedState>> {
        self.feeds.iter().find(|f| f.name == name)
    }

    pub fn all_up(&self) -> bool {
        self.feeds.iter().all(|f| f.is_up())
    }

    /// One watchdog pass; returns the feeds whose state changed.
    pub fn check(&self, slots: &SlotTable, metrics: &Metrics) -> usize {
        let now = now_ns();
        let mut changed = 0;
        for f in &self.feeds {
            let last = f.last_alive_ns.load(Ordering::Relaxed);
            let fresh = f.stale_after_ns < 0 || (last > 0 && now - last <= f.stale_after_ns);
            if fresh != f.is_up() {
                if f.up.swap(fresh, Ordering::AcqRel) == fresh {
                    // alive() got there first.
                    continue;
                }
                let st = if fresh { Status::Live } else { Status::Stale };
                if fresh {
                    tracing::info!(feed = %f.name, "feed is live");
                } else {
                    tracing::warn!(feed = %f.name, "feed is silent: its symbols are stale");
                }
                for s in &f.symbols {
                    slots.set_status(*s, st);
                }
                metrics
                    .feed_up
                    .with_label_values(&[&f.name])
                    .set(fresh as i64);
                changed += 1;
            }
        }
        changed
    }

    pub async fn watchdog(
        self: Arc<Self>,
        slots: Arc<SlotTable>,
        metrics: Arc<Metrics>,
        mut shutdown: Shutdown,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tick.tick() => { self.check(&slots, &metrics); }
            }
        }
    }
}

// ------------------------------------------------------------ venue adapters

/// One thing an upstream frame said.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// New values for a mapped symbol. Only the fields set in
    /// `quote.present` changed; the others keep their previous value (a
    /// trade does not erase the book, and vice versa).
    Quote {
        sym: SymbolId,
        quote: Quote,
        /// The venue's own ordering for this symbol: (stream, sequence).
        /// Streams number independently (Binance's book updates and trades
        /// have separate counters); stream must be < [`SEQ_STREAMS`].
        seq: Option<(u8, u64)>,
    },
    /// The upstream is alive (heartbeat, pong, status).
    Heartbeat,
    /// The venue acknowledged our subscription.
    Subscribed,
    /// The venue refused our subscription. Reconnecting at once would only
    /// be refused again, so the supervisor logs it and waits the longest
    /// backoff.
    Rejected(String),
    /// The venue refused one pair of our subscription and took the rest:
    /// the supervisor logs it and counts it (`feed_symbols_refused_total`),
    /// and the feed carries on with the other pairs (the refused one's
    /// symbol gets no quotes: it stays stale).
    PairRefused(String),
    /// Understood and deliberately unused.
    Ignored,
}

/// Independent sequence spaces per symbol tracked by the normalizer.
pub const SEQ_STREAMS: usize = 2;

/// An upstream frame that could not be used. Counted in
/// `feed_rejects_total{feed, reason}`; the feed carries on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("unexpected message: {0}")]
    Unexpected(String),
    #[error("field `{field}`: {reason}")]
    Field { field: &'static str, reason: String },
    #[error("unmapped venue symbol {0:?}")]
    Unmapped(String),
}

impl ParseError {
    /// The `reason` label in `feed_rejects_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::Json(_) => "malformed",
            ParseError::Unexpected(_) => "unexpected",
            ParseError::Field { .. } => "bad_field",
            ParseError::Unmapped(_) => "unmapped_symbol",
        }
    }

    pub fn field(field: &'static str, reason: impl Into<String>) -> Self {
        ParseError::Field {
            field,
            reason: reason.into(),
        }
    }
}

/// A venue's wire format and subscription handshake. The supervisor owns the
/// connection; the venue only says what to send and what frames mean.
pub trait Venue: Send + 'static {
    /// Venue kind, e.g. `binance`.
    fn kind(&self) -> &'static str;
    /// The URL to connect to (it may carry the subscription, as Binance's
    /// combined-stream URLs do).
    fn url(&self) -> String;
    /// Text messages to send right after connecting, in order.
    fn on_connect(&mut self) -> Vec<String>;
    /// Parses one text frame. `frame` may be modified (simd-json parses in
    /// place). Events are appended to `out`.
    fn parse(&mut self, frame: &mut [u8], out: &mut Vec<Event>) -> Result<(), ParseError>;
}

/// A boxed adapter is an adapter: lets one code path pick the venue at run
/// time (the recorder, replay, the gateway).
impl Venue for Box<dyn Venue> {
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
    fn url(&self) -> String {
        (**self).url()
    }
    fn on_connect(&mut self) -> Vec<String> {
        (**self).on_connect()
    }
    fn parse(&mut self, frame: &mut [u8], out: &mut Vec<Event>) -> Result<(), ParseError> {
        (**self).parse(frame, out)
    }
}

/// The adapter for a venue kind (`binance`, `coinbase`, `kraken`).
pub fn venue_for(
    kind: &str,
    cfg: &crate::config::VenueConfig,
    map: SymbolMap,
) -> Result<Box<dyn Venue>, String> {
    match kind {
        "binance" => Ok(Box::new(binance::Binance::new(cfg, map))),
        "coinbase" => Ok(Box::new(coinbase::Coinbase::new(cfg, map))),
        "kraken" => Ok(Box::new(kraken::Kraken::new(cfg, map))),
        other => Err(format!(
            "unknown venue {other:?} (binance, coinbase or kraken)"
        )),
    }
}

/// The hash of [`SymbolMap`]: FxHash over 8-byte words, several times
/// cheaper than SipHash on the short names looked up once per frame. The
/// keys come from the config, so nothing is gained by seeding it.
#[derive(Default, Clone, Copy)]
pub struct SymbolHasher(u64);

impl std::hash::Hasher for SymbolHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut add = |w: u64| self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
    }

    fn write_u8(&mut self, i: u8) {
        self.write(&[i]);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Venue symbol -> gateway symbol id, from a feed's `symbols` table.
#[derive(Debug, Clone, Default)]
pub struct SymbolMap {
    /// Keyed by bytes, so the fast paths look up a scanned name as is.
    map: HashMap<Box<[u8]>, SymbolId, std::hash::BuildHasherDefault<SymbolHasher>>,
    /// Venue symbols in config order.
    pub venue_symbols: Vec<String>,
}

impl SymbolMap {
    /// Interns every gateway symbol of `table` into `symbols`.
    pub fn build(
        table: &std::collections::BTreeMap<String, String>,
        symbols: &mut Symbols,
    ) -> Result<SymbolMap, String> {
        let mut m = SymbolMap::default();
        for (venue, gw) in table {
            let id = symbols.intern(gw)?;
            m.map.insert(venue.as_bytes().into(), id);
            m.venue_symbols.push(venue.clone());
        }
        Ok(m)
    }

    /// [`SymbolMap::get`] without the error (for fast paths, which leave
    /// errors to the general path).
    #[inline]
    pub fn lookup(&self, venue_symbol: &[u8]) -> Option<SymbolId> {
        self.map.get(venue_symbol).copied()
    }

    pub fn get(&self, venue_symbol: &str) -> Result<SymbolId, ParseError> {
        self.map
            .get(venue_symbol.as_bytes())
            .copied()
            .ok_or_else(|| {
                let shown: String = venue_symbol.chars().take(40).collect();
                ParseError::Unmapped(shown)
            })
    }

    /// Every gateway symbol id this map writes.
    pub fn ids(&self) -> Vec<SymbolId> {
        let mut v: Vec<SymbolId> = self.map.values().copied().collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Longest decimal text accepted (sign, 28 digits, point, some zeros).
const MAX_DECIMAL_TEXT: usize = 40;

/// Parses a venue's decimal text exactly: `-?digits(.digits)?`, nothing
/// else (no exponent, no `NaN`/`Infinity`, no `+`, no spaces), and never
/// rounds: a value `rust_decimal` cannot hold exactly is an error. The
/// scale is kept, so `"189.1200"` prints back as `"189.1200"`.
///
/// Hot path: text of at most 19 digits (every venue price and size) is read
/// straight into a `u64` mantissa and a scale ([`fast_decimal`]); anything
/// else, including every error, goes through [`parse_decimal_reference`],
/// so results and errors are those of the reference, bit for bit.
#[inline]
pub fn parse_decimal(text: &str, field: &'static str) -> Result<Decimal, ParseError> {
    match fast_decimal(text.as_bytes()) {
        Some(d) => Ok(d),
        None => parse_decimal_reference(text, field),
    }
}

/// Most digits [`fast_decimal`] takes: any 19-digit number fits a `u64`.
const FAST_DECIMAL_DIGITS: usize = 19;

/// `-?digits(.digits)?` with at most 19 digits in all, as a `Decimal` equal
/// (same mantissa, scale and sign bits) to what `Decimal::from_str_exact`
/// gives; `None` for anything else (longer, malformed, or `-0`, whose sign
/// the reference keeps and `Decimal::from_parts` would drop), which the
/// caller hands to the reference parser. One pass, no branch on the
/// point inside the digit loops.
#[inline]
pub fn fast_decimal(b: &[u8]) -> Option<Decimal> {
    match decimal_prefix(b) {
        Some((d, n)) if n == b.len() => Some(d),
        _ => None,
    }
}

/// [`fast_decimal`] of the longest `-?digits(.digits)?` at the start of
/// `b`, and its length; `None` where `fast_decimal` of that text would be
/// (so a caller that finds the text ends there gets `fast_decimal`'s
/// answer without a second pass: see [`flat::Cursor::decimal_str`]).
#[inline(always)]
fn decimal_prefix(b: &[u8]) -> Option<(Decimal, usize)> {
    let neg = b.first() == Some(&b'-');
    let start = usize::from(neg);
    // `mant` wraps while the digits run on and is refused after: at most
    // 19 digits fit.
    let mut mant: u64 = 0;
    let int_end = scan_digits(b, start, &mut mant);
    let int = int_end - start;
    let (frac, len) = match b.get(int_end) {
        Some(b'.') => {
            let end = scan_digits(b, int_end + 1, &mut mant);
            (end - int_end - 1, end)
        }
        _ => (0, int_end),
    };
    // Both ends are digits, and the mantissa fits a u64.
    if int == 0 || (len > int_end && frac == 0) {
        return None;
    }
    if int + frac > FAST_DECIMAL_DIGITS || (neg && mant == 0) {
        return None;
    }
    let d = Decimal::from_parts(mant as u32, (mant >> 32) as u32, 0, neg, frac as u32);
    Some((d, len))
}

/// Reads the digits of `b` from `i` on into `mant`; the index past them.
#[inline(always)]
fn scan_digits(b: &[u8], mut i: usize, mant: &mut u64) -> usize {
    while let Some(&c) = b.get(i) {
        let d = c.wrapping_sub(b'0');
        if d >= 10 {
            break;
        }
        *mant = mant.wrapping_mul(10).wrapping_add(d as u64);
        i += 1;
    }
    i
}

/// The general decimal parser (validation, then `Decimal::from_str_exact`):
/// what [`parse_decimal`] falls back to, and the oracle its fast path is
/// tested against.
pub fn parse_decimal_reference(text: &str, field: &'static str) -> Result<Decimal, ParseError> {
    let b = text.as_bytes();
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    let ok = !digits.is_empty()
        && b.len() <= MAX_DECIMAL_TEXT
        && digits[0].is_ascii_digit()
        && digits[digits.len() - 1].is_ascii_digit()
        && digits.iter().filter(|c| **c == b'.').count() <= 1
        && digits.iter().all(|c| c.is_ascii_digit() || *c == b'.');
    if !ok {
        let shown: String = text.chars().take(40).collect();
        return Err(ParseError::field(
            field,
            format!("not a decimal: {shown:?}"),
        ));
    }
    Decimal::from_str_exact(text).map_err(|e| ParseError::field(field, format!("{text}: {e}")))
}

/// Parses an RFC 3339 UTC timestamp (`2022-10-19T23:28:22.061769Z`, the
/// form Coinbase and Kraken send) into ns since the epoch.
pub fn parse_rfc3339_ns(text: &str, field: &'static str) -> Result<i64, ParseError> {
    let bad = || ParseError::field(field, format!("not an RFC 3339 UTC time: {text:?}"));
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, ParseError> {
        let s = text.get(r).ok_or_else(bad)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<i64>().map_err(|_| bad())
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = &text[19..];
    let (frac, tz) = match rest.strip_prefix('.') {
        Some(r) => {
            let n = r.bytes().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 || n > 9 {
                return Err(bad());
            }
            (&r[..n], &r[n..])
        }
        None => ("", rest),
    };
    if tz != "Z" && tz != "+00:00" {
        return Err(bad());
    }
    let mut ns: i64 = 0;
    for (i, c) in frac.bytes().enumerate() {
        ns += (c - b'0') as i64 * 10i64.pow(8 - i as u32);
    }
    civil_ns([y, mo, d, h, mi, s], ns).ok_or_else(bad)
}

/// Nanoseconds since the Unix epoch of a UTC time given as year, month,
/// day, hour, minute, second (four-digit year) plus `ns`; `None` when a
/// field is out of range (month, day of that month, 23:59:59) or the time
/// is past i64 nanoseconds (2262-04-11T23:47:16.854775807Z: a later year
/// is refused, not wrapped; found by fuzzing). Shared by every RFC 3339
/// reader so they agree to the nanosecond.
pub(crate) fn civil_ns([y, mo, d, h, mi, s]: [i64; 6], ns: i64) -> Option<i64> {
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=days_in_month).contains(&d) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + h * 3_600 + mi * 60 + s)
        .checked_mul(1_000_000_000)?
        .checked_add(ns)
}

#[cfg(test)]
mod venue_tests {
    use super::*;

    #[test]
    fn decimals_are_exact_or_refused() {
        for (text, printed) in [
            ("189.1200", "189.1200"),
            ("0.00000001", "0.00000001"),
            ("97000", "97000"),
            ("-1.5", "-1.5"),
            ("0", "0"),
            ("00.10", "0.10"),
        ] {
            assert_eq!(parse_decimal(text, "p").unwrap().to_string(), printed);
        }
        for bad in [
            "",
            "-",
            ".5",
            "5.",
            "1e5",
            "NaN",
            "nan",
            "Infinity",
            "+1",
            " 1",
            "1 ",
            "1.2.3",
            "0x10",
            "1,5",
            "١",
            "99999999999999999999999999999999",
            "0.00000000000000000000000000000001",
        ] {
            assert!(parse_decimal(bad, "p").is_err(), "{bad:?} must be refused");
        }
        let e = parse_decimal("NaN", "bid").unwrap_err();
        assert_eq!(e.reason(), "bad_field");
        assert!(e.to_string().contains("bid"));
    }

    #[test]
    fn fast_decimals_are_the_reference_bit_for_bit() {
        for text in [
            "189.1200",
            "0.00000001",
            "97000",
            "-1.5",
            "0",
            "00.10",
            "-0",
            "-0.00",
            "9999999999999999999",
            "99999999999999999999",
            "1844674407370955161.5",
            "0.0000000000000000001",
            "1.",
            ".5",
            "-",
            "",
            "1e5",
            "+1",
            "1.2.3",
        ] {
            let fast = parse_decimal(text, "p").map(|d| d.serialize());
            let reference = parse_decimal_reference(text, "p").map(|d| d.serialize());
            assert_eq!(fast, reference, "{text:?}");
        }
        assert!(fast_decimal(b"97000.01000000").is_some());
        assert!(
            fast_decimal(b"-0").is_none(),
            "negative zero is the reference's"
        );
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z", "t").unwrap(), 0);
        assert_eq!(
            parse_rfc3339_ns("2022-10-19T23:28:22.061769Z", "t").unwrap(),
            1_666_222_102_061_769_000
        );
        assert_eq!(
            parse_rfc3339_ns("2023-09-25T09:04:31.742599123Z", "t").unwrap(),
            1_695_632_671_742_599_123
        );
        assert_eq!(
            parse_rfc3339_ns("2262-04-11T23:47:16.854775807Z", "t").unwrap(),
            i64::MAX
        );
        assert!(
            parse_rfc3339_ns("2024-02-29T00:00:00Z", "t").is_ok(),
            "leap day"
        );
        for bad in [
            "2025-02-29T00:00:00Z",
            "2025-04-31T00:00:00Z",
            "2025-01-01T00:00:60Z",
            "1900-02-29T00:00:00Z",
            "",
            "2022-10-19",
            "2022-13-19T23:28:22Z",
            "2022-10-19T23:28:22+01:00",
            "2022-10-19T23:28:22.Z",
            "x022-10-19T23:28:22Z",
            // Past the end of i64 nanoseconds (overflowed before).
            "2262-04-11T23:47:16.854775808Z",
            "2262-05-01T00:00:00+00:00",
            "9999-12-31T23:59:59.999999999Z",
        ] {
            assert!(parse_rfc3339_ns(bad, "t").is_err(), "{bad}");
        }
    }
}

/// Field access on a simd-json borrowed DOM with errors that name the field.
pub mod json {
    use super::{parse_decimal, ParseError};
    use rust_decimal::Decimal;
    pub use simd_json::value::borrowed::Object;
    pub use simd_json::BorrowedValue as Value;
    use simd_json::StaticNode;

    thread_local! {
        /// simd-json's scratch space, reused for every frame parsed on this
        /// thread instead of allocated per frame (the hot path of every
        /// adapter). The parsed value borrows the frame, not these.
        static BUFFERS: std::cell::RefCell<simd_json::Buffers> =
            std::cell::RefCell::new(simd_json::Buffers::default());
    }

    /// Parses a frame in place.
    pub fn parse(frame: &mut [u8]) -> Result<Value<'_>, ParseError> {
        BUFFERS
            .with(|b| simd_json::to_borrowed_value_with_buffers(frame, &mut b.borrow_mut()))
            .map_err(|e| ParseError::Json(e.to_string()))
    }

    pub fn object<'a, 'v>(v: &'a Value<'v>) -> Result<&'a Object<'v>, ParseError> {
        match v {
            Value::Object(o) => Ok(o),
            _ => Err(ParseError::Unexpected("not a JSON object".into())),
        }
    }

    pub fn str_field<'a>(o: &'a Object, key: &'static str) -> Result<&'a str, ParseError> {
        match o.get(key) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(ParseError::field(key, "must be a string")),
            None => Err(ParseError::field(key, "missing")),
        }
    }

    pub fn opt_str<'a>(o: &'a Object, key: &'static str) -> Option<&'a str> {
        match o.get(key) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    pub fn u64_field(o: &Object, key: &'static str) -> Result<u64, ParseError> {
        match o.get(key) {
            Some(Value::Static(StaticNode::U64(v))) => Ok(*v),
            Some(Value::Static(StaticNode::I64(v))) if *v >= 0 => Ok(*v as u64),
            Some(_) => Err(ParseError::field(key, "must be a non-negative integer")),
            None => Err(ParseError::field(key, "missing")),
        }
    }

    /// A decimal sent as a JSON string (`"189.12"`), parsed exactly.
    pub fn dec_field(o: &Object, key: &'static str) -> Result<Decimal, ParseError> {
        parse_decimal(str_field(o, key)?, key)
    }
}

/// A validating scanner for the canonical form of venue frames: flat JSON
/// objects with no whitespace, no escapes, ASCII strings and scalar values.
/// It is the first half of every adapter's fast path: a frame in that form
/// is read here without a DOM; anything else (whitespace, an escape, a
/// nested value, an exponent, a duplicate field, an error of any kind) makes
/// it give up with `None`, and the adapter parses the frame again with its
/// general simd-json path, which owns every error. So the scanner accepts
/// only text every JSON parser reads the same way, and never reports.
pub mod flat {
    /// A scalar value as it stood in the text.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Val<'a> {
        /// A string without escapes or control bytes, ASCII only.
        Str(&'a [u8]),
        /// A number's exact text: `-?(0|[1-9][0-9]*)(\.[0-9]+)?` with at
        /// most 18 digits before and 18 after the point (no exponent).
        Num(&'a [u8]),
        True,
        False,
        Null,
    }

    impl<'a> Val<'a> {
        #[inline]
        pub fn as_str(self) -> Option<&'a [u8]> {
            match self {
                Val::Str(s) => Some(s),
                _ => None,
            }
        }

        /// A JSON integer `>= 0` (what `json::u64_field` takes).
        #[inline]
        pub fn as_u64(self) -> Option<u64> {
            match self {
                Val::Num(t) => uint(t),
                _ => None,
            }
        }

        /// A string or a number, as text.
        #[inline]
        pub fn text(self) -> Option<&'a [u8]> {
            match self {
                Val::Str(s) | Val::Num(s) => Some(s),
                _ => None,
            }
        }
    }

    /// [`super::parse_decimal`] on scanned text, without its error.
    #[inline]
    pub fn decimal(b: &[u8], key: &'static str) -> Option<rust_decimal::Decimal> {
        match super::fast_decimal(b) {
            Some(d) => Some(d),
            None => super::parse_decimal_reference(std::str::from_utf8(b).ok()?, key).ok(),
        }
    }

    /// Most integer (and fraction) digits of a number the scanner takes:
    /// such an integer fits an `i64` and a `u64` alike.
    const MAX_NUMBER_DIGITS: usize = 18;

    /// Digits only (no sign, point or leading zero) as a `u64`.
    #[inline]
    fn uint(b: &[u8]) -> Option<u64> {
        if b.is_empty() || b.len() > MAX_NUMBER_DIGITS || (b[0] == b'0' && b.len() > 1) {
            return None;
        }
        let mut v: u64 = 0;
        for &c in b {
            let d = c.wrapping_sub(b'0');
            if d >= 10 {
                return None;
            }
            v = v * 10 + d as u64;
        }
        Some(v)
    }

    /// `0x01` in every byte of a word.
    const LO: u64 = u64::from_le_bytes([1; 8]);
    /// The high bit of every byte of a word.
    const HI: u64 = LO << 7;

    /// Reads 8 bytes at once, little-endian (the first byte lowest).
    #[inline(always)]
    fn word(chunk: &[u8]) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        u64::from_le_bytes(w)
    }

    /// The high bit set in each byte of `x` equal to `c`. Exact in the
    /// lowest flagged byte (a borrow only flags bytes above a true one),
    /// which is all the callers use.
    #[inline(always)]
    fn eq_bytes(x: u64, c: u8) -> u64 {
        let y = x ^ (LO * c as u64);
        y.wrapping_sub(LO) & !y & HI
    }

    /// Count of leading bytes of `b` that `keep` takes, 8 at a time:
    /// `stops` flags (high bit) the bytes of a word `keep` refuses, exactly
    /// in the lowest flagged byte; the tail goes byte by byte.
    #[inline(always)]
    fn leading(b: &[u8], stops: impl Fn(u64) -> u64, keep: impl Fn(u8) -> bool) -> usize {
        let mut chunks = b.chunks_exact(8);
        let mut n = 0;
        for chunk in &mut chunks {
            let flags = stops(word(chunk));
            if flags != 0 {
                return n + (flags.trailing_zeros() / 8) as usize;
            }
            n += 8;
        }
        n + chunks.remainder().iter().take_while(|&&c| keep(c)).count()
    }

    /// Count of leading ASCII digits: the word's bytes are flagged exactly
    /// (7-bit sums never carry into the next byte).
    #[inline(always)]
    fn digits(b: &[u8]) -> usize {
        let not_digit = |x: u64| {
            let low7 = x & !HI;
            let above_9 = low7 + LO * (0x7f - b'9' as u64);
            let from_0 = low7 + LO * (0x80 - b'0' as u64);
            (above_9 | !from_0 | x) & HI
        };
        leading(b, not_digit, |c| c.is_ascii_digit())
    }

    /// Count of leading bytes a scanned string may hold (see
    /// [`STRING_BYTE`]).
    #[inline(always)]
    fn string_bytes(b: &[u8]) -> usize {
        let stop = |x: u64| {
            // Each term's lowest flag is exact, so the lowest of all is.
            let control = x.wrapping_sub(LO * 0x20) & !x & HI;
            let stop = eq_bytes(x, b'"') | eq_bytes(x, b'\\') | eq_bytes(x, 0x7f);
            control | stop | (x & HI)
        };
        leading(b, stop, |c| STRING_BYTE[c as usize])
    }

    /// Bytes a scanned string may hold: printable ASCII but `"` and `\`.
    static STRING_BYTE: [bool; 256] = {
        let mut t = [false; 256];
        let mut c = 0x20;
        while c < 0x7f {
            t[c] = c != b'"' as usize && c != b'\\' as usize;
            c += 1;
        }
        t
    };

    /// A position in a frame. The frame need not be UTF-8: every byte a
    /// scan accepts is ASCII (literals, string bodies, numbers), and a
    /// scan must reach the end, so a frame it takes whole is ASCII.
    pub struct Cursor<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl<'a> Cursor<'a> {
        #[inline]
        pub fn new(b: &'a [u8]) -> Self {
            Cursor { b, i: 0 }
        }

        #[inline]
        fn text(&self, from: usize, to: usize) -> Option<&'a [u8]> {
            self.b.get(from..to)
        }

        #[inline]
        pub fn at_end(&self) -> bool {
            self.i == self.b.len()
        }

        #[inline]
        fn rest(&self) -> &'a [u8] {
            self.b.get(self.i..).unwrap_or_default()
        }

        #[inline]
        fn peek(&self) -> Option<u8> {
            self.b.get(self.i).copied()
        }

        /// Exactly `s`.
        #[inline]
        pub fn lit(&mut self, s: &[u8]) -> Option<()> {
            if self.rest().starts_with(s) {
                self.i += s.len();
                Some(())
            } else {
                None
            }
        }

        /// A string: its bytes between the quotes, printable ASCII other
        /// than `"` and `\`.
        #[inline(always)]
        pub fn string(&mut self) -> Option<&'a [u8]> {
            let body = self.rest().strip_prefix(b"\"")?;
            let n = string_bytes(body);
            if body.get(n) != Some(&b'"') {
                return None;
            }
            let from = self.i + 1;
            self.i += n + 2;
            self.text(from, from + n)
        }

        #[inline(always)]
        fn number(&mut self) -> Option<&'a [u8]> {
            let rest = self.rest();
            let sign = usize::from(rest.first() == Some(&b'-'));
            let int = digits(&rest[sign..]);
            if int == 0 || int > MAX_NUMBER_DIGITS || (rest[sign] == b'0' && int > 1) {
                return None;
            }
            let mut end = sign + int;
            if rest.get(end) == Some(&b'.') {
                let frac = digits(&rest[end + 1..]);
                if frac == 0 || frac > MAX_NUMBER_DIGITS {
                    return None;
                }
                end += 1 + frac;
            }
            if matches!(rest.get(end), Some(b'e' | b'E' | b'.')) {
                return None;
            }
            let from = self.i;
            self.i += end;
            self.text(from, from + end)
        }

        /// A string holding a plain decimal (`"-?digits(.digits)?"`, at most
        /// 19 digits), read straight into the decimal [`super::parse_decimal`]
        /// gives for its text, with that text; `None`, the cursor unmoved,
        /// for anything else (the caller then reads it as a [`Val`]). What
        /// it takes, [`Cursor::string`] takes too.
        #[inline(always)]
        pub fn decimal_str(&mut self) -> Option<(rust_decimal::Decimal, &'a [u8])> {
            let body = self.rest().strip_prefix(b"\"")?;
            let (d, n) = super::decimal_prefix(body)?;
            if body.get(n) != Some(&b'"') {
                return None;
            }
            let from = self.i + 1;
            let text = self.text(from, from + n)?;
            self.i += n + 2;
            Some((d, text))
        }

        /// A scalar value: string, number, `true`, `false` or `null`.
        #[inline(always)]
        pub fn value(&mut self) -> Option<Val<'a>> {
            match self.peek()? {
                b'"' => self.string().map(Val::Str),
                b't' => self.lit(b"true").map(|_| Val::True),
                b'f' => self.lit(b"false").map(|_| Val::False),
                b'n' => self.lit(b"null").map(|_| Val::Null),
                b'-' | b'0'..=b'9' => self.number().map(Val::Num),
                _ => None,
            }
        }

        /// A non-empty flat object `{"k":v,...}`: `f` sees every member in
        /// order and may give up (`None`), and so does the scan.
        #[inline]
        pub fn object(&mut self, mut f: impl FnMut(&'a [u8], Val<'a>) -> Option<()>) -> Option<()> {
            self.lit(b"{")?;
            loop {
                let k = self.string()?;
                self.lit(b":")?;
                let v = self.value()?;
                f(k, v)?;
                match self.peek()? {
                    b',' => self.i += 1,
                    b'}' => {
                        self.i += 1;
                        return Some(());
                    }
                    _ => return None,
                }
            }
        }
    }

    /// Reads a flat object's members into `slots` by key (`keys[i]` goes to
    /// `slots[i]`). First as the exact layout `{"keys[0]":v,"keys[1]":v,..}`
    /// (a venue's canonical frame: no key lookups), else in any order, where
    /// other keys are skipped (their values still checked) and a key seen
    /// twice gives up, since parsers disagree on which one wins.
    #[inline]
    pub fn fields<'a, const N: usize>(
        c: &mut Cursor<'a>,
        keys: &[&str; N],
        slots: &mut [Option<Val<'a>>; N],
    ) -> Option<()> {
        let start = c.i;
        if in_order(c, keys, slots).is_some() {
            return Some(());
        }
        c.i = start;
        *slots = [None; N];
        c.object(|k, v| {
            if let Some(i) = keys.iter().position(|x| x.as_bytes() == k) {
                if slots[i].replace(v).is_some() {
                    return None;
                }
            }
            Some(())
        })
    }

    #[inline]
    fn in_order<'a, const N: usize>(
        c: &mut Cursor<'a>,
        keys: &[&str; N],
        slots: &mut [Option<Val<'a>>; N],
    ) -> Option<()> {
        for (i, (k, slot)) in keys.iter().zip(slots.iter_mut()).enumerate() {
            c.lit(if i == 0 { b"{\"" } else { b",\"" })?;
            c.lit(k.as_bytes())?;
            c.lit(b"\":")?;
            *slot = Some(c.value()?);
        }
        c.lit(b"}")
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn digits_bytewise(b: &[u8]) -> usize {
            b.iter().take_while(|c| c.is_ascii_digit()).count()
        }

        fn string_bytewise(b: &[u8]) -> usize {
            b.iter().take_while(|&&c| STRING_BYTE[c as usize]).count()
        }

        /// Every byte value at every position of the first two words and
        /// the tail, behind runs of allowed bytes: the first stop found 8
        /// bytes at a time is the one found byte by byte.
        #[test]
        fn word_scans_stop_where_byte_scans_do() {
            for len in 0..20 {
                for at in 0..len {
                    for c in 0..=255u8 {
                        let mut d = vec![b'7'; len];
                        d[at] = c;
                        assert_eq!(digits(&d), digits_bytewise(&d), "{d:?}");
                        let mut s = vec![b'a'; len];
                        s[at] = c;
                        // A stop byte, then every value behind it.
                        s.extend_from_slice(&[0, b'"', 0xff, b'\\', 0x7f, b' ']);
                        assert_eq!(string_bytes(&s), string_bytewise(&s), "{s:?}");
                    }
                }
            }
        }

        /// Frames are not checked for UTF-8 as a whole: a scan refuses any
        /// byte outside printable ASCII wherever it stands.
        #[test]
        fn scans_refuse_bytes_outside_ascii() {
            for text in [
                &b"\"b\xc3\xbcy\""[..],
                b"\"\xff\"",
                b"\"tab\there\"",
                b"\"\x7f\"",
                b"\"esc\\\"\"",
            ] {
                assert_eq!(Cursor::new(text).value(), None, "{text:?}");
            }
            let mut c = Cursor::new(b"\"buy\"");
            assert_eq!(c.value(), Some(Val::Str(b"buy")));
            assert!(c.at_end());
            assert_eq!(Cursor::new(b"1\xc3").value(), Some(Val::Num(b"1")));
        }

        proptest::proptest! {
            #[test]
            fn word_scans_agree_on_any_bytes(b in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::num::u8::ANY,
                    proptest::sample::select(b"0123456789.\"\\ az\x1f\x20\x7e\x7f\x80".to_vec()),
                ],
                0..40,
            )) {
                proptest::prop_assert_eq!(digits(&b), digits_bytewise(&b));
                proptest::prop_assert_eq!(string_bytes(&b), string_bytewise(&b));
            }

            /// A quoted decimal read in one pass is `None` (cursor unmoved)
            /// or exactly what the string scan and `parse_decimal` of its
            /// text give, bits included, with the cursor where the string
            /// scan leaves it.
            #[test]
            fn decimal_strings_read_as_scan_then_parse(body in proptest::prop_oneof![
                "-?[0-9]{1,21}(\\.[0-9]{1,10})?",
                "[-0-9.]{0,24}[\"x,]?[0-9]{0,3}",
            ]) {
                let text = format!("\"{body}\",");
                let mut fused = Cursor::new(text.as_bytes());
                let mut scan = Cursor::new(text.as_bytes());
                match fused.decimal_str() {
                    None => proptest::prop_assert_eq!(fused.i, 0),
                    Some((d, t)) => {
                        let s = scan.string();
                        proptest::prop_assert_eq!(Some(t), s);
                        let reference = super::super::parse_decimal(
                            std::str::from_utf8(t).unwrap_or_default(),
                            "p",
                        );
                        proptest::prop_assert_eq!(
                            Ok(d.serialize()),
                            reference.map(|r| r.serialize()).map_err(|e| e.to_string())
                        );
                        proptest::prop_assert_eq!(fused.i, scan.i);
                    }
                }
            }
        }
    }
}
