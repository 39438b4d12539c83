//! OTLP/HTTP logs (`--sink otlp`): each batch is one
//! `ExportLogsServiceRequest`, protobuf, POSTed to `/v1/logs`
//! (<https://opentelemetry.io/docs/specs/otlp/#otlphttp>).
//!
//! The messages are `prost` structs transcribed from the official
//! definitions (opentelemetry-proto v1, `logs/v1/logs.proto`,
//! `common/v1/common.proto`, `resource/v1/resource.proto`,
//! `collector/logs/v1/logs_service.proto`): only the fields we write or
//! read, with their official numbers and types (unknown fields are skipped
//! by any decoder). The `opentelemetry-proto` crate would bring tonic and
//! the SDK for the same few structs; `prost-build` would need protoc at
//! build time. The test receiver decodes with the official Python package.
//!
//! One record per line: `body` the line (a string when it is UTF-8, else
//! bytes), attributes
//! `log.file.path` and `log.file.name`; the resource's attributes come from
//! the configuration (`k8s.pod.name`... from the environment);
//! `observed_time_unix_nano` is when the batch's first line reached the
//! shipper (read moments before), kept on retries. A record's
//! severity and time, when a parser gave them, fill `severity_number` and
//! `time_unix_nano`.
//!
//! Encodings (`--otlp-encoding`): protobuf (`application/x-protobuf`, the
//! default) or JSON (`application/json`) per the OTLP/HTTP JSON mapping
//! (<https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding>):
//! lowerCamelCase field names, 64-bit integers as decimal strings, enums as
//! integers, bytes as base64 (trace and span ids, which would be hex, are
//! not written: a line has none). Either may be gzipped
//! (`--otlp-compression gzip`, `Content-Encoding: gzip`).
//!
//! Transport: HTTP/1.1 over one keep-alive TCP connection; `https://`
//! only in the `tls` build, through the TLS setup every sink shares
//! ([`super::tls`]), which the default image leaves out for its size.
//!
//! Delivery (<https://opentelemetry.io/docs/specs/otlp/#failures-1>):
//! 2xx acknowledges the whole batch (a partial success is logged: the
//! server took the request and will not take the rejected records again);
//! connection errors and 429/502/503/504 are retried, after `Retry-After`
//! when the server sends one (seconds); any other status (400, 413...) is
//! permanent: retrying cannot help, so the batch is dropped and counted.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::time::Duration;

use prost::Message;

use super::Record;
use super::tls::{Stream, TlsClient, no_tls};
use super::transport::{Messages, SendError, Timeouts, Transport, closed, connect_stream};

/// How request bodies are encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    /// `application/x-protobuf`.
    #[default]
    Protobuf,
    /// `application/json`, the OTLP/HTTP JSON mapping.
    Json,
}

/// How request bodies are compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    #[default]
    None,
    /// `Content-Encoding: gzip` (level 1: most of the gain on log lines
    /// for a fraction of the CPU of the default level).
    Gzip,
}

/// The OTLP sink's options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OtlpOptions {
    pub encoding: Encoding,
    pub compression: Compression,
}

/// `opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct ExportLogsServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_logs: Vec<ResourceLogs>,
}

/// `opentelemetry.proto.collector.logs.v1.ExportLogsServiceResponse`.
#[derive(Clone, PartialEq, Message)]
pub struct ExportLogsServiceResponse {
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportLogsPartialSuccess>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ExportLogsPartialSuccess {
    #[prost(int64, tag = "1")]
    pub rejected_log_records: i64,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

/// `opentelemetry.proto.logs.v1.ResourceLogs`.
#[derive(Clone, PartialEq, Message)]
pub struct ResourceLogs {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_logs: Vec<ScopeLogs>,
}

/// `opentelemetry.proto.resource.v1.Resource`.
#[derive(Clone, PartialEq, Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}

/// `opentelemetry.proto.logs.v1.ScopeLogs`.
#[derive(Clone, PartialEq, Message)]
pub struct ScopeLogs {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub log_records: Vec<LogRecord>,
}

/// `opentelemetry.proto.common.v1.InstrumentationScope`.
#[derive(Clone, PartialEq, Message)]
pub struct InstrumentationScope {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub version: String,
}

/// `opentelemetry.proto.logs.v1.LogRecord`.
#[derive(Clone, PartialEq, Message)]
pub struct LogRecord {
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    /// `SeverityNumber`, an enum: 0 = unspecified.
    #[prost(int32, tag = "2")]
    pub severity_number: i32,
    #[prost(fixed64, tag = "11")]
    pub observed_time_unix_nano: u64,
    #[prost(message, optional, tag = "5")]
    pub body: Option<AnyValue>,
    #[prost(message, repeated, tag = "6")]
    pub attributes: Vec<KeyValue>,
}

/// `opentelemetry.proto.common.v1.KeyValue`.
#[derive(Clone, PartialEq, Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

/// `opentelemetry.proto.common.v1.AnyValue` (the string and bytes cases).
#[derive(Clone, PartialEq, Message)]
pub struct AnyValue {
    #[prost(oneof = "Value", tags = "1, 7")]
    pub value: Option<Value>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    #[prost(string, tag = "1")]
    StringValue(String),
    #[prost(bytes = "vec", tag = "7")]
    BytesValue(Vec<u8>),
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.to_owned())),
        }),
    }
}

