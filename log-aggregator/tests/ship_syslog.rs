//! Shipping to a real rsyslog (Debian's `rsyslog` and `rsyslog-relp`),
//! started by each test on 127.0.0.1 as an ordinary process with a config
//! it writes: RELP with rsyslog killed and restarted mid-run, the
//! aggregator SIGKILLed mid-stream, plain TCP syslog through restarts.
//! Counted with the `writer` binary's sequence numbers and `writer verify`.
//! rsyslogd and imrelp must be installed (`cargo xtask test --install`
//! installs them); the tests fail saying so otherwise.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::rsyslog::{Rsyslog, free_port, lines_in, need_rsyslog, wait_for_all};
use support::{aggregator, checkpoint_offset, verify, writer};
use testkit::{Running, eventually, spawn};

fn shipping(sink: &str, address: &str, log: &Path, state: &Path) -> Command {
    let mut command = aggregator();
    command
        .args(["--sink", sink, "--ship-address", address])
        .args(["--ship-backoff-max", "500ms", "--listen", "127.0.0.1:0"])
        .args(["--checkpoint-dir", state.to_str().unwrap()])
        .arg(log);
    command
}

/// The value of the metric series `name{sink="..."}` on the aggregator's /metrics.
fn metric(running: &Running, name: &str) -> f64 {
    let stderr = running.wait_for_stderr_containing("/metrics");
    let start = stderr.find("http://").unwrap() + "http://".len();
    let end = start + stderr[start..].find("/metrics").unwrap();
    let mut stream = TcpStream::connect(&stderr[start..end]).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let prefix = format!("{name}{{");
    response
        .lines()
        .find(|line| line.starts_with(&prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{response}"))
}

/// Runs `writer` flat out for `count` lines into `log`.
fn write_load(log: &Path, count: u64, rate: u64) -> Child {
    writer()
        .args(["--rate", &rate.to_string(), "--count", &count.to_string()])
        .args(["--log-level", "warn"])
        .arg(format!("{}=load", log.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Kills rsyslog once its file holds `at` lines, keeps it down for
/// `outage`, starts it again.
fn outage(server: &mut Rsyslog, at: usize, outage: Duration) {
    eventually(&format!("{at} lines at rsyslog"), || {
        lines_in(&server.output) >= at
    });
    server.kill();
    // The outage's length is the scenario, not a synchronisation.
    std::thread::sleep(outage);
    server.run();
}

#[test]
fn relp_loses_nothing_when_rsyslog_is_killed_and_restarted_twice() {
    need_rsyslog("imrelp");
    const COUNT: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let state = dir.path().join("state");
    let mut server = Rsyslog::start(dir.path(), "imrelp");
    let started = Instant::now();
    let running = spawn(shipping("relp", &server.address(), &log, &state));
    let mut load = write_load(&log, COUNT, 0);
    outage(&mut server, 20_000, Duration::from_millis(700));
    outage(&mut server, 60_000, Duration::from_millis(700));
    assert!(load.wait().unwrap().success());
    wait_for_all(&server, COUNT, &running);
    let elapsed = started.elapsed();
    eventually("every line acknowledged", || {
        metric(&running, "log_aggregator_ship_lines_acked_total") >= COUNT as f64
    });
    let reconnects = metric(&running, "log_aggregator_ship_reconnects_total");
    let resent = metric(&running, "log_aggregator_ship_lines_resent_total");
    let up = metric(&running, "log_aggregator_ship_backend_up");
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);
    let (lost, duplicated, report) = verify(&server.output, COUNT);
    eprintln!(
        "RELP: {COUNT} lines through 2 rsyslog kills in {elapsed:.1?}: {lost} lost, \
         {duplicated} duplicated, {resent} resent without an answer, {reconnects} reconnects"
    );
    assert_eq!(lost, 0, "{report}");
    assert!(
        reconnects >= 2.0,
        "a reconnection per restart: {reconnects}"
    );
    assert_eq!(up, 1.0);
    // Every duplicate is a line sent again because its answer never came.
    assert!(
        duplicated as f64 <= resent,
        "{duplicated} > {resent}: {report}"
    );
    // RELP repeats only what was sent and not answered: at most a window
    // (128) per broken connection, and a connection breaks at each kill.
    assert!(duplicated <= 2 * 128, "{report}");
}

/// Ships `count` lines written at 20k lines/s through `sink`, SIGKILLing
/// the aggregator `kills` times at even points of rsyslog's file and
/// starting it again with the same checkpoint directory; returns when the
/// writer is done (the last aggregator is the caller's to start).
fn kill_mid_stream(
    sink: &str,
    server: &Rsyslog,
    log: &Path,
    state: &Path,
    count: u64,
    kills: usize,
) {
    let mut load = write_load(log, count, 20_000);
    for round in 1..=kills {
        let running = spawn(shipping(sink, &server.address(), log, state));
        let at = round * count as usize / (kills + 1);
        eventually(&format!("{at} lines at rsyslog"), || {
            lines_in(&server.output) >= at
        });
        running.signal(libc::SIGKILL);
        let (status, _) = running.wait();
        assert!(!status.success());
    }
    assert!(load.wait().unwrap().success());
}

#[test]
fn relp_loses_nothing_when_the_aggregator_is_killed_mid_stream() {
    need_rsyslog("imrelp");
    const COUNT: u64 = 60_000;
    const KILLS: usize = 2;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let state = dir.path().join("state");
    let server = Rsyslog::start(dir.path(), "imrelp");
    kill_mid_stream("relp", &server, &log, &state, COUNT, KILLS);
    let running = spawn(shipping("relp", &server.address(), &log, &state));
    wait_for_all(&server, COUNT, &running);
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);
    let (lost, duplicated, report) = verify(&server.output, COUNT);
    eprintln!(
        "RELP: {COUNT} lines, aggregator SIGKILLed {KILLS} times: {lost} lost, {duplicated} repeated"
    );
    assert_eq!(lost, 0, "{report}");
}

#[test]
fn syslog_tcp_delivers_through_rsyslog_restarts_and_reports_what_was_lost() {
    need_rsyslog("imtcp");
    const COUNT: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let state = dir.path().join("state");
    let mut server = Rsyslog::start(dir.path(), "imtcp");
    let running = spawn(shipping("syslog-tcp", &server.address(), &log, &state));
    let mut load = write_load(&log, COUNT, 0);
    outage(&mut server, 20_000, Duration::from_millis(700));
    // The first kill may take tens of thousands of lines with it (below):
    // the second comes after more lines arrived, not at a total.
    let after_first = lines_in(&server.output);
    outage(
        &mut server,
        after_first + 10_000,
        Duration::from_millis(700),
    );
    assert!(load.wait().unwrap().success());
    // Without acknowledgements, lines in the kernel's buffers when rsyslog
    // died are gone (the last ones too, maybe): the end is when the saved
    // position reaches the end of the file (everything written to a socket).
    let size = std::fs::metadata(&log).unwrap().len();
    eventually("every line written to rsyslog", || {
        checkpoint_offset(&state) == Some(size)
    });
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);
    let (lost, duplicated, report) = verify(&server.output, COUNT);
    eprintln!(
        "syslog over TCP: {COUNT} lines through 2 rsyslog kills: {lost} lost, {duplicated} duplicated"
    );
    // What the kernel held when rsyslog died is lost (documented): on
    // loopback the socket buffers autotune to megabytes, so each of the two
    // kills can take 40,000 lines or more (seen: 51,831 in all). Delivery
    // going on after the outages is what this bounds.
    assert!(lost < COUNT * 3 / 4, "{report}");
    assert_eq!(duplicated, 0, "{report}");
    assert!(
        output.stderr.contains("retrying with backoff"),
        "the outage is reported: {}",
        output.stderr
    );
}

/// The peak resident memory of process `pid`, in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn relp_down_at_start_pauses_reading_with_flat_memory_then_delivers_everything() {
    // rsyslog is not there while 400k lines (~24 MiB) are written: reading
    // pauses at the pipe's bound, nothing is saved as sent, memory stays a
    // fraction of the file; then rsyslog starts and every line arrives.
    need_rsyslog("imrelp");
    const COUNT: u64 = 400_000;
    const GROWTH_KIB: u64 = 8 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let state = dir.path().join("state");
    let port = free_port();
    let running = spawn(shipping("relp", &format!("127.0.0.1:{port}"), &log, &state));
    running.wait_for_stderr_containing("following");
    let start = peak_rss_kib(running.pid());
    let mut load = write_load(&log, COUNT, 0);
    assert!(load.wait().unwrap().success());
    let size = std::fs::metadata(&log).unwrap().len();
    eventually("the outage reported", || {
        running.stderr().contains("retrying with backoff")
    });
    let peak = peak_rss_kib(running.pid());
    eprintln!(
        "RELP down: {size} bytes written, aggregator peak RSS {start} KiB at start, {peak} KiB now, saved offset {:?}",
        checkpoint_offset(&state)
    );
    // The bound: the pipe (512 KiB), a chunk being filled (256 KiB), the
    // channel's chunk and the shipper's batch (1 MiB), with their copies.
    let growth = peak.saturating_sub(start);
    assert!(
        growth < GROWTH_KIB,
        "RSS grew by {growth} KiB for a {size}-byte file"
    );
    assert!(
        checkpoint_offset(&state).unwrap_or(0) == 0,
        "nothing acknowledged, nothing saved"
    );
    let server = Rsyslog::start_on(dir.path(), "imrelp", port);
    wait_for_all(&server, COUNT, &running);
    let peak = peak_rss_kib(running.pid());
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);
    let (lost, duplicated, report) = verify(&server.output, COUNT);
    eprintln!("RELP after the outage: {lost} lost, {duplicated} duplicated, peak RSS {peak} KiB");
    assert_eq!(lost, 0, "{report}");
    assert_eq!(duplicated, 0, "{report}");
    let growth = peak.saturating_sub(start);
    assert!(
        growth < GROWTH_KIB,
        "RSS grew by {growth} KiB through delivery"
    );
}

