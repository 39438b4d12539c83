//! NCSA common and Apache/NGINX combined access logs, as VRL's
//! `parse_common_log` and `parse_apache_log(format: "combined")` read them:
//!
//! `host identity user [25/Nov/2026:14:01:13 +0100] "GET /path HTTP/1.1" status size "referrer" "agent"`
//!
//! Fields: host, identity, user, timestamp, message (the request line),
//! method, path, protocol, status, size, then referrer and agent for
//! combined. `-` (and `"-"`) means absent. The request may contain `\"`
//! (Apache escapes quotes); values are kept as written. A combined line may
//! carry more fields after the agent (NGINX's `$http_x_forwarded_for`...):
//! they are ignored, as VRL does; a common line must end after the size.

use std::borrow::Cow;

use super::{Options, ParseError, integer, skip_blanks, token};
use crate::pipeline::record::{Record, Value};
use crate::pipeline::time::{self, Civil};

fn error(why: &'static str) -> ParseError {
    Cow::Borrowed(why)
}

/// At least one blank, or the error `why`.
fn separator(bytes: &[u8], at: &mut usize, why: &'static str) -> Result<(), ParseError> {
    if skip_blanks(bytes, at) == 0 {
        return Err(error(why));
    }
    Ok(())
}

/// A `"..."` field (with `\"` escapes kept as written) or a bare `-`:
/// returns the text between the quotes, `None` for `-` and `"-"`.
fn quoted<'a>(
    line: &'a str,
    at: &mut usize,
    what: &'static str,
) -> Result<Option<&'a str>, ParseError> {
    let bytes = line.as_bytes();
    match bytes.get(*at) {
        Some(b'"') => {
            let start = *at + 1;
            let mut end = start;
            loop {
                match bytes.get(end) {
                    None => return Err(error(what)),
                    Some(b'\\') => end += 2,
                    Some(b'"') => break,
                    Some(_) => end += 1,
                }
            }
            *at = end + 1;
            let text = line
                .get(start..end)
                .unwrap_or_default()
                .trim_matches([' ', '\t']);
            Ok((text != "-").then_some(text))
        }
        Some(b'-') => {
            *at += 1;
            Ok(None)
        }
        _ => Err(error(what)),
    }
}

/// `25/Nov/2026:14:01:13 +0100`.
fn clf_time(text: &str) -> Option<(Civil, i32)> {
    let bytes = text.as_bytes();
    let mut at = 0;
    let day = time::digits(bytes, &mut at, 2)?;
    time::expect(bytes, &mut at, b'/')?;
    let month = time::month_number(bytes.get(at..at + 3)?)?;
    at += 3;
    time::expect(bytes, &mut at, b'/')?;
    let year = time::digits(bytes, &mut at, 4)? as i32;
    time::expect(bytes, &mut at, b':')?;
    let (hour, minute, second) = time::clock(bytes, &mut at)?;
    let nanos = time::fraction(bytes, &mut at);
    skip_blanks(bytes, &mut at);
    let offset = time::offset(bytes, &mut at)?;
    (at == bytes.len()).then_some((
        Civil {
            year,
            month,
            day,
            hour,
            minute,
            second,
            nanos,
        },
        offset,
    ))
}

fn number<'a>(
    line: &'a str,
    at: &mut usize,
    what: &'static str,
) -> Result<Option<Value<'a>>, ParseError> {
    let text = token(line, at);
    if text == "-" {
        return Ok(None);
    }
    integer(text)
        .map(|value| Some(Value::Int(value)))
        .ok_or(error(what))
}