/// Splits a line rendered by `--output prefixed` (`<file>: <line>`, the
/// name's control bytes and `\` escaped) into the path and the line.
/// A path holding `": "` is cut at its first one (a known limit).
pub fn split_prefixed(rendered: &[u8]) -> (String, &[u8]) {
    match memchr::memmem::find(rendered, b": ") {
        Some(at) => (unescape(&rendered[..at]), &rendered[at + 2..]),
        None => (String::new(), rendered),
    }
}

/// Undoes `output::write_escaped_name` (`\n`, `\t`, `\\`, `\xNN`).
fn unescape(name: &[u8]) -> String {
    let mut out = Vec::with_capacity(name.len());
    let mut bytes = name.iter().copied();
    while let Some(byte) = bytes.next() {
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        match bytes.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'r') => out.push(b'\r'),
            Some(b'x') => {
                let high = bytes
                    .next()
                    .and_then(|digit| char::from(digit).to_digit(16));
                let low = bytes
                    .next()
                    .and_then(|digit| char::from(digit).to_digit(16));
                if let (Some(high), Some(low)) = (high, low) {
                    out.push((high * 16 + low) as u8);
                }
            }
            Some(other) => out.push(other),
            None => out.push(b'\\'),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The request for `messages[from..]`: each a `--output prefixed` line, or
/// with `records` a `--parse` record (the body is the record; its file,
/// severity and time come from its fields).
pub fn request(
    messages: &Messages,
    from: usize,
    resource: &[(String, String)],
    observed_unix_nano: u64,
    records: bool,
) -> ExportLogsServiceRequest {
    let log_records = (from..messages.len())
        .map(|index| {
            let message = messages.get(index);
            if records {
                let parsed = super::parsed::fields(message);
                let mut record = Record::line(parsed.file.as_deref().unwrap_or(""), message);
                record.severity = parsed.severity;
                record.time_unix_nano = parsed.time_unix_nano;
                return log_record(&record, observed_unix_nano);
            }
            let (path, line) = split_prefixed(message);
            log_record(&Record::line(&path, line), observed_unix_nano)
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: resource
                    .iter()
                    .map(|(key, value)| string(key, value))
                    .collect(),
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "log-aggregator".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                }),
                log_records,
            }],
        }],
    }
}

/// The record for one line.
pub fn log_record(record: &Record<'_>, observed_unix_nano: u64) -> LogRecord {
    let name = std::path::Path::new(record.path)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let body = match std::str::from_utf8(record.body) {
        Ok(text) => Value::StringValue(text.to_owned()),
        Err(_) => Value::BytesValue(record.body.to_vec()),
    };
    LogRecord {
        time_unix_nano: record.time_unix_nano.unwrap_or(0),
        severity_number: record.severity.map_or(0, i32::from),
        observed_time_unix_nano: observed_unix_nano,
        body: Some(AnyValue { value: Some(body) }),
        attributes: vec![
            string("log.file.path", record.path),
            string("log.file.name", &name),
        ],
    }
}

