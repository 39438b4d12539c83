//! `writer`: the lab's writer loop, a log load generator, and the checker
//! for what a follower delivered.
//!
//! - Lab mode (`--interval`, the default): every interval, one line per
//!   target, `Wed Nov 25 14:01:13 UTC 2026 - Hello from writer`, like
//!   `while true; do echo "$(date) - ..." >> file; sleep 5; done`.
//! - Load mode (`--rate`): numbered lines in realistic formats at a steady
//!   rate (or flat out), optional rotation, and a report at exit.
//! - `writer verify`: reads a captured stream and reports, per target, lost,
//!   duplicated and reordered lines ([`verify`]).
//!
//! This file owns the flags ([`Args`]), their mapping to a plain [`Config`]
//! and [`run`]; the modules below only see the config.

pub mod format;
pub mod generate;
pub mod markers;
pub mod report;
pub mod target;
pub mod verify;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use sidecar_common::cli::{LogArgs, Tool};
use sidecar_common::clock::TimeFormat;
use sidecar_common::shutdown::Shutdown;
use sidecar_common::units::{parse_bytes, parse_duration};

use crate::format::{Format, LAB_LAYOUT, LOAD_LAYOUT, Layout, Renderer, Source};
use crate::generate::{Plan, Stop, Worker};
use crate::target::{Output, ReopenSignal, RotateMode, Rotation, TargetSpec};

const EXAMPLES: &str = "\
Examples:
  # The lab's writer container: a dated line every 5 s
  writer /data/log.txt
  # -> Wed Nov 25 14:01:13 UTC 2026 - Hello from writer

  # The lab's sidecar-logging app: two files every 3 s
  writer --interval 3s /var/log/app.log='Application log entry' /var/log/error.log='Error log entry'

  # The three-container challenge: `Writer 1: <date>`
  writer --interval 5s --layout '{message}: {time}' /shared/data.txt='Writer 1'

  # The init container: write one line, replacing the file, and exit
  writer --count 1 --truncate --layout '{message}' /config/app.conf='Configuration initialized'

  # Load: 10 000 access-log lines/s for 1 minute, rotated every 10 MB (5 kept)
  writer --rate 10000 --duration 1m --format combined --rotate-size 10MB /var/log/access.log

  # Flat out, 1 million lines, then a JSON report on stderr
  writer --rate 0 --count 1000000 --report json /tmp/load.log

  # Check what a follower delivered (exit 1 on any lost or duplicated line)
  kubectl logs POD -c log-aggregator | writer verify --expect 1000000 -

Targets in WRITER_TARGETS are separated by newlines (messages may contain
spaces and commas). A target literally named `verify` is written as `./verify`.
";

const VERIFY_EXAMPLES: &str = "\
Examples:
  # What the aggregator delivered: every target's lines 1..=100000, once each
  kubectl logs POD -c log-aggregator | writer verify --expect 100000 -

  # A rotated set of files, oldest first
  writer verify app.log.3 app.log.2 app.log.1 app.log

  # A capture that started late (tail -n 10): count losses from the first line seen
  writer verify --from-first --report json capture.txt

  # Two targets wrote 5000 lines each; a target absent from the capture is all lost
  writer verify --expect 5000 --expect-target app --expect-target error capture.txt

Markers (`seq=N target=NAME` and its json, access-log and syslog spellings) are
found anywhere in a line, through prefixes and JSON envelopes. Exit 1 on any
lost, duplicated or unexpected line, or when no marked line was seen.
";

/// Appends timestamped lines to files, generates log load, checks deliveries.
#[derive(Parser, Debug)]
#[command(
    name = "writer",
    version,
    about,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    // Only `verify` shadows a target name; `writer help` would be a second.
    disable_help_subcommand = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub write: WriteArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

