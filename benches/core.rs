//! Micro-benchmarks of the hot paths, through the public library API.
//!
//! Run: `cargo bench --bench core` (pin it for steadier numbers:
//! `taskset -c 1 cargo bench --bench core`). Each benchmark reports time
//! per operation and, via `Throughput::Elements(1)`, operations per second
//! on one core. Figures and their conditions are in BENCHMARKS.md.
//!
//! * `slots`: the feed side of a latest-value slot. `publish` is a seqlock
//!   write plus the notify path (interest set on one shard). Two variants:
//!   the shard still has its wake pending (the common case under load: the
//!   shard has not run its pass yet), and publish followed by the shard's
//!   drain, so every publish takes the full mark-and-wake path. `read` is an
//!   uncontended seqlock read.
//! * `encode_quote`: one quote object into a reused `String`, an equity
//!   quote and a crypto quote with 8-decimal sizes, and one `Decimal`
//!   through `Display` to show how much of that is decimal formatting.
//! * `parse_op`: a typical 10-symbol subscribe op through the gateway's
//!   parser (simd-json DOM plus field checks, including the copy into a
//!   reused buffer that the session makes), next to serde_json parsing the
//!   same bytes into a `Value` and into a typed struct.
//! * `normalize`: `Normalizer::apply`, the ingest path (validate, stamp
//!   `gw_ts`, publish, count).
//! * `fanout_flush/<n>`: one symbol held by `n` = 1, 100, 1,000, 10,000
//!   sessions of one shard. One flush: the feed publishes an update, the
//!   shard's pass (`Fanout::wake_dirty`, the body of `run_shard`) wakes every
//!   session, and each session does what its `build_frame` does per wake:
//!   clears its pending flag and appends the newest encoded quote to its own
//!   frame buffer (`Fanout::append_latest`: the first encodes, the rest
//!   copy). Time is per flush; `Throughput::Elements(n)` gives subscribers
//!   per second, so per-subscriber time is its inverse. No task is parked
//!   on the sessions' `Notify` (no runtime here), so a wake stores a permit
//!   instead of scheduling a task: the scheduler's share is not in it.
//! * `ingest_e2e`: the whole feed-side path from raw bytes, reported as
//!   quotes per second: the Binance `bookTicker` frames of
//!   `feeds/binance/session.jsonl`, in turn, copied into a reused buffer (as
//!   the supervisor does), `Venue::parse` (the adapter's fast path),
//!   `FeedNormalizer::apply` (order check, merge, validate, stamp `gw_ts`),
//!   slot write and shard notify (a subscriber on shard 0, its pass still
//!   pending). `binance_general` is the same with the adapter's general
//!   simd-json DOM path (`Binance::parse_general`), the pre-fast-path parser,
//!   for comparison in the same run. `coinbase`/`kraken` (and their
//!   `_general` variants) are the same for
//!   the ticker frames of `feeds/coinbase/session.jsonl` (`Coinbase::
//!   parse_fast` vs `Coinbase::parse_general`) and the ticker frames of
//!   `feeds/kraken/session.jsonl` (`Kraken::parse_fast` vs
//!   `Kraken::parse_general`, the number rewrite plus DOM; one frame holds
//!   two pairs, so 5 quotes per 4 frames). In every case each quote's
//!   sequence and venue time are replaced by a counter, so every quote is
//!   accepted (the bench asserts it): none takes the cheaper reject path.
//! * `consolidated/<n>_legs`: one leg update of a consolidated symbol with
//!   `n` = 2 or 4 legs (each leg on its own venue): the leg's slot write
//!   and notify, then the recompute in the same thread (try-lock, read of
//!   every leg's status and slot, best bid and ask, the consolidated slot's
//!   write and notify). Legs take turns and their prices move, so each
//!   update reads fresh values and the best side changes hands.
//!   `consolidated/baseline` is the same leg write with no consolidated
//!   symbol: the difference is the recompute. Subscribers on shard 0 for
//!   every symbol, the shard's pass still pending.

