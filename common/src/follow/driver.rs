//! The async driver: when to call [`Follower::poll_once`] (or
//! [`Follower::poll_changed`]).
//!
//! A poll runs when inotify (watching the followed paths' parent
//! directories non-recursively, so late creation and renames are seen)
//! reports a change, and on a `poll_interval` tick regardless: events are
//! hints, and the tick is what guarantees progress. On Linux, [`run`] reads
//! inotify itself (see [`direct`]): content changes on the runtime, with no
//! thread, so a burst of events between two polls costs one `read`; name
//! changes on a small thread of their own, which opens a file the moment it
//! is created, so a file created and deleted (or renamed away) before the
//! next poll is still read ([`Follower::adopt_created`]).
//! [`run_with_watcher`] takes a `notify` watcher instead (tests, other
//! systems).
//!
//! Cost at production rates (see docs/follow-cost.md):
//! - Polls woken by events are at least `event_coalesce` apart (start to
//!   start), and further apart while every poll finds lines, up to
//!   [`MAX_EVENT_COALESCE`], or when a poll is costly (many busy files), up
//!   to [`MAX_COST_COALESCE`]; a lone event
//!   after a quiet spell is polled at once. A name change (a rotation
//!   starting) ends the pause at once; after it ([`EAGER_AFTER_NAME_CHANGE`]),
//!   while a copytruncate is expected ([`Follower::truncation_expected`]) and
//!   for files rotated by truncation ([`Follower::read_every_change`]),
//!   reads are not spaced at all (every write is read when it wakes us, as
//!   GNU `tail -F` does): lines written before logrotate's
//!   truncation are read while the original still holds them (those written
//!   between its copy and its truncation are in no file once it is done).
//! - While inotify names every change (every directory watched, no queue
//!   overflow), a poll looks only at the files events named
//!   ([`Follower::poll_changed`]): a file nobody wrote is neither stat'ed nor
//!   read. A full poll comes after a name change (with files rotated by
//!   truncation, after the burst of them a rotation makes, up to
//!   [`NAME_BURST_MAX`]: logrotate renames every kept `.gz` before it copies
//!   and truncates) and, as a safety net for
//!   writes inotify cannot see (a hard link written in another directory, a
//!   network file system written from another host), at most
//!   [`FULL_POLL_EVERY`] apart; one that finds lines no event announced
//!   brings full polls back to every tick until they find nothing unannounced.
//!
//! When the watcher cannot be created or a directory cannot be watched
//! (inotify instances or watches exhausted, `fs.inotify.max_user_*`), we
//! warn once, tell the sink, and carry on with full polls on the tick alone.
//!
//! On shutdown the files are read to their end, bounded by the drain
//! deadline, then [`Follower::finish`] hands over incomplete last lines.
//! `poll_once` is bounded by its read budget, and the loop yields between
//! busy polls, so a signal is seen promptly even while catching up a big file.

use std::collections::{BTreeSet, HashSet};
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

    /// Completes once output that [`Sink::idle`] kept back (its output had
    /// no room) was handed over; never while nothing is kept back. Awaited
    /// with the hints while the driver waits, so lines read before an idle
    /// spell are not held until the next write or tick.
    fn held_back(&mut self) -> impl Future<Output = io::Result<()>> {
        std::future::pending()
    }

    /// Whether the sink has work waiting on the clock (a record quiet for
    /// its timeout, positions not yet captured, a check to repeat): then
    /// the driver polls every `poll_interval` tick, calling
    /// [`Sink::after_poll`] and [`Sink::idle`]. Otherwise, while events name
    /// every change and every file is read in a plain state, an idle
    /// driver sleeps until its next safety-net full poll. By default, yes.
    fn needs_ticks(&self) -> bool {
        true
    }

    /// Called after every poll (at least every `poll_interval` while
    /// [`Sink::needs_ticks`], also under continuous load), with the
    /// follower between two reads, so its
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

/// While inotify names every change, the longest time between two full
/// polls (every file re-stat'ed, globs expanded), on a tick. A full poll
/// costs about 9 µs per file followed; GNU `tail -F` makes none while
/// inotify works. This one catches writes inotify cannot see from the
/// directories we watch.
pub const FULL_POLL_EVERY: Duration = Duration::from_secs(60);

