//! `cargo xtask bench aggregator`: log-aggregator against what a user would
//! otherwise run, in one run on the same generated files.
//!
//! 1. Throughput: stream mode (plain, json) and GNU `tail -n +1 -F` reading
//!    one large file from its start; each run ends when every line has come
//!    out on its stdout (newlines counted by the bench). Lines/s, MB/s of
//!    input, CPU seconds and peak RSS (`VmHWM`, read from /proc just before
//!    the process is stopped).
//! 2. Following a file while `writer --rate 0` appends as fast as it can:
//!    lines counted and the lag between the writer's exit and the last line
//!    out, for stream mode and `tail -F`.
//! 3. Idle: CPU and RSS over a window of stream mode, snapshot mode and the
//!    lab's busybox loop side by side on the lab's two files, with a line
//!    appended to each every 3 s as the lab's app does.
//!
//! Settings (environment, as `cargo xtask bench` takes no per-bench flags):
//! `AGGREGATOR_BENCH_SIZE` (default `1GB`; e.g. `100MB` for a quick run),
//! `AGGREGATOR_BENCH_IDLE_SECS` (default 60), `AGGREGATOR_BENCH_WRITER_LINES`
//! (default 2000000). Figures, not a test: it never fails on speed.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::util;

/// One line of the generated input: about 110 bytes, like an access log.
fn input_line(number: u64) -> String {
    format!(
        "2026-11-25T14:01:13.{:03}Z INFO [worker-{}] request id={number:010} path=/api/v1/items/{} status=200 duration_ms={}\n",
        number % 1000,
        number % 8,
        number % 977,
        number % 250
    )
}

struct Settings {
    size: u64,
    idle: Duration,
    writer_lines: u64,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        let size = match std::env::var("AGGREGATOR_BENCH_SIZE") {
            Ok(text) => crate::stats::parse_size(&text).with_context(|| {
                format!("AGGREGATOR_BENCH_SIZE={text:?} is not a size (e.g. 100MB, 1GB)")
            })? as u64,
            Err(_) => 1_000_000_000,
        };
        let idle = match std::env::var("AGGREGATOR_BENCH_IDLE_SECS") {
            Ok(text) => Duration::from_secs(
                text.parse()
                    .with_context(|| format!("AGGREGATOR_BENCH_IDLE_SECS={text:?}"))?,
            ),
            Err(_) => Duration::from_secs(60),
        };
        let writer_lines = match std::env::var("AGGREGATOR_BENCH_WRITER_LINES") {
            Ok(text) => text
                .parse()
                .with_context(|| format!("AGGREGATOR_BENCH_WRITER_LINES={text:?}"))?,
            Err(_) => 2_000_000,
        };
        Ok(Self {
            size,
            idle,
            writer_lines,
        })
    }
}

/// The generated input: reused when a file of the same size is there.
pub(crate) struct Input {
    pub(crate) path: PathBuf,
    pub(crate) bytes: u64,
    pub(crate) lines: u64,
}

pub(crate) fn generate(dir: &Path, size: u64) -> anyhow::Result<Input> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("input-{size}.log"));
    let lines_path = dir.join(format!("input-{size}.lines"));
    if let (Ok(meta), Ok(lines)) = (
        std::fs::metadata(&path),
        std::fs::read_to_string(&lines_path),
    ) {
        if let Ok(lines) = lines.trim().parse() {
            eprintln!("reusing {} ({} bytes)", path.display(), meta.len());
            return Ok(Input {
                path,
                bytes: meta.len(),
                lines,
            });
        }
    }
    eprintln!("generating {} ({size} bytes)...", path.display());
    let mut out = BufWriter::with_capacity(
        1 << 20,
        File::create(&path).with_context(|| format!("creating {}", path.display()))?,
    );
    let (mut bytes, mut lines) = (0u64, 0u64);
    while bytes < size {
        let line = input_line(lines);
        out.write_all(line.as_bytes())?;
        bytes += line.len() as u64;
        lines += 1;
    }
    out.flush()?;
    std::fs::write(&lines_path, lines.to_string())?;
    Ok(Input { path, bytes, lines })
}

