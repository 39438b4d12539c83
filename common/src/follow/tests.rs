//! The follower against real files in temp dirs, one behaviour per test.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// What a sink saw, as text: lines as is, notices as `!Kind`, truncated
/// lines with a trailing `~`.
#[derive(Default)]
struct Seen {
    events: Vec<String>,
    pause_every: Option<usize>,
    count: usize,
}

impl Seen {
    fn sink(&mut self) -> impl FnMut(Event<'_>) -> io::Result<Flow> + '_ {
        |event| {
            let text = match event {
                Event::Line {
                    line, truncated, ..
                } => {
                    let mut text = String::from_utf8_lossy(line).into_owned();
                    if truncated {
                        text.push('~');
                    }
                    text
                }
                Event::Notice { kind, .. } => format!("!{kind:?}"),
            };
            self.events.push(text);
            self.count += 1;
            Ok(match self.pause_every {
                Some(every) if self.count % every == 0 => Flow::Pause,
                _ => Flow::Continue,
            })
        }
    }

    fn take(&mut self) -> Vec<String> {
        std::mem::take(&mut self.events)
    }
}

fn options() -> FollowOptions {
    FollowOptions {
        rotate_wait: Duration::ZERO,
        ..FollowOptions::default()
    }
}

fn poll(follower: &mut Follower, seen: &mut Seen) -> Vec<String> {
    while follower.poll_once(&mut seen.sink()).unwrap() != PollOutcome::Idle {}
    seen.take()
}

/// The lines (not the notices) of `polls` polls in a row.
fn lines_of_polls(follower: &mut Follower, seen: &mut Seen, polls: usize) -> Vec<String> {
    let mut read = Vec::new();
    for _ in 0..polls {
        read.extend(lines(&poll(follower, seen)).into_iter().cloned());
    }
    read
}

/// The lines of a poll of `path` alone, then of a full poll: a change
/// named by its event that turns out to be a rotation, and the rest of it.
fn lines_named_then_full(follower: &mut Follower, seen: &mut Seen, path: &Path) -> Vec<String> {
    let mut events = poll_named(follower, seen, path);
    events.extend(poll(follower, seen));
    lines(&events).into_iter().cloned().collect()
}

/// A follower of `app.log*` next to `log`, started again from `saved`.
fn restart_glob_app_log(log: &Path, saved: &[Checkpoint]) -> (Follower, Seen) {
    let (mut restarted, seen) = follow_glob(
        &format!("{}*", log.display()),
        StartAt::Beginning,
        options(),
    );
    restarted.resume(saved);
    (restarted, seen)
}

/// One poll of what inotify would name: a write to `path` alone.
fn poll_named(follower: &mut Follower, seen: &mut Seen, path: &Path) -> Vec<String> {
    follower
        .poll_changed(
            &std::collections::HashSet::from([path.to_path_buf()]),
            &mut seen.sink(),
        )
        .unwrap();
    seen.take()
}

fn truncate_in_place(path: &Path) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
}

fn append(path: &Path, text: &str) {
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

fn setup(start: StartAt) -> (tempfile::TempDir, PathBuf, Follower, Seen) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let mut follower = Follower::new(options());
    follower.add_path(path.clone(), start);
    (dir, path, follower, Seen::default())
}

/// The lines among `events`, notices left out.
fn lines(events: &[String]) -> Vec<&String> {
    events
        .iter()
        .filter(|event| !event.starts_with('!'))
        .collect()
}

/// `DIR/app.log` holding `one`, followed through the glob `DIR/app.log*`
/// from the beginning, its line read.
/// A follower of one glob, and what it has seen.
fn follow_glob(pattern: &str, start: StartAt, options: FollowOptions) -> (Follower, Seen) {
    let mut follower = Follower::new(options);
    follower.add_glob(pattern, start).unwrap();
    (follower, Seen::default())
}

fn glob_app_log(dir: &Path, options: FollowOptions) -> (PathBuf, Follower, Seen) {
    let log = dir.join("app.log");
    write(&log, "one\n");
    let (mut follower, mut seen) =
        follow_glob(&format!("{}*", log.display()), StartAt::Beginning, options);
    assert_eq!(poll(&mut follower, &mut seen), ["one"]);
    (log, follower, seen)
}

#[test]
fn reads_existing_lines_then_new_ones() {
    let (_dir, path, mut follower, mut seen) = setup(StartAt::Beginning);
    write(&path, "one\ntwo\n");
    assert_eq!(poll(&mut follower, &mut seen), ["one", "two"]);
    append(&path, "three\n");
    assert_eq!(poll(&mut follower, &mut seen), ["three"]);
    assert!(poll(&mut follower, &mut seen).is_empty());
}

#[test]
fn a_file_handed_over_open_is_read_to_its_end_even_if_replaced_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    write(&path, "printed\nnot yet\n");
    let mut follower = Follower::new(options());
    follower
        .add_file(path.clone(), fs::File::open(&path).unwrap(), 8)
        .unwrap();
    append(&path, "more\n");
    fs::remove_file(&path).unwrap();
    write(&path, "new\n");
    let mut seen = Seen::default();
    assert_eq!(
        poll(&mut follower, &mut seen),
        ["not yet", "more", "!Rotated", "new"]
    );
}

#[test]
fn start_at_end_skips_existing_lines() {
    let (_dir, path, mut follower, mut seen) = setup(StartAt::End);
    write(&path, "old\n");
    assert!(poll(&mut follower, &mut seen).is_empty());
    append(&path, "new\n");
    assert_eq!(poll(&mut follower, &mut seen), ["new"]);
}

#[test]
fn late_creation_is_waited_for_and_read_from_its_start() {
    let (_dir, path, mut follower, mut seen) = setup(StartAt::End);
    assert!(poll(&mut follower, &mut seen).is_empty());
    write(&path, "first\n");
    assert_eq!(poll(&mut follower, &mut seen), ["!Appeared", "first"]);
}

#[test]
fn partial_line_is_held_until_its_newline() {
    let (_dir, path, mut follower, mut seen) = setup(StartAt::Beginning);
    write(&path, "hel");
    assert!(poll(&mut follower, &mut seen).is_empty());
    append(&path, "lo\nwor");
    assert_eq!(poll(&mut follower, &mut seen), ["hello"]);
    assert_eq!(follower.checkpoints()[0].offset, 6);
    follower.finish(&mut seen.sink()).unwrap();
    assert_eq!(seen.take(), ["wor"]);
    assert_eq!(follower.checkpoints()[0].offset, 9);
}

#[test]
fn rename_rotation_under_continued_writes_loses_nothing() {
    let (dir, path, mut follower, mut seen) = setup(StartAt::Beginning);
    let mut writer = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    writer.write_all(b"a1\n").unwrap();
    assert_eq!(poll(&mut follower, &mut seen), ["a1"]);
    writer.write_all(b"a2\n").unwrap();
    fs::rename(&path, dir.path().join("app.log.1")).unwrap();
    // The writer has not reopened yet: its next line goes to the old file.
    writer.write_all(b"a3\n").unwrap();
    write(&path, "b1\n");
    assert_eq!(
        poll(&mut follower, &mut seen),
        ["a2", "a3", "!Rotated", "b1"]
    );
}

#[test]
fn rotated_file_is_kept_for_late_writes_until_rotate_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let mut follower = Follower::new(FollowOptions {
        rotate_wait: Duration::from_secs(3600),
        ..FollowOptions::default()
    });
    follower.add_path(path.clone(), StartAt::Beginning);
    let mut seen = Seen::default();
    let mut writer = fs::File::create(&path).unwrap();
    assert!(poll(&mut follower, &mut seen).is_empty());
    fs::rename(&path, dir.path().join("app.log.1")).unwrap();
    write(&path, "new\n");
    assert_eq!(poll(&mut follower, &mut seen), ["!Rotated", "new"]);
    writer.write_all(b"late\n").unwrap();
    assert_eq!(poll(&mut follower, &mut seen), ["late"]);
    assert_eq!(follower.open_files(), 2);
}

#[test]
fn a_deleted_file_still_written_by_a_writer_is_read_until_quiet() {
    let (_dir, path, mut follower, mut seen) = setup(StartAt::Beginning);
    follower.options.rotate_wait = Duration::from_secs(3600);
    let mut writer = fs::File::create(&path).unwrap();
    writer.write_all(b"1\n").unwrap();
    assert_eq!(poll(&mut follower, &mut seen), ["1"]);
    fs::remove_file(&path).unwrap();
    assert_eq!(poll(&mut follower, &mut seen), ["!Removed"]);
    writer.write_all(b"2\n").unwrap();
    assert_eq!(poll(&mut follower, &mut seen), ["2"]);
    assert_eq!(follower.open_files(), 1);
}

#[test]
fn delete_and_recreate_reads_the_new_file_from_its_start() {
    let (_dir, path, mut follower, mut seen) = setup(StartAt::Beginning);
    write(&path, "old1\n");
    assert_eq!(poll(&mut follower, &mut seen), ["old1"]);
    append(&path, "old2\n");
    fs::remove_file(&path).unwrap();
    write(&path, "new1\n");
    assert_eq!(poll(&mut follower, &mut seen), ["old2", "!Rotated", "new1"]);
}

