//! JSON-RPC at the front: reading a bounded body, parsing it once into an [`Envelope`] (or a
//! batch of them), and the error bodies the front answers with.
//!
//! Owns: the body limit (413), parse errors (400/-32700), batch rules (split for 2025-03-26
//! clients, refused for later revisions) and the JSON-RPC error codes the front uses. Must
//! not: interpret MCP methods beyond `initialize` and what a message targets (`mcp` does).

#![allow(
    clippy::result_large_err,
    reason = "a refused step's error is its HTTP answer, built once per request"
)]

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::request::Parts;
use http::{StatusCode, header};
use serde_json::{Value, json};

/// JSON-RPC error codes the front answers with.
pub(crate) mod code {
    /// The body is not JSON.
    pub(crate) const PARSE_ERROR: i64 = -32700;
    /// Not a valid request (oversized, a batch where none is allowed, …).
    pub(crate) const INVALID_REQUEST: i64 = -32600;
    /// An internal error answering a batch item.
    pub(crate) const INTERNAL_ERROR: i64 = -32603;
    /// A server condition (quota, session limit).
    pub(crate) const SERVER_ERROR: i64 = -32000;
}

/// The only revision whose clients may send JSON-RPC batches.
const BATCH_REVISION: &str = "2025-03-26";

/// A JSON-RPC error response without an id, with an HTTP status.
pub(crate) fn rpc_error(status: StatusCode, code: i64, message: impl Into<String>) -> Response {
    let body =
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message.into()}});
    json_response(status, &body)
}

/// `body` as an `application/json` response.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// One JSON-RPC message, parsed once: its JSON and the bytes it came as.
pub(crate) struct Envelope {
    /// The message.
    pub(crate) message: Value,
    /// Its bytes, as forwarded to the protocol layer.
    pub(crate) bytes: Bytes,
}

impl Envelope {
    fn new(message: Value, bytes: Bytes) -> Self {
        Self { message, bytes }
    }

    /// A request (has a method and an id), not a notification or a response.
    pub(crate) fn is_request(&self) -> bool {
        self.message.get("method").is_some() && self.message.get("id").is_some()
    }

    /// `initialize`.
    pub(crate) fn is_initialize(&self) -> bool {
        self.message["method"] == "initialize"
    }

    /// The id, or `null`.
    pub(crate) fn id(&self) -> Value {
        self.message.get("id").cloned().unwrap_or(Value::Null)
    }
}

/// What a POST body holds.
pub(crate) enum Posted {
    /// One message.
    Single(Envelope),
    /// A batch (2025-03-26), already checked: non-empty, no `initialize`.
    Batch(Vec<Envelope>),
}

/// Read at most `limit` bytes of `body` and parse them: 413 above the limit (declared or
/// actual), 400 for an unreadable body, invalid JSON, or a batch the revision forbids.
pub(crate) async fn read(parts: &Parts, body: Body, limit: usize) -> Result<Posted, Response> {
    let bytes = read_bounded(parts, body, limit).await?;
    let Strict(message) = serde_json::from_slice(&bytes).map_err(|e| {
        rpc_error(
            StatusCode::BAD_REQUEST,
            code::PARSE_ERROR,
            format!("parse error: the body is not valid JSON ({e})"),
        )
    })?;
    match message {
        Value::Array(items) => batch(parts, items).map(Posted::Batch),
        message => Ok(Posted::Single(Envelope::new(message, bytes))),
    }
}

/// A JSON value in which no object names a key twice. Parsers disagree on duplicates (the
/// last wins in a `Value`, typed structs refuse them), so a message with duplicates is refused
/// here, before either protocol path reads it, and both answer it alike (a parse error).
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key `{}`",
                    crate::telemetry::untrusted(&key)
                )));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

async fn read_bounded(parts: &Parts, body: Body, limit: usize) -> Result<Bytes, Response> {
    let too_large = || {
        rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::INVALID_REQUEST,
            format!("request body exceeds the limit of {limit} bytes"),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        tracing::info!(limit, "refused an oversized request body");
        return Err(too_large());
    }
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b),
        Err(e) if is_length_limit(&e) => {
            tracing::info!(limit, "refused an oversized request body");
            Err(too_large())
        }
        Err(e) if super::listener::is_body_timeout(&e) => {
            tracing::info!("refused a request whose body did not arrive in time: {e}");
            Err(rpc_error(
                StatusCode::REQUEST_TIMEOUT,
                code::INVALID_REQUEST,
                format!("{e} (server.body_read_timeout_ms)"),
            ))
        }
        Err(e) => {
            tracing::debug!("could not read request body: {e}");
            Err(rpc_error(
                StatusCode::BAD_REQUEST,
                code::PARSE_ERROR,
                "could not read the request body",
            ))
        }
    }
}

/// The items of a batch, if the client's revision allows batches and this one is valid.
fn batch(parts: &Parts, items: Vec<Value>) -> Result<Vec<Envelope>, Response> {
    let version = parts
        .headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(BATCH_REVISION);
    let invalid = |msg: String| rpc_error(StatusCode::BAD_REQUEST, code::INVALID_REQUEST, msg);
    if version != BATCH_REVISION {
        return Err(invalid(format!(
            "JSON-RPC batches are not part of MCP {version} (only {BATCH_REVISION}); send one message per request"
        )));
    }
    if items.is_empty() {
        return Err(invalid("an empty batch is not a valid request".into()));
    }
    if items.iter().any(|i| i["method"] == "initialize") {
        return Err(invalid("initialize must not be part of a batch".into()));
    }
    Ok(items
        .into_iter()
        .map(|item| {
            let bytes = Bytes::from(item.to_string());
            Envelope::new(item, bytes)
        })
        .collect())
}

