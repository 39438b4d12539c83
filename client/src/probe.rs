//! One try: resolve, connect, send, read the answer, follow redirects, check.
//!
//! A try is bounded as a whole: `timeout` covers name resolution, every
//! connection, every redirect and the whole body, like a Kubernetes probe's
//! `timeoutSeconds`; the body is read at most `max_body` bytes. Each try
//! opens its own connection(s) and asks the server to close them
//! (`Connection: close`), as kubelet's prober does, so every try also checks
//! that the server still accepts connections.
//!
//! Redirects follow kubelet's httpGet rules
//! (`pkg/probe/http/request.go`, `redirectChecker`): a redirect to the same
//! host (ports may differ) is followed, up to `max_redirects` (0 = never); a
//! redirect to another host, or to https, is not followed and the redirect
//! response itself is the answer, so with the default 200-399 it counts as a
//! success (kubelet: success with a warning).
//!
//! Every failure falls in one [`Reason`] class, which decides the log line,
//! the metrics label and the exit code.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, CONNECTION, HOST, HeaderMap, HeaderValue, LOCATION, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::body::BodyMatcher;
use crate::expect::StatusSet;
use crate::target::{Location, Target, resolve_location};

/// Default bound on the body bytes read for `--expect-body`.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// Default number of same-host redirects followed, kubelet's (and Go's) limit.
pub const DEFAULT_MAX_REDIRECTS: u32 = 10;

/// What a try sends and what it accepts.
#[derive(Clone, Debug)]
pub struct ProbeSpec {
    pub target: Target,
    pub method: Method,
    /// Extra headers; a `Host` here replaces the URL's.
    pub headers: HeaderMap,
    pub expect_status: StatusSet,
    pub expect_body: Option<regex_lite::Regex>,
    pub max_body: usize,
    pub max_redirects: u32,
    pub timeout: Duration,
}

/// The class of a failed try.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The host name did not resolve.
    Dns,
    /// The port answered with a reset: nothing listens there.
    Refused,
    /// Any other connect failure (unreachable network or host).
    Connect,
    /// The whole try did not finish within the timeout.
    Timeout,
    /// The server sent something that is not an HTTP/1 answer, or hung up early.
    BadResponse,
    /// A status outside `--expect-status`.
    Status(u16),
    /// The body did not match `--expect-body`.
    BodyMismatch,
    /// More same-host redirects than `--max-redirects`.
    Redirects,
}

impl Reason {
    /// Every class, in the order the documentation lists them (status with a placeholder code).
    pub const CLASSES: [Reason; 8] = [
        Reason::Refused,
        Reason::Connect,
        Reason::Timeout,
        Reason::Dns,
        Reason::Status(0),
        Reason::BodyMismatch,
        Reason::BadResponse,
        Reason::Redirects,
    ];

    /// The class without detail, as a metrics label: `status` for every status code.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Dns => "dns",
            Reason::Refused => "refused",
            Reason::Connect => "connect",
            Reason::Timeout => "timeout",
            Reason::BadResponse => "bad_response",
            Reason::Status(_) => "status",
            Reason::BodyMismatch => "body_mismatch",
            Reason::Redirects => "redirects",
        }
    }

    /// The process exit status for a try that failed this way (`--once`,
    /// `--max-failures`, `--count`). Where curl has a code for the same
    /// failure we use it, so probe scripts written for curl keep working.
    pub fn exit_code(self) -> u8 {
        match self {
            Reason::Dns => 6,
            Reason::Refused => 7,
            Reason::BadResponse => 8,
            Reason::Connect => 9,
            Reason::BodyMismatch => 10,
            Reason::Status(_) => 22,
            Reason::Timeout => 28,
            Reason::Redirects => 47,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Status(code) => write!(f, "status {code}"),
            Reason::BodyMismatch => f.write_str("body mismatch"),
            Reason::BadResponse => f.write_str("bad response"),
            other => f.write_str(other.label()),
        }
    }
}

/// A failed try: its class and what exactly went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    pub detail: String,
}

impl Failure {
    fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// What one try found.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Status of the last answer, if one came.
    pub status: Option<u16>,
    /// From the start of the try to its end (answer checked or failure).
    pub latency: Duration,
    /// Same-host redirects followed.
    pub redirects: u32,
    /// Set when the answer was a redirect we chose not to follow (another host, https).
    pub unfollowed: Option<String>,
    pub result: Result<(), Failure>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.result.is_ok()
    }
}

