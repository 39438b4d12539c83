//! stdout: the files' lines, `==> FILE <==` headers, and the follower's
//! notices turned into GNU tail's stderr messages.
//!
//! Output is rendered into a chunk handed whole to the shared bounded pipe
//! ([`sidecar_common::pipeline::output::OutputPipe`]) when it is full and
//! whenever the follower is idle, so a burst costs a few writes while
//! `kubectl logs` still sees each line promptly. A stdout that blocks
//! blocks only the pipe's writer thread: the follower is paused (the file
//! is the buffer) and a signal is still handled.

use std::io;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sidecar_common::follow::{Event, Flow, NoticeKind, Sink};
use sidecar_common::pipeline::output::{CHUNK_BYTES, OutputPipe};
use sidecar_common::shutdown::Shutdown;

pub(crate) struct Output {
    chunk: Vec<u8>,
    pipe: OutputPipe,
    headers: bool,
    /// The file whose lines were printed last (for headers).
    last: Option<PathBuf>,
}

impl Output {
    pub(crate) fn new(pipe: OutputPipe, headers: bool) -> Self {
        Self {
            chunk: Vec::with_capacity(CHUNK_BYTES + 64 * 1024),
            pipe,
            headers,
            last: None,
        }
    }

    /// Prints `==> FILE <==` if headers are on and the output switches to
    /// `path` (GNU's layout: a blank line before every header but the first).
    pub(crate) fn switch_to(&mut self, path: &Path) {
        if !self.headers || self.last.as_deref() == Some(path) {
            return;
        }
        if self.last.is_some() {
            self.chunk.push(b'\n');
        }
        // Writing to a Vec cannot fail.
        let _ = writeln!(self.chunk, "==> {} <==", path.display());
        self.last = Some(path.to_path_buf());
    }

    /// Appends bytes as they are; the caller then [`Output::offer`]s them.
    pub(crate) fn write_raw(&mut self, bytes: &[u8]) {
        self.chunk.extend_from_slice(bytes);
    }

    /// Hands a full chunk to the writer; `Pause` when it has no room.
    pub(crate) fn offer(&mut self) -> io::Result<Flow> {
        self.pipe.offer(&mut self.chunk)
    }

    /// After a pause: completes once the writer took the chunk.
    pub(crate) async fn wait_for_room(&mut self) -> io::Result<()> {
        self.pipe.ready_for(&mut self.chunk).await
    }

    /// Everything to the writer, and waits until it is written (within
    /// `timeout` once `shutdown` is asked for): whether it all was.
    pub(crate) async fn finish(
        &mut self,
        shutdown: &Shutdown,
        timeout: Duration,
    ) -> io::Result<bool> {
        self.pipe.finish(&mut self.chunk, shutdown, timeout).await
    }
}

impl Sink for Output {
    fn event(&mut self, event: Event<'_>) -> io::Result<Flow> {
        match event {
            Event::Line {
                path,
                line,
                partial,
                ..
            } => {
                self.switch_to(path);
                self.chunk.extend_from_slice(line);
                // A piece of a long line: the rest follows (GNU tail writes
                // what it reads, too).
                if !partial {
                    self.chunk.push(b'\n');
                }
                self.offer()
            }
            Event::Notice { path, kind } => {
                notice(path, kind);
                Ok(Flow::Continue)
            }
        }
    }

    fn idle(&mut self) -> io::Result<()> {
        self.pipe.hand_over(&mut self.chunk)
    }

    /// Everything is handed over at once when idle, and nothing is timed.
    fn needs_ticks(&self) -> bool {
        false
    }

    async fn ready(&mut self) -> io::Result<()> {
        self.wait_for_room().await
    }
}

/// GNU tail's messages for the same events.
fn notice(path: &Path, kind: NoticeKind) {
    let path = path.display();
    match kind {
        NoticeKind::Appeared => tracing::info!("{path} has appeared; following new file"),
        NoticeKind::Rotated => tracing::info!("{path} has been replaced; following new file"),
        NoticeKind::Truncated => tracing::info!("{path}: file truncated"),
        NoticeKind::Removed => {
            tracing::warn!("{path} has become inaccessible: No such file or directory")
        }
        NoticeKind::Unreadable(error) => tracing::warn!("cannot read {path}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A stdout the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    async fn printed(headers: bool, lines: &[(&str, &str, bool)]) -> String {
        let stdout = Shared::default();
        let mut output = Output::new(OutputPipe::spawn(stdout.clone()).unwrap(), headers);
        for (path, line, partial) in lines {
            output
                .event(Event::Line {
                    path: Path::new(path),
                    line: line.as_bytes(),
                    truncated: false,
                    partial: *partial,
                    lines: 1,
                })
                .unwrap();
        }
        let never = Shutdown::new();
        assert!(output.finish(&never, Duration::ZERO).await.unwrap());
        String::from_utf8(stdout.0.lock().unwrap().clone()).unwrap()
    }

    #[tokio::test]
    async fn headers_are_printed_when_the_output_switches_files() {
        let lines = [("a", "1"), ("a", "2"), ("b", "3"), ("a", "4")].map(|(p, l)| (p, l, false));
        assert_eq!(
            printed(true, &lines).await,
            "==> a <==\n1\n2\n\n==> b <==\n3\n\n==> a <==\n4\n"
        );
    }

    #[tokio::test]
    async fn pieces_of_a_long_line_make_one_line() {
        let lines =
            [("ab", true), ("cd", true), ("e", false), ("f", false)].map(|(l, p)| ("a", l, p));
        assert_eq!(printed(false, &lines).await, "abcde\nf\n");
    }
}
