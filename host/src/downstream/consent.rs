//! The user-consent flow (`credential = "user-consent"`): how a user's grant at a service's
//! own OAuth provider gets into the vault.
//!
//! A call without a grant gets a consent URL ([`Consent::url`]) carrying a ticket sealed with
//! the vault's key: (tenant, issuer, subject, service), valid ten minutes. The URL opens
//! this flow in the user's browser:
//!
//! 1. `GET /consent/start?ticket=…` — the browser user must first prove they are the caller
//!    the URL was minted for: they sign in at the tenant's issuer (authorization code + PKCE,
//!    as the gateway's client there, `redirect_uri` = `/consent/signed-in`).
//! 2. `GET /consent/signed-in` — the issuer's ID token (from its token endpoint) must name the
//!    ticket's issuer and subject (by the issuer's `subject_claim`: Entra ID's ID and access
//!    tokens carry different `sub`s, one `oid`), for this client and this flow's nonce; anyone else gets
//!    nothing, and nothing is stored. Then the provider's authorization code + PKCE flow.
//! 3. `GET /consent/callback` — the provider's code becomes the grant, sealed in the vault
//!    under the ticket's identity.
//!
//! Each step's `state` carries the flow, sealed with the vault's key (any replica continues
//! it), is bound to the browser that started the flow (a cookie), good for ten minutes and
//! used once (on every replica: [`SpentStates`]); `redirect_uri`s are static (no per-flow
//! value in them).
//!
//! Owns: tickets, flows, the three routes and their pages, and the provider clients. Must
//! not: decide who the caller is (`auth` did, the ticket carries it) or store grants other
//! than through the vault.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use http::StatusCode;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::oauth_client::{ClientAuth, OAuthClient, OAuthClients, TokenError};
use crate::config::{ClientAuthMethod, Config, ProviderConfig};
use crate::oauth::discover;
use crate::vault::{Grant, GrantKey, Vault, VaultError};

/// How long a consent URL is good for.
const TICKET_LIFETIME: Duration = Duration::from_secs(600);
/// How long one step of a flow waits for the browser.
const STEP_LIFETIME: Duration = Duration::from_secs(600);
/// What a ticket is sealed for.
const TICKET: &str = "consent-ticket";

/// Whose consent a URL asks for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub(crate) tenant: String,
    pub(crate) issuer: String,
    pub(crate) subject: String,
    pub(crate) service: String,
    /// Until when, in seconds since the epoch.
    expires: u64,
}

impl Ticket {
    pub(crate) fn key(&self) -> GrantKey<'_> {
        GrantKey {
            tenant: &self.tenant,
            issuer: &self.issuer,
            subject: &self.subject,
            service: &self.service,
        }
    }
}

