//! The load test in a pod: deploy/loadtest played with podman, the
//! aggregator's `podman stats` sampled while the writer runs, its `podman
//! logs` checked with `writer verify` from the writer image; the pod is
//! removed also on failure.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use super::{DRAIN_LIMIT, LoadtestArgs, QUIET, verify_report};
use crate::{kube, podman, util};

/// The pod deploy/loadtest defines, and its containers as podman names them.
const POD: &str = "loadtest";
const POD_WRITER: &str = "loadtest-writer";
const POD_AGGREGATOR: &str = "loadtest-log-aggregator";
/// The kustomization played by `--pod`.
const POD_KUSTOMIZATION: &str = "deploy/loadtest";

/// Figures of one pod run.
#[derive(Debug, Default)]
struct PodRun {
    written: u64,
    offered: f64,
    lines: u64,
    lost: u64,
    duplicated: u64,
    cpu_s: f64,
    cpu_max_percent: f64,
    peak_mem_bytes: f64,
    drain_s: f64,
}

pub(super) fn run(args: &LoadtestArgs) -> anyhow::Result<()> {
    podman::ensure_podman(false)?;
    if !args.no_build {
        crate::images::build(false, false)?;
    }
    let manifest = pod_manifest(args.pod_rate, args.pod_seconds)?;
    if podman::pod_exists(POD) {
        podman::remove_pod(POD)?;
    }
    let outcome = play_and_measure(&manifest, args.pod_seconds);
    // Removed also on failure: a half-run pod would hold its emptyDir.
    let removed = podman::remove_pod(POD);
    let run = outcome?;
    removed?;
    println!(
        "pod {POD}: writer WRITER_RATE={} for {} s wrote {} lines ({:.0}/s); \
         log-aggregator delivered {} lines: {} lost, {} duplicated; \
         its CPU {:.2} s ({:.1}% of a core over the run, peak {:.1}%), peak memory {:.1} MiB; \
         drain after the writer stopped {:.1} s",
        args.pod_rate,
        args.pod_seconds,
        run.written,
        run.offered,
        run.lines,
        run.lost,
        run.duplicated,
        run.cpu_s,
        run.cpu_s * 100.0 / (args.pod_seconds as f64 + run.drain_s).max(1e-9),
        run.cpu_max_percent,
        run.peak_mem_bytes / (1024.0 * 1024.0),
        run.drain_s
    );
    if run.lost > 0 || run.duplicated > 0 {
        bail!(
            "log-aggregator in the pod lost {} and repeated {} lines",
            run.lost,
            run.duplicated
        );
    }
    Ok(())
}

/// Renders deploy/loadtest, sets the writer's rate and duration, and checks
/// its images are the ones `cargo xtask images` builds.
fn pod_manifest(rate: u64, seconds: u64) -> anyhow::Result<PathBuf> {
    let rendered = kube::render(&util::workspace_root().join(POD_KUSTOMIZATION))?;
    let rendered = kube::set_env(
        &rendered,
        POD_KUSTOMIZATION,
        "WRITER_RATE",
        &rate.to_string(),
    )?;
    let rendered = kube::set_env(
        &rendered,
        POD_KUSTOMIZATION,
        "WRITER_DURATION",
        &format!("{seconds}s"),
    )?;
    for binary in ["writer", "log-aggregator"] {
        let image = crate::images::local_image(binary);
        if !rendered.contains(&format!("image: {image}\n")) {
            bail!(
                "{POD_KUSTOMIZATION} does not use {image}, the image `cargo xtask images` builds"
            );
        }
    }
    let dir = util::lab_dir().join("loadtest");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join(format!("{POD}.yaml"));
    std::fs::write(&file, rendered).with_context(|| format!("writing {}", file.display()))?;
    Ok(file)
}

