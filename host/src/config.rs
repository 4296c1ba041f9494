//! The configuration file: one TOML document, parsed and validated before anything serves.
//!
//! Owns the schema (every key, its default and its meaning) and the checks that need only the
//! file itself. Every error names the file, the key and the problem. Secrets never appear
//! inline: keys ending in `_env` name an environment variable to read them from. This module
//! must not open sockets or load plugins; the caller does that with the validated [`Config`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// JWS algorithms an issuer may be configured with: asymmetric only.
pub const ACCEPTED_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// `sandbox.max_instances` unless set: the pool size.
pub const DEFAULT_MAX_INSTANCES: u32 = 200;
/// `sandbox.max_memory_mb` unless set: the ceiling on any plugin's memory.
pub const DEFAULT_MAX_MEMORY_MB: usize = 256;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP listener and transport settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// How callers are authenticated.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Engine-wide sandbox settings.
    #[serde(default)]
    pub sandbox: SandboxSection,
    /// Limits applied to every plugin unless its tenant overrides them.
    #[serde(default)]
    pub limits: LimitsSection,
    /// Identity for `portcullis stdio` (there is no token on stdio).
    #[serde(default)]
    pub stdio: StdioConfig,
    /// The embedded development authorization server (off unless enabled).
    #[serde(default)]
    pub dev_as: DevAsConfig,
    /// Token exchange for downstream services with `credential = "token-exchange"`.
    pub exchange: Option<ExchangeConfig>,
    /// Log format and OpenTelemetry export.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// The tenants; a single-tenant deployment has exactly one.
    #[serde(rename = "tenant", default)]
    pub tenants: Vec<TenantConfig>,
    /// The directory the file was read from; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file this configuration came from, for messages.
    #[serde(skip)]
    pub source: PathBuf,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// The URL clients use to reach this gateway (scheme, host, port), e.g.
    /// `https://mcp.example.com`. Resource URLs and allowed hosts derive from it.
    /// Default: `http://<listen>`.
    pub public_url: Option<String>,
    /// Extra `Host` header values to accept (DNS-rebinding protection). The public URL's host
    /// and, on a loopback listener, `localhost`/`127.0.0.1`/`::1` are always accepted.
    pub allowed_hosts: Vec<String>,
    /// Browser origins allowed to call the gateway (`scheme://host:port`). Requests with an
    /// `Origin` outside this list get 403. Default: the public URL's origin and, on a loopback
    /// listener, loopback origins on any port.
    pub allowed_origins: Vec<String>,
    /// Largest request body accepted (bytes); larger bodies get 413. Default 4 MiB.
    pub max_body_bytes: usize,
    /// Most live MCP sessions (2025 revisions) at once; more `initialize` calls get 503.
    pub max_sessions: usize,
    /// Most live sessions one caller (tenant, issuer, subject) may hold; its next
    /// `initialize` closes its own oldest session, so one caller can neither take every
    /// slot nor lock itself out. Default 50 (at most `max_sessions`).
    pub max_sessions_per_subject: usize,
    /// Sessions idle this long are closed. Default 600 s.
    pub session_idle_timeout_secs: u64,
    /// Environment variable holding the key that protects `requestState` (at least 32
    /// bytes). Set it when several gateway instances serve the same clients; otherwise a
    /// random per-process key is used.
    pub state_key_env: Option<String>,
    /// Allow serving with `auth.mode = "none"` on a non-loopback address. Never in production.
    pub allow_unauthenticated_public: bool,
    /// The scope a token needs for `GET /admin/plugins` (with OAuth on; with it off, only
    /// loopback clients are served). Default `portcullis:admin`.
    pub admin_scope: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_body_bytes: 4 << 20,
            max_sessions: 1000,
            max_sessions_per_subject: 50,
            session_idle_timeout_secs: 600,
            state_key_env: None,
            allow_unauthenticated_public: false,
            admin_scope: "portcullis:admin".into(),
        }
    }
}

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

/// `[dev_as]`: the embedded development authorization server, for the quickstart and tests.
/// It serves at `<public_url>/dev-as`; with `auth.mode = "oauth"` and no `[[auth.issuer]]` the
/// gateway trusts it automatically. Never enable it in production.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevAsConfig {
    /// Serve the development authorization server.
    pub enabled: bool,
    /// Approve every authorization request as the first user, without a consent page
    /// (headless tests). Default false: a consent page with a user picker.
    pub auto_approve: bool,
    /// The users the consent page offers (the first is the auto-approve user).
    pub users: Vec<String>,
    /// Open dynamic client registration (RFC 7591).
    pub dcr: bool,
    /// Client ID metadata documents (https `client_id` URLs).
    pub cimd: bool,
    /// Pre-registered clients.
    pub clients: Vec<DevClient>,
    /// Access token lifetime, in seconds. Default 600.
    pub access_token_ttl_secs: u64,
    /// Refresh token lifetime, in seconds. Default 86400.
    pub refresh_token_ttl_secs: u64,
    /// Where to keep the signing key so restarts keep it; default: a new key at every start.
    pub key_file: Option<PathBuf>,
    /// Test hook: fixed https `client_id` URLs served from local files instead of the network,
    /// so client ID metadata document flows stay hermetic.
    pub cimd_documents: BTreeMap<String, PathBuf>,
    /// Audiences (downstream APIs) a confidential client may exchange a user's token for
    /// (RFC 8693), in addition to every `credential = "token-exchange"` service's audience.
    /// Anything else is `invalid_target`.
    pub exchange_audiences: Vec<String>,
}

impl Default for DevAsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            auto_approve: false,
            users: vec!["alice".into(), "bob".into()],
            dcr: true,
            cimd: true,
            clients: Vec::new(),
            access_token_ttl_secs: 600,
            refresh_token_ttl_secs: 86_400,
            key_file: None,
            exchange_audiences: Vec::new(),
            cimd_documents: BTreeMap::new(),
        }
    }
}

/// `[[dev_as.clients]]`: a pre-registered client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevClient {
    /// The client id.
    pub client_id: String,
    /// Display name on the consent page.
    pub name: Option<String>,
    /// Environment variable with the secret of a confidential client; none: a public client.
    pub client_secret_env: Option<String>,
    /// Exact redirect URIs.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Grant types. Default: authorization_code and refresh_token.
    #[serde(default = "default_grants")]
    pub grant_types: Vec<String>,
}

