//! `cargo xtask loadtest`: how many lines per second can a follower take,
//! how far behind the writer is it, and does it lose or repeat any line?
//!
//! # Local processes (default)
//! For each step (an offered rate and a rotation mode: none, rename or
//! copytruncate) a fresh temp directory gets an empty `app.log`; every
//! follower is started on it side by side, each with its stdout captured to
//! its own file:
//! - ours, `log-aggregator --follow`, invoked as the docs recommend for
//!   rotation: on the glob `app.log*`, which includes the rotated names, so
//!   a file renamed away is still found and read to its end however fast the
//!   renames come (the follower de-duplicates by (dev, inode)). With
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
//! documented window (common/src/follow/mod.rs: lines written between the
//! copy and the truncation are in no file a follower reads), reported as
//! WINDOW and never failed on. busybox and GNU tail are measured, not judged.
//!
//! # In a pod (`--pod`)
//! Plays deploy/loadtest (writer at `WRITER_RATE` + log-aggregator in stream
//! mode on a glob, sharing an emptyDir) with podman, through the same engine
//! settings and image tags as `cargo xtask lab`; samples `podman stats` of
//! the aggregator while the writer runs, then checks `podman logs` of the
//! aggregator with `writer verify` (run from the writer image) and removes
//! the pod, also on failure.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::util;

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

/// How long a follower that delivered the writer's last line must stay
/// still before it is judged done (a glob follower may still be finishing a
/// rotated file).
const SETTLE: Duration = Duration::from_millis(500);

/// The longest a follower gets to drain after the writer stopped.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// How often lag is sampled while the writer runs.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// How often the captures are read (and the writer's exit checked).
const POLL_EVERY: Duration = Duration::from_millis(10);

/// The follower kinds compared.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ours,
    /// Ours on the plain path, to show what following by name misses.
    OursByName,
    Busybox,
    GnuTail,
}

/// A follower under test.
struct FollowerKind {
    kind: Kind,
    name: &'static str,
    program: PathBuf,
    /// Whether a lost or duplicated line fails the run.
    judged: bool,
}

impl FollowerKind {
    /// The arguments for following `log` under `rotation`.
    fn args(&self, log: &Path, rotation: Rotation) -> Vec<String> {
        let path = log.display().to_string();
        match self.kind {
            Kind::Ours | Kind::OursByName => {
                let mut args: Vec<String> =
                    ["--follow", "--from", "beginning", "--output", "plain"]
                        .map(str::to_owned)
                        .into();
                args.extend(["--log-level".into(), "warn".into()]);
                args.push(
                    if rotation == Rotation::Copytruncate || self.kind == Kind::OursByName {
                        path
                    } else {
                        format!("{path}*")
                    },
                );
                args
            }
            Kind::Busybox => vec!["tail".into(), "-f".into(), path],
            Kind::GnuTail => vec!["-n".into(), "+1".into(), "-F".into(), path],
        }
    }

    /// The invocation as the table's legend shows it.
    fn invocation(&self, rotation: Rotation) -> String {
        let program = match self.kind {
            Kind::Ours | Kind::OursByName => "log-aggregator".to_owned(),
            Kind::Busybox => "busybox".to_owned(),
            Kind::GnuTail => "tail".to_owned(),
        };
        let args = self.args(Path::new("app.log"), rotation);
        let args: Vec<String> = args
            .into_iter()
            .filter(|a| a != "--log-level" && a != "warn")
            .map(|a| if a.contains('*') { format!("'{a}'") } else { a })
            .collect();
        format!("{program} {}", args.join(" "))
    }
}

