//! Entry points for the fuzz targets: `requestState` unsealing and plugin output conversion.

use serde_json::Value;

use super::convert;
use super::request_state::{Binding, StateSealer};
use crate::sandbox::wit;

/// Open arbitrary text as `requestState`: an error, never a panic or a state.
pub(crate) fn request_state(token: &str) {
    let sealer = StateSealer::new(Some(vec![7; 32]));
    let binding = Binding {
        tenant: "t".into(),
        issuer: Some("https://as.example".into()),
        subject: Some("alice".into()),
        method: "tools/call".into(),
        target: "x".into(),
    };
    assert!(sealer.open(token, &binding).is_err());
}

/// A tool result built from arbitrary bytes (text content, structured content, the error
/// flag) becomes a valid MCP `CallToolResult`, never a panic.
pub(crate) fn plugin_output(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (content, structured) = text.split_once('\u{0}').unwrap_or((&text, ""));
    let result = wit::ToolResult {
        content: vec![
            wit::Content::Text(content.to_string()),
            wit::Content::Image(wit::Binary {
                data: data.to_vec(),
                mime_type: String::from_utf8_lossy(data.get(..16).unwrap_or(data)).into_owned(),
            }),
        ],
        structured_content: (!structured.is_empty()).then(|| structured.to_string()),
        is_error: data.first().is_some_and(|b| b & 1 == 1),
    };
    let value: Value = convert::tool_result(&result);
    let parsed = convert::complete::<rmcp::model::CallToolResult>(value);
    assert!(parsed.is_ok(), "{parsed:?}");
    if let Some(text) = structured.get(..structured.len().min(4096)) {
        let _ = convert::json_object(text, "fuzzed");
    }
}
