//! The MCP server handler: routes every method to the tenant's plugins.
//!
//! One [`Gateway`] value serves one 2025 session (rmcp creates it per session) or one
//! stateless 2026-07-28 request. It reads the caller's [`Principal`] from the request, checks
//! the scopes an item declares, runs the plugin in the sandbox, and turns the outcome into the
//! right protocol answer for the request's era: "input required" becomes server→client
//! requests on a 2025 session and an `InputRequiredResult` on 2026-07-28.

#![allow(
    deprecated,
    reason = "logging/setLevel and resources/subscribe are deprecated by SEP-2577, but 2025 sessions still use them"
)]

use std::borrow::Cow;
use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Weak};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use parking_lot::Mutex;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult, CustomRequest,
    GetPromptRequestParams, GetPromptResponse, GetPromptResult, InputRequiredResult,
    InputResponses, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, ServerConfig, ServerRequest, SetLevelRequestParams,
    SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tracing::Instrument as _;

use super::convert::{self, complete, model};
use super::observer::{RequestObserver, level_rank};
use super::request_state::{Binding, StateSealer};
use crate::auth::{Principal, SecretToken};
use crate::config::ToolsList;
use crate::downstream::{PluginEgress, TenantServices};
use crate::plugins::{Catalog, Change, Forbidden, LoadedPlugin, Permit, Target, TenantPlugins};
use crate::sandbox::{BoxFuture, CallEnv, CallLabels, SandboxError, wit};
use crate::telemetry::untrusted;
use crate::telemetry::{self, McpRequest, RequestSpan};
use crate::tenancy::quota::Quotas;

/// Items per page of a list result.
const PAGE_SIZE: usize = 100;

/// Most "input required" rounds one request may take on a 2025 session.
const MAX_INPUT_ROUNDS: usize = 10;

/// What every session of one tenant shares.
#[derive(Debug)]
pub struct TenantContext {
    /// The tenant's plugins.
    pub plugins: Arc<TenantPlugins>,
    pub(crate) sealer: Arc<StateSealer>,
    /// What `tools/list` shows.
    pub(crate) tools_list: ToolsList,
    /// The tenant's downstream services.
    pub(crate) services: Arc<TenantServices>,
    /// What the tenant may consume.
    pub quotas: Arc<Quotas>,
}

impl TenantContext {
    /// A context for `plugins`, sealing `requestState` with `state_key` (random if `None`).
    pub fn new(
        plugins: Arc<TenantPlugins>,
        state_key: Option<Vec<u8>>,
        tools_list: ToolsList,
        services: Arc<TenantServices>,
        quotas: Arc<Quotas>,
    ) -> Self {
        Self {
            plugins,
            sealer: Arc::new(StateSealer::new(state_key)),
            tools_list,
            services,
            quotas,
        }
    }
}

impl TenantContext {
    /// Whether `who` may read `uri` now (checked again at every resource update, silently:
    /// a subscriber that lost the scope just stops hearing of it).
    fn may_read(&self, who: &Principal, uri: &str) -> bool {
        self.plugins
            .catalog()
            .authorize(who, Target::Resource(uri), self.tools_list)
            .is_ok()
    }
}

