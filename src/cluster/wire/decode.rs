//! Reading back what an ingest publishes: quotes (a one-pass reader for
//! the exact layout `encode_quote` writes, and a general one that owns
//! every error) and trades. Nothing that is not a tickergate message is
//! guessed at.

use crate::feed::wire::parse_decimal;
use crate::model::{field, Quote, Symbols};
use crate::trades::{Side, Trade};
use rust_decimal::Decimal;
use std::str::FromStr;

/// Why a payload is not a quote (or trade) this gateway sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a tickergate message: {0}")]
pub struct BadMessage(pub &'static str);

/// A quote read back from its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireQuote<'a> {
    pub symbol: &'a str,
    pub seq: u64,
    /// Its venue indexes are 0: the payload names the venues
    /// (`bid_venue`, `ask_venue`), and [`WireQuote::quote_in`] gives them
    /// this node's indexes.
    pub quote: Quote,
    /// A consolidated quote's best bid's feed, as the ingest names it.
    pub bid_venue: Option<&'a str>,
    pub ask_venue: Option<&'a str>,
}

impl WireQuote<'_> {
    /// The quote with its venues as `symbols` numbers them (learning
    /// the names it does not know yet), so a consolidated quote an edge
    /// serves names its legs' feeds as the ingest's does.
    pub fn quote_in(&self, symbols: &Symbols) -> Quote {
        let mut q = self.quote;
        if let Some(v) = self.bid_venue {
            q.bid_venue = symbols.venue(v);
        }
        if let Some(v) = self.ask_venue {
            q.ask_venue = symbols.venue(v);
        }
        q
    }
}

/// One flat JSON value: a string (no escapes: nothing this gateway sends
/// needs them), or a bare literal (number, `true`, `false`).
enum Val<'a> {
    Str(&'a str),
    Bare(&'a str),
}

/// A small scanner for the flat objects `encode_quote` writes: one pass,
/// no allocation. Anything else is refused rather than guessed at.
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\n' | b'\r' | b'\t') {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn string(&mut self) -> Result<&'a str, BadMessage> {
        if !self.eat(b'"') {
            return Err(BadMessage("expected a string"));
        }
        let start = self.i;
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'"' => {
                    let s = std::str::from_utf8(&self.b[start..self.i])
                        .map_err(|_| BadMessage("not UTF-8"))?;
                    self.i += 1;
                    return Ok(s);
                }
                b'\\' | 0..=0x1f => return Err(BadMessage("escaped or control character")),
                _ => self.i += 1,
            }
        }
        Err(BadMessage("unterminated string"))
    }

    fn value(&mut self) -> Result<Val<'a>, BadMessage> {
        self.ws();
        match self.b.get(self.i) {
            Some(b'"') => self.string().map(Val::Str),
            Some(_) => {
                let start = self.i;
                while let Some(&c) = self.b.get(self.i) {
                    if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.') {
                        self.i += 1;
                    } else {
                        break;
                    }
                }
                if start == self.i {
                    return Err(BadMessage("expected a value"));
                }
                // ASCII by construction.
                let s = std::str::from_utf8(&self.b[start..self.i])
                    .map_err(|_| BadMessage("not UTF-8"))?;
                Ok(Val::Bare(s))
            }
            None => Err(BadMessage("truncated")),
        }
    }
}

fn dec(v: &Val<'_>) -> Result<Decimal, BadMessage> {
    match v {
        // The venues' exact parser (fast path for up to 19 digits): what
        // `Decimal`'s Display wrote comes back with its scale.
        Val::Str(s) => parse_decimal(s, "decimal").map_err(|_| BadMessage("not a decimal string")),
        Val::Bare(_) => Err(BadMessage("a price or size must be a decimal string")),
    }
}

fn int<T: FromStr>(v: &Val<'_>) -> Result<T, BadMessage> {
    match v {
        Val::Bare(s) => s.parse().map_err(|_| BadMessage("not an integer")),
        Val::Str(_) => Err(BadMessage("expected an integer")),
    }
}

/// Calls `f` with each key and value of a flat JSON object, in order.
fn scan_object<'a>(
    payload: &'a [u8],
    mut f: impl FnMut(&'a str, Val<'a>) -> Result<(), BadMessage>,
) -> Result<(), BadMessage> {
    let mut s = Scan { b: payload, i: 0 };
    if !s.eat(b'{') {
        return Err(BadMessage("not an object"));
    }
    if !s.eat(b'}') {
        loop {
            let key = s.string()?;
            if !s.eat(b':') {
                return Err(BadMessage("expected ':'"));
            }
            f(key, s.value()?)?;
            if s.eat(b',') {
                continue;
            }
            if s.eat(b'}') {
                break;
            }
            return Err(BadMessage("expected ',' or '}'"));
        }
    }
    s.ws();
    if s.i != payload.len() {
        return Err(BadMessage("trailing bytes"));
    }
    Ok(())
}

