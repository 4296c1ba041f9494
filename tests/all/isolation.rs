//! Isolation under attack: identity is (tenant, issuer, subject) everywhere, and no token or
//! credential crosses a tenant or an issuer. Each test is written as the attack it refutes;
//! `docs/SECURITY.md` maps every guarantee to its test here.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::peers::DownstreamApi;
use crate::support::peers::RealAs;
use crate::support::peers::{TestIssuer, now};
use crate::support::{
    BinaryGateway, Client, Reply, TestGateway, free_port, jwt_part, plugin, toml_path,
};

const SECRET: &str = "gateway-secret";

/// `tools/call` params for `tool` from a 2026 client that can answer elicitations.
fn call_params(tool: &str) -> Value {
    json!({"name": tool, "arguments": {},
        "_meta": {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}})
}

fn sha(token: &str) -> String {
    crate::support::sha256_hex(token)
}

/// Every token hash `requests` (an AS's `/__requests`) carried.
fn tokens_seen(requests: &[Value]) -> Vec<String> {
    requests
        .iter()
        .flat_map(|r| r["tokens"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect()
}

/// Token requests `requests` served for `audience`.
fn token_requests_for(requests: &[Value], audience: &str) -> usize {
    requests
        .iter()
        .filter(|r| {
            r["endpoint"] == "token"
                && r["target"]
                    .as_array()
                    .is_some_and(|t| t.contains(&json!(audience)))
        })
        .count()
}

/// The `aud` of every bearer token an API received.
fn audiences_seen(api: &DownstreamApi) -> Vec<String> {
    api.authorizations()
        .into_iter()
        .map(|a| {
            let token = a
                .expect("a bearer token")
                .trim_start_matches("Bearer ")
                .to_string();
            jwt_part(&token, 1)["aud"].as_str().unwrap().to_string()
        })
        .collect()
}

async fn fetch(url: &str, token: &str, service: &str) -> Reply {
    Client::modern(url)
        .bearer(token)
        .call_tool("probe.fetch", json!({"service": service, "path": "/echo"}))
        .await
}

/// AC1. Tenants A and B both have services called `api` (client credentials) and `user-api`
/// (token exchange) with their own audiences. Before: the OAuth client was process-wide and
/// keyed by service name, so B's `api` received the token A's `api` obtained.
#[tokio::test]
async fn two_tenants_with_the_same_service_names_never_share_a_token() {
    let (api_a, api_b) = (DownstreamApi::start().await, DownstreamApi::start().await);
    let port = free_port();
    let (url_a, url_b) = (
        format!("http://127.0.0.1:{port}/t/a/mcp"),
        format!("http://127.0.0.1:{port}/t/b/mcp"),
    );
    let aud = |api: &DownstreamApi, what: &str| format!("{}/api/{what}", api.base);
    let audiences = [
        aud(&api_a, "cc"),
        aud(&api_a, "user"),
        aud(&api_b, "cc"),
        aud(&api_b, "user"),
    ];
    let as_ = RealAs::start_with(
        &[url_a.clone(), url_b.clone()],
        "mcp:tools",
        &[("AS_EXCHANGE_RESOURCES", &audiences.join(" "))],
    )
    .await;
    let tenant = |id: &str, api: &DownstreamApi| {
        format!(
            r#"
[[tenant]]
id = "{id}"
path = "/t/{id}/mcp"
plugins = [{probe}]
[[tenant.service]]
name = "api"
base_url = "{base}/api"
credential = "client-credentials"
audience = "{cc}"
[[tenant.service]]
name = "user-api"
base_url = "{base}/api"
credential = "token-exchange"
audience = "{user}"
[tenant.plugin.probe]
services = ["api", "user-api"]
"#,
            probe = toml_path(&plugin("probe")),
            base = api.base,
            cc = aud(api, "cc"),
            user = aud(api, "user"),
        )
    };
    let body = format!(
        r#"
[sandbox]
max_instances = 16
[auth]
mode = "oauth"
scopes_supported = ["mcp:tools"]
[[auth.issuer]]
issuer = "{issuer}"
algorithms = ["RS256"]
[exchange]
client_id = "gateway"
client_secret_env = "GATEWAY_SECRET"
{a}
{b}
"#,
        issuer = as_.issuer,
        a = tenant("a", &api_a),
        b = tenant("b", &api_b),
    );
    let _gw = BinaryGateway::start_on_port(port, &body, &[("GATEWAY_SECRET", SECRET)]).await;
    let (alice_a, alice_b) = (
        as_.user_token(&url_a, "mcp:tools").await,
        as_.user_token(&url_b, "mcp:tools").await,
    );
    for (url, token) in [(&url_a, &alice_a), (&url_b, &alice_b)] {
        for service in ["api", "user-api", "api", "user-api"] {
            let r = fetch(url, token, service).await;
            assert!(
                r.text().starts_with("status 200"),
                "{service} at {url}: {r:?}"
            );
        }
    }
    // Each API saw only tokens for its own audiences, four requests each.
    for (api, own) in [(&api_a, &audiences[..2]), (&api_b, &audiences[2..])] {
        let seen = audiences_seen(api);
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert!(
            seen.iter().all(|a| own.contains(a)),
            "{seen:?} not all in {own:?}"
        );
    }
    // One token per (tenant, audience): cached within a tenant, never shared across.
    let requests = as_.requests().await;
    for audience in &audiences {
        assert_eq!(
            token_requests_for(&requests, audience),
            1,
            "{audience}: {requests:#?}"
        );
    }
}

/// AC2. A tenant trusts issuers X and Y, each with an exchange client; Y also introspects
/// opaque tokens. Before: every exchange went to the one `[exchange]` issuer, and opaque
/// tokens were offered to every introspecting issuer in turn.
#[tokio::test]
async fn a_token_is_only_ever_sent_to_the_issuer_that_issued_it() {
    let api = DownstreamApi::start().await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let audience = format!("{}/api", api.base);
    let env = [("AS_EXCHANGE_RESOURCES", audience.as_str())];
    let (x, y) = (
        RealAs::start_with(std::slice::from_ref(&url), "mcp:tools", &env).await,
        RealAs::start_with(std::slice::from_ref(&url), "mcp:tools", &env).await,
    );
    let body = format!(
        r#"
[sandbox]
max_instances = 16
[auth]
mode = "oauth"
scopes_supported = ["mcp:tools"]
[[auth.issuer]]
issuer = "{x}"
algorithms = ["RS256"]
exchange = {{ client_id = "gateway", client_secret_env = "GATEWAY_SECRET" }}
[[auth.issuer]]
issuer = "{y}"
algorithms = ["RS256"]
exchange = {{ client_id = "gateway", client_secret_env = "GATEWAY_SECRET" }}
introspection = {{ client_id = "gateway", client_secret_env = "GATEWAY_SECRET" }}
[[tenant]]
id = "t"
plugins = [{probe}]
[[tenant.service]]
name = "api"
base_url = "{audience}"
credential = "token-exchange"
audience = "{audience}"
[[tenant.service]]
name = "x-only"
base_url = "{audience}"
credential = "token-exchange"
audience = "{audience}"
issuer = "{x}"
[tenant.plugin.probe]
services = ["api", "x-only"]
"#,
        x = x.issuer,
        y = y.issuer,
        probe = toml_path(&plugin("probe")),
    );
    let _gw = BinaryGateway::start_on_port(port, &body, &[("GATEWAY_SECRET", SECRET)]).await;
    let (alice_x, alice_y) = (
        x.user_token(&url, "mcp:tools").await,
        y.user_token(&url, "mcp:tools").await,
    );
    for token in [&alice_x, &alice_y] {
        let r = fetch(&url, token, "api").await;
        assert!(r.text().starts_with("status 200"), "{r:?}");
    }
    // Y's caller at a service only X exchanges for: a credential error, no request anywhere.
    let r = fetch(&url, &alice_y, "x-only").await;
    assert!(
        r.text().contains("Credential") && r.text().contains("accepts only tokens obtained at"),
        "{r:?}"
    );
    // An opaque junk token goes to Y's introspection only.
    let junk = "opaque-junk-token-that-no-one-issued";
    let r = Client::modern(&url)
        .bearer(junk)
        .call_tool("probe.echo", json!({}))
        .await;
    assert_eq!(r.status, 401);

    let (at_x, at_y) = (x.requests().await, y.requests().await);
    let (seen_x, seen_y) = (tokens_seen(&at_x), tokens_seen(&at_y));
    assert_eq!(
        seen_x,
        vec![sha(&alice_x)],
        "X saw exactly its own user's token once: {at_x:#?}"
    );
    assert!(
        seen_y.contains(&sha(&alice_y)) && seen_y.contains(&sha(junk)),
        "{at_y:#?}"
    );
    assert!(
        !seen_y.contains(&sha(&alice_x)),
        "X's token reached Y: {at_y:#?}"
    );
    assert!(
        at_x.iter().all(|r| r["endpoint"] != "introspection"),
        "X introspects nothing: {at_x:#?}"
    );
    assert_eq!(
        api.authorizations().len(),
        2,
        "x-only never reached the API"
    );
}

fn whoami_claims(issuer: &TestIssuer, aud: &str, sub: &str, scope: &str) -> Value {
    json!({"iss": issuer.url, "sub": sub, "aud": aud, "exp": now() + 600, "iat": now(), "scope": scope})
}

/// Two in-test issuers, signing with keys `a` and `b`.
async fn two_issuers() -> (TestIssuer, TestIssuer) {
    (
        TestIssuer::start(&["a"]).await,
        TestIssuer::start(&["b"]).await,
    )
}

/// A gateway trusting two in-test issuers: `server` extends `[server]`, `auth`
/// `[auth]`, and `tenant_extra` the tenant's tables.
async fn two_issuer_gateway(
    a: &TestIssuer,
    b: &TestIssuer,
    (server, auth): (&str, &str),
    tenant_extra: &str,
) -> TestGateway {
    let body = format!(
        r#"
[sandbox]
max_instances = 16
[auth]
mode = "oauth"
scopes_supported = ["mcp:tools", "mcp:admin"]
{auth}
[[auth.issuer]]
issuer = "{a}"
algorithms = ["RS256"]
[[auth.issuer]]
issuer = "{b}"
algorithms = ["RS256"]
[[tenant]]
id = "t"
plugins = [{hello}, {conformance}]
{tenant_extra}
[tenant.plugin.hello]
scopes = {{ "hello.whoami" = ["mcp:admin"] }}
"#,
        a = a.url,
        b = b.url,
        hello = toml_path(&plugin("hello")),
        conformance = toml_path(&plugin("conformance")),
    );
    TestGateway::start(server, &body).await
}

/// The direct path serves the calls of a session whose client declared nothing, skipping
/// rmcp's session worker: that session is still only its creator's. alice@Y presenting
/// alice@X's session id, on a call the direct path would serve, gets 404.
#[tokio::test]
async fn a_direct_path_session_is_only_its_creators() {
    let (x, y) = two_issuers().await;
    let gw = two_issuer_gateway(&x, &y, ("", ""), "").await;
    let url = gw.url("/mcp");
    let scope = "mcp:tools mcp:admin";
    let alice_x = x.token("a", whoami_claims(&x, &url, "alice", scope));
    let alice_y = y.token("b", whoami_claims(&y, &url, "alice", scope));
    let mut owner = Client::new(&url).bearer(&alice_x);
    owner.initialize_declaring("2025-11-25", json!({})).await;
    let mine = owner.call_tool("hello.whoami", json!({})).await;
    assert_eq!(
        mine.result()["structuredContent"]["issuer"],
        json!(x.url),
        "{mine:?}"
    );
    let mut hijack = Client::new(&url).bearer(&alice_y);
    hijack.session = owner.session.clone();
    hijack.version = "2025-11-25".into();
    let r = hijack.call_tool("hello.whoami", json!({})).await;
    assert_eq!(r.status, 404, "{r:?}");
    let r = hijack.call_tool("hello.greet", json!({"name": "x"})).await;
    assert_eq!(r.status, 404, "{r:?}");
}

/// AC3. The same `sub` from two issuers. Before: "alice" from Y used alice@X's session,
/// completed her input-required step with her `requestState`, and shared her quota bucket.
#[tokio::test]
async fn the_same_sub_from_two_issuers_is_two_callers() {
    let (x, y) = two_issuers().await;
    let gw = two_issuer_gateway(
        &x,
        &y,
        ("", ""),
        "[tenant.quota]\nsubject_requests_per_minute = 3\n",
    )
    .await;
    let url = gw.url("/mcp");
    let scope = "mcp:tools mcp:admin";
    let alice_x = x.token("a", whoami_claims(&x, &url, "alice", scope));
    let alice_y = y.token("b", whoami_claims(&y, &url, "alice", scope));

    // Sessions: alice@Y cannot use alice@X's session (404, as for any unknown session).
    let mut session_x =
        Client::initialize_with(&url, "2025-11-25", Some(&format!("Bearer {alice_x}"))).await;
    let mut hijack = Client::new(&url).bearer(&alice_y);
    hijack.session = session_x.session.clone();
    let r = hijack.request("tools/list", json!({})).await;
    assert_eq!(r.status, 404, "{r:?}");

    // requestState: alice@X's state is refused for alice@Y.
    let tool = "test_input_required_result_request_state";
    let first = Client::modern(&url)
        .bearer(&alice_x)
        .request("tools/call", call_params(tool))
        .await;
    let state = first.result()["requestState"].as_str().unwrap().to_string();
    let answer = json!({"confirm": {"action": "accept", "content": {"ok": true}}});
    let stolen = Client::modern(&url)
        .bearer(&alice_y)
        .request("tools/call", {
            let mut p = call_params(tool);
            p["inputResponses"] = answer.clone();
            p["requestState"] = state.clone().into();
            p
        })
        .await;
    assert!(
        stolen.error()["message"]
            .as_str()
            .unwrap()
            .contains("different request or caller"),
        "{stolen:?}"
    );

    // The plugin sees two callers, each with its issuer.
    let who = |token: &str| {
        let url = url.clone();
        let token = token.to_string();
        async move {
            let r = Client::modern(&url)
                .bearer(&token)
                .call_tool("hello.whoami", json!({}))
                .await;
            r.result()["structuredContent"].clone()
        }
    };
    let (seen_x, seen_y) = (who(&alice_x).await, who(&alice_y).await);
    assert_eq!(
        (seen_x["subject"].clone(), seen_y["subject"].clone()),
        (json!("alice"), json!("alice"))
    );
    assert_eq!(seen_x["issuer"], json!(x.url));
    assert_eq!(seen_y["issuer"], json!(y.url));

    // Quotas: alice@X spent her 3 (initialize, the first call, whoami); alice@Y has her own.
    let r = session_x.request("tools/list", json!({})).await;
    assert_eq!(r.status, 429, "alice@X is over her own rate: {r:?}");
    let r = Client::modern(&url)
        .bearer(&alice_y)
        .call_tool("hello.greet", json!({"name": "y"}))
        .await;
    assert_eq!(r.text(), "Hello, y!", "alice@Y has her own bucket");
}

/// AC4. Opaque tokens at oidc-provider: revocation takes effect within the introspection
/// cache window; a refresh token is not an access token; junk tokens cost at most the
/// per-address budget of introspections, then 429.
#[tokio::test]
async fn introspection_honours_revocation_refuses_refresh_tokens_and_budgets_junk() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let as_ = RealAs::opaque(&url).await;
    let body = format!(
        r#"
[auth]
mode = "oauth"
scopes_supported = ["mcp:tools"]
introspection_cache_secs = 2
introspection_failures_per_minute = 5
[[auth.issuer]]
issuer = "{issuer}"
introspection = {{ client_id = "gateway", client_secret_env = "GATEWAY_SECRET" }}
[[tenant]]
id = "t"
plugins = [{hello}]
"#,
        issuer = as_.issuer,
        hello = toml_path(&plugin("hello")),
    );
    let _gw = BinaryGateway::start_on_port(port, &body, &[("GATEWAY_SECRET", SECRET)]).await;
    let greet = |token: String| {
        let url = url.clone();
        async move {
            Client::modern(&url)
                .bearer(&token)
                .call_tool("hello.greet", json!({"name": "r"}))
                .await
        }
    };
    let (access, refresh) = as_.user_tokens_with_refresh(&url, "mcp:tools").await;
    assert_eq!(greet(access.clone()).await.text(), "Hello, r!");
    as_.revoke(&access).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        greet(access.clone()).await.status,
        401,
        "revoked, and the 2 s cache window is over"
    );
    assert_eq!(
        greet(refresh).await.status,
        401,
        "a refresh token is not a bearer token"
    );

    let before = as_.introspections().await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(greet(format!("junk-{i}")).await.status);
    }
    // The same junk again: answered from memory, not by the AS.
    statuses.push(greet("junk-0".into()).await.status);
    let after = as_.introspections().await;
    // Two refusals were already spent above (the revoked and the refresh token).
    assert!(
        after - before <= 3,
        "at most the budget left: {} calls",
        after - before
    );
    assert_eq!(&statuses[..3], &[401, 401, 401], "{statuses:?}");
    assert!(
        statuses[3..8].iter().all(|s| *s == 429),
        "then 429: {statuses:?}"
    );
}

