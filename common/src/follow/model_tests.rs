//! Model test: random sequences of appends, partial appends, rename
//! rotation, delete + recreate, truncation, logrotate's copytruncate (with
//! and without compression) and restarts from checkpoints, against a real directory, under a sink that pauses at random.
//! The follower's output must hold every line written exactly once, in order
//! within each file.
//!
//! The follower runs by path, or by glob with no rotate wait (so rotated
//! files are let go and found again under their new names). By glob, rename
//! rotation is logrotate's `rotate 3` chain (`app.log.2` -> `app.log.3`,
//! `app.log.1` -> `app.log.2`, `app.log` -> `app.log.1`, the oldest deleted),
//! up to three rotations between two polls, and rotations also land in the
//! middle of a poll (between its steps, through the follower's test hook).
//!
//! What the model assumes, and why: `poll_once` is called at least once
//! between two rotations by path (at most [`KEEP`] by glob), even if the sink pauses it at once (a file created
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
    /// Several rename rotations in a row, each new file written to, no poll
    /// between (by path: one).
    RotateChain {
        count: u8,
        lines: u8,
    },
    /// A poll during which, after `step` of its steps, `count` rotations
    /// happen (by path: one).
    PollWithRotations {
        step: u8,
        count: u8,
        lines: u8,
    },
    /// logrotate's `copytruncate`: the older copies move along, the file is
    /// copied to `.1`, `after_copy` lines are written (and read, by a poll:
    /// lines written between the copy and the truncation are in no file
    /// once it is done), then the file is truncated, and with `compress`
    /// the copy is gzipped (`.1.gz`, the uncompressed copy removed) before
    /// anyone looks.
    CopyTruncate {
        after_copy: u8,
        compress: bool,
    },
}

/// logrotate's `rotate N` for the glob mode.
const KEEP: u32 = 3;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..6, 0u16..3000, any::<bool>())
            .prop_map(|(lines, width, partial)| Op::Append { lines, width, partial }),
        3 => Just(Op::Poll),
        2 => (0u8..3).prop_map(|late_lines| Op::RenameRotate { late_lines }),
        2 => (0u8..3).prop_map(|late_lines| Op::DeleteRecreate { late_lines }),
        1 => Just(Op::Truncate),
        1 => Just(Op::Restart),
        2 => (1u8..=3, 0u8..4).prop_map(|(count, lines)| Op::RotateChain { count, lines }),
        2 => (0u8..12, 1u8..=3, 0u8..4)
            .prop_map(|(step, count, lines)| Op::PollWithRotations { step, count, lines }),
        2 => (0u8..3, any::<bool>())
            .prop_map(|(after_copy, compress)| Op::CopyTruncate { after_copy, compress }),
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
    max_open_files: usize,
    follower: Follower,
}

