//! `echo`: the benchmark's tool (`cargo xtask bench`). `echo {"text": "..."}` answers with the
//! same text, like the echo tool of every other server in the benchmark.

wit_bindgen::generate!({
    world: "tools-plugin",
    path: "../../../wit",
});

use exports::portcullis::plugin::tools::{CallOutcome, Guest, Tool, ToolError, ToolResult};
use portcullis::plugin::types::{CallContext, Content, Continuation};

struct Echo;

impl Guest for Echo {
    fn list_tools() -> Vec<Tool> {
        vec![Tool {
            name: "echo".into(),
            title: None,
            description: "Echo the text back.".into(),
            input_schema:
                r#"{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}"#
                    .into(),
            output_schema: None,
            annotations: None,
            required_scopes: Vec::new(),
        }]
    }

    fn call_tool(
        _ctx: CallContext,
        name: String,
        arguments: String,
        _continuation: Option<Continuation>,
    ) -> Result<CallOutcome, ToolError> {
        if name != "echo" {
            return Err(ToolError::UnknownTool);
        }
        let args: serde_json::Value = serde_json::from_str(&arguments)
            .map_err(|e| ToolError::InvalidArguments(format!("arguments are not JSON: {e}")))?;
        let text = args["text"]
            .as_str()
            .ok_or_else(|| ToolError::InvalidArguments("`text` (a string) is required".into()))?;
        Ok(CallOutcome::Done(ToolResult {
            content: vec![Content::Text(text.to_string())],
            structured_content: None,
            is_error: false,
        }))
    }
}

export!(Echo);