pub fn parse<'a>(
    line: &'a str,
    combined: bool,
    options: &Options,
    record: &mut Record<'a>,
) -> Result<(), ParseError> {
    let bytes = line.as_bytes();
    let mut at = 0;
    skip_blanks(bytes, &mut at);
    for key in ["host", "identity", "user"] {
        let value = token(line, &mut at);
        if value.is_empty() {
            return Err(error("missing host, identity or user"));
        }
        if value != "-" {
            record.push(key, value);
        }
        separator(bytes, &mut at, "missing host, identity or user")?;
    }
    match bytes.get(at) {
        Some(b'[') => {
            let end = memchr::memchr(b']', &bytes[at..])
                .map(|end| at + end)
                .ok_or(error("unterminated [timestamp]"))?;
            let raw = line.get(at + 1..end).unwrap_or_default();
            at = end + 1;
            if raw != "-" {
                let (civil, offset) = clf_time(raw)
                    .ok_or(error("timestamp is not like [25/Nov/2026:14:01:13 +0000]"))?;
                options.push_time(record, raw, civil, offset)?;
            }
        }
        Some(b'-') => at += 1,
        _ => return Err(error("missing [timestamp]")),
    }
    separator(bytes, &mut at, "missing request")?;
    if let Some(request) = quoted(line, &mut at, "missing or unterminated \"request\"")? {
        record.push("message", request);
        request_parts(request, record);
    }
    separator(bytes, &mut at, "missing status")?;
    if let Some(status) = number(line, &mut at, "status is not a number")? {
        record.push("status", status);
    }
    separator(bytes, &mut at, "missing size")?;
    if let Some(size) = number(line, &mut at, "size is not a number")? {
        record.push("size", size);
    }
    if !combined {
        skip_blanks(bytes, &mut at);
        if at != bytes.len() {
            return Err(error("unexpected text after size"));
        }
        return Ok(());
    }
    separator(bytes, &mut at, "missing \"referrer\"")?;
    if let Some(referrer) = quoted(line, &mut at, "missing or unterminated \"referrer\"")? {
        record.push("referrer", referrer);
    }
    separator(bytes, &mut at, "missing \"agent\"")?;
    if let Some(agent) = quoted(line, &mut at, "missing or unterminated \"agent\"")? {
        record.push("agent", agent);
    }
    if at != bytes.len() && !matches!(bytes.get(at), Some(b' ' | b'\t')) {
        return Err(error("unexpected text after \"agent\""));
    }
    Ok(())
}

/// `GET /path HTTP/1.1` into method, path and protocol. A request that is
/// not of that shape (a client sending garbage, HTTP/0.9's `GET /`) keeps
/// only `message`, with `method` and `path` when they are there.
fn request_parts<'a>(request: &'a str, record: &mut Record<'a>) {
    let Some((method, rest)) = request.split_once([' ', '\t']) else {
        return;
    };
    if method.is_empty()
        || !method
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
    {
        return;
    }
    let rest = rest.trim_matches([' ', '\t']);
    if rest.is_empty() {
        return;
    }
    record.push("method", method);
    match rest.rsplit_once([' ', '\t']) {
        Some((path, protocol)) => {
            record.push("path", path.trim_end_matches([' ', '\t']));
            record.push("protocol", protocol);
        }
        None => record.push("path", rest),
    }
}

#[cfg(test)]
mod tests {
    use crate::pipeline::formats::FormatName::{Combined, Common};
    use crate::pipeline::formats::tests::parse_json;

