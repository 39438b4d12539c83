//! Syslog lines, RFC 5424 and RFC 3164 (BSD), with VRL `parse_syslog`'s
//! field names: facility, severity (names from the PRI), version (5424),
//! timestamp, hostname, appname, procid (an integer when numeric), msgid,
//! one object per structured-data element keyed by its SD-ID, message.
//!
//! RFC 5424: `<PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [MSG]`,
//! where any header field may be the NILVALUE `-` (then absent) and SD is `-`
//! or `[id k="v" ...]...` with `\"`, `\\` and `\]` escapes. A UTF-8 BOM
//! before MSG is dropped.
//!
//! RFC 3164: `[<PRI>]Mmm dd hh:mm:ss [HOSTNAME] TAG[PID]: MSG`. The
//! timestamp has no year (`--year`, see [`Options::year_for`]) and no zone:
//! it is read as UTC, the zone of a container without a zone database.
//! rsyslog's RFC 3339 timestamp in the same place is accepted too. As in
//! VRL, the hostname is left out when the first word already is the tag
//! (`haproxy[73411]: ...`).

use std::borrow::Cow;

use super::{Options, ParseError, integer, skip_blanks, token};
use crate::pipeline::record::{Record, Value};
use crate::pipeline::time::{self, Civil};

const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clockd", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

fn error(why: &'static str) -> ParseError {
    Cow::Borrowed(why)
}

/// `<PRI>` at the start: facility and severity, or `None` when absent.
fn pri(bytes: &[u8], at: &mut usize) -> Result<Option<u8>, ParseError> {
    if bytes.get(*at) != Some(&b'<') {
        return Ok(None);
    }
    let mut end = *at + 1;
    let mut value = 0u32;
    while let Some(&byte) = bytes.get(end) {
        if !byte.is_ascii_digit() || end - *at > 3 {
            break;
        }
        value = value * 10 + u32::from(byte - b'0');
        end += 1;
    }
    if end == *at + 1 || bytes.get(end) != Some(&b'>') || value > 191 {
        return Err(error("bad <PRI>: expected <0> to <191>"));
    }
    *at = end + 1;
    Ok(Some(value as u8))
}

fn push_pri(record: &mut Record<'_>, pri: Option<u8>) {
    if let Some(pri) = pri {
        record.push("facility", FACILITIES[usize::from(pri / 8)]);
        record.push("severity", SEVERITIES[usize::from(pri % 8)]);
    }
}

/// A header field that may be the NILVALUE.
fn header<'a>(line: &'a str, at: &mut usize) -> Result<Option<&'a str>, ParseError> {
    let value = token(line, at);
    if value.is_empty() {
        return Err(error("RFC 5424 header ends early"));
    }
    if skip_blanks(line.as_bytes(), at) == 0 && *at != line.len() {
        return Err(error("RFC 5424 header ends early"));
    }
    Ok((value != "-").then_some(value))
}

fn push_procid<'a>(record: &mut Record<'a>, procid: &'a str) {
    match integer(procid) {
        Some(pid) => record.push("procid", Value::Int(pid)),
        None => record.push("procid", procid),
    }
}

pub fn parse_5424<'a>(
    line: &'a str,
    options: &Options,
    record: &mut Record<'a>,
) -> Result<(), ParseError> {
    let bytes = line.as_bytes();
    let mut at = 0;
    let pri = pri(bytes, &mut at)?.ok_or(error("RFC 5424 line must start with <PRI>"))?;
    let version_start = at;
    while bytes.get(at).is_some_and(u8::is_ascii_digit) {
        at += 1;
    }
    let version = line
        .get(version_start..at)
        .and_then(integer)
        .filter(|version| (1..=99).contains(version))
        .ok_or(error("RFC 5424 needs a VERSION after <PRI>"))?;
    if skip_blanks(bytes, &mut at) == 0 {
        return Err(error("RFC 5424 needs a VERSION after <PRI>"));
    }
    // RFC 5424 section 6.2.2 defines VERSION 1 only; another number is
    // another protocol whose fields we would only guess at.
    if version != 1 {
        return Err(Cow::Owned(format!(
            "RFC 5424 VERSION must be 1, not {version}"
        )));
    }
    push_pri(record, Some(pri));
    record.push("version", Value::Int(version));
    let timestamp_start = at;
    if bytes.get(at) == Some(&b'-') {
        header(line, &mut at)?;
    } else {
        let (civil, offset) =
            time::rfc3339(bytes, &mut at).ok_or(error("bad RFC 5424 timestamp"))?;
        let raw = line.get(timestamp_start..at).unwrap_or_default();
        options.push_time(record, raw, civil, offset)?;
        if skip_blanks(bytes, &mut at) == 0 {
            return Err(error("bad RFC 5424 timestamp"));
        }
    }
    if let Some(hostname) = header(line, &mut at)? {
        record.push("hostname", hostname);
    }
    if let Some(appname) = header(line, &mut at)? {
        record.push("appname", appname);
    }
    if let Some(procid) = header(line, &mut at)? {
        push_procid(record, procid);
    }
    if let Some(msgid) = header(line, &mut at)? {
        record.push("msgid", msgid);
    }
    match bytes.get(at) {
        Some(b'-') => at += 1,
        Some(b'[') => structured_data(line, &mut at, record)?,
        _ => return Err(error("RFC 5424 needs STRUCTURED-DATA (- or [...])")),
    }
    let message = match bytes.get(at) {
        None => "",
        Some(b' ') => line.get(at + 1..).unwrap_or_default(),
        Some(_) => return Err(error("unexpected text after STRUCTURED-DATA")),
    };
    record.push(
        "message",
        message.strip_prefix('\u{feff}').unwrap_or(message),
    );
    Ok(())
}

