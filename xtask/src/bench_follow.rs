//! `cargo xtask bench follow [--quick]`: what following costs, ours beside
//! GNU `tail -F` and busybox `tail -f`, all in one run on the same files.
//!
//! 1. Rates: `writer --rate N --duration 10s --format text FILE` (one
//!    `write(2)` per line) at 1k, 10k and 100k lines/s, every follower on the
//!    same file. CPU is every thread's time on a CPU
//!    (`/proc/PID/task/*/schedstat`, to the nanosecond; clock ticks are
//!    10 ms, a quarter of what a follower spends at 1k lines/s), from just
//!    before the writer starts until the follower printed its last line.
//!    Lag: each line carries the writer's clock (`--time-format unix`, ms)
//!    taken just before its `write(2)`; a thread per follower reads the
//!    follower's stdout pipe and compares with the clock when the line
//!    arrives (so lag includes the bench's own read, and the ms truncation
//!    adds up to 1 ms). Every follower must print every line.
//! 2. Idle: 1,000 files followed (ours through a glob), CPU over a window,
//!    against one busybox `tail -f` on one file.
//! 3. 1,000 files each at 10 lines/s: ours against GNU `tail -F` on the
//!    same 1,000 names in one process.
//! 4. Throughput from the start of a 200 MB file, stdout a pipe drained by
//!    `head -n LINES` (small reads, like a container runtime): time until
//!    head has every line, best of 3; beside them, a bare copy (`dd
//!    bs=4096`) into the same pipe, for what the harness allows, and `head`
//!    reading the file itself, the ceiling no producer can pass.
//!
//! `--bin-dir DIR` (`BENCH_BIN_DIR`) runs the binaries in DIR instead of
//! building this tree (a before/after comparison with the same harness).
//!
//! Writes a plot (CPU against rate per follower, SVG) and a Markdown table
//! under `target/bench-follow/`. Figures, not a test: it never fails on speed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

use crate::util;

const GNU_TAIL: &str = "/usr/bin/tail";
const RATES: [u64; 3] = [1_000, 10_000, 100_000];
const MANY_FILES: usize = 1_000;
/// Writer layout: the writer's clock first, so the bench can read it.
/// `{target}` keeps the lines of the 1,000 files distinct: files whose first
/// bytes are equal are taken for copies of each other (content identity).
const LAYOUT: &str = "{time} {seq} {target} {message}";

struct Settings {
    duration: Duration,
    idle: Duration,
    many_duration: Duration,
    size: u64,
    rounds: usize,
}

impl Settings {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                duration: Duration::from_secs(3),
                idle: Duration::from_secs(20),
                many_duration: Duration::from_secs(5),
                size: 50_000_000,
                rounds: 1,
            }
        } else {
            Self {
                duration: Duration::from_secs(10),
                idle: Duration::from_secs(60),
                many_duration: Duration::from_secs(10),
                size: 200_000_000,
                rounds: 3,
            }
        }
    }
}

/// The followers compared.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Follower {
    Aggregator,
    AggregatorJson,
    Reader,
    Gnu,
    Busybox,
}

