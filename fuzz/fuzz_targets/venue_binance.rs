//! One upstream frame through the Binance adapter's `Venue::parse`.
#![no_main]

#[path = "venue_common.rs"]
mod venue_common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    venue_common::fuzz("binance", &[("BTCUSDT", "BTC-USDT"), ("ETHUSDT", "ETH-USDT")], data);
});
