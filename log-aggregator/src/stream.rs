//! Stream mode (`--follow`): every line of every matching file to stdout,
//! once, in order within each file.
//!
//! The following itself (rotation, truncation, identity, inotify and its
//! polling fallback, drain at shutdown) is [`sidecar_common::follow`]; this
//! module is its sink and its housekeeping:
//! - [`StreamSink`] renders lines ([`crate::output`]), joins multiline
//!   records, counts metrics, and pauses the follower when the stdout writer
//!   has no room: reading stops, the file on disk is the buffer;
//! - checkpoints ([`follow::CheckpointStore`] saves them) are captured from
//!   [`follow::Sink::after_poll`] right after the first poll and then every
//!   `--checkpoint-interval` (the follower is then between two reads, so
//!   its positions match the lines handed over). A capture is saved by the
//!   saver thread ([`Saver`]) once stdout has taken every byte handed over
//!   before it, and not earlier, so a saved offset never skips a line that
//!   did not reach stdout; the stdout writer tells the saver after each
//!   flush ([`CountingStdout`]), so the save follows within milliseconds
//!   and a crash repeats at most about one interval of lines;
//! - with `--sink relp|syslog-tcp|otlp` the pipe's writer is a shipper
//!   ([`crate::ship`]) instead of stdout, and "taken" means acknowledged by
//!   the backend: the saver learns the acknowledged total from it;
//! - the gauges that need the follower (files followed) are refreshed there
//!   too, and readiness ([`Readiness`]: not ready while a named path cannot
//!   be read). One driver run covers the whole process: the polling
//!   fallback is decided (and warned about) once.

use std::collections::HashMap;
use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use regex::bytes::Regex;
use sidecar_common::follow::{
    self, Checkpoint, CheckpointStore, DirLock, Event, Flow, FollowOptions, Follower, LockError,
    NoticeKind, ReadFailure, StartAt,
};
use sidecar_common::metrics::{Counter, Gauge, Health, Registry};
use sidecar_common::multiline::Multiline;
use sidecar_common::pipeline::convert::Converter;
use sidecar_common::shutdown::Shutdown;

use crate::output::{CHUNK_BYTES, Format, Formatter, OutputPipe, stdout};
use crate::ship::{OnAck, ShipConfig, Shipper};

/// How often metrics that need the follower (files followed) are refreshed
/// (also at every checkpoint save).
pub const METRICS_REFRESH: Duration = Duration::from_secs(5);

/// Multiline joining (`--multiline-start`).
#[derive(Clone, Debug)]
pub struct MultilineConfig {
    /// A line matching this starts a record; others continue the record before.
    pub start: Regex,
    /// A record nobody added to for this long is written out.
    pub timeout: Duration,
    /// Records are cut (and counted) at this size.
    pub max_bytes: usize,
}

/// Everything stream mode needs, as plain values.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// Paths and glob patterns (a pattern has one of `*?[`).
    pub patterns: Vec<String>,
    /// Globs whose matches are never followed (`--exclude`).
    pub excludes: Vec<String>,
    pub format: Format,
    /// `--parse`: lines become records through this converter.
    pub parse: Option<Converter>,
    /// Where files present at start begin (unless a checkpoint says otherwise).
    pub from: StartAt,
    pub follow: FollowOptions,
    /// Bound on reading every file to its end and flushing at shutdown.
    pub drain_timeout: Duration,
    pub checkpoint_dir: Option<PathBuf>,
    pub checkpoint_interval: Duration,
    /// Move an invalid checkpoint file aside instead of failing.
    pub discard_invalid_checkpoint: bool,
    pub multiline: Option<MultilineConfig>,
    /// Where to serve `/metrics`, `/healthz`, `/readyz`.
    pub listen: Option<SocketAddr>,
    /// Ship to a backend instead of stdout ([`crate::ship`]); checkpoints
    /// then follow the backend's acknowledgements.
    pub ship: Option<ShipConfig>,
}

