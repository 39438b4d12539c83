//! `log-aggregator`: the lab's log sidecar, and a production log streamer.
//!
//! Two modes over one command line:
//! - snapshot (default, [`snapshot`]): every interval, the last N lines of
//!   each file under a `=== TITLE ===` header, then `---`: the lab's busybox
//!   loop, byte for byte;
//! - stream (`--follow`, [`stream`]): every line of every matching file,
//!   once, in order, through rotation, restarts and slow readers.
//!
//! This file owns the flags ([`Args`]), their mapping to a plain [`Config`],
//! and [`run`]; the logic only ever sees the config.

pub mod output;
pub mod ship;
pub mod snapshot;
pub mod stream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use sidecar_common::cli::{LogArgs, Tool};
use sidecar_common::follow::{LongLines, StartAt};
use sidecar_common::metrics::parse_listen_address;
use sidecar_common::pipeline::convert::Converter;
use sidecar_common::pipeline::encode::{Output as Encoder, Template};
use sidecar_common::pipeline::enrich::Edits;
use sidecar_common::pipeline::follow_args::FollowArgs;
use sidecar_common::pipeline::formats::{
    FormatName, Options as ParseOptions, Parser as LineParser,
};
use sidecar_common::shutdown::Shutdown;
use sidecar_common::units::{parse_duration, parse_nonzero_bytes};

use crate::ship::otlp::{Compression, Encoding, OtlpOptions};
use crate::ship::syslog::{SdElement, SyslogFields};
use crate::ship::transport::Timeouts;
use crate::ship::{Backoff, BatchLimits, Protocol, ShipConfig, SinkTarget};

pub use output::Format;
pub use snapshot::{SnapshotConfig, Source};
pub use stream::{MultilineConfig, StreamConfig};

const EXAMPLES: &str = "\
Examples:
  # The lab's sidecar: every 10 s, the last 5 lines of each log under a header
  log-aggregator --interval 10s --lines 5 'Application Logs=/var/log/app.log' 'Error Logs=/var/log/error.log'

  # The same, configured through the environment (one source per line)
  LOG_AGGREGATOR_SOURCES=$'Application Logs=/var/log/app.log\nError Logs=/var/log/error.log' log-aggregator

  # Production: stream every line of every log as JSON, resume after restarts
  log-aggregator --follow --output json --checkpoint-dir /var/lib/log-aggregator \\
      --listen 0.0.0.0:9100 '/var/log/app/*.log'

  # Java stack traces as one record each
  log-aggregator --follow --multiline-start '^\\d{4}-\\d{2}-\\d{2} ' /var/log/app.log
";

/// Where to start files present at start in stream mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum From {
    /// Read what the files already hold, then follow.
    Beginning,
    /// Only lines written from now on.
    End,
}

/// Where stream mode sends lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Sink {
    /// stdout, for the node's log agent (`kubectl logs`).
    Stdout,
    /// RFC 5424 syslog over TCP, RFC 6587 octet counting: no acknowledgement.
    SyslogTcp,
    /// RFC 5424 syslog over RELP: checkpoints follow the server's acknowledgements.
    Relp,
    /// OTLP/HTTP logs (protobuf) to --ship-address `http://host:4318`:
    /// checkpoints follow the 2xx answers.
    Otlp,
}

/// One `--sink`: `KIND` or `KIND=ADDRESS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkSpec {
    pub kind: Sink,
    pub address: Option<String>,
}

fn parse_sink(text: &str) -> Result<SinkSpec, String> {
    let (kind, address) = match text.split_once('=') {
        Some((kind, address)) => (kind, Some(address.trim().to_owned())),
        None => (text, None),
    };
    let kind = <Sink as clap::ValueEnum>::from_str(kind.trim(), true).map_err(|_| {
        format!("{text:?}: expected stdout, syslog-tcp, relp or otlp, optionally =ADDRESS")
    })?;
    Ok(SinkSpec { kind, address })
}

/// Shows the last lines of log files every interval (the lab's sidecar), or
/// streams every line of them (`--follow`).
#[derive(Parser, Debug)]
#[command(name = "log-aggregator", version, about, after_help = EXAMPLES)]
pub struct Args {
    /// Snapshot mode: time between two snapshots (after one is printed, like the script's
    /// `sleep`) [default: 10s]. An error with --follow, which writes lines as they come.
    #[arg(long, env = "LOG_AGGREGATOR_INTERVAL", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Option<Duration>,

