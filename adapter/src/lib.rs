//! `adapter`: the lab's challenge 2, an adapter container that converts log
//! formats: lines of a known format (or a regex) in, structured lines
//! (JSON, logfmt or a template) out, and no line ever silently lost.
//!
//! This file owns the flags ([`Args`]), their mapping to a plain [`Config`],
//! and [`run`], which drives the synchronous [`pipeline::Pipeline`] from
//! stdin or from a followed file ([`sidecar_common::follow`]). The parsers
//! live in [`formats`], the writers in [`output`].

pub mod pipeline;
/// The parsers, records and encoders, shared with `log-aggregator --parse`.
pub use sidecar_common::pipeline::{encode as output, formats, record, time};

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use sidecar_common::cli::{LogArgs, Tool};
use sidecar_common::follow::{self, Event, Flow, FollowOptions, Follower, PollOutcome, StartAt};
use sidecar_common::lines::{Line, LineSplitter, LongLines};
use sidecar_common::metrics::{Health, Registry};

use sidecar_common::metrics::parse_listen_address;
use sidecar_common::multiline::Multiline;
use sidecar_common::pipeline::follow_args::FollowArgs;
use sidecar_common::pipeline::output::{CHUNK_BYTES, OutputPipe, stdout};
use sidecar_common::shutdown::Shutdown;
use sidecar_common::units::parse_duration;
use tokio::io::AsyncReadExt;

use formats::{FormatName, Options, Parser};
use output::{Output, OutputName, Template};
use pipeline::{Counters, Edits, OnError, Pipeline, Settings};

const EXAMPLES: &str = "\
Examples:
  # The lab's adapter: the writer's lines as JSON, following the shared file
  adapter --from writer /data/log.txt
  #   Wed Nov 25 14:01:13 UTC 2026 - Hello from writer
  #   -> {\"timestamp\":\"2026-11-25T14:01:13Z\",\"message\":\"Hello from writer\"}

  # Your own format with named captures
  adapter --from regex --pattern '^(?<level>[A-Z]+) (?<message>.*)$' app.log

  # NGINX access log to logfmt, with the pod name from the Downward API
  adapter --from combined --to logfmt --add pod=$POD_NAME /var/log/nginx/access.log

  # Syslog to a custom line; unparsable lines set aside in a file
  adapter --from rfc3164 --to template --template '{timestamp} {severity} {message}' \\
          --unparsed /data/unparsed.log < messages

  # Java stack traces joined under their log line, counters on :9102/metrics
  adapter --from json --multiline-start '^\\{' --listen 0.0.0.0:9102 app.jsonl

Formats (--from): writer, regex, common, combined, rfc3164, rfc5424, logfmt,
json, klog, auto (tries json, writer, rfc5424, rfc3164, combined, common,
klog, logfmt in that order). Field names follow Vector's VRL parse_* functions.
";

