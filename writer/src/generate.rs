//! The writing loop: one plain thread per target, paced by absolute deadlines.
//!
//! Burst `b` (0-based, `K` lines each) is due at `start + b * K / rate`; a
//! thread that wakes late writes every line already due in one batch, so the
//! schedule never drifts and the count over a window is exact (10 s at 1000
//! lines/s is 10 000 lines) as long as the disk keeps up. The lab's
//! `--interval 5s` is the same loop at one line per 5 s. At `--rate 0` there
//! is no schedule: batches of [`BATCH_BYTES`] as fast as `write(2)` goes.
//!
//! The hot path is synchronous on purpose: a batch is rendered into one reused
//! buffer ([`crate::format`]) and handed to one `write(2)`; no allocation,
//! no task switch per line. A stop request ([`Stop`]) is seen between two
//! writes and wakes a sleeping thread at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::format::{Renderer, Source};
use crate::target::Output;

/// Largest batch written at once when behind schedule or at full speed:
/// large enough to amortise the system call, small enough that a stop
/// request is seen within microseconds.
pub const BATCH_BYTES: usize = 64 * 1024;

/// When lines are due.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plan {
    /// Seconds between two bursts; `None`: as fast as possible.
    pub period: Option<f64>,
    /// Lines per burst, written in one `write(2)`.
    pub burst: u64,
    /// Stop after this many lines.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
}

/// What one target's thread did.
#[derive(Clone, Debug)]
pub struct TargetReport {
    pub name: String,
    pub path: String,
    pub lines: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub rotations: u64,
    /// Times the file was opened again (SIGHUP, late rotations).
    pub reopens: u64,
}

/// A stop flag threads can poll cheaply and sleep on.
#[derive(Debug, Default)]
pub struct Stop {
    requested: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Stop {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn trigger(&self) {
        self.requested.store(true, Ordering::SeqCst);
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.wake.notify_all();
    }

    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }

