//! The embedded development authorization server: zero-setup OAuth for the quickstart and for
//! hermetic tests. **Never for production** (it says so loudly when it starts).
//!
//! Owns RFC 8414 metadata (and the OIDC discovery alias), the JWKS, `/authorize`
//! (authorization code with PKCE S256 only, exact redirect URIs, `state` echoed, RFC 9207
//! `iss`, RFC 8707 `resource` limited to this gateway's tenants, a consent page with a user
//! picker or auto-approval), `/token` (authorization code, rotating refresh tokens, client
//! credentials; `Cache-Control: no-store`; short-lived ES256 JWT access tokens, `typ at+jwt`,
//! `aud` = the resource; refresh tokens for `offline_access` only) and client registration (open DCR, pre-registered clients). State
//! lives in memory. It must not validate tokens for the gateway: the `auth` module trusts it
//! exactly as it would trust any external issuer, through its metadata and JWKS.

mod cimd;
mod enterprise;
mod keys;
mod rar;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::{Config, DevAsConfig};
use crate::oauth::{ACCESS_TOKEN_TYPE, JWT_BEARER_GRANT, TOKEN_EXCHANGE};

/// How long an authorization code may be redeemed.
const CODE_TTL: Duration = Duration::from_secs(60);
/// Most unredeemed authorization codes kept.
const MAX_CODES: usize = 1000;
/// Most live refresh tokens kept.
const MAX_REFRESH_TOKENS: usize = 10_000;
/// DPoP proofs remembered at the token endpoint (each for its `iat` window).
const MAX_SPENT_PROOFS: usize = 10_000;
/// How far a token request's DPoP proof `iat` may be from now, in seconds.
const DPOP_MAX_AGE: u64 = 300;
/// The algorithms token requests' DPoP proofs may use.
const DPOP_ALGORITHMS: &[&str] = &["ES256", "ES384", "RS256", "PS256", "EdDSA"];
/// Most dynamically registered (and metadata document) clients kept; the oldest go first.
const MAX_REGISTERED_CLIENTS: usize = 500;
/// Dynamic registrations one client network may make per minute: a flood from one address
/// cannot push every other client's registration out.
const REGISTRATIONS_PER_MINUTE: u32 = 60;
/// Most redirect URIs one registration may name.
const MAX_REDIRECT_URIS: usize = 10;
/// Longest redirect URI (bytes).
const MAX_REDIRECT_URI_BYTES: usize = 2048;
/// Longest client name (characters); longer ones are cut.
const MAX_CLIENT_NAME_CHARS: usize = 200;

/// Make room in `map` for one more entry: drop expired entries, then the soonest to expire.
fn bounded<T>(map: &mut HashMap<String, T>, max: usize, expires: impl Fn(&T) -> Instant) {
    let now = Instant::now();
    map.retain(|_, v| expires(v) > now);
    while map.len() >= max {
        let Some(soonest) = map
            .iter()
            .min_by_key(|(_, v)| expires(v))
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        map.remove(&soonest);
    }
}

/// A registered client. Its `Debug` leaves the secret out.
#[derive(Clone)]
struct Client {
    client_id: String,
    name: String,
    /// `None` for a public client.
    secret: Option<String>,
    redirect_uris: Vec<String>,
    grant_types: Vec<String>,
    /// When it registered (dynamically or by a metadata document); `None` for configured
    /// clients, which are never evicted.
    registered: Option<Instant>,
    /// It has been authorized for at least once (registrations never used go first).
    used: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.client_id)
            .field("name", &self.name)
            .field("confidential", &self.secret.is_some())
            .field("redirect_uris", &self.redirect_uris)
            .finish_non_exhaustive()
    }
}

/// A registered client as kept in the registrations file.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredClient {
    client_id: String,
    name: String,
    secret: Option<String>,
    redirect_uris: Vec<String>,
    grant_types: Vec<String>,
}

/// The clients registered before the last restart (none if the file is missing; a file that
/// does not parse is reported and ignored: clients register again).
fn load_registrations(path: &std::path::Path) -> HashMap<String, Client> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return HashMap::new(),
        Err(e) => {
            tracing::warn!(file = %path.display(), "development AS: cannot read the registered clients ({e}); they must register again");
            return HashMap::new();
        }
    };
    match serde_json::from_str::<Vec<StoredClient>>(&text) {
        Ok(stored) => stored
            .into_iter()
            .take(MAX_REGISTERED_CLIENTS)
            .map(|c| {
                let client = Client {
                    client_id: c.client_id,
                    name: c.name,
                    secret: c.secret,
                    redirect_uris: c.redirect_uris,
                    grant_types: c.grant_types,
                    registered: Some(Instant::now()),
                    used: false,
                };
                (client.client_id.clone(), client)
            })
            .collect(),
        Err(e) => {
            tracing::warn!(file = %path.display(), "development AS: the registered clients file is not valid ({e}); clients must register again");
            HashMap::new()
        }
    }
}

/// Keep the registered (not configured) clients in `path`, owner-only, as the key is kept.
fn save_registrations(path: &std::path::Path, clients: &HashMap<String, Client>) {
    let stored: Vec<StoredClient> = clients
        .values()
        .filter(|c| c.registered.is_some())
        .map(|c| StoredClient {
            client_id: c.client_id.clone(),
            name: c.name.clone(),
            secret: c.secret.clone(),
            redirect_uris: c.redirect_uris.clone(),
            grant_types: c.grant_types.clone(),
        })
        .collect();
    let Ok(text) = serde_json::to_string(&stored) else {
        return;
    };
    let temp = path.with_extension("json.tmp");
    if let Err(e) = keys::write_private(&temp, &text).and_then(|()| std::fs::rename(&temp, path)) {
        tracing::warn!(file = %path.display(), "development AS: cannot keep the registered clients ({e}); they will have to register again after a restart");
    }
}

/// An authorization code awaiting redemption.
struct CodeGrant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    resource: String,
    scope: String,
    subject: String,
    expires: Instant,
    /// `dpop_jkt` at authorize (RFC 9449 §10): the code is redeemed only with this key's proof.
    dpop_jkt: Option<String>,
    /// The approvals of single calls the person approved (RFC 9396).
    details: Option<Value>,
}

/// A refresh token (rotated on every use).
struct RefreshGrant {
    client_id: String,
    resource: String,
    scope: String,
    subject: String,
    expires: Instant,
    /// The key its access tokens are bound to: a refresh needs a proof by the same key
    /// (RFC 9449 §5).
    dpop_jkt: Option<String>,
}

pub use crate::oauth::DeclaredScopes;
pub use crate::oauth::approval::DeclaredApprovals;