#[test]
fn delete_then_later_create_notices_both() {
    let (_dir, path, mut follower, mut seen) = setup(StartAt::Beginning);
    write(&path, "x\n");
    assert_eq!(poll(&mut follower, &mut seen), ["x"]);
    fs::remove_file(&path).unwrap();
    assert_eq!(poll(&mut follower, &mut seen), ["!Removed"]);
    write(&path, "y\n");
    assert_eq!(poll(&mut follower, &mut seen), ["!Appeared", "y"]);
}

#[test]
fn truncation_then_new_writes_reads_again_from_the_start() {
    let (_dir, path, mut follower, mut seen) = setup(StartAt::Beginning);
    write(&path, "one\ntwo\n");
    assert_eq!(poll(&mut follower, &mut seen), ["one", "two"]);
    truncate_in_place(&path);
    append(&path, "three\n");
    assert_eq!(poll(&mut follower, &mut seen), ["!Truncated", "three"]);
}

#[test]
fn long_lines_are_cut_flagged_and_reading_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let mut follower = Follower::new(FollowOptions {
        max_line_bytes: 4,
        ..options()
    });
    follower.add_path(path.clone(), StartAt::Beginning);
    let mut seen = Seen::default();
    write(&path, "abcdefgh\nok\nabcd\nxy");
    assert_eq!(poll(&mut follower, &mut seen), ["abcd~", "ok", "abcd"]);
    // A long line spread over polls is cut the same way.
    append(&path, "zzzzzz");
    assert!(poll(&mut follower, &mut seen).is_empty());
    append(&path, "zz\nend\n");
    assert_eq!(poll(&mut follower, &mut seen), ["xyzz~", "end"]);
}

#[test]
fn a_line_much_longer_than_the_buffer_is_cut_and_memory_stays_bounded() {
    let (_dir, path, mut follower, mut seen) = setup(StartAt::Beginning);
    let long = "x".repeat(1024 * 1024 + 17);
    write(&path, &format!("{long}\nafter\n"));
    let events = poll(&mut follower, &mut seen);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].len(), DEFAULT_MAX_LINE_BYTES + 1);
    assert!(events[0].ends_with('~'));
    assert_eq!(events[1], "after");
}

#[test]
fn bytes_that_are_not_utf8_pass_through_untouched() {
    let (_dir, path, mut follower, _) = setup(StartAt::Beginning);
    fs::write(&path, b"\xff\xfe ok\n").unwrap();
    let mut lines = Vec::new();
    follower
        .poll_once(&mut |event| {
            if let Event::Line { line, .. } = event {
                lines.push(line.to_vec());
            }
            Ok(Flow::Continue)
        })
        .unwrap();
    assert_eq!(lines, [b"\xff\xfe ok".to_vec()]);
}

#[test]
fn pause_stops_at_once_and_the_next_poll_resumes_exactly() {
    let (_dir, path, mut follower, mut seen) = setup(StartAt::Beginning);
    seen.pause_every = Some(2);
    write(&path, "1\n2\n3\n4\n5\n");
    assert_eq!(
        follower.poll_once(&mut seen.sink()).unwrap(),
        PollOutcome::Paused
    );
    assert_eq!(seen.take(), ["1", "2"]);
    assert_eq!(follower.checkpoints()[0].offset, 4);
    assert_eq!(
        follower.poll_once(&mut seen.sink()).unwrap(),
        PollOutcome::Paused
    );
    assert_eq!(seen.take(), ["3", "4"]);
    assert_eq!(poll(&mut follower, &mut seen), ["5"]);
}

#[test]
fn a_sink_error_leaves_the_line_unconsumed() {
    let (_dir, path, mut follower, mut seen) = setup(StartAt::Beginning);
    write(&path, "a\nb\n");
    let mut calls = 0;
    let result = follower.poll_once(&mut |_| {
        calls += 1;
        if calls == 2 {
            Err(io::Error::other("full"))
        } else {
            Ok(Flow::Continue)
        }
    });
    assert!(result.is_err());
    assert_eq!(poll(&mut follower, &mut seen), ["b"]);
}

#[test]
fn checkpoints_and_resume_give_no_loss_and_no_duplicate() {
    let (_dir, path, mut follower, mut seen) = setup(StartAt::Beginning);
    write(&path, "1\n2\n3");
    assert_eq!(poll(&mut follower, &mut seen), ["1", "2"]);
    let saved = follower.checkpoints();
    drop(follower);
    append(&path, "\n4\n");
    let mut restarted = Follower::new(options());
    restarted.add_path(path.clone(), StartAt::End);
    restarted.resume(&saved);
    assert_eq!(poll(&mut restarted, &mut seen), ["3", "4"]);
}

/// A checkpointed file that no followed name leads to when the follower
/// starts (logrotate was shifting every rotation one name up while the glob
/// was listed) continues where it was left once it shows up under one,
/// instead of being read again from its start.
#[test]
fn a_checkpointed_file_renamed_while_resuming_continues_where_it_was_left() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut follower, mut seen) = glob_app_log(dir.path(), options());
    append(&log, "two\n");
    assert_eq!(poll(&mut follower, &mut seen), ["two"]);
    let saved = follower.checkpoints();
    drop(follower);
    let moving = dir.path().join("moving");
    fs::rename(&log, &moving).unwrap();
    append(&moving, "three\n");
    write(&log, "new\n");
    let (mut restarted, mut seen) = restart_glob_app_log(&log, &saved);
    assert_eq!(lines(&poll(&mut restarted, &mut seen)), ["new"]);
    fs::rename(&moving, dir.path().join("app.log.1")).unwrap();
    assert_eq!(lines_of_polls(&mut restarted, &mut seen, 3), ["three"]);
}

/// A compressed rotation saved while gzip had only created it (empty,
/// nothing read) is placed by its content after a restart: it holds the
/// lines of a stream read already, so it is not read again from its start.
#[test]
fn a_compressed_file_saved_empty_is_placed_by_content_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut follower, mut seen) = glob_app_log(dir.path(), options());
    append(&log, "two\n");
    assert_eq!(poll(&mut follower, &mut seen), ["two"]);
    let gz = dir.path().join("app.log.1.gz");
    write(&gz, "");
    assert!(lines(&poll(&mut follower, &mut seen)).is_empty());
    let saved = follower.checkpoints();
    assert!(
        saved
            .iter()
            .any(|saved| saved.path == gz && saved.offset == 0)
    );
    drop(follower);
    // Restarted while gzip has written its header only: compressed, with
    // nothing to compare yet.
    let compressed = gzip_bytes("one\ntwo\n");
    let (header, rest) = compressed.split_at(10);
    let add = |bytes: &[u8]| {
        fs::OpenOptions::new()
            .append(true)
            .open(&gz)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    };
    add(header);
    let (mut restarted, mut seen) = restart_glob_app_log(&log, &saved);
    let mut read = lines_of_polls(&mut restarted, &mut seen, 1);
    add(rest);
    read.extend(lines_of_polls(&mut restarted, &mut seen, 3));
    assert!(read.is_empty(), "{read:?}");
}

#[test]
fn resume_in_a_file_truncated_while_down_reads_it_from_its_start() {
    let (_dir, path, mut follower, mut seen) = setup(StartAt::Beginning);
    write(&path, "one\ntwo\n");
    assert_eq!(poll(&mut follower, &mut seen), ["one", "two"]);
    let saved = follower.checkpoints();
    drop(follower);
    truncate_in_place(&path);
    append(&path, "3\n");
    let mut restarted = Follower::new(options());
    restarted.add_path(path.clone(), StartAt::End);
    restarted.resume(&saved);
    assert_eq!(poll(&mut restarted, &mut seen), ["!Truncated", "3"]);
}

#[test]
fn resume_reads_a_file_replaced_while_down_from_its_start() {
    let (_dir, path, mut follower, mut seen) = setup(StartAt::Beginning);
    write(&path, "old\n");
    assert_eq!(poll(&mut follower, &mut seen), ["old"]);
    let saved = follower.checkpoints();
    drop(follower);
    fs::remove_file(&path).unwrap();
    write(&path, "new\n");
    let mut restarted = Follower::new(options());
    restarted.add_path(path.clone(), StartAt::End);
    restarted.resume(&saved);
    assert_eq!(poll(&mut restarted, &mut seen), ["!Rotated", "new"]);
}

#[test]
fn glob_discovers_new_files_and_reads_them_from_their_start() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("a.log"), "a-old\n");
    let (mut follower, mut seen) = follow_glob(
        &format!("{}/*.log", dir.path().display()),
        StartAt::End,
        options(),
    );
    assert!(poll(&mut follower, &mut seen).is_empty());
    write(&dir.path().join("b.log"), "b1\n");
    write(&dir.path().join("b.txt"), "ignored\n");
    assert_eq!(poll(&mut follower, &mut seen), ["!Appeared", "b1"]);
    assert_eq!(follower.watched_dirs(), [dir.path().to_path_buf()]);
}