/// The metrics stream mode exposes.
struct Metrics {
    registry: Arc<Registry>,
    rotations: Counter,
    truncations: Counter,
    lines_truncated: Counter,
    files_followed: Gauge,
    polling_fallback: Gauge,
    /// `log_aggregator_file_errors_total{reason}`, every reason at 0 from the start.
    file_errors: Vec<(&'static str, Counter)>,
    files_unreadable: Gauge,
    files_closed_idle: Gauge,
    files_waiting: Gauge,
    unread_bytes: Gauge,
    /// Per-file line and byte counters, created on first use. Keyed by the
    /// path's bytes: a `Path` hashes component by component, which with a
    /// thousand busy files was a tenth of a poll's CPU.
    per_file: HashMap<OsString, (Counter, Counter)>,
    /// Lines and bytes of the current run of lines from one path, not yet
    /// added to its counters: lines come in runs per file, so the counters
    /// are looked up (and their atomics touched) once per run and poll,
    /// not once per line. Flushed after every poll.
    run: Option<(OsString, u64, u64)>,
    last_saved: Arc<Mutex<Instant>>,
}

impl Metrics {
    fn new(registry: Arc<Registry>) -> Self {
        let last_saved = Arc::new(Mutex::new(Instant::now()));
        let age_source = last_saved.clone();
        registry.gauge_fn(
            "log_aggregator_checkpoint_age_seconds",
            "Seconds since read positions were last saved (since start when never).",
            &[],
            move || {
                age_source
                    .lock()
                    .map(|at| at.elapsed().as_secs_f64())
                    .unwrap_or(f64::NAN)
            },
        );
        Self {
            rotations: registry.counter(
                "log_aggregator_rotations_total",
                "Files replaced at a followed path (rename or delete + create).",
                &[],
            ),
            truncations: registry.counter(
                "log_aggregator_truncations_total",
                "Files truncated in place (copytruncate) and read again from their start.",
                &[],
            ),
            lines_truncated: registry.counter(
                "log_aggregator_lines_truncated_total",
                "Lines (or multiline records) cut at the maximum size.",
                &[],
            ),
            files_followed: registry.gauge(
                "log_aggregator_files_followed",
                "Files open, rotated ones still being drained included.",
                &[],
            ),
            polling_fallback: registry.gauge(
                "log_aggregator_polling_fallback",
                "1 when inotify is unavailable and changes are found by polling alone.",
                &[],
            ),
            file_errors: ERROR_REASONS
                .iter()
                .map(|reason| {
                    let counter = registry.counter(
                        "log_aggregator_file_errors_total",
                        "Paths that could not be opened or read (counted when the error starts or changes, as logged), by reason.",
                        &[("reason", reason)],
                    );
                    (*reason, counter)
                })
                .collect(),
            files_unreadable: registry.gauge(
                "log_aggregator_files_unreadable",
                "Paths that exist but cannot be read now (permission, a directory...).",
                &[],
            ),
            files_closed_idle: registry.gauge(
                "log_aggregator_files_closed_idle",
                "Files read to their end and closed to stay under --max-open-files; opened again when they change.",
                &[],
            ),
            files_waiting: registry.gauge(
                "log_aggregator_files_waiting",
                "Files waiting for a descriptor (--max-open-files reached).",
                &[],
            ),
            unread_bytes: registry.gauge(
                "log_aggregator_unread_bytes",
                "Bytes in the open files not read yet (each file's size less the read position): how far behind the files the aggregator is.",
                &[],
            ),
            per_file: HashMap::new(),
            run: None,
            last_saved,
            registry,
        }
    }

    fn file_error(&self, failure: ReadFailure) {
        let reason = error_reason(failure);
        if let Some((_, counter)) = self.file_errors.iter().find(|(name, _)| *name == reason) {
            counter.inc();
        }
    }

    /// Counts `lines` (0 for a piece of a long line whose rest follows)
    /// and `bytes` read from `path`.
    fn line(&mut self, path: &Path, lines: u64, bytes: u64) {
        if let Some((run_path, run_lines, read)) = &mut self.run {
            if run_path == path.as_os_str() {
                *run_lines += lines;
                *read += bytes;
                return;
            }
        }
        self.flush_lines();
        self.run = Some((path.as_os_str().to_owned(), lines, bytes));
    }

    /// Drops the per-file series of `path`, gone and read to its end (its
    /// pending run is added first, then dropped with the series).
    fn forget(&mut self, path: &Path) {
        self.flush_lines();
        if self.per_file.remove(path.as_os_str()).is_none() {
            return;
        }
        let label = path.to_string_lossy();
        let labels = [("file", label.as_ref())];
        self.registry.remove("log_aggregator_lines_total", &labels);
        self.registry.remove("log_aggregator_bytes_total", &labels);
    }

    /// Adds the current run of lines to its path's counters.
    fn flush_lines(&mut self) {
        let Some((path, lines, bytes)) = self.run.take() else {
            return;
        };
        if let Some((line_counter, byte_counter)) = self.per_file.get(&path) {
            line_counter.add(lines);
            byte_counter.add(bytes);
            return;
        }
        let label = path.to_string_lossy();
        let labels = [("file", label.as_ref())];
        let line_counter = self.registry.counter(
            "log_aggregator_lines_total",
            "Lines read, per followed path.",
            &labels,
        );
        let byte_counter = self.registry.counter(
            "log_aggregator_bytes_total",
            "Bytes of lines read (newlines included), per followed path.",
            &labels,
        );
        line_counter.add(lines);
        byte_counter.add(bytes);
        self.per_file.insert(path, (line_counter, byte_counter));
    }
}

/// The `reason` label values of `log_aggregator_file_errors_total`.
const ERROR_REASONS: [&str; 4] = [
    "permission_denied",
    "is_a_directory",
    "too_many_open_files",
    "other",
];

fn error_reason(failure: ReadFailure) -> &'static str {
    match (failure.kind, failure.raw_os_error) {
        (io::ErrorKind::PermissionDenied, _) => "permission_denied",
        (io::ErrorKind::IsADirectory, _) => "is_a_directory",
        (_, Some(libc::EMFILE | libc::ENFILE)) => "too_many_open_files",
        _ => "other",
    }
}

/// How often named paths and paths known to be unreadable are looked at
/// again (the follower reports an error once, not its end, and not again
/// when the same error comes back).
pub const UNREADABLE_RECHECK: Duration = Duration::from_millis(500);

/// `/readyz`: ready means following what was asked. Not ready:
/// - before the first poll;
/// - while a path named on the command line exists but cannot be read
///   (permission denied, a directory, out of descriptors...): a
///   misconfiguration that loses every line of that file, and that should
///   show as an unready container in `kubectl get pods`;
/// - while no file is open and some matching path cannot be read (a glob
///   whose every match is unreadable).
///
/// A path that does not exist (yet) does not count: a sidecar usually
/// starts before its application writes its first line, and
/// a pod is Ready only when every container is, so an unready sidecar takes
/// the whole pod out of its Service: an application that logs only when it
/// receives requests would then never log. Fluent Bit's and Vector's health
/// endpoints do not wait for input files either.
struct Readiness {
    health: Arc<Health>,
    /// The paths named on the command line (not globs).
    named: HashSet<PathBuf>,
    /// Paths reported unreadable and not seen fixed since.
    unreadable: HashMap<PathBuf, ReadFailure>,
    /// A new error since the last refresh.
    changed: bool,
    next_check: Instant,
    /// What `/readyz` says, `None` before the first refresh.
    ready: Option<bool>,
}

