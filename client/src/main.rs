//! `client`: see the library documentation (`client/src/lib.rs`).

use std::process::ExitCode;

use client::{Args, Config, run};

fn main() -> ExitCode {
    sidecar_common::cli::main::<Args, _, _>("client", |args, shutdown| async move {
        let config = match Config::from_args(args) {
            Ok(config) => config,
            // A malformed URL exits 3 as in curl; the rest of bad input 1.
            Err(error) => match client::input_exit_code(&error) {
                Some(code) if code != 1 => {
                    eprintln!("client: error: {error:#}");
                    return Ok(ExitCode::from(code));
                }
                _ => return Err(error),
            },
        };
        run(config, shutdown).await
    })
}
