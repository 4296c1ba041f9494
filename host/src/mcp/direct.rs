//! The direct path: a well-formed request for a method that runs a plugin (`tools/call`,
//! `resources/read`, `prompts/get`, `completion/complete`), stateless 2026-07-28 or in a
//! 2025 session, answered from the HTTP front by the same handlers rmcp's service calls,
//! without what rmcp puts between them: for a stateless request, the server it builds per
//! request (a spawned serve loop, a one-shot transport, channels, a second parse of the
//! body, a second look-up of the tool's schema); for a session request, the hops through the
//! session's worker task.
//!
//! Owns: which requests take it ([`accept`] — the one place; anything it does not accept
//! goes to rmcp, which answers every unusual or malformed case: headers that contradict the
//! body, unknown versions, `Mcp-Param-*` headers, sessions whose client may be asked for
//! input), the [`Exchange`] of an accepted
//! request, what rmcp's handler layer does to a 2026-07-28 answer, and the answer on the
//! wire (`application/json` for a lone response, SSE when notifications come first). Must
//! not: handle a method itself (`tools`, `resources`, `prompts`, `completion` do) or
//! authenticate (the front hands over the principal).

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt as _;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use rmcp::ErrorData;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, CompleteRequestParams, ErrorCode,
    GetPromptRequestParams, ProtocolVersion, ReadResourceRequestParams, RequestId,
    RequestMetaObject, ServerJsonRpcMessage, ServerResult,
};
use serde::Deserialize as _;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use super::era::Era;
use super::exchange::{Exchange, ToClient};
use super::gateway::Gateway;
use super::live::{LiveSession, SessionTable};
use super::{completion, prompts, refusal, resources, tools};
use crate::auth::{Denial, Principal, SecretToken};
use crate::downstream::CallNeeds;
use crate::sessions::SessionState;
use crate::tenancy::quota::Held;

const PROTOCOL_VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";
const CLIENT_CAPABILITIES_KEY: &str = "io.modelcontextprotocol/clientCapabilities";

/// A request the direct path answers.
pub(crate) struct Direct {
    id: RequestId,
    call: Call,
    era: Era,
    /// The 2025 session it belongs to, and that session's settings.
    session: Option<(Arc<LiveSession>, Arc<SessionState>)>,
    meta: RequestMetaObject,
    client_caps: Value,
}

enum Call {
    Tool(CallToolRequestParams),
    Read(ReadResourceRequestParams),
    Prompt(GetPromptRequestParams),
    Complete(CompleteRequestParams),
}

/// The request `message` (one JSON-RPC request, POSTed with `headers`), if the direct path
/// answers it: a plugin-running method with a plain `Accept` and `Content-Type`, and either
/// * stateless: no session, a 2026-07-28 `_meta` with client capabilities, and the SEP-2243
///   headers present and equal to the body as sent (no Base64 forms); for `tools/call`, a
///   tool whose schema annotates no `Mcp-Param-*` headers (`has_param_headers`); or
/// * in a 2025 session `live` knows (initialized, still open), with a 2025 version header,
///   no per-request protocol version, and a client that declared nothing the server could
///   ask it for (sampling, elicitation, roots: such requests are answered through the
///   session's own streams, so those sessions stay on rmcp's path).
///
/// Everything else goes through rmcp unchanged.
pub(crate) fn accept(
    headers: &HeaderMap,
    message: &mut Value,
    live: &SessionTable,
    has_param_headers: impl Fn(&str) -> bool,
) -> Option<Direct> {
    let (method, era, session, client_caps) = eligible(headers, message, live, has_param_headers)?;
    let id = RequestId::deserialize(message.get("id")?).ok()?;
    // Taken, not copied: a request that fails to parse goes to rmcp as the bytes it came as.
    let mut params = message.get_mut("params")?.take();
    let meta = match params.as_object_mut()?.remove("_meta") {
        Some(Value::Object(meta)) => meta,
        _ => serde_json::Map::new(),
    };
    let call = match method {
        "tools/call" => Call::Tool(serde_json::from_value(params).ok()?),
        "resources/read" => Call::Read(serde_json::from_value(params).ok()?),
        "prompts/get" => Call::Prompt(serde_json::from_value(params).ok()?),
        _ => Call::Complete(serde_json::from_value(params).ok()?),
    };
    Some(Direct {
        id,
        call,
        era,
        session,
        meta: RequestMetaObject::from(meta),
        client_caps,
    })
}

