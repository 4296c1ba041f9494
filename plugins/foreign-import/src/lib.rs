//! Test fixture: imports `fixture:foreign/api`, which no Portcullis host provides.
wit_bindgen::generate!({
    world: "fixture:foreign/foreign-plugin",
    path: ["../../wit", "wit"],
    generate_all,
});

use exports::portcullis::plugin::tools::{CallOutcome, Guest, Tool, ToolError, ToolResult};
use portcullis::plugin::types::{CallContext, Content, Continuation};

struct Foreign;

fn tool(name: &str) -> Tool {
    Tool {
        name: name.into(),
        title: None,
        description: format!("{name} (test fixture)"),
        input_schema: r#"{"type":"object"}"#.into(),
        output_schema: None,
        annotations: None,
        required_scopes: vec![],
    }
}

impl Guest for Foreign {
    fn list_tools() -> Vec<Tool> {
        vec![tool("foreign.safe"), tool("foreign.call")]
    }

    fn call_tool(
        _: CallContext,
        name: String,
        _: String,
        _: Option<Continuation>,
    ) -> Result<CallOutcome, ToolError> {
        let text = match name.as_str() {
            "foreign.safe" => "no foreign import used".to_string(),
            "foreign.call" => fixture::foreign::api::hello(),
            _ => return Err(ToolError::UnknownTool),
        };
        Ok(CallOutcome::Done(ToolResult {
            content: vec![Content::Text(text)],
            structured_content: None,
            is_error: false,
        }))
    }
}

export!(Foreign);
