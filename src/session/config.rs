//! `[session]`: per-WebSocket-client limits and timers.

use crate::invalid::{at_least_one, Invalid};
use serde::Deserialize;

/// `[session]`: per-WebSocket-client limits and timers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Symbols one session may hold at once (`too_many_symbols` past it). Default 500.
    pub max_symbols: usize,
    /// Symbols one `subscribe` op may name. Default 500.
    pub max_symbols_per_op: usize,
    /// Sustained inbound ops per second (`rate_limited` past it). Default 20.
    pub max_msgs_per_sec: u32,
    /// Inbound ops allowed in a burst above the sustained rate. Default 40.
    pub msgs_burst: u32,
    /// `rate_limited` errors a session may collect before it is closed with
    /// 1008. The count decays by one per second of good behaviour. Default 20.
    pub max_rate_violations: u32,
    /// Largest inbound WebSocket message or frame, in bytes; a larger one is
    /// closed with 1009. Default 16384.
    pub max_message_bytes: usize,
    /// Target size of one outbound frame, in bytes: a batch is cut there and
    /// the rest follows in the next frame. Default 65536.
    pub max_frame_bytes: usize,
    /// Initial read buffer per connection, in bytes. tungstenite's default
    /// allocates 128 KiB per connection up front. Client ops are ~100-150
    /// bytes; a larger frame grows the buffer as needed, so this only sets
    /// what an idle connection holds. Default 128.
    pub read_buffer_bytes: usize,
    /// Kernel send buffer (SO_SNDBUF) per client socket in bytes; 0 keeps the
    /// OS default. Default 0.
    pub send_buffer_bytes: usize,
    /// A `heartbeat` is sent after this long without other traffic, in
    /// milliseconds (reported to clients in `welcome`). Default 5000.
    pub heartbeat_ms: u64,
    /// A session whose socket accepts nothing for this long is a slow
    /// consumer and is closed with 4008, in milliseconds. Default 10000.
    pub slow_consumer_ms: u64,
    /// How long a closing session may take to flush its close frame before
    /// the socket is dropped, in milliseconds. Default 2000.
    pub close_grace_ms: u64,
    /// Control replies (acks, errors, pongs) waiting for a client that does
    /// not read; past it the client is a slow consumer (4008). Default 256.
    pub max_pending_control: usize,
    /// Highest `max_hz` a subscription may ask for; higher values are
    /// clamped. Default 1000.
    pub max_hz_limit: f64,
    /// After this long without any frame from the client, the server sends
    /// a WebSocket Ping, in milliseconds. Default 20000.
    pub ping_interval_ms: u64,
    /// A client that sends no frame at all (pong, op, anything) for this
    /// long, and has had a Ping owed for `idle_timeout_ms -
    /// ping_interval_ms`, is closed with 1008, in milliseconds. Must exceed
    /// `ping_interval_ms`. Default 60000.
    pub idle_timeout_ms: u64,
    /// Read-window flow control (see `flow.rs`): the backlog a client may
    /// have unread, as how much later than its fastest its probe Pongs may
    /// come back, in milliseconds; past it the window shrinks, data waits
    /// in the slots, coalescing, and the client's rate is limited to what
    /// it was measured to read. 0 turns it off (TCP's own push-back only).
    /// Default 50.
    pub read_lag_ms: u64,
    /// Smallest read window, in bytes (a session starts at 64 KiB, within
    /// the min and max). Default 8192.
    pub read_window_min_bytes: u32,
    /// Largest read window, in bytes (a fast client on a long link needs
    /// its bandwidth times its round trip). Default 4194304.
    pub read_window_max_bytes: u32,
    /// Trades one subscription (`"trades":true`) may be owed: a client that
    /// falls further behind a symbol's trades loses the oldest and is told
    /// how many in a `trades_dropped` message. Each symbol whose trades a
    /// subscription has asked for keeps this many recent trades (rounded up
    /// to a power of two, 72 bytes each) however many sessions read them.
    /// 1 to 65536. Default 1024.
    pub max_pending_trades: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_symbols: 500,
            max_symbols_per_op: 500,
            max_msgs_per_sec: 20,
            msgs_burst: 40,
            max_rate_violations: 20,
            max_message_bytes: 16 * 1024,
            max_frame_bytes: 64 * 1024,
            read_buffer_bytes: 128,
            send_buffer_bytes: 0,
            heartbeat_ms: 5_000,
            slow_consumer_ms: 10_000,
            close_grace_ms: 2_000,
            max_pending_control: 256,
            max_hz_limit: 1000.0,
            ping_interval_ms: 20_000,
            idle_timeout_ms: 60_000,
            read_lag_ms: 50,
            read_window_min_bytes: 8 * 1024,
            read_window_max_bytes: 4 * 1024 * 1024,
            max_pending_trades: crate::slots::DEFAULT_PENDING_TRADES,
        }
    }
}

impl SessionConfig {
    /// Read-window flow control's limits (see [`crate::flow`]).
    pub(crate) fn read_window(&self) -> crate::flow::Limits {
        let min = self.read_window_min_bytes.max(1);
        crate::flow::Limits {
            lag_us: u32::try_from(self.read_lag_ms.saturating_mul(1000)).unwrap_or(u32::MAX),
            min,
            max: self.read_window_max_bytes.max(min),
        }
    }

    /// Checks the fields; names them relative to `[session]`.
    pub fn validate(&self) -> Result<(), Invalid> {
        at_least_one("max_symbols", self.max_symbols as u64)?;
        at_least_one("max_symbols_per_op", self.max_symbols_per_op as u64)?;
        at_least_one("max_pending_control", self.max_pending_control as u64)?;
        at_least_one("max_msgs_per_sec", u64::from(self.max_msgs_per_sec))?;
        if self.max_message_bytes < 256 {
            return Err(Invalid::new("max_message_bytes", "must be at least 256"));
        }
        if self.max_frame_bytes < 1024 {
            return Err(Invalid::new("max_frame_bytes", "must be at least 1024"));
        }
        if self.read_buffer_bytes < 64 {
            return Err(Invalid::new("read_buffer_bytes", "must be at least 64"));
        }
        if !(1..=crate::trades::MAX_KEEP).contains(&self.max_pending_trades) {
            return Err(Invalid::new(
                "max_pending_trades",
                format!("must be 1 to {}", crate::trades::MAX_KEEP),
            ));
        }
        at_least_one("heartbeat_ms", self.heartbeat_ms)?;
        at_least_one("slow_consumer_ms", self.slow_consumer_ms)?;
        at_least_one("close_grace_ms", self.close_grace_ms)?;
        at_least_one("ping_interval_ms", self.ping_interval_ms)?;
        if self.idle_timeout_ms <= self.ping_interval_ms {
            return Err(Invalid::new(
                "idle_timeout_ms",
                "must be greater than ping_interval_ms",
            ));
        }
        if self.read_window_min_bytes < 1024 {
            return Err(Invalid::new(
                "read_window_min_bytes",
                "must be at least 1024",
            ));
        }
        if self.read_window_max_bytes < self.read_window_min_bytes {
            return Err(Invalid::new(
                "read_window_max_bytes",
                "must be at least read_window_min_bytes",
            ));
        }
        if self.read_lag_ms > 60_000 {
            return Err(Invalid::new(
                "read_lag_ms",
                "must be at most 60000 (0 turns flow control off)",
            ));
        }
        if !(self.max_hz_limit.is_finite() && self.max_hz_limit > 0.0) {
            return Err(Invalid::new("max_hz_limit", "must be a positive number"));
        }
        Ok(())
    }
}
