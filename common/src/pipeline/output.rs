//! The one output path of every binary that writes lines: rendered bytes
//! reach stdout (or a shipper) through a bounded hand-over to a dedicated
//! writer thread ([`OutputPipe`]), so a stdout that blocks (a slow `kubectl
//! logs`, a full pipe nobody reads) blocks only that thread, never the
//! runtime: SIGTERM is still handled and the drain deadline still holds.
//!
//! The producer renders into a chunk it owns and hands the chunk over whole
//! ([`OutputPipe::offer`] when full, [`OutputPipe::hand_over`] when idle);
//! the writer writes each with one `write_all`: no per-line syscalls.
//!
//! Invariants:
//! - memory is bounded: the pipe refuses more than [`PENDING_LIMIT_BYTES`]
//!   waiting for the writer ([`OutputPipe::has_room`] is false);
//!   [`OutputPipe::offer`] then answers `Flow::Pause` and the follower stops
//!   reading, so the file on disk is the buffer;
//! - bytes are written in the order they were handed over, and
//!   [`OutputPipe::written`] counts those actually written, so a checkpoint
//!   is only saved for lines that reached stdout;
//! - a failed write (EPIPE when the reader went away) is reported to the
//!   producer on its next hand-over, as an `io::Error`.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::follow::Flow;
use crate::shutdown::Shutdown;

/// How many rendered bytes may wait for the writer before reading pauses.
/// Together with one chunk being written and one being filled, this bounds
/// the output's memory to a few MiB whatever the input.
pub const PENDING_LIMIT_BYTES: usize = 512 * 1024;

/// The size at which the producer hands a chunk to the writer: large enough
/// that a fast file costs one `write(2)` per 256 KiB.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// The pipe buffer stdout gets when it is a pipe ([`stdout`]).
/// A container runtime drains a container's stdout with small reads; with
/// the kernel's default 64 KiB a 256 KiB chunk needs several wake-ups of the
/// writer thread, each waiting for the reader. 1 MiB is what an unprivileged
/// process may ask (`/proc/sys/fs/pipe-max-size`'s default).
pub const STDOUT_PIPE_BYTES: usize = 1024 * 1024;

/// The most one `write(2)` puts in stdout's pipe: a page. A pipe's reader
/// and writer take turns on one lock, which a write holds while it copies
/// all it can; a reader draining with small reads (a container runtime,
/// `head`) then sleeps on it once per read. Written a page at a time, as
/// GNU tail's stdio writes, the reader reads between two writes: 200 MB
/// into `head -n` took 0.25–0.32 s instead of 0.33–0.39 s (GNU `tail`
/// 0.19–0.28 s, `docs/follow-cost.md`).
pub const PIPE_WRITE_BYTES: usize = 4096;

/// What the writer thread writes to: stdout's descriptor itself (a
/// duplicate), not `io::stdout()`'s line buffer, which would split every
/// chunk at its last newline; in pieces of [`PIPE_WRITE_BYTES`] when it
/// is a pipe.
#[derive(Debug)]
pub struct Stdout {
    file: std::fs::File,
    piece: usize,
}

/// Stdout for an [`OutputPipe`]: widened to [`STDOUT_PIPE_BYTES`] and
/// written a page at a time when it is a pipe.
pub fn stdout() -> io::Result<Stdout> {
    use std::os::fd::AsFd;
    let piece = if widen_stdout_pipe() {
        PIPE_WRITE_BYTES
    } else {
        usize::MAX
    };
    let file = io::stdout().as_fd().try_clone_to_owned()?.into();
    Ok(Stdout { file, piece })
}

impl Write for Stdout {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.file.write(&bytes[..bytes.len().min(self.piece)])
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Grows stdout's pipe buffer to [`STDOUT_PIPE_BYTES`] when stdout is a
/// pipe and its buffer is smaller; whether it is a pipe. Best effort: a
/// terminal, a file, a socket, or a refusal (a lower `pipe-max-size`, the
/// user's pipe quota used up) leave stdout as it is.
#[allow(unsafe_code)]
fn widen_stdout_pipe() -> bool {
    use std::os::fd::AsRawFd;
    let fd = io::stdout().as_raw_fd();
    // SAFETY: fcntl(2) on fd 1 with integer arguments only; on anything
    // but a pipe F_GETPIPE_SZ fails (EBADF, EINVAL) and nothing is changed.
    let current = unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) };
    let Ok(current) = usize::try_from(current) else {
        return false;
    };
    if current < STDOUT_PIPE_BYTES {
        let wanted = libc::c_int::try_from(STDOUT_PIPE_BYTES).unwrap_or(libc::c_int::MAX);
        // SAFETY: as above; a refusal leaves the pipe as it was.
        let _ = unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, wanted) };
    }
    true
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread when bytes are pending or the pipe closes.
    work: Condvar,
    /// Bytes written to the sink so far.
    written: AtomicU64,
    /// Wakes the producer when the writer made room (or failed).
    room: Notify,
}

