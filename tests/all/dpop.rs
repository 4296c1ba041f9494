//! DPoP (RFC 9449) at the edge (#31): a DPoP-bound token from the development AS works only
//! with a fresh proof for the very request, and every other way of presenting it is refused
//! with the challenge the presented scheme calls for — before any plugin runs. Tenants that
//! require DPoP or turn it off, server nonces, and the official TypeScript client 2.x doing it
//! all by itself.

use serde_json::{Value, json};

use crate::support::dpop::{DpopKey, bound_token, dev_as_token};
use crate::support::{
    Client, Reply, TestGateway, get_json, node, plugin, run_json_program, toml_path,
};

/// A gateway with its development AS, serving hello at `/mcp` (`dpop` and `[auth.dpop]` as
/// given).
async fn gateway(dpop: &str, auth_dpop: &str) -> TestGateway {
    TestGateway::from_toml(&format!(
        r#"
        [auth]
        mode = "oauth"
        scopes_supported = ["mcp:tools"]
        [auth.dpop]
        {auth_dpop}
        [dev_as]
        enabled = true
        auto_approve = true
        [[tenant]]
        id = "default"
        dpop = "{dpop}"
        plugins = [{hello}]
        "#,
        hello = toml_path(&plugin("hello")),
    ))
    .await
}

/// `tools/call hello.greet`, stateless, with `authorization` and (if given) `proof`.
async fn greet(url: &str, authorization: &str, proof: Option<&str>) -> Reply {
    let mut client = Client::modern(url);
    client.authorization = Some(authorization.to_string());
    let extra: Vec<(&str, &str)> = proof.map(|p| ("dpop", p)).into_iter().collect();
    client
        .request_with(
            "tools/call",
            json!({"name": "hello.greet", "arguments": {"name": "dpop"}}),
            &extra,
        )
        .await
}

