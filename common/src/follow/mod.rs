//! Following files by name, like GNU `tail -F`, without losing or repeating
//! a line: the engine under `reader`, `log-aggregator --follow` and
//! `adapter FILE`.
//!
//! # Shape
//! [`Follower`] is synchronous and deterministic: [`Follower::poll_once`]
//! re-stats every followed path, notices new, replaced, truncated and deleted
//! files, reads what is available and hands each complete line to a sink.
//! Nothing happens between two calls, so tests drive it step by step. The
//! async driver [`run`] calls it when inotify says a watched directory
//! changed and on a periodic tick; file-change events are hints to look
//! again, never the truth, and when watching is impossible (inotify
//! instances or watches exhausted) the tick alone drives it. When events
//! name every change, [`Follower::poll_changed`] looks only at the files
//! they named.
//!
//! # Guarantees
//! - Identity is by content (see `source.rs`): a file's first bytes (up to
//!   [`FINGERPRINT_BYTES`], compared as a prefix while shorter) and the bytes
//!   just before the read position. (device, inode) ([`FileId`]) is only the
//!   fast path for a rename. A file that holds the bytes of a stream being or
//!   already read continues it at its position whatever its name or inode; it
//!   is never read again from 0:
//!   - a rename (a glob over a logrotate chain, `app.log.1` becoming
//!     `app.log.2`): the open descriptor moves to the new name;
//!   - a copy of a file still intact elsewhere (copytruncate's copy before the
//!     truncation, a user's `cp`) is a *shadow*: not read, its bytes come from
//!     the original. When the original is truncated the copy continues the
//!     old stream from our position (the lines written between our last read
//!     and the copy are only there); when it is let go, the copy continues it
//!     by content or held nothing new. A shadow that grows apart from its
//!     original (more bytes, or other first bytes once both grow: two files
//!     that only began alike) is a file of its own, read from 0;
//!   - a compressed file (gzip magic, never the name) is read decompressed
//!     when it continues a stream, else skipped: never streamed as text;
//!   - a file let go (the last [`RELEASED_MEMORY`]) or checkpointed and
//!     found again under another name continues where it was left.
//!
//!   A file is only taken for another's copy when it is named as rotation
//!   tools name copies (`named_like_copy`: `app.log` → `app.log.1`,
//!   `app.log-DATE.gz`, `app-DATE.log`): replicas writing the same lines
//!   into files of their own are each read.
//! - Truncation in place (copytruncate) is seen when the size drops below our
//!   position, or when the first bytes changed (truncated and written past
//!   our position again before we looked). It is handled at the end of the
//!   refresh phase, once every new file had its chance to continue the old
//!   stream: the copy followed by a glob, or else one at logrotate's names
//!   next to the file (`copy_candidates`), is read from our position to its
//!   end first, then the file from 0. Lines written after logrotate's copy and
//!   before its truncation are in no file afterwards: [`Follower::read_every_change`]
//!   and [`Follower::truncation_expected`] let the driver read such files at
//!   every change and continuously while a copy is made, to read them first.
//! - Rename rotation (logrotate's default): the renamed file is read to its
//!   end, and kept open for [`FollowOptions::rotate_wait`] for late writes,
//!   while the new file at the path is read from its start. Delete +
//!   recreate: the same, but a deleted file is closed once drained and quiet
//!   for [`DELETED_FILE_QUIET`], so its disk space is freed.
//! - Order: every poll reads files holding older lines (rotated away, the
//!   copy of a truncated file) before the files their names now lead to, so
//!   each stream's lines come out in order.
//! - A line is handed to the sink once its `\n` arrives, without the `\n`.
//!   An incomplete last line is held (bounded) until completed, or handed over
//!   when the file is let go (deleted, rotated away, truncated with no copy)
//!   or by [`Follower::finish`] at shutdown.
//! - Memory is bounded whatever the file: reads use one 64 KiB buffer, and a
//!   line longer than [`FollowOptions::max_line_bytes`] is cut (flagged
//!   `truncated`) or, with [`FollowOptions::long_lines`], handed over in
//!   pieces. Each open file keeps at most 2 KiB of identity bytes.
//! - Bytes pass through untouched: no UTF-8 decoding on the data path.
//! - Backpressure: a sink returning [`Flow::Pause`] stops reading at once; the
//!   file on disk is the buffer. The next poll resumes at the next line.
//! - Checkpoints: [`Checkpoint::offset`] is just after the last line the sink
//!   accepted, with the content identity; [`Follower::resume`] starts there
//!   after a restart, in the file holding those bytes (for a plain name
//!   rotated while down, found at logrotate's names), so nothing is lost and
//!   nothing repeated. A path whose file was replaced while we were down is
//!   read from its start.
//!   [`CheckpointStore`] saves them atomically in a versioned file and
//!   [`DirLock`] keeps a second process out of its directory.
//! - Files that are not regular files (FIFO, socket, device) are never opened
//!   for reading in a way that blocks: a glob skips them with one warning, a
//!   named path is [`NoticeKind::Unreadable`].
//! - Limits of following by name: a file created and rotated out of every
//!   followed name (or deleted) between two polls is never seen; the order
//!   of lines across streams is only per stream.
//! - Bounded descriptors ([`FollowOptions::max_open_files`], default
//!   `ulimit -n` minus [`OPEN_FILES_RESERVE`]): past the bound, files read
//!   to their end are closed (like the OpenTelemetry Collector's
//!   `max_concurrent_files`) with their position and content identity, and
//!   opened again when their (mtime, size) changes, in the state they were
//!   closed in, so a truncation is told as if they had stayed open; a new
//!   file sharing their first bytes (a copy) opens them again first. Files
//!   that find no descriptor wait ([`Follower::waiting`]) and a poll that
//!   made room returns `Busy`. Limits: a file closed and then deleted is
//!   not read further (a writer's late lines to it are lost); a file that
//!   waits and is deleted before its turn is not read. A copytruncate of a
//!   closed file is told like an open one's (the model test runs it under
//!   the bound too). Checkpoints include closed files.
//! - Glob matches gone and drained are forgotten, and listed by
//!   [`Follower::forgotten`] after that poll, so a sink can drop what it
//!   keeps per path.
//!
//! To start at an offset of a file examined before adding it (e.g. the
//! last N lines), hand the open file over with [`Follower::add_file`]: if
//! the path is replaced right after, the examined file is still read to its
//! end before the new one is read from its start.

pub mod checkpoint_store;
mod dir_stamp;
mod driver;
#[cfg(test)]
mod model_tests;
mod source;
#[cfg(test)]
mod tests;

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

pub use crate::lines::LongLines;
pub use checkpoint_store::{CheckpointError, CheckpointStore, DirLock, LockError};
pub use driver::{Sink, WatcherFactory, run, run_with_watcher};
use source::{ContentStamp, Mark, OpenError, ReadEnd, Relation, Source, content_stamp};

/// Default for [`FollowOptions::max_line_bytes`]: Docker's and Kubernetes'
/// own log line limit is 16 KiB per chunk; 64 KiB keeps a stack trace line.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;
/// Default for [`FollowOptions::poll_interval`]: GNU tail's `-s` default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default for [`FollowOptions::rotate_wait`]: long enough for an
/// application to reopen its log after logrotate's `postrotate` signal.
pub const DEFAULT_ROTATE_WAIT: Duration = Duration::from_secs(5);
/// Default for [`FollowOptions::read_budget`]: how much one file may be read
/// in one poll, so a file being caught up cannot starve the others or delay
/// a shutdown signal.
pub const DEFAULT_READ_BUDGET: u64 = 1024 * 1024;
/// A deleted file is let go once read to its end and quiet (not grown) for
/// this long, or [`FollowOptions::rotate_wait`] if shorter: a writer that
/// has not reopened yet may still append to it (holding it costs no disk
/// space while that writer holds it too), and once quiet, closing it frees
/// the space.
pub const DELETED_FILE_QUIET: Duration = Duration::from_secs(1);
/// Default for [`FollowOptions::event_coalesce`]: at most 100 event-driven
/// polls per second, a delay no log reader notices, while a writer's
/// line-by-line appends no longer cost a poll each.
pub const DEFAULT_EVENT_COALESCE: Duration = Duration::from_millis(10);
/// How long after a copy of a followed file appears the driver reads
/// without waiting for events ([`Follower::truncation_expected`]):
/// logrotate copies, syncs the copy, then truncates, and the lines written
/// after its copy are readable only until then.
pub const COPY_TRUNCATE_WINDOW: Duration = Duration::from_millis(200);
/// How many files opened at their creation wait to be placed
/// ([`Follower::adopt_created`]).
pub const CREATED_MEMORY: usize = 256;
/// How many rotated-and-released files are remembered (see `released`).
pub const RELEASED_MEMORY: usize = 256;
/// Size of the one read buffer every file shares.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// A file's identity: (device, inode), stable across renames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    /// The identity of the file `meta` describes.
    pub fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// Where to start reading a file that is present when its path or glob is
/// added (files appearing later are always read from their start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    Beginning,
    End,
    /// A byte offset, which must be the start of a line (e.g. from
    /// [`crate::tail::last_lines_offset`]); beyond the end means "from 0".
    Offset(u64),
}

/// The follower's knobs; see the `DEFAULT_*` constants.
#[derive(Clone, Debug)]
pub struct FollowOptions {
    /// Longer lines are cut here and flagged `truncated` (at least 1); when
    /// they are split instead, the size of the pieces they are handed over
    /// in. Either way the most of one line held in memory.
    pub max_line_bytes: usize,
    /// What a line longer than `max_line_bytes` becomes ([`LongLines`]):
    /// cut (the default), or handed over in pieces (each but the last
    /// flagged `partial`) for sinks that pass bytes through (`tail`), where
    /// a cut would lose data for nothing. [`LongLines::Runs`] also hands the
    /// whole lines of one read over as one event (`Event::Line::lines` of
    /// them, joined by `\n`): for sinks that copy bytes and only count
    /// lines, where a call per line would be most of the cost of a backlog.
    pub long_lines: LongLines,
    /// The driver's periodic re-check, with or without inotify.
    pub poll_interval: Duration,
    /// Never use inotify: poll every `poll_interval` only.
    pub force_poll: bool,
    /// How long a file rotated away by rename stays open for late writes.
    pub rotate_wait: Duration,
    /// Bytes read from one file in one poll before moving on.
    pub read_budget: u64,
    /// Minimum time between the starts of two polls woken by inotify
    /// events (the periodic tick is not delayed); zero polls on every event.
    pub event_coalesce: Duration,
    /// At most this many files open at once (at least 1). Beyond it, files
    /// read to their end and quiet are closed (their position and content
    /// identity kept, see [`Follower::closed_idle`]) so the others are read
    /// in turn; a closed file is opened again when it changes.
    pub max_open_files: usize,
}

impl Default for FollowOptions {
    fn default() -> Self {
        Self {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            long_lines: LongLines::Cut,
            poll_interval: DEFAULT_POLL_INTERVAL,
            force_poll: false,
            rotate_wait: DEFAULT_ROTATE_WAIT,
            read_budget: DEFAULT_READ_BUDGET,
            event_coalesce: DEFAULT_EVENT_COALESCE,
            max_open_files: default_max_open_files(),
        }
    }
}

/// Descriptors [`default_max_open_files`] leaves for everything but files
/// being followed: the metrics listener and its connections, checkpoint
/// saves (temp file, directory fsync, lock), stdout/stderr, inotify, and the
/// follower's own short looks (a copy's candidates, a checkpoint's owner).
pub const OPEN_FILES_RESERVE: usize = 64;

