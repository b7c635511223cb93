//! The normalizer: the only way into the slots. It validates a quote from a
//! feed, stamps `gw_ts`, writes the slot and counts the update; a quote that
//! fails validation is counted by feed and reason and never reaches a
//! subscriber.

use crate::invalid::Invalid;
use crate::metrics::Metrics;
use crate::model::{field, now_ns, Quote, SymbolId};
use crate::slots::SlotTable;
use crate::trades::{Trade, TradeInfo};
use prometheus::IntCounter;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::sync::Arc;

/// What to do with a crossed quote (bid > ask).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CrossedPolicy {
    /// Drop it and count it in `feed_rejects_total{reason="crossed"}`.
    #[default]
    Reject,
    /// Publish it and count it in `feed_flagged_total{reason="crossed"}`.
    Flag,
}

/// Validation every non-simulated feed applies before a slot is written
/// (flattened into the feed's `[[feeds]]` table).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NormalizeConfig {
    /// Crossed quotes: `reject` or `flag`. Default `reject`.
    pub crossed: CrossedPolicy,
    /// Most decimal places accepted in a price or size. Default 12.
    pub max_scale: u32,
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        NormalizeConfig {
            crossed: CrossedPolicy::Reject,
            max_scale: 12,
        }
    }
}

impl NormalizeConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.max_scale > 28 {
            return Err(Invalid::new(
                "max_scale",
                "at most 28 (rust_decimal's limit)",
            ));
        }
        Ok(())
    }
}

/// Independent sequence spaces per symbol: a venue may number its book
/// updates and its trades apart (Binance does).
pub const SEQ_STREAMS: usize = 2;

/// A venue's own ordering of one symbol's updates: (stream, sequence).
/// Streams number independently; a stream past [`SEQ_STREAMS`] counts as
/// the last one.
pub type VenueSeq = (u8, u64);

/// What a feed hands the normalizer: new values for one symbol. Only the
/// fields set in `quote.present` changed; the others keep their previous
/// value (a trade does not erase the book, and vice versa).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Update {
    pub sym: SymbolId,
    pub quote: Quote,
    pub seq: Option<VenueSeq>,
}

/// Why a quote was rejected; the label value in `feed_rejects_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    NonPositivePrice,
    NegativeSize,
    Crossed,
    Empty,
    /// The venue's sequence or timestamp for the symbol went backwards (or
    /// repeated).
    OutOfOrder,
    /// More decimal places than the feed's `max_scale`.
    Scale,
}

impl Reject {
    pub const ALL: [Reject; 6] = [
        Reject::NonPositivePrice,
        Reject::NegativeSize,
        Reject::Crossed,
        Reject::Empty,
        Reject::OutOfOrder,
        Reject::Scale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::NonPositivePrice => "non_positive_price",
            Reject::NegativeSize => "negative_size",
            Reject::Crossed => "crossed",
            Reject::Empty => "empty",
            Reject::OutOfOrder => "out_of_order",
            Reject::Scale => "scale",
        }
    }
}

/// Validates a quote without side effects.
pub fn validate(q: &Quote) -> Result<(), Reject> {
    if q.present & (field::BID | field::ASK | field::LAST) == 0 {
        return Err(Reject::Empty);
    }
    for (f, v) in [
        (field::BID, q.bid),
        (field::ASK, q.ask),
        (field::LAST, q.last),
    ] {
        if q.has(f) && v <= Decimal::ZERO {
            return Err(Reject::NonPositivePrice);
        }
    }
    for (f, v) in [
        (field::BID_SIZE, q.bid_size),
        (field::ASK_SIZE, q.ask_size),
        (field::LAST_SIZE, q.last_size),
    ] {
        if q.has(f) && v.is_sign_negative() && !v.is_zero() {
            return Err(Reject::NegativeSize);
        }
    }
    if q.has(field::BID) && q.has(field::ASK) && q.bid > q.ask {
        return Err(Reject::Crossed);
    }
    Ok(())
}

/// A feed's handle on the slots.
#[derive(Clone)]
pub struct Normalizer {
    slots: Arc<SlotTable>,
    feed: Arc<str>,
    updates: IntCounter,
    trades: IntCounter,
    rejects: [IntCounter; 6],
    flagged_crossed: IntCounter,
    metrics: Arc<Metrics>,
}

