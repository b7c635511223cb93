//! Wire protocol v1 (docs/PROTOCOL.md): client ops in ([`ops`]), server
//! messages out ([`messages`]), and why a session is closed
//! ([`Disconnect`]).

mod disconnect;
pub mod messages;
pub mod ops;

pub use disconnect::Disconnect;
pub use messages::{
    encode_quote, encode_status, encode_trade, encode_trades_dropped, frame_of, write_decimal,
    Control, Limits,
};
pub use ops::{parse_op, Op, OpError, OpId, MAX_FLOW_WINDOW};

use serde::Serialize;

/// Protocol version announced in `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Machine-readable error codes (PROTOCOL.md, "Error codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    UnknownOp,
    UnknownSymbol,
    TooManySymbols,
    RateLimited,
    Unauthorized,
    ForbiddenSymbol,
    PayloadTooLarge,
    /// HTTP only: no such endpoint (added 2026-12-07).
    NotFound,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownOp,
        ErrorCode::UnknownSymbol,
        ErrorCode::TooManySymbols,
        ErrorCode::RateLimited,
        ErrorCode::Unauthorized,
        ErrorCode::ForbiddenSymbol,
        ErrorCode::PayloadTooLarge,
        ErrorCode::NotFound,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::UnknownSymbol => "unknown_symbol",
            ErrorCode::TooManySymbols => "too_many_symbols",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::ForbiddenSymbol => "forbidden_symbol",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Internal => "internal",
        }
    }
}
