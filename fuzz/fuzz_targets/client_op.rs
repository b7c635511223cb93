//! A client's WebSocket text message through `parse_op`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = data.to_vec();
    if let Err(e) = tickergate::protocol::parse_op(&mut buf, 100) {
        // Every refusal carries a code and a message for the client.
        assert!(!e.message.is_empty());
        let _ = e.code.as_str();
    }
});
