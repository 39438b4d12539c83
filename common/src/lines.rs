//! Splitting a byte stream into lines, bounded: the one splitter of the
//! workspace, used by the file follower ([`crate::follow`]), by the
//! adapter for stdin and FIFOs, and by log-aggregator's snapshot mode.
//!
//! The stream comes in chunks of any size; a line is handed to a sink
//! without its `\n`. The splitter owns the head of the incomplete line at
//! the end of the last chunk (`pending`, never more than `max_line_bytes`),
//! how many bytes of that line were dropped (`dropped`), and whether pieces
//! of it went out already (`mid_line`). Two ways to treat a line longer than
//! `max_line_bytes` ([`LongLines`]):
//! - cut: its first `max_line_bytes` are handed over flagged `truncated`
//!   and the rest up to the newline is skipped. A line is handed over only
//!   once its newline is seen (or by [`LineSplitter::finish`]), so "just
//!   after the last accepted line" is always the start of a line.
//! - split: it is handed over in pieces of `max_line_bytes` flagged
//!   `partial`, the last one (at most `max_line_bytes`, maybe empty)
//!   unflagged; nothing is cut.
//!
//! A whole line inside a chunk is handed over from the chunk itself, never
//! copied: that is the follower's throughput. Only a line spanning chunks is
//! gathered in `pending`.
//!
//! The sink may ask to stop ([`Flow::Pause`]) or fail; either way the
//! splitter says how far into the chunk it got: just after the last line or
//! piece the sink accepted. Its state then describes exactly the bytes up
//! to there (a refused line is not half-taken: the state is as before it),
//! so the caller feeds the rest of the chunk again later, or re-reads it
//! from its file at that offset; a checkpoint taken there never skips or
//! repeats a byte.

use crate::follow::Flow;

/// What to do with a line longer than the maximum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LongLines {
    /// Hand over its first `max_line_bytes`, flagged `truncated`; skip the rest.
    #[default]
    Cut,
    /// Hand it over in pieces of `max_line_bytes`, each but the last flagged `partial`.
    Split,
    /// As `Split` for a line that spans chunks; the whole lines a chunk
    /// holds besides go out together, as one run ([`Line::lines`] of
    /// them, joined by `\n`), whatever their length: for a sink that copies
    /// bytes, where one call per line is the cost (`tail`, plain output).
    Runs,
}

/// A line (or a piece of one, in split mode) handed to the sink, without
/// its `\n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    pub bytes: &'a [u8],
    /// Cut mode: the line was longer; these are its first `max_line_bytes`.
    pub truncated: bool,
    /// Cut mode: how many bytes of the line were dropped (0 unless `truncated`).
    pub dropped: u64,
    /// Split mode: more of this line follows.
    pub partial: bool,
    /// Runs mode: how many lines `bytes` holds, joined by `\n` (the last
    /// one's newline left out, as for a single line); 1 otherwise, a piece
    /// counting as one.
    pub lines: usize,
}

/// How far a [`LineSplitter::feed`] got into its chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fed {
    /// [`Flow::Pause`]: the sink asked to stop; the bytes from `taken` on
    /// were not looked at and must be fed again.
    pub flow: Flow,
    /// Bytes of the chunk taken: all of it, or up to the pause.
    pub taken: usize,
    /// Just after the last line or piece the sink accepted in this chunk;
    /// `None` if it accepted none.
    pub accepted: Option<usize>,
}

/// The sink failed: its error, and how far into the chunk it had accepted.
/// The bytes from [`Refused::taken`] on were not taken: the refused line
/// stays as it was before it was offered.
#[derive(Debug)]
pub struct Refused<E> {
    pub error: E,
    /// Just after the last line or piece accepted before the error.
    pub accepted: Option<usize>,
}

impl<E> Refused<E> {
    /// Bytes of the chunk taken before the error.
    pub fn taken(&self) -> usize {
        self.accepted.unwrap_or(0)
    }
}

/// Splits chunks of a stream into lines of at most `max_line_bytes`.
#[derive(Debug)]
pub struct LineSplitter {
    max_line_bytes: usize,
    long_lines: LongLines,
    /// The head of the incomplete line (at most `max_line_bytes`).
    pending: Vec<u8>,
    /// Cut mode: bytes of the incomplete line dropped beyond `pending`.
    dropped: u64,
    /// Split mode: pieces of the incomplete line went out already; its last
    /// piece (`partial: false`) is still owed.
    mid_line: bool,
}