#[test]
fn a_rotated_file_renamed_into_the_glob_is_not_read_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    write(&path, "1\n");
    let (mut follower, mut seen) = follow_glob(
        &format!("{}/app.log*", dir.path().display()),
        StartAt::Beginning,
        FollowOptions {
            rotate_wait: Duration::from_secs(3600),
            ..FollowOptions::default()
        },
    );
    assert_eq!(poll(&mut follower, &mut seen), ["1"]);
    append(&path, "2\n");
    fs::rename(&path, dir.path().join("app.log.1")).unwrap();
    write(&path, "3\n");
    let mut events = poll(&mut follower, &mut seen);
    events.sort();
    assert_eq!(events, ["!Rotated", "2", "3"]);
}

#[test]
fn a_rotated_file_let_go_then_matched_by_the_glob_is_not_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let rotated = dir.path().join("app.log.1");
    write(&path, "1\n");
    // No rotate wait: the renamed file is let go as soon as it is drained.
    let (mut follower, mut seen) = follow_glob(
        &format!("{}/app.log*", dir.path().display()),
        StartAt::Beginning,
        options(),
    );
    assert_eq!(poll(&mut follower, &mut seen), ["1"]);
    append(&path, "2\n");
    fs::rename(&path, &rotated).unwrap();
    write(&path, "3\n");
    assert_eq!(poll(&mut follower, &mut seen), ["2", "!Rotated", "3"]);
    assert!(poll(&mut follower, &mut seen).is_empty());
    append(&rotated, "late\n");
    assert_eq!(poll(&mut follower, &mut seen), ["late"]);
}

/// `app.log*` through two rename rotations (logrotate with
/// `rotate 2`): the path `app.log.1` names first one rotated file, then the
/// next; the second must continue where `app.log` left it, not from 0.
#[test]
fn a_glob_over_a_rotation_chain_reads_every_line_once() {
    for rotate_wait in [Duration::ZERO, DEFAULT_ROTATE_WAIT] {
        let dir = tempfile::tempdir().unwrap();
        let name = |suffix: &str| dir.path().join(format!("app.log{suffix}"));
        append(&name(""), "1\n2\n3\n");
        let (mut follower, mut seen) = follow_glob(
            &format!("{}/app.log*", dir.path().display()),
            StartAt::Beginning,
            FollowOptions {
                rotate_wait,
                ..FollowOptions::default()
            },
        );
        let mut lines = poll(&mut follower, &mut seen);
        fs::rename(name(""), name(".1")).unwrap();
        append(&name(""), "4\n5\n6\n");
        // Twice: the second poll finds `app.log.1` by the glob.
        lines.extend(poll(&mut follower, &mut seen));
        lines.extend(poll(&mut follower, &mut seen));
        fs::rename(name(".1"), name(".2")).unwrap();
        fs::rename(name(""), name(".1")).unwrap();
        append(&name(""), "7\n8\n9\n");
        lines.extend(poll(&mut follower, &mut seen));
        lines.extend(poll(&mut follower, &mut seen));
        lines.retain(|line| !line.starts_with('!'));
        lines.sort();
        assert_eq!(
            lines,
            ["1", "2", "3", "4", "5", "6", "7", "8", "9"],
            "rotate_wait {rotate_wait:?}"
        );
    }
}

#[test]
fn bad_glob_is_an_error_naming_the_pattern() {
    let mut follower = Follower::new(options());
    let error = follower.add_glob("/var/log/[", StartAt::End).unwrap_err();
    assert!(error.to_string().contains("/var/log/["), "{error}");
}

fn open_fds_to(path_suffix: &str) -> usize {
    fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().contains(path_suffix))
        .count()
}

#[test]
fn a_deleted_files_descriptor_is_closed_once_drained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deleted-once-drained.log");
    let mut follower = Follower::new(FollowOptions {
        rotate_wait: Duration::from_millis(20),
        ..FollowOptions::default()
    });
    follower.add_path(path.clone(), StartAt::Beginning);
    let mut seen = Seen::default();
    write(&path, "a\n");
    assert_eq!(poll(&mut follower, &mut seen), ["a"]);
    append(&path, "b\n");
    fs::remove_file(&path).unwrap();
    assert_eq!(poll(&mut follower, &mut seen), ["b", "!Removed"]);
    let started = std::time::Instant::now();
    while follower.open_files() > 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "never closed");
        assert!(poll(&mut follower, &mut seen).is_empty());
    }
    assert_eq!(open_fds_to("deleted-once-drained.log"), 0);
}

#[test]
fn unreadable_path_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut follower = Follower::new(options());
    // A directory where a file is expected.
    follower.add_path(dir.path().to_path_buf(), StartAt::Beginning);
    let mut seen = Seen::default();
    assert_eq!(
        poll(&mut follower, &mut seen),
        ["!Unreadable(ReadFailure { kind: IsADirectory, raw_os_error: None })"]
    );
    assert!(poll(&mut follower, &mut seen).is_empty());
}

#[test]
fn read_budget_bounds_one_poll() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.log");
    write(&path, &"0123456789\n".repeat(20_000));
    let mut follower = Follower::new(FollowOptions {
        read_budget: 64 * 1024,
        ..options()
    });
    follower.add_path(path, StartAt::Beginning);
    let mut seen = Seen::default();
    assert_eq!(
        follower.poll_once(&mut seen.sink()).unwrap(),
        PollOutcome::Busy
    );
    assert!(seen.take().len() < 20_000);
}

#[test]
fn a_glob_directory_unchanged_since_a_quiet_listing_is_not_read_again_until_a_file_comes() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("a.log"), "a\n");
    let (mut follower, mut seen) = follow_glob(
        &format!("{}/*.log", dir.path().display()),
        StartAt::Beginning,
        options(),
    );
    // Listed right after a change, the directory's times cannot vouch for
    // the listing (a file made in the same clock tick would keep them):
    // it is read again, and a file made at once is found.
    assert_eq!(poll(&mut follower, &mut seen), ["a"]);
    write(&dir.path().join("b.log"), "b\n");
    assert_eq!(poll(&mut follower, &mut seen), ["!Appeared", "b"]);
    std::thread::sleep(dir_stamp::STAMP_MARGIN + Duration::from_millis(100));
    // Old enough: one more listing finds nothing new, the next polls skip it.
    assert!(poll(&mut follower, &mut seen).is_empty());
    let listed = follower.listings;
    for _ in 0..3 {
        assert!(poll(&mut follower, &mut seen).is_empty());
    }
    assert_eq!(follower.listings, listed);
    // A file renamed into it changes its times: listed again, and read.
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    write(&outside.join("c.txt"), "c\n");
    std::thread::sleep(dir_stamp::STAMP_MARGIN + Duration::from_millis(100));
    assert!(poll(&mut follower, &mut seen).is_empty());
    let listed = follower.listings;
    assert!(poll(&mut follower, &mut seen).is_empty());
    assert_eq!(follower.listings, listed);
    fs::rename(outside.join("c.txt"), dir.path().join("c.log")).unwrap();
    assert_eq!(poll(&mut follower, &mut seen), ["!Appeared", "c"]);
    assert!(follower.listings > listed);
}

#[test]
fn glob_base_is_the_fixed_leading_directory() {
    assert_eq!(glob_base("/var/log/*.log"), PathBuf::from("/var/log"));
    assert_eq!(glob_base("/var/log/*/0.log"), PathBuf::from("/var/log"));
    assert_eq!(glob_base("*.log"), PathBuf::from("."));
    assert_eq!(parent_dir(Path::new("log.txt")), PathBuf::from("."));
}

/// The driver's side: hints, the tick, the fallback, the drain.
mod driver {
    use super::*;
    use crate::shutdown::Shutdown;

    type OnLine = dyn FnMut(&str, &Shutdown);
    type OnIdle = dyn FnMut(&[String], &Shutdown);

    struct Recorder {
        lines: Vec<String>,
        fallbacks: Vec<String>,
        /// Checkpoint offsets seen by `after_poll`.
        saved: Vec<u64>,
        /// When each `after_poll` ran (the driver's clock).
        polls: Vec<tokio::time::Instant>,
        idles: usize,
        readies: usize,
        pause: bool,
        /// What [`Sink::needs_ticks`] says.
        needs_ticks: bool,
        shutdown: Shutdown,
        /// Called on each line; may write to files, trigger the shutdown.
        on_line: Box<OnLine>,
        /// Called when the driver is idle, with the lines so far.
        on_idle: Box<OnIdle>,
    }

    impl Recorder {
        fn new(on_line: impl FnMut(&str, &Shutdown) + 'static) -> Self {
            Self {
                lines: Vec::new(),
                fallbacks: Vec::new(),
                saved: Vec::new(),
                polls: Vec::new(),
                idles: 0,
                readies: 0,
                pause: false,
                needs_ticks: true,
                shutdown: Shutdown::new(),
                on_line: Box::new(on_line),
                on_idle: Box::new(|_, _| {}),
            }
        }
    }