/// The development authorization server.
pub struct DevAs {
    issuer: String,
    config: DevAsConfig,
    /// The resource URLs tokens may be issued for (the tenants' endpoints).
    resources: Vec<String>,
    /// Audiences tokens may be exchanged for.
    exchange_audiences: Vec<String>,
    /// `auth.scopes_supported` and `offline_access`.
    scopes: Vec<String>,
    /// The scopes the tenants' plugins currently declare (they change on reload).
    declared_scopes: DeclaredScopes,
    key: keys::SigningKey,
    /// The enterprise IdPs whose identity assertions it takes (`jwt-bearer`).
    enterprise: enterprise::Enterprise,
    /// Rich Authorization Requests: the approval types it grants, and pushed requests.
    rar: rar::Rar<AuthorizeParams>,
    /// Test hook: client metadata documents served from files.
    cimd_documents: std::collections::BTreeMap<String, std::path::PathBuf>,
    clients: Mutex<HashMap<String, Client>>,
    /// With `key_file`: where registered clients are kept, so a client that registered before
    /// a restart is still known after it, as the key that signed its tokens is.
    registrations_file: Option<std::path::PathBuf>,
    codes: Mutex<HashMap<String, CodeGrant>>,
    refresh: Mutex<HashMap<String, RefreshGrant>>,
    /// Dynamic registrations per client network in the current minute: (window start, count).
    registrations: Mutex<HashMap<std::net::IpAddr, (Instant, u32)>>,
    /// DPoP proofs presented at the token endpoint (hashed key + `jti`) until they expire.
    spent_proofs: Mutex<HashMap<[u8; 32], u64>>,
}

impl std::fmt::Debug for DevAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevAs")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::fill(&mut b);
    B64.encode(b)
}

fn now_secs() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// An OAuth error response (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: impl Into<String>) -> Response {
    let body = json!({"error": error, "error_description": description.into()});
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}

/// Whether a redirect URI is acceptable: https, or http on a loopback host.
fn acceptable_redirect(uri: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(uri) else {
        return false;
    };
    if u.fragment().is_some() {
        return false;
    }
    match u.scheme() {
        "https" => true,
        "http" => matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")),
        // Native apps' private-use schemes (RFC 8252 §7.1).
        s => s.contains('.'),
    }
}

impl DevAs {
    /// Build from the configuration: the issuer is `<public_url>/dev-as`, tokens may target
    /// every tenant's resource URL and carry `auth.scopes_supported`, `offline_access` and
    /// whatever scopes `declared` returns (the plugins' own, so a client can obtain what a
    /// tool requires); tokens may carry approvals of single calls (RFC 9396) of the types the
    /// rules `approvals` returns name.
    pub fn new(
        config: &Config,
        declared: DeclaredScopes,
        approvals: DeclaredApprovals,
    ) -> anyhow::Result<Arc<Self>> {
        Self::build(config, true, declared, approvals)
    }

    /// Say loudly that this development AS is being served (once the gateway listens; a
    /// one-shot command that serves no HTTP — `check`, `call`, `stdio` — does not say it).
    pub fn warn_served(&self) {
        tracing::warn!(
            issuer = %self.issuer,
            "THE DEVELOPMENT AUTHORIZATION SERVER IS ON: it issues tokens to anyone who asks. Never enable it in production."
        );
    }

    /// Only the signing side (the `portcullis token` command): no clients, so no client
    /// secrets need to be in the environment.
    pub fn minter(config: &Config) -> anyhow::Result<Arc<Self>> {
        Self::build(config, false, Arc::new(BTreeSet::new), Arc::new(Vec::new))
    }