/// Runs one try of `spec`.
pub async fn probe(spec: &ProbeSpec) -> Outcome {
    let started = Instant::now();
    let mut progress = Progress::default();
    let result = match tokio::time::timeout(spec.timeout, run(spec, &mut progress)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(Failure::new(
            Reason::Timeout,
            format!(
                "no complete answer within {:?} ({})",
                spec.timeout,
                progress.stage.describe()
            ),
        )),
    };
    Outcome {
        status: progress.status,
        latency: started.elapsed(),
        redirects: progress.redirects,
        unfollowed: progress.unfollowed,
        result,
    }
}

/// How far a try got; kept outside the timed future so a timeout can say
/// where it was stuck.
#[derive(Default)]
struct Progress {
    stage: Stage,
    status: Option<u16>,
    redirects: u32,
    unfollowed: Option<String>,
}

#[derive(Default, Clone, Copy)]
enum Stage {
    #[default]
    Resolving,
    Connecting,
    WaitingForAnswer,
    ReadingBody,
}

impl Stage {
    fn describe(self) -> &'static str {
        match self {
            Stage::Resolving => "while resolving the host",
            Stage::Connecting => "while connecting",
            Stage::WaitingForAnswer => "connected, waiting for the answer",
            Stage::ReadingBody => "while reading the body",
        }
    }
}

async fn run(spec: &ProbeSpec, progress: &mut Progress) -> Result<(), Failure> {
    let mut target = spec.target.clone();
    loop {
        let answer = exchange(spec, &target, progress).await?;
        progress.status = Some(answer.status.as_u16());
        if answer.status.is_redirection() && spec.max_redirects > 0 {
            if let Some(location) = &answer.location {
                match resolve_location(&target, location) {
                    Location::Http(next) if spec.target.same_host(&next) => {
                        if progress.redirects >= spec.max_redirects {
                            return Err(Failure::new(
                                Reason::Redirects,
                                format!(
                                    "stopped after {} redirects (last to {})",
                                    progress.redirects,
                                    next.url()
                                ),
                            ));
                        }
                        progress.redirects += 1;
                        target = next;
                        continue;
                    }
                    Location::Http(next) => progress.unfollowed = Some(next.url()),
                    Location::Unfollowable(url) => progress.unfollowed = Some(url),
                }
            }
        }
        return check(spec, &answer);
    }
}

fn check(spec: &ProbeSpec, answer: &Answer) -> Result<(), Failure> {
    let code = answer.status.as_u16();
    if !spec.expect_status.contains(code) {
        return Err(Failure::new(
            Reason::Status(code),
            format!("got {}, expected {}", answer.status, spec.expect_status),
        ));
    }
    if let (Some(pattern), Some(false)) = (&spec.expect_body, answer.body_matched) {
        let read = if answer.truncated {
            format!("the first {} bytes of the body", answer.body_read)
        } else {
            format!("the {}-byte body", answer.body_read)
        };
        return Err(Failure::new(
            Reason::BodyMismatch,
            format!("{read} did not match {:?}", pattern.as_str()),
        ));
    }
    Ok(())
}

/// One request and its answer on a fresh connection.
struct Answer {
    status: StatusCode,
    location: Option<String>,
    /// Whether the body matched `--expect-body` (None without one).
    body_matched: Option<bool>,
    /// Body bytes read (at most `max_body`).
    body_read: usize,
    truncated: bool,
}

async fn exchange(
    spec: &ProbeSpec,
    target: &Target,
    progress: &mut Progress,
) -> Result<Answer, Failure> {
    progress.stage = Stage::Resolving;
    let addresses = resolve(target).await?;
    progress.stage = Stage::Connecting;
    let stream = connect(target, &addresses).await?;
    progress.stage = Stage::WaitingForAnswer;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| bad_response(target, &error))?;
    let request = build_request(spec, target)?;
    let answer = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| bad_response(target, &error))?;
        let (parts, body) = response.into_parts();
        progress.status = Some(parts.status.as_u16());
        progress.stage = Stage::ReadingBody;
        let mut matcher = spec.expect_body.as_ref().map(BodyMatcher::new);
        let (body_read, truncated) = read_body(body, spec.max_body, matcher.as_mut())
            .await
            .map_err(|error| bad_response(target, &error))?;
        let location = parts
            .headers
            .get(LOCATION)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        Ok(Answer {
            status: parts.status,
            location,
            body_matched: matcher.as_mut().map(BodyMatcher::finish),
            body_read,
            truncated,
        })
    };
    drive(answer, connection).await
}