/// The grant a provider issued now; `previous_refresh`: kept when the provider does not
/// rotate it. An access token without `expires_in` (GitHub's classic tokens) lives until the
/// provider refuses it.
fn grant_of(issued: super::oauth_client::Issued, previous_refresh: Option<&str>) -> Grant {
    let expires_at = if issued.says_lifetime {
        now() + issued.lifetime.as_secs()
    } else {
        u64::MAX / 2
    };
    Grant {
        access_token: issued.access_token,
        refresh_token: issued
            .refresh_token
            .or(previous_refresh.map(str::to_string)),
        expires_at,
        scope: issued.scope,
        issued_at: now(),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// One service's provider: the gateway as its OAuth client.
pub(crate) struct Provider {
    client: OAuthClient,
    /// Where to send the browser (configured, or discovered from the issuer).
    authorization_endpoint: tokio::sync::OnceCell<String>,
    issuer: Option<String>,
    scopes: Vec<String>,
    http: reqwest::Client,
}

impl Provider {
    fn new(service: &str, p: &ProviderConfig) -> anyhow::Result<Self> {
        let secret = crate::config::secret_from_env(&p.client_secret_env)
            .map_err(|e| anyhow::anyhow!("service `{service}`: provider.client_secret_env: {e}"))?;
        let auth = match p.auth_method {
            ClientAuthMethod::ClientSecretBasic => ClientAuth::SecretBasic(secret),
            _ => ClientAuth::SecretPost(secret),
        };
        let issuer = p.issuer.clone().unwrap_or_default();
        let mut client = OAuthClient::new(issuer, p.client_id.clone(), auth)?;
        if let Some(endpoint) = &p.token_endpoint {
            client = client.with_token_endpoint(endpoint.clone());
        }
        let authorization_endpoint = tokio::sync::OnceCell::new();
        if let Some(endpoint) = &p.authorization_endpoint {
            let _ = authorization_endpoint.set(endpoint.clone());
        }
        Ok(Self {
            client,
            authorization_endpoint,
            issuer: p.issuer.clone(),
            scopes: p.scopes.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    async fn authorize_url(&self) -> Result<&String, String> {
        self.authorization_endpoint
            .get_or_try_init(|| async {
                let issuer = self.issuer.as_deref().unwrap_or_default();
                let doc = discover(&self.http, issuer)
                    .await
                    .map_err(|e| e.to_string())?;
                doc["authorization_endpoint"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{issuer} advertises no authorization_endpoint"))
            })
            .await
    }

    /// A fresh grant for `refresh_token` (the provider may rotate it; the old one is kept
    /// when it does not).
    pub(crate) async fn refresh(&self, refresh_token: &str) -> Result<Grant, TokenError> {
        let issued = self
            .client
            .send(
                "refresh token grant",
                vec![
                    ("grant_type", "refresh_token".into()),
                    ("refresh_token", refresh_token.into()),
                ],
                Some(refresh_token),
            )
            .await?;
        Ok(grant_of(issued, Some(refresh_token)))
    }
}

/// Where a flow is.
#[derive(Serialize, Deserialize)]
enum Step {
    /// Waiting for the user to sign in at the tenant's issuer.
    SignIn { nonce: String },
    /// Waiting for the provider's consent.
    Provider,
}

/// One step of a flow, carried in its `state` parameter sealed with the vault's key (so any
/// replica continues it), used once.
#[derive(Serialize, Deserialize)]
struct Flow {
    /// Names this step for the once-only check.
    id: String,
    ticket: Ticket,
    step: Step,
    verifier: String,
    /// When the step began, in seconds since the epoch.
    started: u64,
    /// The digest of the browser's flow cookie: each step must come from the browser that
    /// started the flow (a provider's consent page sent to someone else's browser cannot
    /// put their account under this user's grant).
    browser: [u8; 32],
}

/// What a flow's `state` is sealed for.
const FLOW: &str = "consent-flow";

/// Which flow steps were used already: a state is good once, on whichever replica. `cluster`
/// implements it on Redis; one node keeps it in memory.
pub trait SpentStates: Send + Sync {
    /// Whether this is the first use of step `id` (remembered for `within`).
    fn first_use<'a>(
        &'a self,
        id: &'a str,
        within: Duration,
    ) -> crate::sandbox::BoxFuture<'a, Result<bool, super::SharedDown>>;
}

/// Most steps remembered by one node.
const MAX_SPENT: usize = 100_000;

/// One node's memory of used steps.
#[derive(Default)]
struct LocalSpent(Mutex<HashMap<String, Instant>>);

impl SpentStates for LocalSpent {
    fn first_use<'a>(
        &'a self,
        id: &'a str,
        within: Duration,
    ) -> crate::sandbox::BoxFuture<'a, Result<bool, super::SharedDown>> {
        Box::pin(async move {
            let mut spent = self.0.lock();
            if spent.len() >= MAX_SPENT {
                spent.retain(|_, at| at.elapsed() < within);
            }
            if spent.len() >= MAX_SPENT || spent.contains_key(id) {
                return Ok(false);
            }
            spent.insert(id.to_string(), Instant::now());
            Ok(true)
        })
    }
}

/// The cookie binding a flow to the browser that started it.
const COOKIE: &str = "portcullis_consent";

/// The flow cookie's value in `headers`, digested.
fn browser_of(headers: &http::HeaderMap) -> Option<[u8; 32]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            kv.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(str::to_string)
        })
        .map(|v| Sha256::digest(v.as_bytes()).into())
}