    impl Sink for Recorder {
        fn event(&mut self, event: Event<'_>) -> io::Result<Flow> {
            if let Event::Line { line, .. } = event {
                let line = String::from_utf8_lossy(line).into_owned();
                (self.on_line)(&line, &self.shutdown);
                self.lines.push(line);
            }
            Ok(if self.pause {
                Flow::Pause
            } else {
                Flow::Continue
            })
        }
        fn idle(&mut self) -> io::Result<()> {
            self.idles += 1;
            (self.on_idle)(&self.lines, &self.shutdown);
            Ok(())
        }
        async fn ready(&mut self) -> io::Result<()> {
            self.readies += 1;
            Ok(())
        }
        fn needs_ticks(&self) -> bool {
            self.needs_ticks
        }
        fn after_poll(&mut self, follower: &Follower) -> io::Result<()> {
            self.polls.push(tokio::time::Instant::now());
            self.saved.extend(
                follower
                    .checkpoints()
                    .iter()
                    .map(|checkpoint| checkpoint.offset),
            );
            Ok(())
        }
        fn polling_fallback(&mut self, reason: &str) {
            self.fallbacks.push(reason.to_owned());
        }
    }

    fn failing_watcher(
        _handler: Box<dyn FnMut(notify::Result<notify::Event>) + Send>,
    ) -> notify::Result<Box<dyn notify::Watcher>> {
        Err(notify::Error::generic(
            "too many inotify instances (simulated)",
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn polling_fallback_delivers_lines_and_warns_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        write(&path, "first\n");
        let mut follower = Follower::new(options());
        follower.add_path(path.clone(), StartAt::Beginning);
        let writer_path = path.clone();
        // Each time the driver goes idle the writer appends the next line;
        // only the tick can deliver it, as the watcher failed.
        let mut recorder = Recorder::new(|_, _| {});
        recorder.on_idle = Box::new(move |lines, shutdown| match lines.len() {
            1 => append(&writer_path, "second\n"),
            2 => append(&writer_path, "third\n"),
            _ => shutdown.trigger(),
        });
        let shutdown = recorder.shutdown.clone();
        let started = tokio::time::Instant::now();
        run_with_watcher(
            &mut follower,
            &mut recorder,
            &shutdown,
            Duration::from_secs(1),
            failing_watcher,
        )
        .await
        .unwrap();
        assert_eq!(recorder.lines, ["first", "second", "third"]);
        assert_eq!(recorder.fallbacks.len(), 1, "{:?}", recorder.fallbacks);
        assert!(recorder.fallbacks[0].contains("simulated"));
        // Two ticks of the (paused) clock, no more.
        assert_eq!(started.elapsed(), 2 * DEFAULT_POLL_INTERVAL);
    }

    /// A watcher that starts but can watch nothing: inotify watches exhausted.
    struct NoWatchesLeft;

    impl notify::Watcher for NoWatchesLeft {
        fn new<F: notify::EventHandler>(_: F, _: notify::Config) -> notify::Result<Self> {
            Ok(Self)
        }
        fn watch(&mut self, _: &Path, _: notify::RecursiveMode) -> notify::Result<()> {
            Err(notify::Error::new(notify::ErrorKind::MaxFilesWatch))
        }
        fn unwatch(&mut self, _: &Path) -> notify::Result<()> {
            Ok(())
        }
        fn kind() -> notify::WatcherKind {
            notify::WatcherKind::NullWatcher
        }
    }

    fn watches_exhausted(
        _handler: Box<dyn FnMut(notify::Result<notify::Event>) + Send>,
    ) -> notify::Result<Box<dyn notify::Watcher>> {
        Ok(Box::new(NoWatchesLeft))
    }

    #[tokio::test(start_paused = true)]
    async fn exhausted_watches_fall_back_to_polling_with_one_warning() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.log");
        let b = dir.path().join("sub").join("b.log");
        fs::create_dir(dir.path().join("sub")).unwrap();
        let mut follower = Follower::new(options());
        follower.add_path(a.clone(), StartAt::Beginning);
        follower.add_path(b.clone(), StartAt::Beginning);
        let mut recorder = Recorder::new(|_, _| {});
        // Idle after idle, a new line appears that only a tick can find.
        recorder.on_idle = Box::new(move |lines, shutdown| match lines.len() {
            0 => append(&a, "a1\n"),
            1 => append(&b, "b1\n"),
            2 => append(&a, "a2\n"),
            _ => shutdown.trigger(),
        });
        let shutdown = recorder.shutdown.clone();
        run_with_watcher(
            &mut follower,
            &mut recorder,
            &shutdown,
            Duration::from_secs(1),
            watches_exhausted,
        )
        .await
        .unwrap();
        assert_eq!(recorder.lines, ["a1", "b1", "a2"]);
        assert_eq!(recorder.fallbacks.len(), 1, "{:?}", recorder.fallbacks);
        assert!(
            recorder.fallbacks[0].contains("watch limit"),
            "{:?}",
            recorder.fallbacks
        );
    }

    type Handler = Box<dyn FnMut(notify::Result<notify::Event>) + Send>;

    /// The wake-up callback the driver gave [`storing_watcher`], so a test
    /// can fire events at will (a `WatcherFactory` is a plain `fn`).
    static HANDLER: std::sync::Mutex<Option<Handler>> = std::sync::Mutex::new(None);

    fn storing_watcher(handler: Handler) -> notify::Result<Box<dyn notify::Watcher>> {
        *HANDLER.lock().unwrap() = Some(handler);
        Ok(Box::new(notify::NullWatcher))
    }

    fn fire_event() {
        let event = notify::Event::new(notify::EventKind::Modify(notify::event::ModifyKind::Any));
        (HANDLER.lock().unwrap().as_mut().unwrap())(Ok(event));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_events_costs_one_poll_per_coalescing_gap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut follower = Follower::new(FollowOptions {
            poll_interval: Duration::from_secs(3600),
            ..options()
        });
        follower.add_path(path.clone(), StartAt::Beginning);
        let mut recorder = Recorder::new(|_, _| {});
        // A writer appending line by line: each write is an event.
        recorder.on_idle = Box::new(move |lines, shutdown| {
            if lines.len() == 5 {
                shutdown.trigger();
                return;
            }
            append(&path, &format!("{}\n", lines.len()));
            for _ in 0..10 {
                fire_event();
            }
        });
        let shutdown = recorder.shutdown.clone();
        run_with_watcher(
            &mut follower,
            &mut recorder,
            &shutdown,
            Duration::from_secs(1),
            storing_watcher,
        )
        .await
        .unwrap();
        assert_eq!(recorder.lines, ["0", "1", "2", "3", "4"]);
        // Woken by events, not the hourly tick; and never sooner than the
        // gap after the previous poll, however many events came (the gap
        // grows while every poll finds lines, within the maximum).
        let gaps: Vec<Duration> = recorder
            .polls
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .collect();
        let woken = &gaps[..5];
        assert!(
            woken.iter().all(|gap| *gap >= DEFAULT_EVENT_COALESCE
                && *gap <= crate::follow::driver::MAX_EVENT_COALESCE),
            "{gaps:?}"
        );
    }

    #[tokio::test]
    async fn inotify_wakes_the_driver_long_before_the_tick() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut follower = Follower::new(FollowOptions {
            poll_interval: Duration::from_secs(3600),
            ..options()
        });
        follower.add_path(path.clone(), StartAt::Beginning);
        let mut recorder = Recorder::new(|line, shutdown| {
            if line == "created later" {
                shutdown.trigger();
            }
        });
        // Created once the driver has polled, watched and gone idle: only
        // an inotify wake-up can make it look again within the hour.
        let mut created = false;
        recorder.on_idle = Box::new(move |_, _| {
            if !std::mem::replace(&mut created, true) {
                write(&path, "created later\n");
            }
        });
        run_within(
            Duration::from_secs(20),
            &mut follower,
            &mut recorder,
            "inotify should wake the driver before the one-hour tick",
        )
        .await;
        assert_eq!(recorder.lines, ["created later"]);
        assert!(recorder.fallbacks.is_empty());
    }

    /// Runs the driver (a one-second drain) until the recorder's shutdown;
    /// fails with `why` if it has not stopped within `limit`.
    async fn run_within(
        limit: Duration,
        follower: &mut Follower,
        recorder: &mut Recorder,
        why: &str,
    ) {
        let shutdown = recorder.shutdown.clone();
        tokio::time::timeout(
            limit,
            run(follower, recorder, &shutdown, Duration::from_secs(1)),
        )
        .await
        .expect(why)
        .unwrap();
    }

