//! `[auth]`, `[[auth.issuer]]` (with introspection) and `[exchange]`: who may call, and
//! the gateway as an OAuth client.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// JWS algorithms an issuer may be configured with: asymmetric only.
pub const ACCEPTED_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `"none"` (local development and the conformance suite only) or `"oauth"`.
    pub mode: AuthMode,
    /// With `mode = "none"`: the identity every request gets.
    pub anonymous: Identity,
    /// With `mode = "oauth"`: the authorization servers whose tokens are accepted.
    #[serde(rename = "issuer")]
    pub issuers: Vec<IssuerConfig>,
    /// Scopes advertised in the protected resource metadata (never `offline_access`).
    pub scopes_supported: Vec<String>,
    /// `scope` in a 401 challenge: what a client should ask for first. Default: `scopes_supported`.
    pub challenge_scopes: Option<Vec<String>>,
    /// Scope hierarchy: a scope and the narrower scopes it implies, e.g.
    /// `{ "mcp:write" = ["mcp:read"] }`. Applied transitively.
    pub scope_implies: BTreeMap<String, Vec<String>>,
    /// Non-secret claims passed to plugins in the call context (e.g. `["email", "groups"]`).
    pub claims: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds. Default 30.
    pub leeway_secs: u64,
    /// Require `typ: at+jwt` (RFC 9068) in JWT headers. Default false (many IdPs send `JWT`).
    pub require_at_jwt: bool,
    /// Longest token accepted, in bytes. Default 8192.
    pub max_token_bytes: usize,
    /// Validated tokens remembered (by hash, until they expire). Default 10000.
    pub token_cache_entries: usize,
    /// Refresh every issuer's JWKS this often, in seconds. Default 600.
    pub jwks_refresh_secs: u64,
    /// Least time between JWKS fetches triggered by unknown key ids, in seconds. Default 30.
    pub jwks_min_refresh_secs: u64,
    /// Longest an introspection answer is trusted, in seconds (a revoked opaque token stops
    /// working within it). Default 30.
    pub introspection_cache_secs: u64,
    /// Refused introspections one client address may cause per minute; then 429 until the
    /// minute is over. Default 30.
    pub introspection_failures_per_minute: u32,
    /// What `tools/list` shows: every tool with its required scopes (`"all"`, the default, so
    /// clients can step up) or only the tools the caller may call (`"permitted"`).
    pub tools_list: ToolsList,
    /// `[auth.dpop]`: how DPoP proofs (RFC 9449) are checked, for tenants that accept them
    /// (`[[tenant]] dpop`).
    pub dpop: DpopConfig,
}

/// `[auth.dpop]`: the checks on DPoP proofs (RFC 9449) every tenant that accepts them shares.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpopConfig {
    /// JWS algorithms accepted for proofs (asymmetric only). Default: ES256, ES384, RS256,
    /// PS256, EdDSA.
    pub algorithms: Vec<String>,
    /// How old (or how far in the future) a proof's `iat` may be, in seconds. Default 300.
    pub max_age_secs: u64,
    /// Require a server nonce in every proof (RFC 9449 §9): a proof without the current one
    /// is answered `use_dpop_nonce` with a fresh `DPoP-Nonce`. Nonces are stateless (a keyed
    /// MAC of the time), valid for `nonce_lifetime_secs` on every replica sharing the secret.
    pub nonce: bool,
    /// How long a server nonce stays valid, in seconds. Default 300.
    pub nonce_lifetime_secs: u64,
    /// Proofs (`jti`s) remembered against replay on this replica; with `[cluster]` they are
    /// also recorded in Redis, for every replica. A proof is refused while it would not fit.
    /// Default 100000.
    pub replay_cache_entries: usize,
}

/// Proof algorithms accepted by default: what the MCP SDK clients sign with.
pub const DEFAULT_DPOP_ALGORITHMS: &[&str] = &["ES256", "ES384", "RS256", "PS256", "EdDSA"];

impl Default for DpopConfig {
    fn default() -> Self {
        Self {
            algorithms: DEFAULT_DPOP_ALGORITHMS
                .iter()
                .map(|a| (*a).to_string())
                .collect(),
            max_age_secs: 300,
            nonce: false,
            nonce_lifetime_secs: 300,
            replay_cache_entries: 100_000,
        }
    }
}

/// `auth.tools_list`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolsList {
    /// Every tool, with its required scopes in `_meta`.
    #[default]
    All,
    /// Only tools whose scopes and claim rules the caller satisfies.
    Permitted,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::None,
            anonymous: Identity::default(),
            issuers: Vec::new(),
            scopes_supported: Vec::new(),
            challenge_scopes: None,
            scope_implies: BTreeMap::new(),
            claims: Vec::new(),
            leeway_secs: 30,
            require_at_jwt: false,
            max_token_bytes: 8192,
            token_cache_entries: 10_000,
            jwks_refresh_secs: 600,
            jwks_min_refresh_secs: 30,
            introspection_cache_secs: 30,
            introspection_failures_per_minute: 30,
            tools_list: ToolsList::All,
            dpop: DpopConfig::default(),
        }
    }
}

