//! The writer's own lines (`--from writer`): `<date> - <message>`, where the
//! date is the writer's default `Wed Nov 25 14:01:13 UTC 2026` (busybox/GNU
//! `date`, day padded with a space) or its `--time-format rfc3339`
//! `2026-11-25T14:01:13.123Z`. Fields: timestamp (RFC 3339 UTC), message.
//!
//! The zone abbreviation of the `date` layout must be UTC or GMT (what a
//! container without a zone database prints); any other abbreviation is
//! ambiguous (CST is three different zones) and refused.

use std::borrow::Cow;

use super::{Options, ParseError, skip_blanks};
use crate::pipeline::record::Record;
use crate::pipeline::time::{self, Civil};

const WEEKDAYS: [&[u8; 3]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];

fn date_layout(bytes: &[u8], at: &mut usize) -> Result<(Civil, i32), ParseError> {
    let bad = || Cow::Borrowed("date is not like 'Wed Nov 25 14:01:13 UTC 2026'");
    let weekday = bytes.get(*at..*at + 3).ok_or_else(bad)?;
    if !WEEKDAYS.iter().any(|day| day.eq_ignore_ascii_case(weekday)) {
        return Err(bad());
    }
    *at += 3;
    time::expect(bytes, at, b' ').ok_or_else(bad)?;
    let month = bytes
        .get(*at..*at + 3)
        .and_then(time::month_number)
        .ok_or_else(bad)?;
    *at += 3;
    time::expect(bytes, at, b' ').ok_or_else(bad)?;
    if bytes.get(*at) == Some(&b' ') {
        *at += 1;
    }
    let day = match bytes.get(*at + 1) {
        Some(byte) if byte.is_ascii_digit() => time::digits(bytes, at, 2),
        _ => time::digits(bytes, at, 1),
    }
    .ok_or_else(bad)?;
    time::expect(bytes, at, b' ').ok_or_else(bad)?;
    let (hour, minute, second) = time::clock(bytes, at).ok_or_else(bad)?;
    time::expect(bytes, at, b' ').ok_or_else(bad)?;
    let zone_start = *at;
    while bytes.get(*at).is_some_and(u8::is_ascii_alphabetic) {
        *at += 1;
    }
    let zone = &bytes[zone_start..*at];
    if !(zone.eq_ignore_ascii_case(b"UTC") || zone.eq_ignore_ascii_case(b"GMT")) {
        return Err(Cow::Owned(format!(
            "time zone {:?} is ambiguous: only UTC and GMT are read",
            String::from_utf8_lossy(zone)
        )));
    }
    time::expect(bytes, at, b' ').ok_or_else(bad)?;
    let year = time::digits(bytes, at, 4).ok_or_else(bad)? as i32;
    Ok((
        Civil {
            year,
            month,
            day,
            hour,
            minute,
            second,
            nanos: 0,
        },
        0,
    ))
}

pub fn parse<'a>(
    line: &'a str,
    options: &Options,
    record: &mut Record<'a>,
) -> Result<(), ParseError> {
    let bytes = line.as_bytes();
    let mut at = 0;
    skip_blanks(bytes, &mut at);
    let start = at;
    let (civil, offset) = if bytes.get(at).is_some_and(u8::is_ascii_digit) {
        time::rfc3339(bytes, &mut at).ok_or(Cow::Borrowed("bad RFC 3339 date"))?
    } else {
        date_layout(bytes, &mut at)?
    };
    let raw = line.get(start..at).unwrap_or_default();
    let message = line
        .get(at..)
        .and_then(|rest| {
            rest.strip_prefix(" - ")
                .or_else(|| (rest == " -").then_some(""))
        })
        .ok_or(Cow::Borrowed("date is not followed by ' - '"))?;
    options.push_time(record, raw, civil, offset)?;
    record.push("message", message);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::pipeline::formats::FormatName::Writer;
    use crate::pipeline::formats::tests::parse_json;

    #[test]
    fn writer_lines() {
        let cases = [
            (
                "Wed Nov 25 14:01:13 UTC 2026 - Hello from writer",
                r#"{"timestamp":"2026-11-25T14:01:13Z","message":"Hello from writer"}"#,
            ),
            (
                "Sat Dec  5 09:08:07 UTC 2026 - Application log entry",
                r#"{"timestamp":"2026-12-05T09:08:07Z","message":"Application log entry"}"#,
            ),
            (
                "Thu Feb 29 23:59:59 GMT 2024 - a - dash - inside",
                r#"{"timestamp":"2024-02-29T23:59:59Z","message":"a - dash - inside"}"#,
            ),
            (
                "2026-11-25T14:01:13.123Z - Error log entry",
                r#"{"timestamp":"2026-11-25T14:01:13.123Z","message":"Error log entry"}"#,
            ),
            (
                "Wed Nov 25 14:01:13 UTC 2026 -",
                r#"{"timestamp":"2026-11-25T14:01:13Z","message":""}"#,
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_json(Writer, line).as_deref(), Ok(expected), "{line}");
        }
    }

    #[test]
    fn writer_errors() {
        for (line, why) in [
            (
                "Hello from writer",
                "date is not like 'Wed Nov 25 14:01:13 UTC 2026'",
            ),
            (
                "Wed Nov 25 14:01:13 CET 2026 - x",
                "time zone \"CET\" is ambiguous: only UTC and GMT are read",
            ),
            (
                "Wed Nov 25 14:01:13 UTC 2026 Hello",
                "date is not followed by ' - '",
            ),
            (
                "Thu Feb 29 23:59:59 UTC 2026 - x",
                "bad timestamp \"Thu Feb 29 23:59:59 UTC 2026\": day out of range for the month",
            ),
        ] {
            assert_eq!(parse_json(Writer, line), Err(why.to_owned()), "{line}");
        }
    }
}
