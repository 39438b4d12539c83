//! The follow flags, one definition for every binary that follows files
//! (`reader`, `log-aggregator --follow`, `adapter FILE`), flattened into
//! each binary's `Args` (`#[command(flatten)]`), with one validation
//! ([`FollowArgs::options`]).
//!
//! Environment variables stay per binary (`READER_POLL_INTERVAL`,
//! `LOG_AGGREGATOR_POLL_INTERVAL`, `ADAPTER_POLL_INTERVAL`...): a derive
//! attribute can only name one, so each binary's [`crate::cli::Tool::adjust`]
//! calls [`FollowArgs::with_env`] with its prefix, which sets them on the
//! built `clap::Command`.

use std::time::Duration;

use crate::follow::{FollowOptions, LongLines, default_max_open_files};
use crate::units::{parse_duration, parse_nonzero_bytes};

/// Follow flags that do not fit together.
#[derive(Debug, thiserror::Error)]
pub enum FollowArgsError {
    #[error("--poll-interval must be more than zero")]
    ZeroPollInterval,
}

/// The flags of [`FollowOptions`]; see the module documentation.
#[derive(clap::Args, Clone, Debug)]
pub struct FollowArgs {
    /// Never use inotify: look for changes every --poll-interval only.
    #[arg(long)]
    pub poll: bool,

    /// The tick: how often the follower wakes without an event. With
    /// --poll every tick re-checks every file. With inotify, ticks serve
    /// what waits on the clock (a rotated file's --rotate-wait, a missing
    /// file, a multiline timeout, a checkpoint to save); with nothing
    /// waiting, an idle follower wakes only for its safety net: a re-check
    /// of every file once a minute (every tick while it finds writes no
    /// event announced), since events are only hints.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub poll_interval: Duration,

    /// The most of one line held in memory (at least 1). Where bytes pass
    /// through (reader; log-aggregator --output plain, prefixed) a longer
    /// line is handed over in pieces of this size, never cut; where a
    /// record must be whole (JSON, --parse, multiline, adapter) it is cut
    /// here, flagged and counted.
    #[arg(long, default_value = "64KiB", value_parser = parse_nonzero_bytes, value_name = "BYTES")]
    pub max_line_bytes: u64,

    /// How long a file rotated away by rename is still read for late writes.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub rotate_wait: Duration,

    /// Minimum time between two polls woken by inotify events: a writer's
    /// line-by-line appends cost one poll per gap, not one per write (0 =
    /// poll on every event).
    #[arg(long, default_value = "10ms", value_parser = parse_duration, value_name = "DURATION")]
    pub event_coalesce: Duration,

    /// At most N files open at once (default: `ulimit -n` minus 64, kept for
    /// /metrics, checkpoints and stdout). Beyond it, files read to their end
    /// are closed and opened again when they change, so every file is read
    /// in turn.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_open_files: Option<u64>,
}

/// Each flag's id and the suffix of its environment variable.
pub const FLAGS: [(&str, &str); 6] = [
    ("poll", "POLL"),
    ("poll_interval", "POLL_INTERVAL"),
    ("max_line_bytes", "MAX_LINE_BYTES"),
    ("rotate_wait", "ROTATE_WAIT"),
    ("event_coalesce", "EVENT_COALESCE"),
    ("max_open_files", "MAX_OPEN_FILES"),
];

impl FollowArgs {
    /// Names each flag's environment variable `PREFIX` + suffix
    /// (`READER_` → `READER_POLL_INTERVAL`) on a binary's command.
    pub fn with_env(command: clap::Command, prefix: &str) -> clap::Command {
        FLAGS.iter().fold(command, |command, (id, suffix)| {
            // clap takes `'static` names without its `string` feature; a
            // handful of short strings, made once per process.
            let name: &'static str = Box::leak(format!("{prefix}{suffix}").into_boxed_str());
            command.mut_arg(*id, |arg| arg.env(name))
        })
    }