    /// Snapshot mode: how many lines of each file a snapshot shows (`tail -n`).
    #[arg(
        long,
        env = "LOG_AGGREGATOR_LINES",
        default_value_t = 5,
        value_name = "N"
    )]
    pub lines: u64,

    /// Snapshot mode: `TITLE=PATH` (header `=== TITLE ===`) or `PATH` (the
    /// path is the title; the title ends at the first `=`). Stream mode: a
    /// path or a glob pattern (`/var/log/*.log`). In the environment:
    /// newline-separated (titles may hold spaces and commas), as for
    /// WRITER_TARGETS and READER_FILES.
    #[arg(
        env = "LOG_AGGREGATOR_SOURCES",
        value_delimiter = '\n',
        required = true,
        value_name = "SOURCE"
    )]
    pub sources: Vec<String>,

    /// Stream mode: write every line of every file once, following rotations.
    #[arg(long, env = "LOG_AGGREGATOR_FOLLOW")]
    pub follow: bool,

    /// Stream mode: how lines are written [default: plain; json with --parse].
    #[arg(
        long,
        env = "LOG_AGGREGATOR_OUTPUT",
        value_enum,
        value_name = "FORMAT",
        requires = "follow"
    )]
    pub output: Option<Format>,

    /// Stream mode: parse each line as FORMAT (the names of `adapter
    /// --from`, `auto` included) and write records: the parsed fields,
    /// `file`, then the --add fields, as --output json, logfmt or template.
    /// A line that does not parse is kept, as the adapter keeps it:
    /// {"message": LINE, "parse_error": WHY, "file": PATH} plus the --add
    /// fields, counted in log_aggregator_parse_errors_total.
    #[arg(
        long,
        env = "LOG_AGGREGATOR_PARSE",
        value_enum,
        value_name = "FORMAT",
        requires = "follow"
    )]
    pub parse: Option<FormatName>,

    /// With `--parse regex`: a regex whose named captures `(?<name>...)` become fields.
    #[arg(
        long,
        env = "LOG_AGGREGATOR_PATTERN",
        value_name = "REGEX",
        requires = "parse"
    )]
    pub pattern: Option<String>,

    /// With `--output template`: text with `{field}` placeholders (`{{` for a brace).
    #[arg(
        long,
        env = "LOG_AGGREGATOR_TEMPLATE",
        value_name = "TEMPLATE",
        requires = "parse"
    )]
    pub template: Option<String>,

    /// With --parse: adds (or overwrites) a field, e.g. `pod=$POD_NAME`
    /// (Downward API); repeatable, comma-separated in the environment.
    #[arg(
        long = "add",
        env = "LOG_AGGREGATOR_ADD",
        value_delimiter = ',',
        value_name = "KEY=VALUE",
        requires = "parse"
    )]
    pub add: Vec<String>,

    /// With --parse: renames a field (`file` included); repeatable.
    #[arg(
        long = "rename",
        env = "LOG_AGGREGATOR_RENAME",
        value_delimiter = ',',
        value_name = "OLD=NEW",
        requires = "parse"
    )]
    pub rename: Vec<String>,

    /// With --parse: removes a field (`file` included); repeatable.
    #[arg(
        long = "drop",
        env = "LOG_AGGREGATOR_DROP",
        value_delimiter = ',',
        value_name = "FIELD",
        requires = "parse"
    )]
    pub drop: Vec<String>,

    /// Stream mode: where files present at start begin (files appearing later are read whole).
    /// With --checkpoint-dir it applies to the first start only: after a restart, files the
    /// saved positions do not know appeared while it was down and are read whole.
    #[arg(
        long,
        env = "LOG_AGGREGATOR_FROM",
        value_enum,
        default_value = "beginning",
        requires = "follow"
    )]
    pub from: From,

    // --max-line-bytes (both modes: snapshot mode shows longer lines cut
    // there, followed by ` [... N more bytes cut]`) and the follow flags,
    // which need --follow (see `adjust`).
    #[command(flatten)]
    pub follow_flags: FollowArgs,

    /// Stream mode: never follow glob matches that match this glob (repeatable;
    /// like Fluent Bit's Exclude_Path and Vector's exclude), e.g. '*.gz' to
    /// skip compressed rotations outright. Paths named explicitly are
    /// followed. Compressed files are recognised by content anyway: they are
    /// never read as text.
    #[arg(
        long = "exclude",
        env = "LOG_AGGREGATOR_EXCLUDE",
        value_delimiter = '\n',
        value_name = "GLOB",
        requires = "follow"
    )]
    pub excludes: Vec<String>,

    /// Stream mode: at SIGTERM, how long reading files to their end and
    /// flushing stdout may take (Kubernetes kills after 30 s).
    #[arg(long, env = "LOG_AGGREGATOR_DRAIN_TIMEOUT", default_value = "5s", value_parser = parse_duration, value_name = "DURATION", requires = "follow")]
    pub drain_timeout: Duration,

    /// Stream mode: save read positions in DIR and resume from them after a
    /// restart. Without it, nothing is written anywhere.
    #[arg(
        long,
        env = "LOG_AGGREGATOR_CHECKPOINT_DIR",
        value_name = "DIR",
        requires = "follow"
    )]
    pub checkpoint_dir: Option<PathBuf>,

    /// Stream mode: how often read positions are captured. Each capture is
    /// saved as soon as stdout has taken the lines before it, so a crash
    /// (SIGKILL, OOM kill) repeats at most about one interval of lines. 1 s,
    /// as Vector checkpoints about every second: a save is one small fsynced
    /// file write (none while the positions stay the same); a longer
    /// interval saves disk writes and repeats more.
    #[arg(long, env = "LOG_AGGREGATOR_CHECKPOINT_INTERVAL", default_value = "1s", value_parser = parse_duration, value_name = "DURATION", requires = "follow")]
    pub checkpoint_interval: Duration,

    /// Stream mode: a corrupt or unknown-version checkpoint file is moved
    /// aside (`.invalid`) and following starts without it, instead of exiting.
    #[arg(
        long,
        env = "LOG_AGGREGATOR_DISCARD_INVALID_CHECKPOINT",
        requires = "checkpoint_dir"
    )]
    pub discard_invalid_checkpoint: bool,

    /// Stream mode: a line matching REGEX starts a record; other lines are
    /// joined to the record before them with `\n` (stack traces).
    #[arg(
        long,
        env = "LOG_AGGREGATOR_MULTILINE_START",
        value_name = "REGEX",
        requires = "follow"
    )]
    pub multiline_start: Option<String>,

    /// Stream mode: a record nothing was added to for this long is written out.
    #[arg(long, env = "LOG_AGGREGATOR_MULTILINE_TIMEOUT", default_value = "1s", value_parser = parse_duration, value_name = "DURATION", requires = "multiline_start")]
    pub multiline_timeout: Duration,

    /// Stream mode: multiline records are cut (and counted) at this size (at least 1).
    #[arg(long, env = "LOG_AGGREGATOR_MULTILINE_MAX_BYTES", default_value = "256KiB", value_parser = parse_nonzero_bytes, value_name = "SIZE", requires = "multiline_start")]
    pub multiline_max_bytes: u64,

    /// Stream mode: serve /metrics, /healthz and /readyz on ADDR (`:9100`, `0.0.0.0:9100`, `[::1]:9100`).
    #[arg(
        long,
        env = "LOG_AGGREGATOR_LISTEN",
        value_name = "ADDR",
        value_parser = parse_listen_address,
        requires = "follow"
    )]
    pub listen: Option<SocketAddr>,

    /// Stream mode: where lines go, one or more (repeat the flag or
    /// separate with commas): stdout, relp, syslog-tcp, otlp, each with its
    /// backend as `KIND=ADDRESS` (or one sink's from --ship-address).
    /// `relp` and `syslog-tcp` ship RFC 5424 messages (MSG = the line as
    /// --output renders it), `otlp` OTLP/HTTP logs; read positions are then
    /// saved only for what every sink acknowledged (see docs/shipping.md).
    #[arg(
        long = "sink",
        env = "LOG_AGGREGATOR_SINK",
        value_delimiter = ',',
        value_parser = parse_sink,
        default_value = "stdout",
        value_name = "KIND[=ADDRESS]",
        requires = "follow"
    )]
    pub sinks: Vec<SinkSpec>,

    /// Shipping: the backend's `host:port` (syslog, RELP), or its URL
    /// `http://host:port[/path]` (OTLP; the path defaults to /v1/logs).
    #[arg(long, env = "LOG_AGGREGATOR_SHIP_ADDRESS", value_name = "HOST:PORT")]
    pub ship_address: Option<String>,

    /// Shipping: a batch is sent at this many lines at most.
    #[arg(
        long,
        env = "LOG_AGGREGATOR_BATCH_MAX_LINES",
        default_value_t = 1000,
        value_name = "N"
    )]
    pub batch_max_lines: usize,

    /// Shipping: a batch is sent at this many bytes at most (a longer line goes alone).
    #[arg(long, env = "LOG_AGGREGATOR_BATCH_MAX_BYTES", default_value = "1MiB", value_parser = parse_nonzero_bytes, value_name = "SIZE")]
    pub batch_max_bytes: u64,

    /// Shipping: how long a line may wait for its batch to fill before the
    /// batch is sent anyway.
    #[arg(long, env = "LOG_AGGREGATOR_BATCH_TIMEOUT", default_value = "200ms", value_parser = parse_duration, value_name = "DURATION")]
    pub batch_timeout: Duration,

    /// Shipping: the longest wait between two reconnection attempts
    /// (exponential backoff from 100 ms, full jitter).
    #[arg(long, env = "LOG_AGGREGATOR_SHIP_BACKOFF_MAX", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub ship_backoff_max: Duration,

    /// Shipping: connect, write and acknowledgement timeout.
    #[arg(long, env = "LOG_AGGREGATOR_SHIP_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub ship_timeout: Duration,

    /// Syslog HOSTNAME (e.g. the pod name, which Kubernetes sets as HOSTNAME).
    #[arg(long, env = "LOG_AGGREGATOR_SYSLOG_HOSTNAME", value_name = "NAME")]
    pub syslog_hostname: Option<String>,

    /// Syslog APP-NAME (e.g. the container name from the Downward API).
    #[arg(
        long,
        env = "LOG_AGGREGATOR_SYSLOG_APP_NAME",
        default_value = "log-aggregator",
        value_name = "NAME"
    )]
    pub syslog_app_name: String,

    /// Syslog PROCID (e.g. the pod UID from the Downward API); `-` when empty.
    #[arg(
        long,
        env = "LOG_AGGREGATOR_SYSLOG_PROCID",
        default_value = "",
        value_name = "ID"
    )]
    pub syslog_procid: String,

    /// Syslog facility, 0..=23 (1 = user, 16..=23 = local0..local7).
    #[arg(long, env = "LOG_AGGREGATOR_SYSLOG_FACILITY", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=23), value_name = "N")]
    pub syslog_facility: u8,

    /// Syslog severity of every line, 0..=7 (6 = informational).
    #[arg(long, env = "LOG_AGGREGATOR_SYSLOG_SEVERITY", default_value_t = 6, value_parser = clap::value_parser!(u8).range(0..=7), value_name = "N")]
    pub syslog_severity: u8,

    /// Syslog STRUCTURED-DATA: the SD-ID of the one element written with
    /// every message, `NAME@ENTERPRISE-NUMBER` (e.g. `k8s@32473`); none
    /// (`-`) when unset.
    #[arg(long, env = "LOG_AGGREGATOR_SYSLOG_SD_ID", value_name = "ID")]
    pub syslog_sd_id: Option<String>,

    /// Syslog STRUCTURED-DATA parameters `NAME=VALUE`, comma-separated
    /// (repeatable), e.g. from the Downward API; values are escaped.
    #[arg(
        long = "syslog-sd",
        env = "LOG_AGGREGATOR_SYSLOG_SD",
        value_delimiter = ',',
        value_name = "NAME=VALUE",
        requires = "syslog_sd_id"
    )]
    pub syslog_sd: Vec<String>,

    /// OTLP request encoding: protobuf, or json (the OTLP/HTTP JSON mapping).
    #[arg(
        long,
        env = "LOG_AGGREGATOR_OTLP_ENCODING",
        value_enum,
        default_value = "protobuf"
    )]
    pub otlp_encoding: Encoding,

    /// OTLP request compression: none, or gzip (Content-Encoding: gzip).
    #[arg(
        long,
        env = "LOG_AGGREGATOR_OTLP_COMPRESSION",
        value_enum,
        default_value = "none"
    )]
    pub otlp_compression: Compression,

    /// TLS sinks (https:// OTLP, tls:// syslog and RELP; the `tls` build):
    /// the PEM certificates trusted to sign the server's.
    #[arg(
        long,
        env = "LOG_AGGREGATOR_SHIP_CA_FILE",
        default_value = "/etc/ssl/certs/ca-certificates.crt",
        value_name = "PATH"
    )]
    pub ship_ca_file: PathBuf,

    /// TLS sinks: the PEM client certificate (chain) sent when the server
    /// asks for one (mutual TLS); needs --ship-client-key.
    #[arg(
        long,
        env = "LOG_AGGREGATOR_SHIP_CLIENT_CERT",
        value_name = "PATH",
        requires = "ship_client_key"
    )]
    pub ship_client_cert: Option<PathBuf>,

    /// TLS sinks: the PEM private key of --ship-client-cert.
    #[arg(
        long,
        env = "LOG_AGGREGATOR_SHIP_CLIENT_KEY",
        value_name = "PATH",
        requires = "ship_client_cert"
    )]
    pub ship_client_key: Option<PathBuf>,

    /// OTLP resource attributes `KEY=VALUE`, comma-separated (repeatable),
    /// like OTEL_RESOURCE_ATTRIBUTES (also read). K8S_POD_NAME,
    /// K8S_NAMESPACE_NAME, K8S_CONTAINER_NAME, K8S_NODE_NAME, K8S_POD_UID
    /// (set them from the Downward API) and OTEL_SERVICE_NAME give
    /// k8s.pod.name, k8s.namespace.name, k8s.container.name, k8s.node.name,
    /// k8s.pod.uid and service.name.
    #[arg(
        long = "resource-attribute",
        env = "LOG_AGGREGATOR_RESOURCE_ATTRIBUTES",
        value_delimiter = ',',
        value_name = "KEY=VALUE"
    )]
    pub resource_attributes: Vec<String>,

    #[command(flatten)]
    pub log: LogArgs,
}

