//! What every criterion bench here shares: one measurement setting, so
//! figures from different benches compare (1 s warm-up, 3 s of 30
//! samples; BENCHMARKS.md quotes them with these).

use criterion::Criterion;
use std::time::Duration;

pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}
