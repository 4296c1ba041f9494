//! The plugins' only way out of the sandbox: HTTP to logical services the operator declared.
//!
//! Owns the per-tenant service registry, the grants (a plugin may call only the services its
//! settings list), the egress guard and the credentials the gateway adds. A plugin names a
//! service and a path; this module confines the request to the service's base URL (scheme,
//! host, port, path prefix), refuses path tricks (`..`, encoded slashes, `@`, absolute URLs),
//! strips credentials and hop-by-hop headers the plugin sets, refuses addresses that are
//! link-local or cloud metadata (and private or loopback ones unless the service itself lives
//! there), follows redirects only within the service, bounds request and response sizes and
//! time, and adds the service's credential. The caller's token (a [`SecretToken`]) is used
//! for one thing only: an RFC 8693 exchange at the issuer that issued it; it never enters the
//! sandbox and is never sent to a service or to another authorization server.

mod consent;
mod credential;
mod oauth_client;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use reqwest::Url;

use crate::auth::SecretToken;
use crate::config::{ServiceConfig, TenantConfig};
use crate::net::{always_blocked, internal};
use crate::sandbox::{BoxFuture, Egress, wit};
use crate::telemetry::{self, keys};
pub use consent::{Consent, Consented, SpentStates};
pub use credential::CredentialError;
use credential::{Caller, Strategy};
pub use oauth_client::{
    Grant, Key as TokenKey, OAuthClient, OAuthClients, SharedDown, SharedTokens, TokenError,
    TokenRequest,
};
use tracing::Instrument as _;

/// Request headers a plugin may set on any service: what a tool needs to say what it sends
/// and wants (content negotiation and type, conditional and range requests, idempotency and
/// preference). Everything else — credentials, cookies, hop-by-hop headers, client addresses,
/// forwarded hosts, URL and method overrides, and whatever header a proxy in front of some
/// service trusts next — is dropped unless the operator lists it for the service
/// (`[[tenant.service]] headers`): a deny-list would always trail.
const PLUGIN_HEADERS: &[&str] = &[
    "accept",
    "accept-language",
    "cache-control",
    "content-type",
    "content-language",
    "content-encoding",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    "range",
    "idempotency-key",
    "prefer",
    "user-agent",
];

/// Headers no operator listing lets through: credentials, hop-by-hop and framing, and what
/// the gateway sets itself.
const NEVER: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "accept-encoding",
    "traceparent",
    "tracestate",
];

/// Methods a plugin may use.
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Most redirects followed (all within the service).
const MAX_REDIRECTS: usize = 5;

/// Why the egress guard refused a request. Carried as the source error through reqwest (from
/// the resolver and the redirect policy) and recognised by type, never by its wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Blocked {
    /// The path is not a plain path under the service.
    #[error("path `{0}` is not a plain path under the service")]
    Path(String),
    /// The path does not form a URL.
    #[error("path `{path}` does not form a URL: {why}")]
    NotUrl {
        /// The plugin's path.
        path: String,
        /// Why.
        why: String,
    },
    /// The path resolves outside the service's prefix.
    #[error("path `{0}` leaves the service")]
    OutsideBase(String),
    /// A redirect points outside the service.
    #[error("redirect to {0} leaves the service")]
    Redirect(String),
    /// The host resolves only to addresses plugins may not reach.
    #[error("{0} resolves only to addresses plugins may not reach")]
    Address(String),
}