mod common;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::str::FromStr;
use std::sync::Arc;
use tickergate::config::{NormalizeConfig, VenueConfig};
use tickergate::consolidated::Consolidation;
use tickergate::encode::EncodeCache;
use tickergate::fanout::{Fanout, SessionHandle};
use tickergate::feed::binance::Binance;
use tickergate::feed::coinbase::Coinbase;
use tickergate::feed::kraken::Kraken;
use tickergate::feed::{Event, ParseError, SymbolMap, Venue};
use tickergate::metrics::Metrics;
use tickergate::model::{field, Quote, SymbolId, Symbols};
use tickergate::normalize::{FeedNormalizer, Normalizer, Update};
use tickergate::protocol::{encode_quote, parse_op};
use tickergate::slots::SlotTable;

/// Symbol table size used by the slot benches: the default sim's 300.
const NSYMS: usize = 300;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).expect("valid decimal literal")
}

/// AAPL-like quote: 2-decimal prices, round-lot sizes, a trade and a venue ts.
fn equity_quote() -> Quote {
    Quote {
        gw_ts: 1_763_900_000_123_501_234,
        ..Quote::default()
    }
    .with_bid(d("189.12"), d("300"))
    .with_ask(d("189.14"), d("200"))
    .with_last(d("189.13"), d("100"))
    .with_ts(1_763_900_000_123_456_789)
}

/// BTC-USD-like quote: 2-decimal prices, 8-decimal sizes.
fn crypto_quote() -> Quote {
    Quote {
        gw_ts: 1_763_900_000_123_501_234,
        ..Quote::default()
    }
    .with_bid(d("97000.01"), d("0.12345678"))
    .with_ask(d("97000.02"), d("1.50000000"))
    .with_last(d("97000.02"), d("0.00012000"))
    .with_ts(1_763_900_000_123_456_789)
}

const SUBSCRIBE_OP: &[u8] = br#"{"op":"subscribe","id":1,"symbols":["AAPL","MSFT","NVDA","AMZN","GOOGL","META","TSLA","BTC-USD","ETH-USD","SOL-USD"]}"#;

/// Typed serde baseline: what a hand-written serde client op would look like.
#[derive(Deserialize)]
#[allow(dead_code)]
struct TypedOp {
    op: String,
    id: Option<i64>,
    #[serde(default)]
    symbols: Vec<String>,
    max_hz: Option<f64>,
    snapshot: Option<bool>,
}

/// The issue's ingest reference, "serde_json typed parse of an 86-byte
/// tick", measured in the same run as `ingest_e2e` so the two compare on
/// whatever speed the machine has that day.
const TICK_86: &[u8] =
    br#"{"s":"BTCUSDT","b":"97000.01","B":"0.5123","a":"97000.02","A":"1.0","E":1763900000001}"#;

/// The tick's typed form (borrowed strings: the cheapest serde parse).
#[derive(Deserialize)]
#[allow(dead_code, non_snake_case)]
struct Tick<'a> {
    s: &'a str,
    b: &'a str,
    B: &'a str,
    a: &'a str,
    A: &'a str,
    E: u64,
}

fn slots(c: &mut Criterion) {
    let mut g = c.benchmark_group("slots");
    g.throughput(Throughput::Elements(1));
    let sym = SymbolId(7);
    let q = equity_quote();

    let table = SlotTable::new(NSYMS, 2);
    table.set_interest(sym, 0, true);
    g.bench_function("publish/wake_pending", |b| {
        b.iter(|| black_box(table.publish(black_box(sym), black_box(&q))))
    });

    let table = SlotTable::new(NSYMS, 2);
    table.set_interest(sym, 0, true);
    g.bench_function("publish+drain", |b| {
        b.iter(|| {
            let seq = table.publish(black_box(sym), black_box(&q));
            let mut n = 0u32;
            table.shard(0).drain(|s| n += s.0);
            black_box((seq, n))
        })
    });

    let table = SlotTable::new(NSYMS, 2);
    table.publish(sym, &q);
    g.bench_function("read", |b| b.iter(|| black_box(table.read(black_box(sym)))));
    g.bench_function("seq", |b| b.iter(|| black_box(table.seq(black_box(sym)))));
    g.finish();
}