impl Follower {
    fn label(self) -> &'static str {
        match self {
            Self::Aggregator => "log-aggregator --follow (plain)",
            Self::AggregatorJson => "log-aggregator --follow --output json",
            Self::Reader => "reader",
            Self::Gnu => "GNU tail -F",
            Self::Busybox => "busybox tail -f",
        }
    }

    /// A command printing `files` from their start and following them; a
    /// single `glob` instead for the aggregator when given.
    fn command(self, bins: &Bins, files: &[PathBuf], glob: Option<&str>) -> Command {
        let mut command = match self {
            Self::Aggregator | Self::AggregatorJson => {
                let mut command = Command::new(bins.dir.join("log-aggregator"));
                let output = if self == Self::Aggregator {
                    "plain"
                } else {
                    "json"
                };
                command.args(["--follow", "--from", "beginning", "--output", output]);
                command
            }
            Self::Reader => {
                let mut command = Command::new(bins.dir.join("reader"));
                command.args(["-q", "-n", "+1"]);
                command
            }
            Self::Gnu => {
                let mut command = Command::new(GNU_TAIL);
                command.args(["-q", "-n", "+1", "-F"]);
                command
            }
            Self::Busybox => {
                let mut command = Command::new(&bins.busybox);
                command.args(["tail", "-q", "-n", "+1", "-f"]);
                command
            }
        };
        match glob {
            Some(glob) if matches!(self, Self::Aggregator | Self::AggregatorJson) => {
                command.arg(glob);
            }
            _ => {
                command.args(files);
            }
        }
        command.stdin(Stdio::null()).stderr(Stdio::null());
        command
    }
}

struct Bins {
    dir: PathBuf,
    busybox: PathBuf,
}

/// A follower running with a thread counting its lines and their lag.
struct Running {
    which: Follower,
    child: Child,
    lines: Arc<AtomicU64>,
    lags_us: Arc<Mutex<Vec<u64>>>,
    reader: Option<thread::JoinHandle<()>>,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_micros() as u64)
        .unwrap_or(0)
}

/// The writer's `--time-format unix` stamp at the start of `line`, in µs.
fn stamp_us(line: &[u8]) -> Option<u64> {
    let end = line.iter().position(|byte| *byte == b' ')?;
    let text = std::str::from_utf8(&line[..end]).ok()?;
    let (seconds, millis) = text.split_once('.')?;
    Some(seconds.parse::<u64>().ok()? * 1_000_000 + millis.parse::<u64>().ok()? * 1_000)
}

impl Running {
    fn start(which: Follower, mut command: Command) -> anyhow::Result<Self> {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", util::describe(&command)))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let lines = Arc::new(AtomicU64::new(0));
        let lags_us = Arc::new(Mutex::new(Vec::new()));
        let (count, lags) = (lines.clone(), lags_us.clone());
        let reader = thread::spawn(move || {
            let mut stdout = BufReader::with_capacity(1 << 20, stdout);
            let mut line = Vec::new();
            let mut batch = Vec::new();
            loop {
                line.clear();
                match stdout.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                // JSON output: the line is the value of "line".
                let text = match line.windows(8).position(|w| w == b"\"line\":\"") {
                    Some(at) => &line[at + 8..],
                    None => &line[..],
                };
                if let Some(stamp) = stamp_us(text) {
                    batch.push(now_us().saturating_sub(stamp));
                }
                count.fetch_add(1, Ordering::Relaxed);
                if batch.len() >= 1024 || stdout.buffer().is_empty() {
                    lags.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .append(&mut batch);
                }
            }
            lags.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .append(&mut batch);
        });
        Ok(Self {
            which,
            child,
            lines,
            lags_us,
            reader: Some(reader),
        })
    }

    fn lines(&self) -> u64 {
        self.lines.load(Ordering::Relaxed)
    }

    /// CPU seconds to the nanosecond ([`util::cpu_seconds_precise`]).
    fn cpu_precise(&self) -> f64 {
        util::cpu_seconds_precise(self.child.id()).unwrap_or(f64::NAN)
    }

    fn stop(mut self) -> Vec<u64> {
        util::stop(&mut self.child);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let mut lags =
            std::mem::take(&mut *self.lags_us.lock().unwrap_or_else(PoisonError::into_inner));
        lags.sort_unstable();
        lags
    }
}