    #[test]
    fn common_log_lines() {
        let cases = [
            (
                r#"127.0.0.1 bob frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#,
                r#"{"host":"127.0.0.1","identity":"bob","user":"frank","timestamp":"2000-10-10T20:55:36Z","message":"GET /apache_pb.gif HTTP/1.0","method":"GET","path":"/apache_pb.gif","protocol":"HTTP/1.0","status":200,"size":2326}"#,
            ),
            // Every field `-`: only what is there is emitted.
            (r#"- - - - "-" - -"#, "{}"),
            // IPv6 host; offset crossing midnight and the year boundary.
            (
                r#"2001:db8::ff00:42:8329 - - [31/Dec/2025:23:30:00 -0100] "POST /api HTTP/2.0" 201 -"#,
                r#"{"host":"2001:db8::ff00:42:8329","timestamp":"2026-01-01T00:30:00Z","message":"POST /api HTTP/2.0","method":"POST","path":"/api","protocol":"HTTP/2.0","status":201}"#,
            ),
            // Leap day, a positive offset moving back a day.
            (
                r#"10.0.0.1 - - [01/Mar/2024:01:00:00 +0200] "GET / HTTP/1.1" 304 0"#,
                r#"{"host":"10.0.0.1","timestamp":"2024-02-29T23:00:00Z","message":"GET / HTTP/1.1","method":"GET","path":"/","protocol":"HTTP/1.1","status":304,"size":0}"#,
            ),
            // Escaped quotes inside the request are kept as written.
            (
                r#"10.0.0.1 - - [25/Nov/2026:14:01:13 +0000] "GET /q?a=\"x\" HTTP/1.1" 400 12"#,
                r#"{"host":"10.0.0.1","timestamp":"2026-11-25T14:01:13Z","message":"GET /q?a=\\\"x\\\" HTTP/1.1","method":"GET","path":"/q?a=\\\"x\\\"","protocol":"HTTP/1.1","status":400,"size":12}"#,
            ),
            // A request that is not METHOD PATH PROTOCOL keeps only message.
            (
                r#"10.0.0.1 - - [25/Nov/2026:14:01:13 +0000] "\x16\x03\x01" 400 0"#,
                r#"{"host":"10.0.0.1","timestamp":"2026-11-25T14:01:13Z","message":"\\x16\\x03\\x01","status":400,"size":0}"#,
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_json(Common, line).as_deref(), Ok(expected), "{line}");
        }
    }

    #[test]
    fn combined_log_lines() {
        let cases = [
            (
                r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#,
                r#"{"host":"127.0.0.1","user":"frank","timestamp":"2000-10-10T20:55:36Z","message":"GET /apache_pb.gif HTTP/1.0","method":"GET","path":"/apache_pb.gif","protocol":"HTTP/1.0","status":200,"size":2326,"referrer":"http://www.example.com/start.html","agent":"Mozilla/4.08 [en] (Win98; I ;Nav)"}"#,
            ),
            // NGINX default: referrer "-", trailing $http_x_forwarded_for ignored.
            (
                r#"::1 - - [25/Nov/2026:14:01:13 +0000] "GET /healthz HTTP/1.1" 200 2 "-" "kube-probe/1.32" "-""#,
                r#"{"host":"::1","timestamp":"2026-11-25T14:01:13Z","message":"GET /healthz HTTP/1.1","method":"GET","path":"/healthz","protocol":"HTTP/1.1","status":200,"size":2,"agent":"kube-probe/1.32"}"#,
            ),
            // Escaped quote in the agent.
            (
                r#"10.1.2.3 - - [25/Nov/2026:14:01:13.250 +0530] "GET / HTTP/1.1" 200 5 "-" "say \"hi\"""#,
                r#"{"host":"10.1.2.3","timestamp":"2026-11-25T08:31:13.250Z","message":"GET / HTTP/1.1","method":"GET","path":"/","protocol":"HTTP/1.1","status":200,"size":5,"agent":"say \\\"hi\\\""}"#,
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(
                parse_json(Combined, line).as_deref(),
                Ok(expected),
                "{line}"
            );
        }
    }

    #[test]
    fn malformed_access_lines_say_why() {
        for (format, line, why) in [
            (Common, "", "missing host, identity or user"),
            (
                Common,
                r#"1.2.3.4 - - [25/Nov/2026:14:01:13 +0000] "GET / HTTP/1.1" 200 5 extra"#,
                "unexpected text after size",
            ),
            (
                Common,
                r#"1.2.3.4 - - [32/Nov/2026:14:01:13 +0000] "GET /" 200 5"#,
                "bad timestamp \"32/Nov/2026:14:01:13 +0000\": day out of range for the month",
            ),
            (
                Common,
                r#"1.2.3.4 - - [25/Nov/2026:14:01:13] "GET /" 200 5"#,
                "timestamp is not like [25/Nov/2026:14:01:13 +0000]",
            ),
            (
                Common,
                r#"1.2.3.4 - - [25/Nov/2026:14:01:13 +0000] "GET / 200 5"#,
                "missing or unterminated \"request\"",
            ),
            (
                Common,
                r#"1.2.3.4 - - [25/Nov/2026:14:01:13 +0000] "GET /" OK 5"#,
                "status is not a number",
            ),
            (
                Combined,
                r#"1.2.3.4 - - [25/Nov/2026:14:01:13 +0000] "GET /" 200 5"#,
                "missing \"referrer\"",
            ),
        ] {
            assert_eq!(parse_json(format, line), Err(why.to_owned()), "{line}");
        }
    }
}
