//! The real `adapter` binary: stdin and a followed file, each way of
//! handling bad lines, counts at exit, metrics, SIGTERM, bad flags.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::{append, spawn};

fn adapter() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_adapter"));
    command.env_remove("LOG_LEVEL");
    command
}

/// Runs the adapter with `input` on stdin; returns (success, stdout, stderr).
fn run_with_stdin(args: &[&str], input: &[u8]) -> (bool, String, String) {
    let mut child = adapter()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting adapter");
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().expect("waiting for adapter");
    writer.join().expect("writer thread");
    (
        output.status.success(),
        String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const WRITER_LINES: &[u8] = b"Wed Nov 25 14:01:13 UTC 2026 - Hello from writer\n\
not a writer line \xff\n\
Wed Nov 25 14:01:18 UTC 2026 - Hello from writer";

#[test]
fn stdin_lines_become_json_and_bad_lines_are_emitted_with_the_reason() {
    let (ok, stdout, stderr) = run_with_stdin(&["--from", "writer"], WRITER_LINES);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout,
        "{\"timestamp\":\"2026-11-25T14:01:13Z\",\"message\":\"Hello from writer\"}\n\
         {\"message\":\"not a writer line \u{fffd}\",\"parse_error\":\"date is not like 'Wed Nov 25 14:01:13 UTC 2026'\"}\n\
         {\"timestamp\":\"2026-11-25T14:01:18Z\",\"message\":\"Hello from writer\"}\n"
    );
    assert!(
        stderr.contains("3 lines read, 2 records parsed, 1 unparsed emitted"),
        "{stderr}"
    );
}

#[test]
fn stdin_lines_longer_than_the_limit_are_cut_across_reads_and_at_the_end() {
    // A line longer than a read of stdin, then a short one, then an
    // overlong last line without newline: each cut once, counted once.
    let mut input = b"msg=".to_vec();
    input.extend(std::iter::repeat_n(b'a', 100_000));
    input.extend_from_slice(b"\nmsg=ok\nmsg=");
    input.extend(std::iter::repeat_n(b'b', 50));
    let (ok, stdout, stderr) =
        run_with_stdin(&["--from", "logfmt", "--max-line-bytes", "10"], &input);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout,
        "{\"msg\":\"aaaaaa\"}\n{\"msg\":\"ok\"}\n{\"msg\":\"bbbbbb\"}\n"
    );
    assert!(
        stderr.contains("3 lines read, 3 records parsed") && stderr.contains("2 truncated"),
        "{stderr}"
    );
}

#[test]
fn on_error_drop_drops_and_counts() {
    let (ok, stdout, stderr) =
        run_with_stdin(&["--from", "writer", "--on-error", "drop"], WRITER_LINES);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(!stdout.contains("parse_error"), "{stdout}");
    assert!(stderr.contains("1 unparsed dropped"), "{stderr}");
}

#[test]
fn unparsed_lines_are_appended_raw_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let unparsed = dir.path().join("unparsed.log");
    std::fs::write(&unparsed, b"from before\n").unwrap();
    let (ok, stdout, stderr) = run_with_stdin(
        &["--from", "writer", "--unparsed", unparsed.to_str().unwrap()],
        WRITER_LINES,
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert_eq!(
        std::fs::read(&unparsed).unwrap(),
        b"from before\nnot a writer line \xff\n"
    );
    assert!(stderr.contains("1 unparsed set aside"), "{stderr}");
}

#[test]
fn env_vars_configure_every_flag() {
    let mut command = adapter();
    command
        .env("ADAPTER_FROM", "logfmt")
        .env("ADAPTER_TO", "template")
        .env("ADAPTER_TEMPLATE", "{pod} {level}: {msg}")
        .env("ADAPTER_ADD", "pod=web-0");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"level=warn msg=\"disk almost full\"\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "web-0 warn: disk almost full\n"
    );
}

