//! The gateway as an OAuth client of the authorization server, for downstream credentials.
//!
//! Owns how the gateway authenticates at the token endpoint (`client_secret_basic` or
//! `private_key_jwt`), the two grants it performs — RFC 8693 token exchange of the caller's
//! token (kept by the host as a [`SecretToken`], never shown to plugins) for a token whose
//! audience is the service, and `client_credentials` for services called as the gateway
//! itself — and the cache of the tokens it obtained.
//!
//! Tokens are cached per (hash of the subject token, service, scopes) until shortly before
//! they expire; concurrent identical requests wait for one; a service that answers 401 makes
//! the caller evict the entry and retry once. Neither tokens, assertions nor secrets are
//! logged or returned in an error.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::auth::{SecretToken, discover_metadata};
use crate::config::{ClientAuthMethod, Config};
use crate::telemetry;

/// Cached tokens are dropped this long before they expire (or a tenth of their lifetime, if
/// shorter).
const EXPIRY_SKEW: Duration = Duration::from_secs(30);
/// How long a token request may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Most tokens kept; beyond it expired entries are dropped first.
const MAX_CACHED: usize = 10_000;
/// Lifetime assumed when the token response has no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

type Key = [u8; 32];

/// How the gateway proves its identity at the token endpoint.
pub(crate) enum ClientAuth {
    /// RFC 6749 §2.3.1 HTTP Basic with a shared secret. Never printed: no `Debug`.
    SecretBasic(String),
    /// RFC 7523 §2.2: a short-lived JWT signed with the gateway's private key.
    PrivateKeyJwt {
        key: EncodingKey,
        alg: Algorithm,
        kid: Option<String>,
    },
}

impl ClientAuth {
    /// A `private_key_jwt` signer from a PKCS#8 PEM key; `alg` is `RS256`, `PS256` or `ES256`.
    pub(crate) fn private_key_jwt(
        pem: &[u8],
        alg: &str,
        kid: Option<String>,
    ) -> Result<Self, String> {
        let (key, alg) = match alg {
            "RS256" | "PS256" => (
                EncodingKey::from_rsa_pem(pem).map_err(|e| format!("not an RSA PEM key: {e}"))?,
                if alg == "RS256" {
                    Algorithm::RS256
                } else {
                    Algorithm::PS256
                },
            ),
            "ES256" => (
                EncodingKey::from_ec_pem(pem).map_err(|e| format!("not an EC PEM key: {e}"))?,
                Algorithm::ES256,
            ),
            other => {
                return Err(format!(
                    "unsupported algorithm {other} (RS256, PS256, ES256)"
                ));
            }
        };
        let auth = Self::PrivateKeyJwt { key, alg, kid };
        // Fail at start, not at the first exchange, if the key cannot sign with `alg`.
        auth.assertion("probe", "https://probe.invalid/token")
            .map_err(|e| format!("the key cannot sign {alg:?}: {e}"))?;
        Ok(auth)
    }

    fn assertion(&self, client_id: &str, audience: &str) -> Result<String, String> {
        let Self::PrivateKeyJwt { key, alg, kid } = self else {
            return Err("not a private_key_jwt client".into());
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut header = Header::new(*alg);
        header.kid = kid.clone();
        let mut jti = [0u8; 16];
        rand::fill(&mut jti);
        let claims = json!({
            "iss": client_id, "sub": client_id, "aud": audience,
            "iat": now, "exp": now + 60, "jti": hex::encode(jti),
        });
        jsonwebtoken::encode(&header, &claims, key).map_err(|e| e.to_string())
    }
}

/// Which grant obtains a service's token.
pub enum Grant<'a> {
    /// RFC 8693: act for the caller whose token this is.
    Exchange(&'a SecretToken),
    /// `client_credentials`: the gateway calls as itself.
    ClientCredentials,
}

impl Grant<'_> {
    /// The grant as a fixed word for spans and metrics.
    fn kind(&self) -> &'static str {
        match self {
            Grant::Exchange(_) => "token_exchange",
            Grant::ClientCredentials => "client_credentials",
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Grant::Exchange(_) => "token exchange",
            Grant::ClientCredentials => "client credentials grant",
        }
    }
}

struct Cached {
    token: String,
    expires: Instant,
}