#[test]
fn syslog_tcp_loses_nothing_when_the_aggregator_is_killed_mid_stream() {
    // What the kernel took is delivered even when the process dies; a
    // restart repeats what was sent since the last save.
    need_rsyslog("imtcp");
    const COUNT: u64 = 60_000;
    const KILLS: usize = 2;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let state = dir.path().join("state");
    let server = Rsyslog::start(dir.path(), "imtcp");
    kill_mid_stream("syslog-tcp", &server, &log, &state, COUNT, KILLS);
    let running = spawn(shipping("syslog-tcp", &server.address(), &log, &state));
    let size = std::fs::metadata(&log).unwrap().len();
    eventually("every line written to rsyslog", || {
        checkpoint_offset(&state) == Some(size)
    });
    let needle = format!("seq={COUNT} ");
    eventually("the last line at rsyslog", || {
        std::fs::read_to_string(&server.output).is_ok_and(|text| text.contains(&needle))
    });
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);
    let (lost, duplicated, report) = verify(&server.output, COUNT);
    eprintln!(
        "syslog over TCP: {COUNT} lines, aggregator SIGKILLed {KILLS} times: {lost} lost, {duplicated} repeated"
    );
    assert_eq!(lost, 0, "{report}");
}

#[test]
fn relp_messages_carry_header_fields_and_escaped_structured_data_next_to_a_stdout_sink() {
    need_rsyslog("imrelp");
    const COUNT: u64 = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let lines: String = (1..=COUNT)
        .map(|seq| format!("load seq={seq} target=load\n"))
        .collect();
    std::fs::write(&log, lines).unwrap();
    let headers = dir.path().join("headers.log");
    // rsyslog's own RFC 5424 parser takes the fields apart.
    let server = Rsyslog::start_with(
        dir.path(),
        "imrelp",
        free_port(),
        &format!(
            r#"template(name="h" type="string" string="%hostname%|%app-name%|%procid%|%structured-data%|%msg%\n")
action(type="omfile" file="{}" template="h" flushOnTXEnd="on" asyncWriting="off")"#,
            headers.display()
        ),
    );
    let mut command = aggregator();
    command
        .env(
            "LOG_AGGREGATOR_SINK",
            format!("relp={},stdout", server.address()),
        )
        .env("LOG_AGGREGATOR_SYSLOG_PROCID", "uid-123")
        .env("LOG_AGGREGATOR_SYSLOG_SD_ID", "k8s@32473")
        .env("LOG_AGGREGATOR_SYSLOG_SD", r#"pod=web-1,note=a "q" \ b] c"#)
        .args(["--syslog-hostname", "pod-1", "--syslog-app-name", "app"])
        .args(["--listen", "127.0.0.1:0"])
        .arg("--checkpoint-dir")
        .arg(dir.path().join("state"))
        .arg(&log);
    let running = spawn(command);
    wait_for_all(&server, COUNT, &running);
    eventually("stdout's lines acknowledged", || {
        running.stdout().lines().count() as u64 >= COUNT
    });
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);

    let first = std::fs::read_to_string(&headers).unwrap();
    let first = first.lines().next().unwrap();
    assert_eq!(
        first,
        r#"pod-1|app|uid-123|[k8s@32473 pod="web-1" note="a \"q\" \\ b\] c"]|load seq=1 target=load"#
    );
    let captured = dir.path().join("stdout.txt");
    std::fs::write(&captured, &output.stdout).unwrap();
    for (what, path) in [("rsyslog", server.output.clone()), ("stdout", captured)] {
        let (lost, duplicated, report) = verify(&path, COUNT);
        assert_eq!((lost, duplicated), (0, 0), "{what}: {report}");
    }
}

