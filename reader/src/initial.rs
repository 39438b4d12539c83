//! The lines printed before following: the last N lines (found by reading
//! backwards, [`sidecar_common::tail`]) or everything from line N.
//!
//! The bytes are copied as they are, in blocks: a line of any length comes
//! out whole and memory stays one block (GNU tail does not cut either).
//! When following, the copy stops at the
//! last complete line and the follower starts there, so an incomplete last
//! line is printed once it is complete (or at exit), never cut in two.
//! Also where bad operands are refused: a directory given as FILE, a file
//! we may not read, a missing file when not following.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::Path;

use anyhow::{Context, bail};
use sidecar_common::follow::Flow;
use sidecar_common::shutdown::Shutdown;
use sidecar_common::tail::last_lines_offset;

use crate::output::Output;
use crate::{Config, Lines};

/// Read size for scanning and copying.
const BLOCK_BYTES: usize = 64 * 1024;
/// Blocks copied between two yields to the runtime (so a signal is seen).
const BLOCKS_PER_YIELD: usize = 16;

/// What [`print`] leaves to follow.
pub(crate) enum Printed {
    /// The open file, and where following starts in it.
    At(File, u64),
    /// The file does not exist yet.
    Missing,
    /// A FIFO, read until its writers closed it: nothing to follow.
    Stream,
}

/// Prints the first lines of `path`.
pub(crate) async fn print(
    path: &Path,
    config: &Config,
    output: &mut Output,
    shutdown: &Shutdown,
) -> anyhow::Result<Printed> {
    let (lines, follow) = (config.lines, config.follow);
    // Before any open: opening a FIFO for reading blocks until a writer
    // comes, and would block the runtime (and SIGTERM) with it.
    if std::fs::metadata(path).is_ok_and(|meta| meta.file_type().is_fifo()) {
        print_fifo(path, lines, output, shutdown)
            .await
            .with_context(|| format!("reading FIFO {}", path.display()))?;
        return Ok(Printed::Stream);
    }
    let file = match File::open(path) {
        Ok(file) => file,
        // Waited for like GNU `tail -F`, even when its directory is missing
        // too (an emptyDir subdirectory the application creates later): the
        // follower re-checks the path at every tick, and inotify watches the
        // directory once it exists.
        Err(error) if follow && error.kind() == io::ErrorKind::NotFound => {
            tracing::info!("{} does not exist yet; waiting for it", path.display());
            return Ok(Printed::Missing);
        }
        Err(error) => {
            return Err(error)
                .with_context(|| format!("cannot open {} for reading", path.display()));
        }
    };
    let reading = || format!("reading {}", path.display());
    let meta = file.metadata().with_context(reading)?;
    if meta.is_dir() {
        bail!("cannot read {}: is a directory", path.display());
    }
    let size = meta.len();
    let start = match lines {
        Lines::Last(n) => last_lines_offset(&file, n),
        Lines::From(first) => line_offset(&file, first, size),
    }
    .with_context(reading)?
    .min(size);
    let end = if follow {
        after_last_newline(&file, start, size).with_context(reading)?
    } else {
        size
    };
    output.switch_to(path);
    let stopped = copy(&file, start, end, output, shutdown)
        .await
        .with_context(reading)?;
    Ok(Printed::At(file, stopped))
}

/// A FIFO, as `tail` reads a pipe: from a non-blocking open, until its
/// writers close it (at once when none has it open), then the last N lines
/// (held in memory: N lines at most) or everything from line N.
async fn print_fifo(
    path: &Path,
    lines: Lines,
    output: &mut Output,
    shutdown: &Shutdown,
) -> io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut fifo = tokio::net::unix::pipe::OpenOptions::new().open_receiver(path)?;
    output.switch_to(path);
    let mut block = vec![0u8; BLOCK_BYTES];
    let mut kept = Vec::new();
    let mut to_skip = match lines {
        Lines::From(first) => first.saturating_sub(1),
        Lines::Last(_) => 0,
    };
    loop {
        let read = tokio::select! {
            read = fifo.read(&mut block) => read?,
            () = shutdown.requested() => break,
        };
        if read == 0 {
            break;
        }
        let mut data = &block[..read];
        while to_skip > 0 {
            match memchr::memchr(b'\n', data) {
                Some(newline) => {
                    data = &data[newline + 1..];
                    to_skip -= 1;
                }
                None => {
                    data = &[];
                    break;
                }
            }
        }
        match lines {
            Lines::Last(n) => {
                kept.extend_from_slice(data);
                keep_last_lines(&mut kept, n);
            }
            Lines::From(_) => {
                output.write_raw(data);
                if output.offer()? == Flow::Pause {
                    tokio::select! {
                        ready = output.wait_for_room() => ready?,
                        () = shutdown.requested() => break,
                    }
                }
            }
        }
    }
    output.write_raw(&kept);
    Ok(())
}