/// Obtains service tokens at one issuer, as one client, and caches them until shortly before
/// they expire (keyed by a hash of the grant's subject, the service and the scopes).
pub struct OAuthClient {
    issuer: String,
    client_id: String,
    auth: ClientAuth,
    http: reqwest::Client,
    token_endpoint: OnceCell<String>,
    cache: Mutex<HashMap<Key, Cached>>,
    inflight: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
}

impl OAuthClient {
    pub(crate) fn new(issuer: String, client_id: String, auth: ClientAuth) -> anyhow::Result<Self> {
        Ok(Self {
            issuer,
            client_id,
            auth,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(TIMEOUT)
                .build()?,
            token_endpoint: OnceCell::new(),
            cache: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
        })
    }

    fn key(grant: &Grant<'_>, service: &str, scopes: &[String]) -> Key {
        let mut h = Sha256::new();
        match grant {
            Grant::Exchange(subject) => {
                h.update(b"x");
                h.update(subject.expose().as_bytes());
            }
            Grant::ClientCredentials => h.update(b"c"),
        }
        h.update([0]);
        h.update(service.as_bytes());
        h.update([0]);
        h.update(scopes.join(" ").as_bytes());
        h.finalize().into()
    }

    /// Forget the token for this grant and service (the service refused it).
    pub(crate) fn evict(&self, grant: &Grant<'_>, service: &str, scopes: &[String]) {
        self.cache.lock().remove(&Self::key(grant, service, scopes));
    }

