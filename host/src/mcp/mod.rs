//! The MCP protocol layer, on rmcp 3.11 (pinned). Every rmcp type stays inside this module.
//!
//! Owns: the [`Gateway`] handler (`gateway.rs`, thin) and one file per concern — `tools`,
//! `resources`, `prompts`, `completion` (each method's handler), `input` (input-required
//! rounds), `era` (2025 sessions vs 2026-07-28), `notify` (change notifications), `paging`,
//! `record` (spans and the duration metric), `refusal` (authorization refusals on the wire),
//! `call` (a plugin call's environment), `tasks` (MCP Tasks on the wire), `tenant` ([`TenantContext`]) — plus the Streamable
//! HTTP endpoint per tenant ([`http_endpoint`], with its live-session table adapted to
//! [`crate::sessions::LiveSessions`]) and the stdio server ([`serve_stdio`]). It must not
//! authenticate (the `auth` layer in front does, and hands over a [`crate::auth::Principal`]),
//! keep session state (`sessions` does) or touch wasmtime (the `sandbox` does).
//!
//! Era dispatch is rmcp's: a request carrying 2026-07-28 `_meta` (or header) is served
//! statelessly; `initialize`, an `Mcp-Session-Id` or a legacy version header selects a 2025
//! session. One exception, decided in one place ([`direct`]): a well-formed 2026-07-28 request
//! for a plugin-running method is answered from the HTTP front by the same handlers, without
//! rmcp's per-request server (the hot path; `direct.rs`). Handlers see every request as an
//! `Exchange` (`exchange.rs`), whichever way it came. See `README.md` in this directory for
//! the decisions behind this.

mod call;
mod completion;
mod convert;
mod direct;
mod era;
mod exchange;
mod gateway;
mod input;
mod live;
mod notify;
mod observer;
mod paging;
mod prompts;
mod record;
mod refusal;
mod request_state;
mod resources;
mod tasks;
mod tenant;
mod tools;

/// For the fuzz targets (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz;

use std::sync::Arc;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::auth::Principal;
use crate::authz::{Forbidden, Request, TenantAuthz};
use crate::plugins::{Catalog, Target};
use crate::sandbox::BoxFuture;
use crate::sessions::LiveSessions;
pub(crate) use direct::Direct;
pub use gateway::Gateway;
pub use tenant::{CLIENT_CREDENTIALS_EXTENSION, ENTERPRISE_MANAGED_EXTENSION, TenantContext};

/// Transport settings for the HTTP endpoint.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Accepted `Host` header values (DNS-rebinding protection).
    pub allowed_hosts: Vec<String>,
    /// Accepted `Origin` values; a request with another `Origin` gets 403.
    pub allowed_origins: Vec<String>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Idle time after which a session is closed.
    pub session_idle: Duration,
    /// Cancelled when open streams must end (the shutdown grace period is over).
    pub shutdown: CancellationToken,
}

/// One tenant's Streamable HTTP endpoint and its session table.
pub struct McpEndpoint {
    /// The tower service to mount at the tenant's path.
    pub service: StreamableHttpService<Gateway, LocalSessionManager>,
    sessions: Arc<LocalSessionManager>,
}

impl std::fmt::Debug for McpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpEndpoint").finish_non_exhaustive()
    }
}

impl McpEndpoint {
    /// The endpoint's live-session table, for [`crate::sessions::Sessions`].
    pub fn live_sessions(&self) -> Arc<dyn LiveSessions> {
        Arc::new(RmcpSessions(self.sessions.clone()))
    }
}

/// rmcp's in-process session table, as [`LiveSessions`].
struct RmcpSessions(Arc<LocalSessionManager>);

impl LiveSessions for RmcpSessions {
    fn ids(&self) -> BoxFuture<'_, std::collections::HashSet<String>> {
        Box::pin(async move {
            self.0
                .sessions
                .read()
                .await
                .keys()
                .map(|k| k.to_string())
                .collect()
        })
    }

    fn close<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        use rmcp::transport::streamable_http_server::session::SessionManager as _;
        Box::pin(async move {
            if let Err(e) = self.0.close_session(&Arc::from(id)).await {
                tracing::debug!("closing a session failed: {e}");
            }
        })
    }

    /// rmcp's session worker restarts its idle timer on any message: hand it a client
    /// notification whose handler does nothing (`notifications/roots/list_changed`; the
    /// gateway keeps no roots).
    fn touch<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        use rmcp::transport::streamable_http_server::session::SessionManager as _;
        Box::pin(async move {
            let note = rmcp::model::ClientJsonRpcMessage::notification(
                rmcp::model::ClientNotification::RootsListChangedNotification(Default::default()),
            );
            if let Err(e) = self.0.accept_message(&Arc::from(id), note).await {
                tracing::debug!("keeping a session alive failed: {e}");
            }
        })
    }
}