/// Waits until every follower printed `expected` lines (or the deadline).
fn wait_lines(running: &[Running], expected: u64, timeout: Duration) -> Vec<(u64, f64)> {
    let start = Instant::now();
    let mut done: Vec<Option<f64>> = vec![None; running.len()];
    while start.elapsed() < timeout && done.iter().any(Option::is_none) {
        for (slot, run) in done.iter_mut().zip(running) {
            if slot.is_none() && run.lines() >= expected {
                *slot = Some(start.elapsed().as_secs_f64());
            }
        }
        thread::sleep(Duration::from_millis(5));
    }
    running
        .iter()
        .zip(done)
        .map(|(run, at)| (run.lines(), at.unwrap_or(f64::NAN)))
        .collect()
}

/// Percentile `p` of sorted lags in µs, in ms.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    crate::stats::percentile(sorted, p).map_or(f64::NAN, |us| us as f64 / 1000.0)
}

/// One follower's figures in one step.
struct Row {
    which: Follower,
    cpu: f64,
    lines: u64,
    expected: u64,
    lag_ms: [f64; 3],
}

fn writer(bins: &Bins, rate: u64, duration: Duration, targets: &[PathBuf]) -> Command {
    let mut command = Command::new(bins.dir.join("writer"));
    command
        .args(["--rate", &rate.to_string()])
        .args(["--duration", &format!("{}ms", duration.as_millis())])
        .args([
            "--format",
            "text",
            "--time-format",
            "unix",
            "--layout",
            LAYOUT,
        ])
        .args(["--report", "none"])
        .args(targets)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn count_lines(paths: &[PathBuf]) -> anyhow::Result<u64> {
    let mut total = 0;
    for path in paths {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        total += memchr_count(&bytes);
    }
    Ok(total)
}

fn memchr_count(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|byte| **byte == b'\n').count() as u64
}

