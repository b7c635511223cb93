//! An NDJSON body pushed to `POST /v1/ingest`, through
//! `IngestFeed::apply_body` (per-line parse, then the normalizer).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use tickergate::config::{IngestConfig, NormalizeConfig};
use tickergate::feed::ingest::IngestFeed;
use tickergate::feed::FeedState;
use tickergate::metrics::Metrics;
use tickergate::model::SymbolId;
use tickergate::normalize::Normalizer;
use tickergate::slots::SlotTable;

fn feed() -> IngestFeed {
    let slots = Arc::new(SlotTable::new(3, 1));
    let metrics = Arc::new(Metrics::new());
    let cfg = IngestConfig {
        name: "push".into(),
        symbols: vec!["AAPL".into(), "MSFT".into(), "ES.Z26".into()],
        normalize: NormalizeConfig::default(),
        ..IngestConfig::default()
    };
    let ids = [SymbolId(0), SymbolId(1), SymbolId(2)];
    let norm = Normalizer::new("push", slots, &metrics);
    let state = Arc::new(FeedState::new("push", ids.to_vec(), None));
    IngestFeed::new(&cfg, &ids, norm, state)
}

thread_local! {
    static FEED: IngestFeed = feed();
}

fuzz_target!(|data: &[u8]| {
    let mut body = data.to_vec();
    let lines = match data {
        [] => 0,
        [rest @ .., b'\n'] if rest.is_empty() => 0,
        [rest @ .., b'\n'] => rest.split(|b| *b == b'\n').count(),
        d => d.split(|b| *b == b'\n').count(),
    } as u64;
    let r = FEED.with(|f| f.apply_body(&mut body));
    // Every line is either accepted or rejected with a report.
    assert_eq!(r.accepted + r.rejected, lines);
    assert_eq!(r.errors.len() as u64 + r.errors_omitted, r.rejected);
    let _ = r.to_json();
});
