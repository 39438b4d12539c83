//! The real `reader` binary on real temp files: the first lines, following
//! by name through late creation, rename, delete + create and truncation
//! (nothing lost, nothing twice), headers, partial lines, SIGTERM, polling,
//! and bad operands.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testkit::{Running, append, spawn};

fn reader() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reader"));
    command.env_remove("LOG_LEVEL");
    for (key, _) in std::env::vars() {
        if key.starts_with("READER_") {
            command.env_remove(key);
        }
    }
    command
}

fn start(args: &[&str]) -> Running {
    let mut command = reader();
    command.args(args);
    spawn(command)
}

/// Runs to the exit: (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let (status, output) = start(args).wait();
    (status.code().expect("exited"), output.stdout, output.stderr)
}

fn numbered(from: u32, to: u32) -> String {
    (from..=to).map(|n| format!("line {n}\n")).collect()
}

fn temp_file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    fs::write(&path, text).unwrap();
    (dir, path)
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Stops the reader and checks it exited 0 within a second.
fn stop(running: Running) -> testkit::Output {
    let (status, elapsed, output) = running.terminate();
    assert_eq!(status.code(), Some(0), "{output:?}");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    output
}

/// Compares line by line and reports the first difference, not 3000 lines.
fn assert_same_lines(actual: &str, expected: &str) {
    let actual: Vec<&str> = actual.lines().collect();
    let expected: Vec<&str> = expected.lines().collect();
    let first_difference = actual.iter().zip(&expected).position(|(a, e)| a != e);
    assert!(
        first_difference.is_none() && actual.len() == expected.len(),
        "{} lines printed, {} expected; first difference at index {first_difference:?}: {:?} vs {:?}",
        actual.len(),
        expected.len(),
        first_difference.map(|index| actual[index]),
        first_difference.map(|index| expected[index]),
    );
}

// --- the first lines ---

#[test]
fn prints_the_last_ten_lines_then_follows() {
    let (_dir, path) = temp_file("log.txt", &numbered(1, 15));
    let running = start(&[s(&path)]);
    running.wait_for_stdout_containing("line 15\n");
    append(&path, "line 16\n");
    running.wait_for_stdout_containing("line 16\n");
    assert_eq!(stop(running).stdout, numbered(6, 16));
}

#[test]
fn n_3_prints_the_last_three_lines() {
    let (_dir, path) = temp_file("log.txt", &numbered(1, 15));
    let (code, stdout, _) = run(&["--no-follow", "-n", "3", s(&path)]);
    assert_eq!((code, stdout.as_str()), (0, numbered(13, 15).as_str()));
}

#[test]
fn n_plus_2_prints_from_the_second_line() {
    let (_dir, path) = temp_file("log.txt", &numbered(1, 5));
    let (code, stdout, _) = run(&["--no-follow", "-n", "+2", s(&path)]);
    assert_eq!((code, stdout.as_str()), (0, numbered(2, 5).as_str()));
}

