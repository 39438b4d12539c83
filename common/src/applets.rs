//! A minimal `cat`, reached when a binary is started under the name `cat`.
//!
//! The lab checks the shared volume with `kubectl exec POD -c writer -- cat
//! /data/log.txt`. Our images are `FROM scratch` with one binary and no shell,
//! so each image carries a symlink `/bin/cat` to its own binary, and this
//! module answers when `argv[0]` ends in `cat`. One multi-call binary costs no
//! extra bytes, where a second static binary would cost hundreds of KiB.
//! Supported: files and `-` for stdin, concatenated in order; errors name the
//! file and go on to the next, exit 1 at the end, as coreutils does.

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
