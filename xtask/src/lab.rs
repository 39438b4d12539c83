//! `cargo xtask lab`: the lab's pods on this machine, with podman standing in
//! for a cluster, plus rendering and schema validation of every overlay.
//!
//! `up` builds what changed (binaries, images), renders deploy/overlays/local
//! with `kubectl kustomize`, splits it into one file per pod under .lab/, and
//! plays each with `podman kube play`, always through the project's engine
//! settings (podman/containers.conf via `CONTAINERS_CONF`). Pods are named as
//! in the lab; podman names containers `<pod>-<container>`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::images;
use crate::util::{
    self, apt_install, containers_conf, lab_dir, on_path, output, parse_size, podman, try_output,
    wait_for, workspace_root,
};

/// The lab's pods (deploy/base), in the lab's order, plus the adapter.
pub const PODS: &[&str] = &[
    "multi-container-demo",
    "network-demo",
    "sidecar-logging",
    "resources-demo",
    "three-containers",
    "init-demo",
    "adapter-demo",
];

/// Every kustomization that must render and validate.
pub const KUSTOMIZATIONS: &[&str] = &[
    "deploy/overlays/local",
    "deploy/overlays/cluster",
    "deploy/overlays/cluster-native-sidecar",
    "deploy/lab-original",
    "deploy/production/overlays/local",
    "deploy/production/overlays/cluster",
    "deploy/production/overlays/cluster-native-sidecar",
    "deploy/production/overlays/cluster-relp",
    "deploy/production/overlays/cluster-otlp",
    "deploy/examples/overlays/local",
    "deploy/examples/overlays/cluster",
    "deploy/loadtest",
];

/// The oldest Kubernetes we validate for: native sidecars need 1.29.
const OLDEST_KUBERNETES: &str = "1.29.0";

/// Packages the lab needs on a Debian/Ubuntu host.
const PODMAN_PACKAGES: &[&str] = &["podman", "runc", "catatonit"];

#[derive(clap::Args)]
pub struct LabArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Build binaries and images if they changed, then play the pods (all if none named).
    Up {
        /// Pods to play: multi-container-demo, network-demo, sidecar-logging,
        /// resources-demo, three-containers, init-demo, adapter-demo.
        pods: Vec<String>,
        /// Install podman and the packages the images need with apt-get (root, Debian/Ubuntu).
        #[arg(long)]
        install: bool,
    },
    /// Remove the lab's pods (all if none named).
    Down { pods: Vec<String> },
    /// The lab's pods and their containers, like `kubectl get pods`.
    Status,
    /// Print a rendered kustomization (default: the local overlay).
    Render {
        #[arg(default_value = "deploy/overlays/local")]
        kustomization: String,
    },
    /// Render every overlay and validate each object against the Kubernetes
    /// schemas of 1.29 and of the newest version kubernetes-validate ships.
    Validate {
        /// Install kubernetes-validate into .lab/venv if it is missing.
        #[arg(long)]
        install: bool,
    },
    /// Idle memory per container (`podman stats`): our pods next to the lab's
    /// own busybox pods (deploy/lab-original), one set at a time.
    Compare {
        /// Seconds each set runs before it is measured.
        #[arg(long, default_value_t = 30)]
        settle: u64,
    },
}

pub fn run(args: LabArgs) -> anyhow::Result<()> {
    match args.action {
        Action::Up { pods, install } => up(&pods, install),
        Action::Down { pods } => down(&selected(&pods)?),
        Action::Status => status(),
        Action::Render { kustomization } => {
            print!("{}", render(&workspace_root().join(kustomization))?);
            Ok(())
        }
        Action::Validate { install } => validate(install),
        Action::Compare { settle } => compare(Duration::from_secs(settle)),
    }
}

fn selected(pods: &[String]) -> anyhow::Result<Vec<String>> {
    if pods.is_empty() {
        return Ok(PODS.iter().map(|pod| pod.to_string()).collect());
    }
    for pod in pods {
        if !PODS.contains(&pod.as_str()) {
            bail!(
                "unknown pod {pod:?}: the lab's pods are {}",
                PODS.join(", ")
            );
        }
    }
    Ok(pods.to_vec())
}