struct State {
    pending: Vec<u8>,
    closed: bool,
    failed: Option<io::ErrorKind>,
}

/// A bounded hand-over to a writer thread; see the module documentation.
pub struct OutputPipe {
    shared: Arc<Shared>,
    handed: u64,
    thread: Option<thread::JoinHandle<()>>,
}

impl OutputPipe {
    /// Starts the writer thread over `sink` (stdout in the binary).
    pub fn spawn<W: Write + Send + 'static>(sink: W) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: Vec::new(),
                closed: false,
                failed: None,
            }),
            work: Condvar::new(),
            written: AtomicU64::new(0),
            room: Notify::new(),
        });
        let thread_shared = shared.clone();
        let thread = thread::Builder::new()
            .name("stdout-writer".into())
            .spawn(move || write_loop(&thread_shared, sink))?;
        Ok(Self {
            shared,
            handed: 0,
            thread: Some(thread),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the writer can take more (fewer than [`PENDING_LIMIT_BYTES`] waiting).
    pub fn has_room(&self) -> bool {
        self.lock().pending.len() < PENDING_LIMIT_BYTES
    }

    /// Moves `chunk`'s bytes to the writer (leaving `chunk` empty, its
    /// capacity kept). Never blocks; the caller bounds what it hands over
    /// by checking [`OutputPipe::has_room`] first.
    pub fn hand_over(&mut self, chunk: &mut Vec<u8>) -> io::Result<()> {
        let length = chunk.len() as u64;
        let mut state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(kind) = state.failed {
            return Err(io::Error::new(kind, "writing to stdout"));
        }
        if length == 0 {
            return Ok(());
        }
        if state.pending.is_empty() {
            std::mem::swap(&mut state.pending, chunk);
        } else {
            state.pending.extend_from_slice(chunk);
            chunk.clear();
        }
        drop(state);
        self.handed += length;
        self.shared.work.notify_one();
        Ok(())
    }

    /// Bytes handed over so far.
    pub fn handed(&self) -> u64 {
        self.handed
    }

    /// Bytes actually written so far.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Acquire)
    }

    /// Completes when the writer made room or failed (then with its error).
    pub async fn room(&self) -> io::Result<()> {
        loop {
            let notified = self.shared.room.notified();
            {
                let state = self.lock();
                if let Some(kind) = state.failed {
                    return Err(io::Error::new(kind, "writing to stdout"));
                }
                if state.pending.len() < PENDING_LIMIT_BYTES {
                    return Ok(());
                }
            }
            notified.await;
        }
    }

    /// Completes when everything handed over was written (or the write failed).
    pub async fn flushed(&self) -> io::Result<()> {
        loop {
            let notified = self.shared.room.notified();
            if let Some(kind) = self.lock().failed {
                return Err(io::Error::new(kind, "writing to stdout"));
            }
            if self.written() >= self.handed {
                return Ok(());
            }
            notified.await;
        }
    }
}

impl Drop for OutputPipe {
    fn drop(&mut self) {
        self.lock().closed = true;
        self.shared.work.notify_one();
        // Not joined: the thread may be stuck in a write to a stdout nobody
        // reads, and the process must still be able to exit.
        drop(self.thread.take());
    }
}

