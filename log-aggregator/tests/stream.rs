//! Stream mode (`--follow`) through the real binary on real files: every
//! line once and in order through each kind of rotation under a fast
//! appender, restarts with checkpoints, long lines, a blocked stdout, the
//! shutdown drain, output formats and metrics.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testkit::{DEADLINE, Running, append, eventually, spawn};

fn aggregator() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_log-aggregator"));
    command.env_remove("LOG_AGGREGATOR_SOURCES");
    command.arg("--follow");
    command
}

/// Appends numbered lines the way an application does: one write per line
/// through an `O_APPEND` descriptor it keeps until it reopens.
struct Appender {
    path: PathBuf,
    file: File,
    next: u64,
}

impl Appender {
    fn open(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            file: open_append(path),
            next: 0,
        }
    }

    fn lines(&mut self, count: u64) {
        for _ in 0..count {
            writeln!(self.file, "{}", self.next).unwrap();
            self.next += 1;
        }
    }

    /// Opens the path again, as an application does after logrotate's signal.
    fn reopen(&mut self) {
        self.file = open_append(&self.path);
    }
}

fn open_append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// The numbered lines of `out`, which must be exactly `0..count` in order.
/// Writes the lines `0` to `lines - 1` to `path`; returns its size.
fn write_numbered_lines(path: &Path, lines: u64) -> u64 {
    let mut file = std::io::BufWriter::new(open_append(path));
    for number in 0..lines {
        writeln!(file, "{number}").unwrap();
    }
    drop(file);
    std::fs::metadata(path).unwrap().len()
}

fn assert_every_line_once_in_order(out: &str, count: u64, context: &str) {
    let numbers: Vec<u64> = out
        .lines()
        .map(|line| {
            line.parse()
                .unwrap_or_else(|_| panic!("{context}: unexpected line {line:?}"))
        })
        .collect();
    if numbers.len() as u64 == count && numbers.iter().copied().eq(0..count) {
        return;
    }
    let mut seen = vec![0u32; count as usize];
    for number in &numbers {
        seen[*number as usize] += 1;
    }
    let lost: Vec<usize> = (0..seen.len()).filter(|i| seen[*i] == 0).collect();
    let repeated: Vec<usize> = (0..seen.len()).filter(|i| seen[*i] > 1).collect();
    panic!(
        "{context}: {} lines, lost {:?}, repeated {:?}, in order: {}",
        numbers.len(),
        &lost[..lost.len().min(20)],
        &repeated[..repeated.len().min(20)],
        numbers.windows(2).all(|pair| pair[0] < pair[1])
    );
}

fn wait_for_line_count(running: &Running, count: u64) -> String {
    running.wait_for_stdout(&format!("{count} lines"), |out| {
        out.lines().count() as u64 >= count && out.ends_with('\n')
    })
}

/// Starts following `path` (which holds line 0) and waits until line 0 is out.
fn start_following(path: &Path, extra: &[&str]) -> Running {
    let mut command = aggregator();
    command.args(extra).arg(path);
    let running = spawn(command);
    running.wait_for_stdout_containing("0\n");
    running
}

const ROUNDS: usize = 20;
const LINES: u64 = 6_000;

#[test]
fn rename_rotation_under_a_fast_appender_loses_and_repeats_nothing() {
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut app = Appender::open(&path);
        app.lines(1);
        let running = start_following(&path, &[]);
        app.lines(LINES / 3 - 1);
        // logrotate's default: rename, then the application keeps writing
        // to the old file until it reopens.
        std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        app.lines(LINES / 3);
        app.reopen();
        app.lines(LINES - app.next);
        let out = wait_for_line_count(&running, LINES);
        let (status, _, output) = running.terminate();
        assert!(status.success(), "{}", output.stderr);
        assert_every_line_once_in_order(&out, LINES, &format!("round {round}"));
        assert_every_line_once_in_order(&output.stdout, LINES, &format!("round {round} at exit"));
    }
}

