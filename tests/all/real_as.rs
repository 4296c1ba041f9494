//! End to end with a real authorization server (npm oidc-provider 9.13) and the official
//! TypeScript SDK client running the complete MCP OAuth flow against Portcullis.

use serde_json::Value;

use crate::support::peers::RealAs;
use crate::support::{TestGateway, node, plugin, root, toml_path};

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
        serde_json::json!(["hello.greet", "hello.report", "hello.whoami"])
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
