// The real `writer` binary against real temp files: the lab's layouts,
// targets, counts, concurrency, errors, signals, load formats, rotation and
// the checker.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use regex::Regex;
use testkit::{eventually, spawn};

/// `date` in a container without a zone database: `Wed Nov 25 14:01:13 UTC 2026`.
const DATE: &str = r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d UTC \d{4}";

fn writer() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_writer"));
    command.env("TZ", "UTC").stdin(Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("WRITER_") {
            command.env_remove(key);
        }
    }
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("running writer")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn assert_lines(path: &Path, pattern: &str, count: usize) {
    let re = Regex::new(&format!("^{pattern}$")).unwrap();
    let text = read(path);
    assert!(text.ends_with('\n'), "{text:?}");
    for line in text.lines() {
        assert!(re.is_match(line), "line {line:?} does not match {pattern}");
    }
    assert_eq!(text.lines().count(), count, "{text}");
}

fn verify(args: &[&str], files: &[&Path]) -> Output {
    run(writer().arg("verify").args(args).args(files))
}

// --- lab mode ---------------------------------------------------------------

#[test]
fn lab_line_is_the_busybox_date_then_hello_from_writer() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.txt");
    let out = run(writer().args(["--count", "1"]).arg(&log));
    assert!(out.status.success(), "{out:?}");
    assert_lines(&log, &format!("{DATE} - Hello from writer"), 1);
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
}

#[test]
fn sidecar_logging_targets_get_their_own_messages_which_may_contain_equals() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.log");
    let error = dir.path().join("error.log");
    let out = run(writer()
        .args(["--count", "2", "--interval", "10ms"])
        .arg(format!("{}=Application log entry", app.display()))
        .arg(format!("{}=a=b, c", error.display())));
    assert!(out.status.success(), "{out:?}");
    assert_lines(&app, &format!("{DATE} - Application log entry"), 2);
    assert_lines(&error, &format!("{DATE} - a=b, c"), 2);
}

#[test]
fn count_writes_exactly_n_lines_and_the_first_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.txt");
    // With an hour between lines, a first line seen at all was written at once.
    let running = spawn({
        let mut command = writer();
        command.args(["--interval", "1h", "--count", "2"]).arg(&log);
        command
    });
    eventually("the first line", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.ends_with('\n'))
    });
    let (status, _, _) = running.terminate();
    assert!(status.success());
    assert_lines(&log, &format!("{DATE} - Hello from writer"), 1);

    let fast = dir.path().join("fast.txt");
    let out = run(writer()
        .args(["--interval", "5ms", "--count", "3"])
        .arg(&fast));
    assert!(out.status.success(), "{out:?}");
    assert_lines(&fast, &format!("{DATE} - Hello from writer"), 3);
}

#[test]
fn every_target_gets_its_first_line_at_once_even_past_512_targets() {
    let dir = tempfile::tempdir().unwrap();
    let targets: Vec<_> = (0..600)
        .map(|index| dir.path().join(format!("{index:03}.log")))
        .collect();
    // With an hour between lines, a target not started at once has nothing.
    let running = spawn({
        let mut command = writer();
        command
            .args(["--interval", "1h", "--count", "2"])
            .args(&targets);
        command
    });
    eventually("a first line in each of the 600 targets", || {
        targets
            .iter()
            .all(|path| std::fs::read_to_string(path).is_ok_and(|t| t.ends_with('\n')))
    });
    let (status, _, _) = running.terminate();
    assert!(status.success());
}

#[test]
fn three_containers_layout_puts_the_name_before_the_date() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.txt");
    let out = run(writer()
        .args(["--count", "1", "--layout", "{message}: {time}"])
        .arg(format!("{}=Writer 1", data.display())));
    assert!(out.status.success(), "{out:?}");
    assert_lines(&data, &format!("Writer 1: {DATE}"), 1);
}

#[test]
fn init_demo_replaces_the_file_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("app.conf");
    std::fs::write(&conf, "stale content\n").unwrap();
    let out = run(writer()
        .args(["--count", "1", "--truncate", "--layout", "{message}"])
        .arg(format!("{}=Configuration initialized", conf.display())));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(read(&conf), "Configuration initialized\n");
}

#[test]
fn missing_parent_directories_are_created() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("a/b/c/log.txt");
    let out = run(writer().args(["--count", "1"]).arg(&log));
    assert!(out.status.success(), "{out:?}");
    assert_lines(&log, &format!("{DATE} - Hello from writer"), 1);
}

