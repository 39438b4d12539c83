//! inotify without `notify` (Linux), in two instances watching the same
//! directories.
//!
//! Content changes (`IN_MODIFY`, `IN_ATTRIB`): the descriptor is registered
//! with the runtime's reactor and read only when the driver waits or is
//! about to poll. A writer's thousands of events per second then cost
//! nothing between two polls: the kernel queues them (merging identical
//! consecutive ones), and one `read` takes them all. `notify`'s watcher
//! instead wakes its own thread for every event, which at 10k lines/s cost
//! more CPU than the follower. The events' names tell which followed files
//! changed, so a poll can leave the others alone
//! ([`super::super::Follower::poll_changed`]).
//!
//! Name changes (create, delete, rename): a thread of their own blocks on
//! the second instance, quiet under a busy writer. It opens each file the
//! moment it is created in a watched directory, as a fast delete +
//! recreate rotation may delete it again before any poll, and
//! wakes the driver, which ends a coalescing pause at once when a rotation
//! starts (copytruncate's copy appearing).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use inotify::{EventMask, WatchDescriptor, WatchMask, Watches};
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

use super::super::{CREATED_MEMORY, parent_dir};
use super::open_created;

/// Enough for a few hundred events per read; more just takes more reads.
const EVENT_BUFFER_BYTES: usize = 16 * 1024;

/// The names thread opens files and looks up a map: no deep calls.
const NAMES_THREAD_STACK: usize = 64 * 1024;

pub(in super::super) struct Inotify {
    content: Content,
    /// Adds and removes the content instance's watches.
    content_watches: Watches,
    names: Arc<Names>,
    /// Adds and removes the names thread's watches.
    names_watches: Watches,
    /// Per directory: its descriptor in `content`, then in the names instance.
    watches: BTreeMap<PathBuf, (WatchDescriptor, WatchDescriptor)>,
    buffer: Vec<u8>,
    /// The followed paths, as last given ([`Inotify::follow_paths`]).
    followed: Vec<PathBuf>,
    /// Followed paths by the file name content events give.
    keys: HashMap<OsString, Vec<Key>>,
    /// Followed paths that are symbolic links: their file's changes show
    /// in another directory, if one is watched at all; read at every poll.
    always: Vec<PathBuf>,
    /// Followed paths named by content events since the last poll (and
    /// `always`).
    changed: Changed,
    /// Events were lost or named no file: the next poll must be full.
    overflowed: bool,
}

/// The content instance, registered with the runtime's reactor only while
/// the driver waits on it ([`Inotify::changed_hint`]). Registered, it wakes
/// the runtime for every event queued, waited on or not, and the kernel
/// merges only identical consecutive events: with many files written at
/// once, a coalescing pause would be a wake-up per write for nothing.
/// [`Inotify::quiet`] unregisters it for a pause; events queue meanwhile,
/// and registering again reports them.
enum Content {
    Registered(AsyncFd<inotify::Inotify>),
    Quiet(inotify::Inotify),
    /// Only between taking one of the above out and putting one back.
    Moving,
}

impl Content {
    fn inotify(&mut self) -> &mut inotify::Inotify {
        match self {
            Content::Registered(registered) => registered.get_mut(),
            Content::Quiet(inotify) => inotify,
            Content::Moving => unreachable!("content instance left moving"),
        }
    }

    fn quiet(&mut self) {
        *self = match std::mem::replace(self, Content::Moving) {
            Content::Registered(registered) => Content::Quiet(registered.into_inner()),
            other => other,
        };
    }

    fn registered(&mut self) -> io::Result<&mut AsyncFd<inotify::Inotify>> {
        *self = match std::mem::replace(self, Content::Moving) {
            Content::Quiet(inotify) => match register(inotify) {
                Ok(registered) => Content::Registered(registered),
                Err(refused) => {
                    let (inotify, error) = refused.into_parts();
                    *self = Content::Quiet(inotify);
                    return Err(error);
                }
            },
            other => other,
        };
        match self {
            Content::Registered(registered) => Ok(registered),
            Content::Quiet(_) | Content::Moving => unreachable!("registered just above"),
        }
    }
}

