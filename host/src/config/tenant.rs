//! `[[tenant]]` with its quota, downstream services and plugin settings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::LimitsSection;

/// `[tenant.quota]`: what one tenant may consume. Unset keys are unlimited, except
/// `max_instances`, which defaults to an even share of `sandbox.max_instances`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// JSON-RPC requests per minute for the whole tenant (token bucket).
    pub requests_per_minute: Option<u32>,
    /// How many of them may arrive at once (the bucket size). Default: requests_per_minute.
    pub burst: Option<u32>,
    /// JSON-RPC requests per minute for each subject (user or client) of the tenant.
    pub subject_requests_per_minute: Option<u32>,
    /// The per-subject bucket size. Default: subject_requests_per_minute.
    pub subject_burst: Option<u32>,
    /// JSON-RPC requests of this tenant in progress at once; more are refused with 429.
    pub max_concurrent_requests: Option<usize>,
    /// Plugin instances this tenant may run at once, its share of `sandbox.max_instances`;
    /// calls beyond wait (within their deadline). The shares of all tenants must fit in the
    /// pool, so one tenant can never take another's instances. Default: an even share of
    /// what explicit shares leave.
    pub max_instances: Option<u32>,
}

/// `[[tenant]] dpop`: whether the tenant accepts DPoP-bound tokens, and whether it insists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DpopMode {
    /// Bearer tokens only (a DPoP-bound token is still refused as Bearer).
    Off,
    /// DPoP or Bearer.
    #[default]
    Allowed,
    /// DPoP only.
    Required,
}

/// `[[tenant]] challenges`: the forms an authorization challenge on a tool call takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Challenges {
    /// The HTTP challenge only.
    Transport,
    /// The HTTP challenge, and the same challenge in-band in the body's tool result.
    #[default]
    Both,
}

/// `[[tenant]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Stable identifier, `[a-z0-9-]{1,64}`.
    pub id: String,
    /// The MCP endpoint path for this tenant. Default `/mcp` for the first tenant, else
    /// `/t/<id>/mcp`.
    pub path: Option<String>,
    /// Host names (optionally `host:port`) this tenant answers for. Tenants may share a path
    /// when their hosts differ; a tenant without hosts answers its path for any host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The tenant's resource URL (its token audience and metadata document). Default:
    /// `server.public_url` + path, or with `hosts`, the public URL's scheme + the first host
    /// + path.
    pub resource: Option<String>,
    /// Issuers (from `[[auth.issuer]]`, by `issuer` URL) whose tokens this tenant accepts.
    /// Default: all of them.
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Token audiences this tenant accepts besides its resource URL, per issuer: what an
    /// identity provider that does not put the resource in `aud` puts there instead (Entra
    /// ID: the application's client id GUID or its `api://…` application id URI), e.g.
    /// `{ "https://login.microsoftonline.com/<tid>/v2.0" = ["<app guid>"] }`. An audience is
    /// one tenant's only: never another tenant's resource or listed audience.
    #[serde(default)]
    pub audiences: BTreeMap<String, Vec<String>>,
    /// DPoP (RFC 9449) sender-constrained tokens: `"allowed"` (the default: a `DPoP` token
    /// with its proof, or a plain Bearer token), `"required"` (only DPoP: a Bearer token is
    /// refused) or `"off"` (only Bearer). A DPoP-bound token (`cnf.jkt`) presented as Bearer
    /// is refused whatever this says. Proof checks: `[auth.dpop]`.
    #[serde(default)]
    pub dpop: DpopMode,
    /// How a refusal that more authorization would cure reaches the client on a tool call:
    /// `"both"` (the default: the HTTP 401/403 challenge, and in its body a tool result with
    /// `isError`, `_meta["mcp/www_authenticate"]` and the structured denial, for clients that
    /// act only on an in-band challenge), or `"transport"` (the HTTP challenge alone).
    #[serde(default)]
    pub challenges: Challenges,
    /// Rate limits and concurrency caps.
    #[serde(default)]
    pub quota: QuotaConfig,
    /// Plugin files (`.wasm`) or directories of them, relative to this file.
    #[serde(default)]
    pub plugins: Vec<PathBuf>,
    /// Limits for this tenant's plugins (override `[limits]`).
    #[serde(default)]
    pub limits: LimitsSection,
    /// Per-plugin settings, keyed by plugin name (the file stem).
    #[serde(default)]
    pub plugin: BTreeMap<String, PluginSettings>,
    /// Downstream services plugins may call through the `downstream` capability.
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceConfig>,
    /// The tenant's Cedar policies (#33): every decision also asks them.
    #[serde(default)]
    pub policy: Option<PolicyConfig>,
    /// What the audit record keeps of this tenant's calls beyond the decision.
    #[serde(default)]
    pub audit: TenantAuditConfig,
}

