//! The real `client` binary against a real HTTP server on 127.0.0.1: the lab's
//! success line, every failure class and its exit code, redirects, body and
//! method checks, JSON lines, the summary, /metrics, SIGTERM and bad input.

mod support;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use support::server::TestServer;
use testkit::{Output, eventually, spawn};

fn client() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_client"));
    command.env_remove("LOG_LEVEL");
    for (key, _) in std::env::vars() {
        if key.starts_with("CLIENT_") {
            command.env_remove(key);
        }
    }
    command
}

/// Runs the client to its exit; returns its exit code and output.
fn run(args: &[&str]) -> (i32, Output) {
    let mut command = client();
    command.args(args);
    let (status, output) = spawn(command).wait();
    (status.code().expect("exited, not killed"), output)
}

/// `client --once ARGS...`: the exec-probe form.
fn once(args: &[&str]) -> (i32, Output) {
    let mut all = vec!["--once"];
    all.extend_from_slice(args);
    run(&all)
}

const SUCCESS_LINE: &str = r"^[A-Z][a-z]{2} [A-Z][a-z]{2} [ 123][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} [A-Z+0-9-]+ [0-9]{4} - Successfully connected to ";

fn success_line(name: &str) -> regex::Regex {
    regex::Regex::new(&format!("{SUCCESS_LINE}{}$", regex::escape(name))).unwrap()
}

// --- the lab's loop ---

