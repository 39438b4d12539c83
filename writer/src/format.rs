//! Rendering one line in one of the output formats, into a reused buffer.
//!
//! This is the load generator's hot path, so [`Renderer::render`] appends to
//! a caller-owned `Vec<u8>` and allocates nothing per line: numbers are
//! formatted by hand, messages are escaped once per target, and the time
//! strings are recomputed only when the clock moves past their precision.
//!
//! Invariants every format keeps (the unit and property tests check them):
//! - one line, ending in exactly one `\n`, no other newline;
//! - a marker [`crate::markers::find`] parses back to the line's `seq` and
//!   the target's name, except in a `text` layout without `{seq}`/`{target}`
//!   (the lab's default);
//! - with `--size`, the line (newline included) is exactly that long when
//!   the unpadded line is shorter: the filler goes inside a free-text field
//!   (the message, or the request path), so the line stays valid.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use sidecar_common::clock::{self, TimeFormat};

/// The line formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The lab's line, `{time} - {message}`, shaped by `--layout`.
    Text,
    /// One JSON object per line: time, message, seq, target.
    Json,
    /// Apache/NGINX Common Log Format access lines.
    Common,
    /// Apache/NGINX Combined Log Format (common plus referer and user agent).
    Combined,
    /// RFC 5424 syslog lines.
    Syslog,
    /// logfmt (`key=value` pairs), as Go and Heroku services print.
    Logfmt,
}

/// A placeholder-expanded `--layout` template, parsed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Time,
    Message,
    Seq,
    Target,
}

/// The lab's layout: `Wed Nov 25 14:01:13 UTC 2026 - Hello from writer`.
pub const LAB_LAYOUT: &str = "{time} - {message}";

/// The load generator's text layout: the lab's line plus the marker.
pub const LOAD_LAYOUT: &str = "{time} - {message} seq={seq} target={target}";