impl Readiness {
    fn new(health: Arc<Health>, patterns: &[String]) -> Self {
        Self {
            health,
            named: patterns
                .iter()
                .filter(|pattern| !follow::has_glob_syntax(pattern))
                .map(PathBuf::from)
                .collect(),
            unreadable: HashMap::new(),
            changed: false,
            next_check: Instant::now(),
            ready: None,
        }
    }

    fn failed(&mut self, path: &Path, failure: ReadFailure) {
        self.unreadable.insert(path.to_owned(), failure);
        self.changed = true;
    }

    /// Whether a refresh waits on the clock: a new error, no verdict yet,
    /// or a path known unreadable (looked at again every
    /// [`UNREADABLE_RECHECK`] until it reads). A readable named path needs
    /// no tick: a change to it is an event (`IN_ATTRIB` for a permission),
    /// and the poll it brings is followed by a refresh.
    fn rechecks(&self) -> bool {
        self.changed || self.ready.is_none() || !self.unreadable.is_empty()
    }

    fn due(&self, now: Instant) -> bool {
        self.changed
            || self.ready.is_none()
            || ((!self.unreadable.is_empty() || !self.named.is_empty()) && now >= self.next_check)
    }

    fn refresh(&mut self, now: Instant, open_files: usize, metrics: &Metrics) {
        self.changed = false;
        self.next_check = now + UNREADABLE_RECHECK;
        // Named paths are looked at directly: the follower reports an error
        // once until it changes, so a path that went away and came back
        // with the same error (a directory again) brings no new notice.
        for path in &self.named {
            match look(path) {
                Look::Readable => {
                    self.unreadable.remove(path);
                }
                Look::Unreadable(failure) => {
                    self.unreadable.insert(path.clone(), failure);
                }
                Look::Unknown => {}
            }
        }
        // Glob matches the follower reported: until gone or readable
        // again (the follower opens it at its next poll).
        self.unreadable
            .retain(|path, _| !matches!(look(path), Look::Readable));
        metrics.files_unreadable.set(self.unreadable.len() as f64);
        let mut named_failing: Vec<_> = self
            .unreadable
            .iter()
            .filter(|(path, _)| self.named.contains(*path))
            .collect();
        named_failing.sort_by_key(|(path, _)| *path);
        let why_not = if let Some((path, failure)) = named_failing.first() {
            Some(format!("cannot read {}: {failure}", path.display()))
        } else if open_files == 0 && !self.unreadable.is_empty() {
            Some(format!(
                "no file followed, {} matching path(s) cannot be read",
                self.unreadable.len()
            ))
        } else {
            None
        };
        let ready = why_not.is_none();
        if self.ready != Some(ready) {
            match (&why_not, self.ready) {
                (Some(why), _) => tracing::warn!("not ready: {why}"),
                (None, Some(false)) => tracing::info!("ready: following every named path"),
                (None, _) => {}
            }
            self.ready = Some(ready);
            self.health.set_ready(ready);
        }
    }
}

/// What [`look`] found at a path.
enum Look {
    /// A regular file we can open, or nothing (a missing file is not an error).
    Readable,
    Unreadable(ReadFailure),
    /// Something else (a FIFO, a socket): opening it here could block, so
    /// the follower's notices decide.
    Unknown,
}

/// Whether `path` can be followed now, as the follower would find it.
fn look(path: &Path) -> Look {
    match std::fs::metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Look::Readable,
        Err(error) => Look::Unreadable(ReadFailure::of(&error)),
        Ok(meta) if meta.is_dir() => Look::Unreadable(io::ErrorKind::IsADirectory.into()),
        Ok(meta) if meta.is_file() => match std::fs::File::open(path) {
            Ok(_) => Look::Readable,
            Err(error) if error.kind() == io::ErrorKind::NotFound => Look::Readable,
            Err(error) => Look::Unreadable(ReadFailure::of(&error)),
        },
        Ok(_) => Look::Unknown,
    }
}

/// One path's multiline joiner and whether its pending record had a cut line.
struct Joiner {
    lines: Multiline,
    truncated: bool,
}

/// The follower's sink: see the module documentation.
pub struct StreamSink {
    formatter: Formatter,
    chunk: Vec<u8>,
    pipe: OutputPipe,
    metrics: Metrics,
    /// Saving read positions (`--checkpoint-dir`), and when the next
    /// capture is taken.
    saver: Option<Saver>,
    checkpoint_interval: Duration,
    next_capture: Instant,
    /// Events came since the last capture: the positions moved.
    uncaptured: bool,
    readiness: Readiness,
    /// When the files-followed gauge is next refreshed.
    next_gauges: Instant,
    multiline: Option<MultilineConfig>,
    joiners: HashMap<PathBuf, Joiner>,
    /// Per path: when a cut line may be warned about again, and how many
    /// were cut since the last warning.
    truncation_warnings: HashMap<PathBuf, (Instant, u64)>,
}

/// At most one warning about cut lines per file in this interval: a file
/// of long lines must not flood stderr; the metric counts every one.
pub const TRUNCATION_WARNING_INTERVAL: Duration = Duration::from_secs(60);

impl StreamSink {
    fn emit(&mut self, path: &Path, line: &[u8], truncated: bool) {
        self.formatter
            .render(&mut self.chunk, path, line, truncated, false);
    }