/// The followed paths content events named since the last poll.
struct Changed {
    paths: HashSet<PathBuf>,
    /// Which poll the events are noted for ([`Key::noted_in`]).
    generation: u64,
}

/// A followed path as content events name it.
struct Key {
    /// The watched directory the events come from.
    dir: PathBuf,
    path: PathBuf,
    /// In `changed` already when this is [`Changed::generation`]: with many
    /// files written at once, each has thousands of events between two
    /// polls, and all but the first cost only a lookup by name. A new
    /// generation per poll, rather than a flag reset on every key, keeps a
    /// poll from touching the keys of files nobody wrote.
    noted_in: u64,
}

/// What the names thread shares with the driver.
struct Names {
    state: Mutex<NamesState>,
    /// A name changed since the driver last looked.
    changed: AtomicBool,
    wake: Notify,
    stop: AtomicBool,
}

#[derive(Default)]
struct NamesState {
    /// The directories of each descriptor of the names instance.
    dirs: HashMap<WatchDescriptor, Vec<PathBuf>>,
    /// Files opened at their creation, for the follower.
    created: Vec<(PathBuf, std::fs::File)>,
    /// Descriptors the kernel dropped (their directory went).
    lost: Vec<WatchDescriptor>,
}

impl Names {
    fn state(&self) -> MutexGuard<'_, NamesState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn content_mask() -> WatchMask {
    WatchMask::MODIFY | WatchMask::ATTRIB | WatchMask::ONLYDIR
}

fn names_mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
}

/// `ENOSPC` from `inotify_add_watch` means the watch limit, not a full disk.
pub(in super::super) fn describe(error: &io::Error) -> String {
    if error.raw_os_error() == Some(libc::ENOSPC) {
        "inotify watch limit reached (fs.inotify.max_user_watches)".to_owned()
    } else {
        error.to_string()
    }
}

// `AsyncFd::try_new` is deprecated because an arbitrary `AsRawFd` could
// close or swap its descriptor while registered; its replacement is
// `unsafe`, which this workspace denies. `inotify::Inotify` owns its
// descriptor and keeps it open until it is dropped, and the `AsyncFd` owns
// the `Inotify`: the precondition holds.
#[allow(deprecated)]
fn register(
    inotify: inotify::Inotify,
) -> Result<AsyncFd<inotify::Inotify>, tokio::io::unix::AsyncFdRegisterError<inotify::Inotify>> {
    AsyncFd::try_new(inotify)
}

/// The names thread: blocks on the names instance until the driver stops
/// it (it removes every watch, and the kernel's `IN_IGNORED` wakes it).
fn watch_names(mut inotify: inotify::Inotify, names: &Names) {
    let mut buffer = vec![0u8; EVENT_BUFFER_BYTES];
    loop {
        let events = match inotify.read_events_blocking(&mut buffer) {
            Ok(events) => events,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                // Cannot happen short of a kernel bug: polls on the tick
                // carry on, and every poll is a full one after this.
                names.changed.store(true, Ordering::Release);
                names.wake.notify_one();
                return;
            }
        };
        if names.stop.load(Ordering::Acquire) {
            return;
        }
        let mut to_open = Vec::new();
        let mut lost = Vec::new();
        {
            let state = names.state();
            for event in events {
                if event.mask.contains(EventMask::IGNORED) {
                    lost.push(event.wd.clone());
                    continue;
                }
                // Created only: a file renamed here was a file before
                // (logrotate's older copies), placed by polls by its name.
                let created = event.mask.contains(EventMask::CREATE)
                    && !event.mask.contains(EventMask::ISDIR);
                if let (true, Some(name), Some(dirs)) =
                    (created, event.name, state.dirs.get(&event.wd))
                {
                    to_open.extend(dirs.iter().map(|dir| dir.join(name)));
                }
            }
        }
        let opened: Vec<_> = to_open
            .into_iter()
            .take(CREATED_MEMORY)
            .filter_map(|path| Some((open_created(&path)?, path)))
            .collect();
        {
            let mut state = names.state();
            for (file, path) in opened {
                if state.created.len() < CREATED_MEMORY {
                    state.created.push((path, file));
                }
            }
            state.lost.extend(lost);
        }
        names.changed.store(true, Ordering::Release);
        names.wake.notify_one();
    }
}

