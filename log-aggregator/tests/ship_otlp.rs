//! Shipping over OTLP/HTTP to a receiver that decodes every request with
//! the official definitions (PyPI `opentelemetry-proto`, in .lab/otlp-venv:
//! `cargo xtask test --install` creates it) and answers 503 and 429 with
//! Retry-After on a schedule: every line arrives, with the attributes
//! docs/shipping.md lists, in protobuf or JSON, gzipped or not; and OTLP
//! next to stdout, where a position is saved only once both took a line.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{checkpoint_offset, verify, writer};
use testkit::{Running, eventually, spawn};

fn python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.lab/otlp-venv/bin/python3");
    assert!(
        python.exists(),
        "{} is missing: python3 -m venv .lab/otlp-venv && .lab/otlp-venv/bin/pip install \
         opentelemetry-proto (or cargo xtask test --install)",
        python.display()
    );
    python
}

/// The receiver, killed when dropped.
struct Receiver {
    child: Child,
    out: PathBuf,
    port: u16,
}

impl Receiver {
    /// Every `every_503`th request answered 503 (Retry-After: 1), every
    /// `every_429`th 429 (Retry-After: 0), every `every_413`th 413 (0: never).
    fn start(out: &Path, every_503: u32, every_429: u32, every_413: u32) -> Self {
        Self::start_with(out, [every_503, every_429, every_413], &[])
    }