    /// `partial`: a piece of a long line, more follows (plain and prefixed
    /// output, no multiline: see `long_lines` in [`crate::Args`]).
    /// `lines` > 1: a run of whole lines joined by `\n` (plain output only,
    /// `LongLines::Runs`).
    fn line(&mut self, path: &Path, line: &[u8], lines: usize, truncated: bool, partial: bool) {
        // A run holds its lines' newlines but the last one's.
        let (ended, newline) = if partial { (0, 0) } else { (lines as u64, 1) };
        self.metrics.line(path, ended, line.len() as u64 + newline);
        if truncated {
            self.metrics.lines_truncated.inc();
            self.warn_truncated(path);
        }
        if partial {
            self.formatter
                .render(&mut self.chunk, path, line, truncated, true);
            return;
        }
        let Some(config) = &self.multiline else {
            self.emit(path, line, truncated);
            return;
        };
        let joiner = self
            .joiners
            .entry(path.to_owned())
            .or_insert_with(|| Joiner {
                lines: Multiline::new(config.start.clone(), config.max_bytes),
                truncated: false,
            });
        if joiner.lines.take_truncated() > 0 {
            joiner.truncated = true;
            self.metrics.lines_truncated.inc();
        }
        match joiner.lines.push(line, Instant::now()) {
            Some(record) => {
                let record_truncated = std::mem::replace(&mut joiner.truncated, truncated);
                self.emit(path, &record, record_truncated);
            }
            None => joiner.truncated |= truncated,
        }
    }

    /// Warns that a line of `path` was cut, at most once per
    /// [`TRUNCATION_WARNING_INTERVAL`] per file, with the count since.
    fn warn_truncated(&mut self, path: &Path) {
        let now = Instant::now();
        let cut = match self.truncation_warnings.get_mut(path) {
            Some((next, cut)) if now < *next => {
                *cut += 1;
                return;
            }
            Some((next, cut)) => {
                *next = now + TRUNCATION_WARNING_INTERVAL;
                std::mem::take(cut) + 1
            }
            None => {
                self.truncation_warnings
                    .insert(path.to_owned(), (now + TRUNCATION_WARNING_INTERVAL, 0));
                1
            }
        };
        tracing::warn!(
            "{}: a line longer than --max-line-bytes was cut ({cut} since the last warning; every cut is counted in log_aggregator_lines_truncated_total; warned at most once a minute per file)",
            path.display()
        );
    }

    /// Writes out multiline records: those quiet for the timeout, or all.
    fn flush_records(&mut self, all: bool) {
        let Some(config) = &self.multiline else {
            return;
        };
        let timeout = config.timeout;
        let now = Instant::now();
        let mut records = Vec::new();
        for (path, joiner) in &mut self.joiners {
            if joiner.lines.take_truncated() > 0 {
                joiner.truncated = true;
                self.metrics.lines_truncated.inc();
            }
            let record = if all {
                joiner.lines.finish()
            } else {
                joiner.lines.flush_due(now, timeout)
            };
            if let Some(record) = record {
                records.push((path.clone(), record, std::mem::take(&mut joiner.truncated)));
            }
        }
        for (path, record, truncated) in records {
            self.emit(&path, &record, truncated);
        }
    }

    /// Hands the rendered chunk to the writer when it is full; pauses the
    /// follower when the writer has no room.
    fn after_accept(&mut self) -> io::Result<Flow> {
        self.pipe.offer(&mut self.chunk)
    }
}

impl follow::Sink for StreamSink {
    fn event(&mut self, event: Event<'_>) -> io::Result<Flow> {
        self.uncaptured = true;
        match event {
            Event::Line {
                path,
                line,
                truncated,
                partial,
                lines,
            } => {
                self.line(path, line, lines, truncated, partial);
                self.after_accept()
            }
            Event::Notice { path, kind } => {
                match kind {
                    NoticeKind::Appeared => tracing::info!("following {}", path.display()),
                    NoticeKind::Rotated => {
                        self.metrics.rotations.inc();
                        tracing::debug!("{} was rotated: reading the new file", path.display());
                    }
                    NoticeKind::Truncated => {
                        self.metrics.truncations.inc();
                        tracing::info!(
                            "{} was truncated: reading it again from its start",
                            path.display()
                        );
                    }
                    NoticeKind::Removed => tracing::debug!("{} was removed", path.display()),
                    NoticeKind::Unreadable(failure) => {
                        tracing::warn!("cannot read {}: {failure}", path.display());
                        self.metrics.file_error(failure);
                        self.readiness.failed(path, failure);
                    }
                }
                Ok(Flow::Continue)
            }
        }
    }

    fn idle(&mut self) -> io::Result<()> {
        self.flush_records(false);
        // Lines must show up promptly: hand over even a small chunk, but
        // only while the pipe has room. A writer appending steadily makes
        // a small read per change event, each under a chunk: handed over
        // regardless, they would pile up in a pipe that is not draining
        // (stdout or a backend stalled) without ever pausing the follower.
        // Kept here, the chunk grows to a full one and pauses reading.
        if self.pipe.has_room() {
            self.pipe.hand_over(&mut self.chunk)?;
        }
        Ok(())
    }

    async fn ready(&mut self) -> io::Result<()> {
        self.pipe.ready_for(&mut self.chunk).await
    }

