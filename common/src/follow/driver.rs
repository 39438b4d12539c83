//! The async driver: when to call [`Follower::poll_once`].
//!
//! A poll runs when inotify (through `notify`, watching the followed paths'
//! parent directories non-recursively, so late creation and renames are
//! seen) reports any change, and on every `poll_interval` tick regardless:
//! events are hints, and the tick is what guarantees progress. Polls woken
//! by events are at least `event_coalesce` apart (start to start): a busy
//! writer's thousands of events per second become one poll per gap, each
//! reading everything written meanwhile; a lone event after a quiet spell is
//! polled at once. When the
//! watcher cannot be created or a directory cannot be watched (inotify
//! instances or watches exhausted, `fs.inotify.max_user_*`), we warn once,
//! tell the sink, and carry on with the tick alone.
//!
//! On shutdown the files are read to their end, bounded by the drain
//! deadline, then [`Follower::finish`] hands over incomplete last lines.
//! `poll_once` is bounded by its read budget, and the loop yields between
//! busy polls, so a signal is seen promptly even while catching up a big file.

use std::collections::BTreeSet;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Event, Flow, Follower, PollOutcome};
use crate::shutdown::Shutdown;

/// Where the followed lines go, for [`run`].
pub trait Sink {
    /// One event; return [`Flow::Pause`] to stop reading until [`Sink::ready`].
    fn event(&mut self, event: Event<'_>) -> io::Result<Flow>;

    /// Everything available was read and the driver is about to wait: flush
    /// buffered output here so readers see lines promptly.
    fn idle(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// After a pause: completes when the sink can take events again.
    fn ready(&mut self) -> impl Future<Output = io::Result<()>> {
        async { Ok(()) }
    }

    /// Called after every poll (at least every `poll_interval`, also under
    /// continuous load), with the follower between two reads, so its
    /// [`Follower::checkpoints`] match the events handed so far: the place
    /// for periodic work (saving checkpoints, refreshing gauges). It is
    /// called often: check the clock before doing anything costly.
    fn after_poll(&mut self, follower: &Follower) -> io::Result<()> {
        let _ = follower;
        Ok(())
    }

    /// Watching is impossible and the driver now relies on polling alone
    /// (called once, after the warning is logged); for metrics.
    fn polling_fallback(&mut self, reason: &str) {
        let _ = reason;
    }
}

/// After a file is created, renamed or deleted in a watched directory (a
/// rotation under way), polls follow events without coalescing for this
/// long: logrotate's `copytruncate` copies the file, then truncates it, and
/// lines written between the two are only readable until the truncation.
/// Reading them as they come, as GNU `tail -F` does, is the only way not to
/// lose them; the rest of the time, coalescing keeps the cost low.
pub const EAGER_AFTER_NAME_CHANGE: Duration = Duration::from_secs(1);

/// While a copytruncate is expected, how many quick reads of the copied
/// files come between two full polls.
const ORIGINAL_READS_PER_POLL: usize = 20;

/// A watcher constructor: receives the wake-up callback, returns a watcher.
/// [`run`] uses inotify; tests pass one that fails.
pub type WatcherFactory =
    fn(Box<dyn FnMut(notify::Result<notify::Event>) + Send>) -> notify::Result<Box<dyn Watcher>>;

fn inotify_watcher(
    handler: Box<dyn FnMut(notify::Result<notify::Event>) + Send>,
) -> notify::Result<Box<dyn Watcher>> {
    Ok(Box::new(notify::RecommendedWatcher::new(
        handler,
        notify::Config::default(),
    )?))
}

/// Follows until `shutdown`, then drains (at most `drain_timeout`) and
/// finishes. Returns a sink error, or an I/O error of an open file.
pub async fn run<S: Sink>(
    follower: &mut Follower,
    sink: &mut S,
    shutdown: &Shutdown,
    drain_timeout: Duration,
) -> io::Result<()> {
    run_with_watcher(follower, sink, shutdown, drain_timeout, inotify_watcher).await
}

/// [`run`] with another watcher, e.g. one that fails to test the fallback.
pub async fn run_with_watcher<S: Sink>(
    follower: &mut Follower,
    sink: &mut S,
    shutdown: &Shutdown,
    drain_timeout: Duration,
    make_watcher: WatcherFactory,
) -> io::Result<()> {
    let wake = Arc::new(Notify::new());
    let names_changed = Arc::new(AtomicBool::new(false));
    let created: Created = Arc::default();
    let mut watching = Watching::new(
        follower.options().force_poll,
        &wake,
        &names_changed,
        &created,
        make_watcher,
        sink,
    );
    let interval = follower.options().poll_interval;
    let gap = follower.options().event_coalesce;
    let mut eager_until = Instant::now();
    while !shutdown.is_requested() {
        let polled = Instant::now();
        adopt(follower, &created);
        let outcome = follower.poll_once(&mut |event| sink.event(event))?;
        sink.after_poll(follower)?;
        match outcome {
            PollOutcome::Busy => {
                tokio::task::yield_now().await;
                continue;
            }
            PollOutcome::Paused => {
                tokio::select! {
                    ready = sink.ready() => ready?,
                    _ = shutdown.requested() => {}
                }
                continue;
            }
            PollOutcome::Idle if follower.truncation_expected() => {
                // logrotate is copying: read the original as it grows, until
                // it is truncated; a full poll now and then notices that.
                for _ in 0..ORIGINAL_READS_PER_POLL {
                    if follower.read_originals(&mut |event| sink.event(event))? != PollOutcome::Idle
                    {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                continue;
            }
            PollOutcome::Idle => {}
        }
        watching.sync(follower.watched_dirs(), sink);
        sink.idle()?;
        let woken = tokio::select! {
            _ = shutdown.requested() => false,
            _ = wake.notified() => true,
            _ = tokio::time::sleep(interval) => false,
        };
        if names_changed.swap(false, Ordering::Relaxed) {
            eager_until = Instant::now() + EAGER_AFTER_NAME_CHANGE;
        }
        if woken && polled.elapsed() < gap && Instant::now() >= eager_until {
            // A writer appending line by line makes one inotify event per
            // write: polling for each costs a stat, two reads and a stdout
            // hand-over per line. Events arriving meanwhile are coalesced
            // into the poll after this pause (the `Notify` keeps one permit).
            // Files rotated by copytruncate are still read at every change
            // (only them, no glob or stat of the others): their lines
            // written after logrotate's copy are gone at its truncation.
            let read_each = follower.read_every_change();
            let mut changed = read_each;
            while changed {
                if follower.read_truncated_before(&mut |event| sink.event(event))?
                    == PollOutcome::Paused
                {
                    break;
                }
                sink.idle()?;
                changed = tokio::select! {
                    _ = shutdown.requested() => false,
                    _ = tokio::time::sleep_until(polled + gap) => false,
                    _ = wake.notified() => true,
                };
            }
            if !read_each {
                tokio::select! {
                    _ = shutdown.requested() => {}
                    _ = tokio::time::sleep_until(polled + gap) => {}
                }
            }
        }
    }
    adopt(follower, &created);
    drain(follower, sink, Instant::now() + drain_timeout).await
}

/// Files opened when inotify reported their creation, for the follower.
type Created = Arc<std::sync::Mutex<Vec<(PathBuf, std::fs::File)>>>;

fn adopt(follower: &mut Follower, created: &Created) {
    let files = match created.lock() {
        Ok(mut files) => std::mem::take(&mut *files),
        Err(_) => return,
    };
    for (path, file) in files {
        follower.adopt_created(path, file);
    }
}

/// Opens a file inotify says was just created, without blocking (a FIFO),
/// so a file deleted before the next poll is still read.
fn open_created(path: &std::path::Path) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    file.metadata().ok()?.is_file().then_some(file)
}

/// Reads every file to its end, then hands over incomplete last lines, all
/// before `deadline`.
async fn drain<S: Sink>(
    follower: &mut Follower,
    sink: &mut S,
    deadline: Instant,
) -> io::Result<()> {
    loop {
        let outcome = follower.poll_once(&mut |event| sink.event(event))?;
        sink.after_poll(follower)?;
        match outcome {
            PollOutcome::Idle => break,
            PollOutcome::Busy if Instant::now() < deadline => tokio::task::yield_now().await,
            PollOutcome::Paused => match tokio::time::timeout_at(deadline, sink.ready()).await {
                Ok(ready) => ready?,
                Err(_) => break,
            },
            PollOutcome::Busy => break,
        }
    }
    if Instant::now() >= deadline {
        tracing::warn!("drain deadline reached before every file was read to its end");
    }
    while follower.finish(&mut |event| sink.event(event))? == PollOutcome::Paused {
        match tokio::time::timeout_at(deadline, sink.ready()).await {
            Ok(ready) => ready?,
            Err(_) => break,
        }
    }
    sink.after_poll(follower)?;
    sink.idle()
}

/// The inotify side: which directories are watched, and whether we fell back.
struct Watching {
    watcher: Option<Box<dyn Watcher>>,
    dirs: BTreeSet<PathBuf>,
    warned: bool,
}

impl Watching {
    fn new<S: Sink>(
        force_poll: bool,
        wake: &Arc<Notify>,
        names_changed: &Arc<AtomicBool>,
        created: &Created,
        make_watcher: WatcherFactory,
        sink: &mut S,
    ) -> Self {
        let mut watching = Self {
            watcher: None,
            dirs: BTreeSet::new(),
            warned: false,
        };
        if force_poll {
            return watching;
        }
        let wake = wake.clone();
        let names_changed = names_changed.clone();
        let created = created.clone();
        let handler = Box::new(move |event: notify::Result<notify::Event>| {
            // Our own opens show up as access events: waking on them would
            // make us poll in a loop.
            if let Ok(event) = &event {
                match event.kind {
                    EventKind::Access(_) => return,
                    EventKind::Create(_) => {
                        names_changed.store(true, Ordering::Relaxed);
                        if let Ok(mut files) = created.lock() {
                            for path in &event.paths {
                                if files.len() >= super::CREATED_MEMORY {
                                    break;
                                }
                                if let Some(file) = open_created(path) {
                                    files.push((path.clone(), file));
                                }
                            }
                        }
                    }
                    EventKind::Remove(_)
                    | EventKind::Modify(notify::event::ModifyKind::Name(_)) => {
                        names_changed.store(true, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
            wake.notify_one();
        });
        match make_watcher(handler) {
            Ok(watcher) => watching.watcher = Some(watcher),
            Err(error) => watching.fall_back(&format!("cannot start inotify: {error}"), sink),
        }
        watching
    }

    fn fall_back<S: Sink>(&mut self, reason: &str, sink: &mut S) {
        if !self.warned {
            self.warned = true;
            tracing::warn!("{reason}; polling for changes instead");
            sink.polling_fallback(reason);
        }
    }

    /// Watches exactly `wanted` (those that exist).
    fn sync<S: Sink>(&mut self, wanted: Vec<PathBuf>, sink: &mut S) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        let wanted: BTreeSet<PathBuf> = wanted.into_iter().collect();
        let stale: Vec<PathBuf> = self.dirs.difference(&wanted).cloned().collect();
        for dir in stale {
            let _ = watcher.unwatch(&dir);
            self.dirs.remove(&dir);
        }
        let mut failure = None;
        for dir in wanted {
            if self.dirs.contains(&dir) {
                continue;
            }
            match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.dirs.insert(dir);
                }
                // Not there yet: the tick covers it, and we retry next time.
                Err(error) if is_not_found(&error) => {}
                Err(error) => failure = Some(format!("cannot watch {}: {error}", dir.display())),
            }
        }
        if let Some(reason) = failure {
            self.fall_back(&reason, sink);
        }
    }
}

fn is_not_found(error: &notify::Error) -> bool {
    match &error.kind {
        notify::ErrorKind::PathNotFound => true,
        notify::ErrorKind::Io(io_error) => io_error.kind() == io::ErrorKind::NotFound,
        _ => false,
    }
}
