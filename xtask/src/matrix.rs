//! `cargo xtask matrix`: the rotation matrix. Does a follower deliver every
//! line exactly once, whatever rotates the file under it?
//!
//! One *run* is a rotation mode at a rate: a fresh temp directory with an
//! empty `logs/app.log`, the followers started on it side by side (each with
//! its stdout captured to its own file), then `writer --rate R` writing
//! numbered lines for a few seconds while the file is rotated:
//! - by the real `logrotate` (`logrotate -s STATE CONF`, run every [`TICK`]
//!   by this harness, with a `size` small enough that most ticks rotate):
//!   `create` (rename, then `postrotate` sends the writer SIGHUP and it
//!   reopens), `copytruncate`, `create` + `compress`, `create` +
//!   `compress` + `delaycompress`, `create` + `dateext`, and `copytruncate` +
//!   `compress` + `delaycompress`;
//! - by the writer itself where logrotate has no such mode (`--rotate-mode`):
//!   `delete` (unlink and recreate) and `rename-late` (the renamed file still
//!   gets lines for 100 ms before the writer opens the new one).
//!
//! The followers of a run: ours, `log-aggregator --follow --from beginning
//! --output plain`, on the glob `logs/app.log*` and on the plain name
//! `logs/app.log`, each once per restart kind: none; SIGTERM half-way then
//! started again; SIGKILL half-way then started again (both restarts with a
//! `--checkpoint-dir`, so the second process continues where the first
//! stopped); and GNU `tail -n +1 -F logs/app.log` for comparison. A *cell*
//! is one follower in one run. Running a run's followers side by side keeps
//! the matrix short on two cores; it only adds CPU contention, which widens
//! the races a follower must survive and never hides a lost line.
//!
//! After the writer stops, each capture is watched until it holds as many
//! lines as were written and stays still for [`SETTLE`], or stays still for
//! [`QUIET`]; then the follower is stopped (SIGTERM: it drains) and `writer
//! verify --expect N --expect-target app` counts lost, duplicated and
//! out-of-order lines; lines holding control bytes or invalid UTF-8 (a
//! compressed rotated file read as text) are counted as binary.
//!
//! Verdict: a glob cell fails on any lost, duplicated or binary line. A
//! plain-name cell fails only when it lost more than GNU `tail -F` in the
//! same run: following one name cannot see a file rotated away between two
//! looks, and `tail -F` is what a user would otherwise pick. The table goes
//! to stdout and to `--out` (markdown); the exit status is non-zero when any
//! cell failed. How to read it: docs/rotation-matrix.md.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::util;

#[derive(clap::Args)]
pub struct MatrixArgs {
    /// Run a failing run once more, in a fresh directory, and fail only if
    /// it fails again (both outcomes are printed): what CI uses, since the
    /// cells race real processes on a shared machine.
    #[arg(long)]
    rerun_failed: bool,

    /// The CI subset: rates 1k and max, every restart (none, SIGTERM,
    /// SIGKILL: a run's followers run side by side), every rotation mode,
    /// 3 s per run (about three minutes on two cores).
    #[arg(long, conflicts_with = "full")]
    quick: bool,

    /// Every cell: rates 1k, 100k and max, restarts none, SIGTERM and
    /// SIGKILL (the default without --quick).
    #[arg(long)]
    full: bool,

    /// Only these rotation modes [default: all].
    #[arg(long, value_delimiter = ',', value_name = "MODE")]
    modes: Vec<Mode>,

    /// Only these rates, lines/s; 0 = as fast as the writer goes
    /// [default: 1000,0 with --quick, else 1000,100000,0].
    #[arg(long, value_delimiter = ',', value_name = "LINES_PER_S")]
    rates: Vec<u64>,

    /// Only these restarts of our follower [default: none,sigterm,sigkill].
    #[arg(long, value_delimiter = ',', value_name = "RESTART")]
    restarts: Vec<Restart>,

    /// Seconds the writer writes per run [default: 3 with --quick, else 5].
    #[arg(long, value_name = "SECONDS")]
    seconds: Option<f64>,

    /// Lines written at the max rate (the writer does about 3 million a
    /// second, so the max runs are bounded by a count) [default: 500000
    /// with --quick, else 2000000].
    #[arg(long, value_name = "N")]
    max_lines: Option<u64>,

    /// Our follower's --checkpoint-interval in the restart cells: after
    /// SIGKILL, what it delivered since its last checkpoint comes again.
    #[arg(long, default_value = "200ms", value_name = "DURATION")]
    checkpoint_interval: String,

    /// Use the `writer` and `log-aggregator` binaries in this directory
    /// instead of building the release binaries.
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,

    /// Where the markdown table is written [default: target/rotation-matrix.md].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,

    /// Keep each run's directory (logs, captures, follower stderr) and print
    /// where it is.
    #[arg(long)]
    keep: bool,
}

/// What rotates the file, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Create,
    Copytruncate,
    CreateCompress,
    CreateDelaycompress,
    Dateext,
    CopytruncateCompress,
    Delete,
    RenameLate,
}

