//! Stream mode's output: how a line is rendered ([`Format`], [`Formatter`])
//! and how rendered bytes reach stdout without unbounded buffering
//! ([`OutputPipe`]).
//!
//! Rendering appends to a caller-owned buffer, so plain mode costs one copy
//! per line and no allocation. The pipe hands whole chunks of complete lines
//! to a dedicated writer thread, which writes each with one `write_all`: no
//! per-line syscalls, and a stdout that blocks (a slow `kubectl logs`, a
//! full pipe) blocks only that thread.
//!
//! Invariants:
//! - memory is bounded: the pipe refuses more than [`PENDING_LIMIT_BYTES`]
//!   waiting for the writer ([`OutputPipe::has_room`] is false); the stream
//!   driver then returns `Flow::Pause` and stops reading, so the file on
//!   disk is the buffer;
//! - bytes are written in the order they were handed over, and
//!   [`OutputPipe::written`] counts those actually written, so a checkpoint
//!   is only saved for lines that reached stdout;
//! - a failed write (EPIPE when the reader went away) is reported to the
//!   producer on its next hand-over, as an `io::Error`.

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;

use sidecar_common::json::write_string as write_json_string;
use tokio::sync::Notify;

/// How many rendered bytes may wait for the writer before reading pauses.
/// Together with one chunk being written and one being filled, this bounds
/// the output's memory to a few MiB whatever the input.
pub const PENDING_LIMIT_BYTES: usize = 512 * 1024;

/// The size at which the producer hands a chunk to the writer: large enough
/// that a fast file costs one `write(2)` per 256 KiB.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// How a line is written to stdout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The line as it is in the file.
    #[default]
    Plain,
    /// `<file>: <line>`; control bytes and `\` in the file name are escaped
    /// (`\n`, `\t`, `\xNN`, `\\`), so a name with a newline cannot split a line.
    Prefixed,
    /// One JSON object per line: `file`, `line` (UTF-8, invalid bytes
    /// replaced by U+FFFD), `time` (ingestion, RFC 3339) and `truncated`
    /// (only when the line was cut at `--max-line-bytes`).
    Json,
}

/// Renders lines in one [`Format`]; caches the ingestion timestamp per millisecond.
#[derive(Debug)]
pub struct Formatter {
    format: Format,
    time_millis: i64,
    time_text: String,
    /// `{"file":"<path>","line":` for the last path seen: lines come in runs
    /// per file, so the path is escaped once per run, not once per line.
    json_head: Vec<u8>,
    json_head_path: std::path::PathBuf,
    /// The path whose long line was left open by a `partial` piece: its
    /// next piece continues it (no prefix); anything else ends it first.
    open_line: Option<std::path::PathBuf>,
}

impl Formatter {
    pub fn new(format: Format) -> Self {
        Self {
            format,
            time_millis: i64::MIN,
            time_text: String::new(),
            json_head: Vec::new(),
            json_head_path: std::path::PathBuf::new(),
            open_line: None,
        }
    }

    /// Appends `line` (without its newline) from `path`, rendered, with a
    /// newline. `partial`: a piece of a long line whose rest follows (the
    /// follower's split mode): in plain and prefixed output it is written
    /// as it comes, without the newline, and the next piece of that path
    /// continues it, so a line of any size comes out whole while only a
    /// piece is held. A line of another file arriving before the last piece
    /// (the long line is still being written) ends the open line first; its
    /// rest then comes out as a line of its own. JSON is not given pieces:
    /// a record must be whole, so there lines are cut (`truncated`).
    pub fn render(
        &mut self,
        out: &mut Vec<u8>,
        path: &Path,
        line: &[u8],
        truncated: bool,
        partial: bool,
    ) {
        if let Some(open) = &self.open_line {
            if open.as_os_str().as_encoded_bytes() != path.as_os_str().as_encoded_bytes() {
                out.push(b'\n');
                self.open_line = None;
            }
        }
        let continued = self.open_line.is_some();
        match self.format {
            Format::Plain => {
                out.extend_from_slice(line);
            }
            Format::Prefixed => {
                if !continued {
                    write_escaped_name(path.as_os_str().as_encoded_bytes(), out);
                    out.extend_from_slice(b": ");
                }
                out.extend_from_slice(line);
            }
            Format::Json => {
                let now = jiff::Timestamp::now();
                let millis = now.as_millisecond();
                if millis != self.time_millis {
                    self.time_millis = millis;
                    self.time_text = sidecar_common::clock::rfc3339_utc(now);
                }
                // Compared as bytes: `Path`'s `==` walks components, which
                // cost more per line than the rest of the rendering.
                if self.json_head.is_empty()
                    || self.json_head_path.as_os_str().as_encoded_bytes()
                        != path.as_os_str().as_encoded_bytes()
                {
                    self.json_head.clear();
                    self.json_head.extend_from_slice(b"{\"file\":");
                    write_json_string(&path.to_string_lossy(), &mut self.json_head);
                    self.json_head.extend_from_slice(b",\"line\":");
                    self.json_head_path = path.to_owned();
                }
                out.extend_from_slice(&self.json_head);
                write_json_string(&String::from_utf8_lossy(line), out);
                out.extend_from_slice(b",\"time\":\"");
                out.extend_from_slice(self.time_text.as_bytes());
                out.push(b'"');
                if truncated {
                    out.extend_from_slice(b",\"truncated\":true");
                }
                out.push(b'}');
            }
        }
        if partial && self.format != Format::Json {
            if !continued {
                self.open_line = Some(path.to_owned());
            }
            return;
        }
        self.open_line = None;
        out.push(b'\n');
    }
}

