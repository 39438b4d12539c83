//! One open file being read: its descriptor, its read position, the
//! incomplete line at its end, and what identifies its content.
//!
//! Lines are split by the workspace's one [`LineSplitter`]; this module
//! ties it to file offsets. Invariants: `line_start <= pos`; the bytes
//! `line_start..pos` have been read but not handed to the sink (the
//! incomplete last line, or the end of it), and the splitter holds the first
//! `max_line_bytes` of them (and whether some were dropped). `line_start`
//! moves only once the sink accepted what comes before it (the splitter
//! says where that is in each chunk), so a checkpoint at `line_start` never
//! skips or repeats a byte handed over. Reads are positional (`pread`), so
//! after a pause or an error the next read simply starts at `pos`, the
//! first byte the splitter did not take.
//!
//! Two ways to treat a line longer than `max_line_bytes` (see
//! [`crate::lines`]):
//! - cut (the default): a line is handed over only whole, with its newline
//!   (or by [`Source::flush_pending`] when the file will not be read
//!   further), so `line_start` is always the start of a line.
//! - split ([`super::FollowOptions::long_lines`]): each accepted
//!   piece moves `line_start` past it, so a checkpoint may fall inside a
//!   line: everything before it was handed over (the line's first pieces),
//!   and resuming there hands over the rest of that line as a line of its
//!   own (its first piece is not marked as a continuation). The splitter
//!   remembers that pieces of the current line went out, so the line is
//!   still ended (by an empty last piece) when the file is let go right
//!   after a piece. With [`LongLines::Runs`] the whole
//!   lines of a read go over as one run: `line_start` moves past all of
//!   them at once.
//!
//! Content identity: `head` holds the file's first bytes (up to
//! [`FINGERPRINT_BYTES`]) and `before` the bytes just before `line_start`
//! (as many), both as read. Together with `line_start` they say which
//! stream of bytes this is and where we are in it, whatever the inode: a
//! copy (copytruncate), a renamed file or a decompressed rotation that holds
//! the same bytes continues at `line_start` ([`Source::continues`]).
//!
//! A gzip file (recognised by its magic bytes, never by name) is read
//! decompressed: offsets are offsets in the decompressed stream.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Seek};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::{Event, FINGERPRINT_BYTES, FileId, Flow};
use crate::lines::{Line, LineSplitter, LongLines};

/// The two first bytes of every gzip member (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether `file` starts with [`GZIP_MAGIC`] now (read, not judged by a
/// size seen earlier: gzip may be filling it).
fn begins_with_gzip_magic(file: &File) -> bool {
    let mut magic = [0u8; 2];
    file.read_exact_at(&mut magic, 0).is_ok() && magic == GZIP_MAGIC
}

/// A file's (mtime seconds, mtime nanoseconds, size): what a write or a
/// truncation changes, and a rename does not.
pub(super) type ContentStamp = (i64, i64, u64);

pub(super) fn content_stamp(meta: &Metadata) -> ContentStamp {
    (meta.mtime(), meta.mtime_nsec(), meta.len())
}

/// Why a path was not opened as a followed file.
#[derive(Debug)]
pub(super) enum OpenError {
    Io(io::Error),
    /// A FIFO, socket or device: reading it could block forever or never
    /// end (`/dev/zero`), and it has no offsets to checkpoint.
    NotRegular(&'static str),
}

impl From<io::Error> for OpenError {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

/// What kind of non-regular file `meta` describes.
pub(super) fn special_kind(meta: &Metadata) -> Option<&'static str> {
    let kind = meta.file_type();
    if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else {
        Some("not a regular file")
    }
}

/// Decompressed reading of a gzip file, forwards only, with the last
/// decoded chunk kept so a pause (which re-reads from the next line) or the
/// `before` window does not restart the decoder.
struct Gzip {
    decoder: Option<MultiGzDecoder<File>>,
    /// Decoded bytes `window_base..window_base + window.len()`.
    window: Vec<u8>,
    window_base: u64,
    /// The end of the decompressed stream was reached.
    finished: bool,
    /// Compressed size when decoding failed: retried only once it changes
    /// (a file still being compressed by logrotate).
    failed_at: Option<u64>,
}

impl Gzip {
    fn new() -> Self {
        Self {
            decoder: None,
            window: Vec::new(),
            window_base: 0,
            finished: false,
            failed_at: None,
        }
    }

