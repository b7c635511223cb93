//! The edge role: no feeds; it learns feeds and symbols from the ingest
//! nodes' status, follows a symbol on NATS only while it has a local
//! subscriber, and writes what it receives into its slots under the
//! ingest's seq (`SlotTable::publish_at`).
//!
//! Between NATS and the slots there is no queue of its own: each
//! subscription's buffer is the NATS client's, bounded by
//! `subscription_capacity` (an overflow is counted, and the values are
//! read again from the stream), and the slots coalesce.

use super::config::ClusterConfig;
use super::connect::Nats;
use super::last_values::LastValues;
use super::publish::stored_epoch;
use super::wire::{self, FeedStatus, Round, Subjects};
use crate::feed::{FeedState, Feeds};
use crate::metrics::Metrics;
use crate::model::{Status, SymbolId, Symbols};
use crate::shutdown::Shutdown;
use crate::slots::SlotTable;
use crate::sync::RwLock;
use async_nats::jetstream;
use futures_util::stream::{BoxStream, SelectAll};
use futures_util::{FutureExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

mod status;

/// Messages applied per wake before other work gets a turn (and the
/// fan-out is woken for the whole batch).
const DRAIN_BATCH: usize = 4096;
/// The symbol a quote of a round message is for is in it.
const ANY: SymbolId = SymbolId(u32::MAX);

/// What is followed of a symbol: its quotes (while a local session holds
/// it) or its trades (while one takes them); or every ingest's rounds
/// (every quote, `wire::chunk_round`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Quote,
    Trade,
    Round,
}

/// Every followed subject's messages, tagged with what they are.
type Subs = SelectAll<BoxStream<'static, (SymbolId, Kind, async_nats::Message)>>;

/// One symbol followed on NATS.
struct Follow {
    /// Dropping it ends the subscription (and so unsubscribes).
    _cancel: oneshot::Sender<()>,
    /// Since when no local subscriber wants it.
    idle_since: Option<Instant>,
}

pub struct Follower {
    pub nats: Nats,
    pub js: jetstream::Context,
    pub cfg: ClusterConfig,
    pub subjects: Subjects,
    pub symbols: Arc<Symbols>,
    pub slots: Arc<SlotTable>,
    pub feeds: Arc<Feeds>,
    pub metrics: Arc<Metrics>,
    /// Tells the fan-out that symbols were added (wildcard subscriptions).
    pub on_new: Arc<dyn Fn() + Send + Sync>,
    /// The epoch this edge serves.
    pub epoch: String,
    /// Made up at start because no ingest had stored one yet: the first
    /// epoch heard replaces it (no value was served under it).
    pub provisional: bool,
    /// Where new sessions read the epoch they are told.
    pub(crate) epoch_cell: Option<Arc<RwLock<String>>>,
    /// Per symbol: the ingest's number of the last trade stored (0: none
    /// since its trades were followed), to see trades NATS lost.
    trade_last: Vec<u64>,
    /// Fan-out shards to wake at the end of a batch of writes.
    wake: u128,
    /// The ingests (their round subjects) between a round's first message
    /// and its last (wildcard mode only: the rounds are what it follows);
    /// one entry per ingest at most.
    open_rounds: Vec<async_nats::Subject>,
    /// Feeds whose ingest publishes no whole rounds (a build before
    /// them): while there is one, the edge follows one subscription per
    /// symbol, which every build publishes.
    no_rounds: std::collections::HashSet<String>,
    /// Since when the wake is held for an open round.
    held_since: Option<Instant>,
    /// The interest generation and symbol count the last rescan saw, and
    /// whether a subscription was lingering then: with all three the
    /// same, a rescan has nothing to do.
    scanned: Option<(u64, usize)>,
    lingering: bool,
    /// The one subscription to every quote, while the edge follows so many
    /// symbols that one subscription is cheaper than one each.
    wild: Option<Follow>,
    /// Each symbol's feed (whose state its status follows).
    feed_of: HashMap<SymbolId, Arc<FeedState>>,
    /// Epochs refused already (logged once each).
    refused_epochs: std::collections::HashSet<String>,
    /// The cluster's last values (the stream, once there is one).
    pub(crate) last: Arc<LastValues>,
    /// The symbols each feed's status listed last time, as their JSON
    /// text: the next status's is compared with it, and both are read only
    /// when they differ (the list, not its length: an ingest restarted with
    /// one symbol swapped for another lists as many as before).
    known: HashMap<String, String>,
    full_warned: bool,
}