/// Notes one content event: the followed paths it names, or that a full
/// poll is due (lost events, or a change of the directory itself).
/// The most one inotify event takes in a read: its header and the longest
/// name with its padding.
const MAX_EVENT_BYTES: usize = 16 + 256;

/// Whether a read that returned `count` events into a buffer of
/// `buffer_len` bytes took every event queued: the kernel fills the buffer
/// with as many whole events as fit, so a read that left room for another
/// of any size found the queue empty. Saves the read that would only say
/// `EAGAIN`, one per wake-up.
fn drained(count: usize, buffer_len: usize) -> bool {
    (count + 1) * MAX_EVENT_BYTES <= buffer_len
}

fn note(
    mask: EventMask,
    wd: &WatchDescriptor,
    name: Option<&OsStr>,
    watches: &BTreeMap<PathBuf, (WatchDescriptor, WatchDescriptor)>,
    keys: &mut HashMap<OsString, Vec<Key>>,
    changed: &mut Changed,
    overflowed: &mut bool,
) {
    if mask.contains(EventMask::IGNORED) {
        return;
    }
    let Some(name) = name.filter(|_| !mask.contains(EventMask::Q_OVERFLOW)) else {
        *overflowed = true;
        return;
    };
    let Some(named) = keys.get_mut(name) else {
        return;
    };
    for key in named
        .iter_mut()
        .filter(|key| key.noted_in != changed.generation)
    {
        if watches
            .get(&key.dir)
            .is_some_and(|(content, _)| content == wd)
        {
            key.noted_in = changed.generation;
            changed.paths.insert(key.path.clone());
        }
    }
}

impl Inotify {
    pub(in super::super) fn new() -> io::Result<Self> {
        let content = inotify::Inotify::init()?;
        let content_watches = content.watches();
        let names_inotify = inotify::Inotify::init()?;
        let names_watches = names_inotify.watches();
        let names = Arc::new(Names {
            state: Mutex::default(),
            changed: AtomicBool::new(false),
            wake: Notify::new(),
            stop: AtomicBool::new(false),
        });
        let shared = names.clone();
        std::thread::Builder::new()
            .name("follow-names".to_owned())
            .stack_size(NAMES_THREAD_STACK)
            .spawn(move || watch_names(names_inotify, &shared))?;
        Ok(Self {
            content: Content::Quiet(content),
            content_watches,
            names,
            names_watches,
            watches: BTreeMap::new(),
            buffer: vec![0; EVENT_BUFFER_BYTES],
            followed: Vec::new(),
            keys: HashMap::new(),
            always: Vec::new(),
            changed: Changed {
                paths: HashSet::new(),
                generation: 1,
            },
            overflowed: false,
        })
    }

    pub(in super::super) fn watch(&mut self, dir: &Path) -> io::Result<()> {
        let content = self.content_watches.add(dir, content_mask())?;
        // Locked while added, so the thread knows the directory of any
        // event the new descriptor brings.
        let mut state = self.names.state();
        let names = match self.names_watches.add(dir, names_mask()) {
            Ok(names) => names,
            Err(error) => {
                if !self.watches.values().any(|other| other.0 == content) {
                    let _ = self.content_watches.remove(content);
                }
                return Err(error);
            }
        };
        state
            .dirs
            .entry(names.clone())
            .or_default()
            .push(dir.to_owned());
        drop(state);
        self.watches.insert(dir.to_owned(), (content, names));
        Ok(())
    }

    pub(in super::super) fn unwatch(&mut self, dir: &Path) {
        if let Some((content, names)) = self.watches.remove(dir) {
            // Two names of one directory share a descriptor.
            if !self.watches.values().any(|other| other.0 == content) {
                let _ = self.content_watches.remove(content);
            }
            let mut state = self.names.state();
            if let Some(dirs) = state.dirs.get_mut(&names) {
                dirs.retain(|other| other != dir);
                if dirs.is_empty() {
                    state.dirs.remove(&names);
                }
            }
            drop(state);
            if !self.watches.values().any(|other| other.1 == names) {
                let _ = self.names_watches.remove(names);
            }
        }
    }

