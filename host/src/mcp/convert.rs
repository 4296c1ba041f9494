//! Conversions between the plugin's WIT types and MCP wire JSON.
//!
//! Everything goes through `serde_json::Value` and rmcp's serde impls, which keeps plugin JSON
//! (schemas, structured output, sampling parameters) verbatim and avoids depending on the
//! shape of rmcp's non-exhaustive model structs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rmcp::ErrorData;
use rmcp::model::JsonObject;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::sandbox::wit;

/// The `_meta` key listing the scopes a tool, prompt or resource requires.
pub(crate) const REQUIRED_SCOPES_META: &str = "dev.portcullis/requiredScopes";

/// Deserialize an rmcp model value from JSON we built; a failure is a host bug or a plugin
/// returning something the protocol cannot carry, reported as an internal error.
pub(crate) fn model<T: DeserializeOwned>(value: Value) -> Result<T, ErrorData> {
    serde_json::from_value(value).map_err(|e| {
        ErrorData::internal_error(format!("cannot express plugin output in MCP: {e}"), None)
    })
}

/// Like [`model`], for a complete result: stamps `"resultType": "complete"`, which 2026-07-28
/// requires and rmcp strips again for peers on earlier revisions.
pub(crate) fn complete<T: DeserializeOwned>(mut value: Value) -> Result<T, ErrorData> {
    if let Value::Object(m) = &mut value {
        m.entry("resultType").or_insert_with(|| "complete".into());
    }
    model(value)
}

fn insert_opt(map: &mut Map<String, Value>, key: &str, value: Option<impl Into<Value>>) {
    if let Some(v) = value {
        map.insert(key.into(), v.into());
    }
}

fn scopes_meta(scopes: &[String]) -> Value {
    json!({ REQUIRED_SCOPES_META: scopes })
}

/// Plugin-supplied JSON text that is not the object it must be.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotAnObject {
    #[error("{0} is not a JSON object")]
    Other(&'static str),
    #[error("{what} is not valid JSON: {source}")]
    Invalid {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// Parse plugin-supplied JSON text into an object.
pub(crate) fn json_object(text: &str, what: &'static str) -> Result<JsonObject, NotAnObject> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(NotAnObject::Other(what)),
        Err(source) => Err(NotAnObject::Invalid { what, source }),
    }
}

/// A tool as MCP describes it.
/// A tool as `tools/list` shows it: [`tool`], marked when it may become a task (#30) — the
/// tasks extension defines no field on `Tool` (2025-11-25's `execution.taskSupport` left
/// core), so the marker is `_meta` under the extension's identifier — and with what calling it
/// takes as SEP-1488 `securitySchemes` (in `_meta`, beside the required scopes: `oauth2` with
/// its scopes when the caller came with a token, else `noauth`).
pub(crate) fn listed_tool(
    t: &wit::Tool,
    task: Option<&crate::plugins::TaskMode>,
    oauth: bool,
) -> Value {
    let mut listed = tool(t);
    let Some(meta) = listed.as_object_mut().and_then(|obj| {
        obj.entry("_meta")
            .or_insert_with(|| json!({}))
            .as_object_mut()
    }) else {
        return listed;
    };
    if let Some(mode) = task {
        let support = if mode.required {
            "required"
        } else {
            "optional"
        };
        meta.insert(
            super::tasks::EXTENSION.into(),
            json!({ "taskSupport": support }),
        );
    }
    let scheme = if oauth {
        json!({"type": "oauth2", "scopes": t.required_scopes})
    } else {
        json!({"type": "noauth"})
    };
    meta.insert(SECURITY_SCHEMES_META.into(), json!([scheme]));
    listed
}

/// Where a listed tool says what calling it takes (SEP-1488, as `_meta` carries it).
pub(crate) const SECURITY_SCHEMES_META: &str = "securitySchemes";

pub(crate) fn tool(t: &wit::Tool) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), t.name.clone().into());
    insert_opt(&mut m, "title", t.title.clone());
    m.insert("description".into(), t.description.clone().into());
    // Validated as JSON objects at load time.
    m.insert(
        "inputSchema".into(),
        serde_json::from_str(&t.input_schema).unwrap_or_else(|_| json!({"type": "object"})),
    );
    if let Some(out) = &t.output_schema
        && let Ok(v) = serde_json::from_str::<Value>(out)
    {
        m.insert("outputSchema".into(), v);
    }
    if let Some(a) = &t.annotations {
        let mut am = Map::new();
        insert_opt(&mut am, "title", a.title.clone());
        insert_opt(&mut am, "readOnlyHint", a.read_only_hint);
        insert_opt(&mut am, "destructiveHint", a.destructive_hint);
        insert_opt(&mut am, "idempotentHint", a.idempotent_hint);
        insert_opt(&mut am, "openWorldHint", a.open_world_hint);
        m.insert("annotations".into(), am.into());
    }
    if !t.required_scopes.is_empty() {
        m.insert("_meta".into(), scopes_meta(&t.required_scopes));
    }
    m.into()
}

/// One resource's contents.
pub(crate) fn resource_contents(c: &wit::ResourceContents) -> Value {
    let mut m = Map::new();
    m.insert("uri".into(), c.uri.clone().into());
    insert_opt(&mut m, "mimeType", c.mime_type.clone());
    match &c.body {
        wit::ResourceBody::Text(t) => m.insert("text".into(), t.clone().into()),
        wit::ResourceBody::Blob(b) => m.insert("blob".into(), B64.encode(b).into()),
    };
    m.into()
}

