//! Trades: events, not state. A quote is the latest value and may be
//! conflated; every trade matters, in order.
//!
//! Each symbol that has traded owns one ring of its recent trades, written
//! by the normalizer and read by every session that subscribed with
//! `"trades": true`. A session keeps only a cursor per symbol (the seq of
//! the last trade it was given), so 1,000 subscribers of a symbol cost one
//! copy of each trade, not 1,000. A session's "buffer" is the distance
//! between its cursor and the ring's head: when it falls more than
//! `session.max_pending_trades` behind, the oldest of its pending trades
//! are dropped for it, and it is told how many (`trades_dropped`) before
//! its next trade. The ring holds at least that many, so nothing a session
//! is still owed is overwritten.
//!
//! Every entry is a seqlock over atomic words, as a slot is: writers never
//! wait for readers, readers never block writers, no `unsafe`. A trade's
//! `seq` is its number in its symbol's ring (1 for the first): gapless, so
//! a client can check that it missed nothing.

use crate::model::SymbolId;
use rust_decimal::Decimal;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

/// The aggressor side, when the venue says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }

    /// `"buy"` / `"sell"` (any case, `b`/`s` too), else `None`.
    pub fn parse(s: &str) -> Option<Side> {
        match s.to_ascii_lowercase().as_str() {
            "buy" | "b" | "bid" => Some(Side::Buy),
            "sell" | "s" | "ask" | "offer" => Some(Side::Sell),
            _ => None,
        }
    }
}

/// What a venue says about a trade beyond its price and size (which travel
/// as the update's `last`/`last_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TradeInfo {
    pub side: Option<Side>,
    /// The venue's trade number, when it gives one.
    pub trade_id: Option<u64>,
}

/// One trade, as delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trade {
    pub price: Decimal,
    pub size: Decimal,
    pub side: Option<Side>,
    pub trade_id: Option<u64>,
    /// Venue time of the trade, ns since the epoch; the gateway's time
    /// when the venue gave none.
    pub ts: i64,
    /// When the gateway accepted it, ns since the epoch.
    pub gw_ts: i64,
}

const WORDS: usize = 8;
const HAS_ID: u64 = 1;
const BUY: u64 = 2;
const SELL: u64 = 4;

fn encode(t: &Trade) -> [u64; WORDS] {
    let p = t.price.serialize();
    let s = t.size.serialize();
    let w = |b: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        u64::from_le_bytes(a)
    };
    let mut meta = 0;
    if t.trade_id.is_some() {
        meta |= HAS_ID;
    }
    match t.side {
        Some(Side::Buy) => meta |= BUY,
        Some(Side::Sell) => meta |= SELL,
        None => {}
    }
    [
        w(&p[..8]),
        w(&p[8..]),
        w(&s[..8]),
        w(&s[8..]),
        t.ts as u64,
        t.gw_ts as u64,
        t.trade_id.unwrap_or(0),
        meta,
    ]
}

fn decode(w: &[u64; WORDS]) -> Trade {
    let dec = |lo: u64, hi: u64| {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&lo.to_le_bytes());
        b[8..].copy_from_slice(&hi.to_le_bytes());
        Decimal::deserialize(b)
    };
    let meta = w[7];
    Trade {
        price: dec(w[0], w[1]),
        size: dec(w[2], w[3]),
        ts: w[4] as i64,
        gw_ts: w[5] as i64,
        trade_id: (meta & HAS_ID != 0).then_some(w[6]),
        side: if meta & BUY != 0 {
            Some(Side::Buy)
        } else if meta & SELL != 0 {
            Some(Side::Sell)
        } else {
            None
        },
    }
}

/// One ring entry: `lock` is `2 * seq` of the trade it holds once written,
/// odd while a write is in progress.
#[derive(Default)]
struct Entry {
    lock: AtomicU64,
    data: [AtomicU64; WORDS],
}

/// What reading a trade by its seq found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    Trade(Trade),
    /// Overwritten by a later trade: that one is gone for this reader.
    Gone,
    /// Claimed by a writer that has not finished: come back later (its
    /// writer wakes the subscribers when it has).
    NotYet,
}

