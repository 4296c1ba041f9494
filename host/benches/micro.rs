//! Micro-benchmarks of the per-request costs the gateway adds (criterion):
//!
//! * `sandbox/echo_call`: one `tools/call` into the `echo` plugin — a fresh store and instance
//!   from the pool, the call, the drop, and the hop to the plugin runtime and back;
//! * `sandbox/spawn_hop`: that hop alone (a task on another runtime, awaited), to separate it
//!   from wasmtime's share;
//! * `jwt/*`: authenticating a request: validated-token cache hit, RS256 and ES256 without
//!   the cache (signature, claims, scope expansion), and a DPoP request with a cached bound
//!   token (`dpop_cache_hit`: the proof checked and spent) beside its floor, one ES256
//!   signature verified alone (`es256_signature_alone`);
//! * `exchange/cache_hit`: a plugin's downstream call finding the caller's exchanged token
//!   (RFC 8693) in the cache — the cost every downstream request pays once the first
//!   exchange for that user and service is done;
//! * `jsonrpc/parse`: parsing a `tools/call` body as the front guard does;
//! * `request_path/tools_call_jwt_cached`: the whole in-process request path, bytes in to
//!   bytes out (host guard, JWT cache hit, front, direct path, sandbox): the hot path's
//!   regression guard; `…_through_rmcp` is the same request routed through rmcp's stateless
//!   service (its `Accept` spelled with weights), the path every request took before;
//! * `plugin_call/{rust,python,javascript}`: one call of the same word-count tool written with
//!   each guest SDK (`hello`'s `hello.greet` for Rust; `py-words`, `js-words`): what a plugin's
//!   language costs per call (the interpreter's start-up in its fresh instance included);
//! * `schema/check_arguments`: the host's check of a call's arguments against the tool's
//!   compiled `inputSchema`, paid by every `tools/call` before the plugin runs.
//!
//! Run: `cargo bench -p portcullis --bench micro` (after `cargo xtask build-plugins`);
//! `cargo xtask bench` runs it with `--quick` and records the medians.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::signature::KeyPair as _;
use criterion::{Criterion, criterion_group};
use portcullis::auth::{KeyFetch, ResourceServer, TenantAuth};
use portcullis::config::Config;
use portcullis::downstream::{Grant, OAuthClients, TokenRequest};
use portcullis::sandbox::{
    BoxFuture, CallEnv, CallLabels, CallObserver, Limits, NoEgress, Sandbox, SandboxConfig, Share,
    wit,
};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Quiet;

impl CallObserver for Quiet {
    fn log(&self, _: wit::LogLevel, _: Option<String>, _: String) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn progress(&self, _: f64, _: Option<f64>, _: Option<String>) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn lists_changed(&self, _: wit::ListKinds) {}
    fn resource_updated(&self, _: String) {}
}

fn context() -> wit::CallContext {
    wit::CallContext {
        tenant: "bench".into(),
        issuer: Some("https://as.bench".into()),
        subject: Some("bench".into()),
        client_id: None,
        scopes: vec!["mcp:tools".into()],
        claims: Vec::new(),
        request_id: "1".into(),
        trace_parent: None,
        client: wit::ClientFeatures::empty(),
        config: Vec::new(),
    }
}

/// `target/plugins/{name}.wasm`, compiled.
fn compiled(sandbox: &Sandbox, name: &str) -> portcullis::sandbox::PluginCode {
    let path = root().join(format!("target/plugins/{name}.wasm"));
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run cargo xtask build-plugins)", path.display()));
    sandbox.compile(&path, &bytes).unwrap()
}

/// A call environment for plugin `name`: default limits, no egress, a roomy share.
fn env(name: &str) -> CallEnv {
    CallEnv {
        plugin: Arc::from(name),
        limits: Limits::default(),
        cancel: CancellationToken::new(),
        observer: Arc::new(Quiet),
        egress: Arc::new(NoEgress),
        concurrency: Arc::new(Semaphore::new(64)),
        share: Share {
            permits: Arc::new(Semaphore::new(64)),
            size: 64,
        },
        labels: CallLabels {
            owner: Arc::from("bench"),
            version: Arc::from("bench"),
            parent: tracing::Span::none(),
        },
    }
}

