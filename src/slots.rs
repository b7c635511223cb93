//! Per-symbol latest-value slots.
//!
//! A slot is a seqlock over plain atomic words, so it is lock-free for both
//! sides and needs no `unsafe`: writers never wait for readers, readers never
//! block writers and retry only if a write overlapped their read. The slot's
//! write count is the symbol's `seq` on the wire.
//!
//! A write also marks the symbol dirty in every fan-out shard that has a
//! subscriber for it (one atomic bit per shard) and wakes that shard once;
//! that dirty bit is where coalescing starts.

use crate::model::{Quote, Status, SymbolId};
use crate::trades::TradeTable;
use rust_decimal::Decimal;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use tokio::sync::Notify;

const WORDS: usize = 15;

/// One symbol's latest quote: 16 words, 128 bytes.
#[repr(align(64))]
pub struct Slot {
    /// Seqlock counter: odd while a write is in progress; `counter / 2` is
    /// the number of completed writes, the symbol's `seq`.
    lock: AtomicU64,
    data: [AtomicU64; WORDS],
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            lock: AtomicU64::new(0),
            data: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

fn dec_words(d: &Decimal) -> (u64, u64) {
    let b = d.serialize();
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&b[..8]);
    hi.copy_from_slice(&b[8..]);
    (u64::from_le_bytes(lo), u64::from_le_bytes(hi))
}

fn words_dec(lo: u64, hi: u64) -> Decimal {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&lo.to_le_bytes());
    b[8..].copy_from_slice(&hi.to_le_bytes());
    Decimal::deserialize(b)
}

fn encode(q: &Quote) -> [u64; WORDS] {
    let mut w = [0u64; WORDS];
    for (i, d) in [q.bid, q.bid_size, q.ask, q.ask_size, q.last, q.last_size]
        .iter()
        .enumerate()
    {
        let (lo, hi) = dec_words(d);
        w[2 * i] = lo;
        w[2 * i + 1] = hi;
    }
    // Word 12: `present` in bits 0..8; a consolidated quote's venue
    // indexes in bits 8..16 and 16..24, its crossed flag in bit 24.
    w[12] = q.present as u64
        | (q.bid_venue as u64) << 8
        | (q.ask_venue as u64) << 16
        | (q.crossed as u64) << 24;
    w[13] = q.ts as u64;
    w[14] = q.gw_ts as u64;
    w
}

fn decode(w: &[u64; WORDS]) -> Quote {
    Quote {
        bid: words_dec(w[0], w[1]),
        bid_size: words_dec(w[2], w[3]),
        ask: words_dec(w[4], w[5]),
        ask_size: words_dec(w[6], w[7]),
        last: words_dec(w[8], w[9]),
        last_size: words_dec(w[10], w[11]),
        present: w[12] as u8,
        ts: w[13] as i64,
        gw_ts: w[14] as i64,
        bid_venue: (w[12] >> 8) as u8,
        ask_venue: (w[12] >> 16) as u8,
        crossed: (w[12] >> 24) & 1 == 1,
    }
}

impl Slot {
    /// Stores `q` and returns its `seq` (1 for the first write). Several
    /// writers may race; they serialize on the lock word.
    pub fn write(&self, q: &Quote) -> u64 {
        let words = encode(q);
        // Never refused (`Err` cannot happen): the next seq is always new.
        let cur = self.lock_for_write(|_| false).unwrap_or_else(|c| c);
        self.finish_write(&words, cur + 2);
        (cur + 2) / 2
    }

    /// Stores `q` as the write numbered `seq` rather than the next one:
    /// for a value numbered elsewhere (an edge node keeps its ingest's
    /// seq, so a client sees the same seq on every node). Refused, with
    /// the slot's seq, unless `seq` is above it: a seq never goes back.
    pub fn write_at(&self, q: &Quote, seq: u64) -> Result<(), u64> {
        let words = encode(q);
        self.lock_for_write(|cur| seq <= cur / 2 || seq > u64::MAX / 2)
            .map_err(|cur| cur / 2)?;
        self.finish_write(&words, 2 * seq);
        Ok(())
    }

