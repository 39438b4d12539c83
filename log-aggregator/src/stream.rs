//! Stream mode (`--follow`): every line of every matching file to stdout,
//! once, in order within each file.
//!
//! The following itself (rotation, truncation, identity, inotify and its
//! polling fallback, drain at shutdown) is [`sidecar_common::follow`]; this
//! module is its sink and its housekeeping:
//! - [`StreamSink`] renders lines ([`crate::output`]), joins multiline
//!   records, counts metrics, and pauses the follower when the stdout writer
//!   has no room: reading stops, the file on disk is the buffer;
//! - checkpoints ([`crate::checkpoint`]) are captured from
//!   [`follow::Sink::after_poll`] every `--checkpoint-interval` (the follower
//!   is then between two reads, so its positions match the lines handed
//!   over) and saved only once the writer has written every byte handed
//!   over before the capture, so a saved offset never skips a line that did
//!   not reach stdout;
//! - the gauges that need the follower (files followed) are refreshed there
//!   too. One driver run covers the whole process: the polling fallback is
//!   decided (and warned about) once.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use regex::bytes::Regex;
use sidecar_common::follow::{
    self, Checkpoint, Event, FileId, Flow, FollowOptions, Follower, NoticeKind, StartAt,
};
use sidecar_common::metrics::{Counter, Gauge, Health, Registry};
use sidecar_common::multiline::Multiline;
use sidecar_common::shutdown::Shutdown;

use crate::checkpoint::{CheckpointError, CheckpointStore, Position};
use crate::output::{CHUNK_BYTES, Format, Formatter, OutputPipe};

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
    pub format: Format,
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
}

/// Whether `pattern` is a glob rather than a plain path.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// The metrics stream mode exposes.
struct Metrics {
    registry: Arc<Registry>,
    rotations: Counter,
    truncations: Counter,
    lines_truncated: Counter,
    files_followed: Gauge,
    polling_fallback: Gauge,
    /// Per-file line and byte counters, created on first use.
    per_file: HashMap<PathBuf, (Counter, Counter)>,
    /// Lines and bytes of the current run of lines from one path, not yet
    /// added to its counters: lines come in runs per file, so the counters
    /// are looked up (and their atomics touched) once per run and poll,
    /// not once per line. Flushed after every poll.
    run: Option<(PathBuf, u64, u64)>,
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
            per_file: HashMap::new(),
            run: None,
            last_saved,
            registry,
        }
    }

    /// Counts `lines` (0 for a piece of a long line whose rest follows)
    /// and `bytes` read from `path`.
    fn line(&mut self, path: &Path, lines: u64, bytes: u64) {
        if let Some((run_path, run_lines, read)) = &mut self.run {
            if run_path == path {
                *run_lines += lines;
                *read += bytes;
                return;
            }
        }
        self.flush_lines();
        self.run = Some((path.to_owned(), lines, bytes));
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
    /// Saving read positions (`--checkpoint-dir`), and when next.
    checkpoints: Option<Checkpoints>,
    checkpoint_interval: Duration,
    next_save: Instant,
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
    /// output, no multiline: see `split_long_lines` in [`crate::Args`]).
    fn line(&mut self, path: &Path, line: &[u8], truncated: bool, partial: bool) {
        let ended = u64::from(!partial);
        self.metrics.line(path, ended, line.len() as u64 + ended);
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
        if self.chunk.len() < CHUNK_BYTES {
            return Ok(Flow::Continue);
        }
        if self.pipe.has_room() {
            self.pipe.hand_over(&mut self.chunk)?;
            Ok(Flow::Continue)
        } else {
            Ok(Flow::Pause)
        }
    }
}

