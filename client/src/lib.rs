//! `client`: the lab's `while true; do curl ... && echo "$(date) - Successfully
//! connected to nginx"; sleep 10; done`, and an HTTP probe for exec probes
//! and pod-wide watching.
//!
//! Flow: [`Args`] (clap) -> [`Config`] (every URL, header, regex and status
//! set checked here, before any request) -> [`run`], which repeats
//! [`probe::probe`] once per interval, never overlapping, writes one line per
//! try (stdout for data, stderr for failures), records [`stats::Stats`] and
//! the `/metrics` series, and ends on `--once`, `--count`, `--max-failures`
//! or SIGTERM with a summary on stderr and an exit code per failure class.

pub mod body;
pub mod expect;
pub mod probe;
pub mod stats;
pub mod target;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use hyper::Method;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use sidecar_common::clock::{TimeFormat, format_time, local_zone};
use sidecar_common::metrics::{
    Counter, Gauge, Health, Histogram, LATENCY_BUCKETS, Registry, parse_listen_address,
};
use sidecar_common::shutdown::Shutdown;
use sidecar_common::{cli, units};
use tokio::time::Instant;

use crate::expect::StatusSet;
use crate::probe::{Outcome, ProbeSpec, Reason};
use crate::stats::Stats;
use crate::target::{Target, parse_headers};

const EXAMPLES: &str = "\
Examples:
  # The lab's client container: one GET every 10 s, one line per success
  client --interval 10s --name nginx http://localhost:80

  # A Kubernetes exec probe: one try, the exit status says how it went
  client --once --timeout 1s http://localhost:8080/healthz

  # Stricter checks: only 200, and the body must say ok
  client --expect-status 200 --expect-body '\"status\": ?\"ok\"' http://localhost/health

  # Watch an endpoint for the pod: JSON lines, metrics on :9100/metrics
  client --interval 1s --output json --listen :9100 http://web:8080/

Exit status:
  0 success (with --count: the last try succeeded; SIGTERM in loop mode)
  1 bad input or set-up error (https or another scheme, header, regex, binding --listen), before any request
  2 usage error (unknown flag, bad duration, a zero --interval or --timeout, a bad --listen address)
  3 malformed URL (no host, a port that is not 1-65535), before any request
  6 dns   7 refused   8 bad response   9 connect (unreachable)   10 body mismatch
  22 status (not in --expect-status)   28 timeout   47 redirects (more than --max-redirects)
  143 SIGTERM before the --once try finished";

/// Flags and environment variables.
#[derive(clap::Parser, Debug)]
#[command(
    name = "client",
    version,
    about = "Probe an HTTP URL once per interval and print a line per success, like the lab's curl loop.",
    after_help = EXAMPLES
)]
pub struct Args {
    /// The URL to probe: http://HOST[:PORT][/PATH] (https is not supported).
    #[arg(env = "CLIENT_URL", value_name = "URL")]
    pub url: String,

