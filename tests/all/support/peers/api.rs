//! A downstream API on loopback, and a gateway whose plugin reaches it through token exchange.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::routing::get;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::support::{plugin, toml_path};

/// A downstream API on loopback: `/api/*` routes plus `/outside`, which the service must never
/// reach. It records the `Authorization` header of every request under `/api`.
pub struct DownstreamApi {
    pub base: String,
    seen: Arc<Mutex<Vec<Option<String>>>>,
    /// The path and query of every request, under `/api` or not.
    paths: Arc<Mutex<Vec<String>>>,
    headers: Arc<Mutex<Vec<http::HeaderMap>>>,
    held: Arc<Held>,
}

/// Requests to `/api/hold` in flight now, and the most seen at once.
#[derive(Default)]
struct Held {
    now: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
}

impl DownstreamApi {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let record = seen.clone();
        let headers: Arc<Mutex<Vec<http::HeaderMap>>> = Arc::default();
        let record_headers = headers.clone();
        let paths: Arc<Mutex<Vec<String>>> = Arc::default();
        let record_paths = paths.clone();
        let rejected_once = Arc::new(AtomicBool::new(false));
        let held: Arc<Held> = Arc::default();
        let hold = held.clone();
        // What it received, without the credential (tests read that from `authorizations`).
        let echo = |headers: http::HeaderMap, uri: http::Uri, all: bool| {
            let h: serde_json::Map<String, Value> = headers
                .iter()
                .filter(|(k, _)| all || *k != http::header::AUTHORIZATION)
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").into()))
                .collect();
            axum::Json(json!({"path": uri.path(), "query": uri.query(), "headers": h}))
        };
        let app = axum::Router::new()
            .route(
                "/api/echo",
                get(move |headers, uri| async move { echo(headers, uri, false) })
                    .post(|body: String| async move { body }),
            )
            // Like httpbin's `/headers`: every request header, the credential included.
            .route(
                "/api/echo-all",
                get(move |headers, uri| async move { echo(headers, uri, true) }),
            )
            // The credential again, base64-encoded, in a response header.
            .route(
                "/api/echo-encoded",
                get(|headers: http::HeaderMap| async move {
                    use base64::Engine as _;
                    let auth = headers
                        .get(http::header::AUTHORIZATION)
                        .map(|v| v.as_bytes().to_vec())
                        .unwrap_or_default();
                    let encoded = base64::engine::general_purpose::STANDARD.encode(auth);
                    ([("x-debug", encoded)], "ok")
                }),
            )
            // The credential again, hex-encoded, and base64-encoded after two other bytes (so
            // its encoding does not start on a 3-byte boundary).
            .route(
                "/api/echo-hex",
                get(|headers: http::HeaderMap| async move { hex::encode(credential(&headers)) }),
            )
            .route(
                "/api/echo-unaligned",
                get(|headers: http::HeaderMap| async move {
                    use base64::Engine as _;
                    let mut shifted = b"{\"".to_vec();
                    shifted.extend(credential(&headers));
                    base64::engine::general_purpose::STANDARD.encode(shifted)
                }),
            )
            // An encoded body whatever the request asked for (here: the credential labelled
            // gzip, which the gateway cannot read through).
            .route(
                "/api/gzip-always",
                get(|headers: http::HeaderMap| async move {
                    ([("content-encoding", "gzip")], credential(&headers))
                }),
            )
            .route(
                "/api/redirect-dotsemi",
                get(|| async { axum::response::Redirect::temporary("/api/a/..;/outside") }),
            )
            .route(
                "/api/redirect-double-encoded",
                get(|| async { axum::response::Redirect::temporary("/api/%252e%252e/outside") }),
            )
            .route(
                "/api/hello",
                get(|| async { ([("x-api", "notes")], "hello from the API") }),
            )
            .route("/api/big", get(|| async { "x".repeat(2 << 20) }))
            // A document written (the words plugins' `publish`): created, its text echoed;
            // other documents are not there.
            .route(
                "/api/{name}",
                axum::routing::put(|body: String| async move { (http::StatusCode::CREATED, body) })
                    .get(|| async { http::StatusCode::NOT_FOUND }),
            )
            // Held for two seconds: how many callers are in flight at once (`peak_held`).
            .route(
                "/api/hold",
                get(move || async move {
                    let now = hold.now.fetch_add(1, Ordering::SeqCst) + 1;
                    hold.peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    hold.now.fetch_sub(1, Ordering::SeqCst);
                    "held"
                }),
            )
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
            // Refuses the first request it ever gets, as an API that revoked a token would.
            .route(
                "/api/reject-first",
                get(move || async move {
                    if rejected_once.swap(true, Ordering::SeqCst) {
                        (http::StatusCode::OK, "accepted")
                    } else {
                        (http::StatusCode::UNAUTHORIZED, "token revoked")
                    }
                }),
            )
            .route(
                "/api/always-401",
                get(|| async { (http::StatusCode::UNAUTHORIZED, "never") }),
            )
            .route("/outside", get(|| async { "SECRET OUTSIDE THE SERVICE" }))
            .layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    let record = record.clone();
                    let record_headers = record_headers.clone();
                    record_paths.lock().push(
                        req.uri()
                            .path_and_query()
                            .map_or_else(String::new, |p| p.to_string()),
                    );
                    async move {
                        if req.uri().path().starts_with("/api/") {
                            record_headers.lock().push(req.headers().clone());
                            let auth = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string);
                            record.lock().push(auth);
                        }
                        next.run(req).await
                    }
                },
            ));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base,
            seen,
            paths,
            headers,
            held,
        }
    }

    /// The path and query of every request so far, in order.
    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().clone()
    }

    /// The most requests to `/api/hold` that were in flight at once.
    pub fn peak_held(&self) -> usize {
        self.held.peak.load(Ordering::SeqCst)
    }

    /// Every header of the last request under `/api`.
    pub fn last_headers(&self) -> http::HeaderMap {
        self.headers.lock().last().cloned().unwrap_or_default()
    }

    /// The `Authorization` headers of every request so far, in order.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.seen.lock().clone()
    }

    /// The bearer token request `index` under `/api` carried, without `Bearer `.
    pub fn bearer(&self, index: usize) -> String {
        self.authorizations()[index]
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or_else(|| panic!("request {index} carried no bearer token"))
            .to_string()
    }
}

