//! The HTTP front of each tenant's MCP endpoint.
//!
//! Owns what must happen before the protocol layer sees a request: authentication (every
//! request, through [`TenantAuth`]) and the per-call scope check that answers a 403 step-up
//! challenge before any stream opens; binding sessions to the subject that created them; the
//! body size limit (413); JSON-RPC batches (served for 2025-03-26 clients, refused with a clear
//! error for later revisions); and the cap on live sessions (503). Host/Origin validation and
//! MCP itself are the layers behind it; this module interprets JSON-RPC only as far as finding
//! `initialize` and the item a call targets. It also opens each request's HTTP and MCP spans
//! and applies the tenant's quotas (429 with `Retry-After`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode, header};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use crate::auth::{CallerId, Denial, Principal, TenantAuth};
use crate::mcp::{SessionCounter, TenantContext, step_up_scopes};
use crate::telemetry::{self, McpRequest, RequestSpan, metrics};
use crate::tenancy::quota::Refusal;
use tracing::Instrument as _;

/// The MCP stack behind the guard.
pub(crate) type Inner = BoxCloneSyncService<Request, Response, Infallible>;

/// The only revision whose clients may send JSON-RPC batches.
const BATCH_REVISION: &str = "2025-03-26";

/// Everything enforced at the front of one tenant's endpoint.
pub(crate) struct Guard {
    pub(crate) max_body_bytes: usize,
    pub(crate) max_sessions: usize,
    /// Most live sessions one caller may hold.
    pub(crate) max_sessions_per_subject: usize,
    pub(crate) sessions: SessionCounter,
    pub(crate) tenant: Arc<TenantContext>,
    pub(crate) auth: Arc<TenantAuth>,
    /// Which caller (issuer, subject) created each session, and when: a session is usable
    /// only by its creator.
    pub(crate) owners: Mutex<HashMap<String, (CallerId, std::time::Instant)>>,
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

fn session_id(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A request with `parts`' method, URI, headers and extensions and a new body.
fn rebuild(parts: &Parts, body: Bytes) -> Request {
    let mut req = Request::new(Body::from(body));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.headers_mut() = parts.headers.clone();
    req.headers_mut().remove(header::CONTENT_LENGTH);
    *req.extensions_mut() = parts.extensions.clone();
    req
}

impl Guard {
    fn tenant_id(&self) -> &str {
        &self.tenant.plugins.tenant
    }

    fn deny(&self, denial: &Denial, principal: Option<&Principal>, parts: &Parts) -> Response {
        metrics::get().denials.add(
            1,
            &metrics::attrs(self.tenant_id(), &[("portcullis.reason", denial.reason())]),
        );
        tracing::info!(
            tenant = %self.tenant.plugins.tenant,
            reason = denial.reason(),
            subject = principal.and_then(|p| p.subject.as_deref()),
            method = %parts.method,
            "request denied: {}",
            match denial {
                Denial::InvalidToken(d) | Denial::InvalidRequest(d) => d.as_str(),
                Denial::InsufficientScope { .. } => "the token lacks scopes this call needs",
                Denial::Missing => "no bearer token",
                Denial::TooManyFailures { .. } => "too many unacceptable tokens from this address",
            }
        );
        self.auth.challenge(denial, principal)
    }

    /// Handle one request to the endpoint, inside its `http.request` span.
    pub(crate) async fn handle(&self, req: Request, inner: Inner) -> Response {
        let started = std::time::Instant::now();
        let method = req.method().clone();
        let span = telemetry::http_span(self.tenant_id(), &method, req.uri().path(), req.headers());
        let resp = self.handle_inner(req, inner).instrument(span.clone()).await;
        let status = resp.status().as_u16();
        span.record("http.response.status_code", i64::from(status));
        if status >= 500 {
            telemetry::fail(&span, &status.to_string());
        }
        metrics::get().http_duration.record(
            started.elapsed().as_secs_f64(),
            &metrics::attrs(
                self.tenant_id(),
                &[
                    ("http.request.method", method.as_str()),
                    ("http.response.status_code", &status.to_string()),
                ],
            ),
        );
        resp
    }

    async fn handle_inner(&self, req: Request, inner: Inner) -> Response {
        let (mut parts, body) = req.into_parts();
        let (principal, secret) = match self.auth.authenticate(&parts).await {
            Ok(p) => p,
            Err(denial) => return self.deny(&denial, None, &parts),
        };
        // The token goes no further than this point: handlers get the principal, and the
        // downstream capability the non-printable secret.
        parts.headers.remove(header::AUTHORIZATION);
        parts.extensions.insert(principal.clone());
        if let Some(secret) = secret {
            parts.extensions.insert(secret);
        }
        if let Some(id) = session_id(&parts)
            && let Some((owner, _)) = self.owners.lock().get(&id)
            && owner != &principal.caller()
        {
            tracing::warn!(tenant = %self.tenant.plugins.tenant, caller = %principal.caller(),
                "refused a session created by another caller");
            return (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response();
        }
        if parts.method != Method::POST {
            return call(inner, Request::from_parts(parts, body)).await;
        }
        let too_large = || {
            tracing::info!(tenant = %self.tenant.plugins.tenant, limit = self.max_body_bytes, "refused an oversized request body");
            rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                -32600,
                format!(
                    "request body exceeds the limit of {} bytes",
                    self.max_body_bytes
                ),
            )
        };
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > self.max_body_bytes) {
            return too_large();
        }
        let bytes = match axum::body::to_bytes(body, self.max_body_bytes).await {
            Ok(b) => b,
            Err(e) if is_length_limit(&e) => return too_large(),
            Err(e) => {
                tracing::debug!(tenant = %self.tenant.plugins.tenant, "could not read request body: {e}");
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    -32700,
                    "could not read the request body",
                );
            }
        };
        let message: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    -32700,
                    format!("parse error: the body is not valid JSON ({e})"),
                );
            }
        };
        match message {
            Value::Array(items) => self.batch(&parts, items, inner, &principal).await,
            message => {
                self.single(&parts, bytes, &message, inner, &principal)
                    .await
            }
        }
    }

    /// Refuse a request over a quota: 429, `Retry-After`, and a JSON-RPC error for its id.
    fn refuse(&self, refusal: &Refusal, principal: &Principal, message: &Value) -> Response {
        metrics::get().quota_rejections.add(
            1,
            &metrics::attrs(self.tenant_id(), &[("portcullis.limit", refusal.limit())]),
        );
        let wait = refusal.retry_after_secs();
        tracing::info!(tenant = %self.tenant_id(), subject = principal.subject.as_deref(),
            limit = refusal.limit(), retry_after = wait, "request refused: {refusal}");
        let body = json!({"jsonrpc": "2.0", "id": message.get("id").cloned().unwrap_or(Value::Null),
            "error": {"code": -32000, "message": format!("Too many requests: {refusal}; retry in {wait} s"),
                      "data": {"limit": refusal.limit(), "retryAfter": wait}}});
        crate::auth::too_many_requests(&body, wait)
    }

    /// The `mcp.request` span for `message` (a child of the current HTTP span, or of the
    /// trace its `_meta` names).
    fn mcp_span(&self, parts: &Parts, message: &Value) -> tracing::Span {
        let params = &message["params"];
        let target = params["name"]
            .as_str()
            .or_else(|| params["uri"].as_str())
            .or_else(|| {
                params["ref"]["name"]
                    .as_str()
                    .or_else(|| params["ref"]["uri"].as_str())
            });
        let meta = params.get("_meta").and_then(Value::as_object);
        let header_version = parts
            .headers
            .get("mcp-protocol-version")
            .and_then(|v| v.to_str().ok());
        let protocol_version = header_version.or_else(|| {
            meta.and_then(|m| m.get("io.modelcontextprotocol/protocolVersion"))
                .and_then(Value::as_str)
        });
        let session = parts
            .headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok());
        telemetry::mcp_span(
            &McpRequest {
                tenant: self.tenant_id(),
                method: message["method"].as_str().unwrap_or("unknown"),
                target,
                request_id: message
                    .get("id")
                    .map(|id| id.as_str().map_or_else(|| id.to_string(), str::to_string)),
                session,
                protocol_version,
            },
            meta,
            false,
        )
    }

    /// One JSON-RPC message: quotas, scope check, session cap, then the protocol layer.
    async fn single(
        &self,
        parts: &Parts,
        bytes: Bytes,
        message: &Value,
        inner: Inner,
        principal: &Principal,
    ) -> Response {
        let is_request = message.get("method").is_some() && message.get("id").is_some();
        let admission = if is_request && self.tenant.quotas.limits_requests() {
            match self.tenant.quotas.admit(&principal.caller()) {
                Ok(a) => Some(a),
                Err(refusal) => return self.refuse(&refusal, principal, message),
            }
        } else {
            None
        };
        let catalog = self.tenant.plugins.catalog();
        if let Some(required) = step_up_scopes(&catalog, principal, message, self.tenant.tools_list)
        {
            return self.deny(
                &Denial::InsufficientScope { required },
                Some(principal),
                parts,
            );
        }
        let initialize = message["method"] == "initialize" && session_id(parts).is_none();
        if initialize && let Err(resp) = self.session_capacity(&principal.caller()).await {
            return resp;
        }
        let mut req = rebuild(parts, bytes);
        if is_request {
            let span = self.mcp_span(parts, message);
            req.extensions_mut().insert(RequestSpan(span));
        }
        let mut resp = call(inner, req).await;
        if let Some(admission) = admission
            && is_event_stream(&resp)
        {
            // A streamed answer is in progress until its stream ends.
            resp = resp.map(|body| {
                Body::from_stream(futures::StreamExt::map(
                    body.into_data_stream(),
                    move |chunk| {
                        let _held = &admission;
                        chunk
                    },
                ))
            });
        }
        if initialize
            && let Some(id) = resp
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
        {
            self.bind_session(id.to_string(), principal.caller());
        }
        resp
    }

    /// Make room for a new session of `caller`. A caller at `max_sessions_per_subject` has
    /// its oldest session closed (clients that never `DELETE` keep working, and one caller
    /// can never hold more than its share); a full gateway answers 503 + `Retry-After`.
    async fn session_capacity(&self, caller: &CallerId) -> Result<(), Response> {
        let live = self.sessions.live_ids().await;
        if live.len() >= self.max_sessions {
            tracing::warn!(tenant = %self.tenant.plugins.tenant, live = live.len(), max = self.max_sessions, "refused a new session: session limit reached");
            let mut resp = rpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                -32000,
                "the gateway has reached its session limit; retry later or use stateless requests",
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return Err(resp);
        }
        // With authentication off every caller is the one configured identity: only the
        // gateway-wide limit applies.
        if caller.issuer.is_none() {
            return Ok(());
        }
        let oldest = {
            let mut owners = self.owners.lock();
            owners.retain(|id, _| live.contains(id));
            let mut mine: Vec<(&String, &std::time::Instant)> = owners
                .iter()
                .filter(|(_, (o, _))| o == caller)
                .map(|(id, (_, at))| (id, at))
                .collect();
            if mine.len() < self.max_sessions_per_subject {
                return Ok(());
            }
            mine.sort_by_key(|(_, at)| **at);
            let evict: Vec<String> = mine
                .iter()
                .take(mine.len() + 1 - self.max_sessions_per_subject)
                .map(|(id, _)| (*id).clone())
                .collect();
            for id in &evict {
                owners.remove(id);
            }
            evict
        };
        for id in oldest {
            tracing::info!(tenant = %self.tenant.plugins.tenant, caller = %caller, max = self.max_sessions_per_subject,
                session = %crate::telemetry::hashed_session(&id), "closed this caller's oldest session to make room (per-caller session limit)");
            self.sessions.close(&id).await;
        }
        Ok(())
    }

    /// Remember who owns a new session.
    fn bind_session(&self, id: String, caller: CallerId) {
        self.owners
            .lock()
            .insert(id, (caller, std::time::Instant::now()));
    }

    /// A JSON-RPC batch: split it for 2025-03-26 clients, refuse it for later revisions.
    async fn batch(
        &self,
        parts: &Parts,
        items: Vec<Value>,
        inner: Inner,
        principal: &Principal,
    ) -> Response {
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
        if items.is_empty() {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                -32600,
                "an empty batch is not a valid request",
            );
        }
        if items.iter().any(|i| i["method"] == "initialize") {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                -32600,
                "initialize must not be part of a batch",
            );
        }
        let mut responses = Vec::new();
        for item in items {
            let bytes = Bytes::from(item.to_string());
            let resp = self
                .single(parts, bytes, &item, inner.clone(), principal)
                .await;
            if let Some(answer) = batch_answer(resp, item.get("id").cloned()).await {
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

fn is_event_stream(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// The JSON-RPC response for one batch item, from the response the endpoint gave it alone.
async fn batch_answer(resp: Response, id: Option<Value>) -> Option<Value> {
    let status = resp.status();
    if status == StatusCode::ACCEPTED {
        return None;
    }
    let is_sse = is_event_stream(&resp);
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
    messages.into_iter().find(|m| m.get("result").is_some() || m.get("error").is_some()).or_else(|| {
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
