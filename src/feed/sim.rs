//! The built-in simulated feed: seeded random walks on realistic symbols.
//!
//! Equities tick in cents with share sizes; crypto pairs carry their venue's
//! tick size and 8-decimal sizes (`"0.51230000"`), so the exact-scale path is
//! exercised from the first run. Bid < ask always, on the tick grid.
//! Popularity follows a Zipf law: the first symbols are much hotter than the
//! tail. The same seed gives the same sequence of quotes.

use crate::feed::FeedState;
use crate::invalid::{at_least_one, Invalid};
use crate::model::{field, now_ns, Quote, SymbolId};
use crate::normalize::Normalizer;
use crate::shutdown::Shutdown;
use crate::trades::{Side, TradeInfo};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// `kind = "sim"`: seeded random walks on realistic symbols.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Feed name, used in metrics and logs. Default `sim`.
    pub name: String,
    /// Number of symbols: the built-in list of real equities and crypto
    /// pairs, extended with synthetic tickers past its end. Default 300.
    pub symbols: usize,
    /// Total updates per second across all symbols, spread evenly in time,
    /// each update on a symbol drawn by Zipf popularity. Default 5000.
    /// Ignored when `burst_hz` is set.
    pub rate: f64,
    /// Burst mode: when > 0, every symbol ticks together this many times a
    /// second (a "board" where a whole market moves at once: 1,000 symbols
    /// at 2 Hz is 2,000 updates in two bursts a second). Default 0 = off.
    pub burst_hz: f64,
    /// Zipf exponent of symbol popularity: 0 = uniform, 1 = the first
    /// symbols are much hotter than the tail. Default 1.1.
    pub zipf: f64,
    /// Fraction of updates that also carry a trade (last/last_size).
    /// Default 0.3.
    pub trade_ratio: f64,
    /// RNG seed: the same seed gives the same walk. Default 42.
    pub seed: u64,
    /// Time between generator ticks, in milliseconds. Default 1.
    pub tick_ms: u64,
    /// Silence (no update, no heartbeat) after which the feed's symbols are
    /// `stale`, in milliseconds. Default 3000.
    pub stale_after_ms: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            name: "sim".into(),
            symbols: 300,
            rate: 5000.0,
            burst_hz: 0.0,
            zipf: 1.1,
            trade_ratio: 0.3,
            seed: 42,
            tick_ms: 1,
            stale_after_ms: 3_000,
        }
    }
}

impl SimConfig {
    /// Checks the fields; names them relative to the feed's table.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.symbols == 0 || self.symbols > 100_000 {
            return Err(Invalid::new("symbols", "must be in 1..=100000"));
        }
        if !(self.rate.is_finite() && self.rate >= 0.0) {
            return Err(Invalid::new("rate", "must be a number >= 0"));
        }
        if !(self.burst_hz.is_finite() && (0.0..=10_000.0).contains(&self.burst_hz)) {
            return Err(Invalid::new("burst_hz", "must be in 0..=10000"));
        }
        if !(self.zipf.is_finite() && (0.0..=4.0).contains(&self.zipf)) {
            return Err(Invalid::new("zipf", "must be in 0..=4"));
        }
        if !(0.0..=1.0).contains(&self.trade_ratio) {
            return Err(Invalid::new("trade_ratio", "must be in 0..=1"));
        }
        at_least_one("tick_ms", self.tick_ms)?;
        at_least_one("stale_after_ms", self.stale_after_ms)
    }
}

