//! The connections to a syslog backend: plain TCP (RFC 6587 octet
//! counting) and RELP, each over TCP or, in the `tls` build, TLS
//! ([`super::tls`]: syslog over TLS is RFC 5425, the same octet-counted
//! frames). Synchronous, one connection each, driven by the shipper
//! thread ([`super::Shipper`]).
//!
//! RELP as rsyslog documents it (<https://www.rsyslog.com/doc/relp.html>,
//! librelp's `doc/relp.html`): the client opens with `1 open` and the
//! offers, then sends each message as `TXNR syslog LEN MSG`; the server
//! answers each with `TXNR rsp LEN 200 OK` once it has taken the message.
//! Transaction numbers run 1..=999_999_999, then wrap to 1. The client
//! keeps at most [`RELP_WINDOW`] messages unanswered (librelp's default
//! window). A message is acknowledged only by its own `rsp 200`; the
//! answers come in order, so what is acknowledged is always a prefix of
//! what was sent, and after a broken connection the rest is sent again:
//! a message the server wrote but whose answer was lost is then a
//! duplicate, the only duplicates RELP allows.
//!
//! Plain TCP has no answers: a message is "sent" once `write(2)` took it,
//! and what is in the kernel's buffers when the connection breaks is lost.
//! Before each batch the socket is read without blocking for the peer's
//! close (EOF, or a TLS close_notify), so a backend restarted between two
//! batches loses nothing; one that dies during a batch loses what the
//! kernel had not delivered.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::syslog::{octet_counted, relp_frame};
use super::tls::{Stream, TlsClient};

/// Unanswered RELP messages at most (librelp's default window size).
pub const RELP_WINDOW: usize = 128;

/// Highest RELP transaction number; the next one is 1.
const TXNR_MAX: u64 = 999_999_999;

/// Longest RELP answer we read (an `open` answer lists the offers: a few
/// hundred bytes); anything longer is a protocol error, not a buffer.
const RELP_MAX_ANSWER: usize = 64 * 1024;

/// Messages ready to send: their bytes back to back, and where each ends.
#[derive(Default)]
pub struct Messages {
    pub bytes: Vec<u8>,
    pub ends: Vec<usize>,
    /// When the batch's first line reached the shipper (ns since the Unix
    /// epoch): OTLP's `observed_time_unix_nano`, the same on every retry.
    pub observed_unix_nano: u64,
}

impl Messages {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// Message `index`.
    pub fn get(&self, index: usize) -> &[u8] {
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        &self.bytes[start..self.ends[index]]
    }

    /// Marks the end of the message just appended to `bytes`.
    pub fn end(&mut self) {
        self.ends.push(self.bytes.len());
    }
}

/// Why a batch did not go through, and how many of its first messages did.
#[derive(Debug)]
pub struct SendError {
    pub acknowledged: usize,
    /// Messages that may have reached the server (sent, or being sent)
    /// without their acknowledgement: what a retry may duplicate.
    pub unanswered: usize,
    pub error: io::Error,
    /// How long the server asked us to wait (HTTP `Retry-After`).
    pub retry_after: Option<Duration>,
    /// Retrying cannot help (HTTP 400, 413...): the batch is dropped.
    pub permanent: bool,
}

/// A connection to one backend.
pub trait Transport: Send {
    /// Sends `messages[from..]`; `Ok` once every one is acknowledged (RELP)
    /// or taken by the kernel (TCP).
    fn send(&mut self, messages: &Messages, from: usize) -> Result<(), SendError>;

    /// Records the backend refused inside requests it acknowledged since
    /// the last call (an OTLP partial success), if any.
    fn rejected(&mut self) -> Option<u64> {
        None
    }
}

/// stdout as one sink among others: each message a line; acknowledged
/// once flushed (the same promise as the stdout-only path).
#[derive(Default)]
pub struct StdoutLines {
    lines: Vec<u8>,
}

impl Transport for StdoutLines {
    fn send(&mut self, messages: &Messages, from: usize) -> Result<(), SendError> {
        self.lines.clear();
        for index in from..messages.len() {
            self.lines.extend_from_slice(messages.get(index));
            self.lines.push(b'\n');
        }
        let mut stdout = io::stdout().lock();
        stdout
            .write_all(&self.lines)
            .and_then(|()| stdout.flush())
            .map_err(|error| SendError {
                acknowledged: from,
                unanswered: messages.len() - from,
                error,
                retry_after: None,
                permanent: false,
            })
    }
}

