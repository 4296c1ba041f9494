//! Transports: the HTTP router (one MCP endpoint per tenant, health) and stdio.
//!
//! Owns listeners, routing by path and host (as [`crate::tenancy`] maps them), the front guard
//! ([`http`]), Host/Origin allow-lists, the health endpoints (`/healthz`, `/readyz`) and
//! graceful shutdown. It must not implement MCP methods or authenticate tokens: it composes
//! the `auth` layer and the `mcp` endpoint for each tenant.

mod host_guard;
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
use crate::tenancy;

/// Put the Host/Origin allow-lists in front of every route of `router`.
pub(crate) fn guard_hosts(router: Router, settings: &HttpSettings) -> Router {
    let guard = host_guard::HostGuard::new(&settings.allowed_hosts, &settings.allowed_origins);
    router.layer(axum::middleware::from_fn_with_state(
        guard,
        host_guard::enforce,
    ))
}

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
    for h in tenancy::tenant_hosts(&config.tenants) {
        let bare = h.rsplit_once(':').map_or(h, |(b, _)| b);
        hosts.extend([h.to_string(), bare.to_string()]);
        let scheme = public.split("://").next().unwrap_or("http");
        origins.push(format!("{scheme}://{h}"));
    }
    hosts.extend(config.server.allowed_hosts.iter().cloned());
    origins.extend(config.server.allowed_origins.iter().cloned());
    hosts.sort();
    hosts.dedup();
    origins.sort();
    origins.dedup();
    (hosts, origins)
}

/// One tenant's endpoint pieces.
struct Served {
    endpoint: http::Inner,
    metadata: Option<Arc<serde_json::Value>>,
}

