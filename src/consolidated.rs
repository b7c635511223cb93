//! Consolidated best bid/offer: a virtual symbol (`[[consolidated]]`)
//! whose quote is the best bid and the best ask across other symbols, its
//! legs, usually one instrument on several venues.
//!
//! * The bid is the highest bid among the live legs, the ask the lowest
//!   ask; each side's size comes from the leg it was taken from, and
//!   `bid_venue`/`ask_venue` name that leg's feed. On a tie the leg listed
//!   first in `from` keeps the side.
//! * A consolidated quote has no `last`: trades on different venues are not
//!   one tape, and picking one venue's last trade would be arbitrary.
//! * `ts` and `gw_ts` are the newest among the live legs it was computed
//!   from: the quote is as new as the newest value it considered.
//! * A stale leg (its feed went silent) is left out. The consolidated
//!   symbol turns `stale` only when every leg is stale (it keeps its last
//!   value then, like any stale symbol) and `live` again as soon as one leg
//!   is. While live legs have no price at all, nothing is published.
//! * A bid above the ask (the venues cross each other) is published with
//!   `crossed` set, never hidden and never refused.
//!
//! It is recomputed in the writer's own thread, right after a leg's slot is
//! written or its status changes ([`Derive`]): no task, no queue, no
//! allocation, exact decimals. Its `seq` is its own slot's write count.
//!
//! Legs must be feeds' symbols: a consolidated symbol is never a leg, so
//! consolidated symbols do not nest and there can be no cycle.

use crate::invalid::Invalid;
use crate::model::{field, valid_symbol, InvalidSymbol, Quote, Status, SymbolId, Symbols};
use crate::slots::{Derive, SlotTable};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};

/// `[[consolidated]]`: one virtual symbol and the symbols it consolidates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsolidatedConfig {
    /// The consolidated symbol's own name (not a feed's symbol).
    pub symbol: String,
    /// Its legs: gateway symbols of the feeds, at least two, in tie order.
    pub from: Vec<String>,
}

/// One `[[consolidated]]` table checked against the feeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub symbol: String,
    /// Each leg and its venue: the index of its feed in `[[feeds]]`, plus 1.
    pub legs: Vec<(String, u8)>,
}

/// Checks every `[[consolidated]]` table against the feeds (`feeds`: each
/// feed's name and its gateway symbols, in `[[feeds]]` order). The error
/// names the table and field (`consolidated[1].from[0]`) and the symbol.
pub fn resolve(
    list: &[ConsolidatedConfig],
    feeds: &[(&str, Vec<String>)],
) -> Result<Vec<Resolved>, Invalid> {
    // Every feed symbol and the feeds that provide it.
    let mut provided: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, (_, syms)) in feeds.iter().enumerate() {
        for s in syms {
            let by = provided.entry(s.as_str()).or_default();
            if !by.contains(&i) {
                by.push(i);
            }
        }
    }
    let mut defined: HashMap<&str, usize> = HashMap::new();
    for (i, c) in list.iter().enumerate() {
        if let Some(first) = defined.insert(c.symbol.as_str(), i) {
            return Err(Invalid::new(
                "symbol",
                format!(
                    "duplicate consolidated symbol {:?} (also consolidated[{first}])",
                    c.symbol
                ),
            )
            .under(&format!("consolidated[{i}]")));
        }
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        resolve_one(c, feeds, &provided, &defined)
            .map(|r| out.push(r))
            .map_err(|e| e.under(&format!("consolidated[{i}]")))?;
    }
    Ok(out)
}