    /// Ten minutes (of the paused clock) following a quiet file, with a line
    /// written after five: the lines, and how many polls the driver made.
    async fn ten_quiet_minutes(needs_ticks: bool) -> (Vec<String>, usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        write(&path, "before\n");
        let mut follower = Follower::new(FollowOptions {
            poll_interval: Duration::from_secs(1),
            ..options()
        });
        follower.add_path(path.clone(), StartAt::Beginning);
        let mut recorder = Recorder::new(|_, _| {});
        recorder.needs_ticks = needs_ticks;
        let start = tokio::time::Instant::now();
        let mut written = false;
        recorder.on_idle = Box::new(move |_, shutdown| {
            let elapsed = start.elapsed();
            if elapsed >= Duration::from_secs(300) && !std::mem::replace(&mut written, true) {
                append(&path, "after five minutes\n");
            }
            if elapsed >= Duration::from_secs(600) {
                shutdown.trigger();
            }
        });
        run_within(
            Duration::from_secs(3600),
            &mut follower,
            &mut recorder,
            "the driver should stop after ten minutes",
        )
        .await;
        (recorder.lines, recorder.polls.len())
    }

    #[tokio::test(start_paused = true)]
    async fn told_of_every_change_an_idle_driver_wakes_only_for_the_full_poll() {
        // Nothing timed in the sink or the follower: a wake-up a minute
        // (the safety net's full poll), not one a second, and the line
        // written in the meantime still comes by its event.
        let (lines, polls) = ten_quiet_minutes(false).await;
        assert_eq!(lines, ["before", "after five minutes"]);
        assert!(polls <= 20, "{polls} polls in ten idle minutes");
        // A sink with timed work of its own gets every tick.
        let (lines, polls) = ten_quiet_minutes(true).await;
        assert_eq!(lines, ["before", "after five minutes"]);
        assert!(polls >= 590, "{polls} polls in ten minutes of 1 s ticks");
    }

    /// Whether this process holds a descriptor of `path`, deleted or not.
    fn held_open(path: &Path) -> bool {
        let deleted = format!("{} (deleted)", path.display());
        fs::read_dir("/proc/self/fd").is_ok_and(|fds| {
            fds.filter_map(Result::ok).any(|fd| {
                fs::read_link(fd.path())
                    .is_ok_and(|target| target == path || target.as_os_str() == deleted.as_str())
            })
        })
    }

    #[tokio::test]
    async fn a_file_created_and_deleted_before_any_poll_is_read_by_its_creation_time_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut follower = Follower::new(FollowOptions {
            poll_interval: Duration::from_secs(3600),
            ..options()
        });
        follower.add_path(path.clone(), StartAt::Beginning);
        let mut recorder = Recorder::new(|line, shutdown| {
            if line == "short-lived" {
                shutdown.trigger();
            }
        });
        // Created and deleted while the driver waits: no poll can see it by
        // its name; only a descriptor opened at its creation event reads it.
        let mut created = false;
        recorder.on_idle = Box::new(move |_, _| {
            if std::mem::replace(&mut created, true) {
                return;
            }
            write(&path, "short-lived\n");
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while !held_open(&path) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            fs::remove_file(&path).unwrap();
        });
        run_within(
            Duration::from_secs(20),
            &mut follower,
            &mut recorder,
            "the deleted file's line should be read long before the hourly tick",
        )
        .await;
        assert_eq!(recorder.lines, ["short-lived"]);
    }

    /// logrotate with copytruncate, `compress` and many rotations kept
    /// renames every `.gz` one name up at each run, then copies and
    /// truncates the live file. The renames make one full poll, after their
    /// burst, not one each; the live file, rotated by truncation before, is
    /// read at every write meanwhile.
    #[tokio::test]
    async fn a_burst_of_renames_makes_one_full_poll_and_the_truncated_file_is_read_meanwhile() {
        const KEPT: u32 = 60;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let gz = {
            let dir = dir.path().to_path_buf();
            move |n: u32| dir.join(format!("app.log.{n}.gz"))
        };
        for n in 2..KEPT + 2 {
            fs::write(gz(n), gzip_bytes(&format!("kept {n}\n"))).unwrap();
        }
        write(&log, "one\n");
        let mut follower = Follower::new(options());
        follower
            .add_glob(&format!("{}*", log.display()), StartAt::Beginning)
            .unwrap();
        let burst = std::sync::Arc::new(std::sync::Mutex::new(None));
        let mut recorder = Recorder::new({
            let (log, burst) = (log.clone(), burst.clone());
            move |line, shutdown| match line {
                "one" => {
                    copy_and_truncate(&log, &log.with_file_name("app.log.1"));
                    append(&log, "2\n");
                }
                // Rotated by truncation: now the renames, a write after each.
                "2" => {
                    let (log, gz, burst) = (log.clone(), gz.clone(), burst.clone());
                    std::thread::spawn(move || {
                        let start = tokio::time::Instant::now();
                        // Gaps long enough to end a burst (a loaded machine).
                        let mut slow = 0;
                        let mut renamed = start;
                        for n in (2..KEPT + 2).rev() {
                            fs::rename(gz(n), gz(n + 1)).unwrap();
                            slow += usize::from(renamed.elapsed() > Duration::from_micros(800));
                            renamed = tokio::time::Instant::now();
                            append(&log, &format!("during {n}\n"));
                            std::thread::sleep(Duration::from_micros(200));
                        }
                        *burst.lock().unwrap() = Some((start, renamed, slow));
                        append(&log, "last\n");
                    });
                }
                "last" => shutdown.trigger(),
                _ => {}
            }
        });
        run_within(
            Duration::from_secs(20),
            &mut follower,
            &mut recorder,
            "every line should be read within seconds",
        )
        .await;
        let expected: Vec<String> = ["one".to_owned(), "2".to_owned()]
            .into_iter()
            .chain((2..KEPT + 2).rev().map(|n| format!("during {n}")))
            .chain(["last".to_owned()])
            .collect();
        assert_eq!(recorder.lines, expected);
        let (start, end, slow) = burst.lock().unwrap().expect("the renames ran");
        let polls = recorder
            .polls
            .iter()
            .filter(|at| (start..=end).contains(*at))
            .count();
        // One poll per `NAME_BURST_MAX` and per gap that ended the burst,
        // and a little room for a loaded machine; one every rename or two
        // without the burst's wait.
        let allowed = 3 + slow + ((end - start).as_millis() / 10) as usize;
        assert!(
            polls <= allowed,
            "{polls} polls during {KEPT} renames in {:?} ({slow} slow gaps)",
            end - start
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_drains_to_the_end_and_hands_over_the_partial_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        write(&path, &"line\n".repeat(50_000));
        append(&path, "no newline yet");
        let mut follower = Follower::new(FollowOptions {
            read_budget: 4096,
            force_poll: true,
            ..options()
        });
        follower.add_path(path, StartAt::Beginning);
        let mut recorder = Recorder::new(|_, _| {});
        let shutdown = recorder.shutdown.clone();
        shutdown.trigger();
        run(
            &mut follower,
            &mut recorder,
            &shutdown,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(recorder.lines.len(), 50_001);
        assert_eq!(recorder.lines.last().unwrap(), "no newline yet");
        // Periodic work saw the positions grow poll by poll, then the end.
        let end = 50_000 * 5 + 14;
        assert!(recorder.saved.len() > 2, "{:?}", recorder.saved);
        assert!(recorder.saved.windows(2).all(|pair| pair[0] <= pair[1]));
        assert_eq!(recorder.saved.last(), Some(&end));
        assert!(recorder.idles >= 1, "output is flushed at the end");
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_sink_is_waited_for_then_reading_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        write(&path, "a\nb\nc\n");
        let mut follower = Follower::new(FollowOptions {
            force_poll: true,
            ..options()
        });
        follower.add_path(path, StartAt::Beginning);
        let mut recorder = Recorder::new(|line, shutdown| {
            if line == "c" {
                shutdown.trigger();
            }
        });
        recorder.pause = true;
        let shutdown = recorder.shutdown.clone();
        run(
            &mut follower,
            &mut recorder,
            &shutdown,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        assert_eq!(recorder.lines, ["a", "b", "c"]);
        assert!(recorder.readies >= 2);
    }
}

#[test]
fn an_unreadable_notice_keeps_the_systems_message() {
    // EMFILE has no io::ErrorKind of its own: the kind alone would print
    // "uncategorized error".
    let emfile = io::Error::from_raw_os_error(24);
    let failure = ReadFailure::of(&emfile);
    assert_eq!(failure.to_string(), emfile.to_string());
    assert!(failure.to_string().contains("Too many open files"));
    assert_eq!(
        ReadFailure::from(io::ErrorKind::IsADirectory).to_string(),
        "is a directory"
    );
}

pub(super) fn gzip_bytes(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn a_file_empty_when_found_that_fills_with_gzip_is_never_read_as_text() {
    // logrotate creates `app.log.2.gz` empty, then writes it: whenever we
    // look, it is never streamed as text.
    let dir = tempfile::tempdir().unwrap();
    let (log, mut follower, mut seen) = glob_app_log(dir.path(), options());
    let gz = dir.path().join("app.log.2.gz");
    write(&gz, "");
    poll(&mut follower, &mut seen);
    let bytes = gzip_bytes("unrelated\n");
    // Its first byte alone, then the rest: text is never handed over.
    fs::write(&gz, &bytes[..1]).unwrap();
    let events = poll(&mut follower, &mut seen);
    assert!(
        events.iter().all(|event| event.starts_with('!')),
        "{events:?}"
    );
    fs::write(&gz, &bytes).unwrap();
    append(&log, "two\n");
    let events = poll(&mut follower, &mut seen);
    assert_eq!(lines(&events), ["two"], "{events:?}");
    assert_eq!(follower.skipped_compressed(), 1);
}

#[test]
fn a_skipped_compressed_file_is_looked_at_once_while_it_stays() {
    // Counted and mentioned once, and not opened, decompressed and judged
    // again at every poll that lists the directory.
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("app.log.2.gz"), gzip_bytes("unrelated\n")).unwrap();
    let (log, mut follower, mut seen) = glob_app_log(dir.path(), options());
    assert_eq!(follower.skipped_compressed(), 1);
    std::thread::sleep(dir_stamp::STAMP_MARGIN + Duration::from_millis(100));
    for line in ["two", "three", "four"] {
        append(&log, &format!("{line}\n"));
        assert_eq!(poll(&mut follower, &mut seen), [line]);
    }
    assert_eq!(follower.skipped_compressed(), 1);
    // Nothing new in the directory: the polls after a quiet listing skip it.
    let listed = follower.listings;
    assert!(poll(&mut follower, &mut seen).is_empty());
    assert_eq!(follower.listings, listed);
    // Nothing waits: an idle driver sleeps until the minute's full poll.
    assert!(follower.settled());
}

#[test]
fn skipped_compressed_files_renamed_by_a_rotation_stay_skipped_unopened() {
    // logrotate's every run shifts each `.gz` one name up, right before it
    // copies and truncates the live file: none is opened again then.
    let dir = tempfile::tempdir().unwrap();
    let gz = |n: u32| dir.path().join(format!("app.log.{n}.gz"));
    for n in 2..6 {
        fs::write(gz(n), gzip_bytes(&format!("old {n}\n"))).unwrap();
    }
    let (log, mut follower, mut seen) = glob_app_log(dir.path(), options());
    assert_eq!(follower.skipped_compressed(), 4);
    for n in (2..6).rev() {
        fs::rename(gz(n), gz(n + 1)).unwrap();
    }
    append(&log, "two\n");
    assert_eq!(poll(&mut follower, &mut seen), ["two"]);
    assert_eq!(follower.skipped_compressed(), 4);
    // A new one is judged; the oldest, deleted, is forgotten.
    fs::write(gz(2), gzip_bytes("new\n")).unwrap();
    fs::remove_file(gz(6)).unwrap();
    append(&log, "three\n");
    assert_eq!(poll(&mut follower, &mut seen), ["three"]);
    assert_eq!(follower.skipped_compressed(), 5);
    assert_eq!(follower.skipped_files.len(), 4);
}

#[test]
fn a_file_empty_when_found_that_fills_with_gzip_and_is_renamed_is_never_read_as_text() {
    // gzip creates `app.log.1.gz` empty and fills it; logrotate renames it
    // to `app.log.2.gz` at the next rotation, maybe before we look again:
    // the file rotated away from its name is never streamed as text.
    for rotate_wait in [Duration::ZERO, Duration::from_secs(3600)] {
        let dir = tempfile::tempdir().unwrap();
        let options = FollowOptions {
            rotate_wait,
            ..FollowOptions::default()
        };
        let (log, mut follower, mut seen) = glob_app_log(dir.path(), options);
        let gz = dir.path().join("app.log.1.gz");
        write(&gz, "");
        poll(&mut follower, &mut seen);
        fs::write(&gz, gzip_bytes("unrelated\n")).unwrap();
        fs::rename(&gz, dir.path().join("app.log.2.gz")).unwrap();
        append(&log, "two\n");
        let events = poll(&mut follower, &mut seen);
        assert_eq!(
            lines(&events),
            ["two"],
            "rotate wait {rotate_wait:?}: {events:?}"
        );
    }
}

#[test]
fn a_compressed_rotation_holding_unread_lines_is_read_decompressed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    write(&log, "one\ntwo\n");
    let mut follower = Follower::new(options());
    follower.add_path(log.clone(), StartAt::Beginning);
    let mut seen = Seen::default();
    assert_eq!(poll(&mut follower, &mut seen), ["one", "two"]);
    let checkpoints = follower.checkpoints();
    // Down: more lines, then rotated and compressed (create + compress).
    append(&log, "three\n");
    fs::write(
        dir.path().join("app.log.1.gz"),
        gzip_bytes("one\ntwo\nthree\n"),
    )
    .unwrap();
    fs::remove_file(&log).unwrap();
    write(&log, "four\n");
    let mut follower = Follower::new(options());
    follower
        .add_glob(&format!("{}*", log.display()), StartAt::End)
        .unwrap();
    follower.resume(&checkpoints);
    let events = poll(&mut follower, &mut seen);
    let lines = lines(&events);
    assert_eq!(lines, ["three", "four"], "{events:?}");
}

#[test]
fn a_plain_name_rotated_while_down_is_finished_from_its_rotated_file() {
    for compress in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        write(&log, "one\n");
        let (mut follower, mut seen) = (Follower::new(options()), Seen::default());
        follower.add_path(log.clone(), StartAt::Beginning);
        assert_eq!(poll(&mut follower, &mut seen), ["one"]);
        let checkpoints = follower.checkpoints();
        // Down: a line more, then logrotate's rename (and compression).
        append(&log, "two\n");
        let rotated = dir.path().join("app.log.1");
        fs::rename(&log, &rotated).unwrap();
        if compress {
            let gz = gzip_bytes(&fs::read_to_string(&rotated).unwrap());
            fs::write(dir.path().join("app.log.1.gz"), gz).unwrap();
            fs::remove_file(&rotated).unwrap();
        }
        write(&log, "three\n");
        let mut follower = Follower::new(options());
        follower.add_path(log.clone(), StartAt::End);
        follower.resume(&checkpoints);
        let events = poll(&mut follower, &mut seen);
        let lines = lines(&events);
        assert_eq!(lines, ["two", "three"], "compress {compress}: {events:?}");
    }
}

