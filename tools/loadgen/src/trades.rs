//! Trades in the load generator: what a client that subscribed with
//! `"trades": true` reads beside its quotes, and the checks it makes.
//!
//! The gateway writes a trade as
//! `{"type":"trade","symbol":"S","seq":N,"price":…,"size":…[,"side":…][,"trade_id":…],"ts":…,"gw_ts":T}`
//! and a loss as `{"type":"trades_dropped","symbol":"S","count":C}` before
//! the next trade of that symbol (docs/PROTOCOL.md, "Trades"). A trade's
//! `seq` numbers its symbol's trades 1, 2, 3, … without gaps, and a client
//! gets trades from the next one after it subscribed (no history). So per
//! subscription: the first trade seen sets the baseline; every later one
//! must be exactly the last seq + 1 + the counts of the `trades_dropped`
//! read since. A larger seq is a gap nobody announced, a smaller or equal
//! one a repeat or a reorder: both are errors, counted for the whole
//! connection (warm-up included, never reset) and reported loudly.
//!
//! The scan reads those fields without a full JSON parse, like the quote
//! scanner in `bin/loadgen.rs`, so one core can keep up with the gateway.

use hdrhistogram::Histogram;
use std::cell::{Cell, RefCell};

/// Counters of every trade-reading client on this (single) thread.
pub struct TradeStats {
    /// Trades received in the measured window.
    pub trades: Cell<u64>,
    /// Sum of the `trades_dropped` counts received in the window.
    pub dropped: Cell<u64>,
    /// `trades_dropped` messages received in the window.
    pub dropped_msgs: Cell<u64>,
    /// Trades missing without a `trades_dropped` that explains them, over
    /// the connections' whole life (never reset): must stay 0.
    pub gaps: Cell<u64>,
    /// Times such a gap was seen (whole life).
    pub gap_events: Cell<u64>,
    /// Trades whose seq repeated or went backwards (whole life): must stay 0.
    pub disorder: Cell<u64>,
    /// Age of each trade at receipt (receipt wall clock minus its `gw_ts`),
    /// µs, in the window (of the scanned frames, `--scan-every`).
    pub age_us: RefCell<Histogram<u64>>,
    /// The first gap or disorder, described.
    pub first_error: RefCell<Option<String>>,
}

impl TradeStats {
    pub fn new() -> Result<TradeStats, hdrhistogram::CreationError> {
        Ok(TradeStats {
            trades: Cell::new(0),
            dropped: Cell::new(0),
            dropped_msgs: Cell::new(0),
            gaps: Cell::new(0),
            gap_events: Cell::new(0),
            disorder: Cell::new(0),
            // 1 µs .. 100 s, 3 significant digits.
            age_us: RefCell::new(Histogram::new_with_bounds(1, 100_000_000, 3)?),
            first_error: RefCell::new(None),
        })
    }

    /// At the start of the measured window: the window's counters only
    /// (gaps and disorder count the whole life).
    pub fn reset_window(&self) {
        self.trades.set(0);
        self.dropped.set(0);
        self.dropped_msgs.set(0);
        self.age_us.borrow_mut().reset();
    }

    fn error(&self, e: String) {
        let mut f = self.first_error.borrow_mut();
        if f.is_none() {
            *f = Some(e);
        }
    }
}

/// One client's trade subscriptions as the scanner tracks them.
pub struct TradeTrack<'a> {
    names: Vec<&'a [u8]>,
    /// Seq of the last trade of each subscription (0: none yet).
    last: Vec<u64>,
    /// Trades announced dropped since that one.
    owed: Vec<u64>,
    /// Subscription of the previous trade message: trades of one symbol
    /// come in runs.
    guess: usize,
}

impl<'a> TradeTrack<'a> {
    pub fn new(names: Vec<&'a [u8]>) -> Self {
        let n = names.len();
        TradeTrack {
            names,
            last: vec![0; n],
            owed: vec![0; n],
            guess: 0,
        }
    }

    fn index(&mut self, sym: &[u8]) -> Result<usize, String> {
        if self.names.get(self.guess) == Some(&sym) {
            return Ok(self.guess);
        }
        let j = self.names.iter().position(|s| *s == sym).ok_or_else(|| {
            format!(
                "trade for {:?}, not subscribed",
                String::from_utf8_lossy(sym)
            )
        })?;
        self.guess = j;
        Ok(j)
    }
}

/// What [`scan`] found in one frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scanned {
    pub trades: u64,
    pub dropped_msgs: u64,
}

impl Scanned {
    /// Messages: trades and `trades_dropped`.
    pub fn msgs(&self) -> u64 {
        self.trades + self.dropped_msgs
    }
}

