//! One line of a recorded file: the envelope (`{"recv_ns":..,"frame":".."}`,
//! parsed as `feed::replay` parses it: its `parse_line` is private, so the
//! same serde shape is mirrored here) and then the frame through a replay
//! `Player` (venue parser + normalizer), for each venue kind.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::sync::Arc;
use tickergate::config::{NormalizeConfig, VenueConfig};
use tickergate::feed::replay::Player;
use tickergate::feed::{FeedState, SymbolMap, VenueKind};
use tickergate::metrics::Metrics;
use tickergate::model::Symbols;
use tickergate::normalize::{FeedNormalizer, Normalizer};
use tickergate::slots::SlotTable;

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Envelope {
    recv_ns: i64,
    frame: String,
}

struct Rig {
    players: Vec<Player>,
    state: FeedState,
}

fn rig() -> Rig {
    let table = [
        ("BTCUSDT", "BTC-USDT"),
        ("BTC-USD", "BTC-USD"),
        ("BTC/USD", "BTC-USD"),
        ("ETH/USD", "ETH-USD"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let mut syms = Symbols::new();
    let map = SymbolMap::build(&table, &mut syms).expect("valid symbols");
    let slots = Arc::new(SlotTable::new(map.ids().len(), 1));
    let metrics = Arc::new(Metrics::new());
    let players = VenueKind::ALL
        .into_iter()
        .map(|k| {
            let v = k.adapter(&VenueConfig::default(), map.clone());
            let norm = Normalizer::new(k.name(), slots.clone(), &metrics);
            Player::new(v, FeedNormalizer::new(norm, NormalizeConfig::default()))
        })
        .collect();
    Rig {
        players,
        state: FeedState::new("replay", map.ids(), None),
    }
}

thread_local! {
    static RIG: RefCell<Rig> = RefCell::new(rig());
}

fuzz_target!(|data: &[u8]| {
    let trimmed = data.trim_ascii();
    if trimmed.is_empty() || trimmed.starts_with(b"#") {
        return;
    }
    let Ok(env) = serde_json::from_slice::<Envelope>(trimmed) else {
        return;
    };
    RIG.with(|r| {
        let r = &mut *r.borrow_mut();
        let mut applied = Vec::new();
        for p in &mut r.players {
            p.frame(env.frame.as_bytes(), &r.state, &mut applied);
        }
    });
});
