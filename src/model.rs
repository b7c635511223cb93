//! The normalized data model: interned symbols and the `Copy` quote that
//! travels from a feed through a slot to the wire.

use crate::sync::{Mutex, RwLock};
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Dense id of an interned symbol. The hot path indexes arrays with it and
/// never hashes a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SymbolId(pub u32);

impl SymbolId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The symbol universe: every feed's symbols, interned at start-up, then
/// room for symbols a feed adds while running (an HTTP ingest feed whose
/// `symbols` hold a pattern). Ids are dense and never reused, and every
/// per-symbol table (slots, fan-out, encode cache) is sized for the
/// capacity at start, so adding a symbol allocates nothing there. Names
/// are validated so they never need JSON escaping.
#[derive(Debug)]
pub struct Symbols {
    /// By id; `len` of them set, the rest reserved.
    names: Vec<OnceLock<Arc<str>>>,
    len: AtomicUsize,
    ids: RwLock<HashMap<Arc<str>, SymbolId>>,
    /// Serializes [`Symbols::add`].
    adding: Mutex<()>,
    /// The feeds a consolidated quote's `bid_venue`/`ask_venue` name, as
    /// JSON strings: `venues[v - 1]` for venue index `v`. Set at start
    /// from the feeds ([`Symbols::set_venues`]); an edge adds the names
    /// its ingests' quotes carry ([`Symbols::venue`]).
    venues: Vec<OnceLock<Box<str>>>,
}

/// Venue indexes are a `u8`, 0 meaning none.
const MAX_VENUES: usize = u8::MAX as usize;

impl Default for Symbols {
    fn default() -> Self {
        Symbols {
            names: Vec::new(),
            len: AtomicUsize::new(0),
            ids: RwLock::new(HashMap::new()),
            adding: Mutex::new(()),
            venues: no_venues(),
        }
    }
}

/// `name` as a JSON string.
fn json_string(name: &str) -> Box<str> {
    serde_json::to_string(name)
        .unwrap_or_else(|_| "\"?\"".to_string())
        .into_boxed_str()
}

/// Every venue index unnamed.
fn no_venues() -> Vec<OnceLock<Box<str>>> {
    (0..MAX_VENUES).map(|_| OnceLock::new()).collect()
}

/// Longest symbol name accepted anywhere.
pub const MAX_SYMBOL_LEN: usize = 32;

/// Whether `name` is a valid symbol: 1..=32 chars of `A-Z a-z 0-9 . - _ / :`.
pub fn valid_symbol(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SYMBOL_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/' | b':'))
}

/// A name that is not a valid symbol (see [`valid_symbol`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid symbol {0:?}: 1..={max} characters of A-Z a-z 0-9 . - _ / :", max = MAX_SYMBOL_LEN)]
pub struct InvalidSymbol(pub String);

/// Why [`Symbols::add`] refused a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddError {
    #[error(transparent)]
    Invalid(#[from] InvalidSymbol),
    #[error("the gateway holds its most symbols ({0}); no room for more until it restarts")]
    Full(usize),
}

impl Symbols {
    pub fn new() -> Self {
        Self::default()
    }

    /// Interns `name` at start-up, returning its id (existing or new).
    pub fn intern(&mut self, name: &str) -> Result<SymbolId, InvalidSymbol> {
        if let Some(id) = self.get(name) {
            return Ok(id);
        }
        if !valid_symbol(name) {
            return Err(InvalidSymbol(name.to_string()));
        }
        let n = *self.len.get_mut();
        let name: Arc<str> = Arc::from(name);
        if n == self.names.len() {
            self.names.push(OnceLock::new());
        }
        let _ = self.names[n].set(name.clone());
        let id = SymbolId(n as u32);
        self.ids.write().insert(name, id);
        *self.len.get_mut() = n + 1;
        Ok(id)
    }

    /// Makes room for `extra` symbols added while running ([`Symbols::add`]).
    pub fn reserve(&mut self, extra: usize) {
        self.names.extend((0..extra).map(|_| OnceLock::new()));
    }

    /// Adds `name` while running (or finds it), within the capacity
    /// reserved at start.
    pub fn add(&self, name: &str) -> Result<SymbolId, AddError> {
        if let Some(id) = self.get(name) {
            return Ok(id);
        }
        if !valid_symbol(name) {
            return Err(InvalidSymbol(name.to_string()).into());
        }
        let _one = self.adding.lock();
        if let Some(id) = self.get(name) {
            return Ok(id);
        }
        let n = self.len.load(Ordering::Acquire);
        let Some(cell) = self.names.get(n) else {
            return Err(AddError::Full(self.names.len()));
        };
        let name: Arc<str> = Arc::from(name);
        let _ = cell.set(name.clone());
        let id = SymbolId(n as u32);
        self.ids.write().insert(name, id);
        // Published last: whoever sees the new length finds the name.
        self.len.store(n + 1, Ordering::Release);
        Ok(id)
    }

