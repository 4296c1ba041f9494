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
use crate::oauth::{DiscoveryError, FetchError, discover, fetch_json};
use crate::telemetry::untrusted;

/// Why an issuer's signing keys could not be fetched (the last good keys stay in use).
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeysError {
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("the metadata of {0} has no jwks_uri")]
    NoJwksUri(String),
    #[error("JWKS at {uri} is not a JWK set: {source}")]
    NotJwks {
        uri: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("JWKS at {0} holds no usable keys")]
    NoUsableKeys(String),
}

/// Why a JWT was not accepted. Safe to show to the client and to log: never the token.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JwtError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's typ must be at+jwt (RFC 9068)")]
    NotAccessTokenType,
    #[error("the token's claims are not valid JSON")]
    ClaimsNotJson,
    #[error("the token has no iss claim")]
    NoIssuer,
    #[error("issuer {} is not trusted here", untrusted(.0))]
    UntrustedIssuer(String),
    #[error("algorithm {alg:?} is not accepted for {issuer}")]
    AlgorithmNotAccepted { alg: Algorithm, issuer: String },
    #[error("no signing key {} is known for {issuer}", untrusted(.kid))]
    UnknownKey { kid: String, issuer: String },
    #[error("the token names no key and {0} has several")]
    AmbiguousKey(String),
    #[error("algorithm {0:?} does not match the key type")]
    KeyTypeMismatch(Algorithm),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token was not issued for this resource (aud)")]
    WrongAudience,
    #[error("the token's issuer does not match")]
    IssuerMismatch,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has no {0} claim")]
    MissingClaim(String),
    #[error("the token's algorithm is not accepted")]
    AlgorithmRejected,
    #[error("the token is invalid ({0})")]
    Invalid(String),
    #[error("the token was issued in the future (iat)")]
    IssuedInFuture,
    #[error("{0}")]
    TooLongLived(String),
}

impl From<jsonwebtoken::errors::Error> for JwtError {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        match e.kind() {
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::InvalidAudience => Self::WrongAudience,
            ErrorKind::InvalidIssuer => Self::IssuerMismatch,
            ErrorKind::InvalidSignature => Self::BadSignature,
            ErrorKind::MissingRequiredClaim(c) => Self::MissingClaim(c.clone()),
            ErrorKind::InvalidAlgorithm => Self::AlgorithmRejected,
            other => Self::Invalid(format!("{other:?}")),
        }
    }
}

/// One trusted issuer and its current keys.
pub(crate) struct Issuer {
    pub(crate) issuer: String,
    /// The claim naming the user (`sub` unless configured).
    subject_claim: String,
    /// The longest lifetime a token may have, in seconds.
    max_lifetime: Option<u64>,
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
            subject_claim: config.subject_claim.clone(),
            max_lifetime: config.max_token_lifetime_secs,
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

    /// The user `claims` name by this issuer's subject claim; `Err` (the claim's name) when
    /// a configured claim other than `sub` is missing: such a token is refused rather than
    /// taken as no one's (or as its client's).
    pub(crate) fn subject_of(&self, claims: &Map<String, Value>) -> Result<Option<String>, String> {
        match claims.get(&self.subject_claim).and_then(Value::as_str) {
            Some(s) => Ok(Some(s.to_string())),
            None if self.subject_claim == "sub" => Ok(None),
            None => Err(self.subject_claim.clone()),
        }
    }

    /// Refuse a token living longer than `max_token_lifetime_secs` (`exp` − `iat`, or what is
    /// left of it at `now` without an `iat`).
    pub(crate) fn check_lifetime(
        &self,
        claims: &Map<String, Value>,
        now: u64,
    ) -> Result<(), String> {
        let (Some(max), Some(exp)) = (self.max_lifetime, claims.get("exp").and_then(Value::as_u64))
        else {
            return Ok(());
        };
        let from = claims.get("iat").and_then(Value::as_u64).unwrap_or(now);
        let lifetime = exp.saturating_sub(from);
        if lifetime > max {
            return Err(format!(
                "the token lives {lifetime} s; tokens from this issuer may live at most {max} s"
            ));
        }
        Ok(())
    }

    /// Whether keys have been fetched at least once.
    pub(crate) fn has_keys(&self) -> bool {
        !self.keys.load().is_empty()
    }

    /// Fetch the JWKS now (discovering its URL first if needed). On failure the previous keys
    /// stay in use.
    pub(crate) async fn refresh(&self) -> Result<usize, KeysError> {
        let mut last = self.last_fetch.lock().await;
        self.fetch_locked(&mut last).await
    }