impl Mode {
    const ALL: [Mode; 8] = [
        Mode::Create,
        Mode::Copytruncate,
        Mode::CreateCompress,
        Mode::CreateDelaycompress,
        Mode::Dateext,
        Mode::CopytruncateCompress,
        Mode::Delete,
        Mode::RenameLate,
    ];

    /// Whether the file is truncated in place (copytruncate): lines written
    /// between logrotate's copy and its truncation end up in no file.
    fn truncates(self) -> bool {
        matches!(self, Mode::Copytruncate | Mode::CopytruncateCompress)
    }

    fn label(self) -> &'static str {
        match self {
            Mode::Create => "create",
            Mode::Copytruncate => "copytruncate",
            Mode::CreateCompress => "create-compress",
            Mode::CreateDelaycompress => "create-delaycompress",
            Mode::Dateext => "dateext",
            Mode::CopytruncateCompress => "copytruncate-compress",
            Mode::Delete => "delete",
            Mode::RenameLate => "rename-late",
        }
    }

    /// The logrotate directives of this mode (besides size, rotate, ...),
    /// or `None` when the writer rotates by itself.
    fn directives(self) -> Option<&'static [&'static str]> {
        Some(match self {
            Mode::Create => &["create"],
            Mode::Copytruncate => &["copytruncate"],
            Mode::CreateCompress => &["create", "compress"],
            Mode::CreateDelaycompress => &["create", "compress", "delaycompress"],
            // %s: several rotations in one run get distinct names (logrotate
            // skips a rotation whose name exists, so at most one a second).
            Mode::Dateext => &["create", "dateext", "dateformat -%Y%m%d-%s"],
            Mode::CopytruncateCompress => &["copytruncate", "compress", "delaycompress"],
            Mode::Delete | Mode::RenameLate => return None,
        })
    }

    /// `create` modes rename the file: the writer must reopen (SIGHUP).
    fn signals_writer(self) -> bool {
        self.directives().is_some_and(|d| d.contains(&"create"))
    }

    /// The writer's own `--rotate-mode`, for the modes logrotate lacks.
    fn writer_mode(self) -> Option<&'static str> {
        match self {
            Mode::Delete => Some("delete"),
            Mode::RenameLate => Some("rename-late"),
            _ => None,
        }
    }

    /// One line for the legend.
    fn describe(self) -> String {
        match self.directives() {
            Some(directives) => {
                let hup = if self.signals_writer() {
                    " + `postrotate kill -HUP WRITER`"
                } else {
                    ""
                };
                format!("logrotate `{}`{hup}", directives.join("`, `"))
            }
            None => format!(
                "writer `--rotate-mode {}`",
                self.writer_mode().unwrap_or_default()
            ),
        }
    }
}

/// What happens to our follower half-way through a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Restart {
    None,
    #[value(name = "sigterm")]
    Term,
    #[value(name = "sigkill")]
    Kill,
}

impl Restart {
    fn label(self) -> &'static str {
        match self {
            Restart::None => "none",
            Restart::Term => "SIGTERM",
            Restart::Kill => "SIGKILL",
        }
    }
}

/// Which name our follower is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Following {
    /// `logs/app.log*`: the file and its rotated names.
    Glob,
    /// `logs/app.log` only.
    Plain,
}

/// A follower of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Ours(Following, Restart),
    GnuTail,
}

/// How often the harness runs logrotate.
const TICK: Duration = Duration::from_millis(300);

/// Bytes of a writer text line, about (`... - Hello from writer seq=N target=app`).
const LINE_BYTES: u64 = 72;

/// How long a capture holding every line must stay still to be done (a
/// glob follower may still be finishing a rotated file).
const SETTLE: Duration = Duration::from_millis(500);

/// How long a capture may stay still before its follower is judged done
/// (more than our follower's 1 s poll interval).
const QUIET: Duration = Duration::from_secs(2);

/// The longest a follower gets to catch up after the writer stopped.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// How often the writer's exit and the captures are looked at.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Rotated files logrotate keeps: more than a run makes, so no file is
/// deleted before a follower could read it.
const KEEP: u32 = 1000;

/// What `writer verify` and the binary scan found in one capture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    lines: u64,
    lost: u64,
    /// Of `lost`, lines in no file once the run is over: written between
    /// logrotate's copy and its truncation and read by nobody in time
    /// (copytruncate modes only; elsewhere a line in no file was in one
    /// for a while, and losing it is the follower's fault).
    window: u64,
    duplicated: u64,
    out_of_order: u64,
    binary: u64,
}

/// One run's outcome.
struct RunResult {
    mode: Mode,
    rate: u64,
    written: u64,
    rotations: u64,
    cells: Vec<(Who, Counts)>,
    notes: Vec<String>,
}

/// The binaries a run needs.
struct Tools {
    writer: PathBuf,
    aggregator: PathBuf,
    logrotate: PathBuf,
    tail: PathBuf,
}

