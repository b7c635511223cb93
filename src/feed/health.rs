//! Feed health.
//!
//! Every feed registers a [`FeedState`]: the symbols it provides and when it
//! last showed signs of life (data or a heartbeat). A watchdog turns a
//! silence longer than the feed's `stale_after` into `status: stale` for its
//! symbols and back to `live` when the feed recovers; `/readyz` is ready
//! only while every feed is fresh.

use crate::metrics::Metrics;
use crate::model::{now_ns, Status, SymbolId};
use crate::shutdown::Shutdown;
use crate::slots::SlotTable;
use crate::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct FeedState {
    pub name: String,
    /// The symbols it provides (an HTTP ingest feed with a pattern adds
    /// to them while running).
    symbols: RwLock<Vec<SymbolId>>,
    last_alive_ns: AtomicI64,
    up: AtomicBool,
    /// Silence after which the feed is stale, ns; `None`: never (a push
    /// feed whose silence means nothing).
    stale_after_ns: Option<i64>,
    /// Operator/test control: a paused feed sends nothing, not even
    /// heartbeats, exactly like a silent upstream.
    paused: AtomicBool,
    revive: std::sync::OnceLock<Revive>,
    /// When the feed was created, ns: one that has sent nothing for
    /// `stale_after` since is stale too, although it never was live.
    created_ns: i64,
    /// Its symbols were marked stale for a silence since the start, or it
    /// has been live (so a later silence is the watchdog's usual case).
    never_marked: AtomicBool,
}

struct Revive {
    slots: Arc<SlotTable>,
    up_gauge: prometheus::IntGauge,
}

impl FeedState {
    /// `stale_after: None` is a feed that is never stale (a push feed whose
    /// silence means nothing).
    pub fn new(name: &str, symbols: Vec<SymbolId>, stale_after: Option<Duration>) -> Self {
        FeedState {
            name: name.to_string(),
            symbols: RwLock::new(symbols),
            last_alive_ns: AtomicI64::new(0),
            up: AtomicBool::new(false),
            stale_after_ns: stale_after.map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
            paused: AtomicBool::new(false),
            revive: std::sync::OnceLock::new(),
            created_ns: now_ns(),
            never_marked: AtomicBool::new(false),
        }
    }

    /// The upstream showed signs of life (data or heartbeat). A feed that
    /// was down turns live here, at once, so subscribers see `live` before
    /// the fresh data that follows (the watchdog only notices silence).
    pub fn alive(&self) {
        self.last_alive_ns.store(now_ns(), Ordering::Relaxed);
        if !self.up.load(Ordering::Acquire) {
            if let Some(r) = self.revive.get() {
                if !self.up.swap(true, Ordering::AcqRel) {
                    self.never_marked.store(true, Ordering::Release);
                    tracing::info!(feed = %self.name, "feed is live");
                    for s in self.symbols.read().iter() {
                        r.slots.set_status(*s, Status::Live);
                    }
                    r.up_gauge.set(1);
                }
            }
        }
    }

    /// Lets [`FeedState::alive`] turn the feed live itself. Without it only
    /// the watchdog does (within its 100 ms tick).
    pub fn attach(&self, slots: Arc<SlotTable>, up_gauge: prometheus::IntGauge) {
        let _ = self.revive.set(Revive { slots, up_gauge });
    }

    /// The symbols it provides now.
    pub fn symbol_ids(&self) -> Vec<SymbolId> {
        self.symbols.read().clone()
    }

    /// How many symbols it provides.
    pub fn symbol_count(&self) -> usize {
        self.symbols.read().len()
    }

    /// A symbol the feed added while running: it follows the feed's state
    /// from now on, and starts in it (a stale feed's new symbol is stale).
    pub fn add_symbol(&self, sym: SymbolId, slots: &SlotTable) {
        self.add_symbols(&[sym], slots);
    }

    /// [`FeedState::add_symbol`] for many at once (an edge learning a
    /// feed's list of thousands): one pass over a set, not one scan of the
    /// list per symbol.
    pub fn add_symbols(&self, syms: &[SymbolId], slots: &SlotTable) {
        let mut list = self.symbols.write();
        let mut have: Option<std::collections::HashSet<SymbolId>> =
            (syms.len() > 1).then(|| list.iter().copied().collect());
        let up = self.is_up();
        for &sym in syms {
            let new = match &mut have {
                Some(set) => set.insert(sym),
                None => !list.contains(&sym),
            };
            if new {
                list.push(sym);
                if !up {
                    slots.set_status(sym, Status::Stale);
                }
            }
        }
    }