/// Timeouts of connecting, writing and waiting for answers.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub io: Duration,
}

pub fn connect(address: &str, timeouts: Timeouts) -> io::Result<TcpStream> {
    let addresses: Vec<SocketAddr> = address.to_socket_addrs()?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for socket in addresses {
        match TcpStream::connect_timeout(&socket, timeouts.connect) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(timeouts.io))?;
                stream.set_write_timeout(Some(timeouts.io))?;
                return Ok(stream);
            }
            Err(error) => last = error,
        }
    }
    Err(last)
}

/// TCP (or TLS) to `address`, `HOST:PORT`; TLS through `tls` when given.
pub fn connect_stream(
    address: &str,
    tls: Option<&TlsClient>,
    timeouts: Timeouts,
) -> io::Result<Stream> {
    Stream::over(connect(address, timeouts)?, tls, address)
}

/// `error` with a hint when the server asked for a client certificate and
/// none is configured (`tls`), or when it closed or reset the connection
/// right at the start of a TLS session (`early_in_tls`): then it most
/// likely refused our client certificate.
/// Over TLS 1.3 the server checks the client's certificate after the
/// client's handshake is done, so its refusal shows as a close before the
/// first batch or while one is written (or, for OTLP, as the first
/// request's failure).
pub fn closed(error: io::Error, tls: Option<&TlsClient>, early_in_tls: bool) -> io::Error {
    let closing = matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    );
    let Some(tls) = tls else {
        return error;
    };
    // Whatever shows the refusal: the server's alert, or a reset.
    let hint = if tls.certificate_asked_for_none() {
        "the server asked for a client certificate and none is configured: see \
         --ship-client-cert and --ship-client-key"
    } else if closing && early_in_tls {
        "right after the TLS handshake (does it require a client certificate it did not \
         accept? see --ship-client-cert)"
    } else {
        return error;
    };
    io::Error::new(error.kind(), format!("{error} ({hint})"))
}

/// Syslog over TCP, RFC 6587 octet counting; over TLS, RFC 5425.
pub struct TcpSyslog {
    stream: Stream,
    tls: Option<TlsClient>,
    /// Batches written on this connection.
    batches: u64,
    frames: Vec<u8>,
}

impl TcpSyslog {
    pub fn connect(address: &str, tls: Option<&TlsClient>, timeouts: Timeouts) -> io::Result<Self> {
        Ok(Self {
            stream: connect_stream(address, tls, timeouts)?,
            tls: tls.cloned(),
            batches: 0,
            frames: Vec::new(),
        })
    }
}

impl Transport for TcpSyslog {
    fn send(&mut self, messages: &Messages, from: usize) -> Result<(), SendError> {
        if let Err(error) = self.stream.check_open() {
            return Err(SendError {
                acknowledged: from,
                unanswered: 0,
                error: closed(error, self.tls.as_ref(), self.batches <= 1),
                retry_after: None,
                permanent: false,
            });
        }
        self.frames.clear();
        for index in from..messages.len() {
            octet_counted(&mut self.frames, messages.get(index));
        }
        self.batches += 1;
        let early_in_tls = self.batches <= 1;
        let tls = self.tls.as_ref();
        self.stream
            .write_all(&self.frames)
            .and_then(|()| self.stream.flush())
            .map_err(|error| SendError {
                acknowledged: from,
                unanswered: messages.len() - from,
                error: closed(error, tls, early_in_tls),
                retry_after: None,
                permanent: false,
            })
    }
}

/// A RELP session, over TCP or TLS.
pub struct Relp {
    /// Read through the buffer; written through `get_mut`.
    stream: BufReader<Stream>,
    /// The next transaction number.
    txnr: u64,
    frames: Vec<u8>,
}

/// What the client offers at `open`.
const RELP_OFFERS: &[u8] = b"relp_version=0\nrelp_software=log-aggregator\ncommands=syslog";

