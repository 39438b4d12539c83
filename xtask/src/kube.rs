//! The manifests under deploy/ as the tasks read them: which pods the lab
//! has, rendering a kustomization with `kubectl kustomize`, one file per
//! pod under .lab/, and the few facts read back from rendered YAML (a
//! document's name, init containers, an env var's value).
//!
//! Rendered YAML is read as kustomize writes it (sorted keys, two-space
//! indent), not parsed: the tasks need three facts, not a YAML library.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::util::{lab_dir, on_path, output, workspace_root};

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

/// The overlay `cargo xtask lab up` and `e2e` play, rendered into .lab/local/
/// (where [`init_container_names`] reads it back).
pub const LOCAL_OVERLAY: &str = "deploy/overlays/local";

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

/// Init container names of `pod`, from its manifest rendered for the local
/// overlay (empty if it was not rendered).
pub fn init_container_names(pod: &str) -> Vec<String> {
    let file = lab_dir().join("local").join(format!("{pod}.yaml"));
    fs::read_to_string(file)
        .map(|text| init_containers_in(&text))
        .unwrap_or_default()
}

fn init_containers_in(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_init = false;
    for line in manifest.lines() {
        // A key of the pod spec (`  initContainers:`), not a list item
        // (`  - name: x`, which kustomize indents as far as its key).
        let spec_key = line.starts_with("  ") && !line[2..].starts_with([' ', '-']);
        if spec_key || !line.starts_with(' ') {
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

/// Replaces the value of env var `name` in a manifest rendered from
/// `kustomization` (kustomize writes `- name: X` then `  value: ...` on the
/// next line).
pub fn set_env(
    rendered: &str,
    kustomization: &str,
    name: &str,
    value: &str,
) -> anyhow::Result<String> {
    let mut out = String::with_capacity(rendered.len());
    let mut lines = rendered.lines();
    let mut found = false;
    while let Some(line) = lines.next() {
        out.push_str(line);
        out.push('\n');
        if line.trim() == format!("- name: {name}") {
            let next = lines
                .next()
                .with_context(|| format!("{name} has no value in {kustomization}"))?;
            let indent = &next[..next.len() - next.trim_start().len()];
            if !next.trim_start().starts_with("value:") {
                bail!("{name} in {kustomization} is not followed by its value: {next:?}");
            }
            out.push_str(&format!("{indent}value: \"{value}\"\n"));
            found = true;
        }
    }
    if !found {
        bail!("{kustomization} sets no {name}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_env_replaces_the_value_under_the_name() {
        let rendered = "    env:\n    - name: WRITER_RATE\n      value: \"5000\"\n";
        let out = set_env(rendered, "deploy/loadtest", "WRITER_RATE", "100").unwrap();
        assert_eq!(
            out,
            "    env:\n    - name: WRITER_RATE\n      value: \"100\"\n"
        );
        assert!(set_env(rendered, "deploy/loadtest", "WRITER_DURATION", "1s").is_err());
    }

    #[test]
    fn names_and_init_containers_are_read_from_rendered_yaml() {
        let manifest = "apiVersion: v1\nkind: Pod\nmetadata:\n  labels:\n    app: x\n  name: init-demo\nspec:\n  containers:\n  - name: app\n  initContainers:\n  - args:\n    - --count\n    name: setup\n  - image: y\n    name: migrate\n  volumes:\n  - name: config\n";
        assert_eq!(metadata_name(manifest).as_deref(), Some("init-demo"));
        assert_eq!(init_containers_in(manifest), ["setup", "migrate"]);
    }
}