    /// `env`: PORT (listen there), PARTIAL (records rejected per 2xx).
    fn start_with(out: &Path, schedule: [u32; 3], env: &[(&str, String)]) -> Self {
        let [every_503, every_429, every_413] = schedule;
        std::fs::create_dir_all(out).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/otlp_receiver.py");
        let child = Command::new(python())
            .envs(env.iter().map(|(name, value)| (name, value)))
            .arg(script)
            .arg(out)
            .arg(every_503.to_string())
            .arg(every_429.to_string())
            .arg(every_413.to_string())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let port_file = out.join("port");
        eventually("the receiver listening", || port_file.exists());
        let port = std::fs::read_to_string(&port_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        Self {
            child,
            out: out.to_owned(),
            port,
        }
    }

    fn stats(&self) -> serde_json::Value {
        std::fs::read_to_string(self.out.join("stats.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn metric(running: &Running, name: &str) -> f64 {
    metric_line(running, &format!("{name}{{"))
}

/// The value of `name{sink="sink"}`.
fn sink_metric(running: &Running, name: &str, sink: &str) -> f64 {
    metric_line(running, &format!("{name}{{sink=\"{sink}\"}}"))
}

/// The value of the first series whose line starts with `prefix`.
fn metric_line(running: &Running, prefix: &str) -> f64 {
    let name = prefix;
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
    response
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{response}"))
}

/// The string value of attribute `key` in an OTLP JSON attribute list.
fn attribute<'a>(attributes: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    attributes
        .as_array()?
        .iter()
        .find(|pair| pair["key"] == key)?["value"]["stringValue"]
        .as_str()
}

#[test]
fn otlp_delivers_every_line_through_503_and_429_with_retry_after_and_the_documented_attributes() {
    const COUNT: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let receiver = Receiver::start(&dir.path().join("receiver"), 7, 5, 0);
    let mut command = Command::new(env!("CARGO_BIN_EXE_log-aggregator"));
    command
        .env_remove("LOG_AGGREGATOR_SOURCES")
        .env("K8S_POD_NAME", "pod-1")
        .env("K8S_NAMESPACE_NAME", "ns-1")
        .env("K8S_CONTAINER_NAME", "app")
        .args(["--follow", "--sink", "otlp", "--listen", "127.0.0.1:0"])
        .arg("--ship-address")
        .arg(format!("http://127.0.0.1:{}", receiver.port))
        .args(["--batch-max-lines", "500"])
        .args(["--resource-attribute", "deployment.environment=test"])
        .arg("--checkpoint-dir")
        .arg(dir.path().join("state"))
        .arg(&log);
    let running = spawn(command);
    let status = writer()
        .args(["--rate", "0", "--count", &COUNT.to_string()])
        .args(["--log-level", "warn"])
        .arg(format!("{}=load", log.display()))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let bodies = receiver.out.join("bodies.txt");
    let started = Instant::now();
    while receiver.stats()["records"].as_u64().unwrap_or(0) < COUNT {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not every line arrived: {}; stderr:\n{}",
            receiver.stats(),
            running.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let retried = metric(&running, "log_aggregator_ship_batches_retried_total");
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);

    let (lost, duplicated, report) = verify(&bodies, COUNT);
    let stats = receiver.stats();
    eprintln!("OTLP: {COUNT} lines: {lost} lost, {duplicated} duplicated; receiver: {stats}");
    assert_eq!(lost, 0, "{report}");
    assert_eq!(duplicated, 0, "a refused request is not taken: {report}");
    assert!(stats["503"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["429"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["400"].as_u64().unwrap(), 0, "{stats}");
    assert!(retried >= 2.0, "{retried}");

    let first: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(receiver.out.join("records.jsonl")).unwrap())
            .unwrap();
    let resource_logs = &first["resourceLogs"][0];
    let resource = &resource_logs["resource"]["attributes"];
    assert_eq!(
        attribute(resource, "k8s.pod.name"),
        Some("pod-1"),
        "{first}"
    );
    assert_eq!(attribute(resource, "k8s.namespace.name"), Some("ns-1"));
    assert_eq!(attribute(resource, "k8s.container.name"), Some("app"));
    assert_eq!(attribute(resource, "deployment.environment"), Some("test"));
    let scope = &resource_logs["scopeLogs"][0];
    assert_eq!(scope["scope"]["name"], "log-aggregator");
    let record = &scope["logRecords"][0];
    assert!(
        record["body"]["stringValue"]
            .as_str()
            .is_some_and(|body| body.contains("load seq=1 ")),
        "{record}"
    );
    assert!(
        record["observedTimeUnixNano"].as_str().is_some(),
        "{record}"
    );
    assert_eq!(
        attribute(&record["attributes"], "log.file.path"),
        log.to_str()
    );
    assert_eq!(
        attribute(&record["attributes"], "log.file.name"),
        Some("app.log")
    );
}

fn otlp_aggregator(receiver: &Receiver, log: &Path, state: &Path, batch: u32) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_log-aggregator"));
    command
        .env_remove("LOG_AGGREGATOR_SOURCES")
        .args(["--follow", "--sink", "otlp", "--listen", "127.0.0.1:0"])
        .arg("--ship-address")
        .arg(format!("http://127.0.0.1:{}", receiver.port))
        .args(["--batch-max-lines", &batch.to_string()])
        .arg("--checkpoint-dir")
        .arg(state)
        .arg(log);
    command
}

#[test]
fn otlp_never_retries_a_413_and_counts_the_lines_it_dropped() {
    const COUNT: u64 = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let receiver = Receiver::start(&dir.path().join("receiver"), 0, 0, 4);
    let lines: String = (1..=COUNT)
        .map(|seq| format!("load seq={seq} target=load\n"))
        .collect();
    std::fs::write(&log, lines).unwrap();
    let running = spawn(otlp_aggregator(
        &receiver,
        &log,
        &dir.path().join("state"),
        100,
    ));
    eventually("every line answered", || {
        let stats = receiver.stats();
        stats["records"].as_u64().unwrap_or(0) + stats["refused"].as_u64().unwrap_or(0) >= COUNT
    });
    eventually("the drop counted", || {
        metric(&running, "log_aggregator_ship_lines_dropped_total")
            == receiver.stats()["refused"].as_f64().unwrap()
    });
    let retried = metric(&running, "log_aggregator_ship_batches_retried_total");
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);
    let stats = receiver.stats();
    eprintln!("OTLP with 413s: receiver {stats}");
    assert!(stats["413"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(retried, 0.0, "a 413 is never retried");
    assert_eq!(
        stats["records"].as_u64().unwrap() + stats["refused"].as_u64().unwrap(),
        COUNT,
        "each line sent once: {stats}"
    );
    assert!(
        output.stderr.contains("dropped (never retried)"),
        "{}",
        output.stderr
    );
}

#[test]
fn otlp_loses_nothing_when_the_aggregator_is_killed_mid_stream() {
    const COUNT: u64 = 40_000;
    const KILLS: u64 = 2;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let state = dir.path().join("state");
    let receiver = Receiver::start(&dir.path().join("receiver"), 0, 0, 0);
    let mut load = writer()
        .args(["--rate", "20000", "--count", &COUNT.to_string()])
        .args(["--log-level", "warn"])
        .arg(format!("{}=load", log.display()))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    for round in 1..=KILLS {
        let running = spawn(otlp_aggregator(&receiver, &log, &state, 500));
        let at = round * COUNT / (KILLS + 1);
        eventually(&format!("{at} lines at the receiver"), || {
            receiver.stats()["records"].as_u64().unwrap_or(0) >= at
        });
        running.signal(libc::SIGKILL);
        let (status, _) = running.wait();
        assert!(!status.success());
    }
    assert!(load.wait().unwrap().success());
    let running = spawn(otlp_aggregator(&receiver, &log, &state, 500));
    let needle = format!("seq={COUNT} ");
    let bodies = receiver.out.join("bodies.txt");
    eventually("the last line at the receiver", || {
        std::fs::read_to_string(&bodies).is_ok_and(|text| text.contains(&needle))
    });
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);
    let (lost, duplicated, report) = verify(&bodies, COUNT);
    eprintln!(
        "OTLP: {COUNT} lines, aggregator SIGKILLed {KILLS} times: {lost} lost, {duplicated} repeated"
    );
    assert_eq!(lost, 0, "{report}");
}

/// 2,000 `writer`-style lines in `path`.
fn write_lines(path: &Path, count: u64) {
    let lines: String = (1..=count)
        .map(|seq| format!("load seq={seq} target=load\n"))
        .collect();
    std::fs::write(path, lines).unwrap();
}

#[test]
fn otlp_json_and_gzip_bodies_decode_with_the_official_definitions() {
    const COUNT: u64 = 3_000;
    for (encoding, compression) in [("json", "none"), ("json", "gzip"), ("protobuf", "gzip")] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        write_lines(&log, COUNT);
        // Every 5th request answered 503: retries re-encode the same way.
        let receiver = Receiver::start(&dir.path().join("receiver"), 5, 0, 0);
        let mut command = otlp_aggregator(&receiver, &log, &dir.path().join("state"), 200);
        command
            .env("K8S_POD_NAME", "pod-1")
            .args(["--otlp-encoding", encoding])
            .args(["--otlp-compression", compression]);
        let running = spawn(command);
        eventually(&format!("{COUNT} {encoding}/{compression} records"), || {
            receiver.stats()["records"].as_u64().unwrap_or(0) >= COUNT
        });
        let (status, _, output) = running.terminate();
        assert!(status.success(), "{}", output.stderr);
        let stats = receiver.stats();
        eprintln!("OTLP {encoding}/{compression}: receiver {stats}");
        let (lost, duplicated, report) = verify(&receiver.out.join("bodies.txt"), COUNT);
        assert_eq!((lost, duplicated), (0, 0), "{report}");
        assert_eq!(stats["400"], 0, "every body decoded: {stats}");
        assert!(stats["503"].as_u64().unwrap() >= 1, "{stats}");
        let requests = stats["requests"].as_u64().unwrap();
        assert_eq!(stats[encoding].as_u64().unwrap(), requests, "{stats}");
        let gzipped = if compression == "gzip" { requests } else { 0 };
        assert_eq!(stats["gzip"].as_u64().unwrap(), gzipped, "{stats}");
        let first: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(receiver.out.join("records.jsonl")).unwrap(),
        )
        .unwrap();
        let resource_logs = &first["resourceLogs"][0];
        assert_eq!(
            attribute(&resource_logs["resource"]["attributes"], "k8s.pod.name"),
            Some("pod-1"),
            "{first}"
        );
        let record = &resource_logs["scopeLogs"][0]["logRecords"][0];
        assert_eq!(record["body"]["stringValue"], "load seq=1 target=load");
        assert_eq!(
            attribute(&record["attributes"], "log.file.path"),
            log.to_str()
        );
        assert!(
            record["observedTimeUnixNano"]
                .as_str()
                .and_then(|nanos| nanos.parse::<u64>().ok())
                .is_some_and(|nanos| nanos > 1_600_000_000_000_000_000),
            "{record}"
        );
    }
}

#[test]
fn otlp_partial_success_is_logged_counted_and_not_sent_again() {
    const COUNT: u64 = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    write_lines(&log, COUNT);
    let receiver = Receiver::start_with(
        &dir.path().join("receiver"),
        [0, 0, 0],
        &[("PARTIAL", "3".to_owned())],
    );
    let running = spawn(otlp_aggregator(
        &receiver,
        &log,
        &dir.path().join("state"),
        100,
    ));
    eventually("every line at the receiver", || {
        receiver.stats()["records"].as_u64().unwrap_or(0) >= COUNT
    });
    let requests = receiver.stats()["requests"].as_f64().unwrap();
    eventually("the rejected records counted", || {
        sink_metric(
            &running,
            "log_aggregator_ship_records_rejected_total",
            "otlp",
        ) == 3.0 * requests
    });
    let retried = metric(&running, "log_aggregator_ship_batches_retried_total");
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);
    assert_eq!(retried, 0.0, "a partial success is an acknowledgement");
    assert_eq!(receiver.stats()["requests"].as_f64().unwrap(), requests);
    assert!(
        output.stderr.contains("3 record(s) rejected"),
        "{}",
        output.stderr
    );
}