fn play_and_measure(manifest: &Path, seconds: u64) -> anyhow::Result<PodRun> {
    podman::play(manifest)?;
    let mut run = PodRun::default();
    // podman stats of the aggregator until the writer has exited.
    let deadline = Instant::now() + Duration::from_secs(seconds + 120);
    loop {
        if let Some((cpu_s, cpu_percent, mem)) = aggregator_stats() {
            run.cpu_s = run.cpu_s.max(cpu_s);
            run.cpu_max_percent = run.cpu_max_percent.max(cpu_percent);
            run.peak_mem_bytes = run.peak_mem_bytes.max(mem);
        }
        let containers = podman::containers(POD)?;
        let state = |name: &str| {
            containers
                .iter()
                .find(|c| c.name == name)
                .map(|c| (c.state.clone(), c.exit_code))
        };
        match state("writer") {
            Some((s, code)) if s == "exited" => {
                if code != 0 {
                    bail!(
                        "the writer exited with {code}: {}",
                        podman::logs(POD_WRITER).unwrap_or_default()
                    );
                }
                break;
            }
            _ if Instant::now() > deadline => bail!("the writer did not finish in time"),
            _ => {}
        }
        if let Some((s, _)) = state("log-aggregator")
            && s == "exited"
        {
            bail!(
                "log-aggregator exited: {}",
                podman::logs(POD_AGGREGATOR).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let writer_end = Instant::now();
    let report = podman::logs(POD_WRITER)?;
    let report: Value = report
        .lines()
        .find(|line| line.starts_with('{'))
        .context("the writer's logs hold no JSON report (WRITER_REPORT=json)")
        .and_then(|line| serde_json::from_str(line).context("parsing the writer's report"))?;
    run.written = report["total"]["lines"].as_u64().unwrap_or(0);
    run.offered = report["total"]["lines_per_s"].as_f64().unwrap_or(0.0);

    // Drain: the aggregator's logs until they hold every line or stay still.
    let mut last_count = 0;
    let mut last_growth = writer_end;
    let logs = loop {
        let logs = podman::logs(POD_AGGREGATOR)?;
        let count = logs.lines().count() as u64;
        if count != last_count {
            last_count = count;
            last_growth = Instant::now();
        }
        if count >= run.written || last_growth.elapsed() > QUIET {
            break logs;
        }
        if writer_end.elapsed() > DRAIN_LIMIT {
            break logs;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    run.drain_s = last_growth
        .saturating_duration_since(writer_end)
        .as_secs_f64();
    if let Some((cpu_s, cpu_percent, mem)) = aggregator_stats() {
        run.cpu_s = run.cpu_s.max(cpu_s);
        run.cpu_max_percent = run.cpu_max_percent.max(cpu_percent);
        run.peak_mem_bytes = run.peak_mem_bytes.max(mem);
    }

    // The checker from the writer image: nothing to build on the host.
    let capture = manifest.with_file_name("log-aggregator.log");
    std::fs::write(&capture, &logs).with_context(|| format!("writing {}", capture.display()))?;
    let output = podman::command()
        .args(["run", "--rm", "-i", "--network", "none"])
        .arg(crate::images::local_image("writer"))
        .args([
            "verify",
            "--report",
            "json",
            "--expect",
            &run.written.to_string(),
            "-",
        ])
        .stdin(File::open(&capture)?)
        .output()
        .context("running writer verify in the writer image")?;
    let (lines, lost, duplicated) = verify_report(&output.stdout, &output.stderr, run.written)?;
    run.lines = lines;
    run.lost = lost;
    run.duplicated = duplicated;
    Ok(run)
}

/// The aggregator's (CPU seconds, CPU %, memory bytes) from `podman stats`.
fn aggregator_stats() -> Option<(f64, f64, f64)> {
    let stats = podman::stats(&[POD_AGGREGATOR]).ok()?;
    let entry = stats.first()?;
    Some((entry.cpu_s?, entry.cpu_percent?, entry.mem_used_bytes?))
}
