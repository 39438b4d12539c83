//! `cargo xtask images`: the static release binaries and the scratch images,
//! built offline with podman, plus the helper images the local lab needs.
//!
//! Our images come from the root `Dockerfile`'s runtime stages. Its `build`
//! stage (`FROM rust`) cannot be pulled here, so the binaries are built on the
//! host and laid out as that stage would (`/out/<bin>/usr/local/bin/<bin>`
//! plus `/out/<bin>/bin/{cat,sleep}` symlinks), and `podman build
//! --build-context build=DIR` stands the folder in for the stage: the same
//! runtime stages a `docker build --target writer .` builds.
//!
//! Helper images (podman/*/Containerfile), all from Debian packages on the
//! host: an nginx stand-in (the lab's nginx:1.25-alpine cannot be pulled), and
//! for comparisons a busybox image and a curl image.
//!
//! Invariant: an image is rebuilt only when its input changed; the input's
//! hash is stored in the image as the label [`HASH_LABEL`].

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::podman::{self, command as podman};
use crate::util::{self, cargo, describe, on_path, output, target_dir, try_output, workspace_root};

/// Our binaries, one image each.
pub const BINARIES: &[&str] = &["writer", "reader", "log-aggregator", "adapter", "client"];
/// Where local images live (kube play uses them as they are: never pulled).
pub const LOCAL_REPO: &str = "localhost/pod-sidecars";
/// The tag of locally built images. Never `latest`: with `latest`,
/// `podman kube play` uses pull policy Always, and the pull fails offline.
pub const DEV_TAG: &str = "dev";
/// Offline nginx stand-in (deploy/overlays/local maps `nginx` to it).
pub const NGINX_STANDIN: &str = "localhost/pod-sidecars/nginx-standin:1.22-debian";
/// The lab's busybox, rebuilt from Debian's busybox-static, for comparisons.
pub const BUSYBOX: &str = "localhost/pod-sidecars/busybox:1.35-debian";
/// The lab's curlimages/curl, rebuilt from Debian's curl on our busybox.
pub const CURL_STANDIN: &str = "localhost/pod-sidecars/curl-standin:7.88-debian";
/// busybox:1.36, the lab's image, uncompressed: the size to beat.
pub const LAB_BUSYBOX_BYTES: u64 = 4_300_000;
/// The label holding the hash of an image's input.
const HASH_LABEL: &str = "dev.pod-sidecars.input-hash";
/// The target whose static-pie binaries run in scratch (no musl here).
const TRIPLE: &str = "x86_64-unknown-linux-gnu";

#[derive(clap::Args)]
pub struct ImagesArgs {
    /// Rebuild every image even if its input did not change.
    #[arg(long)]
    pub force: bool,
    /// Also build the comparison images (busybox, curl) used by `lab compare`.
    #[arg(long)]
    pub compare: bool,
}

pub fn run(args: ImagesArgs) -> anyhow::Result<()> {
    podman::ensure_podman(false)?;
    let built = build(args.force, args.compare)?;
    print_sizes(&built)?;
    Ok(())
}

/// Our image's local reference: `localhost/pod-sidecars/<bin>:dev`.
pub fn local_image(binary: &str) -> String {
    format!("{LOCAL_REPO}/{binary}:{DEV_TAG}")
}

/// Builds (if changed) our images and the nginx stand-in, and with `compare`
/// the busybox and curl images; returns the references built or kept.
pub fn build(force: bool, compare: bool) -> anyhow::Result<Vec<String>> {
    let root = workspace_root();
    let work = target_dir().join("images");
    let release = build_binaries()?;
    let context = work.join("context");
    layout(&release, &context)?;

    let dockerfile = root.join("Dockerfile");
    let dockerfile_text =
        fs::read(&dockerfile).with_context(|| format!("reading {}", dockerfile.display()))?;
    let labels = label_args()?;
    let mut images = Vec::new();
    for binary in BINARIES {
        let tree = context.join("out").join(binary);
        let hash = fnv1a(&[&dockerfile_text, binary.as_bytes(), &hash_tree(&tree)?]);
        let reference = local_image(binary);
        ensure_image(
            &reference,
            hash,
            force,
            podman()
                .arg("build")
                .arg("--file")
                .arg(&dockerfile)
                .arg("--build-context")
                .arg(format!("build={}", context.display()))
                .args(["--target", binary])
                .args(&labels)
                .arg(&context),
        )?;
        images.push(reference);
    }

    images.push(build_nginx_standin(&work.join("nginx-standin"), force)?);
    if compare {
        images.push(build_busybox(&work.join("busybox"), force)?);
        images.push(build_curl_standin(&work.join("curl-standin"), force)?);
    }
    Ok(images)
}