    pub fn get(&self, name: &str) -> Option<SymbolId> {
        self.ids.read().get(name).copied()
    }

    /// The name of `id` (empty for an id never handed out).
    pub fn name(&self, id: SymbolId) -> &str {
        self.names
            .get(id.index())
            .and_then(|n| n.get())
            .map_or("", |n| n)
    }

    /// Symbols so far.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// The most symbols there can be: every per-symbol table's size.
    pub fn capacity(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets the names a quote's venue indexes stand for (the feeds, in
    /// `[[feeds]]` order: index `i + 1` is `names[i]`; past 255, none).
    pub fn set_venues<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        self.venues = no_venues();
        for (slot, n) in self.venues.iter().zip(names) {
            let _ = slot.set(json_string(n));
        }
    }

    /// The name of venue index `v` as a JSON string (quoted, escaped);
    /// `None` for 0 (no venue) or an index with no name.
    pub fn venue_json(&self, v: u8) -> Option<&str> {
        self.venues
            .get(usize::from(v).checked_sub(1)?)?
            .get()
            .map(|n| &**n)
    }

    /// The index of venue `name`, added if new (an edge learns the venues
    /// from its ingests' consolidated quotes); 0 (none) once 255 are taken.
    pub fn venue(&self, name: &str) -> u8 {
        // What `venue_json` holds for it: the name in quotes, unless it
        // needs escapes (then the escaped form).
        let plain = !name.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
        let escaped = (!plain).then(|| json_string(name));
        let find = || {
            self.venues
                .iter()
                .map_while(OnceLock::get)
                .position(|n| match &escaped {
                    None => n.len() == name.len() + 2 && &n[1..n.len() - 1] == name,
                    Some(e) => n == e,
                })
        };
        if let Some(i) = find() {
            return (i + 1) as u8;
        }
        let _one = self.adding.lock();
        if let Some(i) = find() {
            return (i + 1) as u8;
        }
        // Slots fill in order, and only here (under the lock) once set.
        match self.venues.iter().position(|slot| slot.get().is_none()) {
            Some(i) if self.venues[i].set(json_string(name)).is_ok() => (i + 1) as u8,
            _ => 0,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (SymbolId, &str)> {
        self.names[..self.len()]
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.get().map(|n| (SymbolId(i as u32), &**n)))
    }
}

/// One symbol pattern: an exact name, a trailing-`*` prefix, or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    All,
    Prefix(String),
    Exact(String),
}

impl Pattern {
    /// Parses `*`, `BTC-*` or `AAPL`; `None` for anything else (a `*`
    /// elsewhere than at the end, characters no symbol can have).
    pub fn parse(s: &str) -> Option<Pattern> {
        if s == "*" {
            return Some(Pattern::All);
        }
        let ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 32
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-_/:".contains(&b))
        };
        match s.strip_suffix('*') {
            Some(prefix) if ok(prefix) => Some(Pattern::Prefix(prefix.to_string())),
            Some(_) => None,
            None if ok(s) => Some(Pattern::Exact(s.to_string())),
            None => None,
        }
    }

    pub fn matches(&self, symbol: &str) -> bool {
        match self {
            Pattern::All => true,
            Pattern::Prefix(p) => symbol.starts_with(p.as_str()),
            Pattern::Exact(e) => symbol == e,
        }
    }
}

/// Which optional fields of a [`Quote`] the feed provided. Fields a feed does
/// not provide are omitted on the wire, never sent as zero.
pub mod field {
    pub const BID: u8 = 1;
    pub const BID_SIZE: u8 = 2;
    pub const ASK: u8 = 4;
    pub const ASK_SIZE: u8 = 8;
    pub const LAST: u8 = 16;
    pub const LAST_SIZE: u8 = 32;
    pub const TS: u8 = 64;
}

/// One top-of-book (plus last trade) observation. `Copy`, 120 bytes, exact
/// decimals: `Decimal` keeps the scale it was parsed with, so `"189.1200"`
/// prints back as `"189.1200"`. The consolidated quote's fields
/// (`bid_venue`, `ask_venue`, `crossed`) live in what was padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quote {
    pub bid: Decimal,
    pub bid_size: Decimal,
    pub ask: Decimal,
    pub ask_size: Decimal,
    pub last: Decimal,
    pub last_size: Decimal,
    /// Bit set of [`field`] constants.
    pub present: u8,
    /// Venue timestamp, ns since the Unix epoch (valid when `present & TS`).
    pub ts: i64,
    /// When the gateway accepted it, ns since the Unix epoch.
    pub gw_ts: i64,
    /// Consolidated quotes only: which feed the bid came from, as an index
    /// into the venue names ([`Symbols::venue_json`]); 0 for none.
    pub bid_venue: u8,
    /// Consolidated quotes only: which feed the ask came from; 0 for none.
    pub ask_venue: u8,
    /// Consolidated quotes only: the best bid is above the best ask (the
    /// venues cross each other).
    pub crossed: bool,
}

