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
//! A session whose task sleeps is parked (see `outbox::Direct`): a pass
//! writes its frame itself instead of waking the task.

use crate::encode::{EncodeCache, Memo};
use crate::metrics::Metrics;
use crate::model::SymbolId;
use crate::outbox::{self, Delivery, Direct, Tally};
use crate::shutdown::Shutdown;
use crate::slots::SlotTable;
use crate::sync::Mutex;
use futures_util::task::AtomicWaker;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use tokio::time::Instant;

/// The part of a session that shards can see: a wake-up flag and the
/// session task's waker.
///
/// An `AtomicWaker` rather than a `Notify`: the session registers its waker
/// on every poll of its one socket future, so a wake costs a flag swap and
/// (on the first wake since the last scan) one task wake-up, with no
/// waiter list and no future to build or drop per frame.
pub struct SessionHandle {
    pub id: u64,
    pending: AtomicBool,
    waker: AtomicWaker,
    /// This session's member index in its shard's index, `NO_MEMBER` while
    /// it holds no symbol there. Only touched under the shard's lock.
    member: AtomicU32,
    /// What a shard needs to write this session's frames itself while its
    /// task sleeps (see [`Direct`]).
    pub(crate) direct: Mutex<Direct>,
    /// Whether the session is parked in `direct` (a hint read without the
    /// lock: a pass wakes a session that is not parked on the spot, with
    /// no clone and no lock; see [`Fanout::pass`]).
    pub(crate) parked: AtomicBool,
    /// Whether the session is on its shard's pace list (at most once);
    /// a pass leaves it to the list meanwhile. Only its shard touches it.
    paced: AtomicBool,
    /// Symbols were added to the gateway since the session last looked
    /// (it watches patterns: see [`Fanout::symbols_added`]).
    grown: AtomicBool,
}

const NO_MEMBER: u32 = u32::MAX;

impl SessionHandle {
    pub fn new(id: u64) -> Self {
        SessionHandle {
            id,
            pending: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            member: AtomicU32::new(NO_MEMBER),
            direct: Mutex::new(Direct::default()),
            parked: AtomicBool::new(false),
            paced: AtomicBool::new(false),
            grown: AtomicBool::new(false),
        }
    }

