//! tickergate: a market-data streaming gateway.
//!
//! ```text
//!  feed/*  ──►  normalize  ──►  slots  ──►  fanout shards  ──►  session  ──►  WebSocket
//!  (sim, …)     (validate,      (one        (dirty symbols ->    (one task per client:
//!               stamp gw_ts,    lock-free   wake the sessions    ops in; when the socket
//!               count rejects)  latest-     holding them)        can take a frame, the
//!                               value slot                       newest value of every
//!                               per symbol)                      dirty symbol, batched)
//!          metrics · limits · auth · config · http · shutdown around it all
//! ```
//!
//! * A feed writes quotes through a [`normalize::Normalizer`] into
//!   [`slots::SlotTable`]: one seqlock slot per interned symbol, whose write
//!   count is the symbol's `seq` on the wire.
//! * A write marks the symbol dirty for every [`fanout`] shard with a
//!   subscriber for it. A shard's pass takes all dirty symbols at once and
//!   wakes each interested [`session`] once.
//! * A session builds a frame only when its socket can take one, from the
//!   newest slot values, so updates coalesce by themselves and a slow client
//!   costs no queue. Each quote's JSON is encoded once per seq and copied
//!   into every frame that carries it.
//! * [`http`] serves the WebSocket upgrade and the REST, metrics and health
//!   endpoints; [`gateway`] wires it all and shuts it down.

pub mod auth;
pub mod config;
pub mod fanout;
pub mod feed;
pub(crate) mod flow;
pub mod gateway;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod normalize;
pub mod protocol;
pub mod session;
pub mod shutdown;
pub mod slots;
pub mod tls;

pub use config::Config;
pub use gateway::Gateway;
pub use model::{Quote, Status, SymbolId};
