//! Prometheus metrics and health endpoints, shared by the aggregator, the
//! adapter and the client (`--listen ADDR`).
//!
//! A [`Registry`] is passed to whoever records (no global), hands out cheap
//! atomic handles ([`Counter`], [`Gauge`], [`Histogram`]) and renders the
//! text exposition format 0.0.4 on demand. Asking twice for the same name and
//! labels returns the same handle, so per-file series can be created lazily.
//! [`serve`] answers `/metrics`, `/healthz` (process alive) and `/readyz`
//! (set ready by the binary once it does its job) with hyper, until shutdown.
//!
//! The listener is bounded, so a port scanner or a stuck client cannot take
//! the process's descriptors (they are shared with the files it follows):
//! at most [`MAX_CONNECTIONS`] connections are open at once (more wait in the
//! kernel's accept queue, costing us nothing), a request's head must arrive
//! within [`HEADER_TIMEOUT`], and a connection is asked to close after
//! [`IDLE_TIMEOUT`] (an answer in flight finishes first) and closed for good
//! one [`IDLE_TIMEOUT`] later. Accept errors (EMFILE) back off exponentially,
//! with one warning per [`ACCEPT_WARN_EVERY`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::shutdown::Shutdown;

/// A value that only goes up (lines read, failures).
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, amount: u64) {
        self.0.fetch_add(amount, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (files followed, a flag as 0/1, a timestamp).
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicU64>);

impl Gauge {
    pub fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Observations counted into fixed cumulative buckets (latency in seconds).
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramState>);

#[derive(Debug)]
struct HistogramState {
    upper_bounds: Vec<f64>,
    bucket_counts: Vec<AtomicU64>,
    count: AtomicU64,
    sum: Mutex<f64>,
}

impl Histogram {
    fn new(upper_bounds: &[f64]) -> Self {
        Self(Arc::new(HistogramState {
            upper_bounds: upper_bounds.to_vec(),
            bucket_counts: upper_bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: Mutex::new(0.0),
        }))
    }

    pub fn observe(&self, value: f64) {
        let state = &self.0;
        for (bound, bucket) in state.upper_bounds.iter().zip(&state.bucket_counts) {
            if value <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        state.count.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut sum) = state.sum.lock() {
            *sum += value;
        }
    }

    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }
}

/// Latency buckets in seconds, as the blackbox exporter and most HTTP dashboards use.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

type Labels = Vec<(String, String)>;

enum Series {
    Counter(Counter),
    Gauge(Gauge),
    GaugeFn(Box<dyn Fn() -> f64 + Send + Sync>),
    Histogram(Histogram),
}

struct Family {
    help: String,
    kind: &'static str,
    series: BTreeMap<Labels, Series>,
}

