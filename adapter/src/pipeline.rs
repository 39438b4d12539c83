//! The synchronous heart of the adapter: raw lines in, output lines out.
//!
//! For each line (already cut at `--max-line-bytes` where it was read: the
//! follower or stdin's splitter; counted here): strip a trailing `\r`, join
//! it into a record when `--multiline-start` is set, decode it (invalid
//! UTF-8 becomes U+FFFD, on purpose and only there), parse it, apply
//! `--rename`, `--drop` and `--add`, and append the output line to a buffer
//! the driver writes to stdout. A line that does not parse is never lost:
//! it is emitted as `{"message": <raw>, "parse_error": <why>}` (plus the
//! `--add` fields) in the output format, appended raw to `--unparsed`, or
//! dropped with `--on-error drop`, and every choice is counted.
//!
//! Nothing here blocks, sleeps or reads a clock: the caller passes `now`,
//! so tests drive it line by line.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use sidecar_common::metrics::{Counter, Registry};
use sidecar_common::multiline::Multiline;

use sidecar_common::pipeline::convert::{Converted, Converter, Origin, decode};
use sidecar_common::pipeline::encode::Output;
pub use sidecar_common::pipeline::enrich::Edits;
use sidecar_common::pipeline::formats::{ParseError, Parser};

/// What happens to a line that does not parse (`--on-error`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnError {
    /// Emit `{"message": <raw line>, "parse_error": <why>}` in the output format.
    Emit,
    /// Drop it (counted, and the count printed at exit).
    Drop,
}

/// The counters the adapter exposes on `--listen` and prints at exit.
#[derive(Clone, Debug)]
pub struct Counters {
    pub lines: Counter,
    pub parsed: Counter,
    pub emitted: Counter,
    pub set_aside: Counter,
    pub dropped: Counter,
    pub truncated: Counter,
}

impl Counters {
    pub fn new(registry: &Registry) -> Self {
        let errors = |action| {
            registry.counter(
                "adapter_parse_errors_total",
                "Lines (records) that did not parse, by what was done with them.",
                &[("action", action)],
            )
        };
        Self {
            lines: registry.counter("adapter_lines_total", "Lines read.", &[]),
            parsed: registry.counter(
                "adapter_records_parsed_total",
                "Records parsed and written.",
                &[],
            ),
            emitted: errors("emitted"),
            set_aside: errors("set_aside"),
            dropped: errors("dropped"),
            truncated: registry.counter(
                "adapter_truncated_total",
                "Lines or multiline records cut at --max-line-bytes.",
                &[],
            ),
        }
    }

    /// The one-line summary printed on stderr at exit.
    pub fn summary(&self) -> String {
        format!(
            "{} lines read, {} records parsed, {} unparsed emitted, {} unparsed set aside, {} unparsed dropped, {} truncated",
            self.lines.get(),
            self.parsed.get(),
            self.emitted.get(),
            self.set_aside.get(),
            self.dropped.get(),
            self.truncated.get()
        )
    }
}

/// Unparsed lines are written to the `--unparsed` file once this much is
/// buffered (and whenever the input goes idle, and at the end).
pub const UNPARSED_FLUSH_BYTES: usize = 64 * 1024;

/// Lines to output; see the module documentation.
pub struct Pipeline {
    converter: Converter,
    on_error: OnError,
    unparsed: Option<Box<dyn Write + Send>>,
    /// Unparsed lines not yet written to `unparsed`, each with its `\n`:
    /// they are counted as set aside only once the file took them.
    unparsed_buffer: Vec<u8>,
    multiline: Option<(Multiline, Duration)>,
    counters: Counters,
    out: Vec<u8>,
}

/// How the pipeline is set up; built by the binary from its flags.
pub struct Settings {
    pub parser: Parser,
    pub output: Output,
    pub edits: Edits,
    pub on_error: OnError,
    /// Where unparsed lines are appended raw (`--unparsed`), overriding `on_error`.
    pub unparsed: Option<Box<dyn Write + Send>>,
    pub multiline: Option<(Multiline, Duration)>,
}