/// Polls the exchange and the connection that carries it together, in this
/// task, until the exchange is done; dropping the connection then closes the
/// socket, so a try never leaves a connection or a task behind. The
/// connection may finish first (the server closed after the last byte): the
/// body is then still readable from hyper's buffer.
async fn drive<T>(
    answer: impl Future<Output = Result<T, Failure>>,
    connection: impl Future<Output = hyper::Result<()>>,
) -> Result<T, Failure> {
    let mut answer = std::pin::pin!(answer);
    let mut connection = std::pin::pin!(connection);
    let mut connection_done = false;
    loop {
        tokio::select! {
            outcome = &mut answer => return outcome,
            _ = &mut connection, if !connection_done => connection_done = true,
        }
    }
}

async fn resolve(target: &Target) -> Result<Vec<SocketAddr>, Failure> {
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|error| Failure::new(Reason::Dns, format!("resolving {}: {error}", target.host)))?
        .collect();
    if addresses.is_empty() {
        return Err(Failure::new(
            Reason::Dns,
            format!("resolving {}: no addresses", target.host),
        ));
    }
    Ok(addresses)
}

/// Tries each address in turn, like curl; `refused` if any address refused
/// (the host is up, nothing listens on the port), else `connect`.
async fn connect(target: &Target, addresses: &[SocketAddr]) -> Result<TcpStream, Failure> {
    let mut refused = false;
    let mut last_error: Option<(SocketAddr, io::Error)> = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                // One small request: do not wait for Nagle.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(error) => {
                refused |= error.kind() == io::ErrorKind::ConnectionRefused;
                last_error = Some((*address, error));
            }
        }
    }
    let detail = match last_error {
        Some((address, error)) => format!("connecting to {} ({address}): {error}", target.host),
        None => format!("connecting to {}: no address", target.host),
    };
    Err(Failure::new(
        if refused {
            Reason::Refused
        } else {
            Reason::Connect
        },
        detail,
    ))
}

fn build_request(spec: &ProbeSpec, target: &Target) -> Result<Request<Empty<Bytes>>, Failure> {
    let mut request = Request::builder()
        .method(spec.method.clone())
        .uri(target.path_and_query.as_str())
        .body(Empty::new())
        .map_err(|error| {
            Failure::new(
                Reason::BadResponse,
                format!("building the request for {}: {error}", target.url()),
            )
        })?;
    let headers = request.headers_mut();
    if !spec.headers.contains_key(HOST) {
        if let Ok(host) = HeaderValue::from_str(&target.authority) {
            headers.insert(HOST, host);
        }
    }
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    for (name, value) in &spec.headers {
        if name != USER_AGENT && name != ACCEPT {
            headers.append(name, value.clone());
        } else {
            headers.insert(name, value.clone());
        }
    }
    Ok(request)
}

/// `client/VERSION`, like kubelet's `kube-probe/VERSION`, so server logs show who asks.
const USER_AGENT_VALUE: &str = concat!("client/", env!("CARGO_PKG_VERSION"));

/// Reads the body to its end, passing at most `max` bytes to `matcher`;
/// stops reading once `max` bytes were seen (the rest is never transferred).
/// Returns the bytes read (at most `max`) and whether the body was longer.
async fn read_body(
    mut body: Incoming,
    max: usize,
    mut matcher: Option<&mut BodyMatcher<'_>>,
) -> Result<(usize, bool), hyper::Error> {
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let room = max.saturating_sub(seen);
        if let Some(matcher) = matcher.as_deref_mut() {
            matcher.push(&data[..data.len().min(room)]);
        }
        seen = seen.saturating_add(data.len());
        if seen > max {
            return Ok((max, true));
        }
    }
    Ok((seen, false))
}

fn bad_response(target: &Target, error: &hyper::Error) -> Failure {
    // hyper's Display is terse ("connection closed before message
    // completed"); its source chain holds the parse or I/O cause.
    let mut detail = format!("{}: {error}", target.url());
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        detail.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    Failure::new(Reason::BadResponse, detail)
}

#[cfg(test)]
#[path = "../tests/support/server.rs"]
mod server;

#[cfg(test)]
mod tests {
    use super::server::TestServer;
    use super::*;

