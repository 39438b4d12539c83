//! Targets: parsing `PATH[=MESSAGE]`, naming them for the markers, and the
//! open file a target is written through, rotation included.
//!
//! Invariants of [`Output`]:
//! - the file is opened with `O_APPEND` and every [`Output::write_lines`] is
//!   one `write(2)` of whole lines, so several writers on one file (the lab's
//!   three-container pod) never interleave inside a line: on a local
//!   filesystem the kernel appends each write in one piece under the inode
//!   lock;
//! - rotation happens only between two writes, so no line is ever split
//!   across two files;
//! - a reopen request ([`ReopenSignal`], the writer's SIGHUP) is honoured at
//!   the next write: the path is opened again (`O_APPEND|O_CREAT`), as an
//!   application does in logrotate's `postrotate`, so logrotate's `create`
//!   mode works; until then lines go to the file already open (logrotate's
//!   rename leaves them in the rotated file, where a follower finds them).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::markers::is_name_byte;

/// One `PATH[=MESSAGE]` operand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSpec {
    pub path: PathBuf,
    /// `None` when no `=MESSAGE` was given (each format then picks its default).
    pub message: Option<String>,
    /// The name lines carry in their marker (`target=NAME`).
    pub name: String,
}

impl TargetSpec {
    /// Splits at the first `=`: the message may contain `=`, the path may not.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (path, message) = match text.split_once('=') {
            Some((path, message)) => (path, Some(message.to_owned())),
            None => (text, None),
        };
        if path.is_empty() {
            return Err(format!(
                "target {text:?} has no path (expected PATH or PATH=MESSAGE)"
            ));
        }
        if message.as_deref().is_some_and(|m| m.contains(['\n', '\r'])) {
            return Err(format!(
                "the message of target {path:?} contains a line break"
            ));
        }
        Ok(Self {
            path: PathBuf::from(path),
            message,
            name: String::new(),
        })
    }
}

/// Gives each target its marker name: `PREFIX` for a single target when a
/// prefix is set, else the file's stem (`/var/log/app.log` -> `app`), with
/// `PREFIX-` in front when set; bytes a marker cannot carry become `_`, and a
/// name already taken gets `-2`, `-3`...
pub fn assign_names(targets: &mut [TargetSpec], prefix: Option<&str>) {
    let single = targets.len() == 1;
    let mut taken: Vec<String> = Vec::new();
    for target in targets.iter_mut() {
        let stem = target
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "target".to_owned());
        let raw = match prefix {
            Some(prefix) if single => prefix.to_owned(),
            Some(prefix) => format!("{prefix}-{stem}"),
            None => stem,
        };
        let base: String = raw
            .bytes()
            .map(|b| if is_name_byte(b) { b as char } else { '_' })
            .collect();
        let mut name = base.clone();
        let mut n = 2;
        while taken.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        taken.push(name.clone());
        target.name = name;
    }
}

/// How a file is rotated once it reaches the size limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RotateMode {
    /// Like logrotate's default: `app.log` -> `app.log.1` -> `app.log.2`..., then a new `app.log`.
    Rename,
    /// Like logrotate's `copytruncate`: copy to `app.log.1`, then truncate `app.log` in place.
    Copytruncate,
    /// Delete `app.log` and create a new one (nothing kept), like an
    /// application that removes its old log.
    Delete,
    /// Like `rename`, but the writer goes on writing to the renamed file for
    /// `--rotate-late` before it opens the new `app.log`: an application that
    /// reopens late (logrotate without `copytruncate` and a slow `postrotate`).
    RenameLate,
}

/// Rotation settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before a write would take the file past this many bytes.
    pub size: u64,
    pub mode: RotateMode,
    /// Rotated files kept (`app.log.1` ... `app.log.N`).
    pub keep: u32,
    /// [`RotateMode::RenameLate`]: how long the renamed file still gets the lines.
    pub late: Duration,
}

/// Reopen requests shared by every target of one writer: a counter the
/// SIGHUP handler bumps and each [`Output`] compares with the value it last
/// honoured before each write (a plain atomic: no lock on the hot path).
#[derive(Debug, Default)]
pub struct ReopenSignal {
    requests: AtomicU64,
}

