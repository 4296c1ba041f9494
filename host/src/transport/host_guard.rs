//! DNS-rebinding and cross-origin protection for every route the gateway serves.
//!
//! Owns one decision: is this request addressed to this gateway (`Host`, or HTTP/2
//! `:authority`) and, if it comes from a browser page (`Origin`), from a page the operator
//! allowed? It runs as one layer over the whole router — MCP endpoints, metadata, health,
//! the admin endpoints and the development authorization server alike — so no side route can
//! be reached by a page that rebinds a name to the gateway's address. Answers: 400 without a
//! usable `Host`, 403 for a foreign `Host` or `Origin`. The one exception is `/healthz`, which
//! answers `ok` and nothing else, so liveness probes and load balancers that address the
//! gateway by its IP keep working. It must not look at credentials or bodies.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, Uri, header};

use crate::telemetry::untrusted;

/// An accepted `Host`: a name, and a port unless any port is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Authority {
    host: String,
    port: Option<u16>,
}

/// An accepted `Origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AllowedOrigin {
    /// The opaque origin `null` (sandboxed frames, `file:` pages), only when listed.
    Null,
    /// scheme, host and a port (`None` = any port, written `:*`).
    Tuple {
        scheme: String,
        host: String,
        port: Option<u16>,
    },
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// No `Host` (nor `:authority`), or one that is not a host name.
    #[error("Bad Request: missing or invalid Host header")]
    BadHost,
    /// A `Host` this gateway does not serve.
    #[error("Forbidden: Host header is not allowed")]
    ForeignHost,
    /// An `Origin` the operator did not allow.
    #[error("Forbidden: Origin header is not allowed")]
    ForeignOrigin,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = match self {
            Refusal::BadHost => StatusCode::BAD_REQUEST,
            Refusal::ForeignHost | Refusal::ForeignOrigin => StatusCode::FORBIDDEN,
        };
        (status, self.to_string()).into_response()
    }
}

/// The allow-lists, shared by every request.
#[derive(Debug, Clone)]
pub(crate) struct HostGuard {
    hosts: Arc<[Authority]>,
    origins: Arc<[AllowedOrigin]>,
}