fn consolidated(c: &mut Criterion) {
    let mut g = c.benchmark_group("consolidated");
    g.throughput(Throughput::Elements(1));
    // Each leg's quotes: a few books a tick apart, so the best side moves
    // between legs as they take turns.
    let books: Vec<Quote> = (0..8i64)
        .map(|i| {
            Quote {
                gw_ts: 1_763_900_000_123_501_234 + i,
                ..Quote::default()
            }
            .with_bid(Decimal::new(9_700_001 + i % 3, 2), d("0.12345678"))
            .with_ask(Decimal::new(9_700_006 - i % 4, 2), d("1.50000000"))
            .with_ts(1_763_900_000_123_456_789 + i)
        })
        .collect();
    for legs in [0usize, 2, 4] {
        let table = SlotTable::new(NSYMS, 2);
        for s in 0..NSYMS {
            table.set_interest(SymbolId(s as u32), 0, true);
        }
        let n = legs.max(2);
        let leg_ids: Vec<SymbolId> = (0..n as u32).map(SymbolId).collect();
        if legs > 0 {
            let plan = [(
                SymbolId(NSYMS as u32 - 1),
                leg_ids
                    .iter()
                    .enumerate()
                    .map(|(v, s)| (*s, v as u8 + 1))
                    .collect(),
            )];
            table.set_derive(Box::new(Consolidation::new(&plan)));
        }
        for (i, s) in leg_ids.iter().enumerate() {
            table.publish(*s, &books[i % books.len()]);
        }
        let name = if legs == 0 {
            "baseline".to_string()
        } else {
            format!("{legs}_legs")
        };
        let mut k = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                k = k.wrapping_add(1);
                let leg = leg_ids[k % n];
                black_box(table.publish(black_box(leg), &books[k % books.len()]))
            })
        });
        if legs > 0 {
            let (q, seq) = table.read(SymbolId(NSYMS as u32 - 1)).expect("published");
            assert!(seq > 0 && q.bid_venue > 0 && q.ask_venue > 0);
        }
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode_quote");
    g.throughput(Throughput::Elements(1));
    let mut out = String::with_capacity(512);
    let mut names = Symbols::new();
    let (aapl, btc) = (
        names.intern("AAPL").expect("valid symbol"),
        names.intern("BTC-USD").expect("valid symbol"),
    );
    for (name, sym, q) in [
        ("equity", aapl, equity_quote()),
        ("crypto_8dp", btc, crypto_quote()),
    ] {
        out.clear();
        encode_quote(&mut out, &names, sym, 1042, &q, false);
        eprintln!("encode_quote/{name}: {} bytes: {out}", out.len());
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                encode_quote(
                    &mut out,
                    &names,
                    black_box(sym),
                    black_box(1042),
                    black_box(&q),
                    false,
                );
                black_box(out.len())
            })
        });
    }
    // Where encode time goes: one `Decimal` through `Display` (encode_quote
    // writes six of them for a full quote).
    let px = d("97000.01");
    g.bench_function("one_decimal_display", |b| {
        b.iter(|| {
            out.clear();
            let _ = write!(out, "{}", black_box(&px));
            black_box(out.len())
        })
    });
    g.finish();
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_op");
    g.throughput(Throughput::Elements(1));
    // Sanity: the op parses.
    let mut check = SUBSCRIBE_OP.to_vec();
    parse_op(&mut check, 500).expect("the bench op is valid");

    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    g.bench_function("tickergate_parse_op", |b| {
        b.iter(|| {
            // simd-json parses in place: copy into a reused buffer, as the
            // session does.
            buf.clear();
            buf.extend_from_slice(black_box(SUBSCRIBE_OP));
            black_box(parse_op(&mut buf, 500).is_ok())
        })
    });
    g.bench_function("serde_json_value", |b| {
        b.iter(|| {
            black_box(serde_json::from_slice::<serde_json::Value>(black_box(SUBSCRIBE_OP)).is_ok())
        })
    });
    g.bench_function("serde_json_typed", |b| {
        b.iter(|| black_box(serde_json::from_slice::<TypedOp>(black_box(SUBSCRIBE_OP)).is_ok()))
    });
    g.finish();
}

