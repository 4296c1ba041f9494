//! Who is calling: authentication at the edge, and the [`Principal`] every request carries.
//!
//! Owns the OAuth 2.1 resource server: the presented credential read and stripped in one place
//! (`credential`: `Bearer`, or `DPoP` with its proof), tokens validated once per request
//! (JWT/JWKS via `jwt`, opaque via `introspect`, through the validated-token cache), DPoP
//! proofs checked and spent once (`dpop`, RFC 9449), per-issuer lifetime limits, scope
//! hierarchies, and what a refused caller is told (`challenge`: the exact `WWW-Authenticate`
//! challenges per scheme, their in-band form, the RFC 9728 metadata). The rest of the host
//! reads the [`Principal`]; the raw token survives only as a [`SecretToken`] that cannot be
//! printed, logged or serialized. This module must not route MCP methods or call plugins.
//! With `auth.mode = "none"` every request acts as a configured identity, for local
//! development and the conformance suite only.

mod challenge;
mod credential;
mod dpop;
mod introspect;
mod resource_server;

pub use challenge::{Challenge, DENIAL_ENVELOPE, IN_BAND_CHALLENGE};
pub(crate) use credential::Carried;
pub use credential::Scheme;
pub use dpop::SharedReplays;
pub use introspect::SharedBudget;
pub use resource_server::{KeyFetch, ResourceServer};
mod jwt;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;

use crate::config::{AuthConfig, AuthMode, Challenges, DpopMode, Identity, TenantConfig};

/// The scope that stands for "every scope" in a configured identity (auth off, stdio). A
/// token can never grant it: `*` in a token's `scope`/`scp` is dropped.
pub const ALL_SCOPES: &str = "*";

/// JWS algorithms an issuer may be configured with: asymmetric only (the configuration
/// check owns the list).
pub use crate::config::ACCEPTED_ALGORITHMS;

/// An authenticated (or, with auth off, configured) caller.
///
/// Identity is (tenant, issuer, subject): two principals are the same caller only when all
/// three match ([`Principal::caller`]). A `sub` means nothing without the issuer that
/// vouched for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The tenant the request was routed to.
    pub tenant: Arc<str>,
    /// The issuer that validated the token (`None` for a configured identity).
    pub issuer: Option<Arc<str>>,
    /// The subject (`sub`), if any.
    pub subject: Option<String>,
    /// The OAuth client id, if known.
    pub client_id: Option<String>,
    /// Granted scopes, with the scope hierarchy applied.
    pub scopes: BTreeSet<String>,
    /// Operator-selected non-secret claims: name and JSON value as text.
    pub claims: Vec<(String, String)>,
    /// How the caller presented its token (`None` for a configured identity).
    pub credential: Option<Scheme>,
    /// What the token carries for approvals of single calls (RFC 9396 `authorization_details`),
    /// and when it was issued (`iat`) and its id (`jti`), which an approval's age and single
    /// use are counted by.
    pub approvals: Option<Arc<Approvals>>,
    /// Where this request came from (the TCP peer; behind a proxy, the proxy): context for
    /// policies, not part of who the caller is. `None` on stdio.
    pub address: Option<std::net::IpAddr>,
    /// Every scope, without listing them: only a configured identity whose scopes name `*`.
    all_scopes: bool,
}

/// A token's approvals of single calls (RFC 9396), as the gateway checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approvals {
    /// The token's `authorization_details`.
    pub details: Value,
    /// Its `iat`.
    pub issued_at: Option<u64>,
    /// Its `jti`, or a hash of the token when it has none.
    pub token_id: String,
}

/// Who a caller is within its tenant: the issuer and the name it vouched for. Sessions,
/// `requestState`, quota buckets and caches are keyed by it (with the tenant).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallerId {
    /// The validating issuer; `None` for a configured identity.
    pub issuer: Option<Arc<str>>,
    /// The subject, or for a token without one the client it was issued to.
    pub name: CallerName,
}

/// The name part of a [`CallerId`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallerName {
    /// A `sub` claim (or a configured identity's subject).
    Subject(String),
    /// No `sub`: the OAuth client the token was issued to.
    Client(String),
    /// Neither.
    Anonymous,
}