fn sandbox(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sandbox = Sandbox::new(&SandboxConfig::default()).unwrap();
    let code = compiled(&sandbox, "echo");
    let env = env("echo");
    let mut g = c.benchmark_group("sandbox");
    g.bench_function("echo_call", |b| {
        b.to_async(&rt).iter(|| async {
            let out = code
                .call_tool(
                    &env,
                    context(),
                    "echo".into(),
                    r#"{"text":"hello"}"#.into(),
                    None,
                )
                .await
                .unwrap();
            assert!(matches!(out, Ok(wit::CallOutcome::Done(_))));
        })
    });
    let other = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let handle = other.handle().clone();
    g.bench_function("spawn_hop", |b| {
        b.to_async(&rt)
            .iter(|| async { handle.spawn(async { 1u8 }).await.unwrap() })
    });
    g.finish();
}

/// A gateway configuration trusting the RS256 test issuer (served here) and, for ES256, a
/// development authorization server (served here too); tokens from both for `resource`.
/// `tenant` is appended to the tenant's section.
struct Issuers {
    resource: String,
    rs256: String,
    es256: String,
    config: Config,
    /// The development AS that minted `es256`.
    dev: std::sync::Arc<portcullis::dev_as::DevAs>,
}

async fn issuers(tenant: &str) -> Issuers {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let fixtures = root().join("tests/fixtures");
    let jwk: Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("test-issuer-a.jwk.json")).unwrap())
            .unwrap();
    let dir = std::env::temp_dir().join(format!("portcullis-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!(
        "[server]\nlisten = \"{addr}\"\n[auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\"]\n\
         [[auth.issuer]]\nissuer = \"{base}/rs\"\nalgorithms = [\"RS256\"]\n\
         [[auth.issuer]]\nissuer = \"{base}/dev-as\"\nalgorithms = [\"ES256\"]\n\
         [exchange]\nclient_id = \"gateway\"\nclient_secret_env = \"PORTCULLIS_BENCH_SECRET\"\nissuer = \"{base}/dev-as\"\n\
         [dev_as]\nenabled = true\nkey_file = \"dev-as.key\"\nexchange_audiences = [\"{EXCHANGE_AUDIENCE}\"]\n\
         [[dev_as.clients]]\nclient_id = \"gateway\"\nclient_secret_env = \"PORTCULLIS_BENCH_SECRET\"\n\
         grant_types = [\"urn:ietf:params:oauth:grant-type:token-exchange\"]\n\
         [[tenant]]\nid = \"bench\"\n{tenant}"
    );
    let config = Config::parse(&text, &dir.join("bench.toml"), &dir).unwrap();
    let dev = portcullis::dev_as::DevAs::new(
        &config,
        std::sync::Arc::new(Default::default),
        std::sync::Arc::new(Vec::new),
    )
    .unwrap();
    let rs_meta = json!({"issuer": format!("{base}/rs"), "jwks_uri": format!("{base}/rs/jwks"),
        "authorization_endpoint": format!("{base}/rs/authorize"), "token_endpoint": format!("{base}/rs/token"),
        "response_types_supported": ["code"]});
    let jwks = json!({"keys": [jwk]});
    let app = dev
        .router()
        .route(
            "/.well-known/oauth-authorization-server/rs",
            axum::routing::get(move || async move { axum::Json(rs_meta) }),
        )
        .route(
            "/rs/jwks",
            axum::routing::get(move || async move { axum::Json(jwks) }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let resource = format!("{base}/mcp");
    let now = jsonwebtoken::get_current_timestamp();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("test-key-a".into());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(
        &std::fs::read(fixtures.join("test-issuer-a.pem")).unwrap(),
    )
    .unwrap();
    let rs256 = jsonwebtoken::encode(
        &header,
        &json!({"iss": format!("{base}/rs"), "sub": "bench", "aud": resource, "iat": now, "exp": now + 3600, "scope": "mcp:tools"}),
        &key,
    )
    .unwrap();
    let es256 = dev.mint("bench", "bench", &resource, "mcp:tools").unwrap();
    Issuers {
        dev,
        resource,
        rs256,
        es256,
        config,
    }
}

fn request_parts(token: &str) -> http::request::Parts {
    http::Request::post("/mcp")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn jwt(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let issuers = rt.block_on(issuers(""));
    let auth = |cache: usize| {
        let mut a = issuers.config.auth.clone();
        a.token_cache_entries = cache;
        // Every proof a benchmark sends is spent: room for all of them.
        a.dpop.replay_cache_entries = 50_000_000;
        let rs = rt
            .block_on(ResourceServer::start(
                &a,
                &issuers.config.auth.issuers,
                KeyFetch::Background,
                None,
            ))
            .unwrap();
        TenantAuth::new(
            Arc::from("bench"),
            issuers.resource.clone(),
            &issuers.config.tenants[0],
            &a,
            Some(rs),
        )
    };
    let (cached, uncached) = (auth(1000), auth(0));
    // First use fetches the keys.
    for t in [&issuers.rs256, &issuers.es256] {
        rt.block_on(cached.authenticate(&request_parts(t))).unwrap();
        rt.block_on(uncached.authenticate(&request_parts(t)))
            .unwrap();
    }
    let mut g = c.benchmark_group("jwt");
    let parts = request_parts(&issuers.rs256);
    g.bench_function("cache_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { cached.authenticate(&parts).await.unwrap() })
    });
    g.bench_function("rs256_uncached", |b| {
        b.to_async(&rt)
            .iter(|| async { uncached.authenticate(&parts).await.unwrap() })
    });
    let parts = request_parts(&issuers.es256);
    g.bench_function("es256_uncached", |b| {
        b.to_async(&rt)
            .iter(|| async { uncached.authenticate(&parts).await.unwrap() })
    });
    // DPoP (RFC 9449): a cached, DPoP-bound ES256 token with a fresh ES256 proof each time
    // (made outside the measurement): the proof's signature and claims, `ath`, the key
    // binding, and spending its `jti` — what a DPoP request costs beyond `cache_hit`.
    let key = ProofKey::new();
    let bound = issuers
        .dev
        .mint_bound(
            "bench",
            "bench",
            &issuers.resource,
            "mcp:tools",
            Some(&key.jkt),
        )
        .unwrap();
    let dpop = auth(1000);
    let proof_parts = |proof: String| {
        http::Request::post("/mcp")
            .header("authorization", format!("DPoP {bound}"))
            .header("dpop", proof)
            .body(())
            .unwrap()
            .into_parts()
            .0
    };
    let fresh = || proof_parts(key.proof(&issuers.resource, &bound));
    rt.block_on(async {
        dpop.authenticate(&fresh())
            .await
            .unwrap()
            .spend()
            .await
            .unwrap()
    });
    let dpop = &dpop;
    // The floor under it: one ES256 signature verified, nothing else (aws-lc, as above).
    let signed = key.proof(&issuers.resource, &bound);
    let (input, signature) = signed.rsplit_once('.').unwrap();
    let signature = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .unwrap()
    };
    let public = key.pair.public_key().as_ref().to_vec();
    g.bench_function("es256_signature_alone", |b| {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
        b.iter(|| {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public)
                .verify(input.as_bytes(), &signature)
                .unwrap()
        })
    });
    g.bench_function("dpop_cache_hit", |b| {
        b.to_async(&rt).iter_batched(
            fresh,
            |parts| async move {
                let mut a = dpop.authenticate(&parts).await.unwrap();
                a.spend().await.unwrap();
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// A client's DPoP key (P-256) and the proofs it signs, for the DPoP benchmark.
struct ProofKey {
    pair: aws_lc_rs::signature::EcdsaKeyPair,
    jwk: Value,
    jkt: String,
}

impl ProofKey {
    fn new() -> Self {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let doc = EcdsaKeyPair::generate_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let point = pair.public_key().as_ref().to_vec();
        let (x, y) = (b64.encode(&point[1..33]), b64.encode(&point[33..65]));
        let thumb = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let jkt = b64.encode(<sha2::Sha256 as sha2::Digest>::digest(thumb));
        Self {
            pair,
            jwk: json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
            jkt,
        }
    }

    /// A fresh proof of `POST htu` for `token`.
    fn proof(&self, htu: &str, token: &str) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
        let claims = json!({"jti": format!("{:032x}", rand::random::<u128>()), "htm": "POST",
            "htu": htu, "iat": jsonwebtoken::get_current_timestamp(),
            "ath": b64.encode(<sha2::Sha256 as sha2::Digest>::digest(token))});
        let signed = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&aws_lc_rs::rand::SystemRandom::new(), signed.as_bytes())
            .unwrap();
        format!("{signed}.{}", b64.encode(signature.as_ref()))
    }
}

/// The audience the exchange benchmark asks tokens for.
const EXCHANGE_AUDIENCE: &str = "https://api.bench.test/";

fn exchange(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let issuers = rt.block_on(issuers(""));
    let rs = rt
        .block_on(ResourceServer::start(
            &issuers.config.auth,
            &issuers.config.auth.issuers,
            KeyFetch::Background,
            None,
        ))
        .unwrap();
    let auth = TenantAuth::new(
        Arc::from("bench"),
        issuers.resource.clone(),
        &issuers.config.tenants[0],
        &issuers.config.auth,
        Some(rs),
    );
    let subject = rt
        .block_on(auth.authenticate(&request_parts(&issuers.es256)))
        .unwrap()
        .secret
        .expect("an authenticated caller's token");
    let clients = OAuthClients::from_config(&issuers.config, None).unwrap();
    let client = clients
        .at(subject.issuer())
        .expect("[exchange] is configured at the token's issuer");
    let scopes = vec!["mcp:tools".to_string()];
    let request = TokenRequest {
        tenant: "bench",
        service: "api",
        audience: EXCHANGE_AUDIENCE,
        scopes: &scopes,
        grant: Grant::Exchange(&subject),
    };
    // The first call exchanges at the dev AS; every later one is a cache hit.
    let first = rt.block_on(client.token(&request)).unwrap();
    assert_ne!(
        first,
        subject.expose(),
        "an exchanged token, not the caller's"
    );
    c.bench_function("exchange/cache_hit", |b| {
        b.to_async(&rt).iter(|| async {
            let t = client.token(&request).await.unwrap();
            assert_eq!(t.len(), first.len());
        })
    });
}

fn jsonrpc(c: &mut Criterion) {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "echo", "arguments": {"text": "hello-7"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string()
    .into_bytes();
    c.bench_function("jsonrpc/parse", |b| {
        b.iter(|| {
            let v: Value = serde_json::from_slice(std::hint::black_box(&body)).unwrap();
            std::hint::black_box(v);
        })
    });
}

/// The same small tool in each guest SDK's language, called as the gateway calls it.
fn plugin_call(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sandbox = Sandbox::new(&SandboxConfig::default()).unwrap();
    let mut g = c.benchmark_group("plugin_call");
    for (language, plugin, tool, arguments) in [
        ("rust", "hello", "hello.greet", r#"{"name":"bench"}"#),
        (
            "python",
            "py-words",
            "pywords.count",
            r#"{"text":"a bb ccc dddd"}"#,
        ),
        (
            "javascript",
            "js-words",
            "jswords.count",
            r#"{"text":"a bb ccc dddd"}"#,
        ),
    ] {
        // Compiled on first use: criterion calls the closure only for benchmarks a filter
        // selects (a Python or JavaScript compile takes ~10 s), and more than once for those.
        let code = std::cell::OnceCell::new();
        let env = env(plugin);
        g.bench_function(language, |b| {
            let code = code.get_or_init(|| compiled(&sandbox, plugin));
            b.to_async(&rt).iter(|| async {
                let out = code
                    .call_tool(&env, context(), tool.into(), arguments.into(), None)
                    .await
                    .unwrap();
                assert!(matches!(out, Ok(wit::CallOutcome::Done(_))), "{out:?}");
            })
        });
    }
    g.finish();
}

/// The host's argument check, against the Python example's derived schema.
fn schema(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sandbox = Sandbox::new(&SandboxConfig::default()).unwrap();
    // On first use, as in `plugin_call`.
    let schemas = std::cell::OnceCell::new();
    let arguments = json!({"text": "the quick brown fox jumps over the lazy dog", "min_length": 2});
    c.bench_function("schema/check_arguments", |b| {
        let schemas = schemas.get_or_init(|| {
            let code = compiled(&sandbox, "py-words");
            let tools = rt.block_on(code.list_tools(&env("py-words"))).unwrap();
            let tool = tools.iter().find(|t| t.name == "pywords.count").unwrap();
            portcullis::plugins::schema::ToolSchemas::compile(tool).unwrap()
        });
        b.iter(|| {
            schemas
                .check_arguments(std::hint::black_box(&arguments))
                .unwrap()
        })
    });
}

/// The whole in-process request path, bytes in to bytes out: a 2026-07-28 `tools/call echo`
/// with an RS256 token (a validated-token cache hit) through the router — host guard, auth,
/// the front, MCP, a fresh sandbox instance — and the response body collected. The
/// regression guard for the hot path; compare it with `sandbox/echo_call` and `jwt/cache_hit`.
/// One stateless (2026-07-28) `tools/call` of the echo plugin through `router`, `accept`
/// choosing the path: the status, whether the answer was SSE, and its body.
async fn stateless_echo(
    router: &axum::Router,
    host: &str,
    authorization: &str,
    body: &bytes::Bytes,
    accept: &str,
) -> (http::StatusCode, bool, bytes::Bytes) {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let request = http::Request::post("/mcp")
        .header("host", host)
        .header("content-type", "application/json")
        .header("accept", accept)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .header("authorization", authorization)
        .body(axum::body::Body::from(body.clone()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let sse = response.headers()["content-type"] == "text/event-stream";
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, sse, bytes)
}

fn request_path(c: &mut Criterion) {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let echo = root().join("target/plugins/echo.wasm");
    let issuers = rt.block_on(issuers(&format!(
        "plugins = [{:?}]\n",
        echo.display().to_string()
    )));
    let gateway = rt
        .block_on(portcullis::Portcullis::start(issuers.config.clone()))
        .unwrap();
    let router = gateway.router();
    let host = issuers
        .resource
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_string();
    let body = bytes::Bytes::from(
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "echo", "arguments": {"text": "hello"},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
        }}})
        .to_string(),
    );
    let authorization = format!("Bearer {}", issuers.rs256);
    // `accept` as clients send it takes the direct path; spelled with weights (the same
    // preference), the request goes through rmcp's stateless service: the baseline.
    let (host, authorization, body, router) = (&host, &authorization, &body, &router);
    let call = |accept: &'static str| stateless_echo(router, host, authorization, body, accept);
    const DIRECT: &str = "application/json, text/event-stream";
    const THROUGH_RMCP: &str = "application/json;q=1, text/event-stream;q=1";
    // The first call fetches the issuer's keys; every answer must be the echo, and each
    // variant must take its path (rmcp answers SSE, the direct path JSON).
    for (accept, want_sse) in [(DIRECT, false), (THROUGH_RMCP, true)] {
        let (status, sse, bytes) = rt.block_on(call(accept));
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("hello"), "{text}");
        assert_eq!(sse, want_sse, "{accept}: {text}");
    }
    for (name, accept) in [
        ("request_path/tools_call_jwt_cached", DIRECT),
        (
            "request_path/tools_call_jwt_cached_through_rmcp",
            THROUGH_RMCP,
        ),
    ] {
        c.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let (status, _, bytes) = call(accept).await;
                assert_eq!(status, 200);
                std::hint::black_box(bytes)
            })
        });
    }

    // A 2025-11-25 session: initialized once, then each call on it.
    let post = |body: Value, session: Option<&str>| {
        let mut request = http::Request::post("/mcp")
            .header("host", host)
            .header("content-type", "application/json")
            .header("accept", DIRECT)
            .header("mcp-protocol-version", "2025-11-25")
            .header("authorization", authorization);
        if let Some(id) = session {
            request = request.header("mcp-session-id", id);
        }
        let request = request
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        async move {
            let response = router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let id = response
                .headers()
                .get("mcp-session-id")
                .map(|v| v.to_str().unwrap().to_string());
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, id, bytes)
        }
    };
    let (status, session, bytes) = rt.block_on(post(
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"}}}),
        None,
    ));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let session = session.expect("a session id");
    let (status, _, _) = rt.block_on(post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        Some(&session),
    ));
    assert_eq!(status, 202);
    let in_session = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "hello"}}});
    let (status, _, bytes) = rt.block_on(post(in_session.clone(), Some(&session)));
    assert!(
        status == 200 && String::from_utf8_lossy(&bytes).contains("hello"),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    c.bench_function("request_path/tools_call_jwt_cached_session", |b| {
        b.to_async(&rt).iter(|| async {
            let (status, _, bytes) = post(in_session.clone(), Some(&session)).await;
            assert_eq!(status, 200);
            std::hint::black_box(bytes)
        })
    });
    gateway.shutdown_token().cancel();

    // The token verified (RS256) on every request: no token cache.
    let mut uncached = issuers.config.clone();
    uncached.auth.token_cache_entries = 0;
    let gateway = rt
        .block_on(portcullis::Portcullis::start(uncached))
        .unwrap();
    let router = &gateway.router();
    let (status, _, bytes) = rt.block_on(stateless_echo(router, host, authorization, body, DIRECT));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    c.bench_function("request_path/tools_call_rs256_every_request", |b| {
        b.to_async(&rt).iter(|| async {
            let (status, _, bytes) =
                stateless_echo(router, host, authorization, body, DIRECT).await;
            assert_eq!(status, 200);
            std::hint::black_box(bytes)
        })
    });
    gateway.shutdown_token().cancel();
}