/// Resolves service hosts and drops addresses the service may not reach.
struct GuardedResolver {
    allow_internal: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_internal = self.allow_internal;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| !always_blocked(a.ip()) && (allow_internal || !internal(a.ip())))
                .collect();
            if allowed.is_empty() {
                return Err(
                    Box::new(Blocked::Address(host)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// One configured service.
struct Service {
    config: ServiceConfig,
    base: Url,
    /// What the gateway adds to its requests (`None`: nothing).
    credential: Option<Box<dyn Strategy>>,
    client: reqwest::Client,
}

impl Service {
    fn new(
        config: &ServiceConfig,
        oauth: &Arc<OAuthClients>,
        consent: Option<&Arc<Consent>>,
    ) -> anyhow::Result<Self> {
        let base = Url::parse(&config.base_url)?;
        let host = base
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_string();
        let literal: Option<IpAddr> = host.parse().ok();
        if literal.is_some_and(always_blocked) {
            anyhow::bail!(
                "service `{}`: base_url points at a link-local or metadata address",
                config.name
            );
        }
        // A service configured on an internal address may use internal addresses.
        let allow_internal = literal.is_some_and(internal) || host == "localhost";
        let credential = credential::for_service(config, oauth, consent)?;
        let origin = base.clone();
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if within(&origin, attempt.url()) && plain_path(&path_and_query(attempt.url())) {
                attempt.follow()
            } else if within(&origin, attempt.url()) {
                // Same origin, but a path a backend would read as leaving the prefix (`..;`,
                // `%252e`): the path rules apply to every redirect target as to the plugin's.
                let target = path_and_query(attempt.url());
                attempt.error(Blocked::Path(crate::telemetry::untrusted(&target)))
            } else {
                let target = attempt.url().origin().ascii_serialization();
                attempt.error(Blocked::Redirect(target))
            }
        });
        let client = reqwest::Client::builder()
            .redirect(policy)
            .dns_resolver(Arc::new(GuardedResolver { allow_internal }))
            .timeout(Duration::from_millis(config.timeout_ms))
            .no_proxy()
            .build()?;
        Ok(Self {
            config: config.clone(),
            base,
            credential,
            client,
        })
    }

    /// The full URL for a plugin-supplied path, if it stays within the service: a plain
    /// absolute path whose meaning no common backend would read differently — no dot
    /// segments (also with `;` path parameters, as Tomcat/Jetty/Spring read `..;`), no
    /// encoded slashes, backslashes or dots, no double encoding (`%25`), valid UTF-8 escapes.
    fn url_for(&self, path: &str) -> Result<Url, Blocked> {
        if !plain_path(path) {
            return Err(Blocked::Path(path.to_string()));
        }
        let joined = format!("{}{path}", self.base.as_str().trim_end_matches('/'));
        let url = Url::parse(&joined).map_err(|e| Blocked::NotUrl {
            path: path.to_string(),
            why: e.to_string(),
        })?;
        if !within(&self.base, &url) {
            return Err(Blocked::OutsideBase(path.to_string()));
        }
        Ok(url)
    }

    /// The credential header the gateway adds to this service's requests, if it is fixed.
    fn static_header(&self) -> Option<&HeaderName> {
        self.credential.as_ref().and_then(|c| c.header())
    }
}

/// Whether a plugin's `path` is a plain path (see [`Service::url_for`]).
fn plain_path(path: &str) -> bool {
    let (route, _query) = path.split_once('?').unwrap_or((path, ""));
    let lower = route.to_ascii_lowercase();
    let plain_text = path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains(['\\', '#', '@'])
        && !path.chars().any(|c| c.is_control() || c == ' ')
        && !["%2f", "%5c", "%2e", "%25"]
            .iter()
            .any(|e| lower.contains(e));
    if !plain_text {
        return false;
    }
    // What a backend that decodes once sees must be as plain as what we see.
    let Some(decoded) = percent_decode(route) else {
        return false;
    };
    // A backend that normalises Unicode (NFKC, as some frameworks and file systems do)
    // reads U+FF0E FULLWIDTH FULL STOP as `.`, U+2025 TWO DOT LEADER as `..`, U+FF0F as `/`.
    let normalized: String =
        unicode_normalization::UnicodeNormalization::nfkc(decoded.as_str()).collect();
    let dot_segment = |seg: &str| matches!(seg.split(';').next(), Some("." | ".."));
    [decoded.as_str(), normalized.as_str()].iter().all(|d| {
        !d.chars().any(|c| c.is_control() || c == '\\')
            && d.split('/').count() == route.split('/').count()
            && !d.split('/').any(dot_segment)
    })
}

/// `text` with its `%XX` escapes decoded; `None` for a malformed escape or bytes that are
/// not UTF-8 (overlong or partial sequences some backends still decode to `.` or `/`).
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `url`'s path and query, as a plugin would have written them.
fn path_and_query(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// Whether `url` has `base`'s origin and lies under its path prefix.
fn within(base: &Url, url: &Url) -> bool {
    let prefix = base.path().trim_end_matches('/');
    url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default()
        && (url.path() == prefix
            || url.path().starts_with(&format!("{prefix}/"))
            || prefix.is_empty())
}

/// A tenant's services.
#[derive(Default)]
pub struct TenantServices {
    tenant: Arc<str>,
    services: HashMap<String, Arc<Service>>,
}

impl std::fmt::Debug for TenantServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.services.keys()).finish()
    }
}