    /// Decompressed bytes at `pos` into `buf` (0 at the end of the stream
    /// or while the file cannot be decoded yet).
    fn read_at(&mut self, file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        if pos < self.window_base {
            self.decoder = None;
        }
        if self.decoder.is_none() {
            let size = file.metadata()?.len();
            if self.failed_at == Some(size) {
                return Ok(0);
            }
            let mut clone = file.try_clone()?;
            clone.rewind()?;
            self.decoder = Some(MultiGzDecoder::new(clone));
            self.window.clear();
            self.window_base = 0;
            self.finished = false;
            self.failed_at = None;
        }
        while !self.finished && self.window_base + self.window.len() as u64 <= pos {
            // Keep the tail of the old window: the `before` bytes of a
            // position at the start of the new one.
            let keep = self.window.len().min(FINGERPRINT_BYTES as usize);
            let drop = self.window.len() - keep;
            self.window.drain(..drop);
            self.window_base += drop as u64;
            let start = self.window.len();
            self.window.resize(start + super::READ_BUFFER_BYTES, 0);
            let decoder = self.decoder.as_mut().expect("decoder set above");
            let read = loop {
                match decoder.read(&mut self.window[start..]) {
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            match read {
                Ok(0) => {
                    self.window.truncate(start);
                    self.finished = true;
                }
                Ok(n) => self.window.truncate(start + n),
                Err(_) => {
                    // Truncated or corrupt (still being written): the
                    // decoded part stays readable; retry when it changes.
                    self.window.truncate(start);
                    self.failed_at = Some(file.metadata()?.len());
                    self.decoder = None;
                    return self.copy_out(buf, pos);
                }
            }
        }
        self.copy_out(buf, pos)
    }

    fn copy_out(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let end = self.window_base + self.window.len() as u64;
        if pos < self.window_base || pos >= end {
            return Ok(0);
        }
        let from = (pos - self.window_base) as usize;
        let n = buf.len().min(self.window.len() - from);
        buf[..n].copy_from_slice(&self.window[from..from + n]);
        Ok(n)
    }
}

/// What stopped a [`Source::read`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ReadEnd {
    /// Everything the file held was read.
    Eof,
    /// The per-poll budget was used up; more may be waiting.
    Budget,
    /// The sink asked to stop.
    Paused,
}

pub(super) struct Source {
    pub(super) file: File,
    pub(super) id: FileId,
    pub(super) pos: u64,
    pub(super) line_start: u64,
    /// The file's size when last looked at (a `stat` of its name, or a read
    /// that reached its end): the unread bytes are counted from it without
    /// a `stat` per file ([`super::Follower::unread_bytes`]).
    pub(super) len_seen: u64,
    /// The follower's pass ([`super::Follower::pass`]) in which the file's
    /// `stat` was compared with what we read (shrunk, or first bytes
    /// changed): reading in the same pass skips that check.
    pub(super) checked_in: u64,
    /// The incomplete line at `line_start..pos`.
    lines: LineSplitter,
    /// The last read found nothing more: the pending bytes are the file's
    /// incomplete last line, not the head of a line we have not read yet.
    pub(super) at_eof: bool,
    /// Decompressed reading, for a gzip file.
    gzip: Option<Box<Gzip>>,
    /// The first bytes of the content (up to [`FINGERPRINT_BYTES`]).
    pub(super) head: Vec<u8>,
    /// The bytes just before `line_start` (up to [`FINGERPRINT_BYTES`]).
    pub(super) before: Vec<u8>,
    /// The last bytes handed to the splitter (up to [`FINGERPRINT_BYTES`]),
    /// ending at `recent_end`: `before` is cut from them after a read, not
    /// read from the file again (a `read` per file and poll).
    recent: Vec<u8>,
    recent_end: u64,
    /// Names the stream of bytes being read; a new one after truncation.
    pub(super) serial: u64,
    /// A copy of the stream `serial` that is still intact elsewhere: not
    /// read (its bytes are read from the original) until that stream ends or
    /// is truncated, when it continues the stream or is found covered.
    pub(super) shadow_of: Option<u64>,
    /// When this file was found to be a copy of a stream still intact.
    pub(super) shadow_since: Option<std::time::Instant>,
    /// A copy past logrotate's window whose bytes were all read in its
    /// original (logrotate's `copy`, a backup made by hand): nothing waits
    /// on the clock for it. A write to either file, or the original's
    /// truncation, is an event that looks at it again.
    pub(super) covered: bool,
    /// Holds lines older than a file being read under some name (rotated
    /// away, or the copy of a truncated file): read first in a poll.
    pub(super) older: bool,
    /// Was truncated in place before: rotated by copytruncate.
    pub(super) truncated_before: bool,
    /// Found truncated in place (shrunk, or its first bytes changed): read
    /// again from its start, after the copy holding its unread lines.
    pub(super) truncated: bool,
    /// The file's (mtime, size) at the last [`Source::modified_since_check`].
    checked: Option<ContentStamp>,
    /// The (mtime, size) at which the first bytes were last found equal to
    /// `head`: until the file changes they are not read again.
    intact_stamp: Option<ContentStamp>,
    /// Placed as a new file while empty: a copy or a compressed file being
    /// created looks like that, so it is not read before it has bytes to be
    /// identified by (it is then placed again).
    pub(super) unidentified: bool,
    /// Another file took over this stream's unread bytes (the copy of a
    /// copytruncate): no need to look for one when truncation is noticed.
    pub(super) continued: bool,
}

/// How a candidate file relates to a stream read up to some offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Relation {
    /// Holds the same bytes up to the offset: it continues there.
    Continues(u64),
    /// Holds the stream's first bytes but ends before the offset: a copy
    /// of bytes already read.
    Covered,
    /// Another stream.
    Unrelated,
}

/// What identifies a stream read up to `offset` when its file is gone: hashes
/// of its first bytes (up to `min(offset, FINGERPRINT_BYTES)`) and of the
/// bytes just before `offset` (as many).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Mark {
    pub(super) offset: u64,
    pub(super) head: u64,
    pub(super) before: Option<u64>,
}

