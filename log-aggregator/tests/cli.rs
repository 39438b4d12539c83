//! Snapshot mode through the real binary: the lab's layout, missing and odd
//! files, errors, signals.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use testkit::{append, spawn};

fn aggregator() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_log-aggregator"));
    command.env_remove("LOG_AGGREGATOR_SOURCES");
    command
}

/// The lab's two sources inside `dir`, as the pod passes them.
fn lab_sources(dir: &Path) -> [String; 2] {
    [
        format!("Application Logs={}", dir.join("app.log").display()),
        format!("Error Logs={}", dir.join("error.log").display()),
    ]
}

/// Runs one cycle (the first is printed at once) and stops the binary.
fn first_cycle(args: &[String]) -> String {
    let mut command = aggregator();
    command.args(["--interval", "1h"]).args(args);
    let running = spawn(command);
    running.wait_for_stdout("a whole cycle", |out| out.ends_with("---\n"));
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{status:?}\n{}", output.stderr);
    output.stdout
}

#[test]
fn lab_layout_last_five_lines_of_each_file_under_headers() {
    let dir = tempfile::tempdir().unwrap();
    let app: String = (1..=8).map(|i| format!("app {i}\n")).collect();
    std::fs::write(dir.path().join("app.log"), app).unwrap();
    std::fs::write(dir.path().join("error.log"), "err 1\nerr 2\n").unwrap();
    let mut args = vec!["--lines".to_owned(), "5".to_owned()];
    args.extend(lab_sources(dir.path()));
    assert_eq!(
        first_cycle(&args),
        "=== Application Logs ===\napp 4\napp 5\napp 6\napp 7\napp 8\n\
         === Error Logs ===\nerr 1\nerr 2\n---\n"
    );
}

#[test]
fn same_text_as_the_lab_busybox_loop() {
    // The real script, one iteration, under busybox sh when it is installed
    // (Debian's busybox-static); our text must be identical byte for byte,
    // including a last line without a newline running into the next header.
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        eprintln!("skipped: /bin/busybox not installed (apt-get install busybox-static)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let app: String = (1..=12).map(|i| format!("entry {i}\n")).collect();
    std::fs::write(dir.path().join("app.log"), app).unwrap();
    std::fs::write(dir.path().join("error.log"), "one\ntwo\nno newline").unwrap();
    let script = format!(
        r#"
        if [ -f {d}/app.log ]; then
          echo "=== Application Logs ==="
          tail -n 5 {d}/app.log
        fi
        if [ -f {d}/missing.log ]; then
          echo "=== Missing ==="
          tail -n 5 {d}/missing.log
        fi
        if [ -f {d}/error.log ]; then
          echo "=== Error Logs ==="
          tail -n 5 {d}/error.log
        fi
        echo "---"
        "#,
        d = dir.path().display()
    );
    let expected = Command::new(busybox)
        .args(["sh", "-c", &script])
        .output()
        .unwrap();
    let [app_source, error_source] = lab_sources(dir.path());
    let ours = first_cycle(&[
        "--lines".into(),
        "5".into(),
        app_source,
        format!("Missing={}", dir.path().join("missing.log").display()),
        error_source,
    ]);
    assert_eq!(ours, String::from_utf8(expected.stdout).unwrap());
}

#[test]
fn missing_files_are_skipped_and_a_cycle_still_ends_with_dashes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("error.log"), "boom\n").unwrap();
    let only_errors = first_cycle(&lab_sources(dir.path()));
    assert_eq!(only_errors, "=== Error Logs ===\nboom\n---\n");

    let empty = tempfile::tempdir().unwrap();
    assert_eq!(first_cycle(&lab_sources(empty.path())), "---\n");
}

#[test]
fn more_lines_asked_than_the_file_holds_shows_the_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.log");
    std::fs::write(&path, "only\ntwo\n").unwrap();
    let out = first_cycle(&[
        "--lines".into(),
        "100".into(),
        format!("Short={}", path.display()),
    ]);
    assert_eq!(out, "=== Short ===\nonly\ntwo\n---\n");
}

#[test]
fn last_line_without_newline_is_copied_as_is_like_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("partial.log");
    std::fs::write(&path, "a\nb\nc").unwrap();
    let out = first_cycle(&["--lines".into(), "2".into(), path.display().to_string()]);
    // The title defaults to the path; `tail` adds no newline, so `echo "---"` follows directly.
    assert_eq!(out, format!("=== {} ===\nb\nc---\n", path.display()));
}