    async fn fetch_locked(&self, last: &mut Option<Instant>) -> Result<usize, KeysError> {
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
        let set: JwkSet = serde_json::from_value(doc).map_err(|source| KeysError::NotJwks {
            uri: uri.to_string(),
            source,
        })?;
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
            return Err(KeysError::NoUsableKeys(uri.to_string()));
        }
        let n = keys.len();
        self.keys.store(Arc::new(keys));
        tracing::info!(issuer = %self.issuer, keys = n, "fetched signing keys");
        Ok(n)
    }

    /// The issuer's metadata: RFC 8414 first, then OIDC discovery; its `issuer` must match
    /// exactly. Fetched once and remembered.
    pub(crate) async fn metadata(&self) -> Result<Arc<Value>, DiscoveryError> {
        if let Some(m) = self.metadata.load_full() {
            return Ok(m);
        }
        let doc = Arc::new(discover(&self.http, &self.issuer).await?);
        self.metadata.store(Some(doc.clone()));
        Ok(doc)
    }

    async fn discover_jwks_uri(&self) -> Result<String, KeysError> {
        let doc = self.metadata().await?;
        doc["jwks_uri"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| KeysError::NoJwksUri(self.issuer.clone()))
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
    /// The user it names, by the issuer's subject claim.
    pub(crate) subject: Option<String>,
}

/// What one tenant accepts as a token's `aud`: its resource URL, and per issuer the
/// audiences configured for it (`[[tenant]] audiences`, for identity providers that do not
/// put the resource there).
#[derive(Debug, Clone)]
pub(crate) struct Audiences {
    /// The tenant's resource URL (accepted from every issuer; unique to the tenant).
    pub(crate) resource: String,
    extra: std::collections::HashMap<String, Vec<String>>,
}

impl Audiences {
    pub(crate) fn new(
        resource: String,
        extra: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> Self {
        Self {
            resource,
            extra: extra.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }

    /// Every `aud` value a token from `issuer` may carry here.
    pub(crate) fn for_issuer(&self, issuer: &str) -> Vec<&str> {
        let mut all = vec![self.resource.as_str()];
        all.extend(
            self.extra
                .get(issuer)
                .into_iter()
                .flatten()
                .map(String::as_str),
        );
        all
    }
}

/// Validate `token` for the tenant's `audiences` against the trusted `issuers`. Errors are
/// safe to show to the client and to log: they never contain the token.
pub(crate) async fn validate(
    token: &str,
    audiences: &Audiences,
    issuers: &[Arc<Issuer>],
    rules: &JwtRules,
) -> Result<Verified, JwtError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
    if rules.require_at_jwt {
        let typ = header
            .typ
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if typ != "at+jwt" && typ != "application/at+jwt" {
            return Err(JwtError::NotAccessTokenType);
        }
    }
    let unverified: Map<String, Value> =
        jsonwebtoken::dangerous::insecure_decode::<Map<String, Value>>(token)
            .map_err(|_| JwtError::ClaimsNotJson)?
            .claims;
    let iss = unverified
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(JwtError::NoIssuer)?;
    let issuer = issuers
        .iter()
        .find(|i| i.issuer == iss)
        .ok_or_else(|| JwtError::UntrustedIssuer(iss.to_string()))?;
    let key = issuer.key_for(&header).await?;
    let mut v = Validation::new(header.alg);
    // Already checked against the issuer's allow-list; jsonwebtoken wants one key family here.
    v.algorithms = vec![header.alg];
    v.leeway = rules.leeway;
    v.validate_nbf = true;
    v.set_issuer(&[iss]);
    v.set_audience(&audiences.for_issuer(&issuer.issuer));
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)?;
    let now = jsonwebtoken::get_current_timestamp();
    if let Some(iat) = data.claims.get("iat").and_then(Value::as_u64)
        && iat > now + rules.leeway
    {
        return Err(JwtError::IssuedInFuture);
    }
    let expires = data
        .claims
        .get("exp")
        .and_then(Value::as_u64)
        .unwrap_or(now);
    issuer
        .check_lifetime(&data.claims, now)
        .map_err(JwtError::TooLongLived)?;
    let subject = issuer
        .subject_of(&data.claims)
        .map_err(JwtError::MissingClaim)?;
    Ok(Verified {
        claims: data.claims,
        expires,
        issuer: Arc::from(issuer.issuer.as_str()),
        subject,
    })
}

impl Issuer {
    /// The key that must have signed a token with `header`: an algorithm this issuer accepts,
    /// a key it publishes, of the algorithm's family.
    async fn key_for(&self, header: &jsonwebtoken::Header) -> Result<DecodingKey, JwtError> {
        let issuer = &self.issuer;
        if !self.algorithms.contains(&header.alg) {
            return Err(JwtError::AlgorithmNotAccepted {
                alg: header.alg,
                issuer: issuer.clone(),
            });
        }
        let key = self
            .key(header.kid.as_deref())
            .await
            .ok_or_else(|| match &header.kid {
                Some(kid) => JwtError::UnknownKey {
                    kid: kid.clone(),
                    issuer: issuer.clone(),
                },
                None => JwtError::AmbiguousKey(issuer.clone()),
            })?;
        if key.family() != header.alg.family() {
            return Err(JwtError::KeyTypeMismatch(header.alg));
        }
        Ok(key)
    }
}