/// Default for [`FollowOptions::max_open_files`]: the soft `RLIMIT_NOFILE`
/// (`ulimit -n`) minus [`OPEN_FILES_RESERVE`], at least 16; read from
/// `/proc/self/limits` (no unsafe code), 1024 when that cannot be read.
pub fn default_max_open_files() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits
                .lines()
                .find(|line| line.starts_with("Max open files"))?;
            let value = line
                .trim_start_matches("Max open files")
                .split_whitespace()
                .next()?;
            match value {
                "unlimited" => Some(usize::MAX),
                number => number.parse::<usize>().ok(),
            }
        })
        .unwrap_or(1024);
    soft.saturating_sub(OPEN_FILES_RESERVE).max(16)
}

/// A saved read position: `offset` is just after the last line handed to
/// the sink in the file `id`, followed under `path`. With
/// long lines split ([`FollowOptions::long_lines`]) it may be just after a piece of a
/// long line: resuming there hands over the rest of that line as a line.
///
/// Its serde form is the checkpoint file's entry ([`checkpoint_store`]):
/// `{"path":..,"dev":..,"ino":..,"offset":..,"fingerprint":..,"before":..}`,
/// `None` fields left out.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    pub path: PathBuf,
    #[serde(flatten)]
    pub id: FileId,
    pub offset: u64,
    /// A hash of the file's first bytes (up to [`FINGERPRINT_BYTES`], never
    /// past `offset`): ext4 reuses a deleted file's inode number at once, so
    /// after a restart the same id may be another file. `None`: not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<u64>,
    /// A hash of the bytes just before `offset` (up to
    /// [`FINGERPRINT_BYTES`]): with `fingerprint`, the content identity. A
    /// file holding the same bytes up to `offset` under another inode (a
    /// copy, a rename, a decompressed rotation) continues there; a file
    /// whose first bytes match but not these (a long constant header, then
    /// other lines) is another file. `None`: only the first bytes checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
}

impl Checkpoint {
    /// The content identity, when the checkpoint has one.
    fn mark(&self) -> Option<Mark> {
        (self.offset > 0).then_some(())?;
        Some(Mark {
            offset: self.offset,
            head: self.fingerprint?,
            before: self.before,
        })
    }
}

/// How many leading bytes [`Checkpoint::fingerprint`] covers.
pub const FINGERPRINT_BYTES: u64 = 1024;

/// What the follower hands to its sink.
#[derive(Debug)]
pub enum Event<'a> {
    /// One line of `path`, without its `\n`; `truncated` when it was longer
    /// than `max_line_bytes` and cut. `partial`: more of this line follows
    /// (only when [`FollowOptions::long_lines`] splits): `line` is a piece of
    /// at most `max_line_bytes`, and the line's last piece, which may be
    /// empty, has `partial` false. Pieces of other files' lines may come in
    /// between when a long line is still being written.
    /// `lines`: how many lines `line` holds, joined by `\n` (without the
    /// last one's): more than 1 only with [`LongLines::Runs`].
    Line {
        path: &'a Path,
        line: &'a [u8],
        truncated: bool,
        partial: bool,
        lines: usize,
    },
    /// Something happened to the file at `path`.
    Notice { path: &'a Path, kind: NoticeKind },
}

/// What happened to a followed path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeKind {
    /// A file appeared at a path that had none (or a glob matched a new file).
    Appeared,
    /// The path now names another file (rename or delete + create).
    Rotated,
    /// The file shrank below our position: it is read again from its start.
    Truncated,
    /// The path no longer exists.
    Removed,
    /// The path cannot be read (permission, not a regular file, out of
    /// descriptors...): retried on every poll, reported once until it changes.
    Unreadable(ReadFailure),
}

/// Why a path cannot be read: the error's kind and, when the system gave
/// one, its error number. The number matters: EMFILE, ENFILE or EIO have no
/// `io::ErrorKind` of their own ("uncategorized error"); with it, `Display`
/// says what `io::Error` says ("Too many open files (os error 24)").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadFailure {
    pub kind: io::ErrorKind,
    pub raw_os_error: Option<i32>,
}

impl ReadFailure {
    /// A FIFO, socket, device or directory where a file was expected.
    pub fn not_regular() -> Self {
        Self {
            kind: io::ErrorKind::InvalidInput,
            raw_os_error: None,
        }
    }

    pub fn of(error: &io::Error) -> Self {
        Self {
            kind: error.kind(),
            raw_os_error: error.raw_os_error(),
        }
    }

    /// The error again, with the system's message when there is a number.
    pub fn to_io_error(self) -> io::Error {
        match self.raw_os_error {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::from(self.kind),
        }
    }
}

impl From<io::ErrorKind> for ReadFailure {
    fn from(kind: io::ErrorKind) -> Self {
        Self {
            kind,
            raw_os_error: None,
        }
    }
}

impl std::fmt::Display for ReadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == Self::not_regular() {
            return f.write_str("not a regular file");
        }
        self.to_io_error().fmt(f)
    }
}

/// What a sink says after each event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Event accepted; stop reading now (backpressure).
    Pause,
}

/// How a [`Follower::poll_once`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollOutcome {
    /// Everything available was read: wait for a hint or the tick.
    Idle,
    /// A read budget was used up: call again soon (after yielding).
    Busy,
    /// The sink returned [`Flow::Pause`]: call again when it can take more.
    Paused,
}

/// Errors of the follower's own (setup) operations.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("bad glob pattern {pattern:?}: {source}")]
    Pattern {
        pattern: String,
        source: glob::PatternError,
    },
}

type SinkFn<'s> = dyn FnMut(Event<'_>) -> io::Result<Flow> + 's;

/// What we last knew of a path, for notices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// Not polled yet.
    Never,
    Missing,
    Present,
}

struct Retired {
    source: Source,
    deadline: Instant,
    /// When it last grew (or was retired).
    grew: Instant,
}

/// One followed name.
struct Watch {
    path: PathBuf,
    /// What the name of a copy of this file begins with ([`copy_stem`]),
    /// kept: every new file is compared with every watch.
    copy_stem: Option<Box<[u8]>>,
    from_glob: bool,
    /// Where to start the file found at the first poll; `None` afterwards.
    initial: Option<StartAt>,
    seen: Seen,
    current: Option<Source>,
    /// Files rotated away from this name, drained before being let go.
    retired: Vec<Retired>,
    /// A notice decided but not yet handed over (a pause came first).
    notice: Option<NoticeKind>,
    /// The error last reported as `Unreadable`, so it is reported once.
    failing: Option<ReadFailure>,
    /// A file at this path that is not read (compressed and matching no
    /// stream read, or not a regular file): left alone while it stays.
    skipped: Option<Skipped>,
    /// The current file was let go to be placed again (it was empty): no
    /// notice for it.
    reidentify: bool,
    /// The incomplete last line of a file truncated in place, when no copy
    /// holds it: handed over (whole, and whether cut) before anything else.
    orphan: Option<(Vec<u8>, bool)>,
    /// The current file, closed while idle to stay under
    /// [`FollowOptions::max_open_files`]: where it was left and what it held.
    parked: Option<Parked>,
    /// A file at this path waits for a descriptor (the bound is reached).
    waiting: bool,
}

/// A file a glob matched that is not read: compressed and continuing no
/// stream read, or not a regular file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Skipped {
    id: FileId,
    /// A compressed file's stamp when it was skipped: if it changes (gzip
    /// was still writing it), it is looked at again. `None` for a file that
    /// is not regular, skipped whatever is written to it.
    stamp: Option<ContentStamp>,
}

impl Skipped {
    /// Whether `meta` describes the file skipped, unchanged.
    fn still(&self, meta: &Metadata) -> bool {
        FileId::of(meta) == self.id && self.stamp.is_none_or(|stamp| stamp == content_stamp(meta))
    }
}

/// A file closed while read to its end and quiet: opened again by name when
/// its (mtime, size) changes, with the state it had (position, the bytes
/// that identify its stream), so a truncation or a copy is told as if it
/// had stayed open. Another file at the name: it went (renamed or deleted)
/// while closed, and is remembered like a file let go.
struct Parked {
    checkpoint: Checkpoint,
    stamp: ContentStamp,
    /// The source's `older`, `serial`, `head` and `before`.
    older: bool,
    serial: u64,
    head: Vec<u8>,
    before: Vec<u8>,
}

impl Parked {
    /// Opens the file at `path` again if it is still the one closed, in
    /// the state it was closed in.
    fn reopen(&self, path: &Path) -> Option<Source> {
        let (mut source, _) = Source::open(path, self.serial).ok()?;
        if source.id != self.checkpoint.id {
            return None;
        }
        source.seek(self.checkpoint.offset);
        source.at_eof = true;
        source.older = self.older;
        source.head.clone_from(&self.head);
        source.before.clone_from(&self.before);
        source.unidentified = self.head.is_empty();
        Some(source)
    }
}

impl Watch {
    /// The streams read under this name: the files rotated away from it,
    /// then its current file.
    fn streams(&self) -> impl Iterator<Item = &Source> {
        self.retired
            .iter()
            .map(|retired| &retired.source)
            .chain(self.current.as_ref())
    }

    fn streams_mut(&mut self) -> impl Iterator<Item = &mut Source> {
        self.retired
            .iter_mut()
            .map(|retired| &mut retired.source)
            .chain(self.current.as_mut())
    }

    /// Leaves the file `skipped` alone at this name, and under any name it
    /// is renamed to (`skipped_files`).
    fn skip(
        &mut self,
        skipped: Skipped,
        skipped_files: &mut std::collections::HashMap<FileId, Skipped>,
    ) {
        self.skipped = Some(skipped);
        skipped_files.insert(skipped.id, skipped);
    }

    /// Whether a file named `name` may hold a copy of this one
    /// ([`named_like_copy`]).
    fn may_be_copied_to(&self, name: &[u8]) -> bool {
        self.copy_stem
            .as_deref()
            .is_some_and(|stem| name.starts_with(stem))
    }

    fn new(path: PathBuf, from_glob: bool, initial: Option<StartAt>, seen: Seen) -> Self {
        Self {
            copy_stem: copy_stem(&path).map(Box::from),
            path,
            from_glob,
            initial,
            seen,
            current: None,
            retired: Vec::new(),
            notice: None,
            failing: None,
            skipped: None,
            reidentify: false,
            orphan: None,
            parked: None,
            waiting: false,
        }
    }
}

struct GlobSpec {
    pattern: String,
    compiled: glob::Pattern,
    /// The start for matches found at its first poll; `None` afterwards.
    initial: Option<StartAt>,
    /// The one directory it matches in ([`glob_dir`]), or `None` for a
    /// pattern with glob syntax in its directories.
    dir: Option<PathBuf>,
    /// That directory as of a listing that left none of its matches
    /// unfollowed: while it is unchanged, a discovery has nothing to find
    /// there and skips it.
    listed_quiet: Option<dir_stamp::DirStamp>,
}

