//! Input formats (`--from`): each turns one line into a [`Record`] or says
//! why it cannot.
//!
//! Field names follow Vector's VRL functions (`parse_common_log`,
//! `parse_apache_log` with `format: "combined"`, `parse_syslog`,
//! `parse_logfmt`, `parse_klog`) so a pipeline moves between the two without
//! renaming; fields are emitted in the order they appear in the line. A `-`
//! field is absent. Timestamps are rewritten as RFC 3339 UTC with the line's
//! offset applied ([`crate::pipeline::time`]); `--keep-time` also keeps the original
//! text as `timestamp_raw`.
//!
//! The fixed formats are hand-written parsers over the line's bytes (they
//! must convert 500k-1M lines a second on one core); only `--from regex`
//! uses the regex engine. A parser never panics on any input: the property
//! tests in `adapter/src/pipeline.rs` and the fuzz targets in `adapter/fuzz` hold it to
//! that.

mod common_log;
mod json;
mod klog;
mod logfmt;
mod syslog;
mod writer;

use std::borrow::Cow;

use crate::pipeline::record::{Record, Value};
use crate::pipeline::time::Civil;

/// Why a line did not parse; becomes the `parse_error` field.
pub type ParseError = Cow<'static, str>;

/// The input formats `--from` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatName {
    /// Named captures of `--pattern`, in capture order.
    Regex,
    /// The writer's lines: `Wed Nov 25 14:01:13 UTC 2026 - Hello from writer`.
    Writer,
    /// NCSA/Apache common log.
    Common,
    /// Apache/NGINX combined log (common + referrer and agent).
    Combined,
    /// BSD syslog, `<34>Oct 11 22:14:15 host app[42]: msg`.
    Rfc3164,
    /// IETF syslog, `<165>1 2003-10-11T22:14:15.003Z host app 42 ID47 [sd] msg`.
    Rfc5424,
    /// `key=value key2="quoted value" flag`.
    Logfmt,
    /// One JSON object per line.
    Json,
    /// Kubernetes components: `I0505 17:59:40.692994   28133 file.go:123] msg`.
    Klog,
    /// json, writer, rfc5424, rfc3164, combined, common, klog, logfmt: the first that parses.
    Auto,
}

/// The order `--from auto` tries formats in: the strictest first, so a line
/// is never claimed by a looser format that also accepts it (every
/// combined line is also a common line with trailing text; almost anything
/// with an `=` is logfmt).
pub const AUTO_ORDER: [FormatName; 8] = [
    FormatName::Json,
    FormatName::Writer,
    FormatName::Rfc5424,
    FormatName::Rfc3164,
    FormatName::Combined,
    FormatName::Common,
    FormatName::Klog,
    FormatName::Logfmt,
];

/// What a parser needs besides the line.
#[derive(Clone, Debug)]
pub struct Options {
    /// `--year`: the year of RFC 3164 and klog timestamps, which have none.
    pub year: Option<i32>,
    /// The current UTC year and month, for the default year (see [`Options::year_for`]).
    pub now: (i32, u32),
    /// `--keep-time`: also keep the timestamp as written, as `timestamp_raw`.
    pub keep_time: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            year: None,
            now: current_year_month(),
            keep_time: false,
        }
    }
}

/// The current UTC year and month.
pub fn current_year_month() -> (i32, u32) {
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    (i32::from(now.year()), now.month() as u32)
}

impl Options {
    /// The year of a year-less timestamp in `month`: `--year` if given, else
    /// the current year, except that December lines read in January belong
    /// to last year (the rule VRL's `parse_syslog` and `parse_klog` use).
    pub fn year_for(&self, month: u32) -> i32 {
        match self.year {
            Some(year) => year,
            None if self.now.1 == 1 && month == 12 => self.now.0 - 1,
            None => self.now.0,
        }
    }

    /// Adds `timestamp` (UTC) and, with `--keep-time`, `timestamp_raw`.
    fn push_time<'a>(
        &self,
        record: &mut Record<'a>,
        raw: &'a str,
        civil: Civil,
        offset: i32,
    ) -> Result<(), ParseError> {
        let utc = civil
            .to_utc(offset)
            .map_err(|why| Cow::Owned(format!("bad timestamp {raw:?}: {why}")))?;
        record.push("timestamp", utc);
        if self.keep_time {
            record.push("timestamp_raw", raw);
        }
        Ok(())
    }
}

/// A configured input format.
#[derive(Clone, Debug)]
pub struct Parser {
    name: FormatName,
    pattern: Option<regex::Regex>,
    names: Vec<Option<String>>,
    options: Options,
}

