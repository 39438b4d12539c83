//! podman standing in for a cluster: every `podman` call of the tasks, always
//! with the project's engine settings (podman/containers.conf through
//! `CONTAINERS_CONF`, so /etc/containers is never edited), and what they ask
//! of it: play and remove a pod, its containers' states, logs and stats.
//!
//! Pods are named as in their manifests; podman names containers
//! `<pod>-<container>`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::kube;
use crate::stats::{go_duration_s, parse_size};
use crate::util::{apt_install, on_path, output, try_output, workspace_root};

/// Packages podman needs on a Debian/Ubuntu host.
pub const PACKAGES: &[&str] = &["podman", "runc", "catatonit"];

/// The engine settings this project's pods need (see podman/containers.conf).
pub fn containers_conf() -> PathBuf {
    workspace_root().join("podman").join("containers.conf")
}

/// A `podman` command with the project's engine settings, run from the
/// workspace root.
pub fn command() -> Command {
    let mut command = Command::new("podman");
    command.env("CONTAINERS_CONF", containers_conf());
    command.current_dir(workspace_root());
    command
}

/// Checks podman can run containers with the project's settings; with
/// `install`, installs it first when missing (root, apt-get).
pub fn ensure_podman(install: bool) -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|program| match *program {
            // catatonit (the pods' infra process) lives outside PATH.
            "catatonit" => {
                !on_path(program) && !Path::new("/usr/libexec/podman/catatonit").exists()
            }
            _ => !on_path(program),
        })
        .collect();
    if !missing.is_empty() {
        if install {
            apt_install(PACKAGES)?;
        } else {
            bail!(
                "{} not installed: run `apt-get install -y {}` as root on Debian/Ubuntu \
                 (or `cargo xtask lab up --install`, which does it), then try again",
                missing.join(", "),
                PACKAGES.join(" ")
            );
        }
    }
    let (ok, _, stderr) =
        try_output(command().args(["info", "--format", "{{.Host.OCIRuntime.Name}}"]));
    if !ok {
        bail!(
            "podman cannot run here with {}: {}",
            containers_conf().display(),
            stderr.trim()
        );
    }
    Ok(())
}

/// `podman kube play --replace FILE` (like `kubectl apply -f`).
pub fn play(manifest: &Path) -> anyhow::Result<()> {
    crate::util::run(
        command()
            .args(["kube", "play", "--replace", "--quiet"])
            .arg(manifest)
            .stdout(std::process::Stdio::null()),
    )
}

/// Removes a pod, its containers and the volumes its emptyDirs became.
pub fn remove_pod(pod: &str) -> anyhow::Result<()> {
    let volumes = pod_volumes(pod);
    output(command().args(["pod", "rm", "--force", "--ignore", "--time", "2", pod]))?;
    for volume in volumes {
        let _ = try_output(command().args(["volume", "rm", "--force", &volume]));
    }
    Ok(())
}

/// Named volumes mounted by the pod's containers (kube play turns each
/// emptyDir into one), so removing a pod leaves nothing behind.
fn pod_volumes(pod: &str) -> Vec<String> {
    let (ok, ids, _) =
        try_output(command().args(["ps", "--all", "--quiet", "--filter", &format!("pod={pod}")]));
    if !ok || ids.trim().is_empty() {
        return Vec::new();
    }
    let (ok, json, _) = try_output(
        command()
            .args(["container", "inspect"])
            .args(ids.split_whitespace()),
    );
    let Ok(containers) = serde_json::from_str::<Value>(if ok { &json } else { "[]" }) else {
        return Vec::new();
    };
    let mut volumes: Vec<String> = containers
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|container| container["Mounts"].as_array().cloned().unwrap_or_default())
        .filter(|mount| mount["Type"] == "volume")
        .filter_map(|mount| mount["Name"].as_str().map(str::to_owned))
        .collect();
    volumes.sort();
    volumes.dedup();
    volumes
}

pub fn pod_exists(pod: &str) -> bool {
    try_output(command().args(["pod", "exists", pod])).0
}

/// One container of a pod as `podman ps` sees it.
#[derive(Debug, Clone)]
pub struct ContainerState {
    /// The pod's container name (`writer`), without the `<pod>-` prefix.
    pub name: String,
    /// podman's state: created, running, exited, ...
    pub state: String,
    pub exit_code: i64,
    /// Whether this is an init container (by the manifest).
    pub init: bool,
}

