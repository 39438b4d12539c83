//! `cargo xtask bench ship`: log-aggregator shipping one generated file to
//! a real rsyslog over RELP and plain TCP syslog and to the OTLP test
//! receiver, next to rsyslog's own `imfile` → `omrelp` / `omfwd` reading the
//! same file, in one run; then memory while the RELP backend is down.
//!
//! Each run starts a fresh receiving rsyslog (imrelp or imtcp into a file,
//! direct main queue: written before answered) or the OTLP receiver of
//! log-aggregator's tests, starts the sender on the whole file, and ends
//! when every line arrived. Figures: lines/s from the sender's start to the
//! last line at the backend, the sender's CPU seconds per 10k lines (utime +
//! stime from /proc just before it is stopped) and its peak RSS. The
//! OpenTelemetry Collector's `filelog` → `otlphttp` is not run: no
//! trustworthy build of it is installable here (docs/shipping.md,
//! *Conformance*).
//!
//! Outage: log-aggregator follows a file that grows at a steady rate while
//! nothing listens on its RELP address; RSS is sampled every second, then
//! rsyslog starts and the catch-up is timed.
//!
//! Settings (environment): `SHIP_BENCH_LINES` (default 200000),
//! `SHIP_BENCH_OUTAGE_SECS` (default 60), `SHIP_BENCH_OUTAGE_RATE` lines/s
//! written during the outage (default 5000). Needs rsyslog and
//! rsyslog-relp, and .lab/otlp-venv (`cargo xtask test --install`).
//! Figures, not a test: it never fails on speed.

use std::io::{BufWriter, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::util;

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

/// How long one run may take before the bench gives up on it.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// One generated line, about 100 bytes; `seq=` makes the last one findable.
fn input_line(seq: u64) -> String {
    format!(
        "2026-11-28T12:00:00.{:03}Z INFO [worker-{}] request seq={seq} path=/api/v1/items/{} status=200\n",
        seq % 1000,
        seq % 8,
        seq % 977
    )
}

fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(text) => text.parse().with_context(|| format!("{name}={text:?}")),
        Err(_) => Ok(default),
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Newlines in `path` (0 while it does not exist).
fn lines_in(path: &Path) -> u64 {
    std::fs::read(path)
        .map(|bytes| bytes.iter().filter(|byte| **byte == b'\n').count() as u64)
        .unwrap_or(0)
}

/// A foreground rsyslogd with the config `body`, in `dir`.
struct Rsyslog {
    child: Child,
}

impl Rsyslog {
    fn start(dir: &Path, body: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("work"))?;
        let config = format!(
            "global(workDirectory=\"{}\" maxMessageSize=\"64k\")\n{body}",
            dir.join("work").display()
        );
        let path = dir.join("rsyslog.conf");
        std::fs::write(&path, config)?;
        let child = Command::new(RSYSLOGD)
            .arg("-n")
            .arg("-f")
            .arg(&path)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!("starting {RSYSLOGD} (apt-get install rsyslog rsyslog-relp)")
            })?;
        Ok(Self { child })
    }

    /// A receiver: `input` (imrelp, imtcp) on `port`, every MSG into `output`.
    fn receiver(dir: &Path, input: &str, port: u16, output: &Path) -> anyhow::Result<Self> {
        let server = Self::start(
            dir,
            &format!(
                r#"main_queue(queue.type="Direct")
module(load="{input}")
input(type="{input}" port="{port}" address="127.0.0.1")
template(name="t" type="string" string="%msg%\n")
action(type="omfile" file="{}" template="t" flushOnTXEnd="on" asyncWriting="off")
"#,
                output.display()
            ),
        )?;
        util::wait_for_every(
            "rsyslogd listening",
            Duration::from_secs(20),
            Duration::from_millis(20),
            || {
                TcpStream::connect(("127.0.0.1", port))
                    .map(drop)
                    .map_err(|error| error.to_string())
            },
        )?;
        Ok(server)
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        util::stop(&mut self.child);
    }
}

/// The OTLP receiver of log-aggregator's tests, writing into `out`.
struct OtlpReceiver {
    child: Child,
    out: PathBuf,
    port: u16,
}

impl OtlpReceiver {
    fn start(out: &Path) -> anyhow::Result<Self> {
        let root = util::workspace_root();
        let python = util::lab_dir().join("otlp-venv/bin/python3");
        if !python.exists() {
            bail!(
                "{} is missing: cargo xtask test --install",
                python.display()
            );
        }
        std::fs::create_dir_all(out)?;
        let child = Command::new(python)
            .arg(root.join("log-aggregator/tests/support/otlp_receiver.py"))
            .arg(out)
            .stdout(Stdio::null())
            .spawn()?;
        let port_file = out.join("port");
        util::wait_for_every(
            "the OTLP receiver listening",
            Duration::from_secs(30),
            Duration::from_millis(20),
            || {
                std::fs::read_to_string(&port_file)
                    .map_err(|error| error.to_string())
                    .and_then(|text| text.trim().parse().map_err(|_| "no port".to_owned()))
            },
        )
        .map(|port| Self {
            child,
            out: out.to_owned(),
            port,
        })
    }

