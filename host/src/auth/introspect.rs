//! Opaque access tokens: RFC 7662 introspection at the one issuer responsible for a token,
//! with the gateway's own client credentials (the secret comes from the environment and is
//! never logged).
//!
//! Owns the introspection request and what its answer must say (active, an access token,
//! this issuer, this audience, not expired), how long a positive answer is trusted (at most
//! `auth.introspection_cache_secs`, so a revocation takes effect within it), and the
//! per-address budget of refused introspections that keeps junk bearers from turning the
//! gateway into an amplifier against the authorization server. It must not choose the
//! issuer: the resource server picks exactly one introspector per token.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value;

use super::jwt::{Issuer, Verified};
use crate::config::IntrospectionConfig;
use crate::telemetry::untrusted;

/// How long an introspection call may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Client addresses whose refusals are tracked at once.
const TRACKED_ADDRESSES: usize = 10_000;
/// The window refusals are counted in.
const WINDOW: Duration = Duration::from_secs(60);

/// Why introspection did not accept a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IntrospectError {
    /// The issuer answered, and the token is not acceptable here (inactive, revoked, not an
    /// access token, another audience, expired). Remembered briefly and counted against the
    /// client's address.
    #[error("{0}")]
    Refused(String),
    /// The issuer could not be asked (unreachable, an HTTP error, not JSON): nothing is
    /// remembered, the next request asks again.
    #[error("{0}")]
    Unavailable(String),
}

/// Introspects tokens at one issuer.
pub(crate) struct Introspector {
    issuer: Arc<Issuer>,
    client_id: String,
    /// Never printed: this type implements no `Debug`.
    client_secret: String,
    endpoint: Option<String>,
    prefix: Option<String>,
    /// Longest a positive answer is trusted.
    ttl: Duration,
}

impl Introspector {
    /// From configuration; fails if the secret's environment variable is unset.
    pub(crate) fn new(
        issuer: Arc<Issuer>,
        config: &IntrospectionConfig,
        ttl: Duration,
    ) -> Result<Self, String> {
        let client_secret = crate::config::secret_from_env(&config.client_secret_env)
            .map_err(|e| format!("client_secret_env: {e}"))?;
        Ok(Self {
            issuer,
            client_id: config.client_id.clone(),
            client_secret,
            endpoint: config.endpoint.clone(),
            prefix: config.token_prefix.clone(),
            ttl,
        })
    }

    /// The issuer this endpoint belongs to.
    pub(crate) fn issuer_url(&self) -> &str {
        &self.issuer.issuer
    }