/// One symbol's recent trades.
struct Ring {
    /// Seqs handed out: the newest trade's seq (written or in progress).
    claimed: AtomicU64,
    entries: Box<[Entry]>,
    mask: u64,
}

impl Ring {
    fn new(capacity: usize) -> Self {
        Ring {
            claimed: AtomicU64::new(0),
            entries: (0..capacity).map(|_| Entry::default()).collect(),
            mask: capacity as u64 - 1,
        }
    }

    fn push(&self, t: &Trade) -> u64 {
        let seq = self.claimed.fetch_add(1, Ordering::AcqRel) + 1;
        let e = &self.entries[(seq & self.mask) as usize];
        e.lock.store(2 * seq - 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for (a, w) in e.data.iter().zip(encode(t).iter()) {
            a.store(*w, Ordering::Relaxed);
        }
        e.lock.store(2 * seq, Ordering::Release);
        seq
    }

    /// Gives up the next `n` seqs: readers find them gone (and count
    /// them dropped). For a writer that knows trades were lost upstream
    /// (an edge that missed some on NATS); one writer per ring then.
    fn skip(&self, n: u64) {
        let from = self.claimed.load(Ordering::Acquire) + 1;
        let to = from + n;
        // Only the entries still in the ring matter: older seqs are gone
        // by their distance from the head anyway.
        let cap = self.entries.len() as u64;
        for seq in to.saturating_sub(cap).max(from)..to {
            // Above `2 * seq` and odd: gone for a reader of `seq`, and not
            // a finished write of any seq.
            self.entries[(seq & self.mask) as usize]
                .lock
                .store(2 * seq + 1, Ordering::Release);
        }
        self.claimed.store(to - 1, Ordering::Release);
    }

    fn read(&self, seq: u64) -> Read {
        let e = &self.entries[(seq & self.mask) as usize];
        loop {
            let l1 = e.lock.load(Ordering::Acquire);
            if l1 > 2 * seq {
                return Read::Gone;
            }
            if l1 != 2 * seq {
                return Read::NotYet;
            }
            let mut w = [0u64; WORDS];
            for (o, a) in w.iter_mut().zip(e.data.iter()) {
                *o = a.load(Ordering::Relaxed);
            }
            fence(Ordering::Acquire);
            if e.lock.load(Ordering::Relaxed) == l1 {
                return Read::Trade(decode(&w));
            }
        }
    }
}

/// Every symbol's trade ring, each allocated at its symbol's first trade
/// (a symbol that never trades costs one pointer).
pub struct TradeTable {
    rings: Box<[OnceLock<Ring>]>,
    /// Per symbol: subscriptions that take its trades. A trade nobody
    /// takes is not stored (and a symbol nobody ever took trades of has
    /// no ring): a feed's trades cost nothing until someone asks.
    listeners: Box<[AtomicU32]>,
    /// Bumped by every [`TradeTable::listen`].
    listen_changes: AtomicU64,
    /// Ring size: `keep` rounded up to a power of two.
    capacity: usize,
    /// How far behind the head a session may fall before its oldest
    /// pending trades are dropped (`session.max_pending_trades`).
    keep: u64,
}

/// Largest `session.max_pending_trades`.
pub const MAX_KEEP: usize = 65_536;

impl TradeTable {
    /// Trades for `nsymbols` symbols, each session owed at most `keep`.
    pub fn new(nsymbols: usize, keep: usize) -> Self {
        let keep = keep.clamp(1, MAX_KEEP);
        TradeTable {
            rings: (0..nsymbols).map(|_| OnceLock::new()).collect(),
            listeners: (0..nsymbols).map(|_| AtomicU32::new(0)).collect(),
            listen_changes: AtomicU64::new(0),
            capacity: keep.next_power_of_two().max(2),
            keep: keep as u64,
        }
    }

    /// Appends a trade to `sym`'s ring and returns its seq; `None` (not
    /// stored) while no subscription takes the symbol's trades. Call
    /// before the write that wakes the symbol's subscribers, so they find
    /// it.
    pub fn push(&self, sym: SymbolId, t: &Trade) -> Option<u64> {
        let i = sym.index();
        if self.listeners.get(i)?.load(Ordering::Acquire) == 0 {
            return None;
        }
        Some(
            self.rings[i]
                .get_or_init(|| Ring::new(self.capacity))
                .push(t),
        )
    }

