//! The OAuth resource server every tenant shares: trusted issuers (JWT keys, introspection),
//! the rules tokens are held to, the validated-token cache, refused opaque tokens remembered
//! briefly, the introspection failure budget, and the DPoP proof checker.
//!
//! Owns: turning a presented token into a validated [`CachedToken`] (through the cache, keyed
//! by the token, the audience and the proof key it came with). Must not: decide what a tenant
//! accepts (schemes, issuers, audiences: `TenantAuth`) or answer a refusal (`challenge`).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{ALL_SCOPES, Denial, SharedBudget, SharedReplays, dpop, introspect, jwt};
use crate::config::{AuthConfig, IssuerConfig};

/// How long a refused opaque token is answered from memory, in seconds.
const REJECTED_SECS: u64 = 10;
/// Most refused tokens remembered.
const REJECTED_ENTRIES: usize = 10_000;

/// A validated token as the cache keeps it.
#[derive(Clone)]
pub(super) struct CachedToken {
    pub(super) issuer: Arc<str>,
    pub(super) subject: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) scopes: BTreeSet<String>,
    pub(super) claims: Vec<(String, String)>,
    pub(super) expires: u64,
    /// The key the token is bound to (`cnf.jkt`, RFC 9449 §6), if it is DPoP-bound.
    pub(super) cnf_jkt: Option<String>,
    /// Its approvals of single calls, if it carries `authorization_details`.
    pub(super) approvals: Option<Arc<super::Approvals>>,
}

/// Validated tokens by hash (token + audience + the proof key it came with), bounded, never
/// outliving the token.
struct TokenCache {
    capacity: usize,
    entries: Mutex<HashMap<[u8; 32], CachedToken>>,
}

impl TokenCache {
    fn key(token: &str, audience: &str, proof_key: Option<&str>) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(audience.as_bytes());
        h.update([0]);
        h.update(token.as_bytes());
        h.update([0]);
        h.update(proof_key.unwrap_or_default().as_bytes());
        h.finalize().into()
    }

    fn get(&self, key: &[u8; 32], now: u64) -> Option<CachedToken> {
        let mut entries = self.entries.lock();
        match entries.get(key) {
            Some(e) if e.expires > now => Some(e.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&self, key: [u8; 32], value: CachedToken, now: u64) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock();
        if entries.len() >= self.capacity {
            entries.retain(|_, e| e.expires > now);
        }
        if entries.len() >= self.capacity
            && let Some(victim) = entries.keys().next().copied()
        {
            entries.remove(&victim);
        }
        entries.insert(key, value);
    }
}

/// The OAuth resource server shared by every tenant: trusted issuers, rules, cache.
pub struct ResourceServer {
    issuers: Vec<Arc<jwt::Issuer>>,
    introspectors: Vec<introspect::Introspector>,
    rules: jwt::JwtRules,
    implies: HashMap<String, Vec<String>>,
    claims: Vec<String>,
    max_token_bytes: usize,
    cache: TokenCache,
    /// Opaque tokens an issuer said are not acceptable, briefly (hash → until, reason).
    rejected: Mutex<HashMap<[u8; 32], (u64, String)>>,
    /// Refused introspections per client address.
    failures: introspect::FailureLimiter,
    /// DPoP proofs, for the tenants that accept them.
    pub(super) dpop: dpop::ProofChecker,
}

impl std::fmt::Debug for ResourceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceServer")
            .field("issuers", &self.issuers)
            .finish_non_exhaustive()
    }
}

impl ResourceServer {
    /// Count the introspection budget on `shared`, for every replica at once.
    pub fn share_introspection_budget(&self, shared: Arc<dyn SharedBudget>) {
        self.failures.share_through(shared);
    }

    /// Record spent DPoP proofs on `shared`, for every replica at once.
    pub fn share_dpop_replays(&self, shared: Arc<dyn SharedReplays>) {
        self.dpop.share_through(shared);
    }
}

/// When a resource server fetches its issuers' signing keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFetch {
    /// At start and periodically in the background (a gateway serving HTTP).
    Background,
    /// Only when a token needs them (stdio and one-shot commands: the issuer may be this very
    /// gateway's development AS, which is not listening).
    OnDemand,
}

