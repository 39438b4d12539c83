//! The checker: counts, per target, the sequence numbers seen in a captured
//! stream and reports what was lost, duplicated or reordered.
//!
//! [`Tally::observe`] takes one line at a time (any format, any wrapping: see
//! [`crate::markers`]); [`Tally::summary`] compares what was seen with what a
//! writer wrote, sequence numbers 1, 2, 3... per target. Lines without a marker
//! are counted and a few kept as examples, never silently dropped. Seen
//! numbers are kept in a bitmap (one bit per number), so ten million lines
//! cost about a megabyte; numbers above [`MAX_SEQ`] are counted as invalid
//! rather than allowed to allocate without bound.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::json;

use crate::markers;

/// Highest sequence number tracked (a 256 MiB bitmap at worst).
pub const MAX_SEQ: u64 = 1 << 31;

/// How many lines without a marker are kept to show in the report.
const UNMARKED_EXAMPLES: usize = 3;

/// How many lost ranges a report lists (the count is always complete).
const LISTED_RANGES: usize = 20;

/// What was seen of one target.
#[derive(Debug, Default)]
struct Stream {
    lines: u64,
    seen: Vec<u64>,
    first_seq: Option<u64>,
    max_seq: u64,
    last_seq: u64,
    duplicated: u64,
    out_of_order: u64,
}

impl Stream {
    fn observe(&mut self, seq: u64) {
        self.lines += 1;
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen.len() <= word {
            self.seen.resize((word + 1).next_power_of_two(), 0);
        }
        if self.seen[word] & bit != 0 {
            self.duplicated += 1;
        } else {
            self.seen[word] |= bit;
            if seq < self.last_seq {
                self.out_of_order += 1;
            }
        }
        self.first_seq.get_or_insert(seq);
        self.max_seq = self.max_seq.max(seq);
        self.last_seq = seq;
    }

    fn has(&self, seq: u64) -> bool {
        self.seen
            .get((seq / 64) as usize)
            .is_some_and(|word| word & (1 << (seq % 64)) != 0)
    }
}

/// Counts of a captured stream, fed one line at a time.
#[derive(Debug, Default)]
pub struct Tally {
    streams: BTreeMap<Vec<u8>, Stream>,
    unmarked: u64,
    unmarked_examples: Vec<String>,
    invalid: u64,
}

/// What the seen numbers are compared with.
#[derive(Clone, Debug, Default)]
pub struct Expectation {
    /// Lines each target wrote (`--expect`): numbers up to it must all be seen, none above.
    pub per_target: Option<u64>,
    /// Count losses from each target's first seen number instead of 1, for a
    /// capture that started late (`tail -n 10`, rotated-away files).
    pub from_first: bool,
    /// Targets that must appear (`--expect-target`): one never seen is
    /// reported with every line lost (all of `per_target`), and fails.
    pub targets: Vec<String>,
}

/// The verdict for one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSummary {
    pub target: String,
    pub lines: u64,
    pub first_seq: u64,
    pub max_seq: u64,
    pub lost: u64,
    /// Inclusive ranges of missing numbers, at most [`LISTED_RANGES`].
    pub lost_ranges: Vec<(u64, u64)>,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// Numbers seen above `--expect`.
    pub unexpected: u64,
    /// An expected target (`--expect-target`) of which no line was seen.
    pub missing: bool,
}

impl TargetSummary {
    pub fn ok(&self) -> bool {
        !self.missing && self.lost == 0 && self.duplicated == 0 && self.unexpected == 0
    }

    /// An expected target never seen: all of its `per_target` lines lost.
    fn missing(name: &str, per_target: Option<u64>) -> Self {
        let lost = per_target.unwrap_or(0);
        Self {
            target: name.to_owned(),
            lines: 0,
            first_seq: 0,
            max_seq: 0,
            lost,
            lost_ranges: if lost > 0 {
                vec![(1, lost)]
            } else {
                Vec::new()
            },
            duplicated: 0,
            out_of_order: 0,
            unexpected: 0,
            missing: true,
        }
    }
}

/// The verdict for a whole stream.
#[derive(Clone, Debug)]
pub struct Summary {
    pub targets: Vec<TargetSummary>,
    pub unmarked: u64,
    pub unmarked_examples: Vec<String>,
    pub invalid: u64,
}

impl Summary {
    /// Passes when something was seen and no target lost, repeated or exceeded lines.
    pub fn ok(&self) -> bool {
        !self.targets.is_empty() && self.targets.iter().all(TargetSummary::ok)
    }

    /// One JSON object, as `--report json` prints it.
    pub fn to_json(&self) -> serde_json::Value {
        let targets: Vec<_> = self
            .targets
            .iter()
            .map(|t| {
                json!({
                    "target": t.target,
                    "lines": t.lines,
                    "first_seq": t.first_seq,
                    "max_seq": t.max_seq,
                    "lost": t.lost,
                    "lost_ranges": t.lost_ranges,
                    "duplicated": t.duplicated,
                    "out_of_order": t.out_of_order,
                    "unexpected": t.unexpected,
                    "missing": t.missing,
                    "ok": t.ok(),
                })
            })
            .collect();
        json!({
            "ok": self.ok(),
            "targets": targets,
            "unmarked": self.unmarked,
            "unmarked_examples": self.unmarked_examples,
            "invalid": self.invalid,
        })
    }