    /// Marks the next `n` trades of `sym` as lost (see `Ring::skip`);
    /// nothing while no subscription takes them.
    pub fn skip(&self, sym: SymbolId, n: u64) {
        let i = sym.index();
        if n == 0
            || self
                .listeners
                .get(i)
                .is_none_or(|l| l.load(Ordering::Acquire) == 0)
        {
            return;
        }
        self.rings[i]
            .get_or_init(|| Ring::new(self.capacity))
            .skip(n);
    }

    /// Whether some subscription takes `sym`'s trades.
    /// How many times [`TradeTable::listen`] was called (see
    /// `SlotTable::interest_generation`).
    pub fn listen_changes(&self) -> u64 {
        self.listen_changes.load(Ordering::Acquire)
    }

    pub fn listening(&self, sym: SymbolId) -> bool {
        self.listeners
            .get(sym.index())
            .is_some_and(|l| l.load(Ordering::Acquire) > 0)
    }

    /// A subscription starts (`true`) or stops taking `sym`'s trades.
    /// Start before reading the head it starts from: a trade that does not
    /// see the listener was before the subscription.
    pub fn listen(&self, sym: SymbolId, on: bool) {
        if let Some(n) = self.listeners.get(sym.index()) {
            if on {
                n.fetch_add(1, Ordering::AcqRel);
            } else {
                // Never below zero, whatever a caller gets wrong.
                let _ = n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1));
            }
            // After the change: whoever sees the new count sees it.
            self.listen_changes.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The newest trade's seq (0: none yet).
    pub fn head(&self, sym: SymbolId) -> u64 {
        self.rings[sym.index()]
            .get()
            .map_or(0, |r| r.claimed.load(Ordering::Acquire))
    }

    /// The trade with `seq` of `sym`.
    pub fn read(&self, sym: SymbolId, seq: u64) -> Read {
        match self.rings[sym.index()].get() {
            Some(r) if seq > 0 => r.read(seq),
            _ => Read::NotYet,
        }
    }

    /// See [`TradeTable::new`].
    pub fn keep(&self) -> u64 {
        self.keep
    }
}

/// A subscription's trade cursor in 6 bytes (it lives in the 40-byte
/// per-symbol subscription): the seq of the last trade given to the
/// client, or off. 48 bits of trades per symbol is 8,900 years at a
/// million a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor([u16; 3]);

impl Default for Cursor {
    fn default() -> Self {
        Cursor::OFF
    }
}

impl Cursor {
    /// Trades not asked for.
    pub const OFF: Cursor = Cursor([u16::MAX; 3]);

    /// Trades asked for, the last one given being `seq`.
    pub fn at(seq: u64) -> Cursor {
        let s = seq.min((1 << 48) - 2);
        Cursor([s as u16, (s >> 16) as u16, (s >> 32) as u16])
    }