/// `[tenant.audit]`: what the audit record keeps of this tenant's calls.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantAuditConfig {
    /// Tools whose call arguments are recorded (cut at `[audit] max_argument_bytes`). None
    /// by default: arguments may carry personal data.
    #[serde(default)]
    pub arguments: Vec<String>,
}

/// `[tenant.policy]`: Cedar policy files, and whether they are enforced.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Policy files (`.cedar`), relative to this file; each is read whole and watched.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Plugins whose suggested policies (the `<name>.cedar` shipped beside the component)
    /// this tenant enables, with the files' policies.
    #[serde(default)]
    pub suggested: Vec<String>,
    /// `enforce` (the default) or `shadow`: evaluated and logged, never refusing.
    #[serde(default)]
    pub mode: PolicyMode,
}

/// `[tenant.policy] mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    /// A denial refuses the request.
    #[default]
    Enforce,
    /// A denial is logged ("would deny") and the request goes on.
    Shadow,
}

/// `[[tenant.service]]`: a logical downstream service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The name plugins use, `[a-z0-9-]{1,64}`.
    pub name: String,
    /// Scheme, host, port and path prefix every request stays under.
    pub base_url: String,
    /// How the gateway authenticates to the service.
    #[serde(default)]
    pub credential: CredentialMode,
    /// With a credential from an authorization server: the audience (resource) the token is
    /// for, sent as the issuer's `target_parameters` say. Required except with
    /// `"on-behalf-of"`, whose target is in `scopes`.
    pub audience: Option<String>,
    /// With a credential from an authorization server: scopes to request (default: none
    /// named, so the AS decides; for an exchange, the caller's). With `"on-behalf-of"`:
    /// required, the downstream API's scopes (`api://<app>/.default`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The authorization server that issues this service's tokens (an `[[auth.issuer]]`
    /// URL). With `token-exchange`, only callers whose token this issuer issued can reach the
    /// service (default: any trusted issuer with an exchange client, each exchanging its own
    /// tokens); with `client-credentials`, where the gateway's token comes from (default:
    /// the `[exchange]` issuer).
    pub issuer: Option<String>,
    /// With `credential = "static"`: environment variable holding the header value.
    pub header_env: Option<String>,
    /// With `credential = "static"`: the header to send it in. Default `authorization`.
    pub header_name: Option<String>,
    /// Per-request timeout, in milliseconds. Default 10000.
    #[serde(default = "default_service_timeout")]
    pub timeout_ms: u64,
    /// Largest request body a plugin may send, in bytes. Default 1 MiB.
    #[serde(default = "default_service_bytes")]
    pub max_request_bytes: usize,
    /// Largest response body returned to the plugin, in bytes. Default 1 MiB.
    #[serde(default = "default_service_bytes")]
    pub max_response_bytes: usize,
    /// With `credential = "user-consent"`: the service's own OAuth provider.
    pub provider: Option<ProviderConfig>,
    /// Request headers plugins may send to this service beyond the few every service takes
    /// (content negotiation, conditional requests, idempotency keys): an API's own headers,
    /// such as `x-github-api-version`. Every other header a plugin sets is dropped.
    #[serde(default)]
    pub headers: Vec<String>,
}

/// `[tenant.service.provider]`: a third-party OAuth provider (GitHub, Slack, Google style)
/// where each user consents once; the gateway is its client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The provider's issuer, for RFC 8414 / OIDC discovery of its endpoints (or give both
    /// endpoints instead).
    pub issuer: Option<String>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    /// The gateway's client id at the provider.
    pub client_id: String,
    /// Environment variable holding the client secret.
    pub client_secret_env: String,
    /// `client_secret_post` (default: most SaaS providers) or `client_secret_basic`.
    #[serde(default = "default_provider_auth")]
    pub auth_method: super::ClientAuthMethod,
    /// Scopes to ask the user for.
    #[serde(default)]
    pub scopes: Vec<String>,
}