impl TenantServices {
    /// Build the tenant's services; fails on a missing secret or a forbidden base URL.
    pub(crate) fn new(
        tenant: &TenantConfig,
        oauth: &Arc<OAuthClients>,
        consent: Option<&Arc<Consent>>,
    ) -> anyhow::Result<Self> {
        let mut services = HashMap::new();
        for s in &tenant.services {
            services.insert(s.name.clone(), Arc::new(Service::new(s, oauth, consent)?));
        }
        Ok(Self {
            tenant: Arc::from(tenant.id.as_str()),
            services,
        })
    }

    /// The user (`subject`'s token, `user` its subject) revokes what the gateway keeps for
    /// them at `service` (their grant, for a user-consent service): whether there was
    /// something; `None` for a service this tenant does not have.
    pub async fn revoke_grant(
        &self,
        service: &str,
        subject: &SecretToken,
        user: &str,
    ) -> Option<Result<bool, CredentialError>> {
        let svc = self.services.get(service)?;
        let Some(strategy) = &svc.credential else {
            return Some(Ok(false));
        };
        let caller = Caller {
            tenant: &self.tenant,
            subject: Some(subject),
            user: Some(user),
        };
        Some(strategy.revoke(&caller).await)
    }

    /// The capability's per-call state (spin's `prepare`): what one call of `plugin` may
    /// reach — the services it was `granted` — carrying the caller's `origin` (trace context,
    /// and the token kept for exchange only).
    pub fn for_call(
        self: &Arc<Self>,
        plugin: &Arc<str>,
        granted: &Arc<[String]>,
        origin: CallOrigin,
    ) -> Arc<dyn Egress> {
        Arc::new(PluginEgress {
            tenant: self.tenant.clone(),
            services: self.clone(),
            granted: granted.clone(),
            plugin: plugin.clone(),
            trace_parent: origin.trace_parent,
            subject: origin.subject,
            user: origin.user,
            needs: origin.needs,
            trail: origin.trail,
        })
    }
}

/// What keeps each service's credential strategy from working, as `portcullis check` tells
/// it (`<tenant>/<service>: <problem>`): for every service whose tokens come from an
/// authorization server, each issuer it would ask is asked for its metadata, which must name
/// a token endpoint, the strategy's grant and the gateway's client authentication (where it
/// lists them). Secrets and keys were checked when `config` loaded. `served_here`: the
/// issuer this process serves itself (the development AS) and its metadata.
pub async fn credential_problems(
    config: &crate::config::Config,
    served_here: Option<(&str, &serde_json::Value)>,
) -> anyhow::Result<Vec<String>> {
    use crate::config::CredentialMode as M;
    use crate::oauth::{JWT_BEARER_GRANT, TOKEN_EXCHANGE};
    let clients = OAuthClients::from_config(config, None)?;
    let mut problems = Vec::new();
    for tenant in &config.tenants {
        for svc in &tenant.services {
            let (grant, issuers) = match svc.credential {
                M::None | M::Static | M::UserConsent => continue,
                M::ClientCredentials => (
                    "client_credentials",
                    clients
                        .for_gateway(svc.issuer.as_deref())
                        .into_iter()
                        .collect::<Vec<_>>(),
                ),
                mode => {
                    let grant = if mode == M::TokenExchange {
                        TOKEN_EXCHANGE
                    } else {
                        JWT_BEARER_GRANT
                    };
                    let issuers = config
                        .tenant_issuers(tenant)
                        .into_iter()
                        .filter(|i| svc.issuer.as_ref().is_none_or(|s| s == i))
                        .filter_map(|i| clients.at(&i))
                        .collect();
                    (grant, issuers)
                }
            };
            for client in issuers {
                let known = served_here
                    .filter(|(issuer, _)| *issuer == client.issuer())
                    .map(|(_, doc)| doc);
                let problem = match client.missing(grant, known).await {
                    Some(p) => Some(p),
                    None => known.and_then(|_| dev_as_registration(config, client, grant)),
                };
                if let Some(problem) = problem {
                    problems.push(format!(
                        "{}/{} (credential = \"{}\"): {problem}",
                        tenant.id,
                        svc.name,
                        svc.credential.name()
                    ));
                }
            }
        }
    }
    Ok(problems)
}

