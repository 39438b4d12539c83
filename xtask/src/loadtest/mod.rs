//! `cargo xtask loadtest`: how many lines per second can a follower take,
//! how far behind the writer is it, and does it lose or repeat any line?
//!
//! Modules by job: `local` runs the steps as local processes, `pod` plays
//! deploy/loadtest with podman, `lag` turns samples into lag figures,
//! `report` prints the table and `plot` draws the SVG.
//!
//! # Local processes (default)
//! For each step (an offered rate and a rotation mode: none, rename or
//! copytruncate) a fresh temp directory gets an empty `app.log`; every
//! follower is started on it side by side, each with its stdout captured to
//! its own file:
//! - ours, `log-aggregator --follow`, invoked as the docs recommend for
//!   rotation: on the glob `app.log*`, which includes the rotated names, so
//!   a file renamed away is still found and read to its end however fast the
//!   renames come (the follower knows a file by its content, whatever its
//!   name). With
//!   copytruncate the rotated files are copies (new inodes holding lines
//!   already read), so there it follows the plain path, as Vector and Fluent
//!   Bit are told to exclude copytruncate's copies;
//! - the lab's busybox `tail -f app.log` and GNU `tail -n +1 -F app.log`
//!   (they cannot follow a glob).
//!
//! Once every follower has the file open (seen in `/proc/PID/fd`), `writer
//! --rate R` writes numbered lines for the step's duration (the max step is
//! bounded by a line count instead). While it runs, every [`SAMPLE_EVERY`]
//! the highest sequence number each follower has written to its stdout is
//! compared with the writer's latest (the last line of `app.log`, or of
//! `app.log.1` just after a rotation): the difference is the lag in lines,
//! and the age of the oldest line not yet delivered (interpolated on the
//! writer's timeline) is the lag in ms. Afterwards each capture is watched
//! until it holds every line or stops growing (the drain); CPU time and peak
//! RSS come from `/proc/PID/stat` and `/proc/PID/status`, and `writer
//! verify --expect` counts lost and duplicated lines.
//!
//! Pass/fail: the run fails if ours repeated a line in any step, or lost
//! one with no rotation or rename rotation. Copytruncate's losses are its
//! documented window (lines written between the copy and the truncation are
//! in no file a follower reads; see docs/rotation-matrix.md), reported as
//! WINDOW and never failed on. busybox and GNU tail are measured, not judged.
//!
//! # In a pod (`--pod`)
//! Plays deploy/loadtest (writer at `WRITER_RATE` + log-aggregator in stream
//! mode on a glob, sharing an emptyDir) with podman, through the same engine
//! settings and image tags as `cargo xtask lab`; samples `podman stats` of
//! the aggregator while the writer runs, then checks `podman logs` of the
//! aggregator with `writer verify` (run from the writer image) and removes
//! the pod, also on failure.

mod lag;
mod local;
mod plot;
mod pod;
mod report;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

#[derive(clap::Args)]
pub struct LoadtestArgs {
    /// The short version for CI: 2 s per step, 200 000 lines at max rate,
    /// no plot written; exits 1 on any lost or repeated line of ours.
    #[arg(long)]
    quick: bool,

    /// Offered rates in lines/s, in order; 0 = as fast as the writer goes.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000,0")]
    rates: Vec<u64>,

    /// Rotation modes; every rate is run with each.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "none,rename,copytruncate"
    )]
    rotations: Vec<Rotation>,

    /// Rotate at this size [default: a quarter of what the step writes,
    /// between 64 KiB and 4 MB, so every step rotates a few times].
    #[arg(long, value_name = "BYTES")]
    rotate_size: Option<String>,

    /// Seconds each rated step writes [default: 5, 2 with --quick].
    #[arg(long, value_name = "SECONDS")]
    step_seconds: Option<f64>,

    /// Lines of the max-rate step [default: 2000000, 200000 with --quick].
    #[arg(long, value_name = "N")]
    max_lines: Option<u64>,

    /// Followers to compare: log-aggregator (ours on the glob `app.log*`),
    /// log-aggregator-path (ours on the plain path, measured, not judged),
    /// busybox, gnu-tail.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "log-aggregator,busybox,gnu-tail"
    )]
    followers: Vec<String>,

    /// Where the plot goes, relative to the workspace root [default:
    /// docs/loadtest.svg; none with --quick].
    #[arg(long)]
    svg: Option<PathBuf>,

    /// Use the `writer` and `log-aggregator` binaries in this directory
    /// instead of building the release binaries.
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,

    /// Play the deploy/loadtest pod with podman instead of local processes.
    #[arg(long)]
    pod: bool,

    /// --pod: the writer's rate (WRITER_RATE), lines/s.
    #[arg(long, default_value_t = 5000, value_name = "N")]
    pod_rate: u64,

    /// --pod: how long the writer writes (WRITER_DURATION), seconds.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pod_seconds: u64,

    /// --pod: use the images as they are (`cargo xtask images` builds them).
    #[arg(long)]
    no_build: bool,
}

/// How the writer rotates its file during a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Rotation {
    None,
    Rename,
    Copytruncate,
}

impl Rotation {
    fn label(self) -> &'static str {
        match self {
            Rotation::None => "none",
            Rotation::Rename => "rename",
            Rotation::Copytruncate => "copytrunc",
        }
    }
}

/// How long a follower's capture may stay still before it is judged done.
const QUIET: Duration = Duration::from_secs(3);

/// The longest a follower gets to drain after the writer stopped.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// One follower's figures in one step.
#[derive(Clone, Debug)]
struct Row {
    rate: u64,
    rotation: Rotation,
    follower: String,
    offered: f64,
    written: u64,
    delivered: f64,
    lines: u64,
    /// Lost lines outside copytruncate's window (judged).
    lost: u64,
    /// Lost lines in a copytruncate step (its documented window).
    window: u64,
    duplicated: u64,
    cpu_s: f64,
    cpu_share: f64,
    peak_rss_kib: u64,
    lag: LagStats,
    drain_s: f64,
    judged: bool,
}

/// Lag percentiles over the samples taken while the writer ran.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct LagStats {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    p50_lines: u64,
    p99_lines: u64,
    max_lines: u64,
}

pub fn run(args: LoadtestArgs) -> anyhow::Result<()> {
    if args.pod {
        pod::run(&args)
    } else {
        local::run(&args)
    }
}

/// Reads `writer verify --report json`'s output: (lines seen, lost, duplicated).
fn verify_report(stdout: &[u8], stderr: &[u8], expect: u64) -> anyhow::Result<(u64, u64, u64)> {
    let report: Value = serde_json::from_slice(stdout).with_context(|| {
        format!(
            "writer verify printed no report: {}",
            String::from_utf8_lossy(stderr)
        )
    })?;
    let target = &report["targets"][0];
    if target.is_null() {
        // Nothing delivered at all: every line is lost.
        return Ok((0, expect, 0));
    }
    let number = |key: &str| target[key].as_u64().unwrap_or(0);
    Ok((number("lines"), number("lost"), number("duplicated")))
}

fn rate_label(rate: u64) -> String {
    if rate == 0 {
        "max".to_owned()
    } else {
        rate.to_string()
    }
}
