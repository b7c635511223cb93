//! Property tests for everything that parses untrusted bytes: client ops,
//! venue frames (Binance, Coinbase, Kraken and Kraken's number rewrite),
//! ingest NDJSON lines, recorded replay lines, decimals, timestamps and the
//! config file. See FUZZING.md for the coverage-guided fuzz targets that
//! complement these.
//!
//! Every property runs a modest number of cases from a fixed seed, so the
//! suite is deterministic and takes a few seconds; `PROPTEST_CASES=N`
//! overrides the count for a longer local run. Three kinds of property:
//! (a) arbitrary bytes or strings never panic; (b) mutations of real samples
//! (`feeds/`) never panic and either parse or fail with a classified error;
//! (c) oracles: round trips against serde_json and `Display`.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestRunner};
use rust_decimal::Decimal;
use serde_json::Value as J;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tickergate::config::{IngestConfig, NormalizeConfig, VenueConfig};
use tickergate::feed::binance::Binance;
use tickergate::feed::coinbase::Coinbase;
use tickergate::feed::ingest::IngestFeed;
use tickergate::feed::kraken::{Kraken, NumberQuoter};
use tickergate::feed::replay::Player;
use tickergate::feed::wire::{parse_decimal, parse_decimal_reference, parse_rfc3339_ns};
use tickergate::feed::{Event, FeedState, ParseError, VenueKind};
use tickergate::feed::{SymbolMap, Venue};
use tickergate::metrics::Metrics;
use tickergate::model::{SymbolId, Symbols};
use tickergate::normalize::{FeedNormalizer, Normalizer, Update};
use tickergate::protocol::{parse_op, ErrorCode, Op, OpId};
use tickergate::slots::SlotTable;
use tickergate::Config as GwConfig;

// ------------------------------------------------------------------ harness

/// Runs `test` on `cases` inputs from `strategy` (or `PROPTEST_CASES`),
/// from a fixed seed so every run sees the same inputs.
fn check<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    let config = Config {
        cases,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(SEED),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&strategy, test) {
        panic!("property `{name}` failed: {e}");
    }
}

/// The fixed seed of every property.
const SEED: u64 = 0x7161_c4e7_5eed;

fn manifest(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The `frame` of every recorded line of `feeds/<rel>`.
fn frames(rel: &str) -> Vec<String> {
    manifest(rel)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| serde_json::from_str::<J>(l).ok())
        .filter_map(|v| v["frame"].as_str().map(str::to_string))
        .collect()
}

/// Tokens that tend to matter to JSON parsers and number rewriting.
const TOKENS: &[&str] = &[
    "\"",
    "\\",
    "\\\"",
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "-",
    ".",
    "e",
    "E+",
    "0",
    "1e999",
    "-0",
    "null",
    "true",
    "1.",
    "00",
    " ",
    "\n",
    "\u{0}",
    "\u{e9}",
    "\u{ffff}",
    "99999999999999999999999999999999",
    "0.00000000000000000000000000000001",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "18446744073709551616",
    "-9223372036854775809",
    "NaN",
];

/// Byte-level mutations: (where, what, byte, token).
type Mutations = Vec<(Index, u8, u8, Index)>;

fn mutations() -> impl Strategy<Value = Mutations> {
    prop::collection::vec((any::<Index>(), 0u8..7, any::<u8>(), any::<Index>()), 1..6)
}

fn mutate(src: &[u8], muts: &Mutations) -> Vec<u8> {
    let mut b = src.to_vec();
    for (at, kind, byte, tok) in muts {
        let i = if b.is_empty() { 0 } else { at.index(b.len()) };
        let tok = TOKENS[tok.index(TOKENS.len())].as_bytes();
        match kind {
            0 if !b.is_empty() => b[i] ^= 1 << (byte % 8),
            1 => b.insert(i.min(b.len()), *byte),
            2 if !b.is_empty() => {
                b.remove(i);
            }
            3 => b.truncate(i),
            4 => {
                let end = (i + 1 + *byte as usize % 16).min(b.len());
                let span = b[i.min(end)..end].to_vec();
                b.splice(i..i, span);
            }
            5 if !b.is_empty() => {
                let end = (i + 1 + *byte as usize % 8).min(b.len());
                b.splice(i..end, tok.iter().copied());
            }
            _ => {
                b.splice(i..i, tok.iter().copied());
            }
        }
    }
    b
}

/// Arbitrary JSON values (leaves that matter to the parsers).
fn json_value() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        any::<i64>().prop_map(J::from),
        any::<u64>().prop_map(J::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(J::from),
        "-?[0-9]{1,30}(\\.[0-9]{1,30})?".prop_map(J::String),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,10})?(Z|\\+00:00|)"
            .prop_map(J::String),
        prop::sample::select(
            &[
                "BTCUSDT",
                "ETHUSDT",
                "BTC-USD",
                "ETH-USD",
                "BTC/USD",
                "ETH/USD",
                "AAPL",
                "MSFT",
                "ticker",
                "snapshot",
                "update",
                "heartbeat",
                "subscribe",
                "trade",
                "bookTicker",
                "btcusdt@bookTicker",
                "btcusdt@trade",
                "online",
                "status",
                "error",
                "subscriptions",
            ][..]
        )
        .prop_map(|s| J::String(s.into())),
        any::<String>().prop_map(J::String),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(J::Array),
            prop::collection::btree_map("[a-zA-Z_]{1,8}", inner, 0..4)
                .prop_map(|m| J::Object(m.into_iter().collect())),
        ]
    })
}

/// How many nodes `v` has (pre-order).
fn nodes(v: &J) -> usize {
    1 + match v {
        J::Array(a) => a.iter().map(nodes).sum(),
        J::Object(o) => o.values().map(nodes).sum(),
        _ => 0,
    }
}

/// The `n`th node of `v` in pre-order.
fn node_mut<'a>(v: &'a mut J, n: &mut usize) -> Option<&'a mut J> {
    if *n == 0 {
        return Some(v);
    }
    *n -= 1;
    match v {
        J::Array(a) => a.iter_mut().find_map(|c| node_mut(c, n)),
        J::Object(o) => o.values_mut().find_map(|c| node_mut(c, n)),
        _ => None,
    }
}

/// Value-level mutations: replace a node, drop a key, or add a key.
type ValueMut = Vec<(Index, u8, J, String)>;

fn value_mutations() -> impl Strategy<Value = ValueMut> {
    prop::collection::vec(
        (any::<Index>(), 0u8..3, json_value(), "[a-zA-Z_]{1,6}"),
        1..4,
    )
}

fn mutate_value(mut v: J, muts: &ValueMut) -> J {
    for (at, kind, new, key) in muts {
        let mut n = at.index(nodes(&v));
        let Some(node) = node_mut(&mut v, &mut n) else {
            continue;
        };
        match (kind, &mut *node) {
            (1, J::Object(o)) if !o.is_empty() => {
                let k = o.keys().nth(at.index(o.len())).cloned().unwrap_or_default();
                o.remove(&k);
            }
            (2, J::Object(o)) => {
                o.insert(key.clone(), new.clone());
            }
            _ => *node = new.clone(),
        }
    }
    v
}

// ------------------------------------------------------------------ venues

fn map(pairs: &[(&str, &str)]) -> SymbolMap {
    let table: BTreeMap<String, String> = pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    SymbolMap::build(&table, &mut Symbols::new()).unwrap()
}

fn binance() -> Binance {
    Binance::new(
        &VenueConfig::default(),
        map(&[("BTCUSDT", "BTC-USDT"), ("ETHUSDT", "ETH-USDT")]),
    )
}

