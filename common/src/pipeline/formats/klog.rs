//! klog, the format of Kubernetes components, as VRL's `parse_klog` reads it:
//! `Lmmdd hh:mm:ss.uuuuuu threadid file:line] msg`, L one of I W E F.
//!
//! Fields: level (info, warning, error, fatal), timestamp (UTC, year from
//! `--year` or the current one, see [`Options::year_for`]), id (the thread
//! id; absent when the line has none, as klog's header without a pid
//! writes it), file, line, message (trailing blanks removed).

use std::borrow::Cow;

use super::{Options, ParseError, integer, skip_blanks, token};
use crate::pipeline::record::{Record, Value};
use crate::pipeline::time::{self, Civil};

fn error(why: &'static str) -> ParseError {
    Cow::Borrowed(why)
}

pub fn parse<'a>(
    line: &'a str,
    options: &Options,
    record: &mut Record<'a>,
) -> Result<(), ParseError> {
    let bytes = line.as_bytes();
    let mut at = 0;
    skip_blanks(bytes, &mut at);
    let level = match bytes.get(at) {
        Some(b'I') => "info",
        Some(b'W') => "warning",
        Some(b'E') => "error",
        Some(b'F') => "fatal",
        _ => return Err(error("klog line must start with I, W, E or F")),
    };
    at += 1;
    let stamp_start = at;
    let header = || error("klog header is not like 'I0505 17:59:40.692994'");
    let month = time::digits(bytes, &mut at, 2).ok_or_else(header)?;
    let day = time::digits(bytes, &mut at, 2).ok_or_else(header)?;
    time::expect(bytes, &mut at, b' ').ok_or_else(header)?;
    let (hour, minute, second) = time::clock(bytes, &mut at).ok_or_else(header)?;
    let nanos = time::fraction(bytes, &mut at);
    let raw = line.get(stamp_start..at).unwrap_or_default();
    if skip_blanks(bytes, &mut at) == 0 {
        return Err(header());
    }
    record.push("level", level);
    let civil = Civil {
        year: options.year_for(month),
        month,
        day,
        hour,
        minute,
        second,
        nanos,
    };
    options.push_time(record, raw, civil, 0)?;
    // An all-digit word followed by a blank is the thread id.
    let mut probe = at;
    let word = token(line, &mut probe);
    if let Some(id) = integer(word) {
        if skip_blanks(bytes, &mut probe) > 0 {
            record.push("id", Value::Int(id));
            at = probe;
        }
    } else if !word.is_empty() && word.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(error("klog thread id out of range"));
    }
    // file:line] — the first `]` preceded by `:digits`.
    let rest = &bytes[at..];
    let mut search = 0;
    let close = loop {
        let found = search
            + memchr::memchr(b']', &rest[search..])
                .ok_or(error("klog header has no 'file:line]'"))?;
        let mut digits_start = found;
        while digits_start > 0 && rest[digits_start - 1].is_ascii_digit() {
            digits_start -= 1;
        }
        if digits_start < found && digits_start > 1 && rest[digits_start - 1] == b':' {
            break (digits_start, found);
        }
        search = found + 1;
    };
    let (digits_start, close) = close;
    let file = line.get(at..at + digits_start - 1).unwrap_or_default();
    let number = line.get(at + digits_start..at + close).unwrap_or_default();
    let line_number = integer(number).ok_or(error("klog line number out of range"))?;
    record.push("file", file);
    record.push("line", Value::Int(line_number));
    let mut message_start = at + close + 1;
    if bytes.get(message_start) == Some(&b' ') {
        message_start += 1;
    }
    let message = line.get(message_start..).unwrap_or_default();
    record.push("message", message.trim_end());
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::pipeline::formats::FormatName::Klog;
    use crate::pipeline::formats::tests::parse_json;

    #[test]
    fn klog_lines() {
        let cases = [
            (
                "I0505 17:59:40.692994   28133 klog.go:70] hello from klog",
                r#"{"level":"info","timestamp":"2026-05-05T17:59:40.692994Z","id":28133,"file":"klog.go","line":70,"message":"hello from klog"}"#,
            ),
            // Without a thread id; trailing blanks stripped; `]` in the message.
            (
                "E1125 14:01:13.000000 pkg/controller/node.go:123] failed [retrying]   ",
                r#"{"level":"error","timestamp":"2026-11-25T14:01:13Z","file":"pkg/controller/node.go","line":123,"message":"failed [retrying]"}"#,
            ),
            // Leading blanks; warning; a file name with ':' in it.
            (
                "  W0228 00:00:00.5 1 c:\\x.go:9] leap",
                r#"{"level":"warning","timestamp":"2026-02-28T00:00:00.500Z","id":1,"file":"c:\\x.go","line":9,"message":"leap"}"#,
            ),
            (
                "F1231 23:59:59.999999 7 main.go:1]",
                r#"{"level":"fatal","timestamp":"2026-12-31T23:59:59.999999Z","id":7,"file":"main.go","line":1,"message":""}"#,
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_json(Klog, line).as_deref(), Ok(expected), "{line}");
        }
    }

    #[test]
    fn klog_errors() {
        for (line, why) in [
            (
                "X0505 17:59:40.692994 1 a.go:1] m",
                "klog line must start with I, W, E or F",
            ),
            (
                "I0505 17:59 1 a.go:1] m",
                "klog header is not like 'I0505 17:59:40.692994'",
            ),
            (
                "I0505 17:59:40.692994 1 a.go] m",
                "klog header has no 'file:line]'",
            ),
            // 2026 is not a leap year: Feb 29 is refused, not rolled over.
            (
                "W0229 00:00:00.5 1 x.go:9] leap",
                "bad timestamp \"0229 00:00:00.5\": day out of range for the month",
            ),
            (
                "I1305 17:59:40.692994 1 a.go:1] m",
                "bad timestamp \"1305 17:59:40.692994\": month out of range",
            ),
            (
                "I0505 17:59:40.692994 99999999999999999999 a.go:1] m",
                "klog thread id out of range",
            ),
        ] {
            assert_eq!(parse_json(Klog, line), Err(why.to_owned()), "{line}");
        }
    }
}