    /// A table, one row per target, and the lines without a marker.
    pub fn to_table(&self) -> String {
        let width = self
            .targets
            .iter()
            .map(|t| t.target.len())
            .max()
            .unwrap_or(0)
            .max(6);
        let mut out = format!(
            "{:<width$} {:>10} {:>10} {:>10} {:>10} {:>12}  {}\n",
            "TARGET", "LINES", "MAX_SEQ", "LOST", "DUPLICATED", "OUT_OF_ORDER", "LOST_RANGES"
        );
        for t in &self.targets {
            let _ = writeln!(
                out,
                "{:<width$} {:>10} {:>10} {:>10} {:>10} {:>12}  {}",
                t.target,
                t.lines,
                t.max_seq,
                t.lost,
                t.duplicated,
                t.out_of_order,
                ranges_text(&t.lost_ranges, t.lost)
            );
            if t.missing {
                let _ = writeln!(out, "{}: no line of this target was seen", t.target);
            }
            if t.unexpected > 0 {
                let _ = writeln!(
                    out,
                    "{}: {} lines above the expected count",
                    t.target, t.unexpected
                );
            }
        }
        if self.targets.is_empty() {
            out.push_str("no line carried a seq/target marker\n");
        }
        if self.unmarked > 0 {
            let _ = writeln!(out, "lines without a marker: {}", self.unmarked);
            for example in &self.unmarked_examples {
                let _ = writeln!(out, "  e.g. {example}");
            }
        }
        if self.invalid > 0 {
            let _ = writeln!(
                out,
                "markers with a sequence number above {MAX_SEQ}: {}",
                self.invalid
            );
        }
        let _ = writeln!(out, "{}", if self.ok() { "OK" } else { "FAILED" });
        out
    }
}

fn ranges_text(ranges: &[(u64, u64)], lost: u64) -> String {
    if ranges.is_empty() {
        return "-".to_owned();
    }
    let mut text = ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    let listed: u64 = ranges.iter().map(|&(a, b)| b - a + 1).sum();
    if listed < lost {
        text.push_str(",...");
    }
    text
}

impl Tally {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one line (with or without its newline).
    pub fn observe(&mut self, line: &[u8]) {
        match markers::find(line) {
            Some(marker) if marker.seq <= MAX_SEQ => match self.streams.get_mut(marker.target) {
                Some(stream) => stream.observe(marker.seq),
                None => self
                    .streams
                    .entry(marker.target.to_vec())
                    .or_default()
                    .observe(marker.seq),
            },
            Some(_) => self.invalid += 1,
            None => {
                let trimmed = line.strip_suffix(b"\n").unwrap_or(line);
                if trimmed.is_empty() {
                    return;
                }
                self.unmarked += 1;
                if self.unmarked_examples.len() < UNMARKED_EXAMPLES {
                    self.unmarked_examples.push(
                        String::from_utf8_lossy(&trimmed[..trimmed.len().min(200)]).into_owned(),
                    );
                }
            }
        }
    }

