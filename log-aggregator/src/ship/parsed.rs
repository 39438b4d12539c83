//! What a `--parse` record (one JSON object per line, as stream mode
//! renders it) tells a sink beyond its text: the event's severity and time
//! and the file it came from, so syslog's PRI and TIMESTAMP and OTLP's
//! `severity_number` and `time_unix_nano` are the application's, not the
//! shipper's.

use serde_json::{Map, Value};

/// The fields a sink uses, each absent when the record lacks it or it does
/// not read as one (the record is shipped all the same).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// OpenTelemetry SeverityNumber (1..=24).
    pub severity: Option<u8>,
    /// Nanoseconds since the Unix epoch.
    pub time_unix_nano: Option<u64>,
    /// The followed path (`file`).
    pub file: Option<String>,
}

/// Field names tried in order: the parsers' own (`severity` from syslog,
/// `level` from klog, logfmt and most JSON loggers, `timestamp` from every
/// format with a time), then common JSON loggers' (`lvl`, `time`, `ts`).
const SEVERITY_FIELDS: [&str; 3] = ["severity", "level", "lvl"];
const TIME_FIELDS: [&str; 3] = ["timestamp", "time", "ts"];

pub fn fields(line: &[u8]) -> Parsed {
    let Ok(record) = serde_json::from_slice::<Map<String, Value>>(line) else {
        return Parsed::default();
    };
    let text = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| record.get(*name).and_then(Value::as_str).map(str::to_owned))
    };
    Parsed {
        severity: text(&SEVERITY_FIELDS).and_then(|level| severity_number(&level)),
        time_unix_nano: TIME_FIELDS.iter().find_map(|name| {
            let stamp: jiff::Timestamp = record.get(*name)?.as_str()?.parse().ok()?;
            u64::try_from(stamp.as_nanosecond()).ok()
        }),
        file: record
            .get("file")
            .and_then(Value::as_str)
            .map(str::to_owned),
    }
}

/// The OpenTelemetry SeverityNumber of a level name as loggers and syslog
/// write them (case-insensitive); the lowest of each range (INFO = 9...),
/// syslog's notice one above info, its crit, alert and emerg in FATAL's.
pub fn severity_number(level: &str) -> Option<u8> {
    Some(match level.to_ascii_lowercase().as_str() {
        "trace" => 1,
        "debug" | "dbug" => 5,
        "info" | "informational" | "information" => 9,
        "notice" => 10,
        "warn" | "warning" => 13,
        "error" | "err" | "eror" => 17,
        "fatal" | "crit" | "critical" => 21,
        "alert" => 22,
        "emerg" | "emergency" | "panic" => 23,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_time_and_file_come_from_the_parsers_fields() {
        let parsed = fields(
            br#"{"level":"warning","timestamp":"2026-05-05T17:59:40.692994Z","file":"/l/a.log","message":"m"}"#,
        );
        assert_eq!(parsed.severity, Some(13));
        assert_eq!(parsed.time_unix_nano, Some(1_778_003_980_692_994_000));
        assert_eq!(parsed.file.as_deref(), Some("/l/a.log"));
        let syslog = fields(br#"{"severity":"crit","timestamp":"2026-11-25T14:01:13Z"}"#);
        assert_eq!(syslog.severity, Some(21));
        assert_eq!(syslog.time_unix_nano, Some(1_795_615_273_000_000_000));
    }

    #[test]
    fn what_does_not_read_as_a_level_or_a_time_is_left_out() {
        assert_eq!(
            fields(br#"{"level":"chatty","time":"yesterday"}"#),
            Parsed::default()
        );
        assert_eq!(fields(b"not json"), Parsed::default());
        assert_eq!(fields(br#"{"level":3}"#), Parsed::default());
    }
}