fn coinbase() -> Coinbase {
    Coinbase::new(
        &VenueConfig::default(),
        map(&[("BTC-USD", "BTC-USD"), ("ETH-USD", "ETH-USD")]),
    )
}

fn kraken() -> Kraken {
    Kraken::new(
        &VenueConfig::default(),
        map(&[("BTC/USD", "BTC-USD"), ("ETH/USD", "ETH-USD")]),
    )
}

/// One frame through `v`: never panics; a refusal is classified and adds
/// no events. `valid_json`: the input is JSON serde_json accepts, so it must
/// not be refused as malformed.
fn venue_frame(v: &mut dyn Venue, frame: &[u8], valid_json: bool) -> Result<(), TestCaseError> {
    let mut buf = frame.to_vec();
    let mut out = vec![Event::Ignored];
    match v.parse(&mut buf, &mut out) {
        Ok(()) => Ok(()),
        Err(e) => {
            prop_assert_eq!(&out, &vec![Event::Ignored], "events left after {:?}", e);
            prop_assert!(matches!(
                e.reason(),
                "malformed" | "unexpected" | "bad_field" | "unmapped_symbol"
            ));
            prop_assert!(!e.to_string().is_empty());
            if valid_json {
                prop_assert!(
                    !matches!(e, ParseError::Json(_)),
                    "valid JSON refused as malformed: {:?} ({})",
                    e,
                    String::from_utf8_lossy(frame)
                );
            }
            Ok(())
        }
    }
}

fn venue_props(name: &str, make: fn() -> Box<dyn Venue>, dir: &str) {
    let mut samples = frames(&format!("feeds/{dir}/session.jsonl"));
    samples.extend(frames(&format!("feeds/{dir}/malformed.jsonl")));
    let session = frames(&format!("feeds/{dir}/session.jsonl"));
    check(
        &format!("{name}: arbitrary bytes"),
        1000,
        prop::collection::vec(any::<u8>(), 0..300),
        |b| venue_frame(&mut *make(), &b, false),
    );
    check(
        &format!("{name}: arbitrary strings"),
        500,
        any::<String>(),
        |s| venue_frame(&mut *make(), s.as_bytes(), false),
    );
    check(
        &format!("{name}: byte mutations of samples"),
        1500,
        (prop::sample::select(samples), mutations()),
        |(s, m)| {
            let mut v = make();
            // A session's state carries between frames: prime it.
            for f in frames(&format!("feeds/{dir}/session.jsonl")).iter().take(2) {
                let _ = v.parse(&mut f.as_bytes().to_vec(), &mut Vec::new());
            }
            venue_frame(&mut *v, &mutate(s.as_bytes(), &m), false)
        },
    );
    check(
        &format!("{name}: field mutations of session frames"),
        1500,
        (prop::sample::select(session), value_mutations()),
        |(s, m)| {
            let v: J = serde_json::from_str(&s).unwrap();
            let text = serde_json::to_string(&mutate_value(v, &m)).unwrap();
            venue_frame(&mut *make(), text.as_bytes(), true)
        },
    );
}

#[test]
fn venue_binance() {
    venue_props("binance", || Box::new(binance()), "binance");
}

#[test]
fn venue_coinbase() {
    venue_props("coinbase", || Box::new(coinbase()), "coinbase");
}

#[test]
fn venue_kraken() {
    venue_props("kraken", || Box::new(kraken()), "kraken");
}

// ------------------------------------------- fast paths against general

/// A decimal down to its bits (mantissa, scale, sign): `Decimal`'s `==`
/// ignores the scale (`1.0 == 1.00`), the wire does not.
fn dec_bits(d: Decimal) -> [u8; 16] {
    d.serialize()
}

/// An outcome with every decimal as bits, so two outcomes compare exactly.
fn exact(r: &Result<Vec<Event>, ParseError>) -> String {
    match r {
        Err(e) => format!("Err({e:?})"),
        Ok(evs) => evs
            .iter()
            .map(|e| {
                let update = |Update { sym, quote: q, seq }: &Update| {
                    format!(
                        "{sym:?},{seq:?},{},{},{},{:?}",
                        q.present,
                        q.ts,
                        q.gw_ts,
                        [q.bid, q.bid_size, q.ask, q.ask_size, q.last, q.last_size].map(dec_bits)
                    )
                };
                match e {
                    Event::Quote(u) => format!("Quote({})", update(u)),
                    Event::Trade(u, info) => format!("Trade({},{info:?})", update(u)),
                    other => format!("{other:?}"),
                }
            })
            .collect::<Vec<_>>()
            .join(";"),
    }
}

fn outcome(
    frame: &[u8],
    parse: impl FnOnce(&mut [u8], &mut Vec<Event>) -> Result<(), ParseError>,
) -> Result<Vec<Event>, ParseError> {
    let mut buf = frame.to_vec();
    let mut out = Vec::new();
    parse(&mut buf, &mut out).map(|_| out)
}

/// `Venue::parse` (fast path first) and `Binance::parse_general` give the
/// same events and the same errors, bit for bit. Returns whether the fast
/// path took the frame.
fn binance_same(frame: &[u8]) -> Result<bool, TestCaseError> {
    let mut v = binance();
    let fast = v.parse_fast(frame);
    let via_parse = outcome(frame, |b, o| v.parse(b, o));
    let general = outcome(frame, |b, o| v.parse_general(b, o));
    prop_assert_eq!(
        exact(&via_parse),
        exact(&general),
        "{}",
        String::from_utf8_lossy(frame)
    );
    if let Some(ev) = &fast {
        prop_assert_eq!(exact(&Ok(vec![ev.clone()])), exact(&general));
    }
    Ok(fast.is_some())
}

/// Decimal text: mostly plausible, sometimes broken.
fn decimal_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "-?[0-9]{1,12}(\\.[0-9]{1,10})?",
        1 => "-?[0-9]{0,22}(\\.[0-9]{0,22})?",
        1 => "[-+.0-9eE ]{0,8}",
        1 => decimal().prop_map(|d| d.to_string()),
    ]
}

#[test]
fn fast_decimal_matches_reference() {
    let same = |s: &str| -> Result<(), TestCaseError> {
        let fast = parse_decimal(s, "p").map(dec_bits);
        let reference = parse_decimal_reference(s, "p").map(dec_bits);
        prop_assert_eq!(fast, reference, "{:?}", s);
        Ok(())
    };
    check("decimal texts", 5000, decimal_text(), |s| same(&s));
    check("arbitrary strings", 2000, any::<String>(), |s| same(&s));
    for s in [
        "0",
        "-0",
        "-0.0",
        "0.000",
        "00",
        "007.50",
        "-00.10",
        "1.",
        ".1",
        "-",
        "",
        "--1",
        "9999999999999999999",
        "-9999999999999999999",
        "99999999999999999999",
        "999999999.9999999999",
        "0.0000000000000000001",
        "18446744073709551615",
        "79228162514264337593543950335",
        "0.0000000000000000000000000001",
        "0.00000000000000000000000000001",
        "1e5",
        "1_0",
        "١",
    ] {
        same(s).unwrap();
    }
}