/// Environment variables (Downward API) that name OTLP resource attributes,
/// per the OpenTelemetry semantic conventions for Kubernetes.
const RESOURCE_ENV: [(&str, &str); 6] = [
    ("K8S_POD_NAME", "k8s.pod.name"),
    ("K8S_NAMESPACE_NAME", "k8s.namespace.name"),
    ("K8S_CONTAINER_NAME", "k8s.container.name"),
    ("K8S_NODE_NAME", "k8s.node.name"),
    ("K8S_POD_UID", "k8s.pod.uid"),
    ("OTEL_SERVICE_NAME", "service.name"),
];

/// The OTLP resource: OTEL_RESOURCE_ATTRIBUTES, then the K8S_* variables,
/// then `--resource-attribute` (a later key replaces an earlier one).
fn resource_attributes(flags: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut attributes: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: &str| {
        attributes.retain(|(existing, _)| existing != key);
        attributes.push((key.to_owned(), value.to_owned()));
    };
    let otel = std::env::var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
    for pair in otel.split(',').filter(|pair| !pair.trim().is_empty()) {
        if let Some((key, value)) = pair.split_once('=') {
            set(key.trim(), value.trim());
        }
    }
    for (variable, key) in RESOURCE_ENV {
        if let Ok(value) = std::env::var(variable) {
            if !value.is_empty() {
                set(key, &value);
            }
        }
    }
    for pair in flags {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--resource-attribute {pair:?}: expected KEY=VALUE");
        };
        set(key.trim(), value.trim());
    }
    Ok(attributes)
}