/// Starts `followers` on `files`, waits until each has them open, runs the
/// writer at `rate`, and measures until each printed every line.
fn follow_step(
    bins: &Bins,
    followers: &[Follower],
    files: &[PathBuf],
    glob: Option<&str>,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<Vec<Row>> {
    for file in files {
        std::fs::write(file, b"").with_context(|| format!("creating {}", file.display()))?;
    }
    let mut running = Vec::new();
    for which in followers {
        running.push(Running::start(*which, which.command(bins, files, glob))?);
    }
    let last = files.last().context("no files")?;
    for run in &running {
        let pid = run.child.id();
        util::wait_for_every(
            &format!("{} to open {}", run.which.label(), last.display()),
            Duration::from_secs(30),
            Duration::from_millis(20),
            || {
                if util::has_open(pid, last) {
                    Ok(())
                } else {
                    Err("not yet".into())
                }
            },
        )?;
    }
    // Let start-up work (glob expansion, watches) settle out of the window.
    thread::sleep(Duration::from_millis(300));
    let before: Vec<f64> = running.iter().map(Running::cpu_precise).collect();
    let status = writer(bins, rate, duration, files)
        .status()
        .context("running writer")?;
    if !status.success() {
        bail!("writer failed with {status}");
    }
    let expected = count_lines(files)?;
    let done = wait_lines(&running, expected, Duration::from_secs(15));
    let mut rows = Vec::new();
    for ((run, before), (lines, _)) in running.into_iter().zip(before).zip(done) {
        let cpu = run.cpu_precise() - before;
        let which = run.which;
        let lags = run.stop();
        rows.push(Row {
            which,
            cpu,
            lines,
            expected,
            lag_ms: [
                percentile(&lags, 0.5),
                percentile(&lags, 0.99),
                percentile(&lags, 1.0),
            ],
        });
    }
    Ok(rows)
}

/// `value / base` for the tables; `-` when the base is too small to divide by.
fn ratio(value: f64, base: f64) -> String {
    if base > 0.0 && base.is_finite() && value.is_finite() {
        format!("{:.2}", value / base)
    } else {
        "-".to_owned()
    }
}

fn print_rows(title: &str, rows: &[Row], reference: Follower, out: &mut String) {
    let base = rows
        .iter()
        .find(|row| row.which == reference)
        .map(|row| row.cpu)
        .unwrap_or(f64::NAN);
    let text = format!(
        "\n{title}\n| follower | CPU s (schedstat) | × {} | lag p50 ms | p99 ms | max ms | lines |\n|---|---|---|---|---|---|---|\n",
        reference.label()
    );
    out.push_str(&text);
    for row in rows {
        let missing = if row.lines == row.expected {
            String::new()
        } else {
            format!(" (MISSING {})", row.expected as i64 - row.lines as i64)
        };
        out.push_str(&format!(
            "| {} | {:.3} | {} | {:.1} | {:.1} | {:.1} | {}/{}{} |\n",
            row.which.label(),
            row.cpu,
            ratio(row.cpu, base),
            row.lag_ms[0],
            row.lag_ms[1],
            row.lag_ms[2],
            row.lines,
            row.expected,
            missing
        ));
    }
}

/// Idle CPU over `window` with every follower started on its files first.
fn idle_step(
    bins: &Bins,
    dir: &Path,
    window: Duration,
    ticks: f64,
    out: &mut String,
) -> anyhow::Result<()> {
    let files = many_files(dir, Some("idle file"))?;
    let glob = format!("{}/*.log", dir.display());
    let single = &files[..1];
    let runs: Vec<(Follower, &[PathBuf], &str)> = vec![
        (Follower::Aggregator, &files, "1,000 files (glob)"),
        (Follower::Reader, &files, "1,000 files"),
        (Follower::Gnu, &files, "1,000 files"),
        (Follower::Busybox, single, "1 file"),
    ];
    let mut running = Vec::new();
    for (which, files, _) in &runs {
        running.push(Running::start(
            *which,
            which.command(bins, files, Some(&glob)),
        )?);
    }
    for (run, (_, files, _)) in running.iter().zip(&runs) {
        let expected = files.len() as u64;
        util::wait_for_every(
            &format!("{} to print the files' lines", run.which.label()),
            Duration::from_secs(60),
            Duration::from_millis(50),
            || {
                if run.lines() >= expected {
                    Ok(())
                } else {
                    Err(format!("{} lines", run.lines()))
                }
            },
        )?;
    }
    thread::sleep(Duration::from_secs(2));
    let before: Vec<f64> = running.iter().map(Running::cpu_precise).collect();
    let rss_kib: Vec<u64> = running
        .iter()
        .map(|run| {
            util::proc_stats(run.child.id(), ticks)
                .map(|stats| stats.rss_kib)
                .unwrap_or(0)
        })
        .collect();
    thread::sleep(window);
    let cpu: Vec<f64> = running
        .iter()
        .zip(&before)
        .map(|(run, before)| run.cpu_precise() - before)
        .collect();
    let busybox = cpu[3];
    out.push_str(&format!(
        "\nIdle over {} s (no writes)\n| follower | files | CPU s (schedstat) | × busybox tail -f (1 file) | RSS MiB |\n|---|---|---|---|---|\n",
        window.as_secs()
    ));
    for (index, run) in running.into_iter().enumerate() {
        let (which, _, what) = runs[index];
        out.push_str(&format!(
            "| {} | {} | {:.4} | {} | {:.1} |\n",
            which.label(),
            what,
            cpu[index],
            ratio(cpu[index], busybox),
            rss_kib[index] as f64 / 1024.0
        ));
        run.stop();
    }
    Ok(())
}

/// 1,000 files, each holding `line` (numbered, so no two are alike) or nothing.
fn many_files(dir: &Path, line: Option<&str>) -> anyhow::Result<Vec<PathBuf>> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = Vec::new();
    for index in 0..MANY_FILES {
        let path = dir.join(format!("f{index:04}.log"));
        let content = line
            .map(|line| format!("{line} {index}\n"))
            .unwrap_or_default();
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
        files.push(path);
    }
    Ok(files)
}