#[test]
fn delete_and_recreate_under_a_fast_appender_loses_and_repeats_nothing() {
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut app = Appender::open(&path);
        app.lines(1);
        let running = start_following(&path, &[]);
        app.lines(LINES / 2 - 1);
        std::fs::remove_file(&path).unwrap();
        app.reopen();
        app.lines(LINES - app.next);
        let out = wait_for_line_count(&running, LINES);
        let (status, _, output) = running.terminate();
        assert!(status.success(), "{}", output.stderr);
        assert_every_line_once_in_order(&out, LINES, &format!("round {round}"));
        assert_every_line_once_in_order(&output.stdout, LINES, &format!("round {round} at exit"));
    }
}

#[test]
fn copytruncate_is_detected_and_the_file_read_again_from_its_start() {
    // copytruncate's window (lines written between the copy and the
    // truncation are in neither file we read) is documented; what must hold
    // is that the truncation is seen and what is written after it is read.
    for round in 0..ROUNDS / 2 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut app = Appender::open(&path);
        app.lines(1);
        let running = start_following(&path, &[]);
        for _ in 0..3 {
            app.lines(999);
            wait_for_line_count(&running, app.next);
            std::fs::copy(&path, dir.path().join("app.log.1")).unwrap();
            app.file.set_len(0).unwrap();
            // Fewer bytes than before, so the size is below our position.
            app.lines(1);
            wait_for_line_count(&running, app.next);
        }
        let (status, _, output) = running.terminate();
        assert!(status.success(), "{}", output.stderr);
        assert_every_line_once_in_order(&output.stdout, app.next, &format!("round {round}"));
    }
}

#[test]
fn polling_mode_follows_without_inotify() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let mut app = Appender::open(&path);
    app.lines(1);
    let running = start_following(&path, &["--poll", "--poll-interval", "20ms"]);
    app.lines(99);
    std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
    app.reopen();
    app.lines(100);
    let out = wait_for_line_count(&running, 200);
    assert_every_line_once_in_order(&out, 200, "polling");
    let (status, _, _) = running.terminate();
    assert!(status.success());
}

#[test]
fn sigterm_drains_lines_written_just_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let mut app = Appender::open(&path);
    app.lines(1);
    // An hour between polls and no inotify: only the drain can read them.
    let running = start_following(&path, &["--poll", "--poll-interval", "1h"]);
    app.lines(4_999);
    write!(app.file, "last line without newline").unwrap();
    let (status, took, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let (numbers, last) = output.stdout.rsplit_once("\n").unwrap();
    assert_eq!(last, "");
    let (numbers, partial) = numbers.rsplit_once('\n').unwrap();
    assert_eq!(partial, "last line without newline");
    assert_every_line_once_in_order(&format!("{numbers}\n"), 5_000, "drain");
}

#[test]
fn files_matching_a_glob_later_are_read_from_their_start() {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("a.log"), "a1\n");
    let mut command = aggregator();
    command
        .args(["--output", "prefixed"])
        .arg(format!("{}/*.log", dir.path().display()));
    let running = spawn(command);
    let a = dir.path().join("a.log");
    running.wait_for_stdout_containing(&format!("{}: a1\n", a.display()));
    let b = dir.path().join("b.log");
    append(&b, "b1\nb2\n");
    append(&dir.path().join("ignored.txt"), "no\n");
    running.wait_for_stdout_containing(&format!("{}: b1\n{}: b2\n", b.display(), b.display()));
    let (status, _, output) = running.terminate();
    assert!(status.success());
    assert!(!output.stdout.contains("no\n"), "{}", output.stdout);
}

#[test]
fn from_end_skips_what_the_file_already_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "old\n");
    let mut command = aggregator();
    command.args(["--from", "end"]).arg(&path);
    let running = spawn(command);
    // No output to wait for yet; appending until a line shows up proves
    // the follower is running without a sleep.
    let written = std::cell::Cell::new(0);
    eventually("a new line to show up", || {
        append(&path, &format!("new {}\n", written.get()));
        written.set(written.get() + 1);
        running.stdout().contains("new ")
    });
    let (status, _, output) = running.terminate();
    assert!(status.success());
    assert!(!output.stdout.contains("old"), "{}", output.stdout);
}

fn checkpoint_offset(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("checkpoints.json")).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["files"][0]["offset"].as_u64()
}