/// Real equity tickers (2-decimal ticks, share sizes).
const EQUITIES: &[&str] = &[
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "AVGO", "BRK.B", "JPM", "LLY", "V",
    "UNH", "XOM", "MA", "JNJ", "PG", "HD", "COST", "ABBV", "MRK", "ORCL", "CVX", "KO", "PEP",
    "BAC", "ADBE", "CRM", "NFLX", "AMD", "WMT", "TMO", "MCD", "CSCO", "ACN", "ABT", "LIN", "DHR",
    "INTC", "DIS", "VZ", "CMCSA", "PFE", "TXN", "NKE", "WFC", "PM", "NEE", "INTU", "AMGN", "UPS",
    "RTX", "HON", "QCOM", "LOW", "SPGI", "IBM", "BA", "CAT", "GE", "AMAT", "UNP", "T", "GS", "ELV",
    "DE", "SBUX", "PLD", "MS", "BLK", "ISRG", "BKNG", "MDT", "GILD", "ADP", "LMT", "AXP", "SYK",
    "TJX", "MDLZ", "CVS", "ADI", "VRTX", "MMC", "C", "REGN", "CB", "AMT", "SCHW", "ZTS", "CI",
    "MO", "SO", "PGR", "LRCX", "BSX", "FI", "DUK", "BDX", "SLB", "EOG", "NOC", "ITW", "MU", "CSX",
    "APD", "CL", "EQIX", "SNPS", "CME", "ICE", "AON", "KLAC", "WM", "CDNS", "SHW", "HUM", "ETN",
    "FDX", "MCK", "PNC", "ORLY", "USB", "GD", "MPC", "NSC", "EMR", "MAR", "PYPL", "ROP", "APH",
    "PSX", "MCO", "GM", "F", "TGT", "HCA", "AZO", "NXPI", "MSI", "PH", "ECL", "ADSK", "AJG", "TT",
    "CTAS", "AIG", "TDG", "KMB", "ANET", "MET", "AFL", "SRE", "PCAR", "DXCM", "TRV", "O", "COF",
    "WELL", "CARR", "MNST", "HLT", "OXY", "FTNT", "ROST", "KHC", "PAYX", "STZ", "IDXX", "MSCI",
    "ALL", "BIIB", "DOW", "YUM", "GIS", "KMI", "EXC", "CTVA", "CMG", "SPY", "QQQ", "IWM", "DIA",
    "UBER", "ABNB", "SNOW", "PLTR", "COIN", "SHOP", "SQ", "ROKU", "ZM", "DDOG", "NET", "CRWD",
    "MDB", "TEAM", "WDAY", "PANW", "ARM", "SMCI", "DELL", "HPQ", "HPE", "WBD", "PARA", "LYFT",
    "RIVN", "LCID", "SOFI", "HOOD", "RBLX", "U", "EA", "TTWO", "ATVI", "SONY", "TSM", "ASML",
    "BABA", "JD", "PDD", "NIO", "BIDU", "TM", "HMC", "SAP", "NVO", "AZN", "SHEL", "BP", "TTE",
    "RIO", "BHP", "VALE", "UL", "DEO", "BTI",
];

/// Crypto pairs: name, starting price, price scale (tick 10^-scale),
/// size scale.
const CRYPTO: &[(&str, i64, u32, u32)] = &[
    ("BTC-USD", 9_700_001, 2, 8),
    ("ETH-USD", 345_012, 2, 8),
    ("SOL-USD", 18_734, 2, 6),
    ("XRP-USD", 22_345, 4, 2),
    ("DOGE-USD", 38_512, 5, 1),
    ("ADA-USD", 10_234, 4, 2),
    ("AVAX-USD", 4_123, 2, 6),
    ("LINK-USD", 2_345, 2, 4),
    ("DOT-USD", 8_123, 3, 4),
    ("LTC-USD", 10_321, 2, 8),
    ("BCH-USD", 45_678, 2, 8),
    ("MATIC-USD", 5_123, 4, 2),
    ("BTC-USDT", 9_700_123, 2, 5),
    ("ETH-USDT", 345_034, 2, 4),
    ("SOL-USDT", 18_740, 2, 3),
    ("BTC-EUR", 8_900_045, 2, 8),
    ("ETH-EUR", 317_011, 2, 8),
    ("ETH-BTC", 3_556, 5, 4),
    ("UNI-USD", 9_876, 3, 4),
    ("ATOM-USD", 6_543, 3, 4),
];

/// Deterministic, fast RNG (SplitMix64): the same seed, the same walk.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        ((self.next() >> 32) * n) >> 32
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Walk {
    /// Bid price in ticks.
    bid: i64,
    /// Spread in ticks (>= 1, so bid < ask).
    spread: i64,
    price_scale: u32,
    size_scale: u32,
    /// Sizes are multiples of this many units of 10^-size_scale.
    lot: i64,
}

/// The symbol names a simulated feed provides, in popularity order.
pub fn symbol_names(n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    // Interleave so a small universe still has both kinds of symbol.
    let (mut e, mut c) = (EQUITIES.iter(), CRYPTO.iter());
    while out.len() < n {
        let take_crypto = out.len() % 8 == 1;
        let next = if take_crypto {
            c.next().map(|x| x.0).or_else(|| e.next().copied())
        } else {
            e.next().copied().or_else(|| c.next().map(|x| x.0))
        };
        match next {
            Some(name) => out.push(name.to_string()),
            None => break,
        }
    }
    let mut i = 0;
    while out.len() < n {
        out.push(format!("SIM{i:05}"));
        i += 1;
    }
    out
}

