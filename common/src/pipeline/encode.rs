//! Output formats (`--to`): a [`Record`] as one line of JSON, logfmt or a
//! user template, appended to a byte buffer.
//!
//! JSON is written by hand rather than through `serde_json::Value`: a
//! `serde_json::Map` sorts its keys unless the `preserve_order` feature
//! pulls in indexmap for every crate in the workspace, and building a
//! `Value` per line costs an allocation per field. Here the record's order
//! is the output order for free, strings borrowed from the line are escaped
//! straight into the buffer, and only nested JSON from `--from json` goes
//! through serde_json's writer. Keys are written in record order: the
//! order documented per format, then `--add` fields.

use crate::json::write_string as json_string;

use crate::pipeline::record::{Record, Value};

/// The output formats `--to` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputName {
    /// One JSON object per line.
    Json,
    /// `key=value` pairs, quoted where needed.
    Logfmt,
    /// `--template`, with `{field}` placeholders.
    Template,
}

/// A configured output.
#[derive(Clone, Debug)]
pub enum Output {
    Json,
    Logfmt,
    Template(Template),
}

impl Output {
    /// Appends `record` and a newline to `out`.
    pub fn write(&self, record: &Record<'_>, out: &mut Vec<u8>) {
        match self {
            Output::Json => write_json(record, out),
            Output::Logfmt => write_logfmt(record, out),
            Output::Template(template) => template.write(record, out),
        }
        out.push(b'\n');
    }
}

fn json_value(value: &Value<'_>, out: &mut Vec<u8>) {
    match value {
        Value::Str(text) => json_string(text, out),
        Value::Int(number) => {
            let _ = serde_json::to_writer(&mut *out, number);
        }
        Value::Bool(flag) => out.extend_from_slice(if *flag { b"true" } else { b"false" }),
        Value::Map(members) => {
            out.push(b'{');
            for (index, (key, value)) in members.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                json_string(key, out);
                out.push(b':');
                json_string(value, out);
            }
            out.push(b'}');
        }
        Value::Json(value) => {
            let _ = serde_json::to_writer(&mut *out, value);
        }
    }
}

/// Appends `record` as one compact JSON object (no newline).
pub fn write_json(record: &Record<'_>, out: &mut Vec<u8>) {
    out.push(b'{');
    for (index, (key, value)) in record.fields.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        json_string(key, out);
        out.push(b':');
        json_value(value, out);
    }
    out.push(b'}');
}

/// Whether a logfmt value must be quoted to read back as itself.
fn needs_quotes(text: &str) -> bool {
    text.is_empty()
        || text.bytes().any(|byte| {
            byte <= b' ' || byte == b'"' || byte == b'=' || byte == b'\\' || byte == 0x7f
        })
}

fn logfmt_text(text: &str, out: &mut Vec<u8>) {
    if needs_quotes(text) {
        json_string(text, out);
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

/// A value as plain text: strings unquoted, numbers and booleans as
/// written, objects as compact JSON.
fn plain_text(value: &Value<'_>, out: &mut Vec<u8>) {
    match value {
        Value::Str(text) => out.extend_from_slice(text.as_bytes()),
        other => json_value(other, out),
    }
}

/// Appends `record` as logfmt (no newline). Structured-data objects are
/// flattened to `id.param=value`; other nested JSON is written as a quoted
/// JSON string.
pub fn write_logfmt(record: &Record<'_>, out: &mut Vec<u8>) {
    let mut first = true;
    let mut separator = |out: &mut Vec<u8>| {
        if !first {
            out.push(b' ');
        }
        first = false;
    };
    for (key, value) in &record.fields {
        match value {
            Value::Map(members) => {
                for (member, text) in members {
                    separator(out);
                    logfmt_text(&format!("{key}.{member}"), out);
                    out.push(b'=');
                    logfmt_text(text, out);
                }
            }
            Value::Str(text) => {
                separator(out);
                logfmt_text(key, out);
                out.push(b'=');
                logfmt_text(text, out);
            }
            other => {
                separator(out);
                logfmt_text(key, out);
                out.push(b'=');
                let mut text = Vec::new();
                json_value(other, &mut text);
                logfmt_text(&String::from_utf8_lossy(&text), out);
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Text(String),
    Field(String),
}

/// `--template`: text with `{field}` placeholders; `{{` and `}}` are
/// literal braces; a field the record lacks renders empty.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(char) = chars.next() {
            match char {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(char) => name.push(char),
                            None => {
                                return Err(format!("template {text:?}: '{{' without its '}}'"));
                            }
                        }
                    }
                    if name.is_empty() {
                        return Err(format!("template {text:?}: empty '{{}}'"));
                    }
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Field(name));
                }
                '}' => {
                    return Err(format!(
                        "template {text:?}: '}}' without its '{{' (write '}}}}')"
                    ));
                }
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Self { pieces })
    }

    fn write(&self, record: &Record<'_>, out: &mut Vec<u8>) {
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.extend_from_slice(text.as_bytes()),
                Piece::Field(name) => {
                    if let Some(value) = record.get(name) {
                        let start = out.len();
                        plain_text(value, out);
                        // One record, one line: a newline inside a value
                        // (a joined stack trace) would split the record.
                        for byte in &mut out[start..] {
                            if *byte == b'\n' {
                                *byte = b' ';
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn sample() -> Record<'static> {
        let mut record = Record::default();
        record.push("timestamp", "2026-11-25T14:01:13Z");
        record.push("severity", "err");
        record.push("message", "disk \"sda\" full\n\tat x\u{1}");
        record.push("status", Value::Int(-5));
        record.push("ok", Value::Bool(true));
        record.push(
            "sd@1",
            Value::Map(vec![(Cow::Borrowed("k"), Cow::Borrowed("a b"))]),
        );
        record.push("nested", Value::Json(serde_json::json!({"a": [1, null]})));
        record
    }

    #[test]
    fn json_escapes_control_characters_and_keeps_order() {
        let mut out = Vec::new();
        Output::Json.write(&sample(), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"timestamp\":\"2026-11-25T14:01:13Z\",\"severity\":\"err\",\"message\":\"disk \\\"sda\\\" full\\n\\tat x\\u0001\",\"status\":-5,\"ok\":true,\"sd@1\":{\"k\":\"a b\"},\"nested\":{\"a\":[1,null]}}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["message"], "disk \"sda\" full\n\tat x\u{1}");
    }

    #[test]
    fn logfmt_quotes_only_what_needs_it() {
        let mut out = Vec::new();
        Output::Logfmt.write(&sample(), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "timestamp=2026-11-25T14:01:13Z severity=err message=\"disk \\\"sda\\\" full\\n\\tat x\\u0001\" status=-5 ok=true sd@1.k=\"a b\" nested=\"{\\\"a\\\":[1,null]}\"\n"
        );
    }

    #[test]
    fn template_fills_fields_and_keeps_one_line() {
        let template =
            Template::parse("{timestamp} [{severity}] {message} {missing}{{x}}").unwrap();
        let mut out = Vec::new();
        Output::Template(template).write(&sample(), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-11-25T14:01:13Z [err] disk \"sda\" full \tat x\u{1} {x}\n"
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(
            Template::parse("{open")
                .unwrap_err()
                .contains("without its")
        );
        assert!(
            Template::parse("close}")
                .unwrap_err()
                .contains("without its")
        );
        assert!(Template::parse("{}").unwrap_err().contains("empty"));
    }
}
