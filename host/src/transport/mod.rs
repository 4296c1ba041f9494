//! Transports: the HTTP router (one MCP endpoint per tenant, health) and stdio.
//!
//! Owns listeners, routing by path and host (as [`crate::tenancy`] maps them), the front of each
//! endpoint (`front`: the request path's first steps, in order; `jsonrpc`: the body, parsed
//! once; `forward`: requests for a session another replica holds), Host/Origin allow-lists
//! over every route (`host_guard`), `/healthz`, and graceful shutdown. It
//! must not implement MCP methods, authenticate tokens or answer operators: it composes the
//! `auth` layer and the `mcp` endpoint for each tenant, and mounts the `admin` endpoints.

mod cors;
mod forward;
mod front;
mod grants;
mod host_guard;
mod jsonrpc;
pub mod listener;
mod polling;
pub mod stdio;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::get;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use crate::admin;
use crate::auth::{ResourceServer, TenantAuth};
use crate::config::Config;
use crate::mcp::{HttpSettings, TenantContext, http_endpoint};
use crate::sessions::{Caps, Directory, Sessions};
use crate::tenancy;

/// Put the Host/Origin allow-lists in front of every route of `router`, and behind them the
/// CORS answers for `cors_origins` (none: no CORS layer at all).
pub(crate) fn guard_hosts(
    router: Router,
    settings: &HttpSettings,
    cors_origins: &[String],
) -> Router {
    let guard = host_guard::HostGuard::new(&settings.allowed_hosts, &settings.allowed_origins);
    let cors = cors::Cors::new(cors_origins);
    let router = if cors.is_empty() {
        router
    } else {
        router.layer(axum::middleware::from_fn_with_state(cors, cors::apply))
    };
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
    origins.extend(config.server.cors_origins.iter().cloned());
    hosts.sort();
    hosts.dedup();
    origins.sort();
    origins.dedup();
    (hosts, origins)
}

/// One tenant's endpoint pieces.
struct Served {
    endpoint: front::Inner,
    /// With OAuth on, the tenant's authentication (its metadata is built per request: the
    /// scopes its plugins declare change on reload).
    metadata: Option<Arc<TenantAuth>>,
    /// `DELETE <path>/grants/<service>`: a user revokes their grant.
    grants: front::Inner,
}

/// A service answering `path` for the tenants mounted there, picked by the `Host` header.
fn by_host<F, Fut>(mount: tenancy::Mount, pick: F) -> front::Inner
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

/// One tenant's endpoint: the front (its steps in order) over the MCP service, and its
/// protected resource metadata.
fn serve_tenant(
    config: &Config,
    tenant: &Arc<TenantContext>,
    auth: &Arc<TenantAuth>,
    settings: &HttpSettings,
    shared: Option<&Shared>,
) -> Served {
    let endpoint = http_endpoint(tenant.clone(), settings);
    let caps = Caps {
        max_sessions: config.server.max_sessions,
        max_per_caller: config.server.max_sessions_per_subject,
        idle: settings.session_idle,
    };
    let sessions = Arc::new(Sessions::new(
        tenant.id().clone(),
        endpoint.live_sessions(),
        shared.map(|s| s.directory.clone()),
        caps,
    ));
    sessions.attach();
    let mcp =
        ServiceExt::<Request>::map_response(endpoint.service, |r| r.map(axum::body::Body::new));
    let front = Arc::new(front::Front::new(
        tenant.clone(),
        auth.clone(),
        sessions,
        shared.map(|s| s.forwarder.clone()),
        config.server.max_body_bytes,
        (config.server.sse_close_after_ms > 0).then(|| {
            polling::Polling::new(
                Arc::from(&**tenant.id()),
                std::time::Duration::from_millis(config.server.sse_close_after_ms),
            )
        }),
        BoxCloneSyncService::new(mcp),
    ));
    let guarded = tower::service_fn(move |req: Request| {
        let front = front.clone();
        async move { Ok::<_, Infallible>(front.handle(req).await.into_response()) }
    });
    let (tenant, auth_for_grants) = (tenant.clone(), auth.clone());
    let grants = tower::service_fn(move |req: Request| {
        let (tenant, auth) = (tenant.clone(), auth_for_grants.clone());
        async move { Ok::<_, Infallible>(grants::revoke(&tenant, &auth, req).await) }
    });
    Served {
        endpoint: BoxCloneSyncService::new(guarded),
        metadata: auth.requires_token().then(|| auth.clone()),
        grants: BoxCloneSyncService::new(grants),
    }
}

/// With several replicas: the session directory and the client forwarding to the others.
struct Shared {
    directory: Arc<dyn Directory>,
    forwarder: forward::Forwarder,
}

/// Build the router serving every tenant's endpoint (and, with OAuth on, each tenant's
/// protected resource metadata), the health endpoints and the operators' endpoints;
/// `directory` when other replicas serve the same endpoints; `draining` is cancelled when
/// shutdown begins (readiness says so).
pub(crate) fn router(
    config: &Config,
    tenants: &[Arc<TenantContext>],
    settings: &HttpSettings,
    resource_server: Option<Arc<ResourceServer>>,
    directory: Option<Arc<dyn Directory>>,
    draining: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Router> {
    let shared = match directory {
        Some(directory) => Some(Shared {
            forwarder: forward::Forwarder::new(directory.replica())?,
            directory,
        }),
        None => None,
    };
    let mut operated = Vec::new();
    let mut served = Vec::new();
    for (t, tenant) in config.tenants.iter().zip(tenants) {
        let plugins = tenant.plugins.clone();
        let auth = Arc::new(
            TenantAuth::new(
                tenant.plugins.tenant.clone(),
                config.tenant_resource(t),
                t,
                &config.auth,
                resource_server.clone(),
            )
            .with_declared_scopes(Arc::new(move || plugins.catalog().declared_scopes()))
            .with_approvals({
                let plugins = tenant.plugins.clone();
                Arc::new(move || plugins.catalog().declared_approvals())
            }),
        );
        served.push(serve_tenant(
            config,
            tenant,
            &auth,
            settings,
            shared.as_ref(),
        ));
        operated.push((tenant.clone(), auth));
    }
    let served = Arc::new(served);
    let admin = Arc::new(admin::Admin::new(
        config.server.admin_scope.clone(),
        operated,
        resource_server,
        draining,
    ));
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(admin.routes());
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
        let grants = by_host(mount.clone(), move |i, req| {
            let inner = s[i].grants.clone();
            async move {
                match inner.oneshot(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                }
            }
        });
        router = router.route_service(
            &format!("{}/grants/{{service}}", path.trim_end_matches('/')),
            grants,
        );
        let s = served.clone();
        let serve_doc = move |i: usize, _req: Request| {
            let doc = s[i].metadata.as_ref().and_then(|auth| auth.metadata());
            async move {
                match doc {
                    Some(doc) => axum::Json(doc).into_response(),
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
    Ok(router)
}