    /// The prefix this issuer's opaque tokens carry, if configured.
    pub(crate) fn prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }

    async fn endpoint(&self) -> Result<String, IntrospectError> {
        if let Some(e) = &self.endpoint {
            return Ok(e.clone());
        }
        let doc = self
            .issuer
            .metadata()
            .await
            .map_err(|e| IntrospectError::Unavailable(e.to_string()))?;
        doc["introspection_endpoint"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                IntrospectError::Unavailable(format!(
                    "{} advertises no introspection_endpoint",
                    self.issuer.issuer
                ))
            })
    }

    /// Ask the issuer whether `token` is an active access token meant for one of `accepted`
    /// (audiences).
    /// Errors never contain the token or the client secret.
    pub(crate) async fn introspect(
        &self,
        token: &str,
        accepted: &[&str],
    ) -> Result<Verified, IntrospectError> {
        use IntrospectError::Unavailable;
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
            .map_err(|e| {
                Unavailable(format!(
                    "introspection at {endpoint} failed: {}",
                    e.without_url()
                ))
            })?;
        if !resp.status().is_success() {
            return Err(Unavailable(format!(
                "introspection at {endpoint} answered HTTP {}",
                resp.status()
            )));
        }
        let body: Value = resp
            .json()
            .await
            .map_err(|_| Unavailable(format!("introspection at {endpoint} did not answer JSON")))?;
        self.judge(&body, accepted)
    }

    /// What an introspection answer means for a request accepting the audiences `accepted`.
    fn judge(&self, body: &Value, accepted: &[&str]) -> Result<Verified, IntrospectError> {
        use IntrospectError::Refused;
        if body["active"] != Value::Bool(true) {
            return Err(Refused("the token is not active".into()));
        }
        // RFC 7662 §2.2 `token_type` is the RFC 6749 §7.1 type of an access token; a refresh
        // token (or anything else) presented as a bearer token is refused.
        if let Some(kind) = body.get("token_type") {
            let ok = kind.as_str().is_some_and(|k| {
                matches!(
                    k.to_ascii_lowercase().as_str(),
                    "bearer" | "dpop" | "access_token"
                )
            });
            if !ok {
                return Err(Refused(format!(
                    "the token is not an access token (token_type {})",
                    untrusted(&kind.to_string())
                )));
            }
        }
        if let Some(iss) = body["iss"].as_str()
            && iss != self.issuer.issuer
        {
            return Err(Refused("the token's issuer does not match".into()));
        }
        let for_us = match &body["aud"] {
            Value::String(a) => accepted.contains(&a.as_str()),
            Value::Array(a) => a
                .iter()
                .any(|x| x.as_str().is_some_and(|x| accepted.contains(&x))),
            _ => false,
        };
        if !for_us {
            return Err(Refused(
                "the token was not issued for this resource (aud)".into(),
            ));
        }
        let now = jsonwebtoken::get_current_timestamp();
        let trusted_until = now + self.ttl.as_secs();
        let expires = body["exp"].as_u64().unwrap_or(trusted_until);
        if expires <= now {
            return Err(Refused("the token has expired".into()));
        }
        let claims = body.as_object().cloned().unwrap_or_default();
        self.issuer.check_lifetime(&claims, now).map_err(Refused)?;
        let subject = self
            .issuer
            .subject_of(&claims)
            .map_err(|claim| Refused(format!("the token has no {claim} claim")))?;
        Ok(Verified {
            claims,
            subject,
            // Trusted until it expires or the cache window closes, whichever is first: a
            // revoked token stops working within the window.
            expires: expires.min(trusted_until),
            issuer: Arc::from(self.issuer.issuer.as_str()),
        })
    }
}

/// The introspection budget counted for every replica at once (`cluster` implements it on
/// Redis): the same rule as [`FailureLimiter`], one window per client network.
pub trait SharedBudget: Send + Sync {
    /// Take a slot of `network`'s budget of `per_minute`: `Ok(None)` when taken, `Ok(Some(s))`
    /// when spent (retry in `s` seconds), `Err` when the shared store cannot be asked.
    fn take(
        &self,
        network: IpAddr,
        per_minute: u32,
    ) -> futures::future::BoxFuture<'_, Result<Option<u64>, String>>;
    /// Give back the slot of an introspection that accepted its token (best effort).
    fn give_back(&self, network: IpAddr) -> futures::future::BoxFuture<'_, ()>;
}

/// Introspections that did not accept a token, per client network, in a fixed one-minute
/// window, with the ones in flight counted as if they would fail: a network that presents
/// junk gets at most `per_minute` introspections started, however many it sends at once, then
/// 429 until the window ends. Accepted tokens give their slot back, so a busy network with
/// good tokens is never slowed. A network is an IPv4 address or an IPv6 /64 (one host
/// usually holds a whole /64).
pub(crate) struct FailureLimiter {
    per_minute: u32,
    seen: Mutex<HashMap<IpAddr, Window>>,
    /// With replicas: the budget every replica shares (this replica's own while it is away).
    shared: std::sync::OnceLock<std::sync::Arc<dyn SharedBudget>>,
}

/// One network's window.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    failed: u32,
    in_flight: u32,
}

/// One introspection under way, holding its slot of the budget; it counts as failed unless
/// [`Attempt::accepted`] is called.
pub(crate) struct Attempt<'a> {
    limiter: &'a FailureLimiter,
    key: IpAddr,
    accepted: bool,
}

impl Attempt<'_> {
    /// The token was accepted: the slot is given back.
    pub(crate) fn accepted(mut self) {
        self.accepted = true;
    }
}

/// A slot of the shared budget, given back if its introspection accepts the token.
pub(crate) struct SharedSlot<'a> {
    shared: &'a dyn SharedBudget,
    network: IpAddr,
}