/// Runs `producer` with its stdout a pipe read by `head -n lines`: the
/// seconds until `head` has every line, and the producer's CPU seconds
/// by then.
fn drained_by_head(mut producer: Command, lines: u64, ticks: f64) -> anyhow::Result<(f64, f64)> {
    let start = Instant::now();
    let mut child = producer
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", util::describe(&producer)))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let head = head(stdout, lines);
    let seconds = start.elapsed().as_secs_f64();
    let cpu = util::proc_stats(child.id(), ticks)
        .map(|stats| stats.cpu_seconds)
        .unwrap_or(f64::NAN);
    util::stop(&mut child);
    head?;
    Ok((seconds, cpu))
}

/// Runs `head -n lines` on `input` (its output discarded) to its end.
fn head(input: impl Into<Stdio>, lines: u64) -> anyhow::Result<()> {
    let status = Command::new("head")
        .args(["-n", &lines.to_string()])
        .stdin(input)
        .stdout(Stdio::null())
        .status()
        .context("running head")?;
    if !status.success() {
        bail!("head failed with {status}");
    }
    Ok(())
}

/// The shortest of `rounds` timings, in seconds.
fn best_of(rounds: usize, mut seconds: impl FnMut() -> anyhow::Result<f64>) -> anyhow::Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        best = best.min(seconds()?);
    }
    Ok(best)
}

/// Time until `head -n LINES` has every line of `input` through a pipe.
fn pipe_step(
    bins: &Bins,
    input: &crate::bench_aggregator::Input,
    rounds: usize,
    ticks: f64,
    out: &mut String,
) -> anyhow::Result<()> {
    let files = [input.path.clone()];
    let followers = [
        Follower::Gnu,
        Follower::Aggregator,
        Follower::AggregatorJson,
        Follower::Reader,
    ];
    let lines = input.lines;
    let mut best = Vec::new();
    for which in followers {
        let mut cpu = f64::NAN;
        let seconds = best_of(rounds, || {
            let seconds;
            (seconds, cpu) = drained_by_head(which.command(bins, &files, None), lines, ticks)?;
            Ok(seconds)
        })?;
        best.push((which, seconds, cpu));
    }
    // For reference: a bare copy into the same pipe, a page per write
    // (`dd bs=4096`), what a producer doing nothing else gets here.
    let copy = best_of(rounds, || {
        let mut dd = Command::new("dd");
        dd.arg(format!("if={}", input.path.display()))
            .args(["bs=4096", "status=none"])
            .stderr(Stdio::null());
        Ok(drained_by_head(dd, lines, ticks)?.0)
    })?;
    // The ceiling: `head` reading the file itself, with no pipe and no
    // producer. No follower can deliver faster than its reader consumes.
    let alone = best_of(rounds, || {
        let input_file = std::fs::File::open(&input.path)
            .with_context(|| format!("opening {}", input.path.display()))?;
        let start = Instant::now();
        head(input_file, lines)?;
        Ok(start.elapsed().as_secs_f64())
    })?;
    let gnu = best[0].1;
    out.push_str(&format!(
        "\nFrom the start of {:.0} MB ({} lines) into a pipe read by `head -n {}`, best of {rounds}\n| follower | seconds | MB/s | × GNU tail (speed) | CPU s |\n|---|---|---|---|---|\n",
        input.bytes as f64 / 1e6,
        input.lines,
        input.lines
    ));
    for (which, seconds, cpu) in best {
        out.push_str(&format!(
            "| {} | {:.3} | {:.0} | {} | {:.3} |\n",
            which.label(),
            seconds,
            input.bytes as f64 / 1e6 / seconds,
            ratio(gnu, seconds),
            cpu
        ));
    }
    out.push_str(&format!(
        "| reference: `dd bs=4096`, a copy and nothing else | {copy:.3} | {:.0} | {} | - |\n",
        input.bytes as f64 / 1e6 / copy,
        ratio(gnu, copy),
    ));
    out.push_str(&format!(
        "| ceiling: `head` reading the file itself, no pipe, no producer | {alone:.3} | {:.0} | {} | - |\n",
        input.bytes as f64 / 1e6 / alone,
        ratio(gnu, alone),
    ));
    Ok(())
}

