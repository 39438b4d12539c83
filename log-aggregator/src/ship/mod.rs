//! Shipping lines to one or more backends instead of stdout (`--sink
//! relp,otlp,...`), with read positions saved only for what every backend
//! acknowledged.
//!
//! Where it sits: stream mode renders lines into chunks and hands them to
//! its [`crate::output::OutputPipe`] exactly as for stdout; the pipe's
//! writer thread writes them into a [`ShipWriter`], which passes each chunk
//! over a bounded channel to every sink's thread (one [`Worker`] per sink).
//! A worker cuts chunks into lines, batches them (`--batch-max-lines`,
//! `--batch-max-bytes`, `--batch-timeout`), renders them for its protocol
//! (RFC 5424 in [`syslog`], OTLP in [`otlp`], lines for stdout) and sends
//! them ([`transport`]). After each acknowledged batch the shipper reports
//! the total of rendered bytes acknowledged by *every* sink (the least of
//! the sinks' totals) to stream mode's checkpoint saver, which saves a
//! capture once every byte handed over before it was acknowledged: the same
//! rule as for stdout, with "acknowledged by all" in place of "written".
//!
//! Invariants:
//! - memory is flat whatever the backends do: each sink's channel holds
//!   [`CHANNEL_CHUNKS`] chunks, its worker at most one batch and what it
//!   received beyond it up to `--batch-max-bytes`; when a backend is down
//!   its worker stops taking chunks, its channel fills, the writer blocks,
//!   the pipe refuses, the follower pauses, and the files on disk are the
//!   buffer. The slowest sink paces all of them;
//! - bytes are acknowledged in order, and only after the backend's answer
//!   (RELP `rsp 200`, an OTLP 2xx), the kernel's `write(2)` (plain TCP,
//!   which has no answer: see [`transport`]) or stdout's flush;
//! - a failed batch is sent again from its first unacknowledged message
//!   after reconnecting with exponential backoff and full jitter
//!   (<https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/>),
//!   forever: the backend being down is not an error that ends following.

pub mod otlp;
pub mod parsed;
pub mod syslog;
pub mod tls;
pub mod transport;

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use sidecar_common::metrics::{Counter, Gauge, Registry};

use self::syslog::{Rfc5424, SyslogFields, timestamp_now};
use self::transport::{Messages, Relp, TcpSyslog, Timeouts, Transport};

/// Chunks waiting between the output pipe's writer and the shipper.
pub const CHANNEL_CHUNKS: usize = 1;

/// Which backend protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Lines to stdout, next to other sinks: acknowledged by the flush.
    Stdout,
    /// RFC 5424 over TCP, RFC 6587 octet counting, no acknowledgement.
    SyslogTcp,
    /// RFC 5424 over RELP, one acknowledgement per message.
    Relp,
    /// OTLP/HTTP logs, protobuf: a 2xx acknowledges the batch.
    Otlp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Stdout => "stdout",
            Protocol::SyslogTcp => "syslog-tcp",
            Protocol::Relp => "relp",
            Protocol::Otlp => "otlp",
        }
    }
}

/// When a batch is sent: whichever limit comes first.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    pub max_lines: usize,
    pub max_bytes: usize,
    /// How long the first line of a batch may wait for the batch to fill.
    pub timeout: Duration,
}

/// Reconnection delays: the n-th consecutive failure waits a random time
/// in `0..min(max, initial * 2^n)`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

/// One sink: its protocol and backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkTarget {
    pub protocol: Protocol,
    /// `host:port` (syslog; TLS: `tls://host:port`),
    /// `http[s]://host:port[/path]` (OTLP), empty for stdout.
    pub address: String,
    /// Lines arrive rendered `--output prefixed` (an OTLP sink needs each
    /// line's path) and this sink wants them plain: the prefix is cut off.
    pub strip_prefix: bool,
}

