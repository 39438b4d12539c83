//! The `main` every binary shares, so each `main.rs` stays a few lines.
//!
//! Order of events: answer as `cat` when invoked under that name (see
//! [`crate::applets`]); parse flags (clap prints usage errors and exits 2);
//! start logging to stderr; start a single-threaded tokio runtime (the
//! sidecars are I/O bound and a second thread costs memory for nothing);
//! install the signal handlers; run. An error is printed once, as one line
//! `NAME: error: <context>: <cause>`, and exits 1; a broken stdout pipe
//! (`reader | head`) is a clean exit, like coreutils.

use std::future::Future;
use std::io;
use std::process::ExitCode;
use std::time::Duration;

use tracing::level_filters::LevelFilter;

use crate::shutdown::Shutdown;

/// Logging flags every binary flattens into its own `Args`.
#[derive(clap::Args, Clone, Debug)]
pub struct LogArgs {
    /// Diagnostics on stderr at this level and above: error, warn, info, debug, trace, off.
    #[arg(
        long,
        env = "LOG_LEVEL",
        default_value = "info",
        value_name = "LEVEL",
        global = true
    )]
    pub log_level: LevelFilter,
}

/// A binary's parsed flags: what the shared `main` needs to know of them.
pub trait Tool: clap::Parser {
    /// The logging flags flattened into the binary's `Args`.
    fn logging(&self) -> &LogArgs;

    /// Changes the built command before parsing: where a flattened flag
    /// set takes the binary's environment variable names
    /// ([`crate::pipeline::follow_args::FollowArgs::with_env`]).
    fn adjust(command: clap::Command) -> clap::Command {
        command
    }

    /// Parses `args` through [`Tool::adjust`]ed command (the binary's
    /// `main` and tests of its flags).
    fn try_parse_adjusted<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut command = Self::adjust(<Self as clap::CommandFactory>::command());
        let matches = command.try_get_matches_from_mut(args)?;
        <Self as clap::FromArgMatches>::from_arg_matches(&matches)
            .map_err(|error| error.format(&mut command))
    }
}

/// How long the runtime waits for blocking tasks (a stdin read, say) after
/// `run` returned: they cannot be cancelled, and must not hold up the exit.
const RUNTIME_SHUTDOWN_GRACE: Duration = Duration::from_millis(100);

/// Runs a binary: see the module documentation for the order of events.
pub fn main<A, F, Fut>(name: &str, run: F) -> ExitCode
where
    A: Tool,
    F: FnOnce(A, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<ExitCode>>,
{
    if let Some(code) = crate::applets::dispatch_by_program_name() {
        return code;
    }
    let args = A::try_parse_adjusted(std::env::args_os()).unwrap_or_else(|error| error.exit());
    init_logging(args.logging().log_level);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return report(
                name,
                anyhow::Error::new(error).context("starting the runtime"),
            );
        }
    };
    let outcome = runtime.block_on(async move {
        let shutdown = Shutdown::on_signals()
            .map_err(|error| anyhow::Error::new(error).context("installing signal handlers"))?;
        run(args, shutdown).await
    });
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_GRACE);
    match outcome {
        Ok(code) => code,
        Err(error) => report(name, error),
    }
}

/// Sends diagnostics to stderr at `level`, without colours unless stderr is a terminal.
pub fn init_logging(level: LevelFilter) {
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(io::stderr().is_terminal())
        .try_init();
}

fn report(name: &str, error: anyhow::Error) -> ExitCode {
    if is_broken_pipe(&error) {
        return ExitCode::SUCCESS;
    }
    eprintln!("{name}: error: {error:#}");
    ExitCode::FAILURE
}

/// Whether `error` was caused by writing to a closed pipe (`| head`): the
/// reader went away, which is a normal way for a filter to end.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io_error| io_error.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn broken_pipe_is_found_under_context() {
        let error = Err::<(), _>(io::Error::from(io::ErrorKind::BrokenPipe))
            .context("writing to stdout")
            .unwrap_err();
        assert!(is_broken_pipe(&error));
    }

    #[test]
    fn other_io_errors_are_not_broken_pipes() {
        let error = Err::<(), _>(io::Error::from(io::ErrorKind::PermissionDenied))
            .context("opening /data/log.txt")
            .unwrap_err();
        assert!(!is_broken_pipe(&error));
    }
}
