//! The gateway as an OAuth client of the authorization server, for downstream credentials.
//!
//! Owns how the gateway authenticates at the token endpoint (`client_secret_basic`,
//! `client_secret_post` or `private_key_jwt`), the grants it performs — with the caller's
//! token (kept by the host as a [`SecretToken`], never shown to plugins): RFC 8693 token
//! exchange, the RFC 7523 assertion grant and Entra ID's on-behalf-of request, each for a
//! token whose audience is the service; and `client_credentials` for services called as the
//! gateway itself — how a request names its target (`resource`, `audience`, or only its
//! scopes), the refusals that ask for the user (a step-up, never cached), and the cache of
//! the tokens it obtained.
//!
//! There is one client per issuer ([`OAuthClients`]), and a caller's token is exchanged
//! only at the issuer that issued it. Tokens are cached per (tenant, issuer and client,
//! grant, audience, sorted scopes, hash of the subject token) until shortly before they
//! expire, so two tenants — or two services of different audiences — never share one;
//! concurrent identical requests wait for one; a service that answers 401 makes the caller
//! evict the entry and retry once. Neither tokens, assertions nor secrets are logged or
//! returned in an error.
//!
//! With several replicas the cache is shared too ([`SharedTokens`], which `cluster` keeps
//! encrypted on Redis): a replica that misses locally takes the token another replica
//! obtained, and only one replica at a time asks the authorization server for a key. While
//! the shared cache is unreachable each replica obtains its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::auth::SecretToken;
use crate::config::{ClientAuthMethod, Config, ExchangeConfig, TargetParameter};
use crate::oauth::{
    ACCESS_TOKEN_TYPE, DiscoveryError, JWT_BEARER_ASSERTION, JWT_BEARER_GRANT, MAX_DOCUMENT_BYTES,
    TOKEN_EXCHANGE, discover, read_bounded,
};
use crate::sandbox::BoxFuture;
use crate::telemetry::{self, keys};

/// Cached tokens are dropped this long before they expire (or a tenth of their lifetime, if
/// shorter).
const EXPIRY_SKEW: Duration = Duration::from_secs(30);
/// How long a token request may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Most tokens kept; beyond it expired entries are dropped first.
const MAX_CACHED: usize = 10_000;
/// How long a failed token request is not retried (for the same key).
const FAILURE_MEMORY: Duration = Duration::from_secs(2);
/// Lifetime assumed when the token response has no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

/// Why the gateway could not obtain a token. Never contains a token or a client secret.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token endpoint could not be discovered.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The issuer's metadata names no token endpoint.
    #[error("{0} advertises no token_endpoint")]
    NoTokenEndpoint(String),
    /// The `private_key_jwt` assertion could not be signed.
    #[error("signing the client assertion for the {grant} failed: {source}")]
    Assertion {
        grant: &'static str,
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    /// The token endpoint did not answer.
    #[error("the {grant} at {endpoint} failed: {source}")]
    Transport {
        grant: &'static str,
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    /// The authorization server refused the request (its `error` and `error_description`).
    #[error("the authorization server refused the {grant}: {error} ({description})")]
    Refused {
        grant: &'static str,
        error: String,
        description: String,
    },
    /// The authorization server needs more from the user before it issues this token
    /// (`interaction_required`, `consent_required`, `login_required`,
    /// `insufficient_claims`, `invalid_scope`): a step-up for the caller, never cached.
    #[error("the authorization server needs the user to {}: {error} ({description})", self.need())]
    StepUp {
        grant: &'static str,
        /// The OAuth error code.
        error: String,
        description: String,
        /// A claims challenge the AS returned (Entra ID's `claims`), for the client to pass
        /// when it signs in again.
        claims: Option<String>,
    },
    /// A success answer without an access token.
    #[error("the {0} response has no access_token")]
    NoAccessToken(&'static str),
    /// The same request failed moments ago (not retried yet).
    #[error("{0} (failed moments ago; not retried yet)")]
    RecentFailure(String),
}

/// OAuth errors by which an authorization server asks for the user rather than refusing
/// the client.
const STEP_UP_ERRORS: &[&str] = &[
    "interaction_required",
    "consent_required",
    "login_required",
    "insufficient_claims",
    "invalid_scope",
];

impl TokenError {
    /// What the user has to do, for a [`TokenError::StepUp`].
    fn need(&self) -> &'static str {
        match self {
            Self::StepUp { error, .. } if error == "consent_required" => "consent",
            Self::StepUp { error, .. } if error == "invalid_scope" => "grant other scopes",
            _ => "sign in again",
        }
    }
}

/// A cache key: a digest of everything the token depends on (no secret can be read back).
pub type Key = [u8; 32];

/// The shared token cache could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("the shared token cache is unreachable: {0}")]
pub struct SharedDown(pub String);

/// A token cache every replica shares. Implementations keep tokens encrypted.
pub trait SharedTokens: Send + Sync {
    /// The token under `key`, with how long it stays usable.
    #[allow(clippy::type_complexity, reason = "a boxed future of an optional pair")]
    fn get<'a>(
        &'a self,
        key: &'a Key,
    ) -> BoxFuture<'a, Result<Option<(String, Duration)>, SharedDown>>;
    /// Keep `token` under `key` for `usable` (and let the replicas waiting for it go on).
    fn put<'a>(
        &'a self,
        key: &'a Key,
        token: &'a str,
        usable: Duration,
    ) -> BoxFuture<'a, Result<(), SharedDown>>;
    /// Drop the token under `key` (a service refused it).
    fn evict<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, ()>;
    /// Become, for up to `hold`, the one replica obtaining the token for `key`: `false` when
    /// another replica is at it.
    fn claim<'a>(&'a self, key: &'a Key, hold: Duration)
    -> BoxFuture<'a, Result<bool, SharedDown>>;
    /// Give up the claim on `key` (the token was stored, or could not be obtained).
    fn unclaim<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, ()>;
}