    async fn held_back(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return std::future::pending().await;
        }
        self.pipe.ready_for(&mut self.chunk).await
    }

    fn after_poll(&mut self, follower: &Follower) -> io::Result<()> {
        self.metrics.flush_lines();
        // Glob matches gone and read to their end: what is kept per path
        // goes too, so short-lived uniquely named files cost nothing once
        // gone (a multiline record still pending is written out first).
        for path in follower.forgotten() {
            if let Some(mut joiner) = self.joiners.remove(path) {
                if let Some(record) = joiner.lines.finish() {
                    let truncated = joiner.truncated || joiner.lines.take_truncated() > 0;
                    self.emit(path, &record, truncated);
                }
            }
            self.truncation_warnings.remove(path);
            self.metrics.forget(path);
        }
        let now = Instant::now();
        if now >= self.next_gauges {
            self.next_gauges = now + METRICS_REFRESH;
            self.metrics
                .files_followed
                .set(follower.open_files() as f64);
            self.metrics
                .files_closed_idle
                .set(follower.closed_idle() as f64);
            self.metrics.files_waiting.set(follower.waiting() as f64);
            self.metrics
                .unread_bytes
                .set(follower.unread_bytes() as f64);
        }
        if self.readiness.due(now) {
            self.readiness
                .refresh(now, follower.open_files(), &self.metrics);
        }
        if self.saver.is_none() || now < self.next_capture {
            return Ok(());
        }
        self.next_capture = now + self.checkpoint_interval;
        self.uncaptured = false;
        let open_files = follower.open_files();
        self.metrics.files_followed.set(open_files as f64);
        self.metrics
            .unread_bytes
            .set(follower.unread_bytes() as f64);
        tracing::debug!("checkpoint interval: {open_files} file(s) open");
        // Records held by the joiners precede the follower's positions:
        // write them out, or a restart from this capture would skip them.
        self.flush_records(true);
        // The rendered chunk is not handed over here (the writer may have no
        // room: reading is paused then, and memory stays bounded); its bytes
        // come after everything handed so far, so they count as handed.
        let capture = Capture {
            handed: self.pipe.handed() + self.chunk.len() as u64,
            positions: follower.checkpoints(),
        };
        if let Some(saver) = &self.saver {
            saver.offer(capture);
        }
        Ok(())
    }

    /// Ticks while a multiline record waits for its timeout, positions
    /// moved since the last capture, or readiness has a path to look at
    /// again; an idle sidecar needs none.
    fn needs_ticks(&self) -> bool {
        let records_pending = self.multiline.as_ref().is_some_and(|config| {
            self.joiners
                .values()
                .any(|joiner| joiner.lines.deadline(config.timeout).is_some())
        });
        records_pending || (self.saver.is_some() && self.uncaptured) || self.readiness.rechecks()
    }

    fn polling_fallback(&mut self, _reason: &str) {
        self.metrics.polling_fallback.set(1.0);
    }
}

/// A capture of read positions and how many output bytes precede them.
struct Capture {
    handed: u64,
    positions: Vec<Checkpoint>,
}

/// Saves captures; the save errors policy lives here.
struct Checkpoints {
    store: CheckpointStore,
    last_saved: Arc<Mutex<Instant>>,
    /// The positions last written, and the inode of the file written: the
    /// same again is not written while that file is still in place (an idle
    /// aggregator would write and sync a file every interval for nothing).
    on_disk: Option<(Vec<Checkpoint>, u64)>,
    /// The last save error; a failing spell is warned about once, when it
    /// starts (a full disk must not print a warning every interval).
    failing: Option<String>,
}

impl Checkpoints {
    fn new(store: CheckpointStore, last_saved: Arc<Mutex<Instant>>) -> Self {
        Self {
            store,
            last_saved,
            on_disk: None,
            failing: None,
        }
    }

    /// Saves the capture's positions, unless they are what the file holds
    /// already: then they are saved as of now all the same (the age metric
    /// says how old the saved positions are, not when a file was written).
    fn save(&mut self, capture: &Capture) -> anyhow::Result<()> {
        let file_inode = || {
            std::fs::metadata(self.store.path())
                .ok()
                .map(|meta| std::os::unix::fs::MetadataExt::ino(&meta))
        };
        let in_place = self.on_disk.as_ref().is_some_and(|(positions, inode)| {
            *positions == capture.positions && file_inode() == Some(*inode)
        });
        if !in_place {
            self.on_disk = None;
            self.store.save(&capture.positions)?;
            self.on_disk = file_inode().map(|inode| (capture.positions.clone(), inode));
        }
        if let Ok(mut at) = self.last_saved.lock() {
            *at = Instant::now();
        }
        Ok(())
    }

    /// [`Checkpoints::save`] during following: a failure is a warning
    /// (following goes on; the age metric shows it), reported once.
    fn save_or_warn(&mut self, capture: &Capture) {
        match self.save(capture) {
            Ok(()) => {
                if self.failing.take().is_some() {
                    tracing::info!("saving read positions works again");
                }
            }
            Err(error) => {
                let message = format!("{error:#}");
                if self.failing.is_none() {
                    tracing::warn!("{message} (read positions not saved; retrying every interval)");
                } else if self.failing.as_ref() != Some(&message) {
                    // Still failing, another step of the save (out of
                    // descriptors: creating the file one time, opening the
                    // directory the next): the same spell, not a new warning.
                    tracing::debug!("{message} (read positions still not saved)");
                }
                self.failing = Some(message);
            }
        }
    }
}

/// Captures whose bytes have not all reached stdout yet: at most two, the
/// oldest (it becomes savable first) and the newest (replaced by each new
/// capture), so a stdout blocked for many intervals holds two, not one per
/// interval.
#[derive(Default)]
struct Pending {
    oldest: Option<Capture>,
    newest: Option<Capture>,
}