fn default_provider_auth() -> super::ClientAuthMethod {
    super::ClientAuthMethod::ClientSecretPost
}

fn default_service_timeout() -> u64 {
    10_000
}

fn default_service_bytes() -> usize {
    1 << 20
}

/// How the gateway authenticates to a downstream service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialMode {
    /// No credential.
    #[default]
    None,
    /// A fixed header value from the environment (local and stdio deployments).
    Static,
    /// RFC 8693: the caller's token exchanged for one for this service (see `[exchange]`).
    TokenExchange,
    /// RFC 7523 §2.1: the caller's token presented as an assertion grant
    /// (`urn:ietf:params:oauth:grant-type:jwt-bearer`) for a token for this service.
    JwtBearer,
    /// Microsoft Entra ID's on-behalf-of request: the RFC 7523 grant with
    /// `requested_token_use=on_behalf_of`, the downstream API named by `scopes`
    /// (`api://…/.default`), no `resource`.
    OnBehalfOf,
    /// The gateway's own token from the `client_credentials` grant, for services called as
    /// the gateway rather than for a user (see `[exchange]`).
    ClientCredentials,
    /// The user's own grant at the service's OAuth provider (`[tenant.service.provider]`),
    /// obtained once with their consent (URL elicitation) and kept sealed in `[vault]`.
    UserConsent,
}

impl CredentialMode {
    /// Whether tokens for this service come from the caller's authorization server.
    pub fn uses_authorization_server(self) -> bool {
        self.acts_for_caller() || self == Self::ClientCredentials
    }

    /// Whether the token is obtained for the caller, with the caller's own token, at the
    /// issuer that issued it.
    pub fn acts_for_caller(self) -> bool {
        matches!(
            self,
            Self::TokenExchange | Self::JwtBearer | Self::OnBehalfOf
        )
    }

    /// The configuration word.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Static => "static",
            Self::TokenExchange => "token-exchange",
            Self::JwtBearer => "jwt-bearer",
            Self::OnBehalfOf => "on-behalf-of",
            Self::ClientCredentials => "client-credentials",
            Self::UserConsent => "user-consent",
        }
    }
}

/// `[tenant.plugin.<name>]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginSettings {
    /// Limits for this plugin (override the tenant's).
    #[serde(flatten)]
    pub limits: LimitsSection,
    /// Scope overrides: tool or prompt name, resource URI or URI template → scopes required
    /// (replaces what the plugin declares).
    pub scopes: BTreeMap<String, Vec<String>>,
    /// Configuration values passed to the plugin in every call context.
    pub config: BTreeMap<String, String>,
    /// Downstream services (by name) this plugin may call; none by default.
    pub services: Vec<String>,
    /// Claim rules: tool name → claim → value the claim must equal (or, for a list, contain),
    /// e.g. `{ "admin.reset" = { groups = "admin" } }`. Claims must be listed in `auth.claims`.
    pub require_claims: BTreeMap<String, BTreeMap<String, String>>,
    /// The tools to serve (an allow-list); default: every tool the plugin declares.
    pub tools: Option<Vec<String>>,
    /// Tools a person must approve call by call (RFC 9396 authorization details in the
    /// caller's token), by tool name, e.g. `{ "payments.refund" = { type = "payment_refund",
    /// bind = ["amount", "currency", "account"] } }`.
    pub approvals: BTreeMap<String, ApprovalConfig>,
}

/// `[tenant.plugin.<name>] approvals.<tool>`: what approving one call of the tool takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalConfig {
    /// The `authorization_details` `type` of the approval, e.g. `payment_refund`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The arguments whose values the approval binds; empty (the default): the digest of the
    /// call's canonical arguments, so any change to any argument needs a new approval.
    #[serde(default)]
    pub bind: Vec<String>,
    /// One approval authorizes one call. Default true.
    #[serde(default = "yes")]
    pub single_use: bool,
    /// How long after the token carrying it was issued an approval may be used, in seconds.
    /// Default 300.
    #[serde(default = "five_minutes")]
    pub max_age_secs: u64,
}

fn yes() -> bool {
    true
}

fn five_minutes() -> u64 {
    300
}