impl Tool for Args {
    fn logging(&self) -> &LogArgs {
        &self.log
    }

    fn adjust(command: clap::Command) -> clap::Command {
        let command = FollowArgs::with_env(command, "LOG_AGGREGATOR_");
        FOLLOW_ONLY.iter().fold(command, |command, id| {
            command.mut_arg(*id, |arg| arg.requires("follow"))
        })
    }
}

/// The follow flags that mean nothing in snapshot mode: an error without
/// --follow, so a typo cannot silently run the wrong mode.
const FOLLOW_ONLY: [&str; 5] = [
    "poll",
    "poll_interval",
    "rotate_wait",
    "event_coalesce",
    "max_open_files",
];

/// Snapshot mode's `--interval` when none is given: the lab script's `sleep 10`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// What to run, as plain values.
#[derive(Clone, Debug)]
pub enum Config {
    /// The lab's loop: see [`snapshot`].
    Snapshot(SnapshotConfig),
    /// Every line, once: see [`stream`].
    Stream(Box<StreamConfig>),
}

fn positive(name: &str, value: Duration) -> anyhow::Result<()> {
    if value.is_zero() {
        bail!("{name} must be more than zero");
    }
    Ok(())
}

impl Args {
    /// Checks the flags together and turns them into a [`Config`].
    pub fn into_config(self) -> anyhow::Result<Config> {
        if self.follow {
            if self.interval.is_some() {
                bail!(
                    "--interval is for snapshot mode; --follow writes every line as it comes \
                     (--poll-interval sets how often files are re-checked)"
                );
            }
            return self
                .into_stream_config()
                .map(|config| Config::Stream(Box::new(config)));
        }
        let interval = self.interval.unwrap_or(DEFAULT_INTERVAL);
        positive("--interval", interval).context("a zero interval would print in a busy loop")?;
        let sources = self
            .sources
            .iter()
            .map(|text| Source::parse(text).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Config::Snapshot(SnapshotConfig {
            interval,
            lines: self.lines,
            sources,
            max_line_bytes: self.follow_flags.max_line_bytes(),
        }))
    }