pub struct Sim {
    rng: Rng,
    walks: Vec<Walk>,
    ids: Vec<SymbolId>,
    /// Cumulative Zipf weights for picking a symbol.
    cdf: Vec<f64>,
    trade_ratio: f64,
}

impl Sim {
    /// `ids[i]` is the interned id of `symbol_names(n)[i]`.
    pub fn new(cfg: &SimConfig, ids: Vec<SymbolId>) -> Sim {
        let mut rng = Rng(cfg.seed);
        let names = symbol_names(ids.len());
        let walks = names
            .iter()
            .map(|name| match CRYPTO.iter().find(|c| c.0 == name) {
                Some(&(_, px, ps, ss)) => Walk {
                    bid: px,
                    spread: 1,
                    price_scale: ps,
                    size_scale: ss,
                    lot: 1,
                },
                None => Walk {
                    bid: 500 + rng.below(60_000) as i64,
                    spread: 1,
                    price_scale: 2,
                    size_scale: 0,
                    lot: 100,
                },
            })
            .collect();
        let mut acc = 0.0;
        let cdf = (0..ids.len())
            .map(|i| {
                acc += 1.0 / ((i + 1) as f64).powf(cfg.zipf);
                acc
            })
            .collect();
        Sim {
            rng,
            walks,
            ids,
            cdf,
            trade_ratio: cfg.trade_ratio,
        }
    }

    fn pick(&mut self) -> usize {
        let total = self.cdf.last().copied().unwrap_or(0.0);
        let u = self.rng.unit() * total;
        self.cdf
            .partition_point(|c| *c < u)
            .min(self.walks.len() - 1)
    }

    fn size(&mut self, w_lot: i64, scale: u32) -> Decimal {
        let units = if w_lot > 1 {
            (1 + self.rng.below(40) as i64) * w_lot
        } else {
            1 + self.rng.below(10i64.pow(scale.min(9)) as u64 * 5) as i64
        };
        Decimal::new(units, scale)
    }

    /// The next simulated update: which symbol (by Zipf popularity), and
    /// its new quote.
    pub fn step(&mut self) -> (SymbolId, Quote) {
        let i = self.pick();
        self.step_symbol(i)
    }

    /// Number of symbols this simulator walks.
    pub fn len(&self) -> usize {
        self.walks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.walks.is_empty()
    }

    /// The next quote of the `i`th symbol (in popularity order).
    pub fn step_symbol(&mut self, i: usize) -> (SymbolId, Quote) {
        let r = self.rng.next();
        let (bid, spread, ps, ss, lot) = {
            let w = &mut self.walks[i];
            let mv = (r % 5) as i64 - 2;
            w.bid = (w.bid + mv).max(1);
            w.spread = (w.spread + ((r >> 8) % 3) as i64 - 1).clamp(1, 3);
            (w.bid, w.spread, w.price_scale, w.size_scale, w.lot)
        };
        let bid_size = self.size(lot, ss);
        let ask_size = self.size(lot, ss);
        let mut q = Quote::default()
            .with_bid(Decimal::new(bid, ps), bid_size)
            .with_ask(Decimal::new(bid + spread, ps), ask_size)
            .with_ts(now_ns());
        if self.rng.unit() < self.trade_ratio {
            let px = if (r >> 20) & 1 == 0 {
                bid
            } else {
                bid + spread
            };
            let sz = self.size(lot, ss);
            q = q.with_last(Decimal::new(px, ps), sz);
        }
        (self.ids[i], q)
    }
}

/// A simulated quote with a last trade is a trade: at the bid a seller
/// hit it, at the ask a buyer lifted it. Numbered from 1 per feed.
fn trade_info(q: &Quote, next_id: &mut u64) -> Option<TradeInfo> {
    q.has(field::LAST).then(|| {
        *next_id += 1;
        TradeInfo {
            side: Some(if q.last == q.bid {
                Side::Sell
            } else {
                Side::Buy
            }),
            trade_id: Some(*next_id),
        }
    })
}