/// Event-driven polls are spaced by at least this many times the last
/// poll's duration (and `event_coalesce`), so a follower of many busy files
/// spends at most about 1/100 of a core on polling, what a sidecar's CPU
/// request is commonly sized for (10m): every file then has several lines
/// per read instead of one, and a file's `stat` and `read` are paid per
/// several lines. A poll of one busy file takes tens of microseconds, and
/// only the cost of looking at more than one file counts, so this spacing
/// shows with dozens of files written at once (50 busy files: ~100 ms),
/// up to [`MAX_COST_COALESCE`] with about 500 and more.
const COALESCE_COST_FACTOR: u32 = 100;

/// The longest spacing [`COALESCE_COST_FACTOR`] gives: with a thousand
/// files written at once, a line waits about this long at most, as with
/// Fluent Bit's one-second flush or Vector's one-second glob cooldown.
pub const MAX_COST_COALESCE: Duration = Duration::from_secs(1);

/// The spacing of event-driven polls grows by `event_coalesce` for every
/// poll in a row that found lines, up to this: a writer that never pauses
/// costs about 25 polls a second instead of 100, each reading more, while a
/// line still waits at most this long plus a poll (the lag goal is a p99 of
/// 50 ms; at 30 ms, 1k lines/s cost 0.26x GNU `tail -F`'s CPU, at 40 ms
/// 0.19x, docs/follow-cost.md). A poll that finds
/// nothing starts again at `event_coalesce`, so a lone line after a quiet
/// spell is read at once.
pub const MAX_EVENT_COALESCE: Duration = Duration::from_millis(40);

/// While a copytruncate is expected, how many quick reads of the copied
/// files come between two full polls.
const ORIGINAL_READS_PER_POLL: usize = 20;

/// While a copytruncate is expected, how long a read of the copied files
/// waits for a write before reading anyway (an event may be lost to a full
/// queue).
const ORIGINAL_READ_WAIT: Duration = Duration::from_millis(1);

/// A burst of name changes (a rotation) has ended once none came for this
/// long: logrotate renames a kept file every few microseconds.
const NAME_BURST_QUIET: Duration = Duration::from_millis(1);

/// The longest the full poll after a name change waits for the burst to
/// end, while files rotated by truncation are read at every write.
const NAME_BURST_MAX: Duration = Duration::from_millis(10);

/// How long after a poll's start the next event-driven poll may start:
/// `base_gap` more for every poll in a row that found lines (`streak`), up
/// to `busy_gap`, or [`COALESCE_COST_FACTOR`] times the poll's `cost`, up
/// to [`MAX_COST_COALESCE`], whichever is longer. No gap at all when
/// coalescing is off (`--event-coalesce 0`).
fn event_gap(base_gap: Duration, busy_gap: Duration, streak: u32, cost: Duration) -> Duration {
    if base_gap.is_zero() {
        return Duration::ZERO;
    }
    (base_gap * streak.saturating_add(1))
        .min(busy_gap)
        .max((cost * COALESCE_COST_FACTOR).min(MAX_COST_COALESCE))
        .max(base_gap)
}

/// The share of a poll's cost that comes from looking at `files` files
/// rather than one: what spacing polls saves (each file's `stat` and
/// reads paid for several lines instead of one). Reading a fast file's
/// lines costs the same however the reads are spaced, so one file's poll,
/// however long, is not spaced by its cost.
fn many_files_share(cost: Duration, files: usize) -> Duration {
    let files = u32::try_from(files).unwrap_or(u32::MAX).max(1);
    cost / files * (files - 1)
}

/// What a poll cost, for [`event_gap`]: its CPU time when it was measured
/// (`cpu_before`), else its wall time, but then never enough to space polls
/// beyond `busy_gap`. The wall clock also counts the time a poll was
/// preempted: on a loaded machine, one poll of one file can take
/// milliseconds, and its lines would wait 100 times that. The CPU clock
/// costs two syscalls, so it is read only after a poll that took long.
fn poll_cost(wall: Duration, cpu_before: Option<Duration>, busy_gap: Duration) -> Duration {
    match cpu_before {
        Some(before) => thread_cpu_time().saturating_sub(before),
        None => wall.min(busy_gap / COALESCE_COST_FACTOR),
    }
}

/// The CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// A watcher constructor: receives the wake-up callback, returns a watcher.
/// [`run`] uses inotify; tests pass one that fails.
pub type WatcherFactory =
    fn(Box<dyn FnMut(notify::Result<notify::Event>) + Send>) -> notify::Result<Box<dyn Watcher>>;

