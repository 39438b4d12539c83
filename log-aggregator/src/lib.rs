//! `log-aggregator`: the lab's log sidecar, and a production log streamer.
//!
//! Two modes over one command line:
//! - snapshot (default, [`snapshot`]): every interval, the last N lines of
//!   each file under a `=== TITLE ===` header, then `---`: the lab's busybox
//!   loop, byte for byte;
//! - stream (`--follow`): every line of every matching file, once, in order.
//!
//! This file owns the flags ([`Args`]), their mapping to a plain [`Config`],
//! and [`run`]; the logic only ever sees the config.

pub mod snapshot;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::Parser;
use sidecar_common::cli::{LogArgs, Tool};
use sidecar_common::shutdown::Shutdown;
use sidecar_common::units::parse_duration;

pub use snapshot::{SnapshotConfig, Source};

const EXAMPLES: &str = "\
Examples:
  # The lab's sidecar: every 10 s, the last 5 lines of each log under a header
  log-aggregator --interval 10s --lines 5 'Application Logs=/var/log/app.log' 'Error Logs=/var/log/error.log'

  # The same, configured through the environment
  LOG_AGGREGATOR_SOURCES='App=/var/log/app.log,Errors=/var/log/error.log' log-aggregator
";

/// Shows the last lines of log files every interval, like the lab's sidecar loop.
#[derive(Parser, Debug)]
#[command(name = "log-aggregator", version, about, after_help = EXAMPLES)]
pub struct Args {
    /// Time between two snapshots (after one is printed, like the script's `sleep`).
    #[arg(long, env = "LOG_AGGREGATOR_INTERVAL", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,

    /// How many lines of each file a snapshot shows (`tail -n`).
    #[arg(
        long,
        env = "LOG_AGGREGATOR_LINES",
        default_value_t = 5,
        value_name = "N"
    )]
    pub lines: u64,

    /// Files to show, in order: `TITLE=PATH` (header `=== TITLE ===`) or
    /// `PATH` (the path is the title). The title ends at the first `=`.
    /// In the environment: comma-separated.
    #[arg(
        env = "LOG_AGGREGATOR_SOURCES",
        value_delimiter = ',',
        required = true,
        value_name = "SOURCE"
    )]
    pub sources: Vec<String>,

    #[command(flatten)]
    pub log: LogArgs,
}

impl Tool for Args {
    fn logging(&self) -> &LogArgs {
        &self.log
    }
}

/// What to run, as plain values.
#[derive(Clone, Debug)]
pub enum Config {
    /// The lab's loop: see [`snapshot`].
    Snapshot(SnapshotConfig),
}

impl Args {
    /// Checks the flags together and turns them into a [`Config`].
    pub fn into_config(self) -> anyhow::Result<Config> {
        if self.interval.is_zero() {
            bail!("--interval must be more than zero (a zero interval would print in a busy loop)");
        }
        let sources = self
            .sources
            .iter()
            .map(|text| Source::parse(text).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Config::Snapshot(SnapshotConfig {
            interval: self.interval,
            lines: self.lines,
            sources,
        }))
    }
}

/// Runs the configured mode until shutdown (SIGTERM/SIGINT).
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    match config {
        Config::Snapshot(config) => snapshot::run(config, shutdown).await,
    }
}