/// Opens a followed file for reading: non-blocking, so a FIFO cannot hang
/// the open, and without access-time updates where the kernel allows it
/// (`O_NOATIME`: the file's owner, or `CAP_FOWNER`). A log read while it is
/// written would otherwise have its inode dirtied and journaled at every
/// read (`relatime` updates an access time older than the last write), a
/// tenth of the follower's CPU with 1,000 busy files. Refused (`EPERM`,
/// another user's file), it is opened without.
pub(super) fn open_to_read(path: &Path) -> io::Result<File> {
    let open = |flags| OpenOptions::new().read(true).custom_flags(flags).open(path);
    match open(libc::O_NONBLOCK | libc::O_NOATIME) {
        Err(error) if error.raw_os_error() == Some(libc::EPERM) => open(libc::O_NONBLOCK),
        opened => opened,
    }
}

impl Source {
    /// Opens `path` for reading; returns the source (at offset 0) and the
    /// metadata of the descriptor actually opened (the path may have been
    /// replaced between a `stat` and this `open`). Non-blocking, so a FIFO
    /// cannot hang the open; anything but a regular file is refused.
    pub(super) fn open(path: &Path, serial: u64) -> Result<(Self, Metadata), OpenError> {
        let file = open_to_read(path)?;
        let meta = file.metadata()?;
        if let Some(kind) = special_kind(&meta) {
            return Err(OpenError::NotRegular(kind));
        }
        Ok((Self::from_parts(file, &meta, serial)?, meta))
    }

    /// Wraps a file the caller opened (and examined).
    pub(super) fn from_file(file: File, serial: u64) -> io::Result<Self> {
        let meta = file.metadata()?;
        Self::from_parts(file, &meta, serial)
    }

    fn from_parts(file: File, meta: &Metadata, serial: u64) -> io::Result<Self> {
        let gzip = begins_with_gzip_magic(&file).then(|| Box::new(Gzip::new()));
        let mut source = Self {
            id: FileId::of(meta),
            len_seen: meta.len(),
            checked_in: 0,
            file,
            pos: 0,
            line_start: 0,
            lines: LineSplitter::new(super::DEFAULT_MAX_LINE_BYTES, LongLines::Cut),
            at_eof: false,
            gzip,
            head: Vec::new(),
            before: Vec::new(),
            recent: Vec::new(),
            recent_end: 0,
            serial,
            shadow_of: None,
            shadow_since: None,
            covered: false,
            older: false,
            checked: None,
            intact_stamp: None,
            truncated_before: false,
            truncated: false,
            unidentified: false,
            continued: false,
        };
        source.extend_head()?;
        Ok(source)
    }

    /// Whether this file is read as the newest of its name: not a copy
    /// whose bytes come from its original, not waiting to be identified,
    /// not truncated with a copy to read first, not an older file.
    pub(super) fn is_newest(&self) -> bool {
        self.shadow_of.is_none() && !self.unidentified && !self.truncated && !self.older
    }

    /// Placed while empty, still empty at the last look, and past the time
    /// logrotate takes to start filling a copy: an application's log that
    /// nothing was written to yet (a thousand of them through a glob, an
    /// error log that stays empty for days). Its first write comes with an
    /// event, and the full poll that event brings identifies it; meanwhile
    /// nothing waits on the clock for it.
    pub(super) fn awaits_first_bytes(&self) -> bool {
        self.unidentified && self.len_seen == 0 && !self.in_copy_window(std::time::Instant::now())
    }

    /// Whether this file was found a copy (or an empty file that may be
    /// one) less than [`super::COPY_TRUNCATE_WINDOW`] before `now`: a
    /// truncation of its original may still follow.
    pub(super) fn in_copy_window(&self, now: std::time::Instant) -> bool {
        self.shadow_since
            .is_some_and(|since| now < since + super::COPY_TRUNCATE_WINDOW)
    }

    /// Whether this is a gzip file, read decompressed.
    pub(super) fn is_compressed(&self) -> bool {
        self.gzip.is_some()
    }

