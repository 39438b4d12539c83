//! Test support for the binaries' `tests/cli.rs`: start the real binary,
//! collect its stdout and stderr in the background, wait for expected output
//! with a deadline (never a bare sleep), send it signals.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Default deadline for output a test expects: generous, because CI machines
/// are slow and noisy; a passing test never waits for it.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A running binary whose output is being collected.
pub struct Running {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<thread::JoinHandle<()>>,
}

/// Starts `command` with piped stdout and stderr (and stdin closed unless set).
pub fn spawn(mut command: Command) -> Running {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("starting {command:?}: {error}"));
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let readers = vec![
        collect(child.stdout.take().expect("piped"), stdout.clone()),
        collect(child.stderr.take().expect("piped"), stderr.clone()),
    ];
    Running {
        child,
        stdout,
        stderr,
        readers,
    }
}

fn collect(
    mut source: impl Read + Send + 'static,
    sink: Arc<Mutex<Vec<u8>>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buffer = [0u8; 64 * 1024];
        loop {
            match source.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(read) => sink
                    .lock()
                    .expect("not poisoned")
                    .extend_from_slice(&buffer[..read]),
            }
        }
    })
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything printed on stdout so far, lossily decoded.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().expect("not poisoned")).into_owned()
    }

    /// Everything printed on stdout so far, as bytes.
    pub fn stdout_bytes(&self) -> Vec<u8> {
        self.stdout.lock().expect("not poisoned").clone()
    }

    /// Everything printed on stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("not poisoned")).into_owned()
    }

    /// Waits until `done(stdout)` holds, or panics after `DEADLINE` showing both streams.
    pub fn wait_for_stdout(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        self.wait_for(what, DEADLINE, || done(&self.stdout()));
        self.stdout()
    }

    /// Waits until stdout contains `needle`.
    pub fn wait_for_stdout_containing(&self, needle: &str) -> String {
        self.wait_for_stdout(&format!("stdout containing {needle:?}"), |out| {
            out.contains(needle)
        })
    }

    /// Waits until stderr contains `needle`.
    pub fn wait_for_stderr_containing(&self, needle: &str) -> String {
        self.wait_for(&format!("stderr containing {needle:?}"), DEADLINE, || {
            self.stderr().contains(needle)
        });
        self.stderr()
    }

    fn wait_for(&self, what: &str, deadline: Duration, done: impl Fn() -> bool) {
        let started = Instant::now();
        while !done() {
            if started.elapsed() > deadline {
                panic!(
                    "timed out after {deadline:?} waiting for {what}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) {
        send_signal(self.child.id(), signal);
    }

    /// Sends SIGTERM and waits for the exit; returns the status and how long it took.
    pub fn terminate(mut self) -> (ExitStatus, Duration, Output) {
        let started = Instant::now();
        self.signal(libc::SIGTERM);
        let status = self.wait_with_deadline(DEADLINE);
        let elapsed = started.elapsed();
        (status, elapsed, self.finish())
    }

    /// Waits for the process to exit by itself, at most `deadline`.
    pub fn wait(mut self) -> (ExitStatus, Output) {
        let status = self.wait_with_deadline(DEADLINE);
        (status, self.finish())
    }

    fn wait_with_deadline(&mut self, deadline: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the child") {
                return status;
            }
            if started.elapsed() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "process did not exit within {deadline:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn finish(mut self) -> Output {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Output {
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a finished process printed.
#[derive(Debug)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

/// Starts `command` with stdout a pipe, reads its first line, then closes
/// the pipe's read end, as `| head -1` does; returns that line, the exit
/// status and how long the exit took after the close. Panics if the process
/// is still running `DEADLINE` after the close.
pub fn first_line_then_close_stdout(mut command: Command) -> (String, ExitStatus, Duration) {
    use std::io::BufRead;
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null());
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("starting {command:?}: {error}"));
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("reading stdout");
    drop(stdout);
    let closed = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            return (line, status, closed.elapsed());
        }
        if closed.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running {DEADLINE:?} after its stdout was closed");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Starts `command` with stdout a pipe nobody reads, waits until the
/// process has filled it (it wrote at least a pipe's 64 KiB, so its next
/// write blocks), sends SIGTERM and returns the exit status and how long
/// the exit took after the signal. `started(pid)` runs once the process is
/// (e.g. to write what it follows). Panics if the pipe never fills or the
/// process is still running `DEADLINE` after the signal.
pub fn sigterm_with_stdout_full(
    mut command: Command,
    started: impl FnOnce(u32),
) -> (ExitStatus, Duration) {
    command.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("starting {command:?}: {error}"));
    // Held open and never read: the pipe fills and stays full.
    let stdout = child.stdout.take().expect("piped");
    let pid = child.id();
    started(pid);
    eventually("stdout to fill", || pipe_is_full(&stdout));
    let signalled = Instant::now();
    send_signal(pid, libc::SIGTERM);
    loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            return (status, signalled.elapsed());
        }
        if signalled.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running {DEADLINE:?} after SIGTERM with its stdout full");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// The capacity in bytes of the pipe whose read end is `pipe` (0 if it is
/// not a pipe).
#[allow(unsafe_code)]
pub fn pipe_capacity(pipe: &impl std::os::fd::AsRawFd) -> u64 {
    // SAFETY: fcntl(F_GETPIPE_SZ) on a descriptor we own, no pointers.
    let capacity = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_GETPIPE_SZ) };
    u64::try_from(capacity).unwrap_or(0)
}

/// Whether the pipe whose read end is `pipe` holds as much as it can: a
/// writer blocks once every page of the pipe is used, and a page a write
/// ended in may not be full, so "full" is within a sixteenth of its size.
#[allow(unsafe_code)]
fn pipe_is_full(pipe: &impl std::os::fd::AsRawFd) -> bool {
    let capacity = pipe_capacity(pipe);
    let mut queued: libc::c_int = 0;
    // SAFETY: ioctl(FIONREAD) on a descriptor we own writes one c_int,
    // which `queued` is.
    unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut queued) };
    let queued = u64::try_from(queued).unwrap_or(0);
    capacity > 0 && queued + capacity / 16 >= capacity
}

/// Whether process `pid` has an inotify instance open: a follower built on
/// `sidecar_common::follow` is past its start and watching.
pub fn is_watching(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| target == Path::new("anon_inode:inotify"))
        })
}

/// Creates a FIFO (named pipe) at `path`, mode 0600.
#[allow(unsafe_code)]
pub fn make_fifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL in the path");
    // SAFETY: `name` is a valid NUL-terminated string for the call's duration.
    let result = unsafe { libc::mkfifo(name.as_ptr(), 0o600) };
    assert_eq!(result, 0, "mkfifo {}", path.display());
}

/// Sends `signal` to `pid`.
pub fn send_signal(pid: u32, signal: i32) {
    if let Err(error) = try_send_signal(pid, signal) {
        panic!("kill({pid}, {signal}) failed: {error}");
    }
}

/// Sends `signal` to `pid`; the error is kill(2)'s (e.g. no such process).
#[allow(unsafe_code)]
pub fn try_send_signal(pid: u32, signal: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    let result = unsafe { libc::kill(pid as libc::pid_t, signal) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Polls `done` every 10 ms until it holds, or panics after `DEADLINE` with `what`.
pub fn eventually(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Appends `text` to the file at `path` in one write, creating it.
pub fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|error| panic!("opening {}: {error}", path.display()));
    file.write_all(text.as_bytes()).expect("appending");
}