/// `request` in the OTLP/HTTP JSON mapping. Fields at their default
/// value are left out, as protobuf's JSON printer does.
pub fn to_json(request: &ExportLogsServiceRequest, out: &mut Vec<u8>) {
    fn text(out: &mut Vec<u8>, value: &str) {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, value);
    }
    fn any_value(out: &mut Vec<u8>, value: Option<&AnyValue>) {
        match value.and_then(|value| value.value.as_ref()) {
            Some(Value::StringValue(value)) => {
                out.extend_from_slice(b"{\"stringValue\":");
                text(out, value);
                out.push(b'}');
            }
            Some(Value::BytesValue(value)) => {
                out.extend_from_slice(b"{\"bytesValue\":\"");
                base64(out, value);
                out.extend_from_slice(b"\"}");
            }
            None => out.extend_from_slice(b"{}"),
        }
    }
    fn attributes(out: &mut Vec<u8>, attributes: &[KeyValue]) {
        out.extend_from_slice(b"\"attributes\":[");
        for (index, pair) in attributes.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"key\":");
            text(out, &pair.key);
            out.extend_from_slice(b",\"value\":");
            any_value(out, pair.value.as_ref());
            out.push(b'}');
        }
        out.push(b']');
    }
    fn list<T>(out: &mut Vec<u8>, items: &[T], mut each: impl FnMut(&mut Vec<u8>, &T)) {
        out.push(b'[');
        for (index, item) in items.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            each(out, item);
        }
        out.push(b']');
    }
    out.extend_from_slice(b"{\"resourceLogs\":");
    list(out, &request.resource_logs, |out, resource_logs| {
        out.extend_from_slice(b"{\"resource\":{");
        if let Some(resource) = &resource_logs.resource {
            attributes(out, &resource.attributes);
        }
        out.extend_from_slice(b"},\"scopeLogs\":");
        list(out, &resource_logs.scope_logs, |out, scope_logs| {
            out.extend_from_slice(b"{\"scope\":{");
            if let Some(scope) = &scope_logs.scope {
                out.extend_from_slice(b"\"name\":");
                text(out, &scope.name);
                out.extend_from_slice(b",\"version\":");
                text(out, &scope.version);
            }
            out.extend_from_slice(b"},\"logRecords\":");
            list(out, &scope_logs.log_records, |out, record| {
                out.push(b'{');
                if record.time_unix_nano != 0 {
                    let _ = write!(out, "\"timeUnixNano\":\"{}\",", record.time_unix_nano);
                }
                if record.severity_number != 0 {
                    let _ = write!(out, "\"severityNumber\":{},", record.severity_number);
                }
                let _ = write!(
                    out,
                    "\"observedTimeUnixNano\":\"{}\",\"body\":",
                    record.observed_time_unix_nano
                );
                any_value(out, record.body.as_ref());
                out.push(b',');
                attributes(out, &record.attributes);
                out.push(b'}');
            });
            out.push(b'}');
        });
        out.push(b'}');
    });
    out.push(b'}');
}

/// Appends `data` as one gzip member (RFC 1952): the header, raw DEFLATE
/// at level 1 (miniz_oxide), CRC-32 and length. Not flate2's encoder:
/// its stream wrapper and crc32fast's slicing tables are image bytes that
/// batches this small do not need.
fn gzip(out: &mut Vec<u8>, data: &[u8]) {
    // Magic, DEFLATE, no flags, no mtime, no extra flags, OS unknown.
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(data, 1));
    out.extend_from_slice(&crc32(data).to_le_bytes());
    // ISIZE: the length modulo 2^32.
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
}

/// CRC-32 (IEEE 802.3, reflected, as gzip uses), a byte at a time.
fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut index = 0;
        while index < 256 {
            let mut crc = index as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 == 1 {
                    0xedb8_8320 ^ (crc >> 1)
                } else {
                    crc >> 1
                };
                bit += 1;
            }
            table[index] = crc;
            index += 1;
        }
        table
    };
    !data.iter().fold(!0u32, |crc, byte| {
        TABLE[((crc ^ u32::from(*byte)) & 0xff) as usize] ^ (crc >> 8)
    })
}