/// #28 AC2. Before: refusals were counted only when their introspection had answered, so 64
/// junk tokens sent at once cost 64 introspections against a budget of 30, and an
/// unreachable introspection endpoint's URL was in the unauthenticated 401. Now each
/// introspection takes its slot of the budget before it starts.
#[tokio::test]
async fn a_burst_of_junk_tokens_costs_at_most_the_budget_and_learns_nothing_of_the_endpoint() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let as_ = RealAs::opaque(&url).await;
    let config = |endpoint: &str| {
        format!(
            r#"
[auth]
mode = "oauth"
scopes_supported = ["mcp:tools"]
introspection_failures_per_minute = 30
[[auth.issuer]]
issuer = "{issuer}"
introspection = {{ client_id = "gateway", client_secret_env = "GATEWAY_SECRET"{endpoint} }}
[[tenant]]
id = "t"
plugins = [{hello}]
"#,
            issuer = as_.issuer,
            hello = toml_path(&plugin("hello")),
        )
    };
    let gw = BinaryGateway::start_on_port(port, &config(""), &[("GATEWAY_SECRET", SECRET)]).await;
    let before = as_.introspections().await;
    let burst = (0..100).map(|i| {
        let url = url.clone();
        async move {
            Client::modern(&url)
                .bearer(&format!("junk-{i}"))
                .call_tool("hello.greet", json!({"name": "r"}))
                .await
                .status
        }
    });
    let statuses = futures::future::join_all(burst).await;
    let spent = as_.introspections().await - before;
    assert!(spent <= 30, "{spent} introspections for a budget of 30");
    assert!(
        statuses.iter().all(|s| [401, 429].contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 70,
        "{statuses:?}"
    );
    gw.stop().await;

    // An introspection endpoint that cannot be reached: the operator's log says where and
    // why, the caller only that the token could not be checked.
    let dead = format!(
        ", endpoint = \"http://127.0.0.1:{}/introspect-here\"",
        free_port()
    );
    let gw =
        BinaryGateway::start_on_port(port, &config(&dead), &[("GATEWAY_SECRET", SECRET)]).await;
    let r = Client::modern(&url)
        .bearer("opaque-token-value")
        .call_tool("hello.greet", json!({"name": "r"}))
        .await;
    assert_eq!(r.status, 401, "{r:?}");
    let answer = format!("{:?}{}", r.headers, r.body);
    assert!(
        !answer.contains("introspect-here") && answer.contains("could not be checked"),
        "{answer}"
    );
    let log = gw.stop().await;
    assert!(log.contains("introspect-here"), "the operator is told");
}

