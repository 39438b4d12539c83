//! Syslog over TLS (RFC 5425) and RELP over TLS to a real rsyslog: imtcp
//! with the GnuTLS stream driver (Debian's `rsyslog-gnutls`) and imrelp
//! with `tls="on"` (`rsyslog-relp`; Debian's librelp is built with GnuTLS),
//! certificates made by the test; every line counted at rsyslog. Client
//! certificates against a server that requires them, and the start-up
//! errors of the TLS flags. The `tls` build only:
//! `cargo test -p log-aggregator --features tls --test ship_tls`
//! (`cargo xtask test` runs it).

use std::path::Path;
use std::process::Command;

mod support;

use support::certs::{Pki, certificates};
use support::rsyslog::{Rsyslog, free_port, lines_in, need_rsyslog, wait_for_all};
use support::{aggregator, verify};
use testkit::{eventually, spawn};

const COUNT: u64 = 20_000;

/// `count` numbered lines in `log`, in the `writer verify` format.
fn write_lines(log: &Path, count: u64) {
    let lines: String = (1..=count)
        .map(|seq| format!("load seq={seq} target=load\n"))
        .collect();
    std::fs::write(log, lines).unwrap();
}

/// rsyslog listening with TLS through `input` (`imtcp`, `imrelp`);
/// with `client_certificates` it requires a client certificate its CA
/// signed (imtcp `x509/certvalid`, imrelp `certvalid`), else anyone may
/// talk (imtcp `anon`). imrelp always requires one: with a server
/// certificate but no `tls.authMode` it still refuses a client with none,
/// and its certificate-less mode is anonymous Diffie-Hellman, which TLS
/// 1.3 and rustls do not offer.
fn tls_rsyslog(dir: &Path, input: &str, pki: &Pki, client_certificates: bool) -> Rsyslog {
    need_rsyslog(input);
    let port = free_port();
    let (ca, cert, key) = (
        pki.ca.display(),
        pki.server_cert.display(),
        pki.server_key.display(),
    );
    let listen = match input {
        "imtcp" => {
            assert!(
                Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so").exists(),
                "rsyslog's GnuTLS driver is missing: apt-get install rsyslog-gnutls \
                 (or cargo xtask test --install)"
            );
            let mode = if client_certificates {
                "x509/certvalid"
            } else {
                "anon"
            };
            format!(
                r#"global(DefaultNetstreamDriverCAFile="{ca}" DefaultNetstreamDriverCertFile="{cert}" DefaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="{mode}")
input(type="imtcp" port="{port}" address="127.0.0.1")"#
            )
        }
        _ => {
            assert!(
                client_certificates,
                "imrelp over TLS wants client certificates"
            );
            format!(
                r#"module(load="imrelp")
input(type="imrelp" port="{port}" address="127.0.0.1" tls="on" tls.caCert="{ca}" tls.myCert="{cert}" tls.myPrivKey="{key}" tls.authMode="certvalid")"#
            )
        }
    };
    Rsyslog::start_listening(dir, port, &listen, "")
}

/// The aggregator shipping `log` to `sink` at `tls://localhost:PORT`,
/// trusting `ca`.
fn shipping(sink: &str, server: &Rsyslog, ca: &Path, log: &Path, state: &Path) -> Command {
    let mut command = aggregator();
    command
        .args(["--sink", &format!("{sink}=tls://localhost:{}", server.port)])
        .arg("--ship-ca-file")
        .arg(ca)
        .args(["--ship-backoff-max", "300ms", "--drain-timeout", "2s"])
        .arg("--checkpoint-dir")
        .arg(state)
        .arg(log);
    command
}

#[test]
fn syslog_over_tls_trusts_the_ca_file_delivers_every_line_once_and_refuses_an_unknown_certificate()
{
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    write_lines(&log, COUNT);
    let pki = certificates(&dir.path().join("pki"));
    let server = tls_rsyslog(dir.path(), "imtcp", &pki, false);

    // A CA file that did not sign rsyslog's certificate: nothing is sent.
    let other = certificates(&dir.path().join("other"));
    let refused = spawn(shipping(
        "syslog-tcp",
        &server,
        &other.ca,
        &log,
        &dir.path().join("state-refused"),
    ));
    let stderr = refused.wait_for_stderr_containing("retrying");
    assert!(stderr.contains("certificate"), "{stderr}");
    refused.terminate();
    assert_eq!(lines_in(&server.output), 0);

    let state = dir.path().join("state");
    let running = spawn(shipping("syslog-tcp", &server, &pki.ca, &log, &state));
    wait_for_all(&server, COUNT, &running);
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);
    let (lost, duplicated, report) = verify(&server.output, COUNT);
    assert_eq!((lost, duplicated), (0, 0), "{report}");
}

