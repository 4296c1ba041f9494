//! RFC 8693 token exchange for downstream services: the caller's token (kept by the host as a
//! [`SecretToken`], never shown to plugins) is exchanged at the authorization server for a
//! token whose audience is the service, with the gateway authenticating as itself.
//!
//! Exchanged tokens are cached per (hash of the subject token, service, scopes) until shortly
//! before they expire; concurrent identical exchanges wait for one request; a service that
//! answers 401 makes the caller evict the entry and retry once. Neither token nor secret is
//! logged or returned in an error.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::auth::{SecretToken, discover_metadata};

/// Exchanged tokens are dropped this long before they expire.
const EXPIRY_SKEW: Duration = Duration::from_secs(30);
/// How long an exchange request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

type Key = [u8; 32];

struct Cached {
    token: String,
    expires: Instant,
}

/// Exchanges callers' tokens at one issuer, as one client.
pub(crate) struct Exchanger {
    issuer: String,
    client_id: String,
    /// Never printed: this type implements no `Debug`.
    client_secret: String,
    http: reqwest::Client,
    token_endpoint: OnceCell<String>,
    cache: Mutex<HashMap<Key, Cached>>,
    inflight: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
}

impl Exchanger {
    pub(crate) fn new(
        issuer: String,
        client_id: String,
        client_secret: String,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            issuer,
            client_id,
            client_secret,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(TIMEOUT)
                .build()?,
            token_endpoint: OnceCell::new(),
            cache: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
        })
    }

    fn key(subject: &SecretToken, service: &str, scopes: &[String]) -> Key {
        let mut h = Sha256::new();
        h.update(subject.expose().as_bytes());
        h.update([0]);
        h.update(service.as_bytes());
        h.update([0]);
        h.update(scopes.join(" ").as_bytes());
        h.finalize().into()
    }

    /// Forget the exchanged token for this subject and service (the service refused it).
    pub(crate) fn evict(&self, subject: &SecretToken, service: &str, scopes: &[String]) {
        self.cache
            .lock()
            .remove(&Self::key(subject, service, scopes));
    }

    /// A token for `audience`, exchanged (or cached) for `subject`.
    pub(crate) async fn token(
        &self,
        subject: &SecretToken,
        service: &str,
        audience: &str,
        scopes: &[String],
    ) -> Result<String, String> {
        let key = Self::key(subject, service, scopes);
        if let Some(t) = self.cached(&key) {
            return Ok(t);
        }
        // One exchange per key at a time: later callers wait and then find it cached.
        let gate = self.inflight.lock().entry(key).or_default().clone();
        let _turn = gate.lock().await;
        if let Some(t) = self.cached(&key) {
            return Ok(t);
        }
        let result = self.exchange(subject, audience, scopes).await;
        self.inflight.lock().remove(&key);
        let (token, lifetime) = result?;
        self.cache.lock().insert(
            key,
            Cached {
                token: token.clone(),
                expires: Instant::now() + lifetime.saturating_sub(EXPIRY_SKEW),
            },
        );
        Ok(token)
    }

    fn cached(&self, key: &Key) -> Option<String> {
        let mut cache = self.cache.lock();
        match cache.get(key) {
            Some(c) if c.expires > Instant::now() => Some(c.token.clone()),
            Some(_) => {
                cache.remove(key);
                None
            }
            None => None,
        }
    }

    async fn exchange(
        &self,
        subject: &SecretToken,
        audience: &str,
        scopes: &[String],
    ) -> Result<(String, Duration), String> {
        let endpoint = self
            .token_endpoint
            .get_or_try_init(|| async {
                let doc = discover_metadata(&self.http, &self.issuer).await?;
                doc["token_endpoint"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{} advertises no token_endpoint", self.issuer))
            })
            .await?;
        let mut form = vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange".to_string(),
            ),
            ("subject_token", subject.expose().to_string()),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token".to_string(),
            ),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token".to_string(),
            ),
            ("audience", audience.to_string()),
        ];
        if !scopes.is_empty() {
            form.push(("scope", scopes.join(" ")));
        }
        let resp = self
            .http
            .post(endpoint)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "the token exchange at {endpoint} failed: {}",
                    e.without_url()
                )
            })?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!(
                "the authorization server refused the token exchange: {} ({})",
                body["error"].as_str().unwrap_or("unknown error"),
                body["error_description"]
                    .as_str()
                    .unwrap_or("no description")
            ));
        }
        let token = body["access_token"]
            .as_str()
            .ok_or("the exchange response has no access_token")?
            .to_string();
        let lifetime = Duration::from_secs(body["expires_in"].as_u64().unwrap_or(60));
        Ok((token, lifetime))
    }
}