/// #28. Before: an introspected token naming neither `sub` nor `client_id` (RFC 7662 makes
/// both optional, and authorization servers configured so omit them) was accepted, and all
/// such callers were one — sharing session caps, buckets and `requestState` bindings. Now it
/// is refused (JWTs without `sub` already were). The authorization server here is a small
/// introspection endpoint answering as such a server does.
#[tokio::test]
async fn an_introspected_token_naming_neither_a_subject_nor_a_client_is_refused() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let answer = {
        let (issuer, url) = (issuer.clone(), url.clone());
        move |form: axum::extract::Form<std::collections::HashMap<String, String>>| {
            let (issuer, url) = (issuer.clone(), url.clone());
            async move {
                let mut a = json!({"active": true, "iss": issuer, "aud": url,
                                   "exp": now() + 600, "scope": "mcp:tools"});
                if form.get("token").is_some_and(|t| t.starts_with("client-")) {
                    a["client_id"] = json!("agent-7");
                }
                axum::Json(a)
            }
        }
    };
    let app = axum::Router::new().route("/introspect", axum::routing::post(answer));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let body = format!(
        r#"
[auth]
mode = "oauth"
scopes_supported = ["mcp:tools"]
[[auth.issuer]]
issuer = "{issuer}"
introspection = {{ client_id = "gateway", client_secret_env = "GATEWAY_SECRET", endpoint = "{issuer}/introspect" }}
[[tenant]]
id = "t"
plugins = [{hello}]
"#,
        hello = toml_path(&plugin("hello")),
    );
    let _gw = BinaryGateway::start_on_port(port, &body, &[("GATEWAY_SECRET", SECRET)]).await;
    let greet = |token: &'static str| {
        let url = url.clone();
        async move {
            Client::modern(&url)
                .bearer(token)
                .call_tool("hello.greet", json!({"name": "n"}))
                .await
        }
    };
    let r = greet("nobody-opaque-token").await;
    assert_eq!(r.status, 401, "{r:?}");
    let challenge = r.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("invalid_token"), "{challenge}");
    // A client's own token (no `sub`, its `client_id`) is a caller: that client.
    assert_eq!(greet("client-opaque-token").await.text(), "Hello, n!");
}