#[test]
fn a_new_file_that_only_begins_like_another_is_read_whole() {
    // Lines that start with a timestamp: a file seen while its first line
    // is half written looks like a copy of another file's start.
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.log");
    let b = dir.path().join("b.log");
    write(&a, "2026-11-28T10:00:00Z first file\n");
    let (mut follower, mut seen) = follow_glob(
        &format!("{}/*.log", dir.path().display()),
        StartAt::Beginning,
        options(),
    );
    assert_eq!(
        poll(&mut follower, &mut seen),
        ["2026-11-28T10:00:00Z first file"]
    );
    append(&b, "2026-11-28T10:00:0");
    poll(&mut follower, &mut seen);
    append(&b, "1Z second file\n");
    fs::remove_file(&a).unwrap();
    let events = poll(&mut follower, &mut seen);
    let lines = lines(&events);
    assert_eq!(lines, ["2026-11-28T10:00:01Z second file"], "{events:?}");
}

#[test]
fn a_file_created_and_deleted_between_polls_is_read_when_opened_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut follower, mut seen) = glob_app_log(dir.path(), options());
    // Delete + recreate twice, faster than a poll: the middle file lives
    // only between two looks. The driver opened it at its creation event.
    fs::remove_file(&log).unwrap();
    write(&log, "two\n");
    follower.adopt_created(log.clone(), fs::File::open(&log).unwrap());
    fs::remove_file(&log).unwrap();
    write(&log, "three\n");
    let events = poll(&mut follower, &mut seen);
    let lines = lines(&events);
    assert_eq!(lines, ["two", "three"], "{events:?}");
}

#[test]
fn poll_changed_reads_only_the_files_named_until_a_rotation_needs_a_full_poll() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.log");
    let b = dir.path().join("b.log");
    write(&a, "a0\n");
    write(&b, "b0\n");
    let (mut follower, mut seen) = follow_glob(
        &format!("{}/*.log", dir.path().display()),
        StartAt::Beginning,
        FollowOptions {
            rotate_wait: Duration::from_secs(3600),
            ..options()
        },
    );
    assert_eq!(poll(&mut follower, &mut seen).len(), 2);
    append(&a, "a1\n");
    append(&b, "b1\n");
    let only_a = std::collections::HashSet::from([a.clone()]);
    follower.poll_changed(&only_a, &mut seen.sink()).unwrap();
    assert_eq!(seen.take(), ["a1"], "b was not named: left alone");
    follower
        .poll_changed(&std::collections::HashSet::new(), &mut seen.sink())
        .unwrap();
    assert_eq!(seen.take(), Vec::<String>::new());
    // Rotated: a file being drained is not a plain state; every poll is a
    // full one until it is let go, named or not.
    fs::rename(&b, dir.path().join("b.old")).unwrap();
    write(&b, "b new\n");
    follower.poll_once(&mut seen.sink()).unwrap();
    seen.take();
    append(&dir.path().join("b.old"), "b2\n");
    follower
        .poll_changed(&std::collections::HashSet::new(), &mut seen.sink())
        .unwrap();
    assert_eq!(seen.take(), ["b2"]);
}