/// Told the identity (tenant, issuer, subject, service) of each consent that completed.
pub type Consented = Arc<dyn Fn(&GrantKey<'_>) + Send + Sync>;

/// The flow for every user-consent service of the gateway.
pub struct Consent {
    vault: Arc<Vault>,
    /// The gateway's public base URL (the routes' origin).
    base: String,
    /// The gateway's clients at the tenants' issuers, for the sign-in.
    sign_in: Arc<OAuthClients>,
    /// Each user-consent service's provider, by (tenant, service).
    providers: HashMap<(String, String), Arc<Provider>>,
    /// Which flow steps were used (on every replica, with `[cluster]`).
    spent: Arc<dyn SpentStates>,
    /// Each issuer's claim naming the user (`[[auth.issuer]] subject_claim`), when not `sub`.
    subject_claims: HashMap<String, String>,
    /// The tenants' issuers' authorization endpoints, as discovered.
    sign_in_endpoints: Mutex<HashMap<String, String>>,
    /// Told of each consent that completed here (the protocol layer, to tell waiting
    /// 2025-11-25 clients).
    listeners: Mutex<Vec<Consented>>,
    http: reqwest::Client,
}

impl Consent {
    /// The flow `config` needs (none without a user-consent service); fails on a missing
    /// secret, or a user-consent service without `[vault]`.
    /// `spent`: where replicas share the used flow steps (else this node remembers them).
    pub fn from_config(
        config: &Config,
        vault: Option<Arc<Vault>>,
        sign_in: Arc<OAuthClients>,
        spent: Option<Arc<dyn SpentStates>>,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        let mut providers = HashMap::new();
        for tenant in &config.tenants {
            for svc in &tenant.services {
                if let Some(p) = &svc.provider {
                    providers.insert(
                        (tenant.id.clone(), svc.name.clone()),
                        Arc::new(Provider::new(&svc.name, p)?),
                    );
                }
            }
        }
        if providers.is_empty() {
            return Ok(None);
        }
        let vault = vault.ok_or_else(|| {
            anyhow::anyhow!(
                "{}: a user-consent service keeps users' grants in the vault: add [vault]",
                config.source.display()
            )
        })?;
        Ok(Some(Arc::new(Self {
            vault,
            base: config.public_url().trim_end_matches('/').to_string(),
            sign_in,
            providers,
            spent: spent.unwrap_or_else(|| Arc::new(LocalSpent::default())),
            subject_claims: config
                .trusted_issuers()
                .into_iter()
                .filter(|i| i.subject_claim != "sub")
                .map(|i| (i.issuer, i.subject_claim))
                .collect(),
            sign_in_endpoints: Mutex::default(),
            listeners: Mutex::default(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()?,
        })))
    }

    /// The claim naming the user at `issuer`: in its ID tokens as in its access tokens.
    fn subject_claim(&self, issuer: &str) -> &str {
        self.subject_claims
            .get(issuer)
            .map_or("sub", String::as_str)
    }

    /// Where users sign in at `issuer` (its metadata's `authorization_endpoint`, read once
    /// per issuer: a flood of consent links does not become a flood of metadata requests).
    async fn sign_in_endpoint(&self, issuer: &str) -> Option<String> {
        if let Some(known) = self.sign_in_endpoints.lock().get(issuer) {
            return Some(known.clone());
        }
        let endpoint = match discover(&self.http, issuer).await {
            Ok(doc) => doc["authorization_endpoint"].as_str().map(str::to_string),
            Err(e) => {
                tracing::warn!(issuer = %issuer, "consent sign-in: {e}");
                None
            }
        }?;
        self.sign_in_endpoints
            .lock()
            .insert(issuer.to_string(), endpoint.clone());
        Some(endpoint)
    }

    /// Call `listener` with each consent that completes here.
    pub fn on_consented(&self, listener: Consented) {
        self.listeners.lock().push(listener);
    }

    /// The vault the flow keeps grants in.
    pub(crate) fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    /// `tenant`'s provider for `service`.
    pub(crate) fn provider(&self, tenant: &str, service: &str) -> Option<&Arc<Provider>> {
        self.providers
            .get(&(tenant.to_string(), service.to_string()))
    }

    /// The consent URL for `key`'s user (valid ten minutes).
    pub(crate) fn url(&self, key: &GrantKey<'_>) -> String {
        let ticket = Ticket {
            tenant: key.tenant.into(),
            issuer: key.issuer.into(),
            subject: key.subject.into(),
            service: key.service.into(),
            expires: now() + TICKET_LIFETIME.as_secs(),
        };
        let sealed = self.vault.seal_note(
            TICKET,
            &serde_json::to_vec(&ticket).expect("a ticket serializes"),
        );
        let mut url = reqwest::Url::parse(&format!("{}/consent/start", self.base))
            .expect("the public URL is a URL");
        url.query_pairs_mut().append_pair("ticket", &sealed);
        url.into()
    }

    /// The routes of the flow.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        use axum::routing::get;
        axum::Router::new()
            .route("/consent/start", get(start))
            .route("/consent/signed-in", get(signed_in))
            .route("/consent/callback", get(callback))
            .with_state(self.clone())
    }

    /// The `state` carrying `flow`, sealed.
    fn keep(&self, flow: &Flow) -> String {
        self.vault
            .seal_note(FLOW, &serde_json::to_vec(flow).expect("a flow serializes"))
    }

    /// Keep a flow for `ticket` at `step`, and send the browser to `authorize` as
    /// `client_id`, back to this flow's `route`, with PKCE and the flow's one-time state
    /// (`extra`: the scope, a nonce).
    /// `browser`: the flow cookie's digest, once the flow has one (else a cookie is set).
    #[allow(clippy::too_many_arguments, reason = "one redirect, said in full")]
    fn send_to_authorize(
        &self,
        ticket: Ticket,
        step: Step,
        browser: Option<[u8; 32]>,
        authorize: &str,
        client_id: &str,
        route: &str,
        extra: &[(&str, &str)],
    ) -> Response {
        let (verifier, challenge) = pkce();
        let (browser, cookie) = match browser {
            Some(b) => (b, None),
            None => {
                let value = hex::encode(rand::random::<[u8; 32]>());
                let secure = if self.base.starts_with("https://") {
                    "; Secure"
                } else {
                    ""
                };
                (
                    Sha256::digest(value.as_bytes()).into(),
                    Some(format!(
                        "{COOKIE}={value}; Path=/consent; HttpOnly; SameSite=Lax; Max-Age=900{secure}"
                    )),
                )
            }
        };
        let flow = Flow {
            id: hex::encode(rand::random::<[u8; 16]>()),
            ticket,
            step,
            verifier,
            started: now(),
            browser,
        };
        let state = self.keep(&flow);
        let Ok(mut url) = reqwest::Url::parse(authorize) else {
            return page(
                StatusCode::BAD_GATEWAY,
                "The sign-in address is not valid; tell the gateway's operator.",
            );
        };
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", &format!("{}/consent/{route}", self.base))
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .extend_pairs(extra);
        let mut resp = Redirect::to(url.as_str()).into_response();
        if let Some(cookie) = cookie.and_then(|c| http::HeaderValue::from_str(&c).ok()) {
            resp.headers_mut().insert(http::header::SET_COOKIE, cookie);
        }
        resp
    }

    /// Redeem `code`, issued for this flow's `route`, with its PKCE `verifier`, at `client`.
    async fn redeem(
        &self,
        client: &OAuthClient,
        code: String,
        route: &str,
        verifier: String,
    ) -> Result<super::oauth_client::Issued, TokenError> {
        client
            .send(
                "authorization code grant",
                vec![
                    ("grant_type", "authorization_code".into()),
                    ("code", code),
                    ("redirect_uri", format!("{}/consent/{route}", self.base)),
                    ("code_verifier", verifier),
                ],
                None,
            )
            .await
    }

    /// The flow step `state` carries, if it is this gateway's, current, continued by the
    /// browser that started it (`headers`' flow cookie), and used for the first time.
    async fn take(&self, state: Option<&str>, headers: &http::HeaderMap) -> Option<Flow> {
        let flow: Flow = self
            .vault
            .open_note(FLOW, state?)
            .and_then(|plain| serde_json::from_slice(&plain).ok())?;
        if now().saturating_sub(flow.started) > STEP_LIFETIME.as_secs() {
            return None;
        }
        if browser_of(headers) != Some(flow.browser) {
            tracing::warn!(tenant = %flow.ticket.tenant, service = %flow.ticket.service,
                "refused a consent step from another browser than the one that started it");
            return None;
        }
        match self.spent.first_use(&flow.id, STEP_LIFETIME).await {
            Ok(true) => Some(flow),
            Ok(false) => {
                tracing::info!(tenant = %flow.ticket.tenant, service = %flow.ticket.service,
                    "refused a consent step used already (replayed)");
                None
            }
            Err(e) => {
                tracing::warn!("a consent step cannot be checked for reuse, refused: {e}");
                None
            }
        }
    }
}

/// A PKCE verifier and its S256 challenge.
fn pkce() -> (String, String) {
    use base64::Engine as _;
    let verifier =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// A small HTML page (the flow's only output to the browser).
fn page(status: StatusCode, message: &str) -> Response {
    let text = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    (
        status,
        [(http::header::CACHE_CONTROL, "no-store")],
        Html(format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Portcullis</title></head>\
             <body><main><h1>Portcullis</h1><p id=\"message\">{text}</p></main></body></html>"
        )),
    )
        .into_response()
}

#[derive(Deserialize)]
struct StartQuery {
    ticket: String,
}

/// Step 1: a valid ticket starts the sign-in at the tenant's issuer.
async fn start(State(c): State<Arc<Consent>>, Query(q): Query<StartQuery>) -> Response {
    let ticket = c
        .vault
        .open_note(TICKET, &q.ticket)
        .and_then(|plain| serde_json::from_slice::<Ticket>(&plain).ok());
    let Some(ticket) = ticket.filter(|t| t.expires > now()) else {
        tracing::info!(
            "refused a consent link that is not valid (altered, from another gateway, or expired)"
        );
        return page(
            StatusCode::BAD_REQUEST,
            "This consent link is not valid or has expired. Ask your app to try again for a new one.",
        );
    };
    let Some(client) = c.sign_in.at(&ticket.issuer) else {
        tracing::warn!(tenant = %ticket.tenant, issuer = %ticket.issuer,
            "a consent needs the user to sign in at their issuer, and the gateway has no client there ([auth.issuer.exchange])");
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The gateway cannot confirm who you are at your identity provider (it is not configured for it).",
        );
    };
    let Some(authorize) = c.sign_in_endpoint(&ticket.issuer).await else {
        return page(
            StatusCode::BAD_GATEWAY,
            "Your identity provider cannot be reached right now; try again later.",
        );
    };
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let step = Step::SignIn {
        nonce: nonce.clone(),
    };
    // A claim other than `sub` is in ID tokens with the `profile` scope (Entra ID's `oid`).
    let scope = match c.subject_claim(&ticket.issuer) {
        "sub" => "openid",
        _ => "openid profile",
    };
    let extra = [("scope", scope), ("nonce", nonce.as_str())];
    c.send_to_authorize(
        ticket,
        step,
        None,
        &authorize,
        client.client_id(),
        "signed-in",
        &extra,
    )
}