/// Where `cargo xtask images` puts the static release binaries.
pub fn release_dir() -> PathBuf {
    target_dir().join(TRIPLE).join("release")
}

/// `cargo build --release` of the five binaries, static (crt-static gives
/// static-pie on the gnu target); returns the folder holding them.
fn build_binaries() -> anyhow::Result<PathBuf> {
    let mut command = cargo();
    command
        .args(["build", "--release", "--target", TRIPLE])
        // Only the target's artefacts see RUSTFLAGS when --target is given:
        // build scripts and proc macros stay dynamic, as they must.
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    for binary in BINARIES {
        command.args(["-p", binary]);
    }
    util::run(&mut command)?;
    Ok(release_dir())
}

/// Lays out `/out/<bin>/` as the Dockerfile's build stage does.
fn layout(release: &Path, context: &Path) -> anyhow::Result<()> {
    for binary in BINARIES {
        let tree = context.join("out").join(binary);
        if tree.exists() {
            fs::remove_dir_all(&tree).with_context(|| format!("clearing {}", tree.display()))?;
        }
        let bin_dir = tree.join("usr/local/bin");
        fs::create_dir_all(&bin_dir)?;
        fs::create_dir_all(tree.join("bin"))?;
        let from = release.join(binary);
        fs::copy(&from, bin_dir.join(binary))
            .with_context(|| format!("copying {} (was it built?)", from.display()))?;
        for applet in ["cat", "sleep"] {
            std::os::unix::fs::symlink(
                format!("/usr/local/bin/{binary}"),
                tree.join("bin").join(applet),
            )
            .with_context(|| format!("linking /bin/{applet} in {}", tree.display()))?;
        }
    }
    Ok(())
}

/// `--build-arg`s for the OCI labels: version, revision, created, source.
fn label_args() -> anyhow::Result<Vec<String>> {
    let (known, revision, _) = try_output(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(workspace_root()),
    );
    let revision = match revision.trim() {
        found if known && !found.is_empty() => found.to_owned(),
        _ => "unknown".to_owned(),
    };
    let created = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ");
    Ok(vec![
        "--build-arg".into(),
        format!("VERSION={}", env!("CARGO_PKG_VERSION")),
        "--build-arg".into(),
        format!("REVISION={revision}"),
        "--build-arg".into(),
        format!("CREATED={created}"),
        "--build-arg".into(),
        "SOURCE=https://github.com/example/pod-sidecars".into(),
    ])
}

/// Runs `build` (a `podman build` missing only its tag and hash label) unless
/// `reference` already carries `hash`; removes the image it replaces.
fn ensure_image(
    reference: &str,
    hash: u64,
    force: bool,
    build: &mut Command,
) -> anyhow::Result<()> {
    let hash = format!("{hash:016x}");
    let (exists, found, _) = try_output(podman().args([
        "image",
        "inspect",
        "--format",
        &format!("{{{{.Id}}}} {{{{index .Labels \"{HASH_LABEL}\"}}}}"),
        reference,
    ]));
    let mut found = found.split_whitespace();
    let old_id = found.next().map(str::to_owned);
    if exists && !force && found.next() == Some(hash.as_str()) {
        eprintln!("{reference}: up to date");
        return Ok(());
    }
    build
        .args(["--quiet", "--label"])
        .arg(format!("{HASH_LABEL}={hash}"))
        .args(["--tag", reference]);
    eprintln!("+ {}", describe(build));
    let new_id = output(build)?;
    if let Some(old_id) = old_id.filter(|old| !new_id.trim().starts_with(old.as_str())) {
        // Best effort: a container may still use it.
        let _ = try_output(podman().args(["image", "rm", &old_id]));
    }
    Ok(())
}

/// Hash of a folder's relative paths, file contents and symlink targets.
fn hash_tree(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let mut entries = BTreeMap::new();
    walk(dir, dir, &mut entries)?;
    let mut bytes = Vec::new();
    for (path, content) in entries {
        bytes.extend_from_slice(&fnv1a(&[path.as_bytes(), &content]).to_le_bytes());
    }
    Ok(bytes)
}

