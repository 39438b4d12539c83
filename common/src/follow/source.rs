//! One open file being read: its descriptor, its read position and the
//! incomplete line at its end.
//!
//! Invariants: `line_start <= pos`; the bytes `line_start..pos` have been
//! read but not handed to the sink (the incomplete last line, or the end of
//! it), and `pending` holds the first `max_line_bytes` of them (`overflow`
//! says some were dropped). `line_start` moves only once the sink accepted
//! what comes before it, so a checkpoint at `line_start` never skips or
//! repeats a byte handed over. Reads are positional (`pread`), so a pause
//! or an error leaves nothing half-consumed.
//!
//! Two ways to treat a line longer than `max_line_bytes`:
//! - cut (the default): its first `max_line_bytes` are handed over, flagged
//!   `truncated`, and the rest up to the newline is skipped. A line is handed
//!   over only whole, with its newline (or by [`Source::flush_pending`] when
//!   the file will not be read further), so `line_start` is always the start
//!   of a line.
//! - split ([`super::FollowOptions::split_long_lines`]): it is handed over in
//!   pieces of `max_line_bytes`, each flagged `partial` but the last (which
//!   may be empty), and nothing is cut. Memory stays bounded the same way:
//!   no more than `max_line_bytes` of a line is ever held. Each accepted
//!   piece moves `line_start` past it, so a checkpoint may fall inside a
//!   line: everything before it was handed over (the line's first pieces),
//!   and resuming there hands over the rest of that line as a line of its
//!   own (its first piece is not marked as a continuation). `mid_line` says
//!   pieces of the current line went out, so the line is still ended (by an
//!   empty last piece) when the file is let go right after a piece.

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
    /// Split mode: pieces of the line at `line_start` were handed over
    /// already; its last piece (`partial: false`) is still owed.
    mid_line: bool,
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
            mid_line: false,
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
            mid_line: false,
            at_eof: false,
        })
    }

    /// Starts reading at `offset`, which must be the start of a line (or, in
    /// split mode, a checkpoint inside one: see the module documentation).
    pub(super) fn seek(&mut self, offset: u64) {
        self.pos = offset;
        self.line_start = offset;
        self.pending.clear();
        self.overflow = false;
        self.mid_line = false;
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
    /// handing every complete line to `sink`; a line longer than
    /// `max_line_bytes` is cut, or with `split` handed over in pieces.
    pub(super) fn read(
        &mut self,
        path: &Path,
        buf: &mut [u8],
        max_line_bytes: usize,
        split: bool,
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
            let flow = if split {
                self.split_chunk(path, chunk, max_line_bytes, sink)?
            } else {
                self.cut_chunk(path, chunk, max_line_bytes, sink)?
            };
            if flow == Flow::Pause {
                return Ok(ReadEnd::Paused);
            }
        }
    }

    /// Hands over the lines `chunk` (read at `pos`) completes, cutting long
    /// ones; keeps the bounded head of its incomplete last line.
    fn cut_chunk(
        &mut self,
        path: &Path,
        chunk: &[u8],
        max_line_bytes: usize,
        sink: &mut dyn FnMut(Event<'_>) -> io::Result<Flow>,
    ) -> io::Result<Flow> {
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
                    partial: false,
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
                    partial: false,
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
                return Ok(Flow::Pause);
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
        self.pos = base + chunk.len() as u64;
        Ok(Flow::Continue)
    }

    /// Split mode's [`Source::cut_chunk`]: what goes beyond `max_line_bytes`
    /// of a line is handed over in pieces instead of being cut.
    fn split_chunk(
        &mut self,
        path: &Path,
        chunk: &[u8],
        max_line_bytes: usize,
        sink: &mut dyn FnMut(Event<'_>) -> io::Result<Flow>,
    ) -> io::Result<Flow> {
        let base = self.pos;
        let mut start = 0;
        while start < chunk.len() {
            let newline = memchr::memchr(b'\n', &chunk[start..]).map(|found| start + found);
            let end = newline.unwrap_or(chunk.len());
            // The bytes of the current line in this chunk, and their offset.
            let mut data = &chunk[start..end];
            let mut at = base + start as u64;
            // More than `max_line_bytes` of this line: a full piece goes out
            // now (the held head topped up, or straight from the buffer).
            // What is left afterwards (at most `max_line_bytes`) is the last
            // piece if the newline is here, or is held otherwise.
            while self.pending.len() + data.len() > max_line_bytes {
                let flow = if self.pending.is_empty() {
                    let (piece, rest) = data.split_at(max_line_bytes);
                    let flow = sink(Event::Line {
                        path,
                        line: piece,
                        truncated: false,
                        partial: true,
                    })?;
                    data = rest;
                    at += piece.len() as u64;
                    flow
                } else {
                    let kept = self.pending.len();
                    let take = max_line_bytes - kept;
                    self.pending.extend_from_slice(&data[..take]);
                    let flow = match sink(Event::Line {
                        path,
                        line: &self.pending,
                        truncated: false,
                        partial: true,
                    }) {
                        Ok(flow) => flow,
                        Err(error) => {
                            self.pending.truncate(kept);
                            return Err(error);
                        }
                    };
                    self.pending.clear();
                    data = &data[take..];
                    at += take as u64;
                    flow
                };
                // Accepted: the piece is behind us (a checkpoint inside the line).
                self.pos = at;
                self.line_start = at;
                self.mid_line = true;
                if flow == Flow::Pause {
                    return Ok(Flow::Pause);
                }
            }
            let Some(newline) = newline else {
                self.pending.extend_from_slice(data);
                self.pos = base + chunk.len() as u64;
                return Ok(Flow::Continue);
            };
            let kept = self.pending.len();
            let line = if kept == 0 {
                data
            } else {
                self.pending.extend_from_slice(data);
                &self.pending
            };
            let flow = match sink(Event::Line {
                path,
                line,
                truncated: false,
                partial: false,
            }) {
                Ok(flow) => flow,
                Err(error) => {
                    self.pending.truncate(kept);
                    return Err(error);
                }
            };
            self.pending.clear();
            self.mid_line = false;
            self.pos = base + newline as u64 + 1;
            self.line_start = self.pos;
            start = newline + 1;
            if flow == Flow::Pause {
                return Ok(Flow::Pause);
            }
        }
        self.pos = base + chunk.len() as u64;
        Ok(Flow::Continue)
    }

    /// Hands the incomplete last line (if any) to `sink` as a line: used when
    /// the file will not grow any more for us (released, truncated, shutdown).
    pub(super) fn flush_pending(
        &mut self,
        path: &Path,
        sink: &mut dyn FnMut(Event<'_>) -> io::Result<Flow>,
    ) -> io::Result<Flow> {
        if self.line_start == self.pos && !self.mid_line {
            return Ok(Flow::Continue);
        }
        let flow = sink(Event::Line {
            path,
            line: &self.pending,
            truncated: self.overflow,
            partial: false,
        })?;
        self.pending.clear();
        self.overflow = false;
        self.mid_line = false;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    type Pieces = Vec<(Vec<u8>, bool)>;

    fn source_with(bytes: &[u8]) -> (tempfile::NamedTempFile, Source) {
        let mut named = tempfile::NamedTempFile::new().unwrap();
        named.write_all(bytes).unwrap();
        let (source, _) = Source::open(named.path()).unwrap();
        (named, source)
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
                .read(path, &mut buf, max, true, u64::MAX, &mut |event| {
                    sink(&mut pieces, event)
                })
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
        let end = source.read(Path::new("f"), &mut [0; 64], 4, true, u64::MAX, &mut sink);
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
                false,
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
            .read(Path::new("f"), &mut buf, 4, true, u64::MAX, &mut |_| {
                calls += 1;
                if calls == 2 {
                    Err(io::Error::other("stdout full"))
                } else {
                    Ok(Flow::Continue)
                }
            })
            .unwrap_err();
        assert_eq!(error.to_string(), "stdout full");
        assert_eq!(source.line_start, 4, "only the first piece was accepted");
        let mut pieces = Pieces::new();
        source
            .read(Path::new("f"), &mut buf, 4, true, u64::MAX, &mut |event| {
                if let Event::Line { line, partial, .. } = event {
                    pieces.push((line.to_vec(), partial));
                }
                Ok(Flow::Continue)
            })
            .unwrap();
        assert_eq!(pieces, [(b"efgh".to_vec(), true), (b"ij".to_vec(), false)]);
    }
}
