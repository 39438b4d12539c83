//! Where the last N lines of a file begin, found by reading backwards.
//!
//! `tail -n N` on a 1 GiB log must cost what it costs on a 1 KiB one, so the
//! file is read in [`BLOCK_SIZE`] blocks from its end towards its start, and
//! the scan stops as soon as enough newlines were seen (the approach of
//! uutils' `tail/src/chunks.rs` and GNU tail's `file_lines`). The cost is
//! proportional to the bytes of the last N lines, never to the file's size.
//!
//! Line semantics are GNU tail's: a line ends with `\n`; a final line without
//! a newline still counts as a line. Reads use positional reads (`pread`), so
//! the file's own offset is left untouched and the caller decides where to
//! read from.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// How much is read per step backwards: large enough that a typical `-n 10`
/// needs one read, small enough to stay out of the way of a sidecar's memory.
pub const BLOCK_SIZE: usize = 64 * 1024;

/// The byte offset at which the last `n` lines of `file` begin.
///
/// Returns the file's size for `n == 0` (nothing to print) and `0` when the
/// file holds `n` lines or fewer. A file that shrinks during the scan gives an
/// [`io::ErrorKind::UnexpectedEof`] error; callers treat it like any read error.
pub fn last_lines_offset(file: &File, n: u64) -> io::Result<u64> {
    let size = file.metadata()?.len();
    if n == 0 || size == 0 {
        return Ok(size);
    }
    let mut block = vec![0u8; BLOCK_SIZE.min(usize::try_from(size).unwrap_or(BLOCK_SIZE))];
    // The newline that ends the last line does not start another line; a
    // final line without one is a line all the same. Either way we look for
    // the n-th newline before the end of the last line.
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, size - 1)?;
    let mut end = if last[0] == b'\n' { size - 1 } else { size };
    let mut remaining = n;
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        for position in memchr::memrchr_iter(b'\n', chunk) {
            remaining -= 1;
            if remaining == 0 {
                return Ok(start + position as u64 + 1);
            }
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    fn file_with(content: &[u8]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(content).unwrap();
        file
    }

    /// What the last `n` lines are, by splitting the whole content: the
    /// reference the block-wise scan must agree with.
    fn naive_offset(content: &[u8], n: u64) -> u64 {
        if n == 0 {
            return content.len() as u64;
        }
        // Start offsets of every line; a trailing newline starts no line.
        let mut starts = vec![0u64];
        for (index, byte) in content.iter().enumerate() {
            if *byte == b'\n' && index + 1 < content.len() {
                starts.push(index as u64 + 1);
            }
        }
        if content.is_empty() {
            return 0;
        }
        let lines = starts.len() as u64;
        if n >= lines {
            0
        } else {
            starts[(lines - n) as usize]
        }
    }

    fn tail(content: &[u8], n: u64) -> Vec<u8> {
        let offset = last_lines_offset(&file_with(content), n).unwrap();
        content[offset as usize..].to_vec()
    }

    #[test]
    fn last_lines_of_a_small_file() {
        assert_eq!(tail(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc\n", 3), b"a\nb\nc\n");
        assert_eq!(tail(b"a\nb\nc\n", 1), b"c\n");
    }

    #[test]
    fn zero_lines_is_the_end_of_the_file() {
        assert_eq!(last_lines_offset(&file_with(b"a\nb\n"), 0).unwrap(), 4);
        assert_eq!(tail(b"a\nb", 0), b"");
    }

    #[test]
    fn empty_file_has_no_lines() {
        assert_eq!(last_lines_offset(&file_with(b""), 0).unwrap(), 0);
        assert_eq!(last_lines_offset(&file_with(b""), 5).unwrap(), 0);
    }

    #[test]
    fn more_lines_asked_than_the_file_holds_gives_the_whole_file() {
        assert_eq!(tail(b"one\ntwo\n", 10), b"one\ntwo\n");
    }

    #[test]
    fn final_line_without_newline_counts_like_gnu_tail() {
        assert_eq!(tail(b"a\nb\nc", 1), b"c");
        assert_eq!(tail(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(tail(b"no newline at all", 1), b"no newline at all");
    }

    #[test]
    fn empty_lines_are_lines() {
        assert_eq!(tail(b"a\n\n\n", 2), b"\n\n");
        assert_eq!(tail(b"\n", 1), b"\n");
        assert_eq!(tail(b"\n\n", 5), b"\n\n");
    }

    #[test]
    fn newline_exactly_at_block_boundaries() {
        // Lines whose newlines fall on the last byte of a block, the first
        // byte of a block, and a line spanning three blocks.
        for shift in [0usize, 1, 2] {
            let mut content = vec![b'x'; BLOCK_SIZE - 1 + shift];
            content.push(b'\n');
            content.extend(std::iter::repeat_n(b'y', BLOCK_SIZE - 1));
            content.push(b'\n');
            content.extend(std::iter::repeat_n(b'z', 2 * BLOCK_SIZE + 7));
            content.push(b'\n');
            for n in 0..5 {
                assert_eq!(
                    last_lines_offset(&file_with(&content), n).unwrap(),
                    naive_offset(&content, n),
                    "shift {shift}, n {n}"
                );
            }
        }
    }

    #[test]
    fn a_line_longer_than_a_block_is_found_whole() {
        let mut content = b"first\n".to_vec();
        content.extend(std::iter::repeat_n(b'L', 3 * BLOCK_SIZE));
        assert_eq!(last_lines_offset(&file_with(&content), 1).unwrap(), 6);
    }

    #[test]
    fn the_file_position_is_left_alone() {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = file_with(b"a\nb\nc\n");
        file.seek(SeekFrom::Start(2)).unwrap();
        last_lines_offset(&file, 1).unwrap();
        let mut rest = String::new();
        file.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "b\nc\n");
    }

    proptest! {
        #[test]
        fn agrees_with_splitting_the_whole_file(
            content in proptest::collection::vec(
                prop_oneof![4 => Just(b'\n'), 1 => Just(b'a'), 1 => Just(b'b')],
                0..300,
            ),
            n in 0u64..40,
        ) {
            prop_assert_eq!(
                last_lines_offset(&file_with(&content), n).unwrap(),
                naive_offset(&content, n)
            );
        }

        #[test]
        fn agrees_with_splitting_across_blocks(
            line_lengths in proptest::collection::vec(0usize..40_000, 0..12),
            trailing_newline in any::<bool>(),
            n in 0u64..15,
        ) {
            let mut content = Vec::new();
            for length in &line_lengths {
                content.extend(std::iter::repeat_n(b'x', *length));
                content.push(b'\n');
            }
            if !trailing_newline {
                content.extend_from_slice(b"partial");
            }
            prop_assert_eq!(
                last_lines_offset(&file_with(&content), n).unwrap(),
                naive_offset(&content, n)
            );
        }
    }
}