    /// The client `[exchange]` describes, if any; fails on a missing secret or bad key.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Self>> {
        let Some(x) = &config.exchange else {
            return Ok(None);
        };
        let file = config.source.display();
        let auth = match x.auth_method {
            ClientAuthMethod::ClientSecretBasic => {
                let var = x.client_secret_env.as_deref().unwrap_or_default();
                let secret = std::env::var(var).map_err(|_| {
                    anyhow::anyhow!("{file}: exchange.client_secret_env: {var} is not set")
                })?;
                ClientAuth::SecretBasic(secret)
            }
            ClientAuthMethod::PrivateKeyJwt => {
                let path = config.resolve_path(
                    x.private_key_file
                        .as_deref()
                        .unwrap_or(std::path::Path::new("")),
                );
                let pem = std::fs::read(&path).map_err(|e| {
                    anyhow::anyhow!(
                        "{file}: exchange.private_key_file: cannot read {}: {e}",
                        path.display()
                    )
                })?;
                ClientAuth::private_key_jwt(&pem, &x.private_key_alg, x.key_id.clone()).map_err(
                    |e| {
                        anyhow::anyhow!(
                            "{file}: exchange.private_key_file: {}: {e}",
                            path.display()
                        )
                    },
                )?
            }
        };
        let issuer = x
            .issuer
            .clone()
            .or_else(|| config.trusted_issuers().first().map(|i| i.issuer.clone()))
            .ok_or_else(|| {
                anyhow::anyhow!("{file}: exchange.issuer: no issuer to obtain tokens at")
            })?;
        Ok(Some(Self::new(issuer, x.client_id.clone(), auth)?))
    }

    /// A token for `audience` obtained with `grant` (or cached), inside an `oauth.token`
    /// span and counted by outcome (cache hit, shared with a concurrent request, issued,
    /// failed).
    pub async fn token(
        &self,
        grant: &Grant<'_>,
        service: &str,
        audience: &str,
        scopes: &[String],
    ) -> Result<String, String> {
        use tracing::Instrument as _;
        let span = telemetry::token_span(grant.kind(), service, audience);
        let (result, outcome) = self
            .obtain(grant, service, audience, scopes)
            .instrument(span.clone())
            .await;
        span.record("portcullis.cache", outcome);
        if result.is_err() {
            telemetry::fail(&span, outcome);
        }
        telemetry::metrics::get().tokens.add(
            1,
            &[
                opentelemetry::KeyValue::new("portcullis.service", service.to_string()),
                opentelemetry::KeyValue::new("oauth.grant_type", grant.kind()),
                opentelemetry::KeyValue::new("portcullis.outcome", outcome),
            ],
        );
        result
    }

    async fn obtain(
        &self,
        grant: &Grant<'_>,
        service: &str,
        audience: &str,
        scopes: &[String],
    ) -> (Result<String, String>, &'static str) {
        let key = Self::key(grant, service, scopes);
        if let Some(t) = self.cached(&key) {
            return (Ok(t), "hit");
        }
        // One request per key at a time: later callers wait and then find it cached.
        let gate = self.inflight.lock().entry(key).or_default().clone();
        let _turn = gate.lock().await;
        if let Some(t) = self.cached(&key) {
            return (Ok(t), "shared");
        }
        let result = self.request(grant, audience, scopes).await;
        self.inflight.lock().remove(&key);
        let (token, lifetime) = match result {
            Ok(t) => t,
            Err(e) => return (Err(e), "failed"),
        };
        let skew = EXPIRY_SKEW.min(lifetime / 10);
        let mut cache = self.cache.lock();
        if cache.len() >= MAX_CACHED {
            // Bounded memory: drop what has expired, then (rarely) anything to make room.
            let now = Instant::now();
            cache.retain(|_, c| c.expires > now);
            let excess = (cache.len() + 1).saturating_sub(MAX_CACHED);
            let victims: Vec<Key> = cache.keys().take(excess).copied().collect();
            for k in victims {
                cache.remove(&k);
            }
        }
        cache.insert(
            key,
            Cached {
                token: token.clone(),
                expires: Instant::now() + lifetime.saturating_sub(skew),
            },
        );
        (Ok(token), "issued")
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

    async fn endpoint(&self) -> Result<&String, String> {
        self.token_endpoint
            .get_or_try_init(|| async {
                let doc = discover_metadata(&self.http, &self.issuer).await?;
                doc["token_endpoint"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{} advertises no token_endpoint", self.issuer))
            })
            .await
    }

    async fn request(
        &self,
        grant: &Grant<'_>,
        audience: &str,
        scopes: &[String],
    ) -> Result<(String, Duration), String> {
        let endpoint = self.endpoint().await?;
        let mut form: Vec<(&str, String)> = match grant {
            Grant::Exchange(subject) => vec![
                ("grant_type", TOKEN_EXCHANGE.into()),
                ("subject_token", subject.expose().into()),
                ("subject_token_type", ACCESS_TOKEN_TYPE.into()),
                ("requested_token_type", ACCESS_TOKEN_TYPE.into()),
                ("audience", audience.into()),
            ],
            Grant::ClientCredentials => vec![
                ("grant_type", "client_credentials".into()),
                ("resource", audience.into()),
            ],
        };
        if !scopes.is_empty() {
            form.push(("scope", scopes.join(" ")));
        }
        let mut req = self.http.post(endpoint);
        match &self.auth {
            ClientAuth::SecretBasic(secret) => {
                req = req.basic_auth(&self.client_id, Some(secret));
            }
            ClientAuth::PrivateKeyJwt { .. } => {
                form.push(("client_id", self.client_id.clone()));
                form.push(("client_assertion_type", JWT_BEARER_ASSERTION.into()));
                form.push((
                    "client_assertion",
                    self.auth
                        .assertion(&self.client_id, endpoint)
                        .map_err(|e| {
                            format!(
                                "signing the client assertion for the {} failed: {e}",
                                grant.name()
                            )
                        })?,
                ));
            }
        }
        let mut trace = http::HeaderMap::new();
        telemetry::inject(&mut trace);
        let resp = req.headers(trace).form(&form).send().await.map_err(|e| {
            format!(
                "the {} at {endpoint} failed: {}",
                grant.name(),
                e.without_url()
            )
        })?;
        let status = resp.status();
        tracing::Span::current().record("http.response.status_code", i64::from(status.as_u16()));
        let body: Value = resp.json().await.unwrap_or_default();
        if !status.is_success() {
            if let Some(e) = body["error"].as_str() {
                tracing::Span::current().record("oauth.error", e);
            }
            return Err(format!(
                "the authorization server refused the {}: {} ({})",
                grant.name(),
                body["error"].as_str().unwrap_or("unknown error"),
                body["error_description"]
                    .as_str()
                    .unwrap_or("no description")
            ));
        }
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| format!("the {} response has no access_token", grant.name()))?
            .to_string();
        let lifetime = body["expires_in"]
            .as_u64()
            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
        Ok((token, lifetime))
    }
}
