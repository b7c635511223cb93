//! Placeholder: being written.
use super::{Event, ParseError, SymbolMap, Venue};
use crate::config::VenueConfig;

pub struct Coinbase {
    _map: SymbolMap,
}

impl Coinbase {
    pub fn new(_cfg: &VenueConfig, map: SymbolMap) -> Self {
        Coinbase { _map: map }
    }
}

impl Venue for Coinbase {
    fn kind(&self) -> &'static str {
        "coinbase"
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