/// Converts log lines of a known format into structured logs (JSON, logfmt, template).
#[derive(clap::Parser, Debug)]
#[command(name = "adapter", version, about, after_help = EXAMPLES)]
pub struct Args {
    /// Input format.
    #[arg(
        long,
        env = "ADAPTER_FROM",
        value_enum,
        default_value = "auto",
        value_name = "FORMAT"
    )]
    pub from: FormatName,

    /// With `--from regex`: a regex whose named captures `(?<name>...)` become fields.
    #[arg(long, env = "ADAPTER_PATTERN", value_name = "REGEX")]
    pub pattern: Option<String>,

    /// Output format.
    #[arg(
        long,
        env = "ADAPTER_TO",
        value_enum,
        default_value = "json",
        value_name = "FORMAT"
    )]
    pub to: OutputName,

    /// With `--to template`: text with `{field}` placeholders (`{{` for a brace).
    #[arg(long, env = "ADAPTER_TEMPLATE", value_name = "TEMPLATE")]
    pub template: Option<String>,

    /// Adds (or overwrites) a static field, e.g. `pod=$POD_NAME`; repeatable,
    /// comma-separated in the environment.
    #[arg(
        long = "add",
        env = "ADAPTER_ADD",
        value_delimiter = ',',
        value_name = "KEY=VALUE"
    )]
    pub add: Vec<String>,

    /// Renames a field; repeatable.
    #[arg(
        long = "rename",
        env = "ADAPTER_RENAME",
        value_delimiter = ',',
        value_name = "OLD=NEW"
    )]
    pub rename: Vec<String>,

    /// Removes a field; repeatable.
    #[arg(
        long = "drop",
        env = "ADAPTER_DROP",
        value_delimiter = ',',
        value_name = "FIELD"
    )]
    pub drop: Vec<String>,

    /// A line that does not parse is emitted as {"message": LINE, "parse_error": WHY}
    /// (emit) or dropped and counted (drop).
    #[arg(
        long,
        env = "ADAPTER_ON_ERROR",
        value_enum,
        default_value = "emit",
        value_name = "ACTION"
    )]
    pub on_error: OnError,

    /// Appends lines that do not parse, raw, to this file instead (created if needed).
    #[arg(long, env = "ADAPTER_UNPARSED", value_name = "PATH")]
    pub unparsed: Option<PathBuf>,

    /// Also keeps each timestamp as written, in `timestamp_raw`.
    #[arg(long, env = "ADAPTER_KEEP_TIME")]
    pub keep_time: bool,

    /// The year of RFC 3164 and klog timestamps, which have none [default:
    /// the current year; December lines read in January: the previous one].
    #[arg(long, env = "ADAPTER_YEAR", value_name = "YEAR")]
    pub year: Option<i32>,

    /// A line matching this regex starts a record; other lines are joined
    /// to the record before them (stack traces) with `\n`, before parsing.
    #[arg(long, env = "ADAPTER_MULTILINE_START", value_name = "REGEX")]
    pub multiline_start: Option<String>,

    /// A joined record is written after this long without a new line.
    #[arg(long, env = "ADAPTER_MULTILINE_TIMEOUT", default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub multiline_timeout: Duration,

    /// Serves /metrics (line and error counters), /healthz and /readyz here
    /// (`:9102`, `0.0.0.0:9102`, `[::1]:9102`).
    #[arg(long, env = "ADAPTER_LISTEN", value_name = "ADDR", value_parser = parse_listen_address)]
    pub listen: Option<SocketAddr>,

    /// Reads FILE to its end and exits, instead of following it.
    #[arg(long, env = "ADAPTER_NO_FOLLOW")]
    pub no_follow: bool,

    // Longer lines (and joined records) are cut at --max-line-bytes and
    // counted; the other follow flags apply to FILE.
    #[command(flatten)]
    pub follow: FollowArgs,

    /// The file to read and follow by name from its start (it may not exist
    /// yet); stdin when absent or `-`.
    #[arg(env = "ADAPTER_FILE", value_name = "FILE")]
    pub file: Option<PathBuf>,

    #[command(flatten)]
    pub log: LogArgs,
}

impl Tool for Args {
    fn logging(&self) -> &LogArgs {
        &self.log
    }

    fn adjust(command: clap::Command) -> clap::Command {
        FollowArgs::with_env(command, "ADAPTER_")
    }
}

/// Where lines come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Stdin,
    /// Followed by name (`follow`), or read once to its end.
    File {
        path: PathBuf,
        follow: bool,
    },
}

/// Everything [`run`] needs, as plain values.
#[derive(Clone, Debug)]
pub struct Config {
    pub input: Input,
    pub parser: Parser,
    pub output: Output,
    pub edits: Edits,
    pub on_error: OnError,
    pub unparsed: Option<PathBuf>,
    pub multiline: Option<(regex::bytes::Regex, Duration)>,
    pub max_line_bytes: usize,
    pub listen: Option<SocketAddr>,
    pub follow: FollowOptions,
}

/// A regex error on one line: the regex crate's message spans several
/// lines (the pattern, a caret, the cause); the cause is the last one.
fn regex_error(error: regex::Error) -> anyhow::Error {
    let text = error.to_string();
    let cause = text.lines().last().unwrap_or_default();
    anyhow::Error::msg(cause.strip_prefix("error: ").unwrap_or(cause).to_owned())
}