    /// Takes the seqlock for a write (odd while it lasts), waiting out a
    /// write in progress; returns the (even) word it found, or that word
    /// as the error when `refuse` says no to it.
    fn lock_for_write(&self, refuse: impl Fn(u64) -> bool) -> Result<u64, u64> {
        let mut cur = self.lock.load(Ordering::Relaxed);
        loop {
            if cur & 1 == 1 {
                std::hint::spin_loop();
                cur = self.lock.load(Ordering::Relaxed);
                continue;
            }
            if refuse(cur) {
                return Err(cur);
            }
            match self.lock.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(cur),
                Err(v) => cur = v,
            }
        }
    }

    /// Stores the words of a write begun by `lock_for_write` and releases
    /// the lock at `end` (twice the write's seq).
    fn finish_write(&self, words: &[u64; WORDS], end: u64) {
        fence(Ordering::Release);
        for (a, w) in self.data.iter().zip(words.iter()) {
            a.store(*w, Ordering::Relaxed);
        }
        self.lock.store(end, Ordering::Release);
    }

    /// The latest quote and its `seq`, or `None` before the first write.
    pub fn read(&self) -> Option<(Quote, u64)> {
        loop {
            let s1 = self.lock.load(Ordering::Acquire);
            if s1 == 0 {
                return None;
            }
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let mut w = [0u64; WORDS];
            for (o, a) in w.iter_mut().zip(self.data.iter()) {
                *o = a.load(Ordering::Relaxed);
            }
            fence(Ordering::Acquire);
            let s2 = self.lock.load(Ordering::Relaxed);
            if s1 == s2 {
                return Some((decode(&w), s1 / 2));
            }
        }
    }

    /// The symbol's `seq` (completed writes) without reading the quote.
    pub fn seq(&self) -> u64 {
        self.lock.load(Ordering::Acquire) / 2
    }

    /// The raw seqlock word: `2 * seq` when no write is in progress, odd
    /// while one is. Equal to `2 * s`, it proves the slot still holds the
    /// quote whose write returned `s`.
    pub fn version(&self) -> u64 {
        self.lock.load(Ordering::Acquire)
    }
}

/// A fan-out shard's inbox: which symbols went dirty since its last pass.
pub struct ShardSignal {
    dirty: Box<[AtomicU64]>,
    pending: AtomicBool,
    notify: Notify,
}

impl ShardSignal {
    fn new(nsymbols: usize) -> Self {
        ShardSignal {
            dirty: (0..nsymbols.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            pending: AtomicBool::new(false),
            notify: Notify::new(),
        }
    }

    fn mark(&self, sym: SymbolId) {
        self.mark_quiet(sym);
        self.wake();
    }

    /// Marks `sym` dirty without waking the shard (see
    /// [`SlotTable::publish_at_quiet`]).
    fn mark_quiet(&self, sym: SymbolId) {
        let i = sym.index();
        self.dirty[i / 64].fetch_or(1 << (i % 64), Ordering::AcqRel);
    }

    /// Wakes the shard for what is marked (once per pass).
    fn wake(&self) {
        if !self.pending.load(Ordering::Acquire) && !self.pending.swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    /// Waits until something is dirty.
    pub async fn wait(&self) {
        self.notify.notified().await;
    }

    /// Takes every dirty symbol since the last call, calling `f` on each.
    pub fn drain(&self, mut f: impl FnMut(SymbolId)) {
        self.pending.store(false, Ordering::Release);
        for (wi, word) in self.dirty.iter().enumerate() {
            if word.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let mut bits = word.swap(0, Ordering::AcqRel);
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                f(SymbolId((wi * 64 + b) as u32));
            }
        }
    }
}

/// Maximum number of fan-out shards (one bit each in a symbol's interest mask).
pub const MAX_SHARDS: usize = 64;

/// Symbols whose value is computed from other symbols' slots (the
/// consolidated quotes, `consolidated.rs`). Told of every change, in
/// the writer's own thread, right after it: no task of its own, no queue.
pub trait Derive: Send + Sync {
    /// `sym`'s slot was just written (`written`: the quote and the seq its
    /// write returned), or its status just changed (`written`: `None`).
    fn changed(&self, slots: &SlotTable, sym: SymbolId, written: Option<(&Quote, u64)>);
}

/// All slots plus the per-shard dirty signals.
pub struct SlotTable {
    slots: Box<[Slot]>,
    status: Box<[AtomicU8]>,
    /// Per symbol: bit `s` set when shard `s` has at least one subscriber.
    interest: Box<[AtomicU64]>,
    shards: Box<[ShardSignal]>,
    /// Each symbol's recent trades (see `trades.rs`).
    trades: TradeTable,
    /// Set once at start-up when some symbols are derived from others.
    derive: OnceLock<Box<dyn Derive>>,
    /// Every symbol written or whose status changed, for one reader that
    /// follows all of them (an ingest node's NATS publisher); made by the
    /// first call of [`SlotTable::tap`].
    tap: OnceLock<ShardSignal>,
    /// Bumped by every change of `interest` (see
    /// [`SlotTable::interest_generation`]).
    interest_changes: AtomicU64,
}

/// `session.max_pending_trades`' default.
pub const DEFAULT_PENDING_TRADES: usize = 1024;

impl SlotTable {
    pub fn new(nsymbols: usize, nshards: usize) -> Self {
        Self::with_trades(nsymbols, nshards, DEFAULT_PENDING_TRADES)
    }