fn default_grants() -> Vec<String> {
    vec!["authorization_code".into(), "refresh_token".into()]
}

/// `[stdio]`: who the local user of `portcullis stdio` is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StdioConfig {
    /// The tenant to serve. Default: the first tenant.
    pub tenant: Option<String>,
    /// The identity; `PORTCULLIS_SUBJECT` and `PORTCULLIS_SCOPES` (space-separated) in the
    /// environment override it.
    #[serde(flatten)]
    pub identity: Identity,
}

impl Default for StdioConfig {
    fn default() -> Self {
        Self {
            tenant: None,
            identity: Identity {
                subject: "local-user".into(),
                scopes: vec!["*".into()],
            },
        }
    }
}

/// `[sandbox]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSection {
    /// Plugin instances that may exist at once, across all tenants. Default 200.
    pub max_instances: u32,
    /// Hard ceiling on any plugin's memory, in MiB. Default 256.
    pub max_memory_mb: usize,
    /// Where compiled plugins are cached across restarts (created owner-only; must be a
    /// directory only this gateway writes). Default `$XDG_CACHE_HOME/portcullis` or
    /// `~/.cache/portcullis`; `""` turns the cache off.
    pub cache_dir: Option<PathBuf>,
    /// Watch plugin files, directories and manifests, and reload on change. Default true.
    pub watch: bool,
    /// How long changes must settle before a reload, in milliseconds. Default 300.
    pub reload_debounce_ms: u64,
}

impl Default for SandboxSection {
    fn default() -> Self {
        Self {
            max_instances: DEFAULT_MAX_INSTANCES,
            max_memory_mb: DEFAULT_MAX_MEMORY_MB,
            cache_dir: None,
            watch: true,
            reload_debounce_ms: 300,
        }
    }
}

/// `[limits]` and `[tenant.limits]`: per-call limits for plugins. Unset keys inherit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Deadline for one call, in milliseconds. Default 30000.
    pub deadline_ms: Option<u64>,
    /// Memory one instance may use, in MiB. Default 64.
    pub memory_mb: Option<usize>,
    /// Concurrent calls into one plugin. Default 64.
    pub max_concurrency: Option<usize>,
}

/// `[telemetry]`: log lines and OpenTelemetry export. Unset keys fall back to the standard
/// `OTEL_*` environment variables; export is off unless an endpoint is set in either place.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `false` turns export off even when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
    pub enabled: Option<bool>,
    /// OTLP/HTTP base URL, e.g. `http://127.0.0.1:4318`; `/v1/traces` and `/v1/metrics` are
    /// appended. Default: `OTEL_EXPORTER_OTLP_ENDPOINT` (and the per-signal variables).
    pub endpoint: Option<String>,
    /// `"http/protobuf"` (default) or `"http/json"`. Default: `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub protocol: Option<String>,
    /// Headers sent with every export (added to `OTEL_EXPORTER_OTLP_HEADERS`).
    pub headers: BTreeMap<String, String>,
    /// Headers whose values are read from environment variables (API keys): name → variable.
    pub headers_env: BTreeMap<String, String>,
    /// `service.name`. Default: `OTEL_SERVICE_NAME`, else `portcullis`.
    pub service_name: Option<String>,
    /// Fraction of new traces to sample (0.0–1.0); a caller's sampling decision is followed.
    /// Default: `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG`, else every trace.
    pub sample_ratio: Option<f64>,
    /// Export metrics as well as traces. Default true.
    pub metrics: bool,
    /// How often metrics are exported, in milliseconds. Default:
    /// `OTEL_METRIC_EXPORT_INTERVAL`, else 60000.
    pub metrics_interval_ms: Option<u64>,
    /// Extra resource attributes (e.g. `deployment.environment.name`), added to
    /// `OTEL_RESOURCE_ATTRIBUTES`.
    pub resource: BTreeMap<String, String>,
    /// Log lines on stderr: `"text"` (default) or `"json"`.
    pub log_format: LogFormat,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            endpoint: None,
            protocol: None,
            headers: BTreeMap::new(),
            headers_env: BTreeMap::new(),
            service_name: None,
            sample_ratio: None,
            metrics: true,
            metrics_interval_ms: None,
            resource: BTreeMap::new(),
            log_format: LogFormat::Text,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

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
    /// With `credential = "token-exchange"` or `"client-credentials"`: the audience (resource)
    /// the token is for.
    pub audience: Option<String>,
    /// With `credential = "token-exchange"` or `"client-credentials"`: scopes to request
    /// (default: none named, so the AS decides; for an exchange, the caller's).
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
    /// The gateway's own token from the `client_credentials` grant, for services called as
    /// the gateway rather than for a user (see `[exchange]`).
    ClientCredentials,
}

impl CredentialMode {
    /// Whether tokens for this service come from the authorization server.
    pub fn uses_authorization_server(self) -> bool {
        matches!(self, Self::TokenExchange | Self::ClientCredentials)
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
    /// With `client_secret_basic`: environment variable holding the client secret.
    pub client_secret_env: Option<String>,
    /// With `private_key_jwt`: PKCS#8 PEM private key file (relative to this file).
    pub private_key_file: Option<PathBuf>,
    /// With `private_key_jwt`: `RS256` (default), `PS256` or `ES256`.
    #[serde(default = "default_assertion_alg")]
    pub private_key_alg: String,
    /// With `private_key_jwt`: the `kid` to put in the assertion header, if the AS needs one.
    pub key_id: Option<String>,
    /// `[exchange]` only: the issuer this client belongs to; default: the first trusted
    /// issuer. (In `[auth.issuer.exchange]` it is the enclosing issuer.)
    pub issuer: Option<String>,
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
    /// RFC 7523 JWT assertion signed with the gateway's private key.
    PrivateKeyJwt,
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
}

/// Read a secret named by an `*_env` key from the environment. The error names the variable,
/// never a value.
pub fn secret_from_env(var: &str) -> Result<String, String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(v),
        Ok(_) => Err(format!("environment variable {var} is empty")),
        Err(std::env::VarError::NotPresent) => {
            Err(format!("environment variable {var} is not set"))
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(format!("environment variable {var} is not valid UTF-8"))
        }
    }
}