impl Args {
    /// Checks the flags together and turns them into a [`Config`].
    pub fn into_config(self) -> anyhow::Result<Config> {
        let pattern = match (&self.pattern, self.from) {
            (Some(pattern), FormatName::Regex) => Some(
                regex::Regex::new(pattern)
                    .map_err(regex_error)
                    .with_context(|| format!("bad --pattern {pattern:?}"))?,
            ),
            (Some(_), from) => bail!("--pattern is only for --from regex, not {from:?}"),
            (None, _) => None,
        };
        let options = Options {
            year: self.year,
            keep_time: self.keep_time,
            ..Options::default()
        };
        let parser = Parser::new(self.from, pattern, options).map_err(anyhow::Error::msg)?;
        let output = match (self.to, &self.template) {
            (OutputName::Template, Some(text)) => {
                Output::Template(Template::parse(text).map_err(anyhow::Error::msg)?)
            }
            (OutputName::Template, None) => bail!("--to template needs --template"),
            (_, Some(_)) => bail!("--template is only for --to template"),
            (OutputName::Json, None) => Output::Json,
            (OutputName::Logfmt, None) => Output::Logfmt,
        };
        if self.unparsed.is_some() && self.on_error == OnError::Drop {
            bail!("--unparsed and --on-error drop say different things: choose one");
        }
        let edits = Edits::parse(&self.add, &self.rename, &self.drop)?;
        let multiline = match &self.multiline_start {
            Some(start) => Some((
                regex::bytes::Regex::new(start)
                    .map_err(regex_error)
                    .with_context(|| format!("bad --multiline-start {start:?}"))?,
                self.multiline_timeout,
            )),
            None => None,
        };
        let follow = self.follow.options(LongLines::Cut)?;
        let max_line_bytes = follow.max_line_bytes;
        let input = match self.file {
            Some(path) if path.as_os_str() != "-" => Input::File {
                path,
                follow: !self.no_follow,
            },
            _ => Input::Stdin,
        };
        Ok(Config {
            input,
            parser,
            output,
            edits,
            on_error: self.on_error,
            unparsed: self.unparsed,
            multiline,
            max_line_bytes,
            listen: self.listen,
            follow,
        })
    }
}

/// Parses the process's flags (for tests of the mapping).
pub fn parse_args<I, T>(args: I) -> Result<Args, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Args::try_parse_adjusted(args)
}

/// At shutdown, how long the end of a followed file may take to drain, and
/// then how long stdout may take what is left: the whole stop must fit in
/// about one second, even when nobody reads stdout.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);

/// stdin is read in chunks of this size.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Converts until the input ends (stdin, `--no-follow`) or shutdown.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    if let Input::File { path, follow } = &config.input {
        check_readable(path, *follow)?;
    }
    let registry = Arc::new(Registry::new());
    let health = Arc::new(Health::default());
    if let Some(address) = config.listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("listening on {address}"))?;
        tracing::info!(%address, "serving /metrics, /healthz and /readyz");
        tokio::spawn(sidecar_common::metrics::serve(
            listener,
            registry.clone(),
            health.clone(),
            shutdown.clone(),
        ));
    }
    let unparsed: Option<Box<dyn Write + Send>> = match &config.unparsed {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening --unparsed file {}", path.display()))?;
            Some(Box::new(NamedWriter {
                path: path.clone(),
                file,
            }))
        }
        None => None,
    };
    let counters = Counters::new(&registry);
    let mut pipeline = Pipeline::new(
        Settings {
            parser: config.parser,
            output: config.output,
            edits: config.edits,
            on_error: config.on_error,
            unparsed,
            multiline: config
                .multiline
                .map(|(start, timeout)| (Multiline::new(start, config.max_line_bytes), timeout)),
        },
        counters.clone(),
    );
    health.set_ready(true);
    let mut pipe = stdout()
        .and_then(OutputPipe::spawn)
        .context("starting the stdout writer")?;
    let result = match config.input {
        Input::Stdin => {
            let stdin = tokio::io::stdin();
            let max = config.max_line_bytes;
            read_stream(&mut pipeline, &mut pipe, stdin, "stdin", max, &shutdown).await
        }
        Input::File { path, follow } if is_fifo(&path) => {
            // A FIFO is a stream, not a file to follow by name: read like
            // stdin, from a non-blocking open (no writer yet must not hang
            // the process). Following keeps a write end of our own open, so
            // writers may come and go until shutdown; without following,
            // the end is when the last writer closes it (at once if none
            // has it open).
            let fifo = tokio::net::unix::pipe::OpenOptions::new()
                .read_write(follow)
                .open_receiver(&path)
                .with_context(|| format!("opening FIFO {}", path.display()))?;
            let name = path.display().to_string();
            let max = config.max_line_bytes;
            read_stream(&mut pipeline, &mut pipe, fifo, &name, max, &shutdown).await
        }
        Input::File { path, follow } => {
            read_file(
                &mut pipeline,
                &mut pipe,
                path,
                follow,
                config.follow,
                &shutdown,
            )
            .await
        }
    };
    // Whatever happened, what was converted is written and counted.
    let finished = pipeline.finish().map_err(anyhow::Error::new);
    let written = pipe
        .finish(pipeline.output(), &shutdown, DRAIN_TIMEOUT)
        .await
        .context("writing to stdout");
    tracing::info!("{}", counters.summary());
    result?;
    finished?;
    if !written? {
        tracing::warn!("stdout took nothing more before the drain deadline; exiting");
    }
    Ok(ExitCode::SUCCESS)
}