impl Quote {
    pub fn has(&self, f: u8) -> bool {
        self.present & f != 0
    }

    pub fn with_bid(mut self, price: Decimal, size: Decimal) -> Self {
        self.bid = price;
        self.bid_size = size;
        self.present |= field::BID | field::BID_SIZE;
        self
    }

    pub fn with_ask(mut self, price: Decimal, size: Decimal) -> Self {
        self.ask = price;
        self.ask_size = size;
        self.present |= field::ASK | field::ASK_SIZE;
        self
    }

    pub fn with_last(mut self, price: Decimal, size: Decimal) -> Self {
        self.last = price;
        self.last_size = size;
        self.present |= field::LAST | field::LAST_SIZE;
        self
    }

    pub fn with_ts(mut self, ts: i64) -> Self {
        self.ts = ts;
        self.present |= field::TS;
        self
    }
}

/// Feed state of a symbol as subscribers see it in `status` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    Live = 0,
    Stale = 1,
}

impl Status {
    pub fn from_u8(v: u8) -> Status {
        if v == 1 {
            Status::Stale
        } else {
            Status::Live
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Live => "live",
            Status::Stale => "stale",
        }
    }
}

/// Wall-clock now in ns since the Unix epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_validation() {
        assert!(valid_symbol("AAPL"));
        assert!(valid_symbol("BTC-USD"));
        assert!(valid_symbol("ES.Z26"));
        assert!(!valid_symbol(""));
        assert!(!valid_symbol("A\"B"));
        assert!(!valid_symbol("A B"));
        assert!(!valid_symbol(&"X".repeat(33)));
    }

    #[test]
    fn symbols_added_while_running_stay_within_the_room_reserved() {
        let mut s = Symbols::new();
        let a = s.intern("AAPL").unwrap();
        s.reserve(2);
        assert_eq!((s.len(), s.capacity()), (1, 3));
        let b = s.add("NEW-B").unwrap();
        assert_eq!(s.add("NEW-B"), Ok(b), "adding twice finds it");
        assert_eq!(s.add("AAPL"), Ok(a));
        assert!(matches!(s.add("bad name"), Err(AddError::Invalid(_))));
        let c = s.add("NEW-C").unwrap();
        assert_eq!(s.add("NEW-D"), Err(AddError::Full(3)));
        assert_eq!(
            (s.name(b), s.name(c), s.get("NEW-C")),
            ("NEW-B", "NEW-C", Some(c))
        );
        let names: Vec<&str> = s.iter().map(|(_, n)| n).collect();
        assert_eq!(names, ["AAPL", "NEW-B", "NEW-C"]);
        assert_eq!(s.name(SymbolId(7)), "", "an id never handed out");
    }

    #[test]
    fn quote_stays_120_bytes() {
        assert_eq!(std::mem::size_of::<Quote>(), 120);
    }

    #[test]
    fn venue_names_are_json_strings() {
        let mut s = Symbols::new();
        s.set_venues(["coinbase", "a\"b"]);
        assert_eq!(s.venue_json(0), None);
        assert_eq!(s.venue_json(1), Some("\"coinbase\""));
        assert_eq!(s.venue_json(2), Some(r#""a\"b""#));
        assert_eq!(s.venue_json(3), None);
        // An edge learns venues from quotes: known ones keep their index.
        assert_eq!(s.venue("coinbase"), 1);
        assert_eq!(s.venue("a\"b"), 2);
        assert_eq!(s.venue("kraken"), 3);
        assert_eq!(s.venue("kraken"), 3);
        assert_eq!(s.venue_json(3), Some("\"kraken\""));
        let t = Symbols::new();
        for i in 0..255 {
            assert_eq!(usize::from(t.venue(&format!("v{i}"))), i + 1);
        }
        assert_eq!(t.venue("one-too-many"), 0, "past 255: no venue");
        assert_eq!(t.venue("v254"), 255);
    }

    #[test]
    fn intern_is_idempotent() {
        let mut s = Symbols::new();
        let a = s.intern("AAPL").unwrap();
        let b = s.intern("MSFT").unwrap();
        assert_ne!(a, b);
        assert_eq!(s.intern("AAPL").unwrap(), a);
        assert_eq!(s.name(b), "MSFT");
        assert_eq!(s.get("NOPE"), None);
        assert!(s.intern("bad name").is_err());
    }
}