pub fn run(args: MatrixArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let bin_dir = util::release_bin_dir(args.bin_dir.as_deref(), &["writer", "log-aggregator"])?;
    let tools = Tools {
        writer: bin_dir.join("writer"),
        aggregator: bin_dir.join("log-aggregator"),
        logrotate: find_logrotate()?,
        tail: PathBuf::from("tail"),
    };
    let modes = if args.modes.is_empty() {
        Mode::ALL.to_vec()
    } else {
        args.modes.clone()
    };
    let rates = match (&args.rates[..], args.quick) {
        ([], true) => vec![1000, 0],
        ([], false) => vec![1000, 100_000, 0],
        (rates, _) => rates.to_vec(),
    };
    let restarts = match &args.restarts[..] {
        [] => vec![Restart::None, Restart::Term, Restart::Kill],
        restarts => restarts.to_vec(),
    };
    let seconds = args.seconds.unwrap_or(if args.quick { 3.0 } else { 5.0 });
    let max_lines = args
        .max_lines
        .unwrap_or(if args.quick { 500_000 } else { 2_000_000 });
    let root = std::env::temp_dir().join(format!("rotation-matrix-{}", std::process::id()));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let runs: Vec<(Mode, u64)> = modes
        .iter()
        .flat_map(|&mode| rates.iter().map(move |&rate| (mode, rate)))
        .collect();
    let mut results = Vec::new();
    let outcome = (|| {
        for (index, &(mode, rate)) in runs.iter().enumerate() {
            eprintln!(
                "matrix: run {}/{}: {} at {} lines/s",
                index + 1,
                runs.len(),
                mode.label(),
                rate_label(rate)
            );
            let dir = root.join(format!("{}-{}", mode.label(), rate_label(rate)));
            std::fs::create_dir_all(&dir)?;
            let plan = Plan {
                mode,
                rate,
                seconds,
                max_lines,
                restarts: &restarts,
                checkpoint_interval: &args.checkpoint_interval,
            };
            let mut result = run_one(&tools, &plan, &dir)?;
            let failed: Vec<String> = restarts
                .iter()
                .filter_map(|&restart| verdict(&result, restart).err())
                .collect();
            if args.rerun_failed && !failed.is_empty() {
                eprintln!("matrix: FAILED, run again once: {}", failed.join("; "));
                let again = root.join(format!("{}-{}-again", mode.label(), rate_label(rate)));
                std::fs::create_dir_all(&again)?;
                result = run_one(&tools, &plan, &again)?;
                result.notes.push(format!(
                    "failed at the first attempt, shown here as run again: {}",
                    failed.join("; ")
                ));
                if !args.keep {
                    let _ = std::fs::remove_dir_all(&again);
                }
            }
            results.push(result);
            if !args.keep {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        anyhow::Ok(())
    })();
    if args.keep {
        eprintln!("matrix: run directories kept in {}", root.display());
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
    outcome?;
    let elapsed = started.elapsed();
    let scope = if args.quick { "--quick" } else { "--full" };
    let report = report(&results, &restarts, scope, seconds, max_lines, elapsed);
    print!("{report}");
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| util::target_dir().join("rotation-matrix.md"));
    std::fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "matrix: table written to {}; took {:.0} s",
        out.display(),
        elapsed.as_secs_f64()
    );
    let failures: Vec<String> = results
        .iter()
        .flat_map(|r| {
            restarts
                .iter()
                .filter_map(|&restart| verdict(r, restart).err())
        })
        .collect();
    if !failures.is_empty() {
        bail!(
            "{} of the matrix's rows failed, first: {}",
            failures.len(),
            failures[0]
        );
    }
    Ok(())
}

/// logrotate from PATH, else Debian's /usr/sbin (not on a user's PATH),
/// else installed with apt-get.
fn find_logrotate() -> anyhow::Result<PathBuf> {
    let sbin = PathBuf::from("/usr/sbin/logrotate");
    if util::on_path("logrotate") {
        return Ok(PathBuf::from("logrotate"));
    }
    if !sbin.exists() {
        util::apt_install(&["logrotate"])?;
    }
    Ok(sbin)
}

/// One run's settings.
struct Plan<'a> {
    mode: Mode,
    rate: u64,
    seconds: f64,
    max_lines: u64,
    restarts: &'a [Restart],
    checkpoint_interval: &'a str,
}

/// Rotation size: about half of what the writer writes per logrotate tick,
/// so nearly every tick rotates; at least 8 KiB, at most 4 MB (the max
/// rate's, where the writer's own rotation then happens every ~20 ms).
fn rotate_size(rate: u64) -> u64 {
    let rate = if rate == 0 { 1_000_000 } else { rate };
    (rate * LINE_BYTES * TICK.as_millis() as u64 / 2000).clamp(8 * 1024, 4_000_000)
}

