//! End to end with a real authorization server (npm oidc-provider 9.13) and the official
//! TypeScript SDK client running the complete MCP OAuth flow against Portcullis.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::{TestGateway, node, plugin, root, toml_path};

/// oidc-provider on an ephemeral port, issuing tokens for `resources`; killed on drop.
pub(crate) struct RealAs {
    pub(crate) issuer: String,
    _child: Child,
}

impl RealAs {
    pub(crate) async fn start(resources: &[String], scopes: &str) -> Self {
        Self::start_with(resources, scopes, &[]).await
    }

    pub(crate) async fn start_with(
        resources: &[String],
        scopes: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let mut child = Command::new(node());
        child.envs(env.iter().copied());
        let mut child = child
            .arg(root().join("tests/js/as.mjs"))
            .current_dir(root().join("tests"))
            .env("AS_RESOURCES", resources.join(" "))
            .env("AS_SCOPES", scopes)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    return v["issuer"].as_str().unwrap().to_string();
                }
            }
            panic!("oidc-provider exited before it was ready");
        })
        .await
        .expect("oidc-provider started");
        // Keep draining its output: a closed pipe would kill it on its next write.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            issuer: ready,
            _child: child,
        }
    }
}

impl RealAs {
    /// What `tests/js/user-token.mjs` got for `alice` at `resource` with `scope`
    /// (authorization code + PKCE as the AS's static public client, headless).
    async fn user_tokens_json(&self, resource: &str, scope: &str) -> Value {
        crate::support::run_json_program(
            &node(),
            "tests/js/user-token.mjs",
            &[self.issuer.as_ref(), resource.as_ref(), scope.as_ref()],
            &[],
        )
        .await
    }

    /// An access token for `alice` at `resource` with `scope`.
    pub(crate) async fn user_token(&self, resource: &str, scope: &str) -> String {
        let out = self.user_tokens_json(resource, scope).await;
        out["access_token"].as_str().unwrap().to_string()
    }

    /// Alice's access and refresh tokens at `resource` (`scope` gains `offline_access`).
    pub(crate) async fn user_tokens_with_refresh(
        &self,
        resource: &str,
        scope: &str,
    ) -> (String, String) {
        let out = self
            .user_tokens_json(resource, &format!("{scope} offline_access"))
            .await;
        let text = |k: &str| {
            out[k]
                .as_str()
                .unwrap_or_else(|| panic!("no {k} in {out}"))
                .to_string()
        };
        (text("access_token"), text("refresh_token"))
    }

    /// Revoke `token` (RFC 7009) as the public client it was issued to.
    pub(crate) async fn revoke(&self, token: &str) {
        let resp = reqwest::Client::new()
            .post(format!("{}/token/revocation", self.issuer))
            .form(&[("token", token), ("client_id", "test-public")])
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "revocation: {}", resp.status());
    }

    /// Every token, introspection and revocation request this AS received, in order:
    /// `{endpoint, grant_type, target, tokens: [sha256 hex], client, status}`.
    pub(crate) async fn requests(&self) -> Vec<Value> {
        reqwest::get(format!("{}/__requests", self.issuer))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// How many tokens the AS issued for downstream audiences (exchanges, client credentials).
    pub(crate) async fn downstream_tokens_issued(&self) -> u64 {
        let v: Value = reqwest::get(format!("{}/__exchanges", self.issuer))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["count"].as_u64().unwrap()
    }
}

/// oidc-provider plus a gateway trusting it, with `hello.whoami` needing `mcp:admin`.
struct OAuthSetup {
    mcp_url: String,
    as_: RealAs,
    _gw: TestGateway,
}

async fn oauth_setup() -> OAuthSetup {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mcp_url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let as_ = RealAs::start(std::slice::from_ref(&mcp_url), "mcp:tools mcp:admin").await;
    let body = format!(
        "[sandbox]\nmax_instances = 16\n\
         [auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\", \"mcp:admin\"]\nchallenge_scopes = [\"mcp:tools\"]\n\
         require_at_jwt = true\n\
         [[auth.issuer]]\nissuer = \"{}\"\nalgorithms = [\"RS256\"]\n\
         [[tenant]]\nid = \"default\"\nplugins = [{}]\n\
         [tenant.plugin.hello]\nscopes = {{ \"hello.whoami\" = [\"mcp:admin\"] }}\n",
        as_.issuer,
        toml_path(&plugin("hello")),
    );
    let _gw = TestGateway::start_on(listener, "", &body).await;
    OAuthSetup { mcp_url, as_, _gw }
}

/// Run a client program with the MCP URL as its last argument; returns its JSON transcript.
async fn run_client(program: &std::path::Path, script: &str, mcp_url: &str) -> Value {
    crate::support::run_json_program(program, script, &[std::ffi::OsStr::new(mcp_url)], &[]).await
}

