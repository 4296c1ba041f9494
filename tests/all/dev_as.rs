//! The embedded development authorization server: the real SDK client's full flow against it,
//! and each refusal with the right OAuth error.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{TestGateway, get_json, node, plugin, run_json_program, toml_path};

/// A gateway trusting its own dev AS; `hello.whoami` needs `mcp:admin`.
/// Tenant `default` (hello; `hello.whoami` needs `mcp:admin`) behind OAuth, trusting the
/// development AS; `dev_extra` is appended to `[dev_as]`.
fn body(auto_approve: bool, dev_extra: &str) -> String {
    format!(
        r#"
        [sandbox]
        max_instances = 8
        [auth]
        mode = "oauth"
        scopes_supported = ["mcp:tools", "mcp:admin"]
        challenge_scopes = ["mcp:tools"]
        [dev_as]
        enabled = true
        auto_approve = {auto_approve}
        {dev_extra}

        [[tenant]]
        id = "default"
        plugins = [{hello}]
        [tenant.plugin.hello]
        scopes = {{ "hello.whoami" = ["mcp:admin"] }}
        "#,
        hello = toml_path(&plugin("hello")),
    )
}

/// A gateway with its development AS on; `dev_extra` is appended to `[dev_as]`.
async fn gateway_with_dev_as(dev_extra: &str) -> TestGateway {
    TestGateway::from_toml(&body(true, dev_extra)).await
}

/// The TypeScript SDK client's whole OAuth flow (`tests/js/oauth-client.mjs`) against the
/// real binary's `dev` command serving `config`: the gateway and the client's transcript.
async fn sdk_flow_against(config: &str) -> (crate::support::BinaryGateway, Value) {
    let gw = crate::support::BinaryGateway::start_command("dev", config, &[]).await;
    let mcp_url = format!("{}/mcp", gw.base);
    let t = run_json_program(
        &node(),
        "tests/js/oauth-client.mjs",
        &[mcp_url.as_ref()],
        &[],
    )
    .await;
    (gw, t)
}

#[tokio::test]
async fn typescript_sdk_client_completes_the_flow_against_the_dev_as() {
    // The body keeps dev_as.auto_approve for headless runs.
    let (gw, t) = sdk_flow_against(&body(true, "")).await;
    let mcp_url = format!("{}/mcp", gw.base);
    assert_eq!(t["challenges"][0]["status"], 401, "{t}");
    assert!(
        t["registeredClientId"].is_string(),
        "registered by DCR: {t}"
    );
    assert_eq!(t["lastAuthorizeParams"]["resource"], mcp_url);
    assert_eq!(t["iss"], format!("{}/dev-as", gw.base), "RFC 9207 iss");
    assert_eq!(t["greet"]["content"][0]["text"], "Hello, OAuth!");
    assert_eq!(t["challenges"][1]["status"], 403, "step-up: {t}");
    assert_eq!(t["challenges"][1]["scope"], "mcp:admin mcp:tools");
    assert_eq!(t["whoami"]["structuredContent"]["subject"], "alice");
}

/// #17 AC6: a scope only a plugin declares (here an operator override, `hello:admin`, which
/// `auth.scopes_supported` does not list) is advertised in the tenant's metadata and the dev
/// AS's, and the TypeScript SDK client obtains it by step-up.
#[tokio::test]
async fn a_scope_only_a_plugin_declares_is_obtainable_by_step_up() {
    let config = body(true, "").replace(
        r#"scopes = { "hello.whoami" = ["mcp:admin"] }"#,
        r#"scopes = { "hello.whoami" = ["hello:admin"] }"#,
    );
    let (gw, t) = sdk_flow_against(&config).await;
    let prm = get_json(&format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        gw.base
    ))
    .await;
    assert_eq!(
        prm["scopes_supported"],
        json!(["mcp:tools", "mcp:admin", "hello:admin"]),
        "{prm}"
    );
    let asm = get_json(&format!(
        "{}/.well-known/oauth-authorization-server/dev-as",
        gw.base
    ))
    .await;
    assert!(
        asm["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("hello:admin")),
        "{asm}"
    );
    assert_eq!(t["challenges"][1]["status"], 403, "step-up: {t}");
    assert_eq!(t["challenges"][1]["scope"], "hello:admin mcp:tools");
    assert_eq!(t["whoami"]["structuredContent"]["subject"], "alice", "{t}");
    assert!(
        t["whoami"]["structuredContent"]["scopes"]
            .as_array()
            .unwrap()
            .contains(&json!("hello:admin")),
        "{t}"
    );
}