/// Standard base64 with padding (RFC 4648 §4), as proto3 JSON writes bytes.
fn base64(out: &mut Vec<u8>, bytes: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let word = chunk.iter().enumerate().fold(0u32, |word, (index, byte)| {
            word | u32::from(*byte) << (16 - 8 * index)
        });
        for index in 0..4 {
            if index <= chunk.len() {
                out.push(ALPHABET[(word >> (18 - 6 * index) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

/// The records a partial success rejected, from a 2xx answer's body.
fn rejected_records(encoding: Encoding, body: &[u8]) -> Option<(i64, String)> {
    let (rejected, message) = match encoding {
        Encoding::Protobuf => {
            let partial = ExportLogsServiceResponse::decode(body)
                .ok()?
                .partial_success?;
            (partial.rejected_log_records, partial.error_message)
        }
        // A scan, not a JSON parser: two fields of a small answer.
        Encoding::Json => {
            let text = String::from_utf8_lossy(body);
            if !text.contains("\"partialSuccess\"") {
                return None;
            }
            let after = |key: &str| {
                let at = text.find(key)? + key.len();
                let rest = text[at..]
                    .trim_start_matches(|c: char| c == '"' || c == ':' || c.is_whitespace());
                Some(rest.to_owned())
            };
            let rejected = after("\"rejectedLogRecords\"").map_or(0, |rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().unwrap_or(0)
            });
            let message = after("\"errorMessage\"")
                .map(|rest| rest.split('"').next().unwrap_or("").to_owned())
                .unwrap_or_default();
            (rejected, message)
        }
    };
    (rejected > 0 || !message.is_empty()).then_some((rejected, message))
}

/// What to do with an HTTP answer
/// (<https://opentelemetry.io/docs/specs/otlp/#failures-1>).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Acknowledged,
    /// Too many requests, or a gateway or server momentarily unavailable.
    Retry,
    /// Anything else: sending the same request again cannot succeed.
    Drop,
}

pub fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Acknowledged,
        429 | 502 | 503 | 504 => Verdict::Retry,
        _ => Verdict::Drop,
    }
}

/// `Retry-After`: delay-seconds, or an HTTP-date (RFC 9110 §10.2.3), as
/// the time from `now` (zero when it is past).
pub fn retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = http_date(value)?;
    Some(now.duration_until(at).try_into().unwrap_or(Duration::ZERO))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form RFC 9110
/// §5.6.7 says senders use.
fn http_date(value: &str) -> Option<jiff::Timestamp> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut fields = value.split_ascii_whitespace().skip(1);
    let day: u8 = fields.next()?.parse().ok()?;
    let month_name = fields.next()?;
    let month = MONTHS.iter().position(|name| *name == month_name)?;
    let year: i16 = fields.next()?.parse().ok()?;
    let mut clock = fields
        .next()?
        .split(':')
        .map(|part| part.parse::<i8>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if fields.next() != Some("GMT") {
        return None;
    }
    if !(1..=31).contains(&day) || !(0..24).contains(&hour) || !(0..60).contains(&minute) {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (the "days from
    // civil" algorithm, <https://howardhinnant.github.io/date_algorithms.html>).
    let (year, month) = (i64::from(year), month as i64 + 1);
    let shifted = if month <= 2 { year - 1 } else { year };
    let era = shifted.div_euclid(400);
    let year_of_era = shifted - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds =
        days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    jiff::Timestamp::from_second(seconds).ok()
}

/// An `http://host:port/path` URL, split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host:port` (port 80, or 443 for https, when none).
    pub authority: String,
    pub path: String,
    /// `https://`: TLS (the `tls` build only).
    pub tls: bool,
}

impl HttpUrl {
    /// `http[s]://HOST[:PORT][/PATH]`; the path defaults to `/v1/logs`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (rest, tls) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (rest, false),
            (_, Some(_)) if !cfg!(feature = "tls") => return Err(no_tls(url)),
            (_, Some(rest)) => (rest, true),
            _ => return Err(format!("{url:?}: expected an http:// or https:// URL")),
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/v1/logs"),
        };
        if authority.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        let authority = if authority.rsplit_once(':').is_some_and(|(_, port)| {
            !port.is_empty() && port.bytes().all(|byte| byte.is_ascii_digit())
        }) {
            authority.to_owned()
        } else {
            format!("{authority}:{}", if tls { 443 } else { 80 })
        };
        Ok(Self {
            authority,
            path: path.to_owned(),
            tls,
        })
    }
}

/// Longest response body read (a partial-success message).
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// OTLP/HTTP over one keep-alive connection.
pub struct Otlp {
    /// The TLS setup of an `https://` URL.
    tls: Option<TlsClient>,
    url: HttpUrl,
    resource: Vec<(String, String)>,
    options: OtlpOptions,
    /// Messages are `--parse` records, not `--output prefixed` lines.
    records: bool,
    connection: BufReader<Stream>,
    /// The server said it closes: the next batch needs a new connection.
    closed: bool,
    /// The server answered a request on this connection.
    answered: bool,
    body: Vec<u8>,
    /// The body before compression.
    encoded: Vec<u8>,
    /// Records refused in partial successes, not yet counted.
    rejected: u64,
}

/// An HTTP answer: status, `Retry-After` in seconds, body, whether the
/// server closes the connection.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: Vec<u8>,
    close: bool,
}