#[test]
fn restart_after_sigterm_with_checkpoints_repeats_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let path = dir.path().join("app.log");
    let mut app = Appender::open(&path);
    app.lines(1);
    let checkpoint_flags = ["--checkpoint-dir", state.to_str().unwrap()];
    let running = start_following(&path, &checkpoint_flags);
    app.lines(999);
    let first = wait_for_line_count(&running, 1_000);
    let (status, _, _) = running.terminate();
    assert!(status.success());
    assert_eq!(
        checkpoint_offset(&state),
        Some(std::fs::metadata(&path).unwrap().len())
    );
    // Written while it was down.
    app.lines(1_000);
    let mut command = aggregator();
    command.args(checkpoint_flags).arg(&path);
    let running = spawn(command);
    app.lines(1_000);
    let second = wait_for_line_count(&running, 2_000);
    let (status, _, _) = running.terminate();
    assert!(status.success());
    assert!(second.starts_with("1000\n"), "{}", &second[..20]);
    assert_every_line_once_in_order(&(first + &second), 3_000, "across a restart");
}

#[test]
fn restart_after_sigkill_loses_nothing_and_repeats_at_most_since_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let path = dir.path().join("app.log");
    let mut app = Appender::open(&path);
    app.lines(1);
    let flags = [
        "--checkpoint-dir",
        state.to_str().unwrap(),
        "--checkpoint-interval",
        "50ms",
    ];
    let running = start_following(&path, &flags);
    app.lines(999);
    wait_for_line_count(&running, 1_000);
    let size = std::fs::metadata(&path).unwrap().len();
    eventually("a checkpoint at the end of what was written", || {
        checkpoint_offset(&state) == Some(size)
    });
    app.lines(500);
    let first = wait_for_line_count(&running, 1_500);
    running.signal(libc::SIGKILL);
    drop(running);
    let mut command = aggregator();
    command.args(flags).arg(&path);
    let running = spawn(command);
    app.lines(500);
    let second = wait_for_line_count(&running, 500);
    let (status, _, _) = running.terminate();
    assert!(status.success());
    let resumed_at: u64 = second.lines().next().unwrap().parse().unwrap();
    assert!(
        (1_000..=1_500).contains(&resumed_at),
        "resumed at line {resumed_at}: more repeats than since the last checkpoint we saw"
    );
    let repeated = 1_500 - resumed_at;
    let without_repeats: String = second
        .lines()
        .skip(repeated as usize)
        .map(|line| format!("{line}\n"))
        .collect();
    assert_every_line_once_in_order(&(first + &without_repeats), 2_000, "across a crash");
}

#[test]
fn a_corrupt_checkpoint_stops_with_an_error_unless_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(state.join("checkpoints.json"), "{not json").unwrap();
    let path = dir.path().join("app.log");
    append(&path, "line\n");
    let output = aggregator()
        .args(["--checkpoint-dir", state.to_str().unwrap()])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("checkpoints.json"), "{stderr}");
    assert!(stderr.contains("--discard-invalid-checkpoint"), "{stderr}");

    let mut command = aggregator();
    command
        .args([
            "--checkpoint-dir",
            state.to_str().unwrap(),
            "--discard-invalid-checkpoint",
        ])
        .arg(&path);
    let running = spawn(command);
    running.wait_for_stdout_containing("line\n");
    running.terminate();
    assert!(state.join("checkpoints.json.invalid").exists());
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|number| number.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in {status}"))
}

#[test]
fn a_10_mb_line_without_newline_is_cut_counted_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "before\n");
    let mut command = aggregator();
    command
        .args(["--output", "json", "--listen", "127.0.0.1:0"])
        .arg(&path);
    let running = spawn(command);
    running.wait_for_stdout_containing("\"before\"");
    let mut file = open_append(&path);
    let block = vec![b'x'; 1 << 20];
    for _ in 0..10 {
        file.write_all(&block).unwrap();
    }
    file.write_all(b"\nafter\n").unwrap();
    let out = running.wait_for_stdout_containing("\"after\"");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["line"].as_str().unwrap().len(), 64 * 1024);
    assert_eq!(lines[1]["truncated"], true);
    assert_eq!(lines[2]["line"], "after");
    let metrics = get(&metrics_address(&running), "/metrics");
    assert!(
        metrics.contains("log_aggregator_lines_truncated_total 1\n"),
        "{metrics}"
    );
    let peak = status_kib(running.pid(), "VmHWM:");
    assert!(peak < 20 * 1024, "peak RSS {peak} kB");
    running.stderr();
    let (status, _, output) = running.terminate();
    assert!(status.success());
    assert!(output.stderr.contains("was cut"), "{}", output.stderr);
}

