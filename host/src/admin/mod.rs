//! The operators' endpoints: `GET /admin/plugins` (the plugin [`Inventory`]) and `/readyz`
//! (readiness, with details for operators only), and the one rule for who is an operator.
//!
//! Owns what operators are shown and to whom: a loopback peer, or a token some tenant accepts
//! that carries `server.admin_scope`. With OAuth on, the token decides the tenant whose
//! inventory is shown (`?tenant=` may only confirm it), so an unauthenticated caller gets one
//! identical 401 whatever it names and learns no tenant ids. It must not serve MCP, validate
//! tokens itself (it asks each tenant's [`TenantAuth`]) or change what plugins are loaded.

mod inventory;

use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::auth::{Denial, ResourceServer, TenantAuth};
use crate::mcp::TenantContext;
pub use inventory::{FailedFile, Inventory, PluginEntry, ToolEntry};

/// Who an operator is.
enum Operator<'a> {
    /// On this machine (loopback): the whole gateway.
    Gateway,
    /// With an admin token of this tenant: that tenant.
    Tenant(&'a Arc<TenantContext>, &'a Arc<TenantAuth>),
}

/// The operators' endpoints over every tenant.
pub(crate) struct Admin {
    /// The scope an operator's token carries.
    scope: String,
    /// Each tenant with how it authenticates.
    tenants: Vec<(Arc<TenantContext>, Arc<TenantAuth>)>,
    resource_server: Option<Arc<ResourceServer>>,
    /// Cancelled when the gateway begins to shut down: not ready from then on.
    draining: tokio_util::sync::CancellationToken,
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, axum::Json(serde_json::json!({"error": why}))).into_response()
}

fn loopback(parts: &Parts) -> bool {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .is_some_and(|c| c.0.ip().is_loopback())
}

impl Admin {
    pub(crate) fn new(
        scope: String,
        tenants: Vec<(Arc<TenantContext>, Arc<TenantAuth>)>,
        resource_server: Option<Arc<ResourceServer>>,
        draining: tokio_util::sync::CancellationToken,
    ) -> Self {
        Self {
            scope,
            tenants,
            resource_server,
            draining,
        }
    }

    /// The routes: `/readyz` and `/admin/plugins`.
    pub(crate) fn routes(self: Arc<Self>) -> axum::Router {
        let readiness = self.clone();
        axum::Router::new()
            .route(
                "/readyz",
                axum::routing::get(move |req: Request| {
                    let admin = readiness.clone();
                    async move { admin.readiness(req).await }
                }),
            )
            .route(
                "/admin/plugins",
                axum::routing::get(move |req: Request| {
                    let admin = self.clone();
                    async move { admin.plugins(req).await }
                }),
            )
    }

    fn oauth(&self) -> bool {
        self.tenants.iter().any(|(_, a)| a.requires_token())
    }

    /// The tenant whose token this request carries, with its principal.
    async fn caller(
        &self,
        parts: &Parts,
    ) -> Option<(
        &Arc<TenantContext>,
        &Arc<TenantAuth>,
        crate::auth::Principal,
    )> {
        for (tenant, auth) in self.tenants.iter().filter(|(_, a)| a.requires_token()) {
            if let Ok((p, _)) = auth.authenticate_here(parts).await {
                return Some((tenant, auth, p));
            }
        }
        None
    }