impl Otlp {
    pub fn connect(
        url: &HttpUrl,
        resource: &[(String, String)],
        options: &OtlpOptions,
        records: bool,
        tls: Option<&TlsClient>,
        timeouts: Timeouts,
    ) -> io::Result<Self> {
        let tls = if url.tls {
            Some(tls.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "https:// without a TLS setup")
            })?)
        } else {
            None
        };
        let stream = connect_stream(&url.authority, tls, timeouts)?;
        Ok(Self {
            tls: tls.cloned(),
            url: url.clone(),
            resource: resource.to_vec(),
            options: options.clone(),
            records,
            connection: BufReader::new(stream),
            closed: false,
            answered: false,
            body: Vec::new(),
            encoded: Vec::new(),
            rejected: 0,
        })
    }

    /// Encodes (and compresses) `request` into `self.body`.
    fn encode(&mut self, request: &ExportLogsServiceRequest) {
        self.encoded.clear();
        match self.options.encoding {
            // Encoding into a Vec cannot fail (it grows as needed).
            Encoding::Protobuf => drop(request.encode(&mut self.encoded)),
            Encoding::Json => to_json(request, &mut self.encoded),
        }
        self.body.clear();
        match self.options.compression {
            Compression::None => self.body.extend_from_slice(&self.encoded),
            Compression::Gzip => gzip(&mut self.body, &self.encoded),
        }
    }

    fn post(&mut self) -> io::Result<Answer> {
        let content_type = match self.options.encoding {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        };
        let content_encoding = match self.options.compression {
            Compression::None => "",
            Compression::Gzip => "Content-Encoding: gzip\r\n",
        };
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\n{content_encoding}Content-Length: {}\r\nUser-Agent: log-aggregator/{}\r\n\r\n",
            self.url.path,
            self.url.authority,
            self.body.len(),
            env!("CARGO_PKG_VERSION")
        );
        let writer = self.connection.get_mut();
        writer.write_all(head.as_bytes())?;
        writer.write_all(&self.body)?;
        writer.flush()?;
        let mut line = String::new();
        (&mut self.connection).take(8192).read_line(&mut line)?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad HTTP status line {line:?}"),
                )
            })?;
        let mut length = None;
        let mut retry_after = None;
        let mut close = false;
        loop {
            line.clear();
            let read = (&mut self.connection).take(8192).read_line(&mut line)?;
            if read == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse::<usize>().ok(),
                "retry-after" => retry_after = self::retry_after(value, jiff::Timestamp::now()),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                "transfer-encoding" => close = true,
                _ => {}
            }
        }
        let mut body = Vec::new();
        match length {
            Some(length) if length <= MAX_RESPONSE_BODY => {
                body.resize(length, 0);
                self.connection.read_exact(&mut body)?;
            }
            // Too long, chunked or unknown: not read; the connection is
            // not reused.
            _ => close = true,
        }
        Ok(Answer {
            status,
            retry_after,
            body,
            close,
        })
    }
}