/// The set of metrics one process exposes.
#[derive(Default)]
pub struct Registry {
    families: Mutex<BTreeMap<String, Family>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter `name{labels}`, created on first use.
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        self.series(
            name,
            help,
            "counter",
            labels,
            || Series::Counter(Counter::default()),
            |series| match series {
                Series::Counter(counter) => Some(counter.clone()),
                _ => None,
            },
        )
        .unwrap_or_default()
    }

    /// The gauge `name{labels}`, created on first use.
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Gauge {
        self.series(
            name,
            help,
            "gauge",
            labels,
            || Series::Gauge(Gauge::default()),
            |series| match series {
                Series::Gauge(gauge) => Some(gauge.clone()),
                _ => None,
            },
        )
        .unwrap_or_default()
    }

    /// A gauge computed when scraped (e.g. seconds since the last checkpoint).
    pub fn gauge_fn(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        compute: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        let mut compute = Some(compute);
        let create = || match compute.take() {
            Some(compute) => Series::GaugeFn(Box::new(compute)),
            None => Series::Gauge(Gauge::default()),
        };
        let _ = self.series(name, help, "gauge", labels, create, |_| Some(()));
    }

    /// The histogram `name{labels}` with the given bucket upper bounds.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        upper_bounds: &[f64],
    ) -> Histogram {
        let create = || Series::Histogram(Histogram::new(upper_bounds));
        self.series(
            name,
            help,
            "histogram",
            labels,
            create,
            |series| match series {
                Series::Histogram(histogram) => Some(histogram.clone()),
                _ => None,
            },
        )
        .unwrap_or_else(|| Histogram::new(upper_bounds))
    }

    /// Finds or creates a series and maps it while the lock is held. A name
    /// reused with another type is a programming error; the caller then gets
    /// a detached handle (recorded nowhere) instead of a panic.
    fn series<T>(
        &self,
        name: &str,
        help: &str,
        kind: &'static str,
        labels: &[(&str, &str)],
        create: impl FnOnce() -> Series,
        map: impl FnOnce(&Series) -> Option<T>,
    ) -> Option<T> {
        let mut families = self.families.lock().ok()?;
        let family = families.entry(name.to_owned()).or_insert_with(|| Family {
            help: help.to_owned(),
            kind,
            series: BTreeMap::new(),
        });
        if family.kind != kind {
            tracing::error!(
                metric = name,
                "metric registered twice with different types"
            );
            return None;
        }
        let key: Labels = labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        map(family.series.entry(key).or_insert_with(create))
    }

    /// Removes the series `name{labels}` (a followed file that is gone), so
    /// series do not pile up; a handle still held records nowhere. The
    /// family goes with its last series.
    pub fn remove(&self, name: &str, labels: &[(&str, &str)]) {
        let Ok(mut families) = self.families.lock() else {
            return;
        };
        let Some(family) = families.get_mut(name) else {
            return;
        };
        let key: Labels = labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        family.series.remove(&key);
        if family.series.is_empty() {
            families.remove(name);
        }
    }

    /// The text exposition format, families sorted by name.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(families) = self.families.lock() else {
            return out;
        };
        for (name, family) in families.iter() {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&family.help));
            let _ = writeln!(out, "# TYPE {name} {}", family.kind);
            for (labels, series) in &family.series {
                match series {
                    Series::Counter(counter) => {
                        sample(&mut out, name, labels, None, counter.get() as f64)
                    }
                    Series::Gauge(gauge) => sample(&mut out, name, labels, None, gauge.get()),
                    Series::GaugeFn(compute) => sample(&mut out, name, labels, None, compute()),
                    Series::Histogram(histogram) => {
                        render_histogram(&mut out, name, labels, histogram)
                    }
                }
            }
        }
        out
    }
}

fn render_histogram(out: &mut String, name: &str, labels: &Labels, histogram: &Histogram) {
    let state = &histogram.0;
    for (bound, bucket) in state.upper_bounds.iter().zip(&state.bucket_counts) {
        let le = format_value(*bound);
        sample(
            out,
            &format!("{name}_bucket"),
            labels,
            Some(&le),
            bucket.load(Ordering::Relaxed) as f64,
        );
    }
    let count = state.count.load(Ordering::Relaxed) as f64;
    sample(out, &format!("{name}_bucket"), labels, Some("+Inf"), count);
    let sum = state.sum.lock().map(|sum| *sum).unwrap_or(0.0);
    sample(out, &format!("{name}_sum"), labels, None, sum);
    sample(out, &format!("{name}_count"), labels, None, count);
}

