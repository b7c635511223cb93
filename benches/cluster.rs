//! Micro-benchmarks of the NATS-free part of scale-out (issue 18), through
//! the public library API.
//!
//! Run: `taskset -c 1 cargo bench --bench cluster`. Figures and their
//! conditions are in BENCHMARKS.md (session 12).
//!
//! * `encode_quote`: what an ingest node does per quote besides handing
//!   it to NATS: the client `quote` JSON into a reused `String`.
//! * `decode_quote`: the edge's read of that payload
//!   (`cluster::wire::decode_quote`: one pass, four decimals parsed).
//! * `publish_at`: the edge's slot write under the ingest's seq plus the
//!   notify (a subscriber on one shard, its pass still pending).
//! * `edge_apply`: what the edge's follower does per NATS message after
//!   the NATS client hands it over (`Follower::apply`): decode, check the
//!   name, `publish_at`, count. The NATS client's own work (socket read,
//!   protocol parse, the message's allocation and channel) is not in it:
//!   `cluster edge-ingest` measures the whole.
//! * `roundtrip`: `encode_quote` + `edge_apply`, the whole NATS-free cost
//!   of one quote across an ingest and one edge.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rust_decimal::Decimal;
use std::hint::black_box;
use std::str::FromStr;
use tickergate::cluster::wire::decode_quote;
use tickergate::model::{Quote, Symbols};
use tickergate::protocol::encode_quote;
use tickergate::slots::SlotTable;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn quote() -> Quote {
    Quote {
        gw_ts: 1_763_900_000_123_501_234,
        ..Quote::default()
    }
    .with_bid(d("189.12"), d("300"))
    .with_ask(d("189.14"), d("200"))
    .with_ts(1_763_900_000_123_456_789)
}

fn cluster(c: &mut Criterion) {
    let mut g = c.benchmark_group("cluster");
    g.throughput(Throughput::Elements(1));
    let mut symbols = Symbols::new();
    for i in 0..100 {
        symbols.intern(&format!("SIM{i}")).unwrap();
    }
    let sym = symbols.intern("AAPL").unwrap();
    let q = quote();
    let mut out = String::with_capacity(256);
    encode_quote(&mut out, &symbols, sym, 42, &q, false);
    let payload = out.clone();

    g.bench_function("encode_quote", |b| {
        b.iter(|| {
            out.clear();
            encode_quote(
                &mut out,
                &symbols,
                black_box(sym),
                black_box(42),
                black_box(&q),
                false,
            );
            black_box(out.len())
        })
    });
    g.bench_function("decode_quote", |b| {
        b.iter(|| black_box(decode_quote(black_box(payload.as_bytes())).unwrap().seq))
    });

    let table = SlotTable::new(symbols.len(), 2);
    table.set_interest(sym, 0, true);
    let mut seq = 0u64;
    g.bench_function("publish_at", |b| {
        b.iter(|| {
            seq += 1;
            black_box(table.publish_at(black_box(sym), black_box(&q), seq))
        })
    });

    // Follower::apply: decode, name check, publish_at under the payload's
    // seq (rewritten each time so none is refused as old).
    let table = SlotTable::new(symbols.len(), 2);
    table.set_interest(sym, 0, true);
    let mut seq = 0u64;
    let mut buf = String::with_capacity(256);
    g.bench_function("edge_apply", |b| {
        b.iter_batched_ref(
            || {
                seq += 1;
                buf.clear();
                encode_quote(&mut buf, &symbols, sym, seq, &q, false);
                buf.clone()
            },
            |p| {
                let w = decode_quote(p.as_bytes()).unwrap();
                assert_eq!(w.symbol, symbols.name(sym));
                black_box(table.publish_at(sym, &w.quote, w.seq))
            },
            criterion::BatchSize::SmallInput,
        )
    });

    let table = SlotTable::new(symbols.len(), 2);
    table.set_interest(sym, 0, true);
    let mut seq = 0u64;
    g.bench_function("roundtrip", |b| {
        b.iter(|| {
            seq += 1;
            out.clear();
            encode_quote(&mut out, &symbols, sym, seq, black_box(&q), false);
            let w = decode_quote(out.as_bytes()).unwrap();
            assert_eq!(w.symbol, symbols.name(sym));
            black_box(table.publish_at(sym, &w.quote, w.seq))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = cluster
}
criterion_main!(benches);