#[test]
fn lab_success_line_has_the_date_layout_and_the_name() {
    let server = TestServer::start();
    let (code, output) = run(&[
        "--interval",
        "50ms",
        "--count",
        "2",
        "--name",
        "nginx",
        &server.url("/"),
    ]);
    assert_eq!(code, 0, "{output:?}");
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{output:?}");
    for line in lines {
        assert!(success_line("nginx").is_match(line), "{line:?}");
    }
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn without_a_name_the_success_line_names_the_url() {
    let server = TestServer::start();
    let url = server.url("/");
    let (code, output) = once(&[&url]);
    assert_eq!(code, 0, "{output:?}");
    assert!(
        success_line(&url).is_match(output.stdout.trim_end()),
        "{output:?}"
    );
}

#[test]
fn failures_go_to_stderr_with_their_class_and_the_loop_goes_on() {
    let server = TestServer::start();
    let (code, output) = run(&["--interval", "1ms", "--count", "4", &server.url("/flaky")]);
    assert_eq!(output.stdout.lines().count(), 2, "{output:?}");
    assert_eq!(
        output.stderr.matches("status 503: got 503").count(),
        2,
        "{output:?}"
    );
    // With --count the exit status is the last try's: the 4th was a 503.
    assert_eq!(code, 22);
}

#[test]
fn tries_never_overlap_and_keep_the_interval() {
    let server = TestServer::start();
    let started = Instant::now();
    let (code, output) = run(&["--interval", "300ms", "--count", "3", &server.url("/")]);
    assert_eq!(code, 0, "{output:?}");
    // Three tries, start to start 300 ms apart: at least 600 ms in all.
    assert!(started.elapsed() >= Duration::from_millis(600));
}

// --- exit codes per failure class (--once) ---

#[test]
fn once_success_exits_0() {
    let server = TestServer::start();
    assert_eq!(once(&[&server.url("/")]).0, 0);
}

#[test]
fn refused_port_exits_7() {
    let url = format!("http://{}/", TestServer::closed_port_address());
    let (code, output) = once(&[&url]);
    assert_eq!(code, 7, "{output:?}");
    assert!(
        output.stderr.contains(": refused: connecting to"),
        "{output:?}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn unknown_host_exits_6() {
    // A label longer than 63 bytes: the resolver rejects it without asking a
    // DNS server, so the test sends no packet off the machine.
    let host = format!("{}.invalid", "a".repeat(64));
    let (code, output) = once(&["--timeout", "10s", &format!("http://{host}/")]);
    assert_eq!(code, 6, "{output:?}");
    assert!(
        output.stderr.contains(&format!(": dns: resolving {host}")),
        "{output:?}"
    );
}

#[test]
fn slow_server_beyond_the_timeout_exits_28_at_the_timeout() {
    let server = TestServer::start();
    let started = Instant::now();
    let (code, output) = once(&["--timeout", "300ms", &server.url("/slow/10000")]);
    assert_eq!(code, 28, "{output:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "{output:?}");
    assert!(
        output
            .stderr
            .contains(": timeout: no complete answer within 300ms")
    );
}

#[test]
fn status_500_exits_22() {
    let server = TestServer::start();
    let (code, output) = once(&[&server.url("/status/500")]);
    assert_eq!(code, 22, "{output:?}");
    assert!(
        output
            .stderr
            .contains(": status 500: got 500 Internal Server Error, expected 200-399")
    );
}

#[test]
fn expect_status_accepts_lists_ranges_and_classes() {
    let server = TestServer::start();
    let url = server.url("/status/503");
    assert_eq!(once(&["--expect-status", "200,503", &url]).0, 0);
    assert_eq!(once(&["--expect-status", "5xx", &url]).0, 0);
    assert_eq!(once(&["--expect-status", "200-299", &url]).0, 22);
}

#[test]
fn garbage_answer_exits_8() {
    let server = TestServer::garbage();
    let (code, output) = once(&[&server.url("/")]);
    assert_eq!(code, 8, "{output:?}");
    assert!(output.stderr.contains(": bad response: "), "{output:?}");
}

#[test]
fn body_regex_match_exits_0_and_mismatch_exits_10() {
    let server = TestServer::start();
    let url = server.url("/body/status-ok");
    assert_eq!(once(&["--expect-body", "status-(ok|fine)", &url]).0, 0);
    let (code, output) = once(&["--expect-body", "^degraded", &url]);
    assert_eq!(code, 10, "{output:?}");
    assert!(
        output
            .stderr
            .contains(": body mismatch: the 9-byte body did not match \"^degraded\"")
    );
}

#[test]
fn body_beyond_max_body_is_not_read() {
    let server = TestServer::start();
    let url = server.url("/big");
    let (code, output) = once(&["--expect-body", "END", "--max-body", "1MiB", &url]);
    assert_eq!(code, 10, "{output:?}");
    assert!(
        output.stderr.contains("the first 1048576 bytes"),
        "{output:?}"
    );
    assert_eq!(
        once(&["--expect-body", "END", "--max-body", "3MiB", &url]).0,
        0
    );
}

/// Peak resident memory of a running process, from /proc/PID/status.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("VmHWM line");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn expect_body_over_a_huge_max_body_holds_a_bounded_window() {
    // Regression: the whole body up to --max-body was collected (1 GiB of
    // RSS for --max-body 1GiB); now it is searched as it streams.
    let server = TestServer::start();
    let mut command = client();
    command.args([
        "--interval",
        "1h",
        "--timeout",
        "60s",
        "--max-body",
        "1GiB",
        "--expect-body",
        "xEND$",
        "--name",
        "huge",
        &server.url("/huge/24"),
    ]);
    let running = spawn(command);
    running.wait_for_stdout_containing("Successfully connected to huge");
    let peak_mib = peak_rss_kib(running.pid()) / 1024;
    let (_, _, output) = running.terminate();
    assert!(
        peak_mib < 20,
        "peak RSS {peak_mib} MiB for a 24 MiB body: {output:?}"
    );
    // The same body against a pattern it lacks: a mismatch naming what was read.
    let (code, output) = once(&[
        "--timeout",
        "60s",
        "--max-body",
        "1GiB",
        "--expect-body",
        "ENDx",
        &server.url("/huge/8"),
    ]);
    assert_eq!(code, 10, "{output:?}");
    assert!(
        output.stderr.contains("the 8388611-byte body"),
        "{output:?}"
    );
}

// --- redirects, as a Kubernetes httpGet probe treats them ---

#[test]
fn same_host_redirects_are_followed() {
    let server = TestServer::start();
    let (code, output) = once(&["--expect-status", "200", &server.url("/redirect/3")]);
    assert_eq!(code, 0, "{output:?}");
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        ["/redirect/3", "/redirect/2", "/redirect/1", "/redirect/0"]
    );
}

#[test]
fn redirect_loop_exits_47_after_max_redirects() {
    let server = TestServer::start();
    let (code, output) = once(&["--max-redirects", "3", &server.url("/loop")]);
    assert_eq!(code, 47, "{output:?}");
    assert!(
        output
            .stderr
            .contains(": redirects: stopped after 3 redirects")
    );
    assert_eq!(server.requests().len(), 4);
}

#[test]
fn redirect_loop_without_a_useful_limit_still_ends_at_the_timeout() {
    let server = TestServer::start();
    let started = Instant::now();
    let (code, output) = once(&[
        "--max-redirects",
        "4000000000",
        "--timeout",
        "500ms",
        &server.url("/loop"),
    ]);
    assert_eq!(code, 28, "{output:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn max_redirects_0_judges_the_redirect_itself() {
    let server = TestServer::start();
    let url = server.url("/redirect/1");
    assert_eq!(once(&["--max-redirects", "0", &url]).0, 0);
    assert_eq!(
        once(&["--max-redirects", "0", "--expect-status", "200", &url]).0,
        22
    );
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn cross_host_redirect_is_not_followed_and_counts_as_its_status_with_a_warning() {
    let server = TestServer::start();
    let url = server.url("/away");
    let (code, output) = once(&[&url]);
    assert_eq!(code, 0, "{output:?}");
    assert!(
        output
            .stderr
            .contains("not following the redirect to http://elsewhere.invalid/"),
        "{output:?}"
    );
    assert_eq!(once(&["--expect-status", "200", &url]).0, 22);
    assert!(
        server
            .requests()
            .iter()
            .all(|request| request.path == "/away")
    );
}

// --- method and headers ---

#[test]
fn head_sends_head() {
    let server = TestServer::start();
    assert_eq!(once(&["--method", "HEAD", &server.url("/")]).0, 0);
    assert_eq!(server.requests()[0].method, "HEAD");
}

#[test]
fn headers_are_sent_from_flags_and_from_the_environment() {
    let server = TestServer::start();
    assert_eq!(
        once(&["-H", "X-One: 1", "--header", "X-Two: two", &server.url("/")]).0,
        0
    );
    let mut command = client();
    command
        .env("CLIENT_URL", server.url("/"))
        .env("CLIENT_ONCE", "true")
        .env("CLIENT_HEADER", "X-One: env\nX-Two: env too");
    let (status, output) = spawn(command).wait();
    assert!(status.success(), "{output:?}");
    let requests = server.requests();
    assert_eq!(requests[0].header("x-one").as_deref(), Some("1"));
    assert_eq!(requests[0].header("x-two").as_deref(), Some("two"));
    assert_eq!(requests[1].header("x-one").as_deref(), Some("env"));
    assert_eq!(requests[1].header("x-two").as_deref(), Some("env too"));
}

// --- output, summary, metrics ---

#[test]
fn json_output_has_one_object_per_try_in_the_documented_shape() {
    let server = TestServer::start();
    let url = server.url("/flaky");
    let (_, output) = run(&[
        "--interval",
        "1ms",
        "--count",
        "2",
        "--output",
        "json",
        &url,
    ]);
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{output:?}");
    let keys = r#"^\{"time":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{12}Z","url":.*,"status":[0-9]+,"latency_ms":[0-9]+\.[0-9]{3},"ok":(true|false),"reason":.*,"detail":.*\}$"#;
    let shape = regex::Regex::new(keys).unwrap();
    for line in &lines {
        assert!(shape.is_match(line), "{line}");
    }
    let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(first["url"], url.as_str());
    assert_eq!(first["status"], 200);
    assert_eq!(first["ok"], true);
    assert!(first["reason"].is_null());
    assert!(first["latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(second["status"], 503);
    assert_eq!(second["ok"], false);
    assert_eq!(second["reason"], "status 503");
}

#[test]
fn json_output_for_a_try_without_an_answer_has_null_status() {
    let url = format!("http://{}/", TestServer::closed_port_address());
    let (code, output) = once(&["--output", "json", &url]);
    assert_eq!(code, 7);
    let line: serde_json::Value = serde_json::from_str(output.stdout.trim()).unwrap();
    assert!(line["status"].is_null());
    assert_eq!(line["reason"], "refused");
}

/// Parses `latency ms (ok tries): min A p50 B p90 C p99 D max E`.
fn latency_figures(summary: &str) -> Vec<f64> {
    let line = summary
        .lines()
        .find(|line| line.starts_with("latency ms (ok tries): "))
        .unwrap_or_else(|| panic!("no latency line in {summary}"));
    line.split_whitespace()
        .filter_map(|word| word.parse::<f64>().ok())
        .collect()
}

#[test]
fn summary_counts_tries_failures_by_reason_and_latency() {
    let server = TestServer::start();
    let url = server.url("/flaky");
    let (_, output) = run(&["--interval", "1ms", "--count", "5", &url]);
    assert!(
        output.stderr.contains(&format!(
            "--- {url} ---\n5 tries, 3 ok, 2 failed (status 503 2)\n"
        )),
        "{output:?}"
    );
    let figures = latency_figures(&output.stderr);
    assert_eq!(figures.len(), 5, "{output:?}");
    assert!(figures[0] > 0.0);
    assert!(
        figures.windows(2).all(|pair| pair[0] <= pair[1]),
        "{figures:?}"
    );
}

#[test]
fn max_failures_exits_after_that_many_failures_in_a_row() {
    let url = format!("http://{}/", TestServer::closed_port_address());
    let (code, output) = run(&["--interval", "1ms", "--max-failures", "3", &url]);
    assert_eq!(code, 7, "{output:?}");
    assert!(
        output
            .stderr
            .contains("giving up after 3 failures in a row")
    );
    assert!(
        output
            .stderr
            .contains("3 tries, 0 ok, 3 failed (refused 3)")
    );
    assert!(output.stderr.contains("latency ms (ok tries): none"));
}

#[test]
fn max_failures_counts_only_failures_in_a_row() {
    let server = TestServer::start();
    // /flaky alternates, so two failures in a row never happen.
    let (code, output) = run(&[
        "--interval",
        "1ms",
        "--count",
        "6",
        "--max-failures",
        "2",
        &server.url("/flaky"),
    ]);
    assert!(
        output.stderr.contains("6 tries, 3 ok, 3 failed"),
        "{output:?}"
    );
    assert_eq!(code, 22);
}

fn http_get(address: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).expect("connecting to /metrics");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn metric(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|value| value.parse().ok())
    })
}

#[test]
fn metrics_expose_tries_failures_latency_and_last_success() {
    let server = TestServer::start();
    let mut command = client();
    command.args([
        "--interval",
        "20ms",
        "--listen",
        "127.0.0.1:0",
        &server.url("/flaky"),
    ]);
    let running = spawn(command);
    let stderr = running.wait_for_stderr_containing("/metrics\n");
    let address = stderr
        .split("serving /metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the metrics address in the log")
        .to_owned();
    eventually("four tries counted", || {
        metric(&http_get(&address, "/metrics"), "client_tries_total").is_some_and(|n| n >= 4.0)
    });
    let exposition = http_get(&address, "/metrics");
    assert!(exposition.starts_with("HTTP/1.1 200"), "{exposition}");
    let tries = metric(&exposition, "client_tries_total").unwrap();
    let failed = metric(&exposition, "client_failures_total{reason=\"status\"}").unwrap();
    let ok = metric(&exposition, "client_latency_seconds_count").unwrap();
    assert!(failed >= 2.0 && ok >= 2.0, "{exposition}");
    assert!(
        ok + failed >= tries - 1.0 && ok + failed <= tries,
        "{exposition}"
    );
    assert_eq!(
        metric(&exposition, "client_failures_total{reason=\"refused\"}"),
        Some(0.0)
    );
    assert!(exposition.contains("# TYPE client_latency_seconds histogram"));
    assert!(exposition.contains("client_latency_seconds_bucket{le=\"+Inf\"}"));
    let last_success = metric(&exposition, "client_last_success_timestamp_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - last_success).abs() < 60.0, "{exposition}");
    let (status, elapsed, output) = running.terminate();
    assert!(status.success(), "{output:?}");
    assert!(elapsed < Duration::from_secs(1));
}

// --- SIGTERM ---

#[test]
fn sigterm_mid_request_exits_promptly_with_the_summary() {
    let server = TestServer::start();
    let mut command = client();
    command.args([
        "--interval",
        "10ms",
        "--timeout",
        "60s",
        &server.url("/slow/30000"),
    ]);
    let running = spawn(command);
    eventually("the request to reach the server", || {
        !server.requests().is_empty()
    });
    let (status, elapsed, output) = running.terminate();
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    assert!(status.success(), "{output:?}");
    assert!(
        output.stderr.contains("0 tries, 0 ok, 0 failed"),
        "{output:?}"
    );
}

#[test]
fn sigterm_between_tries_exits_promptly_with_the_summary() {
    let server = TestServer::start();
    let mut command = client();
    command.args(["--interval", "1h", "--name", "nginx", &server.url("/")]);
    let running = spawn(command);
    running.wait_for_stdout_containing("Successfully connected to nginx\n");
    let (status, elapsed, output) = running.terminate();
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    assert!(status.success());
    assert!(
        output.stderr.contains("1 tries, 1 ok, 0 failed"),
        "{output:?}"
    );
}

#[test]
fn sigterm_during_a_once_try_exits_143() {
    let server = TestServer::start();
    let mut command = client();
    command.args(["--once", "--timeout", "60s", &server.url("/slow/30000")]);
    let running = spawn(command);
    eventually("the request to reach the server", || {
        !server.requests().is_empty()
    });
    let (status, elapsed, _) = running.terminate();
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    assert_eq!(status.code(), Some(143));
}

// --- bad input: one clear line, exit 1, no request ---

fn assert_bad_input(args: &[&str], expected: &str) {
    let server = TestServer::start();
    let url = server.url("/");
    let mut all: Vec<&str> = args.to_vec();
    if !args.iter().any(|arg| arg.contains("://")) {
        all.push(&url);
    }
    let (code, output) = once(&all);
    assert_eq!(code, 1, "{output:?}");
    assert_eq!(output.stderr.lines().count(), 1, "{output:?}");
    assert!(output.stderr.starts_with("client: error: "), "{output:?}");
    assert!(output.stderr.contains(expected), "{output:?}");
    assert!(server.requests().is_empty(), "a request was made");
}

#[test]
fn bad_input_is_one_clear_error_before_any_request() {
    assert_bad_input(
        &["ftp://example.com/"],
        "scheme \"ftp\" is not supported, only http:// URLs are",
    );
    assert_bad_input(
        &["https://example.com/"],
        "\"https://example.com/\": https is not supported",
    );
    assert_bad_input(&["-H", "X-Broken"], "invalid header \"X-Broken\"");
    assert_bad_input(
        &["--expect-body", "(unclosed"],
        "invalid --expect-body regex \"(unclosed\": found open group without closing ')'",
    );
    assert_bad_input(
        &["--expect-status", "2oo"],
        "invalid --expect-status \"2oo\"",
    );
    assert_bad_input(
        &["--method", "head", "--expect-body", "x"],
        "--expect-body needs a body",
    );
    // 192.0.2.1 (TEST-NET-1) is on no interface here: the address parses, binding fails.
    assert_bad_input(
        &["--listen", "192.0.2.1:9100"],
        "binding --listen 192.0.2.1:9100",
    );
}

#[test]
fn ports_outside_1_to_65535_exit_3_before_any_request() {
    // Regression: `:99999` (and `:65536`, `:-1`, `:4294967376`) was read as
    // no port at all, so the client probed port 80.
    for port in ["99999", "65536", "-1", "4294967376", "0"] {
        let url = format!("http://127.0.0.1:{port}/");
        let (code, output) = once(&[&url]);
        assert_eq!(code, 3, "{url}: {output:?}");
        assert_eq!(output.stderr.lines().count(), 1, "{output:?}");
        assert!(
            output.stderr.starts_with(&format!(
                "client: error: invalid URL \"{url}\": port \"{port}\" is not a number from 1 to 65535"
            )),
            "{output:?}"
        );
    }
}

#[test]
fn zero_interval_and_timeout_are_usage_errors() {
    // Regression: --interval 0 was a busy loop, --timeout 0 failed every try.
    for flag in ["--interval", "--timeout"] {
        let (code, output) = run(&[flag, "0", "http://localhost/"]);
        assert_eq!(code, 2, "{flag}: {output:?}");
        assert!(
            output.stderr.contains(&format!("'{flag} <DURATION>'"))
                && output.stderr.contains("must be more than 0"),
            "{output:?}"
        );
    }
    let mut command = client();
    command
        .env("CLIENT_INTERVAL", "0s")
        .arg("http://localhost/");
    let (status, output) = spawn(command).wait();
    assert_eq!(status.code(), Some(2), "{output:?}");
}

#[test]
fn usage_errors_exit_2() {
    let (code, output) = run(&["--interval", "soon", "http://localhost/"]);
    assert_eq!(code, 2);
    assert!(
        output.stderr.contains("invalid duration \"soon\""),
        "{output:?}"
    );
    assert_eq!(run(&["--once", "--count", "2", "http://localhost/"]).0, 2);
    let (code, output) = run(&["--listen", "not-an-address", "http://localhost/"]);
    assert_eq!(code, 2, "{output:?}");
    assert!(
        output
            .stderr
            .contains("invalid listen address \"not-an-address\""),
        "{output:?}"
    );
}

#[test]
fn help_shows_examples_and_exit_codes() {
    let (code, output) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(
        output
            .stdout
            .contains("client --interval 10s --name nginx http://localhost:80")
    );
    assert!(output.stdout.contains("Exit status:"));
    assert!(output.stdout.contains("[env: CLIENT_INTERVAL="));
}