impl Layout {
    /// Parses a template with `{time}`, `{message}`, `{seq}`, `{target}`;
    /// `{{` and `}}` stand for literal braces.
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = template;
        while let Some(c) = rest.chars().next() {
            if let Some(after) = rest.strip_prefix("{{") {
                literal.push('{');
                rest = after;
            } else if let Some(after) = rest.strip_prefix("}}") {
                literal.push('}');
                rest = after;
            } else if c == '{' {
                let end = rest.find('}').ok_or_else(|| {
                    format!("unclosed '{{' in layout {template:?} (write {{{{ for a literal brace)")
                })?;
                let part = match &rest[1..end] {
                    "time" => Part::Time,
                    "message" => Part::Message,
                    "seq" => Part::Seq,
                    "target" => Part::Target,
                    other => {
                        return Err(format!(
                            "unknown placeholder {{{other}}} in layout {template:?} (use {{time}}, {{message}}, {{seq}}, {{target}})"
                        ));
                    }
                };
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(part);
                rest = &rest[end + 1..];
            } else {
                literal.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if let Some(Part::Literal(text)) = parts
            .iter()
            .find(|p| matches!(p, Part::Literal(t) if t.contains('\n')))
        {
            return Err(format!(
                "layout literal {text:?} contains a newline (one entry is one line)"
            ));
        }
        Ok(Self { parts })
    }

    /// Whether a line in this layout carries a marker the checker can read.
    pub fn has_marker(&self) -> bool {
        self.parts.contains(&Part::Seq) && self.parts.contains(&Part::Target)
    }
}

/// The message used when a target gives none, as in the lab.
pub const DEFAULT_MESSAGE: &str = "Hello from writer";

/// What a line says about its target: its name and message, escaped once.
#[derive(Clone, Debug)]
pub struct Source {
    name: String,
    /// The message as given, `None` when the target gave none.
    message: Option<String>,
    message_or_default: String,
    message_json: String,
    message_logfmt: String,
    rng: Rng,
}

impl Source {
    /// `name` must consist of [`crate::markers::is_name_byte`] bytes.
    pub fn new(name: &str, message: Option<&str>) -> Self {
        let message_or_default = message.unwrap_or(DEFAULT_MESSAGE).to_owned();
        let quoted = serde_json::to_string(&message_or_default).unwrap_or_default();
        let message_json = quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .unwrap_or_default()
            .to_owned();
        let message_logfmt = message_or_default
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        Self {
            name: name.to_owned(),
            message: message.map(str::to_owned),
            message_or_default,
            message_json,
            message_logfmt,
            rng: Rng::seeded(name),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Renders lines of one format; one per writing thread (it caches time strings).
#[derive(Clone, Debug)]
pub struct Renderer {
    format: Format,
    layout: Layout,
    time_format: TimeFormat,
    pad_to: Option<usize>,
    hostname: String,
    pid: u32,
    zone: TimeZone,
    times: TimeStrings,
    /// Whether the user was told that lines exceed `pad_to` (once is enough).
    oversize_told: bool,
}

/// Time strings for the current instant, each refreshed only when it would change.
#[derive(Clone, Debug, Default)]
struct TimeStrings {
    /// The milliseconds since the epoch the strings below were rendered for.
    millis: Option<i64>,
    /// The `--time-format` rendering (text, json), kept per second for `date`.
    user: String,
    user_second: Option<i64>,
    /// RFC 3339 UTC with milliseconds (syslog, logfmt).
    rfc3339: String,
    /// `25/Nov/2026:14:01:13 +0000` (common, combined), per second.
    clf: String,
    clf_second: Option<i64>,
}

impl Renderer {
    /// `time_format` applies to text and json; syslog and logfmt always use
    /// RFC 3339, and the access-log formats their own `[day/Mon/year:...]`.
    pub fn new(
        format: Format,
        layout: Layout,
        time_format: TimeFormat,
        pad_to: Option<usize>,
    ) -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or_else(|| "-".to_owned());
        Self {
            format,
            layout,
            time_format,
            pad_to,
            hostname,
            pid: std::process::id(),
            zone: clock::local_zone(),
            times: TimeStrings::default(),
            oversize_told: false,
        }
    }

    /// Sets the time stamped on the following lines (a batch shares one instant).
    pub fn set_time(&mut self, now: Timestamp) {
        let millis = now.as_millisecond();
        if self.times.millis == Some(millis) {
            return;
        }
        self.times.millis = Some(millis);
        let second = now.as_second();
        match self.format {
            Format::Text | Format::Json => {
                let per_second = self.time_format == TimeFormat::Date;
                if !per_second || self.times.user_second != Some(second) {
                    self.times.user = clock::format_time(now, &self.zone, self.time_format);
                    self.times.user_second = Some(second);
                }
            }
            Format::Syslog | Format::Logfmt => self.times.rfc3339 = clock::rfc3339_utc(now),
            Format::Common | Format::Combined => {
                if self.times.clf_second != Some(second) {
                    let zoned = now.to_zoned(self.zone.clone());
                    self.times.clf = zoned.strftime("%d/%b/%Y:%H:%M:%S %z").to_string();
                    self.times.clf_second = Some(second);
                }
            }
        }
    }

    /// Appends line `seq` of `source`, newline included, to `out`.
    pub fn render(&mut self, out: &mut Vec<u8>, source: &mut Source, seq: u64) {
        let start = out.len();
        let pad_at = match self.format {
            Format::Text => self.text(out, source, seq),
            Format::Json => self.json(out, source, seq),
            Format::Common => self.access(out, source, seq, false),
            Format::Combined => self.access(out, source, seq, true),
            Format::Syslog => self.syslog(out, source, seq),
            Format::Logfmt => self.logfmt(out, source, seq),
        };
        out.push(b'\n');
        if let Some(size) = self.pad_to {
            let len = out.len() - start;
            if len < size {
                out.splice(pad_at..pad_at, std::iter::repeat_n(b'x', size - len));
            } else if len > size && !self.oversize_told {
                // Never cut: a cut line would lose its marker.
                self.oversize_told = true;
                tracing::warn!("a line of {len} bytes is longer than --size {size}: written whole");
            }
        }
    }

    /// Returns where padding goes: right after the message.
    fn text(&self, out: &mut Vec<u8>, source: &Source, seq: u64) -> usize {
        let mut pad_at = None;
        for part in &self.layout.parts {
            match part {
                Part::Literal(text) => out.extend_from_slice(text.as_bytes()),
                Part::Time => out.extend_from_slice(self.times.user.as_bytes()),
                Part::Message => {
                    out.extend_from_slice(source.message_or_default.as_bytes());
                    pad_at = Some(out.len());
                }
                Part::Seq => push_u64(out, seq),
                Part::Target => out.extend_from_slice(source.name.as_bytes()),
            }
        }
        pad_at.unwrap_or(out.len())
    }

    fn json(&self, out: &mut Vec<u8>, source: &Source, seq: u64) -> usize {
        out.extend_from_slice(b"{\"time\":\"");
        // Our time strings contain no character JSON would need escaped.
        out.extend_from_slice(self.times.user.as_bytes());
        out.extend_from_slice(b"\",\"message\":\"");
        out.extend_from_slice(source.message_json.as_bytes());
        let pad_at = out.len();
        out.extend_from_slice(b"\",\"seq\":");
        push_u64(out, seq);
        out.extend_from_slice(b",\"target\":\"");
        out.extend_from_slice(source.name.as_bytes());
        out.extend_from_slice(b"\"}");
        pad_at
    }

    /// `IP - USER [TIME] "METHOD PATH?seq=N&target=NAME HTTP/1.1" STATUS BYTES`
    /// (+ ` "REFERER" "AGENT"` for combined); padding extends the path.
    fn access(&self, out: &mut Vec<u8>, source: &mut Source, seq: u64, combined: bool) -> usize {
        let rng = &mut source.rng;
        push_ip(out, rng);
        out.extend_from_slice(b" - ");
        out.extend_from_slice(rng.pick(USERS).as_bytes());
        out.extend_from_slice(b" [");
        out.extend_from_slice(self.times.clf.as_bytes());
        out.extend_from_slice(b"] \"");
        out.extend_from_slice(rng.pick(METHODS).as_bytes());
        out.push(b' ');
        out.extend_from_slice(rng.pick(PATHS).as_bytes());
        let pad_at = out.len();
        out.extend_from_slice(b"?seq=");
        push_u64(out, seq);
        out.extend_from_slice(b"&target=");
        out.extend_from_slice(source.name.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\" ");
        out.extend_from_slice(rng.pick(STATUSES).as_bytes());
        out.push(b' ');
        push_u64(out, u64::from(rng.below(50_000)));
        if combined {
            out.extend_from_slice(b" \"");
            out.extend_from_slice(rng.pick(REFERERS).as_bytes());
            out.extend_from_slice(b"\" \"");
            out.extend_from_slice(rng.pick(AGENTS).as_bytes());
            out.push(b'"');
        }
        pad_at
    }

    /// `<PRI>1 TIME HOST APP PID MSGID [load@32473 seq="N" target="NAME"] MSG`.
    /// 32473 is the enterprise number RFC 5612 reserves for documentation:
    /// RFC 5424 wants a private SD-ID to carry one.
    fn syslog(&self, out: &mut Vec<u8>, source: &mut Source, seq: u64) -> usize {
        let rng = &mut source.rng;
        let (severity, text) = *rng.pick(SYSLOG_MESSAGES);
        let facility = 16 + rng.below(8); // local0..local7
        out.push(b'<');
        push_u64(out, u64::from(facility * 8 + severity));
        out.extend_from_slice(b">1 ");
        out.extend_from_slice(self.times.rfc3339.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.hostname.as_bytes());
        out.push(b' ');
        out.extend_from_slice(source.name.as_bytes());
        out.push(b' ');
        push_u64(out, u64::from(self.pid));
        out.push(b' ');
        out.extend_from_slice(rng.pick(MSGIDS).as_bytes());
        out.extend_from_slice(b" [load@32473 seq=\"");
        push_u64(out, seq);
        out.extend_from_slice(b"\" target=\"");
        out.extend_from_slice(source.name.as_bytes());
        out.extend_from_slice(b"\"] ");
        match &source.message {
            Some(message) => out.extend_from_slice(message.as_bytes()),
            None => out.extend_from_slice(text.as_bytes()),
        }
        out.len()
    }

    /// `time=... level=... msg="..." method=... path=... status=... duration_ms=... seq=N target=NAME`.
    fn logfmt(&self, out: &mut Vec<u8>, source: &mut Source, seq: u64) -> usize {
        let rng = &mut source.rng;
        let (severity, text) = *rng.pick(SYSLOG_MESSAGES);
        out.extend_from_slice(b"time=");
        out.extend_from_slice(self.times.rfc3339.as_bytes());
        out.extend_from_slice(b" level=");
        out.extend_from_slice(LEVELS[severity as usize].as_bytes());
        out.extend_from_slice(b" msg=\"");
        match &source.message {
            Some(_) => out.extend_from_slice(source.message_logfmt.as_bytes()),
            None => out.extend_from_slice(text.as_bytes()),
        }
        let pad_at = out.len();
        out.extend_from_slice(b"\" method=");
        out.extend_from_slice(rng.pick(METHODS).as_bytes());
        out.extend_from_slice(b" path=");
        out.extend_from_slice(rng.pick(PATHS).as_bytes());
        out.extend_from_slice(b" status=");
        out.extend_from_slice(rng.pick(STATUSES).as_bytes());
        out.extend_from_slice(b" duration_ms=");
        push_u64(out, u64::from(1 + rng.below(2_000)));
        out.extend_from_slice(b" seq=");
        push_u64(out, seq);
        out.extend_from_slice(b" target=");
        out.extend_from_slice(source.name.as_bytes());
        pad_at
    }
}

/// Appends `value` in decimal, without the allocation `format!` would make.
pub fn push_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn push_ip(out: &mut Vec<u8>, rng: &mut Rng) {
    // First octet 1..=223 avoids 0.x, multicast and reserved ranges.
    push_u64(out, u64::from(1 + rng.below(223)));
    for _ in 0..3 {
        out.push(b'.');
        push_u64(out, u64::from(rng.below(256)));
    }
}

/// A small deterministic generator (SplitMix64): the same target name gives
/// the same fake content on every run, which keeps runs comparable.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn seeded(name: &str) -> Self {
        // FNV-1a of the name.
        let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| {
            (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(bound)) >> 32) as u32
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u32) as usize]
    }
}

