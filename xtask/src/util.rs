//! What every task needs to run programs: the workspace's paths, running a
//! command (echoed, or captured with its stderr in the error), finding a
//! program, signalling and stopping a child, a process's CPU and memory from
//! /proc, waiting with a deadline, and installing missing tools with apt-get.
//! Container and manifest helpers live in `podman` and `kube`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// Scratch space for rendered manifests and tool installs (git-ignored).
pub fn lab_dir() -> PathBuf {
    workspace_root().join(".lab")
}

/// A `cargo` command run from the workspace root with the same toolchain.
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

/// Where the release binaries of `packages` are: `bin_dir` when given (as
/// is), else `cargo build --release -p ...` first and the target directory's
/// `release/`.
pub fn release_bin_dir(bin_dir: Option<&Path>, packages: &[&str]) -> anyhow::Result<PathBuf> {
    if let Some(dir) = bin_dir {
        return Ok(dir.to_owned());
    }
    let mut build = cargo();
    build.args(["build", "--release"]);
    for package in packages {
        build.args(["-p", package]);
    }
    run(&mut build)?;
    Ok(target_dir().join("release"))
}

/// Runs `command`, echoing it first; fails with its exit status.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    eprintln!("+ {}", describe(command));
    let status = command
        .status()
        .with_context(|| format!("starting {}", describe(command)))?;
    if !status.success() {
        bail!("{} failed with {status}", describe(command));
    }
    Ok(())
}