/// `[id k="v" ...][id2]...`: one `Value::Map` per element, keyed by SD-ID.
fn structured_data<'a>(
    line: &'a str,
    at: &mut usize,
    record: &mut Record<'a>,
) -> Result<(), ParseError> {
    let bytes = line.as_bytes();
    const BAD: &str = "bad STRUCTURED-DATA";
    while bytes.get(*at) == Some(&b'[') {
        *at += 1;
        let id_start = *at;
        while let Some(&byte) = bytes.get(*at) {
            if matches!(byte, b' ' | b']' | b'=' | b'"') {
                break;
            }
            *at += 1;
        }
        let id = line.get(id_start..*at).unwrap_or_default();
        if id.is_empty() {
            return Err(error(BAD));
        }
        let mut params = Vec::new();
        loop {
            skip_blanks(bytes, at);
            match bytes.get(*at) {
                Some(b']') => {
                    *at += 1;
                    break;
                }
                None => return Err(error(BAD)),
                Some(_) => {}
            }
            let name_start = *at;
            while let Some(&byte) = bytes.get(*at) {
                if matches!(byte, b' ' | b']' | b'=' | b'"') {
                    break;
                }
                *at += 1;
            }
            let name = line.get(name_start..*at).unwrap_or_default();
            if name.is_empty() || bytes.get(*at) != Some(&b'=') {
                return Err(error(BAD));
            }
            *at += 1;
            // VRL accepts `eventSource= "Application"`: blanks before the quote.
            skip_blanks(bytes, at);
            if bytes.get(*at) != Some(&b'"') {
                return Err(error(BAD));
            }
            *at += 1;
            let value = sd_value(line, at).ok_or(error(BAD))?;
            match params
                .iter_mut()
                .find(|(key, _): &&mut (Cow<'a, str>, Cow<'a, str>)| key == name)
            {
                Some(slot) => slot.1 = value,
                None => params.push((Cow::Borrowed(name), value)),
            }
        }
        record.set(Cow::Borrowed(id), Value::Map(params));
    }
    Ok(())
}

/// A PARAM-VALUE up to its closing quote, unescaping `\"`, `\\` and `\]`
/// (any other backslash is kept, as RFC 5424 says).
fn sd_value<'a>(line: &'a str, at: &mut usize) -> Option<Cow<'a, str>> {
    let bytes = line.as_bytes();
    let start = *at;
    let mut owned: Option<String> = None;
    let mut run_start = start;
    loop {
        match bytes.get(*at)? {
            b'"' => {
                let tail = line.get(run_start..*at)?;
                *at += 1;
                return Some(match owned {
                    Some(mut text) => {
                        text.push_str(tail);
                        Cow::Owned(text)
                    }
                    None => Cow::Borrowed(tail),
                });
            }
            b'\\' if matches!(bytes.get(*at + 1), Some(b'"' | b'\\' | b']')) => {
                let text = owned.get_or_insert_with(String::new);
                text.push_str(line.get(run_start..*at)?);
                *at += 1;
                run_start = *at;
                *at += 1;
            }
            _ => *at += 1,
        }
    }
}

/// `Mmm dd hh:mm:ss` (day space- or zero-padded, or not padded).
fn bsd_time(bytes: &[u8], at: &mut usize) -> Option<(u32, u32, (u32, u32, u32))> {
    let month = time::month_number(bytes.get(*at..*at + 3)?)?;
    *at += 3;
    if skip_blanks(bytes, at) == 0 {
        return None;
    }
    let day = match (bytes.get(*at), bytes.get(*at + 1)) {
        (Some(tens), Some(units)) if tens.is_ascii_digit() && units.is_ascii_digit() => {
            time::digits(bytes, at, 2)?
        }
        _ => time::digits(bytes, at, 1)?,
    };
    if skip_blanks(bytes, at) != 1 {
        return None;
    }
    let clock = time::clock(bytes, at)?;
    Some((month, day, clock))
}