fn sample(out: &mut String, name: &str, labels: &Labels, le: Option<&str>, value: f64) {
    out.push_str(name);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        let le_pair = le.map(|le| ("le".to_owned(), le.to_owned()));
        for (key, value) in labels.iter().chain(le_pair.as_ref()) {
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "{key}=\"{}\"", escape_label(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", format_value(value));
}

fn format_value(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if value.is_nan() {
        "NaN".into()
    } else {
        value.to_string()
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Liveness and readiness, as `/healthz` and `/readyz` report them.
#[derive(Debug)]
pub struct Health {
    ready: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            ready: AtomicBool::new(false),
        }
    }
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// Time a client has to send a request's head (request line and headers):
/// a scrape sends it at once; a half-sent request is closed after this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Age after which a connection is asked to close (kept-alive scrapers
/// reconnect, which costs a millisecond); it is closed for good when it is
/// twice this old, whatever it is doing.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once. Scrapers and probes use one or two; more wait
/// in the kernel's accept queue until a slot frees (within [`IDLE_TIMEOUT`]
/// at worst), so a flood of idle connections cannot use up descriptors.
pub const MAX_CONNECTIONS: usize = 64;

/// First pause after a failed accept (EMFILE: out of descriptors); doubled
/// on each failure in a row up to [`ACCEPT_BACKOFF_MAX`].
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(100);

/// Longest pause between accept attempts while they keep failing.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// At most one accept-failure warning per this period; the warning counts
/// the failures it stands for.
pub const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(60);

/// The listener's bounds; [`Limits::default`] is the constants above, tests
/// use smaller ones.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: HEADER_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Exponential backoff and rate-limited warnings for failed accepts.
#[derive(Debug)]
struct AcceptBackoff {
    delay: Duration,
    unreported: u64,
    last_warning: Option<Instant>,
}

impl AcceptBackoff {
    fn new() -> Self {
        Self {
            delay: ACCEPT_BACKOFF_MIN,
            unreported: 0,
            last_warning: None,
        }
    }

    /// A failed accept at `now`: how long to pause, and, when a warning is
    /// due, how many failures it reports.
    fn failed(&mut self, now: Instant) -> (Duration, Option<u64>) {
        self.unreported += 1;
        let warn = match self.last_warning {
            Some(last) => now.duration_since(last) >= ACCEPT_WARN_EVERY,
            None => true,
        };
        let report = warn.then(|| {
            self.last_warning = Some(now);
            std::mem::take(&mut self.unreported)
        });
        let delay = self.delay;
        self.delay = (self.delay * 2).min(ACCEPT_BACKOFF_MAX);
        (delay, report)
    }

    fn succeeded(&mut self) {
        self.delay = ACCEPT_BACKOFF_MIN;
    }
}

/// Parses a `--listen` address, the same way for every binary: `:PORT`
/// (every IPv4 address, what a pod's probes and scrapers reach),
/// `IP:PORT`, `[IPv6]:PORT`, or `NAME:PORT` for a name that resolves
/// (`localhost:9100`). Used as a clap `value_parser`, so a bad address is a
/// usage error naming it.
pub fn parse_listen_address(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
    let bad = |cause: &str| {
        format!("invalid listen address {text:?}: {cause} (expected :PORT, IP:PORT or [IPv6]:PORT)")
    };
    let port = |digits: &str| -> Result<u16, String> {
        if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(bad(&format!("port {digits:?} is not a number")));
        }
        digits
            .parse::<u16>()
            .map_err(|_| bad(&format!("port {digits} is not between 0 and 65535")))
    };
    if let Some(digits) = text.strip_prefix(':').filter(|rest| !rest.contains(':')) {
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port(digits)?)));
    }
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    let Some((host, digits)) = text.rsplit_once(':') else {
        return Err(bad("no port"));
    };
    let port = port(digits)?;
    if host.is_empty() || host.contains(['[', ']', ':']) {
        return Err(bad("not a host"));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|error| bad(&format!("cannot resolve {host:?}: {error}")))?
        .next()
        .ok_or_else(|| bad(&format!("{host:?} has no address")))
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown`,
/// within the default [`Limits`].
/// Binaries bind `0.0.0.0:PORT` (kubelet probes come from the pod IP); tests bind port 0.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    health: Arc<Health>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    serve_with(listener, registry, health, shutdown, Limits::default()).await
}

/// [`serve`] with explicit bounds.
pub async fn serve_with(
    listener: TcpListener,
    registry: Arc<Registry>,
    health: Arc<Health>,
    shutdown: Shutdown,
    limits: Limits,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut backoff = AcceptBackoff::new();
    loop {
        // A slot first, then accept: beyond the cap, connections wait in the
        // kernel's queue instead of holding one of our descriptors.
        let slot = tokio::select! {
            _ = shutdown.requested() => return Ok(()),
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_closed) => return Ok(()),
            },
        };
        let (stream, _peer) = tokio::select! {
            _ = shutdown.requested() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff.succeeded();
                    accepted
                }
                Err(error) => {
                    // EMFILE and friends: keep serving the connections we
                    // have, and retry less and less often.
                    let (delay, report) = backoff.failed(Instant::now());
                    if let Some(failures) = report {
                        tracing::warn!(
                            %error,
                            failures,
                            "metrics listener: accept failed; retrying with backoff \
                             (at most one warning per {ACCEPT_WARN_EVERY:?})"
                        );
                    }
                    drop(slot);
                    tokio::select! {
                        _ = shutdown.requested() => return Ok(()),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
            },
        };
        let registry = registry.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |request| {
                let response = respond(&request, &registry, &health);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => Some(ended),
                _ = tokio::time::sleep(limits.idle_timeout) => None,
            };
            let ended = match ended {
                Some(ended) => ended,
                None => {
                    connection.as_mut().graceful_shutdown();
                    match tokio::time::timeout(limits.idle_timeout, connection).await {
                        Ok(ended) => ended,
                        Err(_elapsed) => return,
                    }
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%error, "metrics connection ended with an error");
            }
        });
    }
}

fn respond(
    request: &Request<Incoming>,
    registry: &Registry,
    health: &Health,
) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        );
    }
    match request.uri().path() {
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            registry.render(),
        ),
        "/healthz" | "/livez" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" if health.is_ready() => text(StatusCode::OK, "text/plain", "ready\n".into()),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready\n".into(),
        ),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_with_labels_render_in_text_format() {
        let registry = Registry::new();
        registry
            .counter(
                "lines_total",
                "Lines read.",
                &[("file", "/var/log/app.log")],
            )
            .add(3);
        registry
            .counter(
                "lines_total",
                "Lines read.",
                &[("file", "/var/log/app.log")],
            )
            .inc();
        registry
            .gauge("files_followed", "Files followed.", &[])
            .set(2.0);
        assert_eq!(
            registry.render(),
            "# HELP files_followed Files followed.\n# TYPE files_followed gauge\nfiles_followed 2\n\
             # HELP lines_total Lines read.\n# TYPE lines_total counter\n\
             lines_total{file=\"/var/log/app.log\"} 4\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let registry = Registry::new();
        registry.counter("c", "h", &[("file", "a\"b\\c\nd")]).inc();
        assert!(registry.render().contains(r#"c{file="a\"b\\c\nd"} 1"#));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let registry = Registry::new();
        let latency = registry.histogram("latency_seconds", "Latency.", &[], &[0.1, 1.0]);
        latency.observe(0.05);
        latency.observe(0.5);
        latency.observe(5.0);
        let text = registry.render();
        assert!(
            text.contains("latency_seconds_bucket{le=\"0.1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("latency_seconds_bucket{le=\"1\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("latency_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("latency_seconds_sum 5.55\n"), "{text}");
        assert!(text.contains("latency_seconds_count 3\n"), "{text}");
    }

    #[test]
    fn gauge_fn_is_computed_at_scrape_time() {
        let registry = Registry::new();
        let source = Gauge::default();
        let read = source.clone();
        registry.gauge_fn("age_seconds", "Age.", &[], move || read.get() * 2.0);
        source.set(21.0);
        assert!(registry.render().contains("age_seconds 42\n"));
    }

    #[test]
    fn a_name_reused_with_another_type_does_not_panic() {
        let registry = Registry::new();
        registry.counter("x", "h", &[]).inc();
        registry.gauge("x", "h", &[]).set(5.0);
        assert!(registry.render().contains("x 1\n"));
    }

    #[tokio::test]
    async fn server_answers_metrics_health_and_readiness() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let registry = Arc::new(Registry::new());
        registry.counter("hits_total", "Hits.", &[]).add(7);
        let health = Arc::new(Health::default());
        let shutdown = Shutdown::new();
        let server = tokio::spawn(serve(listener, registry, health.clone(), shutdown.clone()));
        let get = |path: &'static str| async move {
            let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            response
        };
        let metrics = get("/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(metrics.contains("hits_total 7"), "{metrics}");
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/readyz").await.starts_with("HTTP/1.1 503"));
        health.set_ready(true);
        assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
        shutdown.trigger();
        server.await.unwrap().unwrap();
    }

    /// Starts a server with small limits; returns its address and shutdown.
    async fn small_server(limits: Limits) -> (std::net::SocketAddr, Shutdown) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let registry = Arc::new(Registry::new());
        let health = Arc::new(Health::default());
        tokio::spawn(serve_with(
            listener,
            registry,
            health,
            shutdown.clone(),
            limits,
        ));
        (address, shutdown)
    }

    async fn healthz(address: std::net::SocketAddr) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    /// Connections to `port` this process has accepted: descriptors of
    /// sockets whose local port is `port` and that are not the listener.
    /// (Counting all descriptors would count other tests' files too.)
    fn accepted_sockets(port: u16) -> usize {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let local_port = format!(":{port:04X}");
        let inodes: std::collections::HashSet<String> = table
            .lines()
            .skip(1)
            .filter_map(|row| {
                let fields: Vec<&str> = row.split_whitespace().collect();
                let listening = fields.get(3) == Some(&"0A");
                let inode = fields.get(9)?;
                (fields.get(1)?.ends_with(&local_port) && !listening)
                    .then(|| format!("socket:[{inode}]"))
            })
            .collect();
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| inodes.contains(target.to_string_lossy().as_ref()))
            .count()
    }

    #[test]
    fn listen_addresses_parse_the_same_for_every_binary() {
        let parse = |text: &str| parse_listen_address(text).map(|address| address.to_string());
        assert_eq!(parse(":9100").unwrap(), "0.0.0.0:9100");
        assert_eq!(parse("0.0.0.0:9100").unwrap(), "0.0.0.0:9100");
        assert_eq!(parse("127.0.0.1:0").unwrap(), "127.0.0.1:0");
        assert_eq!(parse("[::1]:9100").unwrap(), "[::1]:9100");
        assert!(parse("localhost:9100").unwrap().ends_with(":9100"));
        for (text, why) in [
            (":", "is not a number"),
            (":99999", "not between 0 and 65535"),
            (":-1", "is not a number"),
            ("9100", "no port"),
            ("not-an-address", "no port"),
            ("0.0.0.0:x", "is not a number"),
            ("::1:9100", "not a host"),
        ] {
            let error = parse_listen_address(text).unwrap_err();
            assert!(
                error.contains(&format!("invalid listen address {text:?}")) && error.contains(why),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn default_limits_are_the_documented_constants() {
        let limits = Limits::default();
        assert_eq!(limits.header_timeout, Duration::from_secs(5));
        assert_eq!(limits.idle_timeout, Duration::from_secs(5));
        assert_eq!(limits.max_connections, 64);
    }

    #[tokio::test]
    async fn a_half_sent_request_is_closed_within_the_header_timeout() {
        // Regression: a request line without its end stayed open for 100 s and more.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let limits = Limits {
            header_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4,
        };
        let (address, shutdown) = small_server(limits).await;
        let started = std::time::Instant::now();
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHo")
            .await
            .unwrap();
        let mut rest = Vec::new();
        // EOF or a reset: either way the server let go of it.
        let _closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
            .await
            .expect("the server closed the half-sent request");
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(5), "closed after {elapsed:?}");
        shutdown.trigger();
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_after_the_idle_timeout() {
        use tokio::io::AsyncReadExt;
        let limits = Limits {
            header_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_millis(200),
            max_connections: 4,
        };
        let (address, shutdown) = small_server(limits).await;
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
            .await
            .expect("the server closed the idle connection")
            .ok();
        shutdown.trigger();
    }

    #[tokio::test]
    async fn more_connections_than_the_cap_neither_exhaust_descriptors_nor_stop_healthz() {
        // Regression: 1,100 idle connections used up the descriptors.
        let limits = Limits {
            header_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_millis(500),
            max_connections: 8,
        };
        let (address, shutdown) = small_server(limits).await;
        let mut idle = Vec::new();
        for _ in 0..40 {
            idle.push(tokio::net::TcpStream::connect(address).await.unwrap());
        }
        // Answered once the idle connections ahead of it timed out; the
        // server had every chance to accept all 40 meanwhile.
        let answer = healthz(address).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let accepted = accepted_sockets(address.port());
        assert!(accepted <= 8, "{accepted} accepted for 40 idle connections");
        drop(idle);
        assert!(healthz(address).await.starts_with("HTTP/1.1 200"));
        shutdown.trigger();
    }

    #[test]
    fn accept_failures_back_off_and_warn_once_per_period() {
        let mut backoff = AcceptBackoff::new();
        let start = Instant::now();
        let (delay, report) = backoff.failed(start);
        assert_eq!((delay, report), (ACCEPT_BACKOFF_MIN, Some(1)));
        let mut delays = vec![delay];
        for step in 1..20u32 {
            let (delay, report) = backoff.failed(start + Duration::from_secs(step.into()));
            assert_eq!(report, None, "step {step}");
            delays.push(delay);
        }
        assert!(delays.windows(2).all(|pair| pair[1] >= pair[0]));
        assert_eq!(*delays.last().unwrap(), ACCEPT_BACKOFF_MAX);
        let (_, report) = backoff.failed(start + ACCEPT_WARN_EVERY);
        assert_eq!(
            report,
            Some(20),
            "the warning counts the failures it stands for"
        );
        backoff.succeeded();
        assert_eq!(
            backoff.failed(start + ACCEPT_WARN_EVERY).0,
            ACCEPT_BACKOFF_MIN
        );
    }
}
