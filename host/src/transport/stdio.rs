//! `portcullis stdio`: serve one tenant to a local client over stdin/stdout.
//!
//! There is no token on stdio. As in the MCP specification's stdio model, the identity comes
//! from the environment: `[stdio]` in the configuration, overridden by `PORTCULLIS_SUBJECT`
//! and `PORTCULLIS_SCOPES` (space-separated). Scope checks apply to that identity exactly as
//! they apply to a token's scopes over HTTP. Logs go to stderr; stdout carries only protocol.

use std::sync::Arc;

use crate::auth::Principal;
use crate::config::{Config, Identity};
use crate::mcp::{TenantContext, serve_stdio};

/// The stdio identity: the configuration, then the environment.
pub fn identity(config: &Config) -> Identity {
    let mut id = config.stdio.identity.clone();
    if let Ok(sub) = std::env::var("PORTCULLIS_SUBJECT")
        && !sub.is_empty()
    {
        id.subject = sub;
    }
    if let Ok(scopes) = std::env::var("PORTCULLIS_SCOPES") {
        id.scopes = scopes.split_whitespace().map(str::to_string).collect();
    }
    id
}

/// Serve `tenant` on stdin/stdout until the client goes away.
pub async fn run(config: &Config, tenant: Arc<TenantContext>) -> anyhow::Result<()> {
    let who = identity(config);
    tracing::info!(tenant = %tenant.plugins.tenant, subject = %who.subject, "serving MCP on stdio");
    let principal = Principal::from_identity(tenant.plugins.tenant.clone(), &who);
    serve_stdio(tenant, principal).await
}