/// How often a replica waiting for another's token looks again.
const SHARED_POLL: Duration = Duration::from_millis(25);

/// How the gateway proves its identity at the token endpoint.
pub(crate) enum ClientAuth {
    /// RFC 6749 §2.3.1 HTTP Basic with a shared secret. Never printed: no `Debug`.
    SecretBasic(String),
    /// RFC 6749 §2.3.1 the shared secret in the request body. Never printed: no `Debug`.
    SecretPost(String),
    /// RFC 7523 §2.2: a short-lived JWT signed with the gateway's private key.
    PrivateKeyJwt {
        key: EncodingKey,
        alg: Algorithm,
        kid: Option<String>,
        /// The certificate's SHA-256 thumbprint (base64url), for `x5t#S256`.
        x5t_s256: Option<String>,
    },
}

/// The base64url SHA-256 thumbprint of the first certificate in `pem` (its DER bytes).
fn thumbprint(pem: &str) -> Result<String, String> {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END CERTIFICATE-----"))
        .collect();
    if body.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|e| format!("the certificate is not base64: {e}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(&der)))
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
        let auth = Self::PrivateKeyJwt {
            key,
            alg,
            kid,
            x5t_s256: None,
        };
        // Fail at start, not at the first exchange, if the key cannot sign with `alg`.
        auth.assertion("probe", "https://probe.invalid/token")
            .map_err(|e| format!("the key cannot sign {alg:?}: {e}"))?;
        Ok(auth)
    }

    /// A client assertion for `audience` (a secret-basic client has none: `Ok(None)`).
    fn assertion(
        &self,
        client_id: &str,
        audience: &str,
    ) -> Result<Option<String>, jsonwebtoken::errors::Error> {
        let Self::PrivateKeyJwt {
            key,
            alg,
            kid,
            x5t_s256,
        } = self
        else {
            return Ok(None);
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut header = Header::new(*alg);
        header.kid = kid.clone();
        header.x5t_s256 = x5t_s256.clone();
        let mut jti = [0u8; 16];
        rand::fill(&mut jti);
        let claims = json!({
            "iss": client_id, "sub": client_id, "aud": audience,
            "iat": now, "exp": now + 60, "jti": hex::encode(jti),
        });
        jsonwebtoken::encode(&header, &claims, key).map(Some)
    }
}

/// Which grant obtains a service's token.
pub enum Grant<'a> {
    /// RFC 8693: act for the caller whose token this is.
    Exchange(&'a SecretToken),
    /// RFC 7523 §2.1: the caller's token as the assertion.
    JwtBearer(&'a SecretToken),
    /// Entra ID's on-behalf-of: the RFC 7523 grant with `requested_token_use=on_behalf_of`.
    OnBehalfOf(&'a SecretToken),
    /// `client_credentials`: the gateway calls as itself.
    ClientCredentials,
}

impl Grant<'_> {
    /// The grant as a fixed word for spans and metrics.
    fn kind(&self) -> &'static str {
        match self {
            Grant::Exchange(_) => "token_exchange",
            Grant::JwtBearer(_) => "jwt_bearer",
            Grant::OnBehalfOf(_) => "on_behalf_of",
            Grant::ClientCredentials => "client_credentials",
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Grant::Exchange(_) => "token exchange",
            Grant::JwtBearer(_) => "JWT bearer grant",
            Grant::OnBehalfOf(_) => "on-behalf-of request",
            Grant::ClientCredentials => "client credentials grant",
        }
    }

    /// The caller's token the grant presents, if it acts for a caller.
    fn subject(&self) -> Option<&SecretToken> {
        match self {
            Grant::Exchange(t) | Grant::JwtBearer(t) | Grant::OnBehalfOf(t) => Some(t),
            Grant::ClientCredentials => None,
        }
    }

    /// How the grant names its target unless the issuer says otherwise.
    fn default_targets(&self) -> &'static [TargetParameter] {
        match self {
            Grant::Exchange(_) => &[TargetParameter::Audience],
            Grant::JwtBearer(_) | Grant::ClientCredentials => &[TargetParameter::Resource],
            // Entra refuses `resource` (AADSTS901002): the target is in the scopes.
            Grant::OnBehalfOf(_) => &[],
        }
    }

    /// The grant's own parameters.
    fn form(&self) -> Vec<(&'static str, String)> {
        match self {
            Grant::Exchange(subject) => vec![
                ("grant_type", TOKEN_EXCHANGE.into()),
                ("subject_token", subject.expose().into()),
                ("subject_token_type", ACCESS_TOKEN_TYPE.into()),
                ("requested_token_type", ACCESS_TOKEN_TYPE.into()),
            ],
            Grant::JwtBearer(subject) => vec![
                ("grant_type", JWT_BEARER_GRANT.into()),
                ("assertion", subject.expose().into()),
            ],
            Grant::OnBehalfOf(subject) => vec![
                ("grant_type", JWT_BEARER_GRANT.into()),
                ("assertion", subject.expose().into()),
                ("requested_token_use", "on_behalf_of".into()),
            ],
            Grant::ClientCredentials => vec![("grant_type", "client_credentials".into())],
        }
    }
}