impl std::fmt::Display for CallerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let issuer = self.issuer.as_deref().unwrap_or("(configured)");
        match &self.name {
            CallerName::Subject(s) => write!(f, "{s} @ {issuer}"),
            CallerName::Client(c) => write!(f, "client {c} @ {issuer}"),
            CallerName::Anonymous => write!(f, "anonymous @ {issuer}"),
        }
    }
}

impl Principal {
    /// A principal with a fixed identity (auth off, or stdio); `*` in its scopes grants
    /// every scope.
    pub fn from_identity(tenant: Arc<str>, identity: &Identity) -> Self {
        Self {
            tenant,
            issuer: None,
            subject: Some(identity.subject.clone()),
            client_id: None,
            all_scopes: identity.scopes.iter().any(|s| s == ALL_SCOPES),
            scopes: identity
                .scopes
                .iter()
                .filter(|s| *s != ALL_SCOPES)
                .cloned()
                .collect(),
            claims: Vec::new(),
            credential: None,
            approvals: None,
            address: None,
        }
    }

    /// Who this is within the tenant: (issuer, subject or client).
    pub fn caller(&self) -> CallerId {
        let name = match (&self.subject, &self.client_id) {
            (Some(s), _) => CallerName::Subject(s.clone()),
            (None, Some(c)) => CallerName::Client(c.clone()),
            (None, None) => CallerName::Anonymous,
        };
        CallerId {
            issuer: self.issuer.clone(),
            name,
        }
    }

    /// This principal with one more claim for the plugin (`name`, its JSON value).
    #[must_use]
    pub fn with_claim(&self, name: &str, value: &Value) -> Self {
        let mut out = self.clone();
        out.claims.retain(|(k, _)| k != name);
        out.claims.push((name.to_string(), value.to_string()));
        out
    }

    /// Whether every scope in `required` is granted.
    pub fn has_scopes<S: AsRef<str>>(&self, required: &[S]) -> bool {
        self.missing_scopes(required).is_empty()
    }

    /// The scopes in `required` that are not granted.
    pub fn missing_scopes<'a, S: AsRef<str>>(&self, required: &'a [S]) -> Vec<&'a str> {
        if self.all_scopes {
            return Vec::new();
        }
        required
            .iter()
            .map(AsRef::as_ref)
            .filter(|s| !self.scopes.contains(*s))
            .collect()
    }

    /// The scopes a plugin is told about: the granted ones, plus `*` for a configured
    /// identity that has every scope.
    pub fn scope_list(&self) -> Vec<String> {
        let mut out: Vec<String> = self.scopes.iter().cloned().collect();
        if self.all_scopes {
            out.push(ALL_SCOPES.into());
        }
        out
    }
}

/// The caller's raw bearer token and the issuer that validated it. It exists only so the
/// downstream capability can exchange it (RFC 8693) at that issuer and nowhere else; it
/// implements neither `Debug`, `Display` nor `Serialize`, so it cannot end up in a log line,
/// a span or a response by accident.
#[derive(Clone)]
pub struct SecretToken {
    token: Arc<str>,
    issuer: Arc<str>,
}

impl SecretToken {
    /// The token itself, for the one place that must send it to its authorization server.
    pub fn expose(&self) -> &str {
        &self.token
    }