/// `--parse` with a syslog sink: PRI's severity and TIMESTAMP are the
/// application's (from the parsed fields), as rsyslog's own parser reads
/// them back; the MSG is the JSON record.
#[test]
fn parsed_records_carry_their_severity_and_time_to_rsyslog() {
    need_rsyslog("imrelp");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(
        &log,
        "E1125 14:01:13.250000       1 node.go:123] failed\nplain words\n",
    )
    .unwrap();
    let headers = dir.path().join("headers.log");
    let server = Rsyslog::start_with(
        dir.path(),
        "imrelp",
        free_port(),
        &format!(
            r#"template(name="h" type="string" string="%syslogseverity-text%|%timereported:::date-rfc3339%|%msg%\n")
action(type="omfile" file="{}" template="h" flushOnTXEnd="on" asyncWriting="off")"#,
            headers.display()
        ),
    );
    let mut command = shipping("relp", &server.address(), &log, &dir.path().join("state"));
    command.args(["--parse", "klog"]);
    let running = spawn(command);
    eventually("both records at rsyslog", || lines_in(&headers) >= 2);
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);
    let received = std::fs::read_to_string(&headers).unwrap();
    let lines: Vec<&str> = received.lines().collect();
    let fields: Vec<&str> = lines[0].splitn(3, '|').collect();
    assert_eq!(fields[0], "err", "{received}");
    assert!(fields[1].contains("-11-25T14:01:13.25"), "{received}");
    assert!(fields[2].contains(r#""message":"failed""#), "{received}");
    // Unparsed: the configured severity (info) and the shipper's time.
    let unparsed: Vec<&str> = lines[1].splitn(3, '|').collect();
    assert_eq!(unparsed[0], "info", "{received}");
    assert!(unparsed[2].contains("parse_error"), "{received}");
}

#[test]
fn relp_down_while_the_file_keeps_growing_keeps_memory_flat() {
    // Lines written steadily during the outage: each write is a change
    // event and a small read, which must pause reading like one big read
    // does instead of piling up in the output pipe.
    need_rsyslog("imrelp");
    const COUNT: u64 = 200_000;
    const GROWTH_KIB: u64 = 6 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let state = dir.path().join("state");
    let port = free_port();
    let running = spawn(shipping("relp", &format!("127.0.0.1:{port}"), &log, &state));
    running.wait_for_stderr_containing("following");
    let start = peak_rss_kib(running.pid());
    let mut load = write_load(&log, COUNT, 40_000);
    assert!(load.wait().unwrap().success());
    let size = std::fs::metadata(&log).unwrap().len();
    let peak = peak_rss_kib(running.pid());
    let growth = peak.saturating_sub(start);
    eprintln!(
        "RELP down while {size} bytes were written at 40k lines/s: RSS {start} -> {peak} KiB"
    );
    assert!(
        growth < GROWTH_KIB,
        "RSS grew by {growth} KiB while a {size}-byte file was written during the outage"
    );
    let server = Rsyslog::start_on(dir.path(), "imrelp", port);
    wait_for_all(&server, COUNT, &running);
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);
    let (lost, duplicated, report) = verify(&server.output, COUNT);
    assert_eq!((lost, duplicated), (0, 0), "{report}");
}

/// The default build has no TLS: asking for it is a start-up error that
/// names the `tls` build, for every sink (tests/ship_tls.rs runs the
/// `tls` build against rsyslog).
#[cfg(not(feature = "tls"))]
#[test]
fn tls_addresses_are_refused_at_start_naming_the_tls_build() {
    for sink in [
        "relp=tls://localhost:2514",
        "syslog-tcp=tls://localhost:6514",
        "otlp=https://localhost:4318",
    ] {
        let output = aggregator()
            .args(["--sink", sink, "app.log"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{sink}: {stderr}");
        assert!(stderr.contains("--features tls"), "{sink}: {stderr}");
    }
}
