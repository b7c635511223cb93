//! Parse + normalize of one venue message, per venue: the ingest hot path
//! of each adapter (frame copy, parse, exact decimals, merge, validate,
//! slot write, notify), with the older paths as baselines in the same run.
//!
//! Run: `taskset -c 1 cargo bench --bench venues`. For each venue:
//! * `simd` is the adapter itself: `Venue::parse` then
//!   `FeedNormalizer::apply`. For every venue that is the validated fast
//!   path for the canonical frame (`Binance::parse_fast`,
//!   `Coinbase::parse_fast`, `Kraken::parse_fast`: no DOM, and for Kraken
//!   no number-quoting pass). All use the fast decimal parser and the
//!   normalizer's cached merge base.
//! * `general`: `parse_general`, the simd-json DOM path every frame took
//!   before the fast path (and still takes when the fast path declines;
//!   Kraken's after the number-quoting pass), then the same
//!   `FeedNormalizer::apply`.
//! * `parse_fast` / `parse_general` (Coinbase, Kraken): the two parsers
//!   alone, without the normalizer (Binance's are in `binance_parts`).
//! * `serde` parses the same bytes with serde_json into a typed struct of
//!   borrowed `&str` fields (for Kraken, the quoted text, since serde_json
//!   without `arbitrary_precision` has no exact number text), then
//!   `parse_decimal_reference` (the `Decimal::from_str_exact` parser, as
//!   before the fast decimal path) and the same `FeedNormalizer::apply`.
//! * `binance/simd_typed`: simd-json's typed serde deserializer, same
//!   decimals as `serde`.
//! * `binance_parts`: where a Binance quote's time goes: the fast path's
//!   parse alone, the general path's parse alone, and `FeedNormalizer::apply`
//!   alone; `decimal`: one price through `parse_decimal` (fast path) and
//!   `parse_decimal_reference`.
//!
//! The ratios within one run are the figures that matter (the box is
//! shared); see BENCHMARKS.md.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use tickergate::config::{NormalizeConfig, VenueConfig};
use tickergate::feed::coinbase::Coinbase;
use tickergate::feed::kraken::Kraken;
use tickergate::feed::wire::{parse_decimal, parse_decimal_reference};
use tickergate::feed::{Event, ParseError, SymbolMap, Venue};
use tickergate::metrics::Metrics;
use tickergate::model::{Quote, Symbols};
use tickergate::normalize::{FeedNormalizer, Normalizer, Update};
use tickergate::slots::SlotTable;

const BINANCE: &str = r#"{"stream":"btcusdt@bookTicker","data":{"u":400900217,"s":"BTCUSDT","b":"97000.01000000","B":"0.51230000","a":"97000.02000000","A":"1.00000000"}}"#;
const COINBASE: &str = r#"{"type":"ticker","sequence":37475248783,"product_id":"BTC-USD","price":"97000.02","open_24h":"96010.79","volume_24h":"24553.79269678","low_24h":"95280.52","high_24h":"97313.8","volume_30d":"978878.60117027","best_bid":"97000.01","best_bid_size":"0.46688654","best_ask":"97000.02","best_ask_size":"1.56637040","side":"buy","time":"2026-11-23T15:28:22.061769Z","trade_id":370843401,"last_size":"0.0010000"}"#;
const KRAKEN: &str = r#"{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":97000.1,"bid_qty":0.50000000,"ask":97000.2,"ask_qty":1.25,"last":97000.2,"volume":1234.5678,"vwap":96950.3,"low":96000.0,"high":97500.0,"change":120.5,"change_pct":0.12}]}"#;

fn setup(venue_sym: &str) -> (SymbolMap, FeedNormalizer) {
    let mut syms = Symbols::new();
    let table: BTreeMap<String, String> = [(venue_sym.to_string(), "BTC-USD".to_string())].into();
    let map = SymbolMap::build(&table, &mut syms).expect("valid map");
    let slots = Arc::new(SlotTable::new(syms.len(), 2));
    // A subscriber on shard 0: publish takes the full mark path.
    slots.set_interest(tickergate::SymbolId(0), 0, true);
    let metrics = Arc::new(Metrics::new());
    let norm = FeedNormalizer::new(
        Normalizer::new("bench", slots, &metrics),
        NormalizeConfig::default(),
    );
    (map, norm)
}

