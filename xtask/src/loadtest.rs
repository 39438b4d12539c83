//! `cargo xtask loadtest`: how many lines per second can a follower take, and
//! does it lose any? Local processes, no pods.
//!
//! For each step (an offered rate, optionally with rename rotation) a fresh
//! temp directory gets an empty `app.log`; every follower is started on it
//! side by side, each with its stdout captured to its own file:
//! - `log-aggregator --follow` (ours, stream mode);
//! - busybox `tail -f` (the lab's reader);
//! - GNU `tail -n +1 -F` (what people pick for rotation).
//!
//! Once every follower has the file open (seen in `/proc/PID/fd`), `writer
//! --rate R` writes numbered lines for the step's duration (the max step is
//! bounded by a line count instead). Then each follower's capture is watched
//! until it holds every line or stops growing; its CPU time and peak RSS are
//! read from `/proc/PID/stat` and `/proc/PID/status` before it is stopped,
//! and `writer verify` counts lost and duplicated lines.
//!
//! Reported per step and follower: offered rate (the writer's achieved rate),
//! delivered rate (unique lines over writer time plus drain lag), lost,
//! duplicated, CPU seconds and share, peak RSS, drain lag (time from the
//! writer's last line to the follower's). A table goes to stdout and a plot
//! to `docs/loadtest.svg`. The run fails if our log-aggregator lost or
//! repeated a line; the other followers are measured, not judged (busybox
//! `tail -f` is expected to lose lines through rotation).

use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::util;

#[derive(clap::Args)]
pub struct LoadtestArgs {
    /// The short version for CI: 2 s per step, 200 000 lines at max rate.
    #[arg(long)]
    quick: bool,

    /// Offered rates in lines/s, in order; 0 = as fast as the writer goes.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000,0")]
    rates: Vec<u64>,

    /// Seconds each rated step writes [default: 5, 2 with --quick].
    #[arg(long, value_name = "SECONDS")]
    step_seconds: Option<f64>,

    /// Lines of the max-rate step [default: 2000000, 200000 with --quick].
    #[arg(long, value_name = "N")]
    max_lines: Option<u64>,

    /// Also run every step with rename rotation at this size (e.g. 4MB); rotated files are kept.
    #[arg(long, value_name = "BYTES")]
    rotate_size: Option<String>,

    /// Followers to compare.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "log-aggregator,busybox,gnu-tail"
    )]
    followers: Vec<String>,

    /// Where the plot goes (relative to the workspace root).
    #[arg(long, default_value = "docs/loadtest.svg")]
    svg: PathBuf,

    /// Use the `writer` and `log-aggregator` binaries in this directory
    /// instead of building the release binaries.
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
}

/// How long a follower's capture may stay still before it is judged done.
const QUIET: Duration = Duration::from_secs(3);

/// The longest a follower gets to drain after the writer stopped.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// A follower under test.
struct FollowerKind {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    /// Whether a lost or duplicated line fails the run.
    judged: bool,
}

/// One step of the ramp.
#[derive(Clone)]
struct Step {
    rate: u64,
    rotate: Option<String>,
}

/// One follower's figures in one step.
#[derive(Clone, Debug)]
struct Row {
    rate: u64,
    rotation: bool,
    follower: String,
    offered: f64,
    written: u64,
    delivered: f64,
    lines: u64,
    lost: u64,
    duplicated: u64,
    cpu_s: f64,
    cpu_share: f64,
    peak_rss_kib: u64,
    lag_s: f64,
    judged: bool,
}