/// One line as a sink sees it. Severity and timestamp are none until a
/// parser gives them; the encoders already carry them when present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The file the line came from (empty when unknown).
    pub path: &'a str,
    /// The line, without its newline.
    pub body: &'a [u8],
    /// OpenTelemetry SeverityNumber, 1..=24 (syslog maps it to 0..=7).
    pub severity: Option<u8>,
    /// When the event happened, nanoseconds since the Unix epoch.
    pub time_unix_nano: Option<u64>,
}

impl<'a> Record<'a> {
    pub fn line(path: &'a str, body: &'a [u8]) -> Self {
        Self {
            path,
            body,
            severity: None,
            time_unix_nano: None,
        }
    }
}

/// Everything the shipper needs, as plain values.
#[derive(Clone, Debug)]
pub struct ShipConfig {
    /// Every line goes to each of them; at least one.
    pub sinks: Vec<SinkTarget>,
    /// OTLP resource attributes (`k8s.pod.name`...).
    pub resource: Vec<(String, String)>,
    pub otlp: otlp::OtlpOptions,
    /// The TLS setup, loaded at start when a sink's address asks for TLS.
    pub tls: Option<tls::TlsClient>,
    /// Lines are `--parse` records (JSON objects): syslog and OTLP take
    /// each one's severity, time and file from its fields ([`parsed`]).
    pub records: bool,
    pub batch: BatchLimits,
    pub syslog: SyslogFields,
    pub backoff: Backoff,
    pub timeouts: Timeouts,
}

impl ShipConfig {
    /// Whether one of the sinks is stdout (which then carries data).
    pub fn writes_stdout(&self) -> bool {
        self.sinks
            .iter()
            .any(|sink| sink.protocol == Protocol::Stdout)
    }
}

/// One sink's metrics.
#[derive(Clone)]
struct ShipMetrics {
    batches_sent: Counter,
    batches_failed: Counter,
    batches_retried: Counter,
    lines_acked: Counter,
    bytes_acked: Counter,
    lines_resent: Counter,
    lines_dropped: Counter,
    records_rejected: Counter,
    reconnects: Counter,
    up: Gauge,
}

impl ShipMetrics {
    fn new(registry: &Registry, protocol: Protocol) -> Self {
        let labels = [("sink", protocol.name())];
        Self {
            batches_sent: registry.counter(
                "log_aggregator_ship_batches_total",
                "Batches the backend acknowledged (RELP rsp 200 for every line; TCP: written).",
                &labels,
            ),
            batches_failed: registry.counter(
                "log_aggregator_ship_batches_failed_total",
                "Batch sends that failed (backend unreachable, connection lost, timed out, 429/502/503/504); each is retried.",
                &labels,
            ),
            batches_retried: registry.counter(
                "log_aggregator_ship_batches_retried_total",
                "Batches sent again after a failure.",
                &labels,
            ),
            lines_acked: registry.counter(
                "log_aggregator_ship_lines_acked_total",
                "Lines the backend acknowledged.",
                &labels,
            ),
            bytes_acked: registry.counter(
                "log_aggregator_ship_bytes_acked_total",
                "Bytes of rendered lines (newline included) the backend acknowledged.",
                &labels,
            ),
            lines_resent: registry.counter(
                "log_aggregator_ship_lines_resent_total",
                "Lines sent again after a failure without their acknowledgement: at most this many duplicates.",
                &labels,
            ),
            lines_dropped: registry.counter(
                "log_aggregator_ship_lines_dropped_total",
                "Lines of batches the backend refused for good (OTLP 400, 413...): never retried, lost.",
                &labels,
            ),
            records_rejected: registry.counter(
                "log_aggregator_ship_records_rejected_total",
                "Records a backend refused inside an acknowledged request (OTLP partial success): lost, never retried.",
                &labels,
            ),
            reconnects: registry.counter(
                "log_aggregator_ship_reconnects_total",
                "Connections opened to the backend after the first.",
                &labels,
            ),
            up: registry.gauge(
                "log_aggregator_ship_backend_up",
                "1 while connected to the backend and its last send succeeded.",
                &labels,
            ),
        }
    }
}