#[test]
fn tail_f_command_lines_work_unchanged() {
    for flag in ["-F", "-f"] {
        let (_dir, path) = temp_file("app.log", &numbered(1, 20));
        let running = start(&[flag, "-n", "3", s(&path)]);
        running.wait_for_stdout_containing("line 20\n");
        append(&path, "line 21\n");
        let output = stop(running);
        assert_same_lines(&output.stdout, &numbered(18, 21));
    }
    let (code, _, stderr) = run(&["-F", "--no-follow", "app.log"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

#[test]
fn lines_flag_is_settable_from_the_environment() {
    let (_dir, path) = temp_file("log.txt", &numbered(1, 5));
    let mut command = reader();
    command
        .env("READER_LINES", "2")
        .env("READER_NO_FOLLOW", "true")
        .arg(s(&path));
    let (status, output) = spawn(command).wait();
    assert_eq!(status.code(), Some(0));
    assert_eq!(output.stdout, numbered(4, 5));
}

#[test]
fn no_follow_prints_an_incomplete_last_line_as_is() {
    let (_dir, path) = temp_file("log.txt", "a\nb");
    let (code, stdout, _) = run(&["--no-follow", s(&path)]);
    assert_eq!((code, stdout.as_str()), (0, "a\nb"));
}

// --- following by name ---

#[test]
fn a_file_created_after_start_is_waited_for_and_read_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.txt");
    let running = start(&[s(&path)]);
    running.wait_for_stderr_containing("does not exist yet");
    fs::write(&path, numbered(1, 12)).unwrap();
    running.wait_for_stdout_containing("line 12\n");
    assert_eq!(stop(running).stdout, numbered(1, 12));
}

/// Rotates `rounds` times with `rotate`, under continued writes: lines go
/// to the old file after the rotation too, until the writer reopens.
fn rotation_loses_nothing(rotate: impl Fn(&Path, u32)) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.txt");
    fs::write(&path, "start\n").unwrap();
    let running = start(&["-n", "+1", s(&path)]);
    // Following from here on: a file rotated away before the reader ever
    // looked at it has no name left to be found by.
    running.wait_for_stdout_containing("start\n");
    let mut next = 1;
    let mut batch = |file: &mut fs::File, count: u32| {
        use std::io::Write;
        for _ in 0..count {
            // One write per line, as loggers do.
            file.write_all(format!("line {next}\n").as_bytes()).unwrap();
            next += 1;
        }
        next - 1
    };
    let mut writer = fs::OpenOptions::new().append(true).open(&path).unwrap();
    for round in 1..=5 {
        batch(&mut writer, 300);
        rotate(&path, round);
        // The writer has not reopened yet: these land in the old file.
        batch(&mut writer, 50);
        writer = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let last = batch(&mut writer, 300);
        // The new file is seen before the next rotation, as with any real
        // rotation interval; a file rotated away unseen has no name to follow.
        running.wait_for_stdout_containing(&format!("line {last}\n"));
    }
    let output = stop(running);
    assert_same_lines(&output.stdout, &format!("start\n{}", numbered(1, 5 * 650)));
}

#[test]
fn rename_rotation_under_continued_writes_loses_and_repeats_nothing() {
    rotation_loses_nothing(|path, round| {
        fs::rename(path, path.with_extension(format!("txt.{round}"))).unwrap();
    });
}

#[test]
fn delete_and_recreate_under_continued_writes_loses_and_repeats_nothing() {
    rotation_loses_nothing(|path, _| fs::remove_file(path).unwrap());
}

#[test]
fn replacement_is_announced_on_stderr_only() {
    let (dir, path) = temp_file("log.txt", "old\n");
    let running = start(&[s(&path)]);
    running.wait_for_stdout_containing("old\n");
    let replacement = dir.path().join("new.tmp");
    fs::write(&replacement, "new\n").unwrap();
    fs::rename(&replacement, &path).unwrap();
    running.wait_for_stdout_containing("new\n");
    running.wait_for_stderr_containing("has been replaced; following new file");
    assert_eq!(stop(running).stdout, "old\nnew\n");
}

#[test]
fn truncation_then_new_writes_reads_again_from_the_start() {
    let (_dir, path) = temp_file("log.txt", &numbered(1, 3));
    let running = start(&[s(&path)]);
    running.wait_for_stdout_containing("line 3\n");
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    running.wait_for_stderr_containing("file truncated");
    append(&path, "after 1\nafter 2\n");
    running.wait_for_stdout_containing("after 2\n");
    assert_eq!(
        stop(running).stdout,
        format!("{}after 1\nafter 2\n", numbered(1, 3))
    );
}

#[test]
fn poll_mode_follows_without_inotify() {
    let (_dir, path) = temp_file("log.txt", "a\n");
    let running = start(&["--poll", "--poll-interval", "50ms", s(&path)]);
    running.wait_for_stdout_containing("a\n");
    append(&path, "b\n");
    running.wait_for_stdout_containing("b\n");
    fs::remove_file(&path).unwrap();
    fs::write(&path, "c\n").unwrap();
    running.wait_for_stdout_containing("c\n");
    assert_eq!(stop(running).stdout, "a\nb\nc\n");
}

// --- layout ---

#[test]
fn two_files_get_headers_when_the_output_switches() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.log");
    let b = dir.path().join("b.log");
    fs::write(&a, "a1\na2\n").unwrap();
    fs::write(&b, "b1\n").unwrap();
    let running = start(&[s(&a), s(&b)]);
    let first = format!("==> {} <==\na1\na2\n\n==> {} <==\nb1\n", s(&a), s(&b));
    running.wait_for_stdout_containing(&first);
    append(&a, "a3\n");
    running.wait_for_stdout_containing("a3\n");
    assert_eq!(
        stop(running).stdout,
        format!("{first}\n==> {} <==\na3\n", s(&a))
    );
}