impl LineSplitter {
    /// A splitter with lines of at most `max_line_bytes` (at least 1).
    pub fn new(max_line_bytes: usize, long_lines: LongLines) -> Self {
        Self {
            max_line_bytes: max_line_bytes.max(1),
            long_lines,
            pending: Vec::new(),
            dropped: 0,
            mid_line: false,
        }
    }

    /// Changes the limit and mode. Meant for a caller whose options come
    /// with each read (they do not change while a line is held).
    pub fn set_limit(&mut self, max_line_bytes: usize, long_lines: LongLines) {
        self.max_line_bytes = max_line_bytes.max(1);
        self.long_lines = long_lines;
    }

    /// Whether bytes of an incomplete line were taken and its end (or its
    /// last piece) is still owed.
    pub fn holds_line(&self) -> bool {
        !self.pending.is_empty() || self.dropped > 0 || self.mid_line
    }

    /// Whether the rest of a long line is being skipped or handed over in
    /// pieces: feeding that line again from its start would repeat its
    /// first part.
    pub fn mid_long_line(&self) -> bool {
        self.dropped > 0 || self.mid_line
    }

    /// Forgets the incomplete line: the next chunk starts a line.
    pub fn reset(&mut self) {
        self.pending.clear();
        self.dropped = 0;
        self.mid_line = false;
    }