impl Pending {
    fn offer(&mut self, capture: Capture) {
        if self.oldest.is_none() {
            self.oldest = Some(capture);
        } else {
            self.newest = Some(capture);
        }
    }

    /// Takes the newest capture whose bytes are all among the first
    /// `written` (older ones are dropped: the newer one covers them).
    fn take_ready(&mut self, written: u64) -> Option<Capture> {
        if self
            .newest
            .as_ref()
            .is_some_and(|capture| capture.handed <= written)
        {
            self.oldest = None;
            return self.newest.take();
        }
        if self
            .oldest
            .as_ref()
            .is_some_and(|capture| capture.handed <= written)
        {
            let ready = self.oldest.take();
            self.oldest = self.newest.take();
            return ready;
        }
        None
    }
}

struct SaverState {
    pending: Pending,
    /// Bytes stdout has taken so far (as of the writer's last flush).
    written: u64,
    closed: bool,
}

struct SaverShared {
    state: Mutex<SaverState>,
    /// Wakes the saver: a capture was offered, stdout took more, or closing.
    wake: Condvar,
}

impl SaverShared {
    fn lock(&self) -> MutexGuard<'_, SaverState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The stdout writer thread's sink: stdout itself, counting what it took,
/// and telling the saver after each flush (the writer flushes after every
/// chunk). So a capture is saved the moment its bytes are out, not at the
/// next interval.
struct CountingStdout<W> {
    inner: W,
    written: u64,
    saver: Arc<SaverShared>,
}

impl<W: Write> Write for CountingStdout<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let count = self.inner.write(bytes)?;
        self.written += count as u64;
        Ok(count)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()?;
        self.saver.lock().written = self.written;
        self.saver.wake.notify_one();
        Ok(())
    }
}

/// The checkpoint saver thread: saves each capture as soon as stdout has
/// taken every byte handed over before it. A thread of its own, so a slow
/// fsync delays neither reading nor stdout.
struct Saver {
    shared: Arc<SaverShared>,
    thread: Option<thread::JoinHandle<Checkpoints>>,
}

