//! `log-aggregator`: see the library (`src/lib.rs`) for what it does.

use std::process::ExitCode;

use log_aggregator::Args;
use sidecar_common::cli;

fn main() -> ExitCode {
    cli::main::<Args, _, _>("log-aggregator", |args, shutdown| async move {
        let config = args.into_config()?;
        log_aggregator::run(config, shutdown).await
    })
}
