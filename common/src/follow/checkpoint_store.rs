//! Saving [`Checkpoint`]s across restarts, for any binary that follows
//! files: `log-aggregator --checkpoint-dir DIR` today.
//!
//! The file is `DIR/checkpoints.json`, versioned so a later format can be
//! told apart: `{"version":2,"files":[{"path":..,"dev":..,"ino":..,"offset":..,"fingerprint":..,"before":..}]}`
//! (`fingerprint` and `before` left out when `None`). Each entry is a
//! [`Checkpoint`] as its serde derive writes it (its [`FileId`](super::FileId) flattened
//! into `dev` and `ino`), so the follower's type is the format and there is
//! no second type to keep in step with it; a change to `Checkpoint`'s
//! fields is a change of this format (the tests pin it). Version 2 added
//! `before`, which with `fingerprint` identifies a file by its content, so
//! a file renamed, copied or compressed while we were down resumes where it
//! was left; version 1 files still load (identity by inode and first
//! bytes). A file is named by its path *and* identified by (device, inode),
//! so a restart after a rotation resumes the right file (the follower
//! decides what to do with a position whose identity no longer matches its
//! path, see [`Follower::resume`](super::Follower::resume)).
//!
//! Invariants:
//! - a save is atomic: the new content goes to `checkpoints.json.tmp`, is
//!   fsynced, renamed over the old file, and the directory is fsynced so the
//!   rename itself survives a power cut. A crash at any point leaves either
//!   the old or the new checkpoint, never a mix (see
//!   <https://lwn.net/Articles/457667/> on why both fsyncs are needed);
//! - what is saved is what the caller hands over: the caller saves only
//!   positions whose lines reached their destination (the saving policy is
//!   the binary's), so resuming there never skips a line;
//! - an unreadable, corrupt or unknown-version file is an error naming it,
//!   never silently replaced: starting fresh would re-send or skip a whole
//!   file's worth of lines. [`CheckpointError::is_invalid`] tells the
//!   caller when moving it aside ([`CheckpointStore::discard`]) is an
//!   option to offer;
//! - one process per directory: [`DirLock`] (an advisory `flock` on
//!   `DIR/lock`, held for the process's lifetime) makes a second process
//!   refuse to start instead of overwriting the first one's positions.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Checkpoint;

/// The format version this build writes.
pub const VERSION: u64 = 2;

/// The older versions this build still reads.
const READABLE_VERSIONS: [u64; 2] = [1, 2];

/// Name of the checkpoint file inside the checkpoint directory.
pub const FILE_NAME: &str = "checkpoints.json";

/// The file as written.
#[derive(Serialize)]
struct Saved<'a> {
    version: u64,
    files: &'a [Checkpoint],
}

/// The file as read, once its version is known to be readable.
#[derive(Deserialize)]
struct Loaded {
    files: Vec<Checkpoint>,
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
    #[error("checkpoint file {path} is not valid JSON ({cause})")]
    Corrupt {
        path: PathBuf,
        cause: serde_json::Error,
    },
    #[error(
        "checkpoint file {path} has format version {version}, this build reads versions 1 and {VERSION}"
    )]
    UnknownVersion { path: PathBuf, version: u64 },
}

impl CheckpointError {
    /// The file was read but holds no positions this build can use (corrupt
    /// or of an unknown version): the case where starting without it, after
    /// [`CheckpointStore::discard`], is a choice a user can make. An I/O
    /// error is not: the file may be fine and the disk not.
    pub fn is_invalid(&self) -> bool {
        matches!(self, Self::Corrupt { .. } | Self::UnknownVersion { .. })
    }
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
    pub fn load(&self) -> Result<Option<Vec<Checkpoint>>, CheckpointError> {
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
        let loaded: Loaded = serde_json::from_slice(&bytes).map_err(corrupt)?;
        Ok(Some(loaded.files))
    }