#[test]
fn a_blocked_stdout_stops_reading_memory_stays_flat_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    // Several times what stdout's pipe (widened to 1 MiB), the output's
    // pending bytes and a chunk hold together.
    let lines: u64 = 2_000_000; // about 14 MB
    let size = write_numbered_lines(&path, lines);
    // Checkpoints every 20 ms while blocked: they must neither grow
    // memory nor save a position past what reached stdout.
    let state = dir.path().join("state");
    let address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let mut child = aggregator()
        .args(["--checkpoint-dir", state.to_str().unwrap()])
        .args(["--checkpoint-interval", "20ms"])
        .args(["--listen", &address])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let read_so_far = || {
        let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
        io.lines()
            .find_map(|line| line.strip_prefix("rchar: "))
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    // Nobody reads stdout: reading the file must stop well before its end.
    let started = Instant::now();
    let mut last = 0;
    let mut stable_since = Instant::now();
    while stable_since.elapsed() < Duration::from_millis(500) {
        assert!(started.elapsed() < DEADLINE, "reading never stopped");
        let now = read_so_far();
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        last < size / 2,
        "read {last} of {size} bytes with stdout blocked"
    );
    let peak = status_kib(pid, "VmHWM:");
    assert!(peak < 20 * 1024, "peak RSS {peak} kB");
    // What reached the pipe is written: a saved position beyond what the
    // pipe holds skipped unwritten lines.
    let saved = checkpoint_offset(&state).unwrap_or(0);
    let in_pipe = testkit::pipe_capacity(child.stdout.as_ref().unwrap());
    // Widened at start, so a runtime's small reads do not stall the writer
    // (unless the machine allows less).
    let allowed: u64 = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(in_pipe, allowed.min(1024 * 1024), "stdout's pipe");
    assert!(
        saved <= in_pipe + 64 * 1024,
        "checkpoint at {saved} with stdout blocked, a pipe of {in_pipe} bytes"
    );
    // What is not read yet is what the lag gauge says.
    let unread = || {
        let metrics = get(&address, "/metrics");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("log_aggregator_unread_bytes "))
            .and_then(|value| value.parse::<f64>().ok())
    };
    eventually(
        "the unread bytes gauge to show the file's unread half",
        || unread().is_some_and(|bytes| bytes >= (size / 2) as f64 && bytes <= size as f64),
    );
    // Now drain the pipe: every line arrives, once, in order.
    let collected = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = collected.clone();
    let reader = std::thread::spawn(move || {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            match stdout.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(read) => sink.lock().unwrap().extend_from_slice(&buffer[..read]),
            }
        }
    });
    eventually("all lines after unblocking", || {
        collected.lock().unwrap().len() as u64 >= size
    });
    eventually("the unread bytes gauge at 0 once all is read", || {
        unread() == Some(0.0)
    });
    testkit::send_signal(pid, libc::SIGTERM);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    let out = String::from_utf8(collected.lock().unwrap().clone()).unwrap();
    assert_every_line_once_in_order(&out, lines, "after unblocking");
}

