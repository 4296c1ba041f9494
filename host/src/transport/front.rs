//! The front of each tenant's MCP endpoint: what must happen before the protocol layer sees a
//! request, as named steps in one visible order ([`Front::handle`]).
//!
//! Owns: the order of the steps and their answers on the wire — 401/400 (authentication), 404
//! (another caller's session), 413/400 (body), 429 + `Retry-After` (quota), 403 step-up
//! (scopes, before any stream opens), 503 + `Retry-After` (session limit) — and each request's
//! HTTP and MCP spans. Must not: decide any of them itself — `auth` authenticates, `sessions`
//! owns session owners and caps, `tenancy` quotas, `authz` scopes (and whether a call may be asked for an approval);
//! `jsonrpc` reads the body. Host/Origin validation is the layer in front of this one.

#![allow(
    clippy::result_large_err,
    reason = "a refused step's error is its HTTP answer, built once per request"
)]

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::json;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tracing::Instrument as _;

use super::forward::{FORWARDED, Forwarder};
use super::jsonrpc::{self, Envelope, Posted, code, rpc_error};
use super::polling::Polling;
use crate::auth::{Carried, Denial, Principal, SecretToken, TenantAuth};
use crate::mcp::{self, Gateway, TenantContext, step_up_scopes};
use crate::sessions::{NoRoom, Reservation, Route, RouteError, Sessions};
use crate::telemetry::{self, McpRequest, RequestSpan, metrics};
use crate::tenancy::quota::{Admission, Held, Refusal};

tokio::task_local! {
    /// What the audit record says of the request the front is handling (#33).
    static NOTE: std::cell::RefCell<Note>;
}

/// A request's audit facts, gathered by the steps that learn them.
#[derive(Default)]
struct Note {
    method: Option<String>,
    caller: Option<crate::audit::Caller>,
    authentication: &'static str,
    by: Option<String>,
}

/// Add to the request's note (a no-op outside [`Front::handle`]).
fn note(f: impl FnOnce(&mut Note)) {
    let _ = NOTE.try_with(|n| f(&mut n.borrow_mut()));
}

/// The most of an unauthenticated request's body read to answer it in-band.
const UNAUTHENTICATED_BODY_BYTES: usize = 64 * 1024;

/// The MCP stack behind the front.
pub(crate) type Inner = BoxCloneSyncService<Request, Response, Infallible>;

/// `match` on a step's `Result<T, Response>`: its value, or its refusal as the answer.
macro_rules! step {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(refusal) => return refusal,
        }
    };
}

/// Everything enforced at the front of one tenant's endpoint.
pub(crate) struct Front {
    tenant: Arc<TenantContext>,
    /// The handler the direct path answers with (stateless: no session state is used).
    gateway: Gateway,
    /// rmcp's service, for every message the direct path does not take (cloned only then).
    inner: Inner,
    auth: Arc<TenantAuth>,
    sessions: Arc<Sessions>,
    /// With several replicas: sends requests for sessions held elsewhere to their replica.
    forwarder: Option<Forwarder>,
    max_body_bytes: usize,
    /// When set: 2025-11-25 session calls' SSE streams end after a while, and are resumed
    /// from there (SSE polling).
    polling: Option<Arc<Polling>>,
}

/// Whether `parts` is a request of a 2025-11-25 session, the revision whose clients resume a
/// closed stream (SEP-1699).
fn polls(parts: &Parts) -> bool {
    session_id(parts).is_some()
        && parts
            .headers
            .get("mcp-protocol-version")
            .is_some_and(|v| v == "2025-11-25")
}

fn session_id(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
}

impl Front {
    /// The front of `tenant`'s endpoint.
    pub(crate) fn new(
        tenant: Arc<TenantContext>,
        auth: Arc<TenantAuth>,
        sessions: Arc<Sessions>,
        forwarder: Option<Forwarder>,
        max_body_bytes: usize,
        polling: Option<Arc<Polling>>,
        inner: Inner,
    ) -> Self {
        Self {
            gateway: Gateway::new(tenant.clone(), None),
            inner,
            tenant,
            auth,
            sessions,
            forwarder,
            max_body_bytes,
            polling,
        }
    }

