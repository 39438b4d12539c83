//! Snapshot mode: the lab's sidecar loop, byte for byte.
//!
//! The lab's busybox script, for each source in order, runs
//! `if [ -f PATH ]; then echo "=== TITLE ==="; tail -n N PATH; fi`, then
//! `echo "---"` and `sleep 10`. One cycle here prints exactly that text:
//! - a source that is not an existing regular file (after following
//!   symlinks, as `[ -f ]` does) is skipped without a word;
//! - the last N lines are copied as they are on disk, so a last line without
//!   a newline runs into the next header, as `tail` makes it do in the script;
//! - a file that exists but cannot be read gets its header (the script's
//!   `echo` runs before `tail` fails) and a warning naming the path on
//!   stderr; the loop goes on.
//!
//! - one difference, on purpose: a line longer than `--max-line-bytes`
//!   (64 KiB by default) is shown cut at that many bytes, followed by
//!   [`cut_marker`] (` [... N more bytes cut]`), instead of whole every cycle
//!   (a 300 MB line was copied to the log every interval). Lines are cut by
//!   the workspace's one splitter, [`sidecar_common::lines`].
//!
//! Invariants: files are only ever opened read-only (the lab mounts the
//! volume `readOnly`); the last lines are found by reading backwards
//! ([`sidecar_common::tail`]) and at most the bytes that were in the file
//! when the cycle looked are copied, so one cycle costs the same on a 1 KiB
//! and a 1 GiB file; a cycle is written through one buffer and flushed once,
//! so its text reaches the log in as few writes as its size allows.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sidecar_common::follow::Flow;
use sidecar_common::lines::{Line, LineSplitter, LongLines};
use sidecar_common::shutdown::Shutdown;
use sidecar_common::tail::last_lines_offset;

/// Size of the copy buffer and of the stdout buffer for one cycle.
const COPY_BUFFER_BYTES: usize = 64 * 1024;

/// One file shown under a header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// What the header says: `=== TITLE ===`.
    pub title: String,
    /// The file shown.
    pub path: PathBuf,
}

impl Source {
    /// Parses `TITLE=PATH` or `PATH` (the title is then the path). The title
    /// ends at the first `=`, so a path containing `=` needs a title.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (title, path) = match text.split_once('=') {
            Some((title, path)) => (title, path),
            None => (text, text),
        };
        if path.is_empty() {
            return Err(format!(
                "source {text:?} has no path (expected TITLE=PATH or PATH)"
            ));
        }
        Ok(Self {
            title: title.to_owned(),
            path: PathBuf::from(path),
        })
    }
}

/// What snapshot mode needs to know.
#[derive(Clone, Debug)]
pub struct SnapshotConfig {
    /// Time between the end of one cycle and the start of the next (the script's `sleep`).
    pub interval: Duration,
    /// How many lines of each file (the script's `tail -n`).
    pub lines: u64,
    /// The files, in output order.
    pub sources: Vec<Source>,
    /// Longer lines are shown cut here, with [`cut_marker`].
    pub max_line_bytes: usize,
}

/// What follows the first `--max-line-bytes` bytes of a longer line.
pub fn cut_marker(more: u64) -> String {
    format!(" [... {more} more bytes cut]")
}