/// One step of the ramp.
#[derive(Clone)]
struct Step {
    rate: u64,
    rotation: Rotation,
}

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
        return run_pod(&args);
    }
    let started = Instant::now();
    let bin_dir = util::release_bin_dir(args.bin_dir.as_deref(), &["writer", "log-aggregator"])?;
    let writer = bin_dir.join("writer");
    let aggregator = bin_dir.join("log-aggregator");
    let followers = followers(&args.followers, &aggregator)?;
    let seconds = args
        .step_seconds
        .unwrap_or(if args.quick { 2.0 } else { 5.0 });
    let max_lines = args
        .max_lines
        .unwrap_or(if args.quick { 200_000 } else { 2_000_000 });
    let steps: Vec<Step> = args
        .rotations
        .iter()
        .flat_map(|&rotation| args.rates.iter().map(move |&rate| Step { rate, rotation }))
        .collect();
    let root = std::env::temp_dir().join(format!("loadtest-{}", std::process::id()));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let mut rows = Vec::new();
    let outcome = (|| {
        for (index, step) in steps.iter().enumerate() {
            let dir = root.join(format!("step-{index}"));
            std::fs::create_dir_all(&dir)?;
            let lines = if step.rate == 0 {
                max_lines
            } else {
                (step.rate as f64 * seconds) as u64
            };
            let rotate_size = match step.rotation {
                Rotation::None => None,
                _ => Some(
                    args.rotate_size
                        .clone()
                        .unwrap_or_else(|| auto_rotate_size(lines).to_string()),
                ),
            };
            eprintln!(
                "loadtest: step {}/{}: {} lines/s, rotation {}{}",
                index + 1,
                steps.len(),
                rate_label(step.rate),
                step.rotation.label(),
                rotate_size
                    .as_deref()
                    .map(|s| format!(" at {s} bytes"))
                    .unwrap_or_default()
            );
            rows.extend(run_step(
                &writer,
                &followers,
                step,
                rotate_size.as_deref(),
                seconds,
                max_lines,
                &dir,
            )?);
            let _ = std::fs::remove_dir_all(&dir);
        }
        anyhow::Ok(())
    })();
    let _ = std::fs::remove_dir_all(&root);
    outcome?;
    print!("{}", table(&rows));
    print!("{}", legend(&followers, &args.rotations));
    let svg_path = match (&args.svg, args.quick) {
        (Some(path), _) => Some(path.clone()),
        (None, false) => Some(PathBuf::from("docs/loadtest.svg")),
        (None, true) => None,
    };
    if let Some(path) = svg_path {
        let path = util::workspace_root().join(path);
        std::fs::write(&path, svg(&rows)).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("loadtest: plot written to {}", path.display());
    }
    eprintln!("loadtest: took {:.1} s", started.elapsed().as_secs_f64());
    let failed: Vec<_> = rows
        .iter()
        .filter(|r| r.judged && (r.lost > 0 || r.duplicated > 0))
        .collect();
    if let Some(first) = failed.first() {
        bail!(
            "{} lost or repeated lines in {} step(s), first at {} lines/s with rotation {}: \
             {} lost, {} duplicated",
            first.follower,
            failed.len(),
            rate_label(first.rate),
            first.rotation.label(),
            first.lost,
            first.duplicated
        );
    }
    Ok(())
}

/// About four rotations per step: a quarter of the bytes the step writes
/// (lines of about 72 bytes), at least 64 KiB, at most 4 MB.
fn auto_rotate_size(lines: u64) -> u64 {
    (lines * 72 / 4).clamp(64 * 1024, 4_000_000)
}

fn followers(names: &[String], aggregator: &Path) -> anyhow::Result<Vec<FollowerKind>> {
    let mut kinds = Vec::new();
    for name in names {
        match name.as_str() {
            "log-aggregator" => kinds.push(FollowerKind {
                kind: Kind::Ours,
                name: "log-aggregator",
                program: aggregator.to_owned(),
                judged: true,
            }),
            "log-aggregator-path" => kinds.push(FollowerKind {
                kind: Kind::OursByName,
                name: "ours, by name",
                program: aggregator.to_owned(),
                judged: false,
            }),
            "busybox" => {
                if !util::on_path("busybox") {
                    util::apt_install(&["busybox-static"])?;
                }
                kinds.push(FollowerKind {
                    kind: Kind::Busybox,
                    name: "busybox tail -f",
                    program: "busybox".into(),
                    judged: false,
                });
            }
            "gnu-tail" => kinds.push(FollowerKind {
                kind: Kind::GnuTail,
                name: "GNU tail -F",
                program: "tail".into(),
                judged: false,
            }),
            other => bail!(
                "unknown follower {other:?} (use log-aggregator, log-aggregator-path, busybox, gnu-tail)"
            ),
        }
    }
    Ok(kinds)
}

/// A follower running in one step.
struct Running<'a> {
    kind: &'a FollowerKind,
    child: Child,
    capture: PathBuf,
    /// The capture's size at the last look.
    size: u64,
    /// The capture's size when `max_seq` was last read.
    poll_seq: u64,
    /// The highest sequence number delivered so far.
    max_seq: u64,
    /// (time, highest seq delivered) while the writer runs.
    samples: Vec<(Instant, u64)>,
    last_growth: Instant,
    done: bool,
    cpu_s: f64,
    peak_rss_kib: u64,
}