    fn tenant_id(&self) -> &str {
        self.tenant.id()
    }

    /// Handle one request to the endpoint, inside its `http.request` span.
    pub(crate) async fn handle(&self, req: Request) -> Response {
        let started = std::time::Instant::now();
        let method = req.method().clone();
        let span = telemetry::http_span(self.tenant_id(), &method, req.uri().path(), req.headers());
        let first = std::cell::RefCell::new(Note {
            authentication: "none",
            ..Note::default()
        });
        let (resp, said) = NOTE
            .scope(first, async {
                let resp = self.steps(req).await;
                (resp, NOTE.with(|n| std::mem::take(&mut *n.borrow_mut())))
            })
            .instrument(span.clone())
            .await;
        let status = resp.status().as_u16();
        let audit = &self.tenant.audit;
        if audit.on() {
            audit.record(
                self.tenant_id(),
                telemetry::trace_id(&span),
                crate::audit::What::Request {
                    method: said.method,
                    caller: said.caller,
                    authentication: said.authentication,
                    status,
                    by: said.by,
                },
            );
        }
        span.record("http.response.status_code", i64::from(status));
        if status >= 500 {
            telemetry::fail(&span, &status.to_string());
        }
        if metrics::recording() {
            metrics::get().http_duration.record(
                started.elapsed().as_secs_f64(),
                &metrics::attrs(
                    self.tenant_id(),
                    &[
                        ("http.request.method", telemetry::http_method(&method)),
                        ("http.response.status_code", &status.to_string()),
                    ],
                ),
            );
        }
        resp
    }

    /// The steps, in order. The order is the policy: nothing runs for an unauthenticated
    /// caller; a session's owner is checked (or the request forwarded to the replica holding
    /// the session) before its body is read; quota, scopes and the session cap need the
    /// parsed message, so they come after it (per message of a batch).
    async fn steps(&self, req: Request) -> Response {
        let (mut parts, body) = req.into_parts();
        let mut authenticated = match self.auth.authenticate(&parts).await {
            Ok(a) => a,
            Err(denial) => return self.refuse_unauthenticated(&denial, parts, body).await,
        };
        // The credential goes no further than this: handlers get the principal, and the
        // downstream capability the non-printable secret. Its headers are kept only while the
        // request may go to another replica, which authenticates it again.
        let may_forward = self.forwarder.is_some() && session_id(&parts).is_some();
        let carried = Carried::take(&mut parts.headers, may_forward);
        let caller = authenticated.principal.clone();
        note(|n| {
            n.caller = Some(crate::audit::Caller::of(&caller));
            n.authentication = if caller.issuer.is_some() {
                "ok"
            } else {
                "none"
            };
        });
        parts.extensions.insert(caller.clone());
        if let Some(secret) = authenticated.secret.take() {
            parts.extensions.insert(secret);
        }
        if let Route::Peer { replica, url } = step!(self.route_session(&parts, &caller).await)
            && let Some(forwarder) = &self.forwarder
        {
            // Its DPoP proof is spent by the replica that serves it, not here.
            return forwarder
                .forward(&parts, body, carried, (&replica, &url))
                .await;
        }
        drop(carried);
        if let Err(denial) = authenticated.spend().await {
            return self.deny(&denial, Some(&caller), &parts);
        }
        if parts.method != Method::POST {
            return self.not_posted(parts, body, &caller).await;
        }
        match step!(jsonrpc::read(&parts, body, self.max_body_bytes).await) {
            Posted::Single(message) => self.message(&parts, message, &caller).await,
            Posted::Batch(items) => {
                let mut answers = Vec::new();
                for item in items {
                    let id = item.id();
                    let resp = self.message(&parts, item, &caller).await;
                    answers.extend(jsonrpc::batch_answer(resp, id).await);
                }
                jsonrpc::batch_response(answers)
            }
        }
    }