#[test]
fn an_incomplete_last_line_is_printed_once_complete() {
    let (_dir, path) = temp_file("log.txt", "done\nhal");
    let running = start(&[s(&path)]);
    running.wait_for_stdout_containing("done\n");
    append(&path, "f\n");
    running.wait_for_stdout_containing("half\n");
    assert_eq!(stop(running).stdout, "done\nhalf\n");
}

#[test]
fn an_incomplete_last_line_is_printed_at_sigterm() {
    let (_dir, path) = temp_file("log.txt", "done\n");
    let running = start(&[s(&path)]);
    running.wait_for_stdout_containing("done\n");
    append(&path, "partial");
    assert_eq!(stop(running).stdout, "done\npartial\n");
}

#[test]
fn sigterm_while_waiting_for_a_missing_file_exits_0_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(&[s(&dir.path().join("never.txt"))]);
    running.wait_for_stderr_containing("does not exist yet");
    assert_eq!(stop(running).stdout, "");
}

#[test]
fn bytes_that_are_not_utf8_are_passed_through() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bin.log");
    fs::write(&path, b"\xff\xfe\n").unwrap();
    let running = start(&[s(&path)]);
    running.wait_for_stdout("the first line", |out| out.ends_with('\n'));
    append(&path, "ok\n");
    running.wait_for_stdout_containing("ok\n");
    assert_eq!(running.stdout_bytes(), b"\xff\xfe\nok\n");
}

/// A line of `length` bytes (no newline), different for each `seed`, so a
/// piece out of place shows.
fn long_line(length: usize, seed: usize) -> Vec<u8> {
    (0..length)
        .map(|i| b'a' + ((i / 7 + seed) % 26) as u8)
        .collect()
}

#[test]
fn a_1_mib_line_is_followed_whole() {
    let (_dir, path) = temp_file("log.txt", "start\n");
    let running = start(&[s(&path)]);
    running.wait_for_stdout_containing("start\n");
    let mut written = long_line(1024 * 1024, 0);
    written.extend_from_slice(b"\nend\n");
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&written)
        .unwrap();
    running.wait_for_stdout_containing("end\n");
    let output = running.terminate().2;
    assert_eq!(output.stdout.len(), "start\n".len() + written.len());
    assert!(
        output.stdout.as_bytes() == [b"start\n".as_slice(), &written].concat(),
        "the 1 MiB line came out changed"
    );
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|number| number.trim().parse().ok())
        .unwrap_or_else(|| panic!("VmHWM in {status}"))
}

#[test]
fn a_16_mib_line_without_newline_is_printed_as_it_comes_with_memory_bounded() {
    let (_dir, path) = temp_file("log.txt", "start\n");
    let running = start(&[s(&path)]);
    running.wait_for_stdout_containing("start\n");
    let line = long_line(16 << 20, 3);
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&line)
        .unwrap();
    // No newline yet, and still it comes out (all but what is held).
    let held = 64 * 1024;
    running.wait_for_stdout("the line's pieces", |out| {
        out.len() >= "start\n".len() + line.len() - held
    });
    let peak = peak_rss_kib(running.pid());
    // Held whole, the line alone would be 16 MiB.
    assert!(peak < 12 * 1024, "peak RSS {peak} kB");
    let output = stop(running);
    assert!(output.stdout.as_bytes() == [b"start\n".as_slice(), &line, b"\n"].concat());
}

