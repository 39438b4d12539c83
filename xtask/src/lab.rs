//! `cargo xtask lab`: the lab's pods on this machine, with podman standing in
//! for a cluster, plus rendering and schema validation of every overlay.
//!
//! `up` builds what changed (binaries, images), renders deploy/overlays/local,
//! writes one file per pod under .lab/ and plays each with podman (see the
//! `kube` and `podman` modules, which other tasks use too).

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::images;
use crate::kube::{self, LOCAL_OVERLAY, PODS};
use crate::podman::{self, containers, containers_conf, ensure_podman, pod_exists, ready};
use crate::stats::parse_size;
use crate::util::{apt_install, lab_dir, on_path, output, try_output, wait_for, workspace_root};

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
            print!("{}", kube::render(&workspace_root().join(kustomization))?);
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
    let manifests = kube::split_rendered("local", LOCAL_OVERLAY)?;
    for pod in &pods {
        podman::play(&kube::manifest_for(&manifests, pod)?)?;
    }
    print_guide(&pods);
    Ok(())
}

fn down(pods: &[String]) -> anyhow::Result<()> {
    ensure_podman(false)?;
    for pod in pods {
        if pod_exists(pod) {
            eprintln!("removing pod {pod}");
            podman::remove_pod(pod)?;
        }
    }
    Ok(())
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
        let rendered = kube::render(&workspace_root().join(kustomization))?;
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
    let manifests =
        kube::split_rendered("native-sidecar", "deploy/overlays/cluster-native-sidecar")?;
    let text = fs::read_to_string(kube::manifest_for(&manifests, "sidecar-logging")?)?;
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
    const IMPORT: &str = "import kubernetes_validate";
    if on_path("kubernetes-validate") && try_output(Command::new("python3").args(["-c", IMPORT])).0
    {
        return Ok(Validator {
            program: "kubernetes-validate".into(),
            python: "python3".into(),
        });
    }
    let venv = lab_dir().join("venv");
    let program = venv.join("bin/kubernetes-validate");
    if !program.exists() && !install {
        bail!(
            "kubernetes-validate is not installed: `pip install kubernetes-validate`, \
             or pass --install to put it in .lab/venv"
        );
    }
    let python = crate::util::python_venv(&venv, "kubernetes-validate", IMPORT)?;
    Ok(Validator { program, python })
}

/// Plays each set of pods in turn, waits `settle`, and prints a Markdown
/// table of `podman stats` memory per container, ours next to the lab's.
fn compare(settle: Duration) -> anyhow::Result<()> {
    ensure_podman(false)?;
    images::build(false, true)?;
    let ours = measure_set("local", LOCAL_OVERLAY, settle)?;
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
    let manifests = kube::split_rendered(set, kustomization)?;
    let pods: Vec<&str> = manifests.iter().map(|(name, _)| name.as_str()).collect();
    for pod in &pods {
        if pod_exists(pod) {
            podman::remove_pod(pod)?;
        }
    }
    let result = (|| {
        for (_, file) in &manifests {
            podman::play(file)?;
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
        let _ = podman::remove_pod(pod);
    }
    result
}

/// `podman stats --no-stream` memory in use per `<pod>/<container>`.
fn memory_by_container(pods: &[&str]) -> anyhow::Result<Vec<(String, String)>> {
    let mut rows = Vec::new();
    for entry in podman::stats(&[])? {
        let Some(pod) = pods
            .iter()
            .find(|pod| entry.name.starts_with(&format!("{pod}-")))
        else {
            continue;
        };
        let container = &entry.name[pod.len() + 1..];
        if container.ends_with("infra") && container.len() > 20 {
            continue;
        }
        rows.push((format!("{pod}/{container}"), entry.mem_used));
    }
    rows.sort();
    Ok(rows)
}