/// Runs `command` quietly and returns its stdout; on failure the error
/// carries the command and its stderr.
pub fn output(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("starting {}", describe(command)))?;
    if !output.status.success() {
        bail!(
            "{} failed with {}: {}",
            describe(command),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `command` quietly: whether it succeeded, plus stdout and stderr.
pub fn try_output(command: &mut Command) -> (bool, String, String) {
    match command.output() {
        Ok(output) => (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ),
        Err(error) => (
            false,
            String::new(),
            format!("{}: {error}", describe(command)),
        ),
    }
}

/// `program arg arg ...` for messages.
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `program` is an executable file on `PATH`.
pub fn on_path(program: &str) -> bool {
    find_program(program, &[]).is_some()
}

/// The first executable `program` on `PATH`, then in `also` (root's sbin
/// folders are not on a user's `PATH`, where Debian puts nginx).
pub fn find_program(program: &str, also: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(also.iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Whether process `pid` has `path` open.
pub fn has_open(pid: u32, path: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    entries
        .filter_map(Result::ok)
        .any(|entry| std::fs::read_link(entry.path()).is_ok_and(|target| target == path))
}

/// Sends `signal` (a name: `TERM`, `KILL`, `HUP`) to `pid`.
pub fn send_signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let number = match signal {
        "TERM" => libc::SIGTERM,
        "KILL" => libc::SIGKILL,
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        other => bail!("unknown signal {other:?} (TERM, KILL, HUP or INT)"),
    };
    testkit::try_send_signal(pid, number)
        .with_context(|| format!("sending SIG{signal} to process {pid}"))
}

/// Waits until process `pid` (`who`, for the message) has `path` open,
/// looking every `every`: a follower measured before it opened its file
/// would not be measured following.
pub fn wait_open(
    who: &str,
    pid: u32,
    path: &Path,
    timeout: Duration,
    every: Duration,
) -> anyhow::Result<()> {
    wait_for_every(
        &format!("{who} to open {}", path.display()),
        timeout,
        every,
        || {
            has_open(pid, path)
                .then_some(())
                .ok_or_else(|| "not yet".to_owned())
        },
    )
}

/// SIGTERM, then SIGKILL if it has not exited within 5 s.
pub fn stop(child: &mut Child) {
    let _ = send_signal(child.id(), "TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Whether this process runs as root (read from /proc: no libc needed).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Installs Debian packages, refusing clearly where that cannot work.
pub fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "installing {} needs root: run `sudo apt-get install -y {}`",
            packages.join(" "),
            packages.join(" ")
        );
    }
    if !on_path("apt-get") {
        bail!(
            "no apt-get here (not Debian/Ubuntu): install {} with your package manager",
            packages.join(" ")
        );
    }
    run(Command::new("apt-get")
        .args(["update", "-qq"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    // With recommends: podman's (netavark, slirp4netns, fuse-overlayfs...)
    // are the set the pod tests were verified with on Debian 12.
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Polls `probe` until it yields a value or `timeout` passes; the error names
/// `what` and carries the last reason `probe` gave. Polling with a deadline is
/// how the pod tests wait: never a fixed sleep.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    probe: impl FnMut() -> Result<T, String>,
) -> anyhow::Result<T> {
    wait_for_every(what, timeout, POLL_INTERVAL, probe)
}

/// [`wait_for`], looking every `every` (local processes, where the time
/// waited is itself measured: a follower's downtime, a start-up).
pub fn wait_for_every<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(value) => return Ok(value),
            Err(reason) if start.elapsed() >= timeout => {
                bail!("timed out after {timeout:?} waiting for {what}: {reason}")
            }
            Err(_) => std::thread::sleep(every),
        }
    }
}

/// How often [`wait_for`] looks again: short against the pods' second-scale
/// intervals, long enough not to load a 2-core machine with podman calls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(300);

/// CPU seconds (self and waited-for children) and RSS figures of a live process.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcStats {
    pub cpu_seconds: f64,
    pub rss_kib: u64,
    /// The process's own memory, without the mapped binary and libraries.
    pub anon_kib: u64,
    pub peak_rss_kib: u64,
}

/// Clock ticks per second, the unit of /proc/PID/stat's CPU times: the
/// kernel's `AT_CLKTCK` from /proc/self/auxv, which is where the C library's
/// `sysconf(_SC_CLK_TCK)` reads it too; 100 (Linux's USER_HZ) if unreadable.
pub fn clock_ticks() -> f64 {
    const AT_CLKTCK: u64 = 17;
    let auxv = std::fs::read("/proc/self/auxv").unwrap_or_default();
    auxv.chunks_exact(16)
        .map(|pair| {
            let word = |bytes: &[u8]| u64::from_ne_bytes(bytes.try_into().unwrap_or([0; 8]));
            (word(&pair[..8]), word(&pair[8..]))
        })
        .find(|&(key, _)| key == AT_CLKTCK)
        .map_or(100.0, |(_, ticks)| ticks as f64)
}

/// CPU seconds a running process has used, to the nanosecond: the sum of
/// its threads' time on a CPU (`/proc/PID/task/*/schedstat`, first field).
/// For small figures (an idle follower's minute) where clock ticks of 10 ms
/// would round everything to 0 or 0.01. Threads that ended are not counted.
pub fn cpu_seconds_precise(pid: u32) -> anyhow::Result<f64> {
    let tasks = format!("/proc/{pid}/task");
    let mut nanos: u64 = 0;
    for task in std::fs::read_dir(&tasks).with_context(|| format!("reading {tasks}"))? {
        let path = task?.path().join("schedstat");
        let schedstat = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        nanos += schedstat
            .split_whitespace()
            .next()
            .and_then(|field| field.parse::<u64>().ok())
            .with_context(|| format!("odd {}: {schedstat:?}", path.display()))?;
    }
    Ok(nanos as f64 / 1e9)
}

pub fn proc_stats(pid: u32, ticks: f64) -> anyhow::Result<ProcStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("odd /proc stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14-17 of stat(5): utime, stime, cutime, cstime; index 0 here is field 3.
    let cpu_ticks: f64 = fields
        .get(11..15)
        .context("short /proc stat")?
        .iter()
        .map(|field| field.parse::<f64>().unwrap_or(0.0))
        .sum();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcStats {
        cpu_seconds: cpu_ticks / ticks,
        rss_kib: kib("VmRSS:"),
        anon_kib: kib("RssAnon:"),
        peak_rss_kib: kib("VmHWM:"),
    })
}

/// GNU time: the CPU time and peak RSS of a process that has exited (std
/// does not return a child's rusage).
pub const GNU_TIME: &str = "/usr/bin/time";