impl ResourceServer {
    /// Build from `[auth]` and the trusted issuers; with [`KeyFetch::Background`], fetch and
    /// refresh their keys in the background (an issuer that cannot be reached yet is logged
    /// and retried on demand).
    pub async fn start(
        config: &AuthConfig,
        trusted: &[IssuerConfig],
        fetch: KeyFetch,
        nonce_key: Option<&[u8]>,
    ) -> anyhow::Result<Arc<Self>> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let min_refresh = Duration::from_secs(config.jwks_min_refresh_secs);
        let issuers: Vec<Arc<jwt::Issuer>> = trusted
            .iter()
            .map(|i| Arc::new(jwt::Issuer::new(i, min_refresh, http.clone())))
            .collect();
        let mut introspectors = Vec::new();
        let ttl = Duration::from_secs(config.introspection_cache_secs);
        for (i, (issuer, cfg)) in issuers.iter().zip(trusted).enumerate() {
            if let Some(ic) = &cfg.introspection {
                let intro = introspect::Introspector::new(issuer.clone(), ic, ttl)
                    .map_err(|e| anyhow::anyhow!("auth.issuer[{i}].introspection: {e}"))?;
                introspectors.push(intro);
            }
        }
        // Fetch keys in the background: start-up never waits on a slow or absent issuer (a
        // request arriving meanwhile waits on the same single-flight fetch), then refresh
        // periodically, keeping the last good keys when a fetch fails.
        let every = Duration::from_secs(config.jwks_refresh_secs.max(1));
        let background = if fetch == KeyFetch::Background {
            issuers.as_slice()
        } else {
            &[]
        };
        for issuer in background {
            let weak = Arc::downgrade(issuer);
            tokio::spawn(async move {
                let mut first = true;
                loop {
                    let Some(issuer) = weak.upgrade() else { return };
                    match issuer.refresh().await {
                        Err(e) if first => {
                            tracing::error!(issuer = %issuer.issuer, jwks = issuer.configured_jwks(),
                            "cannot fetch signing keys yet (will retry on demand and every {every:?}): {e}")
                        }
                        Err(e) => {
                            tracing::warn!(issuer = %issuer.issuer, "periodic key refresh failed, keeping the last good keys: {e}")
                        }
                        Ok(_) => {}
                    }
                    first = false;
                    drop(issuer);
                    tokio::time::sleep(every).await;
                }
            });
        }
        Ok(Arc::new(Self {
            issuers,
            introspectors,
            rules: jwt::JwtRules {
                leeway: config.leeway_secs,
                require_at_jwt: config.require_at_jwt,
            },
            implies: config
                .scope_implies
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            claims: config.claims.clone(),
            max_token_bytes: config.max_token_bytes,
            cache: TokenCache {
                capacity: config.token_cache_entries,
                entries: Mutex::new(HashMap::new()),
            },
            rejected: Mutex::new(HashMap::new()),
            failures: introspect::FailureLimiter::new(config.introspection_failures_per_minute),
            dpop: dpop::ProofChecker::new(&config.dpop, nonce_key),
        }))
    }

    /// The issuers whose signing keys have not been fetched yet (issuers checked only by
    /// introspection need none).
    pub fn issuers_without_keys(&self) -> Vec<String> {
        self.issuers
            .iter()
            .filter(|i| {
                !i.has_keys()
                    && !self
                        .introspectors
                        .iter()
                        .any(|x| x.issuer_url() == i.issuer)
            })
            .map(|i| i.issuer.clone())
            .collect()
    }

    /// Apply the scope hierarchy (transitively).
    fn expand(&self, scopes: impl IntoIterator<Item = String>) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo: Vec<String> = scopes.into_iter().collect();
        while let Some(s) = todo.pop() {
            if out.insert(s.clone())
                && let Some(narrower) = self.implies.get(&s)
            {
                todo.extend(narrower.iter().cloned());
            }
        }
        out
    }

    /// The one introspector responsible for an opaque `token` among the `trusted` issuers:
    /// the longest `token_prefix` that matches, else the one issuer without a prefix. Never
    /// more than one: a token is only ever shown to the issuer that should have issued it.
    fn introspector_for(
        &self,
        token: &str,
        trusted: &[Arc<jwt::Issuer>],
    ) -> Option<&introspect::Introspector> {
        let offered = || {
            self.introspectors
                .iter()
                .filter(|i| trusted.iter().any(|t| t.issuer == i.issuer_url()))
        };
        offered()
            .filter(|i| i.prefix().is_some_and(|p| token.starts_with(p)))
            .max_by_key(|i| i.prefix().map_or(0, str::len))
            .or_else(|| offered().find(|i| i.prefix().is_none()))
    }

    /// A recent refusal of this opaque token, if any.
    fn recently_rejected(&self, key: &[u8; 32], now: u64) -> Option<String> {
        let mut rejected = self.rejected.lock();
        match rejected.get(key) {
            Some((until, why)) if *until > now => Some(why.clone()),
            Some(_) => {
                rejected.remove(key);
                None
            }
            None => None,
        }
    }

    fn remember_rejection(&self, key: [u8; 32], why: String, now: u64) {
        let mut rejected = self.rejected.lock();
        if rejected.len() >= REJECTED_ENTRIES {
            rejected.retain(|_, (until, _)| *until > now);
        }
        if rejected.len() < REJECTED_ENTRIES {
            rejected.insert(key, (now + REJECTED_SECS, why));
        }
    }

    /// Validate an opaque token by introspection at `at`, the one issuer responsible for it;
    /// refusals are remembered briefly and counted against the client's address.
    async fn introspect(
        &self,
        at: &introspect::Introspector,
        token: &str,
        audiences: &jwt::Audiences,
        peer: Option<IpAddr>,
    ) -> Result<jwt::Verified, Denial> {
        let now = jsonwebtoken::get_current_timestamp();
        let key = TokenCache::key(token, &audiences.resource, None);
        if let Some(why) = self.recently_rejected(&key, now) {
            return Err(Denial::InvalidToken(why));
        }
        let (attempt, shared) = self
            .failures
            .start_shared(peer)
            .await
            .map_err(|retry_after| Denial::TooManyFailures { retry_after })?;
        match at
            .introspect(token, &audiences.for_issuer(at.issuer_url()))
            .await
        {
            Ok(v) => {
                attempt.accepted();
                if let Some(slot) = shared {
                    slot.accepted().await;
                }
                Ok(v)
            }
            Err(introspect::IntrospectError::Refused(why)) => {
                self.remember_rejection(key, why.clone(), now);
                Err(Denial::InvalidToken(why))
            }
            Err(introspect::IntrospectError::Unavailable(why)) => {
                // The operator's log has the endpoint and the failure; the unauthenticated
                // caller learns only that the token could not be checked.
                tracing::warn!(issuer = at.issuer_url(), "introspection failed: {why}");
                Err(Denial::InvalidToken(
                    "the token could not be checked at its issuer right now".into(),
                ))
            }
        }
    }

    /// The configured issuers named in `urls` (all of them when `urls` is empty).
    pub(super) fn issuers_named(&self, urls: &[String]) -> Vec<Arc<jwt::Issuer>> {
        self.issuers
            .iter()
            .filter(|i| urls.is_empty() || urls.contains(&i.issuer))
            .cloned()
            .collect()
    }

    /// Validate `token` for the tenant's `audiences` (its resource URL, and what its issuers
    /// put in `aud` instead), accepting only tokens from `trusted` issuers.
    pub(super) async fn validate(
        &self,
        token: &str,
        proof_key: Option<&str>,
        audiences: &jwt::Audiences,
        trusted: &[Arc<jwt::Issuer>],
        peer: Option<IpAddr>,
    ) -> Result<CachedToken, Denial> {
        if token.len() > self.max_token_bytes {
            return Err(Denial::InvalidToken(format!(
                "the token is longer than {} bytes",
                self.max_token_bytes
            )));
        }
        let now = jsonwebtoken::get_current_timestamp();
        let key = TokenCache::key(token, &audiences.resource, proof_key);
        if let Some(hit) = self.cache.get(&key, now) {
            return Ok(hit);
        }
        let looks_like_jwt =
            token.split('.').count() == 3 && jsonwebtoken::decode_header(token).is_ok();
        let verified = match self.introspector_for(token, trusted) {
            Some(at) if !looks_like_jwt => self.introspect(at, token, audiences, peer).await?,
            _ => jwt::validate(token, audiences, trusted, &self.rules)
                .await
                .map_err(|e| Denial::InvalidToken(e.to_string()))?,
        };
        let c = &verified.claims;
        let text = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_string);
        // `*` is for configured identities only: a token cannot grant every scope.
        let granted: Vec<String> = match (c.get("scope"), c.get("scp")) {
            (Some(Value::String(s)), _) => s.split_whitespace().map(str::to_string).collect(),
            (_, Some(Value::Array(a))) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            (_, Some(Value::String(s))) => s.split_whitespace().map(str::to_string).collect(),
            _ => Vec::new(),
        };
        let granted = granted.into_iter().filter(|s| s != ALL_SCOPES);
        let (subject, client_id) = (
            verified.subject.clone(),
            text("client_id").or_else(|| text("azp")),
        );
        if subject.is_none() && client_id.is_none() {
            // Such callers would all be one: sharing sessions' caps, buckets and bindings.
            return Err(Denial::InvalidToken(
                "the token names neither a subject (sub) nor a client (client_id)".into(),
            ));
        }
        let entry = CachedToken {
            issuer: verified.issuer.clone(),
            subject,
            client_id,
            scopes: self.expand(granted),
            claims: self
                .claims
                .iter()
                .filter_map(|k| c.get(k).map(|v| (k.clone(), v.to_string())))
                .collect(),
            expires: verified.expires,
            cnf_jkt: c
                .get("cnf")
                .and_then(|cnf| cnf.get("jkt"))
                .and_then(Value::as_str)
                .map(str::to_string),
            approvals: c.get("authorization_details").map(|details| {
                Arc::new(super::Approvals {
                    details: details.clone(),
                    issued_at: c.get("iat").and_then(Value::as_u64),
                    token_id: c
                        .get("jti")
                        .and_then(Value::as_str)
                        .map_or_else(|| hex::encode(&key[..16]), str::to_string),
                })
            }),
        };
        self.cache.put(key, entry.clone(), now);
        Ok(entry)
    }
}