pub fn run(quick: bool, bin_dir: Option<&Path>) -> anyhow::Result<()> {
    let settings = Settings::new(quick);
    let dir = util::release_bin_dir(bin_dir, &["writer", "reader", "log-aggregator"])?;
    let busybox = util::busybox().context("busybox is needed (apt-get install busybox-static)")?;
    let bins = Bins { dir, busybox };
    let ticks = util::clock_ticks();
    let work = util::target_dir().join("bench-follow");
    std::fs::create_dir_all(&work)?;
    let mut out = String::new();
    let command = if quick {
        "cargo xtask bench follow --quick"
    } else {
        "cargo xtask bench follow"
    };
    out.push_str(&format!("`{command}`\n"));

    let followers = [
        Follower::Aggregator,
        Follower::Reader,
        Follower::Gnu,
        Follower::Busybox,
    ];
    let mut plot = Vec::new();
    let file = work.join("rate.log");
    for rate in RATES {
        eprintln!("following at {rate} lines/s...");
        let rows = follow_step(
            &bins,
            &followers,
            std::slice::from_ref(&file),
            None,
            rate,
            settings.duration,
        )?;
        print_rows(
            &format!(
                "{rate} lines/s for {} s, one write(2) per line",
                settings.duration.as_secs()
            ),
            &rows,
            Follower::Gnu,
            &mut out,
        );
        plot.push((
            rate,
            rows.iter()
                .map(|row| (row.which.label(), row.cpu))
                .collect::<Vec<_>>(),
        ));
        out_flush(&work, &out)?;
    }

    eprintln!("1,000 files at 10 lines/s each...");
    let many = work.join("many");
    let files = many_files(&many, None)?;
    let glob = format!("{}/*.log", many.display());
    let rows = follow_step(
        &bins,
        &[Follower::Aggregator, Follower::Reader, Follower::Gnu],
        &files,
        Some(&glob),
        10,
        settings.many_duration,
    )?;
    print_rows(
        &format!(
            "1,000 files at 10 lines/s each for {} s (aggregator through a glob)",
            settings.many_duration.as_secs()
        ),
        &rows,
        Follower::Gnu,
        &mut out,
    );
    out_flush(&work, &out)?;

    eprintln!("idle with 1,000 files...");
    idle_step(&bins, &work.join("idle"), settings.idle, ticks, &mut out)?;
    out_flush(&work, &out)?;

    eprintln!("pipe throughput...");
    let input = crate::bench_aggregator::generate(&work, settings.size)?;
    pipe_step(&bins, &input, settings.rounds, ticks, &mut out)?;
    out_flush(&work, &out)?;

    let svg = crate::svg_plot::lines(
        "CPU seconds following a line-per-write writer (10 s)",
        "lines/s",
        "CPU s",
        &series(&plot),
    );
    let svg_path = work.join("follow-cost.svg");
    std::fs::write(&svg_path, svg)?;
    println!("{out}");
    eprintln!(
        "table: {}\nplot: {}",
        work.join("follow-cost.md").display(),
        svg_path.display()
    );
    Ok(())
}

/// Per follower: (rate, CPU) points, from per-rate rows.
fn series(plot: &[(u64, Vec<(&'static str, f64)>)]) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for (rate, rows) in plot {
        for (label, cpu) in rows {
            match series.iter_mut().find(|(name, _)| name == label) {
                Some((_, points)) => points.push((*rate as f64, *cpu)),
                None => series.push((label.to_string(), vec![(*rate as f64, *cpu)])),
            }
        }
    }
    series
}

fn out_flush(work: &Path, out: &str) -> anyhow::Result<()> {
    std::fs::write(work.join("follow-cost.md"), out).context("writing the table")
}