/// Bumps the venue sequence in place so the normalizer never sees a repeat.
fn bump_seq(events: &mut [Event], n: u64) {
    for e in events {
        if let Event::Quote(Update {
            seq: Some((_, s)), ..
        })
        | Event::Trade(
            Update {
                seq: Some((_, s)), ..
            },
            _,
        ) = e
        {
            *s += n;
        }
    }
}

fn apply_all(norm: &mut FeedNormalizer, events: &mut Vec<Event>) {
    for e in events.drain(..) {
        match e {
            Event::Quote(u) => {
                let _ = black_box(norm.apply(u));
            }
            // A Coinbase ticker with a trade: the trade is stored too.
            Event::Trade(u, info) => {
                let _ = black_box(norm.apply_with(u, Some(info)));
            }
            _ => {}
        }
    }
}

fn bench_venue<V: Venue>(
    c: &mut Criterion,
    name: &str,
    frame: &str,
    venue_sym: &str,
    make: impl Fn(SymbolMap) -> V,
    mut serde_path: impl FnMut(&mut Vec<u8>, &SymbolMap, u64) -> Option<(Quote, Option<(u8, u64)>)>,
) {
    let mut g = c.benchmark_group(format!("venue/{name}"));
    g.throughput(Throughput::Elements(1));
    {
        let (map, mut norm) = setup(venue_sym);
        let mut venue = make(map);
        let mut buf = Vec::with_capacity(1024);
        let mut events = Vec::with_capacity(4);
        let mut n = 0u64;
        g.bench_function("simd", |b| {
            b.iter(|| {
                n += 1;
                buf.clear();
                buf.extend_from_slice(frame.as_bytes());
                let _ = venue.parse(&mut buf, &mut events);
                bump_seq(&mut events, n);
                apply_all(&mut norm, &mut events);
            })
        });
    }
    {
        let (map, mut norm) = setup(venue_sym);
        let mut buf = Vec::with_capacity(1024);
        let mut n = 0u64;
        g.bench_function("serde", |b| {
            b.iter(|| {
                n += 1;
                buf.clear();
                buf.extend_from_slice(frame.as_bytes());
                if let Some((q, seq)) = serde_path(&mut buf, &map, n) {
                    let _ = black_box(norm.apply(Update {
                        sym: tickergate::SymbolId(0),
                        quote: q,
                        seq,
                    }));
                }
            })
        });
    }
    g.finish();
}

/// A venue's general path end to end (`general`: `parse_general` then
/// apply) and its two parsers alone (`parse_fast`, `parse_general`).
fn fast_and_general<V: Venue>(
    c: &mut Criterion,
    name: &str,
    frame: &str,
    venue_sym: &str,
    make: impl Fn(SymbolMap) -> V,
    mut fast: impl FnMut(&V, &[u8], &mut Vec<Event>) -> bool,
    mut general: impl FnMut(&mut V, &mut [u8], &mut Vec<Event>) -> Result<(), ParseError>,
) {
    let mut g = c.benchmark_group(format!("venue/{name}"));
    g.throughput(Throughput::Elements(1));
    let (map, mut norm) = setup(venue_sym);
    let mut venue = make(map);
    let mut buf = Vec::with_capacity(1024);
    let mut events = Vec::with_capacity(4);
    // Sanity: both paths take the bench frame, to the same events.
    assert!(fast(&venue, frame.as_bytes(), &mut events));
    let mut general_events = Vec::new();
    buf.extend_from_slice(frame.as_bytes());
    general(&mut venue, &mut buf, &mut general_events).expect("the bench frame parses");
    assert_eq!(events, general_events);
    events.clear();
    let mut n = 0u64;
    g.bench_function("general", |b| {
        b.iter(|| {
            n += 1;
            buf.clear();
            buf.extend_from_slice(frame.as_bytes());
            let _ = general(&mut venue, &mut buf, &mut events);
            bump_seq(&mut events, n);
            apply_all(&mut norm, &mut events);
        })
    });
    g.bench_function("parse_fast", |b| {
        b.iter(|| {
            events.clear();
            black_box(fast(&venue, black_box(frame.as_bytes()), &mut events))
        })
    });
    g.bench_function("parse_general", |b| {
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(frame.as_bytes());
            events.clear();
            black_box(general(&mut venue, &mut buf, &mut events).is_ok())
        })
    });
    g.finish();
}

#[derive(Deserialize)]
struct BnEnvelope<'a> {
    #[serde(borrow)]
    stream: &'a str,
    #[serde(borrow)]
    data: BnBook<'a>,
}