    /// One JSON-RPC message: quota, scopes, approval, session cap, then the protocol layer.
    async fn message(&self, parts: &Parts, message: Envelope, caller: &Principal) -> Response {
        note(|n| n.method = message.message["method"].as_str().map(str::to_string));
        let admission = step!(self.admit(caller, &message).await).map(Held::from);
        step!(self.check_scopes(caller, &message, parts));
        // An approved call: the plugin is told what was approved (its call context's claims).
        let approved = step!(self.check_approval(caller, &message, parts).await)
            .map(|detail| caller.with_claim("authorization_details", &detail));
        let caller = approved.as_ref().unwrap_or(caller);
        let room = if message.is_initialize() && session_id(parts).is_none() {
            Some(step!(self.make_room(caller, message.id()).await))
        } else {
            None
        };
        let resp = self
            .forward(parts, message, admission, caller, approved.is_some())
            .await;
        if let Some(room) = room
            && let Some(id) = resp.headers().get("mcp-session-id")
            && let Ok(id) = id.to_str()
            && let Err(e) = self.sessions.open(id.to_string(), room).await
        {
            tracing::warn!(tenant = %self.tenant_id(),
                "refused a new session: it could not be recorded for the other replicas: {e}");
            return unavailable(
                "new sessions cannot be recorded for the other replicas right now; retry, or use stateless requests",
            );
        }
        resp
    }

    /// A `GET` (the session's event stream) or `DELETE` (its end), through rmcp's service.
    async fn not_posted(&self, parts: Parts, body: Body, caller: &Principal) -> Response {
        let id = session_id(&parts).map(str::to_string);
        let delete = parts.method == Method::DELETE;
        if let Some(id) = &id
            && !delete
        {
            self.sessions.served(id, false).await;
            // The resumption of a stream the gateway cut: answered from what it kept.
            if let Some(polling) = &self.polling
                && let Some(last) = parts.headers.get("last-event-id")
                && let Ok(last) = last.to_str()
                && self.sessions.holds(id, &caller.caller())
                && let Some(resumed) = polling.resume(id, &caller.caller(), last)
            {
                return resumed;
            }
        }
        let resp = self.call(Request::from_parts(parts, body)).await;
        if let Some(id) = &id
            && delete
            && resp.status().is_success()
        {
            self.sessions.ended(id).await;
            if let Some(polling) = &self.polling {
                polling.forget(id);
            }
        }
        resp
    }

    /// Step 1 refused: who is calling could not be established (401/400/429/503). A tool
    /// call that more authorization would cure is answered in-band too, when the tenant says
    /// so: its body is read only to find the call's id, and only up to
    /// [`UNAUTHENTICATED_BODY_BYTES`] (a larger one gets the HTTP challenge alone), so an
    /// unauthenticated caller makes the gateway hold little.
    async fn refuse_unauthenticated(&self, denial: &Denial, parts: Parts, body: Body) -> Response {
        let challenge = self
            .auth
            .challenge(denial, None, crate::auth::presented_scheme(&parts));
        self.log_denial(denial, None, &parts);
        if challenge.curable()
            && self.auth.challenges_in_band()
            && parts.method == Method::POST
            && let Ok(Posted::Single(message)) = jsonrpc::read(
                &parts,
                body,
                self.max_body_bytes.min(UNAUTHENTICATED_BODY_BYTES),
            )
            .await
            && let Some(id) = tool_call_id(&message)
        {
            return challenge.in_band_response(&id);
        }
        challenge.response()
    }