#[test]
fn unwritable_path_is_one_error_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    // A directory cannot be created under a regular file, even by root.
    let bad = file.join("log.txt");
    let good = dir.path().join("good.log");
    let out = run(writer().args(["--count", "1"]).arg(&good).arg(&bad));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("writer: error: "), "{stderr}");
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert!(stderr.contains("Not a directory"), "{stderr}");
    assert!(
        read(&good).is_empty(),
        "nothing is written when a target is bad"
    );
}

#[test]
fn sigterm_ends_the_lab_loop_with_status_zero_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.txt");
    let running = spawn({
        let mut command = writer();
        command.args(["--interval", "1h"]).arg(&log);
        command
    });
    eventually("the first line", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.ends_with('\n'))
    });
    let (status, elapsed, _) = running.terminate();
    assert!(status.success(), "{status:?}");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
}

#[test]
fn sigterm_ends_a_full_speed_run_with_whole_lines_and_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("load.log");
    let running = spawn({
        let mut command = writer();
        command.args(["--rate", "0", "--report", "json"]).arg(&log);
        command
    });
    eventually("some lines", || {
        std::fs::metadata(&log).is_ok_and(|m| m.len() > 100_000)
    });
    let (status, elapsed, output) = running.terminate();
    assert!(status.success(), "{status:?}");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    let report: serde_json::Value = serde_json::from_str(output.stderr.trim()).unwrap();
    let lines = report["targets"][0]["lines"].as_u64().unwrap();
    assert_eq!(read(&log).lines().count() as u64, lines);
    let out = verify(&["--expect", &lines.to_string()], &[&log]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn two_writers_on_one_file_never_interleave_partial_lines() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("data.txt");
    let start = |name: &str| {
        writer()
            .args([
                "--rate", "0", "--count", "20000", "--size", "300", "--report", "none",
            ])
            .args(["--name", name])
            .arg(&shared)
            .spawn()
            .unwrap()
    };
    let (mut one, mut two) = (start("w1"), start("w2"));
    assert!(one.wait().unwrap().success() && two.wait().unwrap().success());
    let pattern = format!(r"{DATE} - Hello from writerx* seq=\d+ target=w[12]");
    assert_lines(&shared, &pattern, 40_000);
    assert!(read(&shared).lines().all(|line| line.len() == 299));
    let out = verify(&["--expect", "20000"], &[&shared]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_target_named_verify_is_written_through_dot_slash() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(writer()
        .current_dir(dir.path())
        .args(["--count", "1", "./verify"]));
    assert!(out.status.success(), "{out:?}");
    assert_lines(
        &dir.path().join("verify"),
        &format!("{DATE} - Hello from writer"),
        1,
    );
}

#[test]
fn targets_from_the_environment_are_separated_by_newlines() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let out = run(writer().args(["--count", "1"]).env(
        "WRITER_TARGETS",
        format!("{}=Hello, world\n{}=two words\n", a.display(), b.display()),
    ));
    assert!(out.status.success(), "{out:?}");
    assert_lines(&a, &format!("{DATE} - Hello, world"), 1);
    assert_lines(&b, &format!("{DATE} - two words"), 1);
}

#[test]
fn rate_wins_over_an_interval_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let out = run(writer()
        .env("WRITER_INTERVAL", "1h")
        .args(["--rate", "1000", "--count", "5", "--report", "none"])
        .arg(&log));
    assert!(out.status.success(), "{out:?}");
    assert_lines(
        &log,
        &format!(r"{DATE} - Hello from writer seq=\d target=app"),
        5,
    );
}

#[test]
fn help_shows_the_lab_examples() {
    let out = run(writer().arg("--help"));
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("writer --interval 3s /var/log/app.log='Application log entry'"),
        "{help}"
    );
    assert!(help.contains("[env: WRITER_INTERVAL="), "{help}");
    let out = run(writer().args(["verify", "--help"]));
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("writer verify --expect 100000 -"), "{help}");
}

#[test]
fn bad_flags_are_rejected_with_the_reason() {
    let out = run(writer().args(["--interval", "0s", "x.log"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--interval must be more than zero"));
    let out = run(writer().args(["--layout", "{when}", "x.log"]));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown placeholder {when}"),
        "{out:?}"
    );
}

// --- load mode --------------------------------------------------------------

#[test]
fn json_format_is_one_object_per_line_with_time_message_seq_target() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let out = run(writer()
        .args(["--format", "json", "--count", "3", "--interval", "1ms"])
        .arg(&log));
    assert!(out.status.success(), "{out:?}");
    let rfc3339 = Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$").unwrap();
    for (index, line) in read(&log).lines().enumerate() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(value["seq"], index as u64 + 1);
        assert_eq!(value["message"], "Hello from writer");
        assert_eq!(value["target"], "app");
        let time = value["time"].as_str().unwrap();
        assert!(rfc3339.is_match(time), "{time}");
    }
}