/// Drops the front of `text` so that at most `n` lines are left (a last
/// line without newline counts, as in `tail`).
fn keep_last_lines(text: &mut Vec<u8>, n: u64) {
    let mut lines = memchr::memchr_iter(b'\n', text).count() as u64;
    if text.last().is_some_and(|byte| *byte != b'\n') {
        lines += 1;
    }
    if lines <= n {
        return;
    }
    let drop_lines = lines - n;
    let cut = memchr::memchr_iter(b'\n', text)
        .nth(usize::try_from(drop_lines - 1).unwrap_or(usize::MAX))
        .map_or(text.len(), |newline| newline + 1);
    text.drain(..cut);
}

/// Where line `first` (counting from 1) begins; `size` if there is none.
fn line_offset(file: &File, first: u64, size: u64) -> io::Result<u64> {
    let mut to_skip = first.saturating_sub(1);
    let mut pos = 0;
    let mut block = vec![0u8; BLOCK_BYTES];
    while to_skip > 0 && pos < size {
        let read = file.read_at(&mut block, pos)?;
        if read == 0 {
            break;
        }
        for newline in memchr::memchr_iter(b'\n', &block[..read]) {
            to_skip -= 1;
            if to_skip == 0 {
                return Ok(pos + newline as u64 + 1);
            }
        }
        pos += read as u64;
    }
    Ok(if to_skip == 0 { 0 } else { size })
}

/// The offset just after the last `\n` in `start..size` (`start` if none),
/// read backwards in blocks.
fn after_last_newline(file: &File, start: u64, size: u64) -> io::Result<u64> {
    let mut block = vec![0u8; BLOCK_BYTES];
    let mut end = size;
    while end > start {
        let begin = end.saturating_sub(BLOCK_BYTES as u64).max(start);
        let part = &mut block[..(end - begin) as usize];
        file.read_exact_at(part, begin)?;
        if let Some(newline) = memchr::memrchr(b'\n', part) {
            return Ok(begin + newline as u64 + 1);
        }
        end = begin;
    }
    Ok(start)
}

/// Copies `start..end` to the output block by block, lines of any length
/// as they are (memory: one block and the bounded output); waits while
/// stdout is full; stops early on shutdown (returns where it stopped).
async fn copy(
    file: &File,
    start: u64,
    end: u64,
    output: &mut Output,
    shutdown: &Shutdown,
) -> io::Result<u64> {
    // A fixed block copied into the output's chunk: `memcpy` is cheap,
    // while reading straight into a handed-over buffer means zero-filling
    // it first, byte by byte at opt-level "s" (measured 15x slower).
    let mut block = vec![0u8; BLOCK_BYTES];
    let mut pos = start;
    let mut blocks = 0;
    while pos < end {
        let want = usize::try_from(end - pos)
            .unwrap_or(BLOCK_BYTES)
            .min(BLOCK_BYTES);
        let read = file.read_at(&mut block[..want], pos)?;
        if read == 0 {
            break;
        }
        output.write_raw(&block[..read]);
        pos += read as u64;
        if output.offer()? == Flow::Pause {
            // stdout is full (nobody reads it, or slowly): wait for room,
            // but a signal ends the wait.
            tokio::select! {
                ready = output.wait_for_room() => ready?,
                () = shutdown.requested() => break,
            }
        }
        blocks += 1;
        if blocks % BLOCKS_PER_YIELD == 0 {
            tokio::task::yield_now().await;
            if shutdown.is_requested() {
                break;
            }
        }
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(text: &str) -> (tempfile::NamedTempFile, File) {
        let mut named = tempfile::NamedTempFile::new().unwrap();
        named.write_all(text.as_bytes()).unwrap();
        let file = File::open(named.path()).unwrap();
        (named, file)
    }

    #[test]
    fn a_streams_last_lines_are_kept_and_the_rest_dropped() {
        let mut text = b"a\nb\nc\npart".to_vec();
        keep_last_lines(&mut text, 2);
        assert_eq!(text, b"c\npart");
        let mut text = b"a\nb\n".to_vec();
        keep_last_lines(&mut text, 5);
        assert_eq!(text, b"a\nb\n");
        keep_last_lines(&mut text, 0);
        assert_eq!(text, b"");
    }

    #[test]
    fn line_offset_counts_from_one() {
        let (_named, file) = file_with("a\nbb\nc\n");
        assert_eq!(line_offset(&file, 1, 7).unwrap(), 0);
        assert_eq!(line_offset(&file, 2, 7).unwrap(), 2);
        assert_eq!(line_offset(&file, 3, 7).unwrap(), 5);
        assert_eq!(line_offset(&file, 4, 7).unwrap(), 7);
        assert_eq!(line_offset(&file, 9, 7).unwrap(), 7);
        assert_eq!(line_offset(&file, 0, 7).unwrap(), 0);
    }

    #[test]
    fn the_copy_stops_before_an_incomplete_last_line() {
        let (_named, file) = file_with("a\nb\npart");
        assert_eq!(after_last_newline(&file, 0, 8).unwrap(), 4);
        assert_eq!(after_last_newline(&file, 4, 8).unwrap(), 4);
        let (_named, file) = file_with("a\n");
        assert_eq!(after_last_newline(&file, 0, 2).unwrap(), 2);
    }
}