/// The credential a request carried: its `x-api-key`, else its `Authorization`.
fn credential(headers: &http::HeaderMap) -> Vec<u8> {
    headers
        .get("x-api-key")
        .or_else(|| headers.get(http::header::AUTHORIZATION))
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default()
}

/// A gateway (the binary, OAuth on, its dev AS as issuer and exchange server) whose `probe`
/// plugin may call the API at `api` as service `notes` with an exchanged token, plus a user
/// token for alice; `exchange_issuer` overrides where exchanges happen, `extra` is appended
/// to the configuration and `env` given to the process. and `env` for the process.
pub async fn exchange_gateway_with(
    api: &str,
    exchange_issuer: Option<&str>,
    extra: &str,
    env: &[(&str, &str)],
) -> (crate::support::BinaryGateway, String) {
    let dir = crate::support::tempdir();
    let issuer = exchange_issuer
        .map(|i| format!("issuer = \"{i}\"\n"))
        .unwrap_or_default();
    let body = format!(
        "[sandbox]\nmax_instances = 8\n[auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\"]\n\
         [exchange]\nclient_id = \"gateway\"\nclient_secret_env = \"GATEWAY_SECRET\"\n{issuer}\
         [dev_as]\nenabled = true\nkey_file = {}\n\
         [[dev_as.clients]]\nclient_id = \"gateway\"\nclient_secret_env = \"GATEWAY_SECRET\"\n\
         grant_types = [\"urn:ietf:params:oauth:grant-type:token-exchange\"]\n\
         [[tenant]]\nid = \"t\"\nplugins = [{}]\n\
         [[tenant.service]]\nname = \"notes\"\nbase_url = \"{api}/api\"\ncredential = \"token-exchange\"\naudience = \"{api}/api\"\n\
         [tenant.plugin.probe]\nservices = [\"notes\"]\n{extra}",
        toml_path(&dir.join("dev-as.key")),
        toml_path(&plugin("probe"))
    );
    let env: Vec<(&str, &str)> = [("GATEWAY_SECRET", "exchange-secret")]
        .into_iter()
        .chain(env.iter().copied())
        .collect();
    let gw = crate::support::BinaryGateway::start(&body, &env).await;
    let token = crate::support::mint_with_cli(&gw.config, "alice", "mcp:tools").await;
    (gw, token)
}
