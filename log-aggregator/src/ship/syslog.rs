//! RFC 5424 messages and the two TCP transports that carry them: RFC 6587
//! octet counting (plain TCP syslog, no acknowledgement) and the frames
//! of RELP (rsyslog's Reliable Event Logging Protocol, one `rsp 200` per
//! message).
//!
//! A message is `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID - SD MSG`
//! (<https://www.rfc-editor.org/rfc/rfc5424#section-6>): MSGID is the nil
//! value, STRUCTURED-DATA one element from the configuration (`[id k="v"]`,
//! values escaped per §6.3.3) or nil, MSG is the rendered line as bytes
//! (no BOM: the bytes are passed through, not asserted to be UTF-8).
//! Header fields are printable US-ASCII without spaces, cut at the RFC's
//! lengths; an empty one is `-`. A record's severity and time, when a
//! parser gave them, replace the configured severity and the batch's time.

use std::io::Write;

use super::Record;

/// The header fields of every message, from flags and environment
/// (Downward API: `HOSTNAME`, a pod name...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogFields {
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    /// 0..=23 (1 = user-level).
    pub facility: u8,
    /// 0..=7 (6 = informational).
    pub severity: u8,
    /// The STRUCTURED-DATA element, when its SD-ID is set.
    pub structured_data: Option<SdElement>,
}

/// One SD-ELEMENT: `[SD-ID PARAM-NAME="value" ...]`. Names are checked
/// by [`sd_name`] when the configuration is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdElement {
    pub id: String,
    pub params: Vec<(String, String)>,
}

/// SD-IDs registered with IANA (RFC 5424 §7), usable without `@`.
const IANA_SD_IDS: [&str; 3] = ["timeQuality", "origin", "meta"];

/// Checks an SD-NAME (an SD-ID or PARAM-NAME, RFC 5424 §6.3.2/§6.3.3):
/// 1 to 32 printable US-ASCII characters other than `=`, space, `]` and `"`.
pub fn sd_name(name: &str) -> Result<(), String> {
    let bad = name
        .bytes()
        .find(|byte| !(33..=126).contains(byte) || b"= ]\"".contains(byte));
    match bad {
        _ if name.is_empty() || name.len() > 32 => Err(format!(
            "{name:?}: a structured-data name has 1 to 32 characters (RFC 5424 §6.3.2)"
        )),
        Some(byte) => Err(format!(
            "{name:?}: {:?} is not allowed in a structured-data name (RFC 5424 §6.3.2: \
             printable ASCII except '=', ' ', ']' and '\"')",
            char::from(byte)
        )),
        None => Ok(()),
    }
}

/// Checks an SD-ID: an SD-NAME, and either registered with IANA or
/// `name@ENTERPRISE-NUMBER` (RFC 5424 §7.2.2), e.g. `k8s@32473`.
pub fn sd_id(id: &str) -> Result<(), String> {
    sd_name(id)?;
    let private = id.split_once('@').is_some_and(|(name, number)| {
        !name.is_empty()
            && !number.is_empty()
            && number
                .bytes()
                .all(|byte| byte.is_ascii_digit() || byte == b'.')
    });
    if private || IANA_SD_IDS.contains(&id) {
        Ok(())
    } else {
        Err(format!(
            "{id:?}: an SD-ID is NAME@ENTERPRISE-NUMBER (RFC 5424 §7.2.2, e.g. k8s@32473) \
             unless registered with IANA (timeQuality, origin, meta)"
        ))
    }
}