impl Transport for Otlp {
    fn send(&mut self, messages: &Messages, from: usize) -> Result<(), SendError> {
        let request = request(
            messages,
            from,
            &self.resource,
            messages.observed_unix_nano,
            self.records,
        );
        self.encode(&request);
        let failed = |error: io::Error, retry_after, permanent| SendError {
            acknowledged: from,
            unanswered: messages.len() - from,
            error,
            retry_after,
            permanent,
        };
        if self.closed {
            // Nothing sent: reconnect at once.
            return Err(SendError {
                unanswered: 0,
                ..failed(
                    io::Error::new(io::ErrorKind::ConnectionReset, "the server closed"),
                    Some(Duration::ZERO),
                    false,
                )
            });
        }
        let early_in_tls = !self.answered;
        let answer = self
            .post()
            .map_err(|error| failed(closed(error, self.tls.as_ref(), early_in_tls), None, false))?;
        self.answered = true;
        self.closed = answer.close;
        match verdict(answer.status) {
            Verdict::Acknowledged => {
                if let Some((rejected, message)) =
                    rejected_records(self.options.encoding, &answer.body)
                {
                    self.rejected += u64::try_from(rejected).unwrap_or(0);
                    tracing::warn!(
                        "OTLP partial success from {}: {rejected} record(s) rejected (not sent again): {message}",
                        self.url.authority
                    );
                }
                if answer.close {
                    // Acknowledged; the next batch needs a new connection.
                    return Err(SendError {
                        acknowledged: messages.len(),
                        unanswered: 0,
                        error: io::Error::new(io::ErrorKind::ConnectionReset, "closed after 2xx"),
                        retry_after: Some(Duration::ZERO),
                        permanent: false,
                    });
                }
                Ok(())
            }
            Verdict::Retry => Err(failed(
                io::Error::other(format!("HTTP {}", answer.status)),
                answer.retry_after,
                false,
            )),
            Verdict::Drop => Err(failed(
                io::Error::other(format!(
                    "HTTP {}: {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)])
                )),
                None,
                true,
            )),
        }
    }

