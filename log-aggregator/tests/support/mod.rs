//! What the process tests that count lines share: our binary, the
//! workspace's `writer` (numbered load, `writer verify`) and the saved
//! positions. Each test binary uses a part of it.
#![allow(dead_code)]

pub mod certs;
pub mod rsyslog;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// `log-aggregator --follow`, with no sources from the environment.
pub fn aggregator() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_log-aggregator"));
    command.env_remove("LOG_AGGREGATOR_SOURCES");
    command.arg("--follow");
    command
}

/// The workspace's `writer` binary, next to ours. `cargo test -p
/// log-aggregator` does not build other packages' binaries, so it is built
/// (or found up to date) once per test run.
pub fn writer() -> Command {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    let path = PATH.get_or_init(|| {
        let ours = Path::new(env!("CARGO_BIN_EXE_log-aggregator"));
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "--quiet", "-p", "writer"]);
        if ours.parent().is_some_and(|dir| dir.ends_with("release")) {
            build.arg("--release");
        }
        let status = build.status().expect("running cargo build -p writer");
        assert!(status.success(), "cargo build -p writer failed");
        ours.with_file_name("writer")
    });
    let mut command = Command::new(path);
    command.env_remove("WRITER_TARGETS");
    command
}

/// `writer verify --expect count` over `captured`: (lost, duplicated, report).
pub fn verify(captured: &Path, count: u64) -> (u64, u64, String) {
    let output = writer()
        .args(["verify", "--report", "json", "--expect"])
        .arg(count.to_string())
        .arg(captured)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("writer verify: {error}: {output:?}"));
    let target = &report["targets"][0];
    (
        target["lost"].as_u64().unwrap(),
        target["duplicated"].as_u64().unwrap(),
        report.to_string(),
    )
}

/// The saved offset of the one file followed.
pub fn checkpoint_offset(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("checkpoints.json")).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["files"][0]["offset"].as_u64()
}