/// The pod's app and init containers (not the infra container).
pub fn containers(pod: &str) -> anyhow::Result<Vec<ContainerState>> {
    let json = output(command().args([
        "ps",
        "--all",
        "--format",
        "json",
        "--filter",
        &format!("pod={pod}"),
    ]))?;
    let list: Value = serde_json::from_str(&json).context("parsing `podman ps --format json`")?;
    // podman does not flag init containers in `ps`: the manifest says.
    let init_names = kube::init_container_names(pod);
    let prefix = format!("{pod}-");
    let mut found = Vec::new();
    for container in list.as_array().into_iter().flatten() {
        if container["IsInfra"].as_bool() == Some(true) {
            continue;
        }
        let full = container["Names"][0].as_str().unwrap_or_default();
        let name = full.strip_prefix(&prefix).unwrap_or(full).to_owned();
        found.push(ContainerState {
            init: init_names.contains(&name),
            name,
            state: container["State"].as_str().unwrap_or_default().to_owned(),
            exit_code: container["ExitCode"].as_i64().unwrap_or_default(),
        });
    }
    Ok(found)
}

/// `READY n/n` as kubectl counts it: running app containers over all app containers.
pub fn ready(containers: &[ContainerState]) -> (usize, usize) {
    let apps: Vec<_> = containers.iter().filter(|c| !c.init).collect();
    let running = apps.iter().filter(|c| c.state == "running").count();
    (running, apps.len())
}

/// `podman logs` of one container: its stdout, then its stderr.
pub fn logs(container: &str) -> anyhow::Result<String> {
    let output = command()
        .args(["logs", container])
        .output()
        .with_context(|| format!("podman logs {container}"))?;
    if !output.status.success() {
        bail!(
            "podman logs {container} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok(text)
}

/// One container's entry of `podman stats --no-stream`.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// podman's container name, `<pod>-<container>`.
    pub name: String,
    /// Memory in use as podman prints it (`2.65MB`): cgroup memory,
    /// page cache included.
    pub mem_used: String,
    pub mem_used_bytes: Option<f64>,
    /// The memory limit podman shows (the host's memory without one).
    pub mem_limit_bytes: Option<f64>,
    pub cpu_s: Option<f64>,
    pub cpu_percent: Option<f64>,
}

/// `podman stats --no-stream` of `containers` (every running one if empty).
pub fn stats(containers: &[&str]) -> anyhow::Result<Vec<Stats>> {
    let json = output(
        command()
            .args(["stats", "--no-stream", "--format", "json"])
            .args(containers),
    )?;
    parse_stats(&json)
}

fn parse_stats(json: &str) -> anyhow::Result<Vec<Stats>> {
    let list: Value = serde_json::from_str(json).context("parsing `podman stats --format json`")?;
    Ok(list
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| {
            let usage = entry["mem_usage"].as_str().unwrap_or_default();
            let (used, limit) = usage.split_once('/').unwrap_or((usage, ""));
            Stats {
                name: entry["name"].as_str().unwrap_or_default().to_owned(),
                mem_used: used.trim().to_owned(),
                mem_used_bytes: parse_size(used),
                mem_limit_bytes: parse_size(limit),
                cpu_s: entry["cpu_time"].as_str().and_then(go_duration_s),
                cpu_percent: entry["cpu_percent"]
                    .as_str()
                    .and_then(|text| text.trim().trim_end_matches('%').parse().ok()),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_entries_parse_memory_cpu_and_limit() {
        let json = r#"[{"name":"loadtest-log-aggregator","cpu_time":"1m2.5s","cpu_percent":"12.50%",
                       "mem_usage":"2.65MB / 134.2MB"}]"#;
        let stats = parse_stats(json).unwrap();
        assert_eq!(stats[0].name, "loadtest-log-aggregator");
        assert_eq!(stats[0].mem_used, "2.65MB");
        assert_eq!(stats[0].mem_used_bytes, Some(2_650_000.0));
        assert!(
            stats[0]
                .mem_limit_bytes
                .is_some_and(|b| (b - 134.2e6).abs() < 1.0)
        );
        assert_eq!(stats[0].cpu_s, Some(62.5));
        assert_eq!(stats[0].cpu_percent, Some(12.5));
    }
}