    /// Step 2: a session is usable only by the caller that created it (404 otherwise, as for
    /// an unknown session); one another replica holds is that replica's to serve (503 while
    /// the shared directory cannot say which).
    async fn route_session(&self, parts: &Parts, caller: &Principal) -> Result<Route, Response> {
        let Some(id) = session_id(parts) else {
            return Ok(Route::Here);
        };
        let forwarded = parts.headers.contains_key(FORWARDED);
        self.sessions
            .route(id, &caller.caller(), forwarded)
            .await
            .map_err(|e| match e {
                RouteError::NotOwner(_) => {
                    tracing::warn!(tenant = %self.tenant_id(), caller = %caller.caller(),
                        "refused a session created by another caller");
                    (StatusCode::NOT_FOUND, "Not Found: Session not found").into_response()
                }
                RouteError::DirectoryDown(e) => {
                    tracing::warn!(tenant = %self.tenant_id(),
                        "cannot tell which replica holds this session: {e}");
                    unavailable(
                        "the replica holding this session cannot be found right now; retry shortly",
                    )
                }
            })
    }

    /// Step 3 (per message): the tenant's quotas, for requests (429 + `Retry-After`).
    async fn admit(
        &self,
        caller: &Principal,
        message: &Envelope,
    ) -> Result<Option<Admission>, Response> {
        if !message.is_request() || !self.tenant.quotas.limits_requests() {
            return Ok(None);
        }
        match self.tenant.quotas.admit(&caller.caller()).await {
            Ok(a) => Ok(Some(a)),
            Err(refusal) => Err(self.over_quota(&refusal, caller, message)),
        }
    }

    /// Step 4: the scopes the targeted items declare (403 step-up before any stream opens;
    /// every other refusal of the one decision is the protocol layer's to answer).
    fn check_scopes(
        &self,
        caller: &Principal,
        message: &Envelope,
        parts: &Parts,
    ) -> Result<(), Response> {
        let catalog = self.tenant.plugins.catalog();
        match step_up_scopes(&self.tenant.authz, &catalog, caller, &message.message) {
            Some(required) => Err(self.deny_call(
                &Denial::InsufficientScope { required },
                caller,
                parts,
                tool_call_id(message),
            )),
            None => Ok(()),
        }
    }