impl Tool for Args {
    fn logging(&self) -> &LogArgs {
        &self.log
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check a captured stream for lost, duplicated and reordered lines.
    #[command(after_help = VERIFY_EXAMPLES)]
    Verify(VerifyArgs),
}

/// The writing flags.
#[derive(clap::Args, Debug)]
pub struct WriteArgs {
    /// Files to append to: `PATH` or `PATH=MESSAGE` (split at the first `=`;
    /// default message `Hello from writer`). Missing directories are created.
    #[arg(
        env = "WRITER_TARGETS",
        value_delimiter = '\n',
        required = true,
        value_name = "TARGET"
    )]
    pub targets: Vec<String>,

    /// Lab mode: time between two lines to each target; the first is written
    /// at once. Ignored with --rate (so an image's WRITER_INTERVAL does not
    /// clash with a --rate given at run time).
    #[arg(long, env = "WRITER_INTERVAL", default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,

    /// Load mode: lines per second to each target; 0 = as fast as possible.
    #[arg(long, env = "WRITER_RATE", value_name = "LINES_PER_S")]
    pub rate: Option<f64>,

    /// Stop after N lines per target.
    #[arg(long, env = "WRITER_COUNT", value_name = "N")]
    pub count: Option<u64>,

    /// Stop after this long.
    #[arg(long, env = "WRITER_DURATION", value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,

    /// Write K lines per tick, in one write (the rate stays lines per second).
    #[arg(long, env = "WRITER_BURST", default_value_t = 1, value_name = "K")]
    pub burst: u64,

    /// Pad each line to this many bytes, newline included (e.g. 512, 1KiB).
    #[arg(long, env = "WRITER_SIZE", value_parser = parse_bytes, value_name = "BYTES")]
    pub size: Option<u64>,

    /// Line format.
    #[arg(long, env = "WRITER_FORMAT", value_enum, default_value = "text")]
    pub format: Format,

    /// Text layout with {time}, {message}, {seq}, {target} [default: `{time} - {message}`,
    /// with `seq={seq} target={target}` appended in load mode].
    #[arg(long, env = "WRITER_LAYOUT", value_name = "TEMPLATE")]
    pub layout: Option<String>,

    /// Time stamps of text and json lines [default: date for text, rfc3339 for json].
    #[arg(long, env = "WRITER_TIME_FORMAT", value_enum)]
    pub time_format: Option<TimeFormat>,

    /// Empty each target once at start (like `>` instead of `>>`).
    #[arg(long, env = "WRITER_TRUNCATE")]
    pub truncate: bool,

    /// Name the markers carry (`target=NAME`) instead of the file's stem;
    /// with several targets, a prefix (`NAME-STEM`). Give two writers of one file different names.
    #[arg(long, env = "WRITER_NAME", value_name = "NAME")]
    pub name: Option<String>,

    /// Rotate a target before it would grow past this size.
    #[arg(long, env = "WRITER_ROTATE_SIZE", value_parser = parse_bytes, value_name = "BYTES")]
    pub rotate_size: Option<u64>,

    /// How to rotate.
    #[arg(long, env = "WRITER_ROTATE_MODE", value_enum, default_value = "rename")]
    pub rotate_mode: RotateMode,

    /// rename-late: how long the renamed file still gets the lines before
    /// the writer opens the new one.
    #[arg(long, env = "WRITER_ROTATE_LATE", default_value = "100ms", value_parser = parse_duration, value_name = "DURATION")]
    pub rotate_late: Duration,

    /// Rotated files kept: FILE.1 (newest) ... FILE.N.
    #[arg(
        long,
        env = "WRITER_ROTATE_KEEP",
        default_value_t = 5,
        value_name = "N"
    )]
    pub rotate_keep: u32,

    /// Report at exit on stderr [default: text in load mode, none in lab mode].
    #[arg(long, env = "WRITER_REPORT", value_enum)]
    pub report: Option<ReportFormat>,

    /// Also write the report, as JSON, to this file.
    #[arg(long, env = "WRITER_REPORT_FILE", value_name = "PATH")]
    pub report_file: Option<PathBuf>,
}

/// How the exit report is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
    None,
}

/// `writer verify` flags.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Captured streams, read in order; `-` or none: stdin.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Lines each target wrote: all of 1..=N must be seen, none above.
    #[arg(long, env = "WRITER_VERIFY_EXPECT", value_name = "N")]
    pub expect: Option<u64>,

    /// A target that must be in the stream (repeat, or separate by commas):
    /// one never seen fails, with all of its --expect lines counted lost.
    #[arg(
        long = "expect-target",
        env = "WRITER_VERIFY_EXPECT_TARGET",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub expect_targets: Vec<String>,

    /// Count losses from each target's first seen number, not from 1 (a capture that started late).
    #[arg(long, env = "WRITER_VERIFY_FROM_FIRST")]
    pub from_first: bool,

    /// Report layout on stdout.
    #[arg(
        long,
        env = "WRITER_VERIFY_REPORT",
        value_enum,
        default_value = "table"
    )]
    pub report: VerifyReport,
}