#[derive(Deserialize)]
struct BnBook<'a> {
    u: u64,
    s: &'a str,
    b: &'a str,
    #[serde(rename = "B")]
    bq: &'a str,
    a: &'a str,
    #[serde(rename = "A")]
    aq: &'a str,
}

#[derive(Deserialize)]
struct CbTicker<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
    sequence: u64,
    product_id: &'a str,
    price: &'a str,
    best_bid: &'a str,
    best_bid_size: &'a str,
    best_ask: &'a str,
    best_ask_size: &'a str,
    time: &'a str,
    last_size: &'a str,
}

#[derive(Deserialize)]
struct KrMsg<'a> {
    channel: &'a str,
    #[serde(borrow)]
    data: Vec<KrEntry<'a>>,
}

#[derive(Deserialize)]
struct KrEntry<'a> {
    symbol: &'a str,
    bid: &'a str,
    bid_qty: &'a str,
    ask: &'a str,
    ask_qty: &'a str,
    last: &'a str,
}

fn benches(c: &mut Criterion) {
    bench_venue(
        c,
        "binance",
        BINANCE,
        "BTCUSDT",
        |m| tickergate::feed::binance::Binance::new(&VenueConfig::default(), m),
        |buf, map, n| {
            let e: BnEnvelope = serde_json::from_slice(buf).ok()?;
            if !e.stream.ends_with("@bookTicker") {
                return None;
            }
            map.get(e.data.s).ok()?;
            let q = Quote::default()
                .with_bid(
                    parse_decimal_reference(e.data.b, "b").ok()?,
                    parse_decimal_reference(e.data.bq, "B").ok()?,
                )
                .with_ask(
                    parse_decimal_reference(e.data.a, "a").ok()?,
                    parse_decimal_reference(e.data.aq, "A").ok()?,
                );
            Some((q, Some((0, e.data.u + n))))
        },
    );
    bench_venue(
        c,
        "coinbase",
        COINBASE,
        "BTC-USD",
        |m| tickergate::feed::coinbase::Coinbase::new(&VenueConfig::default(), m),
        |buf, map, n| {
            let t: CbTicker = serde_json::from_slice(buf).ok()?;
            if t.ty != "ticker" {
                return None;
            }
            map.get(t.product_id).ok()?;
            let ts = tickergate::feed::wire::parse_rfc3339_ns(t.time, "time").ok()?;
            let q = Quote::default()
                .with_bid(
                    parse_decimal_reference(t.best_bid, "b").ok()?,
                    parse_decimal_reference(t.best_bid_size, "b").ok()?,
                )
                .with_ask(
                    parse_decimal_reference(t.best_ask, "a").ok()?,
                    parse_decimal_reference(t.best_ask_size, "a").ok()?,
                )
                .with_last(
                    parse_decimal_reference(t.price, "p").ok()?,
                    parse_decimal_reference(t.last_size, "l").ok()?,
                )
                // Monotonic so the normalizer's ts check never refuses it.
                .with_ts(ts + n as i64);
            Some((q, Some((0, t.sequence + n))))
        },
    );
    fast_and_general(
        c,
        "coinbase",
        COINBASE,
        "BTC-USD",
        |m| Coinbase::new(&VenueConfig::default(), m),
        |v, f, out| match v.parse_fast(f) {
            Some(e) => {
                out.push(e);
                true
            }
            None => false,
        },
        |v, b, out| v.parse_general(b, out),
    );
    // simd-json's own typed deserializer (serde API, buffers reused) on the
    // Binance frame: what a typed simd path would cost.
    {
        let mut g = c.benchmark_group("venue/binance");
        g.throughput(Throughput::Elements(1));
        let (map, mut norm) = setup("BTCUSDT");
        let mut buf = Vec::with_capacity(1024);
        let mut bufs = simd_json::Buffers::default();
        let mut n = 0u64;
        g.bench_function("simd_typed", |b| {
            b.iter(|| {
                n += 1;
                buf.clear();
                buf.extend_from_slice(BINANCE.as_bytes());
                let Ok(e) =
                    simd_json::serde::from_slice_with_buffers::<BnEnvelope>(&mut buf, &mut bufs)
                else {
                    return;
                };
                if map.get(e.data.s).is_err() {
                    return;
                }
                let (Ok(b), Ok(bq), Ok(a), Ok(aq)) = (
                    parse_decimal_reference(e.data.b, "b"),
                    parse_decimal_reference(e.data.bq, "B"),
                    parse_decimal_reference(e.data.a, "a"),
                    parse_decimal_reference(e.data.aq, "A"),
                ) else {
                    return;
                };
                let q = Quote::default().with_bid(b, bq).with_ask(a, aq);
                let _ = black_box(norm.apply(Update {
                    sym: tickergate::SymbolId(0),
                    quote: q,
                    seq: Some((0, e.data.u + n)),
                }));
            })
        });
        g.finish();
    }
    binance_parts(c);
    let mut quoter = tickergate::feed::kraken::NumberQuoter::default();
    bench_venue(
        c,
        "kraken",
        KRAKEN,
        "BTC/USD",
        |m| tickergate::feed::kraken::Kraken::new(&VenueConfig::default(), m),
        move |buf, map, _| {
            let quoted = quoter.rewrite(buf);
            let msg: KrMsg = serde_json::from_slice(quoted).ok()?;
            if msg.channel != "ticker" {
                return None;
            }
            let e = msg.data.first()?;
            map.get(e.symbol).ok()?;
            let mut q = Quote::default()
                .with_bid(
                    parse_decimal_reference(e.bid, "bid").ok()?,
                    parse_decimal_reference(e.bid_qty, "q").ok()?,
                )
                .with_ask(
                    parse_decimal_reference(e.ask, "ask").ok()?,
                    parse_decimal_reference(e.ask_qty, "q").ok()?,
                );
            q.last = parse_decimal_reference(e.last, "last").ok()?;
            q.present |= tickergate::model::field::LAST;
            Some((q, None))
        },
    );
    fast_and_general(
        c,
        "kraken",
        KRAKEN,
        "BTC/USD",
        |m| Kraken::new(&VenueConfig::default(), m),
        |v, f, out| v.parse_fast(f, out).is_some(),
        |v, b, out| v.parse_general(b, out),
    );
}

