//! `portcullis stdio` driven by the official TypeScript SDK client over stdin/stdout.

use serde_json::Value;

use crate::support::{node, plugin, run_json_program, tempdir, toml_path};

/// Run the SDK client against `portcullis stdio` with `env`; returns what it saw.
async fn drive(env_vars: &[(&str, &str)]) -> Value {
    let dir = tempdir();
    let config = dir.join("stdio.toml");
    std::fs::write(
        &config,
        format!("[sandbox]\nmax_instances = 8\n[stdio]\nsubject = \"configured-user\"\nscopes = [\"mcp:tools\"]\n[[tenant]]\nid = \"local\"\nplugins = [{}]\n", toml_path(&plugin("hello"))),
    )
    .unwrap();
    let args = [
        env!("CARGO_BIN_EXE_portcullis").as_ref(),
        config.as_os_str(),
    ];
    let mut env = vec![("PORTCULLIS_LOG", "warn")];
    env.extend_from_slice(env_vars);
    run_json_program(&node(), "tests/js/stdio-client.mjs", &args, &env).await
}

#[tokio::test]
async fn typescript_sdk_client_initializes_lists_and_calls_over_stdio() {
    let seen = drive(&[("PORTCULLIS_SUBJECT", "env-user")]).await;
    assert_eq!(seen["server"]["name"], "portcullis");
    assert_eq!(
        seen["tools"],
        serde_json::json!(["hello.greet", "hello.report", "hello.whoami"])
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
