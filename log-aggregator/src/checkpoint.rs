//! Read positions saved across restarts (`--checkpoint-dir DIR`).
//!
//! The file is `DIR/checkpoints.json`, versioned so a later format can be
//! told apart: `{"version":2,"files":[{"path":..,"dev":..,"ino":..,"offset":..,"fingerprint":..,"before":..}]}`
//! (`fingerprint` and `before` optional). Version 2 added `before`, which
//! with `fingerprint` identifies a file by its content, so a file renamed,
//! copied or compressed while we were down resumes where it was left;
//! version 1 files still load (identity by inode and first bytes).
//! A file is named by its path *and* identified by (device, inode), so a
//! restart after a rotation resumes the right file (the follower decides
//! what to do with a position whose identity no longer matches its path).
//!
//! Invariants:
//! - a save is atomic: the new content goes to `checkpoints.json.tmp`, is
//!   fsynced, renamed over the old file, and the directory is fsynced so the
//!   rename itself survives a power cut. A crash at any point leaves either
//!   the old or the new checkpoint, never a mix (see
//!   <https://lwn.net/Articles/457667/> on why both fsyncs are needed);
//! - an offset is always the start of a line that has *not* been written to
//!   stdout yet (the stream driver only saves positions whose lines the
//!   writer has flushed), so resuming there never skips a line;
//! - an unreadable, corrupt or unknown-version file is an error naming it,
//!   never silently replaced: starting fresh would re-send or skip a whole
//!   file's worth of lines. `--discard-invalid-checkpoint` opts in to that;
//! - one process per directory: [`DirLock`] (an advisory `flock` on
//!   `DIR/lock`, held for the process's lifetime) makes a second instance
//!   refuse to start instead of overwriting the first one's positions.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The format version this build writes.
pub const VERSION: u64 = 2;

/// The older versions this build still reads.
const READABLE_VERSIONS: [u64; 2] = [1, 2];

/// Name of the checkpoint file inside the checkpoint directory.
pub const FILE_NAME: &str = "checkpoints.json";

/// Where one file was read up to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The path the file was followed under.
    pub path: PathBuf,
    /// Device of the file (`st_dev`).
    pub dev: u64,
    /// Inode of the file (`st_ino`).
    pub ino: u64,
    /// Offset of the first byte not yet written out: always the start of a line.
    pub offset: u64,
    /// A hash of the file's first bytes (see `sidecar_common::follow::Checkpoint`):
    /// ext4 hands a deleted file's inode number to the next new file at once,
    /// so (dev, ino) alone could resume a different file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<u64>,
    /// A hash of the bytes just before `offset` (version 2): with
    /// `fingerprint`, the file's content identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u64,
    files: Vec<Position>,
}

#[derive(Deserialize)]
struct VersionOnly {
    version: u64,
}

/// What went wrong with the checkpoint file; every variant names it. The
/// cause is part of the message (and deliberately not a `source`, so that
/// `{:#}` does not print it twice).
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{operation} {path}: {cause}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    #[error(
        "checkpoint file {path} is not valid JSON ({cause}); move it away or pass --discard-invalid-checkpoint to start without it"
    )]
    Corrupt {
        path: PathBuf,
        cause: serde_json::Error,
    },
    #[error(
        "checkpoint file {path} has format version {version}, this build reads versions 1 and {VERSION}; pass --discard-invalid-checkpoint to start without it"
    )]
    UnknownVersion { path: PathBuf, version: u64 },
}

/// The checkpoint file of one directory.
#[derive(Clone, Debug)]
pub struct CheckpointStore {
    dir: PathBuf,
    file: PathBuf,
    temp: PathBuf,
}