/// Follows paths and globs; see the module documentation.
pub struct Follower {
    options: FollowOptions,
    watches: Vec<Watch>,
    globs: Vec<GlobSpec>,
    resume: Vec<Checkpoint>,
    /// Rotated files let go while they still had a name (newest last), so
    /// a glob that matches them later does not read them again.
    released: Vec<Checkpoint>,
    buf: Vec<u8>,
    /// The next [`Source::serial`].
    next_serial: u64,
    /// `--exclude`: glob matches that are never followed.
    excludes: Vec<glob::Pattern>,
    /// Paths of `watches`, for discovery in linear time.
    watched_paths: std::collections::HashSet<PathBuf>,
    /// Compressed files skipped because they continue no stream read.
    skipped_compressed: u64,
    /// The files skipped under any name: one renamed is still skipped,
    /// not opened and decompressed again (logrotate renames every `.gz` at
    /// each run, right before it copies and truncates the live file).
    skipped_files: std::collections::HashMap<FileId, Skipped>,
    /// Files opened by the driver the moment inotify said they were
    /// created ([`Follower::adopt_created`]), not placed yet.
    created: Vec<(PathBuf, std::fs::File)>,
    /// Where the next poll starts, so a sink that keeps pausing on one file
    /// cannot starve the others.
    cursor: usize,
    /// Files open now (counted at the start of a poll, then kept up to
    /// date as files are opened), against [`FollowOptions::max_open_files`].
    open_now: usize,
    /// Paths waiting for a descriptor, and files closed while idle, as of
    /// the last refresh phase.
    waiting: usize,
    closed_idle: usize,
    /// Whether reaching the bound on open files was warned about.
    bound_warned: bool,
    /// Where the next search for idle files to close starts (round-robin).
    park_cursor: usize,
    /// What [`Follower::rotated_among`] found at the changed paths, by
    /// watch index, for their refresh in the same call (a lookup each: a
    /// thousand changed files are not a thousand scans of a thousand).
    stat_now: std::collections::HashMap<usize, std::fs::Metadata>,
    /// Counts polls and quick reads ([`Follower::read_currents`]): a file
    /// looked at in this one ([`Source::checked_in`]) needs no second look
    /// before it is read.
    pass: u64,
    /// Glob matches forgotten by the last poll (gone and drained).
    forgotten: Vec<PathBuf>,
    /// Tests: called once after the given number of a poll's steps
    /// (discovery, each refresh, each read), to rename files mid-poll.
    #[cfg(test)]
    test_hook: Option<(usize, Box<dyn FnMut() + Send>)>,
    /// Tests: how many times a glob's matches were listed.
    #[cfg(test)]
    listings: usize,
}

impl Follower {
    pub fn new(mut options: FollowOptions) -> Self {
        options.max_line_bytes = options.max_line_bytes.max(1);
        options.read_budget = options.read_budget.max(1);
        options.max_open_files = options.max_open_files.max(1);
        Self {
            options,
            watches: Vec::new(),
            globs: Vec::new(),
            resume: Vec::new(),
            released: Vec::new(),
            buf: vec![0; READ_BUFFER_BYTES],
            next_serial: 0,
            excludes: Vec::new(),
            watched_paths: std::collections::HashSet::new(),
            skipped_compressed: 0,
            skipped_files: std::collections::HashMap::new(),
            created: Vec::new(),
            cursor: 0,
            open_now: 0,
            waiting: 0,
            closed_idle: 0,
            bound_warned: false,
            park_cursor: 0,
            forgotten: Vec::new(),
            stat_now: std::collections::HashMap::new(),
            pass: 0,
            #[cfg(test)]
            test_hook: None,
            #[cfg(test)]
            listings: 0,
        }
    }

    pub fn options(&self) -> &FollowOptions {
        &self.options
    }

    /// Follows `path` by name. It need not exist yet: it is waited for, and
    /// read from its start when it appears. A file present at the first poll
    /// starts at `start`. Adding a path twice has no effect.
    pub fn add_path(&mut self, path: PathBuf, start: StartAt) {
        if self.watched_paths.contains(&path) {
            return;
        }
        self.push_watch(Watch::new(path, false, Some(start), Seen::Never));
    }

    fn push_watch(&mut self, watch: Watch) {
        self.watched_paths.insert(watch.path.clone());
        self.watches.push(watch);
    }

    fn serial(&mut self) -> u64 {
        self.next_serial += 1;
        self.next_serial
    }

    /// Never follows glob matches that match `pattern` (like Fluent Bit's
    /// `Exclude_Path` and Vector's `exclude`); explicit paths are followed.
    pub fn add_exclude(&mut self, pattern: &str) -> Result<(), FollowError> {
        let compiled = glob::Pattern::new(pattern).map_err(|source| FollowError::Pattern {
            pattern: pattern.to_owned(),
            source,
        })?;
        self.excludes.push(compiled);
        Ok(())
    }

    /// How many compressed files were skipped because they continue no
    /// stream read (rotated files compressed after we read them whole).
    pub fn skipped_compressed(&self) -> u64 {
        self.skipped_compressed
    }

    /// Follows `path` by name, starting with `file`, already open (the file
    /// at `path` now), at `offset` (the start of a line; past the end means
    /// from 0). For a caller that has printed the file's first part itself
    /// (`reader -n 10`): no window in which the path could be replaced
    /// between its look and ours. Adding a path twice has no effect.
    pub fn add_file(&mut self, path: PathBuf, file: std::fs::File, offset: u64) -> io::Result<()> {
        if self.watched_paths.contains(&path) {
            return Ok(());
        }
        let serial = self.serial();
        let mut source = Source::from_file(file, serial)?;
        let size = source.file.metadata()?.len();
        source.seek(if offset <= size { offset } else { 0 });
        let mut watch = Watch::new(path, false, None, Seen::Present);
        watch.current = Some(source);
        self.push_watch(watch);
        Ok(())
    }

    /// Follows every file matching `pattern` (glob syntax), now and later.
    /// Matches present at the first poll start at `start`; later ones are
    /// read from their start.
    pub fn add_glob(&mut self, pattern: &str, start: StartAt) -> Result<(), FollowError> {
        let compiled = glob::Pattern::new(pattern).map_err(|source| FollowError::Pattern {
            pattern: pattern.to_owned(),
            source,
        })?;
        self.globs.push(GlobSpec {
            pattern: pattern.to_owned(),
            compiled,
            initial: Some(start),
            dir: glob_dir(pattern),
            listed_quiet: None,
        });
        Ok(())
    }

    /// Restarts from saved positions: at the first poll, a file whose id has
    /// a checkpoint starts at its offset (from 0 if the file is now shorter);
    /// a path with a checkpoint whose file was replaced is read from its
    /// start. Call after adding paths and globs, before the first poll.
    pub fn resume(&mut self, checkpoints: &[Checkpoint]) {
        self.resume.extend_from_slice(checkpoints);
    }

    /// Re-stats every path, discovers glob matches, detects rotation and
    /// truncation, and hands every complete line available to `sink`.
    /// Errors of one file become [`NoticeKind::Unreadable`]; an `Err` is a
    /// sink error (or an I/O error reading an open file).
    pub fn poll_once(&mut self, sink: &mut SinkFn<'_>) -> io::Result<PollOutcome> {
        self.poll(None, sink)
    }

    /// A [`Follower::poll_once`] of the followed paths `changed` holds
    /// alone (no glob expansion, no stat or read of the others), when every
    /// file is in a plain state: no rotated file being drained under the
    /// name it left, no copy being resolved, no file closed or waiting, no
    /// error, no file created unplaced. A rotated file read under a name of
    /// its own (`app.log.1` through a glob) is plain: its lines still come
    /// before the newer file's in the poll's two passes. Otherwise a full
    /// poll.
    /// For a driver that learns from inotify which files changed: a file
    /// nobody wrote costs nothing here. Name changes (creation, rename,
    /// deletion) need a full poll: they are not for this.
    pub fn poll_changed(
        &mut self,
        changed: &std::collections::HashSet<PathBuf>,
        sink: &mut SinkFn<'_>,
    ) -> io::Result<PollOutcome> {
        let settled = self.settled();
        if settled && changed.is_empty() {
            // Nothing named, nothing pending (a tick while idle): not even
            // a pass over the files.
            self.forgotten.clear();
            return Ok(PollOutcome::Idle);
        }
        if settled && !self.rotated_among(changed) {
            self.poll(Some(changed), sink)
        } else {
            self.stat_now.clear();
            self.poll(None, sink)
        }
    }

    /// Whether a file `changed` names was deleted, created, shrunk or
    /// written for the first time (one stat each, before anything else is
    /// looked at): a
    /// rotation, handled by a full poll, whose order (every name refreshed
    /// in turn before any copy is placed) tells a copy from a new file.
    /// The metadata looked at is kept for the refresh that follows at once
    /// ([`Follower::stat_now`]): one `stat` per changed file, not two.
    fn rotated_among(&mut self, changed: &std::collections::HashSet<PathBuf>) -> bool {
        self.stat_now.clear();
        for (index, watch) in self.watches.iter().enumerate() {
            if !changed.contains(&watch.path) {
                continue;
            }
            let rotated = match &watch.current {
                // The name still leads to the open file: a rename, a
                // creation or a deletion brings a full poll, not this one.
                // So the descriptor is asked, not the path (no path walk
                // per busy file and poll).
                Some(current) => match current.file.metadata() {
                    Ok(meta) => {
                        // An empty file written at last is identified (a
                        // copy, or a file of its own) as a new one is.
                        let rotated = Source::unlinked(&meta)
                            || meta.len() < current.pos
                            || (current.unidentified && meta.len() > 0);
                        self.stat_now.insert(index, meta);
                        rotated
                    }
                    Err(_) => true,
                },
                None => std::fs::metadata(&watch.path).is_ok(),
            };
            if rotated {
                return true;
            }
        }
        false
    }

    /// Whether every file is in the plain state [`Follower::poll_changed`]
    /// needs, and every glob matches in a directory of its own (one whose
    /// changes name the files that appear). Nothing then waits on the clock
    /// (a rotated file's `rotate_wait`, a deleted file's quiet time, a
    /// missing or failing path's next look): a driver told of every change
    /// needs no tick. A copy whose lines were all read in its original
    /// ([`Source::covered`]) is plain too: it may stay for a day. So is an
    /// empty file ([`Source::awaits_first_bytes`]): one in a glob made every
    /// poll a full one, and an idle follower poll every file each second.
    pub fn settled(&self) -> bool {
        self.created.is_empty()
            && self.resume.is_empty()
            && self.cursor == 0
            && self.waiting == 0
            && self
                .globs
                .iter()
                .all(|spec| spec.initial.is_none() && spec.dir.is_some())
            && self.watches.iter().all(|watch| {
                watch.initial.is_none()
                    && watch.seen != Seen::Never
                    && watch.retired.is_empty()
                    && watch.notice.is_none()
                    && watch.failing.is_none()
                    && watch.orphan.is_none()
                    && watch.parked.is_none()
                    && !watch.waiting
                    && !watch.reidentify
                    && watch.current.as_ref().is_none_or(|source| {
                        (source.shadow_of.is_none() || source.covered)
                            && (!source.unidentified || source.awaits_first_bytes())
                            && !source.truncated
                    })
            })
    }