/// #32: what the approval check costs a call. For a tool without a rule (#32 AC5: at most
/// 10 µs) the front's step is one catalog lookup by tool name, measured here on a tenant whose
/// other plugin declares rules; for a tool with one, the comparison of the token's details
/// with the call (a refund binding three arguments, a memo unbound).
fn approvals(c: &mut Criterion) {
    use portcullis::oauth::approval::Call;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let plugins: Vec<String> = ["echo", "payments"]
        .iter()
        .map(|p| {
            root()
                .join(format!("target/plugins/{p}.wasm"))
                .display()
                .to_string()
        })
        .collect();
    let issuers = rt.block_on(issuers(&format!("plugins = {plugins:?}\n")));
    let gateway = rt
        .block_on(portcullis::Portcullis::start(issuers.config.clone()))
        .unwrap();
    let (_, catalog) = gateway.catalogs().remove(0);
    assert!(catalog.approval("echo").is_none());
    let rule = catalog
        .approval("payments.refund")
        .expect("the fixture's rule")
        .clone();
    let mut g = c.benchmark_group("approvals");
    g.bench_function("tool_without_rule", |b| {
        b.iter(|| std::hint::black_box(catalog.approval(std::hint::black_box("echo")).is_none()))
    });
    let arguments = json!({"amount": "120.00", "currency": "EUR", "account": "DE02", "memo": "m"});
    let call = Call {
        tool: "payments.refund",
        arguments: &arguments,
        resource: &issuers.resource,
        subject: Some("alice"),
    };
    let granted = rule.details_for(call);
    g.bench_function("matching_detail", |b| {
        b.iter(|| {
            std::hint::black_box(
                rule.matching(std::hint::black_box(&granted), call)
                    .is_some(),
            )
        })
    });
    g.finish();
    gateway.shutdown_token().cancel();
}