/// Per-session state of a 2025 session (unused by stateless requests).
#[derive(Default)]
struct SessionState {
    /// Level set by `logging/setLevel`, as a rank.
    log_level: Mutex<Option<usize>>,
    /// URIs subscribed with `resources/subscribe`, with the caller that subscribed (each
    /// update is authorized again before it is sent).
    subscriptions: Mutex<std::collections::HashMap<String, Principal>>,
    /// Pushes list changes to the session; aborted when the session ends.
    watcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for SessionState {
    fn drop(&mut self) {
        if let Some(task) = self.watcher.lock().take() {
            task.abort();
        }
    }
}

/// The rmcp handler for one tenant.
#[derive(Clone)]
pub struct Gateway {
    tenant: Arc<TenantContext>,
    session: Arc<SessionState>,
    /// The identity on transports without per-request authentication (stdio).
    fixed_principal: Option<Arc<Principal>>,
}

/// One round's inputs to a plugin export (cloned per round).
#[derive(Clone)]
struct Invocation {
    tenant: Arc<str>,
    plugin: Arc<LoadedPlugin>,
    env: CallEnv,
    context: wit::CallContext,
}

/// A refused request, as the protocol layer answers it.
enum Refused {
    /// The method's "unknown item" error (also for items hidden from this caller).
    Unknown(ErrorData),
    /// Why a visible item may not be used (an `isError` tool result, else `invalid_request`).
    Forbidden(String),
}

impl Refused {
    /// As a JSON-RPC error (prompts, resources, subscriptions).
    fn into_error(self) -> ErrorData {
        match self {
            Refused::Unknown(e) => e,
            Refused::Forbidden(msg) => ErrorData::invalid_request(msg, None),
        }
    }
}

/// The "unknown item" error for `target`: the same whether it does not exist or is hidden.
fn unknown(target: Target<'_>) -> ErrorData {
    match target {
        Target::Tool(name) => {
            ErrorData::invalid_params(format!("Unknown tool: {name}"), Some(json!({"name": name})))
        }
        Target::Prompt(name) => ErrorData::invalid_params(
            format!("Unknown prompt: {name}"),
            Some(json!({"name": name})),
        ),
        Target::Resource(uri) | Target::Template(uri) => {
            ErrorData::resource_not_found("Resource not found", Some(json!({"uri": uri})))
        }
    }
}

/// Log a sandbox failure with its tenant and plugin, and describe it for the client.
fn failed(tenant: &str, plugin: &LoadedPlugin, what: &str, e: &SandboxError) -> ErrorData {
    tracing::warn!(tenant, plugin = %plugin.name, "{what} failed: {e}");
    ErrorData::internal_error(format!("{what} failed: {e}"), None)
}

/// The outcome of one plugin invocation.
enum Step<T> {
    Done(T),
    Input(wit::InputRequired),
}

/// The outcome of a request that may need input.
enum Rounds<T> {
    Done(T),
    InputRequired(InputRequiredResult),
}

/// Why a request that may need input did not complete.
enum RoundError {
    /// A protocol error for the client.
    Rpc(ErrorData),
    /// The plugin needs client capabilities the client did not declare (a `ClientCapabilities` object).
    MissingCapability(Value),
    /// Input could not be obtained from the client.
    Input(String),
}

impl From<ErrorData> for RoundError {
    fn from(e: ErrorData) -> Self {
        Self::Rpc(e)
    }
}

fn is_modern(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

fn client_capabilities(ctx: &RequestContext<RoleServer>) -> Value {
    ctx.client_capabilities()
        .and_then(|c| serde_json::to_value(c).ok())
        .unwrap_or_else(|| json!({}))
}

fn client_features(caps: &Value) -> wit::ClientFeatures {
    let mut f = wit::ClientFeatures::empty();
    if caps.get("sampling").is_some() {
        f |= wit::ClientFeatures::SAMPLING;
    }
    // An elicitation capability without modes means form mode (2025-11-25).
    if let Some(e) = caps.get("elicitation")
        && (e.get("url").is_none() || e.get("form").is_some())
    {
        f |= wit::ClientFeatures::ELICITATION;
    }
    if caps.get("roots").is_some() {
        f |= wit::ClientFeatures::ROOTS;
    }
    f
}

fn decode_cursor(cursor: Option<&str>) -> Result<usize, ErrorData> {
    let Some(c) = cursor else { return Ok(0) };
    B64.decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("o:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| ErrorData::invalid_params("invalid pagination cursor", None))
}

/// One page of `items` starting at the request's cursor, as `{key: [...], nextCursor?}`.
fn page(
    key: &str,
    items: Vec<Value>,
    request: Option<&PaginatedRequestParams>,
) -> Result<Value, ErrorData> {
    let cursor = request
        .and_then(|r| serde_json::to_value(r).ok())
        .and_then(|v| v["cursor"].as_str().map(str::to_string));
    let start = decode_cursor(cursor.as_deref())?;
    if start > items.len() {
        return Err(ErrorData::invalid_params(
            "pagination cursor is past the end of the list",
            None,
        ));
    }
    let end = (start + PAGE_SIZE).min(items.len());
    let mut out = json!({ key: items[start..end].to_vec() });
    if end < items.len() {
        out["nextCursor"] = B64.encode(format!("o:{end}")).into();
    }
    Ok(out)
}

impl Gateway {
    /// A handler for `tenant`. `fixed_principal` is the identity on transports that carry no
    /// credentials (stdio); HTTP requests carry theirs in the request extensions.
    pub fn new(tenant: Arc<TenantContext>, fixed_principal: Option<Arc<Principal>>) -> Self {
        Self {
            tenant,
            session: Arc::new(SessionState::default()),
            fixed_principal,
        }
    }

    fn principal(&self, ctx: &RequestContext<RoleServer>) -> Result<Principal, ErrorData> {
        if let Some(p) = &self.fixed_principal {
            return Ok(p.as_ref().clone());
        }
        ctx.extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Principal>())
            .cloned()
            .ok_or_else(|| {
                tracing::error!(
                    "request reached the MCP handler without a principal; check the auth layer"
                );
                ErrorData::internal_error("request is not authenticated", None)
            })
    }

    /// The lowest log level the client wants for this request, if any.
    fn min_log_level(&self, ctx: &RequestContext<RoleServer>) -> Option<usize> {
        if is_modern(ctx) {
            // 2026-07-28: only when this request asked, never otherwise.
            let level = ctx.meta.log_level()?;
            serde_json::to_value(level)
                .ok()
                .and_then(|v| v.as_str().and_then(level_rank))
        } else {
            // 2025 sessions: what logging/setLevel chose, everything until then.
            Some(self.session.log_level.lock().unwrap_or(0))
        }
    }

    /// The span of this MCP request: opened by the HTTP front (and passed in the request's
    /// extensions), or on stdio opened here as the root, continuing `_meta.traceparent`.
    fn request_span(
        &self,
        ctx: &RequestContext<RoleServer>,
        method: &str,
        target: Option<&str>,
    ) -> tracing::Span {
        if let Some(RequestSpan(span)) = ctx
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<RequestSpan>())
        {
            return span.clone();
        }
        let request_id = serde_json::to_value(&ctx.id).ok().map(|v| v.to_string());
        telemetry::mcp_span(
            &McpRequest {
                tenant: &self.tenant.plugins.tenant,
                method,
                target,
                request_id,
                ..Default::default()
            },
            Some(&ctx.meta.0.0),
            true,
        )
    }

    /// Record how a request that ran a plugin ended: on its span and in the metrics (a tool
    /// call is counted when `plugin`, the tool's owner, is known).
    fn finish(
        &self,
        span: &tracing::Span,
        (method, target, plugin): (&str, &str, Option<&str>),
        started: std::time::Instant,
        outcome: &str,
    ) {
        if outcome != "ok" {
            telemetry::fail(span, outcome);
        }
        let m = telemetry::metrics::get();
        let tenant = &self.tenant.plugins.tenant;
        let mut attrs = vec![("mcp.method.name", method), ("portcullis.outcome", outcome)];
        if method == "tools/call" {
            attrs.push(("gen_ai.tool.name", target));
            if let Some(plugin) = plugin {
                let mut with_plugin = attrs.clone();
                with_plugin.push(("portcullis.plugin", plugin));
                m.tool_calls
                    .add(1, &telemetry::metrics::attrs(tenant, &with_plugin));
            }
        }
        m.mcp_duration.record(
            started.elapsed().as_secs_f64(),
            &telemetry::metrics::attrs(tenant, &attrs),
        );
    }

    fn call_env(
        &self,
        ctx: &RequestContext<RoleServer>,
        plugin: &LoadedPlugin,
        span: &tracing::Span,
    ) -> CallEnv {
        span.record("portcullis.plugin", &*plugin.name);
        span.record("portcullis.plugin.version", &plugin.sha256[..12]);
        let observer = RequestObserver {
            peer: ctx.peer.clone(),
            plugin: plugin.name.clone(),
            min_level: self.min_log_level(ctx),
            progress_token: ctx.meta.get_progress_token(),
            last_progress: Mutex::new(None),
            plugins: self.tenant.plugins.clone(),
        };
        CallEnv {
            plugin: plugin.name.clone(),
            limits: plugin.limits.clone(),
            cancel: ctx.ct.clone(),
            observer: Arc::new(observer),
            egress: Arc::new(PluginEgress {
                tenant: self.tenant.plugins.tenant.clone(),
                services: self.tenant.services.clone(),
                granted: plugin.services.clone(),
                plugin: plugin.name.clone(),
                trace_parent: ctx.meta.get_traceparent().map(str::to_string),
                subject: ctx
                    .extensions
                    .get::<http::request::Parts>()
                    .and_then(|parts| parts.extensions.get::<SecretToken>())
                    .cloned(),
            }),
            concurrency: plugin.concurrency.clone(),
            share: self.tenant.quotas.instances.clone(),
            labels: CallLabels {
                owner: self.tenant.plugins.tenant.clone(),
                version: Arc::from(&plugin.sha256[..12]),
                parent: span.clone(),
            },
        }
    }

    fn call_context(
        &self,
        ctx: &RequestContext<RoleServer>,
        who: &Principal,
        plugin: &LoadedPlugin,
    ) -> wit::CallContext {
        let request_id = serde_json::to_value(&ctx.id)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .unwrap_or_default();
        wit::CallContext {
            tenant: who.tenant.to_string(),
            issuer: who.issuer.as_deref().map(str::to_string),
            subject: who.subject.clone(),
            client_id: who.client_id.clone(),
            scopes: who.scope_list(),
            claims: who.claims.clone(),
            request_id,
            trace_parent: ctx.meta.get_traceparent().map(str::to_string),
            client: client_features(&client_capabilities(ctx)),
            config: plugin.config.clone(),
        }
    }

    fn binding(&self, who: &Principal, method: &str, target: &str) -> Binding {
        Binding {
            tenant: who.tenant.to_string(),
            issuer: who.issuer.as_deref().map(str::to_string),
            subject: who.subject.clone(),
            method: method.into(),
            target: target.into(),
        }
    }

    /// The continuation carried by a 2026-07-28 retry (`inputResponses` + `requestState`).
    fn retry_continuation(
        &self,
        binding: &Binding,
        responses: Option<&InputResponses>,
        state: Option<&str>,
    ) -> Result<Option<wit::Continuation>, ErrorData> {
        if responses.is_none() && state.is_none() {
            return Ok(None);
        }
        let refuse = |e: &dyn std::fmt::Display| {
            tracing::warn!(tenant = %binding.tenant, method = %binding.method,
                target = %crate::telemetry::untrusted(&binding.target), "refused requestState: {e}");
            ErrorData::invalid_params(e.to_string(), None)
        };
        let answered: Vec<&str> = responses
            .into_iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .collect();
        let plugin_state = match state {
            Some(s) => self
                .tenant
                .sealer
                .open(s, binding, &answered)
                .map_err(|e| refuse(&e))?,
            // Answers without the state that asked for them answer nothing the server asked.
            None => {
                return Err(refuse(
                    &"inputResponses without requestState: the server asked no such questions",
                ));
            }
        };
        let mut out = Vec::new();
        for (key, value) in responses.into_iter().flatten() {
            if !value.is_object() {
                return Err(ErrorData::invalid_params(
                    format!(
                        "inputResponses.{key} must be an object (the client's result for that request)"
                    ),
                    None,
                ));
            }
            out.push(wit::InputResponse {
                key: key.clone(),
                value: value.to_string(),
            });
        }
        Ok(Some(wit::Continuation {
            responses: out,
            state: plugin_state,
        }))
    }

    /// Invoke a plugin until it is done, serving its input requests the way the request's era
    /// allows.
    async fn drive<T, F>(
        &self,
        ctx: &RequestContext<RoleServer>,
        binding: &Binding,
        responses: Option<&InputResponses>,
        state: Option<&str>,
        mut invoke: F,
    ) -> Result<Rounds<T>, RoundError>
    where
        F: FnMut(Option<wit::Continuation>) -> BoxFuture<'static, Result<Step<T>, RoundError>>,
    {
        let modern = is_modern(ctx);
        let mut continuation = if modern {
            self.retry_continuation(binding, responses, state)?
        } else {
            None
        };
        for _ in 0..MAX_INPUT_ROUNDS {
            let needed = match invoke(continuation.take()).await? {
                Step::Done(v) => return Ok(Rounds::Done(v)),
                Step::Input(ir) => ir,
            };
            if needed.requests.is_empty() && needed.state.is_none() {
                return Err(RoundError::Rpc(ErrorData::internal_error(
                    "the plugin asked for input but named none",
                    None,
                )));
            }
            let caps = client_capabilities(ctx);
            let missing: serde_json::Map<String, Value> = needed
                .requests
                .iter()
                .map(|r| convert::required_capability(&r.request))
                .filter(|cap| caps.get(*cap).is_none())
                .map(|cap| (cap.to_string(), json!({})))
                .collect();
            if !missing.is_empty() {
                return Err(RoundError::MissingCapability(Value::Object(missing)));
            }
            let mut requests = Vec::with_capacity(needed.requests.len());
            for r in &needed.requests {
                let (method, params) = convert::input_request(&r.request).map_err(|e| {
                    RoundError::Rpc(ErrorData::internal_error(
                        format!("the plugin's input request is invalid: {e}"),
                        None,
                    ))
                })?;
                requests.push((r.key.clone(), method, params));
            }
            if modern {
                let input_requests: serde_json::Map<String, Value> = requests
                    .into_iter()
                    .map(|(key, method, params)| (key, json!({"method": method, "params": params})))
                    .collect();
                let keys: Vec<String> = input_requests.keys().cloned().collect();
                let sealed = self
                    .tenant
                    .sealer
                    .seal(binding, &keys, needed.state.as_deref());
                let result = model::<InputRequiredResult>(json!({
                    "resultType": "input_required",
                    "inputRequests": input_requests,
                    "requestState": sealed,
                }))?;
                return Ok(Rounds::InputRequired(result));
            }
            let mut answers = Vec::with_capacity(requests.len());
            for (key, method, params) in requests {
                let request =
                    ServerRequest::CustomRequest(CustomRequest::new(method, Some(params)));
                let answer = ctx.peer.send_request(request).await.map_err(|e| {
                    RoundError::Input(format!("the client did not answer {method}: {e}"))
                })?;
                let value = serde_json::to_string(&answer).unwrap_or_else(|_| "{}".into());
                answers.push(wit::InputResponse { key, value });
            }
            continuation = Some(wit::Continuation {
                responses: answers,
                state: needed.state,
            });
        }
        Err(RoundError::Input(format!(
            "the plugin asked for input more than {MAX_INPUT_ROUNDS} times"
        )))
    }

    /// The protocol answer for a prompt or resource read that may have needed input.
    fn respond<R, C>(
        &self,
        ctx: &RequestContext<RoleServer>,
        rounds: Result<Rounds<Value>, RoundError>,
    ) -> Result<R, ErrorData>
    where
        R: From<C> + From<InputRequiredResult>,
        C: serde::de::DeserializeOwned,
    {
        match rounds {
            Ok(Rounds::Done(v)) => Ok(R::from(complete::<C>(v)?)),
            Ok(Rounds::InputRequired(r)) => Ok(R::from(r)),
            Err(e) => Err(self.round_error(ctx, e)),
        }
    }

    /// Map a request-level failure of a prompt or resource read to a protocol error.
    fn round_error(&self, ctx: &RequestContext<RoleServer>, e: RoundError) -> ErrorData {
        match e {
            RoundError::Rpc(e) => e,
            RoundError::MissingCapability(caps) if is_modern(ctx) => match model(caps) {
                Ok(caps) => ErrorData::missing_required_client_capability(caps),
                Err(e) => e,
            },
            RoundError::MissingCapability(caps) => ErrorData::invalid_request(
                format!(
                    "this request needs client capabilities the client did not declare: {caps}"
                ),
                None,
            ),
            RoundError::Input(msg) => ErrorData::internal_error(msg, None),
        }
    }

    /// Run one plugin export that may ask for input (tool call, prompt, resource read): set up
    /// the call's environment and context once, then let [`Gateway::drive`] invoke `call` for
    /// each round the request's era allows.
    async fn run_with_input<F, Fut>(
        &self,
        ctx: &RequestContext<RoleServer>,
        (who, span): (&Principal, &tracing::Span),
        plugin: &Arc<LoadedPlugin>,
        (method, target): (&str, &str),
        (responses, state): (Option<&InputResponses>, Option<&str>),
        call: F,
    ) -> Result<Rounds<Value>, RoundError>
    where
        F: Fn(Invocation, Option<wit::Continuation>) -> Fut,
        Fut: Future<Output = Result<Step<Value>, RoundError>> + Send + 'static,
    {
        let invocation = Invocation {
            tenant: self.tenant.plugins.tenant.clone(),
            plugin: plugin.clone(),
            env: self.call_env(ctx, plugin, span),
            context: self.call_context(ctx, who, plugin),
        };
        let binding = self.binding(who, method, target);
        self.drive(ctx, &binding, responses, state, |continuation| {
            Box::pin(call(invocation.clone(), continuation))
        })
        .await
    }

    /// The completion failure for a sandbox error, logged for the operator.
    fn sandbox_error(&self, plugin: &LoadedPlugin, what: &str, e: &SandboxError) -> ErrorData {
        failed(&self.tenant.plugins.tenant, plugin, what, e)
    }

    /// The one authorization decision ([`Catalog::authorize`]) for this tenant, mapped to the
    /// protocol in one place: an unknown — or hidden — item gets its method's "unknown"
    /// error, byte for byte the same either way; a visible item the caller may not use gets
    /// the refusal text, which the caller wraps for its method.
    fn authorize<'c>(
        &self,
        catalog: &'c Catalog,
        who: &Principal,
        target: Target<'_>,
    ) -> Result<Permit<'c>, Refused> {
        catalog
            .authorize(who, target, self.tenant.tools_list)
            .map_err(|f| {
                let what = match target {
                    Target::Tool(n) => format!("tool `{n}`"),
                    Target::Prompt(n) => format!("prompt `{n}`"),
                    Target::Resource(_) | Target::Template(_) => "this resource".to_string(),
                };
                match f {
                    Forbidden::Unknown => Refused::Unknown(unknown(target)),
                    Forbidden::Scopes { missing, .. } => {
                        tracing::info!(tenant = %who.tenant, caller = %who.caller(), "denied {}: missing scopes {missing:?}", untrusted(&what));
                        Refused::Forbidden(format!(
                            "Forbidden: {what} requires the scope(s) {}",
                            missing.join(" ")
                        ))
                    }
                    Forbidden::Claim(why) => {
                        tracing::info!(tenant = %who.tenant, caller = %who.caller(), "denied {} by a claim rule: {why}", untrusted(&what));
                        Refused::Forbidden(format!(
                            "Forbidden: {what} is not available to this caller ({why})"
                        ))
                    }
                }
            })
    }

    /// Start pushing list and resource changes to this 2025 session.
    fn watch_changes(&self, peer: rmcp::service::Peer<RoleServer>) {
        let mut rx = self.tenant.plugins.subscribe();
        let session: Weak<SessionState> = Arc::downgrade(&self.session);
        let tenant = self.tenant.clone();
        let task = tokio::spawn(async move {
            loop {
                let change = match rx.recv().await {
                    Ok(c) => c,
                    Err(RecvError::Lagged(_)) => Change::Lists {
                        tools: true,
                        prompts: true,
                        resources: true,
                    },
                    Err(RecvError::Closed) => return,
                };
                let sent = match change {
                    Change::Lists {
                        tools,
                        prompts,
                        resources,
                    } => {
                        let mut ok = true;
                        if tools {
                            ok &= peer.notify_tool_list_changed().await.is_ok();
                        }
                        if prompts {
                            ok &= peer.notify_prompt_list_changed().await.is_ok();
                        }
                        if resources {
                            ok &= peer.notify_resource_list_changed().await.is_ok();
                        }
                        ok
                    }
                    Change::ResourceUpdated(uri) => {
                        let Some(session) = session.upgrade() else {
                            return;
                        };
                        let subscriber = session.subscriptions.lock().get(&uri).cloned();
                        drop(session);
                        // Checked at every update: scopes may have changed since the subscription.
                        let allowed = subscriber.is_some_and(|who| tenant.may_read(&who, &uri));
                        if allowed {
                            match model(json!({"uri": uri})) {
                                Ok(params) => peer.notify_resource_updated(params).await.is_ok(),
                                Err(_) => true,
                            }
                        } else {
                            true
                        }
                    }
                };
                if !sent || peer.is_transport_closed() {
                    return;
                }
            }
        });
        if let Some(old) = self.session.watcher.lock().replace(task) {
            old.abort();
        }
    }
}