#[test]
fn n_3_prints_three_500_kib_lines_whole() {
    let mut text = b"earlier\n".to_vec();
    let mut last_three = Vec::new();
    for seed in 0..3 {
        last_three.extend(long_line(500 * 1024, seed));
        last_three.push(b'\n');
    }
    text.extend_from_slice(&last_three);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.txt");
    fs::write(&path, &text).unwrap();
    for follow in [false, true] {
        let mut args = vec!["-n", "3", s(&path)];
        if !follow {
            args.insert(0, "--no-follow");
        }
        let running = start(&args);
        let stdout = if follow {
            running.wait_for_stdout("three lines", |out| out.len() == last_three.len());
            stop(running).stdout
        } else {
            running.wait().1.stdout
        };
        assert!(
            stdout.as_bytes() == last_three,
            "follow {follow}: {} bytes printed, {} expected, first difference at {:?}",
            stdout.len(),
            last_three.len(),
            stdout.bytes().zip(&last_three).position(|(a, b)| a != *b)
        );
    }
}

#[test]
fn lines_longer_than_max_line_bytes_pass_through_whole() {
    let (_dir, path) = temp_file("log.txt", "0123456789\nok\n");
    let running = start(&["--max-line-bytes", "4", s(&path)]);
    running.wait_for_stdout_containing("ok\n");
    append(&path, "abcdefgh\nend\n");
    running.wait_for_stdout_containing("end\n");
    assert_eq!(stop(running).stdout, "0123456789\nok\nabcdefgh\nend\n");
}

// --- ending ---

#[test]
fn pid_exits_after_the_writer_died_and_its_last_lines_are_printed() {
    let (_dir, path) = temp_file("log.txt", "first\n");
    // A writer that appends one more line and exits when told to.
    let mut writer = Command::new("sh")
        .args(["-c", "read _ && echo last >> \"$0\"", s(&path)])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = writer.id().to_string();
    let running = start(&["--pid", &pid, "--poll-interval", "100ms", s(&path)]);
    running.wait_for_stdout_containing("first\n");
    writer.stdin.take().unwrap().write_all(b"go\n").unwrap();
    // Reaped, as a real writer's parent would: a zombie still counts as alive.
    assert!(writer.wait().unwrap().success());
    let (status, output) = running.wait();
    assert_eq!(status.code(), Some(0), "{output:?}");
    assert_eq!(output.stdout, "first\nlast\n");
}

#[test]
fn pid_is_settable_from_the_environment_and_a_dead_pid_ends_at_once() {
    let (_dir, path) = temp_file("log.txt", "a\nb\n");
    let mut gone = Command::new("true").spawn().unwrap();
    let pid = gone.id().to_string();
    gone.wait().unwrap();
    let mut command = reader();
    command.env("READER_PID", &pid).arg(s(&path));
    let (status, output) = spawn(command).wait();
    assert_eq!(status.code(), Some(0), "{output:?}");
    assert_eq!(output.stdout, "a\nb\n");
}

#[test]
fn a_closed_stdout_ends_the_reader_while_the_file_is_quiet() {
    // `reader -n +1 FILE | head -1`: head exits after one line; the file
    // gets no new line that could fail to be written.
    let (_dir, path) = temp_file("log.txt", "one\ntwo\n");
    let mut command = reader();
    command.args(["-n", "+1", s(&path)]);
    let (line, status, took) = testkit::first_line_then_close_stdout(command);
    assert_eq!(line, "one\n");
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

// --- bad input ---

#[test]
fn a_file_whose_directory_does_not_exist_yet_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/app.log");
    let running = start(&[s(&path)]);
    running.wait_for_stderr_containing("does not exist yet");
    fs::create_dir(dir.path().join("a")).unwrap();
    fs::create_dir(dir.path().join("a/b")).unwrap();
    fs::write(&path, "first\n").unwrap();
    running.wait_for_stdout_containing("first\n");
    append(&path, "second\n");
    running.wait_for_stdout_containing("second\n");
    let output = stop(running);
    assert_eq!(output.stdout, "first\nsecond\n");
    // A missing directory is not a reason to give up on inotify.
    assert!(!output.stderr.contains("polling"), "{}", output.stderr);
}

