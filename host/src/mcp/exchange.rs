//! One request as the handlers see it, whichever way it arrived: through rmcp's service
//! (stdio, sessions whose client may be asked for input, everything unusual) or straight from
//! the HTTP front (`direct`, the hot path).
//!
//! Owns: [`Exchange`] — who asks, the request's id, `_meta`, era, declared client
//! capabilities, cancellation and span — and [`ToClient`], where a handler's notifications
//! and server→client requests go. Must not: decide anything about the request (the handlers
//! do) or build a call's environment (`call`).

use std::sync::Arc;

use rmcp::model::{RequestMetaObject, ServerJsonRpcMessage, ServerNotification};
use rmcp::service::{Peer, RequestContext};
use rmcp::{ErrorData, RoleServer};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::era::Era;
use super::tasks::TaskSink;
use crate::auth::{Principal, SecretToken};
use crate::downstream::CallNeeds;
use crate::telemetry::RequestSpan;
use crate::tenancy::quota::Held;

/// Where a handler's messages to the client go.
#[derive(Clone)]
pub(super) enum ToClient {
    /// rmcp's peer: notifications on the request's stream, server→client requests answered
    /// through the session.
    Peer(Peer<RoleServer>),
    /// The direct path's response stream: notifications only (the direct path serves no
    /// request that could ask the client: a stateless one answers with an
    /// `InputRequiredResult`, and sessions whose client may be asked stay on rmcp's path).
    Stream(mpsc::UnboundedSender<String>),
    /// A call that is, or may become, an MCP Task (`tasks`): into the task once it is one.
    Task(Arc<TaskSink>),
}

impl ToClient {
    /// Send `method` with `params` as a notification; a notification the protocol cannot
    /// carry, or a client that has gone, is logged and dropped.
    pub(super) async fn notify(&self, plugin: &str, method: &str, params: Value) {
        let mut to = self;
        if let Self::Task(sink) = self {
            if sink.take(method, &params) {
                return;
            }
            to = sink.before();
        }
        let message = json!({"method": method, "params": params});
        let notification: ServerNotification = match serde_json::from_value(message) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(
                    plugin,
                    "dropping a {method} notification the protocol cannot carry: {e}"
                );
                return;
            }
        };
        let delivered = match to {
            Self::Peer(peer) => peer
                .send_notification(notification)
                .await
                .map_err(|e| e.to_string()),
            // Serialized as rmcp puts a notification on the wire.
            Self::Stream(tx) => {
                serde_json::to_string(&ServerJsonRpcMessage::notification(notification))
                    .map_err(|e| e.to_string())
                    .and_then(|text| {
                        tx.send(text)
                            .map_err(|_| "the response stream has closed".to_string())
                    })
            }
            Self::Task(_) => Err("a task's reports go into the task".to_string()),
        };
        if let Err(e) = delivered {
            tracing::debug!(plugin, "could not deliver {method}: {e}");
        }
    }
}

/// One MCP request being handled.
pub(super) struct Exchange {
    /// Who is asking.
    pub(super) who: Principal,
    /// The caller's token, for the downstream capability (never shown to a plugin).
    pub(super) secret: Option<SecretToken>,
    /// The JSON-RPC id.
    pub(super) id: Value,
    /// The request's `_meta`.
    pub(super) meta: RequestMetaObject,
    pub(super) era: Era,
    /// What the client declared it can do (`{}` when nothing).
    pub(super) client_caps: Value,
    /// Cancelled when the client cancels or goes away.
    pub(super) cancel: CancellationToken,
    /// The `mcp.request` span the HTTP front opened, if it did.
    pub(super) span: Option<tracing::Span>,
    pub(super) to_client: ToClient,
    /// A 2025 session's (or stdio's) peer, for notifications after the response (a task's
    /// status); `None` on 2026-07-28, where nothing outlives the request.
    pub(super) session_peer: Option<Peer<RoleServer>>,
    /// The request's place among those in progress (`max_concurrent_requests`), held while
    /// the handler — and a task the call becomes — works, whether or not the client waits.
    pub(super) held: Option<Held>,
    /// What the request's plugin calls learned the caller must do (a step-up).
    pub(super) needs: Arc<CallNeeds>,
}

impl Exchange {
    /// The exchange rmcp's `ctx` describes; `fixed` is the identity on transports without
    /// per-request authentication (stdio).
    pub(super) fn from_rmcp(
        ctx: &RequestContext<RoleServer>,
        fixed: Option<&Principal>,
    ) -> Result<Self, ErrorData> {
        let parts = ctx.extensions.get::<http::request::Parts>();
        let who = match fixed {
            Some(p) => p.clone(),
            None => parts
                .and_then(|parts| parts.extensions.get::<Principal>())
                .cloned()
                .ok_or_else(|| {
                    tracing::error!(
                        "request reached the MCP handler without a principal; check the auth layer"
                    );
                    ErrorData::internal_error("request is not authenticated", None)
                })?,
        };
        let era = Era::of(ctx);
        Ok(Self {
            who,
            secret: parts
                .and_then(|p| p.extensions.get::<SecretToken>())
                .cloned(),
            id: serde_json::to_value(&ctx.id).unwrap_or(Value::Null),
            meta: ctx.meta.clone(),
            era,
            client_caps: ctx
                .client_capabilities()
                .and_then(|c| serde_json::to_value(c).ok())
                .unwrap_or_else(|| json!({})),
            cancel: ctx.ct.clone(),
            span: parts
                .and_then(|p| p.extensions.get::<RequestSpan>())
                .map(|RequestSpan(span)| span.clone()),
            to_client: ToClient::Peer(ctx.peer.clone()),
            session_peer: (era == Era::Session).then(|| ctx.peer.clone()),
            held: parts.and_then(|p| p.extensions.get::<Held>()).cloned(),
            needs: Arc::default(),
        })
    }

    /// The id as plugins and logs see it: a string id as is, a number as its digits.
    pub(super) fn id_text(&self) -> String {
        self.id
            .as_str()
            .map_or_else(|| self.id.to_string(), str::to_string)
    }
}