    /// Time from the start of one try to the start of the next (tries never overlap; more than 0).
    #[arg(long, env = "CLIENT_INTERVAL", default_value = "10s", value_name = "DURATION",
          value_parser = units::parse_nonzero_duration)]
    pub interval: Duration,

    /// Limit for one whole try: resolving, connecting, redirects and the whole body (more than 0).
    #[arg(long, env = "CLIENT_TIMEOUT", default_value = "2s", value_name = "DURATION",
          value_parser = units::parse_nonzero_duration)]
    pub timeout: Duration,

    /// Name in the success line `<date> - Successfully connected to <NAME>` (default: the URL).
    #[arg(long, env = "CLIENT_NAME")]
    pub name: Option<String>,

    /// One try, then exit with its status (0, or the failure's code): for exec probes.
    #[arg(long, env = "CLIENT_ONCE", conflicts_with_all = ["count", "max_failures"])]
    pub once: bool,

    /// Stop after N tries; the exit status is the last try's.
    #[arg(long, env = "CLIENT_COUNT", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Exit after N failures in a row, with the last failure's exit code.
    #[arg(long, env = "CLIENT_MAX_FAILURES", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_failures: Option<u64>,

    /// Status codes that count as success: codes, ranges and classes, e.g. 200,204 or 2xx.
    #[arg(
        long,
        env = "CLIENT_EXPECT_STATUS",
        default_value = "200-399",
        value_name = "SET"
    )]
    pub expect_status: String,

    /// A regex the body must match (searched in the first --max-body bytes, as they arrive,
    /// holding at most 2 MiB; a match longer than 1 MiB is found only in the first 2 MiB).
    #[arg(long, env = "CLIENT_EXPECT_BODY", value_name = "REGEX")]
    pub expect_body: Option<String>,

    /// Bytes of body read at most (the rest is not fetched); --expect-body searches these.
    #[arg(long, env = "CLIENT_MAX_BODY", default_value = "1MiB", value_name = "SIZE",
          value_parser = units::parse_bytes)]
    pub max_body: u64,

    /// Request method.
    #[arg(
        long,
        env = "CLIENT_METHOD",
        value_enum,
        ignore_case = true,
        default_value = "get"
    )]
    pub method: MethodArg,

    /// An extra request header 'Name: value'; repeat for more (in CLIENT_HEADER, one per line).
    #[arg(
        short = 'H',
        long = "header",
        env = "CLIENT_HEADER",
        value_name = "'NAME: VALUE'",
        value_delimiter = '\n'
    )]
    pub headers: Vec<String>,

    /// Same-host redirects followed at most (more is a failure); 0 = judge the redirect itself.
    #[arg(long, env = "CLIENT_MAX_REDIRECTS", default_value_t = probe::DEFAULT_MAX_REDIRECTS,
          value_name = "N")]
    pub max_redirects: u32,

    /// stdout format: the lab's success lines, or one JSON object per try.
    #[arg(long, env = "CLIENT_OUTPUT", value_enum, default_value = "text")]
    pub output: OutputFormat,

    /// Timestamp layout in the success lines.
    #[arg(long, env = "CLIENT_TIME_FORMAT", value_enum, default_value = "date")]
    pub time_format: TimeFormat,

    /// Serve /metrics, /healthz and /readyz (ready = last try succeeded) on ADDR
    /// (`:9100`, `0.0.0.0:9100`, `[::1]:9100`).
    #[arg(long, env = "CLIENT_LISTEN", value_name = "ADDR", value_parser = parse_listen_address)]
    pub listen: Option<SocketAddr>,

    #[command(flatten)]
    pub log: cli::LogArgs,
}

impl cli::Tool for Args {
    fn logging(&self) -> &cli::LogArgs {
        &self.log
    }
}

/// `--method`: a probe only reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    Get,
    Head,
}

/// `--output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// `<date> - Successfully connected to <name>` per success (the lab's line).
    Text,
    /// `{"time":..,"url":..,"status":..,"latency_ms":..,"ok":..,"reason":..,"detail":..}` per try.
    Json,
}

/// Everything `run` needs, checked.
#[derive(Clone, Debug)]
pub struct Config {
    pub spec: ProbeSpec,
    /// The URL as the user wrote it, for lines and the summary.
    pub url: String,
    /// Who the success line says we connected to.
    pub name: String,
    pub interval: Duration,
    pub once: bool,
    pub count: Option<u64>,
    pub max_failures: Option<u64>,
    pub output: OutputFormat,
    pub time_format: TimeFormat,
    pub listen: Option<SocketAddr>,
}

impl Config {
    /// Checks every input; the error names the flag or value and the cause.
    pub fn from_args(args: Args) -> anyhow::Result<Self> {
        let target = Target::parse(&args.url)?;
        let headers = parse_headers(&args.headers)?;
        let expect_status = StatusSet::parse(&args.expect_status)?;
        let method = match args.method {
            MethodArg::Get => Method::GET,
            MethodArg::Head => Method::HEAD,
        };
        let expect_body = match &args.expect_body {
            Some(_) if method == Method::HEAD => {
                bail!("--expect-body needs a body, and a HEAD answer has none: use --method GET")
            }
            Some(pattern) => Some(regex_lite::Regex::new(pattern).map_err(|error| {
                anyhow::anyhow!(
                    "invalid --expect-body regex {pattern:?}: {}",
                    one_line_regex_error(&error)
                )
            })?),
            None => None,
        };
        let max_body = usize::try_from(args.max_body).unwrap_or(usize::MAX);
        Ok(Self {
            name: args.name.unwrap_or_else(|| args.url.clone()),
            url: args.url,
            spec: ProbeSpec {
                target,
                method,
                headers,
                expect_status,
                expect_body,
                max_body,
                max_redirects: args.max_redirects,
                timeout: args.timeout,
            },
            interval: args.interval,
            once: args.once,
            count: args.count,
            max_failures: args.max_failures,
            output: args.output,
            time_format: args.time_format,
            listen: args.listen,
        })
    }
}

