//! `cargo xtask e2e`: plays each lab pod with podman, on our images, and
//! checks what the lab promises (docs/lab.md), one pod at a time; then the
//! scenarios beyond the lab: `production` (deploy/production, the Deployment
//! whose log-aggregator streams an app's rotated log files: every line once)
//! and `examples` (deploy/examples, `client --once` as an exec probe).
//!
//! Invariants: every wait polls with a deadline (never a fixed sleep); each
//! pod is removed after its test, also on failure (a guard's `Drop`), with
//! its volumes; a podman that cannot run is a failure, never a skip. On a
//! failure the pod's container states and logs are printed before removal.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::Value;

use crate::images;
use crate::kube::{self, LOCAL_OVERLAY, PODS};
use crate::podman::{self, ContainerState, command as podman};
use crate::util::{lab_dir, output, try_output, wait_for};

/// Longest wait for all containers to run (the first pod on a fresh machine
/// also builds podman's pause image).
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest wait for expected output: two of the slowest loop (10 s) plus slack.
const OUTPUT_TIMEOUT: Duration = Duration::from_secs(45);
/// `podman pod stop` grace: our binaries must exit well within it on SIGTERM.
const STOP_GRACE_SECS: u64 = 10;
/// How long a pod of ours may take to stop: busybox shells as PID 1 ignore
/// SIGTERM and take the whole grace period; ours flush and exit.
const STOP_BUDGET: Duration = Duration::from_secs(4);

#[derive(clap::Args)]
pub struct E2eArgs {
    /// Only these pods or scenarios (default: all): the lab's pods, and
    /// `production`, `examples`.
    pub pods: Vec<String>,
    /// Use the images as they are (skip `cargo xtask images`).
    #[arg(long)]
    pub no_build: bool,
}

pub fn run(args: E2eArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    // Podman missing or broken is a failure: CI must not pass without pods.
    podman::ensure_podman(false).context("the end-to-end tests need podman")?;
    if !args.no_build {
        images::build(false, false)?;
    }
    let ours: Vec<String> = images::BINARIES
        .iter()
        .map(|b| images::local_image(b))
        .collect();
    images::print_sizes(&ours)?;

    let manifests = kube::split_rendered("local", LOCAL_OVERLAY)?;
    let pods: Vec<&str> = if args.pods.is_empty() {
        PODS.iter().chain(SCENARIOS).copied().collect()
    } else {
        args.pods.iter().map(String::as_str).collect()
    };
    // Every name is checked before anything is played.
    for name in &pods {
        if !PODS.contains(name) && !SCENARIOS.contains(name) {
            bail!(
                "unknown pod or scenario {name:?}: the lab's pods are {}; the scenarios {}",
                PODS.join(", "),
                SCENARIOS.join(", ")
            );
        }
    }
    let mut failed = Vec::new();
    for pod in pods {
        let case_start = Instant::now();
        let result = match pod {
            "production" => production(),
            "examples" => examples(),
            pod => lab_check(pod)
                .and_then(|check| run_case(pod, &kube::manifest_for(&manifests, pod)?, check)),
        };
        match result {
            Ok(()) => println!("ok   {pod} ({:.1} s)", case_start.elapsed().as_secs_f64()),
            Err(error) => {
                println!(
                    "FAIL {pod} ({:.1} s): {error:#}",
                    case_start.elapsed().as_secs_f64()
                );
                failed.push(pod);
            }
        }
    }
    println!("e2e took {:.1} s", started.elapsed().as_secs_f64());
    if !failed.is_empty() {
        bail!("end-to-end checks failed for: {}", failed.join(", "));
    }
    Ok(())
}

/// The scenarios beyond the lab's pods, in the order they run.
const SCENARIOS: &[&str] = &["production", "examples"];

fn lab_check(pod: &str) -> anyhow::Result<fn(&Pod) -> anyhow::Result<()>> {
    Ok(match pod {
        "multi-container-demo" => multi_container_demo,
        "network-demo" => network_demo,
        "sidecar-logging" => sidecar_logging,
        "resources-demo" => resources_demo,
        "three-containers" => three_containers,
        "init-demo" => init_demo,
        "adapter-demo" => adapter_demo,
        other => bail!(
            "unknown pod {other:?}: the lab's pods are {}",
            PODS.join(", ")
        ),
    })
}

/// Removes the pod (and its emptyDir volumes) when dropped: after the test,
/// whatever happened in it.
struct Cleanup<'a>(&'a str);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Err(error) = podman::remove_pod(self.0) {
            eprintln!("warning: could not remove pod {}: {error:#}", self.0);
        }
    }
}