#[test]
fn relp_over_tls_loses_nothing_when_rsyslog_is_killed_and_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    write_lines(&log, COUNT);
    let pki = certificates(&dir.path().join("pki"));
    let mut server = tls_rsyslog(dir.path(), "imrelp", &pki, true);
    let mut command = shipping("relp", &server, &pki.ca, &log, &dir.path().join("state"));
    command
        .arg("--ship-client-cert")
        .arg(&pki.client_cert)
        .arg("--ship-client-key")
        .arg(&pki.client_key);
    let running = spawn(command);
    eventually("the first lines at rsyslog", || {
        lines_in(&server.output) >= 2_000
    });
    // A new TLS session after the restart; lines sent and not answered
    // are sent again.
    server.kill();
    server.run();
    wait_for_all(&server, COUNT, &running);
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);
    let (lost, duplicated, report) = verify(&server.output, COUNT);
    eprintln!("RELP over TLS through an rsyslog restart: {lost} lost, {duplicated} duplicated");
    assert_eq!(lost, 0, "{report}");
    // At most the RELP window, sent and unanswered at the kill.
    assert!(duplicated <= 128, "{report}");
}

/// rsyslog requiring client certificates: the aggregator without one is
/// refused, says why, and nothing arrives; with one (given through the
/// environment), every line arrives once.
fn client_certificate_required(sink: &str, input: &str) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    write_lines(&log, COUNT);
    let pki = certificates(&dir.path().join("pki"));
    let server = tls_rsyslog(dir.path(), input, &pki, true);

    let refused = spawn(shipping(
        sink,
        &server,
        &pki.ca,
        &log,
        &dir.path().join("state-refused"),
    ));
    // Named whenever the refusal shows: as the server's alert, or as a
    // reset of the connection the first batches were written to.
    let stderr = refused.wait_for_stderr_containing("retrying");
    assert!(
        stderr.contains("asked for a client certificate and none is configured"),
        "{stderr}"
    );
    refused.terminate();
    assert_eq!(
        lines_in(&server.output),
        0,
        "nothing taken without a certificate"
    );

    let mut command = shipping(sink, &server, &pki.ca, &log, &dir.path().join("state"));
    command
        .env("LOG_AGGREGATOR_SHIP_CLIENT_CERT", &pki.client_cert)
        .env("LOG_AGGREGATOR_SHIP_CLIENT_KEY", &pki.client_key);
    let running = spawn(command);
    wait_for_all(&server, COUNT, &running);
    let (status, _, output) = running.terminate();
    assert!(status.success(), "{}", output.stderr);
    let (lost, duplicated, report) = verify(&server.output, COUNT);
    assert_eq!((lost, duplicated), (0, 0), "{report}");
}

#[test]
fn relp_over_tls_sends_the_client_certificate_a_server_requires() {
    client_certificate_required("relp", "imrelp");
}

#[test]
fn syslog_over_tls_sends_the_client_certificate_a_server_requires() {
    client_certificate_required("syslog-tcp", "imtcp");
}

/// Runs the aggregator with `args` (which must fail at start): its stderr.
fn start_error(args: &[&str]) -> String {
    let output = aggregator()
        .args(args)
        .arg("app.log")
        .output()
        .expect("running log-aggregator");
    assert!(!output.status.success(), "{args:?} started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn tls_files_that_cannot_be_used_fail_at_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let pki = certificates(dir.path());
    let path = |path: &Path| path.to_str().unwrap().to_owned();
    let (ca, cert, key) = (path(&pki.ca), path(&pki.client_cert), path(&pki.client_key));
    let missing = path(&dir.path().join("missing.pem"));
    let relp = ["--sink", "relp=tls://localhost:6514"];

    let error = start_error(&[&relp[..], &["--ship-ca-file", &missing]].concat());
    assert!(
        error.contains("--ship-ca-file") && error.contains(&missing),
        "{error}"
    );
    // A key where the CA certificates should be: none in it.
    let error = start_error(&[&relp[..], &["--ship-ca-file", &key]].concat());
    assert!(error.contains(&key), "{error}");

    let with_client = |cert: &str, key: &str| {
        start_error(
            &[
                &relp[..],
                &["--ship-ca-file", &ca],
                &["--ship-client-cert", cert, "--ship-client-key", key],
            ]
            .concat(),
        )
    };
    let error = with_client(&missing, &key);
    assert!(
        error.contains("--ship-client-cert") && error.contains(&missing),
        "{error}"
    );
    let error = with_client(&cert, &missing);
    assert!(
        error.contains("--ship-client-key") && error.contains(&missing),
        "{error}"
    );
    // The certificate where the key should be.
    let error = with_client(&cert, &cert);
    assert!(
        error.contains("--ship-client-key") && error.contains(&cert),
        "{error}"
    );
    // The other client's key: it does not match the certificate.
    let other = certificates(&dir.path().join("other"));
    let error = with_client(&cert, &path(&other.client_key));
    assert!(error.contains(&cert), "{error}");

    // Both or neither.
    let error = start_error(&[&relp[..], &["--ship-client-cert", &cert]].concat());
    assert!(error.contains("--ship-client-key"), "{error}");
    // A client certificate with no TLS sink would never be sent.
    let error = start_error(&[
        "--sink",
        "relp=localhost:2514",
        "--ship-client-cert",
        &cert,
        "--ship-client-key",
        &key,
    ]);
    assert!(error.contains("asks for TLS"), "{error}");
    let error = start_error(&["--sink", "relp=relp://localhost:2514"]);
    assert!(error.contains("tls://HOST:PORT"), "{error}");
}