#[test]
fn binance_fast_path_matches_general() {
    let mut samples = frames("feeds/binance/session.jsonl");
    samples.extend(frames("feeds/binance/malformed.jsonl"));
    samples.extend(frames("feeds/binance/errors.jsonl"));
    let mut took = 0;
    for s in &samples {
        took += binance_same(s.as_bytes()).unwrap() as usize;
    }
    assert!(took >= 5, "the fast path takes the session's data frames");
    check(
        "binance: byte mutations of samples",
        3000,
        (prop::sample::select(samples.clone()), mutations()),
        |(s, m)| binance_same(&mutate(s.as_bytes(), &m)).map(|_| ()),
    );
    let json_samples: Vec<String> = samples
        .iter()
        .filter(|s| serde_json::from_str::<J>(s).is_ok())
        .cloned()
        .collect();
    check(
        "binance: field mutations of samples",
        1500,
        (prop::sample::select(json_samples), value_mutations()),
        |(s, m)| {
            let v: J = serde_json::from_str(&s).unwrap();
            binance_same(
                serde_json::to_string(&mutate_value(v, &m))
                    .unwrap()
                    .as_bytes(),
            )
            .map(|_| ())
        },
    );
    // Canonical frames with generated values, book tickers and trades.
    let symbol = prop::sample::select(&["BTCUSDT", "ETHUSDT", "XRPUSDT", "", "btcusdt"][..]);
    let number = prop_oneof![
        Just("0".to_string()),
        (0u64..u64::MAX).prop_map(|n| n.to_string()),
        (0u64..1u64 << 40).prop_map(|n| n.to_string()),
        "-?[0-9]{1,21}(\\.[0-9]{1,3})?",
    ];
    check(
        "binance: canonical bookTicker frames",
        3000,
        (
            prop::sample::select(
                &[
                    "btcusdt@bookTicker",
                    "x@bookTicker",
                    "@bookTicker",
                    "btcusdt@bookTickerx",
                ][..],
            ),
            number.clone(),
            symbol.clone(),
            prop::collection::vec(decimal_text(), 4),
        ),
        |(stream, u, sym, d)| {
            let f = format!(
                r#"{{"stream":"{stream}","data":{{"u":{u},"s":"{sym}","b":"{}","B":"{}","a":"{}","A":"{}"}}}}"#,
                d[0], d[1], d[2], d[3]
            );
            binance_same(f.as_bytes()).map(|_| ())
        },
    );
    check(
        "binance: canonical trade frames",
        3000,
        (
            number.clone(),
            number,
            symbol,
            prop::collection::vec(decimal_text(), 2),
            any::<bool>(),
        ),
        |(t, tt, sym, d, m)| {
            let f = format!(
                r#"{{"stream":"btcusdt@trade","data":{{"e":"trade","E":1,"s":"{sym}","t":{t},"p":"{}","q":"{}","T":{tt},"m":{m},"M":true}}}}"#,
                d[0], d[1]
            );
            binance_same(f.as_bytes()).map(|_| ())
        },
    );
}

/// [`binance_same`] for Coinbase: `Venue::parse` (fast path first) and
/// `Coinbase::parse_general` agree bit for bit, and so does the fast path
/// when it takes the frame. Returns whether it did.
fn coinbase_same(frame: &[u8]) -> Result<bool, TestCaseError> {
    let mut v = coinbase();
    let fast = v.parse_fast(frame);
    let via_parse = outcome(frame, |b, o| v.parse(b, o));
    let general = outcome(frame, |b, o| v.parse_general(b, o));
    prop_assert_eq!(
        exact(&via_parse),
        exact(&general),
        "{}",
        String::from_utf8_lossy(frame)
    );
    if let Some(ev) = &fast {
        prop_assert_eq!(
            exact(&Ok(vec![ev.clone()])),
            exact(&general),
            "{}",
            String::from_utf8_lossy(frame)
        );
    }
    Ok(fast.is_some())
}

/// [`binance_same`] for Kraken, whose fast path appends one event per
/// entry and leaves `out` as it was when it declines.
fn kraken_same(frame: &[u8]) -> Result<bool, TestCaseError> {
    let mut v = kraken();
    let mut fast = vec![Event::Ignored];
    let took = v.parse_fast(frame, &mut fast).is_some();
    let via_parse = outcome(frame, |b, o| v.parse(b, o));
    let general = outcome(frame, |b, o| v.parse_general(b, o));
    prop_assert_eq!(
        exact(&via_parse),
        exact(&general),
        "{}",
        String::from_utf8_lossy(frame)
    );
    if took {
        prop_assert_eq!(
            exact(&Ok(fast[1..].to_vec())),
            exact(&general),
            "{}",
            String::from_utf8_lossy(frame)
        );
    } else {
        prop_assert_eq!(&fast, &vec![Event::Ignored], "a decline appends nothing");
    }
    Ok(took)
}

/// Byte and field mutations of a venue's samples through `same`.
/// The venue's recorded session and malformed frames: fast == general on
/// each (the fast path taking at least `min_taken` of them), then on
/// mutations of them ([`fast_path_mutations`]).
fn recorded_frames_agree(
    venue: &str,
    min_taken: usize,
    same: fn(&[u8]) -> Result<bool, TestCaseError>,
) {
    let mut samples = frames(&format!("feeds/{venue}/session.jsonl"));
    samples.extend(frames(&format!("feeds/{venue}/malformed.jsonl")));
    let mut took = 0;
    for s in &samples {
        took += same(s.as_bytes()).unwrap() as usize;
    }
    assert!(
        took >= min_taken,
        "{venue}: the fast path takes {took} recorded frames"
    );
    fast_path_mutations(venue, &samples, same);
}

fn fast_path_mutations(
    name: &str,
    samples: &[String],
    same: fn(&[u8]) -> Result<bool, TestCaseError>,
) {
    check(
        &format!("{name}: byte mutations of samples"),
        3000,
        (prop::sample::select(samples.to_vec()), mutations()),
        |(s, m)| same(&mutate(s.as_bytes(), &m)).map(|_| ()),
    );
    let json_samples: Vec<String> = samples
        .iter()
        .filter(|s| serde_json::from_str::<J>(s).is_ok())
        .cloned()
        .collect();
    check(
        &format!("{name}: field mutations of samples"),
        1500,
        (prop::sample::select(json_samples), value_mutations()),
        |(s, m)| {
            let v: J = serde_json::from_str(&s).unwrap();
            same(
                serde_json::to_string(&mutate_value(v, &m))
                    .unwrap()
                    .as_bytes(),
            )
            .map(|_| ())
        },
    );
}