/// The `--unparsed` file, whose errors name it (they surface from the
/// pipeline, which does not know the path, possibly through the follower).
/// The pipeline buffers, so this is unbuffered: every `write` reaches the
/// file, and what the pipeline counts is what the file took.
struct NamedWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl NamedWriter {
    fn named(&self, error: std::io::Error) -> std::io::Error {
        std::io::Error::new(
            error.kind(),
            format!("writing --unparsed file {}: {error}", self.path.display()),
        )
    }
}

impl Write for NamedWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.file.write(bytes).map_err(|error| self.named(error))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush().map_err(|error| self.named(error))
    }
}

/// Hands the converted lines to the writer: once a chunk is full, or
/// whenever `idle` (the input paused). Waits while the writer has no room
/// (reading stdin stops: memory stays bounded), unless a stop is asked for.
async fn hand_over(
    pipeline: &mut Pipeline,
    pipe: &mut OutputPipe,
    idle: bool,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    if !idle && pipeline.output().len() < CHUNK_BYTES {
        return Ok(());
    }
    pipeline.flush_unparsed()?;
    if !pipe.has_room() {
        tokio::select! {
            room = pipe.room() => room.context("writing to stdout")?,
            () = shutdown.requested() => return Ok(()),
        }
    }
    pipe.hand_over(pipeline.output())
        .context("writing to stdout")
}

/// Converts a stream (stdin, a FIFO) until it ends or shutdown.
async fn read_stream(
    pipeline: &mut Pipeline,
    pipe: &mut OutputPipe,
    mut input: impl tokio::io::AsyncRead + Unpin,
    name: &str,
    max_line_bytes: usize,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let mut splitter = LineSplitter::new(max_line_bytes, LongLines::Cut);
    let mut buffer = vec![0u8; READ_CHUNK_BYTES];
    let mut year_refresh = tokio::time::interval(Duration::from_secs(3600));
    tracing::debug!("reading {name}");
    loop {
        let deadline = pipeline.next_deadline();
        let read = tokio::select! {
            _ = shutdown.requested() => break,
            _ = year_refresh.tick() => {
                pipeline.refresh_year();
                continue;
            }
            _ = sleep_until(deadline) => {
                pipeline.tick(std::time::Instant::now())?;
                hand_over(pipeline, pipe, true, shutdown).await?;
                continue;
            }
            read = input.read(&mut buffer) => read.with_context(|| format!("reading {name}"))?,
        };
        let now = std::time::Instant::now();
        // Every line is taken (the pipeline's output is bounded by the
        // hand-over below, not by pausing the splitter).
        let mut push = |line: Line<'_>| {
            pipeline.push_line(line.bytes, line.truncated, now)?;
            Ok::<_, std::io::Error>(Flow::Continue)
        };
        if read == 0 {
            splitter.finish(push)?;
            break;
        }
        splitter
            .feed(&buffer[..read], &mut push)
            .map_err(|refused| refused.error)?;
        // Bytes read one at a time from a terminal would otherwise wait for
        // a full chunk: write whenever a read came back short (input is idle).
        hand_over(pipeline, pipe, read < buffer.len(), shutdown).await?;
    }
    Ok(())
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Feeds the follower's lines to the pipeline, and its output to the pipe.
struct FollowSink<'p> {
    pipeline: &'p mut Pipeline,
    pipe: &'p mut OutputPipe,
}

impl follow::Sink for FollowSink<'_> {
    fn event(&mut self, event: Event<'_>) -> std::io::Result<Flow> {
        match event {
            Event::Line {
                line, truncated, ..
            } => {
                self.pipeline
                    .push_line(line, truncated, std::time::Instant::now())?;
                return self.pipe.offer(self.pipeline.output());
            }
            Event::Notice {
                path,
                kind: follow::NoticeKind::Unreadable(failure),
            } => tracing::warn!("cannot read {}: {failure}", path.display()),
            Event::Notice { path, kind } => {
                tracing::info!(path = %path.display(), ?kind, "file changed");
            }
        }
        Ok(Flow::Continue)
    }

    fn idle(&mut self) -> std::io::Result<()> {
        self.pipeline.tick(std::time::Instant::now())?;
        self.pipeline.flush_unparsed()?;
        self.pipe.hand_over(self.pipeline.output())
    }

    async fn ready(&mut self) -> std::io::Result<()> {
        self.pipe.ready_for(self.pipeline.output()).await
    }
}

