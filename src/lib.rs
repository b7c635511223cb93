//! tickergate: a market-data streaming gateway.
//!
//! ```text
//!  feed/*  ──►  normalize  ──►  slots  ──►  fanout shards  ──►  session  ──►  WebSocket
//!  (sim,         (validate,      (one        (dirty symbols ->    (one task per client:
//!   replay,      merge, stamp    lock-free   wake the sessions    ops in; when the socket
//!   venues,      gw_ts, count    latest-     holding them, or     can take a frame, the
//!   http)        rejects)        value slot  write for a parked   newest value of every
//!                                per symbol) one: outbox)         dirty symbol, batched)
//!                                     │
//!                                     └──► encode (each quote's JSON once per seq)
//!
//!  edge: listener, TLS, per-address limits, the WebSocket upgrade, REST, ingest
//!  config composes every component's own section; gateway wires them; cli runs it
//! ```
//!
//! * A feed writes quotes through a [`normalize::Normalizer`] into
//!   [`slots::SlotTable`]: one seqlock slot per interned symbol, whose write
//!   count is the symbol's `seq` on the wire.
//! * A write marks the symbol dirty for every [`fanout`] shard with a
//!   subscriber for it. A shard's pass takes all dirty symbols at once and
//!   serves each interested `session` once: it wakes the session's task,
//!   or, when the task sleeps, writes its frame itself (`outbox`).
//! * A frame is built only when the socket can take one, from the newest
//!   slot values, so updates coalesce by themselves and a slow client costs
//!   no queue. Each quote's JSON is encoded once per seq ([`encode`]) and
//!   copied into every frame that carries it.
//! * The `edge` accepts connections and serves the WebSocket upgrade,
//!   REST, metrics, health and ingest; [`gateway`] wires it all and shuts it
//!   down.
//!
//! Layers, lowest first; a module imports only from layers below it
//! (docs/architecture.md has the whole graph): `model`, `trades`, `cluster`, `sync`,
//! `invalid`, `shutdown` → `protocol`, `metrics` → `slots` →
//! `consolidated` → `normalize` → `feed` → `flow`, `encode`, `outbox` →
//! `fanout` → `auth` → `session` → `edge` → `config` → `gateway`, `record`
//! → `cli`; `watch` (a client: `shutdown`, `model`) → `cli`.

pub mod auth;
pub mod cli;
pub(crate) mod client_tls;
pub mod cluster;
pub mod config;
pub mod consolidated;
pub(crate) mod edge;
pub mod encode;
pub mod fanout;
pub mod feed;
pub(crate) mod flow;
pub mod gateway;
pub mod invalid;
pub mod metrics;
pub mod model;
pub mod normalize;
pub(crate) mod outbox;
pub mod protocol;
pub mod record;
pub(crate) mod session;
pub mod shutdown;
pub mod slots;
pub(crate) mod sync;
pub mod trades;
pub mod watch;

pub use config::Config;
pub use gateway::Gateway;
pub use model::{Quote, Status, SymbolId};
