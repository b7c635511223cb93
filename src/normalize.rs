//! The normalizer: the only way into the slots. It validates a quote from a
//! feed, stamps `gw_ts`, writes the slot and counts the update; a quote that
//! fails validation is counted by feed and reason and never reaches a
//! subscriber.

use crate::metrics::Metrics;
use crate::model::{field, now_ns, Quote, SymbolId};
use crate::slots::SlotTable;
use prometheus::IntCounter;
use rust_decimal::Decimal;
use std::sync::Arc;

/// Why a quote was rejected; the label value in `feed_rejects_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    NonPositivePrice,
    NegativeSize,
    Crossed,
    Empty,
}

impl Reject {
    pub const ALL: [Reject; 4] = [
        Reject::NonPositivePrice,
        Reject::NegativeSize,
        Reject::Crossed,
        Reject::Empty,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::NonPositivePrice => "non_positive_price",
            Reject::NegativeSize => "negative_size",
            Reject::Crossed => "crossed",
            Reject::Empty => "empty",
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
    updates: IntCounter,
    rejects: [IntCounter; 4],
}

impl Normalizer {
    pub fn new(feed: &str, slots: Arc<SlotTable>, metrics: &Metrics) -> Self {
        Normalizer {
            slots,
            updates: metrics.updates_in.with_label_values(&[feed]),
            rejects: Reject::ALL
                .map(|r| metrics.feed_rejects.with_label_values(&[feed, r.as_str()])),
        }
    }

    /// Validates and publishes; returns the symbol's new seq.
    pub fn apply(&self, sym: SymbolId, mut q: Quote) -> Result<u64, Reject> {
        if let Err(r) = validate(&q) {
            self.rejects[r as usize].inc();
            return Err(r);
        }
        if q.gw_ts == 0 {
            q.gw_ts = now_ns();
        }
        let seq = self.slots.publish(sym, &q);
        self.updates.inc();
        Ok(seq)
    }
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
        let m = Metrics::new();
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
