//! Cross-origin resource sharing for browser MCP clients (the MCP Inspector's web UI, web
//! apps), opt-in per origin (`server.cors_origins`).
//!
//! Owns: the CORS answer — a preflight (`OPTIONS` with `Access-Control-Request-Method`) from a
//! listed origin is answered here, before authentication (browsers send preflights without
//! credentials), allowing the headers MCP and OAuth need; every response to a listed origin
//! says so and exposes `WWW-Authenticate`, `Mcp-Session-Id` and `DPoP-Nonce`. Must not: decide which origins
//! may call at all (`host_guard` refuses foreign ones first; listed CORS origins are allowed
//! origins) or look at credentials. With no origins listed nothing changes.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};

/// Request headers a browser client may send.
const ALLOWED_HEADERS: &str = "authorization, content-type, accept, mcp-session-id, \
    mcp-protocol-version, mcp-method, mcp-name, last-event-id, dpop";
/// Response headers a browser client may read.
const EXPOSED_HEADERS: &str = "www-authenticate, mcp-session-id, mcp-protocol-version, dpop-nonce";
const ALLOWED_METHODS: &str = "GET, POST, DELETE, OPTIONS";

/// The origins browser clients may call from.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cors {
    origins: Arc<Vec<String>>,
}

impl Cors {
    pub(crate) fn new(origins: &[String]) -> Self {
        Self {
            origins: Arc::new(
                origins
                    .iter()
                    .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                    .collect(),
            ),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// The request's `Origin`, if it is a listed one.
    fn listed(&self, req: &Request) -> Option<HeaderValue> {
        let origin = req.headers().get(header::ORIGIN)?;
        let text = origin.to_str().ok()?.to_ascii_lowercase();
        self.origins.contains(&text).then(|| origin.clone())
    }
}

/// The layer: preflights from listed origins answered here, other responses to them marked.
pub(crate) async fn apply(State(cors): State<Cors>, req: Request, next: Next) -> Response {
    let Some(origin) = cors.listed(&req) else {
        return next.run(req).await;
    };
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut resp = if preflight {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOWED_METHODS),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        r
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED_HEADERS),
    );
    h.append(header::VARY, HeaderValue::from_static("origin"));
    resp
}
