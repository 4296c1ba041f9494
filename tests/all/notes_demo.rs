//! The README's downstream demo, as written in `examples/notes.toml`: the `notes` plugin, the
//! `notes-api` example (which accepts only exchanged tokens) and `portcullis dev` performing
//! the exchange, checked end to end.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{BinaryGateway, Client, free_port, mint_with_cli, root, tempdir, toml_path};

/// The `notes-api` binary (a workspace package of its own), beside the gateway's:
/// `cargo xtask test` builds every binary of the workspace before the tests run.
fn notes_api_binary() -> std::path::PathBuf {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_portcullis"))
        .parent()
        .unwrap()
        .join("notes-api");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p notes-api` (`cargo xtask test` does)",
        bin.display()
    );
    bin
}

struct Demo {
    gw: BinaryGateway,
    api: tokio::process::Child,
    api_url: String,
}

async fn demo() -> Demo {
    demo_with(|text| text).await
}

/// The demo with its configuration text changed by `edit`.
async fn demo_with(edit: impl FnOnce(String) -> String) -> Demo {
    let (gw_port, api_port) = (free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{gw_port}/dev-as");
    let api = tokio::process::Command::new(notes_api_binary())
        .args([
            "--listen",
            &format!("127.0.0.1:{api_port}"),
            "--issuer",
            &issuer,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The example configuration, moved to ephemeral ports and absolute paths.
    let text = std::fs::read_to_string(root().join("examples/notes.toml"))
        .unwrap()
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{gw_port}"))
        .replace("127.0.0.1:8090", &format!("127.0.0.1:{api_port}"))
        .replace(
            "key_file = \"../target/dev-as.key\"",
            &format!("key_file = {}", toml_path(&tempdir().join("dev-as.key"))),
        )
        .replace("\"../target/", &format!("\"{}/target/", root().display()));
    let text = edit(text);
    let gw = BinaryGateway::start_text(
        gw_port,
        "dev",
        &text,
        &[("GATEWAY_SECRET", "demo-gateway-secret-7f3a")],
    )
    .await;
    let api_url = format!("http://127.0.0.1:{api_port}/api/notes");
    for _ in 0..100 {
        if reqwest::get(&api_url).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Demo { gw, api, api_url }
}

async fn call(d: &Demo, token: &str, tool: &str, args: Value) -> crate::support::Reply {
    Client::modern(&format!("{}/mcp", d.gw.base))
        .bearer(token)
        .call_tool(tool, args)
        .await
}

#[tokio::test]
async fn the_notes_demo_runs_user_to_client_to_gateway_to_api() {
    let mut d = demo().await;
    let all = "mcp:tools notes:read notes:write";
    let alice = mint_with_cli(&d.gw.config, "alice", all).await;
    let bob = mint_with_cli(&d.gw.config, "bob", all).await;

    let added = call(&d, &alice, "notes.add", json!({"text": "buy milk"})).await;
    assert!(!added.is_error(), "{added:?}");
    assert_eq!(
        added.result()["structuredContent"],
        json!({"user": "alice", "actor": "gateway", "count": 1}),
        "the API saw alice, acted for by the gateway"
    );
    let listed = call(&d, &alice, "notes.list", json!({})).await;
    assert_eq!(
        listed.result()["structuredContent"],
        json!({"user": "alice", "actor": "gateway", "notes": ["buy milk"]})
    );
    // Per user: bob's exchanged token is bob's.
    let bobs = call(&d, &bob, "notes.list", json!({})).await;
    assert_eq!(bobs.result()["structuredContent"]["notes"], json!([]));

    // The API refuses the user's own token: it is for the gateway, and has no actor.
    let direct = reqwest::Client::new()
        .get(&d.api_url)
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 401);

    // A caller without notes:write is stopped at the gateway with a step-up challenge.
    let reader = mint_with_cli(&d.gw.config, "alice", "mcp:tools notes:read").await;
    let denied = call(&d, &reader, "notes.add", json!({"text": "x"})).await;
    assert_eq!(denied.status, 403);
    assert!(
        denied.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("notes:write")
    );

    // The API going away is an actionable tool error, and the gateway keeps serving.
    d.api.kill().await.unwrap();
    let down = call(&d, &alice, "notes.list", json!({})).await;
    assert!(down.is_error(), "{down:?}");
    assert!(down.text().contains("unreachable"), "{}", down.text());
    let log = d.gw.stop().await;
    assert!(
        !log.contains(&alice) && !log.contains(&bob) && !log.contains("demo-gateway-secret-7f3a")
    );
}

/// The demo with `edit` applied to its configuration must answer `notes.list` with an
/// `isError` result naming the credential failure (`cause`), log it, and keep serving.
async fn exchange_fails_cleanly(edit: impl FnOnce(String) -> String, cause: &str) {
    let d = demo_with(edit).await;
    let alice = mint_with_cli(&d.gw.config, "alice", "mcp:tools notes:read").await;
    let r = call(&d, &alice, "notes.list", json!({})).await;
    assert!(r.is_error(), "{r:?}");
    assert!(
        r.text()
            .starts_with("could not get a credential for the notes API")
            && r.text().contains(cause),
        "{}",
        r.text()
    );
    // The gateway keeps serving.
    let listed = Client::modern(&format!("{}/mcp", d.gw.base))
        .bearer(&alice)
        .request("tools/list", json!({}))
        .await;
    assert_eq!(listed.status, 200);
    let log = d.gw.stop().await;
    assert!(
        log.contains("downstream call refused or failed") && log.contains(cause),
        "operators see it"
    );
    assert!(!log.contains(&alice));
}

/// The demo with its `[exchange]` client moved to another authorization server than the one
/// that issues the users' tokens: refused at start, since no caller's token could ever be
/// exchanged there (a token goes only to its own issuer).
#[test]
fn an_exchange_client_at_another_authorization_server_is_refused_at_start() {
    let path = crate::support::root().join("examples/notes.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[exchange]\n",
        "[exchange]\nissuer = \"http://127.0.0.1:9/other-as\"\n",
    );
    let e = portcullis::config::Config::parse(&text, &path, path.parent().unwrap()).unwrap_err();
    assert_eq!(e.key, "tenant[0].service[0].credential", "{e}");
    assert!(
        e.problem.contains("presented only at its own issuer"),
        "{e}"
    );
}

#[tokio::test]
async fn an_authorization_server_that_refuses_the_exchange_gives_an_is_error_result() {
    // The AS does not know this client: it refuses with its OAuth error.
    exchange_fails_cleanly(
        |text| {
            text.replace(
                "[exchange]\nclient_id = \"gateway\"",
                "[exchange]\nclient_id = \"stranger\"",
            )
        },
        "refused the token exchange: invalid_client",
    )
    .await;
}