/// Build the Streamable HTTP endpoint for `tenant`.
pub fn http_endpoint(tenant: Arc<TenantContext>, settings: &HttpSettings) -> McpEndpoint {
    let mut manager = LocalSessionManager::default();
    manager.session_config.keep_alive = Some(settings.session_idle);
    let sessions = Arc::new(manager);
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(settings.allowed_hosts.clone())
        .with_allowed_origins(settings.allowed_origins.clone())
        .enforce_origin_validation()
        .with_max_request_body_bytes(settings.max_body_bytes)
        .with_legacy_session_mode(true)
        .with_sse_keep_alive(Some(Duration::from_secs(15)))
        .with_cancellation_token(settings.shutdown.child_token());
    let service = StreamableHttpService::new(
        move || Ok(Gateway::new(tenant.clone(), None)),
        sessions.clone(),
        config,
    );
    McpEndpoint { service, sessions }
}

/// The targets a single JSON-RPC message names: the tool of `tools/call`, the prompt of
/// `prompts/get`, the resource of `resources/read` and `resources/subscribe`, every
/// resource of `subscriptions/listen`, the prompt or template of `completion/complete`.
pub fn targets(message: &serde_json::Value) -> Vec<Target<'_>> {
    let params = &message["params"];
    let name = params["name"].as_str();
    let uri = params["uri"].as_str();
    match message["method"].as_str() {
        Some("tools/call") => name.map(Target::Tool).into_iter().collect(),
        Some("prompts/get") => name.map(Target::Prompt).into_iter().collect(),
        Some("resources/read" | "resources/subscribe") => {
            uri.map(Target::Resource).into_iter().collect()
        }
        Some("subscriptions/listen") => params["notifications"]["resourceSubscriptions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u.as_str().map(Target::Resource))
            .collect(),
        Some("completion/complete") => match params["ref"]["type"].as_str() {
            Some("ref/prompt") => params["ref"]["name"].as_str().map(Target::Prompt),
            Some("ref/resource") => params["ref"]["uri"].as_str().map(Target::Template),
            _ => None,
        }
        .into_iter()
        .collect(),
        _ => Vec::new(),
    }
}

/// The direct path's hold on `message` (one request POSTed with `headers`), if it takes it
/// (then its params are taken out of `message`); see `direct.rs`. `catalog` says which tools
/// annotate `Mcp-Param-*` headers.
pub(crate) fn direct(
    tenant: &TenantContext,
    catalog: &Catalog,
    headers: &http::HeaderMap,
    message: &mut serde_json::Value,
) -> Option<Direct> {
    // An unknown tool has no schema to check headers against (rmcp skips them too).
    direct::accept(headers, message, &tenant.live, |name| {
        catalog.tool(name).is_some_and(|(plugin, _)| {
            plugin
                .schemas
                .get(name)
                .is_none_or(|s| s.annotates_headers())
        })
    })
}

/// A client's `notifications/cancelled` (`message`, on session `session`): stop the request
/// if the direct path is serving it. rmcp still gets the notification for its own requests.
pub(crate) fn cancelled(tenant: &TenantContext, session: &str, message: &serde_json::Value) {
    if message["method"] == "notifications/cancelled"
        && let Some(id) = message["params"].get("requestId")
    {
        tenant.live.cancel(session, id);
    }
}

/// The scopes to challenge for (a 403 step-up at the HTTP front, before any stream opens)
/// when `who` lacks scopes an item `message` targets declares. Every other outcome of the
/// authorization decision is the protocol layer's to answer.
pub fn step_up_scopes(
    authz: &TenantAuthz,
    catalog: &Catalog,
    who: &Principal,
    message: &serde_json::Value,
) -> Option<Vec<String>> {
    let mut needed: Vec<String> = Vec::new();
    for target in targets(message) {
        if let Err(Forbidden::Scopes { required, .. }) =
            authz.decide(catalog, &Request::of(who, target))
        {
            needed.extend(required);
        }
    }
    needed.sort();
    needed.dedup();
    (!needed.is_empty()).then_some(needed)
}

/// Serve `tenant` over stdin/stdout to one local client, as `principal`, until the client
/// disconnects.
pub async fn serve_stdio(tenant: Arc<TenantContext>, principal: Principal) -> anyhow::Result<()> {
    serve_pipe(tenant, principal, (tokio::io::stdin(), tokio::io::stdout())).await
}

/// Serve `tenant` to one client on a byte pipe of JSON-RPC lines (stdio's framing), as
/// `principal`, until the client hangs up: stdio, and `portcullis call`'s in-process session.
pub async fn serve_pipe<R, W>(
    tenant: Arc<TenantContext>,
    principal: Principal,
    pipe: (R, W),
) -> anyhow::Result<()>
where
    R: tokio::io::AsyncRead + Send + Unpin + 'static,
    W: tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let gateway = Gateway::new(tenant, Some(Arc::new(principal)));
    let running = gateway.serve(pipe).await?;
    running.waiting().await?;
    Ok(())
}