impl Normalizer {
    pub fn new(feed: &str, slots: Arc<SlotTable>, metrics: &Arc<Metrics>) -> Self {
        Normalizer {
            slots,
            feed: Arc::from(feed),
            updates: metrics.updates_in.with_label_values(&[feed]),
            trades: metrics.trades_in.with_label_values(&[feed]),
            rejects: Reject::ALL
                .map(|r| metrics.feed_rejects.with_label_values(&[feed, r.as_str()])),
            flagged_crossed: metrics.feed_flagged.with_label_values(&[feed, "crossed"]),
            metrics: metrics.clone(),
        }
    }

    pub fn feed(&self) -> &str {
        &self.feed
    }

    /// Counts an upstream frame that could not be parsed.
    pub fn count_parse_error(&self, reason: &str) {
        self.metrics
            .feed_rejects
            .with_label_values(&[&self.feed, reason])
            .inc();
    }

    fn count(&self, r: Reject) {
        self.rejects[r as usize].inc();
    }

    /// Validates and publishes; returns the symbol's new seq.
    pub fn apply(&self, sym: SymbolId, q: Quote) -> Result<u64, Reject> {
        self.apply_with(sym, q, None)
    }

    /// [`Normalizer::apply`] for a quote whose `last`/`last_size` is a
    /// trade: the trade goes to the symbol's trades too (see
    /// [`Normalizer::publish`]).
    pub fn apply_with(
        &self,
        sym: SymbolId,
        mut q: Quote,
        trade: Option<TradeInfo>,
    ) -> Result<u64, Reject> {
        if let Err(r) = validate(&q) {
            self.count(r);
            return Err(r);
        }
        if q.gw_ts == 0 {
            q.gw_ts = now_ns();
        }
        Ok(self.publish(sym, &q, trade))
    }

    /// Writes a validated quote (and the trade it carries, if any) and
    /// counts it. The trade is stored first: the quote's write wakes the
    /// symbol's subscribers, and they must find the trade then.
    fn publish(&self, sym: SymbolId, q: &Quote, trade: Option<TradeInfo>) -> u64 {
        self.record_trade(sym, q, trade);
        let seq = self.slots.publish(sym, q);
        self.updates.inc();
        seq
    }
}

impl Normalizer {
    /// Stores the trade `q` carries (with `info`), if it carries one.
    fn record_trade(&self, sym: SymbolId, q: &Quote, info: Option<TradeInfo>) {
        if let Some(t) = info.and_then(|info| trade_of(q, info)) {
            self.slots.trades().push(sym, &t);
            self.trades.inc();
        }
    }
}

/// The trade a quote carries: its `last` and `last_size` (both needed; a
/// venue that gives only a last price gave no trade).
fn trade_of(q: &Quote, info: TradeInfo) -> Option<Trade> {
    (q.has(field::LAST) && q.has(field::LAST_SIZE)).then_some(Trade {
        price: q.last,
        size: q.last_size,
        side: info.side,
        trade_id: info.trade_id,
        ts: if q.has(field::TS) { q.ts } else { q.gw_ts },
        gw_ts: q.gw_ts,
    })
}

/// Logs at most `burst` lines per `window` and counts the rest, so a feed
/// spewing garbage cannot flood the log.
pub struct LogLimiter {
    window: std::time::Duration,
    burst: u32,
    started: std::time::Instant,
    logged: u32,
    suppressed: u64,
}

impl LogLimiter {
    pub fn new(burst: u32, window: std::time::Duration) -> Self {
        LogLimiter {
            window,
            burst,
            started: std::time::Instant::now(),
            logged: 0,
            suppressed: 0,
        }
    }