    /// Hands every line (or piece) `chunk` completes to `sink`, and keeps
    /// the bounded head of its incomplete last line.
    pub fn feed<E>(
        &mut self,
        chunk: &[u8],
        sink: impl FnMut(Line<'_>) -> Result<Flow, E>,
    ) -> Result<Fed, Refused<E>> {
        // The sink by value, not behind a reference: it is called for
        // every line.
        match self.long_lines {
            LongLines::Cut => self.cut(chunk, sink),
            LongLines::Split => self.split(chunk, false, sink),
            LongLines::Runs => self.split(chunk, true, sink),
        }
    }

    /// End of the stream (or of reading it): hands the incomplete last line
    /// over, if any (`None` if none). After pieces of a line, its last piece
    /// may be empty. A sink error leaves the line held.
    pub fn finish<E>(
        &mut self,
        mut sink: impl FnMut(Line<'_>) -> Result<Flow, E>,
    ) -> Result<Option<Flow>, E> {
        if !self.holds_line() {
            return Ok(None);
        }
        let flow = sink(Line {
            bytes: &self.pending,
            truncated: self.dropped > 0,
            dropped: self.dropped,
            partial: false,
            lines: 1,
        })?;
        self.reset();
        Ok(Some(flow))
    }

    /// Takes the incomplete last line out instead of handing it over: its
    /// bytes and whether it was cut (`None` if none).
    pub fn take(&mut self) -> Option<(Vec<u8>, bool)> {
        if !self.holds_line() {
            return None;
        }
        let taken = (std::mem::take(&mut self.pending), self.dropped > 0);
        self.reset();
        Some(taken)
    }

    /// Hands the held head of the line followed by `bytes` to `sink`:
    /// straight from the chunk when nothing is held (the common case, no
    /// copy), else gathered in `pending`. A refusal leaves `pending` as it
    /// was before, so the line is offered again whole.
    fn hand_over<E>(
        &mut self,
        bytes: &[u8],
        dropped: u64,
        partial: bool,
        sink: &mut impl FnMut(Line<'_>) -> Result<Flow, E>,
    ) -> Result<Flow, E> {
        let kept = self.pending.len();
        if kept == 0 {
            return sink(Line {
                bytes,
                truncated: dropped > 0,
                dropped,
                partial,
                lines: 1,
            });
        }
        self.pending.extend_from_slice(bytes);
        let result = sink(Line {
            bytes: &self.pending,
            truncated: dropped > 0,
            dropped,
            partial,
            lines: 1,
        });
        if result.is_err() {
            self.pending.truncate(kept);
        }
        result
    }

    fn cut<E>(
        &mut self,
        chunk: &[u8],
        mut sink: impl FnMut(Line<'_>) -> Result<Flow, E>,
    ) -> Result<Fed, Refused<E>> {
        let max = self.max_line_bytes;
        // Just after the last accepted line: a line ends with its newline,
        // so nothing was accepted while this is 0.
        let mut start = 0;
        let accepted = |start: usize| (start > 0).then_some(start);
        while let Some(found) = memchr::memchr(b'\n', &chunk[start..]) {
            let end = start + found;
            let piece = &chunk[start..end];
            let take = max.saturating_sub(self.pending.len()).min(piece.len());
            let dropped = self.dropped + (piece.len() - take) as u64;
            let result = self.hand_over(&piece[..take], dropped, false, &mut sink);
            let flow = result.map_err(|error| Refused {
                error,
                accepted: accepted(start),
            })?;
            self.pending.clear();
            self.dropped = 0;
            start = end + 1;
            if flow == Flow::Pause {
                return Ok(Fed {
                    flow,
                    taken: start,
                    accepted: accepted(start),
                });
            }
        }
        let rest = &chunk[start..];
        let take = max.saturating_sub(self.pending.len()).min(rest.len());
        self.pending.extend_from_slice(&rest[..take]);
        // Memory stays bounded: the rest of an overlong line is skipped.
        self.dropped += (rest.len() - take) as u64;
        Ok(Fed {
            flow: Flow::Continue,
            taken: chunk.len(),
            accepted: accepted(start),
        })
    }

    /// `runs`: see [`LongLines::Runs`].
    fn split<E>(
        &mut self,
        chunk: &[u8],
        runs: bool,
        mut sink: impl FnMut(Line<'_>) -> Result<Flow, E>,
    ) -> Result<Fed, Refused<E>> {
        let max = self.max_line_bytes;
        // Just after the last accepted line (0: none yet), and just after
        // the last accepted piece: a piece may end at 0 (a held head topped
        // up by nothing), and a later line always ends after it.
        let mut start = 0;
        let mut piece_end = None;
        let accepted =
            |start: usize, piece_end: Option<usize>| piece_end.max((start > 0).then_some(start));
        while start < chunk.len() {
            // With no newline left, the incomplete last line is below.
            if runs
                && !self.holds_line()
                && let Some(last) = memchr::memrchr(b'\n', &chunk[start..])
            {
                let run = &chunk[start..start + last];
                let line = Line {
                    bytes: run,
                    truncated: false,
                    dropped: 0,
                    partial: false,
                    lines: memchr::memchr_iter(b'\n', run).count() + 1,
                };
                let flow = sink(line).map_err(|error| Refused {
                    error,
                    accepted: accepted(start, piece_end),
                })?;
                start += last + 1;
                if flow == Flow::Pause {
                    return Ok(Fed {
                        flow,
                        taken: start,
                        accepted: Some(start),
                    });
                }
                continue;
            }
            let newline = memchr::memchr(b'\n', &chunk[start..]).map(|found| start + found);
            let end = newline.unwrap_or(chunk.len());
            // The bytes of the current line in this chunk not yet handed over.
            let mut data = &chunk[start..end];
            // More than `max` of this line: a full piece goes out now (the
            // held head topped up, or straight from the chunk). What is left
            // afterwards (at most `max`) is the last piece if the newline is
            // here, or is held otherwise.
            while self.pending.len() + data.len() > max {
                let (piece, rest) = data.split_at(max - self.pending.len());
                let result = self.hand_over(piece, 0, true, &mut sink);
                let flow = result.map_err(|error| Refused {
                    error,
                    accepted: accepted(start, piece_end),
                })?;
                // Accepted: the piece is behind us (a checkpoint inside the line).
                self.pending.clear();
                self.mid_line = true;
                data = rest;
                piece_end = Some(end - data.len());
                if flow == Flow::Pause {
                    return Ok(Fed {
                        flow,
                        taken: end - data.len(),
                        accepted: piece_end,
                    });
                }
            }
            let Some(newline) = newline else {
                self.pending.extend_from_slice(data);
                break;
            };
            let result = self.hand_over(data, 0, false, &mut sink);
            let flow = result.map_err(|error| Refused {
                error,
                accepted: accepted(start, piece_end),
            })?;
            self.pending.clear();
            self.mid_line = false;
            start = newline + 1;
            if flow == Flow::Pause {
                return Ok(Fed {
                    flow,
                    taken: start,
                    accepted: Some(start),
                });
            }
        }
        Ok(Fed {
            flow: Flow::Continue,
            taken: chunk.len(),
            accepted: accepted(start, piece_end),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A line as the sink saw it: its text, `truncated`, `partial`.
    type Seen = (String, bool, bool);

    fn seen(line: Line<'_>) -> Seen {
        (
            String::from_utf8_lossy(line.bytes).into_owned(),
            line.truncated,
            line.partial,
        )
    }

    /// Feeds `chunks` (the sink always continues), then finishes.
    fn split(max: usize, long_lines: LongLines, chunks: &[&[u8]]) -> Vec<Seen> {
        let mut splitter = LineSplitter::new(max, long_lines);
        let mut lines = Vec::new();
        let mut collect = |line: Line<'_>| {
            lines.push(seen(line));
            Ok::<_, ()>(Flow::Continue)
        };
        for chunk in chunks {
            let fed = splitter.feed(chunk, &mut collect).unwrap();
            assert_eq!((fed.flow, fed.taken), (Flow::Continue, chunk.len()));
        }
        splitter.finish(&mut collect).unwrap();
        lines
    }

    fn line(text: &str) -> Seen {
        (text.into(), false, false)
    }

    #[test]
    fn lines_across_chunks_and_a_last_line_without_newline() {
        assert_eq!(
            split(100, LongLines::Cut, &[b"one\ntw", b"o\n\nthr", b"ee"]),
            [line("one"), line("two"), line(""), line("three")]
        );
    }

    #[test]
    fn long_lines_are_cut_once_and_the_rest_skipped() {
        assert_eq!(
            split(4, LongLines::Cut, &[b"abcdefgh", b"ijk\nok\nlonger\n"]),
            [
                ("abcd".into(), true, false),
                line("ok"),
                ("long".into(), true, false)
            ]
        );
    }

    #[test]
    fn a_line_spanning_chunks_is_gathered_and_cut_at_the_limit() {
        // Whole across three chunks, then too long across two: the head
        // is kept bounded, the end of the line found in a later chunk.
        assert_eq!(
            split(
                5,
                LongLines::Cut,
                &[b"ab", b"c", b"de\nfgh", b"ijklm", b"n\n"]
            ),
            [line("abcde"), ("fghij".into(), true, false)]
        );
        // An overlong last line without newline is handed over cut at the end.
        assert_eq!(
            split(3, LongLines::Cut, &[b"x\nabcdef"]),
            [line("x"), ("abc".into(), true, false)]
        );
    }

    #[test]
    fn a_cut_line_says_how_many_bytes_were_dropped() {
        let mut splitter = LineSplitter::new(4, LongLines::Cut);
        let mut dropped = Vec::new();
        let mut collect = |line: Line<'_>| {
            dropped.push((line.bytes.to_vec(), line.dropped));
            Ok::<_, ()>(Flow::Continue)
        };
        for chunk in [&b"abcdefgh"[..], b"ij\nabcdef\nab", b"cd\nlast line"] {
            splitter.feed(chunk, &mut collect).unwrap();
        }
        splitter.finish(&mut collect).unwrap();
        assert_eq!(
            dropped,
            [
                (b"abcd".to_vec(), 6),
                (b"abcd".to_vec(), 2),
                (b"abcd".to_vec(), 0),
                (b"last".to_vec(), 5)
            ]
        );
    }

    #[test]
    fn split_mode_hands_pieces_of_max_bytes_the_last_unflagged() {
        assert_eq!(
            split(4, LongLines::Split, &[b"abcdefghij\nxy\nabcd", b"efgh\n"]),
            [
                ("abcd".into(), false, true),
                ("efgh".into(), false, true),
                line("ij"),
                line("xy"),
                ("abcd".into(), false, true),
                line("efgh"),
            ]
        );
        // A piece topped up from the next chunk; the last line ended by
        // the end of the stream.
        assert_eq!(
            split(3, LongLines::Split, &[b"ab", b"cdef"]),
            [("abc".into(), false, true), line("def")]
        );
    }

    #[test]
    fn runs_mode_hands_the_whole_lines_of_a_chunk_at_once_counted() {
        let mut splitter = LineSplitter::new(4, LongLines::Runs);
        let mut runs = Vec::new();
        let mut collect = |line: Line<'_>| {
            runs.push((seen(line), line.lines));
            Ok::<_, ()>(Flow::Continue)
        };
        for chunk in [&b"ab\ncdefgh\nij"[..], b"k\nl\nmnopqrs", b"t\n"] {
            splitter.feed(chunk, &mut collect).unwrap();
        }
        assert_eq!(
            runs,
            [
                // A long line inside a chunk is not cut into pieces.
                (line("ab\ncdefgh"), 2),
                // The line held from the chunk before, on its own...
                (line("ijk"), 1),
                // ...then the rest of the chunk's whole lines.
                (line("l"), 1),
                // A long incomplete last line goes in pieces, as in `Split`.
                (("mnop".into(), false, true), 1),
                (line("qrst"), 1),
            ]
        );
    }

    #[test]
    fn a_pause_mid_chunk_stops_just_after_the_accepted_line() {
        for long_lines in [LongLines::Cut, LongLines::Split] {
            let mut splitter = LineSplitter::new(4, long_lines);
            // A line held from the chunk before, completed by this one.
            splitter
                .feed(b"a", |_| Ok::<_, ()>(Flow::Continue))
                .unwrap();
            let mut lines = Vec::new();
            let chunk = b"b\ncc\ndd";
            let fed = splitter
                .feed(chunk, |line| {
                    lines.push(seen(line));
                    Ok::<_, ()>(Flow::Pause)
                })
                .unwrap();
            assert_eq!(
                fed,
                Fed {
                    flow: Flow::Pause,
                    taken: 2,
                    accepted: Some(2)
                }
            );
            assert_eq!(lines, [line("ab")]);
            assert!(!splitter.holds_line(), "nothing after the pause is taken");
            let fed = splitter
                .feed(&chunk[fed.taken..], |line| {
                    lines.push(seen(line));
                    Ok::<_, ()>(Flow::Continue)
                })
                .unwrap();
            assert_eq!(fed.accepted, Some(3));
            assert_eq!(fed.taken, 5);
            assert_eq!(lines, [line("ab"), line("cc")]);
            assert_eq!(splitter.take(), Some((b"dd".to_vec(), false)));
        }
    }

    #[test]
    fn a_pause_after_a_piece_stops_inside_the_line() {
        let mut splitter = LineSplitter::new(3, LongLines::Split);
        let fed = splitter
            .feed(b"abcdefg\n", |_| Ok::<_, ()>(Flow::Pause))
            .unwrap();
        assert_eq!((fed.taken, fed.accepted), (3, Some(3)));
        assert!(splitter.mid_long_line(), "the line's last piece is owed");
        let mut lines = Vec::new();
        splitter
            .feed(b"defg\n", |line| {
                lines.push(seen(line));
                Ok::<_, ()>(Flow::Continue)
            })
            .unwrap();
        assert_eq!(lines, [("def".into(), false, true), line("g")]);

        // Finished right after a piece: nothing is held, yet the line is
        // open, and an empty last piece ends it.
        let fed = splitter
            .feed(b"wxyz", |_| Ok::<_, ()>(Flow::Pause))
            .unwrap();
        assert_eq!(fed.taken, 3);
        let mut lines = Vec::new();
        splitter
            .finish(|line| {
                lines.push(seen(line));
                Ok::<_, ()>(Flow::Continue)
            })
            .unwrap();
        assert_eq!(lines, [line("")]);
    }

    #[test]
    fn a_refused_line_is_held_as_before_and_offered_again() {
        for long_lines in [LongLines::Cut, LongLines::Split] {
            let mut splitter = LineSplitter::new(8, long_lines);
            splitter
                .feed(b"abc", |_| Ok::<_, ()>(Flow::Continue))
                .unwrap();
            let mut calls = 0;
            let chunk = b"d\nef\ngh\n";
            let refused = splitter
                .feed(chunk, |_| {
                    calls += 1;
                    if calls == 2 {
                        Err("stdout full")
                    } else {
                        Ok(Flow::Continue)
                    }
                })
                .unwrap_err();
            assert_eq!(refused.error, "stdout full");
            assert_eq!((refused.accepted, refused.taken()), (Some(2), 2));
            let mut lines = Vec::new();
            splitter
                .feed(&chunk[refused.taken()..], |line| {
                    lines.push(seen(line));
                    Ok::<_, ()>(Flow::Continue)
                })
                .unwrap();
            assert_eq!(lines, [line("ef"), line("gh")]);

            // Refused as the first line of a chunk: the held head is kept
            // without the refused chunk's bytes.
            splitter
                .feed(b"xy", |_| Ok::<_, ()>(Flow::Continue))
                .unwrap();
            let refused = splitter.feed(b"z\n", |_| Err(())).unwrap_err();
            assert_eq!(refused.accepted, None);
            assert_eq!(splitter.take(), Some((b"xy".to_vec(), false)));
        }
    }

    #[test]
    fn a_refused_piece_or_last_line_is_held_as_before() {
        let mut splitter = LineSplitter::new(4, LongLines::Split);
        splitter
            .feed(b"ab", |_| Ok::<_, ()>(Flow::Continue))
            .unwrap();
        let refused = splitter.feed(b"cdefgh\n", |_| Err(())).unwrap_err();
        assert_eq!(refused.accepted, None);
        assert!(splitter.finish(|_| Err(())).is_err());
        assert_eq!(splitter.take(), Some((b"ab".to_vec(), false)));
        assert_eq!(splitter.take(), None, "taken out once");
    }

    /// The lines of `input` (a last line without newline counts), each cut
    /// or split as the splitter should.
    fn reference(input: &[u8], max: usize, long_lines: LongLines) -> Vec<(Seen, u64)> {
        let mut lines = Vec::new();
        let mut text: Vec<&[u8]> = input.split(|byte| *byte == b'\n').collect();
        if text.last().is_some_and(|last| last.is_empty()) {
            text.pop();
        }
        for whole in text {
            let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
            match long_lines {
                LongLines::Cut => {
                    let kept = whole.len().min(max);
                    let dropped = (whole.len() - kept) as u64;
                    lines.push(((text(&whole[..kept]), dropped > 0, false), dropped));
                }
                LongLines::Split | LongLines::Runs => {
                    let mut rest = whole;
                    while rest.len() > max {
                        lines.push(((text(&rest[..max]), false, true), 0));
                        rest = &rest[max..];
                    }
                    lines.push(((text(rest), false, false), 0));
                }
            }
        }
        lines
    }

    proptest! {
        /// Whatever the chunks and wherever the sink pauses or fails, every
        /// line comes out once, as the whole input split at once gives it.
        #[test]
        fn any_chunks_pauses_and_errors_give_every_line_once(
            input in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'a'), Just(b'b')], 0..120),
            cuts in proptest::collection::vec(1usize..20, 1..10),
            answers in proptest::collection::vec(0u8..4, 1..16),
            max in 1usize..8,
            mode in 0u8..3,
        ) {
            let long_lines = [LongLines::Cut, LongLines::Split, LongLines::Runs][usize::from(mode)];
            let mut splitter = LineSplitter::new(max, long_lines);
            let mut lines = Vec::new();
            let mut calls = 0usize;
            let mut pos = 0;
            let mut cut = 0;
            while pos < input.len() {
                let len = cuts[cut % cuts.len()].min(input.len() - pos);
                cut += 1;
                let chunk = &input[pos..pos + len];
                let result = splitter.feed(chunk, |line| {
                    calls += 1;
                    match answers[calls % answers.len()] {
                        // Never twice in a row: the same line comes again.
                        0 if calls % 2 == 1 => return Err(()),
                        1 => {
                            lines.extend(unrun(line, max));
                            return Ok(Flow::Pause);
                        }
                        _ => {}
                    }
                    lines.extend(unrun(line, max));
                    Ok(Flow::Continue)
                });
                let taken = match result {
                    Ok(fed) => fed.taken,
                    Err(refused) => refused.taken(),
                };
                // Fed again from where it stopped, as the follower re-reads.
                pos += taken;
            }
            splitter.finish(|line| {
                lines.extend(unrun(line, max));
                Ok::<_, ()>(Flow::Continue)
            }).unwrap();
            prop_assert_eq!(lines, reference(&input, max, long_lines));
        }
    }

    /// The lines a run holds, each in the pieces `Split` mode would have
    /// handed it over in (a run's lines are whole whatever their length),
    /// so runs compare with the reference; a piece or a cut line as it is.
    fn unrun(line: Line<'_>, max: usize) -> Vec<(Seen, u64)> {
        if line.partial || line.truncated {
            return vec![(seen(line), line.dropped)];
        }
        let whole: Vec<&[u8]> = line.bytes.split(|byte| *byte == b'\n').collect();
        assert_eq!(whole.len(), line.lines, "a run counts its lines");
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let mut pieces = Vec::new();
        for mut rest in whole {
            while rest.len() > max {
                pieces.push(((text(&rest[..max]), false, true), 0));
                rest = &rest[max..];
            }
            pieces.push(((text(rest), false, false), 0));
        }
        pieces
    }
}
