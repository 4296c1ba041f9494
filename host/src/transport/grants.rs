//! `DELETE <tenant path>/grants/<service>`: a user revokes what they granted the gateway at a
//! service (their user-consent grant); the next call asks for consent again.
//!
//! Owns: the route's answers (401 without a valid token, 404 for a service the tenant does
//! not have, 405 for another method, `{"revoked": bool}` otherwise). Must not: decide whose
//! grant it is (the caller's, as `auth` says) or touch the vault (`mcp` → `downstream`).

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use serde_json::json;

use crate::auth::TenantAuth;
use crate::mcp::TenantContext;

/// Answer one request of the route.
pub(super) async fn revoke(tenant: &TenantContext, auth: &TenantAuth, req: Request) -> Response {
    let (mut parts, _) = req.into_parts();
    if parts.method != Method::DELETE {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(http::header::ALLOW, "DELETE")],
        )
            .into_response();
    }
    let service = parts
        .uri
        .path()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let (who, secret) = match auth.authenticate_here(&parts).await {
        Ok((who, Some(secret))) => (who, secret),
        Ok((_, None)) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(
                    json!({"error": "grants are per user: this gateway authenticates no users"}),
                ),
            )
                .into_response();
        }
        Err(denial) => {
            return auth
                .challenge(&denial, None, crate::auth::presented_scheme(&parts))
                .response();
        }
    };
    drop(crate::auth::Carried::take(&mut parts.headers, false));
    match tenant.revoke_grant(&who, &secret, &service).await {
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "no such service for this tenant"})),
        )
            .into_response(),
        Some(Ok(revoked)) => {
            tracing::info!(tenant = %tenant.id(), caller = %who.caller(), service = %service, revoked,
                "a user revoked their grant at a service");
            axum::Json(json!({"revoked": revoked})).into_response()
        }
        Some(Err(e)) => {
            tracing::warn!(tenant = %tenant.id(), service = %service, "revoking a grant failed: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": "the grant could not be revoked right now; retry"})),
            )
                .into_response()
        }
    }
}