struct Cached {
    token: String,
    expires: Instant,
}

/// What a token endpoint issued. Never printed: no `Debug`.
pub(crate) struct Issued {
    pub(crate) access_token: String,
    pub(crate) refresh_token: Option<String>,
    pub(crate) lifetime: Duration,
    /// Whether the server said how long it lives (`expires_in`): a provider's token that
    /// does not say lives until refused.
    pub(crate) says_lifetime: bool,
    pub(crate) scope: Option<String>,
    pub(crate) id_token: Option<String>,
}

/// One token request: for whom, for what, and how.
pub struct TokenRequest<'a> {
    /// The tenant the call belongs to (part of the cache key: tenants never share tokens).
    pub tenant: &'a str,
    /// The service, for spans and metrics.
    pub service: &'a str,
    /// The audience (resource) the token is for.
    pub audience: &'a str,
    /// Scopes to ask for (none: the AS decides).
    pub scopes: &'a [String],
    /// How to obtain it.
    pub grant: Grant<'a>,
}

impl<'a> TokenRequest<'a> {
    /// The request for `service`'s token at `tenant`: its audience and scopes, by `grant`.
    pub(crate) fn for_service(
        tenant: &'a str,
        service: &'a crate::config::ServiceConfig,
        grant: Grant<'a>,
    ) -> Self {
        Self {
            tenant,
            service: &service.name,
            audience: service.audience.as_deref().unwrap_or_default(),
            scopes: &service.scopes,
            grant,
        }
    }
}

/// Obtains service tokens at one issuer, as one client, and caches them until shortly before
/// they expire (keyed by tenant, this issuer and client, grant, audience, sorted scopes and
/// a hash of the grant's subject token).
pub struct OAuthClient {
    issuer: String,
    client_id: String,
    auth: ClientAuth,
    /// How requests name their target here (`None`: each grant's default).
    targets: Option<Vec<TargetParameter>>,
    http: reqwest::Client,
    token_endpoint: OnceCell<String>,
    cache: Mutex<HashMap<Key, Cached>>,
    inflight: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    /// Requests that failed recently, with why: not retried until then (while the
    /// authorization server is down, concurrent callers do not queue up to retry it).
    failed: Mutex<HashMap<Key, (Instant, String)>>,
    /// With several replicas: the cache they share.
    shared: Option<Arc<dyn SharedTokens>>,
    /// Whether the shared cache was unreachable last time (logged on change).
    shared_down: std::sync::atomic::AtomicBool,
}

/// What the shared cache said about a key.
enum FromShared {
    /// Another replica's token, usable for this long.
    Token(String, Duration),
    /// This replica holds the claim: it obtains the token (and stores it).
    Claimed,
    /// The shared cache is unreachable, or the wait for another replica ran out: obtain
    /// the token here, without storing it there.
    Alone,
}

