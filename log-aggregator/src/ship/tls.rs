//! The one TLS client setup every TLS sink uses (`https://` OTLP,
//! `tls://` syslog and RELP): the certificates trusted (`--ship-ca-file`),
//! the client certificate and key when the server asks for one
//! (`--ship-client-cert`, `--ship-client-key`), and the byte stream a
//! transport reads and writes, TCP or TLS over it ([`Stream`]).
//!
//! TLS is in the `tls` build only (rustls 0.23 with the `ring` provider,
//! TLS 1.2 and 1.3): it adds about 0.9 MB, more than the default image has
//! room for (docs/shipping.md, *TLS*). The default build keeps these types
//! with the TCP case alone, and refuses a TLS address at start, naming the
//! `tls` build ([`no_tls`]).
//!
//! Files are read once, at start ([`TlsClient::load`]): a missing or bad
//! file is an error naming it before anything is followed, not a reason to
//! retry a connection forever. The server is verified against the CA file
//! and the host of its address (a DNS name or an IP address).

use std::io::{self, Read, Write};
use std::net::TcpStream;
#[cfg(feature = "tls")]
use std::path::Path;
use std::path::PathBuf;

/// What a TLS sink needs from the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificates trusted to sign the server's.
    pub ca_file: PathBuf,
    /// PEM certificate chain and private key sent when the server asks
    /// for a client certificate (mutual TLS): both or neither.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Why the TLS setup could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {}: {reason}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Config(String),
}

/// The start-up error of a TLS address in the default build.
pub fn no_tls(address: &str) -> String {
    format!(
        "{address:?}: this build has no TLS: use the image built with --features tls, \
         or plain TCP to a mesh sidecar (see docs/shipping.md, TLS)"
    )
}

/// The loaded client setup, shared by every TLS connection of every sink.
#[derive(Clone)]
pub struct TlsClient {
    #[cfg(feature = "tls")]
    config: std::sync::Arc<rustls::ClientConfig>,
    /// Set when a server asked for a client certificate and none is
    /// configured ([`NoClientCertificate`]).
    #[cfg(feature = "tls")]
    certificate_asked: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The client-certificate side when none is configured: sends none, as
/// rustls' `with_no_client_auth` does, and remembers that a server asked.
/// Over TLS 1.3 such a server refuses us only after our handshake is done:
/// its alert may be lost to the reset of a connection we were writing to,
/// and this is what still names the cause.
#[cfg(feature = "tls")]
#[derive(Debug)]
struct NoClientCertificate {
    asked: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[cfg(feature = "tls")]
impl rustls::client::ResolvesClientCert for NoClientCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        self.asked.store(true, std::sync::atomic::Ordering::Relaxed);
        None
    }

    fn has_certs(&self) -> bool {
        false
    }
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("TlsClient")
    }
}

#[cfg(feature = "tls")]
fn file_error<'a>(what: &'static str, path: &'a Path) -> impl Fn(String) -> TlsError + 'a {
    move |reason| TlsError::File {
        what,
        path: path.to_owned(),
        reason,
    }
}

impl TlsClient {
    /// Reads the CA file and the client certificate and key.
    #[cfg(feature = "tls")]
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let ca = file_error("--ship-ca-file", &files.ca_file);
        let mut roots = rustls::RootCertStore::empty();
        for certificate in
            CertificateDer::pem_file_iter(&files.ca_file).map_err(|error| ca(error.to_string()))?
        {
            let certificate = certificate.map_err(|error| ca(error.to_string()))?;
            roots
                .add(certificate)
                .map_err(|error| ca(error.to_string()))?;
        }
        if roots.is_empty() {
            return Err(ca("no PEM certificate in it".into()));
        }
        let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Config(error.to_string()))?
        .with_root_certificates(roots);
        let certificate_asked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let config = match &files.client_cert {
            None => builder.with_client_cert_resolver(std::sync::Arc::new(NoClientCertificate {
                asked: certificate_asked.clone(),
            })),
            Some((cert_path, key_path)) => {
                let cert = file_error("--ship-client-cert", cert_path);
                let chain = CertificateDer::pem_file_iter(cert_path)
                    .map_err(|error| cert(error.to_string()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|error| cert(error.to_string()))?;
                if chain.is_empty() {
                    return Err(cert("no PEM certificate in it".into()));
                }
                let key = PrivateKeyDer::from_pem_file(key_path).map_err(|error| {
                    file_error("--ship-client-key", key_path)(format!(
                        "{error} (expected a PEM private key: PKCS#8, PKCS#1 or SEC1)"
                    ))
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|error| {
                    TlsError::Config(format!(
                        "--ship-client-cert {} with --ship-client-key {}: {error}",
                        cert_path.display(),
                        key_path.display()
                    ))
                })?
            }
        };
        Ok(Self {
            config: std::sync::Arc::new(config),
            certificate_asked,
        })
    }

    /// Whether a server asked for a client certificate, none being
    /// configured: its closing or resetting a connection is then most
    /// likely its refusal.
    pub fn certificate_asked_for_none(&self) -> bool {
        #[cfg(feature = "tls")]
        return self
            .certificate_asked
            .load(std::sync::atomic::Ordering::Relaxed);
        #[cfg(not(feature = "tls"))]
        false
    }

    /// The default build has no TLS.
    #[cfg(not(feature = "tls"))]
    pub fn load(_files: &TlsFiles) -> Result<Self, TlsError> {
        Err(TlsError::Config(
            "this build has no TLS: use the image built with --features tls".into(),
        ))
    }

    /// TLS over `stream` to the host of `address` (`HOST:PORT`,
    /// `[V6]:PORT`), verified as that name, after the handshake.
    #[cfg(feature = "tls")]
    pub fn wrap(&self, stream: TcpStream, address: &str) -> io::Result<Stream> {
        let host = address
            .rsplit_once(':')
            .map_or(address, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|error| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{host:?}: {error}"))
        })?;
        let connection =
            rustls::ClientConnection::new(self.config.clone(), name).map_err(io::Error::other)?;
        let mut stream = rustls::StreamOwned::new(connection, stream);
        // The handshake now, so a refused certificate is the connection's
        // error (with rustls' reason), not a later write's.
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(Stream::Tls(Box::new(stream)))
    }

    #[cfg(not(feature = "tls"))]
    pub fn wrap(&self, _stream: TcpStream, address: &str) -> io::Result<Stream> {
        Err(io::Error::new(io::ErrorKind::Unsupported, no_tls(address)))
    }
}

