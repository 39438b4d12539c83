//! The load test's table and the legend of the command lines it ran.

use std::fmt::Write as _;

use super::local::FollowerKind;
use super::{Rotation, Row, rate_label};

pub(super) fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:>6} {:<9} {:<15} {:>9} {:>8} {:>8} {:>9} {:>7} {:>7} {:>5} {:>5} {:>5} {:>7} {:>14} {:>16} {:>7}\n",
        "STEP",
        "ROTATE",
        "FOLLOWER",
        "OFFERED/S",
        "WRITTEN",
        "SEEN",
        "DELIV/S",
        "LOST",
        "WINDOW",
        "DUP",
        "CPU_S",
        "CPU%",
        "RSS_KiB",
        "LAG_MS p50/p99/max",
        "LAG_LINES p50/p99/max",
        "DRAIN_S"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:>6} {:<9} {:<15} {:>9.0} {:>8} {:>8} {:>9.0} {:>7} {:>7} {:>5} {:>5.2} {:>5.1} {:>7} {:>14} {:>21} {:>7.2}",
            rate_label(r.rate),
            r.rotation.label(),
            r.follower,
            r.offered,
            r.written,
            r.lines,
            r.delivered,
            r.lost,
            r.window,
            r.duplicated,
            r.cpu_s,
            r.cpu_share * 100.0,
            r.peak_rss_kib,
            format!(
                "{:.0}/{:.0}/{:.0}",
                r.lag.p50_ms, r.lag.p99_ms, r.lag.max_ms
            ),
            format!(
                "{}/{}/{}",
                r.lag.p50_lines, r.lag.p99_lines, r.lag.max_lines
            ),
            r.drain_s
        );
    }
    out
}

/// Which command line each follower ran, per rotation mode.
pub(super) fn legend(followers: &[FollowerKind], rotations: &[Rotation]) -> String {
    let mut out = String::new();
    for follower in followers {
        let mut seen: Vec<String> = Vec::new();
        for &rotation in rotations {
            let invocation = follower.invocation(rotation);
            if let Some(existing) = seen
                .iter_mut()
                .find(|s| s.starts_with(&format!("{invocation}    ")))
            {
                existing.push_str(&format!(", {}", rotation.label()));
                continue;
            }
            seen.push(format!("{invocation}    rotation: {}", rotation.label()));
        }
        for line in seen {
            let _ = writeln!(out, "  {:<15} {}", follower.name, line);
        }
    }
    format!(
        "\nInvocations (FILE = the step's app.log):\n{}",
        out.replace("app.log", "FILE")
    )
}
