//! The downstream capability's egress guard, against a small in-test API on loopback.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::peers::{DownstreamApi, exchange_gateway_with};
use crate::support::{Client, TestGateway, plugin, toml_path};

/// Tenant `t` with services `notes` and `other` (both at `api`), of which `probe` is granted
/// `granted` (a TOML list body, e.g. `"notes"`).
async fn gateway_granting(api: &str, granted: &str) -> TestGateway {
    TestGateway::from_toml(&format!(
        r#"
        [sandbox]
        max_instances = 8
        [auth]
        mode = "none"
        [limits]
        deadline_ms = 20000

        [[tenant]]
        id = "t"
        plugins = [{probe}]
        [[tenant.service]]
        name = "notes"
        base_url = "{api}/api"
        timeout_ms = 1000
        max_response_bytes = 1048576
        headers = ["X-Request-Tag"]
        [[tenant.service]]
        name = "other"
        base_url = "{api}/api"
        [tenant.plugin.probe]
        services = [{granted}]
        "#,
        probe = toml_path(&plugin("probe")),
    ))
    .await
}

async fn fetch(gw: &TestGateway, args: Value) -> String {
    let r = Client::modern(&gw.url("/mcp"))
        .call_tool("probe.fetch", args)
        .await;
    assert!(!r.is_error(), "{r:?}");
    r.text()
}

#[tokio::test]
async fn a_granted_service_is_reached_and_plugin_credentials_are_stripped() {
    let api = DownstreamApi::start().await;
    let api = &api.base;
    let gw = gateway_granting(api, "\"notes\"").await;
    let out = fetch(
        &gw,
        json!({"service": "notes", "path": "/echo?limit=5", "headers": [
            ["Authorization", "Bearer plugin-made-this-up"], ["Cookie", "session=1"], ["Proxy-Authorization", "x"],
            ["X-Request-Tag", "kept"], ["Host", "evil.example"]
        ]}),
    )
    .await;
    let body: Value = serde_json::from_str(
        out.strip_prefix("status 200: ")
            .unwrap_or_else(|| panic!("{out}")),
    )
    .unwrap();
    assert_eq!(body["path"], "/api/echo");
    assert_eq!(body["query"], "limit=5");
    let h = &body["headers"];
    assert!(
        h.get("authorization").is_none()
            && h.get("cookie").is_none()
            && h.get("proxy-authorization").is_none(),
        "{h}"
    );
    assert_eq!(h["x-request-tag"], "kept");
    assert!(h["host"].as_str().unwrap().starts_with("127.0.0.1"), "{h}");
    // POST bodies pass through.
    assert_eq!(
        fetch(
            &gw,
            json!({"service": "notes", "path": "/echo", "method": "POST", "body": "hello"})
        )
        .await,
        "status 200: hello"
    );
    // Redirects within the service are followed.
    let followed = fetch(&gw, json!({"service": "notes", "path": "/redirect-in"})).await;
    assert!(
        followed.starts_with("status 200: ") && followed.contains("\"path\":\"/api/echo\""),
        "{followed}"
    );
}

#[tokio::test]
async fn undeclared_and_ungranted_services_are_refused() {
    let api = DownstreamApi::start().await;
    let api = &api.base;
    let gw = gateway_granting(api, "\"notes\"").await;
    let out = fetch(&gw, json!({"service": "nope"})).await;
    assert!(out.starts_with("error: Error::UnknownService("), "{out}");
    let out = fetch(&gw, json!({"service": "other", "path": "/echo"})).await;
    assert!(
        out.starts_with("error: Error::NotGranted("),
        "deny by default: {out}"
    );
}

#[tokio::test]
async fn escapes_redirects_size_and_time_are_refused() {
    let api = DownstreamApi::start().await;
    let api = &api.base;
    let gw = gateway_granting(api, "\"notes\"").await;
    for path in [
        "/../outside",
        "/%2e%2e/outside",
        "/..%2foutside",
        "//evil.example/x",
        "/@evil.example/x",
        "http://evil.example/",
        "/a\\..\\outside",
    ] {
        let out = fetch(&gw, json!({"service": "notes", "path": path})).await;
        assert!(out.starts_with("error: Error::Blocked("), "{path}: {out}");
        assert!(!out.contains("SECRET"), "{path}");
    }
    for path in ["/redirect-metadata", "/redirect-outside"] {
        let out = fetch(&gw, json!({"service": "notes", "path": path})).await;
        assert!(
            out.starts_with("error: Error::Blocked(") && out.contains("leaves the service"),
            "{path}: {out}"
        );
    }
    let out = fetch(&gw, json!({"service": "notes", "path": "/big"})).await;
    assert_eq!(out, "error: Error::TooLarge");
    let started = std::time::Instant::now();
    let out = fetch(&gw, json!({"service": "notes", "path": "/slow"})).await;
    assert_eq!(out, "error: Error::Timeout");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the service's 1 s timeout applies"
    );
}

