//! Fan-out: who wants what, and waking them.
//!
//! Sessions are spread over shards. A shard keeps, per symbol, the sessions
//! of its own that hold it. When symbols go dirty the shard's pass takes all
//! of them at once (self-clocking: a busy pass carries more) and wakes each
//! interested session at most once. The session then pulls the newest value
//! of every symbol it holds when its socket can take a frame, so a symbol
//! written 50 times between two frames is sent once, with its newest value
//! and seq, and a slow reader costs no memory beyond its subscription list.
//!
//! Encode once: [`EncodeCache`] keeps each symbol's latest quote as JSON
//! bytes, encoded by the first session that needs that seq and copied by
//! every other.

use crate::metrics::Metrics;
use crate::model::{SymbolId, Symbols};
use crate::protocol::encode_quote;
use crate::shutdown::Shutdown;
use crate::slots::SlotTable;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// The part of a session that shards can see: a wake-up flag.
pub struct SessionHandle {
    pub id: u64,
    pending: AtomicBool,
    notify: Notify,
}

impl SessionHandle {
    pub fn new(id: u64) -> Self {
        SessionHandle {
            id,
            pending: AtomicBool::new(false),
            notify: Notify::new(),
        }
    }

    /// Wakes the session unless a wake is already pending.
    pub fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    /// Called by the session right before it scans its symbols, so a write
    /// that lands during the scan wakes it again.
    pub fn clear(&self) {
        self.pending.store(false, Ordering::Release);
    }

    pub async fn woken(&self) {
        self.notify.notified().await
    }
}

/// std `Mutex` is right here: it is held for a few loads and pushes, never
/// across an `.await`. A poisoned lock only means another thread panicked
/// mid-update of plain data, which stays usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct ShardIndex {
    /// Per symbol: the sessions of this shard holding it.
    subs: Vec<Vec<Arc<SessionHandle>>>,
}

#[derive(Default)]
struct Encoded {
    seq: u64,
    gw_ts: i64,
    json: String,
}

/// Each symbol's latest quote as JSON, encoded once per seq.
pub struct EncodeCache {
    entries: Box<[Mutex<Encoded>]>,
}

impl EncodeCache {
    fn new(n: usize) -> Self {
        EncodeCache {
            entries: (0..n).map(|_| Mutex::new(Encoded::default())).collect(),
        }
    }
}

pub struct Fanout {
    pub slots: Arc<SlotTable>,
    pub symbols: Arc<Symbols>,
    shards: Box<[Mutex<ShardIndex>]>,
    cache: EncodeCache,
    metrics: Arc<Metrics>,
}

impl Fanout {
    pub fn new(slots: Arc<SlotTable>, symbols: Arc<Symbols>, metrics: Arc<Metrics>) -> Self {
        let n = slots.len();
        Fanout {
            shards: (0..slots.shard_count())
                .map(|_| {
                    Mutex::new(ShardIndex {
                        subs: (0..n).map(|_| Vec::new()).collect(),
                    })
                })
                .collect(),
            cache: EncodeCache::new(n),
            slots,
            symbols,
            metrics,
        }
    }

    pub fn shard_of(&self, session_id: u64) -> usize {
        (session_id % self.shards.len() as u64) as usize
    }

    /// Registers `h` for `syms` in its shard.
    pub fn subscribe(&self, h: &Arc<SessionHandle>, syms: &[SymbolId]) {
        let shard = self.shard_of(h.id);
        let mut idx = lock(&self.shards[shard]);
        for &s in syms {
            let list = &mut idx.subs[s.index()];
            if !list.iter().any(|x| x.id == h.id) {
                list.push(h.clone());
                if list.len() == 1 {
                    self.slots.set_interest(s, shard, true);
                }
            }
        }
    }

    /// Removes `h` from `syms` in its shard.
    pub fn unsubscribe(&self, h: &SessionHandle, syms: &[SymbolId]) {
        let shard = self.shard_of(h.id);
        let mut idx = lock(&self.shards[shard]);
        for &s in syms {
            let list = &mut idx.subs[s.index()];
            if let Some(p) = list.iter().position(|x| x.id == h.id) {
                list.swap_remove(p);
                if list.is_empty() {
                    self.slots.set_interest(s, shard, false);
                    list.shrink_to_fit();
                }
            }
        }
    }

    /// Appends the newest quote of `sym` (not a snapshot) to `out`, encoding
    /// it only if nobody has encoded this seq yet. Returns its seq and gw_ts,
    /// or `None` if the symbol has no value.
    pub fn append_latest(&self, sym: SymbolId, out: &mut String) -> Option<(u64, i64)> {
        let mut e = lock(&self.cache.entries[sym.index()]);
        if e.seq != self.slots.seq(sym) {
            let (q, seq) = self.slots.read(sym)?;
            let e = &mut *e;
            e.json.clear();
            encode_quote(&mut e.json, self.symbols.name(sym), seq, &q, false);
            e.seq = seq;
            e.gw_ts = q.gw_ts;
        }
        if e.seq == 0 {
            return None;
        }
        out.push_str(&e.json);
        Some((e.seq, e.gw_ts))
    }

    /// One shard's loop: wait for dirty symbols, wake their sessions.
    pub async fn run_shard(self: Arc<Self>, shard: usize, mut shutdown: Shutdown) {
        let signal = self.slots.shard(shard);
        let mut dirty = Vec::new();
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = signal.wait() => {}
            }
            self.wake_dirty(shard, &mut dirty);
        }
    }

    /// One pass of shard `shard`, synchronously: takes its dirty symbols
    /// (into `dirty`, cleared first, reused between passes) and wakes every
    /// session of the shard holding one of them, each at most once per
    /// pending wake. Returns the number of dirty symbols taken; a pass that
    /// takes none is not counted in `shard_passes`.
    pub fn wake_dirty(&self, shard: usize, dirty: &mut Vec<SymbolId>) -> usize {
        dirty.clear();
        self.slots.shard(shard).drain(|s| dirty.push(s));
        if dirty.is_empty() {
            return 0;
        }
        self.metrics.shard_passes.inc();
        let idx = lock(&self.shards[shard]);
        for s in dirty.iter() {
            for h in &idx.subs[s.index()] {
                h.wake();
            }
        }
        dirty.len()
    }
}