impl Pipeline {
    pub fn new(settings: Settings, counters: Counters) -> Self {
        Self {
            converter: Converter::new(settings.parser, settings.output, settings.edits),
            on_error: settings.on_error,
            unparsed: settings.unparsed,
            unparsed_buffer: Vec::new(),
            multiline: settings.multiline,
            counters,
            out: Vec::with_capacity(128 * 1024),
        }
    }

    /// One input line, without its `\n`; `truncated` when the reader
    /// already cut it (it is counted here).
    pub fn push_line(&mut self, line: &[u8], truncated: bool, now: Instant) -> io::Result<()> {
        self.counters.lines.inc();
        let mut line = line;
        if truncated {
            self.counters.truncated.inc();
        }
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        match &mut self.multiline {
            Some((joiner, _)) => {
                let completed = joiner.push(line, now);
                self.counters.truncated.add(joiner.take_truncated());
                match completed {
                    Some(record) => self.record(&record),
                    None => Ok(()),
                }
            }
            None => self.record(line),
        }
    }

    /// Flushes a multiline record that waited `--multiline-timeout`.
    pub fn tick(&mut self, now: Instant) -> io::Result<()> {
        let due = match &mut self.multiline {
            Some((joiner, timeout)) => joiner.flush_due(now, *timeout),
            None => None,
        };
        match due {
            Some(record) => self.record(&record),
            None => Ok(()),
        }
    }

