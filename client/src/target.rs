//! What to probe: the URL (plain `http://` only), the request headers, and
//! where a redirect's `Location` points.
//!
//! Invariants: a [`Target`] always has scheme `http`, a non-empty host (IPv6
//! literals without their brackets) and a port, and its request path starts
//! with `/`. Everything here is checked before the first request, so a bad URL
//! or header is one clear error at start-up, never a failure class at run time.

use hyper::Uri;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};

/// Why a URL or header given by the user cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    #[error("invalid URL {url:?}: {cause}")]
    Url { url: String, cause: String },
    #[error(
        "unsupported URL {url:?}: https is not supported, client speaks plain HTTP only \
         (probe the plain-HTTP port, or the TLS proxy's backend)"
    )]
    Https { url: String },
    #[error("invalid URL {url:?}: scheme {scheme:?} is not supported, only http:// URLs are")]
    Scheme { url: String, scheme: String },
    #[error("invalid header {header:?}: {cause}")]
    Header { header: String, cause: String },
}

impl InputError {
    /// The exit status for this input error, curl's where curl has one: 3
    /// "URL malformed" for a URL we cannot read (bad port, no host, no
    /// scheme), 1 "unsupported protocol" for https and other schemes, 1 for
    /// the rest of the bad input.
    pub fn exit_code(&self) -> u8 {
        match self {
            InputError::Url { .. } => 3,
            InputError::Https { .. } | InputError::Scheme { .. } | InputError::Header { .. } => 1,
        }
    }
}

/// A parsed `http://` URL, ready to connect to and to send a request for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP literal as looked up (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// The `Host` header value: host as written (brackets kept) and the port if one was written.
    pub authority: String,
    /// Origin-form request target: path and query, always starting with `/`.
    pub path_and_query: String,
}

impl Target {
    /// Parses an absolute `http://` URL; `https://`, other schemes, a missing
    /// host and credentials in the URL are refused with the reason.
    pub fn parse(url: &str) -> Result<Self, InputError> {
        let bad = |cause: &str| InputError::Url {
            url: url.to_owned(),
            cause: cause.to_owned(),
        };
        let without_fragment = url.split('#').next().unwrap_or_default();
        let uri: Uri = without_fragment
            .parse()
            .map_err(|error: hyper::http::uri::InvalidUri| bad(&error.to_string()))?;
        match uri.scheme_str() {
            Some(scheme) if scheme.eq_ignore_ascii_case("http") => {}
            Some(scheme) if scheme.eq_ignore_ascii_case("https") => {
                return Err(InputError::Https {
                    url: url.to_owned(),
                });
            }
            Some(scheme) => {
                return Err(InputError::Scheme {
                    url: url.to_owned(),
                    scheme: scheme.to_owned(),
                });
            }
            None => {
                return Err(bad(&format!(
                    "no scheme: write it as http://{}",
                    url.trim_start_matches('/')
                )));
            }
        }
        let authority = uri
            .authority()
            .ok_or_else(|| bad("no host after http://"))?;
        if authority.as_str().contains('@') {
            return Err(bad(
                "credentials in the URL are not supported: use --header 'Authorization: ...'",
            ));
        }
        let written_host = authority.host();
        if written_host.is_empty() {
            return Err(bad("no host after http://"));
        }
        let host = written_host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        // `port_u16` is None both for "no port" and for a port that is not a
        // number from 1 to 65535 (`:99999`, `:-1`): the second must be an
        // error, not port 80. An empty port (`host:/`) is the default, as in curl.
        let port = match &authority.as_str()[written_host.len()..] {
            "" | ":" => 80,
            written => match written[1..].parse::<u16>() {
                Ok(port) if port > 0 && written[1..].bytes().all(|b| b.is_ascii_digit()) => port,
                _ => {
                    return Err(bad(&format!(
                        "port {:?} is not a number from 1 to 65535",
                        &written[1..]
                    )));
                }
            },
        };
        let path_and_query = match uri.path_and_query() {
            Some(path) if path.as_str().starts_with('/') => path.as_str().to_owned(),
            Some(path) => format!("/{}", path.as_str()),
            None => "/".to_owned(),
        };
        Ok(Self {
            host,
            port,
            authority: authority.as_str().to_owned(),
            path_and_query,
        })
    }