/// What [`accept`] checks, reading `message` only: its method, era, session and the client
/// capabilities it runs with.
#[allow(clippy::type_complexity, reason = "one private step of `accept`")]
fn eligible(
    headers: &HeaderMap,
    message: &Value,
    live: &SessionTable,
    has_param_headers: impl Fn(&str) -> bool,
) -> Option<(
    &'static str,
    Era,
    Option<(Arc<LiveSession>, Arc<SessionState>)>,
    Value,
)> {
    let (method, name_key) = match message.get("method")?.as_str()? {
        "tools/call" => ("tools/call", Some("name")),
        "prompts/get" => ("prompts/get", Some("name")),
        "resources/read" => ("resources/read", Some("uri")),
        "completion/complete" => ("completion/complete", None),
        _ => return None,
    };
    let params = message.get("params")?.as_object()?;
    if !negotiates_json_and_sse(headers) {
        return None;
    }
    let meta = params.get("_meta");
    if headers.contains_key("mcp-session-id") {
        let (live, state) = in_session(headers, meta, live)?;
        let caps = live.client_caps.clone();
        return Some((method, Era::Session, Some((live, state)), caps));
    }
    let meta = meta?.as_object()?;
    let version = meta.get(PROTOCOL_VERSION_KEY)?.as_str()?;
    if version != ProtocolVersion::V_2026_07_28.as_str()
        || sole(headers, "mcp-protocol-version")? != version
        || sole(headers, "mcp-method")? != method
    {
        return None;
    }
    if let Some(key) = name_key {
        let name = params.get(key)?.as_str()?;
        if sole(headers, "mcp-name")? != name || name.starts_with("=?base64?") {
            return None;
        }
        if method == "tools/call" && has_param_headers(name) {
            return None;
        }
    }
    let caps = meta.get(CLIENT_CAPABILITIES_KEY)?;
    ClientCapabilities::deserialize(caps).ok()?;
    Some((method, Era::Stateless, None, caps.clone()))
}

/// The session a session request names, if the direct path may serve it (see [`accept`]).
fn in_session(
    headers: &HeaderMap,
    meta: Option<&Value>,
    live: &SessionTable,
) -> Option<(Arc<LiveSession>, Arc<SessionState>)> {
    let id = sole(headers, "mcp-session-id")?;
    // A version rmcp knows, of the session era (the one era decision, `Era::of_version`).
    let version = sole(headers, "mcp-protocol-version")?;
    let known = ProtocolVersion::KNOWN_VERSIONS
        .iter()
        .any(|v| v.as_str() == version);
    if !known || Era::of_version(version) != Era::Session {
        return None;
    }
    // A per-request protocol version would make rmcp serve the request statelessly.
    if meta.is_some_and(|m| !m.is_object() || m.get(PROTOCOL_VERSION_KEY).is_some()) {
        return None;
    }
    let session = live.get(id)?;
    let asks_nothing = ["sampling", "elicitation", "roots"]
        .iter()
        .all(|k| session.client_caps.get(k).is_none());
    if !asks_nothing {
        return None;
    }
    let state = session.state()?;
    Some((session, state))
}

/// The one value of header `name`, if it has exactly one and it is text.
fn sole<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

/// `Content-Type: application/json`, and an `Accept` that plainly lists both
/// `application/json` and `text/event-stream` (weights and wildcards go to rmcp's
/// negotiation).
fn negotiates_json_and_sse(headers: &HeaderMap) -> bool {
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|e| e.trim().eq_ignore_ascii_case("application/json"))
        });
    let (mut json, mut sse) = (false, false);
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else {
            return false;
        };
        for range in value.split(',') {
            let range = range.trim();
            if range.contains(';') {
                return false;
            }
            json |= range.eq_ignore_ascii_case("application/json");
            sse |= range.eq_ignore_ascii_case("text/event-stream");
        }
    }
    json_body && json && sse
}

impl Direct {
    /// Whether the request belongs to a 2025 session.
    pub(crate) fn in_session(&self) -> bool {
        self.session.is_some()
    }