#[test]
fn new_lines_show_up_in_the_next_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    std::fs::write(&path, "first\n").unwrap();
    let mut command = aggregator();
    command
        .args(["--interval", "50ms", "--lines", "1"])
        .arg(format!("App={}", path.display()));
    let running = spawn(command);
    running.wait_for_stdout_containing("=== App ===\nfirst\n---\n");
    append(&path, "second\n");
    running.wait_for_stdout_containing("=== App ===\nsecond\n---\n");
    let (status, _, _) = running.terminate();
    assert!(status.success());
}

#[test]
fn settings_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.log"), "a1\na2\n").unwrap();
    std::fs::write(dir.path().join("b.log"), "b1\nb2\n").unwrap();
    let mut command = aggregator();
    command
        .env("LOG_AGGREGATOR_INTERVAL", "1h")
        .env("LOG_AGGREGATOR_LINES", "1")
        .env(
            "LOG_AGGREGATOR_SOURCES",
            format!(
                "A={}\nB={}",
                dir.path().join("a.log").display(),
                dir.path().join("b.log").display()
            ),
        );
    let running = spawn(command);
    let out = running.wait_for_stdout("a cycle", |out| out.ends_with("---\n"));
    assert_eq!(out, "=== A ===\na2\n=== B ===\nb2\n---\n");
}

#[test]
fn unreadable_file_is_a_warning_naming_it_and_the_loop_goes_on() {
    // A regular file nobody may read, root included (mode 0200 in procfs).
    let unreadable = "/proc/sys/vm/drop_caches";
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.log");
    std::fs::write(&good, "fine\n").unwrap();
    let mut command = aggregator();
    command
        .args(["--interval", "50ms"])
        .arg(format!("Bad={unreadable}"))
        .arg(format!("Good={}", good.display()));
    let running = spawn(command);
    let cycle = "=== Bad ===\n=== Good ===\nfine\n---\n";
    running.wait_for_stdout("two cycles", |out| out.matches(cycle).count() >= 2);
    let stderr = running.wait_for_stderr_containing(unreadable);
    assert!(stderr.contains("ermission denied"), "{stderr}");
    let (status, _, _) = running.terminate();
    assert!(status.success());
}

#[test]
fn one_cycle_reads_only_the_end_of_a_huge_file() {
    // A sparse 4 GiB file: reading it whole would take seconds and show in
    // the process's read counter; the last lines are found from the end.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.log");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(4 << 30).unwrap();
    drop(file);
    append(&path, "\nlast 1\nlast 2\n");
    let mut command = aggregator();
    command
        .args(["--interval", "1h", "--lines", "2"])
        .arg(format!("Huge={}", path.display()));
    let running = spawn(command);
    running.wait_for_stdout_containing("=== Huge ===\nlast 1\nlast 2\n---\n");
    let io = std::fs::read_to_string(format!("/proc/{}/io", running.pid())).unwrap();
    let read_bytes: u64 = io
        .lines()
        .find_map(|line| line.strip_prefix("rchar: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        read_bytes < 4 << 20,
        "read {read_bytes} bytes for one cycle"
    );
}

#[test]
fn never_writes_to_the_watched_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    std::fs::write(&path, "x\n").unwrap();
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut command = aggregator();
    command
        .args(["--interval", "10ms"])
        .arg(path.display().to_string());
    let running = spawn(command);
    running.wait_for_stdout("three cycles", |out| out.matches("---\n").count() >= 3);
    running.terminate();
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "only the log file is there");
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        before
    );
}

#[test]
fn sigterm_ends_it_at_once_with_status_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = aggregator();
    command
        .args(["--interval", "10s"])
        .arg(dir.path().join("app.log").display().to_string());
    let running = spawn(command);
    running.wait_for_stdout_containing("---\n");
    let (status, took, _) = running.terminate();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[test]
