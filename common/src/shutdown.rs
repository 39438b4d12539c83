//! Shutdown on SIGTERM and SIGINT.
//!
//! In a scratch image our binary is PID 1, and the kernel delivers no default
//! signal action to PID 1: without our own handlers `kubectl delete pod` would
//! wait the whole grace period (30 s) and then SIGKILL us, losing whatever was
//! buffered. So every binary installs handlers through [`Shutdown::on_signals`]
//! and its work loops watch the returned token, flush, and return.
//!
//! A second signal while shutting down exits at once (status 130), the way
//! people expect a second Ctrl-C to behave.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A cloneable "please stop" flag: tasks await [`Shutdown::requested`], loops
/// and threads poll [`Shutdown::is_requested`]. Tests trigger it by hand.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// A flag nobody has raised yet; raise it with [`Shutdown::trigger`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs SIGTERM and SIGINT handlers and returns the flag they raise.
    /// Must be called inside a tokio runtime.
    pub fn on_signals() -> std::io::Result<Self> {
        let shutdown = Self::new();
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let flag = shutdown.clone();
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            tracing::debug!(signal = name, "shutting down");
            flag.trigger();
            tokio::select! {
                _ = terminate.recv() => {},
                _ = interrupt.recv() => {},
            }
            eprintln!("second signal: exiting without finishing the shutdown");
            std::process::exit(130);
        });
        Ok(shutdown)
    }

    /// Asks every holder of this flag to stop.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether a stop was asked for; cheap enough for a hot loop.
    pub fn is_requested(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes when a stop is asked for.
    pub async fn requested(&self) {
        self.token.cancelled().await
    }

    /// Sleeps for `duration` unless a stop is asked for first; returns `true`
    /// when it was interrupted by the stop.
    pub async fn sleep(&self, duration: std::time::Duration) -> bool {
        tokio::select! {
            _ = self.requested() => true,
            _ = tokio::time::sleep(duration) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn sleep_is_cut_short_by_a_trigger() {
        let shutdown = Shutdown::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            trigger.trigger();
        });
        let started = tokio::time::Instant::now();
        assert!(shutdown.sleep(Duration::from_secs(3600)).await);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        assert!(shutdown.is_requested());
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_runs_to_the_end_without_a_trigger() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.sleep(Duration::from_secs(5)).await);
        assert!(!shutdown.is_requested());
    }
}
