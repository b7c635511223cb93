//! Per-address connection limits, checked before a client costs anything:
//! the rate of new connections ([`ConnLimiter`]) and the sessions held at
//! once ([`IpSessions`]).

use crate::sync::{Mutex, MutexGuard};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;

/// New connections per client address: a governor keyed token bucket
/// (`server.conn_rate_per_ip` sustained, `server.conn_burst_per_ip` at
/// once), checked at TCP accept so a flood costs neither an HTTP parser nor
/// a task. IPv6 clients are keyed by their /64, since one host usually owns
/// a whole /64 and could otherwise spray fresh keys for free.
///
/// Governor keeps one entry per key until told otherwise, so
/// [`ConnLimiter::prune`] must run periodically (see [`prune_task`]); an
/// entry is dropped once its bucket is full again, which takes at most
/// `burst / rate` seconds. The clock is a parameter so unit tests can use
/// governor's `FakeRelativeClock`.
pub(crate) struct ConnLimiter<C: governor::clock::Clock = governor::clock::DefaultClock> {
    limiter: RateLimiter<
        std::net::IpAddr,
        governor::state::keyed::DefaultKeyedStateStore<std::net::IpAddr>,
        C,
        governor::middleware::NoOpMiddleware<C::Instant>,
    >,
}

impl ConnLimiter {
    pub(crate) fn new(rate_per_sec: u32, burst: u32) -> Self {
        Self::with_clock(
            rate_per_sec,
            burst,
            governor::clock::DefaultClock::default(),
        )
    }
}

impl<C: governor::clock::Clock> ConnLimiter<C> {
    pub(crate) fn with_clock(rate_per_sec: u32, burst: u32, clock: C) -> Self {
        let rate = NonZeroU32::new(rate_per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(rate_per_sec)).unwrap_or(rate);
        let quota = Quota::per_second(rate).allow_burst(burst);
        ConnLimiter {
            limiter: RateLimiter::new(quota, Default::default(), clock),
        }
    }

    /// Whether a new connection from `ip` is admitted.
    pub(crate) fn check(&self, ip: std::net::IpAddr) -> bool {
        self.limiter.check_key(&limiter_key(ip)).is_ok()
    }

    /// Forgets addresses whose bucket has refilled; returns the keys left.
    pub(crate) fn prune(&self) -> usize {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.limiter.len()
    }
}

/// Concurrent WebSocket sessions per client address
/// (`server.max_connections_per_ip`; IPv6 per /64, as [`ConnLimiter`]).
/// The connection rate limit alone lets one address collect sessions up
/// to the server's whole `max_connections` over time; this caps what it
/// holds at once. An entry exists only while its address holds a session
/// (the map is bounded by the sessions), in one of 16 locked shards.
pub(crate) struct IpSessions {
    cap: u32,
    shards: Box<[Mutex<std::collections::HashMap<std::net::IpAddr, u32>>]>,
}

/// One of an address's sessions; released on drop.
pub(crate) struct IpSessionGuard {
    sessions: std::sync::Arc<IpSessions>,
    key: std::net::IpAddr,
}

/// The address already holds `server.max_connections_per_ip` sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpAtLimit;

impl IpSessions {
    /// `cap` 0: no cap (nothing is counted).
    pub(crate) fn new(cap: u32) -> Self {
        IpSessions {
            cap,
            shards: (0..16).map(|_| Default::default()).collect(),
        }
    }

    fn shard(
        &self,
        key: &std::net::IpAddr,
    ) -> MutexGuard<'_, std::collections::HashMap<std::net::IpAddr, u32>> {
        use std::hash::{Hash, Hasher};
        // Fixed keys are enough here: the shard only spreads lock traffic,
        // and each map has its own seeded hasher.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let i = (h.finish() as usize) % self.shards.len();
        self.shards[i].lock()
    }

    /// Counts a new session from `ip`: `Ok(None)` without a cap,
    /// `Err(IpAtLimit)` when the address is at it.
    pub(crate) fn acquire(
        self: &std::sync::Arc<Self>,
        ip: std::net::IpAddr,
    ) -> Result<Option<Box<IpSessionGuard>>, IpAtLimit> {
        if self.cap == 0 {
            return Ok(None);
        }
        let key = limiter_key(ip);
        let mut m = self.shard(&key);
        let n = m.entry(key).or_insert(0);
        if *n >= self.cap {
            return Err(IpAtLimit);
        }
        *n += 1;
        Ok(Some(Box::new(IpSessionGuard {
            sessions: self.clone(),
            key,
        })))
    }
}

