//! User consent for third-party APIs (#29 AC3, AC4): a service with its own OAuth provider
//! (GitHub, Slack style), which no token exchange reaches. Two independent oidc-provider
//! instances play the tenant's identity provider and the third-party provider; a downstream
//! API records what it receives; the consent flow is driven by `tests/js/consent-follow.mjs`
//! (every redirect followed, cookies per origin, the providers' headless sign-in).

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::peers::{DownstreamApi, RealAs};
use crate::support::{BinaryGateway, Client, jwt_part, node, tempdir, toml_path};

/// The vault key the gateway runs with (32 bytes, base64).
fn vault_key() -> String {
    base64::engine::general_purpose::STANDARD.encode([42u8; 32])
}

/// The tenant's identity provider (signing users in for the gateway's consent flow at
/// `base`) and the third-party provider (the gateway's app registered for `base`);
/// `more_provider`: more of the provider's settings.
async fn identity_peers(
    base: &str,
    mcp_url: &str,
    forms: &str,
    more_provider: &[(&str, &str)],
) -> (RealAs, RealAs) {
    let idp = RealAs::start_with(
        &[mcp_url.to_string()],
        "mcp:tools",
        &[
            ("AS_GATEWAY_REDIRECTS", &format!("{base}/consent/signed-in")),
            ("AS_COOKIE_PREFIX", "idp"),
            ("AS_FORMS", forms),
        ],
    )
    .await;
    let callback = format!("{base}/consent/callback");
    let mut env = vec![
        ("AS_APP_REDIRECTS", callback.as_str()),
        ("AS_COOKIE_PREFIX", "provider"),
        ("AS_USER", "alice-at-provider"),
        ("AS_FORMS", forms),
    ];
    env.extend_from_slice(more_provider);
    let provider = RealAs::start_with(&[], "repo", &env).await;
    (idp, provider)
}

/// A third-party provider (scope `repo`) where the gateway at `base` has its consent app.
async fn third_party_provider(base: &str) -> RealAs {
    RealAs::start_with(
        &[],
        "repo",
        &[
            ("AS_APP_REDIRECTS", &format!("{base}/consent/callback")),
            ("AS_COOKIE_PREFIX", "provider"),
        ],
    )
    .await
}

struct Setup {
    /// Where the gateway exports its spans and metrics.
    otlp: crate::support::peers::Receiver,
    idp: RealAs,
    provider: RealAs,
    api: DownstreamApi,
    gw: BinaryGateway,
    mcp_url: String,
    base: String,
    vault_dir: std::path::PathBuf,
}

impl Setup {
    /// The gateway with one user-consent service, `github`, whose provider issues access
    /// tokens living `ttl` seconds (and refresh tokens); `forms`: the identity provider and
    /// the provider show sign-in and consent pages a browser fills in (else they sign in
    /// headless).
    async fn start(ttl: u64, forms: bool) -> Self {
        let forms = if forms { "1" } else { "0" };
        let otlp = crate::support::peers::Receiver::start().await;
        let api = DownstreamApi::start().await;
        let port = crate::support::free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mcp_url = format!("{base}/mcp");
        let ttl = ttl.to_string();
        let (idp, provider) = identity_peers(
            &base,
            &mcp_url,
            forms,
            &[("AS_REFRESH", "1"), ("AS_ACCESS_TTL", &ttl)],
        )
        .await;
        let vault_dir = tempdir().join("vault");
        let body = format!(
            "[sandbox]\nmax_instances = 8\n\
             [auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\"]\n\
             [[auth.issuer]]\nissuer = \"{idp}\"\nalgorithms = [\"RS256\"]\n\
             [auth.issuer.exchange]\nclient_id = \"gateway\"\nclient_secret_env = \"GATEWAY_SECRET\"\n\
             [vault]\nkey_env = \"VAULT_KEY\"\nkey_id = \"k1\"\ndir = {dir}\n\
             [[tenant]]\nid = \"t\"\nplugins = [{probe}]\n\
             [[tenant.service]]\nname = \"github\"\nbase_url = \"{api}/api\"\ncredential = \"user-consent\"\n\
             [tenant.service.provider]\nissuer = \"{provider}\"\nclient_id = \"consent-app\"\n\
             client_secret_env = \"PROVIDER_SECRET\"\nscopes = [\"repo\"]\n\
             [tenant.plugin.probe]\nservices = [\"github\"]\n\
             [telemetry]\nendpoint = \"{otlp}\"\nmetrics_interval_ms = 300\n",
            otlp = otlp.base,
            idp = idp.issuer,
            provider = provider.issuer,
            dir = toml_path(&vault_dir),
            api = api.base,
            probe = toml_path(&crate::support::plugin("probe")),
        );
        let key = vault_key();
        let gw = BinaryGateway::start_on_port(
            port,
            &body,
            &[
                ("GATEWAY_SECRET", "gateway-secret"),
                ("PROVIDER_SECRET", "consent-app-secret"),
                ("VAULT_KEY", &key),
                ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ],
        )
        .await;
        Self {
            otlp,
            idp,
            provider,
            api,
            gw,
            mcp_url,
            base,
            vault_dir,
        }
    }

    /// `probe.fetch` of the github service as a 2026-07-28 client that takes URL
    /// elicitations, with `inputs` answering an earlier round.
    async fn fetch(&self, token: &str, inputs: Option<(&Value, &str)>) -> Value {
        fetch_github(&self.mcp_url, token, inputs).await
    }