struct Throughput {
    name: String,
    lines: u64,
    input_bytes: u64,
    seconds: f64,
    stats: util::ProcStats,
}

impl Throughput {
    fn lines_per_second(&self) -> f64 {
        self.lines as f64 / self.seconds
    }
    fn mb_per_second(&self) -> f64 {
        self.input_bytes as f64 / 1e6 / self.seconds
    }
}

/// Reads `child`'s stdout until `bytes` bytes came out; returns when. Bytes,
/// not lines, are counted: the bench runs as a debug build, and a per-byte
/// loop here would be slower than the tools it measures.
fn read_bytes_out(child: &mut Child, bytes: u64) -> anyhow::Result<Instant> {
    let mut stdout = child.stdout.take().context("stdout not piped")?;
    let mut buffer = vec![0u8; 1 << 20];
    let mut seen = 0u64;
    while seen < bytes {
        let read = stdout.read(&mut buffer)?;
        if read == 0 {
            bail!("output ended after {seen} of {bytes} bytes");
        }
        seen += read as u64;
    }
    let done = Instant::now();
    // Keep the pipe open (not read) until the process is stopped.
    child.stdout = Some(stdout);
    Ok(done)
}

/// The size of stream mode's JSON output for the generated input, whose
/// lines need no escaping: each line gains a fixed envelope.
fn json_output_bytes(input: &Input) -> u64 {
    let path = input.path.display().to_string();
    let envelope =
        format!("{{\"file\":\"{path}\",\"line\":\"\",\"time\":\"2026-11-25T14:01:13.123Z\"}}");
    // The line's own newline becomes the record's.
    input.bytes + input.lines * envelope.len() as u64
}

fn throughput(
    name: &str,
    mut command: Command,
    input: &Input,
    output_bytes: u64,
    ticks: f64,
) -> anyhow::Result<Throughput> {
    eprintln!("+ {}", util::describe(&command));
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", util::describe(&command)))?;
    let done = read_bytes_out(&mut child, output_bytes)?;
    let stats = util::proc_stats(child.id(), ticks)?;
    util::stop(&mut child);
    Ok(Throughput {
        name: name.to_owned(),
        lines: input.lines,
        input_bytes: input.bytes,
        seconds: (done - started).as_secs_f64(),
        stats,
    })
}

struct Following {
    name: String,
    lines: u64,
    writer_seconds: f64,
    lag_seconds: f64,
    stats: util::ProcStats,
}