fn resolve_one(
    c: &ConsolidatedConfig,
    feeds: &[(&str, Vec<String>)],
    provided: &HashMap<&str, Vec<usize>>,
    defined: &HashMap<&str, usize>,
) -> Result<Resolved, Invalid> {
    if !valid_symbol(&c.symbol) {
        return Err(Invalid::new(
            "symbol",
            InvalidSymbol(c.symbol.clone()).to_string(),
        ));
    }
    if let Some(by) = provided.get(c.symbol.as_str()) {
        let feed = by.first().and_then(|f| feeds.get(*f)).map_or("", |f| f.0);
        return Err(Invalid::new(
            "symbol",
            format!(
                "{:?} is already a symbol of feed {feed:?}; a consolidated symbol needs a name of its own",
                c.symbol
            ),
        ));
    }
    if c.from.len() < 2 {
        return Err(Invalid::new(
            "from",
            format!("{:?} needs at least 2 legs, has {}", c.symbol, c.from.len()),
        ));
    }
    let mut legs: Vec<(String, u8)> = Vec::with_capacity(c.from.len());
    for (j, leg) in c.from.iter().enumerate() {
        let at = format!("from[{j}]");
        if legs.iter().any(|(l, _)| l == leg) {
            return Err(Invalid::new(at, format!("leg {leg:?} is listed twice")));
        }
        if defined.contains_key(leg.as_str()) {
            return Err(Invalid::new(
                at,
                format!(
                    "leg {leg:?} is a consolidated symbol; legs must be feeds' symbols (consolidated symbols do not nest)"
                ),
            ));
        }
        let feed = match provided.get(leg.as_str()).map(Vec::as_slice) {
            None | Some([]) => {
                return Err(Invalid::new(
                    at,
                    format!("leg {leg:?} is not a symbol of any feed"),
                ))
            }
            Some([one]) => *one,
            Some([a, b, ..]) => {
                let name = |f: &usize| feeds.get(*f).map_or("", |f| f.0);
                return Err(Invalid::new(
                    at,
                    format!(
                        "leg {leg:?} is a symbol of feeds {:?} and {:?}; a leg must come from one feed",
                        name(a),
                        name(b)
                    ),
                ));
            }
        };
        let venue = u8::try_from(feed + 1).map_err(|_| {
            Invalid::new(
                "from",
                format!("leg {leg:?} comes from [[feeds]] entry {feed}: a leg's feed must be among the first 255"),
            )
        })?;
        legs.push((leg.clone(), venue));
    }
    Ok(Resolved {
        symbol: c.symbol.clone(),
        legs,
    })
}

#[derive(Debug, Clone, Copy)]
struct Leg {
    sym: SymbolId,
    venue: u8,
}

/// A leg's quote as the last recompute saw it, and the slot version it
/// was seen at (0: the slot had no value): while the slot still has that
/// version, it holds exactly this quote and the recompute needs no read.
#[derive(Clone, Copy, Default)]
struct Seen {
    version: u64,
    quote: Quote,
}

/// One consolidated symbol.
///
/// Concurrency: two legs may be written by different feed tasks at once,
/// and each writer then recomputes. Unguarded, the writer that read the
/// legs first could write its (older) result last. So recomputes are
/// serialized by a try-lock that is also a "recompute again" count, one
/// atomic word: every writer adds 1 after its leg write; the one that
/// took it from 0 is in charge, the others return at once (a writer never
/// waits or spins). The one in charge recomputes, then compare-exchanges
/// the count it last saw back to 0; if writers added to it meanwhile, that
/// fails, and it goes round again with the new count. Each leg write is thus
/// followed by a read of the legs that starts after the write (the count's
/// read-modify-writes order them), recomputes never overlap, and the
/// consolidated slot's last write is never older than the legs. Chosen
/// over a seqlock-version check and retry, which would still need the
/// check and the consolidated write to be one step: here no writer blocks
/// another, and leg updates that land together conflate into one
/// recompute, as a slow subscriber's updates do. The one in charge also
/// keeps what it saw of each leg (`seen`, allocated at start-up), so an
/// update reads no slot that has not changed since.
struct Entry {
    sym: SymbolId,
    legs: Box<[Leg]>,
    /// Leg changes not yet recomputed; non-zero while one is in charge.
    pending: AtomicU32,
    /// What the last recompute read of each leg. Locked only by the one
    /// in charge, so never contended.
    seen: Mutex<Box<[Seen]>>,
}

impl Entry {
    fn touch(&self, slots: &SlotTable, written: Option<(SymbolId, &Quote, u64)>) {
        if self.pending.fetch_add(1, Ordering::AcqRel) != 0 {
            return;
        }
        // Only the one in charge locks it: never contended, never waits.
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let mut count = 1;
        loop {
            self.recompute(slots, written, &mut seen);
            match self
                .pending
                .compare_exchange(count, 0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(now) => count = now,
            }
        }
    }

