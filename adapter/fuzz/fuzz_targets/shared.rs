//! What every fuzz target checks, for its own format: a line through the
//! whole pipeline (parse, JSON output) never panics, the output is UTF-8
//! with one JSON object per input line, and a line that did not parse keeps
//! its raw text (lossily decoded) in `message` next to a `parse_error`.

use std::time::Instant;

use adapter::formats::{FormatName, Options, Parser};
use adapter::output::Output;
use adapter::pipeline::{Counters, Edits, OnError, Pipeline, Settings};
use sidecar_common::metrics::Registry;

pub fn check(format: FormatName, data: &[u8]) {
    // The first byte varies the options; the rest is the line.
    let Some((&selector, line)) = data.split_first() else {
        return;
    };
    let line: Vec<u8> = line.iter().copied().filter(|byte| *byte != b'\n').collect();
    let options = Options {
        year: None,
        now: (2026, u32::from(selector % 12) + 1),
        keep_time: selector & 0x80 != 0,
    };
    let settings = Settings {
        parser: Parser::new(format, None, options).expect("no pattern needed"),
        output: Output::Json,
        edits: Edits::default(),
        on_error: OnError::Emit,
        unparsed: None,
        multiline: None,
    };
    let mut pipeline = Pipeline::new(settings, Counters::new(&Registry::new()));
    pipeline
        .push_line(&line, false, Instant::now())
        .expect("no I/O");
    pipeline.finish().expect("no I/O");
    let out = std::mem::take(pipeline.output());
    let text = std::str::from_utf8(&out).expect("output is UTF-8");
    assert_eq!(
        text.matches('\n').count(),
        1,
        "one output line per input line"
    );
    let value: serde_json::Value = serde_json::from_str(text).expect("output is JSON");
    assert!(value.is_object());
    // A line that parsed may well have a `parse_error` key of its own:
    // the counter, not the output, says whether this one failed.
    if pipeline.counters().emitted.get() == 1 {
        let raw = String::from_utf8_lossy(&line);
        let raw = raw.strip_suffix('\r').unwrap_or(&raw);
        assert_eq!(value["message"].as_str(), Some(raw));
        assert!(value["parse_error"].is_string());
    }
}