/// Follows an empty file while `writer --rate 0` appends `lines` lines.
fn follow_while_writing(
    name: &str,
    mut follower: Command,
    writer: &Path,
    file: &Path,
    lines: u64,
    ticks: f64,
) -> anyhow::Result<Following> {
    let _ = std::fs::remove_file(file);
    File::create(file)?;
    follower
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    eprintln!("+ {}", util::describe(&follower));
    let mut child = follower.spawn()?;
    // It must have the file open first: a follower that is not running yet
    // would not be measured following.
    util::wait_open(
        name,
        child.id(),
        file,
        Duration::from_secs(30),
        Duration::from_millis(10),
    )?;
    let mut write = Command::new(writer);
    write
        .args(["--rate", "0", "--count", &lines.to_string()])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    eprintln!("+ {}", util::describe(&write));
    let started = Instant::now();
    let mut writing = write.spawn().context("starting writer")?;
    // How many bytes came out so far, counted by a thread that reads until
    // the follower is stopped; the target is known once the writer is done.
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let mut stdout = child.stdout.take().context("stdout not piped")?;
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 1 << 20];
            while let Ok(read @ 1..) = stdout.read(&mut buffer) {
                seen.fetch_add(read as u64, std::sync::atomic::Ordering::Release);
            }
        });
    }
    let status = writing.wait()?;
    let written = Instant::now();
    if !status.success() {
        bail!("writer failed with {status}");
    }
    let size = std::fs::metadata(file)?.len();
    while seen.load(std::sync::atomic::Ordering::Acquire) < size {
        if written.elapsed() > Duration::from_secs(120) {
            bail!(
                "{name}: only {} of {size} bytes out 120 s after the writer ended",
                seen.load(std::sync::atomic::Ordering::Acquire)
            );
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let done = Instant::now();
    let stats = util::proc_stats(child.id(), ticks)?;
    util::stop(&mut child);
    Ok(Following {
        name: name.to_owned(),
        lines,
        writer_seconds: (written - started).as_secs_f64(),
        lag_seconds: done.saturating_duration_since(written).as_secs_f64(),
        stats,
    })
}

struct Idle {
    name: String,
    cpu_seconds: f64,
    rss_kib: u64,
    anon_kib: u64,
}

/// The lab's aggregator loop; the folder is its first argument (`$1`),
/// never spliced into the script.
const LAB_LOOP: &str = r#"while true; do
  if [ -f "$1/app.log" ]; then
    echo "=== Application Logs ==="
    tail -n 5 "$1/app.log"
  fi
  if [ -f "$1/error.log" ]; then
    echo "=== Error Logs ==="
    tail -n 5 "$1/error.log"
  fi
  echo "---"
  sleep 10
done"#;

fn idle(aggregator: &Path, dir: &Path, window: Duration, ticks: f64) -> anyhow::Result<Vec<Idle>> {
    std::fs::create_dir_all(dir)?;
    let app = dir.join("app.log");
    let error = dir.join("error.log");
    for path in [&app, &error] {
        let mut file = File::create(path)?;
        for number in 0..1000 {
            writeln!(file, "Wed Nov 25 14:01:13 UTC 2026 - log entry {number}")?;
        }
    }
    let mut runs: Vec<(String, Command)> = Vec::new();
    let mut stream = Command::new(aggregator);
    stream.arg("--follow").arg(&app).arg(&error);
    runs.push(("log-aggregator --follow (stream)".into(), stream));
    let mut snapshot = Command::new(aggregator);
    snapshot
        .args(["--interval", "10s", "--lines", "5"])
        .arg(format!("Application Logs={}", app.display()))
        .arg(format!("Error Logs={}", error.display()));
    runs.push(("log-aggregator (snapshot, lab flags)".into(), snapshot));
    if let Some(busybox) = util::busybox() {
        let mut lab = Command::new(busybox);
        lab.args(["sh", "-c", LAB_LOOP, "lab-loop"]).arg(dir);
        runs.push(("lab busybox sh loop".into(), lab));
    }
    let mut children = Vec::new();
    for (name, mut command) in runs {
        eprintln!("+ {}", util::describe(&command));
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        children.push((name, command.spawn()?));
    }
    // Past start-up (first snapshot, first read of the files).
    std::thread::sleep(Duration::from_secs(1));
    let before: Vec<util::ProcStats> = children
        .iter()
        .map(|(_, child)| util::proc_stats(child.id(), ticks))
        .collect::<anyhow::Result<_>>()?;
    eprintln!(
        "idle window: {} s, a line appended to each file every 3 s",
        window.as_secs()
    );
    let started = Instant::now();
    let mut entry = 1000;
    while started.elapsed() < window {
        for path in [&app, &error] {
            let mut file = std::fs::OpenOptions::new().append(true).open(path)?;
            writeln!(file, "Wed Nov 25 14:01:13 UTC 2026 - log entry {entry}")?;
        }
        entry += 1;
        std::thread::sleep(Duration::from_secs(3).min(window.saturating_sub(started.elapsed())));
    }
    let mut results = Vec::new();
    for ((name, mut child), before) in children.into_iter().zip(before) {
        let after = util::proc_stats(child.id(), ticks)?;
        util::stop(&mut child);
        results.push(Idle {
            name,
            cpu_seconds: after.cpu_seconds - before.cpu_seconds,
            rss_kib: after.rss_kib,
            anon_kib: after.anon_kib,
        });
    }
    Ok(results)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn run(bin_dir: Option<&Path>) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let release = util::release_bin_dir(bin_dir, &["log-aggregator", "writer"])?;
    let aggregator = release.join("log-aggregator");
    let writer = Some(release.join("writer")).filter(|writer| writer.exists());
    let ticks = util::clock_ticks();
    let work = util::target_dir().join("bench-aggregator");
    let input = generate(&work, settings.size)?;

    let mut plain = Command::new(&aggregator);
    plain.arg("--follow").arg(&input.path);
    let mut json = Command::new(&aggregator);
    json.args(["--follow", "--output", "json"]).arg(&input.path);
    let mut tail = Command::new("tail");
    tail.args(["-n", "+1", "-F"]).arg(&input.path);
    let runs = [
        throughput("GNU tail -n +1 -F", tail, &input, input.bytes, ticks)?,
        throughput(
            "log-aggregator --follow (plain)",
            plain,
            &input,
            input.bytes,
            ticks,
        )?,
        throughput(
            "log-aggregator --follow --output json",
            json,
            &input,
            json_output_bytes(&input),
            ticks,
        )?,
    ];

    println!();
    println!(
        "### Reading {:.0} MB ({} lines) from the start",
        input.bytes as f64 / 1e6,
        input.lines
    );
    println!();
    println!("| run | lines/s | MB/s | CPU s | peak RSS MiB | throughput vs tail -F |");
    println!("|---|---:|---:|---:|---:|---:|");
    let baseline = runs[0].lines_per_second();
    for run in &runs {
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.1} | {:.2}x |",
            run.name,
            run.lines_per_second(),
            run.mb_per_second(),
            run.stats.cpu_seconds,
            mib(run.stats.peak_rss_kib),
            run.lines_per_second() / baseline
        );
    }

    if let Some(writer) = writer {
        let file = work.join("followed.log");
        let mut ours = Command::new(&aggregator);
        ours.arg("--follow").arg(&file);
        let mut tail = Command::new("tail");
        tail.args(["-n", "+1", "-F"]).arg(&file);
        let follows = [
            follow_while_writing(
                "GNU tail -n +1 -F",
                tail,
                &writer,
                &file,
                settings.writer_lines,
                ticks,
            )?,
            follow_while_writing(
                "log-aggregator --follow",
                ours,
                &writer,
                &file,
                settings.writer_lines,
                ticks,
            )?,
        ];
        println!();
        println!(
            "### Following a file while `writer --rate 0` appends {} lines",
            settings.writer_lines
        );
        println!();
        println!("| run | lines out | writer s | lag after writer exit s | CPU s | peak RSS MiB |");
        println!("|---|---:|---:|---:|---:|---:|");
        for run in &follows {
            println!(
                "| {} | {} | {:.2} | {:.3} | {:.2} | {:.1} |",
                run.name,
                run.lines,
                run.writer_seconds,
                run.lag_seconds,
                run.stats.cpu_seconds,
                mib(run.stats.peak_rss_kib)
            );
        }
    }

    let idles = idle(&aggregator, &work.join("idle"), settings.idle, ticks)?;
    println!();
    println!(
        "### Idle over {} s (the lab's two files, a line each every 3 s)",
        settings.idle.as_secs()
    );
    println!();
    println!("| run | CPU s | CPU % | RSS MiB | of which anonymous MiB | RSS vs busybox loop |");
    println!("|---|---:|---:|---:|---:|---:|");
    let busybox_rss = idles
        .iter()
        .find(|run| run.name.contains("busybox"))
        .map(|run| run.rss_kib);
    for run in &idles {
        let ratio = busybox_rss
            .map(|base| format!("{:.2}x", run.rss_kib as f64 / base as f64))
            .unwrap_or_else(|| "n/a".into());
        println!(
            "| {} | {:.2} | {:.3} | {:.1} | {:.2} | {ratio} |",
            run.name,
            run.cpu_seconds,
            100.0 * run.cpu_seconds / settings.idle.as_secs_f64(),
            mib(run.rss_kib),
            mib(run.anon_kib)
        );
    }
    println!();
    println!(
        "Targets: plain throughput >= GNU tail -F; peak RSS < 8 MiB on the large file; idle CPU <= the busybox loop's."
    );
    Ok(())
}