impl Parser {
    /// A parser for `name`; `pattern` is required for (only) `regex`.
    pub fn new(
        name: FormatName,
        pattern: Option<regex::Regex>,
        options: Options,
    ) -> Result<Self, String> {
        match (name, &pattern) {
            (FormatName::Regex, None) => {
                return Err("--from regex needs --pattern".into());
            }
            (FormatName::Regex, Some(pattern))
                if pattern.capture_names().flatten().count() == 0 =>
            {
                return Err(format!(
                    "--pattern {:?} has no named capture group like (?<name>...): there would be no fields",
                    pattern.as_str()
                ));
            }
            _ => {}
        }
        let names = pattern
            .as_ref()
            .map(|pattern| {
                pattern
                    .capture_names()
                    .map(|name| name.map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            name,
            pattern,
            names,
            options,
        })
    }

    pub fn name(&self) -> FormatName {
        self.name
    }

    pub fn options_mut(&mut self) -> &mut Options {
        &mut self.options
    }

    /// Parses `line` into `record` (cleared first).
    pub fn parse<'a>(&self, line: &'a str, record: &mut Record<'a>) -> Result<(), ParseError> {
        record.clear();
        let result = match self.name {
            FormatName::Auto => self.auto(line, record),
            name => self.parse_as(name, line, record, false),
        };
        if result.is_err() {
            record.clear();
        }
        result
    }

    fn parse_as<'a>(
        &self,
        name: FormatName,
        line: &'a str,
        record: &mut Record<'a>,
        strict_logfmt: bool,
    ) -> Result<(), ParseError> {
        let options = &self.options;
        match name {
            FormatName::Regex => self.regex(line, record),
            FormatName::Writer => writer::parse(line, options, record),
            FormatName::Common => common_log::parse(line, false, options, record),
            FormatName::Combined => common_log::parse(line, true, options, record),
            FormatName::Rfc3164 => syslog::parse_3164(line, options, record),
            FormatName::Rfc5424 => syslog::parse_5424(line, options, record),
            FormatName::Logfmt => logfmt::parse(line, strict_logfmt, record),
            FormatName::Json => json::parse(line, record),
            FormatName::Klog => klog::parse(line, options, record),
            FormatName::Auto => self.auto(line, record),
        }
    }

    fn auto<'a>(&self, line: &'a str, record: &mut Record<'a>) -> Result<(), ParseError> {
        for name in AUTO_ORDER {
            record.clear();
            if self.parse_as(name, line, record, true).is_ok() {
                return Ok(());
            }
        }
        Err(Cow::Borrowed(
            "no format matched (tried json, writer, rfc5424, rfc3164, combined, common, klog, logfmt)",
        ))
    }

    fn regex<'a>(&self, line: &'a str, record: &mut Record<'a>) -> Result<(), ParseError> {
        let Some(pattern) = &self.pattern else {
            return Err(Cow::Borrowed("no pattern"));
        };
        let captures = pattern
            .captures(line)
            .ok_or(Cow::Borrowed("line does not match --pattern"))?;
        for (index, name) in self.names.iter().enumerate() {
            if let (Some(name), Some(found)) = (name, captures.get(index)) {
                record.set(Cow::Owned(name.clone()), Value::from(found.as_str()));
            }
        }
        Ok(())
    }

    /// Whether `line` is a JSON object, checked without building it: the
    /// `--from json --to json` fast path writes such lines through as they are.
    pub fn is_json_object(line: &str) -> bool {
        json::is_object(line)
    }
}

/// Skips ASCII spaces and tabs from `*at`; returns how many.
fn skip_blanks(bytes: &[u8], at: &mut usize) -> usize {
    let start = *at;
    while matches!(bytes.get(*at), Some(b' ' | b'\t')) {
        *at += 1;
    }
    *at - start
}

/// The run of non-blank bytes at `*at` (may be empty), advancing past it.
fn token<'a>(line: &'a str, at: &mut usize) -> &'a str {
    let bytes = line.as_bytes();
    let start = *at;
    while let Some(&byte) = bytes.get(*at) {
        if byte == b' ' || byte == b'\t' {
            break;
        }
        *at += 1;
    }
    // Both ends sit next to ASCII blanks or the line's ends: char boundaries.
    line.get(start..*at).unwrap_or_default()
}

