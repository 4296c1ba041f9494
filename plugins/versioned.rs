// Shared source of the `version-one` and `version-two` test fixtures: one plugin in two
// versions that say which they are, for the hot-reload tests (each crate sets `VERSION` and
// includes this file). Deployed under one file name, they are two versions of `versioned`.

wit_bindgen::generate!({
    world: "tools-plugin",
    path: "../../wit",
});

use exports::portcullis::plugin::tools::{CallOutcome, Guest, Tool, ToolError, ToolResult};
use portcullis::plugin::types::{CallContext, Content, Continuation};

struct Versioned;

impl Guest for Versioned {
    fn list_tools() -> Vec<Tool> {
        vec![Tool {
            name: "versioned.which".into(),
            title: None,
            description: format!("Answer `{VERSION}` after sleeping `ms` milliseconds"),
            input_schema: r#"{"type":"object","properties":{"ms":{"type":"integer","minimum":0,"maximum":1000}}}"#.into(),
            output_schema: None,
            annotations: None,
            required_scopes: vec![],
        }]
    }

    fn call_tool(
        _ctx: CallContext,
        name: String,
        arguments: String,
        _c: Option<Continuation>,
    ) -> Result<CallOutcome, ToolError> {
        if name != "versioned.which" {
            return Err(ToolError::UnknownTool);
        }
        let ms = serde_json::from_str::<serde_json::Value>(&arguments)
            .ok()
            .and_then(|v| v["ms"].as_u64())
            .unwrap_or(0)
            .min(1000);
        std::thread::sleep(std::time::Duration::from_millis(ms));
        Ok(CallOutcome::Done(ToolResult {
            content: vec![Content::Text(VERSION.into())],
            structured_content: None,
            is_error: false,
        }))
    }
}

export!(Versioned);
