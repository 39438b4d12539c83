//! One line through parse → enrich → encode: the part of the pipeline
//! that turns bytes into a structured output line. Binaries keep what is
//! theirs around it (where lines come from, multiline joining, counters,
//! where unparsed lines go).
//!
//! Decoding happens here, on purpose and only here: invalid UTF-8 becomes
//! U+FFFD, because every format is text and every output is UTF-8.

use std::borrow::Cow;

use crate::pipeline::encode::Output;
use crate::pipeline::enrich::Edits;
use crate::pipeline::formats::{FormatName, ParseError, Parser};
use crate::pipeline::record::{Record, Value};

/// What [`Converter::convert`] did with a line.
#[derive(Debug, PartialEq, Eq)]
pub enum Converted {
    /// Parsed, and its output line appended.
    Parsed,
    /// Did not parse: nothing appended; the caller emits it
    /// ([`Converter::emit_unparsed`]), sets it aside or drops it.
    Unparsed(ParseError),
}

/// Where a line came from and what happened to it on the way, added as
/// fields (`file`, `truncated`) when known.
#[derive(Clone, Copy, Debug, Default)]
pub struct Origin<'a> {
    /// The followed file's path, as `file`.
    pub file: Option<&'a str>,
    /// The line was cut at the maximum line size: `"truncated": true`.
    pub truncated: bool,
}

/// A parser, the edits and an encoder, configured once.
#[derive(Clone, Debug)]
pub struct Converter {
    parser: Parser,
    output: Output,
    edits: Edits,
    /// `--from json --to json` without edits nor origin fields: valid
    /// objects are copied as they are, without building a record.
    passthrough: bool,
}

/// Decodes a line for the parsers: borrowed when it is valid UTF-8 (with
/// `from_utf8`'s fast ASCII path, which `from_utf8_lossy` lacks).
pub fn decode(raw: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(raw) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(raw),
    }
}

impl Converter {
    pub fn new(parser: Parser, output: Output, edits: Edits) -> Self {
        let passthrough =
            parser.name() == FormatName::Json && matches!(output, Output::Json) && edits.is_empty();
        Self {
            parser,
            output,
            edits,
            passthrough,
        }
    }

    pub fn parser_mut(&mut self) -> &mut Parser {
        &mut self.parser
    }

    /// Parses `text`, adds `origin`'s fields, applies the edits and appends
    /// the encoded line to `out`.
    pub fn convert(&self, text: &str, origin: Origin<'_>, out: &mut Vec<u8>) -> Converted {
        if self.passthrough && origin.file.is_none() && !origin.truncated {
            let trimmed = text.trim();
            if Parser::is_json_object(trimmed) {
                out.extend_from_slice(trimmed.as_bytes());
                out.push(b'\n');
                return Converted::Parsed;
            }
        }
        let mut record = Record {
            fields: Vec::with_capacity(12),
        };
        match self.parser.parse(text, &mut record) {
            Ok(()) => {
                add_origin(&mut record, origin);
                self.edits.apply(&mut record);
                self.output.write(&record, out);
                Converted::Parsed
            }
            Err(why) => Converted::Unparsed(why),
        }
    }

    /// Appends a line that did not parse as `message` and `parse_error`,
    /// then `origin`'s fields and the `--add` fields (a pod's lines stay
    /// findable by its fields even when they do not parse).
    pub fn emit_unparsed(
        &self,
        text: &str,
        why: ParseError,
        origin: Origin<'_>,
        out: &mut Vec<u8>,
    ) {
        let mut record = Record::default();
        record.push("message", text);
        record.push("parse_error", Value::Str(why));
        add_origin(&mut record, origin);
        self.edits.add_to(&mut record);
        self.output.write(&record, out);
    }
}

/// The followed path is `file`. A parsed field of that name (klog's source
/// file, a JSON logger's key) is kept as `source_file`, never overwritten.
fn add_origin<'a>(record: &mut Record<'a>, origin: Origin<'a>) {
    if let Some(file) = origin.file {
        record.rename("file", "source_file");
        record.set(Cow::Borrowed("file"), Value::from(file));
    }
    if origin.truncated {
        record.set(Cow::Borrowed("truncated"), Value::Bool(true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::formats::Options;

    fn converter(from: FormatName, edits: Edits) -> Converter {
        let options = Options {
            year: Some(2026),
            now: (2026, 11),
            keep_time: false,
        };
        Converter::new(
            Parser::new(from, None, options).unwrap(),
            Output::Json,
            edits,
        )
    }

    fn line(converter: &Converter, text: &str, origin: Origin<'_>) -> serde_json::Value {
        let mut out = Vec::new();
        if let Converted::Unparsed(why) = converter.convert(text, origin, &mut out) {
            converter.emit_unparsed(text, why, origin, &mut out);
        }
        assert_eq!(out.iter().filter(|byte| **byte == b'\n').count(), 1);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn parsed_and_unparsed_lines_carry_the_file_and_the_added_fields() {
        let edits = Edits::parse(&["pod=web-0".into()], &["file=path".into()], &[]).unwrap();
        let converter = converter(FormatName::Combined, edits);
        let origin = Origin {
            file: Some("/var/log/nginx/a.log"),
            truncated: false,
        };
        let parsed = line(
            &converter,
            "127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 2326 \"-\" \"curl\"",
            origin,
        );
        assert_eq!(parsed["status"], 200);
        assert_eq!(
            parsed["path"], "/var/log/nginx/a.log",
            "renamed after being added"
        );
        assert_eq!(parsed["pod"], "web-0");
        let bad = line(&converter, "not a log line", origin);
        assert_eq!(bad["message"], "not a log line");
        assert!(bad["parse_error"].is_string());
        assert_eq!(bad["file"], "/var/log/nginx/a.log");
        assert_eq!(bad["pod"], "web-0");
    }

    #[test]
    fn json_passthrough_only_without_origin_fields() {
        let converter = converter(FormatName::Json, Edits::default());
        let mut out = Vec::new();
        converter.convert(" {\"b\": 1} ", Origin::default(), &mut out);
        assert_eq!(out, b"{\"b\": 1}\n");
        let with_file = line(
            &converter,
            "{\"b\": 1}",
            Origin {
                file: Some("a.log"),
                truncated: true,
            },
        );
        assert_eq!(with_file["file"], "a.log");
        assert_eq!(with_file["truncated"], true);
    }

    #[test]
    fn a_parsed_file_field_is_kept_as_source_file_next_to_the_followed_path() {
        let converter = converter(FormatName::Klog, Edits::default());
        let origin = Origin {
            file: Some("/var/log/k.log"),
            truncated: false,
        };
        let record = line(
            &converter,
            "E1125 14:01:13.250000       1 node.go:123] failed",
            origin,
        );
        assert_eq!(record["file"], "/var/log/k.log");
        assert_eq!(record["source_file"], "node.go");
        assert_eq!(record["line"], 123);
    }
}