    /// Slots whose subscribers may each be owed up to `pending_trades`
    /// trades per symbol.
    pub fn with_trades(nsymbols: usize, nshards: usize, pending_trades: usize) -> Self {
        let nshards = nshards.clamp(1, MAX_SHARDS);
        SlotTable {
            slots: (0..nsymbols).map(|_| Slot::default()).collect(),
            status: (0..nsymbols).map(|_| AtomicU8::new(0)).collect(),
            interest: (0..nsymbols).map(|_| AtomicU64::new(0)).collect(),
            shards: (0..nshards).map(|_| ShardSignal::new(nsymbols)).collect(),
            trades: TradeTable::new(nsymbols, pending_trades),
            derive: OnceLock::new(),
            tap: OnceLock::new(),
            interest_changes: AtomicU64::new(0),
        }
    }

    /// The dirty set of every symbol (see [`SlotTable::tap`]'s field): from
    /// the first call on, each write and status change marks its symbol.
    pub fn tap(&self) -> &ShardSignal {
        self.tap.get_or_init(|| ShardSignal::new(self.slots.len()))
    }

    /// A number that changes whenever a symbol's interest or a symbol's
    /// trade takers change: what follows interest (an edge's NATS
    /// subscriptions) looks again only when it moved.
    pub fn interest_generation(&self) -> u64 {
        self.interest_changes.load(Ordering::Acquire) + self.trades.listen_changes()
    }

    /// Whether some fan-out shard has a subscriber for `sym`.
    pub fn interested(&self, sym: SymbolId) -> bool {
        self.interest[sym.index()].load(Ordering::Acquire) != 0
    }

    /// Each symbol's recent trades.
    pub fn trades(&self) -> &TradeTable {
        &self.trades
    }