/// The in-flight entry of one key while a request for it runs: removed when the request ends,
/// also when its caller is cancelled mid-request.
struct Turn<'a> {
    inflight: &'a Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    key: Key,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.inflight.lock().remove(&self.key);
    }
}

impl OAuthClient {
    pub(crate) fn new(issuer: String, client_id: String, auth: ClientAuth) -> anyhow::Result<Self> {
        Ok(Self {
            issuer,
            client_id,
            auth,
            targets: None,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(TIMEOUT)
                .build()?,
            token_endpoint: OnceCell::new(),
            cache: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            shared: None,
            shared_down: Default::default(),
        })
    }

    /// This client, sharing its cache through `shared`.
    fn sharing(mut self, shared: Option<Arc<dyn SharedTokens>>) -> Self {
        self.shared = shared;
        self
    }

    fn key(&self, r: &TokenRequest<'_>) -> Key {
        let mut h = Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        field(r.tenant.as_bytes());
        field(self.issuer.as_bytes());
        field(self.client_id.as_bytes());
        field(r.grant.kind().as_bytes());
        if let Some(subject) = r.grant.subject() {
            field(subject.expose().as_bytes());
        }
        field(r.audience.as_bytes());
        let mut scopes: Vec<&str> = r.scopes.iter().map(String::as_str).collect();
        scopes.sort_unstable();
        scopes.dedup();
        for s in scopes {
            field(s.as_bytes());
        }
        h.finalize().into()
    }

    /// Forget the token for this request (the service refused it), here and in the shared
    /// cache.
    pub(crate) async fn evict(&self, request: &TokenRequest<'_>) {
        let key = self.key(request);
        self.cache.lock().remove(&key);
        if let Some(shared) = &self.shared {
            shared.evict(&key).await;
        }
    }

    /// The issuer this client obtains tokens at.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// What keeps this client from performing the grant `grant` (its URN, or
    /// `client_credentials`), as the issuer's metadata says: unreadable metadata, no token
    /// endpoint, a grant or a client authentication method it does not list. `None`: nothing
    /// (also when the metadata lists neither, as Entra ID's does not).
    /// `known`: the metadata, when this process serves the issuer itself (the development AS).
    pub(crate) async fn missing(&self, grant: &str, known: Option<&Value>) -> Option<String> {
        let issuer = &self.issuer;
        let doc = match known {
            Some(doc) => doc.clone(),
            None => match discover(&self.http, issuer).await {
                Ok(doc) => doc,
                Err(e) => return Some(format!("cannot read {issuer}'s metadata: {e}")),
            },
        };
        let listed = |key: &str, value: &str| {
            doc[key]
                .as_array()
                .is_none_or(|a| a.iter().any(|v| v == value))
        };
        let method = match self.auth {
            ClientAuth::SecretBasic(_) => "client_secret_basic",
            ClientAuth::SecretPost(_) => "client_secret_post",
            ClientAuth::PrivateKeyJwt { .. } => "private_key_jwt",
        };
        if doc["token_endpoint"].as_str().is_none() {
            Some(format!("{issuer} advertises no token_endpoint"))
        } else if !listed("grant_types_supported", grant) {
            Some(format!(
                "{issuer} does not list the grant {grant} in grant_types_supported"
            ))
        } else if !listed("token_endpoint_auth_methods_supported", method) {
            Some(format!(
                "{issuer} does not list {method} in token_endpoint_auth_methods_supported (the gateway's auth_method)"
            ))
        } else {
            None
        }
    }

