//! Shared by the venue targets: one upstream frame through a venue
//! adapter's `Venue::parse`, with one adapter kept for the whole run (as a
//! feed task keeps one per connection), so state carried between frames is
//! fuzzed too.
use std::cell::RefCell;
use tickergate::config::VenueConfig;
use tickergate::feed::{ParseError, SymbolMap, Venue, VenueKind};
use tickergate::model::Symbols;

thread_local! {
    static VENUE: RefCell<Option<Box<dyn Venue>>> = const { RefCell::new(None) };
}

/// Parses `data` as a frame of venue `kind` mapping `pairs` (venue symbol,
/// gateway symbol); a refusal must be classified and leave no events.
pub fn fuzz(kind: &str, pairs: &[(&str, &str)], data: &[u8]) {
    VENUE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let venue = slot.get_or_insert_with(|| {
            let table = pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            let map = SymbolMap::build(&table, &mut Symbols::new()).expect("valid symbols");
            VenueKind::from_name(kind)
                .expect("known venue")
                .adapter(&VenueConfig::default(), map)
        });
        let mut buf = data.to_vec();
        let mut out = Vec::new();
        if let Err(e) = venue.parse(&mut buf, &mut out) {
            assert!(out.is_empty(), "{e:?} with events {out:?}");
            let _ = e.reason();
            if let ParseError::Unmapped(s) = &e {
                assert!(s.chars().count() <= 40);
            }
        }
    });
}
