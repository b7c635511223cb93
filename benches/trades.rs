//! Micro-benchmarks of trades as events (see src/trades.rs), through the
//! public library API.
//!
//! Run: `taskset -c 1 cargo bench --bench trades`. Figures and their
//! conditions are in BENCHMARKS.md.
//!
//! * `push`: one trade into its symbol's ring (the normalizer's extra work
//!   per trade, before the quote write that wakes the subscribers).
//! * `read_encode`: one subscriber's share per trade delivered: the ring
//!   entry read (seqlock) and the trade's JSON appended to a reused frame
//!   buffer. Every subscriber of the symbol does this for each trade (a
//!   trade is copied from the ring, not queued per session).
//! * `normalize_with_trade` vs `normalize_quote`: `Normalizer::apply` of a
//!   quote that carries a trade (ring push, slot write, shard notify,
//!   counters) next to the same quote without one; `normalize_trade_unheard`
//!   is the trade when no subscription takes the symbol's trades (not
//!   stored).

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rust_decimal::Decimal;
use std::hint::black_box;
use std::str::FromStr;
use std::sync::Arc;
use tickergate::metrics::Metrics;
use tickergate::model::{Quote, SymbolId};
use tickergate::normalize::Normalizer;
use tickergate::protocol::encode_trade;
use tickergate::slots::SlotTable;
use tickergate::trades::{Read, Side, Trade, TradeInfo, TradeTable};

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal")
}

fn trade(n: i64) -> Trade {
    Trade {
        price: d("97000.02000000"),
        size: d("0.00100000"),
        side: Some(Side::Buy),
        trade_id: Some(n as u64),
        ts: 1_763_900_000_000_000_000 + n,
        gw_ts: 1_763_900_000_000_000_100 + n,
    }
}

fn ring(c: &mut Criterion) {
    let mut g = c.benchmark_group("trades");
    g.throughput(Throughput::Elements(1));
    let table = TradeTable::new(1, 1024);
    let sym = SymbolId(0);
    table.listen(sym, true);
    let t = trade(1);
    g.bench_function("push", |b| {
        b.iter(|| black_box(table.push(sym, black_box(&t))))
    });
    // A full ring to read from.
    for n in 0..1024 {
        table.push(sym, &trade(n));
    }
    let head = table.head(sym);
    let mut out = String::with_capacity(64 * 1024);
    let mut k = 0u64;
    g.bench_function("read_encode", |b| {
        b.iter(|| {
            let seq = head - (k % 1000);
            k += 1;
            if out.len() > 60_000 {
                out.clear();
            }
            if let Read::Trade(t) = table.read(sym, seq) {
                encode_trade(&mut out, "BTC-USD", seq, &t);
            }
            black_box(out.len())
        })
    });
    g.finish();
}

fn normalize(c: &mut Criterion) {
    let mut g = c.benchmark_group("trades");
    g.throughput(Throughput::Elements(1));
    let slots = Arc::new(SlotTable::new(1, 1));
    slots.set_interest(SymbolId(0), 0, true);
    // A subscriber takes its trades (without one a trade is not stored:
    // `normalize_trade_unheard`).
    let norm = Normalizer::new("bench", slots.clone(), &Arc::new(Metrics::new()));
    let q = Quote::default()
        .with_bid(d("97000.01"), d("0.5"))
        .with_ask(d("97000.03"), d("0.4"))
        .with_last(d("97000.02000000"), d("0.00100000"))
        .with_ts(1_763_900_000_000_000_000);
    let info = TradeInfo {
        side: Some(Side::Sell),
        trade_id: Some(7),
    };
    g.bench_function("normalize_quote", |b| {
        b.iter(|| black_box(norm.apply(SymbolId(0), black_box(q))))
    });
    g.bench_function("normalize_trade_unheard", |b| {
        b.iter(|| black_box(norm.apply_with(SymbolId(0), black_box(q), Some(info))))
    });
    slots.trades().listen(SymbolId(0), true);
    g.bench_function("normalize_with_trade", |b| {
        b.iter(|| black_box(norm.apply_with(SymbolId(0), black_box(q), Some(info))))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = ring, normalize
}
criterion_main!(benches);