/// #33: what the authorization decision costs a call whose arguments passed the schema check:
/// on a tenant without policies (scopes and claim rules only), and on one with twenty Cedar
/// rules over the caller, the tool, its arguments and the time.
fn authz(c: &mut Criterion) {
    use portcullis::authz::{Request, Target};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let payments = root().join("target/plugins/payments.wasm");
    let dir = std::env::temp_dir().join(format!("portcullis-bench-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("twenty.cedar");
    let mut rules = vec![
        r#"permit (principal, action in Portcullis::Action::"tools/call", resource) when { principal.scopes.contains("payments:write") || (principal has subject && principal.subject == "alice") };"#.to_string(),
        r#"forbid (principal, action == Portcullis::Action::"payments.transfer", resource) when { context has arguments && context.arguments.amount.greaterThanOrEqual(decimal("500.0")) };"#.to_string(),
        r#"forbid (principal, action in Portcullis::Action::"tools/call", resource) when { resource.destructive && principal.credential == "configured" && principal has subject && principal.subject == "mallory" };"#.to_string(),
    ];
    for n in 0..17 {
        rules.push(format!(
            r#"forbid (principal, action in Portcullis::Action::"tools/call", resource) when {{ principal has subject && principal.subject == "blocked-{n}" && context.now.hour >= 0 }};"#
        ));
    }
    std::fs::write(&file, rules.join("\n")).unwrap();
    let one = dir.join("one.cedar");
    std::fs::write(&one, &rules[0]).unwrap();
    let tenant_with = |policy: Option<&std::path::Path>| {
        let mut body = format!("plugins = [{:?}]\n", payments.display().to_string());
        if let Some(file) = policy {
            body.push_str(&format!(
                "[tenant.policy]\nfiles = [{:?}]\n",
                file.display().to_string()
            ));
        }
        body
    };
    let mut g = c.benchmark_group("authz");
    for (name, policy) in [
        ("decide_without_policies", None),
        ("decide_1_rule", Some(one.as_path())),
        ("decide_20_rules", Some(file.as_path())),
    ] {
        let issuers = rt.block_on(issuers(&tenant_with(policy)));
        let gateway = rt
            .block_on(portcullis::Portcullis::start(issuers.config.clone()))
            .unwrap();
        let tenant = gateway.tenant("bench").unwrap();
        let catalog = tenant.plugins.catalog();
        let mut who = portcullis::auth::Principal::from_identity(
            std::sync::Arc::from("bench"),
            &portcullis::config::Identity {
                subject: "alice".into(),
                scopes: vec!["payments:write".into()],
            },
        );
        who.issuer = Some(std::sync::Arc::from("https://issuer.example"));
        let arguments = json!({"amount": 120.5, "to": "DE02"});
        let ask =
            || Request::of(&who, Target::Tool("payments.transfer")).with_arguments(&arguments);
        assert!(tenant.authz.decide(&catalog, &ask()).is_ok());
        // The same call again: a remembered decision, once made.
        g.bench_function(name, |b| {
            b.iter(|| std::hint::black_box(tenant.authz.decide(&catalog, &ask()).is_ok()))
        });
        if policy.is_some() {
            // Arguments never seen before: the caller's entities are kept, the policies
            // evaluated.
            let mut cents = 0u64;
            g.bench_function(format!("{name}_new_arguments"), |b| {
                b.iter(|| {
                    cents += 1;
                    let arguments =
                        json!({"amount": (cents % 40_000) as f64 / 100.0 + 0.005, "to": "DE02"});
                    let asked = Request::of(&who, Target::Tool("payments.transfer"))
                        .with_arguments(&arguments);
                    std::hint::black_box(tenant.authz.decide(&catalog, &asked).is_ok())
                })
            });
            // A caller never seen before: its entities made, the policies evaluated.
            let mut n = 0u64;
            g.bench_function(format!("{name}_new_caller"), |b| {
                b.iter(|| {
                    n += 1;
                    let mut caller = who.clone();
                    caller.subject = Some(format!("user-{n}"));
                    let asked = Request::of(&caller, Target::Tool("payments.transfer"))
                        .with_arguments(&arguments);
                    std::hint::black_box(tenant.authz.decide(&catalog, &asked).is_ok())
                })
            });
        }
        gateway.shutdown_token().cancel();
    }
    g.finish();
}

criterion_group! {
    name = micro;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = request_path, approvals, authz, sandbox, plugin_call, schema, jwt, exchange, jsonrpc
}
/// Criterion's `criterion_main!`, with the one environment variable the exchange benchmark
/// needs set first, while this is the only thread.
fn main() {
    // The dev AS and the exchange client read the client secret from the environment.
    #[allow(
        unsafe_code,
        clippy::disallowed_methods,
        reason = "set before any other thread exists"
    )]
    unsafe {
        std::env::set_var("PORTCULLIS_BENCH_SECRET", "bench-exchange-secret");
    }
    micro();
    Criterion::default().configure_from_args().final_summary();
}
