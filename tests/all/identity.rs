//! Identity through the gateway (#29): the downstream credentials teams need beyond RFC 8693,
//! against identity providers configured to behave as the real ones do — a second
//! oidc-provider shaped as Microsoft Entra ID (GUID audiences, `scp`, no `resource`, its
//! on-behalf-of request and errors) and oidc-provider serving the RFC 7523 assertion grant.

use serde_json::{Value, json};

use crate::support::peers::{DownstreamApi, RealAs};
use crate::support::{BinaryGateway, Client, jwt_part, node, root, toml_path};

/// The gateway's Entra application (client) id: the `aud` of users' tokens for it.
const GATEWAY_APP: &str = "6f1d2b3c-4a5e-4f60-8172-93a4b5c6d7e8";
/// The downstream API's Entra application id, and its application id URI.
const NOTES_APP: &str = "0b9c8d7e-6f5a-4b3c-9d2e-1f0a9b8c7d6e";
const NOTES_URI: &str = "api://notes-api";

/// `[[auth.issuer]]` for `issuer` (`more`: more of its keys) with the gateway's OAuth client
/// there (`client`: the keys of `[auth.issuer.exchange]`).
fn issuer_with_client(issuer: &str, more: &str, client: &str) -> String {
    format!(
        "[[auth.issuer]]\nissuer = \"{issuer}\"\nalgorithms = [\"RS256\"]\n{more}\
         [auth.issuer.exchange]\n{client}\n"
    )
}

/// The gateway authenticating with `private_key_jwt` (the test key `b`, and its
/// certificate), as `client_id`.
fn private_key_jwt(client_id: &str) -> String {
    format!(
        "client_id = \"{client_id}\"\nauth_method = \"private_key_jwt\"\nprivate_key_file = {}\n\
         certificate_file = {}",
        toml_path(&root().join("tests/fixtures/test-issuer-b.pem")),
        toml_path(&root().join("tests/fixtures/test-issuer-b.cert.pem"))
    )
}

/// The base64url SHA-256 thumbprint of the test key `b`'s certificate (`openssl x509
/// -outform DER | openssl dgst -sha256`), which "Entra" has registered for the gateway.
const CERT_THUMBPRINT: &str = "2CUhhej7izC-hlTo5a2K51LizBGHiVRMVvslXAz6k1s";
/// The official TypeScript SDK client calling `tool` at `url` with `token`.
async fn sdk_call(url: &str, token: &str, tool: &str, arguments: Value) -> Value {
    crate::support::run_json_program(
        &node(),
        "tests/js/bearer-call.mjs",
        &[
            url.as_ref(),
            token.as_ref(),
            tool.as_ref(),
            arguments.to_string().as_ref(),
        ],
        &[],
    )
    .await
}

