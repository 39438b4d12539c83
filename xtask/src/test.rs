//! `cargo xtask test`: what CI runs, in order, stopping at the first failure:
//! fmt and clippy, the workspace's tests, log-aggregator's TLS tests (its
//! `tls` build against rsyslog and the OTLP receiver over TLS), rendering
//! and schema validation of
//! every kustomization, the end-to-end pod tests with podman, then a short
//! load test that fails on any line our log-aggregator lost or repeated, and
//! the quick rotation matrix (real logrotate, every rotation mode).
//!
//! With `--install` (CI on a fresh Debian machine, as root) it first installs
//! what is missing: podman, runc and catatonit, Debian's nginx (the offline
//! nginx stand-in is built from it), busybox-static (comparison image),
//! logrotate (the matrix), rsyslog, rsyslog-relp and rsyslog-gnutls
//! (log-aggregator's shipping tests), kubernetes-validate into .lab/venv, and PyPI's
//! opentelemetry-proto into .lab/otlp-venv (the OTLP test receiver). Without it, a missing tool is an error
//! that says how to install it: the pod tests fail, never skip.

use crate::util::{apt_install, cargo, lab_dir, on_path, run, try_output};
use crate::{e2e, images, lab, podman};

#[derive(clap::Args)]
pub struct TestArgs {
    /// Skip `cargo fmt --check` and clippy (quick local runs).
    #[arg(long)]
    pub no_lint: bool,
    /// Install missing tools first: apt-get (root, Debian/Ubuntu) and
    /// kubernetes-validate into .lab/venv.
    #[arg(long)]
    pub install: bool,
    /// Play no pods (the short local load test still runs).
    #[arg(long)]
    pub no_e2e: bool,
}

pub fn run_all(args: &TestArgs) -> anyhow::Result<()> {
    if args.install {
        install_missing()?;
    }
    if !args.no_lint {
        run(cargo().args(["fmt", "--all", "--", "--check"]))?;
        run(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    run(cargo().args(["test", "--workspace"]))?;
    tls_tests(args.no_lint)?;
    eprintln!("+ cargo xtask lab validate");
    lab::validate(args.install)?;
    if !args.no_e2e {
        eprintln!("+ cargo xtask e2e");
        e2e::run(e2e::E2eArgs {
            pods: Vec::new(),
            no_build: false,
        })?;
    }
    // A subprocess, so the load test's own flags stay its own; it reuses the
    // static release binaries the images were built from when there are any.
    let mut loadtest = std::process::Command::new(std::env::current_exe()?);
    loadtest.args(["loadtest", "--quick"]);
    if !args.no_e2e {
        loadtest.arg("--bin-dir").arg(images::release_dir());
    }
    run(&mut loadtest)?;
    // The same way: every line once under every rotation, restart and rate.
    let mut matrix = std::process::Command::new(std::env::current_exe()?);
    matrix.args(["matrix", "--quick", "--rerun-failed"]);
    if !args.no_e2e {
        matrix.arg("--bin-dir").arg(images::release_dir());
    }
    run(&mut matrix)?;
    Ok(())
}

/// log-aggregator's `tls` build (a feature: the default image has no room
/// for it): clippy over it, then syslog and RELP over TLS against rsyslog
/// (tests/ship_tls.rs) and OTLP over HTTPS (tests/ship_otlp.rs). The
/// `tls` build of the package's tests is compiled once for both.
fn tls_tests(no_lint: bool) -> anyhow::Result<()> {
    let tls = ["-p", "log-aggregator", "--features", "tls"];
    if !no_lint {
        run(cargo()
            .arg("clippy")
            .args(tls)
            .args(["--all-targets", "--", "-D", "warnings"]))?;
    }
    run(cargo().arg("test").args(tls).args(["--test", "ship_tls"]))?;
    run(cargo()
        .arg("test")
        .args(tls)
        .args(["--test", "ship_otlp", "--", "over_https"]))
}

pub fn run_task(args: TestArgs) -> anyhow::Result<()> {
    run_all(&args)
}

/// Debian packages the pod tests need and the host lacks, in one apt-get run.
fn install_missing() -> anyhow::Result<()> {
    let mut packages: Vec<&str> = Vec::new();
    if podman::ensure_podman(false).is_err() {
        packages.extend(["podman", "runc", "catatonit"]);
    }
    packages.extend(images::helper_packages_missing(false));
    if !std::path::Path::new("/bin/busybox").exists() {
        packages.push("busybox-static");
    }
    // The matrix's rotations; GNU tail (its comparison) is coreutils, always there.
    if !on_path("logrotate") && !std::path::Path::new("/usr/sbin/logrotate").exists() {
        packages.push("logrotate");
    }
    // log-aggregator's shipping tests (tests/ship_syslog.rs) run a real
    // rsyslogd with imtcp and imrelp, and fail saying so when it is missing.
    if !std::path::Path::new("/usr/sbin/rsyslogd").exists() {
        packages.push("rsyslog");
    }
    if !std::path::Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/imrelp.so").exists() {
        packages.push("rsyslog-relp");
    }
    // imtcp's TLS driver for syslog over TLS (tests/ship_tls.rs); imrelp's
    // TLS is in librelp, which Debian builds with GnuTLS.
    if !std::path::Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so").exists() {
        packages.push("rsyslog-gnutls");
    }
    if !on_path("kubectl") {
        anyhow::bail!(
            "kubectl is missing and Debian does not package it: install it from \
             https://kubernetes.io/docs/tasks/tools/ (only `kubectl kustomize` is used)"
        );
    }
    apt_install(&packages)?;
    otlp_venv()?;
    podman::ensure_podman(false)
}

/// .lab/otlp-venv with PyPI's opentelemetry-proto: the OTLP receiver of
/// log-aggregator's tests/ship_otlp.rs decodes with the official definitions.
fn otlp_venv() -> anyhow::Result<()> {
    let venv = lab_dir().join("otlp-venv");
    let python = venv.join("bin/python3");
    let import = "import opentelemetry.proto.collector.logs.v1.logs_service_pb2";
    if python.exists() && try_output(std::process::Command::new(&python).args(["-c", import])).0 {
        return Ok(());
    }
    if !try_output(std::process::Command::new("python3").args(["-m", "venv", "--help"])).0 {
        apt_install(&["python3", "python3-venv", "python3-pip"])?;
    }
    run(std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv))?;
    run(std::process::Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "opentelemetry-proto",
    ]))
}
