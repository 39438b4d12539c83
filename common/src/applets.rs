//! Minimal `cat` and `sleep`, reached when a binary is started under that name.
//!
//! The lab checks the shared volume with `kubectl exec POD -c writer -- cat
//! /data/log.txt`. Our images are `FROM scratch` with one binary and no shell,
//! so each image carries a symlink `/bin/cat` to its own binary, and this
//! module answers when `argv[0]` ends in `cat`. One multi-call binary costs no
//! extra bytes, where a second static binary would cost hundreds of KiB.
//! Supported: files and `-` for stdin, concatenated in order; errors name the
//! file and go on to the next, exit 1 at the end, as coreutils does.
//!
//! `sleep DURATION` stands in for the lab's `sleep 3600` containers. As PID 1
//! it would ignore SIGTERM without a handler, so it waits on the signals too
//! and exits 0 at once when asked to stop.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

/// Runs the applet named by `argv[0]`, if any, and returns its exit code.
pub fn dispatch_by_program_name() -> Option<ExitCode> {
    let mut args = std::env::args_os();
    let program = args.next()?;
    let name = Path::new(&program).file_name()?.to_str()?.to_owned();
    match name.as_str() {
        "cat" => Some(cat(args.map(Into::into).collect())),
        "sleep" => Some(sleep(
            args.map(|arg| arg.to_string_lossy().into_owned()).collect(),
        )),
        _ => None,
    }
}

/// Copies each file (`-` or none: stdin) to stdout.
pub fn cat(mut operands: Vec<std::path::PathBuf>) -> ExitCode {
    if operands.is_empty() {
        operands.push("-".into());
    }
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut failed = false;
    for operand in &operands {
        let copied = if operand.as_os_str() == "-" {
            io::copy(&mut io::stdin().lock(), &mut out)
        } else if operand.to_string_lossy().starts_with('-') {
            eprintln!("cat: unsupported option {}", operand.display());
            return ExitCode::from(2);
        } else {
            File::open(operand).and_then(|mut file| io::copy(&mut file, &mut out))
        };
        if let Err(error) = copied {
            if error.kind() == io::ErrorKind::BrokenPipe {
                return ExitCode::SUCCESS;
            }
            eprintln!("cat: {}: {}", operand.display(), describe(&error));
            failed = true;
        }
    }
    if out.flush().is_err() {
        failed = true;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The OS's message without Rust's ` (os error N)` suffix, as coreutils prints it.
fn describe(error: &io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error") {
        Some(end) => text[..end].to_owned(),
        None => text,
    }
}

/// Sleeps for the sum of the durations given (`sleep 3600`, `sleep 1m 30s`),
/// or until SIGTERM/SIGINT.
pub fn sleep(operands: Vec<String>) -> ExitCode {
    if operands.is_empty() {
        eprintln!("sleep: missing operand");
        return ExitCode::from(2);
    }
    let mut total = std::time::Duration::ZERO;
    for operand in &operands {
        match operand.as_str() {
            "infinity" | "inf" => total = std::time::Duration::MAX,
            text => match crate::units::parse_duration(text) {
                Ok(duration) => total = total.saturating_add(duration),
                Err(error) => {
                    eprintln!("sleep: {error}");
                    return ExitCode::from(2);
                }
            },
        }
    }
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("sleep: cannot start the runtime");
        return ExitCode::FAILURE;
    };
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut terminate), Ok(mut interrupt)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            eprintln!("sleep: cannot install signal handlers");
            return ExitCode::FAILURE;
        };
        // Duration::MAX overflows Instant arithmetic: cap at ~100 years.
        let capped = total.min(std::time::Duration::from_secs(100 * 365 * 86400));
        tokio::select! {
            _ = tokio::time::sleep(capped) => {},
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        ExitCode::SUCCESS
    })
}