#[test]
fn a_missing_directory_without_follow_is_an_error_naming_the_file() {
    let (code, stdout, stderr) = run(&["--no-follow", "/nonexistent-dir/log.txt"]);
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with("reader: error: ") && stderr.contains("/nonexistent-dir/log.txt"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_directory_given_as_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(&[s(dir.path())]);
    assert_eq!(code, 1);
    assert!(stderr.contains("is a directory"), "{stderr}");
}

#[test]
fn a_missing_file_without_follow_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.txt");
    let (code, _, stderr) = run(&["--no-follow", s(&path)]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("missing.txt") && stderr.contains("No such file"),
        "{stderr}"
    );
}

#[test]
fn a_bad_line_count_is_a_usage_error() {
    let (code, _, stderr) = run(&["-n", "ten", "x"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("ten"), "{stderr}");
}

#[test]
fn help_has_examples() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("reader /data/log.txt"), "{stdout}");
    assert!(stdout.contains("READER_POLL"), "{stdout}");
}

// --- a stdout nobody reads ---

/// 1.7 MB of numbered lines: more than the pipe, the output's bound and
/// its chunks together.
fn big_file(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, numbered(1, 150_000)).unwrap();
    path
}

#[test]
fn sigterm_while_stdout_is_full_exits_within_the_drain_deadline_in_every_mode() {
    // Regression: stdout was written from the runtime's only thread, so a
    // full pipe blocked it and SIGTERM was never handled.
    let dir = tempfile::tempdir().unwrap();
    let big = big_file(dir.path(), "big.log");
    for args in [&["--no-follow", "-n", "+1"][..], &["-n", "+1"][..]] {
        let mut command = reader();
        command.args(args).arg(&big);
        let (status, took) = testkit::sigterm_with_stdout_full(command, |_| {});
        assert_eq!(status.code(), Some(0), "{args:?}");
        assert!(
            took < Duration::from_millis(1500),
            "{args:?}: took {took:?}"
        );
    }
    // Lines the follower reads: appended once it follows.
    let later = dir.path().join("later.log");
    fs::write(&later, "").unwrap();
    let mut command = reader();
    command.args(["-n", "+1"]).arg(&later);
    let (status, took) = testkit::sigterm_with_stdout_full(command, |pid| {
        testkit::eventually("following", || testkit::is_watching(pid));
        append(&later, &numbered(1, 150_000));
    });
    assert_eq!(status.code(), Some(0));
    assert!(
        took < Duration::from_millis(1500),
        "following: took {took:?}"
    );
}

/// Waits until process `pid` has `path` open.
fn wait_until_open(pid: u32, path: &Path) {
    testkit::eventually("the FIFO opened", || {
        fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|target| target == path))
    });
}

#[test]
fn a_fifo_is_read_until_its_writers_close_it_and_sigterm_ends_the_wait_for_one() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("app.fifo");
    testkit::make_fifo(&fifo);
    // No writer yet: it waits for one, as `tail FIFO` does, but a signal
    // still ends it (the open does not block the runtime).
    let running = start(&["--no-follow", s(&fifo)]);
    wait_until_open(running.pid(), &fifo);
    stop(running);
    // A writer with lines: the last N once it closes its end.
    let mut writer = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    writer.write_all(numbered(1, 5).as_bytes()).unwrap();
    let running = start(&["--no-follow", "-n", "2", s(&fifo)]);
    wait_until_open(running.pid(), &fifo);
    drop(writer);
    let (status, output) = running.wait();
    assert_eq!(status.code(), Some(0), "{output:?}");
    assert_eq!(output.stdout, numbered(4, 5));
}