impl ServerHandler for Gateway {
    fn get_info(&self) -> ServerConfig {
        let capabilities = serde_json::from_value(json!({
            "tools": {"listChanged": true},
            "resources": {"subscribe": true, "listChanged": true},
            "prompts": {"listChanged": true},
            "completions": {},
            "logging": {},
        }))
        .expect("static capabilities");
        let info = serde_json::from_value(json!({
            "name": "portcullis",
            "title": "Portcullis MCP gateway",
            "version": env!("CARGO_PKG_VERSION"),
        }))
        .expect("static server info");
        ServerConfig::new(capabilities)
            .with_server_info(info)
            .with_instructions(format!(
                "Tools, resources and prompts of tenant `{}`, served from sandboxed plugins.",
                self.tenant.plugins.tenant
            ))
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(&[
            ProtocolVersion::V_2026_07_28,
            ProtocolVersion::V_2025_11_25,
            ProtocolVersion::V_2025_06_18,
            ProtocolVersion::V_2025_03_26,
        ])
    }

    /// rmcp validates SEP-2243 `Mcp-Param-*` headers against the tool's schema (its
    /// `x-mcp-header` properties); this is the tenant's current catalog entry.
    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        let catalog = self.tenant.plugins.catalog();
        let (_, tool) = catalog.tool(name)?;
        model(convert::tool(tool)).ok()
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.watch_changes(context.peer);
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let level = serde_json::to_value(&request)
            .ok()
            .and_then(|v| v["level"].as_str().and_then(level_rank));
        let Some(rank) = level else {
            return Err(ErrorData::invalid_params("unknown log level", None));
        };
        *self.session.log_level.lock() = Some(rank);
        Ok(())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let who = self.principal(&ctx)?;
        let catalog = self.tenant.plugins.catalog();
        self.authorize(&catalog, &who, Target::Resource(&request.uri))
            .map_err(Refused::into_error)?;
        self.session.subscriptions.lock().insert(request.uri, who);
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.session.subscriptions.lock().remove(&request.uri);
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.clone())
    }

    async fn listen(&self, ctx: SubscriptionContext) -> Result<(), ErrorData> {
        let accepted = serde_json::to_value(ctx.accepted()).unwrap_or_default();
        let wants = |key: &str| accepted[key].as_bool().unwrap_or(false);
        let (tools, prompts, resources) = (
            wants("toolsListChanged"),
            wants("promptsListChanged"),
            wants("resourcesListChanged"),
        );
        let who = self.principal(ctx.request_context())?;
        let uris: HashSet<String> = accepted["resourceSubscriptions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u.as_str().map(str::to_string))
            .collect();
        let mut rx = self.tenant.plugins.subscribe();
        loop {
            let change = tokio::select! {
                () = ctx.cancelled() => return Ok(()),
                change = rx.recv() => change,
            };
            let change = match change {
                Ok(c) => c,
                Err(RecvError::Lagged(_)) => Change::Lists {
                    tools: true,
                    prompts: true,
                    resources: true,
                },
                Err(RecvError::Closed) => return Ok(()),
            };
            let sink = ctx.sink();
            let sent = match change {
                Change::Lists {
                    tools: t,
                    prompts: p,
                    resources: r,
                } => {
                    let mut ok = true;
                    if t && tools {
                        ok &= sink.notify_tool_list_changed().await.is_ok();
                    }
                    if p && prompts {
                        ok &= sink.notify_prompt_list_changed().await.is_ok();
                    }
                    if r && resources {
                        ok &= sink.notify_resource_list_changed().await.is_ok();
                    }
                    ok
                }
                // Checked at every update: a caller hears only of resources it may read now.
                Change::ResourceUpdated(uri)
                    if uris.contains(&uri) && self.tenant.may_read(&who, &uri) =>
                {
                    sink.notify_resource_updated(uri).await.is_ok()
                }
                Change::ResourceUpdated(_) => true,
            };
            if !sent {
                return Ok(());
            }
        }
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let who = self.principal(&ctx)?;
        let catalog = self.tenant.plugins.catalog();
        let listing = self.tenant.tools_list;
        let tools = catalog
            .tools()
            .filter(|(_, t)| catalog.visible(&who, Target::Tool(&t.name), listing))
            .map(|(_, t)| convert::tool(t))
            .collect();
        complete(page("tools", tools, request.as_ref())?)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let started = std::time::Instant::now();
        let who = self.principal(&ctx)?;
        let catalog = self.tenant.plugins.catalog();
        let name = request.name.to_string();
        let span = self.request_span(&ctx, "tools/call", Some(&name));
        let plugin = match self.authorize(&catalog, &who, Target::Tool(&name)) {
            Ok(permit) => permit.plugin,
            Err(Refused::Unknown(e)) => {
                self.finish(&span, ("tools/call", &name, None), started, "unknown_tool");
                return Err(e);
            }
            Err(Refused::Forbidden(msg)) => {
                let owner = catalog.tool(&name).map(|(p, _)| p.name.clone());
                self.finish(
                    &span,
                    ("tools/call", &name, owner.as_deref()),
                    started,
                    "denied",
                );
                return Ok(CallToolResponse::Complete(complete(
                    convert::error_result(&msg),
                )?));
            }
        };
        let arguments = Value::Object(request.arguments.clone().unwrap_or_default()).to_string();
        let retry = (
            request.input_responses.as_ref(),
            request.request_state.as_deref(),
        );
        let rounds = self
            .run_with_input(
                &ctx,
                (&who, &span),
                plugin,
                ("tools/call", &name),
                retry,
                |call, continuation| {
                    let (name, arguments) = (name.clone(), arguments.clone());
                    async move {
                        match call
                            .plugin
                            .code
                            .call_tool(
                                &call.env,
                                call.context,
                                name.clone(),
                                arguments,
                                continuation,
                            )
                            .await
                        {
                            Ok(Ok(wit::CallOutcome::Done(r))) => {
                                Ok(Step::Done(convert::tool_result(&r)))
                            }
                            Ok(Ok(wit::CallOutcome::InputRequired(ir))) => Ok(Step::Input(ir)),
                            Ok(Err(wit::ToolError::UnknownTool)) => {
                                Err(RoundError::Rpc(unknown(Target::Tool(&name))))
                            }
                            Ok(Err(wit::ToolError::InvalidArguments(m))) => {
                                Ok(Step::Done(convert::error_result(&format!(
                                    "Invalid arguments for tool `{name}`: {m}"
                                ))))
                            }
                            Ok(Err(wit::ToolError::Failed(m))) => {
                                Ok(Step::Done(convert::error_result(&m)))
                            }
                            Err(SandboxError::Cancelled) => Err(RoundError::Rpc(
                                ErrorData::internal_error("request cancelled", None),
                            )),
                            // A crash, timeout or memory exhaustion is the tool's failure, shown to the model.
                            Err(e) => Ok(Step::Done(convert::error_result(
                                &failed(&call.tenant, &call.plugin, &format!("Tool `{name}`"), &e)
                                    .message,
                            ))),
                        }
                    }
                },
            )
            .instrument(span.clone())
            .await;
        let outcome = match &rounds {
            Ok(Rounds::Done(v)) if v["isError"] == true => "tool_error",
            Ok(Rounds::Done(_)) => "ok",
            Ok(Rounds::InputRequired(_)) => "input_required",
            Err(RoundError::Rpc(_)) => "error",
            Err(_) => "tool_error",
        };
        self.finish(
            &span,
            ("tools/call", &name, Some(&plugin.name)),
            started,
            outcome,
        );
        let result = match rounds {
            Ok(Rounds::Done(v)) => v,
            Ok(Rounds::InputRequired(r)) => return Ok(CallToolResponse::InputRequired(r)),
            Err(RoundError::MissingCapability(caps)) if is_modern(&ctx) => {
                return Err(ErrorData::missing_required_client_capability(model(caps)?));
            }
            Err(RoundError::MissingCapability(caps)) => convert::error_result(&format!(
                "Tool `{name}` needs client capabilities this client did not declare: {caps}"
            )),
            Err(RoundError::Input(msg)) => {
                convert::error_result(&format!("Tool `{name}` could not get input: {msg}"))
            }
            Err(RoundError::Rpc(e)) => return Err(e),
        };
        Ok(CallToolResponse::Complete(complete(result)?))
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let who = self.principal(&ctx)?;
        let catalog = self.tenant.plugins.catalog();
        let listing = self.tenant.tools_list;
        let items = catalog
            .resources()
            .filter(|(_, r)| catalog.visible(&who, Target::Resource(&r.uri), listing))
            .map(|(_, r)| convert::resource(r))
            .collect();
        complete(page("resources", items, request.as_ref())?)
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let who = self.principal(&ctx)?;
        let catalog = self.tenant.plugins.catalog();
        let listing = self.tenant.tools_list;
        let items = catalog
            .templates()
            .filter(|(_, t)| catalog.visible(&who, Target::Template(&t.uri_template), listing))
            .map(|(_, t)| convert::resource_template(t))
            .collect();
        complete(page("resourceTemplates", items, request.as_ref())?)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let who = self.principal(&ctx)?;
        let uri = request.uri.clone();
        let not_found = |uri: &str| {
            ErrorData::resource_not_found("Resource not found", Some(json!({"uri": uri})))
        };
        let catalog = self.tenant.plugins.catalog();
        let plugin = self
            .authorize(&catalog, &who, Target::Resource(&uri))
            .map_err(Refused::into_error)?
            .plugin;
        let retry = (
            request.input_responses.as_ref(),
            request.request_state.as_deref(),
        );
        let started = std::time::Instant::now();
        let span = self.request_span(&ctx, "resources/read", Some(&uri));
        let rounds = self
            .run_with_input(&ctx, (&who, &span), plugin, ("resources/read", &uri), retry, |call, continuation| {
                let uri = uri.clone();
                async move {
                    match call.plugin.code.read_resource(&call.env, call.context, uri.clone(), continuation).await {
                        Ok(Ok(wit::ReadOutcome::Done(contents))) if !contents.is_empty() => Ok(Step::Done(json!({
                            "contents": contents.iter().map(convert::resource_contents).collect::<Vec<_>>()
                        }))),
                        Ok(Ok(wit::ReadOutcome::Done(_)) | Err(wit::ResourceError::NotFound)) => {
                            Err(RoundError::Rpc(not_found(&uri)))
                        }
                        Ok(Ok(wit::ReadOutcome::InputRequired(ir))) => Ok(Step::Input(ir)),
                        Ok(Err(wit::ResourceError::Failed(m))) => {
                            Err(RoundError::Rpc(ErrorData::internal_error(format!("reading {uri} failed: {m}"), None)))
                        }
                        Err(e) => Err(RoundError::Rpc(failed(&call.tenant, &call.plugin, &format!("reading {uri}"), &e))),
                    }
                }
            })
            .instrument(span.clone())
            .await;
        let response = self.respond::<ReadResourceResponse, ReadResourceResult>(&ctx, rounds);
        let outcome = if response.is_ok() { "ok" } else { "error" };
        self.finish(&span, ("resources/read", &uri, None), started, outcome);
        response
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let who = self.principal(&ctx)?;
        let catalog = self.tenant.plugins.catalog();
        let listing = self.tenant.tools_list;
        let items = catalog
            .prompts()
            .filter(|(_, p)| catalog.visible(&who, Target::Prompt(&p.name), listing))
            .map(|(_, p)| convert::prompt(p))
            .collect();
        complete(page("prompts", items, request.as_ref())?)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let who = self.principal(&ctx)?;
        let name = request.name.clone();
        let catalog = self.tenant.plugins.catalog();
        let plugin = self
            .authorize(&catalog, &who, Target::Prompt(&name))
            .map_err(Refused::into_error)?
            .plugin;
        let arguments = convert::prompt_arguments(request.arguments.as_ref());
        let retry = (
            request.input_responses.as_ref(),
            request.request_state.as_deref(),
        );
        let started = std::time::Instant::now();
        let span = self.request_span(&ctx, "prompts/get", Some(&name));
        let rounds = self
            .run_with_input(
                &ctx,
                (&who, &span),
                plugin,
                ("prompts/get", &name),
                retry,
                |call, continuation| {
                    let (name, arguments) = (name.clone(), arguments.clone());
                    async move {
                        let rpc = |e: ErrorData| Err(RoundError::Rpc(e));
                        match call
                            .plugin
                            .code
                            .get_prompt(
                                &call.env,
                                call.context,
                                name.clone(),
                                arguments,
                                continuation,
                            )
                            .await
                        {
                            Ok(Ok(wit::GetOutcome::Done(r))) => {
                                Ok(Step::Done(convert::prompt_result(&r)))
                            }
                            Ok(Ok(wit::GetOutcome::InputRequired(ir))) => Ok(Step::Input(ir)),
                            Ok(Err(wit::PromptError::UnknownPrompt)) => rpc(
                                ErrorData::invalid_params(format!("Unknown prompt: {name}"), None),
                            ),
                            Ok(Err(wit::PromptError::InvalidArguments(m))) => {
                                rpc(ErrorData::invalid_params(
                                    format!("Invalid arguments for prompt `{name}`: {m}"),
                                    None,
                                ))
                            }
                            Ok(Err(wit::PromptError::Failed(m))) => rpc(ErrorData::internal_error(
                                format!("prompt `{name}` failed: {m}"),
                                None,
                            )),
                            Err(e) => rpc(failed(
                                &call.tenant,
                                &call.plugin,
                                &format!("prompt `{name}`"),
                                &e,
                            )),
                        }
                    }
                },
            )
            .instrument(span.clone())
            .await;
        let response = self.respond::<GetPromptResponse, GetPromptResult>(&ctx, rounds);
        let outcome = if response.is_ok() { "ok" } else { "error" };
        self.finish(&span, ("prompts/get", &name, None), started, outcome);
        response
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let who = self.principal(&ctx)?;
        let req = serde_json::to_value(&request).unwrap_or_default();
        let catalog = self.tenant.plugins.catalog();
        let empty = || complete(json!({"completion": {"values": [], "hasMore": false}}));
        let (target, reference) = match req["ref"]["type"].as_str() {
            Some("ref/prompt") => {
                let name = req["ref"]["name"].as_str().unwrap_or_default();
                (Target::Prompt(name), wit::Reference::Prompt(name.into()))
            }
            Some("ref/resource") => {
                let uri = req["ref"]["uri"].as_str().unwrap_or_default();
                (
                    Target::Template(uri),
                    wit::Reference::ResourceTemplate(uri.into()),
                )
            }
            _ => {
                return Err(ErrorData::invalid_params(
                    "unknown completion reference type",
                    None,
                ));
            }
        };
        let plugin = match self.authorize(&catalog, &who, target) {
            Ok(permit) => permit.plugin.clone(),
            // An unknown template has nothing to complete (not an error in the protocol).
            Err(Refused::Unknown(_)) if matches!(target, Target::Template(_)) => return empty(),
            Err(refused) => return Err(refused.into_error()),
        };
        let argument = (
            req["argument"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            req["argument"]["value"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        let context = convert::prompt_arguments(req["context"]["arguments"].as_object());
        let span = self.request_span(&ctx, "completion/complete", None);
        let env = self.call_env(&ctx, &plugin, &span);
        let call_ctx = self.call_context(&ctx, &who, &plugin);
        match plugin
            .code
            .complete(&env, call_ctx, reference, argument, context)
            .await
        {
            Ok(Some(Ok(r))) => {
                let mut values = r.values;
                values.truncate(100);
                let mut completion = json!({"values": values, "hasMore": r.has_more});
                if let Some(total) = r.total {
                    completion["total"] = total.into();
                }
                complete(json!({"completion": completion}))
            }
            Ok(None) => empty(),
            Ok(Some(Err(m))) => Err(ErrorData::internal_error(
                format!("completion failed: {m}"),
                None,
            )),
            Err(e) => Err(self.sandbox_error(&plugin, "completion", &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor_of(v: &Value) -> Option<PaginatedRequestParams> {
        v.get("nextCursor")
            .map(|c| serde_json::from_value(json!({"cursor": c})).unwrap())
    }

    #[test]
    fn pages_cover_every_item_once_in_order() {
        let items: Vec<Value> = (0..250).map(|i| json!(i)).collect();
        let mut seen = Vec::new();
        let mut request = None;
        loop {
            let p = page("tools", items.clone(), request.as_ref()).unwrap();
            seen.extend(p["tools"].as_array().unwrap().iter().cloned());
            request = cursor_of(&p);
            if request.is_none() {
                break;
            }
        }
        assert_eq!(seen, items);
    }

    #[test]
    fn bad_cursors_are_invalid_params() {
        for bad in ["not-base64!", "eDo1", ""] {
            let request: PaginatedRequestParams =
                serde_json::from_value(json!({"cursor": bad})).unwrap();
            let e = page("tools", vec![json!(1)], Some(&request)).unwrap_err();
            assert_eq!(e.code, rmcp::model::ErrorCode::INVALID_PARAMS, "{bad}");
        }
        let past: PaginatedRequestParams =
            serde_json::from_value(json!({"cursor": B64.encode("o:99")})).unwrap();
        assert!(page("tools", vec![json!(1)], Some(&past)).is_err());
    }
}
