//! `/readyz` and the file error metric through the real binary, with real
//! HTTP requests to its metrics listener: not ready while a named path
//! cannot be read, ready again once it can, ready while a file does not
//! exist yet.

use std::io::{Read, Write};
use std::process::Command;

use testkit::{Running, append, eventually, spawn};

fn aggregator() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_log-aggregator"));
    command.env_remove("LOG_AGGREGATOR_SOURCES");
    command.args(["--follow", "--listen", "127.0.0.1:0"]);
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

fn status(address: &str, path: &str) -> u16 {
    get(address, path)[9..12].parse().unwrap()
}

#[test]
fn not_ready_while_a_named_path_cannot_be_read_and_the_errors_are_counted() {
    // Tests run as root, so no permission to deny: a directory where a
    // file is expected, and a symbolic link loop (ELOOP, "other").
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    std::fs::create_dir(&path).unwrap();
    let looping = dir.path().join("loop.log");
    std::os::unix::fs::symlink(&looping, &looping).unwrap();
    let mut command = aggregator();
    command
        .args(["--poll-interval", "50ms"])
        .arg(&path)
        .arg(&looping);
    let running = spawn(command);
    let address = metrics_address(&running);
    eventually("both errors counted", || {
        let metrics = get(&address, "/metrics");
        metrics.contains("log_aggregator_file_errors_total{reason=\"is_a_directory\"} 1\n")
            && metrics.contains("log_aggregator_file_errors_total{reason=\"other\"} 1\n")
            && metrics.contains("log_aggregator_files_unreadable 2\n")
    });
    let metrics = get(&address, "/metrics");
    assert!(
        metrics.contains("log_aggregator_file_errors_total{reason=\"permission_denied\"} 0\n"),
        "every reason is there from the start: {metrics}"
    );
    assert_eq!(status(&address, "/readyz"), 503);
    assert_eq!(status(&address, "/healthz"), 200, "alive all the same");

    // One fixed: still not ready, the other is named too.
    std::fs::remove_dir(&path).unwrap();
    append(&path, "one\n");
    running.wait_for_stdout_containing("one\n");
    eventually("one unreadable path left", || {
        get(&address, "/metrics").contains("log_aggregator_files_unreadable 1\n")
    });
    assert_eq!(status(&address, "/readyz"), 503);

    // Both fixed: ready.
    std::fs::remove_file(&looping).unwrap();
    append(&looping, "two\n");
    running.wait_for_stdout_containing("two\n");
    eventually("ready", || status(&address, "/readyz") == 200);
    assert!(get(&address, "/metrics").contains("log_aggregator_files_unreadable 0\n"));
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);
    assert!(
        output.stderr.contains("not ready: cannot read"),
        "{}",
        output.stderr
    );
}

#[test]
fn ready_while_a_named_file_does_not_exist_yet() {
    // A sidecar starts before its application's first line; an unready
    // sidecar would take the whole pod out of its Service.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let mut command = aggregator();
    command.arg(&path);
    let running = spawn(command);
    let address = metrics_address(&running);
    eventually("ready", || status(&address, "/readyz") == 200);
    append(&path, "first\n");
    running.wait_for_stdout_containing("first\n");
    assert_eq!(status(&address, "/readyz"), 200);
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);
}

#[test]
fn a_named_path_that_turns_into_a_directory_again_is_unready_again() {
    // The follower reports an error once, until it changes: gone and back
    // as the same error is not reported again. Readiness looks itself.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    std::fs::create_dir(&path).unwrap();
    let mut command = aggregator();
    command.args(["--poll-interval", "50ms"]).arg(&path);
    let running = spawn(command);
    let address = metrics_address(&running);
    eventually("not ready: a directory", || {
        status(&address, "/readyz") == 503
    });
    std::fs::remove_dir(&path).unwrap();
    eventually("ready: missing is fine", || {
        status(&address, "/readyz") == 200
    });
    std::fs::create_dir(&path).unwrap();
    eventually("not ready again", || status(&address, "/readyz") == 503);
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);
}