    /// Which paths the follower follows now: how content events name them.
    /// Unchanged paths with no name changed since the last call (a periodic
    /// full poll) are not looked at again: which of them are symbolic links
    /// changes only with a name.
    pub(in super::super) fn follow_paths(&mut self, paths: Vec<&Path>, names_changed: bool) {
        if !names_changed
            && self
                .followed
                .iter()
                .map(PathBuf::as_path)
                .eq(paths.iter().copied())
        {
            return;
        }
        self.followed = paths.iter().map(|path| path.to_path_buf()).collect();
        self.keys.clear();
        self.always.clear();
        for path in paths {
            let linked =
                std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink());
            match path.file_name() {
                Some(name) if !linked => self.keys.entry(name.to_owned()).or_default().push(Key {
                    dir: parent_dir(path),
                    path: path.to_owned(),
                    noted_in: 0,
                }),
                _ => self.always.push(path.to_owned()),
            }
        }
        self.clear_changed();
    }

    pub(in super::super) fn changed(&self) -> &HashSet<PathBuf> {
        &self.changed.paths
    }

    pub(in super::super) fn clear_changed(&mut self) {
        self.changed.paths.clear();
        self.changed.paths.extend(self.always.iter().cloned());
        self.changed.generation += 1;
    }

    pub(in super::super) fn take_overflowed(&mut self) -> bool {
        std::mem::take(&mut self.overflowed)
    }

    pub(in super::super) fn take_created(&mut self) -> Vec<(PathBuf, std::fs::File)> {
        std::mem::take(&mut self.names.state().created)
    }

    pub(in super::super) fn names_pending(&self) -> bool {
        self.names.changed.load(Ordering::Acquire)
    }

    pub(in super::super) fn take_names_changed(&mut self) -> bool {
        self.names.changed.swap(false, Ordering::AcqRel)
    }

    /// Directories whose watch the kernel dropped (deleted, unmounted),
    /// now unwatched, to be watched again when they come back.
    pub(in super::super) fn take_lost(&mut self) -> Vec<PathBuf> {
        let lost = std::mem::take(&mut self.names.state().lost);
        let dirs: Vec<PathBuf> = self
            .watches
            .iter()
            .filter(|(_, (_, names))| lost.contains(names))
            .map(|(dir, _)| dir.clone())
            .collect();
        for dir in &dirs {
            self.unwatch(dir);
        }
        dirs
    }

    /// Reads the content events queued now, without waiting.
    pub(in super::super) fn collect(&mut self) {
        let Self {
            content,
            buffer,
            watches,
            keys,
            changed,
            overflowed,
            ..
        } = self;
        loop {
            match content.inotify().read_events(buffer) {
                Ok(events) => {
                    let mut count = 0;
                    for event in events {
                        count += 1;
                        note(
                            event.mask, &event.wd, event.name, watches, keys, changed, overflowed,
                        );
                    }
                    if drained(count, buffer.len()) {
                        return;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // `WouldBlock`: all read. Another error cannot happen short
                // of a kernel bug; the next wait reports it.
                Err(_) => return,
            }
        }
    }

    /// Completes once content events were read (all queued), or a name
    /// changed.
    pub(in super::super) async fn changed_hint(&mut self) -> io::Result<()> {
        let Self {
            content,
            names,
            buffer,
            watches,
            keys,
            changed,
            overflowed,
            ..
        } = self;
        let read = async {
            loop {
                let mut guard = content.registered()?.readable_mut().await?;
                let mut any = false;
                loop {
                    match guard.get_inner_mut().read_events(buffer) {
                        Ok(events) => {
                            let mut count = 0;
                            for event in events {
                                count += 1;
                                note(
                                    event.mask, &event.wd, event.name, watches, keys, changed,
                                    overflowed,
                                );
                            }
                            any |= count > 0;
                            if drained(count, buffer.len()) {
                                // Edge-triggered: an event queued after this
                                // read wakes the next wait again.
                                guard.clear_ready();
                                break;
                            }
                        }
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                            guard.clear_ready();
                            break;
                        }
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                        Err(error) => return Err(error),
                    }
                }
                if any {
                    return Ok(());
                }
            }
        };
        tokio::select! {
            read = read => read,
            () = names.wake.notified() => Ok(()),
        }
    }

    /// Whether content events are queued, without reading them: after a
    /// pause, the poll then reads them itself, and their reading counts in
    /// its cost, which spaces the polls of many files.
    #[allow(unsafe_code)]
    pub(in super::super) fn queued(&mut self) -> bool {
        use std::os::fd::AsRawFd;
        // poll(2), not FIONREAD: the ioctl sums the size of every queued
        // event, and a thousand busy files queue thousands per pause.
        let mut watched = libc::pollfd {
            fd: self.content.inotify().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, a local that outlives the call; no wait.
        let result = unsafe { libc::poll(&raw mut watched, 1, 0) };
        result > 0 && watched.revents & libc::POLLIN != 0
    }

    /// Stops content events from waking the runtime until the next
    /// [`Inotify::changed_hint`]: for a pause in which they are not awaited.
    pub(in super::super) fn quiet(&mut self) {
        self.content.quiet();
    }

    /// Completes once a name changed.
    pub(in super::super) async fn name_hint(&mut self) {
        self.names.wake.notified().await;
    }
}

impl Drop for Inotify {
    fn drop(&mut self) {
        self.names.stop.store(true, Ordering::Release);
        let mut state = self.names.state();
        let descriptors: Vec<WatchDescriptor> = state.dirs.drain().map(|(wd, _)| wd).collect();
        drop(state);
        for wd in descriptors {
            let _ = self.names_watches.remove(wd);
        }
        // Removing a watch queues `IN_IGNORED`, which wakes the thread; with
        // none left, one is added and removed for that.
        for dir in ["/", "."] {
            if let Ok(wd) = self.names_watches.add(dir, WatchMask::DELETE_SELF) {
                let _ = self.names_watches.remove(wd);
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use super::*;

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    /// A followed path that is a symbolic link changes in another
    /// directory: it is looked at every poll. Which paths are links is
    /// learnt again only when a name changed, and kept across full polls.
    #[tokio::test]
    async fn a_path_replaced_by_a_symbolic_link_is_looked_at_every_poll_from_the_name_change() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let target = elsewhere.path().join("0.log");
        std::fs::write(&path, "").unwrap();
        std::fs::write(&target, "").unwrap();
        let mut inotify = Inotify::new().unwrap();
        inotify.follow_paths(vec![path.as_path()], true);
        inotify.clear_changed();
        assert!(
            !inotify.changed().contains(&path),
            "a plain file waits for its events"
        );
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        inotify.follow_paths(vec![path.as_path()], true);
        for poll in 0..3 {
            inotify.clear_changed();
            assert!(inotify.changed().contains(&path), "poll {poll}");
            inotify.follow_paths(vec![path.as_path()], false);
        }
    }

    /// A coalescing pause unregisters content events; a write made then
    /// must still wake the next wait, or its line would wait for the tick.
    #[tokio::test]
    async fn a_write_while_quiet_wakes_the_next_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        std::fs::write(&path, "").unwrap();
        let mut inotify = Inotify::new().unwrap();
        inotify.watch(dir.path()).unwrap();
        inotify.follow_paths(vec![path.as_path()], true);
        for round in 0..3 {
            inotify.quiet();
            append(&path, "line\n");
            tokio::time::timeout(Duration::from_secs(5), inotify.changed_hint())
                .await
                .unwrap_or_else(|_| panic!("round {round}: not woken"))
                .unwrap();
            assert!(inotify.changed().contains(&path), "round {round}");
            inotify.clear_changed();
        }
        // Registered again, a write made while waiting wakes it too.
        let waiting = tokio::time::timeout(Duration::from_secs(5), inotify.changed_hint());
        let writer = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            append(&path, "more\n");
        };
        let (woken, ()) = tokio::join!(waiting, writer);
        woken.expect("woken by a write while waiting").unwrap();
        assert!(inotify.changed().contains(&path));
    }
}