#[derive(Deserialize)]
struct Returned {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

impl Returned {
    /// The authorization code, or (the user declined, or the server failed) the page saying
    /// `declined`.
    fn code(&self, declined: &str) -> Result<String, Box<Response>> {
        match (&self.code, &self.error) {
            (Some(code), None) => Ok(code.clone()),
            _ => Err(Box::new(page(StatusCode::FORBIDDEN, declined))),
        }
    }
}

/// Step 2: who signed in must be the ticket's caller; then the provider's consent.
async fn signed_in(
    State(c): State<Arc<Consent>>,
    headers: http::HeaderMap,
    Query(q): Query<Returned>,
) -> Response {
    let flow = c.take(q.state.as_deref(), &headers).await;
    let Some(Flow {
        ticket,
        step: Step::SignIn { nonce },
        verifier,
        browser,
        ..
    }) = flow
    else {
        return page(
            StatusCode::BAD_REQUEST,
            "This sign-in does not belong to a consent under way (it was used already, or expired).",
        );
    };
    let code = match q.code("The sign-in was not completed; nothing was stored.") {
        Ok(code) => code,
        Err(resp) => return *resp,
    };
    let Some(client) = c.sign_in.at(&ticket.issuer) else {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The gateway has no client at your identity provider.",
        );
    };
    let issued = c.redeem(client, code, "signed-in", verifier).await;
    let claims = issued
        .ok()
        .and_then(|i| i.id_token)
        .and_then(|t| id_token_claims(&t));
    // The ID token came from the issuer's own token endpoint, over the connection the gateway
    // opened (OIDC Core 3.1.3.7): its claims are the issuer's word.
    let subject_claim = c.subject_claim(&ticket.issuer);
    let same_user = claims.as_ref().is_some_and(|claims| {
        claims["iss"] == ticket.issuer.as_str()
            && claims[subject_claim] == ticket.subject.as_str()
            && claims["nonce"] == nonce.as_str()
            && match &claims["aud"] {
                serde_json::Value::String(a) => a == client.client_id(),
                serde_json::Value::Array(a) => a.iter().any(|x| x == client.client_id()),
                _ => false,
            }
    });
    if !same_user {
        tracing::warn!(tenant = %ticket.tenant, service = %ticket.service,
            "refused a consent: the browser's user signed in as someone other than the caller the link was made for");
        return page(
            StatusCode::FORBIDDEN,
            "You signed in as someone other than the user this link was made for. Nothing was stored.",
        );
    }
    let Some(provider) = c.provider(&ticket.tenant, &ticket.service).cloned() else {
        return page(
            StatusCode::NOT_FOUND,
            "This service no longer asks for consent.",
        );
    };
    let authorize = match provider.authorize_url().await {
        Ok(a) => a.clone(),
        Err(e) => {
            tracing::warn!(service = %ticket.service, "consent: {e}");
            return page(
                StatusCode::BAD_GATEWAY,
                "The service's provider cannot be reached right now.",
            );
        }
    };
    let scope = provider.scopes.join(" ");
    let extra: Vec<(&str, &str)> = [("scope", scope.as_str())]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let client_id = provider.client.client_id();
    c.send_to_authorize(
        ticket,
        Step::Provider,
        Some(browser),
        &authorize,
        client_id,
        "callback",
        &extra,
    )
}