/// Runs the simulator until shutdown: `cfg.rate` updates/s, or with
/// `cfg.burst_hz` set, every symbol `burst_hz` times a second.
pub async fn run(
    cfg: SimConfig,
    mut sim: Sim,
    norm: Normalizer,
    state: Arc<FeedState>,
    mut shutdown: Shutdown,
) {
    // Burst mode ticks once per burst when bursts are further apart than
    // `tick_ms` (no wake-ups in between), but at least once a second so
    // the feed stays alive between slow bursts.
    let period = if cfg.burst_hz > 0.0 {
        let per_burst = Duration::from_secs_f64(1.0 / cfg.burst_hz).min(Duration::from_secs(1));
        Duration::from_millis(cfg.tick_ms).max(per_burst)
    } else {
        Duration::from_millis(cfg.tick_ms)
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = Instant::now();
    let mut emitted: f64 = 0.0;
    // Burst mode counts bursts (each one ticks every symbol), random mode
    // counts single updates.
    let burst = cfg.burst_hz > 0.0;
    let rate = if burst { cfg.burst_hz } else { cfg.rate };
    // At most one second's worth per tick: a stalled process does not
    // answer with an unbounded burst.
    let cap = rate.max(1.0);
    // The feed's trade numbers, as a venue numbers its trades.
    let mut trade_ids = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        if state.is_paused() {
            // A paused feed is a silent upstream: no data, no heartbeat,
            // and no backlog when it resumes.
            emitted = start.elapsed().as_secs_f64() * rate;
            continue;
        }
        state.alive();
        let target = start.elapsed().as_secs_f64() * rate;
        let due = (target - emitted).clamp(0.0, cap) as u64;
        for _ in 0..due {
            if burst {
                for i in 0..sim.len() {
                    let (sym, q) = sim.step_symbol(i);
                    let _ = norm.apply_with(sym, q, trade_info(&q, &mut trade_ids));
                }
            } else {
                let (sym, q) = sim.step();
                // The simulator only produces valid quotes; a reject would
                // be a bug and is counted in feed_rejects_total like any
                // other.
                let _ = norm.apply_with(sym, q, trade_info(&q, &mut trade_ids));
            }
        }
        emitted = emitted.max(target - cap) + due as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::validate;

    fn sim(seed: u64) -> Sim {
        let cfg = SimConfig {
            seed,
            symbols: 300,
            ..SimConfig::default()
        };
        Sim::new(&cfg, (0..300).map(SymbolId).collect())
    }

    #[test]
    fn names_are_realistic_and_unique() {
        let n = symbol_names(300);
        assert_eq!(n.len(), 300);
        assert_eq!(n[0], "AAPL");
        assert!(n.contains(&"BTC-USD".to_string()));
        let set: std::collections::HashSet<_> = n.iter().collect();
        assert_eq!(set.len(), 300);
        assert!(n.iter().all(|s| crate::model::valid_symbol(s)));
        assert_eq!(symbol_names(5000).len(), 5000);
    }

    #[test]
    fn walks_stay_valid_on_the_grid() {
        let mut s = sim(7);
        let btc = symbol_names(300)
            .iter()
            .position(|n| n == "BTC-USD")
            .unwrap();
        let mut seen_btc = false;
        for _ in 0..50_000 {
            let (id, q) = s.step();
            assert_eq!(validate(&q), Ok(()));
            assert!(q.bid < q.ask, "bid < ask");
            if id.index() == btc {
                seen_btc = true;
                assert_eq!(q.bid.scale(), 2);
                assert_eq!(q.bid_size.scale(), 8);
            } else if id.index() == 0 {
                assert_eq!(q.bid.scale(), 2);
                assert_eq!(q.bid_size.scale(), 0);
                assert_eq!(q.bid_size % Decimal::from(100), Decimal::ZERO);
            }
        }
        assert!(seen_btc);
    }

    #[test]
    fn same_seed_same_walk_and_zipf_skew() {
        let (mut a, mut b) = (sim(1), sim(1));
        let mut hits = vec![0u32; 300];
        for _ in 0..20_000 {
            let (ia, qa) = a.step();
            let (ib, qb) = b.step();
            assert_eq!(ia, ib);
            assert_eq!((qa.bid, qa.ask, qa.bid_size), (qb.bid, qb.ask, qb.bid_size));
            hits[ia.index()] += 1;
        }
        assert!(
            hits[0] > 10 * hits[299].max(1),
            "head much hotter than tail"
        );
    }
}
