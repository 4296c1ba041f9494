//! Downstream credentials from a real authorization server (npm oidc-provider 9.13 with RFC
//! 8693 token exchange registered as a custom grant): end to end with the TypeScript SDK, the
//! exchange cache counted at the AS, refusals, `client_credentials` and `private_key_jwt`.

use std::time::Duration;

use serde_json::json;

use crate::support::peers::DownstreamApi;
use crate::support::peers::RealAs;
use crate::support::{BinaryGateway, Client, jwt_part, node, plugin, root, toml_path};

const SECRET: &str = "gateway-secret";

/// oidc-provider, the recording API and the real binary, wired for token exchange.
struct Setup {
    as_: RealAs,
    api: DownstreamApi,
    gw: BinaryGateway,
    mcp_url: String,
}

impl Setup {
    /// `services`: extra `[[tenant.service]]` tables (`{API}` stands for the API's base URL),
    /// all granted to the probe; `notes` (token exchange for the API) is always there.
    /// `exchange`: the `[exchange]` table's body. `ttl`: exchanged tokens' lifetime.
    async fn start(exchange: &str, services: &[&str], ttl: u64) -> Self {
        let api = DownstreamApi::start().await;
        let port = crate::support::free_port();
        let mcp_url = format!("http://127.0.0.1:{port}/mcp");
        let audience = format!("{}/api", api.base);
        let as_ = RealAs::for_exchange(&mcp_url, &audience, ttl).await;
        let mut granted = vec!["\"notes\"".to_string()];
        let mut extra = String::new();
        for block in services {
            let name = block
                .split("name = \"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            granted.push(format!("\"{name}\""));
            extra += &format!(
                "[[tenant.service]]\n{}\n",
                block.replace("{API}", &audience)
            );
        }
        let body = format!(
            "[sandbox]\nmax_instances = 16\n\
             [auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\", \"notes:read\"]\n\
             [[auth.issuer]]\nissuer = \"{issuer}\"\nalgorithms = [\"RS256\"]\n\
             [exchange]\n{exchange}\n\
             [[tenant]]\nid = \"t\"\nplugins = [{probe}]\n\
             [[tenant.service]]\nname = \"notes\"\nbase_url = \"{audience}\"\ncredential = \"token-exchange\"\naudience = \"{audience}\"\n\
             {extra}\
             [tenant.plugin.probe]\nservices = [{granted}]\n",
            granted = granted.join(", "),
            issuer = as_.issuer,
            probe = toml_path(&plugin("probe")),
        );
        let gw = BinaryGateway::start_on_port(port, &body, &[("GATEWAY_SECRET", SECRET)]).await;
        Self {
            as_,
            api,
            gw,
            mcp_url,
        }
    }

    /// The gateway authenticating with `client_secret_basic`.
    async fn basic(services: &[&str], ttl: u64) -> Self {
        Self::start(
            "client_id = \"gateway\"\nclient_secret_env = \"GATEWAY_SECRET\"",
            services,
            ttl,
        )
        .await
    }

    async fn user_token(&self) -> String {
        self.as_
            .user_token(&self.mcp_url, "mcp:tools notes:read")
            .await
    }

    /// `probe.fetch` of `path` on `service` with `token`: the tool's text.
    async fn fetch(&self, token: &str, service: &str, path: &str) -> String {
        let r = Client::modern(&self.mcp_url)
            .bearer(token)
            .call_tool("probe.fetch", json!({"service": service, "path": path}))
            .await;
        r.text()
    }
}
#[tokio::test]
async fn typescript_sdk_user_reaches_the_api_with_a_token_exchanged_at_oidc_provider() {
    let s = Setup::basic(&[], 600).await;
    let calls =
        json!([{"name": "probe.fetch", "arguments": {"service": "notes", "path": "/echo"}}]);
    let t = crate::support::run_json_program(
        &node(),
        "tests/js/oauth-client.mjs",
        &[std::ffi::OsStr::new(&s.mcp_url)],
        &[("CALLS", &calls.to_string())],
    )
    .await;
    let text = t["calls"][0]["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("status 200: "), "{t}");
    let inbound = t["accessToken"].as_str().unwrap();
    let exchanged = s.api.bearer(0);
    assert_ne!(
        exchanged, inbound,
        "the inbound token never reaches the API"
    );
    let claims = jwt_part(&exchanged, 1);
    assert_eq!(claims["aud"], format!("{}/api", s.api.base), "{claims}");
    assert_eq!(claims["sub"], "alice", "{claims}");
    assert_eq!(claims["act"]["sub"], "gateway", "{claims}");
    assert_eq!(claims["iss"], s.as_.issuer);
    assert_eq!(jwt_part(inbound, 1)["aud"], s.mcp_url);
    assert_eq!(s.as_.downstream_tokens_issued().await, 1);
    let log = s.gw.stop().await;
    assert!(!log.contains(inbound) && !log.contains(&exchanged) && !log.contains(SECRET));
}

#[tokio::test]
async fn exchanges_are_cached_merged_and_renewed_counted_at_the_authorization_server() {
    // Exchanged tokens live 3 s, so the cache keeps them about 2.7 s.
    let s = Setup::basic(&[], 3).await;
    let token = s.user_token().await;
    // Six identical calls at once: one exchange.
    let calls = (0..6).map(|_| s.fetch(&token, "notes", "/echo"));
    for out in futures::future::join_all(calls).await {
        assert!(out.starts_with("status 200: "), "{out}");
    }
    assert_eq!(s.as_.downstream_tokens_issued().await, 1, "merged");
    let first = s.api.bearer(0);
    assert!((0..6).all(|i| s.api.bearer(i) == first));
    // Within its lifetime: reused.
    s.fetch(&token, "notes", "/echo").await;
    assert_eq!(s.as_.downstream_tokens_issued().await, 1, "cached");
    // After it expires: a new exchange.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    s.fetch(&token, "notes", "/echo").await;
    assert_eq!(s.as_.downstream_tokens_issued().await, 2, "renewed");
    assert_ne!(s.api.bearer(7), first);
    // A different user is a different cache entry (the key includes the subject token).
    let other = s.user_token().await;
    s.fetch(&other, "notes", "/echo").await;
    assert_eq!(s.as_.downstream_tokens_issued().await, 3);
}

#[tokio::test]
async fn a_downstream_401_evicts_the_token_and_retries_once() {
    let s = Setup::basic(&[], 600).await;
    let token = s.user_token().await;
    // Refused once, then accepted with a freshly exchanged token.
    assert_eq!(
        s.fetch(&token, "notes", "/reject-first").await,
        "status 200: accepted"
    );
    assert_eq!(s.as_.downstream_tokens_issued().await, 2);
    assert_ne!(s.api.bearer(0), s.api.bearer(1));
    // Refused every time: one retry only, and the plugin sees the 401.
    assert_eq!(
        s.fetch(&token, "notes", "/always-401").await,
        "status 401: never"
    );
    assert_eq!(s.api.authorizations().len(), 4, "one request and one retry");
    assert_eq!(s.as_.downstream_tokens_issued().await, 3);
}

#[tokio::test]
async fn exchanges_the_authorization_server_refuses_are_actionable_errors_and_nothing_leaks() {
    // `refused` asks for an audience the AS does not serve; `widened` for a scope the user
    // does not hold.
    let s = Setup::basic(
        &[
            "name = \"refused\"\nbase_url = \"{API}\"\ncredential = \"token-exchange\"\naudience = \"https://elsewhere.example/api\"",
            "name = \"widened\"\nbase_url = \"{API}\"\ncredential = \"token-exchange\"\naudience = \"{API}\"\nscopes = [\"notes:write\"]",
        ],
        600,
    )
    .await;
    let token = s.user_token().await;
    let out = s.fetch(&token, "refused", "/x").await;
    assert!(
        out.starts_with("error: Error::Credential(")
            && out.contains("refused the token exchange: invalid_target"),
        "{out}"
    );
    // The user's token lacks a scope the service asks for (an exchange only narrows): the
    // client is told to step up to it, keeping what it holds (#29).
    let widened = Client::modern(&s.mcp_url)
        .bearer(&token)
        .call_tool(
            "probe.fetch",
            json!({"service": "widened", "path": "/echo"}),
        )
        .await;
    assert_eq!(widened.status, 403, "{widened:?}");
    let challenge = widened.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("notes:write")
            && challenge.contains("mcp:tools"),
        "{challenge}"
    );
    // The gateway keeps serving, and the good service still works.
    assert!(
        s.fetch(&token, "notes", "/echo")
            .await
            .starts_with("status 200: ")
    );
    let log = s.gw.stop().await;
    assert!(log.contains("invalid_target"), "operators see why: {log}");
    assert!(!log.contains(&token) && !log.contains(SECRET));
}