#[test]
fn every_load_format_passes_the_checker_and_honours_the_size() {
    let dir = tempfile::tempdir().unwrap();
    for format in ["text", "json", "common", "combined", "syslog", "logfmt"] {
        let log = dir.path().join(format!("{format}.log"));
        let out = run(writer()
            .args([
                "--rate", "0", "--count", "500", "--size", "400", "--format", format,
            ])
            .arg(&log));
        assert!(out.status.success(), "{format}: {out:?}");
        assert!(read(&log).lines().all(|line| line.len() == 399), "{format}");
        let out = verify(&["--expect", "500"], &[&log]);
        assert!(out.status.success(), "{format}: {out:?}");
    }
}

#[test]
fn load_report_json_counts_lines_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let report_file = dir.path().join("report.json");
    let out = run(writer()
        .args([
            "--rate",
            "0",
            "--count",
            "1000",
            "--report",
            "json",
            "--report-file",
        ])
        .arg(&report_file)
        .arg(&log));
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(report["targets"][0]["lines"], 1000);
    assert_eq!(report["targets"][0]["bytes"], read(&log).len() as u64);
    assert_eq!(report["total"]["lines"], 1000);
    let from_file: serde_json::Value = serde_json::from_str(&read(&report_file)).unwrap();
    assert_eq!(from_file["targets"][0]["lines"], 1000);
}

#[test]
fn rename_rotation_keeps_n_files_and_loses_no_line_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let out = run(writer()
        .args([
            "--rate",
            "0",
            "--count",
            "5000",
            "--rotate-size",
            "20KB",
            "--rotate-keep",
            "100",
        ])
        .arg(&log));
    assert!(out.status.success(), "{out:?}");
    let mut files: Vec<_> = (1..=100)
        .rev()
        .map(|n| dir.path().join(format!("app.log.{n}")))
        .filter(|p| p.exists())
        .collect();
    assert!(
        files.len() > 5,
        "expected several rotations, got {}",
        files.len()
    );
    assert!(
        files
            .iter()
            .all(|f| std::fs::metadata(f).unwrap().len() <= 20_000)
    );
    files.push(log.clone());
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let out = verify(&["--expect", "5000"], &refs);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // With --rotate-keep 3 only three rotated files remain, and they hold
    // the most recent lines without a gap.
    let kept = tempfile::tempdir().unwrap();
    let log = kept.path().join("app.log");
    let out = run(writer()
        .args([
            "--rate",
            "0",
            "--count",
            "5000",
            "--rotate-size",
            "20KB",
            "--rotate-keep",
            "3",
        ])
        .arg(&log));
    assert!(out.status.success(), "{out:?}");
    let mut names: Vec<_> = std::fs::read_dir(kept.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["app.log", "app.log.1", "app.log.2", "app.log.3"]);
    let files: Vec<_> = ["app.log.3", "app.log.2", "app.log.1", "app.log"]
        .iter()
        .map(|n| kept.path().join(n))
        .collect();
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let out = verify(&["--from-first", "--report", "json"], &refs);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["targets"][0]["max_seq"], 5000);
}

#[test]
fn copytruncate_rotation_keeps_the_file_and_every_line() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, "").unwrap();
    let inode = std::fs::metadata(&log).unwrap().ino();
    let out = run(writer()
        .args(["--rate", "0", "--count", "3000", "--rotate-size", "20KB"])
        .args(["--rotate-mode", "copytruncate", "--rotate-keep", "100"])
        .arg(&log));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::metadata(&log).unwrap().ino(), inode);
    let mut files: Vec<_> = (1..=100)
        .rev()
        .map(|n| dir.path().join(format!("app.log.{n}")))
        .filter(|p| p.exists())
        .collect();
    assert!(files.len() > 3);
    files.push(log);
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let out = verify(&["--expect", "3000"], &refs);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn sighup_reopens_the_path_so_logrotate_create_mode_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let rotated = dir.path().join("app.log.1");
    let running = spawn({
        let mut command = writer();
        command
            .args(["--rate", "2000", "--report", "json"])
            .arg(&log);
        command
    });
    let size = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
    eventually("some lines", || size(&log) > 1000);
    // logrotate's create mode: rename, (create), then postrotate's SIGHUP.
    std::fs::rename(&log, &rotated).unwrap();
    let renamed_at = size(&rotated);
    eventually(
        "a line written to the renamed file before the signal",
        || size(&rotated) > renamed_at,
    );
    running.signal(libc::SIGHUP);
    eventually("new lines at the path", || size(&log) > 1000);
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{status:?}: {}", output.stderr);
    // stderr: the reopen is logged, then the JSON report.
    assert!(output.stderr.contains("SIGHUP"), "{}", output.stderr);
    let json = output.stderr.lines().find(|l| l.starts_with('{')).unwrap();
    let report: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(report["targets"][0]["reopens"], 1, "{report}");
    let lines = report["targets"][0]["lines"].as_u64().unwrap();
    let out = verify(
        &["--expect", &lines.to_string(), "--report", "json"],
        &[&rotated, &log],
    );
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{verdict}");
    let app = &verdict["targets"][0];
    assert_eq!(
        (&app["lost"], &app["duplicated"], &app["out_of_order"]),
        (&0.into(), &0.into(), &0.into()),
        "{verdict}"
    );
}