fn normalize_host(host: &str) -> String {
    host.trim_matches(['[', ']']).to_ascii_lowercase()
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

fn parse_authority(value: &str) -> Option<Authority> {
    let a = http::uri::Authority::try_from(value.trim()).ok()?;
    Some(Authority {
        host: normalize_host(a.host()),
        port: a.port_u16(),
    })
}

/// `scheme://host[:port]` (what browsers send) as a tuple; `None` if it is not one.
fn parse_origin(value: &str) -> Option<(String, String, Option<u16>)> {
    let (scheme, rest) = value.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let a = http::uri::Authority::try_from(rest).ok()?;
    if rest.contains(['/', '@', '?', '#']) {
        return None;
    }
    let port = a.port_u16().or_else(|| default_port(&scheme));
    Some((scheme, normalize_host(a.host()), port))
}

fn parse_allowed_origin(value: &str) -> Option<AllowedOrigin> {
    if value == "null" {
        return Some(AllowedOrigin::Null);
    }
    if let Some(base) = value.strip_suffix(":*") {
        let (scheme, host, _) = parse_origin(base)?;
        return Some(AllowedOrigin::Tuple {
            scheme,
            host,
            port: None,
        });
    }
    let (scheme, host, port) = parse_origin(value)?;
    Some(AllowedOrigin::Tuple { scheme, host, port })
}

impl HostGuard {
    /// Accept `hosts` (`name` = any port, `name:port` = that port) and `origins`
    /// (`scheme://host[:port]`, `scheme://host:*`, or `null`). Entries that parse as
    /// neither are ignored (the configuration check refuses them).
    pub(crate) fn new(hosts: &[String], origins: &[String]) -> Self {
        Self {
            // `::1` is not an authority, but it is a host name to accept on any port.
            hosts: hosts
                .iter()
                .map(|h| {
                    parse_authority(h).unwrap_or_else(|| Authority {
                        host: normalize_host(h),
                        port: None,
                    })
                })
                .collect(),
            origins: origins
                .iter()
                .filter_map(|o| parse_allowed_origin(o))
                .collect(),
        }
    }

    /// Whether a request with `uri` and `headers` may be served; the refusal otherwise.
    pub(crate) fn check(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), Refusal> {
        let host = match (headers.get(header::HOST), uri.authority()) {
            // HTTP/2 `:authority` and a `Host` header that say different things (RFC 9113
            // §8.3.1): a request checked by one and routed by the other is malformed.
            (Some(h), Some(a)) if !h.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes()) => {
                tracing::warn!(host = %untrusted(&String::from_utf8_lossy(h.as_bytes())),
                    authority = %untrusted(a.as_str()),
                    "refused a request whose Host and :authority differ");
                return Err(Refusal::BadHost);
            }
            (Some(v), _) => v.to_str().ok().and_then(parse_authority),
            (None, a) => a.and_then(|a| parse_authority(a.as_str())),
        }
        .ok_or(Refusal::BadHost)?;
        let known = self
            .hosts
            .iter()
            .any(|a| a.host == host.host && a.port.is_none_or(|p| host.port == Some(p)));
        if !known {
            tracing::warn!(host = %untrusted(&host.host), port = host.port,
                "refused a request for a host this gateway does not serve (possible DNS rebinding)");
            return Err(Refusal::ForeignHost);
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or_default();
        let allowed = if origin == "null" {
            self.origins.contains(&AllowedOrigin::Null)
        } else {
            parse_origin(origin).is_some_and(|(scheme, host, port)| {
                self.origins.iter().any(|o| match o {
                    AllowedOrigin::Null => false,
                    AllowedOrigin::Tuple {
                        scheme: s,
                        host: h,
                        port: p,
                    } => *s == scheme && *h == host && p.is_none_or(|p| Some(p) == port),
                })
            })
        };
        if !allowed {
            tracing::warn!(origin = %untrusted(origin), "refused a request from a browser origin that is not allowed");
            return Err(Refusal::ForeignOrigin);
        }
        Ok(())
    }
}

/// Routes any `Host` may reach: they reveal nothing (liveness answers `ok`).
const OPEN_PATHS: &[&str] = &["/healthz"];

/// The layer: every request passes [`HostGuard::check`] before any route sees it.
pub(crate) async fn enforce(State(guard): State<HostGuard>, req: Request, next: Next) -> Response {
    if OPEN_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    match guard.check(req.uri(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(refusal) => refusal.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> HostGuard {
        HostGuard::new(
            &["127.0.0.1".into(), "gw.example:8443".into(), "::1".into()],
            &["https://app.example".into(), "http://localhost:*".into()],
        )
    }

    fn check(host: Option<&str>, origin: Option<&str>) -> u16 {
        let mut headers = HeaderMap::new();
        if let Some(h) = host {
            headers.insert(header::HOST, h.parse().unwrap());
        }
        if let Some(o) = origin {
            headers.insert(header::ORIGIN, o.parse().unwrap());
        }
        match guard().check(&Uri::from_static("/readyz"), &headers) {
            Ok(()) => 200,
            Err(r) => r.into_response().status().as_u16(),
        }
    }

    #[test]
    fn hosts_and_origins() {
        assert_eq!(
            check(Some("127.0.0.1:9999"), None),
            200,
            "a bare name allows any port"
        );
        assert_eq!(check(Some("[::1]:80"), None), 200);
        assert_eq!(check(Some("gw.example:8443"), None), 200);
        assert_eq!(
            check(Some("gw.example:8080"), None),
            403,
            "a listed port is that port"
        );
        assert_eq!(check(Some("evil.example"), None), 403);
        assert_eq!(check(Some("127.0.0.1.evil.example"), None), 403);
        assert_eq!(check(None, None), 400);
        assert_eq!(check(Some("127.0.0.1"), Some("https://app.example")), 200);
        assert_eq!(
            check(Some("127.0.0.1"), Some("https://app.example:443")),
            200
        );
        assert_eq!(check(Some("127.0.0.1"), Some("http://app.example")), 403);
        assert_eq!(check(Some("127.0.0.1"), Some("http://localhost:5173")), 200);
        assert_eq!(check(Some("127.0.0.1"), Some("https://evil.example")), 403);
        assert_eq!(check(Some("127.0.0.1"), Some("null")), 403);
        assert_eq!(
            check(Some("127.0.0.1"), Some("https://app.example/path")),
            403
        );
    }

    /// #28. Before: an HTTP/2 request's `:authority` was ignored when a `Host` header was
    /// also present, so the two could name different hosts.
    #[test]
    fn host_and_authority_must_agree() {
        let at = |authority: &str, host: Option<&str>| {
            let uri: Uri = format!("https://{authority}/mcp").parse().unwrap();
            let mut headers = HeaderMap::new();
            if let Some(h) = host {
                headers.insert(header::HOST, h.parse().unwrap());
            }
            match guard().check(&uri, &headers) {
                Ok(()) => 200,
                Err(r) => r.into_response().status().as_u16(),
            }
        };
        assert_eq!(at("127.0.0.1:8080", None), 200, ":authority alone");
        assert_eq!(at("127.0.0.1:8080", Some("127.0.0.1:8080")), 200);
        assert_eq!(at("GW.example:8443", Some("gw.example:8443")), 200);
        assert_eq!(at("evil.example", Some("127.0.0.1")), 400, "they differ");
        assert_eq!(at("127.0.0.1", Some("evil.example")), 400);
    }
}