/// A file name in `--output prefixed`: as it is unless it holds a control
/// byte or `\`, which are escaped C-style (one line per line, whatever the name).
fn write_escaped_name(name: &[u8], out: &mut Vec<u8>) {
    let special = |byte: u8| byte < 0x20 || byte == 0x7f || byte == b'\\';
    if !name.iter().any(|byte| special(*byte)) {
        out.extend_from_slice(name);
        return;
    }
    for &byte in name {
        match byte {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            byte if special(byte) => {
                let _ = write!(out, "\\x{byte:02x}");
            }
            byte => out.push(byte),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn render(format: Format, line: &[u8], truncated: bool) -> String {
        let mut out = Vec::new();
        Formatter::new(format).render(
            &mut out,
            Path::new("/var/log/app.log"),
            line,
            truncated,
            false,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn plain_is_the_line_as_is() {
        assert_eq!(
            render(Format::Plain, b"hello world", false),
            "hello world\n"
        );
    }

    #[test]
    fn prefixed_names_the_file() {
        assert_eq!(
            render(Format::Prefixed, b"hello", false),
            "/var/log/app.log: hello\n"
        );
    }

    #[test]
    fn prefixed_escapes_a_file_name_with_a_newline_or_control_bytes() {
        // Regression: a name with a newline split each line in two.
        let mut out = Vec::new();
        Formatter::new(Format::Prefixed).render(
            &mut out,
            Path::new("/logs/a\nb\t\\c\x1b.log"),
            b"hello",
            false,
            false,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "/logs/a\\nb\\t\\\\c\\x1b.log: hello\n"
        );
    }

    #[test]
    fn json_has_file_line_time_and_truncated_when_cut() {
        let text = render(Format::Json, b"say \"hi\"\t\\ \x01", true);
        assert!(text.ends_with('\n'));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["file"], "/var/log/app.log");
        assert_eq!(value["line"], "say \"hi\"\t\\ \u{1}");
        assert_eq!(value["truncated"], true);
        let time = value["time"].as_str().unwrap();
        assert!(time.parse::<jiff::Timestamp>().is_ok(), "{time}");
        let whole = render(Format::Json, b"x", false);
        assert!(!whole.contains("truncated"), "{whole}");
    }

    #[test]
    fn json_names_the_right_file_when_files_alternate() {
        let mut formatter = Formatter::new(Format::Json);
        let mut out = Vec::new();
        for path in ["/a.log", "/b \"quoted\".log", "/a.log"] {
            formatter.render(&mut out, Path::new(path), b"x", false, false);
        }
        let files: Vec<String> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line).unwrap()["file"].to_string()
            })
            .collect();
        assert_eq!(
            files,
            [r#""/a.log""#, r#""/b \"quoted\".log""#, r#""/a.log""#]
        );
    }

    #[test]
    fn pieces_of_a_long_line_come_out_as_one_line() {
        for (format, expected) in [
            (Format::Plain, "abcdef\nnext\n"),
            (Format::Prefixed, "/a.log: abcdef\n/a.log: next\n"),
        ] {
            let mut formatter = Formatter::new(format);
            let mut out = Vec::new();
            for (piece, partial) in [("ab", true), ("cd", true), ("ef", false), ("next", false)] {
                formatter.render(
                    &mut out,
                    Path::new("/a.log"),
                    piece.as_bytes(),
                    false,
                    partial,
                );
            }
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{format:?}");
        }
    }

    #[test]
    fn another_files_line_ends_an_open_long_line_first() {
        let mut formatter = Formatter::new(Format::Prefixed);
        let mut out = Vec::new();
        for (path, piece, partial) in [
            ("/a.log", "ab", true),
            ("/b.log", "other", false),
            ("/a.log", "cd", false),
        ] {
            formatter.render(&mut out, Path::new(path), piece.as_bytes(), false, partial);
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "/a.log: ab\n/b.log: other\n/a.log: cd\n"
        );
    }

    #[test]
    fn json_stays_valid_for_invalid_utf8() {
        let text = render(Format::Json, b"bad \xff\xfe bytes \xc3", false);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["line"], "bad \u{fffd}\u{fffd} bytes \u{fffd}");
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
