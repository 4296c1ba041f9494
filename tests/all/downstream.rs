//! The downstream capability's egress guard, against a small in-test API on loopback.

use std::time::Duration;

use axum::routing::get;
use serde_json::{Value, json};

use crate::support::{Client, TestGateway, plugin, toml_path};

/// A downstream API: `/api/*` routes plus `/outside`, which the service must never reach.
async fn downstream_api() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route(
            "/api/echo",
            get(|headers: http::HeaderMap, uri: http::Uri| async move {
                let h: serde_json::Map<String, Value> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").into()))
                    .collect();
                axum::Json(json!({"path": uri.path(), "query": uri.query(), "headers": h}))
            })
            .post(|body: String| async move { body }),
        )
        .route("/api/big", get(|| async { "x".repeat(2 << 20) }))
        .route(
            "/api/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/api/redirect-in",
            get(|| async { axum::response::Redirect::temporary("/api/echo") }),
        )
        .route(
            "/api/redirect-metadata",
            get(|| async {
                axum::response::Redirect::temporary("http://169.254.169.254/latest/meta-data/")
            }),
        )
        .route(
            "/api/redirect-outside",
            get(|| async { axum::response::Redirect::temporary("/outside") }),
        )
        .route("/outside", get(|| async { "SECRET OUTSIDE THE SERVICE" }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

async fn gateway(api: &str, granted: &str) -> TestGateway {
    let body = format!(
        "[sandbox]\nmax_instances = 8\n[auth]\nmode = \"none\"\n[limits]\ndeadline_ms = 20000\n\
         [[tenant]]\nid = \"t\"\nplugins = [{}]\n\
         [[tenant.service]]\nname = \"notes\"\nbase_url = \"{api}/api\"\ntimeout_ms = 1000\nmax_response_bytes = 1048576\n\
         [[tenant.service]]\nname = \"other\"\nbase_url = \"{api}/api\"\n\
         [tenant.plugin.probe]\nservices = [{granted}]\n",
        toml_path(&plugin("probe"))
    );
    TestGateway::start("", &body).await
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
    let api = downstream_api().await;
    let gw = gateway(&api, "\"notes\"").await;
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
    let api = downstream_api().await;
    let gw = gateway(&api, "\"notes\"").await;
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
    let api = downstream_api().await;
    let gw = gateway(&api, "\"notes\"").await;
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