/// A follower process of a run, restarted at most once.
struct Follower {
    who: Who,
    program: PathBuf,
    args: Vec<String>,
    capture: PathBuf,
    errors: PathBuf,
    child: Child,
    /// Bytes of the capture counted so far, and the newlines among them.
    counted: u64,
    newlines: u64,
    last_growth: Instant,
    done: bool,
}

impl Follower {
    fn start(
        who: Who,
        program: &Path,
        args: Vec<String>,
        dir: &Path,
        index: usize,
    ) -> anyhow::Result<Self> {
        let capture = dir.join(format!("capture-{index}.txt"));
        let errors = dir.join(format!("follower-{index}.err"));
        let child = spawn_appending(program, &args, &capture, &errors)?;
        Ok(Self {
            who,
            program: program.to_owned(),
            args,
            capture,
            errors,
            child,
            counted: 0,
            newlines: 0,
            last_growth: Instant::now(),
            done: false,
        })
    }

    /// Stops the process with `signal` and starts it again, appending to
    /// the same capture.
    fn restart(&mut self, signal: &str) -> anyhow::Result<()> {
        util::send_signal(self.child.id(), signal)?;
        // Looked at every millisecond: the time down is part of the cell.
        util::wait_for_every(
            &format!("{} to exit on SIG{signal}", self.program.display()),
            Duration::from_secs(20),
            Duration::from_millis(1),
            || match self.child.try_wait() {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err("still running".to_owned()),
                Err(error) => Err(error.to_string()),
            },
        )?;
        self.child = spawn_appending(&self.program, &self.args, &self.capture, &self.errors)?;
        Ok(())
    }

    /// Counts the newlines the capture gained since the last look.
    fn poll(&mut self) -> anyhow::Result<()> {
        let mut file = File::open(&self.capture)
            .with_context(|| format!("opening {}", self.capture.display()))?;
        let len = file.metadata()?.len();
        if len == self.counted {
            return Ok(());
        }
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(self.counted))?;
        let mut buffer = vec![0u8; 256 * 1024];
        let mut reader = file.take(len - self.counted);
        loop {
            let read = reader.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            self.newlines += buffer[..read].iter().filter(|&&b| b == b'\n').count() as u64;
            self.counted += read as u64;
        }
        self.last_growth = Instant::now();
        Ok(())
    }
}

impl Drop for Follower {
    /// A run that fails half-way leaves no follower behind.
    fn drop(&mut self) {
        if !self.done {
            util::stop(&mut self.child);
        }
    }
}

fn spawn_appending(
    program: &Path,
    args: &[String],
    stdout: &Path,
    stderr: &Path,
) -> anyhow::Result<Child> {
    let append = |path: &Path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))
    };
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(append(stdout)?)
        .stderr(append(stderr)?)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))
}

/// The arguments of one follower on `log`.
fn follower_args(who: Who, log: &Path, checkpoints: &Path, interval: &str) -> Vec<String> {
    let path = log.display().to_string();
    match who {
        Who::Ours(following, restart) => {
            let mut args: Vec<String> = [
                "--follow",
                "--from",
                "beginning",
                "--output",
                "plain",
                "--log-level",
                "warn",
            ]
            .map(str::to_owned)
            .into();
            if restart != Restart::None {
                args.push("--checkpoint-dir".into());
                args.push(checkpoints.display().to_string());
                args.push("--checkpoint-interval".into());
                args.push(interval.to_owned());
            }
            args.push(match following {
                Following::Glob => format!("{path}*"),
                Following::Plain => path,
            });
            args
        }
        Who::GnuTail => vec!["-n".into(), "+1".into(), "-F".into(), path],
    }
}

/// The logrotate configuration of `mode` for `log`.
fn logrotate_conf(log: &Path, directives: &[&str], size: u64, writer_pid: Option<u32>) -> String {
    let mut conf = format!(
        "\"{}\" {{\n    size {size}\n    rotate {KEEP}\n    missingok\n    notifempty\n    nomail\n",
        log.display()
    );
    for directive in directives {
        let _ = writeln!(conf, "    {directive}");
    }
    if let Some(pid) = writer_pid {
        let _ = writeln!(
            conf,
            "    postrotate\n        kill -HUP {pid}\n    endscript"
        );
    }
    conf.push_str("}\n");
    conf
}

/// What the logrotate thread saw: runs, failed runs, the first error.
type TickStats = (u64, u64, Option<String>);

/// logrotate every [`TICK`] until told to stop (send on, or drop, the sender).
fn start_ticker(
    logrotate: &Path,
    state: &Path,
    conf: &Path,
) -> (mpsc::Sender<()>, std::thread::JoinHandle<TickStats>) {
    let (stop, stopped) = mpsc::channel::<()>();
    let mut command = Command::new(logrotate);
    command.arg("-s").arg(state).arg(conf).stdin(Stdio::null());
    let handle = std::thread::spawn(move || {
        let (mut runs, mut failed, mut first_error) = (0, 0, None);
        loop {
            let (ok, _, stderr) = util::try_output(&mut command);
            runs += 1;
            if !ok {
                failed += 1;
                first_error.get_or_insert_with(|| stderr.trim().to_owned());
            }
            // Pacing, not synchronisation: logrotate runs on a timer in real life too.
            match stopped.recv_timeout(TICK) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return (runs, failed, first_error),
            }
        }
    });
    (stop, handle)
}

