//! The HTTP front of each tenant's MCP endpoint.
//!
//! Owns what must happen before the protocol layer sees a request: the body size limit (413),
//! JSON-RPC batches (served for 2025-03-26 clients, refused with a clear error for later
//! revisions), and the cap on live sessions (503). Authentication, Host/Origin validation and
//! MCP itself are the layers behind it; this module must not interpret MCP methods beyond
//! recognising `initialize`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use crate::mcp::SessionCounter;

/// The authenticated MCP stack behind the guard.
pub(crate) type Inner = BoxCloneSyncService<Request, Response, Infallible>;

/// The only revision whose clients may send JSON-RPC batches.
const BATCH_REVISION: &str = "2025-03-26";

/// Limits enforced at the front of an MCP endpoint.
#[derive(Clone, Debug)]
pub(crate) struct Guard {
    pub(crate) max_body_bytes: usize,
    pub(crate) max_sessions: usize,
    pub(crate) sessions: SessionCounter,
    pub(crate) tenant: Arc<str>,
}

/// A JSON-RPC error response without an id, with an HTTP status.
pub(crate) fn rpc_error(status: StatusCode, code: i64, message: impl Into<String>) -> Response {
    let body =
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message.into()}});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

impl Guard {
    /// Handle one request to the endpoint.
    pub(crate) async fn handle(&self, req: Request, inner: Inner) -> Response {
        if req.method() != Method::POST {
            return call(inner, req).await;
        }
        let too_large = || {
            tracing::info!(tenant = %self.tenant, limit = self.max_body_bytes, "refused an oversized request body");
            rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                -32600,
                format!(
                    "request body exceeds the limit of {} bytes",
                    self.max_body_bytes
                ),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > self.max_body_bytes) {
            return too_large();
        }
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, self.max_body_bytes).await {
            Ok(b) => b,
            Err(e) if is_length_limit(&e) => return too_large(),
            Err(e) => {
                tracing::debug!(tenant = %self.tenant, "could not read request body: {e}");
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    -32700,
                    "could not read the request body",
                );
            }
        };
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return self.batch(parts, bytes, inner).await;
        }
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                -32700,
                format!("parse error: the body is not valid JSON ({e})"),
            );
        }
        if !parts.headers.contains_key("mcp-session-id") && is_initialize(&bytes) {
            let live = self.sessions.live().await;
            if live >= self.max_sessions {
                tracing::warn!(tenant = %self.tenant, live, max = self.max_sessions, "refused a new session: session limit reached");
                let mut resp = rpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    -32000,
                    "the gateway has reached its session limit; retry later or use stateless requests",
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                return resp;
            }
        }
        call(inner, Request::from_parts(parts, Body::from(bytes))).await
    }

    /// A JSON-RPC batch: split it for 2025-03-26 clients, refuse it for later revisions.
    async fn batch(&self, parts: http::request::Parts, bytes: Bytes, inner: Inner) -> Response {
        let version = parts
            .headers
            .get("mcp-protocol-version")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(BATCH_REVISION);
        if version != BATCH_REVISION {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                -32600,
                format!(
                    "JSON-RPC batches are not part of MCP {version} (only {BATCH_REVISION}); send one message per request"
                ),
            );
        }
        let items: Vec<Value> = match serde_json::from_slice(&bytes) {
            Ok(items) => items,
            Err(e) => {
                return rpc_error(StatusCode::BAD_REQUEST, -32700, format!("parse error: {e}"));
            }
        };
        if items.is_empty() {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                -32600,
                "an empty batch is not a valid request",
            );
        }
        if items
            .iter()
            .any(|i| i.get("method").and_then(Value::as_str) == Some("initialize"))
        {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                -32600,
                "initialize must not be part of a batch",
            );
        }
        let mut responses = Vec::new();
        for item in items {
            let id = item.get("id").cloned();
            let mut req = Request::new(Body::from(item.to_string()));
            *req.method_mut() = parts.method.clone();
            *req.uri_mut() = parts.uri.clone();
            *req.headers_mut() = parts.headers.clone();
            req.headers_mut().remove(header::CONTENT_LENGTH);
            *req.extensions_mut() = parts.extensions.clone();
            let resp = call(inner.clone(), req).await;
            if let Some(answer) = batch_answer(resp, id).await {
                responses.push(answer);
            }
        }
        if responses.is_empty() {
            return StatusCode::ACCEPTED.into_response();
        }
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            Value::Array(responses).to_string(),
        )
            .into_response()
    }
}

/// The JSON-RPC response for one batch item, from the response the endpoint gave it alone.
async fn batch_answer(resp: Response, id: Option<Value>) -> Option<Value> {
    let status = resp.status();
    if status == StatusCode::ACCEPTED {
        return None;
    }
    let is_sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .unwrap_or_default();
    let messages: Vec<Value> = if is_sse {
        String::from_utf8_lossy(&body)
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    } else {
        serde_json::from_slice(&body).ok().into_iter().collect()
    };
    messages
        .into_iter()
        .find(|m| m.get("result").is_some() || m.get("error").is_some())
        .or_else(|| {
            id.map(|id| {
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603,
                    "message": format!("request failed with HTTP {status}: {}", String::from_utf8_lossy(&body))}})
            })
        })
}

async fn call(inner: Inner, req: Request) -> Response {
    match inner.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Whether a (non-batch) body is an `initialize` request.
fn is_initialize(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Peek<'a> {
        #[serde(borrow)]
        method: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Peek<'_>>(body)
        .ok()
        .and_then(|p| p.method)
        .is_some_and(|m| m == "initialize")
}