/// A content block.
pub(crate) fn content(c: &wit::Content) -> Value {
    match c {
        wit::Content::Text(t) => json!({"type": "text", "text": t}),
        wit::Content::Image(b) => {
            json!({"type": "image", "data": B64.encode(&b.data), "mimeType": b.mime_type})
        }
        wit::Content::Audio(b) => {
            json!({"type": "audio", "data": B64.encode(&b.data), "mimeType": b.mime_type})
        }
        wit::Content::ResourceLink(l) => {
            let mut m = Map::new();
            m.insert("type".into(), "resource_link".into());
            m.insert("uri".into(), l.uri.clone().into());
            m.insert("name".into(), l.name.clone().into());
            insert_opt(&mut m, "title", l.title.clone());
            insert_opt(&mut m, "description", l.description.clone());
            insert_opt(&mut m, "mimeType", l.mime_type.clone());
            m.into()
        }
        wit::Content::Resource(r) => json!({"type": "resource", "resource": resource_contents(r)}),
    }
}

/// A tool result. Structured content that is not valid JSON turns the result into an error.
pub(crate) fn tool_result(r: &wit::ToolResult) -> Value {
    let mut m = Map::new();
    m.insert(
        "content".into(),
        r.content.iter().map(content).collect::<Vec<_>>().into(),
    );
    if let Some(s) = &r.structured_content {
        match serde_json::from_str::<Value>(s) {
            Ok(v) => {
                m.insert("structuredContent".into(), v);
            }
            Err(e) => {
                return error_result(&format!(
                    "the tool returned structured content that is not valid JSON: {e}"
                ));
            }
        }
    }
    if r.is_error {
        m.insert("isError".into(), true.into());
    }
    m.into()
}

/// A tool result reporting a failure to the model.
pub(crate) fn error_result(message: &str) -> Value {
    json!({"content": [{"type": "text", "text": message}], "isError": true})
}

/// A resource as MCP lists it.
pub(crate) fn resource(r: &wit::Resource) -> Value {
    let mut m = Map::new();
    m.insert("uri".into(), r.uri.clone().into());
    m.insert("name".into(), r.name.clone().into());
    insert_opt(&mut m, "title", r.title.clone());
    insert_opt(&mut m, "description", r.description.clone());
    insert_opt(&mut m, "mimeType", r.mime_type.clone());
    insert_opt(&mut m, "size", r.size);
    if !r.required_scopes.is_empty() {
        m.insert("_meta".into(), scopes_meta(&r.required_scopes));
    }
    m.into()
}

/// A resource template as MCP lists it.
pub(crate) fn resource_template(t: &wit::ResourceTemplate) -> Value {
    let mut m = Map::new();
    m.insert("uriTemplate".into(), t.uri_template.clone().into());
    m.insert("name".into(), t.name.clone().into());
    insert_opt(&mut m, "title", t.title.clone());
    insert_opt(&mut m, "description", t.description.clone());
    insert_opt(&mut m, "mimeType", t.mime_type.clone());
    if !t.required_scopes.is_empty() {
        m.insert("_meta".into(), scopes_meta(&t.required_scopes));
    }
    m.into()
}

/// A prompt as MCP lists it.
pub(crate) fn prompt(p: &wit::Prompt) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), p.name.clone().into());
    insert_opt(&mut m, "title", p.title.clone());
    m.insert("description".into(), p.description.clone().into());
    let args: Vec<Value> = p
        .arguments
        .iter()
        .map(|a| {
            let mut am = Map::new();
            am.insert("name".into(), a.name.clone().into());
            insert_opt(&mut am, "title", a.title.clone());
            insert_opt(&mut am, "description", a.description.clone());
            am.insert("required".into(), a.required.into());
            am.into()
        })
        .collect();
    if !args.is_empty() {
        m.insert("arguments".into(), args.into());
    }
    if !p.required_scopes.is_empty() {
        m.insert("_meta".into(), scopes_meta(&p.required_scopes));
    }
    m.into()
}

/// A rendered prompt.
pub(crate) fn prompt_result(r: &wit::PromptResult) -> Value {
    let messages: Vec<Value> = r
        .messages
        .iter()
        .map(|msg| {
            let role = match msg.role {
                wit::Role::User => "user",
                wit::Role::Assistant => "assistant",
            };
            json!({"role": role, "content": content(&msg.content)})
        })
        .collect();
    let mut m = Map::new();
    insert_opt(&mut m, "description", r.description.clone());
    m.insert("messages".into(), messages.into());
    m.into()
}

/// Prompt arguments from MCP (string values; anything else passed as JSON text).
pub(crate) fn prompt_arguments(args: Option<&JsonObject>) -> Vec<(String, String)> {
    args.into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().map_or_else(|| v.to_string(), str::to_string),
            )
        })
        .collect()
}

/// The JSON-RPC method and params of one input request, as the client must receive it.
pub(crate) fn input_request(r: &wit::InputRequest) -> Result<(&'static str, Value), NotAnObject> {
    match r {
        wit::InputRequest::Elicit(e) => {
            let schema = json_object(&e.requested_schema, "the elicitation's requested schema")?;
            Ok((
                "elicitation/create",
                json!({"message": e.message, "requestedSchema": schema}),
            ))
        }
        wit::InputRequest::Sample(params) => Ok((
            "sampling/createMessage",
            Value::Object(json_object(params, "the sampling parameters")?),
        )),
        wit::InputRequest::ListRoots => Ok(("roots/list", json!({}))),
    }
}

/// The client capability an input request needs, as a `ClientCapabilities` object key.
pub(crate) fn required_capability(r: &wit::InputRequest) -> &'static str {
    match r {
        wit::InputRequest::Elicit(_) => "elicitation",
        wit::InputRequest::Sample(_) => "sampling",
        wit::InputRequest::ListRoots => "roots",
    }
}