/// Appends `value` as a PARAM-VALUE: `"`, `\` and `]` escaped with a
/// backslash (RFC 5424 §6.3.3).
fn escape_param_value(out: &mut String, value: &str) {
    for character in value.chars() {
        if matches!(character, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(character);
    }
}

impl SdElement {
    /// `[id name="value"...]`.
    pub fn render(&self) -> String {
        let mut out = format!("[{}", self.id);
        for (name, value) in &self.params {
            out.push(' ');
            out.push_str(name);
            out.push_str("=\"");
            escape_param_value(&mut out, value);
            out.push('"');
        }
        out.push(']');
        out
    }
}

/// The syslog severity (0..=7) of an OpenTelemetry SeverityNumber
/// (1..=24: TRACE, DEBUG, INFO, WARN, ERROR, FATAL in steps of four).
pub fn syslog_severity(severity_number: u8) -> u8 {
    match severity_number {
        0..=8 => 7,
        9..=12 => 6,
        13..=16 => 4,
        17..=20 => 3,
        _ => 2,
    }
}

impl Default for SyslogFields {
    fn default() -> Self {
        Self {
            hostname: "-".into(),
            app_name: "log-aggregator".into(),
            procid: "-".into(),
            facility: 1,
            severity: 6,
            structured_data: None,
        }
    }
}

/// RFC 5424 header field limits (HOSTNAME, APP-NAME, PROCID).
const HOSTNAME_MAX: usize = 255;
const APP_NAME_MAX: usize = 48;
const PROCID_MAX: usize = 128;

/// `value` as an RFC 5424 header field: printable ASCII (33..=126), other
/// bytes replaced by `_`, cut at `max`, `-` when empty.
fn header_field(value: &str, max: usize) -> String {
    let field: String = value
        .bytes()
        .take(max)
        .map(|byte| {
            if (33..=126).contains(&byte) {
                char::from(byte)
            } else {
                '_'
            }
        })
        .collect();
    if field.is_empty() { "-".into() } else { field }
}

/// Renders messages with fixed header fields; the timestamp is given per
/// call (one per batch: the time the batch was sent, with microseconds).
#[derive(Clone, Debug)]
pub struct Rfc5424 {
    facility: u8,
    severity: u8,
    /// `<PRI>1 ` up to the timestamp, with the configured severity.
    pri: String,
    /// ` HOSTNAME APP-NAME PROCID - SD ` after the timestamp.
    rest: String,
}

impl Rfc5424 {
    pub fn new(fields: &SyslogFields) -> Self {
        let facility = fields.facility.min(23);
        let severity = fields.severity.min(7);
        Self {
            facility,
            severity,
            pri: pri(facility, severity),
            rest: format!(
                " {} {} {} - {} ",
                header_field(&fields.hostname, HOSTNAME_MAX),
                header_field(&fields.app_name, APP_NAME_MAX),
                header_field(&fields.procid, PROCID_MAX),
                fields
                    .structured_data
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), SdElement::render),
            ),
        }
    }

    /// Appends the message for `record` to `out`; `timestamp` unless the
    /// record has its own time.
    pub fn render(&self, out: &mut Vec<u8>, timestamp: &str, record: &Record<'_>) {
        match record.severity.map(syslog_severity) {
            Some(severity) if severity != self.severity => {
                out.extend_from_slice(pri(self.facility, severity).as_bytes());
            }
            _ => out.extend_from_slice(self.pri.as_bytes()),
        }
        match record
            .time_unix_nano
            .and_then(|nanos| jiff::Timestamp::from_nanosecond(i128::from(nanos)).ok())
        {
            Some(time) => out.extend_from_slice(rfc3339(time).as_bytes()),
            None => out.extend_from_slice(timestamp.as_bytes()),
        }
        out.extend_from_slice(self.rest.as_bytes());
        out.extend_from_slice(record.body);
    }
}

fn pri(facility: u8, severity: u8) -> String {
    format!("<{}>1 ", u16::from(facility) * 8 + u16::from(severity))
}

