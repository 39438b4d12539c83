//! Finding the sequence marker a writer puts in every generated line.
//!
//! Every format carries the same pair, a sequence number followed by the
//! target's name, only spelled the way the format allows:
//!
//! | format | marker |
//! |---|---|
//! | text, logfmt | `seq=123 target=app` |
//! | json | `"seq":123,"target":"app"` |
//! | common, combined | `GET /path?seq=123&target=app HTTP/1.1` |
//! | syslog | `[load@32473 seq="123" target="app"]` |
//!
//! A captured stream may wrap the line (a `FILE: ` prefix, a JSON envelope
//! with the line escaped as a string, `kubectl logs --prefix`), so the parser
//! does not know the format: it looks anywhere in the line for the word `seq`,
//! separators (`=`, `:`, quotes, backslashes, spaces, `&`, `,`), digits,
//! separators, the word `target`, separators and a name. Requiring both halves
//! in that order keeps a user's message that merely contains `seq=5` from
//! being taken for a marker.

use memchr::memmem;

/// The marker found in one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker<'a> {
    /// The per-target sequence number: 1 for a target's first line.
    pub seq: u64,
    /// The target's name (see [`is_name_byte`]).
    pub target: &'a [u8],
}

/// Bytes a target name is made of; the writer replaces any other byte of a
/// name by `_`, so a name always ends at a separator.
pub fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-' | b'/')
}

/// Bytes allowed between the parts of a marker, in any of the formats and
/// through one or two levels of JSON string escaping.
fn is_separator(byte: u8) -> bool {
    matches!(
        byte,
        b'=' | b':' | b'"' | b'\'' | b'\\' | b' ' | b'\t' | b'&' | b','
    )
}

/// Finds the first complete marker in `line`, if any.
pub fn find(line: &[u8]) -> Option<Marker<'_>> {
    memmem::find_iter(line, b"seq").find_map(|at| {
        let starts_a_word =
            at == 0 || !line[at - 1].is_ascii_alphanumeric() && line[at - 1] != b'_';
        if starts_a_word {
            parse_after_seq(line, at + 3)
        } else {
            None
        }
    })
}

fn parse_after_seq(line: &[u8], at: usize) -> Option<Marker<'_>> {
    let at = skip_separators(line, at)?;
    let digits_end = at + line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits_end == at {
        return None;
    }
    let mut seq: u64 = 0;
    for &digit in &line[at..digits_end] {
        seq = seq.checked_mul(10)?.checked_add(u64::from(digit - b'0'))?;
    }
    let at = skip_separators(line, digits_end)?;
    let at = line[at..].starts_with(b"target").then_some(at + 6)?;
    let at = skip_separators(line, at)?;
    let name_end = at + line[at..].iter().take_while(|&&b| is_name_byte(b)).count();
    (name_end > at).then(|| Marker {
        seq,
        target: &line[at..name_end],
    })
}

/// Skips at least one separator; `None` when there is none at `at`.
fn skip_separators(line: &[u8], at: usize) -> Option<usize> {
    let count = line
        .get(at..)?
        .iter()
        .take_while(|&&b| is_separator(b))
        .count();
    (count > 0).then_some(at + count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &str) -> Option<(u64, String)> {
        find(line.as_bytes()).map(|m| (m.seq, String::from_utf8_lossy(m.target).into_owned()))
    }

    fn some(seq: u64, target: &str) -> Option<(u64, String)> {
        Some((seq, target.to_owned()))
    }

    #[test]
    fn text_and_logfmt_markers() {
        assert_eq!(
            parsed("Wed Nov 25 14:01:13 UTC 2026 - Hello from writer seq=123 target=app"),
            some(123, "app")
        );
        assert_eq!(
            parsed("time=2026-11-25T14:01:13.000Z level=info msg=\"ok\" seq=7 target=error"),
            some(7, "error")
        );
    }

    #[test]
    fn json_marker_plain_and_escaped_inside_an_envelope() {
        assert_eq!(
            parsed(r#"{"time":"t","message":"m","seq":42,"target":"app"}"#),
            some(42, "app")
        );
        assert_eq!(
            parsed(r#"{"file":"/var/log/app.log","line":"{\"seq\":42,\"target\":\"app\"}"}"#),
            some(42, "app")
        );
    }

    #[test]
    fn access_log_query_and_syslog_structured_data() {
        assert_eq!(
            parsed(
                r#"1.2.3.4 - - [25/Nov/2026:14:01:13 +0000] "GET /x?seq=9&target=web HTTP/1.1" 200 5"#
            ),
            some(9, "web")
        );
        assert_eq!(
            parsed(
                r#"<134>1 2026-11-25T14:01:13.000Z h app 1 - [load@32473 seq="3" target="app"] hi"#
            ),
            some(3, "app")
        );
    }

    #[test]
    fn a_prefix_added_by_the_capture_is_ignored() {
        assert_eq!(
            parsed("/var/log/app.log: Wed - x seq=1 target=a.b-c/d"),
            some(1, "a.b-c/d")
        );
    }

    #[test]
    fn seq_without_a_target_or_inside_a_word_is_not_a_marker() {
        assert_eq!(parsed("message with seq=5 only"), None);
        assert_eq!(parsed("subsequence=5 target=app"), None);
        assert_eq!(parsed("seq=target=app"), None);
        assert_eq!(parsed("seq5 target=app"), None);
        assert_eq!(parsed("seq=5 target="), None);
        assert_eq!(parsed(""), None);
        assert_eq!(parsed("seq"), None);
    }

    #[test]
    fn a_user_message_mentioning_seq_does_not_hide_the_real_marker() {
        assert_eq!(
            parsed("retry seq=5 of upload seq=6 target=app"),
            some(6, "app")
        );
    }

    #[test]
    fn a_number_too_large_for_u64_is_not_a_marker() {
        assert_eq!(parsed("seq=99999999999999999999999 target=app"), None);
    }
}