    /// Replaces the saved positions atomically (see the module documentation).
    pub fn save(&self, files: &[Checkpoint]) -> Result<(), CheckpointError> {
        let io_error = |operation, path: &Path| {
            let path = path.to_owned();
            move |cause| CheckpointError::Io {
                operation,
                path,
                cause,
            }
        };
        let content = serde_json::to_vec(&Saved {
            version: VERSION,
            files,
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
        "checkpoint directory {dir} is in use by another process{holder} (lock {lock}); two processes saving positions in one directory would overwrite each other's"
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
/// the last descriptor, so a SIGKILLed process never leaves a stale lock).
///
/// `flock(LOCK_EX | LOCK_NB)` on `DIR/lock`, as Vector locks its
/// `data_dir`. Advisory: it keeps out other processes that take this lock,
/// on one host (an `emptyDir` or `hostPath` volume); it is not meant for
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
    use crate::follow::FileId;

    fn checkpoint(path: &str, dev: u64, ino: u64, offset: u64) -> Checkpoint {
        Checkpoint {
            path: path.into(),
            id: FileId { dev, ino },
            offset,
            fingerprint: None,
            before: None,
        }
    }

    fn positions() -> Vec<Checkpoint> {
        vec![
            checkpoint("/var/log/app.log", 2049, 1234, 5678),
            Checkpoint {
                fingerprint: Some(u64::MAX),
                before: Some(7),
                ..checkpoint("/var/log/with \"quotes\" and ünïcode.log", 1, u64::MAX, 0)
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

    /// What a save writes, byte for byte: the format every earlier build
    /// wrote and reads, so a change to `Checkpoint`'s fields or serde
    /// attributes that would change it fails here.
    #[test]
    fn the_format_written_is_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        store.save(&positions()).unwrap();
        assert_eq!(
            fs::read_to_string(store.path()).unwrap(),
            concat!(
                r#"{"version":2,"files":["#,
                r#"{"path":"/var/log/app.log","dev":2049,"ino":1234,"offset":5678},"#,
                r#"{"path":"/var/log/with \"quotes\" and ünïcode.log","dev":1,"ino":18446744073709551615,"#,
                r#""offset":0,"fingerprint":18446744073709551615,"before":7}"#,
                "]}\n"
            )
        );
        store.save(&[]).unwrap();
        assert_eq!(
            fs::read_to_string(store.path()).unwrap(),
            "{\"version\":2,\"files\":[]}\n"
        );
    }

    /// A version 2 file as `log-aggregator --checkpoint-dir` wrote it before
    /// the store moved into this library (copied from a real run): it loads,
    /// and saving what was loaded writes the same bytes back.
    #[test]
    fn a_version_2_file_from_an_earlier_build_loads_and_saves_back_unchanged() {
        const WRITTEN: &str = concat!(
            r#"{"version":2,"files":["#,
            r#"{"path":"/tmp/ckfx/logs/app.log","dev":65024,"ino":10010902,"offset":23,"#,
            r#""fingerprint":16296332023567224313,"before":16296332023567224313},"#,
            r#"{"path":"/tmp/ckfx/logs/q \"u\" ü.log","dev":65024,"ino":10010903,"offset":2,"#,
            r#""fingerprint":644258871406045975,"before":644258871406045975}"#,
            "]}\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        fs::write(store.path(), WRITTEN).unwrap();
        let loaded = store.load().unwrap().unwrap();
        assert_eq!(
            loaded,
            vec![
                Checkpoint {
                    fingerprint: Some(16296332023567224313),
                    before: Some(16296332023567224313),
                    ..checkpoint("/tmp/ckfx/logs/app.log", 65024, 10010902, 23)
                },
                Checkpoint {
                    fingerprint: Some(644258871406045975),
                    before: Some(644258871406045975),
                    ..checkpoint("/tmp/ckfx/logs/q \"u\" ü.log", 65024, 10010903, 2)
                },
            ]
        );
        store.save(&loaded).unwrap();
        assert_eq!(fs::read_to_string(store.path()).unwrap(), WRITTEN);
    }

    #[test]
    fn a_version_1_file_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        fs::write(
            store.path(),
            concat!(
                r#"{"version":1,"files":["#,
                r#"{"path":"/var/log/app.log","dev":2049,"ino":1234,"offset":5678,"fingerprint":9},"#,
                r#"{"path":"/var/log/old.log","dev":2049,"ino":1235,"offset":0}"#,
                "]}\n"
            ),
        )
        .unwrap();
        assert_eq!(
            store.load().unwrap(),
            Some(vec![
                Checkpoint {
                    fingerprint: Some(9),
                    ..checkpoint("/var/log/app.log", 2049, 1234, 5678)
                },
                checkpoint("/var/log/old.log", 2049, 1235, 0),
            ])
        );
    }

    /// What loading from `store` fails with, once checked that its message
    /// names the file.
    fn load_error(store: &CheckpointStore) -> (CheckpointError, String) {
        let error = store.load().unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(&store.path().display().to_string()),
            "{message}"
        );
        (error, message)
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        fs::write(store.path(), "{\"version\":1,\"files\":[{\"pa").unwrap();
        let (error, message) = load_error(&store);
        assert!(message.contains("not valid JSON"), "{message}");
        assert!(error.is_invalid());
    }

    #[test]
    fn an_unknown_version_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        fs::write(store.path(), "{\"version\":3,\"sources\":{}}").unwrap();
        let (error, message) = load_error(&store);
        assert!(message.contains("format version 3"), "{message}");
        assert!(error.is_invalid());
    }

    #[test]
    fn an_unreadable_file_is_an_io_error_not_an_invalid_one() {
        // Discarding is for a file that was read and is bad; one that cannot
        // be read may be fine, and must not be moved aside.
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path()).unwrap();
        fs::create_dir(store.path()).unwrap();
        let (error, message) = load_error(&store);
        assert!(message.contains("reading checkpoint file"), "{message}");
        assert!(!error.is_invalid(), "{message}");
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
        let large: Vec<Checkpoint> = (0..200)
            .map(|i| Checkpoint {
                fingerprint: Some(i),
                ..checkpoint(&format!("/var/log/app-{i}.log"), 1, i, i * 1000)
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
