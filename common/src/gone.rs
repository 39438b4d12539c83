//! Noticing that a process at either end of us is gone, so a follower that
//! would otherwise wait forever for the next line can end:
//! - [`stdout_closed`]: the reader of our stdout pipe went away
//!   (`reader FILE | head -1`). A write would fail with EPIPE, but a
//!   follower of a quiet file writes nothing, so it would never find out.
//!   GNU tail asks the kernel while idle (`check_output_alive` in
//!   coreutils' `tail.c`: poll(2) on fd 1); so do we, from a small thread
//!   blocked in poll(2) with no events asked for: the kernel still reports
//!   POLLERR (a pipe's read end closed) or POLLHUP (a socket's peer gone),
//!   at once and without any periodic wake-up. Only pipes and sockets are
//!   watched, as in GNU tail: a file or a terminal cannot go away that way.
//! - [`process_exited`]: `--pid PID`, GNU tail's way of ending with the
//!   writer: the process is looked at every interval with `kill(PID, 0)`
//!   (ESRCH: gone; EPERM: alive, just not ours to signal). A zombie (exited
//!   but not yet reaped by its parent) still counts as alive, as in GNU tail.
//!
//! What the binaries do then: a closed stdout ends the process at once with
//! status 0 (like a broken pipe); an exited writer is drained first.

use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// Completes when our stdout is a pipe or socket whose other end is closed;
/// never completes when stdout is anything else (or cannot be watched).
pub fn stdout_closed() -> impl Future<Output = ()> + Send + 'static {
    closed(libc::STDOUT_FILENO)
}

/// [`stdout_closed`] for any descriptor (tests use a pipe of their own).
/// The descriptor must stay open while the returned future is alive.
pub fn closed(fd: RawFd) -> impl Future<Output = ()> + Send + 'static {
    let (done, gone) = tokio::sync::oneshot::channel::<()>();
    let watching = is_pipe_or_socket(fd)
        && std::thread::Builder::new()
            .name("stdout-watch".into())
            // It only sits in poll(2): the default 2 MiB stack is for nothing.
            .stack_size(64 * 1024)
            .spawn(move || {
                if wait_for_hangup(fd) {
                    let _ = done.send(());
                }
            })
            .is_ok();
    async move {
        // A watcher that failed (or none) drops its sender: wait forever.
        if !(watching && gone.await.is_ok()) {
            std::future::pending::<()>().await;
        }
    }
}

/// Completes once `pid` no longer exists, looking every `interval` (the
/// first look at once).
pub async fn process_exited(pid: u32, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !process_alive(pid) {
            return;
        }
    }
}

/// Whether a process `pid` exists (a zombie does), like GNU tail's check.
#[allow(unsafe_code)]
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        // 0 and negatives name process groups for kill(2), not a process.
        return false;
    }
    // SAFETY: kill(2) with signal 0 sends nothing and touches no memory.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[allow(unsafe_code)]
fn is_pipe_or_socket(fd: RawFd) -> bool {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat(2) writes a `stat` into the buffer we own, which is
    // only read after it reported success.
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat succeeded, so the struct is initialised.
    let mode = unsafe { stat.assume_init() }.st_mode & libc::S_IFMT;
    mode == libc::S_IFIFO || mode == libc::S_IFSOCK
}

/// Blocks until `fd` reports POLLERR or POLLHUP (`true`), or polling it
/// fails (`false`).
#[allow(unsafe_code)]
fn wait_for_hangup(fd: RawFd) -> bool {
    loop {
        // No events asked for: only the conditions the kernel always
        // reports (POLLERR, POLLHUP, POLLNVAL) wake us.
        let mut watched = libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        };
        // SAFETY: one valid pollfd, and we pass a count of one.
        let ready = unsafe { libc::poll(&mut watched, 1, -1) };
        if ready < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        if watched.revents & libc::POLLNVAL != 0 {
            return false;
        }
        if watched.revents & (libc::POLLERR | libc::POLLHUP) != 0 {
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    /// Deadline for something that takes microseconds: only a failure waits.
    const DEADLINE: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn a_socket_whose_peer_went_away_is_closed() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let closed = closed(ours.as_raw_fd());
        drop(theirs);
        tokio::time::timeout(DEADLINE, closed)
            .await
            .expect("the hang-up was noticed");
    }

    #[tokio::test]
    #[allow(unsafe_code)]
    async fn a_pipe_whose_read_end_is_closed_is_closed_and_an_open_one_is_not() {
        let mut fds = [0; 2];
        // SAFETY: pipe(2) fills the two-element array we own.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let [read_end, write_end] = fds;
        let mut closed = Box::pin(closed(write_end));
        // Open read end: nothing to report.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut closed)
                .await
                .is_err()
        );
        // SAFETY: we own the descriptor and close it once.
        unsafe { libc::close(read_end) };
        tokio::time::timeout(DEADLINE, closed)
            .await
            .expect("the closed read end was noticed");
        // SAFETY: as above.
        unsafe { libc::close(write_end) };
    }

    #[test]
    fn we_are_alive_and_an_unused_pid_is_not() {
        assert!(process_alive(std::process::id()));
        // Above the kernel's pid_max (at most 2^22): never a process.
        assert!(!process_alive(1 << 23));
        assert!(!process_alive(0));
    }

    #[tokio::test]
    async fn an_exited_child_is_noticed_once_reaped() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        tokio::time::timeout(DEADLINE, process_exited(pid, Duration::from_millis(10)))
            .await
            .expect("the exit was noticed");
    }
}
