//! Feed adapters and their health.
//!
//! Every feed registers a [`FeedState`]: the symbols it provides and when it
//! last showed signs of life (data or a heartbeat). A watchdog turns a
//! silence longer than the feed's `stale_after` into `status: stale` for its
//! symbols and back to `live` when the feed recovers; `/readyz` is ready
//! only while every feed is fresh.

pub mod sim;

use crate::metrics::Metrics;
use crate::model::{now_ns, Status, SymbolId};
use crate::shutdown::Shutdown;
use crate::slots::SlotTable;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct FeedState {
    pub name: String,
    pub symbols: Vec<SymbolId>,
    last_alive_ns: AtomicI64,
    up: AtomicBool,
    stale_after_ns: i64,
    /// Operator/test control: a paused feed sends nothing, not even
    /// heartbeats, exactly like a silent upstream.
    paused: AtomicBool,
}

impl FeedState {
    pub fn new(name: &str, symbols: Vec<SymbolId>, stale_after: Duration) -> Self {
        FeedState {
            name: name.to_string(),
            symbols,
            last_alive_ns: AtomicI64::new(0),
            up: AtomicBool::new(false),
            stale_after_ns: stale_after.as_nanos().min(i64::MAX as u128) as i64,
            paused: AtomicBool::new(false),
        }
    }

    /// The upstream showed signs of life (data or heartbeat).
    pub fn alive(&self) {
        self.last_alive_ns.store(now_ns(), Ordering::Relaxed);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn set_paused(&self, p: bool) {
        self.paused.store(p, Ordering::Release);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }
}

#[derive(Default)]
pub struct Feeds {
    pub feeds: Vec<Arc<FeedState>>,
}

impl Feeds {
    pub fn get(&self, name: &str) -> Option<&Arc<FeedState>> {
        self.feeds.iter().find(|f| f.name == name)
    }

    pub fn all_up(&self) -> bool {
        self.feeds.iter().all(|f| f.is_up())
    }

    /// One watchdog pass; returns the feeds whose state changed.
    pub fn check(&self, slots: &SlotTable, metrics: &Metrics) -> usize {
        let now = now_ns();
        let mut changed = 0;
        for f in &self.feeds {
            let last = f.last_alive_ns.load(Ordering::Relaxed);
            let fresh = last > 0 && now - last <= f.stale_after_ns;
            if fresh != f.is_up() {
                f.up.store(fresh, Ordering::Release);
                let st = if fresh { Status::Live } else { Status::Stale };
                if fresh {
                    tracing::info!(feed = %f.name, "feed is live");
                } else {
                    tracing::warn!(feed = %f.name, "feed is silent: its symbols are stale");
                }
                for s in &f.symbols {
                    slots.set_status(*s, st);
                }
                metrics
                    .feed_up
                    .with_label_values(&[&f.name])
                    .set(fresh as i64);
                changed += 1;
            }
        }
        changed
    }

    pub async fn watchdog(
        self: Arc<Self>,
        slots: Arc<SlotTable>,
        metrics: Arc<Metrics>,
        mut shutdown: Shutdown,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tick.tick() => { self.check(&slots, &metrics); }
            }
        }
    }
}
