//! What every venue adapter reads off the wire the same way: exact
//! decimals, RFC 3339 times, fields of a simd-json DOM, and the scanner
//! of the adapters' fast paths. Adapters share these and never import
//! each other.

pub mod decimal;
pub mod flat;
pub mod json;
pub mod time;

pub use decimal::{fast_decimal, parse_decimal, parse_decimal_reference};
pub use time::parse_rfc3339_ns;