fn run_one(tools: &Tools, plan: &Plan, dir: &Path) -> anyhow::Result<RunResult> {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let log = logs.join("app.log");
    File::create(&log).with_context(|| format!("creating {}", log.display()))?;

    let mut whos = Vec::new();
    for following in [Following::Glob, Following::Plain] {
        for &restart in plan.restarts {
            whos.push(Who::Ours(following, restart));
        }
    }
    whos.push(Who::GnuTail);
    let mut followers = Vec::new();
    for (index, &who) in whos.iter().enumerate() {
        let program = match who {
            Who::Ours(..) => &tools.aggregator,
            Who::GnuTail => &tools.tail,
        };
        let checkpoints = dir.join(format!("checkpoints-{index}"));
        let args = follower_args(who, &log, &checkpoints, plan.checkpoint_interval);
        followers.push(Follower::start(who, program, args, dir, index)?);
    }
    for follower in &followers {
        let pid = follower.child.id();
        util::wait_for_every(
            &format!("{} to open {}", follower.program.display(), log.display()),
            Duration::from_secs(10),
            POLL_EVERY,
            || {
                util::has_open(pid, &log)
                    .then_some(())
                    .ok_or_else(|| "not yet".to_owned())
            },
        )?;
    }

    let size = rotate_size(plan.rate);
    let report = dir.join("report.json");
    let mut command = Command::new(&tools.writer);
    command
        .args(["--rate", &plan.rate.to_string()])
        .args(["--duration", &format!("{}s", plan.seconds)])
        .args(["--report", "none", "--report-file"])
        .arg(&report);
    if plan.rate == 0 {
        command.args(["--count", &plan.max_lines.to_string()]);
    }
    if let Some(mode) = plan.mode.writer_mode() {
        command.args(["--rotate-size", &size.to_string(), "--rotate-mode", mode]);
        command.args(["--rotate-keep", &KEEP.to_string()]);
    }
    command.arg(&log).stdin(Stdio::null()).stderr(Stdio::null());
    let mut writer = Stopped(command.spawn().context("starting writer")?);
    let writer = &mut writer.0;
    let writer_start = Instant::now();

    let ticker = match plan.mode.directives() {
        Some(directives) => {
            let pid = plan.mode.signals_writer().then(|| writer.id());
            let conf = dir.join("logrotate.conf");
            std::fs::write(&conf, logrotate_conf(&log, directives, size, pid))
                .with_context(|| format!("writing {}", conf.display()))?;
            Some(start_ticker(
                &tools.logrotate,
                &dir.join("logrotate.state"),
                &conf,
            ))
        }
        None => None,
    };

    // Half-way, or when the writer is done if sooner (a max-rate run),
    // the restart cells' followers are stopped and started again.
    let restart_at = writer_start + Duration::from_secs_f64(plan.seconds / 2.0);
    let mut restarted = false;
    let status = loop {
        let exited = writer.try_wait()?;
        if !restarted && (exited.is_some() || Instant::now() >= restart_at) {
            restart_all(&mut followers)?;
            restarted = true;
        }
        if let Some(status) = exited {
            break status;
        }
        std::thread::sleep(POLL_EVERY);
    };
    let mut notes = Vec::new();
    if let Some((stop, handle)) = ticker {
        let _ = stop.send(());
        let (runs, failed, first_error) = handle
            .join()
            .map_err(|_| anyhow::anyhow!("the logrotate thread panicked"))?;
        // Expected: the writer gone at the last tick's postrotate, and
        // dateext's second rotation within a second.
        if let Some(error) = first_error.filter(|e| {
            !e.contains("No such process") && !e.contains("already exists, skipping rotation")
        }) {
            notes.push(format!(
                "logrotate: {failed} of {runs} runs exited non-zero, first: {}",
                error.lines().next().unwrap_or_default()
            ));
        }
    }
    if !status.success() {
        bail!("writer failed with {status}");
    }
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(&report).context("reading the writer's report")?,
    )?;
    let written = report["total"]["lines"].as_u64().unwrap_or(0);
    let rotations = match plan.mode.writer_mode() {
        Some(_) => report["targets"][0]["rotations"].as_u64().unwrap_or(0),
        // Every rotated name logrotate left (none is deleted: KEEP).
        None => std::fs::read_dir(&logs)?.count().saturating_sub(1) as u64,
    };

    // Drain: until each capture holds every line and settles, or goes quiet.
    let writer_end = Instant::now();
    loop {
        for follower in followers.iter_mut().filter(|f| !f.done) {
            follower.poll()?;
            let still = follower.last_growth.elapsed();
            if (follower.newlines >= written && still >= SETTLE)
                || (still >= QUIET && writer_end.elapsed() >= QUIET)
                || writer_end.elapsed() > DRAIN_LIMIT
            {
                util::stop(&mut follower.child);
                follower.done = true;
            }
        }
        if followers.iter().all(|f| f.done) {
            break;
        }
        std::thread::sleep(POLL_EVERY);
    }

    eprintln!(
        "matrix:   {written} lines in {:.1} s, {rotations} rotations, followers done {:.1} s later",
        writer_end.duration_since(writer_start).as_secs_f64(),
        writer_end.elapsed().as_secs_f64()
    );
    // Which lines copytruncate's own window destroyed: in no file, rotated
    // or compressed, at the end.
    let destroyed = if plan.mode.truncates() {
        let on_disk = dir.join("on-disk.txt");
        concatenate_logs(&logs, &on_disk)?;
        lost_seqs(&verify_report(&tools.writer, &on_disk, written)?)
    } else {
        Vec::new()
    };
    let mut cells = Vec::new();
    for follower in &followers {
        let report = verify_report(&tools.writer, &follower.capture, written)?;
        let mut counts = counts_of(&report)?;
        counts.window = lost_seqs(&report)
            .iter()
            .filter(|seq| destroyed.binary_search(seq).is_ok())
            .count() as u64;
        counts.binary = binary_lines(&follower.capture)?;
        cells.push((follower.who, counts));
    }
    Ok(RunResult {
        mode: plan.mode,
        rate: plan.rate,
        written,
        rotations,
        cells,
        notes,
    })
}

