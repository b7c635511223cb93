//! One upstream frame through the Binance adapter's `Venue::parse`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use tickergate::config::VenueConfig;
use tickergate::feed::binance::Binance;
use tickergate::feed::{ParseError, SymbolMap, Venue};
use tickergate::model::Symbols;

fn venue() -> Binance {
    let table = [("BTCUSDT", "BTC-USDT"), ("ETHUSDT", "ETH-USDT")]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let map = SymbolMap::build(&table, &mut Symbols::new()).expect("valid symbols");
    Binance::new(&VenueConfig::default(), map)
}

thread_local! {
    // One adapter for the whole run, as a feed task keeps one per
    // connection: state carried between frames is fuzzed too.
    static VENUE: RefCell<Binance> = RefCell::new(venue());
}

fuzz_target!(|data: &[u8]| {
    let mut buf = data.to_vec();
    let mut out = Vec::new();
    VENUE.with(|v| match v.borrow_mut().parse(&mut buf, &mut out) {
        Ok(()) => {}
        Err(e) => {
            // A refusal is classified and leaves no half-parsed events.
            assert!(out.is_empty(), "{e:?} with events {out:?}");
            let _ = e.reason();
            if let ParseError::Unmapped(s) = &e {
                assert!(s.chars().count() <= 40);
            }
        }
    });
});