async fn read_file(
    pipeline: &mut Pipeline,
    pipe: &mut OutputPipe,
    path: PathBuf,
    follow: bool,
    options: FollowOptions,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let mut follower = Follower::new(options);
    follower.add_path(path.clone(), StartAt::Beginning);
    let mut sink = FollowSink { pipeline, pipe };
    let result = if follow {
        tokio::select! {
            following = follow::run(&mut follower, &mut sink, shutdown, DRAIN_TIMEOUT) => following,
            // Nobody reads what we would write: stop; the final write of
            // what is buffered then fails with EPIPE, a clean exit.
            () = sidecar_common::gone::stdout_closed() => {
                tracing::debug!("stdout was closed; stopping");
                Ok(())
            }
        }
    } else {
        read_to_end(&mut follower, &mut sink, shutdown).await
    };
    result.with_context(|| format!("reading {}", path.display()))
}

fn is_fifo(path: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|meta| meta.file_type().is_fifo())
}

/// Refuses, as `reader` does, what cannot be read: a directory, a file that
/// cannot be opened (permission, a path through a regular file). A file that
/// does not exist yet (nor its directory) is waited for when following.
fn check_readable(path: &std::path::Path, follow: bool) -> anyhow::Result<()> {
    // Metadata first: opening a FIFO would block until a writer comes.
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => bail!("cannot read {}: is a directory", path.display()),
        Ok(meta) if !meta.is_file() => return Ok(()),
        _ => {}
    }
    match std::fs::File::open(path) {
        Ok(_) => Ok(()),
        // Waited for like `reader` and GNU `tail -F`, even when its directory
        // is missing too (an emptyDir subdirectory created later).
        Err(error) if follow && error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            bail!("reading {}: no such file", path.display())
        }
        Err(error) => {
            Err(error).with_context(|| format!("cannot open {} for reading", path.display()))
        }
    }
}

/// `--no-follow`: polls until the file is read to its end, then hands over
/// a last line without newline.
async fn read_to_end(
    follower: &mut Follower,
    sink: &mut FollowSink<'_>,
    shutdown: &Shutdown,
) -> std::io::Result<()> {
    use follow::Sink as _;
    while !shutdown.is_requested() {
        match follower.poll_once(&mut |event| sink.event(event))? {
            PollOutcome::Idle => break,
            PollOutcome::Busy => tokio::task::yield_now().await,
            PollOutcome::Paused => tokio::select! {
                ready = sink.ready() => ready?,
                () = shutdown.requested() => break,
            },
        }
    }
    follower.finish(&mut |event| sink.event(event))?;
    sink.idle()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> anyhow::Result<Config> {
        let mut argv = vec!["adapter"];
        argv.extend_from_slice(args);
        parse_args(argv)?.into_config()
    }

    #[test]
    fn flags_that_do_not_fit_together_are_refused_with_a_reason() {
        let error = |args: &[&str]| format!("{:#}", config(args).unwrap_err());
        assert!(error(&["--from", "regex"]).contains("--from regex needs --pattern"));
        assert!(error(&["--from", "regex", "--pattern", "(?<x>"]).contains("bad --pattern"));
        assert!(error(&["--from", "json", "--pattern", "x"]).contains("only for --from regex"));
        assert!(error(&["--to", "template"]).contains("needs --template"));
        assert!(error(&["--add", "novalue"]).contains("expected KEY=VALUE"));
        assert!(error(&["--unparsed", "x", "--on-error", "drop"]).contains("choose one"));
        assert!(error(&["--multiline-start", "("]).contains("bad --multiline-start"));
    }

    #[test]
    fn the_labs_command_line_reads_the_writers_file() {
        let lab = config(&["--from", "writer", "/data/log.txt"]).unwrap();
        assert_eq!(
            lab.input,
            Input::File {
                path: "/data/log.txt".into(),
                follow: true
            }
        );
        assert_eq!(lab.parser.name(), FormatName::Writer);
        assert_eq!(config(&["-"]).unwrap().input, Input::Stdin);
    }

    #[test]
    fn every_follow_flag_keeps_its_adapter_environment_variable() {
        use clap::CommandFactory;
        let command = Args::adjust(Args::command());
        assert_eq!(
            sidecar_common::pipeline::follow_args::FollowArgs::env_mismatches(&command, "ADAPTER_"),
            []
        );
    }
}
