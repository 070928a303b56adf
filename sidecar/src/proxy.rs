//! Where a request goes: the listener's service, or for the generic proxy listener the host
//! the request names. Pure.
//!
//! A client with `HTTP_PROXY=http://127.0.0.1:PORT` sends absolute-form requests
//! (`GET http://tools/mcp HTTP/1.1`, RFC 9112 §3.2.2); a client pointed at the listener
//! directly names the service in `Host` (`Host: tools` or `tools:80`). Either way the
//! destination is the host part. `CONNECT` (RFC 9110 §9.3.6) is not supported yet.

use std::net::IpAddr;
use std::str::FromStr;

use http::uri::Authority;
use http::{HeaderMap, Method, StatusCode, Uri};

use crate::request::Target;

/// How a listener picks the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Addressing {
    /// Every request goes to this service.
    Service(String),
    /// The destination is the host the request names.
    Proxy,
}

impl Addressing {
    /// `service NAME` or `proxy`, for logs.
    pub(crate) fn describe(&self) -> String {
        match self {
            Addressing::Service(name) => format!("listener for service {name}"),
            Addressing::Proxy => "proxy listener".to_owned(),
        }
    }
}

/// Why a request has no usable destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TargetError {
    /// A `CONNECT` request.
    Connect,
    /// Neither an absolute-form URI nor a `Host` header (proxy listener).
    NoDestination,
    /// Two or more `Host` header lines (RFC 9112 §3.2 requires a 400).
    DuplicateHost,
    /// The authority cannot be parsed or carried.
    BadAuthority { value: String, why: &'static str },
    /// An absolute-form URI with a scheme other than `http`.
    UnsupportedScheme(String),
    /// The request names this machine rather than a service.
    SelfAddressed(String),
}

impl TargetError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            TargetError::Connect => StatusCode::METHOD_NOT_ALLOWED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The text of the answer to the agent.
    pub(crate) fn message(&self) -> String {
        match self {
            TargetError::Connect => "CONNECT tunnels are not supported by the aimux sidecar yet; \
                 send plain http:// requests (through HTTP_PROXY, or with a Host header naming \
                 the service): the hop to the gateway is mutual TLS already"
                .to_owned(),
            TargetError::NoDestination => "no destination service: send the request in absolute \
                 form (`GET http://SERVICE/path`, as clients do when HTTP_PROXY points here) or \
                 with a `Host: SERVICE` header"
                .to_owned(),
            TargetError::DuplicateHost => {
                "the request has more than one Host header (RFC 9112 §3.2)".to_owned()
            }
            TargetError::BadAuthority { value, why } => {
                format!("cannot use the authority {value:?}: {why}")
            }
            TargetError::UnsupportedScheme(scheme) => format!(
                "only http:// URLs can be sent through the sidecar, not {scheme}://; the hop to \
                 the gateway is mutual TLS already, so use http://SERVICE/..."
            ),
            TargetError::SelfAddressed(host) => format!(
                "the request is addressed to {host}, i.e. this machine, not a mesh service: \
                 name the service in the URL (`http://SERVICE/path` with HTTP_PROXY pointing \
                 here) or in the Host header"
            ),
        }
    }
}

/// Resolves the destination, authority and path of a request.
///
/// The authority is the absolute-form URI's if there is one (a proxy MUST ignore `Host` then,
/// RFC 9112 §3.2.2), else the `Host` header, else empty (HTTP/1.0 without `Host`).
pub(crate) fn resolve(
    addressing: &Addressing,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Target, TargetError> {
    if method == Method::CONNECT {
        return Err(TargetError::Connect);
    }
    if let (Addressing::Proxy, Some(scheme)) = (addressing, uri.scheme_str())
        && !scheme.eq_ignore_ascii_case("http")
    {
        return Err(TargetError::UnsupportedScheme(scheme.to_owned()));
    }
    let authority = request_authority(uri, headers)?;
    let destination = match addressing {
        Addressing::Service(service) => service.clone(),
        Addressing::Proxy => match &authority {
            Some(authority) => destination_of(authority)?,
            None => return Err(TargetError::NoDestination),
        },
    };
    Ok(Target {
        destination,
        authority: authority.map(|a| a.as_str().to_owned()).unwrap_or_default(),
        path: origin_form(uri),
    })
}

fn request_authority(uri: &Uri, headers: &HeaderMap) -> Result<Option<Authority>, TargetError> {
    let authority = if let Some(authority) = uri.authority() {
        authority.clone()
    } else {
        let mut hosts = headers.get_all(http::header::HOST).iter();
        let host = match (hosts.next(), hosts.next()) {
            (None, _) => return Ok(None),
            (Some(_), Some(_)) => return Err(TargetError::DuplicateHost),
            (Some(host), None) => host,
        };
        let text = host.to_str().map_err(|_| TargetError::BadAuthority {
            value: String::from_utf8_lossy(host.as_bytes()).into_owned(),
            why: "it is not ASCII",
        })?;
        if text.is_empty() {
            return Ok(None);
        }
        Authority::from_str(text).map_err(|_| TargetError::BadAuthority {
            value: text.to_owned(),
            why: "it is not host[:port]",
        })?
    };
    // RFC 9110 §4.2.4: userinfo in http URIs is deprecated and a recipient SHOULD treat it as
    // an error; SPEC.md §5.7 does not allow `@` in the authority.
    if authority.as_str().contains('@') {
        return Err(TargetError::BadAuthority {
            value: authority.as_str().to_owned(),
            why: "user information (`user@`) is not allowed",
        });
    }
    Ok(Some(authority))
}

/// The destination named by an authority: its host, lower-cased (host names are
/// case-insensitive, RFC 9110 §4.2.3), without port, brackets or a trailing dot.
fn destination_of(authority: &Authority) -> Result<String, TargetError> {
    let host = authority.host();
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let name = bare.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return Err(TargetError::NoDestination);
    }
    let is_local = name == "localhost"
        || name.ends_with(".localhost")
        || IpAddr::from_str(&name).is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    if is_local {
        return Err(TargetError::SelfAddressed(host.to_owned()));
    }
    Ok(name)
}

