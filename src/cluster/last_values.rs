//! The cluster's last values, read from the stream into an edge's slots:
//! for a symbol it starts to follow, after a reconnect or an overflow,
//! and for `GET /v1/quotes` of symbols it does not follow.

use super::publish::load_last_values;
use super::wire::Subjects;
use crate::metrics::Metrics;
use crate::model::{SymbolId, Symbols};
use crate::slots::SlotTable;
use async_nats::jetstream::{self, stream};
use std::sync::Arc;
use tokio::sync::OnceCell;

pub struct LastValues {
    js: jetstream::Context,
    stream_name: String,
    /// Found at start, or at the first read after an ingest made it.
    stream: OnceCell<stream::Stream>,
    subjects: Subjects,
    symbols: Arc<Symbols>,
    slots: Arc<SlotTable>,
    metrics: Arc<Metrics>,
}

impl LastValues {
    pub fn new(
        js: jetstream::Context,
        stream_name: String,
        subjects: Subjects,
        symbols: Arc<Symbols>,
        slots: Arc<SlotTable>,
        metrics: Arc<Metrics>,
    ) -> LastValues {
        LastValues {
            js,
            stream_name,
            stream: OnceCell::new(),
            subjects,
            symbols,
            slots,
            metrics,
        }
    }

    /// The stream, once known.
    pub fn found(&self, s: stream::Stream) {
        let _ = self.stream.set(s);
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
            )
            .await;
        }
    }
}