/// Step 3: the provider's code becomes the user's grant, in the vault.
async fn callback(
    State(c): State<Arc<Consent>>,
    headers: http::HeaderMap,
    Query(q): Query<Returned>,
) -> Response {
    let flow = c.take(q.state.as_deref(), &headers).await;
    let Some(Flow {
        ticket,
        step: Step::Provider,
        verifier,
        ..
    }) = flow
    else {
        tracing::info!(
            "refused a consent callback that belongs to no consent under way (replayed or forged)"
        );
        return page(
            StatusCode::BAD_REQUEST,
            "This answer does not belong to a consent under way (it was used already, or expired).",
        );
    };
    let code = match q.code("The consent was declined; nothing was stored.") {
        Ok(code) => code,
        Err(resp) => return *resp,
    };
    let Some(provider) = c.provider(&ticket.tenant, &ticket.service).cloned() else {
        return page(
            StatusCode::NOT_FOUND,
            "This service no longer asks for consent.",
        );
    };
    let issued = c.redeem(&provider.client, code, "callback", verifier).await;
    let issued = match issued {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(tenant = %ticket.tenant, service = %ticket.service, "consent: the provider did not issue a grant: {e}");
            return page(
                StatusCode::BAD_GATEWAY,
                "The service's provider did not complete the consent; nothing was stored.",
            );
        }
    };
    let grant = grant_of(issued, None);
    if let Err(e) = c.vault.put(&ticket.key(), &grant).await {
        tracing::error!(tenant = %ticket.tenant, service = %ticket.service, "consent: the grant could not be kept: {e}");
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The grant could not be stored; try again later.",
        );
    }
    tracing::info!(tenant = %ticket.tenant, service = %ticket.service, "a user consented; their grant is in the vault");
    let listeners = c.listeners.lock().clone();
    for listener in listeners {
        listener(&ticket.key());
    }
    page(
        StatusCode::OK,
        &format!(
            "Connected: `{}` may now be used for you. You can return to your app.",
            ticket.service
        ),
    )
}

/// The claims of an ID token (its payload), without checking its signature (see the caller).
fn id_token_claims(token: &str) -> Option<serde_json::Value> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Why a grant could not be used, for the strategy.
impl From<VaultError> for super::CredentialError {
    fn from(e: VaultError) -> Self {
        super::CredentialError::Vault(e)
    }
}