impl CheckpointStore {
    /// The store in `dir`, created if missing (so an unwritable directory is
    /// reported at start, not at the first save).
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        fs::create_dir_all(dir).map_err(|cause| CheckpointError::Io {
            operation: "creating checkpoint directory",
            path: dir.to_owned(),
            cause,
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            file: dir.join(FILE_NAME),
            temp: dir.join(format!("{FILE_NAME}.tmp")),
        })
    }

    /// The checkpoint file's path.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The saved positions, or `None` when nothing was saved yet.
    pub fn load(&self) -> Result<Option<Vec<Position>>, CheckpointError> {
        let bytes = match fs::read(&self.file) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(cause) => {
                return Err(CheckpointError::Io {
                    operation: "reading checkpoint file",
                    path: self.file.clone(),
                    cause,
                });
            }
        };
        let corrupt = |cause| CheckpointError::Corrupt {
            path: self.file.clone(),
            cause,
        };
        // The version first, so a newer format is reported as such rather
        // than as whatever field it no longer has.
        let version: VersionOnly = serde_json::from_slice(&bytes).map_err(corrupt)?;
        if !READABLE_VERSIONS.contains(&version.version) {
            return Err(CheckpointError::UnknownVersion {
                path: self.file.clone(),
                version: version.version,
            });
        }
        let on_disk: OnDisk = serde_json::from_slice(&bytes).map_err(corrupt)?;
        Ok(Some(on_disk.files))
    }

    /// Replaces the saved positions atomically (see the module documentation).
    pub fn save(&self, files: &[Position]) -> Result<(), CheckpointError> {
        let io_error = |operation, path: &Path| {
            let path = path.to_owned();
            move |cause| CheckpointError::Io {
                operation,
                path,
                cause,
            }
        };
        let content = serde_json::to_vec(&OnDisk {
            version: VERSION,
            files: files.to_vec(),
        })
        .map_err(|error| CheckpointError::Io {
            operation: "encoding checkpoint",
            path: self.file.clone(),
            cause: io::Error::other(error),
        })?;
        let mut temp =
            File::create(&self.temp).map_err(io_error("creating checkpoint file", &self.temp))?;
        temp.write_all(&content)
            .and_then(|()| temp.write_all(b"\n"))
            .map_err(io_error("writing checkpoint file", &self.temp))?;
        temp.sync_all()
            .map_err(io_error("syncing checkpoint file", &self.temp))?;
        drop(temp);
        fs::rename(&self.temp, &self.file)
            .map_err(io_error("renaming checkpoint file into", &self.file))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error("syncing checkpoint directory", &self.dir))
    }

    /// Moves an invalid checkpoint file aside (`checkpoints.json.invalid`),
    /// keeping it for a post-mortem, so the next save starts clean.
    pub fn discard(&self) -> Result<PathBuf, CheckpointError> {
        let aside = self.dir.join(format!("{FILE_NAME}.invalid"));
        fs::rename(&self.file, &aside).map_err(|cause| CheckpointError::Io {
            operation: "moving invalid checkpoint file aside from",
            path: self.file.clone(),
            cause,
        })?;
        Ok(aside)
    }
}

/// Name of the lock file inside the checkpoint directory.
pub const LOCK_FILE_NAME: &str = "lock";

/// Why the checkpoint directory could not be locked; both name it.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "checkpoint directory {dir} is in use by another log-aggregator{holder} (lock {lock}); two processes saving positions in one directory would overwrite each other's: give each its own --checkpoint-dir"
    )]
    Held {
        dir: PathBuf,
        lock: PathBuf,
        /// `" (pid N)"` when the holder wrote its pid, else empty.
        holder: String,
    },
    #[error("{operation} {path}: {cause}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
}

/// Exclusive use of a checkpoint directory, released when dropped (or when
/// the process dies, however it dies: the kernel drops `flock` locks with
/// the last descriptor, so a SIGKILLed instance never leaves a stale lock).
///
/// `flock(LOCK_EX | LOCK_NB)` on `DIR/lock`, as Vector locks its
/// `data_dir`. Advisory: it keeps out other instances of this program, on
/// one host (an `emptyDir` or `hostPath` volume); it is not meant for
/// network filesystems.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Locks `dir` (which must exist; [`CheckpointStore::open`] creates it),
    /// or fails with [`LockError::Held`] when another process holds it.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let path = dir.join(LOCK_FILE_NAME);
        let io_error = |operation, path: &Path| {
            let path = path.to_owned();
            move |cause| LockError::Io {
                operation,
                path,
                cause,
            }
        };
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error("opening lock file", &path))?;
        match try_lock_exclusive(&file) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                let holder = fs::read_to_string(&path)
                    .ok()
                    .and_then(|text| text.trim().parse::<u32>().ok())
                    .map(|pid| format!(" (pid {pid})"))
                    .unwrap_or_default();
                return Err(LockError::Held {
                    dir: dir.to_owned(),
                    lock: path,
                    holder,
                });
            }
            Err(cause) => return Err(io_error("locking", &path)(cause)),
        }
        // Our pid, for the message a second instance prints. Only a hint:
        // the lock itself is what counts.
        file.set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(io_error("writing lock file", &path))?;
        Ok(Self { _file: file })
    }
}