fn up(pods: &[String], install: bool) -> anyhow::Result<()> {
    let pods = selected(pods)?;
    ensure_podman(install)?;
    let missing = images::helper_packages_missing(false);
    if !missing.is_empty() {
        if install {
            apt_install(&missing)?;
        } else {
            bail!(
                "the offline nginx stand-in is built from Debian's packages: \
                 `apt-get install -y {}` (or pass --install)",
                missing.join(" ")
            );
        }
    }
    images::build(false, false)?;
    let manifests = split_rendered("local", "deploy/overlays/local")?;
    for pod in &pods {
        play(&manifest_for(&manifests, pod)?)?;
    }
    print_guide(&pods);
    Ok(())
}

/// Checks podman can run containers with the project's settings; with
/// `install`, installs it first when missing (root, apt-get).
pub fn ensure_podman(install: bool) -> anyhow::Result<()> {
    let missing: Vec<&str> = PODMAN_PACKAGES
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
            apt_install(PODMAN_PACKAGES)?;
        } else {
            bail!(
                "{} not installed: run `apt-get install -y {}` as root on Debian/Ubuntu \
                 (or `cargo xtask lab up --install`, which does it), then try again",
                missing.join(", "),
                PODMAN_PACKAGES.join(" ")
            );
        }
    }
    let (ok, _, stderr) =
        try_output(podman().args(["info", "--format", "{{.Host.OCIRuntime.Name}}"]));
    if !ok {
        bail!(
            "podman cannot run here with {}: {}",
            containers_conf().display(),
            stderr.trim()
        );
    }
    Ok(())
}

/// `kubectl kustomize DIR`.
pub fn render(kustomization: &Path) -> anyhow::Result<String> {
    if !on_path("kubectl") {
        bail!(
            "kubectl is not installed: it renders deploy/ with `kubectl kustomize` \
             (see https://kubernetes.io/docs/tasks/tools/)"
        );
    }
    output(Command::new("kubectl").arg("kustomize").arg(kustomization))
}

/// Renders `kustomization` and writes one manifest per pod under
/// .lab/<set>/; returns (pod name, file) pairs.
pub fn split_rendered(set: &str, kustomization: &str) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let rendered = render(&workspace_root().join(kustomization))?;
    let dir = lab_dir().join(set);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut pods = Vec::new();
    for document in rendered.split("\n---\n") {
        let name = metadata_name(document)
            .with_context(|| format!("a document without metadata.name in {kustomization}"))?;
        let file = dir.join(format!("{name}.yaml"));
        fs::write(&file, format!("{}\n", document.trim_end()))
            .with_context(|| format!("writing {}", file.display()))?;
        pods.push((name, file));
    }
    Ok(pods)
}

/// `metadata.name` of one rendered document. kustomize sorts keys, so the
/// first two-space-indented `name:` is metadata's (apiVersion, kind and
/// metadata come before spec; labels are indented further).
fn metadata_name(document: &str) -> Option<String> {
    document
        .lines()
        .find_map(|line| line.strip_prefix("  name: "))
        .map(|name| name.trim().trim_matches('"').to_owned())
}

pub fn manifest_for(manifests: &[(String, PathBuf)], pod: &str) -> anyhow::Result<PathBuf> {
    manifests
        .iter()
        .find(|(name, _)| name == pod)
        .map(|(_, file)| file.clone())
        .with_context(|| format!("pod {pod} is not in the rendered manifests"))
}

/// `podman kube play --replace FILE` (like `kubectl apply -f`).
pub fn play(manifest: &Path) -> anyhow::Result<()> {
    util::run(
        podman()
            .args(["kube", "play", "--replace", "--quiet"])
            .arg(manifest)
            .stdout(std::process::Stdio::null()),
    )
}

/// Removes a pod, its containers and the volumes its emptyDirs became.
pub fn remove_pod(pod: &str) -> anyhow::Result<()> {
    let volumes = pod_volumes(pod);
    output(podman().args(["pod", "rm", "--force", "--ignore", "--time", "2", pod]))?;
    for volume in volumes {
        let _ = try_output(podman().args(["volume", "rm", "--force", &volume]));
    }
    Ok(())
}

