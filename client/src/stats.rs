//! The figures of a run, for the summary printed at exit.
//!
//! Bounded whatever the run's length: counts per failure reason (a handful of
//! classes and status codes) and a fixed log-scale latency histogram whose
//! buckets are 1 % wide, so percentiles are exact to within 1 % (and min and
//! max are exact) while memory stays at a few KiB for a run of months.
//! Latency figures cover successful tries only, like `ping`'s round-trip
//! figures: a refused connection's 0.1 ms says nothing about the server.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::probe::{Outcome, Reason};

/// Relative width of a latency bucket.
const BUCKET_GROWTH: f64 = 1.01;

/// Buckets up to about 1000 s in microseconds (1.01^2100 ≈ 1.2e9 µs); slower
/// tries land in the last bucket, their exact value still shows as max.
const BUCKETS: usize = 2100;

/// Everything the summary reports.
#[derive(Clone, Debug)]
pub struct Stats {
    pub tries: u64,
    pub successes: u64,
    failures: BTreeMap<Reason, u64>,
    latency: LatencyHistogram,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            tries: 0,
            successes: 0,
            failures: BTreeMap::new(),
            latency: LatencyHistogram::new(),
        }
    }
}

impl Stats {
    pub fn record(&mut self, outcome: &Outcome) {
        self.tries += 1;
        match &outcome.result {
            Ok(()) => {
                self.successes += 1;
                self.latency.observe(outcome.latency);
            }
            Err(failure) => *self.failures.entry(failure.reason).or_default() += 1,
        }
    }

    pub fn failures(&self) -> u64 {
        self.tries - self.successes
    }

    /// Failure counts by reason as printed (`status 503`), in a stable order.
    pub fn failures_by_reason(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        self.failures
            .iter()
            .map(|(reason, count)| (*reason, *count))
    }

    /// The latency of successful tries at quantile `q` (0..=1), if there was one.
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        self.latency.quantile(q)
    }

    /// The summary, two or three lines, for stderr at exit:
    ///
    /// ```text
    /// --- http://localhost:80/ ---
    /// 10 tries, 8 ok, 2 failed (refused 1, status 503 1)
    /// latency ms (ok tries): min 0.412 p50 0.520 p90 0.801 p99 1.204 max 1.204
    /// ```
    pub fn summary(&self, url: &str) -> String {
        let mut out = format!("--- {url} ---\n");
        let _ = write!(
            out,
            "{} tries, {} ok, {} failed",
            self.tries,
            self.successes,
            self.failures()
        );
        if !self.failures.is_empty() {
            let parts: Vec<String> = self
                .failures_by_reason()
                .map(|(reason, count)| format!("{reason} {count}"))
                .collect();
            let _ = write!(out, " ({})", parts.join(", "));
        }
        out.push('\n');
        let figures: Option<Vec<String>> = [
            ("min", 0.0),
            ("p50", 0.5),
            ("p90", 0.9),
            ("p99", 0.99),
            ("max", 1.0),
        ]
        .iter()
        .map(|(name, q)| {
            self.latency_quantile(*q)
                .map(|latency| format!("{name} {:.3}", latency.as_secs_f64() * 1000.0))
        })
        .collect();
        match figures {
            Some(figures) => {
                let _ = writeln!(out, "latency ms (ok tries): {}", figures.join(" "));
            }
            None => out.push_str("latency ms (ok tries): none\n"),
        }
        out
    }
}

/// Counts of latencies in 1 %-wide log-scale buckets, with exact min and max.
#[derive(Clone, Debug)]
struct LatencyHistogram {
    buckets: Vec<u64>,
    count: u64,
    min: Duration,
    max: Duration,
}

impl LatencyHistogram {
    fn new() -> Self {
        Self {
            buckets: vec![0; BUCKETS],
            count: 0,
            min: Duration::MAX,
            max: Duration::ZERO,
        }
    }

    fn index(latency: Duration) -> usize {
        let micros = (latency.as_secs_f64() * 1e6).max(1.0);
        let index = (micros.ln() / BUCKET_GROWTH.ln()).ceil();
        (index as usize).min(BUCKETS - 1)
    }