    /// A symbol it no longer provides (an edge learns that from its
    /// ingest); its status no longer follows the feed's. Whether it was
    /// one.
    pub fn remove_symbol(&self, sym: SymbolId) -> bool {
        let mut list = self.symbols.write();
        let before = list.len();
        list.retain(|s| *s != sym);
        list.len() != before
    }

    /// The upstream connection is gone: its symbols go stale at the
    /// watchdog's next pass instead of after `stale_after`.
    pub fn down(&self) {
        self.last_alive_ns.store(0, Ordering::Relaxed);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Milliseconds since the last sign of life, `None` before the first
    /// (or after the upstream connection went away).
    pub fn silent_ms(&self) -> Option<i64> {
        let at = self.last_alive_ns.load(Ordering::Relaxed);
        (at > 0).then(|| (now_ns() - at).max(0) / 1_000_000)
    }

    pub fn set_paused(&self, p: bool) {
        self.paused.store(p, Ordering::Release);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }
}

/// Every feed's health, for the watchdog and `/readyz`. Feeds join while
/// running on an edge node (it learns them from the ingest nodes' status).
#[derive(Default)]
pub struct Feeds {
    feeds: RwLock<Vec<Arc<FeedState>>>,
}

impl Feeds {
    pub fn add(&self, feed: Arc<FeedState>) {
        self.feeds.write().push(feed);
    }

    /// The feeds now (a copy of the list: feeds may join meanwhile).
    pub fn iter(&self) -> std::vec::IntoIter<Arc<FeedState>> {
        self.feeds.read().clone().into_iter()
    }

    pub fn get(&self, name: &str) -> Option<Arc<FeedState>> {
        self.feeds.read().iter().find(|f| f.name == name).cloned()
    }

    pub fn all_up(&self) -> bool {
        self.feeds.read().iter().all(|f| f.is_up())
    }

    /// One watchdog pass; returns the feeds whose state changed.
    pub fn check(&self, slots: &SlotTable, metrics: &Metrics) -> usize {
        let now = now_ns();
        let mut changed = 0;
        for f in self.iter() {
            let last = f.last_alive_ns.load(Ordering::Relaxed);
            // Never alive since the start, for longer than `stale_after`:
            // its symbols are stale (they were never live; without this a
            // feed that never connects would look live to subscribers).
            if let Some(after) = f.stale_after_ns {
                if last == 0
                    && !f.is_up()
                    && now - f.created_ns > after
                    && !f.never_marked.swap(true, Ordering::AcqRel)
                {
                    tracing::warn!(feed = %f.name, "feed has sent nothing yet: its symbols are stale");
                    for s in f.symbols.read().iter() {
                        slots.set_status(*s, Status::Stale);
                    }
                    changed += 1;
                }
            }
            let fresh = f
                .stale_after_ns
                .is_none_or(|after| last > 0 && now - last <= after);
            if fresh != f.is_up() {
                if f.up.swap(fresh, Ordering::AcqRel) == fresh {
                    // alive() got there first.
                    continue;
                }
                if fresh {
                    f.never_marked.store(true, Ordering::Release);
                }
                let st = if fresh { Status::Live } else { Status::Stale };
                if fresh {
                    tracing::info!(feed = %f.name, "feed is live");
                } else {
                    tracing::warn!(feed = %f.name, "feed is silent: its symbols are stale");
                }
                for s in f.symbols.read().iter() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_added_at_once_are_added_once_each_in_order() {
        let slots = SlotTable::new(8, 1);
        let f = FeedState::new("f", vec![SymbolId(2)], None);
        let ids = |v: &[u32]| v.iter().map(|&i| SymbolId(i)).collect::<Vec<_>>();
        f.add_symbols(&ids(&[5, 2, 1, 5, 7]), &slots);
        assert_eq!(f.symbol_ids(), ids(&[2, 5, 1, 7]));
        f.add_symbol(SymbolId(1), &slots);
        f.add_symbol(SymbolId(3), &slots);
        assert_eq!(f.symbol_ids(), ids(&[2, 5, 1, 7, 3]));
        // The feed never came up: what it adds starts stale (others live).
        assert_eq!(slots.status(SymbolId(6)), Status::Live);
        for i in [5, 1, 7, 3] {
            assert_eq!(slots.status(SymbolId(i)), Status::Stale, "{i}");
        }
    }
}