fn run_case(pod: &str, file: &Path, check: fn(&Pod) -> anyhow::Result<()>) -> anyhow::Result<()> {
    // A leftover from an interrupted run would mix old lines into the volume.
    podman::remove_pod(pod)?;
    let _cleanup = Cleanup(pod);
    podman::play(file)?;
    let handle = Pod {
        name: pod.to_owned(),
    };
    let result = check(&handle).and_then(|()| handle.stops_promptly());
    if result.is_err() {
        handle.dump();
    }
    result
}

/// A played pod: helpers over podman named like kubectl's.
struct Pod {
    name: String,
}

impl Pod {
    fn container(&self, name: &str) -> String {
        format!("{}-{name}", self.name)
    }

    /// Waits until `expected` app containers are all running (`READY n/n`);
    /// fails at once if one exited, with its logs.
    fn wait_ready(&self, expected: usize) -> anyhow::Result<()> {
        let mut exited: Option<ContainerState> = None;
        let waited = wait_for(
            &format!("{} READY {expected}/{expected}", self.name),
            START_TIMEOUT,
            || {
                let list = podman::containers(&self.name).map_err(|e| format!("{e:#}"))?;
                if let Some(dead) = list.iter().find(|c| !c.init && c.state == "exited") {
                    exited = Some(dead.clone());
                    return Ok(());
                }
                match podman::ready(&list) {
                    (running, total) if running == expected && total == expected => Ok(()),
                    (running, total) => Err(format!("READY {running}/{total}: {list:?}")),
                }
            },
        );
        waited?;
        if let Some(dead) = exited {
            bail!(
                "container {} exited (code {}) instead of running; its log:\n{}",
                dead.name,
                dead.exit_code,
                self.all_logs(&dead.name)
            );
        }
        Ok(())
    }

    /// The container's stdout (`kubectl logs POD -c NAME`).
    fn logs(&self, container: &str) -> String {
        try_output(podman().args(["logs", &self.container(container)])).1
    }

    fn all_logs(&self, container: &str) -> String {
        podman::logs(&self.container(container)).unwrap_or_else(|error| format!("{error:#}"))
    }

    /// `kubectl exec POD -c NAME -- ARGS`: (success, stdout, stderr).
    fn exec(&self, container: &str, args: &[&str]) -> (bool, String, String) {
        try_output(
            podman()
                .arg("exec")
                .arg(self.container(container))
                .args(args),
        )
    }

    fn cat(&self, container: &str, path: &str) -> Result<String, String> {
        match self.exec(container, &["cat", path]) {
            (true, stdout, _) => Ok(stdout),
            (false, _, stderr) => Err(format!("cat {path} in {container}: {}", stderr.trim())),
        }
    }

    fn inspect(&self, container: &str) -> anyhow::Result<Value> {
        let json = output(podman().args(["container", "inspect", &self.container(container)]))?;
        let list: Value = serde_json::from_str(&json).context("parsing podman inspect")?;
        Ok(list[0].clone())
    }

    /// Waits until `container`'s stdout satisfies `found`, returning its value.
    fn wait_logs<T>(
        &self,
        container: &str,
        what: &str,
        found: impl Fn(&str) -> Option<T>,
    ) -> anyhow::Result<T> {
        wait_for(
            &format!("{what} in {container}'s log"),
            OUTPUT_TIMEOUT,
            || {
                let logs = self.logs(container);
                found(&logs).ok_or_else(|| format!("log so far:\n{}", tail(&logs, 12)))
            },
        )
    }

    /// Our containers run as 65532 on a read-only root with no capabilities.
    fn check_restricted(&self, container: &str) -> anyhow::Result<()> {
        let info = self.inspect(container)?;
        let user = info["Config"]["User"].as_str().unwrap_or_default();
        ensure!(
            user.starts_with("65532"),
            "{container} runs as user {user:?}, not 65532"
        );
        ensure!(
            info["HostConfig"]["ReadonlyRootfs"] == true,
            "{container}'s root filesystem is writable"
        );
        let caps = info["EffectiveCaps"].as_array().map(Vec::len).unwrap_or(0);
        ensure!(
            caps == 0,
            "{container} kept capabilities: {}",
            info["EffectiveCaps"]
        );
        Ok(())
    }

    /// `podman pod stop` sends SIGTERM: our containers must exit 0 well
    /// within the grace period (busybox's `sh` loops need SIGKILL).
    fn stops_promptly(&self) -> anyhow::Result<()> {
        let start = Instant::now();
        output(podman().args([
            "pod",
            "stop",
            "--time",
            &STOP_GRACE_SECS.to_string(),
            &self.name,
        ]))?;
        let took = start.elapsed();
        let list = podman::containers(&self.name)?;
        let unclean: Vec<_> = list
            .iter()
            .filter(|c| !c.init && c.exit_code != 0)
            .collect();
        ensure!(
            unclean.is_empty(),
            "containers did not exit 0 on SIGTERM: {unclean:?}"
        );
        ensure!(
            took <= STOP_BUDGET,
            "the pod took {took:?} to stop on SIGTERM"
        );
        Ok(())
    }