    /// The grants kept in the vault's directory, as stored.
    fn vault_files(&self) -> Vec<String> {
        std::fs::read_dir(&self.vault_dir)
            .map(|d| {
                d.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `probe.fetch` of the github service at `mcp_url` as a 2026-07-28 client that takes URL
/// elicitations, with `inputs` answering an earlier round.
async fn fetch_github(mcp_url: &str, token: &str, inputs: Option<(&Value, &str)>) -> Value {
    let mut params = json!({"name": "probe.fetch",
        "arguments": {"service": "github", "path": "/echo"},
        "_meta": {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {"url": {}}}}});
    if let Some((responses, state)) = inputs {
        params["inputResponses"] = responses.clone();
        params["requestState"] = state.into();
    }
    let r = Client::modern(mcp_url)
        .bearer(token)
        .request("tools/call", params)
        .await;
    r.result().clone()
}

/// Debian's Chromium through the consent flow at `url`, signing in as `idp_user` at the
/// identity provider and as `provider_user` at the provider: the last page's status and
/// message, and the pages on the way.
async fn browse(s: &Setup, url: &str, idp_user: &str, provider_user: &str) -> Value {
    let users = json!({ s.idp.issuer.clone(): idp_user, s.provider.issuer.clone(): provider_user });
    crate::support::run_json_program(
        &node(),
        "tests/js/consent-browser.mjs",
        &[url.as_ref()],
        &[("USERS", &users.to_string())],
    )
    .await
}

/// `tests/js/consent-follow.mjs` at `url` with `env` (RECORD, COOKIES, STOP_AT).
async fn follow_with(url: &str, env: &[(&str, &str)]) -> Value {
    crate::support::run_json_program(&node(), "tests/js/consent-follow.mjs", &[url.as_ref()], env)
        .await
}

/// Follow `url` through the consent flow, in a browser of its own: the last page's status
/// and message.
async fn follow(url: &str) -> Value {
    follow_with(url, &[("RECORD", "1")]).await
}

/// Follow `url` as the browser whose cookies an earlier [`follow`] printed.
async fn follow_as(url: &str, earlier: &Value) -> Value {
    follow_with(url, &[("COOKIES", &earlier["cookies"].to_string())]).await
}

/// Follow `url` until the next step would open a URL starting with `prefix`: that URL.
async fn follow_until(url: &str, prefix: &str) -> String {
    let out = follow_with(url, &[("STOP_AT", prefix)]).await;
    stopped(&out)
}

/// Where a [`follow_with`] with `STOP_AT` stopped.
fn stopped(out: &Value) -> String {
    out["stopped"]
        .as_str()
        .unwrap_or_else(|| panic!("{out}"))
        .to_string()
}

fn consent_url(result: &Value) -> String {
    result["inputRequests"]["portcullis/consent"]["params"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("a URL elicitation: {result}"))
        .to_string()
}

fn text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

/// #29 AC3 on 2026-07-28: the first call asks for consent with a URL elicitation; the user,
/// in a real browser (Debian's Chromium driven by playwright-core), fills in the sign-in form
/// as themselves and allows the app at the provider; the retried call reaches the API
/// with the provider's token; later calls reuse it; after it expires it is refreshed; after
/// the user revokes the app at the provider, consent is asked again. The vault holds no
/// token in clear.
#[tokio::test]
async fn a_user_consents_once_and_the_grant_is_reused_refreshed_and_asked_again() {
    let s = Setup::start(4, true).await;
    let token = s.idp.user_token(&s.mcp_url, "mcp:tools").await;
    let asked = s.fetch(&token, None).await;
    assert_eq!(asked["resultType"], "input_required", "{asked}");
    let question = &asked["inputRequests"]["portcullis/consent"];
    assert_eq!(question["method"], "elicitation/create");
    assert_eq!(question["params"]["mode"], "url");
    let url = consent_url(&asked);
    assert!(
        url.starts_with(&format!("{}/consent/start?ticket=", s.base)),
        "{url}"
    );
    assert!(
        !url.contains("alice"),
        "the ticket names no one in clear: {url}"
    );
    assert!(s.api.authorizations().is_empty(), "the API saw nothing yet");

    let done = browse(&s, &url, "alice", "alice-at-provider").await;
    assert_eq!(done["status"], 200, "{done}");
    assert!(
        done["message"].as_str().unwrap().contains("Connected"),
        "{done}"
    );
    let visited: Vec<&str> = done["visited"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        visited.iter().any(|v| v.starts_with(&s.idp.issuer))
            && visited.iter().any(|v| v.starts_with(&s.provider.issuer)),
        "signed in at the identity provider, consented at the provider: {visited:?}"
    );

    // The client retries as the elicitation said: the call runs afresh and succeeds.
    let answers = json!({"portcullis/consent": {"action": "accept"}});
    let state = asked["requestState"].as_str().unwrap();
    let retried = s.fetch(&token, Some((&answers, state))).await;
    assert!(text(&retried).starts_with("status 200: "), "{retried}");
    let first = s.api.authorizations()[0].clone().unwrap();
    assert!(
        first.starts_with("Bearer ") && !first.contains(&token),
        "{first}"
    );
    // Reused.
    let again = s.fetch(&token, None).await;
    assert!(text(&again).starts_with("status 200: "), "{again}");
    assert_eq!(s.api.authorizations()[1].as_ref(), Some(&first));
    // No token in clear in the vault: only sealed text under digest names.
    let files = s.vault_files();
    assert_eq!(files.len(), 1);
    let provider_token = first.strip_prefix("Bearer ").unwrap();
    assert!(
        files
            .iter()
            .all(|f| f.starts_with("v1.k1.") && !f.contains(provider_token))
    );

    // Nor in what the plugin got back, nor in any span or metric exported.
    assert!(!text(&retried).contains(provider_token) && !text(&again).contains(provider_token));
    let spans = s
        .otlp
        .wait("spans", |x| {
            x.iter()
                .filter(|span| span["name"] == "tools/call probe.fetch")
                .count()
                >= 2
        })
        .await;
    let exported = serde_json::to_string(&spans).unwrap() + &s.otlp.get("metrics").await;
    assert!(!exported.contains(provider_token) && !exported.contains(&token));
    assert!(!exported.contains("ticket="), "no consent ticket either");
    // The access token expires (4 s): the next call refreshes it.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let refreshed = s.fetch(&token, None).await;
    assert!(text(&refreshed).starts_with("status 200: "), "{refreshed}");
    let third = s.api.authorizations()[2].clone().unwrap();
    assert_ne!(third, first, "a new access token");
    let refreshes = |requests: &[Value]| {
        requests
            .iter()
            .filter(|r| r["grant_type"] == "refresh_token" && r["status"] == 200)
            .count()
    };
    assert_eq!(refreshes(&s.provider.requests().await), 1);

    // The user revokes the app at the provider: once the access token expires, the refresh
    // is refused, the grant dropped, and consent asked again.
    reqwest::get(format!("{}/__revoke-app", s.provider.issuer))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let asked_again = s.fetch(&token, None).await;
    assert_eq!(asked_again["resultType"], "input_required", "{asked_again}");
    assert!(s.vault_files().is_empty(), "the grant was dropped");
    let log = s.gw.stop().await;
    assert!(!log.contains(provider_token) && !log.contains(&token));
    assert!(
        log.contains("refused a user's refresh token"),
        "operators see why"
    );
}

/// #29 AC3 (2025-11-25) and AC4: a session whose client takes URL elicitations gets the
/// `-32042` error with the consent URL (a client without URL mode gets the link in the
/// result). Then the attacks: another user opening the caller's consent URL gets nothing
/// stored (for them or the caller); an altered ticket, a replayed and a forged callback are
/// refused.
#[tokio::test]
async fn nobody_but_the_caller_completes_the_callers_consent() {
    let s = Setup::start(600, false).await;
    let token = s.idp.user_token(&s.mcp_url, "mcp:tools").await;
    let mut session = Client::new(&s.mcp_url);
    session.authorization = Some(format!("Bearer {token}"));
    session
        .initialize_declaring("2025-11-25", json!({"elicitation": {"url": {}}}))
        .await;
    let r = session
        .request(
            "tools/call",
            json!({"name": "probe.fetch", "arguments": {"service": "github", "path": "/echo"}}),
        )
        .await;
    let error = r.error();
    assert_eq!(error["code"], -32042, "{r:?}");
    let elicitation = &error["data"]["elicitations"][0];
    assert_eq!(elicitation["mode"], "url");
    assert!(
        elicitation["elicitationId"]
            .as_str()
            .is_some_and(|i| !i.is_empty())
    );
    let url = elicitation["url"].as_str().unwrap().to_string();
    // The official TypeScript SDK (1.32.2) on 2025-11-25 gets the same: its
    // UrlElicitationRequiredError carries the elicitation.
    let ts = crate::support::run_json_program(
        &node(),
        "tests/js/bearer-call.mjs",
        &[
            s.mcp_url.as_ref(),
            token.as_ref(),
            "probe.fetch".as_ref(),
            r#"{"service": "github", "path": "/echo"}"#.as_ref(),
        ],
        &[("CAPS", r#"{"elicitation": {"url": {}}}"#)],
    )
    .await;
    assert_eq!(
        (ts["code"].as_i64(), ts["protocol"].as_str()),
        (Some(-32042), Some("2025-11-25")),
        "{ts}"
    );
    let ts_url = ts["data"]["elicitations"][0]["url"]
        .as_str()
        .unwrap_or_default();
    assert!(
        ts_url.starts_with(&format!("{}/consent/start?ticket=", s.base)),
        "{ts}"
    );
    // A client without URL mode gets the link to show.
    let plain = Client::modern(&s.mcp_url)
        .bearer(&token)
        .call_tool("probe.fetch", json!({"service": "github", "path": "/echo"}))
        .await;
    assert!(plain.text().contains("/consent/start?ticket="), "{plain:?}");

    // Bob opens alice's link: he signs in as himself, and is refused.
    reqwest::get(format!("{}/__user?set=bob", s.idp.issuer))
        .await
        .unwrap();
    let bobs = follow(&url).await;
    assert_eq!(bobs["status"], 403, "{bobs}");
    assert!(
        bobs["message"].as_str().unwrap().contains("someone other"),
        "{bobs}"
    );
    assert!(
        s.vault_files().is_empty(),
        "nothing stored, for bob or alice"
    );
    // An altered ticket.
    let altered = url.replace("ticket=v1.", "ticket=v1.x");
    assert_eq!(follow(&altered).await["status"], 400);
    reqwest::get(format!("{}/__user?set=alice", s.idp.issuer))
        .await
        .unwrap();
    // Alice signs in, and the provider's consent page her flow leads to is opened in
    // another browser (a phished victim consenting with their own provider account): the
    // callback is refused, nothing is stored.
    let at_provider = follow_until(&url, &s.provider.issuer).await;
    let phished = follow(&at_provider).await;
    assert_eq!(phished["status"], 400, "{phished}");
    assert!(s.vault_files().is_empty());
    // Alice completes it; replaying the provider's callback afterwards, or forging one, is
    // refused.
    let done = follow(&url).await;
    assert_eq!(done["status"], 200, "{done}");
    let callback = done["visited"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .find(|v| v.contains("/consent/callback"))
        .unwrap()
        .to_string();
    assert_eq!(
        follow_as(&callback, &done).await["status"],
        400,
        "replayed by the same browser"
    );
    let forged = format!(
        "{}/consent/callback?code=forged&state={}",
        s.base,
        "ab".repeat(32)
    );
    assert_eq!(follow(&forged).await["status"], 400, "forged");
    assert_eq!(s.vault_files().len(), 1, "alice's grant only");
    // Alice's session now reaches the API.
    let r = session
        .request(
            "tools/call",
            json!({"name": "probe.fetch", "arguments": {"service": "github", "path": "/echo"}}),
        )
        .await;
    assert!(r.text().starts_with("status 200: "), "{r:?}");
    // The user revokes their grant (#29): only their own; the next call asks again.
    let revoke = |token: Option<String>, service: &'static str| {
        let url = format!("{}/grants/{service}", s.mcp_url);
        async move {
            let mut req = reqwest::Client::new().delete(url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    assert_eq!(revoke(None, "github").await.0, 401);
    reqwest::get(format!("{}/__user?set=bob", s.idp.issuer))
        .await
        .unwrap();
    let bobs_token = s.idp.user_token(&s.mcp_url, "mcp:tools").await;
    assert_eq!(
        revoke(Some(bobs_token), "github").await,
        (200, r#"{"revoked":false}"#.to_string()),
        "bob has nothing to revoke, and cannot touch alice's"
    );
    assert_eq!(s.vault_files().len(), 1);
    assert_eq!(revoke(Some(token.clone()), "gitlab").await.0, 404);
    assert_eq!(
        revoke(Some(token.clone()), "github").await,
        (200, r#"{"revoked":true}"#.to_string())
    );
    assert!(s.vault_files().is_empty());
    let r = session
        .request(
            "tools/call",
            json!({"name": "probe.fetch", "arguments": {"service": "github", "path": "/echo"}}),
        )
        .await;
    assert_eq!(r.error()["code"], -32042, "consent asked again: {r:?}");
    let log = s.gw.stop().await;
    assert!(log.contains("signed in as someone other than the caller"));
    assert!(log.contains("a user revoked their grant"));
    assert!(log.contains("from another browser than the one that started it"));
}

/// Two gateway replicas on one Redis, on `ports`, with `base` as their public URL, and one
/// user-consent service `github` (the vault key `key`).
struct Replicas {
    gateways: Vec<BinaryGateway>,
}

impl Replicas {
    async fn start(
        ports: &[u16],
        base: &str,
        idp: &RealAs,
        provider: &RealAs,
        api: &DownstreamApi,
        key: &str,
        redis_url: &str,
    ) -> Self {
        let body = format!(
            "public_url = \"{base}\"\nstate_key_env = \"STATE_KEY\"\n\
             [sandbox]\nmax_instances = 8\ncache_dir = {cache}\n\
             [auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\"]\n\
             [[auth.issuer]]\nissuer = \"{idp}\"\nalgorithms = [\"RS256\"]\n\
             [auth.issuer.exchange]\nclient_id = \"gateway\"\nclient_secret_env = \"GATEWAY_SECRET\"\n\
             [cluster]\nreplica_ttl_ms = 1500\n\
             [vault]\nkey_env = \"VAULT_KEY\"\nkey_id = \"k1\"\n\
             [[tenant]]\nid = \"t\"\nplugins = [{probe}]\n\
             [[tenant.service]]\nname = \"github\"\nbase_url = \"{api}/api\"\ncredential = \"user-consent\"\n\
             [tenant.service.provider]\nissuer = \"{provider}\"\nclient_id = \"consent-app\"\n\
             client_secret_env = \"PROVIDER_SECRET\"\nscopes = [\"repo\"]\n\
             [tenant.plugin.probe]\nservices = [\"github\"]\n",
            cache = toml_path(&crate::support::root().join("target/test-artifact-cache")),
            idp = idp.issuer,
            provider = provider.issuer,
            api = api.base,
            probe = toml_path(&crate::support::plugin("probe")),
        );
        let env = [
            ("GATEWAY_SECRET", "gateway-secret"),
            ("PROVIDER_SECRET", "consent-app-secret"),
            ("VAULT_KEY", key),
            (
                "STATE_KEY",
                "a state key of at least thirty-two bytes, shared",
            ),
            ("PORTCULLIS_REDIS_URL", redis_url),
            (
                "PORTCULLIS_TOKEN_CACHE_KEY",
                "a token cache key of at least thirty-two bytes",
            ),
        ];
        let mut gateways = Vec::new();
        for port in ports {
            gateways.push(BinaryGateway::start_on_port(*port, &body, &env).await);
        }
        Self { gateways }
    }
}

/// #29 with replicas: two gateways on one Redis behind nginx round robin (no stickiness).
/// Before, a flow's steps lived in the memory of the replica that started them, so a step
/// that landed on the other replica was refused. Now each step travels sealed in its state
/// and is spent on Redis: the consent completes across replicas, the grant is on Redis
/// (sealed), both replicas use it, and a replayed callback is refused on either.
#[tokio::test]
async fn a_consent_completes_across_replicas_and_its_steps_are_good_once_on_all() {
    use crate::support::peers::{Nginx, Redis};
    let redis = Redis::start().await;
    let api = DownstreamApi::start().await;
    let ports = [crate::support::free_port(), crate::support::free_port()];
    let nginx = Nginx::start(&ports.map(|p| format!("127.0.0.1:{p}"))).await;
    let base = nginx.base.clone();
    let mcp_url = format!("{base}/mcp");
    let (idp, provider) = identity_peers(&base, &mcp_url, "0", &[]).await;
    let key = vault_key();
    let redis_url = redis.url();
    let replicas = Replicas::start(&ports, &base, &idp, &provider, &api, &key, &redis_url).await;
    let token = idp.user_token(&mcp_url, "mcp:tools").await;
    let call = |inputs: Option<(Value, String)>| {
        let (url, token) = (mcp_url.clone(), token.clone());
        async move {
            let mut params = json!({"name": "probe.fetch",
                "arguments": {"service": "github", "path": "/echo"},
                "_meta": {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {"url": {}}}}});
            if let Some((responses, state)) = inputs {
                params["inputResponses"] = responses;
                params["requestState"] = state.into();
            }
            Client::modern(&url)
                .bearer(&token)
                .request("tools/call", params)
                .await
                .result()
                .clone()
        }
    };
    let asked = call(None).await;
    let url = consent_url(&asked);
    assert!(url.starts_with(&format!("{base}/consent/start")), "{url}");
    let done = follow(&url).await;
    assert_eq!(done["status"], 200, "{done}");
    // Both replicas served the flow's gateway steps (round robin, three of them).
    let served: std::collections::BTreeSet<String> = nginx
        .logged()
        .into_iter()
        .filter(|l| l.method == "GET")
        .map(|l| l.backend)
        .collect();
    assert_eq!(served.len(), 2, "{served:?}");
    // The grant is on Redis, sealed; either replica uses it.
    let grants = redis.keys("portcullis:grant:*").await;
    assert_eq!(grants.len(), 1, "{grants:?}");
    let answers = json!({"portcullis/consent": {"action": "accept"}});
    let state = asked["requestState"].as_str().unwrap().to_string();
    for _ in 0..2 {
        let r = call(Some((answers.clone(), state.clone()))).await;
        assert!(text(&r).starts_with("status 200: "), "{r}");
    }
    let seen = api.authorizations();
    let provider_token = seen[0].as_deref().unwrap().strip_prefix("Bearer ").unwrap();
    let sealed = redis.get(&grants[0]).await;
    assert!(sealed.starts_with("v1.k1.") && !sealed.contains(provider_token));
    // The operator revokes alice's grant (`portcullis revoke-grant`, on Redis): her next call
    // asks for consent again.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["revoke-grant", "--config"])
        .arg(&replicas.gateways[0].config)
        .args([
            "--tenant",
            "t",
            "--issuer",
            &idp.issuer,
            "--subject",
            "alice",
        ])
        .args(["--service", "github"])
        .env("VAULT_KEY", &key)
        .env("PORTCULLIS_REDIS_URL", &redis_url)
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"revoked":true}"#,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(redis.keys("portcullis:grant:*").await.is_empty());
    assert_eq!(call(None).await["resultType"], "input_required");
    // The callback, replayed by the same browser: refused whichever replica gets it.
    let callback = done["visited"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .find(|v| v.contains("/consent/callback"))
        .unwrap()
        .to_string();
    for _ in 0..2 {
        assert_eq!(follow_as(&callback, &done).await["status"], 400);
    }
    let mut logs = String::new();
    for r in replicas.gateways {
        logs += &r.stop().await;
    }
    assert_eq!(
        logs.matches("refused a consent step used already").count(),
        2,
        "spent on Redis, not refused for another reason"
    );
}

/// #29 AC4: a gateway whose vault key is missing, or not 32 bytes of base64, refuses to
/// start, naming the variable (it never runs with grants it could not seal or open).
#[test]
fn a_missing_or_malformed_vault_key_stops_the_gateway() {
    let dir = tempdir();
    let config = dir.join("vault.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\"]\n\
             [[auth.issuer]]\nissuer = \"https://idp.example\"\njwks_uri = \"https://idp.example/jwks\"\n\
             [vault]\nkey_env = \"PORTCULLIS_TEST_VAULT_KEY\"\nkey_id = \"k1\"\ndir = {dir}\n\
             [[tenant]]\nid = \"t\"\nplugins = [{probe}]\n\
             [[tenant.service]]\nname = \"github\"\nbase_url = \"https://api.github.example\"\n\
             credential = \"user-consent\"\n\
             [tenant.service.provider]\nissuer = \"https://provider.example\"\nclient_id = \"app\"\n\
             client_secret_env = \"PORTCULLIS_TEST_PROVIDER_SECRET\"\n",
            dir = toml_path(&dir.join("vault")),
            probe = toml_path(&crate::support::plugin("probe")),
        ),
    )
    .unwrap();
    let check = |key: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.args(["check", "--config"])
            .arg(&config)
            .env("PORTCULLIS_TEST_PROVIDER_SECRET", "s")
            .env_remove("PORTCULLIS_TEST_VAULT_KEY");
        if let Some(key) = key {
            cmd.env("PORTCULLIS_TEST_VAULT_KEY", key);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout),
        )
    };
    let (ok, said) = check(None);
    assert!(!ok && said.contains("PORTCULLIS_TEST_VAULT_KEY"), "{said}");
    let (ok, said) = check(Some("c2hvcnQ="));
    assert!(!ok && said.contains("must be 32 bytes"), "{said}");
    let (ok, said) = check(Some(&vault_key()));
    assert!(ok, "{said}");
}

/// #29 AC3 with the official Python SDK (PyPI `mcp` 2.3.0) on 2026-07-28: the gateway's
/// input round asks a URL elicitation; the SDK hands it to its elicitation callback, where
/// the user consents, and retries the call by itself: the call succeeds.
#[tokio::test]
async fn the_python_sdk_follows_the_url_elicitation_and_its_retry_succeeds() {
    let s = Setup::start(600, false).await;
    let token = s.idp.user_token(&s.mcp_url, "mcp:tools").await;
    let python = crate::support::root().join("tests/.venv/bin/python");
    let node = node();
    let t = crate::support::run_json_program(
        &python,
        "tests/py/consent_client.py",
        &[s.mcp_url.as_ref(), token.as_ref(), node.as_os_str()],
        &[],
    )
    .await;
    assert_eq!(t["protocol"], "2026-07-28", "{t}");
    assert_eq!(t["elicitations"][0]["mode"], "url", "{t}");
    assert_eq!(t["consents"][0]["status"], 200, "{t}");
    assert!(
        t["text"].as_str().unwrap().starts_with("status 200: ") && t["is_error"] == false,
        "{t}"
    );
    assert_eq!(s.vault_files().len(), 1);
}

/// #29 on 2025-11-25: once the user has consented, the gateway tells the waiting session
/// (`notifications/elicitation/complete` with the elicitation's id); the official TypeScript
/// SDK client hears it and calls again, and the call succeeds.
#[tokio::test]
async fn a_2025_session_hears_that_the_consent_completed() {
    let s = Setup::start(600, false).await;
    let token = s.idp.user_token(&s.mcp_url, "mcp:tools").await;
    let t = crate::support::run_json_program(
        &node(),
        "tests/js/consent-session-client.mjs",
        &[s.mcp_url.as_ref(), token.as_ref()],
        &[],
    )
    .await;
    assert_eq!(t["consent"]["status"], 200, "{t}");
    assert_eq!(t["completed"], t["elicitationId"], "{t}");
    assert!(
        t["text"].as_str().unwrap().starts_with("status 200: "),
        "{t}"
    );
}

/// #29 AC4: identity is (tenant, issuer, subject). Two identity providers both name a user
/// `alice`, and two tenants trust both. Alice at the second issuer consents for herself; the
/// grant is hers only: Alice at the first issuer is still asked, and so is she at the other
/// tenant. Her browser opening the first Alice's link is sent to sign in at the first
/// issuer (which she cannot); presenting her own issuer's sign-in code in that flow instead
/// is refused, and nothing is stored for anyone.
#[tokio::test]
async fn the_same_sub_from_another_issuer_or_tenant_gets_no_grant_of_the_callers() {
    let port = crate::support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let (t_url, u_url) = (format!("{base}/mcp"), format!("{base}/t/u/mcp"));
    let signed_in = format!("{base}/consent/signed-in");
    let idp = |prefix: &'static str| {
        let (resources, signed_in) = ([t_url.clone(), u_url.clone()], signed_in.clone());
        async move {
            RealAs::start_with(
                &resources,
                "mcp:tools",
                &[
                    ("AS_GATEWAY_REDIRECTS", signed_in.as_str()),
                    ("AS_COOKIE_PREFIX", prefix),
                ],
            )
            .await
        }
    };
    let (idp1, idp2) = (idp("idp1").await, idp("idp2").await);
    let provider = third_party_provider(&base).await;
    let api = DownstreamApi::start().await;
    let vault_dir = tempdir().join("vault");
    let issuer = |iss: &str| {
        format!(
            "[[auth.issuer]]\nissuer = \"{iss}\"\nalgorithms = [\"RS256\"]\n\
             [auth.issuer.exchange]\nclient_id = \"gateway\"\nclient_secret_env = \"GATEWAY_SECRET\"\n"
        )
    };
    let tenant = |id: &str, path: &str| {
        format!(
            "[[tenant]]\nid = \"{id}\"\npath = \"{path}\"\nplugins = [{probe}]\n\
             [[tenant.service]]\nname = \"github\"\nbase_url = \"{api}/api\"\ncredential = \"user-consent\"\n\
             [tenant.service.provider]\nissuer = \"{provider}\"\nclient_id = \"consent-app\"\n\
             client_secret_env = \"PROVIDER_SECRET\"\nscopes = [\"repo\"]\n\
             [tenant.plugin.probe]\nservices = [\"github\"]\n",
            probe = toml_path(&crate::support::plugin("probe")),
            api = api.base,
            provider = provider.issuer,
        )
    };
    let body = format!(
        "[sandbox]\nmax_instances = 8\n\
         [auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\"]\n{}{}\
         [vault]\nkey_env = \"VAULT_KEY\"\nkey_id = \"k1\"\ndir = {dir}\n{}{}",
        issuer(&idp1.issuer),
        issuer(&idp2.issuer),
        tenant("t", "/mcp"),
        tenant("u", "/t/u/mcp"),
        dir = toml_path(&vault_dir),
    );
    let key = vault_key();
    let gw = BinaryGateway::start_on_port(
        port,
        &body,
        &[
            ("GATEWAY_SECRET", "gateway-secret"),
            ("PROVIDER_SECRET", "consent-app-secret"),
            ("VAULT_KEY", &key),
        ],
    )
    .await;
    let grants = || std::fs::read_dir(&vault_dir).map_or(0, |d| d.count());
    // Both issuers' users are `alice`.
    let alice1 = idp1.user_token(&t_url, "mcp:tools").await;
    let alice2 = idp2.user_token(&t_url, "mcp:tools").await;
    assert_eq!(
        jwt_part(&alice1, 1)["sub"],
        jwt_part(&alice2, 1)["sub"],
        "the same sub"
    );
    let url1 = consent_url(&fetch_github(&t_url, &alice1, None).await);
    let url2 = consent_url(&fetch_github(&t_url, &alice2, None).await);

    // Alice at issuer 2 starts her own flow and stops with issuer 2's sign-in code in hand;
    // in the same browser she opens Alice-at-issuer-1's link: it sends her to issuer 1.
    let query = |url: &str, name: &str| {
        reqwest::Url::parse(url)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no {name} in {url}"))
    };
    let own = follow_with(&url2, &[("STOP_AT", &signed_in), ("RECORD", "1")]).await;
    let own_code = query(&stopped(&own), "code");
    let theirs = follow_with(
        &url1,
        &[
            ("STOP_AT", &format!("{}/", idp1.issuer)),
            ("RECORD", "1"),
            ("COOKIES", &own["cookies"].to_string()),
        ],
    )
    .await;
    let their_state = query(&stopped(&theirs), "state");
    // Her issuer's code in their flow: redeemed at issuer 1 (where it means nothing), refused.
    let spliced = reqwest::Url::parse_with_params(
        &signed_in,
        &[("code", own_code.as_str()), ("state", their_state.as_str())],
    )
    .unwrap();
    let refused = follow_as(spliced.as_str(), &theirs).await;
    assert_eq!(refused["status"], 403, "{refused}");
    assert_eq!(grants(), 0, "nothing stored, for either Alice");

    // She completes her own consent: one grant, hers.
    let done = follow(&url2).await;
    assert_eq!(done["status"], 200, "{done}");
    assert_eq!(grants(), 1);
    let accepted = json!({"portcullis/consent": {"action": "accept"}});
    let retried = |url: &str, token: &str| {
        let (url, token, accepted) = (url.to_string(), token.to_string(), accepted.clone());
        async move {
            let asked = fetch_github(&url, &token, None).await;
            match asked["requestState"].as_str() {
                Some(state) => fetch_github(&url, &token, Some((&accepted, state))).await,
                None => asked,
            }
        }
    };
    let r = retried(&t_url, &alice2).await;
    assert!(text(&r).starts_with("status 200: "), "{r}");
    // The same sub from issuer 1 is someone else: still asked.
    let r = retried(&t_url, &alice1).await;
    assert!(r["inputRequests"]["portcullis/consent"].is_object(), "{r}");
    // The same user at the other tenant: asked there too.
    let alice2_at_u = idp2.user_token(&u_url, "mcp:tools").await;
    let r = retried(&u_url, &alice2_at_u).await;
    assert!(r["inputRequests"]["portcullis/consent"].is_object(), "{r}");
    // The API saw the provider's token once: for Alice at issuer 2, at tenant t.
    assert_eq!(api.authorizations().len(), 1);
    let log = gw.stop().await;
    assert!(log.contains("signed in as someone other than the caller"));
}

/// #29 with Entra ID as the tenant's issuer: its `sub` is pairwise (an MCP client's access
/// token and the gateway's sign-in ID token name the same user differently), `oid` names
/// the user in both. With `subject_claim = "oid"` the consent completes; without it the
/// gateway cannot tell the user signed in is the caller, and refuses (fails closed).
#[tokio::test]
async fn an_entra_user_consents_named_by_oid_and_a_pairwise_sub_fails_closed() {
    const GATEWAY_APP: &str = "6f1d2b3c-4a5e-4f60-8172-93a4b5c6d7e8";
    // Both gateways (one after the other) on one address: Entra's redirect URIs are one host.
    let port = crate::support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let jwks = crate::support::root().join("tests/fixtures/test-issuer-b.jwk.json");
    let entra = RealAs::start_with(
        &[],
        "mcp:tools",
        &[
            ("AS_SHAPE", "entra"),
            ("AS_ENTRA_APP", GATEWAY_APP),
            ("AS_GATEWAY_JWKS", jwks.to_str().unwrap()),
            ("AS_GATEWAY_REDIRECTS", &format!("{base}/consent/signed-in")),
            ("AS_COOKIE_PREFIX", "entra"),
        ],
    )
    .await;
    let provider = third_party_provider(&base).await;
    let api = DownstreamApi::start().await;
    let key = vault_key();
    let token = entra.user_token("", "mcp:tools").await;
    let claims = jwt_part(&token, 1);
    for subject_claim in ["subject_claim = \"oid\"\n", ""] {
        let body = format!(
            "[sandbox]\nmax_instances = 8\n\
             [auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\"]\n\
             [[auth.issuer]]\nissuer = \"{iss}\"\nalgorithms = [\"RS256\"]\n{subject_claim}\
             [auth.issuer.exchange]\nclient_id = \"{GATEWAY_APP}\"\nauth_method = \"private_key_jwt\"\n\
             private_key_file = {pem}\n\
             [vault]\nkey_env = \"VAULT_KEY\"\nkey_id = \"k1\"\ndir = {dir}\n\
             [[tenant]]\nid = \"t\"\nplugins = [{probe}]\n\
             audiences = {{ \"{iss}\" = [\"{GATEWAY_APP}\"] }}\n\
             [[tenant.service]]\nname = \"github\"\nbase_url = \"{api}/api\"\ncredential = \"user-consent\"\n\
             [tenant.service.provider]\nissuer = \"{provider}\"\nclient_id = \"consent-app\"\n\
             client_secret_env = \"PROVIDER_SECRET\"\nscopes = [\"repo\"]\n\
             [tenant.plugin.probe]\nservices = [\"github\"]\n",
            iss = entra.issuer,
            pem = toml_path(&crate::support::root().join("tests/fixtures/test-issuer-b.pem")),
            dir = toml_path(&tempdir().join("vault")),
            probe = toml_path(&crate::support::plugin("probe")),
            api = api.base,
            provider = provider.issuer,
        );
        let gw = BinaryGateway::start_on_port(
            port,
            &body,
            &[
                ("PROVIDER_SECRET", "consent-app-secret"),
                ("VAULT_KEY", &key),
            ],
        )
        .await;
        let mcp_url = format!("{}/mcp", gw.base);
        let asked = fetch_github(&mcp_url, &token, None).await;
        let done = follow(&consent_url(&asked)).await;
        let log = if subject_claim.is_empty() {
            // The caller is the token's pairwise `sub`, which the sign-in's ID token does not
            // carry: refused, nothing stored.
            assert_eq!(done["status"], 403, "{done}");
            let again = fetch_github(&mcp_url, &token, None).await;
            assert!(
                again["inputRequests"]["portcullis/consent"].is_object(),
                "{again}"
            );
            gw.stop().await
        } else {
            assert_eq!(done["status"], 200, "{done}");
            let accepted = json!({"portcullis/consent": {"action": "accept"}});
            let state = asked["requestState"].as_str().unwrap();
            let r = fetch_github(&mcp_url, &token, Some((&accepted, state))).await;
            assert!(text(&r).starts_with("status 200: "), "{r}");
            let log = gw.stop().await;
            // The grant is the user's by `oid`: the operator names it so.
            assert!(!log.contains(claims["sub"].as_str().unwrap()), "{log}");
            log
        };
        assert!(!log.contains(&token));
    }
    assert_eq!(api.authorizations().len(), 1, "one consent completed");
}

/// #29 with replicas, on 2025-11-25: the session is held by one replica and the consent's
/// steps land on the other (the public URL is the other's address, so every step does).
/// Before, `notifications/elicitation/complete` was told only to sessions on the replica
/// where the callback landed: this client never heard it. Now the completed consent is
/// relayed (sealed with the vault's key) and the session's replica tells it.
#[tokio::test]
async fn a_2025_session_on_one_replica_hears_a_consent_completed_on_another() {
    use crate::support::peers::Redis;
    let redis = Redis::start().await;
    let api = DownstreamApi::start().await;
    let ports = [crate::support::free_port(), crate::support::free_port()];
    let [holder, other] = ports.map(|p| format!("http://127.0.0.1:{p}"));
    let (idp, provider) = identity_peers(&other, &format!("{other}/mcp"), "0", &[]).await;
    let key = vault_key();
    let replicas = Replicas::start(&ports, &other, &idp, &provider, &api, &key, &redis.url()).await;
    let token = idp.user_token(&format!("{other}/mcp"), "mcp:tools").await;
    let t = crate::support::run_json_program(
        &node(),
        "tests/js/consent-session-client.mjs",
        &[format!("{holder}/mcp").as_ref(), token.as_ref()],
        &[],
    )
    .await;
    assert_eq!(t["consent"]["status"], 200, "{t}");
    assert!(
        t["consent"]["url"].as_str().unwrap().starts_with(&other),
        "the flow ended on the other replica: {t}"
    );
    assert_eq!(t["completed"], t["elicitationId"], "{t}");
    assert!(
        t["text"].as_str().unwrap().starts_with("status 200: "),
        "{t}"
    );
    for r in replicas.gateways {
        let log = r.stop().await;
        assert!(!log.contains("did not open"), "{log}");
    }
}