/// The running shipper: its writer end, and what every sink acknowledged.
pub struct Shipper {
    sender: Option<Vec<SyncSender<Arc<[u8]>>>>,
    acks: Arc<Acks>,
    /// Bytes the writer handed to the sinks (for the lag gauges).
    received: Arc<AtomicU64>,
}

/// Receives the total of bytes acknowledged so far by every sink.
pub type OnAck = Box<dyn Fn(u64) + Send + Sync>;

/// The sinks' acknowledged totals, and the least of them as last reported.
struct Acks {
    per_sink: Vec<Arc<AtomicU64>>,
    reported: Mutex<u64>,
    on_ack: OnAck,
}

impl Acks {
    fn least(&self) -> u64 {
        self.per_sink
            .iter()
            .map(|acknowledged| acknowledged.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }

    /// Called by a worker after its batch: reports the new least total,
    /// under the lock so reports never go backwards.
    fn report(&self) {
        let mut reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
        let least = self.least();
        if least > *reported {
            *reported = least;
            (self.on_ack)(least);
        }
    }
}

impl Shipper {
    /// Starts one thread per sink. `on_ack` is called with the total of
    /// bytes acknowledged by every sink whenever it grows.
    pub fn spawn(config: ShipConfig, registry: &Registry, on_ack: OnAck) -> io::Result<Self> {
        let received = Arc::new(AtomicU64::new(0));
        let per_sink: Vec<Arc<AtomicU64>> = config
            .sinks
            .iter()
            .map(|_| Arc::new(AtomicU64::new(0)))
            .collect();
        let acks = Arc::new(Acks {
            per_sink: per_sink.clone(),
            reported: Mutex::new(0),
            on_ack,
        });
        let mut senders = Vec::with_capacity(config.sinks.len());
        for (target, acknowledged) in config.sinks.iter().zip(per_sink) {
            let (sender, receiver) = sync_channel(CHANNEL_CHUNKS);
            senders.push(sender);
            let oldest = Arc::new(Mutex::new(None::<Instant>));
            let metrics = ShipMetrics::new(registry, target.protocol);
            let labels = [("sink", target.protocol.name())];
            {
                let (received, acknowledged) = (received.clone(), acknowledged.clone());
                registry.gauge_fn(
                    "log_aggregator_ship_lag_bytes",
                    "Bytes of rendered lines taken for shipping and not yet acknowledged (the output pipe holds at most 512 KiB more; the files the rest).",
                    &labels,
                    move || {
                        received
                            .load(Ordering::Acquire)
                            .saturating_sub(acknowledged.load(Ordering::Acquire))
                            as f64
                    },
                );
            }
            {
                let oldest = oldest.clone();
                registry.gauge_fn(
                    "log_aggregator_ship_lag_seconds",
                    "How long the oldest line taken for shipping has waited for its acknowledgement (0 when none waits).",
                    &labels,
                    move || {
                        oldest
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .map_or(0.0, |at| at.elapsed().as_secs_f64())
                    },
                );
            }
            let worker = Worker {
                rfc5424: Rfc5424::new(&config.syslog),
                target: target.clone(),
                config: config.clone(),
                receiver,
                metrics,
                acknowledged,
                acks: acks.clone(),
                received_total: 0,
                arrivals: VecDeque::new(),
                oldest,
                pending: Vec::new(),
                closed: false,
                first_line_at: None,
                connection: None,
                connected_once: false,
                failures: 0,
                // Odd, and different per sink.
                rng: seed().wrapping_add(2 * senders.len() as u64),
            };
            thread::Builder::new()
                .name(format!("ship-{}", target.protocol.name()))
                .spawn(move || worker.run())?;
        }
        Ok(Self {
            sender: Some(senders),
            acks,
            received,
        })
    }

    /// The `Write` end for the output pipe (one per shipper).
    pub fn writer(&mut self) -> Option<ShipWriter> {
        let received = self.received.clone();
        self.sender
            .take()
            .map(|senders| ShipWriter { senders, received })
    }