    /// A poll of every watch, or of those whose path `only` holds.
    fn poll(
        &mut self,
        only: Option<&std::collections::HashSet<PathBuf>>,
        sink: &mut SinkFn<'_>,
    ) -> io::Result<PollOutcome> {
        self.forgotten.clear();
        self.pass += 1;
        if only.is_none() {
            self.discover();
        }
        self.step_done();
        let count = self.watches.len();
        let mut outcome = PollOutcome::Idle;
        let now = Instant::now();
        self.open_now = self.open_files();
        self.waiting = 0;
        self.closed_idle = 0;
        let mut chosen: Vec<bool> = self
            .watches
            .iter()
            .map(|watch| only.is_none_or(|only| only.contains(&watch.path)))
            .collect();
        for index in 0..count {
            if chosen.get(index).copied().unwrap_or(true) {
                self.refresh_watch(index, now)?;
            }
            self.step_done();
        }
        let mut every_name = only.is_none();
        if only.is_some() && !self.settled() {
            // A change named turned out to be a rotation (truncated or
            // replaced): the rest of a full poll, so its copy or its new
            // file is found as a full poll would find it.
            every_name = true;
            self.discover();
            for index in 0..self.watches.len() {
                if !chosen.get(index).copied().unwrap_or(false) {
                    self.refresh_watch(index, now)?;
                }
            }
            chosen.clear();
        }
        self.resolve_shadows(&chosen)?;
        self.place_created(now)?;
        let count = self.watches.len();
        for index in 0..count {
            self.truncate(index, now)?;
        }
        // Two passes: files holding older lines (rotated away, the copy of a
        // truncated file) before the files their names now lead to, so each
        // stream's lines come out in order.
        let steps = 2 * count;
        for step in 0..steps {
            let at = (self.cursor + step) % steps.max(1);
            let (index, older) = (at % count, at < count);
            if !chosen.get(index).copied().unwrap_or(true) {
                if !older {
                    self.step_done();
                }
                continue;
            }
            let read = self.read_watch(index, older, now, sink)?;
            if !older {
                self.step_done();
            }
            match read {
                PollOutcome::Paused => {
                    self.cursor = at;
                    return Ok(PollOutcome::Paused);
                }
                PollOutcome::Busy => outcome = PollOutcome::Busy,
                PollOutcome::Idle => {}
            }
        }
        self.cursor = 0;
        if self.waiting == 0 {
            // Checkpoints are for the files present at start; a file that
            // waited for a descriptor is placed with them when it opens. One
            // no name led to may have been renamed while the names were
            // listed (logrotate shifting every rotation one name up): it is
            // remembered as a stream let go, so wherever it shows up it
            // continues where it was left, not read again from its start.
            for checkpoint in std::mem::take(&mut self.resume) {
                remember_released(&mut self.released, checkpoint);
            }
        }
        // Glob matches that are gone and drained are forgotten; if the name
        // comes back it is a new file.
        let watched_paths = &mut self.watched_paths;
        let forgotten = &mut self.forgotten;
        self.watches.retain_mut(|watch| {
            let gone = watch.from_glob
                && watch.seen == Seen::Missing
                && watch.current.is_none()
                && watch.parked.is_none()
                && !watch.waiting
                && watch.retired.is_empty()
                && watch.notice.is_none()
                && watch.skipped.is_none();
            if gone {
                watched_paths.remove(&watch.path);
                forgotten.push(std::mem::take(&mut watch.path));
            }
            !gone
        });
        if every_name && !self.skipped_files.is_empty() {
            // A skipped file no watch holds any more, after every name it
            // could have moved to was looked at, was deleted or went out of
            // every followed name. (A poll of named changes alone moves no
            // skipped file: a change at a skipped name is a full poll.)
            let named: std::collections::HashSet<FileId> = self
                .watches
                .iter()
                .filter_map(|watch| watch.skipped.map(|skipped| skipped.id))
                .collect();
            self.skipped_files.retain(|id, _| named.contains(id));
        }
        if self.waiting > 0 && self.park_idle() {
            // There is room for files waiting: open them now.
            outcome = PollOutcome::Busy;
        }
        Ok(outcome)
    }

    /// Closes files read to their end (not in the middle of a long line,
    /// not part of a copy being resolved; an incomplete last line is read
    /// again when the file is opened again) until the files
    /// waiting fit under [`FollowOptions::max_open_files`], taking them in
    /// turn from where the last call stopped. Returns whether a file
    /// waiting can be opened now (room was made, or there was room already:
    /// files rotated away were let go since).
    fn park_idle(&mut self) -> bool {
        let open = self.open_files();
        if open < self.options.max_open_files {
            return true;
        }
        let need = (open + self.waiting).saturating_sub(self.options.max_open_files);
        let count = self.watches.len();
        let copied: std::collections::HashSet<u64> = self
            .watches
            .iter()
            .flat_map(|watch| watch.streams().filter_map(|source| source.shadow_of))
            .collect();
        let mut closed = 0;
        let mut looked = 0;
        while closed < need && looked < count {
            let index = (self.park_cursor + looked) % count;
            looked += 1;
            let watch = &mut self.watches[index];
            let idle = watch.retired.is_empty()
                && watch.notice.is_none()
                && watch.orphan.is_none()
                && watch.current.as_ref().is_some_and(|source| {
                    // An empty file is not read before it has bytes.
                    (source.at_eof || source.unidentified)
                        && !source.mid_long_line()
                        && source.shadow_of.is_none()
                        && !source.truncated
                        && !copied.contains(&source.serial)
                });
            if !idle {
                continue;
            }
            let Some(source) = watch.current.take() else {
                continue;
            };
            let Ok(meta) = source.file.metadata() else {
                watch.current = Some(source);
                continue;
            };
            let stamp = content_stamp(&meta);
            let mark = source.mark();
            watch.parked = Some(Parked {
                checkpoint: Checkpoint {
                    path: watch.path.clone(),
                    id: source.id,
                    offset: source.line_start,
                    fingerprint: Some(mark.head),
                    before: mark.before,
                },
                stamp,
                older: source.older,
                serial: source.serial,
                head: source.head,
                before: source.before,
            });
            closed += 1;
        }
        self.park_cursor = (self.park_cursor + looked) % count.max(1);
        closed > 0
    }

    /// Files closed while idle to stay under
    /// [`FollowOptions::max_open_files`] (opened again when they change),
    /// as of the last poll.
    pub fn closed_idle(&self) -> usize {
        self.closed_idle
    }

    /// Paths whose file waits for a descriptor, as of the last poll.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Glob matches the last poll forgot (gone and read to their end): a
    /// sink can drop what it keeps per path (metric series, say).
    pub fn forgotten(&self) -> &[PathBuf] {
        &self.forgotten
    }

    /// At shutdown, after `poll_once` returned `Idle` (or the drain deadline
    /// passed): hands over the incomplete last line of every file read to its
    /// end. Lines cut by a deadline in the middle of a file are not split.
    pub fn finish(&mut self, sink: &mut SinkFn<'_>) -> io::Result<PollOutcome> {
        for watch in &mut self.watches {
            let sources = watch
                .retired
                .iter_mut()
                .map(|retired| &mut retired.source)
                .chain(watch.current.as_mut());
            for source in sources {
                if source.at_eof && source.flush_pending(&watch.path, sink)? == Flow::Pause {
                    return Ok(PollOutcome::Paused);
                }
            }
        }
        Ok(PollOutcome::Idle)
    }

    /// The read position of every open file (rotated ones included).
    pub fn checkpoints(&self) -> Vec<Checkpoint> {
        let mut checkpoints = Vec::new();
        for watch in &self.watches {
            // A shadow is a copy whose bytes are read from the original:
            // after a restart it is recognised as a copy again.
            for source in watch.streams().filter(|source| source.shadow_of.is_none()) {
                let mark = source.mark();
                checkpoints.push(Checkpoint {
                    path: watch.path.clone(),
                    id: source.id,
                    offset: source.line_start,
                    fingerprint: Some(mark.head),
                    before: mark.before,
                });
            }
            if let Some(parked) = &watch.parked {
                checkpoints.push(parked.checkpoint.clone());
            }
        }
        checkpoints
    }

    /// A file the driver opened when inotify reported its creation: if it
    /// is gone from its followed name before a poll looked (created and
    /// deleted or renamed away within milliseconds, as a fast delete +
    /// recreate rotation does), it is still read, by this descriptor.
    /// Bounded by [`CREATED_MEMORY`]; beyond it, files are left to polls.
    pub fn adopt_created(&mut self, path: PathBuf, file: std::fs::File) {
        if self.created.len() < CREATED_MEMORY {
            self.created.push((path, file));
        }
    }

    /// Whether a glob matches `path` (its name read lossily, so a name that
    /// is not UTF-8 matches as discovery finds it).
    fn matched_by_glob(&self, path: &Path) -> bool {
        let name = path.to_string_lossy();
        self.globs.iter().any(|spec| spec.compiled.matches(&name))
    }

    /// Places the files [`Follower::adopt_created`] kept that no poll could
    /// see: as rotated-away files of their name, by content (a copy of a
    /// file being read is dropped; one let go continues where it was left).
    fn place_created(&mut self, now: Instant) -> io::Result<()> {
        let mut keep = Vec::new();
        for (path, file) in std::mem::take(&mut self.created) {
            let followed = self.watched_paths.contains(&path)
                || (self.matched_by_glob(&path)
                    && !self
                        .excludes
                        .iter()
                        .any(|exclude| exclude.matches_path(&path)));
            let Ok(meta) = file.metadata() else {
                continue;
            };
            if !followed || !meta.is_file() {
                continue;
            }
            let id = FileId::of(&meta);
            let open = self
                .watches
                .iter()
                .any(|watch| watch.streams().any(|source| source.id == id));
            if open {
                continue;
            }
            if std::fs::metadata(&path).is_ok_and(|now| FileId::of(&now) == id) {
                // Still there: the next refresh opens it by its name.
                keep.push((path, file));
                continue;
            }
            let serial = self.serial();
            let mut source = Source::from_file(file, serial)?;
            if source.head.is_empty() || self.relate_to_open(&mut source, &path)?.is_some() {
                continue;
            }
            let offset = match self.take_released(&mut source, &path)? {
                Some(offset) => offset,
                None if source.is_compressed() => continue,
                None => 0,
            };
            source.seek(offset);
            source.older = true;
            let index = match self.watches.iter().position(|watch| watch.path == path) {
                Some(index) => index,
                None => {
                    self.push_watch(Watch::new(path, true, None, Seen::Missing));
                    self.watches.len() - 1
                }
            };
            self.watches[index].retired.push(Retired {
                source,
                deadline: now,
                grew: now,
            });
        }
        self.created = keep;
        Ok(())
    }

    /// Whether a copy of a file being read appeared just now
    /// ([`COPY_TRUNCATE_WINDOW`]): logrotate's `copytruncate` is under way,
    /// and the lines written until the truncation must be read before it.
    /// A copy of a file no longer read as the newest of its name (a rotated
    /// file compressed, then deleted) announces no truncation.
    pub fn truncation_expected(&self) -> bool {
        let now = Instant::now();
        self.currents().any(|source| {
            source.in_copy_window(now)
                && (source.unidentified
                    || source.shadow_of.is_some_and(|original| {
                        self.currents()
                            .any(|current| current.serial == original && current.is_newest())
                    }))
        })
    }

    /// Each name's current file.
    fn currents(&self) -> impl Iterator<Item = &Source> {
        self.watches
            .iter()
            .filter_map(|watch| watch.current.as_ref())
    }

    /// Whether a followed file is rotated by truncation (copytruncate): its
    /// lines written after logrotate's copy are readable only until the
    /// truncation, so it is read at every change, as GNU `tail -F` does,
    /// rather than in coalesced batches.
    pub fn read_every_change(&self) -> bool {
        self.currents().any(|source| source.truncated_before)
    }

    /// While [`Follower::truncation_expected`]: reads the files whose copy
    /// just appeared (any file, while a new empty file may be a copy not
    /// identified yet) and those rotated by truncation before (read at
    /// every change anyway, [`Follower::read_every_change`]), and nothing
    /// else (no glob, no stat of other files), so the driver can look again
    /// at every write until logrotate truncates them.
    pub fn read_originals(&mut self, sink: &mut SinkFn<'_>) -> io::Result<PollOutcome> {
        let copied: std::collections::HashSet<u64> = self
            .currents()
            .filter_map(|source| source.shadow_of)
            .collect();
        let any_copy = self.currents().any(|source| source.unidentified);
        self.read_currents(sink, |current| {
            any_copy || copied.contains(&current.serial) || current.truncated_before
        })
    }

    /// Between two full polls: reads the files rotated by truncation
    /// ([`Follower::read_every_change`]) at once, nothing else.
    pub fn read_truncated_before(&mut self, sink: &mut SinkFn<'_>) -> io::Result<PollOutcome> {
        self.read_currents(sink, |current| current.truncated_before)
    }