fn write_loop(shared: &Shared, mut sink: impl Write) {
    let mut writing = Vec::new();
    loop {
        {
            let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
            while state.pending.is_empty() && !state.closed {
                state = shared
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.pending.is_empty() {
                return;
            }
            writing.clear();
            std::mem::swap(&mut writing, &mut state.pending);
        }
        shared.room.notify_one();
        let outcome = sink.write_all(&writing).and_then(|()| sink.flush());
        if let Err(error) = outcome {
            shared
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .failed = Some(error.kind());
            shared.room.notify_one();
            return;
        }
        shared
            .written
            .fetch_add(writing.len() as u64, Ordering::Release);
        shared.room.notify_one();
        // Keep at most one chunk's worth of capacity between writes: a burst
        // must not pin its peak buffer for the rest of the process's life.
        if writing.capacity() > 2 * PENDING_LIMIT_BYTES {
            writing = Vec::new();
        }
    }
}

impl OutputPipe {
    /// After rendering into `chunk`: hands it over once it holds
    /// [`CHUNK_BYTES`] and the writer has room; [`Flow::Pause`] when it has
    /// none (the follower stops reading until [`OutputPipe::ready_for`]).
    pub fn offer(&mut self, chunk: &mut Vec<u8>) -> io::Result<Flow> {
        if chunk.len() < CHUNK_BYTES {
            return Ok(Flow::Continue);
        }
        if self.has_room() {
            self.hand_over(chunk)?;
            Ok(Flow::Continue)
        } else {
            Ok(Flow::Pause)
        }
    }

    /// After a pause: waits for room, then hands `chunk` over.
    pub async fn ready_for(&mut self, chunk: &mut Vec<u8>) -> io::Result<()> {
        self.room().await?;
        self.hand_over(chunk)
    }

    /// At the end of a run: hands `chunk` over and waits until everything
    /// is written, without a limit while no stop is asked for (input that
    /// ended, `--no-follow`), and at most `timeout` once `shutdown` is
    /// (before the call or during the wait): whether it all was.
    pub async fn finish(
        &mut self,
        chunk: &mut Vec<u8>,
        shutdown: &Shutdown,
        timeout: Duration,
    ) -> io::Result<bool> {
        if !shutdown.is_requested() {
            tokio::select! {
                written = self.drain(chunk, None) => return written,
                () = shutdown.requested() => {}
            }
        }
        self.drain(chunk, Some(Instant::now() + timeout)).await
    }

    /// Hands `chunk` over and waits until everything is written, at most
    /// until `deadline` (`None`: no limit): whether it all was. What is
    /// not written by then is left to the writer thread, which does not
    /// keep the process alive.
    pub async fn drain(
        &mut self,
        chunk: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> io::Result<bool> {
        self.hand_over(chunk)?;
        match deadline {
            Some(deadline) => {
                match tokio::time::timeout_at(deadline.into(), self.flushed()).await {
                    Ok(result) => result.map(|()| true),
                    Err(_) => Ok(false),
                }
            }
            None => self.flushed().await.map(|()| true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_is_written_a_page_at_a_time_and_gets_every_byte() {
        let (mut reading, writing) = io::pipe().unwrap();
        let mut out = Stdout {
            file: std::fs::File::from(std::os::fd::OwnedFd::from(writing)),
            piece: PIPE_WRITE_BYTES,
        };
        let bytes: Vec<u8> = (0..10_000u32).map(|n| n as u8).collect();
        assert_eq!(out.write(&bytes).unwrap(), PIPE_WRITE_BYTES);
        out.write_all(&bytes[PIPE_WRITE_BYTES..]).unwrap();
        drop(out);
        let mut read = Vec::new();
        io::Read::read_to_end(&mut reading, &mut read).unwrap();
        assert_eq!(read, bytes);
    }

    /// A sink that stays blocked until released, to see the pipe refuse work.
    struct Gate {
        open: Arc<(Mutex<bool>, Condvar)>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let (lock, condvar) = &*self.open;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = condvar.wait(open).unwrap();
            }
            self.out.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_blocked_writer_makes_the_pipe_refuse_then_everything_arrives_in_order() {
        let open = Arc::new((Mutex::new(false), Condvar::new()));
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = OutputPipe::spawn(Gate {
            open: open.clone(),
            out: out.clone(),
        })
        .unwrap();
        let mut expected = Vec::new();
        let mut counter = 0u64;
        // Hand over until the pipe says no: the writer holds one chunk, the
        // rest waits, and the amount waiting is bounded.
        while pipe.has_room() {
            let mut chunk = Vec::new();
            for _ in 0..1000 {
                chunk.extend_from_slice(format!("line {counter}\n").as_bytes());
                counter += 1;
            }
            expected.extend_from_slice(&chunk);
            pipe.hand_over(&mut chunk).unwrap();
            assert!(chunk.is_empty());
            assert!(pipe.handed() < 4 * PENDING_LIMIT_BYTES as u64);
        }
        assert_eq!(pipe.written(), 0);
        *open.0.lock().unwrap() = true;
        open.1.notify_all();
        pipe.room().await.unwrap();
        pipe.flushed().await.unwrap();
        assert_eq!(pipe.written(), pipe.handed());
        assert_eq!(*out.lock().unwrap(), expected);
    }

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_write_error_reaches_the_producer() {
        let mut pipe = OutputPipe::spawn(Broken).unwrap();
        pipe.hand_over(&mut b"x\n".to_vec()).unwrap();
        let error = pipe.flushed().await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(
            pipe.hand_over(&mut b"y\n".to_vec()).unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
    }
}