fn new_follower(
    path: &Path,
    checkpoints: &[Checkpoint],
    glob: bool,
    max_open_files: usize,
) -> Follower {
    let mut follower = Follower::new(FollowOptions {
        max_open_files,
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
        Self::with_max_open_files(pause_every, glob, usize::MAX)
    }

    /// With a bound on open files: by glob (rotated files are let go at
    /// once) files read to their end are closed and opened again.
    fn with_max_open_files(pause_every: Option<usize>, glob: bool, max_open_files: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let writer = open_append(&path);
        let follower = new_follower(&path, &[], glob, max_open_files);
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
            max_open_files,
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

    /// Pre-writes what `rotations` rotations make: for each, the new file's
    /// lines. The caller then reopens the writer at `path`.
    fn plan_rotations(&mut self, count: u8, lines: u8) -> Vec<Vec<String>> {
        let count = if self.glob { count } else { 1 };
        (0..count)
            .map(|_| {
                self.file_no += 1;
                self.rotations += 1;
                (0..lines)
                    .map(|_| {
                        let line = self.line(10);
                        self.expected.push(line.clone());
                        line
                    })
                    .collect()
            })
            .collect()
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

    /// One poll; with a bound on open files, as the driver does, polls
    /// again at once while files wait for a descriptor (else a file waiting
    /// and deleted before its turn is lost: the bound's documented limit).
    fn poll(&mut self) -> PollOutcome {
        for _ in 0..1000 {
            let outcome = self.poll_one();
            if outcome != PollOutcome::Busy || self.follower.waiting() == 0 {
                return outcome;
            }
        }
        panic!("files wait for a descriptor forever");
    }

    fn poll_one(&mut self) -> PollOutcome {
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
        let mut polls = 0;
        while self.poll() != PollOutcome::Idle {
            polls += 1;
            assert!(polls < 10_000, "never idle");
        }
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
                    rotate(&self.path, self.glob, self.rotations, &[]);
                } else {
                    fs::remove_file(&self.path).unwrap();
                }
                // The writer has not reopened yet: these go to the old file.
                // Unless every file may stay open, a deleted file may have
                // been closed while idle: its late lines are not expected
                // (the documented limit of `max_open_files`).
                let deleted = matches!(op, Op::DeleteRecreate { .. });
                let late_lines = if deleted && self.max_open_files != usize::MAX {
                    0
                } else {
                    late_lines
                };
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
            Op::RotateChain { count, lines } => {
                self.end_partial();
                self.poll();
                let first = self.rotations + 1;
                let plan = self.plan_rotations(count, lines);
                rotate(&self.path, self.glob, first, &plan);
                self.writer = open_append(&self.path);
            }
            Op::PollWithRotations { step, count, lines } => {
                self.end_partial();
                self.poll();
                let first = self.rotations + 1;
                let plan = self.plan_rotations(count, lines);
                let (path, glob) = (self.path.clone(), self.glob);
                self.follower.test_hook = Some((
                    usize::from(step),
                    Box::new(move || rotate(&path, glob, first, &plan)),
                ));
                self.poll();
                // A poll that paused early: the rotations happen now.
                if let Some((_, mut hook)) = self.follower.test_hook.take() {
                    hook();
                }
                self.writer = open_append(&self.path);
            }
            Op::CopyTruncate {
                after_copy,
                compress,
            } => {
                self.end_partial();
                self.poll();
                let path = self.path.clone();
                let name = |n: u32| path.with_extension(format!("log.{n}"));
                let gz = |n: u32| path.with_extension(format!("log.{n}.gz"));
                let _ = fs::remove_file(name(KEEP));
                let _ = fs::remove_file(gz(KEEP));
                for n in (1..KEEP).rev() {
                    for (from, to) in [(name(n), name(n + 1)), (gz(n), gz(n + 1))] {
                        if from.exists() {
                            fs::rename(from, to).unwrap();
                        }
                    }
                }
                fs::copy(&path, name(1)).unwrap();
                for _ in 0..after_copy {
                    let line = self.line(10);
                    self.write(&format!("{line}\n"));
                    self.expected.push(line);
                }
                if after_copy > 0 {
                    self.poll_until_idle();
                }
                self.writer.set_len(0).unwrap();
                if compress {
                    let plain = fs::read(name(1)).unwrap();
                    let mut encoder = flate2::write::GzEncoder::new(
                        File::create(gz(1)).unwrap(),
                        flate2::Compression::fast(),
                    );
                    encoder.write_all(&plain).unwrap();
                    encoder.finish().unwrap();
                    fs::remove_file(name(1)).unwrap();
                }
                self.rotations += 1;
                self.file_no += 1;
            }
            Op::Restart => {
                self.poll_until_idle();
                let checkpoints = self.follower.checkpoints();
                self.follower =
                    new_follower(&self.path, &checkpoints, self.glob, self.max_open_files);
            }
        }
    }

    fn finish(&mut self) {
        self.end_partial();
        self.poll_until_idle();
        assert_eq!(
            self.follower.waiting(),
            0,
            "files still wait for a descriptor"
        );
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

/// Rename rotations of `path`, numbered from `first` (by path) or as a
/// `rotate KEEP` chain (by glob); after each, the new file is created with
/// the planned lines (none: created by the writer).
fn rotate(path: &Path, glob: bool, first: u32, plan: &[Vec<String>]) {
    let rotations = plan.len().max(1);
    for (offset, number) in (first..).take(rotations).enumerate() {
        let name = |n: u32| path.with_extension(format!("log.{n}"));
        if glob {
            let _ = fs::remove_file(name(KEEP));
            for n in (1..KEEP).rev() {
                if name(n).exists() {
                    fs::rename(name(n), name(n + 1)).unwrap();
                }
            }
            fs::rename(path, name(1)).unwrap();
        } else {
            fs::rename(path, name(number)).unwrap();
        }
        if let Some(lines) = plan.get(offset) {
            let mut file = open_append(path);
            for line in lines {
                file.write_all(format!("{line}\n").as_bytes()).unwrap();
            }
        }
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
        few_descriptors in any::<bool>(),
    ) {
        // Two descriptors: a file and its copy or rotated one at most. Not
        // with pauses: a file waiting for a descriptor and deleted before
        // its turn is lost (the bound's documented limit), and a paused
        // poll gives it no turn.
        let bounded = glob && few_descriptors && pause_every.is_none();
        let max_open_files = if bounded { 2 } else { usize::MAX };
        let mut world = World::with_max_open_files(pause_every, glob, max_open_files);
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

fn replay(ops: &[Op], pause_every: Option<usize>, glob: bool) -> (Vec<String>, Vec<String>) {
    let mut world = World::new(pause_every, glob);
    for op in ops {
        world.apply(op);
    }
    world.finish();
    let mut expected = world.expected.clone();
    expected.sort();
    (world.output, expected)
}

#[test]
fn copytruncate_with_a_partial_line_before_it_is_read_once() {
    let partial = Op::Append {
        lines: 0,
        width: 0,
        partial: true,
    };
    let ops = [
        partial.clone(),
        Op::CopyTruncate {
            after_copy: 0,
            compress: false,
        },
        partial,
    ];
    let (output, expected) = replay(&ops, Some(1), false);
    let mut sorted = output.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "output in order read: {output:?}");
}

#[test]
fn copytruncate_after_a_rotation_reads_the_new_line_once() {
    let ops = [
        Op::RotateChain { count: 1, lines: 1 },
        Op::CopyTruncate {
            after_copy: 0,
            compress: false,
        },
        Op::Append {
            lines: 0,
            width: 11,
            partial: true,
        },
    ];
    let (output, expected) = replay(&ops, Some(1), false);
    let mut sorted = output.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "output in order read: {output:?}");
}

#[test]
fn copytruncate_compressed_at_once_under_a_glob_is_read_once() {
    let ops = [
        Op::Append {
            lines: 1,
            width: 22,
            partial: false,
        },
        Op::CopyTruncate {
            after_copy: 0,
            compress: true,
        },
    ];
    let (output, expected) = replay(&ops, None, true);
    let mut sorted = output.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "output in order read: {output:?}");
}

#[test]
fn copytruncate_of_an_empty_file_then_a_line_is_read_once() {
    let ops = [
        Op::RotateChain { count: 1, lines: 1 },
        Op::CopyTruncate {
            after_copy: 0,
            compress: false,
        },
        Op::RotateChain { count: 1, lines: 0 },
        Op::CopyTruncate {
            after_copy: 1,
            compress: false,
        },
    ];
    let (output, expected) = replay(&ops, Some(1), true);
    let mut sorted = output.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "output in order read: {output:?}");
}

#[test]
fn copytruncate_compressed_then_again_is_read_once() {
    let ops = [
        Op::RotateChain { count: 1, lines: 1 },
        Op::CopyTruncate {
            after_copy: 0,
            compress: true,
        },
        Op::CopyTruncate {
            after_copy: 0,
            compress: false,
        },
    ];
    let (output, expected) = replay(&ops, Some(1), true);
    let mut sorted = output.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "output in order read: {output:?}");
}

