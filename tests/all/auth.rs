//! The OAuth resource server at the edge: metadata, challenges, the JWT attack set, step-up,
//! session binding, key rotation. The issuer here is a minimal in-test authorization server
//! (RFC 8414 metadata + JWKS) so the tests can sign tokens no real server would issue.

use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::peers::{TestIssuer, fixture, now};
use crate::support::{BinaryGateway, Client, TestGateway, plugin, toml_path};

const SCOPES: &str = r#"scopes_supported = ["mcp:tools", "mcp:admin", "mcp:write", "mcp:read"]"#;

/// Tenants `a` (hello, probe; `hello.whoami` needs `mcp:admin`, `probe.echo` needs `mcp:read`)
/// and `b` (hello), trusting `issuer`; `extra_auth` is appended to `[auth]`.
async fn gateway_trusting(issuer: &TestIssuer, extra_auth: &str) -> TestGateway {
    let (hello, probe) = (toml_path(&plugin("hello")), toml_path(&plugin("probe")));
    TestGateway::from_toml(&format!(
        r#"
        [sandbox]
        max_instances = 16

        [auth]
        mode = "oauth"
        {SCOPES}
        challenge_scopes = ["mcp:tools"]
        claims = ["email"]
        jwks_min_refresh_secs = 1
        scope_implies = {{ "mcp:write" = ["mcp:read"] }}
        {extra_auth}

        [[auth.issuer]]
        issuer = "{issuer}"

        [[tenant]]
        id = "a"
        plugins = [{hello}, {probe}]
        [tenant.plugin.hello]
        scopes = {{ "hello.whoami" = ["mcp:admin"] }}
        [tenant.plugin.probe]
        scopes = {{ "probe.echo" = ["mcp:read"] }}

        [[tenant]]
        id = "b"
        plugins = [{hello}]
        "#,
        issuer = issuer.url,
    ))
    .await
}

/// Standard claims for tenant `a` of `gw`.
fn claims(gw: &TestGateway, issuer: &TestIssuer, scope: &str) -> Value {
    json!({"iss": issuer.url, "sub": "alice", "aud": gw.url("/mcp"), "exp": now() + 600, "iat": now(),
           "scope": scope, "client_id": "test-client", "email": "alice@example.com"})
}

