//! `notes`: a plugin that keeps the caller's notes in a downstream API, reached only through
//! the host's `downstream` capability.
//!
//! The plugin names the logical service `notes` and a path; the host confines the request to
//! the service the operator configured and attaches a token it obtained by RFC 8693 token
//! exchange — for this caller, for that API, naming the gateway as the actor. The plugin
//! never sees a token. See `examples/notes.toml` and `examples/notes-api/`.

wit_bindgen::generate!({
    world: "tools-plugin",
    path: "../../../wit",
});

use exports::portcullis::plugin::tools::{
    CallOutcome, Guest, Tool, ToolAnnotations, ToolError, ToolResult,
};
use portcullis::plugin::downstream::{self, Error};
use portcullis::plugin::types::{CallContext, Content, Continuation};
use serde_json::Value;

/// The logical service name the operator grants this plugin.
const SERVICE: &str = "notes";

struct Notes;

fn annotations(read_only: bool) -> Option<ToolAnnotations> {
    Some(ToolAnnotations {
        title: None,
        read_only_hint: Some(read_only),
        destructive_hint: Some(false),
        idempotent_hint: Some(read_only),
        open_world_hint: Some(true),
    })
}

/// A tool result; `is_error` results tell the model what went wrong so it can adapt.
fn result(text: String, structured: Option<String>, is_error: bool) -> CallOutcome {
    CallOutcome::Done(ToolResult {
        content: vec![Content::Text(text)],
        structured_content: structured,
        is_error,
    })
}

/// Call the notes API and turn every failure into an actionable tool error.
fn call(method: &str, body: Option<String>) -> CallOutcome {
    let request = downstream::Request {
        method: method.into(),
        path: "/notes".into(),
        headers: vec![("content-type".into(), "text/plain".into())],
        body: body.map(String::into_bytes),
    };
    match downstream::fetch(SERVICE, &request) {
        Ok(r) if (200..300).contains(&r.status) => {
            let text = String::from_utf8_lossy(&r.body).into_owned();
            let structured = serde_json::from_str::<Value>(&text)
                .ok()
                .filter(Value::is_object)
                .map(|_| text.clone());
            result(text, structured, false)
        }
        Ok(r) => result(
            format!(
                "the notes API answered HTTP {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ),
            None,
            true,
        ),
        Err(e) => result(
            match e {
                Error::UnknownService(m) | Error::NotGranted(m) => {
                    format!("the gateway is not configured for notes: {m}")
                }
                Error::Credential(m) => {
                    format!("could not get a credential for the notes API: {m}")
                }
                Error::Blocked(m) => format!("the request was blocked: {m}"),
                Error::Timeout => "the notes API did not answer in time".into(),
                Error::TooLarge => "the note or the answer is too large".into(),
                Error::Transport(m) => format!("the notes API is unreachable: {m}"),
            },
            None,
            true,
        ),
    }
}

impl Guest for Notes {
    fn list_tools() -> Vec<Tool> {
        vec![
            Tool {
                name: "notes.list".into(),
                title: Some("List my notes".into()),
                description: "List the caller's notes, kept in the notes API.".into(),
                input_schema: r#"{"type":"object","additionalProperties":false}"#.into(),
                output_schema: None,
                annotations: annotations(true),
                required_scopes: vec!["notes:read".into()],
            },
            Tool {
                name: "notes.add".into(),
                title: Some("Add a note".into()),
                description: "Add a note for the caller in the notes API.".into(),
                input_schema: r#"{
                    "type": "object",
                    "properties": { "text": { "type": "string", "minLength": 1, "maxLength": 1000 } },
                    "required": ["text"],
                    "additionalProperties": false
                }"#
                .into(),
                output_schema: None,
                annotations: annotations(false),
                required_scopes: vec!["notes:write".into()],
            },
        ]
    }

    fn call_tool(
        _ctx: CallContext,
        name: String,
        arguments: String,
        _continuation: Option<Continuation>,
    ) -> Result<CallOutcome, ToolError> {
        match name.as_str() {
            "notes.list" => Ok(call("GET", None)),
            "notes.add" => {
                let args: Value = serde_json::from_str(&arguments)
                    .map_err(|e| ToolError::InvalidArguments(format!("not JSON: {e}")))?;
                let text = args["text"]
                    .as_str()
                    .filter(|t| !t.trim().is_empty())
                    .ok_or_else(|| {
                        ToolError::InvalidArguments(
                            "`text` (a non-empty string) is required".into(),
                        )
                    })?;
                Ok(call("POST", Some(text.to_string())))
            }
            _ => Err(ToolError::UnknownTool),
        }
    }
}

export!(Notes);
