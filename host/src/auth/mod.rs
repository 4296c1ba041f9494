//! Who is calling: the [`Principal`] every request carries, and how it is established.
//!
//! Owns authentication at the edge. The rest of the host reads the principal from request
//! extensions and never sees a token. This module must not route MCP methods or call plugins.
//! With `auth.mode = "none"` every request acts as the configured anonymous identity, which is
//! for local development and the conformance suite only.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

use crate::config::Identity;

/// The scope that stands for "every scope" in a configured identity.
pub const ALL_SCOPES: &str = "*";

/// An authenticated (or, with auth off, configured) caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The tenant the request was routed to.
    pub tenant: Arc<str>,
    /// The subject (`sub`), if any.
    pub subject: Option<String>,
    /// The OAuth client id, if known.
    pub client_id: Option<String>,
    /// Granted scopes.
    pub scopes: BTreeSet<String>,
    /// Operator-selected non-secret claims: name and JSON value as text.
    pub claims: Vec<(String, String)>,
}

impl Principal {
    /// A principal with a fixed identity (auth off, or stdio).
    pub fn from_identity(tenant: Arc<str>, identity: &Identity) -> Self {
        Self {
            tenant,
            subject: Some(identity.subject.clone()),
            client_id: None,
            scopes: identity.scopes.iter().cloned().collect(),
            claims: Vec::new(),
        }
    }

    /// Whether every scope in `required` is granted.
    pub fn has_scopes<S: AsRef<str>>(&self, required: &[S]) -> bool {
        self.scopes.contains(ALL_SCOPES)
            || required.iter().all(|s| self.scopes.contains(s.as_ref()))
    }

    /// The scopes in `required` that are not granted.
    pub fn missing_scopes<'a, S: AsRef<str>>(&self, required: &'a [S]) -> Vec<&'a str> {
        if self.scopes.contains(ALL_SCOPES) {
            return Vec::new();
        }
        required
            .iter()
            .map(AsRef::as_ref)
            .filter(|s| !self.scopes.contains(*s))
            .collect()
    }
}

/// Axum middleware for `auth.mode = "none"`: attach the fixed principal to every request.
pub async fn attach_fixed_principal(
    principal: Arc<Principal>,
    mut req: Request,
    next: Next,
) -> Response {
    req.extensions_mut().insert(principal.as_ref().clone());
    next.run(req).await
}