/// What keeps the gateway's `client` from getting `grant` tokens at the development AS this
/// process serves: the AS knows only `[[dev_as.clients]]`, so the gateway's own client must be
/// registered there too, confidential, with the same secret and the grant. Before (#30), `check`
/// said ok and every downstream call failed with `invalid_client (unknown client)`.
fn dev_as_registration(
    config: &crate::config::Config,
    client: &OAuthClient,
    grant: &str,
) -> Option<String> {
    let id = client.client_id();
    let var = config
        .exchange_clients()
        .into_iter()
        .find(|(issuer, _, _)| issuer == client.issuer())
        .and_then(|(_, _, x)| x.client_secret_env.clone())
        .unwrap_or_else(|| "GATEWAY_SECRET".into());
    let fix = format!(
        "add to the configuration:\n    [[dev_as.clients]]\n    client_id = \"{id}\"\n    \
         client_secret_env = \"{var}\"   # the gateway's own secret for this client\n    \
         grant_types = [\"{grant}\"]"
    );
    let Some(registered) = config.dev_as.clients.iter().find(|c| c.client_id == id) else {
        return Some(format!(
            "the development AS does not know the gateway's client `{id}` (every downstream call would fail with invalid_client); {fix}"
        ));
    };
    let Some(theirs) = &registered.client_secret_env else {
        return Some(format!(
            "`{id}` is a public client at the development AS, and the gateway authenticates as it with a secret; give its [[dev_as.clients]] entry client_secret_env = \"{var}\""
        ));
    };
    if !registered.grant_types.iter().any(|g| g == grant) {
        return Some(format!(
            "the development AS's client `{id}` may not use {grant}; add \"{grant}\" to its grant_types"
        ));
    }
    let same = theirs == &var
        || matches!(
            (crate::config::secret_from_env(theirs), crate::config::secret_from_env(&var)),
            (Ok(a), Ok(b)) if a == b
        );
    (!same).then(|| {
        format!(
            "the development AS's client `{id}` has another secret ({theirs}) than the gateway uses ({var}); use one variable for both"
        )
    })
}

/// What the protocol layer knows of a call's caller that the downstream capability needs.
#[derive(Default)]
pub struct CallOrigin {
    /// The caller's W3C trace context, passed on when no trace of ours is being exported.
    pub trace_parent: Option<String>,
    /// The caller's token, for token exchange only (never sent anywhere else).
    pub subject: Option<SecretToken>,
    /// The caller's subject at that token's issuer (whose grants a user-consent service uses).
    pub user: Option<String>,
    /// Where the call's downstream requests leave what the caller must do.
    pub needs: Arc<CallNeeds>,
    /// Where they are recorded for the call's audit event.
    pub trail: Arc<crate::audit::Trail>,
}

/// What a call's downstream requests learned the caller must do before they can succeed;
/// the protocol layer reads it when the call ends and tells the client.
#[derive(Default)]
pub struct CallNeeds(parking_lot::Mutex<Option<Need>>);

/// What the user must do before a call's downstream requests can succeed.
#[derive(Clone, Debug)]
pub enum Need {
    /// Sign in again (an authorization server asked).
    StepUp(StepUp),
    /// Consent at a service's provider, at `url` (the gateway's consent page).
    Consent { service: String, url: String },
}

impl CallNeeds {
    /// The first need wins (the call stops at it anyway).
    fn record(&self, need: Need) {
        self.0.lock().get_or_insert(need);
    }

    /// What the call's requests met first, if anything.
    pub fn need(&self) -> Option<Need> {
        self.0.lock().clone()
    }

    /// The first step-up the call's requests met, if that is what they met.
    pub fn step_up(&self) -> Option<StepUp> {
        match self.need()? {
            Need::StepUp(s) => Some(s),
            Need::Consent { .. } => None,
        }
    }
}