fn normalize(c: &mut Criterion) {
    let mut g = c.benchmark_group("normalize");
    g.throughput(Throughput::Elements(1));
    // `&Arc<Metrics>` also coerces to `&Metrics`, whichever `new` takes.
    let metrics = Arc::new(Metrics::new());
    let table = Arc::new(SlotTable::new(NSYMS, 2));
    let sym = SymbolId(7);
    table.set_interest(sym, 0, true);
    let n = Normalizer::new("bench", table.clone(), &metrics);
    // gw_ts = 0: apply stamps it (one clock read), as for a fresh feed quote.
    let fresh = Quote {
        gw_ts: 0,
        ..equity_quote()
    };
    g.bench_function("apply/equity", |b| {
        b.iter(|| black_box(n.apply(black_box(sym), black_box(fresh))))
    });
    let crossed = Quote {
        gw_ts: 0,
        ..equity_quote().with_bid(d("190.00"), d("1"))
    };
    g.bench_function("apply/rejected_crossed", |b| {
        b.iter(|| black_box(n.apply(black_box(sym), black_box(crossed))))
    });
    g.finish();
}

fn fanout_flush(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout_flush");
    let q = crypto_quote();
    for n in [1usize, 100, 1_000, 10_000] {
        let mut symbols = Symbols::new();
        let sym = symbols.intern("BTC-USD").expect("valid symbol");
        let slots = Arc::new(SlotTable::new(symbols.len(), 1));
        let cache = Arc::new(EncodeCache::new(slots.clone(), Arc::new(symbols)));
        let fanout = Fanout::new(cache, Arc::new(Metrics::new()), 64 * 1024);
        let sessions: Vec<Arc<SessionHandle>> = (0..n as u64)
            .map(|id| Arc::new(SessionHandle::new(id)))
            .collect();
        for h in &sessions {
            fanout.subscribe(h, &[sym]);
        }
        let mut frames: Vec<String> = (0..n).map(|_| String::with_capacity(512)).collect();
        let mut dirty = Vec::new();
        // Sanity: one flush wakes one dirty symbol and fills every frame.
        slots.publish(sym, &q);
        assert_eq!(fanout.wake_dirty(0, &mut dirty), 1);
        for (h, f) in sessions.iter().zip(frames.iter_mut()) {
            h.clear();
            assert!(fanout.cache().append_latest(sym, f).is_some());
        }
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                slots.publish(black_box(sym), black_box(&q));
                let woke = fanout.wake_dirty(0, &mut dirty);
                let mut bytes = 0;
                for (h, f) in sessions.iter().zip(frames.iter_mut()) {
                    h.clear();
                    f.clear();
                    if fanout.cache().append_latest(sym, f).is_some() {
                        bytes += f.len();
                    }
                }
                black_box((woke, bytes))
            })
        });
    }
    g.finish();
}

/// The Binance `bookTicker` frames of the recorded sample session.
fn binance_book_frames() -> Vec<Vec<u8>> {
    let frames = session_frames(include_str!("../feeds/binance/session.jsonl"), |f| {
        f.windows(11).any(|w| w == b"@bookTicker")
    });
    assert!(!frames.is_empty(), "bookTicker frames in feeds/binance");
    frames
}

/// The frames of a recorded session that `keep` selects.
fn session_frames(text: &str, keep: impl Fn(&[u8]) -> bool) -> Vec<Vec<u8>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["frame"].as_str().map(|f| f.as_bytes().to_vec()))
        .filter(|f| keep(f))
        .collect()
}