fn binance_parts(c: &mut Criterion) {
    use tickergate::feed::binance::Binance;
    {
        let mut g = c.benchmark_group("venue/binance");
        g.throughput(Throughput::Elements(1));
        let (map, mut norm) = setup("BTCUSDT");
        let mut venue = Binance::new(&VenueConfig::default(), map);
        let mut buf = Vec::with_capacity(1024);
        let mut events = Vec::with_capacity(4);
        let mut n = 0u64;
        g.bench_function("general", |b| {
            b.iter(|| {
                n += 1;
                buf.clear();
                buf.extend_from_slice(BINANCE.as_bytes());
                let _ = venue.parse_general(&mut buf, &mut events);
                bump_seq(&mut events, n);
                apply_all(&mut norm, &mut events);
            })
        });
        g.finish();
    }
    let mut g = c.benchmark_group("binance_parts");
    g.throughput(Throughput::Elements(1));
    let (map, mut norm) = setup("BTCUSDT");
    let mut venue = Binance::new(&VenueConfig::default(), map);
    assert!(venue.parse_fast(BINANCE.as_bytes()).is_some());
    g.bench_function("parse_fast", |b| {
        b.iter(|| black_box(venue.parse_fast(black_box(BINANCE.as_bytes()))))
    });
    let mut buf = Vec::with_capacity(1024);
    let mut events = Vec::with_capacity(4);
    g.bench_function("parse_general", |b| {
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(BINANCE.as_bytes());
            events.clear();
            black_box(venue.parse_general(&mut buf, &mut events).is_ok())
        })
    });
    let Some(Event::Quote(Update { sym, quote, .. })) = venue.parse_fast(BINANCE.as_bytes()) else {
        panic!("the bench frame is a quote");
    };
    let mut n = 0u64;
    g.bench_function("apply", |b| {
        b.iter(|| {
            n += 1;
            black_box(norm.apply(Update {
                sym,
                quote: black_box(quote),
                seq: Some((0, n)),
            }))
        })
    });
    g.finish();
    let mut g = c.benchmark_group("decimal");
    g.throughput(Throughput::Elements(1));
    g.bench_function("fast", |b| {
        b.iter(|| black_box(parse_decimal(black_box("97000.01000000"), "b")))
    });
    g.bench_function("reference", |b| {
        b.iter(|| black_box(parse_decimal_reference(black_box("97000.01000000"), "b")))
    });
    g.finish();
}

criterion_group! {
    name = venues;
    config = common::config();
    targets = benches
}
criterion_main!(venues);