impl follow::Sink for StreamSink {
    fn event(&mut self, event: Event<'_>) -> io::Result<Flow> {
        match event {
            Event::Line {
                path,
                line,
                truncated,
                partial,
            } => {
                self.line(path, line, truncated, partial);
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
                        tracing::warn!("cannot read {}: {failure}", path.display())
                    }
                }
                Ok(Flow::Continue)
            }
        }
    }

    fn idle(&mut self) -> io::Result<()> {
        self.flush_records(false);
        // Lines must show up promptly: hand over even a small chunk. This
        // may exceed the pending limit by one chunk at most, since events
        // pause as soon as the limit is reached.
        self.pipe.hand_over(&mut self.chunk)
    }

    async fn ready(&mut self) -> io::Result<()> {
        self.pipe.room().await?;
        self.pipe.hand_over(&mut self.chunk)
    }

    fn after_poll(&mut self, follower: &Follower) -> io::Result<()> {
        self.metrics.flush_lines();
        let now = Instant::now();
        if now >= self.next_gauges {
            self.next_gauges = now + METRICS_REFRESH;
            self.metrics
                .files_followed
                .set(follower.open_files() as f64);
        }
        if self.checkpoints.is_none() || now < self.next_save {
            return Ok(());
        }
        self.next_save = now + self.checkpoint_interval;
        let open_files = follower.open_files();
        self.metrics.files_followed.set(open_files as f64);
        tracing::debug!("checkpoint interval: {open_files} file(s) open");
        // Records held by the joiners precede the follower's positions:
        // write them out, or a restart from this capture would skip them.
        self.flush_records(true);
        // The rendered chunk is not handed over here (the writer may have no
        // room: reading is paused then, and memory stays bounded); its bytes
        // come after everything handed so far, so they count as handed.
        let capture = Capture {
            handed: self.pipe.handed() + self.chunk.len() as u64,
            positions: to_positions(follower.checkpoints()),
        };
        let written = self.pipe.written();
        if let Some(checkpoints) = self.checkpoints.as_mut() {
            checkpoints.offer_or_warn(capture, written);
        }
        Ok(())
    }

    fn polling_fallback(&mut self, _reason: &str) {
        self.metrics.polling_fallback.set(1.0);
    }
}

/// A capture of read positions and how many output bytes precede them.
struct Capture {
    handed: u64,
    positions: Vec<Position>,
}

fn to_positions(checkpoints: Vec<Checkpoint>) -> Vec<Position> {
    checkpoints
        .into_iter()
        .map(|checkpoint| Position {
            path: checkpoint.path,
            dev: checkpoint.id.dev,
            ino: checkpoint.id.ino,
            offset: checkpoint.offset,
            fingerprint: checkpoint.fingerprint,
        })
        .collect()
}

fn to_checkpoints(positions: Vec<Position>) -> Vec<Checkpoint> {
    positions
        .into_iter()
        .map(|position| Checkpoint {
            path: position.path,
            id: FileId {
                dev: position.dev,
                ino: position.ino,
            },
            offset: position.offset,
            fingerprint: position.fingerprint,
        })
        .collect()
}

/// Saves captures once their bytes are written; see the module documentation.
struct Checkpoints {
    store: CheckpointStore,
    /// The oldest capture whose bytes are not all written yet.
    waiting: Option<Capture>,
    last_saved: Arc<Mutex<Instant>>,
    /// The last save error, reported once until it changes or clears
    /// (a full disk must not print a warning every interval).
    failing: Option<String>,
}

impl Checkpoints {
    fn new(store: CheckpointStore, last_saved: Arc<Mutex<Instant>>) -> Self {
        Self {
            store,
            waiting: None,
            last_saved,
            failing: None,
        }
    }

    fn save(&self, capture: &Capture) -> anyhow::Result<()> {
        self.store.save(&capture.positions)?;
        if let Ok(mut at) = self.last_saved.lock() {
            *at = Instant::now();
        }
        Ok(())
    }

    /// [`Checkpoints::offer`] during following: a failure is a warning
    /// (following goes on; the age metric shows it), reported once.
    fn offer_or_warn(&mut self, capture: Capture, written: u64) {
        match self.offer(capture, written) {
            Ok(()) => {
                if self.failing.take().is_some() {
                    tracing::info!("saving read positions works again");
                }
            }
            Err(error) => {
                let message = format!("{error:#}");
                if self.failing.as_ref() != Some(&message) {
                    tracing::warn!("{message} (read positions not saved; retrying every interval)");
                    self.failing = Some(message);
                }
            }
        }
    }

    /// Takes a new capture into account, saving the newest one already written.
    fn offer(&mut self, capture: Capture, written: u64) -> anyhow::Result<()> {
        if capture.handed <= written {
            self.waiting = None;
            return self.save(&capture);
        }
        match self.waiting.take() {
            Some(waiting) if waiting.handed <= written => {
                self.save(&waiting)?;
                self.waiting = Some(capture);
            }
            // Keep the older one: it becomes savable first.
            Some(waiting) => self.waiting = Some(waiting),
            None => self.waiting = Some(capture),
        }
        Ok(())
    }
}