/// The real binary with its dev AS, a token-exchange service `notes` at `api` granted to the
/// probe, and a user token for alice. `exchange_issuer` overrides where exchanges happen.
async fn exchange_gateway(
    api: &str,
    exchange_issuer: Option<&str>,
) -> (crate::support::BinaryGateway, String) {
    exchange_gateway_with(api, exchange_issuer, "", &[]).await
}

#[tokio::test]
async fn the_downstream_api_gets_an_exchanged_token_acting_for_the_user_never_the_inbound_one() {
    let downstream = DownstreamApi::start().await;
    let api = &downstream.base;
    let (gw, user_token) = exchange_gateway(api, None).await;
    let call = || {
        let (url, token, downstream) =
            (format!("{}/mcp", gw.base), user_token.clone(), &downstream);
        async move {
            let r = Client::modern(&url)
                .bearer(&token)
                .call_tool("probe.fetch", json!({"service": "notes", "path": "/echo"}))
                .await;
            let text = r.text();
            assert!(text.starts_with("status 200: "), "{text}");
            downstream
                .authorizations()
                .last()
                .cloned()
                .flatten()
                .expect("the API received a credential")
        }
    };
    let first = call().await;
    let exchanged = first.strip_prefix("Bearer ").unwrap();
    assert_ne!(
        exchanged, user_token,
        "the inbound token never reaches the downstream API"
    );
    let claims = crate::support::jwt_part(exchanged, 1);
    assert_eq!(claims["aud"], format!("{api}/api"), "audience: the API");
    assert_eq!(claims["sub"], "alice", "subject: the user");
    assert_eq!(claims["act"]["sub"], "gateway", "actor: the gateway");
    // Within the token's lifetime the exchanged token is reused, not exchanged again.
    assert_eq!(call().await, first);
    let log = gw.stop().await;
    assert!(
        !log.contains(&user_token) && !log.contains(exchanged) && !log.contains("exchange-secret"),
        "no token or secret in the log"
    );
}

/// An `[exchange]` client at a server that issues no token the tenant accepts: the
/// gateway refuses to start rather than send callers' tokens there.
#[test]
fn an_exchange_server_that_issues_no_accepted_token_is_refused_at_start() {
    let text = r#"
[auth]
mode = "oauth"
scopes_supported = ["mcp:tools"]
[[auth.issuer]]
issuer = "https://login.example"
[exchange]
client_id = "gateway"
client_secret_env = "GATEWAY_SECRET"
issuer = "https://other-as.example"
[[tenant]]
id = "t"
[[tenant.service]]
name = "notes"
base_url = "https://notes.example/api"
credential = "token-exchange"
audience = "https://notes.example/api"
"#;
    let parse = |text: &str| {
        portcullis::config::Config::parse(
            text,
            std::path::Path::new("x.toml"),
            std::path::Path::new("."),
        )
    };
    let e = parse(text).unwrap_err();
    assert_eq!(e.key, "tenant[0].service[0].credential", "{e}");
    assert!(
        e.problem.contains("https://login.example"),
        "names the issuer to configure: {e}"
    );
    // Client credentials from that server are fine: no caller's token is involved.
    let cc = text.replace("\"token-exchange\"", "\"client-credentials\"");
    assert!(parse(&cc).is_ok());
}