fn protocol(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Relp {
    pub fn connect(address: &str, tls: Option<&TlsClient>, timeouts: Timeouts) -> io::Result<Self> {
        let mut session = Self {
            stream: BufReader::new(connect_stream(address, tls, timeouts)?),
            txnr: 1,
            frames: Vec::new(),
        };
        let txnr = session.next_txnr();
        relp_frame(&mut session.frames, txnr, "open", RELP_OFFERS);
        session.write_frames()?;
        session.frames.clear();
        let (answered, data) = session.answer().map_err(|error| closed(error, tls, true))?;
        if answered != txnr || !data.starts_with(b"200") {
            return Err(protocol(format!(
                "RELP open refused: {}",
                String::from_utf8_lossy(&data)
            )));
        }
        Ok(session)
    }

    fn write_frames(&mut self) -> io::Result<()> {
        let stream = self.stream.get_mut();
        stream.write_all(&self.frames)?;
        stream.flush()
    }

    fn next_txnr(&mut self) -> u64 {
        let txnr = self.txnr;
        self.txnr = if txnr >= TXNR_MAX { 1 } else { txnr + 1 };
        txnr
    }

    /// Reads one `TXNR rsp DATALEN [DATA]` answer: (txnr, data).
    fn answer(&mut self) -> io::Result<(u64, Vec<u8>)> {
        let txnr = self.token()?;
        let command = self.token()?;
        if command == b"serverclose" {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the RELP server closed the session",
            ));
        }
        if command != b"rsp" {
            return Err(protocol(format!(
                "unexpected RELP command {:?}",
                String::from_utf8_lossy(&command)
            )));
        }
        let txnr = number(&txnr)?;
        // DATALEN ends with a space (data follows) or the trailer.
        let mut length = Vec::new();
        loop {
            let byte = self.byte()?;
            if byte == b' ' || byte == b'\n' {
                let size = usize::try_from(number(&length)?).unwrap_or(usize::MAX);
                if size > RELP_MAX_ANSWER {
                    return Err(protocol(format!("RELP answer of {size} bytes")));
                }
                let mut data = vec![0; size];
                if byte == b' ' {
                    self.stream.read_exact(&mut data)?;
                    if self.byte()? != b'\n' {
                        return Err(protocol("RELP answer without its trailer".into()));
                    }
                } else if size != 0 {
                    return Err(protocol("RELP answer without its data".into()));
                }
                return Ok((txnr, data));
            }
            length.push(byte);
            if length.len() > 9 {
                return Err(protocol("RELP answer length too long".into()));
            }
        }
    }

    fn byte(&mut self) -> io::Result<u8> {
        let mut byte = [0u8; 1];
        self.stream.read_exact(&mut byte)?;
        Ok(byte[0])
    }

    /// Bytes up to the next space (at most 32).
    fn token(&mut self) -> io::Result<Vec<u8>> {
        let mut token = Vec::new();
        let read = (&mut self.stream).take(33).read_until(b' ', &mut token)?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the RELP server closed the connection",
            ));
        }
        if token.pop() != Some(b' ') {
            return Err(protocol(format!(
                "bad RELP answer {:?}",
                String::from_utf8_lossy(&token)
            )));
        }
        Ok(token)
    }

    /// Sends `messages[from..]` keeping up to [`RELP_WINDOW`] unanswered,
    /// topping the window up after every read of answers (waiting for a
    /// whole window to be answered costs a delayed-ACK round trip, 40 ms,
    /// per window); returns how many are acknowledged when it fails.
    fn pipeline(&mut self, messages: &Messages, from: usize) -> Result<(), SendError> {
        let mut acknowledged = from;
        let mut next = from;
        let mut outstanding = std::collections::VecDeque::with_capacity(RELP_WINDOW);
        let fail = |acknowledged, sent: usize, error| SendError {
            acknowledged,
            unanswered: sent - acknowledged,
            error,
            retry_after: None,
            permanent: false,
        };
        while acknowledged < messages.len() {
            self.frames.clear();
            while next < messages.len() && outstanding.len() < RELP_WINDOW {
                let txnr = self.next_txnr();
                outstanding.push_back(txnr);
                relp_frame(&mut self.frames, txnr, "syslog", messages.get(next));
                next += 1;
            }
            if !self.frames.is_empty() {
                self.write_frames()
                    .map_err(|error| fail(acknowledged, next, error))?;
            }
            // At least one answer, then every one already received.
            loop {
                let (answered, data) = self
                    .answer()
                    .map_err(|error| fail(acknowledged, next, error))?;
                let expected = outstanding.pop_front().unwrap_or(0);
                if answered != expected {
                    return Err(fail(
                        acknowledged,
                        next,
                        protocol(format!(
                            "RELP answer for transaction {answered}, expected {expected}"
                        )),
                    ));
                }
                if !data.starts_with(b"200") {
                    return Err(fail(
                        acknowledged,
                        next,
                        protocol(format!(
                            "RELP server refused a message: {}",
                            String::from_utf8_lossy(&data)
                        )),
                    ));
                }
                acknowledged += 1;
                if outstanding.is_empty() || self.stream.buffer().is_empty() {
                    break;
                }
            }
        }
        Ok(())
    }
}

