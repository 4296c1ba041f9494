//! `portcullis stdio` driven by the official TypeScript SDK client over stdin/stdout.

use serde_json::Value;

use crate::support::{node, plugin, run_json_program, tempdir, toml_path};

/// Run the SDK client against `portcullis stdio` with `env`; returns what it saw.
async fn drive(env_vars: &[(&str, &str)]) -> Value {
    drive_with(&tempdir(), "", env_vars).await
}

/// [`drive`] with the configuration in `dir`, `more` added to it.
async fn drive_with(dir: &std::path::Path, more: &str, env_vars: &[(&str, &str)]) -> Value {
    let config = dir.join("stdio.toml");
    std::fs::write(
        &config,
        format!("[sandbox]\nmax_instances = 8\n[stdio]\nsubject = \"configured-user\"\nscopes = [\"mcp:tools\"]\n{more}\n[[tenant]]\nid = \"local\"\nplugins = [{}]\n", toml_path(&plugin("hello"))),
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

/// #33: a gateway serving stdio keeps the audit record too — every call, with the
/// configured identity — and ends it with its final checkpoint when the client goes away;
/// `audit.stdout` is refused there (standard output carries the protocol).
#[tokio::test]
async fn stdio_keeps_the_audit_record() {
    let dir = tempdir();
    let key = ("PORTCULLIS_AUDIT_KEY", "a stdio audit key");
    let seen = drive_with(&dir, "[audit]\nfile = \"audit.jsonl\"", &[key]).await;
    assert_eq!(seen["greet"]["content"][0]["text"], "Hello, stdio!");
    let file = dir.join("audit.jsonl");
    let mut lines: Vec<Value> = Vec::new();
    for _ in 0..100 {
        lines = std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.last().is_some_and(|l| l["final"] == true) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(lines.last().unwrap()["final"], true, "{lines:?}");
    let greet = lines
        .iter()
        .find(|l| l["event"] == "call" && l["target"] == "hello.greet")
        .unwrap_or_else(|| panic!("no call of hello.greet: {lines:?}"));
    assert_eq!(greet["decision"], "allow");
    assert_eq!(greet["caller"]["subject"], "configured-user");
    assert_eq!(greet["plugin"], "hello");
    let (verified, said) = crate::support::audit_verify(&file, key.1);
    assert!(verified, "{said}");

    let config = dir.join("stdout.toml");
    std::fs::write(
        &config,
        format!(
            "[audit]\nstdout = true\n[[tenant]]\nid = \"local\"\nplugins = [{}]\n",
            toml_path(&plugin("hello"))
        ),
    )
    .unwrap();
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["stdio", "--config"])
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("audit.stdout cannot be used on stdio"),
        "{said}"
    );
}