/// A configuration problem: which file, which key, what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {problem}")]
pub struct ConfigError {
    /// The configuration file.
    pub file: String,
    /// The key, as a TOML path (e.g. `tenant[0].path`).
    pub key: String,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl Config {
    /// Read and validate `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: "(file)".into(),
            problem: format!("cannot read the file: {e}"),
        })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, path, &base_dir)
    }

    /// Parse and validate `text` as if read from `source`.
    pub fn parse(text: &str, source: &Path, base_dir: &Path) -> Result<Self, ConfigError> {
        let file = source.display().to_string();
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let key = e
                .span()
                .map(|s| locate(text, s.start))
                .unwrap_or_else(|| "(document)".into());
            ConfigError {
                file: file.clone(),
                key,
                problem: e.message().to_string(),
            }
        })?;
        config.base_dir = base_dir.to_path_buf();
        config.source = source.to_path_buf();
        config.validate()?;
        Ok(config)
    }

    fn error(&self, key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.source.display().to_string(),
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// Every check, section by section; the first problem found is the error.
    fn validate(&mut self) -> Result<(), ConfigError> {
        if self.tenants.is_empty() {
            return Err(self.error("tenant", "at least one [[tenant]] is required"));
        }
        self.check_server()?;
        self.check_telemetry()?;
        if let Some(x) = &self.exchange {
            self.check_exchange("exchange", x)?;
        }
        self.validate_auth()?;
        self.route_tenants()?;
        for i in 0..self.tenants.len() {
            self.check_tenant(i)?;
        }
        self.check_limits()?;
        self.check_instance_shares()?;
        if let Some(t) = &self.stdio.tenant
            && !self.tenants.iter().any(|x| &x.id == t)
        {
            return Err(self.error("stdio.tenant", format!("no tenant with id `{t}`")));
        }
        Ok(())
    }

    /// `[server]` and the sandbox pool size.
    fn check_server(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.server.public_url
            && plain_http_url(url).is_none()
        {
            return Err(self.error(
                "server.public_url",
                format!("`{url}` must be an http(s) URL like https://mcp.example.com"),
            ));
        }
        let at_least_one = [
            ("server.max_sessions", self.server.max_sessions),
            (
                "server.max_sessions_per_subject",
                self.server.max_sessions_per_subject,
            ),
            ("sandbox.max_instances", self.sandbox.max_instances as usize),
        ];
        if let Some((key, _)) = at_least_one.iter().find(|(_, n)| *n == 0) {
            return Err(self.error(*key, "must be at least 1"));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(self.error("server.max_body_bytes", "must be at least 1024"));
        }
        if self.auth.mode == AuthMode::None
            && !self.server.listen.ip().is_loopback()
            && !self.server.allow_unauthenticated_public
        {
            return Err(self.error(
                "auth.mode",
                format!(
                    "\"none\" on the non-loopback address {} would let anyone call every tool; \
                     configure OAuth, bind to 127.0.0.1, or set server.allow_unauthenticated_public = true",
                    self.server.listen
                ),
            ));
        }
        Ok(())
    }

    /// `[telemetry]`.
    fn check_telemetry(&self) -> Result<(), ConfigError> {
        let t = &self.telemetry;
        if let Some(p) = &t.protocol
            && !matches!(p.as_str(), "http/protobuf" | "http/json")
        {
            return Err(self.error(
                "telemetry.protocol",
                format!("`{p}` is not supported; use \"http/protobuf\" (OTLP/HTTP, port 4318 on collectors, Jaeger and Tempo) or \"http/json\""),
            ));
        }
        if t.sample_ratio.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
            return Err(self.error("telemetry.sample_ratio", "must be between 0.0 and 1.0"));
        }
        if let Some(e) = &t.endpoint
            && plain_http_url(e).is_none()
        {
            return Err(self.error(
                "telemetry.endpoint",
                format!("`{e}` must be an http(s) URL such as http://127.0.0.1:4318"),
            ));
        }
        Ok(())
    }

    /// Tenant ids, endpoint paths (defaults filled in), hosts and resource URLs: every
    /// request must reach exactly one tenant, and every token be valid at one at most.
    fn route_tenants(&mut self) -> Result<(), ConfigError> {
        let mut ids = std::collections::HashSet::new();
        let mut paths = std::collections::HashSet::new();
        let mut resources = std::collections::HashSet::new();
        for i in 0..self.tenants.len() {
            let t = &self.tenants[i];
            if !is_slug(&t.id) {
                return Err(self.error(
                    format!("tenant[{i}].id"),
                    format!("`{}` must match [a-z0-9-]{{1,64}}", t.id),
                ));
            }
            if !ids.insert(t.id.clone()) {
                return Err(self.error(
                    format!("tenant[{i}].id"),
                    format!("`{}` is used by another tenant", t.id),
                ));
            }
            let path = t.path.clone().unwrap_or_else(|| {
                if i == 0 {
                    "/mcp".into()
                } else {
                    format!("/t/{}/mcp", t.id)
                }
            });
            if !is_endpoint_path(&path) {
                return Err(self.error(
                    format!("tenant[{i}].path"),
                    format!("`{path}` must be an absolute path like /mcp (no trailing slash, not under /.well-known)"),
                ));
            }
            for (j, h) in t.hosts.iter().enumerate() {
                let ok = !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
                if !ok {
                    return Err(self.error(
                        format!("tenant[{i}].hosts[{j}]"),
                        format!("`{h}` must be a host name, optionally with :port"),
                    ));
                }
            }
            let hosts: Vec<String> = if t.hosts.is_empty() {
                vec!["*".into()]
            } else {
                t.hosts.iter().map(|h| h.to_ascii_lowercase()).collect()
            };
            for h in hosts {
                if !paths.insert((path.clone(), h.clone())) {
                    let whom = if h == "*" {
                        "another tenant without hosts".to_string()
                    } else {
                        format!("another tenant for host {h}")
                    };
                    return Err(self.error(
                        format!("tenant[{i}].path"),
                        format!("`{path}` is used by {whom}"),
                    ));
                }
            }
            self.tenants[i].path = Some(path);
            if let Some(r) = &self.tenants[i].resource
                && plain_http_url(r).is_none()
            {
                return Err(self.error(
                    format!("tenant[{i}].resource"),
                    format!("`{r}` must be an http(s) URL without query or fragment"),
                ));
            }
            let resource = self.tenant_resource(&self.tenants[i]);
            if !resources.insert(resource.clone()) {
                return Err(self.error(
                    format!("tenant[{i}].resource"),
                    format!("`{resource}` is another tenant's resource URL too; a token for one would be accepted by both"),
                ));
            }
        }
        Ok(())
    }

    /// One tenant's issuers, quota, plugins, services and plugin settings.
    fn check_tenant(&self, i: usize) -> Result<(), ConfigError> {
        let tenant = &self.tenants[i];
        let trusted = self.trusted_issuers();
        for (j, iss) in tenant.issuers.iter().enumerate() {
            let known = trusted.iter().any(|t| &t.issuer == iss) || *iss == self.dev_as_issuer();
            if !known {
                return Err(self.error(
                    format!("tenant[{i}].issuers[{j}]"),
                    format!("`{iss}` is not an [[auth.issuer]]"),
                ));
            }
        }
        check_quota(&tenant.quota)
            .map_err(|(k, problem)| self.error(format!("tenant[{i}].quota.{k}"), problem))?;
        if let Some(j) = tenant.plugins.iter().position(|p| p.as_os_str().is_empty()) {
            return Err(self.error(format!("tenant[{i}].plugins[{j}]"), "empty path"));
        }
        for (j, svc) in tenant.services.iter().enumerate() {
            self.check_service(tenant, svc).map_err(|(k, problem)| {
                self.error(format!("tenant[{i}].service[{j}].{k}"), problem)
            })?;
        }
        for (name, settings) in &tenant.plugin {
            self.check_plugin_settings(tenant, settings)
                .map_err(|(k, problem)| {
                    self.error(format!("tenant[{i}].plugin.{name}.{k}"), problem)
                })?;
        }
        Ok(())
    }

    /// One `[[tenant.service]]`; the error is (key, problem).
    fn check_service(
        &self,
        tenant: &TenantConfig,
        svc: &ServiceConfig,
    ) -> Result<(), (&'static str, String)> {
        if !is_slug(&svc.name) {
            return Err((
                "name",
                format!("`{}` must match [a-z0-9-]{{1,64}}", svc.name),
            ));
        }
        if plain_http_url(&svc.base_url).is_none() {
            return Err((
                "base_url",
                format!(
                    "`{}` must be an http(s) URL without query, fragment or credentials",
                    svc.base_url
                ),
            ));
        }
        self.check_service_credential(tenant, svc)?;
        if svc.credential == CredentialMode::Static && svc.header_env.is_none() {
            return Err((
                "header_env",
                "credential = \"static\" needs header_env".into(),
            ));
        }
        Ok(())
    }

    /// `[limits]` and every `[tenant.limits]`.
    fn check_limits(&self) -> Result<(), ConfigError> {
        let limits = std::iter::once(("limits".to_string(), &self.limits)).chain(
            self.tenants
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("tenant[{i}].limits"), &t.limits)),
        );
        for (key, l) in limits {
            self.check_limits_section(l)
                .map_err(|(k, problem)| self.error(format!("{key}.{k}"), problem))?;
        }
        Ok(())
    }

    /// One set of per-call limits; the error is (key, problem).
    fn check_limits_section(&self, l: &LimitsSection) -> Result<(), (&'static str, String)> {
        if l.deadline_ms == Some(0) {
            return Err(("deadline_ms", "must be greater than 0".into()));
        }
        if l.memory_mb
            .is_some_and(|mb| mb == 0 || mb > self.sandbox.max_memory_mb)
        {
            return Err((
                "memory_mb",
                format!(
                    "must be between 1 and sandbox.max_memory_mb ({})",
                    self.sandbox.max_memory_mb
                ),
            ));
        }
        if l.max_concurrency == Some(0) {
            return Err(("max_concurrency", "must be at least 1".into()));
        }
        Ok(())
    }

    /// The tenants' instance shares must fit in the pool.
    fn check_instance_shares(&self) -> Result<(), ConfigError> {
        let explicit: u64 = self
            .tenants
            .iter()
            .filter_map(|t| t.quota.max_instances)
            .map(u64::from)
            .sum();
        if explicit > u64::from(self.sandbox.max_instances) {
            return Err(self.error(
                "tenant.quota.max_instances",
                format!(
                    "the tenants' shares add up to {explicit}, more than sandbox.max_instances ({})",
                    self.sandbox.max_instances
                ),
            ));
        }
        if self.tenants.iter().any(|t| t.quota.max_instances.is_none())
            && self.instance_share_default() == 0
        {
            return Err(self.error(
                "tenant.quota.max_instances",
                format!(
                    "the explicit shares leave no instances of sandbox.max_instances ({}) for the tenants without one",
                    self.sandbox.max_instances
                ),
            ));
        }
        Ok(())
    }

    /// Check a gateway OAuth client section (`at` names it in errors).
    fn check_exchange(&self, at: &str, x: &ExchangeConfig) -> Result<(), ConfigError> {
        let missing = match x.auth_method {
            ClientAuthMethod::ClientSecretBasic if x.client_secret_env.is_none() => {
                Some(("client_secret_env", "client_secret_basic"))
            }
            ClientAuthMethod::PrivateKeyJwt if x.private_key_file.is_none() => {
                Some(("private_key_file", "private_key_jwt"))
            }
            _ => None,
        };
        if let Some((key, method)) = missing {
            return Err(self.error(
                format!("{at}.{key}"),
                format!("auth_method = \"{method}\" needs it"),
            ));
        }
        if !matches!(x.private_key_alg.as_str(), "RS256" | "PS256" | "ES256") {
            return Err(self.error(
                format!("{at}.private_key_alg"),
                format!("`{}` is not RS256, PS256 or ES256", x.private_key_alg),
            ));
        }
        Ok(())
    }

    /// Check that a service's tokens can be obtained at an issuer the tenant trusts; the
    /// error is (key, problem).
    fn check_service_credential(
        &self,
        tenant: &TenantConfig,
        svc: &ServiceConfig,
    ) -> Result<(), (&'static str, String)> {
        if !svc.credential.uses_authorization_server() {
            return Ok(());
        }
        if svc.audience.is_none() {
            return Err((
                "audience",
                "\"token-exchange\" and \"client-credentials\" need the audience tokens are for"
                    .into(),
            ));
        }
        let trusted = self.tenant_issuers(tenant);
        if let Some(iss) = &svc.issuer
            && !trusted.contains(iss)
        {
            return Err((
                "issuer",
                format!("`{iss}` is not an issuer this tenant trusts"),
            ));
        }
        let clients: Vec<String> = self
            .exchange_clients()
            .into_iter()
            .map(|(i, _, _)| i)
            .collect();
        match svc.credential {
            CredentialMode::TokenExchange => {
                let can = trusted
                    .iter()
                    .filter(|i| svc.issuer.as_ref().is_none_or(|s| s == *i))
                    .any(|i| clients.contains(i));
                if !can {
                    return Err((
                        "credential",
                        format!(
                            "no issuer this tenant trusts can exchange tokens for it (a caller's token is exchanged only at its own issuer): \
                             give {} an [auth.issuer.exchange] client, or an [exchange] section",
                            svc.issuer.clone().unwrap_or_else(|| trusted.join(" or "))
                        ),
                    ));
                }
            }
            _ => {
                let at = svc
                    .issuer
                    .clone()
                    .or_else(|| self.default_exchange_issuer());
                if !at.is_some_and(|i| clients.contains(&i)) {
                    return Err((
                        "credential",
                        "\"client-credentials\" needs an [exchange] section (or an [auth.issuer.exchange] client at the service's `issuer`) with the gateway's client credentials".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The issuers `tenant` accepts tokens from: its `issuers`, else every trusted issuer.
    pub fn tenant_issuers(&self, tenant: &TenantConfig) -> Vec<String> {
        if tenant.issuers.is_empty() {
            self.trusted_issuers()
                .into_iter()
                .map(|i| i.issuer)
                .collect()
        } else {
            tenant.issuers.clone()
        }
    }

    /// The issuer of the `[exchange]` client: its `issuer`, else the first trusted issuer.
    pub fn default_exchange_issuer(&self) -> Option<String> {
        let x = self.exchange.as_ref()?;
        x.issuer
            .clone()
            .or_else(|| self.trusted_issuers().first().map(|i| i.issuer.clone()))
    }

    /// The gateway's OAuth clients, one per issuer: every `[auth.issuer.exchange]` and
    /// `[exchange]` for its issuer, each as (issuer, the section's key for messages, section).
    pub fn exchange_clients(&self) -> Vec<(String, String, &ExchangeConfig)> {
        let mut out: Vec<(String, String, &ExchangeConfig)> = self
            .auth
            .issuers
            .iter()
            .enumerate()
            .filter_map(|(i, iss)| {
                let x = iss.exchange.as_ref()?;
                Some((iss.issuer.clone(), format!("auth.issuer[{i}].exchange"), x))
            })
            .collect();
        if let (Some(x), Some(issuer)) = (&self.exchange, self.default_exchange_issuer()) {
            out.push((issuer, "exchange".into(), x));
        }
        out
    }

    /// Check one plugin's settings (from `[tenant.plugin.<name>]` or a manifest) against the
    /// tenant and the sandbox; the error is (key, problem).
    fn check_plugin_settings(
        &self,
        tenant: &TenantConfig,
        settings: &PluginSettings,
    ) -> Result<(), (&'static str, String)> {
        if let Some(s) = settings
            .services
            .iter()
            .find(|s| !tenant.services.iter().any(|x| &x.name == *s))
        {
            return Err(("services", format!("no [[tenant.service]] named `{s}`")));
        }
        self.check_limits_section(&settings.limits)
    }

    /// Parse and check an operator manifest (`<plugin>.toml` beside `<plugin>.wasm`): the
    /// same keys as `[tenant.plugin.<name>]`, which it replaces for that plugin.
    pub fn parse_manifest(
        &self,
        tenant: &TenantConfig,
        path: &Path,
        text: &str,
    ) -> Result<PluginSettings, ConfigError> {
        let error = |key: String, problem: String| ConfigError {
            file: path.display().to_string(),
            key,
            problem,
        };
        let settings: PluginSettings = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
            error(
                line.map_or_else(|| "manifest".into(), |l| format!("line {l}")),
                e.message().to_string(),
            )
        })?;
        self.check_plugin_settings(tenant, &settings)
            .map_err(|(k, problem)| error(k.into(), problem))?;
        Ok(settings)
    }

    /// `[auth]` with OAuth on: issuers, their clients, one issuer per token, limits, claims.
    fn validate_auth(&self) -> Result<(), ConfigError> {
        let a = &self.auth;
        if a.mode != AuthMode::Oauth {
            return Ok(());
        }
        if a.issuers.is_empty() && !self.dev_as.enabled {
            return Err(self.error(
                "auth.issuer",
                "mode = \"oauth\" needs at least one [[auth.issuer]]",
            ));
        }
        for (i, iss) in a.issuers.iter().enumerate() {
            self.check_issuer(i, iss)?;
        }
        self.check_exchange_clients()?;
        self.check_one_introspector_per_token()?;
        if a.introspection_cache_secs > 300 {
            return Err(self.error(
                "auth.introspection_cache_secs",
                "at most 300: a revoked token keeps working for this long",
            ));
        }
        if a.introspection_failures_per_minute == 0 {
            return Err(self.error(
                "auth.introspection_failures_per_minute",
                "must be at least 1",
            ));
        }
        if a.scopes_supported.iter().any(|s| s == "offline_access") {
            return Err(self.error(
                "auth.scopes_supported",
                "must not list offline_access (MCP resource servers do not advertise it)",
            ));
        }
        for (i, t) in self.tenants.iter().enumerate() {
            for (plugin, settings) in &t.plugin {
                for (tool, rules) in &settings.require_claims {
                    if let Some(claim) = rules.keys().find(|c| !a.claims.contains(c)) {
                        return Err(self.error(
                            format!("tenant[{i}].plugin.{plugin}.require_claims.{tool}"),
                            format!("claim `{claim}` must also be listed in auth.claims so the gateway keeps it"),
                        ));
                    }
                }
            }
        }
        if a.max_token_bytes < 256 {
            return Err(self.error("auth.max_token_bytes", "must be at least 256"));
        }
        Ok(())
    }

    /// One `[[auth.issuer]]`: its URL, algorithms and exchange client.
    fn check_issuer(&self, i: usize, iss: &IssuerConfig) -> Result<(), ConfigError> {
        if plain_http_url(&iss.issuer).is_none() {
            return Err(self.error(
                format!("auth.issuer[{i}].issuer"),
                format!("`{}` must be an http(s) URL", iss.issuer),
            ));
        }
        if let Some(alg) = iss
            .algorithms
            .iter()
            .find(|alg| !ACCEPTED_ALGORITHMS.contains(&alg.as_str()))
        {
            return Err(self.error(
                format!("auth.issuer[{i}].algorithms"),
                format!(
                    "`{alg}` is not accepted; use asymmetric algorithms: {}",
                    ACCEPTED_ALGORITHMS.join(", ")
                ),
            ));
        }
        if let Some(x) = &iss.exchange {
            self.check_exchange(&format!("auth.issuer[{i}].exchange"), x)?;
            if x.issuer.is_some() {
                return Err(self.error(
                    format!("auth.issuer[{i}].exchange.issuer"),
                    "is implied by the enclosing [[auth.issuer]]; remove it",
                ));
            }
        }
        Ok(())
    }

    /// At most one gateway client per issuer. `[exchange]` may name an authorization server
    /// the gateway does not trust for inbound tokens (its own tokens for client-credentials
    /// services come from there); it exchanges only tokens that server issued.
    fn check_exchange_clients(&self) -> Result<(), ConfigError> {
        let Some(issuer) = self.default_exchange_issuer() else {
            return Ok(());
        };
        let both = self
            .auth
            .issuers
            .iter()
            .position(|t| t.issuer == issuer && t.exchange.is_some());
        if let Some(j) = both {
            return Err(self.error(
                format!("auth.issuer[{j}].exchange"),
                format!("`{issuer}` has a client in [exchange] already; keep one"),
            ));
        }
        Ok(())
    }

    /// An opaque token must have exactly one issuer to be introspected at: within a tenant,
    /// at most one introspecting issuer without a `token_prefix`, and prefixes distinct.
    fn check_one_introspector_per_token(&self) -> Result<(), ConfigError> {
        for (t, tenant) in self.tenants.iter().enumerate() {
            let trusted = self.tenant_issuers(tenant);
            let prefixes: Vec<Option<&str>> = self
                .auth
                .issuers
                .iter()
                .filter(|i| trusted.contains(&i.issuer))
                .filter_map(|i| i.introspection.as_ref())
                .map(|x| x.token_prefix.as_deref())
                .collect();
            let unprefixed = prefixes.iter().filter(|p| p.is_none()).count();
            let mut distinct: Vec<&str> = prefixes.iter().flatten().copied().collect();
            let listed = distinct.len();
            distinct.sort_unstable();
            distinct.dedup();
            if unprefixed > 1 || distinct.len() != listed {
                return Err(self.error(
                    format!("tenant[{t}].issuers"),
                    "more than one trusted issuer introspects opaque tokens without a distinct \
                     introspection.token_prefix; an opaque token must have exactly one issuer to ask",
                ));
            }
        }
        Ok(())
    }

    /// The development authorization server's issuer URL.
    pub fn dev_as_issuer(&self) -> String {
        format!("{}/dev-as", self.public_url())
    }

    /// The issuers tokens are accepted from: `[[auth.issuer]]`, or the development
    /// authorization server when it is enabled and none are listed.
    pub fn trusted_issuers(&self) -> Vec<IssuerConfig> {
        if self.auth.issuers.is_empty() && self.dev_as.enabled {
            vec![IssuerConfig {
                issuer: self.dev_as_issuer(),
                algorithms: vec!["ES256".into()],
                jwks_uri: None,
                introspection: None,
                exchange: None,
            }]
        } else {
            self.auth.issuers.clone()
        }
    }

    /// The instances a tenant without an explicit `quota.max_instances` may run: an even
    /// share of what the explicit shares leave of the pool.
    fn instance_share_default(&self) -> u32 {
        let explicit: u32 = self
            .tenants
            .iter()
            .filter_map(|t| t.quota.max_instances)
            .sum();
        let without = self
            .tenants
            .iter()
            .filter(|t| t.quota.max_instances.is_none())
            .count()
            .max(1) as u32;
        self.sandbox.max_instances.saturating_sub(explicit) / without
    }

    /// The plugin instances `tenant` may run at once.
    pub fn instance_share(&self, tenant: &TenantConfig) -> u32 {
        tenant
            .quota
            .max_instances
            .unwrap_or_else(|| self.instance_share_default())
    }

    /// The tenant's MCP endpoint path.
    pub fn tenant_path(tenant: &TenantConfig) -> &str {
        tenant.path.as_deref().unwrap_or("/mcp")
    }

    /// The tenant's resource URL: its token audience and the subject of its metadata.
    pub fn tenant_resource(&self, tenant: &TenantConfig) -> String {
        if let Some(r) = &tenant.resource {
            return r.trim_end_matches('/').to_string();
        }
        let path = Self::tenant_path(tenant);
        match tenant.hosts.first() {
            Some(host) => {
                let public = self.public_url();
                let scheme = public.split("://").next().unwrap_or("http");
                format!("{scheme}://{host}{path}")
            }
            None => format!("{}{path}", self.public_url()),
        }
    }

    /// Where compiled plugins are cached: `sandbox.cache_dir` resolved against the file's
    /// directory, the default cache directory when unset, `None` when set to `""`.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        match &self.sandbox.cache_dir {
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(self.resolve_path(p)),
            None => default_cache_dir(),
        }
    }

    /// The URL clients use to reach this gateway, without a trailing slash.
    pub fn public_url(&self) -> String {
        match &self.server.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.server.listen),
        }
    }

    /// Resolve a path from the file against the file's directory.
    pub fn resolve_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