    /// The URL this target stands for, for messages.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.path_and_query)
    }

    /// Whether `other` is on the same host, the way kubelet decides whether to
    /// follow a probe's redirect: host names compared, ports ignored.
    pub fn same_host(&self, other: &Target) -> bool {
        self.host.eq_ignore_ascii_case(&other.host)
    }
}

/// Where a redirect's `Location` leads, resolved against the URL that answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Location {
    /// A plain-HTTP URL we can follow (if it is on the same host).
    Http(Target),
    /// A URL we cannot follow: another scheme (https) or something unparsable.
    Unfollowable(String),
}

/// Resolves `location` against `base` (RFC 3986 section 5.2, for the forms
/// servers send: absolute, scheme-relative, absolute-path, relative-path and
/// query-only references).
pub fn resolve_location(base: &Target, location: &str) -> Location {
    let location = location.trim();
    let location = location.split('#').next().unwrap_or_default();
    let has_scheme = location
        .split_once(':')
        .is_some_and(|(scheme, _)| is_scheme(scheme));
    let absolute = if has_scheme {
        location.to_owned()
    } else if location.starts_with("//") {
        format!("http:{location}")
    } else if location.starts_with('/') {
        format!("http://{}{}", base.authority, remove_dot_segments(location))
    } else if location.is_empty() {
        base.url()
    } else if location.starts_with('?') {
        let path = base.path_and_query.split('?').next().unwrap_or("/");
        format!("http://{}{path}{location}", base.authority)
    } else {
        let base_path = base.path_and_query.split('?').next().unwrap_or("/");
        let directory = &base_path[..base_path.rfind('/').map_or(0, |slash| slash + 1)];
        let (path, query) = match location.split_once('?') {
            Some((path, query)) => (path, format!("?{query}")),
            None => (location, String::new()),
        };
        let merged = remove_dot_segments(&format!("{directory}{path}"));
        format!("http://{}{merged}{query}", base.authority)
    };
    match Target::parse(&absolute) {
        Ok(target) => Location::Http(target),
        Err(_) => Location::Unfollowable(absolute),
    }
}

fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// RFC 3986 section 5.2.4, on a path without query.
fn remove_dot_segments(path: &str) -> String {
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    };
    let mut output: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (index, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {
                if index == last {
                    output.push("");
                }
            }
            ".." => {
                if output.len() > 1 {
                    output.pop();
                }
                if index == last {
                    output.push("");
                }
            }
            other => output.push(other),
        }
    }
    let mut joined = output.join("/");
    if !joined.starts_with('/') {
        joined.insert(0, '/');
    }
    if let Some(query) = query {
        joined.push('?');
        joined.push_str(query);
    }
    joined
}