/// logrotate's copy (`app.log.1`) or a renamed file holds lines older than
/// `app.log`'s and stays until the next rotation, a day in production. Read
/// to its end it is in a plain state: an idle driver sleeps until the
/// minute's full poll instead of looking at every file at each tick, and a
/// late write to it is read when an event names it.
#[test]
fn a_rotated_file_read_to_its_end_leaves_the_follower_settled() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut follower, mut seen) = glob_app_log(dir.path(), options());
    append(&log, "two\n");
    copy_and_truncate(&log, &dir.path().join("app.log.1"));
    append(&log, "three\n");
    assert_eq!(
        lines_of_polls(&mut follower, &mut seen, 3),
        ["two", "three"]
    );
    assert!(follower.settled());

    let renamed = dir.path().join("app.log.2");
    fs::rename(&log, &renamed).unwrap();
    write(&log, "four\n");
    assert_eq!(lines_of_polls(&mut follower, &mut seen, 3), ["four"]);
    assert!(follower.settled());
    append(&renamed, "late\n");
    assert_eq!(poll_named(&mut follower, &mut seen, &renamed), ["late"]);
}

/// A copy never followed by a truncation (logrotate's `copy`, a backup
/// made by hand) holds only lines read in its original: it is not read,
/// and once logrotate's window has passed it leaves the follower settled,
/// so no tick comes every second for as long as the copy stays. The
/// original's truncation, however late, is still handled as a rotation.
#[test]
fn a_copy_of_lines_already_read_leaves_the_follower_settled() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut follower, mut seen) = glob_app_log(dir.path(), options());
    append(&log, "two\n");
    assert_eq!(poll(&mut follower, &mut seen), ["two"]);
    fs::copy(&log, dir.path().join("app.log.bak")).unwrap();
    assert!(poll(&mut follower, &mut seen).is_empty());
    assert!(!follower.settled(), "a truncation may follow the copy");
    std::thread::sleep(COPY_TRUNCATE_WINDOW);
    assert!(poll(&mut follower, &mut seen).is_empty());
    assert!(follower.settled());

    append(&log, "three\n");
    assert_eq!(poll_named(&mut follower, &mut seen, &log), ["three"]);
    assert!(follower.settled());

    truncate_in_place(&log);
    append(&log, "four\n");
    assert_eq!(
        lines_named_then_full(&mut follower, &mut seen, &log),
        ["four"]
    );
}

/// An application's log nothing was written to yet (an error log that
/// stays empty, a thousand files created at start) is no copy in the
/// making once logrotate's window has passed: the follower is settled (no
/// tick every second, polls look only at the files events name) and the
/// first write to it is read when an event names it. An empty file filled
/// later with a copy of a followed file is still recognised as that copy.
#[test]
fn an_empty_file_leaves_the_follower_settled_until_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut follower, mut seen) = glob_app_log(dir.path(), options());
    let errors = dir.path().join("app.log.errors");
    let copy = dir.path().join("app.log.1");
    write(&errors, "");
    write(&copy, "");
    assert!(lines(&poll(&mut follower, &mut seen)).is_empty());
    std::thread::sleep(COPY_TRUNCATE_WINDOW);
    assert!(lines(&poll(&mut follower, &mut seen)).is_empty());
    assert!(follower.settled());

    append(&log, "two\n");
    assert_eq!(poll_named(&mut follower, &mut seen, &log), ["two"]);
    assert!(follower.settled());
    append(&errors, "first error\n");
    let events = poll_named(&mut follower, &mut seen, &errors);
    assert_eq!(lines(&events), ["first error"]);

    fs::copy(&log, &copy).unwrap();
    truncate_in_place(&log);
    append(&log, "three\n");
    assert_eq!(
        lines_named_then_full(&mut follower, &mut seen, &copy),
        ["three"]
    );
}

/// Many files, few descriptors: files read to their end are closed and the
/// others read in turn; a closed file that grows continues where it was
/// left, one truncated or replaced meanwhile is read from its start.
#[test]
fn more_files_than_max_open_files_are_read_in_turn_every_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut follower = Follower::new(FollowOptions {
        max_open_files: 4,
        ..options()
    });
    follower
        .add_glob(
            &format!("{}/*.log", dir.path().display()),
            StartAt::Beginning,
        )
        .unwrap();
    let mut expected = Vec::new();
    for file in 0..20 {
        let mut text = String::new();
        for line in 0..3 {
            text.push_str(&format!("f{file}-l{line}\n"));
            expected.push(format!("f{file}-l{line}"));
        }
        write(&dir.path().join(format!("{file:02}.log")), &text);
    }
    let mut seen = Seen::default();
    let mut got = poll(&mut follower, &mut seen);
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    assert!(follower.open_files() <= 4, "{} open", follower.open_files());
    assert_eq!(follower.waiting(), 0);
    assert!(follower.closed_idle() >= 16);
    // Positions of closed files are checkpointed too.
    assert_eq!(follower.checkpoints().len(), 20);

    // Every file grows: each continues at its offset, nothing read twice.
    for file in 0..20 {
        append(
            &dir.path().join(format!("{file:02}.log")),
            &format!("f{file}-more\n"),
        );
    }
    let mut got = poll(&mut follower, &mut seen);
    got.sort();
    let mut expected: Vec<String> = (0..20).map(|file| format!("f{file}-more")).collect();
    expected.sort();
    assert_eq!(got, expected);

    // Truncated and replaced while closed: read from the start.
    let closed: Vec<PathBuf> = (0..20)
        .map(|file| dir.path().join(format!("{file:02}.log")))
        .collect();
    write(&closed[0], "truncated-and-rewritten\n");
    fs::remove_file(&closed[1]).unwrap();
    write(&closed[1], "replaced\n");
    let got = poll(&mut follower, &mut seen);
    let lines = lines(&got);
    assert_eq!(lines.len(), 2, "{got:?}");
    assert!(
        got.contains(&"truncated-and-rewritten".to_owned()),
        "{got:?}"
    );
    assert!(got.contains(&"replaced".to_owned()), "{got:?}");
    assert!(follower.open_files() <= 4);
}

/// A glob match deleted is forgotten once drained, and said so, so a sink
/// can drop what it keeps per path.
#[test]
fn deleted_glob_matches_are_reported_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let mut follower = Follower::new(options());
    follower
        .add_glob(
            &format!("{}/*.log", dir.path().display()),
            StartAt::Beginning,
        )
        .unwrap();
    let path = dir.path().join("a.log");
    write(&path, "one\n");
    let mut seen = Seen::default();
    assert_eq!(poll(&mut follower, &mut seen), ["one"]);
    fs::remove_file(&path).unwrap();
    let mut forgotten = Vec::new();
    for _ in 0..10 {
        follower.poll_once(&mut seen.sink()).unwrap();
        forgotten.extend(follower.forgotten().iter().cloned());
        if !forgotten.is_empty() {
            break;
        }
    }
    assert_eq!(forgotten, [path]);
    assert!(follower.paths().is_empty());
}

/// Linux file names are bytes: a name that is not UTF-8 is matched by a
/// glob (as text, invalid bytes replaced) and read under its real name.
#[test]
fn a_glob_matches_and_reads_a_file_whose_name_is_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.log");
    let path = dir.path().join(name);
    write(&path, "from a latin-1 name\n");
    write(&dir.path().join("plain.log"), "from a plain name\n");
    let (mut follower, mut seen) = follow_glob(
        &format!("{}/*.log", dir.path().display()),
        StartAt::Beginning,
        options(),
    );
    let mut got = poll(&mut follower, &mut seen);
    got.sort();
    assert_eq!(got, ["from a latin-1 name", "from a plain name"]);
    assert!(follower.paths().contains(&path.as_path()));
}

#[test]
fn a_copy_found_a_poll_after_the_truncation_continues_the_old_stream() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    write(&log, "one\ntwo\n");
    let (mut follower, mut seen) = follow_glob(
        &format!("{}*", log.display()),
        StartAt::Beginning,
        options(),
    );
    assert_eq!(poll(&mut follower, &mut seen), ["one", "two"]);
    // Truncated and written again; the copy shows up only at the next look.
    fs::write(&log, "four\n").unwrap();
    assert_eq!(poll(&mut follower, &mut seen), ["!Truncated", "four"]);
    write(&dir.path().join("app.log.1"), "one\ntwo\nthree\n");
    let events = poll(&mut follower, &mut seen);
    let lines = lines(&events);
    assert_eq!(lines, ["three"], "{events:?}");
}

