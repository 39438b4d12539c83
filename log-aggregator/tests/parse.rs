//! `--follow --parse`: a glob of NGINX access logs parsed into JSON records
//! with the pod's fields, through rotation and a restart from checkpoints,
//! by the real binary on real files.

use std::path::Path;
use std::process::Command;

use testkit::{Running, append, spawn};

fn aggregator() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_log-aggregator"));
    for variable in ["SOURCES", "PARSE", "ADD", "OUTPUT"] {
        command.env_remove(format!("LOG_AGGREGATOR_{variable}"));
    }
    command.arg("--follow");
    command
}

fn access(client: &str, path: &str, status: u16) -> String {
    format!(
        "{client} - - [01/Jun/2024:12:00:00 +0000] \"GET {path} HTTP/1.1\" {status} 612 \"-\" \"curl/8.5.0\"\n"
    )
}

/// Waits for `count` complete output lines, parsed as JSON.
fn records(running: &Running, count: usize) -> Vec<serde_json::Value> {
    let out = running.wait_for_stdout(&format!("{count} records"), |out| {
        out.lines().count() >= count && out.ends_with('\n')
    });
    out.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

fn record_for<'a>(records: &'a [serde_json::Value], path: &str) -> &'a serde_json::Value {
    records
        .iter()
        .find(|record| record["path"] == path)
        .unwrap_or_else(|| panic!("no record for {path} in {records:#?}"))
}

fn name(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

#[test]
fn a_glob_of_access_logs_is_parsed_with_the_pods_fields_through_rotation_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let state = dir.path().join("state");
    let (a, b) = (logs.join("a.log"), logs.join("b.log"));
    let bad = "this is not an access log \"line";
    append(&a, &access("10.0.0.1", "/a1", 200));
    append(&a, &format!("{bad}\n"));
    append(&b, &access("10.0.0.2", "/b1", 404));
    let glob = name(&logs.join("*.log"));
    let mut command = aggregator();
    command
        .args([
            "--parse",
            "combined",
            "--add",
            "pod=web-0",
            "--add",
            "ns=shop",
        ])
        .args(["--checkpoint-dir", state.to_str().unwrap(), &glob]);
    let running = spawn(command);
    let first = records(&running, 3);
    let a1 = record_for(&first, "/a1");
    assert_eq!(a1["file"], name(&a));
    assert_eq!(a1["host"], "10.0.0.1");
    assert_eq!(a1["method"], "GET");
    assert_eq!(a1["status"], 200);
    assert_eq!(a1["size"], 612);
    assert_eq!(a1["agent"], "curl/8.5.0");
    assert_eq!(a1["timestamp"], "2024-06-01T12:00:00Z");
    assert_eq!((&a1["pod"], &a1["ns"]), (&"web-0".into(), &"shop".into()));
    assert_eq!(record_for(&first, "/b1")["file"], name(&b));
    // The bad line is kept whole, as the adapter keeps it, with the fields.
    let unparsed = first
        .iter()
        .find(|record| record["parse_error"].is_string())
        .expect("the bad line is emitted");
    assert_eq!(unparsed["message"], bad);
    assert_eq!(unparsed["file"], name(&a));
    assert_eq!(unparsed["pod"], "web-0");

    // Rotation by rename: the new a.log is read from its start.
    std::fs::rename(&a, logs.join("a.log.1")).unwrap();
    append(&a, &access("10.0.0.1", "/a2", 200));
    let rotated = records(&running, 4);
    assert_eq!(record_for(&rotated, "/a2")["file"], name(&a));
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);

    // Written while it was down: read once after the restart, which takes
    // its flags from the environment (a manifest's Downward API values).
    append(&b, &access("10.0.0.2", "/b2", 500));
    let mut command = aggregator();
    command
        .env("LOG_AGGREGATOR_PARSE", "combined")
        .env("LOG_AGGREGATOR_ADD", "pod=web-1")
        .args(["--checkpoint-dir", state.to_str().unwrap(), &glob]);
    let running = spawn(command);
    let after = records(&running, 1);
    append(&b, &access("10.0.0.2", "/b3", 200));
    let after_more = records(&running, 2);
    let paths: Vec<_> = after_more.iter().map(|r| r["path"].clone()).collect();
    assert_eq!(paths, ["/b2", "/b3"], "nothing repeated after the restart");
    assert_eq!(after[0]["pod"], "web-1");
    assert_eq!(after[0]["status"], 500);
    let (status, _, _) = running.terminate();
    assert!(status.success());
}

#[test]
fn logfmt_and_template_records_and_flags_that_need_parse_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "level=info msg=hi secret=x\n");
    let mut command = aggregator();
    command
        .args([
            "--parse",
            "logfmt",
            "--output",
            "logfmt",
            "--drop",
            "secret,file",
        ])
        .arg(&log);
    let running = spawn(command);
    let out = running.wait_for_stdout_containing("\n");
    assert_eq!(out, "level=info msg=hi\n");
    running.terminate();

    let mut command = aggregator();
    command
        .args(["--parse", "logfmt", "--output", "template"])
        .args(["--template", "[{level}] {msg} ({file})"])
        .arg(&log);
    let running = spawn(command);
    let out = running.wait_for_stdout_containing("\n");
    assert_eq!(out, format!("[info] hi ({})\n", name(&log)));
    running.terminate();

    for (args, expected) in [
        (&["--output", "logfmt"][..], "needs --parse"),
        (&["--parse", "regex"], "--parse regex needs --pattern"),
        (
            &["--parse", "json", "--output", "plain"],
            "--parse writes records",
        ),
        (&["--add", "pod=x"], "--parse"),
    ] {
        let output = aggregator().args(args).arg(&log).output().unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