    /// When [`Pipeline::tick`] next has work, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.multiline
            .as_ref()
            .and_then(|(joiner, timeout)| joiner.deadline(*timeout))
    }

    /// End of input: the pending multiline record, and the unparsed file flushed.
    pub fn finish(&mut self) -> io::Result<()> {
        let pending = match &mut self.multiline {
            Some((joiner, _)) => joiner.finish(),
            None => None,
        };
        if let Some(record) = pending {
            self.record(&record)?;
        }
        self.flush_unparsed()
    }

    /// Output waiting to be written; the caller drains it.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Writes the unparsed lines buffered so far to the `--unparsed` file
    /// and counts those it took: on an error (a full disk) the count is what
    /// the file really holds, whole lines only, and the error is returned.
    pub fn flush_unparsed(&mut self) -> io::Result<()> {
        let Some(file) = &mut self.unparsed else {
            return Ok(());
        };
        let mut written = 0;
        let mut result = Ok(());
        while written < self.unparsed_buffer.len() {
            match file.write(&self.unparsed_buffer[written..]) {
                Ok(0) => {
                    result = Err(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(count) => written += count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    result = Err(error);
                    break;
                }
            }
        }
        let lines = memchr::memchr_iter(b'\n', &self.unparsed_buffer[..written]).count();
        self.counters.set_aside.add(lines as u64);
        self.unparsed_buffer.drain(..written);
        result?;
        file.flush()
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Keeps year-less timestamps on the current year as time goes by.
    pub fn refresh_year(&mut self) {
        self.converter.parser_mut().options_mut().now =
            sidecar_common::pipeline::formats::current_year_month();
    }

    fn record(&mut self, raw: &[u8]) -> io::Result<()> {
        let text = decode(raw);
        match self
            .converter
            .convert(&text, Origin::default(), &mut self.out)
        {
            Converted::Parsed => {
                self.counters.parsed.inc();
                Ok(())
            }
            Converted::Unparsed(why) => self.unparsed(raw, &text, why),
        }
    }

    fn unparsed(&mut self, raw: &[u8], text: &str, why: ParseError) -> io::Result<()> {
        if self.unparsed.is_some() {
            self.unparsed_buffer.extend_from_slice(raw);
            self.unparsed_buffer.push(b'\n');
            if self.unparsed_buffer.len() >= UNPARSED_FLUSH_BYTES {
                self.flush_unparsed()?;
            }
            return Ok(());
        }
        match self.on_error {
            OnError::Drop => self.counters.dropped.inc(),
            OnError::Emit => {
                self.converter
                    .emit_unparsed(text, why, Origin::default(), &mut self.out);
                self.counters.emitted.inc();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sidecar_common::pipeline::formats::{FormatName, Options};
    use std::sync::{Arc, Mutex};

    /// A `Write` the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn pipeline(from: FormatName, change: impl FnOnce(&mut Settings)) -> Pipeline {
        let options = Options {
            year: Some(2026),
            now: (2026, 11),
            keep_time: false,
        };
        let mut settings = Settings {
            parser: Parser::new(from, None, options).unwrap(),
            output: Output::Json,
            edits: Edits::default(),
            on_error: OnError::Emit,
            unparsed: None,
            multiline: None,
        };
        change(&mut settings);
        Pipeline::new(settings, Counters::new(&Registry::new()))
    }

    fn run(pipeline: &mut Pipeline, lines: &[&[u8]]) -> String {
        let now = Instant::now();
        for line in lines {
            pipeline.push_line(line, false, now).unwrap();
        }
        pipeline.finish().unwrap();
        String::from_utf8(std::mem::take(pipeline.output())).unwrap()
    }

    #[test]
    fn bad_lines_are_emitted_with_their_raw_text_and_the_reason() {
        let mut adapter = pipeline(FormatName::Writer, |_| {});
        let out = run(
            &mut adapter,
            &[
                b"Wed Nov 25 14:01:13 UTC 2026 - Hello from writer",
                b"garbage \xff line\r",
            ],
        );
        assert_eq!(
            out,
            "{\"timestamp\":\"2026-11-25T14:01:13Z\",\"message\":\"Hello from writer\"}\n\
             {\"message\":\"garbage \u{fffd} line\",\"parse_error\":\"date is not like 'Wed Nov 25 14:01:13 UTC 2026'\"}\n"
        );
        let counters = adapter.counters();
        assert_eq!(
            (
                counters.lines.get(),
                counters.parsed.get(),
                counters.emitted.get()
            ),
            (2, 1, 1)
        );
    }

    #[test]
    fn bad_lines_go_raw_to_the_unparsed_file_or_are_dropped_and_counted() {
        let file = Shared::default();
        let sink = file.clone();
        let mut adapter = pipeline(FormatName::Json, |settings| {
            settings.unparsed = Some(Box::new(sink));
        });
        let out = run(&mut adapter, &[b"{\"a\":1}", b"not \xffjson", b"[1]"]);
        assert_eq!(out, "{\"a\":1}\n");
        assert_eq!(file.0.lock().unwrap().as_slice(), b"not \xffjson\n[1]\n");
        assert_eq!(adapter.counters().set_aside.get(), 2);

        let mut adapter = pipeline(FormatName::Json, |settings| {
            settings.on_error = OnError::Drop
        });
        assert_eq!(run(&mut adapter, &[b"nope", b"{}"]), "{}\n");
        assert_eq!(adapter.counters().dropped.get(), 1);
        assert!(adapter.counters().summary().contains("1 unparsed dropped"));
    }

    /// A file that takes `room` bytes, then fails as a full disk does.
    struct Full {
        taken: Arc<Mutex<Vec<u8>>>,
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let mut taken = self.taken.lock().unwrap();
            let count = bytes.len().min(self.room - taken.len());
            if count == 0 && !bytes.is_empty() {
                return Err(io::Error::from_raw_os_error(ENOSPC));
            }
            taken.extend_from_slice(&bytes[..count]);
            Ok(count)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// "No space left on device" on Linux.
    const ENOSPC: i32 = 28;

    #[test]
    fn set_aside_counts_only_lines_the_unparsed_file_really_took() {
        // Regression: lines were counted when buffered, so a full disk left
        // the count (276) above what the file held (140).
        let taken = Arc::new(Mutex::new(Vec::new()));
        let file = Full {
            taken: taken.clone(),
            room: 25,
        };
        let mut adapter = pipeline(FormatName::Json, |settings| {
            settings.unparsed = Some(Box::new(file));
        });
        let now = Instant::now();
        for _ in 0..5 {
            adapter.push_line(b"not json", false, now).unwrap();
        }
        let error = adapter.finish().unwrap_err();
        assert_eq!(error.raw_os_error(), Some(ENOSPC));
        // 25 bytes: two whole lines of 9 and a part of the third.
        assert_eq!(taken.lock().unwrap().len(), 25);
        assert_eq!(adapter.counters().set_aside.get(), 2);
    }

    #[test]
    fn edits_rename_drop_then_add_also_on_bad_lines() {
        let mut adapter = pipeline(FormatName::Logfmt, |settings| {
            settings.edits = Edits {
                add: vec![("pod".into(), "web-0".into()), ("level".into(), "x".into())],
                rename: vec![("msg".into(), "message".into())],
                drop: vec!["secret".into()],
            };
        });
        let out = run(&mut adapter, &[b"level=info msg=hi secret=s3", b"=bad"]);
        assert_eq!(
            out,
            "{\"level\":\"x\",\"message\":\"hi\",\"pod\":\"web-0\"}\n\
             {\"message\":\"=bad\",\"parse_error\":\"empty key before '='\",\"pod\":\"web-0\",\"level\":\"x\"}\n"
        );
    }

    /// Found by the logfmt fuzz target: the fuzz check took any output with
    /// a `parse_error` key for a bad line.
    #[test]
    fn a_parsed_line_with_its_own_parse_error_key_counts_as_parsed() {
        let mut adapter = pipeline(FormatName::Logfmt, |_| {});
        let out = run(&mut adapter, &[b"ti-\t!\tparse_error"]);
        assert_eq!(out, "{\"ti-\":true,\"!\":true,\"parse_error\":true}\n");
        assert_eq!(adapter.counters().parsed.get(), 1);
        assert_eq!(adapter.counters().emitted.get(), 0);
    }

    #[test]
    fn lines_cut_by_the_reader_are_counted_once() {
        // The line was cut where it was read (stdin's splitter, the
        // follower): one cut, counted here.
        let mut adapter = pipeline(FormatName::Logfmt, |_| {});
        use sidecar_common::follow::Flow;
        use sidecar_common::lines::{LineSplitter, LongLines};
        let mut splitter = LineSplitter::new(8, LongLines::Cut);
        let now = Instant::now();
        splitter
            .feed(b"key=0123456789\n", |line| {
                adapter.push_line(line.bytes, line.truncated, now)?;
                Ok::<_, io::Error>(Flow::Continue)
            })
            .unwrap();
        adapter.finish().unwrap();
        let out = String::from_utf8(std::mem::take(adapter.output())).unwrap();
        assert_eq!(out, "{\"key\":\"0123\"}\n");
        assert_eq!(adapter.counters().truncated.get(), 1);
    }

    #[test]
    fn multiline_records_are_joined_before_parsing_and_flushed_on_time() {
        let start = regex::bytes::Regex::new(r"^\d{4}-").unwrap();
        let mut adapter = pipeline(FormatName::Writer, |settings| {
            settings.multiline = Some((Multiline::new(start, 4096), Duration::from_secs(1)));
        });
        let now = Instant::now();
        for line in [
            &b"2026-11-25T14:01:13Z - boom"[..],
            b"java.lang.IllegalStateException: bad",
            b"\tat App.main(App.java:7)",
        ] {
            adapter.push_line(line, false, now).unwrap();
        }
        assert!(adapter.output().is_empty());
        assert_eq!(adapter.next_deadline(), Some(now + Duration::from_secs(1)));
        adapter.tick(now + Duration::from_secs(1)).unwrap();
        assert_eq!(
            String::from_utf8(std::mem::take(adapter.output())).unwrap(),
            "{\"timestamp\":\"2026-11-25T14:01:13Z\",\"message\":\"boom\\njava.lang.IllegalStateException: bad\\n\\tat App.main(App.java:7)\"}\n"
        );
        assert_eq!(adapter.counters().lines.get(), 3);
        assert_eq!(adapter.counters().parsed.get(), 1);
    }

    #[test]
    fn json_passthrough_copies_valid_objects_and_still_flags_bad_ones() {
        let mut adapter = pipeline(FormatName::Json, |_| {});
        let out = run(
            &mut adapter,
            &[b"  {\"b\": 1, \"a\": [true]}  ", b"{\"a\":"],
        );
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("{\"b\": 1, \"a\": [true]}"));
        let error: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(error["message"], "{\"a\":");
        assert!(
            error["parse_error"]
                .as_str()
                .unwrap()
                .starts_with("invalid JSON")
        );
    }

    const ALL_FORMATS: [FormatName; 9] = [
        FormatName::Writer,
        FormatName::Common,
        FormatName::Combined,
        FormatName::Rfc3164,
        FormatName::Rfc5424,
        FormatName::Logfmt,
        FormatName::Json,
        FormatName::Klog,
        FormatName::Auto,
    ];

    /// Lines that look like the formats, with random bytes spliced in, to
    /// reach deep into the parsers (plain random bytes fail at the first one).
    fn line_strategy() -> impl Strategy<Value = Vec<u8>> {
        let seeds = prop::sample::select(vec![
            &b"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 2326 \"-\" \"a\""[..],
            b"<165>1 2003-10-11T22:14:15.003Z host app 1 ID [a@1 k=\"v\\\"\"] msg",
            b"<34>Oct 11 22:14:15 host su[230]: msg",
            b"a=1 b=\"x \\\" y\" c",
            b"{\"a\":[1,{\"b\":null}],\"c\":\"\\u00e9\"}",
            b"I0505 17:59:40.692994   28133 klog.go:70] hello",
            b"Wed Nov 25 14:01:13 UTC 2026 - Hello from writer",
        ]);
        (
            seeds,
            any::<usize>(),
            prop::collection::vec(any::<u8>(), 0..12),
            any::<usize>(),
        )
            .prop_map(|(seed, at, noise, cut)| {
                let mut line = seed.to_vec();
                let at = at % (line.len() + 1);
                line.splice(at..at, noise);
                line.truncate(cut % (line.len() + 1) + line.len() / 2);
                line.retain(|byte| *byte != b'\n');
                line
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_line_gives_one_valid_json_object_and_bad_lines_keep_their_text(
            line in prop_oneof![line_strategy(), prop::collection::vec(any::<u8>(), 0..200)],
            format_index in 0..ALL_FORMATS.len(),
        ) {
            let line: Vec<u8> = line.into_iter().filter(|byte| *byte != b'\n').collect();
            let mut adapter = pipeline(ALL_FORMATS[format_index], |_| {});
            adapter.push_line(&line, false, Instant::now()).unwrap();
            let out = String::from_utf8(std::mem::take(adapter.output())).unwrap();
            prop_assert_eq!(out.matches('\n').count(), 1);
            let value: serde_json::Value = serde_json::from_str(&out).unwrap();
            prop_assert!(value.is_object());
            // A parsed line may have a `parse_error` key of its own (logfmt
            // `parse_error=x`): the counter says whether this one failed.
            if adapter.counters().emitted.get() == 1 {
                prop_assert!(value["parse_error"].is_string());
                let expected = String::from_utf8_lossy(&line);
                let expected = expected.strip_suffix('\r').unwrap_or(&expected);
                prop_assert_eq!(value["message"].as_str(), Some(expected));
            }
        }
    }
}
