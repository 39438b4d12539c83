//! The load report printed at exit: per target and in total, lines, bytes,
//! elapsed time and the rate achieved, as text or one JSON object.

use std::fmt::Write as _;

use serde_json::json;

use crate::generate::TargetReport;

/// The figures of one run.
#[derive(Clone, Debug)]
pub struct Report {
    pub targets: Vec<TargetReport>,
}

fn per_second(amount: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        amount as f64 / seconds
    } else {
        0.0
    }
}

impl Report {
    pub fn new(targets: Vec<TargetReport>) -> Self {
        Self { targets }
    }

    fn totals(&self) -> (u64, u64, f64) {
        let lines = self.targets.iter().map(|t| t.lines).sum();
        let bytes = self.targets.iter().map(|t| t.bytes).sum();
        let elapsed = self
            .targets
            .iter()
            .map(|t| t.elapsed.as_secs_f64())
            .fold(0.0, f64::max);
        (lines, bytes, elapsed)
    }

    /// One line per target and a total, for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for t in &self.targets {
            let seconds = t.elapsed.as_secs_f64();
            let _ = writeln!(
                out,
                "writer: {}: {} lines, {} bytes in {:.3} s = {:.1} lines/s, {:.2} MB/s ({}, {} rotations, {} reopens)",
                t.name,
                t.lines,
                t.bytes,
                seconds,
                per_second(t.lines, seconds),
                per_second(t.bytes, seconds) / 1e6,
                t.path,
                t.rotations,
                t.reopens
            );
        }
        let (lines, bytes, seconds) = self.totals();
        let _ = writeln!(
            out,
            "writer: total: {lines} lines, {bytes} bytes in {seconds:.3} s = {:.1} lines/s, {:.2} MB/s",
            per_second(lines, seconds),
            per_second(bytes, seconds) / 1e6
        );
        out
    }

    /// One JSON object, for scripts (`--report json`, `--report-file`).
    pub fn to_json(&self) -> serde_json::Value {
        let targets: Vec<_> = self
            .targets
            .iter()
            .map(|t| {
                let seconds = t.elapsed.as_secs_f64();
                json!({
                    "target": t.name,
                    "path": t.path,
                    "lines": t.lines,
                    "bytes": t.bytes,
                    "elapsed_s": seconds,
                    "lines_per_s": per_second(t.lines, seconds),
                    "bytes_per_s": per_second(t.bytes, seconds),
                    "rotations": t.rotations,
                    "reopens": t.reopens,
                })
            })
            .collect();
        let (lines, bytes, seconds) = self.totals();
        json!({
            "targets": targets,
            "total": {
                "lines": lines,
                "bytes": bytes,
                "elapsed_s": seconds,
                "lines_per_s": per_second(lines, seconds),
                "bytes_per_s": per_second(bytes, seconds),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn target(name: &str, lines: u64, seconds: u64) -> TargetReport {
        TargetReport {
            name: name.into(),
            path: format!("/tmp/{name}.log"),
            lines,
            bytes: lines * 100,
            elapsed: Duration::from_secs(seconds),
            rotations: 0,
            reopens: 0,
        }
    }

    #[test]
    fn totals_add_lines_over_the_longest_elapsed_time() {
        let report = Report::new(vec![target("app", 1000, 10), target("error", 500, 5)]);
        let json = report.to_json();
        assert_eq!(json["targets"][0]["lines_per_s"], 100.0);
        assert_eq!(json["total"]["lines"], 1500);
        assert_eq!(json["total"]["lines_per_s"], 150.0);
        let text = report.to_text();
        assert!(
            text.contains("writer: app: 1000 lines, 100000 bytes in 10.000 s = 100.0 lines/s"),
            "{text}"
        );
        assert!(text.contains("writer: total: 1500 lines"), "{text}");
    }
}
