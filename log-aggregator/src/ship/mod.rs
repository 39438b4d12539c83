//! Shipping lines to a backend instead of stdout (`--sink syslog-tcp|relp`),
//! with read positions saved only for what the backend acknowledged.
//!
//! Where it sits: stream mode renders lines into chunks and hands them to
//! its [`crate::output::OutputPipe`] exactly as for stdout; the pipe's
//! writer thread writes them into a [`ShipWriter`], which passes them over
//! a bounded channel to the shipper thread ([`Shipper`]). That thread cuts
//! them into lines, batches them (`--batch-max-lines`, `--batch-max-bytes`,
//! `--batch-timeout`), renders RFC 5424 messages ([`syslog`]) and sends
//! them ([`transport`]). After each acknowledged batch it reports the total
//! of rendered bytes acknowledged so far to stream mode's checkpoint saver,
//! which saves a capture once every byte handed over before it was
//! acknowledged: the same rule as for stdout, with "acknowledged" in place
//! of "written".
//!
//! Invariants:
//! - memory is flat whatever the backend does: the channel holds
//!   [`CHANNEL_CHUNKS`] chunks, the shipper at most one batch and what it
//!   received beyond it up to `--batch-max-bytes`; when the backend is down
//!   the shipper stops taking chunks, the channel fills, the pipe refuses,
//!   the follower pauses, and the files on disk are the buffer;
//! - bytes are acknowledged in order, and only after the backend's answer
//!   (RELP `rsp 200`) or the kernel's `write(2)` (plain TCP, which has no
//!   answer: see [`transport`]);
//! - a failed batch is sent again from its first unacknowledged message
//!   after reconnecting with exponential backoff and full jitter
//!   (<https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/>),
//!   forever: the backend being down is not an error that ends following.

pub mod otlp;
pub mod syslog;
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
    /// RFC 5424 over TCP, RFC 6587 octet counting, no acknowledgement.
    SyslogTcp,
    /// RFC 5424 over RELP, one acknowledgement per message.
    Relp,
    /// OTLP/HTTP logs, protobuf: a 2xx acknowledges the batch.
    Otlp,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
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

/// Everything the shipper needs, as plain values.
#[derive(Clone, Debug)]
pub struct ShipConfig {
    pub protocol: Protocol,
    /// `host:port` (syslog), `http://host:port[/path]` (OTLP).
    pub address: String,
    /// OTLP resource attributes (`k8s.pod.name`...).
    pub resource: Vec<(String, String)>,
    pub batch: BatchLimits,
    pub syslog: SyslogFields,
    pub backoff: Backoff,
    pub timeouts: Timeouts,
}

/// The shipper's metrics.
#[derive(Clone)]
struct ShipMetrics {
    batches_sent: Counter,
    batches_failed: Counter,
    batches_retried: Counter,
    lines_acked: Counter,
    bytes_acked: Counter,
    lines_resent: Counter,
    lines_dropped: Counter,
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
                "Batch sends that failed (connection lost, refused, timed out); each is retried.",
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

/// The running shipper: its writer end, and what it acknowledged.
pub struct Shipper {
    sender: Option<SyncSender<Vec<u8>>>,
    acknowledged: Arc<AtomicU64>,
    /// Bytes the writer handed to the shipper (for the lag gauge).
    received: Arc<AtomicU64>,
}

/// Receives the total of bytes acknowledged so far, after each batch.
pub type OnAck = Box<dyn Fn(u64) + Send>;

impl Shipper {
    /// Starts the shipper thread. `on_ack` is called from it with the
    /// total of bytes acknowledged after every acknowledged batch.
    pub fn spawn(config: ShipConfig, registry: &Registry, on_ack: OnAck) -> io::Result<Self> {
        let (sender, receiver) = sync_channel(CHANNEL_CHUNKS);
        let acknowledged = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let oldest = Arc::new(Mutex::new(None::<Instant>));
        let metrics = ShipMetrics::new(registry, config.protocol);
        let labels = [("sink", config.protocol.name())];
        {
            let (received, acknowledged) = (received.clone(), acknowledged.clone());
            registry.gauge_fn(
                "log_aggregator_ship_lag_bytes",
                "Bytes of rendered lines taken for shipping and not yet acknowledged (the output pipe holds at most 512 KiB more; the files the rest).",
                &labels,
                move || {
                    received
                        .load(Ordering::Acquire)
                        .saturating_sub(acknowledged.load(Ordering::Acquire)) as f64
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
            config,
            receiver,
            metrics,
            acknowledged: acknowledged.clone(),
            on_ack,
            received_total: 0,
            arrivals: VecDeque::new(),
            oldest,
            pending: Vec::new(),
            closed: false,
            first_line_at: None,
            connection: None,
            connected_once: false,
            failures: 0,
            rng: seed(),
        };
        thread::Builder::new()
            .name("shipper".into())
            .spawn(move || worker.run())?;
        Ok(Self {
            sender: Some(sender),
            acknowledged,
            received,
        })
    }

    /// The `Write` end for the output pipe (one per shipper).
    pub fn writer(&mut self) -> Option<ShipWriter> {
        let received = self.received.clone();
        self.sender
            .take()
            .map(|sender| ShipWriter { sender, received })
    }

    /// Bytes acknowledged so far.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Acquire)
    }
}

/// The output pipe's sink when shipping: hands each chunk to the shipper,
/// blocking while it has no room (that is the back-pressure).
pub struct ShipWriter {
    sender: SyncSender<Vec<u8>>,
    received: Arc<AtomicU64>,
}

impl Write for ShipWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.sender
            .send(bytes.to_vec())
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the shipper stopped"))?;
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

struct Worker {
    config: ShipConfig,
    rfc5424: Rfc5424,
    receiver: Receiver<Vec<u8>>,
    metrics: ShipMetrics,
    acknowledged: Arc<AtomicU64>,
    on_ack: OnAck,
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
            (self.on_ack)(total);
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
        // `bytes` ends with a newline: without it, the lines split exactly.
        for line in self.pending[..bytes - 1].split(|byte| *byte == b'\n') {
            if self.config.protocol == Protocol::Otlp {
                // The transport builds the request from the lines.
                messages.bytes.extend_from_slice(line);
                messages.end();
                continue;
            }
            self.rfc5424.render(&mut messages.bytes, &timestamp, line);
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
                        self.failed(
                            &format!("connecting to {}: {error}", self.config.address),
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
                            self.config.protocol.name(),
                            self.config.address
                        );
                    }
                    self.failures = 0;
                    self.metrics.up.set(1.0);
                    return;
                }
                Err(error) if error.acknowledged >= messages.len() => {
                    // All taken, and the server closes: reconnect next time.
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
                        self.config.address,
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
                            self.config.address,
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
        let address = &self.config.address;
        let timeouts = self.config.timeouts;
        let connection: Box<dyn Transport> = match self.config.protocol {
            Protocol::SyslogTcp => Box::new(TcpSyslog::connect(address, timeouts)?),
            Protocol::Relp => Box::new(Relp::connect(address, timeouts)?),
            Protocol::Otlp => {
                let url = otlp::HttpUrl::parse(address)
                    .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
                Box::new(otlp::Otlp::connect(&url, &self.config.resource, timeouts)?)
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