/// A child stopped when dropped (the writer, if a run fails half-way).
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            util::stop(&mut self.0);
        }
    }
}

fn restart_all(followers: &mut [Follower]) -> anyhow::Result<()> {
    for follower in followers {
        match follower.who {
            Who::Ours(_, Restart::Term) => follower.restart("TERM")?,
            Who::Ours(_, Restart::Kill) => follower.restart("KILL")?,
            _ => {}
        }
    }
    Ok(())
}

/// Every log file of a run, decompressed, one after the other.
fn concatenate_logs(logs: &Path, to: &Path) -> anyhow::Result<()> {
    let mut out = File::create(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(logs).with_context(|| format!("reading {}", logs.display()))? {
        let path = entry?.path();
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut decoder = flate2::read::MultiGzDecoder::new(&bytes[..]);
            std::io::copy(&mut decoder, &mut out)
                .with_context(|| format!("decompressing {}", path.display()))?;
        } else {
            out.write_all(&bytes)?;
        }
    }
    Ok(())
}

/// The sequence numbers `writer verify` found missing, sorted.
fn lost_seqs(report: &Value) -> Vec<u64> {
    let mut seqs = Vec::new();
    let ranges = report["targets"]
        .as_array()
        .and_then(|targets| targets.iter().find(|t| t["target"] == "app"))
        .and_then(|app| app["lost_ranges"].as_array());
    for range in ranges.into_iter().flatten() {
        if let (Some(from), Some(to)) = (range[0].as_u64(), range[1].as_u64()) {
            seqs.extend(from..=to);
        }
    }
    seqs.sort_unstable();
    seqs
}

/// `writer verify --expect N --expect-target app` on a capture.
fn verify_report(writer: &Path, capture: &Path, expect: u64) -> anyhow::Result<Value> {
    let output = Command::new(writer)
        .args(["verify", "--report", "json", "--expect-target", "app"])
        .args(["--expect", &expect.to_string()])
        .arg(capture)
        .output()
        .context("running writer verify")?;
    serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "writer verify printed no report: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn counts_of(report: &Value) -> anyhow::Result<Counts> {
    let app = report["targets"]
        .as_array()
        .and_then(|targets| targets.iter().find(|t| t["target"] == "app"))
        .context("writer verify reported no target app")?;
    let number = |key: &str| app[key].as_u64().unwrap_or(0);
    Ok(Counts {
        lines: number("lines"),
        lost: number("lost"),
        duplicated: number("duplicated"),
        out_of_order: number("out_of_order"),
        window: 0,
        binary: 0,
    })
}

/// Lines with invalid UTF-8 or control bytes (other than a tab): what a
/// compressed file read as text looks like. The writer's lines have neither.
fn binary_lines(capture: &Path) -> anyhow::Result<u64> {
    let file = File::open(capture).with_context(|| format!("opening {}", capture.display()))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut line = Vec::with_capacity(1024);
    let mut binary = 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(binary);
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if is_binary(text) {
            binary += 1;
        }
    }
}

fn is_binary(line: &[u8]) -> bool {
    line.iter().any(|&b| b < 0x20 && b != b'\t') || std::str::from_utf8(line).is_err()
}

fn rate_label(rate: u64) -> String {
    match rate {
        0 => "max".to_owned(),
        r if r >= 1000 && r % 1000 == 0 => format!("{}k", r / 1000),
        r => r.to_string(),
    }
}

