//! A config file through `Config::from_toml` and `validate`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = tickergate::Config::from_toml(text, Path::new("fuzz.toml")) {
        let _ = cfg.validate();
    }
});