/// The exit status for a [`Config::from_args`] error when it is not 1: 3 for
/// a malformed URL (see [`target::InputError::exit_code`]).
pub fn input_exit_code(error: &anyhow::Error) -> Option<u8> {
    error
        .downcast_ref::<target::InputError>()
        .map(target::InputError::exit_code)
}

/// regex's syntax errors are drawn over several lines (the pattern, a caret,
/// the error); the error line alone keeps our one-line error promise.
fn one_line_regex_error(error: &regex_lite::Error) -> String {
    let text = error.to_string();
    let last = text.lines().last().unwrap_or_default();
    last.trim().trim_start_matches("error: ").to_owned()
}

/// Exit status when SIGTERM ends a `--once` try before it finished (128 + 15, as a shell reports it).
const INTERRUPTED_ONCE: u8 = 143;

/// Probes until `--once`, `--count`, `--max-failures` or `shutdown` says stop.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    let registry = Arc::new(Registry::new());
    let health = Arc::new(Health::default());
    let metrics = Metrics::new(&registry, health.clone());
    if let Some(address) = &config.listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("binding --listen {address}"))?;
        let bound = listener
            .local_addr()
            .with_context(|| format!("binding --listen {address}"))?;
        tracing::info!("serving /metrics on http://{bound}/metrics");
        let serving = sidecar_common::metrics::serve(listener, registry, health, shutdown.clone());
        tokio::spawn(async move {
            if let Err(error) = serving.await {
                tracing::error!(%error, "metrics server stopped");
            }
        });
    }
    let zone = local_zone();
    let mut stats = Stats::default();
    let mut failures_in_a_row = 0u64;
    let mut next_start = Instant::now();
    let ending = loop {
        let outcome = tokio::select! {
            _ = shutdown.requested() => break Ending::Interrupted,
            outcome = probe::probe(&config.spec) => outcome,
        };
        stats.record(&outcome);
        metrics.record(&outcome);
        report(&config, &zone, &outcome)?;
        let code = exit_code(&outcome);
        match &outcome.result {
            Ok(()) => failures_in_a_row = 0,
            Err(_) => failures_in_a_row += 1,
        }
        if config.once {
            break Ending::Finished(code);
        }
        if config
            .max_failures
            .is_some_and(|max| failures_in_a_row >= max)
        {
            tracing::error!(
                "{}: giving up after {failures_in_a_row} failures in a row",
                config.url
            );
            break Ending::Finished(code);
        }
        if config.count.is_some_and(|count| stats.tries >= count) {
            break Ending::Finished(code);
        }
        // Start-to-start spacing; a try longer than the interval delays the
        // next one instead of overlapping it.
        let now = Instant::now();
        next_start = (next_start + config.interval).max(now);
        if next_start > now {
            tokio::select! {
                _ = shutdown.requested() => break Ending::Interrupted,
                _ = tokio::time::sleep_until(next_start) => {}
            }
        } else if shutdown.is_requested() {
            // No timer when the next try is due now (the try took longer
            // than the interval): tokio's timer wheel has millisecond ticks.
            break Ending::Interrupted;
        }
    };
    if !config.once {
        // Not eprint!: it panics when stderr is closed, and the summary is
        // not worth failing the exit status for.
        let _ = std::io::stderr().write_all(stats.summary(&config.url).as_bytes());
    }
    Ok(match ending {
        Ending::Finished(code) => ExitCode::from(code),
        Ending::Interrupted if config.once => ExitCode::from(INTERRUPTED_ONCE),
        Ending::Interrupted => ExitCode::SUCCESS,
    })
}

enum Ending {
    Finished(u8),
    Interrupted,
}