fn bad_flags_give_one_clear_error_line() {
    let output = aggregator()
        .args(["--interval", "0s", "x"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--interval must be more than zero"),
        "{stderr}"
    );

    let output = aggregator()
        .args(["--lines", "five", "x"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("five"));

    let output = aggregator().output().unwrap();
    assert!(!output.status.success(), "a source is required");
}

#[test]
fn help_shows_the_lab_example() {
    let output = aggregator().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        help.contains("'Application Logs=/var/log/app.log'"),
        "{help}"
    );
    assert!(help.contains("LOG_AGGREGATOR_INTERVAL"), "{help}");
}

#[test]
fn sigterm_ends_it_even_while_stdout_is_blocked() {
    // A cycle larger than the pipe, and nobody reading: the cycle's write
    // blocks, the signal must still end the process at once.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.log");
    let lines: String = (0..200_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&path, lines).unwrap();
    let mut child = aggregator()
        .args(["--lines", "200000"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    testkit::eventually("the cycle to be blocked writing to the full pipe", || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(Result::ok)
            .any(|task| {
                std::fs::read_to_string(task.path().join("wchan"))
                    .is_ok_and(|wchan| wchan.contains("pipe_write"))
            })
    });
    let started = std::time::Instant::now();
    testkit::send_signal(pid, libc::SIGTERM);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "did not exit");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}

// --- flag consistency and bounds ---

#[test]
fn listen_accepts_colon_port_as_client_and_adapter_do() {
    // Regression: `--listen :PORT` was a parse error here and in the adapter.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    std::fs::write(&path, "one\n").unwrap();
    let mut command = aggregator();
    command
        .args(["--follow", "--listen", ":0", "--log-level", "info"])
        .arg(&path);
    let running = spawn(command);
    let stderr = running.wait_for_stderr_containing("/metrics");
    let port: u16 = stderr
        .split("http://0.0.0.0:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no bound port in {stderr}"));
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{status:?} {output:?}");
}

#[test]
fn meaningless_flag_values_and_combinations_are_refused() {
    let refused = |args: &[&str], code: i32, expected: &str| {
        let output = aggregator().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    };
    // Regression: accepted, and every record was cut to one byte.
    refused(
        &[
            "--follow",
            "--multiline-start",
            "^x",
            "--multiline-max-bytes",
            "0",
            "x",
        ],
        2,
        "must be at least 1 byte",
    );
    refused(
        &["--follow", "--max-line-bytes", "0", "x"],
        2,
        "must be at least 1 byte",
    );
    // Regression: accepted silently, and meant nothing.
    refused(
        &["--follow", "--interval", "5s", "x"],
        1,
        "--interval is for snapshot mode",
    );
    refused(
        &["--follow", "--listen", "nowhere", "x"],
        2,
        "invalid listen address \"nowhere\"",
    );
}

#[test]
fn the_lab_manifests_never_pass_interval_with_follow() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut stack = vec![deploy];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|ext| ext == "yaml") {
                let text = std::fs::read_to_string(&path).unwrap();
                for container in text.split("- name: ") {
                    if container.contains("log-aggregator") && container.contains("--follow") {
                        assert!(
                            !container.contains("--interval")
                                && !container.contains("LOG_AGGREGATOR_INTERVAL"),
                            "{} passes --interval with --follow",
                            path.display()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn snapshot_cuts_a_huge_line_at_max_line_bytes_with_a_marker() {
    // Regression: a 300 MB line was printed whole every cycle.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let long = "x".repeat(1_000_000);
    std::fs::write(&path, format!("before\n{long}\nafter\n")).unwrap();
    let default = first_cycle(&[format!("App={}", path.display())]);
    assert_eq!(
        default,
        format!(
            "=== App ===\nbefore\n{} [... {} more bytes cut]\nafter\n---\n",
            "x".repeat(65536),
            1_000_000 - 65536
        )
    );
    let small = first_cycle(&[
        "--max-line-bytes".to_owned(),
        "4".to_owned(),
        format!("App={}", path.display()),
    ]);
    assert_eq!(
        small,
        format!(
            "=== App ===\nbefo [... 2 more bytes cut]\nxxxx [... {} more bytes cut]\nafte [... 1 more bytes cut]\n---\n",
            1_000_000 - 4
        )
    );
}

#[test]
fn prefixed_output_escapes_a_newline_in_a_file_name() {
    // Regression: the name's newline split every line of that file in two.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a\nb.log");
    std::fs::write(&path, "one\ntwo\n").unwrap();
    let mut command = aggregator();
    // A glob: a newline in an argument would split it (sources are
    // newline-separated), but a pattern finds such names on disk.
    command
        .args(["--follow", "--output", "prefixed"])
        .arg(dir.path().join("*.log"));
    let running = spawn(command);
    let stdout = running.wait_for_stdout("two lines", |out| out.lines().count() >= 2);
    let name = format!("{}/a\\nb.log", dir.path().display());
    assert_eq!(stdout, format!("{name}: one\n{name}: two\n"));
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{status:?} {output:?}");
}
