//! The MCP server handler: the `ServerHandler` impl, thin, routing each method to its module.
//!
//! One [`Gateway`] value serves one 2025 session (rmcp creates it per session) or one
//! stateless 2026-07-28 request. Owns: finding the caller's [`Principal`] in a request, the
//! server's advertised capabilities and versions, and the shared list-page shape. Each method's
//! work lives in `tools`, `resources`, `prompts`, `completion`; input rounds in `input`;
//! notifications in `notify`; per-session settings in [`crate::sessions::SessionState`].

#![allow(
    deprecated,
    reason = "logging/setLevel and resources/subscribe are deprecated by SEP-2577, but 2025 sessions still use them"
)]

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, Weak};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, CompleteRequestParams,
    CompleteResult, GetPromptRequestParams, GetPromptResponse, GetTaskParams, GetTaskResult,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse,
    ServerConfig, SetLevelRequestParams, SubscribeRequestParams, SubscriptionFilter,
    UnsubscribeRequestParams, UpdateTaskParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};

use super::convert::{self, complete, model};
use super::exchange::Exchange;
use super::notify::{self, Lists, Sink};
use super::paging::page;
use super::record::{Outcome, RequestRecord};
use super::tenant::TenantContext;
use super::{completion, prompts, resources, tasks, tools};
use crate::auth::Principal;
use crate::plugins::{Catalog, Target};
use crate::sessions::{LogLevel, SessionState};

/// The rmcp handler for one tenant.
#[derive(Clone)]
pub struct Gateway {
    pub(super) tenant: Arc<TenantContext>,
    pub(super) session: Arc<SessionState>,
    /// The identity on transports without per-request authentication (stdio).
    fixed_principal: Option<Arc<Principal>>,
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

    /// The handler of a 2025 session whose settings are `session` (the direct path's view of
    /// a session rmcp created).
    pub(super) fn with_session(tenant: Arc<TenantContext>, session: Arc<SessionState>) -> Self {
        Self {
            tenant,
            session,
            fixed_principal: None,
        }
    }

    /// The request `ctx` describes, as the handlers see it.
    fn exchange(&self, ctx: &RequestContext<RoleServer>) -> Result<Exchange, ErrorData> {
        Exchange::from_rmcp(ctx, self.fixed_principal.as_deref())
    }

    /// A list method's answer: one page of the items `items` yields, given which targets the
    /// caller may see, stored under `key`.
    pub(super) fn listing<R: serde::de::DeserializeOwned>(
        &self,
        ex: &Exchange,
        method: &'static str,
        key: &str,
        request: Option<&PaginatedRequestParams>,
        items: impl FnOnce(&Catalog, &dyn Fn(Target<'_>) -> bool) -> Vec<Value>,
    ) -> Result<R, ErrorData> {
        let record = RequestRecord::start(&self.tenant, ex, method, None);
        let catalog = self.tenant.catalog();
        let visible = |t: Target<'_>| self.tenant.visible(&catalog, &ex.who, t);
        let result = page(key, items(&catalog, &visible), request).and_then(complete);
        record.finish(None, Outcome::of(&result));
        result
    }

    /// Start pushing list and resource changes to this 2025 session.
    fn watch_changes(&self, peer: rmcp::service::Peer<RoleServer>) {
        let changes = self.tenant.plugins.subscribe();
        let session: Weak<SessionState> = Arc::downgrade(&self.session);
        let tenant = self.tenant.clone();
        let task = tokio::spawn(async move {
            let subscriber = |uri: &str| session.upgrade().and_then(|s| s.subscriber(uri));
            notify::forward(
                &tenant,
                changes,
                Lists::ALL,
                subscriber,
                Sink::Session(peer),
            )
            .await;
        });
        self.session.set_watcher(task);
    }
}

impl ServerHandler for Gateway {
    fn get_info(&self) -> ServerConfig {
        let mut extensions = serde_json::Map::new();
        extensions.insert(tasks::EXTENSION.into(), json!({}));
        for e in &self.tenant.auth_extensions {
            extensions.insert((*e).into(), json!({}));
        }
        let capabilities = serde_json::from_value(json!({
            "tools": {"listChanged": true},
            "resources": {"subscribe": true, "listChanged": true},
            "prompts": {"listChanged": true},
            "completions": {},
            "logging": {},
            "extensions": extensions,
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
                self.tenant.id()
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
        let catalog = self.tenant.catalog();
        let (_, tool) = catalog.tool(name)?;
        model(convert::tool(tool)).ok()
    }

    /// The handshake is done: start pushing changes and, on HTTP, let the direct path serve
    /// this session (its id, settings and client capabilities).
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let id = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.headers.get("mcp-session-id"))
            .and_then(|v| v.to_str().ok());
        if let Some(id) = id {
            let caps = context
                .peer
                .peer_info()
                .and_then(|info| serde_json::to_value(&info.capabilities).ok())
                .unwrap_or_else(|| json!({}));
            self.tenant
                .live
                .register(id, &self.session, caps, context.peer.clone());
        }
        self.watch_changes(context.peer);
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let level = serde_json::to_value(&request)
            .ok()
            .and_then(|v| v["level"].as_str().and_then(LogLevel::from_name))
            .ok_or_else(|| ErrorData::invalid_params("unknown log level", None))?;
        self.session.set_log_level(level);
        Ok(())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        resources::subscribe(self, request, &self.exchange(&ctx)?)
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.session.unsubscribe(&request.uri);
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.clone())
    }

    /// A 2026-07-28 `subscriptions/listen` stream: what its filter accepted, until it ends.
    async fn listen(&self, ctx: SubscriptionContext) -> Result<(), ErrorData> {
        let accepted = serde_json::to_value(ctx.accepted()).unwrap_or_default();
        let wants = |key: &str| accepted[key].as_bool().unwrap_or(false);
        let lists = Lists {
            tools: wants("toolsListChanged"),
            prompts: wants("promptsListChanged"),
            resources: wants("resourcesListChanged"),
        };
        let who = self.exchange(ctx.request_context())?.who;
        let uris: HashSet<String> = accepted["resourceSubscriptions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u.as_str().map(str::to_string))
            .collect();
        let subscriber = |uri: &str| uris.contains(uri).then(|| who.clone());
        let changes = self.tenant.plugins.subscribe();
        let sink = Sink::Listen(ctx.sink().clone());
        tokio::select! {
            () = ctx.cancelled() => {}
            () = notify::forward(&self.tenant, changes, lists, subscriber, sink) => {}
        }
        Ok(())
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        tools::list(self, request.as_ref(), &self.exchange(&ctx)?)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        tools::call(self, request, &self.exchange(&ctx)?).await
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        tasks::get(self, &request, &self.exchange(&ctx)?).await
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        tasks::update(self, request, &self.exchange(&ctx)?).await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        tasks::cancel(self, &request, &self.exchange(&ctx)?).await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        resources::list(self, request.as_ref(), &self.exchange(&ctx)?)
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        resources::templates(self, request.as_ref(), &self.exchange(&ctx)?)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        resources::read(self, request, &self.exchange(&ctx)?).await
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        prompts::list(self, request.as_ref(), &self.exchange(&ctx)?)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        prompts::get(self, request, &self.exchange(&ctx)?).await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        completion::complete_argument(self, request, &self.exchange(&ctx)?).await
    }
}
