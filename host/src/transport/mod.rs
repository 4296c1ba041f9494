//! Transports: the HTTP router (one MCP endpoint per tenant, health) and stdio.
//!
//! Owns listeners, routing by path, the front guard ([`http`]), Host/Origin allow-lists and
//! graceful shutdown. It must not implement MCP methods or authenticate tokens: it composes
//! the `auth` layer and the `mcp` endpoint for each tenant.

pub(crate) mod http;
pub mod stdio;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::get;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use crate::auth::{ResourceServer, TenantAuth};
use crate::config::Config;
use crate::mcp::{HttpSettings, TenantContext, http_endpoint};

/// Hosts and origins the gateway accepts, derived from the configuration.
pub(crate) fn allowed_hosts_and_origins(config: &Config) -> (Vec<String>, Vec<String>) {
    let public = config.public_url();
    let authority = public
        .split("://")
        .nth(1)
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let host = authority
        .rsplit_once(':')
        .map_or(authority.as_str(), |(h, _)| h)
        .to_string();
    let mut hosts = vec![host, authority];
    let mut origins = vec![public.split('/').take(3).collect::<Vec<_>>().join("/")];
    if config.server.listen.ip().is_loopback() {
        for h in ["localhost", "127.0.0.1", "::1", "[::1]"] {
            hosts.push(h.to_string());
        }
        for o in ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"] {
            origins.push(o.to_string());
        }
    }
    hosts.extend(config.server.allowed_hosts.iter().cloned());
    origins.extend(config.server.allowed_origins.iter().cloned());
    hosts.sort();
    hosts.dedup();
    origins.sort();
    origins.dedup();
    (hosts, origins)
}

/// Build the router serving every tenant's endpoint (and, with OAuth on, each tenant's
/// protected resource metadata).
pub(crate) fn router(
    config: &Config,
    tenants: &[(String, Arc<TenantContext>)],
    settings: &HttpSettings,
    resource_server: Option<Arc<ResourceServer>>,
) -> Router {
    let mut router = Router::new().route("/healthz", get(|| async { "ok" }));
    let mut admin = Admin {
        scope: config.server.admin_scope.clone(),
        tenants: Vec::new(),
    };
    for (path, tenant) in tenants {
        let resource = format!("{}{path}", config.public_url());
        let auth = Arc::new(TenantAuth::new(
            tenant.plugins.tenant.clone(),
            resource,
            &config.auth,
            resource_server.clone(),
        ));
        if let Some(doc) = auth.metadata() {
            let doc = Arc::new(doc);
            let serve_doc = move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            };
            router = router.route(
                &format!("/.well-known/oauth-protected-resource{path}"),
                get(serve_doc.clone()),
            );
            if tenants.len() == 1 {
                router = router.route("/.well-known/oauth-protected-resource", get(serve_doc));
            }
        }
        admin.tenants.push((tenant.clone(), auth.clone()));
        let endpoint = http_endpoint(tenant.clone(), settings);
        let guard = Arc::new(http::Guard {
            max_body_bytes: config.server.max_body_bytes,
            max_sessions: config.server.max_sessions,
            sessions: endpoint.session_counter(),
            tenant: tenant.clone(),
            auth,
            owners: Default::default(),
        });
        let mcp =
            ServiceExt::<Request>::map_response(endpoint.service, |r| r.map(axum::body::Body::new));
        let inner: http::Inner = BoxCloneSyncService::new(mcp);
        let guarded = tower::service_fn(move |req: Request| {
            let (guard, inner) = (guard.clone(), inner.clone());
            async move { Ok::<_, Infallible>(guard.handle(req, inner).await.into_response()) }
        });
        router = router.route_service(path, guarded);
    }
    let admin = Arc::new(admin);
    router.route(
        "/admin/plugins",
        get(move |req: Request| {
            let admin = admin.clone();
            async move { admin.plugins(req).await }
        }),
    )
}

/// The operators' endpoints: authenticated like the tenant's MCP endpoint and requiring the
/// admin scope, or, with authentication off, served to loopback clients only.
struct Admin {
    scope: String,
    tenants: Vec<(Arc<TenantContext>, Arc<TenantAuth>)>,
}

impl Admin {
    /// `GET /admin/plugins[?tenant=<id>]`: the tenant's plugin inventory.
    async fn plugins(&self, req: Request) -> axum::response::Response {
        use axum::http::StatusCode;
        let refuse = |status: StatusCode, why: String| {
            (status, axum::Json(serde_json::json!({"error": why}))).into_response()
        };
        let wanted = req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("tenant="))
                .map(str::to_string)
        });
        let found = match &wanted {
            Some(id) => self
                .tenants
                .iter()
                .find(|(t, _)| &*t.plugins.tenant == id.as_str()),
            None if self.tenants.len() == 1 => self.tenants.first(),
            None => {
                let ids: Vec<&str> = self
                    .tenants
                    .iter()
                    .map(|(t, _)| &*t.plugins.tenant)
                    .collect();
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!("name a tenant: ?tenant=<id> (one of {})", ids.join(", ")),
                );
            }
        };
        let Some((tenant, auth)) = found else {
            return refuse(StatusCode::NOT_FOUND, "no such tenant".into());
        };
        let (parts, _) = req.into_parts();
        let principal = match auth.authenticate(&parts).await {
            Ok((p, _)) => p,
            Err(denial) => return auth.challenge(&denial, None),
        };
        if auth.requires_token() {
            if !principal.has_scopes(std::slice::from_ref(&self.scope)) {
                let denial = crate::auth::Denial::InsufficientScope {
                    required: vec![self.scope.clone()],
                };
                tracing::warn!(tenant = %tenant.plugins.tenant, "plugin inventory refused: the token lacks {}", self.scope);
                return auth.challenge(&denial, Some(&principal));
            }
        } else {
            let peer = parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip());
            if !peer.is_some_and(|ip| ip.is_loopback()) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "with authentication off the plugin inventory is served to loopback clients only".into(),
                );
            }
        }
        let mut body = tenant.plugins.catalog().inventory();
        body["tenant"] = serde_json::Value::from(&*tenant.plugins.tenant);
        axum::Json(body).into_response()
    }
}
