//! `reader`: see the library (`src/lib.rs`) for what it does.

use std::process::ExitCode;

use reader::Args;
use sidecar_common::cli;

fn main() -> ExitCode {
    cli::main::<Args, _, _>("reader", |args, shutdown| async move {
        let config = args.into_config()?;
        reader::run(config, shutdown).await
    })
}
