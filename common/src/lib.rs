//! Everything two or more of the sidecar binaries need.
//!
//! Each module owns one job; binaries are thin glue over these modules:
//! - [`units`]: human durations (`500ms`, `5s`, `1m`) and byte sizes (`64KiB`).
//! - [`clock`]: the timestamps we print (busybox/GNU `date` layout, RFC 3339).
//! - [`shutdown`]: SIGTERM/SIGINT handling for a process that runs as PID 1.
//! - [`cli`]: the shared `main` wrapper: logging, runtime, error reporting, exit codes.
//! - [`applets`]: tiny `cat` and `sleep`, so `kubectl exec ... cat FILE` and the lab's
//!   `sleep 3600` work in a scratch image.
//! - [`follow`]: following files by name like `tail -F`, every line once through rotation,
//!   truncation and restarts (checkpoints, saved by [`follow::CheckpointStore`]), with
//!   bounded memory.
//! - [`lines`]: the one bounded line splitter (long lines cut or split), for followed files,
//!   stdin or FIFOs, and snapshot mode's last lines.
//! - [`tail`]: where the last N lines of a file begin, reading blocks backwards.
//! - [`multiline`]: joining continuation lines (stack traces) into one record.
//! - [`json`]: JSON string literals written straight into an output buffer.
//! - [`gone`]: noticing that our stdout's reader or a followed writer (`--pid`) went away.
//! - [`pipeline`]: the parsers, `--add/--rename/--drop` and the encoders (JSON, logfmt,
//!   template) that turn a line into a structured record, for `adapter` and
//!   `log-aggregator --follow --parse`.
//! - [`metrics`]: Prometheus text exposition and the `/metrics`, `/healthz`, `/readyz` server.

pub mod applets;
pub mod cli;
pub mod clock;
pub mod follow;
pub mod gone;
pub mod json;
pub mod lines;
pub mod metrics;
pub mod multiline;
pub mod pipeline;
pub mod shutdown;
pub mod tail;
pub mod units;
