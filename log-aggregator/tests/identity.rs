//! Files known by their content, through the real binary: a copy of a file
//! already read is not read again, logrotate's copytruncate copy gives the
//! lines the truncation took, a compressed rotation is never streamed as
//! text, `--exclude`, and files that are not regular files.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::Command;

use testkit::{Running, append, spawn};

fn aggregator(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_log-aggregator"));
    command.env_remove("LOG_AGGREGATOR_SOURCES");
    command.args(["--follow", "--poll-interval", "50ms"]);
    command.args(args);
    command
}

fn numbered(from: u32, to: u32) -> String {
    (from..to).map(|n| format!("line {n:05}\n")).collect()
}

/// Stops the aggregator and returns its stdout.
fn stop(running: Running) -> String {
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);
    output.stdout
}

fn assert_lines_once(out: &str, from: u32, to: u32) {
    let mut seen: Vec<&str> = out.lines().collect();
    seen.sort_unstable();
    let expected = numbered(from, to);
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(seen, expected, "output:\n{out}");
}

fn gzip(plain: &[u8], to: &Path) {
    let mut encoder = flate2::write::GzEncoder::new(
        fs::File::create(to).unwrap(),
        flate2::Compression::default(),
    );
    encoder.write_all(plain).unwrap();
    encoder.finish().unwrap();
}

#[test]
fn a_copy_of_a_file_already_read_is_not_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, &numbered(0, 100));
    let pattern = format!("{}/*", dir.path().display());
    let running = spawn(aggregator(&[&pattern]));
    running.wait_for_stdout_containing("line 00099\n");
    fs::copy(&log, dir.path().join("app.log.bak")).unwrap();
    append(&log, &numbered(100, 200));
    running.wait_for_stdout_containing("line 00199\n");
    assert_lines_once(&stop(running), 0, 200);
}

#[test]
fn copytruncate_lines_only_in_the_copy_are_read_from_it_once() {
    // The aggregator is stopped (SIGSTOP) while logrotate's two steps
    // happen, so lines written after our last read exist only in the copy.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, &numbered(0, 100));
    for follow in [log.display().to_string(), format!("{}*", log.display())] {
        let _ = fs::remove_file(dir.path().join("app.log.1"));
        fs::write(&log, numbered(0, 100)).unwrap();
        let running = spawn(aggregator(&[&follow]));
        running.wait_for_stdout_containing("line 00099\n");
        running.signal(libc::SIGSTOP);
        append(&log, &numbered(100, 150));
        fs::copy(&log, dir.path().join("app.log.1")).unwrap();
        OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&log, &numbered(150, 170));
        running.signal(libc::SIGCONT);
        running.wait_for_stdout_containing("line 00169\n");
        assert_lines_once(&stop(running), 0, 170);
    }
}

#[test]
fn a_compressed_rotation_is_never_streamed_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, &numbered(0, 50));
    // Compressed before we started, holding nothing we follow: skipped.
    gzip(
        numbered(1000, 1010).as_bytes(),
        &dir.path().join("old.log.9.gz"),
    );
    let pattern = format!("{}/*", dir.path().display());
    let running = spawn(aggregator(&[&pattern]));
    running.wait_for_stdout_containing("line 00049\n");
    // Rotated and compressed after we read it whole: nothing new.
    fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    append(&log, &numbered(50, 60));
    running.wait_for_stdout_containing("line 00059\n");
    let rotated = fs::read(dir.path().join("app.log.1")).unwrap();
    gzip(&rotated, &dir.path().join("app.log.1.gz"));
    fs::remove_file(dir.path().join("app.log.1")).unwrap();
    append(&log, &numbered(60, 70));
    running.wait_for_stdout_containing("line 00069\n");
    running.wait_for_stderr_containing("skipping compressed file");
    let out = stop(running);
    assert_lines_once(&out, 0, 70);
}

#[test]
fn lines_a_compressed_rotation_holds_past_the_checkpoint_are_read_from_it() {
    // Down while logrotate rotated and compressed: the lines written after
    // the last save are only in the .gz now.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).unwrap();
    let log = logs.join("app.log");
    append(&log, &numbered(0, 40));
    let pattern = format!("{}/app.log*", logs.display());
    let state_arg = state.display().to_string();
    let args = ["--checkpoint-dir", &state_arg, &pattern];
    let running = spawn(aggregator(&args));
    running.wait_for_stdout_containing("line 00039\n");
    let first = stop(running);
    append(&log, &numbered(40, 60));
    gzip(&fs::read(&log).unwrap(), &logs.join("app.log.1.gz"));
    fs::write(&log, numbered(60, 70)).unwrap();
    let running = spawn(aggregator(&args));
    running.wait_for_stdout_containing("line 00069\n");
    let second = stop(running);
    assert_lines_once(&format!("{first}{second}"), 0, 70);
}

#[test]
fn exclude_keeps_matching_files_out() {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("a.log"), "from a\n");
    append(&dir.path().join("b.debug.log"), "from b\n");
    let pattern = format!("{}/*.log", dir.path().display());
    let mut command = aggregator(&[&pattern]);
    command.env("LOG_AGGREGATOR_EXCLUDE", "*.debug.log");
    let running = spawn(command);
    running.wait_for_stdout_containing("from a\n");
    append(&dir.path().join("c.debug.log"), "from c\n");
    append(&dir.path().join("d.log"), "from d\n");
    running.wait_for_stdout_containing("from d\n");
    let out = stop(running);
    assert!(!out.contains("from b") && !out.contains("from c"), "{out}");
}

#[test]
fn a_fifo_and_device_symlinks_in_a_glob_are_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("a.log"), "from a\n");
    let fifo = dir.path().join("b.pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.log")).unwrap();
    std::os::unix::fs::symlink("/dev/stdout", dir.path().join("stdout.log")).unwrap();
    let pattern = format!("{}/*", dir.path().display());
    let running = spawn(aggregator(&[&pattern]));
    running.wait_for_stdout_containing("from a\n");
    running.wait_for_stderr_containing("b.pipe");
    append(&dir.path().join("a.log"), "more from a\n");
    running.wait_for_stdout_containing("more from a\n");
    let (status, took, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);
    assert!(took < std::time::Duration::from_secs(2), "{took:?}");
    assert_eq!(output.stdout, "from a\nmore from a\n");
    for name in ["b.pipe", "zero.log", "stdout.log"] {
        assert!(output.stderr.contains(name), "{name}: {}", output.stderr);
    }
}