/// `flock(LOCK_EX | LOCK_NB)` (`File::try_lock` needs Rust 1.89, above our
/// rust-version).
#[allow(unsafe_code)]
fn try_lock_exclusive(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) takes a descriptor we own for the duration of the
    // call and touches no memory of ours.
    let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions() -> Vec<Position> {
        vec![
            Position {
                path: "/var/log/app.log".into(),
                dev: 2049,
                ino: 1234,
                offset: 5678,
                fingerprint: None,
                before: None,
            },
            Position {
                path: "/var/log/with \"quotes\" and ünïcode.log".into(),
                dev: 1,
                ino: u64::MAX,
                offset: 0,
                fingerprint: Some(u64::MAX),
                before: Some(7),
            },
        ]
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        assert_eq!(store.load().unwrap(), None, "nothing saved yet");
        store.save(&positions()).unwrap();
        assert_eq!(store.load().unwrap(), Some(positions()));
        store.save(&positions()[..1]).unwrap();
        assert_eq!(store.load().unwrap(), Some(positions()[..1].to_vec()));
    }

    #[test]
    fn the_format_is_versioned_json() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        store.save(&positions()[..1]).unwrap();
        let text = fs::read_to_string(store.path()).unwrap();
        assert_eq!(
            text,
            "{\"version\":2,\"files\":[{\"path\":\"/var/log/app.log\",\"dev\":2049,\"ino\":1234,\"offset\":5678}]}\n"
        );
    }

    #[test]
    fn a_version_1_file_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        fs::write(
            store.path(),
            "{\"version\":1,\"files\":[{\"path\":\"/var/log/app.log\",\"dev\":2049,\"ino\":1234,\"offset\":5678,\"fingerprint\":9}]}\n",
        )
        .unwrap();
        let loaded = store.load().unwrap().unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].offset, 5678);
        assert_eq!(loaded[0].fingerprint, Some(9));
        assert_eq!(loaded[0].before, None);
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        fs::write(store.path(), "{\"version\":1,\"files\":[{\"pa").unwrap();
        let message = store.load().unwrap_err().to_string();
        assert!(
            message.contains(&store.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("not valid JSON"), "{message}");
        assert!(
            message.contains("--discard-invalid-checkpoint"),
            "{message}"
        );
    }

    #[test]
    fn an_unknown_version_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        fs::write(store.path(), "{\"version\":3,\"sources\":{}}").unwrap();
        let message = store.load().unwrap_err().to_string();
        assert!(message.contains("format version 3"), "{message}");
        assert!(
            message.contains(&store.path().display().to_string()),
            "{message}"
        );
    }

    #[test]
    fn discarding_moves_the_bad_file_aside() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        fs::write(store.path(), "garbage").unwrap();
        let aside = store.discard().unwrap();
        assert_eq!(fs::read_to_string(aside).unwrap(), "garbage");
        assert_eq!(store.load().unwrap(), None);
    }

    #[test]
    fn a_save_replaces_the_file_whole_and_leaves_no_temp_file() {
        // Atomicity: readers only ever see the old or the new content. A
        // reader thread loads continuously while saves alternate between two
        // contents; every load must be one of them, never an error.
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        let small = positions()[..1].to_vec();
        let large: Vec<Position> = (0..200)
            .map(|i| Position {
                path: format!("/var/log/app-{i}.log").into(),
                dev: 1,
                ino: i,
                offset: i * 1000,
                fingerprint: Some(i),
                before: None,
            })
            .collect();
        store.save(&small).unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let store = store.clone();
            let done = done.clone();
            let (small, large) = (small.clone(), large.clone());
            std::thread::spawn(move || {
                let mut loads = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let loaded = store.load().unwrap().unwrap();
                    assert!(loaded == small || loaded == large);
                    loads += 1;
                }
                loads
            })
        };
        for round in 0..100 {
            store
                .save(if round % 2 == 0 { &large } else { &small })
                .unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(FILE_NAME)]);
    }

    #[test]
    fn an_unwritable_directory_is_reported_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs::write(&file, "").unwrap();
        let message = CheckpointStore::open(&file.join("sub"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("creating checkpoint directory"),
            "{message}"
        );
        assert!(message.contains("not-a-dir/sub"), "{message}");
    }

    #[test]
    fn a_second_lock_on_a_directory_is_refused_naming_it_and_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        // flock locks belong to the open file, so a second open in the same
        // process conflicts just as another process would.
        let message = DirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(
            message.contains(&format!("(pid {})", std::process::id())),
            "{message}"
        );
        drop(first);
        DirLock::acquire(dir.path()).expect("free again once dropped");
    }
}