/// `lost / dup / ooo / bin` of one cell.
fn cell(counts: Option<&Counts>) -> String {
    counts.map_or_else(
        || "–".to_owned(),
        |c| {
            let window = if c.window > 0 {
                format!(" ({} in window)", c.window)
            } else {
                String::new()
            };
            format!(
                "{}{window} / {} / {} / {}",
                c.lost, c.duplicated, c.out_of_order, c.binary
            )
        },
    )
}

fn find(result: &RunResult, who: Who) -> Option<&Counts> {
    result.cells.iter().find(|(w, _)| *w == who).map(|(_, c)| c)
}

/// Whether one row (a run's glob and plain cells with `restart`) passes;
/// the error says why not.
fn verdict(result: &RunResult, restart: Restart) -> Result<(), String> {
    let row = format!(
        "{} at {} lines/s, restart {}",
        result.mode.label(),
        rate_label(result.rate),
        restart.label()
    );
    let mut reasons = Vec::new();
    // After SIGKILL, what was delivered since the last checkpoint comes
    // again: repeats are reported, not failed. Lines copytruncate destroyed
    // before anyone could read them are nobody's loss (counted apart).
    let repeats_allowed = restart == Restart::Kill;
    // A deleted file is readable only through a descriptor: its unread
    // lines die with a SIGKILLed follower, and a file created and deleted
    // while a follower was down (between SIGTERM's drain and the restart,
    // a few hundred milliseconds on a loaded machine) was never seen by
    // anyone. Reported, not failed.
    let losses_allowed = restart != Restart::None && result.mode == Mode::Delete;
    if let Some(glob) = find(result, Who::Ours(Following::Glob, restart)) {
        let lost = if losses_allowed {
            0
        } else {
            glob.lost - glob.window
        };
        if lost > 0 || (glob.duplicated > 0 && !repeats_allowed) || glob.binary > 0 {
            reasons.push(format!(
                "glob lost {lost} (besides {} in logrotate's window), duplicated {}, binary {}",
                glob.window, glob.duplicated, glob.binary
            ));
        }
    }
    // GNU tail has no restart: the plain name is compared where neither
    // restarts.
    if let (Some(plain), Some(tail)) = (
        find(result, Who::Ours(Following::Plain, restart)),
        find(result, Who::GnuTail),
    ) && restart == Restart::None
        && plain.lost - plain.window > tail.lost - tail.window
    {
        reasons.push(format!(
            "plain lost {} > tail -F {} (besides logrotate's window)",
            plain.lost - plain.window,
            tail.lost - tail.window
        ));
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(format!("{row}: {}", reasons.join("; ")))
    }
}

