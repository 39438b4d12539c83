//! Many files through the real binary: more files than descriptors (a low
//! `ulimit -n`), every line once, the metrics listener and checkpoint saves
//! still working; the series of files that are gone expire.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::Command;

use testkit::{Running, eventually, spawn};

/// The aggregator under `ulimit -n LIMIT`: the limit is set by the shell,
/// which then execs the binary; the arguments are the shell's positional
/// parameters, never spliced into its script.
fn aggregator_with_nofile(limit: u32, args: &[String]) -> Command {
    let mut command = Command::new("sh");
    command
        .env_remove("LOG_AGGREGATOR_SOURCES")
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_log-aggregator"))
        .args(args);
    command
}

fn metrics_address(running: &Running) -> String {
    let stderr = running.wait_for_stderr_containing("/metrics");
    let start = stderr.find("http://").unwrap() + "http://".len();
    let end = start + stderr[start..].find("/metrics").unwrap();
    stderr[start..end].to_owned()
}

fn get(address: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn more_files_than_ulimit_allows_are_read_in_turn_every_line_once() {
    const FILES: usize = 600;
    const LINES: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let checkpoints = dir.path().join("checkpoints");
    std::fs::create_dir(&logs).unwrap();
    for file in 0..FILES {
        let text: String = (0..LINES)
            .map(|line| format!("f{file}-l{line}\n"))
            .collect();
        std::fs::write(logs.join(format!("{file:03}.log")), text).unwrap();
    }
    let args = [
        "--follow".to_owned(),
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--poll-interval".to_owned(),
        "100ms".to_owned(),
        "--checkpoint-interval".to_owned(),
        "200ms".to_owned(),
        "--checkpoint-dir".to_owned(),
        checkpoints.display().to_string(),
        format!("{}/*.log", logs.display()),
    ];
    let running = spawn(aggregator_with_nofile(256, &args));
    let address = metrics_address(&running);
    running.wait_for_stdout("every line", |out| out.lines().count() >= FILES * LINES);
    assert!(get(&address, "/healthz").starts_with("HTTP/1.1 200"));
    eventually("files closed while idle, none waiting", || {
        let metrics = get(&address, "/metrics");
        metrics.contains("log_aggregator_files_waiting 0\n")
            && !metrics.contains("log_aggregator_files_closed_idle 0\n")
    });
    // A checkpoint saved after every line was read holds all 600 files.
    eventually("a checkpoint with every file", || {
        std::fs::read_dir(&checkpoints)
            .unwrap()
            .filter_map(Result::ok)
            .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
            .any(|text| text.matches("\"offset\"").count() >= FILES)
    });
    let (status, _, output) = running.terminate();
    assert!(status.success());
    let stderr = &output.stderr;
    assert!(!stderr.contains("os error 24"), "{stderr}");
    assert!(
        stderr.contains("more files than may be open at once"),
        "{stderr}"
    );
    let stdout = &output.stdout;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for line in stdout.lines() {
        *counts.entry(line).or_default() += 1;
    }
    assert_eq!(counts.len(), FILES * LINES);
    assert!(counts.values().all(|count| *count == 1));
}

#[test]
fn series_of_deleted_files_expire() {
    let dir = tempfile::tempdir().unwrap();
    for file in 0..5 {
        // Different bytes: a file holding the same bytes as another is a copy.
        std::fs::write(
            dir.path().join(format!("{file}.log")),
            format!("line {file}\n"),
        )
        .unwrap();
    }
    let args = [
        "--follow".to_owned(),
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--poll-interval".to_owned(),
        "50ms".to_owned(),
        "--rotate-wait".to_owned(),
        "0s".to_owned(),
        format!("{}/*.log", dir.path().display()),
    ];
    let running = spawn(aggregator_with_nofile(1024, &args));
    let address = metrics_address(&running);
    let series = |address: &str| {
        get(address, "/metrics")
            .lines()
            .filter(|line| line.starts_with("log_aggregator_lines_total{"))
            .count()
    };
    eventually("a series per file", || series(&address) == 5);
    for file in 1..5 {
        std::fs::remove_file(dir.path().join(format!("{file}.log"))).unwrap();
    }
    eventually("the deleted files' series gone", || series(&address) == 1);
    let (status, _, _) = running.terminate();
    assert!(status.success());
}
