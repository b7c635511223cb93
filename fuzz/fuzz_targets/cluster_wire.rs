//! A payload an edge node reads from NATS (`cluster::wire::decode_quote`
//! and `decode_trade`): never panics, and what it takes re-encodes to
//! something that decodes to the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tickergate::cluster::wire::{decode_quote, decode_trade};
use tickergate::model::Symbols;
use tickergate::protocol::messages::{encode_quote, encode_trade};

fuzz_target!(|data: &[u8]| {
    if let Ok(w) = decode_quote(data) {
        let mut syms = Symbols::new();
        if let Ok(id) = syms.intern(w.symbol) {
            let mut out = String::new();
            encode_quote(&mut out, &syms, id, w.seq, &w.quote, false);
            let again = decode_quote(out.as_bytes()).expect("re-encoded quote decodes");
            assert_eq!(again.quote, w.quote);
        }
    }
    if let Ok(w) = decode_trade(data) {
        let mut out = String::new();
        encode_trade(&mut out, w.symbol, w.seq, &w.trade);
        let again = decode_trade(out.as_bytes()).expect("re-encoded trade decodes");
        assert_eq!(again.trade, w.trade);
    }
});
