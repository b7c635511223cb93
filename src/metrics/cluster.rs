//! The cluster's metrics (scale-out over NATS, `cluster/`) (`tickergate_cluster_*`), registered with the
//! gateway's others; a standalone gateway exports them too (role
//! `standalone`, everything else 0), so one dashboard fits every node.

use super::registered;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

pub struct ClusterMetrics {
    role: IntGaugeVec,
    /// 1 while connected to NATS.
    pub connected: IntGauge,
    /// Connections to NATS made after the first (reconnects).
    pub reconnects: IntCounter,
    /// Ingest: quotes published to NATS.
    pub published: IntCounter,
    /// Ingest: publishes that failed (NATS gone); the value goes out again
    /// when NATS is back.
    pub publish_errors: IntCounter,
    /// Ingest: feed status messages published.
    pub status_published: IntCounter,
    /// Ingest: last values sent to the stream (`<prefix>.lv.*`).
    pub last_values_stored: IntCounter,
    /// Edge: quotes received from NATS and written to the slots.
    pub received: IntCounter,
    /// Edge: quotes received and not written, by reason (`old`: its seq is
    /// not above the slot's; `invalid`: not a quote this gateway sends;
    /// `epoch`: numbered under another epoch).
    refused: IntCounterVec,
    /// Edge: last values read from the stream, by result.
    fetches: IntCounterVec,
    /// Edge: messages NATS dropped because a subscription's buffer was
    /// full (`subscription_capacity`).
    pub overflow: IntCounter,
    /// Edge: NATS subscriptions held for symbols (interest).
    pub subscriptions: IntGauge,
    /// Edge: subscribe and unsubscribe batches sent.
    pub interest_batches: IntCounter,
    /// Ingest: trades published to NATS.
    pub trades_published: IntCounter,
    /// Edge: trades received from NATS and stored.
    pub trades_received: IntCounter,
    /// Trades lost between ingest and edge: the ingest's publisher fell
    /// a whole trade ring behind, or an edge saw a gap in the ingest's
    /// trade seqs (NATS dropped some); clients are told `trades_dropped`.
    pub trades_lost: IntCounter,
    /// Edge: publishing rounds whose fan-out wake was held from their
    /// first quote to their last, by how the hold ended (`end`: the
    /// round's last quote came; `timeout`: it did not come in time).
    rounds_held: IntCounterVec,
}

/// The `role` labels of `tickergate_cluster_role`.
pub const ROLES: [&str; 4] = ["standalone", "ingest", "edge", "both"];
pub const REFUSED_REASONS: [&str; 3] = ["old", "invalid", "epoch"];
pub const FETCH_RESULTS: [&str; 3] = ["hit", "miss", "error"];
pub const HOLD_ENDS: [&str; 2] = ["end", "timeout"];

impl ClusterMetrics {
    pub fn register(registry: &Registry) -> ClusterMetrics {
        let counter = |name: &str, help: &str| registered(registry, IntCounter::new(name, help));
        let gauge = |name: &str, help: &str| registered(registry, IntGauge::new(name, help));
        let counter_vec = |name: &str, help: &str, label: &str, values: &[&str]| {
            let c = registered(
                registry,
                IntCounterVec::new(Opts::new(name, help), &[label]),
            );
            for v in values {
                c.with_label_values(&[v]);
            }
            c
        };
        let role = registered(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "cluster_role",
                    "1 for this node's role: standalone, ingest, edge or both ([cluster] role)",
                ),
                &["role"],
            ),
        );
        let m = ClusterMetrics {
            role,
            connected: gauge(
                "cluster_nats_connected",
                "1 while this node is connected to NATS",
            ),
            reconnects: counter(
                "cluster_nats_reconnects_total",
                "Connections to NATS made after the first one",
            ),
            published: counter(
                "cluster_published_total",
                "Ingest: quotes published to NATS",
            ),
            publish_errors: counter(
                "cluster_publish_errors_total",
                "Ingest: quote publishes that failed; the symbol's latest value is published again once NATS is back",
            ),
            status_published: counter(
                "cluster_status_published_total",
                "Ingest: feed status messages published to NATS",
            ),
            last_values_stored: counter(
                "cluster_last_values_stored_total",
                "Ingest: symbols' last values sent to the last-value stream (at most every last_value_interval_ms per symbol)",
            ),
            received: counter(
                "cluster_received_total",
                "Edge: quotes received from NATS and written to the slots",
            ),
            refused: counter_vec(
                "cluster_refused_total",
                "Edge: quotes received from NATS and not written, by reason (old: seq not above the slot's, invalid: not a tickergate quote, epoch: numbered under another epoch)",
                "reason",
                &REFUSED_REASONS,
            ),
            fetches: counter_vec(
                "cluster_last_value_fetches_total",
                "Edge: last values read from the JetStream stream, by result (hit, miss: none stored, error)",
                "result",
                &FETCH_RESULTS,
            ),
            overflow: counter(
                "cluster_overflow_total",
                "Edge: messages NATS dropped because a subscription's buffer (subscription_capacity) was full; the value is read again from the stream",
            ),
            subscriptions: gauge(
                "cluster_subscriptions",
                "Edge: NATS subscriptions held, one per symbol with local subscribers",
            ),
            interest_batches: counter(
                "cluster_interest_batches_total",
                "Edge: batches of NATS subscribe/unsubscribe sent",
            ),
            trades_published: counter(
                "cluster_trades_published_total",
                "Ingest: trades published to NATS",
            ),
            trades_received: counter(
                "cluster_trades_received_total",
                "Edge: trades received from NATS and stored for its subscribers",
            ),
            trades_lost: counter(
                "cluster_trades_lost_total",
                "Trades lost between ingest and edge (ingest publisher a whole ring behind, or a gap in the ingest's trade seqs seen by an edge); clients get trades_dropped",
            ),
            rounds_held: counter_vec(
                "cluster_rounds_held_total",
                "Edge: publishing rounds (a feed's burst) whose fan-out wake was held from their first quote to their last, by how the hold ended (end: the last quote came, timeout: it did not within the hold limit)",
                "ended",
                &HOLD_ENDS,
            ),
        };
        m.set_role("standalone");
        m
    }

    /// `role`: one of [`ROLES`] (`cluster::Role::as_str`).
    pub fn set_role(&self, role: &str) {
        for x in ROLES {
            self.role.with_label_values(&[x]).set((x == role) as i64);
        }
    }

    /// `reason`: one of [`REFUSED_REASONS`].
    pub fn refused(&self, reason: &str) -> IntCounter {
        self.refused.with_label_values(&[reason])
    }

    /// `ended`: one of [`HOLD_ENDS`].
    pub fn round_held(&self, ended: &str) {
        self.rounds_held.with_label_values(&[ended]).inc();
    }

    /// `result`: one of [`FETCH_RESULTS`].
    pub fn fetch(&self, result: &str) {
        self.fetches.with_label_values(&[result]).inc();
    }
}