    /// `--parse` with its pattern, template and edits, as one converter.
    fn converter(&self, output: Format) -> anyhow::Result<Option<Converter>> {
        let Some(from) = self.parse else {
            if output.needs_parse() {
                bail!("--output {output:?} writes records: it needs --parse FORMAT");
            }
            return Ok(None);
        };
        let pattern = match (&self.pattern, from) {
            (Some(pattern), FormatName::Regex) => Some(
                regex::Regex::new(pattern)
                    .with_context(|| format!("bad --pattern regex {pattern:?}"))?,
            ),
            (Some(_), from) => bail!("--pattern is only for --parse regex, not {from:?}"),
            (None, FormatName::Regex) => bail!("--parse regex needs --pattern"),
            (None, _) => None,
        };
        let parser =
            LineParser::new(from, pattern, ParseOptions::default()).map_err(anyhow::Error::msg)?;
        let encoder = match (output, &self.template) {
            (Format::Template, Some(text)) => {
                Encoder::Template(Template::parse(text).map_err(anyhow::Error::msg)?)
            }
            (Format::Template, None) => bail!("--output template needs --template"),
            (_, Some(_)) => bail!("--template is only for --output template"),
            (Format::Json, None) => Encoder::Json,
            (Format::Logfmt, None) => Encoder::Logfmt,
            (Format::Plain | Format::Prefixed, None) => bail!(
                "--parse writes records: --output json (the default with --parse), logfmt or template, not {output:?}"
            ),
        };
        let edits = Edits::parse(&self.add, &self.rename, &self.drop)?;
        Ok(Some(Converter::new(parser, encoder, edits)))
    }