fn challenge(r: &crate::support::Reply) -> String {
    r.headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// A stateless call of `hello.greet` with `authorization` (if any) and a URL suffix.
async fn greet(
    gw: &TestGateway,
    authorization: Option<&str>,
    url_suffix: &str,
) -> crate::support::Reply {
    let mut c = Client::modern(&format!("{}{url_suffix}", gw.url("/mcp")));
    c.authorization = authorization.map(str::to_string);
    c.call_tool("hello.greet", json!({"name": "x"})).await
}

#[tokio::test]
async fn protected_resource_metadata_and_the_401_challenge() {
    let issuer = TestIssuer::start(&["a"]).await;
    let gw = gateway_trusting(&issuer, "").await;
    let prm_url = format!("{}/.well-known/oauth-protected-resource/mcp", gw.base);
    let prm: Value = reqwest::get(&prm_url).await.unwrap().json().await.unwrap();
    assert_eq!(
        prm["resource"],
        gw.url("/mcp"),
        "resource is exactly the URL clients connect to"
    );
    assert_eq!(prm["authorization_servers"], json!([issuer.url]));
    assert_eq!(prm["bearer_methods_supported"], json!(["header"]));
    assert!(
        !prm["scopes_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "offline_access")
    );
    let b: Value = reqwest::get(format!(
        "{}/.well-known/oauth-protected-resource/t/b/mcp",
        gw.base
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        b["resource"],
        gw.url("/t/b/mcp"),
        "each tenant has its own resource"
    );
    // Two tenants: the root form would be ambiguous, so it is not served.
    let root = reqwest::get(format!("{}/.well-known/oauth-protected-resource", gw.base))
        .await
        .unwrap();
    assert_eq!(root.status().as_u16(), 404);

    let r = greet(&gw, None, "").await;
    assert_eq!(r.status, 401);
    let c = challenge(&r);
    // One challenge per scheme the tenant accepts (DPoP is allowed by default).
    assert_eq!(
        c,
        format!(
            "Bearer resource_metadata=\"{prm_url}\", scope=\"mcp:tools\", \
             DPoP algs=\"ES256 ES384 RS256 PS256 EdDSA\", resource_metadata=\"{prm_url}\", scope=\"mcp:tools\""
        ),
        "no error= without credentials"
    );
    // GET and DELETE need a token too.
    let get = reqwest::Client::new()
        .get(gw.url("/mcp"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 401);
}

#[tokio::test]
async fn jwt_attack_set_is_refused_before_any_plugin_runs() {
    let issuer = TestIssuer::start(&["a"]).await;
    let gw = gateway_trusting(&issuer, "max_token_bytes = 4096").await;
    let good = claims(&gw, &issuer, "mcp:tools");
    let before = gw.plugin_instances();

    let sign_hs256_with_public_key = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("test-key-a".into());
        jsonwebtoken::encode(
            &h,
            &good,
            &EncodingKey::from_secret(&fixture("test-issuer-a.pub.pem")),
        )
        .unwrap()
    };
    let alg_none = format!(
        "{}.{}.",
        B64.encode(br#"{"alg":"none","typ":"at+jwt","kid":"test-key-a"}"#),
        B64.encode(good.to_string())
    );
    // Key a's header and payload with key b's signature.
    let wrong_signature = {
        let (signed_part, _) = issuer
            .token("a", good.clone())
            .rsplit_once('.')
            .map(|(h, s)| (h.to_string(), s.to_string()))
            .unwrap();
        let other_signature = issuer
            .token("b", good.clone())
            .rsplit_once('.')
            .unwrap()
            .1
            .to_string();
        format!("{signed_part}.{other_signature}")
    };
    let unknown_kid = {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("no-such-key".into());
        jsonwebtoken::encode(
            &h,
            &good,
            &EncodingKey::from_rsa_pem(&fixture("test-issuer-a.pem")).unwrap(),
        )
        .unwrap()
    };
    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        issuer.token("a", c)
    };
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "malformed header",
            "Bearer".to_string(),
            401,
            "invalid_token",
        ),
        (
            "wrong scheme",
            "Basic dXNlcjpwYXNz".to_string(),
            401,
            "invalid_token",
        ),
        (
            "alg none",
            format!("Bearer {alg_none}"),
            401,
            "invalid_token",
        ),
        (
            "HS256 keyed with the RSA public key",
            format!("Bearer {sign_hs256_with_public_key}"),
            401,
            "invalid_token",
        ),
        (
            "unknown kid",
            format!("Bearer {unknown_kid}"),
            401,
            "invalid_token",
        ),
        (
            "wrong signature",
            format!("Bearer {wrong_signature}"),
            401,
            "invalid_token",
        ),
        (
            "expired",
            format!(
                "Bearer {}",
                with(json!({"exp": now() - 3600, "iat": now() - 7200}))
            ),
            401,
            "invalid_token",
        ),
        (
            "nbf in the future",
            format!("Bearer {}", with(json!({"nbf": now() + 3600}))),
            401,
            "invalid_token",
        ),
        (
            "iat in the future",
            format!("Bearer {}", with(json!({"iat": now() + 3600}))),
            401,
            "invalid_token",
        ),
        (
            "wrong iss",
            format!("Bearer {}", with(json!({"iss": "https://evil.example"}))),
            401,
            "invalid_token",
        ),
        (
            "aud of another resource",
            format!(
                "Bearer {}",
                with(json!({"aud": "https://other.example/mcp"}))
            ),
            401,
            "invalid_token",
        ),
        (
            "aud of another tenant",
            format!("Bearer {}", with(json!({"aud": gw.url("/t/b/mcp")}))),
            401,
            "invalid_token",
        ),
        (
            "no aud",
            format!("Bearer {}", with(json!({"aud": null}))),
            401,
            "invalid_token",
        ),
        (
            "right audience, missing scope",
            format!("Bearer {}", with(json!({"scope": "mcp:read"}))),
            403,
            "insufficient_scope",
        ),
        (
            "oversized token",
            format!("Bearer {}", "a".repeat(5000)),
            401,
            "invalid_token",
        ),
        (
            "garbage base64",
            "Bearer !!!.@@@.###".to_string(),
            401,
            "invalid_token",
        ),
    ];
    for (name, authorization, status, error) in &cases {
        let r = greet(&gw, Some(authorization), "").await;
        assert_eq!(r.status, *status, "{name}: {r:?}");
        let c = challenge(&r);
        assert!(c.starts_with("Bearer "), "{name}: {c}");
        assert!(c.contains(&format!("error=\"{error}\"")), "{name}: {c}");
        assert!(c.contains("resource_metadata=\"http://"), "{name}: {c}");
        let token = authorization.strip_prefix("Bearer ").unwrap_or_default();
        assert!(
            token.len() < 20 || !c.contains(token),
            "{name}: the challenge echoes the token"
        );
    }
    // A token in the query string is refused even if it is valid.
    let valid = issuer.token("a", good.clone());
    let r = greet(&gw, None, &format!("?access_token={valid}")).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(challenge(&r).contains("error=\"invalid_request\""));
    assert_eq!(
        gw.plugin_instances(),
        before,
        "a refused request must never reach a plugin"
    );

    // The valid token works, and only then does a plugin run.
    let r = greet(&gw, Some(&format!("Bearer {valid}")), "").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "Hello, x!");
    assert_eq!(gw.plugin_instances(), before + 1);
}