    pub fn get(self) -> Option<u64> {
        (self != Cursor::OFF)
            .then(|| u64::from(self.0[0]) | u64::from(self.0[1]) << 16 | u64::from(self.0[2]) << 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use std::sync::Arc;

    fn t(n: i64) -> Trade {
        Trade {
            price: Decimal::new(n, 2),
            size: Decimal::from_str("0.00100000").unwrap(),
            side: if n % 2 == 0 { Some(Side::Buy) } else { None },
            trade_id: (n % 3 != 0).then_some(n as u64 * 7),
            ts: n,
            gw_ts: n + 1,
        }
    }

    #[test]
    fn cursor_round_trips_and_off_is_distinct() {
        for s in [0, 1, 65_535, 65_536, 1 << 40, (1 << 48) - 2] {
            assert_eq!(Cursor::at(s).get(), Some(s));
        }
        assert_eq!(Cursor::OFF.get(), None);
        assert_eq!(Cursor::at(u64::MAX).get(), Some((1 << 48) - 2));
        assert_eq!(std::mem::size_of::<Cursor>(), 6);
    }

    #[test]
    fn trades_read_back_exactly_then_are_gone_once_overwritten() {
        let table = TradeTable::new(3, 5);
        let sym = SymbolId(1);
        assert_eq!(table.push(sym, &t(1)), None, "nobody listens: not stored");
        assert_eq!(table.head(sym), 0);
        table.listen(sym, true);
        assert_eq!(table.read(sym, 1), Read::NotYet);
        for n in 1..=8 {
            assert_eq!(table.push(sym, &t(n)), Some(n as u64));
        }
        assert_eq!(table.head(sym), 8);
        assert_eq!(table.head(SymbolId(0)), 0, "other symbols untouched");
        // Capacity 8 (5 rounded up): all eight are there, byte-exact.
        for n in 1..=8 {
            let Read::Trade(got) = table.read(sym, n as u64) else {
                panic!("trade {n} missing");
            };
            assert_eq!(got, t(n));
            assert_eq!(got.size.to_string(), "0.00100000");
        }
        assert_eq!(table.read(sym, 9), Read::NotYet);
        table.push(sym, &t(9));
        assert_eq!(table.read(sym, 1), Read::Gone);
        assert_eq!(table.read(sym, 9), Read::Trade(t(9)));
        table.listen(sym, false);
        table.listen(sym, false);
        assert_eq!(table.push(sym, &t(10)), None, "the last listener left");
        table.listen(sym, true);
        assert_eq!(table.push(sym, &t(10)), Some(10), "numbering goes on");
    }

    #[test]
    fn skipped_trades_read_as_gone_and_numbering_goes_on() {
        let table = TradeTable::new(1, 4);
        let sym = SymbolId(0);
        table.skip(sym, 3);
        assert_eq!(table.head(sym), 0, "nobody listens: nothing skipped");
        table.listen(sym, true);
        assert!(table.listening(sym));
        table.push(sym, &t(1));
        table.skip(sym, 2);
        assert_eq!(table.head(sym), 3);
        assert_eq!(table.read(sym, 1), Read::Trade(t(1)));
        assert_eq!(table.read(sym, 2), Read::Gone);
        assert_eq!(table.read(sym, 3), Read::Gone);
        assert_eq!(table.push(sym, &t(4)), Some(4));
        assert_eq!(table.read(sym, 4), Read::Trade(t(4)));
        // More than the ring holds: the head moves past all of them.
        table.skip(sym, 100);
        assert_eq!(table.head(sym), 104);
        assert_eq!(table.read(sym, 104), Read::Gone);
        assert_eq!(table.read(sym, 4), Read::Gone);
        assert_eq!(table.push(sym, &t(5)), Some(105));
        assert_eq!(table.read(sym, 105), Read::Trade(t(5)));
    }

    /// Two writers and a reader that follows the head: every trade the
    /// reader takes is whole (its fields derive from one number) and the
    /// seqs it takes only go up.
    #[test]
    fn racing_writers_never_tear_a_trade() {
        let table = Arc::new(TradeTable::new(1, 1024));
        let sym = SymbolId(0);
        table.listen(sym, true);
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let table = table.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000i64 {
                        let n = w * 1_000_000 + i;
                        table.push(
                            sym,
                            &Trade {
                                price: Decimal::new(n, 2),
                                size: Decimal::new(n, 4),
                                side: None,
                                trade_id: Some(n as u64),
                                ts: n,
                                gw_ts: n,
                            },
                        );
                    }
                })
            })
            .collect();
        let mut next = 1;
        let mut seen = 0;
        while next <= 40_000 {
            if table.head(sym) < next {
                std::thread::yield_now();
                continue;
            }
            match table.read(sym, next) {
                Read::Trade(tr) => {
                    assert_eq!(tr.price, Decimal::new(tr.ts, 2));
                    assert_eq!(tr.size, Decimal::new(tr.ts, 4));
                    assert_eq!(tr.trade_id, Some(tr.ts as u64));
                    seen += 1;
                    next += 1;
                }
                Read::Gone => next += 1,
                Read::NotYet => std::thread::yield_now(),
            }
        }
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(table.head(sym), 40_000);
        assert!(seen > 0);
    }
}