impl Follower {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        nats: Nats,
        cfg: ClusterConfig,
        symbols: Arc<Symbols>,
        slots: Arc<SlotTable>,
        feeds: Arc<Feeds>,
        metrics: Arc<Metrics>,
        on_new: Arc<dyn Fn() + Send + Sync>,
    ) -> Follower {
        let js = jetstream::new(nats.client.clone());
        let last = Arc::new(LastValues::new(
            js.clone(),
            cfg.stream_name(),
            Subjects::new(&cfg.subject_prefix),
            symbols.clone(),
            slots.clone(),
            metrics.clone(),
            Duration::from_millis(cfg.last_value_interval_ms),
        ));
        Follower {
            js,
            subjects: Subjects::new(&cfg.subject_prefix),
            nats,
            cfg,
            symbols,
            slots,
            feeds,
            metrics,
            on_new,
            epoch: String::new(),
            provisional: false,
            epoch_cell: None,
            refused_epochs: Default::default(),
            trade_last: Vec::new(),
            feed_of: HashMap::new(),
            wake: 0,
            open_rounds: Vec::new(),
            no_rounds: Default::default(),
            held_since: None,
            scanned: None,
            lingering: false,
            wild: None,
            last,
            known: HashMap::new(),
            full_warned: false,
        }
    }

    /// Waits for NATS, then reads what the stream knows: the epoch and
    /// every feed's last status (so symbols are known before clients
    /// come). No stream or epoch yet (no ingest has run): nothing known,
    /// and the epoch is made up until the first one is heard.
    pub async fn prepare(&mut self) {
        self.epoch = crate::session::new_epoch();
        self.provisional = true;
        if let Some(e) = self.read_stream().await {
            self.epoch = e;
            self.provisional = false;
        }
    }

    async fn read_stream(&mut self) -> Option<String> {
        self.nats.wait_connected(&self.cfg.nats_url).await;
        let name = self.cfg.stream_name();
        let stream = match self.js.get_stream(&name).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(stream = %name, "no last-value stream yet ({e}): symbols join as ingest nodes publish them");
                return None;
            }
        };
        self.last.found(stream.clone());
        let epoch = stored_epoch(&stream, &self.subjects).await?;
        // Statuses are judged against it.
        self.epoch = epoch.clone();
        self.provisional = false;
        let mut subjects = Vec::new();
        if let Ok(mut list) = stream.info_with_subjects(self.subjects.statuses()).await {
            while let Some(Ok((subject, _))) = list.next().await {
                subjects.push(subject);
            }
        }
        for s in subjects {
            if let Ok(m) = stream.direct_get_last_for_subject(s).await {
                if let Ok(st) = serde_json::from_slice::<FeedStatus>(&m.payload) {
                    self.on_status(st);
                }
            }
        }
        Some(epoch)
    }

    pub async fn run(mut self, mut shutdown: Shutdown) {
        let c = self.nats.client.clone();
        let mut statuses = loop {
            match c.subscribe(self.subjects.statuses()).await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!("cannot subscribe to feed status: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let mut subs: Subs = SelectAll::new();
        let mut follows: HashMap<(SymbolId, Kind), Follow> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_millis(self.cfg.subscribe_batch_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_refetch = Instant::now();
        let hold = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(hold);
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                Some((sym, kind, m)) = subs.next(), if !subs.is_empty() => {
                    self.apply(sym, kind, &m);
                    // Up to a batch, then the fan-out is woken once for
                    // all of it, or, in the middle of a round, once the
                    // round is in (a burst goes out in as few frames as on
                    // a standalone gateway, however NATS cut it up).
                    for _ in 1..DRAIN_BATCH {
                        match subs.next().now_or_never() {
                            Some(Some((sym, kind, m))) => self.apply(sym, kind, &m),
                            _ => break,
                        }
                    }
                    if self.open_rounds.is_empty() {
                        self.wake_held();
                    } else if self.held_since.is_none() {
                        let now = Instant::now();
                        self.held_since = Some(now);
                        let hold_ms = Duration::from_millis(self.cfg.round_hold_ms);
                        hold.as_mut().reset(tokio::time::Instant::from_std(now + hold_ms));
                    }
                }
                _ = &mut hold, if self.held_since.is_some() => {
                    // The round's last quote did not come in time (NATS
                    // dropped it, or its ingest stopped): what came goes out.
                    self.held_since = None;
                    self.open_rounds.clear();
                    self.metrics.cluster.round_held("timeout");
                    self.slots.wake(&mut self.wake);
                }
                Some(m) = statuses.next() => {
                    match serde_json::from_slice::<FeedStatus>(&m.payload) {
                        Ok(st) => self.on_status(st),
                        Err(e) => tracing::debug!("not a feed status: {e}"),
                    }
                }
                _ = tick.tick() => {
                    self.rescan(&mut follows, &mut subs).await;
                    let overflowed = self.nats.overflowed.load(Ordering::Acquire);
                    if overflowed && last_refetch.elapsed() >= Duration::from_secs(1) {
                        self.nats.overflowed.store(false, Ordering::Release);
                        last_refetch = Instant::now();
                        self.refetch(self.followed(&follows));
                    }
                }
                r = self.nats.connected.changed() => {
                    if r.is_err() {
                        return;
                    }
                    if *self.nats.connected.borrow_and_update() {
                        // Quotes sent while away are lost: read them.
                        last_refetch = Instant::now();
                        self.refetch(self.followed(&follows));
                    } else {
                        // Stale at the watchdog's next pass.
                        for f in self.feeds.iter() {
                            f.down();
                        }
                    }
                }
            }
        }
    }

    fn apply(&mut self, sym: SymbolId, kind: Kind, m: &async_nats::Message) {
        match kind {
            Kind::Round => {
                for q in wire::round_quotes(&m.payload) {
                    self.apply_quote(ANY, q);
                }
                if self.cfg.round_hold_ms == 0 {
                    return;
                }
                match Round::read(m.headers.as_ref()) {
                    Some(Round::Open) if !self.open_rounds.contains(&m.subject) => {
                        self.open_rounds.push(m.subject.clone());
                    }
                    // The round is in: out it goes, before the next one
                    // (unless another ingest's round is still coming).
                    Some(Round::End) => {
                        self.open_rounds.retain(|s| *s != m.subject);
                        if self.open_rounds.is_empty() {
                            self.wake_held();
                        }
                    }
                    Some(Round::Open) | None => {}
                }
            }
            Kind::Quote => self.apply_quote(sym, &m.payload),
            Kind::Trade => self.apply_trade(sym, &m.payload),
        }
    }

    /// Wakes the fan-out for what was written, ending a held round.
    fn wake_held(&mut self) {
        if self.held_since.take().is_some() {
            self.metrics.cluster.round_held("end");
        }
        self.slots.wake(&mut self.wake);
    }

    /// Stores one received trade for the local sessions that take the
    /// symbol's trades, in order; a gap in the ingest's numbering (trades
    /// NATS lost) reaches them as `trades_dropped`.
    fn apply_trade(&mut self, sym: SymbolId, payload: &[u8]) {
        let c = &self.metrics.cluster;
        let w = match wire::decode_trade(payload) {
            Ok(w) if w.symbol == self.symbols.name(sym) => w,
            _ => {
                c.refused("invalid").inc();
                return;
            }
        };
        let i = sym.index();
        if self.trade_last.len() <= i {
            self.trade_last.resize(i + 1, 0);
        }
        let last = self.trade_last[i];
        if last != 0 && w.seq <= last {
            c.refused("old").inc();
            return;
        }
        let trades = self.slots.trades();
        if last != 0 && w.seq > last + 1 {
            let lost = w.seq - last - 1;
            trades.skip(sym, lost);
            c.trades_lost.inc_by(lost);
        }
        self.trade_last[i] = w.seq;
        trades.push(sym, &w.trade);
        self.slots.touch_quiet(sym, &mut self.wake);
        c.trades_received.inc();
    }

    /// Writes one received quote under its seq.
    fn apply_quote(&mut self, sym: SymbolId, payload: &[u8]) {
        let c = &self.metrics.cluster;
        let Ok(w) = wire::decode_quote(payload) else {
            c.refused("invalid").inc();
            return;
        };
        let sym = if sym == ANY {
            // From a round: the payload names it (a symbol no status has
            // named yet is not served here).
            match self.symbols.get(w.symbol) {
                Some(s) => s,
                None => {
                    c.refused("invalid").inc();
                    return;
                }
            }
        } else if w.symbol == self.symbols.name(sym) {
            sym
        } else {
            c.refused("invalid").inc();
            return;
        };
        let q = w.quote_in(&self.symbols);
        match self.slots.publish_at_quiet(sym, &q, w.seq, &mut self.wake) {
            Ok(()) => c.received.inc(),
            Err(_) => c.refused("old").inc(),
        }
    }

    /// Follows symbols that gained local subscribers (their quotes) or
    /// trade takers (their trades), and lets go of those without any for
    /// `linger_ms`: one batch per tick.
    async fn rescan(&mut self, follows: &mut HashMap<(SymbolId, Kind), Follow>, subs: &mut Subs) {
        let now = Instant::now();
        let linger = Duration::from_millis(self.cfg.linger_ms);
        let slots = self.slots.clone();
        let trades = slots.trades();
        let known = self.symbols.len();
        // Read before the walk: a change during it is seen next time.
        let seen = (slots.interest_generation(), known);
        if self.scanned == Some(seen) && !self.lingering {
            return;
        }
        self.scanned = Some(seen);
        self.lingering = false;
        let wanted = (0..known)
            .filter(|&i| self.slots.interested(SymbolId(i as u32)))
            .count();
        // One subscription to every quote once most symbols are wanted
        // (back to one each below four fifths of that share: no flapping).
        let share = self.cfg.wildcard_share;
        let wild = wanted > 0
            && self.no_rounds.is_empty()
            && if self.wild.is_some() {
                wanted as f64 >= 0.8 * share * known as f64
            } else {
                wanted as f64 >= share * known as f64
            };
        let mut changed = false;
        if wild && self.wild.is_none() {
            changed = true;
            self.follow_all(follows, subs).await;
        } else if !wild && self.wild.is_some() {
            changed = true;
            // Each wanted symbol's own subscription comes first (below);
            // the wildcard goes when they are in place.
        }
        let mut new = Vec::new();
        let mut gone = Vec::new();
        for i in 0..known {
            let sym = SymbolId(i as u32);
            for (kind, want) in [
                (Kind::Quote, self.slots.interested(sym) && !wild),
                (Kind::Trade, trades.listening(sym)),
            ] {
                match follows.get_mut(&(sym, kind)) {
                    None if want => new.push((sym, kind)),
                    Some(f) if want => f.idle_since = None,
                    Some(f) => match f.idle_since {
                        None => {
                            f.idle_since = Some(now);
                            self.lingering = true;
                        }
                        Some(t) if now.duration_since(t) >= linger => gone.push((sym, kind)),
                        Some(_) => self.lingering = true,
                    },
                    None => {}
                }
            }
        }
        if new.is_empty() && gone.is_empty() && !changed {
            return;
        }
        for key in &gone {
            // Dropping the sender ends the stream; the subscription is
            // dropped with it, which unsubscribes.
            follows.remove(key);
            if key.1 == Kind::Quote {
                // Its value ages from here on: whoever subscribes next
                // sees it stale until it is read again.
                self.slots.set_status(key.0, Status::Stale);
            }
        }
        let mut fetch = Vec::with_capacity(new.len());
        for (sym, kind) in new {
            let name = self.symbols.name(sym);
            let subject = match kind {
                Kind::Quote => self.subjects.quote(name),
                Kind::Trade => self.subjects.trade(name),
                // Never per symbol (the one subscription: `follow_all`).
                Kind::Round => continue,
            };
            match self.nats.client.subscribe(subject).await {
                Ok(sub) => {
                    let (tx, rx) = oneshot::channel::<()>();
                    subs.push(sub.map(move |m| (sym, kind, m)).take_until(rx).boxed());
                    follows.insert(
                        (sym, kind),
                        Follow {
                            _cancel: tx,
                            idle_since: None,
                        },
                    );
                    match kind {
                        Kind::Quote | Kind::Round => fetch.push(sym),
                        // Numbering is followed from the first trade on.
                        Kind::Trade => {
                            if let Some(l) = self.trade_last.get_mut(sym.index()) {
                                *l = 0;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!("cannot subscribe: {e}");
                    // Tried again at the next tick.
                    self.scanned = None;
                }
            }
        }
        if !wild && self.wild.take().is_some() {
            // Its rounds' marks are no longer seen (a held wake ends at
            // its time).
            self.open_rounds.clear();
            tracing::info!(wanted, known, "edge: one subscription per symbol again");
            // What no local session holds ages from here on.
            for i in 0..known {
                let sym = SymbolId(i as u32);
                if !follows.contains_key(&(sym, Kind::Quote)) {
                    self.slots.set_status(sym, Status::Stale);
                }
            }
        }
        self.metrics.cluster.interest_batches.inc();
        self.metrics
            .cluster
            .subscriptions
            .set((follows.len() + usize::from(self.wild.is_some())) as i64);
        // Not while NATS is away (a flush would wait for it, and the
        // subscriptions are sent again on reconnect anyway).
        if self.nats.is_connected() {
            match tokio::time::timeout(Duration::from_secs(1), self.nats.client.flush()).await {
                Ok(Err(e)) => tracing::debug!("flush: {e}"),
                Err(_) => tracing::debug!("flush timed out"),
                Ok(Ok(())) => {}
            }
        }
        self.refetch(fetch);
    }

    /// The symbols whose quotes are followed (all of them with the
    /// wildcard).
    fn followed(&self, follows: &HashMap<(SymbolId, Kind), Follow>) -> Vec<SymbolId> {
        if self.wild.is_some() {
            return (0..self.symbols.len())
                .map(|i| SymbolId(i as u32))
                .collect();
        }
        follows
            .keys()
            .filter(|(_, k)| *k == Kind::Quote)
            .map(|(s, _)| *s)
            .collect()
    }

    /// Subscribes to every quote at once (every ingest's rounds,
    /// `<prefix>.r.>`) in place of one subscription per symbol, and reads
    /// every symbol's last value (those nobody held here have aged).
    async fn follow_all(
        &mut self,
        follows: &mut HashMap<(SymbolId, Kind), Follow>,
        subs: &mut Subs,
    ) {
        let sub = match self.nats.client.subscribe(self.subjects.rounds()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot subscribe: {e}");
                self.scanned = None;
                return;
            }
        };
        let (tx, rx) = oneshot::channel::<()>();
        subs.push(sub.map(|m| (ANY, Kind::Round, m)).take_until(rx).boxed());
        self.wild = Some(Follow {
            _cancel: tx,
            idle_since: None,
        });
        follows.retain(|(_, k), _| *k != Kind::Quote);
        let all = (0..self.symbols.len())
            .map(|i| SymbolId(i as u32))
            .collect();
        tracing::info!(
            symbols = self.symbols.len(),
            "edge: one subscription to every quote"
        );
        self.refetch(all);
    }

    /// Reads the last values of `syms` from the stream in the background,
    /// now and once more later (a newer quote received meanwhile wins:
    /// lower seqs are refused).
    fn refetch(&mut self, syms: Vec<SymbolId>) {
        if syms.is_empty() {
            return;
        }
        let feeds: Vec<Option<Arc<FeedState>>> =
            syms.iter().map(|s| self.feed_of.get(s).cloned()).collect();
        let (last, slots) = (self.last.clone(), self.slots.clone());
        tokio::spawn(async move {
            last.refresh(&syms).await;
            // Current again (a symbol let go was marked stale).
            for (&sym, feed) in syms.iter().zip(feeds) {
                if feed.is_some_and(|f| f.is_up()) {
                    slots.set_status(sym, Status::Live);
                }
            }
            last.refresh_later(&syms).await;
        });
    }
}