    fn observe(&mut self, latency: Duration) {
        self.buckets[Self::index(latency)] += 1;
        self.count += 1;
        self.min = self.min.min(latency);
        self.max = self.max.max(latency);
    }

    /// The smallest bucket bound below which a fraction `q` of the tries fall
    /// (nearest-rank), clamped to the exact min and max.
    fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        if q <= 0.0 {
            return Some(self.min);
        }
        if q >= 1.0 {
            return Some(self.max);
        }
        let rank = ((q * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let micros = BUCKET_GROWTH.powi(index as i32);
                let bound = Duration::from_secs_f64(micros / 1e6);
                return Some(bound.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Failure;

    fn outcome(millis: u64, result: Result<(), Reason>) -> Outcome {
        Outcome {
            status: Some(200),
            latency: Duration::from_millis(millis),
            redirects: 0,
            unfollowed: None,
            result: result.map_err(|reason| Failure {
                reason,
                detail: String::new(),
            }),
        }
    }

    fn close(actual: Duration, expected_ms: f64) -> bool {
        let actual_ms = actual.as_secs_f64() * 1000.0;
        (actual_ms - expected_ms).abs() <= expected_ms * 0.011
    }

    #[test]
    fn percentiles_are_within_one_percent() {
        let mut stats = Stats::default();
        for millis in 1..=100 {
            stats.record(&outcome(millis, Ok(())));
        }
        assert_eq!(stats.latency_quantile(0.0), Some(Duration::from_millis(1)));
        assert_eq!(
            stats.latency_quantile(1.0),
            Some(Duration::from_millis(100))
        );
        for (q, expected) in [(0.5, 50.0), (0.9, 90.0), (0.99, 99.0)] {
            let actual = stats.latency_quantile(q).unwrap();
            assert!(close(actual, expected), "p{q}: {actual:?}");
        }
    }

    #[test]
    fn one_try_is_exact_at_every_quantile() {
        let mut stats = Stats::default();
        stats.record(&outcome(7, Ok(())));
        for q in [0.0, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(stats.latency_quantile(q), Some(Duration::from_millis(7)));
        }
    }

    #[test]
    fn failures_count_by_reason_and_not_in_latency() {
        let mut stats = Stats::default();
        stats.record(&outcome(10, Ok(())));
        stats.record(&outcome(1, Err(Reason::Refused)));
        stats.record(&outcome(2000, Err(Reason::Timeout)));
        stats.record(&outcome(5, Err(Reason::Status(503))));
        stats.record(&outcome(5, Err(Reason::Status(503))));
        assert_eq!(stats.tries, 5);
        assert_eq!(stats.successes, 1);
        assert_eq!(stats.failures(), 4);
        assert_eq!(stats.latency_quantile(1.0), Some(Duration::from_millis(10)));
        let summary = stats.summary("http://web/");
        assert_eq!(
            summary,
            "--- http://web/ ---\n\
             5 tries, 1 ok, 4 failed (refused 1, timeout 1, status 503 2)\n\
             latency ms (ok tries): min 10.000 p50 10.000 p90 10.000 p99 10.000 max 10.000\n"
        );
    }

    #[test]
    fn summary_without_successes_says_so() {
        let mut stats = Stats::default();
        stats.record(&outcome(1, Err(Reason::Dns)));
        assert!(
            stats
                .summary("http://x/")
                .ends_with("1 tries, 0 ok, 1 failed (dns 1)\nlatency ms (ok tries): none\n")
        );
    }

    #[test]
    fn huge_latencies_stay_in_bounds() {
        let mut stats = Stats::default();
        stats.record(&outcome(10_000_000, Ok(())));
        stats.record(&outcome(0, Ok(())));
        assert_eq!(
            stats.latency_quantile(1.0),
            Some(Duration::from_millis(10_000_000))
        );
        assert_eq!(stats.latency_quantile(0.0), Some(Duration::ZERO));
    }
}
