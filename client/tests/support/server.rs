//! A small HTTP/1 test server on 127.0.0.1:0 for the client's tests, shared by
//! the unit tests (`src/probe.rs` includes this file) and `tests/cli.rs`.
//!
//! It runs on its own thread with its own runtime, so synchronous process
//! tests and `#[tokio::test]`s can both use it, and it stops when dropped. It
//! records every request (method, path, headers) for the tests to inspect.
//!
//! Routes: `/` (200), `/status/N`, `/slow/MS` (answers after MS ms),
//! `/slow-body/MS` (head at once, the body's end after MS ms), `/redirect/N`
//! (a chain of N same-host redirects), `/loop` (redirects to itself), `/away`
//! (redirects to another host), `/body/TEXT`, `/big` (2 MiB of `x`, then `END`),
//! `/flaky` (200 on its 1st, 3rd, 5th... request, 503 on the others),
//! `/huge/MIB` (MIB MiB of `x` then `END`, streamed in 64 KiB chunks).
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    }
}

/// A running test server; stops when dropped.
pub struct TestServer {
    address: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// The HTTP server with the routes listed in the module documentation.
    pub fn start() -> Self {
        Self::run(Mode::Http)
    }

    /// A server that answers every connection with a line that is not HTTP.
    pub fn garbage() -> Self {
        Self::run(Mode::Garbage)
    }

    /// An address on which nothing listens (bound, then released).
    pub fn closed_port_address() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a port");
        listener.local_addr().expect("local address")
    }

    fn run(mode: Mode) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the test server");
        listener.set_nonblocking(true).expect("non-blocking");
        let address = listener.local_addr().expect("local address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = oneshot::channel();
        let record = seen.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("test server runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                tokio::select! {
                    _ = stopped => {}
                    _ = accept_loop(listener, mode, record) => {}
                }
            });
        });
        Self {
            address,
            seen,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `127.0.0.1:PORT`, the `Host` header the client sends.
    pub fn authority(&self) -> String {
        self.address.to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Clone, Copy)]
enum Mode {
    Http,
    Garbage,
}

async fn accept_loop(listener: tokio::net::TcpListener, mode: Mode, seen: Arc<Mutex<Vec<Seen>>>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            match mode {
                Mode::Garbage => {
                    let mut buffer = [0u8; 1024];
                    let _ = stream.read(&mut buffer).await;
                    let _ = stream.write_all(b"this is not HTTP\r\n\r\n").await;
                }
                Mode::Http => {
                    let service = hyper::service::service_fn(move |request| {
                        let seen = seen.clone();
                        async move { Ok::<_, Infallible>(respond(request, &seen).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}

type TestBody = BoxBody<Bytes, Infallible>;

fn full(status: u16, body: impl Into<Bytes>) -> Response<TestBody> {
    Response::builder()
        .status(StatusCode::from_u16(status).expect("valid status"))
        .body(Full::new(body.into()).boxed())
        .expect("valid response")
}

fn redirect(location: &str) -> Response<TestBody> {
    Response::builder()
        .status(StatusCode::FOUND)
        .header("location", location)
        .body(Full::new(Bytes::from_static(b"moved\n")).boxed())
        .expect("valid response")
}

async fn respond(request: Request<Incoming>, seen: &Mutex<Vec<Seen>>) -> Response<TestBody> {
    let path = request.uri().path().to_owned();
    seen.lock().expect("not poisoned").push(Seen {
        method: request.method().to_string(),
        path: path.clone(),
        headers: request
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
    });
    let flaky_seen = seen
        .lock()
        .expect("not poisoned")
        .iter()
        .filter(|request| request.path == "/flaky")
        .count();
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(2, '/').collect();
    let number =
        |index: usize| -> u64 { parts.get(index).and_then(|p| p.parse().ok()).unwrap_or(0) };
    match parts[0] {
        "" => full(200, "hello from the test server\n"),
        "status" => full(number(1) as u16, "status\n"),
        "slow" => {
            tokio::time::sleep(Duration::from_millis(number(1))).await;
            full(200, "slow\n")
        }
        "slow-body" => Response::new(
            Delayed {
                first: Some(Bytes::from_static(b"first part\n")),
                delay: Box::pin(tokio::time::sleep(Duration::from_millis(number(1)))),
                rest: Some(Bytes::from_static(b"the rest\n")),
            }
            .boxed(),
        ),
        "redirect" if number(1) == 0 => full(200, "landed\n"),
        "redirect" => redirect(&format!("/redirect/{}", number(1) - 1)),
        "loop" => redirect("/loop"),
        "flaky" if flaky_seen % 2 == 1 => full(200, "up\n"),
        "flaky" => full(503, "down\n"),
        "away" => redirect("http://elsewhere.invalid/"),
        "body" => full(200, parts.get(1).copied().unwrap_or_default().to_owned()),
        "big" => {
            let mut body = vec![b'x'; 2 * 1024 * 1024];
            body.extend_from_slice(b"END");
            full(200, body)
        }
        "huge" => Response::new(
            Huge {
                remaining: number(1) * 1024 * 1024,
                end: Some(Bytes::from_static(b"END")),
            }
            .boxed(),
        ),
        _ => full(404, "not found\n"),
    }
}

/// A body whose first part comes at once and whose rest comes after a delay.
struct Delayed {
    first: Option<Bytes>,
    delay: Pin<Box<tokio::time::Sleep>>,
    rest: Option<Bytes>,
}

impl Body for Delayed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if self.rest.is_none() {
            return Poll::Ready(None);
        }
        match self.delay.as_mut().poll(context) {
            Poll::Ready(()) => Poll::Ready(self.rest.take().map(|rest| Ok(Frame::data(rest)))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// `/huge`: a body of many chunks of `x`, never held whole by the server.
struct Huge {
    remaining: u64,
    end: Option<Bytes>,
}

impl Body for Huge {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        const CHUNK: &[u8] = &[b'x'; 64 * 1024];
        if self.remaining > 0 {
            let size = self.remaining.min(CHUNK.len() as u64) as usize;
            self.remaining -= size as u64;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK[..size])))));
        }
        Poll::Ready(self.end.take().map(|end| Ok(Frame::data(end))))
    }
}
