//! The cluster's last values, read from the stream into an edge's slots:
//! for a symbol it starts to follow, after a reconnect or an overflow,
//! and for `GET /v1/quotes` of symbols it does not follow.
//!
//! An ingest stores a symbol's value up to `last_value_interval_ms` after
//! it went out live, so a quote published just before an edge subscribed
//! may be neither in the stream nor received: a symbol read because it is
//! followed now is read once more after that interval
//! ([`LastValues::refresh_later`]), and a quiet symbol does not keep an
//! older value.

use super::publish::{load_last_values, Load};
use super::wire::Subjects;
use crate::metrics::Metrics;
use crate::model::{SymbolId, Symbols};
use crate::slots::SlotTable;
use async_nats::jetstream::{self, stream};
use std::sync::Arc;
use std::time::Duration;
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