/// `[[auth.issuer]]`: an authorization server whose access tokens are accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The issuer identifier, exactly as in its metadata and in tokens' `iss`.
    pub issuer: String,
    /// Accepted JWS algorithms. Default `["RS256", "ES256"]`. `none` and HMAC are refused.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The JWKS URL; default: discovered from the issuer's RFC 8414 / OIDC metadata.
    pub jwks_uri: Option<String>,
    /// Validate opaque (non-JWT) tokens with this issuer's RFC 7662 introspection endpoint.
    pub introspection: Option<IntrospectionConfig>,
    /// The gateway as an OAuth client of this issuer: exchanges (RFC 8693) of tokens this
    /// issuer issued, and client-credentials tokens for services that name it. The same
    /// keys as `[exchange]`, without `issuer`.
    pub exchange: Option<ExchangeConfig>,
    /// The claim naming the user in this issuer's tokens: the caller's subject everywhere in
    /// the gateway (sessions, tasks, quotas, vault grants) and what the consent flow's
    /// sign-in must match. Default `sub`. Entra ID: `oid` (its `sub` is pairwise: it differs
    /// between the user's MCP clients, and between an access token and an ID token). A
    /// token without this claim is refused.
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// The longest lifetime (`exp` − `iat`, or what is left of it when the token has no
    /// `iat`) a token from this issuer may have, in seconds; a longer-lived token is refused
    /// (short-lived bearer tokens limit what a stolen one is worth). Default: no limit.
    pub max_token_lifetime_secs: Option<u64>,
}

fn default_subject_claim() -> String {
    "sub".into()
}

/// `[auth.issuer.introspection]`: the gateway's own client credentials for introspection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The gateway's client id at the authorization server.
    pub client_id: String,
    /// Environment variable holding the client secret (sent with HTTP Basic).
    pub client_secret_env: String,
    /// The endpoint; default: `introspection_endpoint` from the issuer's metadata.
    pub endpoint: Option<String>,
    /// The prefix this issuer's opaque tokens start with. A token is introspected at exactly
    /// one issuer: the one whose prefix it carries (the longest match), else the tenant's one
    /// introspecting issuer without a prefix. Required when a tenant trusts more than one
    /// introspecting issuer.
    pub token_prefix: Option<String>,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}

/// How callers are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No authentication: every request acts as `auth.anonymous`. Logged loudly.
    None,
    /// OAuth 2.1 bearer tokens (see the resource-server documentation).
    Oauth,
}

/// A fixed identity (anonymous HTTP callers, or the stdio user).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Identity {
    /// The subject plugins see.
    pub subject: String,
    /// Scopes granted; `"*"` grants every scope.
    pub scopes: Vec<String>,
}

impl Default for Identity {
    fn default() -> Self {
        Self {
            subject: "anonymous".into(),
            scopes: vec!["*".into()],
        }
    }
}

/// `[exchange]` and `[auth.issuer.exchange]`: the gateway as an OAuth client of an
/// authorization server, for services with `credential = "token-exchange"` (RFC 8693) or
/// `"client-credentials"`. A caller's token is exchanged only at the issuer that issued it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    /// The gateway's client id at the authorization server.
    pub client_id: String,
    /// How the gateway authenticates at the token endpoint. Default `client_secret_basic`.
    #[serde(default)]
    pub auth_method: ClientAuthMethod,
    /// With `client_secret_basic` or `client_secret_post`: environment variable holding the
    /// client secret.
    pub client_secret_env: Option<String>,
    /// With `private_key_jwt`: PKCS#8 PEM private key file (relative to this file).
    pub private_key_file: Option<PathBuf>,
    /// With `private_key_jwt`: `RS256` (default), `PS256` or `ES256`.
    #[serde(default = "default_assertion_alg")]
    pub private_key_alg: String,
    /// With `private_key_jwt`: the `kid` to put in the assertion header, if the AS needs one.
    pub key_id: Option<String>,
    /// With `private_key_jwt`: the PEM certificate of the key (relative to this file); its
    /// SHA-256 thumbprint goes in the assertion header as `x5t#S256`, as Entra ID requires
    /// of certificate credentials.
    pub certificate_file: Option<PathBuf>,
    /// `[exchange]` only: the issuer this client belongs to; default: the first trusted
    /// issuer. (In `[auth.issuer.exchange]` it is the enclosing issuer.)
    pub issuer: Option<String>,
    /// How a token request names the service's `audience`: `["audience"]` (RFC 8693's
    /// parameter), `["resource"]` (RFC 8707), both, or `[]` (the target is in the scopes, as
    /// at Entra ID, which refuses `resource`). Default per grant: `audience` for
    /// token-exchange, `resource` for jwt-bearer and client-credentials, none for
    /// on-behalf-of.
    pub target_parameters: Option<Vec<TargetParameter>>,
}

/// A token request parameter that names the target service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetParameter {
    /// RFC 8707 `resource`.
    Resource,
    /// RFC 8693 `audience`.
    Audience,
}

fn default_assertion_alg() -> String {
    "RS256".into()
}

/// How the gateway authenticates at the authorization server's token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    /// HTTP Basic with a secret from the environment.
    #[default]
    ClientSecretBasic,
    /// The secret from the environment in the form body (`client_id`, `client_secret`), for
    /// servers that take no Basic authentication.
    ClientSecretPost,
    /// RFC 7523 JWT assertion signed with the gateway's private key.
    PrivateKeyJwt,
}
