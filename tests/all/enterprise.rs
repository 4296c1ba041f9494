//! Enterprise-Managed Authorization (#31 AC2): a confidential agent trades an identity
//! assertion (ID-JAG) from an enterprise IdP — played by a test IdP key the development AS is
//! configured to trust — for an access token with the RFC 7523 `jwt-bearer` grant, driven by
//! the official Python SDK's `IdentityAssertionOAuthProvider`, and calls a tool as the IdP's
//! user; forged, expired, wrong-audience, untrusted-IdP and other-client assertions are
//! refused at the AS, and no plugin runs for them. The tenant advertises the extension.

use serde_json::{Value, json};

use crate::support::{BinaryGateway, Client, plugin, root, run_json_program, toml_path};

const IDP: &str = "https://idp.corp.test";
const SECRET: &str = "ema-agent-secret-for-tests";

fn config() -> String {
    format!(
        r#"
        [auth]
        mode = "oauth"
        scopes_supported = ["mcp:tools"]
        [dev_as]
        enabled = true
        key_file = "dev-as.key"
        [[dev_as.enterprise_idps]]
        issuer = "{IDP}"
        jwks_file = {jwks}
        [[dev_as.clients]]
        client_id = "ema-agent"
        client_secret_env = "EMA_SECRET"
        grant_types = ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
        [[tenant]]
        id = "default"
        plugins = [{hello}]
        "#,
        jwks = toml_path(&root().join("tests/fixtures/test-issuer-b.jwk.json")),
        hello = toml_path(&plugin("hello")),
    )
}

async fn agent(gw: &BinaryGateway, mode: &str) -> Value {
    let mcp = format!("{}/mcp", gw.base);
    let issuer = format!("{}/dev-as", gw.base);
    let key = root().join("tests/fixtures/test-issuer-b.pem");
    let forging = root().join("tests/fixtures/test-issuer-a.pem");
    let python = root().join("tests/.venv/bin/python");
    assert!(
        python.is_file(),
        "Python test peers missing: run `cargo xtask test`"
    );
    let args: Vec<std::ffi::OsString> = [
        mcp.as_str(),
        issuer.as_str(),
        "ema-agent",
        SECRET,
        key.to_str().unwrap(),
        IDP,
        "test-key-b",
        mode,
        forging.to_str().unwrap(),
    ]
    .iter()
    .map(Into::into)
    .collect();
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    run_json_program(&python, "tests/py/ema_client.py", &args, &[]).await
}

#[tokio::test]
async fn an_enterprise_idps_assertion_gets_its_user_a_token_and_a_bad_one_gets_nothing() {
    let gw = BinaryGateway::start(&config(), &[("EMA_SECRET", SECRET)]).await;
    let meta = crate::support::get_json(&format!(
        "{}/.well-known/oauth-authorization-server/dev-as",
        gw.base
    ))
    .await;
    assert_eq!(
        meta["authorization_grant_profiles_supported"],
        json!(["urn:ietf:params:oauth:grant-profile:id-jag"]),
        "{meta}"
    );
    assert!(
        meta["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("urn:ietf:params:oauth:grant-type:jwt-bearer")),
        "{meta}"
    );

    let t = agent(&gw, "good").await;
    assert_eq!(t["ok"], true, "{t}");
    // The token names the IdP's user; the scopes are what both the request and the
    // assertion grant (the assertion's offline_access was not asked for).
    assert_eq!(t["whoami"]["subject"], "alice@corp.example", "{t}");
    assert_eq!(t["token_scope"], "mcp:tools", "{t}");
    assert_eq!(
        t["assertions"][0]["aud"],
        format!("{}/dev-as", gw.base),
        "{t}"
    );
    assert_eq!(
        t["assertions"][0]["resource"],
        format!("{}/mcp", gw.base),
        "{t}"
    );

    let mut signatures = vec![
        t["assertions"][0]["signature"]
            .as_str()
            .unwrap()
            .to_string(),
    ];
    for (mode, why) in [
        ("forged", "signature does not verify"),
        ("expired", "expired"),
        ("wrong-audience", "another authorization server"),
        ("untrusted-idp", "not a trusted enterprise IdP"),
        ("other-client", "another client"),
    ] {
        let t = agent(&gw, mode).await;
        assert_eq!(t["ok"], false, "{mode}: {t}");
        let error = t["error"].as_str().unwrap();
        assert!(
            error.contains("invalid_grant") && error.contains(why),
            "{mode}: {t}"
        );
        signatures.push(
            t["assertions"][0]["signature"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }

    // The tenant says it honours the extension (and machine tokens), to a caller with a token.
    let token = gw_token(&gw).await;
    let discovered = Client::modern(&format!("{}/mcp", gw.base))
        .bearer(&token)
        .request("server/discover", json!({}))
        .await;
    let extensions = &discovered.result()["capabilities"]["extensions"];
    assert!(
        extensions
            .get("io.modelcontextprotocol/enterprise-managed-authorization")
            .is_some()
            && extensions
                .get("io.modelcontextprotocol/oauth-client-credentials")
                .is_some(),
        "{discovered:?}"
    );
    let log = gw.stop().await;
    assert!(log.contains("refused an identity assertion"), "{log}");
    for signature in signatures {
        assert!(
            !log.contains(&signature),
            "an identity assertion appears in the log"
        );
    }
}

/// A token for a quick `server/discover`: the development AS's own (its key is in a file),
/// minted by the CLI.
async fn gw_token(gw: &BinaryGateway) -> String {
    crate::support::mint_with_cli(&gw.config, "alice", "mcp:tools").await
}