/// Parses `Name: value` headers, in order; a repeated name sends the header twice.
pub fn parse_headers(headers: &[String]) -> Result<HeaderMap, InputError> {
    let mut map = HeaderMap::new();
    for header in headers {
        let bad = |cause: String| InputError::Header {
            header: header.clone(),
            cause,
        };
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| bad("expected 'Name: value'".to_owned()))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| bad(format!("{:?} is not a valid header name", name.trim())))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| bad("the value has characters not allowed in a header".to_owned()))?;
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::parse(url).unwrap()
    }

    #[test]
    fn plain_http_urls_get_default_port_and_path() {
        let parsed = target("http://localhost");
        assert_eq!(parsed.host, "localhost");
        assert_eq!(parsed.port, 80);
        assert_eq!(parsed.authority, "localhost");
        assert_eq!(parsed.path_and_query, "/");
        let parsed = target("http://nginx:8080/healthz?full=1#frag");
        assert_eq!(parsed.port, 8080);
        assert_eq!(parsed.authority, "nginx:8080");
        assert_eq!(parsed.path_and_query, "/healthz?full=1");
    }

    #[test]
    fn ipv6_literals_lose_their_brackets_for_lookup_only() {
        let parsed = target("http://[::1]:9000/x");
        assert_eq!(parsed.host, "::1");
        assert_eq!(parsed.authority, "[::1]:9000");
        assert_eq!(parsed.url(), "http://[::1]:9000/x");
    }

    #[test]
    fn https_is_refused_with_a_clear_reason() {
        let error = Target::parse("https://example.com/").unwrap_err();
        assert!(matches!(error, InputError::Https { .. }));
        assert!(error.to_string().contains("https is not supported"));
    }

    #[test]
    fn other_schemes_missing_scheme_and_credentials_are_refused() {
        let message = |url: &str| Target::parse(url).unwrap_err().to_string();
        assert!(message("ftp://host/").contains("only http:// URLs"));
        assert!(message("localhost:80").contains("write it as http://localhost:80"));
        assert!(message("/just/a/path").contains("no scheme"));
        assert!(message("http://user:pw@host/").contains("credentials"));
        assert!(message("http://exa mple/").contains("invalid URL"));
    }

    #[test]
    fn ports_outside_1_to_65535_are_refused_not_read_as_80() {
        for url in [
            "http://127.0.0.1:99999/",
            "http://127.0.0.1:65536/",
            "http://127.0.0.1:-1/",
            "http://127.0.0.1:4294967376/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:+80/",
            "http://[::1]:70000/",
        ] {
            let error = Target::parse(url).unwrap_err();
            assert!(matches!(error, InputError::Url { .. }), "{url}: {error}");
            assert!(
                error
                    .to_string()
                    .contains("is not a number from 1 to 65535"),
                "{error}"
            );
            assert_eq!(error.exit_code(), 3);
        }
        assert_eq!(target("http://127.0.0.1:65535/").port, 65535);
        assert_eq!(target("http://127.0.0.1:/").port, 80);
        assert_eq!(target("http://[::1]/").port, 80);
        assert_eq!(target("http://[::1]:8080/").port, 8080);
    }

    #[test]
    fn locations_resolve_like_a_browser() {
        let base = target("http://web:8080/a/b/c?x=1");
        let resolved = |location: &str| match resolve_location(&base, location) {
            Location::Http(target) => target.url(),
            Location::Unfollowable(url) => format!("unfollowable {url}"),
        };
        assert_eq!(resolved("/login"), "http://web:8080/login");
        assert_eq!(resolved("d"), "http://web:8080/a/b/d");
        assert_eq!(resolved("../d?y=2"), "http://web:8080/a/d?y=2");
        assert_eq!(resolved("./"), "http://web:8080/a/b/");
        assert_eq!(resolved("?y=2"), "http://web:8080/a/b/c?y=2");
        assert_eq!(resolved("//other/x"), "http://other/x");
        assert_eq!(resolved("HTTP://Other:81/"), "http://Other:81/");
        assert_eq!(resolved("/x#frag"), "http://web:8080/x");
        assert_eq!(
            resolved("https://web/secure"),
            "unfollowable https://web/secure"
        );
    }

    #[test]
    fn same_host_ignores_port_and_case_like_kubelet() {
        assert!(target("http://Web:80/").same_host(&target("http://web:8080/x")));
        assert!(!target("http://web/").same_host(&target("http://other/")));
    }

    #[test]
    fn headers_parse_in_order_and_repeat() {
        let headers = parse_headers(&[
            "X-Probe: 1".to_owned(),
            "Host:  example.com ".to_owned(),
            "x-probe: 2".to_owned(),
        ])
        .unwrap();
        assert_eq!(headers.get("host").unwrap(), "example.com");
        let probes: Vec<_> = headers.get_all("x-probe").iter().collect();
        assert_eq!(probes, ["1", "2"]);
    }

    #[test]
    fn unparsable_headers_say_why() {
        let message = |header: &str| parse_headers(&[header.to_owned()]).unwrap_err().to_string();
        assert!(message("NoColon").contains("expected 'Name: value'"));
        assert!(message("Bad Name: x").contains("not a valid header name"));
        assert!(message("X: a\u{1}b").contains("not allowed"));
    }
}