    /// Wakes the session unless a wake is already pending.
    pub fn wake(&self) {
        // A plain load first: under load most wakes find one pending, and
        // a load is cheaper than a read-modify-write.
        if !self.pending.load(Ordering::Acquire) && !self.pending.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Whether symbols were added since the last call (see
    /// [`Fanout::symbols_added`]).
    pub fn take_grown(&self) -> bool {
        self.grown.load(Ordering::Acquire) && self.grown.swap(false, Ordering::AcqRel)
    }

    /// Called by the session right before it scans its symbols, so a write
    /// that lands during the scan wakes it again.
    pub fn clear(&self) {
        self.pending.store(false, Ordering::Release);
    }

    /// Registers the current task to be woken, then reports whether a wake
    /// is pending (it stays pending until [`SessionHandle::clear`]).
    pub fn poll_woken(&self, cx: &mut std::task::Context<'_>) -> bool {
        self.waker.register(cx.waker());
        self.pending.load(Ordering::Acquire)
    }
}

/// A parked session goes to `targets` for a direct write after the shard's
/// lock is released; any other is woken right away (it is busy, or a wake
/// is pending: its task builds the frame).
fn take_or_wake(h: &Arc<SessionHandle>, targets: &mut Vec<Arc<SessionHandle>>) {
    if h.parked.load(Ordering::Acquire) {
        targets.push(h.clone());
    } else {
        h.wake();
    }
}

/// Sessions a shard serves before it yields to the rest of its worker.
const PASS_SLICE: usize = 128;

/// Buffers a shard pass reuses: the dirty symbols, the sessions to serve,
/// the frame being built for a direct write, and the pace list.
#[derive(Default)]
pub struct PassScratch {
    pub dirty: Vec<SymbolId>,
    targets: Vec<Arc<SessionHandle>>,
    frame: String,
    memo: Memo,
    /// Parked sessions whose spaced frames (read-window flow control, see
    /// `flow.rs`) may go at a set time, earliest first: the shard serves
    /// them at its first pass after that time, or wakes for the earliest
    /// when no pass comes. Each session is on it at most once (its
    /// handle's `paced` flag), so it is bounded by the shard's sessions.
    paced: BinaryHeap<PaceEntry>,
    /// When the current pass began.
    pass_at: Option<Instant>,
}

/// A session on a pace list, ordered earliest first.
struct PaceEntry {
    at: Instant,
    h: Arc<SessionHandle>,
}

impl PartialEq for PaceEntry {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for PaceEntry {}

impl PartialOrd for PaceEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PaceEntry {
    /// Reversed: `BinaryHeap` pops its greatest entry, the earliest here.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.at.cmp(&self.at)
    }
}

/// One shard's subscriptions. Sessions are members with a dense index, so
/// a symbol's subscriber list is a `Vec<u32>` and a pass dedupes wakes in a
/// small array (`woken_at`) instead of touching every session's handle once
/// per dirty symbol it holds: a pass reads the lists from contiguous
/// memory and wakes each session once, however many of its symbols moved.
struct ShardIndex {
    /// Per symbol: the members holding it.
    subs: Vec<Vec<u32>>,
    /// By member index; `None` is a free slot.
    members: Vec<Option<Arc<SessionHandle>>>,
    /// Per member: how many symbols it holds in this shard.
    refs: Vec<u32>,
    /// Per member: the last pass that woke it.
    woken_at: Vec<u32>,
    free: Vec<u32>,
    pass: u32,
    /// Symbols with at least one member here.
    interested: usize,
}

impl ShardIndex {
    fn new(nsymbols: usize) -> Self {
        ShardIndex {
            subs: (0..nsymbols).map(|_| Vec::new()).collect(),
            members: Vec::new(),
            refs: Vec::new(),
            woken_at: Vec::new(),
            free: Vec::new(),
            pass: 0,
            interested: 0,
        }
    }

    /// `h`'s member index, allocating one if it has none.
    fn member(&mut self, h: &Arc<SessionHandle>) -> u32 {
        let m = h.member.load(Ordering::Relaxed);
        if m != NO_MEMBER {
            return m;
        }
        let m = match self.free.pop() {
            Some(m) => {
                self.members[m as usize] = Some(h.clone());
                self.refs[m as usize] = 0;
                self.woken_at[m as usize] = 0;
                m
            }
            None => {
                self.members.push(Some(h.clone()));
                self.refs.push(0);
                self.woken_at.push(0);
                (self.members.len() - 1) as u32
            }
        };
        h.member.store(m, Ordering::Relaxed);
        m
    }
}

/// Who wants what, by shard, and the shards' passes.
pub struct Fanout {
    cache: Arc<EncodeCache>,
    shards: Box<[Mutex<ShardIndex>]>,
    metrics: Arc<Metrics>,
    /// `session.max_frame_bytes`, for frames a shard writes itself.
    max_frame_bytes: usize,
    /// Sessions holding a pattern, told when symbols are added. Pruned of
    /// ended sessions at every registration and every addition, so it is
    /// bounded by the sessions alive (plus those ended since).
    watchers: Mutex<Vec<Weak<SessionHandle>>>,
}

impl Fanout {
    pub fn new(cache: Arc<EncodeCache>, metrics: Arc<Metrics>, max_frame_bytes: usize) -> Self {
        let n = cache.len();
        Fanout {
            shards: (0..cache.slots().shard_count())
                .map(|_| Mutex::new(ShardIndex::new(n)))
                .collect(),
            cache,
            metrics,
            max_frame_bytes,
            watchers: Mutex::new(Vec::new()),
        }
    }

    /// Tells `h` about symbols added from now on (once per session).
    pub fn watch_symbols(&self, h: &Arc<SessionHandle>) {
        let mut w = self.watchers.lock();
        w.retain(|x| x.strong_count() > 0);
        w.push(Arc::downgrade(h));
    }

    /// Symbols were added to the gateway: every session that holds a
    /// pattern looks at them (each is woken once; it matches them against
    /// its patterns and entitlement itself).
    pub fn symbols_added(&self) {
        let mut w = self.watchers.lock();
        w.retain(|x| match x.upgrade() {
            Some(h) => {
                h.grown.store(true, Ordering::Release);
                h.wake();
                true
            }
            None => false,
        });
    }

    /// The slots, names and encoded quotes the frames are built from.
    pub fn cache(&self) -> &EncodeCache {
        &self.cache
    }

    fn slots(&self) -> &SlotTable {
        self.cache.slots()
    }

    pub fn shard_of(&self, session_id: u64) -> usize {
        (session_id % self.shards.len() as u64) as usize
    }

    /// Registers `h` for `syms` in its shard.
    pub fn subscribe(&self, h: &Arc<SessionHandle>, syms: &[SymbolId]) {
        let shard = self.shard_of(h.id);
        let mut idx = self.shards[shard].lock();
        let m = idx.member(h);
        for &s in syms {
            let list = &mut idx.subs[s.index()];
            if !list.contains(&m) {
                list.push(m);
                let first = list.len() == 1;
                idx.refs[m as usize] += 1;
                if first {
                    idx.interested += 1;
                    self.slots().set_interest(s, shard, true);
                }
            }
        }
    }

    /// Removes `h` from `syms` in its shard; a session left with no symbol
    /// there gives up its member slot.
    pub fn unsubscribe(&self, h: &SessionHandle, syms: &[SymbolId]) {
        let shard = self.shard_of(h.id);
        let mut idx = self.shards[shard].lock();
        let m = h.member.load(Ordering::Relaxed);
        if m == NO_MEMBER {
            return;
        }
        for &s in syms {
            let list = &mut idx.subs[s.index()];
            if let Some(p) = list.iter().position(|&x| x == m) {
                list.swap_remove(p);
                if list.is_empty() {
                    self.slots().set_interest(s, shard, false);
                    list.shrink_to_fit();
                    idx.interested -= 1;
                }
                idx.refs[m as usize] -= 1;
            }
        }
        if idx.refs[m as usize] == 0 {
            idx.members[m as usize] = None;
            idx.free.push(m);
            h.member.store(NO_MEMBER, Ordering::Relaxed);
        }
    }

    /// One shard's loop: wait for dirty symbols, wake their sessions.
    pub async fn run_shard(self: Arc<Self>, shard: usize, mut shutdown: Shutdown) {
        let signal = self.slots().shard(shard);
        let mut scratch = PassScratch::default();
        // The pace list's earliest time, when no pass comes before it.
        let pace = tokio::time::sleep_until(Instant::now());
        tokio::pin!(pace);
        let mut armed: Option<Instant> = None;
        loop {
            let next = scratch.paced.peek().map(|e| e.at);
            if let Some(t) = next.filter(|&t| armed != Some(t)) {
                pace.as_mut().reset(t);
            }
            armed = next;
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = signal.wait() => {}
                _ = &mut pace, if armed.is_some() => {}
            }
            scratch.pass_at = Some(Instant::now());
            self.take_dirty(shard, &mut scratch);
            take_paced(&mut scratch);
            // Served in slices with a yield between them: a pass over
            // thousands of sessions writes for milliseconds, and feeds,
            // session reads and accepts on this worker must not wait for
            // all of it.
            while !scratch.targets.is_empty() {
                let from = scratch.targets.len().saturating_sub(PASS_SLICE);
                let mut slice = scratch.targets.split_off(from);
                self.serve(&mut slice, &mut scratch);
                if !scratch.targets.is_empty() {
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    /// One pass of shard `shard` with fresh scratch buffers (see
    /// [`Fanout::pass`]); returns the number of dirty symbols taken.
    pub fn wake_dirty(&self, shard: usize, dirty: &mut Vec<SymbolId>) -> usize {
        let mut scratch = PassScratch {
            dirty: std::mem::take(dirty),
            ..PassScratch::default()
        };
        let n = self.pass(shard, &mut scratch);
        *dirty = scratch.dirty;
        n
    }

    /// One pass of shard `shard`, synchronously: takes its dirty symbols
    /// and serves every session of the shard holding one of them, each once
    /// per pass: a session whose task sleeps parked gets its frame written
    /// right here (`outbox::deliver`), any other is woken (at most
    /// once per pending wake). The sessions are collected under the shard's
    /// lock and served after it is released, so subscribing never waits
    /// for socket writes. Returns the number of dirty symbols taken; a pass
    /// that takes none is not counted in `shard_passes`.
    ///
    /// Nothing comes back for a spaced frame here (no shard loop keeps a
    /// pace list between calls): such a session is woken, and its task's
    /// timer sends the frame when it may go.
    pub fn pass(&self, shard: usize, sc: &mut PassScratch) -> usize {
        sc.pass_at = Some(Instant::now());
        let n = self.take_dirty(shard, sc);
        // (Its pace list is emptied below, so there is nothing to take.)
        let mut targets = std::mem::take(&mut sc.targets);
        self.serve(&mut targets, sc);
        sc.targets = targets;
        while let Some(e) = sc.paced.pop() {
            e.h.paced.store(false, Ordering::Relaxed);
            e.h.wake();
        }
        n
    }

    /// The first half of a pass: takes the dirty symbols into `sc.dirty`
    /// and the sessions to serve into `sc.targets`.
    fn take_dirty(&self, shard: usize, sc: &mut PassScratch) -> usize {
        sc.dirty.clear();
        sc.targets.clear();
        let dirty = &mut sc.dirty;
        self.slots().shard(shard).drain(|s| dirty.push(s));
        if sc.dirty.is_empty() {
            return 0;
        }
        self.metrics.shard_passes.inc();
        self.collect(shard, &sc.dirty, &mut sc.targets);
        sc.dirty.len()
    }

    /// The second half: a direct write to each parked session, a wake for
    /// every other one, and a place on the pace list for one whose next
    /// frame must wait. Empties `targets`.
    fn serve(&self, targets: &mut Vec<Arc<SessionHandle>>, sc: &mut PassScratch) {
        if targets.is_empty() {
            return;
        }
        sc.memo.begin(self.cache.len());
        let mut tally = Tally::new(&self.metrics);
        let pass_at = *sc.pass_at.get_or_insert_with(Instant::now);
        for h in targets.drain(..) {
            // On the pace list: it is served from there (no lock here).
            // (An empty list, as always without flow control, is not
            // asked: the flag is one more handle field per session.)
            if !sc.paced.is_empty() && h.paced.load(Ordering::Relaxed) {
                continue;
            }
            let (frame, memo) = (&mut sc.frame, &mut sc.memo);
            let (cache, max) = (&*self.cache, self.max_frame_bytes);
            match outbox::deliver(cache, max, &h.direct, frame, &mut tally, memo, pass_at) {
                Delivery::Done => {}
                Delivery::Wake => h.wake(),
                Delivery::PaceAt(at) => {
                    h.paced.store(true, Ordering::Relaxed);
                    sc.paced.push(PaceEntry { at, h });
                }
            }
        }
        tally.flush(&self.metrics);
    }

    /// The members of shard `shard` holding one of `dirty`, each once: the
    /// parked ones into `targets`, the others woken on the spot.
    fn collect(&self, shard: usize, dirty: &[SymbolId], targets: &mut Vec<Arc<SessionHandle>>) {
        let mut idx = self.shards[shard].lock();
        if dirty.len() >= idx.interested {
            // Everything this shard holds moved (a board ticking at once,
            // hot symbols under load): every member is affected, so take
            // them all without walking each symbol's list.
            for h in idx.members.iter().flatten() {
                take_or_wake(h, targets);
            }
            return;
        }
        idx.pass = idx.pass.wrapping_add(1);
        if idx.pass == 0 {
            // Wrapped: no member may still carry a stale mark equal to a
            // future pass number.
            idx.woken_at.fill(0);
            idx.pass = 1;
        }
        let ShardIndex {
            subs,
            members,
            woken_at,
            pass,
            ..
        } = &mut *idx;
        for s in dirty.iter() {
            for &m in &subs[s.index()] {
                let w = &mut woken_at[m as usize];
                if *w != *pass {
                    *w = *pass;
                    if let Some(h) = &members[m as usize] {
                        take_or_wake(h, targets);
                    }
                }
            }
        }
    }
}

/// Moves the sessions on the pace list whose time has come to the pass's
/// targets. One whose frame went meanwhile (its time moved on) goes back
/// on the list when it is served.
fn take_paced(sc: &mut PassScratch) {
    // The pass's start is "now" (no second clock read per pass).
    let now = sc.pass_at.unwrap_or_else(Instant::now);
    while sc.paced.peek().is_some_and(|e| e.at <= now) {
        if let Some(e) = sc.paced.pop() {
            e.h.paced.store(false, Ordering::Relaxed);
            sc.targets.push(e.h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Quote, Symbols};
    use rust_decimal::Decimal;

    fn fanout(nsyms: usize) -> Fanout {
        let mut names = Symbols::new();
        for i in 0..nsyms {
            names.intern(&format!("S{i}")).unwrap();
        }
        let slots = Arc::new(SlotTable::new(nsyms, 1));
        let cache = Arc::new(EncodeCache::new(slots, Arc::new(names)));
        Fanout::new(cache, Arc::new(Metrics::new()), 64 * 1024)
    }

    fn q() -> Quote {
        Quote::default().with_bid(Decimal::ONE, Decimal::ONE)
    }

    fn pending(h: &SessionHandle) -> bool {
        h.pending.load(Ordering::Acquire)
    }

    #[test]
    fn a_pass_wakes_exactly_the_holders_and_members_are_reused() {
        let f = fanout(4);
        let hs: Vec<Arc<SessionHandle>> = (0..3).map(|i| Arc::new(SessionHandle::new(i))).collect();
        let (s0, s1, s2) = (SymbolId(0), SymbolId(1), SymbolId(2));
        f.subscribe(&hs[0], &[s0, s1]);
        f.subscribe(&hs[1], &[s1]);
        f.subscribe(&hs[2], &[s2]);
        // Subscribing twice changes nothing.
        f.subscribe(&hs[1], &[s1]);
        let mut dirty = Vec::new();
        f.slots().publish(s1, &q());
        assert_eq!(f.wake_dirty(0, &mut dirty), 1);
        assert!(pending(&hs[0]) && pending(&hs[1]) && !pending(&hs[2]));
        for h in &hs {
            h.clear();
        }
        // Session 1 leaves: its member slot is freed, and taken again by
        // the next session to subscribe, without waking the old holder.
        f.unsubscribe(&hs[1], &[s1]);
        assert_eq!(hs[1].member.load(Ordering::Relaxed), NO_MEMBER);
        let late = Arc::new(SessionHandle::new(3));
        f.subscribe(&late, &[s2]);
        assert_eq!(late.member.load(Ordering::Relaxed), 1, "slot reused");
        f.slots().publish(s1, &q());
        f.slots().publish(s2, &q());
        assert_eq!(f.wake_dirty(0, &mut dirty), 2);
        assert!(pending(&hs[0]) && !pending(&hs[1]) && pending(&hs[2]) && pending(&late));
        // Every held symbol moved: the pass wakes every member at once.
        for h in hs.iter().chain([&late]) {
            h.clear();
        }
        for s in [s0, s1, s2] {
            f.slots().publish(s, &q());
        }
        assert_eq!(f.wake_dirty(0, &mut dirty), 3);
        assert!(pending(&hs[0]) && !pending(&hs[1]) && pending(&hs[2]) && pending(&late));
        // A symbol nobody holds any more is not marked dirty at all.
        f.unsubscribe(&hs[0], &[s0, s1]);
        for h in &hs {
            h.clear();
        }
        f.slots().publish(s1, &q());
        assert_eq!(f.wake_dirty(0, &mut dirty), 0);
        assert!(!pending(&hs[0]));
    }
}