#[tokio::test]
async fn client_credentials_and_private_key_jwt_against_oidc_provider() {
    let key = root().join("tests/fixtures/test-issuer-b.pem");
    let s = Setup::start(
        &format!(
            "client_id = \"gateway-pkjwt\"\nauth_method = \"private_key_jwt\"\nprivate_key_file = {}\n",
            toml_path(&key)
        ),
        &["name = \"robot\"\nbase_url = \"{API}\"\ncredential = \"client-credentials\"\naudience = \"{API}\""],
        600,
    )
    .await;
    let token = s.user_token().await;
    // Token exchange, the gateway authenticating with a signed assertion.
    assert!(
        s.fetch(&token, "notes", "/echo")
            .await
            .starts_with("status 200: ")
    );
    let exchanged = jwt_part(&s.api.bearer(0), 1);
    assert_eq!(
        (exchanged["sub"].as_str(), exchanged["act"]["sub"].as_str()),
        (Some("alice"), Some("gateway-pkjwt"))
    );
    // Client credentials: the gateway's own token, no user and no actor.
    assert!(
        s.fetch(&token, "robot", "/echo")
            .await
            .starts_with("status 200: ")
    );
    let own = jwt_part(&s.api.bearer(1), 1);
    assert_eq!(own["sub"], "gateway-pkjwt", "{own}");
    assert!(own.get("act").is_none(), "{own}");
    assert_eq!(own["aud"], format!("{}/api", s.api.base));
    // Also cached.
    s.fetch(&token, "robot", "/echo").await;
    assert_eq!(s.as_.downstream_tokens_issued().await, 2);
    let log = s.gw.stop().await;
    assert!(!log.contains(&token) && !log.contains("client_assertion"));
}

