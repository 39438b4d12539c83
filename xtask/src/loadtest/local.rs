//! The load test as local processes: per step a fresh directory, every
//! follower started on its `app.log`, the writer at the step's rate, lag
//! sampled while it writes, then a drain and `writer verify` per capture.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use super::{
    DRAIN_LIMIT, LoadtestArgs, QUIET, Rotation, Row, lag, plot, rate_label, report, verify_report,
};
use crate::util;

/// How long a follower that delivered the writer's last line must stay
/// still before it is judged done (a glob follower may still be finishing a
/// rotated file).
const SETTLE: Duration = Duration::from_millis(500);

/// How often lag is sampled while the writer runs.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// How often the captures are read (and the writer's exit checked).
const POLL_EVERY: Duration = Duration::from_millis(10);
/// The follower kinds compared.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Ours,
    /// Ours on the plain path, to show what following by name misses.
    OursByName,
    Busybox,
    GnuTail,
}

/// A follower under test.
pub(super) struct FollowerKind {
    kind: Kind,
    pub(super) name: &'static str,
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
    pub(super) fn invocation(&self, rotation: Rotation) -> String {
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

/// The steps as local processes: the table and legend on stdout, the plot
/// unless `--quick`; fails on a lost or repeated line of a judged follower.
pub(super) fn run(args: &LoadtestArgs) -> anyhow::Result<()> {
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
    print!("{}", report::table(&rows));
    print!("{}", report::legend(&followers, &args.rotations));
    let svg_path = match (&args.svg, args.quick) {
        (Some(path), _) => Some(path.clone()),
        (None, false) => Some(PathBuf::from("docs/loadtest.svg")),
        (None, true) => None,
    };
    if let Some(path) = svg_path {
        let path = util::workspace_root().join(path);
        std::fs::write(&path, plot::svg(&rows))
            .with_context(|| format!("writing {}", path.display()))?;
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
        util::wait_open(
            follower.kind.name,
            follower.child.id(),
            &log,
            Duration::from_secs(10),
            util::POLL_INTERVAL,
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
            lag: lag::lag_stats(&timeline, &follower.samples),
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
        if let Ok(stats) = util::proc_stats(self.child.id(), util::clock_ticks()) {
            self.cpu_s = stats.cpu_seconds;
            self.peak_rss_kib = stats.peak_rss_kib;
        }
    }
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
    lag::seq_of(&tail[start..end])
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