    fn build(
        config: &Config,
        with_clients: bool,
        declared_scopes: DeclaredScopes,
        approvals: DeclaredApprovals,
    ) -> anyhow::Result<Arc<Self>> {
        let dev = &config.dev_as;
        let key_file = dev.key_file.as_ref().map(|p| config.resolve_path(p));
        let key = keys::SigningKey::load_or_generate(key_file.as_deref())?;
        let registrations_file = key_file
            .as_ref()
            .filter(|_| with_clients)
            .map(|k| k.with_extension("clients.json"));
        let mut clients: HashMap<String, Client> = registrations_file
            .as_deref()
            .map(load_registrations)
            .unwrap_or_default();
        for (i, c) in dev.clients.iter().enumerate().filter(|_| with_clients) {
            let secret = match &c.client_secret_env {
                Some(var) => Some(crate::config::secret_from_env(var).map_err(|e| {
                    anyhow::anyhow!(
                        "{}: dev_as.clients[{i}].client_secret_env: {e}",
                        config.source.display()
                    )
                })?),
                None => None,
            };
            clients.insert(
                c.client_id.clone(),
                Client {
                    client_id: c.client_id.clone(),
                    name: c.name.clone().unwrap_or_else(|| c.client_id.clone()),
                    secret,
                    redirect_uris: c.redirect_uris.clone(),
                    grant_types: c.grant_types.clone(),
                    registered: None,
                    used: false,
                },
            );
        }
        let resources = config
            .tenants
            .iter()
            .map(|t| config.tenant_resource(t))
            .collect();
        let mut scopes = config.auth.scopes_supported.clone();
        scopes.push("offline_access".into());
        // Tokens may be issued for the listed audiences and for every service the tenants
        // declare with a token-exchange or client-credentials credential.
        let mut exchange_audiences = dev.exchange_audiences.clone();
        exchange_audiences.extend(
            config
                .tenants
                .iter()
                .flat_map(|t| &t.services)
                .filter(|s| s.credential.uses_authorization_server())
                .filter_map(|s| s.audience.clone()),
        );
        let enterprise =
            enterprise::Enterprise::load(&dev.enterprise_idps, |p| config.resolve_path(p))
                .map_err(|e| anyhow::anyhow!("{}: {e:#}", config.source.display()))?;
        Ok(Arc::new(Self {
            rar: rar::Rar::new(approvals),
            enterprise,
            exchange_audiences,
            issuer: config.dev_as_issuer(),
            config: dev.clone(),
            resources,
            scopes,
            declared_scopes,
            key,
            cimd_documents: dev
                .cimd_documents
                .iter()
                .map(|(k, v)| (k.clone(), config.resolve_path(v)))
                .collect(),
            clients: Mutex::new(clients),
            registrations_file,
            codes: Mutex::new(HashMap::new()),
            refresh: Mutex::new(HashMap::new()),
            registrations: Mutex::new(HashMap::new()),
            spent_proofs: Mutex::new(HashMap::new()),
        }))
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Mint an access token directly (the `portcullis token` command and tests).
    pub fn mint(
        &self,
        subject: &str,
        client_id: &str,
        resource: &str,
        scope: &str,
    ) -> anyhow::Result<String> {
        self.mint_bound(subject, client_id, resource, scope, None)
    }

    /// [`DevAs::mint`], bound to the DPoP key with thumbprint `jkt` when given (`cnf.jkt`,
    /// RFC 9449 §6).
    pub fn mint_bound(
        &self,
        subject: &str,
        client_id: &str,
        resource: &str,
        scope: &str,
        jkt: Option<&str>,
    ) -> anyhow::Result<String> {
        self.mint_with(subject, client_id, resource, scope, (jkt, None))
    }

    /// [`DevAs::mint_bound`], carrying the approved `details` (RFC 9396) when given.
    fn mint_with(
        &self,
        subject: &str,
        client_id: &str,
        resource: &str,
        scope: &str,
        (jkt, details): (Option<&str>, Option<&Value>),
    ) -> anyhow::Result<String> {
        let now = now_secs();
        let mut claims = json!({
            "iss": self.issuer, "sub": subject, "aud": resource, "client_id": client_id, "scope": scope,
            "iat": now, "exp": now + self.config.access_token_ttl_secs, "jti": random_token(),
        });
        if let Some(jkt) = jkt {
            claims["cnf"] = json!({ "jkt": jkt });
        }
        if let Some(details) = details {
            claims["authorization_details"] = details.clone();
        }
        self.key.sign(&claims)
    }

    /// The `authorization_details` of an authorization request, checked for `resource`.
    fn requested_details(
        &self,
        p: &AuthorizeParams,
        resource: &str,
    ) -> Result<Option<Value>, AuthorizeError> {
        let Some(text) = &p.authorization_details else {
            return Ok(None);
        };
        self.rar
            .check(text, resource)
            .map(Some)
            .map_err(|why| AuthorizeError::Redirect {
                redirect_uri: p.redirect_uri.clone().unwrap_or_default(),
                error: "invalid_authorization_details".into(),
                description: why,
                state: p.state.clone(),
            })
    }

    /// Its RFC 8414 metadata document.
    pub fn metadata(&self) -> Value {
        let i = &self.issuer;
        let mut m = json!({
            "issuer": i,
            "authorization_endpoint": format!("{i}/authorize"),
            "token_endpoint": format!("{i}/token"),
            "jwks_uri": format!("{i}/jwks"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", TOKEN_EXCHANGE],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "scopes_supported": self.scopes_supported(),
            "authorization_response_iss_parameter_supported": true,
            "client_id_metadata_document_supported": self.config.cimd,
            "dpop_signing_alg_values_supported": DPOP_ALGORITHMS,
        });
        m["pushed_authorization_request_endpoint"] = format!("{i}/par").into();
        let types = self.rar.types();
        if !types.is_empty() {
            m["authorization_details_types_supported"] = json!(types);
            m["authorization_details_types_metadata_endpoint"] =
                format!("{i}/authorization-details-types").into();
        }
        if self.enterprise.offered() {
            if let Some(grants) = m["grant_types_supported"].as_array_mut() {
                grants.push(JWT_BEARER_GRANT.into());
            }
            m["authorization_grant_profiles_supported"] = json!([enterprise::ID_JAG_PROFILE]);
        }
        if self.config.dcr {
            m["registration_endpoint"] = format!("{i}/register").into();
        }
        m
    }

    /// The routes, for the gateway's router.
    pub fn router(self: &Arc<Self>) -> Router {
        let metadata = get(|State(d): State<Arc<DevAs>>| async move { axum::Json(d.metadata()) });
        Router::new()
            .route(
                "/.well-known/oauth-authorization-server/dev-as",
                metadata.clone(),
            )
            .route("/.well-known/openid-configuration/dev-as", metadata.clone())
            .route("/dev-as/.well-known/openid-configuration", metadata)
            .route(
                "/dev-as/jwks",
                get(|State(d): State<Arc<DevAs>>| async move { axum::Json(d.key.jwks()) }),
            )
            .route("/dev-as/authorize", get(authorize).post(decide))
            .route("/dev-as/token", post(token))
            .route("/dev-as/par", post(push))
            .route(
                "/dev-as/authorization-details-types",
                get(|State(dev): State<Arc<DevAs>>| async move {
                    axum::Json(Value::Object(dev.rar.types_metadata()))
                }),
            )
            .route("/dev-as/register", post(register))
            .with_state(self.clone())
    }

    /// The scopes this server issues: the configured ones, then the plugins' own.
    fn scopes_supported(&self) -> Vec<String> {
        crate::oauth::offered_scopes(&self.scopes, &self.declared_scopes)
    }

    /// The first scope in `scope` this server does not know, if any.
    fn unknown_scope<'s>(&self, scope: &'s str) -> Option<&'s str> {
        let known = self.scopes_supported();
        scope
            .split_whitespace()
            .find(|s| !known.iter().any(|x| x == s))
    }

    /// A client whose id is an https URL is (re)loaded from its metadata document.
    async fn load_metadata_client(&self, client_id: &str) -> Result<(), AuthorizeError> {
        if !self.config.cimd || !cimd::is_metadata_url(client_id) {
            return Ok(());
        }
        let doc = cimd::fetch(client_id, &self.cimd_documents)
            .await
            .map_err(|e| {
                tracing::info!(client_id, "refused a client metadata document: {e}");
                AuthorizeError::Show(format!("invalid_client: {e}"))
            })?;
        self.register_client(Client {
            client_id: client_id.to_string(),
            name: doc.name,
            secret: None,
            redirect_uris: doc.redirect_uris,
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            registered: Some(Instant::now()),
            used: false,
        });
        Ok(())
    }

    /// Whether the network of `peer` may register another client this minute.
    fn may_register(&self, peer: Option<std::net::IpAddr>) -> bool {
        let network = peer.map_or(
            std::net::IpAddr::from([0, 0, 0, 0]),
            crate::net::client_network,
        );
        let mut seen = self.registrations.lock();
        if seen.len() >= 10_000 {
            seen.retain(|_, (start, _)| start.elapsed() < Duration::from_secs(60));
            if seen.len() >= 10_000 {
                return false;
            }
        }
        let (start, count) = seen.entry(network).or_insert((Instant::now(), 0));
        if start.elapsed() >= Duration::from_secs(60) {
            *start = Instant::now();
            *count = 0;
        }
        *count += 1;
        *count <= REGISTRATIONS_PER_MINUTE
    }