#[tokio::test]
async fn typescript_sdk_client_completes_the_oauth_flow_with_step_up_against_oidc_provider() {
    let OAuthSetup { mcp_url, as_, _gw } = oauth_setup().await;
    let t = run_client(&node(), "tests/js/oauth-client.mjs", &mcp_url).await;

    // 1. The first request is refused with the discovery challenge.
    let first = &t["challenges"][0];
    assert_eq!(first["status"], 401, "{t}");
    assert_eq!(
        first["resourceMetadataUrl"],
        format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            mcp_url.trim_end_matches("/mcp")
        )
    );
    assert_eq!(first["scope"], "mcp:tools");
    // 2. The client registered itself (DCR) and authorized with PKCE S256 for our resource.
    assert!(t["registeredClientId"].is_string(), "{t}");
    let params = &t["lastAuthorizeParams"];
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["resource"], mcp_url);
    assert_eq!(
        t["iss"], as_.issuer,
        "RFC 9207 iss in the authorization response"
    );
    // 3. It listed and called tools with the token.
    assert_eq!(
        t["tools"],
        serde_json::json!(["hello.greet", "hello.whoami"])
    );
    assert_eq!(t["greet"]["content"][0]["text"], "Hello, OAuth!");
    // 4. The admin tool needed more scope: 403 step-up naming every scope, re-authorization, success.
    let step_up = &t["challenges"][1];
    assert_eq!(step_up["status"], 403, "{t}");
    assert_eq!(step_up["error"], "insufficient_scope");
    assert_eq!(step_up["scope"], "mcp:admin mcp:tools");
    assert_eq!(t["authorizations"], 2);
    assert_eq!(t["whoami"]["isError"], Value::Null, "{t}");
    assert_eq!(t["whoami"]["structuredContent"]["subject"], "alice");
    assert!(
        t["scopesGranted"]
            .as_str()
            .unwrap()
            .split(' ')
            .any(|s| s == "mcp:admin"),
        "{t}"
    );
}

#[tokio::test]
async fn python_sdk_client_completes_the_oauth_flow_with_step_up_against_oidc_provider() {
    let OAuthSetup { mcp_url, as_, _gw } = oauth_setup().await;
    let python = root().join("tests/.venv/bin/python");
    assert!(
        python.is_file(),
        "Python test peers missing: run `cargo xtask test`"
    );
    let t = run_client(&python, "tests/py/oauth_client.py", &mcp_url).await;

    assert_eq!(t["statuses"][0], 401, "{t}");
    let challenges: Vec<&str> = t["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        challenges[0].contains("resource_metadata=")
            && challenges[0].contains("scope=\"mcp:tools\""),
        "{t}"
    );
    assert!(
        challenges[1].contains("error=\"insufficient_scope\"")
            && challenges[1].contains("scope=\"mcp:admin mcp:tools\""),
        "{t}"
    );
    assert!(t["registered_client_id"].is_string(), "DCR: {t}");
    assert_eq!(t["authorize_params"]["code_challenge_method"], "S256");
    assert_eq!(t["authorize_params"]["resource"], mcp_url);
    assert_eq!(t["iss"], as_.issuer);
    assert_eq!(
        t["authorizations"], 2,
        "initial authorization and one step-up"
    );
    // The Python SDK 2.3 negotiates the stateless 2026-07-28 revision.
    assert_eq!(t["protocol_version"], "2026-07-28");
    assert_eq!(t["greet"], "Hello, Python!");
    assert_eq!(t["whoami_is_error"], false);
    assert_eq!(t["whoami"]["subject"], "alice");
}

#[tokio::test]
async fn opaque_tokens_are_validated_by_introspection_at_oidc_provider() {
    let port = crate::support::free_port();
    let mcp_url = format!("http://127.0.0.1:{port}/mcp");
    let elsewhere = "http://127.0.0.1:1/other".to_string();
    let as_ = RealAs::start_with(
        &[mcp_url.clone(), elsewhere.clone()],
        "mcp:tools mcp:admin",
        &[("AS_TOKEN_FORMAT", "opaque")],
    )
    .await;
    let body = format!(
        "[sandbox]\nmax_instances = 8\n\
         [auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\", \"mcp:admin\"]\n\
         [[auth.issuer]]\nissuer = \"{}\"\nintrospection = {{ client_id = \"gateway\", client_secret_env = \"PORTCULLIS_TEST_SECRET\" }}\n\
         [[tenant]]\nid = \"default\"\nplugins = [{}]\n",
        as_.issuer,
        toml_path(&plugin("hello")),
    );
    let gw = crate::support::BinaryGateway::start_on_port(
        port,
        &body,
        &[("PORTCULLIS_TEST_SECRET", "gateway-secret")],
    )
    .await;
    let token_for = |resource: String| {
        let issuer = as_.issuer.clone();
        async move {
            let r: Value = reqwest::Client::new()
                .post(format!("{issuer}/token"))
                .basic_auth("gateway", Some("gateway-secret"))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("resource", &resource),
                    ("scope", "mcp:tools"),
                ])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            r["access_token"]
                .as_str()
                .unwrap_or_else(|| panic!("{r}"))
                .to_string()
        }
    };
    let ours = token_for(mcp_url.clone()).await;
    assert_eq!(ours.split('.').count(), 1, "an opaque token, not a JWT");
    let r = crate::support::Client::modern(&mcp_url)
        .bearer(&ours)
        .call_tool("hello.greet", serde_json::json!({"name": "opaque"}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "Hello, opaque!");

    let theirs = token_for(elsewhere).await;
    let r = crate::support::Client::modern(&mcp_url)
        .bearer(&theirs)
        .call_tool("hello.greet", serde_json::json!({}))
        .await;
    assert_eq!(r.status, 401, "an active token for another resource: {r:?}");
    let r = crate::support::Client::modern(&mcp_url)
        .bearer("not-a-real-token")
        .call_tool("hello.greet", serde_json::json!({}))
        .await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("the token is not active"),
        "{r:?}"
    );
    let log = gw.stop().await;
    assert!(
        !log.contains("gateway-secret") && !log.contains(&ours),
        "no secret or token in the log"
    );
}
