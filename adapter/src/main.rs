//! `adapter`: see the library (`src/lib.rs`) for what it does.

use std::process::ExitCode;

use adapter::Args;
use sidecar_common::cli;

fn main() -> ExitCode {
    cli::main::<Args, _, _>("adapter", |args, shutdown| async move {
        let config = args.into_config()?;
        adapter::run(config, shutdown).await
    })
}
