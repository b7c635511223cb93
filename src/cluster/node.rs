//! Starting a node's cluster part, in two steps around the gateway's own
//! start: [`prepare`] before feeds run and clients come (connect, the
//! stream, the epoch, seqs resumed or symbols learned), [`Prepared::spawn`]
//! once they may.

use super::config::{ClusterConfig, Role};
use super::connect;
use super::follow::Follower;
use super::last_values;
use super::publish::{self, Publisher};
use super::wire::Subjects;
use crate::feed::Feeds;
use crate::metrics::Metrics;
use crate::model::{SymbolId, Symbols};
use crate::shutdown::Trigger;
use crate::slots::SlotTable;
use crate::sync::RwLock;
use async_nats::jetstream;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Connect(#[from] connect::ConnectError),
    #[error(transparent)]
    Setup(#[from] publish::SetupError),
}

/// What a node needs from the gateway it is part of.
pub struct Parts {
    pub symbols: Arc<Symbols>,
    pub slots: Arc<SlotTable>,
    pub feeds: Arc<Feeds>,
    pub metrics: Arc<Metrics>,
    pub on_new: Arc<dyn Fn() + Send + Sync>,
}

/// A node connected and ready to run.
pub enum Prepared {
    Ingest(Box<Publisher>),
    Edge(Box<Follower>),
}

/// Connects and does what must come before feeds start and clients are
/// served. Waits for NATS (saying so in the log): an ingest that cannot
/// read the stream cannot know where its seqs go on from.
pub async fn prepare(cfg: &ClusterConfig, p: &Parts) -> Result<Option<Prepared>, ClusterError> {
    if cfg.role == Role::Standalone {
        return Ok(None);
    }
    p.metrics.cluster.set_role(cfg.role.as_str());
    let node = cfg.node_name();
    let mut nats = connect::connect(cfg, &node, &p.metrics).await?;
    if cfg.role == Role::Edge {
        let mut f = Follower::new(
            nats,
            cfg.clone(),
            p.symbols.clone(),
            p.slots.clone(),
            p.feeds.clone(),
            p.metrics.clone(),
            p.on_new.clone(),
        );
        f.prepare().await;
        return Ok(Some(Prepared::Edge(Box::new(f))));
    }
    nats.wait_connected(&cfg.nats_url).await;
    let js = jetstream::new(nats.client.clone());
    let subjects = Subjects::new(&cfg.subject_prefix);
    let stream = publish::ensure_stream(&js, cfg, &subjects).await?;
    let epoch = publish::ensure_epoch(&js, &stream, &subjects, &node, None).await;
    let ids: Vec<SymbolId> = p.symbols.iter().map(|(id, _)| id).collect();
    let resumed = last_values::load_last_values(
        &stream,
        &subjects,
        &p.symbols,
        &p.slots,
        &p.metrics,
        &ids,
        last_values::Load::Resume,
    )
    .await;
    tracing::info!(%epoch, resumed, symbols = ids.len(), stream = %cfg.stream_name(), "ingest: seqs go on from the stream");
    // From here on every write is seen by the publisher.
    p.slots.tap();
    Ok(Some(Prepared::Ingest(Box::new(Publisher {
        nats,
        js,
        cfg: cfg.clone(),
        subjects,
        symbols: p.symbols.clone(),
        slots: p.slots.clone(),
        metrics: p.metrics.clone(),
        node,
        feeds: p.feeds.clone(),
        epoch,
    }))))
}

impl Prepared {
    /// An edge's way to the cluster's last values.
    pub fn last_values(&self) -> Option<Arc<super::last_values::LastValues>> {
        match self {
            Prepared::Edge(f) => Some(f.last.clone()),
            Prepared::Ingest(_) => None,
        }
    }

    /// The epoch clients of this node are told.
    pub fn epoch(&self) -> &str {
        match self {
            Prepared::Ingest(p) => &p.epoch,
            Prepared::Edge(f) => &f.epoch,
        }
    }

    /// Starts the node's tasks.
    /// Starts the node's tasks; `epoch` is what new sessions are told
    /// (an edge that started before any ingest adopts the first epoch it
    /// hears).
    pub(crate) fn spawn(self, trigger: &Trigger, epoch: Arc<RwLock<String>>) {
        match self {
            Prepared::Edge(mut f) => {
                f.epoch_cell = Some(epoch);
                tokio::spawn(f.run(trigger.subscribe()));
            }
            Prepared::Ingest(publisher) => {
                tokio::spawn(publisher.clone().run_status(trigger.subscribe()));
                tokio::spawn(publisher.run(trigger.subscribe()));
            }
        }
    }
}
