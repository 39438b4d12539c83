//! `reader`: the lab's `tail -f /data/log.txt`, done like GNU `tail -F`.
//!
//! Prints the last lines of each file (or from line N), then follows each
//! file by name with [`sidecar_common::follow`]: a missing file is waited for,
//! a file replaced by rename or delete + create is read from its start, a
//! file truncated in place is read again from its start, and nothing is lost
//! or printed twice across those. Several files get GNU's `==> FILE <==`
//! headers when the output switches between them. Notices (replaced,
//! truncated, appeared) go to stderr; stdout carries only the files' bytes,
//! lines of any length unchanged. It ends at a signal, once the `--pid`
//! process is gone (after printing what it wrote), or at once when the
//! reader of stdout goes away ([`sidecar_common::gone`]).
//!
//! This file owns the flags ([`Args`]), their mapping to a plain [`Config`],
//! and [`run`]; `initial` prints the first lines, `output` owns stdout.

mod initial;
mod output;

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sidecar_common::cli::{LogArgs, Tool};
use sidecar_common::follow::{
    self, FollowOptions, Follower, LongLines, PollOutcome, Sink, StartAt,
};
use sidecar_common::gone;
use sidecar_common::pipeline::follow_args::FollowArgs;
use sidecar_common::pipeline::output::{OutputPipe, stdout};
use sidecar_common::shutdown::Shutdown;

use crate::initial::Printed;
use crate::output::Output;

/// On SIGTERM, how long we may spend reading what is left, and then how
/// long stdout may take what was read: the process must be gone within a
/// second, even when nobody reads stdout.
pub const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);

const EXAMPLES: &str = "\
Examples:
  # The lab's reader container: last 10 lines, then follow (waits for the file)
  reader /data/log.txt

  # The last 3 lines, or everything from line 2
  reader -n 3 /data/log.txt
  reader -n +2 /data/log.txt

  # Print the last 5 lines and exit, like `tail -n 5`
  reader --no-follow -n 5 /var/log/app.log

  # Two files, with `==> FILE <==` headers when the output switches
  reader /var/log/app.log /var/log/error.log

  # Where inotify is not available or not trusted (some network filesystems)
  reader --poll --poll-interval 500ms /shared/data.txt

  # End with the application: exit once process 4242 is gone and its last
  # lines are printed
  reader --pid 4242 /var/log/app.log

Files in READER_FILES are separated by newlines.
";

/// Prints the last lines of files, then follows them by name like `tail -F`.
#[derive(Parser, Debug)]
#[command(name = "reader", version, about, after_help = EXAMPLES)]
pub struct Args {
    /// Files to print and follow; each may not exist yet.
    #[arg(
        required = true,
        env = "READER_FILES",
        value_delimiter = '\n',
        value_name = "FILE"
    )]
    pub files: Vec<PathBuf>,

    /// Print the last N lines, or with `+N` everything from line N on.
    #[arg(
        short = 'n',
        long,
        env = "READER_LINES",
        default_value = "10",
        value_name = "N|+N",
        allow_hyphen_values = true
    )]
    pub lines: Lines,

    /// Print the lines and exit instead of following.
    #[arg(long, env = "READER_NO_FOLLOW")]
    pub no_follow: bool,

    /// Follow by name, the default (`-f` too): accepted so a `tail -F` or
    /// `tail -f` command line works unchanged.
    #[arg(
        short = 'F',
        short_alias = 'f',
        env = "READER_FOLLOW_NAME",
        conflicts_with = "no_follow"
    )]
    pub follow_name: bool,

    // Lines are never cut, like GNU tail: with --max-line-bytes, a longer
    // line is printed in pieces as it is read.
    #[command(flatten)]
    pub follow: FollowArgs,

    /// Never print `==> FILE <==` headers.
    #[arg(short, long, env = "READER_QUIET", conflicts_with = "verbose")]
    pub quiet: bool,

    /// Always print `==> FILE <==` headers, even for one file.
    #[arg(short, long, env = "READER_VERBOSE")]
    pub verbose: bool,

    /// Exit once process PID has died (looked at every --poll-interval),
    /// after printing what the files hold then, like GNU `tail --pid`.
    #[arg(long, env = "READER_PID", value_name = "PID")]
    pub pid: Option<u32>,

    #[command(flatten)]
    pub log: LogArgs,
}

impl Tool for Args {
    fn logging(&self) -> &LogArgs {
        &self.log
    }

    fn adjust(command: clap::Command) -> clap::Command {
        FollowArgs::with_env(command, "READER_")
    }
}

/// Which lines are printed before following.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lines {
    /// The last N lines (`-n N`).
    Last(u64),
    /// From line N on, counting from 1 (`-n +N`).
    From(u64),
}

impl FromStr for Lines {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad =
            || format!("expected a number of lines (`10`) or a first line (`+2`), got {text:?}");
        if let Some(from) = text.strip_prefix('+') {
            from.parse().map(Lines::From).map_err(|_| bad())
        } else {
            text.strip_prefix('-')
                .unwrap_or(text)
                .parse()
                .map(Lines::Last)
                .map_err(|_| bad())
        }
    }
}

/// What `run` needs, free of clap.
#[derive(Clone, Debug)]
pub struct Config {
    pub files: Vec<PathBuf>,
    pub lines: Lines,
    pub follow: bool,
    pub headers: bool,
    /// `--pid`: stop following once this process is gone.
    pub pid: Option<u32>,
    pub follow_options: FollowOptions,
}