#[tokio::test]
async fn nothing_the_plugin_can_observe_contains_the_inbound_or_the_exchanged_token() {
    let s = Setup::basic(&[], 600).await;
    let token = s.user_token().await;
    // Every host function, with good and deliberately bad requests.
    let fetches = json!([
        {"service": "notes", "path": "/hello"},
        {"service": "notes", "path": "/hello", "headers": [["Authorization", "Bearer forged"]]},
        {"service": "notes", "path": "/always-401"},
        {"service": "notes", "path": "/../outside"},
        {"service": "notes", "path": "/redirect-metadata"},
        {"service": "notes", "path": "/big"},
        {"service": "notes", "path": "/hello", "method": "TRACE"},
        {"service": "notes", "path": "/echo", "method": "POST", "body": "x".repeat(2 << 20)},
        {"service": "nope", "path": "/"},
    ]);
    let r = Client::modern(&s.mcp_url)
        .bearer(&token)
        .call_tool("probe.observe", json!({ "fetches": fetches }))
        .await;
    assert!(!r.is_error(), "{r:?}");
    let seen = &r.result()["structuredContent"];
    // The probe really saw each answer...
    let outcomes: Vec<String> = seen["host"]["fetches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["outcome"].to_string())
        .collect();
    let expected = [
        "hello from the API",
        "hello from the API",
        "\"status\":401",
        "Blocked",
        "leaves the service",
        "TooLarge",
        "method TRACE is not allowed",
        "TooLarge",
        "UnknownService",
    ];
    for (outcome, want) in outcomes.iter().zip(expected) {
        assert!(outcome.contains(want), "{outcome} should contain {want}");
    }
    assert_eq!(outcomes.len(), expected.len());
    assert_eq!(seen["context"]["subject"], "alice");
    // ...and no piece of either token is anywhere in it.
    let exchanged = s.api.bearer(0);
    assert_ne!(exchanged, token);
    let text = seen.to_string();
    for t in [&token, &exchanged] {
        for part in t.split('.') {
            assert!(
                !text.contains(part),
                "a piece of a token reached the plugin"
            );
        }
    }
    let log = s.gw.stop().await;
    assert!(!log.contains(&token) && !log.contains(&exchanged) && !log.contains(SECRET));
}