    /// On failure: what a person debugging would look at first.
    fn dump(&self) {
        eprintln!("--- {}: containers", self.name);
        match podman::containers(&self.name) {
            Ok(list) => {
                for container in &list {
                    eprintln!("{container:?}");
                }
                for container in list {
                    eprintln!(
                        "--- {} logs (last 20 lines):",
                        self.container(&container.name)
                    );
                    eprintln!("{}", tail(&self.all_logs(&container.name), 20));
                }
            }
            Err(error) => eprintln!("(cannot list: {error:#})"),
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// busybox `date`'s default layout, the lab's: `Wed Nov 25 16:00:40 UTC 2026`.
fn is_busybox_date(text: &str) -> bool {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let fields: Vec<&str> = text.split(' ').filter(|f| !f.is_empty()).collect();
    let [day, month, date, time, zone, year] = fields[..] else {
        return false;
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let time_ok = time.split(':').count() == 3 && time.split(':').all(|part| digits(part, 2));
    DAYS.contains(&day)
        && MONTHS.contains(&month)
        && (digits(date, 1) || digits(date, 2))
        && time_ok
        && !zone.is_empty()
        && zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-')
        && digits(year, 4)
}

/// Lines `<date> - <message>` (the lab's `echo "$(date) - ..."`).
fn lines_with_message<'a>(text: &'a str, message: &str) -> Vec<&'a str> {
    let suffix = format!(" - {message}");
    text.lines()
        .filter(|line| line.strip_suffix(&suffix).is_some_and(is_busybox_date))
        .collect()
}

fn multi_container_demo(pod: &Pod) -> anyhow::Result<()> {
    pod.wait_ready(2)?;
    for container in ["writer", "reader"] {
        pod.check_restricted(container)?;
    }
    // The writer's lines land in the shared file, in the lab's layout.
    let file = wait_for("two writer lines in /data/log.txt", OUTPUT_TIMEOUT, || {
        let text = pod.cat("writer", "/data/log.txt")?;
        let good = lines_with_message(&text, "Hello from writer").len();
        if good >= 2 && good == text.lines().count() {
            Ok(text)
        } else {
            Err(format!("file so far:\n{text}"))
        }
    })?;
    // kubectl exec ... -c writer / -c reader -- cat: the same file in both.
    wait_for(
        "the same /data/log.txt in writer and reader",
        OUTPUT_TIMEOUT,
        || {
            let in_writer = pod.cat("writer", "/data/log.txt")?;
            let in_reader = pod.cat("reader", "/data/log.txt")?;
            if in_writer == in_reader {
                Ok(())
            } else {
                Err(format!(
                    "writer sees:\n{in_writer}\nreader sees:\n{in_reader}"
                ))
            }
        },
    )?;
    // The reader follows the file: every line written shows in its log.
    let written: Vec<&str> = file.lines().collect();
    pod.wait_logs("reader", "the file's lines", |logs| {
        written
            .iter()
            .all(|line| logs.lines().any(|l| l == *line))
            .then_some(())
    })?;
    Ok(())
}

fn network_demo(pod: &Pod) -> anyhow::Result<()> {
    pod.wait_ready(2)?;
    pod.check_restricted("client")?;
    pod.wait_logs(
        "client",
        "`<date> - Successfully connected to nginx`",
        |logs| {
            (!lines_with_message(logs, "Successfully connected to nginx").is_empty()).then_some(())
        },
    )?;
    // The server is real: nginx logged the client's request over localhost.
    pod.wait_logs("nginx", "a GET / answered 200 from localhost", |logs| {
        logs.lines()
            .any(|l| {
                (l.starts_with("127.0.0.1 ") || l.starts_with("::1 "))
                    && l.contains("\"GET / HTTP/1.1\" 200 ")
            })
            .then_some(())
    })?;
    Ok(())
}

/// One complete `=== Application Logs ===` ... `---` block, with `lines`
/// lines under each header, as the lab's loop prints once both files exist.
fn aggregator_block(logs: &str, lines: usize) -> Option<()> {
    let all: Vec<&str> = logs.lines().collect();
    let block_len = 2 * lines + 3;
    all.windows(block_len)
        .any(|w| {
            let app = &w[1..=lines];
            let errors = &w[lines + 2..lines + 2 + lines];
            w[0] == "=== Application Logs ==="
                && app
                    .iter()
                    .all(|l| lines_with_message(l, "Application log entry").len() == 1)
                && w[lines + 1] == "=== Error Logs ==="
                && errors
                    .iter()
                    .all(|l| lines_with_message(l, "Error log entry").len() == 1)
                && w[block_len - 1] == "---"
        })
        .then_some(())
}

fn sidecar_logging(pod: &Pod) -> anyhow::Result<()> {
    pod.wait_ready(2)?;
    for container in ["app", "log-aggregator"] {
        pod.check_restricted(container)?;
    }
    // The app writes every 3 s and the aggregator prints every 10 s: after
    // ~15 s, a block carries the full 5 lines of each file.
    pod.wait_logs("log-aggregator", "a block with 5 lines per log", |logs| {
        aggregator_block(logs, 5)
    })?;
    read_only_mount(pod)
}

/// The log-aggregator's /var/log is read-only: podman mounted it so, and a
/// write through that mount fails with EROFS while the same volume is
/// writable through the app's mount. The scratch images hold no program that
/// writes files, so the write goes through the container's own mount table
/// from the host (/proc/PID/root), which is what an exec'd process would see.
fn read_only_mount(pod: &Pod) -> anyhow::Result<()> {
    let info = pod.inspect("log-aggregator")?;
    let mount = info["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["Destination"] == "/var/log")
        .context("log-aggregator has no /var/log mount")?;
    ensure!(
        mount["RW"] == false,
        "log-aggregator's /var/log is mounted read-write: {mount}"
    );

    let probe = |container: &str| -> anyhow::Result<(PathBuf, std::io::Result<()>)> {
        let pid = pod.inspect(container)?["State"]["Pid"]
            .as_i64()
            .unwrap_or_default();
        ensure!(pid > 0, "{container} has no process");
        let path = PathBuf::from(format!("/proc/{pid}/root/var/log/e2e-probe.log"));
        let written = fs::write(&path, "probe\n");
        Ok((path, written))
    };
    let (path, through_app) = probe("app")?;
    through_app.with_context(|| format!("writing {} through the app's mount", path.display()))?;
    let _ = fs::remove_file(&path);
    let (path, through_aggregator) = probe("log-aggregator")?;
    match through_aggregator {
        Ok(()) => bail!(
            "{} was writable through the read-only mount",
            path.display()
        ),
        Err(error) if error.raw_os_error() == Some(30) => Ok(()), // EROFS
        Err(error) => bail!("writing {}: expected EROFS, got {error}", path.display()),
    }
}

fn resources_demo(pod: &Pod) -> anyhow::Result<()> {
    pod.wait_ready(2)?;
    pod.check_restricted("container2")?;
    const MI: i64 = 1024 * 1024;
    // (container, memory limit, memory request, CPU limit in millicores)
    for (container, limit, request, millicores) in [
        ("container1", 128 * MI, 64 * MI, 200),
        ("container2", 64 * MI, 32 * MI, 100),
    ] {
        let host = &pod.inspect(container)?["HostConfig"];
        ensure!(
            host["Memory"] == limit,
            "{container} memory limit {} != {limit}",
            host["Memory"]
        );
        ensure!(
            host["MemoryReservation"] == request,
            "{container} memory request {} != {request}",
            host["MemoryReservation"]
        );
        let quota = host["CpuQuota"].as_i64().unwrap_or_default();
        let period = host["CpuPeriod"].as_i64().unwrap_or(100_000);
        ensure!(
            quota * 1000 / period.max(1) == millicores,
            "{container} CPU quota {quota}/{period} is not {millicores}m"
        );
    }
    // kubectl top pod --containers: podman stats shows both, with the limits.
    wait_for("podman stats for both containers", OUTPUT_TIMEOUT, || {
        let stats = podman::stats(&[]).map_err(|e| format!("{e:#}"))?;
        for (container, limit) in [("container1", 128 * MI), ("container2", 64 * MI)] {
            let name = pod.container(container);
            let entry = stats
                .iter()
                .find(|e| e.name == name)
                .ok_or_else(|| format!("{name} missing from podman stats"))?;
            let limit_ok = entry
                .mem_limit_bytes
                .is_some_and(|l| (l - limit as f64).abs() < limit as f64 * 0.01);
            if !(entry.mem_used_bytes.is_some_and(|u| u > 0.0) && limit_ok) {
                return Err(format!(
                    "{name}: memory {entry:?}, expected a use and a {limit} limit"
                ));
            }
        }
        Ok(())
    })
}

fn three_containers(pod: &Pod) -> anyhow::Result<()> {
    pod.wait_ready(3)?;
    for container in ["writer1", "writer2", "reader"] {
        pod.check_restricted(container)?;
    }
    // `Writer N: <date>` lines from both writers; any interleaving would
    // break a line's shape (two prefixes, a cut date, a merged line).
    let text = wait_for(
        "lines from both writers in /shared/data.txt",
        OUTPUT_TIMEOUT,
        || {
            let text = pod.cat("reader", "/shared/data.txt")?;
            let bad: Vec<&str> = text
                .lines()
                .filter(|line| {
                    !["Writer 1: ", "Writer 2: "]
                        .iter()
                        .any(|p| line.strip_prefix(p).is_some_and(is_busybox_date))
                })
                .collect();
            if !bad.is_empty() {
                return Err(format!("malformed or interleaved lines: {bad:?}"));
            }
            let both = ["Writer 1: ", "Writer 2: "]
                .iter()
                .all(|p| text.lines().filter(|l| l.starts_with(p)).count() >= 2);
            if both && text.ends_with('\n') {
                Ok(text)
            } else {
                Err(format!("file so far:\n{text}"))
            }
        },
    )?;
    let written: Vec<&str> = text.lines().collect();
    pod.wait_logs("reader", "both writers' lines", |logs| {
        written
            .iter()
            .all(|line| logs.lines().any(|l| l == *line))
            .then_some(())
    })
}

fn init_demo(pod: &Pod) -> anyhow::Result<()> {
    pod.wait_ready(1)?;
    pod.check_restricted("app")?;
    // The app started after the init container: it prints the config.
    pod.wait_logs("app", "`Configuration initialized`", |logs| {
        (logs.lines().next() == Some("Configuration initialized")).then_some(())
    })?;
    let config = pod
        .cat("app", "/config/app.conf")
        .map_err(anyhow::Error::msg)?;
    ensure!(
        config == "Configuration initialized\n",
        "/config/app.conf holds {config:?}"
    );
    Ok(())
}

fn adapter_demo(pod: &Pod) -> anyhow::Result<()> {
    pod.wait_ready(2)?;
    for container in ["writer", "adapter"] {
        pod.check_restricted(container)?;
    }
    // Every stdout line is a JSON object; the writer's message is in them.
    let lines = pod.wait_logs(
        "adapter",
        "two JSON lines carrying the writer's message",
        |logs| {
            let parsed: Vec<Value> = logs
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .filter(Value::is_object)
                .collect();
            let carrying = parsed
                .iter()
                .filter(|v| v.to_string().contains("Hello from writer"))
                .count();
            (carrying >= 2).then_some(logs.to_owned())
        },
    )?;
    for line in lines.lines() {
        let value: Value = serde_json::from_str(line)
            .with_context(|| format!("adapter printed a line that is not JSON: {line:?}"))?;
        ensure!(
            value.is_object(),
            "adapter printed JSON that is not an object: {line}"
        );
    }
    Ok(())
}

/// Renders `kustomization`, plays the object named `object`, and runs `check`
/// on the pod podman made of it, found among `pod_names`; removes every
/// candidate before (a leftover from an interrupted run) and after (a guard),
/// and prints the containers' states and logs on failure.
fn run_played(
    set: &str,
    kustomization: &str,
    object: &str,
    pod_names: &[String],
    check: fn(&Pod) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let manifests = kube::split_rendered(set, kustomization)?;
    let file = kube::manifest_for(&manifests, object)?;
    for name in pod_names {
        podman::remove_pod(name)?;
    }
    let _cleanup: Vec<Cleanup> = pod_names.iter().map(|name| Cleanup(name)).collect();
    podman::play(&file)?;
    let name = pod_names
        .iter()
        .find(|name| podman::pod_exists(name))
        .with_context(|| format!("`podman kube play` made none of the pods {pod_names:?}"))?;
    let pod = Pod { name: name.clone() };
    let result = check(&pod);
    if result.is_err() {
        pod.dump();
    }
    result
}

/// deploy/production's Deployment and the pod podman makes of it.
const DEPLOYMENT: &str = "app-with-log-sidecar";
/// The files the production app writes (its writer targets are their stems).
const PRODUCTION_LOGS: [&str; 2] = ["/var/log/app/app.log", "/var/log/app/error.log"];

fn production() -> anyhow::Result<()> {
    // podman 4.3 names a Deployment's pods `<name>-pod-<replica>`; podman 5
    // names the (single) pod `<name>-pod`.
    let names = [format!("{DEPLOYMENT}-pod-0"), format!("{DEPLOYMENT}-pod")];
    run_played(
        "production",
        "deploy/production/overlays/local",
        DEPLOYMENT,
        &names,
        production_checks,
    )
}

/// Runs our client image inside the pod's network namespace (as a probe or
/// a Prometheus scrape from the pod IP would reach the port) and returns its
/// exit code and stderr.
fn client_in_pod(pod: &Pod, args: &[&str]) -> anyhow::Result<(i32, String)> {
    let out = podman()
        .args(["run", "--rm", "--pod", &pod.name])
        .arg(images::local_image("client"))
        .args(["--once", "--timeout", "2s"])
        .args(args)
        .output()
        .context("running the client image in the pod")?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The aggregator's `/metrics` has a line matching `regex` (client's
/// `--expect-body`).
fn metrics_match(pod: &Pod, regex: &str) -> Result<(), String> {
    match client_in_pod(
        pod,
        &["--expect-body", regex, "http://localhost:9090/metrics"],
    ) {
        Ok((0, _)) => Ok(()),
        Ok((code, stderr)) => Err(format!("exit {code}: {}", stderr.trim())),
        Err(error) => Err(format!("{error:#}")),
    }
}

fn production_checks(pod: &Pod) -> anyhow::Result<()> {
    pod.wait_ready(2)?;
    for container in ["app", "log-aggregator"] {
        pod.check_restricted(container)?;
    }
    let mounts = pod.inspect("log-aggregator")?["Mounts"].clone();
    let logs_mount = mounts
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["Destination"] == "/var/log/app")
        .context("log-aggregator has no /var/log/app mount")?;
    ensure!(
        logs_mount["RW"] == false,
        "log-aggregator's /var/log/app is mounted read-write: {logs_mount}"
    );
    // The probes' endpoints, as kubelet would call them on the metrics port.
    for path in ["/healthz", "/readyz"] {
        let url = format!("http://localhost:9090{path}");
        wait_for(
            &format!("200 from {url}"),
            OUTPUT_TIMEOUT,
            || match client_in_pod(pod, &["--expect-status", "200", &url]) {
                Ok((0, _)) => Ok(()),
                Ok((code, stderr)) => Err(format!("exit {code}: {}", stderr.trim())),
                Err(error) => Err(format!("{error:#}")),
            },
        )?;
    }
    // The writer rotates each file every ~3.5 s (16 KiB at 50 lines/s): wait
    // for two rotations per file, as the aggregator counts them.
    wait_for(
        "4 rotations in log_aggregator_rotations_total",
        OUTPUT_TIMEOUT,
        || {
            metrics_match(
                pod,
                r"(?m)^log_aggregator_rotations_total ([4-9]|[1-9][0-9]+)$",
            )
        },
    )?;
    for file in PRODUCTION_LOGS {
        let escaped = file.replace('.', r"\.");
        for metric in ["log_aggregator_lines_total", "log_aggregator_bytes_total"] {
            let regex = format!(r#"(?m)^{metric}\{{file="{escaped}"\}} [1-9][0-9]*$"#);
            metrics_match(pod, &regex).map_err(anyhow::Error::msg)?;
        }
    }
    metrics_match(pod, r"(?m)^log_aggregator_files_followed [0-9]+$")
        .map_err(anyhow::Error::msg)?;

    // Stop the app first, as a native sidecar's ordering would: its last
    // lines are on disk before the aggregator's SIGTERM drain reads to the end.
    output(podman().args([
        "stop",
        "--time",
        &STOP_GRACE_SECS.to_string(),
        &pod.container("app"),
    ]))?;
    pod.stops_promptly()?;

    let written = writer_report(&pod.all_logs("app"))?;
    let streamed = pod.logs("log-aggregator");
    check_json_envelopes(&streamed)?;
    let capture = lab_dir().join("production").join("log-aggregator.jsonl");
    fs::write(&capture, &streamed).with_context(|| format!("writing {}", capture.display()))?;
    let verdict = writer_verify(&capture)?;
    for (target, lines, rotations) in &written {
        ensure!(
            *rotations >= 1,
            "the app's {target} log was never rotated ({rotations} rotations)"
        );
        let seen = verdict["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["target"] == target.as_str())
            .with_context(|| format!("no {target} line in the aggregator's output"))?;
        ensure!(
            seen["lines"] == *lines && seen["lost"] == 0 && seen["duplicated"] == 0,
            "the app wrote {lines} {target} lines over {rotations} rotations; the aggregator \
             streamed {} (lost {}, duplicated {}, lost ranges {}); capture: {}",
            seen["lines"],
            seen["lost"],
            seen["duplicated"],
            seen["lost_ranges"],
            capture.display()
        );
    }
    ensure!(
        verdict["ok"] == true && verdict["unmarked"] == 0 && verdict["invalid"] == 0,
        "writer verify failed on {}: {verdict}",
        capture.display()
    );
    Ok(())
}

/// (target, lines written, rotations) from the writer's `--report json`
/// line on stderr at exit.
fn writer_report(logs: &str) -> anyhow::Result<Vec<(String, u64, u64)>> {
    let report = logs
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|value| value["targets"].is_array())
        .with_context(|| format!("no JSON exit report in the app's log:\n{}", tail(logs, 10)))?;
    let mut targets = Vec::new();
    for target in report["targets"].as_array().into_iter().flatten() {
        let name = target["target"]
            .as_str()
            .context("a report target without a name")?;
        let lines = target["lines"]
            .as_u64()
            .context("a report target without lines")?;
        let rotations = target["rotations"].as_u64().unwrap_or(0);
        targets.push((name.to_owned(), lines, rotations));
    }
    ensure!(
        !targets.is_empty(),
        "the app's report names no target: {report}"
    );
    Ok(targets)
}

/// Every line of the aggregator's stdout is a `--output json` object: the
/// source file (one of the app's, or a rotated name of one: `app.log.1`),
/// the line, the time.
fn check_json_envelopes(streamed: &str) -> anyhow::Result<()> {
    ensure!(!streamed.is_empty(), "the aggregator streamed nothing");
    let is_app_file = |file: &str| {
        PRODUCTION_LOGS.iter().any(|log| {
            file.strip_prefix(log).is_some_and(|rest| {
                rest.is_empty()
                    || rest
                        .strip_prefix('.')
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
        })
    };
    // `--parse json --add pod=${POD_NAME}`: the app's own fields, parsed,
    // then the file and the pod's name from the Downward API.
    for line in streamed.lines() {
        let value: Value = serde_json::from_str(line)
            .with_context(|| format!("the aggregator printed a line that is not JSON: {line:?}"))?;
        ensure!(
            is_app_file(value["file"].as_str().unwrap_or_default())
                && value["seq"].is_u64()
                && value["message"].is_string()
                && value["time"].is_string()
                && value["pod"]
                    .as_str()
                    .is_some_and(|pod| pod.starts_with(DEPLOYMENT))
                && value.get("parse_error").is_none(),
            "unexpected JSON line from the aggregator (a parsed record with the pod's name): {line}"
        );
    }
    Ok(())
}

/// `writer verify --report json FILE` with the host-built release writer.
fn writer_verify(capture: &Path) -> anyhow::Result<Value> {
    let writer = images::release_dir().join("writer");
    ensure!(
        writer.is_file(),
        "{} is missing: run `cargo xtask images` (it builds the release binaries)",
        writer.display()
    );
    let out = std::process::Command::new(&writer)
        .args(["verify", "--report", "json"])
        .arg(capture)
        .output()
        .with_context(|| format!("running {}", writer.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).with_context(|| {
        format!(
            "writer verify printed no JSON report: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn examples() -> anyhow::Result<()> {
    run_played(
        "examples",
        "deploy/examples/overlays/local",
        "client-exec-probe",
        &["client-exec-probe".to_owned()],
        client_exec_probe,
    )
}

/// The example's exec probes, run as kubelet would (`kubectl exec`), exactly
/// as the rendered manifest spells them.
fn client_exec_probe(pod: &Pod) -> anyhow::Result<()> {
    pod.wait_ready(2)?;
    pod.check_restricted("client")?;
    let manifest = fs::read_to_string(lab_dir().join("examples").join("client-exec-probe.yaml"))
        .context("reading the rendered example")?;
    let exec_code = |command: &[String]| -> anyhow::Result<(i32, String)> {
        let out = podman()
            .arg("exec")
            .arg(pod.container("client"))
            .args(command)
            .output()
            .context("podman exec")?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let mut liveness = Vec::new();
    for probe in ["livenessProbe", "readinessProbe"] {
        let command = probe_command(&manifest, probe)
            .with_context(|| format!("no exec {probe} on the client in the rendered example"))?;
        ensure!(
            command.first().map(String::as_str) == Some("/usr/local/bin/client")
                && command.iter().any(|a| a == "--once"),
            "the {probe} is not `client --once`: {command:?}"
        );
        // nginx may still be starting: the probe passes within the deadline.
        wait_for(
            &format!("the {probe} to exit 0"),
            OUTPUT_TIMEOUT,
            || match exec_code(&command) {
                Ok((0, _)) => Ok(()),
                Ok((code, stderr)) => Err(format!("exit {code}: {}", stderr.trim())),
                Err(error) => Err(format!("{error:#}")),
            },
        )?;
        if probe == "livenessProbe" {
            liveness = command;
        }
    }
    // The same probe against a port nothing listens on: docs/client.md's
    // exit code 7 (refused), with the reason on stderr.
    let url = liveness.last().cloned().unwrap_or_default();
    let closed = url.replace("localhost:80", "localhost:81");
    ensure!(
        closed != url,
        "the liveness probe's URL {url} is not localhost:80"
    );
    let mut command = liveness.clone();
    *command.last_mut().expect("checked non-empty") = closed.clone();
    let (code, stderr) = exec_code(&command)?;
    ensure!(
        code == 7 && stderr.contains("refused"),
        "the probe against {closed} exited {code} (expected 7, refused): {}",
        stderr.trim()
    );
    pod.stops_promptly()
}

/// The `exec.command` of `probe` (livenessProbe, readinessProbe) in a
/// manifest as kustomize renders it (block lists, scalars maybe quoted).
fn probe_command(manifest: &str, probe: &str) -> Option<Vec<String>> {
    let mut lines = manifest
        .lines()
        .skip_while(|line| line.trim() != format!("{probe}:"));
    lines.next()?;
    let command_line = lines.find(|line| line.trim() == "command:")?;
    let indent = command_line.len() - command_line.trim_start().len();
    let items: Vec<String> = lines
        .take_while(|line| {
            line.len() - line.trim_start().len() == indent && line.trim_start().starts_with("- ")
        })
        .map(|line| {
            let item = line.trim_start()[2..].trim();
            item.strip_prefix('"')
                .and_then(|i| i.strip_suffix('"'))
                .unwrap_or(item)
                .to_owned()
        })
        .collect();
    (!items.is_empty()).then_some(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_dates_are_recognised_and_others_are_not() {
        assert!(is_busybox_date("Wed Nov 25 16:00:40 UTC 2026"));
        assert!(is_busybox_date("Thu Jan  1 00:00:00 UTC 1970"));
        assert!(!is_busybox_date("2026-11-25T16:00:40Z"));
        assert!(!is_busybox_date(
            "Wed Nov 25 16:00:40 UTC 2026 Writer 2: Wed"
        ));
        assert!(!is_busybox_date("Wed Nov 25 16:00 UTC 2026"));
    }

    #[test]
    fn interleaved_lines_are_not_writer_lines() {
        let text = "Writer 1: Wed Nov 25 16:00:40 UTC 2026\n\
                    Writer 1: Wed Nov 25 16:0Writer 2: Wed Nov 25 16:00:40 UTC 2026\n";
        let good = text
            .lines()
            .filter(|l| l.strip_prefix("Writer 1: ").is_some_and(is_busybox_date))
            .count();
        assert_eq!(good, 1);
    }

    #[test]
    fn aggregator_block_needs_the_lab_layout() {
        let line = |m: &str| format!("Wed Nov 25 16:00:40 UTC 2026 - {m}\n");
        let mut block = String::from("=== Application Logs ===\n");
        block += &line("Application log entry").repeat(2);
        block += "=== Error Logs ===\n";
        block += &line("Error log entry").repeat(2);
        block += "---\n";
        assert!(aggregator_block(&block, 2).is_some());
        assert!(aggregator_block(&block, 3).is_none());
        assert!(aggregator_block(&block.replace("---", "--"), 2).is_none());
    }

    #[test]
    fn probe_commands_are_read_from_rendered_yaml() {
        let manifest = "    livenessProbe:\n      exec:\n        command:\n        - /usr/local/bin/client\n        - --once\n        - http://localhost:80/\n      periodSeconds: 10\n    readinessProbe:\n      exec:\n        command:\n        - /usr/local/bin/client\n        - --expect-status\n        - \"200\"\n      periodSeconds: 5\n";
        assert_eq!(
            probe_command(manifest, "livenessProbe").unwrap(),
            ["/usr/local/bin/client", "--once", "http://localhost:80/"]
        );
        assert_eq!(
            probe_command(manifest, "readinessProbe").unwrap(),
            ["/usr/local/bin/client", "--expect-status", "200"]
        );
        assert!(probe_command(manifest, "startupProbe").is_none());
    }

    #[test]
    fn the_writer_report_is_the_last_json_line_with_targets() {
        let logs = "noise\n{\"targets\":[{\"target\":\"app\",\"lines\":7,\"rotations\":2}],\"total\":{}}\n";
        assert_eq!(writer_report(logs).unwrap(), [("app".to_owned(), 7, 2)]);
        assert!(writer_report("no report\n").is_err());
    }

    #[test]
    fn aggregator_lines_must_be_parsed_records_of_the_app_files_with_the_pod() {
        let good = "{\"time\":\"t\",\"message\":\"m\",\"seq\":1,\"target\":\"app\",\
                    \"file\":\"/var/log/app/app.log\",\"pod\":\"app-with-log-sidecar-pod-0\"}\n";
        assert!(check_json_envelopes(good).is_ok());
        assert!(check_json_envelopes(&good.replace("\"pod\"", "\"node\"")).is_err());
        let unparsed = "{\"message\":\"x\",\"parse_error\":\"e\",\"file\":\"/var/log/app/app.log\",\
                        \"pod\":\"app-with-log-sidecar-pod-0\"}\n";
        assert!(check_json_envelopes(unparsed).is_err());
        assert!(check_json_envelopes("plain line\n").is_err());
        assert!(check_json_envelopes(&good.replace("app.log", "app.log.1")).is_ok());
        assert!(check_json_envelopes(&good.replace("app.log", "app.log.x")).is_err());
        assert!(check_json_envelopes(&good.replace("app.log", "other.log")).is_err());
        assert!(check_json_envelopes("").is_err());
    }
}