/// Path and query in origin form; `*` for asterisk-form; `/` if the URI has no path.
fn origin_form(uri: &Uri) -> String {
    if uri.path() == "*" {
        return "*".to_owned();
    }
    match uri.path_and_query().map(|pq| pq.as_str()) {
        Some(pq) if pq.starts_with('/') => pq.to_owned(),
        Some(pq) if pq.starts_with('?') => format!("/{pq}"),
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn host(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::HOST, HeaderValue::from_static(value));
        h
    }

    fn proxy(method: Method, uri: &str, headers: &HeaderMap) -> Result<Target, TargetError> {
        resolve(&Addressing::Proxy, &method, &uri.parse().unwrap(), headers)
    }

    #[test]
    fn service_listeners_always_use_their_service() {
        let t = resolve(
            &Addressing::Service("tools".into()),
            &Method::POST,
            &"/mcp?x=1".parse().unwrap(),
            &host("127.0.0.1:15002"),
        )
        .unwrap();
        assert_eq!(
            t,
            Target {
                destination: "tools".into(),
                authority: "127.0.0.1:15002".into(),
                path: "/mcp?x=1".into(),
            }
        );
        // HTTP/1.0 without Host: empty authority.
        let t = resolve(
            &Addressing::Service("tools".into()),
            &Method::GET,
            &"/".parse().unwrap(),
            &HeaderMap::new(),
        )
        .unwrap();
        assert_eq!(t.authority, "");
    }

    #[test]
    fn absolute_form_names_the_destination_and_wins_over_host() {
        let t = proxy(Method::GET, "http://Tools/mcp?q=1", &host("ignored")).unwrap();
        assert_eq!(t.destination, "tools");
        assert_eq!(t.authority, "Tools");
        assert_eq!(t.path, "/mcp?q=1");
        let t = proxy(Method::GET, "http://tools:8080", &HeaderMap::new()).unwrap();
        assert_eq!((t.destination.as_str(), t.path.as_str()), ("tools", "/"));
        assert_eq!(t.authority, "tools:8080");
    }

    #[test]
    fn host_addressing() {
        for value in ["tools", "tools:80", "TOOLS.", "tools:8080"] {
            let t = proxy(Method::GET, "/mcp", &host(value)).unwrap();
            assert_eq!(t.destination, "tools", "{value}");
            assert_eq!(t.authority, value);
        }
        let t = proxy(Method::OPTIONS, "*", &host("tools")).unwrap();
        assert_eq!(t.path, "*");
    }

    #[test]
    fn refusals() {
        assert_eq!(
            proxy(Method::CONNECT, "tools:443", &HeaderMap::new()),
            Err(TargetError::Connect)
        );
        assert_eq!(
            TargetError::Connect.status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            proxy(Method::GET, "/mcp", &HeaderMap::new()),
            Err(TargetError::NoDestination)
        );
        assert_eq!(
            proxy(Method::GET, "https://tools/", &HeaderMap::new()),
            Err(TargetError::UnsupportedScheme("https".into()))
        );
        for local in ["127.0.0.1:15000", "localhost", "[::1]:80", "0.0.0.0"] {
            assert!(
                matches!(
                    proxy(Method::GET, "/", &host(local)),
                    Err(TargetError::SelfAddressed(_))
                ),
                "{local}"
            );
        }
        assert!(matches!(
            proxy(Method::GET, "http://user@tools/", &HeaderMap::new()),
            Err(TargetError::BadAuthority { .. })
        ));
        assert!(matches!(
            proxy(Method::GET, "/", &host("bad host")),
            Err(TargetError::BadAuthority { .. })
        ));
        let mut two = host("tools");
        two.append(http::header::HOST, HeaderValue::from_static("other"));
        assert_eq!(
            proxy(Method::GET, "/", &two),
            Err(TargetError::DuplicateHost)
        );
        assert!(TargetError::NoDestination.message().contains("HTTP_PROXY"));
    }

    #[test]
    fn destinations_are_valid_wire_destinations() {
        // IPv6 literals lose their brackets; the result never contains whitespace.
        let t = proxy(Method::GET, "/", &host("[2001:db8::1]:80")).unwrap();
        assert_eq!(t.destination, "2001:db8::1");
    }
}