/// Prints a cycle at once and then after every interval, until shutdown.
pub async fn run(config: SnapshotConfig, shutdown: Shutdown) -> anyhow::Result<ExitCode> {
    let config = Arc::new(config);
    loop {
        // The cycle runs on a blocking thread: a stdout that does not drain
        // (nobody reading `kubectl logs` fast enough) must not keep the
        // signal handler from ending us within a second.
        let cycle_config = config.clone();
        let cycle = tokio::task::spawn_blocking(move || {
            let stdout = io::stdout();
            let mut out = io::BufWriter::with_capacity(COPY_BUFFER_BYTES, stdout.lock());
            write_cycle(&cycle_config, &mut out)?;
            out.flush()
        });
        tokio::select! {
            _ = shutdown.requested() => return Ok(ExitCode::SUCCESS),
            outcome = cycle => outcome
                .context("snapshot cycle")?
                .context("writing to stdout")?,
        }
        if shutdown.sleep(config.interval).await {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// Writes one cycle's text to `out`. Only errors writing to `out` are
/// returned; a file that cannot be read is reported on stderr and skipped.
pub fn write_cycle(config: &SnapshotConfig, out: &mut impl Write) -> io::Result<()> {
    for source in &config.sources {
        // `[ -f PATH ]`: an existing regular file, symlinks followed.
        let is_file = std::fs::metadata(&source.path).is_ok_and(|meta| meta.is_file());
        if !is_file {
            continue;
        }
        writeln!(out, "=== {} ===", source.title)?;
        if let Err(error) = copy_last_lines(&source.path, config, out) {
            match error {
                CopyError::Write(error) => return Err(error),
                CopyError::Read(error) => {
                    tracing::warn!("cannot read {}: {error}", source.path.display());
                }
            }
        }
    }
    writeln!(out, "---")
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies the last `config.lines` lines of the file at `path` to `out`: at
/// most the bytes the file held when its end was looked up, so a fast writer
/// cannot stretch one cycle; each line cut at `config.max_line_bytes`.
fn copy_last_lines(
    path: &Path,
    config: &SnapshotConfig,
    out: &mut impl Write,
) -> Result<(), CopyError> {
    let file = File::open(path).map_err(CopyError::Read)?;
    let start = last_lines_offset(&file, config.lines).map_err(CopyError::Read)?;
    let end = file.metadata().map_err(CopyError::Read)?.len();
    let mut position = start;
    let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
    let mut lines = LineSplitter::new(config.max_line_bytes, LongLines::Cut);
    while position < end {
        let want = usize::try_from(end - position)
            .unwrap_or(usize::MAX)
            .min(buffer.len());
        let read = file
            .read_at(&mut buffer[..want], position)
            .map_err(CopyError::Read)?;
        if read == 0 {
            // Truncated since we looked: nothing more to show this cycle.
            break;
        }
        lines
            .feed(&buffer[..read], |line| write_line(out, line, true))
            .map_err(|refused| CopyError::Write(refused.error))?;
        position += read as u64;
    }
    lines
        .finish(|line| write_line(out, line, false))
        .map_err(CopyError::Write)?;
    Ok(())
}

/// Writes a line as it is, a cut one followed by [`cut_marker`]; `newline`
/// is false for a last line without one, which stays without one.
fn write_line(out: &mut impl Write, line: Line<'_>, newline: bool) -> io::Result<Flow> {
    out.write_all(line.bytes)?;
    if line.truncated {
        out.write_all(cut_marker(line.dropped).as_bytes())?;
    }
    if newline {
        out.write_all(b"\n")?;
    }
    Ok(Flow::Continue)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_with_title_and_without() {
        assert_eq!(
            Source::parse("Application Logs=/var/log/app.log").unwrap(),
            Source {
                title: "Application Logs".into(),
                path: "/var/log/app.log".into()
            }
        );
        assert_eq!(
            Source::parse("/var/log/app.log").unwrap(),
            Source {
                title: "/var/log/app.log".into(),
                path: "/var/log/app.log".into()
            }
        );
    }

    #[test]
    fn a_path_with_an_equals_sign_keeps_it_after_the_title() {
        assert_eq!(
            Source::parse("T=/data/a=b.log").unwrap().path,
            PathBuf::from("/data/a=b.log")
        );
    }

    #[test]
    fn a_source_without_a_path_is_an_error() {
        assert!(Source::parse("Title=").unwrap_err().contains("no path"));
    }

    fn cycle(config: &SnapshotConfig) -> String {
        let mut out = Vec::new();
        write_cycle(config, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_cycle_is_the_lab_scripts_text() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app.log");
        let error = dir.path().join("error.log");
        std::fs::write(&app, "1\n2\n3\n4\n5\n6\n").unwrap();
        std::fs::write(&error, "e1\n").unwrap();
        let config = SnapshotConfig {
            interval: Duration::from_secs(10),
            lines: 5,
            sources: vec![
                Source {
                    title: "Application Logs".into(),
                    path: app,
                },
                Source {
                    title: "Error Logs".into(),
                    path: error,
                },
            ],
            max_line_bytes: 64 * 1024,
        };
        assert_eq!(
            cycle(&config),
            "=== Application Logs ===\n2\n3\n4\n5\n6\n=== Error Logs ===\ne1\n---\n"
        );
    }

    #[test]
    fn directories_and_missing_files_are_skipped_like_test_f() {
        let dir = tempfile::tempdir().unwrap();
        let config = SnapshotConfig {
            interval: Duration::from_secs(10),
            lines: 5,
            sources: vec![
                Source::parse(&format!("Dir={}", dir.path().display())).unwrap(),
                Source::parse(&format!("Missing={}/nope", dir.path().display())).unwrap(),
            ],
            max_line_bytes: 64 * 1024,
        };
        assert_eq!(cycle(&config), "---\n");
    }

    #[test]
    fn a_line_longer_than_the_bound_is_cut_with_a_marker() {
        // Regression: a 300 MB line was printed whole every cycle.
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app.log");
        let long = "x".repeat(200_000);
        std::fs::write(&app, format!("short\n{long}\nafter\n{long}")).unwrap();
        let config = SnapshotConfig {
            interval: Duration::from_secs(10),
            lines: 5,
            sources: vec![Source::parse(&format!("App={}", app.display())).unwrap()],
            max_line_bytes: 10,
        };
        let cut = format!("xxxxxxxxxx{}", cut_marker(199_990));
        assert_eq!(
            cycle(&config),
            format!("=== App ===\nshort\n{cut}\nafter\n{cut}---\n")
        );
        // Exactly at the bound: as it is.
        std::fs::write(&app, "abcde\nabcdef\n").unwrap();
        let config = SnapshotConfig {
            max_line_bytes: 5,
            ..config
        };
        assert_eq!(
            cycle(&config),
            format!("=== App ===\nabcde\nabcde{}\n---\n", cut_marker(1))
        );
    }
}
