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
//! bytes), `observed_time_unix_nano` when the batch was sent, attributes
//! `log.file.path` and `log.file.name`; the resource's attributes come from
//! the configuration (`k8s.pod.name`... from the environment).
//!
//! Delivery (<https://opentelemetry.io/docs/specs/otlp/#failures-1>):
//! 2xx acknowledges the whole batch (a partial success is logged: the
//! server took the request and will not take the rejected records again);
//! connection errors and 429/502/503/504 are retried, after `Retry-After`
//! when the server sends one (seconds); any other status (400, 413...) is
//! permanent: retrying cannot help, so the batch is dropped and counted.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use prost::Message;

use super::transport::{Messages, SendError, Timeouts, Transport, connect};

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

/// The request for `messages[from..]` (each a `--output prefixed` line).
pub fn request(
    messages: &Messages,
    from: usize,
    resource: &[(String, String)],
    observed_unix_nano: u64,
) -> ExportLogsServiceRequest {
    let log_records = (from..messages.len())
        .map(|index| {
            let (path, line) = split_prefixed(messages.get(index));
            let name = std::path::Path::new(&path)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            let body = match std::str::from_utf8(line) {
                Ok(text) => Value::StringValue(text.to_owned()),
                Err(_) => Value::BytesValue(line.to_vec()),
            };
            LogRecord {
                time_unix_nano: 0,
                observed_time_unix_nano: observed_unix_nano,
                body: Some(AnyValue { value: Some(body) }),
                attributes: vec![
                    string("log.file.path", &path),
                    string("log.file.name", &name),
                ],
            }
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

/// An `http://host:port/path` URL, split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// `host:port` (port 80 when none).
    pub authority: String,
    pub path: String,
}

impl HttpUrl {
    /// `http://HOST[:PORT][/PATH]`; the path defaults to `/v1/logs`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("{url:?}: only http:// URLs (TLS: a mesh sidecar, see docs/shipping.md)")
        })?;
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
            format!("{authority}:80")
        };
        Ok(Self {
            authority,
            path: path.to_owned(),
        })
    }
}

/// Longest response body read (a partial-success message).
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// OTLP/HTTP over one keep-alive connection.
pub struct Otlp {
    url: HttpUrl,
    resource: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    body: Vec<u8>,
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
        timeouts: Timeouts,
    ) -> io::Result<Self> {
        let stream = connect(&url.authority, timeouts)?;
        Ok(Self {
            url: url.clone(),
            resource: resource.to_vec(),
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            body: Vec::new(),
        })
    }

    fn post(&mut self) -> io::Result<Answer> {
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nUser-Agent: log-aggregator/{}\r\n\r\n",
            self.url.path,
            self.url.authority,
            self.body.len(),
            env!("CARGO_PKG_VERSION")
        );
        self.writer.write_all(head.as_bytes())?;
        self.writer.write_all(&self.body)?;
        let mut line = String::new();
        (&mut self.reader).take(8192).read_line(&mut line)?;
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
            let read = (&mut self.reader).take(8192).read_line(&mut line)?;
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
                // Seconds; an HTTP date is taken as "use the backoff".
                "retry-after" => retry_after = value.parse().ok().map(Duration::from_secs),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                "transfer-encoding" => close = true,
                _ => {}
            }
        }
        let mut body = Vec::new();
        match length {
            Some(length) if length <= MAX_RESPONSE_BODY => {
                body.resize(length, 0);
                self.reader.read_exact(&mut body)?;
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
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.as_nanos() as u64)
            .unwrap_or(0);
        let request = request(messages, from, &self.resource, now);
        self.body.clear();
        // Encoding into a Vec cannot fail (it grows as needed).
        let _ = request.encode(&mut self.body);
        let failed = |error: io::Error, retry_after, permanent| SendError {
            acknowledged: from,
            unanswered: messages.len() - from,
            error,
            retry_after,
            permanent,
        };
        let answer = self.post().map_err(|error| failed(error, None, false))?;
        if answer.close {
            // The caller reconnects on the next error; a clean close is
            // found by the next write failing, which is retried.
            let _ = self.writer.shutdown(std::net::Shutdown::Both);
        }
        match answer.status {
            200..=299 => {
                if let Ok(response) = ExportLogsServiceResponse::decode(answer.body.as_slice()) {
                    if let Some(partial) = response.partial_success {
                        if partial.rejected_log_records > 0 || !partial.error_message.is_empty() {
                            tracing::warn!(
                                "OTLP partial success: {} record(s) rejected: {}",
                                partial.rejected_log_records,
                                partial.error_message
                            );
                        }
                    }
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
            429 | 502 | 503 | 504 => Err(failed(
                io::Error::other(format!("HTTP {}", answer.status)),
                answer.retry_after,
                false,
            )),
            status => Err(failed(
                io::Error::other(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)])
                )),
                None,
                true,
            )),
        }
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
        assert!(HttpUrl::parse("https://x").is_err());
    }

    #[test]
    fn a_request_has_one_record_per_line_with_file_attributes() {
        let mut messages = Messages::default();
        for text in ["/l/a.log: one", "/l/b.log: two"] {
            messages.bytes.extend_from_slice(text.as_bytes());
            messages.end();
        }
        let resource = [("k8s.pod.name".to_owned(), "pod-1".to_owned())];
        let request = request(&messages, 1, &resource, 42);
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
}