#[test]
fn a_partial_line_across_two_copytruncates_is_read_once() {
    let partial = |lines| Op::Append {
        lines,
        width: 0,
        partial: true,
    };
    let ops = [
        partial(2),
        Op::Append {
            lines: 3,
            width: 0,
            partial: false,
        },
        Op::CopyTruncate {
            after_copy: 0,
            compress: false,
        },
        partial(0),
        Op::CopyTruncate {
            after_copy: 0,
            compress: true,
        },
    ];
    for glob in [false, true] {
        let (output, expected) = replay(&ops, Some(1), glob);
        let mut sorted = output.clone();
        sorted.sort();
        assert_eq!(
            sorted, expected,
            "glob {glob}: output in order read: {output:?}"
        );
    }
}

#[test]
fn a_line_finished_after_a_copytruncate_then_copied_again_is_read_once() {
    let append = |lines, partial| Op::Append {
        lines,
        width: 0,
        partial,
    };
    let ops = [
        append(2, true),
        append(4, false),
        append(0, true),
        Op::CopyTruncate {
            after_copy: 0,
            compress: false,
        },
        Op::Poll,
        append(0, true),
        Op::CopyTruncate {
            after_copy: 1,
            compress: false,
        },
    ];
    let (output, expected) = replay(&ops, Some(1), true);
    let mut sorted = output.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "output in order read: {output:?}");
}