#[test]
fn stdout_and_otlp_each_get_every_line_and_positions_wait_for_both() {
    const COUNT: u64 = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let state = dir.path().join("state");
    write_lines(&log, COUNT);
    let size = std::fs::metadata(&log).unwrap().len();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_log-aggregator"));
    command
        .env_remove("LOG_AGGREGATOR_SOURCES")
        .env(
            "LOG_AGGREGATOR_SINK",
            format!("stdout,otlp=http://127.0.0.1:{port}"),
        )
        .args(["--follow", "--listen", "127.0.0.1:0"])
        // One batch holds every line: stdout is then not held back by
        // the OTLP sink's full channel (the slowest sink paces the others).
        .args(["--batch-max-lines", "5000", "--ship-backoff-max", "300ms"])
        .arg("--checkpoint-dir")
        .arg(&state)
        .arg(&log);
    let running = spawn(command);

    // The OTLP backend is down: stdout has every line, nothing is saved.
    running.wait_for_stdout("every line on stdout", |out| {
        out.lines().count() as u64 >= COUNT
    });
    running.wait_for_stderr_containing("retrying with backoff");
    eventually("stdout's lines acknowledged", || {
        sink_metric(&running, "log_aggregator_ship_lines_acked_total", "stdout") == COUNT as f64
    });
    assert_eq!(
        sink_metric(&running, "log_aggregator_ship_backend_up", "stdout"),
        1.0
    );
    assert_eq!(
        sink_metric(&running, "log_aggregator_ship_backend_up", "otlp"),
        0.0
    );
    assert_eq!(
        sink_metric(&running, "log_aggregator_ship_lines_acked_total", "otlp"),
        0.0
    );
    assert!(sink_metric(&running, "log_aggregator_ship_batches_failed_total", "otlp") >= 1.0);
    assert!(sink_metric(&running, "log_aggregator_ship_lag_bytes", "otlp") > 0.0);
    eventually("the OTLP lag in seconds growing", || {
        sink_metric(&running, "log_aggregator_ship_lag_seconds", "otlp") > 0.2
    });
    assert_eq!(
        sink_metric(&running, "log_aggregator_ship_lag_bytes", "stdout"),
        0.0
    );
    assert_eq!(
        checkpoint_offset(&state).unwrap_or(0),
        0,
        "a position is saved only once every sink acknowledged"
    );

    // It comes back: it gets every line, and the position moves to the end.
    let receiver = Receiver::start_with(
        &dir.path().join("receiver"),
        [0, 0, 0],
        &[("PORT", port.to_string())],
    );
    eventually("every line at the receiver", || {
        receiver.stats()["records"].as_u64().unwrap_or(0) >= COUNT
    });
    eventually("the position saved at the end", || {
        checkpoint_offset(&state) == Some(size)
    });
    assert_eq!(
        sink_metric(&running, "log_aggregator_ship_backend_up", "otlp"),
        1.0
    );
    assert_eq!(
        sink_metric(&running, "log_aggregator_ship_lag_bytes", "otlp"),
        0.0
    );
    assert_eq!(
        sink_metric(&running, "log_aggregator_ship_lag_seconds", "otlp"),
        0.0
    );
    assert!(
        sink_metric(
            &running,
            "log_aggregator_ship_batches_retried_total",
            "otlp"
        ) >= 1.0
    );
    assert_eq!(
        sink_metric(&running, "log_aggregator_ship_bytes_acked_total", "otlp"),
        sink_metric(&running, "log_aggregator_ship_bytes_acked_total", "stdout"),
    );
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);

    let captured = dir.path().join("stdout.txt");
    std::fs::write(&captured, &output.stdout).unwrap();
    assert!(
        output.stdout.starts_with("load seq=1 target=load\n"),
        "stdout gets plain lines (the prefix OTLP needs is cut off)"
    );
    for (what, path) in [
        ("stdout", captured),
        ("OTLP", receiver.out.join("bodies.txt")),
    ] {
        let (lost, duplicated, report) = verify(&path, COUNT);
        assert_eq!((lost, duplicated), (0, 0), "{what}: {report}");
    }
}

