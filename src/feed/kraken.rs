//! Placeholder: being written.
use super::{Event, ParseError, SymbolMap, Venue};
use crate::config::VenueConfig;

pub struct Kraken {
    _map: SymbolMap,
}

impl Kraken {
    pub fn new(_cfg: &VenueConfig, map: SymbolMap) -> Self {
        Kraken { _map: map }
    }
}

impl Venue for Kraken {
    fn kind(&self) -> &'static str {
        "kraken"
    }
    fn url(&self) -> String {
        String::new()
    }
    fn on_connect(&mut self) -> Vec<String> {
        Vec::new()
    }
    fn parse(&mut self, _frame: &mut [u8], _out: &mut Vec<Event>) -> Result<(), ParseError> {
        Err(ParseError::Unexpected("not implemented".into()))
    }
}
