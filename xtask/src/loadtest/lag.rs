//! Lag from samples: the writer's sequence numbers over time against the
//! highest one each follower has delivered, as lines behind and as the age
//! of the oldest line not yet delivered.

use std::time::Instant;

use super::LagStats;
use crate::stats::percentile;

/// The `seq=N` marker of a text line written by `writer --rate`.
pub(super) fn seq_of(line: &[u8]) -> Option<u64> {
    let at = line.windows(4).rposition(|w| w == b"seq=")?;
    let digits: Vec<u8> = line[at + 4..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// Lag of each follower sample against the writer's timeline: in lines,
/// the writer's seq at that instant (interpolated between its samples)
/// minus the follower's; in ms, the age of the oldest line not yet delivered
/// (the time since the writer reached the follower's seq + 1).
pub(super) fn lag_stats(timeline: &[(Instant, u64)], samples: &[(Instant, u64)]) -> LagStats {
    let mut lines = Vec::new();
    let mut ms = Vec::new();
    for &(at, delivered) in samples {
        let writer_seq = seq_at(timeline, at);
        if writer_seq == 0 {
            continue;
        }
        lines.push(writer_seq.saturating_sub(delivered));
        let age = match reached_at(timeline, delivered + 1) {
            Some(written_at) if delivered < writer_seq => {
                at.saturating_duration_since(written_at).as_secs_f64() * 1000.0
            }
            _ => 0.0,
        };
        ms.push(age);
    }
    lines.sort_unstable();
    ms.sort_by(f64::total_cmp);
    LagStats {
        p50_ms: percentile(&ms, 0.50).unwrap_or(0.0),
        p99_ms: percentile(&ms, 0.99).unwrap_or(0.0),
        max_ms: ms.last().copied().unwrap_or(0.0),
        p50_lines: percentile(&lines, 0.50).unwrap_or(0),
        p99_lines: percentile(&lines, 0.99).unwrap_or(0),
        max_lines: lines.last().copied().unwrap_or(0),
    }
}

/// The writer's seq at `at`, interpolated linearly between its samples
/// (the last sample's value after it, 0 before the first).
fn seq_at(timeline: &[(Instant, u64)], at: Instant) -> u64 {
    let Some(after) = timeline.iter().position(|&(t, _)| t >= at) else {
        return timeline.last().map_or(0, |&(_, s)| s);
    };
    if after == 0 {
        return if timeline[0].0 == at {
            timeline[0].1
        } else {
            0
        };
    }
    let (t0, s0) = timeline[after - 1];
    let (t1, s1) = timeline[after];
    let span = t1.saturating_duration_since(t0).as_secs_f64();
    let fraction = if span > 0.0 {
        at.saturating_duration_since(t0).as_secs_f64() / span
    } else {
        1.0
    };
    s0 + ((s1 - s0) as f64 * fraction).round() as u64
}

/// When the writer's seq reached `seq`, interpolated linearly between the
/// two samples around it.
fn reached_at(timeline: &[(Instant, u64)], seq: u64) -> Option<Instant> {
    let index = timeline.iter().position(|&(_, s)| s >= seq)?;
    if index == 0 {
        return Some(timeline[0].0);
    }
    let (t0, s0) = timeline[index - 1];
    let (t1, s1) = timeline[index];
    let fraction = (seq - s0) as f64 / (s1 - s0).max(1) as f64;
    Some(t0 + t1.saturating_duration_since(t0).mul_f64(fraction))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn seq_is_read_from_the_writers_text_marker() {
        assert_eq!(
            seq_of(b"Wed Nov 25 14:01:13 UTC 2026 - Hello seq=123 target=app"),
            Some(123)
        );
        assert_eq!(seq_of(b"no marker here"), None);
    }

    #[test]
    fn lag_is_the_age_of_the_oldest_undelivered_line() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // The writer writes 10 lines per 100 ms; the follower is 5 lines
        // (50 ms) behind at every sample, then catches up.
        let timeline = [(at(0), 10), (at(100), 20), (at(200), 30), (at(300), 30)];
        let samples = [(at(0), 5), (at(100), 15), (at(200), 25), (at(300), 30)];
        let lag = lag_stats(&timeline, &samples);
        assert_eq!(lag.max_lines, 5);
        assert_eq!(lag.p50_lines, 5);
        // Seq 16 was reached at 60 ms (between the samples 10 and 20): the
        // oldest undelivered line is 40 ms old at the 100 ms sample.
        assert!((lag.max_ms - 40.0).abs() < 1.0, "{lag:?}");
        assert_eq!(lag.p50_ms, 0.0, "half the samples had nothing undelivered");
    }
}
