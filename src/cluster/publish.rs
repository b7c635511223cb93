//! The ingest role: the last-value stream, the cluster's epoch, seqs
//! resumed after a restart, and the tasks that publish quotes and feed
//! status.
//!
//! The publisher follows every symbol through the slot table's tap (a
//! dirty bit per symbol, like a fan-out shard with every symbol
//! subscribed): it publishes each value it finds once. Keeping up, that is
//! every accepted quote; behind (NATS slow or gone), it coalesces to each
//! symbol's latest, so nothing queues between the feeds and NATS.
//!
//! Live quotes are not stored. A symbol's last value goes to the stream
//! (`<prefix>.lv.<symbol>`) with its live quote when its last store is
//! `last_value_interval_ms` old (a quiet symbol's every value: the stream
//! is current), else at a tick once it is (a busy symbol's at most once
//! per interval), and at least every `last_value_max_lag` seqs (stored
//! before the live quote that reaches it). So a symbol's live seq is
//! never more than the lag past its stored one, which every stored value
//! carries (`Tg-Lag`): an ingest that restarts, even one killed, numbers
//! on past it, and no seq a client saw is given to another value.

use super::config::{ClusterConfig, Storage};
use super::connect::Nats;
use super::wire::{
    chunk_round, lag_headers, EpochMsg, FeedStatus, Round, Subjects, ROUND_CHUNK_BYTES,
    ROUND_HEADER_ROOM,
};
use crate::feed::Feeds;
use crate::metrics::Metrics;
use crate::model::{now_ns, SymbolId, Symbols};
use crate::protocol::messages::{encode_quote, encode_trade};
use crate::shutdown::Shutdown;
use crate::slots::SlotTable;
use crate::trades::Read;
use async_nats::jetstream::{self, stream};
use async_nats::Subject;
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("stream {stream} exists with max_msgs_per_subject {found}; a last-value stream needs 1 (delete it or name another in [cluster] stream)")]
    NotLastValue { stream: String, found: i64 },
    #[error("stream {stream} stores every quote ({subject}): a tickergate before 2026-12-07 made it; delete it (nats stream rm {stream}; clients then start a new epoch) or name another in [cluster] stream")]
    OldLayout { stream: String, subject: String },
    #[error("stream {stream} does not take {subject} (its subjects: {have:?}); name another in [cluster] stream")]
    Subjects {
        stream: String,
        subject: String,
        have: Vec<String>,
    },
}

/// The stream's configuration for `cfg`.
pub fn stream_config(cfg: &ClusterConfig, subjects: &Subjects) -> stream::Config {
    stream::Config {
        name: cfg.stream_name(),
        description: Some(
            "tickergate: the last value of every symbol, feed status and epoch".into(),
        ),
        subjects: subjects.stored(),
        max_messages_per_subject: 1,
        storage: match cfg.storage {
            Storage::File => stream::StorageType::File,
            Storage::Memory => stream::StorageType::Memory,
        },
        num_replicas: cfg.replicas,
        allow_direct: true,
        ..Default::default()
    }
}