#[test]
fn a_file_created_later_is_followed_from_its_start_and_sigterm_flushes_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.txt");
    let mut command = adapter();
    command
        .args(["--from", "writer", "--poll-interval", "100ms"])
        .arg(&log);
    let running = spawn(command);
    append(&log, "Wed Nov 25 14:01:13 UTC 2026 - Hello from writer\n");
    running.wait_for_stdout_containing("\"timestamp\":\"2026-11-25T14:01:13Z\"");
    append(&log, "garbage\nWed Nov 25 14:01:18 UTC 2026 - ");
    running.wait_for_stdout_containing("\"parse_error\"");
    append(&log, "second\n");
    running.wait_for_stdout_containing("\"message\":\"second\"");
    let (status, elapsed, output) = running.terminate();
    assert!(status.success(), "{status:?}\n{}", output.stderr);
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    assert_eq!(
        output.stdout,
        "{\"timestamp\":\"2026-11-25T14:01:13Z\",\"message\":\"Hello from writer\"}\n\
         {\"message\":\"garbage\",\"parse_error\":\"date is not like 'Wed Nov 25 14:01:13 UTC 2026'\"}\n\
         {\"timestamp\":\"2026-11-25T14:01:18Z\",\"message\":\"second\"}\n"
    );
    assert!(
        output
            .stderr
            .contains("3 lines read, 2 records parsed, 1 unparsed emitted"),
        "{}",
        output.stderr
    );
}

#[test]
fn sigterm_while_waiting_on_stdin_exits_cleanly_within_a_second() {
    let mut command = adapter();
    command
        .args(["--from", "json", "--log-level", "debug"])
        .stdin(Stdio::piped());
    let running = spawn(command);
    // Signal handlers are installed before reading starts.
    running.wait_for_stderr_containing("reading stdin");
    let (status, elapsed, output) = running.terminate();
    assert!(status.success(), "{status:?}\n{}", output.stderr);
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    assert!(output.stderr.contains("0 lines read"), "{}", output.stderr);
}

#[test]
fn no_follow_reads_a_file_to_its_end_including_a_last_line_without_newline() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    std::fs::write(
        &log,
        "::1 - - [25/Nov/2026:14:01:13 +0100] \"GET / HTTP/1.1\" 200 615 \"-\" \"curl/8.5.0\"\n\
         10.0.0.1 - bob [25/Nov/2026:14:01:14 +0100] \"POST /login HTTP/1.1\" 302 0 \"https://x/\" \"Mozilla/5.0\"",
    )
    .unwrap();
    let output = adapter()
        .args(["--from", "combined", "--to", "logfmt", "--no-follow"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "host=::1 timestamp=2026-11-25T13:01:13Z message=\"GET / HTTP/1.1\" method=GET path=/ protocol=HTTP/1.1 status=200 size=615 agent=curl/8.5.0\n\
         host=10.0.0.1 user=bob timestamp=2026-11-25T13:01:14Z message=\"POST /login HTTP/1.1\" method=POST path=/login protocol=HTTP/1.1 status=302 size=0 referrer=https://x/ agent=Mozilla/5.0\n"
    );
}

