//! Scale-out over NATS (issue 18), being built: what is here so far is the
//! part every role shares, the mapping between gateway symbols and NATS
//! subjects ([`subject`]). The ingest and edge roles come next (design
//! notes: docs/design.md, "Scale-out over NATS").

pub mod subject;