    /// The client an exchange section describes, for `issuer`; fails on a missing secret or
    /// a bad key. `at` names the section in errors.
    fn from_section(
        config: &Config,
        at: &str,
        issuer: String,
        x: &ExchangeConfig,
    ) -> anyhow::Result<Self> {
        let file = config.source.display();
        let secret = || {
            let var = x.client_secret_env.as_deref().unwrap_or_default();
            crate::config::secret_from_env(var)
                .map_err(|e| anyhow::anyhow!("{file}: {at}.client_secret_env: {e}"))
        };
        let auth = match x.auth_method {
            ClientAuthMethod::ClientSecretBasic => ClientAuth::SecretBasic(secret()?),
            ClientAuthMethod::ClientSecretPost => ClientAuth::SecretPost(secret()?),
            ClientAuthMethod::PrivateKeyJwt => {
                let path = config.resolve_path(
                    x.private_key_file
                        .as_deref()
                        .unwrap_or(std::path::Path::new("")),
                );
                let pem = std::fs::read(&path).map_err(|e| {
                    anyhow::anyhow!(
                        "{file}: {at}.private_key_file: cannot read {}: {e}",
                        path.display()
                    )
                })?;
                let mut auth =
                    ClientAuth::private_key_jwt(&pem, &x.private_key_alg, x.key_id.clone())
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "{file}: {at}.private_key_file: {}: {e}",
                                path.display()
                            )
                        })?;
                if let (Some(cert), ClientAuth::PrivateKeyJwt { x5t_s256, .. }) =
                    (&x.certificate_file, &mut auth)
                {
                    let path = config.resolve_path(cert);
                    let pem = std::fs::read_to_string(&path)
                        .map_err(|e| e.to_string())
                        .and_then(|pem| thumbprint(&pem))
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "{file}: {at}.certificate_file: {}: {e}",
                                path.display()
                            )
                        })?;
                    *x5t_s256 = Some(pem);
                }
                auth
            }
        };
        let mut client = Self::new(issuer, x.client_id.clone(), auth)?;
        client.targets = x.target_parameters.clone();
        Ok(client)
    }

    /// A token for the request (or cached), inside an `oauth.token` span and counted by
    /// tenant and outcome (cache hit, shared with a concurrent request, issued, failed).
    pub async fn token(&self, request: &TokenRequest<'_>) -> Result<String, TokenError> {
        self.token_from(request).await.map(|(token, _)| token)
    }

    /// [`OAuthClient::token`], and where it came from: `hit` (this replica's cache), `shared`
    /// (a concurrent request obtained it), `replica` (another replica's), `issued`.
    pub async fn token_from(
        &self,
        request: &TokenRequest<'_>,
    ) -> Result<(String, &'static str), TokenError> {
        use tracing::Instrument as _;
        let grant = &request.grant;
        let span = telemetry::token_span(grant.kind(), request.service, request.audience);
        let (result, outcome) = self.obtain(request).instrument(span.clone()).await;
        span.record("portcullis.cache", outcome);
        if result.is_err() {
            telemetry::fail(&span, outcome);
        }
        telemetry::metrics::get().tokens.add(
            1,
            &telemetry::metrics::attrs(
                request.tenant,
                &[
                    (keys::SERVICE, request.service),
                    ("oauth.grant_type", grant.kind()),
                    (keys::OUTCOME, outcome),
                ],
            ),
        );
        result.map(|token| (token, outcome))
    }

    async fn obtain(
        &self,
        request: &TokenRequest<'_>,
    ) -> (Result<String, TokenError>, &'static str) {
        let key = self.key(request);
        if let Some(t) = self.cached(&key) {
            return (Ok(t), "hit");
        }
        // One request per key at a time: later callers wait and then find it cached.
        let gate = self.inflight.lock().entry(key).or_default().clone();
        let _lock = gate.lock().await;
        let turn = Turn {
            inflight: &self.inflight,
            key,
        };
        if let Some(t) = self.cached(&key) {
            return (Ok(t), "shared");
        }
        if let Some(why) = self.recently_failed(&key) {
            return (Err(TokenError::RecentFailure(why)), "failed");
        }
        let claimed = match self.ask_shared(&key).await {
            FromShared::Token(token, usable) => {
                self.keep(key, &token, usable);
                return (Ok(token), "replica");
            }
            FromShared::Claimed => true,
            FromShared::Alone => false,
        };
        let result = self
            .request(&request.grant, request.audience, request.scopes)
            .await;
        drop(turn);
        let (token, lifetime) = match result {
            Ok(t) => t,
            Err(e) => {
                // A step-up waits for the user, not for the server: not remembered.
                if !matches!(e, TokenError::StepUp { .. }) {
                    self.remember_failure(key, &e);
                }
                if claimed && let Some(shared) = &self.shared {
                    shared.unclaim(&key).await;
                }
                return (Err(e), "failed");
            }
        };
        let usable = lifetime.saturating_sub(EXPIRY_SKEW.min(lifetime / 10));
        self.keep(key, &token, usable);
        if claimed && let Some(shared) = &self.shared {
            if let Err(e) = shared.put(&key, &token, usable).await {
                self.shared_state(Err(&e));
            }
            shared.unclaim(&key).await;
        }
        (Ok(token), "issued")
    }

    /// Ask the shared cache for `key`: another replica's token, or the claim to obtain it
    /// (waiting, up to one token request's timeout, while another replica holds the claim).
    async fn ask_shared(&self, key: &Key) -> FromShared {
        let Some(shared) = &self.shared else {
            return FromShared::Alone;
        };
        let deadline = Instant::now() + TIMEOUT;
        let asked = async {
            loop {
                if let Some((token, usable)) = shared.get(key).await? {
                    return Ok(FromShared::Token(token, usable));
                }
                if shared.claim(key, TIMEOUT).await? {
                    // Stored just before the claim was free: no second request.
                    if let Some((token, usable)) = shared.get(key).await? {
                        shared.unclaim(key).await;
                        return Ok(FromShared::Token(token, usable));
                    }
                    return Ok(FromShared::Claimed);
                }
                if Instant::now() >= deadline {
                    return Ok(FromShared::Alone);
                }
                tokio::time::sleep(SHARED_POLL).await;
            }
        };
        let outcome = asked.await;
        self.shared_state(outcome.as_ref().map(|_| ()));
        outcome.unwrap_or(FromShared::Alone)
    }

    /// Log when the shared cache becomes unreachable, or reachable again.
    fn shared_state(&self, state: Result<(), &SharedDown>) {
        use std::sync::atomic::Ordering::Relaxed;
        match state {
            Ok(()) => {
                if self.shared_down.swap(false, Relaxed) {
                    tracing::info!(issuer = %self.issuer, "the shared token cache is back");
                }
            }
            Err(e) => {
                if !self.shared_down.swap(true, Relaxed) {
                    tracing::warn!(issuer = %self.issuer,
                        "each replica obtains its own tokens while the shared cache is away: {e}");
                }
            }
        }
    }

    /// Cache `token` here under `key` for `usable`.
    fn keep(&self, key: Key, token: &str, usable: Duration) {
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
                token: token.to_string(),
                expires: Instant::now()
                    .checked_add(usable)
                    .unwrap_or_else(Instant::now),
            },
        );
    }

    /// Why the request for `key` failed, if it did within the last [`FAILURE_MEMORY`].
    fn recently_failed(&self, key: &Key) -> Option<String> {
        let failed = self.failed.lock();
        let (at, why) = failed.get(key)?;
        (at.elapsed() < FAILURE_MEMORY).then(|| why.clone())
    }

    fn remember_failure(&self, key: Key, e: &TokenError) {
        let mut failed = self.failed.lock();
        failed.retain(|_, (at, _)| at.elapsed() < FAILURE_MEMORY);
        if failed.len() < MAX_CACHED {
            failed.insert(key, (Instant::now(), e.to_string()));
        }
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

    async fn endpoint(&self) -> Result<&String, TokenError> {
        self.token_endpoint
            .get_or_try_init(|| async {
                let doc = discover(&self.http, &self.issuer).await?;
                doc["token_endpoint"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| TokenError::NoTokenEndpoint(self.issuer.clone()))
            })
            .await
    }

    async fn request(
        &self,
        grant: &Grant<'_>,
        audience: &str,
        scopes: &[String],
    ) -> Result<(String, Duration), TokenError> {
        let mut form = grant.form();
        let targets = self.targets.as_deref().unwrap_or(grant.default_targets());
        for target in targets.iter().filter(|_| !audience.is_empty()) {
            let name = match target {
                TargetParameter::Resource => "resource",
                TargetParameter::Audience => "audience",
            };
            form.push((name, audience.into()));
        }
        if !scopes.is_empty() {
            form.push(("scope", scopes.join(" ")));
        }
        let secret = grant.subject().map(SecretToken::expose);
        let issued = self.send(grant.name(), form, secret).await?;
        Ok((issued.access_token, issued.lifetime))
    }

    /// One token request with this client's authentication: `form` (the grant's parameters)
    /// to the token endpoint; `secret`: what an error text must never repeat.
    pub(crate) async fn send(
        &self,
        grant: &'static str,
        mut form: Vec<(&'static str, String)>,
        secret: Option<&str>,
    ) -> Result<Issued, TokenError> {
        let endpoint = self.endpoint().await?;
        let mut req = self.http.post(endpoint);
        match &self.auth {
            ClientAuth::SecretBasic(secret) => {
                req = req.basic_auth(&self.client_id, Some(secret));
            }
            ClientAuth::SecretPost(secret) => {
                form.push(("client_id", self.client_id.clone()));
                form.push(("client_secret", secret.clone()));
            }
            ClientAuth::PrivateKeyJwt { .. } => {
                let assertion = self
                    .auth
                    .assertion(&self.client_id, endpoint)
                    .map_err(|source| TokenError::Assertion { grant, source })?
                    .unwrap_or_default();
                form.push(("client_id", self.client_id.clone()));
                form.push(("client_assertion_type", JWT_BEARER_ASSERTION.into()));
                form.push(("client_assertion", assertion));
            }
        }
        let mut trace = http::HeaderMap::new();
        telemetry::inject(&mut trace);
        // GitHub-style providers answer form-encoded unless asked for JSON.
        trace.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json"),
        );
        let resp =
            req.headers(trace)
                .form(&form)
                .send()
                .await
                .map_err(|e| TokenError::Transport {
                    grant,
                    endpoint: endpoint.clone(),
                    source: e.without_url(),
                })?;
        let status = resp.status();
        tracing::Span::current().record("http.response.status_code", i64::from(status.as_u16()));
        // A token response is small: read no more than MAX_DOCUMENT_BYTES of it.
        let body: Value = read_bounded(resp, MAX_DOCUMENT_BYTES)
            .await
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        // Some providers (GitHub) answer errors with 200.
        if !status.is_success() || body.get("error").is_some() {
            if let Some(e) = body["error"].as_str() {
                tracing::Span::current().record("oauth.error", e);
            }
            return Err(refusal(grant, &body, secret));
        }
        let text = |k: &str| body[k].as_str().map(str::to_string);
        Ok(Issued {
            access_token: text("access_token").ok_or(TokenError::NoAccessToken(grant))?,
            refresh_token: text("refresh_token"),
            // Trusted for at most a day, whatever the server says (a huge value must not
            // overflow).
            lifetime: body["expires_in"]
                .as_u64()
                .map_or(DEFAULT_LIFETIME, |s| Duration::from_secs(s.min(86_400))),
            says_lifetime: body["expires_in"].is_u64(),
            scope: text("scope"),
            id_token: text("id_token"),
        })
    }

    /// This client, with its token endpoint given rather than discovered.
    pub(crate) fn with_token_endpoint(self, endpoint: String) -> Self {
        let _ = self.token_endpoint.set(endpoint);
        self
    }

    /// The client id.
    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }
}

