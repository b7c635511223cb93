//! The cluster's last values, read from the stream: into an edge's slots
//! for a symbol it starts to follow, after a reconnect or an overflow,
//! and for `GET /v1/quotes` of symbols it does not follow; into an
//! ingest's at its start, so its seqs go on ([`Load`]).
//!
//! An ingest stores a symbol's value up to `last_value_interval_ms` after
//! it went out live, so a quote published just before an edge subscribed
//! may be neither in the stream nor received: a symbol read because it is
//! followed now is read once more after that interval
//! ([`LastValues::refresh_later`]), and a quiet symbol does not keep an
//! older value.

use super::wire::{self, Subjects};
use crate::metrics::Metrics;
use crate::model::{SymbolId, Symbols};
use crate::slots::SlotTable;
use async_nats::jetstream::{self, stream};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// How many last-value reads are in flight at once.
const FETCH_CONCURRENCY: usize = 32;

pub struct LastValues {
    js: jetstream::Context,
    stream_name: String,
    /// Found at start, or at the first read after an ingest made it.
    stream: OnceCell<stream::Stream>,
    subjects: Subjects,
    symbols: Arc<Symbols>,
    slots: Arc<SlotTable>,
    metrics: Arc<Metrics>,
    /// How long after a first read the second one comes.
    again_after: Duration,
}

impl LastValues {
    pub fn new(
        js: jetstream::Context,
        stream_name: String,
        subjects: Subjects,
        symbols: Arc<Symbols>,
        slots: Arc<SlotTable>,
        metrics: Arc<Metrics>,
        store_interval: Duration,
    ) -> LastValues {
        LastValues {
            js,
            stream_name,
            stream: OnceCell::new(),
            subjects,
            symbols,
            slots,
            metrics,
            // The interval, the publish and the store on the way: twice it.
            again_after: 2 * store_interval,
        }
    }

    /// The stream, once known.
    pub fn found(&self, s: stream::Stream) {
        let _ = self.stream.set(s);
    }

    /// [`LastValues::refresh`] once the values that went out live before
    /// the first read are surely stored (see the module doc).
    pub async fn refresh_later(&self, syms: &[SymbolId]) {
        tokio::time::sleep(self.again_after).await;
        self.refresh(syms).await;
    }

    /// Reads `syms`' last values and writes them by seq (a newer value
    /// already there stays); nothing while there is no stream yet.
    pub async fn refresh(&self, syms: &[SymbolId]) {
        if syms.is_empty() {
            return;
        }
        let stream = self
            .stream
            .get_or_try_init(|| self.js.get_stream(&self.stream_name))
            .await;
        if let Ok(stream) = stream {
            load_last_values(
                stream,
                &self.subjects,
                &self.symbols,
                &self.slots,
                &self.metrics,
                syms,
                Load::Serve,
            )
            .await;
        }
    }
}

/// How a last value read from the stream is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// As it was numbered (an edge serves it).
    Serve,
    /// Numbered its lag past its seq (an ingest that restarts goes on from
    /// there: live quotes may have gone that far past it).
    Resume,
}

/// Reads the last value of each of `ids` from the stream and writes it
/// (see [`Load`]), so an edge has a value or an ingest's numbering goes
/// on. Returns how many were found.
pub async fn load_last_values(
    stream: &stream::Stream,
    subjects: &Subjects,
    symbols: &Symbols,
    slots: &SlotTable,
    metrics: &Metrics,
    ids: &[SymbolId],
    how: Load,
) -> usize {
    let names: Vec<(SymbolId, String)> = ids
        .iter()
        .map(|&id| (id, subjects.last_value(symbols.name(id))))
        .collect();
    let mut found = 0;
    let mut gets = futures_util::stream::iter(
        names
            .into_iter()
            .map(|(id, subj)| async move { (id, stream.direct_get_last_for_subject(subj).await) }),
    )
    .buffer_unordered(FETCH_CONCURRENCY);
    while let Some((id, r)) = gets.next().await {
        if store_fetched(r, id, symbols, slots, metrics, how) {
            found += 1;
        }
    }
    found
}

/// Writes a fetched last value; `true` if there was one and it was taken.
fn store_fetched(
    r: Result<async_nats::jetstream::message::StreamMessage, stream::DirectGetError>,
    id: SymbolId,
    symbols: &Symbols,
    slots: &SlotTable,
    metrics: &Metrics,
    how: Load,
) -> bool {
    let c = &metrics.cluster;
    match r {
        Ok(m) => match wire::decode_quote(&m.payload) {
            Ok(w) if w.symbol == symbols.name(id) => {
                c.fetch("hit");
                let seq = match how {
                    Load::Serve => w.seq,
                    Load::Resume => w.seq.saturating_add(wire::read_lag(&m.headers)),
                };
                slots.publish_at(id, &w.quote_in(symbols), seq).is_ok()
            }
            _ => {
                c.refused("invalid").inc();
                false
            }
        },
        Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => {
            c.fetch("miss");
            false
        }
        Err(e) => {
            c.fetch("error");
            tracing::debug!(symbol = symbols.name(id), "last value not read: {e}");
            false
        }
    }
}