/// #16 AC3, as the attack: path tricks a Tomcat/Jetty/Spring backend or a double-decoding
/// proxy would read as leaving the prefix; a plugin's own copy of the service's credential
/// header and the headers a proxy in front of the service might trust; and an API that
/// echoes its request headers (plain or encoded), which would hand the plugin the credential.
#[tokio::test]
async fn plugins_cannot_bypass_the_guard_forge_trusted_headers_or_read_the_credential() {
    let api = DownstreamApi::start().await;
    let body = format!(
        r#"
        [auth]
        mode = "none"

        [[tenant]]
        id = "t"
        plugins = [{probe}]
        [[tenant.service]]
        name = "keyed"
        base_url = "{api}/api"
        credential = "static"
        header_name = "x-api-key"
        header_env = "KEYED_SECRET"
        headers = ["x-plugin"]
        [[tenant.service]]
        name = "bearer"
        base_url = "{api}/api"
        credential = "static"
        header_env = "BEARER_SECRET"
        [tenant.plugin.probe]
        services = ["keyed", "bearer"]
        "#,
        api = api.base,
        probe = toml_path(&plugin("probe")),
    );
    let env = [
        ("KEYED_SECRET", "key-0123456789abcdef"),
        ("BEARER_SECRET", "Bearer tok-0123456789abcdef"),
    ];
    let gw = crate::support::BinaryGateway::start(&body, &env).await;
    let url = format!("{}/mcp", gw.base);
    let fetch = |args: Value| {
        let url = url.clone();
        async move {
            Client::modern(&url)
                .call_tool("probe.fetch", args)
                .await
                .text()
        }
    };
    for path in [
        "/a/..;/outside",
        "/..;/outside",
        "/..;jsessionid=x/outside",
        "/.;/echo",
        "/%252e%252e/outside",
        "/%252e%252e%252foutside",
        "/%c0%ae%c0%ae/outside",
        "/%e0%80%ae./outside",
    ] {
        let out = fetch(json!({"service": "keyed", "path": path})).await;
        assert!(out.starts_with("error: Error::Blocked("), "{path}: {out}");
    }

    let forged = [
        ["X-Api-Key", "forged"],
        ["X-Forwarded-For", "10.0.0.1"],
        ["X-Forwarded-Host", "admin.internal"],
        ["Forwarded", "for=10.0.0.1;host=admin.internal"],
        ["X-Real-IP", "10.0.0.1"],
        ["X-Original-URL", "/outside"],
        ["X-Rewrite-URL", "/outside"],
        ["X-HTTP-Method-Override", "DELETE"],
        // #28: eight more a deny-list missed; an allow-list drops them all.
        ["Fastly-Client-IP", "10.0.0.1"],
        ["X-Forwarded", "for=10.0.0.1"],
        ["Forwarded-For", "10.0.0.1"],
        ["X-AppEngine-User-IP", "10.0.0.1"],
        ["X-Envoy-External-Address", "10.0.0.1"],
        ["X-Original-Host", "admin.internal"],
        ["X-ProxyUser-Ip", "10.0.0.1"],
        ["Client-IP", "10.0.0.1"],
        ["X-Unlisted", "dropped"],
        ["Accept-Encoding", "gzip"],
        ["X-Plugin", "kept"],
        ["Content-Type", "application/json"],
    ];
    let out = fetch(json!({"service": "keyed", "path": "/hello", "headers": forged})).await;
    assert_eq!(out, "status 200: hello from the API");
    let seen = api.last_headers();
    let keys: Vec<&str> = seen
        .get_all("x-api-key")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["key-0123456789abcdef"],
        "only the gateway's credential"
    );
    for [name, _] in &forged[1..17] {
        assert!(
            seen.get(*name).is_none(),
            "{name} reached the API: {seen:?}"
        );
    }
    assert_eq!(
        seen["accept-encoding"], "identity",
        "the gateway asks for bodies it can read"
    );
    assert_eq!(seen["x-plugin"], "kept", "headers the operator listed pass");
    assert_eq!(
        seen["content-type"], "application/json",
        "and the common ones"
    );

    for (service, path) in [
        ("keyed", "/echo-all"),
        ("bearer", "/echo-all"),
        ("bearer", "/echo-encoded"),
        // #28: encodings the tripwire did not read.
        ("keyed", "/echo-hex"),
        ("bearer", "/echo-hex"),
        ("keyed", "/echo-unaligned"),
        ("bearer", "/echo-unaligned"),
    ] {
        let out = fetch(json!({"service": service, "path": path})).await;
        assert!(
            out.starts_with("error: Error::Blocked(") && out.contains("repeats the credential"),
            "{service}{path}: {out}"
        );
        assert!(!out.contains("0123456789abcdef"), "{service}{path}: {out}");
    }
    // #28: a body the gateway cannot read (it asked for `identity`) is not handed over.
    let out = fetch(json!({"service": "keyed", "path": "/gzip-always",
                           "headers": [["Accept-Encoding", "gzip"]]}))
    .await;
    assert!(
        out.starts_with("error: Error::Blocked(") && out.contains("encoded body"),
        "{out}"
    );
    // #28: Unicode dots a normalising backend reads as `..`, and same-origin redirects to
    // paths the plugin itself could not ask for.
    for path in [
        "/\u{FF0E}\u{FF0E}/outside",
        "/%EF%BC%8E%EF%BC%8E/outside",
        "/\u{2025}/outside",
        "/%E2%80%A5/outside",
        "/a\u{FF0F}..\u{FF0F}outside",
        "/redirect-dotsemi",
        "/redirect-double-encoded",
    ] {
        let out = fetch(json!({"service": "keyed", "path": path})).await;
        assert!(out.starts_with("error: Error::Blocked("), "{path}: {out}");
    }
    let paths = api.paths();
    assert!(
        paths
            .iter()
            .all(|p| !p.contains("outside") && !p.contains("..;") && !p.contains("%25")),
        "the API received none of them: {paths:?}"
    );
    let log = gw.stop().await;
    assert!(log.contains("withheld a response that repeats the credential"));
    assert!(log.contains("withheld a response encoded although the gateway asked for identity"));
    assert!(
        log.contains("is not a plain path under the service"),
        "redirects refused are logged"
    );
    assert!(
        !log.contains("0123456789abcdef"),
        "no credential in the log"
    );
}