impl Args {
    pub fn into_config(self) -> anyhow::Result<Config> {
        // tail passes bytes through: a long line is written in pieces,
        // never cut, and the whole lines of a read go out at once.
        let follow_options = self.follow.options(LongLines::Runs)?;
        if self.pid.is_some() && self.no_follow {
            // GNU tail's words for the same flags.
            tracing::warn!("PID ignored; --pid=PID is useful only when following");
        }
        Ok(Config {
            headers: !self.quiet && (self.verbose || self.files.len() > 1),
            files: self.files,
            lines: self.lines,
            follow: !self.no_follow,
            pid: self.pid,
            follow_options,
        })
    }
}

/// Prints the first lines, then follows until `shutdown`, until the
/// `--pid` process is gone (and its last lines are printed), or until the
/// reader of stdout goes away.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    // Watched from the start: `reader FILE | head -1` must end even if the
    // file stays quiet after the line `head` wanted.
    let stdout_closed = gone::stdout_closed();
    let pipe = stdout()
        .and_then(OutputPipe::spawn)
        .context("starting the stdout writer")?;
    let mut output = Output::new(pipe, config.headers);
    let mut follower = Follower::new(config.follow_options.clone());
    for path in &config.files {
        match initial::print(path, &config, &mut output, &shutdown).await? {
            // The file we printed from is followed from where we stopped.
            Printed::At(file, offset) => follower
                .add_file(path.clone(), file, offset)
                .with_context(|| format!("reading {}", path.display()))?,
            // Missing: waited for, and read from its start.
            Printed::Missing => follower.add_path(path.clone(), StartAt::Beginning),
            // A FIFO was read to its end: a stream has no name to follow.
            Printed::Stream => {}
        }
    }
    if !config.follow {
        drain(&mut output, &shutdown).await?;
        return Ok(ExitCode::SUCCESS);
    }
    // Following stops at a signal or when the --pid process is gone.
    let stop = Shutdown::new();
    let writer_gone = {
        let (stop, shutdown, pid) = (stop.clone(), shutdown.clone(), config.pid);
        let interval = config.follow_options.poll_interval;
        tokio::spawn(async move {
            let gone = tokio::select! {
                () = shutdown.requested() => false,
                () = writer_exited(pid, interval) => true,
            };
            stop.trigger();
            gone
        })
    };
    let following = async {
        follow::run(&mut follower, &mut output, &stop, DRAIN_TIMEOUT).await?;
        if matches!(writer_gone.await, Ok(true)) {
            // Not a signal: there is no hurry, so what the writer left is
            // printed in full, not just what the drain deadline allowed.
            read_to_end(&mut follower, &mut output, &shutdown).await?;
        }
        io::Result::Ok(())
    };
    tokio::select! {
        following = following => following.context("following")?,
        () = stdout_closed => {
            // Nobody reads what we would print: a clean end, like EPIPE.
            tracing::debug!("stdout was closed; exiting");
            return Ok(ExitCode::SUCCESS);
        }
    }
    // What the follower handed over is written, unless stdout stays full
    // past the deadline (the process must still end promptly).
    drain(&mut output, &shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// Writes out what is buffered: without a limit while nothing asks us to
/// stop (`--no-follow`, `--pid`), within [`DRAIN_TIMEOUT`] after a signal.
async fn drain(output: &mut Output, shutdown: &Shutdown) -> anyhow::Result<()> {
    let written = output
        .finish(shutdown, DRAIN_TIMEOUT)
        .await
        .context("writing to stdout")?;
    if !written {
        tracing::warn!("stdout took nothing more before the drain deadline; exiting");
    }
    Ok(())
}

/// Completes when the `--pid` process is gone; never without one.
async fn writer_exited(pid: Option<u32>, interval: Duration) {
    match pid {
        Some(pid) => gone::process_exited(pid, interval).await,
        None => std::future::pending().await,
    }
}

/// Reads every file to its end and prints incomplete last lines, unless a
/// signal comes first.
async fn read_to_end(
    follower: &mut Follower,
    output: &mut Output,
    shutdown: &Shutdown,
) -> io::Result<()> {
    while !shutdown.is_requested() {
        match follower.poll_once(&mut |event| output.event(event))? {
            PollOutcome::Idle => break,
            PollOutcome::Busy => tokio::task::yield_now().await,
            PollOutcome::Paused => tokio::select! {
                ready = output.wait_for_room() => ready?,
                () = shutdown.requested() => break,
            },
        }
    }
    follower.finish(&mut |event| output.event(event))?;
    output.idle()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_a_count_or_a_first_line() {
        assert_eq!("10".parse(), Ok(Lines::Last(10)));
        assert_eq!("-3".parse(), Ok(Lines::Last(3)));
        assert_eq!("+2".parse(), Ok(Lines::From(2)));
        assert!("ten".parse::<Lines>().unwrap_err().contains("ten"));
    }

    #[test]
    fn headers_only_for_several_files_unless_asked() {
        let config = |args: &[&str]| {
            Args::try_parse_adjusted(["reader"].iter().chain(args))
                .unwrap()
                .into_config()
                .unwrap()
        };
        assert!(!config(&["a"]).headers);
        assert!(config(&["a", "b"]).headers);
        assert!(config(&["-v", "a"]).headers);
        assert!(!config(&["-q", "a", "b"]).headers);
    }

    #[test]
    fn every_follow_flag_keeps_its_reader_environment_variable() {
        use clap::CommandFactory;
        let command = Args::adjust(Args::command());
        assert_eq!(
            sidecar_common::pipeline::follow_args::FollowArgs::env_mismatches(&command, "READER_"),
            []
        );
    }
}
