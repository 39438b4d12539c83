//! The coalescing pause's timer: one of the kernel's (`timerfd`), read
//! through the runtime's reactor. tokio's timer wheel wakes a sleeper once
//! more at each 64 ms boundary between now and its deadline (the timer
//! moves down a level there), so a 40 ms pause woke the driver twice in
//! about six polls of ten: 40 wake-ups a second at 1k lines/s instead of
//! 25, and on a virtual machine a wake-up is most of a poll's cost.

use std::io;
use std::os::fd::OwnedFd;

use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// A one-shot timer; one sleep at a time.
pub(super) struct Alarm {
    timer: AsyncFd<OwnedFd>,
}

// `AsyncFd::try_new` is deprecated because an arbitrary `AsRawFd` could
// close or swap its descriptor while registered; its replacement is
// `unsafe`, which this workspace denies. An `OwnedFd` keeps its descriptor
// until it is dropped, and the `AsyncFd` owns it: the precondition holds.
#[allow(deprecated)]
fn register(timer: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    AsyncFd::try_new(timer).map_err(io::Error::from)
}

impl Alarm {
    pub(super) fn new() -> io::Result<Self> {
        let timer = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        Ok(Self {
            timer: register(timer)?,
        })
    }

    /// Returns at `deadline` (at once if it has passed). A sleep dropped
    /// before its end leaves the timer armed: the next one sets it again
    /// and takes no expiration left from before.
    pub(super) async fn sleep_until(&self, deadline: Instant) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        self.take_expiration()?;
        let once = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(left.subsec_nanos()),
            },
        };
        timerfd_settime(self.timer.get_ref(), TimerfdTimerFlags::empty(), &once)?;
        loop {
            let mut ready = self.timer.readable().await?;
            if self.take_expiration()? {
                return Ok(());
            }
            ready.clear_ready();
        }
    }

    /// Reads the expiration count, if the timer expired since last read.
    fn take_expiration(&self) -> io::Result<bool> {
        let mut count = [0u8; 8];
        match rustix::io::read(self.timer.get_ref(), &mut count) {
            Ok(_) => Ok(true),
            Err(rustix::io::Errno::AGAIN) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_sleep_ends_at_its_deadline_even_after_one_was_dropped() {
        let alarm = Alarm::new().unwrap();
        // Dropped while armed: its expiration must not end the next sleep.
        let dropped = Instant::now() + Duration::from_millis(5);
        let _ = tokio::time::timeout(Duration::from_millis(1), alarm.sleep_until(dropped)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        alarm
            .sleep_until(started + Duration::from_millis(30))
            .await
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(30));
        // A deadline already passed returns at once.
        alarm.sleep_until(started).await.unwrap();
    }
}
