//! stdout: the files' lines, `==> FILE <==` headers, and the follower's
//! notices turned into GNU tail's stderr messages.
//!
//! Output is buffered and flushed whenever the follower is idle, so a
//! burst costs a few writes while `kubectl logs` still sees each line
//! promptly. A write blocks when stdout is full: the follower then simply
//! stops reading (the file is the buffer).

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sidecar_common::follow::{Event, Flow, NoticeKind, Sink};

/// Size of the stdout buffer.
const OUTPUT_BUFFER_BYTES: usize = 64 * 1024;

pub(crate) struct Output<W: Write> {
    out: BufWriter<W>,
    headers: bool,
    /// The file whose lines were printed last (for headers).
    last: Option<PathBuf>,
}

impl<W: Write> Output<W> {
    pub(crate) fn new(out: W, headers: bool) -> Self {
        Self {
            out: BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, out),
            headers,
            last: None,
        }
    }

    /// Prints `==> FILE <==` if headers are on and the output switches to
    /// `path` (GNU's layout: a blank line before every header but the first).
    pub(crate) fn switch_to(&mut self, path: &Path) -> io::Result<()> {
        if !self.headers || self.last.as_deref() == Some(path) {
            return Ok(());
        }
        if self.last.is_some() {
            self.out.write_all(b"\n")?;
        }
        writeln!(self.out, "==> {} <==", path.display())?;
        self.last = Some(path.to_path_buf());
        Ok(())
    }

    pub(crate) fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    #[cfg(test)]
    pub(crate) fn into_inner(self) -> W {
        self.out.into_inner().map_err(|_| "flushing").unwrap()
    }
}

impl<W: Write> Sink for Output<W> {
    fn event(&mut self, event: Event<'_>) -> io::Result<Flow> {
        match event {
            Event::Line {
                path,
                line,
                partial,
                ..
            } => {
                self.switch_to(path)?;
                self.out.write_all(line)?;
                // A piece of a long line: the rest follows (GNU tail writes
                // what it reads, too).
                if !partial {
                    self.out.write_all(b"\n")?;
                }
            }
            Event::Notice { path, kind } => notice(path, kind),
        }
        Ok(Flow::Continue)
    }

    fn idle(&mut self) -> io::Result<()> {
        self.flush()
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

    #[test]
    fn headers_are_printed_when_the_output_switches_files() {
        let mut output = Output::new(Vec::new(), true);
        for (path, line) in [("a", "1"), ("a", "2"), ("b", "3"), ("a", "4")] {
            output
                .event(Event::Line {
                    path: Path::new(path),
                    line: line.as_bytes(),
                    truncated: false,
                    partial: false,
                })
                .unwrap();
        }
        let text = String::from_utf8(output.into_inner()).unwrap();
        assert_eq!(text, "==> a <==\n1\n2\n\n==> b <==\n3\n\n==> a <==\n4\n");
    }

    #[test]
    fn pieces_of_a_long_line_make_one_line() {
        let mut output = Output::new(Vec::new(), false);
        for (piece, partial) in [("ab", true), ("cd", true), ("e", false), ("f", false)] {
            output
                .event(Event::Line {
                    path: Path::new("a"),
                    line: piece.as_bytes(),
                    truncated: false,
                    partial,
                })
                .unwrap();
        }
        assert_eq!(output.into_inner(), b"abcde\nf\n");
    }
}