fn walk(base: &Path, dir: &Path, into: &mut BTreeMap<String, Vec<u8>>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let relative = path.strip_prefix(base)?.to_string_lossy().into_owned();
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_symlink() {
            let target = fs::read_link(&path)?;
            into.insert(relative, target.to_string_lossy().into_owned().into_bytes());
        } else if meta.is_dir() {
            into.insert(relative, Vec::new());
            walk(base, &path, into)?;
        } else {
            into.insert(relative, fs::read(&path)?);
        }
    }
    Ok(())
}

/// Copies a dynamically linked host binary and every library `ldd` lists
/// into `rootfs`, at the same paths, so it runs in a scratch image.
fn pack_dynamic(binary: &Path, rootfs: &Path) -> anyhow::Result<()> {
    let listing = output(Command::new("ldd").arg(binary))?;
    let mut files = vec![binary.to_path_buf()];
    for line in listing.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x...)"; vdso has no file.
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|path| path.starts_with('/')) {
            files.push(PathBuf::from(path));
        }
    }
    for file in files {
        let to = rootfs.join(file.strip_prefix("/")?);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        // fs::copy follows symlinks: the image gets the library itself.
        fs::copy(&file, &to)
            .with_context(|| format!("copying {} into {}", file.display(), rootfs.display()))?;
    }
    Ok(())
}

/// A fresh build folder holding the helper's static files from podman/<name>.
fn helper_context(name: &str, work: &Path) -> anyhow::Result<PathBuf> {
    if work.exists() {
        fs::remove_dir_all(work).with_context(|| format!("clearing {}", work.display()))?;
    }
    fs::create_dir_all(work)?;
    let source = workspace_root().join("podman").join(name);
    for entry in fs::read_dir(&source).with_context(|| format!("reading {}", source.display()))? {
        let path = entry?.path();
        if path.is_file() {
            fs::copy(&path, work.join(path.file_name().unwrap_or_default()))?;
        }
    }
    Ok(work.to_path_buf())
}

fn require_host_file(path: &str, package: &str) -> anyhow::Result<()> {
    if !Path::new(path).exists() {
        bail!(
            "{path} is missing: install Debian's {package} package \
             (`apt-get install -y {package}`, or pass --install)"
        );
    }
    Ok(())
}

fn build_helper(reference: &str, context: &Path, force: bool) -> anyhow::Result<String> {
    let hash = fnv1a(&[reference.as_bytes(), &hash_tree(context)?]);
    ensure_image(
        reference,
        hash,
        force,
        podman()
            .arg("build")
            .arg("--file")
            .arg(context.join("Containerfile"))
            .arg(context),
    )?;
    Ok(reference.to_owned())
}

/// Debian's nginx, its libraries, and a config listening on port 80.
fn build_nginx_standin(work: &Path, force: bool) -> anyhow::Result<String> {
    require_host_file("/usr/sbin/nginx", "nginx")?;
    let context = helper_context("nginx-standin", work)?;
    let rootfs = context.join("rootfs");
    pack_dynamic(Path::new("/usr/sbin/nginx"), &rootfs)?;
    fs::create_dir_all(rootfs.join("etc/nginx"))?;
    fs::copy("/etc/nginx/mime.types", rootfs.join("etc/nginx/mime.types"))
        .context("copying /etc/nginx/mime.types")?;
    make_tmp(&rootfs)?;
    build_helper(NGINX_STANDIN, &context, force)
}

/// The lab's busybox: Debian's static busybox with its applet links.
fn build_busybox(work: &Path, force: bool) -> anyhow::Result<String> {
    require_host_file("/bin/busybox", "busybox-static")?;
    let context = helper_context("busybox", work)?;
    if needs_interpreter(Path::new("/bin/busybox"))? {
        bail!("/bin/busybox is dynamically linked: install busybox-static instead of busybox");
    }
    fs::copy("/bin/busybox", context.join("busybox")).context("copying /bin/busybox")?;
    build_helper(BUSYBOX, &context, force)
}

/// The lab's curlimages/curl: Debian's curl on top of the busybox image
/// (the lab's client script needs `sh`, `sleep` and `date` too).
fn build_curl_standin(work: &Path, force: bool) -> anyhow::Result<String> {
    require_host_file("/usr/bin/curl", "curl")?;
    let context = helper_context("curl-standin", work)?;
    pack_dynamic(Path::new("/usr/bin/curl"), &context.join("rootfs"))?;
    build_helper(CURL_STANDIN, &context, force)
}