impl ReopenSignal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every output to reopen its path at its next write.
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
    }

    fn generation(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

/// An open target.
#[derive(Debug)]
pub struct Output {
    path: PathBuf,
    file: File,
    /// Bytes in the file as far as this writer knows (its own writes since open).
    size: u64,
    rotation: Option<Rotation>,
    pub rotations: u64,
    /// Times the path was opened again (reopen requests, late rotations).
    pub reopens: u64,
    reopen: Option<std::sync::Arc<ReopenSignal>>,
    /// The reopen generation last honoured.
    generation: u64,
    /// [`RotateMode::RenameLate`]: the renamed file gets the lines until then.
    late_until: Option<Instant>,
}

impl Output {
    /// Creates missing parent directories and opens `path` for appending
    /// (truncating it first when asked).
    pub fn open(path: &Path, truncate: bool, rotation: Option<Rotation>) -> anyhow::Result<Self> {
        // Only a missing parent is created: when it exists but is a file, the
        // open below fails with "Not a directory", which says more than the
        // "File exists" create_dir_all would report.
        let missing_parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty() && std::fs::symlink_metadata(p).is_err());
        if let Some(parent) = missing_parent {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating directory {}", parent.display()))?;
        }
        let file = open_append(path)
            .with_context(|| format!("opening {} for appending", path.display()))?;
        if truncate {
            file.set_len(0)
                .with_context(|| format!("truncating {}", path.display()))?;
        }
        let size = file
            .metadata()
            .with_context(|| format!("reading the size of {}", path.display()))?
            .len();
        Ok(Self {
            path: path.to_owned(),
            file,
            size,
            rotation,
            rotations: 0,
            reopens: 0,
            reopen: None,
            generation: 0,
            late_until: None,
        })
    }

    /// Reopens the path at the next write after each `signal.request()`.
    pub fn reopen_on(mut self, signal: std::sync::Arc<ReopenSignal>) -> Self {
        self.generation = signal.generation();
        self.reopen = Some(signal);
        self
    }

    /// Bytes that can still be written before the next rotation, if rotating
    /// (none while late writes go to a renamed file: it does not rotate).
    pub fn room(&self) -> Option<u64> {
        if self.late_until.is_some() {
            return None;
        }
        self.rotation.map(|r| r.size.saturating_sub(self.size))
    }

    /// Writes `lines` (whole lines) in one `write(2)`, reopening the path
    /// first when asked to, and rotating first when they would take the file
    /// past the rotation size.
    pub fn write_lines(&mut self, lines: &[u8]) -> anyhow::Result<()> {
        let requested = self
            .reopen
            .as_ref()
            .map(|signal| signal.generation())
            .filter(|&generation| generation != self.generation);
        let late_over = self.late_until.is_some_and(|until| Instant::now() >= until);
        if let Some(generation) = requested {
            self.generation = generation;
        }
        if requested.is_some() || late_over {
            self.reopen()
                .with_context(|| format!("reopening {}", self.path.display()))?;
        }
        if let Some(rotation) = self.rotation
            && self.late_until.is_none()
            && self.size > 0
            && self.size + lines.len() as u64 > rotation.size
        {
            self.rotate(rotation)
                .with_context(|| format!("rotating {}", self.path.display()))?;
        }
        // write_all: a regular file takes the whole buffer in one write(2);
        // only a full disk or a signal could make it short, and then the rest
        // still follows rather than being lost.
        self.file
            .write_all(lines)
            .with_context(|| format!("writing to {}", self.path.display()))?;
        self.size += lines.len() as u64;
        Ok(())
    }

    fn rotate(&mut self, rotation: Rotation) -> io::Result<()> {
        let numbered = |n: u32| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if rotation.keep > 0 && rotation.mode != RotateMode::Delete {
            ignore_missing(std::fs::remove_file(numbered(rotation.keep)))?;
            for n in (1..rotation.keep).rev() {
                ignore_missing(std::fs::rename(numbered(n), numbered(n + 1)))?;
            }
        }
        let keeps = rotation.keep > 0;
        match rotation.mode {
            RotateMode::Rename | RotateMode::RenameLate if keeps => {
                std::fs::rename(&self.path, numbered(1))?;
            }
            RotateMode::Rename | RotateMode::RenameLate | RotateMode::Delete => {
                ignore_missing(std::fs::remove_file(&self.path))?;
            }
            RotateMode::Copytruncate => {}
        }
        match rotation.mode {
            RotateMode::Rename | RotateMode::Delete => {
                self.file = open_append(&self.path)?;
            }
            RotateMode::RenameLate => {
                // The lines keep going to the renamed file (its size no
                // longer matters: no rotation until the reopen).
                self.late_until = Some(Instant::now() + rotation.late);
                self.rotations += 1;
                return Ok(());
            }
            RotateMode::Copytruncate => {
                if rotation.keep > 0 {
                    std::fs::copy(&self.path, numbered(1))?;
                }
                // With O_APPEND the next write lands at the new end, offset 0.
                self.file.set_len(0)?;
            }
        }
        self.size = 0;
        self.rotations += 1;
        Ok(())
    }

    /// Opens the path again and writes there from now on.
    fn reopen(&mut self) -> io::Result<()> {
        self.file = open_append(&self.path)?;
        self.size = self.file.metadata()?.len();
        self.late_until = None;
        self.reopens += 1;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_message_split_at_the_first_equals_sign() {
        let spec = TargetSpec::parse("/var/log/app.log=a=b c").unwrap();
        assert_eq!(spec.path, PathBuf::from("/var/log/app.log"));
        assert_eq!(spec.message.as_deref(), Some("a=b c"));
        assert_eq!(TargetSpec::parse("/data/log.txt").unwrap().message, None);
        assert_eq!(
            TargetSpec::parse("/x=").unwrap().message.as_deref(),
            Some("")
        );
        assert!(TargetSpec::parse("=hello").unwrap_err().contains("no path"));
        assert!(
            TargetSpec::parse("/x=a\nb")
                .unwrap_err()
                .contains("line break")
        );
    }

    #[test]
    fn names_come_from_stems_and_stay_unique() {
        let mut targets: Vec<_> = ["/var/log/app.log", "/other/app.log", "/x/my file.txt"]
            .iter()
            .map(|t| TargetSpec::parse(t).unwrap())
            .collect();
        assert_names(&mut targets, None, &["app", "app-2", "my_file"]);
        assert_names(
            &mut targets,
            Some("w1"),
            &["w1-app", "w1-app-2", "w1-my_file"],
        );
        let mut one = vec![TargetSpec::parse("/shared/data.txt").unwrap()];
        assert_names(&mut one, Some("writer 1"), &["writer_1"]);
    }

    fn assert_names(targets: &mut [TargetSpec], prefix: Option<&str>, expected: &[&str]) {
        assign_names(targets, prefix);
        let names: Vec<_> = targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn rename_rotation_shifts_numbered_files_and_keeps_n() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let rotation = Rotation {
            size: 10,
            mode: RotateMode::Rename,
            keep: 2,
            late: Duration::ZERO,
        };
        let mut output = Output::open(&path, false, Some(rotation)).unwrap();
        for line in ["one......\n", "two......\n", "three....\n", "four.....\n"] {
            output.write_lines(line.as_bytes()).unwrap();
        }
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(read("app.log"), "four.....\n");
        assert_eq!(read("app.log.1"), "three....\n");
        assert_eq!(read("app.log.2"), "two......\n");
        assert!(!dir.path().join("app.log.3").exists());
        assert_eq!(output.rotations, 3);
    }

    #[test]
    fn copytruncate_keeps_the_same_file() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let rotation = Rotation {
            size: 10,
            mode: RotateMode::Copytruncate,
            keep: 1,
            late: Duration::ZERO,
        };
        let mut output = Output::open(&path, false, Some(rotation)).unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();
        output.write_lines(b"one......\n").unwrap();
        output.write_lines(b"two......\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two......\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("app.log.1")).unwrap(),
            "one......\n"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
    }

    #[test]
    fn delete_rotation_replaces_the_file_and_keeps_nothing() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let rotation = Rotation {
            size: 10,
            mode: RotateMode::Delete,
            keep: 5,
            late: Duration::ZERO,
        };
        let mut output = Output::open(&path, false, Some(rotation)).unwrap();
        output.write_lines(b"one......\n").unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();
        output.write_lines(b"two......\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two......\n");
        assert_ne!(std::fs::metadata(&path).unwrap().ino(), inode);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn rename_late_writes_to_the_renamed_file_until_the_window_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let rotation = Rotation {
            size: 10,
            mode: RotateMode::RenameLate,
            keep: 5,
            late: Duration::from_secs(3600),
        };
        let mut output = Output::open(&path, false, Some(rotation)).unwrap();
        for line in ["one......\n", "two......\n", "three....\n"] {
            output.write_lines(line.as_bytes()).unwrap();
        }
        // Rotated once, and the late lines went to the renamed file.
        assert!(!path.exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("app.log.1")).unwrap(),
            "one......\ntwo......\nthree....\n"
        );
        assert_eq!(output.rotations, 1);

        // With no window, the next write after the rotation opens the path.
        let rotation = Rotation {
            late: Duration::ZERO,
            ..rotation
        };
        let path = dir.path().join("b.log");
        let mut output = Output::open(&path, false, Some(rotation)).unwrap();
        for line in ["one......\n", "two......\n", "three....\n"] {
            output.write_lines(line.as_bytes()).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three....\n");
        assert_eq!(output.reopens, 1);
    }

    #[test]
    fn a_reopen_request_opens_the_path_again_at_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let signal = std::sync::Arc::new(ReopenSignal::new());
        let mut output = Output::open(&path, false, None)
            .unwrap()
            .reopen_on(signal.clone());
        output.write_lines(b"one\n").unwrap();
        let rotated = dir.path().join("app.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        output.write_lines(b"late\n").unwrap();
        signal.request();
        output.write_lines(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "one\nlate\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(output.reopens, 1);
    }

    #[test]
    fn open_creates_parents_and_truncates_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/app.conf");
        Output::open(&path, false, None)
            .unwrap()
            .write_lines(b"old\n")
            .unwrap();
        Output::open(&path, true, None)
            .unwrap()
            .write_lines(b"new\n")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
    }
}