#[test]
fn a_long_constant_header_rewritten_while_down_is_read_again_from_its_start() {
    // A CSV or banner header longer than the 1 KiB fingerprint: the first
    // bytes match, the bytes before the saved offset do not.
    let header = format!("{}\n", "h".repeat(1100));
    let (_dir, path, mut follower, mut seen) = setup(StartAt::Beginning);
    write(&path, &format!("{header}a1\na2\na3\n"));
    assert_eq!(poll(&mut follower, &mut seen).len(), 4);
    let checkpoints = follower.checkpoints();
    // Down: deleted and written again with the same header, past the offset.
    fs::remove_file(&path).unwrap();
    write(&path, &format!("{header}b1\nb2\nb3\nb4\nb5\n"));
    let mut follower = Follower::new(options());
    follower.add_path(path.clone(), StartAt::End);
    follower.resume(&checkpoints);
    let events = poll(&mut follower, &mut seen);
    let lines = lines(&events);
    assert_eq!(lines.len(), 6, "{events:?}");
    assert_eq!(lines[1..], ["b1", "b2", "b3", "b4", "b5"], "{events:?}");
}

/// logrotate's `compress` renames the compressed copy of a file we still
/// read (`app.log.1.gz` to `app.log.2.gz` at the next rotation) while the
/// original, rotated away, is still being written: the copy is taken for
/// a shadow at our position when found, we read the late lines from the
/// original, and the copy's name goes. Its bytes were the original's: the
/// lines read since it was found must not come again from it.
#[test]
fn a_copy_whose_name_goes_while_its_original_is_read_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let copy = dir.path().join("app.log.1");
    let elsewhere = tempfile::tempdir().unwrap();
    write(&path, "1\n2\n");
    let (mut follower, mut seen) = follow_glob(
        &format!("{}/app.log*", dir.path().display()),
        StartAt::Beginning,
        FollowOptions {
            rotate_wait: Duration::from_secs(3600),
            ..FollowOptions::default()
        },
    );
    assert_eq!(poll(&mut follower, &mut seen), ["1", "2"]);
    append(&path, "3\n");
    fs::copy(&path, &copy).unwrap();
    // The copy is found (a shadow at our position), then the original's
    // new line is read from the original.
    assert_eq!(poll(&mut follower, &mut seen), ["3"]);
    fs::rename(&copy, elsewhere.path().join("app.log.1")).unwrap();
    append(&path, "4\n");
    let mut lines = poll(&mut follower, &mut seen);
    lines.extend(poll(&mut follower, &mut seen));
    lines.retain(|line| !line.starts_with('!'));
    assert_eq!(lines, ["4"]);
}

/// Replicas writing the same lines into files of their own (`worker-1.log`,
/// `worker-2.log`) hold the same bytes; neither is the other's copy, so
/// each is read whole.
#[test]
fn files_that_only_hold_the_same_bytes_are_each_read() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (0..40)
        .map(|n| format!("starting worker step {n}\n"))
        .collect();
    write(&dir.path().join("worker-1.log"), &lines);
    let (mut follower, mut seen) = follow_glob(
        &format!("{}/*.log", dir.path().display()),
        StartAt::Beginning,
        options(),
    );
    assert_eq!(poll(&mut follower, &mut seen).len(), 40);
    write(&dir.path().join("worker-2.log"), &lines);
    write(&dir.path().join("worker-3.log"), &lines);
    let mut read = poll(&mut follower, &mut seen);
    read.retain(|line| !line.starts_with('!'));
    assert_eq!(read.len(), 80, "{read:?}");
}

#[test]
fn copies_are_named_as_rotation_tools_name_them() {
    let like = |copy: &str, original: &str| named_like_copy(Path::new(copy), Path::new(original));
    for copy in [
        "/l/app.log.1",
        "/l/app.log.1.gz",
        "/l/app.log-20240601",
        "/l/app-20240601.log",
        "/l/app.2024-06-01.log.gz",
        "/old/app.log.3",
    ] {
        assert!(like(copy, "/l/app.log"), "{copy}");
    }
    assert!(like("/l/messages.1", "/l/messages"));
    assert!(like("/l/app.log.2.gz", "/l/app.log.1"));
    assert!(like("/l/app.log.2.gz", "/l/app.log.1.gz"));
    assert!(like("/l/.app.log.1", "/l/.app.log"));
    for other in ["/l/worker-2.log", "/l/other.log", "/l/ap.log"] {
        assert!(!like(other, "/l/worker-1.log"), "{other}");
    }
    assert!(like("app.log.1", "app.log"), "relative names");
    for no_name in ["/l/", "/l/.", "/l/.."] {
        assert!(!like("/l/app.log.1", no_name), "{no_name}");
        assert!(!like(no_name, "/l/app.log"), "{no_name}");
    }
}

/// An empty new file is watched as logrotate's copy in the making (the
/// original is read continuously until it is truncated) only when some
/// followed file could be its original: an application's empty logs found
/// at start, or new files with unrelated names, set off no such polling.
#[test]
fn only_an_empty_file_named_like_a_copy_of_a_file_with_lines_expects_a_truncation() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a.log", "b.log", "c.log"] {
        write(&dir.path().join(name), "");
    }
    let (mut follower, mut seen) = follow_glob(
        &format!("{}/*.log*", dir.path().display()),
        StartAt::Beginning,
        options(),
    );
    assert!(poll(&mut follower, &mut seen).is_empty());
    assert!(!follower.truncation_expected(), "empty logs found at start");

    write(&dir.path().join("d.log"), "");
    poll(&mut follower, &mut seen);
    assert!(
        !follower.truncation_expected(),
        "a new empty file of its own"
    );

    append(&dir.path().join("a.log"), "a1\n");
    assert_eq!(poll(&mut follower, &mut seen), ["a1"]);
    write(&dir.path().join("b.log.1"), "");
    poll(&mut follower, &mut seen);
    assert!(!follower.truncation_expected(), "b.log has nothing to copy");
    write(&dir.path().join("a.log.1"), "");
    poll(&mut follower, &mut seen);
    assert!(
        follower.truncation_expected(),
        "a copy of a.log may be made"
    );
}

/// A copytruncate of `path`: its bytes copied to `copy`, then it is
/// truncated in place.
fn copy_and_truncate(path: &Path, copy: &Path) {
    fs::copy(path, copy).unwrap();
    truncate_in_place(path);
}

/// logrotate's `compress` of a rotated copy (`delaycompress` at the next
/// run) makes a compressed copy of a file that is not read as the newest
/// of its name any more: no truncation is coming, and the file still
/// written (truncated in place before, so read at every change) is not
/// left unread behind it.
#[test]
fn a_compressed_rotated_copy_announces_no_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut follower, mut seen) = glob_app_log(dir.path(), options());
    let copy = dir.path().join("app.log.1");
    copy_and_truncate(&log, &copy);
    append(&log, "l3\n");
    assert_eq!(poll(&mut follower, &mut seen), ["!Truncated", "l3"]);
    assert!(
        follower.read_every_change(),
        "app.log is truncated in place"
    );

    // gzip writes the compressed file next to the copy, then deletes it.
    let compressed = dir.path().join("app.log.1.gz");
    fs::write(&compressed, gzip_bytes("one\n")).unwrap();
    assert!(poll(&mut follower, &mut seen).is_empty(), "read already");
    fs::remove_file(&copy).unwrap();
    assert_eq!(poll(&mut follower, &mut seen), ["!Removed"]);
    assert!(
        !follower.truncation_expected(),
        "the copy of a deleted file announces no truncation"
    );
    append(&log, "l4\n");
    follower.read_truncated_before(&mut seen.sink()).unwrap();
    assert_eq!(seen.take(), ["l4"]);
}

/// While one file's copy is being made, another file known to be rotated
/// by truncation is still read at every change: its own copy may come
/// next, and its lines written before that truncation are read only now.
#[test]
fn while_a_copy_is_made_files_truncated_in_place_before_are_read_too() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.log");
    let b = dir.path().join("b.log");
    write(&a, "a1\n");
    write(&b, "b1\n");
    let (mut follower, mut seen) = follow_glob(
        &format!("{}/*.log*", dir.path().display()),
        StartAt::Beginning,
        options(),
    );
    assert_eq!(poll(&mut follower, &mut seen).len(), 2);
    copy_and_truncate(&b, &dir.path().join("b.log.1"));
    append(&b, "b2\n");
    assert_eq!(poll(&mut follower, &mut seen), ["!Truncated", "b2"]);

    fs::copy(&a, dir.path().join("a.log.1")).unwrap();
    assert!(
        poll(&mut follower, &mut seen).is_empty(),
        "a copy, read once"
    );
    assert!(follower.truncation_expected(), "a.log is being rotated");
    append(&a, "a2\n");
    append(&b, "b3\n");
    follower.read_originals(&mut seen.sink()).unwrap();
    let mut read = seen.take();
    read.sort();
    assert_eq!(read, ["a2", "b3"]);
}

#[test]
fn globs_are_told_from_paths() {
    assert!(has_glob_syntax("/var/log/*.log"));
    assert!(has_glob_syntax("/var/log/app-?.log"));
    assert!(has_glob_syntax("/var/log/[ab].log"));
    assert!(!has_glob_syntax("/var/log/app.log"));
}