impl Saver {
    fn spawn(checkpoints: Checkpoints) -> io::Result<Self> {
        let shared = Arc::new(SaverShared {
            state: Mutex::new(SaverState {
                pending: Pending::default(),
                written: 0,
                closed: false,
            }),
            wake: Condvar::new(),
        });
        let thread_shared = shared.clone();
        let thread = thread::Builder::new()
            .name("checkpoint-saver".into())
            .spawn(move || save_loop(&thread_shared, checkpoints))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// stdout wrapped so that the saver learns what it took.
    fn counting<W: Write>(&self, inner: W) -> CountingStdout<W> {
        CountingStdout {
            inner,
            written: 0,
            saver: self.shared.clone(),
        }
    }

    /// What a shipper calls with its total of bytes acknowledged: the
    /// same as stdout's flush, for a backend ([`crate::ship`]).
    fn acknowledger(&self) -> OnAck {
        let shared = self.shared.clone();
        Box::new(move |acknowledged| {
            shared.lock().written = acknowledged;
            shared.wake.notify_one();
        })
    }

    fn offer(&self, capture: Capture) {
        self.shared.lock().pending.offer(capture);
        self.shared.wake.notify_one();
    }

    /// Stops the thread (after the save it may be doing) and hands back the
    /// store and the captures it had not saved, for the final save.
    fn finish(mut self) -> anyhow::Result<(Checkpoints, Pending)> {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        let checkpoints = self
            .thread
            .take()
            .map(thread::JoinHandle::join)
            .transpose()
            .map_err(|_| anyhow::anyhow!("the checkpoint saver thread panicked"))?
            .ok_or_else(|| anyhow::anyhow!("the checkpoint saver was already finished"))?;
        let pending = std::mem::take(&mut self.shared.lock().pending);
        Ok((checkpoints, pending))
    }
}

impl Drop for Saver {
    fn drop(&mut self) {
        // An error exit: let the thread end; it holds nothing to flush.
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

fn save_loop(shared: &SaverShared, mut checkpoints: Checkpoints) -> Checkpoints {
    loop {
        let capture = {
            let mut state = shared.lock();
            loop {
                if state.closed {
                    return checkpoints;
                }
                let written = state.written;
                if let Some(capture) = state.pending.take_ready(written) {
                    break capture;
                }
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        checkpoints.save_or_warn(&capture);
    }
}

/// The saved positions, or `None` when there is no checkpoint file (a
/// first start) or an invalid one was discarded (a fresh start, as asked).
fn load_checkpoints(
    store: &CheckpointStore,
    discard: bool,
) -> anyhow::Result<Option<Vec<Checkpoint>>> {
    match store.load() {
        Ok(Some(positions)) => {
            tracing::info!(
                "resuming {} file(s) from {}",
                positions.len(),
                store.path().display()
            );
            Ok(Some(positions))
        }
        Ok(None) => Ok(None),
        Err(error) if error.is_invalid() && discard => {
            let aside = store.discard()?;
            tracing::warn!(
                "{error}; moved it to {} and starting without it",
                aside.display()
            );
            Ok(None)
        }
        Err(error) if error.is_invalid() => Err(anyhow::anyhow!(
            "{error}; move it away or pass --discard-invalid-checkpoint to start without it"
        )),
        Err(error) => Err(error.into()),
    }
}

/// Follows until SIGTERM, drains, flushes, saves positions; see the module documentation.
pub async fn run(config: StreamConfig, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    // A closed stdout ends the process even while every file is quiet;
    // when shipping, stdout carries no data (unless one sink is stdout) and
    // is not watched.
    let shipping = config
        .ship
        .as_ref()
        .is_some_and(|ship| !ship.writes_stdout());
    let stdout_closed = async move {
        if shipping {
            std::future::pending::<()>().await;
        }
        sidecar_common::gone::stdout_closed().await;
    };
    let registry = Arc::new(Registry::new());
    let health = Arc::new(Health::default());
    let metrics = Metrics::new(registry.clone());
    let files_followed = metrics.files_followed.clone();

    // The lock first: a second instance must not even read the positions
    // the first one is about to overwrite. Held until we return.
    let (checkpoints, _lock) = match &config.checkpoint_dir {
        Some(dir) => {
            let store = CheckpointStore::open(dir)?;
            let lock = DirLock::acquire(dir).map_err(|error| match error {
                LockError::Held { .. } => {
                    anyhow::anyhow!("{error}: give each log-aggregator its own --checkpoint-dir")
                }
                LockError::Io { .. } => error.into(),
            })?;
            (
                Some(Checkpoints::new(store, metrics.last_saved.clone())),
                Some(lock),
            )
        }
        None => (None, None),
    };
    let resume = match &checkpoints {
        Some(checkpoints) => {
            load_checkpoints(&checkpoints.store, config.discard_invalid_checkpoint)?
        }
        None => None,
    };
    // With a checkpoint file this is a restart: `--from` was applied at the
    // first start. A file the checkpoint does not know appeared while we
    // were down (a rotation's new file, say) and is all new, so everything
    // starts at its beginning; `resume` places the known files at their
    // saved offsets.
    let from = if resume.is_some() {
        StartAt::Beginning
    } else {
        config.from
    };

    let mut follower = Follower::new(config.follow.clone());
    for pattern in &config.patterns {
        if follow::has_glob_syntax(pattern) {
            follower.add_glob(pattern, from)?;
        } else {
            follower.add_path(PathBuf::from(pattern), from);
        }
    }
    for exclude in &config.excludes {
        follower.add_exclude(exclude)?;
    }
    follower.resume(&resume.unwrap_or_default());

    if let Some(address) = config.listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("listening on {address}"))?;
        tracing::info!(
            "serving metrics on http://{}/metrics",
            listener.local_addr()?
        );
        tokio::spawn(sidecar_common::metrics::serve(
            listener,
            registry.clone(),
            health.clone(),
            shutdown.clone(),
        ));
    }

    let now = Instant::now();
    let saver = checkpoints
        .map(Saver::spawn)
        .transpose()
        .context("starting the checkpoint saver")?;
    let mut shipper = match config.ship.clone() {
        Some(ship) => {
            let on_ack = match &saver {
                Some(saver) => saver.acknowledger(),
                None => Box::new(|_| {}),
            };
            Some(Shipper::spawn(ship, &registry, on_ack).context("starting the shipper")?)
        }
        None => None,
    };
    let pipe = match (shipper.as_mut().and_then(Shipper::writer), &saver) {
        (Some(ship), _) => OutputPipe::spawn(ship),
        (None, Some(saver)) => OutputPipe::spawn(saver.counting(stdout()?)),
        (None, None) => OutputPipe::spawn(stdout()?),
    }
    .context("starting the stdout writer")?;
    let mut sink = StreamSink {
        formatter: match config.parse {
            Some(converter) => Formatter::new(config.format).parsing(
                converter,
                registry.counter(
                    "log_aggregator_parse_errors_total",
                    "Lines (records) that did not parse with --parse, written as message and parse_error.",
                    &[],
                ),
            ),
            None => Formatter::new(config.format),
        },
        chunk: Vec::with_capacity(CHUNK_BYTES + 64 * 1024),
        pipe,
        metrics,
        saver,
        checkpoint_interval: config.checkpoint_interval,
        // The first capture right after the first poll: a restart soon
        // after start already knows where this run began (with `--from
        // end`, that is what keeps it from skipping lines).
        next_capture: now,
        uncaptured: true,
        readiness: Readiness::new(health.clone(), &config.patterns),
        next_gauges: now,
        multiline: config.multiline.clone(),
        joiners: HashMap::new(),
        truncation_warnings: HashMap::new(),
    };

    // When the stop was asked for: the drain and the final flush share one deadline.
    let stop_asked = Arc::new(Mutex::new(None::<Instant>));
    {
        let shutdown = shutdown.clone();
        let stop_asked = stop_asked.clone();
        tokio::spawn(async move {
            shutdown.requested().await;
            if let Ok(mut at) = stop_asked.lock() {
                *at = Some(Instant::now());
            }
        });
    }

    tracing::info!(
        "following {} path(s) and pattern(s){}",
        config.patterns.len(),
        if sink.saver.is_some() {
            ", saving read positions"
        } else {
            ""
        }
    );
    tokio::select! {
        following = follow::run(&mut follower, &mut sink, &shutdown, config.drain_timeout) => {
            following.context("following files")?;
        }
        () = stdout_closed => {
            // Nobody reads what we would write: a clean end, like EPIPE.
            // Positions are not saved now (the last save stands), so lines
            // handed over but never written are read again after a restart.
            tracing::info!("stdout was closed; exiting");
            return Ok(ExitCode::SUCCESS);
        }
    }
    files_followed.set(follower.open_files() as f64);

    // Shutdown: everything read was handed to the writer; wait for it to be
    // written, within what is left of the drain timeout.
    sink.flush_records(true);
    sink.pipe.hand_over(&mut sink.chunk)?;
    let asked = stop_asked
        .lock()
        .ok()
        .and_then(|at| *at)
        .unwrap_or_else(Instant::now);
    let deadline = asked + config.drain_timeout;
    let flushed = tokio::time::timeout_at(deadline.into(), sink.pipe.flushed()).await;
    let all_written = match flushed {
        Ok(result) => {
            result?;
            match &shipper {
                Some(shipper) => acknowledged(shipper, sink.pipe.handed(), deadline).await,
                None => true,
            }
        }
        Err(_) => {
            tracing::warn!(
                "stdout took only {} of {} bytes before the drain timeout; the rest will be read again after a restart",
                sink.pipe.written(),
                sink.pipe.handed()
            );
            false
        }
    };
    if let Some(saver) = sink.saver.take() {
        let (mut checkpoints, mut pending) = saver.finish()?;
        let handed = sink.pipe.handed();
        pending.offer(Capture {
            handed,
            positions: follower.checkpoints(),
        });
        let written = match &shipper {
            Some(shipper) => shipper.acknowledged(),
            None if all_written => handed,
            None => sink.pipe.written(),
        };
        if let Some(capture) = pending.take_ready(written) {
            checkpoints.save(&capture)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits until the backend acknowledged `handed` bytes or `deadline`
/// passes (then warns): whether it did.
async fn acknowledged(shipper: &Shipper, handed: u64, deadline: Instant) -> bool {
    /// How often the acknowledged total is looked at while draining.
    const DRAIN_CHECK: Duration = Duration::from_millis(10);
    while shipper.acknowledged() < handed {
        if Instant::now() >= deadline {
            tracing::warn!(
                "the backend acknowledged only {} of {} bytes before the drain timeout; \
                 the rest will be sent again after a restart",
                shipper.acknowledged(),
                handed
            );
            return false;
        }
        tokio::time::sleep(DRAIN_CHECK).await;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(handed: u64, offset: u64) -> Capture {
        Capture {
            handed,
            positions: vec![Checkpoint {
                path: "/a".into(),
                id: follow::FileId { dev: 1, ino: 2 },
                offset,
                fingerprint: None,
                before: None,
            }],
        }
    }

    #[test]
    fn the_newest_capture_whose_bytes_are_written_is_the_one_saved() {
        let mut pending = Pending::default();
        let offset = |capture: Option<Capture>| capture.map(|c| c.positions[0].offset);

        pending.offer(capture(100, 10));
        assert_eq!(offset(pending.take_ready(100)), Some(10), "written already");
        assert_eq!(offset(pending.take_ready(1_000)), None, "taken once");

        pending.offer(capture(200, 20));
        assert_eq!(
            offset(pending.take_ready(150)),
            None,
            "150..200 not written"
        );
        pending.offer(capture(300, 30));
        pending.offer(capture(400, 40));
        assert_eq!(
            offset(pending.take_ready(250)),
            Some(20),
            "the oldest is written now; 300 replaced by 400 meanwhile"
        );
        assert_eq!(offset(pending.take_ready(399)), None);
        assert_eq!(offset(pending.take_ready(400)), Some(40));

        pending.offer(capture(500, 50));
        pending.offer(capture(600, 60));
        assert_eq!(
            offset(pending.take_ready(600)),
            Some(60),
            "everything written: the newest, the older dropped"
        );
        assert_eq!(offset(pending.take_ready(600)), None);
    }

    #[test]
    fn a_capture_is_saved_as_soon_as_stdout_took_its_bytes() {
        // The saver thread and the counting stdout as the binary wires them,
        // with a Vec for stdout: a capture is saved at the writer's flush,
        // not at the next capture.
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        let saver = Saver::spawn(Checkpoints::new(
            store.clone(),
            Arc::new(Mutex::new(Instant::now())),
        ))
        .unwrap();
        let mut stdout = saver.counting(Vec::new());
        let saved = || store.load().unwrap().map(|files| files[0].offset);

        saver.offer(capture(10, 1));
        stdout.write_all(&[b'x'; 10]).unwrap();
        assert_eq!(saved(), None, "not flushed yet");
        stdout.flush().unwrap();
        testkit::eventually("the capture saved", || saved() == Some(1));

        saver.offer(capture(20, 2));
        stdout.write_all(&[b'x'; 10]).unwrap();
        stdout.flush().unwrap();
        testkit::eventually("the next one saved", || saved() == Some(2));

        let (_, pending) = saver.finish().unwrap();
        assert!(pending.oldest.is_none() && pending.newest.is_none());
    }

    #[test]
    fn unchanged_positions_are_not_written_again_but_count_as_saved_now() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        let long_ago = Instant::now() - Duration::from_secs(60);
        let last_saved = Arc::new(Mutex::new(long_ago));
        let mut checkpoints = Checkpoints::new(store.clone(), last_saved.clone());
        // The store writes a new file and renames it into place.
        let inode = || std::fs::metadata(store.path()).unwrap().ino();

        checkpoints.save(&capture(10, 1)).unwrap();
        let written = inode();
        *last_saved.lock().unwrap() = long_ago;
        checkpoints.save(&capture(20, 1)).unwrap();
        assert_eq!(inode(), written, "the same positions are not written again");
        assert!(
            last_saved.lock().unwrap().elapsed() < Duration::from_secs(30),
            "the saved positions are as of now"
        );
        checkpoints.save(&capture(30, 2)).unwrap();
        assert_ne!(inode(), written, "new positions are written");
        assert_eq!(store.load().unwrap().map(|files| files[0].offset), Some(2));
        std::fs::remove_file(store.path()).unwrap();
        checkpoints.save(&capture(40, 2)).unwrap();
        assert_eq!(
            store.load().unwrap().map(|files| files[0].offset),
            Some(2),
            "a file removed is written again"
        );
    }
}
