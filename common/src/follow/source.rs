//! One open file being read: its descriptor, its read position and the
//! incomplete line at its end.
//!
//! Invariants: `line_start <= pos`; the bytes `line_start..pos` have been
//! read but not handed to the sink (the incomplete last line), and `pending`
//! holds the first `max_line_bytes` of them (`overflow` says some were
//! dropped). A line is handed to the sink only with its newline (or by
//! [`Source::flush_pending`] when the file will not be read further), and
//! `line_start` moves past it only once the sink accepted it, so a checkpoint
//! at `line_start` never skips or repeats a line. Reads are positional
//! (`pread`), so a pause or an error leaves nothing half-consumed.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use super::{Event, FileId, Flow};

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
    pending: Vec<u8>,
    overflow: bool,
    /// The last read found nothing more: the pending bytes are the file's
    /// incomplete last line, not the head of a line we have not read yet.
    pub(super) at_eof: bool,
}

impl Source {
    /// Opens `path` for reading; returns the source (at offset 0) and the
    /// metadata of the descriptor actually opened (the path may have been
    /// replaced between a `stat` and this `open`).
    pub(super) fn open(path: &Path) -> io::Result<(Self, Metadata)> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            ));
        }
        let source = Self {
            id: FileId::of(&meta),
            file,
            pos: 0,
            line_start: 0,
            pending: Vec::new(),
            overflow: false,
            at_eof: false,
        };
        Ok((source, meta))
    }

    /// Wraps a file the caller opened (and examined).
    pub(super) fn from_file(file: File) -> io::Result<Self> {
        let meta = file.metadata()?;
        Ok(Self {
            id: FileId::of(&meta),
            file,
            pos: 0,
            line_start: 0,
            pending: Vec::new(),
            overflow: false,
            at_eof: false,
        })
    }

    /// Starts reading at `offset`, which must be the start of a line.
    pub(super) fn seek(&mut self, offset: u64) {
        self.pos = offset;
        self.line_start = offset;
        self.pending.clear();
        self.overflow = false;
        self.at_eof = false;
    }

    /// See [`fingerprint`].
    pub(super) fn fingerprint(&self, upto: u64) -> io::Result<u64> {
        fingerprint(&self.file, upto)
    }

    /// Whether the descriptor's file has no name left (deleted).
    pub(super) fn unlinked(meta: &Metadata) -> bool {
        meta.nlink() == 0
    }

    /// Reads from `pos` until end of file, `budget` bytes, or a pause,
    /// handing every complete line to `sink`.
    pub(super) fn read(
        &mut self,
        path: &Path,
        buf: &mut [u8],
        max_line_bytes: usize,
        budget: u64,
        sink: &mut dyn FnMut(Event<'_>) -> io::Result<Flow>,
    ) -> io::Result<ReadEnd> {
        let mut read_total: u64 = 0;
        loop {
            if read_total >= budget {
                self.at_eof = false;
                return Ok(ReadEnd::Budget);
            }
            let n = match self.file.read_at(buf, self.pos) {
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            if n == 0 {
                self.at_eof = true;
                return Ok(ReadEnd::Eof);
            }
            self.at_eof = false;
            read_total += n as u64;
            let chunk = &buf[..n];
            let base = self.pos;
            let mut start = 0;
            while let Some(found) = memchr::memchr(b'\n', &chunk[start..]) {
                let end = start + found;
                let piece = &chunk[start..end];
                let flow = if self.pending.is_empty() && !self.overflow {
                    // The common case: the whole line is in the buffer, no copy.
                    let (line, truncated) = if piece.len() > max_line_bytes {
                        (&piece[..max_line_bytes], true)
                    } else {
                        (piece, false)
                    };
                    sink(Event::Line {
                        path,
                        line,
                        truncated,
                    })?
                } else {
                    let kept = self.pending.len();
                    let take = max_line_bytes.saturating_sub(kept).min(piece.len());
                    self.pending.extend_from_slice(&piece[..take]);
                    let truncated = self.overflow || take < piece.len();
                    match sink(Event::Line {
                        path,
                        line: &self.pending,
                        truncated,
                    }) {
                        Ok(flow) => flow,
                        Err(error) => {
                            // Not accepted: leave the state as it was before this line.
                            self.pending.truncate(kept);
                            return Err(error);
                        }
                    }
                };
                self.pending.clear();
                self.overflow = false;
                self.pos = base + end as u64 + 1;
                self.line_start = self.pos;
                start = end + 1;
                if flow == Flow::Pause {
                    return Ok(ReadEnd::Paused);
                }
            }
            let rest = &chunk[start..];
            let take = max_line_bytes
                .saturating_sub(self.pending.len())
                .min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            if take < rest.len() {
                // Memory stays bounded: the rest of an overlong line is skipped.
                self.overflow = true;
            }
            self.pos = base + n as u64;
        }
    }

    /// Hands the incomplete last line (if any) to `sink` as a line: used when
    /// the file will not grow any more for us (released, truncated, shutdown).
    pub(super) fn flush_pending(
        &mut self,
        path: &Path,
        sink: &mut dyn FnMut(Event<'_>) -> io::Result<Flow>,
    ) -> io::Result<Flow> {
        if self.line_start == self.pos {
            return Ok(Flow::Continue);
        }
        let flow = sink(Event::Line {
            path,
            line: &self.pending,
            truncated: self.overflow,
        })?;
        self.pending.clear();
        self.overflow = false;
        self.line_start = self.pos;
        Ok(flow)
    }
}

/// FNV-1a of the first `min(upto, FINGERPRINT_BYTES)` bytes of `file`.
pub(super) fn fingerprint(file: &File, upto: u64) -> io::Result<u64> {
    let mut head = vec![0u8; upto.min(super::FINGERPRINT_BYTES) as usize];
    file.read_exact_at(&mut head, 0)?;
    Ok(head.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    }))
}