/// Gets the stream, creating it if missing, and checks it is a last-value
/// stream over this cluster's subjects. Retries while NATS cannot answer.
pub async fn ensure_stream(
    js: &jetstream::Context,
    cfg: &ClusterConfig,
    subjects: &Subjects,
) -> Result<stream::Stream, SetupError> {
    let want = stream_config(cfg, subjects);
    let s = loop {
        match js.get_or_create_stream(want.clone()).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(stream = %want.name, "JetStream stream not ready: {e} (is JetStream on: nats-server -js?); retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let have = &s.cached_info().config;
    if have.max_messages_per_subject != 1 {
        return Err(SetupError::NotLastValue {
            stream: want.name,
            found: have.max_messages_per_subject,
        });
    }
    if have.subjects.contains(&subjects.quotes()) {
        return Err(SetupError::OldLayout {
            stream: want.name,
            subject: subjects.quotes(),
        });
    }
    for sub in &want.subjects {
        if !have.subjects.contains(sub) {
            return Err(SetupError::Subjects {
                stream: want.name.clone(),
                subject: sub.clone(),
                have: have.subjects.clone(),
            });
        }
    }
    Ok(s)
}

/// The cluster's epoch: the one stored, or else `mine` (an ingest whose
/// NATS lost the stream, a memory stream after a NATS restart, stores
/// again the epoch its seqs go on in) or a new one, stored by this node
/// (only if none is there: two ingests starting at once agree on one).
pub async fn ensure_epoch(
    js: &jetstream::Context,
    stream: &stream::Stream,
    subjects: &Subjects,
    node: &str,
    mine: Option<&str>,
) -> String {
    loop {
        if let Some(e) = stored_epoch(stream, subjects).await {
            return e;
        }
        let msg = EpochMsg {
            epoch: mine.map_or_else(crate::session::new_epoch, str::to_string),
            node: node.to_string(),
            ts: now_ns(),
        };
        let body = serde_json::to_vec(&msg).unwrap_or_default();
        let mut h = async_nats::HeaderMap::new();
        h.insert(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, "0");
        match js
            .publish_with_headers(subjects.epoch(), h, body.into())
            .await
        {
            Ok(ack) => match ack.await {
                Ok(_) => {
                    tracing::info!(epoch = %msg.epoch, "started the cluster's seq numbering");
                    return msg.epoch;
                }
                // Another node stored one first: read it.
                Err(e) => tracing::debug!("epoch not stored: {e}"),
            },
            Err(e) => {
                tracing::warn!("cannot store the cluster epoch: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The epoch stored in the stream, if any.
pub async fn stored_epoch(stream: &stream::Stream, subjects: &Subjects) -> Option<String> {
    let m = stream
        .direct_get_last_for_subject(subjects.epoch())
        .await
        .ok()?;
    serde_json::from_slice::<EpochMsg>(&m.payload)
        .ok()
        .map(|e| e.epoch)
}

/// Publishes each symbol's value as it changes (see the module doc), and
/// the feeds' status.
#[derive(Clone)]
pub struct Publisher {
    pub nats: Nats,
    pub js: jetstream::Context,
    pub cfg: ClusterConfig,
    pub subjects: Subjects,
    pub symbols: Arc<Symbols>,
    pub slots: Arc<SlotTable>,
    pub metrics: Arc<Metrics>,
    pub node: String,
    pub feeds: Arc<Feeds>,
    pub epoch: String,
}

/// What the publisher keeps per symbol.
struct Out {
    quote: Subject,
    trade: Subject,
    last_value: Subject,
    /// The seq of the last quote that went out: a status change marks
    /// the symbol too, and its unchanged value is not sent again.
    sent: u64,
    /// The seq of the last value sent to the stream (0: none since this
    /// ingest started or NATS came back: the next one is stored at once).
    stored: u64,
    /// When `stored` was sent.
    stored_at: Instant,
    /// In the list of symbols to store at a tick.
    pending: bool,
    /// The ingest's number of the last trade that went out.
    trades_sent: u64,
}

/// Why a round of publishing stopped early.
struct Failed;

/// What one publishing round sends: its quotes, the last values that
/// must go before them (a symbol's first since the start, or
/// `last_value_max_lag` seqs on: see the module doc) and those that may
/// go after (an interval since the last), and the symbols to store at a
/// tick.
struct Batch<'a> {
    quotes: &'a mut Vec<(Subject, Bytes)>,
    before: &'a mut Vec<(Subject, Bytes)>,
    after: &'a mut Vec<(Subject, Bytes)>,
    unstored: &'a mut Vec<SymbolId>,
    now: Instant,
}

impl Publisher {
    pub async fn run(mut self, mut shutdown: Shutdown) {
        let tap = self.slots.tap();
        let mut outs: Vec<Out> = Vec::new();
        let mut dirty: Vec<SymbolId> = Vec::new();
        let mut buf = String::with_capacity(256);
        let mut quotes: Vec<(Subject, Bytes)> = Vec::new();
        let (mut before, mut after): (Vec<(Subject, Bytes)>, Vec<_>) = (Vec::new(), Vec::new());
        let mut unstored: Vec<SymbolId> = Vec::new();
        let mut chunks: Vec<Bytes> = Vec::new();
        let round_subject = Subject::from(self.subjects.round(&self.node));
        // The header of every stored value (made once, cloned per value).
        let lag = lag_headers(self.cfg.last_value_max_lag);
        let mut store_tick =
            tokio::time::interval(Duration::from_millis(self.cfg.last_value_interval_ms / 2));
        store_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.grow(&mut outs);
        // Every symbol is looked at once at the start (writes before the
        // tap existed); values resumed from the stream are there already
        // and are skipped by seq.
        let mut sweep = true;
        let mut resend = false;
        loop {
            tokio::select! {
                _ = shutdown.wait() => {
                    // What changed since the last tick, so a restart
                    // starts from the values clients saw.
                    let last = async {
                        let _ = self.store_changed(&mut outs, &mut unstored, &mut buf, &lag, true).await;
                        let _ = self.nats.client.flush().await;
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(2), last).await;
                    return;
                }
                _ = tap.wait() => {}
                _ = store_tick.tick() => {
                    if !unstored.is_empty()
                        && self.nats.is_connected()
                        && self.store_changed(&mut outs, &mut unstored, &mut buf, &lag, false).await.is_err()
                    {
                        resend = true;
                    }
                    continue;
                }
                r = self.nats.connected.changed() => {
                    if r.is_err() {
                        return;
                    }
                    if *self.nats.connected.borrow_and_update() {
                        self.after_reconnect().await;
                        resend = true;
                    }
                }
            }
            dirty.clear();
            tap.drain(|s| dirty.push(s));
            if !self.nats.is_connected() {
                // Kept in the slots (and trade rings); out on reconnect.
                continue;
            }
            self.grow(&mut outs);
            if resend {
                // The stream may have lost values: all of them again,
                // stored at once.
                for o in outs.iter_mut() {
                    (o.sent, o.stored, o.pending) = (0, 0, false);
                }
                unstored.clear();
            }
            if sweep || resend {
                (sweep, resend) = (false, false);
                dirty.clear();
                dirty.extend((0..outs.len()).map(|i| SymbolId(i as u32)));
            }
            // One round goes to the NATS client whole: without tokio's
            // cooperative budget, which would hand the connection every
            // 128 messages, a feed's burst leaves in one piece and edges
            // fan it out whole (a full command channel still waits). Its
            // quotes go between the last values due (see `Batch`): first
            // the round in few messages (`wire::chunk_round`, the first
            // and last marked: `wire::Round`), then one per symbol.
            let round = async {
                quotes.clear();
                before.clear();
                after.clear();
                let now = Instant::now();
                for &sym in &dirty {
                    let Some(out) = outs.get_mut(sym.index()) else {
                        continue;
                    };
                    let mut batch = Batch {
                        quotes: &mut quotes,
                        before: &mut before,
                        after: &mut after,
                        unstored: &mut unstored,
                        now,
                    };
                    if self
                        .publish_symbol(sym, out, &mut buf, &mut batch)
                        .await
                        .is_err()
                    {
                        self.metrics.cluster.publish_errors.inc();
                        return true;
                    }
                }
                if self.store(&mut before, &lag).await.is_err() {
                    return true;
                }
                // The round whole, for edges that follow every quote,
                // then each quote on its symbol's subject.
                chunks.clear();
                // The server's max_payload counts the header too.
                let limit = (self
                    .nats
                    .client
                    .max_payload()
                    .saturating_sub(ROUND_HEADER_ROOM))
                .clamp(256, ROUND_CHUNK_BYTES);
                chunk_round(quotes.iter().map(|(_, b)| &b[..]), limit, &mut chunks);
                let n = chunks.len();
                for (i, chunk) in chunks.drain(..).enumerate() {
                    if self
                        .send(round_subject.clone(), chunk, Round::of(i, n))
                        .await
                        .is_err()
                    {
                        self.metrics.cluster.publish_errors.inc();
                        return true;
                    }
                }
                for (subject, body) in quotes.drain(..) {
                    if self.send(subject, body, None).await.is_err() {
                        self.metrics.cluster.publish_errors.inc();
                        return true;
                    }
                    self.metrics.cluster.published.inc();
                }
                self.store(&mut after, &lag).await.is_err()
            };
            if tokio::task::unconstrained(round).await {
                resend = true;
            }
        }
    }

    /// Per-symbol state for symbols added since (all at the start); each
    /// one's trades are taken from here on.
    fn grow(&self, outs: &mut Vec<Out>) {
        let trades = self.slots.trades();
        while outs.len() < self.symbols.len() {
            let sym = SymbolId(outs.len() as u32);
            let name = self.symbols.name(sym);
            if self.cfg.trades {
                trades.listen(sym, true);
            }
            outs.push(Out {
                quote: Subject::from(self.subjects.quote(name)),
                trade: Subject::from(self.subjects.trade(name)),
                last_value: Subject::from(self.subjects.last_value(name)),
                sent: self.slots.seq(sym),
                // Even a value resumed from the stream: it sits there
                // under its own seq, not the one resumed past it.
                stored: 0,
                stored_at: Instant::now(),
                pending: false,
                trades_sent: trades.head(sym),
            });
        }
    }

    /// Adds `sym`'s quote to the round if it is new (and to its stores if
    /// its last value is due: its first, its last store an interval old,
    /// or `last_value_max_lag` seqs on; else it is stored at a tick), and
    /// publishes its trades not yet out.
    async fn publish_symbol(
        &self,
        sym: SymbolId,
        out: &mut Out,
        buf: &mut String,
        batch: &mut Batch<'_>,
    ) -> Result<(), Failed> {
        let c = &self.metrics.cluster;
        if let Some((q, seq)) = self.slots.read(sym) {
            if seq > out.sent {
                buf.clear();
                encode_quote(buf, &self.symbols, sym, seq, &q, false);
                let body = Bytes::copy_from_slice(buf.as_bytes());
                let to = if out.stored == 0
                    || seq.saturating_sub(out.stored) >= self.cfg.last_value_max_lag
                {
                    Some(&mut *batch.before)
                } else if batch.now.duration_since(out.stored_at) >= self.store_interval() {
                    Some(&mut *batch.after)
                } else {
                    None
                };
                if let Some(to) = to {
                    to.push((out.last_value.clone(), body.clone()));
                    (out.stored, out.stored_at) = (seq, batch.now);
                } else if !out.pending {
                    out.pending = true;
                    batch.unstored.push(sym);
                }
                batch.quotes.push((out.quote.clone(), body));
                // A round that fails is sent again whole (`resend`).
                out.sent = seq;
            }
        }
        if !self.cfg.trades {
            return Ok(());
        }
        let trades = self.slots.trades();
        let head = trades.head(sym);
        while out.trades_sent < head {
            let n = out.trades_sent + 1;
            match trades.read(sym, n) {
                Read::Trade(t) => {
                    buf.clear();
                    encode_trade(buf, self.symbols.name(sym), n, &t);
                    let body = Bytes::copy_from_slice(buf.as_bytes());
                    self.send(out.trade.clone(), body, None).await?;
                    c.trades_published.inc();
                }
                // Overwritten before it went out (a whole ring behind):
                // edges see the gap and tell their clients.
                Read::Gone => c.trades_lost.inc(),
                // Its writer wakes the tap when it is done.
                Read::NotYet => break,
            }
            out.trades_sent = n;
        }
        Ok(())
    }

    /// Sends last values (and empties `values`).
    async fn store(
        &self,
        values: &mut Vec<(Subject, Bytes)>,
        lag: &async_nats::HeaderMap,
    ) -> Result<(), Failed> {
        if values.is_empty() {
            return Ok(());
        }
        for (subject, body) in values.drain(..) {
            let c = &self.nats.client;
            if let Err(e) = c.publish_with_headers(subject, lag.clone(), body).await {
                tracing::debug!("last value not stored: {e}");
                self.metrics.cluster.publish_errors.inc();
                return Err(Failed);
            }
            self.metrics.cluster.last_values_stored.inc();
        }
        Ok(())
    }

    fn store_interval(&self) -> Duration {
        Duration::from_millis(self.cfg.last_value_interval_ms)
    }

    /// Sends to the stream the current value of each symbol in `unstored`
    /// whose last store is an interval old (`all`: of each), if it
    /// changed since; the others stay in the list.
    async fn store_changed(
        &self,
        outs: &mut [Out],
        unstored: &mut Vec<SymbolId>,
        buf: &mut String,
        lag: &async_nats::HeaderMap,
        all: bool,
    ) -> Result<(), Failed> {
        let now = Instant::now();
        let mut values = Vec::new();
        let mut i = 0;
        while let Some(&sym) = unstored.get(i) {
            let Some(out) = outs.get_mut(sym.index()) else {
                unstored.swap_remove(i);
                continue;
            };
            if !all && now.duration_since(out.stored_at) < self.store_interval() {
                i += 1;
                continue;
            }
            unstored.swap_remove(i);
            out.pending = false;
            let Some((q, seq)) = self.slots.read(sym) else {
                continue;
            };
            if seq <= out.stored {
                continue;
            }
            // Its newest value, maybe not out live yet: a stored value
            // ahead of the live one is no harm (the same seq, the same
            // quote).
            buf.clear();
            encode_quote(buf, &self.symbols, sym, seq, &q, false);
            values.push((
                out.last_value.clone(),
                Bytes::copy_from_slice(buf.as_bytes()),
            ));
            // A failed send is followed by every value again (`resend`).
            (out.stored, out.stored_at) = (seq, now);
        }
        self.store(&mut values, lag).await
    }

    async fn send(&self, subject: Subject, body: Bytes, mark: Option<Round>) -> Result<(), Failed> {
        let c = &self.nats.client;
        match mark {
            None => c.publish(subject, body).await,
            Some(r) => c.publish_with_headers(subject, r.headers(), body).await,
        }
        .map_err(|e| {
            tracing::debug!("publish failed: {e}");
            Failed
        })
    }

    /// After NATS comes back: the stream may be new (a memory stream is
    /// lost with its server), so it and the epoch are made again.
    async fn after_reconnect(&self) {
        let setup = async {
            match ensure_stream(&self.js, &self.cfg, &self.subjects).await {
                Ok(s) => {
                    let e =
                        ensure_epoch(&self.js, &s, &self.subjects, &self.node, Some(&self.epoch))
                            .await;
                    if e != self.epoch {
                        tracing::warn!(stored = %e, serving = %self.epoch, "the stream holds another epoch than this ingest's");
                    }
                }
                Err(e) => tracing::error!("{e}"),
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), setup)
            .await
            .is_err()
        {
            tracing::warn!("JetStream stream not checked after reconnect (timed out)");
        }
    }
}

impl Publisher {
    /// Publishes every feed's status every `status_interval_ms`; symbols that
    /// belong to no feed (consolidated ones) go out as feed `consolidated`,
    /// live while the ingest is.
    pub async fn run_status(self, mut shutdown: Shutdown) {
        let Publisher {
            nats,
            subjects,
            feeds,
            symbols,
            epoch,
            node,
            metrics,
            cfg,
            ..
        } = self;
        let interval_ms = cfg.status_interval_ms;
        let mut tick = tokio::time::interval(Duration::from_millis(interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let fed: std::collections::HashSet<SymbolId> =
            feeds.iter().flat_map(|f| f.symbol_ids()).collect();
        let derived: Vec<String> = symbols
            .iter()
            .filter(|(id, _)| !fed.contains(id))
            .map(|(_, n)| n.to_string())
            .collect();
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tick.tick() => {}
            }
            if !nats.is_connected() {
                continue;
            }
            // (feed, up, its symbols)
            let mut all: Vec<(String, bool, Vec<&str>)> = feeds
                .iter()
                .map(|f| {
                    let names = f.symbol_ids().into_iter().map(|id| symbols.name(id));
                    (f.name.clone(), f.is_up(), names.collect())
                })
                .collect();
            if !derived.is_empty() {
                let names = derived.iter().map(String::as_str).collect();
                all.push(("consolidated".into(), true, names));
            }
            for (feed, up, names) in all {
                let Ok(list) = serde_json::value::to_raw_value(&names) else {
                    continue;
                };
                let st = FeedStatus {
                    feed: feed.as_str().into(),
                    node: node.as_str().into(),
                    epoch: epoch.as_str().into(),
                    up,
                    symbols: &list,
                    interval_ms,
                    ts: now_ns(),
                    rounds: true,
                };
                let Ok(body) = serde_json::to_vec(&st) else {
                    continue;
                };
                let publish = nats.client.publish(subjects.status(&st.feed), body.into());
                match tokio::time::timeout(Duration::from_millis(interval_ms), publish).await {
                    Ok(Ok(())) => metrics.cluster.status_published.inc(),
                    _ => metrics.cluster.publish_errors.inc(),
                }
            }
        }
    }
}