/// `--parse` with an OTLP sink: the body is the record, and its severity,
/// time and file are the application's (from the parsed fields), as the
/// collector's filelog receiver gives them with a parser and
/// `severity`/`timestamp` settings.
#[test]
fn parsed_records_carry_their_severity_time_and_file_to_otlp() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(
        &log,
        "<11>1 2026-11-25T14:01:13.5Z host app 7 - - disk failed\nnot syslog at all\n",
    )
    .unwrap();
    let receiver = Receiver::start(&dir.path().join("receiver"), 0, 0, 0);
    let mut command = otlp_aggregator(&receiver, &log, &dir.path().join("state"), 10);
    command.args(["--parse", "rfc5424", "--add", "pod=web-0"]);
    let running = spawn(command);
    eventually("2 records", || {
        receiver.stats()["records"].as_u64().unwrap_or(0) >= 2
    });
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);
    let first: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(receiver.out.join("records.jsonl")).unwrap())
            .unwrap();
    let records = &first["resourceLogs"][0]["scopeLogs"][0]["logRecords"];
    let parsed = &records[0];
    assert_eq!(
        parsed["severityNumber"], "SEVERITY_NUMBER_ERROR",
        "{parsed}"
    );
    assert_eq!(parsed["timeUnixNano"], "1795615273500000000", "{parsed}");
    assert_eq!(
        attribute(&parsed["attributes"], "log.file.path"),
        log.to_str()
    );
    let body: serde_json::Value =
        serde_json::from_str(parsed["body"]["stringValue"].as_str().unwrap()).unwrap();
    assert_eq!(body["message"], "disk failed");
    assert_eq!(body["pod"], "web-0");
    // A line that did not parse is shipped as the adapter keeps it, with no
    // time or severity of its own.
    let unparsed = &records[1];
    assert!(unparsed.get("timeUnixNano").is_none(), "{unparsed}");
    assert!(unparsed.get("severityNumber").is_none(), "{unparsed}");
    assert!(
        unparsed["body"]["stringValue"]
            .as_str()
            .unwrap()
            .contains("\"parse_error\""),
        "{unparsed}"
    );
}

