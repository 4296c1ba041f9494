//! Opaque access tokens: RFC 7662 introspection at the issuer, with the gateway's own client
//! credentials (the secret comes from the environment and is never logged).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::jwt::{Issuer, Verified};
use crate::config::IntrospectionConfig;

/// How long an introspection call may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long to trust an active token whose introspection response carries no `exp`.
const DEFAULT_TTL: u64 = 60;

/// Introspects tokens at one issuer.
pub(crate) struct Introspector {
    issuer: Arc<Issuer>,
    client_id: String,
    /// Never printed: this type implements no `Debug`.
    client_secret: String,
    endpoint: Option<String>,
}

impl Introspector {
    /// From configuration; fails if the secret's environment variable is unset.
    /// The issuer this endpoint belongs to.
    pub(crate) fn issuer_url(&self) -> &str {
        &self.issuer.issuer
    }

    pub(crate) fn new(issuer: Arc<Issuer>, config: &IntrospectionConfig) -> Result<Self, String> {
        let client_secret = std::env::var(&config.client_secret_env).map_err(|_| {
            format!(
                "environment variable {} (client_secret_env) is not set",
                config.client_secret_env
            )
        })?;
        Ok(Self {
            issuer,
            client_id: config.client_id.clone(),
            client_secret,
            endpoint: config.endpoint.clone(),
        })
    }

    async fn endpoint(&self) -> Result<String, String> {
        if let Some(e) = &self.endpoint {
            return Ok(e.clone());
        }
        let doc = self.issuer.metadata().await?;
        doc["introspection_endpoint"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                format!(
                    "{} advertises no introspection_endpoint",
                    self.issuer.issuer
                )
            })
    }

    /// Ask the issuer whether `token` is active and meant for `audience`. Errors never contain
    /// the token or the client secret.
    pub(crate) async fn introspect(&self, token: &str, audience: &str) -> Result<Verified, String> {
        let endpoint = self.endpoint().await?;
        let resp = self
            .issuer
            .http
            .post(&endpoint)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("introspection at {endpoint} failed: {}", e.without_url()))?;
        if !resp.status().is_success() {
            return Err(format!(
                "introspection at {endpoint} answered HTTP {}",
                resp.status()
            ));
        }
        let body: Value = resp
            .json()
            .await
            .map_err(|_| format!("introspection at {endpoint} did not answer JSON"))?;
        if body["active"] != Value::Bool(true) {
            return Err("the token is not active".into());
        }
        if let Some(iss) = body["iss"].as_str()
            && iss != self.issuer.issuer
        {
            return Err("the token's issuer does not match".into());
        }
        let for_us = match &body["aud"] {
            Value::String(a) => a == audience,
            Value::Array(a) => a.iter().any(|x| x == audience),
            _ => false,
        };
        if !for_us {
            return Err("the token was not issued for this resource (aud)".into());
        }
        let now = jsonwebtoken::get_current_timestamp();
        let expires = body["exp"].as_u64().unwrap_or(now + DEFAULT_TTL);
        if expires <= now {
            return Err("the token has expired".into());
        }
        let claims = body.as_object().cloned().unwrap_or_default();
        Ok(Verified { claims, expires })
    }
}
