//! JWT access tokens: issuer discovery, JWKS fetching and refresh, and validation.
//!
//! Keys come from each trusted issuer's JWKS (discovered through RFC 8414, then OIDC
//! discovery). An unknown `kid` triggers one refresh, rate-limited so random key ids cannot
//! hammer the authorization server; a failed fetch keeps the last good keys. Validation pins
//! the algorithms per issuer (never `none`, never HMAC), checks `iss`, `aud` (the tenant's
//! resource URL, RFC 8707), `exp`, `nbf`, `iat` with a small leeway, and optionally
//! `typ: at+jwt` (RFC 9068).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::config::IssuerConfig;
use crate::telemetry::untrusted;

/// How long a metadata or JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS or metadata document accepted.
const MAX_DOCUMENT_BYTES: usize = 256 << 10;

/// One trusted issuer and its current keys.
pub(crate) struct Issuer {
    pub(crate) issuer: String,
    algorithms: Vec<Algorithm>,
    configured_jwks: Option<String>,
    jwks_uri: ArcSwapOption<String>,
    metadata: ArcSwapOption<Value>,
    keys: ArcSwap<HashMap<String, DecodingKey>>,
    /// When keys were last fetched; also the single-flight lock for refreshes.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    min_refresh: Duration,
    pub(crate) http: reqwest::Client,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.issuer)
            .field("keys", &self.keys.load().len())
            .finish()
    }
}

impl Issuer {
    pub(crate) fn new(config: &IssuerConfig, min_refresh: Duration, http: reqwest::Client) -> Self {
        let algorithms = config
            .algorithms
            .iter()
            .filter_map(|a| Algorithm::from_str(a).ok())
            .collect();
        Self {
            issuer: config.issuer.clone(),
            algorithms,
            configured_jwks: config.jwks_uri.clone(),
            jwks_uri: ArcSwapOption::from(config.jwks_uri.clone().map(Arc::new)),
            metadata: ArcSwapOption::empty(),
            keys: ArcSwap::from_pointee(HashMap::new()),
            last_fetch: tokio::sync::Mutex::new(None),
            min_refresh,
            http,
        }
    }

    /// Whether keys have been fetched at least once.
    pub(crate) fn has_keys(&self) -> bool {
        !self.keys.load().is_empty()
    }

    /// Fetch the JWKS now (discovering its URL first if needed). On failure the previous keys
    /// stay in use.
    pub(crate) async fn refresh(&self) -> Result<usize, String> {
        let mut last = self.last_fetch.lock().await;
        self.fetch_locked(&mut last).await
    }