impl SharedSlot<'_> {
    /// The token was accepted: the slot is given back on every replica.
    pub(crate) async fn accepted(self) {
        self.shared.give_back(self.network).await;
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut seen = self.limiter.seen.lock();
        if let Some(w) = seen.get_mut(&self.key) {
            w.in_flight = w.in_flight.saturating_sub(1);
            if !self.accepted {
                w.failed = w.failed.saturating_add(1);
            }
        }
    }
}

impl FailureLimiter {
    pub(crate) fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            seen: Mutex::new(HashMap::new()),
            shared: std::sync::OnceLock::new(),
        }
    }

    /// Count the budget on `shared` from now on.
    pub(crate) fn share_through(&self, shared: std::sync::Arc<dyn SharedBudget>) {
        let _ = self.shared.set(shared);
    }

    /// [`FailureLimiter::start`], counted on every replica when the budget is shared: the
    /// shared slot is taken first, and given back if the introspection accepts the token.
    pub(crate) async fn start_shared(
        &self,
        peer: Option<IpAddr>,
    ) -> Result<(Attempt<'_>, Option<SharedSlot<'_>>), u64> {
        let Some(shared) = self.shared.get() else {
            return self.start(peer).map(|a| (a, None));
        };
        let network = Self::key(peer);
        match shared.take(network, self.per_minute).await {
            Ok(Some(retry_after)) => Err(retry_after),
            Ok(None) => self.start(peer).map(|a| {
                (
                    a,
                    Some(SharedSlot {
                        shared: shared.as_ref(),
                        network,
                    }),
                )
            }),
            Err(e) => {
                tracing::warn!("the introspection budget counts on this replica only: {e}");
                self.start(peer).map(|a| (a, None))
            }
        }
    }

    /// The network `peer` counts in.
    fn key(peer: Option<IpAddr>) -> IpAddr {
        peer.map_or(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            crate::net::client_network,
        )
    }

    /// Start an introspection for `peer`, or the seconds until it may start one.
    pub(crate) fn start(&self, peer: Option<IpAddr>) -> Result<Attempt<'_>, u64> {
        let key = Self::key(peer);
        let mut seen = self.seen.lock();
        if seen.len() >= TRACKED_ADDRESSES && !seen.contains_key(&key) {
            seen.retain(|_, w| w.in_flight > 0 || w.start.elapsed() < WINDOW);
            if seen.len() >= TRACKED_ADDRESSES {
                // Every tracked network is active: refuse the newcomer rather than forget one
                // (forgetting would hand it a fresh budget).
                return Err(WINDOW.as_secs());
            }
        }
        let w = seen.entry(key).or_insert(Window {
            start: Instant::now(),
            failed: 0,
            in_flight: 0,
        });
        if w.start.elapsed() >= WINDOW {
            w.start = Instant::now();
            w.failed = 0;
        }
        if w.failed.saturating_add(w.in_flight) >= self.per_minute {
            let left = WINDOW.saturating_sub(w.start.elapsed());
            return Err(left.as_secs().max(1));
        }
        w.in_flight += 1;
        Ok(Attempt {
            limiter: self,
            key,
            accepted: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn introspector() -> Introspector {
        introspector_naming_users_by("sub")
    }

    fn introspector_naming_users_by(subject_claim: &str) -> Introspector {
        let issuer = Arc::new(Issuer::new(
            &crate::config::IssuerConfig {
                issuer: "https://as.example".into(),
                algorithms: vec!["RS256".into()],
                jwks_uri: None,
                introspection: None,
                exchange: None,
                subject_claim: subject_claim.into(),
                max_token_lifetime_secs: None,
            },
            Duration::from_secs(30),
            reqwest::Client::new(),
        ));
        Introspector {
            issuer,
            client_id: "gw".into(),
            client_secret: "s".into(),
            endpoint: None,
            prefix: None,
            ttl: Duration::from_secs(30),
        }
    }

    #[test]
    fn only_active_access_tokens_for_this_audience_pass() {
        let i = introspector();
        let now = jsonwebtoken::get_current_timestamp();
        let good = serde_json::json!({"active": true, "token_type": "Bearer",
            "iss": "https://as.example", "aud": "https://gw/mcp", "exp": now + 3600, "sub": "alice"});
        let v = i.judge(&good, &["https://gw/mcp"]).unwrap();
        assert!(
            v.expires <= now + 30,
            "trusted for the cache window only, not until exp"
        );
        let refused = |body: Value| match i.judge(&body, &["https://gw/mcp"]) {
            Err(IntrospectError::Refused(why)) => why,
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        };
        let mut refresh = good.clone();
        refresh["token_type"] = "refresh_token".into();
        assert!(refused(refresh).contains("not an access token"));
        let mut inactive = good.clone();
        inactive["active"] = false.into();
        assert!(refused(inactive).contains("not active"));
        let mut other_aud = good.clone();
        other_aud["aud"] = "https://other/mcp".into();
        assert!(refused(other_aud).contains("aud"));
        let mut other_iss = good;
        other_iss["iss"] = "https://evil.example".into();
        assert!(refused(other_iss).contains("issuer"));
    }

    /// An issuer whose users are named by `oid` (Entra ID): the caller is the `oid`, never
    /// the pairwise `sub`; a token without `oid` is refused, not taken as no one's (which
    /// would fall back to its client, and share one identity among all its users).
    #[test]
    fn a_configured_subject_claim_names_the_caller_and_is_required() {
        let i = introspector_naming_users_by("oid");
        let now = jsonwebtoken::get_current_timestamp();
        let token = serde_json::json!({"active": true, "iss": "https://as.example",
            "aud": "https://gw/mcp", "exp": now + 3600, "sub": "pairwise-for-this-client",
            "oid": "00000000-0000-0000-0000-0000000000a1", "azp": "client-a"});
        let v = i.judge(&token, &["https://gw/mcp"]).unwrap();
        assert_eq!(
            v.subject.as_deref(),
            Some("00000000-0000-0000-0000-0000000000a1")
        );
        let mut no_oid = token;
        no_oid.as_object_mut().unwrap().remove("oid");
        match i.judge(&no_oid, &["https://gw/mcp"]) {
            Err(IntrospectError::Refused(why)) => assert!(why.contains("no oid claim"), "{why}"),
            other => panic!("expected a refusal, got {:?}", other.map(|v| v.subject)),
        }
        // With the default, a token without `sub` names no user (a client's own token).
        let mut client_only = serde_json::json!({"active": true, "iss": "https://as.example",
            "aud": "https://gw/mcp", "exp": now + 3600, "client_id": "svc"});
        assert_eq!(
            introspector()
                .judge(&client_only, &["https://gw/mcp"])
                .unwrap()
                .subject,
            None
        );
        client_only["sub"] = "alice".into();
        assert_eq!(
            introspector()
                .judge(&client_only, &["https://gw/mcp"])
                .unwrap()
                .subject
                .as_deref(),
            Some("alice")
        );
    }

    #[test]
    fn an_address_gets_its_budget_of_refusals_then_waits() {
        let limiter = FailureLimiter::new(3);
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        for _ in 0..3 {
            drop(limiter.start(a).expect("within the budget"));
        }
        let wait = limiter.start(a).err().expect("budget spent");
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(limiter.start(b).is_ok(), "another address is unaffected");
    }

    /// Before, only finished refusals counted: 64 junk tokens at once all reached the
    /// authorization server against a budget of 30.
    #[test]
    fn introspections_in_flight_count_against_the_budget() {
        let limiter = FailureLimiter::new(30);
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let started: Vec<_> = (0..64).filter_map(|_| limiter.start(a).ok()).collect();
        assert_eq!(started.len(), 30, "a burst gets the budget, no more");
        // Accepted tokens give their slots back.
        for attempt in started {
            attempt.accepted();
        }
        assert!(limiter.start(a).is_ok());
    }

    #[test]
    fn an_ipv6_host_counts_as_its_slash_64() {
        let limiter = FailureLimiter::new(2);
        let host = |last: u16| Some(IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]));
        drop(limiter.start(host(1)).unwrap());
        drop(limiter.start(host(2)).unwrap());
        assert!(limiter.start(host(3)).is_err(), "the same /64");
        let other = Some(IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]));
        assert!(limiter.start(other).is_ok(), "another /64");
    }
}