    fn into_stream_config(self) -> anyhow::Result<StreamConfig> {
        positive("--checkpoint-interval", self.checkpoint_interval)?;
        let multiline = match &self.multiline_start {
            Some(pattern) => Some(MultilineConfig {
                start: regex::bytes::Regex::new(pattern)
                    .with_context(|| format!("bad --multiline-start regex {pattern:?}"))?,
                timeout: self.multiline_timeout,
                max_bytes: usize::try_from(self.multiline_max_bytes).unwrap_or(usize::MAX),
            }),
            None => None,
        };
        for pattern in self
            .sources
            .iter()
            .filter(|pattern| sidecar_common::follow::has_glob_syntax(pattern))
        {
            glob::Pattern::new(pattern).with_context(|| format!("bad glob pattern {pattern:?}"))?;
        }
        let ship = self.ship_config()?;
        let output = self.output.unwrap_or(if self.parse.is_some() {
            Format::Json
        } else {
            Format::Plain
        });
        let parse = self.converter(output)?;
        let otlp = self.has_sink(Sink::Otlp);
        // Plain and prefixed lines are bytes passed through: written in
        // pieces, never cut; plain lines are only copied and counted, so the
        // whole lines of a read are rendered at once. A JSON record, a
        // parsed record or a multiline record must be whole, so there long
        // lines are cut. Shipped lines are messages: whole, like records.
        let long_lines = match output {
            _ if multiline.is_some() || ship.is_some() => LongLines::Cut,
            Format::Plain if parse.is_none() => LongLines::Runs,
            Format::Plain | Format::Prefixed => LongLines::Split,
            _ => LongLines::Cut,
        };
        Ok(StreamConfig {
            patterns: self.sources,
            // OTLP takes each line's path from the prefixed rendering (the
            // body is the line as read, --output does not apply; other
            // sinks cut the prefix off again for --output plain); a
            // record carries its path in its `file` field.
            format: if otlp && parse.is_none() {
                Format::Prefixed
            } else {
                output
            },
            parse,
            from: match self.from {
                From::Beginning => StartAt::Beginning,
                From::End => StartAt::End,
            },
            follow: self.follow_flags.options(long_lines)?,
            drain_timeout: self.drain_timeout,
            checkpoint_dir: self.checkpoint_dir,
            checkpoint_interval: self.checkpoint_interval,
            excludes: self.excludes,
            discard_invalid_checkpoint: self.discard_invalid_checkpoint,
            multiline,
            listen: self.listen,
            ship,
        })
    }

    fn has_sink(&self, kind: Sink) -> bool {
        self.sinks.iter().any(|sink| sink.kind == kind)
    }