    /// Reads the current files `pick` chooses among those read as the
    /// newest of their name (no copy, no older file, no pending truncation).
    fn read_currents(
        &mut self,
        sink: &mut SinkFn<'_>,
        pick: impl Fn(&Source) -> bool,
    ) -> io::Result<PollOutcome> {
        let mut outcome = PollOutcome::Idle;
        self.pass += 1;
        for index in 0..self.watches.len() {
            let chosen = self.watches[index]
                .current
                .as_ref()
                .is_some_and(|current| current.is_newest() && pick(current));
            if chosen {
                match self.read_current(index, sink)? {
                    PollOutcome::Idle => {}
                    PollOutcome::Paused => return Ok(PollOutcome::Paused),
                    PollOutcome::Busy => outcome = PollOutcome::Busy,
                }
            }
        }
        Ok(outcome)
    }

    /// The directories whose changes should wake the driver: each followed
    /// path's parent and each glob's fixed leading directory.
    pub fn watched_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .watches
            .iter()
            .map(|watch| parent_dir(&watch.path))
            .chain(self.globs.iter().map(|spec| glob_base(&spec.pattern)))
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// How many files are open (followed plus rotated ones being drained).
    pub fn open_files(&self) -> usize {
        self.watches
            .iter()
            .map(|watch| watch.retired.len() + usize::from(watch.current.is_some()))
            .sum()
    }

    /// Bytes the open files hold past what was handed to the sink (each
    /// one's size when last looked at less its read position): how far
    /// behind the follower is, for a lag gauge. As of the last poll, and
    /// without a syscall: a `stat` per file every few seconds was the whole
    /// CPU of an idle aggregator following a thousand files. Files closed
    /// while idle were read to their end; compressed files and copies read
    /// through their original are not counted (their size is not their
    /// content's).
    pub fn unread_bytes(&self) -> u64 {
        self.watches
            .iter()
            .flat_map(Watch::streams)
            .filter(|source| source.shadow_of.is_none() && !source.is_compressed())
            .map(|source| {
                source
                    .len_seen
                    .max(source.pos)
                    .saturating_sub(source.line_start)
            })
            .sum()
    }

    /// How many names are followed (paths, and glob matches so far).
    pub fn names_followed(&self) -> usize {
        self.watches.len()
    }

    /// The followed paths (explicit ones and current glob matches).
    pub fn paths(&self) -> Vec<&Path> {
        self.watches
            .iter()
            .map(|watch| watch.path.as_path())
            .collect()
    }

    /// Adds a watch for every new glob match.
    fn discover(&mut self) {
        for spec_index in 0..self.globs.len() {
            let initial = self.globs[spec_index].initial.take();
            // The safety net's full poll every minute, and every tick when
            // polling, would otherwise read a directory of a thousand files
            // to find nothing: a stamp of it is one `stat`.
            let spec = &mut self.globs[spec_index];
            let listed_at = std::time::SystemTime::now();
            let stamp = spec.dir.as_deref().and_then(dir_stamp::DirStamp::of);
            if stamp.is_some() && stamp == spec.listed_quiet {
                continue;
            }
            spec.listed_quiet = None;
            let Some(paths) = expand_glob(&spec.pattern, spec.dir.as_deref()) else {
                continue;
            };
            #[cfg(test)]
            {
                self.listings += 1;
            }
            let mut found: Vec<PathBuf> = paths
                .into_iter()
                .filter(|path| !self.watched_paths.contains(path))
                .filter(|path| {
                    !self
                        .excludes
                        .iter()
                        .any(|exclude| exclude.matches(&path.to_string_lossy()))
                })
                .collect();
            if found.is_empty() {
                self.globs[spec_index].listed_quiet =
                    stamp.filter(|stamp| stamp.vouches_after(listed_at));
                continue;
            }
            found.sort();
            let open: std::collections::HashSet<FileId> = self
                .watches
                .iter()
                .filter_map(|watch| watch.current.as_ref().map(|source| source.id))
                .collect();
            for path in found {
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if meta.is_dir() {
                    continue;
                }
                if open.contains(&FileId::of(&meta)) {
                    // A file read under another name: a link, skipped again
                    // next poll, or renamed here, which that name retires
                    // this poll (its older lines are read first) and this
                    // one takes over at the next.
                    continue;
                }
                let seen = if initial.is_some() {
                    Seen::Never
                } else {
                    Seen::Missing
                };
                // Which file it is, and where to start in it, is decided by
                // identity when it is opened (`place`).
                self.push_watch(Watch::new(path, true, initial, seen));
            }
        }
    }

    /// Tests: runs the hook when its step comes.
    fn step_done(&mut self) {
        #[cfg(test)]
        match &mut self.test_hook {
            Some((0, _)) => {
                if let Some((_, mut hook)) = self.test_hook.take() {
                    hook();
                }
            }
            Some((steps, _)) => *steps -= 1,
            None => {}
        }
    }

    /// Whether a watch other than `index` reads the file `id` as its
    /// current file and its path still names it: a second name (a hard
    /// link), not a rename.
    fn linked_elsewhere(&self, id: FileId, index: usize) -> bool {
        self.watches.iter().enumerate().any(|(other, watch)| {
            other != index
                && watch.current.as_ref().is_some_and(|source| source.id == id)
                && std::fs::metadata(&watch.path).is_ok_and(|meta| FileId::of(&meta) == id)
        })
    }

    /// The open source reading the file `id` under another name (another
    /// watch's current file, or any watch's rotated-away one), taken out of
    /// its place. Only a file that still has a name: a deleted file's inode
    /// number may already be the new file's.
    fn take_open(&mut self, id: FileId, index: usize) -> Option<Source> {
        let named = |source: &Source| {
            source.id == id
                && source
                    .file
                    .metadata()
                    .is_ok_and(|meta| !Source::unlinked(&meta))
        };
        for (other, watch) in self.watches.iter_mut().enumerate() {
            if other != index && watch.current.as_ref().is_some_and(named) {
                return watch.current.take();
            }
            if let Some(at) = watch.retired.iter().position(|r| named(&r.source)) {
                return Some(watch.retired.remove(at).source);
            }
        }
        None
    }

    /// Opens again the files closed while idle whose first bytes `source`
    /// (just opened at watch `index`) shares: it may be their copy
    /// (copytruncate), which is told only against an open stream. May go a
    /// few files over the bound for a poll; [`OPEN_FILES_RESERVE`] has room.
    /// The file itself, renamed here while closed: where it was left (its
    /// record is taken).
    fn reopen_related(&mut self, source: &mut Source, index: usize) -> io::Result<Option<u64>> {
        for other in 0..self.watches.len() {
            let watch = &mut self.watches[other];
            let Some(parked) = &watch.parked else {
                continue;
            };
            if other != index && parked.checkpoint.id == source.id {
                // Closed before anything was read from it: nothing to tell
                // it by, and a new file may have its inode number (a copy,
                // placed by its content next).
                let Some(mark) = parked.checkpoint.mark() else {
                    continue;
                };
                let offset = source.continues_mark(&mark)?;
                if offset.is_some() {
                    watch.parked = None;
                    return Ok(offset);
                }
                continue;
            }
            let common = parked.head.len().min(source.head.len());
            if other == index || common == 0 || parked.head[..common] != source.head[..common] {
                continue;
            }
            if let Some(reopened) = parked.reopen(&watch.path) {
                watch.current = Some(reopened);
                watch.parked = None;
                self.open_now += 1;
            }
        }
        Ok(None)
    }

    /// Where a released stream was left, if `source` holds its bytes up to
    /// there (whatever its inode); the record is used up.
    fn take_released(&mut self, source: &mut Source, path: &Path) -> io::Result<Option<u64>> {
        for at in (0..self.released.len()).rev() {
            let record = &self.released[at];
            if !named_like_copy(path, &record.path) {
                continue;
            }
            // A record at offset 0 has no content to recognise: an inode
            // number reused by a new file says nothing.
            let Some(mark) = record.mark() else {
                continue;
            };
            let offset = source.continues_mark(&mark)?;
            if offset.is_some() {
                self.released.remove(at);
                return Ok(offset);
            }
        }
        Ok(None)
    }

    /// Whether a file at `path` may be the copy of an open stream that has
    /// bytes to copy: one under a name [`named_like_copy`] relates to it,
    /// or one rotated away from `path` itself (a rename or delete rotation's
    /// new file).
    fn copy_source_open(&self, path: &Path) -> bool {
        let Some(name) = file_name_bytes(path) else {
            return false;
        };
        self.watches
            .iter()
            .filter(|watch| watch.may_be_copied_to(name))
            .flat_map(Watch::streams)
            .any(|stream| !stream.head.is_empty())
    }