fn challenge(r: &Reply) -> String {
    r.headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_bound_token_works_only_with_a_fresh_proof_for_this_request_and_this_key() {
    let gw = gateway("allowed", "").await;
    let url = gw.url("/mcp");
    let key = DpopKey::new();
    let issued = bound_token(&gw.base, &key, &url, "mcp:tools").await;
    assert_eq!(issued["token_type"], "DPoP", "{issued}");
    let token = issued["access_token"].as_str().unwrap().to_string();
    let claims = crate::support::jwt_part(&token, 1);
    assert_eq!(claims["cnf"]["jkt"], key.jkt(), "{claims}");
    let dpop = format!("DPoP {token}");

    let ok = greet(&url, &dpop, Some(&key.proof("POST", &url, Some(&token)))).await;
    assert_eq!(ok.text(), "Hello, dpop!", "{ok:?}");
    let replayed = key.proof("POST", &url, Some(&token));
    assert_eq!(greet(&url, &dpop, Some(&replayed)).await.status, 200);
    let before = gw.plugin_instances();
    let now = jsonwebtoken::get_current_timestamp();
    let other_key = DpopKey::new();
    let cases: Vec<(&str, String, Option<String>, &str)> = vec![
        ("no proof", dpop.clone(), None, "invalid_dpop_proof"),
        (
            "presented as Bearer",
            format!("Bearer {token}"),
            None,
            "invalid_token",
        ),
        (
            "a proof for another URL",
            dpop.clone(),
            Some(key.proof("POST", &gw.url("/t/other/mcp"), Some(&token))),
            "invalid_dpop_proof",
        ),
        (
            "a proof for another method",
            dpop.clone(),
            Some(key.proof("GET", &url, Some(&token))),
            "invalid_dpop_proof",
        ),
        (
            "a replayed proof",
            dpop.clone(),
            Some(replayed),
            "invalid_dpop_proof",
        ),
        (
            "an expired iat",
            dpop.clone(),
            Some(key.proof_with("POST", &url, Some(&token), json!({"iat": now - 400}))),
            "invalid_dpop_proof",
        ),
        (
            "a wrong ath",
            dpop.clone(),
            Some(key.proof("POST", &url, Some("another token"))),
            "invalid_dpop_proof",
        ),
        (
            "another key",
            dpop.clone(),
            Some(other_key.proof("POST", &url, Some(&token))),
            "invalid_dpop_proof",
        ),
    ];
    for (name, authorization, proof, error) in cases {
        let r = greet(&url, &authorization, proof.as_deref()).await;
        assert_eq!(r.status, 401, "{name}: {r:?}");
        let c = challenge(&r);
        // Both schemes are offered; the error is on the challenge of the scheme presented.
        let (bearer, dpop_challenge) = c
            .split_once(", DPoP algs=")
            .unwrap_or_else(|| panic!("{name}: {c}"));
        let erred = if authorization.starts_with("Bearer") {
            bearer
        } else {
            dpop_challenge
        };
        assert!(erred.contains(&format!("error=\"{error}\"")), "{name}: {c}");
        let other = if authorization.starts_with("Bearer") {
            dpop_challenge
        } else {
            bearer
        };
        assert!(!other.contains("error="), "{name}: {c}");
        assert!(c.contains("DPoP algs=\"ES256"), "{name}: {c}");
        assert!(
            !c.contains(&token),
            "{name}: the challenge echoes the token"
        );
    }
    assert_eq!(
        gw.plugin_instances(),
        before,
        "a refused request never reaches a plugin"
    );
}

#[tokio::test]
async fn required_refuses_bearer_off_refuses_dpop_and_the_metadata_says_which() {
    let required = gateway("required", "").await;
    let url = required.url("/mcp");
    let issued = dev_as_token(&required.base, None, &url, "mcp:tools").await;
    assert_eq!(issued["token_type"], "Bearer", "{issued}");
    let bearer = issued["access_token"].as_str().unwrap();
    let r = greet(&url, &format!("Bearer {bearer}"), None).await;
    assert_eq!(r.status, 401, "{r:?}");
    let c = challenge(&r);
    assert!(
        c.starts_with("DPoP algs=") && c.contains("error=\"invalid_token\""),
        "{c}"
    );
    assert!(!c.contains("Bearer "), "only DPoP is offered: {c}");
    let prm = get_json(&required.url("/.well-known/oauth-protected-resource/mcp")).await;
    assert_eq!(prm["dpop_bound_access_tokens_required"], true, "{prm}");
    assert_eq!(
        prm["dpop_signing_alg_values_supported"],
        json!(["ES256", "ES384", "RS256", "PS256", "EdDSA"]),
        "{prm}"
    );
    // The same tenant serves a bound token with its proof.
    let key = DpopKey::new();
    let token = bound_token(&required.base, &key, &url, "mcp:tools").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let ok = greet(
        &url,
        &format!("DPoP {token}"),
        Some(&key.proof("POST", &url, Some(&token))),
    )
    .await;
    assert_eq!(ok.text(), "Hello, dpop!", "{ok:?}");

    let off = gateway("off", "").await;
    let url = off.url("/mcp");
    let token = bound_token(&off.base, &key, &url, "mcp:tools").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = greet(
        &url,
        &format!("DPoP {token}"),
        Some(&key.proof("POST", &url, Some(&token))),
    )
    .await;
    assert_eq!(r.status, 401, "{r:?}");
    let c = challenge(&r);
    assert!(c.starts_with("Bearer ") && !c.contains("DPoP algs"), "{c}");
    // Nor can the bound token be used as a bearer token there.
    let r = greet(&url, &format!("Bearer {token}"), None).await;
    assert_eq!(r.status, 401, "{r:?}");
    let prm = get_json(&off.url("/.well-known/oauth-protected-resource/mcp")).await;
    assert!(
        prm.get("dpop_signing_alg_values_supported").is_none(),
        "{prm}"
    );
}

#[tokio::test]
async fn with_nonces_a_proof_without_the_current_one_gets_a_fresh_one_to_retry_with() {
    let gw = gateway("allowed", "nonce = true").await;
    let url = gw.url("/mcp");
    let key = DpopKey::new();
    let token = bound_token(&gw.base, &key, &url, "mcp:tools").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let dpop = format!("DPoP {token}");
    let first = greet(&url, &dpop, Some(&key.proof("POST", &url, Some(&token)))).await;
    assert_eq!(first.status, 401, "{first:?}");
    assert!(
        challenge(&first).contains("error=\"use_dpop_nonce\""),
        "{first:?}"
    );
    let nonce = first.headers["dpop-nonce"].to_str().unwrap().to_string();
    let forged = greet(
        &url,
        &dpop,
        Some(&key.proof_with(
            "POST",
            &url,
            Some(&token),
            json!({"nonce": format!("{nonce}x")}),
        )),
    )
    .await;
    assert_eq!(forged.status, 401, "{forged:?}");
    let retried = greet(
        &url,
        &dpop,
        Some(&key.proof_with("POST", &url, Some(&token), json!({"nonce": nonce}))),
    )
    .await;
    assert_eq!(retried.text(), "Hello, dpop!", "{retried:?}");
}

/// AC1: the official TypeScript client 2.x (`@modelcontextprotocol/client`, pinned) with a
/// DPoP session completes OAuth against the development AS (its proof at the token endpoint,
/// a `token_type: DPoP` token bound to its key) and calls tools on 2026-07-28, answering the
/// gateway's nonce challenge on its own.
#[tokio::test]
async fn the_typescript_client_2x_does_dpop_end_to_end_with_nonces() {
    let gw = gateway("required", "nonce = true").await;
    let url = gw.url("/mcp");
    let t: Value =
        run_json_program(&node(), "tests/js/dpop-client.mjs", &[url.as_ref()], &[]).await;
    assert_eq!(t["tokenType"], "DPoP", "{t}");
    assert_eq!(t["greet"]["content"][0]["text"], "Hello, DPoP!", "{t}");
    // Every request to the MCP endpoint carried the DPoP scheme and a proof.
    let mcp: Vec<&Value> = t["http"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| {
            h["url"].as_str().is_some_and(|u| u.ends_with("/mcp")) && h["authorization"].is_string()
        })
        .collect();
    assert!(!mcp.is_empty(), "{t}");
    assert!(
        mcp.iter()
            .all(|h| h["authorization"] == "DPoP" && h["proof"] == true),
        "{t}"
    );
    // The first proof lacked the nonce; the client retried with the one it was given.
    assert!(
        mcp.iter().any(|h| h["status"] == 401
            && h["challenge"]
                .as_str()
                .is_some_and(|c| c.contains("use_dpop_nonce"))),
        "{t}"
    );
    assert_eq!(mcp.last().unwrap()["status"], 200, "{t}");
}