/// An authorization server's answer that the user must act (sign in again, consent): its
/// texts are bounded and escaped, and carry no token.
#[derive(Clone, Debug)]
pub struct StepUp {
    /// The service whose token it was.
    pub service: String,
    /// The OAuth error (`interaction_required`, `consent_required`, …).
    pub error: String,
    pub description: String,
    /// A claims challenge for the client's next sign-in (Entra ID's), JSON.
    pub claims: Option<String>,
    /// For `invalid_scope` at the caller's own issuer (an exchange or assertion grant, which
    /// may only narrow the caller's scopes): the scopes the service asks for, which the
    /// caller's token must carry.
    pub scopes: Vec<String>,
}

/// What one plugin call may reach ([`TenantServices::for_call`] makes one).
struct PluginEgress {
    tenant: Arc<str>,
    services: Arc<TenantServices>,
    /// The services this plugin was granted.
    granted: Arc<[String]>,
    plugin: Arc<str>,
    trace_parent: Option<String>,
    /// The caller's token, for token exchange only (never sent anywhere else).
    subject: Option<SecretToken>,
    user: Option<String>,
    needs: Arc<CallNeeds>,
    trail: Arc<crate::audit::Trail>,
}

/// What the record says of how one request was sent (filled in as it is).
#[derive(Default)]
struct Sent {
    cache: Option<&'static str>,
    retried: bool,
}

impl Egress for PluginEgress {
    fn fetch(
        &self,
        service: String,
        request: wit::FetchRequest,
    ) -> BoxFuture<'_, Result<wit::FetchResponse, wit::FetchError>> {
        Box::pin(async move {
            let started = Instant::now();
            let mut sent = Sent::default();
            let result = self.send(&service, request, &mut sent).await;
            // The plugin chose the name: a configured service, or `unknown` (never a new
            // series, nor an unbounded log field, per name a plugin makes up).
            let known = if self.services.services.contains_key(&service) {
                service.as_str()
            } else {
                "unknown"
            };
            let status = match &result {
                Ok(r) => {
                    tracing::info!(plugin = %self.plugin, service = known, status = r.status, ms = started.elapsed().as_millis() as u64, "downstream call");
                    r.status.to_string()
                }
                Err(e) => {
                    tracing::warn!(plugin = %self.plugin, service = known, ms = started.elapsed().as_millis() as u64, "downstream call refused or failed: {e:?}");
                    fetch_error_kind(e).to_string()
                }
            };
            let m = telemetry::metrics::get();
            let attrs = telemetry::metrics::attrs(
                &self.tenant,
                &[
                    (keys::PLUGIN, &self.plugin),
                    (keys::SERVICE, known),
                    (keys::OUTCOME, &status),
                ],
            );
            m.downstream.add(1, &attrs);
            m.downstream_duration
                .record(started.elapsed().as_secs_f64(), &attrs);
            self.trail.downstream(crate::audit::DownstreamCall {
                service: known.to_string(),
                credential: self
                    .services
                    .services
                    .get(&service)
                    .map_or("none", |s| s.config.credential.name()),
                cache: sent.cache,
                status,
                retried: sent.retried,
            });
            result
        })
    }
}

impl PluginEgress {
    async fn send(
        &self,
        name: &str,
        request: wit::FetchRequest,
        facts: &mut Sent,
    ) -> Result<wit::FetchResponse, wit::FetchError> {
        let (service, outgoing) = self.admit(name, request)?;
        let span = telemetry::downstream_span(name, outgoing.method.as_str(), &outgoing.url);
        let sent = self
            .exchange(service, outgoing, facts)
            .instrument(span.clone())
            .await;
        match &sent {
            Ok((resp, _)) => {
                span.record(
                    "http.response.status_code",
                    i64::from(resp.status().as_u16()),
                );
                if resp.status().is_server_error() {
                    telemetry::fail(&span, &resp.status().as_u16().to_string());
                }
            }
            Err(e) => telemetry::fail(&span, fetch_error_kind(e)),
        }
        let (resp, credential) = sent?;
        let response = read_response(service, resp).await?;
        if let Some(secret) = credential
            && echoes(&secret, &response)
        {
            tracing::warn!(tenant = %self.tenant, plugin = %self.plugin, service = name,
                "withheld a response that repeats the credential the gateway sent to the service");
            return Err(wit::FetchError::Blocked(
                "the service's response repeats the credential the gateway sent; it was withheld"
                    .into(),
            ));
        }
        Ok(response)
    }