    fn ship_config(&self) -> anyhow::Result<Option<ShipConfig>> {
        if self.sinks.len() == 1 && self.sinks[0].kind == Sink::Stdout {
            if self.sinks[0].address.is_some() {
                bail!("--sink stdout takes no address");
            }
            return Ok(None);
        }
        let otlp = self.has_sink(Sink::Otlp);
        let records = self.parse.is_some();
        if records && !matches!(self.output, None | Some(Format::Json)) {
            bail!(
                "--parse with a --sink other than stdout ships JSON records: --output json \
                 (the default with --parse), not {:?}",
                self.output.unwrap_or(Format::Json)
            );
        }
        if otlp && !records && self.output == Some(Format::Json) {
            bail!(
                "--output json cannot go with an otlp sink and another sink (OTLP needs each \
                 line's path; use --output plain or prefixed)"
            );
        }
        let unnamed = self
            .sinks
            .iter()
            .filter(|sink| sink.kind != Sink::Stdout && sink.address.is_none())
            .count();
        if unnamed > 1 && self.ship_address.is_some() {
            bail!(
                "--ship-address names one backend; give each sink its own: \
                 --sink relp=HOST:PORT,otlp=http://HOST:PORT"
            );
        }
        let mut sinks: Vec<SinkTarget> = Vec::new();
        let mut any_tls = false;
        for sink in &self.sinks {
            let protocol = match sink.kind {
                Sink::Stdout => Protocol::Stdout,
                Sink::SyslogTcp => Protocol::SyslogTcp,
                Sink::Relp => Protocol::Relp,
                Sink::Otlp => Protocol::Otlp,
            };
            let name = protocol.name();
            if sinks.iter().any(|other| other.protocol == protocol) {
                bail!("--sink {name} given twice (one sink of each kind)");
            }
            let address = match (protocol, &sink.address) {
                (Protocol::Stdout, Some(_)) => bail!("--sink stdout takes no address"),
                (Protocol::Stdout, None) => String::new(),
                (_, Some(address)) => address.clone(),
                (_, None) => self.ship_address.clone().ok_or_else(|| {
                    anyhow::anyhow!(
                        "--sink {name} needs --ship-address or --sink {name}=ADDRESS \
                         (HOST:PORT, or http://HOST:PORT for OTLP)"
                    )
                })?,
            };
            let tls = match protocol {
                Protocol::Stdout => false,
                Protocol::Otlp => {
                    ship::otlp::HttpUrl::parse(&address)
                        .map_err(|error| anyhow::anyhow!("--sink {name}: {error}"))?
                        .tls
                }
                Protocol::SyslogTcp | Protocol::Relp => {
                    ship::tls::SyslogAddress::parse(&address)
                        .map_err(|error| anyhow::anyhow!("--sink {name}: {error}"))?
                        .tls
                }
            };
            any_tls |= tls;
            sinks.push(SinkTarget {
                protocol,
                address,
                strip_prefix: otlp
                    && !records
                    && protocol != Protocol::Otlp
                    && self.output.unwrap_or(Format::Plain) == Format::Plain,
            });
        }
        let client_cert = self
            .ship_client_cert
            .clone()
            .zip(self.ship_client_key.clone());
        if client_cert.is_some() && !any_tls {
            bail!(
                "--ship-client-cert is for TLS sinks, and no sink's address asks for TLS \
                 (https:// for otlp, tls://HOST:PORT for relp and syslog-tcp)"
            );
        }
        let tls = if any_tls {
            let files = ship::tls::TlsFiles {
                ca_file: self.ship_ca_file.clone(),
                client_cert,
            };
            Some(ship::tls::TlsClient::load(&files)?)
        } else {
            None
        };
        let resource = if otlp {
            resource_attributes(&self.resource_attributes)?
        } else {
            Vec::new()
        };
        let structured_data = match &self.syslog_sd_id {
            Some(id) => {
                ship::syslog::sd_id(id)
                    .map_err(|error| anyhow::anyhow!("--syslog-sd-id {error}"))?;
                let mut params = Vec::new();
                for pair in &self.syslog_sd {
                    let Some((name, value)) = pair.split_once('=') else {
                        bail!("--syslog-sd {pair:?}: expected NAME=VALUE");
                    };
                    ship::syslog::sd_name(name)
                        .map_err(|error| anyhow::anyhow!("--syslog-sd {error}"))?;
                    params.push((name.to_owned(), value.to_owned()));
                }
                Some(SdElement {
                    id: id.clone(),
                    params,
                })
            }
            None => None,
        };
        if self.batch_max_lines == 0 {
            bail!("--batch-max-lines must be at least 1");
        }
        positive("--batch-timeout", self.batch_timeout)?;
        positive("--ship-timeout", self.ship_timeout)?;
        let hostname = self
            .syslog_hostname
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_default();
        Ok(Some(ShipConfig {
            sinks,
            resource,
            otlp: OtlpOptions {
                encoding: self.otlp_encoding,
                compression: self.otlp_compression,
            },
            tls,
            records,
            batch: BatchLimits {
                max_lines: self.batch_max_lines,
                max_bytes: usize::try_from(self.batch_max_bytes).unwrap_or(usize::MAX),
                timeout: self.batch_timeout,
            },
            syslog: SyslogFields {
                hostname,
                app_name: self.syslog_app_name.clone(),
                procid: self.syslog_procid.clone(),
                facility: self.syslog_facility,
                severity: self.syslog_severity,
                structured_data,
            },
            backoff: Backoff {
                initial: Duration::from_millis(100),
                max: self.ship_backoff_max.max(Duration::from_millis(100)),
            },
            timeouts: Timeouts {
                connect: self.ship_timeout,
                io: self.ship_timeout,
            },
        }))
    }
}