/// One `ingest_e2e` case for a venue with a fast and a general path:
/// `frames` in turn through `Venue::parse` (fast path first) or, when
/// `general`, through `parse_general`, then `FeedNormalizer::apply` with
/// the sequence and venue time replaced by a counter (never refused).
#[allow(clippy::too_many_arguments)]
fn e2e_case<V: Venue>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    frames: &[Vec<u8>],
    symbols_table: &[(&str, &str)],
    make: impl Fn(SymbolMap) -> V,
    general: bool,
    parse_general: impl Fn(&mut V, &mut [u8], &mut Vec<Event>) -> Result<(), ParseError>,
) {
    let mut symbols = Symbols::new();
    let table: BTreeMap<String, String> = symbols_table
        .iter()
        .map(|(v, s)| (v.to_string(), s.to_string()))
        .collect();
    let map = SymbolMap::build(&table, &mut symbols).expect("valid map");
    let slots = Arc::new(SlotTable::new(symbols.len(), 2));
    for id in map.ids() {
        slots.set_interest(id, 0, true);
    }
    let metrics = Arc::new(Metrics::new());
    let mut norm = FeedNormalizer::new(
        Normalizer::new("bench", slots.clone(), &metrics),
        NormalizeConfig::default(),
    );
    let mut venue = make(map);
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut events = Vec::with_capacity(4);
    // Sanity: every frame gives quotes only (a Coinbase ticker that
    // carries a trade is a trade: the same update, and a trade stored
    // only while a subscription takes it, which none does here).
    for f in frames {
        buf.clear();
        buf.extend_from_slice(f);
        events.clear();
        venue.parse(&mut buf, &mut events).expect("sample parses");
        assert!(!events.is_empty());
        assert!(events
            .iter()
            .all(|e| matches!(e, Event::Quote(_) | Event::Trade(..))));
    }
    let mut n: u64 = 0;
    let mut i = 0;
    let mut rejected = 0u64;
    g.bench_function(name, |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            buf.clear();
            buf.extend_from_slice(black_box(&frames[i]));
            events.clear();
            let r = if general {
                parse_general(&mut venue, &mut buf, &mut events)
            } else {
                venue.parse(&mut buf, &mut events)
            };
            if r.is_err() {
                return;
            }
            for e in events.drain(..) {
                let (u, trade) = match e {
                    Event::Quote(u) => (u, None),
                    Event::Trade(u, info) => (u, Some(info)),
                    _ => continue,
                };
                {
                    let Update {
                        sym,
                        mut quote,
                        seq,
                    } = u;
                    n += 1;
                    let seq = seq.map(|(st, _)| (st, n));
                    if quote.has(field::TS) {
                        quote.ts = n as i64;
                    }
                    let u = Update { sym, quote, seq };
                    rejected += black_box(norm.apply_with(u, trade)).is_err() as u64;
                }
            }
        })
    });
    assert_eq!(rejected, 0, "{name}: every quote is accepted");
    let applied: u64 = (0..symbols.len())
        .map(|s| slots.seq(SymbolId(s as u32)))
        .sum();
    // (Unless a filter skipped the bench.)
    assert!(
        n == 0 || applied > frames.len() as u64,
        "{name}: quotes reached the slots"
    );
}

fn ingest_e2e(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingest_e2e");
    g.throughput(Throughput::Elements(1));
    assert_eq!(TICK_86.len(), 86);
    assert!(serde_json::from_slice::<Tick>(TICK_86).is_ok());
    g.bench_function("reference_serde_json_typed_86b_tick", |b| {
        b.iter(|| black_box(serde_json::from_slice::<Tick>(black_box(TICK_86)).is_ok()))
    });
    let frames = binance_book_frames();
    for general in [false, true] {
        e2e_case(
            &mut g,
            if general {
                "binance_general"
            } else {
                "binance"
            },
            &frames,
            &[("BTCUSDT", "BTC-USDT"), ("ETHUSDT", "ETH-USDT")],
            |m| Binance::new(&VenueConfig::default(), m),
            general,
            |v, b, o| v.parse_general(b, o),
        );
    }
    let coinbase = session_frames(include_str!("../feeds/coinbase/session.jsonl"), |f| {
        f.starts_with(br#"{"type":"ticker""#)
    });
    assert_eq!(coinbase.len(), 5, "ticker frames in feeds/coinbase");
    for general in [false, true] {
        e2e_case(
            &mut g,
            if general {
                "coinbase_general"
            } else {
                "coinbase"
            },
            &coinbase,
            &[("BTC-USD", "BTC-USD"), ("ETH-USD", "ETH-USD")],
            |m| Coinbase::new(&VenueConfig::default(), m),
            general,
            |v, b, o| v.parse_general(b, o),
        );
    }
    let kraken = session_frames(include_str!("../feeds/kraken/session.jsonl"), |f| {
        f.starts_with(br#"{"channel":"ticker""#)
    });
    assert_eq!(kraken.len(), 4, "ticker frames in feeds/kraken");
    for general in [false, true] {
        e2e_case(
            &mut g,
            if general { "kraken_general" } else { "kraken" },
            &kraken,
            &[("BTC/USD", "BTC-USD"), ("ETH/USD", "ETH-USD")],
            |m| Kraken::new(&VenueConfig::default(), m),
            general,
            |v, b, o| v.parse_general(b, o),
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = slots, encode, parse, normalize, fanout_flush, ingest_e2e, consolidated
}
criterion_main!(benches);