fn run_step(
    writer: &Path,
    followers: &[FollowerKind],
    step: &Step,
    rotate_size: Option<&str>,
    seconds: f64,
    max_lines: u64,
    dir: &Path,
) -> anyhow::Result<Vec<Row>> {
    let log = dir.join("app.log");
    File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut running = Vec::new();
    for (index, kind) in followers.iter().enumerate() {
        let capture = dir.join(format!("capture-{index}.txt"));
        let stdout = File::create(&capture)?;
        let stderr = File::create(dir.join(format!("follower-{index}.err")))?;
        let child = Command::new(&kind.program)
            .args(kind.args(&log, step.rotation))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", kind.name))?;
        running.push(Running {
            kind,
            child,
            capture,
            size: 0,
            poll_seq: 0,
            max_seq: 0,
            samples: Vec::new(),
            last_growth: Instant::now(),
            done: false,
            cpu_s: 0.0,
            peak_rss_kib: 0,
        });
    }
    for follower in &running {
        let pid = follower.child.id();
        util::wait_for(
            &format!("{} to open {}", follower.kind.name, log.display()),
            Duration::from_secs(10),
            || {
                util::has_open(pid, &log)
                    .then_some(())
                    .ok_or_else(|| "not yet".to_owned())
            },
        )?;
    }

    let report = dir.join("report.json");
    let mut command = Command::new(writer);
    command
        .args([
            "--rate",
            &step.rate.to_string(),
            "--report",
            "none",
            "--report-file",
        ])
        .arg(&report);
    if step.rate == 0 {
        command.args(["--count", &max_lines.to_string()]);
    } else {
        command.args(["--duration", &format!("{seconds}s")]);
    }
    if let Some(size) = rotate_size {
        // Rotated files are kept (not deleted): a follower then loses a line
        // only through its own fault, not because the writer deleted a file
        // before anyone could open it (at full speed that takes milliseconds).
        let mode = match step.rotation {
            Rotation::Copytruncate => "copytruncate",
            _ => "rename",
        };
        command.args([
            "--rotate-size",
            size,
            "--rotate-mode",
            mode,
            "--rotate-keep",
            "1000",
        ]);
    }
    command.arg(&log).stdin(Stdio::null());
    eprintln!("+ {}", util::describe(&command));
    let mut child = command.spawn().context("starting writer")?;

    // While the writer runs: every POLL_EVERY each capture is read (so the
    // time of its last growth is exact to that), and every SAMPLE_EVERY the
    // writer's latest seq and each follower's highest delivered seq are
    // sampled, each at its own instant.
    let writer_start = Instant::now();
    let mut timeline: Vec<(Instant, u64)> = Vec::new();
    let mut writer_seq = 0;
    let mut next_sample = writer_start;
    let status = loop {
        let exited = child.try_wait()?;
        for follower in &mut running {
            follower.poll()?;
        }
        if Instant::now() >= next_sample || exited.is_some() {
            next_sample += SAMPLE_EVERY;
            writer_seq = writer_seq.max(writer_latest_seq(&log));
            timeline.push((Instant::now(), writer_seq));
            for follower in &mut running {
                follower.poll()?;
                follower.sample();
                follower.samples.push((Instant::now(), follower.max_seq));
            }
        }
        if let Some(status) = exited {
            break status;
        }
        std::thread::sleep(POLL_EVERY);
    };
    if !status.success() {
        bail!("writer failed with {status}");
    }
    let writer_end = Instant::now();
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(&report).context("reading the writer's report")?,
    )?;
    let written = report["total"]["lines"].as_u64().unwrap_or(0);
    let writer_s = report["total"]["elapsed_s"].as_f64().unwrap_or(0.0);
    let offered = report["total"]["lines_per_s"].as_f64().unwrap_or(0.0);

    // Drain: until every follower has every line or has gone quiet.
    for follower in running.iter_mut().filter(|f| f.size == 0) {
        follower.last_growth = writer_end;
    }
    loop {
        for follower in running.iter_mut().filter(|f| !f.done) {
            follower.poll()?;
            if follower.finished(written) || writer_end.elapsed() > DRAIN_LIMIT {
                follower.done = true;
                follower.measure();
                util::stop(&mut follower.child);
            }
        }
        if running.iter().all(|f| f.done) {
            break;
        }
        std::thread::sleep(POLL_EVERY);
    }

    let mut rows = Vec::new();
    for follower in &running {
        let (lines, lost, duplicated) = verify(writer, &follower.capture, written)?;
        let drain_s = follower
            .last_growth
            .saturating_duration_since(writer_end)
            .as_secs_f64();
        // From the writer's start to this follower's last line (at least
        // the writer's own time).
        let wall = follower
            .last_growth
            .saturating_duration_since(writer_start)
            .as_secs_f64()
            .max(writer_s);
        let (lost, window) = if step.rotation == Rotation::Copytruncate {
            (0, lost)
        } else {
            (lost, 0)
        };
        rows.push(Row {
            rate: step.rate,
            rotation: step.rotation,
            follower: follower.kind.name.to_owned(),
            offered,
            written,
            delivered: lines.saturating_sub(duplicated) as f64 / wall.max(1e-9),
            lines,
            lost,
            window,
            duplicated,
            cpu_s: follower.cpu_s,
            cpu_share: follower.cpu_s / wall.max(1e-9),
            peak_rss_kib: follower.peak_rss_kib,
            lag: lag_stats(&timeline, &follower.samples),
            drain_s,
            judged: follower.kind.judged,
        });
    }
    Ok(rows)
}