#[cfg(not(target_os = "linux"))]
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
    #[cfg(target_os = "linux")]
    {
        let watching = Watching::direct(follower.options().force_poll, sink);
        drive(follower, sink, shutdown, drain_timeout, watching).await
    }
    #[cfg(not(target_os = "linux"))]
    run_with_watcher(follower, sink, shutdown, drain_timeout, inotify_watcher).await
}

/// [`run`] with another watcher, e.g. one that fails to test the fallback.
/// Its events name no file: every poll is a full one.
pub async fn run_with_watcher<S: Sink>(
    follower: &mut Follower,
    sink: &mut S,
    shutdown: &Shutdown,
    drain_timeout: Duration,
    make_watcher: WatcherFactory,
) -> io::Result<()> {
    let watching = Watching::new(follower.options().force_poll, make_watcher, sink);
    drive(follower, sink, shutdown, drain_timeout, watching).await
}

async fn drive<S: Sink>(
    follower: &mut Follower,
    sink: &mut S,
    shutdown: &Shutdown,
    drain_timeout: Duration,
    mut watching: Watching,
) -> io::Result<()> {
    let interval = follower.options().poll_interval;
    let base_gap = follower.options().event_coalesce;
    let busy_gap = if base_gap.is_zero() {
        base_gap
    } else {
        base_gap.max(MAX_EVENT_COALESCE)
    };
    // Event-driven polls in a row that found lines.
    let mut streak: u32 = 0;
    // Whether the polls since the last wait were started by the tick, and
    // whether they handed over anything.
    let mut by_tick = false;
    let mut found = false;
    let mut eager_until = Instant::now();
    // Whether the next poll's cost is taken from the thread's CPU clock.
    let mut measure_cpu = false;
    // The watched directories change only when names do (a glob match in a
    // new directory, a directory created late): synced after full polls,
    // not on every wake-up of a busy file.
    let mut sync_dirs = true;
    // Whether the next poll must look at every file, and the spacing of
    // full polls on ticks while events name every change.
    let mut full = true;
    let mut full_every = FULL_POLL_EVERY.max(interval);
    let mut last_full = Instant::now();
    let mut settled_before = false;
    let alarm = watching.alarm();
    // Lines found by a tick's full poll in files no event named.
    let mut unannounced: Vec<PathBuf> = Vec::new();
    while !shutdown.is_requested() {
        let polled = Instant::now();
        let cpu_before = measure_cpu.then(thread_cpu_time);
        watching.adopt(follower);
        let names_changed = watching.take_names_changed();
        if names_changed && follower.read_every_change() && watching.names_every_change() {
            // A rotation's names change in a burst: logrotate renames every
            // kept file one name up, then copies and truncates. One full
            // poll after the burst, not one per rename: with many `.gz`
            // files kept, those polls kept us busy right while logrotate
            // copied and truncated. Meanwhile the files rotated by
            // truncation are read at every write, as between polls.
            let burst_end = polled + NAME_BURST_MAX;
            let mut last_name = Instant::now();
            loop {
                if !read_truncated_now(follower, sink)? {
                    break;
                }
                let quiet_until = (last_name + NAME_BURST_QUIET).min(burst_end);
                if Instant::now() >= quiet_until {
                    break;
                }
                tokio::select! {
                    _ = shutdown.requested() => break,
                    _ = tokio::time::sleep_until(quiet_until) => {}
                    _ = watching.hint() => {}
                }
                if watching.take_names_changed() {
                    last_name = Instant::now();
                }
                // Files created meanwhile, opened at their creation.
                watching.adopt(follower);
            }
        }
        if names_changed {
            eager_until = polled + EAGER_AFTER_NAME_CHANGE;
        }
        watching.collect();
        let due = by_tick && polled.duration_since(last_full) >= full_every;
        let overflowed = watching.take_overflowed();
        full |= overflowed || names_changed || due || !watching.names_every_change();
        // Whether this poll tells if events cover every file: a tick's full
        // poll after a quiet poll, so no read left over from before, and no
        // new name (a file renamed into place was written under another).
        let judged = due && settled_before && !names_changed;
        let looked_at = if full {
            follower.names_followed()
        } else {
            watching.changed().len()
        };
        let outcome = {
            let changed = watching.changed();
            let mut handle = |event: Event<'_>| {
                found = true;
                if let Event::Line { path, .. } = &event {
                    if judged
                        && !changed.contains(*path)
                        && !unannounced.iter().any(|known| known.as_path() == *path)
                    {
                        unannounced.push(path.to_path_buf());
                    }
                }
                sink.event(event)
            };
            if full {
                follower.poll_once(&mut handle)?
            } else {
                follower.poll_changed(changed, &mut handle)?
            }
        };
        watching.clear_changed();
        if full {
            // Before any event is read again: a file discovered by this
            // poll is named by the events its next writes bring.
            watching.follow_paths(follower, names_changed || overflowed);
            last_full = polled;
            sync_dirs = true;
            full = false;
        }
        if judged {
            // A write during the poll was queued before the read that found
            // it: what is queued now names it.
            watching.collect();
            let missed = unannounced
                .iter()
                .any(|path| !watching.changed().contains(path));
            full_every = if missed {
                interval
            } else {
                (full_every * 2).min(FULL_POLL_EVERY.max(interval))
            };
            unannounced.clear();
        }
        sink.after_poll(follower)?;
        let wall = polled.elapsed();
        let cost = many_files_share(poll_cost(wall, cpu_before, busy_gap), looked_at);
        measure_cpu = !busy_gap.is_zero()
            && many_files_share(wall, looked_at) * COALESCE_COST_FACTOR > busy_gap;
        streak = if found && !by_tick {
            streak.saturating_add(1)
        } else {
            0
        };
        let gap = event_gap(base_gap, busy_gap, streak, cost);
        settled_before = outcome == PollOutcome::Idle;
        match outcome {
            PollOutcome::Busy => {
                full = true;
                tokio::task::yield_now().await;
                continue;
            }
            PollOutcome::Paused => {
                full = true;
                tokio::select! {
                    ready = sink.ready() => ready?,
                    _ = shutdown.requested() => {}
                }
                continue;
            }
            PollOutcome::Idle if follower.truncation_expected() => {
                // logrotate is copying: read the original at every write,
                // as GNU `tail -F` does, until it is truncated; a full poll
                // after a few reads notices that, and one comes at once
                // after a name change (what finds a file created, filled
                // and deleted within milliseconds: `delete` rotation at
                // full speed). Woken, not spinning: on a loaded machine a
                // loop that yields has used its share of the CPU when
                // logrotate truncates, and a woken one runs first. With two
                // busy loops beside the matrix, the spinning loop lost
                // 15-38 lines per copytruncate cell on the glob, this one
                // 0-7 (GNU `tail -F` in the same runs: 0-11).
                full = true;
                for _ in 0..ORIGINAL_READS_PER_POLL {
                    if follower.read_originals(&mut |event| sink.event(event))? != PollOutcome::Idle
                        || watching.names_pending()
                    {
                        break;
                    }
                    tokio::select! {
                        _ = shutdown.requested() => break,
                        _ = watching.hint() => {}
                        _ = tokio::time::sleep(ORIGINAL_READ_WAIT) => {}
                    }
                }
                continue;
            }
            PollOutcome::Idle => {}
        }
        if std::mem::take(&mut sync_dirs) && watching.sync(follower, sink) {
            // A file of a directory watched only now may have changed since
            // the poll: no event says so, the next poll looks at every file.
            full = true;
        }
        sink.idle()?;
        if found
            && watching.hints()
            && polled.elapsed() < gap
            && Instant::now() >= eager_until
            && !watching.names_pending()
            && !follower.read_every_change()
        {
            // After a poll that found lines, the coalescing pause (below)
            // comes first when any wake-up would be followed by it anyway:
            // a busy file's next write comes within it, and waiting for
            // that write's event first would register the content instance
            // with the reactor only to unregister it for the pause. Lines
            // are polled when they would have been: at the pause's end, or
            // at once after it. An idle file's tick keeps its plain wait.
            pause(&mut watching, alarm.as_ref(), sink, shutdown, polled + gap).await?;
        }
        // While events name every change and nothing in the follower or the
        // sink waits on the clock, a tick would find nothing: the wait lasts
        // until the safety net's full poll is due. An idle sidecar wakes
        // about once a minute, not every `poll_interval`. Not while a full
        // poll is owed (a directory watched only now: what changed in it
        // before brought no event).
        let tick = if !full
            && watching.names_every_change()
            && follower.settled()
            && !sink.needs_ticks()
        {
            (last_full + full_every)
                .saturating_duration_since(Instant::now())
                .max(interval)
        } else {
            interval
        };
        let woken = watching.queued()
            || tokio::select! {
                _ = shutdown.requested() => false,
                _ = watching.hint() => true,
                handed = sink.held_back() => {
                    handed?;
                    true
                }
                _ = tokio::time::sleep(tick) => false,
            };
        (by_tick, found) = (!woken, false);
        if woken
            && polled.elapsed() < gap
            && Instant::now() >= eager_until
            && !watching.names_pending()
        {
            // A writer appending line by line makes one inotify event per
            // write: polling for each costs a stat, a read and a stdout
            // hand-over per line. Events arriving meanwhile are coalesced
            // into the poll after this pause (the kernel queues them, or the
            // `Notify` keeps one permit). The gap grows with the poll's cost
            // (many files), within `MAX_COST_COALESCE`. A name change (a
            // rotation starting) ends the pause at once.
            if follower.read_every_change() {
                // Files rotated by copytruncate are still read at every
                // change (only them, no glob or stat of the others): their
                // lines written after logrotate's copy are gone at its
                // truncation.
                loop {
                    if !read_truncated_now(follower, sink)? {
                        break;
                    }
                    let changed = tokio::select! {
                        _ = shutdown.requested() => false,
                        _ = tokio::time::sleep_until(polled + gap) => false,
                        _ = watching.hint() => true,
                    };
                    if !changed || watching.names_pending() {
                        break;
                    }
                }
            } else {
                pause(&mut watching, alarm.as_ref(), sink, shutdown, polled + gap).await?;
            }
        }
    }
    watching.adopt(follower);
    drain(follower, sink, Instant::now() + drain_timeout).await
}