/// AC5. `*` in a token's `scope` or `scp`. Before: it granted every scope, admin included.
#[tokio::test]
async fn a_wildcard_scope_in_a_token_grants_nothing() {
    let (x, y) = two_issuers().await;
    let gw = two_issuer_gateway(&x, &y, ("admin_scope = \"mcp:admin\"", ""), "").await;
    let url = gw.url("/mcp");
    let mut scope_star = whoami_claims(&x, &url, "mallory", "mcp:tools *");
    let scp_star = {
        let mut c = whoami_claims(&x, &url, "mallory", "");
        c.as_object_mut().unwrap().remove("scope");
        c["scp"] = json!(["mcp:tools", "*"]);
        c
    };
    scope_star["jti"] = json!("1");
    for claims in [scope_star, scp_star] {
        let token = x.token("a", claims);
        let r = Client::modern(&url)
            .bearer(&token)
            .call_tool("hello.whoami", json!({}))
            .await;
        assert_eq!(r.status, 403, "admin tool: {r:?}");
        let r = reqwest::Client::new()
            .get(gw.url("/admin/plugins"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "inventory");
        let r = Client::modern(&url)
            .bearer(&token)
            .call_tool("hello.greet", json!({"name": "m"}))
            .await;
        assert_eq!(r.text(), "Hello, m!", "the scopes it does name still work");
    }
}

/// A two-issuer gateway whose `[server]` session caps are `caps`.
async fn capped_sessions(caps: &str) -> (TestIssuer, TestIssuer, TestGateway) {
    let (x, y) = two_issuers().await;
    let gw = two_issuer_gateway(&x, &y, (caps, ""), "").await;
    (x, y, gw)
}

/// `Bearer <token>` for `sub` of issuer `x`, for the endpoint `url`.
fn bearer_of(x: &TestIssuer, url: &str, sub: &str) -> String {
    format!(
        "Bearer {}",
        x.token("a", whoami_claims(x, url, sub, "mcp:tools"))
    )
}

/// AC6. Before: one subject could open every session and lock everyone else out. Now a
/// caller holds at most `max_sessions_per_subject`: its next `initialize` closes its own
/// oldest session (so it never locks itself out either), and others are unaffected.
#[tokio::test]
async fn one_caller_cannot_take_every_session() {
    let (x, _y, gw) = capped_sessions("max_sessions = 4\nmax_sessions_per_subject = 2").await;
    let url = gw.url("/mcp");
    let bearer = |sub: &str| bearer_of(&x, &url, sub);
    let (alice, bob) = (bearer("alice"), bearer("bob"));
    let mut sessions = Vec::new();
    for _ in 0..5 {
        sessions.push(Client::initialize_with(&url, "2025-11-25", Some(&alice)).await);
    }
    let mut statuses = Vec::new();
    for s in &mut sessions {
        statuses.push(s.request("tools/list", json!({})).await.status);
    }
    assert_eq!(
        statuses,
        [404, 404, 404, 200, 200],
        "alice keeps her 2 newest sessions"
    );
    // Alice holds 2 of the 4: bob gets both of the rest.
    let _bob = [
        Client::initialize_with(&url, "2025-11-25", Some(&bob)).await,
        Client::initialize_with(&url, "2025-11-25", Some(&bob)).await,
    ];
    // The gateway-wide limit still answers 503 + Retry-After for anyone over it... but a
    // caller at its own share makes room from its own sessions first.
    let carol = bearer("carol");
    let mut c = Client::new(&url);
    c.authorization = Some(carol);
    let r = c
        .post_raw(
            crate::support::initialize_request("2025-11-25", json!({})),
            &[],
        )
        .await;
    assert_eq!(r.status, 503, "the gateway is full: {r:?}");
    assert!(r.headers.contains_key("retry-after"));
}

/// #28 AC2. Before: owners were counted only after `initialize` answered, so 24 concurrent
/// `initialize`s of one subject left 8 live sessions under a cap of 3, and the gateway-wide
/// cap then refused another subject. Now each `initialize` reserves its room first: a burst
/// of 50 leaves alice at most her 3, the rest are told to retry (429), and bob gets in.
#[tokio::test]
async fn a_burst_of_initializes_holds_to_the_session_caps() {
    let (x, _y, gw) = capped_sessions("max_sessions = 6\nmax_sessions_per_subject = 3").await;
    let url = gw.url("/mcp");
    let bearer = |sub: &str| bearer_of(&x, &url, sub);
    let alice = bearer("alice");
    let burst = (0..50).map(|_| {
        let mut c = Client::new(&url);
        c.authorization = Some(alice.clone());
        c.try_initialize()
    });
    let answered = futures::future::join_all(burst).await;
    let statuses: std::collections::BTreeSet<u16> = answered.iter().map(|(s, _)| *s).collect();
    assert!(
        statuses.is_subset(&[200, 429].into()),
        "opened or told to retry: {statuses:?}"
    );
    let mut live = 0;
    for (_, mut c) in answered.into_iter().filter(|(s, _)| *s == 200) {
        if c.request("tools/list", json!({})).await.status == 200 {
            live += 1;
        }
    }
    assert!((1..=3).contains(&live), "alice holds {live} sessions");
    let bob = bearer("bob");
    for _ in 0..3 {
        let _bob = Client::initialize_with(&url, "2025-11-25", Some(&bob)).await;
    }
}

/// AC7. A page that rebinds a name to the gateway's address. Before: side routes skipped the
/// Host/Origin allow-list, so it could read the inventory with auth off and get an admin
/// token from the dev AS.
#[tokio::test]
async fn a_foreign_host_or_origin_is_refused_on_every_route() {
    let body = format!(
        r#"
[auth]
mode = "oauth"
scopes_supported = ["mcp:tools"]
[dev_as]
enabled = true
auto_approve = true
[[tenant]]
id = "secret-tenant-name"
plugins = [{hello}]
"#,
        hello = toml_path(&plugin("hello")),
    );
    let gw = TestGateway::start("", &body).await;
    let http = reqwest::Client::new();
    let routes = [
        ("GET", "/mcp"),
        ("POST", "/mcp"),
        ("GET", "/.well-known/oauth-protected-resource/mcp"),
        ("GET", "/readyz"),
        ("GET", "/admin/plugins"),
        ("GET", "/dev-as/.well-known/oauth-authorization-server"),
        ("POST", "/dev-as/register"),
        ("POST", "/dev-as/token"),
        ("GET", "/dev-as/authorize"),
    ];
    for (method, path) in routes {
        let req = |host: &str, origin: Option<&str>| {
            let mut r = http
                .request(method.parse().unwrap(), gw.url(path))
                .header("host", host)
                .header("content-type", "application/json")
                .body("{}");
            if let Some(o) = origin {
                r = r.header("origin", o);
            }
            r
        };
        let r = req("evil.example", None).send().await.unwrap();
        assert_eq!(
            r.status().as_u16(),
            403,
            "{method} {path} with a foreign Host"
        );
        let r = req("127.0.0.1", Some("https://evil.example"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            403,
            "{method} {path} with a foreign Origin"
        );
    }
    // Liveness reveals nothing and must answer probes that address the gateway by IP.
    let r = http
        .get(gw.url("/healthz"))
        .header("host", "10.1.2.3:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "ok");
    // Nothing unauthenticated names a tenant (readiness details are for operators; the
    // loopback peer here is one, so ask the router directly, as a remote peer would).
    let gateway = portcullis::Portcullis::start(gw.gateway_config.clone())
        .await
        .unwrap();
    use tower::ServiceExt as _;
    for path in ["/readyz", "/admin/plugins"] {
        let resp = gateway
            .router()
            .oneshot(
                http::Request::get(path)
                    .header("host", "127.0.0.1")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("secret-tenant-name"), "{path}: {text}");
    }
}

/// AC8. Before: a `requestState` could be replayed for its whole lifetime. Answers are the
/// client's own data (SEP-2322): sent without a `requestState` they reach the plugin with no
/// state of its own (so they cannot stand in for the state a round sealed), and next to a
/// `requestState` only answers to the questions it asked reach the plugin (#20: both were
/// refused before, against SEP-2322's "ignore what you do not recognize").
#[tokio::test]
async fn request_state_is_single_use_and_answers_cannot_forge_plugin_state() {
    let gw = TestGateway::start(
        "",
        &format!(
            "[auth]\nmode = \"none\"\n[[tenant]]\nid = \"t\"\nplugins = [{}]\n",
            toml_path(&plugin("conformance"))
        ),
    )
    .await;
    let url = gw.url("/mcp");
    let tool = "test_input_required_result_request_state";
    let first = Client::modern(&url)
        .request("tools/call", call_params(tool))
        .await;
    let state = first.result()["requestState"].as_str().unwrap().to_string();
    let answer = json!({"confirm": {"action": "accept", "content": {"ok": true}}});
    let retry = |responses: Value, state: Option<&str>| {
        let url = url.clone();
        let mut params = call_params(tool);
        params["inputResponses"] = responses;
        if let Some(s) = state {
            params["requestState"] = s.into();
        }
        async move { Client::modern(&url).request("tools/call", params).await }
    };
    let ok = retry(answer.clone(), Some(&state)).await;
    assert_eq!(ok.text(), "state-ok: confirmation received");
    let replay = retry(answer.clone(), Some(&state)).await;
    assert!(
        replay.error()["message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{replay:?}"
    );
    // The right answer without the state that asked: the plugin never sees its state, so it
    // asks again instead of finishing.
    let unsolicited = retry(answer.clone(), None).await;
    assert_eq!(
        unsolicited.result()["resultType"],
        "input_required",
        "{unsolicited:?}"
    );
    // An answer to a question that was never asked, smuggled next to a real one: ignored.
    let fresh = || async {
        let first = Client::modern(&url)
            .request("tools/call", call_params(tool))
            .await;
        first.result()["requestState"].as_str().unwrap().to_string()
    };
    let mut smuggled = answer.clone();
    smuggled["approve_payment"] = json!({"action": "accept", "content": {"ok": true}});
    let r = retry(smuggled, Some(&fresh().await)).await;
    assert_eq!(r.text(), "state-ok: confirmation received", "{r:?}");
    // Only an answer to a question never asked: the plugin asks its own question again.
    let only_smuggled = json!({"approve_payment": {"action": "accept", "content": {"ok": true}}});
    let r = retry(only_smuggled, Some(&fresh().await)).await;
    assert_eq!(r.result()["resultType"], "input_required", "{r:?}");
}

/// AC9. Before: completion on resource templates ignored their scopes, listen streams did
/// not check resource scopes, `tools_list = "permitted"` hid only tools, and a hidden tool
/// answered differently from an unknown one.
#[tokio::test]
async fn every_path_enforces_scopes_and_hidden_items_look_unknown() {
    let (x, y) = two_issuers().await;
    let admin_only = r#"
[tenant.plugin.conformance]
scopes = { "test_simple_text" = ["mcp:admin"], "test_simple_prompt" = ["mcp:admin"], "test://static-text" = ["mcp:admin"], "test://template/{id}/data" = ["mcp:admin"] }
"#;
    // tools_list = "all": visible, and using them asks for a step-up.
    let gw = two_issuer_gateway(&x, &y, ("", ""), admin_only).await;
    let url = gw.url("/mcp");
    let user = x.token("a", whoami_claims(&x, &url, "u", "mcp:tools"));
    let mut c = Client::modern(&url).bearer(&user);
    let completion = json!({"ref": {"type": "ref/resource", "uri": "test://template/{id}/data"},
        "argument": {"name": "id", "value": "1"}});
    let r = c.request("completion/complete", completion.clone()).await;
    assert_eq!(r.status, 403, "completion on an admin template: {r:?}");
    let listen = json!({"notifications": {"resourceSubscriptions": ["test://static-text"]}});
    let r = c.request("subscriptions/listen", listen).await;
    assert_eq!(r.status, 403, "listening to an admin resource: {r:?}");
    let mut session =
        Client::initialize_with(&url, "2025-11-25", Some(&format!("Bearer {user}"))).await;
    let r = session
        .request("resources/subscribe", json!({"uri": "test://static-text"}))
        .await;
    assert_eq!(r.status, 403, "subscribing to an admin resource: {r:?}");
    drop(gw);

    // tools_list = "permitted": hidden everywhere, and a hidden tool is an unknown tool.
    let gw = two_issuer_gateway(&x, &y, ("", "tools_list = \"permitted\""), admin_only).await;
    let url = gw.url("/mcp");
    let user = x.token("a", whoami_claims(&x, &url, "u", "mcp:tools"));
    let mut c = Client::modern(&url).bearer(&user);
    let names = |r: &Reply, key: &str, field: &str| -> Vec<String> {
        r.result()[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i[field].as_str().unwrap().to_string())
            .collect()
    };
    let tools = c.request("tools/list", json!({})).await;
    assert!(!tools.tool_names().contains(&"test_simple_text".to_string()));
    let prompts = c.request("prompts/list", json!({})).await;
    assert!(!names(&prompts, "prompts", "name").contains(&"test_simple_prompt".into()));
    let resources = c.request("resources/list", json!({})).await;
    assert!(!names(&resources, "resources", "uri").contains(&"test://static-text".into()));
    let templates = c.request("resources/templates/list", json!({})).await;
    assert!(
        !names(&templates, "resourceTemplates", "uriTemplate")
            .contains(&"test://template/{id}/data".into())
    );

    let raw = |name: &str| {
        let (url, user) = (url.clone(), user.clone());
        let name = name.to_string();
        async move {
            let mut c = Client::modern(&url).bearer(&user);
            let r = c.call_tool(&name, json!({})).await;
            (
                r.status,
                serde_json::to_string(&r.error())
                    .unwrap()
                    .replace(&name, "NAME"),
            )
        }
    };
    let hidden = raw("test_simple_text").await;
    let unknown = raw("no_such_tool_at_al").await;
    assert_eq!(
        hidden, unknown,
        "a hidden tool answers byte for byte like an unknown one"
    );
    let r = c.request("completion/complete", completion).await;
    assert_eq!(
        r.result()["completion"]["values"],
        json!([]),
        "nothing to complete for a hidden template: {r:?}"
    );
}

/// A copy of the probe plugin with `total` core instances: the probe's own plus instances
/// of an empty module, appended as a core module section and a core instance section.
fn with_core_instances(total: u32) -> std::path::PathBuf {
    let mut bytes = std::fs::read(plugin("probe")).unwrap();
    // The new module's index is the number of core modules the component already defines.
    let (mut modules, mut instances) = (0u32, 0u32);
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        match payload {
            Ok(wasmparser::Payload::ModuleSection { .. }) => modules += 1,
            Ok(wasmparser::Payload::InstanceSection(r)) => {
                instances += r
                    .into_iter()
                    .flatten()
                    .filter(|i| matches!(i, wasmparser::Instance::Instantiate { .. }))
                    .count() as u32
            }
            _ => {}
        }
    }
    let extra = total - instances;
    let leb = |mut n: u32, out: &mut Vec<u8>| loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    };
    let empty_module = b"\0asm\x01\0\0\0";
    bytes.push(1); // core module section
    leb(empty_module.len() as u32, &mut bytes);
    bytes.extend_from_slice(empty_module);
    let mut instances = Vec::new();
    leb(extra, &mut instances);
    for _ in 0..extra {
        instances.push(0x00); // instantiate
        leb(modules, &mut instances);
        instances.push(0); // no arguments
    }
    bytes.push(2); // core instance section
    leb(instances.len() as u32, &mut bytes);
    bytes.extend_from_slice(&instances);
    let path = crate::support::tempdir().join("probe.wasm");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// AC10. Before: shares counted calls, so a component with many core instances took far
/// more of the engine-wide pool than its tenant's share, and other tenants' calls failed.
/// The pool has 20 units (80 core instances); each tenant a share of 10. The heavy component
/// has 39 core instances (10 units): counted per call, two of its calls held 78 of the 80
/// core instances and nothing else could instantiate; counted in units, one runs at a time.
#[tokio::test]
async fn a_component_with_many_core_instances_cannot_stop_another_tenant() {
    let heavy = with_core_instances(39);
    let body = format!(
        r#"
[sandbox]
max_instances = 20
[auth]
mode = "none"
[limits]
deadline_ms = 20000
[[tenant]]
id = "heavy"
path = "/t/heavy/mcp"
plugins = [{heavy}]
[tenant.quota]
max_instances = 10
[[tenant]]
id = "light"
path = "/t/light/mcp"
plugins = [{hello}]
[tenant.quota]
max_instances = 10
"#,
        heavy = toml_path(&heavy),
        hello = toml_path(&plugin("hello")),
    );
    let gw = TestGateway::start("", &body).await;
    let catalog = gw.tenants[0].plugins.catalog();
    let footprint = catalog.plugins[0].code.footprint();
    assert_eq!(footprint.core_instances, 39, "{footprint:?}");
    assert_eq!(footprint.units(), 10, "{footprint:?}");
    let heavy_url = gw.url("/t/heavy/mcp");
    let sleepers: Vec<_> = (0..3)
        .map(|_| {
            let url = heavy_url.clone();
            tokio::spawn(async move {
                Client::modern(&url)
                    .call_tool("probe.sleep", json!({"ms": 2000}))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let light_url = gw.url("/t/light/mcp");
    let started = std::time::Instant::now();
    let greetings: Vec<_> = (0..5)
        .map(|i| {
            let url = light_url.clone();
            tokio::spawn(async move {
                Client::modern(&url)
                    .call_tool("hello.greet", json!({"name": format!("n{i}")}))
                    .await
            })
        })
        .collect();
    for (i, g) in greetings.into_iter().enumerate() {
        assert_eq!(g.await.unwrap().text(), format!("Hello, n{i}!"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    for s in sleepers {
        s.await.unwrap();
    }
    // Over the per-instance budget: refused at load, with the numbers.
    let too_big = with_core_instances(60);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "--config"])
        .arg({
            let dir = crate::support::tempdir();
            let file = dir.join("big.toml");
            std::fs::write(
                &file,
                format!(
                    "[[tenant]]\nid = \"t\"\nplugins = [{}]\n",
                    toml_path(&too_big)
                ),
            )
            .unwrap();
            file
        })
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    // wasmtime's own pool check or ours, whichever sees it first: both name the numbers.
    assert!(
        text.contains("core") && text.contains("instances") && text.contains("50"),
        "{text}"
    );
}

/// AC11. Before: a token whose unverified `iss` held a newline forged a second log line.
#[tokio::test]
async fn a_newline_in_an_unverified_claim_cannot_forge_a_log_line() {
    let issuer = TestIssuer::start(&["a"]).await;
    let body = format!(
        "[auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\"]\n\
         [[auth.issuer]]\nissuer = \"{}\"\nalgorithms = [\"RS256\"]\n\
         [[tenant]]\nid = \"t\"\nplugins = [{}]\n",
        issuer.url,
        toml_path(&plugin("hello")),
    );
    let gw = BinaryGateway::start(&body, &[("PORTCULLIS_LOG", "info")]).await;
    let forged =
        "https://evil.example\n2026-12-01T00:00:00Z  INFO portcullis: FORGED admin login ok";
    let token = issuer.token(
        "a",
        json!({"iss": forged, "sub": "x", "aud": format!("{}/mcp", gw.base), "exp": now() + 60}),
    );
    let r = Client::modern(&format!("{}/mcp", gw.base))
        .bearer(&token)
        .call_tool("hello.greet", json!({}))
        .await;
    assert_eq!(r.status, 401);
    let log = gw.stop().await;
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("FORGED")).collect();
    assert_eq!(lines.len(), 1, "exactly one line mentions it: {lines:#?}");
    assert!(
        lines[0].contains("request denied") && lines[0].contains("\\n"),
        "{}",
        lines[0]
    );
    assert!(
        !log.lines().any(|l| l.starts_with("2026-12-01T00:00:00Z")),
        "no forged line"
    );
}

/// #20: an MCP Task is its creator's alone — another subject, or the same `sub` vouched for
/// by another issuer, gets the same "not found" for its id from `tasks/get`, `tasks/update`
/// and `tasks/cancel` (and cannot stop it); one caller's unfinished tasks are capped with an
/// error that says so, without touching anyone else's; a task outliving its TTL is gone.
#[tokio::test]
async fn a_task_is_only_its_creators_capped_per_caller_and_gone_after_its_ttl() {
    let (x, y) = two_issuers().await;
    let tasks = "[tasks]\nmax_per_subject = 2\nttl_ms = 5000\ndeadline_ms = 5000";
    let gw = two_issuer_gateway(&x, &y, (tasks, ""), "").await;
    let url = gw.url("/mcp");
    let alice_x = x.token("a", whoami_claims(&x, &url, "alice", "mcp:tools"));
    let alice_y = y.token("b", whoami_claims(&y, &url, "alice", "mcp:tools"));
    let bob_x = x.token("a", whoami_claims(&x, &url, "bob", "mcp:tools"));
    let caps = json!({"io.modelcontextprotocol/clientCapabilities":
        {"extensions": {"io.modelcontextprotocol/tasks": {}}}});
    let start = |token: String| {
        let (url, caps) = (url.clone(), caps.clone());
        async move {
            let params =
                json!({"name": "slow_compute", "arguments": {"seconds": 60}, "_meta": caps});
            Client::modern(&url)
                .bearer(&token)
                .request("tools/call", params)
                .await
        }
    };
    let on_task = |token: String, method: &'static str, id: String| {
        let (url, caps) = (url.clone(), caps.clone());
        async move {
            let mut params = json!({"taskId": id, "_meta": caps});
            if method == "tasks/update" {
                params["inputResponses"] = json!({});
            }
            Client::modern(&url)
                .bearer(&token)
                .request_with(method, params, &[("mcp-name", &id)])
                .await
        }
    };
    let created = start(alice_x.clone()).await;
    assert_eq!(created.result()["resultType"], "task", "{created:?}");
    let id = created.result()["taskId"].as_str().unwrap().to_string();
    for stranger in [&alice_y, &bob_x] {
        for method in ["tasks/get", "tasks/update", "tasks/cancel"] {
            let r = on_task(stranger.clone(), method, id.clone()).await;
            assert_eq!(r.error()["code"], -32602, "{method}: {r:?}");
            assert!(
                r.error()["message"]
                    .as_str()
                    .unwrap()
                    .contains("Invalid task"),
                "{method}: {r:?}"
            );
        }
    }
    let mine = on_task(alice_x.clone(), "tasks/get", id.clone()).await;
    assert_eq!(
        mine.result()["status"],
        "working",
        "strangers cannot cancel it: {mine:?}"
    );
    // The cap: two unfinished tasks per caller.
    let second = start(alice_x.clone()).await;
    assert_eq!(second.result()["resultType"], "task", "{second:?}");
    let third = start(alice_x.clone()).await;
    let message = third.error()["message"].as_str().unwrap().to_string();
    assert!(message.contains("tasks.max_per_subject"), "{third:?}");
    let bobs = start(bob_x.clone()).await;
    assert_eq!(
        bobs.result()["resultType"],
        "task",
        "bob has his own cap: {bobs:?}"
    );
    // The TTL (5 s): then the task is gone, for its owner too.
    tokio::time::sleep(std::time::Duration::from_millis(5500)).await;
    let gone = on_task(alice_x.clone(), "tasks/get", id.clone()).await;
    assert_eq!(gone.error()["code"], -32602, "{gone:?}");
    assert!(
        gw.tenants[0].tasks.is_empty(),
        "every task expired with its TTL"
    );
}