/// The markdown report: what ran, the table, the legend.
fn report(
    results: &[RunResult],
    restarts: &[Restart],
    scope: &str,
    seconds: f64,
    max_lines: u64,
    elapsed: Duration,
) -> String {
    let date = jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC");
    let mut out = format!(
        "## Rotation matrix ({date}, `cargo xtask matrix {scope}`, {:.0} s)\n\n\
         Each run: `writer --rate R` for {seconds} s (max: {max_lines} lines), logrotate every \
         {} ms. Cells: lost / duplicated / out-of-order / binary lines (`writer verify`). \
         `–`: GNU tail is only run once per run (its row is restart none).\n\n",
        elapsed.as_secs_f64(),
        TICK.as_millis()
    );
    out.push_str(
        "| mode | rate | restart | written | rotations | ours, glob `app.log*` | ours, plain `app.log` | GNU `tail -F app.log` | verdict |\n\
         |---|---|---|---:|---:|---|---|---|---|\n",
    );
    for result in results {
        for &restart in restarts {
            let tail = (restart == Restart::None)
                .then(|| find(result, Who::GnuTail))
                .flatten();
            let verdict = match verdict(result, restart) {
                Ok(()) => "ok".to_owned(),
                Err(reason) => format!(
                    "**FAIL** {}",
                    reason.split_once(": ").map_or("", |(_, r)| r)
                ),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                result.mode.label(),
                rate_label(result.rate),
                restart.label(),
                result.written,
                result.rotations,
                cell(find(result, Who::Ours(Following::Glob, restart))),
                cell(find(result, Who::Ours(Following::Plain, restart))),
                cell(tail),
                verdict
            );
        }
    }
    out.push_str("\nModes:\n");
    let mut seen = Vec::new();
    for result in results {
        if !seen.contains(&result.mode) {
            seen.push(result.mode);
            let _ = writeln!(
                out,
                "- `{}`: {}",
                result.mode.label(),
                result.mode.describe()
            );
        }
    }
    let notes: Vec<String> = results
        .iter()
        .flat_map(|r| {
            r.notes
                .iter()
                .map(move |n| format!("- {} at {}: {n}", r.mode.label(), rate_label(r.rate)))
        })
        .collect();
    if !notes.is_empty() {
        out.push_str("\nNotes:\n");
        for note in notes {
            let _ = writeln!(out, "{note}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotate_size_rotates_about_every_tick_within_bounds() {
        // 1k lines/s: ~21 KB a tick, rotated at ~10.8 KB.
        assert_eq!(rotate_size(1000), 10_800);
        assert_eq!(rotate_size(10), 8 * 1024);
        assert_eq!(rotate_size(0), 4_000_000);
    }

    #[test]
    fn logrotate_conf_has_the_mode_and_signals_the_writer_in_create_modes() {
        let conf = logrotate_conf(
            Path::new("/tmp/x/app.log"),
            Mode::CreateDelaycompress.directives().unwrap(),
            10_800,
            Some(42),
        );
        assert!(
            conf.starts_with("\"/tmp/x/app.log\" {\n    size 10800\n"),
            "{conf}"
        );
        assert!(conf.contains("    compress\n    delaycompress\n"), "{conf}");
        assert!(conf.contains("postrotate\n        kill -HUP 42\n    endscript\n}\n"));
        assert!(Mode::Dateext.signals_writer());
        assert!(!Mode::CopytruncateCompress.signals_writer());
        assert_eq!(Mode::Delete.directives(), None);
    }

    #[test]
    fn binary_lines_are_control_bytes_or_invalid_utf8() {
        assert!(!is_binary(b"Sat Nov 28 - Hello \t seq=1 target=app"));
        assert!(!is_binary("héllo".as_bytes()));
        assert!(is_binary(b"\x1f\x8b\x08\x00"));
        assert!(is_binary(b"abc\xff"));
    }

    #[test]
    fn glob_fails_on_any_loss_plain_only_when_worse_than_tail() {
        let counts = |lost, duplicated| Counts {
            lost,
            duplicated,
            ..Counts::default()
        };
        let result = |glob, plain, tail| RunResult {
            mode: Mode::Create,
            rate: 1000,
            written: 100,
            rotations: 3,
            cells: vec![
                (Who::Ours(Following::Glob, Restart::None), glob),
                (Who::Ours(Following::Plain, Restart::None), plain),
                (Who::GnuTail, tail),
            ],
            notes: Vec::new(),
        };
        let ok = |r: &RunResult| verdict(r, Restart::None).is_ok();
        assert!(ok(&result(counts(0, 0), counts(5, 2), counts(5, 0))));
        assert!(!ok(&result(counts(0, 1), counts(0, 0), counts(0, 0))));
        assert!(!ok(&result(counts(0, 0), counts(6, 0), counts(5, 0))));
    }

    #[test]
    fn lines_logrotate_destroyed_and_repeats_after_sigkill_do_not_fail_a_row() {
        let cell = |lost, window, duplicated| Counts {
            lost,
            window,
            duplicated,
            ..Counts::default()
        };
        let row = |restart, glob, plain, tail| RunResult {
            mode: Mode::Copytruncate,
            rate: 1000,
            written: 100,
            rotations: 3,
            cells: vec![
                (Who::Ours(Following::Glob, restart), glob),
                (Who::Ours(Following::Plain, restart), plain),
                (Who::GnuTail, tail),
            ],
            notes: Vec::new(),
        };
        let ok =
            |restart, glob, plain, tail| verdict(&row(restart, glob, plain, tail), restart).is_ok();
        assert!(ok(
            Restart::None,
            cell(2, 2, 0),
            cell(3, 3, 0),
            cell(0, 0, 0)
        ));
        assert!(!ok(
            Restart::None,
            cell(3, 2, 0),
            cell(0, 0, 0),
            cell(0, 0, 0)
        ));
        assert!(ok(
            Restart::Kill,
            cell(0, 0, 40),
            cell(0, 0, 0),
            cell(0, 0, 0)
        ));
        assert!(!ok(
            Restart::Term,
            cell(0, 0, 40),
            cell(0, 0, 0),
            cell(0, 0, 0)
        ));
        assert!(!ok(
            Restart::Kill,
            cell(1, 0, 40),
            cell(0, 0, 0),
            cell(0, 0, 0)
        ));
    }

    #[test]
    fn restarts_hold_the_plain_name_to_nothing_and_delete_losses_to_a_report() {
        let cell = |lost| Counts {
            lost,
            ..Counts::default()
        };
        let row = |mode, restart, glob, plain| RunResult {
            mode,
            rate: 0,
            written: 100,
            rotations: 3,
            cells: vec![
                (Who::Ours(Following::Glob, restart), cell(glob)),
                (Who::Ours(Following::Plain, restart), cell(plain)),
                (Who::GnuTail, cell(0)),
            ],
            notes: Vec::new(),
        };
        let ok =
            |mode, restart, glob, plain| verdict(&row(mode, restart, glob, plain), restart).is_ok();
        assert!(ok(Mode::Create, Restart::Kill, 0, 9));
        assert!(!ok(Mode::Create, Restart::None, 0, 9));
        assert!(ok(Mode::Delete, Restart::Kill, 7, 0));
        assert!(ok(Mode::Delete, Restart::Term, 7, 0));
        assert!(!ok(Mode::Delete, Restart::None, 7, 0));
        assert!(!ok(Mode::Create, Restart::Kill, 7, 0));
    }
}