    /// Bytes acknowledged so far by every sink.
    pub fn acknowledged(&self) -> u64 {
        self.acks.least()
    }
}

/// The output pipe's sink when shipping: hands each chunk to every sink,
/// blocking while one has no room (that is the back-pressure).
pub struct ShipWriter {
    senders: Vec<SyncSender<Arc<[u8]>>>,
    received: Arc<AtomicU64>,
}

impl Write for ShipWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let chunk: Arc<[u8]> = Arc::from(bytes);
        for sender in &self.senders {
            sender
                .send(chunk.clone())
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "a shipper stopped"))?;
        }
        self.received
            .fetch_add(bytes.len() as u64, Ordering::AcqRel);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A small xorshift generator for jitter (no dependency for one random number).
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_nanos() as u64)
        .unwrap_or(1);
    (nanos ^ u64::from(std::process::id()).rotate_left(32)) | 1
}

fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The delay before reconnection attempt `failures` (1 = after the first failure).
pub fn backoff_delay(backoff: Backoff, failures: u32, random: u64) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let ceiling = backoff
        .initial
        .saturating_mul(1 << exponent)
        .min(backoff.max)
        .as_millis()
        .max(1) as u64;
    Duration::from_millis(random % (ceiling + 1))
}

/// One sink's thread.
struct Worker {
    target: SinkTarget,
    config: ShipConfig,
    rfc5424: Rfc5424,
    receiver: Receiver<Arc<[u8]>>,
    metrics: ShipMetrics,
    /// This sink's total of bytes acknowledged.
    acknowledged: Arc<AtomicU64>,
    acks: Arc<Acks>,
    /// Bytes received so far, and when each chunk not yet acknowledged
    /// arrived (its end in that count): the lag in seconds.
    received_total: u64,
    arrivals: VecDeque<(u64, Instant)>,
    oldest: Arc<Mutex<Option<Instant>>>,
    /// Rendered bytes received and not yet acknowledged.
    pending: Vec<u8>,
    /// The sender is gone: send what is pending, then stop.
    closed: bool,
    /// When the oldest pending line arrived.
    first_line_at: Option<Instant>,
    connection: Option<Box<dyn Transport>>,
    connected_once: bool,
    /// Consecutive failures (connect or send).
    failures: u32,
    rng: u64,
}

impl Worker {
    fn run(mut self) {
        let mut messages = Messages::default();
        loop {
            self.fill();
            let (lines, bytes) = self.batch_extent();
            if lines == 0 {
                if self.closed {
                    return;
                }
                continue;
            }
            let full = lines >= self.config.batch.max_lines
                || bytes >= self.config.batch.max_bytes
                || self.pending.len() > bytes;
            let due = self
                .first_line_at
                .is_some_and(|at| at.elapsed() >= self.config.batch.timeout);
            if !(full || due || self.closed) {
                continue;
            }
            self.render(&mut messages, bytes);
            self.deliver(&messages);
            self.pending.drain(..bytes);
            self.first_line_at = (!self.pending.is_empty()).then(Instant::now);
            let total = self.acknowledged.fetch_add(bytes as u64, Ordering::AcqRel) + bytes as u64;
            self.metrics.lines_acked.add(lines as u64);
            self.metrics.bytes_acked.add(bytes as u64);
            self.metrics.batches_sent.inc();
            while self.arrivals.front().is_some_and(|(end, _)| *end <= total) {
                self.arrivals.pop_front();
            }
            *self.oldest.lock().unwrap_or_else(PoisonError::into_inner) =
                self.arrivals.front().map(|(_, at)| *at);
            self.acks.report();
        }
    }