/// An optional member `"key":value` (with its leading comma): a decimal
/// string, `null`, another JSON value, or absent.
fn opt_member(key: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        12 => plausible_decimal().prop_map(move |d| format!(r#","{key}":"{d}""#)),
        2 => decimal_text().prop_map(move |d| format!(r#","{key}":"{d}""#)),
        1 => Just(format!(r#","{key}":null"#)),
        1 => prop_oneof![Just("1.5"), Just("true"), Just("[]"), Just(r#""1\u002e5""#)]
            .prop_map(move |v| format!(r#","{key}":{v}"#)),
        2 => Just(String::new()),
    ]
}

/// A decimal as venues send them (every one valid).
fn plausible_decimal() -> impl Strategy<Value = String> {
    "(0|[1-9][0-9]{0,7})(\\.[0-9]{1,8})?"
}

/// An RFC 3339 time as Coinbase and Kraken send it, or something close.
fn time_text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (1970u32..2100, 1u32..13, 1u32..29, 0u32..24, 0u32..60, 0u32..60, "[0-9]{0,9}")
            .prop_map(|(y, mo, d, h, mi, s, f)| {
                let frac = if f.is_empty() { f } else { format!(".{f}") };
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}Z")
            }),
        1 => (0u32..3000, 1u32..13, 1u32..32, 0u32..24, 0u32..60, 0u32..61, "[0-9]{0,10}")
            .prop_map(|(y, mo, d, h, mi, s, f)| {
                let frac = if f.is_empty() { f } else { format!(".{f}") };
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}Z")
            }),
        1 => Just("9999-12-31T23:59:59Z".to_string()),
        1 => "[-0-9:TZ. ]{0,30}",
    ]
}

#[test]
fn coinbase_fast_path_matches_general() {
    recorded_frames_agree("coinbase", 5, coinbase_same);
    // Canonical tickers with generated values; optional members absent,
    // null or of another type.
    let number = prop_oneof![
        1 => Just("0".to_string()),
        1 => (0u64..u64::MAX).prop_map(|n| n.to_string()),
        3 => (0u64..1u64 << 40).prop_map(|n| n.to_string()),
        1 => "-?[0-9]{1,21}(\\.[0-9]{1,3})?",
    ];
    let product = prop_oneof![
        4 => prop::sample::select(&["BTC-USD", "ETH-USD"][..]),
        1 => prop::sample::select(&["XRP-USD", "", "btc-usd"][..]),
    ];
    let time = prop_oneof![
        4 => time_text().prop_map(|t| format!(r#","time":"{t}""#)),
        1 => Just(r#","time":null"#.to_string()),
        1 => Just(String::new()),
    ];
    let taken = std::cell::Cell::new(0u32);
    check(
        "coinbase: canonical ticker frames",
        4000,
        (
            (
                number,
                product,
                prop_oneof![4 => plausible_decimal(), 1 => decimal_text()],
            ),
            prop::collection::vec(opt_member("x"), 5),
            time,
            (
                any::<bool>(),
                prop_oneof![
                    6 => (0u64..1u64 << 40).prop_map(|n| n.to_string()),
                    1 => (0u64..u64::MAX).prop_map(|n| n.to_string()),
                    1 => prop::sample::select(&["null", "-1", "1.5", "\"7\"", "01"][..])
                        .prop_map(str::to_string),
                ],
            ),
        ),
        |((seq, product, price), opt, time, (buy, trade_id))| {
            // `opt` are the optional members, renamed in canonical order.
            let member = |i: usize, key: &str| opt[i].replacen(r#""x""#, &format!(r#""{key}""#), 1);
            let side = if buy { "buy" } else { "sell" };
            let f = format!(
                r#"{{"type":"ticker","sequence":{seq},"product_id":"{product}","price":"{price}","open_24h":"96210.55","volume_24h":"8123.41937210","low_24h":"95801.10","high_24h":"97480.00","volume_30d":"301127.88345112"{}{}{}{},"side":"{side}"{time},"trade_id":{trade_id}{}}}"#,
                member(0, "best_bid"),
                member(1, "best_bid_size"),
                member(2, "best_ask"),
                member(3, "best_ask_size"),
                member(4, "last_size"),
            );
            taken.set(taken.get() + coinbase_same(f.as_bytes())? as u32);
            Ok(())
        },
    );
    assert!(
        taken.get() > 400,
        "the fast path takes a fair share of generated tickers: {}",
        taken.get()
    );
}

#[test]
fn kraken_fast_path_matches_general() {
    recorded_frames_agree("kraken", 4, kraken_same);
    // Canonical ticker frames with generated values: prices and sizes as
    // JSON numbers (sometimes not valid ones), sometimes as strings; one to
    // three entries; a timestamp or not.
    let value = prop_oneof![
        24 => "-?(0|[1-9][0-9]{0,11})(\\.[0-9]{1,10})?",
        1 => "-?[0-9]{1,22}(\\.[0-9]{0,22})?",
        1 => "[-+.0-9eE]{0,6}",
        1 => decimal_text().prop_map(|d| format!("\"{d}\"")),
        1 => prop::sample::select(&["null", "true", "[1]", "-0", "1e5", "\"\""][..]).prop_map(str::to_string),
    ];
    let entry = (
        prop_oneof![
            4 => prop::sample::select(&["BTC/USD", "ETH/USD"][..]),
            1 => prop::sample::select(&["XRP/USD", "", "btc/usd"][..]),
        ],
        prop::collection::vec(value, 5),
        prop_oneof![
            3 => Just(String::new()),
            3 => time_text().prop_map(|t| format!(r#","timestamp":"{t}""#)),
            1 => Just(r#","timestamp":1695632671"#.to_string()),
        ],
    )
        .prop_map(|(sym, v, ts)| {
            format!(
                r#"{{"symbol":"{sym}","bid":{},"bid_qty":{},"ask":{},"ask_qty":{},"last":{},"volume":1234.56780000,"vwap":96950.3,"low":96000.0,"high":97500.0,"change":-120.5,"change_pct":0.12{ts}}}"#,
                v[0], v[1], v[2], v[3], v[4]
            )
        });
    let taken = std::cell::Cell::new(0u32);
    check(
        "kraken: canonical ticker frames",
        4000,
        (
            prop_oneof![
                4 => prop::sample::select(&["snapshot", "update"][..]),
                1 => Just("trade"),
            ],
            prop_oneof![
                4 => prop::collection::vec(entry.clone(), 1..2),
                1 => prop::collection::vec(entry, 2..4),
            ],
        ),
        |(ty, entries)| {
            let f = format!(
                r#"{{"channel":"ticker","type":"{ty}","data":[{}]}}"#,
                entries.join(",")
            );
            taken.set(taken.get() + kraken_same(f.as_bytes())? as u32);
            Ok(())
        },
    );
    assert!(
        taken.get() > 400,
        "the fast path takes a fair share of generated frames: {}",
        taken.get()
    );
    // Trade frames: the recorded ones, then generated ones (numbers as
    // JSON numbers, sometimes broken; trade ids, sides and timestamps of
    // every kind; one to three entries).
    for f in frames("feeds/kraken/trades.jsonl") {
        kraken_same(f.as_bytes()).unwrap();
    }
    let value = prop_oneof![
        24 => "(0|[1-9][0-9]{0,11})(\\.[0-9]{1,10})?",
        1 => "-?[0-9]{1,22}(\\.[0-9]{0,22})?",
        1 => "[-+.0-9eE]{0,6}",
        1 => decimal_text().prop_map(|d| format!("\"{d}\"")),
        1 => prop::sample::select(&["null", "true", "-0", "1e5", "\"\""][..]).prop_map(str::to_string),
    ];
    let trade_id = prop_oneof![
        8 => (0u64..1u64 << 50).prop_map(|n| n.to_string()),
        1 => (0u64..u64::MAX).prop_map(|n| n.to_string()),
        1 => prop::sample::select(&["-1", "1.0", "01", "\"5\"", "null", "1e3"][..]).prop_map(str::to_string),
    ];
    let entry = (
        prop_oneof![
            4 => prop::sample::select(&["BTC/USD", "ETH/USD"][..]),
            1 => prop::sample::select(&["XRP/USD", "", "btc/usd"][..]),
        ],
        prop::sample::select(&[r#""buy""#, r#""sell""#, r#""x""#, "null", "1"][..]),
        prop::collection::vec(value, 2),
        trade_id,
        prop_oneof![
            4 => time_text().prop_map(|t| format!(r#","timestamp":"{t}""#)),
            1 => Just(String::new()),
            1 => Just(r#","timestamp":1695632671"#.to_string()),
        ],
    )
        .prop_map(|(sym, side, v, id, ts)| {
            format!(
                r#"{{"symbol":"{sym}","side":{side},"price":{},"qty":{},"ord_type":"market","trade_id":{id}{ts}}}"#,
                v[0], v[1]
            )
        });
    let taken = std::cell::Cell::new(0u32);
    check(
        "kraken: canonical trade frames",
        3000,
        (
            prop_oneof![
                6 => Just("update"),
                1 => Just("snapshot"),
            ],
            prop::collection::vec(entry, 1..4),
        ),
        |(ty, entries)| {
            let f = format!(
                r#"{{"channel":"trade","type":"{ty}","data":[{}]}}"#,
                entries.join(",")
            );
            taken.set(taken.get() + kraken_same(f.as_bytes())? as u32);
            Ok(())
        },
    );
    assert!(
        taken.get() > 150,
        "the fast path takes a fair share of generated trade frames: {}",
        taken.get()
    );
}

/// Every number of `v` replaced by its serde_json text, as a string.
fn quote_numbers(v: &J) -> J {
    match v {
        J::Number(n) => J::String(n.to_string()),
        J::Array(a) => J::Array(a.iter().map(quote_numbers).collect()),
        J::Object(o) => J::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), quote_numbers(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn json_ok(b: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(b).is_ok()
}

#[test]
fn kraken_number_quoter() {
    let samples: Vec<String> = frames("feeds/kraken/session.jsonl")
        .into_iter()
        .chain(frames("feeds/kraken/malformed.jsonl"))
        .collect();
    let q = std::cell::RefCell::new(NumberQuoter::default());
    check(
        "rewrite: arbitrary bytes",
        1000,
        prop::collection::vec(any::<u8>(), 0..300),
        |b| {
            let once = q.borrow_mut().rewrite(&b).to_vec();
            prop_assert_eq!(&once, &q.borrow_mut().rewrite(&b).to_vec(), "deterministic");
            prop_assert!(once.len() >= b.len());
            prop_assert_eq!(json_ok(&b), json_ok(&once), "validity kept");
            let mut once = once;
            let _ = simd_json::to_borrowed_value(&mut once);
            Ok(())
        },
    );
    let q = std::cell::RefCell::new(NumberQuoter::default());
    check(
        "rewrite: mutations of Kraken frames keep JSON validity",
        1500,
        (prop::sample::select(samples), mutations()),
        |(s, m)| {
            let b = mutate(s.as_bytes(), &m);
            let out = q.borrow_mut().rewrite(&b).to_vec();
            prop_assert_eq!(
                json_ok(&b),
                json_ok(&out),
                "{:?} -> {:?}",
                String::from_utf8_lossy(&b),
                String::from_utf8_lossy(&out)
            );
            Ok(())
        },
    );
    let q = std::cell::RefCell::new(NumberQuoter::default());
    check(
        "rewrite then parse: number text equals serde_json's",
        1000,
        json_value(),
        |v| {
            let text = serde_json::to_string(&v).unwrap();
            let mut out = q.borrow_mut().rewrite(text.as_bytes()).to_vec();
            let back: J = serde_json::from_slice(&out).map_err(|e| {
                TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&out)))
            })?;
            prop_assert_eq!(&back, &quote_numbers(&v));
            prop_assert!(simd_json::to_borrowed_value(&mut out).is_ok());
            Ok(())
        },
    );
    check(
        "kraken ticker: prices keep the exact text sent",
        1000,
        prop::collection::vec("(0|[1-9][0-9]{0,12})(\\.[0-9]{1,14})?", 5),
        |n| {
            let frame = format!(
                r#"{{"channel":"ticker","type":"update","data":[{{"symbol":"ETH/USD","bid":{},"bid_qty":{},"ask":{},"ask_qty":{},"last":{}}}]}}"#,
                n[0], n[1], n[2], n[3], n[4]
            );
            let mut out = Vec::new();
            kraken()
                .parse(&mut frame.into_bytes(), &mut out)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let [Event::Quote(Update { quote, .. })] = &out[..] else {
                return Err(TestCaseError::fail(format!("{out:?}")));
            };
            let got = [
                quote.bid,
                quote.bid_size,
                quote.ask,
                quote.ask_size,
                quote.last,
            ]
            .map(|d| d.to_string());
            prop_assert_eq!(got.to_vec(), n);
            Ok(())
        },
    );
    check(
        "kraken trade: price and size keep the exact text sent",
        1000,
        (
            prop::collection::vec("(0|[1-9][0-9]{0,12})(\\.[0-9]{1,14})?", 2),
            0u64..1u64 << 60,
        ),
        |(n, id)| {
            let frame = format!(
                r#"{{"channel":"trade","type":"update","data":[{{"symbol":"ETH/USD","side":"sell","price":{},"qty":{},"ord_type":"limit","trade_id":{id},"timestamp":"2025-11-23T12:13:20.001000Z"}}]}}"#,
                n[0], n[1]
            );
            let mut out = Vec::new();
            kraken()
                .parse(&mut frame.into_bytes(), &mut out)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let [Event::Trade(Update { quote, seq, .. }, info)] = &out[..] else {
                return Err(TestCaseError::fail(format!("{out:?}")));
            };
            prop_assert_eq!(vec![quote.last.to_string(), quote.last_size.to_string()], n);
            prop_assert_eq!(info.trade_id, Some(id));
            prop_assert_eq!(*seq, Some((tickergate::feed::kraken::TRADE, id)));
            Ok(())
        },
    );
}

// -------------------------------------------------------------- client ops

fn op_strategy() -> impl Strategy<Value = (Option<OpId>, Op)> {
    let id = prop_oneof![
        Just(None),
        any::<i64>().prop_map(|i| Some(OpId::Int(i))),
        ((i64::MAX as u64 + 1)..=u64::MAX).prop_map(|u| Some(OpId::UInt(u))),
        "\\PC{0,16}".prop_map(|s| Some(OpId::Str(s))),
    ];
    let symbols = prop::collection::vec(any::<String>(), 1..20);
    let op = prop_oneof![
        (
            symbols.clone(),
            prop::option::of(
                prop_oneof![(1u32..1000).prop_map(f64::from), any::<f64>()]
                    .prop_filter("positive", |f| f.is_finite() && *f > 0.0)
            ),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(symbols, max_hz, snapshot, trades)| Op::Subscribe {
                symbols,
                max_hz,
                snapshot,
                trades
            }),
        symbols.prop_map(|symbols| Op::Unsubscribe { symbols }),
        Just(Op::Ping),
        any::<String>().prop_map(|token| Op::Auth { token }),
        (0u8..=64).prop_map(|window| Op::Flow { window }),
        any::<u64>().prop_map(|n| Op::Ack { n }),
    ];
    (id, op)
}

fn op_json(id: &Option<OpId>, op: &Op, omit_defaults: bool) -> J {
    let mut o = match op {
        Op::Subscribe {
            symbols,
            max_hz,
            snapshot,
            trades,
        } => {
            let mut o = serde_json::json!({"op": "subscribe", "symbols": symbols});
            if let Some(hz) = max_hz {
                o["max_hz"] = J::from(*hz);
            }
            if !(omit_defaults && *snapshot) {
                o["snapshot"] = J::Bool(*snapshot);
            }
            if !omit_defaults || *trades {
                o["trades"] = J::Bool(*trades);
            }
            o
        }
        Op::Unsubscribe { symbols } => serde_json::json!({"op": "unsubscribe", "symbols": symbols}),
        Op::Ping => serde_json::json!({"op": "ping"}),
        Op::Auth { token } => serde_json::json!({"op": "auth", "token": token}),
        Op::Flow { window } => serde_json::json!({"op": "flow", "window": window}),
        Op::Ack { n } => serde_json::json!({"op": "ack", "n": n}),
    };
    if let Some(id) = id {
        o["id"] = serde_json::to_value(id).unwrap();
    }
    o
}

fn op_outcome(buf: &[u8], valid_json: bool) -> Result<(), TestCaseError> {
    let mut b = buf.to_vec();
    if let Err(e) = parse_op(&mut b, 100) {
        prop_assert!(ErrorCode::ALL.contains(&e.code));
        prop_assert!(!e.message.is_empty());
        if valid_json {
            prop_assert!(
                !e.message.starts_with("not JSON"),
                "valid JSON refused as malformed: {} ({})",
                e.message,
                String::from_utf8_lossy(buf)
            );
        }
    }
    Ok(())
}

#[test]
fn client_ops() {
    check(
        "parse_op: arbitrary bytes",
        1000,
        prop::collection::vec(any::<u8>(), 0..200),
        |b| op_outcome(&b, false),
    );
    check("parse_op: arbitrary strings", 500, any::<String>(), |s| {
        op_outcome(s.as_bytes(), false)
    });
    check(
        "parse_op: serialized ops parse back to the same op",
        1500,
        (op_strategy(), any::<bool>()),
        |((id, op), omit)| {
            let text = serde_json::to_string(&op_json(&id, &op, omit)).unwrap();
            let got = parse_op(&mut text.clone().into_bytes(), 100)
                .map_err(|e| TestCaseError::fail(format!("{e:?}: {text}")))?;
            prop_assert_eq!(got, (id, op), "{}", text);
            Ok(())
        },
    );
    check(
        "parse_op: byte mutations of valid ops",
        1500,
        (op_strategy(), mutations()),
        |((id, op), m)| {
            let text = serde_json::to_string(&op_json(&id, &op, false)).unwrap();
            op_outcome(&mutate(text.as_bytes(), &m), false)
        },
    );
    check(
        "parse_op: field mutations of valid ops",
        1500,
        (op_strategy(), value_mutations()),
        |((id, op), m)| {
            let v = mutate_value(op_json(&id, &op, false), &m);
            op_outcome(serde_json::to_string(&v).unwrap().as_bytes(), true)
        },
    );
}

// ------------------------------------------------------------------ ingest

fn ingest_feed() -> IngestFeed {
    let slots = Arc::new(SlotTable::new(3, 1));
    let metrics = Arc::new(Metrics::new());
    let cfg = IngestConfig {
        name: "push".into(),
        key_sha256: tickergate::auth::token_hash_hex("k"),
        symbols: vec!["AAPL".into(), "MSFT".into(), "ES.Z26".into()],
        normalize: NormalizeConfig::default(),
        ..IngestConfig::default()
    };
    let ids = [SymbolId(0), SymbolId(1), SymbolId(2)];
    let norm = Normalizer::new("push", slots, &metrics);
    let state = Arc::new(FeedState::new("push", ids.to_vec(), None));
    IngestFeed::new(&cfg, &ids, norm, state)
}

/// Lines `apply_body` sees in `body` (a trailing newline ends the last one).
fn line_count(body: &[u8]) -> u64 {
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    if body.is_empty() {
        0
    } else {
        body.split(|b| *b == b'\n').count() as u64
    }
}

/// Every line is accepted or rejected with a code; the report adds up.
fn ingest_outcome(f: &IngestFeed, body: &[u8], valid_json: bool) -> Result<(), TestCaseError> {
    let r = f.apply_body(&mut body.to_vec());
    prop_assert_eq!(r.accepted + r.rejected, line_count(body));
    prop_assert_eq!(r.errors.len() as u64 + r.errors_omitted, r.rejected);
    for e in &r.errors {
        prop_assert!(e.line >= 1 && e.line as u64 <= line_count(body));
        prop_assert!(!e.message.is_empty());
        if valid_json {
            prop_assert!(!e.message.starts_with("malformed JSON"), "{}", e.message);
        }
    }
    serde_json::from_str::<J>(&r.to_json()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(())
}

#[test]
fn ingest_lines() {
    let sample = manifest("feeds/ingest/sample.ndjson");
    let lines: Vec<String> = sample.lines().map(str::to_string).collect();
    check(
        "ingest: arbitrary bodies",
        1000,
        prop::collection::vec(any::<u8>(), 0..300),
        |b| ingest_outcome(&ingest_feed(), &b, false),
    );
    check(
        "ingest: byte mutations of the sample body",
        1000,
        mutations(),
        |m| ingest_outcome(&ingest_feed(), &mutate(sample.as_bytes(), &m), false),
    );
    check(
        "ingest: field mutations of sample lines",
        1000,
        (prop::sample::select(lines), value_mutations()),
        |(l, m)| {
            let v = mutate_value(serde_json::from_str(&l).unwrap(), &m);
            ingest_outcome(
                &ingest_feed(),
                serde_json::to_string(&v).unwrap().as_bytes(),
                true,
            )
        },
    );
    let fields = ["bid", "bid_size", "ask", "ask_size", "last", "last_size"];
    check(
        "ingest: well-formed quotes are never bad_request",
        1000,
        (
            prop::sample::select(&["AAPL", "MSFT", "ES.Z26"][..]),
            prop::collection::vec(prop::option::of(decimal()), 6),
            prop::option::of(0..i64::MAX),
        ),
        |(sym, vals, ts)| {
            let mut o = serde_json::json!({ "symbol": sym });
            for (k, v) in fields.iter().zip(&vals) {
                if let Some(d) = v {
                    o[*k] = J::String(d.to_string());
                }
            }
            if let Some(ts) = ts {
                o["ts"] = J::from(ts);
            }
            let has_price = vals[0].is_some() || vals[2].is_some() || vals[4].is_some();
            let r = ingest_feed().apply_body(&mut o.to_string().into_bytes());
            prop_assert_eq!(r.accepted + r.rejected, 1);
            if has_price {
                for e in &r.errors {
                    prop_assert_ne!(e.code, "bad_request", "{}: {}", o, e.message);
                }
            } else {
                prop_assert_eq!(r.rejected, 1);
            }
            Ok(())
        },
    );
}

// ------------------------------------------------------------------ replay

/// `feed::replay`'s envelope (its line parser is private; this is the same
/// serde shape, and `record::encode_line` is the writer).
#[derive(serde::Deserialize, Debug, PartialEq)]
struct Envelope {
    recv_ns: i64,
    frame: String,
}

fn replay_line(line: &[u8]) -> Option<Result<Envelope, String>> {
    let t = line.trim_ascii();
    if t.is_empty() || t.starts_with(b"#") {
        return None;
    }
    Some(serde_json::from_slice(t).map_err(|e| e.to_string()))
}

struct Players {
    players: Vec<Player>,
    state: FeedState,
}

fn players() -> Players {
    let m = map(&[
        ("BTCUSDT", "BTC-USDT"),
        ("ETHUSDT", "ETH-USDT"),
        ("BTC-USD", "BTC-USD"),
        ("BTC/USD", "BTC-USD"),
    ]);
    let slots = Arc::new(SlotTable::new(m.ids().len(), 1));
    let metrics = Arc::new(Metrics::new());
    let players = VenueKind::ALL
        .into_iter()
        .map(|k| {
            let v = k.adapter(&VenueConfig::default(), m.clone());
            let n = Normalizer::new(k.name(), slots.clone(), &metrics);
            Player::new(v, FeedNormalizer::new(n, NormalizeConfig::default()))
        })
        .collect();
    Players {
        players,
        state: FeedState::new("replay", m.ids(), None),
    }
}

#[test]
fn replay_lines() {
    let file = manifest("feeds/replay/binance-sample.jsonl");
    let mut all: Vec<String> = file.lines().map(str::to_string).collect();
    for d in ["binance", "coinbase", "kraken"] {
        all.extend(
            manifest(&format!("feeds/{d}/session.jsonl"))
                .lines()
                .map(str::to_string),
        );
    }
    check(
        "replay: encode_line then parse gives the frame back",
        1000,
        (any::<i64>(), any::<String>()),
        |(ns, frame)| {
            let line = tickergate::record::encode_line(ns, &frame);
            let got = replay_line(line.as_bytes());
            prop_assert_eq!(got, Some(Ok(Envelope { recv_ns: ns, frame })));
            Ok(())
        },
    );
    let p = std::cell::RefCell::new(players());
    check(
        "replay: mutated recorded lines through every venue's player",
        1500,
        (prop::sample::select(all), mutations()),
        |(l, m)| {
            let line = mutate(l.as_bytes(), &m);
            if let Some(Ok(env)) = replay_line(&line) {
                let p = &mut *p.borrow_mut();
                let mut applied = Vec::new();
                for pl in &mut p.players {
                    pl.frame(env.frame.as_bytes(), &p.state, &mut applied);
                }
            }
            Ok(())
        },
    );
    check(
        "replay: arbitrary lines",
        500,
        prop::collection::vec(any::<u8>(), 0..200),
        |b| {
            let _ = replay_line(&b);
            Ok(())
        },
    );
}

// --------------------------------------------------- decimals, timestamps

/// Any `Decimal`: 96-bit mantissa, sign, scale 0..=28.
fn decimal() -> impl Strategy<Value = Decimal> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
        0u32..=28,
        0u8..3,
    )
        .prop_map(|(lo, mid, hi, neg, scale, size)| {
            // Favour small mantissas (realistic prices) as well as huge ones.
            let (mid, hi) = match size {
                0 => (0, 0),
                1 => (mid, 0),
                _ => (mid, hi),
            };
            Decimal::from_parts(lo, mid, hi, neg, scale)
        })
}

#[test]
fn decimals() {
    check(
        "parse_decimal(d.to_string()) == d, same scale",
        2000,
        decimal(),
        |d| {
            let text = d.to_string();
            let back = parse_decimal(&text, "p").map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, d);
            prop_assert_eq!(back.scale(), d.scale());
            prop_assert_eq!(back.to_string(), text);
            Ok(())
        },
    );
    check(
        "parse_decimal: arbitrary strings",
        2000,
        any::<String>(),
        |s| {
            if let Err(e) = parse_decimal(&s, "p") {
                prop_assert_eq!(e.reason(), "bad_field");
            }
            Ok(())
        },
    );
    check(
        "parse_decimal: digit strings are exact or refused",
        2000,
        "-?[0-9]{1,32}(\\.[0-9]{1,32})?",
        |s| {
            match (parse_decimal(&s, "p"), Decimal::from_str_exact(&s)) {
                (Ok(d), Ok(exact)) => {
                    prop_assert_eq!(d, exact);
                    prop_assert_eq!(d.scale(), exact.scale());
                }
                (Ok(d), Err(_)) => prop_assert!(false, "{} accepted as {}", s, d),
                (Err(_), _) => {}
            }
            Ok(())
        },
    );
}

/// Reference: ns since the epoch, counting days naively.
fn naive_ns(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64, frac_ns: i64) -> i128 {
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut days: i128 = 0;
    if y >= 1970 {
        for yy in 1970..y {
            days += if leap(yy) { 366 } else { 365 };
        }
    } else {
        for yy in y..1970 {
            days -= if leap(yy) { 366 } else { 365 };
        }
    }
    let ml = [
        31,
        if leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    days += ml[..(mo - 1) as usize].iter().sum::<i64>() as i128 + (d - 1) as i128;
    ((days * 86_400 + (h * 3600 + mi * 60 + s) as i128) * 1_000_000_000) + frac_ns as i128
}

#[test]
fn timestamps() {
    check(
        "parse_rfc3339_ns matches a naive day count (or refuses out of i64)",
        2000,
        (
            0i64..=9999,
            1i64..=12,
            1i64..=31,
            0i64..24,
            0i64..60,
            0i64..60,
            prop::option::of("[0-9]{1,9}"),
            any::<bool>(),
        ),
        |(y, mo, d, h, mi, s, frac, z)| {
            let text = format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{}{}",
                frac.as_ref().map(|f| format!(".{f}")).unwrap_or_default(),
                if z { "Z" } else { "+00:00" }
            );
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let dim = match mo {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let got = parse_rfc3339_ns(&text, "t");
            if d > dim {
                prop_assert!(got.is_err(), "{}", text);
                return Ok(());
            }
            let frac_ns = frac
                .as_ref()
                .map(|f| format!("{f:0<9}").parse::<i64>().unwrap())
                .unwrap_or(0);
            let want = naive_ns(y, mo, d, h, mi, s, frac_ns);
            match i64::try_from(want) {
                Ok(want) => prop_assert_eq!(got, Ok(want), "{}", text),
                Err(_) => prop_assert!(got.is_err(), "{} out of i64 ns: {:?}", text, got),
            }
            Ok(())
        },
    );
    check(
        "parse_rfc3339_ns: arbitrary strings",
        2000,
        any::<String>(),
        |s| {
            let _ = parse_rfc3339_ns(&s, "t");
            Ok(())
        },
    );
    check(
        "parse_rfc3339_ns: mutations of a valid time",
        2000,
        mutations(),
        |m| {
            let b = mutate(b"2022-10-19T23:28:22.061769Z", &m);
            let _ = parse_rfc3339_ns(&String::from_utf8_lossy(&b), "t");
            Ok(())
        },
    );
}

// ------------------------------------------------------------------ config

fn config_outcome(text: &str) -> Result<(), TestCaseError> {
    if let Ok(cfg) = GwConfig::from_toml(text, Path::new("prop.toml")) {
        let _ = cfg.validate();
    }
    Ok(())
}

#[test]
fn config_files() {
    let mut samples = Vec::new();
    for f in ["binance", "coinbase", "kraken", "http", "replay", "sim"] {
        samples.push(manifest(&format!("feeds/{f}.toml")));
    }
    check("config: arbitrary strings", 500, any::<String>(), |s| {
        config_outcome(&s)
    });
    check(
        "config: byte mutations of feeds/*.toml",
        500,
        (prop::sample::select(samples.clone()), mutations()),
        |(s, m)| config_outcome(&String::from_utf8_lossy(&mutate(s.as_bytes(), &m))),
    );
    let values = prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551615".to_string()),
        Just("nan".to_string()),
        Just("inf".to_string()),
        Just("-inf".to_string()),
        Just("1e308".to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        "\\PC{0,20}".prop_map(|s| format!("{s:?}")),
        Just("{}".to_string()),
        Just("[]".to_string()),
    ];
    check(
        "config: every value of feeds/*.toml replaced",
        500,
        (
            prop::sample::select(samples),
            prop::collection::vec((any::<Index>(), values), 1..4),
        ),
        |(s, edits)| {
            let mut lines: Vec<String> = s.lines().map(str::to_string).collect();
            let kv: Vec<usize> = (0..lines.len())
                .filter(|i| !lines[*i].starts_with('#') && lines[*i].contains(" = "))
                .collect();
            if kv.is_empty() {
                return Ok(());
            }
            for (at, v) in &edits {
                let i = kv[at.index(kv.len())];
                let key = lines[i].split(" = ").next().unwrap_or_default().to_string();
                lines[i] = format!("{key} = {v}");
            }
            config_outcome(&lines.join("\n"))
        },
    );
}

// ------------------------------------------------------------- regressions

/// Found by `timestamps` above: a four-digit year past 2262 overflowed i64
/// nanoseconds (a panic with overflow checks, a wrapped time without). Now
/// refused as `bad_field`, also inside a venue frame.
#[test]
fn regression_far_future_timestamps() {
    for t in [
        "2262-04-11T23:47:16.854775808Z",
        "2262-05-01T00:00:00+00:00",
        "9999-12-31T23:59:59.999999999Z",
    ] {
        let e = parse_rfc3339_ns(t, "time").unwrap_err();
        assert_eq!(e.reason(), "bad_field", "{t}");
    }
    let frame = serde_json::json!({"type":"ticker","sequence":1u64,"product_id":"BTC-USD","price":"97000.03","best_bid":"97000.02","best_bid_size":"0.5","best_ask":"97000.03","best_ask_size":"0.4","side":"buy","time":"9999-12-31T23:59:59Z","trade_id":1,"last_size":"0.001"});
    let mut out = Vec::new();
    let r = coinbase().parse(&mut frame.to_string().into_bytes(), &mut out);
    assert!(matches!(r, Err(ParseError::Field { .. })), "{r:?}");
    let frame = r#"{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":1.5,"bid_qty":1,"ask":1.6,"ask_qty":1,"last":1.5,"timestamp":"9999-12-31T23:59:59Z"}]}"#;
    let r = kraken().parse(&mut frame.as_bytes().to_vec(), &mut out);
    assert!(matches!(r, Err(ParseError::Field { .. })), "{r:?}");
    assert!(out.is_empty());
}

// ------------------------------------------------ scale-out: NATS payloads

/// Any decimal a venue can send: up to 19 digits, any scale, any sign.
fn wire_decimal() -> impl Strategy<Value = Decimal> {
    (any::<i64>(), 0u32..=18).prop_map(|(m, scale)| Decimal::new(m, scale))
}

/// What an edge does with a payload from NATS: never panics, the fast
/// path answers (where it does) exactly as the general reader, and what
/// it takes it writes back the same (decode, encode, decode is stable).
fn cluster_outcome(b: &[u8]) -> Result<(), TestCaseError> {
    use tickergate::cluster::wire::{
        decode_quote, decode_quote_fast, decode_quote_general, decode_trade,
    };
    use tickergate::protocol::messages::{encode_quote, encode_trade};
    if let Some(fast) = decode_quote_fast(b) {
        let general = decode_quote_general(b)
            .map_err(|e| TestCaseError::fail(format!("fast took what general refuses: {e}")))?;
        prop_assert_eq!(fast.symbol, general.symbol);
        prop_assert_eq!(fast.seq, general.seq);
        prop_assert_eq!(fast.quote, general.quote);
        prop_assert_eq!(
            (fast.bid_venue, fast.ask_venue),
            (general.bid_venue, general.ask_venue)
        );
        let bits = |q: &tickergate::model::Quote| {
            [q.bid, q.bid_size, q.ask, q.ask_size, q.last, q.last_size].map(dec_bits)
        };
        prop_assert_eq!(bits(&fast.quote), bits(&general.quote));
    }
    if let Ok(w) = decode_quote(b) {
        let mut syms = Symbols::new();
        if let Ok(id) = syms.intern(w.symbol) {
            let mut out = String::new();
            encode_quote(&mut out, &syms, id, w.seq, &w.quote, false);
            let again = decode_quote(out.as_bytes())
                .map_err(|e| TestCaseError::fail(format!("{out}: {e}")))?;
            prop_assert_eq!(again.seq, w.seq);
            prop_assert_eq!(again.quote, w.quote);
        }
    }
    if let Ok(w) = decode_trade(b) {
        let mut out = String::new();
        encode_trade(&mut out, w.symbol, w.seq, &w.trade);
        let again =
            decode_trade(out.as_bytes()).map_err(|e| TestCaseError::fail(format!("{out}: {e}")))?;
        prop_assert_eq!(again.trade, w.trade);
    }
    Ok(())
}

#[test]
fn cluster_payloads() {
    use tickergate::cluster::wire::decode_quote;
    use tickergate::model::Quote;
    use tickergate::protocol::messages::encode_quote;
    // Every quote an ingest can publish comes back exactly, scale included.
    check(
        "cluster: quotes round-trip exactly",
        1000,
        (
            prop::array::uniform6(wire_decimal()),
            any::<u8>(),
            1u64..u64::MAX / 2,
            any::<i64>(),
            any::<i64>(),
        ),
        |(d, present, seq, ts, gw_ts)| {
            let present = present & 0x7f;
            let mut q = Quote {
                present,
                gw_ts,
                ..Quote::default()
            };
            let fields = [
                &mut q.bid,
                &mut q.bid_size,
                &mut q.ask,
                &mut q.ask_size,
                &mut q.last,
                &mut q.last_size,
            ];
            for (i, (f, v)) in fields.into_iter().zip(d).enumerate() {
                if present & (1 << i) != 0 {
                    *f = v;
                }
            }
            if present & 64 != 0 {
                q.ts = ts;
            }
            let mut syms = Symbols::new();
            let id = syms.intern("ES.Z26").unwrap();
            let mut out = String::new();
            encode_quote(&mut out, &syms, id, seq, &q, false);
            let w = decode_quote(out.as_bytes())
                .map_err(|e| TestCaseError::fail(format!("{out}: {e}")))?;
            // What an ingest writes takes the fast path when its decimals
            // fit it (19 digits; not `-0`).
            let fits = |d: Decimal| {
                tickergate::feed::wire::fast_decimal(d.to_string().as_bytes()).is_some()
            };
            let all_fit = [q.bid, q.bid_size, q.ask, q.ask_size, q.last, q.last_size]
                .into_iter()
                .enumerate()
                .all(|(i, d)| present & (1 << i) == 0 || fits(d));
            if all_fit {
                prop_assert!(
                    tickergate::cluster::wire::decode_quote_fast(out.as_bytes()).is_some(),
                    "not on the fast path: {}",
                    out
                );
            }
            cluster_outcome(out.as_bytes())?;
            prop_assert_eq!(w.symbol, "ES.Z26");
            prop_assert_eq!(w.seq, seq);
            prop_assert_eq!(w.quote, q);
            for (a, b) in [w.quote.bid, w.quote.ask, w.quote.last]
                .into_iter()
                .zip([q.bid, q.ask, q.last])
            {
                prop_assert_eq!(dec_bits(a), dec_bits(b));
            }
            Ok(())
        },
    );
    let sample = br#"{"type":"quote","symbol":"BTC-USD","seq":42,"bid":"97000.10","bid_size":"0.5","ask":"97000.20","ask_size":"1.25000000","last":"97000.15","last_size":"0.001","ts":1796617697745332448,"gw_ts":1796617697745334059}"#;
    check(
        "cluster: arbitrary payloads",
        2000,
        prop::collection::vec(any::<u8>(), 0..300),
        |b| cluster_outcome(&b),
    );
    check(
        "cluster: byte mutations of a quote",
        2000,
        mutations(),
        |m| cluster_outcome(&mutate(sample, &m)),
    );
    let trade = br#"{"type":"trade","symbol":"BTC-USD","seq":7,"price":"97000.10","size":"0.00100000","side":"buy","trade_id":123456789,"ts":1796617697745332448,"gw_ts":1796617697745334059}"#;
    check(
        "cluster: byte mutations of a trade",
        2000,
        mutations(),
        |m| cluster_outcome(&mutate(trade, &m)),
    );
}