#[test]
fn the_last_lines_reach_a_slow_stdout_without_waiting_for_a_write_or_the_tick() {
    // The reader is slower than the file: when the follower reaches the
    // end, its output has no room, and the last lines wait in the sink.
    // They must follow as soon as there is room, not at the next tick.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let lines: u64 = 500_000; // about 3.4 MB
    let size = write_numbered_lines(&path, lines);
    let mut child = aggregator()
        .args(["--poll-interval", "1h"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Small reads, as a container runtime's, slower than the file is read.
    let collected = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = collected.clone();
    let reader = std::thread::spawn(move || {
        let mut buffer = vec![0; 4096];
        while let Ok(read @ 1..) = stdout.read(&mut buffer) {
            sink.lock().unwrap().extend_from_slice(&buffer[..read]);
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    eventually("every line on a slow stdout, the tick an hour away", || {
        collected.lock().unwrap().len() as u64 >= size
    });
    testkit::send_signal(child.id(), libc::SIGTERM);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    let out = collected.lock().unwrap().clone();
    assert_every_line_once_in_order(&String::from_utf8(out).unwrap(), lines, "slow stdout");
}

#[test]
fn sigterm_while_stdout_is_blocked_still_exits_within_the_drain_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    // More than stdout's pipe (widened to 1 MiB) holds.
    write_numbered_lines(&path, 1_000_000);
    let mut command = aggregator();
    command.args(["--drain-timeout", "300ms"]).arg(&path);
    let (status, took) = testkit::sigterm_with_stdout_full(command, |_| {});
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn json_output_is_valid_for_invalid_utf8_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    std::fs::write(
        &path,
        b"ok\nbad \xff\xfe\x00 \"quoted\" \\ \x1b[31m\nlast\n",
    )
    .unwrap();
    let mut command = aggregator();
    command.args(["--output", "json"]).arg(&path);
    let running = spawn(command);
    let out = running.wait_for_stdout_containing("\"last\"");
    let values: Vec<serde_json::Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect();
    assert_eq!(
        values[1]["line"],
        "bad \u{fffd}\u{fffd}\u{0} \"quoted\" \\ \u{1b}[31m"
    );
    assert_eq!(values[1]["file"], path.to_str().unwrap());
    assert!(values[1]["time"].as_str().unwrap().ends_with('Z'));
    assert!(values[1].get("truncated").is_none());
}

#[test]
fn multiline_records_are_joined_and_the_last_one_flushed_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    std::fs::write(
        &path,
        "2026-11-25 ERROR boom\njava.lang.IllegalStateException\n\tat App.run(App.java:42)\n2026-11-25 INFO next\n",
    )
    .unwrap();
    let mut command = aggregator();
    command
        .args([
            "--output",
            "json",
            "--multiline-start",
            r"^\d{4}-",
            "--multiline-timeout",
            "100ms",
            "--poll-interval",
            "50ms",
        ])
        .arg(&path);
    let running = spawn(command);
    // The second record has no successor: only the timeout writes it.
    let out = running.wait_for_stdout_containing("INFO next");
    let values: Vec<serde_json::Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(values.len(), 2, "{out}");
    assert_eq!(
        values[0]["line"],
        "2026-11-25 ERROR boom\njava.lang.IllegalStateException\n\tat App.run(App.java:42)"
    );
    assert_eq!(values[1]["line"], "2026-11-25 INFO next");
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
fn metrics_endpoint_counts_lines_rotations_and_reports_ready() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "one\ntwo\n");
    let mut command = aggregator();
    // Polling only: an inotify event at the rename would wake a poll between
    // the test's rename and its create, which is a removal and then a new
    // file, not one rotation.
    command
        .args([
            "--listen",
            "127.0.0.1:0",
            "--poll",
            "--poll-interval",
            "50ms",
        ])
        .args([
            "--checkpoint-dir",
            dir.path().join("state").to_str().unwrap(),
        ])
        .args(["--checkpoint-interval", "50ms"])
        .arg(&path);
    let running = spawn(command);
    running.wait_for_stdout_containing("two\n");
    let address = metrics_address(&running);
    assert!(get(&address, "/healthz").starts_with("HTTP/1.1 200"));
    assert!(get(&address, "/readyz").starts_with("HTTP/1.1 200"));
    std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
    append(&path, "three\n");
    running.wait_for_stdout_containing("three\n");
    let label = format!("{{file=\"{}\"}}", path.display());
    eventually("metrics to show the rotation and the files", || {
        let metrics = get(&address, "/metrics");
        metrics.contains(&format!("log_aggregator_lines_total{label} 3\n"))
            && metrics.contains(&format!("log_aggregator_bytes_total{label} 14\n"))
            && metrics.contains("log_aggregator_rotations_total 1\n")
            && metrics.contains("log_aggregator_truncations_total 0\n")
            && metrics.contains("log_aggregator_polling_fallback ")
            && metrics.contains("log_aggregator_files_followed ")
            && metrics.contains("log_aggregator_checkpoint_age_seconds ")
    });
    let (status, _, _) = running.terminate();
    assert!(status.success());
}

#[test]
fn bad_stream_flags_give_one_clear_error_line() {
    let output = aggregator()
        .args(["--multiline-start", "(unclosed", "/tmp/x.log"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad --multiline-start regex"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_log-aggregator"))
        .args(["--output", "json", "/tmp/x.log"])
        .output()
        .unwrap();
    assert!(!output.status.success(), "stream flags need --follow");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--follow"));
}

#[test]
fn an_incomplete_last_line_is_not_split_by_checkpoints() {
    // Saving positions must not hand over the incomplete last line as if the
    // file were finished, nor save a position past its start.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let path = dir.path().join("app.log");
    append(&path, "first\nhalf of a ");
    let mut command = aggregator();
    command
        .args(["--checkpoint-dir", state.to_str().unwrap()])
        .args(["--checkpoint-interval", "10ms"])
        .arg(&path);
    let running = spawn(command);
    running.wait_for_stdout_containing("first\n");
    let saves = |expected: u64| {
        eventually(&format!("checkpoints at offset {expected}"), || {
            checkpoint_offset(&state) == Some(expected)
        })
    };
    saves(6);
    // More of the line, still incomplete: many intervals pass, and the
    // position saved stays at the line's start.
    append(&path, "long ");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(checkpoint_offset(&state), Some(6));
    append(&path, "line\n");
    running.wait_for_stdout_containing("half of a long line\n");
    saves(("first\nhalf of a long line\n").len() as u64);
    let (status, _, output) = running.terminate();
    assert!(status.success());
    assert_eq!(output.stdout, "first\nhalf of a long line\n");
}

#[test]
fn without_inotify_it_warns_once_falls_back_to_polling_and_loses_nothing() {
    // inotify needs file descriptors: with RLIMIT_NOFILE just above what the
    // runtime itself holds, creating the watcher fails (EMFILE) while the
    // log file can still be opened. The exact number depends on the
    // runtime's own descriptors, so the lowest limit that starts is used.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let state = dir.path().join("state");
    let mut app = Appender::open(&path);
    app.lines(1);
    for limit in 6..24 {
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={limit}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_log-aggregator"))
            .env_remove("LOG_AGGREGATOR_SOURCES")
            .env("RUST_BACKTRACE", "0")
            // The rotated file holds a descriptor until let go: keep it short.
            .args([
                "--follow",
                "--poll-interval",
                "20ms",
                "--rotate-wait",
                "50ms",
            ])
            // Checkpoints every 20 ms (the driver used to be restarted for
            // each): the warning must still come once.
            .args(["--checkpoint-dir", state.to_str().unwrap()])
            .args(["--checkpoint-interval", "20ms", "--log-level", "debug"])
            .arg(&path);
        let running = spawn(command);
        // Which of the runtime's descriptors, the driver's two inotify
        // instances and the file is refused first varies from run to run:
        // the limit sought is one where inotify was refused and the file is
        // read all the same (a first read may fail and the next succeed).
        // Too few descriptors: the runtime fails, or the file is never read;
        // too many: inotify works. Either way, one more descriptor.
        let started = Instant::now();
        let suitable = loop {
            let stderr = running.stderr();
            if stderr.contains("log-aggregator: error") || stderr.contains("panicked") {
                break false;
            }
            if running.stdout().contains("0\n") {
                if stderr.contains("polling for changes instead") {
                    break true;
                }
                if started.elapsed() > Duration::from_secs(1) {
                    break false;
                }
            }
            if started.elapsed() > Duration::from_secs(5) {
                break false;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if !suitable {
            continue;
        }
        app.lines(99);
        std::fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        app.reopen();
        app.lines(100);
        let out = wait_for_line_count(&running, 200);
        assert_every_line_once_in_order(&out, 200, "polling fallback");
        // Several intervals (saving may fail too at this limit: warned once).
        running.wait_for_stdout("ten checkpoint intervals", |_| {
            running.stderr().matches("checkpoint interval:").count() >= 10
        });
        let (status, _, output) = running.terminate();
        // At this limit the last save may fail for want of a descriptor:
        // that is an error exit naming the checkpoint file.
        assert!(
            status.success() || output.stderr.contains("error: creating checkpoint file"),
            "{status:?}\n{}",
            output.stderr
        );
        assert_eq!(
            output.stderr.matches("polling for changes instead").count(),
            1
        );
        // Saving fails while the rotated file holds the spare descriptor
        // and works again once it is let go: a warning per failure spell,
        // not one per interval.
        let failures = output.stderr.matches("read positions not saved").count();
        let recoveries = output
            .stderr
            .matches("saving read positions works again")
            .count();
        assert!(failures <= recoveries + 1, "{}", output.stderr);
        return;
    }
    panic!("no descriptor limit let it start");
}

// --- long lines, a closed stdout ---

/// A line of `length` bytes (no newline) that shows a piece out of place.
fn long_line(length: usize, seed: usize) -> Vec<u8> {
    (0..length)
        .map(|i| b'a' + ((i / 7 + seed) % 26) as u8)
        .collect()
}

#[test]
fn a_1_mib_line_comes_out_whole_in_plain_and_prefixed_output() {
    for (format, prefix) in [("plain", ""), ("prefixed", "PATH: ")] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        append(&path, "before\n");
        let mut command = aggregator();
        command
            .args(["--output", format, "--listen", "127.0.0.1:0"])
            .arg(&path);
        let running = spawn(command);
        running.wait_for_stdout_containing("before\n");
        let line = long_line(1024 * 1024, 0);
        let mut file = open_append(&path);
        file.write_all(&line).unwrap();
        file.write_all(b"\nafter\n").unwrap();
        running.wait_for_stdout_containing("after\n");
        let prefix = prefix.replace("PATH", path.to_str().unwrap());
        let expected = [
            format!("{prefix}before\n{prefix}").as_bytes(),
            &line,
            format!("\n{prefix}after\n").as_bytes(),
        ]
        .concat();
        let out = running.stdout_bytes();
        assert!(
            out == expected,
            "{format}: {} bytes out, {} expected, first difference at {:?}",
            out.len(),
            expected.len(),
            out.iter().zip(&expected).position(|(a, b)| a != b)
        );
        let metrics = get(&metrics_address(&running), "/metrics");
        assert!(
            metrics.contains("log_aggregator_lines_truncated_total 0\n"),
            "{metrics}"
        );
        let label = format!("{{file=\"{}\"}}", path.display());
        assert!(
            metrics.contains(&format!("log_aggregator_lines_total{label} 3\n")),
            "{metrics}"
        );
        let (status, _, output) = running.terminate();
        assert!(status.success());
        assert!(!output.stderr.contains("was cut"), "{}", output.stderr);
    }
}

#[test]
fn json_cuts_each_long_line_flags_and_counts_every_one_and_warns_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "before\n");
    let mut command = aggregator();
    command
        .args(["--output", "json", "--listen", "127.0.0.1:0"])
        .arg(&path);
    let running = spawn(command);
    running.wait_for_stdout_containing("\"before\"");
    let mut file = open_append(&path);
    for seed in 0..2 {
        file.write_all(&long_line(1024 * 1024, seed)).unwrap();
        file.write_all(b"\n").unwrap();
    }
    file.write_all(b"after\n").unwrap();
    let out = running.wait_for_stdout_containing("\"after\"");
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records.len(), 4);
    for (seed, record) in records[1..3].iter().enumerate() {
        let kept = long_line(64 * 1024, seed);
        assert_eq!(record["line"].as_str().unwrap().as_bytes(), kept);
        assert_eq!(record["truncated"], true);
    }
    assert!(records[3].get("truncated").is_none());
    let metrics = get(&metrics_address(&running), "/metrics");
    assert!(
        metrics.contains("log_aggregator_lines_truncated_total 2\n"),
        "{metrics}"
    );
    let (status, _, output) = running.terminate();
    assert!(status.success());
    let warnings: Vec<&str> = output
        .stderr
        .lines()
        .filter(|line| line.contains("was cut"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", output.stderr);
    assert!(warnings[0].contains(path.to_str().unwrap()), "{warnings:?}");
}

#[test]
fn a_closed_stdout_ends_stream_mode_while_the_files_are_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "one\ntwo\n");
    let mut command = aggregator();
    command.arg(&path);
    let (line, status, took) = testkit::first_line_then_close_stdout(command);
    assert_eq!(line, "one\n");
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(2), "took {took:?}");
}