    /// Takes chunks from the channel while the batch is not full, waiting
    /// at most until the batch is due.
    fn fill(&mut self) {
        while !self.closed && self.pending.len() < self.config.batch.max_bytes {
            let (lines, _) = self.batch_extent();
            if lines >= self.config.batch.max_lines {
                return;
            }
            let received = match self.first_line_at.filter(|_| lines > 0) {
                None => self
                    .receiver
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => {
                    let due = at + self.config.batch.timeout;
                    match due.checked_duration_since(Instant::now()) {
                        Some(wait) if !wait.is_zero() => self.receiver.recv_timeout(wait),
                        _ => return,
                    }
                }
            };
            match received {
                Ok(chunk) => {
                    let now = Instant::now();
                    if self.pending.is_empty() {
                        self.first_line_at = Some(now);
                    }
                    self.received_total += chunk.len() as u64;
                    if self.arrivals.is_empty() {
                        *self.oldest.lock().unwrap_or_else(PoisonError::into_inner) = Some(now);
                    }
                    self.arrivals.push_back((self.received_total, now));
                    self.pending.extend_from_slice(&chunk);
                }
                Err(RecvTimeoutError::Timeout) => return,
                Err(RecvTimeoutError::Disconnected) => self.closed = true,
            }
        }
    }

    /// Lines and bytes of the next batch: complete lines from the start of
    /// `pending`, within the limits (at least one line).
    fn batch_extent(&self) -> (usize, usize) {
        let limits = self.config.batch;
        let mut lines = 0;
        let mut bytes = 0;
        for end in memchr::memchr_iter(b'\n', &self.pending) {
            let next = end + 1;
            if lines > 0 && next > limits.max_bytes {
                break;
            }
            lines += 1;
            bytes = next;
            if lines >= limits.max_lines {
                break;
            }
        }
        (lines, bytes)
    }