    /// The follow flags of `command` whose environment variable is not
    /// `PREFIX` + suffix, as `(flag id, its variable)`: empty when
    /// [`FollowArgs::with_env`] named them all (each binary's test).
    pub fn env_mismatches(
        command: &clap::Command,
        prefix: &str,
    ) -> Vec<(&'static str, Option<String>)> {
        FLAGS
            .iter()
            .filter_map(|(id, suffix)| {
                let env = command
                    .get_arguments()
                    .find(|arg| arg.get_id() == id)
                    .and_then(|arg| arg.get_env())
                    .map(|name| name.to_string_lossy().into_owned());
                (env.as_deref() != Some(format!("{prefix}{suffix}").as_str())).then_some((*id, env))
            })
            .collect()
    }

    /// The one validation, and the mapping to the follower's options.
    /// `long_lines`: what this output does with long lines (split or in
    /// runs where it passes bytes through).
    pub fn options(&self, long_lines: LongLines) -> Result<FollowOptions, FollowArgsError> {
        if self.poll_interval.is_zero() {
            return Err(FollowArgsError::ZeroPollInterval);
        }
        Ok(FollowOptions {
            max_line_bytes: self.max_line_bytes(),
            long_lines,
            poll_interval: self.poll_interval,
            force_poll: self.poll,
            rotate_wait: self.rotate_wait,
            event_coalesce: self.event_coalesce,
            max_open_files: self
                .max_open_files
                .map_or_else(default_max_open_files, |n| {
                    usize::try_from(n).unwrap_or(usize::MAX)
                }),
            ..FollowOptions::default()
        })
    }

    /// `--max-line-bytes` as a size (at least 1, as the value parser holds it).
    pub fn max_line_bytes(&self) -> usize {
        usize::try_from(self.max_line_bytes)
            .unwrap_or(usize::MAX)
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(Parser, Debug)]
    struct Args {
        #[command(flatten)]
        follow: FollowArgs,
    }

    fn parse(prefix: &str, args: &[&str]) -> Result<FollowArgs, clap::Error> {
        let command = FollowArgs::with_env(Args::command(), prefix);
        let matches =
            command.try_get_matches_from(std::iter::once("x").chain(args.iter().copied()))?;
        Args::from_arg_matches(&matches).map(|args| args.follow)
    }

    #[test]
    fn every_flag_has_an_environment_variable_under_the_binarys_prefix() {
        let command = FollowArgs::with_env(Args::command(), "READER_");
        assert_eq!(FollowArgs::env_mismatches(&command, "READER_"), []);
        let other = FollowArgs::env_mismatches(&command, "ADAPTER_");
        assert_eq!(other.len(), FLAGS.len());
        assert_eq!(other[0], ("poll", Some("READER_POLL".to_owned())));
        let bare = FollowArgs::env_mismatches(&Args::command(), "READER_");
        assert!(bare.iter().all(|(_, env)| env.is_none()), "{bare:?}");
    }

    #[test]
    fn zero_sizes_and_intervals_are_refused() {
        let error = parse("T_", &["--max-line-bytes", "0"]).unwrap_err();
        assert!(error.to_string().contains("at least 1 byte"), "{error}");
        let zero = parse("T_", &["--poll-interval", "0s"]).unwrap();
        assert_eq!(
            zero.options(LongLines::Cut).unwrap_err().to_string(),
            "--poll-interval must be more than zero"
        );
        let options = parse("T_", &["--max-open-files", "3", "--rotate-wait", "1s"])
            .unwrap()
            .options(LongLines::Split)
            .unwrap();
        assert_eq!(
            (
                options.max_open_files,
                options.rotate_wait,
                options.long_lines
            ),
            (3, Duration::from_secs(1), LongLines::Split)
        );
        assert!(parse("T_", &["--max-open-files", "0"]).is_err());
    }
}