/// What one run under [`timed`] measured.
#[derive(Debug, Default)]
pub struct Timed {
    pub wall: Duration,
    /// User + system CPU seconds (GNU time's `%U + %S`), when it is installed.
    pub cpu_seconds: Option<f64>,
    /// Peak RSS in KiB (`%M`), when GNU time is installed.
    pub peak_rss_kib: Option<u64>,
    /// stdout, when `stdout` was [`Stdio::piped`].
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` (its program and arguments) under [`GNU_TIME`], or
/// unmeasured where it is missing, with `stdin` and `stdout` as given and
/// stderr captured; fails naming the command, with its stderr, if it exits
/// non-zero. GNU time reports to a file of its own (`-o`), so stderr is the
/// program's.
pub fn timed(command: &Command, stdin: Stdio, stdout: Stdio) -> anyhow::Result<Timed> {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let report = std::env::temp_dir().join(format!(
        "xtask-time-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let measured = Path::new(GNU_TIME).exists();
    let mut wrapped = if measured {
        let mut wrapped = Command::new(GNU_TIME);
        wrapped
            .arg("-o")
            .arg(&report)
            .args(["-f", "%e %U %S %M", "--"])
            .arg(command.get_program());
        wrapped
    } else {
        Command::new(command.get_program())
    };
    wrapped
        .args(command.get_args())
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped());
    let started = Instant::now();
    let output = wrapped
        .output()
        .with_context(|| format!("running {}", describe(command)))?;
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let times = std::fs::read_to_string(&report).unwrap_or_default();
    let _ = std::fs::remove_file(&report);
    if !output.status.success() {
        bail!(
            "{} failed with {}:\n{stderr}",
            describe(command),
            output.status
        );
    }
    // The last line: GNU time puts "Command exited with..." before it.
    let fields: Vec<f64> = times
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|field| field.parse().ok())
        .collect();
    let (wall, cpu_seconds, peak_rss_kib) = match fields[..] {
        // %e has 10 ms resolution; our clock is finer but also counts
        // GNU time's own start.
        [e, user, system, rss] => (
            elapsed.min(Duration::from_secs_f64(e + 0.01)),
            Some(user + system),
            Some(rss as u64),
        ),
        _ => (elapsed, None, None),
    };
    Ok(Timed {
        wall,
        cpu_seconds,
        peak_rss_kib,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
    })
}

/// busybox (static), installed with apt-get when missing.
pub fn busybox() -> Option<PathBuf> {
    let path = PathBuf::from("/bin/busybox");
    if !path.exists() {
        eprintln!("/bin/busybox missing: installing busybox-static");
        if let Err(error) = apt_install(&["busybox-static"]) {
            eprintln!("{error:#}");
        }
    }
    path.exists().then_some(path)
}

/// A Python virtual environment at `venv` with `package` from PyPI, unless
/// `import` already works in it; the system's Python is never changed.
/// Returns the environment's `python3`.
pub fn python_venv(venv: &Path, package: &str, import: &str) -> anyhow::Result<PathBuf> {
    let python = venv.join("bin/python3");
    if python.exists() && try_output(Command::new(&python).args(["-c", import])).0 {
        return Ok(python);
    }
    if !try_output(Command::new("python3").args(["-m", "venv", "--help"])).0
        || !try_output(Command::new("python3").args(["-c", "import ensurepip"])).0
    {
        apt_install(&["python3", "python3-venv", "python3-pip"])?;
    }
    run(Command::new("python3").args(["-m", "venv"]).arg(venv))?;
    run(Command::new(&python).args(["-m", "pip", "install", "--quiet", package]))?;
    Ok(python)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_ticks_match_the_kernels_user_hz() {
        // x86-64 and arm64 Linux report CPU times in 1/100 s.
        assert_eq!(clock_ticks(), 100.0);
    }

    #[test]
    fn signals_reach_a_child_and_a_dead_pid_is_an_error() {
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
        send_signal(child.id(), "TERM").expect("signalled");
        let status = child.wait().expect("waited");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        assert!(send_signal(child.id(), "TERM").is_err());
        assert!(send_signal(1, "USR9").is_err());
    }

    #[test]
    fn timed_runs_report_cpu_and_memory_and_fail_with_stderr() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo out; echo err >&2"]);
        let run = timed(&command, Stdio::null(), Stdio::piped()).expect("sh runs");
        assert_eq!(run.stdout, "out\n");
        assert_eq!(run.stderr, "err\n");
        if Path::new(GNU_TIME).exists() {
            assert!(run.peak_rss_kib.is_some_and(|kib| kib > 0), "{run:?}");
            assert!(run.cpu_seconds.is_some(), "{run:?}");
        }
        let mut failing = Command::new("sh");
        failing.args(["-c", "echo broken >&2; exit 3"]);
        let error = timed(&failing, Stdio::null(), Stdio::null()).unwrap_err();
        assert!(format!("{error:#}").contains("broken"), "{error:#}");
    }

    #[test]
    fn programs_are_found_on_path_or_in_the_extra_folders() {
        assert!(find_program("sh", &[]).is_some());
        assert!(find_program("no-such-program-here", &[]).is_none());
        assert!(on_path("sh"));
    }
}