fn number(digits: &[u8]) -> io::Result<u64> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| {
            protocol(format!(
                "bad number in RELP answer {:?}",
                String::from_utf8_lossy(digits)
            ))
        })
}

impl Transport for Relp {
    fn send(&mut self, messages: &Messages, from: usize) -> Result<(), SendError> {
        self.pipeline(messages, from)
    }
}

impl Drop for Relp {
    fn drop(&mut self) {
        // A polite close; the answer is not waited for.
        self.frames.clear();
        let txnr = self.next_txnr();
        relp_frame(&mut self.frames, txnr, "close", b"");
        let _ = self.write_frames();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    fn timeouts() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(5),
            io: Duration::from_secs(5),
        }
    }

    fn messages(texts: &[&str]) -> Messages {
        let mut messages = Messages::default();
        for text in texts {
            messages.bytes.extend_from_slice(text.as_bytes());
            messages.end();
        }
        messages
    }

    /// A RELP server that answers `open` and then `answers` syslog messages
    /// with 200, then closes; returns what it received.
    fn server(answers: usize) -> (String, thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let thread = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            let mut received = Vec::new();
            let mut answered = 0;
            loop {
                let mut head = Vec::new();
                // txnr, command, length
                let mut fields = Vec::new();
                for _ in 0..3 {
                    head.clear();
                    let mut byte = [0u8];
                    loop {
                        if reader.read_exact(&mut byte).is_err() {
                            return received;
                        }
                        if byte[0] == b' ' || byte[0] == b'\n' {
                            break;
                        }
                        head.push(byte[0]);
                    }
                    fields.push(String::from_utf8(head.clone()).unwrap());
                    if byte[0] == b'\n' {
                        break;
                    }
                }
                let length: usize = fields[2].parse().unwrap();
                let mut data = vec![0; length];
                if length > 0 {
                    reader.read_exact(&mut data).unwrap();
                    let mut trailer = [0u8];
                    reader.read_exact(&mut trailer).unwrap();
                }
                match fields[1].as_str() {
                    "open" => {
                        let reply = "200 OK\nrelp_version=0\ncommands=syslog";
                        writeln!(writer, "{} rsp {} {reply}", fields[0], reply.len()).unwrap();
                    }
                    "syslog" => {
                        if answered == answers {
                            return received;
                        }
                        answered += 1;
                        received.extend_from_slice(&data);
                        received.push(b'\n');
                        writeln!(writer, "{} rsp 6 200 OK", fields[0]).unwrap();
                    }
                    _ => return received,
                }
            }
        });
        (address, thread)
    }

    #[test]
    fn relp_sends_every_message_and_waits_for_each_answer() {
        let (address, server) = server(usize::MAX);
        let mut relp = Relp::connect(&address, None, timeouts()).unwrap();
        let texts: Vec<String> = (0..300)
            .map(|n| format!("line {n}\nwith newline"))
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        relp.send(&messages(&refs), 0).unwrap();
        drop(relp);
        let received = server.join().unwrap();
        let expected: String = texts.iter().map(|text| format!("{text}\n")).collect();
        assert_eq!(String::from_utf8(received).unwrap(), expected);
    }

    #[test]
    fn relp_reports_the_acknowledged_prefix_when_the_server_goes_away() {
        let (address, server) = server(130);
        let mut relp = Relp::connect(&address, None, timeouts()).unwrap();
        let texts: Vec<String> = (0..300).map(|n| format!("{n}")).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let error = relp.send(&messages(&refs), 0).unwrap_err();
        // Exactly the answered ones.
        assert_eq!(error.acknowledged, 130);
        drop(server.join());
    }
}