    fn spec(url: &str) -> ProbeSpec {
        ProbeSpec {
            target: Target::parse(url).unwrap(),
            method: Method::GET,
            headers: HeaderMap::new(),
            expect_status: StatusSet::default(),
            expect_body: None,
            max_body: DEFAULT_MAX_BODY,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            timeout: Duration::from_secs(5),
        }
    }

    fn reason(outcome: &Outcome) -> Option<Reason> {
        outcome.result.as_ref().err().map(|failure| failure.reason)
    }

    #[tokio::test]
    async fn success_reports_status_and_latency() {
        let server = TestServer::start();
        let outcome = probe(&spec(&server.url("/"))).await;
        assert!(outcome.ok(), "{outcome:?}");
        assert_eq!(outcome.status, Some(200));
        assert!(outcome.latency > Duration::ZERO);
        let request = server.requests().pop().unwrap();
        assert_eq!(request.method, "GET");
        assert_eq!(request.header("connection").as_deref(), Some("close"));
        assert_eq!(request.header("host"), Some(server.authority()));
    }

    #[tokio::test]
    async fn refused_port_is_refused() {
        let url = format!("http://{}/", TestServer::closed_port_address());
        let outcome = probe(&spec(&url)).await;
        assert_eq!(reason(&outcome), Some(Reason::Refused), "{outcome:?}");
        assert_eq!(outcome.status, None);
    }

    /// A host name the resolver rejects without asking a DNS server (a label
    /// longer than 63 bytes), so the test sends no packet off the machine.
    pub(crate) fn unresolvable_host() -> String {
        format!("{}.invalid", "a".repeat(64))
    }

    #[tokio::test]
    async fn unknown_host_is_dns() {
        let outcome = probe(&spec(&format!("http://{}/", unresolvable_host()))).await;
        assert_eq!(reason(&outcome), Some(Reason::Dns), "{outcome:?}");
    }

    #[tokio::test]
    async fn slow_server_times_out_at_the_deadline() {
        let server = TestServer::start();
        let mut slow = spec(&server.url("/slow/5000"));
        slow.timeout = Duration::from_millis(200);
        let outcome = probe(&slow).await;
        assert_eq!(reason(&outcome), Some(Reason::Timeout), "{outcome:?}");
        assert!(outcome.latency < Duration::from_secs(2), "{outcome:?}");
        let detail = outcome.result.unwrap_err().detail;
        assert!(detail.contains("waiting for the answer"), "{detail}");
    }

    #[tokio::test]
    async fn slow_body_counts_against_the_same_timeout() {
        let server = TestServer::start();
        let mut slow = spec(&server.url("/slow-body/5000"));
        slow.timeout = Duration::from_millis(300);
        let outcome = probe(&slow).await;
        assert_eq!(reason(&outcome), Some(Reason::Timeout), "{outcome:?}");
        assert_eq!(outcome.status, Some(200));
        let detail = outcome.result.unwrap_err().detail;
        assert!(detail.contains("reading the body"), "{detail}");
    }

    #[tokio::test]
    async fn status_outside_the_set_fails_with_the_code() {
        let server = TestServer::start();
        let outcome = probe(&spec(&server.url("/status/500"))).await;
        assert_eq!(reason(&outcome), Some(Reason::Status(500)));
        let mut accept_500 = spec(&server.url("/status/500"));
        accept_500.expect_status = StatusSet::parse("5xx").unwrap();
        assert!(probe(&accept_500).await.ok());
    }

    #[tokio::test]
    async fn same_host_redirects_are_followed() {
        let server = TestServer::start();
        let outcome = probe(&spec(&server.url("/redirect/3"))).await;
        assert!(outcome.ok(), "{outcome:?}");
        assert_eq!(outcome.status, Some(200));
        assert_eq!(outcome.redirects, 3);
        let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
        assert_eq!(
            paths,
            ["/redirect/3", "/redirect/2", "/redirect/1", "/redirect/0"]
        );
    }

    #[tokio::test]
    async fn redirect_loop_stops_at_the_limit() {
        let server = TestServer::start();
        let outcome = probe(&spec(&server.url("/loop"))).await;
        assert_eq!(reason(&outcome), Some(Reason::Redirects), "{outcome:?}");
        assert_eq!(outcome.redirects, DEFAULT_MAX_REDIRECTS);
        assert_eq!(server.requests().len(), 11);
    }