/// The batch's answer from its items' answers (202 when none needs one).
pub(crate) fn batch_response(answers: Vec<Value>) -> Response {
    if answers.is_empty() {
        return StatusCode::ACCEPTED.into_response();
    }
    json_response(StatusCode::OK, &Value::Array(answers))
}

/// Whether `resp` is an SSE stream.
pub(crate) fn is_event_stream(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// The JSON-RPC response for one batch item, from the response the endpoint gave it alone.
pub(crate) async fn batch_answer(resp: Response, id: Value) -> Option<Value> {
    let status = resp.status();
    if status == StatusCode::ACCEPTED {
        return None;
    }
    // A refusal at the HTTP level (403 step-up, 401) carries its challenge in a header: the
    // item's error says it in JSON-RPC terms, with the challenge as data.
    let challenge = resp
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
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
    let answer = messages
        .into_iter()
        .find(|m| m.get("result").is_some() || m.get("error").is_some());
    answer.or_else(|| (!id.is_null()).then(|| item_error(status, challenge, id)))
}

/// The JSON-RPC error for a batch item the endpoint refused without a JSON-RPC answer: the
/// HTTP status in words (never the body, which may be a page from elsewhere), the challenge
/// to act on when there is one.
fn item_error(status: StatusCode, challenge: Option<String>, id: Value) -> Value {
    let reason = status.canonical_reason().unwrap_or("refused");
    let (code, message) = match (status, &challenge) {
        (StatusCode::FORBIDDEN, Some(c)) if c.contains("insufficient_scope") => (
            code::SERVER_ERROR,
            "Forbidden: the token lacks a scope this request needs (insufficient_scope); \
             authorize again with the scope in data.wwwAuthenticate"
                .to_string(),
        ),
        (StatusCode::UNAUTHORIZED, _) => (
            code::SERVER_ERROR,
            "Unauthorized: the token is not accepted".to_string(),
        ),
        _ => (
            code::INTERNAL_ERROR,
            format!("request failed with HTTP {}: {reason}", status.as_u16()),
        ),
    };
    let mut data = json!({"httpStatus": status.as_u16()});
    if let Some(c) = challenge {
        data["wwwAuthenticate"] = json!(c);
    }
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message, "data": data}})
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

#[cfg(test)]
mod tests {
    use super::*;

    /// #28. Before: the direct path read `{"name": "a", "name": "b"}` as `b` while rmcp's typed
    /// parse refused it, so the two paths answered a message with duplicate keys differently.
    #[test]
    fn a_message_with_a_duplicate_key_anywhere_is_not_json_here() {
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":1,"x":2}}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"a":[{"k":1,"k":1}]}]"#,
        ] {
            let e = serde_json::from_str::<Strict>(text)
                .err()
                .expect(text)
                .to_string();
            assert!(e.contains("duplicate key"), "{text}: {e}");
        }
        let Strict(v) = serde_json::from_str(
            r#"{"a":[1,2.5,-3,true,null,"s",{"b":{}}],"c":{"a":1},"d":18446744073709551615}"#,
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"a":[1,2.5,-3,true,null,"s",{"b":{}}],"c":{"a":1},"d":18446744073709551615u64})
        );
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(
            serde_json::from_str::<Strict>(&deep).is_err(),
            "the parser's depth limit still applies"
        );
    }

    /// #28. Before: a batch item refused for scope came back as the raw 403 body inside an
    /// internal error, not as something a client can act on.
    #[tokio::test]
    async fn a_batch_item_refused_for_scope_is_a_json_rpc_error_with_the_challenge() {
        let challenge = r#"Bearer error="insufficient_scope", scope="mcp:admin", resource_metadata="https://gw/.well-known/oauth-protected-resource/mcp""#;
        let resp = Response::builder()
            .status(StatusCode::FORBIDDEN)
            .header(header::WWW_AUTHENTICATE, challenge)
            .body(Body::from("<html>forbidden</html>"))
            .unwrap();
        let answer = batch_answer(resp, json!(7)).await.unwrap();
        assert_eq!(answer["id"], 7);
        assert_eq!(answer["error"]["code"], code::SERVER_ERROR);
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("insufficient_scope")
        );
        assert_eq!(answer["error"]["data"]["httpStatus"], 403);
        assert_eq!(answer["error"]["data"]["wwwAuthenticate"], challenge);
        assert!(!answer.to_string().contains("<html>"), "no raw body");
        // A notification's refusal answers nothing; an answer with JSON-RPC inside is kept.
        let resp = (StatusCode::FORBIDDEN, "x").into_response();
        assert!(batch_answer(resp, Value::Null).await.is_none());
        let resp = (
            StatusCode::TOO_MANY_REQUESTS,
            json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "slow down"}})
                .to_string(),
        )
            .into_response();
        assert_eq!(
            batch_answer(resp, json!(1)).await.unwrap()["error"]["message"],
            "slow down"
        );
    }
}