    /// Sleeps until `deadline`; returns `true` when woken by a stop request.
    pub fn sleep_until(&self, deadline: Instant) -> bool {
        let mut guard = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        loop {
            // Checked under the lock: trigger() sets the flag before taking
            // it, so a trigger cannot slip between this check and the wait.
            if self.requested.load(Ordering::SeqCst) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = match self.wake.wait_timeout(guard, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// One target's writer: its file, its content and its renderer.
pub struct Worker {
    pub output: Output,
    pub source: Source,
    pub renderer: Renderer,
    pub path: String,
}

impl Worker {
    /// Writes lines per `plan` until done, stopped, or a write fails.
    pub fn run(mut self, plan: &Plan, stop: &Stop) -> anyhow::Result<TargetReport> {
        let start = Instant::now();
        let end = plan.duration.map(|d| start + d);
        let limit = plan.count.unwrap_or(u64::MAX);
        let burst = plan.burst.max(1);
        let mut buffer = Vec::with_capacity(BATCH_BYTES + 4096);
        let mut written = 0u64;
        let mut bytes = 0u64;
        while written < limit && !stop.is_requested() {
            let now = Instant::now();
            let past_end = end.is_some_and(|end| now >= end);
            let due = match (plan.period, plan.duration) {
                (None, _) if past_end => break,
                (None, _) => limit,
                // At the end, every burst due before it is still written, so
                // a window holds exactly duration * rate lines. (The epsilon
                // keeps 10 s / 10 µs from rounding up to one burst more.)
                (Some(period), Some(duration)) if past_end => {
                    let bursts = (duration.as_secs_f64() / period - 1e-9).ceil() as u64;
                    bursts.saturating_mul(burst).min(limit)
                }
                (Some(period), _) => {
                    let bursts = ((now - start).as_secs_f64() / period).floor() as u64 + 1;
                    bursts.saturating_mul(burst).min(limit)
                }
            };
            if due <= written && past_end {
                break;
            }
            if due <= written {
                let period = plan.period.unwrap_or_default();
                let next = start + Duration::from_secs_f64((written / burst) as f64 * period);
                let wake = end.map_or(next, |end| next.min(end));
                if stop.sleep_until(wake) {
                    break;
                }
                continue;
            }
            self.renderer.set_time(Timestamp::now());
            buffer.clear();
            let cap = self
                .output
                .room()
                .map_or(BATCH_BYTES, |room| (room as usize).clamp(1, BATCH_BYTES));
            let mut seq = written;
            while seq < due {
                let (mark, mark_seq) = (buffer.len(), seq);
                let burst_end = (seq + burst).min(due);
                while seq < burst_end {
                    seq += 1;
                    self.renderer.render(&mut buffer, &mut self.source, seq);
                }
                if buffer.len() > cap && mark > 0 {
                    // This burst goes in the next write (after a rotation, if
                    // that is what the cap is for): un-render it.
                    buffer.truncate(mark);
                    seq = mark_seq;
                    break;
                }
                if buffer.len() == cap {
                    break;
                }
            }
            self.output.write_lines(&buffer)?;
            written = seq;
            bytes += buffer.len() as u64;
            if past_end {
                // One last batch only: a writer that fell behind stops on time.
                break;
            }
        }
        Ok(TargetReport {
            name: self.source.name().to_owned(),
            path: self.path,
            lines: written,
            bytes,
            elapsed: start.elapsed(),
            rotations: self.output.rotations,
            reopens: self.output.reopens,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Format, LOAD_LAYOUT, Layout};
    use sidecar_common::clock::TimeFormat;

    fn worker(path: &std::path::Path) -> Worker {
        Worker {
            output: Output::open(path, false, None).unwrap(),
            source: Source::new("app", None),
            renderer: Renderer::new(
                Format::Text,
                Layout::parse(LOAD_LAYOUT).unwrap(),
                TimeFormat::Date,
                None,
            ),
            path: path.display().to_string(),
        }
    }

    #[test]
    fn full_speed_with_a_count_writes_exactly_that_many_numbered_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let plan = Plan {
            period: None,
            burst: 1,
            count: Some(20_000),
            duration: None,
        };
        let report = worker(&path).run(&plan, &Stop::new()).unwrap();
        assert_eq!(report.lines, 20_000);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(report.bytes, text.len() as u64);
        for (index, line) in text.lines().enumerate() {
            assert_eq!(
                crate::markers::find(line.as_bytes()).unwrap().seq,
                index as u64 + 1
            );
        }
    }

    #[test]
    fn a_stop_request_ends_a_sleeping_worker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let plan = Plan {
            period: Some(3600.0),
            burst: 1,
            count: None,
            duration: None,
        };
        let stop = Stop::new();
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| worker(&path).run(&plan, &stop).unwrap());
            // The first line is written at once; then the worker sleeps an hour.
            testkit::eventually("the first line", || {
                std::fs::read_to_string(&path).is_ok_and(|text| text.ends_with('\n'))
            });
            stop.trigger();
            assert_eq!(handle.join().unwrap().lines, 1);
        });
    }

    #[test]
    fn bursts_are_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let plan = Plan {
            period: Some(0.001),
            burst: 7,
            count: Some(21),
            duration: None,
        };
        let report = worker(&path).run(&plan, &Stop::new()).unwrap();
        assert_eq!(report.lines, 21);
    }

    #[test]
    fn a_duration_window_holds_exactly_duration_times_rate_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        // 2000 lines/s for 50 ms: lines due at 0, 0.5 ms, ... 49.5 ms.
        let plan = Plan {
            period: Some(0.0005),
            burst: 1,
            count: None,
            duration: Some(Duration::from_millis(50)),
        };
        let report = worker(&path).run(&plan, &Stop::new()).unwrap();
        assert_eq!(report.lines, 100);
    }
}