    /// The egress guard: the request a plugin asked for, if this plugin may send it — a
    /// granted service, an allowed method, a path under the service, a bounded body — with
    /// the headers a plugin may not set removed.
    fn admit(
        &self,
        name: &str,
        request: wit::FetchRequest,
    ) -> Result<(&Service, Outgoing), wit::FetchError> {
        let Some(service) = self.services.services.get(name) else {
            return Err(wit::FetchError::UnknownService(format!(
                "no downstream service named `{}` is configured for this tenant",
                telemetry::untrusted(name)
            )));
        };
        if !self.granted.iter().any(|g| g == name) {
            return Err(wit::FetchError::NotGranted(format!(
                "this plugin was not granted the service `{name}`"
            )));
        }
        let method = request.method.to_ascii_uppercase();
        if !METHODS.contains(&method.as_str()) {
            return Err(wit::FetchError::Blocked(format!(
                "method {method} is not allowed"
            )));
        }
        let url = service
            .url_for(&request.path)
            .map_err(|b| wit::FetchError::Blocked(b.to_string()))?;
        if request
            .body
            .as_ref()
            .is_some_and(|b| b.len() > service.config.max_request_bytes)
        {
            return Err(wit::FetchError::TooLarge);
        }
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| wit::FetchError::Blocked("bad method".into()))?;
        let outgoing = Outgoing {
            method,
            url,
            headers: plugin_headers(&request.headers, &service.config, service.static_header()),
            body: request.body.map(bytes::Bytes::from),
        };
        Ok((service, outgoing))
    }
}

/// A request that passed the egress guard, before the gateway adds its credential.
struct Outgoing {
    method: reqwest::Method,
    url: Url,
    headers: http::HeaderMap,
    body: Option<bytes::Bytes>,
}

/// The headers a plugin set that it may send to `service`: those in [`PLUGIN_HEADERS`] and
/// those the operator listed for the service, never a [`NEVER`] header nor the service's own
/// credential header (the gateway adds it). The rest are dropped, and said so in the log.
fn plugin_headers(
    asked: &[(String, String)],
    service: &ServiceConfig,
    credential: Option<&HeaderName>,
) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for (k, v) in asked {
        let lower = k.to_ascii_lowercase();
        let allowed = PLUGIN_HEADERS.contains(&lower.as_str())
            || service
                .headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&lower));
        if !allowed
            || NEVER.contains(&lower.as_str())
            || credential.is_some_and(|c| c.as_str() == lower)
        {
            tracing::debug!(service = %service.name, header = %crate::telemetry::untrusted(&lower),
                "dropped a request header the plugin may not send to this service");
            continue;
        }
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
    headers
}

/// Whether `response` repeats `secret` (a credential the gateway sent): as it was sent,
/// its token part after the scheme, or either of them base64- (at any alignment), hex- or
/// URL-encoded.
fn echoes(secret: &str, response: &wit::FetchResponse) -> bool {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let mut forms = vec![secret.to_string()];
    if let Some((_, token)) = secret.rsplit_once(' ') {
        forms.push(token.to_string());
    }
    for f in forms.clone() {
        forms.push(STANDARD.encode(&f));
        forms.push(STANDARD_NO_PAD.encode(&f));
        forms.push(URL_SAFE_NO_PAD.encode(&f));
        forms.push(url_encode(&f));
        forms.push(hex::encode(&f));
        forms.push(hex::encode_upper(&f));
        // Inside a longer base64 text the secret may start at any byte offset: the characters
        // that depend on its bytes alone, for each of the three alignments.
        for (pad, skip) in [(1usize, 2usize), (2, 3)] {
            for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                let mut shifted = vec![0u8; pad];
                shifted.extend_from_slice(f.as_bytes());
                let encoded = engine.encode(&shifted);
                let core = encoded.get(skip..encoded.len().saturating_sub(3));
                forms.extend(core.map(str::to_string));
            }
        }
    }
    // Too short to be a credential worth matching (and to match by chance).
    forms.retain(|f| f.len() >= 8);
    // Every form in one pass over the body and each header (a response may be megabytes).
    let Ok(any) = aho_corasick::AhoCorasick::new(&forms) else {
        // Cannot happen for a handful of short patterns; refuse rather than pass unread.
        return true;
    };
    any.is_match(&response.body) || response.headers.iter().any(|(_, v)| any.is_match(v))
}