/// Whether `word` is a tag (`app:`, `app[42]:`, `app[42]`) rather than a hostname.
fn is_tag(word: &str) -> bool {
    word.ends_with(':') || word.ends_with(']')
}

pub fn parse_3164<'a>(
    line: &'a str,
    options: &Options,
    record: &mut Record<'a>,
) -> Result<(), ParseError> {
    let bytes = line.as_bytes();
    let mut at = 0;
    let pri = pri(bytes, &mut at)?;
    let timestamp_start = at;
    let (civil, offset) = if bytes.get(at).is_some_and(u8::is_ascii_digit) {
        time::rfc3339(bytes, &mut at).ok_or(error("bad RFC 3164 timestamp"))?
    } else {
        let (month, day, (hour, minute, second)) = bsd_time(bytes, &mut at)
            .ok_or(error("RFC 3164 timestamp is not like 'Nov 25 14:01:13'"))?;
        let nanos = time::fraction(bytes, &mut at);
        let year = options.year_for(month);
        (
            Civil {
                year,
                month,
                day,
                hour,
                minute,
                second,
                nanos,
            },
            0,
        )
    };
    let raw = line.get(timestamp_start..at).unwrap_or_default();
    push_pri(record, pri);
    options.push_time(record, raw, civil, offset)?;
    if at != bytes.len() && skip_blanks(bytes, &mut at) == 0 {
        return Err(error("RFC 3164 timestamp is not followed by a space"));
    }
    let first = token(line, &mut at);
    let tag = if first.is_empty() || is_tag(first) {
        first
    } else {
        record.push("hostname", first);
        skip_blanks(bytes, &mut at);
        let second_start = at;
        let second = token(line, &mut at);
        if second.is_empty() {
            at = second_start;
        }
        second
    };
    if !tag.is_empty() {
        let name = tag.strip_suffix(':').unwrap_or(tag);
        match name.strip_suffix(']').and_then(|name| name.split_once('[')) {
            Some((appname, procid)) => {
                if !appname.is_empty() {
                    record.push("appname", appname);
                }
                if !procid.is_empty() {
                    push_procid(record, procid);
                }
            }
            None if !name.is_empty() => record.push("appname", name),
            None => {}
        }
        skip_blanks(bytes, &mut at);
    }
    record.push("message", line.get(at..).unwrap_or_default());
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::pipeline::formats::FormatName::{Rfc3164, Rfc5424};
    use crate::pipeline::formats::Options;
    use crate::pipeline::formats::tests::{parse_json, parse_json_with};

    #[test]
    fn rfc5424_lines() {
        let cases = [
            (
                r#"<13>1 2020-03-13T20:45:38.119Z dynamicwireless.name non 2426 ID931 [exampleSDID@32473 iut="3" eventSource= "Application" eventID="1011"] Try to override the THX port, maybe it will reboot the neural interface!"#,
                r#"{"facility":"user","severity":"notice","version":1,"timestamp":"2020-03-13T20:45:38.119Z","hostname":"dynamicwireless.name","appname":"non","procid":2426,"msgid":"ID931","exampleSDID@32473":{"iut":"3","eventSource":"Application","eventID":"1011"},"message":"Try to override the THX port, maybe it will reboot the neural interface!"}"#,
            ),
            // NILVALUE everywhere: only PRI, version and an empty message.
            (
                "<165>1 - - - - - -",
                r#"{"facility":"local4","severity":"notice","version":1,"message":""}"#,
            ),
            // No structured data, a BOM before the message, offset over the year boundary.
            (
                "<34>1 2026-01-01T01:00:00.000003+02:00 mymachine su - ID47 - \u{feff}'su root' failed",
                r#"{"facility":"auth","severity":"crit","version":1,"timestamp":"2025-12-31T23:00:00.000003Z","hostname":"mymachine","appname":"su","msgid":"ID47","message":"'su root' failed"}"#,
            ),
            // Several elements, an empty one, escapes, a non-numeric procid.
            (
                r#"<165>1 2003-10-11T22:14:15.003Z host evntslog worker-1 - [a@1 k="hello \"test\" a\\b [bye\]"][empty] msg"#,
                r#"{"facility":"local4","severity":"notice","version":1,"timestamp":"2003-10-11T22:14:15.003Z","hostname":"host","appname":"evntslog","procid":"worker-1","a@1":{"k":"hello \"test\" a\\b [bye]"},"empty":{},"message":"msg"}"#,
            ),
            // Structured data and no message.
            (
                r#"<0>1 2024-02-29T23:59:59Z h a 1 m [x y="z"]"#,
                r#"{"facility":"kern","severity":"emerg","version":1,"timestamp":"2024-02-29T23:59:59Z","hostname":"h","appname":"a","procid":1,"msgid":"m","x":{"y":"z"},"message":""}"#,
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_json(Rfc5424, line).as_deref(), Ok(expected), "{line}");
        }
    }

    #[test]
    fn rfc5424_errors() {
        for (line, why) in [
            (
                "1 2020-03-13T20:45:38Z h a 1 m - x",
                "RFC 5424 line must start with <PRI>",
            ),
            ("<192>1 - - - - - -", "bad <PRI>: expected <0> to <191>"),
            (
                "<13>Nov 25 14:01:13 host app: hi",
                "RFC 5424 needs a VERSION after <PRI>",
            ),
            (
                "<13>1 2020-02-30T00:00:00Z h a 1 m - x",
                "bad timestamp \"2020-02-30T00:00:00Z\": day out of range for the month",
            ),
            ("<13>1 - h a 1 m [unterminated", "bad STRUCTURED-DATA"),
            ("<13>1 - h a", "RFC 5424 header ends early"),
            (
                "<13>2 2024-06-01T12:00:00Z h a 1 - - x",
                "RFC 5424 VERSION must be 1, not 2",
            ),
            ("<13>10 - - - - - - x", "RFC 5424 VERSION must be 1, not 10"),
        ] {
            assert_eq!(parse_json(Rfc5424, line), Err(why.to_owned()), "{line}");
        }
    }

    #[test]
    fn rfc3164_lines() {
        let cases = [
            (
                "<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed for lonvick on /dev/pts/8",
                r#"{"facility":"auth","severity":"crit","timestamp":"2026-10-11T22:14:15Z","hostname":"mymachine","appname":"su","procid":230,"message":"'su root' failed for lonvick on /dev/pts/8"}"#,
            ),
            // No hostname: the first word is the tag (VRL's haproxy example).
            (
                "<133>Jun 13 16:33:35 haproxy[73411]: Proxy sticky-servers started.",
                r#"{"facility":"local0","severity":"notice","timestamp":"2026-06-13T16:33:35Z","appname":"haproxy","procid":73411,"message":"Proxy sticky-servers started."}"#,
            ),
            // No PRI, space-padded day.
            (
                "Feb  5 01:02:03 host cron: job done",
                r#"{"timestamp":"2026-02-05T01:02:03Z","hostname":"host","appname":"cron","message":"job done"}"#,
            ),
            // rsyslog's RFC 3339 timestamp with an offset.
            (
                "<30>2026-11-25T00:30:00+01:00 node1 kubelet[99]: ready",
                r#"{"facility":"daemon","severity":"info","timestamp":"2026-11-24T23:30:00Z","hostname":"node1","appname":"kubelet","procid":99,"message":"ready"}"#,
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_json(Rfc3164, line).as_deref(), Ok(expected), "{line}");
        }
    }

    #[test]
    fn rfc3164_year_comes_from_the_flag_and_leap_days_need_a_leap_year() {
        let in_2024 = Options {
            year: Some(2024),
            now: (2026, 11),
            keep_time: true,
        };
        assert_eq!(
            parse_json_with(Rfc3164, "<13>Feb 29 12:00:00 h app: leap", in_2024).as_deref(),
            Ok(
                r#"{"facility":"user","severity":"notice","timestamp":"2024-02-29T12:00:00Z","timestamp_raw":"Feb 29 12:00:00","hostname":"h","appname":"app","message":"leap"}"#
            )
        );
        let in_2026 = Options {
            year: Some(2026),
            now: (2026, 11),
            keep_time: false,
        };
        assert!(parse_json_with(Rfc3164, "<13>Feb 29 12:00:00 h app: leap", in_2026).is_err());
        // December read in January belongs to last year.
        let january = Options {
            year: None,
            now: (2027, 1),
            keep_time: false,
        };
        assert_eq!(
            parse_json_with(Rfc3164, "<13>Dec 31 23:59:59 h app: late", january).as_deref(),
            Ok(
                r#"{"facility":"user","severity":"notice","timestamp":"2026-12-31T23:59:59Z","hostname":"h","appname":"app","message":"late"}"#
            )
        );
    }

    #[test]
    fn rfc3164_errors() {
        for line in [
            "",
            "hello world",
            "<13>Foo 11 22:14:15 h a: m",
            "<13>Oct 11 22:14 h a: m",
        ] {
            assert!(parse_json(Rfc3164, line).is_err(), "{line}");
        }
    }
}