/// What a token endpoint's error answer means: a step-up for the user, or a refusal. Its
/// texts are bounded and escaped, and never repeat `secret` (the caller's token the grant
/// presented: an error reaches the plugin).
fn refusal(grant: &'static str, body: &Value, secret: Option<&str>) -> TokenError {
    let text = |key: &str, otherwise: &str| {
        let t = body[key].as_str().unwrap_or(otherwise);
        let t = match secret.filter(|s| !s.is_empty()) {
            Some(s) => t.replace(s, "[the caller's token]"),
            None => t.to_string(),
        };
        crate::telemetry::untrusted(&t)
    };
    let error = text("error", "unknown error");
    let description = text("error_description", "no description");
    if STEP_UP_ERRORS.contains(&error.as_str()) {
        let claims = body["claims"]
            .as_str()
            .filter(|c| c.len() <= 4096 && serde_json::from_str::<Value>(c).is_ok())
            .map(str::to_string);
        return TokenError::StepUp {
            grant,
            error,
            description,
            claims,
        };
    }
    TokenError::Refused {
        grant,
        error,
        description,
    }
}

/// The gateway's OAuth clients, one per issuer (`[exchange]` and every
/// `[auth.issuer.exchange]`). The only way to a client for an exchange is the subject token's
/// own issuer: a token is never sent to an authorization server that did not issue it.
#[derive(Default)]
pub struct OAuthClients {
    by_issuer: HashMap<String, Arc<OAuthClient>>,
    /// The `[exchange]` issuer: where client-credentials tokens come from by default.
    default: Option<String>,
}