/// A service answering `path` for the tenants mounted there, picked by the `Host` header.
fn by_host<F, Fut>(mount: tenancy::Mount, pick: F) -> http::Inner
where
    F: Fn(usize, Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = axum::response::Response> + Send + 'static,
{
    BoxCloneSyncService::new(tower::service_fn(move |req: Request| {
        let (mount, pick) = (mount.clone(), pick.clone());
        async move {
            let host = req
                .headers()
                .get(::http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .or_else(|| req.uri().authority().map(|a| a.to_string()));
            Ok::<_, Infallible>(match mount.pick(host.as_deref()) {
                Some(i) => pick(i, req).await,
                None => {
                    tracing::debug!(host = host.as_deref(), path = %mount.path, "no tenant serves this host here");
                    (
                        ::http::StatusCode::NOT_FOUND,
                        axum::Json(serde_json::json!({"error": "no tenant is served for this host at this path"})),
                    )
                        .into_response()
                }
            })
        }
    }))
}

/// Build the router serving every tenant's endpoint (and, with OAuth on, each tenant's
/// protected resource metadata), the health endpoints and the operators' endpoints.
pub(crate) fn router(
    config: &Config,
    tenants: &[Arc<TenantContext>],
    settings: &HttpSettings,
    resource_server: Option<Arc<ResourceServer>>,
) -> Router {
    let mut admin = Admin {
        scope: config.server.admin_scope.clone(),
        tenants: Vec::new(),
    };
    let mut served = Vec::new();
    for (t, tenant) in config.tenants.iter().zip(tenants) {
        let auth = Arc::new(TenantAuth::new(
            tenant.plugins.tenant.clone(),
            config.tenant_resource(t),
            &t.issuers,
            &config.auth,
            resource_server.clone(),
        ));
        admin.tenants.push((tenant.clone(), auth.clone()));
        let endpoint = http_endpoint(tenant.clone(), settings);
        let guard = Arc::new(http::Guard {
            max_body_bytes: config.server.max_body_bytes,
            max_sessions: config.server.max_sessions,
            max_sessions_per_subject: config
                .server
                .max_sessions_per_subject
                .min(config.server.max_sessions),
            sessions: endpoint.session_counter(),
            tenant: tenant.clone(),
            auth: auth.clone(),
            owners: Default::default(),
        });
        let mcp =
            ServiceExt::<Request>::map_response(endpoint.service, |r| r.map(axum::body::Body::new));
        let inner: http::Inner = BoxCloneSyncService::new(mcp);
        let guarded = tower::service_fn(move |req: Request| {
            let (guard, inner) = (guard.clone(), inner.clone());
            async move { Ok::<_, Infallible>(guard.handle(req, inner).await.into_response()) }
        });
        served.push(Served {
            endpoint: BoxCloneSyncService::new(guarded),
            metadata: auth.metadata().map(Arc::new),
        });
    }
    let served = Arc::new(served);
    let readiness = Arc::new(Readiness {
        tenants: tenants.to_vec(),
        resource_server,
        admin: admin_scope_checker(config, &admin),
    });
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move |req: Request| {
                let readiness = readiness.clone();
                async move { readiness.check(req).await }
            }),
        );
    let mounts = tenancy::mounts(config);
    for mount in mounts.iter().cloned() {
        let path = mount.path.clone();
        let s = served.clone();
        let endpoint = by_host(mount.clone(), move |i, req| {
            let inner = s[i].endpoint.clone();
            async move {
                match inner.oneshot(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                }
            }
        });
        router = router.route_service(&path, endpoint);
        let s = served.clone();
        let serve_doc = move |i: usize, _req: Request| {
            let doc = s[i].metadata.clone();
            async move {
                match doc {
                    Some(doc) => axum::Json(doc.as_ref().clone()).into_response(),
                    None => ::http::StatusCode::NOT_FOUND.into_response(),
                }
            }
        };
        if served.iter().any(|s| s.metadata.is_some()) {
            let doc = by_host(mount.clone(), serve_doc.clone());
            router = router.route_service(
                &format!("/.well-known/oauth-protected-resource{path}"),
                doc.clone(),
            );
            if let ([_], Some(_)) = (mounts.as_slice(), mount.single()) {
                router = router.route_service("/.well-known/oauth-protected-resource", doc);
            }
        }
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

/// Whether a request comes from an operator: a loopback peer, or a token some tenant
/// accepts that carries the admin scope.
#[derive(Clone)]
struct OperatorCheck {
    scope: String,
    auths: Vec<Arc<TenantAuth>>,
}

fn admin_scope_checker(config: &Config, admin: &Admin) -> OperatorCheck {
    OperatorCheck {
        scope: config.server.admin_scope.clone(),
        auths: admin.tenants.iter().map(|(_, a)| a.clone()).collect(),
    }
}

impl OperatorCheck {
    async fn is_operator(&self, parts: &::http::request::Parts) -> bool {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        if peer.is_some_and(|ip| ip.is_loopback()) {
            return true;
        }
        if !parts.headers.contains_key(::http::header::AUTHORIZATION) {
            return false;
        }
        for auth in self.auths.iter().filter(|a| a.requires_token()) {
            if let Ok((p, _)) = auth.authenticate(parts).await
                && p.has_scopes(std::slice::from_ref(&self.scope))
            {
                return true;
            }
        }
        false
    }
}

/// `/readyz`: ready once plugins are loaded (they are before the router exists) and every
/// issuer's signing keys have been fetched at least once. Everyone gets the status; only an
/// operator (loopback, or an admin token) gets the details, which name tenants and issuers.
struct Readiness {
    tenants: Vec<Arc<TenantContext>>,
    resource_server: Option<Arc<ResourceServer>>,
    admin: OperatorCheck,
}

impl Readiness {
    async fn check(&self, req: Request) -> axum::response::Response {
        let waiting = self
            .resource_server
            .as_ref()
            .map(|rs| rs.issuers_without_keys())
            .unwrap_or_default();
        let ready = waiting.is_empty();
        let status = if ready {
            ::http::StatusCode::OK
        } else {
            ::http::StatusCode::SERVICE_UNAVAILABLE
        };
        let word = if ready { "ready" } else { "not ready" };
        let (parts, _) = req.into_parts();
        if !self.admin.is_operator(&parts).await {
            return (status, axum::Json(serde_json::json!({"status": word}))).into_response();
        }
        let plugins: serde_json::Map<String, serde_json::Value> = self
            .tenants
            .iter()
            .map(|t| {
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
}

/// The operators' endpoints: authenticated like the tenant's MCP endpoint and requiring the
/// admin scope, or, with authentication off, served to loopback clients only.
struct Admin {
    scope: String,
    tenants: Vec<(Arc<TenantContext>, Arc<TenantAuth>)>,
}

impl Admin {
    /// `GET /admin/plugins[?tenant=<id>]`: the tenant's plugin inventory.
    ///
    /// With OAuth on, the token decides the tenant (the one whose audience it carries, which
    /// `?tenant=` may only confirm): a caller without a valid token gets the same 401 whatever
    /// tenant it names, and one with a token gets the same 404 for every other id, so the
    /// endpoint is no oracle for which tenants exist.
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
        let (parts, _) = req.into_parts();
        let named = |id: &str| self.tenants.iter().find(|(t, _)| &*t.plugins.tenant == id);
        let oauth = self.tenants.iter().any(|(_, a)| a.requires_token());
        let tenant = if oauth {
            let mut caller = None;
            for (tenant, auth) in &self.tenants {
                if let Ok((p, _)) = auth.authenticate(&parts).await {
                    caller = Some((tenant, auth, p));
                    break;
                }
            }
            let Some((tenant, auth, principal)) = caller else {
                let mut resp = refuse(
                    StatusCode::UNAUTHORIZED,
                    "a valid access token of the tenant is required".into(),
                );
                resp.headers_mut().insert(
                    ::http::header::WWW_AUTHENTICATE,
                    ::http::HeaderValue::from_static("Bearer realm=\"portcullis admin\""),
                );
                return resp;
            };
            if wanted
                .as_deref()
                .is_some_and(|w| w != &*tenant.plugins.tenant)
            {
                return refuse(StatusCode::NOT_FOUND, "no such tenant".into());
            }
            if !principal.has_scopes(std::slice::from_ref(&self.scope)) {
                let denial = crate::auth::Denial::InsufficientScope {
                    required: vec![self.scope.clone()],
                };
                tracing::warn!(tenant = %tenant.plugins.tenant, "plugin inventory refused: the token lacks {}", self.scope);
                return auth.challenge(&denial, Some(&principal));
            }
            tenant
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
            let found = match &wanted {
                Some(id) => named(id),
                None if self.tenants.len() == 1 => self.tenants.first(),
                None => {
                    return refuse(
                        StatusCode::BAD_REQUEST,
                        "name a tenant: ?tenant=<id>".into(),
                    );
                }
            };
            let Some((tenant, _)) = found else {
                return refuse(StatusCode::NOT_FOUND, "no such tenant".into());
            };
            tenant
        };
        let mut body = tenant.plugins.catalog().inventory();
        body["tenant"] = serde_json::Value::from(&*tenant.plugins.tenant);
        axum::Json(body).into_response()
    }
}