    fn records(&self) -> u64 {
        std::fs::read_to_string(self.out.join("stats.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|stats| stats["records"].as_u64())
            .unwrap_or(0)
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        util::stop(&mut self.child);
    }
}

/// One row of the table.
struct Row {
    name: String,
    lines: u64,
    elapsed: Duration,
    cpu_seconds: f64,
    peak_rss_kib: u64,
}

/// Runs `sender` until `arrived()` reaches `lines`; measures it.
fn measure(
    name: &str,
    mut sender: Command,
    lines: u64,
    arrived: impl Fn() -> u64,
) -> anyhow::Result<Row> {
    let ticks = util::clock_ticks();
    let started = Instant::now();
    let mut child = sender
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", util::describe(&sender)))?;
    let waited = util::wait_for_every(
        &format!("{name}: {lines} lines at the backend"),
        RUN_TIMEOUT,
        Duration::from_millis(10),
        || {
            let count = arrived();
            if count >= lines {
                Ok(())
            } else {
                Err(format!("{count} so far"))
            }
        },
    );
    let elapsed = started.elapsed();
    let stats = util::proc_stats(child.id(), ticks);
    util::stop(&mut child);
    waited?;
    let stats = stats?;
    Ok(Row {
        name: name.to_owned(),
        lines,
        elapsed,
        cpu_seconds: stats.cpu_seconds,
        peak_rss_kib: stats.peak_rss_kib,
    })
}

pub fn run(bin_dir: Option<&Path>) -> anyhow::Result<()> {
    let lines = env_number("SHIP_BENCH_LINES", 200_000)?;
    let outage = Duration::from_secs(env_number("SHIP_BENCH_OUTAGE_SECS", 60)?);
    let outage_rate = env_number("SHIP_BENCH_OUTAGE_RATE", 5_000)?;
    if !Path::new(RSYSLOGD).exists() {
        bail!("{RSYSLOGD} is missing: apt-get install rsyslog rsyslog-relp");
    }
    let bin = util::release_bin_dir(bin_dir, &["log-aggregator"])?;
    let aggregator = bin.join("log-aggregator");
    let scratch = util::target_dir().join("bench-ship");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let root = scratch.as_path();
    let input = root.join("app.log");
    {
        let mut file = BufWriter::new(std::fs::File::create(&input)?);
        for seq in 1..=lines {
            file.write_all(input_line(seq).as_bytes())?;
        }
        file.flush()?;
    }
    let size = std::fs::metadata(&input)?.len();
    eprintln!(
        "bench ship: {lines} lines ({:.1} MB) in {}",
        size as f64 / 1e6,
        input.display()
    );

    let ours = |sink: String| {
        let mut command = Command::new(&aggregator);
        command
            .env_remove("LOG_AGGREGATOR_SOURCES")
            .args(["--follow", "--from", "beginning", "--sink", &sink])
            .arg(&input);
        command
    };
    let mut rows = Vec::new();
    for (input_module, sink) in [("imrelp", "relp"), ("imtcp", "syslog-tcp")] {
        // log-aggregator, then rsyslog's imfile, each to a fresh receiver.
        let dir = root.join(format!("{sink}-ours"));
        let port = free_port()?;
        let output = dir.join("received.log");
        let _server = Rsyslog::receiver(&dir.join("receiver"), input_module, port, &output)?;
        rows.push(measure(
            &format!("log-aggregator → {sink}"),
            ours(format!("{sink}=127.0.0.1:{port}")),
            lines,
            || lines_in(&output),
        )?);

        let dir = root.join(format!("{sink}-rsyslog"));
        let port = free_port()?;
        let output = dir.join("received.log");
        let _server = Rsyslog::receiver(&dir.join("receiver"), input_module, port, &output)?;
        let action = if sink == "relp" {
            format!(
                r#"module(load="omrelp")
ruleset(name="ship") {{ action(type="omrelp" target="127.0.0.1" port="{port}") }}"#
            )
        } else {
            format!(
                r#"ruleset(name="ship") {{ action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp" TCP_Framing="octet-counted") }}"#
            )
        };
        let sender_dir = dir.join("sender");
        std::fs::create_dir_all(sender_dir.join("work"))?;
        let config = format!(
            "global(workDirectory=\"{work}\" maxMessageSize=\"64k\")\n\
             module(load=\"imfile\")\n{action}\n\
             input(type=\"imfile\" file=\"{file}\" tag=\"app\" ruleset=\"ship\" freshStartTail=\"off\")\n",
            work = sender_dir.join("work").display(),
            file = input.display(),
        );
        std::fs::write(sender_dir.join("rsyslog.conf"), config)?;
        let mut sender = Command::new(RSYSLOGD);
        sender
            .arg("-n")
            .arg("-f")
            .arg(sender_dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(sender_dir.join("rsyslogd.pid"));
        let module = if sink == "relp" { "omrelp" } else { "omfwd" };
        rows.push(measure(
            &format!("rsyslog imfile → {module}"),
            sender,
            lines,
            || lines_in(&output),
        )?);
    }
    {
        let receiver = OtlpReceiver::start(&root.join("otlp"))?;
        rows.push(measure(
            "log-aggregator → otlp (protobuf)",
            ours(format!("otlp=http://127.0.0.1:{}", receiver.port)),
            lines,
            || receiver.records(),
        )?);
    }
    {
        let receiver = OtlpReceiver::start(&root.join("otlp-gzip"))?;
        let mut command = ours(format!("otlp=http://127.0.0.1:{}", receiver.port));
        command.args(["--otlp-compression", "gzip"]);
        rows.push(measure(
            "log-aggregator → otlp (protobuf, gzip)",
            command,
            lines,
            || receiver.records(),
        )?);
    }

    println!();
    println!(
        "{lines} lines, {:.1} MB, one file read from its start",
        size as f64 / 1e6
    );
    println!();
    println!("| sender → backend | lines/s | CPU s per 10k lines | peak RSS |");
    println!("|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {:.0} | {:.3} | {:.1} MiB |",
            row.name,
            row.lines as f64 / row.elapsed.as_secs_f64(),
            row.cpu_seconds / (row.lines as f64 / 10_000.0),
            row.peak_rss_kib as f64 / 1024.0
        );
    }

    outage_run(root, &aggregator, outage, outage_rate)
}

/// Memory while nothing answers on the RELP address, then the catch-up.
fn outage_run(root: &Path, aggregator: &Path, outage: Duration, rate: u64) -> anyhow::Result<()> {
    let dir = root.join("outage");
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("app.log");
    std::fs::write(&log, "")?;
    let port = free_port()?;
    let ticks = util::clock_ticks();
    let mut child = Command::new(aggregator)
        .env_remove("LOG_AGGREGATOR_SOURCES")
        .args(["--follow", "--sink", &format!("relp=127.0.0.1:{port}")])
        .args(["--ship-backoff-max", "1s", "--checkpoint-dir"])
        .arg(dir.join("state"))
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    util::wait_for_every(
        "log-aggregator following the file",
        Duration::from_secs(20),
        Duration::from_millis(10),
        || {
            if util::has_open(pid, &log) {
                Ok(())
            } else {
                Err("not open yet".to_owned())
            }
        },
    )?;
    let mut file = std::fs::OpenOptions::new().append(true).open(&log)?;
    let started = Instant::now();
    let start_rss = util::proc_stats(pid, ticks)?.rss_kib;
    let mut written = 0u64;
    let mut max_rss = start_rss;
    let mut next_sample = started;
    // Writing at a steady rate for the outage's length: the time is the
    // scenario, not a synchronisation.
    while started.elapsed() < outage {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        let mut batch = String::new();
        while written < due {
            written += 1;
            batch.push_str(&input_line(written));
        }
        file.write_all(batch.as_bytes())?;
        if Instant::now() >= next_sample {
            max_rss = max_rss.max(util::proc_stats(pid, ticks)?.rss_kib);
            next_sample += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let end_rss = util::proc_stats(pid, ticks)?.rss_kib;
    let output = dir.join("received.log");
    let back = Instant::now();
    let _server = Rsyslog::receiver(&dir.join("receiver"), "imrelp", port, &output)?;
    let caught_up = util::wait_for_every(
        "every line written during the outage at rsyslog",
        RUN_TIMEOUT,
        Duration::from_millis(10),
        || {
            let count = lines_in(&output);
            if count >= written {
                Ok(())
            } else {
                Err(format!("{count} of {written}"))
            }
        },
    );
    let catch_up = back.elapsed();
    let stats = util::proc_stats(pid, ticks);
    util::stop(&mut child);
    caught_up?;
    let stats = stats?;
    println!();
    println!(
        "RELP backend down {:.0} s while {written} lines ({:.1} MB) were written at {rate}/s:",
        outage.as_secs_f64(),
        std::fs::metadata(&log)?.len() as f64 / 1e6
    );
    println!();
    println!(
        "| RSS at start | max RSS during the outage | RSS at its end | catch-up after rsyslog started | peak RSS (whole run) |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} s ({:.0} lines/s) | {:.1} MiB |",
        start_rss as f64 / 1024.0,
        max_rss as f64 / 1024.0,
        end_rss as f64 / 1024.0,
        catch_up.as_secs_f64(),
        written as f64 / catch_up.as_secs_f64(),
        stats.peak_rss_kib as f64 / 1024.0
    );
    Ok(())
}