/// Parses a decimal integer field (`status`, `size`, `procid`...).
fn integer(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Parses `line` as `name` (year 2026, read in November) and renders the
    /// record as compact JSON, the way the table tests compare it.
    pub fn parse_json(name: FormatName, line: &str) -> Result<String, String> {
        parse_json_with(
            name,
            line,
            Options {
                year: None,
                now: (2026, 11),
                keep_time: false,
            },
        )
    }

    pub fn parse_json_with(
        name: FormatName,
        line: &str,
        options: Options,
    ) -> Result<String, String> {
        let parser = Parser::new(name, None, options).map_err(|error| error.to_string())?;
        let mut record = Record::default();
        parser
            .parse(line, &mut record)
            .map_err(|error| error.into_owned())?;
        let mut out = Vec::new();
        crate::pipeline::encode::write_json(&record, &mut out);
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn december_lines_read_in_january_are_last_year() {
        let january = Options {
            year: None,
            now: (2027, 1),
            keep_time: false,
        };
        assert_eq!(january.year_for(12), 2026);
        assert_eq!(january.year_for(1), 2027);
        let fixed = Options {
            year: Some(2020),
            now: (2027, 1),
            keep_time: false,
        };
        assert_eq!(fixed.year_for(12), 2020);
    }

    #[test]
    fn auto_picks_the_first_format_that_parses() {
        let cases = [
            (
                r#"{"level":"info","msg":"hi"}"#,
                r#"{"level":"info","msg":"hi"}"#,
            ),
            (
                "<34>1 2026-11-25T14:01:13Z host app 7 - - hi",
                r#"{"facility":"auth","severity":"crit","version":1,"timestamp":"2026-11-25T14:01:13Z","hostname":"host","appname":"app","procid":7,"message":"hi"}"#,
            ),
            (
                "<13>Nov 25 14:01:13 host app: hi",
                r#"{"facility":"user","severity":"notice","timestamp":"2026-11-25T14:01:13Z","hostname":"host","appname":"app","message":"hi"}"#,
            ),
            (
                r#"::1 - - [25/Nov/2026:14:01:13 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8.5.0""#,
                r#"{"host":"::1","timestamp":"2026-11-25T14:01:13Z","message":"GET / HTTP/1.1","method":"GET","path":"/","protocol":"HTTP/1.1","status":200,"size":5,"agent":"curl/8.5.0"}"#,
            ),
            (
                r#"::1 - - [25/Nov/2026:14:01:13 +0000] "GET / HTTP/1.1" 200 5"#,
                r#"{"host":"::1","timestamp":"2026-11-25T14:01:13Z","message":"GET / HTTP/1.1","method":"GET","path":"/","protocol":"HTTP/1.1","status":200,"size":5}"#,
            ),
            (
                "I1125 14:01:13.000001 7 main.go:1] hi",
                r#"{"level":"info","timestamp":"2026-11-25T14:01:13.000001Z","id":7,"file":"main.go","line":1,"message":"hi"}"#,
            ),
            ("level=info msg=hi", r#"{"level":"info","msg":"hi"}"#),
            (
                "Wed Nov 25 14:01:13 UTC 2026 - Hello from writer",
                r#"{"timestamp":"2026-11-25T14:01:13Z","message":"Hello from writer"}"#,
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(
                parse_json(FormatName::Auto, line).as_deref(),
                Ok(expected),
                "{line}"
            );
        }
        assert!(parse_json(FormatName::Auto, "just some words").is_err());
    }

    #[test]
    fn regex_captures_become_fields_in_capture_order() {
        let pattern = regex::Regex::new(r"^(?<level>\w+) (?P<user>\w+)?: (?<msg>.*)$").unwrap();
        let parser = Parser::new(FormatName::Regex, Some(pattern), Options::default()).unwrap();
        let mut record = Record::default();
        parser.parse("WARN bob: disk full", &mut record).unwrap();
        let mut out = Vec::new();
        crate::pipeline::encode::write_json(&record, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"level":"WARN","user":"bob","msg":"disk full"}"#
        );
        parser
            .parse("WARN : optional group absent", &mut record)
            .unwrap();
        assert_eq!(record.get("user"), None);
        assert_eq!(
            parser.parse("nope", &mut record).unwrap_err(),
            "line does not match --pattern"
        );
    }

    #[test]
    fn a_pattern_without_named_groups_is_refused() {
        let pattern = regex::Regex::new(r"^(\w+)").unwrap();
        let error = Parser::new(FormatName::Regex, Some(pattern), Options::default()).unwrap_err();
        assert!(error.contains("no named capture group"), "{error}");
    }
}
