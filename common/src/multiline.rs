//! Joining continuation lines into one record (`--multiline-start REGEX`),
//! shared by the adapter and the log aggregator.
//!
//! A record starts with a line that matches the start pattern; every line
//! that does not match is a continuation of the record before it (a Java
//! stack trace under its log line). The joiner is synchronous and takes the
//! time as an argument, so it is driven by whatever loop reads the lines and
//! tested without clocks:
//!
//! - [`Multiline::push`] returns the *previous* record once a new start line
//!   arrives (the record is only known to be complete then);
//! - [`Multiline::flush_due`] returns the pending record when no line was
//!   added to it for `timeout` (the last record of a quiet file must not wait
//!   for the next start line forever);
//! - [`Multiline::finish`] returns whatever is pending, at end of input.
//!
//! Invariants: lines of one record are joined with `\n`, in arrival order;
//! a line pushed before any start line was seen starts a record of its own
//! (nothing is dropped); a record never exceeds `max_record_bytes`: bytes
//! past the bound are discarded and the record is flagged
//! ([`Multiline::take_truncated`]) so the caller can count it.

use std::time::{Duration, Instant};

use regex::bytes::Regex;

/// Joins lines into records that begin with a line matching a start pattern.
#[derive(Debug)]
pub struct Multiline {
    start: Regex,
    max_record_bytes: usize,
    pending: Vec<u8>,
    has_pending: bool,
    last_push: Option<Instant>,
    /// Records cut at `max_record_bytes` since the last `take_truncated`.
    truncated: u64,
    pending_truncated: bool,
}

impl Multiline {
    /// A joiner for records starting with a line matching `start`, each at
    /// most `max_record_bytes` long (at least 1).
    pub fn new(start: Regex, max_record_bytes: usize) -> Self {
        Self {
            start,
            max_record_bytes: max_record_bytes.max(1),
            pending: Vec::new(),
            has_pending: false,
            last_push: None,
            truncated: 0,
            pending_truncated: false,
        }
    }

    /// Adds one line (without its newline). Returns the previous record when
    /// `line` starts a new one.
    pub fn push(&mut self, line: &[u8], now: Instant) -> Option<Vec<u8>> {
        let starts = self.start.is_match(line);
        let completed = if starts || !self.has_pending {
            self.take_pending()
        } else {
            None
        };
        if self.has_pending {
            self.append(b"\n");
        }
        self.has_pending = true;
        self.append(line);
        self.last_push = Some(now);
        completed
    }

    /// Returns the pending record when nothing was added to it for `timeout`.
    pub fn flush_due(&mut self, now: Instant, timeout: Duration) -> Option<Vec<u8>> {
        let last = self.last_push?;
        if self.has_pending && now.saturating_duration_since(last) >= timeout {
            self.take_pending()
        } else {
            None
        }
    }

    /// When the pending record is due for a flush, if there is one: the
    /// caller's next wake-up.
    pub fn deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.has_pending {
            self.last_push.map(|last| last + timeout)
        } else {
            None
        }
    }

    /// Returns whatever record is pending (end of input).
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        self.take_pending()
    }

    /// How many records were cut at the bound since the last call.
    pub fn take_truncated(&mut self) -> u64 {
        std::mem::take(&mut self.truncated)
    }

    fn append(&mut self, bytes: &[u8]) {
        let room = self.max_record_bytes.saturating_sub(self.pending.len());
        if bytes.len() > room {
            self.pending.extend_from_slice(&bytes[..room]);
            if !self.pending_truncated {
                self.pending_truncated = true;
                self.truncated += 1;
            }
        } else {
            self.pending.extend_from_slice(bytes);
        }
    }

    fn take_pending(&mut self) -> Option<Vec<u8>> {
        if !self.has_pending {
            return None;
        }
        self.has_pending = false;
        self.pending_truncated = false;
        self.last_push = None;
        Some(std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joiner(max: usize) -> Multiline {
        Multiline::new(Regex::new(r"^\d{4}-\d{2}-\d{2} ").unwrap(), max)
    }

    #[test]
    fn java_stack_trace_is_joined_under_its_log_line() {
        let now = Instant::now();
        let mut lines = joiner(1 << 20);
        assert_eq!(lines.push(b"2026-11-25 14:01:13 ERROR boom", now), None);
        assert_eq!(
            lines.push(b"java.lang.IllegalStateException: bad", now),
            None
        );
        assert_eq!(
            lines.push(b"\tat com.example.App.run(App.java:42)", now),
            None
        );
        assert_eq!(
            lines.push(b"\tat com.example.App.main(App.java:7)", now),
            None
        );
        let record = lines.push(b"2026-11-25 14:01:14 INFO next", now).unwrap();
        assert_eq!(
            record,
            b"2026-11-25 14:01:13 ERROR boom\njava.lang.IllegalStateException: bad\n\
              \tat com.example.App.run(App.java:42)\n\tat com.example.App.main(App.java:7)"
                .to_vec()
        );
        assert_eq!(lines.finish().unwrap(), b"2026-11-25 14:01:14 INFO next");
        assert_eq!(lines.finish(), None);
    }

    #[test]
    fn a_quiet_record_is_flushed_after_the_timeout_only() {
        let start = Instant::now();
        let timeout = Duration::from_secs(1);
        let mut lines = joiner(1 << 20);
        lines.push(b"2026-11-25 14:01:13 ERROR boom", start);
        lines.push(b"\tat x", start + Duration::from_millis(500));
        assert_eq!(
            lines.deadline(timeout),
            Some(start + Duration::from_millis(1500))
        );
        assert_eq!(
            lines.flush_due(start + Duration::from_millis(1499), timeout),
            None
        );
        assert_eq!(
            lines
                .flush_due(start + Duration::from_millis(1500), timeout)
                .unwrap(),
            b"2026-11-25 14:01:13 ERROR boom\n\tat x"
        );
        assert_eq!(lines.deadline(timeout), None);
        assert_eq!(lines.flush_due(start + timeout * 10, timeout), None);
    }

    #[test]
    fn lines_before_the_first_start_line_form_a_record_of_their_own() {
        let now = Instant::now();
        let mut lines = joiner(1 << 20);
        assert_eq!(lines.push(b"\tat orphan.continuation", now), None);
        assert_eq!(lines.push(b"\tat another", now), None);
        assert_eq!(
            lines.push(b"2026-11-25 14:01:13 INFO first", now).unwrap(),
            b"\tat orphan.continuation\n\tat another"
        );
    }

    #[test]
    fn records_are_cut_at_the_bound_and_counted_once() {
        let now = Instant::now();
        let mut lines = joiner(40);
        lines.push(b"2026-11-25 14:01:13 ERROR boom", now); // 30 bytes
        lines.push(b"continuation one", now);
        lines.push(b"continuation two", now);
        let record = lines.push(b"2026-11-25 14:01:14 INFO x", now).unwrap();
        assert_eq!(record.len(), 40);
        assert_eq!(record, b"2026-11-25 14:01:13 ERROR boom\ncontinuat");
        assert_eq!(lines.take_truncated(), 1);
        assert_eq!(lines.take_truncated(), 0);
        assert_eq!(lines.finish().unwrap(), b"2026-11-25 14:01:14 INFO x");
    }

    #[test]
    fn empty_lines_are_kept_as_continuations() {
        let now = Instant::now();
        let mut lines = joiner(1 << 20);
        lines.push(b"2026-11-25 14:01:13 INFO a", now);
        lines.push(b"", now);
        lines.push(b"b", now);
        assert_eq!(lines.finish().unwrap(), b"2026-11-25 14:01:13 INFO a\n\nb");
    }
}
