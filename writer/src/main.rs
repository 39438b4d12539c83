//! `writer`: see the library (`src/lib.rs`) for what it does.

use std::process::ExitCode;

use sidecar_common::cli;
use writer::Args;

fn main() -> ExitCode {
    cli::main::<Args, _, _>("writer", |args, shutdown| async move {
        let config = args.into_config()?;
        writer::run(config, shutdown).await
    })
}