/// A small OAuth client for the negative cases: no redirects followed.
struct Flow {
    http: reqwest::Client,
    issuer: String,
    resource: String,
    client_id: String,
    redirect: String,
}

fn challenge_for(verifier: &str) -> String {
    B64.encode(Sha256::digest(verifier.as_bytes()))
}

const VERIFIER: &str = "a-verifier-that-is-long-enough-for-pkce-0123456789";

impl Flow {
    async fn register(gw: &TestGateway) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let issuer = gw.url("/dev-as");
        let redirect = "http://127.0.0.1:1/cb".to_string();
        let r: Value = http
            .post(format!("{issuer}/register"))
            .json(&json!({"redirect_uris": [redirect], "token_endpoint_auth_method": "none", "client_name": "neg"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Self {
            http,
            issuer,
            resource: gw.url("/mcp"),
            client_id: r["client_id"].as_str().unwrap().into(),
            redirect,
        }
    }

    /// GET /authorize with `params` overriding the defaults; returns the Location's query.
    async fn authorize(&self, params: &[(&str, &str)]) -> (u16, Vec<(String, String)>) {
        let challenge = challenge_for(VERIFIER);
        let mut q: Vec<(&str, &str)> = vec![
            ("response_type", "code"),
            ("client_id", &self.client_id),
            ("redirect_uri", &self.redirect),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("state", "st-1"),
            ("scope", "mcp:tools"),
            ("resource", &self.resource),
        ];
        for (k, v) in params {
            q.retain(|(kk, _)| kk != k);
            if !v.is_empty() {
                q.push((k, v));
            }
        }
        let resp = self
            .http
            .get(
                reqwest::Url::parse_with_params(&format!("{}/authorize", self.issuer), &q).unwrap(),
            )
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string())
            .unwrap_or_default();
        let pairs = reqwest::Url::parse(&location)
            .map(|u| {
                u.query_pairs()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        (status, pairs)
    }

    async fn code(&self) -> String {
        let (_, q) = self
            .authorize(&[("scope", "mcp:tools offline_access")])
            .await;
        q.iter()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.clone())
            .expect("a code")
    }

    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value, Option<String>) {
        let mut f: Vec<(&str, &str)> = vec![("client_id", &self.client_id)];
        f.extend_from_slice(form);
        let resp = self
            .http
            .post(format!("{}/token", self.issuer))
            .form(&f)
            .send()
            .await
            .unwrap();
        let cache = resp
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap().to_string());
        (resp.status().as_u16(), resp.json().await.unwrap(), cache)
    }

    async fn redeem(&self, code: &str, verifier: &str) -> (u16, Value, Option<String>) {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.redirect),
            ("code_verifier", verifier),
        ])
        .await
    }
}