    fn render(&self, messages: &mut Messages, bytes: usize) {
        messages.clear();
        let timestamp = timestamp_now();
        let waited = self.first_line_at.map_or(Duration::ZERO, |at| at.elapsed());
        messages.observed_unix_nano = std::time::SystemTime::now()
            .checked_sub(waited)
            .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |since| since.as_nanos() as u64);
        // `bytes` ends with a newline: without it, the lines split exactly.
        for line in self.pending[..bytes - 1].split(|byte| *byte == b'\n') {
            let line = if self.target.strip_prefix {
                otlp::split_prefixed(line).1
            } else {
                line
            };
            match self.target.protocol {
                // The transports take the lines as they are (OTLP builds
                // its request from the prefixed lines).
                Protocol::Otlp | Protocol::Stdout => messages.bytes.extend_from_slice(line),
                Protocol::SyslogTcp | Protocol::Relp => {
                    let mut record = Record::line("", line);
                    if self.config.records {
                        let parsed = parsed::fields(line);
                        record.severity = parsed.severity;
                        record.time_unix_nano = parsed.time_unix_nano;
                    }
                    self.rfc5424
                        .render(&mut messages.bytes, &timestamp, &record);
                }
            }
            messages.end();
        }
    }

    /// Sends `messages` until all are acknowledged, reconnecting as needed.
    fn deliver(&mut self, messages: &Messages) {
        let mut from = 0;
        let mut retry = false;
        loop {
            if self.connection.is_none() {
                match self.connect() {
                    Ok(connection) => self.connection = Some(connection),
                    Err(error) => {
                        // A batch that cannot be sent because the backend
                        // cannot be reached failed like one cut mid-send.
                        retry = true;
                        self.metrics.batches_failed.inc();
                        self.failed(
                            &format!("connecting to {}: {error}", self.target.address),
                            None,
                        );
                        continue;
                    }
                }
            }
            if retry {
                self.metrics.batches_retried.inc();
            }
            let Some(connection) = self.connection.as_mut() else {
                continue;
            };
            match connection.send(messages, from) {
                Ok(()) => {
                    if self.failures > 0 {
                        tracing::info!(
                            "{} backend {} takes lines again",
                            self.target.protocol.name(),
                            self.target.address
                        );
                    }
                    self.failures = 0;
                    self.metrics.up.set(1.0);
                    if let Some(rejected) = connection.rejected() {
                        self.metrics.records_rejected.add(rejected);
                    }
                    return;
                }
                Err(error) if error.acknowledged >= messages.len() => {
                    // All taken, and the server closes: reconnect next time.
                    if let Some(rejected) = connection.rejected() {
                        self.metrics.records_rejected.add(rejected);
                    }
                    self.connection = None;
                    self.metrics.up.set(1.0);
                    return;
                }
                Err(error) if error.permanent => {
                    let dropped = messages.len() - error.acknowledged;
                    self.metrics.batches_failed.inc();
                    self.metrics.lines_dropped.add(dropped as u64);
                    tracing::error!(
                        "{} refused {dropped} line(s) for good, dropped (never retried): {}",
                        self.target.address,
                        error.error
                    );
                    return;
                }
                Err(error) => {
                    from = error.acknowledged;
                    retry = true;
                    self.metrics.lines_resent.add(error.unanswered as u64);
                    self.connection = None;
                    self.metrics.batches_failed.inc();
                    let retry_after = error.retry_after;
                    self.failed(
                        &format!(
                            "sending to {}: {} ({} of {} lines of the batch acknowledged)",
                            self.target.address,
                            error.error,
                            from,
                            messages.len()
                        ),
                        retry_after,
                    );
                }
            }
        }
    }

    fn connect(&mut self) -> io::Result<Box<dyn Transport>> {
        let address = &self.target.address;
        let timeouts = self.config.timeouts;
        let connection: Box<dyn Transport> = match self.target.protocol {
            Protocol::Stdout => Box::new(transport::StdoutLines::default()),
            Protocol::SyslogTcp | Protocol::Relp => {
                let target = tls::SyslogAddress::parse(address)
                    .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
                let tls = if target.tls {
                    Some(self.config.tls.as_ref().ok_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidInput, "tls:// without a TLS setup")
                    })?)
                } else {
                    None
                };
                if self.target.protocol == Protocol::Relp {
                    Box::new(Relp::connect(&target.authority, tls, timeouts)?)
                } else {
                    Box::new(TcpSyslog::connect(&target.authority, tls, timeouts)?)
                }
            }
            Protocol::Otlp => {
                let url = otlp::HttpUrl::parse(address)
                    .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
                Box::new(otlp::Otlp::connect(
                    &url,
                    &self.config.resource,
                    &self.config.otlp,
                    self.config.records,
                    self.config.tls.as_ref(),
                    timeouts,
                )?)
            }
        };
        if self.connected_once {
            self.metrics.reconnects.inc();
        }
        self.connected_once = true;
        tracing::debug!("connected to {address}");
        Ok(connection)
    }

    /// Backend down: warn when a spell starts, then wait before trying
    /// again: what the server asked for (`Retry-After`), else the backoff.
    fn failed(&mut self, what: &str, retry_after: Option<Duration>) {
        self.metrics.up.set(0.0);
        self.failures = self.failures.saturating_add(1);
        if self.failures == 1 {
            tracing::warn!("{what}; retrying with backoff, reading paused meanwhile");
        } else {
            tracing::debug!("{what} (failure {})", self.failures);
        }
        let delay = retry_after.unwrap_or_else(|| {
            backoff_delay(
                self.config.backoff,
                self.failures,
                next_random(&mut self.rng),
            )
        });
        // Waiting is the point: the backend is down, and the thread has
        // nothing else to do (reading is paused by the full channel).
        thread::sleep(delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_up_to_its_maximum_with_jitter_below() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        };
        assert_eq!(backoff_delay(backoff, 1, 100), Duration::from_millis(100));
        assert_eq!(backoff_delay(backoff, 1, 101), Duration::ZERO);
        assert_eq!(backoff_delay(backoff, 3, 400), Duration::from_millis(400));
        assert_eq!(backoff_delay(backoff, 30, 5_000), Duration::from_secs(5));
        for failures in 1..40 {
            assert!(backoff_delay(backoff, failures, u64::MAX) <= backoff.max);
        }
    }
}
