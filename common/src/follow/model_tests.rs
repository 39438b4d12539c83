//! Model test (issue 5): random sequences of appends, partial appends,
//! rename rotation, delete + recreate, truncation and restarts from
//! checkpoints, against a real directory, under a sink that pauses at random.
//! The follower's output must hold every line written exactly once, in order
//! within each file.
//!
//! The follower runs by path, or by glob with no rotate wait (so rotated
//! files are let go and found again under their new names).
//!
//! What the model assumes, and why: `poll_once` is called at least once
//! between two rotations, even if the sink pauses it at once (a file created
//! and rotated away before it was ever looked at is invisible to anyone
//! following by name), reads to the end before a
//! truncation and looks once after it, before new writes (the copytruncate
//! window, see the module docs), and a restart is graceful (drained first, as
//! the driver does on SIGTERM). The writer ends its partial line before a
//! rotation, as an application closing its log does.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;

use super::*;

#[derive(Clone, Debug)]
enum Op {
    Append {
        lines: u8,
        width: u16,
        partial: bool,
    },
    Poll,
    RenameRotate {
        late_lines: u8,
    },
    DeleteRecreate {
        late_lines: u8,
    },
    Truncate,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..6, 0u16..3000, any::<bool>())
            .prop_map(|(lines, width, partial)| Op::Append { lines, width, partial }),
        3 => Just(Op::Poll),
        2 => (0u8..3).prop_map(|late_lines| Op::RenameRotate { late_lines }),
        2 => (0u8..3).prop_map(|late_lines| Op::DeleteRecreate { late_lines }),
        1 => Just(Op::Truncate),
        1 => Just(Op::Restart),
    ]
}

struct World {
    _dir: tempfile::TempDir,
    path: PathBuf,
    writer: File,
    rotations: u32,
    file_no: u32,
    seq: u32,
    /// The line the writer started and has not ended: (written, rest).
    partial: Option<(String, String)>,
    expected: Vec<String>,
    output: Vec<String>,
    pause_every: Option<usize>,
    events: usize,
    glob: bool,
    follower: Follower,
}

fn new_follower(path: &Path, checkpoints: &[Checkpoint], glob: bool) -> Follower {
    let mut follower = Follower::new(FollowOptions {
        // By path: rotated files stay open until the end, so late writes
        // are read. By glob: rotated files are let go at once and found
        // again under their new names.
        rotate_wait: if glob {
            Duration::ZERO
        } else {
            Duration::from_secs(3600)
        },
        read_budget: 8 * 1024,
        ..FollowOptions::default()
    });
    // `End` proves the checkpoint wins for the files present at restart.
    let start = if checkpoints.is_empty() {
        StartAt::Beginning
    } else {
        StartAt::End
    };
    if glob {
        let pattern = format!("{}*", path.display());
        follower.add_glob(&pattern, start).unwrap();
    } else {
        follower.add_path(path.to_path_buf(), start);
    }
    follower.resume(checkpoints);
    follower
}

impl World {
    fn new(pause_every: Option<usize>, glob: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let writer = open_append(&path);
        let follower = new_follower(&path, &[], glob);
        Self {
            _dir: dir,
            path,
            writer,
            rotations: 0,
            file_no: 0,
            seq: 0,
            partial: None,
            expected: Vec::new(),
            output: Vec::new(),
            pause_every,
            events: 0,
            glob,
            follower,
        }
    }

    fn line(&mut self, width: u16) -> String {
        self.seq += 1;
        format!(
            "f{}-{:05}-{}",
            self.file_no,
            self.seq,
            "x".repeat(usize::from(width))
        )
    }

    fn write(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).unwrap();
    }

    fn end_partial(&mut self) {
        if let Some((written, rest)) = self.partial.take() {
            self.write(&format!("{rest}\n"));
            self.expected.push(format!("{written}{rest}"));
        }
    }

    fn poll(&mut self) -> PollOutcome {
        let pause_every = self.pause_every;
        let events = &mut self.events;
        let output = &mut self.output;
        self.follower
            .poll_once(&mut |event| {
                if let Event::Line {
                    line, truncated, ..
                } = event
                {
                    assert!(!truncated);
                    output.push(String::from_utf8(line.to_vec()).unwrap());
                }
                *events += 1;
                Ok(match pause_every {
                    Some(every) if *events % every == 0 => Flow::Pause,
                    _ => Flow::Continue,
                })
            })
            .unwrap()
    }

    fn poll_until_idle(&mut self) {
        while self.poll() != PollOutcome::Idle {}
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Append {
                lines,
                width,
                partial,
            } => {
                self.end_partial();
                let mut text = String::new();
                for _ in 0..lines {
                    let line = self.line(width);
                    text.push_str(&line);
                    text.push('\n');
                    self.expected.push(line);
                }
                if partial {
                    let line = self.line(width);
                    let (written, rest) = line.split_at(line.len() / 2);
                    text.push_str(written);
                    self.partial = Some((written.to_owned(), rest.to_owned()));
                }
                self.write(&text);
            }
            Op::Poll => {
                self.poll();
            }
            Op::RenameRotate { late_lines } | Op::DeleteRecreate { late_lines } => {
                self.end_partial();
                self.poll();
                self.rotations += 1;
                if matches!(op, Op::RenameRotate { .. }) {
                    let rotated = self.path.with_extension(format!("log.{}", self.rotations));
                    fs::rename(&self.path, rotated).unwrap();
                } else {
                    fs::remove_file(&self.path).unwrap();
                }
                // The writer has not reopened yet: these go to the old file.
                for _ in 0..late_lines {
                    let line = self.line(10);
                    self.write(&format!("{line}\n"));
                    self.expected.push(line);
                }
                self.file_no += 1;
                self.writer = open_append(&self.path);
            }
            Op::Truncate => {
                self.end_partial();
                self.poll_until_idle();
                OpenOptions::new()
                    .write(true)
                    .open(&self.path)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
                self.poll();
            }
            Op::Restart => {
                self.poll_until_idle();
                let checkpoints = self.follower.checkpoints();
                self.follower = new_follower(&self.path, &checkpoints, self.glob);
            }
        }
    }

    fn finish(&mut self) {
        self.end_partial();
        self.poll_until_idle();
        let output = &mut self.output;
        while self
            .follower
            .finish(&mut |event| {
                if let Event::Line { line, .. } = event {
                    output.push(String::from_utf8(line.to_vec()).unwrap());
                }
                Ok(Flow::Continue)
            })
            .unwrap()
            != PollOutcome::Idle
        {}
    }
}

fn open_append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// Lines are `f<file>-<seq>-...`: checks order within each file.
fn in_order_within_files(lines: &[String]) -> bool {
    let mut last: std::collections::HashMap<&str, &str> = Default::default();
    lines.iter().all(|line| {
        let mut parts = line.splitn(3, '-');
        let (Some(file), Some(seq)) = (parts.next(), parts.next()) else {
            return false;
        };
        let ordered = last.get(file).is_none_or(|previous| *previous < seq);
        last.insert(file, seq);
        ordered
    })
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_line_exactly_once_through_rotation_truncation_and_restart(
        ops in proptest::collection::vec(op(), 1..30),
        pause_every in proptest::option::of(1usize..5),
        glob in any::<bool>(),
    ) {
        let mut world = World::new(pause_every, glob);
        for op in &ops {
            world.apply(op);
        }
        world.finish();
        prop_assert!(in_order_within_files(&world.output), "out of order: {:?}", world.output);
        let mut output = world.output.clone();
        let mut expected = world.expected.clone();
        output.sort();
        expected.sort();
        prop_assert_eq!(output, expected);
    }
}
