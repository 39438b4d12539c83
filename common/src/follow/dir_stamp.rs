//! A glob's directory as a discovery last listed it, so the next discovery
//! can skip reading it while nothing in it was created, removed or renamed.
//!
//! Every creation, removal and rename of an entry sets the directory's
//! modification and change times. A directory whose device, inode and both
//! times are what they were when it was listed has the same entries, with
//! one exception: timestamps are coarse (a clock tick), so an entry made
//! after the listing but within the same tick as the change before it
//! leaves them equal. A stamp is therefore only trusted when its times are
//! [`STAMP_MARGIN`] older than the listing (git's "racily clean" rule):
//! a directory changed just before it was listed is listed again.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// How much older than the listing a directory's times must be for its
/// stamp to vouch for the entries: far above any timestamp granularity.
pub(super) const STAMP_MARGIN: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct DirStamp {
    dev: u64,
    ino: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl DirStamp {
    /// The directory's stamp now; `None` if it cannot be looked at.
    pub(super) fn of(dir: &Path) -> Option<Self> {
        let meta = std::fs::metadata(dir).ok()?;
        Some(Self {
            dev: meta.dev(),
            ino: meta.ino(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        })
    }

    /// Whether an entry made after `listed_at` must change this stamp: both
    /// times at least [`STAMP_MARGIN`] before it.
    pub(super) fn vouches_after(&self, listed_at: SystemTime) -> bool {
        let Ok(listed) = listed_at.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let margin = listed.saturating_sub(STAMP_MARGIN);
        let before = |(secs, nanos): (i64, i64)| {
            let (Ok(secs), Ok(nanos)) = (u64::try_from(secs), u32::try_from(nanos)) else {
                return false;
            };
            Duration::new(secs, nanos) <= margin
        };
        before(self.modified) && before(self.changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_entry_changes_the_stamp_and_a_fresh_change_does_not_vouch() {
        let dir = tempfile::tempdir().unwrap();
        let before = DirStamp::of(dir.path()).unwrap();
        // Just changed: too recent to vouch for a listing taken now.
        assert!(!before.vouches_after(SystemTime::now()));
        assert!(before.vouches_after(SystemTime::now() + STAMP_MARGIN * 2));
        // The same directory, entries unchanged: the same stamp.
        std::fs::write(dir.path().join("inside"), "content").unwrap();
        let with_entry = DirStamp::of(dir.path()).unwrap();
        std::fs::write(dir.path().join("inside"), "more content").unwrap();
        assert_eq!(DirStamp::of(dir.path()), Some(with_entry));
        // Times are coarse: a change may keep them, so a different stamp is
        // looked for only across ticks.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::rename(dir.path().join("inside"), dir.path().join("renamed")).unwrap();
        assert_ne!(DirStamp::of(dir.path()), Some(with_entry));
        assert_eq!(DirStamp::of(&dir.path().join("missing")), None);
    }
}