    /// Answer the request as `who` (with `secret` for the downstream capability), inside
    /// `span`, the request's `mcp.request` span.
    pub(crate) async fn answer(
        self,
        gateway: &Gateway,
        who: Principal,
        secret: Option<SecretToken>,
        span: tracing::Span,
        held: Option<Held>,
    ) -> Answered {
        let Self {
            id,
            call,
            era,
            session,
            meta,
            client_caps,
        } = self;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let needs = Arc::new(CallNeeds::default());
        let cancel = CancellationToken::new();
        // A client that goes away cancels the call (the guard moves into a streamed body).
        let guard = cancel.clone().drop_guard();
        let exchange = Exchange {
            who,
            secret,
            id: serde_json::to_value(&id).unwrap_or(Value::Null),
            meta,
            era,
            client_caps,
            cancel: cancel.clone(),
            span: Some(span),
            to_client: ToClient::Stream(tx.clone()),
            session_peer: session.as_ref().map(|(live, _)| live.peer.clone()),
            held,
            needs: needs.clone(),
        };
        // A session request is served by its session's handler (its log level) and can be
        // cancelled by the client's `notifications/cancelled` (`SessionTable::cancel`).
        let (gateway, inflight) = match &session {
            Some((live, state)) => (
                Gateway::with_session(gateway.tenant.clone(), state.clone()),
                Some(live.start(&exchange.id, cancel)),
            ),
            None => (gateway.clone(), None),
        };
        let mut work = Box::pin(async move {
            let result = dispatch(&gateway, call, &exchange).await;
            drop((exchange, inflight));
            message(result, id, era)
        });
        let first = tokio::select! {
            biased;
            done = &mut work => {
                let notes = drain(&mut rx);
                drop(guard);
                if notes.is_empty() {
                    // Not started: a downstream authorization server that asked for the
                    // user makes it a challenge.
                    return Answered {
                        response: json_answer(done),
                        challenge: needs.step_up().as_ref().map(refusal::step_up_denial),
                    };
                }
                return sse_answer(futures::stream::iter(notes.into_iter().chain([done.1])).boxed(), None).into();
            }
            Some(note) = rx.recv() => note,
        };
        // A notification came first: stream it, and the rest, while the call goes on.
        tokio::spawn(async move {
            let (_, last) = work.await;
            let _ = tx.send(last);
        });
        let rest =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        sse_answer(
            futures::stream::once(async move { first })
                .chain(rest)
                .boxed(),
            Some(guard),
        )
        .into()
    }
}

/// The direct path's answer to one request.
pub(crate) struct Answered {
    pub(crate) response: Response,
    /// The challenge to answer with instead, when the answer has not started and a
    /// downstream authorization server asked for the user.
    pub(crate) challenge: Option<Denial>,
}

impl From<Response> for Answered {
    fn from(response: Response) -> Self {
        Self {
            response,
            challenge: None,
        }
    }
}

async fn dispatch(gw: &Gateway, call: Call, ex: &Exchange) -> Result<ServerResult, ErrorData> {
    let mut result = match call {
        Call::Tool(p) => tools::call(gw, p, ex).await.map(ServerResult::from),
        Call::Read(p) => resources::read(gw, p, ex).await.map(ServerResult::from),
        Call::Prompt(p) => prompts::get(gw, p, ex).await.map(ServerResult::from),
        Call::Complete(p) => completion::complete_argument(gw, p, ex)
            .await
            .map(ServerResult::CompleteResult),
    };
    // What rmcp's handler layer does to every answer for the peer's revision.
    match (&mut result, ex.era) {
        (Ok(r), Era::Stateless) => r.fill_missing_cache_hints(),
        (Ok(r), Era::Session) => {
            r.strip_result_type_for_legacy_peer();
            r.strip_non_object_output_for_legacy_peer();
        }
        (Err(e), Era::Stateless) if e.code == ErrorCode::RESOURCE_NOT_FOUND => {
            e.code = ErrorCode::INVALID_PARAMS;
        }
        (Err(_), _) => {}
    }
    result
}

/// The JSON-RPC message answering `id`, serialized, with the HTTP status a lone answer gets
/// (in a 2025 session, always 200).
fn message(
    result: Result<ServerResult, ErrorData>,
    id: RequestId,
    era: Era,
) -> (StatusCode, String) {
    let status = match (&result, era) {
        (Err(e), Era::Stateless) => status_of(e.code),
        _ => StatusCode::OK,
    };
    let message = match result {
        Ok(r) => ServerJsonRpcMessage::response(r, id),
        Err(e) => ServerJsonRpcMessage::error(e, Some(id)),
    };
    let text = serde_json::to_string(&message).unwrap_or_else(|e| {
        tracing::error!("cannot serialize an answer: {e}");
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"cannot serialize the answer"}}"#.into()
    });
    (status, text)
}

/// The HTTP status of a lone JSON-RPC error on 2026-07-28 (as the Streamable HTTP transport
/// maps it: request-level faults are 400, an unknown method 404, everything else in-band).
fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::UNSUPPORTED_PROTOCOL_VERSION
        | ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY
        | ErrorCode::HEADER_MISMATCH => StatusCode::BAD_REQUEST,
        ErrorCode::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    }
}

fn drain(rx: &mut mpsc::UnboundedReceiver<String>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(m) = rx.try_recv() {
        out.push(m);
    }
    out
}

fn json_answer((status, body): (StatusCode, String)) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn sse_answer(
    messages: futures::stream::BoxStream<'static, String>,
    guard: Option<tokio_util::sync::DropGuard>,
) -> Response {
    let events = messages.map(move |m| {
        let _held = &guard;
        Ok::<_, std::convert::Infallible>(Bytes::from(format!("data: {m}\n\n")))
    });
    let mut resp = Response::new(Body::from_stream(events));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