fn load_checkpoints(store: &CheckpointStore, discard: bool) -> anyhow::Result<Vec<Checkpoint>> {
    match store.load() {
        Ok(Some(positions)) => {
            tracing::info!(
                "resuming {} file(s) from {}",
                positions.len(),
                store.path().display()
            );
            Ok(to_checkpoints(positions))
        }
        Ok(None) => Ok(Vec::new()),
        Err(error @ (CheckpointError::Corrupt { .. } | CheckpointError::UnknownVersion { .. }))
            if discard =>
        {
            let aside = store.discard()?;
            tracing::warn!(
                "{error}; moved it to {} and starting without it",
                aside.display()
            );
            Ok(Vec::new())
        }
        Err(error) => Err(error.into()),
    }
}

/// Follows until SIGTERM, drains, flushes, saves positions; see the module documentation.
pub async fn run(config: StreamConfig, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    // A closed stdout ends the process even while every file is quiet.
    let stdout_closed = sidecar_common::gone::stdout_closed();
    let registry = Arc::new(Registry::new());
    let health = Arc::new(Health::default());
    let metrics = Metrics::new(registry.clone());
    let files_followed = metrics.files_followed.clone();

    let checkpoints = match &config.checkpoint_dir {
        Some(dir) => Some(Checkpoints::new(
            CheckpointStore::open(dir)?,
            metrics.last_saved.clone(),
        )),
        None => None,
    };
    let resume = match &checkpoints {
        Some(checkpoints) => {
            load_checkpoints(&checkpoints.store, config.discard_invalid_checkpoint)?
        }
        None => Vec::new(),
    };

    let mut follower = Follower::new(config.follow.clone());
    for pattern in &config.patterns {
        if is_glob(pattern) {
            follower.add_glob(pattern, config.from)?;
        } else {
            follower.add_path(PathBuf::from(pattern), config.from);
        }
    }
    follower.resume(&resume);

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
    let mut sink = StreamSink {
        formatter: Formatter::new(config.format),
        chunk: Vec::with_capacity(CHUNK_BYTES + 64 * 1024),
        pipe: OutputPipe::spawn(io::stdout()).context("starting the stdout writer")?,
        metrics,
        checkpoints,
        checkpoint_interval: config.checkpoint_interval,
        next_save: now + config.checkpoint_interval,
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
        if sink.checkpoints.is_some() {
            ", saving read positions"
        } else {
            ""
        }
    );
    health.set_ready(true);
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
            true
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
    if let Some(checkpoints) = sink.checkpoints.as_mut() {
        let capture = Capture {
            handed: sink.pipe.handed(),
            positions: to_positions(follower.checkpoints()),
        };
        let written = if all_written {
            capture.handed
        } else {
            sink.pipe.written()
        };
        checkpoints.offer(capture, written)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_are_told_from_paths() {
        assert!(is_glob("/var/log/*.log"));
        assert!(is_glob("/var/log/app-?.log"));
        assert!(is_glob("/var/log/[ab].log"));
        assert!(!is_glob("/var/log/app.log"));
    }

    fn capture(handed: u64, offset: u64) -> Capture {
        Capture {
            handed,
            positions: vec![Position {
                path: "/a".into(),
                dev: 1,
                ino: 2,
                offset,
                fingerprint: None,
            }],
        }
    }

    #[test]
    fn a_capture_is_saved_only_once_its_bytes_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        let mut checkpoints = Checkpoints::new(store.clone(), Arc::new(Mutex::new(Instant::now())));
        let saved = || store.load().unwrap().map(|files| files[0].offset);

        checkpoints.offer(capture(100, 10), 100).unwrap();
        assert_eq!(saved(), Some(10), "written already: saved at once");

        checkpoints.offer(capture(200, 20), 150).unwrap();
        assert_eq!(saved(), Some(10), "bytes 150..200 not written: not saved");

        checkpoints.offer(capture(300, 30), 250).unwrap();
        assert_eq!(saved(), Some(20), "the older capture is written now");

        checkpoints.offer(capture(400, 40), 260).unwrap();
        assert_eq!(saved(), Some(20), "neither 300 nor 400 written");

        checkpoints.offer(capture(500, 50), 500).unwrap();
        assert_eq!(saved(), Some(50), "everything written: the newest");
    }
}