#[tokio::test]
async fn step_up_challenge_names_every_scope_the_call_needs() {
    let issuer = TestIssuer::start(&["a"]).await;
    let gw = gateway_trusting(&issuer, "").await;
    let token = issuer.token("a", claims(&gw, &issuer, "mcp:tools mcp:write"));
    let mut c = Client::modern(&gw.url("/mcp")).bearer(&token);
    let r = c.call_tool("hello.whoami", json!({})).await;
    assert_eq!(r.status, 403, "{r:?}");
    let ch = challenge(&r);
    assert!(ch.contains("error=\"insufficient_scope\""), "{ch}");
    // Every scope the call needs plus those already granted (so the client keeps them),
    // including ones implied by the hierarchy (mcp:write implies mcp:read).
    assert!(
        ch.contains("scope=\"mcp:admin mcp:read mcp:tools mcp:write\""),
        "{ch}"
    );
    assert!(ch.contains("resource_metadata=\""), "{ch}");

    // The hierarchy is honoured: mcp:write implies mcp:read, which probe.echo needs.
    let r = c.call_tool("probe.echo", json!({})).await;
    assert_eq!(r.status, 200, "{r:?}");

    // After re-authorization with the larger scope the call succeeds, and the plugin sees
    // the identity (never the token).
    let bigger = issuer.token("a", claims(&gw, &issuer, "mcp:admin mcp:tools mcp:write"));
    let r = Client::modern(&gw.url("/mcp"))
        .bearer(&bigger)
        .call_tool("hello.whoami", json!({}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let who = &r.result()["structuredContent"];
    assert_eq!(who["subject"], "alice");
    assert_eq!(who["tenant"], "a");
}

#[tokio::test]
async fn sessions_are_bound_to_their_subject_and_tokens_rechecked_every_request() {
    let issuer = TestIssuer::start(&["a"]).await;
    let gw = gateway_trusting(&issuer, "").await;
    let alice = issuer.token("a", claims(&gw, &issuer, "mcp:tools"));
    let mut bob_claims = claims(&gw, &issuer, "mcp:tools");
    bob_claims["sub"] = "bob".into();
    let bob = issuer.token("a", bob_claims);

    let mut c = Client::new(&gw.url("/mcp"));
    let init = crate::support::initialize_request("2025-11-25", json!({}));
    let r = c
        .post_raw(init, &[("authorization", &format!("Bearer {alice}"))])
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    c.session = r
        .headers
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_string());
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let r = c
        .post_raw(
            list.clone(),
            &[("authorization", &format!("Bearer {alice}"))],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = c
        .post_raw(list.clone(), &[("authorization", &format!("Bearer {bob}"))])
        .await;
    assert_eq!(
        r.status, 404,
        "another subject presenting the session id: {r:?}"
    );
    let r = c.post_raw(list, &[]).await;
    assert_eq!(r.status, 401, "a session is not authentication: {r:?}");
}

#[tokio::test]
async fn key_rotation_is_picked_up_and_known_keys_survive_an_outage() {
    let issuer = TestIssuer::start(&["a"]).await;
    let gw = gateway_trusting(&issuer, "").await;
    let with_a = issuer.token("a", claims(&gw, &issuer, "mcp:tools"));
    assert_eq!(
        greet(&gw, Some(&format!("Bearer {with_a}")), "")
            .await
            .status,
        200
    );
    // Keys are loaded now (the first fetch runs in the background at start).
    let fetched = issuer.fetches.load(Ordering::SeqCst);

    // The AS rotates to key b: the first token signed with it triggers one refresh.
    issuer.publish(&["a", "b"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let with_b = issuer.token("b", claims(&gw, &issuer, "mcp:tools"));
    assert_eq!(
        greet(&gw, Some(&format!("Bearer {with_b}")), "")
            .await
            .status,
        200
    );
    assert_eq!(
        issuer.fetches.load(Ordering::SeqCst),
        fetched + 1,
        "exactly one refresh"
    );

    // Unknown kids do not hammer the AS: refreshes are rate-limited.
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("random-kid".into());
    let forged = jsonwebtoken::encode(
        &h,
        &claims(&gw, &issuer, "mcp:tools"),
        &EncodingKey::from_rsa_pem(&fixture("test-issuer-a.pem")).unwrap(),
    )
    .unwrap();
    for _ in 0..5 {
        assert_eq!(
            greet(&gw, Some(&format!("Bearer {forged}")), "")
                .await
                .status,
            401
        );
    }
    assert!(
        issuer.fetches.load(Ordering::SeqCst) <= fetched + 2,
        "refresh is rate-limited"
    );

    // The AS goes down: new tokens signed with known keys still validate.
    issuer.stop.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fresh = claims(&gw, &issuer, "mcp:tools");
    fresh["jti"] = "after-outage".into();
    let token = issuer.token("a", fresh);
    assert_eq!(
        greet(&gw, Some(&format!("Bearer {token}")), "")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn the_plugin_sees_the_identity_but_never_the_token() {
    let issuer = TestIssuer::start(&["a"]).await;
    let gw = gateway_trusting(&issuer, "").await;
    let mut cl = claims(&gw, &issuer, "mcp:tools mcp:read");
    cl["sub"] = "carol".into();
    let token = issuer.token("a", cl);
    let r = Client::modern(&gw.url("/mcp"))
        .bearer(&token)
        .call_tool("probe.observe", json!({}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = r.result()["structuredContent"].to_string();
    let ctx = &r.result()["structuredContent"]["context"];
    assert_eq!(ctx["subject"], "carol");
    assert_eq!(ctx["client_id"], "test-client");
    assert_eq!(ctx["claims"], json!([["email", "\"alice@example.com\""]]));
    for part in token.split('.') {
        assert!(
            !seen.contains(part),
            "a piece of the token reached the plugin"
        );
    }
}

#[tokio::test]
async fn no_token_appears_in_the_log_even_at_trace_level() {
    let issuer = TestIssuer::start(&["a"]).await;
    let body = format!(
        "[sandbox]\nmax_instances = 8\n[auth]\nmode = \"oauth\"\n{SCOPES}\n[[auth.issuer]]\nissuer = \"{}\"\n\
         [[tenant]]\nid = \"a\"\nplugins = [{}]\n",
        issuer.url,
        toml_path(&plugin("hello"))
    );
    // Everything at trace, except the wasm compiler's own passes (hundreds of MB of
    // instruction selection that never sees a request).
    let filter = "trace,cranelift_codegen=info,cranelift_frontend=info,regalloc2=info,wasmtime_cranelift=info,wasmtime_environ=info";
    let gw = BinaryGateway::start(&body, &[("PORTCULLIS_LOG", filter)]).await;
    let base = gw.base.clone();
    let url = format!("{base}/mcp");
    let good = json!({"iss": issuer.url, "sub": "alice", "aud": url, "exp": now() + 600, "iat": now(), "scope": "mcp:tools"});
    let valid = issuer.token("a", good.clone());
    let mut expired_claims = good.clone();
    expired_claims["exp"] = (now() - 3600).into();
    let expired = issuer.token("a", expired_claims);
    let mut other_claims = good.clone();
    other_claims["aud"] = "https://elsewhere.example/mcp".into();
    let wrong_audience = issuer.token("a", other_claims);

    // A session (initialize + calls) and stateless calls with the valid token...
    let mut session =
        Client::initialize_with(&url, "2025-11-25", Some(&format!("Bearer {valid}"))).await;
    assert_eq!(
        session
            .call_tool("hello.greet", json!({"name": "trace"}))
            .await
            .text(),
        "Hello, trace!"
    );
    assert_eq!(
        Client::modern(&url)
            .bearer(&valid)
            .call_tool("hello.greet", json!({"name": "x"}))
            .await
            .status,
        200
    );
    // ...refused tokens, and a token in the query string.
    for bad in [&expired, &wrong_audience] {
        assert_eq!(
            Client::modern(&url)
                .bearer(bad)
                .call_tool("hello.greet", json!({}))
                .await
                .status,
            401
        );
    }
    let q = Client::modern(&format!("{url}?access_token={valid}"))
        .call_tool("hello.greet", json!({}))
        .await;
    assert_eq!(q.status, 400);
    // #31 AC4: a DPoP-bound token with good, replayed and misdirected proofs.
    let key = crate::support::dpop::DpopKey::new();
    let mut bound_claims = good.clone();
    bound_claims["cnf"] = json!({"jkt": key.jkt()});
    let bound = issuer.token("a", bound_claims);
    let proof = key.proof("POST", &url, Some(&bound));
    let misdirected = key.proof("POST", "http://elsewhere.example/mcp", Some(&bound));
    for (p, status) in [(&proof, 200), (&proof, 401), (&misdirected, 401)] {
        let mut c = Client::modern(&url);
        c.authorization = Some(format!("DPoP {bound}"));
        let r = c
            .request_with(
                "tools/call",
                json!({"name": "hello.greet", "arguments": {"name": "x"}}),
                &[("dpop", p.as_str())],
            )
            .await;
        assert_eq!(r.status, status, "{r:?}");
    }
    drop(session);
    let text = gw.stop().await;
    let key_parts = [
        key.jwk["x"].as_str().unwrap(),
        key.jwk["y"].as_str().unwrap(),
    ];
    for secret in bound
        .split('.')
        .chain(proof.split('.'))
        .chain(misdirected.split('.'))
        .chain(key_parts)
    {
        assert!(
            !text.contains(secret),
            "a DPoP token, proof or key part appears in the log"
        );
    }
    assert!(text.contains("TRACE"), "trace logging was on");
    assert!(
        text.contains("request denied"),
        "denials are logged for operators"
    );
    for token in [&valid, &expired, &wrong_audience] {
        for part in token.split('.') {
            assert!(
                !text.contains(part),
                "a token segment appears in the log:\n{}",
                &text[..text.len().min(2000)]
            );
        }
    }
}

#[tokio::test]
async fn claim_rules_and_a_permitted_only_tool_list() {
    let issuer = TestIssuer::start(&["a"]).await;
    let body = format!(
        "[sandbox]\nmax_instances = 8\n[auth]\nmode = \"oauth\"\n{SCOPES}\nclaims = [\"groups\"]\ntools_list = \"permitted\"\n\
         [[auth.issuer]]\nissuer = \"{}\"\n\
         [[tenant]]\nid = \"a\"\nplugins = [{}]\n\
         [tenant.plugin.hello]\ntools = [\"hello.greet\", \"hello.whoami\"]\n\
         scopes = {{ \"hello.whoami\" = [\"mcp:admin\"] }}\n\
         require_claims = {{ \"hello.greet\" = {{ groups = \"admin\" }} }}\n",
        issuer.url,
        toml_path(&plugin("hello"))
    );
    let gw = TestGateway::start("", &body).await;
    let token_with = |groups: Value| {
        let mut c = json!({"iss": issuer.url, "sub": "dana", "aud": gw.url("/mcp"), "exp": now() + 600, "iat": now(), "scope": "mcp:tools"});
        c["groups"] = groups;
        issuer.token("a", c)
    };

    let user = token_with(json!(["users"]));
    let mut c = Client::modern(&gw.url("/mcp")).bearer(&user);
    assert!(
        c.request("tools/list", json!({}))
            .await
            .tool_names()
            .is_empty(),
        "neither tool is permitted"
    );
    // Hidden from this caller, so it answers as if it did not exist (no rule disclosed).
    let r = c.call_tool("hello.greet", json!({"name": "x"})).await;
    assert_eq!(r.error()["message"], "Unknown tool: hello.greet", "{r:?}");

    let admin = token_with(json!(["users", "admin"]));
    let mut c = Client::modern(&gw.url("/mcp")).bearer(&admin);
    assert_eq!(
        c.request("tools/list", json!({})).await.tool_names(),
        vec!["hello.greet"],
        "whoami still needs mcp:admin"
    );
    assert_eq!(
        c.call_tool("hello.greet", json!({"name": "D"}))
            .await
            .text(),
        "Hello, D!"
    );
}

#[tokio::test]
async fn the_plugin_inventory_needs_the_admin_scope_and_shows_only_that_tenant() {
    let issuer = TestIssuer::start(&["a"]).await;
    let gw = gateway_trusting(&issuer, "").await;
    let get = |query: &str, token: Option<String>| {
        let url = gw.url(&format!("/admin/plugins{query}"));
        async move {
            let mut req = reqwest::Client::new().get(url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send().await.unwrap()
        }
    };
    // Without a valid token the answer is the same whatever tenant is named, existing or
    // not: the endpoint tells an unauthenticated caller nothing about which tenants exist.
    let answer = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let challenge = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        (status, challenge, r.text().await.unwrap())
    };
    let none = answer(get("?tenant=a", None).await).await;
    assert_eq!(none.0, 401);
    assert_eq!(answer(get("?tenant=zzz", None).await).await, none);
    assert_eq!(answer(get("", None).await).await, none);
    let user = issuer.token("a", claims(&gw, &issuer, "mcp:tools"));
    let refused = get("?tenant=a", Some(user)).await;
    assert_eq!(refused.status(), 403);
    let challenge = refused.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains("insufficient_scope") && challenge.contains("portcullis:admin"),
        "{challenge}"
    );
    let admin = issuer.token("a", claims(&gw, &issuer, "mcp:tools portcullis:admin"));
    let ok = get("?tenant=a", Some(admin.clone())).await;
    assert_eq!(ok.status(), 200);
    let inventory: Value = ok.json().await.unwrap();
    assert_eq!(inventory["tenant"], "a");
    let names: Vec<&str> = inventory["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hello", "probe"]);
    assert_eq!(
        inventory["plugins"][0]["sha256"].as_str().unwrap().len(),
        64
    );
    // Tenant a's token decides the tenant: naming another one, existing or not, is a 404.
    assert_eq!(get("?tenant=b", Some(admin.clone())).await.status(), 404);
    assert_eq!(get("?tenant=zzz", Some(admin.clone())).await.status(), 404);
    let own: Value = get("", Some(admin)).await.json().await.unwrap();
    assert_eq!(own["tenant"], "a", "no ?tenant: the token's tenant");
}

/// One authorization decision, one answer per kind of denial, whatever the era: a missing
/// scope is a 403 step-up before any stream opens, a claim rule's refusal is the tool's
/// `isError` result naming the rule, an unknown tool is `-32602 Unknown tool`.
#[tokio::test]
async fn the_same_denial_gets_the_same_answer_in_every_era() {
    let issuer = TestIssuer::start(&["a"]).await;
    let gw = TestGateway::from_toml(&format!(
        r#"
        [auth]
        mode = "oauth"
        {SCOPES}
        claims = ["groups"]
        [[auth.issuer]]
        issuer = "{issuer}"

        [[tenant]]
        id = "a"
        plugins = [{hello}]
        [tenant.plugin.hello]
        scopes = {{ "hello.whoami" = ["mcp:admin"] }}
        require_claims = {{ "hello.greet" = {{ groups = "admin" }} }}
        "#,
        issuer = issuer.url,
        hello = toml_path(&plugin("hello")),
    ))
    .await;
    let mut c = claims(&gw, &issuer, "mcp:tools");
    c["groups"] = json!(["users"]);
    let token = issuer.token("a", c);
    let url = gw.url("/mcp");
    let bearer = format!("Bearer {token}");
    for era in ["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"] {
        let mut client = if era == "2026-07-28" {
            Client::modern(&url).bearer(&token)
        } else {
            Client::initialize_with(&url, era, Some(&bearer)).await
        };
        let scope = client.call_tool("hello.whoami", json!({})).await;
        assert_eq!(scope.status, 403, "{era}: {scope:?}");
        let ch = challenge(&scope);
        assert!(
            ch.starts_with("Bearer ")
                && ch.contains(r#"error="insufficient_scope""#)
                && ch.contains(r#"scope="mcp:admin mcp:tools""#),
            "{era}: {ch}"
        );
        let claim = client.call_tool("hello.greet", json!({"name": "x"})).await;
        assert_eq!(claim.status, 200, "{era}: {claim:?}");
        assert!(claim.is_error(), "{era}: {claim:?}");
        assert_eq!(
            claim.text(),
            "Forbidden: tool `hello.greet` is not available to this caller (claim `groups` must contain `admin`)",
            "{era}"
        );
        let unknown = client.call_tool("nope", json!({})).await;
        assert_eq!(unknown.error()["code"], -32602, "{era}: {unknown:?}");
        assert_eq!(unknown.error()["message"], "Unknown tool: nope", "{era}");
    }
}

/// #31: an issuer's `max_token_lifetime_secs` refuses its longer-lived tokens (`exp` − `iat`,
/// or what is left without `iat`), before any plugin runs; shorter ones pass.
#[tokio::test]
async fn tokens_living_longer_than_their_issuer_allows_are_refused() {
    let issuer = TestIssuer::start(&["a"]).await;
    let gw = TestGateway::from_toml(&format!(
        r#"
        [auth]
        mode = "oauth"
        {SCOPES}
        [[auth.issuer]]
        issuer = "{issuer}"
        max_token_lifetime_secs = 300
        [[tenant]]
        id = "a"
        plugins = [{hello}]
        "#,
        issuer = issuer.url,
        hello = toml_path(&plugin("hello")),
    ))
    .await;
    let with = |iat: Option<u64>, exp: u64| {
        let mut c = json!({"iss": issuer.url, "sub": "alice", "aud": gw.url("/mcp"), "exp": exp,
                           "scope": "mcp:tools"});
        if let Some(iat) = iat {
            c["iat"] = iat.into();
        }
        issuer.token("a", c)
    };
    let before = gw.plugin_instances();
    for (name, token) in [
        ("600 s from iat", with(Some(now()), now() + 600)),
        ("600 s left, no iat", with(None, now() + 600)),
    ] {
        let r = greet(&gw, Some(&format!("Bearer {token}")), "").await;
        assert_eq!(r.status, 401, "{name}: {r:?}");
        assert!(
            challenge(&r).contains("may live at most 300 s"),
            "{name}: {r:?}"
        );
    }
    assert_eq!(gw.plugin_instances(), before);
    let r = greet(
        &gw,
        Some(&format!("Bearer {}", with(Some(now()), now() + 200))),
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
}