    /// Who operates, if the request comes from an operator: a loopback peer (the whole
    /// gateway), or an admin token of one tenant (that tenant only).
    async fn operator(&self, parts: &Parts) -> Option<Operator<'_>> {
        if loopback(parts) {
            return Some(Operator::Gateway);
        }
        if !parts.headers.contains_key(http::header::AUTHORIZATION) {
            return None;
        }
        self.caller(parts)
            .await
            .filter(|(_, _, p)| p.has_scopes(std::slice::from_ref(&self.scope)))
            .map(|(tenant, auth, _)| Operator::Tenant(tenant, auth))
    }

    /// `/readyz`: ready once plugins are loaded (they are before the router exists) and every
    /// issuer's signing keys have been fetched at least once, until shutdown begins
    /// (`draining`). Everyone gets the status; only an operator gets the details, which name
    /// tenants and issuers: from loopback all of them, with a tenant's admin token that
    /// tenant's plugins and the issuers it trusts.
    pub(crate) async fn readiness(&self, req: Request) -> Response {
        if self.draining.is_cancelled() {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"status": "draining"})),
            )
                .into_response();
        }
        let waiting = self
            .resource_server
            .as_ref()
            .map(|rs| rs.issuers_without_keys())
            .unwrap_or_default();
        let ready = waiting.is_empty();
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let word = if ready { "ready" } else { "not ready" };
        let (parts, _) = req.into_parts();
        let Some(operator) = self.operator(&parts).await else {
            return (status, axum::Json(serde_json::json!({"status": word}))).into_response();
        };
        // A tenant's admin sees its own tenant and the issuers it trusts, nothing of others.
        let shown = |t: &Arc<TenantContext>| match &operator {
            Operator::Gateway => true,
            Operator::Tenant(mine, _) => Arc::ptr_eq(mine, t),
        };
        let waiting: Vec<String> = waiting
            .into_iter()
            .filter(|issuer| match &operator {
                Operator::Gateway => true,
                Operator::Tenant(_, auth) => auth.trusts(issuer),
            })
            .collect();
        let plugins: serde_json::Map<String, serde_json::Value> = self
            .tenants
            .iter()
            .filter(|(t, _)| shown(t))
            .map(|(t, _)| {
                let c = t.plugins.catalog();
                (
                    t.plugins.tenant.to_string(),
                    serde_json::json!({"loaded": c.plugins.len(), "failed": c.failures.len()}),
                )
            })
            .collect();
        let body = serde_json::json!({
            "status": word,
            "config": "loaded",
            "plugins": plugins,
            "issuers_without_keys": waiting,
        });
        (status, axum::Json(body)).into_response()
    }

    /// `GET /admin/plugins[?tenant=<id>]`: a tenant's plugin inventory.
    pub(crate) async fn plugins(&self, req: Request) -> Response {
        let wanted = req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("tenant="))
                .map(str::to_string)
        });
        let (parts, _) = req.into_parts();
        let tenant = if self.oauth() {
            let Some((tenant, auth, principal)) = self.caller(&parts).await else {
                let mut resp = refuse(
                    StatusCode::UNAUTHORIZED,
                    "a valid access token of the tenant is required",
                );
                resp.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer realm=\"portcullis admin\""),
                );
                return resp;
            };
            if wanted
                .as_deref()
                .is_some_and(|w| w != &*tenant.plugins.tenant)
            {
                return refuse(StatusCode::NOT_FOUND, "no such tenant");
            }
            if !principal.has_scopes(std::slice::from_ref(&self.scope)) {
                let denial = Denial::InsufficientScope {
                    required: vec![self.scope.clone()],
                };
                tracing::warn!(tenant = %tenant.plugins.tenant, "plugin inventory refused: the token lacks {}", self.scope);
                return auth.challenge(&denial, Some(&principal), None).response();
            }
            tenant
        } else {
            if !loopback(&parts) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "with authentication off the plugin inventory is served to loopback clients only",
                );
            }
            let found = match &wanted {
                Some(id) => self
                    .tenants
                    .iter()
                    .find(|(t, _)| &*t.plugins.tenant == id.as_str()),
                None if self.tenants.len() == 1 => self.tenants.first(),
                None => return refuse(StatusCode::BAD_REQUEST, "name a tenant: ?tenant=<id>"),
            };
            let Some((tenant, _)) = found else {
                return refuse(StatusCode::NOT_FOUND, "no such tenant");
            };
            tenant
        };
        let inventory = Inventory::of(&tenant.plugins.catalog());
        let mut body = serde_json::to_value(inventory).unwrap_or_default();
        body["tenant"] = serde_json::Value::from(&*tenant.plugins.tenant);
        // The tenant's policies: their files, mode, ids, and why the last reload failed.
        if let Some(policies) = tenant.authz.policies() {
            body["policy"] = serde_json::to_value(policies.status()).unwrap_or_default();
        }
        axum::Json(body).into_response()
    }
}