#[cfg(feature = "tls")]
#[test]
fn otlp_over_https_trusts_the_ca_file_and_refuses_an_unknown_certificate() {
    const COUNT: u64 = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    write_lines(&log, COUNT);
    let pki = support::certs::certificates(&dir.path().join("pki"));
    let receiver = Receiver::start_with(
        &dir.path().join("receiver"),
        [0, 0, 0],
        &[
            ("TLS_CERT", pki.server_cert.display().to_string()),
            ("TLS_KEY", pki.server_key.display().to_string()),
        ],
    );
    let url = format!("https://localhost:{}", receiver.port);
    let aggregator = |ca: &Path, state: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_log-aggregator"));
        command
            .env_remove("LOG_AGGREGATOR_SOURCES")
            .args(["--follow", "--sink", &format!("otlp={url}")])
            .args(["--ship-backoff-max", "300ms", "--drain-timeout", "1s"])
            .arg("--ship-ca-file")
            .arg(ca)
            .arg("--checkpoint-dir")
            .arg(dir.path().join(state))
            .arg(&log);
        command
    };

    // A CA file without the server's certificate: refused, nothing sent.
    let other = tempfile::tempdir().unwrap();
    let other_ca = support::certs::certificates(other.path()).ca;
    let refused = spawn(aggregator(&other_ca, "state-refused"));
    refused.wait_for_stderr_containing("certificate");
    let (status, _, _) = refused.terminate();
    assert!(status.success());
    assert_eq!(receiver.stats()["records"].as_u64().unwrap_or(0), 0);

    let running = spawn(aggregator(&pki.ca, "state"));
    eventually("every line over HTTPS", || {
        receiver.stats()["records"].as_u64().unwrap_or(0) >= COUNT
    });
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);
    let (lost, duplicated, report) = verify(&receiver.out.join("bodies.txt"), COUNT);
    assert_eq!((lost, duplicated), (0, 0), "{report}");
}

