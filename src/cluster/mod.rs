//! Scale-out over NATS (issue 18): ingest nodes run the feeds and publish
//! every accepted quote; edge nodes have no feeds and serve clients from
//! what they receive, keeping the ingest's seq (docs/scaling.md).

pub mod config;
pub mod connect;
pub mod follow;
pub mod last_values;
pub mod node;
pub mod publish;
pub mod subject;
pub mod wire;

pub use config::{ClusterConfig, Role};