    /// Whether to log now. When a new window opens after suppressing lines,
    /// `on_suppressed` is told how many were suppressed.
    pub fn allow(&mut self, mut on_suppressed: impl FnMut(u64)) -> bool {
        if self.started.elapsed() >= self.window {
            if self.suppressed > 0 {
                on_suppressed(self.suppressed);
            }
            self.started = std::time::Instant::now();
            self.logged = 0;
            self.suppressed = 0;
        }
        if self.logged < self.burst {
            self.logged += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// The normalizer of one upstream feed: on top of [`validate`], it merges
/// partial updates into the symbol's last value, refuses updates whose venue
/// sequence or timestamp goes backwards, enforces the feed's `max_scale` and
/// applies its crossed-quote policy. Owned by the feed's task.
pub struct FeedNormalizer {
    norm: Normalizer,
    cfg: NormalizeConfig,
    /// Per symbol, per venue sequence stream: the last accepted sequence.
    last_seq: Vec<[u64; SEQ_STREAMS]>,
    /// Per symbol, per stream: the last accepted venue timestamp. An
    /// update without a venue sequence counts in stream 0. Streams keep
    /// their own time: a venue's channels (Kraken's ticker and trades)
    /// need not reach us in time order across channels, only within one.
    last_ts: Vec<[i64; SEQ_STREAMS]>,
    /// Per symbol: the quote this normalizer last published and the seq
    /// its write returned. While the slot's version still says that seq, the
    /// slot holds exactly this quote and the merge needs no slot read.
    last_pub: Vec<Option<(u64, Quote)>>,
    log: LogLimiter,
}

fn max_scale_of(q: &Quote) -> u32 {
    let mut m = 0;
    for (f, v) in [
        (field::BID, q.bid),
        (field::BID_SIZE, q.bid_size),
        (field::ASK, q.ask),
        (field::ASK_SIZE, q.ask_size),
        (field::LAST, q.last),
        (field::LAST_SIZE, q.last_size),
    ] {
        if q.has(f) {
            m = m.max(v.scale());
        }
    }
    m
}

impl FeedNormalizer {
    pub fn new(norm: Normalizer, cfg: NormalizeConfig) -> Self {
        let n = norm.slots.len();
        FeedNormalizer {
            norm,
            cfg,
            last_seq: vec![[0; SEQ_STREAMS]; n],
            last_ts: vec![[i64::MIN; SEQ_STREAMS]; n],
            last_pub: vec![None; n],
            log: LogLimiter::new(10, std::time::Duration::from_secs(10)),
        }
    }

    pub fn normalizer(&self) -> &Normalizer {
        &self.norm
    }

    /// Forgets venue sequences and timestamps: called on every new upstream
    /// connection, since a venue may number a new session afresh and its
    /// first update must not be refused as out of order forever.
    pub fn reset_order(&mut self) {
        for s in &mut self.last_seq {
            *s = [0; SEQ_STREAMS];
        }
        for t in &mut self.last_ts {
            *t = [i64::MIN; SEQ_STREAMS];
        }
    }

    /// Logs (rate-limited) and counts an unusable upstream frame;
    /// `reason` is its label in `feed_rejects_total`.
    pub fn upstream_error(&mut self, reason: &str, e: &dyn std::fmt::Display) {
        self.norm.count_parse_error(reason);
        let feed = self.norm.feed.clone();
        if self
            .log
            .allow(|n| tracing::warn!(feed = %feed, "{n} more upstream errors not logged"))
        {
            tracing::warn!(feed = %feed, "upstream frame rejected: {e}");
        }
    }

    fn reject(&mut self, sym: SymbolId, r: Reject) -> Result<u64, Reject> {
        self.norm.count(r);
        let feed = self.norm.feed.clone();
        if self
            .log
            .allow(|n| tracing::warn!(feed = %feed, "{n} more upstream errors not logged"))
        {
            tracing::warn!(feed = %feed, symbol = sym.0, "quote rejected: {}", r.as_str());
        }
        Err(r)
    }

    /// Validates the update (only its present fields changed), merges it
    /// into the symbol's last value and publishes it. Returns the new seq.
    pub fn apply(&mut self, u: Update) -> Result<u64, Reject> {
        self.apply_with(u, None)
    }

    /// [`FeedNormalizer::apply`] for an update that is a trade: its
    /// `last`/`last_size` (and `ts`) are the trade's, and the trade goes to
    /// the symbol's trades as well, in the order the venue numbered them
    /// (an out-of-order or repeated trade is refused like any update).
    pub fn apply_with(&mut self, u: Update, trade: Option<TradeInfo>) -> Result<u64, Reject> {
        let Update {
            sym,
            quote: partial,
            seq,
        } = u;
        let i = sym.index();
        let stream = seq.map(|(st, _)| (st as usize).min(SEQ_STREAMS - 1));
        if let (Some(st), Some((_, s))) = (stream, seq) {
            let last = self.last_seq[i][st];
            if last != 0 && s <= last {
                return self.reject(sym, Reject::OutOfOrder);
            }
        }
        // Timestamps are ordered within the update's stream (see `last_ts`).
        let ts_stream = stream.unwrap_or(0);
        if partial.has(field::TS) && partial.ts < self.last_ts[i][ts_stream] {
            return self.reject(sym, Reject::OutOfOrder);
        }
        if max_scale_of(&partial) > self.cfg.max_scale {
            return self.reject(sym, Reject::Scale);
        }
        let prev = match self.last_pub[i] {
            Some((seq, q)) if self.norm.slots.version(sym) == 2 * seq => Some(q),
            _ => self.norm.slots.read(sym).map(|(q, _)| q),
        };
        let mut q = match prev {
            // The quote's time never steps back: a stream's update may be
            // older than another stream's last (its own time is checked
            // above, and a trade keeps its own `ts`).
            Some(prev) if prev.has(field::TS) && prev.ts > partial.ts => {
                let mut q = merge(prev, &partial);
                q.ts = prev.ts;
                q
            }
            Some(prev) => merge(prev, &partial),
            None => partial,
        };
        match validate(&q) {
            Ok(()) => {}
            Err(Reject::Crossed) if self.cfg.crossed == CrossedPolicy::Flag => {
                self.norm.flagged_crossed.inc();
            }
            Err(r) => return self.reject(sym, r),
        }
        q.gw_ts = now_ns();
        // The trade's time is the update's own, not an older one merged in.
        let trade = trade.filter(|_| partial.has(field::LAST) && partial.has(field::LAST_SIZE));
        let mut tq = q;
        if partial.has(field::TS) {
            tq.ts = partial.ts;
        } else {
            tq.present &= !field::TS;
        }
        self.norm.record_trade(sym, &tq, trade);
        let out = self.norm.slots.publish(sym, &q);
        self.last_pub[i] = Some((out, q));
        self.norm.updates.inc();
        if let (Some(st), Some((_, s))) = (stream, seq) {
            self.last_seq[i][st] = s;
        }
        if partial.has(field::TS) {
            self.last_ts[i][ts_stream] = partial.ts;
        }
        Ok(out)
    }
}

/// `prev` with the fields present in `upd` replaced.
pub fn merge(mut prev: Quote, upd: &Quote) -> Quote {
    let pairs: [(u8, &mut Decimal, Decimal); 6] = [
        (field::BID, &mut prev.bid, upd.bid),
        (field::BID_SIZE, &mut prev.bid_size, upd.bid_size),
        (field::ASK, &mut prev.ask, upd.ask),
        (field::ASK_SIZE, &mut prev.ask_size, upd.ask_size),
        (field::LAST, &mut prev.last, upd.last),
        (field::LAST_SIZE, &mut prev.last_size, upd.last_size),
    ];
    for (f, slot, v) in pairs {
        if upd.has(f) {
            *slot = v;
        }
    }
    if upd.has(field::TS) {
        prev.ts = upd.ts;
    }
    prev.present |= upd.present;
    prev
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn table() {
        let ok = Quote::default()
            .with_bid(d("1.00"), d("5"))
            .with_ask(d("1.01"), d("0"));
        let cases = [
            (ok, Ok(())),
            (Quote::default(), Err(Reject::Empty)),
            (ok.with_bid(d("0"), d("1")), Err(Reject::NonPositivePrice)),
            (ok.with_last(d("-1"), d("1")), Err(Reject::NonPositivePrice)),
            (ok.with_bid(d("1.00"), d("-1")), Err(Reject::NegativeSize)),
            (ok.with_bid(d("1.02"), d("1")), Err(Reject::Crossed)),
            (ok.with_bid(d("1.01"), d("1")), Ok(())),
        ];
        for (q, want) in cases {
            assert_eq!(validate(&q), want, "{q:?}");
        }
    }

    #[test]
    fn rejects_are_counted_and_never_published() {
        let slots = Arc::new(SlotTable::new(1, 1));
        let m = Arc::new(Metrics::new());
        let n = Normalizer::new("t", slots.clone(), &m);
        let bad = Quote::default()
            .with_bid(d("2"), d("1"))
            .with_ask(d("1"), d("1"));
        assert_eq!(n.apply(SymbolId(0), bad), Err(Reject::Crossed));
        assert_eq!(slots.seq(SymbolId(0)), 0);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains(r#"tickergate_feed_rejects_total{feed="t",reason="crossed"} 1"#));
        let good = Quote::default().with_last(d("1"), d("1"));
        assert_eq!(n.apply(SymbolId(0), good), Ok(1));
        assert!(slots.read(SymbolId(0)).unwrap().0.gw_ts > 0);
    }
}

#[cfg(test)]
mod feed_tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn setup(crossed: CrossedPolicy) -> (Arc<SlotTable>, Arc<Metrics>, FeedNormalizer) {
        let slots = Arc::new(SlotTable::new(2, 1));
        let m = Arc::new(Metrics::new());
        let n = Normalizer::new("v", slots.clone(), &m);
        let f = FeedNormalizer::new(
            n,
            NormalizeConfig {
                crossed,
                max_scale: 8,
            },
        );
        (slots, m, f)
    }

    #[test]
    fn trades_merge_into_the_book() {
        let (slots, _, mut f) = setup(CrossedPolicy::Reject);
        let s = SymbolId(0);
        let book = Quote::default()
            .with_bid(d("1.00"), d("5"))
            .with_ask(d("1.01"), d("6"));
        assert_eq!(
            f.apply(Update {
                sym: s,
                quote: book,
                seq: Some((0, 10))
            }),
            Ok(1)
        );
        let trade = Quote::default().with_last(d("1.01"), d("0.5"));
        assert_eq!(
            f.apply(Update {
                sym: s,
                quote: trade,
                seq: Some((1, 7))
            }),
            Ok(2)
        );
        let (q, _) = slots.read(s).unwrap();
        assert_eq!(
            (q.bid, q.ask, q.last, q.last_size),
            (d("1.00"), d("1.01"), d("1.01"), d("0.5"))
        );
    }

    #[test]
    fn out_of_order_scale_and_crossed() {
        let (slots, m, mut f) = setup(CrossedPolicy::Reject);
        let s = SymbolId(0);
        let book = |b: &str, a: &str| {
            Quote::default()
                .with_bid(d(b), d("1"))
                .with_ask(d(a), d("1"))
        };
        assert!(f
            .apply(Update {
                sym: s,
                quote: book("1.00", "1.01"),
                seq: Some((0, 10))
            })
            .is_ok());
        assert_eq!(
            f.apply(Update {
                sym: s,
                quote: book("1.00", "1.02"),
                seq: Some((0, 10))
            }),
            Err(Reject::OutOfOrder)
        );
        assert_eq!(
            f.apply(Update {
                sym: s,
                quote: book("1.00", "1.02"),
                seq: Some((0, 9))
            }),
            Err(Reject::OutOfOrder)
        );
        // Another stream numbers on its own.
        assert!(f
            .apply(Update {
                sym: s,
                quote: book("1.00", "1.02"),
                seq: Some((1, 1))
            })
            .is_ok());
        assert!(f
            .apply(Update {
                sym: s,
                quote: book("1.00", "1.03").with_ts(100),
                seq: None
            })
            .is_ok());
        assert_eq!(
            f.apply(Update {
                sym: s,
                quote: book("1.00", "1.03").with_ts(99),
                seq: None
            }),
            Err(Reject::OutOfOrder)
        );
        assert_eq!(
            f.apply(Update {
                sym: s,
                quote: book("1.000000001", "1.03"),
                seq: None
            }),
            Err(Reject::Scale)
        );
        assert_eq!(
            f.apply(Update {
                sym: s,
                quote: book("1.05", "1.03"),
                seq: None
            }),
            Err(Reject::Crossed)
        );
        assert_eq!(slots.seq(s), 3, "rejects never reach the slot");
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains(r#"tickergate_feed_rejects_total{feed="v",reason="out_of_order"} 3"#),
            "{text}"
        );
        assert!(text.contains(r#"tickergate_feed_rejects_total{feed="v",reason="scale"} 1"#));
    }

    /// Timestamps are ordered per stream: a trade (stream 1) older than the
    /// latest ticker (no seq: stream 0) is the trade channel's business,
    /// not out of order; within a stream, time still only moves forward.
    #[test]
    fn timestamps_are_ordered_within_their_stream() {
        let (_, _, mut f) = setup(CrossedPolicy::Reject);
        let s = SymbolId(0);
        let book = Quote::default()
            .with_bid(d("1.00"), d("1"))
            .with_ask(d("1.01"), d("1"));
        let trade = |id: u64, ts: i64| Update {
            sym: s,
            quote: Quote::default().with_last(d("1.01"), d("0.5")).with_ts(ts),
            seq: Some((1, id)),
        };
        let ticker = |ts: i64| Update {
            sym: s,
            quote: book.with_ts(ts),
            seq: None,
        };
        assert!(f.apply(ticker(200)).is_ok());
        assert!(f.apply(trade(7, 150)).is_ok(), "older than the ticker");
        let (q, _) = f.normalizer().slots.read(s).unwrap();
        assert_eq!(
            (q.ts, q.last),
            (200, d("1.01")),
            "the quote's time never steps back"
        );
        assert!(f.apply(ticker(210)).is_ok());
        assert_eq!(f.apply(trade(8, 149)), Err(Reject::OutOfOrder));
        assert_eq!(f.apply(ticker(205)), Err(Reject::OutOfOrder));
        assert!(f.apply(trade(8, 150)).is_ok(), "same time, next id");
        assert_eq!(f.apply(trade(8, 151)), Err(Reject::OutOfOrder), "same id");
    }

    /// The cached merge base is used only while the slot still holds this
    /// normalizer's last write: another writer's update is merged, not lost.
    #[test]
    fn merge_base_follows_other_writers() {
        let (slots, m, mut a) = setup(CrossedPolicy::Reject);
        let mut b = FeedNormalizer::new(
            Normalizer::new("w", slots.clone(), &m),
            NormalizeConfig {
                crossed: CrossedPolicy::Reject,
                max_scale: 8,
            },
        );
        let s = SymbolId(0);
        let book = |bid: &str| {
            Quote::default()
                .with_bid(d(bid), d("1"))
                .with_ask(d("9"), d("1"))
        };
        assert_eq!(
            a.apply(Update {
                sym: s,
                quote: book("1"),
                seq: None
            }),
            Ok(1)
        );
        let trade = Quote::default().with_last(d("5.50"), d("2"));
        assert_eq!(
            b.apply(Update {
                sym: s,
                quote: trade,
                seq: None
            }),
            Ok(2)
        );
        assert_eq!(
            a.apply(Update {
                sym: s,
                quote: book("2"),
                seq: None
            }),
            Ok(3)
        );
        let (q, _) = slots.read(s).unwrap();
        assert_eq!(q.bid, d("2"));
        assert_eq!(
            q.last.to_string(),
            "5.50",
            "the other writer's trade is kept"
        );
        // And the cache serves the next merge exactly as a slot read would.
        assert_eq!(
            a.apply(Update {
                sym: s,
                quote: book("3"),
                seq: None
            }),
            Ok(4)
        );
        let (q2, _) = slots.read(s).unwrap();
        assert_eq!(
            (q2.bid, q2.last, q2.last_size, q2.present),
            (d("3"), q.last, q.last_size, q.present)
        );
    }

    #[test]
    fn crossed_can_be_flagged_instead() {
        let (slots, m, mut f) = setup(CrossedPolicy::Flag);
        let q = Quote::default()
            .with_bid(d("2"), d("1"))
            .with_ask(d("1"), d("1"));
        assert_eq!(
            f.apply(Update {
                sym: SymbolId(1),
                quote: q,
                seq: None
            }),
            Ok(1)
        );
        assert_eq!(slots.read(SymbolId(1)).unwrap().0.bid, d("2"));
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains(r#"tickergate_feed_flagged_total{feed="v",reason="crossed"} 1"#));
    }

    #[test]
    fn log_limiter_caps_lines() {
        let mut l = LogLimiter::new(3, std::time::Duration::from_secs(3600));
        let allowed = (0..100).filter(|_| l.allow(|_| {})).count();
        assert_eq!(allowed, 3);
    }
}