impl Drop for Running<'_> {
    /// A step that fails half-way leaves no follower behind.
    fn drop(&mut self) {
        if !self.done {
            util::stop(&mut self.child);
        }
    }
}

impl Running<'_> {
    /// Notes when the capture last grew (a stat: the captures are never
    /// read whole here, `writer verify` counts them afterwards; reading a
    /// follower that repeats gigabytes would slow the sampling of the others).
    fn poll(&mut self) -> anyhow::Result<()> {
        let size = std::fs::metadata(&self.capture)
            .with_context(|| format!("reading {}", self.capture.display()))?
            .len();
        if size != self.size {
            self.size = size;
            self.last_growth = Instant::now();
        }
        Ok(())
    }

    /// Notes the newest line's number (the highest so far: a glob follower
    /// may finish a rotated file after newer lines).
    fn sample(&mut self) {
        self.poll_seq = self.size;
        if let Some(seq) = last_line_seq(&self.capture) {
            self.max_seq = self.max_seq.max(seq);
        }
    }

    /// Whether the follower has delivered the writer's last line and
    /// stayed still since, or has gone quiet.
    fn finished(&mut self, written: u64) -> bool {
        if self.size != self.poll_seq {
            self.sample();
        }
        let still = self.last_growth.elapsed();
        (self.max_seq >= written && still > SETTLE) || still > QUIET
    }

    /// CPU seconds and peak RSS so far, from /proc.
    fn measure(&mut self) {
        let pid = self.child.id();
        let ticks = clock_ticks();
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // Fields after the command name (which may hold spaces): state is
            // the first, utime the 12th, stime the 13th.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            let field = |i: usize| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            self.cpu_s = (field(11) + field(12)) / ticks;
        }
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            self.peak_rss_kib = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0);
        }
    }
}