#[test]
fn counters_are_served_on_listen() {
    // The binary does not print the port it got for 127.0.0.1:0: pick a free one.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.jsonl");
    std::fs::write(&log, "{\"a\":1}\nnot json\n").unwrap();
    let mut command = adapter();
    command
        .args(["--from", "json", "--poll-interval", "100ms", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg(&log);
    let running = spawn(command);
    running.wait_for_stdout_containing("parse_error");
    let scrape = || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut body = String::new();
        stream.read_to_string(&mut body).ok()?;
        Some(body)
    };
    testkit::eventually("metrics with the counts", || {
        scrape().is_some_and(|body| {
            body.contains("adapter_lines_total 2\n")
                && body.contains("adapter_parse_errors_total{action=\"emitted\"} 1\n")
                && body.contains("adapter_records_parsed_total 1\n")
        })
    });
    let (status, _, _) = running.terminate();
    assert!(status.success());
}

#[test]
fn a_bad_regex_is_one_clear_error_line_and_exit_1() {
    let output = adapter()
        .args(["--from", "regex", "--pattern", "(?<level>\\w+"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(output.stderr).unwrap(),
        "adapter: error: bad --pattern \"(?<level>\\\\w+\": unclosed group\n"
    );
}

#[test]
fn an_unwritable_unparsed_path_is_named_in_the_error() {
    let output = adapter()
        .args(["--unparsed", "/nonexistent/dir/unparsed.log"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr
            .starts_with("adapter: error: opening --unparsed file /nonexistent/dir/unparsed.log: "),
        "{stderr}"
    );
}

#[test]
fn a_multiline_record_on_open_stdin_is_written_after_the_timeout() {
    let mut command = adapter();
    command
        .args([
            "--from",
            "writer",
            "--multiline-start",
            "^[A-Z][a-z]{2} ",
            "--multiline-timeout",
            "200ms",
        ])
        .stdin(Stdio::piped());
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            b"Wed Nov 25 14:01:13 UTC 2026 - boom\njava.lang.IllegalStateException: bad\n\tat App.main(App.java:7)\n",
        )
        .unwrap();
    stdin.flush().unwrap();
    // stdin stays open: only the timeout can complete the record.
    let mut stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while stdout.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        let _ = sender.send(line);
    });
    let Ok(line) = receiver.recv_timeout(testkit::DEADLINE) else {
        let _ = child.kill();
        panic!("no record within {:?}", testkit::DEADLINE);
    };
    assert_eq!(
        String::from_utf8(line).unwrap(),
        "{\"timestamp\":\"2026-11-25T14:01:13Z\",\"message\":\"boom\\njava.lang.IllegalStateException: bad\\n\\tat App.main(App.java:7)\"}"
    );
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_closed_stdout_ends_a_followed_file_while_it_is_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, "one\ntwo\n");
    let mut command = adapter();
    command
        .args(["--from", "logfmt", "--to", "logfmt"])
        .arg(&path);
    let (line, status, took) = testkit::first_line_then_close_stdout(command);
    assert!(line.ends_with('\n') && !line.is_empty(), "{line:?}");
    assert_eq!(status.code(), Some(0));
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn json_a_strict_parser_refuses_is_kept_as_unparsed_in_every_mode() {
    // Regression: `--from json` copied a lone surrogate, 1e999 and a duplicate
    // key through, while `--from auto` or `--add` made them parse errors.
    let input = b"{\"a\":\"\\ud800\"}\n{\"a\":1e999}\n{\"a\":1,\"a\":2}\n{\"ok\":1}\n";
    for args in [
        &["--from", "json"][..],
        &["--from", "auto"][..],
        &["--from", "json", "--add", "pod=web-0"][..],
        &["--from", "json", "--drop", "x"][..],
    ] {
        let (ok, stdout, stderr) = run_with_stdin(args, input);
        assert!(ok, "{args:?}: {stderr}");
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            .map(|line| serde_json::from_str(line).expect("output is JSON"))
            .collect();
        assert_eq!(lines.len(), 4, "{args:?}: {stdout}");
        for (line, raw) in lines
            .iter()
            .zip(std::str::from_utf8(input).unwrap().lines())
        {
            if raw == "{\"ok\":1}" {
                assert_eq!(line["ok"], 1, "{args:?}: {stdout}");
            } else {
                assert_eq!(line["message"], raw, "{args:?}: {stdout}");
                assert!(line["parse_error"].is_string(), "{args:?}: {stdout}");
            }
        }
        assert!(stderr.contains("3 unparsed emitted"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_directory_or_an_unopenable_path_is_one_error_line_and_exit_1() {
    // Regression: following a directory logged one info line in Rust debug
    // form (`Unreadable(ReadFailure { .. })`) and waited forever.
    let dir = tempfile::tempdir().unwrap();
    let directory = dir.path().join("logs");
    std::fs::create_dir(&directory).unwrap();
    let under_a_file = dir.path().join("file");
    std::fs::write(&under_a_file, "x\n").unwrap();
    let cases = [
        (directory.clone(), "is a directory".to_owned()),
        (
            under_a_file.join("app.log"),
            "for reading: Not a directory".to_owned(),
        ),
    ];
    for (path, why) in cases {
        for extra in [&[][..], &["--no-follow"][..]] {
            let mut command = adapter();
            command
                .args(["--from", "writer"])
                .args(extra)
                .arg(&path)
                .stdin(Stdio::null());
            let (status, output) = spawn(command).wait();
            assert_eq!(status.code(), Some(1), "{path:?} {extra:?}: {output:?}");
            assert_eq!(output.stderr.lines().count(), 1, "{output:?}");
            assert!(
                output.stderr.starts_with("adapter: error: ")
                    && output.stderr.contains(&path.display().to_string())
                    && output.stderr.contains(&why),
                "{path:?} {extra:?}: {output:?}"
            );
        }
    }
}

/// A 64 KiB tmpfs mounted for one test (we run as root), unmounted when dropped.
struct SmallFilesystem {
    dir: tempfile::TempDir,
}

impl SmallFilesystem {
    fn mount() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        mounted.then_some(Self { dir })
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_under_unparsed_names_the_file_and_counts_what_it_holds() {
    // Regression: the error did not name the file, and the count of lines
    // set aside (276) was above what the file held (140).
    let line = format!("not a writer line {}\n", "x".repeat(80));
    let input = line.repeat(4000); // ~400 KB of bad lines for a 64 KiB disk
    let check = |target: &std::path::Path| {
        let (ok, _, stderr) = run_with_stdin(
            &["--from", "writer", "--unparsed", target.to_str().unwrap()],
            input.as_bytes(),
        );
        assert!(!ok, "{stderr}");
        let error = stderr
            .lines()
            .find(|line| line.starts_with("adapter: error: "))
            .unwrap_or_else(|| panic!("no error line: {stderr}"));
        assert!(
            error.contains(&format!("writing --unparsed file {}", target.display()))
                && error.contains("No space left on device"),
            "{error}"
        );
        let counted: u64 = stderr
            .split(" unparsed set aside")
            .next()
            .and_then(|before| before.rsplit(", ").next())
            .and_then(|count| count.parse().ok())
            .unwrap_or_else(|| panic!("no count: {stderr}"));
        counted
    };
    // /dev/full: every write fails, nothing is set aside.
    assert_eq!(check(std::path::Path::new("/dev/full")), 0);
    match SmallFilesystem::mount() {
        Some(disk) => {
            let target = disk.dir.path().join("unparsed.log");
            let counted = check(&target);
            let held = std::fs::read(&target).unwrap();
            let lines = held.iter().filter(|byte| **byte == b'\n').count() as u64;
            assert!(lines > 0, "the disk took nothing");
            assert_eq!(counted, lines, "count {counted}, file holds {lines} lines");
        }
        None => eprintln!("mount -t tmpfs failed (not root?): tested with /dev/full only"),
    }
}

#[test]
fn listen_takes_colon_port_and_max_line_bytes_0_is_refused() {
    // Regression: `--listen :PORT` (the client's form) was a parse error,
    // and `--max-line-bytes 0` cut every line to one byte.
    let mut command = adapter();
    command
        .args(["--from", "json", "--listen", ":0", "--log-level", "info"])
        .stdin(Stdio::piped());
    let running = spawn(command);
    running.wait_for_stderr_containing("serving /metrics");
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{status:?} {output:?}");

    for (args, expected) in [
        (&["--max-line-bytes", "0"][..], "must be at least 1 byte"),
        (&["--listen", "9102"][..], "invalid listen address \"9102\""),
    ] {
        let output = adapter().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // The shared follow flags' validation, through the adapter's own
    // environment variable names, and the flags it gained with them.
    let output = adapter()
        .env("ADAPTER_MAX_LINE_BYTES", "0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 1 byte"));
    let output = adapter()
        .env("ADAPTER_POLL_INTERVAL", "0s")
        .arg("/tmp/x.log")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--poll-interval must be more than zero")
    );
    let (ok, stdout, stderr) = run_with_stdin(
        &[
            "--from",
            "logfmt",
            "--rotate-wait",
            "1s",
            "--event-coalesce",
            "0s",
            "--max-open-files",
            "4",
        ],
        b"a=1\n",
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "{\"a\":\"1\"}\n");
}

#[test]
fn an_rfc5424_line_whose_version_is_not_1_is_kept_as_unparsed() {
    // Regression: VERSION 2 came out as "version":2; RFC 5424 defines only 1.
    let line = "<13>2 2024-06-01T12:00:00Z h a 1 - - x";
    let (ok, stdout, stderr) =
        run_with_stdin(&["--from", "rfc5424"], format!("{line}\n").as_bytes());
    assert!(ok, "{stderr}");
    let record: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON line");
    assert_eq!(record["message"], line);
    assert_eq!(record["parse_error"], "RFC 5424 VERSION must be 1, not 2");
    let (ok, stdout, stderr) = run_with_stdin(&["--from", "auto"], format!("{line}\n").as_bytes());
    assert!(ok, "{stderr}");
    let record: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON line");
    assert!(record.get("version").is_none(), "{stdout}");
}

#[test]
fn sigterm_while_stdout_is_full_exits_within_the_drain_deadline_in_every_mode() {
    // Regression: stdout was written from the runtime's only thread, so a
    // full pipe blocked it and SIGTERM was never handled.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.log");
    let lines: String = (0..100_000)
        .map(|n| format!("level=info n={n}\n"))
        .collect();
    std::fs::write(&big, &lines).unwrap();
    let modes: [(&str, &[&str]); 3] = [
        ("followed file", &[]),
        ("--no-follow", &["--no-follow"]),
        ("stdin", &["-"]),
    ];
    for (mode, args) in modes {
        let mut command = adapter();
        command.args(["--from", "logfmt"]).args(args);
        if mode == "stdin" {
            command.stdin(std::fs::File::open(&big).unwrap());
        } else {
            command.arg(&big).stdin(Stdio::null());
        }
        let (status, took) = testkit::sigterm_with_stdout_full(command, |_| {});
        assert_eq!(status.code(), Some(0), "{mode}");
        assert!(took < Duration::from_millis(1500), "{mode}: took {took:?}");
    }
}

#[test]
fn a_long_line_is_cut_once_where_it_is_read_and_counted_from_stdin_and_a_file() {
    let args = ["--from", "logfmt", "--max-line-bytes", "8", "--no-follow"];
    let (ok, stdout, stderr) = run_with_stdin(&args, b"key=0123456789\nb=1\n");
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "{\"key\":\"0123\"}\n{\"b\":\"1\"}\n");
    assert!(stderr.contains("1 truncated"), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.log");
    append(&path, "key=0123456789\nb=1\n");
    let output = adapter().args(args).arg(&path).output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), stdout);
    assert!(String::from_utf8_lossy(&output.stderr).contains("1 truncated"));
}

#[test]
fn a_fifo_is_read_like_stdin_and_sigterm_ends_the_wait_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("app.fifo");
    testkit::make_fifo(&fifo);
    // No writer yet: it waits for one, as `cat FIFO` does, but a signal
    // still ends it (the open does not block the runtime).
    let mut command = adapter();
    command
        .args(["--from", "logfmt", "--no-follow", "--log-level", "debug"])
        .arg(&fifo);
    let running = spawn(command);
    running.wait_for_stderr_containing(&format!("reading {}", fifo.display()));
    let (status, took, output) = running.terminate();
    assert!(status.success(), "{output:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(output.stdout, "");
    // A writer with lines: read until it closes its end.
    let mut writer = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    writer.write_all(b"a=1\nb=2\n").unwrap();
    let mut command = adapter();
    command.args(["--from", "logfmt", "--no-follow"]).arg(&fifo);
    let running = spawn(command);
    running.wait_for_stdout_containing("{\"b\":\"2\"}\n");
    drop(writer);
    let (status, output) = running.wait();
    assert!(status.success());
    assert_eq!(output.stdout, "{\"a\":\"1\"}\n{\"b\":\"2\"}\n");
    // Followed: writers come and go until SIGTERM.
    let mut command = adapter();
    command.args(["--from", "logfmt"]).arg(&fifo);
    let running = spawn(command);
    for line in ["c=3\n", "d=4\n"] {
        // Blocks until the adapter has the FIFO open, then writes and closes.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .unwrap()
            .write_all(line.as_bytes())
            .unwrap();
    }
    running.wait_for_stdout_containing("{\"d\":\"4\"}\n");
    let (status, _, output) = running.terminate();
    assert!(status.success());
    assert_eq!(output.stdout, "{\"c\":\"3\"}\n{\"d\":\"4\"}\n");
}