/// Named volumes mounted by the pod's containers (kube play turns each
/// emptyDir into one), so `down` leaves nothing behind.
fn pod_volumes(pod: &str) -> Vec<String> {
    let (ok, ids, _) =
        try_output(podman().args(["ps", "--all", "--quiet", "--filter", &format!("pod={pod}")]));
    if !ok || ids.trim().is_empty() {
        return Vec::new();
    }
    let (ok, json, _) = try_output(
        podman()
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

fn down(pods: &[String]) -> anyhow::Result<()> {
    ensure_podman(false)?;
    for pod in pods {
        if pod_exists(pod) {
            eprintln!("removing pod {pod}");
            remove_pod(pod)?;
        }
    }
    Ok(())
}

pub fn pod_exists(pod: &str) -> bool {
    try_output(podman().args(["pod", "exists", pod])).0
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
    let json = output(podman().args([
        "ps",
        "--all",
        "--format",
        "json",
        "--filter",
        &format!("pod={pod}"),
    ]))?;
    let list: Value = serde_json::from_str(&json).context("parsing `podman ps --format json`")?;
    let init_names = init_container_names(pod);
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

/// Init container names, from the manifest rendered for this pod (podman
/// does not flag them in `ps`).
fn init_container_names(pod: &str) -> Vec<String> {
    let Ok(text) = fs::read_to_string(local_manifest(pod)) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    let mut in_init = false;
    for line in text.lines() {
        if line.starts_with("  ") && !line.starts_with("   ") {
            in_init = line.trim() == "initContainers:";
        } else if in_init {
            if let Some(name) = line
                .strip_prefix("    name: ")
                .or(line.strip_prefix("  - name: "))
            {
                names.push(name.trim().to_owned());
            }
        }
    }
    names
}

/// `READY n/n` as kubectl counts it: running app containers over all app containers.
pub fn ready(containers: &[ContainerState]) -> (usize, usize) {
    let apps: Vec<_> = containers.iter().filter(|c| !c.init).collect();
    let running = apps.iter().filter(|c| c.state == "running").count();
    (running, apps.len())
}

fn status() -> anyhow::Result<()> {
    ensure_podman(false)?;
    println!("{:<22} {:<7} {:<10} CONTAINERS", "NAME", "READY", "STATUS");
    for pod in PODS {
        if !pod_exists(pod) {
            continue;
        }
        let list = containers(pod)?;
        let (running, total) = ready(&list);
        let status = if running == total {
            "Running"
        } else {
            "NotReady"
        };
        let detail: Vec<String> = list
            .iter()
            .map(|c| {
                let kind = if c.init { "init:" } else { "" };
                format!("{kind}{}={}", c.name, c.state)
            })
            .collect();
        println!(
            "{pod:<22} {:<7} {status:<10} {}",
            format!("{running}/{total}"),
            detail.join(" ")
        );
    }
    Ok(())
}

fn print_guide(pods: &[String]) {
    let conf = containers_conf();
    println!("\nPods are up. The lab's kubectl commands, as podman commands:");
    println!(
        "  export CONTAINERS_CONF={}   # the project's engine settings",
        conf.display()
    );
    let pair = |kubectl: &str, podman: &str| println!("  {kubectl:<58} # kubectl: {podman}");
    pair("cargo xtask lab status", "kubectl get pods");
    for pod in pods {
        for container in example_containers(pod) {
            pair(
                &format!("podman logs -f {pod}-{container}"),
                &format!("kubectl logs {pod} -c {container} -f"),
            );
        }
        let example = match pod.as_str() {
            "multi-container-demo" => Some(("writer", "cat /data/log.txt")),
            "three-containers" => Some(("reader", "cat /shared/data.txt")),
            "sidecar-logging" => Some(("log-aggregator", "cat /var/log/app.log")),
            "init-demo" => Some(("app", "cat /config/app.conf")),
            "adapter-demo" => Some(("writer", "cat /data/log.txt")),
            _ => None,
        };
        if let Some((container, command)) = example {
            pair(
                &format!("podman exec {pod}-{container} {command}"),
                &format!("kubectl exec {pod} -c {container} -- {command}"),
            );
        }
    }
    pair("podman stats --no-stream", "kubectl top pod --containers");
    pair("podman pod inspect POD", "kubectl describe pod POD");
    pair("cargo xtask lab down [POD...]", "kubectl delete pod POD");
}

fn example_containers(pod: &str) -> &'static [&'static str] {
    match pod {
        "multi-container-demo" => &["writer", "reader"],
        "network-demo" => &["client", "nginx"],
        "sidecar-logging" => &["log-aggregator"],
        "resources-demo" => &["container1", "container2"],
        "three-containers" => &["reader"],
        "init-demo" => &["app"],
        "adapter-demo" => &["adapter"],
        _ => &[],
    }
}

/// Renders every kustomization and validates each object with
/// kubernetes-validate (strict: unknown fields fail) for 1.29 and the newest
/// version it ships. Also checks the native-sidecar variant really moved the
/// log-aggregator into initContainers with `restartPolicy: Always`.
pub fn validate(install: bool) -> anyhow::Result<()> {
    let validator = kubernetes_validate(install)?;
    let newest = output(Command::new(&validator.python).args([
        "-c",
        "import kubernetes_validate.utils as u; print(u.latest_version())",
    ]))?;
    let newest = newest.trim().to_owned();
    let dir = lab_dir().join("rendered");
    fs::create_dir_all(&dir)?;
    for kustomization in KUSTOMIZATIONS {
        let rendered = render(&workspace_root().join(kustomization))?;
        let file = dir.join(format!("{}.yaml", kustomization.replace('/', "_")));
        fs::write(&file, &rendered)?;
        for version in [OLDEST_KUBERNETES, newest.as_str()] {
            let (ok, stdout, stderr) = try_output(
                Command::new(&validator.program)
                    .args(["--strict", "--quiet", "--kubernetes-version", version])
                    .arg(&file),
            );
            // kubernetes-validate exits 0 on some failures: read its output too.
            if !ok || stdout.contains("ERROR") || stderr.contains("ERROR") {
                bail!(
                    "{kustomization} does not validate for Kubernetes {version}:\n{}{}",
                    stdout,
                    stderr
                );
            }
        }
        println!(
            "{kustomization}: {} objects render and validate for Kubernetes {OLDEST_KUBERNETES} and {newest}",
            rendered.split("\n---\n").count()
        );
    }
    check_native_sidecar()?;
    Ok(())
}

fn check_native_sidecar() -> anyhow::Result<()> {
    let manifests = split_rendered("native-sidecar", "deploy/overlays/cluster-native-sidecar")?;
    let text = fs::read_to_string(manifest_for(&manifests, "sidecar-logging")?)?;
    let init = text
        .split("  initContainers:\n")
        .nth(1)
        .context("the native-sidecar overlay left sidecar-logging without initContainers")?;
    if !(init.contains("name: log-aggregator") && init.contains("restartPolicy: Always")) {
        bail!(
            "the native-sidecar overlay did not make log-aggregator an init container with restartPolicy: Always"
        );
    }
    let containers = text.split("  initContainers:\n").next().unwrap_or_default();
    if containers.contains("name: log-aggregator") {
        bail!("the native-sidecar overlay left log-aggregator among the app containers");
    }
    println!(
        "deploy/overlays/cluster-native-sidecar: log-aggregator is a native sidecar (initContainers, restartPolicy: Always)"
    );
    Ok(())
}

struct Validator {
    program: PathBuf,
    python: PathBuf,
}

/// kubernetes-validate from PATH, or from .lab/venv (installed there with
/// `install`, so the system's Python is never changed).
fn kubernetes_validate(install: bool) -> anyhow::Result<Validator> {
    if on_path("kubernetes-validate")
        && try_output(Command::new("python3").args(["-c", "import kubernetes_validate"])).0
    {
        return Ok(Validator {
            program: "kubernetes-validate".into(),
            python: "python3".into(),
        });
    }
    let venv = lab_dir().join("venv");
    let validator = Validator {
        program: venv.join("bin/kubernetes-validate"),
        python: venv.join("bin/python3"),
    };
    if validator.program.exists() {
        return Ok(validator);
    }
    if !install {
        bail!(
            "kubernetes-validate is not installed: `pip install kubernetes-validate`, \
             or pass --install to put it in .lab/venv"
        );
    }
    if !try_output(Command::new("python3").args(["-m", "venv", "--help"])).0
        || !try_output(Command::new("python3").args(["-c", "import ensurepip"])).0
    {
        apt_install(&["python3", "python3-venv", "python3-pip"])?;
    }
    util::run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    util::run(Command::new(&validator.python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "kubernetes-validate",
    ]))?;
    Ok(validator)
}

/// Plays each set of pods in turn, waits `settle`, and prints a Markdown
/// table of `podman stats` memory per container, ours next to the lab's.
fn compare(settle: Duration) -> anyhow::Result<()> {
    ensure_podman(false)?;
    images::build(false, true)?;
    let ours = measure_set("local", "deploy/overlays/local", settle)?;
    let lab = measure_set("lab-original", "deploy/lab-original", settle)?;
    println!(
        "Idle memory per container (`podman stats`, cgroup memory incl. page cache), \
         {}s after start:\n",
        settle.as_secs()
    );
    println!("| pod | container | ours | lab's (busybox, curl, nginx) | ours / lab's |");
    println!("|---|---|---:|---:|---:|");
    let (mut total_ours, mut total_lab) = (0.0, 0.0);
    for (key, ours_mem) in &ours {
        let lab_mem = lab
            .iter()
            .find(|(other, _)| other == key)
            .map(|(_, mem)| mem.as_str());
        let ratio = match (parse_size(ours_mem), lab_mem.and_then(parse_size)) {
            (Some(a), Some(b)) if b > 0.0 => {
                // nginx is the same image on both sides: not part of the sum.
                if !NGINX_CONTAINERS.contains(&key.as_str()) {
                    total_ours += a;
                    total_lab += b;
                }
                format!("{:.2}", a / b)
            }
            _ => "-".to_owned(),
        };
        let (pod, container) = key.split_once('/').unwrap_or((key, ""));
        println!(
            "| {pod} | {container} | {ours_mem} | {} | {ratio} |",
            lab_mem.unwrap_or("- (no lab pod)")
        );
    }
    if total_lab > 0.0 {
        println!(
            "| **sum, nginx excluded** | | {:.2}MB | {:.2}MB | {:.2} |",
            total_ours / 1e6,
            total_lab / 1e6,
            total_ours / total_lab
        );
    }
    Ok(())
}

/// The containers that run the same nginx image in both sets.
const NGINX_CONTAINERS: &[&str] = &["network-demo/nginx", "resources-demo/container1"];

fn measure_set(
    set: &str,
    kustomization: &str,
    settle: Duration,
) -> anyhow::Result<Vec<(String, String)>> {
    let manifests = split_rendered(set, kustomization)?;
    let pods: Vec<&str> = manifests.iter().map(|(name, _)| name.as_str()).collect();
    for pod in &pods {
        if pod_exists(pod) {
            remove_pod(pod)?;
        }
    }
    let result = (|| {
        for (_, file) in &manifests {
            play(file)?;
        }
        for pod in &pods {
            wait_for(&format!("{pod} running"), Duration::from_secs(60), || {
                let list = containers(pod).map_err(|e| e.to_string())?;
                let (running, total) = ready(&list);
                if total > 0 && running == total {
                    Ok(())
                } else {
                    Err(format!("{running}/{total} running"))
                }
            })?;
        }
        // Idle memory after start-up: settling is what is measured here,
        // not a synchronisation.
        std::thread::sleep(settle);
        memory_by_container(&pods)
    })();
    for pod in &pods {
        let _ = remove_pod(pod);
    }
    result
}

/// `podman stats --no-stream` memory per `<pod>/<container>`.
pub fn memory_by_container(pods: &[&str]) -> anyhow::Result<Vec<(String, String)>> {
    let json = output(podman().args(["stats", "--no-stream", "--no-reset", "--format", "json"]))
        .or_else(|_| output(podman().args(["stats", "--no-stream", "--format", "json"])))?;
    let stats: Value =
        serde_json::from_str(&json).context("parsing `podman stats --format json`")?;
    let mut rows = Vec::new();
    for entry in stats.as_array().into_iter().flatten() {
        let name = entry["name"].as_str().unwrap_or_default();
        let Some(pod) = pods.iter().find(|pod| name.starts_with(&format!("{pod}-"))) else {
            continue;
        };
        let container = &name[pod.len() + 1..];
        if container.ends_with("infra") && container.len() > 20 {
            continue;
        }
        let usage = entry["mem_usage"].as_str().unwrap_or_default();
        let used = usage
            .split('/')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        rows.push((format!("{pod}/{container}"), used));
    }
    rows.sort();
    Ok(rows)
}

/// Where a pod's rendered manifest for the local overlay is written.
fn local_manifest(pod: &str) -> PathBuf {
    lab_dir().join("local").join(format!("{pod}.yaml"))
}
