//! Encode once: each symbol's latest quote as JSON bytes, encoded by the
//! first frame that needs that seq and copied into every other.
//!
//! The shared cache is one small lock per symbol; a fan-out slice also
//! keeps a `Memo` of what it took from the cache, so the many frames of
//! one slice that carry the same symbols copy it without a lock.

use crate::model::{SymbolId, Symbols};
use crate::protocol::encode_quote;
use crate::slots::SlotTable;
use crate::sync::Mutex;
use std::sync::Arc;

/// The encoded quotes one slice of a pass has already taken from the
/// shared cache: the frames of a slice mostly carry the same symbols, and
/// a quote found here costs no lock. An entry serves only while its
/// symbol's slot still has the entry's seq, so it is never stale; the
/// whole memo is emptied at the start of each slice, which bounds it to
/// the symbols of one slice.
#[derive(Default)]
pub(crate) struct Memo {
    at: Vec<MemoEntry>,
    text: String,
    /// Entries of other slices have another generation.
    generation: u32,
}

#[derive(Default, Clone, Copy)]
struct MemoEntry {
    generation: u32,
    len: u32,
    start: usize,
    seq: u64,
    gw_ts: i64,
}

impl Memo {
    /// Empties the memo for a new slice over `nsymbols` symbols.
    pub(crate) fn begin(&mut self, nsymbols: usize) {
        self.text.clear();
        if self.at.len() < nsymbols {
            self.at.resize(nsymbols, MemoEntry::default());
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // Wrapped: no entry may look current.
            self.at.fill(MemoEntry::default());
            self.generation = 1;
        }
    }
}

#[derive(Default)]
struct Encoded {
    seq: u64,
    gw_ts: i64,
    json: String,
}

/// Each symbol's latest quote as JSON, encoded once per seq, and the
/// slots and names it is encoded from.
pub struct EncodeCache {
    slots: Arc<SlotTable>,
    symbols: Arc<Symbols>,
    entries: Box<[Mutex<Encoded>]>,
}

impl EncodeCache {
    pub fn new(slots: Arc<SlotTable>, symbols: Arc<Symbols>) -> Self {
        let n = slots.len();
        EncodeCache {
            entries: (0..n).map(|_| Mutex::new(Encoded::default())).collect(),
            slots,
            symbols,
        }
    }

    pub fn slots(&self) -> &SlotTable {
        &self.slots
    }

    pub fn symbols(&self) -> &Symbols {
        &self.symbols
    }

    /// How many symbols it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the newest quote of `sym` (not a snapshot) to `out`, encoding
    /// it only if nobody has encoded this seq yet. Returns its seq and gw_ts,
    /// or `None` if the symbol has no value.
    pub fn append_latest(&self, sym: SymbolId, out: &mut String) -> Option<(u64, i64)> {
        let mut e = self.entries[sym.index()].lock();
        if e.seq != self.slots.seq(sym) {
            let (q, seq) = self.slots.read(sym)?;
            let e = &mut *e;
            e.json.clear();
            encode_quote(&mut e.json, &self.symbols, sym, seq, &q, false);
            e.seq = seq;
            e.gw_ts = q.gw_ts;
        }
        if e.seq == 0 {
            return None;
        }
        out.push_str(&e.json);
        Some((e.seq, e.gw_ts))
    }

    /// [`EncodeCache::append_latest`] through a slice's [`Memo`]: the first frame
    /// of a slice that carries a symbol takes its encoded quote from the
    /// shared cache (under its lock) and keeps a copy, the others copy it
    /// from the memo without a lock while the slot still has that seq.
    pub(crate) fn append_latest_memo(
        &self,
        sym: SymbolId,
        out: &mut String,
        memo: &mut Memo,
    ) -> Option<(u64, i64)> {
        let generation = memo.generation;
        let m = memo.at.get(sym.index()).copied().unwrap_or_default();
        if m.generation == generation && m.seq == self.slots.seq(sym) {
            if let Some(json) = memo.text.get(m.start..m.start + m.len as usize) {
                out.push_str(json);
                return Some((m.seq, m.gw_ts));
            }
        }
        let start = out.len();
        let (seq, gw_ts) = self.append_latest(sym, out)?;
        let json = out.get(start..).unwrap_or_default();
        if let (Some(slot), Ok(len)) = (memo.at.get_mut(sym.index()), u32::try_from(json.len())) {
            *slot = MemoEntry {
                generation,
                len,
                start: memo.text.len(),
                seq,
                gw_ts,
            };
            memo.text.push_str(json);
        }
        Some((seq, gw_ts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Quote;
    use rust_decimal::Decimal;

    fn cache(nsyms: usize) -> EncodeCache {
        let mut names = Symbols::new();
        for i in 0..nsyms {
            names.intern(&format!("S{i}")).unwrap();
        }
        EncodeCache::new(Arc::new(SlotTable::new(nsyms, 1)), Arc::new(names))
    }

    fn q() -> Quote {
        Quote::default().with_bid(Decimal::ONE, Decimal::ONE)
    }

    /// A memo entry serves only its own slice and only the seq it was
    /// taken at: what it appends is always what the shared cache would.
    #[test]
    fn memo_copies_are_never_stale() {
        let fan = cache(3);
        let (a, b) = (SymbolId(0), SymbolId(2));
        let mut memo = Memo::default();
        let latest = |sym| {
            let mut s = String::new();
            fan.append_latest(sym, &mut s).map(|r| (r, s))
        };
        let via_memo = |memo: &mut Memo, sym| {
            let mut s = String::new();
            fan.append_latest_memo(sym, &mut s, memo).map(|r| (r, s))
        };
        memo.begin(3);
        // Nothing published: nothing appended, nothing kept.
        assert_eq!(via_memo(&mut memo, a), None);
        fan.slots.publish(a, &q());
        fan.slots
            .publish(b, &q().with_bid(Decimal::TWO, Decimal::ONE));
        let first = via_memo(&mut memo, a);
        assert!(first.is_some());
        assert_eq!(first, latest(a));
        // From the memo: the same text, and the other symbol's own.
        assert_eq!(via_memo(&mut memo, a), first);
        assert_eq!(via_memo(&mut memo, b), latest(b));
        assert_eq!(via_memo(&mut memo, b), latest(b));
        // A newer value: the memo's copy is not used.
        fan.slots
            .publish(a, &q().with_bid(Decimal::TEN, Decimal::ONE));
        let newer = via_memo(&mut memo, a);
        assert_eq!(newer, latest(a));
        assert_ne!(newer, first);
        assert_eq!(via_memo(&mut memo, a), newer);
        // A new slice starts empty; its entries hold its own copies.
        memo.begin(3);
        assert_eq!(memo.text.len(), 0);
        assert_eq!(via_memo(&mut memo, a), newer);
        assert_eq!(via_memo(&mut memo, b), latest(b));
        // Several slices' worth of generations, wrapping included.
        memo.generation = u32::MAX;
        memo.begin(3);
        assert_eq!(memo.generation, 1);
        assert_eq!(via_memo(&mut memo, a), newer);
    }
}
