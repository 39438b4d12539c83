//! A randomized model test of stream mode: random sequences of appends,
//! partial appends, rename rotation, delete + recreate, truncation and
//! restarts (SIGTERM, checkpoints) against a real directory and the real
//! binary; after every step the output of all runs so far must be exactly
//! what a simple model says: every complete line once, in order.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use testkit::{Running, spawn};

#[derive(Clone, Debug)]
enum Op {
    /// Complete a pending partial line, then append this many lines.
    Append(u8),
    /// Append a line without its newline (completed by the next step that writes).
    Partial,
    /// logrotate's default: rename, one late line to the old file, reopen.
    Rename,
    /// Delete the file, recreate it.
    Delete,
    /// copytruncate's truncation, seen before new lines arrive.
    Truncate,
    /// SIGTERM, this many lines appended while down, start again.
    Restart(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..40).prop_map(Op::Append),
        2 => Just(Op::Partial),
        1 => Just(Op::Rename),
        1 => Just(Op::Delete),
        1 => Just(Op::Truncate),
        2 => (0u8..20).prop_map(Op::Restart),
    ]
}

struct Harness {
    dir: tempfile::TempDir,
    path: PathBuf,
    file: File,
    running: Option<Running>,
    /// Output of the runs that ended.
    previous: String,
    /// What the output must be: the model.
    expected: String,
    next: u64,
    /// A line written without its newline: its text, and whether a
    /// shutdown already wrote it out (then its rest is a line of its own).
    partial: Option<(String, bool)>,
    rotations: u32,
    /// "was truncated" notices the current run must have logged.
    truncations: usize,
}

fn open_append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let file = open_append(&path);
        let mut harness = Self {
            dir,
            path,
            file,
            running: None,
            previous: String::new(),
            expected: String::new(),
            next: 0,
            partial: None,
            rotations: 0,
            truncations: 0,
        };
        harness.line();
        harness.start();
        harness
    }

    fn start(&mut self) {
        let state = self.dir.path().join("state");
        let mut command = Command::new(env!("CARGO_BIN_EXE_log-aggregator"));
        command
            .env_remove("LOG_AGGREGATOR_SOURCES")
            .args([
                "--follow",
                "--rotate-wait",
                "100ms",
                "--poll-interval",
                "100ms",
            ])
            .arg("--checkpoint-dir")
            .arg(state)
            .arg(&self.path);
        self.running = Some(spawn(command));
        self.truncations = 0;
    }

    /// SIGTERM; the model: the incomplete last line is written out at shutdown.
    fn stop(&mut self) {
        let running = self.running.take().unwrap();
        let (status, _, output) = running.terminate();
        assert!(status.success(), "{status:?}: {}", output.stderr);
        self.previous.push_str(&output.stdout);
        if let Some((text, written_out)) = self.partial.as_mut() {
            if !*written_out {
                self.expected.push_str(text);
                self.expected.push('\n');
                *written_out = true;
            }
        }
        assert_eq!(self.previous, self.expected, "at shutdown");
    }

    fn line(&mut self) {
        let text = format!("L{}", self.next);
        self.next += 1;
        writeln!(self.file, "{text}").unwrap();
        self.expected.push_str(&text);
        self.expected.push('\n');
    }

    fn complete_partial(&mut self) {
        if let Some((text, written_out)) = self.partial.take() {
            writeln!(self.file, "-end").unwrap();
            if written_out {
                self.expected.push_str("-end\n");
            } else {
                self.expected.push_str(&format!("{text}-end\n"));
            }
        }
    }

    /// Waits until all runs together printed as much as the model expects,
    /// then compares exactly (a repeat shows as a mismatch, not a timeout).
    fn check(&self, step: &str) {
        let running = self.running.as_ref().unwrap();
        let wanted = self.expected.len() - self.previous.len().min(self.expected.len());
        let out = running.wait_for_stdout(step, |out| out.len() >= wanted);
        assert_eq!(
            format!("{}{out}", self.previous),
            self.expected,
            "after {step}"
        );
        if self.truncations > 0 {
            running.wait_for_stderr_containing("was truncated");
            let stderr = running.stderr();
            assert!(stderr.matches("was truncated").count() >= self.truncations);
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Append(count) => {
                self.complete_partial();
                for _ in 0..*count {
                    self.line();
                }
            }
            Op::Partial => {
                if self.partial.is_none() {
                    let text = format!("P{}", self.next);
                    self.next += 1;
                    write!(self.file, "{text}").unwrap();
                    self.partial = Some((text, false));
                }
            }
            Op::Rename => {
                self.complete_partial();
                self.rotations += 1;
                let rotated = self.dir.path().join(format!("app.log.{}", self.rotations));
                std::fs::rename(&self.path, rotated).unwrap();
                self.line(); // late, to the renamed file
                self.file = open_append(&self.path);
                self.line();
            }
            Op::Delete => {
                self.complete_partial();
                std::fs::remove_file(&self.path).unwrap();
                self.file = open_append(&self.path);
                self.line();
            }
            Op::Truncate => {
                self.complete_partial();
                // The completed line must be read before the truncation, or
                // its start is handed over as a line when the file shrinks.
                self.check("completing before the truncation");
                if self.file.metadata().unwrap().len() > 0 {
                    // Everything is read (the last check), so the read
                    // position is the old size: the truncation is seen.
                    self.file.set_len(0).unwrap();
                    self.truncations += 1;
                    let running = self.running.as_ref().unwrap();
                    running.wait_for_stdout("", |_| {
                        running.stderr().matches("was truncated").count() >= self.truncations
                    });
                }
                self.line();
            }
            Op::Restart(while_down) => {
                self.stop();
                for _ in 0..*while_down {
                    self.complete_partial();
                    self.line();
                }
                self.start();
                // A line to wait for: a SIGTERM before the binary installed
                // its handlers would kill it like any process.
                self.complete_partial();
                self.line();
            }
        }
        self.check(&format!("{op:?}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        max_shrink_iters: 16,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_line_once_in_order_whatever_happens_to_the_file(ops in proptest::collection::vec(op(), 1..14)) {
        let mut harness = Harness::new();
        harness.check("start");
        for op in &ops {
            harness.apply(op);
        }
        harness.stop();
        prop_assert_eq!(&harness.previous, &harness.expected);
    }
}