impl Drop for IpSessionGuard {
    fn drop(&mut self) {
        let mut m = self.sessions.shard(&self.key);
        if let Some(n) = m.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

/// IPv4 (and IPv4-mapped IPv6) by address, other IPv6 by /64 prefix.
fn limiter_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv6Addr};
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        },
    }
}

/// Prunes the per-address limiter every `server.conn_limiter_prune_ms`
/// until shutdown, and keeps `tickergate_limiter_keys` current.
pub(crate) async fn prune_task(ctx: std::sync::Arc<super::Context>) {
    let every = std::time::Duration::from_millis(ctx.config.conn_limiter_prune_ms);
    let mut shutdown = ctx.shutdown.subscribe();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {
                let keys = ctx.conn_limiter.prune();
                ctx.metrics.limiter_keys.set(keys as i64);
            }
        }
    }
}

#[cfg(test)]
mod conn_tests {
    use super::*;

    impl<C: governor::clock::Clock> ConnLimiter<C> {
        fn len(&self) -> usize {
            self.limiter.len()
        }

        fn is_empty(&self) -> bool {
            self.limiter.is_empty()
        }
    }

    impl IpSessions {
        /// Addresses holding a session (0 without a cap).
        fn addresses(&self) -> usize {
            self.shards.iter().map(|s| s.lock().len()).sum()
        }
    }
    use governor::clock::FakeRelativeClock;
    use std::net::IpAddr;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_address_burst_refill_and_prune() {
        let clock = FakeRelativeClock::default();
        let l = ConnLimiter::with_clock(2, 4, clock.clone());
        for _ in 0..4 {
            assert!(l.check(ip("10.0.0.1")));
        }
        assert!(!l.check(ip("10.0.0.1")), "burst spent");
        assert!(l.check(ip("10.0.0.2")), "other addresses unaffected");
        clock.advance(Duration::from_millis(500));
        assert!(l.check(ip("10.0.0.1")), "one token back after 1/rate");
        assert!(!l.check(ip("10.0.0.1")));
        for i in 0..1000u32 {
            l.check(IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i)));
        }
        assert_eq!(l.len(), 1002);
        assert_eq!(l.prune(), 1002, "nothing has refilled yet");
        clock.advance(Duration::from_secs(3));
        assert_eq!(l.prune(), 0, "refilled buckets are forgotten");
        assert!(l.is_empty());
    }

    #[test]
    fn ipv6_keyed_by_prefix() {
        let l = ConnLimiter::with_clock(1, 1, FakeRelativeClock::default());
        assert!(l.check(ip("2001:db8:1:2::1")));
        assert!(!l.check(ip("2001:db8:1:2::ffff")), "same /64");
        assert!(l.check(ip("2001:db8:1:3::1")), "other /64");
        assert!(l.check(ip("::ffff:10.0.0.9")));
        assert!(!l.check(ip("10.0.0.9")), "v4-mapped is the v4 address");
    }

    #[test]
    fn sessions_per_address_cap_keys_like_the_rate_limit_and_forget() {
        let s = std::sync::Arc::new(IpSessions::new(2));
        let a = s.acquire(ip("10.0.0.1")).unwrap();
        let b = s.acquire(ip("::ffff:10.0.0.1")).unwrap();
        assert!(a.is_some() && b.is_some());
        assert_eq!(s.acquire(ip("10.0.0.1")).err(), Some(IpAtLimit));
        // IPv6: one /64 is one address.
        let c = s.acquire(ip("2001:db8::1")).unwrap();
        let d = s.acquire(ip("2001:db8::2")).unwrap();
        assert_eq!(s.acquire(ip("2001:db8::3")).err(), Some(IpAtLimit));
        assert!(
            s.acquire(ip("2001:db8:0:1::1")).unwrap().is_some(),
            "other /64"
        );
        assert_eq!(s.addresses(), 2, "the released one is gone");
        drop(a);
        assert!(s.acquire(ip("10.0.0.1")).unwrap().is_some(), "a place back");
        drop((b, c, d));
        assert_eq!(s.addresses(), 0, "no session, no entry");
        let off = std::sync::Arc::new(IpSessions::new(0));
        assert!((0..100).all(|_| matches!(off.acquire(ip("10.0.0.1")), Ok(None))));
        assert_eq!(off.addresses(), 0);
    }
}