fn text(result: &Value) -> String {
    result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// #29 AC1. An Entra-shaped issuer: users' tokens carry `aud` = the gateway application's
/// GUID (refused before: `aud` had to be the resource URL) and `scp`; the gateway reaches the
/// API with Entra's on-behalf-of request, authenticating with `private_key_jwt`, naming the
/// API only by `scope` (Entra refuses `resource`, AADSTS901002), its assertion naming the
/// registered certificate (`x5t#S256`, else AADSTS700027). The GUID is tenant A's
/// audience only: the same token at tenant B is refused.
#[tokio::test]
async fn an_entra_shaped_issuer_reaches_the_api_on_behalf_of_the_user() {
    let api = DownstreamApi::start().await;
    let jwks = root().join("tests/fixtures/test-issuer-b.jwk.json");
    let entra = RealAs::start_with(
        &[],
        "mcp:tools",
        &[
            ("AS_SHAPE", "entra"),
            ("AS_ENTRA_APP", GATEWAY_APP),
            ("AS_ENTRA_APIS", &format!("{NOTES_URI}={NOTES_APP}")),
            ("AS_GATEWAY_JWKS", jwks.to_str().unwrap()),
            ("AS_ENTRA_CERT_THUMBPRINT", CERT_THUMBPRINT),
        ],
    )
    .await;
    let body = format!(
        "[sandbox]\nmax_instances = 8\n\
         [auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\"]\n{issuer}\
         [[tenant]]\nid = \"a\"\npath = \"/mcp\"\nplugins = [{probe}, {hello}]\n\
         audiences = {{ \"{iss}\" = [\"{GATEWAY_APP}\"] }}\n\
         [[tenant.service]]\nname = \"notes\"\nbase_url = \"{api}/api\"\ncredential = \"on-behalf-of\"\n\
         scopes = [\"{NOTES_URI}/.default\"]\n\
         [tenant.plugin.probe]\nservices = [\"notes\"]\n\
         [[tenant]]\nid = \"b\"\npath = \"/t/b/mcp\"\nplugins = [{probe}]\n",
        issuer = issuer_with_client(
            &entra.issuer,
            "subject_claim = \"oid\"\n",
            &private_key_jwt(GATEWAY_APP)
        ),
        iss = entra.issuer,
        api = api.base,
        probe = toml_path(&crate::support::plugin("probe")),
        hello = toml_path(&crate::support::plugin("hello")),
    );
    let gw = BinaryGateway::start(&body, &[]).await;
    // Alice signs in at "Entra" (no resource parameter, as Entra requires).
    let token = entra.user_token("", "mcp:tools").await;
    let claims = jwt_part(&token, 1);
    assert_eq!(claims["aud"], GATEWAY_APP, "{claims}");
    assert!(claims.get("scope").is_none() && claims["scp"] == "mcp:tools");

    let out = sdk_call(
        &format!("{}/mcp", gw.base),
        &token,
        "probe.fetch",
        json!({"service": "notes", "path": "/echo"}),
    )
    .await;
    assert_eq!(out["status"], "ok", "{out}");
    assert!(text(&out).starts_with("status 200: "), "{out}");
    // The API got a token for itself, with alice as its subject.
    let obo = jwt_part(&api.bearer(0), 1);
    assert_eq!(
        (obo["aud"].as_str(), obo["ver"].as_str()),
        (Some(NOTES_APP), Some("2.0")),
        "{obo}"
    );
    assert_eq!(obo["oid"], claims["oid"], "the same user");
    assert_ne!(obo["sub"], claims["sub"], "Entra's sub is pairwise per app");
    // The gateway names the user by `oid` (`subject_claim`), the same in every app's token.
    let who = sdk_call(
        &format!("{}/mcp", gw.base),
        &token,
        "hello.whoami",
        json!({}),
    )
    .await;
    let who: Value = serde_json::from_str(&text(&who)).unwrap_or_else(|_| panic!("{who}"));
    assert_eq!(who["subject"], claims["oid"], "{who}");
    // What reached "Entra": one on-behalf-of request, by the gateway's signed assertion,
    // carrying alice's token as the assertion, the API named by its scope alone.
    let requests = entra.requests().await;
    let obo_requests: Vec<&Value> = requests
        .iter()
        .filter(|r| r["requested_token_use"] == "on_behalf_of")
        .collect();
    assert_eq!(obo_requests.len(), 1, "{requests:?}");
    let r = obo_requests[0];
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(
        r["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    assert_eq!(r["target"], json!([]), "no resource, no audience: {r}");
    assert_eq!(r["scope"], format!("{NOTES_URI}/.default"));
    assert_eq!(r["client"], GATEWAY_APP);
    assert_eq!(r["client_auth"], "private_key_jwt");
    assert_eq!(r["tokens"], json!([crate::support::sha256_hex(&token)]));

    // Tenant B accepts tokens from the same issuer, but its audience is its own resource URL:
    // a token for tenant A's application is not a token for B.
    let mut b = Client::modern(&format!("{}/t/b/mcp", gw.base)).bearer(&token);
    let refused = b.request("tools/list", json!({})).await;
    assert_eq!(refused.status, 401, "{refused:?}");
    let challenge = refused.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("invalid_token"), "{challenge}");
    let log = gw.stop().await;
    assert!(
        log.contains("not issued for this resource"),
        "operators see why"
    );
    assert!(!log.contains(&token), "no token in the log");
}

/// #29 AC2. RFC 7523 §2.1 at oidc-provider: the caller's token is the assertion, presented
/// at its own issuer; the API receives a token for itself with the user as subject.
#[tokio::test]
async fn the_jwt_bearer_grant_presents_the_callers_token_at_its_issuer() {
    let api = DownstreamApi::start().await;
    let port = crate::support::free_port();
    let mcp_url = format!("http://127.0.0.1:{port}/mcp");
    let audience = format!("{}/api", api.base);
    let as_ = RealAs::for_exchange(&mcp_url, &audience, 600).await;
    let body = format!(
        "[sandbox]\nmax_instances = 8\n\
         [auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\", \"notes:read\"]\n{issuer}\
         [[tenant]]\nid = \"t\"\nplugins = [{probe}]\n\
         [[tenant.service]]\nname = \"notes\"\nbase_url = \"{audience}\"\ncredential = \"jwt-bearer\"\n\
         audience = \"{audience}\"\nscopes = [\"notes:read\"]\n\
         [tenant.plugin.probe]\nservices = [\"notes\"]\n",
        issuer = issuer_with_client(
            &as_.issuer,
            "",
            "client_id = \"gateway\"\nauth_method = \"client_secret_post\"\nclient_secret_env = \"GATEWAY_SECRET\""
        ),
        probe = toml_path(&crate::support::plugin("probe")),
    );
    let gw =
        BinaryGateway::start_on_port(port, &body, &[("GATEWAY_SECRET", "gateway-secret")]).await;
    let token = as_.user_token(&mcp_url, "mcp:tools notes:read").await;
    let out = sdk_call(
        &mcp_url,
        &token,
        "probe.fetch",
        json!({"service": "notes", "path": "/echo"}),
    )
    .await;
    assert!(text(&out).starts_with("status 200: "), "{out}");
    let issued = jwt_part(&api.bearer(0), 1);
    assert_eq!(
        (issued["aud"].as_str(), issued["sub"].as_str()),
        (Some(audience.as_str()), Some("alice")),
        "{issued}"
    );
    assert_eq!(issued["scope"], "notes:read");
    // Cached: a second call asks the AS nothing.
    sdk_call(
        &mcp_url,
        &token,
        "probe.fetch",
        json!({"service": "notes", "path": "/echo"}),
    )
    .await;
    let grants: Vec<Value> = as_
        .requests()
        .await
        .into_iter()
        .filter(|r| r["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer")
        .collect();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0]["target"], json!([audience]), "resource names it");
    assert_eq!(grants[0]["client_auth"], "client_secret_post");
    assert_eq!(
        grants[0]["tokens"],
        json!([crate::support::sha256_hex(&token)])
    );
    let log = gw.stop().await;
    assert!(!log.contains(&token) && !log.contains("gateway-secret"));
}

/// #29 AC5. The authorization server answers the gateway's exchange with
/// `interaction_required` (its policy wants a fresh, multi-factor sign-in, as Entra's
/// Conditional Access does). Before: a dead-end tool error, and the failure was remembered.
/// Now the call's answer is a 401 `insufficient_user_authentication` challenge; the official
/// TypeScript SDK client signs in again and retries, and the call succeeds. Nothing was
/// cached: the exchange is asked again with the new token.
#[tokio::test]
async fn an_sts_asking_for_the_user_becomes_a_sign_in_the_sdk_client_completes() {
    let api = DownstreamApi::start().await;
    let port = crate::support::free_port();
    let mcp_url = format!("http://127.0.0.1:{port}/mcp");
    let audience = format!("{}/api", api.base);
    let as_ =
        RealAs::for_exchange_with(&mcp_url, &audience, 600, &[("AS_STEP_UP_USER", "alice")]).await;
    let body = format!(
        "[sandbox]\nmax_instances = 8\n\
         [auth]\nmode = \"oauth\"\nscopes_supported = [\"mcp:tools\", \"notes:read\"]\n{issuer}\
         [[tenant]]\nid = \"t\"\nplugins = [{probe}]\n\
         [[tenant.service]]\nname = \"notes\"\nbase_url = \"{audience}\"\ncredential = \"token-exchange\"\n\
         audience = \"{audience}\"\n\
         [tenant.plugin.probe]\nservices = [\"notes\"]\n",
        issuer = issuer_with_client(
            &as_.issuer,
            "",
            "client_id = \"gateway\"\nclient_secret_env = \"GATEWAY_SECRET\""
        ),
        probe = toml_path(&crate::support::plugin("probe")),
    );
    let gw =
        BinaryGateway::start_on_port(port, &body, &[("GATEWAY_SECRET", "gateway-secret")]).await;
    let calls =
        json!([{"name": "probe.fetch", "arguments": {"service": "notes", "path": "/echo"}}]);
    let t = crate::support::run_json_program(
        &node(),
        "tests/js/oauth-client.mjs",
        &[mcp_url.as_ref()],
        &[("CALLS", &calls.to_string())],
    )
    .await;
    let stepped: Vec<&Value> = t["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["header"]
                .as_str()
                .is_some_and(|h| h.contains("insufficient_user_authentication"))
        })
        .collect();
    assert_eq!(stepped.len(), 1, "{t}");
    assert_eq!(stepped[0]["status"], 401);
    let header = stepped[0]["header"].as_str().unwrap();
    assert!(
        header.contains("interaction_required") && header.contains("resource_metadata="),
        "{header}"
    );
    assert_eq!(t["authorizations"], 2, "signed in again: {t}");
    let result = t["calls"][0]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(result.starts_with("status 200: "), "{t}");
    // The exchange was refused once and asked again with the new sign-in's token: the
    // refusal was neither cached nor remembered.
    let exchanges: Vec<Value> = as_
        .requests()
        .await
        .into_iter()
        .filter(|r| r["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange")
        .collect();
    let statuses: Vec<u64> = exchanges
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [400, 200], "{exchanges:?}");
    assert_ne!(exchanges[0]["tokens"], exchanges[1]["tokens"]);
    let log = gw.stop().await;
    assert!(log.contains("user_authentication"), "the denial is logged");
    let token = t["accessToken"].as_str().unwrap();
    assert!(!log.contains(token));
}