#[test]
fn a_line_copied_and_compressed_twice_between_looks_is_read_once() {
    let compressed = Op::CopyTruncate {
        after_copy: 0,
        compress: true,
    };
    let ops = [
        Op::PollWithRotations {
            step: 0,
            count: 1,
            lines: 2,
        },
        compressed.clone(),
        Op::Poll,
        Op::Append {
            lines: 1,
            width: 0,
            partial: false,
        },
        compressed,
    ];
    let (output, expected) = replay(&ops, Some(1), true);
    let mut sorted = output.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "output in order read: {output:?}");
}

#[test]
fn copytruncates_after_rotations_with_pauses_read_every_line_once() {
    let ops = [
        Op::RotateChain { count: 1, lines: 0 },
        Op::PollWithRotations {
            step: 1,
            count: 1,
            lines: 3,
        },
        Op::Append {
            lines: 2,
            width: 0,
            partial: true,
        },
        Op::CopyTruncate {
            after_copy: 0,
            compress: false,
        },
        Op::Poll,
        Op::Append {
            lines: 1,
            width: 0,
            partial: false,
        },
        Op::CopyTruncate {
            after_copy: 0,
            compress: false,
        },
    ];
    for glob in [false, true] {
        let (output, expected) = replay(&ops, Some(2), glob);
        let mut sorted = output.clone();
        sorted.sort();
        assert_eq!(
            sorted, expected,
            "glob {glob}: output in order read: {output:?}"
        );
    }
}

#[test]
fn long_lines_copied_compressed_then_copied_again_come_out_in_order() {
    let ops = [
        Op::Append {
            lines: 4,
            width: 0,
            partial: false,
        },
        Op::CopyTruncate {
            after_copy: 0,
            compress: true,
        },
        Op::CopyTruncate {
            after_copy: 0,
            compress: false,
        },
    ];
    let (output, expected) = replay(&ops, Some(2), true);
    assert!(in_order_within_files(&output), "out of order: {output:?}");
    let mut sorted = output.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "output in order read: {output:?}");
}

/// An empty file closed while idle is deleted (logrotate's oldest) and its
/// inode number goes to the copy made next: the copy is told by its
/// content, not taken for the closed file renamed.
#[test]
fn a_copy_on_the_inode_of_an_empty_file_closed_while_idle_is_read_once() {
    let ops = [
        Op::RotateChain { count: 1, lines: 0 },
        Op::CopyTruncate {
            after_copy: 0,
            compress: true,
        },
        Op::PollWithRotations {
            step: 0,
            count: 1,
            lines: 0,
        },
        Op::Append {
            lines: 1,
            width: 0,
            partial: false,
        },
        Op::CopyTruncate {
            after_copy: 0,
            compress: false,
        },
    ];
    let mut world = World::with_max_open_files(None, true, 2);
    for op in &ops {
        world.apply(op);
    }
    world.finish();
    assert_eq!(world.output, world.expected, "output in order read");
}