    #[tokio::test]
    async fn zero_max_redirects_judges_the_redirect_itself() {
        let server = TestServer::start();
        let mut no_follow = spec(&server.url("/redirect/1"));
        no_follow.max_redirects = 0;
        let outcome = probe(&no_follow).await;
        assert!(outcome.ok(), "{outcome:?}");
        assert_eq!(outcome.status, Some(302));
        no_follow.expect_status = StatusSet::parse("200").unwrap();
        assert_eq!(reason(&probe(&no_follow).await), Some(Reason::Status(302)));
    }

    #[tokio::test]
    async fn cross_host_redirect_is_not_followed_and_counts_as_its_status() {
        let server = TestServer::start();
        let outcome = probe(&spec(&server.url("/away"))).await;
        assert!(outcome.ok(), "{outcome:?}");
        assert_eq!(outcome.status, Some(302));
        assert_eq!(
            outcome.unfollowed.as_deref(),
            Some("http://elsewhere.invalid/")
        );
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn body_regex_matches_and_mismatches() {
        let server = TestServer::start();
        let mut matching = spec(&server.url("/body/all-systems-go"));
        matching.expect_body = Some(regex_lite::Regex::new("systems-go$").unwrap());
        assert!(probe(&matching).await.ok());
        matching.expect_body = Some(regex_lite::Regex::new("degraded").unwrap());
        let outcome = probe(&matching).await;
        assert_eq!(reason(&outcome), Some(Reason::BodyMismatch));
        let detail = outcome.result.unwrap_err().detail;
        assert!(detail.contains("the 14-byte body"), "{detail}");
    }

    #[tokio::test]
    async fn body_is_read_only_up_to_the_bound() {
        let server = TestServer::start();
        let mut big = spec(&server.url("/big"));
        big.max_body = 64 * 1024;
        big.expect_body = Some(regex_lite::Regex::new("^x+$").unwrap());
        assert!(probe(&big).await.ok());
        big.expect_body = Some(regex_lite::Regex::new("END").unwrap());
        let outcome = probe(&big).await;
        let failure = outcome.result.unwrap_err();
        assert_eq!(failure.reason, Reason::BodyMismatch);
        assert!(failure.detail.contains("first 65536 bytes"), "{failure:?}");
    }

    #[tokio::test]
    async fn head_sends_head_and_reads_no_body() {
        let server = TestServer::start();
        let mut head = spec(&server.url("/"));
        head.method = Method::HEAD;
        assert!(probe(&head).await.ok());
        assert_eq!(server.requests().pop().unwrap().method, "HEAD");
    }

    #[tokio::test]
    async fn headers_are_sent_and_host_can_be_replaced() {
        let server = TestServer::start();
        let mut with_headers = spec(&server.url("/"));
        with_headers.headers = crate::target::parse_headers(&[
            "X-Probe: yes".to_owned(),
            "Host: app.example".to_owned(),
        ])
        .unwrap();
        assert!(probe(&with_headers).await.ok());
        let request = server.requests().pop().unwrap();
        assert_eq!(request.header("x-probe").as_deref(), Some("yes"));
        assert_eq!(request.header("host").as_deref(), Some("app.example"));
    }

    #[tokio::test]
    async fn connect_falls_back_to_the_next_address() {
        // `localhost` in a pod resolves to ::1 and 127.0.0.1; a server on
        // only one of them must still be reached.
        let server = TestServer::start();
        let target = Target::parse(&server.url("/")).unwrap();
        let addresses = [TestServer::closed_port_address(), server.address()];
        assert!(connect(&target, &addresses).await.is_ok());
        let failure = connect(&target, &addresses[..1]).await.unwrap_err();
        assert_eq!(failure.reason, Reason::Refused);
    }

    #[tokio::test]
    async fn garbage_is_a_bad_response() {
        let server = TestServer::garbage();
        let outcome = probe(&spec(&server.url("/"))).await;
        assert_eq!(reason(&outcome), Some(Reason::BadResponse), "{outcome:?}");
    }

    #[test]
    fn exit_codes_are_distinct_per_class() {
        let mut codes: Vec<u8> = Reason::CLASSES.iter().map(|r| r.exit_code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Reason::CLASSES.len());
        assert!(codes.iter().all(|code| *code > 2 && *code < 126));
    }

    #[test]
    fn reasons_read_as_documented() {
        assert_eq!(Reason::Status(503).to_string(), "status 503");
        assert_eq!(Reason::BodyMismatch.to_string(), "body mismatch");
        assert_eq!(Reason::BadResponse.to_string(), "bad response");
        assert_eq!(Reason::Refused.to_string(), "refused");
    }
}