/// Scans one frame (a JSON array of messages) for `trade` and
/// `trades_dropped` messages: checks every trade's seq against its
/// subscription (always), counts them into `stats` when `measuring`, and
/// records each trade's age when `now` is given (a scanned frame,
/// `--scan-every`). Quotes and other messages are skipped. An error is a
/// trade this reader cannot read or a symbol not subscribed; gaps and
/// disorder are counted in `stats`, not returned.
pub fn scan(
    text: &[u8],
    track: &mut TradeTrack,
    stats: &TradeStats,
    now: Option<i64>,
    measuring: bool,
) -> Result<Scanned, String> {
    const TRADE: &[u8] = br#"{"type":"trade"#;
    const AS_TRADE: &[u8] = br#"","symbol":""#;
    const AS_DROPPED: &[u8] = br#"s_dropped","symbol":""#;
    const SEQ: &[u8] = br#"","seq":"#;
    const COUNT: &[u8] = br#"","count":"#;
    const GW: &[u8] = br#","gw_ts":"#;
    thread_local! {
        static FIND: (memchr::memmem::Finder<'static>, memchr::memmem::Finder<'static>) = (
            memchr::memmem::Finder::new(TRADE),
            memchr::memmem::Finder::new(GW),
        );
    }
    FIND.with(|(find_trade, find_gw)| {
        let mut out = Scanned::default();
        let mut hist = now.map(|_| stats.age_us.borrow_mut());
        let mut pos = 0usize;
        while let Some(at) = find_trade.find(&text[pos..]) {
            let rest = &text[pos + at + TRADE.len()..];
            let (dropped, rest) = if let Some(r) = rest.strip_prefix(AS_TRADE) {
                (false, r)
            } else if let Some(r) = rest.strip_prefix(AS_DROPPED) {
                (true, r)
            } else {
                // Some other type that starts with "trade": not ours.
                pos += at + TRADE.len();
                continue;
            };
            let end = memchr::memchr(b'"', rest).ok_or("unterminated trade symbol")?;
            let sym = &rest[..end];
            let j = track.index(sym)?;
            let field = if dropped { COUNT } else { SEQ };
            let rest = rest[end..]
                .strip_prefix(field)
                .ok_or("no seq or count after the trade's symbol")?;
            let (n, _) = crate::parse_u64(rest).ok_or("bad trade seq or count")?;
            // A trade holds no nested object and no `}` in a string.
            let close = memchr::memchr(b'}', rest).ok_or("unterminated trade")?;
            pos = (rest.as_ptr() as usize - text.as_ptr() as usize) + close + 1;
            if dropped {
                track.owed[j] += n;
                out.dropped_msgs += 1;
                if measuring {
                    stats.dropped.set(stats.dropped.get() + n);
                }
                continue;
            }
            out.trades += 1;
            let (last, owed) = (track.last[j], track.owed[j]);
            if last != 0 {
                let expect = last + 1 + owed;
                if n > expect {
                    stats.gaps.set(stats.gaps.get() + (n - expect));
                    stats.gap_events.set(stats.gap_events.get() + 1);
                    stats.error(format!(
                        "trade seq gap on {}: after {last} (+{owed} announced dropped) came {n}: {} trades missing, no trades_dropped said so",
                        String::from_utf8_lossy(sym),
                        n - expect
                    ));
                } else if n < expect {
                    stats.disorder.set(stats.disorder.get() + 1);
                    stats.error(format!(
                        "trade seq out of order on {}: after {last} (+{owed} announced dropped) came {n}",
                        String::from_utf8_lossy(sym)
                    ));
                }
            }
            track.last[j] = last.max(n);
            track.owed[j] = 0;
            if let (Some(now), Some(h)) = (now, hist.as_mut()) {
                // `gw_ts` is the trade's last field.
                let body = &rest[..close];
                let digits = body.iter().rev().take_while(|c| c.is_ascii_digit()).count();
                let (head, tail) = body.split_at(body.len() - digits);
                let gw_ts = match crate::parse_u64(tail) {
                    Some((v, k)) if k == digits && head.ends_with(GW) => v,
                    _ => {
                        let at = find_gw.find(body).ok_or("no gw_ts in a trade")?;
                        crate::parse_u64(&body[at + GW.len()..])
                            .ok_or("bad gw_ts in a trade")?
                            .0
                    }
                };
                let age_us = ((now - gw_ts as i64).max(0) / 1000) as u64;
                let _ = h.record(age_us.clamp(1, 100_000_000));
            }
        }
        if measuring {
            stats.trades.set(stats.trades.get() + out.trades);
            stats
                .dropped_msgs
                .set(stats.dropped_msgs.get() + out.dropped_msgs);
        }
        Ok(out)
    })
}

/// The sum of every series of counter `name` in a `/metrics` body (all its
/// label sets), or `None` when it has none.
pub fn metric_sum(body: &str, name: &str) -> Option<f64> {
    let mut found = false;
    let mut sum = 0.0;
    for l in body.lines() {
        let Some(rest) = l.strip_prefix(name) else {
            continue;
        };
        // `name 12` or `name{feed="sim"} 12`, not a longer name.
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(v) = rest
            .rsplit(' ')
            .next()
            .and_then(|v| v.trim().parse::<f64>().ok())
        {
            sum += v;
            found = true;
        }
    }
    found.then_some(sum)
}