fn error_of(q: &[(String, String)]) -> &str {
    q.iter()
        .find(|(k, _)| k == "error")
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

#[tokio::test]
async fn the_dev_as_refuses_every_bad_request_with_the_right_error() {
    let gw = gateway_with_dev_as("").await;
    let f = Flow::register(&gw).await;

    // Metadata: issuer matches, PKCE S256 only, iss parameter, registration advertised.
    let meta: Value = reqwest::get(gw.url("/.well-known/oauth-authorization-server/dev-as"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], f.issuer);
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
    assert!(meta["registration_endpoint"].is_string());

    // PKCE missing, or plain.
    let (_, q) = f
        .authorize(&[("code_challenge", ""), ("code_challenge_method", "")])
        .await;
    assert_eq!(error_of(&q), "invalid_request", "{q:?}");
    let (_, q) = f.authorize(&[("code_challenge_method", "plain")]).await;
    assert_eq!(error_of(&q), "invalid_request", "{q:?}");
    assert!(
        q.iter().any(|(k, v)| k == "state" && v == "st-1"),
        "state echoed on errors too"
    );
    // Unknown resource.
    let (_, q) = f
        .authorize(&[("resource", "https://elsewhere.example/mcp")])
        .await;
    assert_eq!(error_of(&q), "invalid_target", "{q:?}");
    // A redirect URI that is not registered is never redirected to.
    let (status, q) = f
        .authorize(&[("redirect_uri", "http://127.0.0.1:2/other")])
        .await;
    assert_eq!(status, 400);
    assert!(q.is_empty());

    // Success carries code, state and iss.
    let (status, q) = f.authorize(&[]).await;
    assert_eq!(status, 303, "{q:?}");
    assert!(q.iter().any(|(k, v)| k == "iss" && v == &f.issuer));
    assert!(q.iter().any(|(k, v)| k == "state" && v == "st-1"));

    // Wrong verifier; then the same code is used up.
    let code = f.code().await;
    let (status, body, _) = f
        .redeem(&code, "a-different-verifier-that-is-long-enough-000000000")
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, _, _) = f.redeem(&code, VERIFIER).await;
    assert_eq!(status, 400, "a code fails after any redemption attempt");

    // A good redemption, then reuse of the same code.
    let code = f.code().await;
    let (status, tokens, cache) = f.redeem(&code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(cache.as_deref(), Some("no-store"));
    let (status, body, _) = f.redeem(&code, VERIFIER).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "reused code: {body}"
    );
    // Redirect URI mismatch at the token endpoint.
    let code = f.code().await;
    let (status, body, _) = f
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:1/other"),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );

    // The access token is an at+jwt for the resource, accepted by the gateway.
    let access = tokens["access_token"].as_str().unwrap();
    let header = crate::support::jwt_part(access, 0);
    assert_eq!(header["typ"], "at+jwt");
    let r = crate::support::Client::modern(&gw.url("/mcp"))
        .bearer(access)
        .call_tool("hello.greet", json!({"name": "dev"}))
        .await;
    assert_eq!(r.text(), "Hello, dev!");

    // Refresh tokens come with offline_access; rotation: the new one works, the old one is refused.
    let first = tokens["refresh_token"].as_str().unwrap().to_string();
    let (status, rotated, _) = f
        .token(&[("grant_type", "refresh_token"), ("refresh_token", &first)])
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert_ne!(rotated["refresh_token"], first);
    let (status, body, _) = f
        .token(&[("grant_type", "refresh_token"), ("refresh_token", &first)])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "refresh reuse: {body}"
    );
    // A refresh can only narrow the scope.
    let second = rotated["refresh_token"].as_str().unwrap();
    let (status, body, _) = f
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", second),
            ("scope", "mcp:tools mcp:admin"),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );

    // Registration errors.
    let reg = |meta: Value| {
        let (http, url) = (f.http.clone(), format!("{}/register", f.issuer));
        async move {
            let r = http.post(url).json(&meta).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = reg(json!({"redirect_uris": ["http://evil.example/cb"]})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_redirect_uri")),
        "{body}"
    );
    let (status, body) = reg(json!({"redirect_uris": ["https://ok.example/cb"], "token_endpoint_auth_method": "private_key_jwt"})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client_metadata")),
        "{body}"
    );
}

#[tokio::test]
async fn registration_can_be_turned_off_and_metadata_says_so() {
    let gw = gateway_with_dev_as("dcr = false").await;
    let meta: Value = reqwest::get(gw.url("/.well-known/oauth-authorization-server/dev-as"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(meta.get("registration_endpoint").is_none(), "{meta}");
    let r = reqwest::Client::new()
        .post(gw.url("/dev-as/register"))
        .json(&json!({"redirect_uris": ["https://ok.example/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

#[tokio::test]
async fn the_token_command_mints_a_token_the_gateway_accepts() {
    let dir = crate::support::tempdir();
    let key = dir.join("dev-as.key");
    let body = |extra: &str| {
        format!(
            "{extra}[sandbox]\nmax_instances = 8\n[auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\"]\n\
             [dev_as]\nenabled = true\nkey_file = {}\n[[tenant]]\nid = \"default\"\nplugins = [{}]\n",
            toml_path(&key),
            toml_path(&plugin("hello"))
        )
    };
    let gw = TestGateway::start("", &body("")).await;
    assert!(key.is_file(), "the key is kept for restarts and the CLI");
    let cli_config = dir.join("cli.toml");
    let listen = gw.base.trim_start_matches("http://");
    std::fs::write(
        &cli_config,
        body(&format!("[server]\nlisten = \"{listen}\"\n")),
    )
    .unwrap();
    let token = crate::support::mint_with_cli(&cli_config, "carol", "mcp:tools").await;
    let mut c = crate::support::Client::modern(&gw.url("/mcp")).bearer(&token);
    let r = c.call_tool("hello.whoami", json!({})).await;
    assert_eq!(r.result()["structuredContent"]["subject"], "carol", "{r:?}");
}

#[tokio::test]
async fn the_consent_page_shows_the_request_and_honours_the_decision() {
    // A human at the consent page.
    let gw = TestGateway::start("", &body(false, "")).await;
    let f = Flow::register(&gw).await;
    let http = &f.http;
    let challenge = challenge_for(VERIFIER);
    let params = [
        ("response_type", "code"),
        ("client_id", f.client_id.as_str()),
        ("redirect_uri", f.redirect.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "st-9"),
        ("scope", "mcp:tools"),
        ("resource", f.resource.as_str()),
    ];
    let url = reqwest::Url::parse_with_params(&format!("{}/authorize", f.issuer), &params).unwrap();
    let page = http.get(url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("neg wants to access"), "client name: {page}");
    assert!(page.contains("<b>127.0.0.1</b>"), "redirect host: {page}");
    assert!(
        page.contains("mcp:tools") && page.contains("<option>bob</option>"),
        "{page}"
    );

    let decide = |decision: &'static str| {
        let mut form: Vec<(&str, &str)> = params.to_vec();
        form.push(("user", "bob"));
        form.push(("decision", decision));
        let form: Vec<(String, String)> = form
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (http, url) = (http.clone(), format!("{}/authorize", f.issuer));
        async move {
            let r = http.post(url).form(&form).send().await.unwrap();
            reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap()
        }
    };
    let denied = decide("deny").await;
    assert!(
        denied
            .query_pairs()
            .any(|(k, v)| k == "error" && v == "access_denied"),
        "{denied}"
    );
    let approved = decide("approve").await;
    let code = approved
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code");
    let (status, tokens, _) = f.redeem(&code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    let claims = crate::support::jwt_part(tokens["access_token"].as_str().unwrap(), 1);
    assert_eq!(claims["sub"], "bob", "the user picked on the consent page");
    assert_eq!(claims["aud"], f.resource);
}

#[tokio::test]
async fn a_pre_registered_confidential_client_gets_agent_tokens_with_client_credentials() {
    let body = body(
        true,
        "[[dev_as.clients]]\nclient_id = \"agent\"\nclient_secret_env = \"AGENT_SECRET\"\n\
         grant_types = [\"client_credentials\"]\n",
    );
    let gw =
        crate::support::BinaryGateway::start(&body, &[("AGENT_SECRET", "s3cret-for-tests")]).await;
    let http = reqwest::Client::new();
    let token_url = format!("{}/dev-as/token", gw.base);
    let resource = format!("{}/mcp", gw.base);
    let ask = |secret: &'static str, resource: String| {
        let (http, url) = (http.clone(), token_url.clone());
        async move {
            let r = http
                .post(url)
                .basic_auth("agent", Some(secret))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("resource", resource.as_str()),
                    ("scope", "mcp:tools"),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = ask("wrong", resource.clone()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let (status, body) = ask("s3cret-for-tests", "https://elsewhere.example/mcp".into()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target")),
        "{body}"
    );
    let (status, tokens) = ask("s3cret-for-tests", resource.clone()).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(
        tokens.get("refresh_token").is_none(),
        "no refresh token for client credentials"
    );
    let r = crate::support::Client::modern(&resource)
        .bearer(tokens["access_token"].as_str().unwrap())
        .call_tool("hello.greet", json!({"name": "agent"}))
        .await;
    assert_eq!(r.text(), "Hello, agent!");
    // The pre-registered client may not use the authorization code grant.
    let (status, body) = {
        let r = http
            .post(&token_url)
            .basic_auth("agent", Some("s3cret-for-tests"))
            .form(&[("grant_type", "authorization_code"), ("code", "x")])
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client")),
        "{body}"
    );
    let log = gw.stop().await;
    assert!(
        !log.contains("s3cret-for-tests"),
        "the client secret is never logged"
    );
}

#[tokio::test]
async fn the_official_authorization_server_scenarios_pass_against_the_dev_as() {
    use tokio::io::AsyncBufReadExt as _;
    let callback_port = crate::support::free_port();
    let extra = format!(
        "[[dev_as.clients]]\nclient_id = \"conformance\"\nredirect_uris = [\"http://127.0.0.1:{callback_port}/callback\"]\n"
    );
    let gw = TestGateway::start("", &body(true, &extra)).await;
    let cli = crate::support::root().join(
        "tests/conformance-0.2.0/node_modules/@modelcontextprotocol/conformance/dist/index.js",
    );
    let mut suite = tokio::process::Command::new(node())
        .arg(cli)
        .args([
            "authorization",
            "--url",
            &gw.url("/dev-as"),
            "--client-id",
            "conformance",
            "--resource",
            &gw.url("/mcp"),
        ])
        .args(["-p", &callback_port.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(suite.stdout.take().unwrap()).lines();
    let mut output = Vec::new();
    let authorize = format!("{}/authorize?", gw.url("/dev-as"));
    let run = async {
        let (mut pending, mut listening): (Option<String>, bool) = (None, false);
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with(&authorize) {
                pending = Some(line.clone());
            }
            // The suite prints the URL before its callback server listens: follow the URL
            // only once both have been seen.
            listening |= line.starts_with("Callback server started");
            if listening && let Some(url) = pending.take() {
                // Play the user's browser: the dev AS auto-approves and redirects to the suite's callback.
                let done = reqwest::get(&url).await.unwrap();
                assert!(done.status().is_success(), "callback: {}", done.status());
            }
            output.push(line);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), run)
        .await
        .expect("the suite finished in time");
    let status = suite.wait().await.unwrap();
    let text = output.join("\n");
    assert!(status.success(), "authorization scenarios failed:\n{text}");
    let total = text
        .lines()
        .find(|l| l.starts_with("Total:"))
        .unwrap_or_default();
    assert!(
        total.ends_with(", 0 failed") && !text.contains('✗'),
        "{text}"
    );
    assert!(
        text.contains("✓ authorization-server-metadata-endpoint")
            && text.contains("✓ authorization-code-grant"),
        "{text}"
    );
}

#[tokio::test]
async fn token_exchange_issues_a_downstream_token_acting_for_the_user_and_refuses_the_rest() {
    let dir = crate::support::tempdir();
    let extra = format!(
        "key_file = {}\nexchange_audiences = [\"https://notes.example/api\"]\n\
         [[dev_as.clients]]\nclient_id = \"gateway\"\nclient_secret_env = \"GATEWAY_SECRET\"\n\
         grant_types = [\"urn:ietf:params:oauth:grant-type:token-exchange\"]\n",
        toml_path(&dir.join("dev-as.key"))
    );
    let gw = crate::support::BinaryGateway::start(
        &body(true, &extra),
        &[("GATEWAY_SECRET", "exchange-secret")],
    )
    .await;
    let user_token = crate::support::mint_with_cli(&gw.config, "alice", "mcp:tools").await;

    let http = reqwest::Client::new();
    let exchange = |subject: String, audience: &'static str, scope: Option<&'static str>| {
        let (http, url) = (http.clone(), format!("{}/dev-as/token", gw.base));
        async move {
            let mut form = vec![
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange".to_string(),
                ),
                ("subject_token", subject),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token".to_string(),
                ),
                ("audience", audience.to_string()),
            ];
            if let Some(s) = scope {
                form.push(("scope", s.to_string()));
            }
            let r = http
                .post(url)
                .basic_auth("gateway", Some("exchange-secret"))
                .form(&form)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = exchange(
        user_token.clone(),
        "https://notes.example/api",
        Some("mcp:tools"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    let exchanged = body["access_token"].as_str().unwrap();
    assert_ne!(exchanged, user_token, "a new token, never the inbound one");
    let claims = crate::support::jwt_part(exchanged, 1);
    assert_eq!(claims["aud"], "https://notes.example/api");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(
        claims["act"]["sub"], "gateway",
        "acting party: the exchanging client"
    );

    let (status, body) = exchange(
        user_token.clone(),
        "https://notes.example/api",
        Some("mcp:tools mcp:admin"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "widening: {body}"
    );
    let (status, body) = exchange(user_token.clone(), "https://unknown.example/api", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target")),
        "unknown audience: {body}"
    );
    let (status, body) = exchange("not-a-token".into(), "https://notes.example/api", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "bad subject token: {body}"
    );
    let log = gw.stop().await;
    assert!(!log.contains(&user_token) && !log.contains("exchange-secret"));
}

#[tokio::test]
async fn typescript_sdk_client_completes_the_flow_with_cimd_and_with_a_pre_registered_client() {
    let dir = crate::support::tempdir();
    let cimd_url = "https://client.example/portcullis-e2e.json";
    let doc = dir.join("client.json");
    std::fs::write(
        &doc,
        json!({"client_id": cimd_url, "client_name": "portcullis-e2e-cimd",
               "redirect_uris": ["http://127.0.0.1:33418/callback"], "token_endpoint_auth_method": "none",
               "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]})
        .to_string(),
    )
    .unwrap();
    let mismatched = dir.join("mismatched.json");
    std::fs::write(&mismatched, json!({"client_id": "https://elsewhere.example/x.json", "client_name": "x", "redirect_uris": ["http://127.0.0.1:1/cb"]}).to_string()).unwrap();
    let extra = format!(
        "cimd_documents = {{ \"{cimd_url}\" = {}, \"https://client.example/mismatched.json\" = {} }}\n\
         [[dev_as.clients]]\nclient_id = \"pre-registered\"\nredirect_uris = [\"http://127.0.0.1:33418/callback\"]\n",
        toml_path(&doc),
        toml_path(&mismatched)
    );
    let gw = crate::support::BinaryGateway::start_command("dev", &body(true, &extra), &[]).await;
    let url = |path: &str| format!("{}{path}", gw.base);
    let mcp_url = url("/mcp");
    let meta: Value = reqwest::get(url("/.well-known/oauth-authorization-server/dev-as"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["client_id_metadata_document_supported"], true);

    let t = run_json_program(
        &node(),
        "tests/js/oauth-client.mjs",
        &[mcp_url.as_ref()],
        &[("CLIENT_MODE", "cimd"), ("CIMD_URL", cimd_url)],
    )
    .await;
    assert_eq!(
        t["clientId"], cimd_url,
        "the metadata document URL is the client id: {t}"
    );
    assert!(
        t.get("registeredClientId").is_none() || t["registeredClientId"] == cimd_url,
        "no DCR: {t}"
    );
    assert_eq!(t["whoami"]["structuredContent"]["subject"], "alice", "{t}");

    let t = run_json_program(
        &node(),
        "tests/js/oauth-client.mjs",
        &[mcp_url.as_ref()],
        &[
            ("CLIENT_MODE", "preregistered"),
            ("CLIENT_ID", "pre-registered"),
        ],
    )
    .await;
    assert_eq!(t["clientId"], "pre-registered", "{t}");
    assert_eq!(t["greet"]["content"][0]["text"], "Hello, OAuth!");
    assert_eq!(
        t["whoami"]["structuredContent"]["subject"], "alice",
        "step-up works for it too: {t}"
    );

    // A document whose client_id is not its own URL is refused before anything is redirected.
    let url = reqwest::Url::parse_with_params(
        &url("/dev-as/authorize"),
        &[
            ("response_type", "code"),
            ("client_id", "https://client.example/mismatched.json"),
            ("redirect_uri", "http://127.0.0.1:1/cb"),
            ("code_challenge", &challenge_for(VERIFIER)),
            ("code_challenge_method", "S256"),
        ],
    )
    .unwrap();
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("invalid_client") && page.contains("does not match"),
        "{page}"
    );
}

#[tokio::test]
async fn the_dev_command_turns_on_the_dev_as_and_oauth() {
    // A file with authentication off: `portcullis dev` serves it with OAuth and the dev AS.
    let body = format!(
        "[sandbox]\nmax_instances = 8\n[auth]\nmode = \"none\"\n[[tenant]]\nid = \"d\"\nplugins = [{}]\n",
        toml_path(&plugin("hello"))
    );
    let gw = crate::support::BinaryGateway::start_command("dev", &body, &[]).await;
    let meta = reqwest::get(format!(
        "{}/.well-known/oauth-authorization-server/dev-as",
        gw.base
    ))
    .await
    .unwrap();
    assert_eq!(meta.status().as_u16(), 200);
    let r = crate::support::Client::modern(&format!("{}/mcp", gw.base))
        .call_tool("hello.greet", json!({"name": "x"}))
        .await;
    assert_eq!(r.status, 401, "OAuth is required: {r:?}");
    let log = gw.stop().await;
    assert!(
        log.contains("THE DEVELOPMENT AUTHORIZATION SERVER IS ON"),
        "and says so loudly"
    );
}

/// #16 AC5, as the attack: client ID metadata documents naming redirect URIs an attacker
/// wants (`http://` elsewhere, `javascript:`, not a URL) get no code and no panic; 1,000
/// registrations keep the registry bounded (the oldest are forgotten); the dev AS is refused
/// on a non-loopback listener; and `portcullis dev` validates the configuration it serves.
#[tokio::test]
async fn the_dev_as_refuses_hostile_clients_and_stays_bounded() {
    let dir = crate::support::tempdir();
    let doc = |id: &str, redirect: &str| {
        let path = dir.join(format!("{}.json", id.rsplit('/').next().unwrap()));
        let body = json!({"client_id": id, "client_name": "x", "redirect_uris": [redirect]});
        std::fs::write(&path, body.to_string()).unwrap();
        (id.to_string(), path)
    };
    let docs = [
        doc("https://client.example/evil.json", "http://evil.example/cb"),
        doc(
            "https://client.example/js.json",
            "javascript:alert(document.cookie)",
        ),
        doc("https://client.example/garbage.json", "::not a url::"),
    ];
    let table: Vec<String> = docs
        .iter()
        .map(|(id, path)| format!("\"{id}\" = {}", toml_path(path)))
        .collect();
    let gw = gateway_with_dev_as(&format!("cimd_documents = {{ {} }}", table.join(", "))).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for ((id, _), redirect) in docs.iter().zip([
        "http://evil.example/cb",
        "javascript:alert(document.cookie)",
        "::not a url::",
    ]) {
        let r = http
            .get(authorize_url(&gw, id, redirect))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{id}");
        assert!(
            r.headers().get("location").is_none(),
            "{id}: no redirect, no code"
        );
        let page = r.text().await.unwrap();
        assert!(page.contains("invalid_client"), "{id}: {page}");
    }

    // From twenty loopback addresses: one address may register only 60 a minute (#28).
    let senders: Vec<reqwest::Client> = (0..20u8)
        .map(|k| {
            reqwest::Client::builder()
                .local_address(std::net::IpAddr::from([127, 0, 0, 2 + k]))
                .build()
                .unwrap()
        })
        .collect();
    let register = |n: usize| {
        let (http, url) = (senders[n / 50].clone(), gw.url("/dev-as/register"));
        async move {
            let r: Value = http
                .post(url)
                .json(&json!({"client_name": format!("c{n}"), "redirect_uris": ["https://ok.example/cb"],
                              "token_endpoint_auth_method": "none"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            r["client_id"].as_str().unwrap().to_string()
        }
    };
    let first = register(0).await;
    let mut last = String::new();
    for n in 1..1000 {
        last = register(n).await;
    }
    let authorize = |id: String| {
        let (http, url) = (
            http.clone(),
            authorize_url(&gw, &id, "https://ok.example/cb"),
        );
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        authorize(first).await,
        400,
        "the oldest registration was forgotten"
    );
    assert_ne!(authorize(last).await, 400, "the newest is served");

    let public = format!("[server]\nlisten = \"0.0.0.0:0\"\n{}", body(true, ""));
    let e = portcullis::config::Config::parse(&public, &dir.join("p.toml"), &dir).unwrap_err();
    assert!(e.to_string().contains("dev_as.enabled"), "{e}");

    let off = format!(
        "[auth]\nmode = \"none\"\n[[auth.issuer]]\nissuer = \"https://as.example\"\nalgorithms = [\"HS256\"]\n\
         [[tenant]]\nid = \"t\"\nplugins = [{}]\n",
        toml_path(&plugin("hello"))
    );
    let config = portcullis::config::Config::parse(&off, &dir.join("o.toml"), &dir).unwrap();
    let e = config.for_dev().unwrap_err();
    assert!(e.to_string().contains("HS256"), "{e}");
}

/// An authorization request (PKCE S256) for `client_id` returning to `redirect_uri`.
fn authorize_url(gw: &TestGateway, client_id: &str, redirect_uri: &str) -> reqwest::Url {
    let mut url = reqwest::Url::parse(&gw.url("/dev-as/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair(
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        )
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", &gw.url("/mcp"))
        .append_pair("scope", "mcp:tools");
    url
}

/// #28. Before: registrations were capped by count only (500 of any size: +500 MiB), and an
/// anonymous flood pushed every other client's registration out. Now one registration is
/// small (names cut, at most 10 redirect URIs of 2 KiB, nothing else kept or echoed), one
/// address registers at most 60 a minute (then 429), and registrations never used go first.
#[tokio::test]
async fn a_registration_flood_is_bounded_and_evicts_no_client_in_use() {
    let gw = gateway_with_dev_as("").await;
    let used = Flow::register(&gw).await;
    let (status, _) = used.authorize(&[]).await;
    assert_eq!(status, 303);
    let http = reqwest::Client::new();
    let register = |meta: Value| {
        let (http, url) = (http.clone(), gw.url("/dev-as/register"));
        async move {
            let r = http.post(url).json(&meta).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };
    let long = format!("https://app.example/{}", "x".repeat(3000));
    let (status, _) = register(json!({"redirect_uris": [long]})).await;
    assert_eq!(status, 400, "a 3 KB redirect URI");
    let eleven: Vec<String> = (0..11)
        .map(|i| format!("https://app.example/{i}"))
        .collect();
    let (status, _) = register(json!({"redirect_uris": eleven})).await;
    assert_eq!(status, 400, "eleven redirect URIs");
    let mut statuses = Vec::new();
    for i in 0..70 {
        let (status, body) = register(json!({
            "redirect_uris": [format!("https://flood.example/{i}")],
            "client_name": "n".repeat(100_000),
            "padding": "p".repeat(100_000),
        }))
        .await;
        assert!(
            body.len() < 4096,
            "nothing large is kept or echoed: {} bytes",
            body.len()
        );
        statuses.push(status);
    }
    let created = statuses.iter().filter(|s| **s == 201).count();
    assert!(
        created <= 60,
        "{created} registrations in a minute from one address"
    );
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // The client in use still is.
    let (status, q) = used.authorize(&[]).await;
    assert_eq!(status, 303, "{q:?}");
}

/// #30: a client registered (RFC 7591) before a restart of a gateway whose development AS
/// keeps its key (`key_file`) completes authorization after it. Before, the key survived and
/// every registration was forgotten: a connected client (the MCP Inspector) landed on
/// "unknown client_id" with nothing telling it to register again.
#[tokio::test]
async fn a_client_registered_before_a_restart_is_known_after_it() {
    let dir = crate::support::tempdir();
    let keep = format!("key_file = {}", toml_path(&dir.join("dev-as.key")));
    let before = gateway_with_dev_as(&keep).await;
    let registered = Flow::register(&before).await;
    drop(before);
    let after = gateway_with_dev_as(&keep).await;
    let flow = Flow {
        issuer: after.url("/dev-as"),
        resource: after.url("/mcp"),
        ..registered
    };
    let code = flow.code().await;
    let (status, tokens, _) = flow.redeem(&code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["access_token"].is_string());
    // Kept owner-only, beside the key.
    let kept = dir.join("dev-as.clients.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
    // A file that does not parse is reported and ignored (clients register again).
    std::fs::write(&kept, "not json").unwrap();
    let fresh = gateway_with_dev_as(&keep).await;
    let again = Flow {
        issuer: fresh.url("/dev-as"),
        resource: fresh.url("/mcp"),
        ..flow
    };
    let (status, _) = again.authorize(&[]).await;
    assert_ne!(status, 302, "forgotten, as the log says");
}