    /// Keep a registered client, dropping the oldest registrations beyond the cap.
    fn register_client(&self, client: Client) {
        let mut clients = self.clients.lock();
        let registered = clients.values().filter(|c| c.registered.is_some()).count();
        if registered >= MAX_REGISTERED_CLIENTS && !clients.contains_key(&client.client_id) {
            // Registrations never used first, then the oldest.
            let mut by_age: Vec<(bool, Instant, String)> = clients
                .values()
                .filter_map(|c| Some((c.used, c.registered?, c.client_id.clone())))
                .collect();
            by_age.sort();
            for (_, _, id) in by_age.iter().take(registered + 1 - MAX_REGISTERED_CLIENTS) {
                clients.remove(id);
            }
        }
        clients.insert(client.client_id.clone(), client);
        if let Some(path) = &self.registrations_file {
            save_registrations(path, &clients);
        }
    }

    /// Checks shared by the authorization request and the consent decision. Errors before the
    /// redirect URI is trusted are shown, never redirected.
    fn check_authorization(
        &self,
        p: &AuthorizeParams,
    ) -> Result<(Client, String, String), AuthorizeError> {
        let client = self
            .clients
            .lock()
            .get(&p.client_id)
            .cloned()
            .ok_or_else(|| {
                AuthorizeError::Show(format!(
                    "unknown client_id `{}`: this client is not registered with this development \
                     authorization server (it was registered elsewhere, or before its key file was \
                     removed). Clear the client's stored OAuth state (the MCP Inspector: \"Clear\" \
                     in its authentication panel) so it registers again.",
                    p.client_id
                ))
            })?;
        let redirect_uri = p.redirect_uri.clone().unwrap_or_default();
        if !client.redirect_uris.contains(&redirect_uri) {
            return Err(AuthorizeError::Show(format!(
                "redirect_uri `{redirect_uri}` is not registered for this client"
            )));
        }
        let back = |error: &str, description: &str| AuthorizeError::Redirect {
            redirect_uri: redirect_uri.clone(),
            error: error.into(),
            description: description.into(),
            state: p.state.clone(),
        };
        if p.response_type.as_deref() != Some("code") {
            return Err(back(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
        match (
            p.code_challenge.as_deref(),
            p.code_challenge_method.as_deref(),
        ) {
            (Some(c), Some("S256")) if !c.is_empty() => {}
            (None, _) | (Some(""), _) => {
                return Err(back(
                    "invalid_request",
                    "PKCE is required: send code_challenge",
                ));
            }
            _ => {
                return Err(back(
                    "invalid_request",
                    "only code_challenge_method=S256 is supported",
                ));
            }
        }
        let resource = match &p.resource {
            Some(r) if self.resources.contains(r) => r.clone(),
            Some(r) => return Err(back("invalid_target", &format!("unknown resource {r}"))),
            None if self.resources.len() == 1 => self.resources[0].clone(),
            None => {
                return Err(back(
                    "invalid_target",
                    "resource is required (this server protects several)",
                ));
            }
        };
        let scope = p.scope.clone().unwrap_or_default();
        if let Some(bad) = self.unknown_scope(&scope) {
            return Err(back("invalid_scope", &format!("unknown scope {bad}")));
        }
        Ok((client, resource, scope))
    }

    fn issue_code(
        &self,
        p: &AuthorizeParams,
        client: &Client,
        resource: String,
        scope: String,
        subject: String,
    ) -> Response {
        let details: Option<Value> = p
            .authorization_details
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok());
        if let Some(d) = &details
            && !rar::approvable_by(d, &subject)
        {
            return AuthorizeError::Redirect {
                redirect_uri: p.redirect_uri.clone().unwrap_or_default(),
                error: "access_denied".into(),
                description: "the approvals asked for are another user's calls".into(),
                state: p.state.clone(),
            }
            .into_response();
        }
        let code = random_token();
        let redirect_uri = p.redirect_uri.clone().unwrap_or_default();
        // A client that got this far is in use: kept before ones only registered.
        if let Some(c) = self.clients.lock().get_mut(&client.client_id) {
            c.used = true;
        }
        let mut codes = self.codes.lock();
        bounded(&mut codes, MAX_CODES, |g| g.expires);
        codes.insert(
            code.clone(),
            CodeGrant {
                client_id: client.client_id.clone(),
                redirect_uri: redirect_uri.clone(),
                challenge: p.code_challenge.clone().unwrap_or_default(),
                resource,
                scope,
                subject,
                expires: Instant::now() + CODE_TTL,
                dpop_jkt: p.dpop_jkt.clone(),
                details,
            },
        );
        drop(codes);
        // Registered redirect URIs were checked to parse (acceptable_redirect), but a client's
        // input never reaches an `expect`.
        let Ok(mut url) = reqwest::Url::parse(&redirect_uri) else {
            return AuthorizeError::Show("redirect_uri is not a URL".into()).into_response();
        };
        url.query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("iss", &self.issuer);
        if let Some(s) = &p.state {
            url.query_pairs_mut().append_pair("state", s);
        }
        Redirect::to(url.as_str()).into_response()
    }

    /// Issue an access token (and a rotated refresh token if the client may refresh), bound
    /// to the DPoP key `jkt` when the request carried a proof.
    fn tokens(
        &self,
        client: &Client,
        (subject, resource, scope): (&str, &str, &str),
        jkt: Option<&str>,
    ) -> Response {
        self.tokens_with(client, (subject, resource, scope), (jkt, None))
    }

    /// [`DevAs::tokens`] carrying approved `details` (RFC 9396), which the response repeats.
    fn tokens_with(
        &self,
        client: &Client,
        (subject, resource, scope): (&str, &str, &str),
        (jkt, details): (Option<&str>, Option<&Value>),
    ) -> Response {
        let access =
            match self.mint_with(subject, &client.client_id, resource, scope, (jkt, details)) {
                Ok(t) => t,
                Err(e) => {
                    return oauth_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "server_error",
                        e.to_string(),
                    );
                }
            };
        let mut body = json!({
            "access_token": access, "token_type": if jkt.is_some() { "DPoP" } else { "Bearer" },
            "expires_in": self.config.access_token_ttl_secs, "scope": scope,
        });
        if let Some(details) = details {
            body["authorization_details"] = details.clone();
        }
        // As in OIDC, a refresh token only for `offline_access`: a client that refreshes to
        // step up would otherwise get its old scope back (the TypeScript SDK does exactly that).
        let offline = scope.split_whitespace().any(|s| s == "offline_access");
        if offline && client.grant_types.iter().any(|g| g == "refresh_token") {
            let refresh = random_token();
            let mut tokens = self.refresh.lock();
            bounded(&mut tokens, MAX_REFRESH_TOKENS, |g| g.expires);
            let ttl = Duration::from_secs(self.config.refresh_token_ttl_secs);
            tokens.insert(
                refresh.clone(),
                RefreshGrant {
                    client_id: client.client_id.clone(),
                    resource: resource.into(),
                    scope: scope.into(),
                    subject: subject.into(),
                    expires: Instant::now().checked_add(ttl).unwrap_or_else(Instant::now),
                    dpop_jkt: jkt.map(str::to_string),
                },
            );
            drop(tokens);
            body["refresh_token"] = refresh.into();
        }
        (
            StatusCode::OK,
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::PRAGMA, "no-cache"),
            ],
            axum::Json(body),
        )
            .into_response()
    }

    /// The key a token request's `DPoP` proof is signed with (its thumbprint), if it carries
    /// one: the tokens issued are bound to it. A bad, stale or replayed proof is refused.
    fn dpop_key(&self, headers: &HeaderMap) -> Result<Option<String>, String> {
        let mut values = headers.get_all("dpop").iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err("more than one DPoP header".into());
        }
        let proof = value.to_str().map_err(|_| "the DPoP header is not ASCII")?;
        let algorithms: Vec<jsonwebtoken::Algorithm> = DPOP_ALGORITHMS
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        let names: Vec<String> = DPOP_ALGORITHMS.iter().map(|a| (*a).to_string()).collect();
        let checked = crate::oauth::proof::verify(proof, &algorithms, &names)?;
        let now = now_secs();
        let endpoint = format!("{}/token", self.issuer);
        let jti = crate::oauth::proof::for_request(
            &checked.claims,
            "POST",
            &endpoint,
            DPOP_MAX_AGE,
            now,
        )?;
        let key: [u8; 32] = Sha256::digest(format!("{}\u{0}{jti}", checked.jkt)).into();
        let mut spent = self.spent_proofs.lock();
        if spent.len() >= MAX_SPENT_PROOFS {
            spent.retain(|_, until| *until >= now);
        }
        if spent.get(&key).is_some_and(|until| *until >= now) {
            return Err("the proof was presented before (its jti is spent)".into());
        }
        if spent.len() >= MAX_SPENT_PROOFS {
            return Err("too many DPoP proofs right now; retry shortly".into());
        }
        spent.insert(key, now + 2 * DPOP_MAX_AGE);
        Ok(Some(checked.jkt))
    }

    /// RFC 8693: exchange a user's access token (issued here, for one of the gateway's
    /// resources) for a token for a configured downstream audience, acting as `client`.
    ///
    /// Long on purpose: the RFC 8693 checks in the order the RFC states them, each with its
    /// own error, then the token; split, the rules would no longer read as one list.
    fn exchange(&self, client: &Client, form: &TokenForm) -> Response {
        let bad = |error: &str, d: &str| oauth_error(StatusCode::BAD_REQUEST, error, d);
        if client.secret.is_none() {
            return bad(
                "unauthorized_client",
                "token exchange needs a confidential client",
            );
        }
        if form.subject_token_type.as_deref() != Some(ACCESS_TOKEN_TYPE) {
            return bad(
                "invalid_request",
                "subject_token_type must be an access token",
            );
        }
        if form
            .requested_token_type
            .as_deref()
            .is_some_and(|t| t != ACCESS_TOKEN_TYPE)
        {
            return bad("invalid_request", "only access tokens can be requested");
        }
        let Some(subject_token) = &form.subject_token else {
            return bad("invalid_request", "subject_token is required");
        };
        let subject = match self
            .key
            .verify(subject_token, &self.issuer, &self.resources)
        {
            Ok(c) => c,
            Err(e) => {
                let why = format!("the subject token is not valid here ({:?})", e.kind());
                return bad("invalid_grant", &why);
            }
        };
        let target = match (&form.audience, &form.resource) {
            (Some(a), None) | (None, Some(a)) => a.clone(),
            (Some(a), Some(r)) if a == r => a.clone(),
            _ => {
                return bad(
                    "invalid_target",
                    "name exactly one target with audience or resource",
                );
            }
        };
        if !self.exchange_audiences.contains(&target) {
            return bad(
                "invalid_target",
                &format!("{target} is not an audience tokens can be exchanged for"),
            );
        }
        let granted: Vec<&str> = subject
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let scope = match &form.scope {
            Some(s) if s.split_whitespace().all(|x| granted.contains(&x)) => s.clone(),
            Some(_) => {
                return bad(
                    "invalid_scope",
                    "an exchange may only narrow the subject token's scopes",
                );
            }
            None => granted.join(" "),
        };
        let sub = subject
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let now = now_secs();
        let claims = json!({
            "iss": self.issuer, "sub": sub, "aud": target, "client_id": client.client_id, "scope": scope,
            "act": {"sub": client.client_id}, "iat": now, "exp": now + self.config.access_token_ttl_secs,
            "jti": random_token(),
        });
        match self.key.sign(&claims) {
            Ok(token) => (
                StatusCode::OK,
                [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")],
                axum::Json(json!({
                    "access_token": token, "issued_token_type": ACCESS_TOKEN_TYPE, "token_type": "Bearer",
                    "expires_in": self.config.access_token_ttl_secs, "scope": scope,
                })),
            )
                .into_response(),
            Err(e) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e.to_string()),
        }
    }

    /// Authenticate the client at the token endpoint (basic, post, or none for public clients).
    /// The error is the `invalid_client` description.
    fn client_at_token(
        &self,
        headers: &HeaderMap,
        form: &TokenForm,
    ) -> Result<Client, &'static str> {
        let basic = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
            });
        let (id, secret) = match (&basic, &form.client_id) {
            (Some((id, secret)), _) => (id.clone(), Some(secret.clone())),
            (None, Some(id)) => (id.clone(), form.client_secret.clone()),
            (None, None) => return Err("client authentication is required"),
        };
        let client = self
            .clients
            .lock()
            .get(&id)
            .cloned()
            .ok_or("unknown client")?;
        match (&client.secret, secret) {
            (None, _) => Ok(client),
            (Some(expected), Some(given))
                if constant_time_eq(expected.as_bytes(), given.as_bytes()) =>
            {
                Ok(client)
            }
            _ => Err("client authentication failed"),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why an authorization request failed.
enum AuthorizeError {
    /// Show the error to the user: the redirect URI cannot be trusted.
    Show(String),
    /// Send the client an error at its (verified) redirect URI.
    Redirect {
        redirect_uri: String,
        error: String,
        description: String,
        state: Option<String>,
    },
}

impl IntoResponse for AuthorizeError {
    fn into_response(self) -> Response {
        match self {
            AuthorizeError::Show(msg) => (
                StatusCode::BAD_REQUEST,
                Html(format!(
                    "<h1>Authorization request refused</h1><p>{}</p>",
                    escape(&msg)
                )),
            )
                .into_response(),
            AuthorizeError::Redirect {
                redirect_uri,
                error,
                description,
                state,
            } => {
                let Ok(mut url) = reqwest::Url::parse(&redirect_uri) else {
                    return AuthorizeError::Show("redirect_uri is not a URL".into())
                        .into_response();
                };
                url.query_pairs_mut()
                    .append_pair("error", &error)
                    .append_pair("error_description", &description);
                if let Some(s) = state {
                    url.query_pairs_mut().append_pair("state", &s);
                }
                Redirect::to(url.as_str()).into_response()
            }
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `/authorize` parameters (query on GET, form on the consent POST).
#[derive(Debug, Clone, Deserialize)]
struct AuthorizeParams {
    response_type: Option<String>,
    #[serde(default)]
    client_id: String,
    redirect_uri: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    state: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
    /// RFC 9449 §10: the thumbprint of the key the tokens will be bound to.
    dpop_jkt: Option<String>,
    /// RFC 9396: the approvals asked for (a JSON array).
    authorization_details: Option<String>,
    /// RFC 9126: a pushed request's reference (then the pushed parameters are the request).
    request_uri: Option<String>,
    /// Consent page only: the chosen user and the decision.
    user: Option<String>,
    decision: Option<String>,
}

async fn authorize(State(dev): State<Arc<DevAs>>, Query(p): Query<AuthorizeParams>) -> Response {
    let p = match &p.request_uri {
        Some(uri) => match dev.rar.take(uri, &p.client_id) {
            Some(pushed) => pushed,
            None => {
                return AuthorizeError::Show(
                    "request_uri is unknown, expired, used, or another client's".into(),
                )
                .into_response();
            }
        },
        None => p,
    };
    if let Err(e) = dev.load_metadata_client(&p.client_id).await {
        return e.into_response();
    }
    let (client, resource, scope) = match dev.check_authorization(&p) {
        Ok(ok) => ok,
        Err(e) => return e.into_response(),
    };
    let details = match dev.requested_details(&p, &resource) {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    if dev.config.auto_approve {
        let user = dev
            .config
            .users
            .first()
            .cloned()
            .unwrap_or_else(|| "dev-user".into());
        return dev.issue_code(&p, &client, resource, scope, user);
    }
    let host = reqwest::Url::parse(p.redirect_uri.as_deref().unwrap_or_default())
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let hidden: String = [
        ("response_type", p.response_type.clone()),
        ("client_id", Some(p.client_id.clone())),
        ("redirect_uri", p.redirect_uri.clone()),
        ("code_challenge", p.code_challenge.clone()),
        ("code_challenge_method", p.code_challenge_method.clone()),
        ("state", p.state.clone()),
        ("scope", p.scope.clone()),
        ("resource", Some(resource.clone())),
        ("dpop_jkt", p.dpop_jkt.clone()),
        ("authorization_details", p.authorization_details.clone()),
    ]
    .iter()
    .filter_map(|(k, v)| {
        v.as_ref()
            .map(|v| format!("<input type=hidden name=\"{k}\" value=\"{}\">", escape(v)))
    })
    .collect();
    let users: String = dev
        .config
        .users
        .iter()
        .map(|u| format!("<option>{}</option>", escape(u)))
        .collect();
    let scopes = if scope.is_empty() {
        "(none)".to_string()
    } else {
        escape(&scope)
    };
    let approvals = details
        .as_ref()
        .map(|d| format!("<h2>You are approving</h2>{}", dev.rar.describe(d, escape)))
        .unwrap_or_default();
    Html(format!(
        "<!doctype html><title>Portcullis dev authorization</title>\
         <p><b>DEVELOPMENT AUTHORIZATION SERVER</b> &mdash; not for production.</p>\
         <h1>{name} wants to access {resource}</h1>\
         <p>It will send you back to <b>{host}</b>.</p><p>Scopes: <code>{scopes}</code></p>{approvals}\
         <form method=post action=\"authorize\">{hidden}\
         <label>Sign in as <select name=user>{users}</select></label>\
         <button name=decision value=approve>Approve</button> <button name=decision value=deny>Deny</button></form>",
        name = escape(&client.name),
        resource = escape(&resource),
        host = escape(&host),
    ))
    .into_response()
}

async fn decide(State(dev): State<Arc<DevAs>>, Form(p): Form<AuthorizeParams>) -> Response {
    if let Err(e) = dev.load_metadata_client(&p.client_id).await {
        return e.into_response();
    }
    let (client, resource, scope) = match dev.check_authorization(&p) {
        Ok(ok) => ok,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = dev.requested_details(&p, &resource) {
        return e.into_response();
    }
    let user = p.user.clone().filter(|u| dev.config.users.contains(u));
    match (p.decision.as_deref(), user) {
        (Some("approve"), Some(user)) => dev.issue_code(&p, &client, resource, scope, user),
        _ => AuthorizeError::Redirect {
            redirect_uri: p.redirect_uri.clone().unwrap_or_default(),
            error: "access_denied".into(),
            description: "the user denied the request".into(),
            state: p.state.clone(),
        }
        .into_response(),
    }
}

/// `/token` form fields. No `Debug`: it holds codes, tokens and client secrets.
#[derive(Deserialize, Default)]
struct TokenForm {
    grant_type: String,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    subject_token: Option<String>,
    subject_token_type: Option<String>,
    requested_token_type: Option<String>,
    audience: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    resource: Option<String>,
    scope: Option<String>,
    /// `jwt-bearer`: the identity assertion (ID-JAG).
    assertion: Option<String>,
}

/// RFC 9126 pushed authorization requests: the authorization parameters (large
/// `authorization_details` included) POSTed first, checked as `/authorize` would, and kept
/// under a `request_uri` for 60 s, for this client, once. A confidential client authenticates.
async fn push(
    State(dev): State<Arc<DevAs>>,
    headers: HeaderMap,
    Form(p): Form<AuthorizeParams>,
) -> Response {
    let bad = |error: &str, d: &str| oauth_error(StatusCode::BAD_REQUEST, error, d);
    if p.request_uri.is_some() {
        return bad("invalid_request", "request_uri cannot be pushed");
    }
    if let Err(e) = dev.load_metadata_client(&p.client_id).await {
        return e.into_response();
    }
    let confidential = dev
        .clients
        .lock()
        .get(&p.client_id)
        .is_some_and(|c| c.secret.is_some());
    let named = TokenForm {
        client_id: Some(p.client_id.clone()),
        ..TokenForm::default()
    };
    if confidential && dev.client_at_token(&headers, &named).is_err() {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    let resource = match dev.check_authorization(&p) {
        Ok((_, resource, _)) => resource,
        Err(AuthorizeError::Redirect {
            error, description, ..
        }) => return bad(&error, &description),
        Err(AuthorizeError::Show(why)) => return bad("invalid_request", &why),
    };
    if let Err(AuthorizeError::Redirect {
        error, description, ..
    }) = dev.requested_details(&p, &resource)
    {
        return bad(&error, &description);
    }
    match dev.rar.push(&p.client_id.clone(), p) {
        Ok(uri) => (
            StatusCode::CREATED,
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(json!({"request_uri": uri, "expires_in": rar::PUSHED_TTL.as_secs()})),
        )
            .into_response(),
        Err(why) => oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            why,
        ),
    }
}

async fn token(
    State(dev): State<Arc<DevAs>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let bad = |error: &str, d: &str| oauth_error(StatusCode::BAD_REQUEST, error, d);
    let client = match dev.client_at_token(&headers, &form) {
        Ok(c) => c,
        Err(why) => return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", why),
    };
    if !client.grant_types.iter().any(|g| g == &form.grant_type) {
        return bad(
            "unauthorized_client",
            &format!("this client may not use {}", form.grant_type),
        );
    }
    let jkt = match dev.dpop_key(&headers) {
        Ok(jkt) => jkt,
        Err(why) => return bad("invalid_dpop_proof", &why),
    };
    let jkt = jkt.as_deref();
    match form.grant_type.as_str() {
        "authorization_code" => dev.redeem_code(&client, &form, jkt),
        "refresh_token" => dev.refresh_grant(&client, &form, jkt),
        "client_credentials" => dev.client_credentials(&client, &form, jkt),
        TOKEN_EXCHANGE => dev.exchange(&client, &form),
        JWT_BEARER_GRANT if dev.enterprise.offered() => dev.identity_assertion(&client, &form, jkt),
        other => bad(
            "unsupported_grant_type",
            &format!("grant_type {other} is not supported"),
        ),
    }
}

impl DevAs {
    /// `authorization_code`: a code once, with its PKCE verifier and redirect URI.
    fn redeem_code(&self, client: &Client, form: &TokenForm, jkt: Option<&str>) -> Response {
        let bad = |error: &str, d: &str| oauth_error(StatusCode::BAD_REQUEST, error, d);
        // Single use: the code is gone whether or not the rest succeeds.
        let Some(grant) = form.code.as_ref().and_then(|c| self.codes.lock().remove(c)) else {
            return bad(
                "invalid_grant",
                "the code is unknown, expired or already used",
            );
        };
        if grant.expires < Instant::now() || grant.client_id != client.client_id {
            return bad(
                "invalid_grant",
                "the code is expired or belongs to another client",
            );
        }
        if form.redirect_uri.as_deref() != Some(grant.redirect_uri.as_str()) {
            return bad(
                "invalid_grant",
                "redirect_uri does not match the authorization request",
            );
        }
        let verifier = form.code_verifier.as_deref().unwrap_or_default();
        if verifier.len() < 43 || B64.encode(Sha256::digest(verifier.as_bytes())) != grant.challenge
        {
            return bad(
                "invalid_grant",
                "code_verifier does not match the code_challenge",
            );
        }
        if form.resource.as_ref().is_some_and(|r| r != &grant.resource) {
            return bad(
                "invalid_target",
                "resource differs from the authorization request",
            );
        }
        if grant.dpop_jkt.is_some() && grant.dpop_jkt.as_deref() != jkt {
            return bad(
                "invalid_dpop_proof",
                "the code is bound to another DPoP key (dpop_jkt)",
            );
        }
        self.tokens_with(
            client,
            (&grant.subject, &grant.resource, &grant.scope),
            (jkt, grant.details.as_ref()),
        )
    }

    /// `refresh_token`: rotation, and only narrowing the scope.
    fn refresh_grant(&self, client: &Client, form: &TokenForm, jkt: Option<&str>) -> Response {
        let bad = |error: &str, d: &str| oauth_error(StatusCode::BAD_REQUEST, error, d);
        // Rotation: a refresh token works once; a reused one is refused.
        let Some(grant) = form
            .refresh_token
            .as_ref()
            .and_then(|t| self.refresh.lock().remove(t))
        else {
            return bad(
                "invalid_grant",
                "the refresh token is unknown, expired or already used",
            );
        };
        if grant.expires < Instant::now() || grant.client_id != client.client_id {
            return bad(
                "invalid_grant",
                "the refresh token is expired or belongs to another client",
            );
        }
        let scope = match &form.scope {
            Some(s)
                if s.split_whitespace()
                    .all(|x| grant.scope.split_whitespace().any(|g| g == x)) =>
            {
                s.clone()
            }
            Some(_) => return bad("invalid_scope", "a refresh may only narrow the scope"),
            None => grant.scope.clone(),
        };
        if grant.dpop_jkt.is_some() && grant.dpop_jkt.as_deref() != jkt {
            return bad(
                "invalid_dpop_proof",
                "the refresh token is bound to another DPoP key",
            );
        }
        self.tokens(client, (&grant.subject, &grant.resource, &scope), jkt)
    }

    /// `jwt-bearer` with an identity assertion from a trusted enterprise IdP
    /// (Enterprise-Managed Authorization): a confidential client, the assertion issued to it
    /// for one of this gateway's resources; the token names the IdP's user and carries the
    /// scopes both the request (if it names any) and the assertion grant.
    fn identity_assertion(&self, client: &Client, form: &TokenForm, jkt: Option<&str>) -> Response {
        let bad = |error: &str, d: &str| oauth_error(StatusCode::BAD_REQUEST, error, d);
        if client.secret.is_none() {
            return bad(
                "unauthorized_client",
                "an identity assertion is accepted from a confidential client only",
            );
        }
        let Some(assertion) = form.assertion.as_deref() else {
            return bad("invalid_request", "assertion is missing");
        };
        let checked = match self.enterprise.check(
            assertion,
            &client.client_id,
            &self.issuer,
            &self.resources,
            now_secs(),
        ) {
            Ok(a) => a,
            Err((error, why)) => {
                tracing::info!(client = %client.client_id, "dev AS refused an identity assertion: {why}");
                return bad(error, &why);
            }
        };
        let supported = self.scopes_supported();
        let scope: Vec<&str> = match &form.scope {
            Some(requested) => requested
                .split_whitespace()
                .filter(|s| checked.scopes.iter().any(|g| g == s))
                .collect::<Vec<_>>(),
            None => checked.scopes.iter().map(String::as_str).collect(),
        }
        .into_iter()
        .filter(|s| supported.iter().any(|x| x == s))
        .collect();
        if scope.is_empty() && form.scope.is_some() {
            return bad(
                "invalid_scope",
                "none of the requested scopes is granted by the identity assertion",
            );
        }
        self.tokens(
            &Client {
                grant_types: vec![],
                ..client.clone()
            },
            (&checked.subject, &checked.resource, &scope.join(" ")),
            jkt,
        )
    }

    /// `client_credentials`: a confidential client, for a known resource.
    fn client_credentials(&self, client: &Client, form: &TokenForm, jkt: Option<&str>) -> Response {
        let bad = |error: &str, d: &str| oauth_error(StatusCode::BAD_REQUEST, error, d);
        if client.secret.is_none() {
            return bad(
                "unauthorized_client",
                "client_credentials needs a confidential client",
            );
        }
        let Some(resource) = form
            .resource
            .clone()
            .filter(|r| self.resources.contains(r) || self.exchange_audiences.contains(r))
        else {
            return bad(
                "invalid_target",
                "resource must be one of this gateway's tenants or downstream audiences",
            );
        };
        let scope = form.scope.clone().unwrap_or_default();
        if let Some(s) = self.unknown_scope(&scope) {
            return bad("invalid_scope", &format!("unknown scope {s}"));
        }
        self.tokens(
            &Client {
                grant_types: vec![],
                ..client.clone()
            },
            (&client.client_id, &resource, &scope),
            jkt,
        )
    }
}

/// RFC 7591 dynamic client registration.
///
/// Long on purpose: one metadata check after another, each answering its own RFC 7591
/// error, read top to bottom as the rules a registration must pass.
async fn register(
    State(dev): State<Arc<DevAs>>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    axum::Json(meta): axum::Json<Value>,
) -> Response {
    let bad = |error: &str, d: &str| oauth_error(StatusCode::BAD_REQUEST, error, d);
    if !dev.config.dcr {
        return oauth_error(
            StatusCode::FORBIDDEN,
            "access_denied",
            "dynamic client registration is turned off (dev_as.dcr)",
        );
    }
    if !dev.may_register(peer.map(|axum::Extension(c)| c.0.ip())) {
        tracing::warn!(
            "refused a dynamic client registration: too many from one address this minute"
        );
        let mut resp = oauth_error(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            format!("at most {REGISTRATIONS_PER_MINUTE} registrations a minute from one address"),
        );
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("60"),
        );
        return resp;
    }
    let Some(redirects) = meta["redirect_uris"]
        .as_array()
        .filter(|a| (1..=MAX_REDIRECT_URIS).contains(&a.len()))
    else {
        return bad(
            "invalid_redirect_uri",
            &format!("redirect_uris must be an array of 1 to {MAX_REDIRECT_URIS} URIs"),
        );
    };
    if redirects
        .iter()
        .any(|r| r.as_str().is_some_and(|u| u.len() > MAX_REDIRECT_URI_BYTES))
    {
        return bad(
            "invalid_redirect_uri",
            &format!("a redirect URI is longer than {MAX_REDIRECT_URI_BYTES} bytes"),
        );
    }
    let redirect_uris: Vec<String> = redirects
        .iter()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    if redirect_uris.len() != redirects.len()
        || !redirect_uris.iter().all(|u| acceptable_redirect(u))
    {
        return bad(
            "invalid_redirect_uri",
            "redirect URIs must be https, or http on a loopback host, without a fragment",
        );
    }
    let auth_method = meta["token_endpoint_auth_method"]
        .as_str()
        .unwrap_or("client_secret_basic");
    if !["none", "client_secret_basic", "client_secret_post"].contains(&auth_method) {
        return bad(
            "invalid_client_metadata",
            &format!("token_endpoint_auth_method {auth_method} is not supported"),
        );
    }
    let grant_types: Vec<String> = match meta["grant_types"].as_array() {
        Some(g) => g
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        None => vec!["authorization_code".into(), "refresh_token".into()],
    };
    if let Some(g) = grant_types
        .iter()
        .find(|g| !["authorization_code", "refresh_token"].contains(&g.as_str()))
    {
        return bad(
            "invalid_client_metadata",
            &format!("grant type {g} cannot be registered here"),
        );
    }
    let client_id = random_token();
    let secret = (auth_method != "none").then(random_token);
    let name: String = meta["client_name"]
        .as_str()
        .unwrap_or("unnamed client")
        .chars()
        .take(MAX_CLIENT_NAME_CHARS)
        .collect();
    dev.register_client(Client {
        client_id: client_id.clone(),
        name: name.clone(),
        secret: secret.clone(),
        redirect_uris: redirect_uris.clone(),
        grant_types: grant_types.clone(),
        registered: Some(Instant::now()),
        used: false,
    });
    // What was registered, not whatever else the request held (RFC 7591 §3.2.1 echoes the
    // registered metadata).
    let mut out = json!({});
    for field in [
        "scope",
        "client_uri",
        "logo_uri",
        "tos_uri",
        "policy_uri",
        "software_id",
        "software_version",
    ] {
        if let Some(v) = meta[field]
            .as_str()
            .filter(|v| v.len() <= MAX_REDIRECT_URI_BYTES)
        {
            out[field] = v.into();
        }
    }
    out["client_id"] = client_id.into();
    out["client_id_issued_at"] = now_secs().into();
    out["client_name"] = name.into();
    out["redirect_uris"] = json!(redirect_uris);
    out["grant_types"] = json!(grant_types);
    out["response_types"] = json!(["code"]);
    out["token_endpoint_auth_method"] = auth_method.into();
    if let Some(s) = secret {
        out["client_secret"] = s.into();
        out["client_secret_expires_at"] = 0.into();
    }
    (
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(out),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::acceptable_redirect;

    #[test]
    fn redirect_uri_rules() {
        assert!(acceptable_redirect("https://app.example/cb"));
        assert!(acceptable_redirect("http://127.0.0.1:33418/callback"));
        assert!(acceptable_redirect("http://localhost/cb"));
        assert!(!acceptable_redirect("http://evil.example/cb"));
        assert!(!acceptable_redirect("https://app.example/cb#frag"));
        assert!(!acceptable_redirect("not a url"));
    }
}