    /// How `source` (just opened, another inode than every open file)
    /// relates to the streams being read: the first one it holds bytes of,
    /// with whether that stream's own file still holds them.
    fn relate_to_open(
        &mut self,
        source: &mut Source,
        path: &Path,
    ) -> io::Result<Option<(u64, Relation, bool)>> {
        let Some(name) = file_name_bytes(path) else {
            return Ok(None);
        };
        for watch in &mut self.watches {
            if !watch.may_be_copied_to(name) {
                continue;
            }
            for stream in watch.streams_mut() {
                let truncated = stream.truncated;
                // A truncated stream whose unread bytes another file took
                // over (its copy) is that file's now.
                let taken_over = stream.truncated && stream.continued;
                if stream.shadow_of.is_some() || taken_over {
                    continue;
                }
                // Its first bytes as they are now, even if not read yet.
                if !stream.truncated && (stream.head.len() as u64) < FINGERPRINT_BYTES {
                    stream.extend_head()?;
                }
                if !source.shares_head(stream) {
                    continue;
                }
                match source.relate_to(stream, truncated)? {
                    (Relation::Unrelated, _) => {}
                    (relation, intact) => {
                        if !intact && matches!(relation, Relation::Continues(_)) {
                            stream.continued = true;
                        }
                        return Ok(Some((stream.serial, relation, intact)));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Copies found while their original was intact, once it is not (or is
    /// gone): a copy continues the stream where it was left (the lines
    /// written between our last read and the truncation are only there),
    /// or was all read already; one that grew apart is a file of its own.
    /// A covered copy ([`Source::covered`]) is looked at again only by a
    /// poll that looks at its name (`chosen`, empty when every name is):
    /// its original growing keeps it covered, and its original truncated or
    /// replaced makes the poll look at every name.
    fn resolve_shadows(&mut self, chosen: &[bool]) -> io::Result<()> {
        // Where the shadows are: a watch's current file (`None`) or one of
        // its rotated-away files (a copy whose name went, e.g. compressed).
        let mut places: Vec<(usize, Option<usize>)> = Vec::new();
        for (index, watch) in self.watches.iter().enumerate() {
            let looked_at = chosen.get(index).copied().unwrap_or(true);
            if watch
                .current
                .as_ref()
                .is_some_and(|s| s.shadow_of.is_some() && (looked_at || !s.covered))
            {
                places.push((index, None));
            }
            for (at, retired) in watch.retired.iter().enumerate() {
                if retired.source.shadow_of.is_some() {
                    places.push((index, Some(at)));
                }
            }
        }
        for (index, slot) in places {
            let watch = &mut self.watches[index];
            let (mut copy, retired) = match slot {
                None => match watch.current.take() {
                    Some(copy) => (copy, None),
                    None => continue,
                },
                Some(at) => {
                    let retired = watch.retired.remove(at);
                    (retired.source, Some((at, retired.deadline, retired.grew)))
                }
            };
            let serial = copy.shadow_of.unwrap_or_default();
            let path = self.watches[index].path.clone();
            let decided = self.resolve_shadow(&mut copy, &path, serial)?;
            if let Some(offset) = decided {
                tracing::debug!(path = %self.watches[index].path.display(), offset, "copy resolved");
                copy.shadow_of = None;
                copy.older = offset > 0;
                copy.seek(offset);
            }
            let watch = &mut self.watches[index];
            match retired {
                None => watch.current = Some(copy),
                Some((at, deadline, grew)) => watch.retired.insert(
                    at,
                    Retired {
                        source: copy,
                        deadline,
                        grew,
                    },
                ),
            }
        }
        Ok(())
    }

    /// Where the copy of stream `serial` is to be read from, once it is
    /// decided (`None`: its original is still intact, it stays a copy).
    fn resolve_shadow(
        &mut self,
        copy: &mut Source,
        path: &Path,
        serial: u64,
    ) -> io::Result<Option<u64>> {
        for watch in &mut self.watches {
            for stream in watch.streams_mut() {
                let truncated = stream.truncated;
                if stream.serial != serial || stream.shadow_of.is_some() {
                    continue;
                }
                let intact = !truncated && stream.intact()?;
                if intact {
                    let copy_len = copy.content_len()?;
                    let their_len = stream.file.metadata()?.len();
                    // Matched while short (two files may begin alike, a
                    // timestamp say): as both grow, their first bytes must
                    // stay the same.
                    copy.extend_head()?;
                    stream.extend_head()?;
                    // More than the original ever had, or other bytes: not
                    // a copy after all, a file of its own.
                    let grew_apart = !copy.shares_head(stream)
                        || (!copy.is_compressed() && copy_len.is_some_and(|len| len > their_len));
                    // Truncated while compared (logrotate truncates right
                    // after copying): the lengths and bytes compared were
                    // the new file's; the copy is placed as below.
                    if !grew_apart || stream.intact()? {
                        copy.covered = !grew_apart
                            && copy_len.is_some_and(|len| len <= stream.line_start)
                            && !copy.in_copy_window(Instant::now());
                        return Ok(grew_apart.then_some(0));
                    }
                }
                let offset = stream.line_start;
                return Ok(match copy.content_len()? {
                    Some(len) if len < offset => Some(len),
                    _ => {
                        stream.continued = true;
                        Some(offset)
                    }
                });
            }
        }
        // The stream was let go: a copy continues where it was left, or
        // holds only bytes already read (it begins like a stream let go:
        // at its end); one that does not begin like any was never a copy
        // (it only began like one while short) and is read from its start.
        if let Some(offset) = self.take_released(copy, path)? {
            return Ok(Some(offset));
        }
        let begins_like_one = self
            .released
            .iter()
            .filter_map(Checkpoint::mark)
            .any(|mark| {
                let head_len = mark.offset.min(FINGERPRINT_BYTES) as usize;
                copy.head.len() >= head_len && source::hash(&copy.head[..head_len]) == mark.head
            });
        Ok(Some(if begins_like_one {
            copy.content_len()?.unwrap_or(0)
        } else {
            0
        }))
    }

    /// Phase 1 for one path: what does the name point at now? (Events are
    /// hints: stat.) Opens new files and retires replaced ones, before any
    /// reading, so even a poll that pauses at once holds every file that
    /// exists now: one that is deleted next is still read.
    fn refresh_watch(&mut self, index: usize, now: Instant) -> io::Result<()> {
        let options = &self.options;
        let known = self.stat_now.remove(&index);
        let watch = &mut self.watches[index];
        let initial = watch.initial.take();
        let mut open_new = false;
        watch.waiting = false;
        let meta = match known {
            Some(meta) => Ok(meta),
            None => std::fs::metadata(&watch.path),
        };
        match meta {
            Ok(meta) if meta.is_dir() => {
                report_failure(watch, io::ErrorKind::IsADirectory.into());
            }
            Ok(meta) if watch.skipped.is_some_and(|skipped| skipped.still(&meta)) => {}
            Ok(meta)
                if watch.current.is_none()
                    && watch.parked.is_none()
                    && let Some(skipped) = self
                        .skipped_files
                        .get(&FileId::of(&meta))
                        .filter(|skipped| skipped.still(&meta)) =>
            {
                // Skipped under another name, renamed here.
                watch.skipped = Some(*skipped);
            }
            Ok(meta) => {
                let id = FileId::of(&meta);
                watch.skipped = None;
                let stamp = content_stamp(&meta);
                if let Some(parked) = watch.parked.as_ref().filter(|_| watch.current.is_none()) {
                    if parked.checkpoint.id != id {
                        // Renamed or deleted while closed.
                        if let Some(parked) = watch.parked.take() {
                            remember_released(&mut self.released, parked.checkpoint);
                        }
                    } else if parked.stamp == stamp {
                        // Unchanged: stays closed.
                        self.closed_idle += 1;
                        return Ok(());
                    } else if self.open_now >= options.max_open_files {
                        watch.initial = initial;
                        watch.waiting = true;
                        self.waiting += 1;
                        self.closed_idle += 1;
                        return Ok(());
                    } else if let Some(source) = parked.reopen(&watch.path) {
                        self.open_now += 1;
                        watch.current = Some(source);
                        watch.parked = None;
                    } else if let Some(parked) = watch.parked.take() {
                        remember_released(&mut self.released, parked.checkpoint);
                    }
                }
                match &mut watch.current {
                    Some(current) => {
                        watch.failing = None;
                        // The name leads to the open file: what it says is
                        // what the descriptor would (an inode's number is
                        // not reused while it is open), one `stat` less.
                        let fd_meta = if current.id == id {
                            meta
                        } else {
                            current.file.metadata()?
                        };
                        // A deleted file whose inode number was reused by
                        // the new file at the path is still another file.
                        let replaced = current.id != id || Source::unlinked(&fd_meta);
                        if !replaced {
                            current.len_seen = fd_meta.len();
                            // Compared with what we read just below: the
                            // read in this pass needs no `fstat` to know the
                            // file was not truncated and written again.
                            current.checked_in = self.pass;
                        }
                        if !replaced && current.turned_out_compressed()? {
                            current.unidentified = true;
                        }
                        if replaced {
                            retire(watch, now + options.rotate_wait);
                            open_new = true;
                        } else if !current.unidentified
                            && !current.is_compressed()
                            && (current.head.len() as u64) < FINGERPRINT_BYTES
                            && fd_meta.len() > current.head.len() as u64
                            && current.shadow_of.is_none()
                            && fd_meta.len() >= current.pos
                            && !current.replaced_in_place()?
                        {
                            // Short first bytes, more written: a copy made
                            // before we read them is still recognised.
                            current.extend_head()?;
                        } else if current.unidentified && fd_meta.len() > 0 {
                            // Empty when opened (a copy or a compressed file
                            // being created): who it is shows only now.
                            watch.current = None;
                            self.open_now = self.open_now.saturating_sub(1);
                            watch.reidentify = true;
                            open_new = true;
                        } else if current.shadow_of.is_none()
                            && !current.is_compressed()
                            && (fd_meta.len() < current.pos
                                || (current.modified_since_check(&fd_meta)
                                    && !current.intact_with(&fd_meta)?))
                        {
                            // Shrunk; one written past our position again
                            // is found by its first bytes before it is read.
                            current.truncated = true;
                        }
                    }
                    None => open_new = true,
                }
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                if watch.current.is_some() {
                    retire(watch, now + options.rotate_wait);
                    watch.notice = Some(NoticeKind::Removed);
                }
                if let Some(parked) = watch.parked.take() {
                    // Renamed out of this name, maybe into another a glob
                    // matches: remembered like a file let go.
                    remember_released(&mut self.released, parked.checkpoint);
                    watch.notice = Some(NoticeKind::Removed);
                }
                watch.skipped = None;
                watch.seen = Seen::Missing;
            }
            Err(error) => report_failure(watch, ReadFailure::of(&error)),
        }

        if open_new && self.open_now >= options.max_open_files {
            // No descriptor to spare: wait for files read to their end to
            // be closed (end of this poll), then open.
            watch.initial = initial;
            watch.waiting = true;
            self.waiting += 1;
            if !self.bound_warned {
                self.bound_warned = true;
                tracing::warn!(
                    max_open_files = options.max_open_files,
                    "more files than may be open at once: files read to their end are closed and opened again when they change"
                );
            }
            return Ok(());
        }
        if open_new {
            self.next_serial += 1;
            match Source::open(&watch.path, self.next_serial) {
                Ok((source, meta)) => {
                    let serial = source.serial;
                    self.place(index, source, meta.len(), initial)?;
                    // Counted only if kept (not a second name of a file
                    // open, nor skipped), or a waiting file never gets room.
                    let kept = self.watches[index]
                        .current
                        .as_ref()
                        .is_some_and(|current| current.serial == serial);
                    self.open_now += usize::from(kept);
                }
                Err(OpenError::Io(error)) if error.kind() == io::ErrorKind::NotFound => {
                    watch.seen = Seen::Missing;
                }
                Err(OpenError::Io(error)) => report_failure(watch, ReadFailure::of(&error)),
                Err(OpenError::NotRegular(kind)) => {
                    if let Ok(meta) = std::fs::metadata(&watch.path) {
                        let skipped = Skipped {
                            id: FileId::of(&meta),
                            stamp: None,
                        };
                        watch.skip(skipped, &mut self.skipped_files);
                    }
                    if watch.from_glob {
                        tracing::warn!(path = %watch.path.display(), "skipping {kind}: only regular files are followed");
                        watch.seen = Seen::Missing;
                    } else {
                        report_failure(watch, ReadFailure::not_regular());
                    }
                }
            }
        } else if watch.seen == Seen::Never {
            watch.seen = if watch.current.is_some() {
                Seen::Present
            } else {
                Seen::Missing
            };
        }
        Ok(())
    }

    /// Makes `source`, just opened at watch `index`'s path (`size` bytes
    /// then), its current file, by identity: a file already open under
    /// another name continues there (the new descriptor is dropped); one
    /// holding the bytes of a stream being read is a copy (read once its
    /// original is truncated or gone) or continues it (the original was
    /// truncated already); one holding the bytes of a stream let go, or of a
    /// checkpoint, continues where it was left; only a file never seen
    /// starts at the watch's start or its beginning. A compressed file is
    /// never read from its beginning: it continues a stream or is skipped.
    fn place(
        &mut self,
        index: usize,
        mut source: Source,
        size: u64,
        initial: Option<StartAt>,
    ) -> io::Result<()> {
        let id = source.id;
        let path = self.watches[index].path.clone();
        if self.linked_elsewhere(id, index) {
            let watch = &mut self.watches[index];
            if watch.seen == Seen::Never {
                watch.seen = Seen::Missing;
            }
            return Ok(());
        }
        if let Some(mut open) = self.take_open(id, index) {
            // Not a new file: only say that this name's previous one went.
            open.older = true;
            open.unidentified = false;
            let watch = &mut self.watches[index];
            if watch.seen == Seen::Present && !watch.retired.is_empty() {
                watch.notice = Some(NoticeKind::Rotated);
            }
            watch.current = Some(open);
            watch.seen = Seen::Present;
            watch.failing = None;
            return Ok(());
        }
        let mut start = self.reopen_related(&mut source, index)?;
        if start.is_some() {
            // Renamed here while closed: not a new file.
            source.older = true;
        }
        let related = match start {
            Some(_) => None,
            None => self.relate_to_open(&mut source, &path)?,
        };
        match related {
            Some((serial, Relation::Continues(offset), true)) => {
                source.shadow_of = Some(serial);
                source.shadow_since = Some(Instant::now());
                start = Some(offset);
            }
            Some((_, Relation::Continues(offset), false)) => {
                source.older = true;
                start = Some(offset);
            }
            Some((serial, Relation::Covered, true)) => {
                // A copy being written (logrotate fills it progressively):
                // its bytes are read from the original.
                source.shadow_of = Some(serial);
                source.shadow_since = Some(Instant::now());
                start = source.content_len()?;
            }
            Some((_, Relation::Covered, false)) => start = source.content_len()?,
            _ => {}
        }
        if start.is_none() {
            start = self.take_released(&mut source, &path)?;
            source.older = start.is_some();
        }
        let mut notice_shrunk = false;
        let mut replaced = false;
        if start.is_none() {
            let (offset, shrunk, was_replaced) =
                self.take_checkpoint(&mut source, index, size, initial.is_some())?;
            start = offset;
            notice_shrunk = shrunk;
            replaced = was_replaced;
        }
        if replaced {
            self.find_rotated_away(index, Instant::now())?;
        }
        // Asked before `watch` borrows the watches.
        let could_be_copy = source.head.is_empty() && self.copy_source_open(&path);
        let watch = &mut self.watches[index];
        let offset = match start {
            Some(offset) => offset,
            None if source.is_compressed() => {
                watch.reidentify = false;
                // Rotated and compressed after we read it whole, or never
                // ours: its text was read from the uncompressed file.
                self.skipped_compressed += 1;
                tracing::info!(
                    path = %watch.path.display(),
                    "skipping compressed file: it continues no file read"
                );
                let skipped = Skipped {
                    id,
                    stamp: Some(content_stamp(&source.file.metadata()?)),
                };
                watch.skip(skipped, &mut self.skipped_files);
                if watch.seen == Seen::Never {
                    watch.seen = Seen::Missing;
                }
                return Ok(());
            }
            None if replaced => 0,
            None => match initial.unwrap_or(StartAt::Beginning) {
                StartAt::Beginning => 0,
                StartAt::End => size,
                StartAt::Offset(offset) if offset <= size => offset,
                StartAt::Offset(_) => 0,
            },
        };
        let continued = start.is_some();
        source.unidentified = !continued && source.head.is_empty();
        if source.unidentified && could_be_copy {
            // Empty and new: maybe logrotate's copy, about to be filled
            // (then the original is truncated). Only when there is a file
            // it could be the copy of: an application's empty log found at
            // start (a thousand of them through a glob) is no rotation.
            source.shadow_since = Some(Instant::now());
        }
        tracing::debug!(
            path = %watch.path.display(),
            offset,
            shadow = source.shadow_of.is_some(),
            older = source.older,
            compressed = source.is_compressed(),
            "placed"
        );
        source.seek(offset);
        let reidentified = std::mem::take(&mut watch.reidentify);
        watch.notice = match (watch.seen, watch.retired.is_empty()) {
            (_, _) if reidentified || (continued && !notice_shrunk) => watch.notice,
            (Seen::Never, _) if notice_shrunk => Some(NoticeKind::Truncated),
            (Seen::Never, _) if replaced => Some(NoticeKind::Rotated),
            (Seen::Never, _) => watch.notice,
            (Seen::Present, false) => Some(NoticeKind::Rotated),
            (_, _) => Some(NoticeKind::Appeared),
        };
        watch.current = Some(source);
        watch.seen = Seen::Present;
        watch.failing = None;
        Ok(())
    }

    /// At a restart, the path's checkpointed file was replaced while we were
    /// down (rotated): it is looked for by its content at logrotate's usual
    /// names ([`copy_candidates`], those no glob follows), and read from the
    /// checkpoint to its end first, so following a plain name loses nothing
    /// across a rotation during a restart.
    fn find_rotated_away(&mut self, index: usize, now: Instant) -> io::Result<()> {
        let path = self.watches[index].path.clone();
        let candidates: Vec<PathBuf> = copy_candidates(&path)
            .into_iter()
            .filter(|candidate| !self.matched_by_glob(candidate))
            .collect();
        let marks: Vec<(usize, Mark)> = self
            .resume
            .iter()
            .enumerate()
            .filter(|(_, checkpoint)| checkpoint.path == path)
            .filter_map(|(at, checkpoint)| Some((at, checkpoint.mark()?)))
            .collect();
        for (at, mark) in marks.into_iter().rev() {
            for candidate in &candidates {
                self.next_serial += 1;
                let Ok((mut source, _)) = Source::open(candidate, self.next_serial) else {
                    continue;
                };
                if let Some(offset) = source.continues_mark(&mark)? {
                    source.seek(offset);
                    source.older = true;
                    self.resume.remove(at);
                    self.watches[index].retired.push(Retired {
                        source,
                        deadline: now,
                        grew: now,
                    });
                    break;
                }
            }
        }
        Ok(())
    }

    /// A restart's saved position for `source`: its own checkpoint (same
    /// inode and bytes), or a checkpoint whose bytes it holds under another
    /// inode (renamed or copied while we were down) when that checkpoint's
    /// own file is not there any more. Returns the offset, whether the
    /// file's own checkpoint was past its end (truncated while down), and
    /// whether the watch's path had a checkpoint of another file (replaced
    /// while down: read from its start).
    fn take_checkpoint(
        &mut self,
        source: &mut Source,
        index: usize,
        size: u64,
        first_poll: bool,
    ) -> io::Result<(Option<u64>, bool, bool)> {
        let id = source.id;
        let path = &self.watches[index].path;
        let shrunk = self
            .resume
            .iter()
            .any(|checkpoint| checkpoint.id == id && checkpoint.offset > size);
        let mut found = None;
        for (at, checkpoint) in self.resume.iter().enumerate() {
            let same_inode = checkpoint.id == id;
            let offset = match checkpoint.mark() {
                Some(mark)
                    if same_inode
                        || (!owner_present(checkpoint)
                            && named_like_copy(path, &checkpoint.path)) =>
                {
                    source.continues_mark(&mark)?
                }
                Some(_) => None,
                None if same_inode
                    && checkpoint.fingerprint.is_none()
                    && checkpoint.offset <= size =>
                {
                    Some(checkpoint.offset)
                }
                // Nothing read of it: a text file starts at 0. A compressed
                // one was empty when saved (gzip had just created it): what
                // its content continues tells where it starts, as for a file
                // never seen (a rotation already read is not read again).
                None if same_inode && checkpoint.offset == 0 && !source.is_compressed() => Some(0),
                None => None,
            };
            if let Some(offset) = offset {
                found = Some((at, offset, same_inode));
                break;
            }
        }
        if let Some((at, offset, same_inode)) = found {
            // A checkpoint is used once: a file found again later (under a
            // glob, say) continues from where we are now.
            self.resume.remove(at);
            source.older = !same_inode;
            return Ok((Some(offset), false, false));
        }
        let replaced = first_poll
            && self
                .resume
                .iter()
                .any(|checkpoint| &checkpoint.path == path);
        Ok((None, shrunk, replaced))
    }

    /// Phase 2 for one path, in two passes. Older (`older`): a truncation
    /// (with the copy that holds the lines written before it), then the
    /// files rotated away and a current file holding older lines. Newer: the
    /// notice, then the current file's new lines.
    fn read_watch(
        &mut self,
        index: usize,
        older: bool,
        now: Instant,
        sink: &mut SinkFn<'_>,
    ) -> io::Result<PollOutcome> {
        if older {
            let mut outcome = PollOutcome::Idle;
            let watch = &mut self.watches[index];
            if let Some((line, truncated)) = watch.orphan.take() {
                let event = Event::Line {
                    path: &watch.path,
                    line: &line,
                    truncated,
                    partial: false,
                    lines: 1,
                };
                if sink(event)? == Flow::Pause {
                    return Ok(PollOutcome::Paused);
                }
            }
            let retired = self.read_retired(index, now, sink)?;
            if retired != PollOutcome::Idle {
                outcome = retired;
            }
            if outcome == PollOutcome::Paused {
                return Ok(outcome);
            }
            let current_older = self.watches[index]
                .current
                .as_ref()
                .is_some_and(|current| current.older && current.shadow_of.is_none());
            if !current_older {
                return Ok(outcome);
            }
            let read = self.read_current(index, sink)?;
            return Ok(if read == PollOutcome::Idle {
                outcome
            } else {
                read
            });
        }
        let watch = &mut self.watches[index];
        if let Some(kind) = watch.notice.take() {
            if sink(Event::Notice {
                path: &watch.path,
                kind,
            })? == Flow::Pause
            {
                return Ok(PollOutcome::Paused);
            }
        }
        let current_newer = watch
            .current
            .as_ref()
            .is_some_and(|current| !current.older && current.shadow_of.is_none());
        if current_newer {
            return self.read_current(index, sink);
        }
        Ok(PollOutcome::Idle)
    }

    fn read_current(&mut self, index: usize, sink: &mut SinkFn<'_>) -> io::Result<PollOutcome> {
        let options = &self.options;
        let buf = &mut self.buf;
        let watch = &mut self.watches[index];
        let Some(current) = watch.current.as_mut() else {
            return Ok(PollOutcome::Idle);
        };
        if current.unidentified || current.turned_out_compressed()? {
            // Nothing to identify it by yet, or a compressed file that was
            // empty when opened: placed again by the next refresh.
            current.unidentified = true;
            return Ok(PollOutcome::Idle);
        }
        let checked = current.checked_in == self.pass;
        if checked && current.len_seen == current.pos && !current.is_compressed() {
            // Its `stat` just now showed nothing past our position (what a
            // `read` would say): what is written next comes with an event,
            // or is found by the next tick.
            current.at_eof = true;
            return Ok(PollOutcome::Idle);
        }
        if !checked && current.replaced_in_place()? {
            // Truncated and written again past our position since we
            // looked: its bytes are another stream's. The truncation is
            // handled (copy first) in the next poll's older pass.
            current.truncated = true;
            return Ok(PollOutcome::Busy);
        }
        Ok(
            match current.read(
                &watch.path,
                buf,
                options.max_line_bytes,
                options.long_lines,
                options.read_budget,
                sink,
            )? {
                ReadEnd::Paused => PollOutcome::Paused,
                ReadEnd::Budget => PollOutcome::Busy,
                ReadEnd::Eof => PollOutcome::Idle,
            },
        )
    }

    /// Truncated in place (copytruncate): the lines written between our
    /// last read and the truncation are only in logrotate's copy. Unless a
    /// followed copy continues the stream already (placed this poll), the
    /// usual copy names are looked at ([`copy_candidates`]) and the one
    /// holding our bytes is read from our position to its end first (as a
    /// rotated-away file); then the file is read again from its start. Done
    /// at the end of the refresh phase, when every copy found this poll had
    /// its chance to continue the old stream, and never later: a second
    /// truncation must find the file restarted.
    fn truncate(&mut self, index: usize, now: Instant) -> io::Result<()> {
        let is_truncated = self.watches[index]
            .current
            .as_ref()
            .is_some_and(|current| current.truncated);
        if !is_truncated {
            return Ok(());
        }
        let serial = self.serial();
        let open_ids: std::collections::HashSet<FileId> = self
            .watches
            .iter()
            .flat_map(|watch| watch.streams().map(|source| source.id))
            .collect();
        // A copy a glob matches is followed by its own name, and placed by
        // its content there.
        let continued = self.watches[index]
            .current
            .as_ref()
            .is_some_and(|current| current.continued);
        let candidates: Vec<PathBuf> = if continued {
            Vec::new()
        } else {
            copy_candidates(&self.watches[index].path)
                .into_iter()
                .filter(|candidate| !self.matched_by_glob(candidate))
                .collect()
        };
        let watch = &mut self.watches[index];
        let Some(current) = watch.current.as_mut() else {
            return Ok(());
        };
        if !current.continued {
            let mut copy = None;
            for candidate in candidates {
                let Ok((mut source, _)) = Source::open(&candidate, serial) else {
                    continue;
                };
                if open_ids.contains(&source.id) {
                    continue;
                }
                if let Relation::Continues(offset) = source.relation_to(current, false)? {
                    source.seek(offset);
                    source.older = true;
                    copy = Some(source);
                    break;
                }
            }
            tracing::debug!(path = %watch.path.display(), copy = copy.is_some(), at = current.line_start, "truncated");
            match copy {
                // A copy gets no late writes: let go once read to its end.
                Some(copy) => watch.retired.push(Retired {
                    source: copy,
                    deadline: now,
                    grew: now,
                }),
                // No copy: the partial line is all we will ever have of it.
                None => {
                    if let Some(orphan) = current.take_pending() {
                        watch.orphan = Some(orphan);
                    }
                }
            }
        }
        let serial = self.serial();
        let watch = &mut self.watches[index];
        if let Some(current) = watch.current.as_mut() {
            // The old stream is let go: a copy of it found later (a poll
            // after, or a shadow that missed its original's truncation)
            // continues it where it was left, or held nothing new.
            let mark = current.mark();
            remember_released(
                &mut self.released,
                Checkpoint {
                    path: watch.path.clone(),
                    id: current.id,
                    offset: current.line_start,
                    fingerprint: Some(mark.head),
                    before: mark.before,
                },
            );
            current.restart(serial)?;
            current.older = false;
            current.truncated_before = true;
        }
        watch.notice = Some(NoticeKind::Truncated);
        Ok(())
    }

    /// Files rotated away from watch `index`, read to their end and let go
    /// once quiet; each stream let go is remembered by its content.
    fn read_retired(
        &mut self,
        index: usize,
        now: Instant,
        sink: &mut SinkFn<'_>,
    ) -> io::Result<PollOutcome> {
        let options = &self.options;
        let released = &mut self.released;
        let buf = &mut self.buf;
        let watch = &mut self.watches[index];
        let mut outcome = PollOutcome::Idle;
        let mut position = 0;
        while position < watch.retired.len() {
            let retired = &mut watch.retired[position];
            if retired.source.shadow_of.is_some() {
                // A copy whose name went (logrotate renames its compressed
                // copies at each rotation): its bytes are read from the
                // original, which has moved on since the copy was found.
                let meta = retired.source.file.metadata()?;
                if Source::unlinked(&meta) || now >= retired.deadline {
                    watch.retired.remove(position);
                } else {
                    position += 1;
                }
                continue;
            }
            if retired.source.pos == 0 && retired.source.head.is_empty() {
                // Empty when found, and rotated away before it was known:
                // a compressed file filled since (gzip writing it when
                // logrotate renamed it) is never streamed as text. Its text,
                // if ours, was read from the file it was made from; its new
                // name, if followed, places it by content.
                if retired.source.turned_out_compressed()? {
                    watch.retired.remove(position);
                    continue;
                }
                retired.source.extend_head()?;
                let meta = retired.source.file.metadata()?;
                if retired.source.head.is_empty() && meta.len() > 0 {
                    // The start of a gzip magic, maybe: not read until known.
                    if now >= retired.deadline {
                        watch.retired.remove(position);
                    } else {
                        position += 1;
                    }
                    continue;
                }
            }
            let before = retired.source.pos;
            let end = retired.source.read(
                &watch.path,
                buf,
                options.max_line_bytes,
                options.long_lines,
                options.read_budget,
                sink,
            )?;
            match end {
                ReadEnd::Paused => return Ok(PollOutcome::Paused),
                ReadEnd::Budget => {
                    outcome = PollOutcome::Busy;
                    position += 1;
                }
                ReadEnd::Eof => {
                    if retired.source.pos != before {
                        retired.grew = now;
                    }
                    let meta = retired.source.file.metadata()?;
                    let quiet = options.rotate_wait.min(DELETED_FILE_QUIET);
                    let deleted_and_quiet = Source::unlinked(&meta) && now >= retired.grew + quiet;
                    if deleted_and_quiet || now >= retired.deadline {
                        // Let go: a deleted file's space is freed on close.
                        let flow = retired.source.flush_pending(&watch.path, sink)?;
                        let source = watch.retired.remove(position).source;
                        let mark = source.mark();
                        remember_released(
                            released,
                            Checkpoint {
                                path: watch.path.clone(),
                                id: source.id,
                                offset: source.line_start,
                                fingerprint: Some(mark.head),
                                before: mark.before,
                            },
                        );
                        if flow == Flow::Pause {
                            return Ok(PollOutcome::Paused);
                        }
                    } else {
                        position += 1;
                    }
                }
            }
        }
        Ok(outcome)
    }
}

/// Where logrotate leaves the copy of `path` in copytruncate mode: `NAME.1`
/// (its default), `NAME.0` (`start 0`), and with `dateext` the newest
/// `NAME-*` (any `dateformat`); each also compressed (`.gz`, no
/// `delaycompress`). Only files holding our bytes at our position are used.
fn copy_candidates(path: &Path) -> Vec<PathBuf> {
    let Some(name) = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
    else {
        return Vec::new();
    };
    let dir = parent_dir(path);
    let mut names = vec![format!("{name}.1"), format!("{name}.0")];
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut dated: Vec<(std::time::SystemTime, String)> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let entry_name = entry.file_name().to_string_lossy().into_owned();
                let modified = entry.metadata().ok()?.modified().ok()?;
                entry_name
                    .strip_prefix(&format!("{name}-"))
                    .is_some()
                    .then_some((modified, entry_name))
            })
            .collect();
        dated.sort();
        names.extend(dated.into_iter().rev().take(2).map(|(_, name)| name));
    }
    let mut paths = Vec::new();
    for candidate in names {
        paths.push(dir.join(&candidate));
        if !candidate.ends_with(".gz") {
            paths.push(dir.join(format!("{candidate}.gz")));
        }
    }
    paths
}

/// Whether a file named `copy` may hold a copy of the file named
/// `original`, as rotation tools name their copies: the copy's name begins
/// with the original's up to its first dot (`app.log` → `app.log.1`,
/// `app.log-20240601.gz`, logrotate's `extension` `app-20240601.log`,
/// logback's `app.2024-06-01.log.gz`; `app.log.1.gz` → `app.log.2.gz` as
/// the chain moves on), in any directory (logrotate's `olddir`). Two
/// followed files that only hold the same bytes (replicas writing the same
/// lines, `worker-1.log` and `worker-2.log`) are never taken for each
/// other's copy.
fn named_like_copy(copy: &Path, original: &Path) -> bool {
    matches!(
        (file_name_bytes(copy), copy_stem(original)),
        (Some(copy), Some(stem)) if copy.starts_with(stem)
    )
}

/// What the name of a copy of `original` begins with ([`named_like_copy`]):
/// its file name up to its first dot (after leading dots).
fn copy_stem(original: &Path) -> Option<&[u8]> {
    let original = file_name_bytes(original)?;
    let leading_dots = original.iter().take_while(|&&byte| byte == b'.').count();
    Some(
        match original[leading_dots..]
            .iter()
            .position(|&byte| byte == b'.')
        {
            Some(dot) => &original[..leading_dots + dot],
            None => original,
        },
    )
}

/// The last component of `path` (`None` for `.`, `..` or a trailing
/// slash). Cut at the last slash rather than parsed by `Path::file_name`:
/// a new file is compared with every file followed, and with a thousand
/// files the parsing cost a fifth of a second at start.
fn file_name_bytes(path: &Path) -> Option<&[u8]> {
    let bytes = path.as_os_str().as_encoded_bytes();
    let name = bytes.rsplit(|&byte| byte == b'/').next()?;
    (!matches!(name, b"" | b"." | b"..")).then_some(name)
}

/// Whether a pattern, or one component of it, holds glob syntax (`*`,
/// `?`, `[`): followed as a glob ([`Follower::add_glob`]) rather than as a
/// path.
pub fn has_glob_syntax(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// The one directory a glob matches in (its name has glob syntax, its
/// directory none), or `None`.
fn glob_dir(pattern: &str) -> Option<PathBuf> {
    let path = Path::new(pattern);
    let last = path.file_name()?.to_string_lossy();
    let parent = path.parent().unwrap_or(Path::new(""));
    if !has_glob_syntax(&last) || has_glob_syntax(&parent.to_string_lossy()) {
        return None;
    }
    Some(if parent.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        parent.to_path_buf()
    })
}

/// The paths matching `pattern`, whose one directory is `dir`
/// ([`glob_dir`]). The `glob` crate skips names that are not UTF-8 (Linux
/// file names are bytes); when only the last component has glob syntax
/// (`/var/log/*.log`, the usual case), the directory is read here instead
/// and each name matched as text with invalid bytes replaced (so `*.log`
/// matches `caf\xe9.log`), keeping the real name. Deeper patterns go
/// through `glob`, where such names stay unmatched. `None`: a bad pattern.
fn expand_glob(pattern: &str, dir: Option<&Path>) -> Option<Vec<PathBuf>> {
    let Some(dir) = dir else {
        return Some(glob::glob(pattern).ok()?.filter_map(Result::ok).collect());
    };
    let path = Path::new(pattern);
    let compiled = glob::Pattern::new(&path.file_name()?.to_string_lossy()).ok()?;
    // Matches keep the pattern's spelling: `*.log` gives `app.log`, not
    // `./app.log`.
    let parent = path.parent().unwrap_or(Path::new(""));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Some(Vec::new());
    };
    Some(
        entries
            .filter_map(Result::ok)
            .map(|entry| entry.file_name())
            .filter(|name| compiled.matches(&name.to_string_lossy()))
            .map(|name| parent.join(name))
            .collect(),
    )
}

/// Whether the file a checkpoint was taken of is still at its path with the
/// bytes the checkpoint saw (then a copy elsewhere is only a copy).
fn owner_present(checkpoint: &Checkpoint) -> bool {
    let Some(mark) = checkpoint.mark() else {
        return false;
    };
    match Source::open(&checkpoint.path, 0) {
        Ok((mut source, _)) => {
            source.id == checkpoint.id && matches!(source.continues_mark(&mark), Ok(Some(_)))
        }
        Err(_) => false,
    }
}

/// Remembers a stream let go (the last [`RELEASED_MEMORY`]).
fn remember_released(released: &mut Vec<Checkpoint>, checkpoint: Checkpoint) {
    if released.len() >= RELEASED_MEMORY {
        released.remove(0);
    }
    released.push(checkpoint);
}

/// Moves the current file to the rotated-away list, to be drained.
fn retire(watch: &mut Watch, deadline: Instant) {
    if let Some(source) = watch.current.take() {
        watch.retired.push(Retired {
            source,
            deadline,
            grew: Instant::now(),
        });
    }
}

/// Records an error to be reported once (until it changes or clears).
fn report_failure(watch: &mut Watch, failure: ReadFailure) {
    if watch.failing != Some(failure) {
        watch.failing = Some(failure);
        watch.notice = Some(NoticeKind::Unreadable(failure));
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The longest leading run of components without glob syntax, minus the
/// last one when the whole pattern is literal.
fn glob_base(pattern: &str) -> PathBuf {
    let mut base = PathBuf::new();
    let path = Path::new(pattern);
    let components: Vec<Component<'_>> = path.components().collect();
    for (position, component) in components.iter().enumerate() {
        let text = component.as_os_str().to_string_lossy();
        let last = position + 1 == components.len();
        if last || text.contains(['*', '?', '[']) {
            break;
        }
        base.push(component);
    }
    if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    }
}