    /// The issuer that issued and validated this token: the only authorization server it
    /// may be sent to.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}

/// Why a request is refused at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No credentials: 401 without `error` (RFC 6750 §3.1).
    Missing,
    /// A token was presented and is not acceptable: 401 `invalid_token`.
    InvalidToken(String),
    /// The request is malformed (e.g. a token in the query string): 400 `invalid_request`.
    InvalidRequest(String),
    /// Valid token without the scopes this call needs: 403 `insufficient_scope`.
    InsufficientScope {
        /// Every scope the call needs.
        required: Vec<String>,
    },
    /// Too many unacceptable tokens from this client address: 429 with `Retry-After`.
    TooManyFailures {
        /// Seconds until the address may try again.
        retry_after: u64,
    },
    /// The DPoP proof is missing, malformed, for another request, too old, replayed, or not
    /// for this token's key: 401 `invalid_dpop_proof` (RFC 9449 §7.1).
    InvalidDpopProof(String),
    /// The proof lacks the current server nonce: 401 `use_dpop_nonce` with a fresh
    /// `DPoP-Nonce` (RFC 9449 §9).
    UseDpopNonce,
    /// The credential cannot be checked right now (the shared replay cache is away): 503.
    Unavailable(String),
    /// The call needs a person's approval of exactly this call, which the token does not
    /// carry (or carried once, or too long ago): 403 `insufficient_authorization` with the
    /// `authorization_details` that would authorize it (RFC 9396; the RAR remediation draft).
    InsufficientAuthorization {
        /// The `authorization_details` that would authorize exactly this call.
        details: Value,
        /// For an approval that may be used more than once: the stable reference of those
        /// details, by which a client finds a token it already holds for them.
        reference: Option<String>,
        /// Why the token's approvals do not do (for the log and the client).
        why: String,
    },
    /// The token is good here, but an authorization server the call needed wants the user to
    /// sign in again (RFC 9470): 401 `insufficient_user_authentication`.
    UserAuthentication {
        /// What was asked, for the user (bounded, escaped).
        description: String,
        /// The authorization server's claims challenge (JSON), passed on base64-encoded.
        claims: Option<String>,
    },
}

impl Denial {
    /// What an operator's log says about it (never a credential).
    pub fn detail(&self) -> &str {
        match self {
            Denial::InvalidToken(d)
            | Denial::InvalidRequest(d)
            | Denial::InvalidDpopProof(d)
            | Denial::Unavailable(d) => d.as_str(),
            Denial::InsufficientScope { .. } => "the token lacks scopes this call needs",
            Denial::Missing => "no access token",
            Denial::TooManyFailures { .. } => "too many unacceptable tokens from this address",
            Denial::UserAuthentication { description, .. } => description.as_str(),
            Denial::UseDpopNonce => "the DPoP proof lacks the server's current nonce",
            Denial::InsufficientAuthorization { why, .. } => why.as_str(),
        }
    }

    /// A short label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::Missing => "missing_token",
            Denial::InvalidToken(_) => "invalid_token",
            Denial::InvalidRequest(_) => "invalid_request",
            Denial::InsufficientScope { .. } => "insufficient_scope",
            Denial::TooManyFailures { .. } => "too_many_failures",
            Denial::UserAuthentication { .. } => "user_authentication",
            Denial::InvalidDpopProof(_) => "invalid_dpop_proof",
            Denial::UseDpopNonce => "use_dpop_nonce",
            Denial::Unavailable(_) => "unavailable",
            Denial::InsufficientAuthorization { .. } => "insufficient_authorization",
        }
    }
}

/// How one tenant authenticates, and what it tells clients about it.
pub struct TenantAuth {
    tenant: Arc<str>,
    mode: Mode,
    /// The tenant's resource URL: the MCP endpoint clients connect to, and the token audience.
    pub resource: String,
    /// What its tokens may carry in `aud`: the resource URL, and what the tenant configured
    /// per issuer.
    audiences: jwt::Audiences,
    /// Where the protected resource metadata is served.
    pub metadata_url: String,
    scopes_supported: Vec<String>,
    /// The scopes the tenant's plugins currently require (they change on reload).
    declared_scopes: DeclaredScopes,
    /// The approval rules its tools currently have (#32), for the metadata.
    approvals: crate::oauth::approval::DeclaredApprovals,
    challenge_scopes: Vec<String>,
    authorization_servers: Vec<String>,
    /// Whether DPoP-bound tokens are accepted, or required.
    dpop: DpopMode,
    /// The proof algorithms accepted (`[auth.dpop] algorithms`), for challenges and metadata.
    dpop_algorithms: Vec<String>,
    /// Whether a curable refusal of a tool call also answers in-band.
    challenges: Challenges,
}

pub use crate::oauth::DeclaredScopes;

enum Mode {
    Fixed(Principal),
    /// The shared resource server and the issuers this tenant trusts.
    OAuth(Arc<ResourceServer>, Vec<Arc<jwt::Issuer>>),
}

impl std::fmt::Debug for TenantAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantAuth")
            .field("tenant", &self.tenant)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