/// The `seq=N` marker of a text line written by `writer --rate`.
fn seq_of(line: &[u8]) -> Option<u64> {
    let at = line.windows(4).rposition(|w| w == b"seq=")?;
    let digits: Vec<u8> = line[at + 4..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// The writer's latest sequence number: the last complete line of `log`, or
/// of `log.1` when a rotation just left `log` empty. Racy by nature (the
/// writer goes on meanwhile); the caller keeps the maximum.
fn writer_latest_seq(log: &Path) -> u64 {
    let rotated = PathBuf::from(format!("{}.1", log.display()));
    [log, rotated.as_path()]
        .iter()
        .find_map(|path| last_line_seq(path))
        .unwrap_or(0)
}

fn last_line_seq(path: &Path) -> Option<u64> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let back = len.min(4096);
    file.seek(SeekFrom::Start(len - back)).ok()?;
    let mut tail = Vec::with_capacity(back as usize);
    file.take(back).read_to_end(&mut tail).ok()?;
    let end = tail.iter().rposition(|&b| b == b'\n')?;
    let start = tail[..end]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    seq_of(&tail[start..end])
}

/// Lag of each follower sample against the writer's timeline: in lines,
/// the writer's seq at that instant (interpolated between its samples)
/// minus the follower's; in ms, the age of the oldest line not yet delivered
/// (the time since the writer reached the follower's seq + 1).
fn lag_stats(timeline: &[(Instant, u64)], samples: &[(Instant, u64)]) -> LagStats {
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
        p50_ms: percentile(&ms, 0.50),
        p99_ms: percentile(&ms, 0.99),
        max_ms: ms.last().copied().unwrap_or(0.0),
        p50_lines: percentile(&lines, 0.50),
        p99_lines: percentile(&lines, 0.99),
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

/// Nearest-rank percentile of sorted values.
fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn clock_ticks() -> f64 {
    util::output(Command::new("getconf").arg("CLK_TCK"))
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// `writer verify --expect N` on a capture: (lines seen, lost, duplicated).
fn verify(writer: &Path, capture: &Path, expect: u64) -> anyhow::Result<(u64, u64, u64)> {
    let output = Command::new(writer)
        .args([
            "verify",
            "--report",
            "json",
            "--expect",
            &expect.to_string(),
        ])
        .arg(capture)
        .output()
        .context("running writer verify")?;
    verify_report(&output.stdout, &output.stderr, expect)
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

fn table(rows: &[Row]) -> String {
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
fn legend(followers: &[FollowerKind], rotations: &[Rotation]) -> String {
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

// --- the pod ------------------------------------------------------------------

/// The pod deploy/loadtest defines, and its containers as podman names them.
const POD: &str = "loadtest";
const POD_WRITER: &str = "loadtest-writer";
const POD_AGGREGATOR: &str = "loadtest-log-aggregator";
/// The kustomization played by `--pod`.
const POD_KUSTOMIZATION: &str = "deploy/loadtest";

/// Figures of one pod run.
#[derive(Debug, Default)]
struct PodRun {
    written: u64,
    offered: f64,
    lines: u64,
    lost: u64,
    duplicated: u64,
    cpu_s: f64,
    cpu_max_percent: f64,
    peak_mem_bytes: f64,
    drain_s: f64,
}

fn run_pod(args: &LoadtestArgs) -> anyhow::Result<()> {
    crate::lab::ensure_podman(false)?;
    if !args.no_build {
        crate::images::build(false, false)?;
    }
    let manifest = pod_manifest(args.pod_rate, args.pod_seconds)?;
    if crate::lab::pod_exists(POD) {
        crate::lab::remove_pod(POD)?;
    }
    let outcome = play_and_measure(&manifest, args.pod_seconds);
    // Removed also on failure: a half-run pod would hold its emptyDir.
    let removed = crate::lab::remove_pod(POD);
    let run = outcome?;
    removed?;
    println!(
        "pod {POD}: writer WRITER_RATE={} for {} s wrote {} lines ({:.0}/s); \
         log-aggregator delivered {} lines: {} lost, {} duplicated; \
         its CPU {:.2} s ({:.1}% of a core over the run, peak {:.1}%), peak memory {:.1} MiB; \
         drain after the writer stopped {:.1} s",
        args.pod_rate,
        args.pod_seconds,
        run.written,
        run.offered,
        run.lines,
        run.lost,
        run.duplicated,
        run.cpu_s,
        run.cpu_s * 100.0 / (args.pod_seconds as f64 + run.drain_s).max(1e-9),
        run.cpu_max_percent,
        run.peak_mem_bytes / (1024.0 * 1024.0),
        run.drain_s
    );
    if run.lost > 0 || run.duplicated > 0 {
        bail!(
            "log-aggregator in the pod lost {} and repeated {} lines",
            run.lost,
            run.duplicated
        );
    }
    Ok(())
}

/// Renders deploy/loadtest, sets the writer's rate and duration, and checks
/// its images are the ones `cargo xtask images` builds.
fn pod_manifest(rate: u64, seconds: u64) -> anyhow::Result<PathBuf> {
    let rendered = crate::lab::render(&util::workspace_root().join(POD_KUSTOMIZATION))?;
    let rendered = set_env(&rendered, "WRITER_RATE", &rate.to_string())?;
    let rendered = set_env(&rendered, "WRITER_DURATION", &format!("{seconds}s"))?;
    for binary in ["writer", "log-aggregator"] {
        let image = crate::images::local_image(binary);
        if !rendered.contains(&format!("image: {image}\n")) {
            bail!(
                "{POD_KUSTOMIZATION} does not use {image}, the image `cargo xtask images` builds"
            );
        }
    }
    let dir = util::lab_dir().join("loadtest");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join(format!("{POD}.yaml"));
    std::fs::write(&file, rendered).with_context(|| format!("writing {}", file.display()))?;
    Ok(file)
}

/// Replaces the value of env var `name` in a rendered manifest (kustomize
/// writes `- name: X` then `  value: ...` on the next line).
fn set_env(rendered: &str, name: &str, value: &str) -> anyhow::Result<String> {
    let mut out = String::with_capacity(rendered.len());
    let mut lines = rendered.lines();
    let mut found = false;
    while let Some(line) = lines.next() {
        out.push_str(line);
        out.push('\n');
        if line.trim() == format!("- name: {name}") {
            let next = lines
                .next()
                .with_context(|| format!("{name} has no value in {POD_KUSTOMIZATION}"))?;
            let indent = &next[..next.len() - next.trim_start().len()];
            if !next.trim_start().starts_with("value:") {
                bail!("{name} in {POD_KUSTOMIZATION} is not followed by its value: {next:?}");
            }
            let _ = writeln!(out, "{indent}value: \"{value}\"");
            found = true;
        }
    }
    if !found {
        bail!("{POD_KUSTOMIZATION} sets no {name} for the writer");
    }
    Ok(out)
}

fn play_and_measure(manifest: &Path, seconds: u64) -> anyhow::Result<PodRun> {
    crate::lab::play(manifest)?;
    let mut run = PodRun::default();
    // podman stats of the aggregator until the writer has exited.
    let deadline = Instant::now() + Duration::from_secs(seconds + 120);
    loop {
        if let Some((cpu_s, cpu_percent, mem)) = aggregator_stats() {
            run.cpu_s = run.cpu_s.max(cpu_s);
            run.cpu_max_percent = run.cpu_max_percent.max(cpu_percent);
            run.peak_mem_bytes = run.peak_mem_bytes.max(mem);
        }
        let containers = crate::lab::containers(POD)?;
        let state = |name: &str| {
            containers
                .iter()
                .find(|c| c.name == name)
                .map(|c| (c.state.clone(), c.exit_code))
        };
        match state("writer") {
            Some((s, code)) if s == "exited" => {
                if code != 0 {
                    bail!(
                        "the writer exited with {code}: {}",
                        podman_logs(POD_WRITER).unwrap_or_default()
                    );
                }
                break;
            }
            _ if Instant::now() > deadline => bail!("the writer did not finish in time"),
            _ => {}
        }
        if let Some((s, _)) = state("log-aggregator")
            && s == "exited"
        {
            bail!(
                "log-aggregator exited: {}",
                podman_logs(POD_AGGREGATOR).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let writer_end = Instant::now();
    let report = podman_logs(POD_WRITER)?;
    let report: Value = report
        .lines()
        .find(|line| line.starts_with('{'))
        .context("the writer's logs hold no JSON report (WRITER_REPORT=json)")
        .and_then(|line| serde_json::from_str(line).context("parsing the writer's report"))?;
    run.written = report["total"]["lines"].as_u64().unwrap_or(0);
    run.offered = report["total"]["lines_per_s"].as_f64().unwrap_or(0.0);

    // Drain: the aggregator's logs until they hold every line or stay still.
    let mut last_count = 0;
    let mut last_growth = writer_end;
    let logs = loop {
        let logs = podman_logs(POD_AGGREGATOR)?;
        let count = logs.lines().count() as u64;
        if count != last_count {
            last_count = count;
            last_growth = Instant::now();
        }
        if count >= run.written || last_growth.elapsed() > QUIET {
            break logs;
        }
        if writer_end.elapsed() > DRAIN_LIMIT {
            break logs;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    run.drain_s = last_growth
        .saturating_duration_since(writer_end)
        .as_secs_f64();
    if let Some((cpu_s, cpu_percent, mem)) = aggregator_stats() {
        run.cpu_s = run.cpu_s.max(cpu_s);
        run.cpu_max_percent = run.cpu_max_percent.max(cpu_percent);
        run.peak_mem_bytes = run.peak_mem_bytes.max(mem);
    }

    // The checker from the writer image: nothing to build on the host.
    let capture = manifest.with_file_name("log-aggregator.log");
    std::fs::write(&capture, &logs).with_context(|| format!("writing {}", capture.display()))?;
    let output = util::podman()
        .args(["run", "--rm", "-i", "--network", "none"])
        .arg(crate::images::local_image("writer"))
        .args([
            "verify",
            "--report",
            "json",
            "--expect",
            &run.written.to_string(),
            "-",
        ])
        .stdin(File::open(&capture)?)
        .output()
        .context("running writer verify in the writer image")?;
    let (lines, lost, duplicated) = verify_report(&output.stdout, &output.stderr, run.written)?;
    run.lines = lines;
    run.lost = lost;
    run.duplicated = duplicated;
    Ok(run)
}

/// `podman logs` of one container (stdout and stderr).
fn podman_logs(container: &str) -> anyhow::Result<String> {
    let output = util::podman()
        .args(["logs", container])
        .output()
        .with_context(|| format!("podman logs {container}"))?;
    if !output.status.success() {
        bail!(
            "podman logs {container} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok(text)
}

/// The aggregator's (CPU seconds, CPU %, memory bytes) from `podman stats`.
fn aggregator_stats() -> Option<(f64, f64, f64)> {
    let (ok, json, _) = util::try_output(util::podman().args([
        "stats",
        "--no-stream",
        "--format",
        "json",
        POD_AGGREGATOR,
    ]));
    if !ok {
        return None;
    }
    let stats: Value = serde_json::from_str(&json).ok()?;
    let entry = stats.as_array()?.first()?;
    let cpu_s = go_duration_s(entry["cpu_time"].as_str()?)?;
    let cpu_percent = entry["cpu_percent"]
        .as_str()?
        .trim_end_matches('%')
        .parse()
        .ok()?;
    let mem = decimal_bytes(entry["mem_usage"].as_str()?.split('/').next()?.trim())?;
    Some((cpu_s, cpu_percent, mem))
}

/// A Go duration as podman prints it (`1m2.5s`, `850.2ms`, `12µs`) in seconds.
fn go_duration_s(text: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut rest = text.trim();
    if rest == "0s" || rest == "0" {
        return Some(0.0);
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "µs" | "us" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    Some(total)
}

/// podman's decimal sizes (`2.65MB`, `512kB`, `0B`) in bytes.
fn decimal_bytes(text: &str) -> Option<f64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let number: f64 = text[..split].parse().ok()?;
    let scale = match text[split..].trim() {
        "B" | "" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return None,
    };
    Some(number * scale)
}
// --- the plot -----------------------------------------------------------------

const COLORS: [&str; 4] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"];

/// Two panels, delivered rate and CPU share against offered rate (log x),
/// one line per follower and rotation mode (solid: none, dashed: rename,
/// dotted: copytruncate). Hand-written SVG: a
/// plotting crate would cost more to build than this whole task.
fn svg(rows: &[Row]) -> String {
    let mut followers: Vec<&str> = Vec::new();
    for r in rows {
        if !followers.contains(&r.follower.as_str()) {
            followers.push(&r.follower);
        }
    }
    let (width, height) = (1000.0, 460.0);
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">Log followers under load (writer --rate, local processes; measured on the project machine, 2 shared cores)</text>
"#,
        width / 2.0
    );
    let x_min = rows
        .iter()
        .map(|r| r.offered)
        .fold(f64::MAX, f64::min)
        .max(1.0);
    let x_max = rows.iter().map(|r| r.offered).fold(1.0, f64::max);
    let y_max = rows
        .iter()
        .map(|r| r.delivered)
        .fold(1.0, f64::max)
        .max(x_max);
    let cpu_max = rows.iter().map(|r| r.cpu_share * 100.0).fold(1.0, f64::max);
    let panels = [
        ("delivered lines/s (log)", 70.0, true),
        ("follower CPU % of one core", 570.0, false),
    ];
    for (title, left, log_y) in panels {
        let (top, plot_w, plot_h) = (50.0, 380.0, 330.0);
        let x_of = |v: f64| {
            left + plot_w * (v.max(x_min).log10() - x_min.log10())
                / (x_max.log10() - x_min.log10()).max(1e-9)
        };
        let y_of = |v: f64| {
            if log_y {
                top + plot_h
                    - plot_h * (v.max(x_min).log10() - x_min.log10())
                        / (y_max.log10() - x_min.log10()).max(1e-9)
            } else {
                top + plot_h - plot_h * v / cpu_max
            }
        };
        let _ = writeln!(
            out,
            r#"<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>
<text x="{}" y="{}" text-anchor="middle">{title}</text>
<text x="{}" y="{}" text-anchor="middle">offered lines/s (log)</text>"#,
            left + plot_w / 2.0,
            top - 8.0,
            left + plot_w / 2.0,
            top + plot_h + 36.0
        );
        let mut decade = 10f64.powf(x_min.log10().floor());
        while decade <= x_max * 1.0001 {
            if decade >= x_min * 0.9999 {
                let x = x_of(decade);
                let _ = writeln!(
                    out,
                    r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
                    top + plot_h,
                    top + plot_h + 16.0,
                    human(decade)
                );
            }
            decade *= 10.0;
        }
        if log_y {
            let mut decade = 10f64.powf(x_min.log10().floor());
            while decade <= y_max * 1.0001 {
                if decade >= x_min * 0.9999 {
                    let y = y_of(decade);
                    let _ = writeln!(
                        out,
                        r##"<line x1="{left}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                        left + plot_w,
                        left - 6.0,
                        y + 4.0,
                        human(decade)
                    );
                }
                decade *= 10.0;
            }
        } else {
            for i in 0..=4 {
                let v = cpu_max * f64::from(i) / 4.0;
                let y = y_of(v);
                let _ = writeln!(
                    out,
                    r##"<line x1="{left}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{v:.1}%</text>"##,
                    left + plot_w,
                    left - 6.0,
                    y + 4.0
                );
            }
        }
        for (index, follower) in followers.iter().enumerate() {
            let color = COLORS[index % COLORS.len()];
            for rotation in [Rotation::None, Rotation::Rename, Rotation::Copytruncate] {
                let mut points: Vec<(f64, f64)> = rows
                    .iter()
                    .filter(|r| r.follower == *follower && r.rotation == rotation)
                    .map(|r| {
                        let y = if log_y {
                            r.delivered
                        } else {
                            r.cpu_share * 100.0
                        };
                        (x_of(r.offered), y_of(y))
                    })
                    .collect();
                if points.is_empty() {
                    continue;
                }
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                let path: Vec<String> = points
                    .iter()
                    .map(|(x, y)| format!("{x:.1},{y:.1}"))
                    .collect();
                let dash = match rotation {
                    Rotation::None => "",
                    Rotation::Rename => r#" stroke-dasharray="6,4""#,
                    Rotation::Copytruncate => r#" stroke-dasharray="2,3""#,
                };
                let _ = writeln!(
                    out,
                    r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
                    path.join(" ")
                );
                for (x, y) in points {
                    let _ = writeln!(
                        out,
                        r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{color}"/>"#
                    );
                }
            }
        }
    }
    for (index, follower) in followers.iter().enumerate() {
        let x = 70.0 + 190.0 * index as f64;
        let color = COLORS[index % COLORS.len()];
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="{}" width="14" height="14" fill="{color}"/><text x="{}" y="{}">{follower}</text>"#,
            height - 30.0,
            x + 20.0,
            height - 19.0
        );
    }
    if rows.iter().any(|r| r.rotation != Rotation::None) {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">rotation: solid none, dashed rename, dotted copytruncate</text>"#,
            width - 10.0,
            height - 19.0
        );
    }
    out.push_str("</svg>\n");
    out
}

fn human(value: f64) -> String {
    if value >= 1e6 {
        format!("{}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{}k", value / 1e3)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn podman_stats_figures_parse() {
        assert_eq!(go_duration_s("1m2.5s"), Some(62.5));
        assert!((go_duration_s("850.5ms").unwrap() - 0.8505).abs() < 1e-9);
        assert_eq!(decimal_bytes("2.65MB"), Some(2_650_000.0));
        assert_eq!(decimal_bytes("512kB"), Some(512_000.0));
    }

    #[test]
    fn set_env_replaces_the_value_under_the_name() {
        let rendered = "    env:\n    - name: WRITER_RATE\n      value: \"5000\"\n";
        let out = set_env(rendered, "WRITER_RATE", "100").unwrap();
        assert_eq!(
            out,
            "    env:\n    - name: WRITER_RATE\n      value: \"100\"\n"
        );
        assert!(set_env(rendered, "WRITER_DURATION", "1s").is_err());
    }
}