    /// Reads the legs and writes the consolidated slot and status. A leg's
    /// quote is the one just written while its slot still holds it, what
    /// `seen` has while its slot is unchanged since, or a slot read.
    fn recompute(
        &self,
        slots: &SlotTable,
        written: Option<(SymbolId, &Quote, u64)>,
        seen: &mut [Seen],
    ) {
        let mut out = Quote::default();
        let mut live = false;
        const BID: u8 = field::BID | field::BID_SIZE;
        const ASK: u8 = field::ASK | field::ASK_SIZE;
        for (leg, c) in self.legs.iter().zip(seen.iter_mut()) {
            if slots.status(leg.sym) == Status::Stale {
                continue;
            }
            live = true;
            let version = slots.version(leg.sym);
            match written {
                Some((s, q, seq)) if s == leg.sym && version == 2 * seq => {
                    c.version = version;
                    c.quote = *q;
                }
                _ if c.version == version && version & 1 == 0 => {}
                _ => match slots.read(leg.sym) {
                    Some((q, seq)) => {
                        c.version = 2 * seq;
                        c.quote = q;
                    }
                    None => c.version = 0,
                },
            }
            if c.version == 0 {
                continue;
            }
            let q = &c.quote;
            if q.has(field::BID) && (!out.has(field::BID) || above(&q.bid, &out.bid)) {
                out.bid = q.bid;
                out.bid_size = q.bid_size;
                out.present = (out.present & !BID) | (q.present & BID);
                out.bid_venue = leg.venue;
            }
            if q.has(field::ASK) && (!out.has(field::ASK) || above(&out.ask, &q.ask)) {
                out.ask = q.ask;
                out.ask_size = q.ask_size;
                out.present = (out.present & !ASK) | (q.present & ASK);
                out.ask_venue = leg.venue;
            }
            if q.has(field::TS) && (!out.has(field::TS) || q.ts > out.ts) {
                out.ts = q.ts;
                out.present |= field::TS;
            }
            out.gw_ts = out.gw_ts.max(q.gw_ts);
        }
        let status = if live { Status::Live } else { Status::Stale };
        // Only the recompute in charge sets this symbol's status (no feed
        // owns it), so a load first spares the swap on every update.
        if slots.status(self.sym) != status {
            slots.set_status(self.sym, status);
        }
        if !live || out.present & (field::BID | field::ASK) == 0 {
            return;
        }
        out.crossed = out.has(field::BID) && out.has(field::ASK) && above(&out.bid, &out.ask);
        slots.publish(self.sym, &out);
    }
}

/// `a > b`, exactly: prices of one instrument mostly share a scale, and
/// then the mantissas compare without `Decimal`'s general rescaling path.
#[inline]
fn above(a: &Decimal, b: &Decimal) -> bool {
    if a.scale() == b.scale() {
        a.mantissa() > b.mantissa()
    } else {
        a > b
    }
}

/// Every consolidated symbol, and for each symbol the ones it is a leg of.
pub struct Consolidation {
    /// Per symbol id (up to the highest leg): a range of `member`.
    leg_of: Box<[(u32, u32)]>,
    /// Indexes into `entries`.
    member: Box<[u32]>,
    entries: Box<[Entry]>,
}

impl Consolidation {
    /// From consolidated symbols and their legs (symbol, venue).
    pub fn new(plan: &[(SymbolId, Vec<(SymbolId, u8)>)]) -> Consolidation {
        let top = plan
            .iter()
            .flat_map(|(_, legs)| legs.iter().map(|(s, _)| s.index() + 1))
            .max()
            .unwrap_or(0);
        let mut of: Vec<Vec<u32>> = vec![Vec::new(); top];
        for (e, (_, legs)) in plan.iter().enumerate() {
            for (s, _) in legs {
                if let Some(v) = of.get_mut(s.index()) {
                    v.push(e as u32);
                }
            }
        }
        let mut leg_of = Vec::with_capacity(top);
        let mut member = Vec::new();
        for v in of {
            leg_of.push((member.len() as u32, v.len() as u32));
            member.extend(v);
        }
        Consolidation {
            leg_of: leg_of.into(),
            member: member.into(),
            entries: plan
                .iter()
                .map(|(sym, legs)| Entry {
                    sym: *sym,
                    legs: legs
                        .iter()
                        .map(|&(sym, venue)| Leg { sym, venue })
                        .collect(),
                    pending: AtomicU32::new(0),
                    seen: Mutex::new(vec![Seen::default(); legs.len()].into()),
                })
                .collect(),
        }
    }

