//! What an edge learns from the feeds' status (`<prefix>.status.<feed>`):
//! the cluster's epoch, each feed and its symbols, and whether the feed
//! is live, which its symbols' status follows.

use super::Follower;
use crate::cluster::wire::FeedStatus;
use crate::feed::FeedState;
use crate::model::{now_ns, Status};
use std::sync::Arc;
use std::time::Duration;

impl Follower {
    /// A feed's status: learn it and its symbols, and mirror its state.
    pub(super) fn on_status(&mut self, st: FeedStatus<'_>) {
        // A status that is old (read from the stream at start, from an
        // ingest that is gone) does not make the feed live, nor does it
        // say what a running ingest publishes.
        let fresh = (now_ns() - st.ts) / 1_000_000 < self.cfg.stale_after_ms as i64;
        let changed = if st.rounds {
            self.no_rounds.remove(st.feed.as_ref())
        } else {
            fresh && self.no_rounds.insert(st.feed.to_string())
        };
        if changed {
            // Whole rounds or not: the next rescan decides again.
            self.scanned = None;
            if !st.rounds {
                tracing::warn!(feed = %st.feed, node = %st.node, "the feed's ingest publishes no whole rounds (a build before them): this edge follows one subscription per symbol until it does");
            }
        }
        let mut other_epoch = false;
        if st.epoch != self.epoch.as_str() {
            if self.provisional {
                tracing::info!(epoch = %st.epoch, "serving the cluster's epoch");
                self.epoch = st.epoch.to_string();
                self.provisional = false;
                if let Some(c) = &self.epoch_cell {
                    *c.write() = st.epoch.to_string();
                }
            } else {
                // Its seqs start again below what clients have seen (the
                // stream was lost while every ingest was down): its
                // symbols stay stale here rather than go back.
                other_epoch = true;
                self.metrics.cluster.refused("epoch").inc();
                if self.refused_epochs.insert(st.epoch.to_string()) {
                    tracing::error!(feed = %st.feed, node = %st.node, epoch = %st.epoch, serving = %self.epoch,
                        "feed numbers its seqs under another epoch (the last-value stream was lost): its symbols are stale here; restart this edge to serve the new numbering");
                }
            }
        }
        let feed = match self.feeds.get(&st.feed) {
            Some(f) => f,
            None => {
                let f = Arc::new(FeedState::new(
                    &st.feed,
                    Vec::new(),
                    Some(Duration::from_millis(self.cfg.stale_after_ms)),
                ));
                let up = self.metrics.feed_up.with_label_values(&[&st.feed]);
                up.set(0);
                f.attach(self.slots.clone(), up);
                self.feeds.add(f.clone());
                tracing::info!(feed = %st.feed, node = %st.node, "learned feed");
                f
            }
        };
        let same = self
            .known
            .get(st.feed.as_ref())
            .is_some_and(|text| text == st.symbols.get());
        if !same {
            let list = match st.symbol_list() {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(feed = %st.feed, "feed status without a symbol list: {e}");
                    return;
                }
            };
            let before = self
                .known
                .insert(st.feed.to_string(), st.symbols.get().to_string());
            // What was stored was read before.
            let before: Vec<String> = before
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or_default();
            // Symbols the feed no longer lists (its ingest was configured
            // again) stop following it: stale here, for good.
            let listed: std::collections::HashSet<&str> = list.iter().map(String::as_str).collect();
            for name in &before {
                if listed.contains(name.as_str()) {
                    continue;
                }
                if let Some(id) = self.symbols.get(name) {
                    if feed.remove_symbol(id) {
                        self.feed_of.remove(&id);
                        self.slots.set_status(id, Status::Stale);
                        tracing::info!(feed = %st.feed, symbol = %name, "feed no longer lists symbol: stale");
                    }
                }
            }
            let mut added = false;
            let mut ids = Vec::with_capacity(list.len());
            for name in &list {
                let id = match self.symbols.get(name) {
                    Some(id) => id,
                    None => match self.symbols.add(name) {
                        Ok(id) => {
                            added = true;
                            id
                        }
                        Err(e) => {
                            if !self.full_warned {
                                self.full_warned = true;
                                tracing::warn!(symbol = %name, "symbol not added: {e} (raise [cluster] max_symbols)");
                            }
                            continue;
                        }
                    },
                };
                ids.push(id);
                self.feed_of.entry(id).or_insert_with(|| feed.clone());
            }
            feed.add_symbols(&ids, &self.slots);
            if added {
                (self.on_new)();
            }
        }
        if other_epoch || !st.up {
            feed.down();
        } else if fresh {
            feed.alive();
        }
    }
}