/// A connection's bytes: TCP, or TLS over TCP (the `tls` build). An enum,
/// not a trait object: the default build keeps the TCP case alone.
pub enum Stream {
    Tcp(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    /// TCP, or TLS through `tls` when given.
    pub fn over(stream: TcpStream, tls: Option<&TlsClient>, address: &str) -> io::Result<Self> {
        match tls {
            Some(tls) => tls.wrap(stream, address),
            None => Ok(Self::Tcp(stream)),
        }
    }

    /// The TCP socket underneath.
    pub fn socket(&self) -> &TcpStream {
        match self {
            Self::Tcp(stream) => stream,
            #[cfg(feature = "tls")]
            Self::Tls(stream) => stream.get_ref(),
        }
    }

    /// Whether the connection is still open, for a protocol where the
    /// server never sends data (plain syslog): reads without blocking
    /// whatever arrived. `UnexpectedEof` when the peer closed; over TLS an
    /// alert's reason too. Over TLS what arrives may be records the TLS
    /// layer takes itself (session tickets), so the socket is read through
    /// it rather than peeked.
    pub fn check_open(&mut self) -> io::Result<()> {
        self.socket().set_nonblocking(true)?;
        let mut buffer = [0u8; 512];
        let open = loop {
            match self.read(&mut buffer) {
                Ok(0) => {
                    break Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed",
                    ));
                }
                // Data a syslog server should not send: ignored.
                Ok(_) => continue,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => break Err(error),
            }
        };
        open.and_then(|()| self.socket().set_nonblocking(false))
    }
}

impl Read for Stream {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(stream) => stream.read(buffer),
            #[cfg(feature = "tls")]
            Self::Tls(stream) => stream.read(buffer),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(stream) => stream.write(buffer),
            #[cfg(feature = "tls")]
            Self::Tls(stream) => stream.write(buffer),
        }
    }

    /// Over TLS, writes out what rustls still holds: a batch counts as
    /// sent only once the kernel has all of it.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Tcp(stream) => stream.flush(),
            #[cfg(feature = "tls")]
            Self::Tls(stream) => stream.flush(),
        }
    }
}

/// A syslog or RELP backend's address: `HOST:PORT`, or `tls://HOST:PORT`
/// for TLS (RFC 5425 for syslog; RELP over TLS as librelp does it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogAddress {
    /// `HOST:PORT`.
    pub authority: String,
    pub tls: bool,
}

impl SyslogAddress {
    pub fn parse(address: &str) -> Result<Self, String> {
        let (authority, tls) = match address.split_once("://") {
            None => (address, false),
            Some(("tls", _)) if !cfg!(feature = "tls") => return Err(no_tls(address)),
            Some(("tls", rest)) => (rest, true),
            Some(_) => {
                return Err(format!(
                    "{address:?}: expected HOST:PORT, or tls://HOST:PORT for TLS"
                ));
            }
        };
        match authority.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(Self {
                authority: authority.to_owned(),
                tls,
            }),
            _ => Err(format!(
                "{address:?}: expected HOST:PORT (a port is needed)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syslog_address_is_host_and_port_with_tls_by_its_scheme() {
        assert_eq!(
            SyslogAddress::parse("rsyslog:514").unwrap(),
            SyslogAddress {
                authority: "rsyslog:514".into(),
                tls: false
            }
        );
        assert!(SyslogAddress::parse("rsyslog").is_err());
        assert!(SyslogAddress::parse("relp://rsyslog:2514").is_err());
        if cfg!(feature = "tls") {
            let address = SyslogAddress::parse("tls://[::1]:6514").unwrap();
            assert_eq!(
                (address.authority.as_str(), address.tls),
                ("[::1]:6514", true)
            );
        } else {
            let error = SyslogAddress::parse("tls://rsyslog:6514").unwrap_err();
            assert!(error.contains("--features tls"), "{error}");
        }
    }
}
