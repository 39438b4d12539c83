//! Splitting a byte stream (stdin) into lines, bounded: a line longer than
//! `max_line_bytes` is cut there, flagged, and the rest up to its newline
//! skipped, so memory stays bounded whatever comes in (the same rule the
//! file follower applies to files).

/// Splits chunks of a stream into lines without their `\n`.
#[derive(Debug)]
pub struct LineSplitter {
    max_line_bytes: usize,
    partial: Vec<u8>,
    /// Inside an over-long line: drop bytes until the next newline.
    discarding: bool,
}

impl LineSplitter {
    pub fn new(max_line_bytes: usize) -> Self {
        Self {
            max_line_bytes: max_line_bytes.max(1),
            partial: Vec::new(),
            discarding: false,
        }
    }

    /// Hands every line completed by `chunk` to `line(bytes, truncated)`.
    pub fn feed<E>(
        &mut self,
        chunk: &[u8],
        mut line: impl FnMut(&[u8], bool) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut rest = chunk;
        while !rest.is_empty() {
            let newline = memchr::memchr(b'\n', rest);
            let (piece, complete) = match newline {
                Some(at) => (&rest[..at], true),
                None => (rest, false),
            };
            rest = match newline {
                Some(at) => &rest[at + 1..],
                None => &[],
            };
            if self.discarding {
                if complete {
                    self.discarding = false;
                }
                continue;
            }
            if complete && self.partial.is_empty() && piece.len() <= self.max_line_bytes {
                // Fast path: the whole line is in this chunk, no copy.
                line(piece, false)?;
                continue;
            }
            let room = self.max_line_bytes - self.partial.len();
            if piece.len() > room {
                self.partial.extend_from_slice(&piece[..room]);
                line(&self.partial, true)?;
                self.partial.clear();
                self.discarding = !complete;
                continue;
            }
            self.partial.extend_from_slice(piece);
            if complete {
                line(&self.partial, false)?;
                self.partial.clear();
            }
        }
        Ok(())
    }

    /// End of stream: a last line without its newline.
    pub fn finish<E>(
        &mut self,
        mut line: impl FnMut(&[u8], bool) -> Result<(), E>,
    ) -> Result<(), E> {
        self.discarding = false;
        if self.partial.is_empty() {
            return Ok(());
        }
        let last = std::mem::take(&mut self.partial);
        line(&last, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut splitter = LineSplitter::new(max);
        let mut lines = Vec::new();
        let mut collect = |line: &[u8], truncated: bool| {
            lines.push((String::from_utf8_lossy(line).into_owned(), truncated));
            Ok::<(), ()>(())
        };
        for chunk in chunks {
            splitter.feed(chunk, &mut collect).unwrap();
        }
        splitter.finish(&mut collect).unwrap();
        lines
    }

    #[test]
    fn lines_across_chunks_and_a_last_line_without_newline() {
        assert_eq!(
            split(100, &[b"one\ntw", b"o\n\nthr", b"ee"]),
            [
                ("one".into(), false),
                ("two".into(), false),
                ("".into(), false),
                ("three".into(), false)
            ]
        );
    }

    #[test]
    fn long_lines_are_cut_once_and_the_rest_skipped() {
        assert_eq!(
            split(4, &[b"abcdefgh", b"ijk\nok\nlonger\n"]),
            [
                ("abcd".into(), true),
                ("ok".into(), false),
                ("long".into(), true)
            ]
        );
    }
}