/// A 429 with `Retry-After` and a JSON body (rate limits and failure budgets alike).
pub(crate) fn too_many_requests(body: &Value, retry_after: u64) -> Response {
    let mut resp = (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    resp
}

/// The path-inserted RFC 9728 metadata URL for a resource URL.
pub fn metadata_url_for(resource: &str) -> String {
    let (origin, path) = crate::oauth::split_origin(resource);
    format!("{origin}/.well-known/oauth-protected-resource{path}")
}

/// A caller established by [`TenantAuth::authenticate`], whose DPoP proof (if it presented
/// one) is not spent yet: the replica that serves the request spends it
/// ([`Authenticated::spend`]); one that forwards the request does not (the serving replica
/// authenticates it again, with the same proof).
pub struct Authenticated {
    /// Who is calling.
    pub principal: Principal,
    /// The caller's token, for the one capability that may exchange it.
    pub secret: Option<SecretToken>,
    unspent: Option<(Arc<ResourceServer>, dpop::CheckedProof)>,
}

impl Authenticated {
    /// Spend the caller's DPoP proof, if any: refused when it was presented before (here or on
    /// another replica).
    pub async fn spend(&mut self) -> Result<(), Denial> {
        match self.unspent.take() {
            Some((server, proof)) => {
                server
                    .dpop
                    .spend(&proof, jsonwebtoken::get_current_timestamp())
                    .await
            }
            None => Ok(()),
        }
    }
}

/// The scheme `parts` names in `Authorization`, even when the rest of its credential is
/// unusable (for the challenge of a refused request).
pub fn presented_scheme(parts: &http::request::Parts) -> Option<Scheme> {
    credential::scheme_named(&parts.headers)
}

impl TenantAuth {
    /// Authentication for `tenant`, whose endpoint is `resource`, as `section` configures it
    /// (the issuers it trusts — every configured issuer when it names none —, the audiences
    /// it accepts, DPoP and challenges).
    pub fn new(
        tenant: Arc<str>,
        resource: String,
        section: &TenantConfig,
        config: &AuthConfig,
        server: Option<Arc<ResourceServer>>,
    ) -> Self {
        let mode = match (config.mode, server) {
            (AuthMode::Oauth, Some(s)) => {
                let trusted = s.issuers_named(&section.issuers);
                Mode::OAuth(s, trusted)
            }
            _ => Mode::Fixed(Principal::from_identity(tenant.clone(), &config.anonymous)),
        };
        let authorization_servers = match &mode {
            Mode::OAuth(_, trusted) => trusted.iter().map(|i| i.issuer.clone()).collect(),
            Mode::Fixed(_) => Vec::new(),
        };
        Self {
            metadata_url: metadata_url_for(&resource),
            tenant,
            mode,
            audiences: jwt::Audiences::new(resource.clone(), &section.audiences),
            resource,
            scopes_supported: config.scopes_supported.clone(),
            declared_scopes: Arc::new(BTreeSet::new),
            approvals: Arc::new(Vec::new),
            challenge_scopes: config
                .challenge_scopes
                .clone()
                .unwrap_or_else(|| config.scopes_supported.clone()),
            authorization_servers,
            dpop: section.dpop,
            dpop_algorithms: config.dpop.algorithms.clone(),
            challenges: section.challenges,
        }
    }

    /// Advertise (and keep across step-up) the scopes `declared` returns, besides
    /// `auth.scopes_supported`.
    #[must_use]
    pub fn with_declared_scopes(mut self, declared: DeclaredScopes) -> Self {
        self.declared_scopes = declared;
        self
    }

    /// Advertise the approval rules `approvals` returns: their types (RFC 9728
    /// `authorization_details_types_supported`) and the types metadata of the RAR remediation
    /// draft (`authorization_details_types_metadata`).
    #[must_use]
    pub fn with_approvals(mut self, approvals: crate::oauth::approval::DeclaredApprovals) -> Self {
        self.approvals = approvals;
        self
    }

    /// `auth.scopes_supported`, then every other scope the tenant's plugins declare.
    pub fn scopes_supported(&self) -> Vec<String> {
        crate::oauth::offered_scopes(&self.scopes_supported, &self.declared_scopes)
    }

    /// Whether requests must carry a bearer token.
    pub fn requires_token(&self) -> bool {
        matches!(self.mode, Mode::OAuth(..))
    }

    /// Whether this tenant trusts the issuer `issuer`.
    pub fn trusts(&self, issuer: &str) -> bool {
        self.authorization_servers.iter().any(|i| i == issuer)
    }

    /// Whether a curable refusal of a tool call answers in-band too (`challenges = "both"`).
    pub fn challenges_in_band(&self) -> bool {
        self.challenges == Challenges::Both && self.requires_token()
    }

    /// A nonce for DPoP proofs, when the resource server requires them.
    fn fresh_dpop_nonce(&self) -> Option<String> {
        match &self.mode {
            Mode::OAuth(server, _) if server.dpop.nonce_required => Some(
                server
                    .dpop
                    .fresh_nonce(jsonwebtoken::get_current_timestamp()),
            ),
            _ => None,
        }
    }

    /// The URL a DPoP proof for `parts` must name (`htu`): the request's path at the tenant's
    /// public origin, as clients see it (never the address this replica listens on).
    fn public_url(&self, parts: &http::request::Parts) -> String {
        let (origin, _) = crate::oauth::split_origin(&self.resource);
        format!("{origin}{}", parts.uri.path())
    }

    /// Spend a single-use approval: the entry `detail` of `approvals` (a token's), usable until
    /// `until`: `Ok(false)` when it was used before, here or on another replica.
    pub async fn spend_approval(
        &self,
        approvals: &Approvals,
        issuer: &str,
        detail: &Value,
        until: u64,
    ) -> Result<bool, Denial> {
        let Mode::OAuth(server, _) = &self.mode else {
            return Ok(true);
        };
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        for part in [
            b"approval".as_slice(),
            issuer.as_bytes(),
            approvals.token_id.as_bytes(),
            detail.to_string().as_bytes(),
        ] {
            h.update(part);
            h.update([0]);
        }
        let mut key = [0u8; 16];
        key.copy_from_slice(&h.finalize()[..16]);
        let now = jsonwebtoken::get_current_timestamp();
        match server.dpop.first_use(key, until, now).await {
            Ok(first) => Ok(first),
            Err(e) => {
                tracing::warn!(tenant = %self.tenant, "refused a single-use approval: {e}");
                Err(Denial::Unavailable(
                    "approvals cannot be checked for reuse right now; retry shortly".into(),
                ))
            }
        }
    }

    /// [`TenantAuth::authenticate`] for a request served right here (its proof spent at once).
    pub async fn authenticate_here(
        &self,
        parts: &http::request::Parts,
    ) -> Result<(Principal, Option<SecretToken>), Denial> {
        let mut a = self.authenticate(parts).await?;
        a.spend().await?;
        Ok((a.principal, a.secret))
    }

    /// Establish who is calling. The token is re-validated on every request (through the
    /// cache); sessions are never authentication. A DPoP proof is checked here and spent by
    /// the replica serving the request ([`Authenticated::spend`]).
    pub async fn authenticate(
        &self,
        parts: &http::request::Parts,
    ) -> Result<Authenticated, Denial> {
        let (server, trusted) = match &self.mode {
            Mode::Fixed(p) => {
                let mut principal = p.clone();
                principal.address = peer(parts);
                return Ok(Authenticated {
                    principal,
                    secret: None,
                    unspent: None,
                });
            }
            Mode::OAuth(s, trusted) => (s, trusted),
        };
        let presented = credential::presented(parts)?.ok_or(Denial::Missing)?;
        match (self.dpop, presented.scheme()) {
            (DpopMode::Off, Scheme::Dpop) => {
                return Err(Denial::InvalidToken(
                    "this resource does not accept DPoP; present a Bearer token".into(),
                ));
            }
            (DpopMode::Required, Scheme::Bearer) => {
                return Err(Denial::InvalidToken(
                    "this resource accepts only DPoP-bound tokens, presented with `Authorization: DPoP` and a proof".into(),
                ));
            }
            _ => {}
        }
        let token = presented.token();
        let proof = match presented {
            credential::Presented::Dpop { token, proof } => Some(server.dpop.check(
                proof,
                parts.method.as_str(),
                &self.public_url(parts),
                token,
                jsonwebtoken::get_current_timestamp(),
            )?),
            credential::Presented::Bearer(_) => None,
        };
        let peer = peer(parts);
        let t = server
            .validate(
                token,
                proof.as_ref().map(|p| p.jkt.as_str()),
                &self.audiences,
                trusted,
                peer,
            )
            .await?;
        match (&t.cnf_jkt, &proof) {
            (Some(_), None) => {
                return Err(Denial::InvalidToken(
                    "the token is DPoP-bound (cnf.jkt): present it with `Authorization: DPoP` and a proof".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(Denial::InvalidToken(
                    "the token is not DPoP-bound (it has no cnf.jkt): present it as Bearer".into(),
                ));
            }
            (Some(bound), Some(p)) if *bound != p.jkt => {
                return Err(Denial::InvalidDpopProof(
                    "the proof is signed with another key than the one the token is bound to (cnf.jkt)".into(),
                ));
            }
            _ => {}
        }
        let secret = SecretToken {
            token: Arc::from(token),
            issuer: t.issuer.clone(),
        };
        let principal = Principal {
            tenant: self.tenant.clone(),
            issuer: Some(t.issuer),
            subject: t.subject,
            client_id: t.client_id,
            scopes: t.scopes,
            claims: t.claims,
            credential: Some(presented.scheme()),
            approvals: t.approvals,
            all_scopes: false,
            address: peer,
        };
        Ok(Authenticated {
            principal,
            secret: Some(secret),
            unspent: proof.map(|p| (server.clone(), p)),
        })
    }
}

/// The address a request came from (its TCP peer), where the listener recorded it.
fn peer(parts: &http::request::Parts) -> Option<std::net::IpAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// For the fuzz targets: validate `token` as a JWT no issuer trusts (every decoding step
/// runs; the answer must be a refusal).
#[cfg(feature = "fuzzing")]
pub(crate) async fn fuzz_validate(token: &str) -> bool {
    let rules = jwt::JwtRules {
        leeway: 60,
        require_at_jwt: false,
    };
    let audiences = jwt::Audiences::new("https://gateway.example/mcp".into(), &Default::default());
    jwt::validate(token, &audiences, &[], &rules).await.is_err()
}

#[cfg(test)]
mod tests {
    use super::{Denial, TenantAuth, metadata_url_for};

    /// #29: an authorization server's claims challenge reaches the client base64-encoded in
    /// the RFC 9470 challenge, and its text cannot break out of the quoted parameter.
    #[test]
    fn a_user_authentication_challenge_carries_the_claims() {
        use base64::Engine as _;
        let auth = TenantAuth::new(
            std::sync::Arc::from("t"),
            "https://gw.example/mcp".into(),
            &toml::from_str("id = \"t\"").unwrap(),
            &crate::config::AuthConfig::default(),
            None,
        );
        let claims = r#"{"access_token":{"capolids":{"essential":true,"values":["c1"]}}}"#;
        let resp = auth
            .challenge(
                &Denial::UserAuthentication {
                    description: "sign in \"again\", error=\"forged\"".into(),
                    claims: Some(claims.into()),
                },
                None,
                Some(super::Scheme::Bearer),
            )
            .response();
        assert_eq!(resp.status(), 401);
        let header = resp.headers()["www-authenticate"].to_str().unwrap();
        assert!(
            header.starts_with("Bearer error=\"insufficient_user_authentication\""),
            "{header}"
        );
        assert!(!header.contains("error=\"forged\""), "{header}");
        let encoded = base64::engine::general_purpose::STANDARD.encode(claims);
        assert!(
            header.contains(&format!("claims=\"{encoded}\"")),
            "{header}"
        );
    }

    #[test]
    fn metadata_urls_are_path_inserted() {
        assert_eq!(
            metadata_url_for("https://gw.example/mcp"),
            "https://gw.example/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            metadata_url_for("http://127.0.0.1:8080/t/a/mcp"),
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource/t/a/mcp"
        );
    }
}