/// A receiver that requires a client certificate: refused without one (the
/// warning points at --ship-client-cert, nothing arrives), every line once
/// with it.
#[cfg(feature = "tls")]
#[test]
fn otlp_over_https_sends_the_client_certificate_a_server_requires() {
    const COUNT: u64 = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    write_lines(&log, COUNT);
    let pki = support::certs::certificates(&dir.path().join("pki"));
    let receiver = Receiver::start_with(
        &dir.path().join("receiver"),
        [0, 0, 0],
        &[
            ("TLS_CERT", pki.server_cert.display().to_string()),
            ("TLS_KEY", pki.server_key.display().to_string()),
            ("TLS_CLIENT_CA", pki.ca.display().to_string()),
        ],
    );
    let aggregator = |state: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_log-aggregator"));
        command
            .env_remove("LOG_AGGREGATOR_SOURCES")
            .args(["--follow", "--sink"])
            .arg(format!("otlp=https://localhost:{}", receiver.port))
            .args(["--ship-backoff-max", "300ms", "--drain-timeout", "1s"])
            .arg("--ship-ca-file")
            .arg(&pki.ca)
            .arg("--checkpoint-dir")
            .arg(dir.path().join(state))
            .arg(&log);
        command
    };
    let refused = spawn(aggregator("state-refused"));
    let stderr = refused.wait_for_stderr_containing("retrying");
    assert!(stderr.contains("--ship-client-cert"), "{stderr}");
    refused.terminate();
    assert_eq!(receiver.stats()["records"].as_u64().unwrap_or(0), 0);

    let mut command = aggregator("state");
    command
        .arg("--ship-client-cert")
        .arg(&pki.client_cert)
        .arg("--ship-client-key")
        .arg(&pki.client_key);
    let running = spawn(command);
    eventually("every line over mutual TLS", || {
        receiver.stats()["records"].as_u64().unwrap_or(0) >= COUNT
    });
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);
    let (lost, duplicated, report) = verify(&receiver.out.join("bodies.txt"), COUNT);
    assert_eq!((lost, duplicated), (0, 0), "{report}");
}

#[test]
fn otlp_waits_as_long_as_retry_after_says_for_502_503_and_504_in_seconds_or_as_a_date() {
    const COUNT: u64 = 300;
    for (status, retry_after, at_least) in [(502, "2", 1.9), (503, "date:3", 2.0), (504, "2", 1.9)]
    {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        write_lines(&log, COUNT);
        // Every 2nd request refused with the status and its Retry-After.
        let receiver = Receiver::start_with(
            &dir.path().join("receiver"),
            [2, 0, 0],
            &[
                ("RETRY_STATUS", status.to_string()),
                ("RETRY_AFTER", retry_after.to_owned()),
            ],
        );
        let running = spawn(otlp_aggregator(
            &receiver,
            &log,
            &dir.path().join("state"),
            100,
        ));
        eventually(&format!("every line through {status}s"), || {
            receiver.stats()["records"].as_u64().unwrap_or(0) >= COUNT
        });
        let (exit, _, output) = running.terminate();
        assert!(exit.success(), "{}", output.stderr);
        let (lost, duplicated, report) = verify(&receiver.out.join("bodies.txt"), COUNT);
        assert_eq!((lost, duplicated), (0, 0), "{report}");
        let requests: Vec<(u16, f64)> = std::fs::read_to_string(receiver.out.join("requests.log"))
            .unwrap()
            .lines()
            .map(|line| {
                let (status, at) = line.split_once(' ').unwrap();
                (status.parse().unwrap(), at.parse().unwrap())
            })
            .collect();
        let refused: Vec<usize> = (0..requests.len())
            .filter(|index| requests[*index].0 == status)
            .collect();
        assert!(!refused.is_empty(), "{requests:?}");
        for index in refused {
            // The backoff alone would retry within 100 ms after a first failure.
            let Some(next) = requests.get(index + 1) else {
                continue;
            };
            let waited = next.1 - requests[index].1;
            assert!(
                waited >= at_least,
                "HTTP {status} with Retry-After {retry_after}: retried after {waited:.3} s"
            );
        }
    }
}