/// Whether `path` can be a tenant's endpoint: absolute, no trailing slash, not under
/// `/.well-known`, plain characters.
fn is_endpoint_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() > 1
        && !path.ends_with('/')
        && !path.starts_with("/.well-known")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
}

/// Whether `s` matches `[a-z0-9-]{1,64}` (tenant ids, service names).
fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `s` as an http(s) URL with a host and without query, fragment or credentials: what every
/// URL in the file must be (public URL, resources, issuers, services, the OTLP endpoint).
fn plain_http_url(s: &str) -> Option<reqwest::Url> {
    reqwest::Url::parse(s).ok().filter(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host().is_some()
            && u.query().is_none()
            && u.fragment().is_none()
            && u.username().is_empty()
            && u.password().is_none()
    })
}

/// One `[tenant.quota]`; the error is (key, problem).
fn check_quota(q: &QuotaConfig) -> Result<(), (&'static str, String)> {
    let zero = [
        ("requests_per_minute", q.requests_per_minute),
        ("burst", q.burst),
        ("subject_requests_per_minute", q.subject_requests_per_minute),
        ("subject_burst", q.subject_burst),
        (
            "max_concurrent_requests",
            q.max_concurrent_requests.map(|n| u32::from(n != 0)),
        ),
        ("max_instances", q.max_instances),
    ]
    .into_iter()
    .find(|(_, v)| *v == Some(0));
    if let Some((key, _)) = zero {
        return Err((key, "must be at least 1".into()));
    }
    if q.burst.is_some() && q.requests_per_minute.is_none() {
        return Err(("burst", "needs requests_per_minute".into()));
    }
    if q.subject_burst.is_some() && q.subject_requests_per_minute.is_none() {
        return Err(("subject_burst", "needs subject_requests_per_minute".into()));
    }
    Ok(())
}

