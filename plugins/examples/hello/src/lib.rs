//! `hello`: the smallest useful Portcullis plugin. Copy this crate to start your own.
//!
//! A plugin is a WebAssembly component. It exports `list-tools` (what it offers) and
//! `call-tool` (do it), and may import the host's `log`/`progress` functions. Each call runs in
//! a fresh instance, so keep no state in statics between calls.
//!
//! Build: `cargo xtask build-plugins` (or `cargo build --release --target wasm32-wasip2` in
//! `plugins/`), then point a tenant's `plugins` list at `target/plugins/hello.wasm`.

// Generate Rust bindings for the `tools-plugin` world of the Portcullis WIT package. This
// creates the `Guest` trait we implement below and the `portcullis::plugin::host` module.
wit_bindgen::generate!({
    world: "tools-plugin",
    path: "../../../wit",
});

use exports::portcullis::plugin::tools::{
    CallOutcome, Guest, Tool, ToolAnnotations, ToolError, ToolResult,
};
use portcullis::plugin::host::{self, LogLevel};
use portcullis::plugin::types::{CallContext, Content, Continuation};

struct Hello;

impl Guest for Hello {
    /// Describe the tools. The host calls this once when it loads the plugin and caches the
    /// answer, so it must not depend on anything but the plugin itself.
    fn list_tools() -> Vec<Tool> {
        vec![
            Tool {
                name: "hello.greet".into(),
                title: Some("Greet someone".into()),
                description: "Say hello to someone by name.".into(),
                // JSON Schema as text; the host passes it to clients verbatim.
                input_schema: r#"{
                    "type": "object",
                    "properties": { "name": { "type": "string", "description": "Who to greet" } },
                    "required": ["name"],
                    "additionalProperties": false
                }"#
                .into(),
                output_schema: None,
                annotations: Some(ToolAnnotations {
                    title: None,
                    read_only_hint: Some(true),
                    destructive_hint: Some(false),
                    idempotent_hint: Some(true),
                    open_world_hint: Some(false),
                }),
                // The caller's token must carry this scope; the host checks it before calling us.
                required_scopes: vec!["mcp:tools".into()],
            },
            Tool {
                name: "hello.whoami".into(),
                title: Some("Who am I?".into()),
                description: "Report who the gateway says is calling (tenant, issuer, subject, scopes).".into(),
                input_schema: r#"{"type":"object","additionalProperties":false}"#.into(),
                output_schema: Some(
                    r#"{"type":"object","properties":{"tenant":{"type":"string"},"issuer":{"type":["string","null"]},"subject":{"type":["string","null"]},"scopes":{"type":"array","items":{"type":"string"}}},"required":["tenant","subject","scopes"]}"#.into(),
                ),
                annotations: None,
                required_scopes: vec!["mcp:tools".into()],
            },
        ]
    }

    /// Run one tool. `arguments` is the JSON text of the arguments object.
    fn call_tool(
        ctx: CallContext,
        name: String,
        arguments: String,
        _continuation: Option<Continuation>,
    ) -> Result<CallOutcome, ToolError> {
        match name.as_str() {
            "hello.greet" => {
                let args: serde_json::Value = serde_json::from_str(&arguments).map_err(|e| {
                    ToolError::InvalidArguments(format!("arguments are not JSON: {e}"))
                })?;
                let Some(who) = args.get("name").and_then(|n| n.as_str()) else {
                    // Invalid arguments become an `isError` result the model can correct.
                    return Err(ToolError::InvalidArguments(
                        "`name` (a string) is required".into(),
                    ));
                };
                // Goes to the client as notifications/message if it asked for info-level logs.
                host::log(LogLevel::Info, Some("hello"), &format!("greeting {who}"));
                Ok(done(vec![Content::Text(format!("Hello, {who}!"))], None))
            }
            "hello.whoami" => {
                let structured = serde_json::json!({
                    "tenant": ctx.tenant,
                    "issuer": ctx.issuer,
                    "subject": ctx.subject,
                    "scopes": ctx.scopes,
                })
                .to_string();
                // Tools with an output schema return structured content plus the same JSON as text.
                Ok(done(
                    vec![Content::Text(structured.clone())],
                    Some(structured),
                ))
            }
            // Unknown names become a JSON-RPC error for the client.
            _ => Err(ToolError::UnknownTool),
        }
    }
}

fn done(content: Vec<Content>, structured_content: Option<String>) -> CallOutcome {
    CallOutcome::Done(ToolResult {
        content,
        structured_content,
        is_error: false,
    })
}

export!(Hello);