    /// Installs what derives symbols from others (once; `false` if one was
    /// already installed). Every later write and status change tells it.
    pub fn set_derive(&self, d: Box<dyn Derive>) -> bool {
        self.derive.set(d).is_ok()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn shard(&self, i: usize) -> &ShardSignal {
        &self.shards[i]
    }

    /// Writes `q` into the symbol's slot, marks it dirty for interested
    /// shards and returns its new `seq`.
    pub fn publish(&self, sym: SymbolId, q: &Quote) -> u64 {
        let seq = self.slots[sym.index()].write(q);
        self.notify(sym);
        if let Some(d) = self.derive.get() {
            d.changed(self, sym, Some((q, seq)));
        }
        seq
    }

    /// [`SlotTable::publish`] with the seq the value was given elsewhere
    /// (see [`Slot::write_at`]); a seq not above the symbol's is refused
    /// and changes nothing.
    pub fn publish_at(&self, sym: SymbolId, q: &Quote, seq: u64) -> Result<(), u64> {
        self.slots[sym.index()].write_at(q, seq)?;
        self.notify(sym);
        if let Some(d) = self.derive.get() {
            d.changed(self, sym, Some((q, seq)));
        }
        Ok(())
    }

    /// [`SlotTable::publish_at`] that marks the symbol dirty but wakes
    /// nobody yet: the shards to wake are added to `wake` (a bit per shard;
    /// bit 63 the tap), for [`SlotTable::wake`] once a batch of writes is
    /// done. An edge applies a burst from NATS this way, so the fan-out
    /// sees it whole, as it sees a feed's burst, instead of pass by pass.
    pub fn publish_at_quiet(
        &self,
        sym: SymbolId,
        q: &Quote,
        seq: u64,
        wake: &mut u128,
    ) -> Result<(), u64> {
        self.slots[sym.index()].write_at(q, seq)?;
        fence(Ordering::SeqCst);
        let mut mask = self.interest[sym.index()].load(Ordering::Relaxed);
        if let Some(t) = self.tap.get() {
            t.mark_quiet(sym);
            *wake |= 1 << 64;
        }
        *wake |= u128::from(mask);
        while mask != 0 {
            let s = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            self.shards[s].mark_quiet(sym);
        }
        if let Some(d) = self.derive.get() {
            d.changed(self, sym, Some((q, seq)));
        }
        Ok(())
    }

    /// Wakes the shards (and tap) in `wake` (see
    /// [`SlotTable::publish_at_quiet`]) and clears it.
    pub fn wake(&self, wake: &mut u128) {
        let mut mask = *wake as u64;
        while mask != 0 {
            let s = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            self.shards[s].wake();
        }
        if *wake >> 64 != 0 {
            if let Some(t) = self.tap.get() {
                t.wake();
            }
        }
        *wake = 0;
    }

    /// [`SlotTable::touch`] for a batch (see [`SlotTable::publish_at_quiet`]).
    pub fn touch_quiet(&self, sym: SymbolId, wake: &mut u128) {
        fence(Ordering::SeqCst);
        let mut mask = self.interest[sym.index()].load(Ordering::Relaxed);
        *wake |= u128::from(mask);
        while mask != 0 {
            let s = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            self.shards[s].mark_quiet(sym);
        }
    }

    /// Wakes `sym`'s subscribers without a write: its ring has new trades
    /// (an edge stores a trade apart from the quote it came with).
    pub fn touch(&self, sym: SymbolId) {
        self.notify(sym);
    }

    fn notify(&self, sym: SymbolId) {
        // Pairs with the fence in `set_interest`: either this load sees the
        // new subscriber's bit, or that subscriber's first scan sees this
        // write.
        fence(Ordering::SeqCst);
        let mut mask = self.interest[sym.index()].load(Ordering::Relaxed);
        if let Some(t) = self.tap.get() {
            t.mark(sym);
        }
        while mask != 0 {
            let s = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            self.shards[s].mark(sym);
        }
    }

    pub fn read(&self, sym: SymbolId) -> Option<(Quote, u64)> {
        self.slots[sym.index()].read()
    }

    pub fn seq(&self, sym: SymbolId) -> u64 {
        self.slots[sym.index()].seq()
    }

    /// See [`Slot::version`].
    pub fn version(&self, sym: SymbolId) -> u64 {
        self.slots[sym.index()].version()
    }

    pub fn status(&self, sym: SymbolId) -> Status {
        Status::from_u8(self.status[sym.index()].load(Ordering::Acquire))
    }

    /// Sets the feed status of a symbol; subscribers are woken on a change.
    /// Returns whether it changed.
    pub fn set_status(&self, sym: SymbolId, st: Status) -> bool {
        let old = self.status[sym.index()].swap(st as u8, Ordering::AcqRel);
        if old != st as u8 {
            self.notify(sym);
            if let Some(d) = self.derive.get() {
                d.changed(self, sym, None);
            }
            true
        } else {
            false
        }
    }

    /// Marks shard `shard` as interested (or not) in `sym`.
    pub fn set_interest(&self, sym: SymbolId, shard: usize, on: bool) {
        let bit = 1u64 << shard;
        if on {
            self.interest[sym.index()].fetch_or(bit, Ordering::SeqCst);
        } else {
            self.interest[sym.index()].fetch_and(!bit, Ordering::SeqCst);
        }
        // After the change: whoever sees the new number sees it.
        self.interest_changes.fetch_add(1, Ordering::AcqRel);
        fence(Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use std::sync::Arc;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn roundtrip_keeps_scale() {
        let s = Slot::default();
        assert!(s.read().is_none());
        let q = Quote::default()
            .with_bid(d("189.1200"), d("300"))
            .with_ask(d("189.14"), d("0.00000001"))
            .with_ts(1_763_900_000_123_456_789);
        assert_eq!(s.write(&q), 1);
        let (r, seq) = s.read().unwrap();
        assert_eq!(seq, 1);
        assert_eq!(r, q);
        assert_eq!(r.bid.to_string(), "189.1200");
        assert_eq!(r.ask_size.to_string(), "0.00000001");
        assert_eq!(s.write(&q), 2);
        assert_eq!(s.seq(), 2);
        // A consolidated quote's venues and crossed flag share `present`'s word.
        let c = Quote {
            bid_venue: 2,
            ask_venue: 255,
            crossed: true,
            ..q
        };
        s.write(&c);
        assert_eq!(s.read().unwrap().0, c);
    }

    /// A writer hammers one slot with quotes whose fields are all derived
    /// from one counter; readers on other threads check that every quote
    /// they see is internally consistent and that seq never goes backwards.
    #[test]
    fn readers_never_see_a_torn_quote() {
        let slot = Arc::new(Slot::default());
        let writes: u64 = 200_000;
        let stop = Arc::new(AtomicBool::new(false));
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut readers = Vec::new();
        for _ in 0..3 {
            let slot = slot.clone();
            let stop = stop.clone();
            let running = running.clone();
            readers.push(std::thread::spawn(move || {
                let mut last_seq = 0;
                let mut checked = 0u64;
                running.fetch_add(1, Ordering::SeqCst);
                while !stop.load(Ordering::Relaxed) {
                    if let Some((q, seq)) = slot.read() {
                        let n = q.ts;
                        assert_eq!(q.bid, Decimal::new(n, 2), "bid torn at seq {seq}");
                        assert_eq!(q.ask, Decimal::new(n + 1, 2), "ask torn at seq {seq}");
                        assert_eq!(q.bid_size, Decimal::new(n * 3, 4));
                        assert_eq!(q.ask_size, Decimal::new(n * 5, 4));
                        assert_eq!(q.last, Decimal::new(-n, 8));
                        assert_eq!(q.gw_ts, n);
                        assert_eq!(seq as i64, n, "seq must match the write that produced it");
                        assert!(seq >= last_seq, "seq went backwards");
                        last_seq = seq;
                        checked += 1;
                    }
                }
                checked
            }));
        }
        // Every reader is reading before the first write (on a loaded
        // machine a thread can start after the writes are done).
        while running.load(Ordering::SeqCst) < 3 {
            std::thread::yield_now();
        }
        for n in 1..=writes as i64 {
            let q = Quote {
                bid: Decimal::new(n, 2),
                ask: Decimal::new(n + 1, 2),
                bid_size: Decimal::new(n * 3, 4),
                ask_size: Decimal::new(n * 5, 4),
                last: Decimal::new(-n, 8),
                last_size: Decimal::ZERO,
                present: 0x7f,
                ts: n,
                gw_ts: n,
                ..Quote::default()
            };
            assert_eq!(slot.write(&q), n as u64);
        }
        stop.store(true, Ordering::Relaxed);
        let total: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
        assert!(total > 0, "readers must have observed quotes");
        assert_eq!(slot.seq(), writes);
    }

    #[test]
    fn write_at_keeps_a_seq_given_elsewhere_and_never_goes_back() {
        let s = Slot::default();
        let q = Quote::default().with_bid(d("1.5"), d("2"));
        assert_eq!(s.write_at(&q, 41), Ok(()));
        assert_eq!(s.read(), Some((q, 41)));
        assert_eq!(s.write_at(&q, 41), Err(41), "the same seq again");
        assert_eq!(s.write_at(&q, 7), Err(41), "an older one");
        assert_eq!(s.write_at(&q, 100), Ok(()), "a jump (conflated upstream)");
        assert_eq!(s.seq(), 100);
        // A local write after it numbers on from there.
        assert_eq!(s.write(&q), 101);
        assert_eq!(
            s.write_at(&q, u64::MAX),
            Err(101),
            "past what the lock word holds"
        );
        let t = SlotTable::new(2, 1);
        t.set_interest(SymbolId(1), 0, true);
        assert_eq!(t.publish_at(SymbolId(1), &q, 9), Ok(()));
        let mut dirty = Vec::new();
        t.shard(0).drain(|s| dirty.push(s));
        assert_eq!(dirty, vec![SymbolId(1)], "subscribers are told");
        assert_eq!(t.publish_at(SymbolId(1), &q, 9), Err(9));
    }

    #[test]
    fn concurrent_writers_serialize() {
        let slot = Arc::new(Slot::default());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let slot = slot.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000i64 {
                        let v = t * 1_000_000 + i;
                        let q = Quote {
                            bid: Decimal::new(v, 0),
                            ask: Decimal::new(v, 0),
                            ts: v,
                            ..Quote::default()
                        };
                        slot.write(&q);
                        let (r, _) = slot.read().unwrap();
                        assert_eq!(r.bid, r.ask);
                        assert_eq!(r.bid, Decimal::new(r.ts, 0));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(slot.seq(), 40_000);
    }

    #[test]
    fn interest_generation_moves_with_interest_and_trade_takers() {
        let t = SlotTable::new(4, 2);
        let g0 = t.interest_generation();
        t.publish(SymbolId(1), &Quote::default());
        assert_eq!(t.interest_generation(), g0, "a write is no interest change");
        t.set_interest(SymbolId(1), 0, true);
        let g1 = t.interest_generation();
        assert_ne!(g1, g0);
        t.trades().listen(SymbolId(2), true);
        let g2 = t.interest_generation();
        assert_ne!(g2, g1);
        t.set_interest(SymbolId(1), 0, false);
        assert_ne!(t.interest_generation(), g2);
    }

    #[test]
    fn publish_marks_only_interested_shards() {
        let t = SlotTable::new(130, 2);
        let a = SymbolId(3);
        let b = SymbolId(129);
        t.set_interest(a, 1, true);
        t.set_interest(b, 0, true);
        t.publish(a, &Quote::default());
        t.publish(b, &Quote::default());
        t.publish(SymbolId(5), &Quote::default());
        let mut got0 = Vec::new();
        t.shard(0).drain(|s| got0.push(s));
        let mut got1 = Vec::new();
        t.shard(1).drain(|s| got1.push(s));
        assert_eq!(got0, vec![b]);
        assert_eq!(got1, vec![a]);
        let mut again = Vec::new();
        t.shard(1).drain(|s| again.push(s));
        assert!(again.is_empty(), "drain takes the dirty bits");
    }

    #[test]
    fn quiet_writes_mark_at_once_and_wake_once_at_the_end() {
        use futures_util::FutureExt;
        let t = SlotTable::new(8, 2);
        let (a, b) = (SymbolId(1), SymbolId(2));
        t.set_interest(a, 0, true);
        t.set_interest(b, 1, true);
        let mut wake = 0u128;
        t.publish_at_quiet(a, &Quote::default(), 5, &mut wake)
            .unwrap();
        t.publish_at_quiet(b, &Quote::default(), 9, &mut wake)
            .unwrap();
        assert_eq!(
            t.publish_at_quiet(a, &Quote::default(), 5, &mut wake),
            Err(5)
        );
        assert_eq!(wake, 0b11, "both shards to wake");
        assert!(
            t.shard(0).wait().now_or_never().is_none(),
            "no wake before the batch ends"
        );
        t.wake(&mut wake);
        assert_eq!(wake, 0);
        assert!(t.shard(0).wait().now_or_never().is_some());
        assert!(t.shard(1).wait().now_or_never().is_some());
        let mut got = Vec::new();
        t.shard(0).drain(|s| got.push(s));
        assert_eq!(got, vec![a]);
        assert_eq!((t.seq(a), t.seq(b)), (5, 9));
    }
}