/// Reads the files rotated by truncation ([`Follower::read_truncated_before`])
/// and hands what was read over at once, between two polls. Returns false if
/// the sink paused.
fn read_truncated_now<S: Sink>(follower: &mut Follower, sink: &mut S) -> io::Result<bool> {
    if follower.read_truncated_before(&mut |event| sink.event(event))? == PollOutcome::Paused {
        return Ok(false);
    }
    sink.idle()?;
    Ok(true)
}

/// A coalescing pause until `until`: content events queue unheard (the
/// instance is quiet); a name change or a stop ends it, and output kept
/// back for want of room is handed over as soon as there is.
async fn pause<S: Sink>(
    watching: &mut Watching,
    alarm: Option<&Alarm>,
    sink: &mut S,
    shutdown: &Shutdown,
    until: Instant,
) -> io::Result<()> {
    watching.quiet();
    loop {
        tokio::select! {
            _ = shutdown.requested() => return Ok(()),
            _ = sleep_until(alarm, until) => return Ok(()),
            _ = watching.name_hint() => return Ok(()),
            handed = sink.held_back() => handed?,
        }
    }
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

/// Files opened when inotify reported their creation, for the follower.
type Created = Arc<std::sync::Mutex<Vec<(PathBuf, std::fs::File)>>>;

/// Opens a file inotify says was just created, without blocking (a FIFO),
/// so a file deleted before the next poll is still read.
fn open_created(path: &std::path::Path) -> Option<std::fs::File> {
    let file = super::source::open_to_read(path).ok()?;
    file.metadata().ok()?.is_file().then_some(file)
}

/// Where wake-up hints come from.
enum Backend {
    /// Polling only (`force_poll`, or watching failed).
    None,
    /// `notify`'s watcher: its own thread calls back for every event.
    Notify {
        watcher: Box<dyn Watcher>,
        wake: Arc<Notify>,
        names_changed: Arc<AtomicBool>,
        created: Created,
    },
    /// inotify read by the driver itself and a thread for names: see
    /// [`direct`].
    #[cfg(target_os = "linux")]
    Direct(Box<direct::Inotify>),
}

/// The inotify side: which directories are watched, and whether we fell back.
struct Watching {
    backend: Backend,
    dirs: BTreeSet<PathBuf>,
    warned: bool,
    /// Every wanted directory is watched (at the last sync).
    complete: bool,
    /// What [`Watching::changed`] is without a backend that names files.
    no_change: HashSet<PathBuf>,
}

impl Watching {
    fn none() -> Self {
        Self {
            backend: Backend::None,
            dirs: BTreeSet::new(),
            warned: false,
            complete: false,
            no_change: HashSet::new(),
        }
    }

    fn new<S: Sink>(force_poll: bool, make_watcher: WatcherFactory, sink: &mut S) -> Self {
        let mut watching = Self::none();
        if force_poll {
            return watching;
        }
        let wake = Arc::new(Notify::new());
        let names_changed = Arc::new(AtomicBool::new(false));
        let created: Created = Arc::default();
        let handler = {
            let wake = wake.clone();
            let names_changed = names_changed.clone();
            let created = created.clone();
            Box::new(move |event: notify::Result<notify::Event>| {
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
            })
        };
        match make_watcher(handler) {
            Ok(watcher) => {
                watching.backend = Backend::Notify {
                    watcher,
                    wake,
                    names_changed,
                    created,
                }
            }
            Err(error) => watching.fall_back(&format!("cannot start inotify: {error}"), sink),
        }
        watching
    }

    /// The coalescing pause's timer: the kernel's when inotify is read
    /// directly, tokio's otherwise. Not in this crate's tests: they pause
    /// tokio's clock, which a kernel timer does not follow (the binaries'
    /// tests run with it).
    fn alarm(&self) -> Option<Alarm> {
        #[cfg(all(target_os = "linux", not(test)))]
        if let Backend::Direct(_) = &self.backend {
            return Alarm::new().ok();
        }
        None
    }

    /// Watching with inotify read by the driver and its names thread (Linux).
    #[cfg(target_os = "linux")]
    fn direct<S: Sink>(force_poll: bool, sink: &mut S) -> Self {
        let mut watching = Self::none();
        if force_poll {
            return watching;
        }
        match direct::Inotify::new() {
            Ok(inotify) => watching.backend = Backend::Direct(Box::new(inotify)),
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

    /// Whether events can be relied on for every followed file: a watcher
    /// runs and every wanted directory was watched at the last sync.
    fn complete(&self) -> bool {
        self.complete && !self.warned && !matches!(self.backend, Backend::None)
    }

    /// Whether [`Watching::changed`] names every file that changed since
    /// the last poll (as far as inotify sees): [`Watching::complete`], with
    /// events that carry names.
    fn names_every_change(&self) -> bool {
        #[cfg(target_os = "linux")]
        if let Backend::Direct(_) = &self.backend {
            return self.complete();
        }
        false
    }

    /// Hands the files opened at their creation to the follower.
    fn adopt(&mut self, follower: &mut Follower) {
        let files = match &mut self.backend {
            Backend::None => return,
            Backend::Notify { created, .. } => match created.lock() {
                Ok(mut files) => std::mem::take(&mut *files),
                Err(_) => return,
            },
            #[cfg(target_os = "linux")]
            Backend::Direct(inotify) => inotify.take_created(),
        };
        for (path, file) in files {
            follower.adopt_created(path, file);
        }
    }

    /// Reads the content events queued so far (without waiting).
    fn collect(&mut self) {
        #[cfg(target_os = "linux")]
        if let Backend::Direct(inotify) = &mut self.backend {
            inotify.collect();
        }
    }

    /// The followed paths events named since the last poll, and those
    /// always read (names events cannot tell about: symbolic links).
    fn changed(&self) -> &HashSet<PathBuf> {
        #[cfg(target_os = "linux")]
        if let Backend::Direct(inotify) = &self.backend {
            return inotify.changed();
        }
        &self.no_change
    }

    fn clear_changed(&mut self) {
        #[cfg(target_os = "linux")]
        if let Backend::Direct(inotify) = &mut self.backend {
            inotify.clear_changed();
        }
    }

    /// Whether events were lost (the kernel's queue overflowed) or named
    /// what no path stands for (the directory itself): a full poll is due.
    fn take_overflowed(&mut self) -> bool {
        #[cfg(target_os = "linux")]
        if let Backend::Direct(inotify) = &mut self.backend {
            return inotify.take_overflowed();
        }
        false
    }

    /// Completes when a watched directory changed (never without a watcher).
    async fn hint(&mut self) {
        match &mut self.backend {
            Backend::None => std::future::pending().await,
            Backend::Notify { wake, .. } => wake.notified().await,
            #[cfg(target_os = "linux")]
            Backend::Direct(inotify) => {
                if inotify.changed_hint().await.is_err() {
                    // The descriptor broke (it cannot, short of a kernel
                    // bug): the tick carries on alone.
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    /// Whether content events are queued now (known only with our own
    /// inotify instance), left for the next poll to read.
    fn queued(&mut self) -> bool {
        #[cfg(target_os = "linux")]
        if let Backend::Direct(inotify) = &mut self.backend {
            return inotify.queued();
        }
        false
    }

    /// Whether [`Watching::hint`] can complete (a watcher is running).
    fn hints(&self) -> bool {
        !matches!(self.backend, Backend::None)
    }

    /// Content changes stop waking the runtime until the next
    /// [`Watching::hint`]: for a pause that waits for names alone.
    fn quiet(&mut self) {
        #[cfg(target_os = "linux")]
        if let Backend::Direct(inotify) = &mut self.backend {
            inotify.quiet();
        }
    }

    /// Completes when a name was created, removed or renamed (never with
    /// `notify`, whose thread only says "something changed").
    async fn name_hint(&mut self) {
        match &mut self.backend {
            #[cfg(target_os = "linux")]
            Backend::Direct(inotify) => inotify.name_hint().await,
            _ => std::future::pending().await,
        }
    }

    /// Whether a name changed since the last [`Watching::take_names_changed`].
    fn names_pending(&self) -> bool {
        match &self.backend {
            Backend::None => false,
            Backend::Notify { names_changed, .. } => names_changed.load(Ordering::Relaxed),
            #[cfg(target_os = "linux")]
            Backend::Direct(inotify) => inotify.names_pending(),
        }
    }

    /// Whether a name was created, removed or renamed since the last call.
    fn take_names_changed(&mut self) -> bool {
        match &mut self.backend {
            Backend::None => false,
            Backend::Notify { names_changed, .. } => names_changed.swap(false, Ordering::Relaxed),
            #[cfg(target_os = "linux")]
            Backend::Direct(inotify) => inotify.take_names_changed(),
        }
    }

    /// Tells the backend which paths the follower follows now.
    fn follow_paths(&mut self, follower: &Follower, names_changed: bool) {
        #[cfg(target_os = "linux")]
        if let Backend::Direct(inotify) = &mut self.backend {
            inotify.follow_paths(follower.paths(), names_changed);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (follower, names_changed);
    }

    /// Watches exactly the directories the follower wants (those that
    /// exist). Returns whether a directory was watched anew.
    fn sync<S: Sink>(&mut self, follower: &Follower, sink: &mut S) -> bool {
        #[cfg(target_os = "linux")]
        if let Backend::Direct(inotify) = &mut self.backend {
            // A directory removed (and its watch with it) is watched again
            // when it comes back.
            for dir in inotify.take_lost() {
                self.dirs.remove(&dir);
            }
        }
        let wanted: BTreeSet<PathBuf> = follower.watched_dirs().into_iter().collect();
        let stale: Vec<PathBuf> = self.dirs.difference(&wanted).cloned().collect();
        for dir in stale {
            match &mut self.backend {
                Backend::None => return false,
                Backend::Notify { watcher, .. } => {
                    let _ = watcher.unwatch(&dir);
                }
                #[cfg(target_os = "linux")]
                Backend::Direct(inotify) => inotify.unwatch(&dir),
            }
            self.dirs.remove(&dir);
        }
        let mut failure = None;
        let mut missing = false;
        let mut added = false;
        for dir in wanted {
            if self.dirs.contains(&dir) {
                continue;
            }
            let outcome = match &mut self.backend {
                Backend::None => return false,
                Backend::Notify { watcher, .. } => watcher
                    .watch(&dir, RecursiveMode::NonRecursive)
                    .map_err(|error| (is_not_found(&error), error.to_string())),
                #[cfg(target_os = "linux")]
                Backend::Direct(inotify) => inotify.watch(&dir).map_err(|error| {
                    (
                        error.kind() == io::ErrorKind::NotFound,
                        direct::describe(&error),
                    )
                }),
            };
            match outcome {
                Ok(()) => {
                    self.dirs.insert(dir);
                    added = true;
                }
                // Not there yet: the tick covers it, and we retry next time.
                Err((true, _)) => missing = true,
                Err((false, error)) => {
                    failure = Some(format!("cannot watch {}: {error}", dir.display()))
                }
            }
        }
        self.complete = !missing && failure.is_none();
        if let Some(reason) = failure {
            self.fall_back(&reason, sink);
        }
        added
    }
}

fn is_not_found(error: &notify::Error) -> bool {
    match &error.kind {
        notify::ErrorKind::PathNotFound => true,
        notify::ErrorKind::Io(io_error) => io_error.kind() == io::ErrorKind::NotFound,
        _ => false,
    }
}

#[cfg(target_os = "linux")]
mod alarm;
#[cfg(target_os = "linux")]
mod direct;

/// The pause's timer where the kernel has one ([`alarm`]), none elsewhere.
#[cfg(target_os = "linux")]
type Alarm = alarm::Alarm;
#[cfg(not(target_os = "linux"))]
enum Alarm {}

/// Sleeps until `deadline` on `alarm`, or on tokio's timer without one.
async fn sleep_until(alarm: Option<&Alarm>, deadline: Instant) {
    #[cfg(target_os = "linux")]
    if let Some(alarm) = alarm
        && alarm.sleep_until(deadline).await.is_ok()
    {
        return;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = alarm;
    tokio::time::sleep_until(deadline).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(10);

    #[test]
    fn a_cheap_poll_is_spaced_by_the_streak_of_polls_that_found_lines() {
        let cheap = Duration::from_micros(50);
        assert_eq!(event_gap(BASE, MAX_EVENT_COALESCE, 0, cheap), BASE);
        assert_eq!(
            event_gap(BASE, MAX_EVENT_COALESCE, 1, cheap),
            Duration::from_millis(20)
        );
        assert_eq!(
            event_gap(BASE, MAX_EVENT_COALESCE, 9, cheap),
            MAX_EVENT_COALESCE
        );
    }

    #[test]
    fn a_costly_poll_is_spaced_so_polling_takes_a_bounded_share_of_a_core() {
        // A poll of a thousand busy files: a few milliseconds of CPU.
        let costly = Duration::from_millis(5);
        let gap = event_gap(BASE, MAX_EVENT_COALESCE, 0, costly);
        assert_eq!(gap, costly * COALESCE_COST_FACTOR);
        assert!(gap > MAX_EVENT_COALESCE, "{gap:?}");
        // Never longer than the cap, however costly.
        assert_eq!(
            event_gap(BASE, MAX_EVENT_COALESCE, 3, Duration::from_secs(2)),
            MAX_COST_COALESCE
        );
        // Coalescing turned off: never spaced.
        assert_eq!(
            event_gap(Duration::ZERO, Duration::ZERO, 0, costly),
            Duration::ZERO
        );
    }

    #[test]
    fn only_the_cost_of_looking_at_more_than_one_file_spaces_polls() {
        // One fast file read for 5 ms: reading it later costs as much.
        let one = many_files_share(Duration::from_millis(5), 1);
        assert_eq!(one, Duration::ZERO);
        assert_eq!(event_gap(BASE, MAX_EVENT_COALESCE, 0, one), BASE);
        // A thousand files: nearly all of it is theirs.
        let many = many_files_share(Duration::from_millis(5), 1000);
        assert!(many >= Duration::from_micros(4990), "{many:?}");
        assert!(event_gap(BASE, MAX_EVENT_COALESCE, 0, many) > MAX_EVENT_COALESCE);
        assert_eq!(
            many_files_share(Duration::from_millis(4), 2),
            Duration::from_millis(2)
        );
        assert_eq!(
            many_files_share(Duration::from_millis(4), 0),
            Duration::ZERO
        );
    }

    #[test]
    fn a_poll_that_took_long_on_the_wall_clock_alone_spaces_no_more_than_a_busy_file() {
        // Preempted for 5 ms, CPU not measured: no longer than a busy file's gap.
        let cost = poll_cost(Duration::from_millis(5), None, MAX_EVENT_COALESCE);
        assert_eq!(
            event_gap(BASE, MAX_EVENT_COALESCE, 0, cost),
            MAX_EVENT_COALESCE
        );
        // Measured on the CPU clock: a poll that slept cost nothing.
        let before = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(50));
        let slept = poll_cost(Duration::from_millis(50), Some(before), MAX_EVENT_COALESCE);
        assert!(slept < Duration::from_millis(25), "{slept:?}");
        // And a poll that worked costs what it worked.
        let (before, wall) = (thread_cpu_time(), std::time::Instant::now());
        while thread_cpu_time().saturating_sub(before) < Duration::from_millis(5)
            && wall.elapsed() < Duration::from_secs(10)
        {
            std::hint::spin_loop();
        }
        let worked = poll_cost(wall.elapsed(), Some(before), MAX_EVENT_COALESCE);
        assert!(worked >= Duration::from_millis(5), "{worked:?}");
    }
}
