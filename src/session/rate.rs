//! The per-session limit on inbound ops.
//!
//! A governor token bucket admits `max_msgs_per_sec` sustained and
//! `msgs_burst` at once. Each op past it is answered with `rate_limited`
//! and counted as a violation; violations decay by one per second, and a
//! session that collects more than `max_rate_violations` is closed with 1008.

use super::SessionConfig;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use tokio::time::Instant;

/// What the limiter says of an inbound op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OpVerdict {
    Admit,
    /// Refused: answer `rate_limited`.
    RateLimited,
    /// The session has kept flooding: close it.
    Flooding,
}

pub(super) struct OpLimiter {
    limiter: DefaultDirectRateLimiter,
    violations: u32,
    max_violations: u32,
    last_decay: Instant,
}

impl OpLimiter {
    pub(super) fn new(cfg: &SessionConfig) -> Self {
        let rate = NonZeroU32::new(cfg.max_msgs_per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(cfg.msgs_burst.max(cfg.max_msgs_per_sec)).unwrap_or(rate);
        OpLimiter {
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            violations: 0,
            max_violations: cfg.max_rate_violations,
            last_decay: Instant::now(),
        }
    }

    /// Counts one op.
    pub(super) fn check(&mut self) -> OpVerdict {
        let secs = self.last_decay.elapsed().as_secs();
        if secs > 0 {
            self.violations = self
                .violations
                .saturating_sub(secs.min(u32::MAX as u64) as u32);
            self.last_decay = Instant::now();
        }
        if self.limiter.check().is_ok() {
            return OpVerdict::Admit;
        }
        self.violations += 1;
        if self.violations > self.max_violations {
            OpVerdict::Flooding
        } else {
            OpVerdict::RateLimited
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate_limited_then_close() {
        let cfg = SessionConfig {
            max_msgs_per_sec: 1,
            msgs_burst: 3,
            max_rate_violations: 2,
            ..SessionConfig::default()
        };
        let mut l = OpLimiter::new(&cfg);
        assert_eq!(l.check(), OpVerdict::Admit);
        assert_eq!(l.check(), OpVerdict::Admit);
        assert_eq!(l.check(), OpVerdict::Admit);
        assert_eq!(l.check(), OpVerdict::RateLimited);
        assert_eq!(l.check(), OpVerdict::RateLimited);
        assert_eq!(l.check(), OpVerdict::Flooding);
    }
}