/// Describe a byte offset in TOML text as "line L, column C".
fn locate(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, str::len) + 1;
    format!("line {line}, column {column}")
}

/// `$XDG_CACHE_HOME/portcullis`, else `$HOME/.cache/portcullis`.
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("portcullis"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"), Path::new("."))
    }

    #[test]
    fn minimal_single_tenant() {
        let c = parse("[[tenant]]\nid = \"default\"\nplugins = [\"a.wasm\"]\n").unwrap();
        assert_eq!(c.tenants[0].path.as_deref(), Some("/mcp"));
        assert_eq!(c.public_url(), "http://127.0.0.1:8080");
    }

    #[test]
    fn unknown_key_names_the_file_and_line() {
        let e = parse("[server]\nlisen = \"127.0.0.1:1\"\n[[tenant]]\nid=\"a\"\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("test.toml: line 2"), "{msg}");
        assert!(msg.contains("lisen"), "{msg}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = parse("[[tenant]]\nid = \"Bad Id\"\n").unwrap_err();
        assert_eq!(e.key, "tenant[0].id");
        let e = parse("[[tenant]]\nid = \"a\"\npath = \"mcp/\"\n").unwrap_err();
        assert_eq!(e.key, "tenant[0].path");
        let e = parse("[[tenant]]\nid = \"a\"\n[tenant.limits]\ndeadline_ms = 0\n").unwrap_err();
        assert_eq!(e.key, "tenant[0].limits.deadline_ms");
        let e = parse("").unwrap_err();
        assert_eq!(e.key, "tenant");
    }

    #[test]
    fn gateway_client_settings_are_checked() {
        let tenant = "[[tenant]]\nid = \"a\"\n";
        let key = |x: &str| parse(&format!("[exchange]\n{x}\n{tenant}")).map_err(|e| e.key);
        assert_eq!(
            key("client_id = \"g\"").unwrap_err(),
            "exchange.client_secret_env"
        );
        assert_eq!(
            key("client_id = \"g\"\nauth_method = \"private_key_jwt\"").unwrap_err(),
            "exchange.private_key_file"
        );
        assert_eq!(
            key("client_id = \"g\"\nauth_method = \"private_key_jwt\"\nprivate_key_file = \"k.pem\"\nprivate_key_alg = \"HS256\"")
                .unwrap_err(),
            "exchange.private_key_alg"
        );
        assert!(key("client_id = \"g\"\nclient_secret_env = \"S\"").is_ok());
        let service = |mode: &str| {
            parse(&format!(
                "{tenant}[[tenant.service]]\nname = \"s\"\nbase_url = \"https://api.example\"\ncredential = \"{mode}\"\n"
            ))
            .map_err(|e| e.key)
        };
        assert_eq!(
            service("client-credentials").unwrap_err(),
            "tenant[0].service[0].audience",
            "needs an audience"
        );
        let with_audience = |mode: &str| {
            parse(&format!(
                "{tenant}[[tenant.service]]\nname = \"s\"\nbase_url = \"https://api.example\"\ncredential = \"{mode}\"\naudience = \"https://api.example\"\n"
            ))
            .map_err(|e| e.key)
        };
        assert_eq!(
            with_audience("client-credentials").unwrap_err(),
            "tenant[0].service[0].credential",
            "and an [exchange] client"
        );
        assert!(service("none").is_ok());
    }

    #[test]
    fn every_token_has_one_issuer_to_go_to() {
        let key = |text: &str| parse(text).map(|_| ()).map_err(|e| e.key);
        let oauth = "[auth]\nmode = \"oauth\"\n";
        let intro = |iss: &str, prefix: &str| {
            format!(
                "[[auth.issuer]]\nissuer = \"{iss}\"\nintrospection = {{ client_id = \"g\", client_secret_env = \"S\"{prefix} }}\n"
            )
        };
        let tenant = "[[tenant]]\nid = \"t\"\n";
        // Two introspecting issuers need distinct prefixes: an opaque token has one issuer.
        let both = format!(
            "{oauth}{}{}{tenant}",
            intro("https://x", ""),
            intro("https://y", "")
        );
        assert_eq!(key(&both).unwrap_err(), "tenant[0].issuers");
        let same = format!(
            "{oauth}{}{}{tenant}",
            intro("https://x", ", token_prefix = \"a_\""),
            intro("https://y", ", token_prefix = \"a_\"")
        );
        assert_eq!(key(&same).unwrap_err(), "tenant[0].issuers");
        let prefixed = format!(
            "{oauth}{}{}{tenant}",
            intro("https://x", ""),
            intro("https://y", ", token_prefix = \"y_\"")
        );
        assert!(key(&prefixed).is_ok());
        // A tenant trusting only one of them has no ambiguity.
        let scoped = both.replace(
            tenant,
            "[[tenant]]\nid = \"t\"\nissuers = [\"https://x\"]\n",
        );
        assert!(key(&scoped).is_ok());

        // Exchange clients: one per issuer; the per-issuer table implies its issuer.
        let x = "[[auth.issuer]]\nissuer = \"https://x\"\n";
        let with_client = "[[auth.issuer]]\nissuer = \"https://x\"\nexchange = { client_id = \"g\", client_secret_env = \"S\", issuer = \"https://y\" }\n";
        assert_eq!(
            key(&format!("{oauth}{with_client}{tenant}")).unwrap_err(),
            "auth.issuer[0].exchange.issuer"
        );
        let service = |extra: &str| {
            format!(
                "{tenant}[[tenant.service]]\nname = \"s\"\nbase_url = \"https://api\"\ncredential = \"token-exchange\"\naudience = \"https://api\"\n{extra}"
            )
        };
        let exchange = "[exchange]\nclient_id = \"g\"\nclient_secret_env = \"S\"\n";
        assert!(key(&format!("{oauth}{x}{exchange}{}", service(""))).is_ok());
        assert_eq!(
            key(&format!("{oauth}{x}{}", service(""))).unwrap_err(),
            "tenant[0].service[0].credential",
            "no exchange client at the only trusted issuer"
        );
        assert_eq!(
            key(&format!(
                "{oauth}{x}{exchange}{}",
                service("issuer = \"https://elsewhere\"\n")
            ))
            .unwrap_err(),
            "tenant[0].service[0].issuer",
            "a service bound to an issuer the tenant does not trust"
        );
    }

    #[test]
    fn unauthenticated_public_bind_is_refused_unless_forced() {
        let text = "[server]\nlisten = \"0.0.0.0:8080\"\n[[tenant]]\nid = \"a\"\n";
        assert_eq!(parse(text).unwrap_err().key, "auth.mode");
        let forced = text.replace(
            "[server]\n",
            "[server]\nallow_unauthenticated_public = true\n",
        );
        assert!(parse(&forced).is_ok());
    }

    #[test]
    fn oauth_settings_are_checked() {
        let base = "[auth]\nmode = \"oauth\"\n";
        let tenant = "[[tenant]]\nid = \"a\"\n";
        assert_eq!(
            parse(&format!("{base}{tenant}")).unwrap_err().key,
            "auth.issuer"
        );
        let issuer = "[[auth.issuer]]\nissuer = \"https://as.example\"\n";
        assert!(parse(&format!("{base}{issuer}{tenant}")).is_ok());
        let hs = "[[auth.issuer]]\nissuer = \"https://as.example\"\nalgorithms = [\"HS256\"]\n";
        assert_eq!(
            parse(&format!("{base}{hs}{tenant}")).unwrap_err().key,
            "auth.issuer[0].algorithms"
        );
        let offline = format!("{base}scopes_supported = [\"offline_access\"]\n{issuer}{tenant}");
        assert_eq!(parse(&offline).unwrap_err().key, "auth.scopes_supported");
        let rule = format!(
            "{base}{issuer}{tenant}[tenant.plugin.p]\nrequire_claims = {{ t = {{ groups = \"admin\" }} }}\n"
        );
        assert_eq!(
            parse(&rule).unwrap_err().key,
            "tenant[0].plugin.p.require_claims.t"
        );
        let listed = rule.replace(
            "mode = \"oauth\"\n",
            "mode = \"oauth\"\nclaims = [\"groups\"]\n",
        );
        assert!(parse(&listed).is_ok());
    }

    #[test]
    fn tenants_get_distinct_default_paths() {
        let c = parse("[[tenant]]\nid = \"a\"\n[[tenant]]\nid = \"b\"\n").unwrap();
        assert_eq!(c.tenants[1].path.as_deref(), Some("/t/b/mcp"));
        assert!(parse("[[tenant]]\nid = \"a\"\n[[tenant]]\nid = \"a\"\n").is_err());
    }

    #[test]
    fn tenant_routing_resources_issuers_and_quotas_are_checked() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        // Two tenants on one path need different hosts.
        assert!(
            err(
                "[[tenant]]\nid = \"a\"\npath = \"/mcp\"\n[[tenant]]\nid = \"b\"\npath = \"/mcp\"\n"
            )
            .contains("tenant[1].path")
        );
        let c = parse(
            "[server]\npublic_url = \"https://gw.example\"\n\
             [[tenant]]\nid = \"a\"\npath = \"/mcp\"\nhosts = [\"a.example\"]\n\
             [[tenant]]\nid = \"b\"\npath = \"/mcp\"\nhosts = [\"b.example:8443\"]\n",
        )
        .unwrap();
        assert_eq!(c.tenant_resource(&c.tenants[0]), "https://a.example/mcp");
        assert_eq!(
            c.tenant_resource(&c.tenants[1]),
            "https://b.example:8443/mcp"
        );
        // One resource URL for two tenants would let one tenant's tokens work at the other.
        assert!(
            err(
                "[[tenant]]\nid = \"a\"\nresource = \"https://x.example/mcp\"\n\
                     [[tenant]]\nid = \"b\"\nresource = \"https://x.example/mcp\"\n"
            )
            .contains("another tenant's resource URL")
        );
        assert!(
            err("[[tenant]]\nid = \"a\"\nissuers = [\"https://unknown.example\"]\n")
                .contains("tenant[0].issuers[0]")
        );
        assert!(
            err("[[tenant]]\nid = \"a\"\n[tenant.quota]\nsubject_burst = 3\n")
                .contains("needs subject_requests_per_minute")
        );
        assert!(
            err("[[tenant]]\nid = \"a\"\n[tenant.quota]\nrequests_per_minute = 0\n")
                .contains("tenant[0].quota.requests_per_minute")
        );
        // Instance shares must fit in the pool; unset shares split what is left.
        assert!(err("[sandbox]\nmax_instances = 10\n[[tenant]]\nid = \"a\"\n[tenant.quota]\nmax_instances = 8\n\
                     [[tenant]]\nid = \"b\"\n[tenant.quota]\nmax_instances = 4\n")
            .contains("add up to 12"));
        let c = parse(
            "[sandbox]\nmax_instances = 10\n[[tenant]]\nid = \"a\"\n[tenant.quota]\nmax_instances = 4\n\
             [[tenant]]\nid = \"b\"\n[[tenant]]\nid = \"c\"\n",
        )
        .unwrap();
        let shares: Vec<u32> = c.tenants.iter().map(|t| c.instance_share(t)).collect();
        assert_eq!(shares, [4, 3, 3]);
        let telemetry = |kv: &str| err(&format!("[telemetry]\n{kv}\n[[tenant]]\nid = \"a\"\n"));
        assert!(telemetry("log_format = \"xml\"").contains("unknown variant `xml`"));
        assert!(telemetry("protocol = \"grpc\"").contains("telemetry.protocol"));
        assert!(telemetry("sample_ratio = 1.5").contains("telemetry.sample_ratio"));
        assert!(telemetry("endpoint = \"collector:4318\"").contains("telemetry.endpoint"));
    }
}