fn rfc3339(time: jiff::Timestamp) -> String {
    time.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Now as an RFC 5424 TIMESTAMP (RFC 3339, UTC, microseconds).
pub fn timestamp_now() -> String {
    rfc3339(jiff::Timestamp::now())
}

/// Appends `message` with RFC 6587 octet-counting framing: `LEN SP MSG`.
/// A message may then hold any byte, newlines included.
pub fn octet_counted(out: &mut Vec<u8>, message: &[u8]) {
    let _ = write!(out, "{} ", message.len());
    out.extend_from_slice(message);
}

/// Appends a RELP frame: `TXNR SP COMMAND SP DATALEN [SP DATA] LF`.
pub fn relp_frame(out: &mut Vec<u8>, txnr: u64, command: &str, data: &[u8]) {
    let _ = write!(out, "{txnr} {command} {}", data.len());
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_has_the_rfc5424_header_and_the_line_as_is() {
        let fields = SyslogFields {
            hostname: "pod-1".into(),
            app_name: "my app".into(),
            procid: String::new(),
            facility: 16,
            severity: 3,
            structured_data: None,
        };
        let mut out = Vec::new();
        Rfc5424::new(&fields).render(
            &mut out,
            "2026-01-02T03:04:05.000006Z",
            &Record::line("", b"a b\tc"),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<131>1 2026-01-02T03:04:05.000006Z pod-1 my_app - - - a b\tc"
        );
    }

    #[test]
    fn structured_data_values_escape_quote_backslash_and_bracket() {
        let fields = SyslogFields {
            structured_data: Some(SdElement {
                id: "k8s@32473".into(),
                params: vec![
                    ("pod".into(), "web-1".into()),
                    ("note".into(), r#"a "q" \ b] c"#.into()),
                ],
            }),
            ..SyslogFields::default()
        };
        let mut out = Vec::new();
        Rfc5424::new(&fields).render(&mut out, "T", &Record::line("", b"m"));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"<14>1 T - log-aggregator - - [k8s@32473 pod="web-1" note="a \"q\" \\ b\] c"] m"#
        );
    }

    #[test]
    fn structured_data_names_follow_rfc5424() {
        assert!(sd_id("k8s@32473").is_ok());
        assert!(sd_id("origin").is_ok());
        assert!(sd_id("k8s").unwrap_err().contains("ENTERPRISE-NUMBER"));
        assert!(sd_name("a=b").is_err());
        assert!(sd_name("a b").is_err());
        assert!(sd_name("a]").is_err());
        assert!(sd_name("a\"").is_err());
        assert!(sd_name("").is_err());
        assert!(sd_name(&"x".repeat(33)).is_err());
        assert!(sd_name("pod.name").is_ok());
    }

    #[test]
    fn a_records_severity_and_time_replace_the_configured_ones() {
        let record = Record {
            path: "",
            body: b"boom",
            severity: Some(17),
            time_unix_nano: Some(1_700_000_000_123_456_000),
        };
        let mut out = Vec::new();
        Rfc5424::new(&SyslogFields::default()).render(&mut out, "T", &record);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<11>1 2023-11-14T22:13:20.123456Z - log-aggregator - - - boom"
        );
    }

    #[test]
    fn header_fields_are_cut_at_the_rfc_limits() {
        let fields = SyslogFields {
            app_name: "x".repeat(100),
            ..SyslogFields::default()
        };
        let rendered = Rfc5424::new(&fields).rest;
        assert!(rendered.contains(&format!(" {} ", "x".repeat(48))));
        assert!(!rendered.contains(&"x".repeat(49)));
    }

    #[test]
    fn frames_count_octets() {
        let mut out = Vec::new();
        octet_counted(&mut out, b"hello\nworld");
        assert_eq!(out, b"11 hello\nworld");
        out.clear();
        relp_frame(&mut out, 7, "syslog", b"abc");
        assert_eq!(out, b"7 syslog 3 abc\n");
        out.clear();
        relp_frame(&mut out, 8, "close", b"");
        assert_eq!(out, b"8 close 0\n");
    }

    #[test]
    fn the_timestamp_is_rfc3339_utc_with_microseconds() {
        let now = timestamp_now();
        assert_eq!(now.len(), "2026-01-02T03:04:05.000006Z".len(), "{now}");
        assert!(now.ends_with('Z'));
    }
}