/// How `writer verify` prints its verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VerifyReport {
    Table,
    Json,
}

/// What to run, as plain values.
#[derive(Debug)]
pub enum Config {
    Write(WriteConfig),
    Verify(VerifyConfig),
}

/// Everything the writing loop needs.
#[derive(Debug)]
pub struct WriteConfig {
    pub targets: Vec<TargetSpec>,
    pub plan: Plan,
    pub format: Format,
    pub layout: Layout,
    pub time_format: TimeFormat,
    pub size: Option<usize>,
    pub truncate: bool,
    pub rotation: Option<Rotation>,
    pub report: ReportFormat,
    pub report_file: Option<PathBuf>,
}

/// Everything the checker needs.
#[derive(Debug)]
pub struct VerifyConfig {
    pub files: Vec<PathBuf>,
    pub expect: verify::Expectation,
    pub report: VerifyReport,
}

impl Args {
    /// Checks the flags together and turns them into a [`Config`].
    pub fn into_config(self) -> anyhow::Result<Config> {
        match self.command {
            Some(Command::Verify(args)) => Ok(Config::Verify(VerifyConfig {
                files: args.files,
                expect: verify::Expectation {
                    per_target: args.expect,
                    from_first: args.from_first,
                    targets: args.expect_targets,
                },
                report: args.report,
            })),
            None => self.write.into_config().map(Config::Write),
        }
    }
}

impl WriteArgs {
    fn into_config(self) -> anyhow::Result<WriteConfig> {
        let mut targets = self
            .targets
            .iter()
            .filter(|t| !t.trim().is_empty())
            .map(|t| TargetSpec::parse(t).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if targets.is_empty() {
            bail!("no TARGET given (pass PATH or PATH=MESSAGE, or set WRITER_TARGETS)");
        }
        target::assign_names(&mut targets, self.name.as_deref());
        if self.burst == 0 {
            bail!("--burst must be at least 1");
        }
        let load = self.rate.is_some();
        let period = match self.rate {
            Some(rate) if !rate.is_finite() || rate < 0.0 => {
                bail!("--rate must be a number of lines per second, 0 or more (got {rate})")
            }
            Some(0.0) => None,
            Some(rate) => Some(self.burst as f64 / rate),
            None if self.interval.is_zero() => {
                bail!("--interval must be more than zero (for full speed use --rate 0)")
            }
            None => Some(self.interval.as_secs_f64() * self.burst as f64),
        };
        let default_layout = if load { LOAD_LAYOUT } else { LAB_LAYOUT };
        let layout = Layout::parse(self.layout.as_deref().unwrap_or(default_layout))
            .map_err(anyhow::Error::msg)
            .context("--layout")?;
        if load && self.format == Format::Text && !layout.has_marker() {
            tracing::warn!(
                "the layout has no {{seq}} and {{target}}: `writer verify` cannot check these lines"
            );
        }
        let time_format = self.time_format.unwrap_or(match self.format {
            Format::Text => TimeFormat::Date,
            _ => TimeFormat::Rfc3339,
        });
        let rotation = match self.rotate_size {
            Some(0) => bail!("--rotate-size must be more than zero"),
            Some(size) => Some(Rotation {
                size,
                mode: self.rotate_mode,
                keep: self.rotate_keep,
                late: self.rotate_late,
            }),
            None => None,
        };
        Ok(WriteConfig {
            targets,
            plan: Plan {
                period,
                burst: self.burst,
                count: self.count,
                duration: self.duration,
            },
            format: self.format,
            layout,
            time_format,
            size: self.size.map(|s| usize::try_from(s).unwrap_or(usize::MAX)),
            truncate: self.truncate,
            rotation,
            report: self.report.unwrap_or(if load {
                ReportFormat::Text
            } else {
                ReportFormat::None
            }),
            report_file: self.report_file,
        })
    }
}

/// Runs the configured mode until it is done or shutdown (SIGTERM/SIGINT).
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    match config {
        Config::Write(config) => write(config, shutdown).await,
        Config::Verify(config) => tokio::task::spawn_blocking(move || run_verify(&config))
            .await
            .context("the checker stopped")?,
    }
}