fn string<'a>(v: &Val<'a>, what: &'static str) -> Result<&'a str, BadMessage> {
    match v {
        Val::Str(x) => Ok(x),
        Val::Bare(_) => Err(BadMessage(what)),
    }
}

/// Reads a quote published by an ingest node (the `quote` message of
/// the client protocol), with a consolidated quote's `bid_venue` and
/// `ask_venue` names and `crossed`.
///
/// Hot path (an edge applies every quote it follows): the exact layout
/// `encode_quote` writes is read in one pass ([`decode_quote_fast`]);
/// anything else goes through the general reader, which owns every error.
pub fn decode_quote(payload: &[u8]) -> Result<WireQuote<'_>, BadMessage> {
    match decode_quote_fast(payload) {
        Some(w) => Ok(w),
        None => decode_quote_general(payload),
    }
}

/// The canonical quote, in `encode_quote`'s order and nothing else: no
/// whitespace, no escapes, the fields it writes where it writes them.
/// `None` for anything else; where it answers, it answers as
/// [`decode_quote_general`] does (a property test holds them to it).
pub fn decode_quote_fast(payload: &[u8]) -> Option<WireQuote<'_>> {
    let mut c = Fast { b: payload, i: 0 };
    c.lit(br#"{"type":"quote","symbol":""#).then_some(())?;
    let symbol = c.str_body()?;
    c.lit(br#","seq":"#).then_some(())?;
    let seq = c.uint().filter(|&n| n > 0)?;
    let mut q = Quote::default();
    let (mut bid_venue, mut ask_venue) = (None, None);
    if c.lit(br#","bid":"#) {
        q.bid = c.dec()?;
        q.present |= field::BID;
    }
    if c.lit(br#","bid_size":"#) {
        q.bid_size = c.dec()?;
        q.present |= field::BID_SIZE;
    }
    if c.lit(br#","bid_venue":""#) {
        bid_venue = Some(c.str_body()?);
    }
    if c.lit(br#","ask":"#) {
        q.ask = c.dec()?;
        q.present |= field::ASK;
    }
    if c.lit(br#","ask_size":"#) {
        q.ask_size = c.dec()?;
        q.present |= field::ASK_SIZE;
    }
    if c.lit(br#","ask_venue":""#) {
        ask_venue = Some(c.str_body()?);
    }
    q.crossed = c.lit(br#","crossed":true"#);
    if c.lit(br#","last":"#) {
        q.last = c.dec()?;
        q.present |= field::LAST;
    }
    if c.lit(br#","last_size":"#) {
        q.last_size = c.dec()?;
        q.present |= field::LAST_SIZE;
    }
    if c.lit(br#","ts":"#) {
        q.ts = c.int()?;
        q.present |= field::TS;
    }
    c.lit(br#","gw_ts":"#).then_some(())?;
    q.gw_ts = c.int()?;
    c.lit(br#","snapshot":true"#);
    (c.lit(b"}") && c.i == payload.len()).then_some(WireQuote {
        symbol,
        seq,
        quote: q,
        bid_venue,
        ask_venue,
    })
}

/// The fast path's cursor.
struct Fast<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Fast<'a> {
    #[inline(always)]
    fn lit(&mut self, s: &[u8]) -> bool {
        let hit = self.b.get(self.i..).is_some_and(|r| r.starts_with(s));
        if hit {
            self.i += s.len();
        }
        hit
    }

    /// A string's body up to its closing quote (which it takes): printable
    /// ASCII other than `\`.
    #[inline(always)]
    fn str_body(&mut self) -> Option<&'a str> {
        let rest = self.b.get(self.i..)?;
        let n = rest.iter().position(|&c| c == b'"')?;
        let body = &rest[..n];
        if !body
            .iter()
            .all(|&c| (0x20..0x7f).contains(&c) && c != b'\\')
        {
            return None;
        }
        self.i += n + 1;
        // ASCII, so UTF-8.
        std::str::from_utf8(body).ok()
    }

    /// A decimal string (the opening quote taken already by the key).
    #[inline(always)]
    fn dec(&mut self) -> Option<Decimal> {
        let rest = self.b.get(self.i..)?.strip_prefix(b"\"")?;
        let n = rest.iter().position(|&c| c == b'"')?;
        let d = crate::feed::wire::fast_decimal(&rest[..n])?;
        self.i += n + 2;
        Some(d)
    }

    /// Digits as a `u64`, at least one, no overflow.
    #[inline(always)]
    fn uint(&mut self) -> Option<u64> {
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(&c) = self.b.get(self.i) {
            let d = c.wrapping_sub(b'0');
            if d >= 10 {
                break;
            }
            v = v.checked_mul(10)?.checked_add(u64::from(d))?;
            self.i += 1;
        }
        // No leading zeros (`"seq":007` is not what the encoder writes).
        let n = self.i - start;
        (n > 0 && !(n > 1 && self.b[start] == b'0')).then_some(v)
    }

    #[inline(always)]
    fn int(&mut self) -> Option<i64> {
        let neg = self.lit(b"-");
        let v = i64::try_from(self.uint()?).ok()?;
        Some(if neg { -v } else { v })
    }
}

/// [`decode_quote`] for any layout: the general reader.
pub fn decode_quote_general(payload: &[u8]) -> Result<WireQuote<'_>, BadMessage> {
    let mut symbol = None;
    let mut seq = None;
    let mut q = Quote::default();
    let (mut bid_venue, mut ask_venue) = (None, None);
    let mut is_quote = false;
    let mut have_gw_ts = false;
    scan_object(payload, |key, v| {
        match key {
            "type" => is_quote = matches!(v, Val::Str("quote")),
            "symbol" => symbol = Some(string(&v, "symbol must be a string")?),
            "seq" => seq = Some(int::<u64>(&v)?),
            "bid" => {
                q.bid = dec(&v)?;
                q.present |= field::BID;
            }
            "bid_size" => {
                q.bid_size = dec(&v)?;
                q.present |= field::BID_SIZE;
            }
            "ask" => {
                q.ask = dec(&v)?;
                q.present |= field::ASK;
            }
            "ask_size" => {
                q.ask_size = dec(&v)?;
                q.present |= field::ASK_SIZE;
            }
            "last" => {
                q.last = dec(&v)?;
                q.present |= field::LAST;
            }
            "last_size" => {
                q.last_size = dec(&v)?;
                q.present |= field::LAST_SIZE;
            }
            "ts" => {
                q.ts = int(&v)?;
                q.present |= field::TS;
            }
            "gw_ts" => {
                q.gw_ts = int(&v)?;
                have_gw_ts = true;
            }
            "crossed" => q.crossed = matches!(v, Val::Bare("true")),
            "bid_venue" => bid_venue = Some(string(&v, "bid_venue must be a string")?),
            "ask_venue" => ask_venue = Some(string(&v, "ask_venue must be a string")?),
            // snapshot, and fields a later version adds.
            _ => {}
        }
        Ok(())
    })?;
    if !is_quote {
        return Err(BadMessage("type is not \"quote\""));
    }
    let symbol = symbol.ok_or(BadMessage("no symbol"))?;
    let seq = seq.filter(|&n| n > 0).ok_or(BadMessage("no seq"))?;
    if !have_gw_ts {
        return Err(BadMessage("no gw_ts"));
    }
    Ok(WireQuote {
        symbol,
        seq,
        quote: q,
        bid_venue,
        ask_venue,
    })
}

/// A trade read back from its payload; `seq` is the ingest's number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireTrade<'a> {
    pub symbol: &'a str,
    pub seq: u64,
    pub trade: Trade,
}