    /// Interns each consolidated symbol (after the feeds' symbols, before
    /// the slots are sized) and finds its legs. `None` when there are no
    /// consolidated symbols (nothing to install).
    pub fn build(
        resolved: &[Resolved],
        symbols: &mut Symbols,
    ) -> Result<Option<Consolidation>, Invalid> {
        if resolved.is_empty() {
            return Ok(None);
        }
        let mut plan = Vec::with_capacity(resolved.len());
        for (i, r) in resolved.iter().enumerate() {
            let at = format!("consolidated[{i}]");
            let sym = symbols
                .intern(&r.symbol)
                .map_err(|e| Invalid::new("symbol", e.to_string()).under(&at))?;
            let mut legs = Vec::with_capacity(r.legs.len());
            for (j, (leg, venue)) in r.legs.iter().enumerate() {
                let id = symbols.get(leg).ok_or_else(|| {
                    Invalid::new(
                        format!("from[{j}]"),
                        format!("leg {leg:?} is not a symbol of any feed"),
                    )
                    .under(&at)
                })?;
                legs.push((id, *venue));
            }
            plan.push((sym, legs));
        }
        Ok(Some(Consolidation::new(&plan)))
    }

    /// How many consolidated symbols.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Derive for Consolidation {
    fn changed(&self, slots: &SlotTable, sym: SymbolId, written: Option<(&Quote, u64)>) {
        let Some(&(start, len)) = self.leg_of.get(sym.index()) else {
            return;
        };
        let (start, len) = (start as usize, len as usize);
        for &e in self.member.get(start..start + len).unwrap_or_default() {
            if let Some(entry) = self.entries.get(e as usize) {
                entry.touch(slots, written.map(|(q, seq)| (sym, q, seq)));
            }
        }
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

    const A: SymbolId = SymbolId(0);
    const B: SymbolId = SymbolId(1);
    const C: SymbolId = SymbolId(2);
    /// Consolidates A, B, C (venues 1, 2, 3).
    const X: SymbolId = SymbolId(3);
    /// Consolidates C and B (venues 3, 2): a leg in two entries.
    const Y: SymbolId = SymbolId(4);

    fn table() -> SlotTable {
        let t = SlotTable::new(5, 1);
        let c = Consolidation::new(&[(X, vec![(A, 1), (B, 2), (C, 3)]), (Y, vec![(C, 3), (B, 2)])]);
        assert!(t.set_derive(Box::new(c)));
        t
    }

    fn book(bid: &str, ask: &str) -> Quote {
        Quote {
            gw_ts: 1,
            ..Quote::default()
        }
        .with_bid(d(bid), d("1"))
        .with_ask(d(ask), d("2"))
    }

    fn get(t: &SlotTable, s: SymbolId) -> (Quote, u64) {
        t.read(s).expect("published")
    }

    #[test]
    fn best_side_from_each_leg_with_its_venue() {
        let t = table();
        t.publish(A, &book("100.00", "101.00"));
        t.publish(B, &book("100.50", "101.50").with_bid(d("100.50"), d("7")));
        t.publish(C, &book("99", "100.90"));
        let (q, seq) = get(&t, X);
        assert_eq!(seq, 3, "once per leg update");
        assert_eq!(
            (q.bid.to_string(), q.bid_size, q.bid_venue),
            ("100.50".into(), d("7"), 2)
        );
        assert_eq!(
            (q.ask.to_string(), q.ask_size, q.ask_venue),
            ("100.90".into(), d("2"), 3)
        );
        assert!(!q.crossed);
        assert!(!q.has(field::LAST), "a consolidated quote has no last");
        // Y follows its own legs, and has its own seq.
        let (y, yseq) = get(&t, Y);
        assert_eq!(yseq, 2);
        assert_eq!(
            (y.bid, y.bid_venue, y.ask, y.ask_venue),
            (d("100.50"), 2, d("100.90"), 3)
        );
    }

    #[test]
    fn ties_keep_the_earlier_leg_and_scale_is_kept() {
        let t = table();
        t.publish(C, &book("100.0", "101.0"));
        t.publish(A, &book("100.00", "101.000"));
        let (q, _) = get(&t, X);
        // Equal prices: A is listed first in X.
        assert_eq!((q.bid_venue, q.ask_venue), (1, 1));
        assert_eq!(
            (q.bid.to_string(), q.ask.to_string()),
            ("100.00".into(), "101.000".into())
        );
        // In Y, C is listed first.
        t.publish(B, &book("100.000", "101"));
        let (y, _) = get(&t, Y);
        assert_eq!((y.bid_venue, y.ask_venue), (3, 3));
    }

    #[test]
    fn one_sided_legs_and_the_newest_times() {
        let t = table();
        let bid_only = Quote {
            gw_ts: 5,
            ..Quote::default()
        }
        .with_bid(d("10"), d("1"))
        .with_ts(50);
        let ask_only = Quote {
            gw_ts: 9,
            present: field::ASK,
            ask: d("11"),
            ..Quote::default()
        }
        .with_ts(40);
        t.publish(A, &bid_only);
        t.publish(B, &ask_only);
        let (q, _) = get(&t, X);
        assert_eq!(
            (q.bid, q.bid_venue, q.ask, q.ask_venue),
            (d("10"), 1, d("11"), 2)
        );
        assert!(!q.has(field::ASK_SIZE), "B sent no ask size");
        assert_eq!((q.ts, q.gw_ts), (50, 9));
    }

    #[test]
    fn crossed_venues_are_flagged_not_hidden() {
        let t = table();
        t.publish(A, &book("100", "101"));
        t.publish(B, &book("102", "103"));
        let (q, _) = get(&t, X);
        assert!(q.crossed);
        assert_eq!(
            (q.bid, q.bid_venue, q.ask, q.ask_venue),
            (d("102"), 2, d("101"), 1)
        );
        t.publish(B, &book("100.5", "103"));
        assert!(!get(&t, X).0.crossed);
    }

    #[test]
    fn stale_legs_are_left_out_and_all_stale_is_stale() {
        let t = table();
        t.publish(A, &book("100", "105"));
        t.publish(B, &book("101", "104"));
        t.publish(C, &book("99", "106"));
        let seq = t.seq(X);
        t.set_status(B, Status::Stale);
        let (q, s) = get(&t, X);
        assert_eq!(s, seq + 1, "a leg's status change recomputes");
        assert_eq!(
            (q.bid, q.bid_venue, q.ask, q.ask_venue),
            (d("100"), 1, d("105"), 1)
        );
        assert_eq!(t.status(X), Status::Live);
        t.set_status(A, Status::Stale);
        assert_eq!(get(&t, X).0.bid_venue, 3);
        t.set_status(C, Status::Stale);
        assert_eq!(t.status(X), Status::Stale);
        assert_eq!(t.status(Y), Status::Stale);
        assert_eq!(t.seq(X), seq + 2, "all stale: the last value stays");
        // One leg back: live again, with that leg's value.
        t.set_status(B, Status::Live);
        assert_eq!(t.status(X), Status::Live);
        let (q, _) = get(&t, X);
        assert_eq!((q.bid, q.bid_venue, q.ask_venue), (d("101"), 2, 2));
        // Unchanged status: nothing to do.
        let before = t.seq(X);
        assert!(!t.set_status(B, Status::Live));
        assert_eq!(t.seq(X), before);
    }

    #[test]
    fn live_legs_without_prices_publish_nothing() {
        let t = table();
        t.set_status(A, Status::Stale);
        assert_eq!(t.status(X), Status::Live, "B and C are live");
        assert!(t.read(X).is_none());
        t.publish(Y, &book("1", "2"));
        assert!(t.read(X).is_none(), "a consolidated symbol is no leg");
    }

    /// Two feed threads write legs at once, each with growing prices; the
    /// consolidated value at the end is the one the final legs give.
    #[test]
    fn concurrent_leg_writers_never_leave_it_older_than_the_legs() {
        for _ in 0..20 {
            let t = Arc::new(table());
            let writers: Vec<_> = [A, B]
                .into_iter()
                .map(|leg| {
                    let t = t.clone();
                    std::thread::spawn(move || {
                        for i in 1..=2_000i64 {
                            let px = Decimal::new(i * 10 + leg.0 as i64, 2);
                            t.publish(leg, &book("1", "2").with_bid(px, d("1")));
                        }
                    })
                })
                .collect();
            for w in writers {
                w.join().unwrap();
            }
            let (q, _) = get(&t, X);
            assert_eq!((q.bid, q.bid_venue), (Decimal::new(20_001, 2), 2));
        }
    }

    #[test]
    fn above_is_exact_across_scales() {
        assert!(above(&d("100.01"), &d("100.00")));
        assert!(!above(&d("100.00"), &d("100.0")));
        assert!(above(&d("100.001"), &d("100.00")));
        assert!(!above(&d("99.9999"), &d("100")));
        assert!(above(&d("-1"), &d("-1.5")));
    }

    fn feeds() -> Vec<(&'static str, Vec<String>)> {
        vec![
            ("cb", vec!["CB-BTC-USD".into(), "CB-ETH-USD".into()]),
            ("kr", vec!["KR-BTC-USD".into(), "SHARED".into()]),
            ("other", vec!["SHARED".into()]),
        ]
    }

    fn cfg(symbol: &str, from: &[&str]) -> ConsolidatedConfig {
        ConsolidatedConfig {
            symbol: symbol.into(),
            from: from.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn resolve_finds_each_legs_feed() {
        let r = resolve(&[cfg("BTC-USD", &["KR-BTC-USD", "CB-BTC-USD"])], &feeds()).unwrap();
        assert_eq!(
            r,
            vec![Resolved {
                symbol: "BTC-USD".into(),
                legs: vec![("KR-BTC-USD".into(), 2), ("CB-BTC-USD".into(), 1)],
            }]
        );
    }

    #[test]
    fn resolve_refuses_with_the_field_and_symbol() {
        let ok = cfg("BTC-USD", &["CB-BTC-USD", "KR-BTC-USD"]);
        let cases: Vec<(Vec<ConsolidatedConfig>, &str, &str)> = vec![
            (
                vec![cfg("BTC-USD", &["CB-BTC-USD", "XX"])],
                "consolidated[0].from[1]",
                "\"XX\" is not a symbol of any feed",
            ),
            (
                vec![cfg("CB-ETH-USD", &["CB-BTC-USD", "KR-BTC-USD"])],
                "consolidated[0].symbol",
                "already a symbol of feed \"cb\"",
            ),
            (
                vec![ok.clone(), cfg("BTC-USD", &["CB-ETH-USD", "KR-BTC-USD"])],
                "consolidated[1].symbol",
                "duplicate consolidated symbol \"BTC-USD\"",
            ),
            (
                vec![cfg("BTC-USD", &["CB-BTC-USD", "KR-BTC-USD", "CB-BTC-USD"])],
                "consolidated[0].from[2]",
                "\"CB-BTC-USD\" is listed twice",
            ),
            (
                vec![cfg("BTC-USD", &["CB-BTC-USD"])],
                "consolidated[0].from",
                "at least 2 legs",
            ),
            (
                vec![cfg("BTC-USD", &[])],
                "consolidated[0].from",
                "at least 2 legs",
            ),
            (
                vec![ok.clone(), cfg("ALL", &["BTC-USD", "CB-ETH-USD"])],
                "consolidated[1].from[0]",
                "\"BTC-USD\" is a consolidated symbol",
            ),
            (
                vec![
                    cfg("A", &["B", "CB-BTC-USD"]),
                    cfg("B", &["A", "KR-BTC-USD"]),
                ],
                "consolidated[0].from[0]",
                "\"B\" is a consolidated symbol",
            ),
            (
                vec![cfg("A", &["A", "CB-BTC-USD"])],
                "consolidated[0].from[0]",
                "\"A\" is a consolidated symbol",
            ),
            (
                vec![cfg("BTC-USD", &["CB-BTC-USD", "SHARED"])],
                "consolidated[0].from[1]",
                "feeds \"kr\" and \"other\"",
            ),
            (
                vec![cfg("bad name", &["CB-BTC-USD", "KR-BTC-USD"])],
                "consolidated[0].symbol",
                "invalid symbol",
            ),
        ];
        for (list, field, says) in cases {
            let e = resolve(&list, &feeds()).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.message.contains(says), "{says}: {e}");
        }
    }

    #[test]
    fn build_interns_after_the_feeds() {
        let mut syms = Symbols::new();
        let a = syms.intern("CB-BTC-USD").unwrap();
        let b = syms.intern("KR-BTC-USD").unwrap();
        let r = resolve(&[cfg("BTC-USD", &["CB-BTC-USD", "KR-BTC-USD"])], &feeds()).unwrap();
        let c = Consolidation::build(&r, &mut syms).unwrap().unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(syms.get("BTC-USD"), Some(SymbolId(2)));
        assert_eq!(
            c.entries[0]
                .legs
                .iter()
                .map(|l| (l.sym, l.venue))
                .collect::<Vec<_>>(),
            vec![(a, 1), (b, 2)]
        );
        assert!(Consolidation::build(&[], &mut syms).unwrap().is_none());
    }
}