impl std::fmt::Debug for OAuthClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_issuer.keys()).finish()
    }
}

impl OAuthClients {
    /// Every client the configuration describes, sharing their caches through `shared`
    /// (several replicas); fails on a missing secret or a bad key.
    pub fn from_config(
        config: &Config,
        shared: Option<Arc<dyn SharedTokens>>,
    ) -> anyhow::Result<Self> {
        let mut by_issuer = HashMap::new();
        for (issuer, at, x) in config.exchange_clients() {
            let client =
                OAuthClient::from_section(config, &at, issuer.clone(), x)?.sharing(shared.clone());
            by_issuer.insert(issuer, Arc::new(client));
        }
        let default = config.default_exchange_issuer();
        Ok(Self { by_issuer, default })
    }

    /// The client at `issuer`, if the gateway has one there.
    pub fn at(&self, issuer: &str) -> Option<&Arc<OAuthClient>> {
        self.by_issuer.get(issuer)
    }

    /// The client for client-credentials tokens: at `issuer`, else the `[exchange]` one.
    pub fn for_gateway(&self, issuer: Option<&str>) -> Option<&Arc<OAuthClient>> {
        self.at(issuer.or(self.default.as_deref())?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// An "authorization server" that accepts connections, counts them and hangs up.
    async fn dead_server() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                seen.fetch_add(1, Ordering::SeqCst);
                drop(conn);
            }
        });
        (url, count)
    }

    fn client_at(issuer: String) -> OAuthClient {
        OAuthClient::new(issuer, "gw".into(), ClientAuth::SecretBasic("s".into())).unwrap()
    }

    fn client_credentials() -> TokenRequest<'static> {
        TokenRequest {
            tenant: "t",
            service: "api",
            audience: "https://api.example",
            scopes: &[],
            grant: Grant::ClientCredentials,
        }
    }

    /// #16: while the authorization server is down, a failed request is remembered briefly:
    /// the callers behind it get the failure at once instead of retrying one after another,
    /// and no in-flight entry is left behind.
    #[tokio::test]
    async fn a_failed_token_request_is_not_retried_at_once() {
        let (issuer, connections) = dead_server().await;
        let (client, request) = (client_at(issuer), client_credentials());
        let first = client.token(&request).await.unwrap_err();
        assert!(matches!(first, TokenError::Discovery(_)), "{first}");
        let tried = connections.load(Ordering::SeqCst);
        assert!(tried >= 1);
        let again = client.token(&request).await.unwrap_err();
        assert!(matches!(again, TokenError::RecentFailure(_)), "{again}");
        assert_eq!(connections.load(Ordering::SeqCst), tried, "not retried");
        assert!(client.inflight.lock().is_empty());
        tokio::time::sleep(FAILURE_MEMORY + Duration::from_millis(100)).await;
        let later = client.token(&request).await.unwrap_err();
        assert!(matches!(later, TokenError::Discovery(_)), "{later}");
    }

    /// #29: an STS that asks for the user (Entra's Conditional Access answer here) is a
    /// step-up carrying its claims challenge; other errors are refusals; neither repeats the
    /// caller's token an AS echoed.
    #[test]
    fn sts_answers_that_ask_for_the_user_are_step_ups() {
        let entra = json!({"error": "interaction_required",
            "error_description": "AADSTS50079: you must enroll in multi-factor authentication.",
            "error_codes": [50079], "suberror": "basic_action",
            "claims": "{\"access_token\":{\"capolids\":{\"essential\":true,\"values\":[\"c1\"]}}}"});
        match refusal("on-behalf-of request", &entra, Some("eyJ.user.token")) {
            TokenError::StepUp { error, claims, .. } => {
                assert_eq!(error, "interaction_required");
                assert!(claims.unwrap().contains("capolids"));
            }
            other => panic!("{other}"),
        }
        let not_json = json!({"error": "insufficient_claims", "claims": "not json"});
        assert!(matches!(
            refusal("x", &not_json, None),
            TokenError::StepUp { claims: None, .. }
        ));
        let echoed = json!({"error": "invalid_grant",
            "error_description": "bad assertion eyJ.user.token\nforged: line"});
        let e = refusal("JWT bearer grant", &echoed, Some("eyJ.user.token"));
        assert!(matches!(e, TokenError::Refused { .. }));
        let shown = e.to_string();
        assert!(
            !shown.contains("eyJ.user.token") && !shown.contains('\n'),
            "{shown}"
        );
    }

    /// The `x5t#S256` of a certificate is the SHA-256 of its DER bytes, base64url.
    #[test]
    fn certificate_thumbprints_are_sha256_of_the_der() {
        let pem = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/test-issuer-b.cert.pem"),
        )
        .unwrap();
        // `openssl x509 -outform DER | openssl dgst -sha256 -binary | base64url`
        assert_eq!(
            thumbprint(&pem).unwrap(),
            "2CUhhej7izC-hlTo5a2K51LizBGHiVRMVvslXAz6k1s"
        );
        assert!(thumbprint("-----BEGIN PRIVATE KEY-----\nAAAA\n").is_err());
    }

    /// A caller cancelled mid-request leaves no in-flight entry behind.
    #[tokio::test]
    async fn a_cancelled_request_leaves_no_in_flight_entry() {
        // Accepts and never answers: the request hangs until cancelled.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                open.push(conn);
            }
        });
        let (client, request) = (client_at(issuer), client_credentials());
        let pending =
            tokio::time::timeout(Duration::from_millis(300), client.token(&request)).await;
        assert!(pending.is_err(), "still waiting when cancelled");
        assert!(client.inflight.lock().is_empty(), "in-flight entry leaked");
        held.abort();
    }
}