    fn rejected(&mut self) -> Option<u64> {
        (self.rejected > 0).then(|| std::mem::take(&mut self.rejected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefixed_line_gives_its_path_and_the_line() {
        assert_eq!(
            split_prefixed(b"/var/log/a.log: x: y"),
            ("/var/log/a.log".to_owned(), &b"x: y"[..])
        );
        assert_eq!(
            split_prefixed(b"/var/log/a\\nb\\\\c\\x7f.log: z"),
            ("/var/log/a\nb\\c\x7f.log".to_owned(), &b"z"[..])
        );
    }

    #[test]
    fn urls_default_to_port_80_and_v1_logs() {
        let url = HttpUrl::parse("http://collector").unwrap();
        assert_eq!(url.authority, "collector:80");
        assert_eq!(url.path, "/v1/logs");
        let url = HttpUrl::parse("http://127.0.0.1:4318/custom/logs").unwrap();
        assert_eq!(url.authority, "127.0.0.1:4318");
        assert_eq!(url.path, "/custom/logs");
        assert!(HttpUrl::parse("ftp://x").is_err());
        if cfg!(feature = "tls") {
            let url = HttpUrl::parse("https://collector").unwrap();
            assert_eq!((url.authority.as_str(), url.tls), ("collector:443", true));
        } else {
            let error = HttpUrl::parse("https://x").unwrap_err();
            assert!(error.contains("--features tls"), "{error}");
        }
    }

    #[test]
    fn a_request_has_one_record_per_line_with_file_attributes() {
        let mut messages = Messages::default();
        for text in ["/l/a.log: one", "/l/b.log: two"] {
            messages.bytes.extend_from_slice(text.as_bytes());
            messages.end();
        }
        let resource = [("k8s.pod.name".to_owned(), "pod-1".to_owned())];
        let request = request(&messages, 1, &resource, 42, false);
        let encoded = request.encode_to_vec();
        let decoded = ExportLogsServiceRequest::decode(encoded.as_slice()).unwrap();
        let logs = &decoded.resource_logs[0];
        assert_eq!(
            logs.resource.as_ref().unwrap().attributes,
            vec![string("k8s.pod.name", "pod-1")]
        );
        let records = &logs.scope_logs[0].log_records;
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].observed_time_unix_nano, 42);
        assert_eq!(
            records[0].body,
            Some(AnyValue {
                value: Some(Value::StringValue("two".into()))
            })
        );
        assert_eq!(
            records[0].attributes,
            vec![
                string("log.file.path", "/l/b.log"),
                string("log.file.name", "b.log")
            ]
        );
    }

    #[test]
    fn json_follows_the_otlp_mapping() {
        let mut messages = Messages::default();
        messages.bytes.extend_from_slice(b"/l/a.log: say \"hi\"");
        messages.end();
        let resource = [("k8s.pod.name".to_owned(), "pod-1".to_owned())];
        let mut request = request(&messages, 0, &resource, 1_700_000_000_000_000_001, false);
        let record = &mut request.resource_logs[0].scope_logs[0].log_records[0];
        record.severity_number = 17;
        record.time_unix_nano = 1_600_000_000_000_000_000;
        let mut second = record.clone();
        second.body = Some(AnyValue {
            value: Some(Value::BytesValue(vec![0xff, 0, b'a', b'b'])),
        });
        second.severity_number = 0;
        second.time_unix_nano = 0;
        request.resource_logs[0].scope_logs[0]
            .log_records
            .push(second);
        let mut out = Vec::new();
        to_json(&request, &mut out);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let logs = &json["resourceLogs"][0];
        assert_eq!(
            logs["resource"]["attributes"][0],
            serde_json::json!({"key": "k8s.pod.name", "value": {"stringValue": "pod-1"}})
        );
        assert_eq!(logs["scopeLogs"][0]["scope"]["name"], "log-aggregator");
        let records = &logs["scopeLogs"][0]["logRecords"];
        assert_eq!(
            records[0],
            serde_json::json!({
                "timeUnixNano": "1600000000000000000",
                "severityNumber": 17,
                "observedTimeUnixNano": "1700000000000000001",
                "body": {"stringValue": "say \"hi\""},
                "attributes": [
                    {"key": "log.file.path", "value": {"stringValue": "/l/a.log"}},
                    {"key": "log.file.name", "value": {"stringValue": "a.log"}},
                ],
            })
        );
        assert_eq!(
            records[1]["body"],
            serde_json::json!({"bytesValue": "/wBhYg=="})
        );
        assert!(
            records[1].get("timeUnixNano").is_none(),
            "defaults are left out"
        );
        assert!(records[1].get("severityNumber").is_none());
    }

    #[test]
    fn base64_pads_like_rfc4648() {
        for (input, expected) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ] {
            let mut out = Vec::new();
            base64(&mut out, input);
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    #[test]
    fn only_connection_level_and_overload_statuses_are_retried() {
        for status in [200, 202, 206] {
            assert_eq!(verdict(status), Verdict::Acknowledged, "{status}");
        }
        for status in [429, 502, 503, 504] {
            assert_eq!(verdict(status), Verdict::Retry, "{status}");
        }
        for status in [400, 401, 403, 404, 408, 413, 415, 500, 501, 301] {
            assert_eq!(verdict(status), Verdict::Drop, "{status}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now: jiff::Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
        assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after("Sat, 28 Nov 2026 12:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Sat, 28 Nov 2026 11:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past: now"
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(
            retry_after(
                "Thu, 29 Feb 2024 00:00:00 GMT",
                "2024-02-28T23:59:00Z".parse().unwrap()
            ),
            Some(Duration::from_secs(60)),
            "a leap day"
        );
        assert_eq!(
            retry_after(
                "Sun, 06 Nov 1994 08:49:37 GMT",
                "1994-11-06T08:49:30Z".parse().unwrap()
            ),
            Some(Duration::from_secs(7)),
            "RFC 9110's example"
        );
    }

    #[test]
    fn a_partial_success_gives_the_rejected_count_in_both_encodings() {
        let response = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: 3,
                error_message: "too old".into(),
            }),
        };
        assert_eq!(
            rejected_records(Encoding::Protobuf, &response.encode_to_vec()),
            Some((3, "too old".into()))
        );
        let json = br#"{"partialSuccess":{"rejectedLogRecords":"4","errorMessage":"x"}}"#;
        assert_eq!(
            rejected_records(Encoding::Json, json),
            Some((4, "x".into()))
        );
        assert_eq!(rejected_records(Encoding::Json, b"{}"), None);
        assert_eq!(
            rejected_records(
                Encoding::Protobuf,
                &ExportLogsServiceResponse::default().encode_to_vec()
            ),
            None
        );
    }

    #[test]
    fn gzip_bodies_are_gzip_members_any_decoder_reads() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        let data: Vec<u8> = (0..100_000u32).flat_map(|n| n.to_le_bytes()).collect();
        let mut body = Vec::new();
        gzip(&mut body, &data);
        assert!(body.len() < data.len() / 2, "{}", body.len());
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(body.as_slice())
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, data);
    }
}