    /// Compares what was seen with `expect`.
    pub fn summary(&self, expect: &Expectation) -> Summary {
        let mut targets: Vec<TargetSummary> = self
            .streams
            .iter()
            .map(|(name, stream)| {
                let first_seq = stream.first_seq.unwrap_or(0);
                let min_seen = (0..=stream.max_seq).find(|&s| stream.has(s)).unwrap_or(0);
                let from = if expect.from_first { min_seen } else { 1 };
                let to = expect.per_target.unwrap_or(stream.max_seq);
                let mut lost = 0;
                let mut lost_ranges = Vec::new();
                let mut seq = from;
                while seq <= to {
                    if stream.has(seq) {
                        seq += 1;
                        continue;
                    }
                    let start = seq;
                    while seq <= to && !stream.has(seq) {
                        seq += 1;
                    }
                    lost += seq - start;
                    if lost_ranges.len() < LISTED_RANGES {
                        lost_ranges.push((start, seq - 1));
                    }
                }
                let unexpected = match expect.per_target {
                    Some(limit) if stream.max_seq > limit => (limit + 1..=stream.max_seq)
                        .filter(|&s| stream.has(s))
                        .count()
                        as u64,
                    _ => 0,
                };
                TargetSummary {
                    target: String::from_utf8_lossy(name).into_owned(),
                    lines: stream.lines,
                    first_seq,
                    max_seq: stream.max_seq,
                    lost,
                    lost_ranges,
                    duplicated: stream.duplicated,
                    out_of_order: stream.out_of_order,
                    unexpected,
                    missing: false,
                }
            })
            .collect();
        for name in &expect.targets {
            if !self.streams.contains_key(name.as_bytes()) {
                targets.push(TargetSummary::missing(name, expect.per_target));
            }
        }
        targets.sort_by(|a, b| a.target.cmp(&b.target));
        targets.dedup_by(|a, b| a.target == b.target);
        Summary {
            targets,
            unmarked: self.unmarked,
            unmarked_examples: self.unmarked_examples.clone(),
            invalid: self.invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(lines: &[&str]) -> Tally {
        let mut tally = Tally::new();
        for line in lines {
            tally.observe(line.as_bytes());
        }
        tally
    }

    fn seqs(target: &str, seqs: impl IntoIterator<Item = u64>) -> Vec<String> {
        seqs.into_iter()
            .map(|s| format!("x seq={s} target={target}"))
            .collect()
    }

    fn of(lines: &[String]) -> Tally {
        tally(&lines.iter().map(String::as_str).collect::<Vec<_>>())
    }

    #[test]
    fn a_complete_stream_passes() {
        let summary = of(&seqs("app", 1..=100)).summary(&Expectation::default());
        assert!(summary.ok());
        assert_eq!(summary.targets[0].lines, 100);
        assert_eq!(summary.targets[0].max_seq, 100);
    }

    #[test]
    fn gaps_are_reported_as_ranges() {
        let lines = seqs("app", (1..=10).chain(14..=20).chain(22..=30));
        let summary = of(&lines).summary(&Expectation::default());
        let app = &summary.targets[0];
        assert_eq!(app.lost, 4);
        assert_eq!(app.lost_ranges, vec![(11, 13), (21, 21)]);
        assert!(!summary.ok());
        assert!(summary.to_table().contains("11-13,21"));
    }

    #[test]
    fn duplicates_and_reordering_are_told_apart() {
        let lines = seqs("app", [1, 2, 3, 3, 5, 4, 6]);
        let app = &of(&lines).summary(&Expectation::default()).targets[0];
        assert_eq!(app.duplicated, 1);
        assert_eq!(app.out_of_order, 1);
        assert_eq!(app.lost, 0);
    }

    #[test]
    fn expect_catches_a_lost_tail_and_extra_lines() {
        let short = of(&seqs("app", 1..=8)).summary(&Expectation {
            per_target: Some(10),
            ..Expectation::default()
        });
        assert_eq!(short.targets[0].lost_ranges, vec![(9, 10)]);
        let long = of(&seqs("app", 1..=12)).summary(&Expectation {
            per_target: Some(10),
            ..Expectation::default()
        });
        assert_eq!(long.targets[0].unexpected, 2);
        assert!(!long.ok());
    }

    #[test]
    fn from_first_forgives_a_late_start() {
        let lines = seqs("app", 50..=60);
        assert_eq!(
            of(&lines).summary(&Expectation::default()).targets[0].lost,
            49
        );
        let late = of(&lines).summary(&Expectation {
            from_first: true,
            ..Expectation::default()
        });
        assert!(late.ok());
    }

    #[test]
    fn targets_are_counted_separately_and_unmarked_lines_kept() {
        let mut lines = seqs("app", 1..=3);
        lines.extend(seqs("error", 1..=2));
        lines.push("=== Application Logs ===".to_owned());
        lines.push(String::new());
        let summary = of(&lines).summary(&Expectation::default());
        assert_eq!(summary.targets.len(), 2);
        assert_eq!(summary.unmarked, 1);
        assert_eq!(summary.unmarked_examples, vec!["=== Application Logs ==="]);
        assert!(summary.ok());
        let json = summary.to_json();
        assert_eq!(json["targets"][1]["target"], "error");
        assert_eq!(json["ok"], true);
    }

    #[test]
    fn an_expected_target_never_seen_counts_every_line_lost() {
        let expect = Expectation {
            per_target: Some(50),
            targets: vec!["app".to_owned(), "error".to_owned()],
            ..Expectation::default()
        };
        let summary = of(&seqs("app", 1..=50)).summary(&expect);
        assert_eq!(summary.targets.len(), 2);
        let error = &summary.targets[1];
        assert_eq!((error.target.as_str(), error.lost), ("error", 50));
        assert_eq!(error.lost_ranges, vec![(1, 50)]);
        assert!(error.missing && !summary.ok());
        assert!(
            summary
                .to_table()
                .contains("error: no line of this target was seen")
        );

        // Without --expect the count is unknown, but a missing target still fails.
        let empty = tally(&[]).summary(&Expectation {
            targets: vec!["app".to_owned()],
            ..Expectation::default()
        });
        assert_eq!(empty.targets[0].lost, 0);
        assert!(!empty.ok());
        assert_eq!(empty.to_json()["targets"][0]["missing"], true);
    }

    #[test]
    fn an_empty_stream_fails() {
        assert!(!tally(&[]).summary(&Expectation::default()).ok());
    }

    #[test]
    fn a_huge_sequence_number_is_invalid_not_an_allocation() {
        let summary =
            tally(&["seq=18446744073709551615 target=app"]).summary(&Expectation::default());
        assert_eq!(summary.invalid, 1);
        assert!(summary.targets.is_empty());
    }
}
