//! `client`: see the library documentation (`client/src/lib.rs`).

use std::process::ExitCode;

use client::{Args, Config, run};

fn main() -> ExitCode {
    sidecar_common::cli::main::<Args, _, _>("client", |args, shutdown| async move {
        let config = Config::from_args(args)?;
        run(config, shutdown).await
    })
}