    /// Step 4b (`tools/call` of a tool that needs a person's approval of each call, #32): the
    /// caller's token must carry `authorization_details` authorizing exactly this call — its
    /// type, this tenant's resource, this tool, the caller's subject, the bound argument
    /// values — issued recently
    /// enough; a single-use approval is spent here, once for every replica (the call that
    /// becomes a task spends it at creation, as this is before the protocol layer). Otherwise
    /// 403 `insufficient_authorization` with the details that would authorize this call.
    /// Judged against this call alone, never against what an earlier refusal asked for.
    async fn check_approval(
        &self,
        caller: &Principal,
        message: &Envelope,
        parts: &Parts,
    ) -> Result<Option<serde_json::Value>, Response> {
        if tool_call_id(message).is_none() {
            return Ok(None);
        }
        let params = &message.message["params"];
        let Some(tool) = params["name"].as_str() else {
            return Ok(None);
        };
        let catalog = self.tenant.plugins.catalog();
        let Some(rule) = catalog.approval(tool) else {
            return Ok(None);
        };
        if caller.issuer.is_none() {
            // A configured identity (auth off): the operator is the one approving.
            return Ok(None);
        }
        let empty = serde_json::Map::new();
        let arguments = params["arguments"].as_object().map_or_else(
            || serde_json::Value::Object(empty),
            |a| serde_json::Value::Object(a.clone()),
        );
        // A call the caller may not make, with or without these arguments, is refused as such
        // (by the protocol layer, after the tool's schema check), never answered with a
        // request for approval: that would show a tool the caller's list hides, or spend a
        // person's approval on a call that cannot run.
        let authz = &self.tenant.authz;
        let asked = crate::authz::Request::of(caller, crate::authz::Target::Tool(tool));
        let allowed = authz
            .decide(&catalog, &asked)
            .and_then(|_| authz.decide(&catalog, &asked.with_arguments(&arguments)));
        if allowed.is_err() {
            return Ok(None);
        }
        let call = crate::oauth::approval::Call {
            tool,
            arguments: &arguments,
            resource: &self.auth.resource,
            subject: caller.subject.as_deref(),
        };
        let required = || rule.details_for(call);
        let refuse = |why: &str| {
            let details = required();
            self.deny_call(
                &Denial::InsufficientAuthorization {
                    reference: (!rule.single_use)
                        .then(|| crate::oauth::approval::reference(&details)),
                    details,
                    why: why.into(),
                },
                caller,
                parts,
                tool_call_id(message),
            )
        };
        let Some(approvals) = caller.approvals.as_deref() else {
            return Err(refuse("the token carries no approval for it"));
        };
        let Some(detail) = rule.matching(&approvals.details, call) else {
            return Err(refuse("the token's approvals do not cover this call"));
        };
        let now = jsonwebtoken::get_current_timestamp();
        if !rule.fresh(approvals.issued_at, now) {
            return Err(refuse("the approval is older than this tool allows"));
        }
        if rule.single_use {
            let until = approvals.issued_at.unwrap_or(now) + rule.max_age_secs + 60;
            let issuer = caller.issuer.as_deref().unwrap_or_default();
            match self
                .auth
                .spend_approval(approvals, issuer, detail, until)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    return Err(refuse(
                        "the approval authorized one call, which has been made",
                    ));
                }
                Err(denial) => return Err(self.deny(&denial, Some(caller), parts)),
            }
        }
        tracing::info!(tenant = %self.tenant_id(), caller = %caller.caller(), tool = %tool,
            kind = %rule.kind, "an approved call");
        Ok(Some(detail.clone()))
    }

    /// Step 5 (`initialize` only): room for a new session, reserved until the session exists
    /// (503 + `Retry-After` when the gateway is full, 429 while the caller is opening as many
    /// as it may hold).
    async fn make_room(
        &self,
        caller: &Principal,
        id: serde_json::Value,
    ) -> Result<Reservation, Response> {
        self.sessions
            .make_room(&caller.caller())
            .await
            .map_err(|refused| match refused {
                NoRoom::Full(full) => {
                    tracing::warn!(tenant = %self.tenant_id(), live = full.live, max = full.max,
                        "refused a new session: session limit reached");
                    let mut resp = unavailable(
                        "the gateway has reached its session limit; retry later or use stateless requests",
                    );
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                    resp
                }
                NoRoom::Down(e) => {
                    tracing::warn!(tenant = %self.tenant_id(),
                        "refused a new session: the caller's sessions on the other replicas cannot be counted: {e}");
                    unavailable(
                        "new sessions cannot be counted across the replicas right now; retry, or use stateless requests",
                    )
                }
                busy @ NoRoom::Busy { .. } => {
                    tracing::info!(tenant = %self.tenant_id(), caller = %caller.caller(),
                        "refused a new session: {busy}");
                    let body = json!({"jsonrpc": "2.0", "id": id,
                        "error": {"code": code::SERVER_ERROR, "message": format!("Too many requests: {busy}"),
                                  "data": {"limit": "server.max_sessions_per_subject", "retryAfter": 1}}});
                    crate::auth::too_many_requests(&body, 1)
                }
            })
    }

    /// Last: the protocol layer — the direct path when it takes the message, rmcp's service
    /// otherwise — inside the message's `mcp.request` span; a quota admission is held until a
    /// streamed answer ends.
    async fn forward(
        &self,
        parts: &Parts,
        mut message: Envelope,
        admission: Option<Held>,
        caller: &Principal,
        approved: bool,
    ) -> Response {
        let span = message.is_request().then(|| self.mcp_span(parts, &message));
        if let Some(id) = session_id(parts)
            && !message.is_request()
        {
            mcp::cancelled(&self.tenant, id, &message.message);
        }
        let call = tool_call_id(&message);
        let catalog = self.tenant.plugins.catalog();
        let direct = span.as_ref().and_then(|_| {
            mcp::direct(&self.tenant, &catalog, &parts.headers, &mut message.message)
        });
        if let Some(id) = session_id(parts) {
            // The session is held here (or unknown: then this does nothing that lasts).
            self.sessions
                .served(id, direct.as_ref().is_some_and(mcp::Direct::in_session))
                .await;
        }
        let resp = match (direct, &span) {
            (Some(direct), Some(span)) => {
                self.direct(parts, direct, caller, span, admission.clone(), call)
                    .await
            }
            _ => {
                let mut req = rebuild(parts, message.bytes);
                if approved {
                    // The request's own principal, with what was approved for this call.
                    req.extensions_mut().insert(caller.clone());
                }
                if let Some(span) = &span {
                    req.extensions_mut().insert(RequestSpan(span.clone()));
                }
                if let Some(held) = &admission {
                    // The handler holds it too: rmcp goes on with a call whose client has gone.
                    req.extensions_mut().insert(held.clone());
                }
                let resp = self.call(req).await;
                match (&self.polling, session_id(parts)) {
                    // rmcp's session streams carry event ids and a `retry`: a client resumes
                    // them (the direct path's do not, so they are never cut).
                    (Some(polling), Some(id)) if span.is_some() && polls(parts) => {
                        polling.cut(resp, id, caller.caller())
                    }
                    _ => resp,
                }
            }
        };
        // Refused by the protocol layer before any handler ran (an unknown session, a bad
        // header): the request's span says so.
        if let Some(span) = &span
            && !resp.status().is_success()
        {
            telemetry::fail(span, resp.status().as_str());
        }
        match admission {
            Some(admission) if jsonrpc::is_event_stream(&resp) => resp.map(|body| {
                Body::from_stream(futures::StreamExt::map(
                    body.into_data_stream(),
                    move |chunk| {
                        let _held = &admission;
                        chunk
                    },
                ))
            }),
            _ => resp,
        }
    }

    fn deny(&self, denial: &Denial, principal: Option<&Principal>, parts: &Parts) -> Response {
        self.log_denial(denial, principal, parts);
        self.auth.challenge(denial, principal, None).response()
    }

    /// [`Front::deny`] for a message that may be a tool call (`call`: its id): answered
    /// in-band too when the tenant says so and more authorization would cure it.
    fn deny_call(
        &self,
        denial: &Denial,
        principal: &Principal,
        parts: &Parts,
        call: Option<serde_json::Value>,
    ) -> Response {
        self.log_denial(denial, Some(principal), parts);
        let challenge = self.auth.challenge(denial, Some(principal), None);
        match call {
            Some(id) if challenge.curable() && self.auth.challenges_in_band() => {
                challenge.in_band_response(&id)
            }
            _ => challenge.response(),
        }
    }

    fn log_denial(&self, denial: &Denial, principal: Option<&Principal>, parts: &Parts) {
        note(|n| {
            n.by = Some(denial.reason().to_string());
            if principal.is_none() {
                n.authentication = "refused";
            }
        });
        metrics::get().denials.add(
            1,
            &metrics::attrs(self.tenant_id(), &[("portcullis.reason", denial.reason())]),
        );
        tracing::info!(
            tenant = %self.tenant_id(),
            reason = denial.reason(),
            subject = principal.and_then(|p| p.subject.as_deref()),
            method = telemetry::http_method(&parts.method),
            "request denied: {}",
            denial.detail()
        );
    }

    /// A request over a quota: 429, `Retry-After`, and a JSON-RPC error for its id (503 when
    /// the quotas cannot be checked).
    fn over_quota(&self, refusal: &Refusal, principal: &Principal, message: &Envelope) -> Response {
        note(|n| n.by = Some("quota".into()));
        if !refusal.is_callers() {
            return unavailable(&format!("{refusal}; retry shortly"));
        }
        metrics::get().quota_rejections.add(
            1,
            &metrics::attrs(self.tenant_id(), &[("portcullis.limit", refusal.limit())]),
        );
        let wait = refusal.retry_after_secs();
        tracing::info!(tenant = %self.tenant_id(), subject = principal.subject.as_deref(),
            limit = refusal.limit(), retry_after = wait, "request refused: {refusal}");
        let body = json!({"jsonrpc": "2.0", "id": message.id(),
            "error": {"code": code::SERVER_ERROR, "message": format!("Too many requests: {refusal}; retry in {wait} s"),
                      "data": {"limit": refusal.limit(), "retryAfter": wait}}});
        crate::auth::too_many_requests(&body, wait)
    }

    /// The `mcp.request` span for `message` (a child of the current HTTP span, or of the
    /// trace its `_meta` names).
    fn mcp_span(&self, parts: &Parts, message: &Envelope) -> tracing::Span {
        if !telemetry::spans_enabled() {
            return tracing::Span::none();
        }
        let params = &message.message["params"];
        let target = params["name"]
            .as_str()
            .or_else(|| params["uri"].as_str())
            .or_else(|| {
                params["ref"]["name"]
                    .as_str()
                    .or_else(|| params["ref"]["uri"].as_str())
            });
        let meta = params.get("_meta").and_then(serde_json::Value::as_object);
        let header_version = parts
            .headers
            .get("mcp-protocol-version")
            .and_then(|v| v.to_str().ok());
        let protocol_version = header_version.or_else(|| {
            meta.and_then(|m| m.get("io.modelcontextprotocol/protocolVersion"))
                .and_then(serde_json::Value::as_str)
        });
        let id = message.id();
        telemetry::mcp_span(
            &McpRequest {
                tenant: self.tenant_id(),
                method: message.message["method"].as_str().unwrap_or("unknown"),
                target,
                request_id: Some(id.as_str().map_or_else(|| id.to_string(), str::to_string)),
                session: session_id(parts),
                protocol_version,
            },
            meta,
            false,
        )
    }
}