pub fn run(args: LoadtestArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => {
            util::run(util::cargo().args([
                "build",
                "--release",
                "-p",
                "writer",
                "-p",
                "log-aggregator",
            ]))?;
            util::target_dir().join("release")
        }
    };
    let writer = bin_dir.join("writer");
    let aggregator = bin_dir.join("log-aggregator");
    let followers = followers(&args.followers, &aggregator)?;
    let seconds = args
        .step_seconds
        .unwrap_or(if args.quick { 2.0 } else { 5.0 });
    let max_lines = args
        .max_lines
        .unwrap_or(if args.quick { 200_000 } else { 2_000_000 });
    let mut steps: Vec<Step> = args
        .rates
        .iter()
        .map(|&rate| Step { rate, rotate: None })
        .collect();
    if let Some(size) = &args.rotate_size {
        steps.extend(args.rates.iter().map(|&rate| Step {
            rate,
            rotate: Some(size.clone()),
        }));
    }
    let root = std::env::temp_dir().join(format!("loadtest-{}", std::process::id()));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let mut rows = Vec::new();
    let outcome = (|| {
        for (index, step) in steps.iter().enumerate() {
            let dir = root.join(format!("step-{index}"));
            std::fs::create_dir_all(&dir)?;
            eprintln!(
                "loadtest: step {}/{}: {} lines/s{}",
                index + 1,
                steps.len(),
                if step.rate == 0 {
                    "max".to_owned()
                } else {
                    step.rate.to_string()
                },
                step.rotate
                    .as_deref()
                    .map(|s| format!(", rotating at {s}"))
                    .unwrap_or_default()
            );
            rows.extend(run_step(
                &writer, &followers, step, seconds, max_lines, &dir,
            )?);
            let _ = std::fs::remove_dir_all(&dir);
        }
        anyhow::Ok(())
    })();
    let _ = std::fs::remove_dir_all(&root);
    outcome?;
    print!("{}", table(&rows));
    let svg_path = util::workspace_root().join(&args.svg);
    std::fs::write(&svg_path, svg(&rows))
        .with_context(|| format!("writing {}", svg_path.display()))?;
    eprintln!(
        "loadtest: plot written to {}; took {:.1} s",
        svg_path.display(),
        started.elapsed().as_secs_f64()
    );
    let failed: Vec<_> = rows
        .iter()
        .filter(|r| r.judged && (r.lost > 0 || r.duplicated > 0))
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} lost or repeated lines in {} step(s)",
            failed[0].follower,
            failed.len()
        );
    }
    Ok(())
}

fn followers(names: &[String], aggregator: &Path) -> anyhow::Result<Vec<FollowerKind>> {
    let mut kinds = Vec::new();
    for name in names {
        match name.as_str() {
            "log-aggregator" => kinds.push(FollowerKind {
                name: "log-aggregator",
                program: aggregator.to_owned(),
                args: vec!["--follow".into(), "--log-level".into(), "warn".into()],
                judged: true,
            }),
            "busybox" => {
                if !util::on_path("busybox") {
                    util::apt_install(&["busybox-static"])?;
                }
                kinds.push(FollowerKind {
                    name: "busybox tail -f",
                    program: "busybox".into(),
                    args: vec!["tail".into(), "-f".into()],
                    judged: false,
                });
            }
            "gnu-tail" => kinds.push(FollowerKind {
                name: "GNU tail -F",
                program: "tail".into(),
                args: vec!["-n".into(), "+1".into(), "-F".into()],
                judged: false,
            }),
            other => bail!("unknown follower {other:?} (use log-aggregator, busybox, gnu-tail)"),
        }
    }
    Ok(kinds)
}

/// A follower running in one step.
struct Running<'a> {
    kind: &'a FollowerKind,
    child: Child,
    capture: PathBuf,
    reader: File,
    lines: u64,
    last_growth: Instant,
    done: bool,
    cpu_s: f64,
    peak_rss_kib: u64,
}