fn exit_code(outcome: &Outcome) -> u8 {
    match &outcome.result {
        Ok(()) => 0,
        Err(failure) => failure.reason.exit_code(),
    }
}

/// Writes the try's stdout line (a success line, or a JSON object for every
/// try) and its stderr diagnostics.
fn report(config: &Config, zone: &TimeZone, outcome: &Outcome) -> anyhow::Result<()> {
    let now = Timestamp::now();
    match &outcome.result {
        Ok(()) => {
            if let Some(location) = &outcome.unfollowed {
                tracing::warn!(
                    "{}: not following the redirect to {location} (another host or scheme): \
                     counting the {} answer, as a Kubernetes httpGet probe does",
                    config.url,
                    outcome.status.unwrap_or_default()
                );
            }
        }
        Err(failure) => {
            tracing::warn!("{}: {}: {}", config.url, failure.reason, failure.detail)
        }
    }
    let line = match config.output {
        OutputFormat::Text if outcome.ok() => format!(
            "{} - Successfully connected to {}\n",
            format_time(now, zone, config.time_format),
            config.name
        ),
        OutputFormat::Text => return Ok(()),
        OutputFormat::Json => json_line(config, now, outcome),
    };
    std::io::stdout()
        .lock()
        .write_all(line.as_bytes())
        .context("writing to stdout")
}

/// `{"time","url","status","latency_ms","ok","reason","detail"}` in that order.
fn json_line(config: &Config, now: Timestamp, outcome: &Outcome) -> String {
    let text = |value: &str| serde_json::Value::String(value.to_owned()).to_string();
    let (reason, detail) = match &outcome.result {
        Ok(()) => ("null".to_owned(), "null".to_owned()),
        Err(failure) => (text(&failure.reason.to_string()), text(&failure.detail)),
    };
    format!(
        "{{\"time\":{},\"url\":{},\"status\":{},\"latency_ms\":{:.3},\"ok\":{},\"reason\":{},\"detail\":{}}}\n",
        text(&format_time(now, &TimeZone::UTC, TimeFormat::Rfc3339)),
        text(&config.url),
        outcome
            .status
            .map_or_else(|| "null".to_owned(), |status| status.to_string()),
        outcome.latency.as_secs_f64() * 1000.0,
        outcome.ok(),
        reason,
        detail
    )
}

/// The `/metrics` series, named like the blackbox exporter's where one exists.
struct Metrics {
    tries: Counter,
    failures: HashMap<&'static str, Counter>,
    latency: Histogram,
    last_success: Gauge,
    last_status: Gauge,
    health: Arc<Health>,
}

impl Metrics {
    fn new(registry: &Registry, health: Arc<Health>) -> Self {
        // Every reason is created at 0, so a dashboard's rate() works before
        // the first failure.
        let failures = Reason::CLASSES
            .iter()
            .map(|reason| {
                let label = reason.label();
                let counter = registry.counter(
                    "client_failures_total",
                    "Failed tries, by reason class.",
                    &[("reason", label)],
                );
                (label, counter)
            })
            .collect();
        Self {
            tries: registry.counter("client_tries_total", "Tries made.", &[]),
            failures,
            latency: registry.histogram(
                "client_latency_seconds",
                "Duration of successful tries, from resolving to the end of the body.",
                &[],
                LATENCY_BUCKETS,
            ),
            last_success: registry.gauge(
                "client_last_success_timestamp_seconds",
                "Unix time of the last successful try (0: none yet).",
                &[],
            ),
            last_status: registry.gauge(
                "client_last_status_code",
                "HTTP status of the last answer (0: the last try got none).",
                &[],
            ),
            health,
        }
    }

    fn record(&self, outcome: &Outcome) {
        self.tries.inc();
        self.last_status
            .set(f64::from(outcome.status.unwrap_or_default()));
        match &outcome.result {
            Ok(()) => {
                self.latency.observe(outcome.latency.as_secs_f64());
                let now = Timestamp::now().as_millisecond() as f64 / 1000.0;
                self.last_success.set(now);
            }
            Err(failure) => {
                if let Some(counter) = self.failures.get(failure.reason.label()) {
                    counter.inc();
                }
            }
        }
        self.health.set_ready(outcome.ok());
    }
}