    async fn fetch_locked(&self, last: &mut Option<Instant>) -> Result<usize, String> {
        *last = Some(Instant::now());
        let uri = match self.jwks_uri.load_full() {
            Some(u) => u,
            None => {
                let u = Arc::new(self.discover_jwks_uri().await?);
                self.jwks_uri.store(Some(u.clone()));
                u
            }
        };
        let doc = fetch_json(&self.http, &uri).await?;
        let set: JwkSet = serde_json::from_value(doc)
            .map_err(|e| format!("JWKS at {uri} is not a JWK set: {e}"))?;
        let mut keys = HashMap::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            let id = jwk.common.key_id.clone().unwrap_or_else(|| format!("#{i}"));
            match DecodingKey::from_jwk(jwk) {
                Ok(k) => {
                    keys.insert(id, k);
                }
                Err(e) => {
                    tracing::warn!(issuer = %self.issuer, kid = %id, "ignoring a JWK the gateway cannot use: {e}")
                }
            }
        }
        if keys.is_empty() {
            return Err(format!("JWKS at {uri} holds no usable keys"));
        }
        let n = keys.len();
        self.keys.store(Arc::new(keys));
        tracing::info!(issuer = %self.issuer, keys = n, "fetched signing keys");
        Ok(n)
    }

    /// The issuer's metadata: RFC 8414 first, then OIDC discovery; its `issuer` must match
    /// exactly. Fetched once and remembered.
    pub(crate) async fn metadata(&self) -> Result<Arc<Value>, String> {
        if let Some(m) = self.metadata.load_full() {
            return Ok(m);
        }
        let doc = Arc::new(discover(&self.http, &self.issuer).await?);
        self.metadata.store(Some(doc.clone()));
        Ok(doc)
    }

    async fn discover_jwks_uri(&self) -> Result<String, String> {
        let doc = self.metadata().await?;
        doc["jwks_uri"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("the metadata of {} has no jwks_uri", self.issuer))
    }

    /// The key for `kid`, refreshing once (rate-limited) if it is unknown.
    async fn key(&self, kid: Option<&str>) -> Option<DecodingKey> {
        if let Some(k) = lookup(&self.keys.load(), kid) {
            return Some(k);
        }
        let mut last = self.last_fetch.lock().await;
        // Someone else may have refreshed while we waited.
        if let Some(k) = lookup(&self.keys.load(), kid) {
            return Some(k);
        }
        // Until keys were fetched once (e.g. the issuer started after us), retry sooner.
        let cooldown = if self.has_keys() {
            self.min_refresh
        } else {
            self.min_refresh.min(Duration::from_secs(1))
        };
        if last.is_some_and(|t| t.elapsed() < cooldown) {
            return None;
        }
        if let Err(e) = self.fetch_locked(&mut last).await {
            tracing::warn!(issuer = %self.issuer, "refreshing signing keys failed, keeping the last good ones: {e}");
        }
        lookup(&self.keys.load(), kid)
    }

    /// Where to fetch keys from (for the configuration check).
    pub(crate) fn configured_jwks(&self) -> Option<&str> {
        self.configured_jwks.as_deref()
    }
}

fn lookup(keys: &HashMap<String, DecodingKey>, kid: Option<&str>) -> Option<DecodingKey> {
    match kid {
        Some(kid) => keys.get(kid).cloned(),
        // No `kid`: only unambiguous with a single key.
        None if keys.len() == 1 => keys.values().next().cloned(),
        None => None,
    }
}

fn split_origin(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => url.split_at(after_scheme + i),
        None => (url, ""),
    }
}

pub(crate) async fn fetch_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let resp = http
        .get(url)
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: HTTP {}", resp.status()));
    }
    if resp
        .content_length()
        .is_some_and(|n| n as usize > MAX_DOCUMENT_BYTES)
    {
        return Err(format!("{url}: document too large"));
    }
    let bytes = resp.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(format!("{url}: document too large"));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("{url}: not JSON: {e}"))
}

/// An issuer's metadata: RFC 8414 first, then OIDC discovery; its `issuer` must equal
/// `issuer` exactly.
pub(crate) async fn discover(http: &reqwest::Client, issuer_id: &str) -> Result<Value, String> {
    let issuer = issuer_id.trim_end_matches('/');
    let (origin, path) = split_origin(issuer);
    let mut candidates = vec![format!(
        "{origin}/.well-known/oauth-authorization-server{path}"
    )];
    if path.is_empty() {
        candidates.push(format!("{origin}/.well-known/openid-configuration"));
    } else {
        candidates.push(format!("{origin}/.well-known/openid-configuration{path}"));
        candidates.push(format!("{issuer}/.well-known/openid-configuration"));
    }
    let mut errors = Vec::new();
    for url in candidates {
        match fetch_json(http, &url).await {
            Ok(doc) if doc["issuer"].as_str() == Some(issuer_id) => return Ok(doc),
            Ok(doc) => errors.push(format!(
                "{url}: issuer {} does not match {issuer_id}",
                doc["issuer"]
            )),
            Err(e) => errors.push(e),
        }
    }
    Err(format!(
        "cannot discover the metadata of {issuer_id}: {}",
        errors.join("; ")
    ))
}

/// Settings for validating JWTs.
#[derive(Debug, Clone)]
pub(crate) struct JwtRules {
    pub(crate) leeway: u64,
    pub(crate) require_at_jwt: bool,
}