#[test]
fn writer_rotate_modes_delete_and_rename_late_write_every_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let out = run(writer()
        .args(["--rate", "0", "--count", "6000", "--rotate-size", "20KB"])
        .args(["--rotate-mode", "rename-late", "--rotate-late", "0s"])
        .args(["--rotate-keep", "100", "--report", "json"])
        .arg(&log));
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    let mut files: Vec<_> = (1..=100)
        .rev()
        .map(|n| dir.path().join(format!("app.log.{n}")))
        .filter(|p| p.exists())
        .collect();
    // Every rotation kept a file, and reopened the path after its late writes.
    assert!(files.len() > 2, "{files:?}");
    assert_eq!(report["targets"][0]["rotations"], files.len(), "{report}");
    assert_eq!(report["targets"][0]["reopens"], files.len(), "{report}");
    files.push(log.clone());
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let out = verify(&["--expect", "6000"], &refs);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // delete: only the last file is left, holding the newest lines.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let out = run(writer()
        .args(["--rate", "0", "--count", "3000", "--rotate-size", "20KB"])
        .args(["--rotate-mode", "delete", "--report", "json"])
        .arg(&log));
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert!(report["targets"][0]["rotations"].as_u64().unwrap() > 3);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let out = verify(&["--from-first", "--report", "json"], &[&log]);
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{verdict}");
    assert_eq!(verdict["targets"][0]["max_seq"], 3000);
}

// --- the checker ------------------------------------------------------------

#[test]
fn verify_expect_target_counts_a_target_never_seen_as_all_lost() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.txt");
    let lines: String = (1..=3)
        .map(|s| format!("line seq={s} target=app\n"))
        .collect();
    std::fs::write(&capture, lines).unwrap();
    let out = verify(
        &[
            "--expect",
            "3",
            "--expect-target",
            "app",
            "--expect-target",
            "error",
            "--report",
            "json",
        ],
        &[&capture],
    );
    assert_eq!(out.status.code(), Some(1));
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["targets"][0]["ok"], true, "{verdict}");
    let error = &verdict["targets"][1];
    assert_eq!(error["target"], "error", "{verdict}");
    assert_eq!(
        (&error["lost"], &error["missing"]),
        (&3.into(), &true.into())
    );

    // The same from the environment, comma-separated; all present passes.
    let out = run(writer()
        .env("WRITER_VERIFY_EXPECT_TARGET", "app,error")
        .args(["verify", "--expect", "3"])
        .arg(&capture));
    assert_eq!(out.status.code(), Some(1));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("error: no line of this target was seen"),
        "{table}"
    );
    let out = run(writer()
        .env("WRITER_VERIFY_EXPECT_TARGET", "app")
        .args(["verify", "--expect", "3"])
        .arg(&capture));
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn verify_reports_lost_duplicated_and_reordered_lines_and_fails() {
    let mut child = writer()
        .args(["verify", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input = [1, 2, 2, 5, 4, 6, 9]
        .iter()
        .map(|s| format!("/var/log/app.log: line seq={s} target=app\n"))
        .collect::<String>()
        + "=== Application Logs ===\n";
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let table = String::from_utf8(out.stdout).unwrap();
    let row = table.lines().find(|l| l.starts_with("app ")).expect(&table);
    let cells: Vec<_> = row.split_whitespace().collect();
    // TARGET LINES MAX_SEQ LOST DUPLICATED OUT_OF_ORDER LOST_RANGES
    assert_eq!(cells, ["app", "7", "9", "3", "1", "1", "3,7-8"], "{table}");
    assert!(table.contains("lines without a marker: 1"), "{table}");
    assert!(table.trim_end().ends_with("FAILED"), "{table}");
}

#[test]
fn verify_names_a_missing_file() {
    let out = verify(&[], &[Path::new("/nonexistent/capture.txt")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("opening /nonexistent/capture.txt: No such file"),
        "{stderr}"
    );
}