fn run_step(
    writer: &Path,
    followers: &[FollowerKind],
    step: &Step,
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
            .args(&kind.args)
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", kind.name))?;
        running.push(Running {
            kind,
            child,
            reader: File::open(&capture)?,
            capture,
            lines: 0,
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
                has_open(pid, &log)
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
    if let Some(size) = &step.rotate {
        // Rotated files are kept (not deleted): a follower then loses a line
        // only through its own fault, not because the writer deleted a file
        // before anyone could open it (at full speed that takes milliseconds).
        command.args(["--rotate-size", size, "--rotate-keep", "1000"]);
    }
    util::run(command.arg(&log))?;
    let writer_end = Instant::now();
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&report).context("reading the writer's report")?,
    )?;
    let written = report["total"]["lines"].as_u64().unwrap_or(0);
    let writer_s = report["total"]["elapsed_s"].as_f64().unwrap_or(0.0);
    let offered = report["total"]["lines_per_s"].as_f64().unwrap_or(0.0);

    // Drain: until every follower has every line or has gone quiet.
    for follower in &mut running {
        follower.last_growth = writer_end;
    }
    loop {
        for follower in running.iter_mut().filter(|f| !f.done) {
            if follower.poll()? >= written
                || follower.last_growth.elapsed() > QUIET
                || writer_end.elapsed() > DRAIN_LIMIT
            {
                follower.done = true;
                follower.measure();
                stop(&mut follower.child);
            }
        }
        if running.iter().all(|f| f.done) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut rows = Vec::new();
    for follower in &running {
        let (lines, lost, duplicated) = verify(writer, &follower.capture, written)?;
        let lag_s = follower
            .last_growth
            .saturating_duration_since(writer_end)
            .as_secs_f64();
        let wall = writer_s + lag_s;
        rows.push(Row {
            rate: step.rate,
            rotation: step.rotate.is_some(),
            follower: follower.kind.name.to_owned(),
            offered,
            written,
            delivered: (lines - duplicated) as f64 / wall.max(1e-9),
            lines,
            lost,
            duplicated,
            cpu_s: follower.cpu_s,
            cpu_share: follower.cpu_s / wall.max(1e-9),
            peak_rss_kib: follower.peak_rss_kib,
            lag_s,
            judged: follower.kind.judged,
        });
    }
    Ok(rows)
}

impl Drop for Running<'_> {
    /// A step that fails half-way leaves no follower behind.
    fn drop(&mut self) {
        if !self.done {
            stop(&mut self.child);
        }
    }
}

impl Running<'_> {
    /// Counts the lines the capture gained since the last look.
    fn poll(&mut self) -> anyhow::Result<u64> {
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let read = self.reader.read(&mut chunk)?;
            if read == 0 {
                break;
            }
            self.lines += chunk[..read].iter().filter(|&&b| b == b'\n').count() as u64;
            self.last_growth = Instant::now();
        }
        // Only newlines are counted: a partial last line counts once complete.
        Ok(self.lines)
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

fn clock_ticks() -> f64 {
    util::output(Command::new("getconf").arg("CLK_TCK"))
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Whether process `pid` has `path` open.
fn has_open(pid: u32, path: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    entries
        .filter_map(Result::ok)
        .any(|entry| std::fs::read_link(entry.path()).is_ok_and(|target| target == path))
}

/// SIGTERM, then SIGKILL if it has not exited within 5 s.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `writer verify --expect N`: (lines seen, lost, duplicated).
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
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "writer verify printed no report: {}",
            String::from_utf8_lossy(&output.stderr)
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
        "{:>7} {:>6} {:<16} {:>11} {:>9} {:>9} {:>11} {:>8} {:>6} {:>7} {:>6} {:>9} {:>7}\n",
        "STEP",
        "ROTATE",
        "FOLLOWER",
        "OFFERED/S",
        "WRITTEN",
        "SEEN",
        "DELIVERED/S",
        "LOST",
        "DUP",
        "CPU_S",
        "CPU%",
        "PEAK_RSS",
        "LAG_S"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:>7} {:>6} {:<16} {:>11.0} {:>9} {:>9} {:>11.0} {:>8} {:>6} {:>7.2} {:>6.1} {:>7}Ki {:>7.2}",
            rate_label(r.rate),
            if r.rotation { "yes" } else { "no" },
            r.follower,
            r.offered,
            r.written,
            r.lines,
            r.delivered,
            r.lost,
            r.duplicated,
            r.cpu_s,
            r.cpu_share * 100.0,
            r.peak_rss_kib,
            r.lag_s
        );
    }
    out
}

// --- the plot -----------------------------------------------------------------

const COLORS: [&str; 4] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"];

/// Two panels, delivered rate and CPU share against offered rate (log x),
/// one line per follower (and dashed with rotation). Hand-written SVG: a
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
<text x="{}" y="22" text-anchor="middle" font-size="15">Log followers under load (writer --rate, local processes; this machine, 2 shared cores)</text>
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
            for rotation in [false, true] {
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
                let dash = if rotation {
                    r#" stroke-dasharray="6,4""#
                } else {
                    ""
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
        let x = 70.0 + 230.0 * index as f64;
        let color = COLORS[index % COLORS.len()];
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="{}" width="14" height="14" fill="{color}"/><text x="{}" y="{}">{follower}</text>"#,
            height - 30.0,
            x + 20.0,
            height - 19.0
        );
    }
    if rows.iter().any(|r| r.rotation) {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}">dashed: with rename rotation</text>"#,
            width - 260.0,
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
