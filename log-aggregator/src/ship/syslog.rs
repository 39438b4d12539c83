//! RFC 5424 messages and the two TCP transports that carry them: RFC 6587
//! octet counting (plain TCP syslog, no acknowledgement) and the frames
//! of RELP (rsyslog's Reliable Event Logging Protocol, one `rsp 200` per
//! message).
//!
//! A message is `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID - - MSG`
//! (<https://www.rfc-editor.org/rfc/rfc5424#section-6>): MSGID and
//! STRUCTURED-DATA are the nil value, MSG is the rendered line as bytes
//! (no BOM: the bytes are passed through, not asserted to be UTF-8).
//! Header fields are printable US-ASCII without spaces, cut at the RFC's
//! lengths; an empty one is `-`.

use std::io::Write;

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
}

impl Default for SyslogFields {
    fn default() -> Self {
        Self {
            hostname: "-".into(),
            app_name: "log-aggregator".into(),
            procid: "-".into(),
            facility: 1,
            severity: 6,
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
    /// `<PRI>1 ` up to the timestamp.
    pri: String,
    /// ` HOSTNAME APP-NAME PROCID - - ` after the timestamp.
    rest: String,
}

impl Rfc5424 {
    pub fn new(fields: &SyslogFields) -> Self {
        let pri = u16::from(fields.facility.min(23)) * 8 + u16::from(fields.severity.min(7));
        Self {
            pri: format!("<{pri}>1 "),
            rest: format!(
                " {} {} {} - - ",
                header_field(&fields.hostname, HOSTNAME_MAX),
                header_field(&fields.app_name, APP_NAME_MAX),
                header_field(&fields.procid, PROCID_MAX),
            ),
        }
    }

    /// Appends the message for `line` (without its newline) to `out`.
    pub fn render(&self, out: &mut Vec<u8>, timestamp: &str, line: &[u8]) {
        out.extend_from_slice(self.pri.as_bytes());
        out.extend_from_slice(timestamp.as_bytes());
        out.extend_from_slice(self.rest.as_bytes());
        out.extend_from_slice(line);
    }
}

/// Now as an RFC 5424 TIMESTAMP (RFC 3339, UTC, microseconds).
pub fn timestamp_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
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
        };
        let mut out = Vec::new();
        Rfc5424::new(&fields).render(&mut out, "2026-01-02T03:04:05.000006Z", b"a b\tc");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<131>1 2026-01-02T03:04:05.000006Z pod-1 my_app - - - a b\tc"
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