/// Opens every target first (so a bad path fails before anything is
/// written), then runs one thread per target until all are done. SIGHUP
/// makes every target reopen its path at its next write (logrotate's
/// `postrotate` for `create` mode); the handler is installed before the
/// first line, so a SIGHUP can never kill the writer.
async fn write(config: WriteConfig, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    let reopen = Arc::new(ReopenSignal::new());
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    tokio::spawn({
        let reopen = reopen.clone();
        async move {
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP: reopening every target at its next write");
                reopen.request();
            }
        }
    });
    let mut workers = Vec::with_capacity(config.targets.len());
    for spec in &config.targets {
        workers.push(Worker {
            output: Output::open(&spec.path, config.truncate, config.rotation)?
                .reopen_on(reopen.clone()),
            source: Source::new(&spec.name, spec.message.as_deref()),
            renderer: Renderer::new(
                config.format,
                config.layout.clone(),
                config.time_format,
                config.size,
            ),
            path: spec.path.display().to_string(),
        });
    }
    let stop = Arc::new(Stop::new());
    let plan = config.plan;
    // A thread of its own per target, not tokio's blocking pool: the pool
    // runs 512 at a time, so with more targets the rest started only when
    // the first ones had finished.
    let mut handles = Vec::with_capacity(workers.len());
    for worker in workers {
        let stop_worker = stop.clone();
        let (done, outcome) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("writer-target".into())
            .spawn(move || {
                let outcome = worker.run(&plan, &stop_worker);
                if outcome.is_err() {
                    // One target failing ends the run: its error is the exit status.
                    stop_worker.trigger();
                }
                let _ = done.send(outcome);
            });
        if let Err(error) = spawned {
            stop.trigger();
            return Err(error).context("starting a writing thread");
        }
        handles.push(outcome);
    }
    let all_done = async {
        let mut reports = Vec::with_capacity(handles.len());
        for handle in handles {
            reports.push(handle.await.context("a writing thread stopped")??);
        }
        anyhow::Ok(reports)
    };
    tokio::pin!(all_done);
    let reports = tokio::select! {
        reports = &mut all_done => reports?,
        () = shutdown.requested() => {
            stop.trigger();
            all_done.await?
        }
    };
    let report = report::Report::new(reports);
    match config.report {
        ReportFormat::Text => eprint!("{}", report.to_text()),
        ReportFormat::Json => eprintln!("{}", report.to_json()),
        ReportFormat::None => {}
    }
    if let Some(path) = &config.report_file {
        std::fs::write(path, format!("{}\n", report.to_json()))
            .with_context(|| format!("writing the report to {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the captured streams and prints the verdict; exit 1 unless it passed.
fn run_verify(config: &VerifyConfig) -> anyhow::Result<ExitCode> {
    let mut tally = verify::Tally::new();
    let stdin_only = [PathBuf::from("-")];
    let files = if config.files.is_empty() {
        &stdin_only[..]
    } else {
        &config.files[..]
    };
    for path in files {
        let (reader, name): (Box<dyn Read>, String) = if path.as_os_str() == "-" {
            (Box::new(std::io::stdin()), "standard input".to_owned())
        } else {
            let file =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            (Box::new(file), path.display().to_string())
        };
        let mut reader = BufReader::with_capacity(256 * 1024, reader);
        let mut line = Vec::with_capacity(1024);
        loop {
            line.clear();
            let read = reader
                .read_until(b'\n', &mut line)
                .with_context(|| format!("reading {name}"))?;
            if read == 0 {
                break;
            }
            tally.observe(&line);
        }
    }
    let summary = tally.summary(&config.expect);
    let text = match config.report {
        VerifyReport::Table => summary.to_table(),
        VerifyReport::Json => format!("{}\n", summary.to_json()),
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing the report to stdout")?;
    Ok(if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
