//! logfmt, as VRL's `parse_logfmt` reads it: `key=value` pairs separated by
//! blanks, a value either bare (up to the next blank) or double-quoted with
//! backslash escapes (`\"`, `\\`, `\n`, `\t`, `\r`; others kept), a bare key
//! is `true`. Values stay strings (logfmt has no types). A key seen twice
//! keeps its last value, in the position of its first.
//!
//! Under `--from auto` a line needs at least one `key=value` pair, or any
//! sentence would pass as a set of flags.

use std::borrow::Cow;

use super::{ParseError, skip_blanks};
use crate::pipeline::record::{Record, Value};

fn error(why: &'static str) -> ParseError {
    Cow::Borrowed(why)
}

pub fn parse<'a>(
    line: &'a str,
    need_pair: bool,
    record: &mut Record<'a>,
) -> Result<(), ParseError> {
    let bytes = line.as_bytes();
    let mut at = 0;
    let mut pairs = 0;
    loop {
        skip_blanks(bytes, &mut at);
        if at >= bytes.len() {
            break;
        }
        let key_start = at;
        while let Some(&byte) = bytes.get(at) {
            if matches!(byte, b' ' | b'\t' | b'=') {
                break;
            }
            if byte == b'"' {
                return Err(error("quote in a key"));
            }
            at += 1;
        }
        let key = line.get(key_start..at).unwrap_or_default();
        if key.is_empty() {
            return Err(error("empty key before '='"));
        }
        if bytes.get(at) != Some(&b'=') {
            record.set(Cow::Borrowed(key), Value::Bool(true));
            continue;
        }
        at += 1;
        pairs += 1;
        let value = if bytes.get(at) == Some(&b'"') {
            at += 1;
            quoted(line, &mut at).ok_or(error("unterminated quoted value"))?
        } else {
            let value_start = at;
            while let Some(&byte) = bytes.get(at) {
                if matches!(byte, b' ' | b'\t') {
                    break;
                }
                at += 1;
            }
            Cow::Borrowed(line.get(value_start..at).unwrap_or_default())
        };
        record.set(Cow::Borrowed(key), Value::Str(value));
    }
    if record.fields.is_empty() {
        return Err(error("empty line"));
    }
    if need_pair && pairs == 0 {
        return Err(error("no key=value pair"));
    }
    Ok(())
}

/// A quoted value after its opening quote, up to and past the closing one.
fn quoted<'a>(line: &'a str, at: &mut usize) -> Option<Cow<'a, str>> {
    let bytes = line.as_bytes();
    let start = *at;
    let end = start + memchr::memchr2(b'"', b'\\', &bytes[start..])?;
    if bytes[end] == b'"' {
        *at = end + 1;
        return line.get(start..end).map(Cow::Borrowed);
    }
    // Slow path: an escape; unescape into a new string.
    let mut text = String::from(line.get(start..end)?);
    let mut cursor = end;
    let mut chars = line.get(cursor..)?.char_indices();
    while let Some((offset, char)) = chars.next() {
        match char {
            '"' => {
                cursor += offset + 1;
                *at = cursor;
                return Some(Cow::Owned(text));
            }
            '\\' => match chars.next()?.1 {
                'n' => text.push('\n'),
                't' => text.push('\t'),
                'r' => text.push('\r'),
                escaped @ ('"' | '\\') => text.push(escaped),
                other => {
                    text.push('\\');
                    text.push(other);
                }
            },
            other => text.push(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::pipeline::formats::FormatName::Logfmt;
    use crate::pipeline::formats::tests::parse_json;

    #[test]
    fn logfmt_lines() {
        let cases = [
            (
                r#"time=2026-11-25T14:01:13Z level=info msg="listening on :8080" port=8080"#,
                r#"{"time":"2026-11-25T14:01:13Z","level":"info","msg":"listening on :8080","port":"8080"}"#,
            ),
            // `=` inside a quoted value; escapes; a bare key; an empty value.
            (
                r#"query="a=1&b=2" msg="say \"hi\"\n\\o/" debug empty="#,
                r#"{"query":"a=1&b=2","msg":"say \"hi\"\n\\o/","debug":true,"empty":""}"#,
            ),
            // Repeated key keeps the last value in the first position; tabs separate.
            ("a=1\tb=2 a=3", r#"{"a":"3","b":"2"}"#),
            ("  lonely  ", r#"{"lonely":true}"#),
            (
                r#"unicode="héllo wörld" x=ü"#,
                r#"{"unicode":"héllo wörld","x":"ü"}"#,
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_json(Logfmt, line).as_deref(), Ok(expected), "{line}");
        }
    }

    #[test]
    fn logfmt_errors() {
        for (line, why) in [
            ("", "empty line"),
            ("   ", "empty line"),
            ("=value", "empty key before '='"),
            (r#"msg="no end"#, "unterminated quoted value"),
            (r#"msg="ends in escape\"#, "unterminated quoted value"),
            (r#"k"ey=v"#, "quote in a key"),
        ] {
            assert_eq!(parse_json(Logfmt, line), Err(why.to_owned()), "{line}");
        }
    }
}