// Fake content. Repeated entries weight the draw, so most requests succeed.
const METHODS: &[&str] = &[
    "GET", "GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE", "HEAD",
];
const USERS: &[&str] = &["-", "-", "-", "-", "-", "-", "alice", "bob", "frank"];
const PATHS: &[&str] = &[
    "/",
    "/index.html",
    "/api/v1/users",
    "/api/v1/users/42",
    "/api/v1/orders",
    "/api/v1/orders/1337/items",
    "/api/v2/search",
    "/login",
    "/logout",
    "/healthz",
    "/metrics",
    "/static/css/main.css",
    "/static/js/app.js",
    "/images/logo.png",
    "/favicon.ico",
    "/products/kubernetes-mug",
    "/cart",
    "/checkout",
];
const STATUSES: &[&str] = &[
    "200", "200", "200", "200", "200", "200", "200", "200", "201", "204", "301", "302", "304",
    "304", "400", "401", "403", "404", "404", "500", "502", "503",
];
const REFERERS: &[&str] = &[
    "-",
    "-",
    "https://www.example.com/",
    "https://www.example.com/products",
    "https://www.google.com/search?q=kubernetes+sidecar",
    "https://duckduckgo.com/",
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "curl/8.4.0",
    "kube-probe/1.32",
    "Go-http-client/1.1",
    "python-requests/2.31.0",
];
const MSGIDS: &[&str] = &["-", "auth", "db", "http", "cache", "queue"];
/// Syslog severity (RFC 5424: 3 error, 4 warning, 6 informational, 7 debug) and text.
const SYSLOG_MESSAGES: &[(u32, &str)] = &[
    (6, "User login succeeded"),
    (6, "Request completed"),
    (6, "Cache refreshed"),
    (6, "Order placed"),
    (6, "Connection accepted"),
    (7, "Query plan chosen"),
    (4, "Slow query detected"),
    (4, "Retrying upstream request"),
    (3, "Connection reset by peer"),
    (3, "Payment provider timed out"),
];
/// logfmt level names, indexed by syslog severity.
const LEVELS: &[&str] = &[
    "fatal", "fatal", "fatal", "error", "warn", "info", "info", "debug",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::markers;
    use proptest::prelude::*;

    const ALL: [Format; 6] = [
        Format::Text,
        Format::Json,
        Format::Common,
        Format::Combined,
        Format::Syslog,
        Format::Logfmt,
    ];

    fn renderer(format: Format, pad_to: Option<usize>) -> Renderer {
        let mut renderer = Renderer::new(
            format,
            Layout::parse(LOAD_LAYOUT).unwrap(),
            TimeFormat::Date,
            pad_to,
        );
        renderer.set_time("2026-11-25T14:01:13.250Z".parse().unwrap());
        renderer
    }

    fn line(format: Format, message: Option<&str>, seq: u64) -> String {
        let mut out = Vec::new();
        renderer(format, None).render(&mut out, &mut Source::new("app", message), seq);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lab_layout_is_date_dash_message() {
        let mut renderer = Renderer::new(
            Format::Text,
            Layout::parse(LAB_LAYOUT).unwrap(),
            TimeFormat::Date,
            None,
        );
        renderer.zone = TimeZone::UTC;
        renderer.set_time("2026-11-25T14:01:13Z".parse().unwrap());
        let mut out = Vec::new();
        renderer.render(&mut out, &mut Source::new("log", None), 1);
        assert_eq!(out, b"Wed Nov 25 14:01:13 UTC 2026 - Hello from writer\n");
    }

    #[test]
    fn three_containers_layout_puts_the_message_first() {
        let mut renderer = Renderer::new(
            Format::Text,
            Layout::parse("{message}: {time}").unwrap(),
            TimeFormat::Rfc3339,
            None,
        );
        renderer.set_time("2026-11-25T14:01:13Z".parse().unwrap());
        let mut out = Vec::new();
        renderer.render(&mut out, &mut Source::new("data", Some("Writer 1")), 1);
        assert_eq!(out, b"Writer 1: 2026-11-25T14:01:13.000Z\n");
    }

    #[test]
    fn layout_errors_name_the_problem() {
        assert!(
            Layout::parse("{when}")
                .unwrap_err()
                .contains("unknown placeholder {when}")
        );
        assert!(Layout::parse("{time").unwrap_err().contains("unclosed"));
        assert_eq!(
            Layout::parse("{{literal}} {seq}").unwrap().parts,
            vec![Part::Literal("{literal} ".into()), Part::Seq]
        );
        assert!(!Layout::parse(LAB_LAYOUT).unwrap().has_marker());
        assert!(Layout::parse(LOAD_LAYOUT).unwrap().has_marker());
    }

    #[test]
    fn json_lines_are_objects_with_time_message_seq_target() {
        let text = line(Format::Json, Some("say \"hi\"\tnow"), 7);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["message"], "say \"hi\"\tnow");
        assert_eq!(value["seq"], 7);
        assert_eq!(value["target"], "app");
        assert!(value["time"].as_str().unwrap().contains("2026"));
    }

    #[test]
    fn access_lines_have_the_common_and_combined_shapes() {
        let common = r#"^\d+\.\d+\.\d+\.\d+ - \S+ \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "[A-Z]+ /\S*\?seq=5&target=app HTTP/1\.1" \d{3} \d+"#;
        let text = line(Format::Common, None, 5);
        assert!(
            regex::Regex::new(&format!("{common}$"))
                .unwrap()
                .is_match(text.trim_end()),
            "{text}"
        );
        let combined = line(Format::Combined, None, 5);
        let re = regex::Regex::new(&format!(r#"{common} "[^"]*" "[^"]+"$"#)).unwrap();
        assert!(re.is_match(combined.trim_end()), "{combined}");
    }

    #[test]
    fn syslog_lines_follow_rfc5424() {
        let re = regex::Regex::new(
            r#"^<\d{1,3}>1 2026-11-25T14:01:13\.250Z \S+ app \d+ \S+ \[load@32473 seq="9" target="app"\] .+$"#,
        )
        .unwrap();
        let text = line(Format::Syslog, None, 9);
        assert!(re.is_match(text.trim_end()), "{text}");
        assert!(
            line(Format::Syslog, Some("mine"), 9)
                .trim_end()
                .ends_with("] mine")
        );
    }

    #[test]
    fn logfmt_lines_quote_the_message() {
        let text = line(Format::Logfmt, Some("a \"quoted\" word"), 3);
        assert!(
            text.starts_with("time=2026-11-25T14:01:13.250Z level="),
            "{text}"
        );
        assert!(text.contains(r#"msg="a \"quoted\" word""#), "{text}");
        assert!(text.trim_end().ends_with("seq=3 target=app"), "{text}");
    }

    #[test]
    fn push_u64_formats_like_display() {
        for value in [0, 1, 9, 10, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, value);
            assert_eq!(out, value.to_string().as_bytes());
        }
    }

    proptest! {
        #[test]
        fn every_format_carries_a_parseable_marker_and_honours_size(
            format_index in 0usize..6,
            seq in 1u64..u64::MAX,
            name in "[A-Za-z0-9._-]{1,20}",
            message in proptest::option::of("[^\n\r]{0,40}"),
            size in proptest::option::of(1usize..600),
        ) {
            let format = ALL[format_index];
            let mut renderer = renderer(format, size);
            let mut source = Source::new(&name, message.as_deref());
            let mut out = b"previous line\n".to_vec();
            renderer.render(&mut out, &mut source, seq);
            let rendered = &out[14..];
            prop_assert_eq!(rendered.iter().filter(|&&b| b == b'\n').count(), 1);
            prop_assert_eq!(rendered.last(), Some(&b'\n'));
            let marker = markers::find(rendered).expect("a marker");
            prop_assert_eq!(marker.seq, seq);
            prop_assert_eq!(marker.target, name.as_bytes());
            if let Some(size) = size {
                let mut unpadded = Vec::new();
                let mut plain = self::renderer(format, None);
                plain.render(&mut unpadded, &mut Source::new(&name, message.as_deref()), seq);
                prop_assert_eq!(rendered.len(), size.max(unpadded.len()));
            }
            if format == Format::Json {
                let value: serde_json::Value = serde_json::from_slice(rendered).unwrap();
                prop_assert_eq!(value["seq"].as_u64(), Some(seq));
            }
        }
    }
}
