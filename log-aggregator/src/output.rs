//! Stream mode's rendering: how a line becomes output bytes ([`Format`],
//! [`Formatter`]), raw or through `--parse`'s converter. The bytes reach
//! stdout through the shared bounded pipe
//! ([`sidecar_common::pipeline::output`]), re-exported here.
//!
//! Rendering appends to a caller-owned buffer, so plain mode costs one copy
//! per line and no allocation.

use std::io::Write;
use std::path::Path;

use sidecar_common::json::write_string as write_json_string;
use sidecar_common::metrics::Counter;
use sidecar_common::pipeline::convert::{Converted, Converter, Origin, decode};
pub use sidecar_common::pipeline::output::{CHUNK_BYTES, OutputPipe, PENDING_LIMIT_BYTES, stdout};
/// How a line is written to stdout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The line as it is in the file.
    #[default]
    Plain,
    /// `<file>: <line>`; control bytes and `\` in the file name are escaped
    /// (`\n`, `\t`, `\xNN`, `\\`), so a name with a newline cannot split a line.
    Prefixed,
    /// One JSON object per line: `file`, `line` (UTF-8, invalid bytes
    /// replaced by U+FFFD), `time` (ingestion, RFC 3339) and `truncated`
    /// (only when the line was cut at `--max-line-bytes`). With `--parse`:
    /// the parsed fields, `file` and the `--add` fields.
    Json,
    /// With `--parse`: the parsed fields, `file` and the `--add` fields as
    /// logfmt (`key=value`, quoted where needed).
    Logfmt,
    /// With `--parse`: `--template`, `{field}` placeholders filled from the
    /// parsed fields, `file` and the `--add` fields.
    Template,
}

impl Format {
    /// Whether this output needs records (`--parse`).
    pub fn needs_parse(self) -> bool {
        matches!(self, Format::Logfmt | Format::Template)
    }
}

/// Renders lines in one [`Format`]; caches the ingestion timestamp per millisecond.
#[derive(Debug)]
pub struct Formatter {
    format: Format,
    /// `--parse`: each line becomes a record (parse, `file`, edits, encode);
    /// a line that does not parse is emitted as the adapter emits it, and
    /// counted here.
    parse: Option<(Converter, Counter)>,
    time_millis: i64,
    time_text: String,
    /// `{"file":"<path>","line":` for the last path seen: lines come in runs
    /// per file, so the path is escaped once per run, not once per line.
    json_head: Vec<u8>,
    json_head_path: std::path::PathBuf,
    /// The path whose long line was left open by a `partial` piece: its
    /// next piece continues it (no prefix); anything else ends it first.
    open_line: Option<std::path::PathBuf>,
}

impl Formatter {
    pub fn new(format: Format) -> Self {
        Self {
            format,
            parse: None,
            time_millis: i64::MIN,
            time_text: String::new(),
            json_head: Vec::new(),
            json_head_path: std::path::PathBuf::new(),
            open_line: None,
        }
    }

    /// Renders through `converter` instead (`--parse`); lines that do not
    /// parse are counted in `unparsed`.
    pub fn parsing(mut self, converter: Converter, unparsed: Counter) -> Self {
        self.parse = Some((converter, unparsed));
        self
    }

    /// Appends `line` (without its newline) from `path`, rendered, with a
    /// newline. `partial`: a piece of a long line whose rest follows (the
    /// follower's split mode): in plain and prefixed output it is written
    /// as it comes, without the newline, and the next piece of that path
    /// continues it, so a line of any size comes out whole while only a
    /// piece is held. A line of another file arriving before the last piece
    /// (the long line is still being written) ends the open line first; its
    /// rest then comes out as a line of its own. JSON is not given pieces:
    /// a record must be whole, so there lines are cut (`truncated`).
    pub fn render(
        &mut self,
        out: &mut Vec<u8>,
        path: &Path,
        line: &[u8],
        truncated: bool,
        partial: bool,
    ) {
        if let Some(open) = &self.open_line {
            if open.as_os_str().as_encoded_bytes() != path.as_os_str().as_encoded_bytes() {
                out.push(b'\n');
                self.open_line = None;
            }
        }
        if let Some((converter, unparsed)) = &self.parse {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let text = decode(line);
            let file = path.to_string_lossy();
            let origin = Origin {
                file: Some(&file),
                truncated,
            };
            if let Converted::Unparsed(why) = converter.convert(&text, origin, out) {
                converter.emit_unparsed(&text, why, origin, out);
                unparsed.inc();
            }
            return;
        }
        let continued = self.open_line.is_some();
        match self.format {
            Format::Plain => {
                out.extend_from_slice(line);
            }
            Format::Prefixed => {
                if !continued {
                    write_escaped_name(path.as_os_str().as_encoded_bytes(), out);
                    out.extend_from_slice(b": ");
                }
                out.extend_from_slice(line);
            }
            // Refused without --parse when the flags are read; a record
            // of the raw line is the nearest meaning.
            Format::Json | Format::Logfmt | Format::Template => {
                let now = jiff::Timestamp::now();
                let millis = now.as_millisecond();
                if millis != self.time_millis {
                    self.time_millis = millis;
                    self.time_text = sidecar_common::clock::rfc3339_utc(now);
                }
                // Compared as bytes: `Path`'s `==` walks components, which
                // cost more per line than the rest of the rendering.
                if self.json_head.is_empty()
                    || self.json_head_path.as_os_str().as_encoded_bytes()
                        != path.as_os_str().as_encoded_bytes()
                {
                    self.json_head.clear();
                    self.json_head.extend_from_slice(b"{\"file\":");
                    write_json_string(&path.to_string_lossy(), &mut self.json_head);
                    self.json_head.extend_from_slice(b",\"line\":");
                    self.json_head_path = path.to_owned();
                }
                out.extend_from_slice(&self.json_head);
                write_json_string(&decode(line), out);
                out.extend_from_slice(b",\"time\":\"");
                out.extend_from_slice(self.time_text.as_bytes());
                out.push(b'"');
                if truncated {
                    out.extend_from_slice(b",\"truncated\":true");
                }
                out.push(b'}');
            }
        }
        if partial && matches!(self.format, Format::Plain | Format::Prefixed) {
            if !continued {
                self.open_line = Some(path.to_owned());
            }
            return;
        }
        self.open_line = None;
        out.push(b'\n');
    }
}