/// Whether the 64-bit ELF file at `path` names a program interpreter
/// (`PT_INTERP`, the dynamic loader): a binary that does cannot run alone
/// in a scratch image.
fn needs_interpreter(path: &Path) -> anyhow::Result<bool> {
    const PT_INTERP: u32 = 3;
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let header = bytes
        .get(..64)
        .filter(|header| header.starts_with(b"\x7fELF\x02\x01"))
        .with_context(|| format!("{} is not a 64-bit little-endian ELF file", path.display()))?;
    let u16_at = |at: usize| usize::from(u16::from_le_bytes([header[at], header[at + 1]]));
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&header[0x20..0x28]);
    let (table, entry_size, entries) = (
        u64::from_le_bytes(offset) as usize,
        u16_at(0x36),
        u16_at(0x38),
    );
    Ok((0..entries).any(|index| {
        let at = table + index * entry_size;
        bytes.get(at..at + 4).is_some_and(|kind| {
            u32::from_le_bytes([kind[0], kind[1], kind[2], kind[3]]) == PT_INTERP
        })
    }))
}

fn make_tmp(rootfs: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = rootfs.join("tmp");
    fs::create_dir_all(&tmp)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777))?;
    Ok(())
}

/// An image's size in bytes as `podman image inspect` reports it.
pub fn image_size(reference: &str) -> anyhow::Result<u64> {
    let size = output(podman().args(["image", "inspect", "--format", "{{.Size}}", reference]))?;
    size.trim()
        .parse()
        .with_context(|| format!("reading the size of {reference} from {size:?}"))
}

/// Prints each image's size next to busybox:1.36's; fails if one of ours is
/// not smaller.
pub fn print_sizes(images: &[String]) -> anyhow::Result<()> {
    println!("{:<55} {:>12} {:>9}", "IMAGE", "BYTES", "vs busybox:1.36");
    let mut too_big = Vec::new();
    for image in images {
        let size = image_size(image)?;
        println!(
            "{image:<55} {size:>12} {:>8.1}%",
            size as f64 * 100.0 / LAB_BUSYBOX_BYTES as f64
        );
        let ours = BINARIES.iter().any(|binary| *image == local_image(binary));
        if ours && size >= LAB_BUSYBOX_BYTES {
            too_big.push(image.clone());
        }
    }
    if !too_big.is_empty() {
        bail!(
            "not smaller than busybox:1.36 (4.3 MB): {}",
            too_big.join(", ")
        );
    }
    Ok(())
}

/// 64-bit FNV-1a: a stable content hash for "did this image's input change"
/// (std's `DefaultHasher` may change between Rust releases).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        // Separator, so ("ab", "c") and ("a", "bc") differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Whether the host has what `podman build` of the helpers needs.
pub fn helper_packages_missing(compare: bool) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if !Path::new("/usr/sbin/nginx").exists() {
        missing.push("nginx");
    }
    if compare && !Path::new("/bin/busybox").exists() {
        missing.push("busybox-static");
    }
    if compare && !on_path("curl") {
        missing.push("curl");
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_separates_parts_and_matches_the_reference_value() {
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
        assert_eq!(fnv1a(&[]), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn dynamically_linked_binaries_are_told_from_static_ones() {
        // /bin/sh is dynamic on every Debian; our release binaries are static-pie.
        assert!(needs_interpreter(Path::new("/bin/sh")).unwrap());
        let ours = release_dir().join("writer");
        if ours.exists() {
            assert!(!needs_interpreter(&ours).unwrap(), "{}", ours.display());
        }
        if Path::new("/bin/busybox").exists() {
            assert!(!needs_interpreter(Path::new("/bin/busybox")).unwrap());
        }
        assert!(needs_interpreter(Path::new("/etc/hostname")).is_err());
    }

    #[test]
    fn image_labels_carry_a_utc_creation_time() {
        let labels = label_args().unwrap();
        let created = labels
            .iter()
            .find_map(|arg| arg.strip_prefix("CREATED="))
            .unwrap();
        // 2026-11-28T12:00:00Z
        assert_eq!(created.len(), 20, "{created}");
        assert!(
            created.ends_with('Z') && created.as_bytes()[10] == b'T',
            "{created}"
        );
    }
}