/// `text` with every byte outside the URL-unreserved set percent-encoded.
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The plugin's view of a response: its status, headers without credentials, and a body
/// within the service's size limit.
async fn read_response(
    service: &Service,
    mut resp: reqwest::Response,
) -> Result<wit::FetchResponse, wit::FetchError> {
    let status = resp.status().as_u16();
    if let Some(coding) = resp
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .filter(|c| !c.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        // The gateway asked for `identity`: an encoded body is one it cannot check for the
        // credential it sent, so it is not handed over.
        tracing::warn!(service = %service.config.name,
            coding = %crate::telemetry::untrusted(&String::from_utf8_lossy(coding.as_bytes())),
            "withheld a response encoded although the gateway asked for identity");
        return Err(wit::FetchError::Blocked(
            "the service answered with an encoded body (Content-Encoding), which the gateway does not accept".into(),
        ));
    }
    let headers = resp
        .headers()
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "set-cookie" | "www-authenticate" | "authorization"
            )
        })
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_string(), v.to_string()))
        })
        .collect();
    let limit = service.config.max_response_bytes;
    if resp.content_length().is_some_and(|n| n as usize > limit) {
        return Err(wit::FetchError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(classify)? {
        if body.len() + chunk.len() > limit {
            return Err(wit::FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(wit::FetchResponse {
        status,
        headers,
        body,
    })
}

impl PluginEgress {
    /// Send the request with the service's credential. A service that refuses an exchanged
    /// token gets one fresh exchange and one retry. The current span's trace context goes
    /// along (or, without an exported trace, the caller's own `traceparent`).
    async fn exchange(
        &self,
        service: &Service,
        outgoing: Outgoing,
        facts: &mut Sent,
    ) -> Result<(reqwest::Response, Option<String>), wit::FetchError> {
        let Outgoing {
            method,
            url,
            mut headers,
            body,
        } = outgoing;
        // Bodies come back as sent, so the credential tripwire can read them
        // ([`read_response`] refuses one encoded anyway).
        headers.insert(
            http::header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        if !telemetry::inject(&mut headers)
            && let Some(tp) = self
                .trace_parent
                .as_deref()
                .and_then(|t| HeaderValue::from_str(t).ok())
        {
            headers.insert("traceparent", tp);
        }
        let mut retried = false;
        Ok(loop {
            let mut req = service
                .client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            let caller = Caller {
                tenant: &self.tenant,
                subject: self.subject.as_ref(),
                user: self.user.as_deref(),
            };
            let sent = match &service.credential {
                None => None,
                Some(strategy) => {
                    let attached = strategy.attach(&caller).await.map_err(|e| {
                        match &e {
                            CredentialError::Token(TokenError::StepUp {
                                error,
                                description,
                                claims,
                                ..
                            }) => {
                                use crate::config::CredentialMode as M;
                                let narrows = matches!(
                                    service.config.credential,
                                    M::TokenExchange | M::JwtBearer
                                );
                                self.needs.record(Need::StepUp(StepUp {
                                    service: service.config.name.clone(),
                                    error: error.clone(),
                                    description: description.clone(),
                                    claims: claims.clone(),
                                    scopes: if error == "invalid_scope" && narrows {
                                        service.config.scopes.clone()
                                    } else {
                                        Vec::new()
                                    },
                                }));
                            }
                            CredentialError::ConsentRequired { service, url } => {
                                self.needs.record(Need::Consent {
                                    service: service.clone(),
                                    url: url.clone(),
                                });
                            }
                            _ => {}
                        }
                        wit::FetchError::Credential(e.to_string())
                    })?;
                    req = req.header(attached.name, attached.value);
                    facts.cache = attached.source;
                    Some(attached.secret)
                }
            };
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            let resp = req.send().await.map_err(classify)?;
            if let (Some(strategy), 401, false) =
                (&service.credential, resp.status().as_u16(), retried)
                && strategy.refused(&caller).await
            {
                retried = true;
                facts.retried = true;
                continue;
            }
            break (resp, sent);
        })
    }
}

/// A fixed word for a refused or failed request, for metrics and span attributes.
fn fetch_error_kind(e: &wit::FetchError) -> &'static str {
    match e {
        wit::FetchError::UnknownService(_) => "unknown_service",
        wit::FetchError::NotGranted(_) => "not_granted",
        wit::FetchError::Credential(_) => "credential",
        wit::FetchError::Blocked(_) => "blocked",
        wit::FetchError::Timeout => "timeout",
        wit::FetchError::TooLarge => "too_large",
        wit::FetchError::Transport(_) => "transport",
    }
}

/// The plugin-visible error for a failed request; never carries credentials.
fn classify(e: reqwest::Error) -> wit::FetchError {
    if e.is_timeout() {
        return wit::FetchError::Timeout;
    }
    let redirect = e.is_redirect();
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut blocked = false;
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        blocked |= s.is::<Blocked>();
        source = s.source();
    }
    if redirect || blocked {
        wit::FetchError::Blocked(msg)
    } else {
        wit::FetchError::Transport(msg)
    }
}

/// For the fuzz targets: what the egress guard makes of `path` for the service at
/// `http://api.example:8080/v1` (built once: a client per input would be most of the cost).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_url_for(path: &str) -> Result<Url, String> {
    static SERVICE: std::sync::OnceLock<Service> = std::sync::OnceLock::new();
    let service = SERVICE.get_or_init(|| {
        let config = bare_service("http://api.example:8080/v1");
        Service::new(&config, &Arc::default(), None).expect("the fuzz service")
    });
    service.url_for(path).map_err(|e| e.to_string())
}

/// A service at `base` without a credential and with small limits (tests, fuzzing).
#[cfg(any(test, feature = "fuzzing"))]
fn bare_service(base: &str) -> ServiceConfig {
    ServiceConfig {
        name: "s".into(),
        base_url: base.into(),
        credential: crate::config::CredentialMode::None,
        provider: None,
        audience: None,
        scopes: Vec::new(),
        header_env: None,
        header_name: None,
        issuer: None,
        timeout_ms: 1000,
        max_request_bytes: 100,
        max_response_bytes: 100,
        headers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(base: &str) -> ServiceConfig {
        bare_service(base)
    }

    #[test]
    fn paths_stay_under_the_service() {
        let s = Service::new(&config("https://api.example/v1"), &Arc::default(), None).unwrap();
        assert_eq!(
            s.url_for("/notes?limit=5").unwrap().as_str(),
            "https://api.example/v1/notes?limit=5"
        );
        for bad in [
            "notes",
            "//evil.example/x",
            "/../admin",
            "/a/../../b",
            "/%2e%2e/admin",
            "/a%2fb",
            "/a%5cb",
            "/@evil.example",
            "/x#frag",
            "/a\\b",
            "/a b",
            "http://evil.example/",
            "/./x",
        ] {
            assert!(s.url_for(bad).is_err(), "{bad}");
        }
    }

    /// A refusal travels through reqwest as a typed source error and is recognised as such.
    #[tokio::test]
    async fn a_resolver_refusal_is_classified_as_blocked_by_type() {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                allow_internal: false,
            }))
            .no_proxy()
            .build()
            .unwrap();
        let e = client.get("http://localhost:9/x").send().await.unwrap_err();
        match classify(e) {
            wit::FetchError::Blocked(msg) => {
                assert!(
                    msg.contains("localhost resolves only to addresses plugins may not reach"),
                    "{msg}"
                )
            }
            other => panic!("not classified as blocked: {other:?}"),
        }
    }

    #[test]
    fn addresses() {
        for ip in [
            "169.254.169.254",
            "fd00:ec2::254",
            "fe80::1",
            "0.0.0.0",
            "::ffff:169.254.169.254",
        ] {
            assert!(always_blocked(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["127.0.0.1", "10.1.2.3", "192.168.0.1", "::1", "fd12::1"] {
            assert!(
                internal(ip.parse().unwrap()) && !always_blocked(ip.parse().unwrap()),
                "{ip}"
            );
        }
        assert!(!internal("93.184.216.34".parse().unwrap()));
        assert!(
            Service::new(
                &config("http://169.254.169.254/latest"),
                &Arc::default(),
                None
            )
            .is_err()
        );
    }
}