/// The gateway's trade counters at one moment: trades in (from every
/// feed), trade messages out, trades dropped for clients.
#[derive(Debug, Clone, Copy, Default)]
pub struct GwTrades {
    pub trades_in: f64,
    pub trades_out: f64,
    pub dropped: f64,
}

impl GwTrades {
    pub fn read(addr: std::net::SocketAddr) -> Option<GwTrades> {
        let body = crate::http_get(addr, "/metrics").ok()?;
        Some(GwTrades {
            trades_in: metric_sum(&body, "tickergate_trades_in_total")?,
            trades_out: metric_sum(&body, "tickergate_trades_out_total")?,
            dropped: metric_sum(&body, "tickergate_trades_dropped_total")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(msgs: &[String]) -> Vec<u8> {
        format!("[{}]", msgs.join(",")).into_bytes()
    }

    fn trade(sym: &str, seq: u64, gw_ts: i64) -> String {
        format!(
            r#"{{"type":"trade","symbol":"{sym}","seq":{seq},"price":"1.00","size":"100","side":"buy","trade_id":7,"ts":1,"gw_ts":{gw_ts}}}"#
        )
    }

    fn quote(sym: &str, seq: u64) -> String {
        format!(r#"{{"type":"quote","symbol":"{sym}","seq":{seq},"bid":"1.00","gw_ts":5}}"#)
    }

    fn dropped(sym: &str, n: u64) -> String {
        format!(r#"{{"type":"trades_dropped","symbol":"{sym}","count":{n}}}"#)
    }

    #[test]
    fn gapless_trades_and_announced_drops_pass_and_an_unannounced_gap_is_counted() {
        let s = TradeStats::new().unwrap();
        let mut t = TradeTrack::new(vec![b"AAPL", b"MSFT"]);
        let now = 1_000_000_000i64;
        // The first trade of a subscription sets its baseline (no history).
        let f = frame(&[
            quote("AAPL", 3),
            trade("AAPL", 41, now - 2_000_000),
            trade("AAPL", 42, now - 1_000_000),
            quote("MSFT", 9),
            trade("MSFT", 7, now),
        ]);
        let r = scan(&f, &mut t, &s, Some(now), true).unwrap();
        assert_eq!(
            r,
            Scanned {
                trades: 3,
                dropped_msgs: 0
            }
        );
        assert_eq!((s.trades.get(), s.gaps.get(), s.disorder.get()), (3, 0, 0));
        assert_eq!(s.age_us.borrow().len(), 3);
        assert_eq!(s.age_us.borrow().max(), 2000);
        // A drop announced in one frame explains the jump in the next.
        let f = frame(&[dropped("AAPL", 10)]);
        let r = scan(&f, &mut t, &s, None, true).unwrap();
        assert_eq!(r.dropped_msgs, 1);
        let f = frame(&[
            trade("AAPL", 53, now),
            dropped("MSFT", 2),
            trade("MSFT", 10, now),
        ]);
        scan(&f, &mut t, &s, None, true).unwrap();
        assert_eq!((s.dropped.get(), s.dropped_msgs.get()), (12, 2));
        assert_eq!((s.gaps.get(), s.disorder.get()), (0, 0));
        assert!(s.first_error.borrow().is_none());
        // Unannounced: 54 and 55 missing.
        let f = frame(&[trade("AAPL", 56, now)]);
        scan(&f, &mut t, &s, None, false).unwrap();
        assert_eq!((s.gaps.get(), s.gap_events.get()), (2, 1));
        assert!(s
            .first_error
            .borrow()
            .as_deref()
            .unwrap()
            .contains("2 trades missing"));
        // A repeat.
        let f = frame(&[trade("AAPL", 56, now)]);
        scan(&f, &mut t, &s, None, false).unwrap();
        assert_eq!(s.disorder.get(), 1);
        // Not measuring: checked, not counted.
        assert_eq!(s.trades.get(), 5);
        // A symbol not subscribed is an error.
        let f = frame(&[trade("NVDA", 1, now)]);
        assert!(scan(&f, &mut t, &s, None, true).is_err());
    }

    #[test]
    fn metric_sum_adds_label_sets_and_ignores_longer_names() {
        let body = "# HELP x\ntickergate_trades_in_total{feed=\"a\"} 3\n\
                    tickergate_trades_in_total{feed=\"b\"} 4\n\
                    tickergate_trades_in_total_other 100\n\
                    tickergate_trades_out_total 9\n";
        assert_eq!(metric_sum(body, "tickergate_trades_in_total"), Some(7.0));
        assert_eq!(metric_sum(body, "tickergate_trades_out_total"), Some(9.0));
        assert_eq!(metric_sum(body, "tickergate_trades_dropped_total"), None);
    }
}