/// Reads a trade published by an ingest node (the `trade` message of the
/// client protocol).
pub fn decode_trade(payload: &[u8]) -> Result<WireTrade<'_>, BadMessage> {
    let (mut symbol, mut seq, mut price, mut size, mut ts, mut gw_ts) =
        (None, None, None, None, None, None);
    let (mut side, mut trade_id, mut is_trade) = (None, None, false);
    scan_object(payload, |key, v| {
        match key {
            "type" => is_trade = matches!(v, Val::Str("trade")),
            "symbol" => symbol = Some(string(&v, "symbol must be a string")?),
            "seq" => seq = Some(int::<u64>(&v)?),
            "price" => price = Some(dec(&v)?),
            "size" => size = Some(dec(&v)?),
            "side" => {
                side = Some(
                    Side::parse(string(&v, "side must be a string")?)
                        .ok_or(BadMessage("side is not buy or sell"))?,
                )
            }
            "trade_id" => trade_id = Some(int::<u64>(&v)?),
            "ts" => ts = Some(int::<i64>(&v)?),
            "gw_ts" => gw_ts = Some(int::<i64>(&v)?),
            _ => {}
        }
        Ok(())
    })?;
    if !is_trade {
        return Err(BadMessage("type is not \"trade\""));
    }
    let missing = BadMessage("a trade needs symbol, seq, price, size, ts, gw_ts");
    let seq = seq.filter(|&n| n > 0).ok_or(missing.clone())?;
    Ok(WireTrade {
        symbol: symbol.ok_or(missing.clone())?,
        seq,
        trade: Trade {
            price: price.ok_or(missing.clone())?,
            size: size.ok_or(missing.clone())?,
            side,
            trade_id,
            ts: ts.ok_or(missing.clone())?,
            gw_ts: gw_ts.ok_or(missing)?,
        },
    })
}