    /// Content bytes at `offset` (decompressed for gzip); short at the end.
    fn read_content_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match self.gzip.as_mut() {
            Some(gzip) => gzip.read_at(&self.file, buf, offset),
            None => loop {
                match self.file.read_at(buf, offset) {
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    other => return other,
                }
            },
        }
    }

    /// Up to `len` content bytes from `offset` (fewer at the end).
    pub(super) fn content(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut out = vec![0u8; len];
        let filled = self.fill_at(&mut out, offset)?;
        out.truncate(filled);
        Ok(out)
    }

    /// Fills `buf` with the content bytes at `offset`, all of it unless the
    /// end comes first: how many.
    fn fill_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            let n = self.read_content_at(&mut buf[filled..], offset + filled as u64)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        Ok(filled)
    }

    /// Reads more of the first bytes while they are fewer than the
    /// fingerprint size and the file has more.
    pub(super) fn extend_head(&mut self) -> io::Result<()> {
        let have = self.head.len();
        if have < FINGERPRINT_BYTES as usize {
            let more = self.content(have as u64, FINGERPRINT_BYTES as usize - have)?;
            self.head.extend_from_slice(&more);
            let magic = self.head.len().min(GZIP_MAGIC.len());
            if self.gzip.is_none()
                && have == 0
                && magic > 0
                && self.head[..magic] == GZIP_MAGIC[..magic]
            {
                // A gzip file opened as text (empty, or not whole, when it
                // was opened), or the start of one being written: never
                // taken for text, and placed again once its magic is whole
                // ([`Source::turned_out_compressed`]).
                self.head.clear();
            }
        }
        Ok(())
    }

    /// The content size: the file's length, or for gzip the decompressed
    /// length when it is known (decoded to the end), else `None`.
    pub(super) fn content_len(&mut self) -> io::Result<Option<u64>> {
        match self.gzip.as_mut() {
            None => Ok(Some(self.file.metadata()?.len())),
            Some(gzip) => {
                // Decode to the end once; a rotated file does not grow.
                let mut probe = [0u8; 1];
                let mut at = gzip.window_base + gzip.window.len() as u64;
                while gzip.read_at(&self.file, &mut probe, at)? > 0 {
                    at = gzip.window_base + gzip.window.len() as u64;
                }
                Ok((gzip.finished).then_some(at))
            }
        }
    }

    /// Whether the descriptor still holds the bytes we read: not shrunk
    /// below our position, and its first bytes unchanged (a file truncated
    /// and written past our position again between two looks).
    pub(super) fn intact(&mut self) -> io::Result<bool> {
        let meta = self.file.metadata()?;
        self.intact_with(&meta)
    }

    /// [`Source::intact`] with the descriptor's metadata at hand.
    pub(super) fn intact_with(&mut self, meta: &Metadata) -> io::Result<bool> {
        if self.gzip.is_some() {
            return Ok(true);
        }
        if meta.len() < self.pos {
            return Ok(false);
        }
        self.head_unchanged(meta)
    }

    /// Whether the file's first bytes are still `head` (read only if the
    /// file changed since they last were).
    fn head_unchanged(&mut self, meta: &Metadata) -> io::Result<bool> {
        let stamp = content_stamp(meta);
        if self.intact_stamp == Some(stamp) {
            return Ok(true);
        }
        let same = self.begins_with_head()?;
        self.intact_stamp = same.then_some(stamp);
        Ok(same)
    }

    /// Whether the file's first bytes are `head` (plain files: gzip's are
    /// never compared). Read into the stack: with a thousand busy files,
    /// every poll compares a thousand heads.
    fn begins_with_head(&mut self) -> io::Result<bool> {
        let mut buf = [0u8; FINGERPRINT_BYTES as usize];
        let first = &mut buf[..self.head.len()];
        let filled = self.fill_at(first, 0)?;
        Ok(first[..filled] == self.head[..])
    }

    /// Whether the file was written (or truncated) since the last call:
    /// its first bytes are worth comparing again only then.
    pub(super) fn modified_since_check(&mut self, meta: &Metadata) -> bool {
        let stamp = content_stamp(meta);
        let changed = self.checked != Some(stamp);
        self.checked = Some(stamp);
        changed
    }

    /// Whether a file opened empty (so taken for text) now starts with the
    /// gzip magic: it must never be read as text.
    pub(super) fn turned_out_compressed(&mut self) -> io::Result<bool> {
        if self.gzip.is_some() || self.pos != 0 || !self.head.is_empty() {
            return Ok(false);
        }
        Ok(begins_with_gzip_magic(&self.file))
    }

    /// Whether there is more to read but the first bytes changed: the file
    /// was truncated and written past our position between two looks.
    pub(super) fn replaced_in_place(&mut self) -> io::Result<bool> {
        if self.gzip.is_some() {
            return Ok(false);
        }
        let meta = self.file.metadata()?;
        if meta.len() <= self.pos {
            return Ok(false);
        }
        Ok(!self.head_unchanged(&meta)?)
    }

    /// How this (newly opened) file relates to `stream`, a stream we are
    /// reading: same first bytes, and the same bytes before its read
    /// position. When this file is shorter than that position: a copy taken
    /// before we read on, if it ends with the bytes the stream's file has at
    /// that length (`intact`: that file still holds them) or, the stream's
    /// file being truncated already, on its first bytes alone (a copytruncate
    /// copy shows up with the truncation).
    pub(super) fn relation_to(
        &mut self,
        stream: &mut Source,
        intact: bool,
    ) -> io::Result<Relation> {
        let offset = stream.line_start;
        if !self.shares_head(stream) {
            return Ok(Relation::Unrelated);
        }
        let common = self.head.len().min(stream.head.len());
        let window = offset.min(FINGERPRINT_BYTES);
        // Its length before its bytes: logrotate writes its copy while we
        // compare, and a copy whose bytes before `offset` were not there
        // yet, then long enough a moment later, would be taken for another
        // file (and read again from its start). What a length once showed
        // stays there to read.
        let len = self.content_len()?;
        if len.is_none_or(|len| len >= offset) {
            let before = self.content(offset - window, window as usize)?;
            if before.len() as u64 == window && before == stream.before {
                return Ok(Relation::Continues(offset));
            }
        }
        // A compressed file's length is known once decoded to its end.
        let len = match len {
            Some(len) => Some(len),
            None => self.content_len()?,
        };
        let Some(len) = len else {
            return Ok(Relation::Unrelated);
        };
        if len >= offset {
            return Ok(Relation::Unrelated);
        }
        if !intact {
            return Ok(if common as u64 >= len.min(FINGERPRINT_BYTES) {
                Relation::Covered
            } else {
                Relation::Unrelated
            });
        }
        let window = len.min(FINGERPRINT_BYTES);
        let mine = self.content(len - window, window as usize)?;
        let theirs = stream.content(len - window, window as usize)?;
        Ok(if mine == theirs {
            Relation::Covered
        } else {
            Relation::Unrelated
        })
    }

    /// [`Source::relation_to`] `stream`, with whether `stream`'s file is
    /// intact (never when `truncated`, already seen truncated). Unrelated
    /// while it looked intact holds only if it still is after the
    /// comparison: logrotate truncates the original right after its copy,
    /// and bytes compared after the truncation are the new file's, not the
    /// ones copied.
    pub(super) fn relate_to(
        &mut self,
        stream: &mut Source,
        truncated: bool,
    ) -> io::Result<(Relation, bool)> {
        let intact = !truncated && stream.intact()?;
        let relation = self.relation_to(stream, intact)?;
        if intact && relation == Relation::Unrelated && !stream.intact()? {
            return Ok((self.relation_to(stream, false)?, false));
        }
        Ok((relation, intact))
    }

    /// Whether both begin with the same bytes (as far as both go).
    pub(super) fn shares_head(&self, other: &Source) -> bool {
        let common = self.head.len().min(other.head.len());
        common > 0 && self.head[..common] == other.head[..common]
    }

    /// Whether this file continues the stream `mark` describes (its
    /// checkpoint or release record); the offset to continue at.
    pub(super) fn continues_mark(&mut self, mark: &Mark) -> io::Result<Option<u64>> {
        let head_len = mark.offset.min(FINGERPRINT_BYTES) as usize;
        if self.head.len() < head_len || hash(&self.head[..head_len]) != mark.head {
            return Ok(None);
        }
        if let Some(before) = mark.before {
            let window = mark.offset.min(FINGERPRINT_BYTES);
            let bytes = self.content(mark.offset - window, window as usize)?;
            if bytes.len() as u64 != window || hash(&bytes) != before {
                return Ok(None);
            }
        } else if self.content_len()?.is_none_or(|len| len < mark.offset) {
            return Ok(None);
        }
        Ok(Some(mark.offset))
    }

    /// What identifies this stream at `line_start`, for when it is gone.
    pub(super) fn mark(&self) -> Mark {
        let head_len = (self.line_start.min(FINGERPRINT_BYTES) as usize).min(self.head.len());
        Mark {
            offset: self.line_start,
            head: hash(&self.head[..head_len]),
            before: Some(hash(&self.before)),
        }
    }

    /// Starts reading at `offset`, which must be the start of a line (or, in
    /// split mode, a checkpoint inside one: see the module documentation).
    pub(super) fn seek(&mut self, offset: u64) {
        self.pos = offset;
        self.line_start = offset;
        self.lines.reset();
        self.at_eof = false;
        self.recent.clear();
        self.remember_before();
    }

    /// Starts a new stream at offset 0 in the same file (truncated in
    /// place): its first bytes are read again.
    pub(super) fn restart(&mut self, serial: u64) -> io::Result<()> {
        self.serial = serial;
        self.truncated = false;
        self.head.clear();
        self.intact_stamp = None;
        self.continued = false;
        self.seek(0);
        self.extend_head()
    }

    /// Refreshes `before`: from the bytes just read when they hold it,
    /// else from the content (best effort: an error leaves it short, which
    /// only makes matches fail, never wrong).
    fn remember_before(&mut self) {
        let window = self.line_start.min(FINGERPRINT_BYTES);
        let start = self.line_start - window;
        let recent_start = self.recent_end - self.recent.len() as u64;
        if start >= recent_start && self.line_start <= self.recent_end {
            let from = (start - recent_start) as usize;
            self.before.clear();
            self.before
                .extend_from_slice(&self.recent[from..from + window as usize]);
        } else {
            self.before = self.content(start, window as usize).unwrap_or_default();
        }
    }

    /// Keeps the last [`FINGERPRINT_BYTES`] of the bytes read up to `end`
    /// (`taken` ends there), after those of the read before when it ended
    /// where `taken` starts.
    fn note_recent(&mut self, taken: &[u8], end: u64) {
        const KEEP: usize = FINGERPRINT_BYTES as usize;
        if self.recent_end != end - taken.len() as u64 || taken.len() >= KEEP {
            self.recent.clear();
        }
        let taken = &taken[taken.len().saturating_sub(KEEP)..];
        let overflow = (self.recent.len() + taken.len()).saturating_sub(KEEP);
        self.recent.drain(..overflow);
        self.recent.extend_from_slice(taken);
        self.recent_end = end;
    }

    /// Whether the rest of a long line is being skipped or handed over in
    /// pieces: reading again from `line_start` would repeat its first part.
    /// (An incomplete last line is just read again.)
    pub(super) fn mid_long_line(&self) -> bool {
        self.lines.mid_long_line()
    }

    /// Whether the descriptor's file has no name left (deleted).
    pub(super) fn unlinked(meta: &Metadata) -> bool {
        meta.nlink() == 0
    }

    /// Reads from `pos` until end of file, `budget` bytes, or a pause,
    /// handing every complete line to `sink`; a line longer than
    /// `max_line_bytes` is cut, or handed over in pieces (`long_lines`); then
    /// refreshes what identifies the stream's content.
    pub(super) fn read(
        &mut self,
        path: &Path,
        buf: &mut [u8],
        max_line_bytes: usize,
        long_lines: LongLines,
        budget: u64,
        sink: &mut dyn FnMut(Event<'_>) -> io::Result<Flow>,
    ) -> io::Result<ReadEnd> {
        let line_start = self.line_start;
        let end = self.read_lines(path, buf, max_line_bytes, long_lines, budget, sink);
        if self.line_start != line_start {
            self.remember_before();
        }
        if self.head.len() < FINGERPRINT_BYTES as usize && self.pos > self.head.len() as u64 {
            self.extend_head()?;
        }
        end
    }

    fn read_lines(
        &mut self,
        path: &Path,
        buf: &mut [u8],
        max_line_bytes: usize,
        long_lines: LongLines,
        budget: u64,
        sink: &mut dyn FnMut(Event<'_>) -> io::Result<Flow>,
    ) -> io::Result<ReadEnd> {
        self.lines.set_limit(max_line_bytes, long_lines);
        let mut read_total: u64 = 0;
        loop {
            if read_total >= budget {
                self.at_eof = false;
                return Ok(ReadEnd::Budget);
            }
            let n = self.read_content_at(buf, self.pos)?;
            if n == 0 {
                self.at_eof = true;
                self.len_seen = self.pos;
                return Ok(ReadEnd::Eof);
            }
            self.at_eof = false;
            read_total += n as u64;
            let chunk = &buf[..n];
            if self.hand_over(path, chunk, sink)? == Flow::Pause {
                return Ok(ReadEnd::Paused);
            }
            // A short read of a plain file ended at its end: asking again
            // would cost a `read` per file and poll to learn what a write
            // after this one announces anyway (gzip's decoder returns what
            // one step decoded, short or not).
            if n < buf.len() && self.gzip.is_none() {
                self.at_eof = true;
                self.len_seen = self.pos;
                return Ok(ReadEnd::Eof);
            }
        }
    }

    /// Hands over the lines `chunk` (read at `pos`) completes; `pos` then
    /// is just after what the splitter took (all of it unless the sink
    /// paused or failed), `line_start` just after the last line or piece
    /// the sink accepted.
    fn hand_over(
        &mut self,
        path: &Path,
        chunk: &[u8],
        sink: &mut dyn FnMut(Event<'_>) -> io::Result<Flow>,
    ) -> io::Result<Flow> {
        let base = self.pos;
        // `move`: the sink and path are the closure's own, not borrowed
        // through it (one indirection less per line).
        let fed = self.lines.feed(chunk, move |line| sink(event(path, line)));
        let (accepted, taken, outcome) = match fed {
            Ok(fed) => (fed.accepted, fed.taken, Ok(fed.flow)),
            Err(refused) => (refused.accepted, refused.taken(), Err(refused.error)),
        };
        if let Some(end) = accepted {
            self.line_start = base + end as u64;
        }
        self.pos = base + taken as u64;
        self.note_recent(&chunk[..taken], self.pos);
        outcome
    }

    /// Takes the incomplete last line (if any) out, as the file will not
    /// be read further at this position: its bytes and whether it was cut.
    pub(super) fn take_pending(&mut self) -> Option<(Vec<u8>, bool)> {
        self.check_held();
        let taken = self.lines.take()?;
        self.line_start = self.pos;
        Some(taken)
    }

    /// Hands the incomplete last line (if any) to `sink` as a line: used when
    /// the file will not grow any more for us (released, truncated, shutdown).
    pub(super) fn flush_pending(
        &mut self,
        path: &Path,
        sink: &mut dyn FnMut(Event<'_>) -> io::Result<Flow>,
    ) -> io::Result<Flow> {
        self.check_held();
        let Some(flow) = self.lines.finish(|line| sink(event(path, line)))? else {
            return Ok(Flow::Continue);
        };
        self.line_start = self.pos;
        self.remember_before();
        Ok(flow)
    }

    /// The splitter holds a line exactly when bytes were read past
    /// `line_start` or pieces of the line there went out.
    fn check_held(&self) {
        debug_assert_eq!(
            self.lines.holds_line(),
            self.line_start != self.pos || self.lines.mid_long_line(),
            "splitter and offsets disagree at {}..{}",
            self.line_start,
            self.pos
        );
    }
}

fn event<'a>(path: &'a Path, line: Line<'a>) -> Event<'a> {
    Event::Line {
        path,
        line: line.bytes,
        truncated: line.truncated,
        partial: line.partial,
        lines: line.lines,
    }
}

/// FNV-1a: checkpoint fingerprints are compared across versions, so this
/// must never change.
pub(super) fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    type Pieces = Vec<(Vec<u8>, bool)>;

    fn source_with(bytes: &[u8]) -> (tempfile::NamedTempFile, Source) {
        let mut named = tempfile::NamedTempFile::new().unwrap();
        named.write_all(bytes).unwrap();
        let (source, _) = Source::open(named.path(), 1).unwrap();
        (named, source)
    }

    #[test]
    fn reading_a_followed_file_leaves_its_access_time_alone() {
        use std::time::{Duration, SystemTime};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        std::fs::write(&path, "one\ntwo\n").unwrap();
        // An access time older than the last write: `relatime` updates it
        // at the next read.
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        let set_old = || {
            let file = File::options().write(true).open(&path).unwrap();
            file.set_times(std::fs::FileTimes::new().set_accessed(long_ago))
                .unwrap();
        };
        let accessed = || std::fs::metadata(&path).unwrap().accessed().unwrap();
        set_old();
        std::fs::read(&path).unwrap();
        if accessed() == long_ago {
            eprintln!("this file system does not update access times: nothing to compare");
            return;
        }
        set_old();
        let file = open_to_read(&path).unwrap();
        let mut buffer = [0u8; 64];
        assert_eq!(file.read_at(&mut buffer, 0).unwrap(), 8);
        assert_eq!(accessed(), long_ago);
    }

    /// gzip fills a file between our `stat` and our first read of it: it is
    /// a gzip file whatever the size seen at open, and a file opened empty
    /// that fills with gzip never gets a text identity.
    #[test]
    fn a_file_that_becomes_gzip_while_being_opened_is_never_taken_for_text() {
        let gzip = crate::follow::tests::gzip_bytes("line\n");
        let named = tempfile::NamedTempFile::new().unwrap();
        let empty = named.as_file().metadata().unwrap();
        std::fs::write(named.path(), &gzip).unwrap();
        let file = File::open(named.path()).unwrap();
        let source = Source::from_parts(file, &empty, 1).unwrap();
        assert!(source.is_compressed());

        let named = tempfile::NamedTempFile::new().unwrap();
        let (mut source, _) = Source::open(named.path(), 1).unwrap();
        assert!(!source.is_compressed() && source.head.is_empty());
        std::fs::write(named.path(), &gzip[..1]).unwrap();
        source.extend_head().unwrap();
        assert!(source.head.is_empty(), "half a magic");
        assert!(!source.turned_out_compressed().unwrap());
        std::fs::write(named.path(), &gzip).unwrap();
        source.extend_head().unwrap();
        assert!(source.head.is_empty(), "{:?}", source.head);
        assert!(source.turned_out_compressed().unwrap());
    }

    /// `before` (what recognises the stream in a copy) is cut from the bytes
    /// just read instead of read again: it must still be the file's bytes
    /// before `line_start`, whatever the reads' sizes, pauses and
    /// incomplete last lines.
    #[test]
    fn the_bytes_before_the_read_position_are_the_files_own() {
        for (buf_size, pause_every) in [(7, 0), (100, 3), (700, 0), (4096, 2), (65536, 0)] {
            let (named, mut source) = source_with(b"");
            let mut written: Vec<u8> = Vec::new();
            let mut buf = vec![0; buf_size];
            let mut events = 0usize;
            for round in 0..40usize {
                let mut append = Vec::new();
                for line in 0..round % 7 {
                    let len = (round * 37 + line * 11) % 300;
                    append.extend(std::iter::repeat_n(b'a' + (line % 26) as u8, len));
                    append.push(b'\n');
                }
                if round % 5 == 0 {
                    // A line longer than the window, and an incomplete one.
                    append.extend(std::iter::repeat_n(b'L', 1500));
                    append.extend_from_slice(b"\npartial");
                }
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(named.path())
                    .unwrap()
                    .write_all(&append)
                    .unwrap();
                written.extend_from_slice(&append);
                source
                    .read(
                        Path::new("f"),
                        &mut buf,
                        1 << 20,
                        LongLines::Cut,
                        u64::MAX,
                        &mut |_| {
                            events += 1;
                            Ok(if pause_every > 0 && events % pause_every == 0 {
                                Flow::Pause
                            } else {
                                Flow::Continue
                            })
                        },
                    )
                    .unwrap();
                let end = source.line_start as usize;
                let expected = &written[end.saturating_sub(FINGERPRINT_BYTES as usize)..end];
                assert_eq!(
                    source.before, expected,
                    "buffer {buf_size}, round {round}, line_start {end}"
                );
            }
        }
    }

    /// Reads `bytes` in split mode with a `buf_size` buffer to the end of
    /// the file, pausing after every event when `pause`, then lets the file
    /// go; checks the checkpoint after every read.
    fn split(bytes: &[u8], buf_size: usize, max: usize, pause: bool) -> Pieces {
        let (_named, mut source) = source_with(bytes);
        let mut buf = vec![0; buf_size];
        let path = Path::new("f");
        let mut pieces = Pieces::new();
        let sink = |pieces: &mut Pieces, event: Event<'_>| {
            let Event::Line {
                line,
                partial,
                truncated,
                ..
            } = event
            else {
                unreachable!("only lines here")
            };
            assert!(!truncated, "split mode cuts nothing");
            assert!(line.len() <= max, "a piece of {} > {max}", line.len());
            pieces.push((line.to_vec(), partial));
            Ok(if pause { Flow::Pause } else { Flow::Continue })
        };
        loop {
            let end = source
                .read(
                    path,
                    &mut buf,
                    max,
                    LongLines::Split,
                    u64::MAX,
                    &mut |event| sink(&mut pieces, event),
                )
                .unwrap();
            // The checkpoint is just after everything handed over (a last
            // piece stands for its line's newline too), inside a line or not.
            let handed: u64 = pieces
                .iter()
                .map(|(piece, partial)| piece.len() as u64 + u64::from(!partial))
                .sum();
            assert_eq!(source.line_start, handed, "{pieces:?}");
            if end == ReadEnd::Eof {
                break;
            }
        }
        source
            .flush_pending(path, &mut |event| sink(&mut pieces, event))
            .unwrap();
        pieces
    }

    /// The pieces put back together, each line ended by `\n`.
    fn joined(pieces: &Pieces) -> Vec<u8> {
        let mut out = Vec::new();
        for (piece, partial) in pieces {
            out.extend_from_slice(piece);
            if !partial {
                out.push(b'\n');
            }
        }
        out
    }

    #[test]
    fn split_mode_hands_long_lines_over_whole_in_bounded_pieces() {
        // Lines of every length around the limits, an empty one, and a last
        // line without newline, read through buffers smaller and larger
        // than the lines.
        let mut text = Vec::new();
        for length in [0, 1, 3, 4, 5, 8, 9, 13, 40] {
            text.extend((0..length).map(|i| b'a' + (i % 26) as u8));
            text.push(b'\n');
        }
        text.extend_from_slice(b"no newline at the end");
        let mut expected = text.clone();
        expected.push(b'\n');
        for buf_size in [1, 2, 3, 7, 64] {
            for max in [1, 4, 5, 100] {
                for pause in [false, true] {
                    let pieces = split(&text, buf_size, max, pause);
                    assert_eq!(
                        joined(&pieces),
                        expected,
                        "buffer {buf_size}, max {max}, pause {pause}"
                    );
                    // One last piece per line: nothing split across lines.
                    assert_eq!(pieces.iter().filter(|(_, partial)| !partial).count(), 10);
                }
            }
        }
    }

    #[test]
    fn pieces_are_full_size_but_the_last() {
        let pieces = split(b"abcdefghij\nxy\n", 64, 4, false);
        let texts: Vec<(&[u8], bool)> = pieces
            .iter()
            .map(|(piece, partial)| (piece.as_slice(), *partial))
            .collect();
        assert_eq!(
            texts,
            [
                (&b"abcd"[..], true),
                (b"efgh", true),
                (b"ij", false),
                (b"xy", false)
            ]
        );
    }

    #[test]
    fn a_long_last_line_without_newline_is_ended_when_the_file_is_let_go() {
        let pieces = split(b"abcdefghi", 64, 3, false);
        assert_eq!(
            pieces,
            [
                (b"abc".to_vec(), true),
                (b"def".to_vec(), true),
                (b"ghi".to_vec(), false),
            ]
        );
        // Let go right after a piece (paused, then truncated): nothing is
        // held, yet the line is open, and an empty last piece ends it.
        let (_named, mut source) = source_with(b"abcdefghij");
        let mut pieces = Pieces::new();
        let mut sink = |event: Event<'_>| {
            if let Event::Line { line, partial, .. } = event {
                pieces.push((line.to_vec(), partial));
            }
            Ok(Flow::Pause)
        };
        let end = source.read(
            Path::new("f"),
            &mut [0; 64],
            4,
            LongLines::Split,
            u64::MAX,
            &mut sink,
        );
        assert_eq!(end.unwrap(), ReadEnd::Paused);
        source.flush_pending(Path::new("f"), &mut sink).unwrap();
        assert_eq!(pieces, [(b"abcd".to_vec(), true), (Vec::new(), false)]);
    }

    #[test]
    fn cut_mode_is_unchanged_by_default() {
        let (_named, mut source) = source_with(b"abcdefgh\nok\n");
        let mut lines = Vec::new();
        source
            .read(
                Path::new("f"),
                &mut [0; 3],
                4,
                LongLines::Cut,
                u64::MAX,
                &mut |event| {
                    if let Event::Line {
                        line,
                        truncated,
                        partial,
                        ..
                    } = event
                    {
                        assert!(!partial);
                        lines.push((line.to_vec(), truncated));
                    }
                    Ok(Flow::Continue)
                },
            )
            .unwrap();
        assert_eq!(lines, [(b"abcd".to_vec(), true), (b"ok".to_vec(), false)]);
    }

    #[test]
    fn a_refused_piece_is_handed_over_again() {
        let (_named, mut source) = source_with(b"abcdefghij\n");
        let mut buf = [0; 3];
        let mut calls = 0;
        let error = source
            .read(
                Path::new("f"),
                &mut buf,
                4,
                LongLines::Split,
                u64::MAX,
                &mut |_| {
                    calls += 1;
                    if calls == 2 {
                        Err(io::Error::other("stdout full"))
                    } else {
                        Ok(Flow::Continue)
                    }
                },
            )
            .unwrap_err();
        assert_eq!(error.to_string(), "stdout full");
        assert_eq!(source.line_start, 4, "only the first piece was accepted");
        let mut pieces = Pieces::new();
        source
            .read(
                Path::new("f"),
                &mut buf,
                4,
                LongLines::Split,
                u64::MAX,
                &mut |event| {
                    if let Event::Line { line, partial, .. } = event {
                        pieces.push((line.to_vec(), partial));
                    }
                    Ok(Flow::Continue)
                },
            )
            .unwrap();
        assert_eq!(pieces, [(b"efgh".to_vec(), true), (b"ij".to_vec(), false)]);
    }
}