/// The id of `message` when it is a `tools/call` request: the refusals a client may cure are
/// answered in-band to those.
fn tool_call_id(message: &Envelope) -> Option<serde_json::Value> {
    (message.is_request() && message.message["method"] == "tools/call").then(|| message.id())
}

/// 503 with a JSON-RPC error saying `why`, and `Retry-After: 1`.
fn unavailable(why: &str) -> Response {
    let mut resp = rpc_error(StatusCode::SERVICE_UNAVAILABLE, code::SERVER_ERROR, why);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// A request with `parts`' method, URI, headers and extensions and a new body.
fn rebuild(parts: &Parts, body: bytes::Bytes) -> Request {
    let mut req = Request::new(Body::from(body));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.headers_mut() = parts.headers.clone();
    req.headers_mut().remove(header::CONTENT_LENGTH);
    *req.extensions_mut() = parts.extensions.clone();
    req
}

impl Front {
    /// A message the direct path took, answered as `caller` inside `span`.
    async fn direct(
        &self,
        parts: &Parts,
        direct: mcp::Direct,
        caller: &Principal,
        span: &tracing::Span,
        held: Option<Held>,
        call: Option<serde_json::Value>,
    ) -> Response {
        let secret = parts.extensions.get::<SecretToken>().cloned();
        let answered = direct
            .answer(&self.gateway, caller.clone(), secret, span.clone(), held)
            .await;
        match answered.challenge {
            Some(denial) => self.deny_call(&denial, caller, parts, call),
            None => answered.response,
        }
    }

    /// `req` through rmcp's service.
    async fn call(&self, req: Request) -> Response {
        match self.inner.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }
}