/// A validated token's claims.
pub(crate) struct Verified {
    pub(crate) claims: Map<String, Value>,
    /// Until when the validation may be reused (never past the token's expiry).
    pub(crate) expires: u64,
    /// The issuer that vouched for the token.
    pub(crate) issuer: Arc<str>,
}

/// Validate `token` for `audience` against the trusted `issuers`. Errors are safe to show to
/// the client and to log: they never contain the token.
pub(crate) async fn validate(
    token: &str,
    audience: &str,
    issuers: &[Arc<Issuer>],
    rules: &JwtRules,
) -> Result<Verified, String> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| "the token is not a well-formed JWT".to_string())?;
    if rules.require_at_jwt {
        let typ = header
            .typ
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if typ != "at+jwt" && typ != "application/at+jwt" {
            return Err("the token's typ must be at+jwt (RFC 9068)".into());
        }
    }
    let unverified: Map<String, Value> =
        jsonwebtoken::dangerous::insecure_decode::<Map<String, Value>>(token)
            .map_err(|_| "the token's claims are not valid JSON".to_string())?
            .claims;
    let iss = unverified
        .get("iss")
        .and_then(Value::as_str)
        .ok_or("the token has no iss claim")?;
    let issuer = issuers
        .iter()
        .find(|i| i.issuer == iss)
        .ok_or_else(|| format!("issuer {} is not trusted here", untrusted(iss)))?;
    if !issuer.algorithms.contains(&header.alg) {
        return Err(format!(
            "algorithm {:?} is not accepted for {iss}",
            header.alg
        ));
    }
    let key = issuer
        .key(header.kid.as_deref())
        .await
        .ok_or_else(|| match &header.kid {
            Some(kid) => format!("no signing key {} is known for {iss}", untrusted(kid)),
            None => format!("the token names no key and {iss} has several"),
        })?;
    if key.family() != header.alg.family() {
        return Err(format!(
            "algorithm {:?} does not match the key type",
            header.alg
        ));
    }
    let mut v = Validation::new(header.alg);
    // Already checked against the issuer's allow-list; jsonwebtoken wants one key family here.
    v.algorithms = vec![header.alg];
    v.leeway = rules.leeway;
    v.validate_nbf = true;
    v.set_issuer(&[iss]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v).map_err(|e| match e
        .kind()
    {
        ErrorKind::ExpiredSignature => "the token has expired".to_string(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".to_string(),
        ErrorKind::InvalidAudience => {
            "the token was not issued for this resource (aud)".to_string()
        }
        ErrorKind::InvalidIssuer => "the token's issuer does not match".to_string(),
        ErrorKind::InvalidSignature => "the token's signature does not verify".to_string(),
        ErrorKind::MissingRequiredClaim(c) => format!("the token has no {c} claim"),
        ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted".to_string(),
        other => format!("the token is invalid ({other:?})"),
    })?;
    let now = jsonwebtoken::get_current_timestamp();
    if let Some(iat) = data.claims.get("iat").and_then(Value::as_u64)
        && iat > now + rules.leeway
    {
        return Err("the token was issued in the future (iat)".into());
    }
    let expires = data
        .claims
        .get("exp")
        .and_then(Value::as_u64)
        .unwrap_or(now);
    Ok(Verified {
        claims: data.claims,
        expires,
        issuer: Arc::from(issuer.issuer.as_str()),
    })
}

#[cfg(test)]
mod tests {
    use super::split_origin;

    #[test]
    fn issuer_origin_and_path() {
        assert_eq!(
            split_origin("https://as.example"),
            ("https://as.example", "")
        );
        assert_eq!(
            split_origin("https://as.example/tenant1"),
            ("https://as.example", "/tenant1")
        );
        assert_eq!(
            split_origin("http://127.0.0.1:9000/realms/a"),
            ("http://127.0.0.1:9000", "/realms/a")
        );
    }
}