/// A file name in `--output prefixed`: as it is unless it holds a control
/// byte or `\`, which are escaped C-style (one line per line, whatever the name).
fn write_escaped_name(name: &[u8], out: &mut Vec<u8>) {
    let special = |byte: u8| byte < 0x20 || byte == 0x7f || byte == b'\\';
    if !name.iter().any(|byte| special(*byte)) {
        out.extend_from_slice(name);
        return;
    }
    for &byte in name {
        match byte {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            byte if special(byte) => {
                let _ = write!(out, "\\x{byte:02x}");
            }
            byte => out.push(byte),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(format: Format, line: &[u8], truncated: bool) -> String {
        let mut out = Vec::new();
        Formatter::new(format).render(
            &mut out,
            Path::new("/var/log/app.log"),
            line,
            truncated,
            false,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn plain_is_the_line_as_is() {
        assert_eq!(
            render(Format::Plain, b"hello world", false),
            "hello world\n"
        );
    }

    #[test]
    fn prefixed_names_the_file() {
        assert_eq!(
            render(Format::Prefixed, b"hello", false),
            "/var/log/app.log: hello\n"
        );
    }

    #[test]
    fn prefixed_escapes_a_file_name_with_a_newline_or_control_bytes() {
        // Regression: a name with a newline split each line in two.
        let mut out = Vec::new();
        Formatter::new(Format::Prefixed).render(
            &mut out,
            Path::new("/logs/a\nb\t\\c\x1b.log"),
            b"hello",
            false,
            false,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "/logs/a\\nb\\t\\\\c\\x1b.log: hello\n"
        );
    }

    #[test]
    fn json_has_file_line_time_and_truncated_when_cut() {
        let text = render(Format::Json, b"say \"hi\"\t\\ \x01", true);
        assert!(text.ends_with('\n'));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["file"], "/var/log/app.log");
        assert_eq!(value["line"], "say \"hi\"\t\\ \u{1}");
        assert_eq!(value["truncated"], true);
        let time = value["time"].as_str().unwrap();
        assert!(time.parse::<jiff::Timestamp>().is_ok(), "{time}");
        let whole = render(Format::Json, b"x", false);
        assert!(!whole.contains("truncated"), "{whole}");
    }

    #[test]
    fn json_names_the_right_file_when_files_alternate() {
        let mut formatter = Formatter::new(Format::Json);
        let mut out = Vec::new();
        for path in ["/a.log", "/b \"quoted\".log", "/a.log"] {
            formatter.render(&mut out, Path::new(path), b"x", false, false);
        }
        let files: Vec<String> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line).unwrap()["file"].to_string()
            })
            .collect();
        assert_eq!(
            files,
            [r#""/a.log""#, r#""/b \"quoted\".log""#, r#""/a.log""#]
        );
    }

    #[test]
    fn pieces_of_a_long_line_come_out_as_one_line() {
        for (format, expected) in [
            (Format::Plain, "abcdef\nnext\n"),
            (Format::Prefixed, "/a.log: abcdef\n/a.log: next\n"),
        ] {
            let mut formatter = Formatter::new(format);
            let mut out = Vec::new();
            for (piece, partial) in [("ab", true), ("cd", true), ("ef", false), ("next", false)] {
                formatter.render(
                    &mut out,
                    Path::new("/a.log"),
                    piece.as_bytes(),
                    false,
                    partial,
                );
            }
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{format:?}");
        }
    }

    #[test]
    fn another_files_line_ends_an_open_long_line_first() {
        let mut formatter = Formatter::new(Format::Prefixed);
        let mut out = Vec::new();
        for (path, piece, partial) in [
            ("/a.log", "ab", true),
            ("/b.log", "other", false),
            ("/a.log", "cd", false),
        ] {
            formatter.render(&mut out, Path::new(path), piece.as_bytes(), false, partial);
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "/a.log: ab\n/b.log: other\n/a.log: cd\n"
        );
    }

    #[test]
    fn json_stays_valid_for_invalid_utf8() {
        let text = render(Format::Json, b"bad \xff\xfe bytes \xc3", false);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["line"], "bad \u{fffd}\u{fffd} bytes \u{fffd}");
    }
}
