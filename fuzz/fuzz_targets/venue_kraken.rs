//! One upstream frame through the Kraken adapter's `Venue::parse`.
#![no_main]

#[path = "venue_common.rs"]
mod venue_common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    venue_common::fuzz("kraken", &[("BTC/USD", "BTC-USD"), ("ETH/USD", "ETH-USD")], data);
});