/// Runs the configured mode until shutdown (SIGTERM/SIGINT).
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    match config {
        Config::Snapshot(config) => snapshot::run(config, shutdown).await,
        Config::Stream(config) => stream::run(*config, shutdown).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(args: &[&str]) -> StreamConfig {
        let argv = ["log-aggregator", "--follow"].iter().chain(args);
        match Args::try_parse_adjusted(argv)
            .unwrap()
            .into_config()
            .unwrap()
        {
            Config::Stream(config) => *config,
            Config::Snapshot(_) => unreachable!("--follow is stream mode"),
        }
    }

    #[test]
    fn shipping_needs_an_address_cuts_long_lines_and_otlp_takes_paths_from_prefixes() {
        let argv = ["log-aggregator", "--follow", "--sink", "relp", "a.log"];
        let error = Args::try_parse_adjusted(argv)
            .unwrap()
            .into_config()
            .unwrap_err();
        assert!(error.to_string().contains("--ship-address"), "{error}");
        let relp = stream(&[
            "--sink",
            "relp",
            "--ship-address",
            "127.0.0.1:2514",
            "a.log",
        ]);
        assert_eq!(
            relp.follow.long_lines,
            LongLines::Cut,
            "a message is a whole line"
        );
        let ship = relp.ship.unwrap();
        assert_eq!(ship.sinks[0].protocol, Protocol::Relp);
        assert_eq!(ship.batch.max_lines, 1000);
        let otlp = stream(&[
            "--sink",
            "otlp",
            "--ship-address",
            "http://127.0.0.1:4318",
            "--resource-attribute",
            "a=1,b=2",
            "a.log",
        ]);
        assert_eq!(otlp.format, Format::Prefixed);
        let resource = otlp.ship.unwrap().resource;
        assert!(resource.contains(&("a".into(), "1".into())), "{resource:?}");
        assert!(resource.contains(&("b".into(), "2".into())), "{resource:?}");
        let argv = [
            "log-aggregator",
            "--follow",
            "--sink",
            "otlp",
            "--ship-address",
            "127.0.0.1:4318",
            "a.log",
        ];
        let error = Args::try_parse_adjusted(argv)
            .unwrap()
            .into_config()
            .unwrap_err();
        assert!(error.to_string().contains("http://"), "{error}");
        assert!(
            stream(&["a.log"]).ship.is_none(),
            "stdout stays the default"
        );
    }

    #[test]
    fn long_lines_are_split_where_bytes_pass_through_and_cut_where_records_must_be_whole() {
        let split = |args: &[&str]| stream(args).follow.long_lines != LongLines::Cut;
        assert!(split(&["a.log"]));
        assert!(split(&["--output", "prefixed", "a.log"]));
        assert!(!split(&["--output", "json", "a.log"]));
        assert!(!split(&["--multiline-start", "^x", "a.log"]));
    }

    #[test]
    fn only_plain_output_takes_the_lines_of_a_read_as_one_run() {
        let runs = |args: &[&str]| stream(args).follow.long_lines == LongLines::Runs;
        assert!(runs(&["a.log"]));
        assert!(
            !runs(&["--output", "prefixed", "a.log"]),
            "a prefix per line"
        );
        assert!(!runs(&["--output", "json", "a.log"]));
        assert!(!runs(&["--multiline-start", "^x", "a.log"]));
        let shipped = [
            "--sink",
            "relp",
            "--ship-address",
            "127.0.0.1:2514",
            "a.log",
        ];
        assert!(!runs(&shipped), "a message per line");
    }

    #[test]
    fn every_follow_flag_keeps_its_log_aggregator_environment_variable() {
        use clap::CommandFactory;
        let command = Args::adjust(Args::command());
        assert_eq!(
            sidecar_common::pipeline::follow_args::FollowArgs::env_mismatches(
                &command,
                "LOG_AGGREGATOR_"
            ),
            []
        );
    }

    fn stream_error(args: &[&str]) -> String {
        let argv = ["log-aggregator", "--follow"].iter().chain(args);
        Args::try_parse_from(argv)
            .unwrap()
            .into_config()
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn several_sinks_each_with_its_address_and_plain_lines_for_all_but_otlp() {
        let config = stream(&[
            "--sink",
            "stdout,relp=127.0.0.1:2514",
            "--sink",
            "otlp=http://127.0.0.1:4318",
            "a.log",
        ]);
        assert_eq!(config.format, Format::Prefixed, "OTLP needs the paths");
        let ship = config.ship.unwrap();
        assert!(ship.writes_stdout());
        let sinks: Vec<_> = ship
            .sinks
            .iter()
            .map(|sink| (sink.protocol, sink.address.as_str(), sink.strip_prefix))
            .collect();
        assert_eq!(
            sinks,
            [
                (Protocol::Stdout, "", true),
                (Protocol::Relp, "127.0.0.1:2514", true),
                (Protocol::Otlp, "http://127.0.0.1:4318", false),
            ]
        );
        let prefixed = stream(&[
            "--sink",
            "stdout,otlp",
            "--ship-address",
            "http://h:1",
            "--output",
            "prefixed",
            "a.log",
        ]);
        assert!(!prefixed.ship.unwrap().sinks[0].strip_prefix);
        assert!(
            stream_error(&["--sink", "relp,otlp", "--ship-address", "h:1", "a.log"])
                .contains("give each sink its own")
        );
        assert!(stream_error(&["--sink", "relp=h:1,relp=h:2", "a.log"]).contains("twice"));
        assert!(stream_error(&["--sink", "stdout=x", "a.log"]).contains("no address"));
        assert!(
            stream_error(&[
                "--sink",
                "stdout,otlp=http://h:1",
                "--output",
                "json",
                "a.log"
            ])
            .contains("--output json")
        );
        let argv = ["log-aggregator", "--follow", "--sink", "kafka", "a.log"];
        assert!(Args::try_parse_from(argv).is_err());
    }

    #[test]
    fn structured_data_comes_from_flags_and_is_checked() {
        let config = stream(&[
            "--sink",
            "relp=h:1",
            "--syslog-sd-id",
            "k8s@32473",
            "--syslog-sd",
            "pod=web-1,ns=prod",
            "a.log",
        ]);
        let sd = config.ship.unwrap().syslog.structured_data.unwrap();
        assert_eq!(sd.id, "k8s@32473");
        assert_eq!(
            sd.params,
            [
                ("pod".to_owned(), "web-1".to_owned()),
                ("ns".to_owned(), "prod".to_owned())
            ]
        );
        assert!(
            stream_error(&["--sink", "relp=h:1", "--syslog-sd-id", "k8s", "a.log"])
                .contains("ENTERPRISE-NUMBER")
        );
        assert!(
            stream_error(&[
                "--sink",
                "relp=h:1",
                "--syslog-sd-id",
                "k8s@1",
                "--syslog-sd",
                "a b=c",
                "a.log"
            ])
            .contains("--syslog-sd")
        );
    }
}
